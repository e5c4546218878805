/*
 * scoreidx.c - the router's index of scoring inputs, by model (see
 * scoreidx.h).
 *
 * Layout: nodes[] holds each node's own inputs (struct scorer_cnode, 48
 * bytes) in registry order (the position is the scorer's tie-break
 * index); nx[] the colder part (the registry node, the node's references
 * to its records). models[] is indexed by a model id, interned through an
 * open-addressing table; each model has ents[], one struct scorer_centry
 * (56 bytes) per node that has it loaded or on disk, in no particular
 * order: the arrays scorer_rank() scores. A node's refs[] (sorted by
 * model id) point at its records, so that a heartbeat updates them in
 * place and an in-flight change finds its record by binary search.
 *
 * Allocation failures are fatal, as in the registry this mirrors.
 */
#include "scoreidx.h"

#include <stdlib.h>
#include <string.h>

#include "herd/log.h"

#define SIDX_NONE UINT32_MAX

struct sidx_model {
    char *name; /* owned; NULL: a free id */
    uint64_t hash;
    struct scorer_centry *ents; /* .node: the position */
    struct scorer_memo *memos;  /* parallel to ents */
    uint32_t n, cap;
    double estimate_gb; /* scorer_estimate_size_gb(name) */
    double fleet_gb;    /* first loaded size by position, else estimate */
    bool fleet_dirty;
    uint32_t memo;         /* scorer_rank()'s memo stamp for the model */
    uint64_t memo_weights; /* the settings' generation it was made for */
    double memo_fleet_gb;  /* and the fleet size */
};

/* A node's reference to one of its records. */
struct sidx_ref {
    uint32_t model, ent;
};

/* A node's colder part. */
struct sidx_nodex {
    const struct registry_node *rn;
    uint8_t reg_status;    /* enum registry_status */
    struct sidx_ref *refs; /* sorted by model */
    uint32_t n_refs, cap_refs;
};

/* A model of a heartbeat, while a node is synced. */
struct sidx_new {
    uint32_t model;
    int32_t loaded; /* index into hb.loaded, or -1 */
    bool available;
};

struct sidx {
    struct scorer_cnode *nodes; /* .marks: SIDX_* */
    struct sidx_nodex *nx;
    size_t n, cap;
    struct sidx_model *models;
    uint32_t n_models, cap_models;
    uint32_t *free_ids;
    uint32_t n_free;
    size_t free_cap;
    uint32_t *tab; /* model id + 1; 0 = empty */
    size_t tab_cap, n_live;
    double median_bw;
    bool median_dirty;
    struct scorer_weights weights; /* the settings last ranked with */
    uint64_t weights_gen;          /* bumped when they change */
    uint32_t memo_last;            /* the last memo stamp handed out */
    double *bw;                    /* scratch for the median */
    size_t bw_cap;
    struct sidx_new *tmp;
    size_t tmp_cap;
    struct sidx_ref *refs; /* scratch: a node's new refs */
    size_t refs_cap;
    uint32_t *marked; /* positions with marks */
    size_t n_marked, marked_cap;
};

/* ---- helpers ---------------------------------------------------------- */

static void *
sidx_grow(void *p, size_t *cap, size_t want, size_t size)
{
    size_t n = *cap;

    if (want <= n)
        return p;
    n = n < 16 ? 16 : n;
    while (n < want)
        n *= 2;
    if (n > SIZE_MAX / size || (p = realloc(p, n * size)) == NULL)
        fatal("scoreidx: out of memory");
    *cap = n;
    return p;
}

