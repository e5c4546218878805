/*
 * test_profile.c - hardware profiles and the timing formulas.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

static struct sim_model
model(uint64_t size, double params, double active)
{
    struct sim_model m;

    memset(&m, 0, sizeof(m));
    m.size = size;
    m.params_b = params;
    m.active_b = active;
    m.context_length = 131072;
    return m;
}

static void
test_lookup(void **state)
{
    struct sim_profile p;
    size_t n = 0;

    (void)state;
    for (const char *const *np = profile_names; *np != NULL; np++) {
        assert_int_equal(profile_lookup(*np, &p), 0);
        assert_string_equal(p.name, *np);
        assert_true(p.bw_gbs > 0 && p.load_gbs > 0 && p.prefill_factor > 1);
        assert_true(p.mem_gb > 0);
        n++;
    }
    assert_int_equal(n, 4);
    assert_int_equal(profile_lookup("rtx-4090", &p), 0);
    assert_int_equal(p.gpus, 1);
    assert_true(p.vram_gb == 24 && p.mem_gb == 64 && p.bw_gbs == 1008);
    assert_int_equal(profile_lookup("mac-studio", &p), 0);
    assert_true(p.vram_gb == 192 && p.mem_gb == 192 && p.bw_gbs == 800);
    assert_int_equal(profile_lookup("mac-mini", &p), 0);
    assert_true(p.mem_gb == 32 && p.bw_gbs == 120);
    assert_int_equal(profile_lookup("cpu", &p), 0);
    assert_int_equal(p.gpus, 0);
    assert_string_equal(p.gpu_name, "");
    assert_true(p.bw_gbs == 60 && p.mem_gb == 32);
    assert_int_equal(profile_lookup("tpu", &p), -ENOENT);
    assert_int_equal(profile_lookup(NULL, &p), -ENOENT);
}

static void
test_token_ns(void **state)
{
    struct sim_profile gpu, cpu;
    struct sim_model m8 = model(4900000000ull, 8.0, 8.0);
    struct sim_model moe = model(4900000000ull, 30.0, 3.0);
    struct sim_model tiny = model(1000, 0.001, 0.001);
    int64_t t;

    (void)state;
    assert_int_equal(profile_lookup("rtx-4090", &gpu), 0);
    assert_int_equal(profile_lookup("cpu", &cpu), 0);
    /* ~4.9 GB read per token at ~600 GB/s effective: ~8 ms. */
    t = profile_token_ns(&gpu, &m8);
    assert_true(t > 6000000 && t < 11000000);
    /* Memory-bound: slower memory, slower tokens. */
    assert_true(profile_token_ns(&cpu, &m8) > 10 * t);
    /* MoE reads only the active experts. */
    assert_true(profile_token_ns(&gpu, &moe) * 5 < t);
    /* Never below a microsecond. */
    assert_int_equal(profile_token_ns(&gpu, &tiny), 1000);
}

static void
test_prompt_ns(void **state)
{
    struct sim_profile p;
    struct sim_model m = model(4900000000ull, 8.0, 8.0);
    int64_t tok, one, many;

    (void)state;
    assert_int_equal(profile_lookup("mac-studio", &p), 0);
    tok = profile_token_ns(&p, &m);
    assert_int_equal(profile_prompt_ns(&p, &m, 0), 0);
    one = profile_prompt_ns(&p, &m, 1);
    many = profile_prompt_ns(&p, &m, 1000);
    /* Prefill is prefill_factor times faster per token than decode. */
    assert_true(one > 0 && one < tok);
    assert_true(llabs(many - (int64_t)(1000 * (double)tok / p.prefill_factor)) <
                1000);
    assert_true(profile_prompt_ns(&p, &m, 2000) > many);
}

static void
test_load_ns(void **state)
{
    struct sim_profile p;
    struct sim_model small = model(1000000000ull, 1.5, 1.5);
    struct sim_model big = model(43000000000ull, 70.6, 70.6);
    int64_t a, b;

    (void)state;
    assert_int_equal(profile_lookup("rtx-4090", &p), 0);
    a = profile_load_ns(&p, &small);
    b = profile_load_ns(&p, &big);
    assert_true(a >= 300000000);
    /* 0.3 s + size / 3 GB/s */
    assert_true(llabs(a - (300000000 + 333333333)) < 10);
    assert_true(llabs(b - (300000000 + 14333333333)) < 10);
}

static void
test_runner_bytes(void **state)
{
    struct sim_model m = model(4900000000ull, 8.0, 8.0);
    uint64_t base = profile_runner_bytes(&m, 4096, 1);
    uint64_t kv_per_tok;

    (void)state;
    assert_true(base > m.size);
    assert_true(base < m.size + 2000000000ull);
    /* KV grows with num_ctx x parallel. */
    assert_true(profile_runner_bytes(&m, 8192, 1) > base);
    assert_true(profile_runner_bytes(&m, 4096, 2) > base);
    assert_int_equal(profile_runner_bytes(&m, 8192, 1),
                     profile_runner_bytes(&m, 4096, 2));
    assert_true(profile_runner_bytes(&m, 131072, 4) >
                profile_runner_bytes(&m, 131072, 2));
    /* Per-token KV of an 8B model is on the order of 100 KiB. */
    kv_per_tok = (profile_runner_bytes(&m, 8192, 1) - base) / 4096;
    assert_true(kv_per_tok > 50000 && kv_per_tok < 400000);
    assert_int_equal(profile_runner_bytes(&m, 4096, 0), base);
}

static void
test_default_ctx(void **state)
{
    struct sim_profile p;

    (void)state;
    assert_int_equal(profile_lookup("rtx-4090", &p), 0);
    assert_int_equal(profile_default_ctx(&p), 32768);
    assert_int_equal(profile_lookup("mac-studio", &p), 0);
    assert_int_equal(profile_default_ctx(&p), 262144);
    assert_int_equal(profile_lookup("mac-mini", &p), 0);
    assert_int_equal(profile_default_ctx(&p), 32768);
    assert_int_equal(profile_lookup("cpu", &p), 0);
    assert_int_equal(profile_default_ctx(&p), 4096);
    p.vram_gb = 47;
    assert_int_equal(profile_default_ctx(&p), 262144);
    p.vram_gb = 46.9;
    assert_int_equal(profile_default_ctx(&p), 32768);
    p.vram_gb = 23;
    assert_int_equal(profile_default_ctx(&p), 32768);
    p.vram_gb = 16;
    assert_int_equal(profile_default_ctx(&p), 4096);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),       cmocka_unit_test(test_token_ns),
        cmocka_unit_test(test_prompt_ns),    cmocka_unit_test(test_load_ns),
        cmocka_unit_test(test_runner_bytes), cmocka_unit_test(test_default_ctx),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
