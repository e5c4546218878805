/*
 * textgen.h - deterministic tokens, text, JSON, tool calls and embeddings.
 *
 * Pure: no I/O, no globals, same input -> same output. A "token" is a
 * word with its leading space, a run of digits, or one punctuation
 * character; its id is a 32-bit FNV-1a hash of its bytes. That is close
 * enough to a real tokenizer (about 4 characters a token in English) for
 * counts and prefix caching to behave like Ollama's.
 */
#ifndef SIM_TEXTGEN_H
#define SIM_TEXTGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herd/json.h"

/* Token ids of s[0..len), at most max written; returns the total count
 * (which may exceed max: call with max 0 to count). */
size_t textgen_tokenize(const char *s, size_t len, uint32_t *ids, size_t max);

enum textgen_format { TEXTGEN_PLAIN, TEXTGEN_JSON, TEXTGEN_SCHEMA };

struct textgen_params {
    uint64_t seed;           /* options.seed, or a hash of the prompt */
    int64_t num_predict;     /* -1: unlimited (natural length) */
    uint32_t ctx_left;       /* tokens left in the context window */
    const char *const *stop; /* stop strings (borrowed) */
    size_t n_stop;
    enum textgen_format format;
    const cJSON *schema; /* for TEXTGEN_SCHEMA (borrowed) */
    const cJSON *tools;  /* tools array, or NULL (borrowed) */
    bool tool_calls;     /* emit a tool call when tools are given */
    bool think;          /* emit thinking first */
};

/*
 * What a request will produce, decided up front and then streamed piece
 * by piece. pieces are the text of each generated token in order:
 * thinking pieces first (n_think of them), then content pieces.
 * done_reason is "stop" or "length". When tool calls are produced, the
 * content is empty and tool_calls is an array
 * [{"function":{"index":0,"name":..,"arguments":{..}}}] (ids are added by
 * the API layer).
 *
 * Natural length (num_predict -1) is 8..64 content tokens chosen by the
 * seed; JSON output is a complete, valid document (for a schema, an
 * object with every required property of a fitting type); "length" cuts
 * it wherever num_predict falls, as a real model would. A stop string
 * ends the content before it ("stop").
 */
struct textgen_plan {
    char **pieces; /* owned, each owned */
    size_t n_pieces, n_think;
    cJSON *tool_calls; /* owned, or NULL */
    const char *done_reason;
    /* Addition (simcore): tokens the model "spent" writing the tool
     * calls, which are not content pieces; 0 without tool calls.
     * eval_count = n_pieces + tool_call_tokens. */
    size_t tool_call_tokens;
};

int textgen_plan_make(const struct textgen_params *p, struct textgen_plan *out);
void textgen_plan_free(struct textgen_plan *pl);

/* A deterministic embedding of text into out[0..dims), L2-normalised
 * when normalize is true. */
void textgen_embed(const char *text, size_t len, uint32_t dims, bool normalize,
                   double *out);

/* A seed from bytes (FNV-1a 64). */
uint64_t textgen_hash(const void *p, size_t n);

#endif /* SIM_TEXTGEN_H */
