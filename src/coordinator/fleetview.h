/*
 * fleetview.h - the fleet-wide model listings, built from the registry:
 * Ollama's /api/tags and /api/ps, OpenAI's /v1/models and
 * /v1/models/{id}. Pure functions of the registry (no I/O).
 */
#ifndef COORD_FLEETVIEW_H
#define COORD_FLEETVIEW_H

#include <stdint.h>

#include "herd/buf.h"
#include "registry.h"

/* {"models":[{"name","model","size","details":{"fleet_nodes":[..],..}}]}:
 * every model on a routable node, first-seen order (each node's loaded
 * models, then its available ones), once, with the nodes that have it. */
int fleetview_tags(const struct registry *reg, struct buf *b) HERD_MUST_USE;

/* {"models":[{"name","model","size","size_vram","context_length",
 * "details":{..},"fleet_node"}]}: one entry per loaded model per node. */
int fleetview_ps(const struct registry *reg, struct buf *b) HERD_MUST_USE;

/* {"object":"list","data":[{"id","object":"model","created","owned_by"}]},
 * sorted by id. created: Unix seconds. */
int fleetview_models(const struct registry *reg, int64_t created,
                     struct buf *b) HERD_MUST_USE;

/* One model object; -ENOENT when no routable node has it. */
int fleetview_model(const struct registry *reg, const char *id, int64_t created,
                    struct buf *b) HERD_MUST_USE;

#endif /* COORD_FLEETVIEW_H */
