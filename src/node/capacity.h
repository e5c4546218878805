/*
 * capacity.h - the adaptive capacity learner of herd-node (ollama-herd
 * §3): how much of this machine the fleet may use right now, learned
 * from 168 hour-of-week slots of CPU and memory history.
 *
 * Pure: time is always an argument (Unix seconds) and so is the
 * hour-of-week slot (capacity_slot_index() turns a local struct tm into
 * one), so tests replay weeks in microseconds. Only capacity_save() and
 * capacity_load() touch the disk, and only capacity_slot_of_time() reads
 * the time zone.
 *
 * Deliberate differences from ollama-herd (docs/internals/capacity.md):
 *  - During the 7-day bootstrap the node stays routable: mode "learning",
 *    availability 0.5, ceiling min(32 GB, 25 % of RAM) (what a learned
 *    score of 0.5 maps to), instead of mode "bootstrap" with ceiling 0,
 *    which takes the node out of the fleet for a week.
 *  - A slot keeps per-week buckets (count and sums) rather than every
 *    raw observation: bounded memory (about 65 KB) and a state file of about
 *    100 KB instead of tens of MB after 30 days at one sample per 5 s.
 *  - The CPU trend uses the collector's CPU figure, not a second
 *    psutil.cpu_percent() call made microseconds after the first.
 *  - The state file is <data_dir>/herd-capacity-<node_id>.json; the
 *    Python agent's capacity-learner-<node_id>.json is imported once
 *    when ours does not exist yet.
 *
 * Scorer contract: a node is routable unless its mode is "paused" or
 * "bootstrap" or its availability_score is below 0.2 (ollama-herd's
 * rule, unchanged); "learning" is therefore routable, by both our
 * coordinator and a Python one, and its ceiling_gb caps memory fit.
 */
#ifndef NODE_CAPACITY_H
#define NODE_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "herd/buf.h"

#define CAPACITY_SLOTS          168   /* 7 days x 24 hours, Monday 00:00 = 0 */
#define CAPACITY_SLOT_BUCKETS   8     /* >= 5 weeks of 30 days, plus slack */
#define CAPACITY_BUCKET_SPAN_S  86400 /* one bucket spans at most a day */
#define CAPACITY_HALF_LIFE_DAYS 15.0
#define CAPACITY_RETENTION_S    (30 * 86400)
#define CAPACITY_BOOTSTRAP_DAYS 7
#define CAPACITY_MIN_SAMPLES    5 /* slot samples for full confidence */
#define CAPACITY_HIGH_CPU_PCT   85.0
#define CAPACITY_HIGH_CPU_S     120
#define CAPACITY_TREND_WINDOW   25 /* 120 s of 5 s heartbeats, + 1 */
#define CAPACITY_TREND_RECENT_S 300
#define CAPACITY_SAVE_EVERY_S   300
#define CAPACITY_STATE_MAX      (16 * 1024 * 1024) /* bytes read at most */

/* The bootstrap fix: what a node reports while it is still learning. */
#define CAPACITY_LEARNING_SCORE 0.5
#define CAPACITY_ROUTABLE_MIN   0.2 /* the scorer's elimination threshold */

/*
 * Observations of one slot that lie within a day of each other: in
 * practice one bucket per week (a slot is one hour of the week). Decay
 * weights a bucket by its mean timestamp; within an hour the weight
 * varies by under 0.2 %, so this matches per-observation weighting.
 */
struct capacity_bucket {
    int64_t first_ts; /* earliest observation */
    int64_t last_ts;  /* latest observation */
    uint32_t n;       /* observations, >= 1 */
    double age_sum;   /* sum of (ts - first_ts), for the mean timestamp */
    double cpu_sum;   /* sum of CPU %, each clamped to 0..100 */
    double mem_sum;   /* sum of memory used % */
};

struct capacity_slot {
    uint32_t nb; /* buckets in use, unordered */
    struct capacity_bucket b[CAPACITY_SLOT_BUCKETS];
};

/* Records one observation. With every bucket in use, the two oldest
 * are merged first, so no sample is ever lost here. */
void capacity_slot_add(struct capacity_slot *s, int64_t ts, double cpu_pct,
                       double mem_pct);
uint64_t capacity_slot_samples(const struct capacity_slot *s);
/* Averages weighted by exp(-ln2 * age_days / 15); false (and 0s) when
 * the slot is empty. */
bool capacity_slot_avg(const struct capacity_slot *s, int64_t now,
                       double *cpu_pct, double *mem_pct);
/* Drops the buckets whose latest observation is before cutoff; returns
 * the number of samples dropped. */
uint64_t capacity_slot_prune(struct capacity_slot *s, int64_t cutoff);

/* tm_wday/tm_hour of a local time -> 0..167 with Monday 00:00 = 0
 * (Monday 10:00 -> 10, Sunday 23:00 -> 167); -1 when out of range. */
int capacity_slot_index(const struct tm *local);
/* The slot of Unix time t in the process's local time zone. */
int capacity_slot_of_time(int64_t t);

enum capacity_mode {
    CAPACITY_MODE_FULL,
    CAPACITY_MODE_LEARNED_HIGH,
    CAPACITY_MODE_LEARNED_MEDIUM,
    CAPACITY_MODE_LEARNED_LOW,
    CAPACITY_MODE_PAUSED,
    CAPACITY_MODE_BOOTSTRAP, /* ollama-herd's; never produced by us */
    CAPACITY_MODE_LEARNING,  /* our bootstrap: routable, conservative */
    CAPACITY_MODE_COUNT
};

/* "full", "learned_high", ..., "bootstrap", "learning". */
const char *capacity_mode_name(enum capacity_mode m);

