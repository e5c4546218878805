/*
 * test_scorer.c - the coordinator's scorer on tables: every behaviour of
 * ollama-herd's test_scorer and test_scorer_bandwidth (reference §10),
 * the capacity rules of test_capacity, and our deliberate differences
 * (parsed model sizes, the degraded penalty, the slot term, tie-breaks,
 * the JSON breakdown).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "scorer.h"

#define NS(s)  ((int64_t)(s)*1000000000LL)
#define NOW_NS NS(100000)

#define assert_near(a, b, eps)                                                 \
    assert_true(fabs((double)(a) - (double)(b)) <= (eps))

/* An online node with Ollama, no models and no queue. */
static struct scorer_node
node(const char *id, double total_gb, double avail_gb)
{
    return (struct scorer_node){
        .id = id,
        .status = SCORER_ONLINE,
        .has_ollama = true,
        .pressure = SCORER_PRESSURE_NORMAL,
        .mem_total_gb = total_gb,
        .mem_available_gb = avail_gb,
        .num_parallel = 1,
    };
}

static struct scorer_request
request(const char *model, int64_t tokens)
{
    return (struct scorer_request){.model = model,
                                   .estimated_tokens = tokens,
                                   .now_ns = NOW_NS,
                                   .seed = 7};
}

static struct scorer_weights
weights(void)
{
    struct scorer_weights w;

    scorer_weights_default(&w);
    return w;
}

/* The result for nodes[idx], wherever the sort put it. */
static const struct scorer_result *
result_of(const struct scorer_result *out, size_t n, size_t idx)
{
    for (size_t i = 0; i < n; i++)
        if (out[i].node == idx)
            return &out[i];
    fail_msg("node %zu missing from the results", idx);
    return NULL;
}

static const char *const avail_model[] = {"llama3.2:3b"};

/* ---- reference test_scorer ---- */

static void
test_no_nodes(void **state)
{
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();

    (void)state;
    assert_int_equal(scorer_score(NULL, 0, &r, &w, NULL), 0);
    assert_int_equal(scorer_score(NULL, 1, &r, &w, NULL), -EINVAL);
    assert_int_equal(scorer_score(NULL, 0, NULL, &w, NULL), -EINVAL);
}

static void
test_hot_beats_cold(void **state)
{
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[2] = {node("cold", 64, 44), node("hot", 64, 44)};
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    n[0].available = avail_model;
    n[0].n_available = 1;
    n[1].loaded = &l;
    n[1].n_loaded = 1;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_int_equal(out[0].node, 1);
    assert_true(out[0].b.thermal == 50.0);
    assert_true(out[1].b.thermal == 10.0);
    assert_true(out[0].b.total > out[1].b.total);
}

/* Unloaded 60 s ago: warm (30); 1801 s ago: back to cold (10). */
static void
test_warm_after_unload(void **state)
{
    static const int64_t ago_s[] = {60, 1799, 1801};
    static const double want[] = {30.0, 30.0, 10.0};
    struct scorer_weights w = weights();
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        struct scorer_unloaded u = {"llama3.2:3b", NOW_NS - NS(ago_s[i])};
        struct scorer_node n = node("a", 64, 44);
        struct scorer_result out[1];

        n.available = avail_model;
        n.n_available = 1;
        n.unloaded = &u;
        n.n_unloaded = 1;
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), 1);
        assert_true(out[0].b.thermal == want[i]);
    }
}

/* One node per row; the expected elimination reason (NULL: eligible). */
static const struct elim_case {
    const char *model;
    int status, pressure, cap_mode; /* cap_mode -1: no capacity */
    bool ollama, excluded, listed;
    double avail, cap_score, ceiling;
    const char *reason;
} elim_cases[] = {
    {"llama3.2:3b", SCORER_OFFLINE, 0, -1, true, false, true, 40, 0, 0,
     "offline"},
    {"llama3.2:3b", SCORER_ONLINE, 0, -1, true, true, true, 40, 0, 0,
     "excluded"},
    {"llama3.2:3b", SCORER_ONLINE, 0, -1, false, false, true, 40, 0, 0,
     "no_ollama"},
    {"llama3.2:3b", SCORER_ONLINE, SCORER_PRESSURE_CRITICAL, -1, true, false,
     true, 40, 0, 0, "memory_pressure_critical"},
    {"llama3.2:3b", SCORER_ONLINE, SCORER_PRESSURE_WARN, -1, true, false, true,
     40, 0, 0, NULL},
    {"llama3.2:3b", SCORER_ONLINE, 0, SCORER_CAP_PAUSED, true, false, true, 40,
     0.9, 0, "capacity_paused"},
    {"llama3.2:3b", SCORER_ONLINE, 0, SCORER_CAP_BOOTSTRAP, true, false, true,
     40, 0.9, 0, "capacity_bootstrap"},
    {"llama3.2:3b", SCORER_ONLINE, 0, SCORER_CAP_LEARNED_LOW, true, false, true,
     40, 0.19, 8, "capacity_low_availability"},
    {"llama3.2:3b", SCORER_ONLINE, 0, SCORER_CAP_LEARNED_LOW, true, false, true,
     40, 0.2, 8, NULL},
    {"llama3.2:3b", SCORER_ONLINE, 0, -1, true, false, false, 40, 0, 0,
     "model_not_on_node"},
    /* 2 GB free and a 70b model (~42 GB). */
    {"llama3.3:70b", SCORER_ONLINE, 0, -1, true, false, true, 2, 0, 0,
     "insufficient_memory"},
    /* deepseek-r1:671b (~400 GB) on 172 GB free. */
    {"deepseek-r1:671b", SCORER_ONLINE, 0, -1, true, false, true, 172, 0, 0,
     "insufficient_memory"},
    /* The capacity ceiling caps the free memory: 64 free, 8 usable. */
    {"gemma3:27b", SCORER_ONLINE, 0, SCORER_CAP_LEARNED_LOW, true, false, true,
     64, 0.3, 8, "insufficient_memory"},
    {"gemma3:27b", SCORER_ONLINE, 0, SCORER_CAP_FULL, true, false, true, 64,
     0.9, 51.2, NULL},
    {"gemma3:27b", SCORER_ONLINE, 0, -1, true, false, true, 64, 0, 0, NULL},
};

