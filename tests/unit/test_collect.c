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
    rc = collect_line(c, v, err, errlen);
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_generate_and_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
