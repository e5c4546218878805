/*
 * fault.c - fault rules: parsing, matching and consumption.
 */
#include "fault.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herd/parse.h"

static const char *const fault_names[FAULT_KIND_COUNT] = {
    "none", "refuse", "500", "503", "hang", "die_after", "error_after", "slow",
};

const char *
fault_kind_name(enum fault_kind k)
{
    return k < FAULT_KIND_COUNT ? fault_names[k] : "?";
}

static int
fault_kind_parse(const char *s, size_t n, enum fault_kind *out)
{
    static const struct {
        const char *name;
        enum fault_kind kind;
    } names[] = {
        {"none", FAULT_NONE},
        {"refuse", FAULT_REFUSE},
        {"500", FAULT_HTTP500},
        {"503", FAULT_BUSY503},
        {"busy", FAULT_BUSY503},
        {"hang", FAULT_HANG},
        {"die-after", FAULT_DIE_AFTER},
        {"die_after", FAULT_DIE_AFTER},
        {"error-after", FAULT_ERROR_AFTER},
        {"error_after", FAULT_ERROR_AFTER},
        {"slow", FAULT_SLOW},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == n && strncmp(names[i].name, s, n) == 0) {
            *out = names[i].kind;
            return 0;
        }
    }
    return -EINVAL;
}

static void
fault_defaults(struct fault *f, enum fault_kind kind)
{
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->count = -1;
    f->factor = 1.0;
    if (kind == FAULT_REFUSE)
        f->duration_ns = 2000LL * 1000000LL;
}

/* The argument after "kind:" in a SPEC. */
static int
fault_spec_arg(struct fault *f, const char *arg, char *err, size_t errlen)
{
    const char *why = NULL;
    char tmp[64];
    size_t n = strlen(arg);
    int64_t v;
    double d;

    switch (f->kind) {
    case FAULT_REFUSE:
    case FAULT_HANG:
        if (parse_duration_or_secs(arg, &f->duration_ns, &why) != 0)
            goto bad;
        return 0;
    case FAULT_DIE_AFTER:
    case FAULT_ERROR_AFTER:
        if (parse_i64(arg, 0, 1000000, &v, &why) != 0)
            goto bad;
        f->after = v;
        return 0;
    case FAULT_SLOW:
        if (n == 0 || n >= sizeof(tmp))
            goto bad;
        memcpy(tmp, arg, n + 1);
        if (tmp[n - 1] == 'x')
            tmp[n - 1] = '\0';
        if (parse_double(tmp, 1.0, 100000.0, &d, &why) != 0)
            goto bad;
        f->factor = d;
        return 0;
    default:
        snprintf(err, errlen, "fault '%s' takes no argument",
                 fault_kind_name(f->kind));
        return -EINVAL;
    }
bad:
    snprintf(err, errlen, "fault %s: bad argument '%s'%s%s",
             fault_kind_name(f->kind), arg, why ? ": " : "", why ? why : "");
    return -EINVAL;
}

static int
fault_spec_option(struct fault *f, const char *opt, char *err, size_t errlen)
{
    const char *why = NULL;
    int64_t v;

    if (strncmp(opt, "count=", 6) == 0) {
        if (parse_i64(opt + 6, 1, INT32_MAX, &v, &why) != 0) {
            snprintf(err, errlen, "fault count '%s': %s", opt + 6, why);
            return -EINVAL;
        }
        f->count = v;
        return 0;
    }
    if (strncmp(opt, "model=", 6) == 0) {
        if (strlen(opt + 6) >= sizeof(f->model)) {
            snprintf(err, errlen, "fault model name too long");
            return -EINVAL;
        }
        memcpy(f->model, opt + 6, strlen(opt + 6) + 1);
        return 0;
    }
    snprintf(err, errlen, "unknown fault option '%s'", opt);
    return -EINVAL;
}

int
fault_parse_spec(const char *spec, struct fault *out, char *err, size_t errlen)
{
    char copy[256];
    char *opts, *arg, *tok, *next;
    enum fault_kind kind;
    size_t klen;
    int rc;

    if (strlen(spec) >= sizeof(copy)) {
        snprintf(err, errlen, "fault spec too long");
        return -EINVAL;
    }
    memcpy(copy, spec, strlen(spec) + 1);
    opts = strchr(copy, ',');
    if (opts != NULL)
        *opts++ = '\0';
    arg = strchr(copy, ':');
    if (arg != NULL)
        *arg++ = '\0';
    klen = strlen(copy);
    if (fault_kind_parse(copy, klen, &kind) != 0 || kind == FAULT_NONE) {
        snprintf(err, errlen,
                 "unknown fault '%s' (refuse, 500, 503, hang, die-after, "
                 "error-after, slow)",
                 copy);
        return -EINVAL;
    }
    fault_defaults(out, kind);
    if (arg != NULL && (rc = fault_spec_arg(out, arg, err, errlen)) != 0)
        return rc;
    if ((kind == FAULT_DIE_AFTER || kind == FAULT_ERROR_AFTER ||
         kind == FAULT_SLOW) &&
        arg == NULL) {
        snprintf(err, errlen, "fault %s needs an argument, e.g. %s",
                 fault_kind_name(kind),
                 kind == FAULT_SLOW ? "slow:10x" : "die-after:5");
        return -EINVAL;
    }
    for (tok = opts; tok != NULL; tok = next) {
        next = strchr(tok, ',');
        if (next != NULL)
            *next++ = '\0';
        if (*tok != '\0' && (rc = fault_spec_option(out, tok, err, errlen)))
            return rc;
    }
    return 0;
}

