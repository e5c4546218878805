/*
 * test_registry.c - the node registry (src/coordinator/registry.c):
 * ollama-herd's test_registry cases, a full Python herd-node payload,
 * validation and caps, status ageing and removal, drain, unload tracking,
 * the ollama_base_url rule, router in-flight counts, admission, and the
 * nodes of /fleet/status parsed back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/buf.h"
#include "herd/json.h"
#include "registry.h"

#define SEC 1000000000LL
#define T0  (1000 * SEC)

/* A realistic payload from a Python ollama-herd 0.6.1 herd-node (§2.5),
 * with every field it sends, including those we do not model. */
static const char python_payload[] =
    "{\"node_id\": \"mac-studio\", \"arch\": \"apple_silicon\","
    " \"timestamp\": 1714000000.25,"
    " \"cpu\": {\"cores_physical\": 24, \"utilization_pct\": 12.5},"
    " \"memory\": {\"total_gb\": 192.0, \"used_gb\": 60.1,"
    " \"available_gb\": 131.9, \"pressure\": \"normal\", \"wired_gb\": 8.2,"
    " \"compressed_gb\": 0.0},"
    " \"thermal\": {\"state\": \"unknown\", \"temperature_c\": null,"
    " \"source\": \"\"},"
    " \"disk\": {\"total_gb\": 1858.2, \"used_gb\": 900.0,"
    " \"available_gb\": 958.2},"
    " \"ollama\": {\"models_loaded\": [{\"name\": \"llama3.3:70b\","
    " \"size_gb\": 42.5, \"requests_active\": 0, \"parameter_size\":"
    " \"70.6B\", \"quantization\": \"Q4_K_M\", \"context_length\": 8192}],"
    " \"models_available\": [\"llama3.3:70b\", \"nomic-embed-text:latest\"],"
    " \"requests_active\": 0},"
    " \"ollama_host\": \"http://192.168.1.10:11434\","
    " \"lan_ip\": \"192.168.1.10\", \"draining\": false,"
    " \"capacity\": {\"mode\": \"bootstrap\", \"ceiling_gb\": 0.0,"
    " \"availability_score\": 0.0, \"reason\":"
    " \"bootstrap_observation_period\", \"override_active\": false,"
    " \"learning_confidence\": 0.02, \"days_observed\": 0},"
    " \"agent_version\": \"0.6.1\", \"image\": null, \"image_port\": 0,"
    " \"transcription\": null, \"transcription_port\": 0,"
    " \"vision_embedding\": null, \"vision_embedding_port\": 0,"
    " \"vision_embedding_status\": {\"backend_available\": false,"
    " \"cached_model_count\": 0},"
    " \"connection_failures\": 0, \"connection_failures_total\": 3,"
    " \"chip\": \"Apple M2 Ultra\", \"memory_bandwidth_gbps\": 800.0,"
    " \"mlx_servers\": [{\"port\": 11440, \"model\": \"mlx-community/Qwen3\","
    " \"status\": \"healthy\", \"status_reason\": \"\", \"kv_bits\": 0,"
    " \"model_size_gb\": 4.5, \"last_ok_ts\": 1714000000.0}],"
    " \"mlx_bind_host\": \"127.0.0.1\","
    " \"future_field\": {\"nested\": [1, 2, {\"x\": \"y\"}]}}";

/* ollama-herd's conftest make_heartbeat(), in C. */
struct hb_opts {
    const char *node_id;
    double total_gb, used_gb, cpu_pct;
    int cores;
    const char *loaded[8];     /* names; size 5 GB, ctx 8192 */
    const char *available[8];  /* added to the loaded names */
    const char *lan_ip;        /* NULL -> 192.168.1.100 */
    const char *ollama_host;   /* NULL -> http://localhost:11434 */
    const char *agent_version; /* NULL -> absent */
};

static char *
make_heartbeat(const struct hb_opts *o)
{
    cJSON *root = cJSON_CreateObject(), *cpu, *mem, *ol, *ld, *av;
    char *s;

    cJSON_AddStringToObject(root, "node_id",
                            o->node_id != NULL ? o->node_id : "mac-studio");
    cpu = cJSON_AddObjectToObject(root, "cpu");
    cJSON_AddNumberToObject(cpu, "cores_physical",
                            o->cores != 0 ? o->cores : 12);
    cJSON_AddNumberToObject(cpu, "utilization_pct",
                            o->cpu_pct != 0 ? o->cpu_pct : 15.0);
    mem = cJSON_AddObjectToObject(root, "memory");
    double total = o->total_gb != 0 ? o->total_gb : 64.0;
    double used = o->used_gb != 0 ? o->used_gb : 20.0;
    cJSON_AddNumberToObject(mem, "total_gb", total);
    cJSON_AddNumberToObject(mem, "used_gb", used);
    cJSON_AddNumberToObject(mem, "available_gb", total - used);
    cJSON_AddStringToObject(mem, "pressure", "normal");
    ol = cJSON_AddObjectToObject(root, "ollama");
    ld = cJSON_AddArrayToObject(ol, "models_loaded");
    av = cJSON_AddArrayToObject(ol, "models_available");
    for (int i = 0; i < 8 && o->loaded[i] != NULL; i++) {
        cJSON *m = cJSON_CreateObject();

        cJSON_AddStringToObject(m, "name", o->loaded[i]);
        cJSON_AddNumberToObject(m, "size_gb", 5.0);
        cJSON_AddNumberToObject(m, "context_length", 8192);
        cJSON_AddItemToArray(ld, m);
        cJSON_AddItemToArray(av, cJSON_CreateString(o->loaded[i]));
    }
    for (int i = 0; i < 8 && o->available[i] != NULL; i++)
        cJSON_AddItemToArray(av, cJSON_CreateString(o->available[i]));
    cJSON_AddNumberToObject(ol, "requests_active", 0);
    cJSON_AddStringToObject(root, "ollama_host",
                            o->ollama_host != NULL ? o->ollama_host
                                                   : "http://localhost:11434");
    cJSON_AddStringToObject(root, "lan_ip",
                            o->lan_ip != NULL ? o->lan_ip : "192.168.1.100");
    if (o->agent_version != NULL)
        cJSON_AddStringToObject(root, "agent_version", o->agent_version);
    cJSON_AddItemToObject(root, "disk", cJSON_CreateNull());
    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Sends o; asserts success. */
static void
beat(struct registry *reg, const struct hb_opts *o, const char *ip, int64_t now)
{
    struct registry_reply r;
    char err[256] = "";
    char *body = make_heartbeat(o);
    int rc = registry_heartbeat(reg, body, strlen(body), ip, now, &r, err,
                                sizeof(err));

    if (rc != 0)
        fail_msg("heartbeat refused: %s", err);
    cJSON_free(body);
}

static int
send_str(struct registry *reg, const char *body, const char *ip, int64_t now,
         struct registry_reply *r, char *err, size_t errlen)
{
    return registry_heartbeat(reg, body, strlen(body), ip, now, r, err, errlen);
}

/* Event recorder. */
struct events {
    int n;
    enum registry_event_kind kind[16];
    enum registry_status from[16], to[16];
    char id[16][64];
    char reason[16][192];
};

static void
record_event(const struct registry_event *ev, void *arg)
{
    struct events *e = arg;

    if (e->n >= 16)
        return;
    e->kind[e->n] = ev->kind;
    e->from[e->n] = ev->from;
    e->to[e->n] = ev->to;
    snprintf(e->id[e->n], sizeof(e->id[0]), "%s", ev->node_id);
    snprintf(e->reason[e->n], sizeof(e->reason[0]), "%s", ev->reason);
    e->n++;
}

/* ---- ollama-herd test_registry ---------------------------------------- */

static void
test_register(void **state)
{
    struct registry *reg = registry_new(NULL);
    const struct registry_node *n;
    struct hb_opts o = {0};

    (void)state;
    beat(reg, &o, "192.168.1.100", T0);
    assert_int_equal(registry_count(reg), 1);
    n = registry_find(reg, "mac-studio");
    assert_non_null(n);
    assert_int_equal(n->status, REGISTRY_ONLINE);
    assert_true(n->hb.mem_total_gb == 64.0);
    assert_int_equal(n->hb.cores_physical, 12);
    assert_int_equal(n->last_heartbeat_ns, T0);
    assert_int_equal(n->first_seen_ns, T0);
    assert_int_equal(n->missed_heartbeats, 0);
    assert_int_equal(n->hb.num_parallel, 1);
    assert_string_equal(n->hb.arch, "apple_silicon");
    assert_false(n->hb.has_disk);
    assert_false(n->hb.has_capacity);
    assert_false(n->hb.has_gpu);
    registry_free(reg);
}

static void
test_update_overwrites_cpu(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.cpu_pct = 15.0};

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    o.cpu_pct = 85.0;
    beat(reg, &o, "10.0.0.2", T0 + 5 * SEC);
    assert_int_equal(registry_count(reg), 1);
    assert_true(registry_find(reg, "mac-studio")->hb.cpu_utilization_pct ==
                85.0);
    assert_int_equal(registry_find(reg, "mac-studio")->last_heartbeat_ns,
                     T0 + 5 * SEC);
    registry_free(reg);
}

