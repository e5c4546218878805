/*
 * sched.c - herd-sim's model scheduler, after Ollama's server/sched.go.
 *
 * Objects:
 *  - struct runner: one loaded (or loading) model with its options,
 *    `parallel` slots each holding a cached token prefix, a reference
 *    count (requests attached: waiting for the load or a slot, or holding
 *    a slot) and one uv timer, used first for the load and then for the
 *    keep-alive expiry.
 *  - struct sched_req: one request. It is in at most one list at a time:
 *    the pending queue, a runner's waiters, or the ready list whose
 *    callbacks the `defer` timer fires on the next loop iteration.
 *  - struct sched: the runners, the pending queue and the one request
 *    being scheduled (the head). While the head waits for a load or for
 *    a runner to drain and unload, nothing else is scheduled (Ollama's
 *    single scheduler goroutine); the fast path bypasses all of it.
 *
 * Time: loads take profile_load_ns * time_scale of real time; keep-alive
 * is real time. load_ns reports *modelled* time: each request adds up
 * the modelled loads it waited behind (the share of each load that
 * overlapped its wait) and, for waits on other requests to drain, the
 * real wait divided by time_scale.
 */
#include "sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "herd/clock.h"
#include "herd/log.h"

#define SCHED_WARM_NS       35000      /* load_ns of a warm fast path */
#define SCHED_MAX_PROMPT    (1u << 22) /* prompt ids kept for matching */
#define SCHED_DEFAULT_QUEUE 512
#define SCHED_DEFAULT_BATCH 512
#define SCHED_DEFAULT_DRAFT 4
#define SCHED_GIB           1073741824.0

enum req_state {
    REQ_QUEUED,    /* in s->pending */
    REQ_HEAD,      /* s->head: being scheduled (waiting for a drain) */
    REQ_WAIT_SLOT, /* in runner->waiters: for its load or a free slot */
    REQ_READY,     /* in s->ready: callback not fired yet */
    REQ_ACTIVE,    /* callback fired, holding a slot */
};

enum sched_wait { WAIT_NONE, WAIT_LOAD, WAIT_UNLOAD };

struct req_list {
    struct sched_req *head, *tail;
    size_t n;
};

struct slot {
    uint32_t *cache; /* owned: the token prefix in this slot's KV */
    size_t n_cache;
    uint64_t last_used; /* s->tick when last taken or given back */
    bool busy;
};

struct runner {
    struct sched *s;          /* borrowed */
    struct runner *next;      /* s->runners */
    struct sim_model *model;  /* borrowed; the catalogue keeps it */
    struct runner_opts opts;  /* as the loading request asked */
    bool ctx_auto;            /* num_ctx was left to the default */
    uint32_t num_ctx;         /* per slot, capped */
    int parallel, busy, refs; /* slots, slots in use, requests */
    struct slot *slots;       /* owned, parallel of them */
    struct req_list waiters;  /* attached, without a slot yet */
    bool loading;
    int64_t keep_alive; /* ns; SCHED_FOREVER never expires */
    int64_t expires_at; /* wall ns; see sched_ps */
    uint64_t size, size_vram;
    int64_t load_model_ns; /* modelled duration of its load */
    uv_timer_t timer;      /* load, then keep-alive expiry */
};

struct sched_req {
    struct sched *s;                 /* borrowed */
    struct sched_req *prev, *next;   /* the list given by state */
    struct sched_req *aprev, *anext; /* s->all */
    enum req_state state;
    struct sim_model *m; /* borrowed */
    struct runner_opts opts;
    bool has_keep_alive;
    int64_t keep_alive;
    uint32_t *prompt; /* owned, n_kept ids */
    size_t n_prompt, n_kept;
    sched_ready_cb cb;
    void *ud;
    struct runner *runner; /* borrowed, once attached */
    struct slot *slot;     /* borrowed, once ready */
    size_t cached;
    uint64_t t_start; /* uv_hrtime() at sched_request */
    double mwait;     /* modelled ns waited so far */
    int64_t load_ns;
    uint32_t num_ctx;
    int err; /* for a failed request */
    bool reload_counted;
};

