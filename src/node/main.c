/*
 * main.c - herd-node: the agent that runs beside Ollama on every machine
 * of the fleet and reports to the coordinator (see agent.h and
 * docs/herd-node.md).
 *
 *   herd-node [options]                         run the agent
 *   herd-node override full|paused|clear [...]  set the capacity override
 *
 * Settings come from flags, FLEET_NODE_* variables, the env file, then
 * defaults (config.h). SIGTERM/SIGINT drain: the capacity state is saved,
 * the coordinator told, every handle closed, and the exit status is 0.
 */
#include "agent.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "herd/clock.h"
#include "herd/config.h"
#include "herd/fsutil.h"
#include "herd/log.h"

#define LOG_KEEP_DAYS 30

static struct {
    char *node_id, *ollama_host, *router_url, *data_dir, *log_level, *token;
    char *ready_file;
    bool learn_capacity;
    int64_t num_parallel;
    double interval;
    double hours; /* override subcommand */
} o;

static struct cfg_opt opts[] = {
    {"node-id", 0, "FLEET_NODE_NODE_ID", NULL, CFG_STR, &o.node_id, NULL, 0, 0,
     "ID", "Node identifier (default: the host name up to its first dot)."},
    {"ollama-host", 0, "FLEET_NODE_OLLAMA_HOST", NULL, CFG_STR, &o.ollama_host,
     "http://localhost:11434", 0, 0, "URL", "The local Ollama."},
    {"router-url", 0, "FLEET_NODE_ROUTER_URL", NULL, CFG_STR, &o.router_url,
     NULL, 0, 0, "URL",
     "Coordinator, e.g. http://10.0.0.5:11435 (default: discover it via "
     "mDNS)."},
    {"learn-capacity", 0, "FLEET_NODE_ENABLE_CAPACITY_LEARNING", NULL, CFG_BOOL,
     &o.learn_capacity, "false", 0, 0, NULL,
     "Learn when this machine is busy and report how much of it the fleet "
     "may use."},
    {"data-dir", 0, "FLEET_NODE_DATA_DIR", NULL, CFG_STR, &o.data_dir,
     "~/.fleet-manager", 0, 0, "DIR",
     "Capacity state, override file and logs/herd-node.jsonl."},
    {"token", 0, "FLEET_NODE_TOKEN", "FLEET_TOKEN", CFG_STR, &o.token, NULL, 0,
     0, "TOKEN",
     "Sent as \"Authorization: Bearer TOKEN\" (the coordinator's "
     "FLEET_TOKEN)."},
    {"num-parallel", 0, "FLEET_NODE_OLLAMA_NUM_PARALLEL", NULL, CFG_INT,
     &o.num_parallel, NULL, 1, 1024, "N",
     "Ollama's parallel requests per model (default: OLLAMA_NUM_PARALLEL, "
     "else 1)."},
    {"heartbeat-interval", 0, "FLEET_NODE_HEARTBEAT_INTERVAL", NULL, CFG_DOUBLE,
     &o.interval, "5", 0.05, 3600, "SECONDS",
     "Time between heartbeats; fractions allowed."},
    {"log-level", 0, "FLEET_LOG_LEVEL", NULL, CFG_STR, &o.log_level, "info", 0,
     0, "LEVEL", "error, warn, info or debug."},
    {"ready-file", 0, NULL, NULL, CFG_STR, &o.ready_file, NULL, 0, 0, "PATH",
     "Write \"ok\" here (atomically) once the coordinator accepted a "
     "heartbeat."},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* The override subcommand's own table. */
static struct cfg_opt ov_opts[] = {
    {"node-id", 0, "FLEET_NODE_NODE_ID", NULL, CFG_STR, &o.node_id, NULL, 0, 0,
     "ID", "Node identifier (default: the host name up to its first dot)."},
    {"data-dir", 0, "FLEET_NODE_DATA_DIR", NULL, CFG_STR, &o.data_dir,
     "~/.fleet-manager", 0, 0, "DIR", "The agent's data directory."},
    {"hours", 0, NULL, NULL, CFG_DOUBLE, &o.hours, "24", 0.01, 24 * 365, "N",
     "How long the override lasts."},
};
#define N_OV_OPTS (sizeof(ov_opts) / sizeof(ov_opts[0]))

static const char usage[] =
    "usage: herd-node [options]\n"
    "       herd-node override full|paused|clear [--hours N] [--node-id ID]\n"
    "                 [--data-dir DIR]\n"
    "\n"
    "herd-node runs beside Ollama and reports this machine to the herd\n"
    "coordinator every heartbeat interval: CPU, memory, pressure, disk,\n"
    "temperature, GPUs, the models Ollama has loaded and installed, and\n"
    "what the capacity learner allows. SIGTERM/SIGINT tell the coordinator\n"
    "the node leaves, then exit 0.\n";

static const char epilog[] =
    "\nThe override subcommand writes <data-dir>/capacity-override-<id>.json;\n"
    "a running agent applies it at its next heartbeat: \"paused\" takes the\n"
    "node out of routing, \"full\" offers 80 % of its memory, \"clear\"\n"
    "returns to normal. See docs/herd-node.md.\n";

static void
default_node_id(void)
{
    char host[256] = "";

    if (o.node_id != NULL && o.node_id[0] != '\0')
        return;
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "node");
    host[strcspn(host, ".")] = '\0';
    free(o.node_id);
    o.node_id = strdup(host);
    if (o.node_id == NULL)
        fatal("out of memory");
}

