/*
 * buf.h - growable byte buffer with a hard size cap.
 *
 * A struct buf is usually embedded in a larger object. The bytes it holds
 * are owned by the buf; buf_take() hands them to the caller. Every buffer
 * has a maximum: appends past it fail with -E2BIG and leave the buffer
 * unchanged, so a peer can never make us allocate without a bound.
 */
#ifndef HERD_BUF_H
#define HERD_BUF_H

#include <stdarg.h>
#include <stddef.h>

#define HERD_MUST_USE     __attribute__((warn_unused_result))
#define HERD_PRINTF(a, b) __attribute__((format(printf, a, b)))

struct buf {
    char *data; /* owned; NUL-terminated whenever non-NULL */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* appends past this fail with -E2BIG */
};

/* Cannot fail. max is the largest len this buffer may ever reach. */
void buf_init(struct buf *b, size_t max);

/* Frees the contents, not b itself. Safe on an initialised, empty buf. */
void buf_cleanup(struct buf *b);

/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* 0, or -ENOMEM / -E2BIG; b is unchanged on failure. */
int buf_append(struct buf *b, const void *p, size_t n) HERD_MUST_USE;
int buf_appends(struct buf *b, const char *s) HERD_MUST_USE;
int buf_appendf(struct buf *b, const char *fmt, ...)
    HERD_PRINTF(2, 3) HERD_MUST_USE;
int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
    HERD_PRINTF(2, 0) HERD_MUST_USE;

/* Drops the first n bytes (n > len drops everything). */
void buf_consume(struct buf *b, size_t n);
/* Appends v in decimal, as "%llu" / "%lld" would, without printf (for
 * numbers written once a request or a token). */
int buf_append_u64(struct buf *b, unsigned long long v) HERD_MUST_USE;
int buf_append_i64(struct buf *b, long long v) HERD_MUST_USE;
/* Appends p[0..n) in base64 (RFC 4648, with padding). */
int buf_append_base64(struct buf *b, const void *p, size_t n) HERD_MUST_USE;
/* Appends float values as little-endian IEEE 754 binary32, in base64: the
 * OpenAI embeddings' encoding_format "base64". */
int buf_append_f32_base64(struct buf *b, const double *v,
                          size_t n) HERD_MUST_USE;

/* Moves the bytes out: the caller frees the result; b is reset. Returns a
 * freshly allocated "" when b was empty. NULL only on -ENOMEM. */
char *buf_take(struct buf *b, size_t *lenp);

#endif /* HERD_BUF_H */
