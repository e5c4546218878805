/*
 * exchange.c - one inference request and its upstream attempts (see
 * exchange.h).
 *
 * The node is always asked to stream (NDJSON), whatever the client
 * wants, so that herd sees the first byte, can retry before it, counts
 * tokens and detects a stream that ends without its done line. What the
 * client gets is built from those lines: relayed as they are (Ollama,
 * streaming), collected into one answer (Ollama, stream:false; OpenAI
 * without stream) or translated to SSE (OpenAI, stream). Nothing reaches
 * the client before the node's first line, so until then a failure can
 * still be retried on another node; the response headers go out with the
 * first line and name the node that really served.
 *
 * Lifetime: the exchange lives until the client's request ends
 * (x_on_req_done), which always comes, exactly once. Whatever is still
 * running then (an upstream call, a slot, a place in the holding queue)
 * is undone there: that is the one teardown.
 */
#define _GNU_SOURCE /* memmem() */
#include "exchange.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "collect.h"
#include "failure.h"
#include "herd/clock.h"
#include "herd/json.h"
#include "herd/log.h"
#include "metrics.h"
#include "pull.h"
#include "router.h"
#include "translate.h"

#define X_MAX_TAGS       32
#define X_MAX_TAG_LEN    128
#define X_HIGH_WATER     (1u << 20) /* queued to the client: pause upstream */
#define X_LOW_WATER      (256u << 10)
#define X_MAX_ERRBODY    (64u << 10)
#define X_MAX_EMBED      (256u << 20)
#define X_MAX_ATTEMPTS   ROUTER_MAX_EXCLUDED
#define X_MAX_JSON_DEPTH 128

enum xstate {
    XS_PARSED,
    XS_HELD,
    XS_PULLING,    /* waiting for an auto-pull */
    XS_CONNECTING, /* call started, no line yet */
    XS_STREAMING,  /* lines arriving */
    XS_DONE,       /* answered (or answering); trace written */
    XS_CANCELLED,  /* client gone */
};

struct xattempt {
    char node[REGISTRY_NODE_ID_MAX + 1];
    char reason[48];
    int status;
    double ms;
};

struct exchange {
    struct herd *h;
    struct http_req *req;
    enum xkind kind;
    enum xstate state;
    bool openai, streaming_api, client_stream, include_usage, embed_b64;
    char id[37];
    char client_ip[64];
    const char *endpoint;
    cJSON *body; /* what goes upstream; "model" set per attempt */
    char *models[ROUTER_MAX_MODELS];
    struct route_req rr;
    struct pull_waiter pw;
    bool pulled; /* an auto-pull ran for this request */
    char pull_err[256];
    struct route_decision d;
    bool has_slot, routed_once;
    bool ctx_checked;
    bool vram_noted;
    char *upgrade; /* context protection's bigger model, owned */
    /* the attempt */
    struct http_call *call;
    int up_status;
    bool head_sent; /* response status + headers committed to the client */
    bool paused;
    struct ndjson nd;
    struct translate_stream ts;
    struct collect col;
    struct buf out;     /* scratch for what goes to the client */
    struct buf body_in; /* upstream body when not streamed through */
    int64_t prompt_tokens, completion_tokens;
    bool done_seen;
    char done_reason[16];
    /* history */
    struct xattempt *attempts; /* grown one at a time: most have one */
    size_t n_attempts;
    int retries;
    int64_t t_start, t_held, t_attempt, t_first, t_end;
    int64_t queue_wait_ns;
    char *tags_json;   /* JSON list or NULL */
    struct buf events; /* JSON array body: what happened, with times */
    int64_t t_last;    /* the node's last byte */
    uint64_t n_lines;  /* NDJSON lines from the node: ~tokens so far */
    struct exchange *live_prev, *live_next;
    char error[512];
    int fail_status; /* for a failure answered as a whole response */
    bool trace_written;
};

static size_t x_live;
static struct exchange *x_head; /* every live exchange, for the reaper */

size_t
exchange_live(void)
{
    return x_live;
}

/* Appends {"ms":<since start>,"event":name[,"node"][,"detail"]}. */
static void
x_event(struct exchange *x, const char *name, const char *node,
        const char *detail)
{
    struct buf *b = &x->events;
    size_t mark = b->len;
    int rc =
        buf_appendf(b, "%s{\"ms\":%.3f,\"event\":\"%s\"", b->len ? "," : "",
                    (double)(herd_now_ns() - x->t_start) / 1e6, name);

    if (rc == 0 && node != NULL && *node) {
        rc = buf_appends(b, ",\"node\":");
        if (rc == 0)
            rc = json_append_str(b, node, strlen(node));
    }
    if (rc == 0 && detail != NULL && *detail) {
        rc = buf_appends(b, ",\"detail\":");
        if (rc == 0)
            rc = json_append_str(b, detail, strlen(detail));
    }
    if (rc == 0)
        rc = buf_appends(b, "}");
    if (rc != 0) {
        b->len = mark; /* over the cap: the event is left out */
        if (b->data)
            b->data[mark] = '\0';
    }
}

static void x_route(struct exchange *x);
static void x_dispatch(struct exchange *x);

/* --- small helpers -------------------------------------------------------- */

static const char *
x_kind_path(enum xkind k)
{
    switch (k) {
    case X_OLLAMA_CHAT:
    case X_OAI_CHAT:
        return "/api/chat";
    case X_OLLAMA_GENERATE:
    case X_OAI_COMPLETION:
        return "/api/generate";
    case X_OLLAMA_EMBED:
    case X_OAI_EMBED:
        return "/api/embed";
    case X_OLLAMA_EMBEDDINGS:
        return "/api/embeddings";
    }
    return "/api/chat";
}

static bool
x_is_embed(const struct exchange *x)
{
    return x->kind == X_OLLAMA_EMBED || x->kind == X_OLLAMA_EMBEDDINGS ||
           x->kind == X_OAI_EMBED;
}

/* "llama3" -> "llama3:latest" (ollama-herd normalises the same way). */
static char *
x_normalise(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *tail = slash ? slash + 1 : name;
    size_t n = strlen(name);
    char *s;

    if (strchr(tail, ':') != NULL || n == 0)
        return strdup(name);
    if ((s = malloc(n + 8)) == NULL)
        return NULL;
    memcpy(s, name, n);
    memcpy(s + n, ":latest", 8);
    return s;
}

static void
x_set_str(cJSON *obj, const char *key, const char *val)
{
    cJSON *s = cJSON_CreateString(val);

    if (s == NULL)
        return;
    if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, s);
    else
        cJSON_AddItemToObject(obj, key, s);
}

static double
x_ms(int64_t from, int64_t to)
{
    return from > 0 && to >= from ? (double)(to - from) / 1e6 : 0;
}

/* --- traces --------------------------------------------------------------- */

