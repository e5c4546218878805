/*
 * test_traces.c - unit tests for the trace store (src/coordinator/traces.c)
 * against a real SQLite file in a temp dir, read back through a separate
 * sqlite3 connection (and through the sqlite3 CLI when it is installed):
 * schema and idempotent open, migration of an ollama-herd file, batching,
 * the bounded queue, the p75 cache, NULLs, JSON columns, retention, and
 * close flushing. Synchronisation is traces_flush()/traces_close() and the
 * pause hook, never a sleep.
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

#include "herd/buf.h"
#include "herd/clock.h"
#include "herd/json.h"
#include "herd/log.h"
#include "traces.h"

#define DAY_S 86400.0

static char tmpdir[256];
static char dbpath[512];

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
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/herd-test-traces-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    /* A directory that does not exist yet: traces_open creates it. */
    snprintf(dbpath, sizeof(dbpath), "%s/data/sub/latency.db", tmpdir);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    rm_rf(tmpdir);
    return 0;
}

static double
now_s(void)
{
    return (double)clock_wall_ns() / 1e9;
}

/* A completed request with every field set. */
static void
rec_init(struct trace_record *r, const char *id, const char *node,
         const char *model, double ts)
{
    memset(r, 0, sizeof(*r));
    r->request_id = id;
    r->model = model;
    r->original_model = model;
    r->node_id = node;
    r->score = 87.5;
    r->scores_breakdown = "{\"thermal\":50,\"memory_fit\":20,\"total\":87.5}";
    r->status = "completed";
    r->latency_ms = 2000;
    r->ttft_ms = 120.5;
    r->prompt_tokens = 10;
    r->completion_tokens = 100;
    r->retry_count = 0;
    r->fallback_used = false;
    r->excluded_nodes = "[]";
    r->client_ip = "192.168.1.42";
    r->original_format = "openai";
    r->error_message = NULL;
    r->timestamp = ts;
    r->tags = "[\"app-1\",\"prod\"]";
    r->attempts = "[{\"node\":\"n\",\"reason\":\"ok\",\"status\":200,"
                  "\"ms\":2000.0}]";
    r->queue_wait_ms = 1.5;
    r->events = "{\"routed\":0.1}";
    r->endpoint = "/v1/chat/completions";
    r->scored_candidates = "[{\"node\":\"n\",\"total\":87.5}]";
    r->observe = false;
    r->obs_latency_ms = TRACES_NULL_REAL;
}

static struct traces *
open_store(const struct traces_opts *opts)
{
    char err[256] = "";
    struct traces *t = traces_open(dbpath, opts, err, sizeof(err));

    if (t == NULL)
        fail_msg("traces_open: %s", err);
    return t;
}

static sqlite3 *
ro_open(void)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* The first column of the first row as an integer. */
static int64_t
q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double
q_real(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    double v;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Rows as "a|b|c\n", like the sqlite3 CLI's default list mode. */
static int
q_rows_cb(void *arg, int n, char **vals, char **names)
{
    struct buf *b = arg;
    int i;

    (void)names;
    for (i = 0; i < n; i++)
        if (buf_appendf(b, "%s%s", i > 0 ? "|" : "",
                        vals[i] != NULL ? vals[i] : "") != 0)
            return 1;
    return buf_appends(b, "\n") != 0;
}

static void
q_rows(sqlite3 *db, const char *sql, struct buf *out)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, q_rows_cb, out, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg != NULL ? msg : "?");
}

static bool
has_column(sqlite3 *db, const char *table, const char *col)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM pragma_table_info('%s') WHERE name='%s'",
             table, col);
    return q_int(db, sql) == 1;
}

