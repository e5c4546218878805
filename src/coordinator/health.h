/*
 * health.h - the fleet health engine (ollama-herd's health_engine.py,
 * reference §8.1), pure: from node snapshots, the trace aggregates of the
 * last 24 h (dashq's health_stats document) and a few counters, it builds
 * the HealthReport that GET /dashboard/api/health answers:
 *
 *   {"vitals":{nodes_total, nodes_online, nodes_degraded, nodes_offline,
 *     overall_error_rate_pct, cold_loads_24h, avg_ttft_ms,
 *     total_requests_24h, total_retries_24h, client_disconnects_24h,
 *     incomplete_streams_24h, image_generations_24h, transcriptions_24h,
 *     health_score},
 *    "recommendations":[{check_id, severity, title, description, fix,
 *     node_id, data}], "checked_at"}
 *
 * Recommendations are sorted critical, warning, info (then by check and
 * node); health_score = 100 - 20*critical - 10*warning - 3*info, at least
 * 0. No I/O, no clock, no globals: the caller passes "now" and caches the
 * answer (the dashboard keeps it 30 s).
 */
#ifndef COORD_HEALTH_H
#define COORD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "herd/buf.h"

/* Thresholds (ollama-herd's constants). */
#define HEALTH_ERROR_RATE_PCT      5.0 /* high_error_rate */
#define HEALTH_UNDERUSED_FRACTION  0.5 /* underutilized_memory */
#define HEALTH_RETRY_RATE_INFO     0.3 /* retries per request */
#define HEALTH_RETRY_RATE_WARN     0.5
#define HEALTH_THRASH_COLD_LOADS   3   /* cold loads in 24 h */
#define HEALTH_THRASH_MIN_FREE_GB  4.0 /* ...on a node with this free */
#define HEALTH_LOAD_TIMEOUTS       3   /* model_load_timeout */
#define HEALTH_DISCONNECTS         3   /* client_disconnects in 24 h */
#define HEALTH_DISCONNECT_RATE_PCT 1.0
#define HEALTH_INCOMPLETE          2 /* incomplete_streams in 24 h */
#define HEALTH_INCOMPLETE_RATE_PCT 0.5
#define HEALTH_KV_BLOAT_RATIO      1.5 /* size / (params_b * 0.5 GB) */
#define HEALTH_REAPED_CRITICAL     10
#define HEALTH_MAX_RECOMMENDATIONS 256

enum health_severity { HEALTH_CRITICAL, HEALTH_WARNING, HEALTH_INFO };

/* A loaded model as the node reported it. */
struct health_loaded {
    const char *name;
    double size_gb;
    const char *parameter_size; /* "8.0B", "" when unknown */
};

/* One node of the registry, as the health engine sees it. */
struct health_node {
    const char *node_id;
    const char *status;   /* "online", "degraded", "offline", "rejected" */
    const char *reason;   /* why offline or rejected; may be "" */
    const char *pressure; /* "normal", "warn", "critical" */
    double mem_total_gb, mem_available_gb;
    const struct health_loaded *loaded;
    size_t n_loaded;
    const char *agent_version; /* "" when the node did not say */
    bool ollama_healthy;
    const char *router_state; /* "ejected", "probation" or NULL */
    double silent_s;          /* since its last heartbeat */
};

/*
 * Counts of trace events over the last 24 h (and the last hour) that no
 * SQL aggregate of dashq gives by itself; -1 = unknown (no check). See
 * health_events_from_stats().
 */
struct health_events {
    int64_t vram_fallback_24h;
    int64_t context_stripped_24h, context_upgraded_24h, context_warning_24h;
    int64_t reaped_24h;
    int64_t hold_timeout_24h;
};

struct health_input {
    const struct health_node *nodes;
    size_t n_nodes;
    const char *router_version; /* HERD_VERSION */
    /* dashq's health_stats document ({"fleet","nodes","models",
     * "load_timeouts"}), or NULL when there is no trace store. */
    const cJSON *stats;
    struct health_events events;
    double now; /* unix seconds: "checked_at" */
};

/* Every event count unknown (-1). */
void health_events_unknown(struct health_events *ev);

/*
 * Fills the counts that stats carries in an "events" object, if it has
 * one: {"events":{"<event>":{"count_24h":n,"count_1h":n}}} with the trace
 * event names vram_fallback, context_stripped, context_upgraded,
 * context_warning, reaped, hold_timeout. Others are left as they are.
 */
void health_events_from_stats(const cJSON *stats, struct health_events *ev);

/*
 * Appends the HealthReport (see above) to out. 0, -ENOMEM or -E2BIG.
 * in->stats of an unexpected shape counts as absent (no crash, no trace
 * based check).
 */
int health_report(const struct health_input *in, struct buf *out);

const char *health_severity_name(enum health_severity s);

#endif /* COORD_HEALTH_H */
