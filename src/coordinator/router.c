/*
 * router.c - node choice, slots and the holding queue (see router.h).
 *
 * The scoring inputs live in an index by model (scoreidx.c), which the
 * registry keeps current through its watch callback: every heartbeat,
 * status change, pull, delete, removal and in-flight change updates the
 * few records concerned as it happens. A decision marks the nodes this
 * request may not use (already tried, ejected) or may use once
 * (probation), ranks the nodes of each model it asks for, and takes a
 * slot on the best one with a free slot. Only then, and outside the
 * time it reports as the decision's, does it render the trace's
 * breakdowns, for the candidates shown only.
 */
#include "router.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"
#include "herd/log.h"
#include "metrics.h"
#include "modelcat.h"
#include "scoreidx.h"

#define RATE_BUCKETS 10 /* seconds of slot releases remembered */

#define EJECT_BASE_NS (2 * 1000000000LL)
#define EJECT_MAX_NS  (60 * 1000000000LL)

/* A node that failed recently (only those are kept). */
struct nhealth {
    char id[REGISTRY_NODE_ID_MAX + 1];
    int faults;            /* in a row */
    int64_t ejected_until; /* then probation until a success */
};

/* Per node:model counters for /fleet/queue. */
struct qstat {
    char *node_id, *model; /* owned */
    uint64_t completed, failed;
};

struct router {
    struct herd *h;
    struct sidx *idx; /* the scoring inputs, by model */
    /* rankings of one request: the one being made, the first cold model
     * (kept while the others are tried), the best VRAM fallback */
    struct sidx_ranked rk[3];
    /* the holding queue */
    struct route_req *head, *tail;
    size_t n_held;
    uv_timer_t hold_timer, wake_timer;
    size_t wake_budget; /* slots freed since the last wake; SIZE_MAX: all */
    /* drain rate */
    uint64_t bucket_count[RATE_BUCKETS];
    int64_t bucket_sec[RATE_BUCKETS];
    /* nodes that failed recently */
    struct nhealth *nh;
    size_t n_nh, cap_nh;
    /* counters */
    struct qstat *qs;
    size_t n_qs, cap_qs;
    uint64_t completed, failed;
    int closing;
    void (*closed)(void *);
    void *closed_ud;
};

static void router_on_hold_timer(uv_timer_t *t);
static bool router_wants(const struct route_req *rr, const char *model);
static void router_on_wake_timer(uv_timer_t *t);

/* The registry's changes, as they happen. */
static void
router_on_watch(enum registry_watch_kind kind, const struct registry_node *n,
                const char *model, int64_t count, void *arg)
{
    struct router *r = arg;

    switch (kind) {
    case REGISTRY_WATCH_NODE:
        sidx_sync_node(r->idx, r->h->reg, n);
        break;
    case REGISTRY_WATCH_REMOVE:
        sidx_remove_node(r->idx, n->pos);
        break;
    case REGISTRY_WATCH_INFLIGHT:
        sidx_set_inflight(r->idx, n, model, count);
        break;
    }
}

struct router *
router_new(struct herd *h)
{
    struct router *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->h = h;
    r->idx = sidx_new();
    sidx_sync_all(r->idx, h->reg);
    registry_set_watch(h->reg, router_on_watch, r);
    uv_timer_init(h->loop, &r->hold_timer);
    uv_timer_init(h->loop, &r->wake_timer);
    r->hold_timer.data = r->wake_timer.data = r;
    return r;
}

static void
router_free_mem(struct router *r)
{
    for (size_t i = 0; i < r->n_qs; i++) {
        free(r->qs[i].node_id);
        free(r->qs[i].model);
    }
    free(r->qs);
    free(r->nh);
    for (size_t i = 0; i < 3; i++)
        sidx_ranked_cleanup(&r->rk[i]);
    sidx_free(r->idx);
}

static void
router_on_closed(uv_handle_t *hd)
{
    struct router *r = hd->data;

    if (--r->closing > 0)
        return;
    router_free_mem(r);
    if (r->closed != NULL)
        r->closed(r->closed_ud);
    free(r);
}

void
router_free(struct router *r, void (*closed)(void *), void *ud)
{
    if (r == NULL) {
        if (closed != NULL)
            closed(ud);
        return;
    }
    registry_set_watch(r->h->reg, NULL, NULL);
    r->closed = closed;
    r->closed_ud = ud;
    r->closing = 2;
    uv_close((uv_handle_t *)&r->hold_timer, router_on_closed);
    uv_close((uv_handle_t *)&r->wake_timer, router_on_closed);
}

