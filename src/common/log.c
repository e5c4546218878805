/*
 * log.c - the one logging module.
 *
 * Every line goes to stderr as "<ts> <proc>[<pid>] <LEVEL> <msg>" and,
 * once log_open_jsonl() was called, to a JSONL file in the format of
 * ollama-herd's logging_config.py: {"ts","level","logger","msg"} per
 * line. The file is rotated at UTC midnight like Python's
 * TimedRotatingFileHandler(when="midnight", utc=True): the old file is
 * renamed to <path>.YYYY-MM-DD (the day it covers) and only the newest
 * keep_days rotated files are kept. This module owns the open FILE and
 * the process name; one mutex serialises writers. errno is preserved
 * across every public call that logs.
 */
#include "herd/log.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "herd/fsutil.h"

#define LOG_MSG_MAX  8192 /* longer messages are truncated */
#define LOG_LINE_MAX (LOG_MSG_MAX * 6 + 512)
#define LOG_PATH_MAX 4096
#define LOG_DAY_SECS 86400LL
#define LOG_NS_PER_S 1000000000LL
#define LOG_PROC_MAX 64

unsigned log_tracing;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static enum log_level log_max = LL_INFO;
static char log_proc[LOG_PROC_MAX] = "herd";
static int64_t (*log_now_hook)(void);

/* JSONL state, guarded by log_mu. */
static FILE *log_file; /* owned */
static char log_path[LOG_PATH_MAX];
static int log_keep_days;
static int64_t log_rollover_at; /* UTC seconds of the next rotation */

static const char *const log_level_names[] = {"ERROR", "WARNING", "INFO",
                                              "DEBUG"};

static const struct {
    const char *name;
    unsigned bit;
} log_trace_names[] = {
    {"http", TRACE_HTTP}, {"proxy", TRACE_PROXY}, {"upstream", TRACE_UPSTREAM},
    {"mdns", TRACE_MDNS}, {"store", TRACE_STORE}, {"sched", TRACE_SCHED},
};

void
log_set_clock_for_test(int64_t (*now_ns)(void))
{
    pthread_mutex_lock(&log_mu);
    log_now_hook = now_ns;
    pthread_mutex_unlock(&log_mu);
}

static int64_t
log_now_ns(void)
{
    struct timespec ts;

    if (log_now_hook != NULL)
        return log_now_hook();
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * LOG_NS_PER_S + ts.tv_nsec;
}

void
log_init(const char *procname, enum log_level max)
{
    int saved = errno;

    pthread_mutex_lock(&log_mu);
    if (procname != NULL)
        snprintf(log_proc, sizeof(log_proc), "%s", procname);
    log_max = max;
    pthread_mutex_unlock(&log_mu);
    errno = saved;
}

void
log_set_level(enum log_level max)
{
    pthread_mutex_lock(&log_mu);
    log_max = max;
    pthread_mutex_unlock(&log_mu);
}

enum log_level
log_get_level(void)
{
    enum log_level l;

    pthread_mutex_lock(&log_mu);
    l = log_max;
    pthread_mutex_unlock(&log_mu);
    return l;
}

int
log_parse_level(const char *s, enum log_level *out)
{
    if (s == NULL)
        return -EINVAL;
    if (strcasecmp(s, "error") == 0)
        *out = LL_ERROR;
    else if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
        *out = LL_WARN;
    else if (strcasecmp(s, "info") == 0)
        *out = LL_INFO;
    else if (strcasecmp(s, "debug") == 0)
        *out = LL_DEBUG;
    else
        return -EINVAL;
    return 0;
}

/* Looks up one trace name of length n; 0 when unknown. */
static unsigned
log_trace_bit(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(log_trace_names) / sizeof(log_trace_names[0]); i++) {
        if (strlen(log_trace_names[i].name) == n &&
            strncasecmp(log_trace_names[i].name, s, n) == 0)
            return log_trace_names[i].bit;
    }
    return 0;
}

/* Comma-separated names; spaces around names and empty items are ignored. */
int
log_parse_trace(const char *s, unsigned *out)
{
    unsigned mask = 0;
    const char *p = s;

    if (s == NULL)
        return -EINVAL;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        const char *a = p;
        const char *b = end != NULL ? end : p + strlen(p);

        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (b > a) {
            unsigned bit = log_trace_bit(a, (size_t)(b - a));

            if (bit == 0)
                return -EINVAL;
            mask |= bit;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    *out = mask;
    return 0;
}

/* "2026-03-08T01:24:28.685123+00:00": UTC, microseconds, as Python's
 * datetime.isoformat() writes it (always six digits here). */
static void
log_fmt_ts(int64_t now_ns, char *out, size_t n)
{
    time_t secs = (time_t)(now_ns / LOG_NS_PER_S);
    long usec = (long)((now_ns % LOG_NS_PER_S) / 1000);
    struct tm tm;

    if (usec < 0) {
        usec += 1000000;
        secs--;
    }
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, n, "0000-00-00T00:00:00.000000+00:00");
        return;
    }
    /* The moduli only bound the fields for the compiler's truncation
     * check; real values are already in range. */
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, usec % 1000000);
}

