/*
 * test_textgen.c - tokenizer, generation plans, JSON/schema output, tool
 * calls, stop strings, limits and embeddings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textgen.h"

static uint32_t
fnv32(const char *s)
{
    uint32_t h = 0x811c9dc5u;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x01000193u;
    }
    return h;
}

static size_t
count(const char *s)
{
    return textgen_tokenize(s, strlen(s), NULL, 0);
}

static void
params_init(struct textgen_params *p, uint64_t seed)
{
    memset(p, 0, sizeof(*p));
    p->seed = seed;
    p->num_predict = -1;
    p->ctx_left = 100000;
}

/* The plan's pieces [from, to) joined. */
static char *
join(const struct textgen_plan *pl, size_t from, size_t to)
{
    size_t len = 0, pos = 0;
    char *s;

    for (size_t i = from; i < to; i++)
        len += strlen(pl->pieces[i]);
    s = malloc(len + 1);
    assert_non_null(s);
    for (size_t i = from; i < to; i++) {
        size_t l = strlen(pl->pieces[i]);

        memcpy(s + pos, pl->pieces[i], l);
        pos += l;
    }
    s[len] = '\0';
    return s;
}

static void
test_tokenize(void **state)
{
    uint32_t ids[8];

    (void)state;
    assert_int_equal(textgen_tokenize("Hello world", 11, ids, 8), 2);
    assert_int_equal(ids[0], fnv32("Hello"));
    assert_int_equal(ids[1], fnv32(" world"));
    /* word, digits with their space, punctuation, word */
    assert_int_equal(textgen_tokenize("abc 123, x", 10, ids, 8), 4);
    assert_int_equal(ids[1], fnv32(" 123"));
    assert_int_equal(ids[2], fnv32(","));
    assert_int_equal(ids[3], fnv32(" x"));
    /* Extra spaces are a token of their own; the last one joins the word. */
    assert_int_equal(textgen_tokenize("a  b", 4, ids, 8), 3);
    assert_int_equal(ids[1], fnv32(" "));
    assert_int_equal(ids[2], fnv32(" b"));
    /* Newlines stay apart from the next word (chat templates end their
     * prompts with one). */
    assert_int_equal(textgen_tokenize("\n\nHello", 7, ids, 8), 2);
    assert_int_equal(ids[0], fnv32("\n\n"));
    assert_int_equal(ids[1], fnv32("Hello"));
    assert_int_equal(textgen_tokenize("x:\n Hi", 6, ids, 8), 4);
    assert_int_equal(ids[2], fnv32("\n"));
    assert_int_equal(ids[3], fnv32(" Hi"));
    {
        /* prompt + generated re-tokenises as prompt ids + piece ids */
        const char *prompt = "<|user|>\nhello\n<|assistant|>\n";
        const char *both = "<|user|>\nhello\n<|assistant|>\nAnd so.";

        assert_int_equal(count(both), count(prompt) + 3);
    }
    assert_int_equal(count("end.  "), 3);
    assert_int_equal(count(""), 0);
    assert_int_equal(count("{\"a\":1}"), 7);
    /* UTF-8 stays inside words. */
    assert_int_equal(count("caf\xc3\xa9 ol\xc3\xa9"), 2);
    /* The count goes on past max. */
    assert_int_equal(textgen_tokenize("a b c d e", 9, ids, 2), 5);
    assert_int_equal(ids[1], fnv32(" b"));
    /* About 4-6 characters a token for English. */
    {
        const char *t = "The quick brown fox jumps over the lazy dog, and "
                        "then it runs away into the forest.";
        size_t n = count(t);

        assert_true(strlen(t) / n >= 3 && strlen(t) / n <= 7);
    }
}

