/*
 * health.c - the fleet health engine (see health.h). Each check is one
 * small function that reads the input and adds recommendations; the
 * report sorts them, scores them and prints the JSON.
 */
#include "health.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"
#include "herd/modelname.h"

struct hrec {
    enum health_severity sev;
    size_t order; /* insertion order: a stable sort */
    cJSON *obj;   /* owned */
};

struct hctx {
    const struct health_input *in;
    const cJSON *fleet;  /* stats.fleet or NULL */
    const cJSON *snodes; /* stats.nodes (array) or NULL */
    struct hrec v[HEALTH_MAX_RECOMMENDATIONS];
    size_t n;
    bool oom;
};

const char *
health_severity_name(enum health_severity s)
{
    switch (s) {
    case HEALTH_CRITICAL:
        return "critical";
    case HEALTH_WARNING:
        return "warning";
    case HEALTH_INFO:
        break;
    }
    return "info";
}

void
health_events_unknown(struct health_events *ev)
{
    ev->vram_fallback_24h = -1;
    ev->context_stripped_24h = -1;
    ev->context_upgraded_24h = -1;
    ev->context_warning_24h = -1;
    ev->reaped_24h = -1;
    ev->hold_timeout_24h = -1;
}

static void
health_event_get(const cJSON *events, const char *name, int64_t *out)
{
    const cJSON *e = json_get(events, name);
    double v;

    if (!cJSON_IsObject(e))
        return;
    v = json_get_num(e, "count_24h", -1);
    if (v >= 0 && v < 9e15)
        *out = (int64_t)v;
}

void
health_events_from_stats(const cJSON *stats, struct health_events *ev)
{
    const cJSON *events = json_get(stats, "events");

    if (!cJSON_IsObject(events))
        return;
    health_event_get(events, "vram_fallback", &ev->vram_fallback_24h);
    health_event_get(events, "context_stripped", &ev->context_stripped_24h);
    health_event_get(events, "context_upgraded", &ev->context_upgraded_24h);
    health_event_get(events, "context_warning", &ev->context_warning_24h);
    health_event_get(events, "reaped", &ev->reaped_24h);
    health_event_get(events, "hold_timeout", &ev->hold_timeout_24h);
}

/* --- building recommendations --------------------------------------------- */

/* Takes data (may be NULL: {}). The description is printf-formatted. */
static void HERD_PRINTF(7, 8)
    hc_add(struct hctx *c, enum health_severity sev, const char *check_id,
           const char *node_id, cJSON *data, const char *title, const char *fmt,
           ...)
{
    char desc[1024];
    cJSON *o;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(desc, sizeof(desc), fmt, ap);
    va_end(ap);
    if (c->n >= HEALTH_MAX_RECOMMENDATIONS) {
        cJSON_Delete(data);
        return;
    }
    o = cJSON_CreateObject();
    if (o == NULL || data == NULL) {
        cJSON_Delete(o);
        cJSON_Delete(data);
        c->oom = true;
        return;
    }
    if (!cJSON_AddStringToObject(o, "check_id", check_id) ||
        !cJSON_AddStringToObject(o, "severity", health_severity_name(sev)) ||
        !cJSON_AddStringToObject(o, "title", title) ||
        !cJSON_AddStringToObject(o, "description", desc) ||
        !cJSON_AddStringToObject(o, "fix", "") ||
        !(node_id ? cJSON_AddStringToObject(o, "node_id", node_id)
                  : cJSON_AddNullToObject(o, "node_id"))) {
        cJSON_Delete(o);
        cJSON_Delete(data);
        c->oom = true;
        return;
    }
    cJSON_AddItemToObject(o, "data", data);
    c->v[c->n].sev = sev;
    c->v[c->n].order = c->n;
    c->v[c->n].obj = o;
    c->n++;
}

