/*
 * api.c - herd-sim's front door: CORS, the Host check, routing, 404/405,
 * body parsing with Go's error texts, error bodies in both API shapes,
 * and fault injection on inference requests.
 *
 * Middleware order follows Ollama's gin router: CORS first, then the Host
 * check, then the route (unknown path 404, known path with another method
 * 405, both with gin's plain-text bodies).
 */
#include "sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herd/log.h"

#define JSON_CT "application/json; charset=utf-8"

struct route {
    const char *path;
    const char *methods[3];
    api_handler fn;
};

static const struct route routes[] = {
    {"/", {"GET", "HEAD"}, native_root},
    {"/api/version", {"GET", "HEAD"}, native_version},
    {"/api/generate", {"POST"}, native_generate},
    {"/api/chat", {"POST"}, native_chat},
    {"/api/embed", {"POST"}, native_embed},
    {"/api/embeddings", {"POST"}, native_embeddings},
    {"/api/tags", {"GET", "HEAD"}, native_tags},
    {"/api/ps", {"GET"}, native_ps},
    {"/api/show", {"POST"}, native_show},
    {"/api/pull", {"POST"}, native_pull},
    {"/api/push", {"POST"}, native_push},
    {"/api/delete", {"DELETE"}, native_delete},
    {"/api/copy", {"POST"}, native_copy},
    {"/api/create", {"POST"}, native_create},
    {"/v1/chat/completions", {"POST"}, oai_chat},
    {"/v1/completions", {"POST"}, oai_completions},
    {"/v1/models", {"GET"}, oai_models},
    {"/v1/embeddings", {"POST"}, oai_embeddings},
    {"/_sim/fault", {"POST", "DELETE"}, simctl_fault},
    {"/_sim/state", {"GET"}, simctl_state},
    {"/_sim/requests", {"GET", "DELETE"}, simctl_requests},
};

/* --- answers ---------------------------------------------------------- */

void
api_text(struct http_req *req, int status, const char *text)
{
    (void)http_respond(req, status, "text/plain; charset=utf-8", text,
                       strlen(text));
}

void
api_json(struct http_req *req, int status, const struct buf *body)
{
    (void)http_respond(req, status, JSON_CT, body->data ? body->data : "",
                       body->len);
}

static void
api_verror(struct http_req *req, bool openai, int status, const char *fmt,
           va_list ap)
{
    char msg[1024];
    struct buf b;
    const char *type;
    int rc;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    buf_init(&b, sizeof(msg) * 8);
    if (openai) {
        type = status == 400   ? "invalid_request_error"
               : status == 404 ? "not_found_error"
                               : "api_error";
        rc = buf_appends(&b, "{\"error\":{\"message\":");
        if (rc == 0)
            rc = json_append_str(&b, msg, strlen(msg));
        if (rc == 0)
            rc = buf_appendf(&b,
                             ",\"type\":\"%s\",\"param\":null,"
                             "\"code\":null}}",
                             type);
    } else {
        rc = buf_appends(&b, "{\"error\":");
        if (rc == 0)
            rc = json_append_str(&b, msg, strlen(msg));
        if (rc == 0)
            rc = buf_appends(&b, "}");
    }
    if (rc == 0)
        api_json(req, status, &b);
    else
        api_text(req, 500, "internal error");
    buf_cleanup(&b);
}

void
api_error(struct http_req *req, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    api_verror(req, false, status, fmt, ap);
    va_end(ap);
}

void
api_oai_error(struct http_req *req, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    api_verror(req, true, status, fmt, ap);
    va_end(ap);
}

static void
api_err(struct http_req *req, bool openai, int status, const char *msg)
{
    if (openai)
        api_oai_error(req, status, "%s", msg);
    else
        api_error(req, status, "%s", msg);
}

/* --- request bodies ------------------------------------------------------ */

