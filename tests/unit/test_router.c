/*
 * test_router.c - the router's decisions, made from its index of the
 * scoring inputs by model (scoreidx.c), against the decision made from
 * scratch: every registry node converted to a struct scorer_node and
 * scored by scorer_score(), the pure scorer, as the router did before
 * the index existed.
 *
 * A random walk with a fixed seed drives a fleet through heartbeats that
 * add and drop models and nodes and change memory, bandwidth, capacity,
 * pressure and num_parallel; drains, silence (degraded, offline,
 * removed), slots taken and given back, node faults (ejection,
 * probation), pulls and deletes, p75 latencies and setting changes. At
 * every request both must agree on the outcome, the node, the model, the
 * score, the rank, the number of eligible nodes and, byte for byte, the
 * trace's breakdown and candidates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herd.h"
#include "herd/buf.h"
#include "herd/json.h"
#include "herd/log.h"
#include "modelcat.h"
#include "registry.h"
#include "router.h"
#include "scoreidx.h"
#include "scorer.h"
#include "traces.h"

#define SEC 1000000000LL

/* herd_now_ns() and herd_rand() live in main.c, which tests do not
 * link: the walk sets both. */
static int64_t t_now = 1000 * SEC;
static uint64_t t_seed = 1;

int64_t
herd_now_ns(void)
{
    return t_now;
}

uint64_t
herd_rand(struct herd *h)
{
    (void)h;
    return t_seed;
}

/* xorshift64*: the walk's own randomness, fixed seed. */
static uint64_t t_rng = 0x9E3779B97F4A7C15ull;

static uint64_t
rnd(void)
{
    t_rng ^= t_rng >> 12;
    t_rng ^= t_rng << 25;
    t_rng ^= t_rng >> 27;
    return t_rng * 2685821657736338717ull;
}

static size_t
rn(size_t n)
{
    return (size_t)(rnd() % n);
}

static const char *const models[] = {
    "llama3.2:3b",
    "llama3.1:8b",
    "gemma3:27b",
    "qwen2.5-coder:7b",
    "nomic-embed-text:latest",
    "mistral:7b",
};
#define N_MODELS (sizeof(models) / sizeof(models[0]))

#define N_IDS 160

struct slot {
    char node[REGISTRY_NODE_ID_MAX + 1];
    char model[REGISTRY_MODEL_NAME_MAX + 1];
};

struct t {
    uv_loop_t loop;
    struct herd_cfg cfg;
    struct herd h;
    char dir[64];
    struct slot slots[8192];
    size_t n_slots;
    size_t faulted[N_IDS]; /* nodes given a fault and no success since */
    size_t n_faulted;
    size_t routes, ok, vram, eligible_over_64, beyond_sorted, unmarked;
    size_t removed;
};

/* ---- the fleet ---------------------------------------------------------- */

static void
id_of(size_t i, char *out, size_t n)
{
    snprintf(out, n, "node-%03zu", i);
}

