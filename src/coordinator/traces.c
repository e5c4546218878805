/*
 * traces.c - the trace store (the only module that includes <sqlite3.h>).
 *
 * Who owns what:
 *  - The loop thread (the caller of every public function) owns the p75
 *    cache (pairs, buckets, scratch) and reads/writes it without a lock.
 *    The writer fills it once, inside traces_open(), before it publishes
 *    "ready" under mu; traces_open() returns only after reading "ready"
 *    under mu, so that hand-over is ordered by the mutex.
 *  - The writer thread owns the sqlite3 connection and its prepared
 *    statements from open to close; nothing else touches them.
 *  - mu guards the queue (head/tail/depth/bytes), the sequence numbers,
 *    the flags (ready, paused, stopping), the prune request and the
 *    counters. It is held for O(1) work only: an append, a detach of the
 *    whole list, counter updates. No SQLite call runs under it, so the
 *    loop never waits for disk. `wake` (CLOCK_MONOTONIC) wakes the
 *    writer; `done` wakes traces_open() and traces_flush().
 *  - Immutable after open: path, opts.
 */
#include "traces.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "herd/buf.h"
#include "herd/clock.h"
#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/log.h"

/* The writer waits up to this long for more rows when it wakes to only a
 * few: batches of many rows per transaction cost far fewer page writes. */
#define TRACES_LINGER_NS   (10 * 1000000LL)
#define TRACES_LINGER_ROWS 256

#define TRACES_PATH_MAX      4096
#define TRACES_ERR_MAX       256
#define TRACES_P75_MAX_PAIRS 65536 /* node:model pairs tracked */
#define TRACES_P75_MIN_CAP   8
#define TRACES_SQL_MAX       (64u << 10)
#define TRACES_DAY_S         86400.0

#define TRACES_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* One queued copy of a record; its strings live in data[]. */
struct traces_item {
    struct traces_item *next;
    size_t bytes;
    struct trace_record rec; /* string fields point into data */
    char data[];
};

/* The last TRACES_P75_WINDOW latencies of one node:model, a ring. */
struct traces_pair {
    struct traces_pair *next; /* owned; hash chain */
    uint64_t hash;
    char *node;  /* owned */
    char *model; /* owned */
    double *v;   /* owned; cap entries */
    uint32_t cap, n, head;
    bool dirty; /* p75 needs recomputing */
    double p75;
};

struct traces {
    /* Immutable after traces_open(). */
    char path[TRACES_PATH_MAX];
    struct traces_opts opts;
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* writer waits on it (CLOCK_MONOTONIC) */
    pthread_cond_t done; /* traces_open()/traces_flush() wait on it */
    /* Guarded by mu. */
    struct traces_item *head, *tail; /* owned */
    size_t depth, bytes;
    uint64_t seq_submitted, seq_done;
    bool ready, paused, stopping, prune_pending;
    uint64_t prune_gen;
    double prune_cutoff;
    int open_rc;
    char open_err[TRACES_ERR_MAX];
    struct traces_stats st;

    /* Writer thread only. */
    struct sqlite3 *db;
    struct sqlite3_stmt *ins_trace, *ins_obs, *del_trace, *del_obs;
    char last_err[TRACES_ERR_MAX];

    /* Loop thread only (the writer before "ready"). */
    struct traces_pair **buckets; /* owned */
    size_t nbuckets, npairs;
    double scratch[TRACES_P75_WINDOW];
};

/* ------------------------------------------------------------------ */
/* Schema */

struct traces_col {
    const char *name;
    const char *create; /* type and constraints in CREATE TABLE */
    const char *alter;  /* in ALTER TABLE ADD COLUMN (NOT NULL needs a
                           default there) */
};

/* ollama-herd's columns first, same names and types, then ours. */
static const struct traces_col traces_cols[] = {
    {"request_id", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"model", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"original_model", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"node_id", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"score", "REAL", "REAL"},
    {"scores_breakdown", "TEXT", "TEXT"},
    {"status", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"latency_ms", "REAL", "REAL"},
    {"time_to_first_token_ms", "REAL", "REAL"},
    {"prompt_tokens", "INTEGER", "INTEGER"},
    {"completion_tokens", "INTEGER", "INTEGER"},
    {"retry_count", "INTEGER DEFAULT 0", "INTEGER DEFAULT 0"},
    {"fallback_used", "INTEGER DEFAULT 0", "INTEGER DEFAULT 0"},
    {"excluded_nodes", "TEXT", "TEXT"},
    {"client_ip", "TEXT", "TEXT"},
    {"original_format", "TEXT", "TEXT"},
    {"error_message", "TEXT", "TEXT"},
    {"timestamp", "REAL NOT NULL", "REAL NOT NULL DEFAULT 0"},
    {"tags", "TEXT", "TEXT"},
    {"attempts", "TEXT", "TEXT"},
    {"queue_wait_ms", "REAL", "REAL"},
    {"events", "TEXT", "TEXT"},
    {"endpoint", "TEXT", "TEXT"},
    {"scored_candidates", "TEXT", "TEXT"},
};

