/*
 * api.c - the coordinator's HTTP front end.
 *
 * One table maps method + path to a handler. Inference goes to
 * exchange.c; the fleet endpoints, the heartbeat and the listings are
 * answered here from the registry and the router; /api/show and
 * /api/version are relayed to a node that can answer them.
 */
#include "api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard.h"
#include "exchange.h"
#include "fleetview.h"
#include "herd/clock.h"
#include "herd/json.h"
#include "herd/log.h"
#include "metrics.h"
#include "pull.h"
#include "router.h"

#define API_JSON "application/json; charset=utf-8"

/* --- errors --------------------------------------------------------------- */

static const char *
api_oai_type(int status)
{
    return status == 400   ? "invalid_request_error"
           : status == 404 ? "not_found_error"
                           : "api_error";
}

int
api_error_body(struct buf *b, bool openai, int status, const char *type,
               const char *msg)
{
    int rc;

    if (!openai) {
        rc = buf_appends(b, "{\"error\":");
        if (rc == 0)
            rc = json_append_str(b, msg, strlen(msg));
        return rc == 0 ? buf_appends(b, "}") : rc;
    }
    rc = buf_appends(b, "{\"error\":{\"message\":");
    if (rc == 0)
        rc = json_append_str(b, msg, strlen(msg));
    if (rc == 0)
        rc = buf_appendf(b, ",\"type\":\"%s\",\"param\":null,\"code\":null}}",
                         type ? type : api_oai_type(status));
    return rc;
}

void
api_error(struct http_req *req, bool openai, int status, const char *type,
          const char *fmt, ...)
{
    char msg[2048];
    struct buf b;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    buf_init(&b, 64 * 1024);
    if (api_error_body(&b, openai, status, type, msg) != 0) {
        static const char fallback[] = "{\"error\":\"internal error\"}";

        http_respond(req, status, API_JSON, fallback, sizeof(fallback) - 1);
    } else {
        http_respond(req, status, API_JSON, b.data, b.len);
    }
    buf_cleanup(&b);
}

static void
api_json(struct http_req *req, int status, struct buf *b, int rc)
{
    if (rc != 0) {
        api_error(req, false, 500, NULL, "could not build the answer (%s)",
                  rc == -E2BIG ? "too large" : "out of memory");
        return;
    }
    http_respond(req, status, API_JSON, b->data, b->len);
}

/* --- heartbeat ------------------------------------------------------------ */

/* Constant-time comparison (the token must not leak through timing). */
static bool
api_token_ok(const char *want, const char *auth)
{
    size_t wn = strlen(want), an;
    unsigned char diff = 0;

    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    auth += 7;
    an = strlen(auth);
    diff = (unsigned char)(an != wn);
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned char)(want[i] ^ (i < an ? auth[i] : 0));
    return diff == 0;
}

static void
api_heartbeat(struct herd *h, struct http_req *req)
{
    static int64_t last_refusal_log;
    struct registry_reply reply;
    const char *body;
    size_t len;
    char err[512];
    struct buf b;
    int rc;

    if (h->cfg->token != NULL && h->cfg->token[0] != '\0' &&
        !api_token_ok(h->cfg->token, http_req_header(req, "Authorization"))) {
        int64_t now = herd_now_ns();

        h->stats.heartbeats_refused++;
        if (now - last_refusal_log > 60 * NS_PER_SEC) {
            last_refusal_log = now;
            log_warn("heartbeat from %s refused: missing or wrong fleet "
                     "token (%llu refused so far)",
                     http_req_peer(req),
                     (unsigned long long)h->stats.heartbeats_refused);
        }
        http_set_header(req, "WWW-Authenticate", "Bearer");
        api_error(req, false, 401, NULL,
                  "invalid or missing fleet token: send Authorization: "
                  "Bearer <FLEET_TOKEN>");
        return;
    }
    if (http_req_too_large(req)) {
        api_error(req, false, 413, NULL,
                  "heartbeat body is larger than the limit");
        return;
    }
    body = http_req_body(req, &len);
    rc = registry_heartbeat(h->reg, body, len, http_req_peer(req),
                            herd_now_ns(), &reply, err, sizeof(err));
    if (rc != 0) {
        h->stats.heartbeats_refused++;
        log_info("heartbeat from %s refused: %s", http_req_peer(req), err);
        api_error(req, false, registry_error_status(rc), NULL, "%s", err);
        return;
    }
    h->stats.heartbeats++;
    if (reply.created)
        router_fleet_changed(h->router);
    else
        router_node_changed(h->router, reply.node_id);
    buf_init(&b, 4096);
    api_json(req, 200, &b, registry_reply_json(&reply, &b));
    buf_cleanup(&b);
}