static const char *const herd_trace_cols[] = {
    "id",
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
};
static const char *const our_trace_cols[] = {
    "attempts", "queue_wait_ms", "events", "endpoint", "scored_candidates",
};
static const char *const obs_cols[] = {
    "id",
    "node_id",
    "model_name",
    "latency_ms",
    "tokens_generated",
    "timestamp",
    "prompt_tokens",
    "completion_tokens",
};
static const char *const index_names[] = {
    "idx_traces_request_id",
    "idx_traces_timestamp",
    "idx_traces_model_timestamp",
    "idx_traces_node_model",
    "idx_traces_tags",
    "idx_latency_node_model",
    "idx_latency_timestamp",
    "idx_latency_model_timestamp",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
check_schema(sqlite3 *db)
{
    char sql[256];
    size_t i;

    for (i = 0; i < NELEM(herd_trace_cols); i++)
        assert_true(has_column(db, "request_traces", herd_trace_cols[i]));
    for (i = 0; i < NELEM(our_trace_cols); i++)
        assert_true(has_column(db, "request_traces", our_trace_cols[i]));
    for (i = 0; i < NELEM(obs_cols); i++)
        assert_true(has_column(db, "latency_observations", obs_cols[i]));
    for (i = 0; i < NELEM(index_names); i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM sqlite_master WHERE type='index'"
                 " AND name='%s'",
                 index_names[i]);
        assert_int_equal(q_int(db, sql), 1);
    }
}

static void
test_schema_and_idempotent_open(void **state)
{
    struct traces *t;
    struct trace_record r;
    struct stat sb;
    sqlite3 *db;
    struct buf out;
    int i;

    (void)state;
    for (i = 0; i < 3; i++) {
        t = open_store(NULL);
        rec_init(&r, "req-1", "node-a", "llama3:8b", 0);
        assert_int_equal(traces_submit(t, &r), 0);
        traces_close(t);
    }
    assert_int_equal(stat(dbpath, &sb), 0);

    db = ro_open();
    check_schema(db);
    /* Types as ollama-herd declares them. */
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM pragma_table_info('request_traces')"
                  " WHERE (name='score' AND type='REAL')"
                  " OR (name='timestamp' AND type='REAL' AND \"notnull\"=1)"
                  " OR (name='retry_count' AND type='INTEGER')"
                  " OR (name='request_id' AND type='TEXT' AND \"notnull\"=1)"),
        4);
    buf_init(&out, 1 << 16);
    q_rows(db, "PRAGMA journal_mode", &out);
    assert_string_equal(out.data, "wal\n");
    buf_cleanup(&out);
    /* Three opens, three rows, timestamps filled in at submit. */
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces"), 3);
    assert_true(q_real(db, "SELECT MIN(timestamp) FROM request_traces") >
                now_s() - 3600);
    sqlite3_close(db);
}