static const struct traces_col traces_obs_cols[] = {
    {"node_id", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"model_name", "TEXT NOT NULL", "TEXT NOT NULL DEFAULT ''"},
    {"latency_ms", "REAL NOT NULL", "REAL NOT NULL DEFAULT 0"},
    {"tokens_generated", "INTEGER", "INTEGER"},
    {"timestamp", "REAL NOT NULL", "REAL NOT NULL DEFAULT 0"},
    {"prompt_tokens", "INTEGER", "INTEGER"},
    {"completion_tokens", "INTEGER", "INTEGER"},
};

_Static_assert(TRACES_NELEM(traces_obs_cols) <= TRACES_NELEM(traces_cols),
               "traces_ensure_table sizes its column flags by traces_cols");

static const char *const traces_indexes[] = {
    "CREATE INDEX IF NOT EXISTS idx_traces_request_id"
    " ON request_traces(request_id)",
    "CREATE INDEX IF NOT EXISTS idx_traces_timestamp"
    " ON request_traces(timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_traces_model_timestamp"
    " ON request_traces(model, timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_traces_node_model"
    " ON request_traces(node_id, model)",
    "CREATE INDEX IF NOT EXISTS idx_traces_tags ON request_traces(tags)",
    /* herd's: the dashboard's trace list filtered by node or status
     * (dashq.c), newest first, without a sort or a full scan */
    "CREATE INDEX IF NOT EXISTS idx_traces_node_timestamp"
    " ON request_traces(node_id, timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_traces_status_timestamp"
    " ON request_traces(status, timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_latency_node_model"
    " ON latency_observations(node_id, model_name)",
    "CREATE INDEX IF NOT EXISTS idx_latency_timestamp"
    " ON latency_observations(timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_latency_model_timestamp"
    " ON latency_observations(model_name, timestamp)",
};

/* JSON columns are stored only when json_valid(); else NULL. */
static const char traces_ins_trace_sql[] =
    "INSERT INTO request_traces (request_id, model, original_model,"
    " node_id, score, scores_breakdown, status, latency_ms,"
    " time_to_first_token_ms, prompt_tokens, completion_tokens,"
    " retry_count, fallback_used, excluded_nodes, client_ip,"
    " original_format, error_message, timestamp, tags, attempts,"
    " queue_wait_ms, events, endpoint, scored_candidates) VALUES ("
    "?1, ?2, ?3, ?4, ?5, CASE WHEN json_valid(?6) THEN ?6 END, ?7, ?8,"
    " ?9, ?10, ?11, ?12, ?13, CASE WHEN json_valid(?14) THEN ?14 END,"
    " ?15, ?16, ?17, ?18, CASE WHEN json_valid(?19) THEN ?19 END,"
    " CASE WHEN json_valid(?20) THEN ?20 END, ?21,"
    " CASE WHEN json_valid(?22) THEN ?22 END, ?23,"
    " CASE WHEN json_valid(?24) THEN ?24 END)";

static const char traces_ins_obs_sql[] =
    "INSERT INTO latency_observations (node_id, model_name, latency_ms,"
    " tokens_generated, timestamp, prompt_tokens, completion_tokens)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

static const char traces_del_trace_sql[] =
    "DELETE FROM request_traces WHERE id IN (SELECT id FROM request_traces"
    " WHERE timestamp < ?1 LIMIT ?2)";

static const char traces_del_obs_sql[] =
    "DELETE FROM latency_observations WHERE id IN (SELECT id FROM"
    " latency_observations WHERE timestamp < ?1 LIMIT ?2)";

/* The last TRACES_P75_WINDOW observations per pair, oldest first. */
static const char traces_p75_sql[] =
    "SELECT node_id, model_name, latency_ms FROM (SELECT node_id,"
    " model_name, latency_ms, ROW_NUMBER() OVER (PARTITION BY node_id,"
    " model_name ORDER BY timestamp DESC, id DESC) AS rn FROM"
    " latency_observations) WHERE rn <= ?1 ORDER BY node_id, model_name,"
    " rn DESC";

/* String fields of struct trace_record, copied by traces_submit(). */
static const size_t traces_str_offs[] = {
    offsetof(struct trace_record, request_id),
    offsetof(struct trace_record, model),
    offsetof(struct trace_record, original_model),
    offsetof(struct trace_record, node_id),
    offsetof(struct trace_record, scores_breakdown),
    offsetof(struct trace_record, status),
    offsetof(struct trace_record, excluded_nodes),
    offsetof(struct trace_record, client_ip),
    offsetof(struct trace_record, original_format),
    offsetof(struct trace_record, error_message),
    offsetof(struct trace_record, tags),
    offsetof(struct trace_record, attempts),
    offsetof(struct trace_record, events),
    offsetof(struct trace_record, endpoint),
    offsetof(struct trace_record, scored_candidates),
};