static int
x_excluded_json(const struct exchange *x, struct buf *b)
{
    int rc = buf_appends(b, "[");

    for (size_t i = 0; rc == 0 && i < x->rr.n_excluded; i++) {
        if (i > 0)
            rc = buf_appends(b, ",");
        if (rc == 0)
            rc = json_append_str(b, x->rr.excluded[i],
                                 strlen(x->rr.excluded[i]));
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static int
x_attempts_json(const struct exchange *x, struct buf *b)
{
    struct trace_attempt a[X_MAX_ATTEMPTS];

    for (size_t i = 0; i < x->n_attempts; i++) {
        a[i].node = x->attempts[i].node;
        a[i].reason = x->attempts[i].reason;
        a[i].status = x->attempts[i].status;
        a[i].ms = x->attempts[i].ms;
    }
    return traces_format_attempts(b, a, x->n_attempts);
}

/*
 * One request_traces row. status: completed, retried, failed, incomplete,
 * client_disconnected. A "retried" row describes the attempt that just
 * failed; the final row describes the request.
 */
static void
x_trace(struct exchange *x, const char *status, const char *err)
{
    struct traces *t = x->h->traces;
    struct buf excl, att;
    struct trace_record rec;
    char *ev = NULL;
    int64_t now = herd_now_ns();
    bool routed = x->routed_once;
    bool completed = strcmp(status, "completed") == 0;

    if (strcmp(status, "retried") != 0) {
        x->trace_written = true;
        metrics_request(x->h->metrics, routed ? x->d.model : x->models[0],
                        routed ? x->d.node_id : "", status,
                        x->t_attempt > 0 ? x_ms(x->t_attempt, now) / 1e3 : 0,
                        x->t_first > 0 ? x_ms(x->t_attempt, x->t_first) / 1e3
                                       : 0);
        if (completed && routed && x->d.model_index != 0)
            metrics_fallback(x->h->metrics);
    }
    if (t == NULL)
        return;
    buf_init(&excl, 1u << 20);
    buf_init(&att, 1u << 20);
    if (x_excluded_json(x, &excl) != 0)
        buf_reset(&excl);
    if (x_attempts_json(x, &att) != 0)
        buf_reset(&att);
    memset(&rec, 0, sizeof(rec));
    rec.request_id = x->id;
    rec.model = routed ? x->d.model : x->models[0];
    rec.original_model = x->models[0];
    rec.node_id = routed ? x->d.node_id : "";
    rec.score = routed ? x->d.score : TRACES_NULL_REAL;
    rec.scores_breakdown = routed ? x->d.breakdown.data : NULL;
    rec.status = status;
    rec.latency_ms =
        x->t_attempt > 0 ? x_ms(x->t_attempt, now) : TRACES_NULL_REAL;
    rec.ttft_ms =
        x->t_first > 0 ? x_ms(x->t_attempt, x->t_first) : TRACES_NULL_REAL;
    rec.prompt_tokens = x->done_seen ? x->prompt_tokens : TRACES_NULL_INT;
    rec.completion_tokens =
        x->done_seen ? x->completion_tokens : TRACES_NULL_INT;
    rec.retry_count = x->retries;
    rec.fallback_used = routed && x->d.model_index != 0;
    rec.excluded_nodes = x->rr.n_excluded > 0 ? excl.data : NULL;
    rec.client_ip = x->client_ip;
    rec.original_format = x->openai ? "openai" : "ollama";
    rec.error_message = err != NULL && *err ? err : NULL;
    rec.tags = x->tags_json;
    rec.attempts = att.data;
    if (x->events.len > 0) {
        ev = malloc(x->events.len + 3);
        if (ev != NULL)
            snprintf(ev, x->events.len + 3, "[%s]", x->events.data);
    }
    rec.events = ev;
    rec.queue_wait_ms = (double)x->queue_wait_ns / 1e6;
    rec.endpoint = x->endpoint;
    rec.scored_candidates = routed ? x->d.candidates.data : NULL;
    rec.observe = completed && !x_is_embed(x);
    rec.obs_latency_ms = TRACES_NULL_REAL;
    if (traces_submit(t, &rec) == -EAGAIN)
        log_req(LL_DEBUG, x->id, "trace queue full: row dropped");
    buf_cleanup(&excl);
    buf_cleanup(&att);
    free(ev);
}

/* --- the client side ------------------------------------------------------ */

static void
x_fleet_headers(struct exchange *x)
{
    char v[64];

    http_set_header(x->req, "X-Request-Id", x->id);
    if (!x->routed_once)
        return;
    http_set_header(x->req, "X-Fleet-Node", x->d.node_id);
    snprintf(v, sizeof(v), "%d", (int)x->d.score);
    http_set_header(x->req, "X-Fleet-Score", v);
    snprintf(v, sizeof(v), "%d", x->retries);
    http_set_header(x->req, "X-Fleet-Retries", v);
    if (x->d.model_index != 0 || x->upgrade != NULL)
        http_set_header(x->req, "X-Fleet-Fallback", x->d.model);
}

/* Gives the slot back (once). */
static void
x_release(struct exchange *x, bool ok)
{
    if (!x->has_slot)
        return;
    x->has_slot = false;
    router_release(x->h->router, x->d.node_id, x->d.model, ok);
}

static void
x_cancel_call(struct exchange *x)
{
    if (x->call != NULL) {
        http_call_cancel(x->call);
        x->call = NULL;
    }
}

/* Answers with an error as a whole response; the trace says why. */
static void
x_fail_whole(struct exchange *x, int status, const char *type,
             const char *trace_status, const char *msg)
{
    struct http_req *req = x->req;

    x->state = XS_DONE;
    x->t_end = herd_now_ns();
    x_cancel_call(x);
    x_release(x, false);
    x->h->stats.failed++;
    x_trace(x, trace_status, msg);
    log_req(LL_INFO, x->id, "%s %s: %d %s", x->endpoint, x->models[0], status,
            msg);
    if (req == NULL)
        return;
    x_fleet_headers(x);
    if (status == 503) {
        char ra[16];

        snprintf(ra, sizeof(ra), "%u", router_retry_after_s(x->h->router));
        http_set_header(req, "Retry-After", ra);
    }
    api_error(req, x->openai, status, type, "%s", msg);
}

/* A failure after the client got its headers: the error goes in-band. */
static void
x_fail_inband(struct exchange *x, const char *trace_status, const char *msg)
{
    struct http_req *req = x->req;
    int rc = 0;

    x->state = XS_DONE;
    x->t_end = herd_now_ns();
    x_cancel_call(x);
    x_release(x, false);
    x->h->stats.failed++;
    x_trace(x, trace_status, msg);
    log_req(LL_WARN, x->id, "%s %s on %s: %s after the first byte (%s)",
            x->endpoint, x->d.model, x->d.node_id, trace_status, msg);
    if (req == NULL)
        return;
    buf_reset(&x->out);
    if (x->openai) {
        rc = translate_stream_abort(&x->ts, msg, &x->out);
    } else {
        rc = buf_appends(&x->out, "{\"error\":");
        if (rc == 0)
            rc = json_append_str(&x->out, msg, strlen(msg));
        if (rc == 0)
            rc = buf_appends(&x->out, "}\n");
    }
    if (rc == 0 && x->out.len > 0)
        http_stream_write(req, x->out.data, x->out.len);
    http_stream_end(req);
}

static int
x_begin_stream(struct exchange *x)
{
    x->head_sent = true;
    x_fleet_headers(x);
    if (x->openai) {
        http_set_header(x->req, "Cache-Control", "no-cache");
        return http_stream_begin(x->req, 200, "text/event-stream");
    }
    return http_stream_begin(x->req, 200, "application/x-ndjson");
}

static void
x_on_drain(struct http_req *req, void *ud)
{
    struct exchange *x = ud;

    (void)req;
    if (x->paused && x->call != NULL) {
        x->paused = false;
        http_call_resume(x->call);
    }
}

/* Queues bytes for the client; HTTP_CALL_PAUSE when it reads too slowly. */
static int
x_write(struct exchange *x, const char *p, size_t n)
{
    if (x->req == NULL || n == 0)
        return 0;
    if (http_stream_write(x->req, p, n) != 0)
        return -EPIPE;
    if (http_stream_queued(x->req) > X_HIGH_WATER) {
        x->paused = true;
        http_stream_on_drain(x->req, X_LOW_WATER, x_on_drain, x);
        return HTTP_CALL_PAUSE;
    }
    return 0;
}

/* --- answering ------------------------------------------------------------ */

static void
x_complete(struct exchange *x)
{
    struct http_req *req = x->req;
    int rc = 0;

    x->state = XS_DONE;
    x->t_end = herd_now_ns();
    x_release(x, true);
    router_node_ok(x->h->router, x->d.node_id);
    x->h->stats.completed++;
    x_trace(x, "completed", NULL);
    log_req(LL_DEBUG, x->id, "%s %s on %s: completed in %.1f ms", x->endpoint,
            x->d.model, x->d.node_id, x_ms(x->t_start, x->t_end));
    if (req == NULL)
        return;
    if (x->head_sent) {
        http_stream_end(req);
        return;
    }
    buf_reset(&x->out);
    if (x->kind == X_OAI_EMBED) {
        cJSON *native = NULL;

        rc = json_parse(x->body_in.data, x->body_in.len, X_MAX_JSON_DEPTH,
                        &native, NULL, 0);
        if (rc == 0)
            rc = translate_embed_response(native, x->models[0], x->embed_b64,
                                          &x->out);
        cJSON_Delete(native);
    } else if (x_is_embed(x)) {
        rc = buf_append(&x->out, x->body_in.data, x->body_in.len);
    } else if (x->openai) {
        rc = translate_stream_finish(&x->ts, &x->out);
    } else {
        rc = collect_finish(&x->col, &x->out);
    }
    x_fleet_headers(x);
    if (rc != 0) {
        api_error(req, x->openai, 502, NULL,
                  "node %s sent an answer herd could not read", x->d.node_id);
        return;
    }
    http_respond(req, 200, "application/json; charset=utf-8", x->out.data,
                 x->out.len);
}

/* --- upstream lines ------------------------------------------------------- */

static int x_line(const char *line, size_t len, void *ud);

/* The node's error line. Before the first byte reached the client it is
 * answered as a whole response (Ollama answers errors that way too). */
static int
x_error_line(struct exchange *x, const char *msg)
{
    if (x->head_sent) {
        x_fail_inband(x, "failed", msg);
    } else {
        x_fail_whole(x, 500, NULL, "failed", msg);
    }
    return -ECANCELED;
}

static int
x_line_ollama_stream(struct exchange *x, const char *line, size_t len)
{
    int rc;

    if (len > 9 && memcmp(line, "{\"error\":", 9) == 0) {
        cJSON *v = NULL;
        char msg[512] = "the node reported an error";

        if (json_parse(line, len, X_MAX_JSON_DEPTH, &v, NULL, 0) == 0 &&
            json_get_str(v, "error") != NULL)
            snprintf(msg, sizeof(msg), "%s", json_get_str(v, "error"));
        cJSON_Delete(v);
        return x_error_line(x, msg);
    }
    if (memmem(line, len, "\"done\":true", 11) != NULL) {
        cJSON *v = NULL;

        if (json_parse(line, len, X_MAX_JSON_DEPTH, &v, NULL, 0) == 0 &&
            collect_done_info(v, &x->prompt_tokens, &x->completion_tokens,
                              x->done_reason, sizeof(x->done_reason)))
            x->done_seen = true;
        cJSON_Delete(v);
    }
    if (!x->head_sent && x_begin_stream(x) != 0)
        return -EPIPE;
    buf_reset(&x->out);
    if ((rc = buf_append(&x->out, line, len)) != 0 ||
        (rc = buf_append(&x->out, "\n", 1)) != 0)
        return rc;
    return x_write(x, x->out.data, x->out.len);
}

static int
x_line_collect(struct exchange *x, const char *line, size_t len)
{
    cJSON *v = NULL;
    char msg[512];
    int rc;

    /* most lines are a token of plain text: no parse, no allocation */
    if ((rc = collect_line_fast(&x->col, line, len)) != COLLECT_SLOW)
        return rc;
    if (json_parse(line, len, X_MAX_JSON_DEPTH, &v, NULL, 0) != 0 ||
        !cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return 0; /* not JSON: skipped, as Ollama's own clients do */
    }
    rc = collect_line(&x->col, &v, msg, sizeof(msg));
    cJSON_Delete(v);
    if (rc == -EIO)
        return x_error_line(x, msg);
    if (rc == 1) {
        x->done_seen = true;
        x->prompt_tokens = x->col.prompt_tokens;
        x->completion_tokens = x->col.completion_tokens;
        snprintf(x->done_reason, sizeof(x->done_reason), "%s",
                 x->col.done_reason);
        return 0;
    }
    return rc;
}

static int
x_line_openai(struct exchange *x, const char *line, size_t len)
{
    char msg[512];
    int rc;

    buf_reset(&x->out);
    rc = translate_stream_line(&x->ts, line, len, &x->out, msg, sizeof(msg));
    if (rc == -EIO)
        return x_error_line(x, msg);
    if (rc == -EPROTO)
        return 0;
    if (rc < 0)
        return rc;
    if (rc == 1) {
        x->done_seen = true;
        x->prompt_tokens = x->ts.prompt_tokens;
        x->completion_tokens = x->ts.completion_tokens;
        snprintf(x->done_reason, sizeof(x->done_reason), "%s",
                 x->ts.done_reason);
    }
    if (!x->client_stream)
        return 0;
    if (!x->head_sent && x_begin_stream(x) != 0)
        return -EPIPE;
    return x_write(x, x->out.data, x->out.len);
}

static int
x_line(const char *line, size_t len, void *ud)
{
    struct exchange *x = ud;

    if (x->t_first == 0) {
        x->t_first = herd_now_ns();
        x->state = XS_STREAMING;
    }
    x->n_lines++;
    if (x->openai)
        return x_line_openai(x, line, len);
    if (x->client_stream)
        return x_line_ollama_stream(x, line, len);
    return x_line_collect(x, line, len);
}

/* --- upstream call -------------------------------------------------------- */

static void
x_on_response(struct http_call *call, int status, void *ud)
{
    struct exchange *x = ud;

    (void)call;
    x->up_status = status;
}

static int
x_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct exchange *x = ud;
    int rc;

    (void)call;
    x->t_last = herd_now_ns();
    if (x->up_status != 200 || x_is_embed(x)) {
        size_t cap = x->up_status != 200 ? X_MAX_ERRBODY : X_MAX_EMBED;

        if (x->body_in.len + n > cap)
            n = cap > x->body_in.len ? cap - x->body_in.len : 0;
        if (n > 0 && buf_append(&x->body_in, p, n) != 0)
            return 0;
        if (x->t_first == 0 && x->up_status == 200)
            x->t_first = herd_now_ns();
        return 0;
    }
    rc = ndjson_feed(&x->nd, p, n, x_line, x);
    if (rc == HTTP_CALL_PAUSE)
        return HTTP_CALL_PAUSE;
    if (rc < 0 && rc != -ECANCELED && x->state != XS_DONE) {
        /* a line over the cap, or the client stream broke */
        snprintf(x->error, sizeof(x->error), "%s",
                 rc == -E2BIG ? "a line from the node exceeded the limit"
                              : "could not relay the answer");
        if (x->head_sent)
            x_fail_inband(x, "failed", x->error);
        else
            x_fail_whole(x, 502, NULL, "failed", x->error);
    }
    return 0;
}

/* Records the attempt that just ended. */
static void
x_note_attempt(struct exchange *x, const char *reason, int status)
{
    struct xattempt *a;

    if (x->n_attempts == X_MAX_ATTEMPTS)
        return;
    a = realloc(x->attempts, (x->n_attempts + 1) * sizeof(*a));
    if (a == NULL)
        return; /* the trace loses this attempt; the request goes on */
    x->attempts = a;
    a = &x->attempts[x->n_attempts++];
    snprintf(a->node, sizeof(a->node), "%s", x->d.node_id);
    snprintf(a->reason, sizeof(a->reason), "%s", reason);
    a->status = status;
    a->ms = x_ms(x->t_attempt, herd_now_ns());
}

/* The message of a node's error body ({"error":"..."}), or the body. */
static void
x_node_error(const struct exchange *x, char *out, size_t n)
{
    cJSON *v = NULL;
    const char *msg = NULL;

    if (json_parse(x->body_in.data ? x->body_in.data : "", x->body_in.len, 16,
                   &v, NULL, 0) == 0) {
        msg = json_get_str(v, "error");
        if (msg == NULL)
            msg = json_get_str(json_get(v, "error"), "message");
    }
    if (msg != NULL)
        snprintf(out, n, "%s", msg);
    else
        snprintf(out, n, "%.*s",
                 (int)(x->body_in.len < 400 ? x->body_in.len : 400),
                 x->body_in.data ? x->body_in.data : "");
    cJSON_Delete(v);
}

/* Resets what one attempt accumulated, before the next. */
static void
x_reset_attempt(struct exchange *x)
{
    ndjson_cleanup(&x->nd);
    ndjson_init(&x->nd, x->h->cfg->max_upstream_line);
    if (x->openai) {
        struct translate_stream fresh;

        translate_stream_init(&fresh, x->ts.kind, x->ts.collect,
                              x->ts.include_usage, x->ts.id, x->ts.created,
                              x->ts.model);
        translate_stream_cleanup(&x->ts);
        x->ts = fresh;
    } else {
        bool chat = x->col.chat;

        collect_cleanup(&x->col);
        collect_init(&x->col, chat);
    }
    buf_reset(&x->body_in);
    x->up_status = 0;
    x->t_first = 0;
    x->done_seen = false;
    x->prompt_tokens = x->completion_tokens = -1;
    x->done_reason[0] = '\0';
    x->paused = false;
}

/*
 * The attempt failed before the client saw a byte: try another node
 * (node fault or saturation), or give up with fail_status and msg.
 */
static void
x_retry(struct exchange *x, const char *reason, int status, bool node_fault,
        int fail_status, const char *msg)
{
    x_note_attempt(x, reason, status);
    x_release(x, !node_fault);
    x_event(x, node_fault ? "node_fault" : "node_busy", x->d.node_id, msg);
    if (node_fault)
        router_node_fault(x->h->router, x->d.node_id);
    snprintf(x->error, sizeof(x->error), "%s", msg);
    if (x->rr.n_excluded < ROUTER_MAX_EXCLUDED)
        memcpy(x->rr.excluded[x->rr.n_excluded++], x->d.node_id,
               sizeof(x->d.node_id));
    log_req(LL_WARN, x->id, "%s %s on %s failed before the first byte: %s",
            x->endpoint, x->d.model, x->d.node_id, msg);
    if (x->retries >= x->h->cfg->max_retries ||
        x->rr.n_excluded == ROUTER_MAX_EXCLUDED) {
        x_fail_whole(x, fail_status, NULL, "failed", msg);
        return;
    }
    x->retries++;
    x->h->stats.retried++;
    metrics_retry(x->h->metrics);
    x_trace(x, "retried", msg);
    x_reset_attempt(x);
    x_route(x);
}

static void
x_on_call_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct exchange *x = ud;
    struct failure_verdict v;
    char msg[600];

    (void)call;
    x->call = NULL;
    if (x->state == XS_DONE || x->state == XS_CANCELLED)
        return;
    if (err == 0 && x->up_status == 200 && !x_is_embed(x))
        ndjson_finish(&x->nd, x_line, x);
    if (x->state == XS_DONE)
        return; /* an error line ended it */
    v = failure_classify(err, x->up_status, x_is_embed(x) || x->done_seen,
                         x->head_sent);
    if (err != 0)
        snprintf(msg, sizeof(msg), "node %s: %s", x->d.node_id,
                 errmsg && *errmsg ? errmsg : v.reason);
    else if (x->up_status == 200)
        snprintf(msg, sizeof(msg),
                 "node %s: the stream ended without its done line",
                 x->d.node_id);
    else
        x_node_error(x, msg, sizeof(msg));
    switch (v.action) {
    case FAIL_NONE:
        x_note_attempt(x, "ok", 200);
        x_complete(x);
        return;
    case FAIL_RETRY:
        x_retry(x, v.reason, x->up_status, v.node_fault, v.status, msg);
        return;
    case FAIL_INBAND:
        if (v.node_fault) {
            x_event(x, "node_fault", x->d.node_id, msg);
            router_node_fault(x->h->router, x->d.node_id);
        }
        x_fail_inband(x, v.trace_status, msg);
        return;
    case FAIL_RETURN:
        x_note_attempt(x, v.reason, x->up_status);
        x_fail_whole(x, x->up_status, NULL, v.trace_status, msg);
        return;
    }
}

