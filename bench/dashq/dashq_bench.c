/*
 * dashq_bench.c - times every dashboard query (src/coordinator/dashq.c) on
 * a large trace store. Not a test: it prints figures.
 *
 * It writes the fixture through traces.c (traces_open, traces_submit,
 * traces_flush): --rows request_traces rows (default 1,000,000) spread
 * over --days days (default 30) ending now, with ollama-herd's status mix,
 * retried attempts, cold loads, load timeouts, tags and a latency
 * observation for every completed request, and JSON columns the size a
 * real request produces (scores_breakdown, six scored candidates,
 * attempts, events). Then it runs each query --runs times (default 5) on
 * one dashq and prints the median, the fastest and the slowest, and the
 * size of the answer. Build and run it with bench/dashq/run.sh.
 *
 *   run.sh [--db PATH] [--rows N] [--days N] [--runs N] [--reuse]
 *          [--mmap BYTES]
 *
 * --reuse keeps an existing fixture at PATH (its rows are not checked).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "herd/buf.h"
#include "herd/clock.h"
#include "herd/log.h"
#include "herd/parse.h"
#include "dashq.h"
#include "traces.h"

#define BENCH_DAY      86400.0
#define BENCH_HOUR     3600.0
#define BENCH_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define BENCH_MAXRUNS  101

struct bench_cfg {
    char db[1024];
    int64_t rows;
    int days;
    int runs;
    bool reuse;
    int64_t mmap;
};

static uv_loop_t loop;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
bench_rand(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static double
bench_now(void)
{
    return (double)clock_wall_ns() / 1e9;
}

static double
bench_ms(uint64_t t0)
{
    return (double)(clock_mono_ns() - t0) / 1e6;
}

/* ------------------------------------------------------------------ */
/* The fixture */

static const char *const nodes[] = {
    "mac-studio-1", "mac-studio-2", "mac-mini-1",  "mac-mini-2",
    "rtx4090-1",    "rtx4090-2",    "linux-a6000", "macbook-m3",
};
static const char *const models[] = {
    "llama3.1:8b",     "llama3.1:70b",  "qwen2.5:7b",       "qwen2.5:32b",
    "qwen3:30b-a3b",   "gemma3:27b",    "mistral-nemo:12b", "phi4:14b",
    "deepseek-r1:32b", "codestral:22b", "llava:13b",        "nomic-embed-text",
};
static const char *const tagsets[] = {
    NULL,
    "[\"app-1\"]",
    "[\"app-2\",\"prod\"]",
    "[\"app-3\",\"prod\"]",
    "[\"app-4\",\"staging\"]",
    "[\"app-5\",\"prod\",\"batch\"]",
    "[\"app-6\"]",
    "[\"app-7\",\"dev\"]",
    "[\"app-8\",\"prod\"]",
    "[\"app-9\",\"batch\"]",
    "[\"app-10\",\"prod\"]",
    "[\"app-11\",\"staging\"]",
    "[\"app-12\",\"dev\",\"eval\"]",
    "[\"app-13\"]",
    "[\"app-14\",\"prod\"]",
    "[\"app-15\",\"batch\"]",
};

static void
bench_candidates(struct buf *b, int winner)
{
    int i;

    buf_reset(b);
    if (buf_appends(b, "[") != 0)
        return;
    for (i = 0; i < 6; i++)
        if (buf_appendf(b,
                        "%s{\"node\":\"%s\",\"total\":%.2f,\"thermal\":50,"
                        "\"memory_fit\":%d,\"queue_depth\":%d,"
                        "\"wait_time\":%d,\"role_affinity\":3,"
                        "\"availability\":2,\"context_fit\":1}",
                        i > 0 ? "," : "", nodes[(winner + i) % 8],
                        90.0 - i * 4.5, 20 - i, 10 - i, 5 + i) != 0)
            return;
    if (buf_appends(b, "]") != 0)
        buf_reset(b);
}

struct bench_gen {
    struct traces *t;
    struct buf cand, att, ev;
    char rid[64];
    int64_t written, obs;
    uint64_t seq;
};

static void
bench_submit(struct bench_gen *g, const struct trace_record *r)
{
    int rc;

    while ((rc = traces_submit(g->t, r)) == -EAGAIN)
        traces_flush(g->t);
    if (rc != 0) {
        fprintf(stderr, "traces_submit: %s\n", strerror(-rc));
        exit(1);
    }
    g->written++;
    g->obs += r->observe;
}

