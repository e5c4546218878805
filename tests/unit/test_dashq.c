/*
 * test_dashq.c - unit tests for the dashboard queries
 * (src/coordinator/dashq.c) against real SQLite files in a temp dir,
 * written through traces.c's public API (traces_open, traces_submit,
 * traces_flush, traces_prune), so the read side is tested against the
 * real write side: the shape and values of every query on seeded rows,
 * empty-database zeros, filters and orders, the rollup against
 * ollama-herd's own SQL (windows with partial days, appended rows,
 * retention, hand deletions, the disabled fallback), parameters,
 * read-only connections, queries while the writer inserts, and a clean
 * close with work in flight. Synchronisation is the loop (a callback has
 * run) and traces_flush(), never a sleep.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "herd/buf.h"
#include "herd/clock.h"
#include "herd/json.h"
#include "dashq.h"
#include "traces.h"

#define DAY      86400.0
#define HOUR     3600.0
#define D0       1700006400.0   /* a UTC midnight */
#define NOW      (D0 + 36810.5) /* 10:13:30.5 that day */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char tmpdir[256];
static char dbpath[512];
static uv_loop_t loop;
static struct traces *tr;

static void
rm_rf(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    char sub[1024];

    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        d = opendir(path);
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d != NULL)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int
setup(void **state)
{
    char err[256] = "";

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/herd-test-dashq-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/latency.db", tmpdir);
    tr = traces_open(dbpath, NULL, err, sizeof(err));
    if (tr == NULL) {
        fprintf(stderr, "traces_open: %s\n", err);
        return -1;
    }
    return uv_loop_init(&loop);
}

static int
teardown(void **state)
{
    (void)state;
    traces_close(tr);
    tr = NULL;
    /* Every test closed its dashq: nothing may be left on the loop. */
    assert_int_equal(uv_loop_close(&loop), 0);
    rm_rf(tmpdir);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writing rows through traces.c */

struct row {
    const char *id, *node, *model, *status;
    double ts, lat, ttft; /* NAN = NULL */
    int64_t pt, ct;       /* -1 = NULL */
    int retry;
    bool fb;
    const char *tags;
    bool observe;
};

static void
put(const struct row *r)
{
    struct trace_record rec;

    memset(&rec, 0, sizeof(rec));
    rec.request_id = r->id != NULL ? r->id : "req";
    rec.model = r->model;
    rec.original_model = r->model;
    rec.node_id = r->node;
    rec.score = 80.5;
    rec.scores_breakdown = "{\"thermal\":50,\"total\":80.5}";
    rec.status = r->status;
    rec.latency_ms = r->lat;
    rec.ttft_ms = r->ttft;
    rec.prompt_tokens = r->pt;
    rec.completion_tokens = r->ct;
    rec.retry_count = r->retry;
    rec.fallback_used = r->fb;
    rec.excluded_nodes = "[\"node-z\"]";
    rec.client_ip = "10.0.0.7";
    rec.original_format = "openai";
    rec.error_message = strcmp(r->status, "completed") == 0 ? NULL : "boom";
    rec.timestamp = r->ts;
    rec.tags = r->tags;
    rec.attempts = "[{\"node\":\"n\",\"reason\":\"ok\",\"status\":200,"
                   "\"ms\":1.0}]";
    rec.queue_wait_ms = 2.5;
    rec.events = "{\"routed\":0.1}";
    rec.endpoint = "/v1/chat/completions";
    rec.scored_candidates = "[{\"node\":\"n\",\"total\":80.5}]";
    rec.observe = r->observe;
    rec.obs_latency_ms = TRACES_NULL_REAL;
    assert_int_equal(traces_submit(tr, &rec), 0);
}

static void
flush(void)
{
    assert_int_equal(traces_flush(tr), 0);
}

/* ------------------------------------------------------------------ */
/* Running queries on the loop */

struct answer {
    int calls;
    int rc;
    char *json;
};

static void
on_answer(int rc, struct buf *json, void *ud)
{
    struct answer *a = ud;

    a->calls++;
    a->rc = rc;
    free(a->json);
    a->json = buf_take(json, NULL);
}

static cJSON *
parse(const char *s)
{
    cJSON *v = NULL;
    char err[128] = "";

    if (json_parse(s, strlen(s), 64, &v, err, sizeof(err)) != 0)
        fail_msg("not JSON (%s): %s", err, s);
    return v;
}

static void
wait_for(const int *calls)
{
    while (*calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
}

static cJSON *
query_rc(struct dashq *q, enum dashq_kind k, const struct dashq_params *p,
         int want)
{
    struct answer a = {0};
    cJSON *v;

    assert_int_equal(dashq_run(q, k, p, on_answer, &a), 0);
    wait_for(&a.calls);
    assert_int_equal(a.calls, 1);
    if (a.rc != want)
        fail_msg("%s: rc %d, want %d: %s", dashq_kind_name(k), a.rc, want,
                 a.json);
    v = parse(a.json);
    free(a.json);
    return v;
}

static cJSON *
query(struct dashq *q, enum dashq_kind k, const struct dashq_params *p)
{
    return query_rc(q, k, p, 0);
}

static void
on_closed(void *ud)
{
    (*(int *)ud)++;
}

static void
close_q(struct dashq *q)
{
    int closed = 0;

    dashq_close(q, on_closed, &closed);
    wait_for(&closed);
    assert_int_equal(closed, 1);
}

static struct dashq *
open_q(const struct dashq_opts *opts)
{
    char err[256] = "";
    struct dashq *q = dashq_open(&loop, dbpath, opts, err, sizeof(err));

    if (q == NULL)
        fail_msg("dashq_open: %s", err);
    return q;
}

/* ------------------------------------------------------------------ */
/* JSON checks */

static const cJSON *
get(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (v == NULL)
        fail_msg("no key %s", k);
    return v;
}

static double
num(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);

    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", k);
    return v->valuedouble;
}

static const char *
str(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);

    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", k);
    return v->valuestring;
}

static const cJSON *
arr(const cJSON *o, const char *k, int n)
{
    const cJSON *v = get(o, k);

    if (!cJSON_IsArray(v))
        fail_msg("%s is not an array", k);
    if (n >= 0 && cJSON_GetArraySize(v) != n)
        fail_msg("%s has %d items, want %d", k, cJSON_GetArraySize(v), n);
    return v;
}

static const cJSON *
at(const cJSON *a, int i)
{
    return cJSON_GetArrayItem(a, i);
}

static void
is_null(const cJSON *o, const char *k)
{
    if (!cJSON_IsNull(get(o, k)))
        fail_msg("%s is not null", k);
}

/* Exactly these keys, no more. */
static void
keys_are(const cJSON *o, const char *const *keys, size_t n)
{
    size_t i;

    assert_true(cJSON_IsObject(o));
    assert_int_equal(cJSON_GetArraySize(o), (int)n);
    for (i = 0; i < n; i++)
        get(o, keys[i]);
}

/* ------------------------------------------------------------------ */
/* The fixed data set of the shape tests (see the comments for the
 * expected figures) */

static const double ts_r1 = NOW - 100, ts_r7 = NOW - 7 * DAY - 60;
static const double ts_r6 = NOW - 7 * DAY + 60;

static void
seed_fixed(void)
{
    const struct row rows[] = {
        {"r1", "node-a", "m1", "completed", NOW - 100, 1000, 100, 10, 20, 0,
         false, "[\"alpha\",\"beta\"]", true},
        {"r2", "node-a", "m1", "completed", NOW - 200, 2000, 300, 5, 5, 0,
         false, "[\"alpha\"]", true},
        {"r3", "node-a", "m1", "failed", NOW - 300, 500, NAN, -1, -1, 1, true,
         "[\"beta\"]", false},
        {"r4", "node-b", "m2", "completed", D0 - HOUR, 3000, 250, 7, 8, 0,
         false, NULL, true},
        {"r5", "node-b", "m2", "retried", D0 - HOUR - 10, 100, NAN, -1, -1, 0,
         false, "[\"alpha\"]", false},
        {"r6", "node-a", "m1", "completed", NOW - 7 * DAY + 60, 4000, 1000, 1,
         1, 0, false, "[\"gamma\"]", true},
        {"r7", "node-a", "m1", "completed", NOW - 7 * DAY - 60, 8000, 1200, 100,
         100, 0, false, "[\"gamma\"]", true},
        {"r8", "node-c", "m3", "completed", NOW - 30 * DAY, 9000, NAN, 1000,
         1000, 0, false, "[\"delta\"]", true},
    };
    size_t i;

    for (i = 0; i < NELEM(rows); i++)
        put(&rows[i]);
    flush();
}

