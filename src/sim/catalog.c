/*
 * catalog.c - the models a herd-sim "has installed".
 *
 * Three sources feed one list: the built-in default set, --model SPEC
 * strings and a JSON catalogue file. All of them go through one builder
 * (struct build): start from the shape the built-in "registry" knows for
 * the name (or values derived from the name), apply what the user gave,
 * then derive what is still missing (size from parameters and
 * quantisation, or the other way round). Models that are deleted or
 * replaced move to c->removed, because a loaded runner may still borrow
 * them; a later pull of the same name brings the same object back, so a
 * pull/delete loop does not grow memory and a still-loaded runner is
 * reused, as Ollama reuses a runner whose blobs did not change.
 */
#include "catalog.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "herd/clock.h"
#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/modelname.h"
#include "herd/parse.h"

/* Caps: the catalogue is peer-controlled through pull/create/copy. */
#define CATALOG_MAX_MODELS    4096
#define CATALOG_MAX_FILE      (4u << 20)
#define CATALOG_MAX_SPEC      1024
#define CATALOG_NAME_MAX      512 /* normalised names fit in this */
#define CATALOG_MAX_PART      80  /* model, namespace and tag */
#define CATALOG_MAX_HOST      350
#define CATALOG_JSON_DEPTH    16
#define CATALOG_DEFAULT_QUANT "Q4_K_M"

/* A registry entry: the real shape of a model Ollama's library has. */
struct reg_entry {
    const char *name; /* canonical, tagged */
    const char *family;
    const char *parameter_size;
    const char *quant;
    double params_b, active_b;
    uint64_t size;
    uint32_t ctx, embed_len;
    unsigned caps;
    bool latest; /* "<model>:latest" is this entry */
};

#define GB(x) ((uint64_t)((x)*1e9))
#define MB(x) ((uint64_t)((x)*1e6))
#define C_    SIM_CAP_COMPLETION
#define T_    SIM_CAP_TOOLS
#define K_    SIM_CAP_THINKING
#define I_    SIM_CAP_INSERT
#define V_    SIM_CAP_VISION
#define E_    SIM_CAP_EMBEDDING

/* Sizes and shapes as `ollama list` / `ollama show` print them. */
static const struct reg_entry catalog_registry[] = {
    {"llama3.2:1b", "llama", "1.2B", "Q8_0", 1.24, 1.24, GB(1.3), 131072, 2048,
     C_ | T_, false},
    {"llama3.2:3b", "llama", "3.2B", "Q4_K_M", 3.21, 3.21, GB(2.0), 131072,
     3072, C_ | T_, true},
    {"llama3.1:8b", "llama", "8.0B", "Q4_K_M", 8.03, 8.03, GB(4.9), 131072,
     4096, C_ | T_, true},
    {"llama3.1:70b", "llama", "70.6B", "Q4_K_M", 70.6, 70.6, GB(43), 131072,
     8192, C_ | T_, false},
    {"llama3.3:70b", "llama", "70.6B", "Q4_K_M", 70.6, 70.6, GB(43), 131072,
     8192, C_ | T_, true},
    {"qwen3:0.6b", "qwen3", "751.63M", "Q4_K_M", 0.752, 0.752, MB(523), 40960,
     1024, C_ | T_ | K_, false},
    {"qwen3:1.7b", "qwen3", "2.0B", "Q4_K_M", 2.03, 2.03, GB(1.4), 40960, 2048,
     C_ | T_ | K_, false},
    {"qwen3:4b", "qwen3", "4.0B", "Q4_K_M", 4.02, 4.02, GB(2.5), 262144, 2560,
     C_ | T_ | K_, false},
    {"qwen3:8b", "qwen3", "8.2B", "Q4_K_M", 8.19, 8.19, GB(5.2), 40960, 4096,
     C_ | T_ | K_, true},
    {"qwen3:14b", "qwen3", "14.8B", "Q4_K_M", 14.8, 14.8, GB(9.3), 40960, 5120,
     C_ | T_ | K_, false},
    {"qwen3:30b", "qwen3moe", "30.5B", "Q4_K_M", 30.5, 3.3, GB(19), 262144,
     2048, C_ | T_ | K_, false},
    {"qwen3:32b", "qwen3", "32.8B", "Q4_K_M", 32.8, 32.8, GB(20), 40960, 5120,
     C_ | T_ | K_, false},
    {"qwen2.5:7b", "qwen2", "7.6B", "Q4_K_M", 7.62, 7.62, GB(4.7), 32768, 3584,
     C_ | T_, true},
    {"qwen2.5-coder:7b", "qwen2", "7.6B", "Q4_K_M", 7.62, 7.62, GB(4.7), 32768,
     3584, C_ | T_ | I_, true},
    {"qwen2.5-coder:32b", "qwen2", "32.8B", "Q4_K_M", 32.8, 32.8, GB(20), 32768,
     5120, C_ | T_ | I_, false},
    {"gemma3:1b", "gemma3", "999.89M", "Q4_K_M", 1.0, 1.0, MB(815), 32768, 1152,
     C_, false},
    {"gemma3:4b", "gemma3", "4.3B", "Q4_K_M", 4.3, 4.3, GB(3.3), 131072, 2560,
     C_ | V_, true},
    {"gemma3:12b", "gemma3", "12.2B", "Q4_K_M", 12.2, 12.2, GB(8.1), 131072,
     3840, C_ | V_, false},
    {"gemma3:27b", "gemma3", "27.4B", "Q4_K_M", 27.4, 27.4, GB(17), 131072,
     5376, C_ | V_, false},
    {"mistral:7b", "llama", "7.2B", "Q4_K_M", 7.25, 7.25, GB(4.4), 32768, 4096,
     C_ | T_, true},
    {"mixtral:8x7b", "llama", "46.7B", "Q4_0", 46.7, 12.9, GB(26), 32768, 4096,
     C_ | T_, true},
    {"phi4:14b", "phi3", "14.7B", "Q4_K_M", 14.7, 14.7, GB(9.1), 16384, 5120,
     C_, true},
    {"deepseek-r1:7b", "qwen2", "7.6B", "Q4_K_M", 7.62, 7.62, GB(4.7), 131072,
     3584, C_ | K_, false},
    {"deepseek-r1:8b", "qwen3", "8.2B", "Q4_K_M", 8.19, 8.19, GB(5.2), 131072,
     4096, C_ | T_ | K_, true},
    {"gpt-oss:20b", "gptoss", "20.9B", "MXFP4", 20.9, 3.6, GB(14), 131072, 2880,
     C_ | T_ | K_, true},
    {"gpt-oss:120b", "gptoss", "116.8B", "MXFP4", 116.8, 5.1, GB(65), 131072,
     2880, C_ | T_ | K_, false},
    {"llava:7b", "llama", "7B", "Q4_0", 7.0, 7.0, GB(4.7), 32768, 4096, C_ | V_,
     true},
    {"codellama:7b", "llama", "7B", "Q4_0", 6.74, 6.74, GB(3.8), 16384, 4096,
     C_ | I_, true},
    {"tinyllama:1.1b", "llama", "1B", "Q4_0", 1.1, 1.1, MB(638), 2048, 2048, C_,
     true},
    {"smollm2:135m", "llama", "134.52M", "F16", 0.1345, 0.1345, MB(271), 8192,
     576, C_ | T_, false},
    {"nomic-embed-text:latest", "nomic-bert", "137M", "F16", 0.137, 0.137,
     MB(274), 2048, 768, E_, false},
    {"mxbai-embed-large:latest", "bert", "334M", "F16", 0.334, 0.334, MB(670),
     512, 1024, E_, false},
    {"all-minilm:latest", "bert", "23M", "F16", 0.023, 0.023, MB(46), 512, 384,
     E_, false},
    {"bge-m3:latest", "bert", "567M", "F16", 0.567, 0.567, GB(1.2), 8192, 1024,
     E_, false},
};

