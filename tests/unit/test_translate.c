/*
 * test_translate.c - OpenAI <-> Ollama translation: request mapping keeps
 * every field, streamed answers follow the OpenAI wire format the
 * official client expects, errors never look like a finished answer, and
 * the NDJSON splitter is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "translate.h"

static cJSON *
parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);

    assert_non_null(j);
    return j;
}

/* Translates a chat request given as JSON text; asserts success. */
static cJSON *
chat_req(const char *oai_text, struct translate_req *info)
{
    cJSON *oai = parse(oai_text), *out = NULL;
    char err[256] = "";

    assert_int_equal(translate_chat_request(oai, &out, info, err, sizeof(err)),
                     0);
    cJSON_Delete(oai);
    return out;
}

static void
expect_chat_error(const char *oai_text, const char *msg)
{
    cJSON *oai = parse(oai_text), *out = NULL;
    struct translate_req info;
    char err[256] = "";

    assert_int_equal(translate_chat_request(oai, &out, &info, err, sizeof(err)),
                     -EINVAL);
    assert_null(out);
    assert_string_equal(err, msg);
    cJSON_Delete(oai);
}

static void
test_chat_request_keeps_fields(void **state)
{
    struct translate_req info;
    cJSON *n, *opts, *msgs, *m;

    (void)state;
    n = chat_req(
        "{\"model\":\"qwen3:8b\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"messages\":[{\"role\":\"System\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"look \"},{\"type\":\"text\",\"text\":\"here\"},{\"type\":"
        "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
        "QUJD\"}}]}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"stop\":\"END\",\"seed\":7,\"top_p\":0.5,"
        "\"frequency_penalty\":0.1,\"presence_penalty\":0.2,"
        "\"max_tokens\":10,\"max_completion_tokens\":20,"
        "\"response_format\":{\"type\":\"json_object\"},"
        "\"reasoning_effort\":\"minimal\",\"user\":\"u\"}",
        &info);
    assert_true(info.stream);
    assert_true(info.include_usage);
    assert_string_equal(json_get_str(n, "model"), "qwen3:8b");
    assert_true(json_get_bool(n, "stream", false)); /* upstream streams */
    assert_string_equal(json_get_str(n, "format"), "json");
    assert_string_equal(json_get_str(n, "think"), "low");
    assert_int_equal(cJSON_GetArraySize(json_get(n, "tools")), 1);
    opts = (cJSON *)json_get(n, "options");
    assert_true(json_get_num(opts, "num_predict", 0) == 20);
    assert_true(json_get_num(opts, "seed", 0) == 7);
    assert_true(json_get_num(opts, "top_p", 0) == 0.5);
    assert_true(json_get_num(opts, "temperature", 0) == 1.0); /* default */
    assert_true(json_get_num(opts, "frequency_penalty", 0) == 0.1);
    assert_true(json_get_num(opts, "presence_penalty", 0) == 0.2);
    assert_string_equal(
        cJSON_GetArrayItem(json_get(opts, "stop"), 0)->valuestring, "END");
    msgs = (cJSON *)json_get(n, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 2);
    assert_string_equal(json_get_str(cJSON_GetArrayItem(msgs, 0), "role"),
                        "system");
    m = cJSON_GetArrayItem(msgs, 1);
    assert_string_equal(json_get_str(m, "content"), "look here");
    assert_string_equal(
        cJSON_GetArrayItem(json_get(m, "images"), 0)->valuestring, "QUJD");
    assert_null(json_get(n, "keep_alive")); /* the router decides */
    cJSON_Delete(n);
}