/* Sets the "fix" of the last recommendation added. */
static void HERD_PRINTF(2, 3) hc_fix(struct hctx *c, const char *fmt, ...)
{
    char fix[1024];
    va_list ap;

    if (c->n == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(fix, sizeof(fix), fmt, ap);
    va_end(ap);
    if (!cJSON_ReplaceItemInObject(c->v[c->n - 1].obj, "fix",
                                   cJSON_CreateString(fix)))
        c->oom = true;
}

/* {"k1":n1,...}: numbers only, ended by a NULL key. */
static cJSON *
hc_data(const char *k, double v, ...)
{
    cJSON *o = cJSON_CreateObject();
    va_list ap;

    va_start(ap, v);
    while (o != NULL && k != NULL) {
        if (cJSON_AddNumberToObject(o, k, v) == NULL) {
            cJSON_Delete(o);
            o = NULL;
            break;
        }
        k = va_arg(ap, const char *);
        if (k != NULL)
            v = va_arg(ap, double);
    }
    va_end(ap);
    return o;
}

static double
hc_num(const cJSON *o, const char *key)
{
    double v = json_get_num(o, key, 0);

    return isfinite(v) ? v : 0;
}

static const cJSON *
hc_stats_node(const struct hctx *c, const char *node_id)
{
    const cJSON *n;

    cJSON_ArrayForEach(n, c->snodes)
    {
        const char *id = json_get_str(n, "node_id");

        if (id != NULL && strcmp(id, node_id) == 0)
            return n;
    }
    return NULL;
}

static bool
hc_has_check(const struct hctx *c, const char *check_id, const char *node_id,
             bool non_info)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *id = json_get_str(c->v[i].obj, "check_id");
        const char *nid = json_get_str(c->v[i].obj, "node_id");

        if (id != NULL && strcmp(id, check_id) == 0 && nid != NULL &&
            strcmp(nid, node_id) == 0 &&
            (!non_info || c->v[i].sev != HEALTH_INFO))
            return true;
    }
    return false;
}

/* --- node checks -----------------------------------------------------------
 */

static void
check_status(struct hctx *c, const struct health_node *n)
{
    char title[256];

    if (strcmp(n->status, "offline") == 0) {
        snprintf(title, sizeof(title), "Node %s is offline", n->node_id);
        hc_add(c, HEALTH_CRITICAL, "node_offline", n->node_id,
               hc_data("silent_s", n->silent_s, NULL), title,
               "No heartbeat for %.0f s%s%s; requests are not routed to it.",
               n->silent_s, *n->reason ? ": " : "", n->reason);
        hc_fix(c,
               "Check that herd-node and Ollama run on %s and can reach "
               "the coordinator (herd-node --router-url).",
               n->node_id);
    } else if (strcmp(n->status, "degraded") == 0) {
        snprintf(title, sizeof(title), "Node %s is degraded", n->node_id);
        hc_add(c, HEALTH_WARNING, "node_degraded", n->node_id,
               hc_data("silent_s", n->silent_s, NULL), title,
               "Its last heartbeat is %.0f s old; it is still routed, with a "
               "penalty.",
               n->silent_s);
        hc_fix(c,
               "Check the network between %s and the coordinator, and "
               "that herd-node is not stalled.",
               n->node_id);
    } else if (strcmp(n->status, "rejected") == 0) {
        snprintf(title, sizeof(title), "Node %s is not admitted", n->node_id);
        hc_add(c, HEALTH_INFO, "node_rejected", n->node_id,
               hc_data("memory_total_gb", n->mem_total_gb, NULL), title, "%s",
               *n->reason ? n->reason : "below the admission minimum");
        hc_fix(c, "Lower FLEET_MIN_NODE_MEMORY_GB, or leave it out of the "
                  "fleet.");
    }
}

static void
check_ollama(struct hctx *c, const struct health_node *n)
{
    char title[256];

    if (strcmp(n->status, "online") != 0 && strcmp(n->status, "degraded") != 0)
        return;
    if (!n->ollama_healthy) {
        snprintf(title, sizeof(title), "Ollama is not answering on %s",
                 n->node_id);
        hc_add(c, HEALTH_CRITICAL, "ollama_unreachable", n->node_id,
               hc_data(NULL, 0), title, "%s",
               "herd-node reports that its Ollama does not answer; the node "
               "cannot serve requests.");
        hc_fix(c,
               "Start Ollama on %s (ollama serve) or check "
               "herd-node --ollama-host.",
               n->node_id);
    }
    if (n->router_state != NULL) {
        bool ejected = strcmp(n->router_state, "ejected") == 0;

        snprintf(title, sizeof(title), "Node %s is %s after failures",
                 n->node_id, ejected ? "ejected" : "on probation");
        hc_add(c, ejected ? HEALTH_WARNING : HEALTH_INFO, "connection_failures",
               n->node_id, hc_data(NULL, 0), title,
               "Requests to it failed (connection refused, timeout or 5xx); "
               "%s",
               ejected ? "herd sends it nothing for a while."
                       : "herd sends it one request at a time until one "
                         "succeeds.");
        hc_fix(c, "Look at the node's Ollama log; the trace explorer shows "
                  "each failed attempt and its reason.");
    }
}

