/*
 * test_json.c - unit tests for the JSON helpers (src/common/json.c): Go's
 * exact syntax error texts, EOF handling, the depth cap, NUL bytes, Go's
 * string escaping, printing and the lookup helpers.
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

#include "herd/json.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A document, its length (0 = strlen), and Go's encoding/json message. */
static const struct {
    const char *in;
    size_t len;
    const char *msg;
} bad_docs[] = {
    {"x", 0, "invalid character 'x' looking for beginning of value"},
    {"{\"a\" 1}", 0, "invalid character '1' after object key"},
    {"{\"a\"}", 0, "invalid character '}' after object key"},
    {"{\"a\":1 \"b\":2}", 0,
     "invalid character '\"' after object key:value pair"},
    {"{\"a\":1]", 0, "invalid character ']' after object key:value pair"},
    {"[1 2]", 0, "invalid character '2' after array element"},
    {"[01]", 0, "invalid character '1' after array element"},
    {"[1}", 0, "invalid character '}' after array element"},
    {"{1:2}", 0,
     "invalid character '1' looking for beginning of object key string"},
    {"{\"a\":1,}", 0,
     "invalid character '}' looking for beginning of object key string"},
    {"{'a':1}", 0,
     "invalid character '\\'' looking for beginning of object key string"},
    {"[1,]", 0, "invalid character ']' looking for beginning of value"},
    {"{\"a\":}", 0, "invalid character '}' looking for beginning of value"},
    {"\"a\nb\"", 0, "invalid character '\\n' in string literal"},
    {"\"a\tb\"", 0, "invalid character '\\t' in string literal"},
    {"\"\x01\"", 0, "invalid character '\\x01' in string literal"},
    {"\"\x1f\"", 0, "invalid character '\\x1f' in string literal"},
    {"\"\r\"", 0, "invalid character '\\r' in string literal"},
    {"\"\x07\x08\"", 0, "invalid character '\\a' in string literal"},
    {"\"\x0b\"", 0, "invalid character '\\v' in string literal"},
    {"\"\x0c\"", 0, "invalid character '\\f' in string literal"},
    {"tx", 0, "invalid character 'x' in literal true (expecting 'r')"},
    {"trx", 0, "invalid character 'x' in literal true (expecting 'u')"},
    {"trux", 0, "invalid character 'x' in literal true (expecting 'e')"},
    {"fx", 0, "invalid character 'x' in literal false (expecting 'a')"},
    {"falsy", 0, "invalid character 'y' in literal false (expecting 'e')"},
    {"nul1", 0, "invalid character '1' in literal null (expecting 'l')"},
    {"nan", 0, "invalid character 'a' in literal null (expecting 'u')"},
    {"[True]", 0, "invalid character 'T' looking for beginning of value"},
    {"NaN", 0, "invalid character 'N' looking for beginning of value"},
    {"-x", 0, "invalid character 'x' in numeric literal"},
    {"[-]", 0, "invalid character ']' in numeric literal"},
    {"1.x", 0, "invalid character 'x' after decimal point in numeric literal"},
    {"1ex", 0, "invalid character 'x' in exponent of numeric literal"},
    {"1e+}", 0, "invalid character '}' in exponent of numeric literal"},
    {"+1", 0, "invalid character '+' looking for beginning of value"},
    {".5", 0, "invalid character '.' looking for beginning of value"},
    {"\"\\x\"", 0, "invalid character 'x' in string escape code"},
    {"\"\\u12x4\"", 0,
     "invalid character 'x' in \\u hexadecimal character escape"},
    {"'a'", 0, "invalid character '\\'' looking for beginning of value"},
    {"\\", 0, "invalid character '\\\\' looking for beginning of value"},
    {"\x7f", 0, "invalid character '\\x7f' looking for beginning of value"},
    {"\x80", 0, "invalid character '\\u0080' looking for beginning of value"},
    {"\xa0", 0, "invalid character '\\u00a0' looking for beginning of value"},
    {"\xad", 0, "invalid character '\\u00ad' looking for beginning of value"},
    /* Go quotes the byte as a Latin-1 rune: a UTF-8 BOM reads 'ï'. */
    {"\xef\xbb\xbf{}", 0,
     "invalid character '\xc3\xaf' looking for beginning of value"},
    {"\xc3\xa9", 0,
     "invalid character '\xc3\x83' looking for beginning of value"},
    {"\xff", 0, "invalid character '\xc3\xbf' looking for beginning of value"},
    /* NUL bytes are characters, never an end of input. */
    {"\0{}", 2, "invalid character '\\x00' looking for beginning of value"},
    {"{\"a\0\":1}", 8, "invalid character '\\x00' in string literal"},
    {"[1,\0]", 5, "invalid character '\\x00' looking for beginning of value"},
    {"{\"a\":1\0}", 8, "invalid character '\\x00' after object key:value pair"},
    /* Cut short. */
    {"{\"a\":1", 0, "unexpected EOF"},
    {"\"abc", 0, "unexpected EOF"},
    {"{\"key\":\"unterminated value", 0, "unexpected EOF"},
    {"{\"a\"", 0, "unexpected EOF"},
    {"{", 0, "unexpected EOF"},
    {"[", 0, "unexpected EOF"},
    {"[1,2", 0, "unexpected EOF"},
    {"  [ ", 0, "unexpected EOF"},
    {"tru", 0, "unexpected EOF"},
    {"-", 0, "unexpected EOF"},
    {"1.", 0, "unexpected EOF"},
    {"1e", 0, "unexpected EOF"},
    {"1e-", 0, "unexpected EOF"},
    {"\"abc", 0, "unexpected EOF"},
    {"\"\\u12", 0, "unexpected EOF"},
    {"\"\\", 0, "unexpected EOF"},
};

