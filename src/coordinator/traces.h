/*
 * traces.h - the trace store: request traces and latency observations in
 * SQLite (<data_dir>/latency.db, ollama-herd's file and schema, plus our
 * columns).
 *
 * Threads. The loop thread calls every function here. traces_open()
 * starts one writer thread that owns the only write connection; the loop
 * hands it copies of finished records through a bounded in-memory queue
 * and never waits for disk: traces_submit() takes a mutex for a list
 * append, and the writer holds that mutex only to detach the whole list
 * (O(1)), never across SQLite calls. When the queue is full the record
 * is dropped and counted. The p75 latency cache belongs to the loop
 * thread (see traces_p75_ms); the writer fills it once, at open, before
 * traces_open() returns. Only traces.c includes <sqlite3.h>.
 */
#ifndef HERD_TRACES_H
#define HERD_TRACES_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herd/buf.h"

#define TRACES_DEFAULT_QUEUE       65536
#define TRACES_DEFAULT_QUEUE_BYTES (64u << 20)
#define TRACES_DEFAULT_BUSY_MS     5000
#define TRACES_DEFAULT_PRUNE_EVERY 3600 /* seconds */
#define TRACES_DEFAULT_PRUNE_BATCH 5000 /* rows per DELETE transaction */
#define TRACES_P75_WINDOW          500  /* observations per node:model */

/* Value of a nullable REAL field meaning SQL NULL (any NaN works). */
#define TRACES_NULL_REAL NAN
/* Value of a nullable INTEGER field meaning SQL NULL (any negative). */
#define TRACES_NULL_INT (-1)

struct traces;

/* Zero-initialise, then set what you need: every 0 means the default. */
struct traces_opts {
    size_t queue_capacity;  /* records; 0 -> TRACES_DEFAULT_QUEUE */
    size_t queue_max_bytes; /* bytes of queued copies; 0 -> default */
    int busy_timeout_ms;    /* 0 -> TRACES_DEFAULT_BUSY_MS */
    int retention_days;     /* 0 = keep forever (ollama-herd's behaviour) */
    int prune_interval_s;   /* 0 -> TRACES_DEFAULT_PRUNE_EVERY */
    int prune_batch;        /* 0 -> TRACES_DEFAULT_PRUNE_BATCH */
};

/*
 * One finished request outcome: a request_traces row and, when observe
 * is set, a latency_observations row. Strings are borrowed for the call
 * only: traces_submit() copies them. NULL strings in NOT NULL columns
 * (request_id, model, original_model, node_id, status) are stored as "";
 * other NULL strings as SQL NULL. JSON columns take JSON text; text that
 * is not valid JSON is stored as NULL (checked on the writer thread).
 */
struct trace_record {
    const char *request_id;
    const char *model;          /* model actually served */
    const char *original_model; /* model requested, normalised */
    const char *node_id;
    double score;                 /* TRACES_NULL_REAL for NULL */
    const char *scores_breakdown; /* JSON object or NULL */
    const char *status;        /* completed/failed/retried/client_disconnected/
                                  incomplete */
    double latency_ms;         /* TRACES_NULL_REAL for NULL */
    double ttft_ms;            /* time_to_first_token_ms; NaN/<0 = NULL */
    int64_t prompt_tokens;     /* < 0 = NULL */
    int64_t completion_tokens; /* < 0 = NULL */
    int retry_count;
    bool fallback_used;
    const char *excluded_nodes; /* JSON list or NULL */
    const char *client_ip;
    const char *original_format; /* "openai" / "ollama" / "anthropic" */
    const char *error_message;
    double timestamp; /* unix seconds; <= 0 = now, at submit */
    const char *tags; /* JSON list or NULL */
    /* herd's columns */
    const char *attempts;          /* JSON [{node,reason,status,ms}] */
    double queue_wait_ms;          /* NaN = NULL */
    const char *events;            /* JSON */
    const char *endpoint;          /* e.g. "/v1/chat/completions" */
    const char *scored_candidates; /* JSON: every candidate's breakdown */
    /* latency_observations row (completed requests only) */
    bool observe;
    double obs_latency_ms; /* start of the last attempt to end of stream;
                              NaN -> latency_ms */
};

/* Counters since open; a consistent snapshot. */
struct traces_stats {
    uint64_t submitted; /* accepted into the queue */
    uint64_t dropped;   /* refused: queue full (records or bytes) */
    uint64_t written;   /* request_traces rows committed */
    uint64_t failed;    /* accepted but not committed (SQLite errors) */
    uint64_t batches;   /* write transactions committed */
    uint64_t pruned;    /* rows deleted by retention, both tables */
    size_t queue_depth; /* records waiting now */
    size_t queue_bytes; /* bytes of those copies */
};

/* One upstream attempt, for traces_format_attempts(). */
struct trace_attempt {
    const char *node;
    const char *reason; /* "ok", "connect", "timeout", "http_503", ... */
    int status;         /* HTTP status, 0 if none */
    double ms;
};

/*
 * Expands "~/", creates the file's directory (0700), starts the writer
 * thread and waits until it has opened the database (WAL, busy_timeout,
 * synchronous=NORMAL), created or migrated the tables and indexes, and
 * loaded the p75 cache from existing rows. Returns the store, or NULL
 * with a reason in err. opts may be NULL (all defaults).
 */
struct traces *traces_open(const char *path, const struct traces_opts *opts,
                           char *err, size_t errlen);

/*
 * Loop thread. Copies rec into the queue and returns at once: 0, -EAGAIN
 * when the queue is full (the record is dropped and counted), -ENOMEM,
 * -EINVAL for a NULL argument. With rec->observe, also feeds the p75
 * cache (even when the row itself is dropped: the latency was real).
 */
int traces_submit(struct traces *t, const struct trace_record *rec);

/*
 * Loop thread. The p75 of the last TRACES_P75_WINDOW latency observations
 * of node:model (sorted, index int(n * 0.75)) in *out_ms: 0, or -ENOENT
 * when there is none. Never touches SQLite or the writer.
 */
int traces_p75_ms(struct traces *t, const char *node_id, const char *model,
                  double *out_ms);

/* Any thread. */
void traces_stats(struct traces *t, struct traces_stats *out);

/*
 * Asks the writer to delete rows of both tables whose timestamp is older
 * than older_than (unix seconds), in transactions of at most prune_batch
 * rows each, interleaved with queued inserts. Returns at once (0).
 * The writer also does this by itself every prune_interval_s when
 * retention_days > 0 (and once right after open).
 */
int traces_prune(struct traces *t, double older_than);

/*
 * Blocks until every record submitted before the call is committed (or
 * failed) and no prune is pending. For shutdown and tests, not for the
 * request path. 0, or -EDEADLK while the writer is paused.
 */
int traces_flush(struct traces *t);

/* Flushes the queue, joins the writer, closes the database, frees t.
 * NULL is a no-op. */
void traces_close(struct traces *t);

/* Appends a JSON array [{"node","reason","status","ms"},...] for the
 * attempts column. 0, -ENOMEM or -E2BIG. */
int traces_format_attempts(struct buf *b, const struct trace_attempt *a,
                           size_t n) HERD_MUST_USE;

/*
 * Test hook: while paused the writer takes nothing from the queue, so a
 * test can fill it deterministically. traces_close() unpauses.
 */
void traces_pause_for_test(struct traces *t, bool paused);

#endif /* HERD_TRACES_H */