/* --- context protection (reference §4.8) -----------------------------------
 */

/* The smallest loaded model bigger than cur_size with a context of at
 * least want, on node first, else anywhere routable. */
static const char *
x_find_upgrade(struct exchange *x, const struct registry_node *node,
               int64_t want, double cur_size)
{
    const struct registry_loaded *best = NULL;
    struct registry *reg = x->h->reg;

    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; i < registry_count(reg); i++) {
            const struct registry_node *n = registry_node_at(reg, i);

            if ((pass == 0) != (n == node) || !registry_node_routable(n))
                continue;
            for (size_t k = 0; k < n->hb.n_loaded; k++) {
                const struct registry_loaded *m = &n->hb.loaded[k];

                if (strcmp(m->name, x->d.model) == 0 ||
                    m->context_length < want || m->size_gb <= cur_size)
                    continue;
                if (best == NULL || m->size_gb < best->size_gb)
                    best = m;
            }
        }
    }
    return best ? best->name : NULL;
}

/*
 * Never send a num_ctx that would reload a loaded runner: one the loaded
 * copy already covers becomes exactly the runner's own (Ollama reloads on
 * any other value, its default included, so dropping it is not enough);
 * for a bigger one, move the request to a bigger model already loaded
 * with enough context, on the node that has it loaded (unlike
 * ollama-herd). Returns true when the request was re-routed.
 */