static uint64_t
sidx_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The registry's capacity mode names as the scorer's modes. */
static enum scorer_cap_mode
sidx_cap_mode(const char *m)
{
    static const struct {
        const char *name;
        enum scorer_cap_mode mode;
    } map[] = {
        {"full", SCORER_CAP_FULL},
        {"learned_high", SCORER_CAP_LEARNED_HIGH},
        {"learned_medium", SCORER_CAP_LEARNED_MEDIUM},
        {"learned_low", SCORER_CAP_LEARNED_LOW},
        {"paused", SCORER_CAP_PAUSED},
        {"bootstrap", SCORER_CAP_BOOTSTRAP},
        /* herd-node's bootstrap: routable at a conservative ceiling */
        {"learning", SCORER_CAP_LEARNED_LOW},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++) {
        if (strcmp(m, map[i].name) == 0)
            return map[i].mode;
    }
    return SCORER_CAP_LEARNED_MEDIUM;
}

static enum scorer_status
sidx_status(enum registry_status s)
{
    return s == REGISTRY_ONLINE     ? SCORER_ONLINE
           : s == REGISTRY_DEGRADED ? SCORER_DEGRADED
                                    : SCORER_OFFLINE;
}

/* ---- model names ------------------------------------------------------ */

static uint32_t
sidx_lookup(const struct sidx *x, const char *name, uint64_t h)
{
    size_t mask, s;

    if (x->tab_cap == 0)
        return SIDX_NONE;
    mask = x->tab_cap - 1;
    for (s = h & mask; x->tab[s] != 0; s = (s + 1) & mask) {
        const struct sidx_model *m = &x->models[x->tab[s] - 1];

        if (m->hash == h && strcmp(m->name, name) == 0)
            return x->tab[s] - 1;
    }
    return SIDX_NONE;
}

static void
sidx_tab_put(struct sidx *x, uint32_t id)
{
    size_t mask = x->tab_cap - 1, s = x->models[id].hash & mask;

    while (x->tab[s] != 0)
        s = (s + 1) & mask;
    x->tab[s] = id + 1;
}

static void
sidx_tab_rehash(struct sidx *x, size_t cap)
{
    free(x->tab);
    x->tab = calloc(cap, sizeof(*x->tab));
    if (x->tab == NULL)
        fatal("scoreidx: out of memory");
    x->tab_cap = cap;
    for (uint32_t i = 0; i < x->n_models; i++) {
        if (x->models[i].name != NULL)
            sidx_tab_put(x, i);
    }
}

static uint32_t
sidx_intern(struct sidx *x, const char *name)
{
    uint64_t h = sidx_hash(name);
    uint32_t id = sidx_lookup(x, name, h);
    struct sidx_model *m;
    size_t cap;

    if (id != SIDX_NONE)
        return id;
    if (x->n_free > 0) {
        id = x->free_ids[--x->n_free];
    } else {
        cap = x->cap_models;
        x->models = sidx_grow(x->models, &cap, (size_t)x->n_models + 1,
                              sizeof(*x->models));
        x->cap_models = (uint32_t)cap;
        id = x->n_models++;
    }
    m = &x->models[id];
    memset(m, 0, sizeof(*m));
    m->name = strdup(name);
    if (m->name == NULL)
        fatal("scoreidx: out of memory");
    m->hash = h;
    m->estimate_gb = scorer_estimate_size_gb(name);
    m->fleet_dirty = true;
    x->n_live++;
    if (x->n_live * 2 > x->tab_cap)
        sidx_tab_rehash(x, x->tab_cap == 0 ? 64 : x->tab_cap * 2);
    else
        sidx_tab_put(x, id);
    return id;
}

/* A model no node has any more: its id is free again. */
static void
sidx_model_drop(struct sidx *x, uint32_t id)
{
    struct sidx_model *m = &x->models[id];
    size_t mask = x->tab_cap - 1, i = m->hash & mask, j;

    while (x->tab[i] != id + 1)
        i = (i + 1) & mask;
    /* Backward-shift deletion: no tombstones in a linear-probing table. */
    for (j = (i + 1) & mask; x->tab[j] != 0; j = (j + 1) & mask) {
        size_t home = x->models[x->tab[j] - 1].hash & mask;

        if ((j > i && (home <= i || home > j)) ||
            (j < i && home <= i && home > j)) {
            x->tab[i] = x->tab[j];
            i = j;
        }
    }
    x->tab[i] = 0;
    free(m->name);
    free(m->ents);
    free(m->memos);
    memset(m, 0, sizeof(*m));
    x->free_ids = sidx_grow(x->free_ids, &x->free_cap, (size_t)x->n_free + 1,
                            sizeof(*x->free_ids));
    x->free_ids[x->n_free++] = id;
    x->n_live--;
}

