/*
 * translate.c - OpenAI <-> Ollama translation (pure; see translate.h).
 *
 * Requests become native bodies built with cJSON. Answers are produced
 * line by line from the node's NDJSON: a chunk per piece of content or
 * reasoning, tool calls whole (as Ollama streams them), then the finish
 * chunk, the usage chunk when asked for, and [DONE]. An error line turns
 * into an SSE error event that the official openai client raises, and no
 * [DONE], so a broken answer never looks complete (architecture §5.4).
 */
#include "translate.h"
#include "plainline.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRANSLATE_MAX_DEPTH 64
#define TRANSLATE_MAX_TEXT  (64u << 20) /* collected answers */

static int
fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -EINVAL;
}

/* --- requests ------------------------------------------------------------- */

/* "data:image/png;base64,AAAA" -> "AAAA"; NULL when not a data URI we
 * accept (Ollama's /v1 takes only base64 data URIs). */
static const char *
data_uri_payload(const char *url)
{
    static const char *const ok[] = {
        "data:image/jpeg;base64,", "data:image/jpg;base64,",
        "data:image/png;base64,",  "data:image/webp;base64,",
        "data:;base64,",
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        if (strncmp(url, ok[i], strlen(ok[i])) == 0)
            return url + strlen(ok[i]);
    }
    return NULL;
}

/* Content parts -> text, images. */
static int
tr_content(const cJSON *content, cJSON *msg, char *err, size_t errlen)
{
    const cJSON *part;
    struct buf text;
    cJSON *images = NULL;
    int rc = 0;

    if (content == NULL || cJSON_IsNull(content)) {
        cJSON_AddStringToObject(msg, "content", "");
        return 0;
    }
    if (cJSON_IsString(content)) {
        cJSON_AddStringToObject(msg, "content", content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content))
        return fail(err, errlen, "invalid message content type");
    buf_init(&text, TRANSLATE_MAX_TEXT);
    cJSON_ArrayForEach(part, content)
    {
        const char *type = json_get_str(part, "type");
        const char *url = json_get_str(part, "image_url");
        const char *b64;

        if (type != NULL && strcmp(type, "text") == 0) {
            const char *t = json_get_str(part, "text");

            if (t != NULL && buf_appends(&text, t) != 0)
                rc = fail(err, errlen, "message too large");
        } else if (type != NULL && strcmp(type, "image_url") == 0) {
            if (url == NULL)
                url = json_get_str(json_get(part, "image_url"), "url");
            if (url == NULL) {
                rc = fail(err, errlen, "invalid image input");
            } else if ((b64 = data_uri_payload(url)) == NULL) {
                rc = fail(err, errlen,
                          "image URLs are not currently supported, please "
                          "use base64 encoded data instead");
            } else {
                if (images == NULL)
                    images = cJSON_AddArrayToObject(msg, "images");
                cJSON_AddItemToArray(images, cJSON_CreateString(b64));
            }
        } else if (type == NULL || strcmp(type, "input_audio") != 0) {
            rc = fail(err, errlen, "invalid message format");
        }
        if (rc != 0)
            break;
    }
    if (rc == 0)
        cJSON_AddStringToObject(msg, "content", text.data ? text.data : "");
    buf_cleanup(&text);
    return rc;
}

/* tool_calls[].function.arguments: a JSON string -> an object. */
static int
tr_tool_calls(const cJSON *tcs, cJSON *msg, char *err, size_t errlen)
{
    cJSON *out = cJSON_AddArrayToObject(msg, "tool_calls");
    const cJSON *tc;
    int i = 0;

    cJSON_ArrayForEach(tc, tcs)
    {
        const cJSON *fn = json_get(tc, "function");
        const char *args = json_get_str(fn, "arguments");
        const char *name = json_get_str(fn, "name");
        const char *id = json_get_str(tc, "id");
        cJSON *obj = NULL, *call, *f;
        char e[128];

        if (args != NULL && *args &&
            (json_parse(args, strlen(args), TRANSLATE_MAX_DEPTH, &obj, e,
                        sizeof(e)) != 0 ||
             !cJSON_IsObject(obj))) {
            cJSON_Delete(obj);
            return fail(err, errlen, "invalid tool call arguments");
        }
        call = cJSON_CreateObject();
        if (id != NULL)
            cJSON_AddStringToObject(call, "id", id);
        f = cJSON_AddObjectToObject(call, "function");
        cJSON_AddNumberToObject(f, "index", i++);
        cJSON_AddStringToObject(f, "name", name ? name : "");
        cJSON_AddItemToObject(f, "arguments", obj ? obj : cJSON_CreateObject());
        cJSON_AddItemToArray(out, call);
    }
    return 0;
}