static void
test_eliminations(void **state)
{
    const struct elim_case *t = elim_cases;
    struct scorer_weights w = weights();

    (void)state;
    for (size_t i = 0; i < sizeof(elim_cases) / sizeof(elim_cases[0]); i++) {
        const char *names[1] = {t[i].model};
        struct scorer_node n = node("a", 192, t[i].avail);
        struct scorer_request r = request(t[i].model, 0);
        struct scorer_result out[1];

        n.status = (enum scorer_status)t[i].status;
        n.pressure = (enum scorer_pressure)t[i].pressure;
        n.has_ollama = t[i].ollama;
        n.excluded = t[i].excluded;
        n.available = names;
        n.n_available = t[i].listed ? 1 : 0;
        if (t[i].cap_mode >= 0) {
            n.cap.present = true;
            n.cap.mode = (enum scorer_cap_mode)t[i].cap_mode;
            n.cap.availability_score = t[i].cap_score;
            n.cap.ceiling_gb = t[i].ceiling;
        }
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), t[i].reason ? 0 : 1);
        if (t[i].reason == NULL)
            assert_null(out[0].eliminated);
        else
            assert_string_equal(out[0].eliminated, t[i].reason);
    }
}

/* An eliminated node keeps its reason and a full breakdown, and comes
 * after every eligible node whatever its total. */
static void
test_eliminated_keep_breakdown(void **state)
{
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[2] = {node("gone", 64, 44), node("cold", 8, 6)};
    struct scorer_request r = request("llama3.2:3b", 100);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    n[0].status = SCORER_OFFLINE;
    n[0].loaded = &l;
    n[0].n_loaded = 1;
    n[1].available = avail_model;
    n[1].n_available = 1;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 1);
    assert_int_equal(out[0].node, 1);
    assert_null(out[0].eliminated);
    assert_int_equal(out[1].node, 0);
    assert_string_equal(out[1].eliminated, "offline");
    assert_true(out[1].b.thermal == 50.0);
    assert_true(out[1].b.memory_fit == 20.0);
    assert_true(out[1].b.context_fit == 15.0);
    assert_true(out[1].b.slot_free == 10.0);
    assert_true(out[1].b.total > out[0].b.total);
}

/* Signal 3 without bandwidth: -min(30, 6 * (in_flight + queued)). */
static void
test_queue_depth(void **state)
{
    static const struct {
        uint32_t in_flight, queued;
        double want;
    } t[] = {
        {0, 0, 0}, {1, 0, -6}, {1, 1, -12}, {2, 3, -30}, {4, 96, -30},
    };
    struct scorer_weights w = weights();
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_node n[2] = {node("busy", 64, 44), node("idle", 64, 44)};
        struct scorer_result out[2];

        for (size_t j = 0; j < 2; j++) {
            n[j].available = avail_model;
            n[j].n_available = 1;
        }
        n[0].in_flight = t[i].in_flight;
        n[0].queued = t[i].queued;
        assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
        assert_true(result_of(out, 2, 0)->b.queue_depth == t[i].want);
        if (t[i].want < 0) {
            /* The empty node wins. */
            assert_int_equal(out[0].node, 1);
            assert_true(result_of(out, 2, 1)->b.queue_depth == 0);
        }
    }
}

/* Signal 2 for a cold 10 GB model (its size known from another node),
 * and for a loaded one. */
static void
test_memory_fit(void **state)
{
    static const struct {
        double avail, want;
    } t[] = {
        {25, 20}, {20.5, 20}, {20, 15}, {16, 15}, {13, 8}, {10, 3}, {9.9, 0},
    };
    struct scorer_loaded l = {"mistral-nemo:latest", 10.0, 4096};
    struct scorer_weights w = weights();
    struct scorer_request r = request("mistral-nemo:latest", 0);
    const char *const names[] = {"mistral-nemo:latest"};

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_node n[2] = {node("elsewhere", 64, 44),
                                   node("a", 64, t[i].avail)};
        struct scorer_result out[2];

        n[0].status = SCORER_OFFLINE;
        n[0].loaded = &l;
        n[0].n_loaded = 1;
        n[1].available = names;
        n[1].n_available = 1;
        (void)scorer_score(n, 2, &r, &w, out);
        assert_true(result_of(out, 2, 1)->b.memory_fit == t[i].want);
        assert_true(result_of(out, 2, 1)->size_gb == 10.0);
    }
}

static void
test_memory_fit_bigger_node(void **state)
{
    const char *const names[] = {"qwen3:14b"};
    struct scorer_node n[2] = {node("small", 16, 10), node("big", 128, 100)};
    struct scorer_request r = request("qwen3:14b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    for (size_t j = 0; j < 2; j++) {
        n[j].available = names;
        n[j].n_available = 1;
    }
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_true(result_of(out, 2, 1)->b.memory_fit >
                result_of(out, 2, 0)->b.memory_fit);
    assert_int_equal(out[0].node, 1);
}

/* Signal 5, memory tiers (no bandwidth known). */
static void
test_role_affinity_tiers(void **state)
{
    static const struct {
        double size, total, want;
    } t[] = {
        {40, 192, 15}, {40, 128, 15}, {40, 64, 5},  {40, 16, 0},
        {4, 16, 15},   {4, 32, 15},   {4, 64, 8},   {4, 192, 3},
        {10, 16, 5},   {10, 192, 5},  {20, 192, 5}, {8, 16, 5},
    };
    struct scorer_weights w = weights();
    struct scorer_request r = request("m:latest", 0);
    const char *const names[] = {"m:latest"};

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_loaded l = {"m:latest", t[i].size, 4096};
        struct scorer_node n = node("a", t[i].total, t[i].total);
        struct scorer_result out[1];

        n.loaded = &l;
        n.n_loaded = 1;
        n.available = names;
        n.n_available = 1;
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), 1);
        assert_true(out[0].b.role_affinity == t[i].want);
    }
}