/* --- fleet ---------------------------------------------------------------- */

static int
api_fleet_summary(struct herd *h, struct buf *b)
{
    size_t loaded = 0;
    uint64_t inf, done, failed;

    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        if (registry_node_routable(n))
            loaded += n->hb.n_loaded;
    }
    router_totals(h->router, &inf, &done, &failed);
    return buf_appendf(b,
                       "\"fleet\":{\"nodes_total\":%zu,\"nodes_online\":%zu,"
                       "\"nodes_degraded\":%zu,\"nodes_offline\":%zu,"
                       "\"nodes_rejected\":%zu,\"models_loaded\":%zu,"
                       "\"requests_active\":%llu,\"requests_held\":%zu}",
                       registry_count(h->reg),
                       registry_count_status(h->reg, REGISTRY_ONLINE),
                       registry_count_status(h->reg, REGISTRY_DEGRADED),
                       registry_count_status(h->reg, REGISTRY_OFFLINE),
                       registry_count_status(h->reg, REGISTRY_REJECTED), loaded,
                       (unsigned long long)inf, router_held(h->router));
}

static void
api_fleet_status(struct herd *h, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, 256u << 20);
    rc = buf_appends(&b, "{");
    if (rc == 0)
        rc = api_fleet_summary(h, &b);
    if (rc == 0)
        rc = buf_appends(&b, ",\"nodes\":");
    if (rc == 0)
        rc = registry_status_json(h->reg, herd_now_ns(), &b);
    if (rc == 0)
        rc = buf_appends(&b, ",\"queues\":");
    if (rc == 0)
        rc = router_queues_json(h->router, &b);
    if (rc == 0)
        rc = buf_appends(&b, ",\"node_health\":");
    if (rc == 0)
        rc = router_health_json(h->router, &b);
    if (rc == 0)
        rc = buf_appendf(&b, ",\"timestamp\":%.6f}",
                         (double)clock_wall_ns() / 1e9);
    api_json(req, 200, &b, rc);
    buf_cleanup(&b);
}

static void
api_fleet_queue(struct herd *h, struct http_req *req)
{
    uint64_t inf, done, failed;
    size_t held = router_held(h->router);
    struct buf b;
    int rc;

    router_totals(h->router, &inf, &done, &failed);
    buf_init(&b, 64u << 20);
    rc = buf_appendf(&b,
                     "{\"queue_depth\":%llu,\"pending\":%zu,\"in_flight\":%llu,"
                     "\"completed\":%llu,\"failed\":%llu,"
                     "\"estimated_wait_ms\":",
                     (unsigned long long)(inf + held), held,
                     (unsigned long long)inf, (unsigned long long)done,
                     (unsigned long long)failed);
    if (rc == 0 && held > 0)
        rc = buf_appendf(&b, "%u", router_retry_after_s(h->router) * 1000);
    else if (rc == 0)
        rc = buf_appends(&b, "null");
    if (rc == 0)
        rc = buf_appendf(&b, ",\"nodes_online\":%zu,\"queues\":",
                         registry_count_status(h->reg, REGISTRY_ONLINE));
    if (rc == 0)
        rc = router_queues_json(h->router, &b);
    if (rc == 0)
        rc = buf_appendf(&b, ",\"timestamp\":%.6f}",
                         (double)clock_wall_ns() / 1e9);
    api_json(req, 200, &b, rc);
    buf_cleanup(&b);
}

/* --- listings ------------------------------------------------------------- */

