/*
 * clock.c - time sources and the RFC 3339 timestamps of the Ollama API.
 *
 * UTC timestamps are computed with our own civil-calendar arithmetic
 * (Howard Hinnant's civil_from_days), so they do not depend on the range
 * of gmtime() and work far beyond 2038. Local timestamps take the zone
 * offset from localtime_r()'s tm_gmtoff and then reuse the same
 * arithmetic. The *_add variants add a duration the way Go's
 * time.Time.Add does, without an int64 nanosecond overflow, which is how
 * Ollama's "forever" expires_at (now + MaxInt64 ns, ~year 2318) arises.
 */
#include "herd/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct clock_civil {
    int64_t year;
    int month, day, hour, min, sec;
};

uint64_t
clock_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

int64_t
clock_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Splits wall_ns + add_ns into seconds and [0, 1e9) nanoseconds without
 * overflowing: each part is at most ~9.2e9 seconds. */
static void
clock_split(int64_t wall_ns, int64_t add_ns, int64_t *sec, long *nsec)
{
    int64_t s = wall_ns / NS_PER_SEC + add_ns / NS_PER_SEC;
    int64_t ns = wall_ns % NS_PER_SEC + add_ns % NS_PER_SEC;

    while (ns < 0) {
        ns += NS_PER_SEC;
        s--;
    }
    while (ns >= NS_PER_SEC) {
        ns -= NS_PER_SEC;
        s++;
    }
    *sec = s;
    *nsec = (long)ns;
}

/* Seconds since the epoch to a proleptic Gregorian date and time. */
static void
clock_civil_from_secs(int64_t secs, struct clock_civil *c)
{
    int64_t days = secs / 86400;
    int64_t rem = secs % 86400;
    int64_t era, doe, yoe, doy, mp, y;

    if (rem < 0) {
        rem += 86400;
        days--;
    }
    c->hour = (int)(rem / 3600);
    c->min = (int)(rem % 3600 / 60);
    c->sec = (int)(rem % 60);

    days += 719468; /* shift the epoch to 0000-03-01 */
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c->year = c->month <= 2 ? y + 1 : y;
}

/* Writes "YYYY-MM-DDTHH:MM:SS[.fffffffff]" plus zone into out. */
static int
clock_fmt(int64_t secs, long nsec, const char *zone, char *out, size_t n)
{
    struct clock_civil c;
    char frac[24] = "";
    int len;

    clock_civil_from_secs(secs, &c);
    if (c.year < 0 || c.year > 9999)
        return -1;
    if (nsec > 0) {
        size_t fl;

        snprintf(frac, sizeof(frac), ".%09ld", nsec);
        fl = strlen(frac);
        while (frac[fl - 1] == '0')
            frac[--fl] = '\0';
    }
    len = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d%s%s", (int)c.year,
                   c.month, c.day, c.hour, c.min, c.sec, frac, zone);
    if (len < 0 || (size_t)len >= n)
        return -1;
    return len;
}

int
clock_fmt_utc_add(int64_t wall_ns, int64_t add_ns, char *out, size_t n)
{
    int64_t secs;
    long nsec;

    clock_split(wall_ns, add_ns, &secs, &nsec);
    return clock_fmt(secs, nsec, "Z", out, n);
}

int
clock_fmt_utc(int64_t wall_ns, char *out, size_t n)
{
    return clock_fmt_utc_add(wall_ns, 0, out, n);
}

int
clock_fmt_local_add(int64_t wall_ns, int64_t add_ns, char *out, size_t n)
{
    char zone[16];
    int64_t secs;
    long nsec, off = 0, mins;
    time_t t;
    struct tm tm;

    clock_split(wall_ns, add_ns, &secs, &nsec);
    t = (time_t)secs;
    if ((int64_t)t == secs && localtime_r(&t, &tm) != NULL)
        off = tm.tm_gmtoff;
    /* Go's "Z07:00" prints whole minutes and drops seconds of offset. */
    mins = (off < 0 ? -off : off) / 60;
    if (mins == 0) /* Go's RFC 3339 layout writes a zero offset as "Z" */
        snprintf(zone, sizeof(zone), "Z");
    else
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+',
                 (mins / 60) % 100, mins % 60);
    return clock_fmt(secs + off, nsec, zone, out, n);
}

int
clock_fmt_local(int64_t wall_ns, char *out, size_t n)
{
    return clock_fmt_local_add(wall_ns, 0, out, n);
}