/* The default install, in `ollama list` order (newest first). */
static const char *const catalog_default_names[] = {
    "llama3.2:3b",      "llama3.1:8b", "qwen3:8b",
    "qwen2.5-coder:7b", "gemma3:4b",   "nomic-embed-text:latest",
    "llama3.3:70b",
};

#undef C_
#undef T_
#undef K_
#undef I_
#undef V_
#undef E_

/* What the user said about one model, before defaults are filled in. */
struct build {
    char name[CATALOG_NAME_MAX];
    bool has_size, has_params, has_quant, has_family, has_ctx, has_embed_len;
    bool has_caps;
    uint64_t size;
    double params_b, active_b;
    char quant[16];
    char family[64];
    uint32_t ctx, embed_len;
    unsigned caps;               /* with has_caps: the exact set */
    unsigned caps_add, caps_del; /* flags */
};

static const struct {
    const char *name;
    unsigned bit;
} catalog_cap_names[] = {
    {"completion", SIM_CAP_COMPLETION}, {"tools", SIM_CAP_TOOLS},
    {"thinking", SIM_CAP_THINKING},     {"insert", SIM_CAP_INSERT},
    {"vision", SIM_CAP_VISION},         {"embedding", SIM_CAP_EMBEDDING},
};

/* ---- names ---- */

static bool
name_char_ok(char c, bool dot_ok, bool colon_ok)
{
    unsigned char u = (unsigned char)c;

    if (isalnum(u) || c == '_' || c == '-')
        return true;
    if (c == '.')
        return dot_ok;
    if (c == ':')
        return colon_ok;
    return false;
}

/* Ollama's isValidPart: first character alphanumeric or '_', '.' not in
 * a namespace, ':' only in a host (a port). */
static bool
name_part_ok(const char *p, size_t n, size_t max, bool dot_ok, bool colon_ok)
{
    if (n == 0 || n > max)
        return false;
    if (!isalnum((unsigned char)p[0]) && p[0] != '_')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!name_char_ok(p[i], dot_ok, colon_ok))
            return false;
    return true;
}

static bool
span_ieq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