static void
heartbeat(struct t *t, size_t i, bool healthy)
{
    static const double sizes[] = {0, 1.5, 2.0, 4.7, 16.4, 40};
    static const int64_t ctxs[] = {0, 2048, 8192, 32768};
    static const double totals[] = {0, 1, 16, 64, 192};
    static const double bws[] = {0, 100, 400, 400, 800};
    static const char *const pressures[] = {"normal", "normal", "normal",
                                            "warn", "critical"};
    static const char *const modes[] = {
        "full",      "learned_high", "learning",      "paused",
        "bootstrap", "weird",        "learned_medium"};
    struct registry_reply reply;
    char id[32], err[256];
    struct buf b;
    /* most nodes healthy with most models, so that a model often has
     * more than SCORER_SORTED eligible nodes; the rest anything */
    bool good = healthy || rn(5) != 0;
    size_t nl = healthy ? 3 + rn(3) : rn(4), na = good ? 3 + rn(4) : rn(6);
    double total = good ? totals[3 + rn(2)] : totals[rn(5)];

    buf_init(&b, 1 << 20);
    id_of(i, id, sizeof(id));
    assert_int_equal(
        buf_appendf(&b,
                    "{\"node_id\":\"%s\",\"cpu\":{\"cores_physical\":8,"
                    "\"utilization_pct\":10},\"memory\":{\"total_gb\":%g,"
                    "\"used_gb\":1,\"available_gb\":%g,\"pressure\":\"%s\"},"
                    "\"memory_bandwidth_gbps\":%g,\"ollama_healthy\":%s,"
                    "\"ollama\":{\"num_parallel\":%zu,\"models_loaded\":[",
                    id, total, total * (double)(good ? 2 + rn(3) : rn(5)) / 4.0,
                    pressures[good ? 0 : rn(5)], bws[rn(5)],
                    !good && rn(3) == 0 ? "false" : "true", rn(5)),
        0);
    for (size_t k = 0; k < nl; k++)
        assert_int_equal(buf_appendf(&b,
                                     "%s{\"name\":\"%s\",\"size_gb\":%g,"
                                     "\"context_length\":%lld}",
                                     k ? "," : "", models[rn(N_MODELS)],
                                     sizes[rn(6)], (long long)ctxs[rn(4)]),
                         0);
    assert_int_equal(buf_appends(&b, "],\"models_available\":["), 0);
    for (size_t k = 0; k < na; k++)
        assert_int_equal(
            buf_appendf(&b, "%s\"%s\"", k ? "," : "", models[rn(N_MODELS)]), 0);
    assert_int_equal(buf_appends(&b, "]}"), 0);
    if (rn(good ? 8 : 2) == 0)
        assert_int_equal(
            buf_appendf(&b,
                        ",\"capacity\":{\"mode\":\"%s\","
                        "\"availability_score\":%g,\"ceiling_gb\":%g}",
                        modes[rn(7)], (double)rn(5) / 4.0, (double)(rn(3) * 8)),
            0);
    assert_int_equal(buf_appends(&b, "}"), 0);
    assert_int_equal(registry_heartbeat(t->h.reg, b.data, b.len, "10.0.0.9",
                                        t_now, &reply, err, sizeof(err)),
                     0);
    if (t->h.router == NULL)
        ; /* not yet: router_new() indexes what is there */
    else if (reply.created)
        router_fleet_changed(t->h.router);
    else
        router_node_changed(t->h.router, id);
    buf_cleanup(&b);
}

/* ---- the decision from scratch ----------------------------------------- */

struct ref {
    struct scorer_node *nodes;
    struct scorer_loaded **ld;
    struct scorer_unloaded **ul;
    struct scorer_result *out[3]; /* current, cold, best fallback */
    size_t n;
};

static enum scorer_cap_mode
ref_cap_mode(const char *m)
{
    if (strcmp(m, "full") == 0)
        return SCORER_CAP_FULL;
    if (strcmp(m, "learned_high") == 0)
        return SCORER_CAP_LEARNED_HIGH;
    if (strcmp(m, "learned_low") == 0 || strcmp(m, "learning") == 0)
        return SCORER_CAP_LEARNED_LOW;
    if (strcmp(m, "paused") == 0)
        return SCORER_CAP_PAUSED;
    if (strcmp(m, "bootstrap") == 0)
        return SCORER_CAP_BOOTSTRAP;
    return SCORER_CAP_LEARNED_MEDIUM;
}

