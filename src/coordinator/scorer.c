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

/* Memory the node can give a model: what is free, capped by the
 * capacity learner's ceiling when it set one. */
static double
scorer_usable_gb(const struct scorer_node *nd)
{
    double avail = nd->mem_available_gb;

    if (nd->cap.present && nd->cap.ceiling_gb > 0 && nd->cap.ceiling_gb < avail)
        avail = nd->cap.ceiling_gb;
    return avail;
}

/* ---- stage 1: elimination (first matching rule names the reason) ---- */

static const char *
scorer_eliminate(const struct scorer_node *nd, const struct scorer_loaded *l,
                 bool on_disk, double size_gb)
{
    if (nd->status == SCORER_OFFLINE)
        return "offline";
    if (nd->excluded)
        return "excluded";
    if (!nd->has_ollama)
        return "no_ollama";
    if (nd->pressure == SCORER_PRESSURE_CRITICAL)
        return "memory_pressure_critical";
    if (nd->cap.present) {
        if (nd->cap.mode == SCORER_CAP_PAUSED)
            return "capacity_paused";
        if (nd->cap.mode == SCORER_CAP_BOOTSTRAP)
            return "capacity_bootstrap";
        if (nd->cap.availability_score < 0.2)
            return "capacity_low_availability";
    }
    if (l == NULL && !on_disk)
        return "model_not_on_node";
    /* Without a memory report there is nothing to compare against. */
    if (l == NULL && nd->mem_total_gb > 0 && scorer_usable_gb(nd) < size_gb)
        return "insufficient_memory";
    return NULL;
}

/* ---- stage 2: the signals ---- */

static double
scorer_thermal(const struct scorer_node *nd, const struct scorer_request *req,
               const struct scorer_weights *w, const struct scorer_loaded *l,
               bool on_disk)
{
    int64_t at;

    if (l != NULL)
        return w->model_hot;
    if (scorer_unloaded_at(nd, req->model, &at) &&
        (double)(req->now_ns - at) / 1e9 < w->warm_window_s)
        return w->model_warm;
    if (on_disk)
        return w->model_cold;
    return 0;
}

