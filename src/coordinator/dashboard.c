/*
 * dashboard.c - the dashboard: pages, live stream and JSON APIs (see
 * dashboard.h and docs/dashboard.md).
 *
 * Every answer that needs SQL or a node goes through a "pending request"
 * (struct dreq) that survives the client leaving: the query or call ends
 * later, finds the request gone, and drops the answer. The dashboard
 * itself is reference-counted by the objects that point to it, so that
 * dashboard_free() can return at once and the memory goes when the last
 * query, call or timer has come back.
 */
#include "dashboard.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "dashq.h"
#include "exchange.h"
#include "health.h"
#include "herd/clock.h"
#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/log.h"
#include "herd/parse.h"
#include "modelcat.h"
#include "pull.h"
#include "recommend.h"
#include "router.h"

#define DASH_JSON            "application/json; charset=utf-8"
#define DASH_SSE_PERIOD_MS   2000
#define DASH_SSE_MAX         64
#define DASH_SSE_MAX_QUEUED  (2u << 20) /* a slower client skips ticks */
#define DASH_HEALTH_TTL_NS   (30 * NS_PER_SEC)
#define DASH_REC_TTL_NS      (300 * NS_PER_SEC)
#define DASH_POST_MAX        (64u * 1024u)
#define DASH_ANSWER_MAX      (64u << 20)
#define DASH_PINS_MAX_NODES  256
#define DASH_PINS_MAX_MODELS 64
#define DASH_PIN_MAX_COUNT   3
#define DASH_MM_MAX_NODES    64
#define DASH_CTX_MAX_MODELS  16
#define DASH_CTX_ROWS        1000
#define DASH_HEALTH_ROWS     1000
#define DASH_FILE_MAX        (16u << 20)
#define DASH_ID_MAX          64

struct dreq;
struct dbench;
struct dmm;

struct dsse {
    struct dsse *prev, *next;
    struct dashboard *d;
    struct http_req *req;
};

struct dashboard {
    struct herd *h;
    int refs;        /* objects that point here, the dashboard's own included */
    bool closing;    /* dashboard_free() was called */
    struct dashq *q; /* NULL: traces are off or unreadable */
    char q_err[256];
    struct rec_catalog *catalog;
    char catalog_src[512];
    /* the live stream */
    uv_timer_t sse_timer;
    struct dsse *sse;
    size_t n_sse;
    uint64_t sse_ticks;
    /* the health report, 30 s */
    struct buf health;
    int64_t health_at;
    bool health_busy;
    struct dreq *health_waiters;
    cJSON *health_stats; /* while computing */
    struct health_events health_ev;
    /* the recommendations, 5 min */
    struct buf rec;
    int64_t rec_at;
    bool rec_busy;
    struct dreq *rec_waiters;
    /* pins and benchmarks: JSON files under the data dir */
    cJSON *pins;     /* {"nodes":{id:[models]},"updated_at"} */
    char **env_pins; /* FLEET_PINNED_MODELS */
    size_t n_env_pins;
    cJSON *bench_runs; /* newest first */
    struct dbench *bench;
    char pins_path[4096], bench_path[4096];
    struct dmm *mm; /* model-management answers waiting for nodes */
};

/* A request whose answer comes later. refs: the request's done callback
 * and whoever will answer. */
struct dreq {
    struct dashboard *d;
    struct http_req *req; /* NULL once the client is gone */
    int refs;
    struct dreq *next; /* in a waiters' list */
    void *job;         /* the gather it belongs to, if any */
};

static void dash_unref(struct dashboard *d);

/* --- small helpers -----------------------------------------------------------
 */

static double
dash_wall(void)
{
    return (double)clock_wall_ns() / 1e9;
}

static void
dash_respond_json(struct http_req *req, int status, const char *json,
                  size_t len)
{
    http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, status, DASH_JSON, json, len);
}

static void
dash_buf_answer(struct http_req *req, struct buf *b, int rc)
{
    if (rc != 0) {
        api_error(req, false, 500, NULL, "could not build the answer (%s)",
                  rc == -E2BIG ? "too large" : "out of memory");
        return;
    }
    dash_respond_json(req, 200, b->data, b->len);
}

static void
dash_ref(struct dashboard *d)
{
    d->refs++;
}

static void dreq_on_done(struct http_req *req, enum http_end why, void *ud);

static struct dreq *
dreq_new(struct dashboard *d, struct http_req *req)
{
    struct dreq *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        api_error(req, false, 500, NULL, "out of memory");
        return NULL;
    }
    r->d = d;
    r->req = req;
    r->refs = 2;
    dash_ref(d);
    http_req_on_done(req, dreq_on_done, r);
    return r;
}

static void
dreq_put(struct dreq *r)
{
    struct dashboard *d = r->d;

    if (--r->refs > 0)
        return;
    free(r);
    dash_unref(d);
}

static void
dreq_on_done(struct http_req *req, enum http_end why, void *ud)
{
    struct dreq *r = ud;

    (void)req;
    (void)why;
    r->req = NULL;
    dreq_put(r);
}

/* Answers (when the client is still there) and drops the answerer's
 * reference. */
static void
dreq_answer(struct dreq *r, int status, const char *json, size_t len)
{
    if (r->req != NULL)
        dash_respond_json(r->req, status, json, len);
    dreq_put(r);
}

static void HERD_PRINTF(3, 4)
    dreq_error(struct dreq *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->req != NULL)
        api_error(r->req, false, status, NULL, "%s", msg);
    dreq_put(r);
}

/* The HTTP status for a dashq error. */
static int
dash_dashq_status(int rc)
{
    switch (rc) {
    case -ENOENT:
        return 404;
    case -EINVAL:
        return 400;
    case -EBUSY:
        return 503;
    case -ETIMEDOUT:
        return 504;
    case -ECANCELED:
    case -ESHUTDOWN:
        return 503;
    default:
        return 500;
    }
}

static bool
dash_no_traces(struct dashboard *d, struct http_req *req)
{
    if (d->q != NULL)
        return false;
    api_error(req, false, 503, NULL, "no request history: %s",
              d->q_err[0] ? d->q_err : "traces are off (FLEET_TRACES=false)");
    return true;
}

/* Reads a JSON object body of at most DASH_POST_MAX bytes; answers 400
 * or 413 itself and returns NULL. */
static cJSON *
dash_body_object(struct http_req *req)
{
    const char *body;
    size_t len;
    cJSON *v = NULL;
    char err[256];
    int rc;

    body = http_req_body(req, &len);
    if (http_req_too_large(req) || len > DASH_POST_MAX) {
        api_error(req, false, 413, NULL, "request body is larger than %u bytes",
                  DASH_POST_MAX);
        return NULL;
    }
    rc = json_parse(body, len, 16, &v, err, sizeof(err));
    if (rc == -ENODATA) {
        api_error(req, false, 400, NULL, "missing request body");
        return NULL;
    }
    if (rc != 0) {
        api_error(req, false, 400, NULL, "invalid JSON: %s", err);
        return NULL;
    }
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        api_error(req, false, 400, NULL,
                  "the request body must be a JSON object");
        return NULL;
    }
    return v;
}

static char *
dash_model_norm(const char *name, char *out, size_t n)
{
    const char *slash = strrchr(name, '/');

    snprintf(out, n, "%s%s", name,
             strchr(slash ? slash : name, ':') ? "" : ":latest");
    return out;
}

/* --- assets and pages
 * --------------------------------------------------------- */