/* Every registry node as the scorer's struct, request fields patched. */
static void
ref_fill(struct t *t, struct ref *f, const struct route_req *rr,
         const char *model)
{
    for (size_t i = 0; i < f->n; i++) {
        const struct registry_node *n = registry_node_at(t->h.reg, i);
        const struct registry_hb *hb = &n->hb;
        struct scorer_node *sn = &f->nodes[i];
        const char *health = router_node_health(t->h.router, n->id);
        int64_t inf = registry_inflight_get(n, model);
        double p75 = 0;

        memset(sn, 0, sizeof(*sn));
        sn->id = n->id;
        sn->status = n->status == REGISTRY_ONLINE     ? SCORER_ONLINE
                     : n->status == REGISTRY_DEGRADED ? SCORER_DEGRADED
                                                      : SCORER_OFFLINE;
        sn->has_ollama = hb->ollama_healthy;
        sn->pressure = hb->pressure == REGISTRY_PRESSURE_CRITICAL
                           ? SCORER_PRESSURE_CRITICAL
                       : hb->pressure == REGISTRY_PRESSURE_WARN
                           ? SCORER_PRESSURE_WARN
                           : SCORER_PRESSURE_NORMAL;
        sn->mem_total_gb = hb->mem_total_gb;
        sn->mem_available_gb = hb->mem_available_gb;
        sn->bandwidth_gbs = hb->memory_bandwidth_gbps;
        if (hb->has_capacity) {
            sn->cap.present = true;
            sn->cap.mode = ref_cap_mode(hb->capacity.mode);
            sn->cap.availability_score = hb->capacity.availability_score;
            sn->cap.ceiling_gb = hb->capacity.ceiling_gb;
        }
        f->ld[i] = calloc(hb->n_loaded + 1, sizeof(**f->ld));
        f->ul[i] = calloc(n->n_unloaded + 1, sizeof(**f->ul));
        assert_non_null(f->ld[i]);
        assert_non_null(f->ul[i]);
        for (size_t k = 0; k < hb->n_loaded; k++)
            f->ld[i][k] = (struct scorer_loaded){
                hb->loaded[k].name, hb->loaded[k].size_gb,
                hb->loaded[k].context_length > 0
                    ? (uint32_t)hb->loaded[k].context_length
                    : 0};
        for (size_t k = 0; k < n->n_unloaded; k++)
            f->ul[i][k] = (struct scorer_unloaded){n->unloaded[k].name,
                                                   n->unloaded[k].at_ns};
        sn->loaded = f->ld[i];
        sn->n_loaded = hb->n_loaded;
        sn->available = (const char *const *)hb->available;
        sn->n_available = hb->n_available;
        sn->unloaded = f->ul[i];
        sn->n_unloaded = n->n_unloaded;
        sn->num_parallel =
            hb->num_parallel > 0 ? (uint32_t)hb->num_parallel : 1;
        for (size_t k = 0; k < rr->n_excluded; k++)
            sn->excluded |= strcmp(rr->excluded[k], n->id) == 0;
        if (health != NULL && strcmp(health, "ejected") == 0)
            sn->excluded = true;
        else if (health != NULL)
            sn->num_parallel = 1;
        sn->in_flight = inf > 0 ? (uint32_t)inf : 0;
        if (inf > 0 && t->h.traces != NULL &&
            traces_p75_ms(t->h.traces, n->id, model, &p75) != 0)
            p75 = 0;
        sn->p75_ms = p75;
    }
}

static void
ref_unfill(struct ref *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->ld[i]);
        free(f->ul[i]);
    }
}

/* One model scored from scratch: the eligible count; *pick the index of
 * the best node with a free slot (-1 none), *rank its rank. */