static void
test_chat_request_tools_roundtrip(void **state)
{
    struct translate_req info;
    cJSON *n, *msgs, *call, *args;

    (void)state;
    n = chat_req(
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
        "\"id\":\"call_1\",\"type\":\"function\",\"function\":{"
        "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":"
        "\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
        "\"sunny\"}],"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
        "{\"schema\":{\"type\":\"object\"}}},"
        "\"reasoning_effort\":\"none\",\"temperature\":0.3}",
        &info);
    assert_false(info.stream);
    msgs = (cJSON *)json_get(n, "messages");
    call = cJSON_GetArrayItem(
        json_get(cJSON_GetArrayItem(msgs, 1), "tool_calls"), 0);
    args = (cJSON *)json_get(json_get(call, "function"), "arguments");
    assert_true(cJSON_IsObject(args)); /* native: an object, not a string */
    assert_string_equal(json_get_str(args, "city"), "Paris");
    assert_string_equal(json_get_str(cJSON_GetArrayItem(msgs, 2), "tool_name"),
                        "get_weather");
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(msgs, 2), "tool_call_id"), "call_1");
    assert_true(cJSON_IsObject(json_get(n, "format")));
    assert_true(cJSON_IsFalse(json_get(n, "think")));
    assert_true(json_get_num(json_get(n, "options"), "temperature", 0) == 0.3);
    cJSON_Delete(n);
}

static void
test_chat_request_errors(void **state)
{
    (void)state;
    expect_chat_error("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "model is required");
    expect_chat_error("{\"model\":\"m\",\"messages\":[]}",
                      "[] is too short - 'messages'");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                      "\"content\":[{\"type\":\"image_url\",\"image_url\":"
                      "\"https://x/y.png\"}]}]}",
                      "image URLs are not currently supported, please use "
                      "base64 encoded data instead");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
                      "\"tool_calls\":[{\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{not json\"}}]}]}",
                      "invalid tool call arguments");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
                      "invalid message format");
    expect_chat_error("{\"model\":\"m\",\"reasoning_effort\":\"huge\","
                      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "invalid reasoning value: \"huge\" (must be \"minimal\", "
                      "\"low\", \"medium\", \"high\", \"xhigh\", \"ultra\", "
                      "\"max\", or \"none\")");
    expect_chat_error("{\"model\":\"m\",\"stop\":[1],"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "invalid type for 'stop' field");
    /* wrong-typed numbers are the request's fault (a node would answer
     * 500 for a bad option, which herd would take for a node fault) */
    expect_chat_error("{\"model\":\"m\",\"temperature\":\"hot\","
                      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "json: cannot unmarshal string into Go struct field "
                      "ChatCompletionRequest.temperature of type float64");
    expect_chat_error("{\"model\":\"m\",\"max_tokens\":[5],"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "json: cannot unmarshal array into Go struct field "
                      "ChatCompletionRequest.max_tokens of type int");
}

static void
test_completion_request(void **state)
{
    struct translate_req info;
    cJSON *oai = parse("{\"model\":\"m\",\"prompt\":\"def f(\",\"suffix\":"
                       "\"return 1\",\"max_tokens\":5,\"stream\":true}");
    cJSON *n = NULL;
    char err[128];

    (void)state;
    assert_int_equal(
        translate_completion_request(oai, &n, &info, err, sizeof(err)), 0);
    assert_true(info.stream);
    assert_string_equal(json_get_str(n, "prompt"), "def f(");
    assert_string_equal(json_get_str(n, "suffix"), "return 1");
    assert_true(json_get_num(json_get(n, "options"), "num_predict", 0) == 5);
    cJSON_Delete(n);
    cJSON_Delete(oai);
    oai = parse("{\"model\":\"m\",\"prompt\":[1,2]}");
    assert_int_equal(
        translate_completion_request(oai, &n, &info, err, sizeof(err)),
        -EINVAL);
    cJSON_Delete(oai);
}

/* --- answers --------------------------------------------------------- */

/* Splits SSE output into its data payloads. */
static size_t
sse_split(const char *s, char out[][1024], size_t max)
{
    size_t n = 0;

    while (s != NULL && *s && n < max) {
        const char *end = strstr(s, "\n\n");

        assert_non_null(end);
        assert_memory_equal(s, "data: ", 6);
        assert_true((size_t)(end - s - 6) < 1024);
        memcpy(out[n], s + 6, (size_t)(end - s - 6));
        out[n][end - s - 6] = '\0';
        n++;
        s = end + 2;
    }
    return n;
}