int
api_parse_body(struct http_req *req, bool openai, const char *go_type,
               cJSON **out)
{
    char err[256];
    size_t len;
    const char *body;
    int rc;

    *out = NULL;
    if (http_req_too_large(req)) {
        api_err(req, openai, 413, "request body too large");
        return -1;
    }
    body = http_req_body(req, &len);
    rc = json_parse(body, len, JSON_DEFAULT_MAX_DEPTH, out, err, sizeof(err));
    if (rc == -ENODATA) {
        api_err(req, openai, 400, "missing request body");
        return -1;
    }
    if (rc != 0) {
        api_err(req, openai, 400, err);
        return -1;
    }
    if (!cJSON_IsObject(*out) && !cJSON_IsNull(*out)) {
        if (openai)
            api_oai_error(req, 400,
                          "json: cannot unmarshal %s into Go value "
                          "of type %s",
                          json_go_kind(*out), go_type);
        else
            api_error(req, 400,
                      "json: cannot unmarshal %s into Go value "
                      "of type %s",
                      json_go_kind(*out), go_type);
        cJSON_Delete(*out);
        *out = NULL;
        return -1;
    }
    if (cJSON_IsNull(*out)) { /* Go decodes null into a struct as a no-op */
        cJSON_Delete(*out);
        *out = cJSON_CreateObject();
    }
    return *out != NULL ? 0 : -1;
}

static bool
api_kind_ok(const cJSON *v, const char *kind)
{
    if (cJSON_IsNull(v)) /* null leaves a Go field at its zero value */
        return true;
    if (strcmp(kind, "string") == 0)
        return cJSON_IsString(v);
    if (strcmp(kind, "bool") == 0)
        return cJSON_IsBool(v);
    if (strcmp(kind, "number") == 0)
        return cJSON_IsNumber(v);
    if (strcmp(kind, "array") == 0)
        return cJSON_IsArray(v);
    if (strcmp(kind, "object") == 0)
        return cJSON_IsObject(v);
    return true; /* "any" */
}

int
api_check_fields(struct http_req *req, bool openai, const cJSON *obj,
                 const char *go_struct, const struct api_field *fields,
                 size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = json_get(obj, fields[i].key);

        if (v == NULL || api_kind_ok(v, fields[i].kind))
            continue;
        if (openai)
            api_oai_error(req, 400,
                          "json: cannot unmarshal %s into Go struct field "
                          "%s.%s of type %s",
                          json_go_kind(v), go_struct, fields[i].key,
                          fields[i].go_type);
        else
            api_error(req, 400,
                      "json: cannot unmarshal %s into Go struct field "
                      "%s.%s of type %s",
                      json_go_kind(v), go_struct, fields[i].key,
                      fields[i].go_type);
        return -1;
    }
    return 0;
}

/* --- faults -------------------------------------------------------------- */

/* A request held by a "hang" fault: resumed after duration, if any. */
struct hang {
    uv_timer_t timer;
    struct sim *sim;
    struct http_req *req; /* NULL once the request ended */
    api_handler fn;
};

/* Marks a request that went through its hang: its faults are done. */
static char hang_passed;

static void
hang_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
hang_on_timer(uv_timer_t *t)
{
    struct hang *hg = t->data;
    struct http_req *req = hg->req;

    hg->req = NULL;
    uv_close((uv_handle_t *)&hg->timer, hang_closed);
    if (req == NULL)
        return;
    http_req_on_done(req, NULL, NULL);
    http_req_set_data(req, &hang_passed);
    hg->fn(hg->sim, req);
}

static void
hang_on_done(struct http_req *req, enum http_end why, void *ud)
{
    struct hang *hg = ud;

    (void)req;
    (void)why;
    hg->req = NULL;
    uv_timer_stop(&hg->timer);
    uv_close((uv_handle_t *)&hg->timer, hang_closed);
}

static api_handler
api_route_fn(const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, path) == 0)
            return routes[i].fn;
    }
    if (strncmp(path, "/v1/models/", 11) == 0)
        return oai_model;
    return NULL;
}

