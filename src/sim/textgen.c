/*
 * textgen.c - deterministic tokens, text, JSON, tool calls and embeddings.
 *
 * Everything here is a pure function of its input: a request's seed
 * drives a splitmix64 stream, so the same request always produces the
 * same answer and tests can compare exact output. Generated text is
 * built as pieces that are tokens of textgen_tokenize() themselves, so
 * that "prompt + generated" re-tokenises to the same ids the scheduler
 * cached (prefix caching then behaves as in Ollama). JSON output is
 * printed with cJSON and cut into tokens by the same tokenizer.
 */
#include "textgen.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Caps: schemas and tool definitions come from the client. */
#define TEXTGEN_MAX_DEPTH    8    /* nesting of generated JSON */
#define TEXTGEN_MAX_NODES    512  /* values in one generated document */
#define TEXTGEN_MAX_PROPS    64   /* properties generated per object */
#define TEXTGEN_MAX_ITEMS    8    /* elements per generated array */
#define TEXTGEN_MAX_STOP_LEN 4096 /* longer stop strings are ignored */
#define TEXTGEN_EMBED_TOKENS 8192 /* tokens an embedding looks at */
#define TEXTGEN_MIN_NATURAL  8
#define TEXTGEN_MAX_NATURAL  64
#define TEXTGEN_THINK_MIN    8
#define TEXTGEN_THINK_MAX    48

static const char *const textgen_words[] = {
    "the",     "model",   "answer", "data",    "system", "simple",   "we",
    "can",     "see",     "that",   "this",    "is",     "a",        "good",
    "way",     "to",      "think",  "about",   "it",     "and",      "there",
    "are",     "many",    "ways",   "of",      "doing",  "so",       "each",
    "step",    "in",      "order",  "should",  "be",     "clear",    "when",
    "you",     "work",    "with",   "local",   "models", "on",       "your",
    "own",     "machine", "speed",  "depends", "memory", "for",      "most",
    "tasks",   "small",   "fast",   "large",   "better", "results",  "request",
    "server",  "time",    "tokens", "context", "first",  "then",     "next",
    "finally", "also",    "often",  "helps",   "keep",   "short",    "long",
    "value",   "number",  "list",   "example", "idea",   "question", "people",
    "use",     "text",    "code",   "output",  "input",  "world",    "day",
    "make",    "sure",    "every",  "part",    "works",  "well",     "here",
    "is",      "one",     "more",   "thing",   "note",   "because",  "while",
    "after",   "before",  "under",  "over",    "light",  "water",    "river",
    "city",    "green",   "quiet",
};

#define TEXTGEN_NWORDS (sizeof(textgen_words) / sizeof(textgen_words[0]))

static const char *const textgen_json_keys[] = {
    "answer", "result", "summary", "value", "status", "confidence", "items",
};

/* ---- hashing and random numbers ---- */

uint64_t
textgen_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint32_t
textgen_fnv32(const char *s, size_t n)
{
    uint32_t h = 0x811c9dc5u;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x01000193u;
    }
    return h;
}

/* splitmix64: tiny, fast, and every seed (0 included) is fine. */
static uint64_t
rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t
rng_range(uint64_t *state, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(state) % (uint64_t)(hi - lo + 1));
}

/* ---- the tokenizer ---- */