static void
api_tags(struct herd *h, struct http_req *req)
{
    struct buf b;

    buf_init(&b, 64u << 20);
    api_json(req, 200, &b, fleetview_tags(h->reg, &b));
    buf_cleanup(&b);
}

static void
api_ps(struct herd *h, struct http_req *req)
{
    struct buf b;

    buf_init(&b, 64u << 20);
    api_json(req, 200, &b, fleetview_ps(h->reg, &b));
    buf_cleanup(&b);
}

static void
api_models(struct herd *h, struct http_req *req)
{
    struct buf b;

    buf_init(&b, 64u << 20);
    api_json(req, 200, &b,
             fleetview_models(h->reg, clock_wall_ns() / NS_PER_SEC, &b));
    buf_cleanup(&b);
}

static void
api_model(struct herd *h, struct http_req *req, const char *id)
{
    struct buf b;
    char name[REGISTRY_MODEL_NAME_MAX + 16];
    const char *slash = strrchr(id, '/');
    int rc;

    snprintf(name, sizeof(name), "%s%s", id,
             strchr(slash ? slash : id, ':') ? "" : ":latest");
    buf_init(&b, 4096);
    rc = fleetview_model(h->reg, name, clock_wall_ns() / NS_PER_SEC, &b);
    if (rc == -ENOENT)
        rc = fleetview_model(h->reg, id, clock_wall_ns() / NS_PER_SEC, &b);
    if (rc == -ENOENT)
        api_error(req, true, 404, NULL, "model '%s' not found", id);
    else
        api_json(req, 200, &b, rc);
    buf_cleanup(&b);
}

/* --- relayed to one node: /api/show, /api/version ------------------------- */

struct relay {
    struct herd *h;
    struct http_req *req;
    struct http_call *call;
    bool version; /* /api/version: wrap the node's answer */
};

static void
relay_on_req_done(struct http_req *req, enum http_end why, void *ud)
{
    struct relay *r = ud;

    (void)req;
    (void)why;
    if (r->call != NULL)
        http_call_cancel(r->call);
    free(r);
}

static void
relay_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct relay *r = ud;
    size_t len;
    const char *body = http_call_body(call, &len);
    int status = http_call_status(call);

    r->call = NULL;
    if (r->version) {
        cJSON *v = NULL;
        const char *ver = NULL;
        struct buf b;
        int rc;

        if (err == 0 && status == 200 &&
            json_parse(body, len, 8, &v, NULL, 0) == 0)
            ver = json_get_str(v, "version");
        buf_init(&b, 4096);
        rc = buf_appends(&b, "{\"version\":");
        if (rc == 0)
            rc = json_append_str(&b, ver ? ver : "unknown",
                                 strlen(ver ? ver : "unknown"));
        if (rc == 0)
            rc = buf_appends(&b, ",\"herd_version\":\"" HERD_VERSION "\"}");
        cJSON_Delete(v);
        api_json(r->req, 200, &b, rc);
        buf_cleanup(&b);
        return;
    }
    if (err != 0) {
        api_error(r->req, false, 502, NULL, "node unreachable: %s", errmsg);
        return;
    }
    http_respond(r->req, status, API_JSON, body, len);
}

static void
api_relay(struct herd *h, struct http_req *req, const struct registry_node *n,
          const char *method, const char *path, bool version)
{
    struct relay *r = calloc(1, sizeof(*r));
    static const char *const headers[] = {"Content-Type: application/json",
                                          NULL};
    struct http_call_opts o = {0};
    char url[400], err[256];
    size_t len;

    if (r == NULL) {
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    r->h = h;
    r->req = req;
    r->version = version;
    snprintf(url, sizeof(url), "%s%s", n->ollama_base_url, path);
    o.method = method;
    o.url = url;
    o.headers = headers;
    o.body = strcmp(method, "POST") == 0 ? http_req_body(req, &len) : NULL;
    o.body_len = o.body ? len : 0;
    o.connect_timeout_ms = (unsigned)(h->cfg->connect_timeout_ns / 1000000);
    o.total_timeout_ms = 30000;
    o.max_body = 64u << 20;
    o.on_done = relay_on_done;
    o.ud = r;
    http_req_on_done(req, relay_on_req_done, r);
    r->call = http_call_start(h->cli, &o, err, sizeof(err));
    if (r->call == NULL)
        api_error(req, false, 502, NULL, "%s", err);
}

static const struct registry_node *
api_first_routable(struct herd *h)
{
    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        if (registry_node_routable(n) && n->hb.ollama_healthy)
            return n;
    }
    return NULL;
}