static void
test_online_excludes_drained(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts a = {.node_id = "a"}, b = {.node_id = "b"};
    struct registry_reply r;
    char err[256];

    (void)state;
    beat(reg, &a, "10.0.0.2", T0);
    beat(reg, &b, "10.0.0.3", T0);
    assert_int_equal(send_str(reg, "{\"node_id\":\"a\",\"draining\":true}",
                              "10.0.0.2", T0 + SEC, &r, err, sizeof(err)),
                     0);
    assert_int_equal(registry_count(reg), 2);
    assert_int_equal(registry_count_status(reg, REGISTRY_ONLINE), 1);
    assert_int_equal(registry_count_status(reg, REGISTRY_OFFLINE), 1);
    assert_false(registry_node_routable(registry_find(reg, "a")));
    assert_true(registry_node_routable(registry_find(reg, "b")));
    registry_free(reg);
}

static void
test_unknown_node(void **state)
{
    struct registry *reg = registry_new(NULL);

    (void)state;
    assert_null(registry_find(reg, "nope"));
    assert_null(registry_node_at(reg, 0));
    assert_int_equal(registry_count(reg), 0);
    registry_free(reg);
}

static void
test_nodes_with_model(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts a = {.node_id = "a", .loaded = {"llama3:8b"}};
    struct hb_opts b = {.node_id = "b", .available = {"llama3:8b", "phi4:14b"}};
    struct hb_opts c = {.node_id = "c", .loaded = {"qwen3:8b"}};
    const struct registry_node *out[4];

    (void)state;
    beat(reg, &a, "10.0.0.2", T0);
    beat(reg, &b, "10.0.0.3", T0);
    beat(reg, &c, "10.0.0.4", T0);
    assert_int_equal(registry_nodes_with_model(reg, "llama3:8b", out, 4), 2);
    assert_string_equal(out[0]->id, "a");
    assert_string_equal(out[1]->id, "b");
    assert_int_equal(registry_nodes_with_model(reg, "phi4:14b", out, 4), 1);
    assert_string_equal(out[0]->id, "b");
    assert_int_equal(registry_nodes_with_model(reg, "missing:1b", out, 4), 0);
    /* The count is right even when out is short. */
    assert_int_equal(registry_nodes_with_model(reg, "llama3:8b", out, 1), 2);
    assert_non_null(registry_node_loaded(registry_find(reg, "a"), "llama3:8b"));
    assert_null(registry_node_loaded(registry_find(reg, "b"), "llama3:8b"));
    assert_true(registry_node_available(registry_find(reg, "b"), "llama3:8b"));
    assert_false(registry_node_available(registry_find(reg, "c"), "llama3:8b"));
    registry_free(reg);
}

static void
test_drain_reply(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {0};
    struct registry_reply r;
    struct buf b;
    char err[256];

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    assert_int_equal(send_str(reg,
                              "{\"node_id\":\"mac-studio\",\"draining\":true}",
                              "10.0.0.2", T0 + SEC, &r, err, sizeof(err)),
                     0);
    assert_true(r.draining);
    assert_string_equal(r.node_id, "mac-studio");
    assert_int_equal(registry_find(reg, "mac-studio")->status,
                     REGISTRY_OFFLINE);
    assert_string_equal(registry_find(reg, "mac-studio")->reason, "drained");
    buf_init(&b, 4096);
    assert_int_equal(registry_reply_json(&r, &b), 0);
    assert_string_equal(b.data,
                        "{\"status\":\"draining\",\"node_id\":\"mac-studio\"}");
    /* Draining a node never seen is a no-op, as in ollama-herd. */
    assert_int_equal(send_str(reg, "{\"node_id\":\"ghost\",\"draining\":1}",
                              "10.0.0.9", T0, &r, err, sizeof(err)),
                     0);
    assert_true(r.draining);
    assert_null(registry_find(reg, "ghost"));
    /* "draining": false is an ordinary heartbeat, so it must validate. */
    assert_int_equal(send_str(reg, "{\"node_id\":\"x\",\"draining\":false}",
                              "10.0.0.9", T0, &r, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "heartbeat field \"cpu\": required");
    buf_cleanup(&b);
    registry_free(reg);
}

static void
test_unload_tracking(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.loaded = {"llama3:8b", "phi4:14b"}};
    const struct registry_node *n;

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    n = registry_find(reg, "mac-studio");
    assert_int_equal(registry_node_unloaded_at(n, "llama3:8b"), 0);
    o.loaded[0] = "phi4:14b";
    o.loaded[1] = NULL;
    beat(reg, &o, "10.0.0.2", T0 + 5 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "llama3:8b"), T0 + 5 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "phi4:14b"), 0);
    assert_null(registry_node_loaded(n, "llama3:8b"));
    /* Still unloaded: the time of unloading is kept, not refreshed. */
    beat(reg, &o, "10.0.0.2", T0 + 10 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "llama3:8b"), T0 + 5 * SEC);
    /* Both gone now: phi4 stamped at 15 s. */
    o.loaded[0] = NULL;
    beat(reg, &o, "10.0.0.2", T0 + 15 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "phi4:14b"), T0 + 15 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "llama3:8b"), T0 + 5 * SEC);
    assert_int_equal(n->n_unloaded, 2);
    /* Loaded again: no longer "recently unloaded". */
    o.loaded[0] = "llama3:8b";
    beat(reg, &o, "10.0.0.2", T0 + 20 * SEC);
    assert_int_equal(registry_node_unloaded_at(n, "llama3:8b"), 0);
    assert_int_equal(n->n_unloaded, 1);
    registry_free(reg);
}