static int
ref_score(struct t *t, struct ref *f, const struct route_req *rr,
          const char *model, struct scorer_result *out, int *pick, int *rank,
          bool *hot)
{
    struct scorer_request req = {.model = model,
                                 .estimated_tokens = rr->estimated_tokens,
                                 .now_ns = t_now,
                                 .seed = t_seed};
    int eligible, sorted;

    ref_fill(t, f, rr, model);
    eligible = scorer_score(f->nodes, f->n, &req, &t->cfg.weights, out);
    assert_true(eligible >= 0);
    sorted = eligible < SCORER_SORTED ? eligible : SCORER_SORTED;
    *pick = -1;
    *hot = false;
    for (int i = 0; i < eligible; i++) {
        const struct scorer_node *sn = &f->nodes[out[i].node];

        if (sn->in_flight >= (sn->num_parallel ? sn->num_parallel : 1))
            continue; /* every slot busy */
        if (i < sorted) {
            *pick = i;
            break;
        }
        if (*pick < 0 || scorer_rank_cmp(&out[i], &out[*pick]) < 0)
            *pick = i;
    }
    if (*pick >= 0) {
        const struct scorer_node *sn = &f->nodes[out[*pick].node];

        *rank = *pick + 1;
        if (*pick >= sorted) {
            *rank = 1;
            for (int j = 0; j < eligible; j++)
                *rank += scorer_rank_cmp(&out[j], &out[*pick]) < 0;
            t->beyond_sorted++;
        }
        for (size_t k = 0; k < sn->n_loaded; k++)
            *hot |= strcmp(sn->loaded[k].name, model) == 0;
    }
    if (eligible > SCORER_SORTED)
        t->eligible_over_64++;
    ref_unfill(f);
    return eligible;
}

struct ref_decision {
    enum route_result res;
    const char *model;
    int model_index;
    struct scorer_result *out;
    int pick, rank, eligible;
};

static bool
ref_wants(const struct route_req *rr, const char *m)
{
    for (size_t i = 0; i < rr->n_models; i++)
        if (strcmp(rr->models[i], m) == 0)
            return true;
    return false;
}

/* router.c's VRAM fallback, from scratch. */
static bool
ref_vram(struct t *t, struct ref *f, const struct route_req *rr,
         struct ref_decision *d)
{
    const char *cat = modelcat_classify(rr->models[0]);
    const char *cands[16];
    const char *best = NULL;
    double best_total = 0;

    for (int cross = 0; cross < 2 && best == NULL; cross++) {
        size_t nc = 0;

        if (cross && !t->cfg.vram_fallback_cross)
            break;
        for (size_t i = 0; i < f->n && nc < 16; i++) {
            const struct registry_node *n = registry_node_at(t->h.reg, i);

            if (!registry_node_routable(n))
                continue;
            for (size_t k = 0; k < n->hb.n_loaded && nc < 16; k++) {
                const char *m = n->hb.loaded[k].name;
                bool dup = ref_wants(rr, m);

                for (size_t j = 0; j < nc && !dup; j++)
                    dup = strcmp(cands[j], m) == 0;
                if (dup || strcmp(modelcat_classify(m), "embedding") == 0 ||
                    (!cross && strcmp(modelcat_classify(m), cat) != 0))
                    continue;
                cands[nc++] = m;
            }
        }
        for (size_t j = 0; j < nc; j++) {
            int pick, rank;
            bool hot;
            int el =
                ref_score(t, f, rr, cands[j], f->out[0], &pick, &rank, &hot);

            if (el <= 0 || pick < 0 || !hot)
                continue;
            if (best == NULL || f->out[0][pick].b.total > best_total) {
                struct scorer_result *x = f->out[2];

                best = cands[j];
                best_total = f->out[0][pick].b.total;
                f->out[2] = f->out[0];
                f->out[0] = x;
                *d = (struct ref_decision){ROUTE_OK, best, -1, f->out[2],
                                           pick,     rank, el};
            }
        }
    }
    return best != NULL;
}

/* router_route() as it was before the index, from scratch. */
static void
ref_route(struct t *t, struct ref *f, const struct route_req *rr,
          struct ref_decision *d)
{
    struct ref_decision cold = {.res = ROUTE_UNKNOWN};
    bool any_full = false;

