/*
 * parse.h - strict number, boolean and duration parsers.
 *
 * Every parser takes the whole string (no leading/trailing junk), returns
 * 0 or -EINVAL/-ERANGE, and on failure writes a static reason to *why
 * when why is not NULL. They replace atoi()/strtol() and friends.
 */
#ifndef HERD_PARSE_H
#define HERD_PARSE_H

#include <stdbool.h>
#include <stdint.h>

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out,
              const char **why);
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out,
              const char **why);
int parse_double(const char *s, double min, double max, double *out,
                 const char **why);

/* true/false/1/0/yes/no/on/off, any case (pydantic's set). */
int parse_bool(const char *s, bool *out, const char **why);

/*
 * A Go time.ParseDuration string: "300ms", "1.5h", "1h30m", "-1m", "0",
 * units ns, us, µs, ms, s, m, h. A bare number other than "0" is
 * rejected. On failure *why is Go's message without the quoted input:
 * "missing unit in duration", "invalid duration", "unknown unit in
 * duration"; the caller adds `time: <why> "<input>"`. Saturates at
 * +/-INT64_MAX ns instead of overflowing (Go errors on overflow; we
 * report -ERANGE with why = "invalid duration").
 */
int parse_go_duration(const char *s, int64_t *ns, const char **why);

/*
 * A duration for our own flags and env: a Go duration, or a bare number
 * of seconds (fractions allowed), as OLLAMA_KEEP_ALIVE accepts.
 */
int parse_duration_or_secs(const char *s, int64_t *ns, const char **why);

/* A byte size: "512", "64KiB", "8MB", "16GiB", "1.5GB" (KB/MB/GB are
 * decimal, KiB/MiB/GiB binary; B optional). */
int parse_size(const char *s, uint64_t *out, const char **why);

#endif /* HERD_PARSE_H */
