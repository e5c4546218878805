/*
 * pull.c - pulls and deletes through herd, and auto-pull (see pull.h).
 *
 * A pull is one upstream POST /api/pull to one node, always streamed, so
 * that herd sees Ollama's progress lines: the last one is
 * {"status":"success"} or an {"error":...}. Whoever asked gets it in its
 * own way: the /api/pull client the lines as they come (or one JSON
 * answer), the dashboard {ok,node_id,model}, and the requests waiting on
 * an auto-pull a callback. At most one pull per model runs at a time.
 */
#include "pull.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "herd/json.h"
#include "herd/log.h"
#include "metrics.h"
#include "router.h"
#include "scorer.h"
#include "translate.h"

#define PULL_MAX_ERRBODY (16u << 10)
#define PULL_MAX_LINE    (64u << 10)
#define API_JSON         "application/json; charset=utf-8"

enum pull_kind {
    PK_AUTO,       /* only waiters */
    PK_API_STREAM, /* POST /api/pull, stream (default) */
    PK_API_ONE,    /* POST /api/pull, "stream":false */
    PK_DASHBOARD,  /* POST /dashboard/api/pull */
};

struct pull {
    struct pulls *owner;
    struct pull *next;
    enum pull_kind kind;
    char model[REGISTRY_MODEL_NAME_MAX + 1];
    char node_id[REGISTRY_NODE_ID_MAX + 1];
    struct http_call *call;
    struct http_req *client;
    bool head_sent, success, failed;
    int up_status;
    char err[512];
    struct ndjson nd;
    struct buf errbody;
    struct buf out;
    struct pull_waiter *waiters;
    int64_t started;
};

struct pulls {
    struct herd *h;
    struct pull *head;
};

struct pulls *
pulls_new(struct herd *h)
{
    struct pulls *p = calloc(1, sizeof(*p));

    if (p != NULL)
        p->h = h;
    return p;
}

static void pull_free(struct pull *pl);

static void
pull_notify(struct pull *pl, bool ok, const char *err)
{
    while (pl->waiters != NULL) {
        struct pull_waiter *w = pl->waiters;

        pl->waiters = w->next;
        w->next = NULL;
        w->done(w, ok, pl->node_id, err);
    }
}

void
pulls_free(struct pulls *p)
{
    if (p == NULL)
        return;
    while (p->head != NULL) {
        struct pull *pl = p->head;

        if (pl->call != NULL) {
            http_call_cancel(pl->call);
            pl->call = NULL;
        }
        pull_notify(pl, false, "herd is shutting down");
        pull_free(pl);
    }
    free(p);
}

static struct pull *
pulls_find(struct pulls *p, const char *model)
{
    for (struct pull *pl = p->head; pl != NULL; pl = pl->next) {
        if (strcmp(pl->model, model) == 0)
            return pl;
    }
    return NULL;
}

static void
pull_unlink(struct pull *pl)
{
    struct pull **pp = &pl->owner->head;

    while (*pp != NULL && *pp != pl)
        pp = &(*pp)->next;
    if (*pp == pl)
        *pp = pl->next;
}

static void
pull_free(struct pull *pl)
{
    pull_unlink(pl);
    if (pl->client != NULL)
        http_req_on_done(pl->client, NULL, NULL);
    ndjson_cleanup(&pl->nd);
    buf_cleanup(&pl->errbody);
    buf_cleanup(&pl->out);
    free(pl);
}

/* "llama3" -> "llama3:latest". */
static void
pull_normalise(const char *in, char *out, size_t n)
{
    const char *slash = strrchr(in, '/');

    snprintf(out, n, "%s%s", in,
             strchr(slash ? slash : in, ':') || !*in ? "" : ":latest");
}

/* The routable node with the most free memory that fits model. */
static const struct registry_node *
pull_pick_node(struct herd *h, const char *model)
{
    double need = scorer_estimate_size_gb(model), best_avail = -1;
    const struct registry_node *best = NULL;

    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);
        double avail = n->hb.mem_available_gb;

        if (!registry_node_routable(n) || !n->hb.ollama_healthy ||
            router_node_health(h->router, n->id) != NULL)
            continue;
        if (n->hb.has_capacity && n->hb.capacity.ceiling_gb > 0 &&
            n->hb.capacity.ceiling_gb < avail)
            avail = n->hb.capacity.ceiling_gb;
        if (avail >= need && avail > best_avail) {
            best = n;
            best_avail = avail;
        }
    }
    return best;
}

