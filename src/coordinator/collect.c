/*
 * collect.c - one Ollama answer from an NDJSON stream (see collect.h).
 */
#include "collect.h"
#include "plainline.h"

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
collect_line(struct collect *c, cJSON **linep, char *errmsg, size_t errlen)
{
    cJSON *line = *linep;
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
    c->final = line; /* taken, not copied */
    *linep = NULL;
    return 1;
}

int
collect_line_fast(struct collect *c, const char *line, size_t len)
{
    struct plain_line pl;
    int rc = 0;

    if (plain_line(line, len, c->chat, &pl) != 0)
        return COLLECT_SLOW;
    if (pl.content.n > 0)
        rc = buf_append(&c->content, pl.content.p, pl.content.n);
    if (rc == 0 && pl.thinking.n > 0)
        rc = buf_append(&c->thinking, pl.thinking.p, pl.thinking.n);
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
