/*
 * gen.h - one inference request of herd-sim, from scheduler to last byte.
 *
 * The API files parse and validate a request into a struct gen_spec and
 * hand it to gen_start(), which owns it from then on. The job asks the
 * scheduler for a runner and a slot, "evaluates" the uncached part of the
 * prompt, streams the planned tokens at the profile's speed (scaled by
 * --time-scale) in the wire format of its API, applies stream faults, and
 * releases the slot with its new cached prefix. States:
 *
 *   WAIT_RUNNER -> PROMPT -> TOKENS -> (DONE)        client gone: CLOSING
 */
#ifndef SIM_GEN_H
#define SIM_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim.h"
#include "textgen.h"

enum gen_api {
    GEN_GENERATE,       /* /api/generate */
    GEN_CHAT,           /* /api/chat */
    GEN_OAI_CHAT,       /* /v1/chat/completions */
    GEN_OAI_COMPLETION, /* /v1/completions */
    GEN_EMBED,          /* /api/embed */
    GEN_EMBEDDINGS,     /* /api/embeddings (legacy) */
    GEN_OAI_EMBED,      /* /v1/embeddings */
};

struct gen_spec {
    enum gen_api api;
    struct sim_model *model; /* borrowed; the catalogue keeps it alive */
    char *model_echo;        /* owned: the name as the client sent it */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    bool raw;           /* generate: no "context" in the answer */
    bool load_only;     /* empty prompt/messages: load, answer "load" */
    uint32_t *prompt;   /* owned: prompt token ids */
    size_t n_prompt;
    struct runner_opts ro;
    bool has_keep_alive;
    int64_t keep_alive;
    struct textgen_params tp; /* stop/schema/tools point into owned data */
    char **stop;              /* owned strings */
    size_t n_stop;
    cJSON *body;   /* owned: the parsed request (tools, schema live here) */
    char **inputs; /* owned: embedding inputs */
    size_t n_inputs;
    uint32_t dims; /* embed "dimensions", 0 = model's */
    bool base64;   /* /v1/embeddings encoding_format base64 */
    bool truncate; /* embed: default true */
    struct gen_faults faults;
};

/*
 * api_native.c: fills spec->ro, tp.seed, tp.num_predict and the stop
 * strings from an Ollama "options" object (NULL: defaults). A runner key
 * of the wrong type answers 500 `option "num_ctx" must be of type
 * integer`, as Ollama does, and returns -1.
 */
int api_options(struct http_req *req, bool openai, const cJSON *options,
                struct gen_spec *spec);

/* api_native.c: stop strings from a string or an array of strings into
 * spec->stop (at most 16, empty ones skipped). -EINVAL with *bad = the
 * offending value, or -ENOMEM. */
int api_stop_strings(const cJSON *v, struct gen_spec *spec, const cJSON **bad);

/* api_native.c: renders chat messages into prompt text the way a chat
 * template would, so that a follow-up turn extends the previous prompt
 * plus answer (prefix caching works as in Ollama). Appends to b. */
int api_render_chat(const cJSON *messages, struct buf *b) HERD_MUST_USE;

/* api_native.c: tokenises text into spec->prompt (after any ids already
 * there, e.g. a generate "context"). 0 or -ENOMEM. */
int api_set_prompt(struct gen_spec *spec, const char *text, size_t len);

/* Frees what a spec owns (for callers that fail before gen_start). */
void gen_spec_cleanup(struct gen_spec *s);

/* simctl.c: remembers what an inference request asked for (endpoint,
 * model, stream, effective options) for GET /_sim/requests. */
void simctl_record(struct sim *sim, struct http_req *req,
                   const struct gen_spec *spec);

/* Takes ownership of *spec (whatever happens) and answers req. */
void gen_start(struct sim *sim, struct http_req *req, struct gen_spec *spec);

#endif /* SIM_GEN_H */