struct sched {
    uv_loop_t *loop; /* borrowed */
    struct sched_opts o;
    struct sim_profile own_profile; /* when o.profile was NULL */
    const struct sim_profile *prof; /* borrowed (or &own_profile) */
    struct runner *runners;         /* owned */
    struct req_list pending, ready;
    struct sched_req *all;  /* every live request (s->all) */
    struct sched_req *head; /* being scheduled */
    enum sched_wait wait;
    struct runner *wait_runner; /* the load or drain waited for */
    uint64_t wait_start;
    bool processing;
    uv_timer_t defer; /* fires ready callbacks */
    struct sched_stats st;
    uint64_t tick;
    bool freeing;
    int closing; /* handles not closed yet */
    void (*done)(void *);
    void *done_ud;
};

static void sched_process(struct sched *s);

/* ---- small helpers ---- */

static void
list_push(struct req_list *l, struct sched_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void
list_remove(struct req_list *l, struct sched_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static struct sched_req *
list_pop(struct req_list *l)
{
    struct sched_req *r = l->head;

    if (r != NULL)
        list_remove(l, r);
    return r;
}

static int64_t
sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    return a + b;
}

/* ns -> timer ms, rounded up so a timer never fires early. */
static uint64_t
ns_to_ms(double ns)
{
    if (!(ns > 0))
        return 0;
    if (ns >= 1.8e19)
        return UINT64_MAX / 2;
    return (uint64_t)ceil(ns / 1e6);
}

static int64_t
norm_keep_alive(int64_t ka)
{
    return ka < 0 ? SCHED_FOREVER : ka;
}

void
runner_opts_default(struct runner_opts *o)
{
    o->num_ctx = 0;
    o->num_batch = -1;
    o->num_gpu = -1;
    o->main_gpu = -1;
    o->num_thread = -1;
    o->draft_num_predict = -1;
    o->use_mmap = -1;
}

/* ---- options ---- */

/* The per-slot context a request's runner gets: num_ctx or the default,
 * vision models at least 2048, capped at the training context, >= 4. */
static uint32_t
sched_eff_ctx(const struct sched *s, const struct sim_model *m, int64_t num_ctx)
{
    uint64_t v;

    if (num_ctx > 0)
        v = (uint64_t)num_ctx;
    else if (s->o.context_length > 0)
        v = s->o.context_length;
    else
        v = profile_default_ctx(s->prof);
    if ((m->caps & SIM_CAP_VISION) && v < 2048)
        v = 2048;
    if (m->context_length > 0 && v > m->context_length)
        v = m->context_length;
    if (v > UINT32_MAX)
        v = UINT32_MAX;
    return v < 4 ? 4 : (uint32_t)v;
}

static int64_t
eff_or(int64_t v, int64_t def)
{
    return v < 0 ? def : v;
}

/* Ollama's needsReload: runner options compared after defaults; a
 * requested num_gpu of -1 means "don't care"; two automatic num_ctx
 * values are equal. */
static bool
sched_needs_reload(const struct sched *s, const struct runner *r,
                   const struct sched_req *q)
{
    const struct runner_opts *a = &r->opts, *b = &q->opts;

    if (!(r->ctx_auto && b->num_ctx <= 0) &&
        r->num_ctx != sched_eff_ctx(s, q->m, b->num_ctx))
        return true;
    if ((a->num_batch <= 0 ? SCHED_DEFAULT_BATCH : a->num_batch) !=
        (b->num_batch <= 0 ? SCHED_DEFAULT_BATCH : b->num_batch))
        return true;
    if (b->num_gpu >= 0 && b->num_gpu != a->num_gpu)
        return true;
    if (eff_or(a->main_gpu, 0) != eff_or(b->main_gpu, 0) ||
        eff_or(a->num_thread, 0) != eff_or(b->num_thread, 0) ||
        eff_or(a->draft_num_predict, SCHED_DEFAULT_DRAFT) !=
            eff_or(b->draft_num_predict, SCHED_DEFAULT_DRAFT))
        return true;
    return (a->use_mmap < 0 ? -1 : a->use_mmap != 0) !=
           (b->use_mmap < 0 ? -1 : b->use_mmap != 0);
}

/* Slots per runner: OLLAMA_NUM_PARALLEL, but 1 for embedding models and
 * the architectures Ollama forces to 1. */
static int
sched_parallel(const struct sched *s, const struct sim_model *m)
{
    static const char *const single[] = {
        "mllama",    "qwen3vl",   "qwen3vlmoe", "qwen35",
        "qwen35moe", "qwen3next", "lfm2",       "lfm2moe",
    };

    if (m->caps & SIM_CAP_EMBEDDING)
        return 1;
    if (m->family != NULL) {
        if (strncmp(m->family, "nemotron_h", 10) == 0)
            return 1;
        for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++)
            if (strcmp(m->family, single[i]) == 0)
                return 1;
    }
    return s->o.num_parallel > 0 ? s->o.num_parallel : 1;
}