static struct dashq_params
at_now(void)
{
    struct dashq_params p;

    memset(&p, 0, sizeof(p));
    p.now = NOW;
    return p;
}

/* ------------------------------------------------------------------ */
/* Tests: shapes and values */

static void
test_empty_database(void **state)
{
    struct dashq_params p = at_now();
    struct dashq *q;
    cJSON *v;
    const cJSON *f;

    (void)state;
    q = open_q(NULL);
    v = query(q, DASHQ_TRACES, &p);
    arr(v, "traces", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_USAGE, &p);
    assert_int_equal((int)num(v, "days"), 7);
    arr(v, "data", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_OVERVIEW, &p);
    {
        static const char *const k[] = {"total_requests", "total_prompt_tokens",
                                        "total_completion_tokens",
                                        "total_tokens", "models_count"};
        size_t i;

        keys_are(v, k, NELEM(k));
        for (i = 0; i < NELEM(k); i++)
            assert_true(num(v, k[i]) == 0);
    }
    cJSON_Delete(v);
    v = query(q, DASHQ_TRENDS, &p);
    assert_int_equal((int)num(v, "hours"), 72);
    arr(v, "data", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_MODELS, &p);
    arr(v, "daily", 0);
    arr(v, "summary", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_TAGS, &p);
    arr(v, "data", 0);
    arr(v, "summary", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_TAGS_DAILY, &p);
    arr(v, "data", 0);
    cJSON_Delete(v);
    v = query(q, DASHQ_HEALTH_STATS, &p);
    f = get(v, "fleet");
    assert_true(num(f, "requests_24h") == 0);
    assert_true(num(f, "error_rate_pct_24h") == 0);
    is_null(f, "avg_ttft_ms_24h");
    assert_true(num(f, "avg_retries_per_request_24h") == 0);
    arr(v, "nodes", 0);
    arr(v, "models", 0);
    arr(v, "load_timeouts", 0);
    cJSON_Delete(v);
    p.request_id = "nope";
    v = query_rc(q, DASHQ_TRACE, &p, -ENOENT);
    assert_non_null(strstr(str(v, "error"), "no trace with request_id"));
    cJSON_Delete(v);
    close_q(q);
}

static void
check_trace_row(const cJSON *t)
{
    static const char *const k[] = {
        "request_id",
        "model",
        "original_model",
        "node_id",
        "score",
        "scores_breakdown",
        "status",
        "latency_ms",
        "time_to_first_token_ms",
        "prompt_tokens",
        "completion_tokens",
        "retry_count",
        "fallback_used",
        "excluded_nodes",
        "client_ip",
        "original_format",
        "error_message",
        "timestamp",
        "tags",
        "attempts",
        "queue_wait_ms",
        "scored_candidates",
        "endpoint",
    };

    keys_are(t, k, NELEM(k));
    assert_true(cJSON_IsObject(get(t, "scores_breakdown")));
    assert_true(num(get(t, "scores_breakdown"), "total") == 80.5);
    assert_true(cJSON_IsArray(get(t, "excluded_nodes")));
    assert_true(cJSON_IsArray(get(t, "attempts")));
    assert_true(cJSON_IsArray(get(t, "scored_candidates")));
    assert_true(cJSON_IsBool(get(t, "fallback_used")));
    assert_true(num(t, "queue_wait_ms") == 2.5);
    assert_string_equal(str(t, "endpoint"), "/v1/chat/completions");
    assert_string_equal(str(t, "client_ip"), "10.0.0.7");
}

static void
test_traces_list(void **state)
{
    /* Its tag holds "alpha" as text, not as a tag. */
    const struct row r9 = {
        "r9", "node-c", "m3", "completed", NOW - 40 * DAY,   700, 70,
        1,    1,        0,    false,       "[\"alphabet\"]", true};
    struct dashq_params p = at_now();
    struct dashq *q;
    const cJSON *ts, *t;
    cJSON *v;

    (void)state;
    seed_fixed();
    put(&r9);
    flush();
    q = open_q(NULL);
    v = query(q, DASHQ_TRACES, &p);
    ts = arr(v, "traces", 9);
    t = at(ts, 0); /* newest first */
    check_trace_row(t);
    assert_string_equal(str(t, "request_id"), "r1");
    assert_true(num(t, "timestamp") == ts_r1);
    assert_true(num(t, "latency_ms") == 1000);
    assert_true(num(t, "prompt_tokens") == 10);
    assert_true(cJSON_IsFalse(get(t, "fallback_used")));
    assert_string_equal(at(get(t, "tags"), 1)->valuestring, "beta");
    is_null(t, "error_message");
    t = at(ts, 2);
    assert_string_equal(str(t, "request_id"), "r3");
    is_null(t, "time_to_first_token_ms");
    is_null(t, "prompt_tokens");
    assert_true(cJSON_IsTrue(get(t, "fallback_used")));
    assert_string_equal(str(t, "error_message"), "boom");
    assert_string_equal(str(at(ts, 7), "request_id"), "r8");
    assert_string_equal(str(at(ts, 8), "request_id"), "r9");
    t = at(ts, 3);
    is_null(t, "tags"); /* r4 */
    cJSON_Delete(v);

    p.limit = 2;
    v = query(q, DASHQ_TRACES, &p);
    ts = arr(v, "traces", 2);
    assert_string_equal(str(at(ts, 1), "request_id"), "r2");
    cJSON_Delete(v);

    p.limit = 0;
    p.node_id = "node-b";
    v = query(q, DASHQ_TRACES, &p);
    ts = arr(v, "traces", 2);
    assert_string_equal(str(at(ts, 0), "request_id"), "r4");
    cJSON_Delete(v);

    p.node_id = NULL;
    p.status = "failed";
    v = query(q, DASHQ_TRACES, &p);
    assert_string_equal(str(at(arr(v, "traces", 1), 0), "request_id"), "r3");
    cJSON_Delete(v);

    p.status = NULL;
    p.model = "m1";
    p.tag = "gamma";
    v = query(q, DASHQ_TRACES, &p);
    ts = arr(v, "traces", 2);
    assert_string_equal(str(at(ts, 0), "request_id"), "r6");
    assert_string_equal(str(at(ts, 1), "request_id"), "r7");
    cJSON_Delete(v);

    p.tag = "alpha";
    p.model = NULL;
    v = query(q, DASHQ_TRACES, &p); /* the tag index, then json_each */
    ts = arr(v, "traces", 3);
    assert_string_equal(str(at(ts, 0), "request_id"), "r1");
    assert_string_equal(str(at(ts, 1), "request_id"), "r2");
    assert_string_equal(str(at(ts, 2), "request_id"), "r5");
    cJSON_Delete(v);

    p.since = NOW - 150; /* time order: the window holds few rows */
    v = query(q, DASHQ_TRACES, &p);
    assert_string_equal(str(at(arr(v, "traces", 1), 0), "request_id"), "r1");
    cJSON_Delete(v);

    p.since = D0 - 2 * HOUR;
    p.until = D0;
    v = query(q, DASHQ_TRACES, &p);
    assert_string_equal(str(at(arr(v, "traces", 1), 0), "request_id"), "r5");
    cJSON_Delete(v);

    p.since = p.until = 0;
    p.tag = "alp"; /* a prefix is not the tag */
    v = query(q, DASHQ_TRACES, &p);
    arr(v, "traces", 0);
    cJSON_Delete(v);
    close_q(q);
}

