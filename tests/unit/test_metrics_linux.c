/*
 * test_metrics_linux.c - host metrics parsed from fixture /proc and /sys
 * trees that each test writes under its own temporary root, and the NVML
 * path run through dlopen against tests/unit/nvml_stub.c (HERD_NVML_STUB,
 * built and passed in by CMakeLists.txt).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include <cjson/cJSON.h>

#include "herd/buf.h"
#include "herd/fsutil.h"
#include "agent.h"
#include "metrics_linux.h"

#ifndef HERD_NVML_STUB
#error "HERD_NVML_STUB: the NVML stand-in's path, set by CMakeLists.txt"
#endif

static char root[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/herd-test-metrics-XXXXXX");
    return mkdtemp(root) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes root/rel (creating its directories) with exactly s. */
static void
put(const char *rel, const char *s)
{
    char path[512], dir[512];
    char *slash;

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    assert_int_equal(fs_write_atomic(path, s, strlen(s)), 0);
}

static void
init_root(struct metrics *m)
{
    assert_int_equal(metrics_init(m, root), 0);
}

/* ------------------------------------------------------------------ */

static void
test_init(void **state)
{
    struct metrics m;
    char longroot[400];

    (void)state;
    assert_int_equal(metrics_init(&m, "relative/dir"), -EINVAL);
    assert_int_equal(metrics_init(&m, NULL), -EINVAL);
    assert_int_equal(metrics_init(&m, "/"), 0);
    assert_string_equal(m.root, "");
    assert_int_equal(metrics_init(&m, "/tmp/x///"), 0);
    assert_string_equal(m.root, "/tmp/x");
    memset(longroot, 'a', sizeof(longroot) - 1);
    longroot[0] = '/';
    longroot[sizeof(longroot) - 1] = '\0';
    assert_int_equal(metrics_init(&m, longroot), -ENAMETOOLONG);
    metrics_cleanup(&m);
}

static void
test_cpu_delta(void **state)
{
    struct metrics m;
    double pct = -1;

    (void)state;
    init_root(&m);
    put("proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n"
                     "cpu0 100 0 100 800 0 0 0 0 0 0\n"
                     "intr 12345 1 2 3\n");
    /* The first sample is only a baseline, as psutil's first call. */
    assert_int_equal(metrics_cpu_sample(&m, &pct), -EAGAIN);
    assert_true(pct == 0.0);
    /* +1000 jiffies, 800 of them idle or iowait: 20 % busy. The guest
     * column (500) is already part of user and is not counted twice. */
    put("proc/stat", "cpu  200 0 200 1550 50 0 0 0 500 0\n");
    assert_int_equal(metrics_cpu_sample(&m, &pct), 0);
    assert_true(pct == 20.0);
    /* No tick elapsed: 0, not a division by zero. */
    assert_int_equal(metrics_cpu_sample(&m, &pct), 0);
    assert_true(pct == 0.0);
    /* 3 of 4 jiffies busy, with irq/softirq/steal counted as busy. */
    put("proc/stat", "cpu  201 0 200 1551 50 1 0 1 500 0\n");
    assert_int_equal(metrics_cpu_sample(&m, &pct), 0);
    assert_true(pct == 75.0);
    /* One decimal, as psutil: 1/3 -> 33.3. */
    put("proc/stat", "cpu  202 0 200 1553 50 1 0 1 500 0\n");
    assert_int_equal(metrics_cpu_sample(&m, &pct), 0);
    assert_true(pct == 33.3);
    /* Counters going backwards (hot-unplug): a new baseline. */
    put("proc/stat", "cpu  10 0 10 10 0 0 0 0 0 0\n");
    assert_int_equal(metrics_cpu_sample(&m, &pct), -EAGAIN);
    assert_true(pct == 0.0);
    /* Old kernels: only four columns. */
    put("proc/stat", "cpu 20 0 10 20\n");
    assert_int_equal(metrics_cpu_sample(&m, &pct), 0);
    assert_true(pct == 50.0);
    metrics_cleanup(&m);
}

static void
test_cpu_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "cpu 1 2\n",
        "cpu  a b c d\n",
        "cpu  1 2 3 -4\n",
        "intr 1 2 3\ncpu  1 2 3 4\n",
        "cpu0 1 2 3 4\n",
        "cpu", /* truncated mid-line */
        "cpu  99999999999999999999999 1 1 1\n",
    };
    struct metrics m;
    double pct;

    (void)state;
    init_root(&m);
    assert_int_equal(metrics_cpu_sample(&m, &pct), -ENOENT);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put("proc/stat", bad[i]);
        assert_int_equal(metrics_cpu_sample(&m, &pct), -EINVAL);
        assert_false(m.have_prev);
    }
    metrics_cleanup(&m);
}

