/*
 * test_recommend.c - the model catalogue and the recommender on tables:
 * the shipped catalogue (embedded into herd) parses and is sane; bad
 * catalogues are refused with the entry named; lookup and classification
 * follow ollama-herd's rules; plans fit memory and disk, lead with the
 * categories in use, keep what is used, spread big models and cover the
 * categories.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dashboard.h"
#include "herd/json.h"
#include "recommend.h"

/* The embedded data/models.json (the generated table, without the rest
 * of the dashboard). */
static const struct dashboard_asset *
asset(const char *name)
{
    for (const struct dashboard_asset *a = dashboard_assets; a->name; a++) {
        if (strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

static struct rec_catalog *
shipped(void)
{
    const struct dashboard_asset *a = asset("models.json");
    char err[256];
    struct rec_catalog *c;

    assert_non_null(a);
    c = recommend_catalog_parse((const char *)a->data, a->len, err,
                                sizeof(err));
    if (c == NULL)
        fail_msg("the shipped catalogue: %s", err);
    return c;
}

static struct rec_catalog *
parse(const char *json, char *err, size_t errlen)
{
    return recommend_catalog_parse(json, strlen(json), err, errlen);
}

/* The plan as a tree; the caller deletes it. */
static cJSON *
analyze(const struct rec_catalog *c, const struct rec_node *nodes, size_t n,
        const struct rec_usage *u, size_t nu)
{
    struct buf b;
    cJSON *v = NULL;

    buf_init(&b, 4u << 20);
    assert_int_equal(recommend_analyze(c, nodes, n, u, nu, &b), 0);
    assert_int_equal(json_parse(b.data, b.len, 64, &v, NULL, 0), 0);
    buf_cleanup(&b);
    return v;
}

static const cJSON *
plan_of(const cJSON *r, const char *node)
{
    const cJSON *n;

    cJSON_ArrayForEach(n, json_get(r, "nodes"))
    {
        if (strcmp(json_get_str(n, "node_id"), node) == 0)
            return n;
    }
    fail_msg("no plan for %s", node);
    return NULL;
}

static const cJSON *
pick(const cJSON *plan, const char *model)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, json_get(plan, "recommendations"))
    {
        if (strcmp(json_get_str(p, "model"), model) == 0)
            return p;
    }
    return NULL;
}

static double
plan_ram(const cJSON *plan)
{
    const cJSON *p;
    double sum = 0;

    cJSON_ArrayForEach(p, json_get(plan, "recommendations")) sum +=
        json_get_num(p, "ram_gb", 0);
    return sum;
}

static bool
has_category(const cJSON *plan, const char *cat)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, json_get(plan, "recommendations"))
    {
        if (strcmp(json_get_str(p, "category"), cat) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */

static void
shipped_catalogue_is_sane(void **state)
{
    struct rec_catalog *c = shipped();
    size_t cats[9] = {0};
    static const char *const names[] = {"general",  "reasoning", "coding",
                                        "creative", "fast-chat", "vision",
                                        "embedding"};

    (void)state;
    assert_true(c->n >= 30 && c->n <= 80);
    for (size_t i = 0; i < c->n; i++) {
        const struct rec_model *m = &c->v[i];

        assert_non_null(strchr(m->ollama_name, ':'));
        assert_true(m->ram_gb > 0 && m->ram_gb < 200);
        assert_true(m->context_length > 0);
        assert_true(strlen(m->display_name) > 0);
        assert_true(strlen(m->family) > 0);
        for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++)
            cats[k] += strcmp(m->category, names[k]) == 0;
    }
    /* every category the planner fills has at least two models */
    for (size_t k = 0; k < sizeof(names) / sizeof(*names); k++) {
        if (cats[k] < 2)
            fail_msg("category %s has %zu models", names[k], cats[k]);
    }
    recommend_catalog_free(c);
}

static void
bad_catalogues_are_refused(void **state)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{}", "list"},
        {"[]", "list"},
        {"[1]", "entry 0"},
        {"[{\"ollama_name\":\"a:1b\",\"category\":\"nope\",\"ram_gb\":1,"
         "\"params_b\":1}]",
         "category"},
        {"[{\"ollama_name\":\"a:1b\",\"category\":\"general\",\"ram_gb\":0,"
         "\"params_b\":1}]",
         "ram_gb"},
        {"[{\"ollama_name\":\"a:1b\",\"category\":\"general\",\"ram_gb\":1,"
         "\"params_b\":-1}]",
         "params_b"},
        {"[{\"ollama_name\":\"a:1b\",\"category\":\"general\",\"ram_gb\":1,"
         "\"params_b\":1,\"context_length\":1.5}]",
         "context_length"},
        {"[{\"ollama_name\":\"a:1b\",\"category\":\"general\",\"ram_gb\":1,"
         "\"params_b\":1,\"secondary_categories\":[\"zzz\"]}]",
         "secondary"},
        {"[{\"ollama_name\":\"a\",\"category\":\"general\",\"ram_gb\":1,"
         "\"params_b\":1},{\"ollama_name\":\"a:latest\",\"category\":"
         "\"general\",\"ram_gb\":1,\"params_b\":1}]",
         "twice"},
        {"[{\"ollama_name\":\"a\",", "not JSON"},
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        err[0] = '\0';
        assert_null(parse(cases[i].json, err, sizeof(err)));
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
    }
}

