/*
 * api_native.c - herd-sim's Ollama-native endpoints (under /api), with the
 * field checks, error texts and status codes of a current Ollama
 * (../shared/reference/ollama-api.md §1-§2).
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/clock.h"
#include "herd/log.h"
#include "herd/parse.h"

#define MAX_PROMPT_TOKENS (1u << 20) /* 1 Mi tokens, far past any context */
#define MAX_STOP          16
#define MAX_INPUTS        2048

/* --- shared helpers ------------------------------------------------------- */

static const char *
go_type_name(const cJSON *v)
{
    if (cJSON_IsBool(v))
        return "bool";
    if (cJSON_IsArray(v))
        return "[]interface {}";
    if (cJSON_IsObject(v))
        return "map[string]interface {}";
    return "float64";
}

int
api_keep_alive(struct http_req *req, bool openai, const cJSON *body, bool *has,
               int64_t *ns)
{
    const cJSON *v = json_get(body, "keep_alive");
    const char *why = NULL;
    int64_t d;

    *has = false;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsNumber(v)) {
        double s = v->valuedouble;

        *has = true;
        if (s < 0 || s * 1e9 > 9.2e18)
            *ns = SCHED_FOREVER;
        else
            *ns = (int64_t)(s * 1e9);
        return 1;
    }
    if (cJSON_IsString(v)) {
        if (parse_go_duration(v->valuestring, &d, &why) != 0) {
            if (openai)
                api_oai_error(req, 400, "time: %s \"%s\"", why, v->valuestring);
            else
                api_error(req, 400, "time: %s \"%s\"", why, v->valuestring);
            return -1;
        }
        *has = true;
        *ns = d < 0 ? SCHED_FOREVER : d;
        return 1;
    }
    if (openai)
        api_oai_error(req, 400, "Unsupported type: '%s'", go_type_name(v));
    else
        api_error(req, 400, "Unsupported type: '%s'", go_type_name(v));
    return -1;
}

static int
opt_fail(struct http_req *req, bool openai, const char *key, const char *type)
{
    if (openai)
        api_oai_error(req, 500, "option \"%s\" must be of type %s", key, type);
    else
        api_error(req, 500, "option \"%s\" must be of type %s", key, type);
    return -1;
}

int
api_stop_strings(const cJSON *v, struct gen_spec *spec, const cJSON **bad)
{
    const cJSON *e;

    *bad = NULL;
    if (cJSON_IsString(v)) {
        spec->stop = calloc(1, sizeof(char *));
        if (spec->stop == NULL ||
            (spec->stop[0] = strdup(v->valuestring)) == NULL)
            return -ENOMEM;
        spec->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        *bad = v;
        return -EINVAL;
    }
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e)) {
            *bad = e;
            return -EINVAL;
        }
    }
    spec->stop = calloc(MAX_STOP, sizeof(char *));
    if (spec->stop == NULL)
        return -ENOMEM;
    cJSON_ArrayForEach(e, v)
    {
        if (spec->n_stop == MAX_STOP || e->valuestring[0] == '\0')
            continue;
        spec->stop[spec->n_stop] = strdup(e->valuestring);
        if (spec->stop[spec->n_stop] == NULL)
            return -ENOMEM;
        spec->n_stop++;
    }
    return 0;
}

int
api_options(struct http_req *req, bool openai, const cJSON *options,
            struct gen_spec *spec)
{
    static const struct {
        const char *key;
        size_t off;
    } ints[] = {
        {"num_ctx", offsetof(struct runner_opts, num_ctx)},
        {"num_batch", offsetof(struct runner_opts, num_batch)},
        {"num_gpu", offsetof(struct runner_opts, num_gpu)},
        {"main_gpu", offsetof(struct runner_opts, main_gpu)},
        {"num_thread", offsetof(struct runner_opts, num_thread)},
        {"draft_num_predict", offsetof(struct runner_opts, draft_num_predict)},
    };
    static const char *const floats[] = {
        "temperature",       "top_p",          "min_p",
        "typical_p",         "repeat_penalty", "presence_penalty",
        "frequency_penalty",
    };
    const cJSON *v;

    runner_opts_default(&spec->ro);
    spec->tp.num_predict = -1;
    if (options == NULL || cJSON_IsNull(options))
        return 0;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        v = json_get(options, ints[i].key);
        if (v == NULL || cJSON_IsNull(v))
            continue;
        if (!cJSON_IsNumber(v))
            return opt_fail(req, openai, ints[i].key, "integer");
        *(int64_t *)(void *)((char *)&spec->ro + ints[i].off) =
            (int64_t)v->valuedouble;
    }
    v = json_get(options, "use_mmap");
    if (v != NULL && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return opt_fail(req, openai, "use_mmap", "boolean");
        spec->ro.use_mmap = cJSON_IsTrue(v) ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
        v = json_get(options, floats[i]);
        if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsNumber(v))
            return opt_fail(req, openai, floats[i], "float");
    }
    static const char *const sampling_ints[] = {"seed", "num_predict", "top_k",
                                                "num_keep", "repeat_last_n"};
    for (size_t i = 0; i < 5; i++) {
        v = json_get(options, sampling_ints[i]);
        if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsNumber(v))
            return opt_fail(req, openai, sampling_ints[i], "integer");
    }
    v = json_get(options, "seed");
    if (v != NULL && cJSON_IsNumber(v) && v->valuedouble >= 0)
        spec->tp.seed = (uint64_t)v->valuedouble;
    v = json_get(options, "num_predict");
    if (v != NULL && cJSON_IsNumber(v))
        spec->tp.num_predict = (int64_t)v->valuedouble;
    v = json_get(options, "stop");
    if (v != NULL && !cJSON_IsNull(v)) {
        const cJSON *bad;
        int rc = api_stop_strings(v, spec, &bad);

        if (rc == -EINVAL)
            return opt_fail(req, openai, "stop", "array");
        if (rc != 0) {
            api_error(req, 500, "out of memory");
            return -1;
        }
    }
    return 0;
}