const struct dashboard_asset *
dashboard_asset_find(const char *name)
{
    for (const struct dashboard_asset *a = dashboard_assets; a->name != NULL;
         a++) {
        if (strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

static const char *
dash_ctype(const char *type)
{
    static const struct {
        const char *type, *ctype;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"json", "application/json; charset=utf-8"},
    };

    for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
        if (strcmp(types[i].type, type) == 0)
            return types[i].ctype;
    }
    return "application/octet-stream";
}

static void
dash_security_headers(struct http_req *req)
{
    /* No inline script anywhere: a tag or model name that got into the
     * page as markup could not run. */
    http_set_header(req, "Content-Security-Policy",
                    "default-src 'self'; script-src 'self'; "
                    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                    "connect-src 'self'; frame-ancestors 'none'; "
                    "base-uri 'none'; form-action 'self'");
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    http_set_header(req, "X-Frame-Options", "DENY");
    http_set_header(req, "Referrer-Policy", "no-referrer");
}

static void
dash_serve_asset(struct http_req *req, const char *name)
{
    const struct dashboard_asset *a = dashboard_asset_find(name);

    if (a == NULL) {
        static const char body[] = "404 page not found";

        http_respond(req, 404, "text/plain", body, sizeof(body) - 1);
        return;
    }
    dash_security_headers(req);
    http_set_header(req, "Cache-Control", "no-cache");
    http_respond(req, 200, dash_ctype(a->type), a->data, a->len);
}

/* The tabs: every one is the same page, which reads its path. */
static const char *const dash_pages[] = {
    "",          "/",           "/fleet",  "/requests",
    "/explorer", "/trends",     "/models", "/tags",
    "/apps",     "/benchmarks", "/health", "/recommendations",
    "/settings",
};

static bool
dash_is_page(const char *rest)
{
    for (size_t i = 0; i < sizeof(dash_pages) / sizeof(*dash_pages); i++) {
        if (strcmp(dash_pages[i], rest) == 0)
            return true;
    }
    return false;
}

/* --- query parameters
 * ---------------------------------------------------------- */

struct dash_int_param {
    const char *key;
    int min, max;
    size_t off; /* in struct dashq_params */
};

static const struct dash_int_param dash_int_params[] = {
    {"limit", 1, DASHQ_LIMIT_MAX, offsetof(struct dashq_params, limit)},
    {"days", 1, DASHQ_DAYS_MAX, offsetof(struct dashq_params, days)},
    {"hours", 1, DASHQ_HOURS_MAX, offsetof(struct dashq_params, hours)},
};

static const struct {
    const char *key;
    size_t off;
} dash_ts_params[] = {
    {"start_ts", offsetof(struct dashq_params, start_ts)},
    {"end_ts", offsetof(struct dashq_params, end_ts)},
    {"since", offsetof(struct dashq_params, since)},
    {"until", offsetof(struct dashq_params, until)},
};

static const char *const dash_statuses[] = {
    "completed", "failed", "retried", "client_disconnected", "incomplete",
};

static int
dash_param_int(struct http_req *req, const struct dash_int_param *ip,
               struct dashq_params *p, char *err, size_t errlen)
{
    const char *v = http_req_query(req, ip->key);
    int64_t n;

    if (v == NULL)
        return 0;
    if (parse_i64(v, ip->min, ip->max, &n, NULL) != 0) {
        snprintf(err, errlen,
                 "%s: must be an integer from %d to %d (got \"%.64s\")",
                 ip->key, ip->min, ip->max, v);
        return -EINVAL;
    }
    *(int *)(void *)((char *)p + ip->off) = (int)n;
    return 0;
}

static int
dash_param_ts(struct http_req *req, const char *key, double *out, char *err,
              size_t errlen)
{
    const char *v = http_req_query(req, key);

    if (v == NULL)
        return 0;
    if (parse_double(v, 0, 1e11, out, NULL) != 0) {
        snprintf(err, errlen,
                 "%s: must be a Unix time in seconds, a number from 0 to "
                 "1e11 (got \"%.64s\")",
                 key, v);
        return -EINVAL;
    }
    return 0;
}

static int
dash_param_str(struct http_req *req, const char *key, const char *alias,
               const char **out, char *err, size_t errlen)
{
    const char *v = http_req_query(req, key);

    if (v == NULL && alias != NULL)
        v = http_req_query(req, alias);
    if (v == NULL || *v == '\0')
        return 0;
    if (strlen(v) > DASHQ_STR_MAX) {
        snprintf(err, errlen, "%s: longer than %d bytes", key, DASHQ_STR_MAX);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Every parameter the dashboard APIs take, checked; strings borrowed from
 * req. 0, or -EINVAL with the sentence for the 400 in err. */
static int
dash_params(struct http_req *req, enum dashq_kind kind, struct dashq_params *p,
            char *err, size_t errlen)
{
    int rc = 0;
    bool ok = false;

    memset(p, 0, sizeof(*p));
    for (size_t i = 0; rc == 0 && i < 3; i++)
        rc = dash_param_int(req, &dash_int_params[i], p, err, errlen);
    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = dash_param_ts(
            req, dash_ts_params[i].key,
            (double *)(void *)((char *)p + dash_ts_params[i].off), err, errlen);
    if (rc == 0)
        rc = dash_param_str(req, "model", NULL, &p->model, err, errlen);
    if (rc == 0)
        rc = dash_param_str(req, "node_id", "node", &p->node_id, err, errlen);
    if (rc == 0)
        rc = dash_param_str(req, "tag", NULL, &p->tag, err, errlen);
    if (rc == 0)
        rc = dash_param_str(req, "status", NULL, &p->status, err, errlen);
    if (rc == 0 && p->status != NULL) {
        for (size_t i = 0; i < sizeof(dash_statuses) / sizeof(char *); i++)
            ok = ok || strcmp(dash_statuses[i], p->status) == 0;
        if (!ok) {
            snprintf(err, errlen,
                     "status: must be completed, failed, retried, "
                     "client_disconnected or incomplete (got \"%.64s\")",
                     p->status);
            rc = -EINVAL;
        }
    }
    if (rc == 0 && p->start_ts > 0 && p->end_ts > 0 &&
        p->start_ts > p->end_ts) {
        snprintf(err, errlen, "start_ts must not be after end_ts");
        rc = -EINVAL;
    }
    if (rc == 0 && p->since > 0 && p->until > 0 && p->since > p->until) {
        snprintf(err, errlen, "since must not be after until");
        rc = -EINVAL;
    }
    if (rc == 0 && kind != DASHQ_TRACE)
        rc = dashq_params_check(kind, p, err, errlen);
    return rc;
}

/* --- the trace-store APIs: dashq's answer, as it is
 * ---------------------------- */

static void
dash_on_query(int rc, struct buf *json, void *ud)
{
    struct dreq *r = ud;

    if (rc == -EBUSY && r->req != NULL)
        http_set_header(r->req, "Retry-After", "1");
    dreq_answer(r, rc == 0 ? 200 : dash_dashq_status(rc), json->data,
                json->len);
}

static void
dash_query(struct dashboard *d, struct http_req *req, enum dashq_kind kind,
           struct dashq_params *p)
{
    struct dreq *r;
    int rc;

    if (dash_no_traces(d, req))
        return;
    r = dreq_new(d, req);
    if (r == NULL)
        return;
    rc = dashq_run(d->q, kind, p, dash_on_query, r);
    if (rc != 0) {
        if (rc == -EBUSY && r->req != NULL)
            http_set_header(r->req, "Retry-After", "1");
        dreq_error(r,
                   rc == -EBUSY    ? 503
                   : rc == -EINVAL ? 400
                                   : 500,
                   "the %s query was refused: %s", dashq_kind_name(kind),
                   rc == -EBUSY ? "too many dashboard queries are waiting"
                                : strerror(-rc));
    }
}

static void
dash_api_query(struct dashboard *d, struct http_req *req, enum dashq_kind kind)
{
    struct dashq_params p;
    char err[512];

    if (dash_params(req, kind, &p, err, sizeof(err)) != 0) {
        api_error(req, false, 400, NULL, "%s", err);
        return;
    }
    dash_query(d, req, kind, &p);
}

static bool
dash_valid_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > DASH_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static void
dash_api_trace(struct dashboard *d, struct http_req *req, const char *id)
{
    struct dashq_params p;

    if (!dash_valid_id(id)) {
        api_error(req, false, 400, NULL,
                  "request_id: 1 to %d letters, digits, '-', '_' or '.'",
                  DASH_ID_MAX);
        return;
    }
    memset(&p, 0, sizeof(p));
    p.request_id = id;
    dash_query(d, req, DASHQ_TRACE, &p);
}

/* --- the fleet snapshot (SSE and the Fleet tab)
 * --------------------------------- */

/* Appends ,"key":"value" (a JSON string, escaped). */
static int
dj_str(struct buf *b, const char *key, const char *v)
{
    int rc = buf_appendf(b, ",\"%s\":", key);

    if (rc == 0)
        rc = json_append_str(b, v ? v : "", v ? strlen(v) : 0);
    return rc;
}

/* A finite number, or null. */
static int
dj_num(struct buf *b, const char *key, double v)
{
    if (!isfinite(v))
        return buf_appendf(b, ",\"%s\":null", key);
    return buf_appendf(b, ",\"%s\":%.10g", key, v);
}

static int
dash_node_hardware(struct buf *b, const struct registry_node *n)
{
    const struct registry_hb *hb = &n->hb;
    int rc = buf_appendf(b,
                         ",\"hardware\":{\"memory_total_gb\":%.10g,"
                         "\"cores_physical\":%lld",
                         hb->mem_total_gb, (long long)hb->cores_physical);

    if (rc == 0)
        rc = dj_str(b, "chip", hb->chip);
    if (rc == 0)
        rc = dj_num(b, "memory_bandwidth_gbps", hb->memory_bandwidth_gbps);
    if (rc == 0)
        rc = dj_str(b, "arch", hb->arch);
    if (rc == 0)
        rc = buf_appendf(
            b,
            "},\"cpu\":{\"cores_physical\":%lld,\"utilization_pct\":%.10g},"
            "\"memory\":{\"total_gb\":%.10g,\"used_gb\":%.10g,"
            "\"available_gb\":%.1f,\"pressure\":\"%s\"}",
            (long long)hb->cores_physical, hb->cpu_utilization_pct,
            hb->mem_total_gb, hb->mem_used_gb, hb->mem_available_gb,
            registry_pressure_name(hb->pressure));
    if (rc == 0 && hb->has_gpu) {
        rc = buf_appends(b, ",\"gpu\":{\"name\":");
        if (rc == 0)
            rc = json_append_str(b, hb->gpu.name, strlen(hb->gpu.name));
        if (rc == 0)
            rc =
                buf_appendf(b,
                            ",\"count\":%lld,\"vram_total_gb\":%.10g,"
                            "\"vram_used_gb\":%.10g,\"utilization_pct\":%.10g}",
                            (long long)hb->gpu.count, hb->gpu.vram_total_gb,
                            hb->gpu.vram_used_gb, hb->gpu.utilization_pct);
    }
    if (rc == 0 && hb->has_disk)
        rc = buf_appendf(b,
                         ",\"disk\":{\"total_gb\":%.10g,\"used_gb\":%.10g,"
                         "\"available_gb\":%.10g}",
                         hb->disk_total_gb, hb->disk_used_gb,
                         hb->disk_available_gb);
    return rc;
}

static int
dash_node_models(struct buf *b, const struct registry_node *n)
{
    const struct registry_hb *hb = &n->hb;
    size_t embeds = 0;
    int rc = buf_appends(b, ",\"ollama\":{\"models_loaded\":[");

    for (size_t i = 0; rc == 0 && i < hb->n_loaded; i++) {
        const struct registry_loaded *l = &hb->loaded[i];

        rc = buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = json_append_str(b, l->name, strlen(l->name));
        if (rc == 0)
            rc = buf_appendf(b, ",\"size_gb\":%.10g", l->size_gb);
        if (rc == 0)
            rc = dj_str(b, "parameter_size", l->parameter_size);
        if (rc == 0)
            rc = dj_str(b, "quantization", l->quantization);
        if (rc == 0)
            rc = buf_appendf(b, ",\"context_length\":%lld,\"in_flight\":%lld",
                             (long long)l->context_length,
                             (long long)registry_inflight_get(n, l->name));
        if (rc == 0)
            rc = dj_str(b, "category", modelcat_classify(l->name));
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    if (rc == 0)
        rc = buf_appendf(b,
                         "],\"models_available_count\":%zu,"
                         "\"requests_active\":%lld},\"embed_models\":[",
                         hb->n_available, (long long)n->inflight_total);
    for (size_t i = 0; rc == 0 && i < hb->n_available; i++) {
        if (strstr(hb->available[i], "embed") == NULL)
            continue;
        rc = buf_appends(b, embeds++ ? "," : "");
        if (rc == 0)
            rc = json_append_str(b, hb->available[i], strlen(hb->available[i]));
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static int
dash_node_capacity(struct buf *b, const struct registry_node *n)
{
    const struct registry_capacity *c = &n->hb.capacity;
    int rc;

    if (!n->hb.has_capacity)
        return 0;
    rc = buf_appends(b, ",\"capacity\":{\"mode\":");
    if (rc == 0)
        rc = json_append_str(b, c->mode, strlen(c->mode));
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"ceiling_gb\":%.10g,\"availability_score\":%.10g,"
                         "\"learning_confidence\":%.10g,\"days_observed\":%lld,"
                         "\"override_active\":%s",
                         c->ceiling_gb, c->availability_score,
                         c->learning_confidence, (long long)c->days_observed,
                         c->override_active ? "true" : "false");
    if (rc == 0)
        rc = dj_str(b, "reason", c->reason);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* One node of the snapshot: ollama-herd's SSE node, plus ours. */
static int
dash_node_json(struct herd *h, struct buf *b, const struct registry_node *n,
               int64_t now)
{
    const char *rs = router_node_health(h->router, n->id);
    int rc = buf_appends(b, "{\"node_id\":");

    if (rc == 0)
        rc = json_append_str(b, n->id, strlen(n->id));
    if (rc == 0)
        rc = dj_str(b, "status", registry_status_name(n->status));
    if (rc == 0)
        rc = dj_str(b, "status_reason", n->reason);
    if (rc == 0)
        rc = dash_node_hardware(b, n);
    if (rc == 0)
        rc = dash_node_models(b, n);
    if (rc == 0)
        rc = dash_node_capacity(b, n);
    if (rc == 0)
        rc = dj_str(b, "agent_version", n->hb.agent_version);
    if (rc == 0)
        rc = dj_str(b, "ollama_url", n->ollama_base_url);
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"num_parallel\":%lld,\"in_flight\":%lld,"
                         "\"ollama_healthy\":%s,\"last_heartbeat_s\":%.1f,"
                         "\"router_state\":",
                         (long long)n->hb.num_parallel,
                         (long long)n->inflight_total,
                         n->hb.ollama_healthy ? "true" : "false",
                         (double)(now - n->last_heartbeat_ns) / 1e9);
    if (rc == 0)
        rc = rs ? json_append_str(b, rs, strlen(rs)) : buf_appends(b, "null");
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* {"fleet":{...},"nodes":[...],"queues":{...},"live":[...],"timestamp"} */
static int
dash_snapshot(struct herd *h, struct buf *b)
{
    int64_t now = herd_now_ns();
    uint64_t inf, done, failed;
    size_t loaded = 0, nn = registry_count(h->reg);
    int rc;

    for (size_t i = 0; i < nn; i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        if (registry_node_routable(n))
            loaded += n->hb.n_loaded;
    }
    router_totals(h->router, &inf, &done, &failed);
    rc = buf_appendf(
        b,
        "{\"fleet\":{\"nodes_total\":%zu,\"nodes_online\":%zu,"
        "\"nodes_degraded\":%zu,\"nodes_offline\":%zu,\"models_loaded\":%zu,"
        "\"requests_active\":%llu,\"requests_held\":%zu,\"completed\":%llu,"
        "\"failed\":%llu,\"requests_total\":%llu},\"nodes\":[",
        nn, registry_count_status(h->reg, REGISTRY_ONLINE),
        registry_count_status(h->reg, REGISTRY_DEGRADED),
        registry_count_status(h->reg, REGISTRY_OFFLINE), loaded,
        (unsigned long long)inf, router_held(h->router),
        (unsigned long long)done, (unsigned long long)failed,
        (unsigned long long)h->stats.requests);
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        rc = i ? buf_appends(b, ",") : 0;
        if (rc == 0)
            rc = dash_node_json(h, b, registry_node_at(h->reg, i), now);
    }
    if (rc == 0)
        rc = buf_appends(b, "],\"queues\":");
    if (rc == 0)
        rc = router_queues_json(h->router, b);
    if (rc == 0)
        rc = buf_appends(b, ",\"live\":");
    if (rc == 0)
        rc = exchange_live_json(b);
    if (rc == 0)
        rc = buf_appendf(b, ",\"timestamp\":%.3f}", dash_wall());
    return rc;
}

/* --- GET /dashboard/events: the snapshot every 2 s
 * ------------------------------ */

static void
dsse_unlink(struct dsse *s)
{
    struct dashboard *d = s->d;

    if (s->prev)
        s->prev->next = s->next;
    else
        d->sse = s->next;
    if (s->next)
        s->next->prev = s->prev;
    d->n_sse--;
    if (d->n_sse == 0 && !d->closing)
        uv_timer_stop(&d->sse_timer);
}

static void
dsse_on_done(struct http_req *req, enum http_end why, void *ud)
{
    struct dsse *s = ud;
    struct dashboard *d = s->d;

    (void)req;
    (void)why;
    if (s->req != NULL)
        dsse_unlink(s);
    free(s);
    dash_unref(d);
}

/* One "data: <json>\n\n" frame to every client not too far behind. */
static void
dash_sse_broadcast(struct dashboard *d)
{
    struct buf b;
    int rc;

    if (d->sse == NULL)
        return;
    buf_init(&b, DASH_ANSWER_MAX);
    rc = buf_appends(&b, "data: ");
    if (rc == 0)
        rc = dash_snapshot(d->h, &b);
    if (rc == 0)
        rc = buf_appends(&b, "\n\n");
    if (rc != 0) {
        log_warn("dashboard: fleet snapshot not built (%s)", strerror(-rc));
        buf_cleanup(&b);
        return;
    }
    for (struct dsse *s = d->sse, *next; s != NULL; s = next) {
        next = s->next;
        if (http_stream_queued(s->req) > DASH_SSE_MAX_QUEUED)
            continue; /* a slow reader skips this tick */
        if (http_stream_write(s->req, b.data, b.len) != 0) {
            struct http_req *req = s->req;

            dsse_unlink(s);
            s->req = NULL;
            http_stream_abort(req);
        }
    }
    d->sse_ticks++;
    buf_cleanup(&b);
}

static void
dash_on_sse_tick(uv_timer_t *t)
{
    dash_sse_broadcast(t->data);
}

static void
dash_events(struct dashboard *d, struct http_req *req)
{
    struct dsse *s;

    if (strcmp(http_req_method(req), "HEAD") == 0) {
        /* the head of the stream, and no stream: a HEAD has no body */
        http_set_header(req, "Cache-Control", "no-cache");
        http_respond(req, 200, "text/event-stream", "", 0);
        return;
    }
    if (d->n_sse >= DASH_SSE_MAX) {
        http_set_header(req, "Retry-After", "5");
        api_error(req, false, 503, NULL,
                  "too many live dashboards (%d): close one", DASH_SSE_MAX);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    s->d = d;
    s->req = req;
    dash_ref(d);
    http_req_on_done(req, dsse_on_done, s);
    http_set_header(req, "Cache-Control", "no-cache");
    http_set_header(req, "X-Accel-Buffering", "no");
    if (http_stream_begin(req, 200, "text/event-stream") != 0) {
        s->req = NULL;
        http_stream_abort(req);
        return;
    }
    s->next = d->sse;
    if (d->sse)
        d->sse->prev = s;
    d->sse = s;
    d->n_sse++;
    if (d->n_sse == 1)
        uv_timer_start(&d->sse_timer, dash_on_sse_tick, DASH_SSE_PERIOD_MS,
                       DASH_SSE_PERIOD_MS);
    /* the first snapshot at once, for this client only */
    {
        struct buf b;

        buf_init(&b, DASH_ANSWER_MAX);
        if (buf_appends(&b, "data: ") == 0 && dash_snapshot(d->h, &b) == 0 &&
            buf_appends(&b, "\n\n") == 0)
            (void)http_stream_write(req, b.data, b.len);
        buf_cleanup(&b);
    }
}

/* GET /dashboard/api/live: the requests in flight, for the explorer. */
static void
dash_api_live(struct dashboard *d, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, DASH_ANSWER_MAX);
    rc = buf_appends(&b, "{\"requests\":");
    if (rc == 0)
        rc = exchange_live_json(&b);
    if (rc == 0)
        rc = buf_appendf(&b, ",\"requests_held\":%zu,\"timestamp\":%.3f}",
                         router_held(d->h->router), dash_wall());
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
}

/* GET /dashboard/api/fleet: the snapshot once (tests, scripts). */
static void
dash_api_fleet(struct dashboard *d, struct http_req *req)
{
    struct buf b;

    buf_init(&b, DASH_ANSWER_MAX);
    dash_buf_answer(req, &b, dash_snapshot(d->h, &b));
    buf_cleanup(&b);
}

/* --- GET /dashboard/api/health: the health engine, 30 s cache
 * ------------------ */

static const char *
dash_pressure(enum registry_pressure p)
{
    return registry_pressure_name(p);
}

/* The registry as the health engine sees it; freed by the caller. */
static struct health_node *
dash_health_nodes(struct herd *h, struct health_loaded **loaded_out,
                  size_t *n_out)
{
    size_t nn = registry_count(h->reg), nl = 0, k = 0;
    struct health_node *v;
    struct health_loaded *l;
    int64_t now = herd_now_ns();

    for (size_t i = 0; i < nn; i++)
        nl += registry_node_at(h->reg, i)->hb.n_loaded;
    v = calloc(nn ? nn : 1, sizeof(*v));
    l = calloc(nl ? nl : 1, sizeof(*l));
    if (v == NULL || l == NULL) {
        free(v);
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < nn; i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        v[i].node_id = n->id;
        v[i].status = registry_status_name(n->status);
        v[i].reason = n->reason;
        v[i].pressure = dash_pressure(n->hb.pressure);
        v[i].mem_total_gb = n->hb.mem_total_gb;
        v[i].mem_available_gb = n->hb.mem_available_gb;
        v[i].loaded = &l[k];
        v[i].n_loaded = n->hb.n_loaded;
        for (size_t j = 0; j < n->hb.n_loaded; j++, k++) {
            l[k].name = n->hb.loaded[j].name;
            l[k].size_gb = n->hb.loaded[j].size_gb;
            l[k].parameter_size = n->hb.loaded[j].parameter_size;
        }
        v[i].agent_version = n->hb.agent_version;
        v[i].ollama_healthy = n->hb.ollama_healthy;
        v[i].router_state = router_node_health(h->router, n->id);
        v[i].silent_s = (double)(now - n->last_heartbeat_ns) / 1e9;
    }
    *loaded_out = l;
    *n_out = nn;
    return v;
}

static void
dash_health_finish(struct dashboard *d, bool cache)
{
    struct health_input in;
    struct health_loaded *loaded = NULL;
    struct health_node *nodes;
    size_t nn = 0;
    int rc = -ENOMEM;

    memset(&in, 0, sizeof(in));
    nodes = dash_health_nodes(d->h, &loaded, &nn);
    buf_reset(&d->health);
    if (nodes != NULL) {
        in.nodes = nodes;
        in.n_nodes = nn;
        in.router_version = HERD_VERSION;
        in.stats = d->health_stats;
        in.events = d->health_ev;
        in.now = dash_wall();
        rc = health_report(&in, &d->health);
    }
    free(nodes);
    free(loaded);
    cJSON_Delete(d->health_stats);
    d->health_stats = NULL;
    d->health_busy = false;
    d->health_at = rc == 0 && cache ? herd_now_ns() : 0;
    while (d->health_waiters != NULL) {
        struct dreq *r = d->health_waiters;

        d->health_waiters = r->next;
        if (rc == 0)
            dreq_answer(r, 200, d->health.data, d->health.len);
        else
            dreq_error(r, 500, "could not build the health report (%s)",
                       strerror(-rc));
    }
}

/* Requests served by another model than the one asked for, in the rows
 * of the last 24 h (when dashq's stats carry no event counts). */
static int64_t
dash_count_fallbacks(const cJSON *traces)
{
    const cJSON *t;
    int64_t n = 0;

    cJSON_ArrayForEach(t, json_get(traces, "traces"))
    {
        const char *m = json_get_str(t, "model");
        const char *o = json_get_str(t, "original_model");
        const char *st = json_get_str(t, "status");

        if (json_get_bool(t, "fallback_used", false) && m != NULL &&
            o != NULL && strcmp(m, o) != 0 && st != NULL &&
            strcmp(st, "retried") != 0)
            n++;
    }
    return n;
}

static void
dash_on_health_traces(int rc, struct buf *json, void *ud)
{
    struct dashboard *d = ud;
    cJSON *v = NULL;

    if (rc == 0 && json_parse(json->data, json->len, 64, &v, NULL, 0) == 0)
        d->health_ev.vram_fallback_24h = dash_count_fallbacks(v);
    cJSON_Delete(v);
    dash_health_finish(d, true);
    dash_unref(d);
}

static void
dash_on_health_stats(int rc, struct buf *json, void *ud)
{
    struct dashboard *d = ud;
    struct dashq_params p;

    if (rc != 0 ||
        json_parse(json->data, json->len, 64, &d->health_stats, NULL, 0) != 0) {
        log_warn("dashboard: health statistics unavailable: %.200s",
                 json->data ? json->data : "");
        dash_health_finish(d, false);
        dash_unref(d);
        return;
    }
    health_events_from_stats(d->health_stats, &d->health_ev);
    if (d->health_ev.vram_fallback_24h < 0 && !d->closing) {
        memset(&p, 0, sizeof(p));
        p.limit = DASH_HEALTH_ROWS;
        p.since = dash_wall() - DASHQ_HEALTH_WINDOW_S;
        if (dashq_run(d->q, DASHQ_TRACES, &p, dash_on_health_traces, d) == 0)
            return; /* keeps the reference */
    }
    dash_health_finish(d, true);
    dash_unref(d);
}

static void
dash_api_health(struct dashboard *d, struct http_req *req)
{
    struct dreq *r;

    if (d->health_at != 0 &&
        herd_now_ns() - d->health_at < DASH_HEALTH_TTL_NS) {
        dash_respond_json(req, 200, d->health.data, d->health.len);
        return;
    }
    r = dreq_new(d, req);
    if (r == NULL)
        return;
    r->next = d->health_waiters;
    d->health_waiters = r;
    if (d->health_busy)
        return;
    d->health_busy = true;
    health_events_unknown(&d->health_ev);
    if (d->q != NULL) {
        struct dashq_params p;

        memset(&p, 0, sizeof(p));
        dash_ref(d);
        if (dashq_run(d->q, DASHQ_HEALTH_STATS, &p, dash_on_health_stats, d) ==
            0)
            return;
        dash_unref(d);
    }
    dash_health_finish(d, d->q == NULL);
}

/* --- GET /dashboard/api/recommendations: 5 min cache
 * ---------------------------- */

struct drec_usage {
    struct rec_usage *v;
    size_t n, cap;
};

static int
drec_usage_add(struct drec_usage *u, const char *model, int64_t n)
{
    for (size_t i = 0; i < u->n; i++) {
        if (strcmp(u->v[i].model, model) == 0) {
            u->v[i].requests += n;
            return 0;
        }
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 32;
        struct rec_usage *v = realloc(u->v, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n].model = model; /* borrowed from the usage document */
    u->v[u->n++].requests = n;
    return 0;
}

/* The routable nodes, with every model on them (loaded ones first). */
static struct rec_node *
dash_rec_nodes(struct herd *h, const char ***names_out, size_t *n_out)
{
    size_t nn = registry_count(h->reg), total = 0, k = 0, m = 0;
    struct rec_node *v;
    const char **names;

    for (size_t i = 0; i < nn; i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        total += n->hb.n_loaded + n->hb.n_available;
    }
    v = calloc(nn ? nn : 1, sizeof(*v));
    names = calloc(total ? total : 1, sizeof(*names));
    if (v == NULL || names == NULL) {
        free(v);
        free(names);
        return NULL;
    }
    for (size_t i = 0; i < nn; i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);
        size_t first = k;

        if (!registry_node_routable(n))
            continue;
        for (size_t j = 0; j < n->hb.n_loaded; j++)
            names[k++] = n->hb.loaded[j].name;
        for (size_t j = 0; j < n->hb.n_available; j++) {
            if (registry_node_loaded(n, n->hb.available[j]) == NULL)
                names[k++] = n->hb.available[j];
        }
        v[m].node_id = n->id;
        v[m].total_ram_gb = n->hb.mem_total_gb;
        v[m].disk_total_gb = n->hb.has_disk ? n->hb.disk_total_gb : -1;
        v[m].disk_available_gb = n->hb.has_disk ? n->hb.disk_available_gb : -1;
        v[m].models = names + first;
        v[m].n_models = k - first;
        m++;
    }
    *names_out = names;
    *n_out = m;
    return v;
}

static void
dash_rec_finish(struct dashboard *d, const cJSON *usage_doc)
{
    struct drec_usage u = {NULL, 0, 0};
    const char **names = NULL;
    struct rec_node *nodes;
    size_t nn = 0;
    const cJSON *row;
    int rc = 0;

    cJSON_ArrayForEach(row, json_get(usage_doc, "data"))
    {
        const char *m = json_get_str(row, "model");
        double n = json_get_num(row, "request_count", 0);

        if (m != NULL && n > 0 && rc == 0)
            rc = drec_usage_add(&u, m, (int64_t)n);
    }
    nodes = dash_rec_nodes(d->h, &names, &nn);
    buf_reset(&d->rec);
    if (rc == 0 && nodes == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = recommend_analyze(d->catalog, nodes, nn, u.v, u.n, &d->rec);
    if (rc == 0 && d->rec.len > 0 && d->rec.data[d->rec.len - 1] == '}') {
        d->rec.len--;
        rc = buf_appendf(&d->rec,
                         ",\"generated_at\":%.3f,\"catalog\":", dash_wall());
        if (rc == 0)
            rc = json_append_str(&d->rec, d->catalog_src,
                                 strlen(d->catalog_src));
        if (rc == 0)
            rc = buf_appendf(&d->rec, ",\"catalog_models\":%zu}",
                             d->catalog ? d->catalog->n : 0);
    }
    free(nodes);
    free(names);
    free(u.v);
    d->rec_busy = false;
    d->rec_at = rc == 0 ? herd_now_ns() : 0;
    while (d->rec_waiters != NULL) {
        struct dreq *r = d->rec_waiters;

        d->rec_waiters = r->next;
        if (rc == 0)
            dreq_answer(r, 200, d->rec.data, d->rec.len);
        else
            dreq_error(r, 500, "could not build the recommendations (%s)",
                       strerror(-rc));
    }
}

static void
dash_on_rec_usage(int rc, struct buf *json, void *ud)
{
    struct dashboard *d = ud;
    cJSON *v = NULL;

    if (rc == 0)
        (void)json_parse(json->data, json->len, 64, &v, NULL, 0);
    dash_rec_finish(d, v);
    cJSON_Delete(v);
    dash_unref(d);
}

static void
dash_api_recommendations(struct dashboard *d, struct http_req *req)
{
    const char *refresh = http_req_query(req, "refresh");
    bool force = false;
    struct dashq_params p;
    struct dreq *r;

    if (refresh != NULL && parse_bool(refresh, &force, NULL) != 0) {
        api_error(req, false, 400, NULL,
                  "refresh: must be true or false, 1 or 0 (got \"%.32s\")",
                  refresh);
        return;
    }
    if (!force && d->rec_at != 0 &&
        herd_now_ns() - d->rec_at < DASH_REC_TTL_NS) {
        dash_respond_json(req, 200, d->rec.data, d->rec.len);
        return;
    }
    r = dreq_new(d, req);
    if (r == NULL)
        return;
    r->next = d->rec_waiters;
    d->rec_waiters = r;
    if (d->rec_busy)
        return;
    d->rec_busy = true;
    if (d->q != NULL) {
        memset(&p, 0, sizeof(p));
        p.days = 1;
        dash_ref(d);
        if (dashq_run(d->q, DASHQ_USAGE, &p, dash_on_rec_usage, d) == 0)
            return;
        dash_unref(d);
    }
    dash_rec_finish(d, NULL);
}

/* --- GET/POST /dashboard/api/settings
 * -------------------------------------------- */

enum dset_type { DS_BOOL, DS_INT, DS_DUR, DS_DBL, DS_STR, DS_SIZE, DS_SECRET };

struct dset {
    const char *group, *key, *env;
    enum dset_type type;
    size_t off;   /* in struct herd_cfg */
    bool mutable; /* POST /dashboard/api/settings may change it */
};

#define CFG_OFF(f) offsetof(struct herd_cfg, f)
#define W_OFF(f)                                                               \
    (offsetof(struct herd_cfg, weights) + offsetof(struct scorer_weights, f))

/* clang-format off */
static const struct dset dash_settings[] = {
    {"toggles", "auto_pull", "FLEET_AUTO_PULL", DS_BOOL, CFG_OFF(auto_pull), true},
    {"toggles", "vram_fallback", "FLEET_VRAM_FALLBACK", DS_BOOL, CFG_OFF(vram_fallback), true},
    {"toggles", "vram_fallback_cross_category", "FLEET_VRAM_FALLBACK_CROSS_CATEGORY", DS_BOOL, CFG_OFF(vram_fallback_cross), true},
    {"toggles", "traces", "FLEET_TRACES", DS_BOOL, CFG_OFF(traces), false},
    {"toggles", "mdns", "FLEET_MDNS", DS_BOOL, CFG_OFF(mdns), false},
    {"server", "host", "FLEET_HOST", DS_STR, CFG_OFF(host), false},
    {"server", "port", "FLEET_PORT", DS_INT, CFG_OFF(port), false},
    {"server", "data_dir", "FLEET_DATA_DIR", DS_STR, CFG_OFF(data_dir), false},
    {"server", "log_level", "FLEET_LOG_LEVEL", DS_STR, CFG_OFF(log_level), false},
    {"server", "max_retries", "FLEET_MAX_RETRIES", DS_INT, CFG_OFF(max_retries), true},
    {"server", "max_connections", "FLEET_MAX_CONNECTIONS", DS_INT, CFG_OFF(max_conns), false},
    {"server", "mdns_service_name", "FLEET_MDNS_SERVICE_NAME", DS_STR, CFG_OFF(mdns_name), false},
    {"heartbeat", "heartbeat_interval", "FLEET_HEARTBEAT_INTERVAL", DS_DUR, CFG_OFF(hb_interval_ns), false},
    {"heartbeat", "heartbeat_timeout", "FLEET_HEARTBEAT_TIMEOUT", DS_DUR, CFG_OFF(hb_timeout_ns), false},
    {"heartbeat", "heartbeat_offline", "FLEET_HEARTBEAT_OFFLINE", DS_DUR, CFG_OFF(hb_offline_ns), false},
    {"heartbeat", "node_remove_after", "FLEET_NODE_REMOVE_AFTER", DS_DUR, CFG_OFF(remove_after_ns), false},
    {"heartbeat", "min_node_memory_gb", "FLEET_MIN_NODE_MEMORY_GB", DS_DBL, CFG_OFF(min_node_memory_gb), false},
    {"holding", "hold_timeout", "FLEET_HOLD_TIMEOUT", DS_DUR, CFG_OFF(hold_timeout_ns), false},
    {"holding", "max_held", "FLEET_MAX_HELD", DS_INT, CFG_OFF(max_held), false},
    {"timeouts", "connect_timeout", "FLEET_CONNECT_TIMEOUT", DS_DUR, CFG_OFF(connect_timeout_ns), false},
    {"timeouts", "request_timeout", "FLEET_REQUEST_TIMEOUT", DS_DUR, CFG_OFF(request_timeout_ns), false},
    {"timeouts", "first_byte_timeout", "FLEET_FIRST_BYTE_TIMEOUT", DS_DUR, CFG_OFF(first_byte_timeout_ns), false},
    {"timeouts", "stream_idle_timeout", "FLEET_STREAM_IDLE_TIMEOUT", DS_DUR, CFG_OFF(idle_timeout_ns), false},
    {"limits", "max_body", "FLEET_MAX_BODY", DS_SIZE, CFG_OFF(max_body), false},
    {"limits", "max_header", "FLEET_MAX_HEADER", DS_SIZE, CFG_OFF(max_header), false},
    {"limits", "max_upstream_line", "FLEET_MAX_UPSTREAM_LINE", DS_SIZE, CFG_OFF(max_upstream_line), false},
    {"auto_pull_config", "auto_pull_timeout", "FLEET_AUTO_PULL_TIMEOUT", DS_DUR, CFG_OFF(auto_pull_timeout_ns), false},
    {"traces", "trace_retention_days", "FLEET_TRACE_RETENTION_DAYS", DS_INT, CFG_OFF(retention_days), false},
    {"security", "token", "FLEET_TOKEN", DS_SECRET, CFG_OFF(token), false},
    {"security", "admin_key", "FLEET_ADMIN_KEY", DS_SECRET, CFG_OFF(admin_key), false},
    {"scoring", "score_model_hot", "FLEET_SCORE_MODEL_HOT", DS_DBL, W_OFF(model_hot), false},
    {"scoring", "score_model_warm", "FLEET_SCORE_MODEL_WARM", DS_DBL, W_OFF(model_warm), false},
    {"scoring", "score_model_cold", "FLEET_SCORE_MODEL_COLD", DS_DBL, W_OFF(model_cold), false},
    {"scoring", "score_memory_fit_max", "FLEET_SCORE_MEMORY_FIT_MAX", DS_DBL, W_OFF(memory_fit_max), false},
    {"scoring", "score_queue_depth_max_penalty", "FLEET_SCORE_QUEUE_DEPTH_MAX_PENALTY", DS_DBL, W_OFF(queue_depth_max_penalty), false},
    {"scoring", "score_queue_depth_penalty_per", "FLEET_SCORE_QUEUE_DEPTH_PENALTY_PER", DS_DBL, W_OFF(queue_depth_penalty_per), false},
    {"scoring", "score_wait_time_max_penalty", "FLEET_SCORE_WAIT_TIME_MAX_PENALTY", DS_DBL, W_OFF(wait_time_max_penalty), false},
    {"scoring", "score_role_large_threshold_gb", "FLEET_SCORE_ROLE_LARGE_THRESHOLD_GB", DS_DBL, W_OFF(role_large_threshold_gb), false},
    {"scoring", "score_role_small_threshold_gb", "FLEET_SCORE_ROLE_SMALL_THRESHOLD_GB", DS_DBL, W_OFF(role_small_threshold_gb), false},
    {"scoring", "score_availability_trend_max", "FLEET_SCORE_AVAILABILITY_TREND_MAX", DS_DBL, W_OFF(availability_trend_max), false},
    {"scoring", "score_context_fit_max", "FLEET_SCORE_CONTEXT_FIT_MAX", DS_DBL, W_OFF(context_fit_max), false},
    {"scoring", "score_degraded_penalty", "FLEET_SCORE_DEGRADED_PENALTY", DS_DBL, W_OFF(degraded_penalty), false},
    {"scoring", "score_slot_free_bonus", "FLEET_SCORE_SLOT_FREE_BONUS", DS_DBL, W_OFF(slot_free_bonus), false},
    {"scoring", "bandwidth_aware_scoring", "FLEET_BANDWIDTH_AWARE_SCORING", DS_BOOL, W_OFF(bandwidth_aware), false},
    {"scoring", "queue_penalty_bandwidth_normalize", "FLEET_QUEUE_PENALTY_BANDWIDTH_NORMALIZE", DS_BOOL, W_OFF(queue_penalty_bandwidth_normalize), false},
};
/* clang-format on */
#define N_DSET (sizeof(dash_settings) / sizeof(*dash_settings))

static const char *const dash_ctx_modes[] = {"strip", "warn", "passthrough"};

static const void *
dset_ptr(const struct herd_cfg *c, const struct dset *s)
{
    return (const char *)c + s->off;
}

static int
dset_value(struct buf *b, const struct herd_cfg *c, const struct dset *s)
{
    const void *p = dset_ptr(c, s);
    const char *str;

    switch (s->type) {
    case DS_BOOL:
        return buf_appends(b, *(const bool *)p ? "true" : "false");
    case DS_INT:
        return buf_appendf(b, "%lld", (long long)*(const int64_t *)p);
    case DS_DUR:
        return buf_appendf(b, "%.10g", (double)*(const int64_t *)p / 1e9);
    case DS_DBL:
        return buf_appendf(b, "%.10g", *(const double *)p);
    case DS_SIZE:
        return buf_appendf(b, "%llu", (unsigned long long)*(const uint64_t *)p);
    case DS_SECRET:
        str = *(char *const *)p;
        return buf_appends(b, str != NULL && *str ? "\"set\"" : "\"unset\"");
    case DS_STR:
        break;
    }
    str = *(char *const *)p;
    return str ? json_append_str(b, str, strlen(str)) : buf_appends(b, "null");
}

/* "config":{group:{key:value}}, in the table's group order. */
static int
dash_settings_config(struct buf *b, struct herd *h)
{
    const struct herd_cfg *c = h->cfg;
    const char *group = NULL;
    int rc = buf_appends(b, "\"config\":{");

    for (size_t i = 0; rc == 0 && i < N_DSET; i++) {
        const struct dset *s = &dash_settings[i];
        bool new_group = group == NULL || strcmp(group, s->group) != 0;

        if (new_group)
            rc = buf_appendf(b, "%s\"%s\":{", group ? "}," : "", s->group);
        else
            rc = buf_appends(b, ",");
        group = s->group;
        if (rc == 0)
            rc = buf_appendf(b, "\"%s\":", s->key);
        if (rc == 0 && strcmp(s->key, "port") == 0 && h->srv != NULL)
            rc = buf_appendf(b, "%u", http_server_port(h->srv)); /* real */
        else if (rc == 0)
            rc = dset_value(b, c, s);
    }
    if (rc == 0)
        rc = buf_appendf(b,
                         "},\"context_protection\":{\"context_protection\":"
                         "\"%s\"}",
                         dash_ctx_modes[c->context_protection]);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* "env":{key:"FLEET_..."},"mutable":[...] */
static int
dash_settings_meta(struct buf *b)
{
    int rc = buf_appends(b, ",\"env\":{\"context_protection\":"
                            "\"FLEET_CONTEXT_PROTECTION\"");

    for (size_t i = 0; rc == 0 && i < N_DSET; i++)
        rc = buf_appendf(b, ",\"%s\":\"%s\"", dash_settings[i].key,
                         dash_settings[i].env);
    if (rc == 0)
        rc = buf_appends(b, "},\"mutable\":[\"context_protection\"");
    for (size_t i = 0; rc == 0 && i < N_DSET; i++) {
        if (dash_settings[i].mutable)
            rc = buf_appendf(b, ",\"%s\"", dash_settings[i].key);
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

/* The Ollama version a node's heartbeat carries, if any. */
static void
dash_node_ollama_version(const struct registry_node *n, char *out, size_t len)
{
    cJSON *v = NULL;
    const char *s = NULL;

    out[0] = '\0';
    if (n->hb.raw == NULL ||
        json_parse(n->hb.raw, strlen(n->hb.raw), 64, &v, NULL, 0) != 0)
        return;
    s = json_get_str(v, "ollama_version");
    if (s == NULL)
        s = json_get_str(json_get(v, "ollama"), "version");
    if (s != NULL)
        snprintf(out, len, "%s", s);
    cJSON_Delete(v);
}

static int
dash_settings_nodes(struct buf *b, struct herd *h)
{
    int rc = buf_appends(b, ",\"nodes\":[");

    for (size_t i = 0; rc == 0 && i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);
        char ov[64];

        dash_node_ollama_version(n, ov, sizeof(ov));
        rc = buf_appends(b, i ? ",{\"node_id\":" : "{\"node_id\":");
        if (rc == 0)
            rc = json_append_str(b, n->id, strlen(n->id));
        if (rc == 0)
            rc = dj_str(b, "status", registry_status_name(n->status));
        if (rc == 0)
            rc = dj_str(b, "agent_version", n->hb.agent_version);
        if (rc == 0)
            rc = dj_str(b, "ollama_version", ov);
        if (rc == 0)
            rc = dj_str(b, "ip", n->ollama_base_url);
        if (rc == 0)
            rc = buf_appendf(b,
                             ",\"models_loaded_count\":%zu,"
                             "\"models_available_count\":%zu,"
                             "\"num_parallel\":%lld,\"is_router\":%s,"
                             "\"version_matches\":%s}",
                             n->hb.n_loaded, n->hb.n_available,
                             (long long)n->hb.num_parallel,
                             strcmp(n->id, h->hostname) == 0 ? "true" : "false",
                             strcmp(n->hb.agent_version, HERD_VERSION) == 0
                                 ? "true"
                                 : "false");
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static void
dash_api_settings_get(struct dashboard *d, struct http_req *req)
{
    struct herd *h = d->h;
    struct buf b;
    int rc;

    buf_init(&b, DASH_ANSWER_MAX);
    rc = buf_appends(&b, "{\"router_version\":\"" HERD_VERSION
                         "\",\"router_hostname\":");
    if (rc == 0)
        rc = json_append_str(&b, h->hostname, strlen(h->hostname));
    if (rc == 0)
        rc = buf_appendf(&b, ",\"uptime_s\":%.0f,\"admin_key_required\":%s,",
                         (double)(clock_wall_ns() - h->started_wall_ns) / 1e9,
                         h->cfg->admin_key && *h->cfg->admin_key ? "true"
                                                                 : "false");
    if (rc == 0)
        rc = dash_settings_config(&b, h);
    if (rc == 0)
        rc = dash_settings_meta(&b);
    if (rc == 0)
        rc = dash_settings_nodes(&b, h);
    if (rc == 0)
        rc = buf_appends(&b, "}");
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
}

/* One requested change, checked: what to store where. */
struct dset_change {
    const struct dset *s; /* NULL: context_protection */
    bool b;
    int64_t i;
    enum ctx_protection mode;
};

static int
dash_settings_parse(const cJSON *body, struct dset_change *ch, size_t *n,
                    struct buf *ignored, char *err, size_t errlen)
{
    const cJSON *v = json_get(body, "context_protection");

    *n = 0;
    if (v != NULL) {
        size_t k = 0;

        while (k < 3 && !(cJSON_IsString(v) &&
                          strcmp(v->valuestring, dash_ctx_modes[k]) == 0))
            k++;
        if (k == 3) {
            snprintf(err, errlen,
                     "context_protection: must be \"strip\", "
                     "\"warn\" or \"passthrough\"");
            return -EINVAL;
        }
        ch[*n].s = NULL;
        ch[(*n)++].mode = (enum ctx_protection)k;
    }
    for (size_t i = 0; i < N_DSET; i++) {
        const struct dset *s = &dash_settings[i];

        v = json_get(body, s->key);
        if (v == NULL)
            continue;
        if (!s->mutable) {
            /* ollama-herd ignores these; we say so */
            if (buf_appends(ignored, ignored->len ? ",\"" : "\"") != 0 ||
                buf_appends(ignored, s->key) != 0 ||
                buf_appends(ignored, "\"") != 0)
                return -ENOMEM;
            continue;
        }
        ch[*n].s = s;
        if (s->type == DS_BOOL) {
            if (!cJSON_IsBool(v)) {
                snprintf(err, errlen, "%s: must be true or false", s->key);
                return -EINVAL;
            }
            ch[(*n)++].b = cJSON_IsTrue(v);
        } else {
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
                v->valuedouble < 0 || v->valuedouble > 15) {
                snprintf(err, errlen, "%s: must be an integer from 0 to 15",
                         s->key);
                return -EINVAL;
            }
            ch[(*n)++].i = (int64_t)v->valuedouble;
        }
    }
    return 0;
}

static int
dash_settings_apply(struct herd *h, const struct dset_change *ch, size_t n,
                    const char *peer, struct buf *b)
{
    int rc = buf_appends(b, "{\"status\":\"updated\",\"updated\":{");

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct dset *s = ch[i].s;

        if (s == NULL) {
            log_info("settings: context_protection %s -> %s (from %s)",
                     dash_ctx_modes[h->cfg->context_protection],
                     dash_ctx_modes[ch[i].mode], peer);
            h->cfg->context_protection = ch[i].mode;
            rc = buf_appendf(b, "%s\"context_protection\":\"%s\"", i ? "," : "",
                             dash_ctx_modes[ch[i].mode]);
            continue;
        }
        if (s->type == DS_BOOL) {
            bool *p = (bool *)(void *)((char *)h->cfg + s->off);

            log_info("settings: %s %s -> %s (from %s)", s->key,
                     *p ? "true" : "false", ch[i].b ? "true" : "false", peer);
            *p = ch[i].b;
            rc = buf_appendf(b, "%s\"%s\":%s", i ? "," : "", s->key,
                             ch[i].b ? "true" : "false");
        } else {
            int64_t *p = (int64_t *)(void *)((char *)h->cfg + s->off);

            log_info("settings: %s %lld -> %lld (from %s)", s->key,
                     (long long)*p, (long long)ch[i].i, peer);
            *p = ch[i].i;
            rc = buf_appendf(b, "%s\"%s\":%lld", i ? "," : "", s->key,
                             (long long)ch[i].i);
        }
    }
    return rc == 0 ? buf_appends(b, "}}") : rc;
}

static void
dash_api_settings_post(struct dashboard *d, struct http_req *req)
{
    struct dset_change ch[N_DSET + 1];
    char err[512];
    struct buf b, ignored;
    size_t n = 0;
    cJSON *body;
    int rc;

    if (!pulls_admin_ok(d->h, req, false))
        return;
    body = dash_body_object(req);
    if (body == NULL)
        return;
    buf_init(&ignored, 16 * 1024);
    rc = dash_settings_parse(body, ch, &n, &ignored, err, sizeof(err));
    cJSON_Delete(body);
    if (rc != 0) {
        buf_cleanup(&ignored);
        api_error(req, false, rc == -ENOMEM ? 500 : 400, NULL, "%s",
                  rc == -ENOMEM ? "out of memory" : err);
        return;
    }
    buf_init(&b, 64 * 1024);
    if (n == 0)
        rc = buf_appends(&b, "{\"status\":\"no_change\",\"message\":"
                             "\"No mutable fields provided\"}");
    else
        rc = dash_settings_apply(d->h, ch, n, http_req_peer(req), &b);
    if (rc == 0 && ignored.len > 0) {
        b.len--; /* the closing brace */
        rc = buf_appendf(&b,
                         ",\"ignored\":[%s],\"ignored_reason\":"
                         "\"not changeable at run time: set the FLEET_* "
                         "variable and restart herd\"}",
                         ignored.data);
    }
    if (n > 0) {
        router_fleet_changed(d->h->router);
        d->health_at = 0;
    }
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
    buf_cleanup(&ignored);
}

/* --- pinned models: <data_dir>/pinned_models.json
 * ---------------------------------- */

/* Reads the file; a missing or bad one is an empty set (fails open, as
 * ollama-herd's reader does), said once in the log. */
static cJSON *
dash_pins_load(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    cJSON *v = NULL;
    int rc = fs_read_file(path, DASH_FILE_MAX, &data, &len);

    if (rc == 0 && (json_parse(data, len, 16, &v, NULL, 0) != 0 ||
                    !cJSON_IsObject(json_get(v, "nodes")))) {
        log_warn("dashboard: %s is not a pin file; starting with no pins",
                 path);
        cJSON_Delete(v);
        v = NULL;
    } else if (rc != 0 && rc != -ENOENT) {
        log_warn("dashboard: cannot read %s (%s); starting with no pins", path,
                 strerror(-rc));
    }
    free(data);
    if (v == NULL) {
        v = cJSON_CreateObject();
        if (v != NULL && cJSON_AddObjectToObject(v, "nodes") == NULL) {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    return v;
}

/* Pretty-printed, written atomically. */
static int
dash_pins_save(struct dashboard *d)
{
    char *text;
    int rc;

    cJSON_DeleteItemFromObjectCaseSensitive(d->pins, "updated_at");
    cJSON_AddNumberToObject(d->pins, "updated_at", dash_wall());
    text = cJSON_Print(d->pins);
    if (text == NULL)
        return -ENOMEM;
    rc = fs_write_atomic(d->pins_path, text, strlen(text));
    free(text);
    return rc;
}

static void
dash_env_pins(struct dashboard *d)
{
    const char *env = getenv("FLEET_PINNED_MODELS");
    char name[REGISTRY_MODEL_NAME_MAX + 16];

    if (env == NULL)
        return;
    while (*env != '\0' && d->n_env_pins < DASH_PINS_MAX_MODELS) {
        size_t n = strcspn(env, ",");
        size_t a = 0, z = n;
        char **v;

        while (a < z && (env[a] == ' ' || env[a] == '\t'))
            a++;
        while (z > a && (env[z - 1] == ' ' || env[z - 1] == '\t'))
            z--;
        if (z > a && z - a <= REGISTRY_MODEL_NAME_MAX) {
            char raw[REGISTRY_MODEL_NAME_MAX + 1];

            memcpy(raw, env + a, z - a);
            raw[z - a] = '\0';
            v = realloc(d->env_pins, (d->n_env_pins + 1) * sizeof(*v));
            if (v == NULL)
                return;
            d->env_pins = v;
            v[d->n_env_pins] = strdup(dash_model_norm(raw, name, sizeof(name)));
            if (v[d->n_env_pins] != NULL)
                d->n_env_pins++;
        }
        env += n;
        if (*env == ',')
            env++;
    }
}

static int
dash_pins_json(struct dashboard *d, struct buf *b, bool ok_only)
{
    int rc = buf_appends(b, ok_only ? "{\"ok\":true,\"per_node\":"
                                    : "{\"env_pins\":[");

    for (size_t i = 0; rc == 0 && !ok_only && i < d->n_env_pins; i++) {
        rc = buf_appends(b, i ? "," : "");
        if (rc == 0)
            rc = json_append_str(b, d->env_pins[i], strlen(d->env_pins[i]));
    }
    if (rc == 0 && !ok_only)
        rc = buf_appends(b, "],\"per_node\":");
    if (rc == 0)
        rc = json_print(json_get(d->pins, "nodes"), b);
    if (rc == 0 && !ok_only)
        rc = buf_appendf(b, ",\"max_count\":%d", DASH_PIN_MAX_COUNT);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

static void
dash_api_pins_get(struct dashboard *d, struct http_req *req)
{
    struct buf b;

    buf_init(&b, DASH_ANSWER_MAX);
    dash_buf_answer(req, &b, dash_pins_json(d, &b, false));
    buf_cleanup(&b);
}

static int
dash_str_cmp(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;

    return strcmp(x->valuestring, y->valuestring);
}

/* Adds or removes model in nodes[node_id], sorted and without duplicates;
 * an empty list removes the node. 0, -E2BIG, -ENOMEM. */
static int
dash_pins_set(cJSON *nodes, const char *node_id, const char *model, bool pin)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(nodes, node_id), *it;
    cJSON *items[DASH_PINS_MAX_MODELS + 1];
    size_t n = 0;

    if (list == NULL && !pin)
        return 0;
    if (list == NULL) {
        if (cJSON_GetArraySize(nodes) >= DASH_PINS_MAX_NODES)
            return -E2BIG;
        list = cJSON_AddArrayToObject(nodes, node_id);
        if (list == NULL)
            return -ENOMEM;
    }
    for (int i = cJSON_GetArraySize(list) - 1; i >= 0; i--) {
        it = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsString(it) || strcmp(it->valuestring, model) == 0)
            cJSON_DeleteItemFromArray(list, i);
    }
    if (pin) {
        if (cJSON_GetArraySize(list) >= DASH_PINS_MAX_MODELS)
            return -E2BIG;
        cJSON_AddItemToArray(list, cJSON_CreateString(model));
    }
    if (cJSON_GetArraySize(list) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(nodes, node_id);
        return 0;
    }
    while (list->child != NULL && n < DASH_PINS_MAX_MODELS + 1)
        items[n++] = cJSON_DetachItemViaPointer(list, list->child);
    qsort(items, n, sizeof(*items), dash_str_cmp);
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(list, items[i]);
    return 0;
}

static void
dash_api_pins_post(struct dashboard *d, struct http_req *req)
{
    char name[REGISTRY_MODEL_NAME_MAX + 16];
    const char *node, *model;
    const cJSON *pinned;
    struct buf b;
    cJSON *body;
    int rc;

    if (!pulls_admin_ok(d->h, req, false))
        return;
    body = dash_body_object(req);
    if (body == NULL)
        return;
    node = json_get_str(body, "node_id");
    model = json_get_str(body, "model");
    pinned = json_get(body, "pinned");
    if (node == NULL || *node == '\0' || model == NULL || *model == '\0' ||
        !cJSON_IsBool(pinned)) {
        api_error(req, false, 400, NULL,
                  "node_id and model (strings) and pinned (true or false) are "
                  "required");
        goto out;
    }
    if (strlen(node) > REGISTRY_NODE_ID_MAX ||
        strlen(model) > REGISTRY_MODEL_NAME_MAX) {
        api_error(req, false, 400, NULL,
                  "node_id is at most %d bytes, model at most %d",
                  REGISTRY_NODE_ID_MAX, REGISTRY_MODEL_NAME_MAX);
        goto out;
    }
    dash_model_norm(model, name, sizeof(name));
    if (cJSON_IsTrue(pinned) &&
        (strcmp(recommend_classify(d->catalog, name), "vision-embedding") ==
             0 ||
         strcmp(recommend_classify(d->catalog, name), "image") == 0)) {
        api_error(req, false, 400, NULL,
                  "%s is not an Ollama language model: it cannot be pinned",
                  name);
        goto out;
    }
    rc = dash_pins_set(
        json_get(d->pins, "nodes") ? (cJSON *)json_get(d->pins, "nodes") : NULL,
        node, name, cJSON_IsTrue(pinned));
    if (rc == 0)
        rc = dash_pins_save(d);
    if (rc != 0) {
        api_error(req, false, rc == -E2BIG ? 400 : 500, NULL,
                  "cannot %s %s on %s: %s",
                  cJSON_IsTrue(pinned) ? "pin" : "unpin", name, node,
                  rc == -E2BIG ? "too many pins" : strerror(-rc));
        goto out;
    }
    log_info("dashboard: %s %s on %s (from %s)",
             cJSON_IsTrue(pinned) ? "pinned" : "unpinned", name, node,
             http_req_peer(req));
    buf_init(&b, DASH_ANSWER_MAX);
    dash_buf_answer(req, &b, dash_pins_json(d, &b, true));
    buf_cleanup(&b);
out:
    cJSON_Delete(body);
}

static bool
dash_is_pinned(const struct dashboard *d, const char *node, const char *model)
{
    const cJSON *it;

    for (size_t i = 0; i < d->n_env_pins; i++) {
        if (strcmp(d->env_pins[i], model) == 0)
            return true;
    }
    cJSON_ArrayForEach(it, json_get(json_get(d->pins, "nodes"), node))
    {
        if (cJSON_IsString(it) && strcmp(it->valuestring, model) == 0)
            return true;
    }
    return false;
}

/* --- GET /dashboard/api/model-management
 * -------------------------------------------- */

struct dmm_node {
    struct dmm *mm;
    char id[REGISTRY_NODE_ID_MAX + 1];
    struct http_call *call;
    cJSON *tags; /* the node's /api/tags answer */
    char err[160];
};

struct dmm {
    struct dashboard *d;
    struct dreq *r;
    struct dmm *prev, *next; /* in d->mm: calls to cancel at free */
    int pending;
    cJSON *usage; /* dashq usage, 30 days */
    struct dmm_node *nodes;
    size_t n;
};

struct dmm_row {
    cJSON *o;
    bool loaded;
    double last_used;
    const char *name;
};

static void
dmm_free(struct dmm *mm)
{
    struct dashboard *d = mm->d;

    if (mm->prev)
        mm->prev->next = mm->next;
    else
        d->mm = mm->next;
    if (mm->next)
        mm->next->prev = mm->prev;
    for (size_t i = 0; i < mm->n; i++) {
        if (mm->nodes[i].call != NULL)
            http_call_cancel(mm->nodes[i].call);
        cJSON_Delete(mm->nodes[i].tags);
    }
    free(mm->nodes);
    cJSON_Delete(mm->usage);
    free(mm);
    dash_unref(d);
}

/* Requests and last use of node:model over the 30 days of usage rows. */
static void
dmm_usage(const struct dmm *mm, const char *node, const char *model,
          double *requests, double *last)
{
    const cJSON *row;

    *requests = 0;
    *last = 0;
    cJSON_ArrayForEach(row, json_get(mm->usage, "data"))
    {
        const char *n = json_get_str(row, "node_id");
        const char *m = json_get_str(row, "model");
        double day = json_get_num(row, "day_bucket", 0);

        if (n == NULL || m == NULL || strcmp(n, node) != 0 ||
            strcmp(m, model) != 0)
            continue;
        *requests += json_get_num(row, "request_count", 0);
        if (day > *last)
            *last = day;
    }
}

static const cJSON *
dmm_tag(const cJSON *tags, const char *name)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, json_get(tags, "models"))
    {
        const char *n = json_get_str(m, "name");

        if (n == NULL)
            n = json_get_str(m, "model");
        if (n != NULL && strcmp(n, name) == 0)
            return m;
    }
    return NULL;
}

static cJSON *
dmm_model(const struct dmm *mm, const struct registry_node *n, const char *name,
          double now, struct dmm_row *row)
{
    const struct dmm_node *dn = NULL;
    const struct registry_loaded *l = registry_node_loaded(n, name);
    const struct rec_model *cm = recommend_lookup(mm->d->catalog, name);
    const cJSON *t, *det;
    double size = -1, req, last;
    const char *ps = l ? l->parameter_size : "", *q = l ? l->quantization : "";
    cJSON *o = cJSON_CreateObject();

    for (size_t i = 0; i < mm->n && dn == NULL; i++)
        dn = strcmp(mm->nodes[i].id, n->id) == 0 ? &mm->nodes[i] : NULL;
    t = dn ? dmm_tag(dn->tags, name) : NULL;
    det = json_get(t, "details");
    if (t != NULL && json_get_num(t, "size", -1) >= 0)
        size = json_get_num(t, "size", 0) / (1024.0 * 1024.0 * 1024.0);
    else if (l != NULL)
        size = l->size_gb;
    if (json_get_str(det, "parameter_size") && !*ps)
        ps = json_get_str(det, "parameter_size");
    if (json_get_str(det, "quantization_level") && !*q)
        q = json_get_str(det, "quantization_level");
    dmm_usage(mm, n->id, name, &req, &last);
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "display_name", cm ? cm->display_name : name);
    cJSON_AddStringToObject(o, "category",
                            recommend_classify(mm->d->catalog, name));
    if (size >= 0)
        cJSON_AddNumberToObject(o, "size_gb", round(size * 100) / 100);
    else
        cJSON_AddNullToObject(o, "size_gb");
    cJSON_AddStringToObject(o, "parameter_size", ps ? ps : "");
    cJSON_AddStringToObject(o, "quantization", q ? q : "");
    if (last > 0) {
        cJSON_AddNumberToObject(o, "last_used", last);
        cJSON_AddNumberToObject(o, "days_unused", floor((now - last) / 86400));
    } else {
        cJSON_AddNullToObject(o, "last_used");
        cJSON_AddNullToObject(o, "days_unused");
    }
    cJSON_AddNumberToObject(o, "total_requests", req);
    cJSON_AddBoolToObject(o, "loaded_in_vram", l != NULL);
    cJSON_AddBoolToObject(o, "unused", last <= 0 || now - last >= 7 * 86400);
    cJSON_AddBoolToObject(o, "pinned", dash_is_pinned(mm->d, n->id, name));
    row->o = o;
    row->loaded = l != NULL;
    row->last_used = last;
    row->name = json_get_str(o, "name");
    return o;
}

static int
dmm_row_cmp(const void *a, const void *b)
{
    const struct dmm_row *x = a, *y = b;

    if (x->loaded != y->loaded)
        return x->loaded ? -1 : 1;
    if (x->last_used != y->last_used)
        return x->last_used > y->last_used ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Every model of node n: its /api/tags, the heartbeat's lists. */
static cJSON *
dmm_node_json(const struct dmm *mm, const struct dmm_node *dn,
              const struct registry_node *n, double now)
{
    size_t cap = n->hb.n_loaded + n->hb.n_available, k = 0;
    const cJSON *t;
    struct dmm_row *rows;
    cJSON *o = cJSON_CreateObject(), *models;
    double total = 0;

    cap += (size_t)cJSON_GetArraySize(json_get(dn->tags, "models"));
    rows = calloc(cap ? cap : 1, sizeof(*rows));
    if (o == NULL || rows == NULL) {
        cJSON_Delete(o);
        free(rows);
        return NULL;
    }
#define DMM_ADD(nm)                                                            \
    do {                                                                       \
        bool dup_ = false;                                                     \
        for (size_t j_ = 0; j_ < k && !dup_; j_++)                             \
            dup_ = strcmp(rows[j_].name, (nm)) == 0;                           \
        if (!dup_ && k < cap && dmm_model(mm, n, (nm), now, &rows[k]) != NULL) \
            k++;                                                               \
    } while (0)
    for (size_t i = 0; i < n->hb.n_loaded; i++)
        DMM_ADD(n->hb.loaded[i].name);
    cJSON_ArrayForEach(t, json_get(dn->tags, "models"))
    {
        if (json_get_str(t, "name") != NULL)
            DMM_ADD(json_get_str(t, "name"));
    }
    for (size_t i = 0; i < n->hb.n_available; i++)
        DMM_ADD(n->hb.available[i]);
#undef DMM_ADD
    qsort(rows, k, sizeof(*rows), dmm_row_cmp);
    cJSON_AddStringToObject(o, "node_id", n->id);
    cJSON_AddStringToObject(o, "status", registry_status_name(n->status));
    models = cJSON_AddArrayToObject(o, "models");
    for (size_t i = 0; i < k; i++) {
        total += fmax(0, json_get_num(rows[i].o, "size_gb", 0));
        if (models != NULL)
            cJSON_AddItemToArray(models, rows[i].o);
        else
            cJSON_Delete(rows[i].o);
    }
    free(rows);
    cJSON_AddNumberToObject(o, "total_size_gb", round(total * 100) / 100);
    if (n->hb.has_disk) {
        cJSON_AddNumberToObject(o, "disk_available_gb",
                                n->hb.disk_available_gb);
        cJSON_AddNumberToObject(o, "disk_total_gb", n->hb.disk_total_gb);
    } else {
        cJSON_AddNullToObject(o, "disk_available_gb");
        cJSON_AddNullToObject(o, "disk_total_gb");
    }
    if (dn->err[0])
        cJSON_AddStringToObject(o, "tags_error", dn->err);
    return o;
}

static void
dmm_finish(struct dmm *mm)
{
    struct herd *h = mm->d->h;
    cJSON *root = cJSON_CreateObject(), *nodes;
    double now = dash_wall();
    struct buf b;
    int rc = -ENOMEM;

    nodes = root ? cJSON_AddArrayToObject(root, "nodes") : NULL;
    for (size_t i = 0; nodes != NULL && i < mm->n; i++) {
        const struct registry_node *n = registry_find(h->reg, mm->nodes[i].id);
        cJSON *o;

        if (n == NULL)
            continue; /* removed meanwhile */
        o = dmm_node_json(mm, &mm->nodes[i], n, now);
        if (o != NULL)
            cJSON_AddItemToArray(nodes, o);
    }
    buf_init(&b, DASH_ANSWER_MAX);
    if (nodes != NULL) {
        cJSON_AddNumberToObject(root, "generated_at", now);
        cJSON_AddBoolToObject(root, "usage_available", mm->usage != NULL);
        rc = json_print(root, &b);
    }
    cJSON_Delete(root);
    if (rc == 0)
        dreq_answer(mm->r, 200, b.data, b.len);
    else
        dreq_error(mm->r, 500, "could not build the model list (%s)",
                   strerror(-rc));
    mm->r = NULL;
    buf_cleanup(&b);
    dmm_free(mm);
}

static void
dmm_done_one(struct dmm *mm)
{
    if (--mm->pending == 0)
        dmm_finish(mm);
}

static void
dmm_on_tags(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct dmm_node *dn = ud;
    size_t len;
    const char *body = http_call_body(call, &len);
    int status = http_call_status(call);

    dn->call = NULL;
    if (err != 0)
        snprintf(dn->err, sizeof(dn->err), "%.150s", errmsg);
    else if (status != 200)
        snprintf(dn->err, sizeof(dn->err), "GET /api/tags: HTTP %d", status);
    else if (json_parse(body, len, 64, &dn->tags, NULL, 0) != 0)
        snprintf(dn->err, sizeof(dn->err), "GET /api/tags: not JSON");
    dmm_done_one(dn->mm);
}

static void
dmm_on_usage(int rc, struct buf *json, void *ud)
{
    struct dmm *mm = ud;

    if (rc == 0)
        (void)json_parse(json->data, json->len, 64, &mm->usage, NULL, 0);
    dmm_done_one(mm);
}

static void
dash_api_model_management(struct dashboard *d, struct http_req *req)
{
    struct herd *h = d->h;
    struct dashq_params p;
    struct dmm *mm = calloc(1, sizeof(*mm));
    size_t nn = registry_count(h->reg);

    if (mm != NULL)
        mm->nodes = calloc(nn ? nn : 1, sizeof(*mm->nodes));
    if (mm == NULL || mm->nodes == NULL) {
        if (mm != NULL)
            free(mm->nodes);
        free(mm);
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    mm->r = dreq_new(d, req);
    if (mm->r == NULL) {
        free(mm->nodes);
        free(mm);
        return;
    }
    mm->d = d;
    dash_ref(d);
    mm->next = d->mm;
    if (mm->next)
        mm->next->prev = mm;
    d->mm = mm;
    mm->pending = 1; /* this function's own */
    for (size_t i = 0; i < nn && mm->n < DASH_MM_MAX_NODES; i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);
        struct dmm_node *dn = &mm->nodes[mm->n];
        struct http_call_opts o = {0};
        char url[400];

        if (!registry_node_routable(n))
            continue;
        dn->mm = mm;
        snprintf(dn->id, sizeof(dn->id), "%s", n->id);
        snprintf(url, sizeof(url), "%s/api/tags", n->ollama_base_url);
        o.url = url;
        o.connect_timeout_ms = 5000;
        o.total_timeout_ms = 10000;
        o.max_body = 8u << 20;
        o.on_done = dmm_on_tags;
        o.ud = dn;
        mm->n++;
        dn->call = http_call_start(h->cli, &o, dn->err, sizeof(dn->err));
        if (dn->call != NULL)
            mm->pending++;
    }
    if (d->q != NULL) {
        memset(&p, 0, sizeof(p));
        p.days = 30;
        if (dashq_run(d->q, DASHQ_USAGE, &p, dmm_on_usage, mm) == 0)
            mm->pending++;
    }
    dmm_done_one(mm);
}

/* --- GET /dashboard/api/context-usage (reduced: see docs/dashboard.md)
 * ----------- */

struct dcu;

struct dcu_model {
    struct dcu *cu;
    char model[REGISTRY_MODEL_NAME_MAX + 1];
    int64_t allocated; /* the largest context it is loaded with */
    cJSON *rows;       /* dashq traces of the window */
    int rc;
};

struct dcu {
    struct dashboard *d;
    struct dreq *r;
    int pending, days;
    double since;
    struct dcu_model m[DASH_CTX_MAX_MODELS];
    size_t n;
};

static int
dcu_dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Percentile as ollama-herd's latency store takes it: the sorted value at
 * index int(n * q), clamped. */
static double
dcu_pct(const double *v, size_t n, double q)
{
    size_t i = (size_t)((double)n * q);

    return n == 0 ? 0 : v[i < n ? i : n - 1];
}

static int64_t
dcu_pow2(double x)
{
    int64_t p = 1;

    while ((double)p < x && p < ((int64_t)1 << 40))
        p <<= 1;
    return p;
}

static void
dcu_stats(cJSON *o, const char *key, double *v, size_t n, bool full)
{
    cJSON *s = cJSON_AddObjectToObject(o, key);
    double sum = 0;

    if (s == NULL)
        return;
    qsort(v, n, sizeof(*v), dcu_dbl_cmp);
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    if (full) {
        cJSON_AddNumberToObject(s, "avg", n ? round(sum / (double)n) : 0);
        cJSON_AddNumberToObject(s, "p50", dcu_pct(v, n, 0.50));
        cJSON_AddNumberToObject(s, "p75", dcu_pct(v, n, 0.75));
    }
    cJSON_AddNumberToObject(s, "p95", dcu_pct(v, n, 0.95));
    cJSON_AddNumberToObject(s, "p99", dcu_pct(v, n, 0.99));
    cJSON_AddNumberToObject(s, "max", n ? v[n - 1] : 0);
}

static cJSON *
dcu_model_json(const struct dcu *cu, const struct dcu_model *m, double now)
{
    size_t cap = (size_t)cJSON_GetArraySize(json_get(m->rows, "traces"));
    double *pr = calloc(cap ? cap : 1, sizeof(double));
    double *tot = calloc(cap ? cap : 1, sizeof(double));
    double max24 = 0, p99;
    size_t n = 0;
    const cJSON *t;
    cJSON *o = cJSON_CreateObject(), *tt;

    if (o == NULL || pr == NULL || tot == NULL) {
        cJSON_Delete(o);
        free(pr);
        free(tot);
        return NULL;
    }
    cJSON_ArrayForEach(t, json_get(m->rows, "traces"))
    {
        double p = json_get_num(t, "prompt_tokens", -1);
        double c = json_get_num(t, "completion_tokens", 0);

        if (p < 0 || n >= cap)
            continue;
        pr[n] = p;
        tot[n] = p + (c > 0 ? c : 0);
        if (json_get_num(t, "timestamp", 0) >= now - 86400 && tot[n] > max24)
            max24 = tot[n];
        n++;
    }
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddNumberToObject(o, "allocated_ctx", (double)m->allocated);
    cJSON_AddNullToObject(o, "override_ctx");
    cJSON_AddNumberToObject(o, "request_count", (double)n);
    dcu_stats(o, "prompt_tokens", pr, n, true);
    dcu_stats(o, "total_tokens", tot, n, false);
    tt = cJSON_GetObjectItemCaseSensitive(o, "total_tokens");
    if (tt != NULL)
        cJSON_AddNumberToObject(tt, "max_24h", max24);
    p99 = dcu_pct(tot, n, 0.99);
    if (n > 0 && m->allocated > 0) {
        int64_t rec = dcu_pow2(fmax(p99, max24) * 1.5);

        rec = rec < 4096 ? 4096 : rec;
        rec = rec > m->allocated ? m->allocated : rec;
        cJSON_AddNumberToObject(o, "utilization_pct",
                                round(p99 / (double)m->allocated * 1000) / 10);
        cJSON_AddNumberToObject(o, "recommended_ctx", (double)rec);
        cJSON_AddNumberToObject(
            o, "savings_pct",
            round((double)(m->allocated - rec) / (double)m->allocated * 1000) /
                10);
    } else {
        cJSON_AddNullToObject(o, "utilization_pct");
        cJSON_AddNullToObject(o, "recommended_ctx");
        cJSON_AddNullToObject(o, "savings_pct");
    }
    cJSON_AddBoolToObject(o, "sampled", cap >= DASH_CTX_ROWS);
    free(pr);
    free(tot);
    (void)cu;
    return o;
}

static void
dcu_finish(struct dcu *cu)
{
    struct dashboard *d = cu->d;
    cJSON *root = cJSON_CreateObject(), *models;
    double now = dash_wall();
    struct buf b;
    int rc = -ENOMEM;

    models = root ? cJSON_AddArrayToObject(root, "models") : NULL;
    if (models != NULL) {
        cJSON_AddNumberToObject(root, "days", cu->days);
        cJSON_AddNumberToObject(root, "rows_per_model", DASH_CTX_ROWS);
    }
    for (size_t i = 0; models != NULL && i < cu->n; i++) {
        cJSON *o = dcu_model_json(cu, &cu->m[i], now);

        if (o != NULL)
            cJSON_AddItemToArray(models, o);
    }
    buf_init(&b, DASH_ANSWER_MAX);
    if (models != NULL)
        rc = json_print(root, &b);
    cJSON_Delete(root);
    if (rc == 0)
        dreq_answer(cu->r, 200, b.data, b.len);
    else
        dreq_error(cu->r, 500, "could not build the context usage (%s)",
                   strerror(-rc));
    buf_cleanup(&b);
    for (size_t i = 0; i < cu->n; i++)
        cJSON_Delete(cu->m[i].rows);
    free(cu);
    dash_unref(d);
}

static void
dcu_on_rows(int rc, struct buf *json, void *ud)
{
    struct dcu_model *m = ud;
    struct dcu *cu = m->cu;

    m->rc = rc;
    if (rc == 0)
        (void)json_parse(json->data, json->len, 64, &m->rows, NULL, 0);
    if (--cu->pending == 0)
        dcu_finish(cu);
}

static void
dash_api_context_usage(struct dashboard *d, struct http_req *req)
{
    struct herd *h = d->h;
    struct dashq_params p;
    char err[256];
    struct dcu *cu;

    if (dash_params(req, DASHQ_USAGE, &p, err, sizeof(err)) != 0) {
        api_error(req, false, 400, NULL, "%s", err);
        return;
    }
    if (dash_no_traces(d, req))
        return;
    cu = calloc(1, sizeof(*cu));
    if (cu == NULL) {
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    cu->d = d;
    cu->days = p.days > 0 ? p.days : DASHQ_DAYS_DEFAULT;
    cu->since = dash_wall() - cu->days * 86400.0;
    /* every model loaded on a routable node, with its largest context */
    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);

        for (size_t j = 0; registry_node_routable(n) && j < n->hb.n_loaded;
             j++) {
            const struct registry_loaded *l = &n->hb.loaded[j];
            size_t k = 0;

            while (k < cu->n && strcmp(cu->m[k].model, l->name) != 0)
                k++;
            if (k == cu->n && cu->n < DASH_CTX_MAX_MODELS) {
                snprintf(cu->m[k].model, sizeof(cu->m[k].model), "%s", l->name);
                cu->m[k].cu = cu;
                cu->n++;
            }
            if (k < cu->n && l->context_length > cu->m[k].allocated)
                cu->m[k].allocated = l->context_length;
        }
    }
    cu->r = dreq_new(d, req);
    if (cu->r == NULL) {
        free(cu);
        return;
    }
    dash_ref(d);
    cu->pending = 1;
    for (size_t i = 0; i < cu->n; i++) {
        memset(&p, 0, sizeof(p));
        p.limit = DASH_CTX_ROWS;
        p.model = cu->m[i].model;
        p.since = cu->since;
        if (dashq_run(d->q, DASHQ_TRACES, &p, dcu_on_rows, &cu->m[i]) == 0)
            cu->pending++;
    }
    if (--cu->pending == 0)
        dcu_finish(cu);
}

/* --- benchmarks: a short run through herd's own routing
 * ----------------------------- */

#define BENCH_MAX_CONC     32
#define BENCH_MAX_MODELS   16
#define BENCH_MAX_NODES    256
#define BENCH_MAX_REQUESTS 10000
#define BENCH_MAX_DURATION 600
#define BENCH_KEEP_RUNS    50
#define BENCH_LINE_MAX     (1u << 20)
#define BENCH_PROMPT_MAX   4096

enum bench_state { BN_RUNNING, BN_DONE, BN_CANCELLED, BN_FAILED };

struct dbsample {
    double latency_ms, ttft_ms; /* ttft < 0: no first byte */
    int64_t prompt, completion;
    int model, node; /* indexes; node -1 when unknown */
    bool ok;
};

struct dbcall {
    struct dbench *bn;
    struct http_call *call;
    int model;
    int64_t t0, t_first;
    char node[REGISTRY_NODE_ID_MAX + 1];
    struct buf line;
    int64_t prompt, completion;
    bool done_ok, error_line;
};

struct dbench {
    struct dashboard *d;
    char run_id[37];
    double started;                    /* unix s */
    int64_t t0, t_end, t_stop, t_done; /* t_done: 0 while running */
    int duration_s, concurrency, max_requests, num_predict;
    char *prompt;
    char *models[BENCH_MAX_MODELS];
    int n_models, next_model;
    char *nodes[BENCH_MAX_NODES];
    int n_nodes;
    struct dbsample *s;
    int n_s, sent;
    struct dbcall *calls[BENCH_MAX_CONC];
    int active;
    enum bench_state state;
    char error[256];
    char url[160];
    cJSON *snapshot; /* the fleet at the start */
    uv_timer_t timer;
    bool timer_live;
};

static const char *
bench_state_name(enum bench_state s)
{
    switch (s) {
    case BN_RUNNING:
        return "running";
    case BN_DONE:
        return "completed";
    case BN_CANCELLED:
        return "cancelled";
    case BN_FAILED:
        break;
    }
    return "failed";
}

static void
bench_on_timer_closed(uv_handle_t *hd)
{
    struct dbench *bn = hd->data;
    struct dashboard *d = bn->d;

    for (int i = 0; i < bn->n_models; i++)
        free(bn->models[i]);
    for (int i = 0; i < bn->n_nodes; i++)
        free(bn->nodes[i]);
    free(bn->prompt);
    free(bn->s);
    cJSON_Delete(bn->snapshot);
    free(bn);
    dash_unref(d);
}

/* Frees a finished run (its timer is closed first). */
static void
bench_free(struct dbench *bn)
{
    if (bn == NULL)
        return;
    if (bn->timer_live) {
        bn->timer_live = false;
        uv_close((uv_handle_t *)&bn->timer, bench_on_timer_closed);
    }
}

static int
bench_node_index(struct dbench *bn, const char *node)
{
    if (node == NULL || *node == '\0')
        return -1;
    for (int i = 0; i < bn->n_nodes; i++) {
        if (strcmp(bn->nodes[i], node) == 0)
            return i;
    }
    if (bn->n_nodes >= BENCH_MAX_NODES)
        return -1;
    bn->nodes[bn->n_nodes] = strdup(node);
    return bn->nodes[bn->n_nodes] ? bn->n_nodes++ : -1;
}

static void bench_send(struct dbench *bn);
static void bench_finish(struct dbench *bn);

/* One NDJSON line of the answer. */
static void
bench_line(struct dbcall *c, const char *p, size_t n)
{
    cJSON *v = NULL;

    if (c->t_first == 0)
        c->t_first = herd_now_ns();
    if (json_parse(p, n, 32, &v, NULL, 0) != 0)
        return;
    if (json_get(v, "error") != NULL)
        c->error_line = true;
    if (json_get_bool(v, "done", false)) {
        c->done_ok = true;
        c->prompt = (int64_t)json_get_num(v, "prompt_eval_count", 0);
        c->completion = (int64_t)json_get_num(v, "eval_count", 0);
    }
    cJSON_Delete(v);
}

static int
bench_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct dbcall *c = ud;
    const char *nl;

    (void)call;
    while (n > 0) {
        nl = memchr(p, '\n', n);
        if (nl == NULL) {
            if (buf_append(&c->line, p, n) != 0)
                c->error_line = true; /* a line over 1 MiB */
            return 0;
        }
        if (c->line.len > 0) {
            if (buf_append(&c->line, p, (size_t)(nl - p)) == 0)
                bench_line(c, c->line.data, c->line.len);
            buf_reset(&c->line);
        } else if (nl > p) {
            bench_line(c, p, (size_t)(nl - p));
        }
        n -= (size_t)(nl - p) + 1;
        p = nl + 1;
    }
    return 0;
}

static void
bench_on_response(struct http_call *call, int status, void *ud)
{
    struct dbcall *c = ud;
    const char *node = http_call_header(call, "X-Fleet-Node");

    (void)status;
    if (node != NULL)
        snprintf(c->node, sizeof(c->node), "%s", node);
}

static void
bench_record(struct dbench *bn, struct dbcall *c, bool ok)
{
    struct dbsample *s;
    int64_t now = herd_now_ns();

    if (bn->n_s >= bn->max_requests)
        return;
    s = &bn->s[bn->n_s++];
    s->ok = ok;
    s->latency_ms = (double)(now - c->t0) / 1e6;
    s->ttft_ms = c->t_first ? (double)(c->t_first - c->t0) / 1e6 : -1;
    s->prompt = c->prompt;
    s->completion = c->completion;
    s->model = c->model;
    s->node = bench_node_index(bn, c->node);
}

static void
bench_call_free(struct dbench *bn, struct dbcall *c)
{
    for (int i = 0; i < BENCH_MAX_CONC; i++) {
        if (bn->calls[i] == c) {
            bn->calls[i] = NULL;
            break;
        }
    }
    bn->active--;
    buf_cleanup(&c->line);
    free(c);
}

static void
bench_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct dbcall *c = ud;
    struct dbench *bn = c->bn;
    int status = http_call_status(call);

    if (c->line.len > 0)
        bench_line(c, c->line.data, c->line.len);
    bench_record(bn, c,
                 err == 0 && status == 200 && c->done_ok && !c->error_line);
    if (err != 0 && bn->error[0] == '\0')
        snprintf(bn->error, sizeof(bn->error), "%.200s", errmsg);
    else if (status != 200 && bn->error[0] == '\0')
        snprintf(bn->error, sizeof(bn->error), "HTTP %d from herd", status);
    c->call = NULL;
    bench_call_free(bn, c);
    if (bn->state == BN_RUNNING)
        bench_send(bn);
    if (bn->active == 0 && bn->state == BN_RUNNING)
        bench_finish(bn);
}

/* The body of one request: the next model in turn. */
static char *
bench_body(struct dbench *bn, int model)
{
    cJSON *o = cJSON_CreateObject(), *msgs, *m, *opt, *meta, *tags;
    char tag[48];
    char *s = NULL;

    if (o == NULL)
        return NULL;
    snprintf(tag, sizeof(tag), "benchmark:%.8s", bn->run_id);
    cJSON_AddStringToObject(o, "model", bn->models[model]);
    msgs = cJSON_AddArrayToObject(o, "messages");
    m = cJSON_CreateObject();
    if (msgs != NULL && m != NULL) {
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", bn->prompt);
        cJSON_AddItemToArray(msgs, m);
    } else {
        cJSON_Delete(m);
    }
    cJSON_AddBoolToObject(o, "stream", true);
    opt = cJSON_AddObjectToObject(o, "options");
    if (opt != NULL)
        cJSON_AddNumberToObject(opt, "num_predict", bn->num_predict);
    meta = cJSON_AddObjectToObject(o, "metadata");
    tags = meta ? cJSON_AddArrayToObject(meta, "tags") : NULL;
    if (tags != NULL) {
        cJSON_AddItemToArray(tags, cJSON_CreateString("benchmark"));
        cJSON_AddItemToArray(tags, cJSON_CreateString(tag));
    }
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Starts requests until concurrency, the request cap or the time is
 * reached. */
static void
bench_send(struct dbench *bn)
{
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Expect:", NULL};
    int64_t now = herd_now_ns();

    while (bn->state == BN_RUNNING && bn->active < bn->concurrency &&
           bn->sent < bn->max_requests && now < bn->t_end) {
        struct dbcall *c = calloc(1, sizeof(*c));
        struct http_call_opts o = {0};
        char err[256];
        char *body;
        int slot = 0;

        if (c == NULL)
            return;
        while (bn->calls[slot] != NULL)
            slot++;
        c->bn = bn;
        c->model = bn->next_model;
        bn->next_model = (bn->next_model + 1) % bn->n_models;
        buf_init(&c->line, BENCH_LINE_MAX);
        body = bench_body(bn, c->model);
        o.method = "POST";
        o.url = bn->url;
        o.headers = headers;
        o.body = body;
        o.body_len = body ? strlen(body) : 0;
        o.connect_timeout_ms = 5000;
        o.total_timeout_ms = (unsigned)((bn->t_stop - now) / NS_PER_MS > 1000
                                            ? (bn->t_stop - now) / NS_PER_MS
                                            : 1000);
        o.on_response = bench_on_response;
        o.on_data = bench_on_data;
        o.on_done = bench_on_done;
        o.ud = c;
        c->t0 = now;
        bn->calls[slot] = c;
        bn->active++;
        bn->sent++;
        c->call =
            body ? http_call_start(bn->d->h->cli, &o, err, sizeof(err)) : NULL;
        free(body);
        if (c->call == NULL) {
            snprintf(bn->error, sizeof(bn->error), "cannot send: %.200s",
                     body ? err : "out of memory");
            bench_record(bn, c, false);
            bench_call_free(bn, c);
            return;
        }
    }
}

/* --- benchmark results --- */

static double
bench_pct(double *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), dcu_dbl_cmp);
    return round(dcu_pct(v, n, q) * 10) / 10;
}

struct bench_agg {
    int requests, failures;
    int64_t prompt, completion;
    double *lat, *ttft;
    size_t n_lat, n_ttft;
};

static void
bench_agg_json(cJSON *o, struct bench_agg *a, double elapsed)
{
    cJSON_AddNumberToObject(o, "requests", a->requests);
    cJSON_AddNumberToObject(o, "failures", a->failures);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)a->prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)a->completion);
    cJSON_AddNumberToObject(
        o, "tokens_per_sec",
        elapsed > 0 ? round((double)a->completion / elapsed * 10) / 10 : 0);
    cJSON_AddNumberToObject(o, "latency_p50_ms",
                            bench_pct(a->lat, a->n_lat, 0.5));
    cJSON_AddNumberToObject(o, "latency_p95_ms",
                            bench_pct(a->lat, a->n_lat, 0.95));
    cJSON_AddNumberToObject(o, "ttft_p50_ms",
                            bench_pct(a->ttft, a->n_ttft, 0.5));
}