static int
feed(struct translate_stream *ts, const char *line, struct buf *out)
{
    char err[128];

    return translate_stream_line(ts, line, strlen(line), out, err, sizeof(err));
}

static void
test_stream_chat(void **state)
{
    struct translate_stream ts;
    struct buf out;
    char ev[16][1024];
    size_t n;
    cJSON *j;

    (void)state;
    buf_init(&out, 1 << 20);
    translate_stream_init(&ts, TRANSLATE_CHAT, false, true, "chatcmpl-42",
                          1700000000, "qwen3:8b");
    assert_int_equal(feed(&ts,
                          "{\"model\":\"qwen3:8b\",\"message\":{\"role\":"
                          "\"assistant\",\"content\":\"\",\"thinking\":"
                          "\"hmm\"},\"done\":false}",
                          &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"role\":\"assistant\","
                          "\"content\":\"Hi\"},\"done\":false}",
                          &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"role\":\"assistant\","
                          "\"content\":\"\"},\"done\":false}",
                          &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"role\":\"assistant\","
                          "\"content\":\"\"},\"done\":true,\"done_reason\":"
                          "\"stop\",\"prompt_eval_count\":11,"
                          "\"eval_count\":3}",
                          &out),
                     1);
    n = sse_split(out.data, ev, 16);
    /* reasoning, "Hi", "" (a non-final empty line still counts), finish,
     * usage, [DONE]. */
    assert_int_equal(n, 6);
    j = parse(ev[0]);
    assert_string_equal(json_get_str(j, "id"), "chatcmpl-42");
    assert_int_equal((int)json_get_num(j, "created", 0), 1700000000);
    assert_string_equal(json_get_str(j, "object"), "chat.completion.chunk");
    {
        const cJSON *d =
            json_get(cJSON_GetArrayItem(json_get(j, "choices"), 0), "delta");

        assert_string_equal(json_get_str(d, "role"), "assistant");
        assert_string_equal(json_get_str(d, "reasoning"), "hmm");
        assert_string_equal(json_get_str(d, "content"), "");
    }
    cJSON_Delete(j);
    j = parse(ev[1]);
    assert_null(json_get(
        json_get(cJSON_GetArrayItem(json_get(j, "choices"), 0), "delta"),
        "role")); /* only the first chunk has the role */
    assert_null(json_get(j, "usage"));
    cJSON_Delete(j);
    j = parse(ev[3]);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(j, "choices"), 0),
                     "finish_reason"),
        "stop");
    assert_int_equal(
        cJSON_GetArraySize(
            json_get(cJSON_GetArrayItem(json_get(j, "choices"), 0), "delta")),
        0);
    cJSON_Delete(j);
    j = parse(ev[4]);
    assert_int_equal(cJSON_GetArraySize(json_get(j, "choices")), 0);
    assert_int_equal((int)json_get_num(json_get(j, "usage"), "total_tokens", 0),
                     14);
    cJSON_Delete(j);
    assert_string_equal(ev[5], "[DONE]");
    translate_stream_cleanup(&ts);
    buf_cleanup(&out);
}