/* ------------------------------------------------------------------ */
/* Writer thread: SQLite */

/* A message for traces_open()'s caller; long ones are cut short. */
static void
traces_seterr(char *err, size_t errlen, const char *what, struct sqlite3 *db)
{
    int n = snprintf(err, errlen, "%s: %s", what,
                     db != NULL ? sqlite3_errmsg(db) : "out of memory");

    if (n < 0 && errlen > 0)
        err[0] = '\0';
}

static int
traces_exec(struct traces *t, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_exec(t->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        traces_seterr(err, errlen, sql, t->db);
        return -EIO;
    }
    return 0;
}

/* CREATE TABLE IF NOT EXISTS, then ADD COLUMN for what an older file
 * lacks. */
static int
traces_ensure_table(struct traces *t, const char *table,
                    const struct traces_col *cols, size_t ncols, char *err,
                    size_t errlen)
{
    struct buf sql;
    struct sqlite3_stmt *st = NULL;
    bool have[TRACES_NELEM(traces_cols)] = {false};
    int rc = -ENOMEM;
    size_t i;

    buf_init(&sql, TRACES_SQL_MAX);
    if (buf_appendf(&sql,
                    "CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY"
                    " AUTOINCREMENT",
                    table) != 0)
        goto out;
    for (i = 0; i < ncols; i++)
        if (buf_appendf(&sql, ", %s %s", cols[i].name, cols[i].create) != 0)
            goto out;
    if (buf_appends(&sql, ")") != 0)
        goto out;
    rc = traces_exec(t, sql.data, err, errlen);
    if (rc != 0)
        goto out;

    buf_reset(&sql);
    rc = -ENOMEM;
    if (buf_appendf(&sql, "PRAGMA table_info(%s)", table) != 0)
        goto out;
    rc = -EIO;
    if (sqlite3_prepare_v2(t->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        traces_seterr(err, errlen, "table_info", t->db);
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);

        for (i = 0; name != NULL && i < ncols; i++)
            if (strcasecmp(name, cols[i].name) == 0)
                have[i] = true;
    }
    for (i = 0; i < ncols; i++) {
        if (have[i])
            continue;
        buf_reset(&sql);
        rc = -ENOMEM;
        if (buf_appendf(&sql, "ALTER TABLE %s ADD COLUMN %s %s", table,
                        cols[i].name, cols[i].alter) != 0)
            goto out;
        rc = traces_exec(t, sql.data, err, errlen);
        if (rc != 0)
            goto out;
        log_info("traces: added column %s.%s", table, cols[i].name);
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    buf_cleanup(&sql);
    return rc;
}

static int
traces_prepare(struct traces *t, const char *sql, struct sqlite3_stmt **st,
               char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(t->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                           NULL) != SQLITE_OK) {
        traces_seterr(err, errlen, "prepare", t->db);
        return -EIO;
    }
    return 0;
}