static void
test_url_rule(void **state)
{
    static const struct {
        const char *source, *lan_ip, *host, *want;
    } cases[] = {
        /* ollama-herd test_registry: loopback and remote sources. */
        {"127.0.0.1", "192.168.1.100", "http://localhost:11434",
         "http://localhost:11434"},
        {"192.168.1.200", "192.168.1.200", "http://localhost:11434",
         "http://192.168.1.200:11434"},
        /* The port comes from ollama_host. */
        {"::1", "192.168.1.100", "http://192.168.1.100:11500",
         "http://localhost:11500"},
        {"", "", "http://localhost:11434", "http://localhost:11434"},
        {"::ffff:127.0.0.1", "10.1.1.1", "http://localhost:11434",
         "http://localhost:11434"},
        {"10.0.0.5", "10.0.0.7", "http://10.0.0.7:11500",
         "http://10.0.0.7:11500"},
        /* No usable LAN IP: ollama_host as sent. */
        {"10.0.0.5", "127.0.0.1", "http://gpu-box.lan:11434",
         "http://gpu-box.lan:11434"},
        {"10.0.0.5", "", "http://gpu-box.lan:8080/",
         "http://gpu-box.lan:8080/"},
        /* No port, or an invalid one: 11434. */
        {"10.0.0.5", "10.0.0.7", "http://10.0.0.7", "http://10.0.0.7:11434"},
        {"10.0.0.5", "10.0.0.7", "http://h:99999", "http://10.0.0.7:11434"},
        {"10.0.0.5", "10.0.0.7", "http://[fe80::1]:11600",
         "http://10.0.0.7:11600"},
        /* An IPv6 LAN address gets brackets. */
        {"fd00::5", "fd00::7", "http://localhost:11434",
         "http://[fd00::7]:11434"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct registry *reg = registry_new(NULL);
        struct hb_opts o = {.lan_ip = cases[i].lan_ip,
                            .ollama_host = cases[i].host};

        beat(reg, &o, cases[i].source, T0);
        assert_string_equal(registry_find(reg, "mac-studio")->ollama_base_url,
                            cases[i].want);
        registry_free(reg);
    }
}

static void
test_url_follows_lan_ip(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.lan_ip = "192.168.1.50"};

    (void)state;
    beat(reg, &o, "192.168.1.50", T0);
    assert_string_equal(registry_find(reg, "mac-studio")->ollama_base_url,
                        "http://192.168.1.50:11434");
    o.lan_ip = "192.168.1.51";
    beat(reg, &o, "192.168.1.51", T0 + 5 * SEC);
    assert_string_equal(registry_find(reg, "mac-studio")->ollama_base_url,
                        "http://192.168.1.51:11434");
    registry_free(reg);
}

static void
test_heartbeat_resets_degraded(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {0};
    const struct registry_node *n;

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    n = registry_find(reg, "mac-studio");
    registry_tick(reg, T0 + 20 * SEC);
    assert_int_equal(n->status, REGISTRY_DEGRADED);
    assert_int_equal(n->missed_heartbeats, 1);
    beat(reg, &o, "10.0.0.2", T0 + 21 * SEC);
    assert_int_equal(n->status, REGISTRY_ONLINE);
    assert_int_equal(n->missed_heartbeats, 0);
    registry_free(reg);
}

static void
test_agent_version(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts a = {.node_id = "a", .agent_version = "0.6.1"};
    struct hb_opts b = {.node_id = "b"};

    (void)state;
    beat(reg, &a, "10.0.0.2", T0);
    beat(reg, &b, "10.0.0.3", T0);
    assert_string_equal(registry_find(reg, "a")->hb.agent_version, "0.6.1");
    assert_string_equal(registry_find(reg, "b")->hb.agent_version, "");
    registry_free(reg);
}

/* ---- compatibility and validation ------------------------------------- */

static void
test_python_payload(void **state)
{
    struct registry *reg = registry_new(NULL);
    const struct registry_node *n;
    const struct registry_loaded *m;
    struct registry_reply r;
    struct buf b;
    char err[256];
    cJSON *raw;

    (void)state;
    assert_int_equal(
        send_str(reg, python_payload, "192.168.1.10", T0, &r, err, sizeof(err)),
        0);
    assert_true(r.created);
    assert_false(r.draining);
    assert_int_equal(r.node_status, REGISTRY_ONLINE);
    buf_init(&b, 4096);
    assert_int_equal(registry_reply_json(&r, &b), 0);
    assert_string_equal(b.data,
                        "{\"status\":\"ok\",\"node_status\":\"online\"}");
    buf_cleanup(&b);

    n = registry_find(reg, "mac-studio");
    assert_non_null(n);
    assert_string_equal(n->hb.arch, "apple_silicon");
    assert_string_equal(n->hb.chip, "Apple M2 Ultra");
    assert_true(n->hb.memory_bandwidth_gbps == 800.0);
    assert_true(n->hb.timestamp == 1714000000.25);
    assert_int_equal(n->hb.cores_physical, 24);
    assert_true(n->hb.cpu_utilization_pct == 12.5);
    assert_true(n->hb.mem_total_gb == 192.0);
    assert_true(n->hb.mem_used_gb == 60.1);
    assert_true(n->hb.mem_available_gb == 131.9);
    assert_true(n->hb.mem_wired_gb == 8.2);
    assert_int_equal(n->hb.pressure, REGISTRY_PRESSURE_NORMAL);
    assert_true(n->hb.has_disk);
    assert_true(n->hb.disk_total_gb == 1858.2);
    assert_true(n->hb.disk_available_gb == 958.2);
    assert_int_equal(n->hb.n_loaded, 1);
    m = registry_node_loaded(n, "llama3.3:70b");
    assert_non_null(m);
    assert_true(m->size_gb == 42.5);
    assert_int_equal(m->context_length, 8192);
    assert_string_equal(m->parameter_size, "70.6B");
    assert_string_equal(m->quantization, "Q4_K_M");
    assert_int_equal(n->hb.n_available, 2);
    assert_true(registry_node_available(n, "nomic-embed-text:latest"));
    assert_true(n->hb.has_capacity);
    assert_string_equal(n->hb.capacity.mode, "bootstrap");
    assert_true(n->hb.capacity.availability_score == 0.0);
    assert_true(n->hb.capacity.learning_confidence == 0.02);
    assert_string_equal(n->hb.capacity.reason, "bootstrap_observation_period");
    assert_string_equal(n->hb.agent_version, "0.6.1");
    assert_string_equal(n->hb.lan_ip, "192.168.1.10");
    assert_string_equal(n->hb.ollama_host, "http://192.168.1.10:11434");
    assert_string_equal(n->ollama_base_url, "http://192.168.1.10:11434");
    assert_int_equal(n->hb.num_parallel, 1);

    /* Every field survives in the raw payload, unknown ones included. */
    raw = cJSON_Parse(n->hb.raw);
    assert_non_null(raw);
    assert_true(cJSON_IsNull(json_get(raw, "image")));
    assert_true(json_get_num(raw, "connection_failures_total", -1) == 3);
    assert_string_equal(json_get_str(raw, "mlx_bind_host"), "127.0.0.1");
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(raw, "mlx_servers"), 0),
                     "model"),
        "mlx-community/Qwen3");
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(
                         json_get(json_get(raw, "future_field"), "nested"), 2),
                     "x"),
        "y");
    assert_true(json_get_num(json_get(raw, "vision_embedding_status"),
                             "cached_model_count", -1) == 0);
    assert_int_equal(cJSON_GetArraySize(raw), 27);
    cJSON_Delete(raw);
    registry_free(reg);
}

