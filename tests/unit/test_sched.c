/*
 * test_sched.c - the scheduler on a real uv loop.
 *
 * Loads run at time_scale 1e-4 (a 2 s load is 0.2 ms of real time).
 * Tests assert the order of events, sched_ps, stats and cached-prefix
 * counts, never wall-clock durations, and they never sleep: the loop
 * runs until a condition holds, with a deadline timer as a guard.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "herd/clock.h"
#include "catalog.h"
#include "profile.h"
#include "sched.h"

#define HOUR_NS (3600LL * NS_PER_SEC)

struct t {
    uv_loop_t loop;
    struct sim_catalog cat;
    struct sim_profile prof;
    struct sched_opts opts;
    struct sched *s;
    int seq; /* callbacks fired so far */
    bool freed;
};

struct treq {
    struct t *t;
    struct sched_req *r;
    bool fired;
    int err;
    int order; /* 1 for the first callback of the test, ... */
};

static void
t_setup_opts(struct t *t)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    catalog_init(&t->cat);
    /* A 24 GiB GPU, as an RTX 4090. */
    assert_int_equal(profile_lookup("rtx-4090", &t->prof), 0);
    t->opts.num_parallel = 1;
    t->opts.max_loaded = 0;
    t->opts.max_queue = 512;
    t->opts.default_keep_alive = 5 * 60 * NS_PER_SEC;
    t->opts.context_length = 4096;
    t->opts.time_scale = 0.0001;
    t->opts.profile = &t->prof;
    assert_int_equal(catalog_add_spec(&t->cat, "a:1b,size=1GB", NULL, 0), 0);
    assert_int_equal(catalog_add_spec(&t->cat, "b:1b,size=1GB", NULL, 0), 0);
    assert_int_equal(catalog_add_spec(&t->cat, "c:1b,size=1GB", NULL, 0), 0);
    assert_int_equal(catalog_add_spec(&t->cat, "d:1b,size=1GB", NULL, 0), 0);
    assert_int_equal(
        catalog_add_spec(&t->cat, "small-ctx:1b,size=1GB,ctx=2048", NULL, 0),
        0);
    assert_int_equal(catalog_add_spec(&t->cat, "emb,embed,size=300MB", NULL, 0),
                     0);
    /* Bigger than the 24 GiB of VRAM, smaller than VRAM + RAM. */
    assert_int_equal(catalog_add_spec(&t->cat, "huge:70b,size=30GB", NULL, 0),
                     0);
    /* Bigger than VRAM + RAM (88 GiB). */
    assert_int_equal(
        catalog_add_spec(&t->cat, "giant:400b,size=200GB", NULL, 0), 0);
}

static void
t_start(struct t *t)
{
    t->s = sched_new(&t->loop, &t->opts);
    assert_non_null(t->s);
}

static void
on_freed(void *ud)
{
    ((struct t *)ud)->freed = true;
}

static void
t_teardown(struct t *t)
{
    sched_free(t->s, on_freed, t);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_true(t->freed);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    catalog_cleanup(&t->cat);
}

static struct sim_model *
M(struct t *t, const char *name)
{
    struct sim_model *m = catalog_find(&t->cat, name);

    assert_non_null(m);
    return m;
}

static void
on_ready(struct sched_req *r, int err, void *ud)
{
    struct treq *q = ud;

    assert_false(q->fired);
    assert_ptr_equal(r, q->r);
    q->fired = true;
    q->err = err;
    q->order = ++q->t->seq;
    if (err != 0)
        q->r = NULL; /* the scheduler frees a failed request */
}

/* A request; its callback must not have fired inside sched_request. */
static void
submit_full(struct t *t, struct treq *q, const char *model, int64_t num_ctx,
            bool has_ka, int64_t ka, const uint32_t *prompt, size_t n)
{
    struct runner_opts o;
    int err = 1;

    runner_opts_default(&o);
    o.num_ctx = num_ctx;
    memset(q, 0, sizeof(*q));
    q->t = t;
    q->r = sched_request(t->s, M(t, model), &o, has_ka, ka, prompt, n, on_ready,
                         q, &err);
    assert_non_null(q->r);
    assert_int_equal(err, 0);
    assert_false(q->fired);
}

static void
submit(struct t *t, struct treq *q, const char *model)
{
    submit_full(t, q, model, 0, false, 0, NULL, 0);
}

