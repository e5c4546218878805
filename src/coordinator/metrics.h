/*
 * metrics.h - counters and histograms for GET /metrics (the Prometheus
 * text format, version 0.0.4). Loop thread only; recording is a few
 * additions, never an allocation on the hot path once a label set was
 * seen.
 */
#ifndef COORD_METRICS_H
#define COORD_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "herd/buf.h"

#define METRICS_BUCKETS 16

struct histogram {
    const double *bounds; /* METRICS_BUCKETS upper bounds, seconds */
    uint64_t counts[METRICS_BUCKETS + 1]; /* + the +Inf bucket */
    double sum;
    uint64_t n;
};

struct metrics;
struct herd;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* One request outcome (a trace row's status; "retried" rows excluded). */
void metrics_request(struct metrics *m, const char *model, const char *node,
                     const char *status, double latency_s, double ttft_s);
void metrics_retry(struct metrics *m);
void metrics_fallback(struct metrics *m);
/* A pull through herd (explicit or auto) ended. */
void metrics_pull(struct metrics *m, bool ok);
/* One routing decision's time in the scorer. */
void metrics_scoring(struct metrics *m, double seconds);

/* Appends the whole exposition, with the fleet's gauges from h. */
int metrics_render(struct metrics *m, struct herd *h,
                   struct buf *b) HERD_MUST_USE;

/* The p-quantile (0..1) of the scoring histogram, estimated within its
 * bucket; 0 when empty. For /fleet/queue and the benchmarks. */
double metrics_scoring_quantile(const struct metrics *m, double q);

#endif /* COORD_METRICS_H */
