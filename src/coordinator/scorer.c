/*
 * scorer.c - elimination, the scoring signals, tie-breaks, the model-size
 * and token estimates, and the trace's JSON breakdown.
 *
 * Everything here is a function of its arguments. The formulas follow
 * ollama-herd's server/scorer.py (reference §4.3) so that scores read the
 * same in traces; where we differ on purpose the comment says so and
 * docs/internals/scorer.md says why.
 */
#include "scorer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/modelname.h"

/* ---- settings ---- */

void
scorer_weights_default(struct scorer_weights *w)
{
    *w = (struct scorer_weights){
        .model_hot = 50.0,
        .model_warm = 30.0,
        .model_cold = 10.0,
        .warm_window_s = 1800.0,
        .memory_fit_max = 20.0,
        .queue_depth_max_penalty = 30.0,
        .queue_depth_penalty_per = 6.0,
        .wait_time_max_penalty = 25.0,
        .role_large_threshold_gb = 20.0,
        .role_small_threshold_gb = 8.0,
        .availability_trend_max = 10.0,
        .context_fit_max = 15.0,
        .degraded_penalty = 20.0,
        .slot_free_bonus = 10.0,
        .bandwidth_aware = true,
        .queue_penalty_bandwidth_normalize = true,
        .wait_time = true,
    };
}

/* ---- model size from the name ---- */

#define SCORER_DEFAULT_SIZE_GB 10.0 /* no parameter count: ollama-herd's */
#define SCORER_EMBED_SIZE_GB   0.3  /* embedding model without a count */
#define SCORER_Q4_K_M_BITS     4.85

/* One name segment as a total parameter count: "27b", or "8x7b" (eight
 * experts of 7b, all of which must be in memory). "30b-a3b" arrives as
 * "30b" then "a3b"; the active count never parses, so 30 is kept. */
static int
scorer_parse_params(const char *seg, size_t n, double *total)
{
    const char *x = memchr(seg, 'x', n);
    double k, each;

    /* Only b, m and t: a "4k" or "32k" in a tag is a context size, not a
     * parameter count. */
    if (x == NULL)
        return modelname_count(seg, n, "bmt", total);
    if (modelname_decimal(seg, (size_t)(x - seg), &k) != 0 || k <= 0 ||
        k != floor(k) ||
        modelname_count(x + 1, n - (size_t)(x + 1 - seg), "bmt", &each) != 0)
        return -EINVAL;
    *total = k * each;
    return 0;
}

/* Walks the segments of s[0..n) (split on '-', ':', '/'), keeping the
 * first parameter count and the first quantisation seen. */
static void
scorer_scan_segments(const char *s, size_t n, double *params, double *bits)
{
    size_t i = 0;

    while (i < n) {
        size_t j = i;

        while (j < n && s[j] != '-' && s[j] != ':' && s[j] != '/')
            j++;
        if (j > i) {
            double v;

            if (*params <= 0 && scorer_parse_params(s + i, j - i, &v) == 0)
                *params = v;
            if (*bits <= 0 && modelname_quant(s + i, j - i, NULL, &v) == 0)
                *bits = v;
        }
        i = j + 1;
    }
}

double
scorer_estimate_size_gb(const char *model)
{
    char low[256];
    size_t n = 0, colon;
    double params = 0, bits = 0;
    bool embed;

    if (model == NULL)
        return SCORER_DEFAULT_SIZE_GB;
    for (; model[n] != '\0' && n < sizeof(low) - 1; n++)
        low[n] = (char)tolower((unsigned char)model[n]);
    low[n] = '\0';
    /* Embedding models: those that say so, and the common families
     * that do not (all-minilm, bge-m3). */
    embed = strstr(low, "embed") != NULL || strstr(low, "minilm") != NULL ||
            strncmp(low, "bge-", 4) == 0;
    /* The tag speaks first ("qwen2.5-coder-7b:1.5b" is a 1.5b model),
     * then the name before it ("smollm-135m", "Llama-3.2-3B-...:Q8_0"). */
    colon = n;
    while (colon > 0 && low[colon - 1] != ':' && low[colon - 1] != '/')
        colon--;
    if (colon > 0)
        scorer_scan_segments(low + colon, n - colon, &params, &bits);
    scorer_scan_segments(low, colon > 0 ? colon - 1 : n, &params, &bits);
    if (params <= 0)
        return embed ? SCORER_EMBED_SIZE_GB : SCORER_DEFAULT_SIZE_GB;
    /* Ollama ships embedding models as F16, everything else as Q4_K_M. */
    if (bits <= 0)
        bits = embed ? 16.0 : SCORER_Q4_K_M_BITS;
    return params * bits / 8.0;
}

/* ---- lookups on one node ---- */

static const struct scorer_loaded *
scorer_find_loaded(const struct scorer_node *nd, const char *model)
{
    for (size_t i = 0; i < nd->n_loaded; i++)
        if (nd->loaded[i].name && strcmp(nd->loaded[i].name, model) == 0)
            return &nd->loaded[i];
    return NULL;
}