static void
test_hash(void **state)
{
    (void)state;
    assert_true(textgen_hash("", 0) == 0xcbf29ce484222325ull);
    assert_true(textgen_hash("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(textgen_hash("ab", 2) != textgen_hash("ba", 2));
}

static void
test_plain_plan(void **state)
{
    struct textgen_params p;
    struct textgen_plan a, b, c;
    char *text;

    (void)state;
    params_init(&p, 42);
    assert_int_equal(textgen_plan_make(&p, &a), 0);
    assert_int_equal(textgen_plan_make(&p, &b), 0);
    p.seed = 43;
    assert_int_equal(textgen_plan_make(&p, &c), 0);

    assert_true(a.n_pieces >= 8 && a.n_pieces <= 64);
    assert_int_equal(a.n_think, 0);
    assert_null(a.tool_calls);
    assert_string_equal(a.done_reason, "stop");
    /* Deterministic per seed. */
    assert_int_equal(a.n_pieces, b.n_pieces);
    for (size_t i = 0; i < a.n_pieces; i++)
        assert_string_equal(a.pieces[i], b.pieces[i]);
    text = join(&a, 0, a.n_pieces);
    {
        char *other = join(&c, 0, c.n_pieces);

        assert_string_not_equal(text, other);
        free(other);
    }
    /* English-looking: capital first, full stop last, pieces are tokens. */
    assert_true(isupper((unsigned char)text[0]));
    assert_int_equal(text[strlen(text) - 1], '.');
    assert_int_equal(count(text), a.n_pieces);
    for (size_t i = 0; i < a.n_pieces; i++)
        assert_int_equal(count(a.pieces[i]), 1);
    free(text);

    /* Natural lengths vary with the seed. */
    {
        size_t min = 1000, max = 0;

        for (uint64_t s = 0; s < 200; s++) {
            struct textgen_plan pl;

            p.seed = s;
            assert_int_equal(textgen_plan_make(&p, &pl), 0);
            min = pl.n_pieces < min ? pl.n_pieces : min;
            max = pl.n_pieces > max ? pl.n_pieces : max;
            textgen_plan_free(&pl);
        }
        assert_true(min >= 8 && min < 16);
        assert_true(max <= 64 && max > 50);
    }
    textgen_plan_free(&a);
    textgen_plan_free(&b);
    textgen_plan_free(&c);
    textgen_plan_free(&c); /* idempotent */
}

static void
test_limits(void **state)
{
    struct textgen_params p;
    struct textgen_plan pl;

    (void)state;
    params_init(&p, 7);
    p.num_predict = 5;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_int_equal(pl.n_pieces, 5);
    assert_string_equal(pl.done_reason, "length");
    textgen_plan_free(&pl);

    params_init(&p, 7);
    p.ctx_left = 3;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_int_equal(pl.n_pieces, 3);
    assert_string_equal(pl.done_reason, "length");
    textgen_plan_free(&pl);

    params_init(&p, 7);
    p.num_predict = 0;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_int_equal(pl.n_pieces, 0);
    assert_string_equal(pl.done_reason, "length");
    textgen_plan_free(&pl);

    /* A limit above the natural length changes nothing. */
    params_init(&p, 7);
    p.num_predict = 1000;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_string_equal(pl.done_reason, "stop");
    textgen_plan_free(&pl);
}

static void
test_stop(void **state)
{
    struct textgen_params p;
    struct textgen_plan full, cut;
    char stop[32], *text, *at;
    const char *stops[2];

    (void)state;
    params_init(&p, 99);
    assert_int_equal(textgen_plan_make(&p, &full), 0);
    text = join(&full, 0, full.n_pieces);
    /* Stop at a word from the middle (without its space). */
    {
        size_t i = 4;

        while (i < full.n_pieces && full.pieces[i][0] != ' ')
            i++;
        assert_true(i < full.n_pieces);
        snprintf(stop, sizeof(stop), "%s", full.pieces[i] + 1);
    }
    at = strstr(text, stop);
    assert_non_null(at);
    stops[0] = "never-there";
    stops[1] = stop;
    p.stop = stops;
    p.n_stop = 2;
    assert_int_equal(textgen_plan_make(&p, &cut), 0);
    assert_string_equal(cut.done_reason, "stop");
    {
        char *got = join(&cut, 0, cut.n_pieces);

        assert_int_equal(strlen(got), (size_t)(at - text));
        assert_memory_equal(got, text, strlen(got));
        assert_null(strstr(got, stop));
        free(got);
    }
    /* A limit that falls before the stop string wins. */
    p.num_predict = 2;
    textgen_plan_free(&cut);
    assert_int_equal(textgen_plan_make(&p, &cut), 0);
    assert_int_equal(cut.n_pieces, 2);
    assert_string_equal(cut.done_reason, "length");
    free(text);
    textgen_plan_free(&full);
    textgen_plan_free(&cut);
}

static void
test_think(void **state)
{
    struct textgen_params p;
    struct textgen_plan pl;

    (void)state;
    params_init(&p, 5);
    p.think = true;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_true(pl.n_think >= 8);
    assert_true(pl.n_pieces >= pl.n_think + 8);
    /* Both parts start without a leading space. */
    assert_true(pl.pieces[0][0] != ' ');
    assert_true(pl.pieces[pl.n_think][0] != ' ');
    textgen_plan_free(&pl);

    /* num_predict counts thinking too. */
    p.num_predict = 3;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_int_equal(pl.n_pieces, 3);
    assert_int_equal(pl.n_think, 3);
    assert_string_equal(pl.done_reason, "length");
    textgen_plan_free(&pl);
}

static void
test_json_mode(void **state)
{
    struct textgen_params p;
    struct textgen_plan pl;

    (void)state;
    for (uint64_t seed = 0; seed < 20; seed++) {
        char *text;
        cJSON *doc;

        params_init(&p, seed);
        p.format = TEXTGEN_JSON;
        assert_int_equal(textgen_plan_make(&p, &pl), 0);
        text = join(&pl, 0, pl.n_pieces);
        doc = cJSON_Parse(text);
        assert_non_null(doc);
        assert_true(cJSON_IsObject(doc));
        assert_true(cJSON_GetArraySize(doc) >= 1);
        assert_int_equal(count(text), pl.n_pieces);
        cJSON_Delete(doc);
        free(text);
        textgen_plan_free(&pl);
    }
}

static void
test_schema_mode(void **state)
{
    const char *schema_text =
        "{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\"},"
        "\"age\":{\"type\":\"integer\",\"minimum\":18,\"maximum\":99},"
        "\"score\":{\"type\":\"number\"},"
        "\"ok\":{\"type\":\"boolean\"},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
        "\"minItems\":2},"
        "\"addr\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
        "\"string\"},\"zip\":{\"type\":\"string\"}},\"required\":[\"city\"]},"
        "\"color\":{\"enum\":[\"red\",\"green\"]},"
        "\"maybe\":{\"type\":[\"null\",\"integer\"]},"
        "\"optional\":{\"type\":\"string\"}},"
        "\"required\":[\"name\",\"age\",\"score\",\"ok\",\"tags\",\"addr\","
        "\"color\",\"maybe\"]}";
    cJSON *schema = cJSON_Parse(schema_text);
    struct textgen_params p;
    struct textgen_plan pl;
    char *text;
    cJSON *doc, *v;

    (void)state;
    assert_non_null(schema);
    params_init(&p, 11);
    p.format = TEXTGEN_SCHEMA;
    p.schema = schema;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    text = join(&pl, 0, pl.n_pieces);
    doc = cJSON_Parse(text);
    assert_non_null(doc);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(doc, "name")));
    v = cJSON_GetObjectItem(doc, "age");
    assert_true(cJSON_IsNumber(v));
    assert_true(v->valuedouble == floor(v->valuedouble));
    assert_true(v->valuedouble >= 18 && v->valuedouble <= 99);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(doc, "score")));
    assert_true(cJSON_IsBool(cJSON_GetObjectItem(doc, "ok")));
    v = cJSON_GetObjectItem(doc, "tags");
    assert_true(cJSON_IsArray(v));
    assert_true(cJSON_GetArraySize(v) >= 2);
    assert_true(cJSON_IsString(cJSON_GetArrayItem(v, 0)));
    v = cJSON_GetObjectItem(doc, "addr");
    assert_true(cJSON_IsObject(v));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(v, "city")));
    assert_null(cJSON_GetObjectItem(v, "zip"));
    assert_string_equal(cJSON_GetObjectItem(doc, "color")->valuestring, "red");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(doc, "maybe")));
    assert_null(cJSON_GetObjectItem(doc, "optional"));
    cJSON_Delete(doc);
    free(text);
    textgen_plan_free(&pl);

    /* Cut short by num_predict: "length", a prefix of the document. */
    p.num_predict = 4;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_int_equal(pl.n_pieces, 4);
    assert_string_equal(pl.done_reason, "length");
    assert_string_equal(pl.pieces[0], "{");
    textgen_plan_free(&pl);
    cJSON_Delete(schema);
}

