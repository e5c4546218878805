/*
 * scoreidx.h - the router's index of scoring inputs, by model.
 *
 * A decision used to convert every registry node into a struct
 * scorer_node and let the scorer find the requested model by name in
 * each node's lists: at 1,000 nodes that was thousands of strcmp() over
 * strings scattered in memory, most of a decision. The index keeps
 * instead, for every model name in the fleet (interned once), a dense
 * array of small records, one per node that has the model loaded or on
 * disk (the only nodes that can be eligible): the model's facts on that
 * node and the router's in-flight count, plus a dense table of the
 * nodes' own inputs (status, memory, bandwidth, capacity, slots) in
 * registry order. It is kept up to date from the registry's watch
 * callback (registry_set_watch): a heartbeat, a status change, a pull or
 * delete, a removal or a slot taken or given back updates the few
 * records concerned, so a decision is a loop over numbers
 * (scorer_rank()), most of them remembered from the last request.
 *
 * Scores are computed by the code scorer_score() uses, on the same
 * inputs: a decision from the index is the decision scorer_score() would
 * make from scratch (tests/unit/test_router.c checks it over random
 * fleets). docs/internals/scorer.md describes it.
 *
 * Plain data, loop thread only; no clock reads, no I/O.
 */
#ifndef COORD_SCOREIDX_H
#define COORD_SCOREIDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "scorer.h"

/* Per-request marks on a node (sidx_mark); sidx_unmark_all clears them,
 * and those sidx_next_eliminated set. */
#define SIDX_EXCLUDED  SCORER_MARK_EXCLUDED  /* tried, or ejected */
#define SIDX_PROBATION SCORER_MARK_PROBATION /* one request at a time */
#define SIDX_SHOWN     0x80u /* internal: among the keys being rendered */

/* p75 latency of node:model in ms, 0 when none (the trace store's). */
typedef double (*sidx_p75_fn)(void *arg, const struct registry_node *n,
                              const char *model);

/*
 * The ranking of one model for one request. A decision needs only the
 * pick; the order of the others is for the trace: sidx_top() sorts the
 * best SCORER_SORTED of them when one is rendered.
 */
struct sidx_ranked {
    int eligible;            /* 0 when none */
    struct scorer_key *keys; /* owned: every eligible node; .node is its
                                position */
    size_t cap;
    size_t k;               /* after sidx_top: keys[0..k) sorted */
    bool has_pick;          /* an eligible node has a free slot */
    struct scorer_key pick; /* the best of those: the decision */
    int rank;               /* the pick's rank among the eligible, 1 = best */
    bool hot;               /* the pick has the model loaded */
    uint32_t model;         /* the model's id, for sidx_result */
    struct scorer_request req; /* as scored (req.model borrowed) */
    double median_bw, fleet_size_gb;
    sidx_p75_fn p75;
    void *p75_arg;
};

void sidx_ranked_cleanup(struct sidx_ranked *rk);

struct sidx *sidx_new(void);
void sidx_free(struct sidx *x);

/* Mirrors the registry (the router calls these from its watch). */
void sidx_sync_all(struct sidx *x, const struct registry *reg);
void sidx_sync_node(struct sidx *x, const struct registry *reg,
                    const struct registry_node *n);
void sidx_remove_node(struct sidx *x, size_t pos);
void sidx_set_inflight(struct sidx *x, const struct registry_node *n,
                       const char *model, int64_t count);

/* Per-request marks (SIDX_EXCLUDED, SIDX_PROBATION) on node pos. */
void sidx_mark(struct sidx *x, size_t pos, unsigned flags);
void sidx_unmark_all(struct sidx *x);

/*
 * Scores the nodes for req->model as scorer_score() would, and picks the
 * best eligible node with a free slot (the first such one in
 * scorer_score()'s order; its rank is its place in that order). Fills
 * *out (its keys buffer is reused); returns out->eligible. p75 (may be
 * NULL) is asked for every eligible node with requests in flight.
 */
int sidx_rank(struct sidx *x, const struct scorer_request *req,
              const struct scorer_weights *w, sidx_p75_fn p75, void *p75_arg,
              struct sidx_ranked *out);

/* Sorts the best min(eligible, SCORER_SORTED) keys of rk first, as
 * scorer_score() orders its results; returns that count (rk->k). */
size_t sidx_top(struct sidx_ranked *rk);

/* The full result (every signal) of a ranked key, and the num_parallel
 * it was scored with. */
void sidx_result(const struct sidx *x, const struct sidx_ranked *rk,
                 const struct scorer_weights *w, const struct scorer_key *key,
                 struct scorer_result *out, uint32_t *num_parallel);

/*
 * The next node after position *pos (start with *pos = SIZE_MAX) that is
 * not among rk's keys: eliminated for rk's model, with its full result
 * as scorer_score() gives it (in position order, as the scorer lists
 * eliminated nodes). false when there is none. Only after sidx_top(),
 * for a ranking with fewer than SCORER_SORTED eligible nodes (they are
 * then all among keys[0..k)).
 */
bool sidx_next_eliminated(struct sidx *x, const struct sidx_ranked *rk,
                          const struct scorer_weights *w, size_t *pos,
                          struct scorer_result *out, uint32_t *num_parallel);

/* The registry node at pos, or NULL. */
const struct registry_node *sidx_node(const struct sidx *x, size_t pos);
size_t sidx_count(const struct sidx *x);

/* True when a node that is not rejected has model loaded or on disk. */
bool sidx_model_known(const struct sidx *x, const char *model);

#endif /* COORD_SCOREIDX_H */