    memset(d, 0, sizeof(*d));
    for (size_t m = 0; m < rr->n_models; m++) {
        int pick, rank;
        bool hot;
        int el =
            ref_score(t, f, rr, rr->models[m], f->out[0], &pick, &rank, &hot);

        if (el <= 0)
            continue;
        if (pick < 0) {
            any_full = true;
            continue;
        }
        if (hot) {
            *d = (struct ref_decision){
                ROUTE_OK, rr->models[m], (int)m, f->out[0], pick, rank, el};
            return;
        }
        if (cold.res != ROUTE_OK) {
            struct scorer_result *x = f->out[1];

            f->out[1] = f->out[0];
            f->out[0] = x;
            cold = (struct ref_decision){
                ROUTE_OK, rr->models[m], (int)m, f->out[1], pick, rank, el};
        }
    }
    if (cold.res == ROUTE_OK && !any_full && t->cfg.vram_fallback &&
        ref_vram(t, f, rr, d)) {
        t->vram++;
        return;
    }
    if (cold.res == ROUTE_OK) {
        *d = cold;
        return;
    }
    d->res = any_full ? ROUTE_FULL : ROUTE_UNKNOWN;
    for (size_t m = 0; m < rr->n_models && d->res == ROUTE_UNKNOWN; m++) {
        for (size_t i = 0; i < f->n; i++) {
            const struct registry_node *n = registry_node_at(t->h.reg, i);

            if (n->status != REGISTRY_REJECTED &&
                (registry_node_loaded(n, rr->models[m]) ||
                 registry_node_available(n, rr->models[m])))
                d->res = ROUTE_NO_NODE;
        }
    }
}

/* The trace's candidates as router.c rendered them before the index. */
static void
ref_candidates(struct t *t, struct ref *f, const struct ref_decision *d,
               const struct route_req *rr, struct buf *b)
{
    size_t shown =
        f->n < ROUTER_MAX_CANDIDATES_JSON ? f->n : ROUTER_MAX_CANDIDATES_JSON;

    ref_fill(t, f, rr, d->model); /* in_flight, num_parallel as scored */
    assert_int_equal(buf_appends(b, "["), 0);
    for (size_t i = 0; i < shown; i++) {
        const struct scorer_node *sn = &f->nodes[d->out[i].node];

        assert_int_equal(buf_appends(b, i ? ",{\"node_id\":" : "{\"node_id\":"),
                         0);
        assert_int_equal(json_append_str(b, sn->id, strlen(sn->id)), 0);
        assert_int_equal(buf_appendf(b,
                                     ",\"score\":%.4f,\"in_flight\":%u,"
                                     "\"num_parallel\":%u,\"breakdown\":",
                                     d->out[i].b.total, sn->in_flight,
                                     sn->num_parallel ? sn->num_parallel : 1),
                         0);
        assert_int_equal(scorer_breakdown_json(&d->out[i], b), 0);
        assert_int_equal(buf_appends(b, "}"), 0);
    }
    if (shown < f->n)
        assert_int_equal(buf_appendf(b, ",{\"omitted\":%zu}", f->n - shown), 0);
    assert_int_equal(buf_appends(b, "]"), 0);
    ref_unfill(f);
}

/* ---- the walk ----------------------------------------------------------- */

static void
random_request(struct t *t, struct route_req *rr, char ex[][32],
               const char *model)
{
    static const char *const extra[] = {"ghost:1b", "llama3.2:3b"};

    memset(rr, 0, sizeof(*rr));
    rr->n_models = 1 + rn(3);
    for (size_t i = 0; i < rr->n_models; i++)
        rr->models[i] = rn(8) == 0 ? extra[rn(2)] : models[rn(N_MODELS)];
    if (model != NULL)
        rr->models[0] = model;
    rr->estimated_tokens = rn(4) == 0 ? 0 : (int64_t)rn(20000);
    rr->n_excluded = rn(3) == 0 ? rn(4) : 0;
    for (size_t i = 0; i < rr->n_excluded; i++) {
        id_of(rn(N_IDS), ex[i], 32);
        snprintf(rr->excluded[i], sizeof(rr->excluded[i]), "%s", ex[i]);
    }
    t->cfg.vram_fallback = rn(2) == 0;
    t->cfg.vram_fallback_cross = rn(2) == 0;
    if (rn(20) == 0) { /* settings changed (dashboard) */
        t->cfg.weights.bandwidth_aware = rn(4) != 0;
        t->cfg.weights.queue_penalty_bandwidth_normalize = rn(4) != 0;
        t->cfg.weights.wait_time = rn(4) != 0;
        t->cfg.weights.model_cold = rn(2) == 0 ? 10 : 12;
        t->cfg.weights.degraded_penalty = rn(2) == 0 ? 20 : 35;
    }
}

