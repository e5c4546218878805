/*
 * recommend.c - the model catalogue and the fleet model recommender (see
 * recommend.h).
 */
#include "recommend.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/json.h"
#include "herd/modelname.h"
#include "modelcat.h"

#define REC_NAME_MAX    256
#define REC_MAX_PLAN    32 /* recommendations per node */
#define REC_FAST_MIN_GB 2.0

static const char *const rec_categories[] = {
    "general", "reasoning",        "coding",    "creative", "fast-chat",
    "vision",  "vision-embedding", "embedding", "image",
};

/* ollama-herd's default order when there is no traffic. */
static const char *const rec_default_order[] = {
    "general", "coding", "reasoning", "vision", "creative", "fast-chat",
};

#define REC_NCAT (sizeof(rec_categories) / sizeof(*rec_categories))

static int
rec_cat_index(const char *cat)
{
    for (size_t i = 0; i < REC_NCAT; i++) {
        if (strcmp(rec_categories[i], cat) == 0)
            return (int)i;
    }
    return -1;
}

/* --- the catalogue ----------------------------------------------------------
 */

static void
rec_model_free(struct rec_model *m)
{
    free(m->ollama_name);
    free(m->display_name);
    free(m->family);
    free(m->category);
    free(m->size_class);
    free(m->notes);
    for (size_t i = 0; i < m->n_secondary; i++)
        free(m->secondary[i]);
}

void
recommend_catalog_free(struct rec_catalog *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        rec_model_free(&c->v[i]);
    free(c->v);
    free(c);
}

/* name with ":latest" when it has no tag (after the last '/'). */
static char *
rec_normalise(const char *name)
{
    const char *slash = strrchr(name, '/');
    size_t n = strlen(name);
    bool tagged = strchr(slash ? slash : name, ':') != NULL;
    char *s = malloc(n + 8);

    if (s != NULL)
        snprintf(s, n + 8, "%s%s", name, tagged ? "" : ":latest");
    return s;
}

