/*
 * main.c - herd-sim: a faithful Ollama emulator for tests, demos and
 * benchmarks. Parses settings (flags, OLLAMA_* environment), builds the
 * catalogue, scheduler and HTTP server on one libuv loop, writes the
 * ready file, and shuts down cleanly on SIGTERM/SIGINT (exit 0).
 */
#include "sim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herd/config.h"
#include "herd/fsutil.h"
#include "herd/log.h"
#include "herd/parse.h"

#define MAX_CLI_LIST 64

static struct {
    char *host, *ready_file, *profile, *catalog, *origins, *log_level;
    int64_t port, num_parallel, max_loaded, max_queue, context_length, seed;
    int64_t keep_alive;
    double time_scale, memory_gb, vram_gb, bandwidth;
    uint64_t max_body;
    bool no_defaults, no_tool_calls;
} o;

/* Repeatable options, collected before cfg_parse sees argv. */
static const char *models[MAX_CLI_LIST], *faults[MAX_CLI_LIST];
static size_t n_models, n_faults;

static struct cfg_opt opts[] = {
    {"host", 0, NULL, NULL, CFG_STR, &o.host, "127.0.0.1", 0, 0, "HOST",
     "Address to listen on (OLLAMA_HOST=host[:port] is also honoured)."},
    {"port", 'p', NULL, NULL, CFG_INT, &o.port, "11434", 0, 65535, "N",
     "Port to listen on; 0 picks a free one (see --ready-file)."},
    {"ready-file", 0, "HERD_SIM_READY_FILE", NULL, CFG_STR, &o.ready_file, NULL,
     0, 0, "PATH", "Once listening, write \"host:port\" here (atomically)."},
    {"profile", 0, "HERD_SIM_PROFILE", NULL, CFG_STR, &o.profile, "rtx-4090", 0,
     0, "NAME", "Hardware profile: mac-studio, rtx-4090, mac-mini or cpu."},
    {"memory-gb", 0, NULL, NULL, CFG_DOUBLE, &o.memory_gb, "0", 0, 1e6, "GB",
     "Override the profile's system memory."},
    {"vram-gb", 0, NULL, NULL, CFG_DOUBLE, &o.vram_gb, "0", 0, 1e6, "GB",
     "Override the profile's GPU memory."},
    {"bandwidth-gbs", 0, NULL, NULL, CFG_DOUBLE, &o.bandwidth, "0", 0, 1e6,
     "GB/S", "Override the profile's memory bandwidth (sets tokens/s)."},
    {"catalog", 0, "HERD_SIM_CATALOG", NULL, CFG_STR, &o.catalog, NULL, 0, 0,
     "FILE", "Installed models from a JSON file (array of model specs)."},
    {"no-default-models", 0, NULL, NULL, CFG_BOOL, &o.no_defaults, "false", 0,
     0, NULL, "Do not install the built-in models."},
    {"time-scale", 0, "HERD_SIM_TIME_SCALE", NULL, CFG_DOUBLE, &o.time_scale,
     "1", 0, 1000, "X",
     "Real delay = modelled delay * X (0: instant; reported durations stay "
     "modelled)."},
    {"num-parallel", 0, "OLLAMA_NUM_PARALLEL", NULL, CFG_INT, &o.num_parallel,
     "1", 1, 256, "N", "Parallel requests per loaded model."},
    {"max-loaded-models", 0, "OLLAMA_MAX_LOADED_MODELS", NULL, CFG_INT,
     &o.max_loaded, "0", 0, 1024, "N",
     "Most models loaded at once; 0 = 3 per GPU (3 on CPU)."},
    {"max-queue", 0, "OLLAMA_MAX_QUEUE", NULL, CFG_INT, &o.max_queue, "512", 1,
     1000000, "N",
     "Requests waiting to be scheduled before 503 \"server busy\"."},
    {"keep-alive", 0, "OLLAMA_KEEP_ALIVE", NULL, CFG_DURATION, &o.keep_alive,
     "5m", 0, 0, "DUR",
     "Default idle time before unload (Go duration or seconds; negative = "
     "forever)."},
    {"context-length", 0, "OLLAMA_CONTEXT_LENGTH", NULL, CFG_INT,
     &o.context_length, "0", 0, 1 << 24, "N",
     "Default num_ctx; 0 = by VRAM (4096, 32768 or 262144)."},
    {"origins", 0, "OLLAMA_ORIGINS", NULL, CFG_STR, &o.origins, NULL, 0, 0,
     "LIST", "Extra CORS origins, comma-separated; * allows all."},
    {"seed", 0, "HERD_SIM_SEED", NULL, CFG_INT, &o.seed, "0", 0, 1e18, "N",
     "Base seed of the generated text."},
    {"no-tool-calls", 0, NULL, NULL, CFG_BOOL, &o.no_tool_calls, "false", 0, 0,
     NULL, "Answer in text even when the request offers tools."},
    {"max-body", 0, "HERD_SIM_MAX_BODY", NULL, CFG_SIZE, &o.max_body, "32MiB",
     0, 0, "SIZE", "Largest request body; bigger ones get 413."},
    {"log-level", 0, "HERD_SIM_LOG_LEVEL", NULL, CFG_STR, &o.log_level, "info",
     0, 0, "LEVEL", "error, warn, info or debug."},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char usage[] =
    "usage: herd-sim [options]\n"
    "\n"
    "herd-sim emulates an Ollama server: the native /api/* and the OpenAI\n"
    "/v1/* endpoints with Ollama's fields, units, streaming and errors; its\n"
    "scheduler (parallel slots, max loaded models, queue and 503, keep-alive,\n"
    "reload on num_ctx change, eviction, prompt-prefix cache); timings from a\n"
    "hardware profile; and fault injection. For tests, demos and benchmarks\n"
    "of herd.\n"
    "\n"
    "Repeatable:\n"
    "  --model SPEC     install a model: name[:tag][,size=4.7GB][,params=8B]\n"
    "                   [,quant=Q4_K_M][,family=llama][,ctx=N][,embed_len=N]\n"
    "                   [,embed][,tools][,thinking][,vision][,insert]\n"
    "  --fault SPEC     inject a fault: 500 | 503 | hang[:DUR] | refuse:DUR |\n"
    "                   die-after:N | error-after:N | slow:Nx,\n"
    "                   then [,count=N][,model=NAME]\n";

static const char epilog[] =
    "\nRun-time control:\n"
    "  POST /_sim/fault {\"kind\":\"die_after\",\"after_tokens\":5,"
    "\"count\":1}\n"
    "       kinds: none, refuse (duration_ms), 500, 503, hang (duration_ms),\n"
    "       die_after / error_after (after_tokens), slow (factor);\n"
    "       optional count, model\n"
    "  DELETE /_sim/fault   clear every fault\n"
    "  GET /_sim/state      runners, queue, counters, faults\n"
    "  GET /_sim/requests   the last 64 inference requests as received\n"
    "\nDefault models: llama3.2:3b, llama3.1:8b, qwen3:8b, qwen2.5-coder:7b,\n"
    "gemma3:4b, nomic-embed-text, llama3.3:70b. See docs/herd-sim.md.\n";

/* Pulls --model/--fault (repeatable) out of argv. */
static int
take_repeatable(int *argc, char **argv)
{
    int out = 1;

    for (int i = 1; i < *argc; i++) {
        const char **list = NULL;
        size_t *n = NULL;
        const char *val = NULL;

        if (strcmp(argv[i], "--model") == 0 ||
            strncmp(argv[i], "--model=", 8) == 0) {
            list = models;
            n = &n_models;
        } else if (strcmp(argv[i], "--fault") == 0 ||
                   strncmp(argv[i], "--fault=", 8) == 0) {
            list = faults;
            n = &n_faults;
        }
        if (list == NULL) {
            argv[out++] = argv[i];
            continue;
        }
        val = strchr(argv[i], '=');
        if (val != NULL) {
            val++;
        } else if (i + 1 < *argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "herd-sim: %s needs a value\n", argv[i]);
            return -1;
        }
        if (*n == MAX_CLI_LIST) {
            fprintf(stderr, "herd-sim: too many %s\n", argv[i]);
            return -1;
        }
        list[(*n)++] = val;
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

/* OLLAMA_HOST=[scheme://]host[:port] when --host/--port were not typed. */
static void
apply_ollama_host(void)
{
    const char *env = getenv("OLLAMA_HOST");
    char buf[256], *h, *colon;
    const char *why;
    int64_t port;

    if (env == NULL || *env == '\0')
        return;
    snprintf(buf, sizeof(buf), "%s", env);
    h = strstr(buf, "://") ? strstr(buf, "://") + 3 : buf;
    if (strchr(h, '/') != NULL)
        *strchr(h, '/') = '\0';
    colon = strrchr(h, ':');
    if (*h == '[' && strchr(h, ']') != NULL) {
        colon = strchr(h, ']')[1] == ':' ? strchr(h, ']') + 1 : NULL;
        *strchr(h, ']') = '\0';
        h++;
    }
    if (colon != NULL) {
        *colon = '\0';
        if (opts[1].src == CFG_SRC_DEFAULT &&
            parse_i64(colon + 1, 0, 65535, &port, &why) == 0)
            o.port = port;
    }
    if (opts[0].src == CFG_SRC_DEFAULT && *h != '\0') {
        free(o.host);
        o.host = strdup(h);
    }
}

static int
setup_origins(struct sim *sim)
{
    const char *s = o.origins;

    while (s != NULL && *s) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);

        while (n > 0 && (*s == ' ' || *s == '"')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '"'))
            n--;
        if (n == 1 && *s == '*')
            sim->all_origins = true;
        else if (n > 0 && sim->n_origins < SIM_MAX_ORIGINS &&
                 (sim->origins[sim->n_origins] = strndup(s, n)) != NULL)
            sim->n_origins++;
        s = end ? end + 1 : NULL;
    }
    return 0;
}