static bool
tok_letter(unsigned char c)
{
    /* Bytes of multi-byte UTF-8 characters join words. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static bool
tok_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool
tok_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static size_t
tok_run(const char *s, size_t len, size_t i, bool (*cls)(unsigned char))
{
    while (i < len && cls((unsigned char)s[i]))
        i++;
    return i;
}

/*
 * End of the token that starts at s[i]: a space and the word or digit
 * run after it, a word, a digit run, a run of whitespace (without its
 * last character when that is a space before a word), or one other
 * byte. Only a space joins the next word, so a prompt that ends in a
 * newline (as chat templates do) is a token prefix of prompt + answer.
 */
static size_t
tok_end(const char *s, size_t len, size_t i)
{
    unsigned char c = (unsigned char)s[i];

    if (tok_space(c)) {
        size_t j = tok_run(s, len, i, tok_space);
        unsigned char n = j < len ? (unsigned char)s[j] : 0;

        if (j < len && s[j - 1] == ' ' && (tok_letter(n) || tok_digit(n))) {
            if (j - i > 1)
                return j - 1;
            return tok_run(s, len, j, tok_letter(n) ? tok_letter : tok_digit);
        }
        return j;
    }
    if (tok_letter(c))
        return tok_run(s, len, i, tok_letter);
    if (tok_digit(c))
        return tok_run(s, len, i, tok_digit);
    return i + 1;
}

size_t
textgen_tokenize(const char *s, size_t len, uint32_t *ids, size_t max)
{
    size_t count = 0;

    for (size_t i = 0; i < len;) {
        size_t e = tok_end(s, len, i);

        if (ids != NULL && count < max)
            ids[count] = textgen_fnv32(s + i, e - i);
        count++;
        i = e;
    }
    return count;
}

/* ---- pieces ---- */

struct pieces {
    char **v; /* owned, each owned */
    size_t n, cap;
};

static int
pieces_push(struct pieces *pv, const char *s, size_t n)
{
    char *p;

    if (pv->n == pv->cap) {
        size_t nc = pv->cap ? pv->cap * 2 : 32;
        char **v = realloc(pv->v, nc * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        pv->v = v;
        pv->cap = nc;
    }
    p = malloc(n + 1);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p, s, n);
    p[n] = '\0';
    pv->v[pv->n++] = p;
    return 0;
}

static void
pieces_truncate(struct pieces *pv, size_t n)
{
    while (pv->n > n)
        free(pv->v[--pv->n]);
}

static void
pieces_free(struct pieces *pv)
{
    pieces_truncate(pv, 0);
    free(pv->v);
    pv->v = NULL;
    pv->cap = 0;
}

/* Cuts text into tokens and appends them as pieces. */
static int
pieces_from_text(struct pieces *pv, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t e = tok_end(s, len, i);
        int rc = pieces_push(pv, s + i, e - i);

        if (rc != 0)
            return rc;
        i = e;
    }
    return 0;
}

/* ---- plain text ---- */

static int
push_word(struct pieces *pv, const char *w, bool space, bool capital)
{
    char tmp[32];
    size_t n = strlen(w);

    if (n + 2 > sizeof(tmp))
        n = sizeof(tmp) - 2;
    tmp[0] = ' ';
    memcpy(tmp + 1, w, n);
    if (capital && tmp[1] >= 'a' && tmp[1] <= 'z')
        tmp[1] = (char)(tmp[1] - 'a' + 'A');
    return space ? pieces_push(pv, tmp, n + 1) : pieces_push(pv, tmp + 1, n);
}

/*
 * Exactly `target` tokens of English-looking sentences: capitalised
 * first words, a comma now and then, and a full stop at the end (a
 * sentence is never closed where only one token would be left over).
 */
static int
gen_sentences(uint64_t *rng, size_t target, struct pieces *pv)
{
    size_t count = 0, in_sentence = 0, sent_len = 0;
    bool comma = false;
    int rc = 0;

    while (rc == 0 && count < target) {
        size_t left = target - count;

        if (in_sentence > 0 &&
            (left == 1 || (in_sentence >= sent_len && left != 2))) {
            rc = pieces_push(pv, ".", 1);
            in_sentence = 0;
        } else if (in_sentence >= 2 && !comma && left > 3 &&
                   in_sentence + 2 < sent_len && rng_next(rng) % 6 == 0) {
            rc = pieces_push(pv, ",", 1);
            comma = true;
        } else {
            if (in_sentence == 0) {
                sent_len = rng_range(rng, 4, 14);
                comma = false;
            }
            rc = push_word(pv, textgen_words[rng_next(rng) % TEXTGEN_NWORDS],
                           count > 0, in_sentence == 0);
            in_sentence++;
        }
        count++;
    }
    return rc;
}

/* ---- JSON values ---- */

static char *
gen_words_str(uint64_t *rng, size_t lo, size_t hi)
{
    char buf[128];
    size_t n = rng_range(rng, lo, hi), pos = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *w = textgen_words[rng_next(rng) % TEXTGEN_NWORDS];
        size_t l = strlen(w);

        if (pos + l + 2 >= sizeof(buf))
            break;
        if (i > 0)
            buf[pos++] = ' ';
        memcpy(buf + pos, w, l);
        pos += l;
        buf[pos] = '\0';
    }
    if (buf[0] >= 'a' && buf[0] <= 'z')
        buf[0] = (char)(buf[0] - 'a' + 'A');
    return strdup(buf);
}