static int
sched_max_loaded(const struct sched *s)
{
    if (s->o.max_loaded > 0)
        return s->o.max_loaded;
    return s->prof->gpus > 0 ? 3 * s->prof->gpus : 3;
}

/* Memory a runner can live in: VRAM on a GPU machine, RAM on CPU. */
static double
sched_fast_mem(const struct sched *s)
{
    return (s->prof->gpus > 0 ? s->prof->vram_gb : s->prof->mem_gb) * SCHED_GIB;
}

/* All memory one model may use, split between GPU and CPU. Unified
 * memory (vram == mem) is counted once. */
static double
sched_total_mem(const struct sched *s)
{
    const struct sim_profile *p = s->prof;

    if (p->gpus > 0 && p->vram_gb < p->mem_gb)
        return (p->vram_gb + p->mem_gb) * SCHED_GIB;
    return (p->vram_gb > p->mem_gb ? p->vram_gb : p->mem_gb) * SCHED_GIB;
}

/* ---- requests and callbacks ---- */

static void
req_free(struct sched_req *q)
{
    struct sched *s = q->s;

    if (q->aprev)
        q->aprev->anext = q->anext;
    else
        s->all = q->anext;
    if (q->anext)
        q->anext->aprev = q->aprev;
    free(q->prompt);
    free(q);
}

static void sched_on_defer(uv_timer_t *t);

static void
sched_make_ready(struct sched *s, struct sched_req *q)
{
    q->state = REQ_READY;
    list_push(&s->ready, q);
    if (!uv_is_active((uv_handle_t *)&s->defer))
        uv_timer_start(&s->defer, sched_on_defer, 0, 0);
}

/* The head cannot be served: its callback reports err, later. */
static void
sched_fail(struct sched *s, struct sched_req *q, int err)
{
    q->err = err;
    q->runner = NULL;
    sched_make_ready(s, q);
}

static void
sched_on_defer(uv_timer_t *t)
{
    struct sched *s = t->data;
    size_t n = s->ready.n;
    struct sched_req *q;

    /* Only those ready now: callbacks may make more ready, which the
     * re-armed timer serves on the next iteration. */
    while (n-- > 0 && !s->freeing && (q = list_pop(&s->ready)) != NULL) {
        if (q->err != 0) {
            int err = q->err;

            /* A failed request holds nothing; the scheduler frees it
             * once its callback returns. */
            q->state = REQ_ACTIVE;
            q->cb(q, err, q->ud);
            if (!s->freeing)
                req_free(q);
        } else {
            q->state = REQ_ACTIVE;
            q->cb(q, 0, q->ud);
        }
    }
    if (!s->freeing && s->ready.n > 0)
        uv_timer_start(&s->defer, sched_on_defer, 0, 0);
}

/* ---- slots ---- */