static void
test_schema_hostile(void **state)
{
    /* Deep nesting and a huge array request stay bounded. */
    char deep[4096];
    size_t pos = 0;
    cJSON *schema;
    struct textgen_params p;
    struct textgen_plan pl;

    (void)state;
    for (int i = 0; i < 40; i++)
        pos += (size_t)snprintf(deep + pos, sizeof(deep) - pos,
                                "{\"type\":\"array\",\"minItems\":1000000,"
                                "\"items\":");
    pos += (size_t)snprintf(deep + pos, sizeof(deep) - pos,
                            "{\"type\":\"string\"}");
    for (int i = 0; i < 40; i++)
        deep[pos++] = '}';
    deep[pos] = '\0';
    schema = cJSON_Parse(deep);
    assert_non_null(schema);
    params_init(&p, 1);
    p.format = TEXTGEN_SCHEMA;
    p.schema = schema;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_true(pl.n_pieces > 0 && pl.n_pieces < 20000);
    {
        char *text = join(&pl, 0, pl.n_pieces);
        cJSON *doc = cJSON_Parse(text);

        assert_non_null(doc);
        cJSON_Delete(doc);
        free(text);
    }
    textgen_plan_free(&pl);
    cJSON_Delete(schema);
}

static void
test_tool_calls(void **state)
{
    const char *tools_text =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"Weather\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"location\":{\"type\":\"string\"},"
        "\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]},"
        "\"days\":{\"type\":\"integer\"}},"
        "\"required\":[\"location\",\"days\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"other\"}}]";
    cJSON *tools = cJSON_Parse(tools_text);
    struct textgen_params p;
    struct textgen_plan pl;
    const cJSON *fn, *args;

    (void)state;
    assert_non_null(tools);
    params_init(&p, 3);
    p.tools = tools;
    p.tool_calls = true;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_non_null(pl.tool_calls);
    assert_int_equal(cJSON_GetArraySize(pl.tool_calls), 1);
    assert_int_equal(pl.n_pieces, 0);
    assert_true(pl.tool_call_tokens > 5);
    assert_string_equal(pl.done_reason, "stop");
    fn = cJSON_GetObjectItem(cJSON_GetArrayItem(pl.tool_calls, 0), "function");
    assert_non_null(fn);
    assert_int_equal(cJSON_GetObjectItem(fn, "index")->valueint, 0);
    assert_string_equal(cJSON_GetObjectItem(fn, "name")->valuestring,
                        "get_weather");
    args = cJSON_GetObjectItem(fn, "arguments");
    assert_true(cJSON_IsObject(args));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(args, "location")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(args, "days")));
    assert_null(cJSON_GetObjectItem(args, "unit")); /* not required */
    textgen_plan_free(&pl);

    /* Thinking comes first, then the call. */
    p.think = true;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_non_null(pl.tool_calls);
    assert_true(pl.n_think > 0);
    assert_int_equal(pl.n_pieces, pl.n_think);
    textgen_plan_free(&pl);
    p.think = false;

    /* Too short a num_predict: the call stays unparsed content. */
    p.num_predict = 3;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_null(pl.tool_calls);
    assert_int_equal(pl.n_pieces, 3);
    assert_string_equal(pl.pieces[0], "{");
    assert_string_equal(pl.done_reason, "length");
    textgen_plan_free(&pl);

    /* Tools given but tool calls off: plain text. */
    params_init(&p, 3);
    p.tools = tools;
    assert_int_equal(textgen_plan_make(&p, &pl), 0);
    assert_null(pl.tool_calls);
    assert_true(pl.n_pieces >= 8);
    textgen_plan_free(&pl);
    cJSON_Delete(tools);
}