int
api_set_prompt(struct gen_spec *spec, const char *text, size_t len)
{
    size_t n = textgen_tokenize(text, len, NULL, 0);
    uint32_t *p;

    if (n > MAX_PROMPT_TOKENS)
        n = MAX_PROMPT_TOKENS;
    p = realloc(spec->prompt, (spec->n_prompt + n + 1) * sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    spec->prompt = p;
    textgen_tokenize(text, len, p + spec->n_prompt, n);
    spec->n_prompt += n;
    return 0;
}

int
api_render_chat(const cJSON *messages, struct buf *b)
{
    const cJSON *m;
    int rc = 0;

    cJSON_ArrayForEach(m, messages)
    {
        const char *role = json_get_str(m, "role");
        const char *content = json_get_str(m, "content");
        const cJSON *tc = json_get(m, "tool_calls");

        rc = buf_appendf(b, "<|%s|>\n", role ? role : "user");
        if (rc == 0 && content != NULL)
            rc = buf_appends(b, content);
        if (rc == 0 && tc != NULL && cJSON_IsArray(tc))
            rc = json_print(tc, b);
        if (rc == 0)
            rc = buf_appends(b, "\n");
        if (rc != 0)
            return rc;
    }
    return buf_appends(b, "<|assistant|>\n");
}

/* Ollama's %q: a Go-quoted string. */
static void
goq(const char *s, char *out, size_t n)
{
    struct buf b;

    buf_init(&b, n);
    if (json_append_str(&b, s, strlen(s)) == 0)
        snprintf(out, n, "%s", b.data);
    else
        snprintf(out, n, "\"%s\"", s);
    buf_cleanup(&b);
}

/* "registry.ollama.ai/library/x:latest", the full name in some errors. */
static void
full_name(const char *name, char *out, size_t n)
{
    if (strchr(name, '/') == NULL)
        snprintf(out, n, "registry.ollama.ai/library/%s", name);
    else
        snprintf(out, n, "registry.ollama.ai/%s", name);
}

/* think: unset -> true on thinking models; a truthy value on another
 * model is a 400; a bad string a 400. Returns -1 after answering. */
static int
api_think(struct http_req *req, bool openai, const cJSON *v,
          const struct sim_model *m, const char *echo, bool *think)
{
    bool capable = (m->caps & SIM_CAP_THINKING) != 0;
    bool want;
    char q[300];

    if (v == NULL || cJSON_IsNull(v)) {
        *think = capable;
        return 0;
    }
    if (cJSON_IsBool(v)) {
        want = cJSON_IsTrue(v);
    } else if (cJSON_IsString(v) && (strcmp(v->valuestring, "high") == 0 ||
                                     strcmp(v->valuestring, "medium") == 0 ||
                                     strcmp(v->valuestring, "low") == 0 ||
                                     strcmp(v->valuestring, "max") == 0)) {
        want = true;
    } else {
        goq(cJSON_IsString(v) ? v->valuestring : "", q, sizeof(q));
        if (openai)
            api_oai_error(req, 400,
                          "invalid think value: %s (must be \"high\", "
                          "\"medium\", \"low\", \"max\", true, or false)",
                          q);
        else
            api_error(req, 400,
                      "invalid think value: %s (must be \"high\", "
                      "\"medium\", \"low\", \"max\", true, or false)",
                      q);
        return -1;
    }
    if (want && !capable) {
        goq(echo, q, sizeof(q));
        if (openai)
            api_oai_error(req, 400, "%s does not support thinking", q);
        else
            api_error(req, 400, "%s does not support thinking", q);
        return -1;
    }
    *think = want;
    return 0;
}

/* format: "" | "json" | a schema object. */
static int
api_format(struct http_req *req, bool openai, const cJSON *v,
           struct gen_spec *spec)
{
    if (v == NULL || cJSON_IsNull(v) ||
        (cJSON_IsString(v) && v->valuestring[0] == '\0'))
        return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "json") == 0) {
        spec->tp.format = TEXTGEN_JSON;
        return 0;
    }
    if (cJSON_IsObject(v)) {
        spec->tp.format = TEXTGEN_SCHEMA;
        spec->tp.schema = v;
        return 0;
    }
    if (openai)
        api_oai_error(req, 400,
                      "invalid format: expected \"json\" or a valid JSON "
                      "schema");
    else
        api_error(req, 400,
                  "invalid format: expected \"json\" or a valid JSON schema");
    return -1;
}

static int
api_stream_flag(const cJSON *body, bool def)
{
    const cJSON *v = json_get(body, "stream");

    if (v == NULL || cJSON_IsNull(v))
        return def;
    return cJSON_IsTrue(v);
}

static char *
xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* --- / and /api/version ------------------------------------------------- */

void
native_root(struct sim *sim, struct http_req *req)
{
    (void)sim;
    api_text(req, 200, "Ollama is running");
}

void
native_version(struct sim *sim, struct http_req *req)
{
    struct buf b;

    (void)sim;
    buf_init(&b, 256);
    if (buf_appends(&b, "{\"version\":\"" SIM_OLLAMA_VERSION "\"}") == 0)
        api_json(req, 200, &b);
    buf_cleanup(&b);
}

/* --- /api/generate ---------------------------------------------------- */

static const struct api_field generate_fields[] = {
    {"model", "string", "string"},
    {"prompt", "string", "string"},
    {"suffix", "string", "string"},
    {"system", "string", "string"},
    {"template", "string", "string"},
    {"context", "array", "[]int"},
    {"stream", "bool", "bool"},
    {"raw", "bool", "bool"},
    {"images", "array", "[]api.ImageData"},
    {"options", "object", "map[string]interface {}"},
    {"truncate", "bool", "bool"},
    {"shift", "bool", "bool"},
    {"logprobs", "bool", "bool"},
    {"top_logprobs", "number", "int"},
};

/* Model lookup shared by generate/chat/show: 404 `model 'X' not found`. */
static struct sim_model *
api_find(struct sim *sim, struct http_req *req, bool openai, const char *name)
{
    struct sim_model *m =
        name && *name ? catalog_find(&sim->catalog, name) : NULL;

    if (m == NULL) {
        if (openai)
            api_oai_error(req, 404, "model '%s' not found", name ? name : "");
        else
            api_error(req, 404, "model '%s' not found", name ? name : "");
    }
    return m;
}