/* The function name of an earlier assistant tool call with this id. */
static const char *
tr_tool_name(const cJSON *messages, const char *call_id)
{
    const cJSON *m, *tc;

    cJSON_ArrayForEach(m, messages)
    {
        cJSON_ArrayForEach(tc, json_get(m, "tool_calls"))
        {
            const char *id = json_get_str(tc, "id");

            if (id != NULL && strcmp(id, call_id) == 0)
                return json_get_str(json_get(tc, "function"), "name");
        }
    }
    return NULL;
}

static int
tr_message(const cJSON *messages, const cJSON *m, cJSON *out, char *err,
           size_t errlen)
{
    const char *role = json_get_str(m, "role");
    const char *reasoning = json_get_str(m, "reasoning");
    const char *call_id = json_get_str(m, "tool_call_id");
    const char *name = json_get_str(m, "name");
    const cJSON *tcs = json_get(m, "tool_calls");
    cJSON *nm;
    char lrole[32];
    size_t i;

    if (!cJSON_IsObject(m) || role == NULL)
        return fail(err, errlen, "invalid message format");
    for (i = 0; role[i] != '\0' && i < sizeof(lrole) - 1; i++)
        lrole[i] = (char)tolower((unsigned char)role[i]);
    lrole[i] = '\0';
    nm = cJSON_CreateObject();
    cJSON_AddItemToArray(out, nm);
    cJSON_AddStringToObject(nm, "role", lrole);
    if (tr_content(json_get(m, "content"), nm, err, errlen) != 0)
        return -EINVAL;
    if (reasoning != NULL)
        cJSON_AddStringToObject(nm, "thinking", reasoning);
    if (cJSON_IsArray(tcs) && tr_tool_calls(tcs, nm, err, errlen) != 0)
        return -EINVAL;
    if (strcmp(lrole, "tool") == 0) {
        if (name == NULL && call_id != NULL)
            name = tr_tool_name(messages, call_id);
        if (name != NULL)
            cJSON_AddStringToObject(nm, "tool_name", name);
        if (call_id != NULL)
            cJSON_AddStringToObject(nm, "tool_call_id", call_id);
    }
    return 0;
}

/* A number field copied into options under a (maybe other) name. */
static void
tr_num(const cJSON *oai, const char *key, cJSON *opts, const char *as)
{
    const cJSON *v = json_get(oai, key);

    if (v != NULL && cJSON_IsNumber(v))
        cJSON_AddNumberToObject(opts, as, v->valuedouble);
}

static int
tr_stop(const cJSON *oai, cJSON *opts, char *err, size_t errlen)
{
    const cJSON *v = json_get(oai, "stop"), *e;

    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        cJSON *a = cJSON_AddArrayToObject(opts, "stop");

        cJSON_AddItemToArray(a, cJSON_CreateString(v->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(v))
        return fail(err, errlen, "invalid type for 'stop' field");
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e))
            return fail(err, errlen, "invalid type for 'stop' field");
    }
    cJSON_AddItemToObject(opts, "stop", cJSON_Duplicate(v, 1));
    return 0;
}

/* The sampling options shared by chat and completions. Ollama's /v1
 * layer defaults temperature and top_p to 1.0, not the native 0.8/0.9:
 * an OpenAI client gets what it would get from Ollama directly. */
/* Numbers must be numbers (or null), as Go's decoder in Ollama's /v1
 * layer insists: a 400 here, not a node's 500 later. */
static int
tr_check_numbers(const cJSON *oai, const char *gostruct, char *err,
                 size_t errlen)
{
    static const struct {
        const char *key, *type;
    } nums[] = {
        {"temperature", "float64"},
        {"top_p", "float64"},
        {"frequency_penalty", "float64"},
        {"presence_penalty", "float64"},
        {"seed", "int"},
        {"max_tokens", "int"},
        {"max_completion_tokens", "int"},
    };

    for (size_t i = 0; i < sizeof(nums) / sizeof(*nums); i++) {
        const cJSON *v = json_get(oai, nums[i].key);

        if (v == NULL || cJSON_IsNull(v) || cJSON_IsNumber(v))
            continue;
        snprintf(err, errlen,
                 "json: cannot unmarshal %s into Go struct field %s.%s of "
                 "type %s",
                 json_go_kind(v), gostruct, nums[i].key, nums[i].type);
        return -EINVAL;
    }
    return 0;
}

