/*
 * agent.c - the herd-node agent loop (see agent.h).
 *
 * One cycle: the timer fires at a deadline of a drift-free grid, the
 * probe asks the local Ollama four things at once, and when it answers
 * the host metrics are read, the override file checked, the capacity
 * learner fed, and the heartbeat POSTed. The next deadline is computed
 * once the POST is over, from the previous deadline, with the backoff
 * that the outcome calls for: cycles never overlap, and a slow cycle
 * does not push the grid.
 *
 * States: IDLE (timer armed, or waiting for mDNS to name a coordinator)
 * -> PROBING -> POSTING -> IDLE; DRAINING (the drain POST) and CLOSING
 * (handles closing) are entered only through agent_stop(), the one way
 * out.
 */
#include "agent.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#include "herd/clock.h"
#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/mdns.h"

#include "herd/http_client.h"

#define GIB            (1024.0 * 1024.0 * 1024.0)
#define AGENT_MDNS_MAX 8 /* coordinators remembered from mDNS */

/* --- the JSON writer ----------------------------------------------------- */

/* A small writer with a sticky error, so payload code reads as a list of
 * fields. comma: a value was written at this level. */
struct jw {
    struct buf *b;
    int rc;
    bool comma;
};

static void
jw_raw(struct jw *w, const char *s)
{
    if (w->rc == 0)
        w->rc = buf_appends(w->b, s);
}

static void
jw_key(struct jw *w, const char *key)
{
    if (w->comma)
        jw_raw(w, ",");
    w->comma = true;
    if (key != NULL && w->rc == 0) {
        w->rc = json_append_str(w->b, key, strlen(key));
        jw_raw(w, ":");
    }
}

static void
jw_open(struct jw *w, const char *key, const char *brace)
{
    jw_key(w, key);
    jw_raw(w, brace);
    w->comma = false;
}

static void
jw_close(struct jw *w, const char *brace)
{
    jw_raw(w, brace);
    w->comma = true;
}

static void
jw_str(struct jw *w, const char *key, const char *s)
{
    jw_key(w, key);
    if (s == NULL)
        jw_raw(w, "null");
    else if (w->rc == 0)
        w->rc = json_append_str(w->b, s, strlen(s));
}

/* A float with prec decimals; never NaN or Inf in JSON. */
static void
jw_num(struct jw *w, const char *key, double v, int prec)
{
    jw_key(w, key);
    if (!isfinite(v))
        v = 0;
    if (w->rc == 0)
        w->rc = buf_appendf(w->b, "%.*f", prec, v);
}

static void
jw_int(struct jw *w, const char *key, int64_t v)
{
    jw_key(w, key);
    if (w->rc == 0)
        w->rc = buf_appendf(w->b, "%" PRId64, v);
}

static void
jw_lit(struct jw *w, const char *key, const char *literal)
{
    jw_key(w, key);
    jw_raw(w, literal);
}

static void
jw_bool(struct jw *w, const char *key, bool v)
{
    jw_lit(w, key, v ? "true" : "false");
}

static double
gib(uint64_t bytes)
{
    return (double)bytes / GIB;
}

/* --- the payload --------------------------------------------------------- */

static void
payload_memory(struct jw *w, const struct metrics_memory *m)
{
    struct metrics_memory zero = {0};

    if (m == NULL)
        m = &zero;
    jw_open(w, "memory", "{");
    jw_num(w, "total_gb", gib(m->total_bytes), 2);
    jw_num(w, "used_gb", gib(m->used_bytes), 2);
    jw_num(w, "available_gb", gib(m->available_bytes), 2);
    jw_str(w, "pressure", metrics_pressure_name(m->pressure));
    jw_num(w, "wired_gb", 0, 1);
    jw_num(w, "compressed_gb", 0, 1);
    jw_close(w, "}");
}

static void
payload_thermal(struct jw *w, const struct metrics_thermal *t)
{
    jw_open(w, "thermal", "{");
    if (t == NULL || t->state == METRICS_THERMAL_UNKNOWN) {
        jw_str(w, "state", "unknown");
        jw_lit(w, "temperature_c", "null");
        jw_str(w, "source", "");
    } else {
        jw_str(w, "state", metrics_thermal_name(t->state));
        jw_num(w, "temperature_c", t->temperature_c, 1);
        jw_str(w, "source", t->source);
    }
    jw_close(w, "}");
}

static void
payload_disk(struct jw *w, const struct metrics_disk *d)
{
    if (d == NULL) {
        jw_lit(w, "disk", "null");
        return;
    }
    jw_open(w, "disk", "{");
    jw_num(w, "total_gb", gib(d->total_bytes), 2);
    jw_num(w, "used_gb", gib(d->used_bytes), 2);
    jw_num(w, "available_gb", gib(d->available_bytes), 2);
    jw_close(w, "}");
}

static void
payload_loaded(struct jw *w, const struct probe_loaded *l)
{
    jw_open(w, NULL, "{");
    jw_str(w, "name", l->name);
    jw_num(w, "size_gb", l->size_gb, 2);
    jw_int(w, "requests_active", 0); /* Ollama does not say */
    jw_str(w, "parameter_size", l->parameter_size);
    jw_str(w, "quantization", l->quantization);
    jw_int(w, "context_length", l->context_length);
    jw_num(w, "size_vram_gb", l->size_vram_gb, 2);
    jw_str(w, "expires_at", l->expires_at[0] ? l->expires_at : NULL);
    jw_close(w, "}");
}

/* Ollama down: empty lists, so that nothing is routed to it.
 * num_parallel is also where ollama-herd after 0.6.1 reads it. */
static void
payload_ollama(struct jw *w, const struct probe_state *st, int num_parallel)
{
    bool up = st != NULL && st->healthy;

    jw_open(w, "ollama", "{");
    jw_open(w, "models_loaded", "[");
    for (size_t i = 0; up && i < st->n_loaded; i++)
        payload_loaded(w, &st->loaded[i]);
    jw_close(w, "]");
    jw_open(w, "models_available", "[");
    for (size_t i = 0; up && i < st->n_available; i++)
        jw_str(w, NULL, st->available[i]);
    jw_close(w, "]");
    jw_int(w, "requests_active", 0);
    jw_int(w, "num_parallel", num_parallel);
    jw_close(w, "}");
}