static double
rec_bench(const cJSON *b, const char *key)
{
    const cJSON *v = json_get(b, key);

    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

static double
rec_quality(const struct rec_model *m)
{
    double sum = 0;
    int n = 0;

    if (!isnan(m->mmlu)) {
        sum += m->mmlu;
        n++;
    }
    if (!isnan(m->humaneval)) {
        sum += m->humaneval;
        n++;
    }
    if (!isnan(m->mt_bench)) {
        sum += m->mt_bench * 10; /* a 0-10 scale among 0-100 ones */
        n++;
    }
    return n > 0 ? round(sum / n * 10) / 10 : 0;
}

static char *
rec_strdup_field(const cJSON *e, const char *key, const char *def)
{
    const char *s = json_get_str(e, key);

    if (s == NULL)
        s = def;
    return s != NULL ? strdup(s) : NULL;
}

static int
rec_parse_secondary(const cJSON *e, struct rec_model *m, char *err,
                    size_t errlen, const char *where)
{
    const cJSON *sec = json_get(e, "secondary_categories"), *s;

    if (sec == NULL || cJSON_IsNull(sec))
        return 0;
    if (!cJSON_IsArray(sec)) {
        snprintf(err, errlen, "%s: secondary_categories must be a list", where);
        return -EINVAL;
    }
    cJSON_ArrayForEach(s, sec)
    {
        if (!cJSON_IsString(s) || rec_cat_index(s->valuestring) < 0) {
            snprintf(err, errlen,
                     "%s: secondary_categories holds an unknown category",
                     where);
            return -EINVAL;
        }
        if (m->n_secondary >= RECOMMEND_MAX_SECONDARY) {
            snprintf(err, errlen, "%s: more than %d secondary_categories",
                     where, RECOMMEND_MAX_SECONDARY);
            return -E2BIG;
        }
        m->secondary[m->n_secondary] = strdup(s->valuestring);
        if (m->secondary[m->n_secondary] == NULL)
            return -ENOMEM;
        m->n_secondary++;
    }
    return 0;
}

static int
rec_parse_numbers(const cJSON *e, struct rec_model *m, char *err, size_t errlen,
                  const char *where)
{
    const cJSON *b = json_get(e, "benchmarks");
    double ctx = json_get_num(e, "context_length", 0);

    m->params_b = json_get_num(e, "params_b", -1);
    m->active_params_b = json_get_num(e, "active_params_b", m->params_b);
    m->ram_gb = json_get_num(e, "ram_gb", -1);
    if (!isfinite(m->params_b) || m->params_b < 0 || m->params_b > 1e5) {
        snprintf(err, errlen, "%s: params_b must be a number >= 0", where);
        return -EINVAL;
    }
    if (!isfinite(m->ram_gb) || m->ram_gb <= 0 || m->ram_gb > 1e5) {
        snprintf(err, errlen, "%s: ram_gb must be a positive number", where);
        return -EINVAL;
    }
    if (!isfinite(ctx) || ctx < 0 || ctx > 1e9 || ctx != floor(ctx)) {
        snprintf(err, errlen, "%s: context_length must be an integer >= 0",
                 where);
        return -EINVAL;
    }
    m->context_length = (int64_t)ctx;
    if (b != NULL && !cJSON_IsObject(b) && !cJSON_IsNull(b)) {
        snprintf(err, errlen, "%s: benchmarks must be an object", where);
        return -EINVAL;
    }
    m->mmlu = rec_bench(b, "mmlu");
    m->humaneval = rec_bench(b, "humaneval");
    m->mt_bench = rec_bench(b, "mt_bench");
    m->quality = rec_quality(m);
    return 0;
}

static int
rec_parse_entry(const cJSON *e, size_t i, struct rec_model *m, char *err,
                size_t errlen)
{
    const char *name = json_get_str(e, "ollama_name");
    const char *cat = json_get_str(e, "category");
    char where[REC_NAME_MAX + 64], base[REC_NAME_MAX + 1];
    int rc;

    memset(m, 0, sizeof(*m));
    if (!cJSON_IsObject(e) || name == NULL || *name == '\0' ||
        strlen(name) > REC_NAME_MAX) {
        snprintf(err, errlen,
                 "entry %zu: an object with ollama_name (a string of 1 to %d "
                 "bytes) is required",
                 i, REC_NAME_MAX);
        return -EINVAL;
    }
    snprintf(where, sizeof(where), "entry %zu (%s)", i, name);
    if (cat == NULL || rec_cat_index(cat) < 0) {
        snprintf(err, errlen,
                 "%s: category must be one of general, "
                 "reasoning, coding, creative, fast-chat, vision, "
                 "vision-embedding, embedding, image",
                 where);
        return -EINVAL;
    }
    snprintf(base, sizeof(base), "%s", name);
    base[strcspn(base, ":")] = '\0';
    m->ollama_name = rec_normalise(name);
    m->display_name = rec_strdup_field(e, "display_name", name);
    m->family = rec_strdup_field(e, "family", base);
    m->category = strdup(cat);
    m->size_class = rec_strdup_field(e, "size_class", "");
    m->notes = rec_strdup_field(e, "notes", "");
    if (m->ollama_name == NULL || m->display_name == NULL ||
        m->family == NULL || m->category == NULL || m->size_class == NULL ||
        m->notes == NULL)
        return -ENOMEM;
    rc = rec_parse_secondary(e, m, err, errlen, where);
    if (rc == 0)
        rc = rec_parse_numbers(e, m, err, errlen, where);
    return rc;
}

struct rec_catalog *
recommend_catalog_parse(const char *json, size_t len, char *err, size_t errlen)
{
    struct rec_catalog *c = NULL;
    cJSON *root = NULL;
    const cJSON *e;
    char jerr[256];
    size_t i = 0;
    int rc;

    if (len > RECOMMEND_MAX_BYTES) {
        snprintf(err, errlen, "larger than %u bytes", RECOMMEND_MAX_BYTES);
        return NULL;
    }
    if (json_parse(json, len, 16, &root, jerr, sizeof(jerr)) != 0) {
        snprintf(err, errlen, "not JSON: %s", jerr);
        return NULL;
    }
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) == 0 ||
        cJSON_GetArraySize(root) > RECOMMEND_MAX_MODELS) {
        snprintf(err, errlen, "must be a list of 1 to %d models",
                 RECOMMEND_MAX_MODELS);
        cJSON_Delete(root);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->v = calloc((size_t)cJSON_GetArraySize(root), sizeof(*c->v));
    if (c == NULL || c->v == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(e, root)
    {
        rc = rec_parse_entry(e, i, &c->v[c->n], err, errlen);
        c->n++;
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        if (rc != 0)
            goto fail;
        for (size_t k = 0; k + 1 < c->n; k++) {
            if (strcmp(c->v[k].ollama_name, c->v[c->n - 1].ollama_name) == 0) {
                snprintf(err, errlen, "entry %zu: %s is listed twice", i,
                         c->v[k].ollama_name);
                goto fail;
            }
        }
        i++;
    }
    cJSON_Delete(root);
    return c;
fail:
    cJSON_Delete(root);
    recommend_catalog_free(c);
    return NULL;
}

const struct rec_model *
recommend_lookup(const struct rec_catalog *c, const char *name)
{
    char base[REC_NAME_MAX + 16], pref[REC_NAME_MAX + 18];
    size_t n;

    if (c == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].ollama_name, name) == 0)
            return &c->v[i];
    }
    n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ":latest") == 0) {
        for (size_t i = 0; i < c->n; i++) {
            const char *m = c->v[i].ollama_name;

            if (strncmp(m, name, n - 7) == 0 && m[n - 7] == '\0')
                return &c->v[i];
        }
    }
    snprintf(base, sizeof(base), "%s", name);
    base[strcspn(base, ":")] = '\0';
    n = strlen(base);
    memcpy(pref, base, n);
    pref[n] = ':';
    pref[n + 1] = '\0';
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].family, base) == 0 ||
            strncmp(c->v[i].ollama_name, pref, strlen(pref)) == 0)
            return &c->v[i];
    }
    return NULL;
}

