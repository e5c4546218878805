/*
 * scorer.h - ranks the fleet's nodes for one request.
 *
 * A pure module: no I/O, no globals, no clock reads, no allocation of its
 * own (the median and the sort work in the caller's result array). A
 * caller copies what it knows about each node into a plain struct
 * scorer_node, adds the request (model, token estimate, the time, a
 * random seed) and the settings, and gets back one struct scorer_result
 * per node: the eligible ones sorted best first, then the eliminated ones,
 * each with every signal of its score, because a trace records every
 * candidate. The router instead keeps the same inputs without strings,
 * by model (struct scorer_cnode, scorer_centry; scoreidx.c), and ranks
 * them with scorer_rank(): the same code, without a string comparison or
 * a node that cannot have the model.
 *
 * The signals and elimination rules are those of ollama-herd's
 * server/scorer.py, with the deliberate differences described in
 * docs/internals/scorer.md: the model size is parsed from the name,
 * degraded nodes are penalised, a loaded model with a free slot gets a
 * bonus, the queue counts are the router's own, and ties are broken by
 * fewer in-flight requests and then at random, never by registration
 * order.
 */
#ifndef COORD_SCORER_H
#define COORD_SCORER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "herd/buf.h"

enum scorer_status {
    SCORER_ONLINE,
    SCORER_DEGRADED, /* heartbeat late: routable, but penalised */
    SCORER_OFFLINE,  /* eliminated */
};

enum scorer_pressure {
    SCORER_PRESSURE_NORMAL,
    SCORER_PRESSURE_WARN,
    SCORER_PRESSURE_CRITICAL, /* eliminated */
};

/* The node agent's capacity-learner modes (reference §3.4). */
enum scorer_cap_mode {
    SCORER_CAP_FULL,
    SCORER_CAP_LEARNED_HIGH,
    SCORER_CAP_LEARNED_MEDIUM,
    SCORER_CAP_LEARNED_LOW,
    SCORER_CAP_PAUSED,    /* eliminated */
    SCORER_CAP_BOOTSTRAP, /* eliminated */
};

struct scorer_capacity {
    bool present; /* false: no learner; signal 6 is 0 */
    enum scorer_cap_mode mode;
    double availability_score; /* 0..1; < 0.2 eliminates */
    double ceiling_gb;         /* > 0 caps the usable memory */
};

struct scorer_loaded {
    const char *name;        /* borrowed; normalised "name:tag" */
    double size_gb;          /* as Ollama's /api/ps reports it */
    uint32_t context_length; /* 0 = unknown */
};

struct scorer_unloaded {
    const char *name;    /* borrowed */
    int64_t unloaded_ns; /* same clock as scorer_request.now_ns */
};

/*
 * What the router knows about one node. Every pointer is borrowed for the
 * duration of the scorer_score() call only. The last block is about the
 * requested model on this node and comes from the router's own slots,
 * which are authoritative over any figure in a heartbeat.
 */
struct scorer_node {
    const char *id; /* borrowed; only for the caller's convenience */
    enum scorer_status status;
    bool has_ollama; /* false until the first heartbeat with Ollama state */
    bool excluded;   /* already tried for this request: eliminated */
    enum scorer_pressure pressure;
    double mem_total_gb; /* 0 = no memory report */
    double mem_available_gb;
    double bandwidth_gbs; /* memory bandwidth; 0 = unknown */
    struct scorer_capacity cap;

    const struct scorer_loaded *loaded; /* borrowed array, n_loaded */
    size_t n_loaded;
    const char *const *available; /* borrowed array of names, n_available */
    size_t n_available;
    const struct scorer_unloaded *unloaded; /* borrowed, n_unloaded */
    size_t n_unloaded;

    uint32_t in_flight;    /* requests of this model running on the node */
    uint32_t queued;       /* waiting in the router for a slot on it */
    uint32_t num_parallel; /* the node's OLLAMA_NUM_PARALLEL; 0 means 1 */
    double p75_ms;         /* p75 latency of node:model; 0 = none yet */
};