static void
test_open_error(void **state)
{
    char path[600], err[256] = "";
    FILE *f;

    (void)state;
    /* The parent "directory" is a regular file. */
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/file/latency.db", tmpdir);
    assert_null(traces_open(path, NULL, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(traces_open("", NULL, err, sizeof(err)));
    assert_true(strlen(err) > 0);
}

/* ollama-herd's first schema: no tags, no token columns. */
static void
make_old_file(void)
{
    char dir[600];
    sqlite3 *db = NULL;
    char *msg = NULL;
    static const char old_sql[] =
        "CREATE TABLE latency_observations (id INTEGER PRIMARY KEY"
        " AUTOINCREMENT, node_id TEXT NOT NULL, model_name TEXT NOT NULL,"
        " latency_ms REAL NOT NULL, tokens_generated INTEGER,"
        " timestamp REAL NOT NULL);"
        "CREATE INDEX idx_latency_node_model ON latency_observations(node_id,"
        " model_name);"
        "CREATE TABLE request_traces (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " request_id TEXT NOT NULL, model TEXT NOT NULL, original_model TEXT"
        " NOT NULL, node_id TEXT NOT NULL, score REAL, scores_breakdown TEXT,"
        " status TEXT NOT NULL, latency_ms REAL, time_to_first_token_ms REAL,"
        " prompt_tokens INTEGER, completion_tokens INTEGER, retry_count"
        " INTEGER DEFAULT 0, fallback_used INTEGER DEFAULT 0, excluded_nodes"
        " TEXT, client_ip TEXT, original_format TEXT, error_message TEXT,"
        " timestamp REAL NOT NULL);"
        "CREATE INDEX idx_traces_timestamp ON request_traces(timestamp);"
        "INSERT INTO request_traces (request_id, model, original_model,"
        " node_id, score, status, latency_ms, client_ip, timestamp) VALUES"
        " ('old-1', 'phi4:14b', 'phi4:14b', 'mac-studio', 71.0, 'completed',"
        " 1500, '', 1700000000.0);"
        "INSERT INTO latency_observations (node_id, model_name, latency_ms,"
        " timestamp) VALUES ('mac-studio', 'phi4:14b', 1500, 1700000000.0);";

    snprintf(dir, sizeof(dir), "%s/data", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof(dir), "%s/data/sub", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    if (sqlite3_exec(db, old_sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("old schema: %s", msg);
    sqlite3_close(db);
}

static void
test_migration(void **state)
{
    struct traces *t;
    struct trace_record r;
    sqlite3 *db;
    double p75 = 0;
    int i;

    (void)state;
    make_old_file();
    db = ro_open();
    assert_false(has_column(db, "request_traces", "tags"));
    assert_true(has_column(db, "request_traces", "client_ip"));
    assert_false(has_column(db, "latency_observations", "prompt_tokens"));
    sqlite3_close(db);

    for (i = 0; i < 2; i++) { /* the second open finds nothing to do */
        t = open_store(NULL);
        /* The old observation fed the p75 cache at open. */
        assert_int_equal(traces_p75_ms(t, "mac-studio", "phi4:14b", &p75), 0);
        /* second open: [1500, 2000] -> sorted[int(2 * 0.75)] */
        assert_true(p75 == (i == 0 ? 1500.0 : 2000.0));
        if (i == 0) {
            rec_init(&r, "new-1", "mac-studio", "phi4:14b", 0);
            r.observe = true;
            assert_int_equal(traces_submit(t, &r), 0);
        }
        traces_close(t);
    }

    db = ro_open();
    check_schema(db);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces"), 2);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id='old-1' AND tags IS NULL AND"
                               " attempts IS NULL AND score=71.0"),
                     1);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id='new-1' AND json_valid(tags)"
                               " AND client_ip='192.168.1.42'"),
                     1);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"
                               " WHERE prompt_tokens=10 AND"
                               " completion_tokens=100"),
                     1);
    sqlite3_close(db);
}

static void
test_batches(void **state)
{
    struct traces_opts o = {0};
    struct traces *t;
    struct trace_record r;
    struct traces_stats st;
    char id[64];
    sqlite3 *db;
    const int n = 2000;
    int i, ok = 0;

    (void)state;
    t = open_store(&o);
    /* Paused: all n records wait, then go in one transaction. */
    traces_pause_for_test(t, true);
    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "req-%d", i);
        rec_init(&r, id, "node-a", "llama3:8b", 1000.0 + i);
        assert_int_equal(traces_submit(t, &r), 0);
    }
    traces_stats(t, &st);
    assert_int_equal(st.queue_depth, n);
    assert_true(st.queue_bytes > 0);
    assert_int_equal(st.written, 0);
    traces_pause_for_test(t, false);
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(st.written, n);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(st.queue_bytes, 0);

    /* Running: whatever the timing, every accepted record is written and
     * there are never more transactions than records. */
    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "run-%d", i);
        rec_init(&r, id, "node-b", "llama3:8b", 5000.0 + i);
        ok += traces_submit(t, &r) == 0;
    }
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(ok, n);
    assert_int_equal(st.written, 2 * n);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.failed, 0);
    assert_true(st.batches >= 2 && st.batches <= (uint64_t)n + 1);
    traces_close(t);

    db = ro_open();
    assert_int_equal(q_int(db, "SELECT COUNT(DISTINCT request_id) FROM"
                               " request_traces"),
                     2 * n);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id='req-1999' AND timestamp=2999.0"),
                     1);
    sqlite3_close(db);
}