static void
release(struct treq *q, const uint32_t *tokens, size_t n)
{
    assert_non_null(q->r);
    sched_release(q->r, tokens, n);
    q->r = NULL;
}

struct until {
    bool (*pred)(void *);
    void *arg;
    bool expired;
};

static void
on_guard(uv_timer_t *h)
{
    struct until *u = h->data;

    u->expired = true;
    uv_stop(h->loop);
}

/* Before the loop would block: stop it if the condition holds, so that
 * uv_run returns instead of sleeping until the next timer. */
static void
on_prepare(uv_prepare_t *h)
{
    struct until *u = h->data;

    if (u->pred(u->arg))
        uv_stop(h->loop);
}

/* Runs the loop until pred(arg) holds; false if the 10 s guard fired. */
static bool
run_until(struct t *t, bool (*pred)(void *), void *arg)
{
    struct until u = {pred, arg, false};
    uv_timer_t guard;
    uv_prepare_t prep;

    uv_timer_init(&t->loop, &guard);
    uv_prepare_init(&t->loop, &prep);
    guard.data = &u;
    prep.data = &u;
    uv_timer_start(&guard, on_guard, 10000, 0);
    uv_prepare_start(&prep, on_prepare);
    while (!pred(arg) && !u.expired)
        uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_close((uv_handle_t *)&prep, NULL);
    uv_run(&t->loop, UV_RUN_NOWAIT); /* runs the close callbacks */
    return pred(arg);
}

static bool
is_fired(void *q)
{
    return ((struct treq *)q)->fired;
}

static void
wait_fired(struct t *t, struct treq *q)
{
    assert_true(run_until(t, is_fired, q));
}

/* Lets every event that is already due run (deferred callbacks, 0 ms
 * timers), without blocking. */
static void
settle(struct t *t)
{
    for (int i = 0; i < 5; i++)
        uv_run(&t->loop, UV_RUN_NOWAIT);
}

static size_t
n_loaded(struct t *t)
{
    return sched_ps(t->s, NULL, 0);
}

static bool
is_empty(void *t)
{
    return n_loaded(t) == 0;
}

/* The runner of model `name` in sched_ps, or NULL. */
static bool
ps_find(struct t *t, const char *name, struct sched_ps *out)
{
    struct sched_ps ps[8];
    size_t n = sched_ps(t->s, ps, 8);

    for (size_t i = 0; i < n && i < 8; i++) {
        if (strcmp(ps[i].model->name, name) == 0) {
            if (out)
                *out = ps[i];
            return true;
        }
    }
    return false;
}

static struct sched_stats
stats(struct t *t)
{
    struct sched_stats st;

    sched_get_stats(t->s, &st);
    return st;
}

/* ---- tests ---- */

static void
test_cold_then_fast_path(void **state)
{
    struct t t;
    struct treq q1, q2;
    struct sched_ps ps;
    uint32_t prompt[4] = {1, 2, 3, 4};

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit_full(&t, &q1, "a:1b", 0, false, 0, prompt, 4);
    assert_int_equal(stats(&t).loads, 1);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_true(ps.loading);
    assert_int_equal(sched_pending(t.s), 0);
    wait_fired(&t, &q1);
    assert_int_equal(q1.err, 0);
    /* A cold request's load_ns covers the modelled load. */
    assert_true(sched_req_load_ns(q1.r) >=
                profile_load_ns(&t.prof, M(&t, "a:1b")));
    assert_int_equal(sched_req_num_ctx(q1.r), 4096);
    assert_int_equal(sched_req_cached(q1.r), 0);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_false(ps.loading);
    assert_int_equal(ps.in_use, 1);
    assert_int_equal(ps.parallel, 1);
    assert_int_equal(ps.context_length, 4096);
    assert_int_equal(ps.size_vram, ps.size);
    assert_true(ps.size > M(&t, "a:1b")->size);
    release(&q1, prompt, 4);

    /* Warm: no load, a few tens of microseconds, still deferred. */
    submit_full(&t, &q2, "a:1b", 0, false, 0, prompt, 4);
    assert_int_equal(sched_pending(t.s), 0);
    wait_fired(&t, &q2);
    assert_int_equal(q2.err, 0);
    assert_int_equal(stats(&t).loads, 1);
    assert_true(sched_req_load_ns(q2.r) > 0);
    assert_true(sched_req_load_ns(q2.r) < 1000000);
    release(&q2, NULL, 0);
    assert_int_equal(stats(&t).unloads, 0);
    assert_int_equal(n_loaded(&t), 1);
    t_teardown(&t);
}