/* One request: maybe a retried attempt, then its outcome. */
static void
bench_request(struct bench_gen *g, double ts)
{
    struct trace_record r;
    int node = (int)bench_rand(8), pick = (int)bench_rand(1000);
    bool cold = bench_rand(1000) < 3, slow = bench_rand(100) < 2;

    memset(&r, 0, sizeof(r));
    snprintf(g->rid, sizeof(g->rid), "req-%016" PRIx64, g->seq++);
    r.request_id = g->rid;
    r.model = r.original_model = models[bench_rand(12)];
    r.node_id = nodes[node];
    r.score = 70 + bench_rand(300) / 10.0;
    r.scores_breakdown = "{\"thermal\":50,\"memory_fit\":20,\"queue_depth\":"
                         "10,\"wait_time\":5,\"role_affinity\":3,"
                         "\"availability\":2,\"context_fit\":1,\"total\":91}";
    r.client_ip = "192.168.1.42";
    r.original_format = bench_rand(2) ? "openai" : "ollama";
    r.endpoint = "/v1/chat/completions";
    r.tags = tagsets[bench_rand(BENCH_NELEM(tagsets))];
    if (bench_rand(2000) == 0)
        r.tags = "[\"audit\"]"; /* a rare tag */
    r.queue_wait_ms = bench_rand(50) / 10.0;
    r.excluded_nodes = "[]";
    bench_candidates(&g->cand, node);
    r.scored_candidates = g->cand.data;
    r.attempts = "[{\"node\":\"rtx4090-1\",\"reason\":\"ok\",\"status\":200,"
                 "\"ms\":1834.2}]";
    r.events = "{\"parsed\":0.01,\"routed\":0.05,\"slot\":0.06,"
               "\"connect\":0.52,\"first_byte\":121.3,\"done\":1834.2,"
               "\"bytes\":18342,\"chunks\":412}";
    r.timestamp = ts;
    r.ttft_ms = TRACES_NULL_REAL;
    r.obs_latency_ms = TRACES_NULL_REAL;
    r.prompt_tokens = r.completion_tokens = TRACES_NULL_INT;
    if (pick < 25) { /* retried, then served elsewhere */
        r.status = "retried";
        r.latency_ms = slow ? 125000 : 300 + bench_rand(3000);
        r.error_message = "connect: connection refused";
        bench_submit(g, &r);
        r.node_id = nodes[(node + 1) % 8];
        r.retry_count = 1;
        r.excluded_nodes = "[\"mac-mini-1\"]";
        r.error_message = NULL;
        r.timestamp = ts + 0.5;
        pick = 999;
    }
    if (pick < 45) {
        r.status = "failed";
        r.latency_ms = slow ? 130000 : 200 + bench_rand(5000);
        r.error_message = "upstream 500";
    } else if (pick < 60) {
        r.status = "client_disconnected";
        r.latency_ms = 1000 + bench_rand(60000);
        r.ttft_ms = 100 + bench_rand(2000);
    } else if (pick < 70) {
        r.status = "incomplete";
        r.latency_ms = 1000 + bench_rand(60000);
        r.ttft_ms = 100 + bench_rand(2000);
    } else {
        r.status = "completed";
        r.ttft_ms = cold ? 41000 + bench_rand(20000) : 80 + bench_rand(2000);
        r.latency_ms = r.ttft_ms + 400 + bench_rand(30000);
        r.prompt_tokens = 20 + bench_rand(8000);
        r.completion_tokens = 10 + bench_rand(2000);
        r.observe = true;
    }
    bench_submit(g, &r);
}