static void
test_num_parallel_and_gpu(void **state)
{
    struct registry *reg = registry_new(NULL);
    const struct registry_node *n;
    struct registry_reply r;
    char err[256];
    static const char base[] =
        "\"cpu\":{\"cores_physical\":8,\"utilization_pct\":1},"
        "\"memory\":{\"total_gb\":32,\"used_gb\":8,\"available_gb\":24}";
    char body[1024];

    (void)state;
    /* Ours: top-level num_parallel and a gpu array (summed). */
    snprintf(body, sizeof(body),
             "{\"node_id\":\"a\",%s,\"ollama\":{},\"num_parallel\":4,"
             "\"gpu\":[{\"name\":\"NVIDIA H100\",\"vram_total_gb\":80,"
             "\"vram_used_gb\":10,\"utilization_pct\":50},"
             "{\"name\":\"NVIDIA H100\",\"vram_total_gb\":80,"
             "\"vram_used_gb\":30,\"utilization_pct\":70}]}",
             base);
    assert_int_equal(send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)),
                     0);
    n = registry_find(reg, "a");
    assert_int_equal(n->hb.num_parallel, 4);
    assert_true(n->hb.has_gpu);
    assert_string_equal(n->hb.gpu.name, "NVIDIA H100");
    assert_int_equal(n->hb.gpu.count, 2);
    assert_true(n->hb.gpu.vram_total_gb == 160.0);
    assert_true(n->hb.gpu.vram_used_gb == 40.0);
    assert_true(n->hb.gpu.utilization_pct == 60.0);
    /* Newer ollama-herd: ollama.num_parallel wins; 0 means "not sent". */
    snprintf(body, sizeof(body),
             "{\"node_id\":\"a\",%s,\"ollama\":{\"num_parallel\":2},"
             "\"num_parallel\":4,\"gpu\":{\"name\":\"RTX 4090\","
             "\"vram_total_gb\":24}}",
             base);
    assert_int_equal(send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)),
                     0);
    assert_int_equal(n->hb.num_parallel, 2);
    assert_int_equal(n->hb.gpu.count, 1);
    assert_string_equal(n->hb.gpu.name, "RTX 4090");
    snprintf(body, sizeof(body),
             "{\"node_id\":\"a\",%s,\"ollama\":{\"num_parallel\":0}}", base);
    assert_int_equal(send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)),
                     0);
    assert_int_equal(n->hb.num_parallel, 1);
    assert_false(n->hb.has_gpu);
    registry_free(reg);
}

/* Each of these is refused with exactly this message and changes nothing. */
static const struct {
    const char *body;
    int rc;
    const char *msg;
} bad_payloads[] = {
    {"", -EINVAL, "heartbeat is not valid JSON: empty body"},
    {"{\"node_id\":", -EINVAL, "heartbeat is not valid JSON: unexpected EOF"},
    {"[1,2]", -EINVAL,
     "heartbeat field \"(body)\": expected object, got array"},
    {"{}", -EINVAL, "heartbeat field \"node_id\": required"},
    {"{\"node_id\":7}", -EINVAL,
     "heartbeat field \"node_id\": expected string, got number"},
    {"{\"node_id\":\"\"}", -EINVAL, "heartbeat field \"node_id\": empty"},
    {"{\"node_id\":\"a\\r\\nX-Evil: 1\"}", -EINVAL,
     "heartbeat field \"node_id\": control character"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":\"fast\"}", -EINVAL,
     "heartbeat field \"cpu\": expected object, got string"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":\"12\","
     "\"utilization_pct\":1}}",
     -EINVAL,
     "heartbeat field \"cpu.cores_physical\": expected integer, got string"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":1.5,"
     "\"utilization_pct\":1}}",
     -EINVAL,
     "heartbeat field \"cpu.cores_physical\": expected integer, got number"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":-1,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{}}",
     -EINVAL, "heartbeat field \"memory.total_gb\": -1 is out of range"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":1e999,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{}}",
     -EINVAL, "heartbeat field \"memory.total_gb\": inf is out of range"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1,\"pressure\":\"dire\"},\"ollama\":{}}",
     -EINVAL,
     "heartbeat field \"memory.pressure\": expected \"normal\", \"warn\" or "
     "\"critical\""},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1}}",
     -EINVAL, "heartbeat field \"ollama\": required"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{\"models_loaded\":[{\"name\":\"m\","
     "\"size_gb\":\"big\"}]}}",
     -EINVAL,
     "heartbeat field \"ollama.models_loaded[0].size_gb\": expected number, "
     "got string"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{\"models_available\":[\"a\",3]}}",
     -EINVAL,
     "heartbeat field \"ollama.models_available[1]\": expected string, got "
     "number"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{\"models_available\":{}}}",
     -EINVAL,
     "heartbeat field \"ollama.models_available\": expected array, got "
     "object"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{},\"capacity\":{\"override_active\":"
     "\"yes\"}}",
     -EINVAL,
     "heartbeat field \"capacity.override_active\": expected bool, got "
     "string"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{},\"lan_ip\":\"1.2.3.4/evil\"}",
     -EINVAL, "heartbeat field \"lan_ip\": invalid character 0x2f"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{},\"ollama_host\":\"http://a b\"}",
     -EINVAL, "heartbeat field \"ollama_host\": invalid character 0x20"},
    {"{\"node_id\":\"mac-studio\",\"cpu\":{\"cores_physical\":2,"
     "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,\"used_gb\":1,"
     "\"available_gb\":1},\"ollama\":{},\"gpu\":7}",
     -EINVAL, "heartbeat field \"gpu\": expected object, got number"},
};

static void
test_bad_payloads(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.loaded = {"llama3:8b"}};
    const struct registry_node *n;
    struct registry_reply r;
    struct events ev = {0};
    char err[256], *before;

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    n = registry_find(reg, "mac-studio");
    before = strdup(n->hb.raw);
    registry_set_event_cb(reg, record_event, &ev);
    for (size_t i = 0; i < sizeof(bad_payloads) / sizeof(*bad_payloads); i++) {
        err[0] = '\0';
        assert_int_equal(send_str(reg, bad_payloads[i].body, "10.0.0.2",
                                  T0 + 5 * SEC, &r, err, sizeof(err)),
                         bad_payloads[i].rc);
        assert_string_equal(err, bad_payloads[i].msg);
        assert_int_equal(registry_error_status(bad_payloads[i].rc), 400);
        /* Unchanged: same node, same payload, same time, nothing else. */
        assert_int_equal(registry_count(reg), 1);
        assert_ptr_equal(registry_find(reg, "mac-studio"), n);
        assert_string_equal(n->hb.raw, before);
        assert_int_equal(n->last_heartbeat_ns, T0);
        assert_non_null(registry_node_loaded(n, "llama3:8b"));
        assert_int_equal(r.node_status, REGISTRY_ONLINE);
        assert_false(r.draining);
    }
    assert_int_equal(ev.n, 0);
    free(before);
    registry_free(reg);
}

