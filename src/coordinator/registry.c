/*
 * registry.c - fleet nodes: heartbeat validation, status ageing, model
 * lookup, router-local in-flight counts and the nodes of /fleet/status.
 *
 * The registry owns an array of node pointers in first-heartbeat order
 * (ollama-herd breaks score ties by that order) and an open-addressing
 * index from node id to array position. A heartbeat is parsed into a
 * staged struct registry_hb first; only a payload that passed every check
 * replaces the node's previous one, so a bad payload changes nothing.
 */
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"
#include "herd/log.h"
#include "herd/parse.h"

#define NS_PER_SEC 1000000000LL

struct registry_model_slot {
    const char *name; /* borrowed from the hb's loaded/available arrays */
    uint64_t hash;
    int32_t loaded; /* index into hb.loaded, or -1 */
    bool available;
};

struct registry {
    struct registry_config cfg;
    struct registry_node **nodes; /* owned, first-heartbeat order */
    size_t n, cap;
    uint32_t *index; /* owned; position + 1, 0 = empty slot */
    size_t index_cap;
    registry_event_cb cb;
    void *cb_arg;
    registry_watch_cb watch;
    void *watch_arg;
};

static const char *const registry_status_names[REGISTRY_STATUS_COUNT] = {
    "online",
    "degraded",
    "offline",
    "rejected",
};

static const char *const registry_pressure_names[] = {
    "normal",
    "warn",
    "critical",
};

/* Keys /fleet/status emits itself; a payload field of the same name is
 * kept in the raw payload but not spliced into the node object. */
static const char *const registry_own_keys[] = {
    "node_id",
    "status",
    "reason",
    "hardware",
    "ollama_url",
    "cpu",
    "memory",
    "ollama",
    "ollama_host",
    "lan_ip",
    "agent_version",
    "num_parallel",
    "in_flight",
    "arch",
    "chip",
    "memory_bandwidth_gbps",
    "draining",
    "last_heartbeat_age_s",
    "missed_heartbeats",
    "first_seen_age_s",
    "models_unloaded",
};

/* ---- small helpers ---------------------------------------------------- */

static void *
registry_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

    if (p == NULL)
        fatal("registry: out of memory");
    return p;
}

static void *
registry_xrealloc(void *p, size_t n, size_t size)
{
    void *q;

    if (size != 0 && n > SIZE_MAX / size)
        fatal("registry: allocation overflow");
    q = realloc(p, n * size == 0 ? 1 : n * size);
    if (q == NULL)
        fatal("registry: out of memory");
    return q;
}

static char *
registry_xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = registry_xcalloc(n + 1, 1);

    memcpy(p, s, n);
    return p;
}

static uint64_t
registry_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void
registry_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static size_t
registry_pow2_at_least(size_t n)
{
    size_t c = 8;

    while (c < n)
        c *= 2;
    return c;
}

const char *
registry_status_name(enum registry_status s)
{
    return (unsigned)s < REGISTRY_STATUS_COUNT ? registry_status_names[s] : "?";
}

const char *
registry_pressure_name(enum registry_pressure p)
{
    return (unsigned)p <= REGISTRY_PRESSURE_CRITICAL
               ? registry_pressure_names[p]
               : "?";
}

void
registry_config_default(struct registry_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->heartbeat_timeout_ns = 15 * NS_PER_SEC;
    cfg->heartbeat_offline_ns = 30 * NS_PER_SEC;
    cfg->remove_after_ns = 600 * NS_PER_SEC;
    cfg->min_node_memory_gb = 0.0;
    cfg->max_nodes = REGISTRY_DEFAULT_MAX_NODES;
    cfg->max_body = REGISTRY_DEFAULT_MAX_BODY;
}

/* ---- heartbeat payload and node lifetime ------------------------------ */

static void
registry_hb_cleanup(struct registry_hb *hb)
{
    for (size_t i = 0; i < hb->n_loaded; i++)
        free(hb->loaded[i].name);
    free(hb->loaded);
    for (size_t i = 0; i < hb->n_available; i++)
        free(hb->available[i]);
    free(hb->available);
    free(hb->raw);
    free(hb->extra);
    free(hb->index);
    memset(hb, 0, sizeof(*hb));
}

static void
registry_node_free(struct registry_node *n)
{
    if (n == NULL)
        return;
    registry_hb_cleanup(&n->hb);
    for (size_t i = 0; i < n->n_unloaded; i++)
        free(n->unloaded[i].name);
    free(n->unloaded);
    for (size_t i = 0; i < n->n_inflight; i++)
        free(n->inflight[i].model);
    free(n->inflight);
    free(n);
}

struct registry *
registry_new(const struct registry_config *cfg)
{
    struct registry *reg = registry_xcalloc(1, sizeof(*reg));

    if (cfg != NULL)
        reg->cfg = *cfg;
    else
        registry_config_default(&reg->cfg);
    if (reg->cfg.max_nodes == 0)
        reg->cfg.max_nodes = REGISTRY_DEFAULT_MAX_NODES;
    if (reg->cfg.max_body == 0)
        reg->cfg.max_body = REGISTRY_DEFAULT_MAX_BODY;
    return reg;
}

void
registry_free(struct registry *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->n; i++)
        registry_node_free(reg->nodes[i]);
    free(reg->nodes);
    free(reg->index);
    free(reg);
}

void
registry_set_event_cb(struct registry *reg, registry_event_cb cb, void *arg)
{
    reg->cb = cb;
    reg->cb_arg = arg;
}

static void
registry_emit(const struct registry *reg, enum registry_event_kind kind,
              const struct registry_node *n, enum registry_status from,
              int64_t now_ns)
{
    struct registry_event ev = {
        .kind = kind,
        .node_id = n->id,
        .from = from,
        .to = n->status,
        .reason = n->reason,
        .silent_ns = now_ns - n->last_heartbeat_ns,
    };

    if (reg->cb != NULL)
        reg->cb(&ev, reg->cb_arg);
}

void
registry_set_watch(struct registry *reg, registry_watch_cb cb, void *arg)
{
    reg->watch = cb;
    reg->watch_arg = arg;
}

static void
registry_watch(const struct registry *reg, enum registry_watch_kind kind,
               const struct registry_node *n, const char *model, int64_t count)
{
    if (reg->watch != NULL)
        reg->watch(kind, n, model, count, reg->watch_arg);
}

/* ---- node index ------------------------------------------------------- */

static void
registry_index_rebuild(struct registry *reg)
{
    size_t want = registry_pow2_at_least(reg->n * 2 + 2);

    if (want != reg->index_cap) {
        free(reg->index);
        reg->index = registry_xcalloc(want, sizeof(*reg->index));
        reg->index_cap = want;
    } else {
        memset(reg->index, 0, want * sizeof(*reg->index));
    }
    for (size_t i = 0; i < reg->n; i++) {
        size_t mask = reg->index_cap - 1;
        size_t s = registry_hash(reg->nodes[i]->id) & mask;

        while (reg->index[s] != 0)
            s = (s + 1) & mask;
        reg->index[s] = (uint32_t)(i + 1);
    }
}

static struct registry_node *
registry_lookup(const struct registry *reg, const char *id)
{
    size_t mask, s;

    if (reg->index_cap == 0 || id == NULL)
        return NULL;
    mask = reg->index_cap - 1;
    for (s = registry_hash(id) & mask; reg->index[s] != 0; s = (s + 1) & mask) {
        struct registry_node *n = reg->nodes[reg->index[s] - 1];

        if (strcmp(n->id, id) == 0)
            return n;
    }
    return NULL;
}