static bool
x_context_protect(struct exchange *x)
{
    const struct herd_cfg *c = x->h->cfg;
    cJSON *opts = cJSON_GetObjectItemCaseSensitive(x->body, "options");
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(opts, "num_ctx");
    const struct registry_node *n;
    const struct registry_loaded *ld;
    const char *up;
    char detail[640];
    int64_t want;

    if (x->ctx_checked || x->openai || c->context_protection == CTX_PASSTHROUGH)
        return false;
    x->ctx_checked = true;
    if (!cJSON_IsNumber(nc) || nc->valuedouble <= 0)
        return false;
    want = (int64_t)nc->valuedouble;
    n = registry_find(x->h->reg, x->d.node_id);
    ld = n ? registry_node_loaded(n, x->d.model) : NULL;
    if (ld == NULL || ld->context_length <= 0)
        return false; /* cold: the client's num_ctx decides the load */
    snprintf(detail, sizeof(detail), "num_ctx %lld, loaded %lld",
             (long long)want, (long long)ld->context_length);
    if (want <= ld->context_length) {
        if (c->context_protection == CTX_WARN) {
            x_event(x, "context_warning", x->d.node_id, detail);
            return false;
        }
        /* the loaded runner's own num_ctx: Ollama reloads on any other
         * value, the default included, so matching beats dropping */
        cJSON_ReplaceItemInObjectCaseSensitive(
            opts, "num_ctx", cJSON_CreateNumber((double)ld->context_length));
        x_event(x, "context_stripped", x->d.node_id, detail);
        return false;
    }
    up = c->context_protection == CTX_STRIP && x->upgrade == NULL
             ? x_find_upgrade(x, n, want, ld->size_gb)
             : NULL;
    if (up == NULL) {
        x_event(x, "context_warning", x->d.node_id, detail);
        log_req(LL_WARN, x->id,
                "num_ctx %lld > %lld loaded for %s on %s and no bigger loaded "
                "model has it: the node will reload",
                (long long)want, (long long)ld->context_length, x->d.model,
                x->d.node_id);
        return false;
    }
    if ((x->upgrade = strdup(up)) == NULL)
        return false;
    snprintf(detail, sizeof(detail), "%s -> %s (num_ctx %lld)", x->d.model, up,
             (long long)want);
    x_event(x, "context_upgraded", x->d.node_id, detail);
    log_req(LL_INFO, x->id, "context protection: switched %s", detail);
    /* set to the upgrade's loaded context once it is routed (above) */
    x->ctx_checked = false;
    x->has_slot = false;
    router_release_unused(x->h->router, x->d.node_id, x->d.model);
    x->rr.models[0] = x->upgrade;
    x->rr.n_models = 1;
    x_route(x);
    return true;
}