/*
 * The scorer's inputs without strings, for a caller that keeps its own
 * index by model (the router's scoreidx.c): a node's own inputs, and the
 * facts of one model on one node (what scorer_score() finds by name in a
 * struct scorer_node's lists). scorer_score() converts each node to this
 * form (scorer_entry_from_node) and scores it with the same code as
 * scorer_rank(), so both give the same numbers.
 */
#define SCORER_MARK_EXCLUDED  0x01u /* eliminated ("excluded") */
#define SCORER_MARK_PROBATION 0x02u /* one slot, whatever num_parallel */

struct scorer_cnode {
    uint8_t status;   /* enum scorer_status */
    uint8_t pressure; /* enum scorer_pressure */
    uint8_t cap_mode; /* enum scorer_cap_mode, when cap_present */
    uint8_t marks;    /* SCORER_MARK_* for this request; other bits are
                         the caller's */
    bool has_ollama;
    bool cap_present;
    uint32_t num_parallel; /* 0 means 1 */
    double mem_total_gb;   /* 0 = no memory report */
    double mem_available_gb;
    double bandwidth_gbs;
    double cap_availability;
    double cap_ceiling_gb;
};

struct scorer_centry {
    uint32_t node;           /* index of the node: the tie-break index */
    uint32_t in_flight;      /* the router's requests of the model on it */
    uint32_t queued;         /* waiting in the router for a slot on it */
    uint32_t context_length; /* of the loaded model; 0 = unknown */
    bool loaded;             /* the model is in memory on the node */
    bool on_disk;            /* ... in models_available */
    bool unloaded;           /* ... left memory there at unloaded_ns */
    double size_gb;          /* loaded size; <= 0 = unknown */
    int64_t unloaded_ns;
};

/* What scorer_rank() keeps of an entry from one request to the next (see
 * there): 24 bytes, all a request without marks reads of most entries. */
#define SCORER_MEMO_ELIGIBLE 0x01u /* not eliminated, marks aside */
#define SCORER_MEMO_LOADED   0x02u
#define SCORER_MEMO_DEGRADED 0x04u

struct scorer_memo {
    double prefix;           /* the sum of the first six signals */
    uint32_t stamp;          /* the stamp it was made with; 0 = none */
    uint32_t node;           /* the entry's */
    uint32_t context_length; /* the entry's */
    uint8_t flags;           /* SCORER_MEMO_* */
};

struct scorer_request {
    const char *model;        /* borrowed; normalised, "llama3.2:latest" */
    int64_t estimated_tokens; /* from scorer_estimate_tokens(); 0 unknown */
    int64_t now_ns;           /* the clock of scorer_unloaded.unloaded_ns */
    uint64_t seed;            /* tie-break randomness; vary per request */
};

/*
 * The settings. scorer_weights_default() gives ollama-herd's FLEET_SCORE_*
 * defaults (reference §1.4) plus ours; the config module may override any
 * field.
 */
struct scorer_weights {
    double model_hot;               /* 50: loaded on the node */
    double model_warm;              /* 30: unloaded < warm_window_s ago */
    double model_cold;              /* 10: on disk */
    double warm_window_s;           /* 1800 */
    double memory_fit_max;          /* 20: loaded; the other tiers fixed */
    double queue_depth_max_penalty; /* 30 */
    double queue_depth_penalty_per; /* 6 per request */
    double wait_time_max_penalty;   /* 25 */
    double role_large_threshold_gb; /* 20: size > this is "large" */
    double role_small_threshold_gb; /* 8: size < this is "small" */
    double availability_trend_max;  /* 10 */
    double context_fit_max;         /* 15 */
    double degraded_penalty;        /* ours: 20, subtracted ("health") */
    double slot_free_bonus;         /* ours: 10, loaded + free slot */
    bool bandwidth_aware;           /* FLEET_BANDWIDTH_AWARE_SCORING */
    bool queue_penalty_bandwidth_normalize; /* FLEET_QUEUE_PENALTY_... */
    bool wait_time;                         /* false: signal 4 is always 0 */
};

