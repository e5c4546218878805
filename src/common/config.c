/*
 * config.c - command-line flags, environment and the env file.
 *
 * A program describes its settings in a table of struct cfg_opt;
 * cfg_parse() fills every dst from, in order of precedence, the flags the
 * user typed, the environment (env, then env_alt), and the default.
 * argv is scanned first, so a bad environment value that a flag
 * overrides is never an error. Values are parsed with the strict parsers
 * of parse.c. The module owns the strings it stores through CFG_STR
 * options until cfg_free(). cfg_load_env_file() implements ollama-herd's
 * ~/.fleet-manager/env loader (the shell's environment wins).
 */
#include "herd/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "herd/fsutil.h"
#include "herd/json.h"
#include "herd/log.h"
#include "herd/parse.h"

#define CFG_ENV_FILE_MAX (1u << 20)
#define CFG_HELP_COL     26 /* where help text starts */
#define CFG_HELP_WIDTH   80
#define CFG_NBSP         "\x01" /* a space the help wrapper never breaks */

/* One option the user typed on the command line. */
struct cfg_flag {
    size_t opt;        /* index into the table */
    const char *value; /* borrowed from argv, or a literal for booleans */
    char shown[64];    /* the option as typed, for messages: "--port" */
};

static int cfg_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    HERD_PRINTF(4, 5);

static int
cfg_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool
cfg_bounded(const struct cfg_opt *o)
{
    return !(o->min == 0 && o->max == 0);
}

/* Parses s into o->dst. Returns 0, or -EINVAL with a static reason in
 * *why; *range is set when the reason is a bound (the caller adds it). */
static int
cfg_store(struct cfg_opt *o, const char *s, const char **why, bool *range)
{
    int64_t i64, lo = INT64_MIN, hi = INT64_MAX;
    double d, dlo = -HUGE_VAL, dhi = HUGE_VAL;
    uint64_t u64;
    bool b;
    char *copy;
    int rc;

    *range = false;
    switch (o->type) {
    case CFG_STR:
        copy = strdup(s);
        if (copy == NULL) {
            *why = "out of memory";
            return -ENOMEM;
        }
        free(*(char **)o->dst);
        *(char **)o->dst = copy;
        return 0;
    case CFG_INT:
        if (cfg_bounded(o)) {
            lo = (int64_t)o->min;
            hi = (int64_t)o->max;
        }
        rc = parse_i64(s, lo, hi, &i64, why);
        if (rc == 0)
            *(int64_t *)o->dst = i64;
        break;
    case CFG_DOUBLE:
        if (cfg_bounded(o)) {
            dlo = o->min;
            dhi = o->max;
        }
        rc = parse_double(s, dlo, dhi, &d, why);
        if (rc == 0)
            *(double *)o->dst = d;
        break;
    case CFG_BOOL:
        rc = parse_bool(s, &b, why);
        if (rc == 0)
            *(bool *)o->dst = b;
        return rc;
    case CFG_DURATION:
        rc = parse_duration_or_secs(s, &i64, why);
        if (rc == 0)
            *(int64_t *)o->dst = i64;
        return rc;
    case CFG_SIZE:
        rc = parse_size(s, &u64, why);
        if (rc == 0)
            *(uint64_t *)o->dst = u64;
        return rc;
    default:
        *why = "unknown option type";
        return -EINVAL;
    }
    /* Numbers: one wording for every malformed input. */
    if (rc == -ERANGE && cfg_bounded(o))
        *range = true;
    else if (rc == -EINVAL)
        *why = "not a number";
    return rc;
}

/* Stores s and formats "<what>: <reason>" on failure, where what is
 * "--port 'abc'" or "FLEET_PORT='abc'". */
