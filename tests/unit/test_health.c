/*
 * test_health.c - the health engine on tables: each check of reference
 * §8.1 that applies to herd fires on its condition, with its severity,
 * and stays silent just below it; the score, the order of the
 * recommendations, the vitals, and the shapes of odd inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "health.h"
#include "herd/json.h"

#define NOW 1800000000.0

/* A healthy online node: 64 GB, 20 GB free, version 0.1.0, 3 models. */
static const struct health_loaded three_models[] = {
    {"llama3.1:8b", 5.0, "8.0B"},
    {"qwen3:8b", 5.2, "8.2B"},
    {"llama3.2:3b", 2.0, "3.2B"},
};

static struct health_node
node(const char *id)
{
    return (struct health_node){
        .node_id = id,
        .status = "online",
        .reason = "",
        .pressure = "normal",
        .mem_total_gb = 64,
        .mem_available_gb = 20,
        .loaded = three_models,
        .n_loaded = 3,
        .agent_version = "0.1.0",
        .ollama_healthy = true,
        .router_state = NULL,
        .silent_s = 1,
    };
}

static struct health_input
input(const struct health_node *nodes, size_t n, const cJSON *stats)
{
    struct health_input in = {
        .nodes = nodes,
        .n_nodes = n,
        .router_version = "0.1.0",
        .stats = stats,
        .now = NOW,
    };

    health_events_unknown(&in.events);
    return in;
}

/* The report as a tree; the caller deletes it. */
static cJSON *
report(const struct health_input *in)
{
    struct buf b;
    cJSON *v = NULL;

    buf_init(&b, 1u << 20);
    assert_int_equal(health_report(in, &b), 0);
    assert_int_equal(json_parse(b.data, b.len, 64, &v, NULL, 0), 0);
    buf_cleanup(&b);
    return v;
}

/* The recommendation check_id (for node, NULL = any), or NULL. */
static const cJSON *
find(const cJSON *r, const char *check_id, const char *node)
{
    const cJSON *e;

    cJSON_ArrayForEach(e, json_get(r, "recommendations"))
    {
        const char *id = json_get_str(e, "check_id");
        const char *nid = json_get_str(e, "node_id");

        if (strcmp(id, check_id) == 0 &&
            (node == NULL || (nid != NULL && strcmp(nid, node) == 0)))
            return e;
    }
    return NULL;
}

static const char *
severity(const cJSON *r, const char *check_id, const char *node)
{
    const cJSON *e = find(r, check_id, node);

    return e ? json_get_str(e, "severity") : "absent";
}

static int
score(const cJSON *r)
{
    return (int)json_get_num(json_get(r, "vitals"), "health_score", -1);
}

static cJSON *
stats(const char *json)
{
    cJSON *v = NULL;

    assert_int_equal(json_parse(json, strlen(json), 64, &v, NULL, 0), 0);
    return v;
}

/* ------------------------------------------------------------------------ */

static void
healthy_fleet_scores_100(void **state)
{
    struct health_node n[2] = {node("a"), node("b")};
    struct health_input in = input(n, 2, NULL);
    cJSON *r = report(&in);
    const cJSON *v = json_get(r, "vitals");

    (void)state;
    assert_int_equal(cJSON_GetArraySize(json_get(r, "recommendations")), 0);
    assert_int_equal(score(r), 100);
    assert_int_equal((int)json_get_num(v, "nodes_total", -1), 2);
    assert_int_equal((int)json_get_num(v, "nodes_online", -1), 2);
    assert_false(json_get_bool(v, "traces_available", true));
    assert_true(json_get_num(r, "checked_at", 0) == NOW);
    cJSON_Delete(r);
}