/* ---- records ----------------------------------------------------------- */

static struct sidx_ref *
sidx_ref_find(const struct sidx_nodex *nx, uint32_t model)
{
    size_t lo = 0, hi = nx->n_refs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (nx->refs[mid].model < model)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nx->n_refs && nx->refs[lo].model == model ? &nx->refs[lo]
                                                          : NULL;
}

/* Drops record e of model id (swap with the last one). */
static void
sidx_ent_remove(struct sidx *x, uint32_t id, uint32_t e)
{
    struct sidx_model *m = &x->models[id];

    if (m->ents[e].loaded)
        m->fleet_dirty = true;
    if (e != m->n - 1) {
        struct scorer_centry *last = &m->ents[m->n - 1];
        struct sidx_ref *ref = sidx_ref_find(&x->nx[last->node], id);

        m->ents[e] = *last;
        m->memos[e] = m->memos[m->n - 1];
        if (ref != NULL)
            ref->ent = e;
    }
    if (--m->n == 0)
        sidx_model_drop(x, id);
}

static uint32_t
sidx_ent_add(struct sidx *x, uint32_t id, uint32_t pos, int64_t in_flight)
{
    struct sidx_model *m = &x->models[id];
    size_t cap = m->cap;

    m->ents = sidx_grow(m->ents, &cap, (size_t)m->n + 1, sizeof(*m->ents));
    cap = m->cap;
    m->memos = sidx_grow(m->memos, &cap, (size_t)m->n + 1, sizeof(*m->memos));
    m->cap = (uint32_t)cap;
    memset(&m->ents[m->n], 0, sizeof(m->ents[m->n]));
    memset(&m->memos[m->n], 0, sizeof(m->memos[m->n]));
    m->ents[m->n].node = pos;
    m->ents[m->n].in_flight = in_flight > 0 ? (uint32_t)in_flight : 0;
    return m->n++;
}

/* The facts of model (t) on a node from its heartbeat. */
static void
sidx_ent_set(struct sidx *x, const struct sidx_new *t, uint32_t e,
             const struct registry_hb *hb)
{
    struct sidx_model *m = &x->models[t->model];
    struct scorer_centry *en = &m->ents[e];
    bool loaded = t->loaded >= 0;
    double size = loaded ? hb->loaded[t->loaded].size_gb : 0;
    int64_t ctx = loaded ? hb->loaded[t->loaded].context_length : 0;

    if (en->loaded != loaded || en->size_gb != size)
        m->fleet_dirty = true;
    en->loaded = loaded;
    en->size_gb = size;
    en->context_length = ctx > 0 ? (uint32_t)ctx : 0;
    en->on_disk = t->available;
    en->unloaded = false;
    en->unloaded_ns = 0;
    m->memos[e].stamp = 0; /* changed: scored afresh at the next request */
}

/* ---- nodes -------------------------------------------------------------- */

static bool
sidx_counts_bw(const struct scorer_cnode *nd)
{
    return nd->status != SCORER_OFFLINE && nd->bandwidth_gbs > 0;
}

