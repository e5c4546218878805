/*
 * gen.c - one inference request: scheduler wait, prompt evaluation, the
 * token stream in the four wire formats, stream faults, and teardown.
 *
 * Ownership: struct gen owns its spec, plan and buffers. It is freed in
 * one place, gen_free() from the timer's close callback, which runs only
 * after the request's done callback (the one teardown path): the request
 * ends exactly once, for any reason, and only then is the job released.
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/clock.h"
#include "herd/log.h"

#define GEN_MAX_BATCH   64           /* tokens sent per loop turn at most */
#define GEN_HIGH_WATER  (256 * 1024) /* wait for the client above this */
#define GEN_MAX_OUTPUT  (64u << 20)  /* non-streamed answers */
#define GEN_WARM_LOAD   180000       /* ns: a warm runner's load_duration */
#define GEN_OVERHEAD_NS 350000       /* ns: template, sampling set-up */

enum gen_state {
    GEN_WAIT_RUNNER,
    GEN_PROMPT,
    GEN_TOKENS,
    GEN_DONE, /* the answer is out (or being sent) */
};

struct gen {
    struct sim *sim;
    struct http_req *req; /* borrowed; NULL once the request ended */
    struct gen_spec spec;
    enum gen_state state;
    struct sched_req *sr; /* held from sched_request to release */
    bool active;          /* counted in sim->active_gens */
    uv_timer_t timer;     /* prompt evaluation and token pacing */

    struct textgen_plan plan;
    bool have_plan;
    size_t next;      /* next piece to send */
    size_t n_content; /* content pieces sent */
    size_t n_think;   /* thinking pieces sent */
    size_t n_tool;    /* tokens spent on tool calls (at the end) */

    uint64_t t0;         /* real ns at arrival */
    uint64_t t_tokens;   /* real ns when token pacing started */
    double real_per_tok; /* real ns between tokens */
    int64_t load_ns, slot_wait_ns, prompt_ns, token_ns;
    uint32_t num_ctx;

    struct buf content, thinking; /* whole text, for non-streamed answers */
    uint32_t *ids;                /* prompt + generated token ids */
    size_t n_ids, cap_ids;

    bool streaming;  /* http_stream_begin done */
    bool role_sent;  /* OpenAI: first delta carried the role */
    char id[24];     /* chatcmpl-N / cmpl-N */
    int64_t created; /* unix seconds, fixed for the whole stream */
};

static void gen_tick(uv_timer_t *t);

/* --- helpers ------------------------------------------------------------- */

void
gen_spec_cleanup(struct gen_spec *s)
{
    free(s->model_echo);
    free(s->prompt);
    for (size_t i = 0; i < s->n_stop; i++)
        free(s->stop[i]);
    free(s->stop);
    for (size_t i = 0; i < s->n_inputs; i++)
        free(s->inputs[i]);
    free(s->inputs);
    cJSON_Delete(s->body);
    memset(s, 0, sizeof(*s));
}

static bool
gen_openai(const struct gen *g)
{
    return g->spec.api == GEN_OAI_CHAT || g->spec.api == GEN_OAI_COMPLETION ||
           g->spec.api == GEN_OAI_EMBED;
}

static int64_t
gen_real_ns(const struct gen *g, int64_t modelled)
{
    double v = (double)modelled * g->sim->time_scale;

    return v > 9e18 ? INT64_MAX : (int64_t)v;
}

static void
gen_start_timer(struct gen *g, int64_t real_ns)
{
    uint64_t ms = real_ns <= 0 ? 0 : (uint64_t)((real_ns + 999999) / 1000000);

    uv_timer_start(&g->timer, gen_tick, ms, 0);
}

static int
gen_push_id(struct gen *g, uint32_t id)
{
    if (g->n_ids == g->cap_ids) {
        size_t cap = g->cap_ids ? g->cap_ids * 2 : 256;
        uint32_t *p = realloc(g->ids, cap * sizeof(*p));

        if (p == NULL)
            return -ENOMEM;
        g->ids = p;
        g->cap_ids = cap;
    }
    g->ids[g->n_ids++] = id;
    return 0;
}

static void
gen_push_piece_ids(struct gen *g, const char *piece)
{
    uint32_t ids[16];
    size_t n = textgen_tokenize(piece, strlen(piece), ids, 16);

    for (size_t i = 0; i < n && i < 16; i++)
        (void)gen_push_id(g, ids[i]);
}

static void
gen_release(struct gen *g, bool with_cache)
{
    if (g->sr == NULL)
        return;
    sched_release(g->sr, with_cache ? g->ids : NULL, with_cache ? g->n_ids : 0);
    g->sr = NULL;
}

/* The generation is over (answered or abandoned): it no longer counts
 * as in progress, even while its last bytes are still being sent, as an
 * Ollama slot frees when the generation completes. */
static void
gen_inactive(struct gen *g)
{
    if (g->active) {
        g->active = false;
        g->sim->active_gens--;
    }
}

