/*
 * metrics_linux.h - host metrics for the heartbeat, read straight from
 * /proc, /sys, statvfs, getifaddrs and (when present) NVML.
 *
 * Every /proc and /sys path is taken relative to a root prefix given to
 * metrics_init(): "/" in production, a fixture directory in the unit
 * tests, so each parser runs on files the test wrote. Nothing here
 * shells out and every file read is bounded (METRICS_*_MAX). Values are
 * kept in bytes; the heartbeat builder divides by 1024^3 and rounds to
 * two decimals, as ollama-herd does (reference §2.3, §2.5).
 *
 * Not thread-safe: one struct metrics per caller (the agent's loop).
 */
#ifndef NODE_METRICS_LINUX_H
#define NODE_METRICS_LINUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_ROOT_MAX  256
#define METRICS_MODEL_MAX 128
#define METRICS_GPU_MAX   8
#define METRICS_GPU_NAME  96 /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */

/* Bytes read at most from one /proc or /sys file. /proc/cpuinfo is read
 * line by line up to its own, larger cap (about 2 KiB per logical CPU
 * on x86 with AVX-512 flags). */
#define METRICS_FILE_MAX    (64 * 1024)
#define METRICS_CPUINFO_MAX (16 * 1024 * 1024)

/* Memory pressure thresholds. PSI (when the kernel has it): share of the
 * last 10 s during which some / all non-idle tasks stalled on memory. */
#define METRICS_PSI_FULL_CRITICAL 10.0
#define METRICS_PSI_SOME_CRITICAL 50.0
#define METRICS_PSI_FULL_WARN     2.0
#define METRICS_PSI_SOME_WARN     10.0
/* Without PSI: ollama-herd's used-% rule, used = total - MemAvailable. */
#define METRICS_USED_PCT_CRITICAL 95.0
#define METRICS_USED_PCT_WARN     85.0
/* Thermal: ollama-herd's rule, peak >= 85 °C is "warning". */
#define METRICS_THERMAL_WARN_C 85.0

enum metrics_pressure {
    METRICS_PRESSURE_NORMAL,
    METRICS_PRESSURE_WARN,
    METRICS_PRESSURE_CRITICAL,
};

enum metrics_thermal_state {
    METRICS_THERMAL_UNKNOWN, /* no usable sensor */
    METRICS_THERMAL_NOMINAL,
    METRICS_THERMAL_WARNING,
};

struct metrics_nvml; /* private: the dlopen'ed NVML entry points */

struct metrics {
    char root[METRICS_ROOT_MAX]; /* prefix without a trailing '/' */
    uint64_t prev_total;         /* previous /proc/stat "cpu" jiffies */
    uint64_t prev_idle;          /* idle + iowait of that sample */
    bool have_prev;
    struct metrics_nvml *nvml; /* owned; NULL when NVML is absent */
};

struct metrics_cpuinfo {
    char model[METRICS_MODEL_MAX]; /* "model name" (or "Hardware"); "" */
    unsigned cores_logical;        /* "processor" entries; >= 1 */
    unsigned cores_physical;       /* distinct cores; >= 1 */
};

struct metrics_memory {
    uint64_t total_bytes;
    uint64_t available_bytes; /* MemAvailable (estimated on old kernels) */
    uint64_t used_bytes;      /* psutil's: total-free-buffers-cached */
    double used_pct;          /* (total - available) / total * 100 */
    enum metrics_pressure pressure;
    bool psi;              /* pressure came from /proc/pressure/memory */
    double psi_some_avg10; /* 0 when !psi */
    double psi_full_avg10;
};

struct metrics_disk {
    uint64_t total_bytes;
    uint64_t used_bytes;      /* (f_blocks - f_bfree) * f_frsize */
    uint64_t available_bytes; /* f_bavail * f_frsize: what we may use */
};

struct metrics_thermal {
    enum metrics_thermal_state state;
    double temperature_c; /* peak; valid unless state is UNKNOWN */
    char source[64];      /* "hwmon:coretemp", "thermal_zone:acpitz"; "" */
};

struct metrics_gpu {
    char name[METRICS_GPU_NAME];
    uint64_t vram_total_bytes;
    uint64_t vram_used_bytes;
    unsigned utilization_pct; /* 0-100 */
    bool utilization_valid;   /* false when NVML could not say */
};

