/*
 * profile.c - hardware profiles and the timing model of herd-sim.
 *
 * Pure functions over a struct sim_profile and a struct sim_model. The
 * model is the usual first-order one for LLM inference on one machine:
 *  - decode is memory-bound: every generated token reads the active
 *    weights once, so ns/token = bytes read / (bandwidth * efficiency);
 *  - prefill is compute-bound and batched, so it runs prefill_factor
 *    times faster per token than decode;
 *  - a load is a fixed start-up cost plus reading the file.
 * Memory sizes (mem_gb, vram_gb) are GiB, as hardware memory is sold
 * (a "24 GB" card has 24 GiB); rates (bw_gbs, load_gbs) are decimal GB/s.
 */
#include "profile.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* Share of the peak bandwidth a decode step really gets. */
#define PROFILE_BW_EFFICIENCY 0.6
/* Runner start-up before the weights are read (process, CUDA/Metal). */
#define PROFILE_LOAD_FIXED_NS 300000000LL
#define PROFILE_MIN_TOKEN_NS  1000LL

static const struct sim_profile profile_table[] = {
    {"mac-studio", "Apple M2 Ultra", 192, 192, 800, 15, 5.0, 1},
    {"rtx-4090", "NVIDIA GeForce RTX 4090", 64, 24, 1008, 50, 3.0, 1},
    {"mac-mini", "Apple M4", 32, 32, 120, 8, 3.0, 1},
    {"cpu", "", 32, 0, 60, 4, 2.0, 0},
};

const char *const profile_names[] = {"mac-studio", "rtx-4090", "mac-mini",
                                     "cpu", NULL};

int
profile_lookup(const char *name, struct sim_profile *out)
{
    if (name == NULL)
        return -ENOENT;
    for (size_t i = 0; i < sizeof(profile_table) / sizeof(profile_table[0]);
         i++) {
        if (strcmp(profile_table[i].name, name) == 0) {
            if (out != NULL)
                *out = profile_table[i];
            return 0;
        }
    }
    return -ENOENT;
}

/* Bytes of weights one decode step reads: all of a dense model, the
 * active share of a mixture of experts. */
static double
profile_bytes_per_token(const struct sim_model *m)
{
    double share = 1.0;

    if (m->params_b > 0 && m->active_b > 0 && m->active_b < m->params_b)
        share = m->active_b / m->params_b;
    return (double)m->size * share;
}

int64_t
profile_token_ns(const struct sim_profile *p, const struct sim_model *m)
{
    double bw = p->bw_gbs > 0 ? p->bw_gbs : 1.0;
    double ns = profile_bytes_per_token(m) / (bw * PROFILE_BW_EFFICIENCY);

    /* bytes / (GB/s) is ns, since 1 GB/s is one byte per ns. */
    if (!(ns >= (double)PROFILE_MIN_TOKEN_NS))
        return PROFILE_MIN_TOKEN_NS;
    if (ns > 1e15)
        return (int64_t)1e15;
    return (int64_t)llround(ns);
}

int64_t
profile_prompt_ns(const struct sim_profile *p, const struct sim_model *m,
                  uint32_t tokens)
{
    double factor = p->prefill_factor > 0 ? p->prefill_factor : 1.0;
    double ns;

    if (tokens == 0)
        return 0;
    ns = (double)profile_token_ns(p, m) / factor * (double)tokens;
    return ns < 1.0 ? 1 : (int64_t)llround(ns);
}

int64_t
profile_load_ns(const struct sim_profile *p, const struct sim_model *m)
{
    double rate = p->load_gbs > 0 ? p->load_gbs : 1.0;

    return PROFILE_LOAD_FIXED_NS + (int64_t)llround((double)m->size / rate);
}

/*
 * A rough transformer shape from the parameter count: layers grow about
 * as params^0.38 (16 at 1B, 32-36 at 8B, 80 at 70B) and grouped-query
 * attention keeps the KV width near 8 heads x 128. Good enough for
 * memory that grows with num_ctx x parallel as a real runner's does.
 */
static double
profile_kv_bytes_per_token(const struct sim_model *m)
{
    double b = m->params_b > 0.01 ? m->params_b : 0.01;
    double layers = 16.0 * pow(b, 0.38);
    double kv_dim = b < 1.0 ? 512.0 : 1024.0;

    if (layers < 4)
        layers = 4;
    /* K and V, f16 (2 bytes each). */
    return 2.0 * layers * kv_dim * 2.0;
}

uint64_t
profile_runner_bytes(const struct sim_model *m, uint32_t num_ctx, int parallel)
{
    double tokens = (double)num_ctx * (double)(parallel > 0 ? parallel : 1);
    double kv = profile_kv_bytes_per_token(m) * tokens;
    /* Compute graph: a fixed part, one that grows with the weights, and
     * the batch's attention scratch that grows with the context. */
    double graph = 64.0 * 1048576.0 + (double)m->size / 50.0 + tokens * 256.0;

    return m->size + (uint64_t)kv + (uint64_t)graph;
}

uint32_t
profile_default_ctx(const struct sim_profile *p)
{
    if (p->vram_gb >= 47.0)
        return 262144;
    if (p->vram_gb >= 23.0)
        return 32768;
    return 4096;
}
