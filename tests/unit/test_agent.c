/*
 * test_agent.c - the pure parts of the herd-node agent: the heartbeat
 * payload (parsed back and checked field by field against ollama-herd's
 * HeartbeatPayload, reference §2.5), the drain message, the backoff
 * schedule, the drift-free deadline arithmetic, the link-state log lines
 * and the capacity override file.
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
#include <sys/utsname.h>

#include <cjson/cJSON.h>

#include "herd/clock.h"
#include "agent.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static const char ps_body[] =
    "{\"models\":[{\"name\":\"llama3.3:70b\",\"model\":\"llama3.3:70b\","
    "\"size\":45634027520,\"size_vram\":42949672960,"
    "\"details\":{\"parameter_size\":\"70.6B\","
    "\"quantization_level\":\"Q4_K_M\"},"
    "\"expires_at\":\"2026-11-22T05:08:35.5Z\",\"context_length\":8192},"
    "{\"name\":\"old:1b\",\"size\":1073741824}]}";
static const char tags_body[] =
    "{\"models\":[{\"name\":\"llama3.3:70b\"},{\"name\":"
    "\"nomic-embed-text:latest\"}]}";

/* A cycle's worth of fixed inputs. */
struct fixture {
    struct metrics_memory mem;
    struct metrics_thermal thermal;
    struct metrics_disk disk;
    struct metrics_gpus gpus;
    struct probe_state st;
    struct capacity_decision cap;
    struct agent_sample s;
};

static void
fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->mem = (struct metrics_memory){
        .total_bytes = 192ull << 30,
        .available_bytes = (uint64_t)(131.9 * GIB),
        .used_bytes = (uint64_t)(60.1 * GIB),
        .pressure = METRICS_PRESSURE_WARN,
    };
    f->thermal = (struct metrics_thermal){
        .state = METRICS_THERMAL_NOMINAL,
        .temperature_c = 61.25,
    };
    snprintf(f->thermal.source, sizeof(f->thermal.source), "hwmon:coretemp");
    f->disk = (struct metrics_disk){
        .total_bytes = 2000ull << 30,
        .used_bytes = 900ull << 30,
        .available_bytes = 1100ull << 30,
    };
    f->gpus.n = 2;
    snprintf(f->gpus.gpu[0].name, METRICS_GPU_NAME, "NVIDIA H100 80GB HBM3");
    snprintf(f->gpus.gpu[1].name, METRICS_GPU_NAME, "NVIDIA H100 80GB HBM3");
    f->gpus.gpu[0].vram_total_bytes = 80ull << 30;
    f->gpus.gpu[1].vram_total_bytes = 80ull << 30;
    f->gpus.gpu[0].vram_used_bytes = 10ull << 30;
    f->gpus.gpu[1].vram_used_bytes = 20ull << 30;
    f->gpus.gpu[0].utilization_pct = 40;
    f->gpus.gpu[0].utilization_valid = true;
    f->gpus.gpu[1].utilization_pct = 90; /* not valid: left out */
    probe_state_init(&f->st);
    assert_int_equal(probe_parse_ps(&f->st, ps_body, strlen(ps_body)), 0);
    assert_int_equal(probe_parse_tags(&f->st, tags_body, strlen(tags_body)), 0);
    f->st.healthy = true;
    snprintf(f->st.version, sizeof(f->st.version), "0.12.3");
    f->cap = (struct capacity_decision){
        .mode = CAPACITY_MODE_LEARNING,
        .ceiling_gb = 32,
        .availability_score = 0.5,
        .reason = "bootstrap_observation_period",
        .learning_confidence = 0.02,
        .days_observed = 1,
    };
    f->s = (struct agent_sample){
        .node_id = "gpu-box",
        .arch = "x86_64",
        .timestamp = 1714000000.25,
        .cores_physical = 24,
        .cpu_pct = 12.54,
        .mem = &f->mem,
        .thermal = &f->thermal,
        .disk = &f->disk,
        .gpus = &f->gpus,
        .ollama = &f->st,
        .ollama_host = "http://192.168.1.10:11434",
        .lan_ip = "192.168.1.10",
        .capacity = &f->cap,
        .chip = "AMD EPYC 9654 + NVIDIA H100 80GB HBM3",
        .bandwidth_gbps = 3350,
        .num_parallel = 4,
        .connection_failures = 2,
        .connection_failures_total = 7,
    };
}

