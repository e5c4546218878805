/*
 * capacity.c - the adaptive capacity learner: hour-of-week slots with
 * decayed history, the decision rules, and JSON persistence.
 *
 * The rules and numbers are ollama-herd's (reference §3) except where
 * capacity.h lists a deliberate difference. Everything but save/load is
 * arithmetic on the struct, with time passed in.
 */
#include "capacity.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/log.h"

#define CAPACITY_DAY_S      86400
#define CAPACITY_PRUNE_S    3600 /* prune every slot at most hourly */
#define CAPACITY_PATH_MAX   1024
#define CAPACITY_JSON_DEPTH 16
#define CAPACITY_MAX_N      1000000000u /* per bucket, on load */

struct capacity_trend_sample {
    int64_t ts;
    double cpu;
};

struct capacity_learner {
    double total_gb;
    bool have_first;
    int64_t first_obs;
    struct capacity_slot slots[CAPACITY_SLOTS];
    enum capacity_override ovr;
    int64_t ovr_expires;
    bool high_cpu; /* the sustained-high-CPU timer runs */
    int64_t high_cpu_since;
    struct capacity_trend_sample trend[CAPACITY_TREND_WINDOW]; /* ring */
    size_t trend_n, trend_next;
    capacity_meeting_cb meeting; /* borrowed */
    void *meeting_ctx;           /* borrowed */
    int64_t last_prune;
    int64_t last_save;
    bool dirty; /* observations since the last save */
};

static double
capacity_clamp(double v, double lo, double hi)
{
    if (!(v >= lo)) /* also NaN */
        return lo;
    return v > hi ? hi : v;
}

static double
capacity_round2(double v)
{
    return round(v * 100.0) / 100.0;
}

/* ------------------------------------------------------------------ */
/* slots                                                               */

static int64_t
capacity_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t
capacity_max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Folds src into dst; ages are re-based on the new first timestamp. */
static void
capacity_bucket_merge(struct capacity_bucket *dst,
                      const struct capacity_bucket *src)
{
    int64_t first = capacity_min64(dst->first_ts, src->first_ts);

    dst->age_sum =
        dst->age_sum + (double)dst->n * (double)(dst->first_ts - first) +
        src->age_sum + (double)src->n * (double)(src->first_ts - first);
    dst->first_ts = first;
    dst->last_ts = capacity_max64(dst->last_ts, src->last_ts);
    dst->n += src->n;
    dst->cpu_sum += src->cpu_sum;
    dst->mem_sum += src->mem_sum;
}

static void
capacity_slot_insert(struct capacity_slot *s, const struct capacity_bucket *nb)
{
    size_t i, a, b;

    for (i = 0; i < s->nb; i++) {
        struct capacity_bucket *e = &s->b[i];
        int64_t lo = capacity_min64(e->first_ts, nb->first_ts);
        int64_t hi = capacity_max64(e->last_ts, nb->last_ts);

        if (hi - lo <= CAPACITY_BUCKET_SPAN_S &&
            (uint64_t)e->n + nb->n <= UINT32_MAX) {
            capacity_bucket_merge(e, nb);
            return;
        }
    }
    if (s->nb == CAPACITY_SLOT_BUCKETS) {
        /* Full (a clock jump or an odd import): merge the two oldest. */
        a = 0;
        for (i = 1; i < s->nb; i++) {
            if (s->b[i].first_ts < s->b[a].first_ts)
                a = i;
        }
        b = a == 0 ? 1 : 0;
        for (i = 0; i < s->nb; i++) {
            if (i != a && s->b[i].first_ts < s->b[b].first_ts)
                b = i;
        }
        capacity_bucket_merge(&s->b[a], &s->b[b]);
        s->b[b] = s->b[--s->nb];
    }
    s->b[s->nb++] = *nb;
}