const char *
recommend_classify(const struct rec_catalog *c, const char *name)
{
    const struct rec_model *m = recommend_lookup(c, name);

    return m != NULL ? m->category : modelcat_classify(name);
}

/* --- the plan
 * ----------------------------------------------------------------- */

struct rec_pick {
    const char *model, *display, *category;
    double ram_gb, quality;
    char reason[256];
    const char *priority;
    bool available;
};

struct rec_plan {
    const struct rec_node *node;
    double usable, remaining, downloads;
    struct rec_pick picks[REC_MAX_PLAN];
    size_t n;
};

struct rec_ctx {
    const struct rec_catalog *cat;
    const struct rec_usage *usage; /* sorted by requests, descending */
    size_t n_usage;
    int64_t cat_requests[REC_NCAT];
    int64_t total;
    const char *order[REC_NCAT + 8];
    size_t n_order;
    size_t *planned; /* per catalogue entry: nodes it is planned on */
};

/* A RAM estimate for a model outside the catalogue: its parameter count
 * at 4-bit, plus runtime; 10 GB when the name gives no count. */
static double
rec_estimate_ram(const char *name)
{
    const char *p = strchr(name, ':');
    double b;

    if (strstr(name, "embed") != NULL)
        return 0.5;
    for (p = p ? p + 1 : name; *p != '\0';) {
        size_t n = strcspn(p, "-_:.");

        while (n < strlen(p) && p[n] == '.' && p[n + 1] >= '0' &&
               p[n + 1] <= '9')
            n += 1 + strcspn(p + n + 1, "-_:.");
        if (n > 0 && modelname_count(p, n, "bmt", &b) == 0)
            return round((b * 0.6 + 0.5) * 10) / 10;
        p += n;
        if (*p != '\0')
            p++;
    }
    return 10.0;
}

/* node has name, or a model of the same base name (before ':'). */
static bool
rec_node_has(const struct rec_node *n, const char *name, bool base_match)
{
    size_t bl = strcspn(name, ":");

    for (size_t i = 0; i < n->n_models; i++) {
        const char *m = n->models[i];

        if (strcmp(m, name) == 0)
            return true;
        if (base_match && strcspn(m, ":") == bl && strncmp(m, name, bl) == 0)
            return true;
    }
    return false;
}