static int
bench_generate(const struct bench_cfg *cfg, double end)
{
    struct traces_opts o = {.queue_capacity = 200000};
    struct bench_gen g;
    char err[256] = "", path[1100];
    double span = cfg->days * BENCH_DAY, ts;
    uint64_t t0 = clock_mono_ns();
    int64_t i;

    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", cfg->db,
                 i == 0   ? ""
                 : i == 1 ? "-wal"
                          : "-shm");
        unlink(path);
    }
    memset(&g, 0, sizeof(g));
    g.t = traces_open(cfg->db, &o, err, sizeof(err));
    if (g.t == NULL) {
        fprintf(stderr, "traces_open: %s\n", err);
        return -1;
    }
    buf_init(&g.cand, 1 << 16);
    /* Requests evenly over the span; a retried request writes two rows,
     * so stop at the row count. */
    for (i = 0; g.written < cfg->rows; i++) {
        ts = end - span + span * (double)i / (double)cfg->rows;
        bench_request(&g, ts);
    }
    traces_flush(g.t);
    traces_close(g.t);
    buf_cleanup(&g.cand);
    printf("fixture: %" PRId64 " request_traces rows, %" PRId64
           " latency_observations rows over %d days, written through"
           " traces.c in %.1f s (%.0f rows/s)\n",
           g.written, g.obs, cfg->days, bench_ms(t0) / 1e3,
           (double)g.written / (bench_ms(t0) / 1e3));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Timing */

struct bench_wait {
    int done;
    int rc;
    size_t bytes;
};

static void
bench_on_answer(int rc, struct buf *json, void *ud)
{
    struct bench_wait *w = ud;

    w->done = 1;
    w->rc = rc;
    w->bytes = json->len;
    if (rc != 0)
        fprintf(stderr, "error: %s\n", json->data);
}

static double
bench_once(struct dashq *q, enum dashq_kind k, const struct dashq_params *p,
           size_t *bytes)
{
    struct bench_wait w = {0};
    uint64_t t0 = clock_mono_ns();

    if (dashq_run(q, k, p, bench_on_answer, &w) != 0) {
        fprintf(stderr, "dashq_run refused %s\n", dashq_kind_name(k));
        exit(1);
    }
    while (!w.done)
        uv_run(&loop, UV_RUN_ONCE);
    if (w.rc != 0)
        exit(1);
    *bytes = w.bytes;
    return bench_ms(t0);
}

static int
bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

struct bench_case {
    const char *label;
    enum dashq_kind kind;
    struct dashq_params p;
};

static void
bench_case_run(struct dashq *q, const struct bench_case *c, int runs)
{
    double t[BENCH_MAXRUNS];
    size_t bytes = 0;
    int i;

    for (i = 0; i < runs; i++)
        t[i] = bench_once(q, c->kind, &c->p, &bytes);
    qsort(t, (size_t)runs, sizeof(t[0]), bench_cmp);
    printf("| %-38s | %9.1f | %8.1f | %8.1f | %9zu |%s\n", c->label,
           t[runs / 2], t[0], t[runs - 1], bytes,
           t[runs / 2] >= 200.0 ? " OVER BUDGET" : "");
}