static int
tr_options(const cJSON *oai, cJSON *native, char *err, size_t errlen)
{
    cJSON *opts = cJSON_AddObjectToObject(native, "options");
    const cJSON *mt = json_get(oai, "max_completion_tokens");

    if (mt == NULL || !cJSON_IsNumber(mt))
        mt = json_get(oai, "max_tokens");
    if (mt != NULL && cJSON_IsNumber(mt))
        cJSON_AddNumberToObject(opts, "num_predict", mt->valuedouble);
    tr_num(oai, "seed", opts, "seed");
    tr_num(oai, "frequency_penalty", opts, "frequency_penalty");
    tr_num(oai, "presence_penalty", opts, "presence_penalty");
    cJSON_AddNumberToObject(opts, "temperature",
                            json_get_num(oai, "temperature", 1.0));
    cJSON_AddNumberToObject(opts, "top_p", json_get_num(oai, "top_p", 1.0));
    return tr_stop(oai, opts, err, errlen);
}

static int
tr_think(const cJSON *oai, cJSON *native, char *err, size_t errlen)
{
    static const char *const levels[] = {"minimal", "low",   "medium", "high",
                                         "xhigh",   "ultra", "max"};
    const char *e = json_get_str(oai, "reasoning_effort");

    if (e == NULL)
        e = json_get_str(json_get(oai, "reasoning"), "effort");
    if (e == NULL)
        return 0;
    if (strcmp(e, "none") == 0) {
        cJSON_AddFalseToObject(native, "think");
        return 0;
    }
    for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
        if (strcmp(e, levels[i]) == 0) {
            /* minimal -> low, xhigh/ultra -> max, as Ollama maps them. */
            const char *lvl = i == 0 ? "low" : i >= 4 ? "max" : e;

            cJSON_AddStringToObject(native, "think", lvl);
            return 0;
        }
    }
    snprintf(err, errlen,
             "invalid reasoning value: \"%s\" (must be \"minimal\", \"low\", "
             "\"medium\", \"high\", \"xhigh\", \"ultra\", \"max\", or "
             "\"none\")",
             e);
    return -EINVAL;
}

static int
tr_format(const cJSON *oai, cJSON *native, char *err, size_t errlen)
{
    const cJSON *rf = json_get(oai, "response_format");
    const char *type = json_get_str(rf, "type");
    const cJSON *schema;

    if (type == NULL || strcmp(type, "text") == 0)
        return 0;
    if (strcmp(type, "json_object") == 0) {
        cJSON_AddStringToObject(native, "format", "json");
        return 0;
    }
    if (strcmp(type, "json_schema") == 0) {
        schema = json_get(json_get(rf, "json_schema"), "schema");
        if (schema != NULL && cJSON_IsObject(schema))
            cJSON_AddItemToObject(native, "format", cJSON_Duplicate(schema, 1));
        else
            cJSON_AddStringToObject(native, "format", "json");
        return 0;
    }
    snprintf(err, errlen, "invalid response_format type: %s", type);
    return -EINVAL;
}

static void
tr_info(const cJSON *oai, struct translate_req *info)
{
    info->stream = json_get_bool(oai, "stream", false);
    info->include_usage =
        json_get_bool(json_get(oai, "stream_options"), "include_usage", false);
}

int
translate_chat_request(const cJSON *oai, cJSON **out,
                       struct translate_req *info, char *err, size_t errlen)
{
    const char *model = json_get_str(oai, "model");
    const cJSON *messages = json_get(oai, "messages"), *m, *tools;
    cJSON *native, *nmsgs;

    *out = NULL;
    if (model == NULL || *model == '\0')
        return fail(err, errlen, "model is required");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return fail(err, errlen, "[] is too short - 'messages'");
    if (tr_check_numbers(oai, "ChatCompletionRequest", err, errlen) != 0)
        return -EINVAL;
    native = cJSON_CreateObject();
    cJSON_AddStringToObject(native, "model", model);
    nmsgs = cJSON_AddArrayToObject(native, "messages");
    cJSON_ArrayForEach(m, messages)
    {
        if (tr_message(messages, m, nmsgs, err, errlen) != 0)
            goto fail;
    }
    cJSON_AddTrueToObject(native, "stream");
    tools = json_get(oai, "tools");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0)
        cJSON_AddItemToObject(native, "tools", cJSON_Duplicate(tools, 1));
    if (tr_options(oai, native, err, errlen) != 0 ||
        tr_format(oai, native, err, errlen) != 0 ||
        tr_think(oai, native, err, errlen) != 0)
        goto fail;
    tr_info(oai, info);
    *out = native;
    return 0;
fail:
    cJSON_Delete(native);
    return -EINVAL;
}