/* A /proc/stat whose first line is longer than the line buffer is
 * skipped, not cut into pieces that could parse. */
static void
test_cpu_overlong_line(void **state)
{
    struct metrics m;
    char *s;
    double pct;
    size_t n = 20000;

    (void)state;
    init_root(&m);
    s = malloc(n + 64);
    assert_non_null(s);
    memcpy(s, "cpu  ", 5);
    for (size_t i = 5; i < n; i += 2)
        memcpy(s + i, "1 ", 2);
    snprintf(s + n, 64, "\ncpu0 1 2 3 4\n");
    put("proc/stat", s);
    free(s);
    assert_int_equal(metrics_cpu_sample(&m, &pct), -EINVAL);
    metrics_cleanup(&m);
}

static const char cpuinfo_head[] =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"
    "physical id\t: 0\n"
    "core id\t\t: 0\n"
    "flags\t\t: ";
static const char cpuinfo_tail[] =
    "\n"
    "\n"
    "processor\t: 1\n"
    "model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"
    "physical id\t: 0\n"
    "core id\t\t: 1\n"
    "\n"
    "processor\t: 2\n"
    "physical id\t: 0\n"
    "core id\t\t: 0\n"
    "\n"
    "processor\t: 3\n"
    "physical id\t: 0\n"
    "core id\t\t: 1\n"
    "\n"
    "processor\t: 4\n"
    "physical id\t: 1\n"
    "core id\t\t: 0\n";

static void
test_cpuinfo_x86(void **state)
{
    struct metrics m;
    struct metrics_cpuinfo ci;
    size_t nflags = 12000; /* longer than the reader's line buffer */
    size_t nh = strlen(cpuinfo_head), nt = strlen(cpuinfo_tail);
    char *text;

    (void)state;
    init_root(&m);
    text = malloc(nh + nflags + nt + 1);
    assert_non_null(text);
    memcpy(text, cpuinfo_head, nh);
    memset(text + nh, 'f', nflags);
    memcpy(text + nh + nflags, cpuinfo_tail, nt + 1);
    put("proc/cpuinfo", text);
    free(text);
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), 0);
    assert_string_equal(ci.model, "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz");
    assert_int_equal(ci.cores_logical, 5);
    /* (0,0) (0,1) (1,0): three distinct cores. */
    assert_int_equal(ci.cores_physical, 3);
    metrics_cleanup(&m);
}

static void
test_cpuinfo_arm_sysfs(void **state)
{
    struct metrics m;
    struct metrics_cpuinfo ci;

    (void)state;
    init_root(&m);
    put("proc/cpuinfo", "processor : 0\nBogoMIPS : 108.00\n\n"
                        "processor : 1\n\nprocessor : 2\n\nprocessor : 3\n\n"
                        "Hardware : BCM2835\nRevision : c03111\n");
    /* Without topology in sysfs: physical = logical. */
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), 0);
    assert_string_equal(ci.model, "BCM2835");
    assert_int_equal(ci.cores_logical, 4);
    assert_int_equal(ci.cores_physical, 4);
    /* Two cores of two threads each. */
    put("sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "0-1\n");
    put("sys/devices/system/cpu/cpu1/topology/thread_siblings_list", "0-1\n");
    put("sys/devices/system/cpu/cpu2/topology/thread_siblings_list", "2,3\n");
    put("sys/devices/system/cpu/cpu3/topology/thread_siblings_list", "2,3\n");
    put("sys/devices/system/cpu/cpufreq/policy0", "x\n");
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), 0);
    assert_int_equal(ci.cores_logical, 4);
    assert_int_equal(ci.cores_physical, 2);
    metrics_cleanup(&m);
}

static void
test_cpuinfo_malformed(void **state)
{
    struct metrics m;
    struct metrics_cpuinfo ci;

    (void)state;
    init_root(&m);
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), -ENOENT);
    put("proc/cpuinfo", "");
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), -EINVAL);
    put("proc/cpuinfo", "garbage without colons\n\x01\x02\x03");
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), -EINVAL);
    /* Truncated in the middle of a block: what is there still counts. */
    put("proc/cpuinfo", "processor\t: 0\nmodel name\t: Some CPU\nphysical id"
                        "\t: x\ncore id : 3\nprocessor\t: 1\nmodel na");
    assert_int_equal(metrics_read_cpuinfo(&m, &ci), 0);
    assert_string_equal(ci.model, "Some CPU");
    assert_int_equal(ci.cores_logical, 2);
    assert_int_equal(ci.cores_physical, 2);
    metrics_cleanup(&m);
}

