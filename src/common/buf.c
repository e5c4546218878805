/*
 * buf.c - growable byte buffer with a hard size cap.
 *
 * The buffer owns its bytes and keeps them NUL-terminated; every append
 * checks the cap first in an overflow-safe way and leaves the buffer
 * untouched on failure.
 */
#include "herd/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
buf_cleanup(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for need bytes in total (including the NUL). */
static int
buf_grow(struct buf *b, size_t need)
{
    size_t ncap;
    char *p;

    if (need <= b->cap)
        return 0;
    ncap = b->cap < 64 ? 64 : b->cap;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    /* Never allocate much beyond what the cap allows. */
    if (b->max < SIZE_MAX && ncap > b->max + 1 && need <= b->max + 1)
        ncap = b->max + 1;
    p = realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    int rc;

    if (b->len > b->max || n > b->max - b->len) /* overflow-safe */
        return -E2BIG;
    if (n > SIZE_MAX - 1 - b->len)
        return -E2BIG;
    rc = buf_grow(b, b->len + n + 1);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
    char small[256];
    char *tmp = NULL;
    va_list ap2;
    int n;
    int rc;

    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return buf_append(b, small, (size_t)n);
    if ((size_t)n > b->max || b->len > b->max - (size_t)n)
        return -E2BIG;
    tmp = malloc((size_t)n + 1);
    if (tmp == NULL)
        return -ENOMEM;
    va_copy(ap2, ap);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    rc = buf_append(b, tmp, (size_t)n);
    free(tmp);
    return rc;
}

int
buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *
buf_take(struct buf *b, size_t *lenp)
{
    char *p = b->data;
    size_t len = b->len;

    if (p == NULL) {
        p = strdup("");
        if (p == NULL)
            return NULL;
        len = 0;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    if (lenp != NULL)
        *lenp = len;
    return p;
}

/* Decimal digits of v, with a minus when neg, at the end of tmp[24]. */
static size_t
buf_fmt_dec(char tmp[24], unsigned long long v, int neg)
{
    char *q = tmp + 24;

    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (neg)
        *--q = '-';
    return (size_t)(tmp + 24 - q);
}

int
buf_append_u64(struct buf *b, unsigned long long v)
{
    char tmp[24];
    size_t n = buf_fmt_dec(tmp, v, 0);

    return buf_append(b, tmp + 24 - n, n);
}

int
buf_append_i64(struct buf *b, long long v)
{
    char tmp[24];
    size_t n = buf_fmt_dec(
        tmp, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v,
        v < 0);

    return buf_append(b, tmp + 24 - n, n);
}

int
buf_append_base64(struct buf *b, const void *p, size_t n)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *in = p;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i += 3) {
        size_t m = n - i < 3 ? n - i : 3;
        unsigned a = in[i], c = m > 1 ? in[i + 1] : 0,
                 d = m > 2 ? in[i + 2] : 0;
        char out[4] = {tbl[a >> 2], tbl[((a & 3) << 4) | (c >> 4)],
                       m > 1 ? tbl[((c & 15) << 2) | (d >> 6)] : '=',
                       m > 2 ? tbl[d & 63] : '='};

        rc = buf_append(b, out, 4);
    }
    return rc;
}

int
buf_append_f32_base64(struct buf *b, const double *v, size_t n)
{
    unsigned char chunk[3 * 64]; /* a multiple of 3 and of 4 bytes */
    size_t used = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        float f = (float)v[i];
        uint32_t u;

        memcpy(&u, &f, 4);
        for (int k = 0; k < 4; k++)
            chunk[used++] = (unsigned char)(u >> (8 * k));
        if (used == sizeof(chunk)) {
            rc = buf_append_base64(b, chunk, used);
            used = 0;
        }
    }
    return rc == 0 && used > 0 ? buf_append_base64(b, chunk, used) : rc;
}