/* A large model prefers the big node, a small one the small node. */
static void
test_role_affinity_direction(void **state)
{
    static const char *const models[] = {"llama3.3:70b", "llama3.2:3b"};
    struct scorer_weights w = weights();

    (void)state;
    for (size_t k = 0; k < 2; k++) {
        const char *names[1] = {models[k]};
        struct scorer_node n[2] = {node("big", 192, 150),
                                   node("small", 16, 12)};
        struct scorer_request r = request(models[k], 0);
        struct scorer_result out[2];
        double big, small;

        for (size_t j = 0; j < 2; j++) {
            n[j].available = names;
            n[j].n_available = 1;
        }
        (void)scorer_score(n, 2, &r, &w, out);
        big = result_of(out, 2, 0)->b.role_affinity;
        small = result_of(out, 2, 1)->b.role_affinity;
        if (k == 0)
            assert_true(big >= small);
        else
            assert_true(small >= big);
    }
}

static void
test_sorted_descending(void **state)
{
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[5] = {node("a", 16, 4), node("b", 64, 44),
                               node("c", 32, 20), node("d", 128, 90),
                               node("e", 8, 3)};
    struct scorer_request r = request("llama3.2:3b", 500);
    struct scorer_weights w = weights();
    struct scorer_result out[5];

    (void)state;
    for (size_t j = 0; j < 5; j++) {
        n[j].available = avail_model;
        n[j].n_available = 1;
        n[j].in_flight = (uint32_t)(j % 3);
    }
    n[2].loaded = &l;
    n[2].n_loaded = 1;
    assert_int_equal(scorer_score(n, 5, &r, &w, out), 5);
    assert_int_equal(out[0].node, 2);
    for (size_t i = 0; i + 1 < 5; i++)
        assert_true(out[i].b.total >= out[i + 1].b.total);
}

/* Signal 7: context length of the loaded model over the estimate. */
static void
test_context_fit(void **state)
{
    static const struct {
        uint32_t ctx;
        int64_t tokens;
        bool loaded;
        double want;
    } t[] = {
        {262144, 5000, true, 15},   {8192, 5000, true, 7.5},
        {4096, 10000, true, -15},   {8192, 0, true, 0},
        {8192, 5000, false, 0},     {0, 5000, true, 0},
        {8192, 100, true, 15},      {131072, 100, true, 15},
        {131072, 50000, true, 7.5}, {8192, 50000, true, -15},
        {6000, 5000, true, 3},      {20000, 5000, true, 12},
        {5000, 5000, true, 3},      {40000, 5000, true, 15},
    };
    struct scorer_weights w = weights();

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_loaded l = {"qwen3:8b", 5.0, t[i].ctx};
        const char *const names[] = {"qwen3:8b"};
        struct scorer_node n = node("a", 64, 40);
        struct scorer_request r = request("qwen3:8b", t[i].tokens);
        struct scorer_result out[1];

        n.available = names;
        n.n_available = 1;
        if (t[i].loaded) {
            n.loaded = &l;
            n.n_loaded = 1;
        }
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), 1);
        assert_true(out[0].b.context_fit == t[i].want);
    }
}

static void
test_estimate_tokens(void **state)
{
    static const struct {
        const char *json;
        int64_t want;
    } t[] = {
        /* (11 + 16) / 4 */
        {"[{\"role\":\"user\",\"content\":\"Hello world\"}]", 6},
        {"[]", 1},
        {"{}", 1},
        {"[{\"role\":\"assistant\",\"content\":null}]", 4},
        /* "héllo wörld": 11 code points, 13 bytes */
        {"[{\"role\":\"user\",\"content\":\"h\\u00e9llo w\\u00f6rld\"}]", 6},
        /* OpenAI parts: 4 + 4 chars of text, one image */
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
         "\"abcd\"},"
         "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}},"
         "{\"type\":\"text\",\"text\":\"efgh\"}]}]",
         156},
        /* Ollama images: two */
        {"[{\"role\":\"user\",\"content\":\"abcd\",\"images\":[\"a\",\"b\"]}]",
         305},
        /* two messages: (16 + 16 + 8) / 4 */
        {"[{\"role\":\"system\",\"content\":\"\"},"
         "{\"role\":\"user\",\"content\":\"12345678\"}]",
         10},
    };
    char big[4000 + 64];
    cJSON *j;

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        j = cJSON_Parse(t[i].json);
        assert_non_null(j);
        assert_int_equal(scorer_estimate_tokens(j), t[i].want);
        cJSON_Delete(j);
    }
    assert_int_equal(scorer_estimate_tokens(NULL), 1);
    /* 4000 characters: (4000 + 16) / 4 = 1004, within the reference's
     * 900..1100. */
    memset(big, 'x', sizeof(big));
    j = cJSON_CreateArray();
    big[4000] = '\0';
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", big);
    cJSON_AddItemToArray(j, m);
    assert_int_equal(scorer_estimate_tokens(j), 1004);
    cJSON_Delete(j);
    assert_int_equal(scorer_estimate_tokens_raw(0, 0), 1);
    assert_int_equal(scorer_estimate_tokens_raw(400, 2), 400);
}