static void
registry_append(struct registry *reg, struct registry_node *n)
{
    if (reg->n == reg->cap) {
        reg->cap = reg->cap == 0 ? 16 : reg->cap * 2;
        reg->nodes =
            registry_xrealloc(reg->nodes, reg->cap, sizeof(*reg->nodes));
    }
    n->pos = reg->n;
    reg->nodes[reg->n++] = n;
    if (reg->n * 2 + 2 > reg->index_cap) {
        registry_index_rebuild(reg);
    } else {
        size_t mask = reg->index_cap - 1;
        size_t s = registry_hash(n->id) & mask;

        while (reg->index[s] != 0)
            s = (s + 1) & mask;
        reg->index[s] = (uint32_t)reg->n;
    }
}

/* ---- per-node model index --------------------------------------------- */

static struct registry_model_slot *
registry_slot(const struct registry_hb *hb, const char *name, uint64_t h,
              bool *found)
{
    size_t mask = hb->index_cap - 1;
    size_t s = h & mask;

    while (hb->index[s].name != NULL) {
        if (hb->index[s].hash == h && strcmp(hb->index[s].name, name) == 0) {
            *found = true;
            return &hb->index[s];
        }
        s = (s + 1) & mask;
    }
    *found = false;
    return &hb->index[s];
}

static void
registry_model_index_build(struct registry_hb *hb)
{
    hb->index_cap =
        registry_pow2_at_least(2 * (hb->n_loaded + hb->n_available));
    hb->index = registry_xcalloc(hb->index_cap, sizeof(*hb->index));
    for (size_t i = 0; i < hb->n_loaded; i++) {
        uint64_t h = registry_hash(hb->loaded[i].name);
        bool found;
        struct registry_model_slot *s =
            registry_slot(hb, hb->loaded[i].name, h, &found);

        if (found)
            continue; /* a duplicate entry: the first one wins */
        *s = (struct registry_model_slot){hb->loaded[i].name, h, (int32_t)i,
                                          false};
    }
    for (size_t i = 0; i < hb->n_available; i++) {
        uint64_t h = registry_hash(hb->available[i]);
        bool found;
        struct registry_model_slot *s =
            registry_slot(hb, hb->available[i], h, &found);

        if (!found)
            *s = (struct registry_model_slot){hb->available[i], h, -1, false};
        s->available = true;
    }
}

static const struct registry_model_slot *
registry_model_find(const struct registry_hb *hb, const char *model)
{
    bool found;
    const struct registry_model_slot *s;

    if (hb->index == NULL || model == NULL)
        return NULL;
    s = registry_slot(hb, model, registry_hash(model), &found);
    return found ? s : NULL;
}

/* ---- payload validation ----------------------------------------------- */

struct registry_parse {
    char *err;
    size_t errlen;
};

static int registry_fail(struct registry_parse *p, int rc, const char *fmt, ...)
    HERD_PRINTF(3, 4);

