/*
 * metrics_linux.c - host metrics from /proc, /sys, statvfs, getifaddrs
 * and NVML, every file path under a root prefix so tests use fixtures.
 *
 * Files are read through one bounded line reader (metrics_each_line):
 * an 8 KiB line buffer and a total byte cap per file, so a huge or
 * endless file costs bounded memory and time. A line longer than the
 * buffer is skipped whole, never split into two bogus lines.
 */
#include "metrics_linux.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "herd/buf.h"
#include "herd/parse.h"

#define METRICS_PATH_MAX  (METRICS_ROOT_MAX + 256)
#define METRICS_LINE_MAX  8192
#define METRICS_TOKEN_MAX 64
#define METRICS_DIR_MAX   256   /* hwmon dirs, thermal zones, temp inputs */
#define METRICS_CPU_MAX   65536 /* sysfs cpuN entries / cpuinfo blocks */

/* ------------------------------------------------------------------ */
/* paths and bounded reads                                             */

static int metrics_path(const struct metrics *m, char *out, size_t n,
                        const char *fmt, ...) HERD_PRINTF(4, 5);

static int
metrics_path(const struct metrics *m, char *out, size_t n, const char *fmt, ...)
{
    char rel[METRICS_PATH_MAX];
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= sizeof(rel))
        return -ENAMETOOLONG;
    r = snprintf(out, n, "%s%s", m->root, rel);
    if (r < 0 || (size_t)r >= n)
        return -ENAMETOOLONG;
    return 0;
}

/* fn returns 0 to go on, 1 to stop early (success), < 0 to fail. */
typedef int (*metrics_line_fn)(void *ctx, char *line);

/*
 * Calls fn for each line of path (without its '\n'), reading at most
 * max_total bytes. A final line without '\n' is passed too (fixture
 * files often lack it), unless the cap cut it. 0, fn's error, -errno.
 */
static int
metrics_each_line(const char *path, size_t max_total, metrics_line_fn fn,
                  void *ctx)
{
    char buf[METRICS_LINE_MAX];
    size_t have = 0, total = 0;
    bool skipping = false, capped = false;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (;;) {
        size_t start = 0;
        size_t room = sizeof(buf) - 1 - have;
        ssize_t r;
        char *nl;

        if (room > max_total - total)
            room = max_total - total;
        if (room == 0) {
            capped = true;
            break;
        }
        r = read(fd, buf + have, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        total += (size_t)r;
        have += (size_t)r;
        while ((nl = memchr(buf + start, '\n', have - start)) != NULL) {
            *nl = '\0';
            if (!skipping) {
                rc = fn(ctx, buf + start);
                if (rc != 0)
                    goto out;
            }
            skipping = false;
            start = (size_t)(nl - buf) + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof(buf) - 1) {
            /* A line that does not fit: drop it up to its '\n'. */
            skipping = true;
            have = 0;
        }
    }
    if (have > 0 && !skipping && !capped) {
        buf[have] = '\0';
        rc = fn(ctx, buf);
    }
out:
    close(fd);
    return rc < 0 ? rc : 0;
}

/* Reads the start of a small file (a sysfs value), NUL-terminated and
 * with trailing whitespace removed. 0 or -errno. */
static int
metrics_read_value(const char *path, char *out, size_t n)
{
    size_t used = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (used < n - 1) {
        ssize_t r = read(fd, out + used, n - 1 - used);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;
    }
    close(fd);
    out[used] = '\0';
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == ' ' ||
                        out[used - 1] == '\t' || out[used - 1] == '\r'))
        out[--used] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ */
/* small text helpers                                                  */

static bool
metrics_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Copies the next whitespace-separated token into tok and returns the
 * position after it; NULL when there is none or it does not fit. */
static const char *
metrics_next_token(const char *p, char *tok, size_t n)
{
    size_t len = 0;

    while (*p != '\0' && metrics_is_space(*p))
        p++;
    if (*p == '\0')
        return NULL;
    while (p[len] != '\0' && !metrics_is_space(p[len]))
        len++;
    if (len >= n)
        return NULL;
    memcpy(tok, p, len);
    tok[len] = '\0';
    return p + len;
}

