/*
 * log.h - the one logging module.
 *
 * Lines go to stderr as "<ts> <proc>[<pid>] <LEVEL> <msg>", and, once
 * log_open_jsonl() was called, also to a JSONL file
 * ({"ts","level","logger","msg"} per line, as ollama-herd writes
 * ~/.fleet-manager/logs/herd.jsonl), rotated at UTC midnight to
 * <path>.YYYY-MM-DD with `keep_days` files kept. errno is preserved.
 * Only the loop thread and the trace writer thread log; log_msg is
 * thread-safe (one mutex around the write).
 */
#ifndef HERD_LOG_H
#define HERD_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include "herd/buf.h"

/* Not LOG_ERR etc.: those names belong to <syslog.h>. */
enum log_level { LL_ERROR, LL_WARN, LL_INFO, LL_DEBUG };

/* Trace bits for log_trace(), enabled with --trace http,proxy,... */
#define TRACE_HTTP     0x0001u
#define TRACE_PROXY    0x0002u
#define TRACE_UPSTREAM 0x0004u
#define TRACE_MDNS     0x0008u
#define TRACE_STORE    0x0010u
#define TRACE_SCHED    0x0020u

extern unsigned log_tracing;

void log_init(const char *procname, enum log_level max);
void log_set_level(enum log_level max);
enum log_level log_get_level(void);

/* "error", "warn"/"warning", "info", "debug" (any case) -> 0, else -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

/* "http,proxy" -> mask; -EINVAL on an unknown name. */
int log_parse_trace(const char *s, unsigned *out);

/* Opens (appends) the JSONL file, creating its directory. 0 or -errno. */
int log_open_jsonl(const char *path, int keep_days);
void log_close(void);

void log_msg(enum log_level lvl, const char *fmt, ...) HERD_PRINTF(2, 3);
/* A request-scoped line: the JSONL object gets "request_id", the stderr
 * line its first 8 characters in brackets. */
void log_req(enum log_level lvl, const char *request_id, const char *fmt, ...)
    HERD_PRINTF(3, 4);
/* Like log_msg(LL_ERROR, ...) with ": <strerror(errno)>" appended. */
void log_syserr(const char *fmt, ...) HERD_PRINTF(1, 2);
_Noreturn void fatal(const char *fmt, ...) HERD_PRINTF(1, 2);

/*
 * Test-only: replaces the wall clock (nanoseconds since the epoch) used
 * for timestamps and rotation; NULL restores CLOCK_REALTIME. Lets the
 * unit tests cross a UTC midnight without waiting for one.
 */
void log_set_clock_for_test(int64_t (*now_ns)(void));

#define log_error(...) log_msg(LL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LL_DEBUG, __VA_ARGS__)
#define log_trace(mask, ...)                                                   \
    do {                                                                       \
        if (log_tracing & (mask))                                              \
            log_msg(LL_DEBUG, __VA_ARGS__);                                    \
    } while (0)

#endif /* HERD_LOG_H */