static void
test_stream_tool_calls_and_length(void **state)
{
    struct translate_stream ts;
    struct buf out;
    char ev[16][1024];
    size_t n;
    cJSON *j;
    const cJSON *tc;

    (void)state;
    buf_init(&out, 1 << 20);
    translate_stream_init(&ts, TRANSLATE_CHAT, false, false, "chatcmpl-1", 1,
                          "m");
    assert_int_equal(
        feed(&ts,
             "{\"message\":{\"role\":\"assistant\",\"content\":\"\","
             "\"tool_calls\":[{\"id\":\"call_abc\",\"function\":{\"index\":0,"
             "\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
             "\"done\":false}",
             &out),
        0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"content\":\"\"},\"done\":true,"
                          "\"done_reason\":\"stop\"}",
                          &out),
                     1);
    n = sse_split(out.data, ev, 16);
    assert_int_equal(n, 3); /* tool calls, finish, [DONE]: no usage asked */
    j = parse(ev[0]);
    tc = cJSON_GetArrayItem(
        json_get(
            json_get(cJSON_GetArrayItem(json_get(j, "choices"), 0), "delta"),
            "tool_calls"),
        0);
    assert_string_equal(json_get_str(tc, "id"), "call_abc");
    assert_string_equal(json_get_str(tc, "type"), "function");
    assert_int_equal((int)json_get_num(tc, "index", -1), 0);
    assert_string_equal(json_get_str(json_get(tc, "function"), "arguments"),
                        "{\"city\":\"Paris\"}");
    cJSON_Delete(j);
    j = parse(ev[1]);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(j, "choices"), 0),
                     "finish_reason"),
        "tool_calls");
    cJSON_Delete(j);
    translate_stream_cleanup(&ts);

    buf_reset(&out);
    translate_stream_init(&ts, TRANSLATE_CHAT, false, false, "c", 1, "m");
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"content\":\"a\"},\"done\":"
                          "true,\"done_reason\":\"length\"}",
                          &out),
                     1);
    assert_non_null(strstr(out.data, "\"finish_reason\":\"length\""));
    translate_stream_cleanup(&ts);
    buf_cleanup(&out);
}

static void
test_stream_completion_usage_on_every_chunk(void **state)
{
    struct translate_stream ts;
    struct buf out;
    char ev[16][1024];
    size_t n;
    cJSON *j;

    (void)state;
    buf_init(&out, 1 << 20);
    translate_stream_init(&ts, TRANSLATE_COMPLETION, false, true, "cmpl-7", 5,
                          "m");
    assert_int_equal(feed(&ts, "{\"response\":\"Hel\",\"done\":false}", &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"response\":\"\",\"done\":true,"
                          "\"done_reason\":\"stop\",\"prompt_eval_count\":2,"
                          "\"eval_count\":1}",
                          &out),
                     1);
    n = sse_split(out.data, ev, 16);
    assert_int_equal(n, 4); /* text, final (finish reason), usage, [DONE] */
    j = parse(ev[0]);
    assert_string_equal(json_get_str(j, "object"), "text_completion");
    assert_int_equal(
        (int)json_get_num(json_get(j, "usage"), "total_tokens", -1),
        0); /* zeros, not null, on content chunks */
    cJSON_Delete(j);
    j = parse(ev[1]);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(j, "choices"), 0),
                     "finish_reason"),
        "stop");
    cJSON_Delete(j);
    j = parse(ev[2]);
    assert_int_equal((int)json_get_num(json_get(j, "usage"), "total_tokens", 0),
                     3);
    cJSON_Delete(j);
    assert_string_equal(ev[3], "[DONE]");
    translate_stream_cleanup(&ts);
    buf_cleanup(&out);
}

static void
test_stream_error_is_not_done(void **state)
{
    struct translate_stream ts;
    struct buf out;
    char err[128];
    cJSON *j;

    (void)state;
    buf_init(&out, 1 << 20);
    translate_stream_init(&ts, TRANSLATE_CHAT, false, false, "c", 1, "m");
    assert_int_equal(
        feed(&ts, "{\"message\":{\"content\":\"a\"},\"done\":false}", &out), 0);
    buf_reset(&out);
    assert_int_equal(translate_stream_line(&ts, "{\"error\":\"boom\"}", 16,
                                           &out, err, sizeof(err)),
                     -EIO);
    assert_string_equal(err, "boom");
    assert_null(strstr(out.data, "[DONE]"));
    assert_memory_equal(out.data, "data: ", 6);
    j = parse(out.data + 6);
    assert_string_equal(json_get_str(json_get(j, "error"), "message"), "boom");
    assert_string_equal(json_get_str(json_get(j, "error"), "type"),
                        "api_error");
    cJSON_Delete(j);
    assert_true(ts.failed);
    assert_int_equal(
        translate_stream_line(&ts, "not json", 8, &out, err, sizeof(err)),
        -EPROTO);
    buf_reset(&out);
    assert_int_equal(translate_stream_abort(&ts, "node went away", &out), 0);
    assert_non_null(strstr(out.data, "node went away"));
    assert_null(strstr(out.data, "[DONE]"));
    translate_stream_cleanup(&ts);
    buf_cleanup(&out);
}

