/*
 * sim.h - herd-sim's state and the internal interface of its API layer.
 *
 * One struct sim per process, owned by main(): the loop, the HTTP server,
 * the installed models, the scheduler and the fault rules. The API files
 * (api.c: routing, host check, CORS, errors; api_native.c: the /api endpoints;
 * api_openai.c: the /v1 endpoints; gen.c: one inference request) all work on
 * it.
 */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "herd/buf.h"
#include "herd/http_server.h"
#include "herd/json.h"
#include "catalog.h"
#include "fault.h"
#include "profile.h"
#include "sched.h"

#define SIM_MAX_ORIGINS 32
#define SIM_SEEN_MAX    64

struct sim {
    uv_loop_t *loop;            /* borrowed from main */
    struct http_server *server; /* owned */
    struct sim_catalog catalog; /* owned */
    struct sim_profile profile;
    struct sched *sched; /* owned */
    struct fault_set faults;
    uv_timer_t refuse_timer; /* re-opens the listener after "refuse" */

    /* Settings. */
    double time_scale;
    uint64_t seed;
    bool tool_calls;
    bool loopback; /* bound to a loopback address: Host check on */
    size_t max_body;
    char *origins[SIM_MAX_ORIGINS]; /* owned, from OLLAMA_ORIGINS */
    size_t n_origins;
    bool all_origins; /* OLLAMA_ORIGINS=* */
    char hostname[256];

    /* The last inference requests as received, for GET /_sim/requests:
     * a ring of JSON objects (owned strings), oldest at seen_head. */
    char *seen[SIM_SEEN_MAX];
    size_t seen_head, n_seen;
    uint64_t seen_total;

    uint64_t next_id;   /* for chatcmpl-N / cmpl-N (0..998 in Ollama) */
    size_t active_gens; /* inference requests in progress */
    size_t peak_gens;   /* the most active_gens ever seen at once */
    bool draining;      /* SIGTERM received */
};

/* The Ollama version herd-sim reports. */
#define SIM_OLLAMA_VERSION "0.33.0-rc2"

/* api.c: the request entry point (http_server's on_request). */
void api_on_request(struct http_req *req, void *ud);

/* api.c: answers. */
void api_json(struct http_req *req, int status, const struct buf *body);
void api_error(struct http_req *req, int status, const char *fmt, ...)
    HERD_PRINTF(3, 4);
void api_oai_error(struct http_req *req, int status, const char *fmt, ...)
    HERD_PRINTF(3, 4);
void api_text(struct http_req *req, int status, const char *text);

/*
 * api.c: parses the request body into *out (the caller frees it). On
 * failure it has answered already (400 "missing request body" or Go's
 * decode error; openai selects the /v1 error shape) and returns -1.
 * go_type names the Go type for "cannot unmarshal array into Go value of
 * type api.ChatRequest" when the document is not an object.
 */
int api_parse_body(struct http_req *req, bool openai, const char *go_type,
                   cJSON **out);

/*
 * api.c: checks that obj[key], when present, has the JSON kind the Go
 * struct field expects ("string", "bool", "number", "array", "object");
 * otherwise answers 400 `json: cannot unmarshal <kind> into Go struct
 * field <go_struct>.<key> of type <go_type>` and returns -1.
 */
struct api_field {
    const char *key;
    const char *kind;    /* cJSON kind expected */
    const char *go_type; /* as Go prints it: "string", "bool", "[]int" */
};
int api_check_fields(struct http_req *req, bool openai, const cJSON *obj,
                     const char *go_struct, const struct api_field *fields,
                     size_t n);

/* Fault injection for an inference request: returns true when it has
 * answered already (500, 503, hang); the slow, die_after and err_after fields
 * are set for faults acting during the stream. */
struct gen_faults {
    double slow;       /* 1.0 = normal speed */
    int64_t die_after; /* -1 = never */
    int64_t err_after; /* -1 = never */
};
bool api_apply_fault(struct sim *sim, struct http_req *req, bool openai,
                     const char *model, struct gen_faults *gf);

/* api_native.c / api_openai.c: route handlers. */
typedef void (*api_handler)(struct sim *sim, struct http_req *req);
void native_root(struct sim *sim, struct http_req *req);
void native_version(struct sim *sim, struct http_req *req);
void native_generate(struct sim *sim, struct http_req *req);
void native_chat(struct sim *sim, struct http_req *req);
void native_embed(struct sim *sim, struct http_req *req);
void native_embeddings(struct sim *sim, struct http_req *req);
void native_tags(struct sim *sim, struct http_req *req);
void native_ps(struct sim *sim, struct http_req *req);
void native_show(struct sim *sim, struct http_req *req);
void native_pull(struct sim *sim, struct http_req *req);
void native_push(struct sim *sim, struct http_req *req);
void native_delete(struct sim *sim, struct http_req *req);
void native_copy(struct sim *sim, struct http_req *req);
void native_create(struct sim *sim, struct http_req *req);
void oai_chat(struct sim *sim, struct http_req *req);
void oai_completions(struct sim *sim, struct http_req *req);
void oai_models(struct sim *sim, struct http_req *req);
void oai_model(struct sim *sim, struct http_req *req);
void oai_embeddings(struct sim *sim, struct http_req *req);
void simctl_fault(struct sim *sim, struct http_req *req);
void simctl_state(struct sim *sim, struct http_req *req);
void simctl_requests(struct sim *sim, struct http_req *req);
/* simctl.c: frees the ring of seen requests. */
void simctl_cleanup(struct sim *sim);
/* simctl.c: the "refuse" fault: stop listening for duration_ns. */
void simctl_refuse(struct sim *sim, int64_t duration_ns);

/* api_native.c: shared by /api and /v1. */
/* Parses keep_alive (§1.6). 0 = absent (*has false), 1 = parsed, -1 =
 * answered 400 already. */
int api_keep_alive(struct http_req *req, bool openai, const cJSON *body,
                   bool *has, int64_t *ns);
/* Appends the "details" object of a model (tags/show/ps). */
int api_model_details(const struct sim_model *m, struct buf *b) HERD_MUST_USE;

#endif /* SIM_SIM_H */