/* --- the upstream call ------------------------------------------------------
 */

static void
pull_answer(struct pull *pl, bool ok)
{
    struct http_req *req = pl->client;
    struct buf *b = &pl->out;
    char msg[700];
    int rc = 0;

    if (req == NULL)
        return;
    pl->client = NULL;
    http_req_on_done(req, NULL, NULL);
    snprintf(msg, sizeof(msg), "Pull failed on node '%s': %s", pl->node_id,
             pl->err);
    buf_reset(b);
    switch (pl->kind) {
    case PK_API_STREAM:
        if (!pl->head_sent) {
            http_set_header(req, "X-Fleet-Node", pl->node_id);
            if (http_stream_begin(req, 200, "application/x-ndjson") != 0)
                return;
        }
        if (!ok) {
            rc = buf_appends(b, "{\"error\":");
            if (rc == 0)
                rc = json_append_str(b, msg, strlen(msg));
            if (rc == 0)
                rc = buf_appends(b, "}\n");
            if (rc == 0)
                http_stream_write(req, b->data, b->len);
        }
        http_stream_end(req);
        return;
    case PK_API_ONE:
        http_set_header(req, "X-Fleet-Node", pl->node_id);
        if (ok) {
            static const char body[] = "{\"status\":\"success\"}";

            http_respond(req, 200, API_JSON, body, sizeof(body) - 1);
        } else {
            api_error(req, false, 500, NULL, "%s", msg);
        }
        return;
    case PK_DASHBOARD:
        rc = buf_appendf(b, "{\"ok\":%s,\"node_id\":", ok ? "true" : "false");
        if (rc == 0)
            rc = json_append_str(b, pl->node_id, strlen(pl->node_id));
        if (rc == 0)
            rc = buf_appends(b, ",\"model\":");
        if (rc == 0)
            rc = json_append_str(b, pl->model, strlen(pl->model));
        if (rc == 0 && !ok) {
            rc = buf_appends(b, ",\"error\":");
            if (rc == 0)
                rc = json_append_str(b, msg, strlen(msg));
        }
        if (rc == 0)
            rc = buf_appends(b, "}");
        if (rc == 0)
            http_respond(req, ok ? 200 : 502, API_JSON, b->data, b->len);
        else
            api_error(req, false, 500, NULL, "out of memory");
        return;
    case PK_AUTO:
        return;
    }
}

static int
pull_line(const char *line, size_t len, void *ud)
{
    struct pull *pl = ud;
    cJSON *v = NULL;

    if (json_parse(line, len, 16, &v, NULL, 0) == 0) {
        const char *e = json_get_str(v, "error");
        const char *st = json_get_str(v, "status");

        if (e != NULL) {
            pl->failed = true;
            snprintf(pl->err, sizeof(pl->err), "%s", e);
        } else if (st != NULL && strcmp(st, "success") == 0) {
            pl->success = true;
        }
    }
    cJSON_Delete(v);
    if (pl->kind == PK_API_STREAM && pl->client != NULL) {
        if (!pl->head_sent) {
            pl->head_sent = true;
            http_set_header(pl->client, "X-Fleet-Node", pl->node_id);
            if (http_stream_begin(pl->client, 200, "application/x-ndjson") != 0)
                return 0;
        }
        /* Ollama's line, relayed as it is */
        http_stream_write(pl->client, line, len);
        http_stream_write(pl->client, "\n", 1);
    }
    return 0;
}

static void
pull_on_response(struct http_call *call, int status, void *ud)
{
    struct pull *pl = ud;

    (void)call;
    pl->up_status = status;
}

static int
pull_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct pull *pl = ud;

    (void)call;
    if (pl->up_status != 200) {
        if (pl->errbody.len + n <= PULL_MAX_ERRBODY &&
            buf_append(&pl->errbody, p, n) != 0)
            return 0;
        return 0;
    }
    if (ndjson_feed(&pl->nd, p, n, pull_line, pl) == -E2BIG) {
        pl->failed = true;
        snprintf(pl->err, sizeof(pl->err), "a progress line was too long");
    }
    return 0;
}