static void
api_version(struct herd *h, struct http_req *req)
{
    const struct registry_node *n = api_first_routable(h);

    if (n == NULL) {
        static const char body[] = "{\"version\":\"unknown\",\"herd_version\":"
                                   "\"" HERD_VERSION "\"}";

        http_respond(req, 200, API_JSON, body, sizeof(body) - 1);
        return;
    }
    api_relay(h, req, n, "GET", "/api/version", true);
}

static void
api_show(struct herd *h, struct http_req *req)
{
    const struct registry_node *best = NULL;
    const char *body, *model;
    cJSON *v = NULL;
    char name[REGISTRY_MODEL_NAME_MAX + 16], err[256];
    size_t len;

    body = http_req_body(req, &len);
    if (json_parse(body, len, 64, &v, err, sizeof(err)) != 0) {
        api_error(req, false, 400, NULL, "%s", err);
        return;
    }
    model = json_get_str(v, "model");
    if (model == NULL || *model == '\0')
        model = json_get_str(v, "name");
    if (model == NULL || *model == '\0') {
        cJSON_Delete(v);
        api_error(req, false, 400, NULL, "model is required");
        return;
    }
    snprintf(name, sizeof(name), "%s%s", model,
             strchr(strrchr(model, '/') ? strrchr(model, '/') : model, ':')
                 ? ""
                 : ":latest");
    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        if (!registry_node_routable(n) || !n->hb.ollama_healthy)
            continue;
        if (registry_node_loaded(n, name)) {
            best = n;
            break;
        }
        if (best == NULL && registry_node_available(n, name))
            best = n;
    }
    if (best == NULL) {
        api_error(req, false, 404, NULL, "model '%s' not found", model);
        cJSON_Delete(v);
        return;
    }
    cJSON_Delete(v);
    http_set_header(req, "X-Fleet-Node", best->id);
    api_relay(h, req, best, "POST", "/api/show", false);
}

static void
api_metrics(struct herd *h, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, 64u << 20);
    rc = metrics_render(h->metrics, h, &b);
    if (rc != 0)
        api_error(req, false, 500, NULL, "could not render the metrics");
    else
        http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                     b.data, b.len);
    buf_cleanup(&b);
}

/* --- dispatch ------------------------------------------------------------- */

enum api_route {
    R_ROOT,
    R_HEARTBEAT,
    R_FLEET_STATUS,
    R_FLEET_QUEUE,
    R_CHAT,
    R_GENERATE,
    R_EMBED,
    R_EMBEDDINGS,
    R_SHOW,
    R_TAGS,
    R_PS,
    R_VERSION,
    R_V1_CHAT,
    R_V1_COMPLETIONS,
    R_V1_EMBEDDINGS,
    R_V1_MODELS,
    R_METRICS,
    R_PULL,
    R_DELETE,
    R_DASH_PULL,
    R_DASH_DELETE,
};

static const struct {
    const char *path;
    const char *method; /* "GET" also allows HEAD */
    enum api_route route;
} api_routes[] = {
    {"/", "GET", R_ROOT},
    {"/heartbeat", "POST", R_HEARTBEAT},
    {"/fleet/status", "GET", R_FLEET_STATUS},
    {"/fleet/queue", "GET", R_FLEET_QUEUE},
    {"/api/chat", "POST", R_CHAT},
    {"/api/generate", "POST", R_GENERATE},
    {"/api/embed", "POST", R_EMBED},
    {"/api/embeddings", "POST", R_EMBEDDINGS},
    {"/api/show", "POST", R_SHOW},
    {"/api/tags", "GET", R_TAGS},
    {"/api/ps", "GET", R_PS},
    {"/api/version", "GET", R_VERSION},
    {"/v1/chat/completions", "POST", R_V1_CHAT},
    {"/v1/completions", "POST", R_V1_COMPLETIONS},
    {"/v1/embeddings", "POST", R_V1_EMBEDDINGS},
    {"/v1/models", "GET", R_V1_MODELS},
    {"/metrics", "GET", R_METRICS},
    {"/api/pull", "POST", R_PULL},
    {"/api/delete", "DELETE", R_DELETE},
    {"/dashboard/api/pull", "POST", R_DASH_PULL},
    {"/dashboard/api/delete", "POST", R_DASH_DELETE},
};