int
translate_completion_request(const cJSON *oai, cJSON **out,
                             struct translate_req *info, char *err,
                             size_t errlen)
{
    const char *model = json_get_str(oai, "model");
    const cJSON *prompt = json_get(oai, "prompt");
    const char *suffix = json_get_str(oai, "suffix");
    cJSON *native;

    *out = NULL;
    if (model == NULL || *model == '\0')
        return fail(err, errlen, "model is required");
    if (prompt != NULL && !cJSON_IsString(prompt) && !cJSON_IsNull(prompt))
        return fail(err, errlen, "prompt must be a string");
    if (tr_check_numbers(oai, "CompletionRequest", err, errlen) != 0)
        return -EINVAL;
    native = cJSON_CreateObject();
    cJSON_AddStringToObject(native, "model", model);
    cJSON_AddStringToObject(native, "prompt",
                            cJSON_IsString(prompt) ? prompt->valuestring : "");
    if (suffix != NULL)
        cJSON_AddStringToObject(native, "suffix", suffix);
    cJSON_AddTrueToObject(native, "stream");
    if (tr_options(oai, native, err, errlen) != 0) {
        cJSON_Delete(native);
        return -EINVAL;
    }
    tr_info(oai, info);
    *out = native;
    return 0;
}

/* --- answers -------------------------------------------------------------- */

void
translate_stream_init(struct translate_stream *ts, enum translate_kind kind,
                      bool collect, bool include_usage, const char *id,
                      int64_t created, const char *model)
{
    memset(ts, 0, sizeof(*ts));
    ts->kind = kind;
    ts->collect = collect;
    ts->include_usage = include_usage;
    ts->created = created;
    snprintf(ts->id, sizeof(ts->id), "%s", id);
    snprintf(ts->model, sizeof(ts->model), "%s", model);
    snprintf(ts->done_reason, sizeof(ts->done_reason), "stop");
    buf_init(&ts->text, TRANSLATE_MAX_TEXT);
    buf_init(&ts->reasoning, TRANSLATE_MAX_TEXT);
    buf_init(&ts->calls, TRANSLATE_MAX_TEXT);
}

void
translate_stream_cleanup(struct translate_stream *ts)
{
    buf_cleanup(&ts->text);
    buf_cleanup(&ts->reasoning);
    buf_cleanup(&ts->calls);
}

/* {"id":..,"object":..,"created":..,"model":..,"system_fingerprint":.. */
static int
ts_head(const struct translate_stream *ts, struct buf *b, const char *object)
{
    int rc;

    /* without printf: this runs once a streamed token */
    rc = buf_appends(b, "{\"id\":\"");
    if (rc == 0)
        rc = buf_appends(b, ts->id);
    if (rc == 0)
        rc = buf_appends(b, "\",\"object\":\"");
    if (rc == 0)
        rc = buf_appends(b, object);
    if (rc == 0)
        rc = buf_appends(b, "\",\"created\":");
    if (rc == 0)
        rc = buf_append_i64(b, ts->created);
    if (rc == 0)
        rc = buf_appends(b, ",\"model\":");
    if (rc == 0)
        rc = json_append_str(b, ts->model, strlen(ts->model));
    if (rc == 0)
        rc = buf_appends(b, ",\"system_fingerprint\":\"fp_ollama\"");
    return rc;
}

static int
ts_usage(const struct translate_stream *ts, struct buf *b, bool zero)
{
    int64_t p = zero ? 0 : ts->prompt_tokens;
    int64_t c = zero ? 0 : ts->completion_tokens;

    return buf_appendf(b,
                       "\"usage\":{\"prompt_tokens\":%" PRId64
                       ",\"completion_tokens\":%" PRId64
                       ",\"total_tokens\":%" PRId64 "}",
                       p, c, p + c);
}

static const char *
ts_finish_reason(const struct translate_stream *ts)
{
    if (ts->tool_calls > 0 && strcmp(ts->done_reason, "stop") == 0)
        return "tool_calls";
    return strcmp(ts->done_reason, "length") == 0 ? "length" : "stop";
}

/* One SSE event around the JSON a writer appends. */
static int
ts_event_begin(struct buf *out)
{
    return buf_appends(out, "data: ");
}

static int
ts_event_end(struct buf *out)
{
    return buf_appends(out, "\n\n");
}

