/*
 * test_log.c - unit tests for the logging module (src/common/log.c): level
 * and trace parsing, the stderr and JSONL line formats, errno
 * preservation, daily rotation naming and retention, and fatal().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "herd/fsutil.h"
#include "herd/log.h"

/* 2026-03-08T01:24:28.685123456Z */
#define T0_NS (1772933068LL * 1000000000LL + 685123456LL)
/* 2026-03-09T00:00:00Z, the next UTC midnight */
#define T1_NS (1773014400LL * 1000000000LL)
/* 2026-03-10T00:00:05Z */
#define T2_NS (1773100805LL * 1000000000LL)

static int64_t fake_now;

static int64_t
fake_clock(void)
{
    return fake_now;
}

static char tmpdir[256];
static int saved_stderr = -1;
static char errpath[512];

/* Runs the test with a fresh temp dir and stderr captured to a file. */
static int
setup(void **state)
{
    int fd;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/herd-test-log-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", tmpdir);
    fflush(stderr);
    saved_stderr = dup(2);
    fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || saved_stderr < 0)
        return -1;
    dup2(fd, 2);
    close(fd);
    fake_now = T0_NS;
    log_set_clock_for_test(fake_clock);
    log_init("herd-test", LL_INFO);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[600];

    (void)state;
    log_close();
    log_set_clock_for_test(NULL);
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *
slurp(const char *path)
{
    char *data = NULL;
    size_t len;

    if (fs_read_file(path, 1 << 20, &data, &len) != 0)
        return NULL;
    return data;
}

static char *
slurp_stderr(void)
{
    fflush(stderr);
    return slurp(errpath);
}

static void
test_parse_level(void **state)
{
    enum log_level l = LL_INFO;

    (void)state;
    assert_int_equal(log_parse_level("error", &l), 0);
    assert_int_equal(l, LL_ERROR);
    assert_int_equal(log_parse_level("WARN", &l), 0);
    assert_int_equal(l, LL_WARN);
    assert_int_equal(log_parse_level("Warning", &l), 0);
    assert_int_equal(l, LL_WARN);
    assert_int_equal(log_parse_level("info", &l), 0);
    assert_int_equal(l, LL_INFO);
    assert_int_equal(log_parse_level("DEBUG", &l), 0);
    assert_int_equal(l, LL_DEBUG);
    assert_int_equal(log_parse_level("verbose", &l), -EINVAL);
    assert_int_equal(log_parse_level("", &l), -EINVAL);
    assert_int_equal(log_parse_level("info ", &l), -EINVAL);
    assert_int_equal(l, LL_DEBUG); /* untouched on failure */
}

static void
test_parse_trace(void **state)
{
    unsigned m = 0;

    (void)state;
    assert_int_equal(log_parse_trace("http,proxy", &m), 0);
    assert_int_equal(m, TRACE_HTTP | TRACE_PROXY);
    assert_int_equal(log_parse_trace("upstream", &m), 0);
    assert_int_equal(m, TRACE_UPSTREAM);
    assert_int_equal(log_parse_trace("MDNS, store,sched", &m), 0);
    assert_int_equal(m, TRACE_MDNS | TRACE_STORE | TRACE_SCHED);
    assert_int_equal(log_parse_trace("", &m), 0);
    assert_int_equal(m, 0);
    m = 7;
    assert_int_equal(log_parse_trace("http,bogus", &m), -EINVAL);
    assert_int_equal(m, 7);
    assert_int_equal(log_parse_trace("httpx", &m), -EINVAL);
    assert_int_equal(log_parse_trace("htt", &m), -EINVAL);
}

static void
test_level_get_set(void **state)
{
    (void)state;
    log_set_level(LL_WARN);
    assert_int_equal(log_get_level(), LL_WARN);
    log_set_level(LL_DEBUG);
    assert_int_equal(log_get_level(), LL_DEBUG);
}

static void
test_stderr_format_and_filter(void **state)
{
    char want[256];
    char *got;

    (void)state;
    log_info("hello %d", 42);
    log_debug("hidden at info level");
    log_warn("careful");
    got = slurp_stderr();
    assert_non_null(got);
    snprintf(want, sizeof(want),
             "2026-03-08T01:24:28.685123+00:00 herd-test[%ld] INFO hello 42\n"
             "2026-03-08T01:24:28.685123+00:00 herd-test[%ld] WARNING "
             "careful\n",
             (long)getpid(), (long)getpid());
    assert_string_equal(got, want);
    free(got);
}

static void
test_errno_preserved(void **state)
{
    char *got;

    (void)state;
    errno = ENOENT;
    log_info("x");
    assert_int_equal(errno, ENOENT);
    errno = EACCES;
    log_debug("filtered");
    assert_int_equal(errno, EACCES);
    errno = EPIPE;
    log_syserr("write %s", "sock");
    assert_int_equal(errno, EPIPE);
    got = slurp_stderr();
    assert_non_null(strstr(got, " ERROR write sock: Broken pipe\n"));
    free(got);
}

static void
test_jsonl_content(void **state)
{
    char path[512], *got;

    (void)state;
    snprintf(path, sizeof(path), "%s/a/b/herd.jsonl", tmpdir);
    assert_int_equal(log_open_jsonl(path, 30), 0); /* creates a/b */
    log_info("hi \"there\"\\ <x>\n\t\x01 caf\xc3\xa9 bad\xff!");
    log_debug("not written");
    log_error("second");
    got = slurp(path);
    assert_non_null(got);
    assert_string_equal(
        got, "{\"ts\":\"2026-03-08T01:24:28.685123+00:00\",\"level\":\"INFO\","
             "\"logger\":\"herd-test\",\"msg\":\"hi \\\"there\\\"\\\\ <x>\\n"
             "\\t\\u0001 caf\xc3\xa9 bad\\ufffd!\"}\n"
             "{\"ts\":\"2026-03-08T01:24:28.685123+00:00\",\"level\":"
             "\"ERROR\",\"logger\":\"herd-test\",\"msg\":\"second\"}\n");
    free(got);
}