/* Splits "key<ws>:<ws>value" in place: key and value trimmed. false
 * when there is no ':'. */
static bool
metrics_split_kv(char *line, char **key, char **val)
{
    char *colon = strchr(line, ':');
    char *end;

    if (colon == NULL)
        return false;
    *colon = '\0';
    end = colon;
    while (end > line && metrics_is_space(end[-1]))
        *--end = '\0';
    *key = line;
    *val = colon + 1;
    while (**val != '\0' && metrics_is_space(**val))
        (*val)++;
    end = *val + strlen(*val);
    while (end > *val && metrics_is_space(end[-1]))
        *--end = '\0';
    return true;
}

static bool
metrics_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ */
/* init / cleanup                                                      */

static void metrics_nvml_close(struct metrics *m);

int
metrics_init(struct metrics *m, const char *root)
{
    size_t len;

    memset(m, 0, sizeof(*m));
    if (root == NULL || root[0] != '/')
        return -EINVAL;
    len = strlen(root);
    while (len > 0 && root[len - 1] == '/')
        len--;
    if (len >= sizeof(m->root))
        return -ENAMETOOLONG;
    memcpy(m->root, root, len);
    m->root[len] = '\0';
    return 0;
}

void
metrics_cleanup(struct metrics *m)
{
    metrics_nvml_close(m);
    m->have_prev = false;
}

/* ------------------------------------------------------------------ */
/* CPU utilisation                                                     */

struct metrics_stat {
    uint64_t total, idle;
    int rc;
};

static int
metrics_on_stat_line(void *ctx, char *line)
{
    struct metrics_stat *st = ctx;
    uint64_t f[10];
    char tok[METRICS_TOKEN_MAX];
    const char *p;
    size_t n = 0;

    st->rc = -EINVAL;
    /* The aggregate line comes first: "cpu  user nice system idle ...". */
    if (!metrics_has_prefix(line, "cpu") || !metrics_is_space(line[3]))
        return 1;
    p = line + 3;
    while (n < 10 && (p = metrics_next_token(p, tok, sizeof(tok))) != NULL) {
        if (parse_u64(tok, 0, UINT64_MAX / 16, &f[n], NULL) != 0)
            return 1;
        n++;
    }
    if (n < 4)
        return 1; /* user nice system idle at least (Linux < 2.6 had 4) */
    st->total = 0;
    /* user..steal; guest and guest_nice are already in user and nice. */
    for (size_t i = 0; i < n && i < 8; i++)
        st->total += f[i];
    st->idle = f[3] + (n > 4 ? f[4] : 0); /* idle + iowait */
    st->rc = 0;
    return 1;
}

int
metrics_cpu_sample(struct metrics *m, double *pct)
{
    char path[METRICS_PATH_MAX];
    struct metrics_stat st = {0, 0, -EINVAL};
    uint64_t dt, di;
    double v;
    int rc;

    *pct = 0.0;
    rc = metrics_path(m, path, sizeof(path), "/proc/stat");
    if (rc == 0)
        rc = metrics_each_line(path, METRICS_FILE_MAX, metrics_on_stat_line,
                               &st);
    if (rc != 0)
        return rc;
    if (st.rc != 0)
        return st.rc;
    if (!m->have_prev || st.total < m->prev_total || st.idle < m->prev_idle) {
        m->prev_total = st.total;
        m->prev_idle = st.idle;
        m->have_prev = true;
        return -EAGAIN;
    }
    dt = st.total - m->prev_total;
    di = st.idle - m->prev_idle;
    m->prev_total = st.total;
    m->prev_idle = st.idle;
    if (dt == 0)
        return 0; /* no tick elapsed: psutil says 0.0 too */
    if (di > dt)
        di = dt;
    v = 100.0 * (double)(dt - di) / (double)dt;
    *pct = round(v * 10.0) / 10.0; /* psutil rounds to one decimal */
    return 0;
}

/* ------------------------------------------------------------------ */
/* /proc/cpuinfo                                                       */

struct metrics_core_id {
    uint64_t package, core;
};

