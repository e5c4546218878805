/*
 * dashq.c - the dashboard's queries over the trace store: read-only
 * connections on the libuv thread pool (with traces.c, the only module
 * that includes <sqlite3.h>).
 *
 * Who owns what:
 *  - The loop thread owns struct dashq's waiting list, its counters, the
 *    lending of connections (conn->busy) and every request except while
 *    the request is on the pool: uv_queue_work() hands it to a pool
 *    thread and the after_work callback hands it back. libuv's work queue
 *    is mutex-protected, so those hand-overs order every access.
 *  - A pool thread owns the request it runs and the connection lent to it
 *    (conn->db, conn->deadline_ns) for the duration of the work callback.
 *    A connection is opened by the first pool thread that uses it and
 *    closed by the final pool job that dashq_close() queues.
 *  - The rollup (q->ru) is shared by the pool threads and guarded by
 *    ru.mu, held for the whole of a rollup-backed query (refresh, edges,
 *    output), so that every answer comes from one snapshot.
 *  - q->closing is atomic: set on the loop by dashq_close(), read by the
 *    progress handler of every running query.
 *  - The refresher timer is the loop's: while the dashboard is in use it
 *    queues a rollup refresh every refresh_ms (one at a time, only when a
 *    connection is free and no query waits). It is unref'd, so it never
 *    keeps the loop alive, and dashq_close() closes it.
 *  - Immutable after dashq_open(): loop, path, opts.
 *
 * The rollup. Each table has a set of maps from (string, string, bucket)
 * to sums (struct dq_agg): request_traces by (node_id, model, day) and
 * (tag, day); latency_observations by (model_name, day) and by hour. It
 * is brought up to date at the start of each rollup-backed query from the
 * rows whose id is above the high-water mark (ids only grow, and one
 * writer commits them in order), and corrected when MIN(timestamp) grows
 * (the writer's retention deletes the oldest rows: the first remaining
 * day is aggregated again). Every verify_s the row count is compared and,
 * if it differs (someone deleted rows by hand), the table is rebuilt. A
 * window [cutoff, upper] takes the buckets that lie wholly inside it from
 * the rollup and aggregates its partial first and last bucket from the
 * rows themselves, so every answer equals ollama-herd's SQL. A table whose
 * rollup would pass max_cells is "disabled": its queries aggregate the
 * window's rows directly (slower, same answer).
 */
#include "dashq.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herd/buf.h"
#include "herd/clock.h"
#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/log.h"
#include "herd/parse.h"

#define DQ_PATH_MAX     4096
#define DQ_ERR_MAX      256
#define DQ_DAY_S        86400.0
#define DQ_HOUR_S       3600.0
#define DQ_TS_LIMIT     1e15  /* rows with |timestamp| past it are skipped */
#define DQ_FAR          1e300 /* "no bound" for a timestamp */
#define DQ_NONE         UINT32_MAX
#define DQ_PROGRESS_OPS 1000 /* VM steps between progress checks */
#define DQ_DEPTH_MAX    8    /* JSON nesting of our answers */
#define DQ_SQL_MAX      (16u << 10)
#define DQ_TS_MAX_PARAM 1e11 /* a timestamp parameter past it is refused */

#define DQ_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define DQ_BIT(m)   (1u << (m))

/* Internal request kinds, after the public ones. */
enum {
    DQ_KIND_EXEC = DASHQ_KIND_COUNT, /* dashq_exec_for_test() */
    DQ_KIND_WARM,                    /* the rollup refresh at open */
    DQ_KIND_REFRESH,                 /* the periodic rollup refresh */
};

/* The dashboard is "in use" this long after a rollup query. */
#define DQ_IDLE_MS 60000

/* ------------------------------------------------------------------ */
/* Types */

/* Sums over the rows of one bucket (one day or hour of one key). */
struct dq_agg {
    int64_t n;          /* rows */
    int64_t completed;  /* status = 'completed' */
    int64_t failed;     /* status = 'failed' */
    int64_t prompt;     /* SUM(COALESCE(prompt_tokens, 0)) */
    int64_t completion; /* SUM(COALESCE(completion_tokens, 0)) */
    int64_t retries;    /* SUM(retry_count) */
    int64_t fallbacks;  /* SUM(fallback_used) */
    int64_t lat_n;      /* non-NULL latency_ms values */
    int64_t ttft_n;     /* non-NULL time_to_first_token_ms values */
    double lat_sum, ttft_sum;
    double lat_min, lat_max; /* over the non-NULL latencies */
    double ts_min, ts_max;
};

/* One row of a feed query (DQ_TR_COLS, DQ_OBS_COLS); strings are
 * SQLite's, valid until the next step. */
struct dq_frow {
    int64_t id;
    const char *node, *model, *status, *tag;
    double lat, ttft, ts; /* NaN = NULL */
    int64_t prompt, completion, retries, fallbacks;
};

/* Interned strings, by id. */
struct dq_strtab {
    char **s; /* owned, each owned */
    uint32_t n, cap;
    uint32_t *slot;  /* owned: open addressing, id + 1, 0 = empty */
    uint32_t nslots; /* 0 or a power of two */
};

struct dq_cell {
    int64_t t;     /* bucket start, unix seconds */
    uint32_t a, b; /* strtab ids, or DQ_NONE */
    bool used;
    struct dq_agg agg;
};

struct dq_map {
    struct dq_cell *c; /* owned: open addressing */
    size_t n, cap;     /* cap is 0 or a power of two */
};

enum dq_mapid {
    DQ_USAGE,  /* request_traces: (node_id, model, day) */
    DQ_TAGS,   /* request_traces: (tag, -, day) */
    DQ_MODELS, /* latency_observations: (model_name, -, day) */
    DQ_HOURS,  /* latency_observations: (-, -, hour) */
    DQ_NMAPS
};

struct dq_set {
    struct dq_strtab strs;
    struct dq_map m[DQ_NMAPS];
    size_t max_cells; /* per map, and strings */
};

/* Which rows of a feed go into which buckets. */
struct dq_filter {
    double lo, hi;      /* keep lo <= timestamp <= hi */
    int64_t bmin, bmax; /* keep rows whose bucket start is in [bmin, bmax] */
};

enum dq_tbl { DQ_TR, DQ_OBS, DQ_NTBL };

/* Rollup state of one table. */
struct dq_tstate {
    int64_t hwm;          /* every row with id <= hwm is in the maps */
    int64_t skipped;      /* rows left out for their timestamp */
    double min_ts;        /* MIN(timestamp) at the last refresh; NaN: none */
    uint64_t verified_ns; /* monotonic time of the last row count */
    bool built;
    bool disabled; /* past max_cells: queries aggregate rows */
};

struct dq_rollup {
    pthread_mutex_t mu;
    struct dq_set set[DQ_NTBL];
    struct dq_tstate ts[DQ_NTBL];
};

struct dq_row {
    const char *a, *b; /* borrowed from a dq_set's strtab */
    int64_t t;
    struct dq_agg agg;
};

struct dq_rows {
    struct dq_row *v; /* owned */
    size_t n, cap;
};

struct dashq_conn {
    struct dashq *q;      /* borrowed: for the progress handler */
    struct sqlite3 *db;   /* owned; opened on the pool on first use */
    uint64_t deadline_ns; /* pool thread: 0 = none */
    bool busy;            /* loop thread: lent to a running request */
};

struct dashq_req {
    uv_work_t work;
    struct dashq *q;         /* borrowed */
    struct dashq_req *next;  /* waiting list */
    struct dashq_conn *conn; /* lent while running; NULL when canceled */
    int kind;                /* enum dashq_kind or DQ_KIND_* */
    struct dashq_params p;   /* normalised; strings point into strs */
    const char *sql;         /* exec hook; points into strs */
    dashq_cb cb;
    void *ud;
    bool canceled;
    bool opened; /* this run opened conn->db */
    int rc;
    struct buf out;
    char err[DQ_ERR_MAX];
    char strs[]; /* copies of the parameter strings */
};

struct dashq {
    /* Immutable after dashq_open(). */
    uv_loop_t *loop; /* borrowed */
    char path[DQ_PATH_MAX];
    struct dashq_opts opts;

    atomic_bool closing;
    struct dq_rollup ru; /* pool threads, under ru.mu */

    /* Loop thread only. */
    struct dashq_conn *conns; /* owned: opts.max_running */
    struct dashq_req *wait_head, *wait_tail;
    int inflight; /* works on the pool, canceled ones included */
    bool closer_queued;
    uv_timer_t refresher; /* keeps the rollup fresh while in use */
    bool refresher_open;  /* until its close callback */
    bool refreshing;      /* a warm-up or refresh job is on the pool */
    uint64_t last_use_ms; /* uv_now() at the last rollup query */
    dashq_close_cb close_cb;
    void *close_ud;
    uv_work_t closer;
    struct dashq_stats st;
};

/* What a query function gets. */
struct dq_ctx {
    struct dashq *q;
    struct dashq_conn *conn;
    struct sqlite3 *db;
    const struct dashq_params *p;
    double now;
    struct buf *out;
    char *err;
    size_t errlen;
};

/* ------------------------------------------------------------------ */
/* Errors */

static int dq_fail(struct dq_ctx *c, int rc, const char *fmt, ...)
    HERD_PRINTF(3, 4);