static int
generate_prompt(struct gen_spec *spec, const cJSON *body)
{
    const char *prompt = json_get_str(body, "prompt");
    const char *system = json_get_str(body, "system");
    const cJSON *ctx = json_get(body, "context");

    if (system == NULL || *system == '\0')
        system = spec->model->system; /* the Modelfile SYSTEM */
    const cJSON *e;
    struct buf b;
    int rc = 0;

    if (ctx != NULL && cJSON_IsArray(ctx) && !spec->raw) {
        size_t n = (size_t)cJSON_GetArraySize(ctx), i = 0;

        if (n > MAX_PROMPT_TOKENS)
            return -E2BIG;
        spec->prompt = calloc(n + 1, sizeof(uint32_t));
        if (spec->prompt == NULL)
            return -ENOMEM;
        cJSON_ArrayForEach(e, ctx)
        {
            spec->prompt[i++] =
                cJSON_IsNumber(e) ? (uint32_t)e->valuedouble : 0;
        }
        spec->n_prompt = n;
    }
    buf_init(&b, 64u << 20);
    if (spec->raw) {
        rc = buf_appends(&b, prompt ? prompt : "");
    } else {
        if (system != NULL && *system)
            rc = buf_appendf(&b, "<|system|>\n%s\n", system);
        if (rc == 0)
            rc = buf_appendf(&b, "<|user|>\n%s\n<|assistant|>\n",
                             prompt ? prompt : "");
    }
    if (rc == 0)
        rc = api_set_prompt(spec, b.data, b.len);
    buf_cleanup(&b);
    return rc;
}

static int
generate_checks(struct http_req *req, const cJSON *body,
                const struct sim_model *m, const char *name)
{
    const cJSON *tl = json_get(body, "top_logprobs");
    const char *suffix = json_get_str(body, "suffix");
    char q[300];

    if (json_get_bool(body, "raw", false) &&
        ((json_get_str(body, "template") && *json_get_str(body, "template")) ||
         (json_get_str(body, "system") && *json_get_str(body, "system")) ||
         (json_get(body, "context") &&
          cJSON_GetArraySize(json_get(body, "context")) > 0))) {
        api_error(req, 400,
                  "raw mode does not support template, system, or context");
        return -1;
    }
    if (tl != NULL && cJSON_IsNumber(tl) &&
        (tl->valuedouble < 0 || tl->valuedouble > 20)) {
        api_error(req, 400, "top_logprobs must be between 0 and 20");
        return -1;
    }
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        goq(name, q, sizeof(q));
        api_error(req, 400, "%s does not support generate", q);
        return -1;
    }
    if (suffix != NULL && *suffix && !(m->caps & SIM_CAP_INSERT)) {
        full_name(m->name, q, sizeof(q));
        api_error(req, 400, "%s does not support insert", q);
        return -1;
    }
    return 0;
}

void
native_generate(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_GENERATE};
    const char *name, *prompt;
    struct sim_model *m;
    cJSON *body = NULL;
    bool think = false;

    if (api_parse_body(req, false, "api.GenerateRequest", &body) != 0)
        return;
    spec.body = body;
    if (api_check_fields(req, false, body, "GenerateRequest", generate_fields,
                         sizeof(generate_fields) / sizeof(*generate_fields)))
        goto out;
    name = json_get_str(body, "model");
    if ((m = api_find(sim, req, false, name)) == NULL)
        goto out;
    if (generate_checks(req, body, m, name) != 0)
        goto out;
    if (api_think(req, false, json_get(body, "think"), m, name, &think) != 0)
        goto out;
    if (api_keep_alive(req, false, body, &spec.has_keep_alive,
                       &spec.keep_alive) < 0)
        goto out;
    if (api_options(req, false, json_get(body, "options"), &spec) != 0)
        goto out;
    if (api_format(req, false, json_get(body, "format"), &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, false, m->name, &spec.faults))
        goto out;
    spec.model = m;
    spec.model_echo = xstrdup(name);
    spec.stream = api_stream_flag(body, true);
    spec.raw = json_get_bool(body, "raw", false);
    spec.tp.think = think;
    spec.tp.stop = (const char *const *)spec.stop;
    spec.tp.n_stop = spec.n_stop;
    prompt = json_get_str(body, "prompt");
    spec.load_only = (prompt == NULL || *prompt == '\0') &&
                     (json_get(body, "images") == NULL ||
                      cJSON_GetArraySize(json_get(body, "images")) == 0);
    if (spec.model_echo == NULL || generate_prompt(&spec, body) != 0) {
        api_error(req, 500, "out of memory");
        goto out;
    }
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}

/* --- /api/chat ----------------------------------------------------------- */

static const struct api_field chat_fields[] = {
    {"model", "string", "string"},
    {"messages", "array", "[]api.Message"},
    {"tools", "array", "api.Tools"},
    {"options", "object", "map[string]interface {}"},
    {"stream", "bool", "bool"},
    {"truncate", "bool", "bool"},
    {"shift", "bool", "bool"},
    {"logprobs", "bool", "bool"},
    {"top_logprobs", "number", "int"},
};

static const struct api_field message_fields[] = {
    {"role", "string", "string"},
    {"content", "string", "string"},
    {"thinking", "string", "string"},
    {"images", "array", "[]api.ImageData"},
    {"tool_calls", "array", "[]api.ToolCall"},
    {"tool_name", "string", "string"},
    {"tool_call_id", "string", "string"},
};

static int
chat_messages_ok(struct http_req *req, const cJSON *messages)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, messages)
    {
        if (!cJSON_IsObject(m)) {
            api_error(req, 400,
                      "json: cannot unmarshal %s into Go struct field "
                      "ChatRequest.messages of type api.Message",
                      json_go_kind(m));
            return -1;
        }
        if (api_check_fields(req, false, m, "ChatRequest.messages",
                             message_fields,
                             sizeof(message_fields) / sizeof(*message_fields)))
            return -1;
    }
    return 0;
}

/* Tools are offered unless the last message is a tool result (the model
 * then answers in text, as a real one would). */
static void
chat_tools(struct sim *sim, struct gen_spec *spec, const cJSON *tools,
           const cJSON *messages)
{
    const cJSON *last =
        cJSON_GetArrayItem(messages, cJSON_GetArraySize(messages) - 1);
    const char *role = json_get_str(last, "role");

    if (tools == NULL || cJSON_GetArraySize(tools) == 0)
        return;
    spec->tp.tools = tools;
    spec->tp.tool_calls =
        sim->tool_calls && !(role != NULL && strcmp(role, "tool") == 0);
}