static double
scorer_memory_fit(const struct scorer_node *nd, const struct scorer_weights *w,
                  const struct scorer_loaded *l, double size_gb)
{
    double ratio;

    if (l != NULL)
        return w->memory_fit_max;
    if (size_gb <= 0 || nd->mem_total_gb <= 0)
        return 0;
    /* The cold tiers are fixed in ollama-herd; only the loaded value is a
     * setting. */
    ratio = scorer_usable_gb(nd) / size_gb;
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

static double
scorer_clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The router's own count: what runs on the node plus what waits for it. */
static double
scorer_depth(const struct scorer_node *nd)
{
    return (double)nd->in_flight + (double)nd->queued;
}

/* A fast node drains its queue sooner, so its depth counts for less:
 * depth / (bandwidth / fleet median), the ratio clamped to [0.25, 4]. */
static double
scorer_queue_depth(const struct scorer_node *nd, const struct scorer_weights *w,
                   double median_bw)
{
    double depth = scorer_depth(nd), eff = depth, pen;

    if (depth <= 0)
        return 0;
    if (w->queue_penalty_bandwidth_normalize && nd->bandwidth_gbs > 0 &&
        median_bw > 0)
        eff = depth / scorer_clamp(nd->bandwidth_gbs / median_bw, 0.25, 4.0);
    pen = w->queue_depth_penalty_per * eff;
    return -(pen < w->queue_depth_max_penalty ? pen
                                              : w->queue_depth_max_penalty);
}

/* Expected wait: depth times the p75 latency; without a measured p75,
 * the time to generate 100 tokens at a speed guessed from bandwidth (or
 * from the size alone). Uses the raw, not the normalised, depth. */
static double
scorer_wait_time(const struct scorer_node *nd, const struct scorer_weights *w,
                 double size_gb)
{
    double depth = scorer_depth(nd), p75 = nd->p75_ms, tps, wait_s;

    if (!w->wait_time || depth <= 0)
        return 0;
    if (p75 <= 0) {
        if (nd->bandwidth_gbs > 0)
            tps = fmax(10.0, 1.2 * nd->bandwidth_gbs / fmax(1.0, size_gb / 10));
        else
            tps = fmax(1.0, 100.0 / fmax(1.0, size_gb));
        p75 = 100.0 / tps * 1000.0;
    }
    wait_s = depth * p75 / 1000.0;
    return -fmin(w->wait_time_max_penalty, wait_s / 10.0);
}

static double
scorer_role_bandwidth(double bw, bool large, bool small)
{
    double bonus = fmin(25.0, 5.0 + bw / 40.0);

    if (large)
        return bonus;
    if (small)
        return fmax(3.0, 18.0 - 0.6 * bonus);
    return 0.6 * bonus;
}

/* Big models to big (or fast) machines, small models to small ones, so
 * the big machines stay free for what only they can run. */
static double
scorer_role_affinity(const struct scorer_node *nd,
                     const struct scorer_weights *w, double size_gb)
{
    bool large = size_gb > w->role_large_threshold_gb;
    bool small = size_gb < w->role_small_threshold_gb;
    double m = nd->mem_total_gb;

    if (w->bandwidth_aware && nd->bandwidth_gbs > 0)
        return scorer_role_bandwidth(nd->bandwidth_gbs, large, small);
    if (large)
        return m >= 128 ? 15.0 : m >= 32 ? 5.0 : 0;
    if (small)
        return m <= 32 ? 15.0 : m <= 128 ? 8.0 : 3.0;
    return 5.0;
}

static double
scorer_availability(const struct scorer_node *nd,
                    const struct scorer_weights *w)
{
    if (!nd->cap.present)
        return 0;
    return fmin(w->availability_trend_max,
                nd->cap.availability_score * w->availability_trend_max);
}

/* How well the loaded context window holds the prompt. Tiers are
 * fractions of the maximum (15 -> -15, 3, 7.5, 12, 15). */
static double
scorer_context_fit(const struct scorer_request *req,
                   const struct scorer_weights *w,
                   const struct scorer_loaded *l)
{
    double r, max = w->context_fit_max;

    if (req->estimated_tokens <= 0 || l == NULL || l->context_length == 0)
        return 0;
    r = (double)l->context_length / (double)req->estimated_tokens;
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

/* Ours: a loaded model with an idle slot answers at once; one whose
 * slots are all busy makes the request wait in our queue. */
static double
scorer_slot_free(const struct scorer_node *nd, const struct scorer_weights *w,
                 const struct scorer_loaded *l)
{
    uint32_t slots = nd->num_parallel > 0 ? nd->num_parallel : 1;

    return l != NULL && nd->in_flight < slots ? w->slot_free_bonus : 0;
}

/* ---- the fleet's median bandwidth ---- */

/*
 * The k-th smallest of a[0..n) (quickselect, median-of-three pivot),
 * reordering a. The values live in the tiebreak field of the results
 * array, which is scratch until scorer_score() fills it: that keeps this
 * module free of allocation and of a fixed node limit.
 */
#define SCR(i) (a[(i)].tiebreak)

static void
scorer_swap(struct scorer_result *a, size_t i, size_t j)
{
    double t = a[i].tiebreak;

    a[i].tiebreak = a[j].tiebreak;
    a[j].tiebreak = t;
}

/* Three-way partitioning, so that a fleet of identical machines (all
 * values equal, the common case) takes one pass, not n. On return every
 * value left of k is <= the k-th. */
static double
scorer_select(struct scorer_result *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;

    while (lo < hi) {
        double p = SCR(lo + (hi - lo) / 2);
        size_t lt = lo, i = lo, gt = hi + 1;

        /* [lo, lt) < p, [lt, i) == p, [gt, hi] > p */
        while (i < gt) {
            if (SCR(i) < p)
                scorer_swap(a, lt++, i++);
            else if (SCR(i) > p)
                scorer_swap(a, i, --gt);
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

/* Median bandwidth over the nodes that are not offline and report one
 * (the mean of the two middle values for an even count); 0 if none. */
static double
scorer_median_bw(const struct scorer_node *nodes, size_t n,
                 struct scorer_result *a)
{
    size_t m = 0;
    double hi, lo;

    for (size_t i = 0; i < n; i++)
        if (nodes[i].status != SCORER_OFFLINE && nodes[i].bandwidth_gbs > 0)
            SCR(m++) = nodes[i].bandwidth_gbs;
    if (m == 0)
        return 0;
    hi = scorer_select(a, m, m / 2);
    if (m % 2 == 1)
        return hi;
    /* After selection everything below m/2 is <= hi; its maximum is the
     * other middle value. */
    lo = SCR(0);
    for (size_t i = 1; i < m / 2; i++)
        lo = fmax(lo, SCR(i));
    return (lo + hi) / 2.0;
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

static void
scorer_one(const struct scorer_node *nodes, size_t i,
           const struct scorer_request *req, const struct scorer_weights *w,
           double median_bw, double fleet_size, struct scorer_result *r)
{
    const struct scorer_node *nd = &nodes[i];
    const struct scorer_loaded *l = scorer_find_loaded(nd, req->model);
    bool on_disk = scorer_is_available(nd, req->model);
    struct scorer_breakdown *b = &r->b;

    /* The size as this node has it loaded, else as any node has it, else
     * from the name (computed once by the caller). */
    r->node = i;
    r->size_gb = l != NULL && l->size_gb > 0 ? l->size_gb : fleet_size;
    r->eliminated = scorer_eliminate(nd, l, on_disk, r->size_gb);
    r->tiebreak = scorer_random(req->seed, i);
    r->in_flight = nd->in_flight;
    b->thermal = scorer_thermal(nd, req, w, l, on_disk);
    b->memory_fit = scorer_memory_fit(nd, w, l, r->size_gb);
    b->queue_depth = scorer_queue_depth(nd, w, median_bw);
    b->wait_time = scorer_wait_time(nd, w, r->size_gb);
    b->role_affinity = scorer_role_affinity(nd, w, r->size_gb);
    b->availability_trend = scorer_availability(nd, w);
    b->context_fit = scorer_context_fit(req, w, l);
    b->health = nd->status == SCORER_DEGRADED ? -w->degraded_penalty : 0;
    b->slot_free = scorer_slot_free(nd, w, l);
    b->total = b->thermal + b->memory_fit + b->queue_depth + b->wait_time +
               b->role_affinity + b->availability_trend + b->context_fit +
               b->health + b->slot_free;
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

        scorer_one(nodes, i, req, w, median_bw, fleet_size, &r);
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
static void
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
        return;
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
    tmp[len] = '\0';
    snprintf(out, n, "%s", tmp);
}

int
scorer_breakdown_json(const struct scorer_result *r, struct buf *b)
{
    const struct scorer_breakdown *s = &r->b;
    const struct {
        const char *key;
        double v;
    } f[] = {
        {"thermal", s->thermal},
        {"memory_fit", s->memory_fit},
        {"queue_depth", s->queue_depth},
        {"wait_time", s->wait_time},
        {"role_affinity", s->role_affinity},
        {"availability_trend", s->availability_trend},
        {"context_fit", s->context_fit},
        {"health", s->health},
        {"slot_free", s->slot_free},
        {"total", s->total},
    };
    char doc[1024], num[48];
    size_t len = 0;
    int k;

    /* Built whole, then appended once, so b is unchanged on failure. */
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        size_t kl = strlen(f[i].key), nl;

        scorer_fmt_num(f[i].v, num, sizeof(num));
        nl = strlen(num);
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
    if (r->eliminated != NULL)
        k = snprintf(doc + len, sizeof(doc) - len, ",\"eliminated\":\"%s\"}",
                     r->eliminated);
    else
        k = snprintf(doc + len, sizeof(doc) - len, "}");
    if (k < 0 || (size_t)k >= sizeof(doc) - len)
        return -E2BIG;
    return buf_append(b, doc, len + (size_t)k);
}