static bool
scorer_is_available(const struct scorer_node *nd, const char *model)
{
    for (size_t i = 0; i < nd->n_available; i++)
        if (nd->available[i] && strcmp(nd->available[i], model) == 0)
            return true;
    return false;
}

/* When the model left this node's memory, or false if it has not. */
static bool
scorer_unloaded_at(const struct scorer_node *nd, const char *model, int64_t *at)
{
    for (size_t i = 0; i < nd->n_unloaded; i++) {
        if (nd->unloaded[i].name && strcmp(nd->unloaded[i].name, model) == 0) {
            *at = nd->unloaded[i].unloaded_ns;
            return true;
        }
    }
    return false;
}

/* The first loaded size of model anywhere in the fleet, or 0. */
static double
scorer_fleet_loaded_size(const struct scorer_node *nodes, size_t n,
                         const char *model)
{
    for (size_t i = 0; i < n; i++) {
        const struct scorer_loaded *l = scorer_find_loaded(&nodes[i], model);

        if (l != NULL && l->size_gb > 0)
            return l->size_gb;
    }
    return 0;
}

double
scorer_model_size_gb(const struct scorer_node *nodes, size_t n, size_t self,
                     const char *model)
{
    double fleet;

    if (model == NULL)
        return SCORER_DEFAULT_SIZE_GB;
    if (nodes != NULL && self < n) {
        const struct scorer_loaded *l = scorer_find_loaded(&nodes[self], model);

        if (l != NULL && l->size_gb > 0)
            return l->size_gb;
    }
    fleet = nodes != NULL ? scorer_fleet_loaded_size(nodes, n, model) : 0;
    return fleet > 0 ? fleet : scorer_estimate_size_gb(model);
}

/* fmin() and fmax() without a call into libm (a call each per node and
 * signal was a tenth of a decision): the same value, a NaN argument
 * ignored as they do; only the sign of a zero result may differ, which
 * neither an order nor a breakdown (never "-0") can show. */
static inline double
scorer_min(double a, double b)
{
    return isnan(a) ? b : isnan(b) ? a : b < a ? b : a;
}

static inline double
scorer_max(double a, double b)
{
    return isnan(a) ? b : isnan(b) ? a : b > a ? b : a;
}

/* One node and one model on it, as the signals read them. */
struct scorer_in {
    const struct scorer_cnode *n;
    const struct scorer_centry *e;
    double p75_ms;
};

/* Memory the node can give a model: what is free, capped by the
 * capacity learner's ceiling when it set one. */
static inline double
scorer_usable_gb(const struct scorer_cnode *n)
{
    double avail = n->mem_available_gb;

    if (n->cap_present && n->cap_ceiling_gb > 0 && n->cap_ceiling_gb < avail)
        avail = n->cap_ceiling_gb;
    return avail;
}

/* ---- stage 1: elimination (first matching rule names the reason) ---- */

static inline const char *
scorer_eliminate(const struct scorer_in *in, double size_gb)
{
    const struct scorer_cnode *n = in->n;
    const struct scorer_centry *e = in->e;

    if (n->status == SCORER_OFFLINE)
        return "offline";
    if (n->marks & SCORER_MARK_EXCLUDED)
        return "excluded";
    if (!n->has_ollama)
        return "no_ollama";
    if (n->pressure == SCORER_PRESSURE_CRITICAL)
        return "memory_pressure_critical";
    if (n->cap_present) {
        if (n->cap_mode == SCORER_CAP_PAUSED)
            return "capacity_paused";
        if (n->cap_mode == SCORER_CAP_BOOTSTRAP)
            return "capacity_bootstrap";
        if (n->cap_availability < 0.2)
            return "capacity_low_availability";
    }
    if (!e->loaded && !e->on_disk)
        return "model_not_on_node";
    /* Without a memory report there is nothing to compare against. */
    if (!e->loaded && n->mem_total_gb > 0 && scorer_usable_gb(n) < size_gb)
        return "insufficient_memory";
    return NULL;
}

/* ---- stage 2: the signals ---- */

static inline double
scorer_thermal(const struct scorer_in *in, const struct scorer_request *req,
               const struct scorer_weights *w)
{
    const struct scorer_centry *e = in->e;

    if (e->loaded)
        return w->model_hot;
    if (e->unloaded &&
        (double)(req->now_ns - e->unloaded_ns) / 1e9 < w->warm_window_s)
        return w->model_warm;
    if (e->on_disk)
        return w->model_cold;
    return 0;
}

static inline double
scorer_memory_fit(const struct scorer_in *in, const struct scorer_weights *w,
                  double size_gb)
{
    double ratio;

    if (in->e->loaded)
        return w->memory_fit_max;
    if (size_gb <= 0 || in->n->mem_total_gb <= 0)
        return 0;
    /* The cold tiers are fixed in ollama-herd; only the loaded value is a
     * setting. */
    ratio = scorer_usable_gb(in->n) / size_gb;
    if (ratio > 2.0)
        return 20.0;
    if (ratio > 1.5)
        return 15.0;
    if (ratio > 1.2)
        return 8.0;
    if (ratio >= 1.0)
        return 3.0;
    return 0;
}

