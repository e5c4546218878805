/*
 * collect.h - one Ollama answer built from an NDJSON stream. Pure.
 *
 * herd always streams from the node (so it sees the first byte, can
 * retry before it, and counts tokens); a client that asked /api/chat or
 * /api/generate for stream:false gets what Ollama itself would answer:
 * the final done object with the whole text. Unlike ollama-herd, the
 * answer keeps message.thinking and message.tool_calls (chat) or
 * thinking (generate), and a chat answer carries no "response" field.
 */
#ifndef COORD_COLLECT_H
#define COORD_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herd/buf.h"
#include "herd/json.h"

struct collect {
    bool chat;           /* /api/chat (message) or /api/generate */
    bool done;           /* the done line was seen */
    struct buf content;  /* message.content / response */
    struct buf thinking; /* message.thinking / thinking */
    cJSON *tool_calls;   /* chat: array, or NULL */
    cJSON *final;        /* the done line, owned */
    int64_t prompt_tokens, completion_tokens; /* -1 until done */
    char done_reason[16];
};

void collect_init(struct collect *c, bool chat);
void collect_cleanup(struct collect *c);

/*
 * Feeds one parsed NDJSON line. Returns 0, 1 once the done line was
 * taken: the collector then owns it and *line is set to NULL (the final
 * answer is built on it, without a copy); -EIO for an {"error":...} line
 * (its text in errmsg), -E2BIG when the answer grows past its cap,
 * -ENOMEM. The caller frees *line when it is not NULL.
 */
int collect_line(struct collect *c, cJSON **line, char *errmsg, size_t errlen);

/*
 * The common line without a parse (plainline.h): taken as collect_line()
 * would take it (0). Any other line, valid or not, is left alone:
 * COLLECT_SLOW, and the caller parses it and calls collect_line().
 * -E2BIG or -ENOMEM as collect_line().
 */
#define COLLECT_SLOW 2
int collect_line_fast(struct collect *c, const char *line, size_t len);

/* Appends the one JSON answer; call after collect_line returned 1. */
int collect_finish(struct collect *c, struct buf *out) HERD_MUST_USE;

/*
 * What herd needs from any done line, whether it collects or relays:
 * the token counts (-1 when absent) and done_reason. Returns true when
 * line is a done line.
 */
bool collect_done_info(const cJSON *line, int64_t *prompt_tokens,
                       int64_t *completion_tokens, char *reason,
                       size_t reasonlen);

#endif /* COORD_COLLECT_H */
