/*
 * router.c - node choice, slots and the holding queue (see router.h).
 *
 * The snapshot: scorer.c wants plain arrays; the registry has nodes with
 * their own arrays. Converting on every request would allocate per node
 * per request, so the converted fleet is kept and rebuilt only when the
 * registry changed (router_fleet_changed), at the next decision. The
 * strings it borrows belong to the registry's current heartbeats, which
 * cannot change before that rebuild: both happen on the loop thread and a
 * heartbeat always marks the snapshot stale. Per request only the fields
 * that depend on it (in-flight counts, exclusions, p75) are patched in.
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
    /* the snapshot */
    bool stale;
    size_t n, cap;
    struct scorer_node *nodes;
    const struct registry_node **rn;
    /* each node's room in the arenas below, so that a heartbeat can
     * refresh its node in place (router_node_changed) */
    uint32_t *ld_room, *ul_room;
    struct scorer_result *results, *results2;
    struct scorer_loaded *loaded;
    size_t n_loaded_cap;
    struct scorer_unloaded *unl;
    size_t n_unl_cap;
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

struct router *
router_new(struct herd *h)
{
    struct router *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->h = h;
    r->stale = true;
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
    free(r->nodes);
    free(r->rn);
    free(r->ld_room);
    free(r->ul_room);
    free(r->results);
    free(r->results2);
    free(r->loaded);
    free(r->unl);
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
    r->closed = closed;
    r->closed_ud = ud;
    r->closing = 2;
    uv_close((uv_handle_t *)&r->hold_timer, router_on_closed);
    uv_close((uv_handle_t *)&r->wake_timer, router_on_closed);
}

/* --- the snapshot --------------------------------------------------------- */

static enum scorer_cap_mode
router_cap_mode(const char *m)
{
    static const struct {
        const char *name;
        enum scorer_cap_mode mode;
    } map[] = {
        {"full", SCORER_CAP_FULL},
        {"learned_high", SCORER_CAP_LEARNED_HIGH},
        {"learned_medium", SCORER_CAP_LEARNED_MEDIUM},
        {"learned_low", SCORER_CAP_LEARNED_LOW},
        {"paused", SCORER_CAP_PAUSED},
        {"bootstrap", SCORER_CAP_BOOTSTRAP},
        /* herd-node's bootstrap: routable at a conservative ceiling */
        {"learning", SCORER_CAP_LEARNED_LOW},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++) {
        if (strcmp(m, map[i].name) == 0)
            return map[i].mode;
    }
    return SCORER_CAP_LEARNED_MEDIUM;
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

static void
router_fill_node(struct scorer_node *sn, const struct registry_node *n,
                 struct scorer_loaded *ld, struct scorer_unloaded *ul)
{
    const struct registry_hb *hb = &n->hb;

    memset(sn, 0, sizeof(*sn));
    sn->id = n->id;
    sn->status = n->status == REGISTRY_ONLINE     ? SCORER_ONLINE
                 : n->status == REGISTRY_DEGRADED ? SCORER_DEGRADED
                                                  : SCORER_OFFLINE;
    sn->has_ollama = hb->ollama_healthy;
    sn->pressure =
        hb->pressure == REGISTRY_PRESSURE_CRITICAL ? SCORER_PRESSURE_CRITICAL
        : hb->pressure == REGISTRY_PRESSURE_WARN   ? SCORER_PRESSURE_WARN
                                                   : SCORER_PRESSURE_NORMAL;
    sn->mem_total_gb = hb->mem_total_gb;
    sn->mem_available_gb = hb->mem_available_gb;
    sn->bandwidth_gbs = hb->memory_bandwidth_gbps;
    if (hb->has_capacity) {
        sn->cap.present = true;
        sn->cap.mode = router_cap_mode(hb->capacity.mode);
        sn->cap.availability_score = hb->capacity.availability_score;
        sn->cap.ceiling_gb = hb->capacity.ceiling_gb;
    }
    for (size_t i = 0; i < hb->n_loaded; i++) {
        ld[i].name = hb->loaded[i].name;
        ld[i].size_gb = hb->loaded[i].size_gb;
        ld[i].context_length = hb->loaded[i].context_length > 0
                                   ? (uint32_t)hb->loaded[i].context_length
                                   : 0;
    }
    sn->loaded = ld;
    sn->n_loaded = hb->n_loaded;
    sn->available = (const char *const *)hb->available;
    sn->n_available = hb->n_available;
    for (size_t i = 0; i < n->n_unloaded; i++) {
        ul[i].name = n->unloaded[i].name;
        ul[i].unloaded_ns = n->unloaded[i].at_ns;
    }
    sn->unloaded = ul;
    sn->n_unloaded = n->n_unloaded;
    sn->num_parallel = hb->num_parallel > 0 ? (uint32_t)hb->num_parallel : 1;
}

/* Arena room per node: its count and some slack, for in-place refresh. */
#define ROOM_SLACK 4

static int
router_rebuild(struct router *r)
{
    struct registry *reg = r->h->reg;
    size_t n = registry_count(reg), nl = 0, nu = 0, ol = 0, ou = 0;

    for (size_t i = 0; i < n; i++) {
        const struct registry_node *rn = registry_node_at(reg, i);

        nl += rn->hb.n_loaded + ROOM_SLACK;
        nu += rn->n_unloaded + ROOM_SLACK;
    }
    if (router_grow((void **)&r->nodes, &r->cap, n, sizeof(*r->nodes)) ||
        (r->cap > 0 &&
         (!(r->rn = realloc(r->rn, r->cap * sizeof(*r->rn))) ||
          !(r->ld_room = realloc(r->ld_room, r->cap * sizeof(*r->ld_room))) ||
          !(r->ul_room = realloc(r->ul_room, r->cap * sizeof(*r->ul_room))) ||
          !(r->results = realloc(r->results, r->cap * sizeof(*r->results))) ||
          !(r->results2 =
                realloc(r->results2, r->cap * sizeof(*r->results2))))) ||
        router_grow((void **)&r->loaded, &r->n_loaded_cap, nl + 1,
                    sizeof(*r->loaded)) ||
        router_grow((void **)&r->unl, &r->n_unl_cap, nu + 1, sizeof(*r->unl)))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct registry_node *rn = registry_node_at(reg, i);

        r->rn[i] = rn;
        router_fill_node(&r->nodes[i], rn, r->loaded + ol, r->unl + ou);
        r->ld_room[i] = (uint32_t)(rn->hb.n_loaded + ROOM_SLACK);
        r->ul_room[i] = (uint32_t)(rn->n_unloaded + ROOM_SLACK);
        ol += r->ld_room[i];
        ou += r->ul_room[i];
    }
    r->n = n;
    r->stale = false;
    return 0;
}

