/*
 * metrics.c - GET /metrics (see metrics.h).
 */
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "router.h"

#define METRICS_MAX_SERIES 4096

static const double latency_bounds[METRICS_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    2.5,   5,    10,    20,   30,  60,   120, 300,
};
static const double scoring_bounds[METRICS_BUCKETS] = {
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4,
    5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1,
};

struct series {
    char *model, *node, *status; /* owned */
    uint64_t n;
};

struct metrics {
    struct series *s;
    size_t n, cap;
    uint64_t overflow; /* outcomes beyond METRICS_MAX_SERIES label sets */
    uint64_t retries, fallbacks, pulls_ok, pulls_failed;
    struct histogram latency, ttft, scoring;
};

struct metrics *
metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->latency.bounds = latency_bounds;
    m->ttft.bounds = latency_bounds;
    m->scoring.bounds = scoring_bounds;
    return m;
}

void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->s[i].model);
        free(m->s[i].node);
        free(m->s[i].status);
    }
    free(m->s);
    free(m);
}

static void
hist_observe(struct histogram *h, double v)
{
    size_t i = 0;

    while (i < METRICS_BUCKETS && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

static struct series *
series_get(struct metrics *m, const char *model, const char *node,
           const char *status)
{
    struct series *s;

    for (size_t i = 0; i < m->n; i++) {
        s = &m->s[i];
        if (strcmp(s->status, status) == 0 && strcmp(s->node, node) == 0 &&
            strcmp(s->model, model) == 0)
            return s;
    }
    if (m->n == METRICS_MAX_SERIES)
        return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct series *ns = realloc(m->s, cap * sizeof(*ns));

        if (ns == NULL)
            return NULL;
        m->s = ns;
        m->cap = cap;
    }
    s = &m->s[m->n];
    s->model = strdup(model);
    s->node = strdup(node);
    s->status = strdup(status);
    s->n = 0;
    if (!s->model || !s->node || !s->status) {
        free(s->model);
        free(s->node);
        free(s->status);
        return NULL;
    }
    m->n++;
    return s;
}

void
metrics_request(struct metrics *m, const char *model, const char *node,
                const char *status, double latency_s, double ttft_s)
{
    struct series *s = series_get(m, model, node, status);

    if (s != NULL)
        s->n++;
    else
        m->overflow++;
    if (latency_s > 0)
        hist_observe(&m->latency, latency_s);
    if (ttft_s > 0)
        hist_observe(&m->ttft, ttft_s);
}

void
metrics_retry(struct metrics *m)
{
    m->retries++;
}

void
metrics_fallback(struct metrics *m)
{
    m->fallbacks++;
}

void
metrics_pull(struct metrics *m, bool ok)
{
    if (ok)
        m->pulls_ok++;
    else
        m->pulls_failed++;
}

void
metrics_scoring(struct metrics *m, double seconds)
{
    hist_observe(&m->scoring, seconds);
}

double
metrics_scoring_quantile(const struct metrics *m, double q)
{
    const struct histogram *h = &m->scoring;
    double want = q * (double)h->n, seen = 0, lo = 0;

    if (h->n == 0)
        return 0;
    for (size_t i = 0; i <= METRICS_BUCKETS; i++) {
        double hi = i < METRICS_BUCKETS ? h->bounds[i] : h->bounds[i - 1] * 2;

        if (seen + (double)h->counts[i] >= want && h->counts[i] > 0)
            return lo + (hi - lo) * ((want - seen) / (double)h->counts[i]);
        seen += (double)h->counts[i];
        lo = hi;
    }
    return lo;
}

/* A label value: \, " and newline escaped. */
static int
label(struct buf *b, const char *name, const char *v, bool last)
{
    int rc = buf_appendf(b, "%s=\"", name);

    for (; rc == 0 && *v; v++) {
        if (*v == '\\' || *v == '"')
            rc = buf_appendf(b, "\\%c", *v);
        else if (*v == '\n')
            rc = buf_appends(b, "\\n");
        else
            rc = buf_append(b, v, 1);
    }
    return rc == 0 ? buf_appends(b, last ? "\"" : "\",") : rc;
}

static int
help(struct buf *b, const char *name, const char *type, const char *text)
{
    return buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name,
                       type);
}

static int
hist_render(struct buf *b, const char *name, const char *text,
            const struct histogram *h)
{
    uint64_t cum = 0;
    int rc = help(b, name, "histogram", text);

    for (size_t i = 0; rc == 0 && i < METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        rc = buf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                         (unsigned long long)cum);
    }
    if (rc == 0)
        rc = buf_appendf(b,
                         "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n"
                         "%s_count %llu\n",
                         name, (unsigned long long)h->n, name, h->sum, name,
                         (unsigned long long)h->n);
    return rc;
}

