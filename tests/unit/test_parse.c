/*
 * test_parse.c - unit tests for the strict parsers (src/common/parse.c),
 * including Go's time.ParseDuration test tables (time/time_test.go).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "herd/parse.h"

#define SEC  1000000000LL
#define MS   1000000LL
#define US   1000LL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void
test_u64(void **state)
{
    uint64_t v = 0;
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse_u64("0", 0, 10, &v, &why), 0);
    assert_int_equal(v, 0);
    assert_int_equal(parse_u64("11434", 1, 65535, &v, &why), 0);
    assert_int_equal(v, 11434);
    assert_int_equal(parse_u64("18446744073709551615", 0, UINT64_MAX, &v, &why),
                     0);
    assert_true(v == UINT64_MAX);
    v = 7;
    assert_int_equal(parse_u64("18446744073709551616", 0, UINT64_MAX, &v, &why),
                     -ERANGE);
    assert_string_equal(why, "out of range");
    assert_int_equal(v, 7); /* untouched on failure */
    assert_int_equal(parse_u64("65536", 1, 65535, &v, &why), -ERANGE);
    assert_string_equal(why, "out of range");
    assert_int_equal(parse_u64("0", 1, 65535, &v, &why), -ERANGE);
    assert_int_equal(parse_u64("", 0, 10, &v, &why), -EINVAL);
    assert_string_equal(why, "not a number");
    assert_int_equal(parse_u64("abc", 0, 10, &v, &why), -EINVAL);
    assert_string_equal(why, "not a number");
    assert_int_equal(parse_u64(" 1", 0, 10, &v, &why), -EINVAL);
    assert_int_equal(parse_u64("-1", 0, 10, &v, &why), -EINVAL);
    assert_int_equal(parse_u64("+1", 0, 10, &v, &why), -EINVAL);
    assert_int_equal(parse_u64("80x", 0, 100, &v, &why), -EINVAL);
    assert_string_equal(why, "trailing characters");
    assert_int_equal(parse_u64("1 ", 0, 10, &v, &why), -EINVAL);
    assert_int_equal(parse_u64("0x10", 0, 100, &v, NULL), -EINVAL);
    assert_int_equal(v, 7);
}

static void
test_i64(void **state)
{
    int64_t v = 0;
    const char *why = NULL;

    (void)state;
    assert_int_equal(parse_i64("-5", -10, 10, &v, &why), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_i64("+5", -10, 10, &v, &why), 0);
    assert_int_equal(v, 5);
    assert_int_equal(
        parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v, &why), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(
        parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v, &why), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(
        parse_i64("9223372036854775808", INT64_MIN, INT64_MAX, &v, &why),
        -ERANGE);
    assert_int_equal(
        parse_i64("-9223372036854775809", INT64_MIN, INT64_MAX, &v, &why),
        -ERANGE);
    assert_int_equal(parse_i64("-11", -10, 10, &v, &why), -ERANGE);
    assert_string_equal(why, "out of range");
    assert_int_equal(parse_i64("-", -10, 10, &v, &why), -EINVAL);
    assert_string_equal(why, "not a number");
    assert_int_equal(parse_i64("--1", -10, 10, &v, &why), -EINVAL);
    assert_int_equal(parse_i64("1.0", -10, 10, &v, &why), -EINVAL);
    assert_string_equal(why, "trailing characters");
    assert_int_equal(parse_i64("", -10, 10, &v, &why), -EINVAL);
}