int
model_name_normalize(const char *in, char *out, size_t n)
{
    const char *parts[3];
    size_t lens[3], np = 0, first = 0;
    const char *end, *slash, *colon, *tag = "latest", *p;
    size_t taglen = 6, inlen, pos = 0;

    if (in == NULL || out == NULL || n == 0)
        return -EINVAL;
    inlen = strnlen(in, CATALOG_NAME_MAX + 1);
    if (inlen == 0 || inlen > CATALOG_NAME_MAX)
        return -EINVAL;
    end = in + inlen;
    slash = strrchr(in, '/');
    colon = strrchr(in, ':');
    /* The tag follows the last ':' after the last '/'; an earlier ':' is
     * a host's port. */
    if (colon != NULL && (slash == NULL || colon > slash)) {
        tag = colon + 1;
        taglen = (size_t)(end - tag);
        end = colon;
    }
    if (!name_part_ok(tag, taglen, CATALOG_MAX_PART, true, false))
        return -EINVAL;
    for (p = in;;) {
        const char *q = memchr(p, '/', (size_t)(end - p));
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);

        if (np == 3)
            return -EINVAL;
        parts[np] = p;
        lens[np++] = len;
        if (q == NULL)
            break;
        p = q + 1;
    }
    /* parts: [host/][namespace/]model */
    if (!name_part_ok(parts[np - 1], lens[np - 1], CATALOG_MAX_PART, true,
                      false))
        return -EINVAL;
    if (np >= 2 && !name_part_ok(parts[np - 2], lens[np - 2], CATALOG_MAX_PART,
                                 false, false))
        return -EINVAL;
    if (np == 3 &&
        !name_part_ok(parts[0], lens[0], CATALOG_MAX_HOST, true, true))
        return -EINVAL;
    if (np == 3 && span_ieq(parts[0], lens[0], "registry.ollama.ai"))
        first = 1;
    if (np - first == 2 && span_ieq(parts[first], lens[first], "library"))
        first++;
    for (size_t i = first; i < np; i++) {
        if (lens[i] + 1 > n - pos)
            return -EINVAL;
        memcpy(out + pos, parts[i], lens[i]);
        pos += lens[i];
        out[pos++] = i + 1 < np ? '/' : ':';
    }
    if (taglen + 1 > n - pos)
        return -EINVAL;
    memcpy(out + pos, tag, taglen);
    out[pos + taglen] = '\0';
    return 0;
}

void
model_name_owner(const char *name, char *out, size_t n)
{
    const char *slash, *start = name, *p;

    if (n == 0)
        return;
    slash = name ? strrchr(name, '/') : NULL;
    if (slash == NULL) {
        snprintf(out, n, "library");
        return;
    }
    /* The namespace is the part before the model. */
    for (p = name; p < slash; p++)
        if (*p == '/')
            start = p + 1;
    snprintf(out, n, "%.*s", (int)(slash - start), start);
}

/* The bare model part ("qwen2.5-coder") and tag of a normalised name. */
static void
name_split(const char *name, const char **model, size_t *model_len,
           const char **tag)
{
    const char *slash = strrchr(name, '/');
    const char *colon = strrchr(name, ':');

    *model = slash ? slash + 1 : name;
    if (colon != NULL && colon > *model) {
        *model_len = (size_t)(colon - *model);
        *tag = colon + 1;
    } else {
        *model_len = strlen(*model);
        *tag = "latest";
    }
}

/* ---- parameter counts, quantisation and sizes ---- */

/*
 * A parameter count as model tags spell it: "8B", "567M", "1.5b",
 * "30b-a3b" (MoE: 30 total, 3 active), "8x7b" (experts x size: total
 * n*size, two experts active). A bare number is a raw count when >= 1e4
 * and billions otherwise (JSON files may give 8030261248 or 8).
 */
static int
catalog_parse_params(const char *s, double *total, double *active)
{
    size_t n = strlen(s);
    const char *dash = memchr(s, '-', n);
    const char *x = memchr(s, 'x', n);
    double t, a, k;

    if (n == 0 || n > 31)
        return -EINVAL;
    if (modelname_decimal(s, n, &t) == 0) {
        if (t <= 0)
            return -EINVAL;
        t = t >= 1e4 ? t / 1e9 : t;
        *total = *active = t;
        return 0;
    }
    if (dash != NULL) {
        const char *r = dash + 1;

        if (tolower((unsigned char)*r) != 'a' ||
            modelname_count(s, (size_t)(dash - s), "bmtk", &t) != 0 ||
            modelname_count(r + 1, n - (size_t)(r + 1 - s), "bmtk", &a) != 0 ||
            a > t)
            return -EINVAL;
        *total = t;
        *active = a;
        return 0;
    }
    if (x != NULL) {
        if (modelname_decimal(s, (size_t)(x - s), &k) != 0 || k < 1 ||
            k != floor(k) ||
            modelname_count(x + 1, n - (size_t)(x + 1 - s), "bmtk", &t))
            return -EINVAL;
        *total = k * t;
        *active = (k < 2 ? k : 2) * t;
        return 0;
    }
    if (modelname_count(s, n, "bmtk", &t) != 0)
        return -EINVAL;
    *total = *active = t;
    return 0;
}

static double
quant_bits(const char *q)
{
    double bits = 4.85;

    (void)modelname_quant(q, strlen(q), NULL, &bits);
    return bits;
}

/* GGUF file size: the weights plus a little for the output layer kept at
 * higher precision, the vocabulary and metadata. */
static uint64_t
size_from_params(double params_b, const char *quant)
{
    double bytes = params_b * 1e9 * quant_bits(quant) / 8.0 * 1.02 + 20e6;

    return bytes < 1e6 ? 1000000u : (uint64_t)bytes;
}

static double
params_from_size(uint64_t size, const char *quant)
{
    double b = ((double)size - 20e6) / (quant_bits(quant) / 8.0 * 1.02) / 1e9;

    return b < 0.001 ? 0.001 : b;
}

