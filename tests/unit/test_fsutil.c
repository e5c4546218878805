/*
 * test_fsutil.c - unit tests for the file-system helpers
 * (src/common/fsutil.c), in a private temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "herd/fsutil.h"

static char dir[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/herd-test-fs-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
path_in(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", dir, rel);
}

static bool
is_dir(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void
test_mkdir_p(void **state)
{
    char p[512];
    FILE *f;

    (void)state;
    path_in(p, sizeof(p), "a/b//c/");
    assert_int_equal(fs_mkdir_p(p, 0755), 0);
    path_in(p, sizeof(p), "a/b/c");
    assert_true(is_dir(p));
    assert_int_equal(fs_mkdir_p(p, 0755), 0); /* exists: fine */
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);

    path_in(p, sizeof(p), "file");
    f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(fs_mkdir_p(p, 0755), -ENOTDIR);
    path_in(p, sizeof(p), "file/sub");
    assert_int_equal(fs_mkdir_p(p, 0755), -ENOTDIR);
    assert_int_equal(fs_mkdir_p("", 0755), -ENOENT);
}

static void
test_mkdir_p_too_long(void **state)
{
    char *p = malloc(5000);

    (void)state;
    assert_non_null(p);
    memset(p, 'a', 4999);
    p[0] = '/';
    p[4999] = '\0';
    assert_int_equal(fs_mkdir_p(p, 0755), -ENAMETOOLONG);
    free(p);
}

static void
test_write_atomic_and_read(void **state)
{
    char p[512], tmp[520];
    char *data = NULL;
    size_t len = 99;
    struct stat st;

    (void)state;
    path_in(p, sizeof(p), "ready");
    assert_int_equal(fs_write_atomic(p, "127.0.0.1:4242\n", 15), 0);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    assert_int_not_equal(stat(tmp, &st), 0); /* no temp file left */
    assert_int_equal(fs_read_file(p, 1024, &data, &len), 0);
    assert_int_equal(len, 15);
    assert_string_equal(data, "127.0.0.1:4242\n");
    free(data);

    /* Replaces the old content completely. */
    assert_int_equal(fs_write_atomic(p, "x", 1), 0);
    assert_int_equal(fs_read_file(p, 1024, &data, &len), 0);
    assert_int_equal(len, 1);
    assert_string_equal(data, "x");
    free(data);

    /* Binary data and the empty file. */
    assert_int_equal(fs_write_atomic(p, "a\0b", 3), 0);
    assert_int_equal(fs_read_file(p, 3, &data, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "a\0b", 4);
    free(data);
    assert_int_equal(fs_write_atomic(p, "", 0), 0);
    assert_int_equal(fs_read_file(p, 0, &data, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);

    path_in(p, sizeof(p), "missing-dir/ready");
    assert_int_equal(fs_write_atomic(p, "x", 1), -ENOENT);
}

static void
test_read_file_limits(void **state)
{
    char p[512];
    char *data = (char *)&data, *big;
    size_t len = 0;

    (void)state;
    big = malloc(10000);
    assert_non_null(big);
    memset(big, 'z', 10000);
    path_in(p, sizeof(p), "big");
    assert_int_equal(fs_write_atomic(p, big, 10000), 0);
    free(big);
    assert_int_equal(fs_read_file(p, 9999, &data, &len), -E2BIG);
    assert_null(data);
    assert_int_equal(fs_read_file(p, 10000, &data, &len), 0);
    assert_int_equal(len, 10000);
    assert_int_equal(data[9999], 'z');
    assert_int_equal(data[10000], '\0');
    free(data);
    assert_int_equal(fs_read_file(p, SIZE_MAX, &data, NULL), 0);
    free(data);

    path_in(p, sizeof(p), "nope");
    assert_int_equal(fs_read_file(p, 10, &data, &len), -ENOENT);
    assert_null(data);
    assert_int_equal(fs_read_file(dir, 10, &data, &len), -EISDIR);
    assert_null(data);
}

static void
test_expand_home(void **state)
{
    char out[64];
    char *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    (void)state;
    setenv("HOME", "/home/herd", 1);
    assert_int_equal(fs_expand_home("~/.fleet-manager/env", out, sizeof(out)),
                     0);
    assert_string_equal(out, "/home/herd/.fleet-manager/env");
    assert_int_equal(fs_expand_home("~", out, sizeof(out)), 0);
    assert_string_equal(out, "/home/herd");
    assert_int_equal(fs_expand_home("/etc/x", out, sizeof(out)), 0);
    assert_string_equal(out, "/etc/x");
    assert_int_equal(fs_expand_home("~user/x", out, sizeof(out)), 0);
    assert_string_equal(out, "~user/x"); /* only "~/" is expanded */
    assert_int_equal(fs_expand_home("rel/~/x", out, sizeof(out)), 0);
    assert_string_equal(out, "rel/~/x");
    assert_int_equal(fs_expand_home("~/x", out, 13), 0);
    assert_string_equal(out, "/home/herd/x");
    assert_int_equal(fs_expand_home("~/x", out, 12), -ENAMETOOLONG);
    assert_int_equal(fs_expand_home("abc", out, 3), -ENAMETOOLONG);
    if (old != NULL) {
        setenv("HOME", old, 1);
        free(old);
    } else {
        unsetenv("HOME");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mkdir_p, setup, teardown),
        cmocka_unit_test(test_mkdir_p_too_long),
        cmocka_unit_test_setup_teardown(test_write_atomic_and_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_file_limits, setup, teardown),
        cmocka_unit_test(test_expand_home),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