static void
sidx_node_fields(struct sidx *x, size_t pos, const struct registry_node *n)
{
    const struct registry_hb *hb = &n->hb;
    struct scorer_cnode *nd = &x->nodes[pos];
    bool counted = sidx_counts_bw(nd);
    double bw = nd->bandwidth_gbs;
    uint8_t marks = nd->marks;

    memset(nd, 0, sizeof(*nd));
    nd->marks = marks;
    nd->status = (uint8_t)sidx_status(n->status);
    x->nx[pos].reg_status = (uint8_t)n->status;
    nd->pressure =
        hb->pressure == REGISTRY_PRESSURE_CRITICAL ? SCORER_PRESSURE_CRITICAL
        : hb->pressure == REGISTRY_PRESSURE_WARN   ? SCORER_PRESSURE_WARN
                                                   : SCORER_PRESSURE_NORMAL;
    nd->has_ollama = hb->ollama_healthy;
    nd->mem_total_gb = hb->mem_total_gb;
    nd->mem_available_gb = hb->mem_available_gb;
    nd->bandwidth_gbs = hb->memory_bandwidth_gbps;
    if (hb->has_capacity) {
        nd->cap_present = true;
        nd->cap_mode = (uint8_t)sidx_cap_mode(hb->capacity.mode);
        nd->cap_availability = hb->capacity.availability_score;
        nd->cap_ceiling_gb = hb->capacity.ceiling_gb;
    }
    nd->num_parallel = hb->num_parallel > 0 ? (uint32_t)hb->num_parallel : 1;
    if (counted != sidx_counts_bw(nd) || (counted && bw != nd->bandwidth_gbs))
        x->median_dirty = true;
}

static int
sidx_new_cmp(const void *pa, const void *pb)
{
    const struct sidx_new *a = pa, *b = pb;

    return a->model < b->model ? -1 : a->model > b->model ? 1 : 0;
}

/* The node's models from its heartbeat, sorted by id, one per model (the
 * first loaded entry of a name wins, as in the scorer). Returns how many. */
static size_t
sidx_collect(struct sidx *x, const struct registry_hb *hb)
{
    size_t m = 0, k = 0;

    x->tmp = sidx_grow(x->tmp, &x->tmp_cap, hb->n_loaded + hb->n_available,
                       sizeof(*x->tmp));
    for (size_t i = 0; i < hb->n_loaded; i++)
        x->tmp[m++] = (struct sidx_new){sidx_intern(x, hb->loaded[i].name),
                                        (int32_t)i, false};
    for (size_t i = 0; i < hb->n_available; i++)
        x->tmp[m++] =
            (struct sidx_new){sidx_intern(x, hb->available[i]), -1, true};
    if (m > 32) {
        qsort(x->tmp, m, sizeof(*x->tmp), sidx_new_cmp);
    } else { /* a heartbeat's few models: insertion sort */
        for (size_t i = 1; i < m; i++) {
            struct sidx_new t = x->tmp[i];
            size_t j = i;

            for (; j > 0 && sidx_new_cmp(&t, &x->tmp[j - 1]) < 0; j--)
                x->tmp[j] = x->tmp[j - 1];
            x->tmp[j] = t;
        }
    }
    for (size_t i = 0; i < m; i++) {
        struct sidx_new *t = &x->tmp[i];

        if (k > 0 && x->tmp[k - 1].model == t->model) {
            struct sidx_new *o = &x->tmp[k - 1];

            if (t->loaded >= 0 && (o->loaded < 0 || t->loaded < o->loaded))
                o->loaded = t->loaded;
            o->available |= t->available;
            continue;
        }
        x->tmp[k++] = *t;
    }
    return k;
}

/* When each of the node's models left its memory (the warm tier). */
static void
sidx_node_unloads(struct sidx *x, size_t pos, const struct registry_node *n)
{
    const struct sidx_nodex *nx = &x->nx[pos];

    for (size_t i = 0; i < n->n_unloaded; i++) {
        const char *name = n->unloaded[i].name;
        uint32_t id = sidx_lookup(x, name, sidx_hash(name));
        const struct sidx_ref *ref =
            id == SIDX_NONE ? NULL : sidx_ref_find(nx, id);
        struct scorer_centry *e;

        if (ref == NULL)
            continue;
        e = &x->models[id].ents[ref->ent];
        if (!e->unloaded) { /* the first entry of a name, as the scorer */
            e->unloaded = true;
            e->unloaded_ns = n->unloaded[i].at_ns;
        }
    }
}