static void
test_max_queue(void **state)
{
    struct t t;
    struct treq qa, qb, qc, qa2;
    struct sched_req *r;
    struct runner_opts o;
    int err = 0;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_queue = 2;
    t.opts.num_parallel = 2;
    t_start(&t);
    submit(&t, &qa, "a:1b"); /* taken at once: loading */
    submit(&t, &qb, "b:1b"); /* waits behind the load */
    submit(&t, &qc, "c:1b");
    assert_int_equal(sched_pending(t.s), 2);
    runner_opts_default(&o);
    r = sched_request(t.s, M(&t, "d:1b"), &o, false, 0, NULL, 0, on_ready, NULL,
                      &err);
    assert_null(r);
    assert_int_equal(err, -EBUSY);
    assert_int_equal(stats(&t).rejected, 1);
    /* Another request for the loading model shares its load (fast path:
     * never 503). */
    submit(&t, &qa2, "a:1b");
    assert_int_equal(sched_pending(t.s), 2);

    wait_fired(&t, &qc);
    assert_true(qa.fired && qa2.fired && qb.fired);
    /* Head of line: a's load, then b's, then c's. */
    assert_true(qa.order < qb.order);
    assert_true(qa2.order < qb.order);
    assert_true(qb.order < qc.order);
    assert_int_equal(stats(&t).loads, 3);
    /* The shared load is in a2's load time too. */
    assert_true(sched_req_load_ns(qa2.r) > 0);
    /* Both got slots when the load was done, in arrival order. */
    assert_true(qa.order < qa2.order);
    assert_int_equal(sched_pending(t.s), 0);
    release(&qa, NULL, 0);
    release(&qa2, NULL, 0);
    release(&qb, NULL, 0);
    release(&qc, NULL, 0);
    t_teardown(&t);
}

static void
test_parallel_slots(void **state)
{
    struct t t;
    struct treq q1, q2, q3;
    struct sched_ps ps;

    (void)state;
    t_setup_opts(&t);
    t.opts.num_parallel = 2;
    t_start(&t);
    submit(&t, &q1, "a:1b");
    submit(&t, &q2, "a:1b");
    submit(&t, &q3, "a:1b");
    assert_int_equal(sched_pending(t.s), 0); /* slot waits are not queued */
    wait_fired(&t, &q2);
    settle(&t);
    assert_true(q1.fired);
    assert_false(q3.fired);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_int_equal(ps.parallel, 2);
    assert_int_equal(ps.in_use, 2);
    release(&q1, NULL, 0);
    wait_fired(&t, &q3);
    assert_true(q2.order < q3.order);
    assert_int_equal(stats(&t).loads, 1);
    release(&q2, NULL, 0);
    release(&q3, NULL, 0);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_int_equal(ps.in_use, 0);
    t_teardown(&t);
}

static void
test_embedding_parallel_one(void **state)
{
    struct t t;
    struct treq q1, q2;
    struct sched_ps ps;

    (void)state;
    t_setup_opts(&t);
    t.opts.num_parallel = 4;
    t_start(&t);
    submit(&t, &q1, "emb");
    submit(&t, &q2, "emb");
    wait_fired(&t, &q1);
    settle(&t);
    assert_false(q2.fired);
    assert_true(ps_find(&t, "emb:latest", &ps));
    assert_int_equal(ps.parallel, 1);
    release(&q1, NULL, 0);
    wait_fired(&t, &q2);
    release(&q2, NULL, 0);
    t_teardown(&t);
}