static bool
rec_plan_has_family(const struct rec_plan *p, const struct rec_catalog *cat,
                    const char *family)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct rec_model *m = recommend_lookup(cat, p->picks[i].model);
        const char *f = m ? m->family : p->picks[i].model;

        if (strcmp(f, family) == 0)
            return true;
    }
    return false;
}

static bool
rec_plan_has_category(const struct rec_plan *p, const char *category)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->picks[i].category, category) == 0)
            return true;
    }
    return false;
}

/* Step 0: the most used models that are already on the node. */
static void
rec_keep_top_used(struct rec_ctx *x, struct rec_plan *p)
{
    for (size_t i = 0; i < x->n_usage && p->n < REC_MAX_PLAN; i++) {
        const struct rec_usage *u = &x->usage[i];
        const struct rec_model *m = recommend_lookup(x->cat, u->model);
        double ram = m ? m->ram_gb : rec_estimate_ram(u->model);
        struct rec_pick *k = &p->picks[p->n];

        if (p->remaining < REC_FAST_MIN_GB)
            break;
        if (u->requests <= 0 || !rec_node_has(p->node, u->model, false))
            continue;
        if (rec_plan_has_family(p, x->cat, m ? m->family : u->model) ||
            ram > p->usable * 0.5 || ram > p->remaining)
            continue;
        memset(k, 0, sizeof(*k));
        k->model = u->model;
        k->display = m ? m->display_name : u->model;
        k->category = m ? m->category : modelcat_classify(u->model);
        k->ram_gb = ram;
        k->quality = m ? m->quality : 0;
        k->priority = "high";
        k->available = true;
        snprintf(k->reason, sizeof(k->reason),
                 "Most used: %lld requests in 24 h; already on this node",
                 (long long)u->requests);
        p->remaining -= ram;
        p->n++;
    }
}

static bool
rec_disk_ok(const struct rec_plan *p, double ram, bool available)
{
    if (available || p->node->disk_available_gb < 0)
        return true;
    return p->downloads + ram <= p->node->disk_available_gb;
}

/* The best catalogue model of category that fits budget; NULL if none.
 * With spread, skips models already planned on 2 nodes or more. */
static const struct rec_model *
rec_best(const struct rec_ctx *x, const struct rec_plan *p,
         const char *category, double budget, bool spread, size_t *idx)
{
    const struct rec_model *best = NULL;

    for (size_t i = 0; i < x->cat->n; i++) {
        const struct rec_model *m = &x->cat->v[i];
        bool avail = rec_node_has(p->node, m->ollama_name, true);

        if (strcmp(m->category, category) != 0 || m->ram_gb > budget ||
            (spread && x->planned[i] >= 2) ||
            rec_plan_has_family(p, x->cat, m->family) ||
            !rec_disk_ok(p, m->ram_gb, avail))
            continue;
        if (best == NULL || m->quality > best->quality ||
            (m->quality == best->quality && m->ram_gb < best->ram_gb)) {
            best = m;
            *idx = i;
        }
    }
    return best;
}

static void
rec_add_pick(struct rec_ctx *x, struct rec_plan *p, const struct rec_model *m,
             size_t idx, const char *priority, const char *why)
{
    struct rec_pick *k = &p->picks[p->n++];

    memset(k, 0, sizeof(*k));
    k->model = m->ollama_name;
    k->display = m->display_name;
    k->category = m->category;
    k->ram_gb = m->ram_gb;
    k->quality = m->quality;
    k->priority = priority;
    k->available = rec_node_has(p->node, m->ollama_name, true);
    snprintf(k->reason, sizeof(k->reason), "%s", why);
    p->remaining -= m->ram_gb;
    if (!k->available)
        p->downloads += m->ram_gb;
    x->planned[idx]++;
}