/* A chat chunk whose delta carries content, or reasoning. */
static int
ts_chat_delta(struct translate_stream *ts, struct buf *out, const char *text,
              size_t n, bool reasoning)
{
    int rc = ts_event_begin(out);

    if (rc == 0)
        rc = ts_head(ts, out, "chat.completion.chunk");
    if (rc == 0)
        rc = buf_appends(out, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (rc == 0 && !ts->role_sent)
        rc = buf_appends(out, "\"role\":\"assistant\",");
    ts->role_sent = true;
    if (rc == 0)
        rc = buf_appends(out, "\"content\":");
    if (rc == 0)
        rc = json_append_str(out, reasoning ? "" : text, reasoning ? 0 : n);
    if (rc == 0 && reasoning) {
        rc = buf_appends(out, ",\"reasoning\":");
        if (rc == 0)
            rc = json_append_str(out, text, n);
    }
    if (rc == 0)
        rc = buf_appends(out, "},\"finish_reason\":null}]}");
    return rc == 0 ? ts_event_end(out) : rc;
}

/* OpenAI tool calls: [{"id","index","type":"function","function":{"name",
 * "arguments":"<json string>"}}], numbered across the whole answer. */
static int
ts_tool_calls_json(struct translate_stream *ts, const cJSON *calls,
                   struct buf *b)
{
    const cJSON *tc;
    bool first = true;
    int rc = 0;

    cJSON_ArrayForEach(tc, calls)
    {
        const cJSON *fn = json_get(tc, "function");
        const char *name = json_get_str(fn, "name");
        const char *id = json_get_str(tc, "id");
        struct buf args;
        char gen_id[64];

        if (id == NULL) {
            snprintf(gen_id, sizeof(gen_id), "call_%s_%d", ts->id,
                     ts->tool_calls);
            id = gen_id;
        }
        buf_init(&args, TRANSLATE_MAX_TEXT);
        rc = json_print(json_get(fn, "arguments"), &args);
        if (rc == 0)
            rc = buf_appends(b, first ? "{\"id\":" : ",{\"id\":");
        if (rc == 0)
            rc = json_append_str(b, id, strlen(id));
        if (rc == 0)
            rc = buf_appendf(b,
                             ",\"index\":%d,\"type\":\"function\","
                             "\"function\":{\"name\":",
                             ts->tool_calls);
        if (rc == 0)
            rc = json_append_str(b, name ? name : "", name ? strlen(name) : 0);
        if (rc == 0)
            rc = buf_appends(b, ",\"arguments\":");
        if (rc == 0)
            rc = json_append_str(b, args.data ? args.data : "{}",
                                 args.data ? args.len : 2);
        if (rc == 0)
            rc = buf_appends(b, "}}");
        buf_cleanup(&args);
        ts->tool_calls++;
        first = false;
        if (rc != 0)
            break;
    }
    return rc;
}

static int
ts_chat_tool_chunk(struct translate_stream *ts, struct buf *out,
                   const cJSON *calls)
{
    int rc;

    if (ts->collect) {
        if (ts->calls.len > 0 && buf_appends(&ts->calls, ",") != 0)
            return -E2BIG;
        return ts_tool_calls_json(ts, calls, &ts->calls);
    }
    rc = ts_event_begin(out);
    if (rc == 0)
        rc = ts_head(ts, out, "chat.completion.chunk");
    if (rc == 0)
        rc = buf_appends(out, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (rc == 0 && !ts->role_sent)
        rc = buf_appends(out, "\"role\":\"assistant\",");
    ts->role_sent = true;
    if (rc == 0)
        rc = buf_appends(out, "\"content\":\"\",\"tool_calls\":[");
    if (rc == 0)
        rc = ts_tool_calls_json(ts, calls, out);
    if (rc == 0)
        rc = buf_appends(out, "]},\"finish_reason\":null}]}");
    return rc == 0 ? ts_event_end(out) : rc;
}

static int
ts_completion_chunk(struct translate_stream *ts, struct buf *out,
                    const char *text, size_t n, const char *finish)
{
    int rc = ts_event_begin(out);

    if (rc == 0)
        rc = ts_head(ts, out, "text_completion");
    if (rc == 0)
        rc = buf_appends(out, ",\"choices\":[{\"text\":");
    if (rc == 0)
        rc = json_append_str(out, text, n);
    if (rc == 0)
        rc = finish
                 ? buf_appendf(out, ",\"index\":0,\"finish_reason\":\"%s\"}]",
                               finish)
                 : buf_appends(out, ",\"index\":0,\"finish_reason\":null}]");
    if (rc == 0 && ts->include_usage) {
        rc = buf_appends(out, ",");
        if (rc == 0)
            rc = ts_usage(ts, out, true);
    }
    if (rc == 0)
        rc = buf_appends(out, "}");
    return rc == 0 ? ts_event_end(out) : rc;
}

/* After the done line: the finish chunk, the usage chunk, [DONE]. */
static int
ts_sse_tail(struct translate_stream *ts, struct buf *out)
{
    const char *fr = ts_finish_reason(ts);
    int rc;

    if (ts->kind == TRANSLATE_COMPLETION) {
        rc = ts_completion_chunk(ts, out, "", 0, fr);
    } else {
        rc = ts_event_begin(out);
        if (rc == 0)
            rc = ts_head(ts, out, "chat.completion.chunk");
        if (rc == 0)
            rc = buf_appendf(out,
                             ",\"choices\":[{\"index\":0,\"delta\":{},"
                             "\"finish_reason\":\"%s\"}]}",
                             fr);
        if (rc == 0)
            rc = ts_event_end(out);
    }
    if (rc == 0 && ts->include_usage) {
        rc = ts_event_begin(out);
        if (rc == 0)
            rc = ts_head(ts, out,
                         ts->kind == TRANSLATE_CHAT ? "chat.completion.chunk"
                                                    : "text_completion");
        if (rc == 0)
            rc = buf_appends(out, ",\"choices\":[],");
        if (rc == 0)
            rc = ts_usage(ts, out, false);
        if (rc == 0)
            rc = buf_appends(out, "}");
        if (rc == 0)
            rc = ts_event_end(out);
    }
    return rc == 0 ? buf_appends(out, "data: [DONE]\n\n") : rc;
}

int
translate_stream_abort(struct translate_stream *ts, const char *why,
                       struct buf *out)
{
    int rc;

    ts->failed = true;
    rc = buf_appends(out, "data: {\"error\":{\"message\":");
    if (rc == 0)
        rc = json_append_str(out, why, strlen(why));
    if (rc == 0)
        rc = buf_appends(out, ",\"type\":\"api_error\",\"param\":null,"
                              "\"code\":null}}\n\n");
    return rc;
}

/* The done line: metrics and reason. */
static void
ts_take_done(struct translate_stream *ts, const cJSON *line)
{
    const char *reason = json_get_str(line, "done_reason");

    ts->done = true;
    ts->prompt_tokens = (int64_t)json_get_num(line, "prompt_eval_count", 0);
    ts->completion_tokens = (int64_t)json_get_num(line, "eval_count", 0);
    if (reason != NULL)
        snprintf(ts->done_reason, sizeof(ts->done_reason), "%s", reason);
}

static int
ts_chat_line(struct translate_stream *ts, const cJSON *line, bool done,
             struct buf *out)
{
    const cJSON *msg = json_get(line, "message");
    const char *content = json_get_str(msg, "content");
    const char *thinking = json_get_str(msg, "thinking");
    const cJSON *calls = json_get(msg, "tool_calls");
    bool have_calls = cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0;
    int rc = 0;

    if (ts->collect) {
        if (content != NULL)
            rc = buf_appends(&ts->text, content);
        if (rc == 0 && thinking != NULL)
            rc = buf_appends(&ts->reasoning, thinking);
    } else {
        if (thinking != NULL && *thinking)
            rc = ts_chat_delta(ts, out, thinking, strlen(thinking), true);
        /* Every non-final line is a content chunk, even an empty one (as
         * Ollama's /v1 sends them); the final metrics line is not. */
        if (rc == 0 && content != NULL &&
            (*content || (!done && !have_calls && !(thinking && *thinking))))
            rc = ts_chat_delta(ts, out, content, strlen(content), false);
    }
    if (rc == 0 && have_calls)
        rc = ts_chat_tool_chunk(ts, out, calls);
    return rc;
}

/*
 * A plain token line (plainline.h): what the parse path below does with
 * it, without the parse. Not done, no error, no tool calls, so: collect
 * the text, or one chunk for the thinking and one for the content (an
 * empty content still makes a chunk when there is no thinking).
 */
static int
ts_plain_line(struct translate_stream *ts, const struct plain_line *pl,
              struct buf *out)
{
    const struct plain_str *c = &pl->content, *t = &pl->thinking;
    int rc = 0;

    if (ts->kind == TRANSLATE_CHAT) {
        if (ts->collect) {
            if (c->n > 0)
                rc = buf_append(&ts->text, c->p, c->n);
            if (rc == 0 && t->n > 0)
                rc = buf_append(&ts->reasoning, t->p, t->n);
            return rc;
        }
        if (t->n > 0)
            rc = ts_chat_delta(ts, out, t->p, t->n, true);
        if (rc == 0 && c->p != NULL && (c->n > 0 || t->n == 0))
            rc = ts_chat_delta(ts, out, c->p, c->n, false);
        return rc;
    }
    if (ts->collect)
        return c->n > 0 ? buf_append(&ts->text, c->p, c->n) : 0;
    if (c->p != NULL)
        rc = ts_completion_chunk(ts, out, c->p, c->n, NULL);
    return rc;
}

int
translate_stream_line(struct translate_stream *ts, const char *line, size_t len,
                      struct buf *out, char *errmsg, size_t errlen)
{
    cJSON *j = NULL;
    const cJSON *e;
    char perr[128];
    struct plain_line pl;
    bool done;
    int rc = 0;

    if (!ts->no_plain &&
        plain_line(line, len, ts->kind == TRANSLATE_CHAT, &pl) == 0) {
        rc = ts_plain_line(ts, &pl, out);
        if (rc != 0) {
            snprintf(errmsg, errlen, "answer too large");
            return -E2BIG;
        }
        return 0;
    }
    if (json_parse(line, len, TRANSLATE_MAX_DEPTH, &j, perr, sizeof(perr)) !=
            0 ||
        !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(errmsg, errlen, "malformed line from node");
        return -EPROTO;
    }
    e = json_get(j, "error");
    if (e != NULL) {
        snprintf(errmsg, errlen, "%s",
                 cJSON_IsString(e) ? e->valuestring : "error from node");
        if (!ts->collect)
            (void)translate_stream_abort(ts, errmsg, out);
        ts->failed = true;
        cJSON_Delete(j);
        return -EIO;
    }
    done = json_get_bool(j, "done", false);
    if (done)
        ts_take_done(ts, j);
    if (ts->kind == TRANSLATE_CHAT) {
        rc = ts_chat_line(ts, j, done, out);
    } else {
        const char *text = json_get_str(j, "response");

        if (ts->collect && text != NULL)
            rc = buf_appends(&ts->text, text);
        else if (!ts->collect && text != NULL && (*text || !done))
            rc = ts_completion_chunk(ts, out, text, strlen(text), NULL);
    }
    if (rc == 0 && done && !ts->collect)
        rc = ts_sse_tail(ts, out);
    cJSON_Delete(j);
    if (rc != 0) {
        snprintf(errmsg, errlen, "answer too large");
        return -E2BIG;
    }
    return done ? 1 : 0;
}

int
translate_stream_finish(struct translate_stream *ts, struct buf *out)
{
    const char *fr = ts_finish_reason(ts);
    bool chat = ts->kind == TRANSLATE_CHAT;
    int rc = ts_head(ts, out, chat ? "chat.completion" : "text_completion");

    if (rc == 0 && chat) {
        rc = buf_appends(out, ",\"choices\":[{\"index\":0,\"message\":{"
                              "\"role\":\"assistant\",\"content\":");
        if (rc == 0)
            rc = json_append_str(out, ts->text.data ? ts->text.data : "",
                                 ts->text.len);
        if (rc == 0 && ts->reasoning.len > 0) {
            rc = buf_appends(out, ",\"reasoning\":");
            if (rc == 0)
                rc =
                    json_append_str(out, ts->reasoning.data, ts->reasoning.len);
        }
        if (rc == 0 && ts->tool_calls > 0)
            rc = buf_appendf(out, ",\"tool_calls\":[%s]", ts->calls.data);
        if (rc == 0)
            rc = buf_appendf(out, "},\"finish_reason\":\"%s\"}],", fr);
    } else if (rc == 0) {
        rc = buf_appends(out, ",\"choices\":[{\"text\":");
        if (rc == 0)
            rc = json_append_str(out, ts->text.data ? ts->text.data : "",
                                 ts->text.len);
        if (rc == 0)
            rc = buf_appendf(out, ",\"index\":0,\"finish_reason\":\"%s\"}],",
                             fr);
    }
    if (rc == 0)
        rc = ts_usage(ts, out, false);
    return rc == 0 ? buf_appends(out, "}") : rc;
}

/* --- NDJSON --------------------------------------------------------------- */

void
ndjson_init(struct ndjson *nd, size_t max_line)
{
    buf_init(&nd->pending, max_line);
    nd->max_line = max_line;
}

void
ndjson_cleanup(struct ndjson *nd)
{
    buf_cleanup(&nd->pending);
}

static int
ndjson_emit(const char *p, size_t n,
            int (*fn)(const char *line, size_t len, void *ud), void *ud)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return n > 0 ? fn(p, n, ud) : 0;
}

int
ndjson_feed(struct ndjson *nd, const char *p, size_t n,
            int (*fn)(const char *line, size_t len, void *ud), void *ud)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        int rc;

        if (nd->pending.len + take > nd->max_line)
            return -E2BIG;
        if (nl == NULL)
            return buf_append(&nd->pending, p, take);
        if (nd->pending.len > 0) {
            if ((rc = buf_append(&nd->pending, p, take)) != 0)
                return rc;
            rc = ndjson_emit(nd->pending.data, nd->pending.len, fn, ud);
            buf_reset(&nd->pending);
        } else {
            rc = ndjson_emit(p, take, fn, ud);
        }
        if (rc != 0)
            return rc;
        p += take + 1;
        n -= take + 1;
    }
    return 0;
}