static size_t
common_prefix(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb, i = 0;

    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* The free slot sharing the longest prefix with the prompt; ties go to
 * the least recently used. */
static struct slot *
runner_pick_slot(struct runner *r, const struct sched_req *q, size_t *lcp)
{
    struct slot *best = NULL;
    size_t best_n = 0;

    for (int i = 0; i < r->parallel; i++) {
        struct slot *sl = &r->slots[i];
        size_t n;

        if (sl->busy)
            continue;
        n = common_prefix(sl->cache, sl->n_cache, q->prompt, q->n_kept);
        if (best == NULL || n > best_n ||
            (n == best_n && sl->last_used < best->last_used)) {
            best = sl;
            best_n = n;
        }
    }
    *lcp = best_n;
    return best;
}

/* Hands free slots to waiting requests, in arrival order. */
static void
runner_dispatch(struct sched *s, struct runner *r)
{
    if (r->loading)
        return;
    while (r->waiters.head != NULL && r->busy < r->parallel) {
        struct sched_req *q = list_pop(&r->waiters);
        size_t lcp;
        struct slot *sl = runner_pick_slot(r, q, &lcp);

        sl->busy = true;
        sl->last_used = ++s->tick;
        r->busy++;
        q->slot = sl;
        /* One token is always evaluated, even when all are cached. */
        q->cached =
            q->n_prompt > 0 && lcp >= q->n_prompt ? q->n_prompt - 1 : lcp;
        sched_make_ready(s, q);
    }
}

static void
slot_store(struct slot *sl, const uint32_t *tokens, size_t n, uint32_t cap)
{
    uint32_t *p;

    if (n > cap)
        n = cap;
    if (n == 0) {
        sl->n_cache = 0;
        return;
    }
    p = realloc(sl->cache, n * sizeof(*p));
    if (p == NULL) {
        sl->n_cache = 0; /* an empty cache is always correct */
        return;
    }
    memcpy(p, tokens, n * sizeof(*p));
    sl->cache = p;
    sl->n_cache = n;
}

/* ---- runners ---- */

static void
runner_on_closed(uv_handle_t *h)
{
    struct runner *r = h->data;
    struct sched *s = r->s;

    for (int i = 0; i < r->parallel; i++)
        free(r->slots[i].cache);
    free(r->slots);
    free(r);
    if (--s->closing == 0 && s->freeing) {
        void (*done)(void *) = s->done;
        void *ud = s->done_ud;

        free(s);
        if (done)
            done(ud);
    }
}

static void sched_resume(struct sched *s);

/* Stops the runner and frees it once its timer is closed. Only with no
 * request attached (or from sched_free). */
static void
runner_unload(struct sched *s, struct runner *r)
{
    struct runner **pp = &s->runners;

    while (*pp != NULL && *pp != r)
        pp = &(*pp)->next;
    if (*pp == r)
        *pp = r->next;
    s->st.unloads++;
    log_trace(TRACE_SCHED, "sched: unload %s", r->model->name);
    uv_timer_stop(&r->timer);
    s->closing++;
    uv_close((uv_handle_t *)&r->timer, runner_on_closed);
    if (s->wait == WAIT_UNLOAD && s->wait_runner == r)
        sched_resume(s);
}

static void
runner_on_expire(uv_timer_t *t)
{
    struct runner *r = t->data;

    if (r->refs == 0 && !r->loading)
        runner_unload(r->s, r);
}

/* The last request let go: expire now (keep-alive 0), never, or after
 * keep-alive of real time. */
static void
runner_idle(struct sched *s, struct runner *r)
{
    if (r->keep_alive == 0) {
        r->expires_at = clock_wall_ns();
        runner_unload(s, r);
        return;
    }
    if (r->keep_alive == SCHED_FOREVER) {
        r->expires_at = INT64_MAX;
        return;
    }
    r->expires_at = sat_add(clock_wall_ns(), r->keep_alive);
    uv_timer_start(&r->timer, runner_on_expire, ns_to_ms((double)r->keep_alive),
                   0);
}

/* Keep-alive 0: unloads now when idle (returns true), else as soon as
 * the requests attached finish. */
static bool
runner_expire(struct sched *s, struct runner *r)
{
    r->keep_alive = 0;
    r->expires_at = clock_wall_ns();
    if (r->refs == 0 && !r->loading) {
        runner_unload(s, r);
        return true;
    }
    return false;
}

static void
runner_attach(struct runner *r, struct sched_req *q)
{
    if (r->refs == 0 && !r->loading)
        uv_timer_stop(&r->timer); /* the idle countdown restarts later */
    r->refs++;
    if (q->has_keep_alive)
        r->keep_alive = norm_keep_alive(q->keep_alive);
    q->runner = r;
    q->num_ctx = r->num_ctx;
    q->state = REQ_WAIT_SLOT;
    list_push(&r->waiters, q);
}

static struct runner *
sched_find_runner(const struct sched *s, const struct sim_model *m)
{
    for (struct runner *r = s->runners; r != NULL; r = r->next)
        if (r->model == m)
            return r;
    return NULL;
}

static int
sched_count_runners(const struct sched *s)
{
    int n = 0;

    for (const struct runner *r = s->runners; r != NULL; r = r->next)
        n++;
    return n;
}

/* Eviction order: keep-alive ascending, forever last, then name. */
static bool
runner_before(const struct runner *a, const struct runner *b)
{
    if (a->keep_alive != b->keep_alive)
        return a->keep_alive < b->keep_alive;
    return strcmp(a->model->name, b->model->name) < 0;
}

/* The first idle runner in eviction order, else the first of all. */
static struct runner *
sched_pick_victim(const struct sched *s)
{
    struct runner *idle = NULL, *any = NULL;

    for (struct runner *r = s->runners; r != NULL; r = r->next) {
        if (r->loading)
            continue;
        if (any == NULL || runner_before(r, any))
            any = r;
        if (r->refs == 0 && (idle == NULL || runner_before(r, idle)))
            idle = r;
    }
    return idle ? idle : any;
}

/* ---- the scheduling loop ---- */

/* Adds to q the part of the current wait (started at s->wait_start) it
 * was there for: for a load, that share of its modelled duration; for a
 * drain, the real time scaled back to modelled time. */
static void
sched_account(struct sched *s, struct sched_req *q, uint64_t now)
{
    uint64_t from = q->t_start > s->wait_start ? q->t_start : s->wait_start;
    double part = now > from ? (double)(now - from) : 0.0;
    double total = now > s->wait_start ? (double)(now - s->wait_start) : 0.0;

    if (s->wait == WAIT_LOAD) {
        double d = (double)s->wait_runner->load_model_ns;

        q->mwait += total > 0 ? d * (part / total) : d;
    } else if (s->o.time_scale > 0) {
        q->mwait += part / s->o.time_scale;
    }
}

static void
req_finish_load(struct sched_req *q)
{
    double v = SCHED_WARM_NS + q->mwait;

    q->load_ns = v > 9e18 ? INT64_MAX : (int64_t)v;
}

/* The awaited load or unload happened: charge the wait to everyone who
 * sat through it and schedule again. */
static void
sched_resume(struct sched *s)
{
    uint64_t now = uv_hrtime();

    for (struct sched_req *q = s->pending.head; q != NULL; q = q->next)
        sched_account(s, q, now);
    if (s->head != NULL)
        sched_account(s, s->head, now);
    if (s->wait == WAIT_LOAD) {
        for (struct sched_req *q = s->wait_runner->waiters.head; q != NULL;
             q = q->next) {
            sched_account(s, q, now);
            req_finish_load(q);
        }
    }
    s->wait = WAIT_NONE;
    s->wait_runner = NULL;
    sched_process(s);
}

static void
sched_wait_for(struct sched *s, enum sched_wait w, struct runner *r)
{
    s->wait = w;
    s->wait_runner = r;
    s->wait_start = uv_hrtime();
}

static void
runner_on_loaded(uv_timer_t *t)
{
    struct runner *r = t->data;
    struct sched *s = r->s;

    r->loading = false;
    r->expires_at = r->keep_alive == SCHED_FOREVER
                        ? INT64_MAX
                        : sat_add(clock_wall_ns(), r->keep_alive);
    log_trace(TRACE_SCHED, "sched: loaded %s", r->model->name);
    /* Finish the waiters' load time before they get slots. */
    if (s->wait == WAIT_LOAD && s->wait_runner == r) {
        uint64_t now = uv_hrtime();

        for (struct sched_req *q = r->waiters.head; q; q = q->next) {
            sched_account(s, q, now);
            req_finish_load(q);
        }
        for (struct sched_req *q = s->pending.head; q; q = q->next)
            sched_account(s, q, now);
        s->wait = WAIT_NONE;
        s->wait_runner = NULL;
    }
    runner_dispatch(s, r);
    if (r->refs == 0)
        runner_idle(s, r); /* everyone waiting for it gave up */
    sched_process(s);
}

/* Creates the runner for the head and starts its load. */
static int
sched_start_load(struct sched *s, struct sched_req *q, uint32_t ctx, int par,
                 uint64_t need, double free_fast)
{
    struct runner *r = calloc(1, sizeof(*r));
    struct runner **pp;
    double delay;

    if (r == NULL)
        return -ENOMEM;
    r->slots = calloc((size_t)par, sizeof(*r->slots));
    if (r->slots == NULL) {
        free(r);
        return -ENOMEM;
    }
    r->s = s;
    r->model = q->m;
    r->opts = q->opts;
    r->ctx_auto = q->opts.num_ctx <= 0;
    r->num_ctx = ctx;
    r->parallel = par;
    r->loading = true;
    r->keep_alive = norm_keep_alive(s->o.default_keep_alive);
    r->size = need;
    if (s->prof->gpus == 0)
        r->size_vram = 0;
    else if ((double)need <= free_fast)
        r->size_vram = need;
    else
        r->size_vram = free_fast > 0 ? (uint64_t)free_fast : 0;
    r->load_model_ns = profile_load_ns(s->prof, q->m);
    uv_timer_init(s->loop, &r->timer);
    r->timer.data = r;
    for (pp = &s->runners; *pp != NULL; pp = &(*pp)->next)
        ;
    *pp = r;
    s->st.loads++;
    log_trace(TRACE_SCHED, "sched: loading %s ctx=%u parallel=%d", q->m->name,
              ctx, par);
    runner_attach(r, q);
    sched_wait_for(s, WAIT_LOAD, r);
    delay = (double)r->load_model_ns * s->o.time_scale;
    uv_timer_start(&r->timer, runner_on_loaded, ns_to_ms(delay), 0);
    return 0;
}

/*
 * One step for the head: attach it, or fail it (head done), or start a
 * load / a wait for a drain (s->wait set), or unload an idle runner
 * (progress; the caller loops).
 */
static void
sched_step(struct sched *s)
{
    struct sched_req *q = s->head;
    struct runner *r = sched_find_runner(s, q->m);
    uint32_t ctx;
    int par;
    uint64_t need;
    double used = 0, fast = sched_fast_mem(s);
    int rc;

    if (r != NULL && !sched_needs_reload(s, r, q)) {
        s->head = NULL;
        runner_attach(r, q);
        if (!r->loading)
            req_finish_load(q);
        runner_dispatch(s, r);
        return;
    }
    if (r != NULL) {
        /* Different runner options: expire the old runner and load
         * anew once it has drained (prefix caches are lost). */
        if (!q->reload_counted) {
            s->st.reloads++;
            q->reload_counted = true;
        }
        if (!runner_expire(s, r))
            sched_wait_for(s, WAIT_UNLOAD, r);
        return;
    }
    ctx = sched_eff_ctx(s, q->m, q->opts.num_ctx);
    par = sched_parallel(s, q->m);
    need = profile_runner_bytes(q->m, ctx, par);
    if ((double)need > sched_total_mem(s)) {
        s->head = NULL;
        sched_fail(s, q, -ENOMEM);
        return;
    }
    for (struct runner *o = s->runners; o != NULL; o = o->next)
        used += (double)(s->prof->gpus > 0 ? o->size_vram : o->size);
    if (s->runners != NULL && (sched_count_runners(s) >= sched_max_loaded(s) ||
                               (double)need > fast - used)) {
        struct runner *v = sched_pick_victim(s);

        if (v == NULL) { /* only loading runners: cannot happen */
            s->head = NULL;
            sched_fail(s, q, -ENOMEM);
            return;
        }
        s->st.evictions++;
        log_trace(TRACE_SCHED, "sched: evicting %s for %s", v->model->name,
                  q->m->name);
        if (!runner_expire(s, v))
            sched_wait_for(s, WAIT_UNLOAD, v);
        return;
    }
    /* Alone, a model too big for VRAM still loads, split GPU/CPU. */
    rc = sched_start_load(s, q, ctx, par, need, fast - used);
    s->head = NULL;
    if (rc != 0)
        sched_fail(s, q, rc);
}

static void
sched_process(struct sched *s)
{
    if (s->processing || s->freeing)
        return;
    s->processing = true;
    while (s->wait == WAIT_NONE && !s->freeing) {
        if (s->head == NULL) {
            s->head = list_pop(&s->pending);
            if (s->head == NULL)
                break;
            s->head->state = REQ_HEAD;
        }
        sched_step(s);
    }
    s->processing = false;
}

/* ---- the interface ---- */

struct sched *
sched_new(uv_loop_t *loop, const struct sched_opts *o)
{
    struct sched *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->o = *o;
    if (s->o.max_queue <= 0)
        s->o.max_queue = SCHED_DEFAULT_QUEUE;
    if (s->o.num_parallel <= 0)
        s->o.num_parallel = 1;
    if (!(s->o.time_scale >= 0))
        s->o.time_scale = 0;
    if (o->profile != NULL) {
        s->prof = o->profile;
    } else {
        (void)profile_lookup("cpu", &s->own_profile);
        s->prof = &s->own_profile;
    }
    uv_timer_init(loop, &s->defer);
    s->defer.data = s;
    return s;
}

static void
sched_on_defer_closed(uv_handle_t *h)
{
    struct sched *s = h->data;

    if (--s->closing == 0) {
        void (*done)(void *) = s->done;
        void *ud = s->done_ud;

        free(s);
        if (done)
            done(ud);
    }
}

void
sched_free(struct sched *s, void (*done)(void *), void *ud)
{
    if (s == NULL) {
        if (done)
            done(ud);
        return;
    }
    s->freeing = true;
    s->done = done;
    s->done_ud = ud;
    /* Requests never released die with the scheduler. */
    while (s->all != NULL)
        req_free(s->all);
    s->pending = (struct req_list){0};
    s->ready = (struct req_list){0};
    s->head = NULL;
    s->wait = WAIT_NONE;
    while (s->runners != NULL)
        runner_unload(s, s->runners);
    s->closing++;
    uv_close((uv_handle_t *)&s->defer, sched_on_defer_closed);
}

struct sched_req *
sched_request(struct sched *s, struct sim_model *m, const struct runner_opts *o,
              bool has_keep_alive, int64_t keep_alive, const uint32_t *prompt,
              size_t n, sched_ready_cb cb, void *ud, int *err)
{
    struct sched_req *q;
    struct runner *r;
    int dummy;

    if (err == NULL)
        err = &dummy;
    *err = 0;
    if (s == NULL || m == NULL || cb == NULL || s->freeing) {
        *err = -EINVAL;
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    q->s = s;
    q->m = m;
    if (o != NULL)
        q->opts = *o;
    else
        runner_opts_default(&q->opts);
    q->has_keep_alive = has_keep_alive;
    q->keep_alive = keep_alive;
    q->n_prompt = n;
    q->n_kept = prompt == NULL         ? 0
                : n < SCHED_MAX_PROMPT ? n
                                       : SCHED_MAX_PROMPT;
    if (q->n_kept > 0) {
        q->prompt = malloc(q->n_kept * sizeof(*q->prompt));
        if (q->prompt == NULL) {
            free(q);
            *err = -ENOMEM;
            return NULL;
        }
        memcpy(q->prompt, prompt, q->n_kept * sizeof(*q->prompt));
    }
    q->cb = cb;
    q->ud = ud;
    q->t_start = uv_hrtime();

    r = sched_find_runner(s, m);
    if (r == NULL || sched_needs_reload(s, r, q)) {
        if (s->pending.n >= (size_t)s->o.max_queue) {
            s->st.rejected++;
            free(q->prompt);
            free(q);
            *err = -EBUSY;
            return NULL;
        }
    }
    q->anext = s->all;
    if (s->all)
        s->all->aprev = q;
    s->all = q;
    if (r != NULL && !sched_needs_reload(s, r, q)) {
        /* Fast path: a loaded (or loading) runner with the same options
         * takes the request at once, never 503. */
        runner_attach(r, q);
        if (!r->loading)
            req_finish_load(q);
        runner_dispatch(s, r);
        return q;
    }
    q->state = REQ_QUEUED;
    list_push(&s->pending, q);
    sched_process(s);
    return q;
}

size_t
sched_req_cached(const struct sched_req *r)
{
    return r->cached;
}

int64_t
sched_req_load_ns(const struct sched_req *r)
{
    return r->load_ns;
}

uint32_t
sched_req_num_ctx(const struct sched_req *r)
{
    return r->num_ctx;
}

void
sched_release(struct sched_req *q, const uint32_t *tokens, size_t n)
{
    struct sched *s;
    struct runner *r;

    if (q == NULL)
        return;
    s = q->s;
    r = q->runner;
    switch (q->state) {
    case REQ_QUEUED:
        list_remove(&s->pending, q);
        break;
    case REQ_HEAD:
        /* Whatever the scheduler waits for still happens; it then moves
         * on to the next request. */
        s->head = NULL;
        break;
    case REQ_WAIT_SLOT:
        list_remove(&r->waiters, q);
        if (--r->refs == 0 && !r->loading)
            runner_idle(s, r);
        break;
    case REQ_READY:
    case REQ_ACTIVE:
        if (q->state == REQ_READY)
            list_remove(&s->ready, q);
        if (r == NULL || q->slot == NULL)
            break;
        if (tokens != NULL)
            slot_store(q->slot, tokens, n, r->num_ctx);
        else if (q->slot->n_cache > q->cached)
            q->slot->n_cache = q->cached; /* only what was shared is sure */
        q->slot->busy = false;
        q->slot->last_used = ++s->tick;
        r->busy--;
        r->refs--;
        runner_dispatch(s, r);
        if (r->refs == 0)
            runner_idle(s, r);
        break;
    }
    req_free(q);
    sched_process(s);
}

void
sched_expire(struct sched *s, const struct sim_model *m)
{
    struct runner *r, *next;

    for (r = s->runners; r != NULL; r = next) {
        next = r->next;
        if (r->model == m)
            (void)runner_expire(s, r);
    }
    sched_process(s);
}

size_t
sched_ps(const struct sched *s, struct sched_ps *out, size_t max)
{
    size_t n = 0;
    int64_t now = clock_wall_ns();

    for (const struct runner *r = s->runners; r != NULL; r = r->next, n++) {
        struct sched_ps e;
        size_t i;

        e.model = r->model;
        e.size = r->size;
        e.size_vram = r->size_vram;
        e.context_length = r->num_ctx;
        if (r->keep_alive == SCHED_FOREVER)
            e.expires_at_ns = INT64_MAX;
        else if (r->loading)
            e.expires_at_ns = sat_add(now, r->keep_alive);
        else
            e.expires_at_ns = r->expires_at;
        e.parallel = r->parallel;
        e.in_use = r->busy;
        e.loading = r->loading;
        if (out == NULL || max == 0)
            continue;
        /* Insertion into out[0..min(n, max)), furthest expiry first. */
        i = n < max ? n : max;
        while (i > 0 && out[i - 1].expires_at_ns < e.expires_at_ns) {
            if (i < max)
                out[i] = out[i - 1];
            i--;
        }
        if (i < max)
            out[i] = e;
    }
    return n;
}

size_t
sched_pending(const struct sched *s)
{
    return s->pending.n;
}

void
sched_get_stats(const struct sched *s, struct sched_stats *out)
{
    *out = s->st;
}

bool
sched_uses_model(const struct sched *s, const struct sim_model *m)
{
    if (sched_find_runner(s, m) != NULL)
        return true;
    for (const struct sched_req *q = s->all; q != NULL; q = q->anext)
        if (q->m == m)
            return true;
    return false;
}
