/*
 * catalog.h - the models a herd-sim "has installed".
 *
 * Given on the command line (--model SPEC, repeatable), in a JSON file
 * (--catalog FILE), or a built-in default set. A SPEC is
 *   name[:tag][,key=value|,flag]...
 * with keys size (bytes or "4.7GB"), params ("8B", "30b-a3b", "567M"),
 * quant ("Q4_K_M"), family, ctx (training context), embed_len, and flags
 * embed, tools, thinking, vision, insert, notools. Missing values are
 * derived (size from params and quant, family from the name, ...). The
 * JSON file is an array of objects with the same keys ("name" required,
 * flags as booleans, "capabilities" as an array also accepted).
 */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sim_cap {
    SIM_CAP_COMPLETION = 1u << 0,
    SIM_CAP_TOOLS = 1u << 1,
    SIM_CAP_THINKING = 1u << 2,
    SIM_CAP_INSERT = 1u << 3,
    SIM_CAP_VISION = 1u << 4,
    SIM_CAP_EMBEDDING = 1u << 5,
};

struct sim_model {
    char *name;              /* owned; canonical "llama3.2:latest", "ns/m:t" */
    char *family;            /* owned; "llama" */
    char *parameter_size;    /* owned; "3.2B" as Ollama prints it */
    char *quantization;      /* owned; "Q4_K_M" */
    double params_b;         /* parameter count in billions (total) */
    double active_b;         /* active parameters for MoE ("30b-a3b" -> 3) */
    uint64_t size;           /* bytes on disk */
    uint32_t context_length; /* training context */
    uint32_t embedding_length; /* hidden size */
    unsigned caps;             /* enum sim_cap bits */
    char digest[65];           /* 64 lowercase hex, stable for name+size */
    int64_t modified_ns;       /* wall clock, for modified_at */
    char *system;              /* owned or NULL: Modelfile SYSTEM */
    char *parameters;          /* owned or NULL: "key value" lines */
    int64_t param_num_ctx;     /* Modelfile PARAMETER num_ctx; 0 = none */
};

struct sim_catalog {
    struct sim_model **models; /* owned: the installed models */
    size_t n, cap;
    /* Deleted models stay allocated here until catalog_cleanup, because a
     * loaded runner may still borrow them (Ollama: deleting does not
     * unload a running copy). */
    struct sim_model **removed; /* owned */
    size_t n_removed, cap_removed;
};

void catalog_init(struct sim_catalog *c);
void catalog_cleanup(struct sim_catalog *c);

/* Adds the built-in set: llama3.2:3b, llama3.1:8b, qwen3:8b (thinking,
 * tools), qwen2.5-coder:7b, gemma3:4b (vision), nomic-embed-text (embed),
 * and a large one, llama3.3:70b. 0 or -ENOMEM. */
int catalog_add_defaults(struct sim_catalog *c);

/* 0, or -EINVAL with a message ("bad size '4.7QB' in spec ...") in err.
 * An existing model of the same name is replaced. */
int catalog_add_spec(struct sim_catalog *c, const char *spec, char *err,
                     size_t errlen);
int catalog_load_file(struct sim_catalog *c, const char *path, char *err,
                      size_t errlen);

/*
 * Normalises a model name as Ollama shows it: the tag defaults to
 * "latest", "registry.ollama.ai/" and "library/" are dropped, e.g.
 * "Llama3.2" -> "Llama3.2:latest" (case kept; matching ignores case).
 * -EINVAL for an invalid name (empty, bad characters, empty part,
 * too long), which Ollama reports as "invalid model name".
 */
int model_name_normalize(const char *in, char *out, size_t n);

/* Finds by normalised name, ignoring case; NULL when not installed. */
struct sim_model *catalog_find(const struct sim_catalog *c, const char *name);

/* Removes (delete) or duplicates (copy) a model. 0, -ENOENT, -EINVAL. */
int catalog_remove(struct sim_catalog *c, const char *name);
int catalog_copy(struct sim_catalog *c, const char *src, const char *dst);

/* Adds a model by name as a pull would: a known name from the built-in
 * "registry" (a larger list than the default install) gets its real
 * shape; any other well-formed name gets derived values. -ENOENT when the
 * name is on the sim's not-found list (names starting "missing" or
 * "nonexistent"), so a pull can fail as Ollama's does. */
int catalog_pull(struct sim_catalog *c, const char *name,
                 const struct sim_model **out);

/* Sets a model's Modelfile SYSTEM and PARAMETER lines (as /api/create
 * does); param_num_ctx is the num_ctx a request without one loads with.
 * Copies the strings. 0 or -ENOMEM (m unchanged). */
int catalog_set_modelfile(struct sim_model *m, const char *system,
                          const char *parameters, int64_t param_num_ctx);

/* "library" for plain names, the namespace otherwise (OpenAI owned_by). */
void model_name_owner(const char *name, char *out, size_t n);

/*
 * Additions (simcore):
 * - catalog_add_spec/catalog_load_file/catalog_pull/catalog_copy fail
 *   with -ENOSPC once 4096 models are installed (a peer controls pulls).
 * - A pull (or copy with the same digest) of a name that is in
 *   c->removed brings that same object back instead of allocating a new
 *   one, so a still-loaded runner of it is reused and pull/delete loops
 *   do not grow memory.
 * - catalog_purge_removed frees the removed models for which in_use()
 *   returns false (e.g. sched_uses_model); in_use NULL frees them all.
 */
void catalog_purge_removed(struct sim_catalog *c,
                           bool (*in_use)(const struct sim_model *m, void *ud),
                           void *ud);

#endif /* SIM_CATALOG_H */
