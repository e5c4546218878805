/*
 * test_collect.c - one Ollama answer from a stream of NDJSON lines: the
 * text is joined, thinking and tool calls are kept (ollama-herd drops
 * them), the done line's counts and timings are what the client gets,
 * and an error line is an error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "collect.h"

static int
feed(struct collect *c, const char *line, char *err, size_t errlen)
{
    cJSON *v = cJSON_Parse(line);
    int rc;

    assert_non_null(v);
    rc = collect_line(c, &v, err, errlen);
    cJSON_Delete(v);
    return rc;
}

static cJSON *
finish(struct collect *c)
{
    struct buf b;
    cJSON *v;

    buf_init(&b, 1 << 20);
    assert_int_equal(collect_finish(c, &b), 0);
    v = cJSON_Parse(b.data);
    assert_non_null(v);
    buf_cleanup(&b);
    return v;
}

static void
test_chat(void **state)
{
    struct collect c;
    char err[128];
    cJSON *ans;
    const cJSON *msg;

    (void)state;

    collect_init(&c, true);
    assert_int_equal(
        feed(&c,
             "{\"model\":\"m\",\"message\":{\"role\":\"assistant\","
             "\"content\":\"\",\"thinking\":\"hmm \"},\"done\":false}",
             err, sizeof(err)),
        0);
    assert_int_equal(
        feed(&c,
             "{\"model\":\"m\",\"message\":{\"role\":\"assistant\","
             "\"content\":\"Hello\",\"thinking\":\"ok\"},"
             "\"done\":false}",
             err, sizeof(err)),
        0);
    assert_int_equal(
        feed(&c,
             "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":"
             "\" world\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
             "\"arguments\":{\"a\":1}}}]},\"done\":false}",
             err, sizeof(err)),
        0);
    assert_int_equal(
        feed(&c,
             "{\"model\":\"m\",\"created_at\":\"t\",\"message\":{\"role\":"
             "\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":"
             "\"stop\",\"total_duration\":5,\"prompt_eval_count\":7,"
             "\"eval_count\":3}",
             err, sizeof(err)),
        1);
    assert_true(c.done);
    assert_int_equal(c.prompt_tokens, 7);
    assert_int_equal(c.completion_tokens, 3);
    assert_string_equal(c.done_reason, "stop");
    ans = finish(&c);
    msg = json_get(ans, "message");
    assert_string_equal(json_get_str(msg, "content"), "Hello world");
    assert_string_equal(json_get_str(msg, "thinking"), "hmm ok");
    assert_string_equal(json_get_str(msg, "role"), "assistant");
    assert_string_equal(
        json_get_str(
            json_get(cJSON_GetArrayItem(json_get(msg, "tool_calls"), 0),
                     "function"),
            "name"),
        "f");
    assert_null(json_get(ans, "response"));
    assert_true(json_get_bool(ans, "done", false));
    assert_int_equal((int)json_get_num(ans, "total_duration", 0), 5);
    assert_string_equal(json_get_str(ans, "created_at"), "t");
    cJSON_Delete(ans);
    collect_cleanup(&c);
}

static void
test_generate_and_error(void **state)
{
    struct collect c;
    char err[128];
    cJSON *ans;

    (void)state;

    collect_init(&c, false);
    assert_int_equal(
        feed(&c, "{\"response\":\"a\",\"thinking\":\"t\",\"done\":false}", err,
             sizeof(err)),
        0);
    assert_int_equal(feed(&c,
                          "{\"response\":\"b\",\"done\":true,\"eval_count\":2,"
                          "\"context\":[1,2]}",
                          err, sizeof(err)),
                     1);
    assert_int_equal(c.prompt_tokens, -1);
    ans = finish(&c);
    assert_string_equal(json_get_str(ans, "response"), "ab");
    assert_string_equal(json_get_str(ans, "thinking"), "t");
    assert_null(json_get(ans, "message"));
    assert_int_equal(cJSON_GetArraySize(json_get(ans, "context")), 2);
    cJSON_Delete(ans);
    collect_cleanup(&c);

    collect_init(&c, false);
    assert_int_equal(
        feed(&c, "{\"error\":\"model runner crashed\"}", err, sizeof(err)),
        -EIO);
    assert_string_equal(err, "model runner crashed");
    assert_false(c.done);
    collect_cleanup(&c);
}

/*
 * The fast path (collect_line_fast) must take exactly what the parse
 * path takes, line by line: every line of a corpus, and thousands of
 * byte-level mutations of it, go through "fast, else parse" on one
 * collector and "parse" (as exchange.c did before: json_parse, lines
 * that are not a JSON object skipped) on another; the texts, the
 * return codes and the done state must agree after every line. The
 * mutations make invalid JSON, escapes, duplicates, numbers, nesting.
 */