static void
test_trace_by_request_id(void **state)
{
    struct dashq_params p = at_now();
    struct row a = {"req-9", "node-a", "m1", "retried", NOW - 50, 300,  NAN,
                    -1,      -1,       0,    false,     NULL,     false};
    struct row b = {"req-9", "node-b", "m1", "completed", NOW - 40, 900, 80,
                    3,       4,        1,    true,        NULL,     true};
    const cJSON *ts;
    struct dashq *q;
    cJSON *v;

    (void)state;
    put(&b); /* written out of order: the answer is by time */
    put(&a);
    seed_fixed();
    q = open_q(NULL);
    p.request_id = "req-9";
    v = query(q, DASHQ_TRACE, &p);
    assert_string_equal(str(v, "request_id"), "req-9");
    ts = arr(v, "traces", 2);
    assert_string_equal(str(at(ts, 0), "status"), "retried");
    assert_string_equal(str(at(ts, 0), "node_id"), "node-a");
    assert_string_equal(str(at(ts, 1), "status"), "completed");
    assert_true(num(at(ts, 1), "retry_count") == 1);
    assert_true(num(get(at(ts, 1), "events"), "routed") == 0.1);
    cJSON_Delete(v);
    close_q(q);
}

static void
usage_row(const cJSON *r, const char *node, const char *model, double day,
          int n, int done, int failed)
{
    static const char *const k[] = {
        "node_id",
        "model",
        "day_bucket",
        "request_count",
        "completed_count",
        "failed_count",
        "avg_latency_ms",
        "avg_ttft_ms",
        "total_prompt_tokens",
        "total_completion_tokens",
        "total_retries",
        "total_fallbacks",
    };

    keys_are(r, k, NELEM(k));
    assert_string_equal(str(r, "node_id"), node);
    assert_string_equal(str(r, "model"), model);
    assert_true(num(r, "day_bucket") == day);
    assert_int_equal((int)num(r, "request_count"), n);
    assert_int_equal((int)num(r, "completed_count"), done);
    assert_int_equal((int)num(r, "failed_count"), failed);
}

static void
test_usage(void **state)
{
    struct dashq_params p = at_now();
    const cJSON *d, *r;
    struct dashq *q;
    cJSON *v;

    (void)state;
    seed_fixed();
    q = open_q(NULL);
    v = query(q, DASHQ_USAGE, &p);
    d = arr(v, "data", 3);
    /* Newest day first; r7 is 60 s before the cutoff, in r6's day. */
    r = at(d, 0);
    usage_row(r, "node-a", "m1", D0, 3, 2, 1);
    assert_true(num(r, "avg_latency_ms") == 1166.7);
    assert_true(num(r, "avg_ttft_ms") == 200.0);
    assert_true(num(r, "total_prompt_tokens") == 15);
    assert_true(num(r, "total_completion_tokens") == 25);
    assert_true(num(r, "total_retries") == 1);
    assert_true(num(r, "total_fallbacks") == 1);
    r = at(d, 1);
    usage_row(r, "node-b", "m2", D0 - DAY, 2, 1, 0);
    assert_true(num(r, "avg_latency_ms") == 1550.0);
    assert_true(num(r, "avg_ttft_ms") == 250.0);
    r = at(d, 2);
    usage_row(r, "node-a", "m1", D0 - 7 * DAY, 1, 1, 0);
    assert_true(num(r, "avg_latency_ms") == 4000.0);
    assert_true(num(r, "total_prompt_tokens") == 1);
    cJSON_Delete(v);

    p.days = 400; /* clamped to 365: every row */
    v = query(q, DASHQ_USAGE, &p);
    assert_int_equal((int)num(v, "days"), 365);
    d = arr(v, "data", 4);
    r = at(d, 2); /* r6 and r7 together now */
    usage_row(r, "node-a", "m1", D0 - 7 * DAY, 2, 2, 0);
    assert_true(num(r, "avg_latency_ms") == 6000.0);
    usage_row(at(d, 3), "node-c", "m3", D0 - 30 * DAY, 1, 1, 0);
    is_null(at(d, 3), "avg_ttft_ms");
    cJSON_Delete(v);
    close_q(q);
}

static void
test_overview_trends_models(void **state)
{
    struct dashq_params p = at_now();
    const cJSON *d, *r;
    struct dashq *q;
    cJSON *v;

    (void)state;
    seed_fixed();
    q = open_q(NULL);
    /* Observations: r1, r2, r4, r6, r7, r8. */
    v = query(q, DASHQ_OVERVIEW, &p);
    assert_true(num(v, "total_requests") == 6);
    assert_true(num(v, "total_prompt_tokens") == 1123);
    assert_true(num(v, "total_completion_tokens") == 1134);
    assert_true(num(v, "total_tokens") == 2257);
    assert_true(num(v, "models_count") == 3);
    cJSON_Delete(v);

    v = query(q, DASHQ_TRENDS, &p);
    d = arr(v, "data", 2);
    r = at(d, 0);
    assert_true(num(r, "hour_bucket") == D0 - HOUR);
    assert_true(num(r, "request_count") == 1);
    assert_true(num(r, "avg_latency_ms") == 3000.0);
    r = at(d, 1);
    assert_true(num(r, "hour_bucket") == D0 + 10 * HOUR);
    assert_true(num(r, "request_count") == 2);
    assert_true(num(r, "avg_latency_ms") == 1500.0);
    assert_true(num(r, "total_prompt_tokens") == 15);
    assert_true(num(r, "total_completion_tokens") == 25);
    cJSON_Delete(v);

    p.start_ts = D0 - 2 * HOUR;
    p.end_ts = D0; /* only r4 */
    v = query(q, DASHQ_TRENDS, &p);
    assert_true(num(at(arr(v, "data", 1), 0), "hour_bucket") == D0 - HOUR);
    cJSON_Delete(v);
    p.start_ts = p.end_ts = 0;

    v = query(q, DASHQ_MODELS, &p);
    d = arr(v, "daily", 3);
    r = at(d, 0);
    assert_string_equal(str(r, "model_name"), "m1");
    assert_true(num(r, "day_bucket") == D0 - 7 * DAY);
    assert_true(num(r, "request_count") == 1); /* r7 is outside */
    assert_true(num(r, "avg_latency_ms") == 4000.0);
    assert_true(num(at(d, 1), "day_bucket") == D0);
    assert_string_equal(str(at(d, 2), "model_name"), "m2");
    d = arr(v, "summary", 3);
    r = at(d, 0);
    assert_string_equal(str(r, "model_name"), "m1");
    assert_true(num(r, "total_requests") == 4);
    assert_true(num(r, "avg_latency_ms") == 3750.0);
    assert_true(num(r, "min_latency_ms") == 1000.0);
    assert_true(num(r, "max_latency_ms") == 8000.0);
    assert_true(num(r, "total_prompt_tokens") == 116);
    assert_true(num(r, "first_seen") == ts_r7);
    assert_true(num(r, "last_seen") == ts_r1);
    assert_string_equal(str(at(d, 1), "model_name"), "m2"); /* tie: name */
    assert_string_equal(str(at(d, 2), "model_name"), "m3");
    cJSON_Delete(v);
    close_q(q);
}