/* Every signal, in points; total is their plain sum. */
struct scorer_breakdown {
    double thermal;
    double memory_fit;
    double queue_depth;
    double wait_time;
    double role_affinity;
    double availability_trend;
    double context_fit;
    double health;    /* ours: -degraded_penalty or 0 */
    double slot_free; /* ours: slot_free_bonus or 0 */
    double total;
};

struct scorer_result {
    size_t node; /* index into the nodes array given to scorer_score() */
    /* NULL when eligible, else a static string: "offline", "excluded",
     * "no_ollama", "memory_pressure_critical", "capacity_paused",
     * "capacity_bootstrap", "capacity_low_availability",
     * "model_not_on_node", "insufficient_memory". */
    const char *eliminated;
    double size_gb;     /* the model-size estimate used for this node */
    double tiebreak;    /* the random value in [0, 1) used for ties */
    uint32_t in_flight; /* the node's in-flight count, the first tie-break */
    struct scorer_breakdown b;
};

void scorer_weights_default(struct scorer_weights *w);

/*
 * Scores every node for req. out must hold n results; it is filled with
 * one result per node: the eligible ones first, then the eliminated ones
 * in input order (their breakdown is still computed). Of the eligible
 * ones, the first min(eligible, SCORER_SORTED) are sorted best first and
 * every later one ranks below them, in no particular order: a decision
 * needs the best few, and sorting a large fleet whole cost more than the
 * scoring itself (use scorer_rank_cmp to compare the rest).
 * Equal totals go to the node with fewer in-flight requests, then to the
 * smaller random value derived from req->seed. Returns the number of
 * eligible nodes (0 when none, or when n is 0), or -EINVAL for NULL
 * arguments. Reads only its arguments: safe from any thread.
 */
#define SCORER_SORTED 64

/* The ranking order: < 0 when a ranks before b (eligible first, higher
 * total, fewer in flight, smaller tie-break, lower node index). */
int scorer_rank_cmp(const struct scorer_result *a,
                    const struct scorer_result *b);

int scorer_score(const struct scorer_node *nodes, size_t n,
                 const struct scorer_request *req,
                 const struct scorer_weights *w, struct scorer_result *out);

/*
 * The pieces of scorer_score() for a caller that keeps its own index.
 *
 * The fleet-wide inputs of a decision: median_bw, the median bandwidth of
 * the nodes that are not offline and report one (scorer_median()), and
 * fleet_size_gb, the model's first loaded size > 0 in node order, else
 * scorer_estimate_size_gb() of its name.
 *
 * scorer_entry_from_node() converts nd (its excluded, in_flight, queued
 * and num_parallel as the caller patched them) for model, as the node at
 * index.
 * scorer_score_entry() fills *out for node n and model entry e, with the
 * p75 latency p75_ms (0 = none), exactly as scorer_score() does.
 */
void scorer_entry_from_node(const struct scorer_node *nd, size_t index,
                            const char *model, struct scorer_cnode *n,
                            struct scorer_centry *e);
void scorer_score_entry(const struct scorer_cnode *n,
                        const struct scorer_centry *e, double p75_ms,
                        const struct scorer_request *req,
                        const struct scorer_weights *w, double median_bw,
                        double fleet_size_gb, struct scorer_result *out);

/* An eligible node in a ranking: what the order reads. */
struct scorer_key {
    double total;
    double tiebreak;
    uint32_t in_flight;
    uint32_t node;  /* the tie-break index */
    uint32_t ent;   /* index of its entry in the array given */
    bool slot_free; /* in_flight < num_parallel (1 on probation) */
};

/* p75 latency in ms of the model on the node of ents[ent], 0 = none. */
typedef double (*scorer_p75_fn)(void *arg, const struct scorer_centry *e);

