/*
 * dashboard.h - everything herd serves under /dashboard: the pages (eight
 * tabs and the request explorer, built into the binary with uPlot, no
 * CDN), the live fleet stream (GET /dashboard/events, SSE every 2 s) and
 * the JSON APIs of ollama-herd's dashboard (under /dashboard/api/), plus the
 * health engine's cache, the model recommender's catalogue, pinned
 * models, run-time settings and a small fleet benchmark runner.
 *
 * Threads. Loop thread only. Every SQLite query goes through dashq (the
 * libuv thread pool, read-only connections); nothing here blocks the
 * loop on disk except the tiny JSON files it owns (pinned_models.json,
 * benchmarks.json), written atomically on an admin's action.
 *
 * Life. dashboard_init() after the registry, traces, router, HTTP client
 * and pulls exist; dashboard_route() from the HTTP front end;
 * dashboard_free() once the HTTP server has ended every request and
 * before the HTTP client is freed. It starts closing the dashboard's
 * timers, benchmark calls and dashq; the loop must run until they are
 * closed (it does: main.c runs it until no handle is left).
 */
#ifndef COORD_DASHBOARD_H
#define COORD_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

#include "herd.h"

/* One file built into the binary (cmake/embed.cmake). data has a NUL
 * after its len bytes. */
struct dashboard_asset {
    const char *name; /* "index.html", "uplot.js", "models.json", ... */
    const char *type; /* "html", "js", "css", "svg", "json" */
    const unsigned char *data;
    size_t len;
};

/* Generated: every embedded file, ended by an entry whose name is NULL. */
extern const struct dashboard_asset dashboard_assets[];

/* The embedded file called name, or NULL. */
const struct dashboard_asset *dashboard_asset_find(const char *name);

/* 0, or -1 after logging why (out of memory, a bad FLEET_MODEL_CATALOG).
 * Stores its state in h->dashboard. */
int dashboard_init(struct herd *h);

/* Answers req and returns true when its path is the dashboard's
 * (/dashboard, /dashboard/..., /favicon.svg, /favicon.ico); false
 * otherwise, without touching req. */
bool dashboard_route(struct herd *h, struct http_req *req);

/* Starts closing (see above); h->dashboard is NULL on return. */
void dashboard_free(struct herd *h);

#endif /* COORD_DASHBOARD_H */