/* Ollama's format.HumanNumber. */
static void
format_params(double params_b, char *out, size_t n)
{
    double v = params_b * 1e9;
    uint64_t c = (uint64_t)llround(v);

    if (c >= 1000000000000ull) {
        double t = (double)c / 1e12;
        snprintf(out, n, t == floor(t) ? "%.0fT" : "%.1fT", t);
    } else if (c >= 1000000000ull) {
        double b = (double)c / 1e9;
        snprintf(out, n, b == floor(b) ? "%.0fB" : "%.1fB", b);
    } else if (c >= 1000000ull) {
        double m = (double)c / 1e6;
        snprintf(out, n, m == floor(m) ? "%.0fM" : "%.2fM", m);
    } else if (c >= 1000ull) {
        snprintf(out, n, "%.0fK", (double)c / 1e3);
    } else {
        snprintf(out, n, "%llu", (unsigned long long)c);
    }
}

/* A hidden size of the right order for a parameter count. */
static uint32_t
embed_len_from_params(double b)
{
    if (b < 0.2)
        return 768;
    if (b < 0.8)
        return 1024;
    if (b < 2)
        return 2048;
    if (b < 5)
        return 3072;
    if (b < 10)
        return 4096;
    if (b < 20)
        return 5120;
    if (b < 40)
        return 6144;
    return 8192;
}

/* Parameters and quantisation from a name such as "foo:7b-instruct-q8_0"
 * or "smollm-135m". */
static void
derive_from_name(const char *name, double *params, double *active,
                 const char **quant)
{
    const char *model, *tag;
    size_t mlen;
    char seg[32];
    bool got = false;

    name_split(name, &model, &mlen, &tag);
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass == 0 ? tag : model;
        const char *end = pass == 0 ? tag + strlen(tag) : model + mlen;

        while (p < end) {
            const char *q = memchr(p, '-', (size_t)(end - p));
            size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
            double t, a;

            if (len < sizeof(seg)) {
                memcpy(seg, p, len);
                seg[len] = '\0';
                /* Only b/m units: "4k" in a tag is a context size. */
                char unit =
                    (char)tolower((unsigned char)seg[len ? len - 1 : 0]);

                if (!got && len > 1 && (unit == 'b' || unit == 'm') &&
                    catalog_parse_params(seg, &t, &a) == 0) {
                    *params = t;
                    *active = a;
                    /* "30b-a3b": the next segment is the active count. */
                    if (q != NULL && (q[1] == 'a' || q[1] == 'A')) {
                        const char *r = q + 1;
                        const char *q2 = memchr(r, '-', (size_t)(end - r));
                        size_t l2 = q2 ? (size_t)(q2 - r) : (size_t)(end - r);

                        if (modelname_count(r + 1, l2 - 1, "bmtk", &a) == 0 &&
                            a <= t)
                            *active = a;
                    }
                    got = true;
                }
                (void)modelname_quant(seg, len, quant, NULL);
            }
            p = q ? q + 1 : end;
        }
    }
}