static void
test_queue_full_drops(void **state)
{
    struct traces_opts o = {0};
    struct traces *t;
    struct trace_record r;
    struct traces_stats st;
    char big[3000];
    sqlite3 *db;
    int i;

    (void)state;
    o.queue_capacity = 8;
    t = open_store(&o);
    traces_pause_for_test(t, true);
    for (i = 0; i < 8; i++) {
        rec_init(&r, "kept", "node-a", "m", 0);
        assert_int_equal(traces_submit(t, &r), 0);
    }
    for (i = 0; i < 3; i++) {
        rec_init(&r, "dropped", "node-a", "m", 0);
        assert_int_equal(traces_submit(t, &r), -EAGAIN);
    }
    traces_stats(t, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.submitted, 8);
    assert_int_equal(st.queue_depth, 8);
    /* flush would wait forever on a paused writer */
    assert_int_equal(traces_flush(t), -EDEADLK);
    traces_pause_for_test(t, false);
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(st.written, 8);
    /* room again */
    rec_init(&r, "later", "node-a", "m", 0);
    assert_int_equal(traces_submit(t, &r), 0);
    traces_close(t);

    /* The byte cap drops too. */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    o.queue_capacity = 0;
    o.queue_max_bytes = 4096;
    t = open_store(&o);
    traces_pause_for_test(t, true);
    rec_init(&r, "big-1", "node-a", "m", 0);
    r.error_message = big;
    assert_int_equal(traces_submit(t, &r), 0);
    r.request_id = "big-2";
    assert_int_equal(traces_submit(t, &r), -EAGAIN);
    traces_stats(t, &st);
    assert_int_equal(st.dropped, 1);
    assert_true(st.queue_bytes > sizeof(big) && st.queue_bytes <= 4096);
    traces_close(t);

    db = ro_open();
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM request_traces WHERE request_id"
                  " IN ('kept', 'later', 'big-1')"),
        10);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id IN ('dropped', 'big-2')"),
                     0);
    assert_int_equal(q_int(db, "SELECT length(error_message) FROM"
                               " request_traces WHERE request_id='big-1'"),
                     (int64_t)sizeof(big) - 1);
    sqlite3_close(db);
}

static void
observe(struct traces *t, const char *node, const char *model, double ms)
{
    struct trace_record r;

    rec_init(&r, "obs", node, model, 0);
    r.latency_ms = ms + 10; /* the observation has its own latency */
    r.obs_latency_ms = ms;
    r.observe = true;
    assert_int_equal(traces_submit(t, &r), 0);
}

static void
test_p75(void **state)
{
    struct traces *t;
    struct trace_record r;
    double a = 0, b = 0, c = 0, v = 0;
    sqlite3 *db;
    int i;

    (void)state;
    t = open_store(NULL);
    assert_int_equal(traces_p75_ms(t, "node-a", "m1", &v), -ENOENT);

    observe(t, "node-a", "m1", 500);
    assert_int_equal(traces_p75_ms(t, "node-a", "m1", &a), 0);
    assert_true(a == 500); /* one observation: itself */
    observe(t, "node-a", "m1", 600);
    observe(t, "node-a", "m1", 700);
    observe(t, "node-a", "m1", 800);
    assert_int_equal(traces_p75_ms(t, "node-a", "m1", &a), 0);
    assert_true(a >= 600 && a <= 800);
    assert_true(a == 800); /* sorted[int(4 * 0.75)] */

    /* Pairs are separate. */
    observe(t, "node-b", "m1", 100);
    assert_int_equal(traces_p75_ms(t, "node-b", "m1", &b), 0);
    assert_true(b == 100);
    assert_int_equal(traces_p75_ms(t, "node-a", "m2", &v), -ENOENT);

    /* Only the last 500 count: 100 huge ones, then 1..500 shuffled. */
    for (i = 0; i < 100; i++)
        observe(t, "node-c", "m1", 1e6);
    for (i = 0; i < 500; i++)
        observe(t, "node-c", "m1", (double)((i * 7) % 500 + 1));
    assert_int_equal(traces_p75_ms(t, "node-c", "m1", &c), 0);
    assert_true(c == 376); /* sorted 1..500, index 375 */

    /* No observation without observe, nor for a NULL latency. */
    rec_init(&r, "plain", "node-d", "m1", 0);
    assert_int_equal(traces_submit(t, &r), 0);
    r.observe = true;
    r.latency_ms = TRACES_NULL_REAL;
    assert_int_equal(traces_submit(t, &r), 0);
    assert_int_equal(traces_p75_ms(t, "node-d", "m1", &v), -ENOENT);
    traces_close(t);

    db = ro_open();
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"),
                     4 + 1 + 600);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"
                               " WHERE node_id='node-a' AND"
                               " model_name='m1' AND latency_ms=800"),
                     1);
    sqlite3_close(db);

    /* A new instance rebuilds the same cache from the file. */
    t = open_store(NULL);
    assert_int_equal(traces_p75_ms(t, "node-a", "m1", &v), 0);
    assert_true(v == a);
    assert_int_equal(traces_p75_ms(t, "node-b", "m1", &v), 0);
    assert_true(v == b);
    assert_int_equal(traces_p75_ms(t, "node-c", "m1", &v), 0);
    assert_true(v == c);
    /* and keeps updating it: 1e6 pushes out the oldest value */
    observe(t, "node-c", "m1", 1e6);
    assert_int_equal(traces_p75_ms(t, "node-c", "m1", &v), 0);
    assert_true(v == 377); /* the oldest (1) left the window */
    traces_close(t);
}

