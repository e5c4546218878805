/*
 * plainline.c - the common Ollama stream line, read without a parse.
 * Pure: no allocation, no state. See plainline.h.
 */
#include "plainline.h"

#include <string.h>

static const char *
fast_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string of printable ASCII without escapes, p at its opening quote. */
static const char *
fast_string(const char *p, const char *end, struct plain_str *out)
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
    struct plain_str *val;
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
        struct plain_str key = {0}, val = {0};
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

int
plain_line(const char *line, size_t len, bool chat, struct plain_line *out)
{
    const char *end = line + len, *nested = NULL, *p;
    struct plain_str top_text = {0}, top_thinking = {0};
    struct fast_want top[] = {{"response", 8, &top_text},
                              {"thinking", 8, &top_thinking}};
    struct fast_want msg[] = {{"content", 7, &out->content},
                              {"thinking", 8, &out->thinking}};
    bool done_true = false;

    memset(out, 0, sizeof(*out));
    p = fast_object(line, end, chat ? NULL : top, chat ? 0 : 2,
                    chat ? &nested : NULL, &done_true);
    if (p == NULL || done_true || fast_ws(p, end) != end)
        return -1;
    if (nested != NULL && fast_object(nested, end, msg, 2, NULL, NULL) == NULL)
        return -1;
    if (!chat) {
        out->content = top_text;
        out->thinking = top_thinking;
    }
    return 0;
}