static void
api_hang(struct sim *sim, struct http_req *req, const struct fault *f)
{
    struct hang *hg;

    log_info("req %llu: fault hang%s", (unsigned long long)http_req_id(req),
             f->duration_ns ? "" : " (until the client leaves)");
    if (f->duration_ns == 0)
        return; /* suspended until the client goes or we shut down */
    hg = calloc(1, sizeof(*hg));
    if (hg == NULL) {
        api_error(req, 500, "out of memory");
        return;
    }
    hg->sim = sim;
    hg->req = req;
    hg->fn = api_route_fn(http_req_path(req));
    uv_timer_init(sim->loop, &hg->timer);
    hg->timer.data = hg;
    uv_timer_start(&hg->timer, hang_on_timer,
                   (uint64_t)(f->duration_ns / 1000000), 0);
    http_req_on_done(req, hang_on_done, hg);
}

bool
api_apply_fault(struct sim *sim, struct http_req *req, bool openai,
                const char *model, struct gen_faults *gf)
{
    struct fault f;

    gf->slow = 1.0;
    gf->die_after = -1;
    gf->err_after = -1;
    if (http_req_data(req) == &hang_passed)
        return false;
    if (!fault_take(&sim->faults, model, &f))
        return false;
    switch (f.kind) {
    case FAULT_HTTP500:
        api_err(req, openai, 500, "simulated failure");
        return true;
    case FAULT_BUSY503:
        api_err(req, openai, 503,
                "server busy, please try again.  maximum pending requests "
                "exceeded");
        return true;
    case FAULT_HANG:
        api_hang(sim, req, &f);
        return true;
    case FAULT_DIE_AFTER:
        gf->die_after = f.after;
        return false;
    case FAULT_ERROR_AFTER:
        gf->err_after = f.after;
        return false;
    case FAULT_SLOW:
        gf->slow = f.factor;
        return false;
    default:
        return false;
    }
}

/* --- Host check (§5.2) ---------------------------------------------------- */

static bool
host_ip_allowed(const char *h)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, h, &a4) == 1) {
        uint32_t ip = ntohl(a4.s_addr);

        return (ip >> 24) == 127 || (ip >> 24) == 10 ||
               (ip >> 20) == (172u << 4 | 1) ||
               (ip >> 16) == (192u << 8 | 168) || ip == 0 ||
               (ip >> 16) == (169u << 8 | 254);
    }
    if (inet_pton(AF_INET6, h, &a6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_UNSPECIFIED(&a6) ||
               (a6.s6_addr[0] & 0xfe) == 0xfc || IN6_IS_ADDR_LINKLOCAL(&a6);
    }
    return false;
}

static bool
host_suffix(const char *h, const char *suffix)
{
    size_t n = strlen(h), m = strlen(suffix);

    return n > m && strcasecmp(h + n - m, suffix) == 0;
}

static bool
api_host_allowed(const struct sim *sim, const char *host_hdr)
{
    char h[256];
    size_t n;
    const char *end;

    if (host_hdr == NULL || *host_hdr == '\0')
        return true;
    if (*host_hdr == '[') { /* [::1]:11434 */
        end = strchr(host_hdr, ']');
        if (end == NULL)
            return false;
        n = (size_t)(end - host_hdr - 1);
        host_hdr++;
    } else {
        end = strrchr(host_hdr, ':');
        /* More than one colon without brackets: a bare IPv6 address. */
        if (end != NULL && strchr(host_hdr, ':') != end)
            end = NULL;
        n = end ? (size_t)(end - host_hdr) : strlen(host_hdr);
    }
    if (n == 0 || n >= sizeof(h))
        return n == 0;
    memcpy(h, host_hdr, n);
    h[n] = '\0';
    if (strcasecmp(h, "localhost") == 0 || strcasecmp(h, sim->hostname) == 0)
        return true;
    if (host_suffix(h, ".localhost") || host_suffix(h, ".local") ||
        host_suffix(h, ".internal"))
        return true;
    return host_ip_allowed(h);
}

/* --- CORS (§5.3) --------------------------------------------------------- */

/* Origin patterns allowed by default, besides OLLAMA_ORIGINS. */
static const char *const default_origins[] = {
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
};

/* gin-contrib/cors: a pattern may hold one '*' matching any run. */
static bool
origin_match(const char *pat, const char *origin)
{
    const char *star = strchr(pat, '*');
    size_t pre, post, n = strlen(origin);

    if (star == NULL)
        return strcmp(pat, origin) == 0;
    pre = (size_t)(star - pat);
    post = strlen(star + 1);
    return n >= pre + post && strncmp(pat, origin, pre) == 0 &&
           strcmp(origin + n - post, star + 1) == 0;
}