static void
x_dispatch(struct exchange *x)
{
    char url[400], err[256];
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Expect:", NULL};
    struct http_call_opts o = {0};
    struct buf payload;
    int prc;

    if (x->d.model_index == -1 && !x->vram_noted) {
        x->vram_noted = true;
        x_event(x, "vram_fallback", x->d.node_id, x->d.model);
    }
    x->routed_once = true;
    x->has_slot = true;
    if (x_context_protect(x))
        return;
    x_set_str(x->body, "model", x->d.model);
    if (x->openai) {
        size_t n = strnlen(x->d.model, sizeof(x->ts.model) - 1);

        memcpy(x->ts.model, x->d.model, n);
        x->ts.model[n] = '\0';
    }
    buf_init(&payload, SIZE_MAX / 2);
    prc = json_print(x->body, &payload);
    snprintf(url, sizeof(url), "%s%s", x->d.base_url, x_kind_path(x->kind));
    x->state = XS_CONNECTING;
    x->t_attempt = x->t_last = herd_now_ns();
    x_event(x, "dispatch", x->d.node_id, x->d.model);
    o.method = "POST";
    o.url = url;
    o.headers = headers;
    o.body = payload.data;
    o.body_len = payload.len;
    o.connect_timeout_ms = (unsigned)(x->h->cfg->connect_timeout_ns / 1000000);
    o.max_header = 64 * 1024;
    o.on_response = x_on_response;
    o.on_data = x_on_data;
    o.on_done = x_on_call_done;
    o.ud = x;
    log_req(LL_DEBUG, x->id, "%s %s -> %s (%s), score %.1f", x->endpoint,
            x->d.model, x->d.node_id, url, x->d.score);
    if (prc != 0) {
        buf_cleanup(&payload);
        x_fail_whole(x, 500, NULL, "failed", "out of memory");
        return;
    }
    x->call = http_call_start(x->h->cli, &o, err, sizeof(err));
    buf_cleanup(&payload);
    if (x->call == NULL)
        x_retry(x, "io_error", 0, true, 502, err);
}

/* --- routing -------------------------------------------------------------- */

static void
x_not_found(struct exchange *x)
{
    char list[1024];
    size_t pos = 0;

    list[0] = '\0';
    for (size_t i = 0; i < x->rr.n_models && pos < sizeof(list) - 8; i++) {
        int n = snprintf(list + pos, sizeof(list) - pos, "%s'%s'",
                         i ? ", " : "", x->rr.models[i]);

        if (n > 0)
            pos += (size_t)n;
    }
    if (x->openai) {
        char msg[1400];

        snprintf(msg, sizeof(msg),
                 "Model(s) %s not available on any node. Run 'ollama pull "
                 "<model>' on a fleet device, then try again.%s%s",
                 list, x->pull_err[0] ? " Auto-pull failed: " : "",
                 x->pull_err);
        x_fail_whole(x, 404, "model_not_found", "failed", msg);
    } else {
        char msg[1400];

        snprintf(msg, sizeof(msg),
                 "model(s) %s not found on any node. Run 'ollama pull "
                 "<model>' on a fleet device.%s%s",
                 list, x->pull_err[0] ? " Auto-pull failed: " : "",
                 x->pull_err);
        x_fail_whole(x, 404, NULL, "failed", msg);
    }
}

static void
x_unavailable(struct exchange *x, const char *why)
{
    char msg[1024];

    if (x->n_attempts > 0 && x->error[0] != '\0') {
        x_fail_whole(x, 503, x->openai ? "model_not_available" : NULL, "failed",
                     x->error);
        return;
    }
    if (x->openai)
        snprintf(msg, sizeof(msg),
                 "Model '%s' exists but no node can serve it right now "
                 "(%s). Try again shortly.",
                 x->models[0], why);
    else
        snprintf(msg, sizeof(msg),
                 "model '%s' exists but no node can serve it right now (%s). "
                 "Try again shortly.",
                 x->models[0], why);
    x_fail_whole(x, 503, x->openai ? "model_not_available" : NULL, "failed",
                 msg);
}