static void
test_collect(void **state)
{
    struct translate_stream ts;
    struct buf out;
    cJSON *j;
    const cJSON *msg;

    (void)state;
    buf_init(&out, 1 << 20);
    translate_stream_init(&ts, TRANSLATE_CHAT, true, false, "chatcmpl-9", 3,
                          "m");
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"content\":\"\",\"thinking\":"
                          "\"t\"},\"done\":false}",
                          &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"content\":\"Hello\"},\"done\":"
                          "false}",
                          &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"message\":{\"content\":\" world\"},\"done\":"
                          "true,\"done_reason\":\"stop\","
                          "\"prompt_eval_count\":4,\"eval_count\":2}",
                          &out),
                     1);
    assert_int_equal(out.len, 0); /* nothing streamed */
    assert_int_equal(translate_stream_finish(&ts, &out), 0);
    j = parse(out.data);
    assert_string_equal(json_get_str(j, "object"), "chat.completion");
    msg = json_get(cJSON_GetArrayItem(json_get(j, "choices"), 0), "message");
    assert_string_equal(json_get_str(msg, "content"), "Hello world");
    assert_string_equal(json_get_str(msg, "reasoning"), "t");
    assert_int_equal(
        (int)json_get_num(json_get(j, "usage"), "prompt_tokens", 0), 4);
    cJSON_Delete(j);
    translate_stream_cleanup(&ts);

    buf_reset(&out);
    translate_stream_init(&ts, TRANSLATE_COMPLETION, true, false, "cmpl-1", 3,
                          "m");
    assert_int_equal(feed(&ts, "{\"response\":\"ab\",\"done\":false}", &out),
                     0);
    assert_int_equal(feed(&ts,
                          "{\"response\":\"\",\"done\":true,"
                          "\"done_reason\":\"length\"}",
                          &out),
                     1);
    assert_int_equal(translate_stream_finish(&ts, &out), 0);
    j = parse(out.data);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(j, "choices"), 0), "text"),
        "ab");
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(j, "choices"), 0),
                     "finish_reason"),
        "length");
    cJSON_Delete(j);
    translate_stream_cleanup(&ts);
    buf_cleanup(&out);
}

/* --- NDJSON splitter ---------------------------------------------------- */

struct lines {
    char got[8][64];
    size_t n;
    size_t stop_after;
};

static int
on_line(const char *line, size_t len, void *ud)
{
    struct lines *l = ud;

    assert_true(len < 64 && l->n < 8);
    memcpy(l->got[l->n], line, len);
    l->got[l->n][len] = '\0';
    l->n++;
    return l->stop_after && l->n == l->stop_after ? 42 : 0;
}

