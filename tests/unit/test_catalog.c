/*
 * test_catalog.c - the model catalogue: defaults, names, specs, the JSON
 * file, remove/copy/pull and the removed list.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"

static struct sim_catalog *
cat_new(void)
{
    struct sim_catalog *c = malloc(sizeof(*c));

    assert_non_null(c);
    catalog_init(c);
    return c;
}

static void
cat_free(struct sim_catalog *c)
{
    catalog_cleanup(c);
    free(c);
}

static bool
is_hex64(const char *d)
{
    if (strlen(d) != 64)
        return false;
    for (const char *p = d; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static void
test_defaults(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *m;

    (void)state;
    assert_int_equal(catalog_add_defaults(c), 0);
    assert_int_equal(c->n, 7);

    m = catalog_find(c, "llama3.2:3b");
    assert_non_null(m);
    assert_string_equal(m->name, "llama3.2:3b");
    assert_int_equal(m->size, 2000000000ull);
    assert_string_equal(m->quantization, "Q4_K_M");
    assert_string_equal(m->parameter_size, "3.2B");
    assert_string_equal(m->family, "llama");
    assert_int_equal(m->context_length, 131072);
    assert_true(m->caps & SIM_CAP_COMPLETION);
    assert_true(is_hex64(m->digest));

    m = catalog_find(c, "llama3.1:8b");
    assert_non_null(m);
    assert_int_equal(m->size, 4900000000ull);
    assert_string_equal(m->parameter_size, "8.0B");

    m = catalog_find(c, "qwen3:8b");
    assert_non_null(m);
    assert_int_equal(m->size, 5200000000ull);
    assert_int_equal(m->context_length, 40960);
    assert_true(m->caps & SIM_CAP_THINKING);
    assert_true(m->caps & SIM_CAP_TOOLS);
    assert_true(m->caps & SIM_CAP_COMPLETION);

    m = catalog_find(c, "qwen2.5-coder:7b");
    assert_non_null(m);
    assert_int_equal(m->size, 4700000000ull);
    assert_int_equal(m->context_length, 32768);
    assert_int_equal(m->caps,
                     SIM_CAP_COMPLETION | SIM_CAP_TOOLS | SIM_CAP_INSERT);

    m = catalog_find(c, "gemma3:4b");
    assert_non_null(m);
    assert_int_equal(m->size, 3300000000ull);
    assert_int_equal(m->caps, SIM_CAP_COMPLETION | SIM_CAP_VISION);
    assert_int_equal(m->context_length, 131072);

    m = catalog_find(c, "nomic-embed-text");
    assert_non_null(m);
    assert_string_equal(m->name, "nomic-embed-text:latest");
    assert_int_equal(m->size, 274000000ull);
    assert_int_equal(m->caps, SIM_CAP_EMBEDDING);
    assert_int_equal(m->context_length, 2048);
    assert_int_equal(m->embedding_length, 768);
    assert_string_equal(m->parameter_size, "137M");

    m = catalog_find(c, "llama3.3:70b");
    assert_non_null(m);
    assert_int_equal(m->size, 43000000000ull);
    assert_string_equal(m->parameter_size, "70.6B");
    assert_true(m->caps & SIM_CAP_TOOLS);

    /* Install times are distinct, newest first in list order. */
    for (size_t i = 1; i < c->n; i++)
        assert_true(c->models[i - 1]->modified_ns > c->models[i]->modified_ns);
    cat_free(c);
}

static void
test_digest_stable(void **state)
{
    struct sim_catalog *a = cat_new(), *b = cat_new();

    (void)state;
    assert_int_equal(catalog_add_defaults(a), 0);
    assert_int_equal(catalog_add_defaults(b), 0);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->models[i]->digest, b->models[i]->digest);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(a->models[i]->digest, a->models[j]->digest);
    }
    /* Same name, other size: other digest. */
    assert_int_equal(catalog_add_spec(b, "llama3.2:3b,size=2.1GB", NULL, 0), 0);
    assert_string_not_equal(catalog_find(a, "llama3.2:3b")->digest,
                            catalog_find(b, "llama3.2:3b")->digest);
    cat_free(a);
    cat_free(b);
}