static int
setup_catalog(struct sim *sim)
{
    char err[512];

    catalog_init(&sim->catalog);
    if (!o.no_defaults && n_models == 0 && o.catalog == NULL &&
        catalog_add_defaults(&sim->catalog) != 0)
        return -1;
    if (o.catalog != NULL &&
        catalog_load_file(&sim->catalog, o.catalog, err, sizeof(err)) != 0) {
        log_error("--catalog %s: %s", o.catalog, err);
        return -1;
    }
    for (size_t i = 0; i < n_models; i++) {
        if (catalog_add_spec(&sim->catalog, models[i], err, sizeof(err))) {
            log_error("--model %s: %s", models[i], err);
            return -1;
        }
    }
    return 0;
}

static int
setup_profile(struct sim *sim)
{
    if (profile_lookup(o.profile, &sim->profile) != 0) {
        log_error("--profile %s: unknown (mac-studio, rtx-4090, mac-mini, "
                  "cpu)",
                  o.profile);
        return -1;
    }
    if (o.memory_gb > 0)
        sim->profile.mem_gb = o.memory_gb;
    if (o.vram_gb > 0)
        sim->profile.vram_gb = o.vram_gb;
    if (o.bandwidth > 0)
        sim->profile.bw_gbs = o.bandwidth;
    return 0;
}