static int
render_nodes(struct herd *h, struct buf *b)
{
    struct registry *reg = h->reg;
    size_t n = registry_count(reg);
    int rc = help(b, "herd_node_up", "gauge",
                  "1 for each node in its current status.");

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct registry_node *nd = registry_node_at(reg, i);

        rc = buf_appends(b, "herd_node_up{");
        if (rc == 0)
            rc = label(b, "node", nd->id, false);
        if (rc == 0)
            rc = label(b, "status", registry_status_name(nd->status), true);
        if (rc == 0)
            rc = buf_appends(b, "} 1\n");
    }
    if (rc == 0)
        rc = help(b, "herd_node_memory_total_bytes", "gauge",
                  "Memory each node reports.");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct registry_node *nd = registry_node_at(reg, i);

        rc = buf_appends(b, "herd_node_memory_total_bytes{");
        if (rc == 0)
            rc = label(b, "node", nd->id, true);
        if (rc == 0)
            rc = buf_appendf(b, "} %.0f\n", nd->hb.mem_total_gb * 1073741824.0);
    }
    if (rc == 0)
        rc = help(b, "herd_node_memory_available_bytes", "gauge",
                  "Available memory each node reports.");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct registry_node *nd = registry_node_at(reg, i);

        rc = buf_appends(b, "herd_node_memory_available_bytes{");
        if (rc == 0)
            rc = label(b, "node", nd->id, true);
        if (rc == 0)
            rc = buf_appendf(b, "} %.0f\n",
                             nd->hb.mem_available_gb * 1073741824.0);
    }
    if (rc == 0)
        rc = help(b, "herd_node_slots", "gauge",
                  "Parallel requests per model a node takes (num_parallel).");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct registry_node *nd = registry_node_at(reg, i);

        rc = buf_appends(b, "herd_node_slots{");
        if (rc == 0)
            rc = label(b, "node", nd->id, true);
        if (rc == 0)
            rc = buf_appendf(b, "} %lld\n", (long long)nd->hb.num_parallel);
    }
    if (rc == 0)
        rc = help(b, "herd_node_in_flight", "gauge",
                  "Requests herd has in flight on a node, by model.");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct registry_node *nd = registry_node_at(reg, i);

        for (size_t k = 0; rc == 0 && k < nd->n_inflight; k++) {
            rc = buf_appends(b, "herd_node_in_flight{");
            if (rc == 0)
                rc = label(b, "node", nd->id, false);
            if (rc == 0)
                rc = label(b, "model", nd->inflight[k].model, true);
            if (rc == 0)
                rc = buf_appendf(b, "} %lld\n",
                                 (long long)nd->inflight[k].count);
        }
    }
    return rc;
}

int
metrics_render(struct metrics *m, struct herd *h, struct buf *b)
{
    uint64_t inf, done, failed;
    struct traces_stats ts = {0};
    int rc = help(b, "herd_requests_total", "counter",
                  "Requests by model, node and outcome.");

    for (size_t i = 0; rc == 0 && i < m->n; i++) {
        rc = buf_appends(b, "herd_requests_total{");
        if (rc == 0)
            rc = label(b, "model", m->s[i].model, false);
        if (rc == 0)
            rc = label(b, "node", m->s[i].node, false);
        if (rc == 0)
            rc = label(b, "status", m->s[i].status, true);
        if (rc == 0)
            rc = buf_appendf(b, "} %llu\n", (unsigned long long)m->s[i].n);
    }
    router_totals(h->router, &inf, &done, &failed);
    if (h->traces != NULL)
        traces_stats(h->traces, &ts);
    if (rc == 0)
        rc = buf_appendf(
            b,
            "# HELP herd_requests_unlabelled_total Outcomes beyond the label "
            "sets kept.\n# TYPE herd_requests_unlabelled_total counter\n"
            "herd_requests_unlabelled_total %llu\n"
            "# HELP herd_retries_total Attempts retried on another node.\n"
            "# TYPE herd_retries_total counter\nherd_retries_total %llu\n"
            "# HELP herd_fallbacks_total Requests served by a fallback "
            "model.\n# TYPE herd_fallbacks_total counter\n"
            "herd_fallbacks_total %llu\n"
            "# HELP herd_requests_in_flight Requests on a node now.\n"
            "# TYPE herd_requests_in_flight gauge\n"
            "herd_requests_in_flight %llu\n"
            "# HELP herd_requests_held Requests waiting for a slot now.\n"
            "# TYPE herd_requests_held gauge\nherd_requests_held %zu\n"
            "# HELP herd_heartbeats_total Heartbeats by result.\n"
            "# TYPE herd_heartbeats_total counter\n"
            "herd_heartbeats_total{result=\"accepted\"} %llu\n"
            "herd_heartbeats_total{result=\"refused\"} %llu\n"
            "# HELP herd_trace_rows_written_total Trace rows committed.\n"
            "# TYPE herd_trace_rows_written_total counter\n"
            "herd_trace_rows_written_total %llu\n"
            "# HELP herd_trace_rows_dropped_total Trace rows dropped (queue "
            "full).\n# TYPE herd_trace_rows_dropped_total counter\n"
            "herd_trace_rows_dropped_total %llu\n",
            (unsigned long long)m->overflow, (unsigned long long)m->retries,
            (unsigned long long)m->fallbacks, (unsigned long long)inf,
            router_held(h->router), (unsigned long long)h->stats.heartbeats,
            (unsigned long long)h->stats.heartbeats_refused,
            (unsigned long long)ts.written, (unsigned long long)ts.dropped);
    if (rc == 0)
        rc = buf_appendf(b,
                         "# HELP herd_pulls_total Model pulls through herd, by "
                         "result.\n# TYPE herd_pulls_total counter\n"
                         "herd_pulls_total{result=\"success\"} %llu\n"
                         "herd_pulls_total{result=\"failed\"} %llu\n",
                         (unsigned long long)m->pulls_ok,
                         (unsigned long long)m->pulls_failed);
    if (rc == 0)
        rc = render_nodes(h, b);
    if (rc == 0)
        rc = hist_render(b, "herd_request_duration_seconds",
                         "Time from the attempt's start to the answer's end.",
                         &m->latency);
    if (rc == 0)
        rc = hist_render(b, "herd_ttft_seconds",
                         "Time from the attempt's start to the first line.",
                         &m->ttft);
    if (rc == 0)
        rc = hist_render(b, "herd_scoring_seconds",
                         "Time to score the fleet for one decision.",
                         &m->scoring);
    return rc;
}
