/*
 * test_config.c - unit tests for flags, environment and the env file
 * (src/common/config.c): precedence, flag forms, error texts, bounds,
 * string ownership, env-file semantics, help text and the JSON dump.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herd/config.h"
#include "herd/json.h"
#include "herd/log.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int64_t port, parallel, keep;
static char *host;
static bool debug;
static double ratio;
static uint64_t max_body;

enum { O_PORT, O_HOST, O_DEBUG, O_RATIO, O_KEEP, O_BODY, O_PAR, O_COUNT };

static struct cfg_opt opts[O_COUNT];

static const char *const all_env[] = {
    "FLEET_PORT",       "FLEET_HOST",         "FLEET_DEBUG",
    "FLEET_RATIO",      "FLEET_KEEP_ALIVE",   "OLLAMA_KEEP_ALIVE",
    "FLEET_MAX_BODY",   "FLEET_NUM_PARALLEL", "OLLAMA_NUM_PARALLEL",
    "FLEET_ENV_FILE",   "HERD_TEST_A",        "HERD_TEST_B",
    "HERD_TEST_C",      "HERD_TEST_D",        "HERD_TEST_E",
    "HERD_TEST_PRESET", "HERD_TEST_EMPTY",
};

static int
setup(void **state)
{
    static const struct cfg_opt init[O_COUNT] = {
        [O_PORT] = {.name = "port",
                    .short_name = 'p',
                    .env = "FLEET_PORT",
                    .type = CFG_INT,
                    .dst = &port,
                    .def = "11435",
                    .min = 1,
                    .max = 65535,
                    .metavar = "N",
                    .help = "Port to listen on."},
        [O_HOST] = {.name = "host",
                    .env = "FLEET_HOST",
                    .type = CFG_STR,
                    .dst = &host,
                    .def = "0.0.0.0",
                    .metavar = "ADDR",
                    .help = "Address to bind."},
        [O_DEBUG] = {.name = "debug",
                     .short_name = 'd',
                     .env = "FLEET_DEBUG",
                     .type = CFG_BOOL,
                     .dst = &debug,
                     .def = "false",
                     .help = "Log more."},
        [O_RATIO] = {.name = "ratio",
                     .env = "FLEET_RATIO",
                     .type = CFG_DOUBLE,
                     .dst = &ratio,
                     .def = "0.5",
                     .min = 0,
                     .max = 1,
                     .metavar = "R",
                     .help = "A fraction."},
        [O_KEEP] = {.name = "keep-alive",
                    .env = "FLEET_KEEP_ALIVE",
                    .env_alt = "OLLAMA_KEEP_ALIVE",
                    .type = CFG_DURATION,
                    .dst = &keep,
                    .def = "5m",
                    .metavar = "DUR",
                    .help = "How long a model stays loaded after a request. "
                            "A Go duration such as 5m or 1h30m, or a number "
                            "of seconds; negative keeps it loaded forever."},
        [O_BODY] = {.name = "max-body",
                    .env = "FLEET_MAX_BODY",
                    .type = CFG_SIZE,
                    .dst = &max_body,
                    .def = "1MiB",
                    .metavar = "SIZE",
                    .help = "Largest request body."},
        [O_PAR] = {.name = "num-parallel",
                   .env = "FLEET_NUM_PARALLEL",
                   .env_alt = "OLLAMA_NUM_PARALLEL",
                   .type = CFG_INT,
                   .dst = &parallel,
                   .def = "0",
                   .metavar = "N",
                   .help = "Parallel requests per model."},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(all_env); i++)
        unsetenv(all_env[i]);
    memcpy(opts, init, sizeof(opts));
    host = NULL;
    port = parallel = keep = -1;
    debug = true;
    ratio = -1;
    max_body = 0;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    cfg_free(opts, O_COUNT);
    assert_null(host);
    return 0;
}

/* Runs cfg_parse on a NULL-terminated argument list. */
static int
parse(char *err, size_t errlen, int *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    char *a;

    argv[argc++] = (char *)"herd";
    va_start(ap, first);
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return cfg_parse(opts, O_COUNT, argc, argv, first, err, errlen);
}