/* Signal 4: depth * p75 / 1000 s, a tenth of that in points, cap 25. */
static void
test_wait_time(void **state)
{
    static const struct {
        uint32_t in_flight, queued;
        double p75, want;
        bool enabled;
    } t[] = {
        {3, 0, 5000, -1.5, true}, {0, 0, 5000, 0, true},
        {1, 2, 5000, -1.5, true}, {3, 0, 5000, 0, false},
        {3, 0, 1e6, -25, true},
    };
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_weights w = weights();
        struct scorer_node n = node("a", 64, 44);
        struct scorer_result out[1];

        w.wait_time = t[i].enabled;
        n.available = avail_model;
        n.n_available = 1;
        n.in_flight = t[i].in_flight;
        n.queued = t[i].queued;
        n.p75_ms = t[i].p75;
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), 1);
        assert_near(out[0].b.wait_time, t[i].want, 1e-12);
    }
}

/* test_capacity's scorer cases: the trend bonus is score * 10, higher
 * availability scores higher, no capacity data scores 0. */
static void
test_capacity_trend(void **state)
{
    static const struct {
        bool present;
        double score, want;
    } t[] = {{false, 0, 0}, {true, 0.5, 5}, {true, 0.9, 9}, {true, 1.0, 10}};
    struct scorer_weights w = weights();
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_node n = node("a", 64, 44);
        struct scorer_result out[1];

        n.available = avail_model;
        n.n_available = 1;
        n.cap.present = t[i].present;
        n.cap.mode = SCORER_CAP_LEARNED_MEDIUM;
        n.cap.availability_score = t[i].score;
        assert_int_equal(scorer_score(&n, 1, &r, &w, out), 1);
        assert_near(out[0].b.availability_trend, t[i].want, 1e-12);
    }
}

/* ---- reference test_scorer_bandwidth ---- */

/* Two nodes with the same memory, one model on disk on both. */
static void
bw_pair(struct scorer_node n[2], const char *const *names, double bw0,
        double bw1)
{
    n[0] = node("ultra", 192, 150);
    n[1] = node("max", 192, 150);
    n[0].bandwidth_gbs = bw0;
    n[1].bandwidth_gbs = bw1;
    for (size_t j = 0; j < 2; j++) {
        n[j].available = names;
        n[j].n_available = 1;
    }
}