int
ndjson_finish(struct ndjson *nd,
              int (*fn)(const char *line, size_t len, void *ud), void *ud)
{
    int rc = ndjson_emit(nd->pending.data ? nd->pending.data : "",
                         nd->pending.len, fn, ud);

    buf_reset(&nd->pending);
    return rc;
}

/* --- embeddings ----------------------------------------------------------- */

int
translate_embed_request(const cJSON *oai, cJSON **out, bool *base64, char *err,
                        size_t errlen)
{
    const char *model = json_get_str(oai, "model");
    const cJSON *input = json_get(oai, "input"), *v;
    const char *enc = json_get_str(oai, "encoding_format");
    const cJSON *dims = json_get(oai, "dimensions");
    cJSON *native;

    *out = NULL;
    if (model == NULL || *model == '\0')
        return fail(err, errlen, "model is required");
    if (input == NULL || cJSON_IsNull(input) ||
        (cJSON_IsArray(input) && cJSON_GetArraySize(input) == 0))
        return fail(err, errlen, "invalid input");
    if (cJSON_IsArray(input)) {
        cJSON_ArrayForEach(v, input)
        {
            if (!cJSON_IsString(v))
                return fail(err, errlen,
                            "invalid input: token arrays are not supported; "
                            "send strings");
        }
    } else if (!cJSON_IsString(input)) {
        return fail(err, errlen, "invalid input");
    }
    if (enc != NULL && strcmp(enc, "float") != 0 &&
        strcmp(enc, "base64") != 0) {
        snprintf(err, errlen,
                 "Invalid value for 'encoding_format' = %s. Supported "
                 "values: ['float', 'base64'].",
                 enc);
        return -EINVAL;
    }
    *base64 = enc != NULL && strcmp(enc, "base64") == 0;
    native = cJSON_CreateObject();
    cJSON_AddStringToObject(native, "model", model);
    cJSON_AddItemToObject(native, "input", cJSON_Duplicate(input, 1));
    if (cJSON_IsNumber(dims) && dims->valuedouble >= 1)
        cJSON_AddNumberToObject(native, "dimensions", dims->valuedouble);
    *out = native;
    return 0;
}