static int
registry_fail(struct registry_parse *p, int rc, const char *fmt, ...)
{
    va_list ap;

    if (p->err != NULL && p->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int
registry_type_error(struct registry_parse *p, const char *path,
                    const char *want, const cJSON *v)
{
    return registry_fail(p, -EINVAL,
                         "heartbeat field \"%s\": expected %s, got %s", path,
                         want, json_go_kind(v));
}

/* An absent or null key yields NULL: the field's default applies. */
static const cJSON *
registry_field(const cJSON *obj, const char *key)
{
    const cJSON *v = json_get(obj, key);

    return cJSON_IsNull(v) ? NULL : v;
}

static int
registry_missing(struct registry_parse *p, const char *path)
{
    return registry_fail(p, -EINVAL, "heartbeat field \"%s\": required", path);
}

/* A number >= min (finite). Absent: *out = def, or an error if required. */
static int
registry_get_num(struct registry_parse *p, const cJSON *obj, const char *key,
                 const char *path, bool required, double min, double *out)
{
    const cJSON *v = registry_field(obj, key);

    if (v == NULL)
        return required ? registry_missing(p, path) : 0;
    if (!cJSON_IsNumber(v))
        return registry_type_error(p, path, "number", v);
    if (!isfinite(v->valuedouble) || v->valuedouble < min)
        return registry_fail(p, -EINVAL,
                             "heartbeat field \"%s\": %g is out of range", path,
                             v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

/* An integral number in [min, 2^53]. */
static int
registry_get_int(struct registry_parse *p, const cJSON *obj, const char *key,
                 const char *path, bool required, int64_t min, int64_t *out)
{
    const cJSON *v = registry_field(obj, key);
    double d;

    if (v == NULL)
        return required ? registry_missing(p, path) : 0;
    if (!cJSON_IsNumber(v))
        return registry_type_error(p, path, "integer", v);
    d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return registry_type_error(p, path, "integer", v);
    if (d < (double)min || d > 9007199254740992.0)
        return registry_fail(
            p, -EINVAL, "heartbeat field \"%s\": %g is out of range", path, d);
    *out = (int64_t)d;
    return 0;
}

static int
registry_get_bool(struct registry_parse *p, const cJSON *obj, const char *key,
                  const char *path, bool *out)
{
    const cJSON *v = registry_field(obj, key);

    if (v == NULL)
        return 0;
    if (!cJSON_IsBool(v))
        return registry_type_error(p, path, "bool", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

static bool
registry_has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

/* A string that fits dst (size bytes with the NUL); absent keeps dst. */
static int
registry_get_str(struct registry_parse *p, const cJSON *obj, const char *key,
                 const char *path, char *dst, size_t size)
{
    const cJSON *v = registry_field(obj, key);

    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v))
        return registry_type_error(p, path, "string", v);
    if (strlen(v->valuestring) >= size)
        return registry_fail(p, -E2BIG,
                             "heartbeat field \"%s\": longer than %zu bytes",
                             path, size - 1);
    registry_copy(dst, size, v->valuestring);
    return 0;
}

/* An identifier: 1..max bytes, no control characters (node ids and model
 * names end up in response headers and log lines). */
static int
registry_check_name(struct registry_parse *p, const char *path, const cJSON *v,
                    size_t max)
{
    size_t n;

    if (!cJSON_IsString(v))
        return registry_type_error(p, path, "string", v);
    n = strlen(v->valuestring);
    if (n == 0)
        return registry_fail(p, -EINVAL, "heartbeat field \"%s\": empty", path);
    if (n > max)
        return registry_fail(p, -E2BIG,
                             "heartbeat field \"%s\": longer than %zu bytes",
                             path, max);
    if (registry_has_ctl(v->valuestring))
        return registry_fail(p, -EINVAL,
                             "heartbeat field \"%s\": control character", path);
    return 0;
}

/* Characters allowed in a host or URL we will connect to. */
static int
registry_check_chars(struct registry_parse *p, const char *path, const char *s,
                     const char *allowed_extra)
{
    for (const char *c = s; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;

        if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') ||
            (u >= 'A' && u <= 'Z') || strchr(".:-[]%", u) != NULL)
            continue;
        if (u != 0 && strchr(allowed_extra, u) != NULL)
            continue;
        return registry_fail(p, -EINVAL,
                             "heartbeat field \"%s\": invalid character "
                             "0x%02x",
                             path, u);
    }
    return 0;
}

static int
registry_parse_cpu(struct registry_parse *p, const cJSON *root,
                   struct registry_hb *hb)
{
    const cJSON *cpu = registry_field(root, "cpu");
    int rc;

    if (cpu == NULL)
        return registry_missing(p, "cpu");
    if (!cJSON_IsObject(cpu))
        return registry_type_error(p, "cpu", "object", cpu);
    rc = registry_get_int(p, cpu, "cores_physical", "cpu.cores_physical", true,
                          0, &hb->cores_physical);
    if (rc == 0)
        rc = registry_get_num(p, cpu, "utilization_pct", "cpu.utilization_pct",
                              true, -HUGE_VAL, &hb->cpu_utilization_pct);
    return rc;
}

static int
registry_parse_memory(struct registry_parse *p, const cJSON *root,
                      struct registry_hb *hb)
{
    const cJSON *mem = registry_field(root, "memory");
    const cJSON *pr;
    int rc;

    if (mem == NULL)
        return registry_missing(p, "memory");
    if (!cJSON_IsObject(mem))
        return registry_type_error(p, "memory", "object", mem);
    if ((rc = registry_get_num(p, mem, "total_gb", "memory.total_gb", true, 0,
                               &hb->mem_total_gb)) != 0 ||
        (rc = registry_get_num(p, mem, "used_gb", "memory.used_gb", true, 0,
                               &hb->mem_used_gb)) != 0 ||
        (rc = registry_get_num(p, mem, "available_gb", "memory.available_gb",
                               true, 0, &hb->mem_available_gb)) != 0 ||
        (rc = registry_get_num(p, mem, "wired_gb", "memory.wired_gb", false, 0,
                               &hb->mem_wired_gb)) != 0 ||
        (rc = registry_get_num(p, mem, "compressed_gb", "memory.compressed_gb",
                               false, 0, &hb->mem_compressed_gb)) != 0)
        return rc;
    hb->pressure = REGISTRY_PRESSURE_NORMAL;
    pr = registry_field(mem, "pressure");
    if (pr == NULL)
        return 0;
    if (!cJSON_IsString(pr))
        return registry_type_error(p, "memory.pressure", "string", pr);
    for (int i = 0; i <= REGISTRY_PRESSURE_CRITICAL; i++) {
        if (strcmp(pr->valuestring, registry_pressure_names[i]) == 0) {
            hb->pressure = (enum registry_pressure)i;
            return 0;
        }
    }
    return registry_fail(p, -EINVAL,
                         "heartbeat field \"memory.pressure\": expected "
                         "\"normal\", \"warn\" or \"critical\"");
}

static int
registry_parse_disk(struct registry_parse *p, const cJSON *root,
                    struct registry_hb *hb)
{
    const cJSON *disk = registry_field(root, "disk");
    int rc;

    if (disk == NULL)
        return 0;
    if (!cJSON_IsObject(disk))
        return registry_type_error(p, "disk", "object", disk);
    if ((rc = registry_get_num(p, disk, "total_gb", "disk.total_gb", true, 0,
                               &hb->disk_total_gb)) != 0 ||
        (rc = registry_get_num(p, disk, "used_gb", "disk.used_gb", true, 0,
                               &hb->disk_used_gb)) != 0 ||
        (rc = registry_get_num(p, disk, "available_gb", "disk.available_gb",
                               true, 0, &hb->disk_available_gb)) != 0)
        return rc;
    hb->has_disk = true;
    return 0;
}

/* A JSON array of at most REGISTRY_MAX_MODELS entries; NULL when absent. */
static int
registry_model_array(struct registry_parse *p, const cJSON *obj,
                     const char *key, const char *path, const cJSON **out,
                     size_t *n)
{
    const cJSON *a = registry_field(obj, key);

    *out = NULL;
    *n = 0;
    if (a == NULL)
        return 0;
    if (!cJSON_IsArray(a))
        return registry_type_error(p, path, "array", a);
    *n = (size_t)cJSON_GetArraySize(a);
    if (*n > REGISTRY_MAX_MODELS)
        return registry_fail(p, -E2BIG,
                             "heartbeat field \"%s\": more than %d models",
                             path, REGISTRY_MAX_MODELS);
    *out = a;
    return 0;
}

static int
registry_parse_loaded_one(struct registry_parse *p, const cJSON *m, size_t i,
                          struct registry_loaded *out)
{
    char path[96];
    const cJSON *name;
    int rc;

    snprintf(path, sizeof(path), "ollama.models_loaded[%zu]", i);
    if (!cJSON_IsObject(m))
        return registry_type_error(p, path, "object", m);
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].name", i);
    name = registry_field(m, "name");
    if (name == NULL)
        return registry_missing(p, path);
    if ((rc = registry_check_name(p, path, name, REGISTRY_MODEL_NAME_MAX)) != 0)
        return rc;
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].size_gb", i);
    if ((rc = registry_get_num(p, m, "size_gb", path, true, 0,
                               &out->size_gb)) != 0)
        return rc;
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].context_length", i);
    if ((rc = registry_get_int(p, m, "context_length", path, false, 0,
                               &out->context_length)) != 0)
        return rc;
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].requests_active",
             i);
    if ((rc = registry_get_int(p, m, "requests_active", path, false, 0,
                               &out->requests_active)) != 0)
        return rc;
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].parameter_size", i);
    if ((rc =
             registry_get_str(p, m, "parameter_size", path, out->parameter_size,
                              sizeof(out->parameter_size))) != 0)
        return rc;
    snprintf(path, sizeof(path), "ollama.models_loaded[%zu].quantization", i);
    if ((rc = registry_get_str(p, m, "quantization", path, out->quantization,
                               sizeof(out->quantization))) != 0)
        return rc;
    out->name = registry_xstrdup(name->valuestring);
    return 0;
}

static int
registry_parse_models(struct registry_parse *p, const cJSON *ol,
                      struct registry_hb *hb)
{
    const cJSON *a, *m;
    size_t n, i;
    int rc;

    rc = registry_model_array(p, ol, "models_loaded", "ollama.models_loaded",
                              &a, &n);
    if (rc != 0)
        return rc;
    hb->loaded = registry_xcalloc(n, sizeof(*hb->loaded));
    i = 0;
    cJSON_ArrayForEach(m, a)
    {
        if ((rc = registry_parse_loaded_one(p, m, i, &hb->loaded[i])) != 0)
            return rc;
        hb->n_loaded = ++i;
    }
    rc = registry_model_array(p, ol, "models_available",
                              "ollama.models_available", &a, &n);
    if (rc != 0)
        return rc;
    hb->available = registry_xcalloc(n, sizeof(*hb->available));
    i = 0;
    cJSON_ArrayForEach(m, a)
    {
        char path[64];

        snprintf(path, sizeof(path), "ollama.models_available[%zu]", i);
        if ((rc = registry_check_name(p, path, m, REGISTRY_MODEL_NAME_MAX)) !=
            0)
            return rc;
        hb->available[i] = registry_xstrdup(m->valuestring);
        hb->n_available = ++i;
    }
    return 0;
}

static int
registry_parse_ollama(struct registry_parse *p, const cJSON *root,
                      struct registry_hb *hb, int64_t *num_parallel)
{
    const cJSON *ol = registry_field(root, "ollama");
    int rc;

