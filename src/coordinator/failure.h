/*
 * failure.h - what an upstream attempt's ending means (architecture §5.5).
 * Pure: the exchange asks, this answers, so the rules are tested on a
 * table (tests/unit/test_failure.c).
 *
 *  - a transport error (refused, timeout, reset, bad framing) or a 5xx
 *    is the node's fault: retried on another node before the first byte
 *    reached the client, counted toward the node's ejection;
 *  - 503 ("server busy") means saturated: retried elsewhere, not held
 *    against the node;
 *  - any other status (4xx) is the request's fault: returned as is,
 *    never retried;
 *  - a 200 whose stream ended without its done line is incomplete: a
 *    node fault before the first byte, an in-band error after;
 *  - after the first byte reached the client, nothing is retried: the
 *    failure goes in-band.
 */
#ifndef COORD_FAILURE_H
#define COORD_FAILURE_H

#include <stdbool.h>

enum failure_action {
    FAIL_NONE,   /* a complete answer */
    FAIL_RETRY,  /* try another node */
    FAIL_RETURN, /* answer the client with the node's status */
    FAIL_INBAND, /* the client has the head: error line / event */
};

struct failure_verdict {
    enum failure_action action;
    bool node_fault;          /* counts toward ejection */
    const char *reason;       /* for the attempts column */
    const char *trace_status; /* completed, failed, incomplete */
    int status;               /* HTTP status to answer with if it ends */
};

/*
 * err: 0 or the http_client error (-ECONNREFUSED, -ETIMEDOUT, ...);
 * status: the node's HTTP status (0 if none); complete: the done line was
 * seen (or, for embeddings, the body arrived); head_sent: the client has
 * the response head.
 */
struct failure_verdict failure_classify(int err, int status, bool complete,
                                        bool head_sent);

/* "connect_refused", "timeout", ... for an http_client error. */
const char *failure_err_reason(int err);

#endif /* COORD_FAILURE_H */