static int
fault_json_num(const cJSON *obj, const char *key, double min, double max,
               double *out, char *err, size_t errlen)
{
    const cJSON *v = json_get(obj, key);

    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max) {
        snprintf(err, errlen, "%s must be a number in [%g, %g]", key, min, max);
        return -EINVAL;
    }
    *out = v->valuedouble;
    return 1;
}

int
fault_parse_json(const cJSON *obj, struct fault *out, char *err, size_t errlen)
{
    const char *kind_s = json_get_str(obj, "kind");
    const char *model;
    enum fault_kind kind;
    double d;
    int rc;

    if (!cJSON_IsObject(obj) || kind_s == NULL ||
        fault_kind_parse(kind_s, strlen(kind_s), &kind) != 0) {
        snprintf(err, errlen,
                 "kind must be one of none, refuse, 500, 503, hang, "
                 "die_after, error_after, slow");
        return -EINVAL;
    }
    fault_defaults(out, kind);
    if (kind == FAULT_NONE)
        return 1;
    if ((rc = fault_json_num(obj, "count", 1, INT32_MAX, &d, err, errlen)) < 0)
        return rc;
    if (rc > 0)
        out->count = (int64_t)d;
    if ((rc = fault_json_num(obj, "after_tokens", 0, 1000000, &d, err,
                             errlen)) < 0)
        return rc;
    if (rc > 0)
        out->after = (int64_t)d;
    if ((rc = fault_json_num(obj, "duration_ms", 0, 86400000.0, &d, err,
                             errlen)) < 0)
        return rc;
    if (rc > 0)
        out->duration_ns = (int64_t)(d * 1e6);
    if ((rc = fault_json_num(obj, "factor", 1, 100000, &d, err, errlen)) < 0)
        return rc;
    if (rc > 0)
        out->factor = d;
    model = json_get_str(obj, "model");
    if (model != NULL) {
        if (strlen(model) >= sizeof(out->model)) {
            snprintf(err, errlen, "model name too long");
            return -EINVAL;
        }
        memcpy(out->model, model, strlen(model) + 1);
    }
    return 0;
}

int
fault_add(struct fault_set *fs, const struct fault *f)
{
    if (f->kind == FAULT_NONE || f->kind == FAULT_REFUSE)
        return 0;
    if (fs->n >= FAULT_MAX)
        return -ENOSPC;
    fs->rules[fs->n++] = *f;
    return 0;
}

void
fault_clear(struct fault_set *fs)
{
    fs->n = 0;
}

/* A rule's model matches with or without the ":latest" tag. */
static bool
fault_model_matches(const char *rule, const char *model)
{
    size_t n = strlen(rule);

    if (n == 0)
        return true;
    if (strcasecmp(rule, model) == 0)
        return true;
    return strncasecmp(rule, model, n) == 0 &&
           strcasecmp(model + n, ":latest") == 0;
}

bool
fault_take(struct fault_set *fs, const char *model, struct fault *out)
{
    for (size_t i = 0; i < fs->n; i++) {
        struct fault *f = &fs->rules[i];

        if (!fault_model_matches(f->model, model))
            continue;
        *out = *f;
        if (f->count > 0 && --f->count == 0) {
            memmove(f, f + 1, (fs->n - i - 1) * sizeof(*f));
            fs->n--;
        }
        return true;
    }
    return false;
}

int
fault_dump_json(const struct fault_set *fs, struct buf *b)
{
    int rc = buf_appends(b, "[");

    for (size_t i = 0; rc == 0 && i < fs->n; i++) {
        const struct fault *f = &fs->rules[i];

        rc = buf_appendf(b,
                         "%s{\"kind\":\"%s\",\"count\":%lld,"
                         "\"after_tokens\":%lld,\"duration_ms\":%lld,"
                         "\"factor\":%g,\"model\":",
                         i ? "," : "", fault_kind_name(f->kind),
                         (long long)f->count, (long long)f->after,
                         (long long)(f->duration_ns / 1000000), f->factor);
        if (rc == 0)
            rc = json_append_str(b, f->model, strlen(f->model));
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    return rc == 0 ? buf_appends(b, "]") : rc;
}