void
capacity_slot_add(struct capacity_slot *s, int64_t ts, double cpu_pct,
                  double mem_pct)
{
    struct capacity_bucket nb;

    nb.first_ts = ts;
    nb.last_ts = ts;
    nb.n = 1;
    nb.age_sum = 0.0;
    nb.cpu_sum = capacity_clamp(cpu_pct, 0.0, 100.0);
    nb.mem_sum = capacity_clamp(mem_pct, 0.0, 100.0);
    capacity_slot_insert(s, &nb);
}

uint64_t
capacity_slot_samples(const struct capacity_slot *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i < s->nb; i++)
        n += s->b[i].n;
    return n;
}

bool
capacity_slot_avg(const struct capacity_slot *s, int64_t now, double *cpu_pct,
                  double *mem_pct)
{
    double wsum = 0.0, cpu = 0.0, mem = 0.0;

    for (size_t i = 0; i < s->nb; i++) {
        const struct capacity_bucket *b = &s->b[i];
        double mean_ts = (double)b->first_ts + b->age_sum / (double)b->n;
        double age_days = ((double)now - mean_ts) / CAPACITY_DAY_S;
        double w;

        if (age_days < 0.0)
            age_days = 0.0;
        w = exp(-M_LN2 * age_days / CAPACITY_HALF_LIFE_DAYS);
        wsum += w * (double)b->n;
        cpu += w * b->cpu_sum;
        mem += w * b->mem_sum;
    }
    if (s->nb == 0 || wsum <= 0.0) {
        *cpu_pct = 0.0;
        *mem_pct = 0.0;
        return false;
    }
    *cpu_pct = cpu / wsum;
    *mem_pct = mem / wsum;
    return true;
}

uint64_t
capacity_slot_prune(struct capacity_slot *s, int64_t cutoff)
{
    uint64_t dropped = 0;
    size_t i = 0;

    while (i < s->nb) {
        if (s->b[i].last_ts < cutoff) {
            dropped += s->b[i].n;
            s->b[i] = s->b[--s->nb];
        } else {
            i++;
        }
    }
    return dropped;
}

int
capacity_slot_index(const struct tm *local)
{
    if (local->tm_wday < 0 || local->tm_wday > 6 || local->tm_hour < 0 ||
        local->tm_hour > 23)
        return -1;
    /* tm_wday counts from Sunday; our slots from Monday. */
    return ((local->tm_wday + 6) % 7) * 24 + local->tm_hour;
}

int
capacity_slot_of_time(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (localtime_r(&tt, &tm) == NULL)
        return -1;
    return capacity_slot_index(&tm);
}

/* ------------------------------------------------------------------ */
/* scoring                                                             */

static const char *const capacity_mode_names[CAPACITY_MODE_COUNT] = {
    "full",   "learned_high", "learned_medium", "learned_low",
    "paused", "bootstrap",    "learning",
};

const char *
capacity_mode_name(enum capacity_mode m)
{
    return (unsigned)m < CAPACITY_MODE_COUNT ? capacity_mode_names[m] : "?";
}

double
capacity_ceiling_for(double score, double total_gb, enum capacity_mode *mode)
{
    enum capacity_mode md;
    double c;

    if (!(score >= 0.2)) {
        md = CAPACITY_MODE_PAUSED;
        c = 0.0;
    } else if (score < 0.4) {
        md = CAPACITY_MODE_LEARNED_LOW;
        c = fmin(16.0, total_gb * 0.125);
    } else if (score < 0.6) {
        md = CAPACITY_MODE_LEARNED_MEDIUM;
        c = fmin(32.0, total_gb * 0.25);
    } else if (score < 0.8) {
        md = CAPACITY_MODE_LEARNED_HIGH;
        c = fmin(64.0, total_gb * 0.5);
    } else {
        md = CAPACITY_MODE_FULL;
        c = total_gb * 0.8;
    }
    if (mode != NULL)
        *mode = md;
    return c;
}

