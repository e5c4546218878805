/*
 * registry.h - the coordinator's table of fleet nodes.
 *
 * Every herd-node (ours or a Python ollama-herd one) POSTs a heartbeat
 * every 5 s; registry_heartbeat() validates it and creates or refreshes
 * the node. registry_tick() ages nodes that stopped reporting (online ->
 * degraded -> offline -> removed). The router reads nodes through the
 * lookup functions and keeps its own per node:model in-flight counts
 * here, which heartbeats never overwrite.
 *
 * The registry is plain data: it reads no clock (every function that
 * needs "now" takes now_ns, nanoseconds on any monotonic scale), does no
 * I/O and does not log; state changes are reported through an event
 * callback and the caller logs them. Only the loop thread may use it.
 *
 * Node pointers handed out stay valid until the node is removed by
 * registry_tick() or registry_free(); callers that outlive a tick keep
 * the node id, not the pointer. Every field of struct registry_node is
 * read-only for callers.
 */
#ifndef COORD_REGISTRY_H
#define COORD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herd/buf.h"

/* Hard caps on what a peer controls (bytes exclude the NUL). */
#define REGISTRY_NODE_ID_MAX       128  /* node_id length */
#define REGISTRY_MODEL_NAME_MAX    256  /* model name length */
#define REGISTRY_MAX_MODELS        1024 /* models_loaded, models_available */
#define REGISTRY_MAX_FIELDS        256  /* top-level keys of a heartbeat */
#define REGISTRY_MAX_DEPTH         32   /* JSON nesting of a heartbeat */
#define REGISTRY_DEFAULT_MAX_NODES 4096
#define REGISTRY_DEFAULT_MAX_BODY  (256u * 1024u)

enum registry_status {
    REGISTRY_ONLINE,
    REGISTRY_DEGRADED, /* stale heartbeat: routable, but penalised */
    REGISTRY_OFFLINE,  /* drained or silent; never routable */
    REGISTRY_REJECTED, /* below the admission minimum; never routable */
    REGISTRY_STATUS_COUNT
};

enum registry_pressure {
    REGISTRY_PRESSURE_NORMAL,
    REGISTRY_PRESSURE_WARN,
    REGISTRY_PRESSURE_CRITICAL,
};

struct registry_config {
    int64_t heartbeat_timeout_ns; /* silent > this -> degraded (15 s) */
    int64_t heartbeat_offline_ns; /* silent > this -> offline (30 s) */
    int64_t remove_after_ns;      /* offline > this -> removed (10 min);
                                     0 = never remove */
    double min_node_memory_gb;    /* memory.total_gb below -> rejected;
                                     0 = admit every node */
    size_t max_nodes;             /* a new node beyond it is refused */
    size_t max_body;              /* heartbeat body bytes */
};

/* One entry of ollama.models_loaded. */
struct registry_loaded {
    char *name; /* owned */
    double size_gb;
    int64_t context_length;
    int64_t requests_active; /* as the node reported it (ollama-herd: 0) */
    char parameter_size[64];
    char quantization[64];
};

/* Optional capacity block of the adaptive capacity learner. */
struct registry_capacity {
    char mode[32]; /* "full", "learned", "bootstrap", "paused", ... */
    double ceiling_gb;
    double availability_score;
    double learning_confidence;
    int64_t days_observed;
    bool override_active;
    char reason[128];
};

/* Our extra "gpu" block: an object, or an array of them (summed). */
struct registry_gpu {
    char name[128]; /* the first GPU's name */
    int64_t count;
    double vram_total_gb;
    double vram_used_gb;
    double utilization_pct; /* mean over the GPUs that report it */
};

struct registry_model_slot; /* private per-node model index */