void
router_node_changed(struct router *r, const char *node_id)
{
    const struct registry_node *rn = registry_find(r->h->reg, node_id);
    size_t i = 0;

    if (!r->stale) {
        /* the same node (pointer) at the same place, with room for its
         * new lists: refresh it alone; anything else: rebuild it all */
        while (i < r->n && r->rn[i] != rn)
            i++;
        if (rn == NULL || i == r->n || rn->hb.n_loaded > r->ld_room[i] ||
            rn->n_unloaded > r->ul_room[i] ||
            registry_node_at(r->h->reg, i) != rn)
            r->stale = true;
        else
            router_fill_node(&r->nodes[i], rn,
                             (struct scorer_loaded *)r->nodes[i].loaded,
                             (struct scorer_unloaded *)r->nodes[i].unloaded);
    }
    if (r->n_held > 0) {
        r->wake_budget = SIZE_MAX;
        if (!uv_is_active((uv_handle_t *)&r->wake_timer))
            uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
    }
}

void
router_fleet_changed(struct router *r)
{
    r->stale = true;
    if (r->n_held > 0) {
        r->wake_budget = SIZE_MAX;
        if (!uv_is_active((uv_handle_t *)&r->wake_timer))
            uv_timer_start(&r->wake_timer, router_on_wake_timer, 0, 0);
    }
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

static bool
router_excluded(const struct route_req *rr, const char *id)
{
    for (size_t i = 0; i < rr->n_excluded; i++) {
        if (strcmp(rr->excluded[i], id) == 0)
            return true;
    }
    return false;
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

/* Patches the per-request fields for model and scores. */
static int
router_score(struct router *r, const struct route_req *rr, const char *model,
             uint64_t seed, struct scorer_result *out)
{
    struct scorer_request req = {
        .model = model,
        .estimated_tokens = rr->estimated_tokens,
        .now_ns = herd_now_ns(),
        .seed = seed,
    };

    for (size_t i = 0; i < r->n; i++) {
        struct scorer_node *sn = &r->nodes[i];
        int64_t inf = registry_inflight_get(r->rn[i], model);
        double p75 = 0;

        sn->excluded = rr->n_excluded > 0 && router_excluded(rr, sn->id);
        sn->num_parallel = r->rn[i]->hb.num_parallel > 0
                               ? (uint32_t)r->rn[i]->hb.num_parallel
                               : 1;
        if (r->n_nh > 0) {
            struct nhealth *h = router_nh_find(r, sn->id);

            if (h != NULL && req.now_ns < h->ejected_until)
                sn->excluded = true;
            else if (h != NULL)
                sn->num_parallel = 1; /* probation */
        }
        sn->in_flight = inf > 0 ? (uint32_t)inf : 0;
        sn->queued = 0;
        if (inf > 0 && r->h->traces != NULL &&
            traces_p75_ms(r->h->traces, sn->id, model, &p75) != 0)
            p75 = 0;
        sn->p75_ms = p75;
    }
    return scorer_score(r->nodes, r->n, &req, &r->h->cfg->weights, out);
}

static bool
router_slot_free(const struct router *r, const struct scorer_result *res)
{
    const struct scorer_node *sn = &r->nodes[res->node];

    return sn->in_flight < (sn->num_parallel ? sn->num_parallel : 1);
}

static bool
router_is_hot(const struct router *r, const struct scorer_result *res,
              const char *model)
{
    const struct scorer_node *sn = &r->nodes[res->node];

    for (size_t i = 0; i < sn->n_loaded; i++) {
        if (strcmp(sn->loaded[i].name, model) == 0)
            return true;
    }
    return false;
}

/* Index into out of the best eligible result with a free slot, or -1.
 * The scorer sorts only the best SCORER_SORTED; past them, the best free
 * one is found by comparison. */
static int
router_pick(const struct router *r, const struct scorer_result *out,
            int eligible)
{
    int sorted = eligible < SCORER_SORTED ? eligible : SCORER_SORTED;
    int best = -1;

    for (int i = 0; i < sorted; i++) {
        if (router_slot_free(r, &out[i]))
            return i;
    }
    for (int i = sorted; i < eligible; i++) {
        if (router_slot_free(r, &out[i]) &&
            (best < 0 || scorer_rank_cmp(&out[i], &out[best]) < 0))
            best = i;
    }
    return best;
}

static bool
router_model_known(const struct router *r, const char *model)
{
    struct registry *reg = r->h->reg;
    size_t n = registry_count(reg);

    for (size_t i = 0; i < n; i++) {
        const struct registry_node *rn = registry_node_at(reg, i);

        /* a rejected node stays rejected: holding for it is pointless */
        if (rn->status == REGISTRY_REJECTED)
            continue;
        if (registry_node_loaded(rn, model) ||
            registry_node_available(rn, model))
            return true;
    }
    return false;
}

static int
router_candidates_json(const struct router *r, const struct scorer_result *out,
                       struct buf *b)
{
    size_t shown =
        r->n < ROUTER_MAX_CANDIDATES_JSON ? r->n : ROUTER_MAX_CANDIDATES_JSON;
    int rc = buf_appends(b, "[");

    for (size_t i = 0; rc == 0 && i < shown; i++) {
        const struct scorer_node *sn = &r->nodes[out[i].node];

        rc = buf_appends(b, i ? ",{\"node_id\":" : "{\"node_id\":");
        if (rc == 0)
            rc = json_append_str(b, sn->id, strlen(sn->id));
        if (rc == 0)
            rc = buf_appendf(b,
                             ",\"score\":%.4f,\"in_flight\":%u,"
                             "\"num_parallel\":%u,\"breakdown\":",
                             out[i].b.total, sn->in_flight,
                             sn->num_parallel ? sn->num_parallel : 1);
        if (rc == 0)
            rc = scorer_breakdown_json(&out[i], b);
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    if (rc == 0 && shown < r->n)
        rc = buf_appendf(b, ",{\"omitted\":%zu}", r->n - shown);
    return rc == 0 ? buf_appends(b, "]") : rc;
}

static int
router_fill(struct router *r, const struct scorer_result *out, int eligible,
            int pick, size_t model_index, const char *model,
            struct route_decision *d)
{
    const struct scorer_result *w = &out[pick];
    const struct registry_node *rn = r->rn[w->node];
    int64_t rc;

    snprintf(d->node_id, sizeof(d->node_id), "%s", rn->id);
    snprintf(d->model, sizeof(d->model), "%s", model);
    snprintf(d->base_url, sizeof(d->base_url), "%s", rn->ollama_base_url);
    d->model_index =
        model_index == ROUTER_VRAM_FALLBACK ? -1 : (int)model_index;
    d->score = w->b.total;
    d->rank = pick + 1;
    d->n_eligible = (size_t)eligible;
    buf_reset(&d->breakdown);
    buf_reset(&d->candidates);
    if (scorer_breakdown_json(w, &d->breakdown) != 0 ||
        router_candidates_json(r, out, &d->candidates) != 0) {
        buf_reset(&d->candidates);
        if (buf_appends(&d->candidates, "[]") != 0)
            return -ENOMEM;
    }
    rc = registry_inflight_add(r->h->reg, rn->id, model, 1);
    return rc < 0 ? (int)rc : 0;
}

/*
 * VRAM fallback (reference §4.5): every model asked for is cold
 * everywhere, so serve one that is already loaded instead of loading,
 * preferring the same category; another category only when allowed.
 * The best hot node with a free slot over all such models wins.
 */
#define VRAM_MAX_CANDIDATES 16

static bool
router_vram_fallback(struct router *r, struct route_req *rr, uint64_t seed,
                     struct route_decision *d)
{
    const char *cat = modelcat_classify(rr->models[0]);
    const char *cands[VRAM_MAX_CANDIDATES];
    size_t nc = 0;
    const char *best_model = NULL;
    double best_total = 0;
    int best_pick = -1, best_eligible = 0;

    for (int cross = 0; cross < 2 && best_model == NULL; cross++) {
        if (cross && !r->h->cfg->vram_fallback_cross)
            break;
        nc = 0;
        for (size_t i = 0; i < r->n && nc < VRAM_MAX_CANDIDATES; i++) {
            const struct scorer_node *sn = &r->nodes[i];

            if (sn->status == SCORER_OFFLINE)
                continue;
            for (size_t k = 0; k < sn->n_loaded && nc < VRAM_MAX_CANDIDATES;
                 k++) {
                const char *m = sn->loaded[k].name;
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
            int eligible = router_score(r, rr, cands[j], seed, r->results);
            int pick = eligible > 0 ? router_pick(r, r->results, eligible) : -1;

            if (pick < 0 || !router_is_hot(r, &r->results[pick], cands[j]))
                continue;
            if (best_model == NULL || r->results[pick].b.total > best_total) {
                best_model = cands[j];
                best_total = r->results[pick].b.total;
                best_pick = pick;
                best_eligible = eligible;
                memcpy(r->results2, r->results, r->n * sizeof(*r->results));
            }
        }
    }
    if (best_model == NULL)
        return false;
    log_info("VRAM fallback: %s is cold everywhere; serving %s (%s, already "
             "loaded)",
             rr->models[0], best_model, modelcat_classify(best_model));
    return router_fill(r, r->results2, best_eligible, best_pick,
                       ROUTER_VRAM_FALLBACK, best_model, d) == 0;
}

static void
router_count_decision(struct router *r, uint64_t t0)
{
    uint64_t ns = (uint64_t)herd_now_ns() - t0;

    r->h->stats.decisions++;
    r->h->stats.decision_ns_total += ns;
    if (r->h->metrics != NULL)
        metrics_scoring(r->h->metrics, (double)ns / 1e9);
}

enum route_result
router_route(struct router *r, struct route_req *rr, struct route_decision *d)
{
    uint64_t seed = herd_rand(r->h), t0 = (uint64_t)herd_now_ns();
    int cold_model = -1, cold_pick = -1, cold_eligible = 0;
    bool any_full = false, any_eligible = false;
    enum route_result res = ROUTE_UNKNOWN;
    int last_scored = -1;

    if (r->stale && router_rebuild(r) != 0)
        return ROUTE_NO_NODE;
    for (size_t m = 0; m < rr->n_models; m++) {
        int eligible = router_score(r, rr, rr->models[m], seed, r->results);
        int pick;

        last_scored = (int)m;
        if (eligible <= 0)
            continue;
        any_eligible = true;
        pick = router_pick(r, r->results, eligible);
        if (pick < 0) {
            any_full = true;
            continue;
        }
        if (router_is_hot(r, &r->results[pick], rr->models[m])) {
            router_count_decision(r, t0);
            if (router_fill(r, r->results, eligible, pick, m, rr->models[m],
                            d) != 0)
                return ROUTE_NO_NODE;
            return ROUTE_OK;
        }
        if (cold_model < 0) {
            cold_model = (int)m;
            cold_pick = pick;
            cold_eligible = eligible;
            memcpy(r->results2, r->results, r->n * sizeof(*r->results));
        }
    }
    (void)last_scored;
    if (cold_model >= 0 && !any_full && r->h->cfg->vram_fallback &&
        router_vram_fallback(r, rr, seed, d)) {
        router_count_decision(r, t0);
        return ROUTE_OK;
    }
    router_count_decision(r, t0);
    if (cold_model >= 0) {
        if (router_fill(r, r->results2, cold_eligible, cold_pick,
                        (size_t)cold_model, rr->models[cold_model], d) != 0)
            return ROUTE_NO_NODE;
        return ROUTE_OK;
    }
    if (any_full)
        return ROUTE_FULL;
    for (size_t m = 0; m < rr->n_models && res == ROUTE_UNKNOWN; m++) {
        if (router_model_known(r, rr->models[m]))
            res = ROUTE_NO_NODE;
    }
    (void)any_eligible;
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