static void
test_nulls(void **state)
{
    struct traces *t;
    struct trace_record r;
    sqlite3 *db;

    (void)state;
    t = open_store(NULL);
    rec_init(&r, "nulls", "node-a", "m", 0);
    r.score = TRACES_NULL_REAL;
    r.ttft_ms = TRACES_NULL_REAL;
    r.prompt_tokens = TRACES_NULL_INT;
    r.completion_tokens = TRACES_NULL_INT;
    r.queue_wait_ms = TRACES_NULL_REAL;
    r.scores_breakdown = NULL;
    r.excluded_nodes = NULL;
    r.tags = NULL;
    r.client_ip = NULL;
    r.endpoint = NULL;
    r.observe = true;
    assert_int_equal(traces_submit(t, &r), 0);

    rec_init(&r, "neg-ttft", "node-a", "m", 0);
    r.ttft_ms = -1;
    r.status = NULL; /* NOT NULL column: stored as "" */
    assert_int_equal(traces_submit(t, &r), 0);

    rec_init(&r, "values", "node-a", "m", 0);
    r.ttft_ms = 12.5;
    r.prompt_tokens = 7;
    r.completion_tokens = 0; /* zero is a value, not NULL */
    r.retry_count = 2;
    r.fallback_used = true;
    assert_int_equal(traces_submit(t, &r), 0);
    traces_close(t);

    db = ro_open();
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                  " request_id='nulls' AND score IS NULL AND"
                  " time_to_first_token_ms IS NULL AND prompt_tokens IS NULL"
                  " AND completion_tokens IS NULL AND queue_wait_ms IS NULL"
                  " AND scores_breakdown IS NULL AND excluded_nodes IS NULL"
                  " AND tags IS NULL AND client_ip IS NULL AND endpoint IS"
                  " NULL AND latency_ms=2000 AND status='completed'"),
        1);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"
                               " WHERE prompt_tokens IS NULL AND"
                               " completion_tokens IS NULL AND"
                               " tokens_generated IS NULL"),
                     1);
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                  " request_id='neg-ttft' AND time_to_first_token_ms IS NULL"
                  " AND status=''"),
        1);
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                  " request_id='values' AND time_to_first_token_ms=12.5 AND"
                  " prompt_tokens=7 AND completion_tokens=0 AND"
                  " retry_count=2 AND fallback_used=1"),
        1);
    sqlite3_close(db);
}

