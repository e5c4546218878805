/*
 * api_openai.c - herd-sim's OpenAI-compatible endpoints (under /v1), as
 * Ollama's middleware serves them (../shared/reference/ollama-api.md §3):
 * the request is mapped onto the native one (options, num_ctx and
 * keep_alive are dropped), the answer is shaped as OpenAI's, and errors
 * use {"error":{"message","type","param":null,"code":null}}.
 */
#include "gen.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/log.h"

int native_chat_spec(struct sim *sim, struct http_req *req,
                     struct gen_spec *spec, const cJSON *body, bool openai);
int native_embed_spec(struct sim *sim, struct http_req *req,
                      struct gen_spec *spec, const cJSON *body, bool openai);

/* --- shared request fields ------------------------------------------------ */

/* stop: a string or an array of strings; another element type is a 400
 * naming Go's type ("float64" for numbers). */
static int
oai_stop(struct http_req *req, const cJSON *v, struct gen_spec *spec)
{
    const cJSON *bad;
    int rc;

    if (v == NULL || cJSON_IsNull(v))
        return 0;
    rc = api_stop_strings(v, spec, &bad);
    if (rc == -EINVAL)
        api_oai_error(req, 400, "invalid type for 'stop' field: %s",
                      cJSON_IsNumber(bad) ? "float64" : json_go_kind(bad));
    return rc == -EINVAL ? -1 : rc;
}

/* max_tokens / max_completion_tokens, seed, stop; runner options stay at
 * their defaults: /v1 cannot set num_ctx or keep_alive. */
static int
oai_sampling(struct http_req *req, const cJSON *body, struct gen_spec *spec)
{
    const cJSON *mt = json_get(body, "max_completion_tokens");
    const cJSON *seed = json_get(body, "seed");
    int rc;

    runner_opts_default(&spec->ro);
    spec->tp.num_predict = -1;
    if (mt == NULL || !cJSON_IsNumber(mt))
        mt = json_get(body, "max_tokens");
    if (mt != NULL && cJSON_IsNumber(mt))
        spec->tp.num_predict = (int64_t)mt->valuedouble;
    if (seed != NULL && cJSON_IsNumber(seed) && seed->valuedouble >= 0)
        spec->tp.seed = (uint64_t)seed->valuedouble;
    rc = oai_stop(req, json_get(body, "stop"), spec);
    if (rc == -ENOMEM)
        api_oai_error(req, 500, "out of memory");
    if (rc != 0)
        return -1;
    spec->tp.stop = (const char *const *)spec->stop;
    spec->tp.n_stop = spec->n_stop;
    spec->stream = json_get_bool(body, "stream", false);
    spec->include_usage =
        json_get_bool(json_get(body, "stream_options"), "include_usage", false);
    return 0;
}

/* --- /v1/chat/completions ------------------------------------------------ */

static bool
oai_data_uri_ok(const char *url)
{
    static const char *const ok[] = {
        "data:image/jpeg;base64,", "data:image/jpg;base64,",
        "data:image/png;base64,",  "data:image/webp;base64,",
        "data:;base64,",
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        if (strncmp(url, ok[i], strlen(ok[i])) == 0)
            return true;
    }
    return false;
}

/* Content parts -> one string; -1 after answering 400. */
static int
oai_content(struct http_req *req, const cJSON *content, struct buf *out)
{
    const cJSON *part;

    if (content == NULL || cJSON_IsNull(content))
        return 0;
    if (cJSON_IsString(content))
        return buf_appends(out, content->valuestring) == 0 ? 0 : -1;
    if (!cJSON_IsArray(content)) {
        api_oai_error(req, 400, "invalid message content type");
        return -1;
    }
    cJSON_ArrayForEach(part, content)
    {
        const char *type = json_get_str(part, "type");
        const cJSON *iu = json_get(part, "image_url");
        const char *url = json_get_str(part, "image_url");

        if (type != NULL && strcmp(type, "text") == 0) {
            const char *t = json_get_str(part, "text");

            if (t != NULL && buf_appends(out, t) != 0)
                return -1;
            continue;
        }
        if (type != NULL && strcmp(type, "image_url") == 0) {
            if (url == NULL && iu != NULL)
                url = json_get_str(iu, "url");
            if (url == NULL) {
                api_oai_error(req, 400, "invalid image input");
                return -1;
            }
            if (!oai_data_uri_ok(url)) {
                api_oai_error(req, 400,
                              "image URLs are not currently supported, "
                              "please use base64 encoded data instead");
                return -1;
            }
            continue;
        }
        if (type != NULL && strcmp(type, "input_audio") == 0)
            continue;
        api_oai_error(req, 400, "invalid message format");
        return -1;
    }
    return 0;
}