static void
x_on_wake(struct route_req *rr, const struct route_decision *d)
{
    struct exchange *x =
        (struct exchange *)((char *)rr - offsetof(struct exchange, rr));

    x->queue_wait_ns += herd_now_ns() - x->t_held;
    x_event(x, d ? "slot" : "hold_timeout", d ? d->node_id : NULL, NULL);
    if (d == NULL && x->h->draining) {
        x_fail_whole(x, 503, x->openai ? "model_not_available" : NULL, "failed",
                     "herd is shutting down; retry on another "
                     "coordinator or shortly");
        return;
    }
    if (d == NULL) {
        x_unavailable(x, "every slot stayed busy for the hold timeout");
        return;
    }
    /* the decision is the router's scratch: copy it */
    snprintf(x->d.node_id, sizeof(x->d.node_id), "%s", d->node_id);
    snprintf(x->d.model, sizeof(x->d.model), "%s", d->model);
    snprintf(x->d.base_url, sizeof(x->d.base_url), "%s", d->base_url);
    x->d.model_index = d->model_index;
    x->d.score = d->score;
    x->d.rank = d->rank;
    x->d.n_eligible = d->n_eligible;
    buf_reset(&x->d.breakdown);
    buf_reset(&x->d.candidates);
    if (buf_append(&x->d.breakdown, d->breakdown.data, d->breakdown.len) ||
        buf_append(&x->d.candidates, d->candidates.data, d->candidates.len)) {
        x->has_slot = true;
        x->routed_once = true;
        x_fail_whole(x, 500, NULL, "failed", "out of memory");
        return;
    }
    x_dispatch(x);
}

static void
x_on_pulled(struct pull_waiter *w, bool ok, const char *node, const char *err)
{
    struct exchange *x =
        (struct exchange *)((char *)w - offsetof(struct exchange, pw));

    x->queue_wait_ns += herd_now_ns() - x->t_held;
    x_event(x, ok ? "auto_pull_done" : "auto_pull_failed", node, err);
    if (!ok)
        snprintf(x->pull_err, sizeof(x->pull_err), "%s", err);
    x_route(x);
}

/* The model is nowhere: pull it (once), then route again. */
static bool
x_auto_pull(struct exchange *x)
{
    char err[256];

    if (!x->h->cfg->auto_pull || x->pulled)
        return false;
    x->pulled = true;
    x->state = XS_PULLING;
    x->t_held = herd_now_ns();
    x->pw.done = x_on_pulled;
    if (pulls_auto(x->h->pulls, x->models[0], &x->pw, err, sizeof(err)) != 0) {
        snprintf(x->pull_err, sizeof(x->pull_err), "%s", err);
        x_event(x, "auto_pull_failed", NULL, err);
        return false;
    }
    x_event(x, "auto_pull", NULL, x->models[0]);
    log_req(LL_INFO, x->id, "%s is on no node: pulling it", x->models[0]);
    return true;
}

static void
x_route(struct exchange *x)
{
    enum route_result res = router_route(x->h->router, &x->rr, &x->d);

    switch (res) {
    case ROUTE_OK:
        x_dispatch(x);
        return;
    case ROUTE_FULL:
    case ROUTE_NO_NODE:
        if (res == ROUTE_NO_NODE && x->n_attempts > 0) {
            /* every node that has it was tried */
            int last = x->attempts[x->n_attempts - 1].status;

            x_fail_whole(x, last >= 500 ? last : 502, NULL, "failed", x->error);
            return;
        }
        if (x->h->draining) {
            x_fail_whole(x, 503, NULL, "failed", "herd is shutting down");
            return;
        }
        x->state = XS_HELD;
        x->t_held = herd_now_ns();
        x_event(x, "held", NULL,
                res == ROUTE_FULL ? "every eligible slot is busy"
                                  : "no node can take it now");
        x->rr.on_wake = x_on_wake;
        if (router_hold(x->h->router, &x->rr) != 0)
            x_unavailable(x, "the holding queue is full");
        return;
    case ROUTE_UNKNOWN:
        if (!x_auto_pull(x))
            x_not_found(x);
        return;
    }
}

/* --- the client's request ------------------------------------------------- */

static void
x_free(struct exchange *x)
{
    router_unhold(x->h->router, &x->rr);
    x_cancel_call(x);
    x_release(x, false);
    cJSON_Delete(x->body);
    for (size_t i = 0; i < ROUTER_MAX_MODELS; i++)
        free(x->models[i]);
    route_decision_cleanup(&x->d);
    ndjson_cleanup(&x->nd);
    if (x->openai)
        translate_stream_cleanup(&x->ts);
    else
        collect_cleanup(&x->col);
    buf_cleanup(&x->out);
    buf_cleanup(&x->body_in);
    buf_cleanup(&x->events);
    free(x->tags_json);
    free(x->attempts);
    free(x->upgrade);
    if (x->live_prev)
        x->live_prev->live_next = x->live_next;
    else
        x_head = x->live_next;
    if (x->live_next)
        x->live_next->live_prev = x->live_prev;
    free(x);
    x_live--;
}

static void
x_on_req_done(struct http_req *req, enum http_end why, void *ud)
{
    struct exchange *x = ud;

    (void)req;
    x->req = NULL;
    if (x->state != XS_DONE) {
        /* the client left first */
        x->state = XS_CANCELLED;
        if (x->rr.held)
            x->queue_wait_ns += herd_now_ns() - x->t_held;
        router_unhold(x->h->router, &x->rr);
        if (x->state == XS_PULLING)
            pulls_forget(x->h->pulls, &x->pw);
        x_cancel_call(x);
        x_release(x, true);
        x->h->stats.client_gone++;
        if (!x->trace_written)
            x_trace(x, "client_disconnected",
                    why == HTTP_END_SHUTDOWN
                        ? "herd shut down before the answer was complete"
                        : "Client disconnected before stream completed");
        log_req(LL_INFO, x->id, "%s %s: client gone (%s)", x->endpoint,
                x->models[0],
                why == HTTP_END_CLIENT_GONE ? "closed" : "error or timeout");
    }
    x_free(x);
}

/* Tags (reference §4.4): metadata.tags, X-Herd-Tags, user -> "user:..". */
static void
x_tags(struct exchange *x, const cJSON *body)
{
    char tags[X_MAX_TAGS][X_MAX_TAG_LEN + 1];
    size_t n = 0;
    const cJSON *t;
    const char *hdr = http_req_header(x->req, "X-Herd-Tags");
    const char *user = json_get_str(body, "user");
    struct buf b;

#define ADD_TAG(s, len)                                                        \
    do {                                                                       \
        size_t l_ = (len) > X_MAX_TAG_LEN ? X_MAX_TAG_LEN : (len);             \
        bool dup_ = false;                                                     \
        for (size_t k_ = 0; k_ < n && !dup_; k_++)                             \
            dup_ = strlen(tags[k_]) == l_ && memcmp(tags[k_], s, l_) == 0;     \
        if (!dup_ && l_ > 0 && n < X_MAX_TAGS) {                               \
            memcpy(tags[n], s, l_);                                            \
            tags[n++][l_] = '\0';                                              \
        }                                                                      \
    } while (0)

    t = json_get(json_get(body, "metadata"), "tags");
    if (cJSON_IsArray(t)) {
        const cJSON *e;

        cJSON_ArrayForEach(e, t)
        {
            char num[64];

            if (cJSON_IsString(e) && e->valuestring[0])
                ADD_TAG(e->valuestring, strlen(e->valuestring));
            else if (cJSON_IsNumber(e) && e->valuedouble != 0) {
                snprintf(num, sizeof(num), "%g", e->valuedouble);
                ADD_TAG(num, strlen(num));
            }
        }
    }
    while (hdr != NULL && *hdr) {
        const char *end = strchr(hdr, ',');
        size_t len = end ? (size_t)(end - hdr) : strlen(hdr);
        const char *s = hdr;

        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        ADD_TAG(s, len);
        hdr = end ? end + 1 : NULL;
    }
    if (user != NULL && *user) {
        char u[X_MAX_TAG_LEN + 1];

        snprintf(u, sizeof(u), "user:%s", user);
        ADD_TAG(u, strlen(u));
    }
#undef ADD_TAG
    if (n == 0)
        return;
    buf_init(&b, 64 * 1024);
    if (buf_appends(&b, "[") == 0) {
        int rc = 0;

        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (i > 0)
                rc = buf_appends(&b, ",");
            if (rc == 0)
                rc = json_append_str(&b, tags[i], strlen(tags[i]));
        }
        if (rc == 0 && buf_appends(&b, "]") == 0)
            x->tags_json = buf_take(&b, NULL);
    }
    buf_cleanup(&b);
}

