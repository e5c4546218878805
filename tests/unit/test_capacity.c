/*
 * test_capacity.c - the capacity learner: slots, decay, pruning, the
 * decision order, the score -> ceiling table, the bootstrap fix, the
 * heatmap and persistence (reference §3 and its test_capacity list).
 * Time is simulated: a week replays in milliseconds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "capacity.h"
#include "herd/buf.h"
#include "herd/fsutil.h"

#define DAY        86400
#define T0         1704067200LL /* Monday 2024-01-01 00:00:00 UTC */
#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static char dir[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/herd-test-capacity-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The hour-of-week slot of t, counting from T0 (UTC, no time zone). */
static int
slot_at(int64_t t)
{
    return (int)(((t - T0) / 3600) % CAPACITY_SLOTS);
}

/* Observations every 5 minutes over [from, to). */
static void
feed(struct capacity_learner *l, int64_t from, int64_t to, double cpu,
     double mem, struct capacity_decision *d)
{
    for (int64_t t = from; t < to; t += 300)
        capacity_observe(l, t, slot_at(t), cpu, mem, d);
}

/* ------------------------------------------------------------------ */
/* slots                                                               */

static void
test_slot_add(void **state)
{
    struct capacity_slot s;
    double cpu, mem;

    (void)state;
    memset(&s, 0, sizeof(s));
    assert_false(capacity_slot_avg(&s, T0, &cpu, &mem));
    assert_true(cpu == 0.0 && mem == 0.0);
    capacity_slot_add(&s, T0, 20.0, 40.0);
    capacity_slot_add(&s, T0 + 5, 40.0, 60.0);
    assert_int_equal(capacity_slot_samples(&s), 2);
    assert_true(capacity_slot_avg(&s, T0 + 5, &cpu, &mem));
    assert_true(fabs(cpu - 30.0) < 1e-3);
    assert_true(fabs(mem - 50.0) < 1e-3);
    /* Values are clamped to percentages. */
    capacity_slot_add(&s, T0 + 10, 250.0, -3.0);
    capacity_slot_add(&s, T0 + 15, NAN, NAN);
    assert_int_equal(capacity_slot_samples(&s), 4);
    assert_true(capacity_slot_avg(&s, T0 + 15, &cpu, &mem));
    assert_true(fabs(cpu - 160.0 / 4) < 1e-3);
    assert_true(fabs(mem - 100.0 / 4) < 1e-3);
}

static void
test_slot_decay(void **state)
{
    struct capacity_slot s;
    double cpu, mem;

    (void)state;
    memset(&s, 0, sizeof(s));
    /* 15 days old: half the weight of a fresh one. */
    capacity_slot_add(&s, T0, 100.0, 100.0);
    capacity_slot_add(&s, T0 + 15 * DAY, 0.0, 0.0);
    assert_true(capacity_slot_avg(&s, T0 + 15 * DAY, &cpu, &mem));
    NEAR(cpu, 0.5 * 100.0 / 1.5);
    NEAR(mem, 0.5 * 100.0 / 1.5);
    /* 30 days old: a quarter. */
    memset(&s, 0, sizeof(s));
    capacity_slot_add(&s, T0, 100.0, 0.0);
    capacity_slot_add(&s, T0 + 30 * DAY, 0.0, 0.0);
    assert_true(capacity_slot_avg(&s, T0 + 30 * DAY, &cpu, &mem));
    NEAR(cpu, 0.25 * 100.0 / 1.25);
    /* A lone sample is its own average whatever its age. */
    memset(&s, 0, sizeof(s));
    capacity_slot_add(&s, T0, 42.0, 7.0);
    assert_true(capacity_slot_avg(&s, T0 + 29 * DAY, &cpu, &mem));
    NEAR(cpu, 42.0);
    NEAR(mem, 7.0);
}

static void
test_slot_prune(void **state)
{
    struct capacity_slot s;

    (void)state;
    memset(&s, 0, sizeof(s));
    capacity_slot_add(&s, T0, 10.0, 10.0);
    capacity_slot_add(&s, T0 + 21 * DAY, 20.0, 20.0);
    capacity_slot_add(&s, T0 + 31 * DAY, 30.0, 30.0);
    assert_int_equal(capacity_slot_samples(&s), 3);
    /* At T0 + 30 days the first sample is exactly 30 days old: kept;
     * a second later it is older than the retention and goes. */
    assert_int_equal(capacity_slot_prune(&s, T0 + 30 * DAY - 30 * DAY), 0);
    assert_int_equal(capacity_slot_prune(&s, T0 + 30 * DAY - 30 * DAY + 1), 1);
    assert_int_equal(capacity_slot_samples(&s), 2);
    assert_int_equal(capacity_slot_prune(&s, T0 + 40 * DAY), 2);
    assert_int_equal(capacity_slot_samples(&s), 0);
    assert_int_equal(s.nb, 0);
}