static void
route_and_compare(struct t *t, struct ref *f, const char *model)
{
    struct route_req rr;
    struct route_decision d;
    struct ref_decision want;
    enum route_result got;
    char ex[ROUTER_MAX_EXCLUDED][32];
    struct buf wb, wc;

    random_request(t, &rr, ex, model);
    t_seed = rnd();
    f->n = registry_count(t->h.reg);
    ref_route(t, f, &rr, &want);
    buf_init(&wb, 1 << 16);
    buf_init(&wc, 1 << 20);
    if (want.res == ROUTE_OK) {
        const struct scorer_result *w = &want.out[want.pick];

        assert_int_equal(scorer_breakdown_json(w, &wb), 0);
        ref_candidates(t, f, &want, &rr, &wc);
    }
    route_decision_init(&d);
    got = router_route(t->h.router, &rr, &d);
    t->routes++;
    t->unmarked += rr.n_excluded == 0 && t->n_faulted == 0;
    assert_int_equal(got, want.res);
    if (got == ROUTE_OK) {
        const struct scorer_result *w = &want.out[want.pick];
        const struct registry_node *n = registry_node_at(t->h.reg, w->node);

        t->ok++;
        assert_string_equal(d.node_id, n->id);
        assert_string_equal(d.model, want.model);
        assert_string_equal(d.base_url, n->ollama_base_url);
        assert_int_equal(d.model_index, want.model_index);
        assert_true(d.score == w->b.total);
        assert_int_equal(d.rank, want.rank);
        assert_int_equal(d.n_eligible, (size_t)want.eligible);
        assert_int_equal(d.breakdown.len, wb.len);
        assert_memory_equal(d.breakdown.data, wb.data, wb.len);
        if (d.candidates.len != wc.len ||
            memcmp(d.candidates.data, wc.data, wc.len) != 0)
            fail_msg("candidates differ:\n got %.*s\nwant %.*s",
                     (int)d.candidates.len, d.candidates.data, (int)wc.len,
                     wc.data);
        if (t->n_slots < sizeof(t->slots) / sizeof(t->slots[0])) {
            snprintf(t->slots[t->n_slots].node, sizeof(t->slots[0].node), "%s",
                     d.node_id);
            snprintf(t->slots[t->n_slots].model, sizeof(t->slots[0].model),
                     "%s", d.model);
            t->n_slots++;
        } else {
            router_release_unused(t->h.router, d.node_id, d.model);
        }
    }
    route_decision_cleanup(&d);
    buf_cleanup(&wb);
    buf_cleanup(&wc);
}

static void
release_one(struct t *t)
{
    size_t i;

    if (t->n_slots == 0)
        return;
    i = rn(t->n_slots);
    if (rn(4) == 0)
        router_release_unused(t->h.router, t->slots[i].node, t->slots[i].model);
    else
        router_release(t->h.router, t->slots[i].node, t->slots[i].model,
                       rn(5) != 0);
    t->slots[i] = t->slots[--t->n_slots];
}