/* Length of a valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t
log_utf8_len(const unsigned char *p, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (p[0] < 0xC2 || p[0] > 0xF4)
        return 0;
    len = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    if (len > n)
        return 0;
    cp = p[0] & (0x7F >> len);
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Appends s as a JSON string body (no quotes) to out[*pos..n). Invalid
 * UTF-8 becomes \ufffd so the line stays valid JSON. */
static void
log_json_escape(const char *s, char *out, size_t n, size_t *pos)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    size_t i = 0;

    while (i < len && *pos + 8 < n) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char tmp[8];

        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80) {
            size_t ul = log_utf8_len(p + i, len - i);

            if (ul == 0) {
                esc = "\\ufffd";
            } else {
                memcpy(out + *pos, p + i, ul);
                *pos += ul;
                i += ul;
                continue;
            }
        }
        if (esc != NULL) {
            size_t el = strlen(esc);

            memcpy(out + *pos, esc, el);
            *pos += el;
        } else {
            out[(*pos)++] = (char)c;
        }
        i++;
    }
    out[*pos] = '\0';
}

/* The next UTC midnight strictly after t (seconds). */
static int64_t
log_next_midnight(int64_t t)
{
    int64_t day = t / LOG_DAY_SECS;

    if (t < 0 && t % LOG_DAY_SECS != 0)
        day--;
    return (day + 1) * LOG_DAY_SECS;
}

static int
log_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when name is "<base>.YYYY-MM-DD". */
static int
log_is_rotated(const char *name, const char *base)
{
    size_t bl = strlen(base);
    const char *d;
    int i;

    if (strncmp(name, base, bl) != 0 || name[bl] != '.')
        return 0;
    d = name + bl + 1;
    if (strlen(d) != 10)
        return 0;
    for (i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (d[i] != '-')
                return 0;
        } else if (d[i] < '0' || d[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Deletes rotated files beyond the newest log_keep_days. Called locked. */
static void
log_prune(void)
{
    char dir[LOG_PATH_MAX], full[LOG_PATH_MAX * 2];
    const char *slash = strrchr(log_path, '/');
    const char *base = slash != NULL ? slash + 1 : log_path;
    char **names = NULL;
    size_t count = 0, cap = 0, i;
    struct dirent *de;
    DIR *dh;

    if (log_keep_days <= 0)
        return;
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == log_path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - log_path), log_path);
    dh = opendir(dir);
    if (dh == NULL)
        return;
    while ((de = readdir(dh)) != NULL) {
        char *copy;

        if (!log_is_rotated(de->d_name, base))
            continue;
        if (count == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            char **nn = realloc(names, ncap * sizeof(*names));

            if (nn == NULL)
                break;
            names = nn;
            cap = ncap;
        }
        copy = strdup(de->d_name);
        if (copy == NULL)
            break;
        names[count++] = copy;
    }
    closedir(dh);
    if (count > 0)
        qsort(names, count, sizeof(*names), log_cmp_str);
    for (i = 0; i < count; i++) {
        if (count - i > (size_t)log_keep_days) {
            snprintf(full, sizeof(full), "%s/%s", dir, names[i]);
            unlink(full);
        }
        free(names[i]);
    }
    free(names);
}

/* Rotates the JSONL file if now_s passed the rollover time. Called locked. */
static void
log_maybe_rotate(int64_t now_s)
{
    char dst[LOG_PATH_MAX + 64];
    time_t day_start;
    struct tm tm;
    struct stat st;

    if (log_file == NULL || now_s < log_rollover_at)
        return;
    day_start = (time_t)(log_rollover_at - LOG_DAY_SECS);
    gmtime_r(&day_start, &tm);
    snprintf(dst, sizeof(dst), "%s.%04d-%02d-%02d", log_path, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday);
    fclose(log_file);
    log_file = NULL;
    /* Another process sharing the file (a co-located router and node)
     * may have rotated it already: then just reopen the new file. */
    if (stat(dst, &st) != 0)
        rename(log_path, dst);
    log_file = fopen(log_path, "a");
    log_rollover_at = log_next_midnight(now_s);
    log_prune();
}

int
log_open_jsonl(const char *path, int keep_days)
{
    char dir[LOG_PATH_MAX];
    const char *slash;
    struct stat st;
    int64_t start;
    FILE *f;
    int saved = errno;
    int rc = 0;

    if (path == NULL || strlen(path) >= sizeof(log_path) - 16) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    slash = strrchr(path, '/');
    if (slash != NULL && slash != path) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        rc = fs_mkdir_p(dir, 0755);
        if (rc != 0)
            goto out;
    }
    f = fopen(path, "a");
    if (f == NULL) {
        rc = -errno;
        goto out;
    }
    pthread_mutex_lock(&log_mu);
    if (log_file != NULL)
        fclose(log_file);
    log_file = f;
    snprintf(log_path, sizeof(log_path), "%s", path);
    log_keep_days = keep_days;
    /* As Python does: an existing file rotates at the midnight after its
     * last modification, so a file left from yesterday rotates now. */
    start = log_now_ns() / LOG_NS_PER_S;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 &&
        (int64_t)st.st_mtime < start)
        start = (int64_t)st.st_mtime;
    log_rollover_at = log_next_midnight(start);
    pthread_mutex_unlock(&log_mu);