static cJSON *
payload_of(const struct agent_sample *s)
{
    struct buf b;
    cJSON *root;

    buf_init(&b, AGENT_PAYLOAD_MAX);
    assert_int_equal(agent_payload_json(s, &b), 0);
    root = cJSON_ParseWithLength(b.data, b.len);
    if (root == NULL)
        fail_msg("payload is not JSON: %s", b.data);
    buf_cleanup(&b);
    return root;
}

static const cJSON *
field(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (v == NULL)
        fail_msg("field \"%s\" is missing", key);
    return v;
}

static double
num(const cJSON *obj, const char *key)
{
    const cJSON *v = field(obj, key);

    if (!cJSON_IsNumber(v))
        fail_msg("field \"%s\" is not a number", key);
    return v->valuedouble;
}

/* An integer field: a number without a fraction. */
static int64_t
integer(const cJSON *obj, const char *key)
{
    double v = num(obj, key);

    if (v != floor(v))
        fail_msg("field \"%s\" is not an integer: %g", key, v);
    return (int64_t)v;
}

static const char *
str(const cJSON *obj, const char *key)
{
    const cJSON *v = field(obj, key);

    if (!cJSON_IsString(v))
        fail_msg("field \"%s\" is not a string", key);
    return v->valuestring;
}

static bool
boolean(const cJSON *obj, const char *key)
{
    const cJSON *v = field(obj, key);

    if (!cJSON_IsBool(v))
        fail_msg("field \"%s\" is not a bool", key);
    return cJSON_IsTrue(v);
}

static const cJSON *
object(const cJSON *obj, const char *key)
{
    const cJSON *v = field(obj, key);

    if (!cJSON_IsObject(v))
        fail_msg("field \"%s\" is not an object", key);
    return v;
}

static const cJSON *
array(const cJSON *obj, const char *key)
{
    const cJSON *v = field(obj, key);

    if (!cJSON_IsArray(v))
        fail_msg("field \"%s\" is not an array", key);
    return v;
}

static void
is_null(const cJSON *obj, const char *key)
{
    if (!cJSON_IsNull(field(obj, key)))
        fail_msg("field \"%s\" is not null", key);
}

static bool
near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

/* Every top-level field of ollama-herd's HeartbeatPayload (§2.5). */
static const char *const reference_fields[] = {
    "node_id",
    "arch",
    "timestamp",
    "cpu",
    "memory",
    "thermal",
    "disk",
    "ollama",
    "ollama_host",
    "lan_ip",
    "draining",
    "capacity",
    "agent_version",
    "image",
    "image_port",
    "transcription",
    "transcription_port",
    "vision_embedding",
    "vision_embedding_port",
    "vision_embedding_status",
    "connection_failures",
    "connection_failures_total",
    "chip",
    "memory_bandwidth_gbps",
    "mlx_servers",
    "mlx_bind_host",
};

static void
check_reference_shape(const cJSON *root)
{
    const cJSON *o;

    for (size_t i = 0;
         i < sizeof(reference_fields) / sizeof(reference_fields[0]); i++)
        (void)field(root, reference_fields[i]);
    (void)str(root, "node_id");
    (void)str(root, "arch");
    (void)num(root, "timestamp");
    o = object(root, "cpu");
    (void)integer(o, "cores_physical");
    (void)num(o, "utilization_pct");
    o = object(root, "memory");
    (void)num(o, "total_gb");
    (void)num(o, "used_gb");
    (void)num(o, "available_gb");
    (void)str(o, "pressure");
    (void)num(o, "wired_gb");
    (void)num(o, "compressed_gb");
    o = object(root, "thermal");
    (void)str(o, "state");
    (void)field(o, "temperature_c");
    (void)str(o, "source");
    o = object(root, "ollama");
    (void)array(o, "models_loaded");
    (void)array(o, "models_available");
    (void)integer(o, "requests_active");
    (void)str(root, "ollama_host");
    (void)str(root, "lan_ip");
    assert_false(boolean(root, "draining"));
    assert_string_equal(str(root, "agent_version"), HERD_VERSION);
    is_null(root, "image");
    assert_int_equal(integer(root, "image_port"), 0);
    is_null(root, "transcription");
    assert_int_equal(integer(root, "transcription_port"), 0);
    is_null(root, "vision_embedding");
    assert_int_equal(integer(root, "vision_embedding_port"), 0);
    o = object(root, "vision_embedding_status");
    assert_false(boolean(o, "backend_available"));
    assert_int_equal(integer(o, "cached_model_count"), 0);
    (void)integer(root, "connection_failures");
    (void)integer(root, "connection_failures_total");
    (void)str(root, "chip");
    (void)num(root, "memory_bandwidth_gbps");
    assert_int_equal(cJSON_GetArraySize(array(root, "mlx_servers")), 0);
    (void)str(root, "mlx_bind_host");
    /* Ours. */
    (void)field(root, "gpu");
    assert_true(integer(root, "num_parallel") >= 1);
    (void)field(root, "ollama_version");
    (void)boolean(root, "ollama_healthy");
}