    if (ol == NULL)
        return registry_missing(p, "ollama");
    if (!cJSON_IsObject(ol))
        return registry_type_error(p, "ollama", "object", ol);
    if ((rc = registry_parse_models(p, ol, hb)) != 0)
        return rc;
    if ((rc = registry_get_int(p, ol, "requests_active",
                               "ollama.requests_active", false, 0,
                               &hb->requests_active)) != 0)
        return rc;
    /* ollama-herd after 0.6.1 reports OLLAMA_NUM_PARALLEL here. */
    return registry_get_int(p, ol, "num_parallel", "ollama.num_parallel", false,
                            0, num_parallel);
}

static int
registry_parse_capacity(struct registry_parse *p, const cJSON *root,
                        struct registry_hb *hb)
{
    const cJSON *c = registry_field(root, "capacity");
    struct registry_capacity *cap = &hb->capacity;
    int rc;

    if (c == NULL)
        return 0;
    if (!cJSON_IsObject(c))
        return registry_type_error(p, "capacity", "object", c);
    /* ollama-herd's CapacityMetrics defaults. */
    registry_copy(cap->mode, sizeof(cap->mode), "full");
    cap->availability_score = 1.0;
    if ((rc = registry_get_str(p, c, "mode", "capacity.mode", cap->mode,
                               sizeof(cap->mode))) != 0 ||
        (rc = registry_get_num(p, c, "ceiling_gb", "capacity.ceiling_gb", false,
                               0, &cap->ceiling_gb)) != 0 ||
        (rc = registry_get_num(p, c, "availability_score",
                               "capacity.availability_score", false, -HUGE_VAL,
                               &cap->availability_score)) != 0 ||
        (rc = registry_get_num(p, c, "learning_confidence",
                               "capacity.learning_confidence", false, -HUGE_VAL,
                               &cap->learning_confidence)) != 0 ||
        (rc = registry_get_int(p, c, "days_observed", "capacity.days_observed",
                               false, 0, &cap->days_observed)) != 0 ||
        (rc = registry_get_bool(p, c, "override_active",
                                "capacity.override_active",
                                &cap->override_active)) != 0 ||
        (rc = registry_get_str(p, c, "reason", "capacity.reason", cap->reason,
                               sizeof(cap->reason))) != 0)
        return rc;
    hb->has_capacity = true;
    return 0;
}

static int
registry_parse_gpu_one(struct registry_parse *p, const cJSON *g,
                       struct registry_gpu *gpu, int *n_util)
{
    double total = 0, used = 0, util = -1;
    int64_t count = 1;
    int rc;

    if (!cJSON_IsObject(g))
        return registry_type_error(p, "gpu", "object", g);
    if (gpu->name[0] == '\0' &&
        (rc = registry_get_str(p, g, "name", "gpu.name", gpu->name,
                               sizeof(gpu->name))) != 0)
        return rc;
    if ((rc = registry_get_int(p, g, "count", "gpu.count", false, 0, &count)) !=
            0 ||
        (rc = registry_get_num(p, g, "vram_total_gb", "gpu.vram_total_gb",
                               false, 0, &total)) != 0 ||
        (rc = registry_get_num(p, g, "vram_used_gb", "gpu.vram_used_gb", false,
                               0, &used)) != 0 ||
        (rc = registry_get_num(p, g, "utilization_pct", "gpu.utilization_pct",
                               false, 0, &util)) != 0)
        return rc;
    gpu->count += count;
    gpu->vram_total_gb += total;
    gpu->vram_used_gb += used;
    if (util >= 0) {
        gpu->utilization_pct += util;
        (*n_util)++;
    }
    return 0;
}

static int
registry_parse_gpu(struct registry_parse *p, const cJSON *root,
                   struct registry_hb *hb)
{
    const cJSON *g = registry_field(root, "gpu"), *e;
    int n_util = 0, rc;

    if (g == NULL)
        return 0;
    if (cJSON_IsArray(g)) {
        if (cJSON_GetArraySize(g) > 64)
            return registry_fail(p, -E2BIG,
                                 "heartbeat field \"gpu\": more than 64 GPUs");
        cJSON_ArrayForEach(e, g)
        {
            if ((rc = registry_parse_gpu_one(p, e, &hb->gpu, &n_util)) != 0)
                return rc;
        }
    } else if ((rc = registry_parse_gpu_one(p, g, &hb->gpu, &n_util)) != 0) {
        return rc;
    }
    if (n_util > 0)
        hb->gpu.utilization_pct /= n_util;
    hb->has_gpu = true;
    return 0;
}

static int
registry_parse_host(struct registry_parse *p, const cJSON *root,
                    struct registry_hb *hb)
{
    int rc;

    registry_copy(hb->ollama_host, sizeof(hb->ollama_host),
                  "http://localhost:11434");
    if ((rc = registry_get_str(p, root, "ollama_host", "ollama_host",
                               hb->ollama_host, sizeof(hb->ollama_host))) ||
        (rc = registry_check_chars(p, "ollama_host", hb->ollama_host,
                                   "/_~+@!$&'()*,;=?#")) ||
        (rc = registry_get_str(p, root, "lan_ip", "lan_ip", hb->lan_ip,
                               sizeof(hb->lan_ip))) ||
        (rc = registry_check_chars(p, "lan_ip", hb->lan_ip, "")))
        return rc;
    if (hb->ollama_host[0] == '\0')
        registry_copy(hb->ollama_host, sizeof(hb->ollama_host),
                      "http://localhost:11434");
    return 0;
}

static int
registry_parse_misc(struct registry_parse *p, const cJSON *root,
                    struct registry_hb *hb)
{
    int rc;

    registry_copy(hb->arch, sizeof(hb->arch), "apple_silicon");
    if ((rc = registry_get_str(p, root, "arch", "arch", hb->arch,
                               sizeof(hb->arch))) != 0 ||
        (rc = registry_get_num(p, root, "timestamp", "timestamp", false,
                               -HUGE_VAL, &hb->timestamp)) != 0 ||
        (rc = registry_get_str(p, root, "agent_version", "agent_version",
                               hb->agent_version, sizeof(hb->agent_version))) !=
            0 ||
        (rc = registry_get_str(p, root, "chip", "chip", hb->chip,
                               sizeof(hb->chip))) != 0 ||
        (rc = registry_get_num(p, root, "memory_bandwidth_gbps",
                               "memory_bandwidth_gbps", false, 0,
                               &hb->memory_bandwidth_gbps)) != 0)
        return rc;
    return 0;
}

static bool
registry_own_key(const char *k)
{
    for (size_t i = 0;
         i < sizeof(registry_own_keys) / sizeof(*registry_own_keys); i++) {
        if (strcmp(k, registry_own_keys[i]) == 0)
            return true;
    }
    return false;
}

/* hb->raw (the whole payload) and hb->extra (fields we don't re-emit). */
static int
registry_keep_raw(struct registry_parse *p, const cJSON *root, size_t max_body,
                  struct registry_hb *hb)
{
    struct buf raw, extra;
    const cJSON *c, *d;
    int rc = 0;