static void
test_ndjson(void **state)
{
    struct ndjson nd;
    struct lines l = {0};

    (void)state;
    ndjson_init(&nd, 16);
    assert_int_equal(ndjson_feed(&nd, "{\"a\":1}\n{\"b", 11, on_line, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(ndjson_feed(&nd, "\":2}\r\n\n{\"c\":3}", 15, on_line, &l),
                     0);
    assert_int_equal(l.n, 2); /* the empty line is skipped, \r dropped */
    assert_string_equal(l.got[1], "{\"b\":2}");
    assert_int_equal(ndjson_finish(&nd, on_line, &l), 0);
    assert_int_equal(l.n, 3); /* a last line without "\n" */
    assert_string_equal(l.got[2], "{\"c\":3}");
    /* A line over the cap, even split across feeds. */
    assert_int_equal(ndjson_feed(&nd, "0123456789", 10, on_line, &l), 0);
    assert_int_equal(ndjson_feed(&nd, "0123456789", 10, on_line, &l), -E2BIG);
    ndjson_cleanup(&nd);

    memset(&l, 0, sizeof(l));
    l.stop_after = 1;
    ndjson_init(&nd, 16);
    assert_int_equal(ndjson_feed(&nd, "a\nb\n", 4, on_line, &l), 42);
    assert_int_equal(l.n, 1);
    ndjson_cleanup(&nd);
}

/* /v1/embeddings: request checks, float and base64 answers. */
static void
test_embeddings(void **state)
{
    cJSON *oai, *native = NULL, *ans;
    struct buf b;
    bool b64 = false;
    char err[256];

    (void)state;

    oai = parse("{\"model\":\"nomic\",\"input\":[\"a\",\"b\"],"
                "\"encoding_format\":\"base64\",\"dimensions\":2}");
    assert_int_equal(
        translate_embed_request(oai, &native, &b64, err, sizeof(err)), 0);
    assert_true(b64);
    assert_string_equal(json_get_str(native, "model"), "nomic");
    assert_int_equal(cJSON_GetArraySize(json_get(native, "input")), 2);
    assert_int_equal((int)json_get_num(native, "dimensions", 0), 2);
    cJSON_Delete(native);
    cJSON_Delete(oai);

    static const char *const bad[][2] = {
        {"{\"input\":\"a\"}", "model is required"},
        {"{\"model\":\"m\",\"input\":[]}", "invalid input"},
        {"{\"model\":\"m\"}", "invalid input"},
        {"{\"model\":\"m\",\"input\":[[1,2]]}",
         "invalid input: token arrays are not supported; send strings"},
        {"{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"hex\"}",
         "Invalid value for 'encoding_format' = hex. Supported values: "
         "['float', 'base64']."},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        oai = parse(bad[i][0]);
        assert_int_equal(
            translate_embed_request(oai, &native, &b64, err, sizeof(err)),
            -EINVAL);
        assert_null(native);
        assert_string_equal(err, bad[i][1]);
        cJSON_Delete(oai);
    }

    /* 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 -> "AACAPwAAAMA=" */
    native = parse("{\"model\":\"nomic:latest\",\"embeddings\":[[1,-2]],"
                   "\"prompt_eval_count\":3}");
    buf_init(&b, 1 << 20);
    assert_int_equal(translate_embed_response(native, "nomic", true, &b), 0);
    ans = parse(b.data);
    assert_string_equal(json_get_str(ans, "object"), "list");
    assert_string_equal(json_get_str(ans, "model"), "nomic");
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(ans, "data"), 0), "embedding"),
        "AACAPwAAAMA=");
    assert_int_equal(
        (int)json_get_num(json_get(ans, "usage"), "prompt_tokens", 0), 3);
    cJSON_Delete(ans);
    buf_reset(&b);
    assert_int_equal(translate_embed_response(native, "nomic", false, &b), 0);
    ans = parse(b.data);
    {
        const cJSON *d = cJSON_GetArrayItem(json_get(ans, "data"), 0);
        const cJSON *v = json_get(d, "embedding");

        assert_int_equal(cJSON_GetArraySize(v), 2);
        assert_true(cJSON_GetArrayItem(v, 1)->valuedouble == -2.0);
        assert_int_equal((int)json_get_num(d, "index", -1), 0);
        assert_string_equal(json_get_str(d, "object"), "embedding");
    }
    cJSON_Delete(ans);
    cJSON_Delete(native);
    native = parse("{\"error\":\"x\"}");
    buf_reset(&b);
    assert_int_equal(translate_embed_response(native, "m", false, &b), -EPROTO);
    cJSON_Delete(native);
    buf_cleanup(&b);
}

/*
 * Plain token lines (plainline.h) skip the parser. For every mode (chat
 * and completion, SSE and collected, with and without usage), a corpus
 * of lines and thousands of byte-level mutations go through one stream
 * with the plain path and one with every line parsed (no_plain): same
 * return codes, same SSE bytes, same collected text, line after line.
 */