static void
check_memory(struct hctx *c, const struct health_node *n)
{
    char title[256];
    bool routable =
        strcmp(n->status, "online") == 0 || strcmp(n->status, "degraded") == 0;

    if (!routable)
        return;
    if (strcmp(n->pressure, "warn") == 0 ||
        strcmp(n->pressure, "critical") == 0) {
        bool crit = strcmp(n->pressure, "critical") == 0;

        snprintf(title, sizeof(title), "Memory pressure on %s", n->node_id);
        hc_add(c, crit ? HEALTH_CRITICAL : HEALTH_WARNING, "memory_pressure",
               n->node_id,
               hc_data("available_gb", n->mem_available_gb, "total_gb",
                       n->mem_total_gb, NULL),
               title, "Memory pressure is %s (%.1f of %.1f GB available)%s.",
               n->pressure, n->mem_available_gb, n->mem_total_gb,
               crit ? "; the node is not routed" : "");
        hc_fix(c,
               "Unload models on %s (keep_alive 0) or close other "
               "programs.",
               n->node_id);
    }
}

static void
check_underused(struct hctx *c, const struct health_node *n)
{
    char title[256];
    double frac;

    if (strcmp(n->status, "online") != 0 || n->mem_total_gb <= 0)
        return;
    frac = n->mem_available_gb / n->mem_total_gb;
    if (frac <= HEALTH_UNDERUSED_FRACTION || n->n_loaded > 2)
        return;
    if (hc_has_check(c, "model_thrashing", n->node_id, true) ||
        hc_has_check(c, "model_load_timeout", n->node_id, true))
        return;
    snprintf(title, sizeof(title), "Memory unused on %s", n->node_id);
    hc_add(c, HEALTH_INFO, "underutilized_memory", n->node_id,
           hc_data("available_gb", n->mem_available_gb, "total_gb",
                   n->mem_total_gb, "models_loaded", (double)n->n_loaded, NULL),
           title,
           "%.0f%% of its memory (%.1f GB) is free with %zu model%s "
           "loaded.",
           frac * 100, n->mem_available_gb, n->n_loaded,
           n->n_loaded == 1 ? "" : "s");
    hc_fix(c, "Load or pin another model there (Recommendations tab) so it "
              "takes its share of the traffic.");
}

/* "8.0B" -> 8.0; 0 when unknown. */
static double
hc_params_b(const char *s)
{
    double v = 0;

    if (s == NULL || *s == '\0')
        return 0;
    if (modelname_count(s, strlen(s), "bmt", &v) != 0)
        return 0;
    return v;
}

static void
check_kv_bloat(struct hctx *c, const struct health_node *n)
{
    double size = 0, expected = 0, kv;
    size_t bloated = 0;
    char title[256];
    enum health_severity sev;

    for (size_t i = 0; i < n->n_loaded; i++) {
        double p = hc_params_b(n->loaded[i].parameter_size);
        double e = p * 0.5;

        if (e <= 0 || n->loaded[i].size_gb / e <= HEALTH_KV_BLOAT_RATIO)
            continue;
        bloated++;
        size += n->loaded[i].size_gb;
        expected += e;
    }
    if (bloated == 0 || size <= 0)
        return;
    kv = (size - expected) / size * 100;
    sev = kv > 50 ? HEALTH_CRITICAL : kv > 30 ? HEALTH_WARNING : HEALTH_INFO;
    snprintf(title, sizeof(title), "KV cache bloat on %s", n->node_id);
    hc_add(c, sev, "kv_cache_bloat", n->node_id,
           hc_data("kv_cache_pct", round(kv * 10) / 10, "loaded_gb", size,
                   "expected_gb", expected, NULL),
           title,
           "%zu loaded model%s take %.1f GB where their weights need about "
           "%.1f GB: %.0f%% is context (KV cache), usually from a high "
           "OLLAMA_NUM_PARALLEL or num_ctx.",
           bloated, bloated == 1 ? "" : "s", size, expected, kv);
    hc_fix(c,
           "Set OLLAMA_NUM_PARALLEL=2 (or lower num_ctx) on %s and "
           "restart Ollama.",
           n->node_id);
}

