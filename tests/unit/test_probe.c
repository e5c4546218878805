/*
 * test_probe.c - the Ollama probe: its parsers on Ollama's bodies, the URL
 * rewrite and num_parallel rules, and whole cycles against a real
 * herd-sim process (and against a port where nothing listens).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "herd/fsutil.h"
#include "probe.h"

static const char ps_body[] =
    "{\"models\":[{\"name\":\"llama3.2:3b\",\"model\":\"llama3.2:3b\","
    "\"size\":3221225472,\"digest\":\"abc\",\"details\":{\"parent_model\":\"\","
    "\"format\":\"gguf\",\"family\":\"llama\",\"families\":[\"llama\"],"
    "\"parameter_size\":\"3.2B\",\"quantization_level\":\"Q4_K_M\"},"
    "\"expires_at\":\"2026-11-22T05:08:35.5Z\",\"size_vram\":2147483648,"
    "\"context_length\":8192},"
    "{\"name\":\"old:1b\",\"size\":1073741824}]}";

static void
test_parse_ps(void **state)
{
    struct probe_state st;

    (void)state;
    probe_state_init(&st);
    assert_int_equal(probe_parse_ps(&st, ps_body, strlen(ps_body)), 0);
    assert_int_equal(st.n_loaded, 2);
    assert_string_equal(st.loaded[0].name, "llama3.2:3b");
    assert_true(st.loaded[0].size_gb == 3.0);
    assert_true(st.loaded[0].size_vram_gb == 2.0);
    assert_string_equal(st.loaded[0].parameter_size, "3.2B");
    assert_string_equal(st.loaded[0].quantization, "Q4_K_M");
    assert_int_equal(st.loaded[0].context_length, 8192);
    assert_string_equal(st.loaded[0].expires_at, "2026-11-22T05:08:35.5Z");
    /* An older server: no model field, no context_length. */
    assert_string_equal(st.loaded[1].name, "old:1b");
    assert_int_equal(st.loaded[1].context_length, 0);
    assert_int_equal(probe_parse_ps(&st, "{\"models\":[]}", 13), 0);
    assert_int_equal(st.n_loaded, 0);
    assert_int_equal(probe_parse_ps(&st, "{\"models\":", 10), -EINVAL);
    assert_int_equal(st.n_loaded, 0);
    assert_true(strlen(st.error) > 0);
    probe_state_cleanup(&st);
}

static void
test_parse_tags(void **state)
{
    static const char body[] =
        "{\"models\":[{\"name\":\"a:latest\",\"model\":\"a:latest\"},"
        "{\"name\":\"b:7b\"},{\"size\":1},{\"model\":42}]}";
    struct probe_state st;

    (void)state;
    probe_state_init(&st);
    assert_int_equal(probe_parse_tags(&st, body, strlen(body)), 0);
    assert_int_equal(st.n_available, 2);
    assert_string_equal(st.available[0], "a:latest");
    assert_string_equal(st.available[1], "b:7b");
    assert_int_equal(st.dropped, 2); /* entries without a name */
    assert_int_equal(probe_parse_tags(&st, "[1,2]", 5), -EINVAL);
    probe_state_cleanup(&st);
}

static void
test_public_url(void **state)
{
    char out[128];

    (void)state;
    probe_public_url("http://localhost:11434", "192.168.1.10", out,
                     sizeof(out));
    assert_string_equal(out, "http://192.168.1.10:11434");
    probe_public_url("http://127.0.0.1", "10.0.0.5", out, sizeof(out));
    assert_string_equal(out, "http://10.0.0.5:11434");
    probe_public_url("http://[::1]:11500", "10.0.0.5", out, sizeof(out));
    assert_string_equal(out, "http://10.0.0.5:11500");
    /* Not loopback, or no usable LAN address: unchanged. */
    probe_public_url("http://gpu-box:11434", "10.0.0.5", out, sizeof(out));
    assert_string_equal(out, "http://gpu-box:11434");
    probe_public_url("http://localhost:11434", "127.0.0.1", out, sizeof(out));
    assert_string_equal(out, "http://localhost:11434");
    probe_public_url("http://localhost:11434", "", out, sizeof(out));
    assert_string_equal(out, "http://localhost:11434");
}

static void
test_num_parallel(void **state)
{
    (void)state;
    assert_int_equal(probe_num_parallel("4", "2"), 4);
    assert_int_equal(probe_num_parallel(NULL, "2"), 2);
    assert_int_equal(probe_num_parallel("", "3"), 3);
    assert_int_equal(probe_num_parallel("x", "3"), 3); /* bad: skipped */
    assert_int_equal(probe_num_parallel("0", NULL), 1);
    assert_int_equal(probe_num_parallel(NULL, NULL), 1);
}