/*
 * Scores ents[0..n), one model on n nodes (nodes indexed by e->node), for
 * req, and stores a key for each eligible one in keys[] (room for n):
 * returns how many. *best_free is the index in keys of the best one with
 * a free slot (SIZE_MAX: none): the node a request goes to, the one
 * scorer_score() lists first among those with a free slot; *busy the
 * number of those without a free slot. p75 (may be NULL) is asked only
 * for eligible entries with requests in flight.
 * scorer_keys_top() then puts the best min(count, k) first, sorted, as
 * scorer_score() orders results, when they are wanted (for a trace).
 *
 * memos (NULL = none), an array parallel to ents, lets it keep for each
 * entry its eligibility and the part of its score that does not depend
 * on the request, and reuse them while memos[i].stamp equals stamp (not
 * 0). The caller must give a new stamp whenever the settings (w) or
 * fleet_size_gb change, and set memos[i].stamp to 0 whenever it changes
 * ents[i] or its node. marks says whether any node has marks for this
 * request; without, a remembered entry is scored from its memo alone.
 * It writes only keys and memos: safe from any thread that owns them.
 */
size_t scorer_rank(const struct scorer_cnode *nodes,
                   const struct scorer_centry *ents, struct scorer_memo *memos,
                   size_t n, const struct scorer_request *req,
                   const struct scorer_weights *w, double median_bw,
                   double fleet_size_gb, uint32_t stamp, bool marks,
                   scorer_p75_fn p75, void *p75_arg, struct scorer_key *keys,
                   size_t *best_free, size_t *busy);
void scorer_keys_top(struct scorer_key *keys, size_t n, size_t k);
/* < 0 when a ranks before b: scorer_rank_cmp()'s order for keys. */
int scorer_key_cmp(const struct scorer_key *a, const struct scorer_key *b);

/* The median of v[0..n) (the mean of the middle two for an even n), 0 for
 * n = 0; reorders v. */
double scorer_median(double *v, size_t n);

/*
 * The size in GB of model as the scorer sees it on nodes[self]: its
 * loaded size there, else its loaded size on any node (the first in
 * array order), else scorer_estimate_size_gb(). self may be SIZE_MAX
 * for "no particular node" (auto-pull's choice of a node).
 */
double scorer_model_size_gb(const struct scorer_node *nodes, size_t n,
                            size_t self, const char *model);

/*
 * The memory a model needs, in GB, from its name alone: the parameter
 * count ("27b", "0.5b", "567m", "30b-a3b" counts all 30, "8x7b" 56)
 * times the bytes per weight of its quantisation ("q4_0" 0.57, "q4_K_M"
 * 0.61, "q5_K_M" 0.71, "q8_0" 1.06, "fp16" 2; Q4_K_M when absent, F16 for
 * embedding models). An embedding model without a count is 0.3 GB; any
 * other name without one is 10 GB.
 */
double scorer_estimate_size_gb(const char *model);

/*
 * Tokens of a chat request (reference §4.4): every message adds its
 * text's length in characters (code points) plus 16, every image 150
 * tokens; tokens = chars / 4 + 150 * images, at least 1. messages is an
 * OpenAI or Ollama "messages" array (string content, content parts with
 * "text" and "image_url", an Ollama "images" array); NULL or a non-array
 * counts as empty. The tree is only read.
 */
int64_t scorer_estimate_tokens(const cJSON *messages);

/* The same formula for a prompt already measured: chars and images. */
int64_t scorer_estimate_tokens_raw(size_t chars, size_t images);

/*
 * Appends r's breakdown as the JSON object a trace stores:
 * {"thermal":..,"memory_fit":..,"queue_depth":..,"wait_time":..,
 *  "role_affinity":..,"availability_trend":..,"context_fit":..,
 *  "health":..,"slot_free":..,"total":..} and, for an eliminated node,
 * "eliminated":"<reason>". Numbers are rounded to 4 decimals. 0, or
 * -ENOMEM / -E2BIG with b unchanged.
 */
int scorer_breakdown_json(const struct scorer_result *r,
                          struct buf *b) HERD_MUST_USE;

#endif /* COORD_SCORER_H */