double
capacity_availability(double hist_cpu, uint64_t slot_samples, double cpu_pct,
                      double mem_pct, double cpu_trend)
{
    double hist, current, trend, conf, score;

    hist = fmax(0.0, 1.0 - capacity_clamp(hist_cpu, 0.0, 100.0) / 100.0);
    current =
        fmax(0.0, 1.0 - 0.7 * capacity_clamp(cpu_pct, 0.0, 100.0) / 100.0 -
                      0.3 * capacity_clamp(mem_pct, 0.0, 100.0) / 100.0);
    trend = capacity_clamp(0.5 - 0.5 * capacity_clamp(cpu_trend, -1.0, 1.0),
                           0.0, 1.0);
    conf = fmin(1.0, (double)slot_samples / CAPACITY_MIN_SAMPLES);
    score =
        hist * 0.4 * conf + current * (0.4 + 0.4 * (1.0 - conf)) + trend * 0.2;
    return capacity_clamp(score, 0.0, 1.0);
}

bool
capacity_routable(const struct capacity_decision *d)
{
    return d->mode != CAPACITY_MODE_PAUSED &&
           d->mode != CAPACITY_MODE_BOOTSTRAP &&
           d->availability_score >= CAPACITY_ROUTABLE_MIN;
}

int
capacity_decision_json(const struct capacity_decision *d, struct buf *b)
{
    int rc;

    rc =
        buf_appendf(b,
                    "{\"mode\":\"%s\",\"ceiling_gb\":%.15g,"
                    "\"availability_score\":%.15g,\"reason\":",
                    capacity_mode_name(d->mode), capacity_round2(d->ceiling_gb),
                    capacity_round2(d->availability_score));
    if (rc == 0)
        rc = json_append_str(b, d->reason, strlen(d->reason));
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"override_active\":%s,\"learning_confidence\":"
                         "%.15g,\"days_observed\":%d}",
                         d->override_active ? "true" : "false",
                         capacity_round2(d->learning_confidence),
                         d->days_observed);
    return rc;
}