/* Everything copied from the last accepted heartbeat; replaced whole. */
struct registry_hb {
    char arch[64];
    char chip[128];
    double memory_bandwidth_gbps;
    double timestamp; /* the node's clock, Unix seconds */
    int64_t cores_physical;
    double cpu_utilization_pct;
    double mem_total_gb, mem_used_gb, mem_available_gb;
    double mem_wired_gb, mem_compressed_gb;
    enum registry_pressure pressure;
    bool has_disk;
    double disk_total_gb, disk_used_gb, disk_available_gb;
    struct registry_loaded *loaded; /* owned, n_loaded entries */
    size_t n_loaded;
    char **available; /* owned strings, n_available entries */
    size_t n_available;
    int64_t requests_active; /* as reported; see registry_inflight_* */
    bool has_capacity;
    struct registry_capacity capacity;
    char agent_version[64];
    char lan_ip[64];
    char ollama_host[256];
    int64_t num_parallel; /* OLLAMA_NUM_PARALLEL; 1 when not reported */
    bool ollama_healthy;  /* herd-node's "ollama_healthy"; true if absent */
    bool has_gpu;
    struct registry_gpu gpu;
    char *raw;   /* owned: the whole payload, compact JSON */
    char *extra; /* owned: ,"key":value pairs of the fields we do not
                    re-emit ourselves, for /fleet/status; may be "" */
    struct registry_model_slot *index; /* owned */
    size_t index_cap;
};

struct registry_unload {
    char *name; /* owned */
    int64_t at_ns;
};

struct registry_inflight {
    char *model; /* owned */
    int64_t count;
};

struct registry_node {
    char id[REGISTRY_NODE_ID_MAX + 1];
    size_t pos; /* position in registry order: registry_node_at(pos) */
    enum registry_status status;
    char reason[192]; /* why rejected / offline; "" otherwise */
    int64_t first_seen_ns;
    int64_t last_heartbeat_ns;
    int64_t status_since_ns;
    int64_t missed_heartbeats;
    char ollama_base_url[320]; /* where the router sends requests */
    struct registry_hb hb;
    struct registry_unload *unloaded; /* owned; model_unloaded_at */
    size_t n_unloaded;
    struct registry_inflight *inflight; /* owned; router-local counts */
    size_t n_inflight;
    int64_t inflight_total;
};

enum registry_event_kind {
    REGISTRY_EV_JOINED,  /* first heartbeat of a node (to = its status) */
    REGISTRY_EV_STATUS,  /* status changed from -> to */
    REGISTRY_EV_REMOVED, /* offline for remove_after_ns; freed after cb */
};

struct registry_event {
    enum registry_event_kind kind;
    const char *node_id; /* borrowed; valid during the callback only */
    enum registry_status from, to;
    const char *reason; /* borrowed; "" when none */
    int64_t silent_ns;  /* time since the last heartbeat */
};

/* Called synchronously for each event; it must not modify the registry. */
typedef void (*registry_event_cb)(const struct registry_event *ev, void *arg);

/*
 * Changes to what routing reads of a node, for an index kept beside the
 * registry (the router's, scoreidx.c), reported synchronously:
 *  NODE      after a node joined (appended at position count - 1), after
 *            a heartbeat was applied, a status changed (ageing, drain),
 *            or herd added or removed a model (pull, delete);
 *  REMOVE    just before a node is freed; the nodes after it then move
 *            down one position;
 *  INFLIGHT  after a router in-flight count changed: model and the new
 *            count.
 * model is NULL and count 0 except for INFLIGHT. The callback must not
 * modify the registry.
 */
enum registry_watch_kind {
    REGISTRY_WATCH_NODE,
    REGISTRY_WATCH_REMOVE,
    REGISTRY_WATCH_INFLIGHT,
};
typedef void (*registry_watch_cb)(enum registry_watch_kind kind,
                                  const struct registry_node *n,
                                  const char *model, int64_t count, void *arg);

/* What the HTTP layer answers to an accepted heartbeat. */
struct registry_reply {
    bool draining; /* a drain message was handled */
    bool created;  /* first sight of this node */
    enum registry_status node_status;
    char node_id[REGISTRY_NODE_ID_MAX + 1];
    char reason[192]; /* for a rejected node */
};

/* 15 s, 30 s, 10 min, 0 GB, 4096 nodes, 256 KiB. */
void registry_config_default(struct registry_config *cfg);

/* Copies cfg (NULL = defaults). Aborts on out-of-memory, like every
 * internal allocation here. */
struct registry *registry_new(const struct registry_config *cfg);

/* Frees every node. NULL is a no-op. */
void registry_free(struct registry *reg);

void registry_set_event_cb(struct registry *reg, registry_event_cb cb,
                           void *arg);