static void
test_json_columns(void **state)
{
    static const char *const cols[] = {
        "scores_breakdown", "excluded_nodes", "tags",
        "attempts",         "events",         "scored_candidates"};
    struct trace_attempt at[2] = {
        {"node \"a\"", "connect", 0, 3.25},
        {"node-b", "http_503", 503, 12},
    };
    struct traces *t;
    struct trace_record r;
    struct buf attempts;
    struct buf out;
    char sql[256];
    sqlite3 *db;
    size_t i;

    (void)state;
    buf_init(&attempts, 4096);
    assert_int_equal(traces_format_attempts(&attempts, at, 2), 0);

    t = open_store(NULL);
    rec_init(&r, "json-ok", "node-b", "m", 0);
    r.attempts = attempts.data;
    r.excluded_nodes = "[\"node \\\"a\\\"\"]";
    assert_int_equal(traces_submit(t, &r), 0);
    rec_init(&r, "json-bad", "node-b", "m", 0);
    r.scores_breakdown = "{not json";
    r.tags = "";
    r.attempts = "[1,";
    assert_int_equal(traces_submit(t, &r), 0);
    traces_close(t);
    buf_cleanup(&attempts);

    db = ro_open();
    for (i = 0; i < NELEM(cols); i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT json_valid(%s) FROM request_traces WHERE"
                 " request_id='json-ok'",
                 cols[i]);
        assert_int_equal(q_int(db, sql), 1);
        /* No column anywhere holds invalid JSON. */
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM request_traces WHERE %s IS NOT NULL"
                 " AND NOT json_valid(%s)",
                 cols[i], cols[i]);
        assert_int_equal(q_int(db, sql), 0);
    }
    assert_int_equal(
        q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                  " request_id='json-bad' AND scores_breakdown IS NULL AND"
                  " tags IS NULL AND attempts IS NULL AND"
                  " json_valid(events)"),
        1);
    buf_init(&out, 1 << 16);
    q_rows(db,
           "SELECT json_extract(attempts, '$[0].node'),"
           " json_extract(attempts, '$[1].reason'),"
           " json_extract(attempts, '$[1].status'),"
           " json_extract(attempts, '$[0].ms'),"
           " json_extract(excluded_nodes, '$[0]'),"
           " json_extract(scores_breakdown, '$.total')"
           " FROM request_traces WHERE request_id='json-ok'",
           &out);
    assert_string_equal(out.data,
                        "node \"a\"|http_503|503|3.25|node \"a\"|87.5\n");
    buf_reset(&out);
    /* ollama-herd's tag analytics explode tags with json_each. */
    q_rows(db,
           "SELECT value, COUNT(*) FROM request_traces,"
           " json_each(request_traces.tags) GROUP BY value ORDER BY value",
           &out);
    assert_string_equal(out.data, "app-1|1\nprod|1\n");
    buf_cleanup(&out);
    sqlite3_close(db);
}

static void
test_format_attempts(void **state)
{
    struct trace_attempt at[2] = {
        {"n1", "timeout", 0, TRACES_NULL_REAL},
        {NULL, "ok", 200, 1.5},
    };
    struct buf b;
    cJSON *v = NULL;
    char err[128];

    (void)state;
    buf_init(&b, 4096);
    assert_int_equal(traces_format_attempts(&b, NULL, 0), 0);
    assert_string_equal(b.data, "[]");
    buf_reset(&b);
    assert_int_equal(traces_format_attempts(&b, at, 2), 0);
    assert_string_equal(b.data,
                        "[{\"node\":\"n1\",\"reason\":\"timeout\","
                        "\"status\":0,\"ms\":null},{\"node\":\"\",\"reason\":"
                        "\"ok\",\"status\":200,\"ms\":1.500}]");
    assert_int_equal(json_parse(b.data, b.len, 8, &v, err, sizeof(err)), 0);
    assert_true(cJSON_IsArray(v));
    cJSON_Delete(v);
    buf_cleanup(&b);

    /* All or nothing when the buffer is too small. */
    buf_init(&b, 20);
    assert_int_equal(buf_appends(&b, "x"), 0);
    assert_int_equal(traces_format_attempts(&b, at, 2), -E2BIG);
    assert_string_equal(b.data, "x");
    buf_cleanup(&b);
}