static void
offline_degraded_and_score(void **state)
{
    struct health_node n[3] = {node("a"), node("b"), node("c")};
    struct health_input in;
    cJSON *r;

    (void)state;
    n[0].status = "offline";
    n[0].silent_s = 45;
    n[1].status = "degraded";
    in = input(n, 3, NULL);
    r = report(&in);
    assert_string_equal(severity(r, "node_offline", "a"), "critical");
    assert_string_equal(severity(r, "node_degraded", "b"), "warning");
    assert_string_equal(severity(r, "node_offline", "c"), "absent");
    /* an offline node has no version check; the degraded one has none to
     * make: 100 - 20 - 10 */
    assert_int_equal(score(r), 70);
    /* critical first */
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(r, "recommendations"), 0),
                     "check_id"),
        "node_offline");
    assert_int_equal(
        (int)json_get_num(json_get(r, "vitals"), "nodes_offline", -1), 1);
    cJSON_Delete(r);
}

static void
memory_pressure_levels(void **state)
{
    struct health_node n[3] = {node("a"), node("b"), node("c")};
    struct health_input in = input(n, 3, NULL);
    cJSON *r;

    (void)state;
    n[0].pressure = "warn";
    n[1].pressure = "critical";
    r = report(&in);
    assert_string_equal(severity(r, "memory_pressure", "a"), "warning");
    assert_string_equal(severity(r, "memory_pressure", "b"), "critical");
    assert_string_equal(severity(r, "memory_pressure", "c"), "absent");
    cJSON_Delete(r);
}

static void
underutilized_memory_rules(void **state)
{
    static const struct health_loaded one[] = {{"llama3.2:3b", 2.0, "3.2B"}};
    struct health_node n[4] = {node("a"), node("b"), node("c"), node("d")};
    struct health_input in = input(n, 4, NULL);
    cJSON *r;

    (void)state;
    /* a: more than half free, one model: info */
    n[0].mem_available_gb = 40;
    n[0].loaded = one;
    n[0].n_loaded = 1;
    /* b: exactly half free: silent */
    n[1].mem_available_gb = 32;
    n[1].loaded = one;
    n[1].n_loaded = 1;
    /* c: 3 models loaded: silent however much is free */
    n[2].mem_available_gb = 60;
    /* d: degraded nodes are not checked */
    n[3].mem_available_gb = 60;
    n[3].loaded = one;
    n[3].n_loaded = 1;
    n[3].status = "degraded";
    r = report(&in);
    assert_string_equal(severity(r, "underutilized_memory", "a"), "info");
    assert_string_equal(severity(r, "underutilized_memory", "b"), "absent");
    assert_string_equal(severity(r, "underutilized_memory", "c"), "absent");
    assert_string_equal(severity(r, "underutilized_memory", "d"), "absent");
    cJSON_Delete(r);
}

static void
versions(void **state)
{
    struct health_node n[3] = {node("a"), node("b"), node("c")};
    struct health_input in = input(n, 3, NULL);
    const cJSON *e;
    cJSON *r;

    (void)state;
    n[0].agent_version = "0.6.1"; /* a Python ollama-herd agent */
    n[1].agent_version = "";
    n[2].agent_version = "0.6.1";
    n[2].status = "offline";
    r = report(&in);
    assert_string_equal(severity(r, "version_mismatch", "a"), "warning");
    assert_string_equal(severity(r, "version_unknown", "b"), "info");
    assert_string_equal(severity(r, "version_mismatch", "c"), "absent");
    e = find(r, "version_mismatch", "a");
    assert_string_equal(json_get_str(json_get(e, "data"), "agent_version"),
                        "0.6.1");
    cJSON_Delete(r);
}