static void
payload_capacity(struct jw *w, const struct capacity_decision *d)
{
    jw_key(w, "capacity");
    if (d == NULL)
        jw_raw(w, "null");
    else if (w->rc == 0)
        w->rc = capacity_decision_json(d, w->b);
}

/* One object for all GPUs: the first one's name, sums of VRAM, mean
 * utilisation over the GPUs that report it. */
static void
payload_gpu(struct jw *w, const struct metrics_gpus *g)
{
    uint64_t total = 0, used = 0;
    double util = 0;
    unsigned n_util = 0;

    if (g == NULL || g->n == 0) {
        jw_lit(w, "gpu", "null");
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        total += g->gpu[i].vram_total_bytes;
        used += g->gpu[i].vram_used_bytes;
        if (g->gpu[i].utilization_valid) {
            util += g->gpu[i].utilization_pct;
            n_util++;
        }
    }
    jw_open(w, "gpu", "{");
    jw_str(w, "name", g->gpu[0].name);
    jw_int(w, "count", (int64_t)g->n);
    jw_num(w, "vram_total_gb", gib(total), 2);
    jw_num(w, "vram_used_gb", gib(used), 2);
    if (n_util > 0)
        jw_num(w, "utilization_pct", util / n_util, 1);
    else
        jw_lit(w, "utilization_pct", "null");
    jw_close(w, "}");
}

/* ollama-herd's extras we do not have: their defaults. */
static void
payload_absent_extras(struct jw *w)
{
    jw_lit(w, "image", "null");
    jw_int(w, "image_port", 0);
    jw_lit(w, "transcription", "null");
    jw_int(w, "transcription_port", 0);
    jw_lit(w, "vision_embedding", "null");
    jw_int(w, "vision_embedding_port", 0);
    jw_open(w, "vision_embedding_status", "{");
    jw_bool(w, "backend_available", false);
    jw_int(w, "cached_model_count", 0);
    jw_close(w, "}");
}

int
agent_payload_json(const struct agent_sample *s, struct buf *b)
{
    struct jw w = {.b = b};
    const struct probe_state *ol = s->ollama;
    int np = s->num_parallel > 0 ? s->num_parallel : 1;

    jw_open(&w, NULL, "{");
    jw_str(&w, "node_id", s->node_id);
    jw_str(&w, "arch", s->arch != NULL ? s->arch : agent_arch());
    jw_num(&w, "timestamp", s->timestamp, 6);
    jw_open(&w, "cpu", "{");
    jw_int(&w, "cores_physical", s->cores_physical ? s->cores_physical : 1);
    jw_num(&w, "utilization_pct", s->cpu_pct, 1);
    jw_close(&w, "}");
    payload_memory(&w, s->mem);
    payload_thermal(&w, s->thermal);
    payload_disk(&w, s->disk);
    payload_ollama(&w, ol, np);
    jw_str(&w, "ollama_host", s->ollama_host ? s->ollama_host : "");
    jw_str(&w, "lan_ip", s->lan_ip ? s->lan_ip : "");
    jw_bool(&w, "draining", false);
    payload_capacity(&w, s->capacity);
    jw_str(&w, "agent_version", HERD_VERSION);
    payload_absent_extras(&w);
    jw_int(&w, "connection_failures", (int64_t)s->connection_failures);
    jw_int(&w, "connection_failures_total",
           (int64_t)s->connection_failures_total);
    jw_str(&w, "chip", s->chip ? s->chip : "");
    jw_num(&w, "memory_bandwidth_gbps", s->bandwidth_gbps, 1);
    jw_lit(&w, "mlx_servers", "[]");
    jw_str(&w, "mlx_bind_host", "");
    /* Ours. */
    payload_gpu(&w, s->gpus);
    jw_int(&w, "num_parallel", np);
    jw_str(&w, "ollama_version",
           ol != NULL && ol->version[0] ? ol->version : NULL);
    jw_bool(&w, "ollama_healthy", ol != NULL && ol->healthy);
    jw_close(&w, "}");
    return w.rc;
}

int
agent_drain_json(const char *node_id, struct buf *b)
{
    struct jw w = {.b = b};

    jw_open(&w, NULL, "{");
    jw_str(&w, "node_id", node_id);
    jw_bool(&w, "draining", true);
    jw_close(&w, "}");
    return w.rc;
}

const char *
agent_arch(void)
{
    static char arch[65];
    struct utsname u;

    if (arch[0] != '\0')
        return arch;
    if (uname(&u) != 0)
        snprintf(arch, sizeof(arch), "unknown");
    else if (strcmp(u.machine, "arm64") == 0)
        snprintf(arch, sizeof(arch), "aarch64");
    else
        snprintf(arch, sizeof(arch), "%.64s", u.machine);
    return arch;
}

void
agent_chip(const char *cpu_model, const struct metrics_gpus *g, char *out,
           size_t n)
{
    const char *cpu = cpu_model != NULL ? cpu_model : "";

    if (g != NULL && g->n > 0 && cpu[0] != '\0')
        snprintf(out, n, "%s + %s", cpu, g->gpu[0].name);
    else if (g != NULL && g->n > 0)
        snprintf(out, n, "%s", g->gpu[0].name);
    else
        snprintf(out, n, "%s", cpu);
}

/* ollama-herd's server/hardware_lookup.py, GB/s. */
struct agent_bw {
    const char *key;
    double gbps;
};

/* Apple chips: the whole (normalised) chip string. */
static const struct agent_bw apple_bw[] = {
    {"apple m1", 68},        {"apple m1 pro", 200},   {"apple m1 max", 400},
    {"apple m1 ultra", 800}, {"apple m2", 100},       {"apple m2 pro", 200},
    {"apple m2 max", 400},   {"apple m2 ultra", 800}, {"apple m3", 100},
    {"apple m3 pro", 150},   {"apple m3 max", 400},   {"apple m3 ultra", 819},
    {"apple m4", 120},       {"apple m4 pro", 273},   {"apple m4 max", 546},
};

/* Discrete GPUs: a substring, first match wins. */
static const struct agent_bw gpu_bw[] = {
    {"h100", 3350},     {"a100", 2039},     {"l40", 864},
    {"rtx 5090", 1792}, {"rtx 4090", 1008}, {"rtx 4080", 716},
    {"rtx 3090", 936},  {"rtx 3080", 760},  {"rtx 3070", 448},
    {"rtx 2080", 616},  {"rtx 2070", 448},
};