/* Merges the node's records with its heartbeat's models. */
static void
sidx_node_models(struct sidx *x, size_t pos, const struct registry_node *n)
{
    struct sidx_nodex *nx = &x->nx[pos];
    size_t m = sidx_collect(x, &n->hb), i = 0, j = 0, k = 0, cap;

    x->refs = sidx_grow(x->refs, &x->refs_cap, m, sizeof(*x->refs));
    while (i < nx->n_refs || j < m) {
        const struct sidx_ref *o = i < nx->n_refs ? &nx->refs[i] : NULL;
        const struct sidx_new *t = j < m ? &x->tmp[j] : NULL;
        uint32_t e;

        if (t == NULL || (o != NULL && o->model < t->model)) {
            sidx_ent_remove(x, o->model, o->ent);
            i++;
            continue;
        }
        if (o == NULL || t->model < o->model) {
            e = sidx_ent_add(
                x, t->model, (uint32_t)pos,
                registry_inflight_get(n, x->models[t->model].name));
        } else {
            e = o->ent;
            i++;
        }
        sidx_ent_set(x, t, e, &n->hb);
        x->refs[k++] = (struct sidx_ref){t->model, e};
        j++;
    }
    cap = nx->cap_refs;
    nx->refs = sidx_grow(nx->refs, &cap, k, sizeof(*nx->refs));
    nx->cap_refs = (uint32_t)cap;
    if (k > 0)
        memcpy(nx->refs, x->refs, k * sizeof(*nx->refs));
    nx->n_refs = (uint32_t)k;
    sidx_node_unloads(x, pos, n);
}

/* ---- the mirror ---------------------------------------------------------- */

struct sidx *
sidx_new(void)
{
    struct sidx *x = calloc(1, sizeof(*x));

    if (x == NULL)
        fatal("scoreidx: out of memory");
    x->median_dirty = true;
    return x;
}

static void
sidx_clear(struct sidx *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->nx[i].refs);
    for (uint32_t i = 0; i < x->n_models; i++) {
        free(x->models[i].name);
        free(x->models[i].ents);
        free(x->models[i].memos);
    }
    x->n = 0;
    x->n_models = 0;
    x->n_free = 0;
    x->n_live = 0;
    x->n_marked = 0;
    if (x->tab != NULL)
        memset(x->tab, 0, x->tab_cap * sizeof(*x->tab));
    x->median_dirty = true;
}

void
sidx_free(struct sidx *x)
{
    if (x == NULL)
        return;
    sidx_clear(x);
    free(x->nodes);
    free(x->nx);
    free(x->models);
    free(x->free_ids);
    free(x->tab);
    free(x->bw);
    free(x->tmp);
    free(x->refs);
    free(x->marked);
    free(x);
}

/* Node n at position pos: appended when pos is the count, else updated. */
static void
sidx_sync_at(struct sidx *x, size_t pos, const struct registry_node *n)
{
    size_t cap;

    if (pos == x->n) {
        cap = x->cap;
        x->nodes = sidx_grow(x->nodes, &cap, x->n + 1, sizeof(*x->nodes));
        x->nx = sidx_grow(x->nx, &x->cap, x->n + 1, sizeof(*x->nx));
        memset(&x->nodes[pos], 0, sizeof(x->nodes[pos]));
        memset(&x->nx[pos], 0, sizeof(x->nx[pos]));
        x->nx[pos].rn = n;
        x->n++;
    }
    sidx_node_fields(x, pos, n);
    sidx_node_models(x, pos, n);
}

void
sidx_sync_all(struct sidx *x, const struct registry *reg)
{
    sidx_clear(x);
    for (size_t i = 0; i < registry_count(reg); i++)
        sidx_sync_at(x, i, registry_node_at(reg, i));
}