/* ------------------------------------------------------------------ */

static const char meminfo[] = "MemTotal:       16384000 kB\n"
                              "MemFree:         2048000 kB\n"
                              "MemAvailable:    8192000 kB\n"
                              "Buffers:         1024000 kB\n"
                              "Cached:          4096000 kB\n"
                              "SwapCached:            0 kB\n"
                              "SReclaimable:    1024000 kB\n"
                              "HugePages_Total:       0\n";

static void
test_memory_meminfo(void **state)
{
    struct metrics m;
    struct metrics_memory mem;

    (void)state;
    init_root(&m);
    put("proc/meminfo", meminfo);
    assert_int_equal(metrics_read_memory(&m, &mem), 0);
    assert_true(mem.total_bytes == 16384000ULL * 1024);
    assert_true(mem.available_bytes == 8192000ULL * 1024);
    /* psutil: total - free - buffers - (cached + sreclaimable). */
    assert_true(mem.used_bytes == 8192000ULL * 1024);
    assert_true(mem.used_pct == 50.0);
    assert_false(mem.psi);
    assert_int_equal(mem.pressure, METRICS_PRESSURE_NORMAL);

    /* No MemAvailable (kernel < 3.14): free + buffers + cache. */
    put("proc/meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\n"
                        "Buffers: 50 kB\nCached: 100 kB\n");
    assert_int_equal(metrics_read_memory(&m, &mem), 0);
    assert_true(mem.available_bytes == 250ULL * 1024);
    assert_true(mem.used_bytes == 750ULL * 1024);
    assert_true(mem.used_pct == 75.0);
    metrics_cleanup(&m);
}

static void
memory_with_available(struct metrics *m, unsigned avail_kb,
                      enum metrics_pressure want)
{
    struct metrics_memory mem;
    char text[256];

    snprintf(text, sizeof(text),
             "MemTotal: 1000000 kB\nMemFree: 1000 kB\nMemAvailable: %u kB\n",
             avail_kb);
    put("proc/meminfo", text);
    assert_int_equal(metrics_read_memory(m, &mem), 0);
    assert_false(mem.psi);
    assert_int_equal(mem.pressure, want);
}

/* Without PSI: ollama-herd's used-% thresholds, >= 85 warn, >= 95
 * critical. */
static void
test_memory_fallback_thresholds(void **state)
{
    struct metrics m;

    (void)state;
    init_root(&m);
    memory_with_available(&m, 151000, METRICS_PRESSURE_NORMAL);  /* 84.9 % */
    memory_with_available(&m, 150000, METRICS_PRESSURE_WARN);    /* 85 % */
    memory_with_available(&m, 51000, METRICS_PRESSURE_WARN);     /* 94.9 % */
    memory_with_available(&m, 50000, METRICS_PRESSURE_CRITICAL); /* 95 % */
    memory_with_available(&m, 0, METRICS_PRESSURE_CRITICAL);
    metrics_cleanup(&m);
}

static void
psi_case(struct metrics *m, const char *psi, bool want_psi,
         enum metrics_pressure want, double some, double full)
{
    struct metrics_memory mem;

    put("proc/pressure/memory", psi);
    assert_int_equal(metrics_read_memory(m, &mem), 0);
    assert_int_equal(mem.psi, want_psi);
    assert_int_equal(mem.pressure, want);
    assert_true(mem.psi_some_avg10 == some);
    assert_true(mem.psi_full_avg10 == full);
}