static void
test_payload_every_field(void **state)
{
    struct fixture f;
    const cJSON *o, *m, *c, *g;
    cJSON *root;

    (void)state;
    fixture_init(&f);
    root = payload_of(&f.s);
    check_reference_shape(root);
    assert_string_equal(str(root, "node_id"), "gpu-box");
    assert_string_equal(str(root, "arch"), "x86_64");
    assert_true(near(num(root, "timestamp"), 1714000000.25));
    o = object(root, "cpu");
    assert_int_equal(integer(o, "cores_physical"), 24);
    assert_true(near(num(o, "utilization_pct"), 12.5)); /* 1 decimal */
    o = object(root, "memory");
    assert_true(near(num(o, "total_gb"), 192.0));
    assert_true(near(num(o, "used_gb"), 60.1));
    assert_true(near(num(o, "available_gb"), 131.9));
    assert_string_equal(str(o, "pressure"), "warn");
    assert_true(near(num(o, "wired_gb"), 0) &&
                near(num(o, "compressed_gb"), 0));
    o = object(root, "thermal");
    assert_string_equal(str(o, "state"), "nominal");
    assert_true(near(num(o, "temperature_c"), 61.3) ||
                near(num(o, "temperature_c"), 61.2));
    assert_string_equal(str(o, "source"), "hwmon:coretemp");
    o = object(root, "disk");
    assert_true(near(num(o, "total_gb"), 2000) && near(num(o, "used_gb"), 900));
    assert_true(near(num(o, "available_gb"), 1100));
    o = object(root, "ollama");
    assert_int_equal(cJSON_GetArraySize(array(o, "models_loaded")), 2);
    m = cJSON_GetArrayItem(array(o, "models_loaded"), 0);
    assert_string_equal(str(m, "name"), "llama3.3:70b");
    assert_true(near(num(m, "size_gb"), 42.5));
    assert_int_equal(integer(m, "requests_active"), 0);
    assert_string_equal(str(m, "parameter_size"), "70.6B");
    assert_string_equal(str(m, "quantization"), "Q4_K_M");
    assert_int_equal(integer(m, "context_length"), 8192);
    assert_true(near(num(m, "size_vram_gb"), 40.0));
    assert_string_equal(str(m, "expires_at"), "2026-11-22T05:08:35.5Z");
    m = cJSON_GetArrayItem(array(o, "models_loaded"), 1);
    assert_string_equal(str(m, "parameter_size"), ""); /* never null */
    assert_int_equal(integer(m, "context_length"), 0);
    is_null(m, "expires_at");
    assert_int_equal(cJSON_GetArraySize(array(o, "models_available")), 2);
    assert_string_equal(
        cJSON_GetArrayItem(array(o, "models_available"), 1)->valuestring,
        "nomic-embed-text:latest");
    assert_string_equal(str(root, "ollama_host"), "http://192.168.1.10:11434");
    assert_string_equal(str(root, "lan_ip"), "192.168.1.10");
    c = object(root, "capacity");
    assert_string_equal(str(c, "mode"), "learning");
    assert_true(near(num(c, "ceiling_gb"), 32));
    assert_true(near(num(c, "availability_score"), 0.5));
    assert_string_equal(str(c, "reason"), "bootstrap_observation_period");
    assert_false(boolean(c, "override_active"));
    assert_true(near(num(c, "learning_confidence"), 0.02));
    assert_int_equal(integer(c, "days_observed"), 1);
    assert_int_equal(integer(root, "connection_failures"), 2);
    assert_int_equal(integer(root, "connection_failures_total"), 7);
    assert_string_equal(str(root, "chip"),
                        "AMD EPYC 9654 + NVIDIA H100 80GB HBM3");
    assert_true(near(num(root, "memory_bandwidth_gbps"), 3350));
    g = object(root, "gpu");
    assert_string_equal(str(g, "name"), "NVIDIA H100 80GB HBM3");
    assert_int_equal(integer(g, "count"), 2);
    assert_true(near(num(g, "vram_total_gb"), 160));
    assert_true(near(num(g, "vram_used_gb"), 30));
    assert_true(near(num(g, "utilization_pct"), 40)); /* valid ones only */
    assert_int_equal(integer(root, "num_parallel"), 4);
    /* Also where ollama-herd after 0.6.1 reads it. */
    assert_int_equal(integer(object(root, "ollama"), "num_parallel"), 4);
    assert_string_equal(str(root, "ollama_version"), "0.12.3");
    assert_true(boolean(root, "ollama_healthy"));
    cJSON_Delete(root);
    probe_state_cleanup(&f.st);
}