/* An hour of 5 s samples is one bucket; ten weeks never lose a sample
 * (the two oldest buckets merge when all are in use). */
static void
test_slot_buckets(void **state)
{
    struct capacity_slot s;
    double cpu, mem;

    (void)state;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 720; i++)
        capacity_slot_add(&s, T0 + i * 5, 10.0, 20.0);
    assert_int_equal(s.nb, 1);
    assert_int_equal(capacity_slot_samples(&s), 720);
    for (int w = 1; w < 10; w++) {
        for (int i = 0; i < 720; i++)
            capacity_slot_add(&s, T0 + w * 7 * DAY + i * 5, 10.0, 20.0);
    }
    assert_true(s.nb <= CAPACITY_SLOT_BUCKETS);
    assert_int_equal(capacity_slot_samples(&s), 7200);
    assert_true(capacity_slot_avg(&s, T0 + 70 * DAY, &cpu, &mem));
    NEAR(cpu, 10.0);
    NEAR(mem, 20.0);
}

static void
test_slot_index(void **state)
{
    struct tm tm;
    bool seen[CAPACITY_SLOTS] = {false};

    (void)state;
    memset(&tm, 0, sizeof(tm));
    tm.tm_wday = 1; /* Monday */
    tm.tm_hour = 10;
    assert_int_equal(capacity_slot_index(&tm), 10);
    tm.tm_hour = 0;
    assert_int_equal(capacity_slot_index(&tm), 0);
    tm.tm_wday = 0; /* Sunday */
    assert_int_equal(capacity_slot_index(&tm), 144);
    tm.tm_hour = 23;
    assert_int_equal(capacity_slot_index(&tm), 167);
    for (int wd = 0; wd < 7; wd++) {
        for (int h = 0; h < 24; h++) {
            int s;

            tm.tm_wday = wd;
            tm.tm_hour = h;
            s = capacity_slot_index(&tm);
            assert_true(s >= 0 && s < CAPACITY_SLOTS);
            assert_false(seen[s]);
            seen[s] = true;
        }
    }
    tm.tm_wday = 7;
    assert_int_equal(capacity_slot_index(&tm), -1);
    tm.tm_wday = 1;
    tm.tm_hour = 24;
    assert_int_equal(capacity_slot_index(&tm), -1);

    /* From a Unix time in the local zone (forced to UTC here). */
    assert_int_equal(setenv("TZ", "UTC", 1), 0);
    tzset();
    assert_int_equal(capacity_slot_of_time(T0 + 10 * 3600), 10);
    assert_int_equal(capacity_slot_of_time(T0 + 7 * DAY - 1), 167);
    assert_int_equal(capacity_slot_of_time(T0 + 7 * DAY), 0);
    assert_string_equal(capacity_day_name(0), "Mon");
    assert_string_equal(capacity_day_name(6), "Sun");
    assert_string_equal(capacity_day_name(7), "?");
}

/* ------------------------------------------------------------------ */
/* decisions                                                           */

static void
test_new_invalid(void **state)
{
    (void)state;
    assert_null(capacity_new(0.0));
    assert_null(capacity_new(-8.0));
    assert_null(capacity_new(NAN));
    assert_null(capacity_new(INFINITY));
}

/* OUR FIX: a new learner keeps the node routable at a conservative
 * ceiling (ollama-herd reports bootstrap with ceiling 0 and the scorer
 * eliminates the node for a week). */
