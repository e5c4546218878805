/*
 * fsutil.c - small file-system helpers: mkdir -p, atomic writes through a
 * temporary file and rename(2), "~/" expansion and capped whole-file
 * reads. Nothing here keeps state; every call returns 0 or -errno.
 */
#include "herd/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_PATH_MAX 4096

/* mkdir that treats an existing directory as success. */
static int
fs_mkdir_one(const char *path, mode_t mode)
{
    struct stat st;

    if (mkdir(path, mode) == 0)
        return 0;
    if (errno == EEXIST) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        return -ENOTDIR;
    }
    return -errno;
}

int
fs_mkdir_p(const char *path, mode_t mode)
{
    char tmp[FS_PATH_MAX];
    size_t len;
    char *p;
    int rc;

    len = strlen(path);
    if (len == 0)
        return -ENOENT;
    if (len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    while (len > 1 && tmp[len - 1] == '/')
        tmp[--len] = '\0';
    for (p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        rc = fs_mkdir_one(tmp, mode);
        *p = '/';
        if (rc != 0)
            return rc;
    }
    return fs_mkdir_one(tmp, mode);
}

/* Writes all of data to fd, retrying short writes and EINTR. */
static int
fs_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int
fs_write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[FS_PATH_MAX];
    int fd = -1;
    int rc;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    rc = fs_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int
fs_expand_home(const char *path, char *out, size_t n)
{
    const char *home;
    int w;

    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
        home = getenv("HOME");
        if (home == NULL)
            home = "";
        w = snprintf(out, n, "%s%s", home, path + 1);
    } else {
        w = snprintf(out, n, "%s", path);
    }
    if (w < 0 || (size_t)w >= n)
        return -ENAMETOOLONG;
    return 0;
}

int
fs_read_file(const char *path, size_t max, char **out, size_t *len)
{
    char *data = NULL;
    size_t used = 0, cap = 0;
    int fd;
    int rc = 0;

    *out = NULL;
    if (len != NULL)
        *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t r;

        if (cap - used < 2) {
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            char *p;

            if (ncap > max + 2 && max < SIZE_MAX - 2)
                ncap = max + 2; /* one byte to detect "too big", one NUL */
            p = realloc(data, ncap);
            if (p == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            data = p;
            cap = ncap;
        }
        r = read(fd, data + used, cap - used - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > max) {
            rc = -E2BIG;
            goto out;
        }
    }
    data[used] = '\0';
    *out = data;
    data = NULL;
    if (len != NULL)
        *len = used;
out:
    close(fd);
    free(data);
    return rc;
}
