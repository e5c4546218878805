/*
 * test_buf.c - unit tests for the capped byte buffer (src/common/buf.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/buf.h"

static void
test_init_is_empty(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 100);
    buf_cleanup(&b);
    buf_cleanup(&b); /* idempotent */
    assert_null(b.data);
}

static void
test_append_respects_cap(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "abcd", 4), 0);
    assert_int_equal(buf_append(&b, "efghi", 5), -E2BIG);
    assert_int_equal(b.len, 4); /* unchanged on failure */
    assert_string_equal(b.data, "abcd");
    assert_int_equal(buf_append(&b, "efgh", 4), 0); /* exactly max */
    assert_string_equal(b.data, "abcdefgh");
    assert_int_equal(buf_append(&b, "x", 1), -E2BIG);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 8);
    buf_cleanup(&b);
}

static void
test_append_huge_n_does_not_overflow(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, SIZE_MAX);
    assert_int_equal(buf_append(&b, "ab", 2), 0);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), -E2BIG);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX - 1), -E2BIG);
    assert_string_equal(b.data, "ab");
    buf_cleanup(&b);
}

static void
test_grows_and_keeps_nul(void **state)
{
    struct buf b;
    char chunk[100];
    int i;

    (void)state;
    memset(chunk, 'z', sizeof(chunk));
    buf_init(&b, 1 << 20);
    for (i = 0; i < 100; i++)
        assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[9999], 'z');
    buf_cleanup(&b);
}

static void
test_binary_data(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 4);
    buf_cleanup(&b);
}

static void
test_appends_and_appendf(void **state)
{
    struct buf b;
    char big[1000];

    (void)state;
    buf_init(&b, 4096);
    assert_int_equal(buf_appends(&b, "n="), 0);
    assert_int_equal(buf_appendf(&b, "%d,%s", 42, "x"), 0);
    assert_string_equal(b.data, "n=42,x");
    /* Longer than the internal stack buffer. */
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_appendf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 6 + 2 + 999);
    assert_int_equal(b.data[7], 'q');
    assert_int_equal(b.data[b.len - 1], ']');
    buf_cleanup(&b);
}

static void
test_appendf_respects_cap(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 5);
    assert_int_equal(buf_appendf(&b, "%s", "abc"), 0);
    assert_int_equal(buf_appendf(&b, "%d", 123), -E2BIG);
    assert_string_equal(b.data, "abc");
    assert_int_equal(buf_appendf(&b, "%d", 12), 0);
    assert_string_equal(b.data, "abc12");
    buf_cleanup(&b);
}

static void
test_reset_and_consume(void **state)
{
    struct buf b;
    char *keep;

    (void)state;
    buf_init(&b, 64);
    assert_int_equal(buf_appends(&b, "hello world"), 0);
    keep = b.data;
    buf_consume(&b, 6);
    assert_string_equal(b.data, "world");
    assert_int_equal(b.len, 5);
    buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(buf_appends(&b, "again"), 0);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, keep); /* allocation kept */
    assert_string_equal(b.data, "");
    buf_consume(&b, 1); /* on empty: no-op */
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static void
test_take_transfers_ownership(void **state)
{
    struct buf b;
    size_t len = 99;
    char *s;

    (void)state;
    buf_init(&b, 64);
    s = buf_take(&b, &len); /* empty: fresh "" */
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);

    assert_int_equal(buf_appends(&b, "data"), 0);
    s = buf_take(&b, &len);
    assert_string_equal(s, "data");
    assert_int_equal(len, 4);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(s);
    assert_int_equal(buf_appends(&b, "reuse"), 0); /* still usable */
    assert_string_equal(b.data, "reuse");
    s = buf_take(&b, NULL);
    free(s);
    buf_cleanup(&b);
}

/* RFC 4648's test vectors, and float32 little-endian for embeddings. */
static void
test_base64(void **state)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    const double f[] = {1.0, -2.0};
    double many[100];
    struct buf b;

    (void)state;
    buf_init(&b, 1 << 20);
    for (size_t i = 0; i < sizeof(vec) / sizeof(*vec); i++) {
        buf_reset(&b);
        assert_int_equal(buf_append_base64(&b, vec[i][0], strlen(vec[i][0])),
                         0);
        assert_string_equal(b.data ? b.data : "", vec[i][1]);
    }
    /* 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 */
    buf_reset(&b);
    assert_int_equal(buf_append_f32_base64(&b, f, 2), 0);
    assert_string_equal(b.data, "AACAPwAAAMA=");
    /* across the encoder's internal chunks: 400 bytes -> 536 characters */
    for (int i = 0; i < 100; i++)
        many[i] = 1.0;
    buf_reset(&b);
    assert_int_equal(buf_append_f32_base64(&b, many, 100), 0);
    assert_int_equal(b.len, 536);
    assert_memory_equal(b.data + 528, "AACAPw==", 8);
    buf_cleanup(&b);
    /* the cap still holds */
    buf_init(&b, 3);
    assert_int_equal(buf_append_base64(&b, "foo", 3), -E2BIG);
    buf_cleanup(&b);
}

/* buf_append_i64/u64 write what printf writes, edges included, and
 * leave the buffer as it was when they do not fit. */
static void
test_append_integers(void **state)
{
    static const long long iv[] = {
        0, 1, -1, 9, 10, -10, 123456789, -987654321012LL, LLONG_MAX, LLONG_MIN};
    static const unsigned long long uv[] = {0, 1, 10, 18446744073709551615ull,
                                            4294967296ull};
    char want[64];
    struct buf b;

    (void)state;
    for (size_t i = 0; i < sizeof(iv) / sizeof(iv[0]); i++) {
        buf_init(&b, 64);
        assert_int_equal(buf_append_i64(&b, iv[i]), 0);
        snprintf(want, sizeof(want), "%lld", iv[i]);
        assert_string_equal(b.data, want);
        buf_cleanup(&b);
    }
    for (size_t i = 0; i < sizeof(uv) / sizeof(uv[0]); i++) {
        buf_init(&b, 64);
        assert_int_equal(buf_append_u64(&b, uv[i]), 0);
        snprintf(want, sizeof(want), "%llu", uv[i]);
        assert_string_equal(b.data, want);
        buf_cleanup(&b);
    }
    buf_init(&b, 4);
    assert_int_equal(buf_append_i64(&b, -1234), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_respects_cap),
        cmocka_unit_test(test_append_huge_n_does_not_overflow),
        cmocka_unit_test(test_grows_and_keeps_nul),
        cmocka_unit_test(test_binary_data),
        cmocka_unit_test(test_appends_and_appendf),
        cmocka_unit_test(test_appendf_respects_cap),
        cmocka_unit_test(test_reset_and_consume),
        cmocka_unit_test(test_take_transfers_ownership),
        cmocka_unit_test(test_append_integers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