    buf_init(&raw, max_body * 2 + 64);
    buf_init(&extra, max_body * 2 + 64);
    if (json_print(root, &raw) != 0) {
        rc = registry_fail(p, -E2BIG, "heartbeat too large once re-encoded");
        goto out;
    }
    cJSON_ArrayForEach(c, root)
    {
        bool dup = false;

        if (registry_own_key(c->string))
            continue;
        for (d = root->child; d != c; d = d->next)
            dup = dup || strcmp(d->string, c->string) == 0;
        if (dup)
            continue;
        if (buf_appends(&extra, ",") != 0 ||
            json_append_str(&extra, c->string, strlen(c->string)) != 0 ||
            buf_appends(&extra, ":") != 0 || json_print(c, &extra) != 0) {
            rc =
                registry_fail(p, -E2BIG, "heartbeat too large once re-encoded");
            goto out;
        }
    }
    hb->raw = buf_take(&raw, NULL);
    hb->extra = buf_take(&extra, NULL);
    if (hb->raw == NULL || hb->extra == NULL)
        fatal("registry: out of memory");
out:
    buf_cleanup(&raw);
    buf_cleanup(&extra);
    return rc;
}

/* Validates a full heartbeat into hb (cleaned up by the caller). */
static int
registry_parse_hb(struct registry_parse *p, const cJSON *root, size_t max_body,
                  struct registry_hb *hb)
{
    int64_t np_top = 0, np_ollama = 0;
    int rc;

    hb->ollama_healthy = true;
    if ((rc = registry_parse_cpu(p, root, hb)) != 0 ||
        (rc = registry_parse_memory(p, root, hb)) != 0 ||
        (rc = registry_parse_disk(p, root, hb)) != 0 ||
        (rc = registry_parse_ollama(p, root, hb, &np_ollama)) != 0 ||
        (rc = registry_parse_capacity(p, root, hb)) != 0 ||
        (rc = registry_parse_gpu(p, root, hb)) != 0 ||
        (rc = registry_parse_host(p, root, hb)) != 0 ||
        (rc = registry_parse_misc(p, root, hb)) != 0 ||
        (rc = registry_get_int(p, root, "num_parallel", "num_parallel", false,
                               0, &np_top)) != 0)
        return rc;
    /* 0 = not reported: Ollama's own default is 1. */
    hb->num_parallel = np_ollama > 0 ? np_ollama : np_top > 0 ? np_top : 1;
    /* herd-node's extra: false while the node's Ollama does not answer.
     * Absent (ollama-herd's agents) counts as healthy. */
    if ((rc = registry_get_bool(p, root, "ollama_healthy", "ollama_healthy",
                                &hb->ollama_healthy)) != 0)
        return rc;
    if ((rc = registry_keep_raw(p, root, max_body, hb)) != 0)
        return rc;
    registry_model_index_build(hb);
    return 0;
}

/* Python truthiness of "draining". */
static bool
registry_truthy(const cJSON *v)
{
    if (v == NULL || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsString(v))
        return v->valuestring[0] != '\0';
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child != NULL;
    return true;
}

/* ---- applying a heartbeat --------------------------------------------- */

static bool
registry_is_loopback(const char *ip)
{
    return ip == NULL || ip[0] == '\0' || strncmp(ip, "127.", 4) == 0 ||
           strcmp(ip, "::1") == 0 || strncmp(ip, "::ffff:127.", 11) == 0 ||
           strcmp(ip, "localhost") == 0;
}

/* The port of an URL such as http://host:port/path; 11434 by default. */
static unsigned
registry_url_port(const char *url)
{
    const char *a = strstr(url, "://"), *end, *colon = NULL, *c;
    char digits[8];
    uint64_t port;

    a = a != NULL ? a + 3 : url;
    end = a + strcspn(a, "/?#");
    for (c = a; c < end; c++) {
        if (*c == '@')
            a = c + 1;
    }
    if (*a == '[') {
        c = memchr(a, ']', (size_t)(end - a));
        colon = c != NULL && c + 1 < end && c[1] == ':' ? c + 1 : NULL;
    } else {
        c = memchr(a, ':', (size_t)(end - a));
        if (c != NULL && memchr(c + 1, ':', (size_t)(end - c - 1)) == NULL)
            colon = c;
    }
    if (colon == NULL || (size_t)(end - colon - 1) >= sizeof(digits) ||
        end - colon - 1 == 0)
        return 11434;
    memcpy(digits, colon + 1, (size_t)(end - colon - 1));
    digits[end - colon - 1] = '\0';
    if (parse_u64(digits, 1, 65535, &port, NULL) != 0)
        return 11434;
    return (unsigned)port;
}

/*
 * ollama-herd's _build_ollama_url (reference §4.2): a heartbeat from the
 * coordinator's own machine -> http://localhost:<port>; else the node's
 * LAN address -> http://<lan_ip>:<port>; else its ollama_host as sent.
 */
static void
registry_build_url(struct registry_node *n, const char *source_ip)
{
    const struct registry_hb *hb = &n->hb;
    unsigned port = registry_url_port(hb->ollama_host);
    char *dst = n->ollama_base_url;
    size_t size = sizeof(n->ollama_base_url);

    if (registry_is_loopback(source_ip))
        snprintf(dst, size, "http://localhost:%u", port);
    else if (!registry_is_loopback(hb->lan_ip) && hb->lan_ip[0] != '[' &&
             strchr(hb->lan_ip, ':') != NULL)
        snprintf(dst, size, "http://[%s]:%u", hb->lan_ip, port);
    else if (!registry_is_loopback(hb->lan_ip))
        snprintf(dst, size, "http://%s:%u", hb->lan_ip, port);
    else
        registry_copy(dst, size, hb->ollama_host);
}

static struct registry_unload *
registry_unload_find(const struct registry_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_unloaded; i++) {
        if (strcmp(n->unloaded[i].name, name) == 0)
            return &n->unloaded[i];
    }
    return NULL;
}

static void
registry_unload_drop(struct registry_node *n, struct registry_unload *u)
{
    size_t i = (size_t)(u - n->unloaded);

    free(u->name);
    memmove(&n->unloaded[i], &n->unloaded[i + 1],
            (n->n_unloaded - i - 1) * sizeof(*n->unloaded));
    n->n_unloaded--;
}

static void
registry_unload_note(struct registry_node *n, const char *name, int64_t now_ns)
{
    struct registry_unload *u = registry_unload_find(n, name);

    if (u != NULL) {
        u->at_ns = now_ns;
        return;
    }
    if (n->n_unloaded == REGISTRY_MAX_MODELS) {
        size_t oldest = 0;

        for (size_t i = 1; i < n->n_unloaded; i++) {
            if (n->unloaded[i].at_ns < n->unloaded[oldest].at_ns)
                oldest = i;
        }
        registry_unload_drop(n, &n->unloaded[oldest]);
    }
    n->unloaded =
        registry_xrealloc(n->unloaded, n->n_unloaded + 1, sizeof(*n->unloaded));
    n->unloaded[n->n_unloaded].name = registry_xstrdup(name);
    n->unloaded[n->n_unloaded].at_ns = now_ns;
    n->n_unloaded++;
}

/* model_unloaded_at: what left models_loaded since the last heartbeat. */
static void
registry_track_unloads(struct registry_node *n, const struct registry_hb *next,
                       int64_t now_ns)
{
    for (size_t i = 0; i < n->hb.n_loaded; i++) {
        const struct registry_model_slot *s =
            registry_model_find(next, n->hb.loaded[i].name);

        if (s == NULL || s->loaded < 0)
            registry_unload_note(n, n->hb.loaded[i].name, now_ns);
    }
    for (size_t i = 0; i < next->n_loaded; i++) {
        struct registry_unload *u =
            registry_unload_find(n, next->loaded[i].name);

        if (u != NULL)
            registry_unload_drop(n, u);
    }
}

