/*
 * exchange.h - one inference request and its upstream attempts.
 *
 * A small state machine (architecture §4):
 *   PARSED -> ROUTED -> CONNECTING -> STREAMING -> DONE
 *   PARSED/ROUTED -> HELD -> ROUTED   (every eligible slot busy)
 *   CONNECTING/first-byte failure -> ROUTED on another node (retry)
 *   client gone -> CANCELLED (upstream aborted at once, slot freed)
 * with one teardown (exchange.c: x_free) reached from the client's
 * request ending, whatever happened before. Every outcome writes its
 * trace rows; every slot taken is given back exactly once.
 */
#ifndef COORD_EXCHANGE_H
#define COORD_EXCHANGE_H

#include "herd.h"
#include "herd/buf.h"

enum xkind {
    X_OLLAMA_CHAT,       /* POST /api/chat */
    X_OLLAMA_GENERATE,   /* POST /api/generate */
    X_OLLAMA_EMBED,      /* POST /api/embed */
    X_OLLAMA_EMBEDDINGS, /* POST /api/embeddings (legacy) */
    X_OAI_CHAT,          /* POST /v1/chat/completions */
    X_OAI_COMPLETION,    /* POST /v1/completions */
    X_OAI_EMBED,         /* POST /v1/embeddings */
};

/* Takes over req: parses, routes and answers it. */
void exchange_start(struct herd *h, struct http_req *req, enum xkind kind);

/*
 * The reaper, called about once a second: ends exchanges past the whole
 * request deadline, retries those whose node sent no first byte in time,
 * and fails streams that stalled. Each event is in the trace.
 */
void exchange_reap(struct herd *h);

/*
 * The requests in progress, for the dashboard's live view: a JSON array
 * of {"request_id","model","node","state","endpoint","elapsed_ms",
 * "ttft_ms","tokens","retries","stream","client_ip"}; tokens counts the
 * node's NDJSON lines so far (about one per token).
 */
int exchange_live_json(struct buf *b) HERD_MUST_USE;

/* Exchanges alive now (all states). */
size_t exchange_live(void);

#endif /* COORD_EXCHANGE_H */
