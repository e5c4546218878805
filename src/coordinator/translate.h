/*
 * translate.h - OpenAI <-> Ollama translation for the coordinator. Pure:
 * no I/O, no globals, no clock (ids and timestamps are inputs).
 *
 * herd serves the OpenAI API by translating each request into the native
 * API, so that the router controls keep_alive and options (architecture
 * §1, §5.7): every field the official client sends is carried over, not
 * only the few Ollama's own /v1 layer keeps. Upstream always streams
 * (stream: true); a client that asked for one JSON answer gets the stream
 * collected by translate_stream_line() with collect = true.
 *
 * Also here: a capped NDJSON line splitter for upstream bodies.
 */
#ifndef COORD_TRANSLATE_H
#define COORD_TRANSLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herd/buf.h"
#include "herd/json.h"

enum translate_kind {
    TRANSLATE_CHAT,       /* /v1/chat/completions <- /api/chat */
    TRANSLATE_COMPLETION, /* /v1/completions <- /api/generate */
};

/* What the router needs to know about a translated request. */
struct translate_req {
    bool stream;        /* the client wants SSE */
    bool include_usage; /* stream_options.include_usage */
};

/*
 * /v1/chat/completions body -> /api/chat body (*out, caller frees with
 * cJSON_Delete). Keeps model, messages (content parts flattened, data-URI
 * images to base64 "images", tool_calls arguments parsed to objects, tool
 * results named), tools, response_format (-> format), stop, seed,
 * temperature, top_p, frequency/presence_penalty, max_tokens or
 * max_completion_tokens (-> num_predict), reasoning_effort (-> think),
 * and herd's own fallback_models and metadata. Returns 0, or -EINVAL with
 * the OpenAI-style message in err (e.g. "[] is too short - 'messages'").
 */
int translate_chat_request(const cJSON *oai, cJSON **out,
                           struct translate_req *info, char *err,
                           size_t errlen);

/* /v1/completions body -> /api/generate body (raw prompt, suffix). */
int translate_completion_request(const cJSON *oai, cJSON **out,
                                 struct translate_req *info, char *err,
                                 size_t errlen);

/* The state of one translated answer. */
struct translate_stream {
    enum translate_kind kind;
    bool collect;       /* build one JSON answer instead of SSE */
    bool include_usage; /* SSE: end with a usage chunk */
    bool role_sent;
    bool done;      /* the done:true line was seen */
    bool failed;    /* an {"error"} line was seen */
    int tool_calls; /* tool calls seen so far */
    char id[48];    /* "chatcmpl-..." / "cmpl-...", stable */
    int64_t created;
    char model[256];
    struct buf text;      /* collect: content */
    struct buf reasoning; /* collect: thinking */
    struct buf calls;     /* collect: tool calls, a JSON array body */
    int64_t prompt_tokens, completion_tokens; /* from the done line */
    char done_reason[16];
    bool no_plain; /* tests: every line through the parser */
};

/* id and created are the caller's (one per request); model is echoed. */
void translate_stream_init(struct translate_stream *ts,
                           enum translate_kind kind, bool collect,
                           bool include_usage, const char *id, int64_t created,
                           const char *model);
void translate_stream_cleanup(struct translate_stream *ts);

/*
 * Feeds one NDJSON line from the node. For SSE, appends the events it
 * produces to out ("data: {...}\n\n"; after the done line the finish
 * chunk, the usage chunk when asked, and "data: [DONE]\n\n"). Returns
 *   0   keep going;
 *   1   the done line was handled: the answer is complete (for collect,
 *       call translate_stream_finish);
 *  -EIO an {"error":...} line: out gets an SSE error event
 *       (data: {"error":{"message",...}}) and no [DONE]; errmsg holds the
 *       node's message;
 *  -EPROTO the line is not a JSON object.
 */
int translate_stream_line(struct translate_stream *ts, const char *line,
                          size_t len, struct buf *out, char *errmsg,
                          size_t errlen);

/* collect: appends the one chat.completion / text_completion object. */
int translate_stream_finish(struct translate_stream *ts, struct buf *out);

/* A stream that ended without a done line: the SSE error event to send
 * (no [DONE]), with message why. */
int translate_stream_abort(struct translate_stream *ts, const char *why,
                           struct buf *out);

/*
 * /v1/embeddings body -> /api/embed body (model, input strings,
 * dimensions). *base64: encoding_format was "base64" (what the official
 * client asks for by default). -EINVAL with the OpenAI message in err.
 */
int translate_embed_request(const cJSON *oai, cJSON **out, bool *base64,
                            char *err, size_t errlen);

/* /api/embed answer -> the /v1/embeddings answer (float arrays, or
 * base64 of little-endian float32 values). -EPROTO when native has no
 * embeddings array. */
int translate_embed_response(const cJSON *native, const char *model,
                             bool base64, struct buf *out) HERD_MUST_USE;

/* --- NDJSON line splitter ------------------------------------------------ */

struct ndjson {
    struct buf pending; /* bytes of an incomplete line */
    size_t max_line;
};

void ndjson_init(struct ndjson *nd, size_t max_line);
void ndjson_cleanup(struct ndjson *nd);

/*
 * Feeds bytes; calls fn once per complete, non-empty line (without the
 * newline; a trailing "\r" is dropped). A line longer than max_line gives
 * -E2BIG; a non-zero return of fn stops and is returned.
 */
int ndjson_feed(struct ndjson *nd, const char *p, size_t n,
                int (*fn)(const char *line, size_t len, void *ud), void *ud);

/* The bytes left without a newline at the end of the body (a last line
 * without "\n" is still a line): calls fn on them. */
int ndjson_finish(struct ndjson *nd,
                  int (*fn)(const char *line, size_t len, void *ud), void *ud);

#endif /* COORD_TRANSLATE_H */