static void
test_tags(void **state)
{
    struct dashq_params p = at_now();
    const cJSON *d, *r;
    struct dashq *q;
    cJSON *v;

    (void)state;
    seed_fixed();
    q = open_q(NULL);
    v = query(q, DASHQ_TAGS, &p);
    d = arr(v, "data", 3);
    r = at(d, 0);
    assert_string_equal(str(r, "tag"), "alpha");
    assert_true(num(r, "request_count") == 3);
    assert_true(num(r, "completed_count") == 2);
    assert_true(num(r, "failed_count") == 0);
    assert_true(num(r, "avg_latency_ms") == 1033.3);
    assert_true(num(r, "avg_ttft_ms") == 200.0);
    assert_true(num(r, "total_prompt_tokens") == 15);
    r = at(d, 1);
    assert_string_equal(str(r, "tag"), "beta");
    assert_true(num(r, "failed_count") == 1);
    assert_true(num(r, "avg_latency_ms") == 750.0);
    assert_string_equal(str(at(d, 2), "tag"), "gamma");
    d = arr(v, "summary", 4); /* every row: gamma twice, delta */
    assert_string_equal(str(at(d, 0), "tag"), "alpha");
    assert_string_equal(str(at(d, 1), "tag"), "beta"); /* 2, tie: name */
    r = at(d, 2);
    assert_string_equal(str(r, "tag"), "gamma");
    assert_true(num(r, "total_requests") == 2);
    assert_true(num(r, "avg_latency_ms") == 6000.0);
    assert_true(num(r, "first_seen") == ts_r7);
    assert_true(num(r, "last_seen") == ts_r6);
    assert_string_equal(str(at(d, 3), "tag"), "delta");
    cJSON_Delete(v);

    v = query(q, DASHQ_TAGS_DAILY, &p);
    d = arr(v, "data", 4); /* by day, then tag */
    assert_string_equal(str(at(d, 0), "tag"), "gamma");
    assert_true(num(at(d, 0), "total_tokens") == 2);
    assert_string_equal(str(at(d, 1), "tag"), "alpha");
    assert_true(num(at(d, 1), "day_bucket") == D0 - DAY);
    assert_true(num(at(d, 1), "avg_latency_ms") == 100.0);
    r = at(d, 2);
    assert_string_equal(str(r, "tag"), "alpha");
    assert_true(num(r, "request_count") == 2);
    assert_true(num(r, "total_tokens") == 40);
    assert_string_equal(str(at(d, 3), "tag"), "beta");
    cJSON_Delete(v);
    close_q(q);
}

/* Rows whose events column (herd's timeline) the health engine counts. */
static void
put_events(const char *id, double ts, const char *events)
{
    struct trace_record rec;

    memset(&rec, 0, sizeof(rec));
    rec.request_id = id;
    rec.model = "m1";
    rec.original_model = "m1";
    rec.node_id = "node-a";
    rec.score = TRACES_NULL_REAL;
    rec.status = "completed";
    rec.latency_ms = 10;
    rec.ttft_ms = 5;
    rec.prompt_tokens = rec.completion_tokens = -1;
    rec.timestamp = ts;
    rec.queue_wait_ms = 0;
    rec.events = events;
    rec.obs_latency_ms = TRACES_NULL_REAL;
    assert_int_equal(traces_submit(tr, &rec), 0);
}

static void
test_health_events(void **state)
{
    struct dashq_params p = at_now();
    const cJSON *ev;
    struct dashq *q;
    cJSON *v;

    (void)state;
    put_events("e1", NOW - 60,
               "[{\"ms\":1,\"event\":\"dispatch\"},{\"ms\":2,\"event\":"
               "\"vram_fallback\",\"node\":\"node-a\"}]");
    put_events("e2", NOW - 5 * HOUR,
               "[{\"ms\":1,\"event\":\"context_stripped\"},{\"ms\":2,"
               "\"event\":\"vram_fallback\"}]");
    put_events("e3", NOW - 2 * DAY, "[{\"ms\":1,\"event\":\"reaped\"}]");
    put_events("e4", NOW - 60, "[{\"ms\":1,\"event\":\"bad\\\"name\"}]");
    put_events("e5", NOW - 60, "not json");
    flush();
    q = open_q(NULL);
    v = query(q, DASHQ_HEALTH_STATS, &p);
    ev = get(v, "events");
    assert_true(num(get(ev, "vram_fallback"), "count_24h") == 2);
    assert_true(num(get(ev, "vram_fallback"), "count_1h") == 1);
    assert_true(num(get(ev, "context_stripped"), "count_24h") == 1);
    assert_true(num(get(ev, "context_stripped"), "count_1h") == 0);
    assert_true(num(get(ev, "dispatch"), "count_24h") == 1);
    assert_null(json_get(ev, "reaped"));         /* older than 24 h */
    assert_int_equal(cJSON_GetArraySize(ev), 3); /* the bad name skipped */
    cJSON_Delete(v);
    close_q(q);
}

static void
test_health_stats(void **state)
{
    struct dashq_params p = at_now();
    const struct row rows[] = {
        {"h1", "node-a", "m1", "completed", NOW - 60, 60000, 50000, 1, 1, 0,
         false, NULL, true},
        {"h2", "node-a", "m1", "completed", NOW - 120, 900, 100, 1, 1, 0, false,
         NULL, true},
        {"h3", "node-a", "m1", "failed", NOW - 180, 130000, NAN, -1, -1, 0,
         false, NULL, false},
        {"h4", "node-a", "m1", "client_disconnected", NOW - 240, 700, NAN, -1,
         -1, 0, false, NULL, false},
        {"h5", "node-a", "m1", "completed", NOW - 5 * HOUR, 50000, 45000, 1, 1,
         0, false, NULL, true},
        {"h6", "node-a", "m1", "incomplete", NOW - 5 * HOUR, 800, NAN, -1, -1,
         0, false, NULL, false},
        {"h7", "node-b", "m2", "retried", NOW - 10 * HOUR, 125000, NAN, -1, -1,
         0, false, NULL, false},
        {"h8", "node-b", "m2", "completed", NOW - 10 * HOUR, 400, 200, 1, 1, 2,
         false, NULL, true},
        {"h9", "node-b", "m2", "failed", NOW - 2 * DAY, 100, NAN, -1, -1, 0,
         false, NULL, false},
    };
    const cJSON *f, *n, *m;
    struct dashq *q;
    cJSON *v;
    size_t i;

    (void)state;
    for (i = 0; i < NELEM(rows); i++)
        put(&rows[i]);
    flush();
    q = open_q(NULL);
    v = query(q, DASHQ_HEALTH_STATS, &p);
    assert_true(num(v, "window_s") == 86400);
    assert_true(num(v, "recent_window_s") == 3600);
    assert_true(num(v, "cold_load_ttft_ms") == 40000);
    assert_true(num(v, "load_timeout_ms") == 120000);
    f = get(v, "fleet");
    assert_true(num(f, "requests_24h") == 8);
    assert_true(num(f, "requests_1h") == 4);
    assert_true(num(f, "failed_24h") == 3);
    assert_true(num(f, "failed_1h") == 2);
    assert_true(num(f, "error_rate_pct_24h") == 37.5);
    assert_true(num(f, "error_rate_pct_1h") == 50.0);
    assert_true(num(f, "avg_ttft_ms_24h") == 23825.0);
    assert_true(num(f, "retries_24h") == 2);
    assert_true(num(f, "retries_1h") == 0);
    assert_true(num(f, "avg_retries_per_request_24h") == 0.25);
    assert_true(num(f, "cold_loads_24h") == 2);
    assert_true(num(f, "cold_loads_1h") == 1);
    assert_true(num(f, "client_disconnects_24h") == 1);
    assert_true(num(f, "client_disconnects_1h") == 1);
    assert_true(num(f, "incomplete_streams_24h") == 1);
    assert_true(num(f, "incomplete_streams_1h") == 0);
    assert_true(num(f, "load_timeouts_24h") == 2);
    assert_true(num(f, "load_timeouts_1h") == 1);
    n = arr(v, "nodes", 2);
    assert_string_equal(str(at(n, 0), "node_id"), "node-a");
    assert_true(num(at(n, 0), "requests_24h") == 6);
    assert_true(num(at(n, 0), "error_rate_pct_24h") == 50.0);
    assert_true(num(at(n, 0), "avg_ttft_ms_24h") == 31700.0);
    assert_true(num(at(n, 0), "cold_loads_24h") == 2);
    assert_string_equal(str(at(n, 1), "node_id"), "node-b");
    assert_true(num(at(n, 1), "requests_1h") == 0);
    assert_true(num(at(n, 1), "error_rate_pct_1h") == 0);
    assert_true(num(at(n, 1), "retries_24h") == 2);
    assert_true(num(at(n, 1), "load_timeouts_24h") == 1);
    m = arr(v, "models", 2);
    assert_string_equal(str(at(m, 0), "model"), "m1");
    assert_true(num(at(m, 0), "client_disconnects_1h") == 1);
    assert_true(num(at(m, 0), "incomplete_streams_24h") == 1);
    assert_true(num(at(m, 0), "load_timeouts_1h") == 1);
    assert_string_equal(str(at(m, 1), "model"), "m2");
    assert_true(num(at(m, 1), "load_timeouts_24h") == 1);
    m = arr(v, "load_timeouts", 2);
    assert_string_equal(str(at(m, 0), "node_id"), "node-a");
    assert_true(num(at(m, 0), "count_1h") == 1);
    assert_string_equal(str(at(m, 1), "model"), "m2");
    assert_true(num(at(m, 1), "count_24h") == 1);
    assert_true(num(at(m, 1), "count_1h") == 0);
    cJSON_Delete(v);
    close_q(q);
}