static void
check_version(struct hctx *c, const struct health_node *n)
{
    char title[256];
    const char *want = c->in->router_version ? c->in->router_version : "";

    if (strcmp(n->status, "offline") == 0)
        return;
    if (n->agent_version == NULL || *n->agent_version == '\0') {
        snprintf(title, sizeof(title), "Unknown agent version on %s",
                 n->node_id);
        hc_add(c, HEALTH_INFO, "version_unknown", n->node_id, hc_data(NULL, 0),
               title, "%s", "Its heartbeat carries no agent_version.");
        hc_fix(c, "Upgrade herd-node on %s.", n->node_id);
    } else if (strcmp(n->agent_version, want) != 0) {
        cJSON *d = cJSON_CreateObject();

        if (d != NULL) {
            cJSON_AddStringToObject(d, "agent_version", n->agent_version);
            cJSON_AddStringToObject(d, "router_version", want);
        }
        snprintf(title, sizeof(title), "Version mismatch on %s", n->node_id);
        hc_add(c, HEALTH_WARNING, "version_mismatch", n->node_id, d, title,
               "herd-node %s reports to herd %s.", n->agent_version, want);
        hc_fix(c, "Run the same release of herd and herd-node everywhere.");
    }
}

/* --- checks on the trace aggregates --------------------------------------- */

static void
check_thrashing(struct hctx *c, const struct health_node *n)
{
    const cJSON *s = hc_stats_node(c, n->node_id);
    double cold = hc_num(s, "cold_loads_24h"),
           cold1 = hc_num(s, "cold_loads_1h");
    char title[256];

    if (s == NULL || cold < HEALTH_THRASH_COLD_LOADS ||
        n->mem_available_gb <= HEALTH_THRASH_MIN_FREE_GB)
        return;
    snprintf(title, sizeof(title), "Models reloading on %s", n->node_id);
    hc_add(c, cold1 >= 1 ? HEALTH_WARNING : HEALTH_INFO, "model_thrashing",
           n->node_id,
           hc_data("cold_loads_24h", cold, "cold_loads_1h", cold1,
                   "available_gb", n->mem_available_gb, NULL),
           title,
           "%.0f requests in 24 h waited more than 40 s for a model to load "
           "(%.0f in the last hour)%s, although %.1f GB are free.",
           cold, cold1, cold1 >= 1 ? "" : "; resolved", n->mem_available_gb);
    hc_fix(c,
           "Raise OLLAMA_KEEP_ALIVE and OLLAMA_MAX_LOADED_MODELS on %s, "
           "or pin the models it serves.",
           n->node_id);
}

static void
check_error_rate(struct hctx *c, const struct health_node *n)
{
    const cJSON *s = hc_stats_node(c, n->node_id);
    double rate = hc_num(s, "error_rate_pct_24h");
    double rate1 = hc_num(s, "error_rate_pct_1h");
    double req = hc_num(s, "requests_24h");
    bool recent;
    char title[256];

    if (s == NULL || req <= 0 || rate < HEALTH_ERROR_RATE_PCT)
        return;
    recent = rate1 >= HEALTH_ERROR_RATE_PCT;
    snprintf(title, sizeof(title), "High error rate on %s", n->node_id);
    hc_add(c, recent ? HEALTH_WARNING : HEALTH_INFO, "high_error_rate",
           n->node_id,
           hc_data("error_rate_pct_24h", rate, "error_rate_pct_1h", rate1,
                   "requests_24h", req, "failed_24h", hc_num(s, "failed_24h"),
                   NULL),
           title, "%.1f%% of its %.0f requests in 24 h did not complete%s.",
           rate, req, recent ? "" : " (below 5% in the last hour: resolved)");
    hc_fix(c,
           "Open the request explorer filtered on node %s and status "
           "failed to see the reasons.",
           n->node_id);
}