struct metrics_cpuinfo_ctx {
    struct metrics_cpuinfo *out;
    bool have_model;
    char hardware[METRICS_MODEL_MAX];
    /* The block being read: its ids, until the next "processor". */
    bool in_block, have_pkg, have_core;
    uint64_t pkg, core;
    struct metrics_core_id *ids; /* owned */
    size_t nids, capids;
};

static void
metrics_copy_str(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);

    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int
metrics_cpuinfo_commit(struct metrics_cpuinfo_ctx *c)
{
    if (c->in_block && c->have_pkg && c->have_core) {
        if (c->nids == c->capids) {
            size_t ncap = c->capids == 0 ? 64 : c->capids * 2;
            struct metrics_core_id *p;

            if (ncap > METRICS_CPU_MAX)
                return 0; /* absurd CPU count: stop collecting ids */
            p = realloc(c->ids, ncap * sizeof(*p));
            if (p == NULL)
                return -ENOMEM;
            c->ids = p;
            c->capids = ncap;
        }
        c->ids[c->nids].package = c->pkg;
        c->ids[c->nids].core = c->core;
        c->nids++;
    }
    c->have_pkg = c->have_core = false;
    return 0;
}

static int
metrics_on_cpuinfo_line(void *ctx, char *line)
{
    struct metrics_cpuinfo_ctx *c = ctx;
    char *key, *val;
    int rc;

    if (!metrics_split_kv(line, &key, &val))
        return 0;
    if (strcmp(key, "processor") == 0) {
        rc = metrics_cpuinfo_commit(c);
        if (rc != 0)
            return rc;
        c->in_block = true;
        c->out->cores_logical++;
    } else if (strcmp(key, "model name") == 0 && !c->have_model &&
               val[0] != '\0') {
        metrics_copy_str(c->out->model, sizeof(c->out->model), val);
        c->have_model = true;
    } else if (strcmp(key, "Hardware") == 0 && c->hardware[0] == '\0') {
        metrics_copy_str(c->hardware, sizeof(c->hardware), val);
    } else if (strcmp(key, "physical id") == 0) {
        c->have_pkg = parse_u64(val, 0, UINT32_MAX, &c->pkg, NULL) == 0;
    } else if (strcmp(key, "core id") == 0) {
        c->have_core = parse_u64(val, 0, UINT32_MAX, &c->core, NULL) == 0;
    }
    return 0;
}

static int
metrics_core_id_cmp(const void *a, const void *b)
{
    const struct metrics_core_id *x = a, *y = b;

    if (x->package != y->package)
        return x->package < y->package ? -1 : 1;
    if (x->core != y->core)
        return x->core < y->core ? -1 : 1;
    return 0;
}

/* The CPUs that are the first thread of their core, from sysfs
 * topology: "0,64" or "0-1" in cpuN/topology/thread_siblings_list. */
static unsigned
metrics_sysfs_cores(const struct metrics *m)
{
    char path[METRICS_PATH_MAX], val[256];
    struct dirent *de;
    unsigned cores = 0, seen = 0;
    DIR *d;

    if (metrics_path(m, path, sizeof(path), "/sys/devices/system/cpu") != 0)
        return 0;
    d = opendir(path);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL && seen < METRICS_CPU_MAX) {
        uint64_t cpu, first;
        size_t len;

        if (!metrics_has_prefix(de->d_name, "cpu") ||
            parse_u64(de->d_name + 3, 0, UINT32_MAX, &cpu, NULL) != 0)
            continue;
        seen++;
        if (metrics_path(m, path, sizeof(path),
                         "/sys/devices/system/cpu/%s/topology/"
                         "thread_siblings_list",
                         de->d_name) != 0 ||
            metrics_read_value(path, val, sizeof(val)) != 0)
            continue;
        len = strcspn(val, ",-");
        val[len] = '\0';
        if (parse_u64(val, 0, UINT32_MAX, &first, NULL) == 0 && first == cpu)
            cores++;
    }
    closedir(d);
    return cores;
}