/* Ollama down, no disk, no GPU, no learner: still every field, with
 * empty model lists and ollama_healthy false. */
static void
test_payload_ollama_down(void **state)
{
    struct fixture f;
    const cJSON *o;
    cJSON *root;

    (void)state;
    fixture_init(&f);
    f.st.healthy = false; /* lists parsed, but GET / failed */
    f.s.disk = NULL;
    f.s.gpus = NULL;
    f.s.capacity = NULL;
    f.s.thermal = NULL;
    root = payload_of(&f.s);
    check_reference_shape(root);
    o = object(root, "ollama");
    assert_int_equal(cJSON_GetArraySize(array(o, "models_loaded")), 0);
    assert_int_equal(cJSON_GetArraySize(array(o, "models_available")), 0);
    assert_false(boolean(root, "ollama_healthy"));
    is_null(root, "disk");
    is_null(root, "gpu");
    is_null(root, "capacity");
    o = object(root, "thermal");
    assert_string_equal(str(o, "state"), "unknown");
    is_null(o, "temperature_c");
    cJSON_Delete(root);

    /* No probe at all, no memory reading: still a valid payload. */
    f.s.ollama = NULL;
    f.s.mem = NULL;
    f.s.gpus = &f.gpus;
    f.gpus.n = 0;
    root = payload_of(&f.s);
    check_reference_shape(root);
    is_null(root, "ollama_version");
    is_null(root, "gpu");
    assert_true(near(num(object(root, "memory"), "total_gb"), 0));
    cJSON_Delete(root);
    probe_state_cleanup(&f.st);
}

/* NaN and Inf never reach the JSON; names are escaped. */
static void
test_payload_hostile_values(void **state)
{
    struct fixture f;
    cJSON *root;

    (void)state;
    fixture_init(&f);
    f.s.cpu_pct = NAN;
    f.s.bandwidth_gbps = INFINITY;
    f.s.node_id = "we\"ird\n<id>";
    f.s.num_parallel = 0;
    f.s.cores_physical = 0;
    root = payload_of(&f.s);
    assert_true(near(num(object(root, "cpu"), "utilization_pct"), 0));
    assert_true(near(num(root, "memory_bandwidth_gbps"), 0));
    assert_string_equal(str(root, "node_id"), "we\"ird\n<id>");
    assert_int_equal(integer(root, "num_parallel"), 1);
    assert_int_equal(integer(object(root, "ollama"), "num_parallel"), 1);
    assert_int_equal(integer(object(root, "cpu"), "cores_physical"), 1);
    cJSON_Delete(root);
    probe_state_cleanup(&f.st);
}

static void
test_drain_json(void **state)
{
    struct buf b;
    cJSON *root;

    (void)state;
    buf_init(&b, 1024);
    assert_int_equal(agent_drain_json("mac-studio", &b), 0);
    assert_string_equal(b.data,
                        "{\"node_id\":\"mac-studio\",\"draining\":true}");
    root = cJSON_Parse(b.data);
    assert_int_equal(cJSON_GetArraySize(root), 2);
    cJSON_Delete(root);
    buf_cleanup(&b);
}