/* ------------------------------------------------------------------ */
/* The rollup against ollama-herd's SQL */

enum xconv { X_RAW, X_R1, X_R1_OR0, X_R1_ORNULL };

struct xcol {
    const char *name;
    enum xconv conv;
};

static cJSON *
x_value(sqlite3_stmt *st, int i, enum xconv conv)
{
    int type = sqlite3_column_type(st, i);
    double d = sqlite3_column_double(st, i);
    char s[64];

    if (conv != X_RAW && (type == SQLITE_NULL || (conv != X_R1 && d == 0)))
        return conv == X_R1_OR0 ? cJSON_CreateNumber(0) : cJSON_CreateNull();
    if (conv != X_RAW) {
        snprintf(s, sizeof(s), "%.1f", d);
        return cJSON_CreateNumber(strtod(s, NULL));
    }
    if (type == SQLITE_NULL)
        return cJSON_CreateNull();
    if (type == SQLITE_TEXT)
        return cJSON_CreateString((const char *)sqlite3_column_text(st, i));
    return cJSON_CreateNumber(d);
}

/* The rows of sql (binds ?1, ?2) as JSON objects, as ollama-herd's
 * Python builds them. */
static cJSON *
x_rows(sqlite3 *db, const char *sql, double b1, double b2,
       const struct xcol *cols, int nc)
{
    cJSON *out = cJSON_CreateArray();
    sqlite3_stmt *st = NULL;
    int i;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_bind_parameter_count(st) >= 1)
        sqlite3_bind_double(st, 1, b1);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_double(st, 2, b2);
    while (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();

        for (i = 0; i < nc; i++)
            cJSON_AddItemToObject(o, cols[i].name,
                                  x_value(st, i, cols[i].conv));
        cJSON_AddItemToArray(out, o);
    }
    sqlite3_finalize(st);
    return out;
}

static void
x_same(const cJSON *want, const cJSON *got, const char *what)
{
    char *a, *b;

    if (cJSON_Compare(want, got, true))
        return;
    a = cJSON_PrintUnformatted(want);
    b = cJSON_PrintUnformatted(got);
    fprintf(stderr, "%s differs:\nwant %s\n got %s\n", what, a, b);
    free(a);
    free(b);
    fail();
}

static const struct xcol x_usage_cols[] = {
    {"node_id", X_RAW},
    {"model", X_RAW},
    {"day_bucket", X_RAW},
    {"request_count", X_RAW},
    {"completed_count", X_RAW},
    {"failed_count", X_RAW},
    {"avg_latency_ms", X_R1_OR0},
    {"avg_ttft_ms", X_R1_ORNULL},
    {"total_prompt_tokens", X_RAW},
    {"total_completion_tokens", X_RAW},
    {"total_retries", X_RAW},
    {"total_fallbacks", X_RAW},
};
static const char x_usage_sql[] =
    "SELECT node_id, model, CAST(timestamp / 86400 AS INTEGER) * 86400 AS"
    " day_bucket, COUNT(*) AS request_count, SUM(CASE WHEN status ="
    " 'completed' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'failed' THEN 1"
    " ELSE 0 END), AVG(latency_ms), AVG(time_to_first_token_ms),"
    " SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)),"
    " SUM(retry_count), SUM(fallback_used) FROM request_traces WHERE"
    " timestamp >= ?1 GROUP BY node_id, model, day_bucket ORDER BY day_bucket"
    " DESC, node_id, model";

static const struct xcol x_tag_cols[] = {
    {"tag", X_RAW},
    {"request_count", X_RAW},
    {"completed_count", X_RAW},
    {"failed_count", X_RAW},
    {"avg_latency_ms", X_R1_OR0},
    {"avg_ttft_ms", X_R1_ORNULL},
    {"total_prompt_tokens", X_RAW},
    {"total_completion_tokens", X_RAW},
};
static const char x_tag_sql[] =
    "SELECT j.value AS tag, COUNT(*) AS request_count, SUM(CASE WHEN status"
    " = 'completed' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'failed' THEN"
    " 1 ELSE 0 END), AVG(latency_ms), AVG(time_to_first_token_ms),"
    " SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0))"
    " FROM request_traces, json_each(request_traces.tags) AS j WHERE"
    " timestamp >= ?1 AND timestamp <= ?2 AND tags IS NOT NULL GROUP BY"
    " j.value ORDER BY request_count DESC, tag";

static const struct xcol x_tagsum_cols[] = {
    {"tag", X_RAW},
    {"total_requests", X_RAW},
    {"completed_count", X_RAW},
    {"failed_count", X_RAW},
    {"avg_latency_ms", X_R1_OR0},
    {"total_prompt_tokens", X_RAW},
    {"total_completion_tokens", X_RAW},
    {"first_seen", X_RAW},
    {"last_seen", X_RAW},
};
static const char x_tagsum_sql[] =
    "SELECT j.value AS tag, COUNT(*) AS total_requests, SUM(CASE WHEN status"
    " = 'completed' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'failed' THEN"
    " 1 ELSE 0 END), AVG(latency_ms), SUM(COALESCE(prompt_tokens, 0)),"
    " SUM(COALESCE(completion_tokens, 0)), MIN(timestamp), MAX(timestamp)"
    " FROM request_traces, json_each(request_traces.tags) AS j WHERE tags IS"
    " NOT NULL GROUP BY j.value ORDER BY total_requests DESC, tag";

static const struct xcol x_tagday_cols[] = {
    {"tag", X_RAW},           {"day_bucket", X_RAW},
    {"request_count", X_RAW}, {"avg_latency_ms", X_R1_OR0},
    {"total_tokens", X_RAW},
};
static const char x_tagday_sql[] =
    "SELECT j.value AS tag, CAST(timestamp / 86400 AS INTEGER) * 86400 AS"
    " day_bucket, COUNT(*), AVG(latency_ms), SUM(COALESCE(prompt_tokens, 0) +"
    " COALESCE(completion_tokens, 0)) FROM request_traces,"
    " json_each(request_traces.tags) AS j WHERE timestamp >= ?1 AND"
    " timestamp <= ?2 AND tags IS NOT NULL GROUP BY j.value, day_bucket"
    " ORDER BY day_bucket ASC, tag";

static const struct xcol x_trend_cols[] = {
    {"hour_bucket", X_RAW},
    {"request_count", X_RAW},
    {"avg_latency_ms", X_R1},
    {"total_prompt_tokens", X_RAW},
    {"total_completion_tokens", X_RAW},
};
static const char x_trend_sql[] =
    "SELECT CAST(timestamp / 3600 AS INTEGER) * 3600 AS hour_bucket,"
    " COUNT(*), AVG(latency_ms), SUM(COALESCE(prompt_tokens, 0)),"
    " SUM(COALESCE(completion_tokens, 0)) FROM latency_observations WHERE"
    " timestamp >= ?1 AND timestamp <= ?2 GROUP BY hour_bucket ORDER BY"
    " hour_bucket";

static const struct xcol x_mday_cols[] = {
    {"model_name", X_RAW},          {"day_bucket", X_RAW},
    {"request_count", X_RAW},       {"avg_latency_ms", X_R1},
    {"total_prompt_tokens", X_RAW}, {"total_completion_tokens", X_RAW},
};
static const char x_mday_sql[] =
    "SELECT model_name, CAST(timestamp / 86400 AS INTEGER) * 86400 AS"
    " day_bucket, COUNT(*), AVG(latency_ms), SUM(COALESCE(prompt_tokens, 0)),"
    " SUM(COALESCE(completion_tokens, 0)) FROM latency_observations WHERE"
    " timestamp >= ?1 AND timestamp <= ?2 GROUP BY model_name, day_bucket"
    " ORDER BY model_name, day_bucket";