static void
pull_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct pull *pl = ud;
    struct herd *h = pl->owner->h;
    bool ok;

    (void)call;
    pl->call = NULL;
    if (err == 0 && pl->up_status == 200)
        ndjson_finish(&pl->nd, pull_line, pl);
    if (err != 0 && pl->err[0] == '\0')
        snprintf(pl->err, sizeof(pl->err), "%s",
                 err == -ETIMEDOUT ? "timed out (FLEET_AUTO_PULL_TIMEOUT)"
                                   : errmsg);
    if (err == 0 && pl->up_status != 200 && pl->err[0] == '\0') {
        cJSON *v = NULL;
        const char *e = NULL;

        if (json_parse(pl->errbody.data ? pl->errbody.data : "",
                       pl->errbody.len, 8, &v, NULL, 0) == 0)
            e = json_get_str(v, "error");
        snprintf(pl->err, sizeof(pl->err), "HTTP %d from node%s%s",
                 pl->up_status, e ? ": " : "", e ? e : "");
        cJSON_Delete(v);
    }
    ok = err == 0 && pl->up_status == 200 && pl->success && !pl->failed;
    if (!ok && pl->err[0] == '\0')
        snprintf(pl->err, sizeof(pl->err),
                 "the node's pull ended without success");
    metrics_pull(h->metrics, ok);
    if (ok) {
        if (registry_node_add_model(h->reg, pl->node_id, pl->model) == 0)
            router_fleet_changed(h->router);
        log_info("pulled %s onto %s in %.1f s", pl->model, pl->node_id,
                 (double)(herd_now_ns() - pl->started) / 1e9);
    } else {
        log_warn("pull of %s onto %s failed: %s", pl->model, pl->node_id,
                 pl->err);
    }
    pull_answer(pl, ok);
    pull_notify(pl, ok, pl->err);
    pull_free(pl);
}

static void
pull_on_client_done(struct http_req *req, enum http_end why, void *ud)
{
    struct pull *pl = ud;

    (void)req;
    (void)why;
    pl->client = NULL;
    if (pl->waiters == NULL && pl->call != NULL) {
        /* nobody wants it any more: stop, as Ollama does */
        http_call_cancel(pl->call);
        pl->call = NULL;
        log_info("pull of %s onto %s cancelled: the client left", pl->model,
                 pl->node_id);
        pull_free(pl);
    }
}