static int
cfg_apply(struct cfg_opt *o, const char *s, const char *what, char *err,
          size_t errlen)
{
    const char *why = "invalid value";
    bool range;
    int rc;

    rc = cfg_store(o, s, &why, &range);
    if (rc == 0)
        return 0;
    if (rc == -ENOMEM)
        return cfg_fail(err, errlen, rc, "%s: out of memory", what);
    if (range && o->type == CFG_INT)
        return cfg_fail(err, errlen, -EINVAL, "%s: out of range (%.0f..%.0f)",
                        what, o->min, o->max);
    if (range)
        return cfg_fail(err, errlen, -EINVAL, "%s: out of range (%g..%g)", what,
                        o->min, o->max);
    return cfg_fail(err, errlen, -EINVAL, "%s: %s", what, why);
}

/* The variable an option takes its value from, or NULL; empty counts as
 * unset, as Ollama's envconfig does. */
static const char *
cfg_env_name(const struct cfg_opt *o)
{
    const char *v;

    if (o->env != NULL && (v = getenv(o->env)) != NULL && *v != '\0')
        return o->env;
    if (o->env_alt != NULL && (v = getenv(o->env_alt)) != NULL && *v != '\0')
        return o->env_alt;
    return NULL;
}

static int
cfg_apply_default(struct cfg_opt *o, char *err, size_t errlen)
{
    char what[96];

    o->src = CFG_SRC_DEFAULT;
    if (o->def == NULL) {
        if (o->type == CFG_STR) {
            free(*(char **)o->dst);
            *(char **)o->dst = NULL;
        }
        return 0;
    }
    snprintf(what, sizeof(what), "default of --%s '%s'", o->name, o->def);
    return cfg_apply(o, o->def, what, err, errlen);
}

static int
cfg_apply_env(struct cfg_opt *o, char *err, size_t errlen)
{
    const char *name = cfg_env_name(o);
    const char *val;
    char what[512];
    int rc;

    if (name == NULL)
        return 0;
    val = getenv(name);
    snprintf(what, sizeof(what), "%s='%.400s'", name, val);
    rc = cfg_apply(o, val, what, err, errlen);
    if (rc == 0)
        o->src = CFG_SRC_ENV;
    return rc;
}

static size_t
cfg_find_long(const struct cfg_opt *opts, size_t n, const char *name,
              size_t len)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strlen(opts[i].name) == len &&
            strncmp(opts[i].name, name, len) == 0)
            return i;
    }
    return n;
}

/* "--name", "--name=value", "--no-name". Consumes argv[*i] and maybe the
 * next argument. Returns 0, CFG_HELP, CFG_VERSION or -EINVAL. */
static int
cfg_scan_long(const struct cfg_opt *opts, size_t n, int argc, char **argv,
              int *i, struct cfg_flag *fl, char *err, size_t errlen)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    size_t k = cfg_find_long(opts, n, arg, len);

    snprintf(fl->shown, sizeof(fl->shown), "--%.*s", (int)len, arg);
    if (k == n && eq == NULL && strcmp(arg, "help") == 0)
        return CFG_HELP;
    if (k == n && eq == NULL && strcmp(arg, "version") == 0)
        return CFG_VERSION;
    if (k == n && eq == NULL && len > 3 && strncmp(arg, "no-", 3) == 0) {
        k = cfg_find_long(opts, n, arg + 3, len - 3);
        if (k < n && opts[k].type == CFG_BOOL) {
            fl->opt = k;
            fl->value = "false";
            return 0;
        }
        k = n;
    }
    if (k == n)
        return cfg_fail(err, errlen, -EINVAL,
                        "unknown option '%s' (see --help)", fl->shown);
    fl->opt = k;
    if (eq != NULL)
        fl->value = eq + 1;
    else if (opts[k].type == CFG_BOOL)
        fl->value = "true";
    else if (*i + 1 < argc)
        fl->value = argv[++*i];
    else
        return cfg_fail(err, errlen, -EINVAL, "%s: missing value", fl->shown);
    return 0;
}

