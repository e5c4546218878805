/*
 * clock.h - time sources and the timestamp formats of the Ollama API.
 */
#ifndef HERD_CLOCK_H
#define HERD_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define NS_PER_SEC 1000000000LL
#define NS_PER_MS  1000000LL

/* Monotonic nanoseconds (CLOCK_MONOTONIC); for durations. */
uint64_t clock_mono_ns(void);

/* Wall-clock nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t clock_wall_ns(void);

/*
 * RFC 3339 in UTC with nanoseconds, trailing zeros of the fraction
 * trimmed and no fraction when it is zero, e.g.
 * "2025-10-26T17:21:21.196249Z" (Ollama's created_at). Works for any
 * year up to 9999. Returns the length written, or -1 if n is too small
 * (36 bytes always suffice).
 */
int clock_fmt_utc(int64_t wall_ns, char *out, size_t n);

/*
 * RFC 3339 in local time with the numeric offset and nanoseconds, e.g.
 * "2025-10-26T10:21:21.196249-07:00" (Ollama's expires_at/modified_at;
 * a zero offset is written "Z", as Go's RFC 3339 layout does). Same return as
 * clock_fmt_utc.
 */
int clock_fmt_local(int64_t wall_ns, char *out, size_t n);

/*
 * wall_ns + add_ns, formatted as above. The sum is computed in seconds and
 * nanoseconds, as Go's time.Time.Add does, so it never overflows: Ollama's
 * "forever" expires_at is time.Now().Add(math.MaxInt64), around year 2318,
 * which does not fit in int64 nanoseconds (those end in 2262). Use
 * clock_fmt_local_add(clock_wall_ns(), INT64_MAX, ...) for it.
 */
int clock_fmt_utc_add(int64_t wall_ns, int64_t add_ns, char *out, size_t n);
int clock_fmt_local_add(int64_t wall_ns, int64_t add_ns, char *out, size_t n);

#endif /* HERD_CLOCK_H */