static void
lookup_and_classify(void **state)
{
    struct rec_catalog *c = shipped();
    const struct rec_model *m;

    (void)state;
    m = recommend_lookup(c, "qwen3:8b");
    assert_non_null(m);
    assert_string_equal(m->category, "general");
    /* no tag in the catalogue: ":latest" is added */
    m = recommend_lookup(c, "nomic-embed-text:latest");
    assert_non_null(m);
    assert_string_equal(m->category, "embedding");
    /* an unknown tag of a known family */
    m = recommend_lookup(c, "qwen2.5-coder:3b");
    assert_non_null(m);
    assert_string_equal(m->family, "qwen2.5-coder");
    assert_null(recommend_lookup(c, "totally-unknown:7b"));
    assert_string_equal(recommend_classify(c, "deepseek-r1:32b"), "reasoning");
    /* outside the catalogue: the name rules */
    assert_string_equal(recommend_classify(c, "my-coder:7b"), "coding");
    assert_string_equal(recommend_classify(c, "someone/llava-next:7b"),
                        "vision");
    assert_string_equal(recommend_classify(c, "whatever:1b"), "general");
    assert_string_equal(recommend_classify(NULL, "x/flux:dev"), "image");
    recommend_catalog_free(c);
}

static void
plans_fit_memory(void **state)
{
    static const char *const none[] = {NULL};
    struct rec_node n[3] = {
        {"big", 128, 2000, 1500, none, 0},
        {"mid", 32, 500, 400, none, 0},
        {"tiny", 8, 100, 50, none, 0},
    };
    struct rec_catalog *c = shipped();
    cJSON *r = analyze(c, n, 3, NULL, 0);

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        const cJSON *p = plan_of(r, n[i].node_id);
        double usable = n[i].total_ram_gb - RECOMMEND_OS_RESERVE_GB;
        const cJSON *e;

        assert_true(json_get_num(p, "usable_ram_gb", -1) == usable);
        assert_true(plan_ram(p) <= usable + 1e-9);
        assert_true(json_get_num(p, "ram_headroom_gb", -1) >= -1e-9);
        /* no single pick takes more than half the usable memory */
        cJSON_ArrayForEach(e, json_get(p, "recommendations"))
            assert_true(json_get_num(e, "ram_gb", 0) <= usable * 0.5 + 1e-9);
    }
    /* the largest node is planned first and covers general and coding */
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(r, "nodes"), 0), "node_id"),
        "big");
    assert_true(has_category(plan_of(r, "big"), "general"));
    assert_true(has_category(plan_of(r, "big"), "coding"));
    assert_true(has_category(plan_of(r, "big"), "reasoning"));
    /* 6 GB reserved of 8: 2 usable, so at most a 1 GB pick */
    assert_true(plan_ram(plan_of(r, "tiny")) <= 2.0);
    cJSON_Delete(r);
    recommend_catalog_free(c);
}

static void
usage_leads_and_keeps_used_models(void **state)
{
    static const char *const have[] = {"qwen2.5-coder:7b", "llama3.2:3b"};
    struct rec_node n[1] = {{"studio", 64, -1, -1, have, 2}};
    struct rec_usage u[] = {
        {"qwen2.5-coder:7b", 120},
        {"llama3.2:3b", 3},
        {"deepseek-r1:8b", 40},
    };
    struct rec_catalog *c = shipped();
    cJSON *r = analyze(c, n, 1, u, 3);
    const cJSON *p = plan_of(r, "studio"), *k, *first;
    const cJSON *usage = json_get(r, "usage");

    (void)state;
    /* the most used model that is on the node is kept, first, high */
    first = cJSON_GetArrayItem(json_get(p, "recommendations"), 0);
    assert_string_equal(json_get_str(first, "model"), "qwen2.5-coder:7b");
    assert_string_equal(json_get_str(first, "priority"), "high");
    assert_true(json_get_bool(first, "already_available", false));
    /* coding then reasoning lead the categories */
    assert_int_equal((int)json_get_num(usage, "total_requests_24h", -1), 163);
    assert_int_equal(
        (int)json_get_num(json_get(usage, "category_breakdown"), "coding", -1),
        120);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(usage, "top_models"), 0),
                     "model"),
        "qwen2.5-coder:7b");
    /* a reasoning model is planned, with high priority: it has demand */
    assert_true(has_category(p, "reasoning"));
    cJSON_ArrayForEach(k, json_get(p, "recommendations"))
    {
        if (strcmp(json_get_str(k, "category"), "reasoning") == 0)
            assert_string_equal(json_get_str(k, "priority"), "high");
    }
    /* no second coding model of the same family */
    assert_null(pick(p, "qwen2.5-coder:14b"));
    cJSON_Delete(r);
    recommend_catalog_free(c);
}