void
sidx_sync_node(struct sidx *x, const struct registry *reg,
               const struct registry_node *n)
{
    size_t pos = n->pos;

    if (pos > x->n || (pos < x->n && x->nx[pos].rn != n) ||
        registry_node_at(reg, pos) != n) {
        /* Out of step with the registry (a change it did not report):
         * start again from it. */
        sidx_sync_all(x, reg);
        return;
    }
    sidx_sync_at(x, pos, n);
}

void
sidx_remove_node(struct sidx *x, size_t pos)
{
    struct sidx_nodex *nx;

    if (pos >= x->n)
        return;
    nx = &x->nx[pos];
    for (uint32_t i = 0; i < nx->n_refs; i++)
        sidx_ent_remove(x, nx->refs[i].model, nx->refs[i].ent);
    free(nx->refs);
    memmove(&x->nodes[pos], &x->nodes[pos + 1],
            (x->n - pos - 1) * sizeof(*x->nodes));
    memmove(&x->nx[pos], &x->nx[pos + 1], (x->n - pos - 1) * sizeof(*x->nx));
    x->n--;
    for (uint32_t id = 0; id < x->n_models; id++) {
        struct sidx_model *m = &x->models[id];

        for (uint32_t e = 0; e < m->n; e++) {
            m->ents[e].node -= m->ents[e].node > pos;
            m->memos[e].node -= m->memos[e].node > pos;
        }
    }
    x->median_dirty = true;
}

void
sidx_set_inflight(struct sidx *x, const struct registry_node *n,
                  const char *model, int64_t count)
{
    uint32_t id = sidx_lookup(x, model, sidx_hash(model));
    const struct sidx_ref *ref;

    if (id == SIDX_NONE || n->pos >= x->n || x->nx[n->pos].rn != n)
        return;
    ref = sidx_ref_find(&x->nx[n->pos], id);
    if (ref != NULL) {
        struct scorer_centry *e = &x->models[id].ents[ref->ent];

        e->in_flight = count > 0 ? (uint32_t)count : 0;
        x->models[id].memos[ref->ent].stamp = 0;
    }
}

const struct registry_node *
sidx_node(const struct sidx *x, size_t pos)
{
    return pos < x->n ? x->nx[pos].rn : NULL;
}

size_t
sidx_count(const struct sidx *x)
{
    return x->n;
}

bool
sidx_model_known(const struct sidx *x, const char *model)
{
    uint32_t id = sidx_lookup(x, model, sidx_hash(model));

    if (id == SIDX_NONE)
        return false;
    for (uint32_t e = 0; e < x->models[id].n; e++) {
        if (x->nx[x->models[id].ents[e].node].reg_status != REGISTRY_REJECTED)
            return true;
    }
    return false;
}

void
sidx_mark(struct sidx *x, size_t pos, unsigned flags)
{
    if (pos >= x->n)
        return;
    if (x->nodes[pos].marks == 0) {
        x->marked = sidx_grow(x->marked, &x->marked_cap, x->n_marked + 1,
                              sizeof(*x->marked));
        x->marked[x->n_marked++] = (uint32_t)pos;
    }
    x->nodes[pos].marks |= (uint8_t)flags;
}

void
sidx_unmark_all(struct sidx *x)
{
    for (size_t i = 0; i < x->n_marked; i++) {
        if (x->marked[i] < x->n)
            x->nodes[x->marked[i]].marks = 0;
    }
    x->n_marked = 0;
}

/* ---- deciding ------------------------------------------------------------ */

static double
sidx_median_bw(struct sidx *x)
{
    size_t m = 0;

    if (!x->median_dirty)
        return x->median_bw;
    x->bw = sidx_grow(x->bw, &x->bw_cap, x->n, sizeof(*x->bw));
    for (size_t i = 0; i < x->n; i++) {
        if (sidx_counts_bw(&x->nodes[i]))
            x->bw[m++] = x->nodes[i].bandwidth_gbs;
    }
    x->median_bw = scorer_median(x->bw, m);
    x->median_dirty = false;
    return x->median_bw;
}