static bool
api_origin_allowed(const struct sim *sim, const char *origin)
{
    if (sim->all_origins)
        return true;
    for (size_t i = 0; i < sizeof(default_origins) / sizeof(*default_origins);
         i++) {
        if (origin_match(default_origins[i], origin))
            return true;
    }
    for (size_t i = 0; i < sim->n_origins; i++) {
        if (origin_match(sim->origins[i], origin))
            return true;
    }
    return false;
}

static const char cors_allow_headers[] =
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,"
    "OpenAI-Beta,x-stainless-arch,x-stainless-async,"
    "x-stainless-custom-poll-interval,x-stainless-helper-method,"
    "x-stainless-lang,x-stainless-os,x-stainless-package-version,"
    "x-stainless-poll-helper,x-stainless-retry-count,x-stainless-runtime,"
    "x-stainless-runtime-version,x-stainless-timeout";

/* Returns true when the request was answered (refused or preflight). */
static bool
api_cors(struct sim *sim, struct http_req *req)
{
    const char *origin = http_req_header(req, "Origin");
    const char *host = http_req_header(req, "Host");
    const char *acao;
    char same[300];

    if (origin == NULL || *origin == '\0')
        return false;
    if (host != NULL) {
        snprintf(same, sizeof(same), "http://%s", host);
        if (strcmp(origin, same) == 0)
            return false;
        snprintf(same, sizeof(same), "https://%s", host);
        if (strcmp(origin, same) == 0)
            return false;
    }
    if (!api_origin_allowed(sim, origin)) {
        (void)http_respond(req, 403, NULL, "", 0);
        return true;
    }
    acao = sim->all_origins ? "*" : origin;
    (void)http_set_header(req, "Access-Control-Allow-Origin", acao);
    if (!sim->all_origins)
        (void)http_set_header(req, "Vary", "Origin");
    if (strcmp(http_req_method(req), "OPTIONS") != 0)
        return false;
    (void)http_set_header(req, "Access-Control-Allow-Methods",
                          "GET,POST,PUT,PATCH,DELETE,HEAD");
    (void)http_set_header(req, "Access-Control-Allow-Headers",
                          cors_allow_headers);
    (void)http_set_header(req, "Access-Control-Max-Age", "43200");
    (void)http_respond(req, 204, NULL, "", 0);
    return true;
}

/* --- routing ----------------------------------------------------------- */

void
api_on_request(struct http_req *req, void *ud)
{
    struct sim *sim = ud;
    const char *method = http_req_method(req);
    const char *path = http_req_path(req);
    const struct route *rt = NULL;

    log_trace(TRACE_HTTP, "req %llu: %s %s from %s",
              (unsigned long long)http_req_id(req), method, path,
              http_req_peer(req));
    if (api_cors(sim, req))
        return;
    if (sim->loopback && !api_host_allowed(sim, http_req_header(req, "Host"))) {
        (void)http_respond(req, 403, NULL, "", 0);
        return;
    }
    /* Ollama's host middleware answers OPTIONS itself (loopback only). */
    if (sim->loopback && strcmp(method, "OPTIONS") == 0) {
        (void)http_respond(req, 204, NULL, "", 0);
        return;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, path) == 0) {
            rt = &routes[i];
            break;
        }
    }
    if (rt == NULL && strncmp(path, "/v1/models/", 11) == 0 &&
        path[11] != '\0' && strchr(path + 11, '/') == NULL) {
        if (strcmp(method, "GET") == 0)
            oai_model(sim, req);
        else
            api_text(req, 405, "405 method not allowed");
        return;
    }
    if (rt == NULL) {
        api_text(req, 404, "404 page not found");
        return;
    }
    for (size_t i = 0; i < 3 && rt->methods[i] != NULL; i++) {
        if (strcmp(rt->methods[i], method) == 0) {
            rt->fn(sim, req);
            return;
        }
    }
    api_text(req, 405, "405 method not allowed");
}