static void
gen_free(uv_handle_t *h)
{
    struct gen *g = h->data;

    if (g->have_plan)
        textgen_plan_free(&g->plan);
    gen_spec_cleanup(&g->spec);
    buf_cleanup(&g->content);
    buf_cleanup(&g->thinking);
    free(g->ids);
    gen_inactive(g);
    free(g);
}

/* The request ended (answered, client gone, or shutdown): let go of the
 * slot and free the job once the timer is closed. */
static void
gen_on_done(struct http_req *req, enum http_end why, void *ud)
{
    struct gen *g = ud;

    (void)req;
    if (g->state != GEN_DONE)
        log_info("gen: request ended early (%d) in state %d", (int)why,
                 (int)g->state);
    g->req = NULL;
    gen_release(g, g->state != GEN_WAIT_RUNNER);
    g->state = GEN_DONE;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, gen_free);
}

static void
gen_error(struct gen *g, int status, const char *msg)
{
    struct http_req *req = g->req;

    g->state = GEN_DONE;
    gen_release(g, false);
    if (gen_openai(g))
        api_oai_error(req, status, "%s", msg);
    else
        api_error(req, status, "%s", msg);
}

static int
gen_append_metric(struct buf *b, const char *name, int64_t v)
{
    if (v == 0) /* Go omitempty */
        return 0;
    return buf_appendf(b, ",\"%s\":%" PRId64, name, v);
}

static int64_t
gen_eval_ns(const struct gen *g)
{
    return (int64_t)(g->n_content + g->n_think + g->n_tool) * g->token_ns;
}

static int
gen_metrics(const struct gen *g, struct buf *b)
{
    int64_t eval = gen_eval_ns(g);
    int64_t total =
        g->load_ns + g->slot_wait_ns + g->prompt_ns + eval + GEN_OVERHEAD_NS;
    int rc = 0;

    rc |= gen_append_metric(b, "total_duration", total);
    rc |= gen_append_metric(b, "load_duration", g->load_ns);
    rc |= gen_append_metric(b, "prompt_eval_count", (int64_t)g->spec.n_prompt);
    rc |= gen_append_metric(b, "prompt_eval_duration", g->prompt_ns);
    rc |= gen_append_metric(b, "eval_count",
                            (int64_t)(g->n_content + g->n_think + g->n_tool));
    rc |= gen_append_metric(b, "eval_duration", eval);
    return rc ? -ENOMEM : 0;
}

static int
gen_head(const struct gen *g, struct buf *b)
{
    char ts[48];
    int rc;

    clock_fmt_utc(clock_wall_ns(), ts, sizeof(ts));
    rc = buf_appends(b, "{\"model\":");
    if (rc == 0)
        rc = json_append_str(b, g->spec.model_echo, strlen(g->spec.model_echo));
    if (rc == 0)
        rc = buf_appendf(b, ",\"created_at\":\"%s\"", ts);
    return rc;
}

static int
gen_oai_head(const struct gen *g, struct buf *b, const char *object)
{
    int rc = buf_appendf(b,
                         "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%" PRId64
                         ",\"model\":",
                         g->id, object, g->created);

    if (rc == 0)
        rc = json_append_str(b, g->spec.model_echo, strlen(g->spec.model_echo));
    if (rc == 0)
        rc = buf_appends(b, ",\"system_fingerprint\":\"fp_ollama\"");
    return rc;
}

static int
gen_usage(const struct gen *g, struct buf *b, bool zero)
{
    int64_t p = zero ? 0 : (int64_t)g->spec.n_prompt;
    int64_t c = zero ? 0 : (int64_t)(g->n_content + g->n_think + g->n_tool);

    return buf_appendf(b,
                       "\"usage\":{\"prompt_tokens\":%" PRId64
                       ",\"completion_tokens\":%" PRId64
                       ",\"total_tokens\":%" PRId64 "}",
                       p, c, p + c);
}

/* Sends one NDJSON line or SSE event. */
static int
gen_send(struct gen *g, struct buf *b, bool sse)
{
    int rc;

    if (!g->streaming) {
        rc = http_stream_begin(
            g->req, 200, sse ? "text/event-stream" : "application/x-ndjson");
        if (rc != 0)
            return rc;
        g->streaming = true;
    }
    if (sse)
        rc = http_stream_write(g->req, "data: ", 6);
    else
        rc = 0;
    if (rc == 0)
        rc = http_stream_write(g->req, b->data, b->len);
    if (rc == 0)
        rc = http_stream_write(g->req, sse ? "\n\n" : "\n", sse ? 2 : 1);
    buf_reset(b);
    return rc;
}

/* --- tool calls ------------------------------------------------------------
 */

/* "call_" + 8 lowercase alphanumerics, from the seed and the index. */
static void
gen_call_id(const struct gen *g, int index, char out[16])
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t h = g->spec.tp.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)index;

    memcpy(out, "call_", 5);
    for (int i = 0; i < 8; i++) {
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        out[5 + i] = al[(h >> 32) % 36];
    }
    out[13] = '\0';
}