static void
test_retention(void **state)
{
    struct traces_opts o = {0};
    struct traces *t;
    struct trace_record r;
    struct traces_stats st;
    double now = now_s();
    char id[64];
    sqlite3 *db;
    int i;

    (void)state;
    t = open_store(NULL); /* retention 0: keep forever */
    for (i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "old-%d", i);
        rec_init(&r, id, "node-a", "m", now - 40 * DAY_S + i);
        r.observe = true;
        assert_int_equal(traces_submit(t, &r), 0);
    }
    for (i = 0; i < 2; i++) {
        snprintf(id, sizeof(id), "mid-%d", i);
        rec_init(&r, id, "node-a", "m", now - 10 * DAY_S);
        r.observe = true;
        assert_int_equal(traces_submit(t, &r), 0);
    }
    rec_init(&r, "new-0", "node-a", "m", now);
    assert_int_equal(traces_submit(t, &r), 0);
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(st.pruned, 0);
    traces_close(t);

    /* 30 days: the writer prunes once right after open. */
    o.retention_days = 30;
    t = open_store(&o);
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(st.pruned, 3 + 3);
    traces_close(t);

    db = ro_open();
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces"), 3);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id LIKE 'old-%'"),
                     0);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"), 2);
    sqlite3_close(db);

    /* traces_prune in small batches, interleaved with inserts. */
    o.retention_days = 0;
    o.prune_batch = 100;
    t = open_store(&o);
    traces_pause_for_test(t, true);
    for (i = 0; i < 1050; i++) {
        snprintf(id, sizeof(id), "bulk-%d", i);
        rec_init(&r, id, "node-b", "m", 1000.0 + i);
        assert_int_equal(traces_submit(t, &r), 0);
    }
    traces_pause_for_test(t, false);
    assert_int_equal(traces_flush(t), 0);
    assert_int_equal(traces_prune(t, now - 20 * DAY_S), 0);
    rec_init(&r, "during", "node-b", "m", 0);
    assert_int_equal(traces_submit(t, &r), 0);
    assert_int_equal(traces_flush(t), 0);
    traces_stats(t, &st);
    assert_int_equal(st.pruned, 1050);
    traces_close(t);

    db = ro_open();
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces"), 4);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces WHERE"
                               " request_id IN ('mid-0', 'mid-1', 'new-0',"
                               " 'during')"),
                     4);
    sqlite3_close(db);
}

static void
test_close_flushes(void **state)
{
    struct traces *t;
    struct trace_record r;
    char id[64];
    sqlite3 *db;
    int i;

    (void)state;
    t = open_store(NULL);
    traces_pause_for_test(t, true);
    for (i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "c-%d", i);
        rec_init(&r, id, "node-a", "m", 0);
        r.observe = true;
        assert_int_equal(traces_submit(t, &r), 0);
    }
    traces_close(t); /* unpauses, drains, joins */
    db = ro_open();
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM request_traces"), 500);
    assert_int_equal(q_int(db, "SELECT COUNT(*) FROM latency_observations"),
                     500);
    sqlite3_close(db);
    traces_close(NULL);
}

/* The two sqlite3 command lines of the seed, verbatim. */
static const char seed_q1[] =
    "sqlite3 ~/.fleet-manager/latency.db \"SELECT request_id, model, node_id,"
    " score, scores_breakdown FROM request_traces ORDER BY timestamp DESC"
    " LIMIT 1\"";
static const char seed_q2[] =
    "sqlite3 ~/.fleet-manager/latency.db \"SELECT node_id, model, COUNT(*) as"
    " n, ROUND(AVG(latency_ms)/1000.0, 1) as avg_s,"
    " ROUND(AVG(COALESCE(completion_tokens,0) * 1000.0 /"
    " NULLIF(latency_ms,0)), 1) as tok_per_s FROM request_traces WHERE"
    " status='completed' GROUP BY node_id, model HAVING n > 10 ORDER BY"
    " tok_per_s DESC\"";

static const char seed_out1[] =
    "req-latest|llama3:8b|node-a|87.5|"
    "{\"thermal\":50,\"memory_fit\":20,\"total\":87.5}\n";
