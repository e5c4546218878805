/*
 * profile.h - a hardware profile and the timing model derived from it.
 *
 * Pure functions: no I/O, no globals. A profile says how much memory and
 * VRAM a machine has and how fast its memory is; decode speed is
 * memory-bound (bandwidth / bytes read per token), prefill is compute-
 * bound (a multiple of decode), load time is size / disk rate + a fixed
 * start-up cost. Durations returned are modelled nanoseconds, before any
 * --time-scale is applied.
 */
#ifndef SIM_PROFILE_H
#define SIM_PROFILE_H

#include <stdint.h>
#include "catalog.h"

struct sim_profile {
    char name[32];
    char gpu_name[64];     /* "" for CPU-only */
    double mem_gb;         /* system RAM */
    double vram_gb;        /* GPU memory (== mem for unified memory) */
    double bw_gbs;         /* memory bandwidth, GB/s */
    double prefill_factor; /* prefill tokens/s = decode tokens/s * this */
    double load_gbs;       /* model load rate, GB/s */
    int gpus;              /* 0 for CPU-only */
};

/* Built-in profiles: "mac-studio" (M2 Ultra 192 GB, 800 GB/s),
 * "rtx-4090" (24 GB VRAM, 64 GB RAM, 1008 GB/s), "mac-mini" (M4 32 GB,
 * 120 GB/s), "cpu" (32 GB, 60 GB/s, no GPU). 0 or -ENOENT. */
int profile_lookup(const char *name, struct sim_profile *out);
/* The names, NULL-terminated, for --help. */
extern const char *const profile_names[];

/* Modelled ns to generate one token of m (>= 1000). */
int64_t profile_token_ns(const struct sim_profile *p,
                         const struct sim_model *m);
/* Modelled ns to evaluate `tokens` uncached prompt tokens (0 -> 0). */
int64_t profile_prompt_ns(const struct sim_profile *p,
                          const struct sim_model *m, uint32_t tokens);
/* Modelled ns to load m (fixed start-up + size / load rate). */
int64_t profile_load_ns(const struct sim_profile *p, const struct sim_model *m);

/* Bytes a runner of m uses with this per-slot context and slot count
 * (weights + KV cache + graph), as /api/ps "size". */
uint64_t profile_runner_bytes(const struct sim_model *m, uint32_t num_ctx,
                              int parallel);
/* The default num_ctx by VRAM tier (>= 47 GiB: 262144, >= 23 GiB: 32768,
 * else 4096), before the cap at the training context. */
uint32_t profile_default_ctx(const struct sim_profile *p);

#endif /* SIM_PROFILE_H */
