/*
 * sched.h - herd-sim's model scheduler, after Ollama's server/sched.go.
 *
 * It owns the runners (loaded models) and decides when a request gets
 * one, following ../shared/reference/ollama-api.md §4:
 *  - Fast path: a loaded runner whose options match takes the request at
 *    once (never 503). A runner still loading counts too: the request
 *    shares the load and its load_ns covers the wait (Ollama's requests
 *    block on the runner lock); only other models or options queue.
 *  - Otherwise the request joins the pending queue; when max_queue
 *    requests are already waiting there, sched_request fails -EBUSY
 *    (the 503 "server busy" answer). One request is scheduled at a time:
 *    a load blocks everything behind it (head-of-line, as in Ollama).
 *  - Loading takes profile_load_ns * time_scale of real time. A model
 *    that does not fit in free VRAM next to the others, or a full
 *    max_loaded, evicts: runners sorted by keep-alive ascending (forever
 *    last), then name; the first idle one goes; if none is idle, the
 *    scheduler waits for the first one's requests to finish.
 *  - A request whose runner options (num_ctx, num_batch, num_gpu,
 *    main_gpu, num_thread, use_mmap, draft_num_predict) differ from the
 *    loaded runner's sets that runner's keep-alive to 0, waits for it to
 *    drain and unload, and loads a new one (prefix caches lost).
 *  - Each runner has `parallel` slots (1 for embedding models). A request
 *    that has a runner waits for a free slot without limit. The slot with
 *    the longest common token prefix with the prompt is taken (ties: the
 *    least recently used), and its cached prefix tells how many prompt
 *    tokens need no evaluation.
 *  - Keep-alive: when a runner's last request ends, expires_at = now +
 *    keep_alive (real time, not scaled) and a timer unloads it then; 0
 *    unloads at once; negative never. A request that sets keep_alive
 *    replaces the runner's value; one that omits it keeps it; a new
 *    runner starts with the default.
 * Runs on the loop thread; callbacks are never called from inside
 * sched_request (they are deferred to the loop), so a caller may free
 * its state from a callback.
 */
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "catalog.h"
#include "profile.h"

#define SCHED_FOREVER INT64_MAX /* keep-alive "forever" */

struct sched_opts {
    int num_parallel;           /* OLLAMA_NUM_PARALLEL, default 1 */
    int max_loaded;             /* 0 = 3 per GPU (3 on CPU) */
    int max_queue;              /* OLLAMA_MAX_QUEUE, default 512 */
    int64_t default_keep_alive; /* ns; OLLAMA_KEEP_ALIVE, default 5m */
    uint32_t context_length;    /* OLLAMA_CONTEXT_LENGTH; 0 = VRAM tier */
    double time_scale;          /* real delay = modelled * this (>= 0) */
    const struct sim_profile *profile; /* borrowed */
};

/* Load-time options; a value of -1 (or 0 for num_ctx) means "auto". */
struct runner_opts {
    int64_t num_ctx, num_batch, num_gpu, main_gpu, num_thread;
    int64_t draft_num_predict, use_mmap; /* use_mmap: -1 auto, 0, 1 */
};
void runner_opts_default(struct runner_opts *o);

struct sched;
struct sched_req;

/* err is 0 when the request got a runner and a slot, else -errno (the
 * model failed to load: -ENOMEM when it can never fit). After a cb with
 * err != 0 the scheduler frees r once cb returns: do not release it. */
typedef void (*sched_ready_cb)(struct sched_req *r, int err, void *ud);

struct sched *sched_new(uv_loop_t *loop, const struct sched_opts *o);
/* Unloads everything, closes its timers; done(ud) once memory is gone.
 * Requests not yet released are freed with it (their callbacks never
 * fire; do not release them afterwards). */
void sched_free(struct sched *s, void (*done)(void *), void *ud);

/*
 * Asks for a runner of m and a slot on it. prompt[0..n) are the prompt's
 * token ids (copied) for slot choice. keep_alive is used only when
 * has_keep_alive. Returns the request, or NULL with *err = -EBUSY (queue
 * full) or -ENOMEM. cb fires later, exactly once, unless the request is
 * cancelled first.
 */
struct sched_req *sched_request(struct sched *s, struct sim_model *m,
                                const struct runner_opts *o,
                                bool has_keep_alive, int64_t keep_alive,
                                const uint32_t *prompt, size_t n,
                                sched_ready_cb cb, void *ud, int *err);

/* After a successful cb: */
/* Prompt tokens already in the chosen slot's cache (0..n; when the whole
 * prompt is cached, n - 1: one token is always evaluated). */
size_t sched_req_cached(const struct sched_req *r);
/* Modelled ns from sched_request to having a runner (queue wait, loads
 * waited for, eviction). A warm fast-path request gets a small non-zero
 * value (tens of microseconds). */
int64_t sched_req_load_ns(const struct sched_req *r);
/* The runner's per-slot context (num_ctx, capped at the training
 * context) and slot count. */
uint32_t sched_req_num_ctx(const struct sched_req *r);

/* Ends a request: the slot caches tokens[0..n) (prompt + generated) when
 * tokens is not NULL, the slot and runner are released, r is freed.
 * Also the way to cancel a request still waiting (cb then never fires). */
void sched_release(struct sched_req *r, const uint32_t *tokens, size_t n);

/* The "keep_alive: 0" probe: the runner of m (if any) expires at once,
 * or as soon as its requests finish. */
void sched_expire(struct sched *s, const struct sim_model *m);

/* The state of a runner, for /api/ps and tests. */
struct sched_ps {
    const struct sim_model *model; /* borrowed */
    uint64_t size, size_vram;
    uint32_t context_length;
    int64_t expires_at_ns; /* wall clock; INT64_MAX for forever */
    int parallel, in_use;
    bool loading;
};
/* Fills up to max entries sorted by expires_at, furthest first; returns
 * the number of runners. */
size_t sched_ps(const struct sched *s, struct sched_ps *out, size_t max);

/* Requests waiting in the pending queue (not those waiting for a slot). */
size_t sched_pending(const struct sched *s);

/* Statistics for tests and /_sim/state. */
struct sched_stats {
    uint64_t loads, unloads, evictions, reloads, rejected;
};
void sched_get_stats(const struct sched *s, struct sched_stats *out);

/* Addition (simcore): true while a runner or a live request borrows m,
 * for catalog_purge_removed(). */
bool sched_uses_model(const struct sched *s, const struct sim_model *m);

#endif /* SIM_SCHED_H */