static void
test_arch_chip_bandwidth(void **state)
{
    struct metrics_gpus g = {.n = 1};
    struct utsname u;
    char chip[256];

    (void)state;
    assert_int_equal(uname(&u), 0);
    if (strcmp(u.machine, "arm64") == 0)
        assert_string_equal(agent_arch(), "aarch64");
    else
        assert_string_equal(agent_arch(), u.machine);
    assert_string_not_equal(agent_arch(), "apple_silicon");
    snprintf(g.gpu[0].name, METRICS_GPU_NAME, "NVIDIA GeForce RTX 4090");
    agent_chip("AMD Ryzen 9 7950X", &g, chip, sizeof(chip));
    assert_string_equal(chip, "AMD Ryzen 9 7950X + NVIDIA GeForce RTX 4090");
    agent_chip("AMD Ryzen 9 7950X", NULL, chip, sizeof(chip));
    assert_string_equal(chip, "AMD Ryzen 9 7950X");
    agent_chip("", &g, chip, sizeof(chip));
    assert_string_equal(chip, "NVIDIA GeForce RTX 4090");
    assert_true(agent_bandwidth_gbps(
                    "AMD Ryzen 9 7950X + NVIDIA GeForce RTX 4090") == 1008);
    assert_true(agent_bandwidth_gbps("Intel Xeon + NVIDIA H100 80GB HBM3") ==
                3350);
    assert_true(agent_bandwidth_gbps("  Apple   M2 Ultra ") == 800);
    assert_true(agent_bandwidth_gbps("Apple M2") == 100);
    assert_true(agent_bandwidth_gbps("Intel(R) Core(TM) i7") == 0);
    assert_true(agent_bandwidth_gbps(NULL) == 0);
}

/* --- schedule ---------------------------------------------------------- */

static void
test_backoff_schedule(void **state)
{
    const int64_t s = NS_PER_SEC;

    (void)state;
    /* 5 s: three retries at the interval, then doubling, capped at 30 s. */
    assert_int_equal(agent_retry_delay_ns(5 * s, 0), 5 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 1), 5 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 3), 5 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 4), 10 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 5), 20 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 6), 30 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, 7), 30 * s);
    assert_int_equal(agent_retry_delay_ns(5 * s, UINT64_MAX), 30 * s);
    /* 0.2 s (the tests' interval). */
    assert_int_equal(agent_retry_delay_ns(s / 5, 3), s / 5);
    assert_int_equal(agent_retry_delay_ns(s / 5, 4), 2 * s / 5);
    assert_int_equal(agent_retry_delay_ns(s / 5, 8), 32 * s / 5);
    assert_int_equal(agent_retry_delay_ns(s / 5, 1000), 30 * s);
    /* An interval above the cap is never shortened nor lengthened. */
    assert_int_equal(agent_retry_delay_ns(120 * s, 0), 120 * s);
    assert_int_equal(agent_retry_delay_ns(120 * s, 50), 120 * s);
    /* Monotonic in the failure count. */
    for (uint64_t k = 0; k < 100; k++)
        assert_true(agent_retry_delay_ns(s / 5, k) <=
                    agent_retry_delay_ns(s / 5, k + 1));
}

static void
test_deadline_arithmetic(void **state)
{
    const uint64_t base = 1000 * (uint64_t)NS_PER_SEC;
    const int64_t p = 5 * NS_PER_SEC;

    (void)state;
    /* On time: the next point of the grid, not now + period. */
    assert_int_equal(agent_next_deadline(base, p, base + 300 * NS_PER_MS),
                     base + (uint64_t)p);
    assert_int_equal(agent_next_deadline(base, p, base), base + (uint64_t)p);
    /* Exactly on the next point: that one is due now, take the one after. */
    assert_int_equal(agent_next_deadline(base, p, base + (uint64_t)p),
                     base + 2 * (uint64_t)p);
    /* 2.5 periods late: the missed ticks are skipped, the grid is kept. */
    assert_int_equal(agent_next_deadline(base, p, base + (uint64_t)p * 5 / 2),
                     base + 3 * (uint64_t)p);
    /* A period change (backoff) starts from the previous deadline. */
    assert_int_equal(agent_next_deadline(base, 2 * p, base + 1),
                     base + 2 * (uint64_t)p);
    assert_int_equal(agent_next_deadline(base, 0, base), base + 1);
}

