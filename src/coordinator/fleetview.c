/*
 * fleetview.c - fleet-wide model listings (see fleetview.h).
 */
#include "fleetview.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"

#define GIB 1073741824.0

struct fv_model {
    const char *name;                     /* borrowed from the registry */
    const struct registry_loaded *loaded; /* first loaded copy, or NULL */
    const struct registry_node **nodes;   /* owned array */
    size_t n_nodes, cap_nodes;
};

struct fv {
    struct fv_model *m;
    size_t n, cap;
};

static void
fv_free(struct fv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->m[i].nodes);
    free(v->m);
}

static struct fv_model *
fv_find(struct fv *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->m[i].name, name) == 0)
            return &v->m[i];
    }
    return NULL;
}

static int
fv_add(struct fv *v, const char *name, const struct registry_node *n,
       const struct registry_loaded *ld)
{
    struct fv_model *m = fv_find(v, name);

    if (m == NULL) {
        if (v->n == v->cap) {
            size_t cap = v->cap ? v->cap * 2 : 32;
            struct fv_model *nm = realloc(v->m, cap * sizeof(*nm));

            if (nm == NULL)
                return -ENOMEM;
            v->m = nm;
            v->cap = cap;
        }
        m = &v->m[v->n++];
        memset(m, 0, sizeof(*m));
        m->name = name;
    }
    if (m->loaded == NULL)
        m->loaded = ld;
    for (size_t i = 0; i < m->n_nodes; i++) {
        if (m->nodes[i] == n)
            return 0;
    }
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 4;
        const struct registry_node **nn = realloc(m->nodes, cap * sizeof(*nn));

        if (nn == NULL)
            return -ENOMEM;
        m->nodes = nn;
        m->cap_nodes = cap;
    }
    m->nodes[m->n_nodes++] = n;
    return 0;
}

static int
fv_collect(const struct registry *reg, struct fv *v)
{
    int rc = 0;

    memset(v, 0, sizeof(*v));
    for (size_t i = 0; rc == 0 && i < registry_count(reg); i++) {
        const struct registry_node *n = registry_node_at(reg, i);

        if (!registry_node_routable(n))
            continue;
        for (size_t k = 0; rc == 0 && k < n->hb.n_loaded; k++)
            rc = fv_add(v, n->hb.loaded[k].name, n, &n->hb.loaded[k]);
        for (size_t k = 0; rc == 0 && k < n->hb.n_available; k++)
            rc = fv_add(v, n->hb.available[k], n, NULL);
    }
    return rc;
}

static int
fv_details(struct buf *b, const struct registry_loaded *ld)
{
    int rc = 0;

    if (ld == NULL)
        return 0;
    if (ld->parameter_size[0]) {
        rc = buf_appends(b, ",\"parameter_size\":");
        if (rc == 0)
            rc = json_append_str(b, ld->parameter_size,
                                 strlen(ld->parameter_size));
    }
    if (rc == 0 && ld->quantization[0]) {
        rc = buf_appends(b, ",\"quantization_level\":");
        if (rc == 0)
            rc = json_append_str(b, ld->quantization, strlen(ld->quantization));
    }
    return rc;
}

int
fleetview_tags(const struct registry *reg, struct buf *b)
{
    struct fv v;
    int rc = fv_collect(reg, &v);

    if (rc == 0)
        rc = buf_appends(b, "{\"models\":[");
    for (size_t i = 0; rc == 0 && i < v.n; i++) {
        const struct fv_model *m = &v.m[i];
        double size = m->loaded ? round(m->loaded->size_gb * GIB) : 0;

        rc = buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = json_append_str(b, m->name, strlen(m->name));
        if (rc == 0)
            rc = buf_appends(b, ",\"model\":");
        if (rc == 0)
            rc = json_append_str(b, m->name, strlen(m->name));
        if (rc == 0)
            rc = buf_appendf(b, ",\"size\":%.0f,\"details\":{\"fleet_nodes\":[",
                             size);
        for (size_t k = 0; rc == 0 && k < m->n_nodes; k++) {
            if (k > 0)
                rc = buf_appends(b, ",");
            if (rc == 0)
                rc = json_append_str(b, m->nodes[k]->id,
                                     strlen(m->nodes[k]->id));
        }
        if (rc == 0)
            rc = buf_appends(b, "]");
        if (rc == 0)
            rc = fv_details(b, m->loaded);
        if (rc == 0)
            rc = buf_appends(b, "}}");
    }
    if (rc == 0)
        rc = buf_appends(b, "]}");
    fv_free(&v);
    return rc;
}