static void
test_bootstrap_stays_routable(void **state)
{
    struct capacity_learner *l = capacity_new(128.0);
    struct capacity_decision d;

    (void)state;
    assert_non_null(l);
    capacity_observe(l, T0, slot_at(T0), 10.0, 30.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    assert_string_equal(capacity_mode_name(d.mode), "learning");
    assert_string_equal(d.reason, "bootstrap_observation_period");
    NEAR(d.ceiling_gb, 32.0);
    NEAR(d.availability_score, 0.5);
    assert_false(d.override_active);
    assert_int_equal(d.days_observed, 0);
    NEAR(d.learning_confidence, 0.0);
    assert_true(capacity_routable(&d));
    assert_true(d.ceiling_gb > 0.0);
    assert_true(d.mode != CAPACITY_MODE_BOOTSTRAP &&
                d.mode != CAPACITY_MODE_PAUSED);

    /* Still learning, and still routable, after 6 days 23 hours. */
    feed(l, T0 + 300, T0 + 7 * DAY - 3600, 10.0, 30.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    assert_int_equal(d.days_observed, 6);
    assert_true(capacity_routable(&d));
    assert_true(d.learning_confidence > 0.0);
    capacity_free(l);

    /* A small machine: 25 % of its memory. */
    l = capacity_new(16.0);
    capacity_observe(l, T0, 0, 0.0, 0.0, &d);
    NEAR(d.ceiling_gb, 4.0);
    assert_true(capacity_routable(&d));
    capacity_free(l);
}

static void
test_learned_after_10_days(void **state)
{
    struct capacity_learner *l = capacity_new(128.0);
    struct capacity_decision d;
    int64_t end = T0 + 10 * DAY;

    (void)state;
    feed(l, T0, end, 5.0, 30.0, &d);
    capacity_observe(l, end, slot_at(end), 5.0, 30.0, &d);
    assert_int_equal(d.days_observed, 10);
    assert_true(d.mode != CAPACITY_MODE_LEARNING);
    assert_true(d.availability_score > 0.0);
    assert_true(d.ceiling_gb > 0.0);
    assert_true(capacity_routable(&d));
    /* 0.4 * 0.95 + 0.4 * (1 - 0.035 - 0.09) + 0.2 * 0.5 = 0.83 */
    assert_true(fabs(d.availability_score - 0.83) < 1e-6);
    assert_int_equal(d.mode, CAPACITY_MODE_FULL);
    NEAR(d.ceiling_gb, 102.4);
    assert_string_equal(d.reason, "high_availability");
    assert_false(d.override_active);
    capacity_free(l);
}

static void
test_busy_below_idle(void **state)
{
    struct capacity_learner *idle = capacity_new(128.0);
    struct capacity_learner *busy = capacity_new(128.0);
    struct capacity_decision di, db;
    int64_t end = T0 + 10 * DAY;

    (void)state;
    feed(idle, T0, end, 5.0, 30.0, &di);
    feed(busy, T0, end, 80.0, 70.0, &db);
    capacity_observe(idle, end, slot_at(end), 5.0, 30.0, &di);
    capacity_observe(busy, end, slot_at(end), 80.0, 70.0, &db);
    assert_true(db.availability_score < di.availability_score);
    assert_true(db.ceiling_gb < di.ceiling_gb);
    /* 0.4 * 0.2 + 0.4 * (1 - 0.56 - 0.21) + 0.1 = 0.272: learned_low. */
    assert_true(fabs(db.availability_score - 0.272) < 1e-6);
    assert_int_equal(db.mode, CAPACITY_MODE_LEARNED_LOW);
    NEAR(db.ceiling_gb, 16.0);
    assert_string_equal(db.reason, "low_availability");
    capacity_free(idle);
    capacity_free(busy);
}

/* Below 0.2 with a busy history: paused, "historically_busy_slot". A
 * rising CPU trend lowers the score. */
static void
test_historically_busy_and_trend(void **state)
{
    struct capacity_learner *l = capacity_new(64.0);
    struct capacity_learner *up = capacity_new(64.0);
    struct capacity_learner *down = capacity_new(64.0);
    struct capacity_decision d, du, dd;
    static const double rising[] = {10, 20, 30, 40};
    static const double falling[] = {70, 60, 50, 40};
    int64_t end = T0 + 10 * DAY;

    (void)state;
    feed(l, T0, end, 84.0, 100.0, &d);
    feed(up, T0, end, 20.0, 40.0, &du);
    feed(down, T0, end, 20.0, 40.0, &dd);
    /* Ten minutes later, four samples 5 s apart. For up and down only
     * the last is recorded (slot -1: evaluated, not recorded), so their
     * slot histories stay identical and only the trend differs. */
    for (int i = 0; i < 4; i++) {
        int64_t t = end + 600 + i * 5;
        int slot = i == 3 ? slot_at(t) : -1;

        capacity_observe(l, t, slot_at(t), i < 2 ? 0.0 : 84.0, 100.0, &d);
        capacity_observe(up, t, slot, rising[i], 40.0, &du);
        capacity_observe(down, t, slot, falling[i], 40.0, &dd);
    }
    assert_true(d.availability_score < 0.2);
    assert_int_equal(d.mode, CAPACITY_MODE_PAUSED);
    assert_string_equal(d.reason, "historically_busy_slot");
    NEAR(d.ceiling_gb, 0.0);
    assert_false(capacity_routable(&d));
    /* Same current CPU (40 %); trend +0.4 vs -0.4: 0.2 * 0.4 apart. */
    assert_true(du.availability_score < dd.availability_score);
    NEAR(dd.availability_score - du.availability_score, 0.08);
    capacity_free(l);
    capacity_free(up);
    capacity_free(down);
}

static void
test_sustained_high_cpu(void **state)
{
    struct capacity_learner *l = capacity_new(128.0);
    struct capacity_decision d;

    (void)state;
    capacity_observe(l, T0, 0, 90.0, 50.0, &d); /* timer starts */
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    capacity_observe(l, T0 + 60, 0, 90.0, 50.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    capacity_observe(l, T0 + 130, 0, 90.0, 50.0, &d); /* 130 s old */
    assert_int_equal(d.mode, CAPACITY_MODE_PAUSED);
    assert_string_equal(d.reason, "sustained_high_cpu");
    NEAR(d.availability_score, 0.1);
    NEAR(d.ceiling_gb, 12.8); /* min(16, 0.1 * 128) */
    assert_true(d.override_active);
    assert_false(capacity_routable(&d));
    /* 85 % is not "above 85": the timer resets. */
    capacity_observe(l, T0 + 135, 0, 85.0, 50.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    capacity_observe(l, T0 + 140, 0, 95.0, 50.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    capacity_observe(l, T0 + 259, 0, 95.0, 50.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    capacity_observe(l, T0 + 260, 0, 95.0, 50.0, &d);
    assert_string_equal(d.reason, "sustained_high_cpu");
    /* The cap for a big machine is 16 GB. */
    capacity_free(l);
    l = capacity_new(512.0);
    capacity_observe(l, T0, 0, 99.0, 50.0, &d);
    capacity_observe(l, T0 + 120, 0, 99.0, 50.0, &d);
    assert_string_equal(d.reason, "sustained_high_cpu");
    NEAR(d.ceiling_gb, 16.0);
    capacity_free(l);
}

static void
test_manual_override(void **state)
{
    struct capacity_learner *l = capacity_new(128.0);
    struct capacity_decision d;

    (void)state;
    assert_int_equal(capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0, 3600),
                     0);
    capacity_observe(l, T0 + 10, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_FULL);
    assert_string_equal(d.reason, "manual_override");
    NEAR(d.ceiling_gb, 102.4);
    NEAR(d.availability_score, 1.0);
    assert_true(d.override_active);
    assert_true(capacity_routable(&d));

    assert_int_equal(
        capacity_set_override(l, CAPACITY_OVERRIDE_PAUSED, T0 + 20, 3600), 0);
    capacity_observe(l, T0 + 30, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_PAUSED);
    assert_string_equal(d.reason, "manual_override");
    NEAR(d.ceiling_gb, 0.0);
    NEAR(d.availability_score, 0.0);
    assert_false(capacity_routable(&d));

    /* Expired: cleared, and the next rule (bootstrap) applies. */
    capacity_observe(l, T0 + 20 + 3600, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    assert_false(d.override_active);
    capacity_observe(l, T0 + 20 + 3605, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);

    /* Cleared explicitly; bad durations refused. */
    assert_int_equal(
        capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0 + 4000, 60), 0);
    assert_int_equal(
        capacity_set_override(l, CAPACITY_OVERRIDE_NONE, T0 + 4001, 0), 0);
    capacity_observe(l, T0 + 4002, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
    assert_int_equal(capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0, 0),
                     -EINVAL);
    assert_int_equal(capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0, -5),
                     -EINVAL);

    /* Sustained high CPU comes before a manual override. */
    assert_int_equal(
        capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0 + 5000, 3600), 0);
    capacity_observe(l, T0 + 5000, 0, 90.0, 10.0, &d);
    assert_string_equal(d.reason, "manual_override");
    capacity_observe(l, T0 + 5130, 0, 90.0, 10.0, &d);
    assert_string_equal(d.reason, "sustained_high_cpu");
    capacity_free(l);
}

static void
test_override_parse(void **state)
{
    enum capacity_override o;

    (void)state;
    assert_int_equal(capacity_override_parse("full", &o), 0);
    assert_int_equal(o, CAPACITY_OVERRIDE_FULL);
    assert_int_equal(capacity_override_parse("paused", &o), 0);
    assert_int_equal(o, CAPACITY_OVERRIDE_PAUSED);
    assert_int_equal(capacity_override_parse("auto", &o), 0);
    assert_int_equal(o, CAPACITY_OVERRIDE_NONE);
    assert_int_equal(capacity_override_parse("none", &o), 0);
    assert_int_equal(capacity_override_parse("", &o), 0);
    assert_int_equal(capacity_override_parse("FULL", &o), -EINVAL);
    assert_int_equal(capacity_override_parse("learned_high", &o), -EINVAL);
}

static bool
in_meeting(void *ctx)
{
    return *(bool *)ctx;
}

/* The hook (ollama-herd's macOS detector; none on Linux yet) comes
 * first of all. */
static void
test_meeting_hook(void **state)
{
    struct capacity_learner *l = capacity_new(32.0);
    struct capacity_decision d;
    bool meeting = true;

    (void)state;
    capacity_set_meeting_hook(l, in_meeting, &meeting);
    assert_int_equal(capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0, 3600),
                     0);
    capacity_observe(l, T0, 0, 10.0, 10.0, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_PAUSED);
    assert_string_equal(d.reason, "meeting_detected");
    NEAR(d.ceiling_gb, 0.0);
    NEAR(d.availability_score, 0.0);
    assert_true(d.override_active);
    meeting = false;
    capacity_observe(l, T0 + 5, 0, 10.0, 10.0, &d);
    assert_string_equal(d.reason, "manual_override");
    capacity_set_meeting_hook(l, NULL, NULL);
    capacity_free(l);
}

static void
test_ceiling_table(void **state)
{
    static const struct {
        double score, ceiling;
        enum capacity_mode mode;
    } t128[] = {
        {0.1, 0.0, CAPACITY_MODE_PAUSED},
        {0.3, 16.0, CAPACITY_MODE_LEARNED_LOW},
        {0.5, 32.0, CAPACITY_MODE_LEARNED_MEDIUM},
        {0.7, 64.0, CAPACITY_MODE_LEARNED_HIGH},
        {0.9, 102.4, CAPACITY_MODE_FULL},
        {0.0, 0.0, CAPACITY_MODE_PAUSED},
        {0.2, 16.0, CAPACITY_MODE_LEARNED_LOW},
        {0.4, 32.0, CAPACITY_MODE_LEARNED_MEDIUM},
        {0.6, 64.0, CAPACITY_MODE_LEARNED_HIGH},
        {0.8, 102.4, CAPACITY_MODE_FULL},
        {1.0, 102.4, CAPACITY_MODE_FULL},
    };
    enum capacity_mode m;

    (void)state;
    for (size_t i = 0; i < sizeof(t128) / sizeof(t128[0]); i++) {
        NEAR(capacity_ceiling_for(t128[i].score, 128.0, &m), t128[i].ceiling);
        assert_int_equal(m, t128[i].mode);
    }
    /* On 16 GB the fractions bind before the caps. */
    NEAR(capacity_ceiling_for(0.3, 16.0, NULL), 2.0);
    NEAR(capacity_ceiling_for(0.5, 16.0, NULL), 4.0);
    NEAR(capacity_ceiling_for(0.7, 16.0, NULL), 8.0);
    NEAR(capacity_ceiling_for(0.9, 16.0, NULL), 12.8);
    NEAR(capacity_ceiling_for(NAN, 16.0, &m), 0.0);
    assert_int_equal(m, CAPACITY_MODE_PAUSED);
    assert_string_equal(capacity_mode_name(CAPACITY_MODE_LEARNED_MEDIUM),
                        "learned_medium");
    assert_string_equal(capacity_mode_name(CAPACITY_MODE_BOOTSTRAP),
                        "bootstrap");
}

static void
test_availability_formula(void **state)
{
    (void)state;
    /* Idle everywhere, flat trend: 0.4 + 0.4 + 0.1. */
    NEAR(capacity_availability(0, 5, 0, 0, 0), 0.9);
    NEAR(capacity_availability(0, 5, 0, 0, -1), 1.0);
    NEAR(capacity_availability(100, 5, 100, 100, 1), 0.0);
    /* No slot history: the current load weighs 0.8. */
    NEAR(capacity_availability(100, 0, 0, 0, 0), 0.9);
    NEAR(capacity_availability(0, 0, 50, 0, 0), 0.8 * 0.65 + 0.1);
    /* Partial confidence: 2 of 5 samples. */
    NEAR(capacity_availability(50, 2, 0, 0, 0),
         0.5 * 0.4 * 0.4 + 1.0 * (0.4 + 0.4 * 0.6) + 0.1);
}

static void
test_confidence(void **state)
{
    struct capacity_learner *l = capacity_new(64.0);
    struct capacity_decision d;
    int64_t span = 30 * DAY;

    (void)state;
    capacity_observe(l, T0, 0, 10.0, 10.0, &d);
    NEAR(d.learning_confidence, 0.0);
    capacity_observe(l, T0 + DAY, slot_at(T0 + DAY), 10.0, 10.0, &d);
    assert_int_equal(d.days_observed, 1);
    assert_true(d.learning_confidence < 0.5);
    NEAR(d.learning_confidence, 0.02);
    capacity_free(l);

    /* 30 days, 1000 observations. */
    l = capacity_new(64.0);
    for (int i = 0; i < 1000; i++) {
        int64_t t = T0 + span * i / 999;

        capacity_observe(l, t, slot_at(t), 10.0, 10.0, &d);
    }
    assert_int_equal(d.days_observed, 30);
    assert_int_equal(capacity_total_samples(l), 1000);
    assert_true(d.learning_confidence > 0.5);
    NEAR(d.learning_confidence, 1.0);
    capacity_free(l);
}

static void
test_heatmap(void **state)
{
    struct capacity_learner *l = capacity_new(64.0);
    struct capacity_heat h[CAPACITY_SLOTS];
    struct capacity_decision d;

    (void)state;
    capacity_observe(l, T0 + 10 * 3600, 10, 40.0, 20.0, &d);
    capacity_observe(l, T0 + 10 * 3600 + 5, 10, 60.0, 40.0, &d);
    capacity_heatmap(l, T0 + 10 * 3600 + 5, h);
    for (int i = 0; i < CAPACITY_SLOTS; i++) {
        assert_int_equal(h[i].slot, i);
        assert_int_equal(h[i].day_idx, i / 24);
        assert_int_equal(h[i].hour, i % 24);
        if (i != 10) {
            assert_int_equal(h[i].samples, 0);
            NEAR(h[i].availability, 1.0);
            NEAR(h[i].avg_cpu, 0.0);
        }
    }
    assert_int_equal(h[10].samples, 2);
    assert_true(fabs(h[10].avg_cpu - 50.0) < 1e-3);
    assert_true(fabs(h[10].avg_mem - 30.0) < 1e-3);
    assert_true(fabs(h[10].availability - 0.5) < 1e-5);
    assert_string_equal(capacity_day_name(h[167].day_idx), "Sun");
    assert_int_equal(capacity_samples_in(l, 10), 2);
    assert_int_equal(capacity_samples_in(l, 168), 0);
    assert_int_equal(capacity_samples_in(l, -1), 0);
    capacity_free(l);
}

static void
test_decision_json(void **state)
{
    struct capacity_learner *l = capacity_new(128.0);
    struct capacity_decision d;
    struct buf b;

    (void)state;
    buf_init(&b, 4096);
    capacity_observe(l, T0, 0, 10.0, 10.0, &d);
    assert_int_equal(capacity_decision_json(&d, &b), 0);
    assert_string_equal(b.data,
                        "{\"mode\":\"learning\",\"ceiling_gb\":32,"
                        "\"availability_score\":0.5,"
                        "\"reason\":\"bootstrap_observation_period\","
                        "\"override_active\":false,\"learning_confidence\":0,"
                        "\"days_observed\":0}");
    buf_reset(&b);
    assert_int_equal(capacity_set_override(l, CAPACITY_OVERRIDE_FULL, T0, 3600),
                     0);
    capacity_observe(l, T0 + 5, 0, 10.0, 10.0, &d);
    assert_int_equal(capacity_decision_json(&d, &b), 0);
    assert_non_null(strstr(b.data, "\"ceiling_gb\":102.4,"));
    assert_non_null(strstr(b.data, "\"override_active\":true"));
    buf_cleanup(&b);
    capacity_free(l);
}

/* ------------------------------------------------------------------ */
/* persistence                                                         */

static void
write_text(const char *name, const char *s)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fs_write_atomic(path, s, strlen(s)), 0);
}