/* tool_calls[].function.arguments: a JSON string -> an object. */
static cJSON *
oai_tool_calls(struct http_req *req, const cJSON *tcs)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *tc;
    int i = 0;

    cJSON_ArrayForEach(tc, tcs)
    {
        const cJSON *fn = json_get(tc, "function");
        const char *args = json_get_str(fn, "arguments");
        const char *name = json_get_str(fn, "name");
        cJSON *obj = NULL, *call, *f;
        char err[128];

        if (args != NULL && *args &&
            (json_parse(args, strlen(args), JSON_DEFAULT_MAX_DEPTH, &obj, err,
                        sizeof(err)) != 0 ||
             !cJSON_IsObject(obj))) {
            cJSON_Delete(obj);
            cJSON_Delete(out);
            api_oai_error(req, 400, "invalid tool call arguments");
            return NULL;
        }
        call = cJSON_CreateObject();
        f = cJSON_AddObjectToObject(call, "function");
        cJSON_AddNumberToObject(f, "index", i++);
        cJSON_AddStringToObject(f, "name", name ? name : "");
        cJSON_AddItemToObject(f, "arguments", obj ? obj : cJSON_CreateObject());
        cJSON_AddItemToArray(out, call);
    }
    return out;
}

/* OpenAI messages -> native messages; NULL after answering 400. */
static cJSON *
oai_messages(struct http_req *req, const cJSON *messages)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *m;

    cJSON_ArrayForEach(m, messages)
    {
        const char *role = json_get_str(m, "role");
        const char *reasoning = json_get_str(m, "reasoning");
        const cJSON *tcs = json_get(m, "tool_calls");
        cJSON *nm = cJSON_CreateObject();
        char lrole[32];
        struct buf content;
        size_t i;

        cJSON_AddItemToArray(out, nm);
        if (!cJSON_IsObject(m) || role == NULL) {
            api_oai_error(req, 400, "invalid message format");
            goto fail;
        }
        for (i = 0; role[i] && i < sizeof(lrole) - 1; i++)
            lrole[i] = (char)tolower((unsigned char)role[i]);
        lrole[i] = '\0';
        cJSON_AddStringToObject(nm, "role", lrole);
        buf_init(&content, 64u << 20);
        if (oai_content(req, json_get(m, "content"), &content) != 0) {
            buf_cleanup(&content);
            goto fail;
        }
        cJSON_AddStringToObject(nm, "content",
                                content.data ? content.data : "");
        buf_cleanup(&content);
        if (reasoning != NULL)
            cJSON_AddStringToObject(nm, "thinking", reasoning);
        if (tcs != NULL && cJSON_IsArray(tcs)) {
            cJSON *ntc = oai_tool_calls(req, tcs);

            if (ntc == NULL)
                goto fail;
            cJSON_AddItemToObject(nm, "tool_calls", ntc);
        }
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

/* reasoning_effort / reasoning.effort -> think. -1 after answering. */
static int
oai_reasoning(struct http_req *req, const cJSON *body, const cJSON **think)
{
    static const char *const levels[] = {"minimal", "low",   "medium", "high",
                                         "xhigh",   "ultra", "max"};
    const char *e = json_get_str(body, "reasoning_effort");

    *think = NULL;
    if (e == NULL)
        e = json_get_str(json_get(body, "reasoning"), "effort");
    if (e == NULL)
        return 0;
    if (strcmp(e, "none") == 0) {
        *think = cJSON_CreateFalse();
        return 0;
    }
    for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
        if (strcmp(e, levels[i]) == 0) {
            *think = cJSON_CreateTrue();
            return 0;
        }
    }
    api_oai_error(req, 400,
                  "invalid reasoning value: \"%s\" (must be \"minimal\", "
                  "\"low\", \"medium\", \"high\", \"xhigh\", \"ultra\", "
                  "\"max\", or \"none\")",
                  e);
    return -1;
}