static void
norm_ok(const char *in, const char *want)
{
    char out[600];

    assert_int_equal(model_name_normalize(in, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void
norm_bad(const char *in)
{
    char out[600];

    assert_int_equal(model_name_normalize(in, out, sizeof(out)), -EINVAL);
}

static void
test_normalize(void **state)
{
    char long_name[200], small[8];

    (void)state;
    norm_ok("Llama3.2", "Llama3.2:latest");
    norm_ok("llama3.2:3b", "llama3.2:3b");
    norm_ok("library/llama3.2", "llama3.2:latest");
    norm_ok("registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b");
    norm_ok("REGISTRY.OLLAMA.AI/Library/qwen3:8b", "qwen3:8b");
    norm_ok("registry.ollama.ai/user/model", "user/model:latest");
    norm_ok("user/model:tag", "user/model:tag");
    norm_ok("hf.co/bartowski/Some-Model-GGUF:Q4_K_M",
            "hf.co/bartowski/Some-Model-GGUF:Q4_K_M");
    norm_ok("localhost:5000/ns/model", "localhost:5000/ns/model:latest");
    norm_ok("qwen2.5:0.5b", "qwen2.5:0.5b");
    norm_ok("_x:y", "_x:y");

    norm_bad("");
    norm_bad(":tag");
    norm_bad("model:");
    norm_bad("a/b/c/d");
    norm_bad("/model");
    norm_bad("ns/");
    norm_bad("bad name");
    norm_bad("-model");
    norm_bad("ns.x/model");
    norm_bad("model:t@g");
    norm_bad("model:a:b/c");
    memset(long_name, 'a', 81);
    long_name[81] = '\0';
    norm_bad(long_name);
    long_name[80] = '\0';
    norm_ok(long_name,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaa:latest");
    /* Too small an output buffer is an error, never a truncation. */
    assert_int_equal(model_name_normalize("llama3.2", small, sizeof(small)),
                     -EINVAL);
    assert_int_equal(model_name_normalize(NULL, small, sizeof(small)), -EINVAL);
}

static void
test_find_case(void **state)
{
    struct sim_catalog *c = cat_new();

    (void)state;
    assert_int_equal(catalog_add_defaults(c), 0);
    assert_ptr_equal(catalog_find(c, "LLAMA3.2:3B"),
                     catalog_find(c, "llama3.2:3b"));
    assert_ptr_equal(catalog_find(c, "registry.ollama.ai/library/Qwen3:8B"),
                     catalog_find(c, "qwen3:8b"));
    assert_null(catalog_find(c, "llama3.2")); /* :latest not installed */
    assert_null(catalog_find(c, "bad name"));
    assert_null(catalog_find(c, NULL));
    cat_free(c);
}

static void
test_owner(void **state)
{
    char out[64];

    (void)state;
    model_name_owner("llama3.2:latest", out, sizeof(out));
    assert_string_equal(out, "library");
    model_name_owner("user/model:tag", out, sizeof(out));
    assert_string_equal(out, "user");
    model_name_owner("hf.co/bartowski/x:latest", out, sizeof(out));
    assert_string_equal(out, "bartowski");
}

static void
test_spec_derived(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *m;
    char err[256];
    double want;

    (void)state;
    assert_int_equal(catalog_add_spec(c, "foo:7b", err, sizeof(err)), 0);
    m = catalog_find(c, "foo:7b");
    assert_non_null(m);
    assert_true(fabs(m->params_b - 7.0) < 1e-9);
    assert_string_equal(m->parameter_size, "7B");
    assert_string_equal(m->quantization, "Q4_K_M");
    assert_string_equal(m->family, "foo");
    want = 7e9 * 4.85 / 8;
    assert_true(m->size > want && m->size < want * 1.1);
    assert_int_equal(m->caps, SIM_CAP_COMPLETION);
    assert_true(m->context_length > 0);
    assert_true(m->embedding_length > 0);

    /* Quantisation from the tag, a size that follows from it. */
    assert_int_equal(
        catalog_add_spec(c, "bar:8b-instruct-q8_0", err, sizeof(err)), 0);
    m = catalog_find(c, "bar:8b-instruct-q8_0");
    assert_string_equal(m->quantization, "Q8_0");
    assert_true(m->size > 8.4e9 && m->size < 9.2e9);

    /* MoE: 30 total, 3 active. */
    assert_int_equal(catalog_add_spec(c, "moe:30b-a3b", err, sizeof(err)), 0);
    m = catalog_find(c, "moe:30b-a3b");
    assert_true(fabs(m->params_b - 30) < 1e-9);
    assert_true(fabs(m->active_b - 3) < 1e-9);

    assert_int_equal(catalog_add_spec(c, "tiny,params=567M", err, sizeof(err)),
                     0);
    m = catalog_find(c, "tiny");
    assert_string_equal(m->parameter_size, "567M");
    assert_true(fabs(m->params_b - 0.567) < 1e-9);

    assert_int_equal(catalog_add_spec(c, "half,params=1.5B", err, sizeof(err)),
                     0);
    assert_string_equal(catalog_find(c, "half")->parameter_size, "1.5B");

    assert_int_equal(catalog_add_spec(c, "mix,params=8x7b", err, sizeof(err)),
                     0);
    m = catalog_find(c, "mix");
    assert_true(fabs(m->params_b - 56) < 1e-9);
    assert_true(fabs(m->active_b - 14) < 1e-9);

    assert_int_equal(
        catalog_add_spec(c, "moe2,params=30b-a3b", err, sizeof(err)), 0);
    assert_true(fabs(catalog_find(c, "moe2")->active_b - 3) < 1e-9);

    /* Embedding by name. */
    assert_int_equal(catalog_add_spec(c, "my-embed-model", err, sizeof(err)),
                     0);
    assert_int_equal(catalog_find(c, "my-embed-model")->caps,
                     SIM_CAP_EMBEDDING);
    cat_free(c);
}

static void
test_spec_explicit(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *m;
    char err[256];

    (void)state;
    assert_int_equal(
        catalog_add_spec(c,
                         "Custom:1,size=4.7GB,params=8B,quant=q5_k_m,family=x,"
                         "ctx=8192,embed_len=1234,tools,thinking,vision,insert",
                         err, sizeof(err)),
        0);
    m = catalog_find(c, "custom:1");
    assert_non_null(m);
    assert_string_equal(m->name, "Custom:1");
    assert_int_equal(m->size, 4700000000ull);
    assert_string_equal(m->quantization, "Q5_K_M");
    assert_string_equal(m->family, "x");
    assert_int_equal(m->context_length, 8192);
    assert_int_equal(m->embedding_length, 1234);
    assert_int_equal(m->caps, SIM_CAP_COMPLETION | SIM_CAP_TOOLS |
                                  SIM_CAP_THINKING | SIM_CAP_VISION |
                                  SIM_CAP_INSERT);

    /* Size alone: parameters follow from it. */
    assert_int_equal(catalog_add_spec(c, "sized,size=4.9GB", err, sizeof(err)),
                     0);
    m = catalog_find(c, "sized");
    assert_true(m->params_b > 7.5 && m->params_b < 8.5);

    /* embed: embedding, no completion. */
    assert_int_equal(
        catalog_add_spec(c, "e1,embed,params=137M", err, sizeof(err)), 0);
    assert_int_equal(catalog_find(c, "e1")->caps, SIM_CAP_EMBEDDING);

    /* A known name keeps its registry shape, flags adjust it. */
    assert_int_equal(
        catalog_add_spec(c, "llama3.1:8b,notools", err, sizeof(err)), 0);
    m = catalog_find(c, "llama3.1:8b");
    assert_int_equal(m->caps, SIM_CAP_COMPLETION);
    assert_int_equal(m->size, 4900000000ull);
    assert_int_equal(
        catalog_add_spec(c, "qwen3:8b,quant=Q8_0", err, sizeof(err)), 0);
    m = catalog_find(c, "qwen3:8b");
    assert_true(m->size > 8.4e9 && m->size < 9.2e9);
    assert_int_equal(m->context_length, 40960);
    cat_free(c);
}

static void
test_spec_errors(void **state)
{
    struct sim_catalog *c = cat_new();
    char err[256];

    (void)state;
    assert_int_equal(catalog_add_spec(c, "x,size=4.7QB", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "bad size '4.7QB'"));
    assert_non_null(strstr(err, "x,size=4.7QB"));
    assert_int_equal(catalog_add_spec(c, "x,colour=red", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "unknown key 'colour'"));
    assert_int_equal(catalog_add_spec(c, "x,shiny", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown flag 'shiny'"));
    assert_int_equal(catalog_add_spec(c, "x,params=lots", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "bad params"));
    assert_int_equal(catalog_add_spec(c, "x,quant=Q9_Z", err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(catalog_add_spec(c, "x,ctx=abc", err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(catalog_add_spec(c, "bad name", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "invalid model name"));
    assert_int_equal(catalog_add_spec(c, "", err, sizeof(err)), -EINVAL);
    assert_int_equal(catalog_add_spec(c, NULL, NULL, 0), -EINVAL);
    assert_int_equal(c->n, 0);
    cat_free(c);
}

static void
test_replace_keeps_old(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *old;

    (void)state;
    assert_int_equal(catalog_add_spec(c, "m:1b,size=1GB", NULL, 0), 0);
    old = catalog_find(c, "m:1b");
    assert_int_equal(catalog_add_spec(c, "M:1B,size=2GB", NULL, 0), 0);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->n_removed, 1);
    assert_ptr_equal(c->removed[0], old);
    assert_int_equal(old->size, 1000000000ull); /* still readable */
    assert_int_equal(catalog_find(c, "m:1b")->size, 2000000000ull);
    cat_free(c);
}

static void
test_remove_copy(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *m, *cp;

    (void)state;
    assert_int_equal(catalog_add_defaults(c), 0);
    m = catalog_find(c, "qwen3:8b");
    assert_int_equal(catalog_copy(c, "qwen3:8b", "mine/qwen:copy"), 0);
    cp = catalog_find(c, "mine/qwen:copy");
    assert_non_null(cp);
    assert_ptr_not_equal(cp, m);
    assert_string_equal(cp->digest, m->digest);
    assert_int_equal(cp->size, m->size);
    assert_int_equal(cp->caps, m->caps);
    assert_int_equal(c->n, 8);
    assert_int_equal(catalog_copy(c, "nope:1b", "x"), -ENOENT);
    assert_int_equal(catalog_copy(c, "qwen3:8b", "bad name"), -EINVAL);

    assert_int_equal(catalog_remove(c, "QWEN3:8b"), 0);
    assert_null(catalog_find(c, "qwen3:8b"));
    assert_int_equal(c->n_removed, 1);
    assert_ptr_equal(c->removed[0], m);
    assert_int_equal(catalog_remove(c, "qwen3:8b"), -ENOENT);
    assert_int_equal(catalog_remove(c, "bad name"), -EINVAL);
    cat_free(c);
}

static void
test_pull(void **state)
{
    struct sim_catalog *c = cat_new();
    const struct sim_model *m, *again;

    (void)state;
    assert_int_equal(catalog_pull(c, "qwen3:30b", &m), 0);
    assert_string_equal(m->name, "qwen3:30b");
    assert_true(m->active_b < m->params_b);
    assert_true(m->caps & SIM_CAP_THINKING);

    assert_int_equal(catalog_pull(c, "llama3.2", &m), 0);
    assert_string_equal(m->name, "llama3.2:latest");
    assert_int_equal(m->size, 2000000000ull);

    assert_int_equal(catalog_pull(c, "someone/thing:1b", &m), 0);
    assert_true(fabs(m->params_b - 1.0) < 1e-9);

    assert_int_equal(catalog_pull(c, "missing-model", &m), -ENOENT);
    assert_int_equal(catalog_pull(c, "nonexistent:1b", &m), -ENOENT);
    assert_int_equal(catalog_pull(c, "bad name", &m), -EINVAL);
    assert_int_equal(c->n, 3);

    /* Pulling twice is a no-op; after a delete the same object returns. */
    assert_int_equal(catalog_pull(c, "llama3.2:latest", &again), 0);
    assert_int_equal(catalog_remove(c, "llama3.2"), 0);
    assert_int_equal(catalog_pull(c, "llama3.2", &m), 0);
    assert_ptr_equal(m, again);
    assert_int_equal(c->n_removed, 0);
    assert_int_equal(c->n, 3);
    cat_free(c);
}

static bool
keep_first(const struct sim_model *m, void *ud)
{
    return m == ud;
}

static void
test_purge_removed(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *a, *b;

    (void)state;
    assert_int_equal(catalog_add_spec(c, "a", NULL, 0), 0);
    assert_int_equal(catalog_add_spec(c, "b", NULL, 0), 0);
    a = catalog_find(c, "a");
    b = catalog_find(c, "b");
    assert_non_null(b);
    assert_int_equal(catalog_remove(c, "a"), 0);
    assert_int_equal(catalog_remove(c, "b"), 0);
    catalog_purge_removed(c, keep_first, a);
    assert_int_equal(c->n_removed, 1);
    assert_ptr_equal(c->removed[0], a);
    catalog_purge_removed(c, NULL, NULL);
    assert_int_equal(c->n_removed, 0);
    cat_free(c);
}

static char *
write_tmp(const char *text)
{
    char *path = strdup("/tmp/herd-test-catalog-XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void
test_load_file(void **state)
{
    struct sim_catalog *c = cat_new();
    struct sim_model *m;
    char err[256];
    char *ok = write_tmp(
        "[{\"name\":\"file-model:3b\",\"size\":\"2GB\",\"tools\":true},"
        " {\"name\":\"emb\",\"params\":\"137M\",\"embed\":true,"
        "\"context_length\":512},"
        " {\"name\":\"caps\",\"size\":1500000000,\"capabilities\":"
        "[\"completion\",\"vision\"],\"quant\":\"Q8_0\",\"ctx\":4096},"
        " {\"name\":\"llama3.1:8b\",\"tools\":false,\"whatever\":1}]");
    char *bad_entry =
        write_tmp("[{\"name\":\"good\"},{\"name\":\"x\",\"size\":\"lots\"}]");
    char *not_array = write_tmp("{\"name\":\"x\"}");
    char *broken = write_tmp("[{\"name\":");
    char *bad_caps =
        write_tmp("[{\"name\":\"x\",\"capabilities\":[\"flying\"]}]");

    (void)state;
    assert_int_equal(catalog_load_file(c, ok, err, sizeof(err)), 0);
    assert_int_equal(c->n, 4);
    m = catalog_find(c, "file-model:3b");
    assert_int_equal(m->size, 2000000000ull);
    assert_int_equal(m->caps, SIM_CAP_COMPLETION | SIM_CAP_TOOLS);
    assert_true(m->params_b > 2.5 && m->params_b < 3.5);
    m = catalog_find(c, "emb");
    assert_int_equal(m->caps, SIM_CAP_EMBEDDING);
    assert_int_equal(m->context_length, 512);
    m = catalog_find(c, "caps");
    assert_int_equal(m->caps, SIM_CAP_COMPLETION | SIM_CAP_VISION);
    assert_int_equal(m->size, 1500000000ull);
    assert_string_equal(m->quantization, "Q8_0");
    assert_int_equal(m->context_length, 4096);
    m = catalog_find(c, "llama3.1:8b");
    assert_int_equal(m->caps, SIM_CAP_COMPLETION);

    /* A bad entry adds nothing, and the message says where. */
    assert_int_equal(catalog_load_file(c, bad_entry, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "entry 1"));
    assert_null(catalog_find(c, "good"));
    assert_int_equal(catalog_load_file(c, not_array, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(catalog_load_file(c, broken, err, sizeof(err)), -EINVAL);
    assert_int_equal(catalog_load_file(c, bad_caps, err, sizeof(err)), -EINVAL);
    assert_int_equal(
        catalog_load_file(c, "/nonexistent/dir/cat.json", err, sizeof(err)),
        -ENOENT);
    assert_int_equal(c->n, 4);

    unlink(ok);
    unlink(bad_entry);
    unlink(not_array);
    unlink(broken);
    unlink(bad_caps);
    free(ok);
    free(bad_entry);
    free(not_array);
    free(broken);
    free(bad_caps);
    cat_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_digest_stable),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_find_case),
        cmocka_unit_test(test_owner),
        cmocka_unit_test(test_spec_derived),
        cmocka_unit_test(test_spec_explicit),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_replace_keeps_old),
        cmocka_unit_test(test_remove_copy),
        cmocka_unit_test(test_pull),
        cmocka_unit_test(test_purge_removed),
        cmocka_unit_test(test_load_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