/* "qwen2.5-coder" -> "qwen2", "gemma3" -> "gemma3", "llama3.1" -> "llama". */
static void
derive_family(const char *name, char *out, size_t n)
{
    const char *model, *tag;
    size_t mlen, i = 0, j;

    name_split(name, &model, &mlen, &tag);
    while (i < mlen && isalpha((unsigned char)model[i]))
        i++;
    j = i;
    while (j < mlen && isdigit((unsigned char)model[j]))
        j++;
    if (i == 0) {
        snprintf(out, n, "llama");
        return;
    }
    if (i == 5 && strncasecmp(model, "llama", 5) == 0)
        j = i;
    snprintf(out, n, "%.*s", (int)j, model);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* 64 hex digits from name and size: four FNV-1a-64 lanes, mixed. */
static void
make_digest(const char *name, uint64_t size, char out[65])
{
    for (int lane = 0; lane < 4; lane++) {
        uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(lane * 0x9e3779b9u);

        for (const char *p = name; *p; p++) {
            h ^= (unsigned char)*p;
            h *= 0x100000001b3ull;
        }
        for (int i = 0; i < 8; i++) {
            h ^= (size >> (8 * i)) & 0xff;
            h *= 0x100000001b3ull;
        }
        /* splitmix64 finaliser: spreads the FNV bits over the word. */
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebull;
        h ^= h >> 31;
        snprintf(out + lane * 16, 17, "%016llx", (unsigned long long)h);
    }
}

static const struct reg_entry *
registry_find(const char *name)
{
    const char *model, *tag;
    size_t mlen;
    size_t nreg = sizeof(catalog_registry) / sizeof(catalog_registry[0]);

    for (size_t i = 0; i < nreg; i++)
        if (strcasecmp(catalog_registry[i].name, name) == 0)
            return &catalog_registry[i];
    name_split(name, &model, &mlen, &tag);
    if (model != name || strcasecmp(tag, "latest") != 0)
        return NULL;
    for (size_t i = 0; i < nreg; i++) {
        const char *rm, *rt;
        size_t rl;

        name_split(catalog_registry[i].name, &rm, &rl, &rt);
        if (catalog_registry[i].latest && rl == mlen &&
            strncasecmp(rm, model, mlen) == 0)
            return &catalog_registry[i];
    }
    return NULL;
}

static bool
contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* ---- models ---- */

static void
model_free(struct sim_model *m)
{
    if (m == NULL)
        return;
    free(m->name);
    free(m->family);
    free(m->parameter_size);
    free(m->quantization);
    free(m->system);
    free(m->parameters);
    free(m);
}

int
catalog_set_modelfile(struct sim_model *m, const char *system,
                      const char *parameters, int64_t param_num_ctx)
{
    char *sys = system ? strdup(system) : NULL;
    char *par = parameters ? strdup(parameters) : NULL;

    if ((system && sys == NULL) || (parameters && par == NULL)) {
        free(sys);
        free(par);
        return -ENOMEM;
    }
    free(m->system);
    free(m->parameters);
    m->system = sys;
    m->parameters = par;
    m->param_num_ctx = param_num_ctx;
    return 0;
}

static struct sim_model *
model_alloc(const char *name, const char *family, const char *psize,
            const char *quant)
{
    struct sim_model *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->name = strdup(name);
    m->family = strdup(family);
    m->parameter_size = strdup(psize);
    m->quantization = strdup(quant);
    if (!m->name || !m->family || !m->parameter_size || !m->quantization) {
        model_free(m);
        return NULL;
    }
    return m;
}

/* Turns what the user said into a model: registry shape or derived
 * values first, the user's values over them, then sizes re-derived. */
static struct sim_model *
build_finish(const struct build *b)
{
    const struct reg_entry *e = registry_find(b->name);
    char family[64], psize[24];
    const char *quant = CATALOG_DEFAULT_QUANT;
    double params = 7.0, active = 7.0;
    uint64_t size;
    uint32_t ctx = 32768, embed_len;
    unsigned caps = SIM_CAP_COMPLETION;
    bool embed_name = contains_ci(b->name, "embed");
    struct sim_model *m;

    if (e != NULL) {
        snprintf(family, sizeof(family), "%s", e->family);
        snprintf(psize, sizeof(psize), "%s", e->parameter_size);
        quant = e->quant;
        params = e->params_b;
        active = e->active_b;
        size = e->size;
        ctx = e->ctx;
        embed_len = e->embed_len;
        caps = e->caps;
    } else {
        if (embed_name) {
            caps = SIM_CAP_EMBEDDING;
            params = active = 0.137;
            quant = "F16";
            ctx = 8192;
        }
        derive_from_name(b->name, &params, &active, &quant);
        derive_family(b->name, family, sizeof(family));
        format_params(params, psize, sizeof(psize));
        size = size_from_params(params, quant);
        embed_len = embed_len_from_params(params);
    }
    if (b->has_quant)
        quant = b->quant;
    if (b->has_params) {
        params = b->params_b;
        active = b->active_b;
        format_params(params, psize, sizeof(psize));
        if (!b->has_embed_len && e == NULL)
            embed_len = embed_len_from_params(params);
    }
    if (b->has_size) {
        size = b->size;
        if (!b->has_params && e == NULL) {
            params = active = params_from_size(size, quant);
            format_params(params, psize, sizeof(psize));
            if (!b->has_embed_len)
                embed_len = embed_len_from_params(params);
        }
    } else if (b->has_params || b->has_quant) {
        size = size_from_params(params, quant);
    }
    if (b->has_family)
        snprintf(family, sizeof(family), "%s", b->family);
    if (b->has_ctx)
        ctx = b->ctx;
    if (b->has_embed_len)
        embed_len = b->embed_len;
    if (b->has_caps)
        caps = b->caps;
    /* "embed" makes an embedding model, which cannot complete. */
    if (b->caps_add & SIM_CAP_EMBEDDING)
        caps &= ~(unsigned)SIM_CAP_COMPLETION;
    caps = (caps | b->caps_add) & ~b->caps_del;

    m = model_alloc(b->name, family, psize, quant);
    if (m == NULL)
        return NULL;
    m->params_b = params;
    m->active_b = active > params ? params : active;
    m->size = size;
    m->context_length = ctx;
    m->embedding_length = embed_len;
    m->caps = caps;
    make_digest(m->name, m->size, m->digest);
    m->modified_ns = clock_wall_ns();
    return m;
}

/* ---- the catalogue ---- */

void
catalog_init(struct sim_catalog *c)
{
    memset(c, 0, sizeof(*c));
}

void
catalog_cleanup(struct sim_catalog *c)
{
    for (size_t i = 0; i < c->n; i++)
        model_free(c->models[i]);
    for (size_t i = 0; i < c->n_removed; i++)
        model_free(c->removed[i]);
    free(c->models);
    free(c->removed);
    memset(c, 0, sizeof(*c));
}

static int
ptr_push(struct sim_model ***arr, size_t *n, size_t *cap, struct sim_model *m)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct sim_model **p = realloc(*arr, nc * sizeof(*p));

        if (p == NULL)
            return -ENOMEM;
        *arr = p;
        *cap = nc;
    }
    (*arr)[(*n)++] = m;
    return 0;
}

static ssize_t
catalog_index(const struct sim_catalog *c, const char *norm)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcasecmp(c->models[i]->name, norm) == 0)
            return (ssize_t)i;
    return -1;
}

/* Moves models[i] to the removed list. The removed array is grown first
 * so that a failure leaves everything as it was. */
static int
catalog_retire(struct sim_catalog *c, size_t i)
{
    struct sim_model *m = c->models[i];
    int rc = ptr_push(&c->removed, &c->n_removed, &c->cap_removed, m);

    if (rc != 0)
        return rc;
    memmove(&c->models[i], &c->models[i + 1],
            (c->n - i - 1) * sizeof(c->models[0]));
    c->n--;
    return 0;
}

/* Adds m (taking it), replacing a model of the same name. */
static int
catalog_put(struct sim_catalog *c, struct sim_model *m)
{
    ssize_t i = catalog_index(c, m->name);
    int rc;

    if (i < 0 && c->n >= CATALOG_MAX_MODELS) {
        model_free(m);
        return -ENOSPC;
    }
    /* Reserve the slot first: after the retire nothing may fail. */
    rc = ptr_push(&c->models, &c->n, &c->cap, m);
    if (rc != 0) {
        model_free(m);
        return rc;
    }
    c->n--;
    if (i >= 0 && catalog_retire(c, (size_t)i) != 0) {
        model_free(m);
        return -ENOMEM;
    }
    c->models[c->n++] = m;
    return 0;
}