static int
expand_data_dir(char *out, size_t n)
{
    if (fs_expand_home(o.data_dir, out, n) != 0) {
        fprintf(stderr, "herd-node: --data-dir %s: path too long\n",
                o.data_dir);
        return -1;
    }
    return 0;
}

/* --- herd-node override ----------------------------------------------------
 */

static int
cmd_override(int argc, char **argv)
{
    enum capacity_override mode;
    char err[512], dir[1024], path[1300];
    char *args[64];
    const char *mode_s = NULL;
    struct buf b;
    double now = (double)clock_wall_ns() / (double)NS_PER_SEC;
    int n = 0, first, rc;

    /* The mode may come before or after the options. */
    for (int i = 0; i < argc && n < 63; i++) {
        if (i > 0 && mode_s == NULL && argv[i][0] != '-' &&
            (i == 1 || argv[i - 1][0] != '-' || strchr(argv[i - 1], '=')))
            mode_s = argv[i];
        else
            args[n++] = argv[i];
    }
    args[n] = NULL;
    rc = cfg_parse(ov_opts, N_OV_OPTS, n, args, &first, err, sizeof(err));
    if (rc == CFG_HELP || rc == CFG_VERSION) {
        cfg_print_help(stdout, usage, ov_opts, N_OV_OPTS, epilog);
        return 0;
    }
    if (rc != 0 || first < n || mode_s == NULL) {
        fprintf(stderr, "herd-node override: %s\n",
                rc != 0 ? err : "give one of full, paused or clear");
        return 2;
    }
    if (strcmp(mode_s, "clear") == 0)
        mode = CAPACITY_OVERRIDE_NONE;
    else if (strcmp(mode_s, "none") == 0 ||
             capacity_override_parse(mode_s, &mode) != 0) {
        fprintf(stderr,
                "herd-node override: '%s': use full, paused or "
                "clear\n",
                mode_s);
        return 2;
    }
    default_node_id();
    if (expand_data_dir(dir, sizeof(dir)) != 0 ||
        agent_override_path(dir, o.node_id, path, sizeof(path)) != 0)
        return 2;
    buf_init(&b, AGENT_OVERRIDE_MAX);
    rc = agent_override_json(mode, now + o.hours * 3600, now, &b);
    if (rc == 0 && (rc = fs_mkdir_p(dir, 0700)) == 0)
        rc = fs_write_atomic(path, b.data, b.len);
    buf_cleanup(&b);
    if (rc != 0) {
        fprintf(stderr, "herd-node override: %s: %s\n", path, strerror(-rc));
        return 1;
    }
    if (mode == CAPACITY_OVERRIDE_NONE)
        printf("capacity override of node %s cleared (%s)\n", o.node_id, path);
    else
        printf("capacity override of node %s: %s for %g hours (%s)\n",
               o.node_id, mode_s, o.hours, path);
    printf("a running herd-node applies it at its next heartbeat\n");
    return 0;
}

/* --- the agent -------------------------------------------------------------
 */