static void
test_double(void **state)
{
    static const struct {
        const char *in;
        int rc;
        double want;
    } cases[] = {
        {"0", 0, 0},           {"1.5", 0, 1.5},      {"-2.25", 0, -2.25},
        {"+3", 0, 3},          {".5", 0, 0.5},       {"5.", 0, 5},
        {"1e3", 0, 1000},      {"1E-2", 0, 0.01},    {"2.5e+1", 0, 25},
        {"", -EINVAL, 0},      {".", -EINVAL, 0},    {"e5", -EINVAL, 0},
        {"1e", -EINVAL, 0},    {"1e+", -EINVAL, 0},  {"nan", -EINVAL, 0},
        {"inf", -EINVAL, 0},   {"-inf", -EINVAL, 0}, {"0x10", -EINVAL, 0},
        {" 1", -EINVAL, 0},    {"1 ", -EINVAL, 0},   {"1.2.3", -EINVAL, 0},
        {"1e999", -ERANGE, 0}, {"2001", -ERANGE, 0}, {"-2001", -ERANGE, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        double v = 12345;
        const char *why = NULL;
        int rc = parse_double(cases[i].in, -2000, 2000, &v, &why);

        if (rc != cases[i].rc)
            fail_msg("parse_double(\"%s\") = %d, want %d", cases[i].in, rc,
                     cases[i].rc);
        if (rc == 0)
            assert_true(v == cases[i].want);
        else
            assert_true(v == 12345 && why != NULL);
    }
}

static void
test_bool(void **state)
{
    static const char *const yes[] = {"true", "TRUE", "True", "1", "yes",
                                      "YES",  "on",   "On",   "t", "y"};
    static const char *const no[] = {"false", "FALSE", "0", "no",
                                     "No",    "off",   "f", "n"};
    static const char *const bad[] = {"",    "2",    "tru",     "yess",
                                      " on", "off ", "enabled", "-1"};
    const char *why = NULL;
    bool v;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(yes); i++) {
        v = false;
        assert_int_equal(parse_bool(yes[i], &v, &why), 0);
        assert_true(v);
    }
    for (i = 0; i < ARRAY_LEN(no); i++) {
        v = true;
        assert_int_equal(parse_bool(no[i], &v, &why), 0);
        assert_false(v);
    }
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        why = NULL;
        if (parse_bool(bad[i], &v, &why) != -EINVAL)
            fail_msg("parse_bool(\"%s\") accepted", bad[i]);
        assert_string_equal(why, "not a boolean");
    }
}

/* Go's parseDurationTests, plus a few of ours. */
static const struct {
    const char *in;
    int64_t want;
} go_ok[] = {
    {"0", 0},
    {"5s", 5 * SEC},
    {"30s", 30 * SEC},
    {"1478s", 1478 * SEC},
    {"-5s", -5 * SEC},
    {"+5s", 5 * SEC},
    {"-0", 0},
    {"+0", 0},
    {"5.0s", 5 * SEC},
    {"5.6s", 5 * SEC + 600 * MS},
    {"5.s", 5 * SEC},
    {".5s", 500 * MS},
    {"1.0s", 1 * SEC},
    {"1.00s", 1 * SEC},
    {"1.004s", 1 * SEC + 4 * MS},
    {"1.0040s", 1 * SEC + 4 * MS},
    {"100.00100s", 100 * SEC + 1 * MS},
    {"10ns", 10},
    {"11us", 11 * US},
    {"12\xc2\xb5s", 12 * US}, /* U+00B5 */
    {"12\xce\xbcs", 12 * US}, /* U+03BC */
    {"13ms", 13 * MS},
    {"14s", 14 * SEC},
    {"15m", 15 * MIN},
    {"16h", 16 * HOUR},
    {"3h30m", 3 * HOUR + 30 * MIN},
    {"10.5s4m", 4 * MIN + 10 * SEC + 500 * MS},
    {"-2m3.4s", -(2 * MIN + 3 * SEC + 400 * MS)},
    {"1h2m3s4ms5us6ns", 1 * HOUR + 2 * MIN + 3 * SEC + 4 * MS + 5 * US + 6},
    {"39h9m14.425s", 39 * HOUR + 9 * MIN + 14 * SEC + 425 * MS},
    {"52763797000ns", 52763797000LL},
    {"0.3333333333333333333h", 20 * MIN},
    {"9007199254740993ns", (1LL << 53) + 1},
    {"9223372036854775807ns", INT64_MAX},
    {"9223372036854775.807us", INT64_MAX},
    {"9223372036s854ms775us807ns", INT64_MAX},
    {"-9223372036854775808ns", INT64_MIN},
    {"-9223372036854775.808us", INT64_MIN},
    {"-9223372036s854ms775us808ns", INT64_MIN},
    {"-2562047h47m16.854775808s", INT64_MIN},
    {"0.100000000000000000000h", 6 * MIN},
    {"0.830103483285477580700h", 49 * MIN + 48 * SEC + 372539827},
    {"1.5h", 90 * MIN},
    {"300ms", 300 * MS},
    {"-1m", -MIN},
    {"0s", 0},
    {"1h1h", 2 * HOUR},
};

