/*
 * dashq.h - the read side of the trace store: the dashboard's queries
 * (ollama-herd's /dashboard/api/{traces,usage,overview,trends,models,tags,
 * tags/daily} and the health engine's SQL aggregates) over
 * <data_dir>/latency.db, answered as JSON.
 *
 * Threads. The loop thread calls every function here and receives every
 * callback; it never touches SQLite. Each query runs on the libuv thread
 * pool (uv_queue_work) on one of at most opts.max_running read-only
 * connections (SQLITE_OPEN_READONLY, PRAGMA query_only, busy_timeout),
 * each lent to one query at a time. Queries beyond that wait in a FIFO on
 * the loop (at most opts.max_waiting; past it dashq_run() says -EBUSY), so
 * the dashboard never takes more than max_running pool threads.
 *
 * The aggregate queries (usage, overview, trends, models, tags, tags/daily)
 * are answered from an in-memory rollup: per-day (and, for trends,
 * per-hour) sums per node:model, tag and model, kept up to date from the
 * rows appended since the last query (ids only grow), by a timer while
 * the dashboard is in use, and corrected when the writer's retention
 * deletes old rows. Partial days at the edges of a window are aggregated
 * from the rows themselves, so every answer equals what ollama-herd's SQL
 * returns. See docs/internals/dashq.md.
 *
 * Only dashq.c (and traces.c) include <sqlite3.h>.
 */
#ifndef COORD_DASHQ_H
#define COORD_DASHQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "herd/buf.h"

#define DASHQ_DEFAULT_RUNNING    2
#define DASHQ_MAX_RUNNING        16
#define DASHQ_DEFAULT_WAITING    64
#define DASHQ_DEFAULT_BUSY_MS    5000
#define DASHQ_DEFAULT_TIMEOUT_MS 10000
#define DASHQ_DEFAULT_MAX_JSON   (32u << 20)
#define DASHQ_DEFAULT_MAX_CELLS  262144 /* rollup cells per map */
#define DASHQ_DEFAULT_MMAP       (256u << 20)
#define DASHQ_DEFAULT_VERIFY_S   300
#define DASHQ_DEFAULT_REFRESH_MS 1000

/* Parameter ranges; values outside are clamped, 0 means the default. */
#define DASHQ_LIMIT_DEFAULT 50
#define DASHQ_LIMIT_MAX     1000
#define DASHQ_DAYS_DEFAULT  7
#define DASHQ_DAYS_MAX      365
#define DASHQ_HOURS_DEFAULT 72
#define DASHQ_HOURS_MAX     8760
#define DASHQ_STR_MAX       256 /* bytes of a filter string or request_id */

/* The health_stats constants (ollama-herd's health engine, §8.1). */
#define DASHQ_COLD_LOAD_TTFT_MS 40000.0
#define DASHQ_LOAD_TIMEOUT_MS   120000.0
#define DASHQ_HEALTH_WINDOW_S   86400.0
#define DASHQ_HEALTH_RECENT_S   3600.0

enum dashq_kind {
    DASHQ_TRACES,       /* GET /dashboard/api/traces */
    DASHQ_TRACE,        /* every row of one request_id */
    DASHQ_USAGE,        /* GET /dashboard/api/usage */
    DASHQ_OVERVIEW,     /* GET /dashboard/api/overview */
    DASHQ_TRENDS,       /* GET /dashboard/api/trends */
    DASHQ_MODELS,       /* GET /dashboard/api/models */
    DASHQ_TAGS,         /* GET /dashboard/api/tags (and /apps) */
    DASHQ_TAGS_DAILY,   /* GET /dashboard/api/tags/daily (and /apps/daily) */
    DASHQ_HEALTH_STATS, /* the health engine's SQL aggregates */
    DASHQ_KIND_COUNT
};

/*
 * Zero-initialise, then set what the query uses. Strings are borrowed for
 * the call to dashq_run() only (it copies them); NULL or "" is "not set".
 */
struct dashq_params {
    int limit; /* traces: 1..1000, 0 -> 50 */
    int days;  /* usage, models, tags, tags/daily: 1..365, 0 -> 7 */
    int hours; /* trends: 1..8760, 0 -> 72 */
    double start_ts, end_ts; /* trends, models, tags, tags/daily; unix s,
                                0 = unset. As in ollama-herd, start_ts
                                counts only when end_ts is set too. */
    double since, until;     /* traces: timestamp >= since, <= until */
    const char *model;       /* traces filters: exact match */
    const char *node_id;
    const char *status;
    const char *tag;        /* traces: rows whose tags list holds it */
    const char *request_id; /* trace: required */
    double now;             /* unix s; 0 = the clock when the query runs */
};

/* Zero-initialise, then set what you need: every 0 means the default. */
struct dashq_opts {
    int max_running;       /* connections = queries at once; 0 -> 2 */
    int max_waiting;       /* queued behind them; 0 -> 64 */
    int busy_timeout_ms;   /* 0 -> 5000 */
    int query_timeout_ms;  /* interrupts a query past it; 0 -> 10000 */
    size_t max_json_bytes; /* an answer past it fails, -E2BIG; 0 -> 32 MiB */
    size_t max_cells;      /* rollup cells per map, and distinct strings
                              per table; 0 -> 262144. Past it the table's
                              queries aggregate rows instead. One query's
                              own aggregates are capped at max(max_cells,
                              262144). */
    int64_t mmap_bytes;    /* PRAGMA mmap_size; 0 -> 256 MiB, < 0 -> off */
    int verify_s;          /* recount the rows every so often; 0 -> 300,
                              < 0: at every query (tests) */
    int refresh_ms;        /* refresh the rollup this often while the
                              dashboard is in use (a rollup query in the
                              last minute); 0 -> 1000, < 0 -> never */
    bool no_warmup;        /* do not build the rollup at open */
};