static void
kv_cache_bloat_levels(void **state)
{
    /* 8B at q4 is ~4 GB of weights: 5 GB is fine, 10 GB is 60 % KV */
    static const struct health_loaded ok[] = {{"m:8b", 5.0, "8.0B"}};
    static const struct health_loaded big[] = {{"m:8b", 10.0, "8.0B"}};
    static const struct health_loaded mid[] = {{"m:8b", 6.5, "8.0B"}};
    static const struct health_loaded unknown[] = {{"m", 50.0, ""}};
    struct health_node n[4] = {node("a"), node("b"), node("c"), node("d")};
    struct health_input in = input(n, 4, NULL);
    cJSON *r;

    (void)state;
    n[0].loaded = ok;
    n[1].loaded = big;
    n[2].loaded = mid;
    n[3].loaded = unknown;
    for (int i = 0; i < 4; i++)
        n[i].n_loaded = 1;
    r = report(&in);
    assert_string_equal(severity(r, "kv_cache_bloat", "a"), "absent");
    assert_string_equal(severity(r, "kv_cache_bloat", "b"), "critical");
    /* 6.5 / 4 = 1.625 > 1.5; (6.5 - 4) / 6.5 = 38 % -> warning */
    assert_string_equal(severity(r, "kv_cache_bloat", "c"), "warning");
    assert_string_equal(severity(r, "kv_cache_bloat", "d"), "absent");
    cJSON_Delete(r);
}

static void
ollama_down_and_ejected(void **state)
{
    struct health_node n[3] = {node("a"), node("b"), node("c")};
    struct health_input in = input(n, 3, NULL);
    cJSON *r;

    (void)state;
    n[0].ollama_healthy = false;
    n[1].router_state = "ejected";
    n[2].router_state = "probation";
    r = report(&in);
    assert_string_equal(severity(r, "ollama_unreachable", "a"), "critical");
    assert_string_equal(severity(r, "connection_failures", "b"), "warning");
    assert_string_equal(severity(r, "connection_failures", "c"), "info");
    cJSON_Delete(r);
}

/* dashq's health_stats document with one node's counters. */
static const char stats_doc[] =
    "{\"fleet\":{\"requests_24h\":200,\"requests_1h\":50,\"failed_24h\":20,"
    "\"error_rate_pct_24h\":10.0,\"avg_ttft_ms_24h\":350.5,"
    "\"retries_24h\":70,\"cold_loads_24h\":4,\"client_disconnects_24h\":5,"
    "\"client_disconnects_1h\":3,\"incomplete_streams_24h\":2,"
    "\"incomplete_streams_1h\":0,\"avg_retries_per_request_24h\":0.35},"
    "\"nodes\":[{\"node_id\":\"a\",\"requests_24h\":100,\"requests_1h\":20,"
    "\"failed_24h\":10,\"error_rate_pct_24h\":10.0,\"error_rate_pct_1h\":"
    "10.0,\"cold_loads_24h\":4,\"cold_loads_1h\":1},{\"node_id\":\"b\","
    "\"requests_24h\":100,\"requests_1h\":30,\"failed_24h\":6,"
    "\"error_rate_pct_24h\":6.0,\"error_rate_pct_1h\":0,"
    "\"cold_loads_24h\":2,\"cold_loads_1h\":0}],"
    "\"load_timeouts\":[{\"model\":\"big:70b\",\"node_id\":\"a\","
    "\"count_24h\":2,\"count_1h\":1},{\"model\":\"big:70b\",\"node_id\":"
    "\"b\",\"count_24h\":1,\"count_1h\":0},{\"model\":\"small:1b\","
    "\"node_id\":\"a\",\"count_24h\":2,\"count_1h\":0}]}";