static void
test_caps(void **state)
{
    struct registry_config cfg;
    struct registry *reg;
    struct registry_reply r;
    struct buf b;
    char err[256];
    char id[REGISTRY_NODE_ID_MAX + 2];
    int rc;

    (void)state;
    registry_config_default(&cfg);
    cfg.max_body = 64 * 1024;
    reg = registry_new(&cfg);
    /* A body over the limit: 413. */
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_appends(&b, "{\"node_id\":\"x\",\"pad\":\""), 0);
    for (int i = 0; i < 70 * 1024; i++)
        assert_int_equal(buf_appends(&b, "a"), 0);
    assert_int_equal(buf_appends(&b, "\"}"), 0);
    rc = registry_heartbeat(reg, b.data, b.len, "10.0.0.2", T0, &r, err,
                            sizeof(err));
    assert_int_equal(rc, -EMSGSIZE);
    assert_int_equal(registry_error_status(rc), 413);
    assert_string_equal(err, "heartbeat body of 71704 bytes is over the "
                             "65536 byte limit");
    /* Too many models. */
    buf_reset(&b);
    assert_int_equal(
        buf_appends(&b, "{\"node_id\":\"x\",\"cpu\":{\"cores_physical\":1,"
                        "\"utilization_pct\":1},\"memory\":{\"total_gb\":4,"
                        "\"used_gb\":1,\"available_gb\":3},\"ollama\":{"
                        "\"models_available\":["),
        0);
    for (int i = 0; i <= REGISTRY_MAX_MODELS; i++)
        assert_int_equal(buf_appendf(&b, "%s\"m%d\"", i ? "," : "", i), 0);
    assert_int_equal(buf_appends(&b, "]}}"), 0);
    assert_int_equal(
        send_str(reg, b.data, "10.0.0.2", T0, &r, err, sizeof(err)), -E2BIG);
    assert_string_equal(err, "heartbeat field \"ollama.models_available\": "
                             "more than 1024 models");
    /* Too deep. */
    buf_reset(&b);
    assert_int_equal(buf_appends(&b, "{\"node_id\":\"x\",\"deep\":"), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(buf_appends(&b, "["), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(buf_appends(&b, "]"), 0);
    assert_int_equal(buf_appends(&b, "}"), 0);
    assert_int_equal(
        send_str(reg, b.data, "10.0.0.2", T0, &r, err, sizeof(err)), -E2BIG);
    assert_string_equal(err, "heartbeat nested deeper than 32");
    /* Too many top-level fields. */
    buf_reset(&b);
    assert_int_equal(buf_appends(&b, "{\"node_id\":\"x\""), 0);
    for (int i = 0; i < REGISTRY_MAX_FIELDS; i++)
        assert_int_equal(buf_appendf(&b, ",\"f%d\":0", i), 0);
    assert_int_equal(buf_appends(&b, "}"), 0);
    assert_int_equal(
        send_str(reg, b.data, "10.0.0.2", T0, &r, err, sizeof(err)), -E2BIG);
    assert_string_equal(err, "heartbeat has more than 256 fields");
    /* A node id over the cap; exactly the cap is fine. */
    memset(id, 'n', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    buf_reset(&b);
    assert_int_equal(buf_appendf(&b, "{\"node_id\":\"%s\"}", id), 0);
    assert_int_equal(
        send_str(reg, b.data, "10.0.0.2", T0, &r, err, sizeof(err)), -E2BIG);
    assert_string_equal(err,
                        "heartbeat field \"node_id\": longer than 128 bytes");
    id[REGISTRY_NODE_ID_MAX] = '\0';
    struct hb_opts o = {.node_id = id};
    beat(reg, &o, "10.0.0.2", T0);
    assert_non_null(registry_find(reg, id));
    assert_int_equal(registry_count(reg), 1);
    buf_cleanup(&b);
    registry_free(reg);
}

static void
test_node_limit(void **state)
{
    struct registry_config cfg;
    struct registry *reg;
    struct registry_reply r;
    char err[256], *body;
    struct hb_opts o = {0};
    char id[16];

    (void)state;
    registry_config_default(&cfg);
    cfg.max_nodes = 3;
    reg = registry_new(&cfg);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        o.node_id = id;
        beat(reg, &o, "10.0.0.2", T0);
    }
    o.node_id = "n3";
    body = make_heartbeat(&o);
    assert_int_equal(send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)),
                     -ENOSPC);
    assert_int_equal(registry_error_status(-ENOSPC), 503);
    assert_string_equal(err, "node table full (3 nodes): \"n3\" refused");
    assert_int_equal(registry_count(reg), 3);
    /* Known nodes still report. */
    o.node_id = "n1";
    beat(reg, &o, "10.0.0.2", T0 + SEC);
    /* Once one is removed, the new node fits. */
    assert_int_equal(send_str(reg, "{\"node_id\":\"n2\",\"draining\":true}",
                              "10.0.0.2", T0, &r, err, sizeof(err)),
                     0);
    registry_tick(reg, T0 + 601 * SEC);
    assert_null(registry_find(reg, "n2"));
    assert_int_equal(
        send_str(reg, body, "10.0.0.2", T0 + 602 * SEC, &r, err, sizeof(err)),
        0);
    assert_non_null(registry_find(reg, "n3"));
    cJSON_free(body);
    registry_free(reg);
}

/* ---- ageing ----------------------------------------------------------- */