static const char *const plain_corpus[] = {
    "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":"
    "{\"role\":\"assistant\",\"content\":\"Hello <b>&\"},\"done\":false}",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\","
    "\"thinking\":\"hm\"},\"done\":false}",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"done\":false}",
    "{\"model\":\"m\",\"message\":{\"content\":\"a\",\"thinking\":\"b\"}}",
    "{\"model\":\"m\",\"response\":\"ld\",\"thinking\":\"x\",\"done\":false}",
    "{\"response\":\"\",\"done\":false}",
    "{\"message\":{\"content\":\"q\\\"uote\\n\"},\"done\":false}",
    "{\"message\":{\"content\":\"caf\xc3\xa9"
    "\"},\"done\":false}",
    "{\"message\":{\"content\":null},\"error\":null}",
    "{\"message\":{\"content\":\"t\",\"tool_calls\":[{\"function\":"
    "{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}",
    "{\"error\":\"boom\"}",
    "{}",
    "[]",
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"!\"},"
    "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,"
    "\"eval_count\":2}",
};

static void
test_plain_lines_agree(void **state)
{
    static const char alphabet[] = "{}[]\":,\\ tfnu0-e.\x01\xff"
                                   "abc";
    uint32_t seed = 777;
    unsigned long n_lines = 0;
    char line[512];

    (void)state;
    for (int mode = 0; mode < 8; mode++) {
        enum translate_kind kind =
            mode & 1 ? TRANSLATE_COMPLETION : TRANSLATE_CHAT;
        bool collect = mode & 2, usage = mode & 4;

        for (size_t i = 0; i < sizeof(plain_corpus) / sizeof(*plain_corpus);
             i++) {
            for (int m = 0; m < 500; m++) {
                struct translate_stream a, b;
                struct buf oa, ob;
                char ea[128] = "", eb[128] = "";
                size_t n = strlen(plain_corpus[i]);
                int ra, rb;

                memcpy(line, plain_corpus[i], n);
                for (int k = 0; m > 0 && k < 1 + m % 3; k++) {
                    seed = seed * 1103515245u + 12345u;
                    size_t at = (seed >> 8) % n;
                    unsigned op = (seed >> 4) % 3;
                    char ch = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];

                    if (op == 0) {
                        line[at] = ch;
                    } else if (op == 1 && n + 1 < sizeof(line)) {
                        memmove(line + at + 1, line + at, n - at);
                        line[at] = ch;
                        n++;
                    } else if (n > 1) {
                        memmove(line + at, line + at + 1, n - at - 1);
                        n--;
                    }
                }
                translate_stream_init(&a, kind, collect, usage, "id-1", 7, "m");
                translate_stream_init(&b, kind, collect, usage, "id-1", 7, "m");
                b.no_plain = true;
                /* the second line of a stream: role_sent differs */
                for (int rep = 0; rep < 2; rep++) {
                    buf_init(&oa, 1 << 16);
                    buf_init(&ob, 1 << 16);
                    ra =
                        translate_stream_line(&a, line, n, &oa, ea, sizeof(ea));
                    rb =
                        translate_stream_line(&b, line, n, &ob, eb, sizeof(eb));
                    n_lines++;
                    assert_int_equal(ra, rb);
                    assert_string_equal(ea, eb);
                    assert_int_equal(oa.len, ob.len);
                    if (oa.len)
                        assert_memory_equal(oa.data, ob.data, oa.len);
                    buf_cleanup(&oa);
                    buf_cleanup(&ob);
                }
                assert_int_equal(a.text.len, b.text.len);
                if (a.text.len)
                    assert_memory_equal(a.text.data, b.text.data, a.text.len);
                assert_int_equal(a.reasoning.len, b.reasoning.len);
                assert_int_equal(a.role_sent, b.role_sent);
                translate_stream_cleanup(&a);
                translate_stream_cleanup(&b);
            }
        }
    }
    assert_true(n_lines > 100000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_request_keeps_fields),
        cmocka_unit_test(test_chat_request_tools_roundtrip),
        cmocka_unit_test(test_chat_request_errors),
        cmocka_unit_test(test_completion_request),
        cmocka_unit_test(test_stream_chat),
        cmocka_unit_test(test_stream_tool_calls_and_length),
        cmocka_unit_test(test_stream_completion_usage_on_every_chunk),
        cmocka_unit_test(test_stream_error_is_not_done),
        cmocka_unit_test(test_collect),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_plain_lines_agree),
        cmocka_unit_test(test_embeddings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