/* The first loaded size > 0 in position order, else the estimate. */
static double
sidx_fleet_size(struct sidx_model *m)
{
    uint32_t best = UINT32_MAX;

    if (!m->fleet_dirty)
        return m->fleet_gb;
    m->fleet_gb = m->estimate_gb;
    for (uint32_t e = 0; e < m->n; e++) {
        const struct scorer_centry *en = &m->ents[e];

        if (en->loaded && en->size_gb > 0 && en->node < best) {
            best = en->node;
            m->fleet_gb = en->size_gb;
        }
    }
    m->fleet_dirty = false;
    return m->fleet_gb;
}

/* The p75 callback of a ranking, from the scorer's entry. */
struct sidx_p75_ctx {
    const struct sidx *x;
    const struct sidx_ranked *rk;
};

static double
sidx_p75(void *arg, const struct scorer_centry *e)
{
    const struct sidx_p75_ctx *c = arg;

    return c->rk->p75(c->rk->p75_arg, c->x->nx[e->node].rn, c->rk->req.model);
}

void
sidx_ranked_cleanup(struct sidx_ranked *rk)
{
    free(rk->keys);
    rk->keys = NULL;
    rk->cap = 0;
}

/* A memo stamp never handed out before (or, after 2^32 of them, since
 * every memo was forgotten). */
static uint32_t
sidx_memo_new(struct sidx *x)
{
    if (++x->memo_last == 0) {
        for (uint32_t id = 0; id < x->n_models; id++) {
            x->models[id].memo = 0;
            for (uint32_t e = 0; e < x->models[id].n; e++)
                x->models[id].memos[e].stamp = 0;
        }
        x->memo_last = 1;
    }
    return x->memo_last;
}

/* The memo stamp for ranking m with w: a new one when the settings or
 * the model's fleet size changed since the last. */
static uint32_t
sidx_memo(struct sidx *x, struct sidx_model *m, const struct scorer_weights *w,
          double fleet_gb)
{
    if (x->weights_gen == 0 || memcmp(&x->weights, w, sizeof(*w)) != 0) {
        memcpy(&x->weights, w, sizeof(*w));
        x->weights_gen++;
    }
    if (m->memo == 0 || m->memo_weights != x->weights_gen ||
        m->memo_fleet_gb != fleet_gb) {
        m->memo = sidx_memo_new(x);
        m->memo_weights = x->weights_gen;
        m->memo_fleet_gb = fleet_gb;
    }
    return m->memo;
}

int
sidx_rank(struct sidx *x, const struct scorer_request *req,
          const struct scorer_weights *w, sidx_p75_fn p75, void *p75_arg,
          struct sidx_ranked *rk)
{
    uint32_t id = sidx_lookup(x, req->model, sidx_hash(req->model));
    struct sidx_p75_ctx pc = {x, rk};
    struct sidx_model *m;
    size_t n, best, busy;

    rk->eligible = 0;
    rk->k = 0;
    rk->has_pick = false;
    rk->rank = 0;
    rk->hot = false;
    rk->model = id;
    rk->req = *req;
    rk->p75 = p75;
    rk->p75_arg = p75_arg;
    rk->median_bw = sidx_median_bw(x);
    if (id == SIDX_NONE) {
        rk->fleet_size_gb = scorer_estimate_size_gb(req->model);
        return 0;
    }
    m = &x->models[id];
    rk->fleet_size_gb = sidx_fleet_size(m);
    rk->keys = sidx_grow(rk->keys, &rk->cap, m->n, sizeof(*rk->keys));
    n = scorer_rank(x->nodes, m->ents, m->memos, m->n, req, w, rk->median_bw,
                    rk->fleet_size_gb, sidx_memo(x, m, w, rk->fleet_size_gb),
                    x->n_marked > 0, p75 != NULL ? sidx_p75 : NULL, &pc,
                    rk->keys, &best, &busy);
    rk->eligible = (int)n;
    if (best == SIZE_MAX)
        return rk->eligible;
    rk->has_pick = true;
    rk->pick = rk->keys[best];
    rk->hot = m->ents[rk->pick.ent].loaded;
    /* Only nodes without a free slot can rank before the best free one;
     * the best of all is free in the common case. */
    rk->rank = 1;
    for (size_t i = 0; i < n && busy > 0; i++) {
        if (!rk->keys[i].slot_free) {
            rk->rank += scorer_key_cmp(&rk->keys[i], &rk->pick) < 0;
            busy--;
        }
    }
    return rk->eligible;
}

