/*
 * main.c - herd, the coordinator: one endpoint (OpenAI + Ollama APIs) in
 * front of a fleet of Ollama servers. Parses settings (flags, FLEET_*
 * variables, ~/.fleet-manager/env), opens the trace store, starts the
 * HTTP server, the registry ticker and the router on one libuv loop, and
 * shuts down cleanly on SIGTERM/SIGINT: stop accepting, let in-flight
 * answers finish (bounded), flush the traces, exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api.h"
#include "cli_pull.h"
#include "dashboard.h"
#include "exchange.h"
#include "herd.h"
#include "herd/clock.h"
#include "herd/config.h"
#include "herd/fsutil.h"
#include "herd/log.h"
#include "herd/mdns.h"
#include "metrics.h"
#include "pull.h"
#include "router.h"

static struct herd_cfg cfg;
static struct herd H;
static int64_t drain_timeout_ns;
static bool no_traces;

/* clang-format off */
static struct cfg_opt opts[] = {
    {"host", 0, "FLEET_HOST", NULL, CFG_STR, &cfg.host, "0.0.0.0", 0, 0, "HOST",
     "Address to listen on (\"::\" for IPv6)."},
    {"port", 'p', "FLEET_PORT", NULL, CFG_INT, &cfg.port, "11435", 0, 65535, "N",
     "Port to listen on; 0 picks a free one (see --ready-file)."},
    {"data-dir", 0, "FLEET_DATA_DIR", NULL, CFG_STR, &cfg.data_dir,
     "~/.fleet-manager", 0, 0, "DIR",
     "Traces (latency.db) and logs (logs/herd.jsonl) live here."},
    {"log-level", 0, "FLEET_LOG_LEVEL", NULL, CFG_STR, &cfg.log_level, "info", 0,
     0, "LEVEL", "error, warn, info or debug."},
    {"ready-file", 0, "HERD_READY_FILE", NULL, CFG_STR, &cfg.ready_file, NULL, 0,
     0, "PATH", "Once listening, write \"host:port\" here (atomically)."},
    {"token", 0, "FLEET_TOKEN", NULL, CFG_STR, &cfg.token, NULL, 0, 0, "TOKEN",
     "Heartbeats must carry Authorization: Bearer TOKEN (others get 401)."},
    {"min-node-memory-gb", 0, "FLEET_MIN_NODE_MEMORY_GB", NULL, CFG_DOUBLE,
     &cfg.min_node_memory_gb, "0", 0, 1e6, "GB",
     "Nodes with less memory are listed as rejected, never routed."},
    {"mdns", 0, "FLEET_MDNS", NULL, CFG_BOOL, &cfg.mdns, "true", 0, 0, NULL,
     "Announce the coordinator over mDNS (_fleet-manager._tcp)."},
    {"mdns-name", 0, "FLEET_MDNS_SERVICE_NAME", NULL, CFG_STR, &cfg.mdns_name,
     "Fleet Manager Router", 0, 0, "NAME", "mDNS instance name."},
    {"heartbeat-interval", 0, "FLEET_HEARTBEAT_INTERVAL", NULL, CFG_DURATION,
     &cfg.hb_interval_ns, "5", 0, 0, "DUR",
     "How often node status is re-evaluated."},
    {"heartbeat-timeout", 0, "FLEET_HEARTBEAT_TIMEOUT", NULL, CFG_DURATION,
     &cfg.hb_timeout_ns, "15", 0, 0, "DUR",
     "Silent this long: the node is degraded (routable, penalised)."},
    {"heartbeat-offline", 0, "FLEET_HEARTBEAT_OFFLINE", NULL, CFG_DURATION,
     &cfg.hb_offline_ns, "30", 0, 0, "DUR",
     "Silent this long: the node is offline (not routed)."},
    {"node-remove-after", 0, "FLEET_NODE_REMOVE_AFTER", NULL, CFG_DURATION,
     &cfg.remove_after_ns, "10m", 0, 0, "DUR",
     "Offline this long: the node is forgotten (0 = never)."},
    {"max-retries", 0, "FLEET_MAX_RETRIES", NULL, CFG_INT, &cfg.max_retries, "2",
     0, 15, "N", "Other nodes tried when one fails before the first byte."},
    {"hold-timeout", 0, "FLEET_HOLD_TIMEOUT", NULL, CFG_DURATION,
     &cfg.hold_timeout_ns, "30", 0, 0, "DUR",
     "How long a request waits for a free slot before 503."},
    {"max-held", 0, "FLEET_MAX_HELD", NULL, CFG_INT, &cfg.max_held, "10000", 0,
     10000000, "N", "Requests waiting for a slot, at most (then 503)."},
    {"connect-timeout", 0, "FLEET_CONNECT_TIMEOUT", NULL, CFG_DURATION,
     &cfg.connect_timeout_ns, "10", 0, 0, "DUR",
     "Connecting to a node's Ollama, at most."},
    {"request-timeout", 0, "FLEET_REQUEST_TIMEOUT", NULL, CFG_DURATION,
     &cfg.request_timeout_ns, "600", 0, 0, "DUR",
     "Whole-request deadline, holding included (0 = none)."},
    {"first-byte-timeout", 0, "FLEET_FIRST_BYTE_TIMEOUT", NULL, CFG_DURATION,
     &cfg.first_byte_timeout_ns, "300", 0, 0, "DUR",
     "A node silent this long after a request (a cold load counts) is "
     "given up and another tried."},
    {"stream-idle-timeout", 0, "FLEET_STREAM_IDLE_TIMEOUT", NULL,
     CFG_DURATION, &cfg.idle_timeout_ns, "120", 0, 0, "DUR",
     "A stream with no byte for this long is ended (in-band error)."},
    {"max-body", 0, "FLEET_MAX_BODY", NULL, CFG_SIZE, &cfg.max_body, "32MiB", 0,
     0, "SIZE", "Largest request body; bigger ones get 413."},
    {"max-header", 0, "FLEET_MAX_HEADER", NULL, CFG_SIZE, &cfg.max_header,
     "16KiB", 0, 0, "SIZE", "Largest request line + headers; bigger: 431."},
    {"max-line", 0, "FLEET_MAX_UPSTREAM_LINE", NULL, CFG_SIZE,
     &cfg.max_upstream_line, "16MiB", 0, 0, "SIZE",
     "Largest NDJSON line accepted from a node."},
    {"max-connections", 0, "FLEET_MAX_CONNECTIONS", NULL, CFG_INT,
     &cfg.max_conns, "20000", 1, 1000000, "N",
     "Client connections at once; more are closed."},
    {"api-keys", 0, "FLEET_API_KEYS", NULL, CFG_STR, &cfg.api_keys, NULL, 0,
     0, "LIST",
     "Comma list of keys; when set, inference needs Authorization: Bearer "
     "one of them (401 otherwise)."},
    {"admin-key", 0, "FLEET_ADMIN_KEY", NULL, CFG_STR, &cfg.admin_key, NULL, 0,
     0, "KEY",
     "Pull, delete and settings need Authorization: Bearer KEY (none: open)."},
    {"auto-pull", 0, "FLEET_AUTO_PULL", NULL, CFG_BOOL, &cfg.auto_pull, "true",
     0, 0, NULL,
     "A model no node has is pulled onto the node with the most free memory "
     "that fits it, then served."},
    {"auto-pull-timeout", 0, "FLEET_AUTO_PULL_TIMEOUT", NULL, CFG_DURATION,
     &cfg.auto_pull_timeout_ns, "300", 0, 0, "DUR", "Longest pull."},
    {"vram-fallback", 0, "FLEET_VRAM_FALLBACK", NULL, CFG_BOOL,
     &cfg.vram_fallback, "true", 0, 0, NULL,
     "A model cold everywhere is answered by a loaded model of the same "
     "category instead of loading (X-Fleet-Fallback names it)."},
    {"vram-fallback-cross-category", 0, "FLEET_VRAM_FALLBACK_CROSS_CATEGORY",
     NULL, CFG_BOOL, &cfg.vram_fallback_cross, "false", 0, 0, NULL,
     "Let the VRAM fallback use a model of another category."},
    {"context-protection", 0, "FLEET_CONTEXT_PROTECTION", NULL, CFG_STR,
     &cfg.context_protection_s, "strip", 0, 0, "MODE",
     "A client num_ctx that would reload a loaded model: strip (drop it, or "
     "move to a bigger loaded model), warn, or passthrough."},
    {"traces", 0, "FLEET_TRACES", NULL, CFG_BOOL, &cfg.traces, "true", 0, 0,
     NULL, "Record every request in <data-dir>/latency.db."},
    {"trace-retention-days", 0, "FLEET_TRACE_RETENTION_DAYS", NULL, CFG_INT,
     &cfg.retention_days, "90", 0, 36500, "N",
     "Delete traces older than this (0 = keep forever)."},
    {"drain-timeout", 0, "FLEET_DRAIN_TIMEOUT", NULL, CFG_DURATION,
     &drain_timeout_ns, "30", 0, 0, "DUR",
     "On SIGTERM, how long in-flight answers may take to finish."},
    {"score-model-hot", 0, "FLEET_SCORE_MODEL_HOT", NULL, CFG_DOUBLE,
     &cfg.weights.model_hot, "50", -1e6, 1e6, "X", "Signal 1: model loaded."},
    {"score-model-warm", 0, "FLEET_SCORE_MODEL_WARM", NULL, CFG_DOUBLE,
     &cfg.weights.model_warm, "30", -1e6, 1e6, "X",
     "Signal 1: unloaded less than 30 min ago."},
    {"score-model-cold", 0, "FLEET_SCORE_MODEL_COLD", NULL, CFG_DOUBLE,
     &cfg.weights.model_cold, "10", -1e6, 1e6, "X", "Signal 1: on disk."},
    {"score-memory-fit-max", 0, "FLEET_SCORE_MEMORY_FIT_MAX", NULL, CFG_DOUBLE,
     &cfg.weights.memory_fit_max, "20", -1e6, 1e6, "X", "Signal 2 maximum."},
    {"score-queue-depth-max-penalty", 0, "FLEET_SCORE_QUEUE_DEPTH_MAX_PENALTY",
     NULL, CFG_DOUBLE, &cfg.weights.queue_depth_max_penalty, "30", -1e6, 1e6,
     "X", "Signal 3 cap."},
    {"score-queue-depth-penalty-per", 0, "FLEET_SCORE_QUEUE_DEPTH_PENALTY_PER",
     NULL, CFG_DOUBLE, &cfg.weights.queue_depth_penalty_per, "6", -1e6, 1e6,
     "X", "Signal 3 per request in flight."},
    {"score-wait-time-max-penalty", 0, "FLEET_SCORE_WAIT_TIME_MAX_PENALTY", NULL,
     CFG_DOUBLE, &cfg.weights.wait_time_max_penalty, "25", -1e6, 1e6, "X",
     "Signal 4 cap."},
    {"score-role-large-threshold-gb", 0, "FLEET_SCORE_ROLE_LARGE_THRESHOLD_GB",
     NULL, CFG_DOUBLE, &cfg.weights.role_large_threshold_gb, "20", 0, 1e6, "GB",
     "Signal 5: larger models are \"large\"."},
    {"score-role-small-threshold-gb", 0, "FLEET_SCORE_ROLE_SMALL_THRESHOLD_GB",
     NULL, CFG_DOUBLE, &cfg.weights.role_small_threshold_gb, "8", 0, 1e6, "GB",
     "Signal 5: smaller models are \"small\"."},
    {"score-availability-trend-max", 0, "FLEET_SCORE_AVAILABILITY_TREND_MAX",
     NULL, CFG_DOUBLE, &cfg.weights.availability_trend_max, "10", -1e6, 1e6, "X",
     "Signal 6 maximum."},
    {"score-context-fit-max", 0, "FLEET_SCORE_CONTEXT_FIT_MAX", NULL,
     CFG_DOUBLE, &cfg.weights.context_fit_max, "15", -1e6, 1e6, "X",
     "Signal 7 magnitude."},
    {"score-degraded-penalty", 0, "FLEET_SCORE_DEGRADED_PENALTY", NULL,
     CFG_DOUBLE, &cfg.weights.degraded_penalty, "20", -1e6, 1e6, "X",
     "Subtracted from a node whose heartbeat is late."},
    {"score-slot-free-bonus", 0, "FLEET_SCORE_SLOT_FREE_BONUS", NULL, CFG_DOUBLE,
     &cfg.weights.slot_free_bonus, "10", -1e6, 1e6, "X",
     "Added when the model is loaded and a slot is free."},
    {"bandwidth-aware-scoring", 0, "FLEET_BANDWIDTH_AWARE_SCORING", NULL,
     CFG_BOOL, &cfg.weights.bandwidth_aware, "true", 0, 0, NULL,
     "Signal 5 uses memory bandwidth when nodes report it."},
    {"queue-penalty-bandwidth-normalize", 0,
     "FLEET_QUEUE_PENALTY_BANDWIDTH_NORMALIZE", NULL, CFG_BOOL,
     &cfg.weights.queue_penalty_bandwidth_normalize, "true", 0, 0, NULL,
     "Signal 3 divides the depth by the node's relative bandwidth."},
    {"no-traces", 0, NULL, NULL, CFG_BOOL, &no_traces, "false", 0, 0, NULL,
     "Same as FLEET_TRACES=false."},
};
/* clang-format on */
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char usage[] =
    "usage: herd [options]\n"
    "\n"
    "herd is one endpoint for a fleet of Ollama servers. It speaks the\n"
    "OpenAI API (/v1/*) and the Ollama API (/api/*); every herd-node\n"
    "reports its machine and models to it every 5 s (POST /heartbeat); for\n"
    "each request it scores every node, sends the request to the best one\n"
    "with a free slot (or holds it until one frees), streams the answer\n"
    "back, retries on another node when one fails before the first byte,\n"
    "and records the decision in <data-dir>/latency.db.\n"
    "\n"
    "Every option can also be set in the environment (shown after each\n"
    "option) or in ~/.fleet-manager/env; a typed flag wins, then the\n"
    "environment, then the env file, then the default.\n";