static void
test_memory_psi(void **state)
{
    struct metrics m;

    (void)state;
    init_root(&m);
    /* 97 % used by MemAvailable, yet PSI says no stalls: PSI decides
     * (MemAvailable misses reclaimable caches such as the ZFS ARC). */
    put("proc/meminfo", "MemTotal: 1000000 kB\nMemFree: 1000 kB\n"
                        "MemAvailable: 30000 kB\n");
    psi_case(&m,
             "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
             "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
             true, METRICS_PRESSURE_NORMAL, 0.0, 0.0);
    psi_case(&m,
             "some avg10=9.99 avg60=1.00 avg300=0.50 total=123\n"
             "full avg10=1.99 avg60=0.00 avg300=0.00 total=0\n",
             true, METRICS_PRESSURE_NORMAL, 9.99, 1.99);
    psi_case(&m,
             "some avg10=12.50 avg60=4.00 avg300=1.00 total=99\n"
             "full avg10=0.50 avg60=0.10 avg300=0.00 total=9\n",
             true, METRICS_PRESSURE_WARN, 12.5, 0.5);
    psi_case(&m,
             "some avg10=3.00 avg60=0 avg300=0 total=0\n"
             "full avg10=2.00 avg60=0 avg300=0 total=0\n",
             true, METRICS_PRESSURE_WARN, 3.0, 2.0);
    psi_case(&m,
             "some avg10=30.00 avg60=0 avg300=0 total=0\n"
             "full avg10=15.00 avg60=0 avg300=0 total=0\n",
             true, METRICS_PRESSURE_CRITICAL, 30.0, 15.0);
    psi_case(&m,
             "some avg10=50.00 avg60=0 avg300=0 total=0\n"
             "full avg10=0.00 avg60=0 avg300=0 total=0\n",
             true, METRICS_PRESSURE_CRITICAL, 50.0, 0.0);
    /* Only a "some" line: full counts as 0. */
    psi_case(&m, "some avg10=11.00 avg60=0 avg300=0 total=0\n", true,
             METRICS_PRESSURE_WARN, 11.0, 0.0);
    /* Malformed PSI: ignored, the used-% rule applies (97 % -> critical). */
    psi_case(&m, "some avg10=abc avg60=0\n", false, METRICS_PRESSURE_CRITICAL,
             0.0, 0.0);
    psi_case(&m, "some avg60=1.00 avg10=1.00\n", false,
             METRICS_PRESSURE_CRITICAL, 0.0, 0.0);
    psi_case(&m, "", false, METRICS_PRESSURE_CRITICAL, 0.0, 0.0);
    psi_case(&m, "full avg10=1.00\n", false, METRICS_PRESSURE_CRITICAL, 0.0,
             0.0);
    psi_case(&m, "some avg10=101.00\n", false, METRICS_PRESSURE_CRITICAL, 0.0,
             0.0);
    psi_case(&m, "bogus avg10=1.00\nsome avg10=1.00\n", false,
             METRICS_PRESSURE_CRITICAL, 0.0, 0.0);
    metrics_cleanup(&m);
}

static void
test_memory_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "MemFree: 100 kB\n",                        /* no MemTotal */
        "MemTotal: 0 kB\nMemFree: 0 kB\n",          /* zero total */
        "MemTotal: abc kB\nMemFree: 1 kB\n",        /* not a number */
        "MemTotal: 1000 kB\n",                      /* no MemFree */
        "MemTotal: 1000 MB\nMemFree: 1 kB\n",       /* unknown unit */
        "MemTotal: 1000 kB extra\nMemFree: 1 kB\n", /* trailing junk */
        "MemTotal:\nMemFree: 1 kB\n",               /* no value */
        "MemTotal: -5 kB\nMemFree: 1 kB\n",         /* negative */
        "MemFree: 1 kB\nMemTotal: 1638",            /* truncated */
        "MemTotal: 99999999999999999999 kB\nMemFree: 1 kB\n",
    };
    struct metrics m;
    struct metrics_memory mem;

    (void)state;
    init_root(&m);
    assert_int_equal(metrics_read_memory(&m, &mem), -ENOENT);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put("proc/meminfo", bad[i]);
        assert_int_equal(metrics_read_memory(&m, &mem), -EINVAL);
    }
    metrics_cleanup(&m);
}

/* ------------------------------------------------------------------ */

static void
test_disk(void **state)
{
    struct metrics m;
    struct metrics_disk d;
    struct statvfs sv;

    (void)state;
    init_root(&m);
    assert_int_equal(metrics_read_disk(&m, "/", &d), 0);
    assert_int_equal(statvfs(root, &sv), 0);
    assert_true(d.total_bytes == (uint64_t)sv.f_blocks * sv.f_frsize);
    assert_true(d.total_bytes > 0);
    assert_true(d.used_bytes <= d.total_bytes);
    assert_true(d.available_bytes <= d.total_bytes);
    assert_int_equal(metrics_read_disk(&m, "relative", &d), -EINVAL);
    assert_int_equal(metrics_read_disk(&m, "/no/such/dir", &d), -ENOENT);
    metrics_cleanup(&m);
}

/* ------------------------------------------------------------------ */