/* Aggregates the samples that pick() selects (key == which). */
static void
bench_agg(const struct dbench *bn, struct bench_agg *a, int which, bool by_node)
{
    a->n_lat = a->n_ttft = 0;
    a->requests = a->failures = 0;
    a->prompt = a->completion = 0;
    for (int i = 0; i < bn->n_s; i++) {
        const struct dbsample *s = &bn->s[i];

        if (which >= 0 && (by_node ? s->node : s->model) != which)
            continue;
        if (!s->ok) {
            a->failures++;
            continue;
        }
        a->requests++;
        a->prompt += s->prompt;
        a->completion += s->completion;
        a->lat[a->n_lat++] = s->latency_ms;
        if (s->ttft_ms >= 0)
            a->ttft[a->n_ttft++] = s->ttft_ms;
    }
}

static double
bench_elapsed(const struct dbench *bn)
{
    return (double)((bn->t_done ? bn->t_done : herd_now_ns()) - bn->t0) / 1e9;
}

static cJSON *
bench_result(const struct dbench *bn)
{
    double elapsed = bench_elapsed(bn);
    struct bench_agg a;
    cJSON *o = cJSON_CreateObject(), *pm, *pn, *ml;

    a.lat = calloc((size_t)bn->n_s + 1, sizeof(double));
    a.ttft = calloc((size_t)bn->n_s + 1, sizeof(double));
    if (o == NULL || a.lat == NULL || a.ttft == NULL) {
        cJSON_Delete(o);
        free(a.lat);
        free(a.ttft);
        return NULL;
    }
    bench_agg(bn, &a, -1, false);
    cJSON_AddStringToObject(o, "run_id", bn->run_id);
    cJSON_AddStringToObject(o, "status", bench_state_name(bn->state));
    cJSON_AddNumberToObject(o, "timestamp", bn->started);
    cJSON_AddNumberToObject(o, "duration_s", round(elapsed * 100) / 100);
    cJSON_AddNumberToObject(o, "planned_duration_s", bn->duration_s);
    cJSON_AddNumberToObject(o, "concurrency", bn->concurrency);
    cJSON_AddNumberToObject(o, "num_predict", bn->num_predict);
    cJSON_AddNumberToObject(o, "total_requests", a.requests + a.failures);
    cJSON_AddNumberToObject(o, "total_failures", a.failures);
    cJSON_AddNumberToObject(o, "total_prompt_tokens", (double)a.prompt);
    cJSON_AddNumberToObject(o, "total_completion_tokens", (double)a.completion);
    cJSON_AddNumberToObject(
        o, "requests_per_sec",
        elapsed > 0 ? round(a.requests / elapsed * 100) / 100 : 0);
    cJSON_AddNumberToObject(
        o, "tokens_per_sec",
        elapsed > 0 ? round((double)a.completion / elapsed * 10) / 10 : 0);
    cJSON_AddNumberToObject(o, "latency_p50_ms",
                            bench_pct(a.lat, a.n_lat, 0.5));
    cJSON_AddNumberToObject(o, "latency_p95_ms",
                            bench_pct(a.lat, a.n_lat, 0.95));
    cJSON_AddNumberToObject(o, "latency_p99_ms",
                            bench_pct(a.lat, a.n_lat, 0.99));
    cJSON_AddNumberToObject(o, "ttft_p50_ms", bench_pct(a.ttft, a.n_ttft, 0.5));
    cJSON_AddNumberToObject(o, "ttft_p95_ms",
                            bench_pct(a.ttft, a.n_ttft, 0.95));
    cJSON_AddNumberToObject(o, "ttft_p99_ms",
                            bench_pct(a.ttft, a.n_ttft, 0.99));
    ml = cJSON_AddArrayToObject(o, "models");
    pm = cJSON_AddObjectToObject(o, "per_model_results");
    for (int i = 0; pm != NULL && ml != NULL && i < bn->n_models; i++) {
        cJSON *m = cJSON_AddObjectToObject(pm, bn->models[i]);

        cJSON_AddItemToArray(ml, cJSON_CreateString(bn->models[i]));
        bench_agg(bn, &a, i, false);
        if (m != NULL)
            bench_agg_json(m, &a, elapsed);
    }
    pn = cJSON_AddObjectToObject(o, "per_node_results");
    for (int i = 0; pn != NULL && i < bn->n_nodes; i++) {
        cJSON *m = cJSON_AddObjectToObject(pn, bn->nodes[i]);

        bench_agg(bn, &a, i, true);
        if (m != NULL)
            bench_agg_json(m, &a, elapsed);
    }
    if (bn->snapshot != NULL)
        cJSON_AddItemToObject(o, "fleet_snapshot",
                              cJSON_Duplicate(bn->snapshot, true));
    if (bn->error[0])
        cJSON_AddStringToObject(o, "last_error", bn->error);
    free(a.lat);
    free(a.ttft);
    return o;
}