/* Step 1: the best model of each category, most used categories first. */
static void
rec_fill_categories(struct rec_ctx *x, struct rec_plan *p)
{
    for (size_t c = 0; c < x->n_order && p->n < REC_MAX_PLAN; c++) {
        const char *cat = x->order[c];
        int ci = rec_cat_index(cat);
        int64_t demand = ci >= 0 ? x->cat_requests[ci] : 0;
        double budget = fmin(p->remaining, p->usable * 0.5);
        const struct rec_model *m;
        size_t idx = 0;
        char why[256];

        if (rec_plan_has_category(p, cat) || budget <= 0)
            continue;
        m = rec_best(x, p, cat, budget, true, &idx);
        if (m == NULL)
            m = rec_best(x, p, cat, budget, false, &idx);
        if (m == NULL)
            continue;
        if (demand > 0)
            snprintf(why, sizeof(why),
                     "Best %s model that fits (quality %.1f); %lld %s "
                     "requests in 24 h",
                     cat, m->quality, (long long)demand, cat);
        else
            snprintf(why, sizeof(why),
                     "Best %s model that fits (quality %.1f); covers %s", cat,
                     m->quality, cat);
        rec_add_pick(x, p, m, idx, c == 0 || demand > 0 ? "high" : "medium",
                     why);
    }
}

/* Step 2: a fast chat model in what is left. */
static void
rec_add_fast(struct rec_ctx *x, struct rec_plan *p)
{
    const struct rec_model *m;
    size_t idx = 0;

    if (p->remaining < REC_FAST_MIN_GB || p->n >= REC_MAX_PLAN ||
        rec_plan_has_category(p, "fast-chat"))
        return;
    m = rec_best(x, p, "fast-chat", p->remaining, false, &idx);
    if (m != NULL)
        rec_add_pick(x, p, m, idx, "low",
                     "Fast model for quick answers in the memory left");
}

static int
rec_usage_cmp(const void *a, const void *b)
{
    const struct rec_usage *x = a, *y = b;

    if (x->requests != y->requests)
        return x->requests > y->requests ? -1 : 1;
    return strcmp(x->model, y->model);
}

static void
rec_order_categories(struct rec_ctx *x)
{
    bool used[REC_NCAT] = {false};

    for (;;) {
        int best = -1;

        for (size_t i = 0; i < REC_NCAT; i++) {
            if (!used[i] && x->cat_requests[i] > 0 &&
                strcmp(rec_categories[i], "image") != 0 &&
                (best < 0 || x->cat_requests[i] > x->cat_requests[best]))
                best = (int)i;
        }
        if (best < 0)
            break;
        used[best] = true;
        x->order[x->n_order++] = rec_categories[best];
    }
    for (size_t i = 0; i < sizeof(rec_default_order) / sizeof(char *); i++) {
        int ci = rec_cat_index(rec_default_order[i]);

        if (ci >= 0 && !used[ci]) {
            used[ci] = true;
            x->order[x->n_order++] = rec_default_order[i];
        }
    }
}

/* --- JSON ------------------------------------------------------------------
 */

