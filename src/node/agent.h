/*
 * agent.h - the herd-node agent loop: every heartbeat interval, probe the
 * local Ollama, read the host's metrics, feed the capacity learner, and
 * POST the heartbeat (ollama-herd's payload, reference §2.5, plus our
 * extras) to the coordinator; on stop, POST the drain message.
 *
 * Everything runs on the caller's libuv loop. The agent owns its HTTP
 * client, probe, metrics, capacity learner, timer and (without a router
 * URL) the mDNS browser. agent_stop() is the one way out: it drains,
 * closes every handle, and calls back once the loop holds nothing of the
 * agent's any more; agent_free() then releases the memory.
 *
 * The decisions that do not need the loop are pure functions below
 * (payload, backoff, drift-free schedule, link-state logging, override
 * file), so the unit tests run them on fixed inputs.
 */
#ifndef NODE_AGENT_H
#define NODE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "herd/buf.h"
#include "herd/log.h"

#include "capacity.h"
#include "metrics_linux.h"
#include "probe.h"

#define AGENT_BACKOFF_GRACE  3  /* failures retried at the normal interval */
#define AGENT_BACKOFF_CAP_S  30 /* longest wait between two attempts */
#define AGENT_REBROWSE_AFTER 3  /* failures before mDNS is browsed again */
#define AGENT_DRAIN_WAIT_MS  2000
#define AGENT_RESPONSE_MAX   (64u * 1024u) /* coordinator reply bytes */
#define AGENT_PAYLOAD_MAX    (2u * 1024u * 1024u)
#define AGENT_OVERRIDE_MAX   4096            /* override file bytes */
#define AGENT_OVERRIDE_MAX_S (400.0 * 86400) /* longest override, s */
#define AGENT_MDNS_TYPE      "_fleet-manager._tcp"
#define AGENT_URL_MAX        512

/* --- settings ------------------------------------------------------------ */

struct agent_config {
    const char *node_id;     /* never empty (main derives it) */
    const char *ollama_host; /* "http://localhost:11434" */
    const char *router_url;  /* "" or NULL: discover via mDNS */
    const char *data_dir;    /* expanded, e.g. "/home/u/.fleet-manager" */
    const char *token;       /* "" or NULL: no Authorization header */
    const char *ready_file;  /* NULL: none; "ok" once a heartbeat was
                                accepted */
    bool learn_capacity;
    double interval_s; /* > 0; fractions allowed (tests use 0.2) */
    int num_parallel;  /* >= 1 */
};

/* --- pure parts ---------------------------------------------------------- */

/* One cycle's inputs to the heartbeat; every pointer may be NULL except
 * node_id. NULL means "not known this cycle" and gives the field's
 * ollama-herd default (null, 0, "" or an empty list). */
struct agent_sample {
    const char *node_id;
    const char *arch; /* agent_arch() */
    double timestamp; /* Unix seconds */
    unsigned cores_physical;
    double cpu_pct;
    const struct metrics_memory *mem;
    const struct metrics_thermal *thermal;
    const struct metrics_disk *disk;  /* NULL: "disk": null */
    const struct metrics_gpus *gpus;  /* NULL or n == 0: "gpu": null */
    const struct probe_state *ollama; /* NULL or !healthy: Ollama down */
    const char *ollama_host;          /* already made public */
    const char *lan_ip;
    const struct capacity_decision *capacity; /* NULL: "capacity": null */
    const char *chip;
    double bandwidth_gbps;
    int num_parallel;
    uint64_t connection_failures;       /* since the last success */
    uint64_t connection_failures_total; /* since start */
};

/*
 * Appends the heartbeat: every field of ollama-herd's HeartbeatPayload
 * (GB are GiB rounded to 2 decimals, percentages 0-100, timestamps float
 * Unix seconds), plus "gpu", "num_parallel", "ollama_version" and
 * "ollama_healthy". A non-finite number is written as 0. 0, -ENOMEM or
 * -E2BIG.
 */
int agent_payload_json(const struct agent_sample *s,
                       struct buf *b) HERD_MUST_USE;

/* {"node_id":"...","draining":true} */
int agent_drain_json(const char *node_id, struct buf *b) HERD_MUST_USE;

/* uname machine as ollama-herd would name it ("x86_64", "aarch64"); the
 * result is static. */
const char *agent_arch(void);

/* "<cpu model>[ + <first GPU name>]" into out (ollama-herd's chip). */
void agent_chip(const char *cpu_model, const struct metrics_gpus *g, char *out,
                size_t n);

/* Memory bandwidth in GB/s from the chip string (ollama-herd's
 * hardware_lookup table); 0 when unknown. */