static void
test_bw_big_model_prefers_fast(void **state)
{
    const char *const names[] = {"llama3.3:70b"};
    struct scorer_node n[2];
    struct scorer_request r = request("llama3.3:70b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    bw_pair(n, names, 800, 400);
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_int_equal(out[0].node, 0);
    assert_true(result_of(out, 2, 0)->b.role_affinity == 25.0);
    assert_true(result_of(out, 2, 1)->b.role_affinity == 15.0);
}

/* Unknown bandwidth, or the flag off: the memory tiers (192 GB: 15). */
static void
test_bw_fallback_to_tiers(void **state)
{
    const char *const names[] = {"llama3.3:70b"};
    struct scorer_node n[2];
    struct scorer_request r = request("llama3.3:70b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    bw_pair(n, names, 0, 0);
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(out[0].b.role_affinity == 15.0);
    assert_true(out[1].b.role_affinity == 15.0);
    bw_pair(n, names, 800, 400);
    w.bandwidth_aware = false;
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(out[0].b.role_affinity == 15.0);
    assert_true(out[1].b.role_affinity == 15.0);
}

/* Small: max(3, 18 - 0.6 * bonus): 800 -> 3, 400 -> 9; mid: 0.6 * bonus. */
static void
test_bw_small_model_prefers_slow(void **state)
{
    const char *const small[] = {"llama3.2:3b"};
    const char *const mid[] = {"qwen3:14b"};
    struct scorer_node n[2];
    struct scorer_weights w = weights();
    struct scorer_result out[2];
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    bw_pair(n, small, 800, 400);
    (void)scorer_score(n, 2, &r, &w, out);
    assert_int_equal(out[0].node, 1);
    assert_true(result_of(out, 2, 0)->b.role_affinity == 3.0);
    assert_true(result_of(out, 2, 1)->b.role_affinity == 9.0);
    bw_pair(n, mid, 800, 400);
    r.model = "qwen3:14b";
    (void)scorer_score(n, 2, &r, &w, out);
    assert_near(result_of(out, 2, 0)->b.role_affinity, 15.0, 1e-12);
    assert_near(result_of(out, 2, 1)->b.role_affinity, 9.0, 1e-12);
}

static void
test_bw_bonus_clamped(void **state)
{
    const char *const names[] = {"llama3.3:70b"};
    struct scorer_node n[2];
    struct scorer_request r = request("llama3.3:70b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    bw_pair(n, names, 2000, 100);
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(result_of(out, 2, 0)->b.role_affinity == 25.0);
    assert_true(result_of(out, 2, 1)->b.role_affinity == 7.5);
}

/* A big model loaded on a fast studio (4 slots) and an M3 Max laptop. */
static void
studio_and_laptop(struct scorer_node n[2], const struct scorer_loaded *l)
{
    n[0] = node("studio", 512, 400);
    n[1] = node("macbook", 128, 80);
    n[0].bandwidth_gbs = 800;
    n[1].bandwidth_gbs = 400;
    n[0].num_parallel = 4;
    n[1].num_parallel = 2;
    for (size_t j = 0; j < 2; j++) {
        n[j].loaded = l;
        n[j].n_loaded = 1;
    }
}

static void
test_bw_queue_studio_vs_laptop(void **state)
{
    struct scorer_loaded l = {"llama3.3:70b", 40.0, 8192};
    struct scorer_node n[2];
    struct scorer_request r = request("llama3.3:70b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    studio_and_laptop(n, &l);
    n[0].in_flight = 2;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_int_equal(out[0].node, 0);
    /* median 600: 2 / (800/600) = 1.5 deep -> -9 */
    assert_near(result_of(out, 2, 0)->b.queue_depth, -9.0, 1e-9);
    n[0].in_flight = 4;
    n[0].queued = 16;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_int_equal(out[0].node, 1);
    assert_true(result_of(out, 2, 0)->b.queue_depth == -30.0);
}

/* The median ignores offline nodes and unknown bandwidths; the ratio is
 * clamped to [0.25, 4]; no bandwidth means the plain penalty. */
static void
test_bw_queue_normalisation(void **state)
{
    static const struct {
        double bw[4]; /* node 3 is offline */
        double want0; /* node 0 at depth 1 */
    } t[] = {
        {{100, 200, 900, 10000}, -12}, /* median 200: eff 2 */
        {{100, 300, 0, 10000}, -12},   /* median 200 (even count) */
        {{10, 1000, 1000, 1}, -24},    /* ratio 0.01 -> 0.25: eff 4 */
        {{8000, 1000, 1000, 1}, -1.5}, /* ratio 8 -> 4: eff 0.25 */
        {{0, 800, 400, 1}, -6},        /* unknown: plain */
        {{400, 400, 400, 1}, -6},      /* all equal: ratio 1 */
    };
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_node n[4];
        struct scorer_result out[4];

        for (size_t j = 0; j < 4; j++) {
            n[j] = node("x", 64, 44);
            n[j].bandwidth_gbs = t[i].bw[j];
            n[j].available = avail_model;
            n[j].n_available = 1;
        }
        n[3].status = SCORER_OFFLINE;
        n[0].in_flight = 1;
        (void)scorer_score(n, 4, &r, &w, out);
        assert_near(result_of(out, 4, 0)->b.queue_depth, t[i].want0, 1e-9);
    }
}

static void
test_bw_no_bandwidth_plain_penalty(void **state)
{
    struct scorer_node n[2];
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    bw_pair(n, avail_model, 0, 0);
    n[0].queued = 5;
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(result_of(out, 2, 0)->b.queue_depth == -30.0);
    /* The flag off: the same, bandwidth or not. */
    bw_pair(n, avail_model, 800, 100);
    n[0].queued = 2;
    w.queue_penalty_bandwidth_normalize = false;
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(result_of(out, 2, 0)->b.queue_depth == -12.0);
}

/* Without a measured p75 the wait is guessed from bandwidth: a slow node
 * makes a queued request wait longer. 40 GB at 800 GB/s: 240 tok/s, 100
 * tokens in 416.7 ms; at 100 GB/s: 30 tok/s, 3333 ms. Depth 3. */
static void
test_bw_cold_wait_slower_node(void **state)
{
    struct scorer_loaded l = {"llama3.3:70b", 40.0, 8192};
    const char *const names[] = {"llama3.3:70b"};
    struct scorer_node n[3];
    struct scorer_request r = request("llama3.3:70b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[3];

    (void)state;
    bw_pair(n, names, 800, 100);
    n[2] = node("sizer", 64, 44);
    n[2].status = SCORER_OFFLINE;
    n[2].loaded = &l;
    n[2].n_loaded = 1;
    n[0].queued = 3;
    n[1].queued = 3;
    (void)scorer_score(n, 3, &r, &w, out);
    assert_near(result_of(out, 3, 0)->b.wait_time, -0.125, 1e-9);
    assert_near(result_of(out, 3, 1)->b.wait_time, -1.0, 1e-9);
    /* No bandwidth: max(1, 100 / 40) = 2.5 tok/s, 40 s per 100 tokens. */
    n[1].bandwidth_gbs = 0;
    (void)scorer_score(n, 3, &r, &w, out);
    assert_near(result_of(out, 3, 1)->b.wait_time, -12.0, 1e-9);
}

/* Twenty requests in a row, each adding to its winner's in-flight count:
 * the studio takes most, the laptop some. */
static void
test_bw_sequential_picks(void **state)
{
    struct scorer_loaded l = {"llama3.3:70b", 40.0, 8192};
    struct scorer_node n[2];
    struct scorer_weights w = weights();
    struct scorer_result out[2];
    int wins[2] = {0, 0};

    (void)state;
    studio_and_laptop(n, &l);
    for (uint64_t i = 0; i < 20; i++) {
        struct scorer_request r = request("llama3.3:70b", 0);

        r.seed = i;
        assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
        wins[out[0].node]++;
        n[out[0].node].in_flight++;
    }
    assert_true(wins[0] > 10);
    assert_true(wins[1] >= 1);
    assert_int_equal(wins[0] + wins[1], 20);
}

/* ---- our differences ---- */

static void
test_size_estimate(void **state)
{
    static const struct {
        const char *name;
        double want;
    } t[] = {
        {"gemma3:27b", 27 * 4.85 / 8},    /* ~16.4, not 5 */
        {"qwen3:30b-a3b", 30 * 4.85 / 8}, /* ~18.2, not 2.5 */
        {"qwen3:30b-a3b-instruct-2507-q8_0", 30 * 8.5 / 8},
        {"mixtral:8x7b", 56 * 4.85 / 8},
        {"mixtral:8x22b-instruct-q4_0", 176 * 4.55 / 8},
        {"qwen2.5:0.5b", 0.5 * 4.85 / 8},
        {"qwen3-embedding:567m", 0.567 * 16 / 8},
        {"granite-tiny:567m", 0.567 * 4.85 / 8},
        {"llama3.1:8b-instruct-q4_0", 8 * 4.55 / 8},
        {"llama3.1:8b-instruct-q4_K_M", 8 * 4.85 / 8},
        {"llama3.1:8b-instruct-q5_K_M", 8 * 5.69 / 8},
        {"llama3.1:8b-instruct-q8_0", 8.5},
        {"llama3.1:8b-instruct-fp16", 16},
        {"llama3.1:8b-instruct-f16", 16},
        {"llama3.2:3b", 3 * 4.85 / 8},
        {"llama3.3:70b", 70 * 4.85 / 8},
        {"deepseek-r1:671b", 671 * 4.85 / 8},
        {"deepseek-r1:1.5b", 1.5 * 4.85 / 8},
        {"hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q8_0", 3 * 8.5 / 8},
        {"smollm:135m", 0.135 * 4.85 / 8},
        {"phi3:3.8b-mini-4k-instruct-q4_K_M", 3.8 * 4.85 / 8},
        {"nomic-embed-text:latest", 0.3},
        {"all-minilm:latest", 0.3},
        {"mxbai-embed-large:335m", 0.335 * 2},
        {"llama3:latest", 10},
        {"llama3.2:latest", 10},
        {"", 10},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        double got = scorer_estimate_size_gb(t[i].name);

        if (fabs(got - t[i].want) > 1e-9)
            fail_msg("%s: %.6f, want %.6f", t[i].name, got, t[i].want);
    }
    assert_true(scorer_estimate_size_gb(NULL) == 10.0);
    /* The brief's figures, in GB. */
    assert_near(scorer_estimate_size_gb("gemma3:27b"), 16.0, 0.5);
    assert_near(scorer_estimate_size_gb("qwen3:30b-a3b"), 18.0, 0.5);
}

/* A loaded size on this node wins, then one on any node, then the name. */
static void
test_size_loaded_wins(void **state)
{
    struct scorer_loaded here = {"gemma3:27b", 17.4, 8192};
    struct scorer_loaded there = {"gemma3:27b", 18.1, 8192};
    struct scorer_node n[3] = {node("a", 64, 40), node("b", 64, 40),
                               node("c", 64, 40)};

    (void)state;
    n[0].loaded = &here;
    n[0].n_loaded = 1;
    n[2].loaded = &there;
    n[2].n_loaded = 1;
    assert_true(scorer_model_size_gb(n, 3, 0, "gemma3:27b") == 17.4);
    assert_true(scorer_model_size_gb(n, 3, 2, "gemma3:27b") == 18.1);
    assert_true(scorer_model_size_gb(n, 3, 1, "gemma3:27b") == 17.4);
    assert_true(scorer_model_size_gb(n, 3, SIZE_MAX, "gemma3:27b") == 17.4);
    assert_near(scorer_model_size_gb(n + 1, 1, 0, "gemma3:27b"), 27 * 4.85 / 8,
                1e-9);
    assert_near(scorer_model_size_gb(NULL, 0, SIZE_MAX, "qwen3:30b-a3b"),
                30 * 4.85 / 8, 1e-9);
}

static void
test_degraded_penalised(void **state)
{
    struct scorer_node n[2] = {node("late", 64, 44), node("fresh", 64, 44)};
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    for (size_t j = 0; j < 2; j++) {
        n[j].available = avail_model;
        n[j].n_available = 1;
    }
    n[0].status = SCORER_DEGRADED;
    for (uint64_t seed = 0; seed < 20; seed++) {
        r.seed = seed;
        assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
        assert_int_equal(out[0].node, 1);
        assert_true(out[0].b.health == 0);
        assert_true(out[1].b.health == -20.0);
        assert_true(out[0].b.total - out[1].b.total == 20.0);
    }
    w.degraded_penalty = 0;
    (void)scorer_score(n, 2, &r, &w, out);
    assert_true(out[0].b.total == out[1].b.total);
}

/* Equal totals: the node with fewer requests in flight, whatever the
 * seed. 4 slots each; 2 running vs 1 running + 1 queued. */
static void
test_tie_fewer_in_flight(void **state)
{
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[2] = {node("two", 64, 44), node("one", 64, 44)};
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    for (size_t j = 0; j < 2; j++) {
        n[j].loaded = &l;
        n[j].n_loaded = 1;
        n[j].num_parallel = 4;
    }
    n[0].in_flight = 2;
    n[1].in_flight = 1;
    n[1].queued = 1;
    for (uint64_t seed = 0; seed < 50; seed++) {
        struct scorer_request r = request("llama3.2:3b", 0);

        r.seed = seed;
        assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
        assert_true(out[0].b.total == out[1].b.total);
        assert_int_equal(out[0].node, 1);
        assert_int_equal(out[0].in_flight, 1);
    }
}

/* Equal totals and equal in-flight: the seed decides, so over many
 * requests both nodes win, the same seed always gives the same answer,
 * and registration order (node 0) does not always win. */
static void
test_tie_random(void **state)
{
    struct scorer_node n[2] = {node("first", 64, 44), node("second", 64, 44)};
    struct scorer_weights w = weights();
    struct scorer_result out[2], again[2];
    int wins[2] = {0, 0};

    (void)state;
    for (size_t j = 0; j < 2; j++) {
        n[j].available = avail_model;
        n[j].n_available = 1;
    }
    for (uint64_t seed = 0; seed < 200; seed++) {
        struct scorer_request r = request("llama3.2:3b", 0);

        r.seed = seed * 0x2545F4914F6CDD1Dull;
        assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
        assert_true(out[0].b.total == out[1].b.total);
        assert_true(out[0].tiebreak < out[1].tiebreak);
        wins[out[0].node]++;
        (void)scorer_score(n, 2, &r, &w, again);
        assert_int_equal(again[0].node, out[0].node);
    }
    assert_true(wins[0] >= 60);
    assert_true(wins[1] >= 60);
}

/* Loaded with a free slot beats loaded with every slot busy. */
static void
test_slot_free(void **state)
{
    static const struct {
        bool loaded;
        uint32_t in_flight, num_parallel;
        double want;
    } t[] = {
        {true, 0, 1, 10}, {true, 1, 1, 0}, {true, 1, 2, 10}, {true, 2, 2, 0},
        {true, 0, 0, 10}, {true, 1, 0, 0}, {false, 0, 4, 0},
    };
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_weights w = weights();
    struct scorer_request r = request("llama3.2:3b", 0);

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct scorer_node n = node("a", 64, 44);
        struct scorer_result out[1];

        n.available = avail_model;
        n.n_available = 1;
        n.loaded = t[i].loaded ? &l : NULL;
        n.n_loaded = t[i].loaded ? 1 : 0;
        n.in_flight = t[i].in_flight;
        n.num_parallel = t[i].num_parallel;
        (void)scorer_score(&n, 1, &r, &w, out);
        assert_true(out[0].b.slot_free == t[i].want);
    }
}

static void
test_slot_free_wins(void **state)
{
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[2] = {node("full", 64, 44), node("room", 64, 44)};
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();
    struct scorer_result out[2];

    (void)state;
    for (size_t j = 0; j < 2; j++) {
        n[j].loaded = &l;
        n[j].n_loaded = 1;
        n[j].in_flight = 1;
    }
    n[1].num_parallel = 2;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 2);
    assert_int_equal(out[0].node, 1);
    assert_true(out[0].b.total - out[1].b.total == 10.0);
    assert_true(out[0].b.queue_depth == out[1].b.queue_depth);
}

static void
check_json_number(const cJSON *o, const char *key, double want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    if (!cJSON_IsNumber(v))
        fail_msg("key %s missing or not a number", key);
    assert_near(v->valuedouble, want, 1e-4);
}

/* Two results for the JSON tests: out[0] eligible (degraded, hot, one in
 * flight, a p75, capacity), out[1] eliminated (offline). */
static void
json_fixture(struct scorer_result out[2])
{
    static const struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_node n[2] = {node("a", 64, 44), node("b", 64, 44)};
    struct scorer_request r = request("llama3.2:3b", 3000);
    struct scorer_weights w = weights();

    n[0].loaded = &l;
    n[0].n_loaded = 1;
    n[0].status = SCORER_DEGRADED;
    n[0].in_flight = 1;
    n[0].p75_ms = 1234;
    n[0].cap =
        (struct scorer_capacity){true, SCORER_CAP_LEARNED_HIGH, 0.73, 32};
    n[1].status = SCORER_OFFLINE;
    assert_int_equal(scorer_score(n, 2, &r, &w, out), 1);
}

static void
check_json_result(const struct scorer_result *r)
{
    static const char *const keys[] = {
        "thermal",     "memory_fit",    "queue_depth",
        "wait_time",   "role_affinity", "availability_trend",
        "context_fit", "health",        "slot_free",
        "total",
    };
    const struct scorer_breakdown *s = &r->b;
    struct buf b;
    cJSON *o;

    buf_init(&b, 4096);
    assert_int_equal(scorer_breakdown_json(r, &b), 0);
    o = cJSON_Parse(b.data);
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o), r->eliminated ? 11 : 10);
    for (size_t k = 0; k < 10; k++)
        assert_non_null(cJSON_GetObjectItemCaseSensitive(o, keys[k]));
    check_json_number(o, "thermal", s->thermal);
    check_json_number(o, "memory_fit", s->memory_fit);
    check_json_number(o, "queue_depth", s->queue_depth);
    check_json_number(o, "wait_time", s->wait_time);
    check_json_number(o, "role_affinity", s->role_affinity);
    check_json_number(o, "availability_trend", s->availability_trend);
    check_json_number(o, "context_fit", s->context_fit);
    check_json_number(o, "health", s->health);
    check_json_number(o, "slot_free", s->slot_free);
    check_json_number(o, "total", s->total);
    if (r->eliminated)
        assert_string_equal(
            cJSON_GetObjectItemCaseSensitive(o, "eliminated")->valuestring,
            r->eliminated);
    cJSON_Delete(o);
    buf_cleanup(&b);
}