static void
test_thermal_preferred(void **state)
{
    struct metrics m;
    struct metrics_thermal t;

    (void)state;
    init_root(&m);
    put("sys/class/hwmon/hwmon0/name", "acpitz\n");
    put("sys/class/hwmon/hwmon0/temp1_input", "95000\n");
    put("sys/class/hwmon/hwmon1/name", "coretemp\n");
    put("sys/class/hwmon/hwmon1/temp1_input", "61000\n");
    put("sys/class/hwmon/hwmon1/temp2_input", "72500\n");
    put("sys/class/hwmon/hwmon1/temp2_label", "Core 0\n");
    put("sys/class/hwmon/hwmon1/temp3_crit", "100000\n");
    put("sys/class/hwmon/hwmon1/temp4_input", "not a number\n");
    put("sys/class/hwmon/hwmon2/name", "nvme\n");
    put("sys/class/hwmon/hwmon2/temp1_input", "6526185\n"); /* glitch */
    put("sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    put("sys/class/thermal/thermal_zone0/temp", "70000\n");
    put("sys/class/thermal/cooling_device0/type", "Processor\n");
    /* The CPU driver wins over the hotter ACPI zone, as ollama-herd. */
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_int_equal(t.state, METRICS_THERMAL_NOMINAL);
    assert_true(t.temperature_c == 72.5);
    assert_string_equal(t.source, "hwmon:coretemp");
    assert_string_equal(metrics_thermal_name(t.state), "nominal");

    put("sys/class/hwmon/hwmon1/temp1_input", "85000\n");
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_int_equal(t.state, METRICS_THERMAL_WARNING);
    assert_true(t.temperature_c == 85.0);
    metrics_cleanup(&m);
}

static void
test_thermal_any_and_unknown(void **state)
{
    struct metrics m;
    struct metrics_thermal t;

    (void)state;
    init_root(&m);
    /* Nothing at all: unknown, no temperature. */
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_int_equal(t.state, METRICS_THERMAL_UNKNOWN);
    assert_string_equal(t.source, "");
    assert_string_equal(metrics_thermal_name(t.state), "unknown");

    /* No CPU driver: the peak of every sensor. */
    put("sys/class/hwmon/hwmon0/name", "acpitz\n");
    put("sys/class/hwmon/hwmon0/temp1_input", "41250\n");
    put("sys/class/thermal/thermal_zone0/type", "soc_dts0\n");
    put("sys/class/thermal/thermal_zone0/temp", "88460\n");
    put("sys/class/thermal/thermal_zone1/type", "bogus\n");
    put("sys/class/thermal/thermal_zone1/temp", "-273000\n");
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_int_equal(t.state, METRICS_THERMAL_WARNING);
    assert_true(t.temperature_c == 88.5);
    assert_string_equal(t.source, "thermal_zone:soc_dts0");
    assert_string_equal(metrics_thermal_name(t.state), "warning");

    /* Only unreadable or garbage sensors: unknown again. */
    put("sys/class/thermal/thermal_zone0/temp", "\n");
    put("sys/class/hwmon/hwmon0/temp1_input", "12abc\n");
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_int_equal(t.state, METRICS_THERMAL_UNKNOWN);

    /* The Raspberry Pi's zone spelling counts as a CPU sensor. */
    put("sys/class/thermal/thermal_zone2/type", "cpu-thermal\n");
    put("sys/class/thermal/thermal_zone2/temp", "47234\n");
    put("sys/class/thermal/thermal_zone3/type", "gpu-thermal\n");
    put("sys/class/thermal/thermal_zone3/temp", "52000\n");
    assert_int_equal(metrics_read_thermal(&m, &t), 0);
    assert_true(t.temperature_c == 47.2);
    assert_string_equal(t.source, "thermal_zone:cpu-thermal");
    metrics_cleanup(&m);
}

/* ------------------------------------------------------------------ */

static void
test_gpu_absent(void **state)
{
    struct metrics m;
    struct metrics_gpus g;

    (void)state;
    init_root(&m);
    /* No NVML loaded: no GPU block and no error. */
    assert_int_equal(metrics_read_gpus(&m, &g), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(metrics_gpu_open(&m, "libnvidia-ml-absent.so.1"), -ENOENT);
    assert_null(m.nvml);
    /* A library without NVML's entry points is "absent" too. */
    assert_int_equal(metrics_gpu_open(&m, "libm.so.6"), -ENOENT);
    assert_null(m.nvml);
    assert_int_equal(metrics_read_gpus(&m, &g), 0);
    assert_int_equal(g.n, 0);
    metrics_cleanup(&m);
}

/* The real library: absent on most test machines; where it loads, every
 * GPU it lists has a name and VRAM figures that add up. */
static void
test_gpu_default(void **state)
{
    struct metrics m;
    struct metrics_gpus g;
    int rc;

    (void)state;
    init_root(&m);
    rc = metrics_gpu_open(&m, NULL);
    assert_true(rc == 0 || rc == -ENOENT);
    assert_int_equal(metrics_gpu_open(&m, NULL), rc); /* idempotent */
    assert_int_equal(metrics_read_gpus(&m, &g), 0);
    if (rc == -ENOENT)
        assert_int_equal(g.n, 0);
    for (size_t i = 0; i < g.n; i++) {
        print_message("gpu %zu: %s, %llu/%llu MiB, %u%%\n", i, g.gpu[i].name,
                      (unsigned long long)(g.gpu[i].vram_used_bytes >> 20),
                      (unsigned long long)(g.gpu[i].vram_total_bytes >> 20),
                      g.gpu[i].utilization_pct);
        assert_true(g.gpu[i].vram_total_bytes > 0);
        assert_true(g.gpu[i].vram_used_bytes <= g.gpu[i].vram_total_bytes);
        assert_true(g.gpu[i].utilization_pct <= 100);
    }
    metrics_cleanup(&m);
    assert_null(m.nvml);
}

/* ------------------------------------------------------------------ */
/* NVML present: tests/unit/nvml_stub.c through a real dlopen          */

#define GIB       (1024ULL * 1024 * 1024)
#define STUB_NAME "NVIDIA H100 80GB HBM3"

/* True while the stand-in is mapped in this process. */
static bool
stub_loaded(void)
{
    void *h = dlopen(HERD_NVML_STUB, RTLD_NOW | RTLD_NOLOAD);

    if (h == NULL)
        return false;
    dlclose(h);
    return true;
}

/* The stub's nvml_stub_count(what), through the test's own handle. */
static int
stub_count(void *h, const char *what)
{
    int (*fn)(const char *);
    void *sym = dlsym(h, "nvml_stub_count");

    assert_non_null(sym);
    memcpy(&fn, &sym, sizeof(fn));
    return fn(what);
}

struct stub_run {
    int open_rc;     /* metrics_gpu_open() */
    int inits;       /* nvmlInit_v2 calls */
    int shutdowns;   /* nvmlShutdown calls */
    int name_length; /* the buffer size nvmlDeviceGetName was given */
    struct metrics_gpus g;
};

/*
 * One open / read / cleanup cycle on the stand-in with
 * HERD_NVML_STUB_MODE=mode (NULL: two healthy GPUs). The test holds a
 * reference of its own meanwhile, so the stub's counters can be read
 * after metrics_cleanup(). Checked for every mode: open either keeps
 * NVML or leaves m.nvml NULL, a second open answers the same, no init is
 * left without its shutdown, and once the test drops its reference the
 * library is unmapped, so metrics_cleanup() (or the failed open) did
 * dlclose it. A missing shutdown would also leak the stub's session
 * block, which LeakSanitizer reports.
 */
static void
stub_run(const char *mode, struct stub_run *r)
{
    struct metrics m;
    void *h;

    memset(r, 0, sizeof(*r));
    assert_false(stub_loaded());
    if (mode != NULL)
        assert_int_equal(setenv("HERD_NVML_STUB_MODE", mode, 1), 0);
    h = dlopen(HERD_NVML_STUB, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    init_root(&m);
    r->open_rc = metrics_gpu_open(&m, HERD_NVML_STUB);
    if (r->open_rc == 0) {
        assert_non_null(m.nvml);
        assert_int_equal(stub_count(h, "live"), 1);
    } else {
        assert_null(m.nvml);
        assert_int_equal(stub_count(h, "live"), 0);
    }
    assert_int_equal(metrics_gpu_open(&m, HERD_NVML_STUB), r->open_rc);
    assert_int_equal(metrics_read_gpus(&m, &r->g), 0);
    metrics_cleanup(&m);
    assert_null(m.nvml);
    r->inits = stub_count(h, "init");
    r->shutdowns = stub_count(h, "shutdown");
    r->name_length = stub_count(h, "name_length");
    assert_int_equal(stub_count(h, "live"), 0);
    assert_int_equal(dlclose(h), 0);
    assert_false(stub_loaded());
    assert_int_equal(unsetenv("HERD_NVML_STUB_MODE"), 0);
}

static void
assert_stub_gpu(const struct metrics_gpu *g, unsigned used_gib, unsigned util)
{
    assert_string_equal(g->name, STUB_NAME);
    assert_true(g->vram_total_bytes == 80 * GIB);
    assert_true(g->vram_used_bytes == used_gib * GIB);
    assert_true(g->utilization_valid);
    assert_int_equal(g->utilization_pct, util);
}

/* Two GPUs, every value as the stub reports it (the NVML struct layouts
 * match: used is not taken for free). Opened once, shut down once. */
static void
test_gpu_stub_present(void **state)
{
    struct stub_run r;

    (void)state;
    stub_run(NULL, &r);
    assert_int_equal(r.open_rc, 0);
    assert_int_equal(r.inits, 1); /* the second open did not init again */
    assert_int_equal(r.shutdowns, 1);
    assert_int_equal(r.g.n, 2);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);
    assert_stub_gpu(&r.g.gpu[1], 30, 60);
}

/* The heartbeat's "gpu" block for GPUs read through NVML: one object,
 * the first GPU's name, the count, VRAM sums in GiB and the mean of the
 * utilisations NVML gave (null if none), which is what the
 * coordinator's registry_parse_gpu() reads back. Returns the parsed
 * payload; *gpu points into it. */
static cJSON *
payload_gpu(const struct metrics_gpus *g, const cJSON **gpu)
{
    struct agent_sample s = {.node_id = "gpu-box", .gpus = g};
    struct buf b;
    cJSON *hb;

    buf_init(&b, AGENT_PAYLOAD_MAX);
    assert_int_equal(agent_payload_json(&s, &b), 0);
    hb = cJSON_ParseWithLength(b.data, b.len);
    buf_cleanup(&b);
    assert_non_null(hb);
    *gpu = cJSON_GetObjectItemCaseSensitive(hb, "gpu");
    assert_non_null(*gpu);
    return hb;
}

static double
gpu_num(const cJSON *gpu, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(gpu, key);

    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void
test_gpu_stub_heartbeat(void **state)
{
    const cJSON *gpu, *name;
    struct stub_run r;
    char chip[METRICS_MODEL_MAX + METRICS_GPU_NAME + 8];
    cJSON *hb;

    (void)state;
    stub_run(NULL, &r);
    hb = payload_gpu(&r.g, &gpu);
    assert_true(cJSON_IsObject(gpu));
    name = cJSON_GetObjectItemCaseSensitive(gpu, "name");
    assert_true(cJSON_IsString(name));
    assert_string_equal(name->valuestring, STUB_NAME);
    assert_true(gpu_num(gpu, "count") == 2);
    assert_true(fabs(gpu_num(gpu, "vram_total_gb") - 160.0) < 1e-9);
    assert_true(fabs(gpu_num(gpu, "vram_used_gb") - 40.0) < 1e-9);
    assert_true(fabs(gpu_num(gpu, "utilization_pct") - 50.0) < 1e-9);
    cJSON_Delete(hb);
    agent_chip("AMD EPYC 9654", &r.g, chip, sizeof(chip));
    assert_string_equal(chip, "AMD EPYC 9654 + " STUB_NAME);

    /* Device 1 without utilisation: the mean is over device 0 alone. */
    stub_run("dev1_util", &r);
    hb = payload_gpu(&r.g, &gpu);
    assert_true(gpu_num(gpu, "count") == 2);
    assert_true(fabs(gpu_num(gpu, "utilization_pct") - 40.0) < 1e-9);
    cJSON_Delete(hb);

    /* nvmlInit failed: "gpu": null, the CPU model alone for chip. */
    stub_run("init_fail", &r);
    hb = payload_gpu(&r.g, &gpu);
    assert_true(cJSON_IsNull(gpu));
    cJSON_Delete(hb);
    agent_chip("AMD EPYC 9654", &r.g, chip, sizeof(chip));
    assert_string_equal(chip, "AMD EPYC 9654");
}

/* No driver: absent (-ENOENT), dlclose'd, and no shutdown owed. No
 * device, or no count: loaded but nothing to report. */
static void
test_gpu_stub_none(void **state)
{
    struct stub_run r;

    (void)state;
    stub_run("init_fail", &r);
    assert_int_equal(r.open_rc, -ENOENT);
    assert_int_equal(r.g.n, 0);
    assert_int_equal(r.inits, 2); /* open is retried after a failure */
    assert_int_equal(r.shutdowns, 0);

    stub_run("count0", &r);
    assert_int_equal(r.open_rc, 0);
    assert_int_equal(r.g.n, 0);
    assert_int_equal(r.inits, 1);
    assert_int_equal(r.shutdowns, 1);

    stub_run("count_fail", &r);
    assert_int_equal(r.open_rc, 0);
    assert_int_equal(r.g.n, 0);
    assert_int_equal(r.shutdowns, 1);
}

/*
 * One call failing for device 1. Without a handle (NO_PERMISSION: not
 * our GPU) or memory info (GPU_IS_LOST) nothing trustworthy is known
 * and the GPU is skipped, so count and VRAM sums stay consistent. Memory
 * info NOT_SUPPORTED is a unified-memory GPU (GB10): kept, VRAM 0. A
 * failed name or utilisation keeps the GPU with that one field empty.
 * The stub leaves garbage in the buffers it fails on.
 */
static void
test_gpu_stub_device_fails(void **state)
{
    struct stub_run r;

    (void)state;
    stub_run("dev1_handle", &r);
    assert_int_equal(r.open_rc, 0);
    assert_int_equal(r.g.n, 1);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);

    stub_run("dev1_memory", &r);
    assert_int_equal(r.g.n, 1);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);

    stub_run("dev1_memory_nosup", &r);
    assert_int_equal(r.g.n, 2);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);
    assert_string_equal(r.g.gpu[1].name, STUB_NAME);
    assert_true(r.g.gpu[1].vram_total_bytes == 0);
    assert_true(r.g.gpu[1].vram_used_bytes == 0);
    assert_true(r.g.gpu[1].utilization_valid);
    assert_int_equal(r.g.gpu[1].utilization_pct, 60);

    stub_run("dev1_name", &r);
    assert_int_equal(r.g.n, 2);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);
    assert_string_equal(r.g.gpu[1].name, "");
    assert_true(r.g.gpu[1].vram_used_bytes == 30 * GIB);
    assert_true(r.g.gpu[1].utilization_valid);

    stub_run("dev1_util", &r);
    assert_int_equal(r.g.n, 2);
    assert_stub_gpu(&r.g.gpu[0], 10, 40);
    assert_true(r.g.gpu[1].vram_used_bytes == 30 * GIB);
    assert_false(r.g.gpu[1].utilization_valid);
    assert_int_equal(r.g.gpu[1].utilization_pct, 0);
    assert_int_equal(r.shutdowns, 1);
}