static cJSON *
gen_string(uint64_t *rng, const cJSON *schema)
{
    const char *fmt = schema ? json_get_str(schema, "format") : NULL;
    char *s;
    cJSON *v;

    if (fmt != NULL && strcmp(fmt, "date") == 0)
        return cJSON_CreateString("2024-05-17");
    if (fmt != NULL && strcmp(fmt, "date-time") == 0)
        return cJSON_CreateString("2024-05-17T10:30:00Z");
    if (fmt != NULL && strcmp(fmt, "email") == 0)
        return cJSON_CreateString("user@example.com");
    if (fmt != NULL && (strcmp(fmt, "uri") == 0 || strcmp(fmt, "url") == 0))
        return cJSON_CreateString("https://example.com/");
    s = gen_words_str(rng, 1, 3);
    if (s == NULL)
        return NULL;
    v = cJSON_CreateString(s);
    free(s);
    return v;
}

/* A number within the schema's minimum/maximum, if any. */
static cJSON *
gen_number(uint64_t *rng, const cJSON *schema, bool integer)
{
    double lo = json_get_num(schema, "minimum", 0);
    double hi = json_get_num(schema, "maximum", lo + 100);
    double v;

    if (!isfinite(lo) || !isfinite(hi) || hi < lo)
        hi = lo + 100;
    if (integer) {
        double span = floor(hi) - ceil(lo);

        v = ceil(lo);
        if (span >= 1 && span < 1e15)
            v += (double)(rng_next(rng) % ((uint64_t)span + 1));
    } else {
        v = lo + (hi - lo) * (double)(rng_next(rng) % 10001) / 10000.0;
        v = round(v * 100.0) / 100.0;
    }
    return cJSON_CreateNumber(v);
}

/* The type a schema asks for: "type" (first non-null of an array), or
 * guessed from the keywords present. */
static const char *
schema_type(const cJSON *schema)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(schema, "type");
    const cJSON *it;

    if (cJSON_IsString(t))
        return t->valuestring;
    if (cJSON_IsArray(t)) {
        cJSON_ArrayForEach(it, t)
        {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "null") != 0)
                return it->valuestring;
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(schema, "properties"))
        return "object";
    if (cJSON_GetObjectItemCaseSensitive(schema, "items"))
        return "array";
    return "string";
}

static cJSON *gen_value(uint64_t *rng, const cJSON *schema, int depth,
                        int *budget);

/* An object with every required property (all of them when the schema
 * lists none as required), each of a fitting type. */
static cJSON *
gen_object(uint64_t *rng, const cJSON *schema, int depth, int *budget)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
    cJSON *o = cJSON_CreateObject();
    const cJSON *it;
    int n = 0;

    if (o == NULL)
        return NULL;
    if (!cJSON_IsObject(props))
        props = NULL;
    if (cJSON_IsArray(req)) {
        cJSON_ArrayForEach(it, req)
        {
            const cJSON *ps;
            cJSON *v;

            if (!cJSON_IsString(it) || n++ >= TEXTGEN_MAX_PROPS ||
                cJSON_GetObjectItemCaseSensitive(o, it->valuestring))
                continue;
            ps = props
                     ? cJSON_GetObjectItemCaseSensitive(props, it->valuestring)
                     : NULL;
            v = gen_value(rng, ps, depth + 1, budget);
            if (v == NULL || !cJSON_AddItemToObject(o, it->valuestring, v)) {
                cJSON_Delete(v);
                cJSON_Delete(o);
                return NULL;
            }
        }
        return o;
    }
    if (props != NULL) {
        cJSON_ArrayForEach(it, props)
        {
            cJSON *v;

            if (it->string == NULL || n++ >= TEXTGEN_MAX_PROPS)
                continue;
            v = gen_value(rng, it, depth + 1, budget);
            if (v == NULL || !cJSON_AddItemToObject(o, it->string, v)) {
                cJSON_Delete(v);
                cJSON_Delete(o);
                return NULL;
            }
        }
    }
    return o;
}

