/*
 * recommend.h - the model catalogue and the fleet model recommender
 * (ollama-herd's model_knowledge.py and model_recommender.py, reference
 * §8.2), pure.
 *
 * The catalogue is data: data/models.json (embedded into herd at build
 * time; FLEET_MODEL_CATALOG names another file), a JSON array of
 *   {ollama_name, display_name, family, params_b, active_params_b?,
 *    ram_gb, size_class?, category, secondary_categories?,
 *    benchmarks?: {mmlu?, humaneval?, mt_bench?}, context_length, notes?}
 * Categories: general, reasoning, coding, creative, fast-chat, vision,
 * vision-embedding, embedding, image.
 *
 * recommend_analyze() plans, for every node from the largest memory down,
 * a mix of models that fits its memory (6 GB kept for the system), led
 * by the categories the fleet used most in 24 h; see docs/dashboard.md.
 */
#ifndef COORD_RECOMMEND_H
#define COORD_RECOMMEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herd/buf.h"

#define RECOMMEND_MAX_MODELS      512 /* catalogue entries */
#define RECOMMEND_MAX_SECONDARY   8
#define RECOMMEND_OS_RESERVE_GB   6.0
#define RECOMMEND_MAX_BYTES       (4u << 20) /* catalogue file */
#define RECOMMEND_MAX_NODE_MODELS 1024

struct rec_model {
    char *ollama_name, *display_name, *family, *category, *size_class;
    char *notes;
    char *secondary[RECOMMEND_MAX_SECONDARY];
    size_t n_secondary;
    double params_b, active_params_b, ram_gb;
    double mmlu, humaneval, mt_bench; /* NAN when absent */
    int64_t context_length;
    double quality; /* mean of the benchmarks present (mt_bench x 10) */
};

struct rec_catalog {
    struct rec_model *v;
    size_t n;
};

/*
 * Parses a catalogue document. Returns it, or NULL with a sentence in err
 * ("models.json: entry 3 (qwen3:8b): ram_gb must be a positive number").
 * Names are normalised with ":latest" when they have no tag; a duplicate
 * name is an error.
 */
struct rec_catalog *recommend_catalog_parse(const char *json, size_t len,
                                            char *err, size_t errlen);
void recommend_catalog_free(struct rec_catalog *c);

/* ollama-herd's lookup_model: the exact name, the name without
 * ":latest", then the first entry whose family is the base name (before
 * ':') or whose name starts with "base:". NULL when none. */
const struct rec_model *recommend_lookup(const struct rec_catalog *c,
                                         const char *name);

/* The catalogue's category, else modelcat_classify()'s guess. */
const char *recommend_classify(const struct rec_catalog *c, const char *name);

/* A node as the recommender sees it. */
struct rec_node {
    const char *node_id;
    double total_ram_gb;
    double disk_total_gb, disk_available_gb; /* < 0: unknown */
    const char *const *models;               /* on disk or loaded; borrowed */
    size_t n_models;
};

/* Requests per model over the last 24 h. */
struct rec_usage {
    const char *model;
    int64_t requests;
};

/*
 * Appends the FleetRecommendation:
 *   {"nodes":[{node_id,total_ram_gb,usable_ram_gb,current_models,
 *     recommendations:[{model,display_name,category,ram_gb,quality_score,
 *     reason,priority,already_available}],disk_total_gb,disk_available_gb,
 *     total_recommended_ram_gb,ram_headroom_gb}],
 *    "usage":{total_requests_24h,category_breakdown,top_models,
 *     category_coverage},
 *    "fleet_summary":{...},"uncovered_categories":[...]}
 * 0, -ENOMEM or -E2BIG.
 */
int recommend_analyze(const struct rec_catalog *c, const struct rec_node *nodes,
                      size_t n_nodes, const struct rec_usage *usage,
                      size_t n_usage, struct buf *out);

#endif /* COORD_RECOMMEND_H */