static void
test_reload_on_num_ctx(void **state)
{
    struct t t;
    struct treq q1, q2, q3, q4;
    struct sched_ps ps;
    uint32_t prompt[6] = {1, 2, 3, 4, 5, 6};

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit_full(&t, &q1, "a:1b", 2048, false, 0, prompt, 6);
    wait_fired(&t, &q1);
    assert_int_equal(sched_req_num_ctx(q1.r), 2048);
    release(&q1, prompt, 6);

    /* Same options: prefix cached, no reload. */
    submit_full(&t, &q2, "a:1b", 2048, false, 0, prompt, 6);
    wait_fired(&t, &q2);
    assert_int_equal(sched_req_cached(q2.r), 5);
    release(&q2, prompt, 6);
    assert_int_equal(stats(&t).reloads, 0);

    /* num_ctx changes: unload, load, cache gone. */
    submit_full(&t, &q3, "a:1b", 8192, false, 0, prompt, 6);
    wait_fired(&t, &q3);
    assert_int_equal(stats(&t).reloads, 1);
    assert_int_equal(stats(&t).unloads, 1);
    assert_int_equal(stats(&t).loads, 2);
    assert_int_equal(sched_req_num_ctx(q3.r), 8192);
    assert_int_equal(sched_req_cached(q3.r), 0);
    assert_true(sched_req_load_ns(q3.r) >=
                profile_load_ns(&t.prof, M(&t, "a:1b")));
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_int_equal(ps.context_length, 8192);
    assert_int_equal(n_loaded(&t), 1);
    release(&q3, prompt, 6);

    /* Above the training context: capped first, so equal -> no reload. */
    submit_full(&t, &q4, "small-ctx:1b", 100000, false, 0, NULL, 0);
    wait_fired(&t, &q4);
    assert_int_equal(sched_req_num_ctx(q4.r), 2048);
    release(&q4, NULL, 0);
    submit_full(&t, &q4, "small-ctx:1b", 4096, false, 0, NULL, 0);
    wait_fired(&t, &q4);
    release(&q4, NULL, 0);
    /* Auto (default 4096, capped to 2048) equals the loaded 2048 too. */
    submit_full(&t, &q4, "small-ctx:1b", 0, false, 0, NULL, 0);
    wait_fired(&t, &q4);
    release(&q4, NULL, 0);
    assert_int_equal(stats(&t).reloads, 1);
    t_teardown(&t);
}

static void
test_reload_waits_for_drain(void **state)
{
    struct t t;
    struct treq q1, q2, q3;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit_full(&t, &q1, "a:1b", 2048, false, 0, NULL, 0);
    wait_fired(&t, &q1);
    submit_full(&t, &q2, "a:1b", 8192, false, 0, NULL, 0);
    /* Head of line: another model waits behind the reload. */
    submit(&t, &q3, "b:1b");
    settle(&t);
    assert_false(q2.fired);
    assert_false(q3.fired);
    assert_int_equal(stats(&t).reloads, 1);
    assert_int_equal(sched_pending(t.s), 1);
    release(&q1, NULL, 0); /* drained: the old runner unloads at once */
    assert_int_equal(stats(&t).unloads, 1);
    wait_fired(&t, &q3);
    assert_true(q2.order < q3.order);
    assert_int_equal(sched_req_num_ctx(q2.r), 8192);
    release(&q2, NULL, 0);
    release(&q3, NULL, 0);
    t_teardown(&t);
}

static void
test_eviction_order(void **state)
{
    struct t t;
    struct treq qa, qb, qc, qd;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_loaded = 2;
    t_start(&t);
    submit_full(&t, &qa, "a:1b", 0, true, HOUR_NS, NULL, 0);
    submit_full(&t, &qb, "b:1b", 0, true, -1, NULL, 0); /* forever */
    wait_fired(&t, &qb);
    release(&qa, NULL, 0);
    release(&qb, NULL, 0);
    assert_int_equal(n_loaded(&t), 2);

    /* Full: the shortest keep-alive (a, 1h) goes, forever stays. */
    submit(&t, &qc, "c:1b"); /* default 5m */
    wait_fired(&t, &qc);
    assert_int_equal(stats(&t).evictions, 1);
    assert_false(ps_find(&t, "a:1b", NULL));
    assert_true(ps_find(&t, "b:1b", NULL));
    assert_true(ps_find(&t, "c:1b", NULL));
    release(&qc, NULL, 0);

    /* Next: c (5m) before b (forever). */
    submit(&t, &qd, "d:1b");
    wait_fired(&t, &qd);
    assert_int_equal(stats(&t).evictions, 2);
    assert_false(ps_find(&t, "c:1b", NULL));
    assert_true(ps_find(&t, "b:1b", NULL));
    assert_true(ps_find(&t, "d:1b", NULL));
    release(&qd, NULL, 0);
    t_teardown(&t);
}