static void
registry_set_status(struct registry_node *n, enum registry_status s,
                    int64_t now_ns)
{
    if (n->status != s)
        n->status_since_ns = now_ns;
    n->status = s;
}

static void
registry_admit(const struct registry *reg, struct registry_node *n,
               int64_t now_ns)
{
    double min = reg->cfg.min_node_memory_gb;

    if (min > 0 && n->hb.mem_total_gb < min) {
        registry_set_status(n, REGISTRY_REJECTED, now_ns);
        snprintf(n->reason, sizeof(n->reason),
                 "memory %.1f GB is below the fleet minimum of %.1f GB "
                 "(FLEET_MIN_NODE_MEMORY_GB)",
                 n->hb.mem_total_gb, min);
    } else {
        registry_set_status(n, REGISTRY_ONLINE, now_ns);
        n->reason[0] = '\0';
    }
}

static int
registry_apply(struct registry *reg, const char *id, struct registry_hb *hb,
               const char *source_ip, int64_t now_ns,
               struct registry_reply *out, struct registry_parse *p)
{
    struct registry_node *n = registry_lookup(reg, id);
    enum registry_status from = REGISTRY_ONLINE;
    bool created = n == NULL;

    if (created) {
        if (reg->n >= reg->cfg.max_nodes)
            return registry_fail(p, -ENOSPC,
                                 "node table full (%zu nodes): \"%s\" "
                                 "refused",
                                 reg->cfg.max_nodes, id);
        n = registry_xcalloc(1, sizeof(*n));
        registry_copy(n->id, sizeof(n->id), id);
        n->first_seen_ns = now_ns;
        n->status_since_ns = now_ns;
        registry_append(reg, n);
    } else {
        from = n->status;
        registry_track_unloads(n, hb, now_ns);
        registry_hb_cleanup(&n->hb);
    }
    n->hb = *hb;
    memset(hb, 0, sizeof(*hb));
    n->last_heartbeat_ns = now_ns;
    n->missed_heartbeats = 0;
    registry_admit(reg, n, now_ns);
    registry_build_url(n, source_ip);
    registry_watch(reg, REGISTRY_WATCH_NODE, n, NULL, 0);
    if (created)
        registry_emit(reg, REGISTRY_EV_JOINED, n, from, now_ns);
    else if (from != n->status)
        registry_emit(reg, REGISTRY_EV_STATUS, n, from, now_ns);
    out->created = created;
    out->node_status = n->status;
    registry_copy(out->reason, sizeof(out->reason), n->reason);
    return 0;
}

static void
registry_drain(struct registry *reg, const char *id, int64_t now_ns)
{
    struct registry_node *n = registry_lookup(reg, id);
    enum registry_status from;

    if (n == NULL)
        return; /* as ollama-herd: draining an unknown node is a no-op */
    from = n->status;
    registry_set_status(n, REGISTRY_OFFLINE, now_ns);
    registry_copy(n->reason, sizeof(n->reason), "drained");
    registry_watch(reg, REGISTRY_WATCH_NODE, n, NULL, 0);
    if (from != REGISTRY_OFFLINE)
        registry_emit(reg, REGISTRY_EV_STATUS, n, from, now_ns);
}

int
registry_heartbeat(struct registry *reg, const char *body, size_t len,
                   const char *source_ip, int64_t now_ns,
                   struct registry_reply *out, char *err, size_t errlen)
{
    struct registry_parse p = {err, errlen};
    struct registry_hb hb;
    cJSON *root = NULL;
    const cJSON *id;
    char jerr[128];
    int rc;

    memset(&hb, 0, sizeof(hb));
    memset(out, 0, sizeof(*out));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (len > reg->cfg.max_body) {
        rc = registry_fail(&p, -EMSGSIZE,
                           "heartbeat body of %zu bytes is over the %zu "
                           "byte limit",
                           len, reg->cfg.max_body);
        goto out;
    }
    rc = json_parse(body, len, REGISTRY_MAX_DEPTH, &root, jerr, sizeof(jerr));
    if (rc == -E2BIG) {
        rc = registry_fail(&p, -E2BIG, "heartbeat nested deeper than %d",
                           REGISTRY_MAX_DEPTH);
        goto out;
    }
    if (rc != 0) {
        rc = registry_fail(&p, -EINVAL, "heartbeat is not valid JSON: %s",
                           rc == -ENODATA ? "empty body" : jerr);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        rc = registry_type_error(&p, "(body)", "object", root);
        goto out;
    }
    if (cJSON_GetArraySize(root) > REGISTRY_MAX_FIELDS) {
        rc = registry_fail(&p, -E2BIG, "heartbeat has more than %d fields",
                           REGISTRY_MAX_FIELDS);
        goto out;
    }
    id = registry_field(root, "node_id");
    if (id == NULL) {
        rc = registry_missing(&p, "node_id");
        goto out;
    }
    if ((rc = registry_check_name(&p, "node_id", id, REGISTRY_NODE_ID_MAX)) !=
        0)
        goto out;
    registry_copy(out->node_id, sizeof(out->node_id), id->valuestring);
    if (registry_truthy(json_get(root, "draining"))) {
        out->draining = true;
        out->node_status = REGISTRY_OFFLINE;
        registry_drain(reg, id->valuestring, now_ns);
        goto out;
    }
    if ((rc = registry_parse_hb(&p, root, reg->cfg.max_body, &hb)) != 0)
        goto out;
    rc = registry_apply(reg, id->valuestring, &hb, source_ip, now_ns, out, &p);
out:
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    registry_hb_cleanup(&hb);
    cJSON_Delete(root);
    return rc;
}

int
registry_error_status(int rc)
{
    switch (rc) {
    case -EMSGSIZE:
        return 413;
    case -ENOSPC:
        return 503;
    default:
        return 400;
    }
}

int
registry_reply_json(const struct registry_reply *r, struct buf *b)
{
    int rc;

    if (r->draining) {
        rc = buf_appends(b, "{\"status\":\"draining\",\"node_id\":");
        if (rc == 0)
            rc = json_append_str(b, r->node_id, strlen(r->node_id));
        return rc != 0 ? rc : buf_appends(b, "}");
    }
    rc = buf_appendf(b, "{\"status\":\"ok\",\"node_status\":\"%s\"",
                     registry_status_name(r->node_status));
    if (rc == 0 && r->reason[0] != '\0') {
        rc = buf_appends(b, ",\"reason\":");
        if (rc == 0)
            rc = json_append_str(b, r->reason, strlen(r->reason));
    }
    return rc != 0 ? rc : buf_appends(b, "}");
}

/* ---- ageing ----------------------------------------------------------- */

static void
registry_remove_at(struct registry *reg, size_t i)
{
    registry_watch(reg, REGISTRY_WATCH_REMOVE, reg->nodes[i], NULL, 0);
    registry_node_free(reg->nodes[i]);
    memmove(&reg->nodes[i], &reg->nodes[i + 1],
            (reg->n - i - 1) * sizeof(*reg->nodes));
    reg->n--;
    for (; i < reg->n; i++)
        reg->nodes[i]->pos = i;
}