static void
test_state_path(void **state)
{
    char p[512];

    (void)state;
    assert_int_equal(capacity_state_path("/d", "node-1", p, sizeof(p)), 0);
    assert_string_equal(p, "/d/herd-capacity-node-1.json");
    assert_int_equal(capacity_state_path("/d", "", p, sizeof(p)), 0);
    assert_string_equal(p, "/d/herd-capacity.json");
    assert_int_equal(capacity_state_path("/d", "../evil/x y", p, sizeof(p)), 0);
    assert_string_equal(p, "/d/herd-capacity-.._evil_x_y.json");
    assert_int_equal(capacity_state_path("/d", "n", p, 10), -ENAMETOOLONG);
}

static void
test_save_load_roundtrip(void **state)
{
    struct capacity_learner *a = capacity_new(128.0);
    struct capacity_learner *b = capacity_new(128.0);
    struct capacity_decision da, db;
    char sub[300], path[600];
    struct stat st;
    int64_t end = T0 + 10 * DAY;

    (void)state;
    snprintf(sub, sizeof(sub), "%s/data", dir);
    feed(a, T0, end, 30.0, 45.0, &da);
    feed(a, end, end + 3 * 3600, 70.0, 45.0, &da);
    assert_true(capacity_save_due(a, end + 3 * 3600));
    assert_int_equal(
        capacity_set_override(a, CAPACITY_OVERRIDE_PAUSED, end, 2 * DAY), 0);
    assert_int_equal(capacity_save(a, sub, "studio", end + 3 * 3600), 0);
    assert_false(capacity_save_due(a, end + 3 * 3600));
    snprintf(path, sizeof(path), "%s/herd-capacity-studio.json", sub);
    assert_int_equal(stat(path, &st), 0);
    /* A small file: per-week buckets, not raw samples. */
    assert_true(st.st_size < 256 * 1024);

    assert_int_equal(capacity_load(b, sub, "studio", end + 3 * 3600 + 10), 0);
    assert_int_equal(capacity_total_samples(b), capacity_total_samples(a));
    /* Same counts and the same decayed averages in every slot. */
    {
        struct capacity_heat ha[CAPACITY_SLOTS], hb[CAPACITY_SLOTS];

        capacity_heatmap(a, end + 4 * 3600, ha);
        capacity_heatmap(b, end + 4 * 3600, hb);
        for (int i = 0; i < CAPACITY_SLOTS; i++) {
            assert_int_equal(capacity_samples_in(b, i),
                             capacity_samples_in(a, i));
            assert_int_equal(hb[i].samples, ha[i].samples);
            assert_true(fabs(hb[i].avg_cpu - ha[i].avg_cpu) < 1e-6);
            assert_true(fabs(hb[i].avg_mem - ha[i].avg_mem) < 1e-6);
        }
    }
    /* The unexpired override came back. */
    capacity_observe(b, end + 4 * 3600, 5, 10.0, 10.0, &db);
    assert_string_equal(db.reason, "manual_override");
    assert_int_equal(db.mode, CAPACITY_MODE_PAUSED);
    /* So did first_observation. */
    assert_int_equal(db.days_observed, 10);
    capacity_observe(a, end + 4 * 3600, 5, 10.0, 10.0, &da);
    NEAR(da.learning_confidence, db.learning_confidence);

    /* Loaded after expiry: the override is dropped. */
    assert_int_equal(capacity_load(b, sub, "studio", end + 3 * DAY), 0);
    capacity_observe(b, end + 3 * DAY, 5, 10.0, 10.0, &db);
    assert_string_not_equal(db.reason, "manual_override");
    assert_false(db.override_active);

    /* Another node id: nothing saved, a fresh learner. */
    assert_int_equal(capacity_load(b, sub, "other", end), -ENOENT);
    assert_int_equal(capacity_total_samples(b), 0);
    capacity_free(a);
    capacity_free(b);
}