int
metrics_read_cpuinfo(const struct metrics *m, struct metrics_cpuinfo *out)
{
    struct metrics_cpuinfo_ctx c;
    char path[METRICS_PATH_MAX];
    unsigned cores = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    c.out = out;
    rc = metrics_path(m, path, sizeof(path), "/proc/cpuinfo");
    if (rc == 0)
        rc = metrics_each_line(path, METRICS_CPUINFO_MAX,
                               metrics_on_cpuinfo_line, &c);
    if (rc == 0)
        rc = metrics_cpuinfo_commit(&c);
    if (rc != 0)
        goto out;
    if (out->cores_logical == 0) {
        rc = -EINVAL;
        goto out;
    }
    if (!c.have_model && c.hardware[0] != '\0')
        metrics_copy_str(out->model, sizeof(out->model), c.hardware);
    if (c.nids > 0) {
        qsort(c.ids, c.nids, sizeof(*c.ids), metrics_core_id_cmp);
        for (size_t i = 0; i < c.nids; i++) {
            if (i == 0 || metrics_core_id_cmp(&c.ids[i - 1], &c.ids[i]) != 0)
                cores++;
        }
    } else {
        cores = metrics_sysfs_cores(m);
    }
    out->cores_physical = cores > 0 ? cores : out->cores_logical;
out:
    free(c.ids);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ------------------------------------------------------------------ */
/* memory and pressure                                                 */

enum {
    MEMINFO_TOTAL,
    MEMINFO_FREE,
    MEMINFO_AVAILABLE,
    MEMINFO_BUFFERS,
    MEMINFO_CACHED,
    MEMINFO_SRECLAIMABLE,
    MEMINFO_COUNT
};

struct metrics_meminfo_ctx {
    uint64_t v[MEMINFO_COUNT];
    bool have[MEMINFO_COUNT];
};

static int
metrics_on_meminfo_line(void *ctx, char *line)
{
    static const char *const keys[MEMINFO_COUNT] = {
        "MemTotal", "MemFree", "MemAvailable",
        "Buffers",  "Cached",  "SReclaimable",
    };
    struct metrics_meminfo_ctx *c = ctx;
    char num[METRICS_TOKEN_MAX], unit[METRICS_TOKEN_MAX];
    const char *p;
    char *key, *val;
    uint64_t v;

    if (!metrics_split_kv(line, &key, &val))
        return 0;
    for (size_t i = 0; i < MEMINFO_COUNT; i++) {
        if (strcmp(key, keys[i]) != 0)
            continue;
        /* "16318236 kB": the kernel always writes kB for these keys, so
         * anything else means the file is not what we think it is. */
        p = metrics_next_token(val, num, sizeof(num));
        if (p == NULL || parse_u64(num, 0, UINT64_MAX / 1024, &v, NULL) != 0)
            return -EINVAL;
        p = metrics_next_token(p, unit, sizeof(unit));
        if (p == NULL || strcmp(unit, "kB") != 0 ||
            metrics_next_token(p, unit, sizeof(unit)) != NULL)
            return -EINVAL;
        v *= 1024;
        c->v[i] = v;
        c->have[i] = true;
        return 0;
    }
    return 0;
}

struct metrics_psi_ctx {
    bool have_some, have_full;
    double some, full;
};

/* "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" */
static int
metrics_on_psi_line(void *ctx, char *line)
{
    struct metrics_psi_ctx *c = ctx;
    char kind[METRICS_TOKEN_MAX], tok[METRICS_TOKEN_MAX];
    const char *p;
    double v;

    p = metrics_next_token(line, kind, sizeof(kind));
    if (p == NULL)
        return 0;
    if (strcmp(kind, "some") != 0 && strcmp(kind, "full") != 0)
        return -EINVAL;
    p = metrics_next_token(p, tok, sizeof(tok));
    if (p == NULL || !metrics_has_prefix(tok, "avg10=") ||
        parse_double(tok + 6, 0.0, 100.0, &v, NULL) != 0)
        return -EINVAL;
    if (kind[0] == 's') {
        c->some = v;
        c->have_some = true;
    } else {
        c->full = v;
        c->have_full = true;
    }
    return 0;
}

static enum metrics_pressure
metrics_pressure_psi(double some, double full)
{
    if (full >= METRICS_PSI_FULL_CRITICAL || some >= METRICS_PSI_SOME_CRITICAL)
        return METRICS_PRESSURE_CRITICAL;
    if (full >= METRICS_PSI_FULL_WARN || some >= METRICS_PSI_SOME_WARN)
        return METRICS_PRESSURE_WARN;
    return METRICS_PRESSURE_NORMAL;
}

static enum metrics_pressure
metrics_pressure_used(double used_pct)
{
    if (used_pct >= METRICS_USED_PCT_CRITICAL)
        return METRICS_PRESSURE_CRITICAL;
    if (used_pct >= METRICS_USED_PCT_WARN)
        return METRICS_PRESSURE_WARN;
    return METRICS_PRESSURE_NORMAL;
}

int
metrics_read_memory(const struct metrics *m, struct metrics_memory *out)
{
    struct metrics_meminfo_ctx c;
    struct metrics_psi_ctx psi;
    char path[METRICS_PATH_MAX];
    uint64_t total, avail, cached, reclaim;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    rc = metrics_path(m, path, sizeof(path), "/proc/meminfo");
    if (rc == 0)
        rc = metrics_each_line(path, METRICS_FILE_MAX, metrics_on_meminfo_line,
                               &c);
    if (rc != 0)
        return rc;
    if (!c.have[MEMINFO_TOTAL] || c.v[MEMINFO_TOTAL] == 0 ||
        !c.have[MEMINFO_FREE])
        return -EINVAL;
    total = c.v[MEMINFO_TOTAL];
    cached = c.v[MEMINFO_CACHED] + c.v[MEMINFO_SRECLAIMABLE];
    reclaim = c.v[MEMINFO_FREE] + c.v[MEMINFO_BUFFERS] + cached;
    /* Kernels before 3.14 lack MemAvailable: free + buffers + cache is
     * the usual estimate. */
    avail = c.have[MEMINFO_AVAILABLE] ? c.v[MEMINFO_AVAILABLE] : reclaim;
    if (avail > total)
        avail = total;
    out->total_bytes = total;
    out->available_bytes = avail;
    /* psutil: used = total - free - buffers - cached, or total - free when
     * that goes negative (containers report odd numbers). */
    if (reclaim <= total)
        out->used_bytes = total - reclaim;
    else if (c.v[MEMINFO_FREE] <= total)
        out->used_bytes = total - c.v[MEMINFO_FREE];
    out->used_pct = (double)(total - avail) / (double)total * 100.0;
    out->pressure = metrics_pressure_used(out->used_pct);

    /* PSI when the kernel has it (4.20+, CONFIG_PSI, not psi=0: then the
     * file exists but reading it fails with EOPNOTSUPP). */
    memset(&psi, 0, sizeof(psi));
    if (metrics_path(m, path, sizeof(path), "/proc/pressure/memory") == 0 &&
        metrics_each_line(path, METRICS_FILE_MAX, metrics_on_psi_line, &psi) ==
            0 &&
        psi.have_some) {
        out->psi = true;
        out->psi_some_avg10 = psi.some;
        out->psi_full_avg10 = psi.have_full ? psi.full : 0.0;
        out->pressure =
            metrics_pressure_psi(out->psi_some_avg10, out->psi_full_avg10);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* disk                                                                */

int
metrics_read_disk(const struct metrics *m, const char *path,
                  struct metrics_disk *out)
{
    char full[METRICS_PATH_MAX];
    struct statvfs sv;
    int rc;

    memset(out, 0, sizeof(*out));
    if (path == NULL || path[0] != '/')
        return -EINVAL;
    rc = metrics_path(m, full, sizeof(full), "%s", path);
    if (rc != 0)
        return rc;
    if (statvfs(full, &sv) != 0)
        return -errno;
    out->total_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
    out->used_bytes = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
    out->available_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
    return 0;
}

/* ------------------------------------------------------------------ */
/* thermal                                                             */

struct metrics_thermal_ctx {
    bool have_pref, have_any;
    double pref, any;
    char pref_src[64], any_src[64];
};

static bool
metrics_thermal_preferred(const char *name)
{
    /* ollama-herd's CPU drivers, plus the thermal-zone spelling of the
     * Raspberry Pi's "cpu_thermal". */
    static const char *const cpu[] = {"coretemp", "k10temp", "zenpower",
                                      "cpu_thermal", "cpu-thermal"};

    for (size_t i = 0; i < sizeof(cpu) / sizeof(cpu[0]); i++) {
        if (strcmp(name, cpu[i]) == 0)
            return true;
    }
    return false;
}

static void
metrics_thermal_add(struct metrics_thermal_ctx *c, const char *path,
                    const char *kind, const char *name)
{
    char val[64];
    int64_t milli;
    double t;

    if (metrics_read_value(path, val, sizeof(val)) != 0 ||
        parse_i64(val, -1000000, 1000000, &milli, NULL) != 0)
        return;
    t = (double)milli / 1000.0;
    if (t < -50.0 || t > 200.0)
        return; /* "no reading" markers and bus glitches */
    if (!c->have_any || t > c->any) {
        c->any = t;
        c->have_any = true;
        snprintf(c->any_src, sizeof(c->any_src), "%s:%.40s", kind, name);
    }
    if (metrics_thermal_preferred(name) && (!c->have_pref || t > c->pref)) {
        c->pref = t;
        c->have_pref = true;
        snprintf(c->pref_src, sizeof(c->pref_src), "%s:%.40s", kind, name);
    }
}

static void
metrics_scan_hwmon(const struct metrics *m, struct metrics_thermal_ctx *c)
{
    char path[METRICS_PATH_MAX], name[64];
    struct dirent *de, *te;
    unsigned ndirs = 0;
    DIR *d, *hd;

    if (metrics_path(m, path, sizeof(path), "/sys/class/hwmon") != 0 ||
        (d = opendir(path)) == NULL)
        return;
    while ((de = readdir(d)) != NULL && ndirs < METRICS_DIR_MAX) {
        unsigned ninputs = 0;

        if (!metrics_has_prefix(de->d_name, "hwmon"))
            continue;
        ndirs++;
        if (metrics_path(m, path, sizeof(path), "/sys/class/hwmon/%s/name",
                         de->d_name) != 0 ||
            metrics_read_value(path, name, sizeof(name)) != 0)
            name[0] = '\0';
        if (metrics_path(m, path, sizeof(path), "/sys/class/hwmon/%s",
                         de->d_name) != 0 ||
            (hd = opendir(path)) == NULL)
            continue;
        while ((te = readdir(hd)) != NULL && ninputs < METRICS_DIR_MAX) {
            const char *us;

            /* temp<N>_input */
            if (!metrics_has_prefix(te->d_name, "temp") ||
                (us = strchr(te->d_name, '_')) == NULL ||
                strcmp(us, "_input") != 0)
                continue;
            ninputs++;
            if (metrics_path(m, path, sizeof(path), "/sys/class/hwmon/%s/%s",
                             de->d_name, te->d_name) == 0)
                metrics_thermal_add(c, path, "hwmon", name);
        }
        closedir(hd);
    }
    closedir(d);
}

static void
metrics_scan_zones(const struct metrics *m, struct metrics_thermal_ctx *c)
{
    char path[METRICS_PATH_MAX], type[64];
    struct dirent *de;
    unsigned n = 0;
    DIR *d;

    if (metrics_path(m, path, sizeof(path), "/sys/class/thermal") != 0 ||
        (d = opendir(path)) == NULL)
        return;
    while ((de = readdir(d)) != NULL && n < METRICS_DIR_MAX) {
        if (!metrics_has_prefix(de->d_name, "thermal_zone"))
            continue;
        n++;
        if (metrics_path(m, path, sizeof(path), "/sys/class/thermal/%s/type",
                         de->d_name) != 0 ||
            metrics_read_value(path, type, sizeof(type)) != 0)
            type[0] = '\0';
        if (metrics_path(m, path, sizeof(path), "/sys/class/thermal/%s/temp",
                         de->d_name) == 0)
            metrics_thermal_add(c, path, "thermal_zone", type);
    }
    closedir(d);
}

int
metrics_read_thermal(const struct metrics *m, struct metrics_thermal *out)
{
    struct metrics_thermal_ctx c;
    double t;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    metrics_scan_hwmon(m, &c);
    metrics_scan_zones(m, &c);
    if (!c.have_any) {
        out->state = METRICS_THERMAL_UNKNOWN;
        return 0;
    }
    t = c.have_pref ? c.pref : c.any;
    metrics_copy_str(out->source, sizeof(out->source),
                     c.have_pref ? c.pref_src : c.any_src);
    out->temperature_c = round(t * 10.0) / 10.0;
    out->state = out->temperature_c >= METRICS_THERMAL_WARN_C
                     ? METRICS_THERMAL_WARNING
                     : METRICS_THERMAL_NOMINAL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* LAN address                                                         */

static bool
metrics_virtual_if(const char *name)
{
    static const char *const virt[] = {"docker", "br-",     "veth", "virbr",
                                       "cni",    "flannel", "cali", "lxcbr"};

    for (size_t i = 0; i < sizeof(virt) / sizeof(virt[0]); i++) {
        if (metrics_has_prefix(name, virt[i]))
            return true;
    }
    return false;
}

int
metrics_lan_ip(char *out, size_t n)
{
    struct ifaddrs *ifs = NULL, *it;
    int rc = -ENOENT;

    if (n > 0)
        out[0] = '\0';
    if (getifaddrs(&ifs) != 0)
        return -errno;
    /* Pass 0: a physical-looking interface; pass 1: anything up. */
    for (int pass = 0; pass < 2 && rc != 0; pass++) {
        for (it = ifs; it != NULL; it = it->ifa_next) {
            const struct sockaddr_in *sin;
            uint32_t a;

            if (it->ifa_addr == NULL || it->ifa_addr->sa_family != AF_INET ||
                !(it->ifa_flags & IFF_UP) || (it->ifa_flags & IFF_LOOPBACK))
                continue;
            sin = (const struct sockaddr_in *)(const void *)it->ifa_addr;
            a = ntohl(sin->sin_addr.s_addr);
            if ((a >> 24) == 127)
                continue;
            if (pass == 0 && ((a >> 16) == 0xa9fe || /* 169.254/16 */
                              metrics_virtual_if(it->ifa_name)))
                continue;
            if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)n) != NULL) {
                rc = 0;
                break;
            }
        }
    }
    freeifaddrs(ifs);
    if (rc != 0)
        snprintf(out, n, "127.0.0.1");
    return rc;
}

/* ------------------------------------------------------------------ */
/* NVML (dlopen'ed: no headers, no link-time dependency)               */

/* The few NVML types we use, as nvml.h declares them. */
typedef int metrics_nvml_ret; /* nvmlReturn_t; NVML_SUCCESS = 0 */
typedef struct metrics_nvml_dev_st *metrics_nvml_dev;
struct metrics_nvml_memory {
    unsigned long long total, free, used; /* nvmlMemory_t (v1) */
};
struct metrics_nvml_util {
    unsigned int gpu, memory; /* nvmlUtilization_t, percent */
};

/* NVML_ERROR_NOT_SUPPORTED: memory info on a unified-memory GPU. */
#define METRICS_NVML_NOT_SUPPORTED 3

struct metrics_nvml {
    void *dl; /* owned: dlclose'd by metrics_nvml_close */
    metrics_nvml_ret (*init)(void);
    metrics_nvml_ret (*shutdown)(void);
    metrics_nvml_ret (*count)(unsigned int *);
    metrics_nvml_ret (*handle)(unsigned int, metrics_nvml_dev *);
    metrics_nvml_ret (*name)(metrics_nvml_dev, char *, unsigned int);
    metrics_nvml_ret (*memory)(metrics_nvml_dev, struct metrics_nvml_memory *);
    metrics_nvml_ret (*util)(metrics_nvml_dev, struct metrics_nvml_util *);
};

/* dlsym into a function pointer without the object-to-function cast
 * ISO C forbids (POSIX guarantees the representations match). */
static bool
metrics_nvml_sym(void *dl, const char *name, void *fnp, size_t fnsize)
{
    void *sym = dlsym(dl, name);

    if (sym == NULL || fnsize != sizeof(sym))
        return false;
    memcpy(fnp, &sym, sizeof(sym));
    return true;
}

#define METRICS_NVML_SYM(nv, field, name)                                      \
    metrics_nvml_sym((nv)->dl, (name), &(nv)->field, sizeof((nv)->field))

int
metrics_gpu_open(struct metrics *m, const char *libname)
{
    struct metrics_nvml *nv;

    if (m->nvml != NULL)
        return 0;
    nv = calloc(1, sizeof(*nv));
    if (nv == NULL)
        return -ENOMEM;
    nv->dl = dlopen(libname != NULL ? libname : "libnvidia-ml.so.1",
                    RTLD_NOW | RTLD_LOCAL);
    if (nv->dl == NULL)
        goto absent;
    if (!METRICS_NVML_SYM(nv, init, "nvmlInit_v2") ||
        !METRICS_NVML_SYM(nv, shutdown, "nvmlShutdown") ||
        !METRICS_NVML_SYM(nv, count, "nvmlDeviceGetCount_v2") ||
        !METRICS_NVML_SYM(nv, handle, "nvmlDeviceGetHandleByIndex_v2") ||
        !METRICS_NVML_SYM(nv, name, "nvmlDeviceGetName") ||
        !METRICS_NVML_SYM(nv, memory, "nvmlDeviceGetMemoryInfo") ||
        !METRICS_NVML_SYM(nv, util, "nvmlDeviceGetUtilizationRates"))
        goto absent;
    if (nv->init() != 0)
        goto absent; /* driver not loaded, no device: no GPU */
    m->nvml = nv;
    return 0;
absent:
    if (nv->dl != NULL)
        dlclose(nv->dl);
    free(nv);
    return -ENOENT;
}

static void
metrics_nvml_close(struct metrics *m)
{
    if (m->nvml == NULL)
        return;
    m->nvml->shutdown();
    dlclose(m->nvml->dl);
    free(m->nvml);
    m->nvml = NULL;
}

int
metrics_read_gpus(const struct metrics *m, struct metrics_gpus *out)
{
    const struct metrics_nvml *nv = m->nvml;
    unsigned int count = 0;

    memset(out, 0, sizeof(*out));
    if (nv == NULL || nv->count(&count) != 0)
        return 0;
    for (unsigned int i = 0; i < count && out->n < METRICS_GPU_MAX; i++) {
        struct metrics_gpu *g = &out->gpu[out->n];
        struct metrics_nvml_memory mem;
        struct metrics_nvml_util util;
        metrics_nvml_dev dev;
        metrics_nvml_ret rc;

        memset(g, 0, sizeof(*g));
        if (nv->handle(i, &dev) != 0)
            continue; /* not ours (NO_PERMISSION) or gone: skipped */
        rc = nv->memory(dev, &mem);
        if (rc == METRICS_NVML_NOT_SUPPORTED) {
            /* A unified-memory GPU (NVIDIA GB10, DGX Spark) has no VRAM
             * of its own and NVML says so: keep it, with VRAM 0. */
            mem.total = mem.used = 0;
        } else if (rc != 0) {
            continue; /* GPU_IS_LOST and the like: skipped */
        }
        if (nv->name(dev, g->name, sizeof(g->name)) != 0)
            g->name[0] = '\0';
        g->name[sizeof(g->name) - 1] = '\0';
        g->vram_total_bytes = mem.total;
        g->vram_used_bytes = mem.used;
        if (nv->util(dev, &util) == 0) {
            g->utilization_pct = util.gpu > 100 ? 100 : util.gpu;
            g->utilization_valid = true;
        }
        out->n++;
    }
    return 0;
}

/* ------------------------------------------------------------------ */

const char *
metrics_pressure_name(enum metrics_pressure p)
{
    switch (p) {
    case METRICS_PRESSURE_WARN:
        return "warn";
    case METRICS_PRESSURE_CRITICAL:
        return "critical";
    case METRICS_PRESSURE_NORMAL:
        break;
    }
    return "normal";
}

const char *
metrics_thermal_name(enum metrics_thermal_state s)
{
    switch (s) {
    case METRICS_THERMAL_NOMINAL:
        return "nominal";
    case METRICS_THERMAL_WARNING:
        return "warning";
    case METRICS_THERMAL_UNKNOWN:
        break;
    }
    return "unknown";
}
