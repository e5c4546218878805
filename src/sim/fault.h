/*
 * fault.h - fault injection rules for herd-sim.
 *
 * A rule says what goes wrong (kind), for which model (or all), and for
 * how many of the next inference requests (or all of them). Rules come
 * from --fault SPEC at start-up and from POST /_sim/fault at run time.
 * Pure bookkeeping: the API layer asks fault_take() once per inference
 * request and acts on the answer.
 */
#ifndef SIM_FAULT_H
#define SIM_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herd/buf.h"
#include "herd/json.h"

enum fault_kind {
    FAULT_NONE,
    FAULT_REFUSE,      /* stop listening for duration_ns */
    FAULT_HTTP500,     /* 500 {"error":"simulated failure"} */
    FAULT_BUSY503,     /* 503 with Ollama's server-busy body */
    FAULT_HANG,        /* never answer (or for duration_ns) */
    FAULT_DIE_AFTER,   /* abort the connection after N tokens */
    FAULT_ERROR_AFTER, /* in-band {"error":...} after N tokens */
    FAULT_SLOW,        /* tokens factor x slower */
    FAULT_KIND_COUNT
};

struct fault {
    enum fault_kind kind;
    int64_t count;       /* requests left; -1 = unlimited */
    int64_t after;       /* tokens, for DIE_AFTER / ERROR_AFTER */
    int64_t duration_ns; /* REFUSE / HANG; 0 = forever for HANG */
    double factor;       /* SLOW */
    char model[128];     /* "" = every model */
};

#define FAULT_MAX 16

struct fault_set {
    struct fault rules[FAULT_MAX];
    size_t n;
};

const char *fault_kind_name(enum fault_kind k);

/* "500", "503", "refuse:2s", "hang", "hang:5s", "die-after:5",
 * "error-after:3", "slow:10x", each optionally followed by ",count=N"
 * and ",model=NAME". 0 or -EINVAL with a reason in err. */
int fault_parse_spec(const char *spec, struct fault *out, char *err,
                     size_t errlen);
/* {"kind":"die_after","after_tokens":5,"count":1,"model":"x",
 *  "duration_ms":2000,"factor":10}; kind "none" clears (returns 1). */
int fault_parse_json(const cJSON *obj, struct fault *out, char *err,
                     size_t errlen);

/* Adds a rule (REFUSE is not stored: the caller acts on it at once).
 * -ENOSPC when FAULT_MAX rules are active. */
int fault_add(struct fault_set *fs, const struct fault *f);
void fault_clear(struct fault_set *fs);

/* The first rule matching model (a normalised name), with its count
 * consumed; a rule whose count reaches 0 is removed. Returns false when
 * no rule applies. */
bool fault_take(struct fault_set *fs, const char *model, struct fault *out);

/* Appends the active rules as a JSON array. */
int fault_dump_json(const struct fault_set *fs, struct buf *b) HERD_MUST_USE;

#endif /* SIM_FAULT_H */