/* One node's transition; returns true when it should be removed. */
static bool
registry_age(struct registry *reg, struct registry_node *n, int64_t now_ns,
             size_t *events)
{
    int64_t silent = now_ns - n->last_heartbeat_ns;
    enum registry_status from = n->status;
    int64_t removal = reg->cfg.remove_after_ns;

    if (n->status == REGISTRY_OFFLINE) {
        return removal > 0 && now_ns - n->status_since_ns > removal &&
               n->inflight_total == 0;
    }
    if (silent > reg->cfg.heartbeat_offline_ns) {
        registry_set_status(n, REGISTRY_OFFLINE, now_ns);
        registry_copy(n->reason, sizeof(n->reason), "no heartbeat");
        n->missed_heartbeats++;
    } else if (silent > reg->cfg.heartbeat_timeout_ns &&
               n->status == REGISTRY_ONLINE) {
        registry_set_status(n, REGISTRY_DEGRADED, now_ns);
        n->missed_heartbeats++;
    }
    if (from != n->status) {
        registry_watch(reg, REGISTRY_WATCH_NODE, n, NULL, 0);
        registry_emit(reg, REGISTRY_EV_STATUS, n, from, now_ns);
        (*events)++;
    }
    return false;
}

size_t
registry_tick(struct registry *reg, int64_t now_ns)
{
    size_t events = 0, i = 0;

    while (i < reg->n) {
        struct registry_node *n = reg->nodes[i];

        if (!registry_age(reg, n, now_ns, &events)) {
            i++;
            continue;
        }
        registry_emit(reg, REGISTRY_EV_REMOVED, n, n->status, now_ns);
        events++;
        registry_remove_at(reg, i);
        /* Positions moved: later callbacks may look nodes up. */
        registry_index_rebuild(reg);
    }
    return events;
}

/* ---- lookup ----------------------------------------------------------- */

const struct registry_node *
registry_find(const struct registry *reg, const char *node_id)
{
    return registry_lookup(reg, node_id);
}

size_t
registry_count(const struct registry *reg)
{
    return reg->n;
}

const struct registry_node *
registry_node_at(const struct registry *reg, size_t i)
{
    return i < reg->n ? reg->nodes[i] : NULL;
}

size_t
registry_count_status(const struct registry *reg, enum registry_status s)
{
    size_t c = 0;

    for (size_t i = 0; i < reg->n; i++)
        c += reg->nodes[i]->status == s;
    return c;
}

bool
registry_node_routable(const struct registry_node *n)
{
    return n != NULL &&
           (n->status == REGISTRY_ONLINE || n->status == REGISTRY_DEGRADED);
}

const struct registry_loaded *
registry_node_loaded(const struct registry_node *n, const char *model)
{
    const struct registry_model_slot *s = registry_model_find(&n->hb, model);

    return s != NULL && s->loaded >= 0 ? &n->hb.loaded[s->loaded] : NULL;
}

bool
registry_node_available(const struct registry_node *n, const char *model)
{
    const struct registry_model_slot *s = registry_model_find(&n->hb, model);

    return s != NULL && s->available;
}

int64_t
registry_node_unloaded_at(const struct registry_node *n, const char *model)
{
    const struct registry_unload *u = registry_unload_find(n, model);

    return u != NULL ? u->at_ns : 0;
}

size_t
registry_nodes_with_model(const struct registry *reg, const char *model,
                          const struct registry_node **out, size_t max)
{
    size_t c = 0;

    for (size_t i = 0; i < reg->n; i++) {
        const struct registry_node *n = reg->nodes[i];

        if (!registry_node_routable(n) ||
            registry_model_find(&n->hb, model) == NULL)
            continue;
        if (c < max && out != NULL)
            out[c] = n;
        c++;
    }
    return c;
}

/* ---- router-local in-flight counts ------------------------------------ */

int64_t
registry_inflight_add(struct registry *reg, const char *node_id,
                      const char *model, int64_t delta)
{
    struct registry_node *n = registry_lookup(reg, node_id);
    struct registry_inflight *f = NULL;
    size_t i;

    if (n == NULL)
        return -ENOENT;
    if (strlen(model) > REGISTRY_MODEL_NAME_MAX)
        return -E2BIG;
    for (i = 0; i < n->n_inflight; i++) {
        if (strcmp(n->inflight[i].model, model) == 0) {
            f = &n->inflight[i];
            break;
        }
    }
    if (f == NULL) {
        if (delta <= 0)
            return 0;
        if (n->n_inflight == REGISTRY_MAX_MODELS)
            return -ENOSPC;
        n->inflight = registry_xrealloc(n->inflight, n->n_inflight + 1,
                                        sizeof(*n->inflight));
        f = &n->inflight[n->n_inflight++];
        f->model = registry_xstrdup(model);
        f->count = 0;
    }
    if (delta < -f->count)
        delta = -f->count;
    f->count += delta;
    n->inflight_total += delta;
    if (delta != 0)
        registry_watch(reg, REGISTRY_WATCH_INFLIGHT, n, model, f->count);
    if (f->count > 0)
        return f->count;
    free(f->model);
    i = (size_t)(f - n->inflight);
    memmove(&n->inflight[i], &n->inflight[i + 1],
            (n->n_inflight - i - 1) * sizeof(*n->inflight));
    n->n_inflight--;
    return 0;
}

int64_t
registry_inflight_get(const struct registry_node *n, const char *model)
{
    if (model == NULL)
        return n->inflight_total;
    for (size_t i = 0; i < n->n_inflight; i++) {
        if (strcmp(n->inflight[i].model, model) == 0)
            return n->inflight[i].count;
    }
    return 0;
}

/* ---- /fleet/status ---------------------------------------------------- */

static int
registry_json_kv_str(struct buf *b, const char *key, const char *val)
{
    int rc = buf_appendf(b, ",\"%s\":", key);

    return rc != 0 ? rc : json_append_str(b, val, strlen(val));
}

static int
registry_json_hw(const struct registry_node *n, struct buf *b)
{
    const struct registry_hb *hb = &n->hb;
    int rc;

    rc = buf_appendf(b,
                     ",\"hardware\":{\"memory_total_gb\":%.15g,"
                     "\"cores_physical\":%lld",
                     hb->mem_total_gb, (long long)hb->cores_physical);
    if (rc == 0)
        rc = registry_json_kv_str(b, "chip", hb->chip);
    if (rc == 0)
        rc = buf_appendf(b, ",\"memory_bandwidth_gbps\":%.15g",
                         hb->memory_bandwidth_gbps);
    if (rc == 0)
        rc = registry_json_kv_str(b, "arch", hb->arch);
    if (rc == 0)
        rc = buf_appends(b, "}");
    return rc;
}

static int
registry_json_cpu_mem(const struct registry_node *n, struct buf *b)
{
    const struct registry_hb *hb = &n->hb;

    return buf_appendf(
        b,
        ",\"cpu\":{\"cores_physical\":%lld,\"utilization_pct\":%.15g},"
        "\"memory\":{\"total_gb\":%.15g,\"used_gb\":%.15g,"
        "\"available_gb\":%.15g,\"pressure\":\"%s\",\"wired_gb\":%.15g,"
        "\"compressed_gb\":%.15g}",
        (long long)hb->cores_physical, hb->cpu_utilization_pct,
        hb->mem_total_gb, hb->mem_used_gb, hb->mem_available_gb,
        registry_pressure_name(hb->pressure), hb->mem_wired_gb,
        hb->mem_compressed_gb);
}

/* "ollama" as the node reported it, except that requests_active are the
 * router's own in-flight counts (architecture §5.2). */