/* "-p value", "-pvalue", "-d" (boolean). */
static int
cfg_scan_short(const struct cfg_opt *opts, size_t n, int argc, char **argv,
               int *i, struct cfg_flag *fl, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    size_t k;

    snprintf(fl->shown, sizeof(fl->shown), "-%c", arg[1]);
    for (k = 0; k < n; k++) {
        if (opts[k].short_name != 0 && opts[k].short_name == arg[1])
            break;
    }
    if (k == n && strcmp(arg, "-h") == 0)
        return CFG_HELP;
    if (k == n || (opts[k].type == CFG_BOOL && arg[2] != '\0'))
        return cfg_fail(err, errlen, -EINVAL,
                        "unknown option '%s' (see --help)", arg);
    fl->opt = k;
    if (opts[k].type == CFG_BOOL)
        fl->value = "true";
    else if (arg[2] != '\0')
        fl->value = arg + 2;
    else if (*i + 1 < argc)
        fl->value = argv[++*i];
    else
        return cfg_fail(err, errlen, -EINVAL, "%s: missing value", fl->shown);
    return 0;
}

/* Pass one: finds every flag, --help/--version and the first positional
 * argument, without touching any dst. */
static int
cfg_scan_argv(const struct cfg_opt *opts, size_t n, int argc, char **argv,
              struct cfg_flag *flags, size_t *nflags, int *first_arg, char *err,
              size_t errlen)
{
    int i, rc;

    *nflags = 0;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            break; /* first positional argument */
        if (arg[1] == '-')
            rc = cfg_scan_long(opts, n, argc, argv, &i, &flags[*nflags], err,
                               errlen);
        else
            rc = cfg_scan_short(opts, n, argc, argv, &i, &flags[*nflags], err,
                                errlen);
        if (rc != 0)
            return rc;
        (*nflags)++;
    }
    *first_arg = i;
    return 0;
}

int
cfg_parse(struct cfg_opt *opts, size_t n, int argc, char **argv, int *first_arg,
          char *err, size_t errlen)
{
    struct cfg_flag *flags = NULL;
    char what[512];
    size_t nflags = 0, i;
    int first = argc, rc;

    flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*flags));
    if (flags == NULL)
        return cfg_fail(err, errlen, -ENOMEM, "out of memory");
    rc =
        cfg_scan_argv(opts, n, argc, argv, flags, &nflags, &first, err, errlen);
    if (rc != 0)
        goto out;
    for (i = 0; i < n && rc == 0; i++)
        rc = cfg_apply_default(&opts[i], err, errlen);
    for (i = 0; i < n && rc == 0; i++) {
        bool flagged = false;
        size_t f;

        for (f = 0; f < nflags; f++)
            flagged = flagged || flags[f].opt == i;
        if (!flagged)
            rc = cfg_apply_env(&opts[i], err, errlen);
    }
    for (i = 0; i < nflags && rc == 0; i++) {
        struct cfg_opt *o = &opts[flags[i].opt];

        snprintf(what, sizeof(what), "%s '%.400s'", flags[i].shown,
                 flags[i].value);
        rc = cfg_apply(o, flags[i].value, what, err, errlen);
        if (rc == 0)
            o->src = CFG_SRC_FLAG;
    }
    if (first_arg != NULL)
        *first_arg = first;
out:
    free(flags);
    return rc;
}

void
cfg_free(struct cfg_opt *opts, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (opts[i].type == CFG_STR && opts[i].dst != NULL) {
            free(*(char **)opts[i].dst);
            *(char **)opts[i].dst = NULL;
        }
    }
}

/* True for a valid environment variable name. */
static bool
cfg_valid_key(const char *k)
{
    const char *p;

    if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_'))
        return false;
    for (p = k + 1; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    }
    return true;
}