static const struct xcol x_msum_cols[] = {
    {"model_name", X_RAW},
    {"total_requests", X_RAW},
    {"avg_latency_ms", X_R1},
    {"min_latency_ms", X_R1},
    {"max_latency_ms", X_R1},
    {"total_prompt_tokens", X_RAW},
    {"total_completion_tokens", X_RAW},
    {"first_seen", X_RAW},
    {"last_seen", X_RAW},
};
static const char x_msum_sql[] =
    "SELECT model_name, COUNT(*) AS total_requests, AVG(latency_ms),"
    " MIN(latency_ms), MAX(latency_ms), SUM(COALESCE(prompt_tokens, 0)),"
    " SUM(COALESCE(completion_tokens, 0)), MIN(timestamp), MAX(timestamp)"
    " FROM latency_observations GROUP BY model_name ORDER BY total_requests"
    " DESC, model_name";

static const char x_overview_sql[] =
    "SELECT COUNT(*), COALESCE(SUM(COALESCE(prompt_tokens, 0)), 0),"
    " COALESCE(SUM(COALESCE(completion_tokens, 0)), 0),"
    " COUNT(DISTINCT model_name) FROM latency_observations";

static sqlite3 *
x_open(void)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* ollama-herd's window for days/hours and start_ts/end_ts. */
static void
x_window(const struct dashq_params *p, double span, double *lo, double *hi)
{
    *lo = p->start_ts > 0 && p->end_ts > 0 ? p->start_ts : p->now - span;
    *hi = p->end_ts > 0 ? p->end_ts : p->now;
}