static struct pull *
pull_start(struct pulls *p, const char *model, const struct registry_node *n,
           enum pull_kind kind, struct http_req *client, char *err,
           size_t errlen)
{
    static const char *const headers[] = {"Content-Type: application/json",
                                          NULL};
    struct http_call_opts o = {0};
    struct pull *pl = calloc(1, sizeof(*pl));
    char url[400], body[512];
    struct buf b;

    if (pl == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pl->owner = p;
    pl->kind = kind;
    pl->started = herd_now_ns();
    snprintf(pl->model, sizeof(pl->model), "%s", model);
    snprintf(pl->node_id, sizeof(pl->node_id), "%s", n->id);
    ndjson_init(&pl->nd, PULL_MAX_LINE);
    buf_init(&pl->errbody, PULL_MAX_ERRBODY);
    buf_init(&pl->out, 64 * 1024);
    buf_init(&b, sizeof(body));
    if (buf_appends(&b, "{\"model\":") != 0 ||
        json_append_str(&b, model, strlen(model)) != 0 ||
        buf_appends(&b, ",\"stream\":true}") != 0) {
        buf_cleanup(&b);
        pull_free(pl);
        snprintf(err, errlen, "model name too long");
        return NULL;
    }
    snprintf(url, sizeof(url), "%s/api/pull", n->ollama_base_url);
    o.method = "POST";
    o.url = url;
    o.headers = headers;
    o.body = b.data;
    o.body_len = b.len;
    o.connect_timeout_ms = (unsigned)(p->h->cfg->connect_timeout_ns / 1000000);
    o.total_timeout_ms = (unsigned)(p->h->cfg->auto_pull_timeout_ns / 1000000);
    o.on_response = pull_on_response;
    o.on_data = pull_on_data;
    o.on_done = pull_on_done;
    o.ud = pl;
    pl->next = p->head;
    p->head = pl;
    if (client != NULL) {
        pl->client = client;
        http_req_on_done(client, pull_on_client_done, pl);
    }
    pl->call = http_call_start(p->h->cli, &o, err, errlen);
    buf_cleanup(&b);
    if (pl->call == NULL) {
        pl->client = NULL;
        if (client != NULL)
            http_req_on_done(client, NULL, NULL);
        pull_free(pl);
        return NULL;
    }
    log_info("pulling %s onto %s", model, n->id);
    return pl;
}

int
pulls_auto(struct pulls *p, const char *model, struct pull_waiter *w, char *err,
           size_t errlen)
{
    struct pull *pl = pulls_find(p, model);
    const struct registry_node *n;

    if (pl == NULL) {
        n = pull_pick_node(p->h, model);
        if (n == NULL) {
            snprintf(err, errlen,
                     "no node has enough available memory to pull it "
                     "(about %.1f GB)",
                     scorer_estimate_size_gb(model));
            return -ENOSPC;
        }
        pl = pull_start(p, model, n, PK_AUTO, NULL, err, errlen);
        if (pl == NULL)
            return -ENOMEM;
    }
    w->next = pl->waiters;
    pl->waiters = w;
    return 0;
}

void
pulls_forget(struct pulls *p, struct pull_waiter *w)
{
    for (struct pull *pl = p->head; pl != NULL; pl = pl->next) {
        struct pull_waiter **pp = &pl->waiters;

        while (*pp != NULL) {
            if (*pp == w) {
                *pp = w->next;
                w->next = NULL;
                return;
            }
            pp = &(*pp)->next;
        }
    }
}

/* --- the HTTP side -----------------------------------------------------------
 */

bool
pulls_admin_ok(struct herd *h, struct http_req *req, bool openai)
{
    const char *want = h->cfg->admin_key;
    const char *auth = http_req_header(req, "Authorization");
    const char *alt = http_req_header(req, "X-Admin-Key");
    const char *got = NULL;
    size_t wn, gn;
    unsigned char diff;

    if (want == NULL || *want == '\0')
        return true;
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)
        got = auth + 7;
    else if (alt != NULL)
        got = alt;
    if (got == NULL) {
        http_set_header(req, "WWW-Authenticate", "Bearer");
        api_error(req, openai, 401, NULL,
                  "this endpoint needs the admin key: send Authorization: "
                  "Bearer <FLEET_ADMIN_KEY>");
        return false;
    }
    wn = strlen(want);
    gn = strlen(got);
    diff = (unsigned char)(wn != gn);
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned char)(want[i] ^ (i < gn ? got[i] : 0));
    if (diff != 0) {
        api_error(req, openai, 403, NULL, "wrong admin key");
        return false;
    }
    return true;
}

/* Ollama's name grammar, roughly: [host[:port]/][namespace/]model[:tag],
 * parts of letters, digits, '.', '-', '_' starting with a letter or digit. */
static bool
pull_name_ok(const char *s)
{
    const char *slash = strrchr(s, '/'), *tail = slash ? slash + 1 : s;
    const char *colon = strchr(tail, ':');
    size_t part = 0;

    if (*s == '\0' || strlen(s) > 200 || *tail == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9');

        if (c == '/' || (c == ':' && p == colon)) {
            if (part == 0)
                return false; /* an empty part */
            part = 0;
            continue;
        }
        if (c == ':' && p < tail)
            continue; /* a host's port */
        if (!alnum && c != '.' && c != '-' && c != '_')
            return false;
        if (part == 0 && !alnum && !(p > colon && colon && c == '_'))
            return false;
        part++;
    }
    return part > 0;
}