static void
test_ageing(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {0};
    struct events ev = {0};
    const struct registry_node *n;

    (void)state;
    registry_set_event_cb(reg, record_event, &ev);
    beat(reg, &o, "10.0.0.2", T0);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.kind[0], REGISTRY_EV_JOINED);
    assert_int_equal(ev.to[0], REGISTRY_ONLINE);
    assert_string_equal(ev.id[0], "mac-studio");
    n = registry_find(reg, "mac-studio");
    /* Exactly 15 s is not "more than 15 s" (ollama-herd compares >). */
    assert_int_equal(registry_tick(reg, T0 + 15 * SEC), 0);
    assert_int_equal(n->status, REGISTRY_ONLINE);
    assert_int_equal(registry_tick(reg, T0 + 15 * SEC + 1), 1);
    assert_int_equal(n->status, REGISTRY_DEGRADED);
    assert_int_equal(n->missed_heartbeats, 1);
    assert_true(registry_node_routable(n));
    assert_int_equal(ev.kind[1], REGISTRY_EV_STATUS);
    assert_int_equal(ev.from[1], REGISTRY_ONLINE);
    assert_int_equal(ev.to[1], REGISTRY_DEGRADED);
    /* Degraded stays degraded (no repeated event). */
    assert_int_equal(registry_tick(reg, T0 + 25 * SEC), 0);
    assert_int_equal(n->missed_heartbeats, 1);
    assert_int_equal(registry_tick(reg, T0 + 30 * SEC), 0);
    assert_int_equal(registry_tick(reg, T0 + 30 * SEC + 1), 1);
    assert_int_equal(n->status, REGISTRY_OFFLINE);
    assert_int_equal(n->missed_heartbeats, 2);
    assert_int_equal(n->status_since_ns, T0 + 30 * SEC + 1);
    assert_string_equal(n->reason, "no heartbeat");
    assert_false(registry_node_routable(n));
    assert_int_equal(ev.to[2], REGISTRY_OFFLINE);
    assert_string_equal(ev.reason[2], "no heartbeat");
    /* Removed 10 min after going offline. */
    assert_int_equal(registry_tick(reg, T0 + 630 * SEC + 1), 0);
    assert_int_equal(registry_count(reg), 1);
    assert_int_equal(registry_tick(reg, T0 + 630 * SEC + 2), 1);
    assert_int_equal(registry_count(reg), 0);
    assert_null(registry_find(reg, "mac-studio"));
    assert_int_equal(ev.n, 4);
    assert_int_equal(ev.kind[3], REGISTRY_EV_REMOVED);
    assert_string_equal(ev.id[3], "mac-studio");
    /* It may come back as a new node. */
    beat(reg, &o, "10.0.0.2", T0 + 700 * SEC);
    assert_int_equal(registry_find(reg, "mac-studio")->first_seen_ns,
                     T0 + 700 * SEC);
    registry_free(reg);
}

static void
test_ageing_custom(void **state)
{
    struct registry_config cfg;
    struct registry *reg;
    struct hb_opts a = {.node_id = "a"}, b = {.node_id = "b"};
    struct hb_opts c = {.node_id = "c"};

    (void)state;
    registry_config_default(&cfg);
    cfg.heartbeat_timeout_ns = 2 * SEC;
    cfg.heartbeat_offline_ns = 4 * SEC;
    cfg.remove_after_ns = 0; /* never */
    reg = registry_new(&cfg);
    beat(reg, &a, "10.0.0.2", T0);
    beat(reg, &b, "10.0.0.3", T0);
    beat(reg, &c, "10.0.0.4", T0);
    registry_tick(reg, T0 + 3 * SEC);
    assert_int_equal(registry_count_status(reg, REGISTRY_DEGRADED), 3);
    /* Jumping straight past the offline limit skips degraded. */
    beat(reg, &b, "10.0.0.3", T0 + 3 * SEC);
    registry_tick(reg, T0 + 8 * SEC);
    assert_int_equal(registry_count_status(reg, REGISTRY_OFFLINE), 3);
    assert_int_equal(registry_find(reg, "b")->missed_heartbeats, 1);
    registry_tick(reg, T0 + 100000 * SEC);
    assert_int_equal(registry_count(reg), 3);
    /* Iteration keeps first-heartbeat order. */
    assert_string_equal(registry_node_at(reg, 0)->id, "a");
    assert_string_equal(registry_node_at(reg, 1)->id, "b");
    assert_string_equal(registry_node_at(reg, 2)->id, "c");
    registry_free(reg);
}

static void
test_removal_keeps_order(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct registry_reply r;
    char err[256], id[16];
    struct hb_opts o = {0};

    (void)state;
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "n%02d", i);
        o.node_id = id;
        beat(reg, &o, "10.0.0.2", T0);
    }
    for (int i = 0; i < 40; i += 3) {
        char body[64];

        snprintf(body, sizeof(body), "{\"node_id\":\"n%02d\",\"draining\":1}",
                 i);
        assert_int_equal(
            send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)), 0);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "n%02d", i);
        o.node_id = id;
        if (i % 3 != 0)
            beat(reg, &o, "10.0.0.2", T0 + 600 * SEC);
    }
    assert_int_equal(registry_tick(reg, T0 + 600 * SEC + 1), 14);
    assert_int_equal(registry_count(reg), 26);
    for (size_t k = 0, i = 1; i < 40; i++) {
        if (i % 3 == 0)
            continue;
        snprintf(id, sizeof(id), "n%02zu", i);
        assert_string_equal(registry_node_at(reg, k)->id, id);
        assert_ptr_equal(registry_find(reg, id), registry_node_at(reg, k));
        k++;
    }
    assert_null(registry_find(reg, "n03"));
    registry_free(reg);
}

/* Watch recorder: "N:id@pos", "R:id@pos", "I:id:model=count". */
struct watched {
    int n;
    char ev[32][400];
};

static void
record_watch(enum registry_watch_kind kind, const struct registry_node *n,
             const char *model, int64_t count, void *arg)
{
    struct watched *w = arg;

    if (w->n >= 32)
        return;
    if (kind == REGISTRY_WATCH_INFLIGHT)
        snprintf(w->ev[w->n], sizeof(w->ev[0]), "I:%s:%s=%lld", n->id, model,
                 (long long)count);
    else
        snprintf(w->ev[w->n], sizeof(w->ev[0]), "%c:%s@%zu",
                 kind == REGISTRY_WATCH_NODE ? 'N' : 'R', n->id, n->pos);
    w->n++;
}

/* Every change to what routing reads is reported, and only those; a
 * node's pos follows its place in registry order. */
