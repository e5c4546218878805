/*
 * test_fault.c - fault rules: SPEC and JSON parsing, model matching, and
 * count consumption.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "fault.h"

static void
test_spec_kinds(void **state)
{
    struct fault f;
    char err[256];

    (void)state;
    assert_int_equal(fault_parse_spec("500", &f, err, sizeof(err)), 0);
    assert_int_equal(f.kind, FAULT_HTTP500);
    assert_int_equal(f.count, -1);
    assert_int_equal(fault_parse_spec("503,count=2", &f, err, sizeof(err)), 0);
    assert_int_equal(f.kind, FAULT_BUSY503);
    assert_int_equal(f.count, 2);
    assert_int_equal(fault_parse_spec("refuse:2s", &f, err, sizeof(err)), 0);
    assert_int_equal(f.kind, FAULT_REFUSE);
    assert_int_equal(f.duration_ns, 2000000000LL);
    assert_int_equal(fault_parse_spec("hang", &f, err, sizeof(err)), 0);
    assert_int_equal(f.duration_ns, 0);
    assert_int_equal(fault_parse_spec("hang:150ms", &f, err, sizeof(err)), 0);
    assert_int_equal(f.duration_ns, 150000000LL);
    assert_int_equal(
        fault_parse_spec("die-after:5,model=llama3.2", &f, err, sizeof(err)),
        0);
    assert_int_equal(f.kind, FAULT_DIE_AFTER);
    assert_int_equal(f.after, 5);
    assert_string_equal(f.model, "llama3.2");
    assert_int_equal(fault_parse_spec("error-after:0", &f, err, sizeof(err)),
                     0);
    assert_int_equal(f.kind, FAULT_ERROR_AFTER);
    assert_int_equal(f.after, 0);
    assert_int_equal(fault_parse_spec("slow:10x", &f, err, sizeof(err)), 0);
    assert_int_equal(f.kind, FAULT_SLOW);
    assert_true(f.factor == 10.0);
}

static void
test_spec_errors(void **state)
{
    static const char *const bad[] = {
        "",       "boom",        "none",          "die-after",
        "slow",   "slow:0.5x",   "500:3",         "die-after:x",
        "hang:x", "503,count=0", "503,color=red",
    };
    struct fault f;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        assert_int_equal(fault_parse_spec(bad[i], &f, err, sizeof(err)),
                         -EINVAL);
        assert_true(strlen(err) > 0);
    }
}

static void
test_json(void **state)
{
    struct fault f;
    char err[256];
    cJSON *j;

    (void)state;
    j = cJSON_Parse("{\"kind\":\"die_after\",\"after_tokens\":7,"
                    "\"count\":1,\"model\":\"qwen3:8b\"}");
    assert_int_equal(fault_parse_json(j, &f, err, sizeof(err)), 0);
    assert_int_equal(f.kind, FAULT_DIE_AFTER);
    assert_int_equal(f.after, 7);
    assert_int_equal(f.count, 1);
    assert_string_equal(f.model, "qwen3:8b");
    cJSON_Delete(j);

    j = cJSON_Parse("{\"kind\":\"none\"}");
    assert_int_equal(fault_parse_json(j, &f, err, sizeof(err)), 1);
    cJSON_Delete(j);

    j = cJSON_Parse("{\"kind\":\"slow\",\"factor\":\"fast\"}");
    assert_int_equal(fault_parse_json(j, &f, err, sizeof(err)), -EINVAL);
    cJSON_Delete(j);

    j = cJSON_Parse("{\"kind\":42}");
    assert_int_equal(fault_parse_json(j, &f, err, sizeof(err)), -EINVAL);
    cJSON_Delete(j);
}

static void
test_take_counts_and_models(void **state)
{
    struct fault_set fs = {0};
    struct fault f, got;
    char err[256];

    (void)state;
    assert_int_equal(
        fault_parse_spec("500,count=2,model=llama3.2", &f, err, sizeof(err)),
        0);
    assert_int_equal(fault_add(&fs, &f), 0);
    assert_int_equal(fault_parse_spec("slow:3x", &f, err, sizeof(err)), 0);
    assert_int_equal(fault_add(&fs, &f), 0);

    /* Another model skips the first rule and gets the unlimited one. */
    assert_true(fault_take(&fs, "qwen3:8b", &got));
    assert_int_equal(got.kind, FAULT_SLOW);
    /* The rule's model matches the normalised name with ":latest". */
    assert_true(fault_take(&fs, "llama3.2:latest", &got));
    assert_int_equal(got.kind, FAULT_HTTP500);
    assert_true(fault_take(&fs, "LLAMA3.2:latest", &got));
    assert_int_equal(got.kind, FAULT_HTTP500);
    /* Count exhausted: the rule is gone, the slow rule remains. */
    assert_int_equal(fs.n, 1);
    assert_true(fault_take(&fs, "llama3.2:latest", &got));
    assert_int_equal(got.kind, FAULT_SLOW);
    fault_clear(&fs);
    assert_false(fault_take(&fs, "llama3.2:latest", &got));
}

static void
test_refuse_not_stored_and_capacity(void **state)
{
    struct fault_set fs = {0};
    struct fault f;
    char err[256];

    (void)state;
    assert_int_equal(fault_parse_spec("refuse:1s", &f, err, sizeof(err)), 0);
    assert_int_equal(fault_add(&fs, &f), 0);
    assert_int_equal(fs.n, 0);
    assert_int_equal(fault_parse_spec("503", &f, err, sizeof(err)), 0);
    for (int i = 0; i < FAULT_MAX; i++)
        assert_int_equal(fault_add(&fs, &f), 0);
    assert_int_equal(fault_add(&fs, &f), -ENOSPC);
}

static void
test_dump_json(void **state)
{
    struct fault_set fs = {0};
    struct fault f;
    struct buf b;
    char err[256];
    cJSON *j;

    (void)state;
    assert_int_equal(fault_parse_spec("die-after:4,count=1,model=a\"b", &f, err,
                                      sizeof(err)),
                     0);
    assert_int_equal(fault_add(&fs, &f), 0);
    buf_init(&b, 4096);
    assert_int_equal(fault_dump_json(&fs, &b), 0);
    j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(j), 1);
    assert_string_equal(json_get_str(cJSON_GetArrayItem(j, 0), "kind"),
                        "die_after");
    assert_string_equal(json_get_str(cJSON_GetArrayItem(j, 0), "model"),
                        "a\"b");
    cJSON_Delete(j);
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_kinds),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_take_counts_and_models),
        cmocka_unit_test(test_refuse_not_stored_and_capacity),
        cmocka_unit_test(test_dump_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