static void
test_go_syntax_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad_docs); i++) {
        const char *in = bad_docs[i].in;
        size_t len = bad_docs[i].len != 0 ? bad_docs[i].len : strlen(in);
        cJSON *root = (cJSON *)&root; /* must be reset to NULL */
        char err[128] = "";
        int rc = json_parse(in, len, 0, &root, err, sizeof(err));

        if (rc != -EINVAL || strcmp(err, bad_docs[i].msg) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err,
                     bad_docs[i].msg);
        assert_null(root);
    }
}

static void
test_empty_is_enodata(void **state)
{
    static const char *const empties[] = {"", " ", " \n\t\r "};
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(empties); i++) {
        cJSON *root = NULL;
        char err[32] = "";

        assert_int_equal(json_parse(empties[i], strlen(empties[i]), 0, &root,
                                    err, sizeof(err)),
                         -ENODATA);
        assert_string_equal(err, "EOF");
        assert_null(root);
    }
}

static void
test_valid_and_trailing_data(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *compact;
    } ok[] = {
        {"{}", 0, "{}"},
        {" [ ] ", 0, "[]"},
        {"{\"a\":[1,2,{\"b\":null}],\"c\":true}", 0,
         "{\"a\":[1,2,{\"b\":null}],\"c\":true}"},
        {"\"x\"", 0, "\"x\""},
        {"123", 0, "123"},
        {"-0.5e+2", 0, "-50"},
        {"false", 0, "false"},
        /* Trailing data is ignored, as json.Decoder does. */
        {"{} x", 0, "{}"},
        {"1 2", 0, "1"},
        {"[1]]", 0, "[1]"},
        {"01", 0, "0"},
        {"true false", 0, "true"},
        {"\"s\"garbage", 0, "\"s\""},
        {"{}\0junk", 7, "{}"},
        {"7\0", 2, "7"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(ok); i++) {
        size_t len = ok[i].len != 0 ? ok[i].len : strlen(ok[i].in);
        cJSON *root = NULL;
        char err[128] = "";
        struct buf b;
        int rc = json_parse(ok[i].in, len, 0, &root, err, sizeof(err));

        if (rc != 0)
            fail_msg("case %zu (%s): rc %d, %s", i, ok[i].in, rc, err);
        buf_init(&b, 1024);
        assert_int_equal(json_print(root, &b), 0);
        assert_string_equal(b.data, ok[i].compact);
        buf_cleanup(&b);
        cJSON_Delete(root);
    }
}