static double
dot(const double *a, const double *b, size_t n)
{
    double s = 0;

    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void
test_embed(void **state)
{
    enum { D = 768 };
    double *a = malloc(D * sizeof(double)), *b = malloc(D * sizeof(double));
    double *c = malloc(D * sizeof(double)), *d = malloc(D * sizeof(double));
    const char *t1 = "the cat sat on the mat";
    const char *t2 = "the cat sat on the mat today";
    const char *t3 = "quantum chromodynamics lecture notes";

    (void)state;
    textgen_embed(t1, strlen(t1), D, true, a);
    textgen_embed(t1, strlen(t1), D, true, b);
    assert_memory_equal(a, b, D * sizeof(double));
    assert_true(fabs(dot(a, a, D) - 1.0) < 1e-9);
    textgen_embed(t2, strlen(t2), D, true, c);
    textgen_embed(t3, strlen(t3), D, true, d);
    /* Texts sharing words are closer. */
    assert_true(dot(a, c, D) > 0.8);
    assert_true(dot(a, c, D) > dot(a, d, D) + 0.3);
    /* Not normalised: a different length, same direction. */
    textgen_embed(t1, strlen(t1), D, false, b);
    assert_true(fabs(dot(b, b, D) - 1.0) > 1e-3);
    assert_true(dot(a, b, D) / sqrt(dot(b, b, D)) > 0.999999);
    /* Empty text still gives a unit vector. */
    textgen_embed("", 0, D, true, d);
    assert_true(fabs(dot(d, d, D) - 1.0) < 1e-9);
    textgen_embed(t1, strlen(t1), 0, true, d); /* no-op */
    free(a);
    free(b);
    free(c);
    free(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_plain_plan),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_think),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_schema_mode),
        cmocka_unit_test(test_schema_hostile),
        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_embed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