/* --- against real processes -------------------------------------------- */

struct cycle {
    bool done;
    struct probe_state st; /* copied scalars only */
    size_t n_loaded, n_available;
    uint32_t ctx;
    char first_loaded[PROBE_NAME_MAX];
    bool found_embed;
};

static void
on_cycle(struct probe *p, const struct probe_state *st, void *ud)
{
    struct cycle *c = ud;

    (void)p;
    c->done = true;
    c->st.healthy = st->healthy;
    memcpy(c->st.version, st->version, sizeof(c->st.version));
    memcpy(c->st.error, st->error, sizeof(c->st.error));
    c->n_loaded = st->n_loaded;
    c->n_available = st->n_available;
    if (st->n_loaded > 0) {
        c->ctx = st->loaded[0].context_length;
        memcpy(c->first_loaded, st->loaded[0].name, PROBE_NAME_MAX);
    }
    for (size_t i = 0; i < st->n_available; i++) {
        if (strcmp(st->available[i], "nomic-embed-text:latest") == 0)
            c->found_embed = true;
    }
}

static void
run_cycle(uv_loop_t *loop, struct http_client *hc, const char *url,
          struct cycle *c)
{
    struct probe *p = probe_new(hc, url);

    assert_non_null(p);
    memset(c, 0, sizeof(*c));
    assert_int_equal(probe_run(p, 5000, on_cycle, c), 0);
    assert_int_equal(probe_run(p, 5000, on_cycle, c), -EBUSY);
    while (!c->done)
        uv_run(loop, UV_RUN_ONCE);
    probe_free(p);
}

/* Starts herd-sim on a free port; returns its pid, the URL in url. */
static pid_t
start_sim(char *url, size_t n, const char *dir)
{
    const char *bindir = getenv("HERD_BIN_DIR");
    char bin[512], ready[512], *txt = NULL;
    struct timespec ts = {0, 10 * 1000 * 1000};
    size_t len;
    pid_t pid;

    assert_non_null(bindir);
    snprintf(bin, sizeof(bin), "%s/herd-sim", bindir);
    snprintf(ready, sizeof(ready), "%s/ready", dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(bin, bin, "--port", "0", "--ready-file", ready, "--time-scale",
              "0", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    /* Poll for the ready file, with a deadline. */
    for (int i = 0; i < 2000 && fs_read_file(ready, 256, &txt, &len) != 0; i++)
        nanosleep(&ts, NULL);
    assert_non_null(txt);
    txt[strcspn(txt, "\n")] = '\0';
    snprintf(url, n, "http://%s", txt);
    free(txt);
    return pid;
}

static void
stop_sim(pid_t pid)
{
    int status = 0;

    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void
loop_closed(void *ud)
{
    *(bool *)ud = true;
}

static void
test_cycle_against_herd_sim(void **state)
{
    char dir[] = "/tmp/test_probe.XXXXXX", url[300], cmd[600];
    uv_loop_t loop;
    struct http_client *hc;
    struct cycle c;
    bool closed = false;
    pid_t pid;
    int rc;

    (void)state;
    assert_non_null(mkdtemp(dir));
    pid = start_sim(url, sizeof(url), dir);
    uv_loop_init(&loop);
    hc = http_client_new(&loop);
    assert_non_null(hc);

    run_cycle(&loop, hc, url, &c);
    assert_true(c.st.healthy);
    assert_string_equal(c.st.version, "0.33.0-rc2");
    assert_string_equal(c.st.error, "");
    assert_int_equal(c.n_loaded, 0);
    assert_true(c.n_available >= 7); /* the sim's default models */
    assert_true(c.found_embed);

    /* Load a model with a known context, then probe again. */
    snprintf(cmd, sizeof(cmd),
             "curl -s -o /dev/null %s/api/generate -d "
             "'{\"model\":\"llama3.2:3b\",\"options\":{\"num_ctx\":2048}}'",
             url);
    rc = system(cmd);
    assert_int_equal(rc, 0);
    run_cycle(&loop, hc, url, &c);
    assert_int_equal(c.n_loaded, 1);
    assert_string_equal(c.first_loaded, "llama3.2:3b");
    assert_int_equal(c.ctx, 2048);

    /* Ollama gone: the cycle still completes and says so. */
    stop_sim(pid);
    run_cycle(&loop, hc, url, &c);
    assert_false(c.st.healthy);
    assert_int_equal(c.n_loaded, 0);
    assert_non_null(strstr(c.st.error, "/"));

    http_client_free(hc, loop_closed, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ps),
        cmocka_unit_test(test_parse_tags),
        cmocka_unit_test(test_public_url),
        cmocka_unit_test(test_num_parallel),
        cmocka_unit_test(test_cycle_against_herd_sim),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