static void
trace_based_checks(void **state)
{
    struct health_node n[2] = {node("a"), node("b")};
    cJSON *st = stats(stats_doc);
    struct health_input in = input(n, 2, st);
    const cJSON *v, *lt;
    cJSON *r;

    (void)state;
    r = report(&in);
    /* a: 10 % now and over 24 h: warning; b: 6 % over 24 h, 0 in the last
     * hour: info (resolved) */
    assert_string_equal(severity(r, "high_error_rate", "a"), "warning");
    assert_string_equal(severity(r, "high_error_rate", "b"), "info");
    /* a: 4 cold loads, one in the last hour, 20 GB free: warning; b: 2 */
    assert_string_equal(severity(r, "model_thrashing", "a"), "warning");
    assert_string_equal(severity(r, "model_thrashing", "b"), "absent");
    /* big:70b: 3 in 24 h over two nodes, one recent; small:1b: 2 */
    lt = find(r, "model_load_timeout", NULL);
    assert_non_null(lt);
    assert_string_equal(json_get_str(lt, "severity"), "warning");
    assert_non_null(strstr(json_get_str(lt, "title"), "big:70b"));
    assert_int_equal(
        cJSON_GetArraySize(json_get(json_get(lt, "data"), "nodes")), 2);
    /* 0.35 retries per request: info */
    assert_string_equal(severity(r, "high_retry_rate", NULL), "info");
    /* 5 disconnects, 3 recent, 2.5 %: warning */
    assert_string_equal(severity(r, "client_disconnects", NULL), "warning");
    /* 2 incomplete, none recent: info */
    assert_string_equal(severity(r, "incomplete_streams", NULL), "info");
    v = json_get(r, "vitals");
    assert_int_equal((int)json_get_num(v, "total_requests_24h", -1), 200);
    assert_true(json_get_num(v, "avg_ttft_ms", 0) == 350.5);
    assert_true(json_get_num(v, "overall_error_rate_pct", 0) == 10.0);
    assert_int_equal((int)json_get_num(v, "cold_loads_24h", -1), 4);
    assert_true(json_get_bool(v, "traces_available", false));
    cJSON_Delete(r);
    cJSON_Delete(st);
}

static void
thrashing_needs_free_memory(void **state)
{
    struct health_node n[2] = {node("a"), node("b")};
    cJSON *st = stats(stats_doc);
    struct health_input in = input(n, 2, st);
    cJSON *r;

    (void)state;
    n[0].mem_available_gb = 3; /* reloads for lack of memory: not thrash */
    r = report(&in);
    assert_string_equal(severity(r, "model_thrashing", "a"), "absent");
    cJSON_Delete(r);
    cJSON_Delete(st);
}

static void
thrashing_suppresses_underused(void **state)
{
    static const struct health_loaded one[] = {{"llama3.2:3b", 2.0, "3.2B"}};
    struct health_node n[1] = {node("a")};
    cJSON *st = stats(stats_doc);
    struct health_input in = input(n, 1, st);
    cJSON *r;

    (void)state;
    n[0].mem_available_gb = 50;
    n[0].loaded = one;
    n[0].n_loaded = 1;
    r = report(&in);
    assert_string_equal(severity(r, "model_thrashing", "a"), "warning");
    assert_string_equal(severity(r, "underutilized_memory", "a"), "absent");
    cJSON_Delete(r);
    cJSON_Delete(st);
}

static void
event_checks(void **state)
{
    struct health_node n[1] = {node("a")};
    struct health_input in = input(n, 1, NULL);
    cJSON *r;

    (void)state;
    in.events.vram_fallback_24h = 4;
    in.events.context_warning_24h = 1;
    in.events.context_stripped_24h = 2;
    in.events.context_upgraded_24h = 0;
    in.events.reaped_24h = 11;
    in.events.hold_timeout_24h = 3;
    r = report(&in);
    assert_string_equal(severity(r, "vram_fallback_active", NULL), "info");
    assert_string_equal(severity(r, "context_protection_insufficient", NULL),
                        "warning");
    assert_string_equal(severity(r, "context_protection_active", NULL), "info");
    assert_string_equal(severity(r, "zombie_reaper_active", NULL), "critical");
    assert_string_equal(severity(r, "slots_saturated", NULL), "warning");
    /* 100 - 20 - 10 - 10 - 3 - 3 */
    assert_int_equal(score(r), 54);
    cJSON_Delete(r);
    /* unknown counts (-1) and zero fire nothing */
    health_events_unknown(&in.events);
    in.events.reaped_24h = 0;
    r = report(&in);
    assert_int_equal(score(r), 100);
    cJSON_Delete(r);
}