static void
test_watch(void **state)
{
    struct registry_config cfg;
    struct registry *reg;
    struct registry_reply r;
    struct watched w = {0};
    char err[256];
    struct hb_opts o = {0};
    static const char *const want[] = {
        "N:a@0",      "N:b@1",      "N:c@2", /* joined */
        "N:b@1",                             /* a heartbeat */
        "I:b:m:1b=1", "I:b:m:1b=0",          /* a slot taken, given back */
        "N:b@1",                             /* drained */
        "N:c@2",      "N:c@2",               /* pulled, deleted */
        "N:a@0",                             /* a heartbeat */
        "N:a@0",      "N:c@2",               /* degraded */
        "N:a@0",                             /* offline */
        "R:b@1",      "N:c@1",               /* b removed; c offline, moved */
        "R:a@0",      "R:c@0",               /* removed */
    };

    (void)state;
    registry_config_default(&cfg);
    cfg.remove_after_ns = 60 * SEC;
    reg = registry_new(&cfg);
    registry_set_watch(reg, record_watch, &w);
    o.node_id = "a";
    beat(reg, &o, "10.0.0.2", T0);
    o.node_id = "b";
    beat(reg, &o, "10.0.0.2", T0);
    o.node_id = "c";
    beat(reg, &o, "10.0.0.2", T0);
    o.node_id = "b";
    beat(reg, &o, "10.0.0.2", T0 + SEC);
    /* refused: no event */
    assert_int_not_equal(send_str(reg, "{\"node_id\":\"b\"}", "10.0.0.2",
                                  T0 + SEC, &r, err, sizeof(err)),
                         0);
    assert_int_equal(registry_inflight_add(reg, "b", "m:1b", 1), 1);
    assert_int_equal(registry_inflight_add(reg, "b", "m:1b", 0), 1);
    assert_int_equal(registry_inflight_add(reg, "b", "m:1b", -5), 0);
    assert_int_equal(registry_inflight_add(reg, "b", "m:1b", -1), 0);
    assert_int_equal(send_str(reg, "{\"node_id\":\"b\",\"draining\":true}",
                              "10.0.0.2", T0 + SEC, &r, err, sizeof(err)),
                     0);
    assert_int_equal(registry_node_add_model(reg, "c", "x:1b"), 0);
    assert_int_equal(registry_node_add_model(reg, "c", "x:1b"), 0);
    assert_int_equal(registry_node_remove_model(reg, "c", "x:1b"), 0);
    assert_int_equal(registry_node_remove_model(reg, "c", "x:1b"), -ENOENT);
    /* a and c fall silent; b (drained at T0 + 1 s) is removed first */
    o.node_id = "a";
    beat(reg, &o, "10.0.0.2", T0 + 2 * SEC);
    registry_tick(reg, T0 + 20 * SEC); /* a, c: degraded */
    assert_int_equal(registry_tick(reg, T0 + 62 * SEC), 3);
    assert_int_equal(registry_count(reg), 2);
    assert_int_equal(registry_node_at(reg, 1)->pos, 1);
    assert_string_equal(registry_node_at(reg, 1)->id, "c");
    registry_tick(reg, T0 + 200 * SEC);
    assert_int_equal(w.n, sizeof(want) / sizeof(want[0]));
    for (int i = 0; i < w.n; i++)
        assert_string_equal(w.ev[i], want[i]);
    registry_free(reg);
}

static void
test_drain_then_heartbeat(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {0};
    struct registry_reply r;
    struct events ev = {0};
    char err[256];

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    registry_set_event_cb(reg, record_event, &ev);
    assert_int_equal(send_str(reg,
                              "{\"node_id\":\"mac-studio\",\"draining\":true}",
                              "10.0.0.2", T0 + SEC, &r, err, sizeof(err)),
                     0);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.from[0], REGISTRY_ONLINE);
    assert_int_equal(ev.to[0], REGISTRY_OFFLINE);
    assert_string_equal(ev.reason[0], "drained");
    beat(reg, &o, "10.0.0.2", T0 + 6 * SEC);
    assert_int_equal(registry_find(reg, "mac-studio")->status, REGISTRY_ONLINE);
    assert_string_equal(registry_find(reg, "mac-studio")->reason, "");
    assert_int_equal(ev.n, 2);
    assert_int_equal(ev.kind[1], REGISTRY_EV_STATUS);
    assert_int_equal(ev.from[1], REGISTRY_OFFLINE);
    assert_int_equal(ev.to[1], REGISTRY_ONLINE);
    registry_free(reg);
}

/* ---- router-local counts and admission -------------------------------- */

static void
test_inflight(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.loaded = {"llama3:8b"}};
    const struct registry_node *n;

    (void)state;
    beat(reg, &o, "10.0.0.2", T0);
    n = registry_find(reg, "mac-studio");
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "llama3:8b", 1),
                     1);
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "llama3:8b", 2),
                     3);
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "phi4:14b", 1),
                     1);
    assert_int_equal(registry_inflight_get(n, NULL), 4);
    /* A heartbeat (reporting requests_active 0) changes nothing. */
    beat(reg, &o, "10.0.0.2", T0 + 5 * SEC);
    assert_int_equal(registry_inflight_get(n, "llama3:8b"), 3);
    assert_int_equal(registry_inflight_get(n, "phi4:14b"), 1);
    assert_int_equal(registry_inflight_get(n, NULL), 4);
    assert_int_equal(registry_node_loaded(n, "llama3:8b")->requests_active, 0);
    /* Decrements; an excess one clamps at 0. */
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "llama3:8b", -1),
                     2);
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "phi4:14b", -5),
                     0);
    assert_int_equal(registry_inflight_get(n, NULL), 2);
    assert_int_equal(n->n_inflight, 1);
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "new:1b", -1), 0);
    assert_int_equal(n->n_inflight, 1);
    assert_int_equal(registry_inflight_add(reg, "ghost", "llama3:8b", 1),
                     -ENOENT);
    /* A node holding requests is not removed while they run. */
    registry_tick(reg, T0 + 5000 * SEC);
    assert_int_equal(n->status, REGISTRY_OFFLINE);
    registry_tick(reg, T0 + 9000 * SEC);
    assert_ptr_equal(registry_find(reg, "mac-studio"), n);
    assert_int_equal(registry_inflight_add(reg, "mac-studio", "llama3:8b", -2),
                     0);
    registry_tick(reg, T0 + 9001 * SEC);
    assert_null(registry_find(reg, "mac-studio"));
    registry_free(reg);
}

static void
test_admission(void **state)
{
    struct registry_config cfg;
    struct registry *reg;
    struct hb_opts small = {.node_id = "laptop",
                            .total_gb = 8.0,
                            .used_gb = 4.0,
                            .loaded = {"llama3:8b"}};
    struct hb_opts big = {
        .node_id = "studio", .total_gb = 64.0, .loaded = {"llama3:8b"}};
    const struct registry_node *out[2];
    struct registry_reply r;
    struct events ev = {0};
    char err[256], *body;
    struct buf b;

    (void)state;
    registry_config_default(&cfg);
    cfg.min_node_memory_gb = 16.0;
    reg = registry_new(&cfg);
    registry_set_event_cb(reg, record_event, &ev);
    body = make_heartbeat(&small);
    assert_int_equal(send_str(reg, body, "10.0.0.2", T0, &r, err, sizeof(err)),
                     0);
    cJSON_free(body);
    assert_int_equal(r.node_status, REGISTRY_REJECTED);
    assert_string_equal(r.reason, "memory 8.0 GB is below the fleet minimum "
                                  "of 16.0 GB (FLEET_MIN_NODE_MEMORY_GB)");
    buf_init(&b, 4096);
    assert_int_equal(registry_reply_json(&r, &b), 0);
    assert_string_equal(b.data,
                        "{\"status\":\"ok\",\"node_status\":\"rejected\","
                        "\"reason\":\"memory 8.0 GB is below the fleet "
                        "minimum of 16.0 GB (FLEET_MIN_NODE_MEMORY_GB)\"}");
    buf_cleanup(&b);
    assert_int_equal(ev.n, 1);
    assert_int_equal(ev.kind[0], REGISTRY_EV_JOINED);
    assert_int_equal(ev.to[0], REGISTRY_REJECTED);
    beat(reg, &big, "10.0.0.3", T0);
    assert_int_equal(registry_find(reg, "laptop")->status, REGISTRY_REJECTED);
    assert_false(registry_node_routable(registry_find(reg, "laptop")));
    assert_int_equal(registry_find(reg, "studio")->status, REGISTRY_ONLINE);
    assert_int_equal(registry_nodes_with_model(reg, "llama3:8b", out, 2), 1);
    assert_string_equal(out[0]->id, "studio");
    assert_int_equal(registry_count_status(reg, REGISTRY_REJECTED), 1);
    /* Still rejected on the next heartbeat; silent, it goes offline. */
    beat(reg, &small, "10.0.0.2", T0 + 5 * SEC);
    assert_int_equal(registry_find(reg, "laptop")->status, REGISTRY_REJECTED);
    assert_int_equal(ev.n, 2); /* studio joined; no change for laptop */
    registry_tick(reg, T0 + 20 * SEC + 1);
    assert_int_equal(registry_find(reg, "laptop")->status, REGISTRY_REJECTED);
    registry_tick(reg, T0 + 36 * SEC);
    assert_int_equal(registry_find(reg, "laptop")->status, REGISTRY_OFFLINE);
    registry_free(reg);
}