static int
oai_format(struct http_req *req, const cJSON *rf, struct gen_spec *spec)
{
    const char *type = json_get_str(rf, "type");

    if (rf == NULL || cJSON_IsNull(rf) || type == NULL ||
        strcmp(type, "text") == 0)
        return 0;
    if (strcmp(type, "json_object") == 0) {
        spec->tp.format = TEXTGEN_JSON;
        return 0;
    }
    if (strcmp(type, "json_schema") == 0) {
        const cJSON *schema = json_get(json_get(rf, "json_schema"), "schema");

        spec->tp.format =
            schema && cJSON_IsObject(schema) ? TEXTGEN_SCHEMA : TEXTGEN_JSON;
        spec->tp.schema = schema;
        return 0;
    }
    api_oai_error(req, 400, "invalid response_format type: %s", type);
    return -1;
}

static const struct api_field oai_chat_fields[] = {
    {"model", "string", "string"},
    {"messages", "array", "[]openai.Message"},
    {"stream", "bool", "bool"},
    {"tools", "array", "[]api.Tool"},
    {"response_format", "object", "openai.ResponseFormat"},
    {"stream_options", "object", "openai.StreamOptions"},
    {"max_tokens", "number", "int"},
    {"max_completion_tokens", "number", "int"},
    {"seed", "number", "int"},
    {"temperature", "number", "float64"},
    {"top_p", "number", "float64"},
};

/* Whether the (thinking-capable) model thinks for this request. */
static int
oai_think(struct http_req *req, const cJSON *think, const struct sim_model *m,
          const char *name, bool *out)
{
    bool capable = (m->caps & SIM_CAP_THINKING) != 0;

    if (think == NULL) {
        *out = capable;
        return 0;
    }
    if (cJSON_IsTrue(think) && !capable) {
        api_oai_error(req, 400, "\"%s\" does not support thinking", name);
        return -1;
    }
    *out = cJSON_IsTrue(think);
    return 0;
}

void
oai_chat(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_OAI_CHAT};
    const cJSON *messages, *think = NULL;
    cJSON *body = NULL, *native;

    if (api_parse_body(req, true, "openai.ChatCompletionRequest", &body))
        return;
    spec.body = body;
    if (api_check_fields(req, true, body, "ChatCompletionRequest",
                         oai_chat_fields,
                         sizeof(oai_chat_fields) / sizeof(*oai_chat_fields)))
        goto out;
    if (json_get_str(body, "model") == NULL ||
        *json_get_str(body, "model") == '\0') {
        api_oai_error(req, 400, "model is required");
        goto out;
    }
    messages = json_get(body, "messages");
    if (messages == NULL || cJSON_GetArraySize(messages) == 0) {
        api_oai_error(req, 400, "[] is too short - 'messages'");
        goto out;
    }
    if ((native = oai_messages(req, messages)) == NULL)
        goto out;
    cJSON_ReplaceItemInObjectCaseSensitive(body, "messages", native);
    if (oai_reasoning(req, body, &think) != 0)
        goto out;
    if (native_chat_spec(sim, req, &spec, body, true) != 0)
        goto out;
    if (oai_think(req, think, spec.model, spec.model_echo, &spec.tp.think))
        goto out;
    if (oai_sampling(req, body, &spec) != 0 ||
        oai_format(req, json_get(body, "response_format"), &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, true, spec.model->name, &spec.faults))
        goto out;
    cJSON_Delete((cJSON *)think);
    gen_start(sim, req, &spec);
    return;
out:
    cJSON_Delete((cJSON *)think);
    gen_spec_cleanup(&spec);
}

/* --- /v1/completions ------------------------------------------------------ */

static const struct api_field oai_completion_fields[] = {
    {"model", "string", "string"},
    {"prompt", "string", "string"},
    {"suffix", "string", "string"},
    {"stream", "bool", "bool"},
    {"max_tokens", "number", "int"},
    {"seed", "number", "int"},
    {"temperature", "number", "float32"},
    {"top_p", "number", "float32"},
    {"stream_options", "object", "openai.StreamOptions"},
};