double
agent_bandwidth_gbps(const char *chip)
{
    char norm[256];
    size_t o = 0;
    bool space = false;

    /* Lower case, whitespace collapsed and trimmed. */
    for (const char *p = chip != NULL ? chip : ""; *p && o + 1 < sizeof(norm);
         p++) {
        if (*p == ' ' || *p == '\t') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < sizeof(norm))
            norm[o++] = ' ';
        space = false;
        norm[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    }
    norm[o] = '\0';
    for (size_t i = 0; i < sizeof(apple_bw) / sizeof(apple_bw[0]); i++) {
        if (strcmp(norm, apple_bw[i].key) == 0)
            return apple_bw[i].gbps;
    }
    for (size_t i = 0; i < sizeof(gpu_bw) / sizeof(gpu_bw[0]); i++) {
        if (strstr(norm, gpu_bw[i].key) != NULL)
            return gpu_bw[i].gbps;
    }
    return 0;
}

/* --- schedule and backoff ------------------------------------------------ */

int64_t
agent_retry_delay_ns(int64_t interval_ns, uint64_t failures)
{
    int64_t cap = (int64_t)AGENT_BACKOFF_CAP_S * NS_PER_SEC, d = interval_ns;

    if (interval_ns <= 0)
        interval_ns = d = 1;
    if (cap < interval_ns)
        cap = interval_ns;
    for (uint64_t k = AGENT_BACKOFF_GRACE; k < failures && d < cap; k++)
        d = d > cap / 2 ? cap : d * 2;
    return d < cap ? d : cap;
}

uint64_t
agent_next_deadline(uint64_t prev_ns, int64_t period_ns, uint64_t now_ns)
{
    uint64_t p = period_ns > 0 ? (uint64_t)period_ns : 1, next = prev_ns + p;

    if (next > now_ns)
        return next;
    /* Late: skip the missed ticks, keep the grid. */
    return prev_ns + ((now_ns - prev_ns) / p + 1) * p;
}

/* --- link state ---------------------------------------------------------- */

static enum agent_link
link_classify(int err, int status)
{
    if (err != 0)
        return AGENT_LINK_UNREACHABLE;
    if (status == 200)
        return AGENT_LINK_OK;
    if (status == 401 || status == 403)
        return AGENT_LINK_REFUSED;
    return AGENT_LINK_REJECTED;
}

bool
agent_link_update(struct agent_link_state *st, int err, int status,
                  const char *errmsg, const char *url, bool has_token,
                  char *msg, size_t n, enum log_level *lvl)
{
    enum agent_link prev = st->link, now = link_classify(err, status);
    uint64_t failed = st->failures;

    st->link = now;
    if (now == AGENT_LINK_OK) {
        st->failures = 0;
    } else {
        st->failures++;
        st->failures_total++;
    }
    if (now == prev)
        return false;
    if (url == NULL)
        url = "";
    switch (now) {
    case AGENT_LINK_OK:
        *lvl = LL_INFO;
        if (prev == AGENT_LINK_UNKNOWN)
            snprintf(msg, n, "coordinator %s accepted our first heartbeat",
                     url);
        else
            snprintf(msg, n,
                     "coordinator reachable again after %" PRIu64
                     " failure%s (%s)",
                     failed, failed == 1 ? "" : "s", url);
        break;
    case AGENT_LINK_UNREACHABLE:
        *lvl = LL_WARN;
        snprintf(msg, n,
                 "coordinator unreachable: %s (%s); retrying with backoff",
                 errmsg != NULL && *errmsg ? errmsg : "transfer failed", url);
        break;
    case AGENT_LINK_REFUSED:
        *lvl = LL_ERROR;
        snprintf(msg, n,
                 "coordinator refused our token (HTTP %d from %s): %s; "
                 "retrying with backoff",
                 status, url,
                 has_token ? "check that --token / FLEET_NODE_TOKEN matches "
                             "its FLEET_TOKEN"
                           : "it requires one; set --token or "
                             "FLEET_NODE_TOKEN to its FLEET_TOKEN");
        break;
    default:
        *lvl = LL_WARN;
        snprintf(msg, n,
                 "coordinator rejected the heartbeat with HTTP %d (%s); "
                 "retrying with backoff",
                 status, url);
        break;
    }
    return true;
}

/* --- override file ------------------------------------------------------- */

