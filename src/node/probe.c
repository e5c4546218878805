/*
 * probe.c - the Ollama probe of herd-node: four concurrent requests per
 * cycle, pure parsers for their answers (see probe.h).
 */
#include "probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"
#include "herd/parse.h"

#define PROBE_MAX_BODY (8u << 20)
#define GIB            (1024.0 * 1024.0 * 1024.0)

enum probe_part { PART_HEALTH, PART_VERSION, PART_PS, PART_TAGS, PART_N };

static const char *const part_path[PART_N] = {"/", "/api/version", "/api/ps",
                                              "/api/tags"};

struct probe_req {
    struct probe *p;
    enum probe_part part;
    struct http_call *call; /* NULL once done */
};

struct probe {
    struct http_client *client; /* borrowed */
    char base[512];
    struct probe_req reqs[PART_N];
    size_t pending;
    struct probe_state st;
    probe_done_cb cb;
    void *ud;
};

void
probe_state_init(struct probe_state *st)
{
    memset(st, 0, sizeof(*st));
}

void
probe_state_cleanup(struct probe_state *st)
{
    free(st->loaded);
    free(st->available);
    probe_state_init(st);
}

static void
probe_fail(struct probe_state *st, const char *what)
{
    /* Truncation is fine: the message is for a log line. */
    if (st->error[0] == '\0')
        snprintf(st->error, sizeof(st->error), "%.*s",
                 (int)sizeof(st->error) - 1, what);
}

static void
copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "");
}

/* The "models" array of an /api/ps or /api/tags answer. */
static const cJSON *
probe_models(struct probe_state *st, const char *body, size_t len, cJSON **root,
             const char *what)
{
    char err[128];
    const cJSON *models;

    *root = NULL;
    if (json_parse(body, len, 32, root, err, sizeof(err)) != 0) {
        probe_fail(st, what);
        return NULL;
    }
    models = json_get(*root, "models");
    if (!cJSON_IsArray(models) && !cJSON_IsNull(models)) {
        probe_fail(st, what);
        return NULL;
    }
    return models;
}

int
probe_parse_ps(struct probe_state *st, const char *body, size_t len)
{
    const cJSON *models, *m;
    cJSON *root;

    free(st->loaded);
    st->loaded = NULL;
    st->n_loaded = 0;
    models = probe_models(st, body, len, &root, "/api/ps: not a model list");
    if (models == NULL) {
        cJSON_Delete(root);
        return cJSON_IsNull(json_get(root, "models")) ? 0 : -EINVAL;
    }
    st->loaded = calloc(PROBE_MAX_MODELS, sizeof(*st->loaded));
    if (st->loaded == NULL) {
        cJSON_Delete(root);
        return -ENOMEM;
    }
    cJSON_ArrayForEach(m, models)
    {
        struct probe_loaded *l = &st->loaded[st->n_loaded];
        const char *name = json_get_str(m, "model");
        const cJSON *details = json_get(m, "details");

        if (name == NULL || *name == '\0')
            name = json_get_str(m, "name");
        if (name == NULL || strlen(name) >= PROBE_NAME_MAX ||
            st->n_loaded == PROBE_MAX_MODELS) {
            st->dropped++;
            continue;
        }
        copy_str(l->name, sizeof(l->name), name);
        l->size_gb = json_get_num(m, "size", 0) / GIB;
        l->size_vram_gb = json_get_num(m, "size_vram", 0) / GIB;
        copy_str(l->parameter_size, sizeof(l->parameter_size),
                 json_get_str(details, "parameter_size"));
        copy_str(l->quantization, sizeof(l->quantization),
                 json_get_str(details, "quantization_level"));
        l->context_length = (uint32_t)json_get_num(m, "context_length", 0);
        copy_str(l->expires_at, sizeof(l->expires_at),
                 json_get_str(m, "expires_at"));
        st->n_loaded++;
    }
    cJSON_Delete(root);
    return 0;
}

int
probe_parse_tags(struct probe_state *st, const char *body, size_t len)
{
    const cJSON *models, *m;
    cJSON *root;

    free(st->available);
    st->available = NULL;
    st->n_available = 0;
    models = probe_models(st, body, len, &root, "/api/tags: not a model list");
    if (models == NULL) {
        cJSON_Delete(root);
        return cJSON_IsNull(json_get(root, "models")) ? 0 : -EINVAL;
    }
    st->available = calloc(PROBE_MAX_MODELS, sizeof(*st->available));
    if (st->available == NULL) {
        cJSON_Delete(root);
        return -ENOMEM;
    }
    cJSON_ArrayForEach(m, models)
    {
        const char *name = json_get_str(m, "model");

        if (name == NULL || *name == '\0')
            name = json_get_str(m, "name");
        if (name == NULL || strlen(name) >= PROBE_NAME_MAX ||
            st->n_available == PROBE_MAX_MODELS) {
            st->dropped++;
            continue;
        }
        copy_str(st->available[st->n_available++], PROBE_NAME_MAX, name);
    }
    cJSON_Delete(root);
    return 0;
}