int native_chat_spec(struct sim *sim, struct http_req *req,
                     struct gen_spec *spec, const cJSON *body, bool openai);

/* The part of /api/chat that /v1/chat/completions shares: model lookup,
 * capabilities, messages, tools, prompt. */
int
native_chat_spec(struct sim *sim, struct http_req *req, struct gen_spec *spec,
                 const cJSON *body, bool openai)
{
    const char *name = json_get_str(body, "model");
    const cJSON *messages = json_get(body, "messages");
    const cJSON *tools = json_get(body, "tools");
    struct sim_model *m;
    struct buf b;
    char q[300];
    int rc;

    if ((m = api_find(sim, req, openai, name)) == NULL)
        return -1;
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        goq(name, q, sizeof(q));
        if (openai)
            api_oai_error(req, 400, "%s does not support chat", q);
        else
            api_error(req, 400, "%s does not support chat", q);
        return -1;
    }
    if (tools != NULL && cJSON_GetArraySize(tools) > 0 &&
        !(m->caps & SIM_CAP_TOOLS)) {
        full_name(m->name, q, sizeof(q));
        if (openai)
            api_oai_error(req, 400, "%s does not support tools", q);
        else
            api_error(req, 400, "%s does not support tools", q);
        return -1;
    }
    spec->model = m;
    spec->model_echo = xstrdup(name);
    spec->load_only = messages == NULL || cJSON_GetArraySize(messages) == 0;
    chat_tools(sim, spec, tools, messages);
    buf_init(&b, 64u << 20);
    rc = 0;
    if (m->system != NULL && *m->system &&
        !(cJSON_GetArraySize(messages) > 0 &&
          json_get_str(cJSON_GetArrayItem(messages, 0), "role") != NULL &&
          strcmp(json_get_str(cJSON_GetArrayItem(messages, 0), "role"),
                 "system") == 0))
        rc = buf_appendf(&b, "<|system|>\n%s\n", m->system);
    if (rc == 0)
        rc = api_render_chat(messages, &b);
    if (rc == 0)
        rc = api_set_prompt(spec, b.data, b.len);
    buf_cleanup(&b);
    if (rc != 0 || spec->model_echo == NULL) {
        api_error(req, 500, "out of memory");
        return -1;
    }
    return 0;
}

void
native_chat(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_CHAT};
    const char *name;
    const cJSON *tl;
    cJSON *body = NULL;
    bool think = false;

    if (api_parse_body(req, false, "api.ChatRequest", &body) != 0)
        return;
    spec.body = body;
    if (api_check_fields(req, false, body, "ChatRequest", chat_fields,
                         sizeof(chat_fields) / sizeof(*chat_fields)))
        goto out;
    if (chat_messages_ok(req, json_get(body, "messages")) != 0)
        goto out;
    name = json_get_str(body, "model");
    if (name == NULL || *name == '\0') {
        api_error(req, 400, "model is required");
        goto out;
    }
    tl = json_get(body, "top_logprobs");
    if (tl != NULL && cJSON_IsNumber(tl) &&
        (tl->valuedouble < 0 || tl->valuedouble > 20)) {
        api_error(req, 400, "top_logprobs must be between 0 and 20");
        goto out;
    }
    if (native_chat_spec(sim, req, &spec, body, false) != 0)
        goto out;
    if (api_think(req, false, json_get(body, "think"), spec.model, name,
                  &think) != 0)
        goto out;
    if (api_keep_alive(req, false, body, &spec.has_keep_alive,
                       &spec.keep_alive) < 0)
        goto out;
    if (api_options(req, false, json_get(body, "options"), &spec) != 0)
        goto out;
    if (api_format(req, false, json_get(body, "format"), &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, false, spec.model->name, &spec.faults))
        goto out;
    spec.stream = api_stream_flag(body, true);
    spec.tp.think = think;
    spec.tp.stop = (const char *const *)spec.stop;
    spec.tp.n_stop = spec.n_stop;
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}

/* --- /api/embed and /api/embeddings ------------------------------------- */

static int
embed_inputs(struct gen_spec *spec, const cJSON *input)
{
    const cJSON *e;
    size_t n = 0;

    if (input == NULL || cJSON_IsNull(input))
        return 0;
    if (cJSON_IsString(input)) {
        if (input->valuestring[0] == '\0')
            return 0;
        spec->inputs = calloc(1, sizeof(char *));
        if (spec->inputs == NULL ||
            (spec->inputs[0] = strdup(input->valuestring)) == NULL)
            return -ENOMEM;
        spec->n_inputs = 1;
        return api_set_prompt(spec, input->valuestring,
                              strlen(input->valuestring));
    }
    if (!cJSON_IsArray(input))
        return -EINVAL;
    cJSON_ArrayForEach(e, input)
    {
        if (!cJSON_IsString(e))
            return -EINVAL;
        n++;
    }
    if (n > MAX_INPUTS)
        return -E2BIG;
    spec->inputs = calloc(n + 1, sizeof(char *));
    if (spec->inputs == NULL)
        return -ENOMEM;
    cJSON_ArrayForEach(e, input)
    {
        if ((spec->inputs[spec->n_inputs] = strdup(e->valuestring)) == NULL)
            return -ENOMEM;
        spec->n_inputs++;
        if (api_set_prompt(spec, e->valuestring, strlen(e->valuestring)) != 0)
            return -ENOMEM;
    }
    return 0;
}

int native_embed_spec(struct sim *sim, struct http_req *req,
                      struct gen_spec *spec, const cJSON *body, bool openai);