static int
dq_fail(struct dq_ctx *c, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* A SQLite result code as a negative errno, with the message. */
static int
dq_sqlfail(struct dq_ctx *c, int src, const char *what)
{
    int rc;

    switch (src & 0xff) {
    case SQLITE_INTERRUPT:
        if (atomic_load(&c->q->closing))
            return dq_fail(c, -ECANCELED, "%s: the service is closing", what);
        return dq_fail(c, -ETIMEDOUT, "%s: the query took longer than %d ms",
                       what, c->q->opts.query_timeout_ms);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        rc = -EBUSY;
        break;
    case SQLITE_READONLY:
        rc = -EROFS;
        break;
    case SQLITE_NOMEM:
        rc = -ENOMEM;
        break;
    default:
        rc = -EIO;
        break;
    }
    return dq_fail(c, rc, "%s: %s", what, sqlite3_errmsg(c->db));
}

static int
dq_outfail(struct dq_ctx *c, int rc)
{
    if (rc == -E2BIG)
        return dq_fail(c, rc, "the answer is larger than %zu bytes",
                       c->q->opts.max_json_bytes);
    if (rc == -ENOMEM)
        return dq_fail(c, rc, "out of memory");
    return rc;
}

/* ------------------------------------------------------------------ */
/* JSON output: a sticky error, commas by nesting level */

struct dq_out {
    struct buf *b;
    int rc; /* the first append error; later appends do nothing */
    int depth;
    bool first[DQ_DEPTH_MAX];
    bool after_key;
};

static void
dq_raw(struct dq_out *o, const char *s, size_t n)
{
    if (o->rc == 0)
        o->rc = buf_append(o->b, s, n);
}

static void
dq_lit(struct dq_out *o, const char *s)
{
    dq_raw(o, s, strlen(s));
}

/* Before a value: the comma, unless it follows a key or opens a level. */
static void
dq_pre(struct dq_out *o)
{
    if (o->after_key) {
        o->after_key = false;
        return;
    }
    if (o->depth > 0) {
        if (!o->first[o->depth - 1])
            dq_lit(o, ",");
        o->first[o->depth - 1] = false;
    }
}

static void
dq_begin(struct dq_out *o, const char *tok)
{
    dq_pre(o);
    dq_lit(o, tok);
    if (o->depth >= DQ_DEPTH_MAX) {
        o->rc = o->rc != 0 ? o->rc : -EINVAL;
        return;
    }
    o->first[o->depth++] = true;
}

static void
dq_end(struct dq_out *o, const char *tok)
{
    dq_lit(o, tok);
    if (o->depth > 0)
        o->depth--;
}

static void
dq_key(struct dq_out *o, const char *k)
{
    dq_pre(o);
    dq_lit(o, "\"");
    dq_lit(o, k);
    dq_lit(o, "\":");
    o->after_key = true;
}

static void
dq_null(struct dq_out *o)
{
    dq_pre(o);
    dq_lit(o, "null");
}

static void
dq_bool(struct dq_out *o, bool v)
{
    dq_pre(o);
    dq_lit(o, v ? "true" : "false");
}

static void
dq_int(struct dq_out *o, int64_t v)
{
    char s[24];

    snprintf(s, sizeof(s), "%" PRId64, v);
    dq_pre(o);
    dq_lit(o, s);
}

/* The shortest %g that reads back as v (Python's repr, give or take
 * the ".0" of integral values); null for NaN and infinities. */
static void
dq_dbl(struct dq_out *o, double v)
{
    char s[40];
    int prec;

    if (!isfinite(v)) {
        dq_null(o);
        return;
    }
    for (prec = 15; prec < 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    if (prec == 17)
        snprintf(s, sizeof(s), "%.17g", v);
    dq_pre(o);
    dq_lit(o, s);
}

/* Python's round(v, digits): printf rounds the exact binary value, as
 * Python does. */
static void
dq_fixed(struct dq_out *o, double v, int digits)
{
    char s[64];

    if (!isfinite(v)) {
        dq_null(o);
        return;
    }
    snprintf(s, sizeof(s), "%.*f", digits, v);
    dq_pre(o);
    dq_lit(o, s);
}

static void
dq_str(struct dq_out *o, const char *s, size_t n)
{
    dq_pre(o);
    if (o->rc == 0)
        o->rc = json_append_str(o->b, s != NULL ? s : "", s != NULL ? n : 0);
}

static void
dq_strz(struct dq_out *o, const char *s)
{
    dq_str(o, s, s != NULL ? strlen(s) : 0);
}

static void
dq_kv_int(struct dq_out *o, const char *k, int64_t v)
{
    dq_key(o, k);
    dq_int(o, v);
}

static void
dq_kv_dbl(struct dq_out *o, const char *k, double v)
{
    dq_key(o, k);
    dq_dbl(o, v);
}

static void
dq_kv_str(struct dq_out *o, const char *k, const char *v)
{
    dq_key(o, k);
    dq_strz(o, v);
}

/* How ollama-herd turns an average into JSON. */
enum dq_round {
    DQ_R1,        /* round(v, 1); null when there is no value */
    DQ_R1_OR0,    /* round(v, 1) if v else 0 */
    DQ_R1_ORNULL, /* round(v, 1) if v else None */
};

static void
dq_kv_avg(struct dq_out *o, const char *k, double sum, int64_t n,
          enum dq_round how)
{
    double v = n > 0 ? sum / (double)n : NAN;
    bool truthy = n > 0 && v != 0;

    dq_key(o, k);
    if (how == DQ_R1 ? n > 0 : truthy)
        dq_fixed(o, v, 1);
    else if (how == DQ_R1_OR0)
        dq_int(o, 0);
    else
        dq_null(o);
}

static void
dq_kv_r1(struct dq_out *o, const char *k, double v)
{
    dq_key(o, k);
    dq_fixed(o, v, 1);
}

/* ------------------------------------------------------------------ */
/* Aggregates */

static void
dq_add64(int64_t *a, int64_t v)
{
    if (__builtin_add_overflow(*a, v, a))
        *a = v > 0 ? INT64_MAX : INT64_MIN; /* saturate, never wrap */
}

static void
dq_agg_init(struct dq_agg *a)
{
    memset(a, 0, sizeof(*a));
    a->lat_min = a->ts_min = INFINITY;
    a->lat_max = a->ts_max = -INFINITY;
}

static void
dq_agg_add(struct dq_agg *a, const struct dq_frow *r)
{
    a->n++;
    if (r->status != NULL && strcmp(r->status, "completed") == 0)
        a->completed++;
    else if (r->status != NULL && strcmp(r->status, "failed") == 0)
        a->failed++;
    dq_add64(&a->prompt, r->prompt);
    dq_add64(&a->completion, r->completion);
    dq_add64(&a->retries, r->retries);
    dq_add64(&a->fallbacks, r->fallbacks);
    if (!isnan(r->lat)) {
        a->lat_n++;
        a->lat_sum += r->lat;
        a->lat_min = fmin(a->lat_min, r->lat);
        a->lat_max = fmax(a->lat_max, r->lat);
    }
    if (!isnan(r->ttft)) {
        a->ttft_n++;
        a->ttft_sum += r->ttft;
    }
    a->ts_min = fmin(a->ts_min, r->ts);
    a->ts_max = fmax(a->ts_max, r->ts);
}

static void
dq_agg_merge(struct dq_agg *a, const struct dq_agg *b)
{
    dq_add64(&a->n, b->n);
    dq_add64(&a->completed, b->completed);
    dq_add64(&a->failed, b->failed);
    dq_add64(&a->prompt, b->prompt);
    dq_add64(&a->completion, b->completion);
    dq_add64(&a->retries, b->retries);
    dq_add64(&a->fallbacks, b->fallbacks);
    dq_add64(&a->lat_n, b->lat_n);
    dq_add64(&a->ttft_n, b->ttft_n);
    a->lat_sum += b->lat_sum;
    a->ttft_sum += b->ttft_sum;
    a->lat_min = fmin(a->lat_min, b->lat_min);
    a->lat_max = fmax(a->lat_max, b->lat_max);
    a->ts_min = fmin(a->ts_min, b->ts_min);
    a->ts_max = fmax(a->ts_max, b->ts_max);
}

/* CAST(ts / size AS INTEGER) * size, as ollama-herd's SQL buckets. ts is
 * finite and |ts| <= DQ_TS_LIMIT. */
static int64_t
dq_bucket(double ts, double size)
{
    return (int64_t)(ts / size) * (int64_t)size;
}

static double
dq_map_size(enum dq_mapid m)
{
    return m == DQ_HOURS ? DQ_HOUR_S : DQ_DAY_S;
}

/* ------------------------------------------------------------------ */
/* Interned strings */

static uint64_t
dq_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int
dq_strtab_rehash(struct dq_strtab *t)
{
    uint32_t ns = t->nslots != 0 ? t->nslots * 2 : 64;
    uint32_t *slot = calloc(ns, sizeof(*slot));
    uint32_t i;

    if (slot == NULL)
        return -ENOMEM;
    for (i = 0; i < t->n; i++) {
        uint64_t h = dq_hash_str(t->s[i]) & (ns - 1);

        while (slot[h] != 0)
            h = (h + 1) & (ns - 1);
        slot[h] = i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->nslots = ns;
    return 0;
}

static int
dq_strtab_add(struct dq_strtab *t, const char *s, uint64_t h, uint32_t *id)
{
    char *copy;

    if (t->n == t->cap) {
        uint32_t cap = t->cap != 0 ? t->cap * 2 : 32;
        char **v = realloc(t->s, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        t->s = v;
        t->cap = cap;
    }
    copy = strdup(s);
    if (copy == NULL)
        return -ENOMEM;
    while (t->slot[h] != 0)
        h = (h + 1) & (t->nslots - 1);
    t->s[t->n] = copy;
    t->slot[h] = ++t->n;
    *id = t->n - 1;
    return 0;
}

/* The id of s, added when new. 0, -ENOMEM, or -E2BIG past max. */
static int
dq_strtab_intern(struct dq_strtab *t, const char *s, size_t max, uint32_t *id)
{
    uint64_t h;
    int rc;

    if (s == NULL)
        s = "";
    if ((size_t)(t->n + 1) * 2 > t->nslots) {
        rc = dq_strtab_rehash(t);
        if (rc != 0)
            return rc;
    }
    h = dq_hash_str(s) & (t->nslots - 1);
    while (t->slot[h] != 0) {
        if (strcmp(t->s[t->slot[h] - 1], s) == 0) {
            *id = t->slot[h] - 1;
            return 0;
        }
        h = (h + 1) & (t->nslots - 1);
    }
    if (t->n >= max || t->n >= DQ_NONE - 1)
        return -E2BIG;
    return dq_strtab_add(t, s, h, id);
}

/* The id of s, or DQ_NONE when it was never interned. */
static uint32_t
dq_strtab_find(const struct dq_strtab *t, const char *s)
{
    uint64_t h;

    if (t->nslots == 0)
        return DQ_NONE;
    for (h = dq_hash_str(s) & (t->nslots - 1); t->slot[h] != 0;
         h = (h + 1) & (t->nslots - 1))
        if (strcmp(t->s[t->slot[h] - 1], s) == 0)
            return t->slot[h] - 1;
    return DQ_NONE;
}

static const char *
dq_strtab_get(const struct dq_strtab *t, uint32_t id)
{
    return id == DQ_NONE ? NULL : t->s[id];
}

static void
dq_strtab_free(struct dq_strtab *t)
{
    uint32_t i;

    for (i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->slot);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------ */
/* Bucket maps */

static uint64_t
dq_hash_key(uint32_t a, uint32_t b, int64_t t)
{
    uint64_t x =
        ((uint64_t)a << 32 | b) ^ ((uint64_t)t * 0x9e3779b97f4a7c15ULL);

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static struct dq_cell *
dq_map_slot(struct dq_cell *cells, size_t cap, uint32_t a, uint32_t b,
            int64_t t)
{
    size_t i = dq_hash_key(a, b, t) & (cap - 1);

    while (cells[i].used &&
           !(cells[i].a == a && cells[i].b == b && cells[i].t == t))
        i = (i + 1) & (cap - 1);
    return &cells[i];
}

static int
dq_map_resize(struct dq_map *m, size_t cap)
{
    struct dq_cell *cells = calloc(cap, sizeof(*cells));
    size_t i;

    if (cells == NULL)
        return -ENOMEM;
    for (i = 0; i < m->cap; i++) {
        const struct dq_cell *src = &m->c[i];

        if (src->used)
            *dq_map_slot(cells, cap, src->a, src->b, src->t) = *src;
    }
    free(m->c);
    m->c = cells;
    m->cap = cap;
    return 0;
}

/* The sums of (a, b, t), added when new. 0, -ENOMEM, -E2BIG past max. */
static int
dq_map_get(struct dq_map *m, uint32_t a, uint32_t b, int64_t t, size_t max,
           struct dq_agg **out)
{
    struct dq_cell *cell;
    int rc;

    if ((m->n + 1) * 2 > m->cap) {
        rc = dq_map_resize(m, m->cap != 0 ? m->cap * 2 : 64);
        if (rc != 0)
            return rc;
    }
    cell = dq_map_slot(m->c, m->cap, a, b, t);
    if (!cell->used) {
        if (m->n >= max)
            return -E2BIG;
        cell->used = true;
        cell->a = a;
        cell->b = b;
        cell->t = t;
        dq_agg_init(&cell->agg);
        m->n++;
    }
    *out = &cell->agg;
    return 0;
}

/* Removes the cells whose bucket starts before t. */
static int
dq_map_drop_before(struct dq_map *m, int64_t t)
{
    size_t i, kept = 0;

    for (i = 0; i < m->cap; i++) {
        if (m->c[i].used && m->c[i].t < t)
            m->c[i].used = false;
        else if (m->c[i].used)
            kept++;
    }
    m->n = kept;
    return m->cap != 0 ? dq_map_resize(m, m->cap) : 0; /* re-probe */
}

static void
dq_set_init(struct dq_set *s, size_t max_cells)
{
    memset(s, 0, sizeof(*s));
    s->max_cells = max_cells;
}

static void
dq_set_free(struct dq_set *s)
{
    size_t max = s->max_cells;
    int m;

    dq_strtab_free(&s->strs);
    for (m = 0; m < DQ_NMAPS; m++)
        free(s->m[m].c);
    dq_set_init(s, max);
}

static int
dq_set_cell(struct dq_set *s, enum dq_mapid m, const char *a, const char *b,
            int64_t t, struct dq_agg **out)
{
    uint32_t ia = DQ_NONE, ib = DQ_NONE;
    int rc = 0;

    if (m == DQ_USAGE || m == DQ_TAGS || m == DQ_MODELS)
        rc = dq_strtab_intern(&s->strs, a, s->max_cells, &ia);
    if (rc == 0 && m == DQ_USAGE)
        rc = dq_strtab_intern(&s->strs, b, s->max_cells, &ib);
    if (rc == 0)
        rc = dq_map_get(&s->m[m], ia, ib, t, s->max_cells, out);
    return rc;
}

/* Adds one feed row to the maps in mask that the filter lets it into.
 * first: the row's first line (a trace with tags comes once per tag). */
static int
dq_set_add(struct dq_set *s, unsigned mask, const struct dq_frow *r, bool first,
           const struct dq_filter *f)
{
    struct dq_agg *agg;
    int m, rc;

    for (m = 0; m < DQ_NMAPS; m++) {
        int64_t t = dq_bucket(r->ts, dq_map_size(m));
        const char *a = NULL;

        if (!(mask & DQ_BIT(m)) || t < f->bmin || t > f->bmax)
            continue;
        if (m == DQ_USAGE && !first)
            continue;
        if (m == DQ_TAGS && r->tag == NULL)
            continue;
        a = m == DQ_USAGE ? r->node : m == DQ_TAGS ? r->tag : r->model;
        rc = dq_set_cell(s, m, a, r->model, t, &agg);
        if (rc != 0)
            return rc;
        dq_agg_add(agg, r);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* SQLite helpers (pool threads) */

static int
dq_prepare(struct dq_ctx *c, const char *sql, struct sqlite3_stmt **st,
           const char *what)
{
    if (sqlite3_prepare_v2(c->db, sql, -1, st, NULL) != SQLITE_OK)
        return dq_sqlfail(c, sqlite3_errcode(c->db), what);
    return 0;
}

static int
dq_exec(struct dq_ctx *c, const char *sql)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : dq_sqlfail(c, rc, sql);
}

static double
dq_col_real(struct sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL
               ? NAN
               : sqlite3_column_double(st, i);
}

static int64_t
dq_col_int0(struct sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL
               ? 0
               : sqlite3_column_int64(st, i);
}

static const char *
dq_col_text(struct sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* The first column of a one-row query as a double (NaN for NULL). */
static int
dq_query_real(struct dq_ctx *c, const char *sql, double *out)
{
    struct sqlite3_stmt *st = NULL;
    int rc = dq_prepare(c, sql, &st, sql);

    if (rc != 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = dq_col_real(st, 0);
        rc = 0;
    } else {
        rc = dq_sqlfail(c, rc, sql);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Feeds: rows into bucket maps */

/* Every feed selects these columns, in this order. */
#define DQ_TR_COLS                                                             \
    "r.id, r.node_id, r.model, r.status, r.latency_ms,"                        \
    " r.time_to_first_token_ms, r.prompt_tokens, r.completion_tokens,"         \
    " r.retry_count, r.fallback_used, r.timestamp"
#define DQ_TAGS_JOIN                                                           \
    " LEFT JOIN json_each(CASE WHEN json_valid(r.tags) THEN r.tags END) AS j"
#define DQ_OBS_COLS                                                            \
    "r.id, NULL, r.model_name, NULL, r.latency_ms, NULL, r.prompt_tokens,"     \
    " r.completion_tokens, NULL, NULL, r.timestamp, NULL"

/* By id: the rows appended since the high-water mark ?1. */
static const char *const dq_feed_id_sql[DQ_NTBL] = {
    "SELECT " DQ_TR_COLS ", j.value FROM request_traces AS r" DQ_TAGS_JOIN
    " WHERE r.id > ?1",
    "SELECT " DQ_OBS_COLS " FROM latency_observations AS r WHERE r.id > ?1",
};

/* By time: ?1 <= timestamp <= ?2 and id <= ?3. */
static const char *const dq_feed_ts_sql[DQ_NTBL] = {
    "SELECT " DQ_TR_COLS ", j.value FROM request_traces AS r INDEXED BY"
    " idx_traces_timestamp" DQ_TAGS_JOIN
    " WHERE r.timestamp >= ?1 AND r.timestamp <= ?2 AND r.id <= ?3",
    "SELECT " DQ_OBS_COLS " FROM latency_observations AS r INDEXED BY"
    " idx_latency_timestamp WHERE r.timestamp >= ?1 AND r.timestamp <= ?2"
    " AND r.id <= ?3",
};

/* By time, without the tags (the usage map needs none). */
static const char dq_feed_ts_notags_sql[] =
    "SELECT " DQ_TR_COLS ", NULL FROM request_traces AS r INDEXED BY"
    " idx_traces_timestamp WHERE r.timestamp >= ?1 AND r.timestamp <= ?2"
    " AND r.id <= ?3";

static const char *const dq_min_sql[DQ_NTBL] = {
    "SELECT MIN(timestamp) FROM request_traces",
    "SELECT MIN(timestamp) FROM latency_observations",
};

static const char *const dq_count_sql[DQ_NTBL] = {
    "SELECT COUNT(*) FROM request_traces",
    "SELECT COUNT(*) FROM latency_observations",
};

static const unsigned dq_tbl_maps[DQ_NTBL] = {
    DQ_BIT(DQ_USAGE) | DQ_BIT(DQ_TAGS),
    DQ_BIT(DQ_MODELS) | DQ_BIT(DQ_HOURS),
};

/* The map that counts every row of a table once. */
static const enum dq_mapid dq_tbl_rowmap[DQ_NTBL] = {DQ_USAGE, DQ_MODELS};

static const struct dq_filter dq_all = {-DQ_FAR, DQ_FAR, INT64_MIN, INT64_MAX};

static void
dq_read_frow(struct sqlite3_stmt *st, struct dq_frow *r)
{
    r->id = sqlite3_column_int64(st, 0);
    r->node = dq_col_text(st, 1);
    r->model = dq_col_text(st, 2);
    r->status = dq_col_text(st, 3);
    r->lat = dq_col_real(st, 4);
    r->ttft = dq_col_real(st, 5);
    r->prompt = dq_col_int0(st, 6);
    r->completion = dq_col_int0(st, 7);
    r->retries = dq_col_int0(st, 8);
    r->fallbacks = dq_col_int0(st, 9);
    r->ts = dq_col_real(st, 10);
    r->tag = dq_col_text(st, 11);
}

/* Steps st to the end, adding its rows to s. *max_id (if any) gets the
 * largest id seen, *skipped (if any) counts rows with an unusable
 * timestamp. */
static int
dq_feed_run(struct dq_ctx *c, struct sqlite3_stmt *st, struct dq_set *s,
            unsigned mask, const struct dq_filter *f, int64_t *max_id,
            int64_t *skipped)
{
    struct dq_frow r;
    int64_t prev = INT64_MIN;
    bool first;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        dq_read_frow(st, &r);
        first = r.id != prev;
        prev = r.id;
        if (max_id != NULL && r.id > *max_id)
            *max_id = r.id;
        if (!isfinite(r.ts) || fabs(r.ts) > DQ_TS_LIMIT) {
            if (first && skipped != NULL)
                (*skipped)++;
            continue;
        }
        if (r.ts < f->lo || r.ts > f->hi)
            continue;
        rc = dq_set_add(s, mask, &r, first, f);
        if (rc != 0)
            return rc == -E2BIG ? dq_fail(c, rc, "more than %zu distinct keys",
                                          s->max_cells)
                                : dq_outfail(c, rc);
    }
    return rc == SQLITE_DONE ? 0 : dq_sqlfail(c, rc, "aggregate");
}

/* Rows with id > after (all rows for 0). */
static int
dq_feed_by_id(struct dq_ctx *c, enum dq_tbl tbl, struct dq_set *s,
              int64_t after, int64_t *max_id, int64_t *skipped)
{
    struct sqlite3_stmt *st = NULL;
    int rc = dq_prepare(c, dq_feed_id_sql[tbl], &st, "aggregate");

    if (rc != 0)
        return rc;
    sqlite3_bind_int64(st, 1, after);
    rc = dq_feed_run(c, st, s, dq_tbl_maps[tbl], &dq_all, max_id, skipped);
    sqlite3_finalize(st);
    return rc;
}

/* Rows in [f->lo, f->hi] with id <= max_id, into the maps of mask; the
 * rows of bucket f->bmax end before f->bmax + span. The SQL range is a
 * second wider than the filter: the filter decides, with the same
 * floating-point arithmetic as the rollup's buckets. */
static int
dq_feed_by_ts(struct dq_ctx *c, enum dq_tbl tbl, struct dq_set *s,
              unsigned mask, const struct dq_filter *f, int64_t max_id,
              double span)
{
    struct sqlite3_stmt *st = NULL;
    const char *sql = dq_feed_ts_sql[tbl];
    double lo = f->lo, hi = f->hi;
    int rc;

    if (tbl == DQ_TR && !(mask & DQ_BIT(DQ_TAGS)))
        sql = dq_feed_ts_notags_sql;
    if (f->bmin != INT64_MIN)
        lo = fmax(lo, (double)f->bmin);
    if (f->bmax != INT64_MAX)
        hi = fmin(hi, (double)f->bmax + span);
    rc = dq_prepare(c, sql, &st, "aggregate");
    if (rc != 0)
        return rc;
    sqlite3_bind_double(st, 1, lo - 1.0);
    sqlite3_bind_double(st, 2, hi + 1.0);
    sqlite3_bind_int64(st, 3, max_id);
    rc = dq_feed_run(c, st, s, mask, f, NULL, NULL);
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The rollup (pool threads, under ru.mu) */

static int64_t
dq_map_rows(const struct dq_map *m)
{
    int64_t n = 0;
    size_t i;

    for (i = 0; i < m->cap; i++)
        if (m->c[i].used)
            dq_add64(&n, m->c[i].agg.n);
    return n;
}

static void
dq_tstate_reset(struct dq_rollup *ru, enum dq_tbl tbl)
{
    dq_set_free(&ru->set[tbl]);
    ru->ts[tbl].hwm = 0;
    ru->ts[tbl].skipped = 0;
    ru->ts[tbl].built = false;
}

/* Aggregates every row again. */
static int
dq_rebuild(struct dq_ctx *c, enum dq_tbl tbl)
{
    struct dq_rollup *ru = &c->q->ru;
    struct dq_tstate *st = &ru->ts[tbl];
    int rc;

    dq_tstate_reset(ru, tbl);
    rc = dq_feed_by_id(c, tbl, &ru->set[tbl], 0, &st->hwm, &st->skipped);
    if (rc == 0) {
        st->built = true;
        st->disabled = false;
        st->verified_ns = clock_mono_ns();
    }
    return rc;
}

/* The oldest rows were deleted and the oldest row left is min_ts: drop
 * the buckets up to its day and aggregate that day again. */
static int
dq_redo_first_day(struct dq_ctx *c, enum dq_tbl tbl, double min_ts)
{
    struct dq_rollup *ru = &c->q->ru;
    struct dq_set *s = &ru->set[tbl];
    struct dq_filter f = dq_all;
    int64_t day;
    int m, rc = 0;

    if (isnan(min_ts)) { /* every row is gone */
        int64_t hwm = ru->ts[tbl].hwm;

        dq_tstate_reset(ru, tbl);
        ru->ts[tbl].hwm = hwm;
        ru->ts[tbl].built = true;
        return 0;
    }
    if (!isfinite(min_ts) || fabs(min_ts) > DQ_TS_LIMIT)
        return dq_rebuild(c, tbl);
    day = dq_bucket(min_ts, DQ_DAY_S);
    for (m = 0; m < DQ_NMAPS && rc == 0; m++)
        if (dq_tbl_maps[tbl] & DQ_BIT(m))
            rc = dq_map_drop_before(&s->m[m], day + (int64_t)DQ_DAY_S);
    if (rc != 0)
        return dq_outfail(c, rc);
    f.bmin = day;
    f.bmax = day + (int64_t)DQ_DAY_S - 1;
    return dq_feed_by_ts(c, tbl, s, dq_tbl_maps[tbl], &f, ru->ts[tbl].hwm, 1.0);
}

/* Every verify_s: the row count must match, or the table is rebuilt. */
static int
dq_verify(struct dq_ctx *c, enum dq_tbl tbl)
{
    struct dq_rollup *ru = &c->q->ru;
    struct dq_tstate *st = &ru->ts[tbl];
    uint64_t now = clock_mono_ns();
    double count;
    int rc;

    if (c->q->opts.verify_s > 0 &&
        now - st->verified_ns <
            (uint64_t)c->q->opts.verify_s * (uint64_t)NS_PER_SEC)
        return 0;
    rc = dq_query_real(c, dq_count_sql[tbl], &count);
    if (rc != 0)
        return rc;
    st->verified_ns = now;
    if ((int64_t)count ==
        dq_map_rows(&ru->set[tbl].m[dq_tbl_rowmap[tbl]]) + st->skipped)
        return 0;
    return dq_rebuild(c, tbl);
}

static int
dq_refresh_built(struct dq_ctx *c, enum dq_tbl tbl, double min_ts)
{
    struct dq_rollup *ru = &c->q->ru;
    struct dq_tstate *st = &ru->ts[tbl];
    int rc = 0;

    if (!isnan(st->min_ts) && (isnan(min_ts) || min_ts > st->min_ts))
        rc = dq_redo_first_day(c, tbl, min_ts);
    if (rc == 0)
        rc = dq_feed_by_id(c, tbl, &ru->set[tbl], st->hwm, &st->hwm,
                           &st->skipped);
    if (rc == 0)
        rc = dq_verify(c, tbl);
    return rc;
}

/* Brings a table's rollup up to date with this transaction's snapshot.
 * A rollup past max_cells is disabled (not an error: the queries then
 * aggregate rows); other errors leave it to be rebuilt next time. */
static int
dq_refresh(struct dq_ctx *c, enum dq_tbl tbl)
{
    struct dq_rollup *ru = &c->q->ru;
    struct dq_tstate *st = &ru->ts[tbl];
    uint64_t deadline = c->conn->deadline_ns;
    bool retry;
    double min_ts = NAN;
    int rc;

    retry = st->disabled &&
            (c->q->opts.verify_s < 0 ||
             clock_mono_ns() - st->verified_ns >=
                 (uint64_t)c->q->opts.verify_s * (uint64_t)NS_PER_SEC);
    if (st->disabled && !retry)
        return 0;
    c->conn->deadline_ns = 0; /* a first build may take a while */
    rc = dq_query_real(c, dq_min_sql[tbl], &min_ts);
    if (rc == 0 && st->built)
        rc = dq_refresh_built(c, tbl, min_ts);
    else if (rc == 0)
        rc = dq_rebuild(c, tbl);
    c->conn->deadline_ns = deadline;
    if (rc == 0) {
        st->min_ts = min_ts;
        return 0;
    }
    dq_tstate_reset(ru, tbl);
    st->min_ts = NAN;
    if (rc != -E2BIG)
        return rc;
    st->disabled = true;
    st->verified_ns = clock_mono_ns();
    return 0;
}

/* ------------------------------------------------------------------ */
/* Windows: rollup buckets plus edges aggregated from rows */

static int
dq_rows_push(struct dq_rows *rs, const char *a, const char *b, int64_t t,
             const struct dq_agg *agg)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap != 0 ? rs->cap * 2 : 64;
        struct dq_row *v = realloc(rs->v, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n].a = a;
    rs->v[rs->n].b = b;
    rs->v[rs->n].t = t;
    rs->v[rs->n].agg = *agg;
    rs->n++;
    return 0;
}

/* Appends the cells of s->m[m] whose bucket is in [lo, hi], except
 * buckets skip1 and skip2. */
static int
dq_rows_from(struct dq_rows *rs, const struct dq_set *s, enum dq_mapid m,
             int64_t lo, int64_t hi, int64_t skip1, int64_t skip2)
{
    const struct dq_map *map = &s->m[m];
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < map->cap; i++) {
        const struct dq_cell *cell = &map->c[i];

        if (!cell->used || cell->t < lo || cell->t > hi || cell->t == skip1 ||
            cell->t == skip2)
            continue;
        rc =
            dq_rows_push(rs, dq_strtab_get(&s->strs, cell->a),
                         dq_strtab_get(&s->strs, cell->b), cell->t, &cell->agg);
    }
    return rc;
}

/* Whether bucket t of map holds a row outside [lo, hi]. */
static bool
dq_bucket_partial(const struct dq_map *map, int64_t t, double lo, double hi)
{
    size_t i;

    for (i = 0; i < map->cap; i++) {
        const struct dq_cell *cell = &map->c[i];

        if (cell->used && cell->t == t &&
            (cell->agg.ts_min < lo || cell->agg.ts_max > hi))
            return true;
    }
    return false;
}

/* One partial bucket, aggregated from its rows into edge. */
static int
dq_edge(struct dq_ctx *c, enum dq_tbl tbl, enum dq_mapid m, int64_t t,
        double lo, double hi, struct dq_set *edge)
{
    struct dq_filter f = {lo, hi, t, t};

    return dq_feed_by_ts(c, tbl, edge, DQ_BIT(m), &f, c->q->ru.ts[tbl].hwm,
                         dq_map_size(m));
}

static int
dq_window_rollup(struct dq_ctx *c, enum dq_tbl tbl, enum dq_mapid m, double lo,
                 double hi, struct dq_set *edge, struct dq_rows *rs)
{
    const struct dq_set *s = &c->q->ru.set[tbl];
    double size = dq_map_size(m);
    int64_t first = lo > -DQ_FAR ? dq_bucket(lo, size) : INT64_MIN;
    int64_t last = hi < DQ_FAR ? dq_bucket(hi, size) : INT64_MAX;
    int64_t skip1 = INT64_MIN, skip2 = INT64_MIN;
    int rc = 0;

    if (first != INT64_MIN && dq_bucket_partial(&s->m[m], first, lo, hi))
        skip1 = first;
    if (last != INT64_MAX && dq_bucket_partial(&s->m[m], last, lo, hi))
        skip2 = last;
    if (skip1 != INT64_MIN)
        rc = dq_edge(c, tbl, m, skip1, lo, hi, edge);
    if (rc == 0 && skip2 != INT64_MIN && skip2 != skip1)
        rc = dq_edge(c, tbl, m, skip2, lo, hi, edge);
    if (rc == 0)
        rc = dq_outfail(c, dq_rows_from(rs, s, m, first, last, skip1, skip2));
    return rc;
}

/*
 * The buckets of map m with lo <= timestamp <= hi (-DQ_FAR/DQ_FAR: no
 * bound), into rs. Strings point into the rollup or into edge, which
 * the caller frees after using rs.
 */
static int
dq_window(struct dq_ctx *c, enum dq_tbl tbl, enum dq_mapid m, double lo,
          double hi, struct dq_set *edge, struct dq_rows *rs)
{
    const struct dq_tstate *st = &c->q->ru.ts[tbl];
    struct dq_filter f = {lo, hi, INT64_MIN, INT64_MAX};
    int rc;

    if (lo > hi)
        return 0;
    if (st->built && !st->disabled)
        rc = dq_window_rollup(c, tbl, m, lo, hi, edge, rs);
    else if (lo <= -DQ_FAR && hi >= DQ_FAR)
        rc = dq_feed_by_id(c, tbl, edge, 0, NULL, NULL);
    else
        rc = dq_feed_by_ts(c, tbl, edge, DQ_BIT(m), &f, INT64_MAX, 0.0);
    if (rc == 0)
        rc = dq_outfail(c, dq_rows_from(rs, edge, m, INT64_MIN, INT64_MAX,
                                        INT64_MIN, INT64_MIN));
    return rc;
}

static int
dq_strcmp(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static int
dq_cmp_t(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* Grouping and ordering of struct dq_row, for qsort. */
static int
dq_by_a(const void *x, const void *y)
{
    return dq_strcmp(((const struct dq_row *)x)->a,
                     ((const struct dq_row *)y)->a);
}

static int
dq_by_a_t(const void *x, const void *y)
{
    const struct dq_row *a = x, *b = y;
    int d = dq_strcmp(a->a, b->a);

    return d != 0 ? d : dq_cmp_t(a->t, b->t);
}

static int
dq_by_t_a(const void *x, const void *y)
{
    const struct dq_row *a = x, *b = y;
    int d = dq_cmp_t(a->t, b->t);

    return d != 0 ? d : dq_strcmp(a->a, b->a);
}

/* usage: day_bucket DESC, node_id, model */
static int
dq_by_tdesc_a_b(const void *x, const void *y)
{
    const struct dq_row *a = x, *b = y;
    int d = dq_cmp_t(b->t, a->t);

    if (d == 0)
        d = dq_strcmp(a->a, b->a);
    return d != 0 ? d : dq_strcmp(a->b, b->b);
}

/* summaries: count DESC, then the key (SQLite's GROUP BY order) */
static int
dq_by_ndesc_a(const void *x, const void *y)
{
    const struct dq_row *a = x, *b = y;
    int d = dq_cmp_t(b->agg.n, a->agg.n);

    return d != 0 ? d : dq_strcmp(a->a, b->a);
}

static void
dq_rows_sort(struct dq_rows *rs, int (*cmp)(const void *, const void *))
{
    if (rs->n > 1)
        qsort(rs->v, rs->n, sizeof(rs->v[0]), cmp);
}

/* Sorts by group, then sums the neighbours that group together. */
static void
dq_rows_group(struct dq_rows *rs, int (*group)(const void *, const void *))
{
    size_t i, out = 0;

    if (rs->n == 0)
        return;
    dq_rows_sort(rs, group);
    for (i = 1; i < rs->n; i++) {
        if (group(&rs->v[out], &rs->v[i]) == 0)
            dq_agg_merge(&rs->v[out].agg, &rs->v[i].agg);
        else
            rs->v[++out] = rs->v[i];
    }
    rs->n = out + 1;
}

/* ollama-herd's window: start_ts..end_ts when both are set, else the last
 * span seconds up to end_ts or now. */
static void
dq_span(const struct dq_ctx *c, double span, double *lo, double *hi)
{
    const struct dashq_params *p = c->p;

    *lo = p->start_ts > 0 && p->end_ts > 0 ? p->start_ts : c->now - span;
    *hi = p->end_ts > 0 ? p->end_ts : c->now;
}

/* ------------------------------------------------------------------ */
/* Rollup-backed queries */

static void
dq_emit_usage(struct dq_out *o, const struct dq_rows *rs)
{
    size_t i;

    for (i = 0; i < rs->n; i++) {
        const struct dq_row *r = &rs->v[i];

        dq_begin(o, "{");
        dq_kv_str(o, "node_id", r->a);
        dq_kv_str(o, "model", r->b);
        dq_kv_int(o, "day_bucket", r->t);
        dq_kv_int(o, "request_count", r->agg.n);
        dq_kv_int(o, "completed_count", r->agg.completed);
        dq_kv_int(o, "failed_count", r->agg.failed);
        dq_kv_avg(o, "avg_latency_ms", r->agg.lat_sum, r->agg.lat_n, DQ_R1_OR0);
        dq_kv_avg(o, "avg_ttft_ms", r->agg.ttft_sum, r->agg.ttft_n,
                  DQ_R1_ORNULL);
        dq_kv_int(o, "total_prompt_tokens", r->agg.prompt);
        dq_kv_int(o, "total_completion_tokens", r->agg.completion);
        dq_kv_int(o, "total_retries", r->agg.retries);
        dq_kv_int(o, "total_fallbacks", r->agg.fallbacks);
        dq_end(o, "}");
    }
}

/* {"days","data":[{node_id,model,day_bucket,...}]}, newest day first. */
static int
dq_q_usage(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows rs = {0};
    int rc;

    rc = dq_refresh(c, DQ_TR);
    if (rc == 0)
        rc = dq_window(c, DQ_TR, DQ_USAGE, c->now - c->p->days * DQ_DAY_S,
                       DQ_FAR, edge, &rs);
    if (rc == 0) {
        dq_rows_group(&rs, dq_by_tdesc_a_b);
        dq_begin(o, "{");
        dq_kv_int(o, "days", c->p->days);
        dq_key(o, "data");
        dq_begin(o, "[");
        dq_emit_usage(o, &rs);
        dq_end(o, "]");
        dq_end(o, "}");
    }
    free(rs.v);
    return rc;
}

static void
dq_totals(const struct dq_rows *rs, struct dq_agg *sum)
{
    size_t i;

    dq_agg_init(sum);
    for (i = 0; i < rs->n; i++)
        dq_agg_merge(sum, &rs->v[i].agg);
}

/* {total_requests,total_prompt_tokens,total_completion_tokens,
 *  total_tokens,models_count}, from latency_observations. */
static int
dq_q_overview(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows rs = {0};
    struct dq_agg sum;
    int rc;

    rc = dq_refresh(c, DQ_OBS);
    if (rc == 0)
        rc = dq_window(c, DQ_OBS, DQ_MODELS, -DQ_FAR, DQ_FAR, edge, &rs);
    if (rc == 0) {
        dq_rows_group(&rs, dq_by_a);
        dq_totals(&rs, &sum);
        dq_begin(o, "{");
        dq_kv_int(o, "total_requests", sum.n);
        dq_kv_int(o, "total_prompt_tokens", sum.prompt);
        dq_kv_int(o, "total_completion_tokens", sum.completion);
        dq_kv_int(o, "total_tokens", sum.prompt + sum.completion);
        dq_kv_int(o, "models_count", (int64_t)rs.n);
        dq_end(o, "}");
    }
    free(rs.v);
    return rc;
}

/* {"hours","data":[{hour_bucket,request_count,avg_latency_ms,
 *  total_prompt_tokens,total_completion_tokens}]}, oldest first. */
static int
dq_q_trends(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows rs = {0};
    double lo, hi;
    size_t i;
    int rc;

    dq_span(c, c->p->hours * DQ_HOUR_S, &lo, &hi);
    rc = dq_refresh(c, DQ_OBS);
    if (rc == 0)
        rc = dq_window(c, DQ_OBS, DQ_HOURS, lo, hi, edge, &rs);
    if (rc != 0)
        goto out;
    dq_rows_group(&rs, dq_by_t_a);
    dq_begin(o, "{");
    dq_kv_int(o, "hours", c->p->hours);
    dq_key(o, "data");
    dq_begin(o, "[");
    for (i = 0; i < rs.n; i++) {
        const struct dq_agg *a = &rs.v[i].agg;

        dq_begin(o, "{");
        dq_kv_int(o, "hour_bucket", rs.v[i].t);
        dq_kv_int(o, "request_count", a->n);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1);
        dq_kv_int(o, "total_prompt_tokens", a->prompt);
        dq_kv_int(o, "total_completion_tokens", a->completion);
        dq_end(o, "}");
    }
    dq_end(o, "]");
    dq_end(o, "}");
out:
    free(rs.v);
    return rc;
}

static void
dq_emit_model_daily(struct dq_out *o, const struct dq_rows *rs)
{
    size_t i;

    for (i = 0; i < rs->n; i++) {
        const struct dq_agg *a = &rs->v[i].agg;

        dq_begin(o, "{");
        dq_kv_str(o, "model_name", rs->v[i].a);
        dq_kv_int(o, "day_bucket", rs->v[i].t);
        dq_kv_int(o, "request_count", a->n);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1);
        dq_kv_int(o, "total_prompt_tokens", a->prompt);
        dq_kv_int(o, "total_completion_tokens", a->completion);
        dq_end(o, "}");
    }
}

static void
dq_emit_model_summary(struct dq_out *o, const struct dq_rows *rs)
{
    size_t i;

    for (i = 0; i < rs->n; i++) {
        const struct dq_agg *a = &rs->v[i].agg;

        dq_begin(o, "{");
        dq_kv_str(o, "model_name", rs->v[i].a);
        dq_kv_int(o, "total_requests", a->n);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1);
        dq_kv_r1(o, "min_latency_ms", a->lat_n > 0 ? a->lat_min : NAN);
        dq_kv_r1(o, "max_latency_ms", a->lat_n > 0 ? a->lat_max : NAN);
        dq_kv_int(o, "total_prompt_tokens", a->prompt);
        dq_kv_int(o, "total_completion_tokens", a->completion);
        dq_kv_dbl(o, "first_seen", a->ts_min);
        dq_kv_dbl(o, "last_seen", a->ts_max);
        dq_end(o, "}");
    }
}

/* {"days","daily":[...],"summary":[...]}: daily per model and day in
 * the window, summary per model over every row (ollama-herd's). */
static int
dq_q_models(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows daily = {0}, all = {0};
    struct dq_set edge2;
    double lo, hi;
    int rc;

    dq_set_init(&edge2, edge->max_cells);
    dq_span(c, c->p->days * DQ_DAY_S, &lo, &hi);
    rc = dq_refresh(c, DQ_OBS);
    if (rc == 0)
        rc = dq_window(c, DQ_OBS, DQ_MODELS, lo, hi, edge, &daily);
    if (rc == 0)
        rc = dq_window(c, DQ_OBS, DQ_MODELS, -DQ_FAR, DQ_FAR, &edge2, &all);
    if (rc == 0) {
        dq_rows_group(&daily, dq_by_a_t);
        dq_rows_group(&all, dq_by_a);
        dq_rows_sort(&all, dq_by_ndesc_a);
        dq_begin(o, "{");
        dq_kv_int(o, "days", c->p->days);
        dq_key(o, "daily");
        dq_begin(o, "[");
        dq_emit_model_daily(o, &daily);
        dq_end(o, "]");
        dq_key(o, "summary");
        dq_begin(o, "[");
        dq_emit_model_summary(o, &all);
        dq_end(o, "]");
        dq_end(o, "}");
    }
    free(daily.v);
    free(all.v);
    dq_set_free(&edge2);
    return rc;
}

static void
dq_emit_tag_data(struct dq_out *o, const struct dq_rows *rs)
{
    size_t i;

    for (i = 0; i < rs->n; i++) {
        const struct dq_agg *a = &rs->v[i].agg;

        dq_begin(o, "{");
        dq_kv_str(o, "tag", rs->v[i].a);
        dq_kv_int(o, "request_count", a->n);
        dq_kv_int(o, "completed_count", a->completed);
        dq_kv_int(o, "failed_count", a->failed);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1_OR0);
        dq_kv_avg(o, "avg_ttft_ms", a->ttft_sum, a->ttft_n, DQ_R1_ORNULL);
        dq_kv_int(o, "total_prompt_tokens", a->prompt);
        dq_kv_int(o, "total_completion_tokens", a->completion);
        dq_end(o, "}");
    }
}

static void
dq_emit_tag_summary(struct dq_out *o, const struct dq_rows *rs)
{
    size_t i;

    for (i = 0; i < rs->n; i++) {
        const struct dq_agg *a = &rs->v[i].agg;

        dq_begin(o, "{");
        dq_kv_str(o, "tag", rs->v[i].a);
        dq_kv_int(o, "total_requests", a->n);
        dq_kv_int(o, "completed_count", a->completed);
        dq_kv_int(o, "failed_count", a->failed);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1_OR0);
        dq_kv_int(o, "total_prompt_tokens", a->prompt);
        dq_kv_int(o, "total_completion_tokens", a->completion);
        dq_kv_dbl(o, "first_seen", a->ts_min);
        dq_kv_dbl(o, "last_seen", a->ts_max);
        dq_end(o, "}");
    }
}

/* {"days","data":[per tag in the window],"summary":[per tag, all
 * rows]}, both by request count, largest first. */
static int
dq_q_tags(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows data = {0}, all = {0};
    struct dq_set edge2;
    double lo, hi;
    int rc;

    dq_set_init(&edge2, edge->max_cells);
    dq_span(c, c->p->days * DQ_DAY_S, &lo, &hi);
    rc = dq_refresh(c, DQ_TR);
    if (rc == 0)
        rc = dq_window(c, DQ_TR, DQ_TAGS, lo, hi, edge, &data);
    if (rc == 0)
        rc = dq_window(c, DQ_TR, DQ_TAGS, -DQ_FAR, DQ_FAR, &edge2, &all);
    if (rc == 0) {
        dq_rows_group(&data, dq_by_a);
        dq_rows_sort(&data, dq_by_ndesc_a);
        dq_rows_group(&all, dq_by_a);
        dq_rows_sort(&all, dq_by_ndesc_a);
        dq_begin(o, "{");
        dq_kv_int(o, "days", c->p->days);
        dq_key(o, "data");
        dq_begin(o, "[");
        dq_emit_tag_data(o, &data);
        dq_end(o, "]");
        dq_key(o, "summary");
        dq_begin(o, "[");
        dq_emit_tag_summary(o, &all);
        dq_end(o, "]");
        dq_end(o, "}");
    }
    free(data.v);
    free(all.v);
    dq_set_free(&edge2);
    return rc;
}

/* {"days","data":[{tag,day_bucket,request_count,avg_latency_ms,
 *  total_tokens}]}, by day then tag. */
static int
dq_q_tags_daily(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_rows rs = {0};
    double lo, hi;
    size_t i;
    int rc;

    dq_span(c, c->p->days * DQ_DAY_S, &lo, &hi);
    rc = dq_refresh(c, DQ_TR);
    if (rc == 0)
        rc = dq_window(c, DQ_TR, DQ_TAGS, lo, hi, edge, &rs);
    if (rc != 0)
        goto out;
    dq_rows_group(&rs, dq_by_t_a);
    dq_begin(o, "{");
    dq_kv_int(o, "days", c->p->days);
    dq_key(o, "data");
    dq_begin(o, "[");
    for (i = 0; i < rs.n; i++) {
        const struct dq_agg *a = &rs.v[i].agg;

        dq_begin(o, "{");
        dq_kv_str(o, "tag", rs.v[i].a);
        dq_kv_int(o, "day_bucket", rs.v[i].t);
        dq_kv_int(o, "request_count", a->n);
        dq_kv_avg(o, "avg_latency_ms", a->lat_sum, a->lat_n, DQ_R1_OR0);
        dq_kv_int(o, "total_tokens", a->prompt + a->completion);
        dq_end(o, "}");
    }
    dq_end(o, "]");
    dq_end(o, "}");
out:
    free(rs.v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Row queries: traces */

/* How a selected column becomes JSON. */
enum dq_conv {
    DQ_RAW,  /* by SQLite type: integer, real, text, null */
    DQ_BOOL, /* integer -> true/false (NULL -> false) */
    DQ_JSON, /* two columns, text and json_valid(text): the JSON itself;
                null for NULL and ""; a string when not valid JSON */
};

struct dq_field {
    const char *name;
    enum dq_conv conv;
};

/* The columns of dq_trace_fields, a JSON one with its json_valid(). */
#define DQ_TRACE_COLS                                                          \
    "SELECT request_id, model, original_model, node_id, score,"                \
    " scores_breakdown, json_valid(scores_breakdown), status, latency_ms,"     \
    " time_to_first_token_ms, prompt_tokens, completion_tokens, retry_count,"  \
    " fallback_used, excluded_nodes, json_valid(excluded_nodes), client_ip,"   \
    " original_format, error_message, timestamp, tags, json_valid(tags),"      \
    " attempts, json_valid(attempts), queue_wait_ms, scored_candidates,"       \
    " json_valid(scored_candidates), endpoint"

/* ollama-herd's trace, then ours; events only for one request_id. */
static const struct dq_field dq_trace_fields[] = {
    {"request_id", DQ_RAW},
    {"model", DQ_RAW},
    {"original_model", DQ_RAW},
    {"node_id", DQ_RAW},
    {"score", DQ_RAW},
    {"scores_breakdown", DQ_JSON},
    {"status", DQ_RAW},
    {"latency_ms", DQ_RAW},
    {"time_to_first_token_ms", DQ_RAW},
    {"prompt_tokens", DQ_RAW},
    {"completion_tokens", DQ_RAW},
    {"retry_count", DQ_RAW},
    {"fallback_used", DQ_BOOL},
    {"excluded_nodes", DQ_JSON},
    {"client_ip", DQ_RAW},
    {"original_format", DQ_RAW},
    {"error_message", DQ_RAW},
    {"timestamp", DQ_RAW},
    {"tags", DQ_JSON},
    {"attempts", DQ_JSON},
    {"queue_wait_ms", DQ_RAW},
    {"scored_candidates", DQ_JSON},
    {"endpoint", DQ_RAW},
    {"events", DQ_JSON},
};

static void
dq_col(struct dq_out *o, struct sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        dq_int(o, sqlite3_column_int64(st, i));
        break;
    case SQLITE_FLOAT:
        dq_dbl(o, sqlite3_column_double(st, i));
        break;
    case SQLITE_NULL:
        dq_null(o);
        break;
    default:
        dq_str(o, dq_col_text(st, i), (size_t)sqlite3_column_bytes(st, i));
        break;
    }
}

static void
dq_col_json(struct dq_out *o, struct sqlite3_stmt *st, int i)
{
    const char *s = dq_col_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    if (s == NULL || n == 0) {
        dq_null(o);
    } else if (sqlite3_column_int(st, i + 1) != 0) {
        dq_pre(o);
        dq_raw(o, s, n);
    } else {
        dq_str(o, s, n);
    }
}

/* One object per row of st, nf fields. */
static int
dq_emit_rows(struct dq_ctx *c, struct sqlite3_stmt *st,
             const struct dq_field *f, size_t nf, struct dq_out *o,
             int64_t *nrows)
{
    int rc = SQLITE_DONE;
    size_t i;
    int col;

    *nrows = 0;
    while (o->rc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        dq_begin(o, "{");
        for (i = 0, col = 0; i < nf; i++) {
            dq_key(o, f[i].name);
            if (f[i].conv == DQ_JSON)
                dq_col_json(o, st, col++);
            else if (f[i].conv == DQ_BOOL)
                dq_bool(o, sqlite3_column_int64(st, col) != 0);
            else
                dq_col(o, st, col);
            col++;
        }
        dq_end(o, "}");
        (*nrows)++;
    }
    if (o->rc != 0)
        return 0; /* the caller reports it */
    return rc == SQLITE_DONE ? 0 : dq_sqlfail(c, rc, "traces");
}

/* A tag found verbatim in the stored JSON text: no character that a JSON
 * encoder may escape, so instr() can rule rows out before json_each. */
static bool
dq_tag_literal(const char *tag)
{
    const unsigned char *s;

    for (s = (const unsigned char *)tag; *s != '\0'; s++)
        if (*s < 0x20 || *s > 0x7e || strchr("\"\\/<>&", *s) != NULL)
            return false;
    return true;
}

/* How the newest rows holding a tag are found. */
enum dq_tagplan {
    DQ_TAG_NONE,  /* the rollup says no row in the window holds it */
    DQ_TAG_TIME,  /* newest first on idx_traces_timestamp: a common tag */
    DQ_TAG_INDEX, /* all of idx_traces_tags with instr(): a rare tag */
};

/* Relative cost of one idx_traces_tags entry (instr() on a short text)
 * against one row read in time order (row, instr(), json_each), and of
 * sorting one matching row; measured on the 1,000,000-row bench. */
#define DQ_TAG_INDEX_COST 0.15
#define DQ_TAG_SORT_COST  2.0

/* Sums the rows of map m for key a (NULL: every key) in buckets
 * [lo, hi]. */
static int64_t
dq_count(const struct dq_set *s, enum dq_mapid m, uint32_t a, int64_t lo,
         int64_t hi)
{
    const struct dq_map *map = &s->m[m];
    int64_t n = 0;
    size_t i;

    for (i = 0; i < map->cap; i++) {
        const struct dq_cell *cell = &map->c[i];

        if (cell->used && cell->t >= lo && cell->t <= hi &&
            (a == DQ_NONE || cell->a == a))
            dq_add64(&n, cell->agg.n);
    }
    return n;
}

/*
 * Picks the plan from the rollup's counts: the rows in the window's days
 * (all), those holding the tag (hits, an upper bound of the matches), and
 * every row of the table. Reading in time order costs about limit *
 * all / hits rows; the tag index costs a pass over all of it plus a sort
 * of the matches. Without a usable rollup: time order.
 */
static int
dq_tag_plan(struct dq_ctx *c, enum dq_tagplan *plan)
{
    const struct dashq_params *p = c->p;
    const struct dq_set *s = &c->q->ru.set[DQ_TR];
    int64_t lo = p->since > 0 ? dq_bucket(p->since, DQ_DAY_S) : INT64_MIN;
    int64_t hi = p->until > 0 ? dq_bucket(p->until, DQ_DAY_S) : INT64_MAX;
    double all, hits, rows, scan, index;
    uint32_t id;
    int rc;

    *plan = DQ_TAG_TIME;
    rc = dq_refresh(c, DQ_TR);
    if (rc != 0 || !c->q->ru.ts[DQ_TR].built || c->q->ru.ts[DQ_TR].disabled)
        return rc;
    id = dq_strtab_find(&s->strs, p->tag);
    hits = id == DQ_NONE ? 0 : (double)dq_count(s, DQ_TAGS, id, lo, hi);
    if (hits == 0) {
        *plan = DQ_TAG_NONE;
        return 0;
    }
    all = (double)dq_count(s, DQ_USAGE, DQ_NONE, lo, hi);
    rows = (double)dq_count(s, DQ_USAGE, DQ_NONE, INT64_MIN, INT64_MAX);
    scan = hits >= p->limit ? p->limit * all / hits : all;
    index = rows * DQ_TAG_INDEX_COST + hits * DQ_TAG_SORT_COST;
    if (dq_tag_literal(p->tag) && index < scan)
        *plan = DQ_TAG_INDEX;
    return 0;
}

static int
dq_traces_sql(const struct dashq_params *p, enum dq_tagplan plan,
              struct buf *sql)
{
    int rc =
        buf_appends(sql, plan == DQ_TAG_INDEX
                             ? DQ_TRACE_COLS " FROM request_traces"
                                             " INDEXED BY idx_traces_tags"
                                             " WHERE 1"
                             : DQ_TRACE_COLS " FROM request_traces WHERE 1");

    if (rc == 0 && p->model != NULL)
        rc = buf_appends(sql, " AND model = ?2");
    if (rc == 0 && p->node_id != NULL)
        rc = buf_appends(sql, " AND node_id = ?3");
    if (rc == 0 && p->status != NULL)
        rc = buf_appends(sql, " AND status = ?4");
    if (rc == 0 && p->since > 0)
        rc = buf_appends(sql, " AND timestamp >= ?5");
    if (rc == 0 && p->until > 0)
        rc = buf_appends(sql, " AND timestamp <= ?6");
    if (rc == 0 && p->tag != NULL && dq_tag_literal(p->tag))
        rc = buf_appends(sql, " AND instr(tags, ?7) > 0");
    if (rc == 0 && p->tag != NULL)
        rc = buf_appends(sql, " AND CASE WHEN json_valid(tags) THEN EXISTS"
                              " (SELECT 1 FROM json_each(request_traces.tags)"
                              " WHERE value = ?7) ELSE 0 END");
    if (rc == 0)
        rc = buf_appends(sql, " ORDER BY timestamp DESC, id DESC LIMIT ?1");
    return rc;
}

static void
dq_bind_opt(struct sqlite3_stmt *st, int i, const char *s)
{
    if (s != NULL)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* The trace list's statement, bound. */
static int
dq_traces_stmt(struct dq_ctx *c, enum dq_tagplan plan, struct sqlite3_stmt **st)
{
    const struct dashq_params *p = c->p;
    struct buf sql;
    int rc;

    buf_init(&sql, DQ_SQL_MAX);
    rc = dq_traces_sql(p, plan, &sql);
    if (rc != 0)
        rc = dq_outfail(c, rc);
    else
        rc = dq_prepare(c, sql.data, st, "traces");
    buf_cleanup(&sql);
    if (rc != 0)
        return rc;
    sqlite3_bind_int(*st, 1, p->limit);
    dq_bind_opt(*st, 2, p->model);
    dq_bind_opt(*st, 3, p->node_id);
    dq_bind_opt(*st, 4, p->status);
    if (p->since > 0)
        sqlite3_bind_double(*st, 5, p->since);
    if (p->until > 0)
        sqlite3_bind_double(*st, 6, p->until);
    dq_bind_opt(*st, 7, p->tag);
    return 0;
}

/* {"traces":[...]}, newest first, with the filters. */
static int
dq_q_traces(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    enum dq_tagplan plan = DQ_TAG_TIME;
    struct sqlite3_stmt *st = NULL;
    int64_t n;
    int rc = 0;

    (void)edge;
    if (c->p->tag != NULL)
        rc = dq_tag_plan(c, &plan);
    if (rc != 0)
        return rc;
    if (plan == DQ_TAG_NONE) {
        dq_lit(o, "{\"traces\":[]}");
        return 0;
    }
    rc = dq_traces_stmt(c, plan, &st);
    if (rc != 0)
        return rc;
    dq_begin(o, "{");
    dq_key(o, "traces");
    dq_begin(o, "[");
    rc = dq_emit_rows(c, st, dq_trace_fields, DQ_NELEM(dq_trace_fields) - 1, o,
                      &n);
    dq_end(o, "]");
    dq_end(o, "}");
    sqlite3_finalize(st);
    return rc;
}

/* {"request_id","traces":[every row, oldest first, with events]}. */
static int
dq_q_trace(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct sqlite3_stmt *st = NULL;
    int64_t n = 0;
    int rc;

    (void)edge;
    rc = dq_prepare(c,
                    DQ_TRACE_COLS ", events, json_valid(events) FROM"
                                  " request_traces WHERE request_id = ?1"
                                  " ORDER BY timestamp, id",
                    &st, "trace");
    if (rc != 0)
        return rc;
    sqlite3_bind_text(st, 1, c->p->request_id, -1, SQLITE_STATIC);
    dq_begin(o, "{");
    dq_kv_str(o, "request_id", c->p->request_id);
    dq_key(o, "traces");
    dq_begin(o, "[");
    rc = dq_emit_rows(c, st, dq_trace_fields, DQ_NELEM(dq_trace_fields), o, &n);
    dq_end(o, "]");
    dq_end(o, "}");
    sqlite3_finalize(st);
    if (rc == 0 && o->rc == 0 && n == 0)
        rc = dq_fail(c, -ENOENT, "no trace with request_id \"%s\"",
                     c->p->request_id);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Row queries: the health engine's aggregates */

/* Counters of one node:model (or their sums) over 24 h and the last
 * hour, in the order of dq_health_sql's columns after node_id, model. */
enum dq_hc {
    DQ_H_REQ,
    DQ_H_REQ_1H,
    DQ_H_FAILED,
    DQ_H_FAILED_1H,
    DQ_H_COLD,
    DQ_H_COLD_1H,
    DQ_H_RETRIES,
    DQ_H_RETRIES_1H,
    DQ_H_DISC,
    DQ_H_DISC_1H,
    DQ_H_INC,
    DQ_H_INC_1H,
    DQ_H_TMO,
    DQ_H_TMO_1H,
    DQ_H_TTFT_N,
    DQ_H_COUNT
};

struct dq_health {
    int64_t v[DQ_H_COUNT];
    double ttft_sum;
};

struct dq_hrow {
    const char *node, *model; /* borrowed from the query's strtab */
    struct dq_health h;
};

struct dq_hrows {
    struct dq_hrow *v; /* owned */
    size_t n, cap;
};

/* ?1 = now - 24 h, ?2 = now - 1 h, ?3 = cold TTFT, ?4 = load timeout. One
 * pass over the last 24 h; the nodes, models and node:model timeouts are
 * regrouped in C. */
#define DQ_FAILED "status NOT IN ('completed', 'retried')"
#define DQ_COLD   "status = 'completed' AND time_to_first_token_ms > ?3"
#define DQ_TMO    "status IN ('retried', 'failed') AND latency_ms > ?4"
#define DQ_CNT(cond)                                                           \
    " SUM(CASE WHEN " cond " THEN 1 ELSE 0 END), SUM(CASE WHEN (" cond         \
    ") AND timestamp >= ?2 THEN 1 ELSE 0 END),"
static const char dq_health_sql[] =
    "SELECT node_id, model, COUNT(*), SUM(CASE WHEN timestamp >= ?2 THEN 1"
    " ELSE 0 END)," DQ_CNT(DQ_FAILED)
        DQ_CNT(DQ_COLD) " SUM(COALESCE(retry_count, 0)), SUM(CASE WHEN "
                        "timestamp >= ?2 THEN"
                        " COALESCE(retry_count, 0) ELSE 0 END)," DQ_CNT(
                            "status = 'client_disconnected'")
                            DQ_CNT("status = 'incomplete'")
                                DQ_CNT(DQ_TMO) " COUNT(time_to_first_token_ms),"
                                               " TOTAL(time_to_first_token_ms)"
                                               " FROM request_traces INDEXED "
                                               "BY idx_traces_timestamp"
                                               " WHERE timestamp >= ?1 GROUP "
                                               "BY node_id, model"
                                               " ORDER BY node_id, model";

static void
dq_health_read(struct sqlite3_stmt *st, struct dq_health *h)
{
    int i;

    for (i = 0; i < DQ_H_COUNT; i++)
        h->v[i] = dq_col_int0(st, i + 2);
    h->ttft_sum = sqlite3_column_double(st, DQ_H_COUNT + 2);
}

static void
dq_health_add(struct dq_health *a, const struct dq_health *b)
{
    int i;

    for (i = 0; i < DQ_H_COUNT; i++)
        dq_add64(&a->v[i], b->v[i]);
    a->ttft_sum += b->ttft_sum;
}

/* Python's round(part / total * 100, 1) if total > 0 else 0. */
static void
dq_kv_rate(struct dq_out *o, const char *k, int64_t part, int64_t total)
{
    dq_key(o, k);
    if (total > 0)
        dq_fixed(o, (double)part / (double)total * 100.0, 1);
    else
        dq_int(o, 0);
}

/* The counters of a node or of the fleet (node = true), or of a model. */
static void
dq_emit_health(struct dq_out *o, const struct dq_health *h, bool node)
{
    const int64_t *v = h->v;

    dq_kv_int(o, "requests_24h", v[DQ_H_REQ]);
    dq_kv_int(o, "requests_1h", v[DQ_H_REQ_1H]);
    if (node) {
        dq_kv_int(o, "failed_24h", v[DQ_H_FAILED]);
        dq_kv_int(o, "failed_1h", v[DQ_H_FAILED_1H]);
        dq_kv_rate(o, "error_rate_pct_24h", v[DQ_H_FAILED], v[DQ_H_REQ]);
        dq_kv_rate(o, "error_rate_pct_1h", v[DQ_H_FAILED_1H], v[DQ_H_REQ_1H]);
        dq_kv_avg(o, "avg_ttft_ms_24h", h->ttft_sum, v[DQ_H_TTFT_N],
                  DQ_R1_ORNULL);
        dq_kv_int(o, "retries_24h", v[DQ_H_RETRIES]);
        dq_kv_int(o, "retries_1h", v[DQ_H_RETRIES_1H]);
        dq_kv_int(o, "cold_loads_24h", v[DQ_H_COLD]);
        dq_kv_int(o, "cold_loads_1h", v[DQ_H_COLD_1H]);
    }
    dq_kv_int(o, "client_disconnects_24h", v[DQ_H_DISC]);
    dq_kv_int(o, "client_disconnects_1h", v[DQ_H_DISC_1H]);
    dq_kv_int(o, "incomplete_streams_24h", v[DQ_H_INC]);
    dq_kv_int(o, "incomplete_streams_1h", v[DQ_H_INC_1H]);
    dq_kv_int(o, "load_timeouts_24h", v[DQ_H_TMO]);
    dq_kv_int(o, "load_timeouts_1h", v[DQ_H_TMO_1H]);
}

static int
dq_hrows_push(struct dq_hrows *rs, const struct dq_hrow *r)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap != 0 ? rs->cap * 2 : 64;
        struct dq_hrow *v = realloc(rs->v, cap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n++] = *r;
    return 0;
}

/* The node:model rows of the last 24 h, by node then model. */
static int
dq_health_load(struct dq_ctx *c, struct dq_strtab *strs, struct dq_hrows *rs)
{
    struct sqlite3_stmt *st = NULL;
    struct dq_hrow r;
    uint32_t a = 0, b = 0;
    int rc = dq_prepare(c, dq_health_sql, &st, "health_stats");

    if (rc != 0)
        return rc;
    sqlite3_bind_double(st, 1, c->now - DASHQ_HEALTH_WINDOW_S);
    sqlite3_bind_double(st, 2, c->now - DASHQ_HEALTH_RECENT_S);
    sqlite3_bind_double(st, 3, DASHQ_COLD_LOAD_TTFT_MS);
    sqlite3_bind_double(st, 4, DASHQ_LOAD_TIMEOUT_MS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int err = dq_strtab_intern(strs, dq_col_text(st, 0), SIZE_MAX, &a);

        if (err == 0)
            err = dq_strtab_intern(strs, dq_col_text(st, 1), SIZE_MAX, &b);
        r.node = dq_strtab_get(strs, a);
        r.model = dq_strtab_get(strs, b);
        dq_health_read(st, &r.h);
        if (err == 0)
            err = dq_hrows_push(rs, &r);
        if (err != 0) {
            sqlite3_finalize(st);
            return dq_outfail(c, err);
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : dq_sqlfail(c, rc, "health_stats");
}

/* "nodes": the rows are by node, so a node's rows are neighbours. */
static void
dq_emit_nodes(struct dq_out *o, const struct dq_hrows *rs)
{
    struct dq_health h;
    size_t i, j;

    dq_key(o, "nodes");
    dq_begin(o, "[");
    for (i = 0; i < rs->n; i = j) {
        memset(&h, 0, sizeof(h));
        for (j = i; j < rs->n && strcmp(rs->v[j].node, rs->v[i].node) == 0; j++)
            dq_health_add(&h, &rs->v[j].h);
        dq_begin(o, "{");
        dq_kv_str(o, "node_id", rs->v[i].node);
        dq_emit_health(o, &h, true);
        dq_end(o, "}");
    }
    dq_end(o, "]");
}

static int
dq_by_model_node(const void *x, const void *y)
{
    const struct dq_hrow *a = x, *b = y;
    int d = strcmp(a->model, b->model);

    return d != 0 ? d : strcmp(a->node, b->node);
}

/* "models": those with a disconnect, an incomplete stream or a load
 * timeout in 24 h. rs is by model then node. */
static void
dq_emit_models(struct dq_out *o, const struct dq_hrows *rs)
{
    struct dq_health h;
    size_t i, j;

    dq_key(o, "models");
    dq_begin(o, "[");
    for (i = 0; i < rs->n; i = j) {
        memset(&h, 0, sizeof(h));
        for (j = i; j < rs->n && strcmp(rs->v[j].model, rs->v[i].model) == 0;
             j++)
            dq_health_add(&h, &rs->v[j].h);
        if (h.v[DQ_H_DISC] == 0 && h.v[DQ_H_INC] == 0 && h.v[DQ_H_TMO] == 0)
            continue;
        dq_begin(o, "{");
        dq_kv_str(o, "model", rs->v[i].model);
        dq_emit_health(o, &h, false);
        dq_end(o, "}");
    }
    dq_end(o, "]");
}

/* "load_timeouts": [{model,node_id,count_24h,count_1h}], by model then
 * node, as ollama-herd's by_model[model].nodes. */
static void
dq_emit_timeouts(struct dq_out *o, const struct dq_hrows *rs)
{
    size_t i;

    dq_key(o, "load_timeouts");
    dq_begin(o, "[");
    for (i = 0; i < rs->n; i++) {
        if (rs->v[i].h.v[DQ_H_TMO] == 0)
            continue;
        dq_begin(o, "{");
        dq_kv_str(o, "model", rs->v[i].model);
        dq_kv_str(o, "node_id", rs->v[i].node);
        dq_kv_int(o, "count_24h", rs->v[i].h.v[DQ_H_TMO]);
        dq_kv_int(o, "count_1h", rs->v[i].h.v[DQ_H_TMO_1H]);
        dq_end(o, "}");
    }
    dq_end(o, "]");
}

static void
dq_emit_fleet(struct dq_out *o, const struct dq_hrows *rs)
{
    struct dq_health t;
    size_t i;

    memset(&t, 0, sizeof(t));
    for (i = 0; i < rs->n; i++)
        dq_health_add(&t, &rs->v[i].h);
    dq_key(o, "fleet");
    dq_begin(o, "{");
    dq_emit_health(o, &t, true);
    dq_key(o, "avg_retries_per_request_24h");
    if (t.v[DQ_H_REQ] > 0)
        dq_fixed(o, (double)t.v[DQ_H_RETRIES] / (double)t.v[DQ_H_REQ], 2);
    else
        dq_int(o, 0);
    dq_end(o, "}");
}

/* "events": {"<event>":{"count_24h":n,"count_1h":n}} from the trace
 * column events ([{ms,event,node,detail}], herd's own), over the rows of
 * the last 24 h (idx_traces_timestamp). */
static const char dq_events_sql[] =
    "SELECT json_extract(e.value, '$.event') AS ev, COUNT(*),"
    " SUM(t.timestamp >= ?2) FROM request_traces AS t,"
    " json_each(CASE WHEN json_valid(t.events) THEN t.events ELSE '[]' END)"
    " AS e WHERE t.timestamp >= ?1 AND t.events IS NOT NULL"
    " GROUP BY ev ORDER BY ev";

static int
dq_emit_events(struct dq_ctx *c, struct dq_out *o)
{
    struct sqlite3_stmt *st = NULL;
    int rc = dq_prepare(c, dq_events_sql, &st, "health_stats events");

    if (rc != 0)
        return rc;
    sqlite3_bind_double(st, 1, c->now - DASHQ_HEALTH_WINDOW_S);
    sqlite3_bind_double(st, 2, c->now - DASHQ_HEALTH_RECENT_S);
    dq_key(o, "events");
    dq_begin(o, "{");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *ev = dq_col_text(st, 0);

        if (ev == NULL || *ev == '\0' || strlen(ev) > 64 ||
            strspn(ev, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(ev))
            continue; /* herd writes plain names; anything else is skipped */
        dq_key(o, ev);
        dq_begin(o, "{");
        dq_kv_int(o, "count_24h", sqlite3_column_int64(st, 1));
        dq_kv_int(o, "count_1h", sqlite3_column_int64(st, 2));
        dq_end(o, "}");
    }
    dq_end(o, "}");
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : dq_sqlfail(c, rc, "health_stats events");
}

/* See docs/internals/dashq.md for the shape. */
static int
dq_q_health(struct dq_ctx *c, struct dq_set *edge, struct dq_out *o)
{
    struct dq_hrows rs = {0};
    int rc;

    rc = dq_health_load(c, &edge->strs, &rs);
    if (rc == 0) {
        dq_begin(o, "{");
        dq_kv_dbl(o, "now", c->now);
        dq_kv_int(o, "window_s", (int64_t)DASHQ_HEALTH_WINDOW_S);
        dq_kv_int(o, "recent_window_s", (int64_t)DASHQ_HEALTH_RECENT_S);
        dq_kv_dbl(o, "cold_load_ttft_ms", DASHQ_COLD_LOAD_TTFT_MS);
        dq_kv_dbl(o, "load_timeout_ms", DASHQ_LOAD_TIMEOUT_MS);
        dq_emit_fleet(o, &rs);
        dq_emit_nodes(o, &rs);
        if (rs.n > 1)
            qsort(rs.v, rs.n, sizeof(rs.v[0]), dq_by_model_node);
        dq_emit_models(o, &rs);
        dq_emit_timeouts(o, &rs);
        rc = dq_emit_events(c, o);
        dq_end(o, "}");
    }
    free(rs.v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The work callback (pool threads) */

typedef int (*dq_query_fn)(struct dq_ctx *c, struct dq_set *edge,
                           struct dq_out *o);

static const struct {
    const char *name;
    dq_query_fn fn;
    bool rollup; /* takes ru.mu */
} dq_kinds[DASHQ_KIND_COUNT] = {
    [DASHQ_TRACES] = {"traces", dq_q_traces, false},
    [DASHQ_TRACE] = {"trace", dq_q_trace, false},
    [DASHQ_USAGE] = {"usage", dq_q_usage, true},
    [DASHQ_OVERVIEW] = {"overview", dq_q_overview, true},
    [DASHQ_TRENDS] = {"trends", dq_q_trends, true},
    [DASHQ_MODELS] = {"models", dq_q_models, true},
    [DASHQ_TAGS] = {"tags", dq_q_tags, true},
    [DASHQ_TAGS_DAILY] = {"tags/daily", dq_q_tags_daily, true},
    [DASHQ_HEALTH_STATS] = {"health_stats", dq_q_health, false},
};

static int
dq_progress(void *arg)
{
    const struct dashq_conn *cn = arg;

    if (atomic_load_explicit(&cn->q->closing, memory_order_relaxed))
        return 1;
    return cn->deadline_ns != 0 && clock_mono_ns() > cn->deadline_ns;
}

static int
dq_conn_open(struct dashq *q, struct dashq_conn *cn, char *err, size_t errlen)
{
    struct sqlite3 *db = NULL;
    char pragma[64];

    if (sqlite3_open_v2(q->path, &db,
                        SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%.160s: %s", q->path,
                 db != NULL ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, q->opts.busy_timeout_ms);
    snprintf(pragma, sizeof(pragma), "PRAGMA mmap_size=%lld",
             (long long)(q->opts.mmap_bytes > 0 ? q->opts.mmap_bytes : 0));
    if (sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, pragma, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%.160s: %s", q->path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_progress_handler(db, DQ_PROGRESS_OPS, dq_progress, cn);
    cn->db = db;
    return 0;
}

/* Whether a query reads the rollup (and takes ru.mu). */
static bool
dq_uses_rollup(int kind, const struct dashq_params *p)
{
    if (kind == DASHQ_TRACES)
        return p->tag != NULL;
    return kind < DASHQ_KIND_COUNT && dq_kinds[kind].rollup;
}

/* The cap of one query's own aggregates: never below the default, so a
 * small rollup cap does not make the fallback fail too. */
static size_t
dq_temp_cells(const struct dashq *q)
{
    return q->opts.max_cells > DASHQ_DEFAULT_MAX_CELLS
               ? q->opts.max_cells
               : DASHQ_DEFAULT_MAX_CELLS;
}

/* Runs one query in one read transaction; the rollup kinds under ru.mu. */
static int
dq_run_kind(struct dq_ctx *c, int kind, struct dq_out *o)
{
    struct dq_rollup *ru = &c->q->ru;
    bool refresh = kind == DQ_KIND_WARM || kind == DQ_KIND_REFRESH;
    bool lock = refresh || dq_uses_rollup(kind, c->p);
    struct dq_set edge;
    int rc;

    dq_set_init(&edge, dq_temp_cells(c->q));
    if (lock)
        pthread_mutex_lock(&ru->mu);
    rc = dq_exec(c, "BEGIN");
    if (rc == 0 && refresh) {
        rc = dq_refresh(c, DQ_TR);
        if (rc == 0)
            rc = dq_refresh(c, DQ_OBS);
    } else if (rc == 0) {
        rc = dq_kinds[kind].fn(c, &edge, o);
    }
    if (rc == 0 && o->rc != 0)
        rc = dq_outfail(c, o->rc);
    c->conn->deadline_ns = 0; /* the end of a transaction is never cut */
    if (sqlite3_get_autocommit(c->db) == 0 &&
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    if (lock)
        pthread_mutex_unlock(&ru->mu);
    dq_set_free(&edge);
    return rc;
}

static int
dq_run_exec(struct dq_ctx *c, const char *sql, struct dq_out *o)
{
    int rc = dq_exec(c, sql);

    if (rc == 0)
        dq_lit(o, "{\"ok\":true}");
    return rc != 0 ? rc : dq_outfail(c, o->rc);
}

static void
dq_work(uv_work_t *w)
{
    struct dashq_req *r = w->data;
    struct dashq *q = r->q;
    struct dq_out o = {.b = &r->out};
    struct dq_ctx c = {.q = q,
                       .p = &r->p,
                       .out = &r->out,
                       .err = r->err,
                       .errlen = sizeof(r->err)};

    if (r->canceled || atomic_load(&q->closing)) {
        r->rc = -ECANCELED;
        snprintf(r->err, sizeof(r->err), "the service is closing");
        return;
    }
    if (r->conn->db == NULL) {
        r->rc = dq_conn_open(q, r->conn, r->err, sizeof(r->err));
        if (r->rc != 0)
            return;
        r->opened = true;
    }
    c.conn = r->conn;
    c.db = r->conn->db;
    c.now =
        r->p.now > 0 ? r->p.now : (double)clock_wall_ns() / (double)NS_PER_SEC;
    r->conn->deadline_ns =
        clock_mono_ns() + (uint64_t)q->opts.query_timeout_ms * NS_PER_MS;
    if (r->kind == DQ_KIND_EXEC)
        r->rc = dq_run_exec(&c, r->sql, &o);
    else
        r->rc = dq_run_kind(&c, r->kind, &o);
    r->conn->deadline_ns = 0;
}

/* Final pool job: closes the connections. */
static void
dq_close_work(uv_work_t *w)
{
    struct dashq *q = w->data;
    int i;

    for (i = 0; i < q->opts.max_running; i++) {
        sqlite3_close_v2(q->conns[i].db);
        q->conns[i].db = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* Parameters */

static int
dq_clamp(int v, int def, int max)
{
    if (v == 0)
        return def;
    return v < 1 ? 1 : v > max ? max : v;
}

static int
dq_check_ts(const char *name, double v, char *err, size_t errlen)
{
    if (isfinite(v) && v >= 0 && v <= DQ_TS_MAX_PARAM)
        return 0;
    snprintf(err, errlen,
             "%s must be a unix time in seconds, from 0 to 1e11 (got %g)", name,
             v);
    return -EINVAL;
}

static int
dq_check_str(const char *name, const char *v, char *err, size_t errlen)
{
    if (v == NULL || strlen(v) <= DASHQ_STR_MAX)
        return 0;
    snprintf(err, errlen, "%s is longer than %d bytes", name, DASHQ_STR_MAX);
    return -EINVAL;
}

static int
dq_check_order(const char *a, double va, const char *b, double vb, char *err,
               size_t errlen)
{
    if (!(va > 0 && vb > 0 && va > vb))
        return 0;
    snprintf(err, errlen, "%s (%.3f) is after %s (%.3f)", a, va, b, vb);
    return -EINVAL;
}

int
dashq_params_check(enum dashq_kind kind, const struct dashq_params *p,
                   char *err, size_t errlen)
{
    int rc;

    if ((int)kind < 0 || kind >= DASHQ_KIND_COUNT || p == NULL) {
        snprintf(err, errlen, "unknown query kind %d", (int)kind);
        return -EINVAL;
    }
    rc = dq_check_ts("start_ts", p->start_ts, err, errlen);
    if (rc == 0)
        rc = dq_check_ts("end_ts", p->end_ts, err, errlen);
    if (rc == 0)
        rc = dq_check_ts("since", p->since, err, errlen);
    if (rc == 0)
        rc = dq_check_ts("until", p->until, err, errlen);
    if (rc == 0)
        rc = dq_check_ts("now", p->now, err, errlen);
    if (rc == 0)
        rc = dq_check_order("since", p->since, "until", p->until, err, errlen);
    if (rc == 0)
        rc = dq_check_order("start_ts", p->start_ts, "end_ts", p->end_ts, err,
                            errlen);
    if (rc == 0)
        rc = dq_check_str("model", p->model, err, errlen);
    if (rc == 0)
        rc = dq_check_str("node_id", p->node_id, err, errlen);
    if (rc == 0)
        rc = dq_check_str("status", p->status, err, errlen);
    if (rc == 0)
        rc = dq_check_str("tag", p->tag, err, errlen);
    if (rc == 0)
        rc = dq_check_str("request_id", p->request_id, err, errlen);
    if (rc == 0 && kind == DASHQ_TRACE &&
        (p->request_id == NULL || *p->request_id == '\0')) {
        snprintf(err, errlen, "request_id is required");
        rc = -EINVAL;
    }
    return rc;
}

static int
dq_param_int(struct dashq_params *p, const char *key, const char *value,
             char *err, size_t errlen)
{
    const char *why = NULL;
    int64_t v;
    int *dst = strcmp(key, "limit") == 0  ? &p->limit
               : strcmp(key, "days") == 0 ? &p->days
                                          : &p->hours;
    int max = dst == &p->limit  ? DASHQ_LIMIT_MAX
              : dst == &p->days ? DASHQ_DAYS_MAX
                                : DASHQ_HOURS_MAX;

    if (parse_i64(value, INT64_MIN, INT64_MAX, &v, &why) != 0) {
        snprintf(err, errlen, "%s: not an integer: \"%.64s\"", key, value);
        return -EINVAL;
    }
    *dst = v < 1 ? 1 : v > max ? max : (int)v;
    return 0;
}

static int
dq_param_ts(double *dst, const char *key, const char *value, char *err,
            size_t errlen)
{
    const char *why = NULL;
    int rc = parse_double(value, 0, DQ_TS_MAX_PARAM, dst, &why);

    if (rc == -ERANGE)
        snprintf(err, errlen, "%s: out of range (0 to 1e11 seconds): %.64s",
                 key, value);
    else if (rc != 0)
        snprintf(err, errlen, "%s: not a number: \"%.64s\"", key, value);
    return rc != 0 ? -EINVAL : 0;
}

int
dashq_param_set(struct dashq_params *p, const char *key, const char *value,
                char *err, size_t errlen)
{
    static const char *const strs[] = {"model", "node_id", "status", "tag",
                                       "request_id"};
    const char **dst[] = {&p->model, &p->node_id, &p->status, &p->tag,
                          &p->request_id};
    size_t i;

    if (key == NULL || value == NULL) {
        snprintf(err, errlen, "missing parameter name or value");
        return -EINVAL;
    }
    if (strcmp(key, "limit") == 0 || strcmp(key, "days") == 0 ||
        strcmp(key, "hours") == 0)
        return dq_param_int(p, key, value, err, errlen);
    if (strcmp(key, "start_ts") == 0)
        return dq_param_ts(&p->start_ts, key, value, err, errlen);
    if (strcmp(key, "end_ts") == 0)
        return dq_param_ts(&p->end_ts, key, value, err, errlen);
    if (strcmp(key, "since") == 0)
        return dq_param_ts(&p->since, key, value, err, errlen);
    if (strcmp(key, "until") == 0)
        return dq_param_ts(&p->until, key, value, err, errlen);
    for (i = 0; i < DQ_NELEM(strs); i++) {
        if (strcmp(key, strs[i]) != 0)
            continue;
        if (dq_check_str(key, value, err, errlen) != 0)
            return -EINVAL;
        *dst[i] = value;
        return 0;
    }
    snprintf(err, errlen, "unknown parameter \"%.64s\"", key);
    return -ENOENT;
}

const char *
dashq_kind_name(enum dashq_kind kind)
{
    if ((int)kind < 0 || kind >= DASHQ_KIND_COUNT)
        return "?";
    return dq_kinds[kind].name;
}

/* ------------------------------------------------------------------ */
/* The loop side */

static size_t
dq_strsize(const char *s)
{
    return s != NULL && *s != '\0' ? strlen(s) + 1 : 0;
}

/* Copies s into r->strs at *off; NULL for NULL and "". */
static const char *
dq_strcopy(struct dashq_req *r, size_t *off, const char *s)
{
    size_t n = dq_strsize(s);
    char *dst = r->strs + *off;

    if (n == 0)
        return NULL;
    memcpy(dst, s, n);
    *off += n;
    return dst;
}

/* A request with normalised copies of p and sql. */
static struct dashq_req *
dq_req_new(struct dashq *q, int kind, const struct dashq_params *p,
           const char *sql)
{
    static const struct dashq_params none;
    struct dashq_req *r;
    size_t size = 0, off = 0;

    if (p == NULL)
        p = &none;
    size += dq_strsize(p->model) + dq_strsize(p->node_id) +
            dq_strsize(p->status) + dq_strsize(p->tag) +
            dq_strsize(p->request_id) + dq_strsize(sql);
    r = calloc(1, sizeof(*r) + size);
    if (r == NULL)
        return NULL;
    r->q = q;
    r->kind = kind;
    r->work.data = r;
    r->p = *p;
    r->p.limit = dq_clamp(p->limit, DASHQ_LIMIT_DEFAULT, DASHQ_LIMIT_MAX);
    r->p.days = dq_clamp(p->days, DASHQ_DAYS_DEFAULT, DASHQ_DAYS_MAX);
    r->p.hours = dq_clamp(p->hours, DASHQ_HOURS_DEFAULT, DASHQ_HOURS_MAX);
    r->p.model = dq_strcopy(r, &off, p->model);
    r->p.node_id = dq_strcopy(r, &off, p->node_id);
    r->p.status = dq_strcopy(r, &off, p->status);
    r->p.tag = dq_strcopy(r, &off, p->tag);
    r->p.request_id = dq_strcopy(r, &off, p->request_id);
    r->sql = dq_strcopy(r, &off, sql);
    buf_init(&r->out, q->opts.max_json_bytes);
    return r;
}

static void dq_after_work(uv_work_t *w, int status);

static struct dashq_conn *
dq_free_conn(struct dashq *q)
{
    int i;

    for (i = 0; i < q->opts.max_running; i++)
        if (!q->conns[i].busy)
            return &q->conns[i];
    return NULL;
}

/* Starts waiting requests while a connection is free. */
static void
dq_dispatch(struct dashq *q)
{
    struct dashq_conn *cn;
    struct dashq_req *r;

    while (q->wait_head != NULL && (cn = dq_free_conn(q)) != NULL) {
        r = q->wait_head;
        q->wait_head = r->next;
        if (q->wait_head == NULL)
            q->wait_tail = NULL;
        q->st.waiting--;
        cn->busy = true;
        r->conn = cn;
        q->st.running++;
        q->inflight++;
        uv_queue_work(q->loop, &r->work, dq_work, dq_after_work);
    }
}

static void
dq_enqueue(struct dashq *q, struct dashq_req *r)
{
    if (q->wait_tail != NULL)
        q->wait_tail->next = r;
    else
        q->wait_head = r;
    q->wait_tail = r;
    q->st.waiting++;
    dq_dispatch(q);
}

static void
dq_free(struct dashq *q)
{
    int t;

    for (t = 0; t < DQ_NTBL; t++)
        dq_set_free(&q->ru.set[t]);
    pthread_mutex_destroy(&q->ru.mu);
    free(q->conns);
    free(q);
}

static void
dq_close_after(uv_work_t *w, int status)
{
    struct dashq *q = w->data;
    dashq_close_cb cb = q->close_cb;
    void *ud = q->close_ud;

    (void)status;
    dq_free(q);
    if (cb != NULL)
        cb(ud);
}

/* When closing and nothing is left on the pool, queues the final job. */
static void
dq_maybe_finish(struct dashq *q)
{
    if (!atomic_load(&q->closing) || q->inflight > 0 || q->wait_head != NULL ||
        q->refresher_open || q->closer_queued)
        return;
    q->closer_queued = true;
    q->closer.data = q;
    uv_queue_work(q->loop, &q->closer, dq_close_work, dq_close_after);
}

/* rc != 0: json becomes {"error": <sentence>}. */
static void
dq_error_json(struct dashq_req *r)
{
    const char *name = r->kind < DASHQ_KIND_COUNT ? dq_kinds[r->kind].name
                       : r->kind == DQ_KIND_EXEC  ? "exec"
                                                  : "refresh";
    char msg[DQ_ERR_MAX + 64];

    snprintf(msg, sizeof(msg), "dashq: %s: %s", name,
             r->err[0] != '\0' ? r->err : strerror(-r->rc));
    buf_reset(&r->out);
    if (buf_appends(&r->out, "{\"error\":") != 0 ||
        json_append_str(&r->out, msg, strlen(msg)) != 0 ||
        buf_appends(&r->out, "}") != 0)
        buf_reset(&r->out);
}

static void
dq_after_work(uv_work_t *w, int status)
{
    struct dashq_req *r = w->data;
    struct dashq *q = r->q;

    if (status == UV_ECANCELED && r->rc == 0)
        r->rc = -ECANCELED;
    q->inflight--;
    if (r->conn != NULL) {
        r->conn->busy = false;
        q->st.running--;
    }
    q->st.conns_open += r->opened ? 1 : 0;
    if (!atomic_load(&q->closing))
        dq_dispatch(q);
    if (r->rc != 0)
        dq_error_json(r);
    if (r->kind == DQ_KIND_WARM || r->kind == DQ_KIND_REFRESH) {
        q->refreshing = false;
        q->st.refreshes += r->rc == 0;
    }
    if (r->kind == DQ_KIND_WARM && r->rc != 0 && r->rc != -ECANCELED)
        log_warn("dashq: warm-up: %s", r->err);
    if (r->cb != NULL) {
        q->st.ok += r->rc == 0;
        q->st.failed += r->rc != 0;
        r->cb(r->rc, &r->out, r->ud);
    }
    buf_cleanup(&r->out);
    free(r);
    dq_maybe_finish(q);
}

static void
dq_opts_defaults(struct dashq_opts *o)
{
    if (o->max_running <= 0)
        o->max_running = DASHQ_DEFAULT_RUNNING;
    if (o->max_running > DASHQ_MAX_RUNNING)
        o->max_running = DASHQ_MAX_RUNNING;
    if (o->max_waiting <= 0)
        o->max_waiting = DASHQ_DEFAULT_WAITING;
    if (o->busy_timeout_ms <= 0)
        o->busy_timeout_ms = DASHQ_DEFAULT_BUSY_MS;
    if (o->query_timeout_ms <= 0)
        o->query_timeout_ms = DASHQ_DEFAULT_TIMEOUT_MS;
    if (o->max_json_bytes == 0)
        o->max_json_bytes = DASHQ_DEFAULT_MAX_JSON;
    if (o->max_cells == 0)
        o->max_cells = DASHQ_DEFAULT_MAX_CELLS;
    if (o->mmap_bytes == 0)
        o->mmap_bytes = DASHQ_DEFAULT_MMAP;
    if (o->verify_s == 0)
        o->verify_s = DASHQ_DEFAULT_VERIFY_S;
    if (o->refresh_ms == 0)
        o->refresh_ms = DASHQ_DEFAULT_REFRESH_MS;
}

static struct dashq *
dq_new(uv_loop_t *loop, const struct dashq_opts *opts)
{
    struct dashq *q = calloc(1, sizeof(*q));
    int t;

    if (q == NULL)
        return NULL;
    q->loop = loop;
    if (opts != NULL)
        q->opts = *opts;
    dq_opts_defaults(&q->opts);
    q->conns = calloc((size_t)q->opts.max_running, sizeof(*q->conns));
    if (q->conns == NULL) {
        free(q);
        return NULL;
    }
    for (t = 0; t < q->opts.max_running; t++)
        q->conns[t].q = q;
    atomic_init(&q->closing, false);
    pthread_mutex_init(&q->ru.mu, NULL);
    for (t = 0; t < DQ_NTBL; t++) {
        dq_set_init(&q->ru.set[t], q->opts.max_cells);
        q->ru.ts[t].min_ts = NAN;
    }
    return q;
}

struct dashq *
dashq_open(uv_loop_t *loop, const char *db_path, const struct dashq_opts *opts,
           char *err, size_t errlen)
{
    struct dashq *q;
    struct dashq_req *warm;

    if (loop == NULL || db_path == NULL || *db_path == '\0') {
        snprintf(err, errlen, "dashq: no loop or no database path");
        return NULL;
    }
    q = dq_new(loop, opts);
    if (q == NULL) {
        snprintf(err, errlen, "dashq: out of memory");
        return NULL;
    }
    if (fs_expand_home(db_path, q->path, sizeof(q->path)) != 0) {
        snprintf(err, errlen, "dashq: %s: path too long", db_path);
        dq_free(q);
        return NULL;
    }
    if (access(q->path, R_OK) != 0) {
        snprintf(err, errlen, "dashq: %s: %s", q->path, strerror(errno));
        dq_free(q);
        return NULL;
    }
    uv_timer_init(loop, &q->refresher);
    uv_unref((uv_handle_t *)&q->refresher); /* never keeps the loop alive */
    q->refresher.data = q;
    q->refresher_open = true;
    if (!q->opts.no_warmup) {
        warm = dq_req_new(q, DQ_KIND_WARM, NULL, NULL);
        if (warm != NULL) { /* without it the first query builds */
            q->refreshing = true;
            dq_enqueue(q, warm);
        }
    }
    return q;
}

/* Every refresh_ms while the dashboard is in use: one refresh job, when a
 * connection is free and nothing waits, so that queries find the rollup
 * nearly up to date instead of aggregating the rows appended since the
 * last one. */
static void
dq_on_tick(uv_timer_t *t)
{
    struct dashq *q = t->data;
    struct dashq_req *r;

    if (uv_now(q->loop) - q->last_use_ms > DQ_IDLE_MS) {
        uv_timer_stop(t);
        return;
    }
    if (q->refreshing || q->wait_head != NULL || dq_free_conn(q) == NULL)
        return;
    r = dq_req_new(q, DQ_KIND_REFRESH, NULL, NULL);
    if (r == NULL)
        return;
    q->refreshing = true;
    dq_enqueue(q, r);
}

static void
dq_note_use(struct dashq *q)
{
    q->last_use_ms = uv_now(q->loop);
    if (q->opts.refresh_ms > 0 && !uv_is_active((uv_handle_t *)&q->refresher))
        uv_timer_start(&q->refresher, dq_on_tick, (uint64_t)q->opts.refresh_ms,
                       (uint64_t)q->opts.refresh_ms);
}

static int
dq_submit(struct dashq *q, int kind, const struct dashq_params *p,
          const char *sql, dashq_cb cb, void *ud)
{
    struct dashq_req *r;

    if (atomic_load(&q->closing))
        return -ESHUTDOWN;
    if (q->st.waiting >= q->opts.max_waiting) {
        q->st.refused++;
        return -EBUSY;
    }
    r = dq_req_new(q, kind, p, sql);
    if (r == NULL)
        return -ENOMEM;
    r->cb = cb;
    r->ud = ud;
    q->st.accepted++;
    if (dq_uses_rollup(kind, &r->p))
        dq_note_use(q);
    dq_enqueue(q, r);
    return 0;
}

int
dashq_run(struct dashq *q, enum dashq_kind kind, const struct dashq_params *p,
          dashq_cb cb, void *ud)
{
    static const struct dashq_params none;
    char err[DQ_ERR_MAX];

    if (q == NULL || cb == NULL)
        return -EINVAL;
    if (dashq_params_check(kind, p != NULL ? p : &none, err, sizeof(err)) != 0)
        return -EINVAL;
    return dq_submit(q, (int)kind, p, NULL, cb, ud);
}

int
dashq_exec_for_test(struct dashq *q, const char *sql, dashq_cb cb, void *ud)
{
    if (q == NULL || sql == NULL || *sql == '\0' || cb == NULL)
        return -EINVAL;
    return dq_submit(q, DQ_KIND_EXEC, NULL, sql, cb, ud);
}

void
dashq_stats(const struct dashq *q, struct dashq_stats *out)
{
    *out = q->st;
}

static void
dq_on_refresher_closed(uv_handle_t *h)
{
    struct dashq *q = h->data;

    q->refresher_open = false;
    dq_maybe_finish(q);
}

void
dashq_close(struct dashq *q, dashq_close_cb done, void *ud)
{
    struct dashq_req *r;

    if (q == NULL || atomic_load(&q->closing))
        return;
    atomic_store(&q->closing, true);
    q->close_cb = done;
    q->close_ud = ud;
    /* Waiting requests go to the pool anyway, to be answered -ECANCELED
     * from after_work like the others: callbacks never run inside the
     * call that cancels them. */
    while ((r = q->wait_head) != NULL) {
        q->wait_head = r->next;
        q->st.waiting--;
        r->canceled = true;
        q->inflight++;
        uv_queue_work(q->loop, &r->work, dq_work, dq_after_work);
    }
    q->wait_tail = NULL;
    uv_close((uv_handle_t *)&q->refresher, dq_on_refresher_closed);
}