static int
setup_faults(struct sim *sim, int64_t *refuse_ns)
{
    char err[256];

    *refuse_ns = 0;
    for (size_t i = 0; i < n_faults; i++) {
        struct fault f;

        if (fault_parse_spec(faults[i], &f, err, sizeof(err)) != 0) {
            log_error("--fault %s: %s", faults[i], err);
            return -1;
        }
        if (f.kind == FAULT_REFUSE)
            *refuse_ns = f.duration_ns;
        else if (fault_add(&sim->faults, &f) != 0) {
            log_error("--fault: at most %d faults", FAULT_MAX);
            return -1;
        }
    }
    return 0;
}

/* --- shutdown: server, then scheduler, then the loop's own handles --- */

static uv_signal_t sig_term, sig_int;
static struct sim the_sim;

static void
on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void
on_sched_freed(void *ud)
{
    struct sim *sim = ud;

    sim->sched = NULL;
    uv_close((uv_handle_t *)&sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&sim->refuse_timer, on_handle_closed);
}

static void
on_server_freed(void *ud)
{
    struct sim *sim = ud;

    sim->server = NULL;
    sched_free(sim->sched, on_sched_freed, sim);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    struct sim *sim = s->data;

    if (sim->draining)
        return;
    sim->draining = true;
    log_info("signal %d: shutting down (%zu requests in flight)", signum,
             sim->active_gens);
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    uv_timer_stop(&sim->refuse_timer);
    http_server_free(sim->server, on_server_freed, sim);
}