/* A removed model of that name (and digest, when given) comes back. */
static struct sim_model *
catalog_revive(struct sim_catalog *c, const char *norm, const char *digest)
{
    for (size_t i = 0; i < c->n_removed; i++) {
        struct sim_model *m = c->removed[i];

        if (strcasecmp(m->name, norm) != 0 ||
            (digest != NULL && strcmp(m->digest, digest) != 0))
            continue;
        if (ptr_push(&c->models, &c->n, &c->cap, m) != 0)
            return NULL;
        memmove(&c->removed[i], &c->removed[i + 1],
                (c->n_removed - i - 1) * sizeof(c->removed[0]));
        c->n_removed--;
        m->modified_ns = clock_wall_ns();
        return m;
    }
    return NULL;
}

int
catalog_add_defaults(struct sim_catalog *c)
{
    size_t n = sizeof(catalog_default_names) / sizeof(catalog_default_names[0]);
    int64_t now = clock_wall_ns();

    for (size_t i = 0; i < n; i++) {
        struct build b;
        struct sim_model *m;
        int rc;

        memset(&b, 0, sizeof(b));
        snprintf(b.name, sizeof(b.name), "%s", catalog_default_names[i]);
        m = build_finish(&b);
        if (m == NULL)
            return -ENOMEM;
        /* Staggered install times give /api/tags a stable order. */
        m->modified_ns = now - (int64_t)i * 3600 * NS_PER_SEC;
        rc = catalog_put(c, m);
        if (rc != 0)
            return rc;
    }
    return 0;
}

struct sim_model *
catalog_find(const struct sim_catalog *c, const char *name)
{
    char norm[CATALOG_NAME_MAX];
    ssize_t i;

    if (name == NULL || model_name_normalize(name, norm, sizeof(norm)) != 0)
        return NULL;
    i = catalog_index(c, norm);
    return i < 0 ? NULL : c->models[i];
}

int
catalog_remove(struct sim_catalog *c, const char *name)
{
    char norm[CATALOG_NAME_MAX];
    ssize_t i;

    if (name == NULL || model_name_normalize(name, norm, sizeof(norm)) != 0)
        return -EINVAL;
    i = catalog_index(c, norm);
    if (i < 0)
        return -ENOENT;
    return catalog_retire(c, (size_t)i);
}

int
catalog_copy(struct sim_catalog *c, const char *src, const char *dst)
{
    char norm[CATALOG_NAME_MAX];
    struct sim_model *s, *m;

    if (src == NULL || dst == NULL ||
        model_name_normalize(dst, norm, sizeof(norm)) != 0)
        return -EINVAL;
    s = catalog_find(c, src);
    if (s == NULL)
        return -ENOENT;
    if (strcasecmp(s->name, norm) == 0)
        return 0;
    if (catalog_index(c, norm) < 0) {
        if (c->n >= CATALOG_MAX_MODELS)
            return -ENOSPC;
        /* A copy shares the manifest, so it keeps the digest (as
         * Ollama); a deleted copy with that digest comes back. */
        if (catalog_revive(c, norm, s->digest) != NULL)
            return 0;
    }
    m = model_alloc(norm, s->family, s->parameter_size, s->quantization);
    if (m == NULL)
        return -ENOMEM;
    m->params_b = s->params_b;
    m->active_b = s->active_b;
    m->size = s->size;
    m->context_length = s->context_length;
    m->embedding_length = s->embedding_length;
    m->caps = s->caps;
    memcpy(m->digest, s->digest, sizeof(m->digest));
    m->modified_ns = clock_wall_ns();
    if (catalog_set_modelfile(m, s->system, s->parameters, s->param_num_ctx) !=
        0) {
        model_free(m);
        return -ENOMEM;
    }
    return catalog_put(c, m);
}

static bool
name_not_found(const char *norm)
{
    const char *model, *tag;
    size_t mlen;

    name_split(norm, &model, &mlen, &tag);
    return strncasecmp(model, "missing", 7) == 0 ||
           strncasecmp(model, "nonexistent", 11) == 0;
}

int
catalog_pull(struct sim_catalog *c, const char *name,
             const struct sim_model **out)
{
    struct build b;
    struct sim_model *m;
    ssize_t i;
    int rc;

    memset(&b, 0, sizeof(b));
    if (name == NULL || model_name_normalize(name, b.name, sizeof(b.name)) != 0)
        return -EINVAL;
    if (name_not_found(b.name))
        return -ENOENT;
    i = catalog_index(c, b.name);
    if (i >= 0) {
        c->models[i]->modified_ns = clock_wall_ns();
        if (out)
            *out = c->models[i];
        return 0;
    }
    if (c->n >= CATALOG_MAX_MODELS)
        return -ENOSPC;
    m = catalog_revive(c, b.name, NULL);
    if (m == NULL) {
        m = build_finish(&b);
        if (m == NULL)
            return -ENOMEM;
        rc = catalog_put(c, m);
        if (rc != 0)
            return rc;
    }
    if (out)
        *out = m;
    return 0;
}