int
capacity_override_parse(const char *s, enum capacity_override *out)
{
    if (strcmp(s, "full") == 0)
        *out = CAPACITY_OVERRIDE_FULL;
    else if (strcmp(s, "paused") == 0)
        *out = CAPACITY_OVERRIDE_PAUSED;
    else if (strcmp(s, "none") == 0 || strcmp(s, "auto") == 0 || s[0] == '\0')
        *out = CAPACITY_OVERRIDE_NONE;
    else
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the learner                                                         */

static void
capacity_reset(struct capacity_learner *l)
{
    double total = l->total_gb;
    capacity_meeting_cb cb = l->meeting;
    void *ctx = l->meeting_ctx;

    memset(l, 0, sizeof(*l));
    l->total_gb = total;
    l->meeting = cb;
    l->meeting_ctx = ctx;
}

struct capacity_learner *
capacity_new(double total_gb)
{
    struct capacity_learner *l;

    if (!(total_gb > 0.0) || isinf(total_gb))
        return NULL;
    l = calloc(1, sizeof(*l));
    if (l != NULL)
        l->total_gb = total_gb;
    return l;
}

void
capacity_free(struct capacity_learner *l)
{
    free(l);
}

void
capacity_set_meeting_hook(struct capacity_learner *l, capacity_meeting_cb cb,
                          void *ctx)
{
    l->meeting = cb;
    l->meeting_ctx = ctx;
}

int
capacity_set_override(struct capacity_learner *l, enum capacity_override mode,
                      int64_t now, int64_t duration_s)
{
    if (mode == CAPACITY_OVERRIDE_NONE) {
        l->ovr = CAPACITY_OVERRIDE_NONE;
        l->ovr_expires = 0;
        return 0;
    }
    if (duration_s <= 0 || now > INT64_MAX - duration_s ||
        (mode != CAPACITY_OVERRIDE_FULL && mode != CAPACITY_OVERRIDE_PAUSED))
        return -EINVAL;
    l->ovr = mode;
    l->ovr_expires = now + duration_s;
    return 0;
}

uint64_t
capacity_total_samples(const struct capacity_learner *l)
{
    uint64_t n = 0;

    for (size_t i = 0; i < CAPACITY_SLOTS; i++)
        n += capacity_slot_samples(&l->slots[i]);
    return n;
}

uint64_t
capacity_samples_in(const struct capacity_learner *l, int slot)
{
    if (slot < 0 || slot >= CAPACITY_SLOTS)
        return 0;
    return capacity_slot_samples(&l->slots[slot]);
}

static void
capacity_trend_add(struct capacity_learner *l, int64_t now, double cpu)
{
    l->trend[l->trend_next].ts = now;
    l->trend[l->trend_next].cpu = cpu;
    l->trend_next = (l->trend_next + 1) % CAPACITY_TREND_WINDOW;
    if (l->trend_n < CAPACITY_TREND_WINDOW)
        l->trend_n++;
}

/* (mean CPU of the newer half - mean of the older half) / 50, over the
 * samples of the last 300 s, or all of them when fewer than 4 are that
 * recent; 0 with fewer than 4 samples. */
static double
capacity_trend(const struct capacity_learner *l, int64_t now)
{
    double cpu[CAPACITY_TREND_WINDOW];
    size_t n = 0, start, mid, recent = 0;
    double a = 0.0, b = 0.0;

    if (l->trend_n < 4)
        return 0.0;
    start = (l->trend_next + CAPACITY_TREND_WINDOW - l->trend_n) %
            CAPACITY_TREND_WINDOW;
    for (size_t i = 0; i < l->trend_n; i++) {
        const struct capacity_trend_sample *t =
            &l->trend[(start + i) % CAPACITY_TREND_WINDOW];

        if (now - t->ts < CAPACITY_TREND_RECENT_S)
            recent++;
    }
    for (size_t i = 0; i < l->trend_n; i++) {
        const struct capacity_trend_sample *t =
            &l->trend[(start + i) % CAPACITY_TREND_WINDOW];

        if (recent < 4 || now - t->ts < CAPACITY_TREND_RECENT_S)
            cpu[n++] = t->cpu;
    }
    mid = n / 2;
    for (size_t i = 0; i < mid; i++)
        a += cpu[i];
    for (size_t i = mid; i < n; i++)
        b += cpu[i];
    return capacity_clamp((b / (double)(n - mid) - a / (double)mid) / 50.0,
                          -1.0, 1.0);
}

static int
capacity_days(const struct capacity_learner *l, int64_t now)
{
    int64_t d;

    if (!l->have_first || now <= l->first_obs)
        return 0;
    d = (now - l->first_obs) / CAPACITY_DAY_S;
    return d > INT32_MAX ? INT32_MAX : (int)d;
}

static double
capacity_confidence(const struct capacity_learner *l, int days)
{
    double total = (double)capacity_total_samples(l);

    if (days == 0)
        return 0.0;
    return capacity_round2(fmin(1.0, days / 30.0) * 0.6 +
                           fmin(1.0, total / CAPACITY_SLOTS / 5.0) * 0.4);
}

static void
capacity_set(struct capacity_decision *out, enum capacity_mode mode,
             double ceiling, double score, const char *reason, bool ovr)
{
    out->mode = mode;
    out->ceiling_gb = ceiling;
    out->availability_score = score;
    out->reason = reason;
    out->override_active = ovr;
}

static void
capacity_decide(struct capacity_learner *l, int64_t now, int slot, double cpu,
                double mem, struct capacity_decision *out)
{
    double hist_cpu = 0.0, hist_mem, score;
    uint64_t samples = 0;
    enum capacity_mode mode;

    out->days_observed = capacity_days(l, now);
    out->learning_confidence = capacity_confidence(l, out->days_observed);

    if (l->meeting != NULL && l->meeting(l->meeting_ctx)) {
        capacity_set(out, CAPACITY_MODE_PAUSED, 0.0, 0.0, "meeting_detected",
                     true);
        return;
    }
    if (cpu > CAPACITY_HIGH_CPU_PCT) {
        if (!l->high_cpu) {
            l->high_cpu = true;
            l->high_cpu_since = now;
        } else if (now - l->high_cpu_since >= CAPACITY_HIGH_CPU_S) {
            capacity_set(out, CAPACITY_MODE_PAUSED,
                         fmin(16.0, 0.1 * l->total_gb), 0.1,
                         "sustained_high_cpu", true);
            return;
        }
    } else {
        l->high_cpu = false;
    }
    if (l->ovr != CAPACITY_OVERRIDE_NONE && now >= l->ovr_expires) {
        l->ovr = CAPACITY_OVERRIDE_NONE; /* expired */
        l->ovr_expires = 0;
    }
    if (l->ovr == CAPACITY_OVERRIDE_FULL) {
        capacity_set(out, CAPACITY_MODE_FULL, 0.8 * l->total_gb, 1.0,
                     "manual_override", true);
        return;
    }
    if (l->ovr == CAPACITY_OVERRIDE_PAUSED) {
        capacity_set(out, CAPACITY_MODE_PAUSED, 0.0, 0.0, "manual_override",
                     true);
        return;
    }
    if (out->days_observed < CAPACITY_BOOTSTRAP_DAYS) {
        /* The deliberate fix: routable at what a medium score allows. */
        capacity_set(
            out, CAPACITY_MODE_LEARNING,
            capacity_ceiling_for(CAPACITY_LEARNING_SCORE, l->total_gb, NULL),
            CAPACITY_LEARNING_SCORE, "bootstrap_observation_period", false);
        return;
    }
    if (slot >= 0 && slot < CAPACITY_SLOTS) {
        samples = capacity_slot_samples(&l->slots[slot]);
        capacity_slot_avg(&l->slots[slot], now, &hist_cpu, &hist_mem);
    }
    score = capacity_availability(hist_cpu, samples, cpu, mem,
                                  capacity_trend(l, now));
    capacity_set(out, CAPACITY_MODE_PAUSED,
                 capacity_ceiling_for(score, l->total_gb, &mode), score, "",
                 false);
    out->mode = mode;
    if (score < 0.2)
        out->reason = samples > 0 && hist_cpu > 60.0 ? "historically_busy_slot"
                                                     : "currently_busy";
    else if (score < 0.4)
        out->reason = "low_availability";
    else if (score < 0.6)
        out->reason = "moderate_availability";
    else if (score < 0.8)
        out->reason = "good_availability";
    else
        out->reason = "high_availability";
}

void
capacity_observe(struct capacity_learner *l, int64_t now, int slot,
                 double cpu_pct, double mem_pct, struct capacity_decision *out)
{
    double cpu = capacity_clamp(cpu_pct, 0.0, 100.0);
    double mem = capacity_clamp(mem_pct, 0.0, 100.0);

    if (slot >= 0 && slot < CAPACITY_SLOTS) {
        capacity_slot_add(&l->slots[slot], now, cpu, mem);
        if (!l->have_first || now < l->first_obs) {
            l->have_first = true;
            l->first_obs = now;
        }
        l->dirty = true;
    }
    capacity_trend_add(l, now, cpu);
    if (now - l->last_prune >= CAPACITY_PRUNE_S || now < l->last_prune) {
        for (size_t i = 0; i < CAPACITY_SLOTS; i++)
            capacity_slot_prune(&l->slots[i], now - CAPACITY_RETENTION_S);
        l->last_prune = now;
    }
    capacity_decide(l, now, slot, cpu, mem, out);
}

/* ------------------------------------------------------------------ */
/* heatmap                                                             */

const char *
capacity_day_name(int day_idx)
{
    static const char *const days[7] = {"Mon", "Tue", "Wed", "Thu",
                                        "Fri", "Sat", "Sun"};

    return day_idx >= 0 && day_idx < 7 ? days[day_idx] : "?";
}

void
capacity_heatmap(const struct capacity_learner *l, int64_t now,
                 struct capacity_heat out[CAPACITY_SLOTS])
{
    for (int i = 0; i < CAPACITY_SLOTS; i++) {
        struct capacity_heat *h = &out[i];
        bool have;

        h->slot = i;
        h->day_idx = i / 24;
        h->hour = i % 24;
        h->samples = capacity_slot_samples(&l->slots[i]);
        have = capacity_slot_avg(&l->slots[i], now, &h->avg_cpu, &h->avg_mem);
        h->availability = have ? 1.0 - h->avg_cpu / 100.0 : 1.0;
    }
}

/* ------------------------------------------------------------------ */
/* persistence                                                         */

static int
capacity_file_path(const char *data_dir, const char *prefix,
                   const char *node_id, char *out, size_t n)
{
    char id[256];
    size_t len = 0;
    int r;

    for (const char *p = node_id != NULL ? node_id : ""; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';

        if (len + 1 >= sizeof(id))
            return -ENAMETOOLONG;
        id[len++] = ok ? c : '_';
    }
    id[len] = '\0';
    r = snprintf(out, n, "%s/%s%s%s.json", data_dir, prefix, len > 0 ? "-" : "",
                 id);
    if (r < 0 || (size_t)r >= n)
        return -ENAMETOOLONG;
    return 0;
}

int
capacity_state_path(const char *data_dir, const char *node_id, char *out,
                    size_t n)
{
    return capacity_file_path(data_dir, "herd-capacity", node_id, out, n);
}

bool
capacity_save_due(const struct capacity_learner *l, int64_t now)
{
    return l->dirty &&
           (now - l->last_save >= CAPACITY_SAVE_EVERY_S || now < l->last_save);
}

static cJSON *
capacity_to_json(const struct capacity_learner *l, int64_t now)
{
    cJSON *root = cJSON_CreateObject(), *slots, *o;

    if (root == NULL)
        return NULL;
    cJSON_AddNumberToObject(root, "version", 2);
    if (l->have_first)
        cJSON_AddNumberToObject(root, "first_observation",
                                (double)l->first_obs);
    else
        cJSON_AddNullToObject(root, "first_observation");
    if (l->ovr != CAPACITY_OVERRIDE_NONE) {
        o = cJSON_AddObjectToObject(root, "manual_override");
        if (o != NULL) {
            cJSON_AddStringToObject(
                o, "mode",
                l->ovr == CAPACITY_OVERRIDE_FULL ? "full" : "paused");
            cJSON_AddNumberToObject(o, "expires", (double)l->ovr_expires);
        }
    } else {
        cJSON_AddNullToObject(root, "manual_override");
    }
    slots = cJSON_AddArrayToObject(root, "slots");
    for (size_t i = 0; slots != NULL && i < CAPACITY_SLOTS; i++) {
        cJSON *slot = cJSON_CreateObject();
        cJSON *arr =
            slot != NULL ? cJSON_AddArrayToObject(slot, "buckets") : NULL;

        if (slot == NULL || arr == NULL) {
            cJSON_Delete(slot);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToArray(slots, slot);
        for (size_t j = 0; j < l->slots[i].nb; j++) {
            const struct capacity_bucket *b = &l->slots[i].b[j];
            cJSON *bj = cJSON_CreateObject();

            if (bj == NULL) {
                cJSON_Delete(root);
                return NULL;
            }
            cJSON_AddItemToArray(arr, bj);
            /* Means, so a bucket reads like one of ollama-herd's
             * {ts, cpu, mem} observations, plus its count and span. */
            cJSON_AddNumberToObject(
                bj, "ts", (double)b->first_ts + b->age_sum / (double)b->n);
            cJSON_AddNumberToObject(bj, "cpu", b->cpu_sum / (double)b->n);
            cJSON_AddNumberToObject(bj, "mem", b->mem_sum / (double)b->n);
            cJSON_AddNumberToObject(bj, "n", (double)b->n);
            cJSON_AddNumberToObject(bj, "first", (double)b->first_ts);
            cJSON_AddNumberToObject(bj, "last", (double)b->last_ts);
        }
    }
    cJSON_AddNumberToObject(root, "saved_at", (double)now);
    if (slots == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int
capacity_save(struct capacity_learner *l, const char *data_dir,
              const char *node_id, int64_t now)
{
    char path[CAPACITY_PATH_MAX];
    struct buf b;
    cJSON *root = NULL;
    int rc;

    buf_init(&b, CAPACITY_STATE_MAX);
    rc = capacity_state_path(data_dir, node_id, path, sizeof(path));
    if (rc != 0)
        goto out;
    root = capacity_to_json(l, now);
    if (root == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = json_print(root, &b);
    if (rc == 0)
        rc = buf_append(&b, "\n", 1);
    if (rc != 0)
        goto out;
    rc = fs_mkdir_p(data_dir, 0700);
    if (rc == 0)
        rc = fs_write_atomic(path, b.data, b.len);
    if (rc == 0) {
        l->last_save = now;
        l->dirty = false;
    }
out:
    cJSON_Delete(root);
    buf_cleanup(&b);
    return rc;
}

/* A finite number in [lo, hi] at key; false otherwise. */
static bool
capacity_num(const cJSON *obj, const char *key, double lo, double hi,
             double *out)
{
    const cJSON *v = json_get(obj, key);

    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi)
        return false;
    *out = v->valuedouble;
    return true;
}

/* Timestamps we accept: 1970 .. 2^40 s (year ~36,800); keeps the int64
 * conversions and differences far from overflow. */
#define CAPACITY_TS_MAX 1099511627776.0

/* One of our buckets, or one ollama-herd observation {ts, cpu, mem}. */
static int
capacity_load_bucket(struct capacity_slot *s, const cJSON *bj, bool legacy)
{
    struct capacity_bucket b;
    double ts, cpu, mem, n = 1.0, first, last;

    if (!cJSON_IsObject(bj) ||
        !capacity_num(bj, "ts", 0, CAPACITY_TS_MAX, &ts) ||
        !capacity_num(bj, "cpu", 0, 100, &cpu) ||
        !capacity_num(bj, "mem", 0, 100, &mem))
        return -EINVAL;
    first = last = ts;
    if (!legacy &&
        (!capacity_num(bj, "n", 1, CAPACITY_MAX_N, &n) || n != floor(n) ||
         !capacity_num(bj, "first", 0, CAPACITY_TS_MAX, &first) ||
         !capacity_num(bj, "last", first, CAPACITY_TS_MAX, &last) ||
         ts < floor(first) || ts > ceil(last)))
        return -EINVAL;
    b.first_ts = (int64_t)floor(first);
    b.last_ts = (int64_t)ceil(last);
    b.n = (uint32_t)n;
    b.age_sum = (ts - (double)b.first_ts) * n;
    b.cpu_sum = cpu * n;
    b.mem_sum = mem * n;
    capacity_slot_insert(s, &b);
    return 0;
}

static int
capacity_from_json(struct capacity_learner *l, const cJSON *root, int64_t now)
{
    const cJSON *slots, *slot, *v, *o;
    const char *mode;
    double d;
    size_t i = 0;

    if (!cJSON_IsObject(root))
        return -EINVAL;
    v = json_get(root, "first_observation");
    if (cJSON_IsNumber(v)) {
        if (!capacity_num(root, "first_observation", 0, CAPACITY_TS_MAX, &d))
            return -EINVAL;
        l->have_first = true;
        l->first_obs = (int64_t)floor(d);
    } else if (v != NULL && !cJSON_IsNull(v)) {
        return -EINVAL;
    }
    o = json_get(root, "manual_override");
    if (cJSON_IsObject(o)) {
        mode = json_get_str(o, "mode");
        if (mode == NULL || !capacity_num(o, "expires", 0, CAPACITY_TS_MAX, &d))
            return -EINVAL;
        if (strcmp(mode, "full") == 0)
            l->ovr = CAPACITY_OVERRIDE_FULL;
        else if (strcmp(mode, "paused") == 0)
            l->ovr = CAPACITY_OVERRIDE_PAUSED;
        else
            return -EINVAL;
        l->ovr_expires = (int64_t)ceil(d);
        if (l->ovr_expires <= now) { /* only an unexpired one survives */
            l->ovr = CAPACITY_OVERRIDE_NONE;
            l->ovr_expires = 0;
        }
    } else if (o != NULL && !cJSON_IsNull(o)) {
        return -EINVAL;
    }
    slots = json_get(root, "slots");
    if (!cJSON_IsArray(slots) || cJSON_GetArraySize(slots) != CAPACITY_SLOTS)
        return -EINVAL;
    cJSON_ArrayForEach(slot, slots)
    {
        const cJSON *arr = json_get(slot, "buckets"), *bj;
        bool legacy = false;

        if (arr == NULL) {
            arr = json_get(slot, "observations");
            legacy = true;
        }
        if (!cJSON_IsArray(arr))
            return -EINVAL;
        cJSON_ArrayForEach(bj, arr)
        {
            if (capacity_load_bucket(&l->slots[i], bj, legacy) != 0)
                return -EINVAL;
        }
        i++;
    }
    for (i = 0; i < CAPACITY_SLOTS; i++)
        capacity_slot_prune(&l->slots[i], now - CAPACITY_RETENTION_S);
    l->last_prune = now;
    return 0;
}

static int
capacity_load_file(struct capacity_learner *l, const char *path, int64_t now)
{
    struct capacity_learner *tmp = NULL;
    char err[128] = "";
    char *data = NULL;
    cJSON *root = NULL;
    size_t len = 0;
    int rc;

    rc = fs_read_file(path, CAPACITY_STATE_MAX, &data, &len);
    if (rc == -ENOENT)
        goto out;
    if (rc == -E2BIG) {
        snprintf(err, sizeof(err), "larger than %d bytes", CAPACITY_STATE_MAX);
        rc = -EINVAL;
    } else if (rc != 0) {
        log_warn("capacity: cannot read %s: %s", path, strerror(-rc));
        goto out;
    } else if (json_parse(data, len, CAPACITY_JSON_DEPTH, &root, err,
                          sizeof(err)) != 0) {
        rc = -EINVAL;
    } else if ((tmp = calloc(1, sizeof(*tmp))) == NULL) {
        rc = -ENOMEM;
        goto out;
    } else {
        tmp->total_gb = l->total_gb;
        tmp->meeting = l->meeting;
        tmp->meeting_ctx = l->meeting_ctx;
        rc = capacity_from_json(tmp, root, now);
        if (rc != 0)
            snprintf(err, sizeof(err), "unexpected structure or values");
    }
    if (rc == 0) {
        *l = *tmp;
        l->last_save = now;
        l->dirty = false;
    } else {
        log_warn("capacity: ignoring corrupt state file %s (%s); starting "
                 "fresh",
                 path, err);
    }
out:
    free(tmp);
    cJSON_Delete(root);
    free(data);
    return rc;
}

int
capacity_load(struct capacity_learner *l, const char *data_dir,
              const char *node_id, int64_t now)
{
    char path[CAPACITY_PATH_MAX];
    int rc;

    capacity_reset(l);
    rc = capacity_state_path(data_dir, node_id, path, sizeof(path));
    if (rc != 0)
        return rc;
    rc = capacity_load_file(l, path, now);
    if (rc != -ENOENT)
        return rc;
    /* First run of herd-node where the Python agent learnt before. */
    rc = capacity_file_path(data_dir, "capacity-learner", node_id, path,
                            sizeof(path));
    if (rc != 0)
        return rc;
    rc = capacity_load_file(l, path, now);
    if (rc == 0) {
        l->dirty = true; /* write it in our format at the next save */
        log_info("capacity: imported ollama-herd state from %s", path);
    }
    return rc;
}