static void
test_defaults(void **state)
{
    char err[256];
    int first = -1;

    (void)state;
    assert_int_equal(parse(err, sizeof(err), &first, NULL), 0);
    assert_int_equal(first, 1);
    assert_int_equal(port, 11435);
    assert_string_equal(host, "0.0.0.0");
    assert_false(debug);
    assert_true(ratio == 0.5);
    assert_true(keep == 300LL * 1000000000LL);
    assert_true(max_body == 1048576);
    assert_int_equal(parallel, 0);
    assert_int_equal(opts[O_PORT].src, CFG_SRC_DEFAULT);
    assert_int_equal(opts[O_HOST].src, CFG_SRC_DEFAULT);
}

static void
test_precedence(void **state)
{
    char err[256];
    int first;

    (void)state;
    setenv("FLEET_PORT", "8000", 1);
    setenv("FLEET_HOST", "127.0.0.1", 1);
    setenv("FLEET_KEEP_ALIVE", "10m", 1);
    setenv("OLLAMA_KEEP_ALIVE", "-1", 1);
    setenv("OLLAMA_NUM_PARALLEL", "4", 1);
    setenv("FLEET_DEBUG", "yes", 1);
    setenv("FLEET_RATIO", "", 1); /* empty: unset */
    assert_int_equal(parse(err, sizeof(err), &first, "--port", "9000", NULL),
                     0);
    assert_int_equal(port, 9000); /* flag beats env */
    assert_int_equal(opts[O_PORT].src, CFG_SRC_FLAG);
    assert_string_equal(host, "127.0.0.1"); /* env beats default */
    assert_int_equal(opts[O_HOST].src, CFG_SRC_ENV);
    assert_true(keep == 600LL * 1000000000LL); /* env beats env_alt */
    assert_int_equal(parallel, 4);             /* env_alt beats default */
    assert_int_equal(opts[O_PAR].src, CFG_SRC_ENV);
    assert_true(debug);
    assert_true(ratio == 0.5);
    assert_int_equal(opts[O_RATIO].src, CFG_SRC_DEFAULT);

    unsetenv("FLEET_KEEP_ALIVE");
    assert_int_equal(parse(err, sizeof(err), &first, NULL), 0);
    assert_true(keep == -1000000000LL); /* bare seconds from env_alt */
    assert_int_equal(port, 8000);
    assert_int_equal(opts[O_PORT].src, CFG_SRC_ENV);
}

static void
test_flag_forms(void **state)
{
    char err[256];
    int first;

    (void)state;
    assert_int_equal(parse(err, sizeof(err), &first, "--port=1234", "--debug",
                           "--host", "::1", "--ratio=0.25", "--keep-alive",
                           "1.5h", "--max-body=16GiB", "--num-parallel", "-3",
                           NULL),
                     0);
    assert_int_equal(port, 1234);
    assert_true(debug);
    assert_string_equal(host, "::1");
    assert_true(ratio == 0.25);
    assert_true(keep == 5400LL * 1000000000LL);
    assert_true(max_body == (UINT64_C(16) << 30));
    assert_int_equal(parallel, -3); /* a value may start with '-' */

    assert_int_equal(parse(err, sizeof(err), &first, "-p", "80", "-d", NULL),
                     0);
    assert_int_equal(port, 80);
    assert_true(debug);
    assert_int_equal(parse(err, sizeof(err), &first, "-p81", NULL), 0);
    assert_int_equal(port, 81);

    setenv("FLEET_DEBUG", "true", 1);
    assert_int_equal(parse(err, sizeof(err), &first, "--no-debug", NULL), 0);
    assert_false(debug);
    assert_int_equal(opts[O_DEBUG].src, CFG_SRC_FLAG);
    assert_int_equal(parse(err, sizeof(err), &first, "--debug=false", NULL), 0);
    assert_false(debug);
    assert_int_equal(
        parse(err, sizeof(err), &first, "--debug=off", "--debug=1", NULL), 0);
    assert_true(debug); /* the last one wins */
}