static void
events_from_stats(void **state)
{
    cJSON *st = stats("{\"events\":{\"vram_fallback\":{\"count_24h\":7,"
                      "\"count_1h\":1},\"reaped\":{\"count_24h\":2},"
                      "\"context_stripped\":\"bad\"}}");
    struct health_events ev;

    (void)state;
    health_events_unknown(&ev);
    health_events_from_stats(st, &ev);
    assert_int_equal(ev.vram_fallback_24h, 7);
    assert_int_equal(ev.reaped_24h, 2);
    assert_int_equal(ev.context_stripped_24h, -1);
    assert_int_equal(ev.hold_timeout_24h, -1);
    health_events_from_stats(NULL, &ev); /* no stats: unchanged */
    assert_int_equal(ev.vram_fallback_24h, 7);
    cJSON_Delete(st);
}

static void
score_floor_and_order(void **state)
{
    struct health_node n[8];
    struct health_input in;
    const cJSON *e;
    int last = -1;
    cJSON *r;

    (void)state;
    for (int i = 0; i < 8; i++) {
        static char ids[8][4];

        snprintf(ids[i], sizeof(ids[i]), "n%d", i);
        n[i] = node(ids[i]);
        n[i].status = "offline";
    }
    n[7].status = "online";
    n[7].agent_version = ""; /* one info among the criticals */
    in = input(n, 8, NULL);
    r = report(&in);
    assert_int_equal(score(r), 0); /* 7 criticals: floored at 0 */
    cJSON_ArrayForEach(e, json_get(r, "recommendations"))
    {
        const char *s = json_get_str(e, "severity");
        int rank = strcmp(s, "critical") == 0  ? 0
                   : strcmp(s, "warning") == 0 ? 1
                                               : 2;

        assert_true(rank >= last);
        last = rank;
    }
    assert_int_equal(last, 2);
    cJSON_Delete(r);
}

static void
odd_stats_are_ignored(void **state)
{
    struct health_node n[1] = {node("a")};
    cJSON *st = stats("{\"fleet\":[1,2],\"nodes\":{\"a\":1},"
                      "\"load_timeouts\":\"x\"}");
    struct health_input in = input(n, 1, st);
    cJSON *r;

    (void)state;
    r = report(&in);
    assert_int_equal(score(r), 100);
    assert_int_equal(
        (int)json_get_num(json_get(r, "vitals"), "total_requests_24h", -1), 0);
    cJSON_Delete(r);
    cJSON_Delete(st);
}

static void
every_recommendation_has_the_fields(void **state)
{
    struct health_node n[2] = {node("a"), node("b")};
    cJSON *st = stats(stats_doc);
    struct health_input in = input(n, 2, st);
    const cJSON *e;
    cJSON *r;

    (void)state;
    n[0].status = "offline";
    in.events.vram_fallback_24h = 1;
    r = report(&in);
    assert_true(cJSON_GetArraySize(json_get(r, "recommendations")) > 5);
    cJSON_ArrayForEach(e, json_get(r, "recommendations"))
    {
        assert_non_null(json_get_str(e, "check_id"));
        assert_non_null(json_get_str(e, "severity"));
        assert_true(strlen(json_get_str(e, "title")) > 0);
        assert_true(strlen(json_get_str(e, "description")) > 0);
        assert_true(strlen(json_get_str(e, "fix")) > 0);
        assert_non_null(json_get(e, "node_id"));
        assert_true(cJSON_IsObject(json_get(e, "data")));
    }
    cJSON_Delete(r);
    cJSON_Delete(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(healthy_fleet_scores_100),
        cmocka_unit_test(offline_degraded_and_score),
        cmocka_unit_test(memory_pressure_levels),
        cmocka_unit_test(underutilized_memory_rules),
        cmocka_unit_test(versions),
        cmocka_unit_test(kv_cache_bloat_levels),
        cmocka_unit_test(ollama_down_and_ejected),
        cmocka_unit_test(trace_based_checks),
        cmocka_unit_test(thrashing_needs_free_memory),
        cmocka_unit_test(thrashing_suppresses_underused),
        cmocka_unit_test(event_checks),
        cmocka_unit_test(events_from_stats),
        cmocka_unit_test(score_floor_and_order),
        cmocka_unit_test(odd_stats_are_ignored),
        cmocka_unit_test(every_recommendation_has_the_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