/* 10,000 cycles that each take a random part of the period: every
 * deadline stays on the grid base + k * period, so nothing drifts. */
static void
test_no_drift(void **state)
{
    const int64_t p = NS_PER_SEC / 5;
    uint64_t base = 42, deadline = base, now;
    unsigned seed = 7;

    (void)state;
    for (int i = 0; i < 10000; i++) {
        seed = seed * 1103515245u + 12345u;
        now = deadline + (seed >> 8) % (uint64_t)p; /* the cycle's work */
        if (i % 1000 == 999)
            now += 3 * (uint64_t)p + 1; /* an occasional stall */
        deadline = agent_next_deadline(deadline, p, now);
        assert_true(deadline > now);
        assert_true(deadline - now <= (uint64_t)p);
        assert_int_equal((deadline - base) % (uint64_t)p, 0);
    }
    /* One tick per cycle, plus the ticks the stalls skipped. */
    assert_true((deadline - base) / (uint64_t)p >= 10000 + 10 * 3);
}

/* --- link state -------------------------------------------------------- */

static bool
link_step(struct agent_link_state *st, int err, int status, char *msg,
          enum log_level *lvl)
{
    return agent_link_update(
        st, err, status, err ? "Failed to connect to 10.0.0.5 port 11435" : "",
        "http://10.0.0.5:11435", true, msg, 512, lvl);
}

static void
test_link_logs_on_change_only(void **state)
{
    struct agent_link_state st = {0};
    enum log_level lvl;
    char msg[512];

    (void)state;
    assert_true(link_step(&st, 0, 200, msg, &lvl));
    assert_int_equal(lvl, LL_INFO);
    assert_non_null(strstr(msg, "first heartbeat"));
    assert_false(link_step(&st, 0, 200, msg, &lvl));
    /* Unreachable: one line, then silence however long it lasts. */
    assert_true(link_step(&st, -ECONNREFUSED, 0, msg, &lvl));
    assert_int_equal(lvl, LL_WARN);
    assert_non_null(strstr(msg, "coordinator unreachable: Failed to connect"));
    for (int i = 0; i < 100; i++)
        assert_false(link_step(&st, -ETIMEDOUT, 0, msg, &lvl));
    assert_int_equal(st.failures, 101);
    assert_int_equal(st.failures_total, 101);
    assert_int_equal(st.link, AGENT_LINK_UNREACHABLE);
    /* Back: one line with the count, counters since success reset. */
    assert_true(link_step(&st, 0, 200, msg, &lvl));
    assert_int_equal(lvl, LL_INFO);
    assert_non_null(strstr(msg, "reachable again after 101 failures"));
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.failures_total, 101);
    /* 401: said once, clearly, then silence; it counts as a failure. */
    assert_true(link_step(&st, 0, 401, msg, &lvl));
    assert_int_equal(lvl, LL_ERROR);
    assert_non_null(strstr(msg, "coordinator refused our token"));
    assert_false(link_step(&st, 0, 401, msg, &lvl));
    assert_false(link_step(&st, 0, 403, msg, &lvl));
    assert_int_equal(st.failures, 3);
    /* Another status is another state. */
    assert_true(link_step(&st, 0, 500, msg, &lvl));
    assert_non_null(strstr(msg, "HTTP 500"));
    assert_false(link_step(&st, 0, 503, msg, &lvl));
    assert_true(link_step(&st, 0, 200, msg, &lvl));
    assert_non_null(strstr(msg, "after 5 failures"));
    assert_int_equal(st.failures_total, 106);
    /* Without a token the 401 line says one is needed. */
    st = (struct agent_link_state){0};
    assert_true(agent_link_update(&st, 0, 401, "", "http://x", false, msg,
                                  sizeof(msg), &lvl));
    assert_non_null(strstr(msg, "it requires one"));
}

/* --- override file ----------------------------------------------------- */