struct metrics_gpus {
    size_t n; /* 0: no GPU block in the heartbeat */
    struct metrics_gpu gpu[METRICS_GPU_MAX];
};

/* Sets up m for files under root ("/" in production). NVML is not
 * loaded here (see metrics_gpu_open). 0, -EINVAL (root NULL or not
 * absolute) or -ENAMETOOLONG. */
int metrics_init(struct metrics *m, const char *root);

/* Shuts NVML down and unloads it when it was opened. m can be reused
 * after metrics_init() again. */
void metrics_cleanup(struct metrics *m);

/*
 * System-wide CPU utilisation since the previous call, from the "cpu"
 * line of /proc/stat: busy = total - idle - iowait (guest time is already
 * part of user/nice, as psutil counts it). The first call only records a
 * baseline: it sets *pct = 0.0 and returns -EAGAIN, exactly like
 * psutil.cpu_percent(interval=None), so the agent primes it at start-up.
 * A counter that went backwards (CPU hot-unplug) also re-baselines with
 * -EAGAIN. Other errors: -errno of the open, -EINVAL on a malformed line
 * (the baseline is then kept).
 */
int metrics_cpu_sample(struct metrics *m, double *pct);

/* Model name and core counts from /proc/cpuinfo; physical cores are the
 * distinct ("physical id", "core id") pairs, else the CPUs that are the
 * first thread of their core in sysfs topology, else the logical count.
 * 0, -errno, or -EINVAL when no "processor" line was found. The result
 * does not change while the machine runs: call it once. */
int metrics_read_cpuinfo(const struct metrics *m, struct metrics_cpuinfo *out);

/* /proc/meminfo, plus /proc/pressure/memory for the pressure level when
 * it exists and parses; otherwise the used-% thresholds above. 0,
 * -errno, or -EINVAL when MemTotal is missing, zero or malformed. */
int metrics_read_memory(const struct metrics *m, struct metrics_memory *out);

/* statvfs() of root + path (path absolute, e.g. "/"). 0 or -errno. */
int metrics_read_disk(const struct metrics *m, const char *path,
                      struct metrics_disk *out);

/* Peak temperature over /sys/class/hwmon/hwmon* /temp*_input and
 * /sys/class/thermal/thermal_zone* /temp (millidegrees). As ollama-herd,
 * the CPU drivers coretemp, k10temp, zenpower and cpu_thermal win when
 * present, else the peak of every sensor. Readings outside -50..200 °C
 * are glitches and skipped. Always returns 0; no sensor -> UNKNOWN. */
int metrics_read_thermal(const struct metrics *m, struct metrics_thermal *out);

/* The first IPv4 address of an interface that is up and not loopback,
 * preferring physical ones over link-local and container bridges
 * (docker*, br-*, veth*, virbr*, cni*). Not root-relative: it asks the
 * kernel (getifaddrs). 0; -ENOENT when there is none, with out set to
 * "127.0.0.1" (ollama-herd's fallback); -errno from getifaddrs. */
int metrics_lan_ip(char *out, size_t n);

/*
 * Loads NVML with dlopen(libname), NULL meaning "libnvidia-ml.so.1",
 * and initialises it. 0 when loaded; -ENOENT when the library or one of
 * its entry points is absent or nvmlInit fails (a machine without an
 * NVIDIA GPU: not an error worth logging). Idempotent.
 */
int metrics_gpu_open(struct metrics *m, const char *libname);

/* Name, VRAM and utilisation of up to METRICS_GPU_MAX NVIDIA GPUs.
 * Without NVML: out->n = 0 and 0. A device whose handle or memory info
 * NVML fails on is skipped, except that memory info "not supported"
 * (unified memory, NVIDIA GB10) keeps it with VRAM 0. A failed name
 * gives "", a failed utilisation utilization_valid = false; a name that
 * fills NVML's buffer without a NUL is cut to METRICS_GPU_NAME - 1.
 * Always returns 0. */
int metrics_read_gpus(const struct metrics *m, struct metrics_gpus *out);

/* "normal", "warn", "critical" (the heartbeat's spelling). */
const char *metrics_pressure_name(enum metrics_pressure p);
/* "unknown", "nominal", "warning". */
const char *metrics_thermal_name(enum metrics_thermal_state s);

#endif /* NODE_METRICS_LINUX_H */