/* ---- /fleet/status ---------------------------------------------------- */

static void
test_status_json(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.node_id = "box", .loaded = {"qwen3:8b"}};
    struct registry_reply r;
    struct buf b;
    char err[256];
    cJSON *arr;
    const cJSON *n, *x;

    (void)state;
    assert_int_equal(
        send_str(reg, python_payload, "192.168.1.10", T0, &r, err, sizeof(err)),
        0);
    beat(reg, &o, "127.0.0.1", T0 + 2 * SEC);
    assert_int_equal(
        registry_inflight_add(reg, "mac-studio", "llama3.3:70b", 2), 2);
    buf_init(&b, 1 << 20);
    assert_int_equal(registry_status_json(reg, T0 + 4 * SEC, &b), 0);
    arr = cJSON_Parse(b.data);
    assert_non_null(arr);
    assert_int_equal(cJSON_GetArraySize(arr), 2);

    n = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(json_get_str(n, "node_id"), "mac-studio");
    assert_string_equal(json_get_str(n, "status"), "online");
    assert_null(json_get(n, "reason"));
    x = json_get(n, "hardware");
    assert_true(json_get_num(x, "memory_total_gb", 0) == 192.0);
    assert_true(json_get_num(x, "cores_physical", 0) == 24);
    assert_string_equal(json_get_str(x, "chip"), "Apple M2 Ultra");
    assert_true(json_get_num(x, "memory_bandwidth_gbps", 0) == 800.0);
    assert_string_equal(json_get_str(x, "arch"), "apple_silicon");
    assert_string_equal(json_get_str(n, "ollama_url"),
                        "http://192.168.1.10:11434");
    assert_true(json_get_num(n, "last_heartbeat_age_s", 0) == 4.0);
    assert_true(json_get_num(n, "missed_heartbeats", -1) == 0);
    assert_true(json_get_num(n, "num_parallel", 0) == 1);
    assert_string_equal(json_get_str(n, "agent_version"), "0.6.1");
    assert_true(json_get_num(json_get(n, "cpu"), "utilization_pct", 0) == 12.5);
    assert_true(json_get_num(json_get(n, "memory"), "used_gb", 0) == 60.1);
    assert_string_equal(json_get_str(json_get(n, "memory"), "pressure"),
                        "normal");
    x = json_get(n, "ollama");
    assert_int_equal(cJSON_GetArraySize(json_get(x, "models_available")), 2);
    assert_string_equal(
        json_get_str(cJSON_GetArrayItem(json_get(x, "models_loaded"), 0),
                     "name"),
        "llama3.3:70b");
    /* The router's own count, not the heartbeat's 0. */
    assert_true(
        json_get_num(cJSON_GetArrayItem(json_get(x, "models_loaded"), 0),
                     "requests_active", -1) == 2);
    assert_true(json_get_num(x, "requests_active", -1) == 2);
    assert_true(json_get_num(json_get(n, "in_flight"), "total", -1) == 2);
    assert_true(json_get_num(json_get(json_get(n, "in_flight"), "models"),
                             "llama3.3:70b", -1) == 2);
    /* Fields we don't model are shown as the node sent them. */
    assert_string_equal(json_get_str(n, "mlx_bind_host"), "127.0.0.1");
    assert_true(cJSON_IsNull(json_get(n, "image")));
    assert_true(json_get_num(n, "connection_failures_total", -1) == 3);
    assert_string_equal(json_get_str(json_get(n, "capacity"), "mode"),
                        "bootstrap");
    assert_true(json_get_num(json_get(n, "disk"), "total_gb", 0) == 1858.2);
    assert_non_null(json_get(n, "future_field"));

    n = cJSON_GetArrayItem(arr, 1);
    assert_string_equal(json_get_str(n, "node_id"), "box");
    assert_string_equal(json_get_str(n, "ollama_url"),
                        "http://localhost:11434");
    assert_true(json_get_num(n, "last_heartbeat_age_s", 0) == 2.0);
    cJSON_Delete(arr);

    /* Offline and rejected nodes are listed too, with a reason. */
    registry_tick(reg, T0 + 40 * SEC);
    buf_reset(&b);
    assert_int_equal(registry_status_json(reg, T0 + 40 * SEC, &b), 0);
    arr = cJSON_Parse(b.data);
    assert_non_null(arr);
    n = cJSON_GetArrayItem(arr, 1);
    assert_string_equal(json_get_str(n, "status"), "offline");
    assert_string_equal(json_get_str(n, "reason"), "no heartbeat");
    assert_true(json_get_num(n, "missed_heartbeats", -1) == 1);
    cJSON_Delete(arr);
    buf_cleanup(&b);
    registry_free(reg);
}

static void
test_status_json_empty_and_escaping(void **state)
{
    struct registry *reg = registry_new(NULL);
    struct hb_opts o = {.node_id = "we\"ird<node>", .loaded = {"m\\1"}};
    struct buf b;
    cJSON *arr;

    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(registry_status_json(reg, T0, &b), 0);
    assert_string_equal(b.data, "[]");
    beat(reg, &o, "10.0.0.2", T0);
    buf_reset(&b);
    assert_int_equal(registry_status_json(reg, T0, &b), 0);
    arr = cJSON_Parse(b.data);
    assert_non_null(arr);
    assert_string_equal(json_get_str(cJSON_GetArrayItem(arr, 0), "node_id"),
                        "we\"ird<node>");
    cJSON_Delete(arr);
    buf_cleanup(&b);
    registry_free(reg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_update_overwrites_cpu),
        cmocka_unit_test(test_online_excludes_drained),
        cmocka_unit_test(test_unknown_node),
        cmocka_unit_test(test_nodes_with_model),
        cmocka_unit_test(test_drain_reply),
        cmocka_unit_test(test_unload_tracking),
        cmocka_unit_test(test_url_rule),
        cmocka_unit_test(test_url_follows_lan_ip),
        cmocka_unit_test(test_heartbeat_resets_degraded),
        cmocka_unit_test(test_agent_version),
        cmocka_unit_test(test_python_payload),
        cmocka_unit_test(test_num_parallel_and_gpu),
        cmocka_unit_test(test_bad_payloads),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_ageing),
        cmocka_unit_test(test_ageing_custom),
        cmocka_unit_test(test_removal_keeps_order),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_drain_then_heartbeat),
        cmocka_unit_test(test_inflight),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_status_json_empty_and_escaping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