/* model + fallback_models, normalised, into rr. */
static int
x_models(struct exchange *x, const char *model, const cJSON *fallbacks)
{
    const cJSON *f;

    if ((x->models[0] = x_normalise(model)) == NULL)
        return -ENOMEM;
    x->rr.models[0] = x->models[0];
    x->rr.n_models = 1;
    if (fallbacks == NULL || cJSON_IsNull(fallbacks))
        return 0;
    if (!cJSON_IsArray(fallbacks))
        return -EINVAL;
    cJSON_ArrayForEach(f, fallbacks)
    {
        if (!cJSON_IsString(f) || f->valuestring[0] == '\0' ||
            strlen(f->valuestring) > REGISTRY_MODEL_NAME_MAX)
            return -EINVAL;
        if (x->rr.n_models == ROUTER_MAX_MODELS)
            return -E2BIG;
        if ((x->models[x->rr.n_models] = x_normalise(f->valuestring)) == NULL)
            return -ENOMEM;
        x->rr.models[x->rr.n_models] = x->models[x->rr.n_models];
        x->rr.n_models++;
    }
    return 0;
}

static int64_t
x_estimate(const struct exchange *x, const cJSON *native)
{
    const char *p;

    switch (x->kind) {
    case X_OLLAMA_CHAT:
    case X_OAI_CHAT:
        return scorer_estimate_tokens(json_get(native, "messages"));
    case X_OLLAMA_GENERATE:
    case X_OAI_COMPLETION:
        p = json_get_str(native, "prompt");
        return scorer_estimate_tokens_raw(
            p ? strlen(p) + 16 : 16,
            cJSON_GetArraySize(json_get(native, "images")));
    default:
        return 1;
    }
}

/* Builds the upstream body from the client's; 0 or -EINVAL with err. */
static int
x_prepare(struct exchange *x, cJSON *client, char *err, size_t errlen)
{
    struct translate_req info = {0};
    const char *model;
    int rc = 0;

    if (!cJSON_IsObject(client)) {
        snprintf(err, errlen,
                 "json: cannot unmarshal %s into Go value of "
                 "type api.Request",
                 json_go_kind(client));
        return -EINVAL;
    }
    switch (x->kind) {
    case X_OAI_CHAT:
        rc = translate_chat_request(client, &x->body, &info, err, errlen);
        break;
    case X_OAI_COMPLETION:
        rc = translate_completion_request(client, &x->body, &info, err, errlen);
        break;
    case X_OAI_EMBED:
        rc = translate_embed_request(client, &x->body, &x->embed_b64, err,
                                     errlen);
        break;
    default:
        /* the client's tree becomes the upstream body: no copy */
        x->body = client;
        info.stream = json_get_bool(client, "stream", true);
        break;
    }
    if (rc != 0)
        return rc;
    model = json_get_str(x->body, "model");
    if (model == NULL || *model == '\0') {
        snprintf(err, errlen, "model is required");
        return -EINVAL;
    }
    if (strlen(model) > REGISTRY_MODEL_NAME_MAX) {
        snprintf(err, errlen, "model name is longer than %d bytes",
                 REGISTRY_MODEL_NAME_MAX);
        return -EINVAL;
    }
    if ((rc = x_models(x, model, json_get(client, "fallback_models"))) != 0) {
        snprintf(err, errlen,
                 rc == -E2BIG ? "fallback_models: at most 8 models"
                              : "fallback_models must be a list of "
                                "model names");
        return -EINVAL;
    }
    if (!x->openai) {
        const cJSON *nc = json_get(json_get(x->body, "options"), "num_ctx");

        if (nc != NULL && !cJSON_IsNull(nc) &&
            (!cJSON_IsNumber(nc) || nc->valuedouble < 1 ||
             nc->valuedouble > 16777216 ||
             nc->valuedouble != (double)(int64_t)nc->valuedouble)) {
            snprintf(err, errlen,
                     "options.num_ctx must be a positive integer "
                     "(at most 16777216)");
            return -EINVAL;
        }
    }
    x->client_stream = info.stream && !x_is_embed(x);
    x->include_usage = info.include_usage;
    x->rr.estimated_tokens = x_estimate(x, x->body);
    x_tags(x, client);
    cJSON_DeleteItemFromObjectCaseSensitive(x->body, "fallback_models");
    cJSON_DeleteItemFromObjectCaseSensitive(x->body, "metadata");
    if (!x_is_embed(x)) {
        cJSON_DeleteItemFromObjectCaseSensitive(x->body, "stream");
        cJSON_AddTrueToObject(x->body, "stream");
    }
    /* herd, not each client, decides how long models stay (reference
     * §4.7: models stay loaded) */
    if (cJSON_GetObjectItemCaseSensitive(x->body, "keep_alive") == NULL)
        cJSON_AddNumberToObject(x->body, "keep_alive", -1);
    return 0;
}

static const char *
x_endpoint(enum xkind k)
{
    static const char *const names[] = {
        [X_OLLAMA_CHAT] = "/api/chat",
        [X_OLLAMA_GENERATE] = "/api/generate",
        [X_OLLAMA_EMBED] = "/api/embed",
        [X_OLLAMA_EMBEDDINGS] = "/api/embeddings",
        [X_OAI_CHAT] = "/v1/chat/completions",
        [X_OAI_COMPLETION] = "/v1/completions",
        [X_OAI_EMBED] = "/v1/embeddings",
    };

    return names[k];
}