/* A request-scoped line carries the request id in both sinks. */
static void
test_jsonl_request_id(void **state)
{
    char path[512], *got;

    (void)state;
    snprintf(path, sizeof(path), "%s/herd.jsonl", tmpdir);
    assert_int_equal(log_open_jsonl(path, 30), 0);
    log_req(LL_INFO, "7b291a70-3837-436a-b11f-df29e31ef787", "routed to %s",
            "n1");
    log_req(LL_DEBUG, "ffffffff-0000-4000-8000-000000000000", "filtered");
    got = slurp(path);
    assert_non_null(got);
    assert_string_equal(
        got, "{\"ts\":\"2026-03-08T01:24:28.685123+00:00\",\"level\":\"INFO\","
             "\"logger\":\"herd-test\",\"msg\":\"routed to n1\","
             "\"request_id\":\"7b291a70-3837-436a-b11f-df29e31ef787\"}\n");
    free(got);
}

static void
test_jsonl_appends(void **state)
{
    char path[512], *got;
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/herd.jsonl", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("old\n", f);
    fclose(f);
    assert_int_equal(log_open_jsonl(path, 30), 0);
    log_info("new");
    got = slurp(path);
    assert_non_null(got);
    assert_true(strncmp(got, "old\n{\"ts\":", 10) == 0);
    free(got);
}

static void
test_jsonl_open_error(void **state)
{
    char path[512];
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/file/sub/herd.jsonl", tmpdir);
    errno = 0;
    assert_int_equal(log_open_jsonl(path, 30), -ENOTDIR);
    assert_int_equal(errno, 0);
}

static void
test_rotation_at_utc_midnight(void **state)
{
    char path[512], rot[600], *got;
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/herd.jsonl", tmpdir);
    assert_int_equal(log_open_jsonl(path, 30), 0);
    log_info("day one");
    fake_now = T1_NS - 1; /* 23:59:59.999999999, still day one */
    log_info("day one late");
    snprintf(rot, sizeof(rot), "%s.2026-03-08", path);
    assert_int_not_equal(stat(rot, &st), 0);
    fake_now = T1_NS;
    log_info("day two");
    got = slurp(rot);
    assert_non_null(got);
    assert_non_null(strstr(got, "\"msg\":\"day one\""));
    assert_non_null(strstr(got, "\"msg\":\"day one late\""));
    assert_null(strstr(got, "day two"));
    free(got);
    got = slurp(path);
    assert_non_null(got);
    assert_string_equal(got, "{\"ts\":\"2026-03-09T00:00:00.000000+00:00\","
                             "\"level\":\"INFO\",\"logger\":\"herd-test\","
                             "\"msg\":\"day two\"}\n");
    free(got);
    /* A day later with no logging in between: named for the day it began. */
    fake_now = T2_NS;
    log_info("day four");
    snprintf(rot, sizeof(rot), "%s.2026-03-09", path);
    got = slurp(rot);
    assert_non_null(got);
    assert_non_null(strstr(got, "day two"));
    free(got);
}

static void
touch(const char *dir, const char *name)
{
    char p[700];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("x\n", f);
    fclose(f);
}

static int
exists(const char *dir, const char *name)
{
    char p[700];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static void
test_rotation_keeps_keep_days(void **state)
{
    char path[512];

    (void)state;
    touch(tmpdir, "herd.jsonl.2026-03-01");
    touch(tmpdir, "herd.jsonl.2026-03-05");
    touch(tmpdir, "herd.jsonl.2026-03-07");
    touch(tmpdir, "herd.jsonl.notadate"); /* not ours: kept */
    touch(tmpdir, "other.jsonl.2026-01-01");
    snprintf(path, sizeof(path), "%s/herd.jsonl", tmpdir);
    assert_int_equal(log_open_jsonl(path, 2), 0);
    log_info("day one");
    fake_now = T1_NS + 5;
    log_info("day two");
    assert_true(exists(tmpdir, "herd.jsonl.2026-03-08"));
    assert_true(exists(tmpdir, "herd.jsonl.2026-03-07"));
    assert_false(exists(tmpdir, "herd.jsonl.2026-03-05"));
    assert_false(exists(tmpdir, "herd.jsonl.2026-03-01"));
    assert_true(exists(tmpdir, "herd.jsonl.notadate"));
    assert_true(exists(tmpdir, "other.jsonl.2026-01-01"));
    assert_true(exists(tmpdir, "herd.jsonl"));
}

static void
test_fatal_exits_1(void **state)
{
    int status = 0;
    char *got;
    pid_t pid;

    (void)state;
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        fatal("cannot bind %s", "127.0.0.1:11434");
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    got = slurp_stderr();
    assert_non_null(strstr(got, " ERROR cannot bind 127.0.0.1:11434\n"));
    free(got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_parse_trace),
        cmocka_unit_test(test_level_get_set),
        cmocka_unit_test_setup_teardown(test_stderr_format_and_filter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_errno_preserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_open_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_at_utc_midnight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_keep_days, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fatal_exits_1, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