static void
test_go_duration_ok(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(go_ok); i++) {
        int64_t ns = 12345;
        const char *why = NULL;
        int rc = parse_go_duration(go_ok[i].in, &ns, &why);

        if (rc != 0)
            fail_msg("\"%s\": rc %d (%s)", go_ok[i].in, rc, why);
        if (ns != go_ok[i].want)
            fail_msg("\"%s\": %lld, want %lld", go_ok[i].in, (long long)ns,
                     (long long)go_ok[i].want);
    }
}

/* Go's parseDurationErrorTests with the message each one gets. */
static const struct {
    const char *in;
    int rc;
    const char *why;
} go_bad[] = {
    {"", -EINVAL, "invalid duration"},
    {"3", -EINVAL, "missing unit in duration"},
    {"-", -EINVAL, "invalid duration"},
    {"s", -EINVAL, "invalid duration"},
    {".", -EINVAL, "invalid duration"},
    {"-.", -EINVAL, "invalid duration"},
    {".s", -EINVAL, "invalid duration"},
    {"+.s", -EINVAL, "invalid duration"},
    {"1d", -EINVAL, "unknown unit in duration"},
    {"\x85\x85", -EINVAL, "invalid duration"},
    {"\xff"
     "ff",
     -EINVAL, "invalid duration"},
    {"hello \xff"
     "ff world",
     -EINVAL, "invalid duration"},
    {"\xef\xbf\xbd", -EINVAL, "invalid duration"},
    {"9223372036854775810ns", -ERANGE, "invalid duration"},
    {"9223372036854775808ns", -ERANGE, "invalid duration"},
    {"-9223372036854775809ns", -ERANGE, "invalid duration"},
    {"9223372036854776us", -ERANGE, "invalid duration"},
    {"3000000h", -ERANGE, "invalid duration"},
    {"9223372036854775.808us", -ERANGE, "invalid duration"},
    {"9223372036854ms775us808ns", -ERANGE, "invalid duration"},
    /* ours */
    {"00", -EINVAL, "missing unit in duration"},
    {"0.0", -EINVAL, "missing unit in duration"},
    {"1.5", -EINVAL, "missing unit in duration"},
    {"5m3", -EINVAL, "missing unit in duration"},
    {"1h 2m", -EINVAL, "unknown unit in duration"},
    {"1S", -EINVAL, "unknown unit in duration"},
    {"1sec", -EINVAL, "unknown unit in duration"},
    {"1\xc2\xb5", -EINVAL, "unknown unit in duration"},
    {" 1s", -EINVAL, "invalid duration"},
    {"--1s", -EINVAL, "invalid duration"},
    {"+-1s", -EINVAL, "invalid duration"},
    {"1..5s", -EINVAL, "missing unit in duration"},
};

static void
test_go_duration_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(go_bad); i++) {
        int64_t ns = 12345;
        const char *why = NULL;
        int rc = parse_go_duration(go_bad[i].in, &ns, &why);

        if (rc != go_bad[i].rc)
            fail_msg("\"%s\": rc %d, want %d", go_bad[i].in, rc, go_bad[i].rc);
        if (why == NULL || strcmp(why, go_bad[i].why) != 0)
            fail_msg("\"%s\": why \"%s\", want \"%s\"", go_bad[i].in,
                     why != NULL ? why : "(null)", go_bad[i].why);
        if (rc == -EINVAL && ns != 12345)
            fail_msg("\"%s\": *ns written on a syntax error", go_bad[i].in);
    }
}

static void
test_go_duration_saturates(void **state)
{
    int64_t ns = 0;

    (void)state;
    assert_int_equal(parse_go_duration("3000000h", &ns, NULL), -ERANGE);
    assert_true(ns == INT64_MAX);
    assert_int_equal(parse_go_duration("-3000000h", &ns, NULL), -ERANGE);
    assert_true(ns == -INT64_MAX);
    assert_int_equal(parse_go_duration("9223372036854775808ns", &ns, NULL),
                     -ERANGE);
    assert_true(ns == INT64_MAX);
    assert_int_equal(parse_go_duration("99999999999999999999999h", &ns, NULL),
                     -ERANGE);
    assert_true(ns == INT64_MAX);
}