/* One watcher (NULL = none); see enum registry_watch_kind. */
void registry_set_watch(struct registry *reg, registry_watch_cb cb, void *arg);

/*
 * Handles one POST /heartbeat body (ollama-herd §2.5 payload, or the drain
 * message {"node_id":..,"draining":true}). source_ip is the peer address
 * ("" or NULL when unknown). Returns 0 and fills *out, or, with the
 * registry left exactly as it was and a sentence in err:
 *  -EMSGSIZE  body over max_body (HTTP 413);
 *  -EINVAL    not JSON, a required field missing, a field of the wrong
 *             type or out of range (HTTP 400);
 *  -E2BIG     nesting, too many fields or models, a string over its cap
 *             (HTTP 400);
 *  -ENOSPC    a new node while max_nodes are registered (HTTP 503).
 */
int registry_heartbeat(struct registry *reg, const char *body, size_t len,
                       const char *source_ip, int64_t now_ns,
                       struct registry_reply *out, char *err, size_t errlen);

/* The HTTP status for a registry_heartbeat() error: 400, 413 or 503. */
int registry_error_status(int rc);

/* Appends {"status":"ok","node_status":"online"} (plus "reason" for a
 * rejected node) or {"status":"draining","node_id":"..."}. */
int registry_reply_json(const struct registry_reply *r,
                        struct buf *b) HERD_MUST_USE;

/*
 * Ages every node: silent > heartbeat_timeout -> degraded, > offline ->
 * offline (missed_heartbeats + 1 at each step, as ollama-herd does), and
 * offline for > remove_after_ns -> removed, unless router in-flight counts
 * are still held on it. Returns the number of events reported.
 */
size_t registry_tick(struct registry *reg, int64_t now_ns);

/* Lookup; NULL when unknown. */
const struct registry_node *registry_find(const struct registry *reg,
                                          const char *node_id);

/* Nodes in first-heartbeat order (the scorer's tie-break order); i <
 * registry_count(). The order of the rest is kept when a node is removed. */
size_t registry_count(const struct registry *reg);
const struct registry_node *registry_node_at(const struct registry *reg,
                                             size_t i);
size_t registry_count_status(const struct registry *reg,
                             enum registry_status s);

/* True for online and degraded nodes. */
bool registry_node_routable(const struct registry_node *n);

/* The loaded entry for model on n, or NULL. */
const struct registry_loaded *
registry_node_loaded(const struct registry_node *n, const char *model);
/* True when model is in n's models_available. */
bool registry_node_available(const struct registry_node *n, const char *model);
/* When model was last seen leaving models_loaded; 0 = never (or loaded
 * again since). */
int64_t registry_node_unloaded_at(const struct registry_node *n,
                                  const char *model);

/* Routable nodes with model loaded or available, in registry order; up to
 * max are stored in out. Returns how many there are. */
size_t registry_nodes_with_model(const struct registry *reg, const char *model,
                                 const struct registry_node **out, size_t max);

/*
 * Router-local in-flight count for node:model, changed by delta. Returns
 * the new count (never below 0: an excess decrement is clamped), -ENOENT
 * for an unknown node, -E2BIG for a model name over the cap, -ENOSPC when
 * the node already tracks REGISTRY_MAX_MODELS models.
 */
int64_t registry_inflight_add(struct registry *reg, const char *node_id,
                              const char *model, int64_t delta);
/* The count for node:model (model NULL = the node's total). */
int64_t registry_inflight_get(const struct registry_node *n, const char *model);

/*
 * herd's own changes to a node's models, before its next heartbeat
 * confirms them: a pull added model to models_available; a delete
 * removed it (from both lists). 0, -ENOENT (no such node; for remove,
 * also: the node did not have it), -E2BIG, -ENOSPC. Node pointers stay
 * valid; the node's model arrays may move.
 */
int registry_node_add_model(struct registry *reg, const char *node_id,
                            const char *model);
int registry_node_remove_model(struct registry *reg, const char *node_id,
                               const char *model);

/* Appends the "nodes" array of /fleet/status. */
int registry_status_json(const struct registry *reg, int64_t now_ns,
                         struct buf *b) HERD_MUST_USE;

const char *registry_status_name(enum registry_status s);
const char *registry_pressure_name(enum registry_pressure p);

#endif /* COORD_REGISTRY_H */