static const char *const corpus[] = {
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":"
    "{\"role\":\"assistant\",\"content\":\"Hello\"},\"done\":false}",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\" wor\","
    "\"thinking\":\"hm\"},\"done\":false}",
    "{\"model\":\"m\",\"response\":\"ld\",\"thinking\":\"x\",\"done\":false}",
    " { \"message\" : { \"content\" : \"a b\" } , \"done\" : false } ",
    "{\"message\":{\"content\":\"q\\\"uote\\n\"},\"done\":false}",
    "{\"message\":{\"content\":\"caf\xc3\xa9"
    "\"},\"done\":false}",
    "{\"message\":{\"content\":\"x\",\"content\":\"y\"},\"done\":false}",
    "{\"message\":{\"content\":null,\"images\":null},\"done\":false}",
    "{\"message\":{\"content\":\"t\",\"tool_calls\":[{\"function\":"
    "{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}",
    "{\"response\":\"r\",\"response\":\"s\"}",
    "{\"error\":\"boom\"}",
    "{}",
    "[]",
    "\"str\"",
    "{\"done\":false,\"done\":true,\"message\":{\"content\":\"d\"}}",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"!\"},"
    "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,"
    "\"eval_count\":2}",
};

static int
slow_feed(struct collect *c, const char *line, size_t len)
{
    cJSON *v = NULL;
    char err[128];
    int rc;

    if (json_parse(line, len, 64, &v, NULL, 0) != 0 || !cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return 0;
    }
    rc = collect_line(c, &v, err, sizeof(err));
    cJSON_Delete(v);
    return rc;
}

static int
fast_feed(struct collect *c, const char *line, size_t len, unsigned *n_fast)
{
    int rc = collect_line_fast(c, line, len);

    if (rc != COLLECT_SLOW) {
        (*n_fast)++;
        return rc;
    }
    return slow_feed(c, line, len);
}

static void
same(const struct collect *a, const struct collect *b)
{
    assert_int_equal(a->content.len, b->content.len);
    assert_int_equal(a->thinking.len, b->thinking.len);
    if (a->content.len)
        assert_memory_equal(a->content.data, b->content.data, a->content.len);
    if (a->thinking.len)
        assert_memory_equal(a->thinking.data, b->thinking.data,
                            a->thinking.len);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->tool_calls == NULL, b->tool_calls == NULL);
}

static void
test_fast_path_agrees(void **state)
{
    static const char alphabet[] = "{}[]\":,\\ tfnu0-e.\x01\xff"
                                   "abc";
    uint32_t seed = 12345;
    unsigned n_fast = 0, n_lines = 0;
    char line[512];

    (void)state;
    for (int chat = 0; chat < 2; chat++) {
        struct collect a, b;

        collect_init(&a, chat);
        collect_init(&b, chat);
        for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
            for (int m = 0; m < 2000; m++) {
                size_t n = strlen(corpus[i]);
                int ra, rb;

                memcpy(line, corpus[i], n);
                /* m == 0: the line as is; else 1 to 3 mutations */
                for (int k = 0; m > 0 && k < 1 + m % 3; k++) {
                    seed = seed * 1103515245u + 12345u;
                    size_t at = (seed >> 8) % n;
                    unsigned op = (seed >> 4) % 3;
                    char ch = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];

                    if (op == 0) {
                        line[at] = ch; /* replace */
                    } else if (op == 1 && n + 1 < sizeof(line)) {
                        memmove(line + at + 1, line + at, n - at);
                        line[at] = ch; /* insert */
                        n++;
                    } else if (n > 1) {
                        memmove(line + at, line + at + 1, n - at - 1);
                        n--; /* delete */
                    }
                }
                if (a.done || b.done) { /* a done collector takes no more */
                    collect_cleanup(&a);
                    collect_cleanup(&b);
                    collect_init(&a, chat);
                    collect_init(&b, chat);
                }
                ra = fast_feed(&a, line, n, &n_fast);
                rb = slow_feed(&b, line, n);
                n_lines++;
                assert_int_equal(ra, rb);
                same(&a, &b);
            }
        }
        collect_cleanup(&a);
        collect_cleanup(&b);
    }
    /* the fast path is really taken, and really declines */
    assert_true(n_fast > n_lines / 20);
    assert_true(n_fast < n_lines);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_generate_and_error),
        cmocka_unit_test(test_fast_path_agrees),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
