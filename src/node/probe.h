/*
 * probe.h - what the local Ollama says about itself, once per heartbeat.
 *
 * A probe cycle sends four requests at once through the agent's HTTP
 * client (herd/http_client.h, plain http://): GET / (health), /api/version,
 * /api/ps (loaded models: size, size_vram, context_length, expires_at) and
 * /api/tags (installed models), and calls back once all four are over. The
 * parsers are pure and exposed for tests. Errors never abort a cycle: a failed
 * request leaves its part empty and the state says what failed, so a heartbeat
 * always goes out (and says Ollama is unhealthy rather than vanishing).
 */
#ifndef NODE_PROBE_H
#define NODE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herd/http_client.h"

#define PROBE_MAX_MODELS 512 /* per list; more are ignored (and counted) */
#define PROBE_NAME_MAX   256

struct probe_loaded {
    char name[PROBE_NAME_MAX];
    double size_gb;      /* GiB, as ollama-herd reports it */
    double size_vram_gb; /* GiB on the GPU */
    char parameter_size[32];
    char quantization[32];
    uint32_t context_length; /* 0 when the server is too old to say */
    char expires_at[48];     /* as Ollama wrote it */
};

struct probe_state {
    bool healthy;                /* GET / answered 200 */
    char version[32];            /* "" when unknown */
    struct probe_loaded *loaded; /* owned */
    size_t n_loaded;
    char (*available)[PROBE_NAME_MAX]; /* owned */
    size_t n_available;
    size_t dropped;  /* entries over PROBE_MAX_MODELS, or malformed */
    char error[160]; /* the first failure of the cycle, "" if none */
};

void probe_state_init(struct probe_state *st);
void probe_state_cleanup(struct probe_state *st);

/* Parse an /api/ps or /api/tags body into st (replacing that list).
 * 0, or -EINVAL with st's list left empty and st->error set. */
int probe_parse_ps(struct probe_state *st, const char *body, size_t len);
int probe_parse_tags(struct probe_state *st, const char *body, size_t len);

/*
 * ollama-herd's rule (reference §2.4): an Ollama URL whose host is
 * localhost, 127.0.0.1 or ::1 is rewritten to http://<lan_ip>:<port> when
 * a non-loopback LAN address is known, so the coordinator can reach it.
 * The port defaults to 11434. Writes the result to out.
 */
void probe_public_url(const char *ollama_host, const char *lan_ip, char *out,
                      size_t n);

/*
 * The node's parallel slots per model: the setting (flag or
 * FLEET_NODE_OLLAMA_NUM_PARALLEL, may be NULL), else OLLAMA_NUM_PARALLEL
 * from the agent's environment (may be NULL), else 1. Unparsable values
 * are skipped.
 */
int probe_num_parallel(const char *setting, const char *ollama_env);

struct probe;
typedef void (*probe_done_cb)(struct probe *p, const struct probe_state *st,
                              void *ud);

/* base_url: "http://localhost:11434" (no trailing slash needed); client
 * is borrowed and must outlive the probe. */
struct probe *probe_new(struct http_client *client, const char *base_url);
/* Starts a cycle; -EBUSY while one runs. cb fires once when all four
 * requests are over (from the loop; before probe_run returns only when
 * none of them could even start, e.g. a malformed base URL). */
int probe_run(struct probe *p, unsigned timeout_ms, probe_done_cb cb, void *ud);
/* Cancels a running cycle (cb never fires) and frees p. */
void probe_free(struct probe *p);

#endif /* NODE_PROBE_H */