/* A name that fills NVML's whole buffer without a NUL: cut to
 * METRICS_GPU_NAME - 1 bytes, never read past the buffer (ASan). The
 * size NVML is told is the buffer's: NVML_DEVICE_NAME_V2_BUFFER_SIZE. */
static void
test_gpu_stub_name_unterminated(void **state)
{
    struct stub_run r;
    char want[METRICS_GPU_NAME];

    (void)state;
    memset(want, 'X', sizeof(want) - 1);
    memcpy(want, STUB_NAME, strlen(STUB_NAME));
    want[sizeof(want) - 1] = '\0';
    stub_run("name_unterminated", &r);
    assert_int_equal(r.name_length, METRICS_GPU_NAME);
    assert_int_equal(METRICS_GPU_NAME, 96);
    assert_int_equal(r.g.n, 2);
    for (size_t i = 0; i < r.g.n; i++) {
        assert_int_equal(strlen(r.g.gpu[i].name), METRICS_GPU_NAME - 1);
        assert_string_equal(r.g.gpu[i].name, want);
    }
}

/* More GPUs than METRICS_GPU_MAX: the first eight. */
static void
test_gpu_stub_many(void **state)
{
    struct stub_run r;

    (void)state;
    stub_run("many", &r);
    assert_int_equal(r.g.n, METRICS_GPU_MAX);
    for (size_t i = 0; i < r.g.n; i++)
        assert_true(r.g.gpu[i].vram_used_bytes == i * GIB);
}