static void
check_load_timeouts(struct hctx *c)
{
    const cJSON *lt = json_get(c->in->stats, "load_timeouts"), *e;

    /* rows are by model then node: sum each model's run */
    for (e = cJSON_IsArray(lt) ? lt->child : NULL; e != NULL;) {
        const char *model = json_get_str(e, "model");
        double n24 = 0, n1 = 0;
        const cJSON *f = e;
        cJSON *nodes = cJSON_CreateArray(), *d;
        char title[512];

        for (; f != NULL && model != NULL && json_get_str(f, "model") != NULL &&
               strcmp(json_get_str(f, "model"), model) == 0;
             f = f->next) {
            n24 += hc_num(f, "count_24h");
            n1 += hc_num(f, "count_1h");
            if (nodes != NULL && json_get_str(f, "node_id") != NULL)
                cJSON_AddItemToArray(
                    nodes, cJSON_CreateString(json_get_str(f, "node_id")));
        }
        e = f == e ? e->next : f;
        if (model == NULL || n24 < HEALTH_LOAD_TIMEOUTS) {
            cJSON_Delete(nodes);
            continue;
        }
        d = hc_data("count_24h", n24, "count_1h", n1, NULL);
        if (d != NULL && nodes != NULL)
            cJSON_AddItemToObject(d, "nodes", nodes);
        else
            cJSON_Delete(nodes);
        snprintf(title, sizeof(title), "%s times out while loading", model);
        hc_add(c, n1 > 0 ? HEALTH_WARNING : HEALTH_INFO, "model_load_timeout",
               NULL, d, title,
               "%.0f attempts in 24 h (%.0f in the last hour) failed after "
               "more than 120 s, the signature of a model too big to load.",
               n24, n1);
        hc_fix(c,
               "Serve %s from a node with more memory, or use a smaller "
               "quantisation.",
               model);
    }
}

static void
check_fleet_rates(struct hctx *c)
{
    const cJSON *f = c->fleet;
    double req = hc_num(f, "requests_24h");
    double rpr = hc_num(f, "avg_retries_per_request_24h");
    double disc = hc_num(f, "client_disconnects_24h");
    double disc1 = hc_num(f, "client_disconnects_1h");
    double inc = hc_num(f, "incomplete_streams_24h");
    double inc1 = hc_num(f, "incomplete_streams_1h");

    if (f == NULL)
        return;
    if (rpr >= HEALTH_RETRY_RATE_INFO) {
        hc_add(c, rpr >= HEALTH_RETRY_RATE_WARN ? HEALTH_WARNING : HEALTH_INFO,
               "high_retry_rate", NULL,
               hc_data("avg_retries_per_request", rpr, "retries_24h",
                       hc_num(f, "retries_24h"), NULL),
               "Many requests are retried",
               "%.2f retries per request in 24 h: nodes fail before their "
               "first byte.",
               rpr);
        hc_fix(c, "Filter the request explorer on status retried to see "
                  "which nodes fail and why.");
    }
    if (disc >= HEALTH_DISCONNECTS) {
        double pct = req > 0 ? disc / req * 100 : 0;
        bool warn = disc1 > 0 && pct > HEALTH_DISCONNECT_RATE_PCT;

        hc_add(c, warn ? HEALTH_WARNING : HEALTH_INFO, "client_disconnects",
               NULL,
               hc_data("count_24h", disc, "count_1h", disc1, "rate_pct",
                       round(pct * 100) / 100, NULL),
               "Clients leave before the answer ends",
               "%.0f clients went away mid-answer in 24 h (%.2f%%)%s.", disc,
               pct, disc1 > 0 ? "" : "; none in the last hour");
        hc_fix(c, "Check client timeouts: slow first tokens (cold loads, "
                  "holding) make clients give up.");
    }
    if (inc >= HEALTH_INCOMPLETE) {
        double pct = req > 0 ? inc / req * 100 : 0;
        bool warn = inc1 > 0 && pct > HEALTH_INCOMPLETE_RATE_PCT;

        hc_add(c, warn ? HEALTH_WARNING : HEALTH_INFO, "incomplete_streams",
               NULL,
               hc_data("count_24h", inc, "count_1h", inc1, "rate_pct",
                       round(pct * 100) / 100, NULL),
               "Answers ended without their last line",
               "%.0f streams from nodes ended without Ollama's done line in "
               "24 h (%.2f%%)%s.",
               inc, pct, inc1 > 0 ? "" : "; none in the last hour");
        hc_fix(c, "Look for Ollama crashes or restarts on the nodes named in "
                  "those traces.");
    }
}

/* --- checks on the trace events --------------------------------------------
 */