static void
test_eviction_name_tiebreak_and_idle_first(void **state)
{
    struct t t;
    struct treq qa, qb, qc;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_loaded = 2;
    t_start(&t);
    submit(&t, &qb, "b:1b");
    submit(&t, &qa, "a:1b");
    wait_fired(&t, &qa);
    release(&qb, NULL, 0);
    /* a is busy, b idle, same keep-alive: a sorts first by name but the
     * first *idle* one is evicted. */
    submit(&t, &qc, "c:1b");
    wait_fired(&t, &qc);
    assert_true(ps_find(&t, "a:1b", NULL));
    assert_false(ps_find(&t, "b:1b", NULL));
    release(&qa, NULL, 0);
    release(&qc, NULL, 0);
    t_teardown(&t);
}

static void
test_eviction_waits_for_busy(void **state)
{
    struct t t;
    struct treq qa, qb;
    struct sched_ps ps;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_loaded = 1;
    t_start(&t);
    submit(&t, &qa, "a:1b");
    wait_fired(&t, &qa);
    submit(&t, &qb, "b:1b");
    settle(&t);
    assert_false(qb.fired);
    assert_int_equal(stats(&t).evictions, 1);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_int_equal(ps.in_use, 1);
    /* Chosen for eviction: expires at once when done. */
    assert_true(ps.expires_at_ns <= clock_wall_ns());
    release(&qa, NULL, 0);
    assert_false(ps_find(&t, "a:1b", NULL));
    wait_fired(&t, &qb);
    assert_int_equal(qb.err, 0);
    assert_true(ps_find(&t, "b:1b", NULL));
    assert_int_equal(stats(&t).unloads, 1);
    release(&qb, NULL, 0);
    t_teardown(&t);
}

static void
test_vram_fit(void **state)
{
    struct t t;
    struct treq qa, qh, qb;
    struct sched_ps ps;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit(&t, &qa, "a:1b");
    wait_fired(&t, &qa);
    release(&qa, NULL, 0);
    /* 30 GB does not fit next to a (nor alone): a is evicted, then the
     * big one loads alone with a partial GPU split. */
    submit(&t, &qh, "huge:70b");
    wait_fired(&t, &qh);
    assert_int_equal(qh.err, 0);
    assert_int_equal(stats(&t).evictions, 1);
    assert_false(ps_find(&t, "a:1b", NULL));
    assert_true(ps_find(&t, "huge:70b", &ps));
    assert_true(ps.size_vram < ps.size);
    assert_true(ps.size_vram > 0);
    release(&qh, NULL, 0);
    /* It fills the VRAM: a small model evicts it. */
    submit(&t, &qb, "b:1b");
    wait_fired(&t, &qb);
    assert_false(ps_find(&t, "huge:70b", NULL));
    assert_int_equal(stats(&t).evictions, 2);
    release(&qb, NULL, 0);
    t_teardown(&t);
}

static void
test_never_fits(void **state)
{
    struct t t;
    struct treq qg, qa;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit(&t, &qa, "a:1b");
    wait_fired(&t, &qa);
    submit(&t, &qg, "giant:400b");
    wait_fired(&t, &qg);
    assert_int_equal(qg.err, -ENOMEM);
    assert_null(qg.r); /* freed by the scheduler */
    /* Nothing was evicted for a model that can never fit. */
    assert_true(ps_find(&t, "a:1b", NULL));
    assert_int_equal(stats(&t).evictions, 0);
    release(&qa, NULL, 0);
    t_teardown(&t);
}

static void
test_keep_alive_zero(void **state)
{
    struct t t;
    struct treq q;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit_full(&t, &q, "a:1b", 0, true, 0, NULL, 0);
    wait_fired(&t, &q);
    assert_int_equal(n_loaded(&t), 1);
    release(&q, NULL, 0);
    assert_int_equal(n_loaded(&t), 0);
    assert_int_equal(stats(&t).unloads, 1);
    t_teardown(&t);
}