static void
observe(struct t *t)
{
    struct trace_record rec;
    char id[32];

    if (t->h.traces == NULL)
        return;
    id_of(rn(N_IDS), id, sizeof(id));
    memset(&rec, 0, sizeof(rec));
    rec.request_id = "r";
    rec.model = models[rn(N_MODELS)];
    rec.original_model = rec.model;
    rec.node_id = id;
    rec.score = 0;
    rec.status = "completed";
    rec.latency_ms = (double)(50 + rn(5000));
    rec.ttft_ms = -1;
    rec.prompt_tokens = -1;
    rec.completion_tokens = -1;
    rec.queue_wait_ms = TRACES_NULL_REAL;
    rec.observe = true;
    rec.obs_latency_ms = rec.latency_ms;
    assert_int_equal(traces_submit(t->h.traces, &rec), 0);
}

/* Slots taken on most nodes that have a model hot (another herd's burst,
 * as it were), straight through the registry: the index must follow. */
static void
burst(struct t *t, const char *m)
{
    for (size_t i = 0; i < registry_count(t->h.reg); i++) {
        const struct registry_node *n = registry_node_at(t->h.reg, i);

        if (registry_node_loaded(n, m) == NULL)
            continue;
        while (registry_inflight_get(n, m) < n->hb.num_parallel &&
               t->n_slots < sizeof(t->slots) / sizeof(t->slots[0])) {
            assert_true(registry_inflight_add(t->h.reg, n->id, m, 1) > 0);
            snprintf(t->slots[t->n_slots].node, sizeof(t->slots[0].node), "%s",
                     n->id);
            snprintf(t->slots[t->n_slots].model, sizeof(t->slots[0].model),
                     "%s", m);
            t->n_slots++;
        }
    }
}

static void
step(struct t *t, struct ref *f)
{
    size_t what = rn(100);
    char id[32];

    id_of(rn(N_IDS), id, sizeof(id));
    if (what < 30) {
        heartbeat(t, rn(N_IDS), false);
    } else if (what < 32) {
        char body[96];
        struct registry_reply reply;
        char err[128];

        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"draining\":true}",
                 id);
        assert_int_equal(registry_heartbeat(t->h.reg, body, strlen(body), "",
                                            t_now, &reply, err, sizeof(err)),
                         0);
        router_fleet_changed(t->h.router);
        /* its requests end, so that it can be removed */
        for (size_t i = 0; i < t->n_slots;) {
            if (strcmp(t->slots[i].node, id) == 0) {
                router_release(t->h.router, id, t->slots[i].model, false);
                t->slots[i] = t->slots[--t->n_slots];
            } else {
                i++;
            }
        }
    } else if (what < 38) {
        t_now += (int64_t)rn(4) * SEC;
        registry_tick(t->h.reg, t_now);
    } else if (what < 70) {
        route_and_compare(t, f, NULL);
    } else if (what < 85) {
        release_one(t);
    } else if (what < 87) {
        size_t i = rn(N_IDS), k = 0;

        id_of(i, id, sizeof(id));
        router_node_fault(t->h.router, id);
        while (k < t->n_faulted && t->faulted[k] != i)
            k++;
        if (k == t->n_faulted)
            t->faulted[t->n_faulted++] = i;
    } else if (what < 90) {
        if (t->n_faulted > 0) { /* a success: healthy again */
            size_t k = rn(t->n_faulted);

            id_of(t->faulted[k], id, sizeof(id));
            router_node_ok(t->h.router, id);
            t->faulted[k] = t->faulted[--t->n_faulted];
        }
    } else if (what < 93) {
        if (registry_node_add_model(t->h.reg, id, models[rn(N_MODELS)]) == 0)
            router_fleet_changed(t->h.router);
    } else if (what < 96) {
        if (registry_node_remove_model(t->h.reg, id, models[rn(N_MODELS)]) == 0)
            router_fleet_changed(t->h.router);
    } else if (what < 98) {
        observe(t);
    } else {
        const char *m = models[rn(N_MODELS)];

        burst(t, m);
        for (size_t i = 0; i < 8; i++)
            route_and_compare(t, f, m);
    }
}