/* The breakdown parses back with cJSON, with exactly our keys. */
static void
test_breakdown_json(void **state)
{
    struct scorer_result out[2];

    (void)state;
    json_fixture(out);
    check_json_result(&out[0]);
    assert_string_equal(out[1].eliminated, "offline");
    check_json_result(&out[1]);
}

/* The exact text of the eligible one: degraded (-20), hot (50, 20), one
 * in flight of one slot (-6, slot 0), 1.234 s p75 (-0.1234), a small
 * model on 64 GB (8), 8192 / 3000 (7.5), 0.73 * 10. */
static void
test_breakdown_json_text(void **state)
{
    struct scorer_result out[2];
    struct buf b;

    (void)state;
    json_fixture(out);
    buf_init(&b, 4096);
    assert_int_equal(scorer_breakdown_json(&out[0], &b), 0);
    assert_string_equal(b.data,
                        "{\"thermal\":50,\"memory_fit\":20,\"queue_depth\":-6,"
                        "\"wait_time\":-0.1234,\"role_affinity\":8,"
                        "\"availability_trend\":7.3,\"context_fit\":7.5,"
                        "\"health\":-20,\"slot_free\":0,\"total\":66.6766}");
    buf_cleanup(&b);
    /* Too small a buffer: -E2BIG and nothing appended. */
    buf_init(&b, 16);
    assert_int_equal(scorer_breakdown_json(&out[0], &b), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

/* Many identical nodes (the median's equal-values case) and one better:
 * the better one wins, the rest tie and are all eligible. */
static void
test_large_fleet(void **state)
{
    enum { N = 1000 };
    static struct scorer_node n[N];
    static struct scorer_result out[N];
    struct scorer_loaded l = {"llama3.2:3b", 2.0, 8192};
    struct scorer_request r = request("llama3.2:3b", 0);
    struct scorer_weights w = weights();

    (void)state;
    for (size_t j = 0; j < N; j++) {
        n[j] = node("x", 64, 44);
        n[j].bandwidth_gbs = 400;
        n[j].available = avail_model;
        n[j].n_available = 1;
        n[j].in_flight = 1;
    }
    n[N - 1].bandwidth_gbs = 800;
    n[617].loaded = &l;
    n[617].n_loaded = 1;
    n[617].in_flight = 0;
    assert_int_equal(scorer_score(n, N, &r, &w, out), N);
    assert_int_equal(out[0].node, 617);
    /* Median 400: node N-1 has ratio 2, so depth 1 counts 0.5 (-3). */
    assert_near(result_of(out, N, N - 1)->b.queue_depth, -3.0, 1e-9);
    assert_near(result_of(out, N, 3)->b.queue_depth, -6.0, 1e-9);
    for (size_t i = 0; i + 1 < N; i++)
        assert_true(out[i].b.total >= out[i + 1].b.total);
}

/* A large fleet: the best SCORER_SORTED come first, sorted; every other
 * eligible node ranks below them; the eliminated ones follow in input
 * order. */
static void
test_large_fleet_top_sorted(void **state)
{
    enum { N = 700 };
    static struct scorer_node nodes[N];
    static struct scorer_loaded ld[N];
    static char ids[N][16];
    static struct scorer_result out[N];
    static const char *const avail[] = {"m:7b"};
    struct scorer_weights w;
    struct scorer_request r = {.model = "m:7b", .now_ns = 1, .seed = 7};
    int eligible, n_elim = 0;

    (void)state;
    scorer_weights_default(&w);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "n%d", i);
        memset(&nodes[i], 0, sizeof(nodes[i]));
        nodes[i].id = ids[i];
        nodes[i].has_ollama = true;
        nodes[i].mem_total_gb = 64;
        nodes[i].mem_available_gb = 8 + (i * 37) % 50; /* varied fit */
        nodes[i].in_flight = (uint32_t)(i % 4);
        nodes[i].num_parallel = 4;
        nodes[i].available = avail;
        nodes[i].n_available = 1;
        if (i % 3 == 0) { /* hot on a third */
            ld[i].name = "m:7b";
            ld[i].size_gb = 5;
            nodes[i].loaded = &ld[i];
            nodes[i].n_loaded = 1;
        }
        if (i % 10 == 9) { /* every tenth offline */
            nodes[i].status = SCORER_OFFLINE;
            n_elim++;
        }
    }
    eligible = scorer_score(nodes, N, &r, &w, out);
    assert_int_equal(eligible, N - n_elim);
    for (int i = 1; i < SCORER_SORTED; i++)
        assert_true(scorer_rank_cmp(&out[i - 1], &out[i]) < 0);
    for (int i = SCORER_SORTED; i < eligible; i++) {
        assert_null(out[i].eliminated);
        assert_true(scorer_rank_cmp(&out[SCORER_SORTED - 1], &out[i]) < 0);
    }
    for (int i = eligible; i < N; i++) {
        assert_non_null(out[i].eliminated);
        if (i > eligible)
            assert_true(out[i - 1].node < out[i].node);
    }
}