size_t
sidx_top(struct sidx_ranked *rk)
{
    size_t n = (size_t)rk->eligible;

    rk->k = n < SCORER_SORTED ? n : SCORER_SORTED;
    scorer_keys_top(rk->keys, n, rk->k);
    return rk->k;
}

static void
sidx_finish(const struct sidx *x, const struct sidx_ranked *rk,
            const struct scorer_weights *w, const struct scorer_centry *e,
            struct scorer_result *out, uint32_t *num_parallel)
{
    const struct scorer_cnode *n = &x->nodes[e->node];
    double p75 = 0;

    if (e->in_flight > 0 && rk->p75 != NULL)
        p75 = rk->p75(rk->p75_arg, x->nx[e->node].rn, rk->req.model);
    scorer_score_entry(n, e, p75, &rk->req, w, rk->median_bw, rk->fleet_size_gb,
                       out);
    if (num_parallel != NULL)
        *num_parallel = (n->marks & SIDX_PROBATION) != 0 ? 1 : n->num_parallel;
}

void
sidx_result(const struct sidx *x, const struct sidx_ranked *rk,
            const struct scorer_weights *w, const struct scorer_key *key,
            struct scorer_result *out, uint32_t *num_parallel)
{
    sidx_finish(x, rk, w, &x->models[rk->model].ents[key->ent], out,
                num_parallel);
}

/* The entry of node pos for a model it has no record of: the registry's
 * unload stamp and in-flight count by name. */
static void
sidx_unlisted(const struct sidx *x, size_t pos, const char *model,
              struct scorer_centry *e)
{
    const struct registry_node *n = x->nx[pos].rn;
    int64_t inf = registry_inflight_get(n, model);

    memset(e, 0, sizeof(*e));
    e->node = (uint32_t)pos;
    e->in_flight = inf > 0 ? (uint32_t)inf : 0;
    for (size_t i = 0; i < n->n_unloaded; i++) {
        if (strcmp(n->unloaded[i].name, model) == 0) {
            e->unloaded = true;
            e->unloaded_ns = n->unloaded[i].at_ns;
            break;
        }
    }
}

bool
sidx_next_eliminated(struct sidx *x, const struct sidx_ranked *rk,
                     const struct scorer_weights *w, size_t *pos,
                     struct scorer_result *out, uint32_t *num_parallel)
{
    size_t p = *pos == SIZE_MAX ? 0 : *pos + 1;
    const struct sidx_ref *ref = NULL;
    struct scorer_centry e;

    if (*pos == SIZE_MAX) {
        for (size_t i = 0; i < rk->k; i++)
            sidx_mark(x, rk->keys[i].node, SIDX_SHOWN);
    }
    for (; p < x->n && (x->nodes[p].marks & SIDX_SHOWN) != 0; p++)
        ;
    if (p >= x->n)
        return false;
    *pos = p;
    if (rk->model != SIDX_NONE)
        ref = sidx_ref_find(&x->nx[p], rk->model);
    if (ref != NULL)
        e = x->models[rk->model].ents[ref->ent];
    else
        sidx_unlisted(x, p, rk->req.model, &e);
    sidx_finish(x, rk, w, &e, out, num_parallel);
    return true;
}