static void
on_event(const struct registry_event *ev, void *arg)
{
    struct t *t = arg;

    t->removed += ev->kind == REGISTRY_EV_REMOVED;
}

static void
on_router_freed(void *ud)
{
    *(bool *)ud = true;
}

static void
walk(bool traces, size_t steps, bool beyond)
{
    struct t *t = calloc(1, sizeof(*t));
    struct registry_config rc;
    struct ref f;
    char err[256];
    bool freed = false;

    assert_non_null(t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    registry_config_default(&rc);
    rc.remove_after_ns = 5 * SEC;
    rc.min_node_memory_gb = 2; /* total 1 GB: rejected */
    scorer_weights_default(&t->cfg.weights);
    t->h.loop = &t->loop;
    t->h.cfg = &t->cfg;
    t->h.reg = registry_new(&rc);
    registry_set_event_cb(t->h.reg, on_event, t);
    if (traces) {
        char path[128];

        snprintf(t->dir, sizeof(t->dir), "/tmp/test_router.XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        snprintf(path, sizeof(path), "%s/latency.db", t->dir);
        t->h.traces = traces_open(path, NULL, err, sizeof(err));
        assert_non_null(t->h.traces);
    }
    /* a few nodes before the router exists: its index starts from them */
    for (size_t i = 0; i < 5; i++)
        heartbeat(t, i, false);
    t->h.router = router_new(&t->h);
    assert_non_null(t->h.router);
    memset(&f, 0, sizeof(f));
    f.nodes = calloc(N_IDS, sizeof(*f.nodes));
    f.ld = calloc(N_IDS, sizeof(*f.ld));
    f.ul = calloc(N_IDS, sizeof(*f.ul));
    for (size_t i = 0; i < 3; i++)
        f.out[i] = calloc(N_IDS, sizeof(*f.out[i]));
    for (size_t s = 0; s < steps; s++) {
        /* now and then the whole fleet reports, healthy: many nodes
         * eligible at once, and their slots fill up */
        if (s % 1000 == 0)
            for (size_t i = 0; i < N_IDS; i++)
                heartbeat(t, i, true);
        step(t, &f);
    }
    printf("# %zu requests (%zu with no node excluded or on probation), %zu "
           "routed, %zu over %d eligible, %zu picks beyond the sorted ones, "
           "%zu VRAM fallbacks, %zu nodes removed, %zu at the end\n",
           t->routes, t->unmarked, t->ok, t->eligible_over_64, SCORER_SORTED,
           t->beyond_sorted, t->vram, t->removed, registry_count(t->h.reg));
    /* the walk went where it should */
    assert_true(t->ok > t->routes / 4);
    assert_true(t->eligible_over_64 > 0);
    assert_true(t->vram > 0);
    assert_true(t->unmarked > t->routes / 10);
    assert_true(t->removed > 0);
    if (beyond)
        assert_true(t->beyond_sorted > 0);
    while (t->n_slots > 0)
        release_one(t);
    router_free(t->h.router, on_router_freed, &freed);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_true(freed);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    if (traces) {
        DIR *d;
        struct dirent *de;

        traces_close(t->h.traces);
        d = opendir(t->dir);
        while (d != NULL && (de = readdir(d)) != NULL) {
            char path[512];

            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
            unlink(path);
        }
        if (d != NULL)
            closedir(d);
        assert_int_equal(rmdir(t->dir), 0);
    }
    registry_free(t->h.reg);
    for (size_t i = 0; i < 3; i++)
        free(f.out[i]);
    free(f.nodes);
    free(f.ld);
    free(f.ul);
    free(t);
}

static void
test_index_equals_scratch(void **state)
{
    (void)state;
    walk(false, 6000, true);
}

static void
test_index_equals_scratch_with_p75(void **state)
{
    (void)state;
    walk(true, 3000, false);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_equals_scratch),
        cmocka_unit_test(test_index_equals_scratch_with_p75),
    };

    log_set_level(LL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