/* Shared by /api/embed and /v1/embeddings. */
int
native_embed_spec(struct sim *sim, struct http_req *req, struct gen_spec *spec,
                  const cJSON *body, bool openai)
{
    const char *name = json_get_str(body, "model");
    const cJSON *dims = json_get(body, "dimensions");
    struct sim_model *m;
    int rc;

    m = name && *name ? catalog_find(&sim->catalog, name) : NULL;
    if (m == NULL) {
        if (openai)
            api_oai_error(req, 404,
                          "model \"%s\" not found, try pulling it first",
                          name ? name : "");
        else if (name == NULL || *name == '\0')
            api_error(req, 404, "model '' not found");
        else
            api_error(req, 404, "model \"%s\" not found, try pulling it first",
                      name);
        return -1;
    }
    rc = embed_inputs(spec, json_get(body, "input"));
    if (rc == -EINVAL || rc == -E2BIG) {
        if (openai)
            api_oai_error(req, 400, "invalid input");
        else
            api_error(req, 400,
                      rc == -E2BIG ? "too many inputs" : "invalid input type");
        return -1;
    }
    if (rc != 0 || (spec->model_echo = xstrdup(name)) == NULL) {
        api_error(req, 500, "out of memory");
        return -1;
    }
    spec->model = m;
    spec->load_only = spec->n_inputs == 0;
    spec->truncate = json_get_bool(body, "truncate", true);
    if (dims != NULL && cJSON_IsNumber(dims) && dims->valuedouble > 0 &&
        dims->valuedouble < 65536)
        spec->dims = (uint32_t)dims->valuedouble;
    return 0;
}

static const struct api_field embed_fields[] = {
    {"model", "string", "string"},
    {"truncate", "bool", "bool"},
    {"dimensions", "number", "int"},
    {"options", "object", "map[string]interface {}"},
};

void
native_embed(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_EMBED};
    cJSON *body = NULL;

    if (api_parse_body(req, false, "api.EmbedRequest", &body) != 0)
        return;
    spec.body = body;
    if (api_check_fields(req, false, body, "EmbedRequest", embed_fields,
                         sizeof(embed_fields) / sizeof(*embed_fields)))
        goto out;
    if (native_embed_spec(sim, req, &spec, body, false) != 0)
        goto out;
    if (api_keep_alive(req, false, body, &spec.has_keep_alive,
                       &spec.keep_alive) < 0)
        goto out;
    if (api_options(req, false, json_get(body, "options"), &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, false, spec.model->name, &spec.faults))
        goto out;
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}

static const struct api_field embeddings_fields[] = {
    {"model", "string", "string"},
    {"prompt", "string", "string"},
    {"options", "object", "map[string]interface {}"},
};

void
native_embeddings(struct sim *sim, struct http_req *req)
{
    struct gen_spec spec = {.api = GEN_EMBEDDINGS};
    const char *name, *prompt;
    cJSON *body = NULL;

    if (api_parse_body(req, false, "api.EmbeddingRequest", &body) != 0)
        return;
    spec.body = body;
    if (api_check_fields(
            req, false, body, "EmbeddingRequest", embeddings_fields,
            sizeof(embeddings_fields) / sizeof(*embeddings_fields)))
        goto out;
    name = json_get_str(body, "model");
    if (name == NULL || *name == '\0') {
        api_error(req, 400, "model is required");
        goto out;
    }
    if ((spec.model = catalog_find(&sim->catalog, name)) == NULL) {
        api_error(req, 404, "model \"%s\" not found, try pulling it first",
                  name);
        goto out;
    }
    if (api_keep_alive(req, false, body, &spec.has_keep_alive,
                       &spec.keep_alive) < 0)
        goto out;
    if (api_options(req, false, json_get(body, "options"), &spec) != 0)
        goto out;
    if (api_apply_fault(sim, req, false, spec.model->name, &spec.faults))
        goto out;
    prompt = json_get_str(body, "prompt");
    spec.model_echo = xstrdup(name);
    spec.truncate = true;
    if (spec.model_echo == NULL ||
        (prompt && *prompt && embed_inputs(&spec, json_get(body, "prompt")))) {
        api_error(req, 500, "out of memory");
        goto out;
    }
    spec.load_only = spec.n_inputs == 0;
    gen_start(sim, req, &spec);
    return;
out:
    gen_spec_cleanup(&spec);
}

/* --- /api/tags, /api/ps, /api/show ---------------------------------------- */

/* "model", or the deprecated "name" that show/pull/push/delete/create
 * still accept; NULL when both are missing or empty. */
static const char *
body_name(const cJSON *body)
{
    const char *name = json_get_str(body, "model");

    if (name == NULL || *name == '\0')
        name = json_get_str(body, "name");
    return name != NULL && *name != '\0' ? name : NULL;
}

/* "model"/"name" must be strings in show, pull, push, delete, create. */
static int
name_fields_ok(struct http_req *req, const cJSON *body, const char *go_struct)
{
    static const struct api_field fields[] = {
        {"model", "string", "string"},
        {"name", "string", "string"},
        {"stream", "bool", "bool"},
        {"insecure", "bool", "bool"},
        {"verbose", "bool", "bool"},
        {"source", "string", "string"},
        {"destination", "string", "string"},
        {"from", "string", "string"},
        {"system", "string", "string"},
        {"parameters", "object", "map[string]interface {}"},
    };

    return api_check_fields(req, false, body, go_struct, fields,
                            sizeof(fields) / sizeof(*fields));
}

int
api_model_details(const struct sim_model *m, struct buf *b)
{
    int rc = buf_appends(b, "{\"parent_model\":\"\",\"format\":\"gguf\","
                            "\"family\":");

    if (rc == 0)
        rc = json_append_str(b, m->family, strlen(m->family));
    if (rc == 0)
        rc = buf_appends(b, ",\"families\":[");
    if (rc == 0)
        rc = json_append_str(b, m->family, strlen(m->family));
    if (rc == 0)
        rc = buf_appends(b, "],\"parameter_size\":");
    if (rc == 0)
        rc = json_append_str(b, m->parameter_size, strlen(m->parameter_size));
    if (rc == 0)
        rc = buf_appends(b, ",\"quantization_level\":");
    if (rc == 0)
        rc = json_append_str(b, m->quantization, strlen(m->quantization));
    return rc == 0 ? buf_appends(b, "}") : rc;
}

static int
tags_entry(const struct sim_model *m, struct buf *b, bool first)
{
    char ts[48];
    int rc;

    clock_fmt_local(m->modified_ns, ts, sizeof(ts));
    rc = buf_appends(b, first ? "{\"name\":" : ",{\"name\":");
    if (rc == 0)
        rc = json_append_str(b, m->name, strlen(m->name));
    if (rc == 0)
        rc = buf_appends(b, ",\"model\":");
    if (rc == 0)
        rc = json_append_str(b, m->name, strlen(m->name));
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"modified_at\":\"%s\",\"size\":%" PRIu64
                         ",\"digest\":\"%s\",\"details\":",
                         ts, m->size, m->digest);
    if (rc == 0)
        rc = api_model_details(m, b);
    return rc == 0 ? buf_appends(b, "}") : rc;
}