static void
test_load_corrupt(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "not json",
        "[]",
        "{\"slots\":[]}",
        "{\"first_observation\":\"yesterday\",\"slots\":[]}",
        "{\"slots\":{}}",
        ("{\"manual_override\":{\"mode\":\"turbo\",\"expires\":1},"
         "\"slots\":[]}"),
    };
    struct capacity_learner *l = capacity_new(64.0);
    struct capacity_learner *a = capacity_new(64.0);
    struct capacity_decision d;
    char path[600], *data, *slots;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        feed(l, T0, T0 + 3600, 10.0, 10.0, &d);
        write_text("herd-capacity-n.json", bad[i]);
        assert_int_equal(capacity_load(l, dir, "n", T0 + DAY), -EINVAL);
        /* Fresh: no history, learning again. */
        assert_int_equal(capacity_total_samples(l), 0);
        capacity_observe(l, T0 + DAY, 0, 10.0, 10.0, &d);
        assert_int_equal(d.mode, CAPACITY_MODE_LEARNING);
        assert_int_equal(d.days_observed, 0);
    }

    /* A real file cut in half, and one with a value out of range. */
    feed(a, T0, T0 + 2 * DAY, 10.0, 10.0, &d);
    assert_int_equal(capacity_save(a, dir, "n", T0 + 2 * DAY), 0);
    snprintf(path, sizeof(path), "%s/herd-capacity-n.json", dir);
    assert_int_equal(fs_read_file(path, 1 << 20, &data, &len), 0);
    assert_int_equal(fs_write_atomic(path, data, len / 2), 0);
    assert_int_equal(capacity_load(l, dir, "n", T0 + 2 * DAY), -EINVAL);
    assert_int_equal(capacity_total_samples(l), 0);
    slots = strstr(data, "\"cpu\":10,");
    assert_non_null(slots);
    memcpy(slots, "\"cpu\":-1,", 9); /* same length, out of range */
    assert_int_equal(fs_write_atomic(path, data, len), 0);
    assert_int_equal(capacity_load(l, dir, "n", T0 + 2 * DAY), -EINVAL);
    assert_int_equal(capacity_total_samples(l), 0);
    free(data);

    /* A 167-slot array is not ours either. */
    {
        struct buf b;

        buf_init(&b, 1 << 16);
        assert_int_equal(buf_appends(&b, "{\"slots\":["), 0);
        for (int i = 0; i < 167; i++)
            assert_int_equal(
                buf_appends(&b, i ? ",{\"buckets\":[]}" : "{\"buckets\":[]}"),
                0);
        assert_int_equal(buf_appends(&b, "]}"), 0);
        write_text("herd-capacity-n.json", b.data);
        buf_cleanup(&b);
    }
    assert_int_equal(capacity_load(l, dir, "n", T0), -EINVAL);
    capacity_free(l);
    capacity_free(a);
}