static const char seed_out2[] = "node-a|llama3:8b|12|2.0|50.0\n"
                                "node-b|llama3:8b|12|4.0|25.0\n";

/* The SQL between the double quotes of a seed command line. */
static void
seed_sql(const char *cmd, char *out, size_t n)
{
    const char *a = strchr(cmd, '"');
    const char *b = strrchr(cmd, '"');

    assert_true(a != NULL && b > a && (size_t)(b - a) < n);
    memcpy(out, a + 1, (size_t)(b - a - 1));
    out[b - a - 1] = '\0';
}

static void
run_cli(const char *cmd, const char *expect)
{
    char line[1024];
    struct buf out;
    FILE *p;

    buf_init(&out, 1 << 16);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p) != NULL)
        assert_int_equal(buf_appends(&out, line), 0);
    assert_int_equal(pclose(p), 0);
    assert_string_equal(out.data != NULL ? out.data : "", expect);
    buf_cleanup(&out);
}

static void
test_seed_queries(void **state)
{
    struct traces *t;
    struct trace_record r;
    char err[256] = "", sql[1024], *home = NULL;
    const char *old_home = getenv("HOME");
    double now = now_s();
    struct buf out;
    sqlite3 *db;
    char id[64];
    int i;

    (void)state;
    if (old_home != NULL)
        home = strdup(old_home);
    /* ~/.fleet-manager/latency.db under a HOME of our own. */
    assert_int_equal(setenv("HOME", tmpdir, 1), 0);
    t = traces_open("~/.fleet-manager/latency.db", NULL, err, sizeof(err));
    if (t == NULL)
        fail_msg("traces_open: %s", err);
    for (i = 0; i < 12; i++) {
        snprintf(id, sizeof(id), "a-%d", i);
        rec_init(&r, id, "node-a", "llama3:8b", now - 100 + i);
        r.latency_ms = 2000; /* 100 tokens in 2 s: 50 tok/s */
        assert_int_equal(traces_submit(t, &r), 0);
        snprintf(id, sizeof(id), "b-%d", i);
        rec_init(&r, id, "node-b", "llama3:8b", now - 100 + i);
        r.latency_ms = 4000; /* 25 tok/s */
        assert_int_equal(traces_submit(t, &r), 0);
        /* failures and small groups stay out of the tok/s query */
        rec_init(&r, "f", "node-a", "llama3:8b", now - 200);
        r.status = "failed";
        r.latency_ms = 10;
        assert_int_equal(traces_submit(t, &r), 0);
    }
    for (i = 0; i < 5; i++) {
        rec_init(&r, "c", "node-c", "llama3:8b", now - 300);
        assert_int_equal(traces_submit(t, &r), 0);
    }
    rec_init(&r, "req-latest", "node-a", "llama3:8b", now);
    r.status = "retried"; /* newest row, not in the tok/s query */
    assert_int_equal(traces_submit(t, &r), 0);
    traces_close(t);

    snprintf(dbpath, sizeof(dbpath), "%s/.fleet-manager/latency.db", tmpdir);
    db = ro_open();
    buf_init(&out, 1 << 16);
    seed_sql(seed_q1, sql, sizeof(sql));
    q_rows(db, sql, &out);
    assert_string_equal(out.data, seed_out1);
    buf_reset(&out);
    seed_sql(seed_q2, sql, sizeof(sql));
    q_rows(db, sql, &out);
    assert_string_equal(out.data, seed_out2);
    buf_cleanup(&out);
    sqlite3_close(db);

    if (system("command -v sqlite3 >/dev/null 2>&1") == 0) {
        run_cli(seed_q1, seed_out1);
        run_cli(seed_q2, seed_out2);
    } else {
        print_message("sqlite3 CLI not found: seed queries ran via the C "
                      "API only\n");
    }
    if (home != NULL)
        setenv("HOME", home, 1);
    else
        unsetenv("HOME");
    free(home);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_and_idempotent_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p75, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_columns, setup, teardown),
        cmocka_unit_test(test_format_attempts),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_queries, setup, teardown),
    };

    log_init("test_traces", LL_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
