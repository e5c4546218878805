/*
 * config.h - command-line flags, environment and the env file.
 *
 * A program describes its settings in a table of struct cfg_opt. The
 * value of each comes from, in order of precedence: a flag the user typed
 * (--name value, --name=value; booleans also --name / --no-name), the
 * environment (env, then env_alt), the env file (~/.fleet-manager/env or
 * $FLEET_ENV_FILE, loaded into the environment for keys not already set,
 * so the shell wins), then the default. A default never beats the
 * environment (ollama-herd's QUIRK, fixed).
 */
#ifndef HERD_CONFIG_H
#define HERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "herd/buf.h"

enum cfg_type {
    CFG_STR,      /* dst: char ** (owned by the table; cfg_free frees);
                     must be NULL before the first cfg_parse */
    CFG_INT,      /* dst: int64_t *, bounded by [min, max] */
    CFG_DOUBLE,   /* dst: double *, bounded by [min, max] */
    CFG_BOOL,     /* dst: bool * */
    CFG_DURATION, /* dst: int64_t * ns; Go duration or seconds */
    CFG_SIZE,     /* dst: uint64_t * bytes; "16GiB", "512MB", "1024" */
};

enum cfg_source { CFG_SRC_DEFAULT, CFG_SRC_ENV, CFG_SRC_FLAG };

struct cfg_opt {
    const char *name;    /* long flag without dashes: "port" -> --port */
    char short_name;     /* e.g. 'p' for -p, or 0 */
    const char *env;     /* e.g. "FLEET_PORT", or NULL */
    const char *env_alt; /* a second variable (e.g. OLLAMA_NUM_PARALLEL) */
    enum cfg_type type;
    void *dst;
    const char *def;     /* default, parsed like user input; NULL = unset */
    double min, max;     /* bounds for numbers; ignored when both are 0 */
    const char *metavar; /* shown in --help, e.g. "N", "DUR", "PATH" */
    const char *help;
    enum cfg_source src; /* filled by cfg_parse */
};

#define CFG_HELP    1 /* --help / -h was given: print help, exit 0 */
#define CFG_VERSION 2 /* --version was given: print version, exit 0 */

/*
 * Loads the env file: $FLEET_ENV_FILE if set, else ~/.fleet-manager/env.
 * KEY=value lines, '#' comments, optional "export ", one pair of matching
 * quotes stripped. A missing file is not an error. Returns 0, or -errno /
 * -EINVAL with "path:line: reason" in err.
 */
int cfg_load_env_file(char *err, size_t errlen);

/*
 * Applies defaults, then the environment, then argv. Returns 0,
 * CFG_HELP, CFG_VERSION, or -EINVAL with a message in err such as
 * "--port '0': out of range (1..65535)" or "FLEET_PORT='abc': not a
 * number" (the flag as typed, or the variable, and the value). An empty
 * variable counts as unset. A bad variable that a flag overrides is not
 * an error.
 * *first_arg is the index of the first positional argument.
 */
int cfg_parse(struct cfg_opt *opts, size_t n, int argc, char **argv,
              int *first_arg, char *err, size_t errlen);

/* Frees the strings cfg_parse stored through CFG_STR options. */
void cfg_free(struct cfg_opt *opts, size_t n);

/* Prints "usage" then every option: flags, metavar, help, env names and
 * default, wrapped at 80 columns; then "epilog" if not NULL. */
void cfg_print_help(FILE *f, const char *usage, const struct cfg_opt *opts,
                    size_t n, const char *epilog);

/* Appends {"name":{"value":...,"source":"flag|env|default","env":"..."}}
 * for the settings endpoint. */
int cfg_dump_json(const struct cfg_opt *opts, size_t n,
                  struct buf *b) HERD_MUST_USE;

#endif /* HERD_CONFIG_H */