static int
router_grow(void **p, size_t *cap, size_t want, size_t size)
{
    void *np;

    if (want <= *cap)
        return 0;
    want = want < 16 ? 16 : want * 2;
    if ((np = realloc(*p, want * size)) == NULL)
        return -ENOMEM;
    *p = np;
    *cap = want;
    return 0;
}

/* --- fleet changes -------------------------------------------------------- */

static void
router_wake_all(struct router *r)
{
    if (r->n_held > 0) {
        r->wake_budget = SIZE_MAX;
        if (!uv_is_active((uv_handle_t *)&r->wake_timer))
            uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
    }
}

/* The index follows the registry by itself (router_on_watch); a change
 * only gives held requests another chance. */
void
router_node_changed(struct router *r, const char *node_id)
{
    (void)node_id;
    router_wake_all(r);
}

void
router_fleet_changed(struct router *r)
{
    router_wake_all(r);
}

/* --- deciding ------------------------------------------------------------- */

void
route_decision_init(struct route_decision *d)
{
    memset(d, 0, sizeof(*d));
    buf_init(&d->breakdown, 64 * 1024);
    buf_init(&d->candidates, 1u << 20);
}

void
route_decision_cleanup(struct route_decision *d)
{
    buf_cleanup(&d->breakdown);
    buf_cleanup(&d->candidates);
}

/* --- node health ------------------------------------------------------- */

static struct nhealth *
router_nh_find(struct router *r, const char *id)
{
    for (size_t i = 0; i < r->n_nh; i++) {
        if (strcmp(r->nh[i].id, id) == 0)
            return &r->nh[i];
    }
    return NULL;
}

void
router_node_fault(struct router *r, const char *node_id)
{
    struct nhealth *h = router_nh_find(r, node_id);
    int64_t ns;

    if (h == NULL) {
        if (r->n_nh == 4096 ||
            router_grow((void **)&r->nh, &r->cap_nh, r->n_nh + 1, sizeof(*h)))
            return;
        h = &r->nh[r->n_nh++];
        memset(h, 0, sizeof(*h));
        snprintf(h->id, sizeof(h->id), "%s", node_id);
    }
    h->faults++;
    ns = EJECT_BASE_NS << (h->faults > 5 ? 5 : h->faults - 1);
    if (ns > EJECT_MAX_NS)
        ns = EJECT_MAX_NS;
    h->ejected_until = herd_now_ns() + ns;
    log_warn("node %s ejected for %.0f s after %d fault%s in a row", node_id,
             (double)ns / 1e9, h->faults, h->faults > 1 ? "s" : "");
}

void
router_node_ok(struct router *r, const char *node_id)
{
    struct nhealth *h = router_nh_find(r, node_id);

    if (h == NULL)
        return;
    log_info("node %s healthy again", node_id);
    *h = r->nh[--r->n_nh];
    if (r->n_held > 0) {
        r->wake_budget = SIZE_MAX;
        if (!uv_is_active((uv_handle_t *)&r->wake_timer))
            uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
    }
}

const char *
router_node_health(struct router *r, const char *node_id)
{
    struct nhealth *h = router_nh_find(r, node_id);

    if (h == NULL)
        return NULL;
    return herd_now_ns() < h->ejected_until ? "ejected" : "probation";
}