int
fleetview_ps(const struct registry *reg, struct buf *b)
{
    bool first = true;
    int rc = buf_appends(b, "{\"models\":[");

    for (size_t i = 0; rc == 0 && i < registry_count(reg); i++) {
        const struct registry_node *n = registry_node_at(reg, i);

        if (!registry_node_routable(n))
            continue;
        for (size_t k = 0; rc == 0 && k < n->hb.n_loaded; k++) {
            const struct registry_loaded *ld = &n->hb.loaded[k];

            rc = buf_appends(b, first ? "{\"name\":" : ",{\"name\":");
            first = false;
            if (rc == 0)
                rc = json_append_str(b, ld->name, strlen(ld->name));
            if (rc == 0)
                rc = buf_appends(b, ",\"model\":");
            if (rc == 0)
                rc = json_append_str(b, ld->name, strlen(ld->name));
            if (rc == 0)
                rc = buf_appendf(b,
                                 ",\"size\":%.0f,\"context_length\":%lld,"
                                 "\"details\":{",
                                 round(ld->size_gb * GIB),
                                 (long long)ld->context_length);
            if (rc == 0) {
                size_t at = b->len;

                rc = fv_details(b, ld);
                if (rc == 0 && b->len > at)
                    memmove(b->data + at, b->data + at + 1, b->len - at);
                if (rc == 0 && b->len > at)
                    b->len--;
            }
            if (rc == 0)
                rc = buf_appends(b, "},\"fleet_node\":");
            if (rc == 0)
                rc = json_append_str(b, n->id, strlen(n->id));
            if (rc == 0)
                rc = buf_appends(b, "}");
        }
    }
    return rc == 0 ? buf_appends(b, "]}") : rc;
}

static int
fv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fv_model *)a)->name,
                  ((const struct fv_model *)b)->name);
}

static int
fv_model_obj(struct buf *b, const char *id, int64_t created)
{
    int rc = buf_appends(b, "{\"id\":");

    if (rc == 0)
        rc = json_append_str(b, id, strlen(id));
    if (rc == 0)
        rc = buf_appendf(b,
                         ",\"object\":\"model\",\"created\":%lld,"
                         "\"owned_by\":\"ollama\"}",
                         (long long)created);
    return rc;
}

int
fleetview_models(const struct registry *reg, int64_t created, struct buf *b)
{
    struct fv v;
    int rc = fv_collect(reg, &v);

    if (rc == 0 && v.n > 1)
        qsort(v.m, v.n, sizeof(*v.m), fv_cmp);
    if (rc == 0)
        rc = buf_appends(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; rc == 0 && i < v.n; i++) {
        if (i > 0)
            rc = buf_appends(b, ",");
        if (rc == 0)
            rc = fv_model_obj(b, v.m[i].name, created);
    }
    if (rc == 0)
        rc = buf_appends(b, "]}");
    fv_free(&v);
    return rc;
}

int
fleetview_model(const struct registry *reg, const char *id, int64_t created,
                struct buf *b)
{
    for (size_t i = 0; i < registry_count(reg); i++) {
        const struct registry_node *n = registry_node_at(reg, i);

        if (registry_node_routable(n) &&
            (registry_node_loaded(n, id) || registry_node_available(n, id)))
            return fv_model_obj(b, id, created);
    }
    return -ENOENT;
}