static void
bench_save(struct dashboard *d)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    int rc = -ENOMEM;

    if (root != NULL &&
        cJSON_AddItemReferenceToObject(root, "runs", d->bench_runs)) {
        text = cJSON_PrintUnformatted(root);
        if (text != NULL)
            rc = fs_write_atomic(d->bench_path, text, strlen(text));
    }
    if (rc != 0)
        log_warn("dashboard: cannot save %s (%s)", d->bench_path,
                 strerror(-rc));
    free(text);
    cJSON_Delete(root);
}

static void
bench_finish(struct dbench *bn)
{
    struct dashboard *d = bn->d;
    cJSON *run;

    if (bn->state == BN_RUNNING)
        bn->state = bn->n_s > 0 ? BN_DONE : BN_FAILED;
    uv_timer_stop(&bn->timer);
    bn->t_done = herd_now_ns();
    run = bench_result(bn);
    if (run != NULL && d->bench_runs != NULL) {
        cJSON_InsertItemInArray(d->bench_runs, 0, run);
        while (cJSON_GetArraySize(d->bench_runs) > BENCH_KEEP_RUNS)
            cJSON_DeleteItemFromArray(d->bench_runs,
                                      cJSON_GetArraySize(d->bench_runs) - 1);
        bench_save(d);
    } else {
        cJSON_Delete(run);
    }
    log_info("benchmark %.8s %s: %d requests in %.1f s", bn->run_id,
             bench_state_name(bn->state), bn->n_s, bench_elapsed(bn));
}

