/*
 * collect.c - one Ollama answer from an NDJSON stream (see collect.h).
 */
#include "collect.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define COLLECT_MAX_TEXT (64u << 20)

void
collect_init(struct collect *c, bool chat)
{
    memset(c, 0, sizeof(*c));
    c->chat = chat;
    buf_init(&c->content, COLLECT_MAX_TEXT);
    buf_init(&c->thinking, COLLECT_MAX_TEXT);
    c->prompt_tokens = c->completion_tokens = -1;
}

void
collect_cleanup(struct collect *c)
{
    buf_cleanup(&c->content);
    buf_cleanup(&c->thinking);
    cJSON_Delete(c->tool_calls);
    cJSON_Delete(c->final);
    c->tool_calls = c->final = NULL;
}

bool
collect_done_info(const cJSON *line, int64_t *prompt_tokens,
                  int64_t *completion_tokens, char *reason, size_t reasonlen)
{
    const cJSON *v;
    const char *r;

    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(line, "done")))
        return false;
    v = cJSON_GetObjectItemCaseSensitive(line, "prompt_eval_count");
    *prompt_tokens = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    v = cJSON_GetObjectItemCaseSensitive(line, "eval_count");
    *completion_tokens = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    r = json_get_str(line, "done_reason");
    if (reason != NULL && reasonlen > 0)
        snprintf(reason, reasonlen, "%s", r ? r : "");
    return true;
}

static int
take_text(struct buf *b, const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    return buf_appends(b, s);
}

static int
take_calls(struct collect *c, const cJSON *calls)
{
    const cJSON *tc;

    if (!cJSON_IsArray(calls))
        return 0;
    if (c->tool_calls == NULL && (c->tool_calls = cJSON_CreateArray()) == NULL)
        return -ENOMEM;
    cJSON_ArrayForEach(tc, calls)
    {
        cJSON *dup;

        if (cJSON_GetArraySize(c->tool_calls) >= 1024)
            return -E2BIG;
        if ((dup = cJSON_Duplicate(tc, true)) == NULL)
            return -ENOMEM;
        cJSON_AddItemToArray(c->tool_calls, dup);
    }
    return 0;
}

int
collect_line(struct collect *c, const cJSON *line, char *errmsg, size_t errlen)
{
    const char *err = json_get_str(line, "error");
    const cJSON *msg;
    int rc;

    if (err != NULL) {
        snprintf(errmsg, errlen, "%s", err);
        return -EIO;
    }
    if (c->chat) {
        msg = json_get(line, "message");
        rc = take_text(&c->content, json_get_str(msg, "content"));
        if (rc == 0)
            rc = take_text(&c->thinking, json_get_str(msg, "thinking"));
        if (rc == 0)
            rc = take_calls(c, json_get(msg, "tool_calls"));
    } else {
        rc = take_text(&c->content, json_get_str(line, "response"));
        if (rc == 0)
            rc = take_text(&c->thinking, json_get_str(line, "thinking"));
    }
    if (rc != 0)
        return rc;
    if (!collect_done_info(line, &c->prompt_tokens, &c->completion_tokens,
                           c->done_reason, sizeof(c->done_reason)))
        return 0;
    c->done = true;
    if ((c->final = cJSON_Duplicate(line, true)) == NULL)
        return -ENOMEM;
    return 1;
}

/* --- the fast path -------------------------------------------------------- */

struct fast_str {
    const char *p; /* the bytes between the quotes, or NULL when absent */
    size_t n;
};

static const char *
fast_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string of printable ASCII without escapes, p at its opening quote. */
static const char *
fast_string(const char *p, const char *end, struct fast_str *out)
{
    const char *s = ++p;

    while (p < end && (unsigned char)(*p - 0x20) < 0x5f && *p != '"' &&
           *p != '\\')
        p++;
    if (p >= end || *p != '"')
        return NULL; /* the end, an escape, a control or non-ASCII byte */
    out->p = s;
    out->n = (size_t)(p - s);
    return p + 1;
}

static const char *
fast_literal(const char *p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0)
        return NULL;
    return p + n;
}

#define FAST_KEY(k, lit)                                                       \
    ((k).n == sizeof(lit) - 1 && memcmp((k).p, lit, (k).n) == 0)

/*
 * One object: every member a plain string, true, false or null, or (when
 * nested is not NULL) one nested object parsed by the same rule without
 * further nesting, under the key "message". Keys named in want[] are
 * stored (a key seen twice falls back, to keep the rule of one place:
 * json_get's, the last one wins).
 * done_true is set when "done" is true. NULL when the line is not of
 * this shape.
 */
struct fast_want {
    const char *key;
    size_t klen;
    struct fast_str *val;
};