void
catalog_purge_removed(struct sim_catalog *c,
                      bool (*in_use)(const struct sim_model *, void *),
                      void *ud)
{
    size_t j = 0;

    for (size_t i = 0; i < c->n_removed; i++) {
        if (in_use != NULL && in_use(c->removed[i], ud))
            c->removed[j++] = c->removed[i];
        else
            model_free(c->removed[i]);
    }
    c->n_removed = j;
}

/* ---- SPEC strings and the JSON file ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    HERD_PRINTF(3, 4);

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
cap_lookup(const char *s, unsigned *bit)
{
    for (size_t i = 0;
         i < sizeof(catalog_cap_names) / sizeof(catalog_cap_names[0]); i++) {
        if (strcasecmp(catalog_cap_names[i].name, s) == 0) {
            *bit = catalog_cap_names[i].bit;
            return 0;
        }
    }
    return -EINVAL;
}

/* A flag (as in a SPEC, or a JSON boolean): on adds, off removes. */
static int
build_flag(struct build *b, const char *key, bool on)
{
    unsigned bit;

    if (strcasecmp(key, "embed") == 0) {
        bit = SIM_CAP_EMBEDDING;
    } else if (strcasecmp(key, "notools") == 0) {
        bit = SIM_CAP_TOOLS;
        on = !on;
    } else if (cap_lookup(key, &bit) != 0 ||
               strcasecmp(key, "embedding") == 0 ||
               strcasecmp(key, "completion") == 0) {
        return -EINVAL;
    }
    if (on) {
        b->caps_add |= bit;
        b->caps_del &= ~bit;
    } else {
        b->caps_del |= bit;
        b->caps_add &= ~bit;
    }
    return 0;
}

static int
parse_u32_val(const char *v, uint32_t min, uint32_t *out)
{
    uint64_t x;

    if (parse_u64(v, min, UINT32_MAX, &x, NULL) != 0)
        return -EINVAL;
    *out = (uint32_t)x;
    return 0;
}

/* One key=value; *what names the key for the error message. */
static int
build_kv(struct build *b, const char *key, const char *val, const char **what)
{
    *what = key;
    if (strcasecmp(key, "size") == 0) {
        if (parse_size(val, &b->size, NULL) != 0 || b->size == 0)
            return -EINVAL;
        b->has_size = true;
    } else if (strcasecmp(key, "params") == 0) {
        if (catalog_parse_params(val, &b->params_b, &b->active_b) != 0)
            return -EINVAL;
        b->has_params = true;
    } else if (strcasecmp(key, "quant") == 0) {
        const char *canon;

        if (modelname_quant(val, strlen(val), &canon, NULL) != 0)
            return -EINVAL;
        snprintf(b->quant, sizeof(b->quant), "%s", canon);
        b->has_quant = true;
    } else if (strcasecmp(key, "family") == 0) {
        size_t n = strlen(val);

        if (n == 0 || n >= sizeof(b->family))
            return -EINVAL;
        for (size_t i = 0; i < n; i++)
            if (!name_char_ok(val[i], true, false))
                return -EINVAL;
        memcpy(b->family, val, n + 1);
        b->has_family = true;
    } else if (strcasecmp(key, "ctx") == 0) {
        if (parse_u32_val(val, 4, &b->ctx) != 0)
            return -EINVAL;
        b->has_ctx = true;
    } else if (strcasecmp(key, "embed_len") == 0) {
        if (parse_u32_val(val, 1, &b->embed_len) != 0 || b->embed_len > 65536)
            return -EINVAL;
        b->has_embed_len = true;
    } else {
        *what = NULL;
        return -ENOENT;
    }
    return 0;
}

static int
build_from_spec(const char *spec, struct build *b, char *err, size_t errlen)
{
    char tmp[CATALOG_MAX_SPEC + 1];
    char *p, *comma;
    size_t n = spec ? strnlen(spec, CATALOG_MAX_SPEC + 1) : 0;

    memset(b, 0, sizeof(*b));
    if (n == 0 || n > CATALOG_MAX_SPEC) {
        seterr(err, errlen, "bad model spec '%.64s'%s", spec ? spec : "",
               n ? "...: too long" : ": empty");
        return -EINVAL;
    }
    memcpy(tmp, spec, n + 1);
    comma = strchr(tmp, ',');
    if (comma)
        *comma = '\0';
    if (model_name_normalize(tmp, b->name, sizeof(b->name)) != 0) {
        seterr(err, errlen, "invalid model name '%s' in spec '%s'", tmp, spec);
        return -EINVAL;
    }
    for (p = comma ? comma + 1 : NULL; p != NULL;
         p = comma ? comma + 1 : NULL) {
        char *eq, msg[128];
        const char *what = NULL;
        int rc;

        comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p == '\0')
            continue;
        eq = strchr(p, '=');
        if (eq == NULL) {
            if (build_flag(b, p, true) != 0) {
                seterr(err, errlen, "unknown flag '%s' in spec '%s'", p, spec);
                return -EINVAL;
            }
            continue;
        }
        *eq = '\0';
        rc = build_kv(b, p, eq + 1, &what);
        if (rc == -ENOENT) {
            seterr(err, errlen, "unknown key '%s' in spec '%s'", p, spec);
            return -EINVAL;
        }
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "bad %s '%.64s'", what, eq + 1);
            seterr(err, errlen, "%s in spec '%s'", msg, spec);
            return -EINVAL;
        }
    }
    return 0;
}