/* Counters since open (loop thread). */
struct dashq_stats {
    uint64_t accepted;  /* dashq_run() returned 0 */
    uint64_t ok;        /* callbacks with rc 0 */
    uint64_t failed;    /* callbacks with another rc */
    uint64_t refused;   /* -EBUSY: too many waiting */
    uint64_t refreshes; /* rollup refreshes done by the warm-up or timer */
    int running;        /* on the thread pool now */
    int waiting;        /* queued behind them */
    int conns_open;     /* read-only connections opened so far */
};

struct dashq;

/*
 * The answer of one query, on the loop thread. rc is 0 and json holds the
 * JSON document, or rc is a negative errno and json holds
 * {"error":"<sentence>"}: -EINVAL (refused by SQLite's parser: a bug),
 * -ENOENT (trace: no such request_id), -EIO (SQLite error, unreadable
 * file), -EBUSY (locked past busy_timeout), -EROFS (a write was tried),
 * -ETIMEDOUT (past query_timeout_ms), -ECANCELED (dashq_close() ran
 * first), -E2BIG (answer past max_json_bytes, or more distinct keys in
 * one window than the aggregation cap), -ENOMEM. json belongs to
 * dashq and is freed after the callback returns; take its bytes with
 * buf_take() to keep them. The callback may call dashq_run() and
 * dashq_close().
 */
typedef void (*dashq_cb)(int rc, struct buf *json, void *ud);

/* Called once, on the loop thread, when dashq_close() has finished. */
typedef void (*dashq_close_cb)(void *ud);

/*
 * Loop thread, at start-up. Expands "~/", checks that db_path exists and
 * is readable, and returns the service, or NULL with a reason in err. No
 * connection is opened here: the pool threads open them on first use.
 * Unless opts->no_warmup, the rollup is built at once on the pool, so the
 * first dashboard query does not wait for a full scan. opts may be NULL.
 */
struct dashq *dashq_open(uv_loop_t *loop, const char *db_path,
                         const struct dashq_opts *opts, char *err,
                         size_t errlen);

/*
 * Loop thread. Queues the query; cb runs later, on the loop thread, exactly
 * once. Returns 0, or (and cb never runs): -EINVAL (params refused by
 * dashq_params_check(), or an unknown kind), -EBUSY (max_waiting queries
 * already wait), -ESHUTDOWN (dashq_close() was called), -ENOMEM. Numbers
 * out of range are clamped, not refused.
 */
int dashq_run(struct dashq *q, enum dashq_kind kind,
              const struct dashq_params *p, dashq_cb cb, void *ud);

/*
 * Any thread, pure. What dashq_run() refuses, with a sentence in err:
 * a NaN, infinite or negative timestamp, since > until, start_ts > end_ts
 * (both set), a string longer than DASHQ_STR_MAX, no request_id for
 * DASHQ_TRACE. 0 or -EINVAL.
 */
int dashq_params_check(enum dashq_kind kind, const struct dashq_params *p,
                       char *err, size_t errlen);

/*
 * Any thread, pure. Sets one parameter from a query-string pair: limit,
 * days, hours (integers, clamped to their range), start_ts, end_ts, since,
 * until (unix seconds >= 0), model, node_id, status, tag, request_id
 * (borrowed: value must outlive the dashq_run() call). 0, -EINVAL with a
 * sentence in err ("days: not an integer: \"x\""), or -ENOENT for a key
 * it does not know (FastAPI ignores those; so may the caller).
 */
int dashq_param_set(struct dashq_params *p, const char *key, const char *value,
                    char *err, size_t errlen);

/* "traces", "trace", "usage", ..., "health_stats"; "?" when unknown. */
const char *dashq_kind_name(enum dashq_kind kind);

/* Loop thread. */
void dashq_stats(const struct dashq *q, struct dashq_stats *out);

/*
 * Loop thread. Starts closing: dashq_run() refuses from now on, queries
 * still waiting are answered -ECANCELED, a running query is interrupted
 * at its next progress check (-ECANCELED), and when the last one has
 * called back a final pool job closes the connections. Then done(ud) runs
 * on the loop thread and q is freed. Until then the loop must run; after
 * it no dashq request is left on the loop, so uv_loop_close() can return
 * 0. done may be NULL. A second call, or q == NULL, does nothing.
 */
void dashq_close(struct dashq *q, dashq_close_cb done, void *ud);

/*
 * Test hook: runs sql (sqlite3_exec) on a pool connection. cb gets 0 and
 * {"ok":true}, or the error as for queries (-EROFS for a write).
 */
int dashq_exec_for_test(struct dashq *q, const char *sql, dashq_cb cb,
                        void *ud);

#endif /* COORD_DASHQ_H */