static const char *
fast_object(const char *p, const char *end, struct fast_want *want,
            size_t n_want, const char **nested_at, bool *done_true)
{
    bool first = true;

    p = fast_ws(p, end);
    if (p >= end || *p != '{')
        return NULL;
    p = fast_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        struct fast_str key = {0}, val = {0};
        bool is_str = false;

        if (!first)
            p = fast_ws(p, end);
        first = false;
        if (p >= end || *p != '"' || (p = fast_string(p, end, &key)) == NULL)
            return NULL;
        p = fast_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = fast_ws(p + 1, end);
        if (p >= end)
            return NULL;
        if (FAST_KEY(key, "error"))
            return NULL;
        switch (*p) {
        case '"':
            p = fast_string(p, end, &val);
            is_str = true;
            break;
        case 't':
            p = fast_literal(p, end, "true", 4);
            if (done_true != NULL && FAST_KEY(key, "done"))
                *done_true = true;
            break;
        case 'f':
            p = fast_literal(p, end, "false", 5);
            break;
        case 'n':
            p = fast_literal(p, end, "null", 4);
            break;
        case '{':
            if (nested_at == NULL || *nested_at != NULL ||
                !FAST_KEY(key, "message"))
                return NULL;
            *nested_at = p;
            p = fast_object(p, end, NULL, 0, NULL, NULL);
            break;
        default:
            return NULL; /* numbers, arrays: the slow path */
        }
        if (p == NULL)
            return NULL;
        for (size_t i = 0; i < n_want; i++) {
            if (want[i].klen != key.n || memcmp(want[i].key, key.p, key.n) != 0)
                continue;
            if (want[i].val->p != NULL || !is_str)
                return NULL; /* twice, or not a string: the slow path */
            *want[i].val = val;
        }
        p = fast_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

static int
take_fast(struct buf *b, const struct fast_str *s)
{
    if (s->p == NULL || s->n == 0)
        return 0;
    return buf_append(b, s->p, s->n);
}

int
collect_line_fast(struct collect *c, const char *line, size_t len)
{
    const char *end = line + len, *nested = NULL, *p;
    struct fast_str content = {0}, thinking = {0}, top_text = {0},
                    top_thinking = {0};
    struct fast_want top[] = {{"response", 8, &top_text},
                              {"thinking", 8, &top_thinking}};
    struct fast_want msg[] = {{"content", 7, &content},
                              {"thinking", 8, &thinking}};
    bool done_true = false;
    int rc;

    p = fast_object(line, end, c->chat ? NULL : top, c->chat ? 0 : 2,
                    c->chat ? &nested : NULL, &done_true);
    if (p == NULL || done_true || fast_ws(p, end) != end)
        return COLLECT_SLOW;
    if (nested != NULL && fast_object(nested, end, msg, 2, NULL, NULL) == NULL)
        return COLLECT_SLOW;
    if (!c->chat) {
        content = top_text;
        thinking = top_thinking;
    }
    rc = take_fast(&c->content, &content);
    if (rc == 0)
        rc = take_fast(&c->thinking, &thinking);
    return rc;
}

/* Replaces (or adds) key in obj with a string of n bytes. */
static int
set_str(cJSON *obj, const char *key, const struct buf *b)
{
    cJSON *s = cJSON_CreateString(b->data ? b->data : "");

    if (s == NULL)
        return -ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, s);
    else
        cJSON_AddItemToObject(obj, key, s);
    return 0;
}

int
collect_finish(struct collect *c, struct buf *out)
{
    cJSON *ans = c->final;
    int rc;

    if (ans == NULL)
        return -EINVAL;
    if (c->chat) {
        cJSON *msg = cJSON_CreateObject();

        if (msg == NULL)
            return -ENOMEM;
        cJSON_AddStringToObject(msg, "role", "assistant");
        rc = set_str(msg, "content", &c->content);
        if (rc == 0 && c->thinking.len > 0)
            rc = set_str(msg, "thinking", &c->thinking);
        if (rc == 0 && c->tool_calls != NULL) {
            cJSON_AddItemToObject(msg, "tool_calls", c->tool_calls);
            c->tool_calls = NULL;
        }
        if (cJSON_GetObjectItemCaseSensitive(ans, "message") != NULL)
            cJSON_ReplaceItemInObjectCaseSensitive(ans, "message", msg);
        else
            cJSON_AddItemToObject(ans, "message", msg);
    } else {
        rc = set_str(ans, "response", &c->content);
        if (rc == 0 && c->thinking.len > 0)
            rc = set_str(ans, "thinking", &c->thinking);
    }
    if (rc != 0)
        return rc;
    return json_print(ans, out);
}