/* Parses {model|name, node_id}; answers 400 itself and returns NULL. */
static cJSON *
pull_body(struct http_req *req, char *model, size_t mlen, const char **node,
          bool node_required)
{
    const char *body, *m;
    size_t len;
    cJSON *v = NULL;
    char err[256];

    body = http_req_body(req, &len);
    if (json_parse(body, len, 16, &v, err, sizeof(err)) != 0) {
        api_error(req, false, 400, NULL, "%s", err);
        return NULL;
    }
    m = json_get_str(v, "model");
    if (m == NULL || *m == '\0')
        m = json_get_str(v, "name");
    *node = json_get_str(v, "node_id");
    if (m == NULL || *m == '\0' || strlen(m) > REGISTRY_MODEL_NAME_MAX - 8) {
        api_error(req, false, 400, NULL, "model is required");
        cJSON_Delete(v);
        return NULL;
    }
    if (node_required && (*node == NULL || **node == '\0')) {
        api_error(req, false, 400, NULL, "node_id and model are required");
        cJSON_Delete(v);
        return NULL;
    }
    while (*m == ' ')
        m++;
    if (!pull_name_ok(m)) {
        api_error(req, false, 400, NULL, "invalid model name: '%s'", m);
        cJSON_Delete(v);
        return NULL;
    }
    pull_normalise(m, model, mlen);
    return v;
}

static void
pull_http(struct herd *h, struct http_req *req, bool dashboard)
{
    struct pulls *p = h->pulls;
    char model[REGISTRY_MODEL_NAME_MAX + 1], err[256];
    const char *node_id;
    const struct registry_node *n;
    enum pull_kind kind;
    cJSON *v;

    if (!pulls_admin_ok(h, req, false))
        return;
    v = pull_body(req, model, sizeof(model), &node_id, dashboard);
    if (v == NULL)
        return;
    kind = dashboard                          ? PK_DASHBOARD
           : json_get_bool(v, "stream", true) ? PK_API_STREAM
                                              : PK_API_ONE;
    if (pulls_find(p, model) != NULL) {
        api_error(req, false, 409, NULL, "model '%s' is already being pulled",
                  model);
        goto out;
    }
    if (node_id != NULL && *node_id) {
        n = registry_find(h->reg, node_id);
        if (n == NULL || !registry_node_routable(n)) {
            api_error(req, false, 404, NULL, "node '%s' is %s", node_id,
                      n ? "not online" : "unknown");
            goto out;
        }
    } else if ((n = pull_pick_node(h, model)) == NULL) {
        api_error(req, false, 503, NULL,
                  "No node has enough available memory to pull this model");
        goto out;
    }
    if (pull_start(p, model, n, kind, req, err, sizeof(err)) == NULL)
        api_error(req, false, 502, NULL, "%s", err);
out:
    cJSON_Delete(v);
}

void
api_pull(struct herd *h, struct http_req *req)
{
    pull_http(h, req, false);
}

void
api_dashboard_pull(struct herd *h, struct http_req *req)
{
    pull_http(h, req, true);
}

/* --- delete ----------------------------------------------------------------
 */

#define DEL_MAX_NODES 256

struct del {
    struct herd *h;
    struct http_req *req;
    bool dashboard;
    char model[REGISTRY_MODEL_NAME_MAX + 1];
    size_t pending, n;
    struct {
        char node[REGISTRY_NODE_ID_MAX + 1];
        struct http_call *call;
        int status;
        bool ok;
    } t[DEL_MAX_NODES];
};

static void
del_finish(struct del *d)
{
    struct http_req *req = d->req;
    struct buf b;
    size_t ok = 0;
    int rc;

    buf_init(&b, 1u << 20);
    for (size_t i = 0; i < d->n; i++) {
        if (d->t[i].ok) {
            ok++;
            registry_node_remove_model(d->h->reg, d->t[i].node, d->model);
        }
    }
    if (ok > 0)
        router_fleet_changed(d->h->router);
    if (req != NULL) {
        http_req_on_done(req, NULL, NULL);
        if (d->dashboard) {
            rc = buf_appendf(&b,
                             "{\"ok\":%s,\"node_id\":", ok ? "true" : "false");
            if (rc == 0)
                rc = json_append_str(&b, d->t[0].node, strlen(d->t[0].node));
            if (rc == 0)
                rc = buf_appends(&b, ",\"model\":");
            if (rc == 0)
                rc = json_append_str(&b, d->model, strlen(d->model));
            if (rc == 0)
                rc = buf_appends(&b, "}");
        } else {
            rc = buf_appends(&b, "{\"status\":\"success\",\"deleted_from\":[");
            for (size_t i = 0, k = 0; rc == 0 && i < d->n; i++) {
                if (!d->t[i].ok)
                    continue;
                if (k++ > 0)
                    rc = buf_appends(&b, ",");
                if (rc == 0)
                    rc =
                        json_append_str(&b, d->t[i].node, strlen(d->t[i].node));
            }
            if (rc == 0)
                rc = buf_appends(&b, "]}");
        }
        if (rc != 0)
            api_error(req, false, 500, NULL, "out of memory");
        else if (ok > 0 || d->dashboard)
            http_respond(req, ok ? 200 : 502, API_JSON, b.data, b.len);
        else
            api_error(req, false, d->t[0].status == 404 ? 404 : 502, NULL,
                      "model '%s' could not be deleted (HTTP %d from node "
                      "'%s')",
                      d->model, d->t[0].status, d->t[0].node);
    }
    buf_cleanup(&b);
    free(d);
}

