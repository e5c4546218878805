/*
 * fsutil.h - small file-system helpers.
 */
#ifndef HERD_FSUTIL_H
#define HERD_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p; 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);

/* Writes path.tmp then renames it over path, so a reader never sees a
 * partial file (ready files, state files). 0 or -errno. */
int fs_write_atomic(const char *path, const void *data, size_t len);

/* "~/x" -> "$HOME/x" into out; other paths are copied. 0 or -ENAMETOOLONG. */
int fs_expand_home(const char *path, char *out, size_t n);

/* Reads a whole file, at most max bytes, NUL-terminated; the caller
 * frees *out. 0, -errno, or -E2BIG when larger than max. */
int fs_read_file(const char *path, size_t max, char **out, size_t *len);

#endif /* HERD_FSUTIL_H */