static void
test_keep_alive_timer(void **state)
{
    struct t t;
    struct treq q1, q2;
    struct sched_ps ps;
    int64_t before;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    /* A request that omits keep_alive keeps the runner's value. */
    submit_full(&t, &q1, "a:1b", 0, true, 20 * NS_PER_MS, NULL, 0);
    wait_fired(&t, &q1);
    release(&q1, NULL, 0);
    submit(&t, &q2, "a:1b");
    wait_fired(&t, &q2);
    before = clock_wall_ns();
    release(&q2, NULL, 0);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_true(ps.expires_at_ns >= before + 20 * NS_PER_MS);
    assert_true(ps.expires_at_ns < before + 10 * NS_PER_SEC);
    assert_true(run_until(&t, is_empty, &t));
    assert_int_equal(stats(&t).unloads, 1);
    t_teardown(&t);
}

static void
test_expires_at(void **state)
{
    struct t t;
    struct treq qa, qb;
    struct sched_ps ps[4], one;
    int64_t now = clock_wall_ns(), prev;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit(&t, &qa, "a:1b");
    /* Loading: now + keep-alive. */
    assert_true(ps_find(&t, "a:1b", &one));
    assert_true(one.loading);
    assert_true(one.expires_at_ns >= now + 5 * 60 * NS_PER_SEC);
    assert_true(one.expires_at_ns < now + 6 * 60 * NS_PER_SEC);
    wait_fired(&t, &qa);
    /* In use: the previous value stays. */
    assert_true(ps_find(&t, "a:1b", &one));
    prev = one.expires_at_ns;
    settle(&t);
    assert_true(ps_find(&t, "a:1b", &one));
    assert_true(one.expires_at_ns == prev);
    /* Idle: now + keep-alive, from the end of the request. */
    now = clock_wall_ns();
    release(&qa, NULL, 0);
    assert_true(ps_find(&t, "a:1b", &one));
    assert_true(one.expires_at_ns >= now + 5 * 60 * NS_PER_SEC);

    /* Forever: the sentinel, and it sorts first. */
    submit_full(&t, &qb, "b:1b", 0, true, -1, NULL, 0);
    wait_fired(&t, &qb);
    assert_int_equal(sched_ps(t.s, ps, 4), 2);
    assert_string_equal(ps[0].model->name, "b:1b");
    assert_true(ps[0].expires_at_ns == INT64_MAX);
    assert_string_equal(ps[1].model->name, "a:1b");
    /* max limits what is written, not the count. */
    assert_int_equal(sched_ps(t.s, ps, 1), 2);
    assert_string_equal(ps[0].model->name, "b:1b");
    release(&qb, NULL, 0);
    assert_true(ps_find(&t, "b:1b", &one));
    assert_true(one.expires_at_ns == INT64_MAX);
    t_teardown(&t);
}

static void
test_sched_expire(void **state)
{
    struct t t;
    struct treq q;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit(&t, &q, "a:1b");
    wait_fired(&t, &q);
    release(&q, NULL, 0);
    assert_int_equal(n_loaded(&t), 1);
    sched_expire(t.s, M(&t, "a:1b"));
    assert_int_equal(n_loaded(&t), 0);

    /* Busy: expires as soon as its request ends. */
    submit(&t, &q, "a:1b");
    wait_fired(&t, &q);
    sched_expire(t.s, M(&t, "a:1b"));
    assert_int_equal(n_loaded(&t), 1);
    release(&q, NULL, 0);
    assert_int_equal(n_loaded(&t), 0);
    assert_int_equal(stats(&t).unloads, 2);
    sched_expire(t.s, M(&t, "b:1b")); /* not loaded: nothing */
    t_teardown(&t);
}

static void
test_prefix_cache(void **state)
{
    struct t t;
    struct treq q;
    uint32_t conv[40];

    (void)state;
    for (uint32_t i = 0; i < 40; i++)
        conv[i] = 1000 + i;
    t_setup_opts(&t);
    t_start(&t);
    /* Turn 1: prompt 10, answer 5. */
    submit_full(&t, &q, "a:1b", 0, false, 0, conv, 10);
    wait_fired(&t, &q);
    assert_int_equal(sched_req_cached(q.r), 0);
    release(&q, conv, 15);
    /* Turn 2 extends prompt + answer: those 15 are cached. */
    submit_full(&t, &q, "a:1b", 0, false, 0, conv, 20);
    wait_fired(&t, &q);
    assert_int_equal(sched_req_cached(q.r), 15);
    release(&q, conv, 25);
    /* The same prompt again: all cached, one token still evaluated. */
    submit_full(&t, &q, "a:1b", 0, false, 0, conv, 20);
    wait_fired(&t, &q);
    assert_int_equal(sched_req_cached(q.r), 19);
    release(&q, conv, 20);
    /* A different start shares nothing. */
    submit_full(&t, &q, "a:1b", 0, false, 0, conv + 1, 10);
    wait_fired(&t, &q);
    assert_int_equal(sched_req_cached(q.r), 0);
    /* Ended without tokens: only the shared prefix (none) stays. */
    release(&q, NULL, 0);
    submit_full(&t, &q, "a:1b", 0, false, 0, conv, 20);
    wait_fired(&t, &q);
    assert_int_equal(sched_req_cached(q.r), 0);
    release(&q, NULL, 0);
    t_teardown(&t);
}