static const char epilog[] =
    "\nSubcommand: herd pull MODEL [--node ID] [--url URL] pulls a model\n"
    "onto the fleet through a running herd, with a progress bar.\n"
    "\nEndpoints: /v1/chat/completions /v1/completions /v1/embeddings\n"
    "/v1/models /api/chat /api/generate /api/embed /api/embeddings\n"
    "/api/show /api/tags /api/ps /api/version /api/pull /api/delete\n"
    "/fleet/status /fleet/queue /metrics /dashboard, POST /heartbeat.\n"
    "See docs/herd.md and docs/dashboard.md.\n";

/* --- process helpers ------------------------------------------------------ */

int64_t
herd_now_ns(void)
{
    return (int64_t)clock_mono_ns();
}

uint64_t
herd_rand(struct herd *h)
{
    /* xorshift64* */
    uint64_t x = h->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void
herd_uuid(struct herd *h, char out[37])
{
    uint64_t a = herd_rand(h), b = herd_rand(h);
    unsigned char v[16];

    memcpy(v, &a, 8);
    memcpy(v + 8, &b, 8);
    v[6] = (unsigned char)((v[6] & 0x0f) | 0x40);
    v[8] = (unsigned char)((v[8] & 0x3f) | 0x80);
    /* 8-4-4-4-12 hex digits; by hand, as this runs once a request */
    for (int i = 0, o = 0; i < 16; i++) {
        static const char hex[] = "0123456789abcdef";

        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[v[i] >> 4];
        out[o++] = hex[v[i] & 15];
    }
    out[36] = '\0';
}

/* --- registry events and ticks -------------------------------------------- */

static uv_timer_t tick_timer, drain_timer;
static uv_signal_t sig_term, sig_int;
static struct mdns *mdns;

static void
on_registry_event(const struct registry_event *ev, void *arg)
{
    struct herd *h = arg;

    switch (ev->kind) {
    case REGISTRY_EV_JOINED:
        log_info("node %s joined (%s%s%s)", ev->node_id,
                 registry_status_name(ev->to), *ev->reason ? ": " : "",
                 ev->reason);
        break;
    case REGISTRY_EV_STATUS:
        log_info("node %s: %s -> %s%s%s (silent %.1f s)", ev->node_id,
                 registry_status_name(ev->from), registry_status_name(ev->to),
                 *ev->reason ? ": " : "", ev->reason,
                 (double)ev->silent_ns / 1e9);
        break;
    case REGISTRY_EV_REMOVED:
        log_info("node %s removed after %.0f s offline", ev->node_id,
                 (double)ev->silent_ns / 1e9);
        break;
    }
    router_fleet_changed(h->router);
}

static void
on_tick(uv_timer_t *t)
{
    struct herd *h = t->data;

    registry_tick(h->reg, herd_now_ns());
    exchange_reap(h);
}

/* --- shutdown ------------------------------------------------------------- */

static void
on_handle_closed(uv_handle_t *hd)
{
    (void)hd;
}

static void
on_router_freed(void *ud)
{
    (void)ud;
    H.router = NULL;
}

static void on_client_freed(void *ud);

static void
free_client(struct herd *h)
{
    pulls_free(h->pulls);
    h->pulls = NULL;
    http_client_free(h->cli, on_client_freed, h);
}

static void
on_client_freed(void *ud)
{
    struct herd *h = ud;

    h->cli = NULL;
    router_free(h->router, on_router_freed, h);
}

static void
on_server_freed(void *ud)
{
    struct herd *h = ud;

    h->srv = NULL;
    dashboard_free(h);
    free_client(h);
}

static void
on_mdns_freed(void *ud)
{
    (void)ud;
}

static void
finish_shutdown(struct herd *h)
{
    uv_timer_stop(&drain_timer);
    uv_close((uv_handle_t *)&drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&tick_timer, on_handle_closed);
    if (mdns != NULL) {
        mdns_free(mdns, on_mdns_freed, NULL);
        mdns = NULL;
    }
    http_server_free(h->srv, on_server_freed, h);
}

static void
on_drain_check(uv_timer_t *t)
{
    struct herd *h = t->data;
    static int64_t deadline;

    if (deadline == 0)
        deadline = herd_now_ns() + drain_timeout_ns;
    if (exchange_live() > 0 && herd_now_ns() < deadline)
        return;
    if (exchange_live() > 0)
        log_warn("drain timeout: ending %zu requests still in flight",
                 exchange_live());
    finish_shutdown(h);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    struct herd *h = s->data;

    if (h->draining)
        return;
    h->draining = true;
    log_info("signal %d: draining (%zu requests in flight), then exiting",
             signum, exchange_live());
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    http_server_listen(h->srv, false);
    router_expire_all(h->router); /* held requests: 503 now */
    uv_timer_start(&drain_timer, on_drain_check, 0, 50);
}

/* --- start-up ------------------------------------------------------------- */

static int
open_logs_and_traces(struct herd *h)
{
    char path[4096], err[512];
    struct traces_opts to = {0};
    int rc;

    snprintf(path, sizeof(path), "%s/logs/herd.jsonl", cfg.data_dir);
    if ((rc = log_open_jsonl(path, 30)) != 0)
        log_warn("cannot open %s: %s (logging to stderr only)", path,
                 strerror(-rc));
    if (!cfg.traces)
        return 0;
    snprintf(path, sizeof(path), "%s/latency.db", cfg.data_dir);
    to.retention_days = (int)cfg.retention_days;
    h->traces = traces_open(path, &to, err, sizeof(err));
    if (h->traces == NULL) {
        log_error("traces: %s", err);
        return -1;
    }
    return 0;
}

static int
start_server(struct herd *h)
{
    struct http_server_opts so = {
        .host = cfg.host,
        .port = (unsigned)cfg.port,
        .max_body = cfg.max_body,
        .max_header = cfg.max_header,
        .max_conns = (unsigned)cfg.max_conns,
        .idle_timeout_s = 600,
        .stream_max_queue = 64u << 20,
        .on_request = api_on_request,
        .ud = h,
    };
    char err[256], ready[300];
    unsigned port;
    int n;

    h->srv = http_server_new(h->loop, &so, err, sizeof(err));
    if (h->srv == NULL) {
        log_error("listen: %s", err);
        return -1;
    }
    port = http_server_port(h->srv);
    log_info("herd %s listening on %s:%u", HERD_VERSION, cfg.host, port);
    fprintf(stderr,
            "\n  herd %s — one endpoint for your Ollama fleet\n"
            "    OpenAI API    http://localhost:%u/v1\n"
            "    Ollama API    http://localhost:%u/api\n"
            "    Fleet status  http://localhost:%u/fleet/status\n"
            "    Heartbeats    POST http://localhost:%u/heartbeat%s\n"
            "    Traces        %s/latency.db%s\n"
            "    Logs          %s/logs/herd.jsonl\n\n",
            HERD_VERSION, port, port, port, port,
            cfg.token && *cfg.token ? " (token required)" : "", cfg.data_dir,
            cfg.traces ? "" : " (off)", cfg.data_dir);
    n = snprintf(ready, sizeof(ready), "%s:%u\n", cfg.host, port);
    if (cfg.ready_file != NULL &&
        fs_write_atomic(cfg.ready_file, ready, (size_t)n) != 0) {
        log_syserr("ready file %s", cfg.ready_file);
        return -1;
    }
    return 0;
}

static void
start_mdns(struct herd *h)
{
    char err[256];
    static const char *const txt[] = {"version=" HERD_VERSION, NULL};

    if (!cfg.mdns)
        return;
    mdns = mdns_new(h->loop, err, sizeof(err));
    if (mdns == NULL) {
        log_info("mDNS: %s; nodes need --router-url", err);
        return;
    }
    if (mdns_publish(mdns, cfg.mdns_name, "_fleet-manager._tcp",
                     http_server_port(h->srv), txt) != 0)
        log_warn("mDNS: cannot publish %s", cfg.mdns_name);
    else
        log_info("mDNS: publishing \"%s\" (_fleet-manager._tcp, port %u) "
                 "whenever avahi-daemon is reachable",
                 cfg.mdns_name, http_server_port(h->srv));
}

static int
setup(struct herd *h)
{
    struct registry_config rc;
    char path[4096];
    enum log_level lvl;

    if (log_parse_level(cfg.log_level, &lvl) != 0) {
        log_error("--log-level %s: use error, warn, info or debug",
                  cfg.log_level);
        return 2;
    }
    log_set_level(lvl);
    if (fs_expand_home(cfg.data_dir, path, sizeof(path)) != 0) {
        log_error("--data-dir %s: cannot expand", cfg.data_dir);
        return 2;
    }
    free(cfg.data_dir);
    cfg.data_dir = strdup(path);
    if (no_traces)
        cfg.traces = false;
    if (strcmp(cfg.context_protection_s, "strip") == 0)
        cfg.context_protection = CTX_STRIP;
    else if (strcmp(cfg.context_protection_s, "warn") == 0)
        cfg.context_protection = CTX_WARN;
    else if (strcmp(cfg.context_protection_s, "passthrough") == 0)
        cfg.context_protection = CTX_PASSTHROUGH;
    else {
        log_error("FLEET_CONTEXT_PROTECTION '%s': use strip, warn or "
                  "passthrough",
                  cfg.context_protection_s);
        return 2;
    }
    if (cfg.hb_offline_ns <= cfg.hb_timeout_ns) {
        log_error("FLEET_HEARTBEAT_OFFLINE (%.1f s) must be longer than "
                  "FLEET_HEARTBEAT_TIMEOUT (%.1f s)",
                  (double)cfg.hb_offline_ns / 1e9,
                  (double)cfg.hb_timeout_ns / 1e9);
        return 2;
    }
    cfg.weights.wait_time = true;
    h->cfg = &cfg;
    h->loop = uv_default_loop();
    if (getrandom(&h->rng, sizeof(h->rng), 0) != sizeof(h->rng))
        h->rng = (uint64_t)clock_wall_ns() ^ (uint64_t)getpid();
    h->rng |= 1;
    h->started_wall_ns = clock_wall_ns();
    if (gethostname(h->hostname, sizeof(h->hostname) - 1) != 0)
        h->hostname[0] = '\0';
    registry_config_default(&rc);
    rc.heartbeat_timeout_ns = cfg.hb_timeout_ns;
    rc.heartbeat_offline_ns = cfg.hb_offline_ns;
    rc.remove_after_ns = cfg.remove_after_ns;
    rc.min_node_memory_gb = cfg.min_node_memory_gb;
    h->reg = registry_new(&rc);
    registry_set_event_cb(h->reg, on_registry_event, h);
    if (open_logs_and_traces(h) != 0)
        return 1;
    h->cli = http_client_new(h->loop);
    h->router = router_new(h);
    h->metrics = metrics_new();
    h->pulls = pulls_new(h);
    if (h->cli == NULL || h->router == NULL || h->metrics == NULL ||
        h->pulls == NULL) {
        log_error("out of memory");
        return 1;
    }
    if (dashboard_init(h) != 0)
        return 1;
    return 0;
}

int
main(int argc, char **argv)
{
    char err[512];
    int first, rc;
    int64_t tick_ms;

    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "pull") == 0)
        return herd_cli_pull(argc - 2, argv + 2);
    log_init("herd", LL_INFO);
    scorer_weights_default(&cfg.weights);
    if (cfg_load_env_file(err, sizeof(err)) != 0)
        log_warn("env file: %s", err);
    rc = cfg_parse(opts, N_OPTS, argc, argv, &first, err, sizeof(err));
    if (rc == CFG_HELP) {
        cfg_print_help(stdout, usage, opts, N_OPTS, epilog);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc == CFG_VERSION) {
        printf("herd %s\n", HERD_VERSION);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc != 0 || first < argc) {
        fprintf(stderr, "herd: %s\nTry 'herd --help'.\n",
                rc != 0 ? err : "unexpected argument");
        cfg_free(opts, N_OPTS);
        return 2;
    }
    if ((rc = setup(&H)) != 0 || (rc = start_server(&H)) != 0) {
        traces_close(H.traces);
        cfg_free(opts, N_OPTS);
        return rc ? rc : 1;
    }
    start_mdns(&H);
    uv_timer_init(H.loop, &tick_timer);
    uv_timer_init(H.loop, &drain_timer);
    tick_timer.data = drain_timer.data = &H;
    tick_ms = cfg.hb_interval_ns / 1000000;
    if (tick_ms > 1000)
        tick_ms = 1000; /* status changes are seen within a second */
    uv_timer_start(&tick_timer, on_tick, (uint64_t)(tick_ms > 0 ? tick_ms : 1),
                   (uint64_t)(tick_ms > 0 ? tick_ms : 1));
    uv_signal_init(H.loop, &sig_term);
    uv_signal_init(H.loop, &sig_int);
    sig_term.data = sig_int.data = &H;
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_run(H.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&sig_int, on_handle_closed);
    uv_run(H.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(H.loop);
    if (rc != 0)
        log_warn("loop closed with handles still open (%s)", uv_strerror(rc));
    if (H.traces != NULL) {
        struct traces_stats st;

        traces_flush(H.traces);
        traces_stats(H.traces, &st);
        log_info("traces: %llu written, %llu dropped",
                 (unsigned long long)st.written,
                 (unsigned long long)st.dropped);
        traces_close(H.traces);
    }
    registry_free(H.reg);
    metrics_free(H.metrics);
    log_info("bye");
    log_close();
    cfg_free(opts, N_OPTS);
    return 0;
}