static cJSON *
rec_node_json(const struct rec_plan *p)
{
    const struct rec_node *n = p->node;
    cJSON *o = cJSON_CreateObject(), *cur, *recs;
    double total = 0;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "node_id", n->node_id);
    cJSON_AddNumberToObject(o, "total_ram_gb",
                            round(n->total_ram_gb * 10) / 10);
    cJSON_AddNumberToObject(o, "usable_ram_gb", round(p->usable * 10) / 10);
    cur = cJSON_AddArrayToObject(o, "current_models");
    for (size_t i = 0; cur != NULL && i < n->n_models; i++)
        cJSON_AddItemToArray(cur, cJSON_CreateString(n->models[i]));
    recs = cJSON_AddArrayToObject(o, "recommendations");
    for (size_t i = 0; recs != NULL && i < p->n; i++) {
        const struct rec_pick *k = &p->picks[i];
        cJSON *r = cJSON_CreateObject();

        if (r == NULL)
            break;
        cJSON_AddStringToObject(r, "model", k->model);
        cJSON_AddStringToObject(r, "display_name", k->display);
        cJSON_AddStringToObject(r, "category", k->category);
        cJSON_AddNumberToObject(r, "ram_gb", k->ram_gb);
        cJSON_AddNumberToObject(r, "quality_score", k->quality);
        cJSON_AddStringToObject(r, "reason", k->reason);
        cJSON_AddStringToObject(r, "priority", k->priority);
        cJSON_AddBoolToObject(r, "already_available", k->available);
        cJSON_AddItemToArray(recs, r);
        total += k->ram_gb;
    }
    if (n->disk_total_gb >= 0)
        cJSON_AddNumberToObject(o, "disk_total_gb", n->disk_total_gb);
    else
        cJSON_AddNullToObject(o, "disk_total_gb");
    if (n->disk_available_gb >= 0)
        cJSON_AddNumberToObject(o, "disk_available_gb", n->disk_available_gb);
    else
        cJSON_AddNullToObject(o, "disk_available_gb");
    cJSON_AddNumberToObject(o, "total_recommended_ram_gb",
                            round(total * 10) / 10);
    cJSON_AddNumberToObject(o, "ram_headroom_gb",
                            round((p->usable - total) * 10) / 10);
    return o;
}

static cJSON *
rec_usage_json(const struct rec_ctx *x, const struct rec_plan *plans,
               size_t n_plans)
{
    cJSON *u = cJSON_CreateObject(), *br, *top, *cov;

    if (u == NULL)
        return NULL;
    cJSON_AddNumberToObject(u, "total_requests_24h", (double)x->total);
    br = cJSON_AddObjectToObject(u, "category_breakdown");
    for (size_t i = 0; br != NULL && i < REC_NCAT; i++) {
        if (x->cat_requests[i] > 0)
            cJSON_AddNumberToObject(br, rec_categories[i],
                                    (double)x->cat_requests[i]);
    }
    top = cJSON_AddArrayToObject(u, "top_models");
    for (size_t i = 0; top != NULL && i < x->n_usage && i < 10; i++) {
        cJSON *t = cJSON_CreateObject();

        if (t == NULL)
            break;
        cJSON_AddStringToObject(t, "model", x->usage[i].model);
        cJSON_AddStringToObject(t, "category",
                                recommend_classify(x->cat, x->usage[i].model));
        cJSON_AddNumberToObject(t, "requests", (double)x->usage[i].requests);
        cJSON_AddItemToArray(top, t);
    }
    cov = cJSON_AddObjectToObject(u, "category_coverage");
    for (size_t c = 0; cov != NULL && c < x->n_order; c++) {
        cJSON *l = cJSON_AddArrayToObject(cov, x->order[c]);

        for (size_t i = 0; l != NULL && i < n_plans; i++) {
            if (rec_plan_has_category(&plans[i], x->order[c]))
                cJSON_AddItemToArray(
                    l, cJSON_CreateString(plans[i].node->node_id));
        }
    }
    return u;
}

static cJSON *
rec_summary_json(const struct rec_ctx *x, const struct rec_plan *plans,
                 size_t n_plans, cJSON *uncovered)
{
    cJSON *s = cJSON_CreateObject();
    double ram = 0, usable = 0, rec_ram = 0;
    size_t models = 0, pulls = 0, covered = 0;

    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n_plans; i++) {
        ram += plans[i].node->total_ram_gb;
        usable += plans[i].usable;
        models += plans[i].n;
        for (size_t k = 0; k < plans[i].n; k++) {
            rec_ram += plans[i].picks[k].ram_gb;
            pulls += !plans[i].picks[k].available;
        }
    }
    for (size_t c = 0; c < x->n_order; c++) {
        bool any = false;

        for (size_t i = 0; i < n_plans && !any; i++)
            any = rec_plan_has_category(&plans[i], x->order[c]);
        covered += any;
        if (!any && uncovered != NULL)
            cJSON_AddItemToArray(uncovered, cJSON_CreateString(x->order[c]));
    }
    cJSON_AddNumberToObject(s, "total_nodes", (double)n_plans);
    cJSON_AddNumberToObject(s, "total_ram_gb", round(ram * 10) / 10);
    cJSON_AddNumberToObject(s, "total_usable_ram_gb", round(usable * 10) / 10);
    cJSON_AddNumberToObject(s, "total_recommended_models", (double)models);
    cJSON_AddNumberToObject(s, "total_recommended_ram_gb",
                            round(rec_ram * 10) / 10);
    cJSON_AddNumberToObject(s, "models_to_pull", (double)pulls);
    cJSON_AddNumberToObject(s, "categories_covered", (double)covered);
    return s;
}