static void
x_check_overview(sqlite3 *db, struct dashq *q, const struct dashq_params *p)
{
    sqlite3_stmt *st = NULL;
    cJSON *v = query(q, DASHQ_OVERVIEW, p);

    assert_int_equal(sqlite3_prepare_v2(db, x_overview_sql, -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_true(num(v, "total_requests") == sqlite3_column_double(st, 0));
    assert_true(num(v, "total_prompt_tokens") == sqlite3_column_double(st, 1));
    assert_true(num(v, "total_completion_tokens") ==
                sqlite3_column_double(st, 2));
    assert_true(num(v, "models_count") == sqlite3_column_double(st, 3));
    sqlite3_finalize(st);
    cJSON_Delete(v);
}

/* Every rollup-backed answer for p equals the SQL. */
static void
x_check(sqlite3 *db, struct dashq *q, const struct dashq_params *p)
{
    double lo, hi, days = p->days > 0 ? p->days : 7;
    double hours = p->hours > 0 ? p->hours : 72;
    cJSON *v, *w;

    v = query(q, DASHQ_USAGE, p);
    w = x_rows(db, x_usage_sql, p->now - days * DAY, 0, x_usage_cols,
               NELEM(x_usage_cols));
    x_same(w, get(v, "data"), "usage");
    cJSON_Delete(w);
    cJSON_Delete(v);

    x_window(p, days * DAY, &lo, &hi);
    v = query(q, DASHQ_TAGS, p);
    w = x_rows(db, x_tag_sql, lo, hi, x_tag_cols, NELEM(x_tag_cols));
    x_same(w, get(v, "data"), "tags data");
    cJSON_Delete(w);
    w = x_rows(db, x_tagsum_sql, 0, 0, x_tagsum_cols, NELEM(x_tagsum_cols));
    x_same(w, get(v, "summary"), "tags summary");
    cJSON_Delete(w);
    cJSON_Delete(v);

    v = query(q, DASHQ_TAGS_DAILY, p);
    w = x_rows(db, x_tagday_sql, lo, hi, x_tagday_cols, NELEM(x_tagday_cols));
    x_same(w, get(v, "data"), "tags/daily");
    cJSON_Delete(w);
    cJSON_Delete(v);

    v = query(q, DASHQ_MODELS, p);
    w = x_rows(db, x_mday_sql, lo, hi, x_mday_cols, NELEM(x_mday_cols));
    x_same(w, get(v, "daily"), "models daily");
    cJSON_Delete(w);
    w = x_rows(db, x_msum_sql, 0, 0, x_msum_cols, NELEM(x_msum_cols));
    x_same(w, get(v, "summary"), "models summary");
    cJSON_Delete(w);
    cJSON_Delete(v);

    x_window(p, hours * HOUR, &lo, &hi);
    v = query(q, DASHQ_TRENDS, p);
    w = x_rows(db, x_trend_sql, lo, hi, x_trend_cols, NELEM(x_trend_cols));
    x_same(w, get(v, "data"), "trends");
    cJSON_Delete(w);
    cJSON_Delete(v);

    x_check_overview(db, q, p);
}

/* Windows with and without partial first and last buckets. */
static void
x_check_all(sqlite3 *db, struct dashq *q)
{
    struct dashq_params p[8];
    size_t i;

    for (i = 0; i < NELEM(p); i++)
        p[i] = at_now();
    p[0].days = 1, p[0].hours = 1;
    p[1].days = 3, p[1].hours = 5;
    p[2].days = 7, p[2].hours = 72;
    p[3].days = 365, p[3].hours = 8760;
    p[4].start_ts = D0 - 2.5 * DAY, p[4].end_ts = D0 - 0.3 * DAY;
    p[5].start_ts = D0 - 3 * DAY, p[5].end_ts = D0 - DAY;
    p[6].end_ts = NOW - 2 * DAY; /* start_ts ignored, as in Python */
    p[7].now = D0 + 5 * HOUR, p[7].days = 2, p[7].hours = 30;
    for (i = 0; i < NELEM(p); i++)
        x_check(db, q, &p[i]);
}

static unsigned long x_seed = 12345;

static unsigned
x_rand(unsigned n)
{
    x_seed = x_seed * 6364136223846793005UL + 1442695040888963407UL;
    return (unsigned)((x_seed >> 33) % n);
}

/* n random rows over the 10 days before NOW (and a few after it). */
static void
x_seed_rows(int n, double oldest)
{
    static const char *const nodes[] = {"node-a", "node-b", "node-c"};
    static const char *const models[] = {"m1", "m2", "m3", "m4"};
    static const char *const tags[] = {NULL,      "[]",
                                       "[\"a\"]", "[\"a\",\"b\"]",
                                       "[\"c\"]", "[\"b\",\"d\",\"e\"]",
                                       "[\"e\"]"};
    static const char *const statuses[] = {
        "completed", "completed",           "completed",
        "completed", "completed",           "failed",
        "retried",   "client_disconnected", "incomplete"};
    int i;

    for (i = 0; i < n; i++) {
        struct row r;
        double span = NOW - oldest;

        memset(&r, 0, sizeof(r));
        r.node = nodes[x_rand(NELEM(nodes))];
        r.model = models[x_rand(NELEM(models))];
        r.status = statuses[x_rand(NELEM(statuses))];
        r.ts = oldest + (double)x_rand((unsigned)span * 4) / 4.0;
        if (x_rand(100) == 0)
            r.ts = NOW + 100 + x_rand(1000); /* in the future */
        r.lat = x_rand(20) == 0 ? NAN : (double)(100 + x_rand(50000));
        r.ttft = x_rand(4) == 0 ? NAN : (double)(10 + x_rand(3000));
        r.pt = x_rand(10) == 0 ? -1 : (int64_t)x_rand(4000);
        r.ct = x_rand(10) == 0 ? -1 : (int64_t)x_rand(2000);
        r.retry = (int)x_rand(3);
        r.fb = x_rand(5) == 0;
        r.tags = tags[x_rand(NELEM(tags))];
        r.observe = strcmp(r.status, "completed") == 0 && !isnan(r.lat);
        put(&r);
    }
    flush();
}

static void
test_rollup_matches_sql(void **state)
{
    struct dashq_opts o;
    struct dashq *q;
    sqlite3 *db;

    (void)state;
    x_seed_rows(2000, NOW - 10 * DAY);
    db = x_open();
    q = open_q(NULL); /* the warm-up builds the rollup */
    x_check_all(db, q);
    /* Appended rows, some of them old. */
    x_seed_rows(400, NOW - 10 * DAY);
    x_seed_rows(100, NOW - 2 * HOUR);
    x_check_all(db, q);
    /* Retention deletes the oldest rows: the first day is redone. */
    assert_int_equal(traces_prune(tr, D0 - 6.5 * DAY), 0);
    flush();
    x_check_all(db, q);
    close_q(q);

    /* Rows deleted by hand, anywhere: the row count catches it. */
    memset(&o, 0, sizeof(o));
    o.verify_s = -1;
    q = open_q(&o);
    x_check_all(db, q);
    assert_int_equal(sqlite3_exec(db,
                                  "DELETE FROM request_traces WHERE model ="
                                  " 'm2' AND timestamp < 1699920000;"
                                  "DELETE FROM latency_observations WHERE"
                                  " model_name = 'm3'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    x_check_all(db, q);
    close_q(q);

    /* Past max_cells the answers come from the rows themselves. */
    o.max_cells = 8;
    o.verify_s = 0;
    q = open_q(&o);
    x_check_all(db, q);
    close_q(q);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ */
/* Parameters */

static void
test_params(void **state)
{
    struct dashq_params p;
    struct dashq *q;
    char err[256];
    cJSON *v;
    char big[DASHQ_STR_MAX + 2];

    (void)state;
    memset(&p, 0, sizeof(p));
    assert_int_equal(dashq_param_set(&p, "days", "abc", err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "days: not an integer: \"abc\"");
    assert_int_equal(dashq_param_set(&p, "days", "0", err, sizeof(err)), 0);
    assert_int_equal(p.days, 1);
    assert_int_equal(dashq_param_set(&p, "days", "1000", err, sizeof(err)), 0);
    assert_int_equal(p.days, 365);
    assert_int_equal(dashq_param_set(&p, "limit", "5000", err, sizeof(err)), 0);
    assert_int_equal(p.limit, 1000);
    assert_int_equal(dashq_param_set(&p, "limit", "-3", err, sizeof(err)), 0);
    assert_int_equal(p.limit, 1);
    assert_int_equal(
        dashq_param_set(&p, "hours", "99999999999", err, sizeof(err)), 0);
    assert_int_equal(p.hours, 8760);
    assert_int_equal(dashq_param_set(&p, "start_ts", "-1", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "start_ts"));
    assert_int_equal(dashq_param_set(&p, "since", "x1", err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "since: not a number: \"x1\"");
    assert_int_equal(
        dashq_param_set(&p, "until", "1700000000.5", err, sizeof(err)), 0);
    assert_true(p.until == 1700000000.5);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(dashq_param_set(&p, "model", big, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "model is longer than 256 bytes");
    assert_int_equal(dashq_param_set(&p, "tag", "app-1", err, sizeof(err)), 0);
    assert_string_equal(p.tag, "app-1");
    assert_int_equal(dashq_param_set(&p, "bogus", "1", err, sizeof(err)),
                     -ENOENT);

    memset(&p, 0, sizeof(p));
    p.since = 20, p.until = 10;
    assert_int_equal(dashq_params_check(DASHQ_TRACES, &p, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "since (20.000) is after until (10.000)"));
    memset(&p, 0, sizeof(p));
    assert_int_equal(dashq_params_check(DASHQ_TRACE, &p, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "request_id is required");
    p.start_ts = NAN;
    assert_int_equal(dashq_params_check(DASHQ_TRENDS, &p, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "start_ts must be a unix time"));
    memset(&p, 0, sizeof(p));
    assert_int_equal(
        dashq_params_check((enum dashq_kind)99, &p, err, sizeof(err)), -EINVAL);
    assert_string_equal(dashq_kind_name(DASHQ_TAGS_DAILY), "tags/daily");
    assert_string_equal(dashq_kind_name((enum dashq_kind)99), "?");

    q = open_q(NULL);
    p.start_ts = 5, p.end_ts = 1;
    assert_int_equal(dashq_run(q, DASHQ_TAGS, &p, on_answer, NULL), -EINVAL);
    assert_int_equal(dashq_run(q, DASHQ_TRACE, NULL, on_answer, NULL), -EINVAL);
    memset(&p, 0, sizeof(p));
    p.hours = -5; /* clamped, not refused */
    v = query(q, DASHQ_TRENDS, &p);
    assert_true(num(v, "hours") == 1);
    cJSON_Delete(v);
    p.days = 100000;
    v = query(q, DASHQ_MODELS, &p);
    assert_true(num(v, "days") == 365);
    cJSON_Delete(v);
    close_q(q);
}

static void
test_open_errors(void **state)
{
    char err[256] = "";
    char path[600];

    (void)state;
    snprintf(path, sizeof(path), "%s/missing/latency.db", tmpdir);
    assert_null(dashq_open(&loop, path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_null(dashq_open(&loop, "", NULL, err, sizeof(err)));
    assert_null(dashq_open(NULL, dbpath, NULL, err, sizeof(err)));
}

/* ------------------------------------------------------------------ */
/* Read-only connections */

static int
exec_rc(struct dashq *q, const char *sql, char **json)
{
    struct answer a = {0};

    assert_int_equal(dashq_exec_for_test(q, sql, on_answer, &a), 0);
    wait_for(&a.calls);
    if (json != NULL)
        *json = a.json;
    else
        free(a.json);
    return a.rc;
}

static void
test_read_only(void **state)
{
    struct dashq_opts o;
    struct dashq *q;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    char *json = NULL;

    (void)state;
    seed_fixed();
    memset(&o, 0, sizeof(o));
    o.max_running = 1; /* every statement on the same connection */
    q = open_q(&o);
    assert_int_equal(exec_rc(q,
                             "INSERT INTO request_traces (request_id, model,"
                             " original_model, node_id, status, timestamp)"
                             " VALUES ('x', 'm', 'm', 'n', 'completed', 1)",
                             &json),
                     -EROFS);
    assert_non_null(strstr(json, "\"error\":\"dashq: exec: "));
    free(json);
    assert_int_equal(exec_rc(q, "CREATE TABLE t (x)", NULL), -EROFS);
    /* query_only can be turned off; the connection stays read-only. */
    assert_int_equal(exec_rc(q,
                             "PRAGMA query_only=0; DELETE FROM"
                             " latency_observations",
                             NULL),
                     -EROFS);
    assert_int_equal(exec_rc(q, "SELECT COUNT(*) FROM request_traces", &json),
                     0);
    assert_string_equal(json, "{\"ok\":true}");
    free(json);
    close_q(q);

    db = x_open();
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT COUNT(*) FROM"
                                        " request_traces), (SELECT COUNT(*)"
                                        " FROM latency_observations)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 8);
    assert_int_equal(sqlite3_column_int(st, 1), 6);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ */
/* Concurrency, limits, close */

#define WRITER_TICKS 60
#define WRITER_ROWS  25

struct conc {
    struct dashq *q;
    uv_timer_t timer;
    int ticks;
    int written;
    int chain_runs[2];
    double last_total;
    double far_now;
    bool stop;
    int pending; /* chains still running */
};

static void conc_next(struct conc *c, int chain);

static void
conc_on_overview(int rc, struct buf *json, void *ud)
{
    struct conc *c = ud;
    cJSON *v;

    assert_int_equal(rc, 0);
    v = parse(json->data);
    /* One chain, one query at a time: later snapshots never see less. */
    assert_true(num(v, "total_requests") >= c->last_total);
    c->last_total = num(v, "total_requests");
    cJSON_Delete(v);
    c->chain_runs[0]++;
    conc_next(c, 0);
}

static void
conc_on_tags(int rc, struct buf *json, void *ud)
{
    struct conc *c = ud;
    const cJSON *d, *s;
    double a = 0, b = 0;
    int i;
    cJSON *v;

    assert_int_equal(rc, 0);
    v = parse(json->data);
    /* The window holds every row: data and summary, one snapshot. */
    d = arr(v, "data", -1);
    s = arr(v, "summary", -1);
    for (i = 0; i < cJSON_GetArraySize(d); i++)
        a += num(at(d, i), "request_count");
    for (i = 0; i < cJSON_GetArraySize(s); i++)
        b += num(at(s, i), "total_requests");
    assert_true(a == b);
    cJSON_Delete(v);
    c->chain_runs[1]++;
    conc_next(c, 1);
}

static void
conc_next(struct conc *c, int chain)
{
    struct dashq_params p;

    if (c->stop && c->chain_runs[chain] >= 10) {
        c->pending--;
        return;
    }
    memset(&p, 0, sizeof(p));
    p.now = c->far_now;
    p.days = 365;
    assert_int_equal(dashq_run(c->q, chain == 0 ? DASHQ_OVERVIEW : DASHQ_TAGS,
                               &p, chain == 0 ? conc_on_overview : conc_on_tags,
                               c),
                     0);
}

static void
conc_tick(uv_timer_t *t)
{
    struct conc *c = t->data;
    struct row r = {"w", "node-w", "mw",  "completed",     0,   100, 10, 1,
                    1,   0,        false, "[\"x\",\"y\"]", true};
    int i;

    for (i = 0; i < WRITER_ROWS; i++, c->written++)
        put(&r);
    if (++c->ticks == WRITER_TICKS) {
        c->stop = true;
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void
test_concurrent_with_writer(void **state)
{
    struct conc c;
    cJSON *v;
    struct dashq_params p;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.q = open_q(NULL);
    c.far_now = (double)clock_wall_ns() / 1e9 + DAY;
    c.pending = 2;
    uv_timer_init(&loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, conc_tick, 1, 1);
    conc_next(&c, 0);
    conc_next(&c, 1);
    while (c.pending > 0 || !c.stop)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(c.chain_runs[0] >= 10 && c.chain_runs[1] >= 10);
    flush();
    memset(&p, 0, sizeof(p));
    v = query(c.q, DASHQ_OVERVIEW, &p);
    assert_true(num(v, "total_requests") == c.written);
    cJSON_Delete(v);
    close_q(c.q);
}

static const char infinite_sql[] =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
    " SELECT COUNT(*) FROM c";

static void
test_query_timeout(void **state)
{
    struct dashq_opts o;
    struct dashq *q;
    char *json = NULL;
    cJSON *v;
    struct dashq_params p = at_now();

    (void)state;
    memset(&o, 0, sizeof(o));
    o.max_running = 1;
    o.query_timeout_ms = 50;
    q = open_q(&o);
    assert_int_equal(exec_rc(q, infinite_sql, &json), -ETIMEDOUT);
    assert_non_null(strstr(json, "took longer than 50 ms"));
    free(json);
    v = query(q, DASHQ_USAGE, &p); /* the connection is still good */
    arr(v, "data", 0);
    cJSON_Delete(v);
    close_q(q);
}

static void
test_limits(void **state)
{
    struct dashq_opts o;
    struct dashq_stats st;
    struct answer a[4] = {{0}};
    struct dashq *q;
    struct dashq_params p = at_now();
    int i;

    (void)state;
    seed_fixed();
    memset(&o, 0, sizeof(o));
    o.max_running = 1;
    o.max_waiting = 2;
    o.no_warmup = true;
    q = open_q(&o);
    assert_int_equal(dashq_exec_for_test(q, infinite_sql, on_answer, &a[0]), 0);
    assert_int_equal(dashq_run(q, DASHQ_USAGE, &p, on_answer, &a[1]), 0);
    assert_int_equal(dashq_run(q, DASHQ_TAGS, &p, on_answer, &a[2]), 0);
    assert_int_equal(dashq_run(q, DASHQ_TRACES, &p, on_answer, &a[3]), -EBUSY);
    dashq_stats(q, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.waiting, 2);
    assert_int_equal((int)st.refused, 1);
    assert_int_equal((int)st.accepted, 3);
    close_q(q); /* interrupts the endless query, cancels the others */
    for (i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].rc, -ECANCELED);
        assert_non_null(strstr(a[i].json, "closing"));
        free(a[i].json);
    }
    assert_int_equal(a[3].calls, 0);

    o.max_waiting = 0;
    o.max_json_bytes = 100;
    q = open_q(&o);
    a[0].calls = 0;
    a[0].json = NULL;
    assert_int_equal(dashq_run(q, DASHQ_TRACES, &p, on_answer, &a[0]), 0);
    wait_for(&a[0].calls);
    assert_int_equal(a[0].rc, -E2BIG);
    free(a[0].json);
    close_q(q);
}

struct selfclose {
    struct answer a;
    struct dashq *q;
};

static void
on_answer_then_close(int rc, struct buf *json, void *ud)
{
    struct selfclose *s = ud;

    on_answer(rc, json, &s->a);
    dashq_close(s->q, NULL, NULL); /* from inside a callback */
}

static void
test_close_with_work_in_flight(void **state)
{
    struct answer a[12] = {{0}};
    struct dashq_params p = at_now();
    struct selfclose self = {{0}, NULL};
    struct dashq *q;
    int closed = 0, i;

    (void)state;
    x_seed_rows(3000, NOW - 10 * DAY);
    q = open_q(NULL); /* the warm-up is in flight too */
    assert_int_equal(dashq_exec_for_test(q, infinite_sql, on_answer, &a[0]), 0);
    for (i = 1; i < 12; i++)
        assert_int_equal(dashq_run(q, (enum dashq_kind)(i % DASHQ_KIND_COUNT),
                                   &p, on_answer, &a[i]),
                         i % DASHQ_KIND_COUNT == DASHQ_TRACE ? -EINVAL : 0);
    dashq_close(q, on_closed, &closed);
    assert_int_equal(dashq_run(q, DASHQ_USAGE, &p, on_answer, &a[1]),
                     -ESHUTDOWN);
    dashq_close(q, on_closed, &closed); /* a second call does nothing */
    wait_for(&closed);
    assert_int_equal(closed, 1);
    for (i = 0; i < 12; i++) {
        if (i % DASHQ_KIND_COUNT == DASHQ_TRACE && i > 0) {
            assert_int_equal(a[i].calls, 0);
            continue;
        }
        assert_int_equal(a[i].calls, 1);
        assert_true(a[i].rc == 0 || a[i].rc == -ECANCELED);
        free(a[i].json);
    }
    assert_int_equal(a[0].rc, -ECANCELED);

    /* Closing from inside a callback. */
    self.q = open_q(NULL);
    assert_int_equal(
        dashq_run(self.q, DASHQ_OVERVIEW, &p, on_answer_then_close, &self), 0);
    while (self.a.calls == 0 || uv_loop_alive(&loop))
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(self.a.calls, 1);
    free(self.a.json);
}

static void
keepalive_tick(uv_timer_t *t)
{
    (void)t;
}

/* While the dashboard is in use, a timer refreshes the rollup on the
 * pool; it never keeps the loop alive and dashq_close() closes it. */
static void
test_background_refresh(void **state)
{
    struct dashq_opts o;
    struct dashq_stats st;
    struct dashq_params p = at_now();
    struct row r = {"late", "node-d", "m1", "completed", NOW - 50,      100, 10,
                    1,      1,        0,    false,       "[\"alpha\"]", true};
    uv_timer_t keep;
    uint64_t before;
    struct dashq *q;
    cJSON *v;

    (void)state;
    seed_fixed();
    memset(&o, 0, sizeof(o));
    o.no_warmup = true;
    o.refresh_ms = 1;
    q = open_q(&o);
    v = query(q, DASHQ_USAGE, &p); /* in use: the timer starts */
    cJSON_Delete(v);
    put(&r);
    flush();
    dashq_stats(q, &st);
    before = st.refreshes;
    uv_timer_init(&loop, &keep); /* ours is unref'd: keep the loop up */
    uv_timer_start(&keep, keepalive_tick, 1, 1);
    while (dashq_stats(q, &st), st.refreshes < before + 2)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&keep, NULL);
    v = query(q, DASHQ_USAGE, &p);
    assert_string_equal(str(at(arr(v, "data", 4), 0), "node_id"), "node-a");
    assert_string_equal(str(at(arr(v, "data", 4), 1), "node_id"), "node-d");
    cJSON_Delete(v);
    close_q(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traces_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_by_request_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overview_trends_models, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_matches_sql, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_with_writer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_query_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_work_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_background_refresh, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