static void
test_positional_and_double_dash(void **state)
{
    char err[256];
    int first = -1;

    (void)state;
    assert_int_equal(parse(err, sizeof(err), &first, "-p", "5", "serve",
                           "--port", "6", NULL),
                     0);
    assert_int_equal(first, 3); /* "serve": options stop here */
    assert_int_equal(port, 5);
    assert_int_equal(parse(err, sizeof(err), &first, "--", "--port", NULL), 0);
    assert_int_equal(first, 2);
    assert_int_equal(port, 11435);
    assert_int_equal(parse(err, sizeof(err), &first, "-", NULL), 0);
    assert_int_equal(first, 1);
}

static void
test_help_and_version(void **state)
{
    char err[256];
    int first;

    (void)state;
    assert_int_equal(parse(err, sizeof(err), &first, "--help", NULL), CFG_HELP);
    assert_int_equal(parse(err, sizeof(err), &first, "-p", "1", "-h", NULL),
                     CFG_HELP);
    assert_int_equal(parse(err, sizeof(err), &first, "--version", NULL),
                     CFG_VERSION);
    /* An error before --help wins, as the scan is in order. */
    assert_int_equal(parse(err, sizeof(err), &first, "--bogus", "--help", NULL),
                     -EINVAL);
}

static void
test_errors(void **state)
{
    static const struct {
        const char *env, *val;
        const char *a1, *a2;
        const char *msg;
    } cases[] = {
        {NULL, NULL, "--x", NULL, "unknown option '--x' (see --help)"},
        {NULL, NULL, "--x=1", NULL, "unknown option '--x' (see --help)"},
        {NULL, NULL, "-z", NULL, "unknown option '-z' (see --help)"},
        {NULL, NULL, "-dx", NULL, "unknown option '-dx' (see --help)"},
        {NULL, NULL, "--no-port", NULL,
         "unknown option '--no-port' (see --help)"},
        {NULL, NULL, "--port", "abc", "--port 'abc': not a number"},
        {NULL, NULL, "-p", "80x", "-p '80x': not a number"},
        {NULL, NULL, "--port=0", NULL, "--port '0': out of range (1..65535)"},
        {NULL, NULL, "--port", "65536",
         "--port '65536': out of range (1..65535)"},
        {NULL, NULL, "--port", NULL, "--port: missing value"},
        {NULL, NULL, "--ratio", "1.5", "--ratio '1.5': out of range (0..1)"},
        {NULL, NULL, "--ratio", "x", "--ratio 'x': not a number"},
        {NULL, NULL, "--debug=maybe", NULL, "--debug 'maybe': not a boolean"},
        {NULL, NULL, "--keep-alive", "5x",
         "--keep-alive '5x': unknown unit in duration"},
        {NULL, NULL, "--max-body", "lots", "--max-body 'lots': not a size"},
        {"FLEET_PORT", "abc", NULL, NULL, "FLEET_PORT='abc': not a number"},
        {"FLEET_PORT", "0", NULL, NULL,
         "FLEET_PORT='0': out of range (1..65535)"},
        {"OLLAMA_NUM_PARALLEL", "two", NULL, NULL,
         "OLLAMA_NUM_PARALLEL='two': not a number"},
        {"FLEET_DEBUG", "2", NULL, NULL, "FLEET_DEBUG='2': not a boolean"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        char err[256];
        int first = -1, rc;

        if (cases[i].env != NULL)
            setenv(cases[i].env, cases[i].val, 1);
        rc = parse(err, sizeof(err), &first, cases[i].a1, cases[i].a2, NULL);
        if (rc != -EINVAL || strcmp(err, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d, \"%s\", want \"%s\"", i, rc, err,
                     cases[i].msg);
        if (cases[i].env != NULL)
            unsetenv(cases[i].env);
        cfg_free(opts, O_COUNT);
    }
}

static void
test_flag_hides_bad_env(void **state)
{
    char err[256];
    int first;

    (void)state;
    setenv("FLEET_PORT", "garbage", 1);
    assert_int_equal(parse(err, sizeof(err), &first, "-p", "7", NULL), 0);
    assert_int_equal(port, 7);
}

static void
test_str_ownership(void **state)
{
    char err[256];
    int first;

    (void)state;
    assert_int_equal(
        parse(err, sizeof(err), &first, "--host", "a", "--host", "b", NULL), 0);
    assert_string_equal(host, "b");
    /* A second parse frees the first values (ASan would see a leak). */
    assert_int_equal(parse(err, sizeof(err), &first, "--host=c", NULL), 0);
    assert_string_equal(host, "c");
    opts[O_HOST].def = NULL;
    assert_int_equal(parse(err, sizeof(err), &first, NULL), 0);
    assert_null(host); /* NULL default: unset */
    assert_int_equal(parse(err, sizeof(err), &first, "--host=", NULL), 0);
    assert_string_equal(host, "");
    cfg_free(opts, O_COUNT);
    assert_null(host);
    cfg_free(opts, O_COUNT); /* idempotent */
}

static char env_path[256];

static void
write_env_file(const char *text)
{
    FILE *f;

    snprintf(env_path, sizeof(env_path), "/tmp/herd-test-env-%ld",
             (long)getpid());
    f = fopen(env_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    setenv("FLEET_ENV_FILE", env_path, 1);
}

static void
test_env_file(void **state)
{
    char err[256] = "";
    int first;

    (void)state;
    setenv("HERD_TEST_PRESET", "shell", 1);
    write_env_file("# comment\n"
                   "\n"
                   "HERD_TEST_A=plain\n"
                   "export HERD_TEST_B=\"double quoted # not a comment\"\n"
                   "  HERD_TEST_C = 'single'  \r\n"
                   "HERD_TEST_D=\"mismatched'\n"
                   "no equals sign here\n"
                   "HERD_TEST_PRESET=file\n"
                   "HERD_TEST_EMPTY=\n"
                   "HERD_TEST_E=a=b\n"
                   "FLEET_PORT=4242\n"
                   "FLEET_HOST=\"10.0.0.1\"");
    log_init("test", LL_ERROR); /* the skipped line logs a warning */
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), 0);
    assert_string_equal(getenv("HERD_TEST_A"), "plain");
    assert_string_equal(getenv("HERD_TEST_B"), "double quoted # not a comment");
    assert_string_equal(getenv("HERD_TEST_C"), "single");
    assert_string_equal(getenv("HERD_TEST_D"), "\"mismatched'");
    assert_string_equal(getenv("HERD_TEST_PRESET"), "shell"); /* shell wins */
    assert_string_equal(getenv("HERD_TEST_EMPTY"), "");
    assert_string_equal(getenv("HERD_TEST_E"), "a=b");
    /* The file feeds cfg_parse through the environment; flags still win. */
    assert_int_equal(parse(err, sizeof(err), &first, "--host", "h", NULL), 0);
    assert_int_equal(port, 4242);
    assert_int_equal(opts[O_PORT].src, CFG_SRC_ENV);
    assert_string_equal(host, "h");
    unlink(env_path);
}

static void
test_env_file_errors(void **state)
{
    char err[512] = "", want[512];

    (void)state;
    setenv("FLEET_ENV_FILE", "/nonexistent/herd/env", 1);
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), 0); /* missing */

    write_env_file("HERD_TEST_A=1\n\nBAD KEY=2\n");
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:3: invalid key 'BAD KEY'", env_path);
    assert_string_equal(err, want);
    unlink(env_path);

    write_env_file("=x\n");
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:1: invalid key ''", env_path);
    assert_string_equal(err, want);
    unlink(env_path);

    setenv("FLEET_ENV_FILE", "/tmp", 1); /* a directory */
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), -EISDIR);
}