static inline double
scorer_clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The router's own count: what runs on the node plus what waits for it. */
static inline double
scorer_depth(const struct scorer_in *in)
{
    return (double)in->e->in_flight + (double)in->e->queued;
}

/* A fast node drains its queue sooner, so its depth counts for less:
 * depth / (bandwidth / fleet median), the ratio clamped to [0.25, 4]. */
static inline double
scorer_queue_depth(const struct scorer_in *in, const struct scorer_weights *w,
                   double median_bw)
{
    double depth = scorer_depth(in), eff = depth, pen;
    double bw = in->n->bandwidth_gbs;

    if (depth <= 0)
        return 0;
    if (w->queue_penalty_bandwidth_normalize && bw > 0 && median_bw > 0)
        eff = depth / scorer_clamp(bw / median_bw, 0.25, 4.0);
    pen = w->queue_depth_penalty_per * eff;
    return -(pen < w->queue_depth_max_penalty ? pen
                                              : w->queue_depth_max_penalty);
}

/* Expected wait: depth times the p75 latency; without a measured p75,
 * the time to generate 100 tokens at a speed guessed from bandwidth (or
 * from the size alone). Uses the raw, not the normalised, depth. */
static inline double
scorer_wait_time(const struct scorer_in *in, const struct scorer_weights *w,
                 double size_gb)
{
    double depth = scorer_depth(in), p75 = in->p75_ms, tps, wait_s;
    double bw = in->n->bandwidth_gbs;

    if (!w->wait_time || depth <= 0)
        return 0;
    if (p75 <= 0) {
        if (bw > 0)
            tps = scorer_max(10.0, 1.2 * bw / scorer_max(1.0, size_gb / 10));
        else
            tps = scorer_max(1.0, 100.0 / scorer_max(1.0, size_gb));
        p75 = 100.0 / tps * 1000.0;
    }
    wait_s = depth * p75 / 1000.0;
    return -scorer_min(w->wait_time_max_penalty, wait_s / 10.0);
}

static inline double
scorer_role_bandwidth(double bw, bool large, bool small)
{
    double bonus = scorer_min(25.0, 5.0 + bw / 40.0);

    if (large)
        return bonus;
    if (small)
        return scorer_max(3.0, 18.0 - 0.6 * bonus);
    return 0.6 * bonus;
}

/* Big models to big (or fast) machines, small models to small ones, so
 * the big machines stay free for what only they can run. */
static inline double
scorer_role_affinity(const struct scorer_in *in, const struct scorer_weights *w,
                     double size_gb)
{
    bool large = size_gb > w->role_large_threshold_gb;
    bool small = size_gb < w->role_small_threshold_gb;
    double m = in->n->mem_total_gb;

    if (w->bandwidth_aware && in->n->bandwidth_gbs > 0)
        return scorer_role_bandwidth(in->n->bandwidth_gbs, large, small);
    if (large)
        return m >= 128 ? 15.0 : m >= 32 ? 5.0 : 0;
    if (small)
        return m <= 32 ? 15.0 : m <= 128 ? 8.0 : 3.0;
    return 5.0;
}

static inline double
scorer_availability(const struct scorer_in *in, const struct scorer_weights *w)
{
    if (!in->n->cap_present)
        return 0;
    return scorer_min(w->availability_trend_max,
                      in->n->cap_availability * w->availability_trend_max);
}

/* How well the loaded context window holds the prompt. Tiers are
 * fractions of the maximum (15 -> -15, 3, 7.5, 12, 15). */
static inline double
scorer_context_fit(bool loaded, uint32_t context_length,
                   const struct scorer_request *req,
                   const struct scorer_weights *w)
{
    double r, max = w->context_fit_max;

    if (req->estimated_tokens <= 0 || !loaded || context_length == 0)
        return 0;
    r = (double)context_length / (double)req->estimated_tokens;
    if (r < 1.0)
        return -max;
    if (r < 1.5)
        return 0.2 * max;
    if (r < 3.0)
        return 0.5 * max;
    if (r < 8.0)
        return 0.8 * max;
    return max;
}

/* The slots of the model on the node: num_parallel (0 counts as 1), one
 * on probation. */
static inline uint32_t
scorer_slots(const struct scorer_cnode *n)
{
    if (n->marks & SCORER_MARK_PROBATION)
        return 1;
    return n->num_parallel > 0 ? n->num_parallel : 1;
}

/* Ours: a loaded model with an idle slot answers at once; one whose
 * slots are all busy makes the request wait in our queue. */
static inline double
scorer_slot_free(bool loaded, uint32_t in_flight, uint32_t slots,
                 const struct scorer_weights *w)
{
    return loaded && in_flight < slots ? w->slot_free_bonus : 0;
}

/* ---- the fleet's median bandwidth ---- */