static int
registry_json_ollama(const struct registry_node *n, struct buf *b)
{
    const struct registry_hb *hb = &n->hb;
    int rc = buf_appends(b, ",\"ollama\":{\"models_loaded\":[");

    for (size_t i = 0; rc == 0 && i < hb->n_loaded; i++) {
        const struct registry_loaded *m = &hb->loaded[i];

        rc = buf_appends(b, i > 0 ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = json_append_str(b, m->name, strlen(m->name));
        if (rc == 0)
            rc = buf_appendf(b, ",\"size_gb\":%.15g,\"requests_active\":%lld",
                             m->size_gb,
                             (long long)registry_inflight_get(n, m->name));
        if (rc == 0)
            rc = registry_json_kv_str(b, "parameter_size", m->parameter_size);
        if (rc == 0)
            rc = registry_json_kv_str(b, "quantization", m->quantization);
        if (rc == 0)
            rc = buf_appendf(b, ",\"context_length\":%lld}",
                             (long long)m->context_length);
    }
    if (rc == 0)
        rc = buf_appends(b, "],\"models_available\":[");
    for (size_t i = 0; rc == 0 && i < hb->n_available; i++) {
        rc = i > 0 ? buf_appends(b, ",") : 0;
        if (rc == 0)
            rc = json_append_str(b, hb->available[i], strlen(hb->available[i]));
    }
    if (rc == 0)
        rc = buf_appendf(b, "],\"requests_active\":%lld}",
                         (long long)n->inflight_total);
    return rc;
}

static int
registry_json_inflight(const struct registry_node *n, int64_t now_ns,
                       struct buf *b)
{
    int rc = buf_appendf(b, ",\"in_flight\":{\"total\":%lld,\"models\":{",
                         (long long)n->inflight_total);

    for (size_t i = 0; rc == 0 && i < n->n_inflight; i++) {
        rc = i > 0 ? buf_appends(b, ",") : 0;
        if (rc == 0)
            rc = json_append_str(b, n->inflight[i].model,
                                 strlen(n->inflight[i].model));
        if (rc == 0)
            rc = buf_appendf(b, ":%lld", (long long)n->inflight[i].count);
    }
    if (rc == 0)
        rc = buf_appends(b, "}},\"models_unloaded\":{");
    for (size_t i = 0; rc == 0 && i < n->n_unloaded; i++) {
        rc = i > 0 ? buf_appends(b, ",") : 0;
        if (rc == 0)
            rc = json_append_str(b, n->unloaded[i].name,
                                 strlen(n->unloaded[i].name));
        if (rc == 0)
            rc = buf_appendf(b, ":{\"age_s\":%.3f}",
                             (double)(now_ns - n->unloaded[i].at_ns) /
                                 NS_PER_SEC);
    }
    return rc != 0 ? rc : buf_appends(b, "}");
}

static int
registry_json_node(const struct registry_node *n, int64_t now_ns, struct buf *b)
{
    int rc = buf_appends(b, "{\"node_id\":");

    if (rc == 0)
        rc = json_append_str(b, n->id, strlen(n->id));
    if (rc == 0)
        rc = registry_json_kv_str(b, "status", registry_status_name(n->status));
    if (rc == 0 && n->reason[0] != '\0')
        rc = registry_json_kv_str(b, "reason", n->reason);
    if (rc == 0)
        rc = registry_json_hw(n, b);
    if (rc == 0)
        rc = registry_json_kv_str(b, "ollama_url", n->ollama_base_url);
    if (rc == 0)
        rc = buf_appendf(
            b,
            ",\"last_heartbeat_age_s\":%.3f,\"first_seen_age_s\":%.3f,"
            "\"missed_heartbeats\":%lld,\"num_parallel\":%lld",
            (double)(now_ns - n->last_heartbeat_ns) / NS_PER_SEC,
            (double)(now_ns - n->first_seen_ns) / NS_PER_SEC,
            (long long)n->missed_heartbeats, (long long)n->hb.num_parallel);
    if (rc == 0)
        rc = registry_json_kv_str(b, "agent_version", n->hb.agent_version);
    if (rc == 0)
        rc = registry_json_kv_str(b, "lan_ip", n->hb.lan_ip);
    if (rc == 0)
        rc = registry_json_kv_str(b, "ollama_host", n->hb.ollama_host);
    if (rc == 0)
        rc = registry_json_cpu_mem(n, b);
    if (rc == 0)
        rc = registry_json_ollama(n, b);
    if (rc == 0)
        rc = registry_json_inflight(n, now_ns, b);
    if (rc == 0)
        rc = buf_appends(b, n->hb.extra != NULL ? n->hb.extra : "");
    return rc != 0 ? rc : buf_appends(b, "}");
}

int
registry_status_json(const struct registry *reg, int64_t now_ns, struct buf *b)
{
    int rc = buf_appends(b, "[");

    for (size_t i = 0; rc == 0 && i < reg->n; i++) {
        rc = i > 0 ? buf_appends(b, ",") : 0;
        if (rc == 0)
            rc = registry_json_node(reg->nodes[i], now_ns, b);
    }
    return rc != 0 ? rc : buf_appends(b, "]");
}

/* ---- models changed by herd itself (pull, delete) ---------------------- */

static struct registry_node *
registry_find_rw(struct registry *reg, const char *node_id)
{
    return (struct registry_node *)registry_find(reg, node_id);
}

int
registry_node_add_model(struct registry *reg, const char *node_id,
                        const char *model)
{
    struct registry_node *n = registry_find_rw(reg, node_id);
    struct registry_hb *hb;
    char **na;

    if (n == NULL)
        return -ENOENT;
    if (strlen(model) > REGISTRY_MODEL_NAME_MAX)
        return -E2BIG;
    if (registry_node_available(n, model))
        return 0;
    hb = &n->hb;
    if (hb->n_available >= REGISTRY_MAX_MODELS)
        return -ENOSPC;
    na = realloc(hb->available, (hb->n_available + 1) * sizeof(*na));
    if (na == NULL)
        fatal("registry: out of memory");
    hb->available = na;
    hb->available[hb->n_available++] = registry_xstrdup(model);
    free(hb->index);
    registry_model_index_build(hb);
    registry_watch(reg, REGISTRY_WATCH_NODE, n, NULL, 0);
    return 0;
}

int
registry_node_remove_model(struct registry *reg, const char *node_id,
                           const char *model)
{
    struct registry_node *n = registry_find_rw(reg, node_id);
    struct registry_hb *hb;
    bool found = false;
    size_t k = 0;

    if (n == NULL)
        return -ENOENT;
    hb = &n->hb;
    for (size_t i = 0; i < hb->n_available; i++) {
        if (strcmp(hb->available[i], model) == 0) {
            free(hb->available[i]);
            found = true;
        } else {
            hb->available[k++] = hb->available[i];
        }
    }
    hb->n_available = k;
    k = 0;
    for (size_t i = 0; i < hb->n_loaded; i++) {
        if (strcmp(hb->loaded[i].name, model) == 0) {
            free(hb->loaded[i].name);
            found = true;
        } else {
            hb->loaded[k++] = hb->loaded[i];
        }
    }
    hb->n_loaded = k;
    free(hb->index);
    registry_model_index_build(hb);
    if (found)
        registry_watch(reg, REGISTRY_WATCH_NODE, n, NULL, 0);
    return found ? 0 : -ENOENT;
}