double agent_bandwidth_gbps(const char *chip);

/*
 * Wait before the next attempt after `failures` consecutive failed
 * heartbeats: the interval for 0..AGENT_BACKOFF_GRACE failures, then
 * doubling (2x, 4x, ...) up to AGENT_BACKOFF_CAP_S (or the interval, if
 * that is longer).
 */
int64_t agent_retry_delay_ns(int64_t interval_ns, uint64_t failures);

/*
 * Drift-free schedule: the first point of prev + k * period (k >= 1)
 * that lies after now. A late cycle skips the ticks it missed instead of
 * firing them in a burst. period <= 0 is taken as 1 ns.
 */
uint64_t agent_next_deadline(uint64_t prev_ns, int64_t period_ns,
                             uint64_t now_ns);

/* What the last heartbeat attempt said about the coordinator. */
enum agent_link {
    AGENT_LINK_UNKNOWN,     /* no attempt yet */
    AGENT_LINK_OK,          /* 200 */
    AGENT_LINK_UNREACHABLE, /* connect error, timeout, broken transfer */
    AGENT_LINK_REFUSED,     /* 401 / 403: the token */
    AGENT_LINK_REJECTED,    /* any other status */
};

struct agent_link_state {
    enum agent_link link;
    uint64_t failures;       /* consecutive, since the last success */
    uint64_t failures_total; /* since start */
};

/*
 * Records one attempt's outcome (err and errmsg as http_call_done_cb
 * gives them; status the HTTP status when err is 0; url the coordinator,
 * for the message). Returns true when
 * the link changed state and the change deserves one log line, written
 * to msg with its level in *lvl: the first success, "coordinator
 * unreachable: <reason>", "coordinator refused our token", "coordinator
 * rejected the heartbeat", "coordinator reachable again after N
 * failures". Repeats of the same state return false: never a line per
 * cycle. has_token only changes the wording of the 401 line.
 */
bool agent_link_update(struct agent_link_state *st, int err, int status,
                       const char *errmsg, const char *url, bool has_token,
                       char *msg, size_t n, enum log_level *lvl);

/* --- the manual capacity override file --------------------------------- */

/* <data_dir>/capacity-override-<node_id>.json, node id characters outside
 * [A-Za-z0-9._-] replaced by '_'. 0 or -ENAMETOOLONG. */
int agent_override_path(const char *data_dir, const char *node_id, char *out,
                        size_t n);

/* {"mode":"full"|"paused"|"none","expires":<Unix s>|null,"set_at":<s>}
 * expires is ignored for "none". */
int agent_override_json(enum capacity_override mode, double expires,
                        double set_at, struct buf *b) HERD_MUST_USE;

/* Parses such a file. An expired override reads as NONE; one that ends
 * more than AGENT_OVERRIDE_MAX_S after now is refused. 0, or -EINVAL
 * with a reason in why. */
int agent_override_parse(const char *body, size_t len, double now,
                         enum capacity_override *mode, double *expires,
                         const char **why);

/* The capacity block without the learner: what a manual override means
 * on a machine of total_gb (ollama-herd's rule 3). */
void agent_override_decision(enum capacity_override mode, double total_gb,
                             struct capacity_decision *out);

/* --- the agent ----------------------------------------------------------- */

struct agent;

/* Reads the machine's CPU, GPUs and memory size and loads the capacity
 * state; touches no loop resource. NULL with a sentence in err on bad
 * settings (an Ollama or router URL that is not plain http:// included:
 * herd-node has no TLS). The strings of cfg are copied. */
struct agent *agent_new(uv_loop_t *loop, const struct agent_config *cfg,
                        char *err, size_t errlen);

/*
 * Creates the loop resources (HTTP client, probe, timer; the mDNS browser
 * without a router URL), primes the CPU sampler and starts the first
 * cycle at once. 0, or -errno with a sentence in err (-ENOTSUP: no router
 * URL and no mDNS in this build); after a failure
 * the caller still runs agent_stop() (which then skips the drain) and
 * the loop, so that whatever was created is closed.
 */
int agent_start(struct agent *a, char *err, size_t errlen);

/*
 * Graceful stop: cancels the running cycle, saves the capacity state,
 * POSTs the drain message (waiting at most AGENT_DRAIN_WAIT_MS), then
 * closes every handle and calls done(ud) once the loop holds nothing of
 * the agent's. Idempotent; safe from any callback.
 */
void agent_stop(struct agent *a, void (*done)(void *ud), void *ud);

/* Frees a stopped agent (or one never started). NULL is a no-op. */
void agent_free(struct agent *a);

#endif /* NODE_AGENT_H */