static void
del_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct del *d = ud;

    (void)errmsg;
    for (size_t i = 0; i < d->n; i++) {
        if (d->t[i].call == call) {
            d->t[i].call = NULL;
            d->t[i].status = err == 0 ? http_call_status(call) : 0;
            d->t[i].ok = err == 0 && d->t[i].status == 200;
        }
    }
    if (--d->pending == 0)
        del_finish(d);
}

static void
del_on_req_done(struct http_req *req, enum http_end why, void *ud)
{
    struct del *d = ud;

    (void)req;
    (void)why;
    d->req = NULL; /* the deletes go on; nobody to tell */
}

static void
del_http(struct herd *h, struct http_req *req, bool dashboard)
{
    static const char *const headers[] = {"Content-Type: application/json",
                                          NULL};
    const char *node_id;
    struct del *d;
    cJSON *v;
    struct buf body;

    if (!pulls_admin_ok(h, req, false))
        return;
    if ((d = calloc(1, sizeof(*d))) == NULL) {
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    v = pull_body(req, d->model, sizeof(d->model), &node_id, dashboard);
    if (v == NULL) {
        free(d);
        return;
    }
    d->h = h;
    d->dashboard = dashboard;
    for (size_t i = 0; i < registry_count(h->reg) && d->n < DEL_MAX_NODES;
         i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        if (node_id != NULL && *node_id
                ? strcmp(n->id, node_id) != 0
                : !(registry_node_available(n, d->model) ||
                    registry_node_loaded(n, d->model)))
            continue;
        snprintf(d->t[d->n++].node, sizeof(d->t[0].node), "%s", n->id);
    }
    cJSON_Delete(v);
    if (d->n == 0) {
        if (node_id != NULL && *node_id)
            api_error(req, false, 404, NULL, "node '%s' is unknown", node_id);
        else
            api_error(req, false, 404, NULL, "model '%s' not found", d->model);
        free(d);
        return;
    }
    buf_init(&body, 4096);
    if (buf_appends(&body, "{\"model\":") != 0 ||
        json_append_str(&body, d->model, strlen(d->model)) != 0 ||
        buf_appends(&body, "}") != 0) {
        buf_cleanup(&body);
        free(d);
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    d->req = req;
    http_req_on_done(req, del_on_req_done, d);
    d->pending = d->n + 1; /* held until every call is started */
    for (size_t i = 0; i < d->n; i++) {
        const struct registry_node *n = registry_find(h->reg, d->t[i].node);
        struct http_call_opts o = {0};
        char url[400];

        snprintf(url, sizeof(url), "%s/api/delete", n->ollama_base_url);
        o.method = "DELETE";
        o.url = url;
        o.headers = headers;
        o.body = body.data;
        o.body_len = body.len;
        o.connect_timeout_ms = (unsigned)(h->cfg->connect_timeout_ns / 1000000);
        o.total_timeout_ms = 30000;
        o.on_done = del_on_done;
        o.ud = d;
        d->t[i].call = http_call_start(h->cli, &o, NULL, 0);
        if (d->t[i].call == NULL)
            d->pending--;
    }
    buf_cleanup(&body);
    if (--d->pending == 0)
        del_finish(d);
}

void
api_delete(struct herd *h, struct http_req *req)
{
    del_http(h, req, false);
}

void
api_dashboard_delete(struct herd *h, struct http_req *req)
{
    del_http(h, req, true);
}
