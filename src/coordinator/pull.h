/*
 * pull.h - models pulled onto nodes and deleted from them, through herd.
 *
 * POST /api/pull pulls a model onto one node (the one named, or the one
 * with the most free memory that fits it) and relays Ollama's progress
 * lines; DELETE /api/delete removes a model from one node or every node
 * that has it; POST /dashboard/api/pull and /dashboard/api/delete do the
 * same for the dashboard. All four need FLEET_ADMIN_KEY when it is set.
 *
 * Auto-pull: a request for a model no node has starts a pull (at most one
 * per model at a time) and waits for it, with every other request for
 * that model, bounded by FLEET_AUTO_PULL_TIMEOUT.
 */
#ifndef COORD_PULL_H
#define COORD_PULL_H

#include <stdbool.h>

#include "herd.h"

struct pulls;

/* Waits for a pull; embedded in the exchange. */
struct pull_waiter {
    struct pull_waiter *next;
    /* ok, or not with a sentence in err; the waiter has left the list */
    void (*done)(struct pull_waiter *w, bool ok, const char *node,
                 const char *err);
};

struct pulls *pulls_new(struct herd *h);
/* Cancels the pulls still running (waiters get done(false)). */
void pulls_free(struct pulls *p);

/*
 * Auto-pull: starts pulling model onto the best node, or joins the pull
 * already running. 0 (w->done comes later), -ENOSPC (no node has the
 * memory: err says so), -ENOMEM.
 */
int pulls_auto(struct pulls *p, const char *model, struct pull_waiter *w,
               char *err, size_t errlen);
/* Stops waiting (the client left); the pull goes on. */
void pulls_forget(struct pulls *p, struct pull_waiter *w);

/* True when the request carries the admin key (or none is configured);
 * otherwise answers 401/403 and returns false. */
bool pulls_admin_ok(struct herd *h, struct http_req *req, bool openai);

void api_pull(struct herd *h, struct http_req *req);
void api_delete(struct herd *h, struct http_req *req);
void api_dashboard_pull(struct herd *h, struct http_req *req);
void api_dashboard_delete(struct herd *h, struct http_req *req);

#endif /* COORD_PULL_H */
