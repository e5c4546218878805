/*
 * plainline.h - the common Ollama stream line, read without a parse. Pure.
 *
 * Nearly every line a node streams is one token of plain text:
 *   {"model":"m","created_at":"...","message":{"role":"assistant",
 *    "content":" the"},"done":false}
 * (or "response" for /api/generate). Parsing each into a cJSON tree and
 * freeing it was the largest cost of a non-streamed answer and of an
 * OpenAI stream. plain_line() recognises exactly this shape: an object
 * whose members are strings of printable ASCII without escapes, true,
 * false or null, plus (chat) one "message" object of the same; "done"
 * not true; no "error" member; no key that matters seen twice. Anything
 * else, valid JSON or not, is left to the parser: -1. The callers'
 * tests check that both ways produce the same output for such lines.
 */
#ifndef COORD_PLAINLINE_H
#define COORD_PLAINLINE_H

#include <stdbool.h>
#include <stddef.h>

struct plain_str {
    const char *p; /* inside the line, not terminated; NULL when absent */
    size_t n;
};

struct plain_line {
    /* chat: message.content and message.thinking; generate: response
     * and thinking. Plain ASCII, no escapes: JSON and text alike. */
    struct plain_str content, thinking;
};

/* 0 when the line has the plain shape (out filled), else -1. */
int plain_line(const char *line, size_t len, bool chat, struct plain_line *out);

#endif /* COORD_PLAINLINE_H */