static void
test_unterminated_buffer(void **state)
{
    static const char *const docs[] = {"123", "true", "{\"a\":1}", "\"s\""};
    size_t i;

    (void)state;
    /* Exact-size heap copies: ASan catches any read past the end. */
    for (i = 0; i < ARRAY_LEN(docs); i++) {
        size_t len = strlen(docs[i]);
        char *p = malloc(len);
        cJSON *root = NULL;

        assert_non_null(p);
        memcpy(p, docs[i], len);
        assert_int_equal(json_parse(p, len, 0, &root, NULL, 0), 0);
        assert_non_null(root);
        cJSON_Delete(root);
        free(p);
    }
}

static char *
nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 2);
    int i;

    assert_non_null(s);
    for (i = 0; i < depth; i++)
        s[i] = '[';
    s[depth] = '1';
    for (i = 0; i < depth; i++)
        s[depth + 1 + i] = ']';
    s[depth * 2 + 1] = '\0';
    return s;
}

static void
test_depth_cap(void **state)
{
    char err[64];
    cJSON *root = NULL;
    char *s;

    (void)state;
    assert_int_equal(json_parse("[[[1]]]", 7, 3, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
    assert_int_equal(json_parse("[[[[1]]]]", 9, 3, &root, err, sizeof(err)),
                     -E2BIG);
    assert_string_equal(err, "exceeded max depth");
    assert_null(root);
    assert_int_equal(json_parse("{\"a\":{\"b\":{\"c\":{}}}}", 20, 3, &root, err,
                                sizeof(err)),
                     -E2BIG);
    /* Checked before the rest is read: no EOF error for a cut document. */
    assert_int_equal(json_parse("[[[[", 4, 3, &root, err, sizeof(err)), -E2BIG);

    s = nested(JSON_DEFAULT_MAX_DEPTH);
    assert_int_equal(json_parse(s, strlen(s), 0, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
    free(s);
    s = nested(JSON_DEFAULT_MAX_DEPTH + 1);
    assert_int_equal(json_parse(s, strlen(s), 0, &root, err, sizeof(err)),
                     -E2BIG);
    free(s);
    /* A huge cap must not mean a huge allocation. */
    assert_int_equal(json_parse("[[1]]", 5, INT_MAX, &root, err, sizeof(err)),
                     0);
    cJSON_Delete(root);
    assert_int_equal(json_parse("[]", 2, 1, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
    assert_int_equal(json_parse("[[]]", 4, 1, &root, err, sizeof(err)), -E2BIG);
    s = nested(100000); /* no stack growth, no allocation per level */
    assert_int_equal(json_parse(s, strlen(s), 0, &root, err, sizeof(err)),
                     -E2BIG);
    free(s);
}

static void
test_errbuf_truncation(void **state)
{
    char err[8];
    cJSON *root = NULL;

    (void)state;
    assert_int_equal(json_parse("x", 1, 0, &root, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "invalid");
}

static void
expect_escaped(const char *in, size_t n, const char *want)
{
    struct buf b;

    buf_init(&b, 4096);
    assert_int_equal(json_append_str(&b, in, n), 0);
    assert_string_equal(b.data, want);
    buf_cleanup(&b);
}

static void
test_append_str_go_escaping(void **state)
{
    (void)state;
    expect_escaped("plain", 5, "\"plain\"");
    expect_escaped("", 0, "\"\"");
    expect_escaped("a<b>&c", 6, "\"a\\u003cb\\u003e\\u0026c\"");
    expect_escaped("\"\\/", 3, "\"\\\"\\\\/\"");
    expect_escaped("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    expect_escaped("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    expect_escaped("a\0b", 3, "\"a\\u0000b\"");
    expect_escaped("\xe2\x80\xa8|\xe2\x80\xa9", 7, "\"\\u2028|\\u2029\"");
    /* Valid UTF-8 passes through, including U+FFFD itself. */
    expect_escaped("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd", 12,
                   "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd\"");
    /* Invalid UTF-8: one \ufffd per bad byte, as Go's DecodeRune. */
    expect_escaped("\xff", 1, "\"\\ufffd\"");
    expect_escaped("a\xc3", 2, "\"a\\ufffd\"");
    expect_escaped("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");
    expect_escaped("\xe2\x82x", 3, "\"\\ufffd\\ufffdx\"");
    expect_escaped("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
    expect_escaped("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");
    expect_escaped("\xe0\x80\xaf", 3, "\"\\ufffd\\ufffd\\ufffd\"");
    expect_escaped("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    expect_escaped("\xf0\x9f\x98", 3, "\"\\ufffd\\ufffd\\ufffd\"");
    expect_escaped("\x80", 1, "\"\\ufffd\"");
    /* Only n bytes are read. */
    expect_escaped("abcdef", 3, "\"abc\"");
}

static void
test_append_str_cap(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 10);
    assert_int_equal(buf_appends(&b, "k:"), 0);
    assert_int_equal(json_append_str(&b, "<<", 2), -E2BIG);
    assert_string_equal(b.data, "k:"); /* unchanged */
    assert_int_equal(b.len, 2);
    assert_int_equal(json_append_str(&b, "abcdef", 6), 0);
    assert_string_equal(b.data, "k:\"abcdef\"");
    buf_cleanup(&b);
}

static void
test_print_cap(void **state)
{
    cJSON *root = NULL;
    struct buf b;

    (void)state;
    assert_int_equal(
        json_parse("{\"k\":\"0123456789\"}", 18, 0, &root, NULL, 0), 0);
    buf_init(&b, 10);
    assert_int_equal(json_print(root, &b), -E2BIG);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
    cJSON_Delete(root);
}

static void
test_go_kind(void **state)
{
    static const struct {
        const char *doc, *kind;
    } cases[] = {
        {"\"s\"", "string"}, {"1.5", "number"}, {"true", "bool"},
        {"false", "bool"},   {"[]", "array"},   {"{}", "object"},
        {"null", "null"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        cJSON *root = NULL;

        assert_int_equal(
            json_parse(cases[i].doc, strlen(cases[i].doc), 0, &root, NULL, 0),
            0);
        assert_string_equal(json_go_kind(root), cases[i].kind);
        cJSON_Delete(root);
    }
    assert_string_equal(json_go_kind(NULL), "null");
}

static void
test_getters(void **state)
{
    const char *doc = "{\"model\":\"llama3\",\"stream\":false,\"n\":42.5,"
                      "\"Model\":\"other\",\"opts\":{\"x\":1},"
                      "\"dup\":1,\"dup\":2,\"s\":\"str\",\"nil\":null}";
    cJSON *root = NULL;

    (void)state;
    assert_int_equal(json_parse(doc, strlen(doc), 0, &root, NULL, 0), 0);
    assert_string_equal(json_get_str(root, "model"), "llama3");
    assert_string_equal(json_get_str(root, "Model"), "other");
    assert_null(json_get_str(root, "MODEL"));  /* case-sensitive */
    assert_null(json_get_str(root, "stream")); /* wrong type */
    assert_null(json_get_str(root, "missing"));
    assert_false(json_get_bool(root, "stream", true));
    assert_true(json_get_bool(root, "missing", true));
    assert_true(json_get_bool(root, "s", true)); /* wrong type -> def */
    assert_true(json_get_num(root, "n", 0) == 42.5);
    assert_true(json_get_num(root, "s", -1) == -1);
    assert_true(json_get_num(root, "nil", 7) == 7);
    assert_true(json_get_num(root, "dup", 0) == 2); /* last wins, as Go */
    assert_non_null(json_get(root, "opts"));
    assert_true(json_get_num(json_get(root, "opts"), "x", 0) == 1);
    assert_null(json_get(root, "nope"));
    assert_null(json_get(NULL, "model"));
    assert_null(json_get_str(json_get(root, "model"), "x")); /* not object */
    cJSON_Delete(root);
}

/* json_print is our own printer; it must write exactly what cJSON
 * writes, for every kind of value (numbers above all: cJSON decides
 * between %d, %1.15g and %1.17g). */
static void
print_same(const cJSON *v)
{
    char *want = cJSON_PrintUnformatted(v);
    struct buf b;

    assert_non_null(want);
    buf_init(&b, 1 << 20);
    assert_int_equal(json_print(v, &b), 0);
    assert_string_equal(b.data, want);
    buf_cleanup(&b);
    cJSON_free(want);
}

static void
test_print_matches_cjson(void **state)
{
    static const double nums[] = {
        0.0,
        -0.0,
        1,
        -1,
        0.5,
        -2.25,
        1e-7,
        123456789,
        2147483647.0,
        2147483648.0,
        -2147483648.0,
        -2147483649.0,
        3e9,
        647474945,
        999999999999999.0,
        1e15,
        1e16,
        12345678901234567.0,
        1e300,
        -1e-300,
        0.1,
        1.0 / 3.0,
        2.0 / 3.0,
        4.35,
        100.125,
        5e-324,
        1.7976931348623157e308,
        9007199254740993.0,
        0.30000000000000004,
    };
    uint64_t x = 88172645463325252ull;
    char s[256];
    cJSON *arr = cJSON_CreateArray(), *obj = cJSON_CreateObject();

    (void)state;
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        cJSON *n = cJSON_CreateNumber(nums[i]);

        print_same(n);
        cJSON_Delete(n);
    }
    for (int i = 0; i < 20000; i++) { /* random bit patterns and scales */
        cJSON *n;
        double d;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (i % 3 == 0)
            memcpy(&d, &x, sizeof(d)); /* any double, NaN and inf too */
        else if (i % 3 == 1)
            d = (double)(int64_t)(x >> (x % 64)) * (i % 2 ? 1 : -1);
        else
            d = (double)(x % 1000000) / (double)(1 + x % 1000);
        n = cJSON_CreateNumber(d);
        print_same(n);
        cJSON_Delete(n);
    }
    for (int c = 1; c < 256; c++) { /* every byte in a string and a key */
        s[0] = 'a';
        s[1] = (char)c;
        s[2] = 'z';
        s[3] = '\0';
        cJSON_AddItemToArray(arr, cJSON_CreateString(s));
        cJSON_AddNumberToObject(obj, s, c);
    }
    cJSON_AddItemToArray(arr, cJSON_CreateString(""));
    cJSON_AddItemToArray(arr, cJSON_CreateNull());
    cJSON_AddItemToArray(arr, cJSON_CreateTrue());
    cJSON_AddItemToArray(arr, cJSON_CreateFalse());
    cJSON_AddItemToArray(arr, cJSON_CreateObject());
    cJSON_AddItemToArray(arr, cJSON_CreateArray());
    cJSON_AddItemToArray(arr, cJSON_CreateRaw("{\"raw\":1}"));
    cJSON_AddItemToObject(obj, "list", arr);
    print_same(obj);
    cJSON_Delete(obj);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_syntax_errors),
        cmocka_unit_test(test_empty_is_enodata),
        cmocka_unit_test(test_valid_and_trailing_data),
        cmocka_unit_test(test_unterminated_buffer),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_errbuf_truncation),
        cmocka_unit_test(test_append_str_go_escaping),
        cmocka_unit_test(test_append_str_cap),
        cmocka_unit_test(test_print_cap),
        cmocka_unit_test(test_print_matches_cjson),
        cmocka_unit_test(test_go_kind),
        cmocka_unit_test(test_getters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