static void
disk_limits_downloads(void **state)
{
    static const char *const none[] = {NULL};
    struct rec_node n[1] = {{"full-disk", 64, 500, 1.0, none, 0}};
    struct rec_catalog *c = shipped();
    cJSON *r = analyze(c, n, 1, NULL, 0);
    const cJSON *p = plan_of(r, "full-disk"), *e;
    double dl = 0;

    (void)state;
    cJSON_ArrayForEach(e, json_get(p, "recommendations"))
    {
        if (!json_get_bool(e, "already_available", true))
            dl += json_get_num(e, "ram_gb", 0);
    }
    assert_true(dl <= 1.0);
    cJSON_Delete(r);
    recommend_catalog_free(c);
}

static void
big_models_spread(void **state)
{
    static const char *const none[] = {NULL};
    struct rec_node n[4] = {
        {"a", 64, -1, -1, none, 0},
        {"b", 64, -1, -1, none, 0},
        {"c", 64, -1, -1, none, 0},
        {"d", 64, -1, -1, none, 0},
    };
    struct rec_catalog *c = shipped();
    cJSON *r = analyze(c, n, 4, NULL, 0);
    const cJSON *na = json_get(plan_of(r, "a"), "recommendations");
    const char *general = NULL;
    int same = 0;

    (void)state;
    /* the best general model that fits is planned on at most 2 nodes
     * while an alternative exists */
    for (const cJSON *e = na->child; e != NULL; e = e->next) {
        if (strcmp(json_get_str(e, "category"), "general") == 0)
            general = json_get_str(e, "model");
    }
    assert_non_null(general);
    for (size_t i = 0; i < 4; i++)
        same += pick(plan_of(r, n[i].node_id), general) != NULL;
    assert_int_equal(same, 2);
    assert_int_equal(
        (int)json_get_num(json_get(r, "fleet_summary"), "total_nodes", -1), 4);
    assert_int_equal(cJSON_GetArraySize(json_get(r, "uncovered_categories")),
                     0);
    cJSON_Delete(r);
    recommend_catalog_free(c);
}

static void
empty_fleet_and_unknown_models(void **state)
{
    static const char *const have[] = {"homebrew-model:13b"};
    struct rec_node n[1] = {{"x", 24, -1, -1, have, 1}};
    struct rec_usage u[] = {{"homebrew-model:13b", 10}, {"gone:1b", 0}};
    struct rec_catalog *c = shipped();
    cJSON *r = analyze(c, NULL, 0, NULL, 0);
    const cJSON *first;

    (void)state;
    assert_int_equal(cJSON_GetArraySize(json_get(r, "nodes")), 0);
    assert_true(cJSON_GetArraySize(json_get(r, "uncovered_categories")) >= 5);
    cJSON_Delete(r);
    /* a used model outside the catalogue is kept with an estimate (13b at
     * 4 bits: about 8.3 GB) */
    r = analyze(c, n, 1, u, 2);
    first = cJSON_GetArrayItem(json_get(plan_of(r, "x"), "recommendations"), 0);
    assert_string_equal(json_get_str(first, "model"), "homebrew-model:13b");
    assert_true(fabs(json_get_num(first, "ram_gb", 0) - 8.3) < 0.01);
    cJSON_Delete(r);
    /* no catalogue at all: still an answer */
    r = analyze(NULL, n, 1, u, 2);
    assert_non_null(json_get(r, "fleet_summary"));
    cJSON_Delete(r);
    recommend_catalog_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_catalogue_is_sane),
        cmocka_unit_test(bad_catalogues_are_refused),
        cmocka_unit_test(lookup_and_classify),
        cmocka_unit_test(plans_fit_memory),
        cmocka_unit_test(usage_leads_and_keeps_used_models),
        cmocka_unit_test(disk_limits_downloads),
        cmocka_unit_test(big_models_spread),
        cmocka_unit_test(empty_fleet_and_unknown_models),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