static cJSON *
gen_array(uint64_t *rng, const cJSON *schema, int depth, int *budget)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
    double min = json_get_num(schema, "minItems", 1);
    double max = json_get_num(schema, "maxItems", TEXTGEN_MAX_ITEMS);
    cJSON *a = cJSON_CreateArray();
    size_t lo, hi;

    if (a == NULL)
        return NULL;
    if (!(max <= TEXTGEN_MAX_ITEMS))
        max = TEXTGEN_MAX_ITEMS;
    if (!(max >= 0))
        max = 0;
    if (!(min >= 0))
        min = 0;
    if (min > max)
        min = max;
    /* minItems (at least one unless it says 0), sometimes one more. */
    lo = (size_t)min;
    hi = lo + 1 <= (size_t)max ? lo + 1 : lo;
    for (size_t i = 0, n = rng_range(rng, lo, hi); i < n; i++) {
        cJSON *v = gen_value(rng, items, depth + 1, budget);

        if (v == NULL || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* A value fitting schema (NULL or not an object: a string). Past the
 * depth or node caps, values degrade to null so output stays bounded. */
static cJSON *
gen_value(uint64_t *rng, const cJSON *schema, int depth, int *budget)
{
    const cJSON *x;
    const char *type;

    if (depth > TEXTGEN_MAX_DEPTH || *budget <= 0)
        return cJSON_CreateNull();
    (*budget)--;
    if (!cJSON_IsObject(schema))
        return gen_string(rng, NULL);
    x = cJSON_GetObjectItemCaseSensitive(schema, "const");
    if (x != NULL)
        return cJSON_Duplicate(x, true);
    x = cJSON_GetObjectItemCaseSensitive(schema, "enum");
    if (cJSON_IsArray(x) && cJSON_GetArraySize(x) > 0)
        return cJSON_Duplicate(cJSON_GetArrayItem(x, 0), true);
    if (cJSON_GetObjectItemCaseSensitive(schema, "type") == NULL) {
        static const char *const alts[] = {"anyOf", "oneOf", "allOf"};

        for (size_t i = 0; i < sizeof(alts) / sizeof(alts[0]); i++) {
            x = cJSON_GetObjectItemCaseSensitive(schema, alts[i]);
            if (cJSON_IsArray(x) && cJSON_GetArraySize(x) > 0)
                return gen_value(rng, cJSON_GetArrayItem(x, 0), depth + 1,
                                 budget);
        }
    }
    type = schema_type(schema);
    if (strcmp(type, "object") == 0)
        return gen_object(rng, schema, depth, budget);
    if (strcmp(type, "array") == 0)
        return gen_array(rng, schema, depth, budget);
    if (strcmp(type, "integer") == 0)
        return gen_number(rng, schema, true);
    if (strcmp(type, "number") == 0)
        return gen_number(rng, schema, false);
    if (strcmp(type, "boolean") == 0)
        return cJSON_CreateBool(rng_next(rng) & 1);
    if (strcmp(type, "null") == 0)
        return cJSON_CreateNull();
    return gen_string(rng, schema);
}

/* "format": "json" without a schema: a small object of mixed values. */
static cJSON *
gen_json_free(uint64_t *rng)
{
    size_t nkeys = sizeof(textgen_json_keys) / sizeof(textgen_json_keys[0]);
    size_t n = rng_range(rng, 1, 3), start = rng_next(rng) % nkeys;
    cJSON *o = cJSON_CreateObject();

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *k = textgen_json_keys[(start + i) % nkeys];
        cJSON *v;

        if (strcmp(k, "confidence") == 0) {
            v = cJSON_CreateNumber((double)(rng_next(rng) % 100) / 100.0);
        } else if (strcmp(k, "items") == 0) {
            v = cJSON_CreateArray();
            for (size_t j = 0; v != NULL && j < 2; j++)
                cJSON_AddItemToArray(v, gen_string(rng, NULL));
        } else if (strcmp(k, "status") == 0) {
            v = cJSON_CreateString(rng_next(rng) & 1 ? "ok" : "done");
        } else {
            char *s = gen_words_str(rng, 3, 9);

            v = s ? cJSON_CreateString(s) : NULL;
            free(s);
        }
        if (v == NULL || !cJSON_AddItemToObject(o, k, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* Prints v compactly and appends its tokens as pieces. */
static int
pieces_from_json(struct pieces *pv, const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    int rc;

    if (s == NULL)
        return -ENOMEM;
    rc = pieces_from_text(pv, s, strlen(s));
    cJSON_free(s);
    return rc;
}

/* ---- tool calls ---- */

/* The first tool with a function name, or NULL. */
static const cJSON *
first_tool(const cJSON *tools, const char **name)
{
    const cJSON *t;

    if (!cJSON_IsArray(tools))
        return NULL;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *fn = json_get(t, "function");
        const char *n = fn ? json_get_str(fn, "name") : NULL;

        if (n != NULL && *n != '\0') {
            *name = n;
            return fn;
        }
    }
    return NULL;
}

/* [{"function":{"index":0,"name":..,"arguments":{..}}}] and the text the
 * model "generated" for it, {"name":..,"arguments":{..}}. */
static int
gen_tool_call(uint64_t *rng, const cJSON *fn, const char *name, cJSON **calls,
              char **text)
{
    const cJSON *params = json_get(fn, "parameters");
    int budget = TEXTGEN_MAX_NODES;
    cJSON *args = NULL, *call = NULL, *f = NULL, *raw = NULL;
    int rc = -ENOMEM;

    *calls = NULL;
    *text = NULL;
    args = cJSON_IsObject(params) ? gen_object(rng, params, 0, &budget)
                                  : cJSON_CreateObject();
    *calls = cJSON_CreateArray();
    call = cJSON_CreateObject();
    f = cJSON_CreateObject();
    raw = cJSON_CreateObject();
    if (args == NULL || *calls == NULL || call == NULL || f == NULL ||
        raw == NULL)
        goto out;
    if (!cJSON_AddStringToObject(raw, "name", name) ||
        !cJSON_AddItemReferenceToObject(raw, "arguments", args))
        goto out;
    *text = cJSON_PrintUnformatted(raw);
    if (*text == NULL)
        goto out;
    if (!cJSON_AddNumberToObject(f, "index", 0) ||
        !cJSON_AddStringToObject(f, "name", name))
        goto out;
    if (!cJSON_AddItemToObject(f, "arguments", args))
        goto out;
    args = NULL;
    if (!cJSON_AddItemToObject(call, "function", f))
        goto out;
    f = NULL;
    if (!cJSON_AddItemToArray(*calls, call))
        goto out;
    call = NULL;
    rc = 0;
out:
    cJSON_Delete(raw); /* holds only a reference to args */
    cJSON_Delete(args);
    cJSON_Delete(f);
    cJSON_Delete(call);
    if (rc != 0) {
        cJSON_Delete(*calls);
        *calls = NULL;
        cJSON_free(*text);
        *text = NULL;
    }
    return rc;
}

/* ---- stop strings ---- */

/* memmem(), which glibc declares only with _GNU_SOURCE. */
static const char *
find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m == 0 || m > n)
        return NULL;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

/* Ends the content (pieces [from..n)) before the earliest stop string;
 * true when one was found. The piece it starts in keeps its head. */
static bool
apply_stop(const struct textgen_params *p, struct pieces *pv, size_t from)
{
    size_t total = 0, best = SIZE_MAX, pos = 0;
    char *text;

    if (p->stop == NULL || p->n_stop == 0 || pv->n == from)
        return false;
    for (size_t i = from; i < pv->n; i++)
        total += strlen(pv->v[i]);
    text = malloc(total + 1);
    if (text == NULL)
        return false;
    for (size_t i = from; i < pv->n; i++) {
        size_t l = strlen(pv->v[i]);

        memcpy(text + pos, pv->v[i], l);
        pos += l;
    }
    text[total] = '\0';
    for (size_t k = 0; k < p->n_stop; k++) {
        const char *st = p->stop[k];
        size_t sl = st ? strnlen(st, TEXTGEN_MAX_STOP_LEN + 1) : 0;
        const char *hit;

        if (sl == 0 || sl > TEXTGEN_MAX_STOP_LEN)
            continue;
        hit = find_bytes(text, total, st, sl);
        if (hit != NULL && (size_t)(hit - text) < best)
            best = (size_t)(hit - text);
    }
    free(text);
    if (best == SIZE_MAX)
        return false;
    pos = 0;
    for (size_t i = from; i < pv->n; i++) {
        size_t l = strlen(pv->v[i]);

        if (pos + l > best) {
            size_t keep = best - pos;

            pv->v[i][keep] = '\0';
            pieces_truncate(pv, keep > 0 ? i + 1 : i);
            break;
        }
        pos += l;
    }
    return true;
}

/* ---- plans ---- */

int
textgen_plan_make(const struct textgen_params *p, struct textgen_plan *out)
{
    struct pieces pv = {0};
    uint64_t rng = p->seed ^ 0x5deece66dull, rng_think;
    size_t limit = SIZE_MAX, n_think = 0;
    const char *tool_name = NULL;
    const cJSON *fn = NULL;
    cJSON *calls = NULL, *doc = NULL;
    char *call_text = NULL;
    const char *reason = "stop";
    int rc = 0;

    memset(out, 0, sizeof(*out));
    (void)rng_next(&rng);
    rng_think = rng_next(&rng);
    if (p->num_predict >= 0)
        limit = (size_t)p->num_predict;
    if ((size_t)p->ctx_left < limit)
        limit = p->ctx_left;

    if (p->think) {
        rc = gen_sentences(
            &rng_think,
            rng_range(&rng_think, TEXTGEN_THINK_MIN, TEXTGEN_THINK_MAX), &pv);
        if (rc != 0)
            goto out;
        n_think = pv.n;
    }
    if (p->tool_calls)
        fn = first_tool(p->tools, &tool_name);
    if (fn != NULL) {
        size_t ntok;

        rc = gen_tool_call(&rng, fn, tool_name, &calls, &call_text);
        if (rc != 0)
            goto out;
        ntok = textgen_tokenize(call_text, strlen(call_text), NULL, 0);
        if (n_think + ntok <= limit) {
            out->tool_calls = calls;
            out->tool_call_tokens = ntok;
            calls = NULL;
        } else {
            /* Cut short, the call cannot be parsed: it stays content,
             * as a real model's truncated output would. */
            rc = pieces_from_text(&pv, call_text, strlen(call_text));
            if (rc != 0)
                goto out;
        }
    } else if (p->format == TEXTGEN_PLAIN) {
        rc = gen_sentences(
            &rng, rng_range(&rng, TEXTGEN_MIN_NATURAL, TEXTGEN_MAX_NATURAL),
            &pv);
    } else {
        int budget = TEXTGEN_MAX_NODES;

        doc = p->format == TEXTGEN_SCHEMA && cJSON_IsObject(p->schema)
                  ? gen_value(&rng, p->schema, 0, &budget)
                  : gen_json_free(&rng);
        rc = doc ? pieces_from_json(&pv, doc) : -ENOMEM;
    }
    if (rc != 0)
        goto out;
    if (out->tool_calls == NULL)
        (void)apply_stop(p, &pv, n_think);
    if (pv.n > limit) {
        pieces_truncate(&pv, limit);
        reason = "length";
        if (n_think > limit)
            n_think = limit;
    }
    out->pieces = pv.v;
    out->n_pieces = pv.n;
    out->n_think = n_think;
    out->done_reason = reason;
    pv = (struct pieces){0}; /* moved into out */
out:
    pieces_free(&pv);
    cJSON_Delete(calls);
    cJSON_Delete(doc);
    cJSON_free(call_text);
    if (rc != 0)
        textgen_plan_free(out);
    return rc;
}

void
textgen_plan_free(struct textgen_plan *pl)
{
    if (pl == NULL)
        return;
    for (size_t i = 0; i < pl->n_pieces; i++)
        free(pl->pieces[i]);
    free(pl->pieces);
    cJSON_Delete(pl->tool_calls);
    memset(pl, 0, sizeof(*pl));
}

/* ---- embeddings ---- */

/*
 * A bag of token vectors: each token id seeds a random vector in
 * [-1, 1]^dims and the text's embedding is their sum, so the same text
 * always embeds the same way and texts sharing words come out close
 * (cosine similarity behaves plausibly for tests of retrieval).
 */
void
textgen_embed(const char *text, size_t len, uint32_t dims, bool normalize,
              double *out)
{
    size_t ntok = 0;
    double norm = 0;

    if (dims == 0)
        return;
    memset(out, 0, dims * sizeof(*out));
    for (size_t i = 0; i < len && ntok < TEXTGEN_EMBED_TOKENS; ntok++) {
        size_t e = tok_end(text, len, i);
        uint64_t st = textgen_hash(text + i, e - i);

        for (uint32_t d = 0; d < dims; d++)
            out[d] += (double)(rng_next(&st) >> 11) * 0x1.0p-52 - 1.0;
        i = e;
    }
    if (ntok == 0) {
        uint64_t st = textgen_hash("", 0);

        for (uint32_t d = 0; d < dims; d++)
            out[d] = (double)(rng_next(&st) >> 11) * 0x1.0p-52 - 1.0;
        ntok = 1;
    }
    for (uint32_t d = 0; d < dims; d++) {
        out[d] /= sqrt((double)ntok);
        norm += out[d] * out[d];
    }
    if (normalize && norm > 0) {
        norm = sqrt(norm);
        for (uint32_t d = 0; d < dims; d++)
            out[d] /= norm;
    }
}
