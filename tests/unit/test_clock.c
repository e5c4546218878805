/*
 * test_clock.c - unit tests for the clocks and RFC 3339 formatting
 * (src/common/clock.c): fixed instants from the epoch to Ollama's
 * "forever" expiry in 2318, fraction trimming, and local offsets under
 * several TZ settings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "herd/clock.h"

/* 2025-10-26T17:21:21.196249Z */
#define T_OLLAMA (1761499281196249000LL)
/* 2026-03-08T01:24:28.685123456Z */
#define T_2026 (1772933068LL * NS_PER_SEC + 685123456LL)
/* 2026-01-15T12:00:00Z (winter) */
#define T_WINTER (1768478400LL * NS_PER_SEC)

static void
set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int
teardown_tz(void **state)
{
    (void)state;
    unsetenv("TZ");
    tzset();
    return 0;
}

static void
expect_utc(int64_t ns, const char *want)
{
    char out[64];
    int n;

    memset(out, 'x', sizeof(out));
    n = clock_fmt_utc(ns, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
}

static void
expect_local(int64_t ns, int64_t add, const char *want)
{
    char out[64];
    int n;

    n = clock_fmt_local_add(ns, add, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
}

static void
test_utc_fixed_instants(void **state)
{
    (void)state;
    expect_utc(0, "1970-01-01T00:00:00Z");
    expect_utc(1, "1970-01-01T00:00:00.000000001Z");
    expect_utc(-1, "1969-12-31T23:59:59.999999999Z");
    expect_utc(-NS_PER_SEC, "1969-12-31T23:59:59Z");
    expect_utc(T_OLLAMA, "2025-10-26T17:21:21.196249Z");
    expect_utc(T_2026, "2026-03-08T01:24:28.685123456Z");
    expect_utc(951782400LL * NS_PER_SEC, "2000-02-29T00:00:00Z"); /* leap */
    expect_utc(2147483648LL * NS_PER_SEC, "2038-01-19T03:14:08Z");
    expect_utc(4107542400LL * NS_PER_SEC, "2100-03-01T00:00:00Z");
    expect_utc(INT64_MAX, "2262-04-11T23:47:16.854775807Z");
    expect_utc(INT64_MIN, "1677-09-21T00:12:43.145224192Z");
}

static void
test_fraction_trimming(void **state)
{
    (void)state;
    expect_utc(500000000LL, "1970-01-01T00:00:00.5Z");
    expect_utc(120000000LL, "1970-01-01T00:00:00.12Z");
    expect_utc(1000LL, "1970-01-01T00:00:00.000001Z");
    expect_utc(10LL, "1970-01-01T00:00:00.00000001Z");
    expect_utc(7 * NS_PER_SEC, "1970-01-01T00:00:07Z");
}

static void
test_utc_add_past_int64(void **state)
{
    char out[64];

    (void)state;
    /* Ollama's "forever": time.Now().Add(math.MaxInt64). */
    assert_int_equal(clock_fmt_utc_add(T_2026, INT64_MAX, out, sizeof(out)),
                     30);
    assert_string_equal(out, "2318-06-18T01:11:45.539899263Z");
    assert_int_equal(clock_fmt_utc_add(0, INT64_MAX, out, sizeof(out)), 30);
    assert_string_equal(out, "2262-04-11T23:47:16.854775807Z");
    assert_true(clock_fmt_utc_add(-1, 1, out, sizeof(out)) > 0);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    assert_true(clock_fmt_utc_add(T_2026, -T_2026 - 1, out, sizeof(out)) > 0);
    assert_string_equal(out, "1969-12-31T23:59:59.999999999Z");
}

static void
test_buffer_too_small(void **state)
{
    char out[40];

    (void)state;
    /* "2026-03-08T01:24:28.685123456Z" is 30 chars: 31 bytes needed. */
    assert_int_equal(clock_fmt_utc(T_2026, out, 30), -1);
    assert_int_equal(clock_fmt_utc(T_2026, out, 31), 30);
    set_tz("PST8PDT,M3.2.0,M11.1.0");
    assert_int_equal(clock_fmt_local(T_2026, out, 35), -1);
    assert_int_equal(clock_fmt_local(T_2026, out, 36), 35);
}

static void
test_local_offsets(void **state)
{
    (void)state;
    set_tz("UTC0");
    expect_local(T_OLLAMA, 0, "2025-10-26T17:21:21.196249Z");
    expect_local(0, 0, "1970-01-01T00:00:00Z");

    set_tz("PST8PDT,M3.2.0,M11.1.0");
    expect_local(T_OLLAMA, 0, "2025-10-26T10:21:21.196249-07:00");
    expect_local(T_WINTER, 0, "2026-01-15T04:00:00-08:00");

    set_tz("IST-5:30");
    expect_local(T_OLLAMA, 0, "2025-10-26T22:51:21.196249+05:30");

    set_tz("<-0330>3:30");
    expect_local(T_WINTER, 0, "2026-01-15T08:30:00-03:30");

    set_tz("<+1345>-13:45"); /* Chatham-like, crosses the date line */
    expect_local(T_WINTER, 0, "2026-01-16T01:45:00+13:45");
}

static void
test_local_zoneinfo_and_2318(void **state)
{
    char a[64], b[64];

    (void)state;
    set_tz("PST8PDT,M3.2.0,M11.1.0");
    expect_local(T_2026, INT64_MAX, "2318-06-17T18:11:45.539899263-07:00");
    if (access("/usr/share/zoneinfo/America/Los_Angeles", R_OK) == 0) {
        set_tz("America/Los_Angeles");
        expect_local(T_OLLAMA, 0, "2025-10-26T10:21:21.196249-07:00");
        expect_local(T_2026, INT64_MAX, "2318-06-17T18:11:45.539899263-07:00");
    }
    /* clock_fmt_local is clock_fmt_local_add with nothing added. */
    assert_true(clock_fmt_local(T_2026, a, sizeof(a)) > 0);
    assert_true(clock_fmt_local_add(T_2026, 0, b, sizeof(b)) > 0);
    assert_string_equal(a, b);
}

static void
test_clocks_move(void **state)
{
    uint64_t m1, m2;
    int64_t w;
    struct timespec ts = {0, 2000000};

    (void)state;
    m1 = clock_mono_ns();
    nanosleep(&ts, NULL);
    m2 = clock_mono_ns();
    assert_true(m2 - m1 >= 2000000);
    w = clock_wall_ns();
    assert_true(w > T_OLLAMA); /* after this code was written */
    assert_true(w < 4102444800LL * NS_PER_SEC); /* before 2100 */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_fixed_instants),
        cmocka_unit_test(test_fraction_trimming),
        cmocka_unit_test(test_utc_add_past_int64),
        cmocka_unit_test_teardown(test_buffer_too_small, teardown_tz),
        cmocka_unit_test_teardown(test_local_offsets, teardown_tz),
        cmocka_unit_test_teardown(test_local_zoneinfo_and_2318, teardown_tz),
        cmocka_unit_test(test_clocks_move),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