/* Little-endian float32 values, base64 encoded, in quotes. */
static int
tr_b64_floats(struct buf *b, const cJSON *vec)
{
    size_t n = (size_t)cJSON_GetArraySize(vec), k = 0;
    double *v = malloc((n ? n : 1) * sizeof(*v));
    const cJSON *e;
    int rc;

    if (v == NULL)
        return -ENOMEM;
    cJSON_ArrayForEach(e, vec)
    {
        v[k++] = cJSON_IsNumber(e) ? e->valuedouble : 0;
    }
    rc = buf_appends(b, "\"");
    if (rc == 0)
        rc = buf_append_f32_base64(b, v, k);
    free(v);
    return rc == 0 ? buf_appends(b, "\"") : rc;
}

int
translate_embed_response(const cJSON *native, const char *model, bool base64,
                         struct buf *out)
{
    const cJSON *embs = json_get(native, "embeddings"), *vec;
    double pt = json_get_num(native, "prompt_eval_count", 0);
    int rc, i = 0;

    if (!cJSON_IsArray(embs))
        return -EPROTO;
    rc = buf_appends(out, "{\"object\":\"list\",\"data\":[");
    cJSON_ArrayForEach(vec, embs)
    {
        if (!cJSON_IsArray(vec))
            return -EPROTO;
        if (rc == 0)
            rc = buf_appendf(out, "%s{\"object\":\"embedding\",\"embedding\":",
                             i ? "," : "");
        if (rc == 0 && base64) {
            rc = tr_b64_floats(out, vec);
        } else if (rc == 0) {
            const cJSON *v;
            int k = 0;

            rc = buf_appends(out, "[");
            cJSON_ArrayForEach(v, vec)
            {
                if (rc == 0)
                    rc = buf_appendf(out, "%s%.9g", k++ ? "," : "",
                                     cJSON_IsNumber(v) ? v->valuedouble : 0.0);
            }
            if (rc == 0)
                rc = buf_appends(out, "]");
        }
        if (rc == 0)
            rc = buf_appendf(out, ",\"index\":%d}", i);
        i++;
    }
    if (rc == 0)
        rc = buf_appends(out, "],\"model\":");
    if (rc == 0)
        rc = json_append_str(out, model, strlen(model));
    if (rc == 0)
        rc = buf_appendf(out,
                         ",\"usage\":{\"prompt_tokens\":%.0f,"
                         "\"total_tokens\":%.0f}}",
                         pt, pt);
    return rc;
}