static void
test_duration_or_secs(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
        const char *why;
    } cases[] = {
        {"5m", 0, 5 * MIN, NULL},
        {"0", 0, 0, NULL},
        {"300", 0, 300 * SEC, NULL},
        {"1.5", 0, 1500 * MS, NULL},
        {"-1", 0, -SEC, NULL},
        {"-1m", 0, -MIN, NULL},
        {"0.000000001", 0, 1, NULL},
        {"1e3", 0, 1000 * SEC, NULL},
        {"", -EINVAL, 0, "invalid duration"},
        {"abc", -EINVAL, 0, "invalid duration"},
        {"5x", -EINVAL, 0, "unknown unit in duration"},
        {"5 m", -EINVAL, 0, "unknown unit in duration"},
        {"nan", -EINVAL, 0, "invalid duration"},
        {"1e300", -ERANGE, INT64_MAX, "invalid duration"},
        {"-1e300", -ERANGE, -INT64_MAX, "invalid duration"},
        {"9223372037", -ERANGE, INT64_MAX, "invalid duration"},
        {"3000000h", -ERANGE, INT64_MAX, "invalid duration"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        int64_t ns = 12345;
        const char *why = NULL;
        int rc = parse_duration_or_secs(cases[i].in, &ns, &why);

        if (rc != cases[i].rc)
            fail_msg("\"%s\": rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc != -EINVAL && ns != cases[i].want)
            fail_msg("\"%s\": %lld, want %lld", cases[i].in, (long long)ns,
                     (long long)cases[i].want);
        if (cases[i].why != NULL &&
            (why == NULL || strcmp(why, cases[i].why) != 0))
            fail_msg("\"%s\": why \"%s\"", cases[i].in,
                     why != NULL ? why : "(null)");
    }
}

static void
test_size(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } cases[] = {
        {"512", 0, 512},
        {"0", 0, 0},
        {"100B", 0, 100},
        {"64KiB", 0, 64 * 1024},
        {"64kib", 0, 64 * 1024},
        {"8MB", 0, 8000000},
        {"8M", 0, 8000000},
        {"16GiB", 0, UINT64_C(16) << 30},
        {"16Gi", 0, UINT64_C(16) << 30},
        {"1.5GB", 0, 1500000000},
        {"1.5GiB", 0, UINT64_C(3) << 29},
        {"0.3KB", 0, 300},
        {"2TiB", 0, UINT64_C(2) << 40},
        {"1KB", 0, 1000},
        {"18446744073709551615", 0, UINT64_MAX},
        {"", -EINVAL, 0},
        {"KB", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"1.KB", -EINVAL, 0},
        {".5KB", -EINVAL, 0},
        {"1 KB", -EINVAL, 0},
        {"1XB", -EINVAL, 0},
        {"1KBB", -EINVAL, 0},
        {"18446744073709551616", -ERANGE, 0},
        {"17179869184GiB", -ERANGE, 0},
        {"20000000000GB", -ERANGE, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        uint64_t v = 12345;
        const char *why = NULL;
        int rc = parse_size(cases[i].in, &v, &why);

        if (rc != cases[i].rc)
            fail_msg("parse_size(\"%s\") = %d, want %d", cases[i].in, rc,
                     cases[i].rc);
        if (rc == 0 && v != cases[i].want)
            fail_msg("parse_size(\"%s\") = %llu, want %llu", cases[i].in,
                     (unsigned long long)v, (unsigned long long)cases[i].want);
        if (rc != 0 && (v != 12345 || why == NULL))
            fail_msg("parse_size(\"%s\"): bad failure state", cases[i].in);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_go_duration_ok),
        cmocka_unit_test(test_go_duration_errors),
        cmocka_unit_test(test_go_duration_saturates),
        cmocka_unit_test(test_duration_or_secs),
        cmocka_unit_test(test_size),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