/* The Python agent's file is imported once, then saved in our format. */
static void
test_load_legacy(void **state)
{
    struct capacity_learner *l = capacity_new(64.0);
    struct capacity_decision d;
    struct buf b;
    char path[600];
    struct stat st;
    int64_t now = T0 + 8 * DAY;

    (void)state;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_appendf(&b,
                                 "{\"first_observation\": %lld.25, "
                                 "\"manual_override\": null, \"slots\": [",
                                 (long long)T0),
                     0);
    for (int i = 0; i < CAPACITY_SLOTS; i++) {
        assert_int_equal(buf_appends(&b, i ? ", " : ""), 0);
        if (i == 10)
            assert_int_equal(
                buf_appendf(&b,
                            "{\"observations\": [{\"ts\": %lld.5, \"cpu\": "
                            "12.5, \"mem\": 40.0}, {\"ts\": %lld.5, \"cpu\": "
                            "37.5, \"mem\": 60.0}]}",
                            (long long)(T0 + 7 * DAY + 10 * 3600),
                            (long long)(T0 + 7 * DAY + 10 * 3600 + 5)),
                0);
        else
            assert_int_equal(buf_appends(&b, "{\"observations\": []}"), 0);
    }
    assert_int_equal(
        buf_appendf(&b, "], \"saved_at\": %lld.0}\n", (long long)now), 0);
    write_text("capacity-learner-mini.json", b.data);
    buf_cleanup(&b);

    assert_int_equal(capacity_load(l, dir, "mini", now), 0);
    assert_int_equal(capacity_total_samples(l), 2);
    assert_int_equal(capacity_samples_in(l, 10), 2);
    /* first_observation came along: 8 days, past the bootstrap. */
    capacity_observe(l, now, 11, 10.0, 10.0, &d);
    assert_int_equal(d.days_observed, 8);
    assert_true(d.mode != CAPACITY_MODE_LEARNING);
    assert_true(capacity_save_due(l, now + CAPACITY_SAVE_EVERY_S));
    assert_int_equal(capacity_save(l, dir, "mini", now), 0);
    snprintf(path, sizeof(path), "%s/herd-capacity-mini.json", dir);
    assert_int_equal(stat(path, &st), 0);
    capacity_free(l);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_slot_add),
        T(test_slot_decay),
        T(test_slot_prune),
        T(test_slot_buckets),
        T(test_slot_index),
        T(test_new_invalid),
        T(test_bootstrap_stays_routable),
        T(test_learned_after_10_days),
        T(test_busy_below_idle),
        T(test_historically_busy_and_trend),
        T(test_sustained_high_cpu),
        T(test_manual_override),
        T(test_override_parse),
        T(test_meeting_hook),
        T(test_ceiling_table),
        T(test_availability_formula),
        T(test_confidence),
        T(test_heatmap),
        T(test_decision_json),
        T(test_state_path),
        T(test_save_load_roundtrip),
        T(test_load_corrupt),
        T(test_load_legacy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