static void
test_override_file(void **state)
{
    enum capacity_override mode;
    const char *why = NULL;
    char path[256];
    double expires;
    struct buf b;

    (void)state;
    assert_int_equal(
        agent_override_path("/var/lib/herd", "mac/../x y", path, sizeof(path)),
        0);
    assert_string_equal(path,
                        "/var/lib/herd/capacity-override-mac_.._x_y.json");
    assert_int_equal(agent_override_path("/d", "n", path, 10), -ENAMETOOLONG);

    /* Round trip. */
    buf_init(&b, AGENT_OVERRIDE_MAX);
    assert_int_equal(
        agent_override_json(CAPACITY_OVERRIDE_PAUSED, 2000.5, 1000, &b), 0);
    assert_int_equal(
        agent_override_parse(b.data, b.len, 1500, &mode, &expires, &why), 0);
    assert_int_equal(mode, CAPACITY_OVERRIDE_PAUSED);
    assert_true(near(expires, 2000.5));
    /* Expired: reads as none. */
    assert_int_equal(
        agent_override_parse(b.data, b.len, 2001, &mode, &expires, &why), 0);
    assert_int_equal(mode, CAPACITY_OVERRIDE_NONE);
    buf_reset(&b);
    assert_int_equal(agent_override_json(CAPACITY_OVERRIDE_NONE, 0, 1000, &b),
                     0);
    assert_non_null(strstr(b.data, "\"expires\":null"));
    assert_int_equal(
        agent_override_parse(b.data, b.len, 1500, &mode, &expires, &why), 0);
    assert_int_equal(mode, CAPACITY_OVERRIDE_NONE);
    buf_cleanup(&b);

    /* Broken files: -EINVAL with a reason, mode none. */
    static const char *const bad[] = {
        "",
        "[1]",
        "{\"mode\":\"turbo\",\"expires\":3000}",
        "{\"mode\":42}",
        "{\"mode\":\"full\"}",
        "{\"mode\":\"full\",\"expires\":\"soon\"}",
        "{\"mode\":\"full\",\"expires\":30",
        "{\"mode\":\"full\",\"expires\":1e300}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        mode = CAPACITY_OVERRIDE_FULL;
        assert_int_equal(agent_override_parse(bad[i], strlen(bad[i]), 1500,
                                              &mode, &expires, &why),
                         -EINVAL);
        assert_non_null(why);
        assert_int_equal(mode, CAPACITY_OVERRIDE_NONE);
    }
}

static void
test_override_decision(void **state)
{
    struct capacity_decision d;

    (void)state;
    agent_override_decision(CAPACITY_OVERRIDE_PAUSED, 64, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_PAUSED);
    assert_true(d.ceiling_gb == 0 && d.availability_score == 0);
    assert_true(d.override_active);
    assert_string_equal(d.reason, "manual_override");
    assert_false(capacity_routable(&d));
    agent_override_decision(CAPACITY_OVERRIDE_FULL, 64, &d);
    assert_int_equal(d.mode, CAPACITY_MODE_FULL);
    assert_true(near(d.ceiling_gb, 51.2) && d.availability_score == 1.0);
    assert_true(capacity_routable(&d));
}

/* herd-node has no TLS: an https URL is refused at once, with the reason. */
static void
test_new_refuses_https(void **state)
{
    struct agent_config c = {
        .node_id = "n1",
        .ollama_host = "http://localhost:11434",
        .router_url = "https://10.0.0.5:11435",
        .data_dir = "/nonexistent/herd-test",
        .interval_s = 5,
        .num_parallel = 1,
    };
    char err[512] = "";

    (void)state;
    assert_null(agent_new(NULL, &c, err, sizeof(err)));
    assert_non_null(strstr(err, "router URL https://10.0.0.5:11435: https is "
                                "not supported by herd-node; put the "
                                "coordinator behind plain http on the LAN or "
                                "use a local proxy"));
    c.router_url = "";
    c.ollama_host = "HTTPS://gpu-box:11434";
    err[0] = '\0';
    assert_null(agent_new(NULL, &c, err, sizeof(err)));
    assert_non_null(strstr(err, "Ollama URL HTTPS://gpu-box:11434: https is "
                                "not supported"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_every_field),
        cmocka_unit_test(test_payload_ollama_down),
        cmocka_unit_test(test_payload_hostile_values),
        cmocka_unit_test(test_drain_json),
        cmocka_unit_test(test_arch_chip_bandwidth),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_deadline_arithmetic),
        cmocka_unit_test(test_no_drift),
        cmocka_unit_test(test_link_logs_on_change_only),
        cmocka_unit_test(test_override_file),
        cmocka_unit_test(test_override_decision),
        cmocka_unit_test(test_new_refuses_https),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