/*
 * The k-th smallest of n doubles (quickselect), reordering them. They are
 * stride bytes apart from base: a plain array, or the tiebreak field of
 * the results array, which is scratch until scorer_score() fills it (that
 * keeps this module free of allocation and of a fixed node limit).
 */
#define SCR(i) (*(double *)(void *)(a + (i)*stride))

static void
scorer_swap(char *a, size_t stride, size_t i, size_t j)
{
    double t = SCR(i);

    SCR(i) = SCR(j);
    SCR(j) = t;
}

/* Three-way partitioning, so that a fleet of identical machines (all
 * values equal, the common case) takes one pass, not n. On return every
 * value left of k is <= the k-th. */
static double
scorer_select(char *a, size_t stride, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;

    while (lo < hi) {
        double p = SCR(lo + (hi - lo) / 2);
        size_t lt = lo, i = lo, gt = hi + 1;

        /* [lo, lt) < p, [lt, i) == p, [gt, hi] > p */
        while (i < gt) {
            if (SCR(i) < p)
                scorer_swap(a, stride, lt++, i++);
            else if (SCR(i) > p)
                scorer_swap(a, stride, i, --gt);
            else
                i++;
        }
        if (k < lt)
            hi = lt - 1;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
    return SCR(k);
}

/* The median of the m values (the mean of the two middle ones for an
 * even count); 0 if none. */
static double
scorer_median_strided(char *a, size_t stride, size_t m)
{
    double hi, lo;

    if (m == 0)
        return 0;
    hi = scorer_select(a, stride, m, m / 2);
    if (m % 2 == 1)
        return hi;
    /* After selection everything below m/2 is <= hi; its maximum is the
     * other middle value. */
    lo = SCR(0);
    for (size_t i = 1; i < m / 2; i++)
        lo = fmax(lo, SCR(i));
    return (lo + hi) / 2.0;
}

double
scorer_median(double *v, size_t n)
{
    return v == NULL ? 0 : scorer_median_strided((char *)v, sizeof(*v), n);
}

/* Median bandwidth over the nodes that are not offline and report one. */
static double
scorer_median_bw(const struct scorer_node *nodes, size_t n,
                 struct scorer_result *out)
{
    char *a = (char *)&out[0].tiebreak;
    size_t m = 0, stride = sizeof(*out);

    for (size_t i = 0; i < n; i++)
        if (nodes[i].status != SCORER_OFFLINE && nodes[i].bandwidth_gbs > 0)
            SCR(m++) = nodes[i].bandwidth_gbs;
    return scorer_median_strided(a, stride, m);
}

#undef SCR

/* ---- stage 3: putting it together ---- */

/* splitmix64: a well-mixed 64-bit value from seed and the node index. */
static double
scorer_random(uint64_t seed, size_t i)
{
    uint64_t z = seed + ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull;

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

void
scorer_entry_from_node(const struct scorer_node *nd, size_t index,
                       const char *model, struct scorer_cnode *n,
                       struct scorer_centry *e)
{
    const struct scorer_loaded *l = scorer_find_loaded(nd, model);

    *n = (struct scorer_cnode){
        .status = (uint8_t)nd->status,
        .pressure = (uint8_t)nd->pressure,
        .cap_mode = (uint8_t)nd->cap.mode,
        .marks = nd->excluded ? SCORER_MARK_EXCLUDED : 0,
        .has_ollama = nd->has_ollama,
        .cap_present = nd->cap.present,
        .num_parallel = nd->num_parallel,
        .mem_total_gb = nd->mem_total_gb,
        .mem_available_gb = nd->mem_available_gb,
        .bandwidth_gbs = nd->bandwidth_gbs,
        .cap_availability = nd->cap.availability_score,
        .cap_ceiling_gb = nd->cap.ceiling_gb,
    };
    *e = (struct scorer_centry){
        .node = (uint32_t)index,
        .in_flight = nd->in_flight,
        .queued = nd->queued,
        .context_length = l != NULL ? l->context_length : 0,
        .loaded = l != NULL,
        .on_disk = scorer_is_available(nd, model),
        .size_gb = l != NULL ? l->size_gb : 0,
    };
    e->unloaded = scorer_unloaded_at(nd, model, &e->unloaded_ns);
}

/* The size as this node has it loaded, else as any node has it, else
 * from the name (fleet_size, computed once by the caller). */
static inline double
scorer_entry_size(const struct scorer_centry *e, double fleet_size)
{
    return e->loaded && e->size_gb > 0 ? e->size_gb : fleet_size;
}

/*
 * The signals in two parts. The first six (thermal to availability_trend)
 * depend on the node, the model and the settings, and, through the queue,
 * on requests in flight; scorer_rank() keeps their sum for an entry with
 * none in flight (scorer_memoizable) from one request to the next. The
 * last three depend on the request (its size, probation) or are trivial.
 * The total is the plain sum in this order, left to right, whichever way
 * it is computed: ((prefix + context_fit) + health) + slot_free, where
 * prefix = ((((thermal + memory_fit) + queue_depth) + wait_time) +
 * role_affinity) + availability_trend, exactly as one expression would.
 * Inlined into the loop of scorer_rank(), where it is most of a decision.
 */
static inline __attribute__((always_inline)) double
scorer_signals_fixed(const struct scorer_in *in,
                     const struct scorer_request *req,
                     const struct scorer_weights *w, double median_bw,
                     double size_gb, struct scorer_breakdown *b)
{
    b->thermal = scorer_thermal(in, req, w);
    b->memory_fit = scorer_memory_fit(in, w, size_gb);
    b->queue_depth = scorer_queue_depth(in, w, median_bw);
    b->wait_time = scorer_wait_time(in, w, size_gb);
    b->role_affinity = scorer_role_affinity(in, w, size_gb);
    b->availability_trend = scorer_availability(in, w);
    return b->thermal + b->memory_fit + b->queue_depth + b->wait_time +
           b->role_affinity + b->availability_trend;
}

/* scorer_context_fit() for one request and many entries: a division
 * each was a third of a ranking, and most entries of a model share their
 * context length. */
struct scorer_ctx_cache {
    uint32_t context_length; /* 0: empty */
    double fit;
};

static inline double
scorer_context_fit_cached(bool loaded, uint32_t context_length,
                          const struct scorer_request *req,
                          const struct scorer_weights *w,
                          struct scorer_ctx_cache *cache)
{
    if (cache == NULL || !loaded || context_length == 0)
        return scorer_context_fit(loaded, context_length, req, w);
    if (cache->context_length != context_length) {
        cache->fit = scorer_context_fit(true, context_length, req, w);
        cache->context_length = context_length;
    }
    return cache->fit;
}

/* The last three, from the entry's loaded, context_length and in_flight,
 * and the node's status (degraded) and scorer_slots() (slots). */
static inline __attribute__((always_inline)) double
scorer_signals_rest(bool loaded, uint32_t context_length, uint32_t in_flight,
                    bool degraded, uint32_t slots,
                    const struct scorer_request *req,
                    const struct scorer_weights *w, double prefix,
                    struct scorer_ctx_cache *cache, struct scorer_breakdown *b)
{
    b->context_fit =
        scorer_context_fit_cached(loaded, context_length, req, w, cache);
    b->health = degraded ? -w->degraded_penalty : 0;
    b->slot_free = scorer_slot_free(loaded, in_flight, slots, w);
    return prefix + b->context_fit + b->health + b->slot_free;
}

static inline __attribute__((always_inline)) void
scorer_signals(const struct scorer_in *in, const struct scorer_request *req,
               const struct scorer_weights *w, double median_bw, double size_gb,
               struct scorer_breakdown *b)
{
    double prefix = scorer_signals_fixed(in, req, w, median_bw, size_gb, b);

    b->total =
        scorer_signals_rest(in->e->loaded, in->e->context_length,
                            in->e->in_flight, in->n->status == SCORER_DEGRADED,
                            scorer_slots(in->n), req, w, prefix, NULL, b);
}

/* Whether the first six signals of e can be kept between requests: none
 * in flight or queued (the queue signals read the p75 and the median),
 * and not in the warm tier (it reads the clock). */
static inline bool
scorer_memoizable(const struct scorer_centry *e)
{
    return e->in_flight == 0 && e->queued == 0 && (e->loaded || !e->unloaded);
}

void
scorer_score_entry(const struct scorer_cnode *n, const struct scorer_centry *e,
                   double p75_ms, const struct scorer_request *req,
                   const struct scorer_weights *w, double median_bw,
                   double fleet_size, struct scorer_result *r)
{
    struct scorer_in in = {n, e, p75_ms};

    r->node = e->node;
    r->size_gb = scorer_entry_size(e, fleet_size);
    r->eliminated = scorer_eliminate(&in, r->size_gb);
    r->tiebreak = scorer_random(req->seed, e->node);
    r->in_flight = e->in_flight;
    scorer_signals(&in, req, w, median_bw, r->size_gb, &r->b);
}

/* scorer_cmp for eligible nodes only, on keys. */
static inline int
scorer_kcmp(const struct scorer_key *a, const struct scorer_key *b)
{
    if (a->total != b->total)
        return a->total > b->total ? -1 : 1;
    if (a->in_flight != b->in_flight)
        return a->in_flight < b->in_flight ? -1 : 1;
    if (a->tiebreak != b->tiebreak)
        return a->tiebreak < b->tiebreak ? -1 : 1;
    return a->node < b->node ? -1 : a->node > b->node ? 1 : 0;
}

/* The eligibility of e (marks aside) and the sum of its first six
 * signals, computed and, when it can be, kept in memo (when not NULL). */
static inline __attribute__((always_inline)) bool
scorer_fixed(const struct scorer_in *in, const struct scorer_request *req,
             const struct scorer_weights *w, double median_bw,
             double fleet_size, struct scorer_memo *memo, uint32_t stamp,
             scorer_p75_fn p75, void *p75_arg, double *prefix)
{
    const struct scorer_centry *e = in->e;
    double size = scorer_entry_size(e, fleet_size);
    struct scorer_breakdown b;

    if (scorer_eliminate(in, size) != NULL) {
        if (memo != NULL) /* marks aside: excluded ones never get here */
            *memo = (struct scorer_memo){.stamp = stamp, .node = e->node};
        return false;
    }
    if (e->in_flight > 0 && p75 != NULL) {
        struct scorer_in with_p75 = *in;

        with_p75.p75_ms = p75(p75_arg, e);
        *prefix = scorer_signals_fixed(&with_p75, req, w, median_bw, size, &b);
    } else {
        *prefix = scorer_signals_fixed(in, req, w, median_bw, size, &b);
    }
    if (memo != NULL && scorer_memoizable(e))
        *memo = (struct scorer_memo){
            .prefix = *prefix,
            .stamp = stamp,
            .node = e->node,
            .context_length = e->context_length,
            /* the node's part, marks aside (a request with marks reads
             * the node) */
            .flags =
                SCORER_MEMO_ELIGIBLE | (e->loaded ? SCORER_MEMO_LOADED : 0) |
                (in->n->status == SCORER_DEGRADED ? SCORER_MEMO_DEGRADED : 0),
        };
    return true;
}

/* The key of an entry remembered in m, for a request without marks: it
 * has nothing in flight (else it would not be remembered), so a slot is
 * free whatever the node's num_parallel. */
static inline __attribute__((always_inline)) double
scorer_total_memo(const struct scorer_memo *m, const struct scorer_request *req,
                  const struct scorer_weights *w,
                  struct scorer_ctx_cache *cache)
{
    struct scorer_breakdown b;

    return scorer_signals_rest((m->flags & SCORER_MEMO_LOADED) != 0,
                               m->context_length, 0,
                               (m->flags & SCORER_MEMO_DEGRADED) != 0, 1, req,
                               w, m->prefix, cache, &b);
}

size_t
scorer_rank(const struct scorer_cnode *nodes, const struct scorer_centry *ents,
            struct scorer_memo *memos, size_t n,
            const struct scorer_request *req, const struct scorer_weights *w,
            double median_bw, double fleet_size, uint32_t stamp, bool marks,
            scorer_p75_fn p75, void *p75_arg, struct scorer_key *keys,
            size_t *best_free, size_t *busy)
{
    size_t k = 0, best = SIZE_MAX, nbusy = 0;
    struct scorer_ctx_cache cache = {0, 0};

    if (stamp == 0)
        memos = NULL;
    for (size_t i = 0; i < n; i++) {
        struct scorer_memo *m = memos != NULL ? &memos[i] : NULL;
        const struct scorer_centry *e;
        struct scorer_in in;
        struct scorer_breakdown b;
        double prefix, total;
        uint32_t slots;

        if (m != NULL && m->stamp == stamp && !marks) {
            /* the common case: a few bytes of the entry, none of the
             * node */
            if (!(m->flags & SCORER_MEMO_ELIGIBLE))
                continue;
            keys[k] = (struct scorer_key){
                .total = scorer_total_memo(m, req, w, &cache),
                .tiebreak = scorer_random(req->seed, m->node),
                .node = m->node,
                .ent = (uint32_t)i,
                .slot_free = true,
            };
        } else {
            e = &ents[i];
            in = (struct scorer_in){&nodes[e->node], e, 0};
            if (in.n->marks & SCORER_MARK_EXCLUDED)
                continue; /* eliminated (offline, or excluded) */
            if (m != NULL && m->stamp == stamp) {
                if (!(m->flags & SCORER_MEMO_ELIGIBLE))
                    continue;
                prefix = m->prefix;
            } else if (!scorer_fixed(&in, req, w, median_bw, fleet_size, m,
                                     stamp, p75, p75_arg, &prefix)) {
                continue;
            }
            slots = scorer_slots(in.n);
            total =
                scorer_signals_rest(e->loaded, e->context_length, e->in_flight,
                                    in.n->status == SCORER_DEGRADED, slots, req,
                                    w, prefix, &cache, &b);
            keys[k] = (struct scorer_key){
                .total = total,
                .tiebreak = scorer_random(req->seed, e->node),
                .in_flight = e->in_flight,
                .node = e->node,
                .ent = (uint32_t)i,
                .slot_free = e->in_flight < slots,
            };
        }
        if (!keys[k].slot_free)
            nbusy++;
        else if (best == SIZE_MAX || scorer_kcmp(&keys[k], &keys[best]) < 0)
            best = k;
        k++;
    }
    *best_free = best;
    *busy = nbusy;
    return k;
}

/* Eligible before eliminated; then the higher total; then fewer requests
 * in flight; then the smaller random value; the index last, so the order
 * is total and qsort's instability cannot show. */
static int
scorer_cmp(const void *pa, const void *pb)
{
    const struct scorer_result *a = pa, *b = pb;
    bool ea = a->eliminated != NULL, eb = b->eliminated != NULL;

    if (ea != eb)
        return ea ? 1 : -1;
    if (!ea) {
        if (a->b.total != b->b.total)
            return a->b.total > b->b.total ? -1 : 1;
        if (a->in_flight != b->in_flight)
            return a->in_flight < b->in_flight ? -1 : 1;
        if (a->tiebreak != b->tiebreak)
            return a->tiebreak < b->tiebreak ? -1 : 1;
    }
    return a->node < b->node ? -1 : a->node > b->node ? 1 : 0;
}

static void
scorer_swap_res(struct scorer_result *a, struct scorer_result *b)
{
    struct scorer_result t = *a;

    *a = *b;
    *b = t;
}

/* Moves the k best of a[0..n) to a[0..k), in no order (quickselect;
 * scorer_cmp is a total order: the node index breaks every tie). */
static void
scorer_select_top(struct scorer_result *a, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, want = (ptrdiff_t)k - 1;

    while (lo < hi) {
        struct scorer_result pv = a[lo + (hi - lo) / 2];
        ptrdiff_t i = lo, j = hi;

        while (i <= j) {
            while (scorer_cmp(&a[i], &pv) < 0)
                i++;
            while (scorer_cmp(&a[j], &pv) > 0)
                j--;
            if (i <= j)
                scorer_swap_res(&a[i++], &a[j--]);
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
}

int
scorer_rank_cmp(const struct scorer_result *a, const struct scorer_result *b)
{
    return scorer_cmp(a, b);
}

int
scorer_key_cmp(const struct scorer_key *a, const struct scorer_key *b)
{
    return scorer_kcmp(a, b);
}

static inline void
scorer_swap_key(struct scorer_key *a, struct scorer_key *b)
{
    struct scorer_key t = *a;

    *a = *b;
    *b = t;
}

void
scorer_keys_top(struct scorer_key *a, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, want = (ptrdiff_t)k - 1;

    if (k > n)
        k = n;
    /* the k best to a[0..k), in no order (as scorer_select_top) */
    while (k < n && lo < hi) {
        struct scorer_key pv = a[lo + (hi - lo) / 2];
        ptrdiff_t i = lo, j = hi;

        while (i <= j) {
            while (scorer_kcmp(&a[i], &pv) < 0)
                i++;
            while (scorer_kcmp(&a[j], &pv) > 0)
                j--;
            if (i <= j)
                scorer_swap_key(&a[i++], &a[j--]);
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    /* then sorted: insertion sort, a few dozen keys */
    for (size_t i = 1; i < k; i++) {
        struct scorer_key t = a[i];
        size_t j = i;

        for (; j > 0 && scorer_kcmp(&t, &a[j - 1]) < 0; j--)
            a[j] = a[j - 1];
        a[j] = t;
    }
}

int
scorer_score(const struct scorer_node *nodes, size_t n,
             const struct scorer_request *req, const struct scorer_weights *w,
             struct scorer_result *out)
{
    double median_bw, fleet_size;
    int eligible = 0;

    if (req == NULL || req->model == NULL || w == NULL)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (nodes == NULL || out == NULL || n > (size_t)INT32_MAX)
        return -EINVAL;
    median_bw = scorer_median_bw(nodes, n, out);
    fleet_size = scorer_fleet_loaded_size(nodes, n, req->model);
    if (fleet_size <= 0)
        fleet_size = scorer_estimate_size_gb(req->model);
    /* eligible results from the front, eliminated ones from the back */
    for (size_t i = 0, back = n; i < n; i++) {
        struct scorer_result r;
        struct scorer_cnode cn;
        struct scorer_centry ce;

        scorer_entry_from_node(&nodes[i], i, req->model, &cn, &ce);
        scorer_score_entry(&cn, &ce, nodes[i].p75_ms, req, w, median_bw,
                           fleet_size, &r);
        out[r.eliminated == NULL ? (size_t)eligible++ : --back] = r;
    }
    for (size_t a = (size_t)eligible, b = n; a + 1 < b; a++, b--)
        scorer_swap_res(&out[a], &out[b - 1]); /* back to input order */
    if ((size_t)eligible > SCORER_SORTED) {
        scorer_select_top(out, (size_t)eligible, SCORER_SORTED);
        qsort(out, SCORER_SORTED, sizeof(*out), scorer_cmp);
    } else {
        qsort(out, (size_t)eligible, sizeof(*out), scorer_cmp);
    }
    return eligible;
}

/* ---- token estimate (reference §4.4) ---- */

int64_t
scorer_estimate_tokens_raw(size_t chars, size_t images)
{
    int64_t t = (int64_t)(chars / 4) + 150 * (int64_t)images;

    return t < 1 ? 1 : t;
}

/* Python's len(): code points, so count the bytes that start one. */
static size_t
scorer_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static void
scorer_count_parts(const cJSON *parts, size_t *chars, size_t *images)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, parts)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");

        if (!cJSON_IsString(type))
            continue;
        if (strcmp(type->valuestring, "text") == 0 && cJSON_IsString(text))
            *chars += scorer_utf8_len(text->valuestring);
        else if (strcmp(type->valuestring, "image_url") == 0)
            (*images)++;
    }
}

int64_t
scorer_estimate_tokens(const cJSON *messages)
{
    size_t chars = 0, images = 0;
    const cJSON *m;

    if (!cJSON_IsArray(messages))
        return scorer_estimate_tokens_raw(0, 0);
    cJSON_ArrayForEach(m, messages)
    {
        const cJSON *content, *imgs;

        if (!cJSON_IsObject(m))
            continue;
        content = cJSON_GetObjectItemCaseSensitive(m, "content");
        imgs = cJSON_GetObjectItemCaseSensitive(m, "images");
        if (cJSON_IsString(content))
            chars += scorer_utf8_len(content->valuestring);
        else if (cJSON_IsArray(content))
            scorer_count_parts(content, &chars, &images);
        if (cJSON_IsArray(imgs))
            images += (size_t)cJSON_GetArraySize(imgs);
        chars += 16; /* role and framing, as ollama-herd counts them */
    }
    return scorer_estimate_tokens_raw(chars, images);
}

/* ---- the trace's JSON ---- */

/* Rounded to 4 decimals, trailing zeros dropped, never "-0". */
static size_t
scorer_fmt_num(double v, char *out, size_t n)
{
    char tmp[32];
    size_t len = 0, k = 0;
    long long q, ip, fp;

    v = isfinite(v) ? round(v * 1e4) / 1e4 : 0;
    if (v == 0)
        v = 0;             /* turns -0 into 0 */
    if (fabs(v) >= 1e14) { /* beyond exact fixed point: the slow way */
        snprintf(out, n, "%.4f", v);
        len = strlen(out);
        while (len > 0 && out[len - 1] == '0')
            out[--len] = '\0';
        if (len > 0 && out[len - 1] == '.')
            out[--len] = '\0';
        return len;
    }
    /* Fixed point with 4 decimals, trailing zeros dropped: what "%.4f"
     * then trimming gives, without printf (it was most of a decision's
     * trace formatting). */
    q = llround(v * 1e4);
    if (q < 0)
        tmp[len++] = '-';
    ip = llabs(q) / 10000;
    fp = llabs(q) % 10000;
    do {
        out[k++] = (char)('0' + ip % 10); /* reversed */
        ip /= 10;
    } while (ip > 0 && k < 20);
    while (k > 0)
        tmp[len++] = out[--k];
    if (fp != 0) {
        int digits = 4;

        while (fp % 10 == 0) {
            fp /= 10;
            digits--;
        }
        tmp[len++] = '.';
        for (int d = digits - 1; d >= 0; d--) {
            tmp[len + (size_t)d] = (char)('0' + fp % 10);
            fp /= 10;
        }
        len += (size_t)digits;
    }
    if (len >= n)
        len = n - 1;
    memcpy(out, tmp, len); /* not snprintf: 10 numbers a candidate */
    out[len] = '\0';
    return len;
}

int
scorer_breakdown_json(const struct scorer_result *r, struct buf *b)
{
    const struct scorer_breakdown *s = &r->b;
#define KEY(k) k, sizeof(k) - 1
    const struct {
        const char *key;
        size_t kl;
        double v;
    } f[] = {
        {KEY("thermal"), s->thermal},
        {KEY("memory_fit"), s->memory_fit},
        {KEY("queue_depth"), s->queue_depth},
        {KEY("wait_time"), s->wait_time},
        {KEY("role_affinity"), s->role_affinity},
        {KEY("availability_trend"), s->availability_trend},
        {KEY("context_fit"), s->context_fit},
        {KEY("health"), s->health},
        {KEY("slot_free"), s->slot_free},
        {KEY("total"), s->total},
    };
#undef KEY
    char doc[1024], num[48];
    size_t len = 0;

    /* Built whole, then appended once, so b is unchanged on failure. */
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        size_t kl = f[i].kl, nl = scorer_fmt_num(f[i].v, num, sizeof(num));

        if (len + kl + nl + 4 >= sizeof(doc))
            return -E2BIG;
        doc[len++] = i == 0 ? '{' : ',';
        doc[len++] = '"';
        memcpy(doc + len, f[i].key, kl);
        len += kl;
        doc[len++] = '"';
        doc[len++] = ':';
        memcpy(doc + len, num, nl);
        len += nl;
    }
    /* Reasons are our own static identifiers: nothing to escape. */
    if (r->eliminated != NULL) {
        static const char key[] = ",\"eliminated\":\"";
        size_t rl = strlen(r->eliminated);

        if (len + sizeof(key) + rl + 2 >= sizeof(doc))
            return -E2BIG;
        memcpy(doc + len, key, sizeof(key) - 1);
        len += sizeof(key) - 1;
        memcpy(doc + len, r->eliminated, rl);
        len += rl;
        doc[len++] = '"';
    }
    doc[len++] = '}'; /* room left by the checks above */
    return buf_append(b, doc, len);
}