static void
check_events(struct hctx *c)
{
    const struct health_events *ev = &c->in->events;
    int64_t ctx = 0;

    if (ev->vram_fallback_24h > 0) {
        hc_add(c, HEALTH_INFO, "vram_fallback_active", NULL,
               hc_data("count_24h", (double)ev->vram_fallback_24h, NULL),
               "Requests answered by another loaded model",
               "%lld requests in 24 h were served by a model already in "
               "memory instead of the one asked for (X-Fleet-Fallback names "
               "it).",
               (long long)ev->vram_fallback_24h);
        hc_fix(c, "Load or pin the models clients ask for, or turn the VRAM "
                  "fallback off in Settings.");
    }
    if (ev->context_warning_24h > 0) {
        hc_add(c, HEALTH_WARNING, "context_protection_insufficient", NULL,
               hc_data("count_24h", (double)ev->context_warning_24h, NULL),
               "Clients ask for more context than is loaded",
               "%lld requests in 24 h asked for a num_ctx larger than the "
               "loaded model's, with no bigger model loaded to take them: "
               "Ollama reloads the model for them.",
               (long long)ev->context_warning_24h);
        hc_fix(c, "Load the model with a larger context (OLLAMA_CONTEXT_LENGTH)"
                  " or lower num_ctx in the clients.");
    }
    if (ev->context_stripped_24h > 0)
        ctx += ev->context_stripped_24h;
    if (ev->context_upgraded_24h > 0)
        ctx += ev->context_upgraded_24h;
    if (ctx > 0) {
        hc_add(c, HEALTH_INFO, "context_protection_active", NULL,
               hc_data("stripped_24h",
                       (double)(ev->context_stripped_24h > 0
                                    ? ev->context_stripped_24h
                                    : 0),
                       "upgraded_24h",
                       (double)(ev->context_upgraded_24h > 0
                                    ? ev->context_upgraded_24h
                                    : 0),
                       NULL),
               "Context protection is at work",
               "%lld requests in 24 h had their num_ctx removed or moved to a "
               "bigger loaded model, which saved a reload each.",
               (long long)ctx);
        hc_fix(c, "Nothing to do; clients could stop sending num_ctx.");
    }
    if (ev->reaped_24h > 0) {
        hc_add(c,
               ev->reaped_24h > HEALTH_REAPED_CRITICAL ? HEALTH_CRITICAL
                                                       : HEALTH_WARNING,
               "zombie_reaper_active", NULL,
               hc_data("count_24h", (double)ev->reaped_24h, NULL),
               "Stuck requests were ended",
               "%lld requests in 24 h passed a deadline (no first byte, a "
               "stalled stream, or the whole-request limit) and were ended by "
               "herd.",
               (long long)ev->reaped_24h);
        hc_fix(c, "Check the nodes those requests went to; raise "
                  "FLEET_FIRST_BYTE_TIMEOUT if cold loads are that slow.");
    }
    if (ev->hold_timeout_24h > 0) {
        hc_add(c, HEALTH_WARNING, "slots_saturated", NULL,
               hc_data("count_24h", (double)ev->hold_timeout_24h, NULL),
               "Requests waited for a slot in vain",
               "%lld requests in 24 h found every slot busy for "
               "FLEET_HOLD_TIMEOUT and got 503.",
               (long long)ev->hold_timeout_24h);
        hc_fix(c, "Add nodes, raise OLLAMA_NUM_PARALLEL where memory allows, "
                  "or raise FLEET_HOLD_TIMEOUT.");
    }
}

/* --- the report ------------------------------------------------------------
 */