static void
test_prefix_slot_choice(void **state)
{
    struct t t;
    struct treq q1, q2, q3;
    uint32_t x[20], y[20];

    (void)state;
    for (uint32_t i = 0; i < 20; i++) {
        x[i] = 100 + i;
        y[i] = 500 + i;
    }
    t_setup_opts(&t);
    t.opts.num_parallel = 2;
    t_start(&t);
    /* Two conversations in the two slots. */
    submit_full(&t, &q1, "a:1b", 0, false, 0, x, 8);
    submit_full(&t, &q2, "a:1b", 0, false, 0, y, 8);
    wait_fired(&t, &q2);
    release(&q1, x, 12);
    release(&q2, y, 12);
    /* Each follow-up finds its own slot by longest common prefix, even
     * the one in the less recently used slot. */
    submit_full(&t, &q1, "a:1b", 0, false, 0, x, 16);
    wait_fired(&t, &q1);
    assert_int_equal(sched_req_cached(q1.r), 12);
    submit_full(&t, &q2, "a:1b", 0, false, 0, y, 16);
    wait_fired(&t, &q2);
    assert_int_equal(sched_req_cached(q2.r), 12);
    release(&q2, y, 16);
    release(&q1, x, 16);
    /* No match anywhere: the least recently used slot (y's) is taken and
     * x's cache survives. */
    submit_full(&t, &q3, "a:1b", 0, false, 0, NULL, 0);
    wait_fired(&t, &q3);
    release(&q3, x + 10, 3);
    submit_full(&t, &q1, "a:1b", 0, false, 0, x, 18);
    wait_fired(&t, &q1);
    assert_int_equal(sched_req_cached(q1.r), 16);
    release(&q1, NULL, 0);
    t_teardown(&t);
}

static void
test_cancel(void **state)
{
    struct t t;
    struct treq qa, qb, qslot, qq, qload, qfree;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_loaded = 1;
    t_start(&t);
    submit(&t, &qa, "a:1b");
    wait_fired(&t, &qa);
    /* Waiting for a slot, then cancelled. */
    submit(&t, &qslot, "a:1b");
    /* The head, waiting for a to drain, then cancelled. */
    submit(&t, &qb, "b:1b");
    /* Queued behind it, then cancelled. */
    submit(&t, &qq, "c:1b");
    settle(&t);
    assert_false(qslot.fired || qb.fired || qq.fired);
    assert_int_equal(sched_pending(t.s), 1);
    release(&qslot, NULL, 0);
    release(&qq, NULL, 0);
    assert_int_equal(sched_pending(t.s), 0);
    release(&qb, NULL, 0);
    release(&qa, NULL, 0);
    /* a drains and unloads (chosen for eviction); nobody else runs. */
    assert_int_equal(n_loaded(&t), 0);
    settle(&t);
    assert_false(qslot.fired || qb.fired || qq.fired);

    /* A request cancelled while its model loads: the load completes, the
     * runner idles with its keep-alive, the callback never fires. */
    submit(&t, &qload, "d:1b");
    release(&qload, NULL, 0);
    submit(&t, &qa, "d:1b"); /* after the load: must still be served */
    wait_fired(&t, &qa);
    assert_false(qload.fired);
    release(&qa, NULL, 0);
    assert_int_equal(stats(&t).loads, 2);

    /* Ready but not yet called back: released, never called. */
    submit(&t, &qfree, "d:1b");
    release(&qfree, NULL, 0);
    settle(&t);
    assert_false(qfree.fired);
    t_teardown(&t);
}