static int
start_server(struct sim *sim)
{
    struct http_server_opts so = {
        .host = o.host,
        .port = (unsigned)o.port,
        .max_body = o.max_body,
        .max_header = 64 * 1024,
        .max_conns = 20000,
        .idle_timeout_s = 600,
        .stream_max_queue = 16u << 20,
        .on_request = api_on_request,
        .ud = sim,
    };
    char err[256], ready[300];
    int n;

    sim->server = http_server_new(sim->loop, &so, err, sizeof(err));
    if (sim->server == NULL) {
        log_error("listen: %s", err);
        return -1;
    }
    n = snprintf(ready, sizeof(ready), "%s:%u\n", o.host,
                 http_server_port(sim->server));
    log_info("herd-sim %s (Ollama %s) listening on %s:%u, profile %s, "
             "%zu models, time scale %g",
             HERD_VERSION, SIM_OLLAMA_VERSION, o.host,
             http_server_port(sim->server), sim->profile.name, sim->catalog.n,
             sim->time_scale);
    if (o.ready_file != NULL &&
        fs_write_atomic(o.ready_file, ready, (size_t)n) != 0) {
        log_syserr("ready file %s", o.ready_file);
        return -1;
    }
    return 0;
}

static bool
host_is_loopback(const char *h)
{
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 ||
           strcmp(h, "::1") == 0;
}

static int
run(struct sim *sim)
{
    struct sched_opts so;
    int64_t refuse_ns;
    enum log_level lvl;

    if (log_parse_level(o.log_level, &lvl) != 0) {
        log_error("--log-level %s: use error, warn, info or debug",
                  o.log_level);
        return 2;
    }
    log_set_level(lvl);
    if (setup_profile(sim) || setup_catalog(sim) ||
        setup_faults(sim, &refuse_ns))
        return 2;
    setup_origins(sim);
    sim->loop = uv_default_loop();
    sim->time_scale = o.time_scale;
    sim->seed = (uint64_t)o.seed;
    sim->tool_calls = !o.no_tool_calls;
    sim->loopback = host_is_loopback(o.host);
    sim->max_body = o.max_body;
    if (gethostname(sim->hostname, sizeof(sim->hostname) - 1) != 0)
        sim->hostname[0] = '\0';
    so = (struct sched_opts){
        .num_parallel = (int)o.num_parallel,
        .max_loaded = (int)o.max_loaded,
        .max_queue = (int)o.max_queue,
        .default_keep_alive = o.keep_alive < 0 ? SCHED_FOREVER : o.keep_alive,
        .context_length = (uint32_t)o.context_length,
        .time_scale = o.time_scale,
        .profile = &sim->profile,
    };
    sim->sched = sched_new(sim->loop, &so);
    uv_timer_init(sim->loop, &sim->refuse_timer);
    sim->refuse_timer.data = sim;
    if (sim->sched == NULL || start_server(sim) != 0)
        return 1;
    if (refuse_ns > 0)
        simctl_refuse(sim, refuse_ns);
    uv_signal_init(sim->loop, &sig_term);
    uv_signal_init(sim->loop, &sig_int);
    sig_term.data = sig_int.data = sim;
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    uv_run(sim->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(sim->loop) != 0) {
        log_error("loop closed with handles still open");
        return 1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct sim *sim = &the_sim;
    char err[512];
    int first, rc;

    log_init("herd-sim", LL_INFO);
    if (take_repeatable(&argc, argv) != 0)
        return 2;
    if (cfg_load_env_file(err, sizeof(err)) != 0)
        log_warn("%s", err);
    rc = cfg_parse(opts, N_OPTS, argc, argv, &first, err, sizeof(err));
    if (rc == CFG_HELP) {
        cfg_print_help(stdout, usage, opts, N_OPTS, epilog);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc == CFG_VERSION) {
        printf("herd-sim %s (emulates Ollama %s)\n", HERD_VERSION,
               SIM_OLLAMA_VERSION);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc != 0 || first < argc) {
        fprintf(stderr, "herd-sim: %s\n",
                rc != 0 ? err : "unexpected argument (see --help)");
        cfg_free(opts, N_OPTS);
        return 2;
    }
    apply_ollama_host();
    rc = run(sim);
    catalog_cleanup(&sim->catalog);
    simctl_cleanup(sim);
    for (size_t i = 0; i < sim->n_origins; i++)
        free(sim->origins[i]);
    cfg_free(opts, N_OPTS);
    log_close();
    return rc;
}