static int
hrec_cmp(const void *a, const void *b)
{
    const struct hrec *x = a, *y = b;

    if (x->sev != y->sev)
        return (int)x->sev - (int)y->sev;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void
hc_run_checks(struct hctx *c)
{
    const struct health_input *in = c->in;

    for (size_t i = 0; i < in->n_nodes; i++) {
        const struct health_node *n = &in->nodes[i];

        check_status(c, n);
        check_ollama(c, n);
        check_memory(c, n);
        check_kv_bloat(c, n);
        check_version(c, n);
        check_thrashing(c, n);
        check_error_rate(c, n);
    }
    check_load_timeouts(c);
    /* after thrashing and timeouts: it is suppressed by them */
    for (size_t i = 0; i < in->n_nodes; i++)
        check_underused(c, &in->nodes[i]);
    check_fleet_rates(c);
    check_events(c);
}

static int
hc_score(const struct hctx *c)
{
    int score = 100;

    for (size_t i = 0; i < c->n; i++)
        score -= c->v[i].sev == HEALTH_CRITICAL  ? 20
                 : c->v[i].sev == HEALTH_WARNING ? 10
                                                 : 3;
    return score < 0 ? 0 : score;
}

static size_t
hc_count_status(const struct health_input *in, const char *status)
{
    size_t n = 0;

    for (size_t i = 0; i < in->n_nodes; i++)
        n += strcmp(in->nodes[i].status, status) == 0;
    return n;
}

static cJSON *
hc_vitals(const struct hctx *c, int score)
{
    const struct health_input *in = c->in;
    const cJSON *f = c->fleet;
    cJSON *v = cJSON_CreateObject();

    if (v == NULL)
        return NULL;
    cJSON_AddNumberToObject(v, "nodes_total", (double)in->n_nodes);
    cJSON_AddNumberToObject(v, "nodes_online",
                            (double)hc_count_status(in, "online"));
    cJSON_AddNumberToObject(v, "nodes_degraded",
                            (double)hc_count_status(in, "degraded"));
    cJSON_AddNumberToObject(v, "nodes_offline",
                            (double)hc_count_status(in, "offline"));
    cJSON_AddNumberToObject(v, "nodes_rejected",
                            (double)hc_count_status(in, "rejected"));
    cJSON_AddNumberToObject(v, "overall_error_rate_pct",
                            hc_num(f, "error_rate_pct_24h"));
    cJSON_AddNumberToObject(v, "cold_loads_24h", hc_num(f, "cold_loads_24h"));
    cJSON_AddNumberToObject(v, "avg_ttft_ms", hc_num(f, "avg_ttft_ms_24h"));
    cJSON_AddNumberToObject(v, "total_requests_24h", hc_num(f, "requests_24h"));
    cJSON_AddNumberToObject(v, "total_retries_24h", hc_num(f, "retries_24h"));
    cJSON_AddNumberToObject(v, "client_disconnects_24h",
                            hc_num(f, "client_disconnects_24h"));
    cJSON_AddNumberToObject(v, "incomplete_streams_24h",
                            hc_num(f, "incomplete_streams_24h"));
    cJSON_AddNumberToObject(v, "image_generations_24h", 0);
    cJSON_AddNumberToObject(v, "transcriptions_24h", 0);
    cJSON_AddBoolToObject(v, "traces_available", in->stats != NULL);
    cJSON_AddNumberToObject(v, "health_score", score);
    return v;
}

int
health_report(const struct health_input *in, struct buf *out)
{
    struct hctx *c = calloc(1, sizeof(*c));
    cJSON *root = NULL, *recs = NULL, *vit;
    int rc = -ENOMEM, score;

    if (c == NULL)
        return -ENOMEM;
    c->in = in;
    c->fleet = cJSON_IsObject(json_get(in->stats, "fleet"))
                   ? json_get(in->stats, "fleet")
                   : NULL;
    c->snodes = cJSON_IsArray(json_get(in->stats, "nodes"))
                    ? json_get(in->stats, "nodes")
                    : NULL;
    hc_run_checks(c);
    qsort(c->v, c->n, sizeof(c->v[0]), hrec_cmp);
    score = hc_score(c);
    root = cJSON_CreateObject();
    recs = cJSON_CreateArray();
    vit = hc_vitals(c, score);
    if (root == NULL || recs == NULL || vit == NULL || c->oom) {
        cJSON_Delete(vit);
        goto out;
    }
    cJSON_AddItemToObject(root, "vitals", vit);
    for (size_t i = 0; i < c->n; i++) {
        cJSON_AddItemToArray(recs, c->v[i].obj);
        c->v[i].obj = NULL;
    }
    cJSON_AddItemToObject(root, "recommendations", recs);
    recs = NULL;
    cJSON_AddNumberToObject(root, "checked_at", in->now);
    rc = json_print(root, out);
out:
    for (size_t i = 0; i < c->n; i++)
        cJSON_Delete(c->v[i].obj);
    cJSON_Delete(recs);
    cJSON_Delete(root);
    free(c);
    return rc;
}