out:
    errno = saved;
    return rc;
}

void
log_close(void)
{
    int saved = errno;

    pthread_mutex_lock(&log_mu);
    if (log_file != NULL)
        fclose(log_file);
    log_file = NULL;
    log_path[0] = '\0';
    pthread_mutex_unlock(&log_mu);
    errno = saved;
}

/* Formats and writes one line to stderr and the JSONL file. */
static void
log_emit(enum log_level lvl, const char *rid, const char *msg)
{
    static char line[LOG_LINE_MAX]; /* guarded by log_mu */
    char ts[48];
    size_t pos;
    int64_t now;
    int n;

    if ((int)lvl < 0 || lvl > LL_DEBUG)
        lvl = LL_ERROR;
    pthread_mutex_lock(&log_mu);
    now = log_now_ns();
    log_fmt_ts(now, ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "%s %s[%ld] %s %s%.8s%s%s\n", ts, log_proc,
                 (long)getpid(), log_level_names[lvl], rid ? "[" : "",
                 rid ? rid : "", rid ? "] " : "", msg);
    if (n > 0) {
        pos = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        fwrite(line, 1, pos, stderr);
    }
    if (log_file != NULL) {
        int64_t secs = now / LOG_NS_PER_S;

        log_maybe_rotate(now < 0 && now % LOG_NS_PER_S ? secs - 1 : secs);
    }
    if (log_file != NULL) {
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"logger\":\"", ts,
                     log_level_names[lvl]);
        pos = (size_t)n;
        log_json_escape(log_proc, line, sizeof(line) - 16, &pos);
        memcpy(line + pos, "\",\"msg\":\"", 9);
        pos += 9;
        log_json_escape(msg, line, sizeof(line) - 80, &pos);
        if (rid != NULL) {
            memcpy(line + pos, "\",\"request_id\":\"", 16);
            pos += 16;
            log_json_escape(rid, line, sizeof(line) - 8, &pos);
        }
        memcpy(line + pos, "\"}\n", 3);
        pos += 3;
        fwrite(line, 1, pos, log_file);
        fflush(log_file);
    }
    pthread_mutex_unlock(&log_mu);
}

static void log_vmsg(enum log_level lvl, const char *rid, const char *suffix,
                     const char *fmt, va_list ap) HERD_PRINTF(4, 0);

static void
log_vmsg(enum log_level lvl, const char *rid, const char *suffix,
         const char *fmt, va_list ap)
{
    char msg[LOG_MSG_MAX];
    int n;

    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        snprintf(msg, sizeof(msg), "(bad log format: %s)", fmt);
    if (suffix != NULL) {
        size_t len = strlen(msg);

        snprintf(msg + len, sizeof(msg) - len, ": %s", suffix);
    }
    log_emit(lvl, rid, msg);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    if (lvl > log_get_level()) {
        errno = saved;
        return;
    }
    va_start(ap, fmt);
    log_vmsg(lvl, NULL, NULL, fmt, ap);
    va_end(ap);
    errno = saved;
}

void
log_req(enum log_level lvl, const char *request_id, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    if (lvl > log_get_level()) {
        errno = saved;
        return;
    }
    va_start(ap, fmt);
    log_vmsg(lvl, request_id, NULL, fmt, ap);
    va_end(ap);
    errno = saved;
}

void
log_syserr(const char *fmt, ...)
{
    int saved = errno;
    char ebuf[256];
    va_list ap;

    snprintf(ebuf, sizeof(ebuf), "%s", strerror(saved));
    va_start(ap, fmt);
    log_vmsg(LL_ERROR, NULL, ebuf, fmt, ap);
    va_end(ap);
    errno = saved;
}

_Noreturn void
fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LL_ERROR, NULL, NULL, fmt, ap);
    va_end(ap);
    log_close();
    exit(1);
}