int
catalog_add_spec(struct sim_catalog *c, const char *spec, char *err,
                 size_t errlen)
{
    struct build b;
    struct sim_model *m;
    int rc = build_from_spec(spec, &b, err, errlen);

    if (rc != 0)
        return rc;
    m = build_finish(&b);
    if (m == NULL) {
        seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = catalog_put(c, m);
    if (rc == -ENOSPC)
        seterr(err, errlen, "too many models (at most %d)", CATALOG_MAX_MODELS);
    return rc;
}

/* A JSON value as the string a SPEC would carry. */
static int
json_scalar(const cJSON *v, char *out, size_t n)
{
    if (cJSON_IsString(v) && v->valuestring != NULL) {
        if (strlen(v->valuestring) >= n)
            return -EINVAL;
        snprintf(out, n, "%s", v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        if (!isfinite(d) || d < 0 || d > 1e18)
            return -EINVAL;
        if (d == floor(d))
            snprintf(out, n, "%.0f", d);
        else
            snprintf(out, n, "%.6g", d);
        return 0;
    }
    return -EINVAL;
}

static int
build_from_json(const cJSON *o, size_t idx, struct build *b, char *err,
                size_t errlen)
{
    static const struct {
        const char *json, *key;
    } alias[] = {
        {"size", "size"},
        {"params", "params"},
        {"parameters", "params"},
        {"parameter_size", "params"},
        {"quant", "quant"},
        {"quantization", "quant"},
        {"quantization_level", "quant"},
        {"family", "family"},
        {"ctx", "ctx"},
        {"context_length", "ctx"},
        {"embed_len", "embed_len"},
        {"embedding_length", "embed_len"},
    };
    static const char *const flags[] = {"embed",  "tools",  "thinking",
                                        "vision", "insert", "notools"};
    const char *name = json_get_str(o, "name");
    const cJSON *caps, *it;
    char where[48];

    memset(b, 0, sizeof(*b));
    snprintf(where, sizeof(where), "entry %zu", idx);
    if (!cJSON_IsObject(o) || name == NULL) {
        seterr(err, errlen, "%s: %s", where, "an object with a \"name\"");
        return -EINVAL;
    }
    if (model_name_normalize(name, b->name, sizeof(b->name)) != 0) {
        seterr(err, errlen, "%s: invalid model name '%.200s'", where, name);
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, alias[i].json);
        char val[64];
        const char *what;

        if (v == NULL || cJSON_IsNull(v))
            continue;
        if (json_scalar(v, val, sizeof(val)) != 0 ||
            build_kv(b, alias[i].key, val, &what) != 0) {
            seterr(err, errlen, "%s: bad \"%s\"", where, alias[i].json);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, flags[i]);

        if (v == NULL)
            continue;
        if (!cJSON_IsBool(v)) {
            seterr(err, errlen, "%s: \"%s\" must be a boolean", where,
                   flags[i]);
            return -EINVAL;
        }
        (void)build_flag(b, flags[i], cJSON_IsTrue(v));
    }
    caps = cJSON_GetObjectItemCaseSensitive(o, "capabilities");
    if (caps != NULL) {
        if (!cJSON_IsArray(caps)) {
            seterr(err, errlen, "%s: %s", where,
                   "\"capabilities\" must be an array");
            return -EINVAL;
        }
        b->has_caps = true;
        b->caps = 0;
        cJSON_ArrayForEach(it, caps)
        {
            unsigned bit;

            if (!cJSON_IsString(it) || cap_lookup(it->valuestring, &bit)) {
                seterr(err, errlen, "%s: unknown capability in %s", where,
                       "\"capabilities\"");
                return -EINVAL;
            }
            b->caps |= bit;
        }
    }
    return 0;
}

int
catalog_load_file(struct sim_catalog *c, const char *path, char *err,
                  size_t errlen)
{
    char *text = NULL, jerr[128];
    size_t len = 0, n = 0, i = 0;
    cJSON *root = NULL;
    const cJSON *it;
    struct sim_model **tmp = NULL;
    int rc;

    rc = fs_read_file(path, CATALOG_MAX_FILE, &text, &len);
    if (rc != 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: %s", path,
                     rc == -E2BIG ? "file too large" : strerror(-rc));
        goto out;
    }
    rc = json_parse(text, len, CATALOG_JSON_DEPTH, &root, jerr, sizeof(jerr));
    if (rc != 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: %s", path, jerr);
        rc = -EINVAL;
        goto out;
    }
    if (!cJSON_IsArray(root)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: expected an array of models", path);
        rc = -EINVAL;
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(root);
    if (n > CATALOG_MAX_MODELS) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: too many models", path);
        rc = -EINVAL;
        goto out;
    }
    tmp = calloc(n ? n : 1, sizeof(*tmp));
    if (tmp == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* Everything is validated before anything is added. */
    cJSON_ArrayForEach(it, root)
    {
        struct build b;
        char msg[256];

        rc = build_from_json(it, i, &b, msg, sizeof(msg));
        if (rc != 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s: %s", path, msg);
            goto out;
        }
        tmp[i] = build_finish(&b);
        if (tmp[i] == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        i++;
    }
    for (size_t k = 0; k < n; k++) {
        rc = catalog_put(c, tmp[k]);
        tmp[k] = NULL;
        if (rc != 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s: %s", path, strerror(-rc));
            goto out;
        }
    }
    rc = 0;
out:
    if (tmp != NULL)
        for (size_t k = 0; k < n; k++)
            model_free(tmp[k]);
    free(tmp);
    cJSON_Delete(root);
    free(text);
    return rc;
}