static int
traces_db_open(struct traces *t, char *err, size_t errlen)
{
    struct sqlite3_stmt *st = NULL;
    const char *mode;
    int rc;
    size_t i;

    if (sqlite3_open_v2(t->path, &t->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        traces_seterr(err, errlen, t->path, t->db);
        return -EIO;
    }
    sqlite3_busy_timeout(t->db, t->opts.busy_timeout_ms);
    if (sqlite3_prepare_v2(t->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        traces_seterr(err, errlen, "journal_mode", t->db);
        sqlite3_finalize(st);
        return -EIO;
    }
    mode = (const char *)sqlite3_column_text(st, 0);
    if (mode == NULL || strcasecmp(mode, "wal") != 0)
        log_warn("traces: %s: journal_mode is %s, not wal", t->path,
                 mode != NULL ? mode : "?");
    sqlite3_finalize(st);
    rc = traces_exec(t, "PRAGMA synchronous=NORMAL", err, errlen);
    if (rc == 0)
        rc = traces_exec(t, "BEGIN IMMEDIATE", err, errlen);
    if (rc != 0)
        return rc;
    rc = traces_ensure_table(t, "request_traces", traces_cols,
                             TRACES_NELEM(traces_cols), err, errlen);
    if (rc == 0)
        rc = traces_ensure_table(t, "latency_observations", traces_obs_cols,
                                 TRACES_NELEM(traces_obs_cols), err, errlen);
    for (i = 0; rc == 0 && i < TRACES_NELEM(traces_indexes); i++)
        rc = traces_exec(t, traces_indexes[i], err, errlen);
    if (rc == 0)
        rc = traces_exec(t, "COMMIT", err, errlen);
    if (rc != 0) {
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    rc = traces_prepare(t, traces_ins_trace_sql, &t->ins_trace, err, errlen);
    if (rc == 0)
        rc = traces_prepare(t, traces_ins_obs_sql, &t->ins_obs, err, errlen);
    if (rc == 0)
        rc =
            traces_prepare(t, traces_del_trace_sql, &t->del_trace, err, errlen);
    if (rc == 0)
        rc = traces_prepare(t, traces_del_obs_sql, &t->del_obs, err, errlen);
    return rc;
}

static void
traces_db_close(struct traces *t)
{
    sqlite3_finalize(t->ins_trace);
    sqlite3_finalize(t->ins_obs);
    sqlite3_finalize(t->del_trace);
    sqlite3_finalize(t->del_obs);
    t->ins_trace = t->ins_obs = t->del_trace = t->del_obs = NULL;
    if (t->db != NULL && sqlite3_close(t->db) != SQLITE_OK)
        log_warn("traces: close: %s", sqlite3_errmsg(t->db));
    t->db = NULL;
}

static void
traces_bind_text(struct sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void
traces_bind_real(struct sqlite3_stmt *st, int i, double v)
{
    if (isnan(v))
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_double(st, i, v);
}

static void
traces_bind_int(struct sqlite3_stmt *st, int i, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, v);
}

static const char *
traces_nn(const char *s)
{
    return s != NULL ? s : "";
}

static double
traces_obs_latency(const struct trace_record *r)
{
    return isnan(r->obs_latency_ms) ? r->latency_ms : r->obs_latency_ms;
}

/* Steps st once and resets it: SQLITE_DONE or the error code, whose
 * message is then in t->last_err. */
static int
traces_step(struct traces *t, struct sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        snprintf(t->last_err, sizeof(t->last_err), "%s", sqlite3_errmsg(t->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int
traces_insert(struct traces *t, const struct trace_record *r)
{
    struct sqlite3_stmt *st = t->ins_trace;
    double ttft = r->ttft_ms < 0 ? NAN : r->ttft_ms;
    double obs;
    int rc;

    traces_bind_text(st, 1, traces_nn(r->request_id));
    traces_bind_text(st, 2, traces_nn(r->model));
    traces_bind_text(st, 3, traces_nn(r->original_model));
    traces_bind_text(st, 4, traces_nn(r->node_id));
    traces_bind_real(st, 5, r->score);
    traces_bind_text(st, 6, r->scores_breakdown);
    traces_bind_text(st, 7, traces_nn(r->status));
    traces_bind_real(st, 8, r->latency_ms);
    traces_bind_real(st, 9, ttft);
    traces_bind_int(st, 10, r->prompt_tokens);
    traces_bind_int(st, 11, r->completion_tokens);
    sqlite3_bind_int(st, 12, r->retry_count);
    sqlite3_bind_int(st, 13, r->fallback_used ? 1 : 0);
    traces_bind_text(st, 14, r->excluded_nodes);
    traces_bind_text(st, 15, r->client_ip);
    traces_bind_text(st, 16, r->original_format);
    traces_bind_text(st, 17, r->error_message);
    sqlite3_bind_double(st, 18, r->timestamp);
    traces_bind_text(st, 19, r->tags);
    traces_bind_text(st, 20, r->attempts);
    traces_bind_real(st, 21, r->queue_wait_ms);
    traces_bind_text(st, 22, r->events);
    traces_bind_text(st, 23, r->endpoint);
    traces_bind_text(st, 24, r->scored_candidates);
    rc = traces_step(t, st);
    if (rc != SQLITE_DONE || !r->observe)
        return rc;

    obs = traces_obs_latency(r);
    if (isnan(obs))
        return SQLITE_DONE;
    st = t->ins_obs;
    traces_bind_text(st, 1, traces_nn(r->node_id));
    traces_bind_text(st, 2, traces_nn(r->model));
    sqlite3_bind_double(st, 3, obs);
    traces_bind_int(st, 4, r->completion_tokens);
    sqlite3_bind_double(st, 5, r->timestamp);
    traces_bind_int(st, 6, r->prompt_tokens);
    traces_bind_int(st, 7, r->completion_tokens);
    return traces_step(t, st);
}

/* A row the database refuses; the other rows of the batch can go on. */
static bool
traces_row_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return true;
    default:
        return false;
    }
}

/* Commits the list in one transaction and frees it. Returns whether a
 * transaction was committed; *written and *failed count rows. */
static bool
traces_write_batch(struct traces *t, struct traces_item *list,
                   uint64_t *written, uint64_t *failed)
{
    struct traces_item *it;
    uint64_t n = 0, ok = 0;
    bool txn;
    int rc;

    for (it = list; it != NULL; it = it->next)
        n++;
    txn = sqlite3_exec(t->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    if (!txn)
        log_warn("traces: begin: %s", sqlite3_errmsg(t->db));
    for (it = list; txn && it != NULL; it = it->next) {
        rc = traces_insert(t, &it->rec);
        if (rc == SQLITE_DONE) {
            ok++;
        } else if (traces_row_error(rc)) {
            log_warn("traces: %s: row refused: %s", it->rec.request_id,
                     t->last_err);
        } else {
            log_warn("traces: insert: %s", t->last_err);
            sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
            txn = false;
        }
    }
    if (txn && sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        log_warn("traces: commit: %s", sqlite3_errmsg(t->db));
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
        txn = false;
    }
    if (!txn)
        ok = 0;
    *written = ok;
    *failed = n - ok;
    while (list != NULL) {
        it = list;
        list = it->next;
        free(it);
    }
    return txn;
}

static int
traces_delete_some(struct traces *t, struct sqlite3_stmt *st, double cutoff,
                   int64_t *deleted)
{
    int rc;

    sqlite3_bind_double(st, 1, cutoff);
    sqlite3_bind_int(st, 2, t->opts.prune_batch);
    rc = traces_step(t, st);
    if (rc != SQLITE_DONE) {
        log_warn("traces: prune: %s", t->last_err);
        return -EIO;
    }
    *deleted = sqlite3_changes(t->db);
    return 0;
}

/* Deletes at most prune_batch rows of each table older than cutoff.
 * Returns 1 when more may remain, 0 when done, -EIO on error. */
static int
traces_prune_step(struct traces *t, double cutoff, uint64_t *pruned)
{
    int64_t a = 0, b = 0;

    if (traces_delete_some(t, t->del_trace, cutoff, &a) != 0 ||
        traces_delete_some(t, t->del_obs, cutoff, &b) != 0)
        return -EIO;
    *pruned = (uint64_t)(a + b);
    return a >= t->opts.prune_batch || b >= t->opts.prune_batch;
}

/* ------------------------------------------------------------------ */
/* p75 cache (loop thread; the writer only at open) */

static uint64_t
traces_hash(const char *node, const char *model)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p;

    for (p = (const unsigned char *)node; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL; /* separator */
    for (p = (const unsigned char *)model; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static struct traces_pair *
traces_pair_find(struct traces *t, const char *node, const char *model,
                 uint64_t h)
{
    struct traces_pair *p;

    if (t->nbuckets == 0)
        return NULL;
    for (p = t->buckets[h & (t->nbuckets - 1)]; p != NULL; p = p->next)
        if (p->hash == h && strcmp(p->node, node) == 0 &&
            strcmp(p->model, model) == 0)
            return p;
    return NULL;
}

static int
traces_rehash(struct traces *t)
{
    size_t nb = t->nbuckets != 0 ? t->nbuckets * 2 : 64;
    struct traces_pair **b = calloc(nb, sizeof(*b));
    size_t i;

    if (b == NULL)
        return -ENOMEM;
    for (i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL) {
            struct traces_pair *p = t->buckets[i];

            t->buckets[i] = p->next;
            p->next = b[p->hash & (nb - 1)];
            b[p->hash & (nb - 1)] = p;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return 0;
}

static struct traces_pair *
traces_pair_get(struct traces *t, const char *node, const char *model)
{
    uint64_t h = traces_hash(node, model);
    struct traces_pair *p = traces_pair_find(t, node, model, h);

    if (p != NULL || t->npairs >= TRACES_P75_MAX_PAIRS)
        return p;
    if (t->npairs >= t->nbuckets && traces_rehash(t) != 0)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->node = strdup(node);
    p->model = strdup(model);
    if (p->node == NULL || p->model == NULL) {
        free(p->node);
        free(p->model);
        free(p);
        return NULL;
    }
    p->hash = h;
    p->next = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = p;
    t->npairs++;
    return p;
}

/* Best effort: on -ENOMEM the observation is simply not cached. */
static void
traces_p75_note(struct traces *t, const char *node, const char *model,
                double ms)
{
    struct traces_pair *p;

    if (isnan(ms) || ms < 0)
        return;
    p = traces_pair_get(t, traces_nn(node), traces_nn(model));
    if (p == NULL)
        return;
    if (p->n < TRACES_P75_WINDOW) {
        if (p->n == p->cap) {
            uint32_t cap = p->cap != 0 ? p->cap * 2 : TRACES_P75_MIN_CAP;
            double *v;

            if (cap > TRACES_P75_WINDOW)
                cap = TRACES_P75_WINDOW;
            v = realloc(p->v, cap * sizeof(*v));
            if (v == NULL)
                return;
            p->v = v;
            p->cap = cap;
        }
        p->v[p->n++] = ms;
    } else {
        p->v[p->head] = ms;
        p->head = (p->head + 1) % TRACES_P75_WINDOW;
    }
    p->dirty = true;
}

/* The k-th smallest of a[0..n) (Wirth's selection; a is reordered). */
static double
traces_select(double *a, long n, long k)
{
    long lo = 0, hi = n - 1;

    while (lo < hi) {
        double pivot = a[k];
        long i = lo, j = hi;

        do {
            while (a[i] < pivot)
                i++;
            while (pivot < a[j])
                j--;
            if (i <= j) {
                double tmp = a[i];

                a[i] = a[j];
                a[j] = tmp;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k)
            lo = i;
        if (k < i)
            hi = j;
    }
    return a[k];
}

static void
traces_pairs_free(struct traces *t)
{
    size_t i;

    for (i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL) {
            struct traces_pair *p = t->buckets[i];

            t->buckets[i] = p->next;
            free(p->node);
            free(p->model);
            free(p->v);
            free(p);
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->npairs = 0;
}

/* Writer, before "ready": fills the cache from existing rows. */
static int
traces_p75_load(struct traces *t, char *err, size_t errlen)
{
    struct sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(t->db, traces_p75_sql, -1, &st, NULL) != SQLITE_OK) {
        traces_seterr(err, errlen, "p75 query", t->db);
        return -EIO;
    }
    sqlite3_bind_int(st, 1, TRACES_P75_WINDOW);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        traces_p75_note(t, (const char *)sqlite3_column_text(st, 0),
                        (const char *)sqlite3_column_text(st, 1),
                        sqlite3_column_double(st, 2));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        traces_seterr(err, errlen, "p75 query", t->db);
        return -EIO;
    }
    return 0;
}

int
traces_p75_ms(struct traces *t, const char *node_id, const char *model,
              double *out_ms)
{
    struct traces_pair *p;
    size_t k;

    if (t == NULL || node_id == NULL || model == NULL || out_ms == NULL)
        return -EINVAL;
    p = traces_pair_find(t, node_id, model, traces_hash(node_id, model));
    if (p == NULL || p->n == 0)
        return -ENOENT;
    if (p->dirty) {
        memcpy(t->scratch, p->v, p->n * sizeof(double));
        k = (size_t)((double)p->n * 0.75);
        if (k >= p->n)
            k = p->n - 1;
        p->p75 = traces_select(t->scratch, (long)p->n, (long)k);
        p->dirty = false;
    }
    *out_ms = p->p75;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The writer thread */

static void
traces_abs_mono(struct timespec *ts, uint64_t mono_ns)
{
    ts->tv_sec = (time_t)(mono_ns / (uint64_t)NS_PER_SEC);
    ts->tv_nsec = (long)(mono_ns % (uint64_t)NS_PER_SEC);
}

static double
traces_now_s(void)
{
    return (double)clock_wall_ns() / (double)NS_PER_SEC;
}

static void *
traces_writer(void *arg)
{
    struct traces *t = arg;
    char err[TRACES_ERR_MAX] = "";
    uint64_t next_prune = 0, every;
    struct timespec ts;
    int rc;

    /* Background work: nice 10 for this thread only (Linux: a thread id
     * is a process id to setpriority), so that on a busy machine the
     * loop thread, which a client is waiting on, wins the CPU. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    rc = traces_db_open(t, err, sizeof(err));
    if (rc == 0)
        rc = traces_p75_load(t, err, sizeof(err));
    if (rc != 0)
        traces_db_close(t);

    pthread_mutex_lock(&t->mu);
    t->open_rc = rc;
    snprintf(t->open_err, sizeof(t->open_err), "%s", err);
    t->ready = true;
    pthread_cond_broadcast(&t->done);
    if (rc != 0) {
        pthread_mutex_unlock(&t->mu);
        return NULL;
    }

    every = (uint64_t)t->opts.prune_interval_s * (uint64_t)NS_PER_SEC;
    if (t->opts.retention_days > 0)
        next_prune = clock_mono_ns(); /* prune once at start */
    bool lingered = false;

    for (;;) {
        struct traces_item *list = NULL;
        uint64_t n = 0, written = 0, failed = 0, pruned = 0, gen = 0;
        bool take, prune, committed = false;
        double cutoff = 0;
        int more = 0;

        if (next_prune != 0 && clock_mono_ns() >= next_prune) {
            if (!t->prune_pending) {
                t->prune_pending = true;
                t->prune_gen++;
                t->prune_cutoff =
                    traces_now_s() - t->opts.retention_days * TRACES_DAY_S;
            }
            next_prune = clock_mono_ns() + every;
        }
        take = !t->paused && t->head != NULL;
        if (!take && t->stopping)
            break; /* a pending prune is abandoned at close */
        if (!take && !t->prune_pending) {
            if (next_prune != 0) {
                traces_abs_mono(&ts, next_prune);
                pthread_cond_timedwait(&t->wake, &t->mu, &ts);
            } else {
                pthread_cond_wait(&t->wake, &t->mu);
            }
            continue;
        }
        if (take && !lingered && !t->stopping &&
            t->depth < TRACES_LINGER_ROWS) {
            /* a few rows only: wait a moment for more, so that a steady
             * stream of requests commits in batches, not row by row (a
             * flush, a prune or close wakes this at once) */
            lingered = true;
            traces_abs_mono(&ts, clock_mono_ns() + TRACES_LINGER_NS);
            pthread_cond_timedwait(&t->wake, &t->mu, &ts);
            continue;
        }
        lingered = false;
        if (take) {
            list = t->head;
            n = t->depth;
            t->head = t->tail = NULL;
            t->depth = t->bytes = 0;
        }
        prune = t->prune_pending;
        cutoff = t->prune_cutoff;
        gen = t->prune_gen;
        pthread_mutex_unlock(&t->mu);

        if (list != NULL)
            committed = traces_write_batch(t, list, &written, &failed);
        if (prune)
            more = traces_prune_step(t, cutoff, &pruned);

        pthread_mutex_lock(&t->mu);
        t->st.written += written;
        t->st.failed += failed;
        t->st.batches += committed ? 1 : 0;
        t->st.pruned += pruned;
        t->seq_done += n;
        if (prune && more <= 0 && gen == t->prune_gen)
            t->prune_pending = false;
        pthread_cond_broadcast(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    traces_db_close(t);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public API */

static void
traces_free(struct traces *t)
{
    struct traces_item *it;

    while (t->head != NULL) {
        it = t->head;
        t->head = it->next;
        free(it);
    }
    traces_pairs_free(t);
    pthread_cond_destroy(&t->wake);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static int
traces_mkdir_parent(const char *path)
{
    char dir[TRACES_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n;

    if (slash == NULL || slash == path)
        return 0;
    n = (size_t)(slash - path);
    if (n >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return fs_mkdir_p(dir, 0700);
}

struct traces *
traces_open(const char *path, const struct traces_opts *opts, char *err,
            size_t errlen)
{
    struct traces *t = NULL;
    pthread_condattr_t ca;
    sigset_t all, old;
    bool sync_ok = false, started = false;
    int rc;

    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "traces: no database path");
        return NULL;
    }
    /* No memory statistics: without them SQLite's allocator takes no
     * global mutex (10 % of the writer's instructions a row). Only
     * possible before SQLite's first use; a no-op after. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "traces: out of memory");
        return NULL;
    }
    if (opts != NULL)
        t->opts = *opts;
    if (t->opts.queue_capacity == 0)
        t->opts.queue_capacity = TRACES_DEFAULT_QUEUE;
    if (t->opts.queue_max_bytes == 0)
        t->opts.queue_max_bytes = TRACES_DEFAULT_QUEUE_BYTES;
    if (t->opts.busy_timeout_ms <= 0)
        t->opts.busy_timeout_ms = TRACES_DEFAULT_BUSY_MS;
    if (t->opts.retention_days < 0)
        t->opts.retention_days = 0;
    if (t->opts.prune_interval_s <= 0)
        t->opts.prune_interval_s = TRACES_DEFAULT_PRUNE_EVERY;
    if (t->opts.prune_batch <= 0)
        t->opts.prune_batch = TRACES_DEFAULT_PRUNE_BATCH;

    if (fs_expand_home(path, t->path, sizeof(t->path)) != 0) {
        snprintf(err, errlen, "traces: %s: path too long", path);
        free(t);
        return NULL;
    }
    rc = traces_mkdir_parent(t->path);
    if (rc != 0) {
        snprintf(err, errlen, "traces: %s: cannot create directory: %s",
                 t->path, strerror(-rc));
        free(t);
        return NULL;
    }

    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->done, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    sync_ok = true;

    /* The writer blocks the asynchronous signals, so they go to the loop
     * thread; faults (SIGSEGV, ...) stay deliverable for the sanitizers. */
    sigemptyset(&all);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGHUP);
    sigaddset(&all, SIGQUIT);
    sigaddset(&all, SIGUSR1);
    sigaddset(&all, SIGUSR2);
    sigaddset(&all, SIGPIPE);
    sigaddset(&all, SIGCHLD);
    sigaddset(&all, SIGALRM);
    sigaddset(&all, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&t->thread, NULL, traces_writer, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "traces: pthread_create: %s", strerror(rc));
        goto fail;
    }
    started = true;

    pthread_mutex_lock(&t->mu);
    while (!t->ready)
        pthread_cond_wait(&t->done, &t->mu);
    rc = t->open_rc;
    if (rc != 0)
        snprintf(err, errlen, "traces: %s", t->open_err);
    pthread_mutex_unlock(&t->mu);
    if (rc != 0)
        goto fail;
    log_info("traces: %s open (queue %zu, retention %d days)", t->path,
             t->opts.queue_capacity, t->opts.retention_days);
    return t;

fail:
    if (started)
        pthread_join(t->thread, NULL);
    if (sync_ok) {
        traces_free(t);
    } else {
        free(t);
    }
    return NULL;
}

int
traces_submit(struct traces *t, const struct trace_record *rec)
{
    struct traces_item *it;
    size_t lens[TRACES_NELEM(traces_str_offs)];
    size_t size = sizeof(*it), i, off = 0;
    bool full;

    if (t == NULL || rec == NULL)
        return -EINVAL;
    if (rec->observe)
        traces_p75_note(t, rec->node_id, rec->model, traces_obs_latency(rec));

    for (i = 0; i < TRACES_NELEM(traces_str_offs); i++) {
        const char *s =
            *(const char *const *)((const char *)rec + traces_str_offs[i]);

        lens[i] = s != NULL ? strlen(s) + 1 : 0;
        size += lens[i];
    }
    it = malloc(size);
    if (it == NULL)
        return -ENOMEM;
    it->next = NULL;
    it->bytes = size;
    it->rec = *rec;
    for (i = 0; i < TRACES_NELEM(traces_str_offs); i++) {
        const char **dst =
            (const char **)((char *)&it->rec + traces_str_offs[i]);

        if (lens[i] == 0)
            continue;
        memcpy(it->data + off, *dst, lens[i]);
        *dst = it->data + off;
        off += lens[i];
    }
    if (!(it->rec.timestamp > 0))
        it->rec.timestamp = traces_now_s();

    pthread_mutex_lock(&t->mu);
    full = t->depth >= t->opts.queue_capacity ||
           t->bytes + size > t->opts.queue_max_bytes;
    if (full) {
        t->st.dropped++;
    } else {
        if (t->tail != NULL)
            t->tail->next = it;
        else
            t->head = it;
        t->tail = it;
        t->depth++;
        t->bytes += size;
        t->seq_submitted++;
        t->st.submitted++;
        if (t->depth == 1)
            pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&t->mu);
    if (full) {
        free(it);
        return -EAGAIN;
    }
    return 0;
}

void
traces_stats(struct traces *t, struct traces_stats *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    out->queue_depth = t->depth;
    out->queue_bytes = t->bytes;
    pthread_mutex_unlock(&t->mu);
}

int
traces_prune(struct traces *t, double older_than)
{
    if (t == NULL)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    t->prune_pending = true;
    t->prune_gen++;
    t->prune_cutoff = older_than;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int
traces_flush(struct traces *t)
{
    uint64_t target;
    int rc = 0;

    if (t == NULL)
        return -EINVAL;
    pthread_mutex_lock(&t->mu);
    if (t->paused) {
        rc = -EDEADLK;
    } else {
        target = t->seq_submitted;
        pthread_cond_signal(&t->wake);
        while (t->seq_done < target || t->prune_pending)
            pthread_cond_wait(&t->done, &t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void
traces_pause_for_test(struct traces *t, bool paused)
{
    pthread_mutex_lock(&t->mu);
    t->paused = paused;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
}

void
traces_close(struct traces *t)
{
    struct traces_stats st;

    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    t->paused = false;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    traces_stats(t, &st);
    log_info("traces: closed (%llu written, %llu dropped, %llu failed)",
             (unsigned long long)st.written, (unsigned long long)st.dropped,
             (unsigned long long)st.failed);
    traces_free(t);
}

int
traces_format_attempts(struct buf *b, const struct trace_attempt *a, size_t n)
{
    size_t start = b->len, i;
    int rc;

    rc = buf_appends(b, "[");
    for (i = 0; rc == 0 && i < n; i++) {
        const char *node = traces_nn(a[i].node);
        const char *reason = traces_nn(a[i].reason);

        rc = buf_appends(b, i == 0 ? "{\"node\":" : ",{\"node\":");
        if (rc == 0)
            rc = json_append_str(b, node, strlen(node));
        if (rc == 0)
            rc = buf_appends(b, ",\"reason\":");
        if (rc == 0)
            rc = json_append_str(b, reason, strlen(reason));
        if (rc == 0 && isfinite(a[i].ms))
            rc = buf_appendf(b, ",\"status\":%d,\"ms\":%.3f}", a[i].status,
                             a[i].ms);
        else if (rc == 0)
            rc = buf_appendf(b, ",\"status\":%d,\"ms\":null}", a[i].status);
    }
    if (rc == 0)
        rc = buf_appends(b, "]");
    if (rc != 0 && b->data != NULL) {
        b->len = start; /* all or nothing */
        b->data[start] = '\0';
    }
    return rc;
}