/* Splits "scheme://host[:port][/path]" into host and port. */
static void
url_host_port(const char *url, char *host, size_t hn, char *port, size_t pn)
{
    const char *h = strstr(url, "://"), *end, *colon;

    h = h ? h + 3 : url;
    end = h + strcspn(h, "/");
    if (*h == '[') { /* [::1]:11434 */
        const char *rb = memchr(h, ']', (size_t)(end - h));

        colon = rb && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        snprintf(host, hn, "%.*s", rb ? (int)(rb - h - 1) : 0, h + 1);
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(host, hn, "%.*s", (int)((colon ? colon : end) - h), h);
    }
    snprintf(port, pn, "%.*s", colon ? (int)(end - colon - 1) : 0,
             colon ? colon + 1 : "");
    if (port[0] == '\0')
        snprintf(port, pn, "11434");
}

void
probe_public_url(const char *ollama_host, const char *lan_ip, char *out,
                 size_t n)
{
    char host[256], port[16];
    bool loopback;

    url_host_port(ollama_host, host, sizeof(host), port, sizeof(port));
    loopback = strcmp(host, "localhost") == 0 ||
               strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0;
    if (loopback && lan_ip != NULL && *lan_ip != '\0' &&
        strcmp(lan_ip, "127.0.0.1") != 0)
        snprintf(out, n, "http://%s:%s", lan_ip, port);
    else
        snprintf(out, n, "%s", ollama_host);
}

int
probe_num_parallel(const char *setting, const char *ollama_env)
{
    const char *srcs[2] = {setting, ollama_env};
    int64_t v;

    for (size_t i = 0; i < 2; i++) {
        if (srcs[i] != NULL && *srcs[i] != '\0' &&
            parse_i64(srcs[i], 1, 1024, &v, NULL) == 0)
            return (int)v;
    }
    return 1;
}

/* --- the cycle ----------------------------------------------------------- */

static void
probe_take(struct probe *p, enum probe_part part, const char *body, size_t len)
{
    struct probe_state *st = &p->st;
    char err[64];
    cJSON *j = NULL;

    switch (part) {
    case PART_HEALTH:
        st->healthy = true;
        break;
    case PART_VERSION:
        if (json_parse(body, len, 8, &j, err, sizeof(err)) == 0)
            copy_str(st->version, sizeof(st->version),
                     json_get_str(j, "version"));
        cJSON_Delete(j);
        break;
    case PART_PS:
        (void)probe_parse_ps(st, body, len);
        break;
    default:
        (void)probe_parse_tags(st, body, len);
        break;
    }
}

static void
probe_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct probe_req *r = ud;
    struct probe *p = r->p;
    char what[200];
    size_t len;
    const char *body = http_call_body(call, &len);
    int status = http_call_status(call);

    r->call = NULL;
    if (err == 0 && status == 200) {
        probe_take(p, r->part, body, len);
    } else {
        snprintf(what, sizeof(what), "%s: %s", part_path[r->part],
                 err ? errmsg : "unexpected status");
        probe_fail(&p->st, what);
    }
    if (--p->pending == 0 && p->cb != NULL) {
        probe_done_cb cb = p->cb;

        p->cb = NULL;
        cb(p, &p->st, p->ud);
    }
}

struct probe *
probe_new(struct http_client *client, const char *base_url)
{
    struct probe *p = calloc(1, sizeof(*p));
    size_t n;

    if (p == NULL)
        return NULL;
    p->client = client;
    snprintf(p->base, sizeof(p->base), "%s", base_url);
    n = strlen(p->base);
    while (n > 0 && p->base[n - 1] == '/')
        p->base[--n] = '\0';
    probe_state_init(&p->st);
    return p;
}

int
probe_run(struct probe *p, unsigned timeout_ms, probe_done_cb cb, void *ud)
{
    char url[600], err[160];

    if (p->pending > 0)
        return -EBUSY;
    probe_state_cleanup(&p->st);
    p->cb = cb;
    p->ud = ud;
    for (int i = 0; i < PART_N; i++) {
        struct http_call_opts o = {
            .url = url,
            .connect_timeout_ms = timeout_ms,
            .total_timeout_ms = timeout_ms,
            .max_body = PROBE_MAX_BODY,
            .on_done = probe_on_done,
            .ud = &p->reqs[i],
        };

        snprintf(url, sizeof(url), "%s%s", p->base, part_path[i]);
        p->reqs[i].p = p;
        p->reqs[i].part = (enum probe_part)i;
        p->reqs[i].call = http_call_start(p->client, &o, err, sizeof(err));
        if (p->reqs[i].call == NULL)
            probe_fail(&p->st, err);
        else
            p->pending++;
    }
    if (p->pending == 0) { /* nothing could start: answer from the loop */
        p->cb = NULL;
        cb(p, &p->st, ud);
    }
    return 0;
}

void
probe_free(struct probe *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < PART_N; i++) {
        if (p->reqs[i].call != NULL)
            http_call_cancel(p->reqs[i].call);
    }
    probe_state_cleanup(&p->st);
    free(p);
}