void
oai_completions(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_OAI_COMPLETION};
    const char *name, *prompt;
    struct sim_model *m;
    cJSON *body = NULL;
    struct buf b;
    int rc;

    if (api_parse_body(req, true, "openai.CompletionRequest", &body) != 0)
        return;
    spec.body = body;
    if (api_check_fields(
            req, true, body, "CompletionRequest", oai_completion_fields,
            sizeof(oai_completion_fields) / sizeof(*oai_completion_fields)))
        goto out;
    name = json_get_str(body, "model");
    m = name && *name ? catalog_find(&sim->catalog, name) : NULL;
    if (m == NULL) {
        api_oai_error(req, 404, "model '%s' not found", name ? name : "");
        goto out;
    }
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        api_oai_error(req, 400, "\"%s\" does not support generate", name);
        goto out;
    }
    if (oai_sampling(req, body, &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, true, m->name, &spec.faults))
        goto out;
    spec.model = m;
    spec.model_echo = strdup(name);
    prompt = json_get_str(body, "prompt");
    buf_init(&b, 64u << 20);
    rc = buf_appendf(&b, "<|user|>\n%s\n<|assistant|>\n", prompt ? prompt : "");
    if (rc == 0)
        rc = api_set_prompt(&spec, b.data, b.len);
    buf_cleanup(&b);
    if (rc != 0 || spec.model_echo == NULL) {
        api_oai_error(req, 500, "out of memory");
        goto out;
    }
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}

/* --- /v1/models --------------------------------------------------------- */

static int
oai_model_obj(const struct sim_model *m, const char *id, struct buf *b)
{
    char owner[128];
    int rc;

    model_name_owner(m->name, owner, sizeof(owner));
    rc = buf_appends(b, "{\"id\":");
    if (rc == 0)
        rc = json_append_str(b, id, strlen(id));
    if (rc == 0)
        rc = buf_appendf(
            b, ",\"object\":\"model\",\"created\":%" PRId64 ",\"owned_by\":",
            (int64_t)(m->modified_ns / 1000000000LL));
    if (rc == 0)
        rc = json_append_str(b, owner, strlen(owner));
    return rc == 0 ? buf_appends(b, "}") : rc;
}

void
oai_models(struct sim *sim, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, 16u << 20);
    rc = buf_appends(&b, "{\"object\":\"list\",\"data\":");
    if (rc == 0 && sim->catalog.n == 0)
        rc = buf_appends(&b, "null");
    else if (rc == 0)
        rc = buf_appends(&b, "[");
    for (size_t i = 0; rc == 0 && i < sim->catalog.n; i++) {
        const struct sim_model *m = sim->catalog.models[i];

        if (i > 0)
            rc = buf_appends(&b, ",");
        if (rc == 0)
            rc = oai_model_obj(m, m->name, &b);
    }
    if (rc == 0)
        rc = buf_appends(&b, sim->catalog.n ? "]}" : "}");
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_oai_error(req, 500, "out of memory");
    buf_cleanup(&b);
}

void
oai_model(struct sim *sim, struct http_req *req)
{
    const char *id = http_req_path(req) + strlen("/v1/models/");
    const struct sim_model *m = catalog_find(&sim->catalog, id);
    struct buf b;

    if (m == NULL) {
        api_oai_error(req, 404, "model '%s' not found", id);
        return;
    }
    buf_init(&b, 4096);
    if (oai_model_obj(m, id, &b) == 0)
        api_json(req, 200, &b);
    else
        api_oai_error(req, 500, "out of memory");
    buf_cleanup(&b);
}

/* --- /v1/embeddings ----------------------------------------------------- */

void
oai_embeddings(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_OAI_EMBED};
    const char *enc;
    const cJSON *input;
    cJSON *body = NULL;

    if (api_parse_body(req, true, "openai.EmbedRequest", &body) != 0)
        return;
    spec.body = body;
    input = json_get(body, "input");
    if (input == NULL || cJSON_IsNull(input) ||
        (cJSON_IsArray(input) && cJSON_GetArraySize(input) == 0)) {
        api_oai_error(req, 400, "invalid input");
        goto out;
    }
    if (cJSON_IsString(input) && input->valuestring[0] == '\0')
        cJSON_ReplaceItemInObjectCaseSensitive(body, "input",
                                               cJSON_CreateString(" "));
    enc = json_get_str(body, "encoding_format");
    if (enc != NULL && strcmp(enc, "float") != 0 &&
        strcmp(enc, "base64") != 0) {
        api_oai_error(req, 400,
                      "Invalid value for 'encoding_format' = %s. Supported "
                      "values: ['float', 'base64'].",
                      enc);
        goto out;
    }
    spec.base64 = enc != NULL && strcmp(enc, "base64") == 0;
    if (native_embed_spec(sim, req, &spec, body, true) != 0)
        goto out;
    runner_opts_default(&spec.ro);
    if (api_apply_fault(sim, req, true, spec.model->name, &spec.faults))
        goto out;
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}