/* Loose: the address depends on the machine. */
static void
test_lan_ip(void **state)
{
    struct in_addr a;
    char ip[64];
    int rc;

    (void)state;
    rc = metrics_lan_ip(ip, sizeof(ip));
    assert_true(rc == 0 || rc == -ENOENT);
    assert_int_equal(inet_pton(AF_INET, ip, &a), 1);
    if (rc == 0)
        assert_true(strncmp(ip, "127.", 4) != 0);
    else
        assert_string_equal(ip, "127.0.0.1");
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(metrics_pressure_name(METRICS_PRESSURE_NORMAL),
                        "normal");
    assert_string_equal(metrics_pressure_name(METRICS_PRESSURE_WARN), "warn");
    assert_string_equal(metrics_pressure_name(METRICS_PRESSURE_CRITICAL),
                        "critical");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_init),
        T(test_cpu_delta),
        T(test_cpu_malformed),
        T(test_cpu_overlong_line),
        T(test_cpuinfo_x86),
        T(test_cpuinfo_arm_sysfs),
        T(test_cpuinfo_malformed),
        T(test_memory_meminfo),
        T(test_memory_fallback_thresholds),
        T(test_memory_psi),
        T(test_memory_malformed),
        T(test_disk),
        T(test_thermal_preferred),
        T(test_thermal_any_and_unknown),
        T(test_gpu_absent),
        T(test_gpu_default),
        T(test_gpu_stub_present),
        T(test_gpu_stub_heartbeat),
        T(test_gpu_stub_none),
        T(test_gpu_stub_device_fails),
        T(test_gpu_stub_name_unterminated),
        T(test_gpu_stub_many),
        T(test_lan_ip),
        T(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