/* The numbers of a breakdown are "%.4f" with trailing zeros dropped; the
 * formatter does it without printf: compare on many values. */
static void
test_breakdown_numbers_match_printf(void **state)
{
    uint64_t x = 88172645463325252ULL;

    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct scorer_result r;
        struct buf b;
        char want[64];
        const char *got;
        size_t len;
        double v;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (i % 4) {
        case 0:
            v = (double)(int64_t)(x % 2000001) / 1e4 - 100;
            break;
        case 1:
            v = ((double)(x % 1000000007) / 7.0) - 5e7;
            break;
        case 2:
            v = (double)(x % 1000) / 8.0;
            break;
        default:
            v = -((double)(x % 100000)) / 1e5;
            break;
        }
        memset(&r, 0, sizeof(r));
        r.b.total = v;
        v = round(v * 1e4) / 1e4;
        if (v == 0)
            v = 0;
        snprintf(want, sizeof(want), "%.4f", v);
        len = strlen(want);
        while (want[len - 1] == '0')
            want[--len] = '\0';
        if (want[len - 1] == '.')
            want[--len] = '\0';
        buf_init(&b, 4096);
        assert_int_equal(scorer_breakdown_json(&r, &b), 0);
        got = strstr(b.data, "\"total\":") + 8;
        assert_int_equal(strncmp(got, want, len), 0);
        assert_true(got[len] == '}');
        buf_cleanup(&b);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breakdown_numbers_match_printf),
        cmocka_unit_test(test_large_fleet_top_sorted),
        cmocka_unit_test(test_no_nodes),
        cmocka_unit_test(test_hot_beats_cold),
        cmocka_unit_test(test_warm_after_unload),
        cmocka_unit_test(test_eliminations),
        cmocka_unit_test(test_eliminated_keep_breakdown),
        cmocka_unit_test(test_queue_depth),
        cmocka_unit_test(test_memory_fit),
        cmocka_unit_test(test_memory_fit_bigger_node),
        cmocka_unit_test(test_role_affinity_tiers),
        cmocka_unit_test(test_role_affinity_direction),
        cmocka_unit_test(test_sorted_descending),
        cmocka_unit_test(test_context_fit),
        cmocka_unit_test(test_estimate_tokens),
        cmocka_unit_test(test_wait_time),
        cmocka_unit_test(test_capacity_trend),
        cmocka_unit_test(test_bw_big_model_prefers_fast),
        cmocka_unit_test(test_bw_fallback_to_tiers),
        cmocka_unit_test(test_bw_small_model_prefers_slow),
        cmocka_unit_test(test_bw_bonus_clamped),
        cmocka_unit_test(test_bw_queue_studio_vs_laptop),
        cmocka_unit_test(test_bw_queue_normalisation),
        cmocka_unit_test(test_bw_no_bandwidth_plain_penalty),
        cmocka_unit_test(test_bw_cold_wait_slower_node),
        cmocka_unit_test(test_bw_sequential_picks),
        cmocka_unit_test(test_size_estimate),
        cmocka_unit_test(test_size_loaded_wins),
        cmocka_unit_test(test_degraded_penalised),
        cmocka_unit_test(test_tie_fewer_in_flight),
        cmocka_unit_test(test_tie_random),
        cmocka_unit_test(test_slot_free),
        cmocka_unit_test(test_slot_free_wins),
        cmocka_unit_test(test_breakdown_json),
        cmocka_unit_test(test_breakdown_json_text),
        cmocka_unit_test(test_large_fleet),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