/* Cancels every call; the run ends as state. */
static void
bench_stop(struct dbench *bn, enum bench_state state)
{
    if (bn->state != BN_RUNNING)
        return;
    bn->state = state;
    for (int i = 0; i < BENCH_MAX_CONC; i++) {
        struct dbcall *c = bn->calls[i];

        if (c == NULL)
            continue;
        http_call_cancel(c->call);
        bench_record(bn, c, false);
        bench_call_free(bn, c);
    }
    bench_finish(bn);
}

static void
bench_on_timer(uv_timer_t *t)
{
    struct dbench *bn = t->data;

    /* the planned duration is over: no new request; the last ones get
     * 60 s more, then are cut */
    if (bn->state != BN_RUNNING)
        return;
    if (herd_now_ns() >= bn->t_stop) {
        snprintf(bn->error, sizeof(bn->error),
                 "requests still running 60 s after the end were cut");
        bench_stop(bn, BN_DONE);
        return;
    }
    if (bn->active == 0)
        bench_finish(bn);
}

/* --- benchmark APIs --- */

/* The loopback URL of herd's own /api/chat. */
static void
bench_url(struct herd *h, char *out, size_t n)
{
    const char *host = h->cfg->host ? h->cfg->host : "";
    unsigned port = http_server_port(h->srv);

    if (*host == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(out, n, "http://127.0.0.1:%u/api/chat", port);
    else if (strcmp(host, "::") == 0)
        snprintf(out, n, "http://[::1]:%u/api/chat", port);
    else if (strchr(host, ':') != NULL)
        snprintf(out, n, "http://[%s]:%u/api/chat", host, port);
    else
        snprintf(out, n, "http://%s:%u/api/chat", host, port);
}

static int
bench_add_model(struct dbench *bn, const char *name)
{
    char norm[REGISTRY_MODEL_NAME_MAX + 16];

    dash_model_norm(name, norm, sizeof(norm));
    for (int i = 0; i < bn->n_models; i++) {
        if (strcmp(bn->models[i], norm) == 0)
            return 0;
    }
    if (bn->n_models >= BENCH_MAX_MODELS)
        return -E2BIG;
    bn->models[bn->n_models] = strdup(norm);
    if (bn->models[bn->n_models] == NULL)
        return -ENOMEM;
    bn->n_models++;
    return 0;
}

/* Every model loaded on a routable node, and the fleet as it is. */
static int
bench_loaded_models(struct dbench *bn, struct herd *h)
{
    cJSON *snap = cJSON_CreateArray();

    bn->snapshot = snap;
    for (size_t i = 0; i < registry_count(h->reg); i++) {
        const struct registry_node *n = registry_node_at(h->reg, i);
        cJSON *o = cJSON_CreateObject(), *ml;

        if (o == NULL || snap == NULL) {
            cJSON_Delete(o);
            return -ENOMEM;
        }
        cJSON_AddStringToObject(o, "node_id", n->id);
        cJSON_AddStringToObject(o, "status", registry_status_name(n->status));
        cJSON_AddNumberToObject(o, "num_parallel", (double)n->hb.num_parallel);
        ml = cJSON_AddArrayToObject(o, "models_loaded");
        for (size_t j = 0; j < n->hb.n_loaded; j++) {
            if (ml != NULL)
                cJSON_AddItemToArray(ml,
                                     cJSON_CreateString(n->hb.loaded[j].name));
            if (registry_node_routable(n) &&
                strcmp(modelcat_classify(n->hb.loaded[j].name), "embedding") !=
                    0)
                (void)bench_add_model(bn, n->hb.loaded[j].name);
        }
        cJSON_AddItemToArray(snap, o);
    }
    return 0;
}

static int
bench_opt_int(const cJSON *body, const char *key, int def, int min, int max,
              int *out, char *err, size_t errlen)
{
    const cJSON *v = json_get(body, key);

    if (v == NULL || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < min || v->valuedouble > max) {
        snprintf(err, errlen, "%s: must be an integer from %d to %d", key, min,
                 max);
        return -EINVAL;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int
bench_parse(struct dbench *bn, const cJSON *body, char *err, size_t errlen)
{
    const cJSON *models = json_get(body, "models"), *m;
    const char *prompt = json_get_str(body, "prompt");
    int rc = bench_opt_int(body, "duration", 30, 1, BENCH_MAX_DURATION,
                           &bn->duration_s, err, errlen);

    if (rc == 0)
        rc = bench_opt_int(body, "concurrency", 2, 1, BENCH_MAX_CONC,
                           &bn->concurrency, err, errlen);
    if (rc == 0)
        rc = bench_opt_int(body, "max_requests", 1000, 1, BENCH_MAX_REQUESTS,
                           &bn->max_requests, err, errlen);
    if (rc == 0)
        rc = bench_opt_int(body, "num_predict", 64, 1, 4096, &bn->num_predict,
                           err, errlen);
    if (rc != 0)
        return rc;
    if (json_get(body, "prompt") != NULL &&
        (prompt == NULL || *prompt == '\0' ||
         strlen(prompt) > BENCH_PROMPT_MAX)) {
        snprintf(err, errlen, "prompt: a string of 1 to %d bytes",
                 BENCH_PROMPT_MAX);
        return -EINVAL;
    }
    bn->prompt = strdup(prompt ? prompt
                               : "Explain in two sentences why the sky is "
                                 "blue.");
    if (bn->prompt == NULL)
        return -ENOMEM;
    if (models != NULL && !cJSON_IsNull(models)) {
        if (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0 ||
            cJSON_GetArraySize(models) > BENCH_MAX_MODELS) {
            snprintf(err, errlen, "models: a list of 1 to %d model names",
                     BENCH_MAX_MODELS);
            return -EINVAL;
        }
        cJSON_ArrayForEach(m, models)
        {
            if (!cJSON_IsString(m) || *m->valuestring == '\0' ||
                strlen(m->valuestring) > REGISTRY_MODEL_NAME_MAX) {
                snprintf(err, errlen,
                         "models: every entry must be a model "
                         "name");
                return -EINVAL;
            }
            rc = bench_add_model(bn, m->valuestring);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void
dash_api_bench_start(struct dashboard *d, struct http_req *req)
{
    struct herd *h = d->h;
    struct dbench *bn;
    char err[256] = "";
    struct buf b;
    cJSON *body;
    int rc;

    if (!pulls_admin_ok(h, req, false))
        return;
    if (d->bench != NULL && d->bench->state == BN_RUNNING) {
        api_error(req, false, 409, NULL, "benchmark %.8s is already running",
                  d->bench->run_id);
        return;
    }
    body = dash_body_object(req);
    if (body == NULL)
        return;
    bn = calloc(1, sizeof(*bn));
    if (bn == NULL) {
        cJSON_Delete(body);
        api_error(req, false, 500, NULL, "out of memory");
        return;
    }
    bn->d = d;
    rc = bench_parse(bn, body, err, sizeof(err));
    cJSON_Delete(body);
    if (rc == 0)
        rc = bench_loaded_models(bn, h);
    if (rc == 0 && bn->n_models == 0) {
        snprintf(err, sizeof(err),
                 "no model is loaded in the fleet: load one, or name the "
                 "models to run");
        rc = -EINVAL;
    }
    if (rc == 0) {
        bn->s = calloc((size_t)bn->max_requests, sizeof(*bn->s));
        rc = bn->s ? 0 : -ENOMEM;
    }
    if (rc != 0) {
        for (int i = 0; i < bn->n_models; i++)
            free(bn->models[i]);
        free(bn->prompt);
        free(bn->s);
        cJSON_Delete(bn->snapshot);
        free(bn);
        api_error(req, false, rc == -EINVAL || rc == -E2BIG ? 400 : 500, NULL,
                  "%s", err[0] ? err : "out of memory");
        return;
    }
    /* the previous run's memory goes; its results are in the history */
    bench_free(d->bench);
    d->bench = bn;
    dash_ref(d);
    herd_uuid(h, bn->run_id);
    bench_url(h, bn->url, sizeof(bn->url));
    bn->started = dash_wall();
    bn->t0 = herd_now_ns();
    bn->t_end = bn->t0 + (int64_t)bn->duration_s * NS_PER_SEC;
    bn->t_stop = bn->t_end + 60 * NS_PER_SEC;
    uv_timer_init(h->loop, &bn->timer);
    bn->timer.data = bn;
    bn->timer_live = true;
    uv_timer_start(&bn->timer, bench_on_timer, 250, 250);
    log_info("benchmark %.8s: %d s, %d at once, %d models (from %s)",
             bn->run_id, bn->duration_s, bn->concurrency, bn->n_models,
             http_req_peer(req));
    bench_send(bn);
    buf_init(&b, 4096);
    rc = buf_appendf(&b, "{\"ok\":true,\"run_id\":\"%s\",\"models\":%d}",
                     bn->run_id, bn->n_models);
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
    if (bn->active == 0 && bn->state == BN_RUNNING)
        bench_finish(bn);
}

static void
dash_api_bench_cancel(struct dashboard *d, struct http_req *req)
{
    static const char ok[] = "{\"ok\":true,\"status\":\"cancelled\"}";

    if (!pulls_admin_ok(d->h, req, false))
        return;
    if (d->bench == NULL || d->bench->state != BN_RUNNING) {
        api_error(req, false, 409, NULL, "no benchmark is running");
        return;
    }
    bench_stop(d->bench, BN_CANCELLED);
    dash_respond_json(req, 200, ok, sizeof(ok) - 1);
}

static void
dash_api_bench_progress(struct dashboard *d, struct http_req *req)
{
    struct dbench *bn = d->bench;
    cJSON *o;
    struct buf b;
    int rc = -ENOMEM;

    if (bn == NULL) {
        static const char idle[] = "{\"running\":false,\"status\":\"idle\"}";

        dash_respond_json(req, 200, idle, sizeof(idle) - 1);
        return;
    }
    o = bench_result(bn);
    buf_init(&b, DASH_ANSWER_MAX);
    if (o != NULL) {
        cJSON_AddBoolToObject(o, "running", bn->state == BN_RUNNING);
        cJSON_AddNumberToObject(o, "in_flight", bn->active);
        cJSON_AddNumberToObject(o, "requests_sent", bn->sent);
        cJSON_AddNumberToObject(o, "elapsed_s",
                                round(bench_elapsed(bn) * 10) / 10);
        rc = json_print(o, &b);
        cJSON_Delete(o);
    }
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
}

static void
dash_api_bench_list(struct dashboard *d, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, DASH_ANSWER_MAX);
    rc = buf_appends(&b, "{\"runs\":");
    if (rc == 0)
        rc = json_print(d->bench_runs, &b);
    if (rc == 0)
        rc = buf_appendf(&b, ",\"running\":%s}",
                         d->bench && d->bench->state == BN_RUNNING ? "true"
                                                                   : "false");
    dash_buf_answer(req, &b, rc);
    buf_cleanup(&b);
}

static void
dash_api_bench_get(struct dashboard *d, struct http_req *req, const char *id)
{
    const cJSON *run;
    struct buf b;

    if (!dash_valid_id(id)) {
        api_error(req, false, 400, NULL,
                  "run_id: 1 to %d letters, digits, '-', '_' or '.'",
                  DASH_ID_MAX);
        return;
    }
    cJSON_ArrayForEach(run, d->bench_runs)
    {
        const char *rid = json_get_str(run, "run_id");

        if (rid != NULL && strcmp(rid, id) == 0) {
            buf_init(&b, DASH_ANSWER_MAX);
            dash_buf_answer(req, &b, json_print(run, &b));
            buf_cleanup(&b);
            return;
        }
    }
    api_error(req, false, 404, NULL, "no benchmark run '%s'", id);
}

static cJSON *
bench_load(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    cJSON *v = NULL, *runs = NULL;
    int rc = fs_read_file(path, DASH_FILE_MAX, &data, &len);

    if (rc == 0 && json_parse(data, len, 32, &v, NULL, 0) == 0 &&
        cJSON_IsArray(json_get(v, "runs")))
        runs = cJSON_DetachItemFromObjectCaseSensitive(v, "runs");
    else if (rc == 0)
        log_warn("dashboard: %s is not a benchmark history; starting a new "
                 "one",
                 path);
    else if (rc != -ENOENT)
        log_warn("dashboard: cannot read %s (%s)", path, strerror(-rc));
    cJSON_Delete(v);
    free(data);
    return runs != NULL ? runs : cJSON_CreateArray();
}

/* --- routing
 * ------------------------------------------------------------------------ */

enum dash_api {
    DA_TRACES,
    DA_TRACE,
    DA_USAGE,
    DA_OVERVIEW,
    DA_TRENDS,
    DA_MODELS,
    DA_TAGS,
    DA_TAGS_DAILY,
    DA_HEALTH,
    DA_RECS,
    DA_SETTINGS,
    DA_SETTINGS_POST,
    DA_MM,
    DA_CTX,
    DA_BENCH_LIST,
    DA_BENCH_PROGRESS,
    DA_BENCH_START,
    DA_BENCH_CANCEL,
    DA_BENCH_GET,
    DA_PINS,
    DA_PINS_POST,
    DA_LIVE,
    DA_FLEET,
};

static const struct {
    const char *name;
    const char *method;
    enum dash_api api;
} dash_apis[] = {
    {"traces", "GET", DA_TRACES},
    {"usage", "GET", DA_USAGE},
    {"overview", "GET", DA_OVERVIEW},
    {"trends", "GET", DA_TRENDS},
    {"models", "GET", DA_MODELS},
    {"tags", "GET", DA_TAGS},
    {"apps", "GET", DA_TAGS},
    {"tags/daily", "GET", DA_TAGS_DAILY},
    {"apps/daily", "GET", DA_TAGS_DAILY},
    {"health", "GET", DA_HEALTH},
    {"recommendations", "GET", DA_RECS},
    {"settings", "GET", DA_SETTINGS},
    {"settings", "POST", DA_SETTINGS_POST},
    {"model-management", "GET", DA_MM},
    {"context-usage", "GET", DA_CTX},
    {"benchmarks", "GET", DA_BENCH_LIST},
    {"benchmarks/progress", "GET", DA_BENCH_PROGRESS},
    {"benchmarks/start", "POST", DA_BENCH_START},
    {"benchmarks/cancel", "POST", DA_BENCH_CANCEL},
    {"pinned-models", "GET", DA_PINS},
    {"pinned-models", "POST", DA_PINS_POST},
    {"live", "GET", DA_LIVE},
    {"fleet", "GET", DA_FLEET},
};

static void
dash_api_call(struct dashboard *d, struct http_req *req, enum dash_api api,
              const char *arg)
{
    switch (api) {
    case DA_TRACES:
        dash_api_query(d, req, DASHQ_TRACES);
        return;
    case DA_TRACE:
        dash_api_trace(d, req, arg);
        return;
    case DA_USAGE:
        dash_api_query(d, req, DASHQ_USAGE);
        return;
    case DA_OVERVIEW:
        dash_api_query(d, req, DASHQ_OVERVIEW);
        return;
    case DA_TRENDS:
        dash_api_query(d, req, DASHQ_TRENDS);
        return;
    case DA_MODELS:
        dash_api_query(d, req, DASHQ_MODELS);
        return;
    case DA_TAGS:
        dash_api_query(d, req, DASHQ_TAGS);
        return;
    case DA_TAGS_DAILY:
        dash_api_query(d, req, DASHQ_TAGS_DAILY);
        return;
    case DA_HEALTH:
        dash_api_health(d, req);
        return;
    case DA_RECS:
        dash_api_recommendations(d, req);
        return;
    case DA_SETTINGS:
        dash_api_settings_get(d, req);
        return;
    case DA_SETTINGS_POST:
        dash_api_settings_post(d, req);
        return;
    case DA_MM:
        dash_api_model_management(d, req);
        return;
    case DA_CTX:
        dash_api_context_usage(d, req);
        return;
    case DA_BENCH_LIST:
        dash_api_bench_list(d, req);
        return;
    case DA_BENCH_PROGRESS:
        dash_api_bench_progress(d, req);
        return;
    case DA_BENCH_START:
        dash_api_bench_start(d, req);
        return;
    case DA_BENCH_CANCEL:
        dash_api_bench_cancel(d, req);
        return;
    case DA_BENCH_GET:
        dash_api_bench_get(d, req, arg);
        return;
    case DA_PINS:
        dash_api_pins_get(d, req);
        return;
    case DA_PINS_POST:
        dash_api_pins_post(d, req);
        return;
    case DA_LIVE:
        dash_api_live(d, req);
        return;
    case DA_FLEET:
        dash_api_fleet(d, req);
        return;
    }
}

static bool
dash_method_is(const char *method, const char *want)
{
    return strcmp(method, want) == 0 ||
           (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* /dashboard/api/<name>: name is what follows "/api/". */
static void
dash_api(struct dashboard *d, struct http_req *req, const char *name)
{
    const char *method = http_req_method(req);
    bool known = false;

    for (size_t i = 0; i < sizeof(dash_apis) / sizeof(*dash_apis); i++) {
        if (strcmp(dash_apis[i].name, name) != 0)
            continue;
        known = true;
        if (dash_method_is(method, dash_apis[i].method)) {
            dash_api_call(d, req, dash_apis[i].api, NULL);
            return;
        }
    }
    if (!known && strncmp(name, "trace/", 6) == 0) {
        known = true;
        if (dash_method_is(method, "GET")) {
            dash_api_call(d, req, DA_TRACE, name + 6);
            return;
        }
    } else if (!known && strncmp(name, "benchmarks/", 11) == 0) {
        known = true;
        if (dash_method_is(method, "GET")) {
            dash_api_call(d, req, DA_BENCH_GET, name + 11);
            return;
        }
    }
    if (known) {
        api_error(req, false, 405, NULL,
                  "%s is not allowed on /dashboard/api/%s", method, name);
        return;
    }
    api_error(
        req, false, 404, NULL,
        "/dashboard/api/%s: no such dashboard API (see docs/dashboard.md)",
        name);
}

static void
dash_method_not_allowed(struct http_req *req)
{
    static const char body[] = "405 method not allowed";

    http_set_header(req, "Allow", "GET, HEAD");
    http_respond(req, 405, "text/plain", body, sizeof(body) - 1);
}

bool
dashboard_route(struct herd *h, struct http_req *req)
{
    const char *path = http_req_path(req), *method = http_req_method(req);
    struct dashboard *d = h->dashboard;
    const char *rest;

    if (strcmp(path, "/favicon.svg") == 0 ||
        strcmp(path, "/favicon.ico") == 0) {
        if (dash_method_is(method, "GET"))
            dash_serve_asset(req, "favicon.svg");
        else
            dash_method_not_allowed(req);
        return true;
    }
    if (strncmp(path, "/dashboard", 10) != 0 ||
        (path[10] != '\0' && path[10] != '/'))
        return false;
    rest = path + 10;
    if (d == NULL || d->closing) {
        api_error(req, false, 503, NULL, "the dashboard is not running");
        return true;
    }
    if (strncmp(rest, "/api/", 5) == 0) {
        dash_api(d, req, rest + 5);
        return true;
    }
    if (!dash_method_is(method, "GET")) {
        dash_method_not_allowed(req);
        return true;
    }
    if (strcmp(rest, "/events") == 0)
        dash_events(d, req);
    else if (dash_is_page(rest))
        dash_serve_asset(req, "index.html");
    else if (strncmp(rest, "/static/", 8) == 0 &&
             strcmp(rest + 8, "models.json") != 0)
        dash_serve_asset(req, rest + 8);
    else
        dash_serve_asset(req, ""); /* 404 */
    return true;
}

/* --- life
 * ------------------------------------------------------------------------------
 */

static int
dash_load_catalog(struct dashboard *d)
{
    const char *path = getenv("FLEET_MODEL_CATALOG");
    const struct dashboard_asset *a = dashboard_asset_find("models.json");
    char err[512], *data = NULL;
    size_t len = 0;
    int rc;

    if (path != NULL && *path != '\0') {
        rc = fs_read_file(path, RECOMMEND_MAX_BYTES, &data, &len);
        if (rc != 0) {
            log_error("FLEET_MODEL_CATALOG %s: %s", path,
                      rc == -E2BIG ? "too large" : strerror(-rc));
            return -1;
        }
        d->catalog = recommend_catalog_parse(data, len, err, sizeof(err));
        free(data);
        if (d->catalog == NULL) {
            log_error("FLEET_MODEL_CATALOG %s: %s", path, err);
            return -1;
        }
        snprintf(d->catalog_src, sizeof(d->catalog_src), "%s", path);
        return 0;
    }
    if (a == NULL) {
        log_error("the built-in model catalogue is missing");
        return -1;
    }
    d->catalog = recommend_catalog_parse((const char *)a->data, a->len, err,
                                         sizeof(err));
    if (d->catalog == NULL) {
        log_error("the built-in model catalogue: %s", err);
        return -1;
    }
    snprintf(d->catalog_src, sizeof(d->catalog_src), "built-in");
    return 0;
}

static void
dash_open_dashq(struct dashboard *d)
{
    struct herd *h = d->h;
    char path[4200];

    if (!h->cfg->traces || h->traces == NULL) {
        snprintf(d->q_err, sizeof(d->q_err),
                 "traces are off (FLEET_TRACES=false)");
        return;
    }
    snprintf(path, sizeof(path), "%s/latency.db", h->cfg->data_dir);
    d->q = dashq_open(h->loop, path, NULL, d->q_err, sizeof(d->q_err));
    if (d->q == NULL)
        log_warn("dashboard: no request history: %s", d->q_err);
    else
        dash_ref(d); /* released when dashq has closed */
}

int
dashboard_init(struct herd *h)
{
    struct dashboard *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        log_error("dashboard: out of memory");
        return -1;
    }
    d->h = h;
    d->refs = 1;
    buf_init(&d->health, DASH_ANSWER_MAX);
    buf_init(&d->rec, DASH_ANSWER_MAX);
    health_events_unknown(&d->health_ev);
    snprintf(d->pins_path, sizeof(d->pins_path), "%s/pinned_models.json",
             h->cfg->data_dir);
    snprintf(d->bench_path, sizeof(d->bench_path), "%s/benchmarks.json",
             h->cfg->data_dir);
    if (dash_load_catalog(d) != 0) {
        buf_cleanup(&d->health);
        buf_cleanup(&d->rec);
        free(d);
        return -1;
    }
    d->pins = dash_pins_load(d->pins_path);
    d->bench_runs = bench_load(d->bench_path);
    dash_env_pins(d);
    uv_timer_init(h->loop, &d->sse_timer);
    d->sse_timer.data = d;
    dash_ref(d); /* the timer, until closed */
    dash_open_dashq(d);
    h->dashboard = d;
    log_info("dashboard: http://localhost:%u/dashboard (model catalogue: %s, "
             "%zu models)",
             h->srv ? http_server_port(h->srv) : (unsigned)h->cfg->port,
             d->catalog_src, d->catalog->n);
    return 0;
}

static void
dash_destroy(struct dashboard *d)
{
    buf_cleanup(&d->health);
    buf_cleanup(&d->rec);
    cJSON_Delete(d->health_stats);
    cJSON_Delete(d->pins);
    cJSON_Delete(d->bench_runs);
    for (size_t i = 0; i < d->n_env_pins; i++)
        free(d->env_pins[i]);
    free(d->env_pins);
    recommend_catalog_free(d->catalog);
    free(d);
}

static void
dash_unref(struct dashboard *d)
{
    if (--d->refs == 0)
        dash_destroy(d);
}

static void
dash_on_timer_closed(uv_handle_t *hd)
{
    dash_unref(hd->data);
}

static void
dash_on_dashq_closed(void *ud)
{
    dash_unref(ud);
}

void
dashboard_free(struct herd *h)
{
    struct dashboard *d = h->dashboard;

    if (d == NULL)
        return;
    h->dashboard = NULL;
    d->closing = true;
    /* live streams still open (the HTTP server normally ended them) */
    while (d->sse != NULL) {
        struct dsse *s = d->sse;
        struct http_req *req = s->req;

        dsse_unlink(s);
        s->req = NULL;
        (void)http_stream_end(req);
    }
    uv_timer_stop(&d->sse_timer);
    uv_close((uv_handle_t *)&d->sse_timer, dash_on_timer_closed);
    if (d->bench != NULL) {
        bench_stop(d->bench, BN_CANCELLED);
        bench_free(d->bench);
        d->bench = NULL;
    }
    /* model lists waiting for nodes: their calls are cancelled */
    for (struct dmm *mm = d->mm, *next; mm != NULL; mm = next) {
        int cancelled = 0;

        next = mm->next;
        for (size_t i = 0; i < mm->n; i++) {
            if (mm->nodes[i].call != NULL) {
                http_call_cancel(mm->nodes[i].call);
                mm->nodes[i].call = NULL;
                snprintf(mm->nodes[i].err, sizeof(mm->nodes[i].err),
                         "herd is shutting down");
                cancelled++;
            }
        }
        if (cancelled > 0) {
            mm->pending -= cancelled - 1;
            dmm_done_one(mm); /* may free mm */
        }
    }
    if (d->q != NULL) {
        dashq_close(d->q, dash_on_dashq_closed, d);
        d->q = NULL;
    }
    dash_unref(d); /* the dashboard's own reference */
}