static void
test_env_file_nul_byte(void **state)
{
    char err[512] = "";
    FILE *f;

    (void)state;
    write_env_file("");
    f = fopen(env_path, "w");
    assert_non_null(f);
    fwrite("HERD_TEST_A=x\0y\n", 1, 16, f);
    fclose(f);
    assert_int_equal(cfg_load_env_file(err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":1: NUL byte in line"));
    assert_null(getenv("HERD_TEST_A"));
    unlink(env_path);
}

static void
test_help_text(void **state)
{
    char *text = NULL, *line;
    size_t len = 0;
    FILE *f;

    (void)state;
    f = open_memstream(&text, &len);
    assert_non_null(f);
    cfg_print_help(f, "usage: herd [options]", opts, O_COUNT, "See docs.");
    fclose(f);
    assert_true(strncmp(text, "usage: herd [options]\n\nOptions:\n", 32) == 0);
    assert_non_null(strstr(text, "  -p, --port N            Port to listen "
                                 "on. [env: FLEET_PORT] [default: 11435]\n"));
    assert_non_null(strstr(text, "  -d, --[no-]debug        Log more. "
                                 "[env: FLEET_DEBUG] [default: false]\n"));
    assert_non_null(strstr(text, "      --host ADDR"));
    assert_non_null(strstr(text, "[env: FLEET_HOST] [default: 0.0.0.0]"));
    assert_non_null(strstr(text, "  -h, --help"));
    assert_non_null(strstr(text, "      --version"));
    assert_non_null(strstr(text, "\nSee docs.\n"));
    /* The long help is wrapped, continuation lines indented to col 26. */
    assert_non_null(strstr(text, "\n                          "));
    /* "[env: A, B]" is never split across lines. */
    assert_non_null(strstr(text, "[env: FLEET_KEEP_ALIVE, OLLAMA_KEEP_ALIVE]"));
    assert_null(strchr(text, '\x01'));
    for (line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');

        assert_non_null(nl);
        if (nl - line > 80)
            fail_msg("line longer than 80: %.*s", (int)(nl - line), line);
        line = nl + 1;
    }
    free(text);
}