static uv_signal_t sig_term, sig_int;
static struct agent *the_agent;

static void
on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void
on_agent_stopped(void *ud)
{
    (void)ud;
    uv_close((uv_handle_t *)&sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&sig_int, on_handle_closed);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    log_info("signal %d: draining", signum);
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    agent_stop(the_agent, on_agent_stopped, NULL);
}

static void
log_startup(const struct agent_config *c)
{
    log_info("herd-node %s: node %s, Ollama %s, coordinator %s, heartbeat "
             "every %g s, capacity learning %s, num_parallel %d, data %s",
             HERD_VERSION, c->node_id, c->ollama_host,
             c->router_url && *c->router_url
                 ? c->router_url
                 : "discovering via mDNS (" AGENT_MDNS_TYPE ")",
             c->interval_s, c->learn_capacity ? "on" : "off", c->num_parallel,
             c->data_dir);
}

static int
run_agent(void)
{
    uv_loop_t *loop = uv_default_loop();
    char dir[1024], logpath[1200], err[512];
    struct agent_config c;
    enum log_level lvl;
    int rc, status = 0;

    if (log_parse_level(o.log_level, &lvl) != 0) {
        fprintf(stderr,
                "herd-node: --log-level %s: use error, warn, info or "
                "debug\n",
                o.log_level);
        return 2;
    }
    log_set_level(lvl);
    default_node_id();
    if (expand_data_dir(dir, sizeof(dir)) != 0)
        return 2;
    snprintf(logpath, sizeof(logpath), "%s/logs/herd-node.jsonl", dir);
    rc = log_open_jsonl(logpath, LOG_KEEP_DAYS);
    if (rc != 0)
        log_warn("log file %s: %s (logging to stderr only)", logpath,
                 strerror(-rc));
    c = (struct agent_config){
        .node_id = o.node_id,
        .ollama_host = o.ollama_host,
        .router_url = o.router_url,
        .data_dir = dir,
        .token = o.token,
        .ready_file = o.ready_file,
        .learn_capacity = o.learn_capacity,
        .interval_s = o.interval,
        .num_parallel = probe_num_parallel(NULL, getenv("OLLAMA_NUM_PARALLEL")),
    };
    if (o.num_parallel > 0)
        c.num_parallel = (int)o.num_parallel;
    the_agent = agent_new(loop, &c, err, sizeof(err));
    if (the_agent == NULL) {
        log_error("%s", err);
        return 2;
    }
    log_startup(&c);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    signal(SIGPIPE, SIG_IGN);
    rc = agent_start(the_agent, err, sizeof(err));
    if (rc != 0) {
        log_error("%s", err);
        status = rc == -ENOTSUP ? 2 : 1;
        agent_stop(the_agent, on_agent_stopped, NULL);
    } else {
        uv_signal_start(&sig_term, on_signal, SIGTERM);
        uv_signal_start(&sig_int, on_signal, SIGINT);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    agent_free(the_agent);
    the_agent = NULL;
    if (uv_loop_close(loop) != 0) {
        log_error("loop closed with handles still open");
        return 1;
    }
    if (status == 0)
        log_info("stopped");
    return status;
}

int
main(int argc, char **argv)
{
    char err[512];
    int first, rc;

    log_init("herd-node", LL_INFO);
    if (cfg_load_env_file(err, sizeof(err)) != 0)
        log_warn("%s", err);
    if (argc > 1 && strcmp(argv[1], "override") == 0) {
        rc = cmd_override(argc - 1, argv + 1);
        cfg_free(ov_opts, N_OV_OPTS);
        return rc;
    }
    rc = cfg_parse(opts, N_OPTS, argc, argv, &first, err, sizeof(err));
    if (rc == CFG_HELP) {
        cfg_print_help(stdout, usage, opts, N_OPTS, epilog);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc == CFG_VERSION) {
        printf("herd-node %s\n", HERD_VERSION);
        cfg_free(opts, N_OPTS);
        return 0;
    }
    if (rc != 0 || first < argc) {
        fprintf(stderr, "herd-node: %s\n",
                rc != 0 ? err : "unexpected argument (see --help)");
        cfg_free(opts, N_OPTS);
        return 2;
    }
    rc = run_agent();
    cfg_free(opts, N_OPTS);
    log_close();
    return rc;
}