static void
api_route(struct herd *h, struct http_req *req, enum api_route r)
{
    static const char root[] = "Ollama is running";

    switch (r) {
    case R_ROOT:
        http_respond(req, 200, "text/plain; charset=utf-8", root,
                     sizeof(root) - 1);
        return;
    case R_HEARTBEAT:
        api_heartbeat(h, req);
        return;
    case R_FLEET_STATUS:
        api_fleet_status(h, req);
        return;
    case R_FLEET_QUEUE:
        api_fleet_queue(h, req);
        return;
    case R_CHAT:
        exchange_start(h, req, X_OLLAMA_CHAT);
        return;
    case R_GENERATE:
        exchange_start(h, req, X_OLLAMA_GENERATE);
        return;
    case R_EMBED:
        exchange_start(h, req, X_OLLAMA_EMBED);
        return;
    case R_EMBEDDINGS:
        exchange_start(h, req, X_OLLAMA_EMBEDDINGS);
        return;
    case R_SHOW:
        api_show(h, req);
        return;
    case R_TAGS:
        api_tags(h, req);
        return;
    case R_PS:
        api_ps(h, req);
        return;
    case R_VERSION:
        api_version(h, req);
        return;
    case R_V1_CHAT:
        exchange_start(h, req, X_OAI_CHAT);
        return;
    case R_V1_COMPLETIONS:
        exchange_start(h, req, X_OAI_COMPLETION);
        return;
    case R_V1_EMBEDDINGS:
        exchange_start(h, req, X_OAI_EMBED);
        return;
    case R_V1_MODELS:
        api_models(h, req);
        return;
    case R_METRICS:
        api_metrics(h, req);
        return;
    case R_PULL:
        api_pull(h, req);
        return;
    case R_DELETE:
        api_delete(h, req);
        return;
    case R_DASH_PULL:
        api_dashboard_pull(h, req);
        return;
    case R_DASH_DELETE:
        api_dashboard_delete(h, req);
        return;
    }
}

void
api_on_request(struct http_req *req, void *ud)
{
    struct herd *h = ud;
    const char *path = http_req_path(req), *method = http_req_method(req);
    bool path_known = false;

    log_trace(TRACE_HTTP, "%s %s from %s", method, path, http_req_peer(req));
    for (size_t i = 0; i < sizeof(api_routes) / sizeof(*api_routes); i++) {
        if (strcmp(api_routes[i].path, path) != 0)
            continue;
        path_known = true;
        if (strcmp(api_routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 &&
             strcmp(api_routes[i].method, "GET") == 0)) {
            api_route(h, req, api_routes[i].route);
            return;
        }
    }
    if (strncmp(path, "/v1/models/", 11) == 0 && path[11] != '\0') {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
            api_model(h, req, path + 11);
            return;
        }
        path_known = true;
    }
    if (path_known) {
        static const char body[] = "405 method not allowed";

        http_respond(req, 405, "text/plain", body, sizeof(body) - 1);
        return;
    }
    if (dashboard_route(h, req))
        return;
    if (strncmp(path, "/v1/", 4) == 0) {
        api_error(req, true, 404, NULL, "%s %s is not served by herd", method,
                  path);
        return;
    }
    if (strncmp(path, "/api/", 5) == 0) {
        api_error(req, false, 404, NULL,
                  "%s %s is not served by herd (yet): see docs/herd.md", method,
                  path);
        return;
    }
    {
        static const char body[] = "404 page not found";

        http_respond(req, 404, "text/plain", body, sizeof(body) - 1);
    }
}
