/*
 * router.h - chooses the node for a request and owns the slots.
 *
 * For each request the router scores every node that has the model
 * (scorer.c) from an index of the scoring inputs by model (scoreidx.c),
 * which the registry's watch callback keeps current, with the router's
 * own in-flight counts in it. A node:model pair has as many slots as the
 * node's num_parallel (OLLAMA_NUM_PARALLEL); the request goes to the best
 * eligible node with a free slot. When every eligible node is full it
 * waits here, in FIFO order, and takes the first slot that frees on any
 * eligible node, for at most hold_timeout; then it gets 503 with a
 * Retry-After estimated from the observed drain rate.
 *
 * Loop thread only.
 */
#ifndef COORD_ROUTER_H
#define COORD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herd.h"
#include "herd/buf.h"

#define ROUTER_MAX_MODELS          9  /* the model and up to 8 fallbacks */
#define ROUTER_MAX_EXCLUDED        16 /* nodes already tried */
#define ROUTER_MAX_CANDIDATES_JSON 64
#define ROUTER_VRAM_FALLBACK       ((size_t)-1) /* model_index -1 */

enum route_result {
    ROUTE_OK,      /* a slot was taken: see the decision */
    ROUTE_FULL,    /* eligible nodes exist, every slot is busy: hold */
    ROUTE_NO_NODE, /* the model exists in the fleet; no node can take it */
    ROUTE_UNKNOWN, /* no node (even offline) has any of the models */
};

struct route_decision {
    char node_id[REGISTRY_NODE_ID_MAX + 1];
    char model[REGISTRY_MODEL_NAME_MAX + 1]; /* the model served */
    char base_url[320];                      /* the node's Ollama */
    int model_index; /* 0: the requested model; n: fallback_models[n-1];
                        -1: a loaded model served instead (VRAM fallback) */
    double score;
    int rank; /* 1 = the scorer's best; more when it was full */
    size_t n_eligible;
    struct buf breakdown;  /* JSON object: the winner's signals */
    struct buf candidates; /* JSON array: every candidate (capped) */
};

/* What a request asks of the router; embedded in the exchange. */
struct route_req {
    const char *models[ROUTER_MAX_MODELS]; /* normalised; borrowed */
    size_t n_models;
    int64_t estimated_tokens;
    char excluded[ROUTER_MAX_EXCLUDED][REGISTRY_NODE_ID_MAX + 1];
    size_t n_excluded;
    /* Holding queue (router-owned fields). */
    struct route_req *prev, *next;
    int64_t hold_since_ns, hold_deadline_ns;
    bool held;
    /* Called when a held request got a slot (d is valid during the call),
     * or when its wait ran out (d NULL). Either way it has left the
     * queue. */
    void (*on_wake)(struct route_req *rr, const struct route_decision *d);
};

/* h->reg must exist: the router indexes its nodes and becomes its
 * watcher (registry_set_watch) until router_free. */
struct router *router_new(struct herd *h);
/* Every held request must have been removed (router_unhold) first. */
void router_free(struct router *r, void (*closed)(void *), void *ud);

/* The registry changed (heartbeat, status change, removal) or the
 * settings did. Held requests are retried once the loop comes round. The
 * index needs no call: the registry reports every change to it. */
void router_fleet_changed(struct router *r);
/* One node's heartbeat was accepted: held requests are retried. */
void router_node_changed(struct router *r, const char *node_id);

void route_decision_init(struct route_decision *d);
void route_decision_cleanup(struct route_decision *d);

/*
 * Scores the fleet for rr and, on ROUTE_OK, takes a slot on the chosen
 * node:model (released with router_release) and fills d. Never holds by
 * itself: on ROUTE_FULL the caller decides (router_hold). The time it
 * took, less that of rendering d's breakdown and candidates, goes to
 * herd_scoring_seconds and stats.decision_ns_total.
 */
enum route_result router_route(struct router *r, struct route_req *rr,
                               struct route_decision *d);

/* Queues rr to wait for a slot. -ENOSPC when max_held are waiting. */
int router_hold(struct router *r, struct route_req *rr);
/* Ends every wait at once (herd is draining): on_wake(rr, NULL) each. */
void router_expire_all(struct router *r);
/* Takes rr out of the queue (client gone); no callback. */
void router_unhold(struct router *r, struct route_req *rr);
size_t router_held(const struct router *r);

/* Gives the slot back and lets a held request take it. */
void router_release(struct router *r, const char *node_id, const char *model,
                    bool ok);

/*
 * Node faults (connect refused, timeout, 5xx, a stream broken before its
 * first line) eject the node for a short while, doubling with each fault
 * in a row (2 s, 4 s, ... at most 60 s); after that it is on probation:
 * one request at a time until one succeeds. router_node_ok() ends it.
 * Saturation (503 "server busy") and 4xx are not faults.
 */
void router_node_fault(struct router *r, const char *node_id);
void router_node_ok(struct router *r, const char *node_id);
/* "ejected", "probation" or NULL (healthy). */
const char *router_node_health(struct router *r, const char *node_id);

/* Appends {"node":{"state":"ejected|probation","faults":n,
 * "ejected_for_s":x}} for the nodes that failed recently. */
int router_health_json(struct router *r, struct buf *b) HERD_MUST_USE;

/* Gives back a slot that was never used (no counters change). */
void router_release_unused(struct router *r, const char *node_id,
                           const char *model);

/* Seconds a client refused for lack of slots should wait. */
unsigned router_retry_after_s(const struct router *r);

/* The "queues" object of /fleet/queue and /fleet/status: one entry per
 * node:model with traffic or a loaded model. */
int router_queues_json(struct router *r, struct buf *b) HERD_MUST_USE;
/* Totals for /fleet/queue. */
void router_totals(const struct router *r, uint64_t *in_flight,
                   uint64_t *completed, uint64_t *failed);

#endif /* COORD_ROUTER_H */