static void
test_free_with_work_in_flight(void **state)
{
    struct t t;
    struct treq q1, q2, q3;

    (void)state;
    t_setup_opts(&t);
    t.opts.max_loaded = 1;
    t_start(&t);
    submit_full(&t, &q1, "a:1b", 0, true, 20 * NS_PER_MS, NULL, 0);
    wait_fired(&t, &q1);
    submit(&t, &q2, "b:1b"); /* waits for a to drain */
    submit(&t, &q3, "a:1b"); /* fast path, waits for a slot */
    /* Unreleased requests, a runner with a timer, all go. */
    t_teardown(&t);
    assert_false(q2.fired);
    assert_false(q3.fired);
}

static void
test_free_while_loading(void **state)
{
    struct t t;
    struct treq q1;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    submit(&t, &q1, "a:1b");
    t_teardown(&t);
    assert_false(q1.fired);
}

static bool
both_fired(void *arg)
{
    struct treq *q = arg;

    return q[0].fired && q[1].fired;
}

static void
test_zero_time_scale(void **state)
{
    struct t t;
    struct treq q[2];

    (void)state;
    t_setup_opts(&t);
    t.opts.time_scale = 0;
    t_start(&t);
    submit(&t, &q[0], "a:1b");
    submit(&t, &q[1], "b:1b");
    /* Still through the loop: nothing fired inside sched_request. */
    assert_false(q[0].fired || q[1].fired);
    assert_true(run_until(&t, both_fired, q));
    assert_true(q[0].order < q[1].order);
    /* Modelled load time is still reported. */
    assert_true(sched_req_load_ns(q[0].r) >=
                profile_load_ns(&t.prof, M(&t, "a:1b")));
    /* b waited behind a's load and then its own. */
    assert_true(sched_req_load_ns(q[1].r) >=
                profile_load_ns(&t.prof, M(&t, "b:1b")));
    release(&q[0], NULL, 0);
    release(&q[1], NULL, 0);
    t_teardown(&t);
}

static void
test_cpu_profile(void **state)
{
    struct t t;
    struct treq q;
    struct sched_ps ps;

    (void)state;
    t_setup_opts(&t);
    assert_int_equal(profile_lookup("cpu", &t.prof), 0);
    t.opts.context_length = 0; /* VRAM tier: 4096 without a GPU */
    t_start(&t);
    submit(&t, &q, "a:1b");
    wait_fired(&t, &q);
    assert_true(ps_find(&t, "a:1b", &ps));
    assert_int_equal(ps.size_vram, 0);
    assert_int_equal(ps.context_length, 4096);
    release(&q, NULL, 0);
    t_teardown(&t);
}

static void
test_uses_model(void **state)
{
    struct t t;
    struct treq q;

    (void)state;
    t_setup_opts(&t);
    t_start(&t);
    assert_false(sched_uses_model(t.s, M(&t, "a:1b")));
    submit(&t, &q, "a:1b");
    assert_true(sched_uses_model(t.s, M(&t, "a:1b")));
    wait_fired(&t, &q);
    release(&q, NULL, 0);
    assert_true(sched_uses_model(t.s, M(&t, "a:1b")));
    sched_expire(t.s, M(&t, "a:1b"));
    assert_false(sched_uses_model(t.s, M(&t, "a:1b")));
    t_teardown(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cold_then_fast_path),
        cmocka_unit_test(test_max_queue),
        cmocka_unit_test(test_parallel_slots),
        cmocka_unit_test(test_embedding_parallel_one),
        cmocka_unit_test(test_reload_on_num_ctx),
        cmocka_unit_test(test_reload_waits_for_drain),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_eviction_name_tiebreak_and_idle_first),
        cmocka_unit_test(test_eviction_waits_for_busy),
        cmocka_unit_test(test_vram_fit),
        cmocka_unit_test(test_never_fits),
        cmocka_unit_test(test_keep_alive_zero),
        cmocka_unit_test(test_keep_alive_timer),
        cmocka_unit_test(test_expires_at),
        cmocka_unit_test(test_sched_expire),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_prefix_slot_choice),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_free_with_work_in_flight),
        cmocka_unit_test(test_free_while_loading),
        cmocka_unit_test(test_zero_time_scale),
        cmocka_unit_test(test_cpu_profile),
        cmocka_unit_test(test_uses_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