static void
bench_cold(const struct bench_cfg *cfg)
{
    struct dashq_opts o = {.no_warmup = true, .mmap_bytes = cfg->mmap};
    struct dashq_params p = {0};
    char err[256] = "";
    struct dashq *q = dashq_open(&loop, cfg->db, &o, err, sizeof(err));
    size_t bytes;

    if (q == NULL) {
        fprintf(stderr, "dashq_open: %s\n", err);
        exit(1);
    }
    printf("cold start (the rollup is built by the first query of each"
           " table; dashq_open's warm-up does it ahead of time):\n");
    printf("  usage    (builds request_traces' rollup):       %8.1f ms\n",
           bench_once(q, DASHQ_USAGE, &p, &bytes));
    printf("  overview (builds latency_observations' rollup): %8.1f ms\n",
           bench_once(q, DASHQ_OVERVIEW, &p, &bytes));
    dashq_close(q, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static void
bench_cases(struct bench_case *cs, size_t *n, double end)
{
    size_t i = 0;
#define BC(l, k) (cs[i].label = (l), cs[i].kind = (k), &cs[i++].p)
    BC("traces (limit 50)", DASHQ_TRACES);
    BC("traces limit=1000", DASHQ_TRACES)->limit = 1000;
    BC("traces model=qwen2.5:32b", DASHQ_TRACES)->model = "qwen2.5:32b";
    BC("traces node_id=rtx4090-1", DASHQ_TRACES)->node_id = "rtx4090-1";
    BC("traces node_id=<absent>", DASHQ_TRACES)->node_id = "nope";
    BC("traces status=failed", DASHQ_TRACES)->status = "failed";
    BC("traces status=incomplete", DASHQ_TRACES)->status = "incomplete";
    BC("traces status=<absent>", DASHQ_TRACES)->status = "nope";
    BC("traces tag=prod", DASHQ_TRACES)->tag = "prod";
    BC("traces tag=audit (rare)", DASHQ_TRACES)->tag = "audit";
    BC("traces tag=<absent>", DASHQ_TRACES)->tag = "nope";
    {
        struct dashq_params *p = BC("traces node+status=failed", DASHQ_TRACES);

        p->node_id = "mac-mini-2";
        p->status = "failed";
    }
    {
        struct dashq_params *p =
            BC("traces since/until (1 h, 10 d ago)", DASHQ_TRACES);

        p->since = end - 10 * BENCH_DAY;
        p->until = p->since + BENCH_HOUR;
    }
    BC("trace request_id", DASHQ_TRACE)->request_id = "req-0000000000000010";
    BC("usage (days 7)", DASHQ_USAGE);
    BC("usage days=30", DASHQ_USAGE)->days = 30;
    BC("usage days=365", DASHQ_USAGE)->days = 365;
    BC("overview", DASHQ_OVERVIEW);
    BC("trends (hours 72)", DASHQ_TRENDS);
    BC("trends hours=720", DASHQ_TRENDS)->hours = 720;
    BC("trends hours=8760", DASHQ_TRENDS)->hours = 8760;
    {
        struct dashq_params *p =
            BC("trends start_ts/end_ts (5 d, partial)", DASHQ_TRENDS);

        p->start_ts = end - 12.3 * BENCH_DAY;
        p->end_ts = end - 7.1 * BENCH_DAY;
    }
    BC("models (days 7)", DASHQ_MODELS);
    BC("models days=30", DASHQ_MODELS)->days = 30;
    BC("tags (days 7)", DASHQ_TAGS);
    BC("tags days=30", DASHQ_TAGS)->days = 30;
    BC("tags/daily (days 7)", DASHQ_TAGS_DAILY);
    BC("tags/daily days=30", DASHQ_TAGS_DAILY)->days = 30;
    BC("health_stats", DASHQ_HEALTH_STATS);
#undef BC
    *n = i;
}

static void
bench_header(void)
{
    printf("| %-38s | %9s | %8s | %8s | %9s |\n", "query", "median ms",
           "min ms", "max ms", "bytes");
    printf("|%.40s|%.11s|%.10s|%.10s|%.11s|\n",
           "----------------------------------------", "-----------",
           "----------", "----------", "-----------");
}

static void
bench_keepalive(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until dashq's timer has done two more refreshes, so that
 * one of them started after the rows were committed. */
static void
bench_wait_refresh(struct dashq *q)
{
    struct dashq_stats st;
    uv_timer_t keep;
    uint64_t want;

    dashq_stats(q, &st);
    want = st.refreshes + 2;
    uv_timer_init(&loop, &keep); /* dashq's timer does not keep the loop */
    uv_timer_start(&keep, bench_keepalive, 10, 10);
    while (dashq_stats(q, &st), st.refreshes < want)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void
bench_append(struct bench_gen *g, int n)
{
    double now = bench_now();
    int j;

    for (j = 0; j < n; j++)
        bench_request(g, now - 60 + 60.0 * (double)j / n);
    traces_flush(g->t);
}

/* The cost of bringing the rollup up to date: rows appended, then one
 * usage query at once, or after the background refresh. The rows are
 * stamped now, so a later --reuse run sees a busier last day. */
static void
bench_incremental(const struct bench_cfg *cfg, struct dashq *q)
{
    struct traces_opts o = {.queue_capacity = 200000};
    struct dashq_params p = {0};
    static const int counts[] = {1000, 10000, 50000};
    struct bench_gen g;
    char err[256] = "";
    double now_ms, later_ms;
    size_t bytes, i;

    memset(&g, 0, sizeof(g));
    g.seq = 1ULL << 40;
    g.t = traces_open(cfg->db, &o, err, sizeof(err));
    if (g.t == NULL) {
        fprintf(stderr, "traces_open: %s\n", err);
        exit(1);
    }
    buf_init(&g.cand, 1 << 16);
    printf("\nrows appended since the previous query, then one usage query"
           " (days 7):\n\n| new rows | at once, ms | after the background"
           " refresh, ms |\n|---|---|---|\n");
    for (i = 0; i < BENCH_NELEM(counts); i++) {
        bench_append(&g, counts[i]);
        now_ms = bench_once(q, DASHQ_USAGE, &p, &bytes);
        bench_append(&g, counts[i]);
        bench_wait_refresh(q);
        later_ms = bench_once(q, DASHQ_USAGE, &p, &bytes);
        printf("| %6d | %8.1f | %8.1f |\n", counts[i], now_ms, later_ms);
    }
    traces_close(g.t);
    buf_cleanup(&g.cand);
}

/* traces_open() brings an older fixture's schema and indexes up to date. */
static int
bench_migrate(const struct bench_cfg *cfg)
{
    char err[256] = "";
    uint64_t t0 = clock_mono_ns();
    struct traces *t = traces_open(cfg->db, NULL, err, sizeof(err));

    if (t == NULL) {
        fprintf(stderr, "traces_open: %s\n", err);
        return -1;
    }
    traces_close(t);
    printf("fixture reused; traces_open() migrated it in %.1f s\n",
           bench_ms(t0) / 1e3);
    return 0;
}

static void
bench_usage(void)
{
    fprintf(stderr, "usage: dashq-bench [--db PATH] [--rows N] [--days N]"
                    " [--runs N] [--reuse] [--mmap BYTES]\n");
    exit(2);
}

static int64_t
bench_num(const char *s, int64_t min, int64_t max)
{
    int64_t v;

    if (s == NULL || parse_i64(s, min, max, &v, NULL) != 0)
        bench_usage();
    return v;
}

static void
bench_args(int argc, char **argv, struct bench_cfg *cfg)
{
    int i;

    snprintf(cfg->db, sizeof(cfg->db), "/tmp/herd-dashq-bench/latency.db");
    cfg->rows = 1000000;
    cfg->days = 30;
    cfg->runs = 5;
    for (i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--db") == 0 && v != NULL)
            snprintf(cfg->db, sizeof(cfg->db), "%s", argv[++i]);
        else if (strcmp(argv[i], "--rows") == 0)
            cfg->rows = bench_num(v, 1, INT64_MAX), i++;
        else if (strcmp(argv[i], "--days") == 0)
            cfg->days = (int)bench_num(v, 1, 3650), i++;
        else if (strcmp(argv[i], "--runs") == 0)
            cfg->runs = (int)bench_num(v, 1, BENCH_MAXRUNS), i++;
        else if (strcmp(argv[i], "--mmap") == 0)
            cfg->mmap = bench_num(v, -1, INT64_MAX), i++;
        else if (strcmp(argv[i], "--reuse") == 0)
            cfg->reuse = true;
        else
            bench_usage();
    }
}

int
main(int argc, char **argv)
{
    struct bench_cfg cfg = {0};
    struct bench_case cs[40] = {{0}};
    struct dashq_opts o = {0};
    char err[256] = "";
    struct dashq *q;
    size_t n, i, bytes;
    double end = bench_now();
    uint64_t t0;

    bench_args(argc, argv, &cfg);
    log_set_level(LL_WARN);
    uv_loop_init(&loop);
    if ((!cfg.reuse || access(cfg.db, R_OK) != 0) &&
        bench_generate(&cfg, end) != 0)
        return 1;
    if (cfg.reuse && bench_migrate(&cfg) != 0)
        return 1;
    bench_cold(&cfg);
    o.mmap_bytes = cfg.mmap;
    t0 = clock_mono_ns();
    q = dashq_open(&loop, cfg.db, &o, err, sizeof(err));
    if (q == NULL) {
        fprintf(stderr, "dashq_open: %s\n", err);
        return 1;
    }
    /* The first rollup queries wait for the warm-up. */
    bench_once(q, DASHQ_USAGE, &cs[0].p, &bytes);
    bench_once(q, DASHQ_OVERVIEW, &cs[0].p, &bytes);
    printf("  warm-up: dashq_open() to both rollups built: %.1f ms\n",
           bench_ms(t0));
    bench_cases(cs, &n, end);
    printf("\n%d runs of each query, one after the other, on one dashq"
           " (2 read-only connections, mmap %s); budget 200 ms:\n\n",
           cfg.runs, cfg.mmap < 0 ? "off" : "256 MiB or --mmap");
    bench_header();
    for (i = 0; i < n; i++)
        bench_case_run(q, &cs[i], cfg.runs);
    bench_incremental(&cfg, q);
    dashq_close(q, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