/* §3.4: < 0.2 paused/0, < 0.4 learned_low/min(16, total/8), < 0.6
 * learned_medium/min(32, total/4), < 0.8 learned_high/min(64, total/2),
 * else full/0.8 total. Returns the ceiling in GB; *mode may be NULL. */
double capacity_ceiling_for(double score, double total_gb,
                            enum capacity_mode *mode);

/*
 * §3.3: hist = 1 - hist_cpu/100, current = 1 - 0.7 cpu/100 - 0.3 mem/100,
 * trend = clamp(0.5 - 0.5 cpu_trend, 0, 1); with conf = min(1,
 * slot_samples/5), score = clamp(0.4 conf hist + (0.4 + 0.4 (1 - conf))
 * current + 0.2 trend, 0, 1).
 */
double capacity_availability(double hist_cpu, uint64_t slot_samples,
                             double cpu_pct, double mem_pct, double cpu_trend);

/* What one heartbeat reports in its "capacity" object. */
struct capacity_decision {
    enum capacity_mode mode;
    double ceiling_gb;
    double availability_score;
    const char *reason; /* static string */
    bool override_active;
    double learning_confidence;
    int days_observed;
};

/* The scorer contract above, for logs and tests. */
bool capacity_routable(const struct capacity_decision *d);

/* Appends {"mode","ceiling_gb","availability_score","reason",
 * "override_active","learning_confidence","days_observed"} (ollama-herd's
 * keys; numbers rounded to 2 decimals). 0, -ENOMEM or -E2BIG. */
int capacity_decision_json(const struct capacity_decision *d,
                           struct buf *b) HERD_MUST_USE;

enum capacity_override {
    CAPACITY_OVERRIDE_NONE,
    CAPACITY_OVERRIDE_FULL,
    CAPACITY_OVERRIDE_PAUSED,
};

/* "full", "paused"; "none"/"auto"/"" clear. 0 or -EINVAL. */
int capacity_override_parse(const char *s, enum capacity_override *out);

/* Meeting detection hook (ollama-herd has a macOS detector only; we have
 * none yet): returns true while the user is in a call. */
typedef bool (*capacity_meeting_cb)(void *ctx);

struct capacity_learner;

/* A fresh learner for a machine with total_gb of memory. NULL when
 * total_gb is not a positive number, or out of memory. */
struct capacity_learner *capacity_new(double total_gb);
void capacity_free(struct capacity_learner *l);

/* NULL cb removes the hook; ctx is borrowed. */
void capacity_set_meeting_hook(struct capacity_learner *l,
                               capacity_meeting_cb cb, void *ctx);

/*
 * Records (cpu_pct, mem_pct) at time now in slot (0..167) and decides,
 * the first matching rule winning: meeting hook -> paused; CPU > 85 %
 * for >= 120 s -> paused with ceiling min(16, total/10) and score 0.1;
 * an unexpired manual override (an expired one is cleared); fewer than
 * 7 days observed -> learning; else the learned score of §3.3/3.4.
 * mem_pct is used_gb / total_gb * 100. A slot out of range is only
 * evaluated, not recorded.
 */
void capacity_observe(struct capacity_learner *l, int64_t now, int slot,
                      double cpu_pct, double mem_pct,
                      struct capacity_decision *out);

/*
 * Sets a manual override lasting duration_s from now (ollama-herd's
 * default is 24 h), or clears it with CAPACITY_OVERRIDE_NONE. The
 * caller saves the state afterwards (ollama-herd saves on every
 * override change). 0, or -EINVAL for a duration <= 0.
 */
int capacity_set_override(struct capacity_learner *l,
                          enum capacity_override mode, int64_t now,
                          int64_t duration_s);

/* Sum of samples over every slot, and of one slot (0 when out of range). */
uint64_t capacity_total_samples(const struct capacity_learner *l);
uint64_t capacity_samples_in(const struct capacity_learner *l, int slot);

/* One heatmap cell per slot (ollama-herd's get_heatmap_data). */
struct capacity_heat {
    int slot, day_idx, hour; /* day_idx 0 = Monday */
    double avg_cpu, avg_mem; /* decayed; 0 without data */
    uint64_t samples;
    double availability; /* 1 - avg_cpu/100; 1.0 without data */
};

void capacity_heatmap(const struct capacity_learner *l, int64_t now,
                      struct capacity_heat out[CAPACITY_SLOTS]);
/* "Mon".."Sun"; "?" out of range. */
const char *capacity_day_name(int day_idx);

/* <data_dir>/herd-capacity-<node_id>.json ("herd-capacity.json" for an
 * empty id; characters outside [A-Za-z0-9._-] become '_'). 0 or
 * -ENAMETOOLONG. */
int capacity_state_path(const char *data_dir, const char *node_id, char *out,
                        size_t n);

/* True when observations were recorded since the last save and the
 * last save is CAPACITY_SAVE_EVERY_S old. */
bool capacity_save_due(const struct capacity_learner *l, int64_t now);

/* Writes the state atomically (creating data_dir, mode 0700). 0 or
 * -errno. */
int capacity_save(struct capacity_learner *l, const char *data_dir,
                  const char *node_id, int64_t now);

/*
 * Replaces l's history with the saved state (ours, else the Python
 * agent's file). Only an override still unexpired at now is restored.
 * 0 loaded; -ENOENT none found (l is fresh); -EINVAL corrupt or of a
 * shape we do not know (l is fresh, a warning is logged); other -errno
 * from reading. l's total memory and meeting hook are kept.
 */
int capacity_load(struct capacity_learner *l, const char *data_dir,
                  const char *node_id, int64_t now);

#endif /* NODE_CAPACITY_H */