static char *
cfg_trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* One line of the env file; modifies line. 0 or -EINVAL. */
static int
cfg_env_line(const char *path, unsigned lineno, char *line, char *err,
             size_t errlen)
{
    char *s = cfg_trim(line), *eq, *key, *val;
    size_t vl;

    if (*s == '\0' || *s == '#')
        return 0;
    if (strncmp(s, "export ", 7) == 0)
        s = cfg_trim(s + 7);
    eq = strchr(s, '=');
    if (eq == NULL) {
        log_warn("%s:%u: no '=' in line, skipped", path, lineno);
        return 0;
    }
    *eq = '\0';
    key = cfg_trim(s);
    val = cfg_trim(eq + 1);
    if (!cfg_valid_key(key))
        return cfg_fail(err, errlen, -EINVAL, "%s:%u: invalid key '%.64s'",
                        path, lineno, key);
    vl = strlen(val);
    if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
        val[vl - 1] = '\0';
        val++;
    }
    if (getenv(key) == NULL && setenv(key, val, 0) != 0)
        return cfg_fail(err, errlen, -errno, "%s:%u: setenv: %s", path, lineno,
                        strerror(errno));
    return 0;
}

int
cfg_load_env_file(char *err, size_t errlen)
{
    const char *env = getenv("FLEET_ENV_FILE");
    char path[4096];
    char *data = NULL, *line, *nl, *end;
    unsigned lineno = 0;
    size_t len;
    int rc;

    rc = fs_expand_home(env != NULL && *env != '\0' ? env
                                                    : "~/.fleet-manager/env",
                        path, sizeof(path));
    if (rc != 0)
        return cfg_fail(err, errlen, rc, "env file path too long");
    rc = fs_read_file(path, CFG_ENV_FILE_MAX, &data, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return cfg_fail(err, errlen, rc, "%s: %s", path,
                        rc == -E2BIG ? "file too large" : strerror(-rc));
    end = data + len;
    for (line = data; line < end && rc == 0; line = nl) {
        nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL)
            nl = end;
        *nl++ = '\0'; /* data has a NUL at end, so this stays in bounds */
        lineno++;
        if (strlen(line) != (size_t)(nl - 1 - line))
            rc = cfg_fail(err, errlen, -EINVAL, "%s:%u: NUL byte in line", path,
                          lineno);
        else
            rc = cfg_env_line(path, lineno, line, err, errlen);
    }
    free(data);
    return rc;
}

/* Appends words of text to a line that starts at column col, wrapping at
 * CFG_HELP_WIDTH with continuation lines indented to CFG_HELP_COL. */