int
agent_override_path(const char *data_dir, const char *node_id, char *out,
                    size_t n)
{
    char id[256];
    size_t i = 0;
    int len;

    for (const char *p = node_id; *p && i + 1 < sizeof(id); p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
                  *p == '-';

        id[i++] = ok ? *p : '_';
    }
    id[i] = '\0';
    len = snprintf(out, n, "%s/capacity-override-%s.json", data_dir, id);
    return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

static const char *
override_name(enum capacity_override m)
{
    return m == CAPACITY_OVERRIDE_FULL     ? "full"
           : m == CAPACITY_OVERRIDE_PAUSED ? "paused"
                                           : "none";
}

int
agent_override_json(enum capacity_override mode, double expires, double set_at,
                    struct buf *b)
{
    struct jw w = {.b = b};

    jw_open(&w, NULL, "{");
    jw_str(&w, "mode", override_name(mode));
    if (mode == CAPACITY_OVERRIDE_NONE)
        jw_lit(&w, "expires", "null");
    else
        jw_num(&w, "expires", expires, 3);
    jw_num(&w, "set_at", set_at, 3);
    jw_close(&w, "}");
    jw_raw(&w, "\n");
    return w.rc;
}

int
agent_override_parse(const char *body, size_t len, double now,
                     enum capacity_override *mode, double *expires,
                     const char **why)
{
    char err[128];
    const cJSON *m, *e;
    cJSON *root = NULL;
    int rc = -EINVAL;

    *mode = CAPACITY_OVERRIDE_NONE;
    *expires = 0;
    if (json_parse(body, len, 4, &root, err, sizeof(err)) != 0 ||
        !cJSON_IsObject(root)) {
        *why = "not a JSON object";
        goto out;
    }
    m = json_get(root, "mode");
    e = json_get(root, "expires");
    if (!cJSON_IsString(m) ||
        capacity_override_parse(m->valuestring, mode) != 0) {
        *why = "\"mode\" must be \"full\", \"paused\" or \"none\"";
        goto out;
    }
    if (*mode != CAPACITY_OVERRIDE_NONE &&
        !(cJSON_IsNumber(e) && isfinite(e->valuedouble))) {
        *why = "\"expires\" must be a Unix time in seconds";
        *mode = CAPACITY_OVERRIDE_NONE;
        goto out;
    }
    if (*mode != CAPACITY_OVERRIDE_NONE &&
        e->valuedouble > now + AGENT_OVERRIDE_MAX_S) {
        *why = "\"expires\" is more than 400 days away";
        *mode = CAPACITY_OVERRIDE_NONE;
        goto out;
    }
    if (*mode != CAPACITY_OVERRIDE_NONE)
        *expires = e->valuedouble;
    if (*mode != CAPACITY_OVERRIDE_NONE && *expires <= now) {
        *mode = CAPACITY_OVERRIDE_NONE;
        *expires = 0;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

void
agent_override_decision(enum capacity_override mode, double total_gb,
                        struct capacity_decision *out)
{
    bool full = mode == CAPACITY_OVERRIDE_FULL;

    *out = (struct capacity_decision){
        .mode = full ? CAPACITY_MODE_FULL : CAPACITY_MODE_PAUSED,
        .ceiling_gb = full ? 0.8 * total_gb : 0,
        .availability_score = full ? 1.0 : 0.0,
        .reason = "manual_override",
        .override_active = true,
    };
}

/* --- the agent ----------------------------------------------------------- */

enum agent_state {
    AGENT_IDLE,
    AGENT_PROBING,
    AGENT_POSTING,
    AGENT_DRAINING,
    AGENT_CLOSING,
    AGENT_STATE_COUNT
};

static const char *const agent_state_names[] = {
    "idle", "probing", "posting", "draining", "closing",
};
_Static_assert(sizeof(agent_state_names) / sizeof(agent_state_names[0]) ==
                   AGENT_STATE_COUNT,
               "agent_state_names out of sync with enum agent_state");

struct agent_mdns_entry {
    char name[128];
    char url[AGENT_URL_MAX];
    uint64_t seq; /* order of FOUND events: the newest wins */
};

struct agent {
    uv_loop_t *loop; /* borrowed */
    enum agent_state state;
    /* settings (owned copies) */
    char *node_id, *ollama_host, *data_dir, *token, *ready_file;
    bool learn_capacity;
    int64_t interval_ns;
    int num_parallel;
    char auth_header[600]; /* "Authorization: Bearer ..." or "" */
    /* loop resources */
    struct http_client *http; /* owned */
    struct probe *probe;      /* owned */
    uv_timer_t timer;
    bool timer_inited;
    struct http_call *post; /* the heartbeat or drain POST in flight */
    int open_parts;         /* closes still to be reported */
    void (*stop_done)(void *);
    void *stop_ud;
    /* schedule */
    uint64_t deadline_ns; /* of the cycle running or last run */
    bool armed;           /* the timer holds the next deadline */
    /* metrics */
    struct metrics metrics;
    bool metrics_inited;
    struct metrics_cpuinfo cpuinfo;
    struct metrics_gpus gpus; /* read each cycle; names fixed */
    char chip[METRICS_MODEL_MAX + METRICS_GPU_NAME + 8];
    double bandwidth_gbps;
    unsigned warned; /* WARN_* bits: sources already reported failing */
    /* capacity */
    struct capacity_learner *learner; /* owned; NULL without learning */
    double total_gb;
    char override_path[1024];
    bool override_seen;
    struct stat override_st; /* identity of the file last applied */
    bool override_present;
    enum capacity_override ov_mode; /* last applied */
    double ov_expires;
    /* coordinator */
    char router_url[AGENT_URL_MAX]; /* "" while discovering */
    bool discover;                  /* the URL comes from mDNS */
    struct agent_link_state link;
    enum { AGENT_OLLAMA_UNKNOWN, AGENT_OLLAMA_UP, AGENT_OLLAMA_DOWN } ollama;
    bool ready_written;
    struct buf body;
    struct mdns *mdns; /* owned; NULL without discovery */
    struct agent_mdns_entry found[AGENT_MDNS_MAX];
    size_t n_found;
    uint64_t found_seq;
};

#define WARN_MEMORY  0x1u
#define WARN_DISK    0x2u
#define WARN_CPU     0x4u
#define WARN_PAYLOAD 0x8u
#define WARN_SAVE    0x10u

static void agent_cycle(struct agent *a);
static void agent_close(struct agent *a);

static void
agent_enter(struct agent *a, enum agent_state next)
{
    log_trace(TRACE_SCHED, "agent: %s -> %s", agent_state_names[a->state],
              agent_state_names[next]);
    a->state = next;
}

/* Logs a failing metrics source the first time only. */
static void
agent_warn_once(struct agent *a, unsigned bit, const char *what, int rc)
{
    if (a->warned & bit)
        return;
    a->warned |= bit;
    log_warn("%s: %s (reported as unknown; not logged again)", what,
             strerror(rc < 0 ? -rc : rc));
}

static char *
dup_or_empty(const char *s)
{
    char *d = strdup(s != NULL ? s : "");

    if (d == NULL)
        fatal("out of memory");
    return d;
}

static void
strip_slashes(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

static int
agent_setup_capacity(struct agent *a, char *err, size_t errlen)
{
    struct metrics_memory mem;
    int rc;

    rc = metrics_read_memory(&a->metrics, &mem);
    a->total_gb = rc == 0 ? gib(mem.total_bytes) : 0;
    if (!a->learn_capacity)
        return 0;
    a->learner = a->total_gb > 0 ? capacity_new(a->total_gb) : NULL;
    if (a->learner == NULL) {
        snprintf(err, errlen,
                 "--learn-capacity: cannot read the machine's memory size");
        return -EINVAL;
    }
    rc = capacity_load(a->learner, a->data_dir, a->node_id,
                       clock_wall_ns() / NS_PER_SEC);
    if (rc == 0)
        log_info("capacity learner: state loaded from %s", a->data_dir);
    else if (rc != -ENOENT && rc != -EINVAL)
        log_warn("capacity learner: cannot read its state in %s: %s",
                 a->data_dir, strerror(-rc));
    return 0;
}

static void
agent_setup_hardware(struct agent *a)
{
    int rc = metrics_read_cpuinfo(&a->metrics, &a->cpuinfo);

    if (rc != 0) {
        log_warn("/proc/cpuinfo: %s (chip and cores unknown)", strerror(-rc));
        a->cpuinfo.cores_physical = 1;
    }
    if (metrics_gpu_open(&a->metrics, NULL) == 0)
        (void)metrics_read_gpus(&a->metrics, &a->gpus);
    agent_chip(a->cpuinfo.model, &a->gpus, a->chip, sizeof(a->chip));
    a->bandwidth_gbps = agent_bandwidth_gbps(a->chip);
    if (a->gpus.n > 0)
        log_info("GPU: %zu x %s via NVML", a->gpus.n, a->gpus.gpu[0].name);
}

/* A URL herd-node can use: plain http:// (its HTTP client has no TLS).
 * NULL and "" mean "not set" and pass. */
static int
agent_check_url(const char *what, const char *url, char *err, size_t errlen)
{
    bool https = strncasecmp(url ? url : "", "https://", 8) == 0;
    char why[300];
    int rc;

    if (url == NULL || *url == '\0')
        return 0;
    rc = http_url_check(url, why, sizeof(why));
    if (rc == 0)
        return 0;
    if (https && strcmp(what, "Ollama URL") == 0)
        snprintf(err, errlen,
                 "Ollama URL %.300s: https is not supported by herd-node; "
                 "Ollama itself serves plain http (http://localhost:11434)",
                 url);
    else if (https)
        snprintf(err, errlen,
                 "%s %.300s: https is not supported by herd-node; put the "
                 "coordinator behind plain http on the LAN or use a local "
                 "proxy",
                 what, url);
    else if (rc == -EPROTONOSUPPORT)
        snprintf(err, errlen,
                 "%s %.300s: unsupported scheme (herd-node speaks plain "
                 "http://)",
                 what, url);
    else
        snprintf(err, errlen, "%s %s", what, why);
    return rc;
}

struct agent *
agent_new(uv_loop_t *loop, const struct agent_config *cfg, char *err,
          size_t errlen)
{
    struct agent *a;
    int rc;

    if (cfg->node_id == NULL || cfg->node_id[0] == '\0' ||
        !(cfg->interval_s > 0) || cfg->ollama_host == NULL ||
        cfg->data_dir == NULL) {
        snprintf(err, errlen,
                 "agent: node id, Ollama URL, data directory "
                 "and a positive interval are required");
        return NULL;
    }
    if (cfg->router_url != NULL && strlen(cfg->router_url) >= AGENT_URL_MAX) {
        snprintf(err, errlen, "router URL is over %d bytes", AGENT_URL_MAX);
        return NULL;
    }
    if (agent_check_url("Ollama URL", cfg->ollama_host, err, errlen) != 0 ||
        agent_check_url("router URL", cfg->router_url, err, errlen) != 0)
        return NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->node_id = dup_or_empty(cfg->node_id);
    a->ollama_host = dup_or_empty(cfg->ollama_host);
    strip_slashes(a->ollama_host);
    a->data_dir = dup_or_empty(cfg->data_dir);
    a->token = dup_or_empty(cfg->token);
    a->ready_file = cfg->ready_file ? dup_or_empty(cfg->ready_file) : NULL;
    a->learn_capacity = cfg->learn_capacity;
    a->interval_ns = (int64_t)(cfg->interval_s * (double)NS_PER_SEC);
    a->num_parallel = cfg->num_parallel > 0 ? cfg->num_parallel : 1;
    snprintf(a->router_url, sizeof(a->router_url), "%s",
             cfg->router_url ? cfg->router_url : "");
    strip_slashes(a->router_url);
    a->discover = a->router_url[0] == '\0';
    if (a->token[0] != '\0')
        snprintf(a->auth_header, sizeof(a->auth_header),
                 "Authorization: Bearer %.500s", a->token);
    buf_init(&a->body, AGENT_PAYLOAD_MAX);
    rc = agent_override_path(a->data_dir, a->node_id, a->override_path,
                             sizeof(a->override_path));
    if (rc == 0 && metrics_init(&a->metrics, "/") == 0) {
        a->metrics_inited = true;
        rc = agent_setup_capacity(a, err, errlen);
    } else if (rc == 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "metrics: cannot initialise");
    } else {
        snprintf(err, errlen, "data directory path is too long");
    }
    if (rc != 0) {
        agent_free(a);
        return NULL;
    }
    agent_setup_hardware(a);
    return a;
}

void
agent_free(struct agent *a)
{
    if (a == NULL)
        return;
    if (a->metrics_inited)
        metrics_cleanup(&a->metrics);
    capacity_free(a->learner);
    buf_cleanup(&a->body);
    free(a->node_id);
    free(a->ollama_host);
    free(a->data_dir);
    free(a->token);
    free(a->ready_file);
    free(a);
}

/* --- scheduling ---------------------------------------------------------- */

static void
agent_on_timer(uv_timer_t *t)
{
    struct agent *a = t->data;

    a->armed = false;
    agent_cycle(a);
}

/* Arms the timer for deadline (monotonic ns), rounding up to the ms. */
static void
agent_arm(struct agent *a, uint64_t deadline)
{
    uint64_t now = clock_mono_ns(), ms;

    ms = deadline > now ? (deadline - now + NS_PER_MS - 1) / NS_PER_MS : 0;
    a->deadline_ns = deadline;
    a->armed = true;
    uv_update_time(a->loop);
    uv_timer_start(&a->timer, agent_on_timer, ms, 0);
}

/* After a cycle: the next point of the grid, with the backoff the
 * failures call for. */
static void
agent_schedule_next(struct agent *a)
{
    int64_t delay = agent_retry_delay_ns(a->interval_ns, a->link.failures);

    agent_enter(a, AGENT_IDLE);
    agent_arm(a, agent_next_deadline(a->deadline_ns, delay, clock_mono_ns()));
}

/* --- mDNS ---------------------------------------------------------------- */

static void agent_on_mdns(enum mdns_event ev, const struct mdns_service *s,
                          void *ud);

static void agent_on_part_closed(void *ud);

/*
 * The newest coordinator still advertised becomes the one we use. With
 * none left, the last one stays in use: an advertisement also vanishes
 * when the local avahi-daemon restarts, and a coordinator that is really
 * gone only costs quiet, backed-off failures until another is found.
 */
static void
agent_pick_found(struct agent *a)
{
    const struct agent_mdns_entry *best = NULL;

    for (size_t i = 0; i < a->n_found; i++) {
        if (best == NULL || a->found[i].seq > best->seq)
            best = &a->found[i];
    }
    if (best == NULL)
        return;
    if (strcmp(best->url, a->router_url) == 0)
        return;
    log_info("reporting to coordinator \"%s\" at %s (found via mDNS)",
             best->name, best->url);
    snprintf(a->router_url, sizeof(a->router_url), "%s", best->url);
    /* Try the new address now rather than at the next (backoff) tick; the
     * failure count stays, so a dead one found again backs off as well. */
    if (a->state == AGENT_IDLE) {
        uv_timer_stop(&a->timer);
        agent_arm(a, clock_mono_ns());
    }
}

static void
agent_mdns_found(struct agent *a, const struct mdns_service *s)
{
    struct agent_mdns_entry *e = NULL;
    const char *addr = s->addr && *s->addr ? s->addr : s->host;

    if (addr == NULL || *addr == '\0' || s->port == 0 || s->port > 65535)
        return;
    for (size_t i = 0; i < a->n_found && e == NULL; i++) {
        if (strcmp(a->found[i].name, s->name ? s->name : "") == 0)
            e = &a->found[i];
    }
    if (e == NULL && a->n_found < AGENT_MDNS_MAX)
        e = &a->found[a->n_found++];
    if (e == NULL) { /* full: replace the oldest */
        e = &a->found[0];
        for (size_t i = 1; i < a->n_found; i++) {
            if (a->found[i].seq < e->seq)
                e = &a->found[i];
        }
    }
    snprintf(e->name, sizeof(e->name), "%s", s->name ? s->name : "");
    if (strchr(addr, ':') != NULL)
        snprintf(e->url, sizeof(e->url), "http://[%s]:%u", addr, s->port);
    else
        snprintf(e->url, sizeof(e->url), "http://%s:%u", addr, s->port);
    e->seq = ++a->found_seq;
}

static void
agent_mdns_lost(struct agent *a, const struct mdns_service *s)
{
    for (size_t i = 0; i < a->n_found; i++) {
        if (strcmp(a->found[i].name, s->name ? s->name : "") != 0)
            continue;
        if (strcmp(a->found[i].url, a->router_url) == 0)
            log_info("coordinator \"%s\" at %s left mDNS%s", a->found[i].name,
                     a->found[i].url,
                     a->n_found == 1 ? "; no other is advertised, so we "
                                       "keep reporting to it"
                                     : "");
        a->found[i] = a->found[--a->n_found];
        break;
    }
}

static void
agent_on_mdns(enum mdns_event ev, const struct mdns_service *s, void *ud)
{
    struct agent *a = ud;

    if (a->state >= AGENT_DRAINING || s == NULL)
        return;
    if (ev == MDNS_FOUND)
        agent_mdns_found(a, s);
    else
        agent_mdns_lost(a, s);
    agent_pick_found(a);
}

static int
agent_mdns_start(struct agent *a, char *err, size_t errlen)
{
    char why[200];
    int rc;

    a->mdns = mdns_new(a->loop, why, sizeof(why));
    if (a->mdns == NULL) {
        snprintf(err, errlen,
                 "no --router-url given and mDNS discovery is unavailable "
                 "(%s): pass --router-url http://<coordinator>:11435 or set "
                 "FLEET_NODE_ROUTER_URL",
                 why);
        return -ENOTSUP;
    }
    rc = mdns_browse(a->mdns, AGENT_MDNS_TYPE, agent_on_mdns, a);
    if (rc != 0) {
        snprintf(err, errlen, "mDNS browse for %s: %s", AGENT_MDNS_TYPE,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

static void
agent_mdns_close(struct agent *a)
{
    if (a->mdns != NULL) {
        a->open_parts++;
        mdns_free(a->mdns, agent_on_part_closed, a);
        a->mdns = NULL;
    }
}

/* After AGENT_REBROWSE_AFTER failures with a discovered coordinator:
 * forget what mDNS said and ask again; the current URL stays in use until
 * an answer replaces it. */
static void
agent_mdns_rebrowse(struct agent *a)
{
    char err[400];

    log_info("coordinator at %s failed %" PRIu64 " heartbeats; browsing "
             "mDNS again",
             a->router_url, a->link.failures);
    agent_mdns_close(a);
    a->n_found = 0;
    if (agent_mdns_start(a, err, sizeof(err)) != 0)
        log_warn("%s", err);
}

/* --- one cycle ------------------------------------------------------------ */

/* The override file decides: applied whenever it changes (or vanishes). */
static void
agent_override_poll(struct agent *a, double now)
{
    enum capacity_override mode = CAPACITY_OVERRIDE_NONE;
    struct stat st;
    const char *why = "";
    double expires = 0;
    char *txt = NULL;
    size_t len;
    bool present = stat(a->override_path, &st) == 0, first;

    if (a->override_seen && present == a->override_present &&
        (!present || (st.st_ino == a->override_st.st_ino &&
                      st.st_size == a->override_st.st_size &&
                      st.st_mtim.tv_sec == a->override_st.st_mtim.tv_sec &&
                      st.st_mtim.tv_nsec == a->override_st.st_mtim.tv_nsec)))
        return;
    first = !a->override_seen;
    a->override_seen = true;
    a->override_present = present;
    if (present) {
        a->override_st = st;
        if (fs_read_file(a->override_path, AGENT_OVERRIDE_MAX, &txt, &len) !=
                0 ||
            agent_override_parse(txt, len, now, &mode, &expires, &why) != 0) {
            log_warn("capacity override file %s: %s (ignored)",
                     a->override_path, *why ? why : "unreadable");
            free(txt);
            return;
        }
        free(txt);
    }
    if (!first && mode == a->ov_mode && expires == a->ov_expires)
        return;
    a->ov_mode = mode;
    a->ov_expires = expires;
    if (a->learner != NULL) {
        (void)capacity_set_override(a->learner, mode, (int64_t)now,
                                    (int64_t)ceil(expires - now));
        (void)capacity_save(a->learner, a->data_dir, a->node_id, (int64_t)now);
    }
    if (mode != CAPACITY_OVERRIDE_NONE)
        log_info("capacity override: %s for %.1f more hours (%s)",
                 override_name(mode), (expires - now) / 3600, a->override_path);
    else if (!first)
        log_info("capacity override cleared");
}

/* The capacity block of this cycle; NULL for "capacity": null. */
static const struct capacity_decision *
agent_capacity(struct agent *a, double now, double cpu,
               const struct metrics_memory *mem, struct capacity_decision *d)
{
    double mem_pct = 0;
    int rc;

    agent_override_poll(a, now);
    if (a->learner == NULL) {
        if (a->ov_mode != CAPACITY_OVERRIDE_NONE && now >= a->ov_expires) {
            log_info("capacity override expired");
            a->ov_mode = CAPACITY_OVERRIDE_NONE;
        }
        if (a->ov_mode == CAPACITY_OVERRIDE_NONE)
            return NULL;
        agent_override_decision(a->ov_mode, a->total_gb, d);
        return d;
    }
    if (mem != NULL && mem->total_bytes > 0)
        mem_pct = (double)mem->used_bytes / (double)mem->total_bytes * 100;
    capacity_observe(a->learner, (int64_t)now,
                     capacity_slot_of_time((int64_t)now), cpu, mem_pct, d);
    if (capacity_save_due(a->learner, (int64_t)now)) {
        rc = capacity_save(a->learner, a->data_dir, a->node_id, (int64_t)now);
        if (rc != 0)
            agent_warn_once(a, WARN_SAVE, "capacity state save", rc);
    }
    return d;
}

static void agent_on_post_done(struct http_call *call, int err,
                               const char *errmsg, void *ud);

static void
agent_post(struct agent *a, const char *what, unsigned connect_ms,
           unsigned total_ms)
{
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    char url[AGENT_URL_MAX + 16], err[256];
    struct http_call_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = a->body.data,
        .body_len = a->body.len,
        .connect_timeout_ms = connect_ms,
        .total_timeout_ms = total_ms,
        .max_body = AGENT_RESPONSE_MAX,
        .on_done = agent_on_post_done,
        .ud = a,
    };

    if (a->auth_header[0] != '\0')
        headers[1] = a->auth_header;
    snprintf(url, sizeof(url), "%s/heartbeat", a->router_url);
    a->post = http_call_start(a->http, &o, err, sizeof(err));
    if (a->post == NULL) {
        log_warn("%s: cannot start the POST to %s: %s", what, url, err);
        if (a->state == AGENT_DRAINING)
            agent_close(a);
        else
            agent_on_post_done(NULL, -EIO, err, a);
    }
}

static unsigned
clamp_ms(int64_t ns, unsigned lo, unsigned hi)
{
    int64_t ms = ns / NS_PER_MS;

    return ms < lo ? lo : ms > hi ? hi : (unsigned)ms;
}

static void
agent_collect_and_post(struct agent *a, const struct probe_state *st)
{
    struct metrics_memory mem;
    struct metrics_disk disk;
    struct metrics_thermal thermal;
    struct capacity_decision cap;
    char lan[64], public_url[AGENT_URL_MAX];
    double now = (double)clock_wall_ns() / (double)NS_PER_SEC, cpu = 0;
    bool have_mem, have_disk;
    int rc;

    rc = metrics_cpu_sample(&a->metrics, &cpu);
    if (rc != 0 && rc != -EAGAIN)
        agent_warn_once(a, WARN_CPU, "/proc/stat", rc);
    have_mem = (rc = metrics_read_memory(&a->metrics, &mem)) == 0;
    if (!have_mem)
        agent_warn_once(a, WARN_MEMORY, "/proc/meminfo", rc);
    have_disk = (rc = metrics_read_disk(&a->metrics, "/", &disk)) == 0;
    if (!have_disk)
        agent_warn_once(a, WARN_DISK, "disk usage of /", rc);
    (void)metrics_read_thermal(&a->metrics, &thermal);
    if (a->gpus.n > 0)
        (void)metrics_read_gpus(&a->metrics, &a->gpus);
    (void)metrics_lan_ip(lan, sizeof(lan));
    probe_public_url(a->ollama_host, lan, public_url, sizeof(public_url));

    struct agent_sample s = {
        .node_id = a->node_id,
        .arch = agent_arch(),
        .timestamp = now,
        .cores_physical = a->cpuinfo.cores_physical,
        .cpu_pct = cpu,
        .mem = have_mem ? &mem : NULL,
        .thermal = &thermal,
        .disk = have_disk ? &disk : NULL,
        .gpus = &a->gpus,
        .ollama = st,
        .ollama_host = public_url,
        .lan_ip = lan,
        .capacity = agent_capacity(a, now, cpu, have_mem ? &mem : NULL, &cap),
        .chip = a->chip,
        .bandwidth_gbps = a->bandwidth_gbps,
        .num_parallel = a->num_parallel,
        .connection_failures = a->link.failures,
        .connection_failures_total = a->link.failures_total,
    };

    buf_reset(&a->body);
    rc = agent_payload_json(&s, &a->body);
    if (rc != 0) {
        agent_warn_once(a, WARN_PAYLOAD, "heartbeat payload", rc);
        agent_schedule_next(a);
        return;
    }
    agent_enter(a, AGENT_POSTING);
    agent_post(a, "heartbeat", clamp_ms(a->interval_ns, 1000, 5000),
               clamp_ms(2 * a->interval_ns, 2000, 10000));
}

static void
agent_on_probe_done(struct probe *p, const struct probe_state *st, void *ud)
{
    struct agent *a = ud;

    (void)p;
    if (a->state != AGENT_PROBING)
        return;
    /* Like the coordinator's link: a line when it changes, not per cycle. */
    if (!st->healthy && a->ollama != AGENT_OLLAMA_DOWN)
        log_warn("Ollama at %s is not answering (%s); reporting it unhealthy "
                 "with no models",
                 a->ollama_host, st->error[0] ? st->error : "no reason given");
    else if (st->healthy && a->ollama == AGENT_OLLAMA_DOWN)
        log_info("Ollama at %s answers again", a->ollama_host);
    a->ollama = st->healthy ? AGENT_OLLAMA_UP : AGENT_OLLAMA_DOWN;
    agent_collect_and_post(a, st);
}

static void
agent_cycle(struct agent *a)
{
    if (a->state != AGENT_IDLE)
        return;
    if (a->router_url[0] == '\0') /* mDNS has not answered: wait for it */
        return;
    agent_enter(a, AGENT_PROBING);
    if (probe_run(a->probe, clamp_ms(a->interval_ns, 1000, 5000),
                  agent_on_probe_done, a) != 0)
        agent_schedule_next(a); /* cannot happen: cycles never overlap */
}

/* "commands" of a 200 reply: none is ours to act on yet. */
static void
agent_handle_reply(struct agent *a, const char *body, size_t len)
{
    char err[128];
    const cJSON *cmds, *c;
    cJSON *root = NULL;

    (void)a;
    if (len == 0 || json_parse(body, len, 16, &root, err, sizeof(err)) != 0)
        return;
    cmds = json_get(root, "commands");
    if (!cJSON_IsArray(cmds))
        cmds = NULL;
    cJSON_ArrayForEach(c, cmds)
    {
        const char *type = json_get_str(c, "type");

        if (type != NULL && strcmp(type, "restart_ollama") == 0)
            log_debug("coordinator command restart_ollama ignored: this "
                      "agent does not manage Ollama's process");
        else
            log_debug("coordinator command \"%.64s\" ignored: unknown",
                      type != NULL ? type : "(no type)");
    }
    cJSON_Delete(root);
}

static void
agent_write_ready(struct agent *a)
{
    int rc;

    if (a->ready_written || a->ready_file == NULL)
        return;
    a->ready_written = true;
    rc = fs_write_atomic(a->ready_file, "ok\n", 3);
    if (rc != 0)
        log_error("ready file %s: %s", a->ready_file, strerror(-rc));
}

static void
agent_on_post_done(struct http_call *call, int err, const char *errmsg,
                   void *ud)
{
    struct agent *a = ud;
    int status = call != NULL ? http_call_status(call) : 0;
    enum log_level lvl;
    char msg[512];
    const char *body;
    size_t len = 0;

    a->post = NULL;
    if (a->state == AGENT_DRAINING) {
        if (err != 0)
            log_warn("drain message not delivered: %s", errmsg);
        else if (status != 200)
            log_warn("drain message refused with HTTP %d", status);
        else
            log_info("coordinator took the drain message");
        agent_close(a);
        return;
    }
    if (agent_link_update(&a->link, err, status, errmsg, a->router_url,
                          a->token[0] != '\0', msg, sizeof(msg), &lvl))
        log_msg(lvl, "%s", msg);
    if (err == 0 && status == 200) {
        body = http_call_body(call, &len);
        agent_handle_reply(a, body, len);
        agent_write_ready(a);
    }
    if (a->discover && a->link.failures >= AGENT_REBROWSE_AFTER &&
        a->link.failures % AGENT_REBROWSE_AFTER == 0)
        agent_mdns_rebrowse(a);
    agent_schedule_next(a);
}

/* --- start and stop ------------------------------------------------------ */

int
agent_start(struct agent *a, char *err, size_t errlen)
{
    double cpu;
    int rc;

    a->http = http_client_new(a->loop);
    if (a->http == NULL) {
        snprintf(err, errlen, "HTTP client: out of memory");
        return -ENOMEM;
    }
    a->probe = probe_new(a->http, a->ollama_host);
    if (a->probe == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uv_timer_init(a->loop, &a->timer);
    a->timer.data = a;
    a->timer_inited = true;
    if (a->discover) {
        rc = agent_mdns_start(a, err, errlen);
        if (rc != 0)
            return rc;
    }
    (void)metrics_cpu_sample(&a->metrics, &cpu); /* the baseline */
    agent_enter(a, AGENT_IDLE);
    agent_arm(a, clock_mono_ns());
    return 0;
}

static void
agent_on_part_closed(void *ud)
{
    struct agent *a = ud;

    if (--a->open_parts == 0 && a->state == AGENT_CLOSING &&
        a->stop_done != NULL) {
        void (*done)(void *) = a->stop_done;

        a->stop_done = NULL;
        done(a->stop_ud);
    }
}

static void
agent_on_timer_closed(uv_handle_t *h)
{
    agent_on_part_closed(h->data);
}

/* Closes every loop resource; stop_done fires once all are gone. */
static void
agent_close(struct agent *a)
{
    agent_enter(a, AGENT_CLOSING);
    a->open_parts++; /* held until the end of this function */
    probe_free(a->probe);
    a->probe = NULL;
    agent_mdns_close(a);
    if (a->http != NULL) {
        a->open_parts++;
        http_client_free(a->http, agent_on_part_closed, a);
        a->http = NULL;
    }
    if (a->timer_inited) {
        a->open_parts++;
        a->timer_inited = false;
        uv_close((uv_handle_t *)&a->timer, agent_on_timer_closed);
    }
    agent_on_part_closed(a);
}

void
agent_stop(struct agent *a, void (*done)(void *ud), void *ud)
{
    int64_t now = clock_wall_ns() / NS_PER_SEC;
    int rc;

    if (a->state >= AGENT_DRAINING)
        return;
    a->stop_done = done;
    a->stop_ud = ud;
    if (a->timer_inited)
        uv_timer_stop(&a->timer);
    a->armed = false;
    if (a->post != NULL) {
        http_call_cancel(a->post);
        a->post = NULL;
    }
    probe_free(a->probe); /* cancels a running cycle */
    a->probe = NULL;
    if (a->learner != NULL) {
        rc = capacity_save(a->learner, a->data_dir, a->node_id, now);
        if (rc != 0)
            log_warn("capacity state: cannot save in %s: %s", a->data_dir,
                     strerror(-rc));
    }
    buf_reset(&a->body);
    if (a->http == NULL || a->router_url[0] == '\0' ||
        agent_drain_json(a->node_id, &a->body) != 0) {
        agent_close(a);
        return;
    }
    log_info("draining: telling %s that %s leaves", a->router_url, a->node_id);
    agent_enter(a, AGENT_DRAINING);
    agent_post(a, "drain", AGENT_DRAIN_WAIT_MS, AGENT_DRAIN_WAIT_MS);
}