static int
cmp_modified(const void *a, const void *b)
{
    const struct sim_model *x = *(const struct sim_model *const *)a;
    const struct sim_model *y = *(const struct sim_model *const *)b;

    if (x->modified_ns != y->modified_ns)
        return x->modified_ns < y->modified_ns ? 1 : -1;
    return strcmp(x->name, y->name);
}

void
native_tags(struct sim *sim, struct http_req *req)
{
    size_t n = sim->catalog.n;
    struct sim_model **v = calloc(n + 1, sizeof(*v));
    struct buf b;
    int rc;

    buf_init(&b, 16u << 20);
    if (v == NULL) {
        api_error(req, 500, "out of memory");
        return;
    }
    if (n > 0)
        memcpy(v, sim->catalog.models, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_modified);
    rc = buf_appends(&b, "{\"models\":[");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = tags_entry(v[i], &b, i == 0);
    if (rc == 0)
        rc = buf_appends(&b, "]}");
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    free(v);
    buf_cleanup(&b);
}

void
native_ps(struct sim *sim, struct http_req *req)
{
    struct sched_ps ps[64];
    size_t n = sched_ps(sim->sched, ps, 64);
    struct buf b;
    int rc;

    if (n > 64)
        n = 64;
    buf_init(&b, 1u << 20);
    rc = buf_appends(&b, "{\"models\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct sim_model *m = ps[i].model;
        char ts[48];

        /* Forever: now + the largest duration, around the year 2318. */
        if (ps[i].expires_at_ns == INT64_MAX)
            clock_fmt_local_add(clock_wall_ns(), INT64_MAX, ts, sizeof(ts));
        else
            clock_fmt_local(ps[i].expires_at_ns, ts, sizeof(ts));
        rc = buf_appends(&b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = json_append_str(&b, m->name, strlen(m->name));
        if (rc == 0)
            rc = buf_appends(&b, ",\"model\":");
        if (rc == 0)
            rc = json_append_str(&b, m->name, strlen(m->name));
        if (rc == 0)
            rc = buf_appendf(&b,
                             ",\"size\":%" PRIu64 ",\"digest\":\"%s\","
                             "\"details\":",
                             ps[i].size, m->digest);
        if (rc == 0)
            rc = api_model_details(m, &b);
        if (rc == 0)
            rc = buf_appendf(&b,
                             ",\"expires_at\":\"%s\",\"size_vram\":%" PRIu64
                             ",\"context_length\":%u}",
                             ts, ps[i].size_vram, ps[i].context_length);
    }
    if (rc == 0)
        rc = buf_appends(&b, "]}");
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
}

static int
show_caps(const struct sim_model *m, struct buf *b)
{
    static const struct {
        unsigned bit;
        const char *name;
    } caps[] = {
        {SIM_CAP_COMPLETION, "completion"}, {SIM_CAP_VISION, "vision"},
        {SIM_CAP_TOOLS, "tools"},           {SIM_CAP_INSERT, "insert"},
        {SIM_CAP_EMBEDDING, "embedding"},   {SIM_CAP_THINKING, "thinking"},
    };
    bool first = true;
    int rc = buf_appends(b, ",\"capabilities\":[");

    for (size_t i = 0; rc == 0 && i < sizeof(caps) / sizeof(*caps); i++) {
        if (!(m->caps & caps[i].bit))
            continue;
        rc = buf_appendf(b, "%s\"%s\"", first ? "" : ",", caps[i].name);
        first = false;
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}

/* Appends ,"<arch>.<key>":<value> to model_info. */
static int
show_info_u(struct buf *b, const char *arch, const char *key, uint64_t v)
{
    char k[160];
    int rc;

    snprintf(k, sizeof(k), "%s.%s", arch, key);
    rc = buf_appends(b, ",");
    if (rc == 0)
        rc = json_append_str(b, k, strlen(k));
    return rc == 0 ? buf_appendf(b, ":%" PRIu64, v) : rc;
}

static int
show_body(const struct sim_model *m, struct buf *b)
{
    const char *arch = m->family;
    char mf[512], ts[48];
    int rc;

    clock_fmt_local(m->modified_ns, ts, sizeof(ts));
    snprintf(mf, sizeof(mf),
             "# Modelfile generated by herd-sim\nFROM %s\n"
             "TEMPLATE {{ .Prompt }}\n",
             m->name);
    rc = buf_appends(b, "{\"license\":\"Simulated model, no license.\","
                        "\"modelfile\":");
    if (rc == 0)
        rc = json_append_str(b, mf, strlen(mf));
    if (rc == 0 && m->parameters != NULL && *m->parameters) {
        rc = buf_appends(b, ",\"parameters\":");
        if (rc == 0)
            rc = json_append_str(b, m->parameters, strlen(m->parameters));
    }
    if (rc == 0 && m->system != NULL && *m->system) {
        rc = buf_appends(b, ",\"system\":");
        if (rc == 0)
            rc = json_append_str(b, m->system, strlen(m->system));
    }
    if (rc == 0)
        rc = buf_appends(b, ",\"template\":\"{{ .Prompt }}\",\"details\":");
    if (rc == 0)
        rc = api_model_details(m, b);
    if (rc == 0)
        rc = buf_appends(b, ",\"model_info\":{\"general.architecture\":");
    if (rc == 0)
        rc = json_append_str(b, arch, strlen(arch));
    if (rc == 0)
        rc = buf_appendf(b, ",\"general.parameter_count\":%.0f",
                         m->params_b * 1e9);
    if (rc == 0)
        rc = show_info_u(b, arch, "context_length", m->context_length);
    if (rc == 0 && m->embedding_length)
        rc = show_info_u(b, arch, "embedding_length", m->embedding_length);
    if (rc == 0)
        rc = buf_appends(b, "}");
    if (rc == 0)
        rc = show_caps(m, b);
    if (rc == 0)
        rc = buf_appendf(b, ",\"modified_at\":\"%s\"}", ts);
    return rc;
}

void
native_show(struct sim *sim, struct http_req *req)
{
    const char *name;
    struct sim_model *m;
    cJSON *body = NULL;
    struct buf b;

    if (api_parse_body(req, false, "api.ShowRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "ShowRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    name = body_name(body);
    if (name == NULL) {
        api_error(req, 400, "model is required");
        goto out;
    }
    if ((m = api_find(sim, req, false, name)) == NULL)
        goto out;
    buf_init(&b, 1u << 20);
    if (show_body(m, &b) == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
out:
    cJSON_Delete(body);
}

/* --- /api/pull: streamed progress paced on a timer ----------------------- */

enum pull_step { PULL_MANIFEST, PULL_LAYERS, PULL_VERIFY, PULL_DONE };

struct pull {
    struct sim *sim;
    struct http_req *req; /* NULL once the request ended */
    uv_timer_t timer;
    char name[256];
    bool stream;
    bool exists;   /* already installed: layers report complete at once */
    uint64_t size; /* main layer */
    uint64_t done_bytes;
    char digest[65];
    int step;
};

static void
pull_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
pull_on_done(struct http_req *req, enum http_end why, void *ud)
{
    struct pull *p = ud;

    (void)req;
    (void)why;
    p->req = NULL;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, pull_closed);
}

static void
pull_line(struct pull *p, const char *json)
{
    if (!p->stream)
        return;
    (void)http_stream_write(p->req, json, strlen(json));
    (void)http_stream_write(p->req, "\n", 1);
}

static void
pull_tick(uv_timer_t *t)
{
    struct pull *p = t->data;
    const struct sim_model *m = NULL;
    char line[512];
    /* A 60 ms progress period at about 200 MB/s, scaled. */
    uint64_t step = 12000000;
    double scale = p->sim->time_scale;

    if (p->req == NULL)
        return;
    switch (p->step) {
    case PULL_MANIFEST:
        pull_line(p, "{\"status\":\"pulling manifest\"}");
        p->step = PULL_LAYERS;
        break;
    case PULL_LAYERS:
        p->done_bytes = p->exists || p->done_bytes + step >= p->size
                            ? p->size
                            : p->done_bytes + step;
        snprintf(line, sizeof(line),
                 "{\"status\":\"pulling %.12s\",\"digest\":\"sha256:%s\","
                 "\"total\":%" PRIu64 ",\"completed\":%" PRIu64 "}",
                 p->digest, p->digest, p->size, p->done_bytes);
        pull_line(p, line);
        if (p->done_bytes == p->size)
            p->step = PULL_VERIFY;
        break;
    case PULL_VERIFY:
        pull_line(p, "{\"status\":\"verifying sha256 digest\"}");
        pull_line(p, "{\"status\":\"writing manifest\"}");
        if (catalog_pull(&p->sim->catalog, p->name, &m) != 0) {
            pull_line(p, "{\"error\":\"pull model manifest: file does not "
                         "exist\"}");
            if (p->stream)
                http_stream_end(p->req);
            else
                api_error(p->req, 500,
                          "pull model manifest: file does not "
                          "exist");
            return;
        }
        p->step = PULL_DONE;
        if (p->stream) {
            pull_line(p, "{\"status\":\"success\"}");
            http_stream_end(p->req);
        } else {
            struct buf b;

            buf_init(&b, 64);
            if (buf_appends(&b, "{\"status\":\"success\"}") == 0)
                api_json(p->req, 200, &b);
            buf_cleanup(&b);
        }
        return;
    default:
        return;
    }
    uv_timer_start(
        &p->timer, pull_tick,
        p->step == PULL_LAYERS && !p->exists ? (uint64_t)(60.0 * scale) : 0, 0);
}

void
native_pull(struct sim *sim, struct http_req *req)
{
    const char *name;
    char norm[256];
    struct sim_model *have;
    struct pull *p;
    cJSON *body = NULL;

    if (api_parse_body(req, false, "api.PullRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "PullRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    name = body_name(body);
    if (name == NULL) {
        api_error(req, 400, "model is required");
        goto out;
    }
    if (model_name_normalize(name, norm, sizeof(norm)) != 0) {
        api_error(req, 400, "invalid model name");
        goto out;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        api_error(req, 500, "out of memory");
        goto out;
    }
    p->sim = sim;
    p->req = req;
    p->stream = api_stream_flag(body, true);
    snprintf(p->name, sizeof(p->name), "%s", norm);
    have = catalog_find(&sim->catalog, norm);
    p->exists = have != NULL;
    p->size = have ? have->size : 1800000000ULL;
    snprintf(p->digest, sizeof(p->digest),
             "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
             textgen_hash(norm, strlen(norm)), textgen_hash("l", 1),
             textgen_hash(norm, 1), textgen_hash("a", 1));
    uv_timer_init(sim->loop, &p->timer);
    p->timer.data = p;
    http_req_on_done(req, pull_on_done, p);
    if (p->stream)
        (void)http_stream_begin(req, 200, "application/x-ndjson");
    uv_timer_start(&p->timer, pull_tick, 0, 0);
out:
    cJSON_Delete(body);
}

/* --- /api/push (no registry: progress, then success) -------------------- */

void
native_push(struct sim *sim, struct http_req *req)
{
    const char *name;
    cJSON *body = NULL;
    struct sim_model *m;
    struct buf b;
    int rc;

    if (api_parse_body(req, false, "api.PushRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "PushRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    name = body_name(body);
    if (name == NULL) {
        api_error(req, 400, "model is required");
        goto out;
    }
    if ((m = api_find(sim, req, false, name)) == NULL)
        goto out;
    buf_init(&b, 4096);
    if (!api_stream_flag(body, true)) {
        rc = buf_appends(&b, "{\"status\":\"success\"}");
        if (rc == 0)
            api_json(req, 200, &b);
        buf_cleanup(&b);
        goto out;
    }
    rc = buf_appendf(&b,
                     "{\"status\":\"retrieving manifest\"}\n"
                     "{\"status\":\"pushing %.12s\",\"digest\":\"sha256:%s\","
                     "\"total\":%" PRIu64 ",\"completed\":%" PRIu64 "}\n"
                     "{\"status\":\"pushing manifest\"}\n"
                     "{\"status\":\"success\"}\n",
                     m->digest, m->digest, m->size, m->size);
    if (rc == 0 && http_stream_begin(req, 200, "application/x-ndjson") == 0 &&
        http_stream_write(req, b.data, b.len) == 0)
        http_stream_end(req);
    else if (rc != 0)
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
out:
    cJSON_Delete(body);
}

/* --- /api/delete, /api/copy, /api/create -------------------------------- */

static bool
model_in_use(const struct sim_model *m, void *ud)
{
    return sched_uses_model(ud, m);
}

void
native_delete(struct sim *sim, struct http_req *req)
{
    const char *name;
    char norm[256];
    cJSON *body = NULL;

    if (api_parse_body(req, false, "api.DeleteRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "DeleteRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    name = body_name(body);
    if (name == NULL || model_name_normalize(name, norm, sizeof(norm)) != 0)
        api_error(req, 400, "name \"%s\" is invalid", name ? name : "");
    else if (catalog_remove(&sim->catalog, norm) != 0)
        api_error(req, 404, "model '%s' not found", name);
    else {
        /* Deleted models stay while a runner still borrows them. */
        catalog_purge_removed(&sim->catalog, model_in_use, sim->sched);
        (void)http_respond(req, 200, NULL, "", 0);
    }
    cJSON_Delete(body);
}

void
native_copy(struct sim *sim, struct http_req *req)
{
    const char *src, *dst;
    char a[256], b[256];
    cJSON *body = NULL;

    if (api_parse_body(req, false, "api.CopyRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "CopyRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    src = json_get_str(body, "source");
    dst = json_get_str(body, "destination");
    if (src == NULL || model_name_normalize(src, a, sizeof(a)) != 0)
        api_error(req, 400, "source \"%s\" is invalid", src ? src : "");
    else if (dst == NULL || model_name_normalize(dst, b, sizeof(b)) != 0)
        api_error(req, 400, "destination \"%s\" is invalid", dst ? dst : "");
    else if (catalog_find(&sim->catalog, a) == NULL)
        api_error(req, 404, "model \"%s\" not found", src);
    else if (catalog_copy(&sim->catalog, a, b) != 0)
        api_error(req, 500, "copy failed");
    else
        (void)http_respond(req, 200, NULL, "", 0);
    cJSON_Delete(body);
}

/* "num_ctx                        2048": Ollama's show layout (%-30s %v). */
static int
create_param_line(struct buf *b, const char *key, const cJSON *v)
{
    const cJSON *e;
    int rc = 0;

    if (cJSON_IsArray(v)) {
        cJSON_ArrayForEach(e, v)
        {
            if (rc == 0)
                rc = create_param_line(b, key, e);
        }
        return rc;
    }
    rc = buf_appendf(b, "%s%-30s ", b->len ? "\n" : "", key);
    if (rc != 0)
        return rc;
    if (cJSON_IsString(v))
        return json_append_str(b, v->valuestring, strlen(v->valuestring));
    if (cJSON_IsNumber(v))
        return buf_appendf(b, "%.15g", v->valuedouble);
    return buf_appends(b, cJSON_IsTrue(v) ? "true" : "false");
}

/* system and parameters of a create request onto the new model. */
static int
create_modelfile(struct http_req *req, const cJSON *body, struct sim_model *m)
{
    const char *system = json_get_str(body, "system");
    const cJSON *params = json_get(body, "parameters");
    const cJSON *nc = json_get(params, "num_ctx");
    const cJSON *p;
    struct buf b;
    int rc = 0;

    if (m == NULL) {
        api_error(req, 500, "create failed");
        return -1;
    }
    if (system == NULL && !cJSON_IsObject(params))
        return 0;
    buf_init(&b, 1u << 16);
    if (cJSON_IsObject(params)) {
        cJSON_ArrayForEach(p, params)
        {
            if (rc == 0)
                rc = create_param_line(&b, p->string, p);
        }
    }
    if (rc == 0)
        rc = catalog_set_modelfile(
            m, system ? system : m->system,
            cJSON_IsObject(params) ? (b.data ? b.data : "") : m->parameters,
            nc && cJSON_IsNumber(nc) ? (int64_t)nc->valuedouble
                                     : m->param_num_ctx);
    buf_cleanup(&b);
    if (rc != 0)
        api_error(req, 500,
                  rc == -E2BIG ? "too many parameters" : "out of memory");
    return rc;
}

/* Minimal create: a new name "FROM" an installed model, with its status
 * lines; files/quantize are not emulated. */
void
native_create(struct sim *sim, struct http_req *req)
{
    const char *name, *from;
    char a[256], b[256];
    const struct sim_model *m;
    cJSON *body = NULL;
    struct buf out;

    if (api_parse_body(req, false, "api.CreateRequest", &body) != 0)
        return;
    if (name_fields_ok(req, body, "CreateRequest") != 0) {
        cJSON_Delete(body);
        return;
    }
    name = body_name(body);
    from = json_get_str(body, "from");
    if (name == NULL || model_name_normalize(name, b, sizeof(b)) != 0) {
        api_error(req, 400, "invalid model name");
        goto out;
    }
    if (from == NULL || *from == '\0') {
        api_error(req, 400, "neither 'from' or 'files' was specified");
        goto out;
    }
    if (model_name_normalize(from, a, sizeof(a)) != 0 ||
        (m = catalog_find(&sim->catalog, a)) == NULL) {
        api_error(req, 404, "model '%s' not found", from);
        goto out;
    }
    if (catalog_copy(&sim->catalog, m->name, b) != 0 ||
        create_modelfile(req, body, catalog_find(&sim->catalog, b)) != 0)
        goto out;
    buf_init(&out, 4096);
    if (!api_stream_flag(body, true)) {
        if (buf_appends(&out, "{\"status\":\"success\"}") == 0)
            api_json(req, 200, &out);
    } else if (buf_appendf(&out,
                           "{\"status\":\"using existing layer sha256:%s\"}\n"
                           "{\"status\":\"writing manifest\"}\n"
                           "{\"status\":\"success\"}\n",
                           m->digest) == 0 &&
               http_stream_begin(req, 200, "application/x-ndjson") == 0 &&
               http_stream_write(req, out.data, out.len) == 0) {
        http_stream_end(req);
    }
    buf_cleanup(&out);
out:
    cJSON_Delete(body);
}