int
router_health_json(struct router *r, struct buf *b)
{
    int64_t now = herd_now_ns();
    int rc = buf_appends(b, "{");

    for (size_t i = 0; rc == 0 && i < r->n_nh; i++) {
        const struct nhealth *h = &r->nh[i];
        int64_t left = h->ejected_until - now;

        if (i > 0)
            rc = buf_appends(b, ",");
        if (rc == 0)
            rc = json_append_str(b, h->id, strlen(h->id));
        if (rc == 0)
            rc = buf_appendf(b,
                             ":{\"state\":\"%s\",\"faults\":%d,"
                             "\"ejected_for_s\":%.3f}",
                             left > 0 ? "ejected" : "probation", h->faults,
                             left > 0 ? (double)left / 1e9 : 0.0);
    }
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* The trace store's p75 latency of node:model, 0 when none. */
static double
router_p75(void *arg, const struct registry_node *n, const char *model)
{
    struct router *r = arg;
    double p75 = 0;

    if (traces_p75_ms(r->h->traces, n->id, model, &p75) != 0)
        p75 = 0;
    return p75;
}

/* Marks the nodes rr may not use (already tried; ejected) and those on
 * probation (one request at a time). */
static void
router_mark(struct router *r, const struct route_req *rr)
{
    int64_t now = r->n_nh > 0 ? herd_now_ns() : 0;

    for (size_t i = 0; i < rr->n_excluded; i++) {
        const struct registry_node *n =
            registry_find(r->h->reg, rr->excluded[i]);

        if (n != NULL)
            sidx_mark(r->idx, n->pos, SIDX_EXCLUDED);
    }
    for (size_t i = 0; i < r->n_nh; i++) {
        const struct registry_node *n = registry_find(r->h->reg, r->nh[i].id);

        if (n != NULL)
            sidx_mark(r->idx, n->pos,
                      now < r->nh[i].ejected_until ? SIDX_EXCLUDED
                                                   : SIDX_PROBATION);
    }
}

/* Ranks the nodes for model into rk. */
static int
router_rank(struct router *r, const struct route_req *rr, const char *model,
            uint64_t seed, struct sidx_ranked *rk)
{
    struct scorer_request req = {
        .model = model,
        .estimated_tokens = rr->estimated_tokens,
        .now_ns = herd_now_ns(),
        .seed = seed,
    };

    return sidx_rank(r->idx, &req, &r->h->cfg->weights,
                     r->h->traces != NULL ? router_p75 : NULL, r, rk);
}

/* Up to 64 candidates a decision are rendered for the trace: their
 * numbers are written without printf. */
/* What "%.4f" writes; printf itself where the rounding is a near tie or
 * the value is out of fixed-point range. */
static int
router_fixed4(struct buf *b, double v)
{
    double x = v * 1e4, frac;
    long long q;
    char tmp[48];
    int rc;

    frac = fabs(x - trunc(x));
    if (!isfinite(v) || fabs(x) >= 9e15 || fabs(frac - 0.5) < 1e-6) {
        int n = snprintf(tmp, sizeof(tmp), "%.4f", v);

        return n > 0 && (size_t)n < sizeof(tmp) ? buf_append(b, tmp, (size_t)n)
                                                : -E2BIG;
    }
    q = llround(x);
    if (q < 0 || (q == 0 && signbit(v))) {
        if ((rc = buf_append(b, "-", 1)) != 0)
            return rc;
    }
    unsigned long long u =
        q < 0 ? 0ull - (unsigned long long)q : (unsigned long long)q;
    char frac4[5] = {(char)('0' + u / 1000 % 10), (char)('0' + u / 100 % 10),
                     (char)('0' + u / 10 % 10), (char)('0' + u % 10), 0};

    if ((rc = buf_append_u64(b, u / 10000)) != 0 ||
        (rc = buf_append(b, ".", 1)) != 0)
        return rc;
    return buf_append(b, frac4, 4);
}

static int
router_candidate_json(const struct router *r, const struct scorer_result *res,
                      uint32_t num_parallel, bool first, struct buf *b)
{
    const struct registry_node *n = sidx_node(r->idx, res->node);
    int rc = buf_appends(b, first ? "{\"node_id\":" : ",{\"node_id\":");

    if (rc == 0)
        rc = json_append_str(b, n->id, strlen(n->id));
    if (rc == 0)
        rc = buf_appends(b, ",\"score\":");
    if (rc == 0)
        rc = router_fixed4(b, res->b.total);
    if (rc == 0)
        rc = buf_appends(b, ",\"in_flight\":");
    if (rc == 0)
        rc = buf_append_u64(b, res->in_flight);
    if (rc == 0)
        rc = buf_appends(b, ",\"num_parallel\":");
    if (rc == 0)
        rc = buf_append_u64(b, num_parallel ? num_parallel : 1);
    if (rc == 0)
        rc = buf_appends(b, ",\"breakdown\":");
    if (rc == 0)
        rc = scorer_breakdown_json(res, b);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

/* Every candidate as the scorer ranks them, capped: the eligible ones
 * best first, then the eliminated ones in registry order. */
static int
router_candidates_json(struct router *r, struct sidx_ranked *rk, struct buf *b)
{
    const struct scorer_weights *w = &r->h->cfg->weights;
    size_t n = sidx_count(r->idx), pos = SIZE_MAX, i = 0;
    size_t shown =
        n < ROUTER_MAX_CANDIDATES_JSON ? n : ROUTER_MAX_CANDIDATES_JSON;
    struct scorer_result res;
    uint32_t np;
    size_t k = sidx_top(rk);
    int rc = buf_appends(b, "[");

    for (; rc == 0 && i < shown && i < k; i++) {
        sidx_result(r->idx, rk, w, &rk->keys[i], &res, &np);
        rc = router_candidate_json(r, &res, np, i == 0, b);
    }
    for (; rc == 0 && i < shown &&
           sidx_next_eliminated(r->idx, rk, w, &pos, &res, &np);
         i++)
        rc = router_candidate_json(r, &res, np, i == 0, b);
    if (rc == 0 && shown < n)
        rc = buf_appendf(b, ",{\"omitted\":%zu}", n - shown);
    return rc == 0 ? buf_appends(b, "]") : rc;
}

/* The trace's part of a decision: the winner's signals, the candidates. */
static int
router_render(struct router *r, struct sidx_ranked *rk,
              struct route_decision *d)
{
    struct scorer_result w;

    buf_reset(&d->breakdown);
    buf_reset(&d->candidates);
    sidx_result(r->idx, rk, &r->h->cfg->weights, &rk->pick, &w, NULL);
    if (scorer_breakdown_json(&w, &d->breakdown) != 0 ||
        router_candidates_json(r, rk, &d->candidates) != 0) {
        buf_reset(&d->candidates);
        if (buf_appends(&d->candidates, "[]") != 0)
            return -ENOMEM;
    }
    return 0;
}

static void
router_count_decision(struct router *r, int64_t ns)
{
    r->h->stats.decisions++;
    r->h->stats.decision_ns_total += (uint64_t)ns;
    if (r->h->metrics != NULL)
        metrics_scoring(r->h->metrics, (double)ns / 1e9);
}

/*
 * Takes a slot on rk's pick for model and fills d. The time from t0 to
 * now, and that of taking the slot, count as the decision's; rendering
 * the trace's breakdowns in between does not. Clears the marks. A
 * failure is counted only when it is the request's last try (last).
 */
static int
router_commit(struct router *r, struct sidx_ranked *rk, size_t model_index,
              const char *model, int64_t t0, bool last,
              struct route_decision *d)
{
    const struct scorer_key *k = &rk->pick;
    const struct registry_node *n = sidx_node(r->idx, k->node);
    int64_t t1, t2, rc;

    snprintf(d->node_id, sizeof(d->node_id), "%s", n->id);
    snprintf(d->model, sizeof(d->model), "%s", model);
    snprintf(d->base_url, sizeof(d->base_url), "%s", n->ollama_base_url);
    d->model_index =
        model_index == ROUTER_VRAM_FALLBACK ? -1 : (int)model_index;
    d->score = k->total;
    d->rank = rk->rank;
    d->n_eligible = (size_t)rk->eligible;
    t1 = herd_now_ns();
    rc = router_render(r, rk, d);
    sidx_unmark_all(r->idx);
    t2 = herd_now_ns();
    if (rc == 0)
        rc = registry_inflight_add(r->h->reg, d->node_id, model, 1);
    if (rc >= 0 || last)
        router_count_decision(r, (t1 - t0) + (herd_now_ns() - t2));
    return rc < 0 ? (int)rc : 0;
}

/*
 * VRAM fallback (reference §4.5): every model asked for is cold
 * everywhere, so serve one that is already loaded instead of loading,
 * preferring the same category; another category only when allowed.
 * The best hot node with a free slot over all such models wins: its
 * ranking is left in *best, and the model's name (borrowed from the
 * registry) returned; NULL when there is none.
 */
#define VRAM_MAX_CANDIDATES 16

static const char *
router_vram_fallback(struct router *r, struct route_req *rr, uint64_t seed,
                     struct sidx_ranked **cur, struct sidx_ranked **best)
{
    struct registry *reg = r->h->reg;
    const char *cat = modelcat_classify(rr->models[0]);
    const char *cands[VRAM_MAX_CANDIDATES];
    size_t nc = 0;
    const char *best_model = NULL;

    for (int cross = 0; cross < 2 && best_model == NULL; cross++) {
        if (cross && !r->h->cfg->vram_fallback_cross)
            break;
        nc = 0;
        for (size_t i = 0; i < registry_count(reg) && nc < VRAM_MAX_CANDIDATES;
             i++) {
            const struct registry_node *n = registry_node_at(reg, i);

            if (!registry_node_routable(n))
                continue;
            for (size_t k = 0; k < n->hb.n_loaded && nc < VRAM_MAX_CANDIDATES;
                 k++) {
                const char *m = n->hb.loaded[k].name;
                bool dup = router_wants(rr, m);

                for (size_t j = 0; j < nc && !dup; j++)
                    dup = strcmp(cands[j], m) == 0;
                if (dup || strcmp(modelcat_classify(m), "embedding") == 0 ||
                    (!cross && strcmp(modelcat_classify(m), cat) != 0))
                    continue;
                cands[nc++] = m;
            }
        }
        for (size_t j = 0; j < nc; j++) {
            struct sidx_ranked *t;

            if (router_rank(r, rr, cands[j], seed, *cur) <= 0 ||
                !(*cur)->has_pick || !(*cur)->hot)
                continue;
            if (best_model == NULL ||
                (*cur)->pick.total > (*best)->pick.total) {
                best_model = cands[j];
                t = *best;
                *best = *cur;
                *cur = t;
            }
        }
    }
    return best_model;
}

enum route_result
router_route(struct router *r, struct route_req *rr, struct route_decision *d)
{
    uint64_t seed = herd_rand(r->h);
    int64_t t0 = herd_now_ns();
    struct sidx_ranked *cur = &r->rk[0], *spare = &r->rk[1], *cold = NULL;
    int cold_model = -1;
    bool any_full = false;
    enum route_result res = ROUTE_UNKNOWN;

    router_mark(r, rr);
    for (size_t m = 0; m < rr->n_models; m++) {
        if (router_rank(r, rr, rr->models[m], seed, cur) <= 0)
            continue;
        if (!cur->has_pick) {
            any_full = true;
            continue;
        }
        if (cur->hot)
            return router_commit(r, cur, m, rr->models[m], t0, true, d) == 0
                       ? ROUTE_OK
                       : ROUTE_NO_NODE;
        if (cold == NULL) {
            cold = cur;
            cold_model = (int)m;
            cur = spare;
            spare = &r->rk[2];
        }
    }
    if (cold != NULL && !any_full && r->h->cfg->vram_fallback) {
        struct sidx_ranked *best = spare;
        const char *fb = router_vram_fallback(r, rr, seed, &cur, &best);

        if (fb != NULL && router_commit(r, best, ROUTER_VRAM_FALLBACK, fb, t0,
                                        false, d) == 0) {
            log_info("VRAM fallback: %s is cold everywhere; serving %s (%s, "
                     "already loaded)",
                     rr->models[0], d->model, modelcat_classify(d->model));
            return ROUTE_OK;
        }
        router_mark(r, rr); /* again, if a failed commit cleared them */
    }
    if (cold != NULL)
        return router_commit(r, cold, (size_t)cold_model,
                             rr->models[cold_model], t0, true, d) == 0
                   ? ROUTE_OK
                   : ROUTE_NO_NODE;
    if (any_full)
        res = ROUTE_FULL;
    for (size_t m = 0; m < rr->n_models && res == ROUTE_UNKNOWN; m++) {
        if (sidx_model_known(r->idx, rr->models[m]))
            res = ROUTE_NO_NODE;
    }
    sidx_unmark_all(r->idx);
    router_count_decision(r, herd_now_ns() - t0);
    return res;
}

/* --- the holding queue ---------------------------------------------------- */

static void
router_unlink(struct router *r, struct route_req *rr)
{
    if (rr->prev)
        rr->prev->next = rr->next;
    else
        r->head = rr->next;
    if (rr->next)
        rr->next->prev = rr->prev;
    else
        r->tail = rr->prev;
    rr->prev = rr->next = NULL;
    rr->held = false;
    r->n_held--;
}

static void
router_arm_hold_timer(struct router *r)
{
    int64_t wait;

    if (r->head == NULL) {
        uv_timer_stop(&r->hold_timer);
        return;
    }
    wait = r->head->hold_deadline_ns - herd_now_ns();
    uv_timer_start(&r->hold_timer, router_on_hold_timer,
                   wait > 0 ? (uint64_t)((wait + 999999) / 1000000) : 0, 0);
}

int
router_hold(struct router *r, struct route_req *rr)
{
    int64_t now = herd_now_ns();

    if ((int64_t)r->n_held >= r->h->cfg->max_held)
        return -ENOSPC;
    rr->held = true;
    rr->hold_since_ns = now;
    rr->hold_deadline_ns = now + r->h->cfg->hold_timeout_ns;
    rr->next = NULL;
    rr->prev = r->tail;
    if (r->tail)
        r->tail->next = rr;
    else
        r->head = rr;
    r->tail = rr;
    r->n_held++;
    r->h->stats.held_total++;
    if (r->head == rr)
        router_arm_hold_timer(r);
    return 0;
}

void
router_unhold(struct router *r, struct route_req *rr)
{
    bool was_head = r->head == rr;

    if (!rr->held)
        return;
    router_unlink(r, rr);
    if (was_head)
        router_arm_hold_timer(r);
}

size_t
router_held(const struct router *r)
{
    return r->n_held;
}

static void
router_on_hold_timer(uv_timer_t *t)
{
    struct router *r = t->data;
    int64_t now = herd_now_ns();

    while (r->head != NULL && r->head->hold_deadline_ns <= now) {
        struct route_req *rr = r->head;

        router_unlink(r, rr);
        r->h->stats.hold_timeouts++;
        rr->on_wake(rr, NULL);
    }
    router_arm_hold_timer(r);
}

void
router_expire_all(struct router *r)
{
    while (r->head != NULL) {
        struct route_req *rr = r->head;

        router_unlink(r, rr);
        rr->on_wake(rr, NULL);
    }
    uv_timer_stop(&r->hold_timer);
}

static bool
router_wants(const struct route_req *rr, const char *model)
{
    for (size_t i = 0; i < rr->n_models; i++) {
        if (strcmp(rr->models[i], model) == 0)
            return true;
    }
    return false;
}

static void
router_on_wake_timer(uv_timer_t *t)
{
    struct router *r = t->data;
    struct route_req *rr = r->head, *next;
    struct route_decision d;
    bool head_changed = false;

    route_decision_init(&d);
    while (rr != NULL && r->wake_budget > 0) {
        enum route_result res;

        next = rr->next;
        res = router_route(r, rr, &d);
        if (res == ROUTE_OK) {
            head_changed |= r->head == rr;
            router_unlink(r, rr);
            if (r->wake_budget != SIZE_MAX)
                r->wake_budget--;
            rr->on_wake(rr, &d);
        }
        rr = next;
    }
    r->wake_budget = 0;
    route_decision_cleanup(&d);
    if (head_changed)
        router_arm_hold_timer(r);
}

/* --- slots ---------------------------------------------------------------- */

static struct qstat *
router_qstat(struct router *r, const char *node_id, const char *model)
{
    struct qstat *q;

    for (size_t i = 0; i < r->n_qs; i++) {
        if (strcmp(r->qs[i].model, model) == 0 &&
            strcmp(r->qs[i].node_id, node_id) == 0)
            return &r->qs[i];
    }
    if (r->n_qs == 4096 ||
        router_grow((void **)&r->qs, &r->cap_qs, r->n_qs + 1, sizeof(*q)))
        return NULL;
    q = &r->qs[r->n_qs];
    memset(q, 0, sizeof(*q));
    q->node_id = strdup(node_id);
    q->model = strdup(model);
    if (q->node_id == NULL || q->model == NULL) {
        free(q->node_id);
        free(q->model);
        return NULL;
    }
    r->n_qs++;
    return q;
}

static void
router_count_release(struct router *r)
{
    int64_t sec = herd_now_ns() / 1000000000LL;
    size_t i = (size_t)(sec % RATE_BUCKETS);

    if (r->bucket_sec[i] != sec) {
        r->bucket_sec[i] = sec;
        r->bucket_count[i] = 0;
    }
    r->bucket_count[i]++;
}

void
router_release(struct router *r, const char *node_id, const char *model,
               bool ok)
{
    struct qstat *q = router_qstat(r, node_id, model);

    registry_inflight_add(r->h->reg, node_id, model, -1);
    if (q != NULL) {
        if (ok)
            q->completed++;
        else
            q->failed++;
    }
    if (ok)
        r->completed++;
    else
        r->failed++;
    router_count_release(r);
    if (r->n_held == 0)
        return;
    for (struct route_req *rr = r->head; rr != NULL; rr = rr->next) {
        if (router_wants(rr, model)) {
            if (r->wake_budget != SIZE_MAX)
                r->wake_budget++;
            if (!uv_is_active((uv_handle_t *)&r->wake_timer))
                uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
            break;
        }
    }
}

void
router_release_unused(struct router *r, const char *node_id, const char *model)
{
    registry_inflight_add(r->h->reg, node_id, model, -1);
    if (r->n_held > 0) {
        for (struct route_req *rr = r->head; rr != NULL; rr = rr->next) {
            if (router_wants(rr, model)) {
                if (r->wake_budget != SIZE_MAX)
                    r->wake_budget++;
                if (!uv_is_active((uv_handle_t *)&r->wake_timer))
                    uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
                break;
            }
        }
    }
}

unsigned
router_retry_after_s(const struct router *r)
{
    int64_t sec = herd_now_ns() / 1000000000LL;
    uint64_t n = 0;
    double rate, s;

    for (size_t i = 0; i < RATE_BUCKETS; i++) {
        if (r->bucket_sec[i] > sec - RATE_BUCKETS && r->bucket_sec[i] < sec)
            n += r->bucket_count[i];
    }
    rate = (double)n / (RATE_BUCKETS - 1);
    if (rate <= 0)
        s = (double)r->h->cfg->hold_timeout_ns / 1e9;
    else
        s = ((double)r->n_held + 1) / rate;
    s = ceil(s);
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}

void
router_totals(const struct router *r, uint64_t *in_flight, uint64_t *completed,
              uint64_t *failed)
{
    struct registry *reg = r->h->reg;
    uint64_t inf = 0;

    for (size_t i = 0; i < registry_count(reg); i++)
        inf += (uint64_t)registry_node_at(reg, i)->inflight_total;
    *in_flight = inf;
    *completed = r->completed;
    *failed = r->failed;
}

static int
router_queue_entry(struct buf *b, bool first, const struct registry_node *n,
                   const char *model, const struct qstat *q)
{
    int64_t inf = registry_inflight_get(n, model);
    char key[REGISTRY_NODE_ID_MAX + REGISTRY_MODEL_NAME_MAX + 2];
    int kn = snprintf(key, sizeof(key), "%s:%s", n->id, model);
    int rc = buf_appends(b, first ? "" : ",");

    if (rc == 0)
        rc = json_append_str(
            b, key, (size_t)kn < sizeof(key) ? (size_t)kn : sizeof(key) - 1);
    if (rc == 0)
        rc = buf_appends(b, ":{\"node_id\":");
    if (rc == 0)
        rc = json_append_str(b, n->id, strlen(n->id));
    if (rc == 0)
        rc = buf_appends(b, ",\"model\":");
    if (rc == 0)
        rc = json_append_str(b, model, strlen(model));
    if (rc == 0)
        rc = buf_appendf(
            b,
            ",\"backend\":\"ollama\",\"pending\":0,\"in_flight\":%lld,"
            "\"concurrency\":%lld,\"completed\":%llu,\"failed\":%llu}",
            (long long)inf,
            (long long)(n->hb.num_parallel > 0 ? n->hb.num_parallel : 1),
            (unsigned long long)(q ? q->completed : 0),
            (unsigned long long)(q ? q->failed : 0));
    return rc;
}

int
router_queues_json(struct router *r, struct buf *b)
{
    struct registry *reg = r->h->reg;
    bool first = true;
    int rc = buf_appends(b, "{");

    /* every node:model with counters, then loaded models without any */
    for (size_t i = 0; rc == 0 && i < r->n_qs; i++) {
        const struct registry_node *n = registry_find(reg, r->qs[i].node_id);

        if (n == NULL)
            continue;
        rc = router_queue_entry(b, first, n, r->qs[i].model, &r->qs[i]);
        first = false;
    }
    for (size_t i = 0; rc == 0 && i < registry_count(reg); i++) {
        const struct registry_node *n = registry_node_at(reg, i);

        for (size_t k = 0; rc == 0 && k < n->n_inflight; k++) {
            bool seen = false;

            for (size_t j = 0; j < r->n_qs && !seen; j++)
                seen = strcmp(r->qs[j].node_id, n->id) == 0 &&
                       strcmp(r->qs[j].model, n->inflight[k].model) == 0;
            if (seen || n->inflight[k].count == 0)
                continue;
            rc = router_queue_entry(b, first, n, n->inflight[k].model, NULL);
            first = false;
        }
    }
    return rc == 0 ? buf_appends(b, "}") : rc;
}