/* FLEET_API_KEYS: a comma list; unset = open. Constant time per key. */
static bool
x_api_key_ok(struct herd *h, struct http_req *req)
{
    const char *keys = h->cfg->api_keys, *auth, *got;
    bool ok = false;
    size_t gn;

    if (keys == NULL || *keys == '\0')
        return true;
    auth = http_req_header(req, "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    got = auth + 7;
    gn = strlen(got);
    while (*keys) {
        const char *end = strchr(keys, ',');
        size_t kn = end ? (size_t)(end - keys) : strlen(keys);
        unsigned char diff;

        while (kn > 0 && *keys == ' ') {
            keys++;
            kn--;
        }
        while (kn > 0 && keys[kn - 1] == ' ')
            kn--;
        diff = (unsigned char)(kn != gn || kn == 0);
        for (size_t i = 0; i < kn; i++)
            diff |= (unsigned char)(keys[i] ^ (i < gn ? got[i] : 0));
        ok |= diff == 0;
        if (end == NULL)
            break;
        keys = end + 1;
    }
    return ok;
}

void
exchange_start(struct herd *h, struct http_req *req, enum xkind kind)
{
    struct exchange *x = calloc(1, sizeof(*x));
    cJSON *client = NULL;
    const char *body;
    size_t len;
    char err[512];
    bool openai =
        kind == X_OAI_CHAT || kind == X_OAI_COMPLETION || kind == X_OAI_EMBED;

    if (x == NULL) {
        api_error(req, openai, 500, NULL, "out of memory");
        return;
    }
    x_live++;
    x->live_next = x_head;
    if (x_head)
        x_head->live_prev = x;
    x_head = x;
    buf_init(&x->events, 64 * 1024);
    h->stats.requests++;
    x->h = h;
    x->req = req;
    x->kind = kind;
    x->openai = openai;
    x->endpoint = x_endpoint(kind);
    x->t_start = herd_now_ns();
    x->prompt_tokens = x->completion_tokens = -1;
    herd_uuid(h, x->id);
    snprintf(x->client_ip, sizeof(x->client_ip), "%s", http_req_peer(req));
    route_decision_init(&x->d);
    ndjson_init(&x->nd, h->cfg->max_upstream_line);
    buf_init(&x->out, 64u << 20);
    buf_init(&x->body_in, X_MAX_EMBED);
    http_req_on_done(req, x_on_req_done, x);
    if (http_req_too_large(req)) {
        x->state = XS_DONE;
        x->trace_written = true;
        api_error(req, openai, 413, NULL,
                  "request body is larger than the limit of %llu bytes",
                  (unsigned long long)h->cfg->max_body);
        return;
    }
    if (h->draining) {
        x->state = XS_DONE;
        x->trace_written = true;
        http_set_header(req, "Connection", "close");
        api_error(req, openai, 503, NULL, "herd is shutting down");
        return;
    }
    if (!x_api_key_ok(h, req)) {
        x->state = XS_DONE;
        x->trace_written = true;
        http_set_header(req, "WWW-Authenticate", "Bearer");
        api_error(req, openai, 401, openai ? "invalid_request_error" : NULL,
                  "invalid or missing API key: send Authorization: Bearer "
                  "<key> (FLEET_API_KEYS)");
        return;
    }
    body = http_req_body(req, &len);
    if (json_parse(body, len, X_MAX_JSON_DEPTH, &client, err, sizeof(err)) !=
            0 ||
        x_prepare(x, client, err, sizeof(err)) != 0) {
        if (client != x->body)
            cJSON_Delete(client);
        x->state = XS_DONE;
        x->trace_written = true;
        api_error(req, openai, 400, NULL, "%s", err);
        return;
    }
    if (x->openai) {
        char id[48];

        snprintf(id, sizeof(id), "%s%.12s",
                 kind == X_OAI_COMPLETION ? "cmpl-" : "chatcmpl-", x->id + 24);
        translate_stream_init(&x->ts,
                              kind == X_OAI_COMPLETION ? TRANSLATE_COMPLETION
                                                       : TRANSLATE_CHAT,
                              !x->client_stream, x->include_usage, id,
                              clock_wall_ns() / 1000000000LL, x->models[0]);
    } else {
        collect_init(&x->col, kind == X_OLLAMA_CHAT);
    }
    if (client != x->body)
        cJSON_Delete(client);
    log_req(LL_DEBUG, x->id, "%s %s from %s (stream %s, ~%lld tokens)",
            x->endpoint, x->models[0], x->client_ip,
            x->client_stream ? "yes" : "no", (long long)x->rr.estimated_tokens);
    x_route(x);
}

/* --- deadlines ----------------------------------------------------------- */

void
exchange_reap(struct herd *h)
{
    const struct herd_cfg *c = h->cfg;
    int64_t now = herd_now_ns();
    char msg[256];

    for (struct exchange *x = x_head; x != NULL; x = x->live_next) {
        if (x->state != XS_CONNECTING && x->state != XS_STREAMING)
            continue;
        if (c->request_timeout_ns > 0 &&
            now - x->t_start > c->request_timeout_ns) {
            snprintf(msg, sizeof(msg),
                     "deadline exceeded: no complete answer within %.0f s",
                     (double)c->request_timeout_ns / 1e9);
            x_event(x, "reaped", x->d.node_id, msg);
            if (x->head_sent)
                x_fail_inband(x, "failed", msg);
            else
                x_fail_whole(x, 504, NULL, "failed", msg);
            continue;
        }
        if (x->t_first == 0 && c->first_byte_timeout_ns > 0 &&
            now - x->t_attempt > c->first_byte_timeout_ns) {
            snprintf(msg, sizeof(msg), "node %s: no first byte within %.1f s",
                     x->d.node_id, (double)c->first_byte_timeout_ns / 1e9);
            x_cancel_call(x);
            x_retry(x, "first_byte_timeout", 0, true, 504, msg);
            continue;
        }
        if (x->t_first != 0 && c->idle_timeout_ns > 0 &&
            now - x->t_last > c->idle_timeout_ns) {
            snprintf(msg, sizeof(msg), "node %s: the stream stalled for %.1f s",
                     x->d.node_id, (double)c->idle_timeout_ns / 1e9);
            x_event(x, "reaped", x->d.node_id, msg);
            router_node_fault(h->router, x->d.node_id);
            if (x->head_sent) {
                x_fail_inband(x, "failed", msg);
            } else {
                x_cancel_call(x);
                x_retry(x, "stream_idle_timeout", 200, true, 504, msg);
            }
        }
    }
}

/* --- the live view ------------------------------------------------------- */

static const char *
x_state_name(enum xstate s)
{
    static const char *const names[] = {
        [XS_PARSED] = "parsed",       [XS_HELD] = "held",
        [XS_PULLING] = "pulling",     [XS_CONNECTING] = "connecting",
        [XS_STREAMING] = "streaming", [XS_DONE] = "done",
        [XS_CANCELLED] = "cancelled",
    };

    return names[s];
}

int
exchange_live_json(struct buf *b)
{
    int64_t now = herd_now_ns();
    bool first = true;
    int rc = buf_appends(b, "[");

    for (struct exchange *x = x_head; rc == 0 && x != NULL; x = x->live_next) {
        const char *model = x->routed_once ? x->d.model : x->models[0];
        const char *node = x->routed_once ? x->d.node_id : "";

        if (x->state == XS_DONE || x->state == XS_CANCELLED)
            continue;
        rc = buf_appends(b,
                         first ? "{\"request_id\":\"" : ",{\"request_id\":\"");
        first = false;
        if (rc == 0)
            rc = buf_appendf(b, "%s\",\"model\":", x->id);
        if (rc == 0)
            rc = json_append_str(b, model ? model : "",
                                 model ? strlen(model) : 0);
        if (rc == 0)
            rc = buf_appends(b, ",\"node\":");
        if (rc == 0)
            rc = json_append_str(b, node, strlen(node));
        if (rc == 0)
            rc = buf_appendf(
                b,
                ",\"state\":\"%s\",\"endpoint\":\"%s\",\"elapsed_ms\":%.1f,"
                "\"ttft_ms\":%.1f,\"tokens\":%llu,\"retries\":%d,"
                "\"stream\":%s,\"client_ip\":",
                x_state_name(x->state), x->endpoint,
                (double)(now - x->t_start) / 1e6,
                x->t_first ? x_ms(x->t_attempt, x->t_first) : 0.0,
                (unsigned long long)x->n_lines, x->retries,
                x->client_stream ? "true" : "false");
        if (rc == 0)
            rc = json_append_str(b, x->client_ip, strlen(x->client_ip));
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}