static int
rec_node_cmp(const void *a, const void *b)
{
    const struct rec_plan *x = a, *y = b;

    if (x->node->total_ram_gb != y->node->total_ram_gb)
        return x->node->total_ram_gb > y->node->total_ram_gb ? -1 : 1;
    return strcmp(x->node->node_id, y->node->node_id);
}

static int
rec_emit(struct rec_ctx *x, struct rec_plan *plans, size_t n_nodes,
         struct buf *out)
{
    cJSON *root = cJSON_CreateObject(), *nodes, *unc;
    int rc = -ENOMEM;

    if (root == NULL)
        return -ENOMEM;
    nodes = cJSON_AddArrayToObject(root, "nodes");
    for (size_t i = 0; nodes != NULL && i < n_nodes; i++) {
        cJSON *n = rec_node_json(&plans[i]);

        if (n == NULL)
            goto out;
        cJSON_AddItemToArray(nodes, n);
    }
    cJSON_AddItemToObject(root, "usage", rec_usage_json(x, plans, n_nodes));
    unc = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "fleet_summary",
                          rec_summary_json(x, plans, n_nodes, unc));
    cJSON_AddItemToObject(root, "uncovered_categories", unc);
    if (nodes != NULL && json_get(root, "usage") != NULL &&
        json_get(root, "fleet_summary") != NULL && unc != NULL)
        rc = json_print(root, out);
out:
    cJSON_Delete(root);
    return rc;
}

int
recommend_analyze(const struct rec_catalog *c, const struct rec_node *nodes,
                  size_t n_nodes, const struct rec_usage *usage, size_t n_usage,
                  struct buf *out)
{
    struct rec_ctx x;
    struct rec_plan *plans = calloc(n_nodes ? n_nodes : 1, sizeof(*plans));
    struct rec_usage *u = calloc(n_usage ? n_usage : 1, sizeof(*u));
    struct rec_catalog empty = {NULL, 0};
    int rc = -ENOMEM;

    memset(&x, 0, sizeof(x));
    x.cat = c != NULL ? c : &empty;
    x.planned = calloc(x.cat->n ? x.cat->n : 1, sizeof(*x.planned));
    if (plans == NULL || u == NULL || x.planned == NULL)
        goto out;
    if (n_usage > 0)
        memcpy(u, usage, n_usage * sizeof(*u));
    qsort(u, n_usage, sizeof(*u), rec_usage_cmp);
    x.usage = u;
    x.n_usage = n_usage;
    for (size_t i = 0; i < n_usage; i++) {
        int ci = rec_cat_index(recommend_classify(x.cat, u[i].model));

        if (u[i].requests <= 0)
            continue;
        x.total += u[i].requests;
        if (ci >= 0)
            x.cat_requests[ci] += u[i].requests;
    }
    rec_order_categories(&x);
    for (size_t i = 0; i < n_nodes; i++)
        plans[i].node = &nodes[i];
    qsort(plans, n_nodes, sizeof(*plans), rec_node_cmp);
    for (size_t i = 0; i < n_nodes; i++) {
        struct rec_plan *p = &plans[i];

        p->usable = fmax(0, p->node->total_ram_gb - RECOMMEND_OS_RESERVE_GB);
        p->remaining = p->usable;
        rec_keep_top_used(&x, p);
        rec_fill_categories(&x, p);
        rec_add_fast(&x, p);
    }
    rc = rec_emit(&x, plans, n_nodes, out);
out:
    free(x.planned);
    free(plans);
    free(u);
    return rc;
}