static void
test_dump_json(void **state)
{
    char err[256];
    cJSON *root = NULL;
    const cJSON *o;
    struct buf b;
    int first;

    (void)state;
    setenv("OLLAMA_NUM_PARALLEL", "2", 1);
    assert_int_equal(parse(err, sizeof(err), &first, "--host", "a\"<b>",
                           "--ratio", "0.1", NULL),
                     0);
    buf_init(&b, 1 << 16);
    assert_int_equal(cfg_dump_json(opts, O_COUNT, &b), 0);
    assert_non_null(strstr(b.data, "\"a\\\"\\u003cb\\u003e\""));
    assert_int_equal(json_parse(b.data, b.len, 0, &root, err, sizeof(err)), 0);
    o = json_get(root, "host");
    assert_string_equal(json_get_str(o, "value"), "a\"<b>");
    assert_string_equal(json_get_str(o, "source"), "flag");
    assert_string_equal(json_get_str(o, "env"), "FLEET_HOST");
    o = json_get(root, "port");
    assert_true(json_get_num(o, "value", 0) == 11435);
    assert_string_equal(json_get_str(o, "source"), "default");
    o = json_get(root, "num-parallel");
    assert_true(json_get_num(o, "value", 0) == 2);
    assert_string_equal(json_get_str(o, "source"), "env");
    assert_string_equal(json_get_str(o, "env"), "OLLAMA_NUM_PARALLEL");
    o = json_get(root, "ratio");
    assert_true(json_get_num(o, "value", 0) == 0.1); /* round-trips */
    o = json_get(root, "debug");
    assert_false(json_get_bool(o, "value", true));
    o = json_get(root, "keep-alive");
    assert_true(json_get_num(o, "value", 0) == 300e9);
    cJSON_Delete(root);
    buf_cleanup(&b);

    buf_init(&b, 20); /* too small: fails, leaves b as it was */
    assert_int_equal(buf_appends(&b, "x"), 0);
    assert_int_equal(cfg_dump_json(opts, O_COUNT, &b), -E2BIG);
    assert_string_equal(b.data, "x");
    buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_positional_and_double_dash, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_hides_bad_env, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_str_ownership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_file_nul_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_help_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_json, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