/* Native form: [{"id":..,"function":{"index":i,"name":..,"arguments":{}}}] */
static int
gen_tool_calls_native(const struct gen *g, struct buf *b)
{
    const cJSON *tc;
    int i = 0, rc = buf_appends(b, "[");

    cJSON_ArrayForEach(tc, g->plan.tool_calls)
    {
        char id[16];

        gen_call_id(g, i, id);
        if (rc == 0)
            rc = buf_appendf(b, "%s{\"id\":\"%s\",\"function\":", i ? "," : "",
                             id);
        if (rc == 0)
            rc =
                json_print(cJSON_GetObjectItemCaseSensitive(tc, "function"), b);
        if (rc == 0)
            rc = buf_appends(b, "}");
        i++;
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

/* OpenAI form: arguments is a JSON string. */
static int
gen_tool_calls_oai(const struct gen *g, struct buf *b)
{
    const cJSON *tc;
    int i = 0, rc = buf_appends(b, "[");

    cJSON_ArrayForEach(tc, g->plan.tool_calls)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        const char *name = json_get_str(fn, "name");
        struct buf args;
        char id[16];

        gen_call_id(g, i, id);
        buf_init(&args, 1u << 20);
        if (rc == 0)
            rc = json_print(json_get(fn, "arguments"), &args);
        if (rc == 0)
            rc = buf_appendf(b,
                             "%s{\"id\":\"%s\",\"index\":%d,\"type\":"
                             "\"function\",\"function\":{\"name\":",
                             i ? "," : "", id, i);
        if (rc == 0)
            rc = json_append_str(b, name ? name : "", name ? strlen(name) : 0);
        if (rc == 0)
            rc = buf_appends(b, ",\"arguments\":");
        if (rc == 0)
            rc = json_append_str(b, args.data ? args.data : "{}",
                                 args.data ? args.len : 2);
        if (rc == 0)
            rc = buf_appends(b, "}}");
        buf_cleanup(&args);
        i++;
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static const char *
gen_finish_reason(const struct gen *g)
{
    if (g->plan.tool_calls != NULL &&
        cJSON_GetArraySize(g->plan.tool_calls) > 0)
        return "tool_calls";
    return g->plan.done_reason;
}

/* --- one streamed piece -------------------------------------------------- */

static int
gen_piece_native(struct gen *g, struct buf *b, const char *piece, bool think)
{
    int rc = gen_head(g, b);

    if (g->spec.api == GEN_GENERATE) {
        if (rc == 0)
            rc = buf_appends(b, ",\"response\":");
        if (rc == 0)
            rc = json_append_str(b, think ? "" : piece,
                                 think ? 0 : strlen(piece));
    } else {
        if (rc == 0)
            rc = buf_appends(b, ",\"message\":{\"role\":\"assistant\","
                                "\"content\":");
        if (rc == 0)
            rc = json_append_str(b, think ? "" : piece,
                                 think ? 0 : strlen(piece));
        if (rc == 0 && think) {
            rc = buf_appends(b, ",\"thinking\":");
            if (rc == 0)
                rc = json_append_str(b, piece, strlen(piece));
        }
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    if (rc == 0 && think && g->spec.api == GEN_GENERATE) {
        rc = buf_appends(b, ",\"thinking\":");
        if (rc == 0)
            rc = json_append_str(b, piece, strlen(piece));
    }
    if (rc == 0)
        rc = buf_appends(b, ",\"done\":false}");
    return rc;
}

static int
gen_piece_oai(struct gen *g, struct buf *b, const char *piece, bool think)
{
    int rc;

    if (g->spec.api == GEN_OAI_COMPLETION) {
        rc = gen_oai_head(g, b, "text_completion");
        if (rc == 0)
            rc = buf_appends(b, ",\"choices\":[{\"text\":");
        if (rc == 0)
            rc = json_append_str(b, piece, strlen(piece));
        if (rc == 0)
            rc = buf_appends(b, ",\"index\":0,\"finish_reason\":null}]");
        if (rc == 0 && g->spec.include_usage) {
            rc = buf_appends(b, ",");
            if (rc == 0)
                rc = gen_usage(g, b, true);
        }
        return rc == 0 ? buf_appends(b, "}") : rc;
    }
    rc = gen_oai_head(g, b, "chat.completion.chunk");
    if (rc == 0)
        rc = buf_appends(b, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (rc == 0 && !g->role_sent)
        rc = buf_appends(b, "\"role\":\"assistant\",");
    g->role_sent = true;
    if (rc == 0)
        rc = buf_appends(b, "\"content\":");
    if (rc == 0)
        rc = json_append_str(b, think ? "" : piece, think ? 0 : strlen(piece));
    if (rc == 0 && think) {
        rc = buf_appends(b, ",\"reasoning\":");
        if (rc == 0)
            rc = json_append_str(b, piece, strlen(piece));
    }
    return rc == 0 ? buf_appends(b, "},\"finish_reason\":null}]}") : rc;
}

/* Records one generated piece and, when streaming, sends it. */
static int
gen_emit_piece(struct gen *g, const char *piece, bool think)
{
    struct buf b;
    int rc = 0;

    if (think) {
        g->n_think++;
        rc = buf_appends(&g->thinking, piece);
    } else {
        g->n_content++;
        rc = buf_appends(&g->content, piece);
    }
    gen_push_piece_ids(g, piece);
    if (rc != 0 || !g->spec.stream)
        return rc;
    if (think && g->spec.api == GEN_OAI_COMPLETION)
        return 0; /* completions carry no reasoning */
    buf_init(&b, 1u << 20);
    if (gen_openai(g))
        rc = gen_piece_oai(g, &b, piece, think);
    else
        rc = gen_piece_native(g, &b, piece, think);
    if (rc == 0)
        rc = gen_send(g, &b, gen_openai(g));
    buf_cleanup(&b);
    return rc;
}

/* --- the end of a generation ------------------------------------------- */

static int
gen_context(const struct gen *g, struct buf *b)
{
    int rc = buf_appends(b, ",\"context\":[");

    for (size_t i = 0; rc == 0 && i < g->n_ids; i++)
        rc = buf_appendf(b, "%s%u", i ? "," : "", g->ids[i]);
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static int
gen_final_native(struct gen *g, struct buf *b)
{
    bool full = !g->spec.stream;
    bool tools = g->plan.tool_calls != NULL;
    int rc = 0;

    if (g->spec.stream && tools && g->spec.api == GEN_CHAT) {
        /* Streamed tool calls come in their own chunk before the end. */
        rc = gen_head(g, b);
        if (rc == 0)
            rc = buf_appends(b, ",\"message\":{\"role\":\"assistant\","
                                "\"content\":\"\",\"tool_calls\":");
        if (rc == 0)
            rc = gen_tool_calls_native(g, b);
        if (rc == 0)
            rc = buf_appends(b, "},\"done\":false}");
        if (rc == 0)
            rc = gen_send(g, b, false);
    }
    if (rc == 0)
        rc = gen_head(g, b);
    if (g->spec.api == GEN_GENERATE) {
        if (rc == 0)
            rc = buf_appends(b, ",\"response\":");
        if (rc == 0)
            rc = json_append_str(b, full ? g->content.data : "",
                                 full ? g->content.len : 0);
        if (rc == 0 && full && g->thinking.len > 0) {
            rc = buf_appends(b, ",\"thinking\":");
            if (rc == 0)
                rc = json_append_str(b, g->thinking.data, g->thinking.len);
        }
    } else {
        if (rc == 0)
            rc = buf_appends(b, ",\"message\":{\"role\":\"assistant\","
                                "\"content\":");
        if (rc == 0)
            rc = json_append_str(b, full ? g->content.data : "",
                                 full ? g->content.len : 0);
        if (rc == 0 && full && g->thinking.len > 0) {
            rc = buf_appends(b, ",\"thinking\":");
            if (rc == 0)
                rc = json_append_str(b, g->thinking.data, g->thinking.len);
        }
        if (rc == 0 && full && tools) {
            rc = buf_appends(b, ",\"tool_calls\":");
            if (rc == 0)
                rc = gen_tool_calls_native(g, b);
        }
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    if (rc == 0)
        rc = buf_appendf(b, ",\"done\":true,\"done_reason\":\"%s\"",
                         g->plan.done_reason);
    if (rc == 0 && g->spec.api == GEN_GENERATE && !g->spec.raw)
        rc = gen_context(g, b);
    if (rc == 0)
        rc = gen_metrics(g, b);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

static int
gen_final_oai_chat(struct gen *g, struct buf *b)
{
    const char *fr = gen_finish_reason(g);
    bool tools = g->plan.tool_calls != NULL;
    int rc;

    if (!g->spec.stream) {
        rc = gen_oai_head(g, b, "chat.completion");
        if (rc == 0)
            rc = buf_appends(b, ",\"choices\":[{\"index\":0,\"message\":{"
                                "\"role\":\"assistant\",\"content\":");
        if (rc == 0)
            rc = json_append_str(b, g->content.data, g->content.len);
        if (rc == 0 && g->thinking.len > 0) {
            rc = buf_appends(b, ",\"reasoning\":");
            if (rc == 0)
                rc = json_append_str(b, g->thinking.data, g->thinking.len);
        }
        if (rc == 0 && tools) {
            rc = buf_appends(b, ",\"tool_calls\":");
            if (rc == 0)
                rc = gen_tool_calls_oai(g, b);
        }
        if (rc == 0)
            rc = buf_appendf(b, "},\"finish_reason\":\"%s\"}],", fr);
        if (rc == 0)
            rc = gen_usage(g, b, false);
        return rc == 0 ? buf_appends(b, "}") : rc;
    }
    rc = 0;
    if (tools) {
        rc = gen_oai_head(g, b, "chat.completion.chunk");
        if (rc == 0)
            rc = buf_appends(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (rc == 0 && !g->role_sent)
            rc = buf_appends(b, "\"role\":\"assistant\",");
        g->role_sent = true;
        if (rc == 0)
            rc = buf_appends(b, "\"content\":\"\",\"tool_calls\":");
        if (rc == 0)
            rc = gen_tool_calls_oai(g, b);
        if (rc == 0)
            rc = buf_appends(b, "},\"finish_reason\":null}]}");
        if (rc == 0)
            rc = gen_send(g, b, true);
    }
    if (rc == 0)
        rc = gen_oai_head(g, b, "chat.completion.chunk");
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"choices\":[{\"index\":0,\"delta\":{},"
                         "\"finish_reason\":\"%s\"}]}",
                         fr);
    return rc;
}

static int
gen_final_oai_completion(struct gen *g, struct buf *b)
{
    int rc = gen_oai_head(g, b, "text_completion");

    if (rc == 0)
        rc = buf_appends(b, ",\"choices\":[{\"text\":");
    if (rc == 0)
        rc = json_append_str(b, g->spec.stream ? "" : g->content.data,
                             g->spec.stream ? 0 : g->content.len);
    if (rc == 0)
        rc = buf_appendf(b, ",\"index\":0,\"finish_reason\":\"%s\"}]",
                         g->plan.done_reason);
    if (rc == 0 && (!g->spec.stream || g->spec.include_usage)) {
        rc = buf_appends(b, ",");
        if (rc == 0)
            rc = gen_usage(g, b, g->spec.stream);
    }
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* The usage chunk and [DONE] that end every successful /v1 stream. */
static int
gen_oai_tail(struct gen *g, struct buf *b)
{
    int rc = 0;

    if (g->spec.include_usage) {
        rc = gen_oai_head(g, b,
                          g->spec.api == GEN_OAI_CHAT ? "chat.completion.chunk"
                                                      : "text_completion");
        if (rc == 0)
            rc = buf_appends(b, ",\"choices\":[],");
        if (rc == 0)
            rc = gen_usage(g, b, false);
        if (rc == 0)
            rc = buf_appends(b, "}");
        if (rc == 0)
            rc = gen_send(g, b, true);
    }
    if (rc == 0)
        rc = http_stream_write(g->req, "data: [DONE]\n\n", 14);
    return rc;
}

static void
gen_finish(struct gen *g)
{
    struct http_req *req = g->req;
    struct buf b;
    int rc;

    buf_init(&b, GEN_MAX_OUTPUT);
    g->state = GEN_DONE;
    g->n_tool = g->plan.tool_call_tokens;
    if (g->spec.api == GEN_OAI_CHAT)
        rc = gen_final_oai_chat(g, &b);
    else if (g->spec.api == GEN_OAI_COMPLETION)
        rc = gen_final_oai_completion(g, &b);
    else
        rc = gen_final_native(g, &b);
    /* Release before answering: the answer may end the request. */
    gen_release(g, true);
    gen_inactive(g);
    if (rc != 0) {
        buf_cleanup(&b);
        if (g->streaming)
            http_stream_abort(req);
        else
            api_error(req, 500, "response too large");
        return;
    }
    if (!g->spec.stream) {
        api_json(req, 200, &b);
        buf_cleanup(&b);
        return;
    }
    rc = gen_send(g, &b, gen_openai(g));
    if (rc == 0 && gen_openai(g))
        rc = gen_oai_tail(g, &b);
    buf_cleanup(&b);
    if (rc != 0)
        http_stream_abort(req);
    else
        http_stream_end(req);
}

/* --- stream faults ------------------------------------------------------- */

/* die_after: once what was sent has reached the socket, cut. */
static void
gen_die_drained(struct http_req *req, void *ud)
{
    (void)ud;
    http_stream_abort(req);
}

/* Returns true when a fault ended the request. */
static bool
gen_stream_fault(struct gen *g)
{
    size_t sent = g->n_content + g->n_think;
    struct http_req *req = g->req;
    struct buf b;
    char msg[96];

    if (g->spec.faults.die_after >= 0 &&
        sent >= (size_t)g->spec.faults.die_after) {
        log_info("gen: fault die_after %zu tokens", sent);
        g->state = GEN_DONE;
        gen_release(g, false);
        if (!g->streaming &&
            http_stream_begin(req, 200,
                              gen_openai(g) ? "text/event-stream"
                                            : "application/x-ndjson") == 0)
            g->streaming = true;
        if (http_stream_queued(req) > 0)
            http_stream_on_drain(req, 0, gen_die_drained, g);
        else
            http_stream_abort(req);
        return true;
    }
    if (g->spec.faults.err_after < 0 || sent < (size_t)g->spec.faults.err_after)
        return false;
    snprintf(msg, sizeof(msg), "simulated error after %zu tokens", sent);
    log_info("gen: fault %s", msg);
    if (!g->spec.stream) {
        gen_error(g, 500, msg);
        return true;
    }
    g->state = GEN_DONE;
    gen_release(g, false);
    buf_init(&b, 4096);
    if (gen_openai(g)) {
        /* Ollama's /v1 layer decodes the error line as an empty answer:
         * one empty chunk, then the stream ends without [DONE]. */
        if (gen_piece_oai(g, &b, "", false) == 0)
            (void)gen_send(g, &b, true);
    } else if (buf_appends(&b, "{\"error\":") == 0 &&
               json_append_str(&b, msg, strlen(msg)) == 0 &&
               buf_appends(&b, "}") == 0) {
        (void)gen_send(g, &b, false);
    }
    buf_cleanup(&b);
    http_stream_end(req);
    return true;
}

/* --- pacing ------------------------------------------------------------- */

static void
gen_on_drain(struct http_req *req, void *ud)
{
    struct gen *g = ud;

    (void)req;
    if (g->state == GEN_TOKENS)
        gen_start_timer(g, 0);
}

/* Sends every token that is due, then sleeps until the next one. */
static void
gen_tokens(struct gen *g)
{
    uint64_t now = clock_mono_ns();
    size_t batch = 0;

    while (g->next < g->plan.n_pieces) {
        double due = (double)g->t_tokens + g->real_per_tok * (double)g->next;

        if (g->req == NULL)
            return;
        if (gen_stream_fault(g))
            return;
        if ((double)now < due) {
            gen_start_timer(g, (int64_t)(due - (double)now));
            return;
        }
        if (batch++ == GEN_MAX_BATCH ||
            (g->spec.stream && http_stream_queued(g->req) > GEN_HIGH_WATER)) {
            if (batch > GEN_MAX_BATCH)
                gen_start_timer(g, 0);
            else
                http_stream_on_drain(g->req, GEN_HIGH_WATER / 4, gen_on_drain,
                                     g);
            return;
        }
        if (gen_emit_piece(g, g->plan.pieces[g->next],
                           g->next < g->plan.n_think) != 0) {
            g->state = GEN_DONE;
            gen_release(g, false);
            http_stream_abort(g->req);
            return;
        }
        g->next++;
    }
    if (gen_stream_fault(g))
        return;
    gen_finish(g);
}

static void
gen_begin_tokens(struct gen *g)
{
    double per = (double)gen_real_ns(g, g->token_ns);

    if (g->spec.faults.slow > 1.0) {
        per = (per < 1e6 ? 1e6 : per) * g->spec.faults.slow;
        g->token_ns = (int64_t)((double)g->token_ns * g->spec.faults.slow);
    }
    g->real_per_tok = per;
    g->state = GEN_TOKENS;
    g->t_tokens = clock_mono_ns();
    gen_tokens(g);
}

/* --- embeddings --------------------------------------------------------- */

static uint32_t
gen_embed_dims(const struct gen *g)
{
    uint32_t d =
        g->spec.model->embedding_length ? g->spec.model->embedding_length : 768;

    if (g->spec.dims > 0 && g->spec.dims < d)
        d = g->spec.dims;
    return d;
}

static int
gen_vector(struct buf *b, const double *v, uint32_t dims, bool b64)
{
    int rc = 0;

    if (!b64) {
        rc = buf_appends(b, "[");
        for (uint32_t i = 0; rc == 0 && i < dims; i++)
            rc = buf_appendf(b, "%s%.9g", i ? "," : "", v[i]);
        return rc == 0 ? buf_appends(b, "]") : rc;
    }
    /* Little-endian float32, base64 (OpenAI encoding_format). */
    rc = buf_appends(b, "\"");
    if (rc == 0)
        rc = buf_append_f32_base64(b, v, dims);
    return rc == 0 ? buf_appends(b, "\"") : rc;
}

static int
gen_embed_body(struct gen *g, struct buf *b)
{
    uint32_t dims = gen_embed_dims(g);
    bool legacy = g->spec.api == GEN_EMBEDDINGS;
    double *v = calloc(dims, sizeof(*v));
    int rc = v ? 0 : -ENOMEM;

    if (rc == 0 && legacy) {
        rc = buf_appends(b, "{\"embedding\":");
        if (g->spec.n_inputs == 0 && rc == 0)
            rc = buf_appends(b, "[]");
        else if (rc == 0) {
            textgen_embed(g->spec.inputs[0], strlen(g->spec.inputs[0]), dims,
                          false, v);
            rc = gen_vector(b, v, dims, false);
        }
        if (rc == 0)
            rc = buf_appends(b, "}");
    } else if (rc == 0 && g->spec.api == GEN_EMBED) {
        rc = buf_appends(b, "{\"model\":");
        if (rc == 0)
            rc = json_append_str(b, g->spec.model_echo,
                                 strlen(g->spec.model_echo));
        if (rc == 0)
            rc = buf_appends(b, ",\"embeddings\":[");
        for (size_t i = 0; rc == 0 && i < g->spec.n_inputs; i++) {
            textgen_embed(g->spec.inputs[i], strlen(g->spec.inputs[i]), dims,
                          true, v);
            if (i > 0)
                rc = buf_appends(b, ",");
            if (rc == 0)
                rc = gen_vector(b, v, dims, false);
        }
        if (rc == 0)
            rc = buf_appends(b, "]");
        if (rc == 0 && g->spec.n_inputs > 0) {
            rc |= gen_append_metric(b, "total_duration",
                                    g->load_ns + g->slot_wait_ns +
                                        g->prompt_ns + GEN_OVERHEAD_NS);
            rc |= gen_append_metric(b, "load_duration", g->load_ns);
            rc |= gen_append_metric(b, "prompt_eval_count",
                                    (int64_t)g->spec.n_prompt);
        }
        if (rc == 0)
            rc = buf_appends(b, "}");
    } else if (rc == 0) {
        rc = buf_appends(b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; rc == 0 && i < g->spec.n_inputs; i++) {
            textgen_embed(g->spec.inputs[i], strlen(g->spec.inputs[i]), dims,
                          true, v);
            rc = buf_appendf(
                b, "%s{\"object\":\"embedding\",\"embedding\":", i ? "," : "");
            if (rc == 0)
                rc = gen_vector(b, v, dims, g->spec.base64);
            if (rc == 0)
                rc = buf_appendf(b, ",\"index\":%zu}", i);
        }
        if (rc == 0)
            rc = buf_appends(b, "],\"model\":");
        if (rc == 0)
            rc = json_append_str(b, g->spec.model_echo,
                                 strlen(g->spec.model_echo));
        if (rc == 0)
            rc = buf_appendf(b,
                             ",\"usage\":{\"prompt_tokens\":%zu,"
                             "\"total_tokens\":%zu}}",
                             g->spec.n_prompt, g->spec.n_prompt);
    }
    free(v);
    return rc;
}

static void
gen_embed_finish(struct gen *g)
{
    struct http_req *req = g->req;
    struct buf b;

    buf_init(&b, GEN_MAX_OUTPUT);
    g->state = GEN_DONE;
    gen_release(g, false);
    if (gen_embed_body(g, &b) != 0) {
        buf_cleanup(&b);
        api_error(req, 500, "embedding too large");
        return;
    }
    api_json(req, 200, &b);
    buf_cleanup(&b);
}

/* --- the scheduler's answer and the timer --------------------------------- */

static bool
gen_is_embed(const struct gen *g)
{
    return g->spec.api == GEN_EMBED || g->spec.api == GEN_EMBEDDINGS ||
           g->spec.api == GEN_OAI_EMBED;
}

static void
gen_answer_load(struct gen *g, const char *reason)
{
    struct http_req *req = g->req;
    struct buf b;
    int rc;

    buf_init(&b, 4096);
    g->state = GEN_DONE;
    gen_release(g, false);
    if (gen_is_embed(g)) {
        rc =
            buf_appends(&b, g->spec.api == GEN_EMBEDDINGS ? "{\"embedding\":[]}"
                                                          : "{\"model\":");
        if (rc == 0 && g->spec.api != GEN_EMBEDDINGS)
            rc = json_append_str(&b, g->spec.model_echo,
                                 strlen(g->spec.model_echo));
        if (rc == 0 && g->spec.api != GEN_EMBEDDINGS)
            rc = buf_appends(&b, ",\"embeddings\":[]}");
    } else {
        rc = gen_head(g, &b);
        if (rc == 0)
            rc = buf_appends(&b, g->spec.api == GEN_GENERATE
                                     ? ",\"response\":\"\""
                                     : ",\"message\":{\"role\":\"assistant\","
                                       "\"content\":\"\"}");
        if (rc == 0)
            rc = buf_appendf(&b, ",\"done\":true,\"done_reason\":\"%s\"}",
                             reason);
    }
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
}

static int
gen_make_plan(struct gen *g)
{
    struct textgen_params tp = g->spec.tp;

    tp.ctx_left = g->num_ctx > g->spec.n_prompt
                      ? g->num_ctx - (uint32_t)g->spec.n_prompt
                      : 1;
    if (textgen_plan_make(&tp, &g->plan) != 0)
        return -ENOMEM;
    g->have_plan = true;
    return 0;
}

static void
gen_on_ready(struct sched_req *sr, int err, void *ud)
{
    struct gen *g = ud;
    uint64_t waited = clock_mono_ns() - g->t0;
    size_t cached;
    char msg[160];

    (void)sr;
    if (err != 0) {
        g->sr = NULL; /* the scheduler has let go of a failed request */
        if (err == -ENOMEM)
            snprintf(msg, sizeof(msg),
                     "model requires more system memory (%.1f GiB) than is "
                     "available (%.1f GiB)",
                     (double)g->spec.model->size / 1073741824.0,
                     g->sim->profile.mem_gb);
        else
            snprintf(msg, sizeof(msg),
                     "llama runner process has terminated: error %d", err);
        gen_error(g, 500, msg);
        return;
    }
    g->load_ns = sched_req_load_ns(g->sr);
    if (g->load_ns <= 0)
        g->load_ns = GEN_WARM_LOAD;
    if (g->sim->time_scale > 0) {
        double w = (double)waited / g->sim->time_scale - (double)g->load_ns;

        g->slot_wait_ns = w > 0 ? (int64_t)w : 0;
    }
    g->num_ctx = sched_req_num_ctx(g->sr);
    cached = sched_req_cached(g->sr);
    if (g->spec.load_only) {
        gen_answer_load(g, "load");
        return;
    }
    if (gen_is_embed(g)) {
        if (!g->spec.truncate && g->spec.n_prompt > g->num_ctx) {
            gen_error(g, 400, "the input length exceeds the context length");
            return;
        }
        g->prompt_ns = profile_prompt_ns(&g->sim->profile, g->spec.model,
                                         (uint32_t)g->spec.n_prompt);
    } else {
        if (gen_make_plan(g) != 0) {
            gen_error(g, 500, "out of memory");
            return;
        }
        g->prompt_ns = profile_prompt_ns(&g->sim->profile, g->spec.model,
                                         (uint32_t)(g->spec.n_prompt - cached));
        g->token_ns = profile_token_ns(&g->sim->profile, g->spec.model);
        for (size_t i = 0; i < g->spec.n_prompt; i++)
            (void)gen_push_id(g, g->spec.prompt[i]);
    }
    g->state = GEN_PROMPT;
    gen_start_timer(g, gen_real_ns(g, g->prompt_ns));
}

static void
gen_tick(uv_timer_t *t)
{
    struct gen *g = t->data;

    if (g->req == NULL || g->state == GEN_DONE)
        return;
    if (g->state == GEN_PROMPT) {
        if (gen_is_embed(g))
            gen_embed_finish(g);
        else
            gen_begin_tokens(g);
        return;
    }
    if (g->state == GEN_TOKENS)
        gen_tokens(g);
}

void
gen_start(struct sim *sim, struct http_req *req, struct gen_spec *spec)
{
    struct gen *g = calloc(1, sizeof(*g));
    int err = 0;

    if (g == NULL) {
        gen_spec_cleanup(spec);
        api_error(req, 500, "out of memory");
        return;
    }
    g->sim = sim;
    g->req = req;
    g->spec = *spec;
    memset(spec, 0, sizeof(*spec));
    /* Merge order: defaults, the Modelfile's PARAMETERs, the request. */
    if (g->spec.ro.num_ctx <= 0 && g->spec.model->param_num_ctx > 0)
        g->spec.ro.num_ctx = g->spec.model->param_num_ctx;
    /* Without options.seed, the text follows from the prompt (and the
     * sim's base seed): the same request gets the same answer. */
    if (g->spec.tp.seed == 0)
        g->spec.tp.seed =
            sim->seed ^
            textgen_hash(g->spec.prompt, g->spec.n_prompt * sizeof(uint32_t));
    simctl_record(sim, req, &g->spec);
    g->t0 = clock_mono_ns();
    g->created = clock_wall_ns() / NS_PER_SEC;
    snprintf(g->id, sizeof(g->id), "%s-%u",
             g->spec.api == GEN_OAI_COMPLETION ? "cmpl" : "chatcmpl",
             (unsigned)(sim->next_id++ % 999));
    buf_init(&g->content, GEN_MAX_OUTPUT);
    buf_init(&g->thinking, GEN_MAX_OUTPUT);
    uv_timer_init(sim->loop, &g->timer);
    g->timer.data = g;
    sim->active_gens++;
    g->active = true;
    if (sim->active_gens > sim->peak_gens)
        sim->peak_gens = sim->active_gens;
    http_req_on_done(req, gen_on_done, g);

    if (g->spec.load_only && g->spec.has_keep_alive &&
        g->spec.keep_alive == 0) {
        sched_expire(sim->sched, g->spec.model);
        gen_answer_load(g, "unload");
        return;
    }
    g->sr =
        sched_request(sim->sched, g->spec.model, &g->spec.ro,
                      g->spec.has_keep_alive, g->spec.keep_alive,
                      g->spec.prompt, g->spec.n_prompt, gen_on_ready, g, &err);
    if (g->sr == NULL) {
        if (err == -EBUSY)
            gen_error(g, 503,
                      "server busy, please try again.  maximum pending "
                      "requests exceeded");
        else
            gen_error(g, 500, "out of memory");
    }
}