static void
cfg_wrap(FILE *f, const char *text, int col)
{
    const char *p = text;

    while (*p != '\0') {
        const char *w = p;
        int wl;

        while (*p != '\0' && *p != ' ')
            p++;
        wl = (int)(p - w);
        if (col > CFG_HELP_COL && col + 1 + wl > CFG_HELP_WIDTH) {
            fprintf(f, "\n%*s", CFG_HELP_COL, "");
            col = CFG_HELP_COL;
        } else if (col > CFG_HELP_COL) {
            fputc(' ', f);
            col++;
        }
        for (; w < p; w++)
            fputc(*w == CFG_NBSP[0] ? ' ' : *w, f);
        col += wl;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

static void
cfg_help_one(FILE *f, const struct cfg_opt *o)
{
    char left[128], text[1024];
    int col, used;

    if (o->short_name != 0)
        col = snprintf(left, sizeof(left), "  -%c, ", o->short_name);
    else
        col = snprintf(left, sizeof(left), "      ");
    snprintf(left + col, sizeof(left) - (size_t)col, "--%s%s%s%s",
             o->type == CFG_BOOL && strncmp(o->name, "no-", 3) != 0 ? "[no-]"
                                                                    : "",
             o->name, o->type == CFG_BOOL ? "" : " ",
             o->type == CFG_BOOL ? "" : (o->metavar ? o->metavar : "VALUE"));
    used = snprintf(text, sizeof(text), "%s", o->help != NULL ? o->help : "");
    if (o->env != NULL && o->env_alt != NULL)
        used += snprintf(text + used, sizeof(text) - (size_t)used,
                         " [env:" CFG_NBSP "%s," CFG_NBSP "%s]", o->env,
                         o->env_alt);
    else if (o->env != NULL || o->env_alt != NULL)
        used += snprintf(text + used, sizeof(text) - (size_t)used, " [env: %s]",
                         o->env != NULL ? o->env : o->env_alt);
    if (o->def != NULL && *o->def != '\0' && (size_t)used < sizeof(text))
        snprintf(text + used, sizeof(text) - (size_t)used,
                 " [default:" CFG_NBSP "%s]", o->def);
    col = fprintf(f, "%s", left);
    if (col >= CFG_HELP_COL - 1) {
        fprintf(f, "\n%*s", CFG_HELP_COL, "");
    } else {
        fprintf(f, "%*s", CFG_HELP_COL - col, "");
    }
    /* col == CFG_HELP_COL: the first word goes without a space. */
    cfg_wrap(f, cfg_trim(text), CFG_HELP_COL);
}

void
cfg_print_help(FILE *f, const char *usage, const struct cfg_opt *opts, size_t n,
               const char *epilog)
{
    static const struct cfg_opt builtin[] = {
        {.name = "help",
         .short_name = 'h',
         .type = CFG_BOOL,
         .help = "Print this help and exit."},
        {.name = "version",
         .type = CFG_BOOL,
         .help = "Print the version and exit."},
    };
    size_t i;

    if (usage != NULL)
        fprintf(f, "%s\n\n", usage);
    fprintf(f, "Options:\n");
    for (i = 0; i < n; i++)
        cfg_help_one(f, &opts[i]);
    for (i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        fprintf(f, "%s%-*s", builtin[i].short_name ? "  -h, " : "      ",
                CFG_HELP_COL - 6, i == 0 ? "--help" : "--version");
        cfg_wrap(f, builtin[i].help, CFG_HELP_COL);
    }
    if (epilog != NULL)
        fprintf(f, "\n%s\n", epilog);
}

static int
cfg_dump_value(const struct cfg_opt *o, struct buf *b)
{
    const char *s;
    double d;

    switch (o->type) {
    case CFG_STR:
        s = *(char *const *)o->dst;
        return s == NULL ? buf_appends(b, "null")
                         : json_append_str(b, s, strlen(s));
    case CFG_INT:
    case CFG_DURATION:
        return buf_appendf(b, "%" PRId64, *(const int64_t *)o->dst);
    case CFG_SIZE:
        return buf_appendf(b, "%" PRIu64, *(const uint64_t *)o->dst);
    case CFG_BOOL:
        return buf_appends(b, *(const bool *)o->dst ? "true" : "false");
    case CFG_DOUBLE:
        d = *(const double *)o->dst;
        if (!isfinite(d))
            return buf_appends(b, "null");
        return buf_appendf(b, "%.17g", d);
    default:
        return buf_appends(b, "null");
    }
}

int
cfg_dump_json(const struct cfg_opt *opts, size_t n, struct buf *b)
{
    static const char *const src_names[] = {"default", "env", "flag"};
    size_t old = b->len, i;
    int rc = buf_appends(b, "{");

    for (i = 0; i < n && rc == 0; i++) {
        const struct cfg_opt *o = &opts[i];
        const char *env = o->src == CFG_SRC_ENV ? cfg_env_name(o) : NULL;

        if (env == NULL)
            env = o->env != NULL ? o->env : o->env_alt;
        rc = buf_appends(b, i == 0 ? "" : ",");
        if (rc == 0)
            rc = json_append_str(b, o->name, strlen(o->name));
        if (rc == 0)
            rc = buf_appends(b, ":{\"value\":");
        if (rc == 0)
            rc = cfg_dump_value(o, b);
        if (rc == 0)
            rc = buf_appendf(b, ",\"source\":\"%s\",\"env\":",
                             src_names[o->src <= CFG_SRC_FLAG ? o->src : 0]);
        if (rc == 0)
            rc = env != NULL ? json_append_str(b, env, strlen(env))
                             : buf_appends(b, "null");
        if (rc == 0)
            rc = buf_appends(b, "}");
    }
    if (rc == 0)
        rc = buf_appends(b, "}");
    if (rc != 0 && b->data != NULL) {
        b->len = old;
        b->data[old] = '\0';
    }
    return rc;
}
