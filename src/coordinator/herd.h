/*
 * herd.h - the coordinator's process state, shared by its HTTP front end
 * (api.c), the router (router.c), the per-request state machine
 * (exchange.c) and main.c. One instance, owned by main.c; everything
 * here belongs to the loop thread.
 */
#ifndef COORD_HERD_H
#define COORD_HERD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "herd/http_client.h"
#include "herd/http_server.h"
#include "registry.h"
#include "scorer.h"
#include "traces.h"

struct dashboard;
struct exchange;
struct metrics;
struct pulls;
struct router;

enum ctx_protection { CTX_STRIP, CTX_WARN, CTX_PASSTHROUGH };

/* Settings, filled by main.c from flags, FLEET_* variables and defaults. */
struct herd_cfg {
    char *host;
    int64_t port;
    char *data_dir; /* "~" already expanded */
    char *log_level;
    char *ready_file;
    char *token;     /* FLEET_TOKEN: heartbeats need Bearer <token> */
    char *mdns_name; /* FLEET_MDNS_SERVICE_NAME */
    bool mdns;       /* publish the coordinator over mDNS */
    int64_t hb_interval_ns, hb_timeout_ns, hb_offline_ns, remove_after_ns;
    double min_node_memory_gb;
    int64_t max_retries;
    int64_t hold_timeout_ns;
    int64_t max_held; /* requests waiting for a slot, in all */
    int64_t connect_timeout_ns;
    int64_t request_timeout_ns;    /* whole exchange; 0 = none */
    int64_t first_byte_timeout_ns; /* attempt start to first line */
    int64_t idle_timeout_ns;       /* between the node's bytes */
    uint64_t max_body, max_header, max_upstream_line;
    int64_t max_conns;
    bool traces;
    char *admin_key; /* FLEET_ADMIN_KEY: pull, delete, settings */
    char *api_keys;  /* FLEET_API_KEYS: comma list gating inference */
    bool auto_pull;  /* FLEET_AUTO_PULL */
    int64_t auto_pull_timeout_ns;
    bool vram_fallback;         /* FLEET_VRAM_FALLBACK */
    bool vram_fallback_cross;   /* ..._CROSS_CATEGORY */
    char *context_protection_s; /* FLEET_CONTEXT_PROTECTION */
    enum ctx_protection context_protection;
    int64_t retention_days;
    struct scorer_weights weights;
};

/* Counters for /fleet/queue, /metrics and the benchmarks. */
struct herd_stats {
    uint64_t requests, completed, failed, retried, client_gone;
    uint64_t held_total, hold_timeouts;
    uint64_t heartbeats, heartbeats_refused;
    uint64_t decisions;
    uint64_t decision_ns_total; /* time spent deciding, slot included */
};

struct herd {
    uv_loop_t *loop;
    struct herd_cfg *cfg;
    struct registry *reg;
    struct traces *traces; /* NULL when traces are off */
    struct http_server *srv;
    struct http_client *cli;
    struct router *router;
    struct metrics *metrics;
    struct pulls *pulls;
    struct dashboard *dashboard; /* dashboard.c: pages, APIs, live stream */
    struct herd_stats stats;
    uint64_t rng; /* xorshift state: request ids, tie-break seeds */
    int64_t started_wall_ns;
    bool draining;
    char hostname[256];
};

/* Nanoseconds on the loop's monotonic clock (fresh, not cached). */
int64_t herd_now_ns(void);

/* A random 64-bit value (not for secrets). */
uint64_t herd_rand(struct herd *h);

/* A version-4 UUID string (37 bytes with the NUL). */
void herd_uuid(struct herd *h, char out[37]);

#endif /* COORD_HERD_H */
