/*
 * loadgen.c - the benchmark's load generator: open-loop HTTP requests on
 * one libcurl multi handle driven by epoll, with timerfds for a schedule
 * that is precise to the microsecond (wrk2's idea; Debian's wrk is
 * closed-loop).
 *
 * Request k is due at t0 + k / rate, whatever happened to the requests
 * before it, and its latency is measured from that due time, not from
 * when it was really sent: a stall of the server or of this program shows
 * up in the figures instead of silently lowering the load (coordinated
 * omission). Latencies go into a log-linear histogram (0.8 % resolution).
 *
 * Modes:
 *   rate       POST one body at a fixed rate for a duration (after a
 *              warm-up that is not recorded); each answer must be 200 with
 *              an ok marker ("done":true) and no "error".
 *   stream     N streaming requests, started evenly over a ramp; every
 *              NDJSON line is parsed: a token line's created_at (herd-sim's
 *              wall clock, ns) against the wall clock at arrival gives the
 *              token's delivery lag; first byte, tokens and the per-stream
 *              token interval are recorded.
 *   heartbeat  N synthetic herd-node heartbeats (ollama-herd's payload,
 *              node-0000..), every node once per interval, evenly spread.
 *
 * The result is one JSON object on stdout; the exit status is 0 when
 * every request succeeded, 1 when any failed, 2 on a usage or set-up
 * error. See bench/README.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define NS_PER_SEC  1000000000LL
#define LINE_CAP    8192 /* longest NDJSON line parsed; longer ones fail */
#define MAX_URLS    16
#define HB_BODY_CAP 4096

/* --- histogram ----------------------------------------------------------
 * Values in ns. Below 256 one bucket per ns; above, 128 sub-buckets per
 * power of two (about 0.8 % wide). */
#define HIST_SUB     128
#define HIST_LINEAR  256
#define HIST_BUCKETS (HIST_LINEAR + 48 * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t max;
    double sum;
    uint64_t b[HIST_BUCKETS];
};

static size_t
hist_index(uint64_t v)
{
    int e;

    if (v < HIST_LINEAR)
        return (size_t)v;
    e = 63 - __builtin_clzll(v) - 7; /* v >> e is in [128, 255] */
    if (e > 48)
        return HIST_BUCKETS - 1;
    return HIST_LINEAR + (size_t)(e - 1) * HIST_SUB +
           (size_t)((v >> e) - HIST_SUB);
}

/* The middle of bucket i, in ns. */
static double
hist_value(size_t i)
{
    size_t e;
    uint64_t lo;

    if (i < HIST_LINEAR)
        return (double)i;
    e = (i - HIST_LINEAR) / HIST_SUB + 1;
    lo = ((uint64_t)((i - HIST_LINEAR) % HIST_SUB) + HIST_SUB) << e;
    return (double)lo + (double)(1ULL << e) / 2.0;
}

static void
hist_add(struct hist *h, int64_t v)
{
    uint64_t u = v < 0 ? 0 : (uint64_t)v;

    h->b[hist_index(u)]++;
    h->count++;
    h->sum += (double)u;
    if (u > h->max)
        h->max = u;
}

static double
hist_quantile(const struct hist *h, double q)
{
    uint64_t want, seen = 0;

    if (h->count == 0)
        return 0;
    want = (uint64_t)ceil(q * (double)h->count);
    if (want < 1)
        want = 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want)
            return hist_value(i) < (double)h->max ? hist_value(i)
                                                  : (double)h->max;
    }
    return (double)h->max;
}

/* {"n":..,"p50":..,...} in microseconds. */
static void
hist_print(FILE *f, const char *name, const struct hist *h)
{
    fprintf(f,
            "\"%s\":{\"n\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%.1f,"
            "\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
            name, h->count, h->count ? h->sum / (double)h->count / 1e3 : 0,
            hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
            hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3,
            (double)h->max / 1e3);
}

/* --- clocks -------------------------------------------------------------- */

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t
wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool
digits(const char *p, int n, int64_t *out)
{
    int64_t v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* "2026-11-22T06:10:55.925838145Z" (UTC, up to 9 fraction digits) to
 * Unix ns; -1 when it is not that. */
static int64_t
parse_rfc3339_utc(const char *p, const char *end)
{
    int64_t y, mo, d, h, mi, s, frac = 0, scale = 100000000;

    if (end - p < 20 || !digits(p, 4, &y) || p[4] != '-' ||
        !digits(p + 5, 2, &mo) || p[7] != '-' || !digits(p + 8, 2, &d) ||
        p[10] != 'T' || !digits(p + 11, 2, &h) || p[13] != ':' ||
        !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &s))
        return -1;
    p += 19;
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (p >= end || *p != 'Z')
        return -1;
    return ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) *
            NS_PER_SEC) +
           frac;
}

/* --- the generator ------------------------------------------------------- */

enum lg_mode { LG_RATE, LG_STREAM, LG_HEARTBEAT };

struct lg_req {
    CURL *easy;
    struct lg_req *next_free;
    struct lg *g;
    int64_t t_sched, t_start, t_first, t_last_tok, t_first_tok;
    uint64_t seq;
    long tokens;
    bool got_ok, got_error, line_overflow, active;
    size_t line_len;
    char line[LINE_CAP];
    char body[HB_BODY_CAP]; /* heartbeat bodies */
};

struct lg {
    enum lg_mode mode;
    const char *urls[MAX_URLS];
    size_t n_urls;
    const char *bodies[MAX_URLS];
    size_t n_bodies;
    const char *ok_marker;
    double rate;
    double duration_s, warmup_s;
    uint64_t total; /* requests to send */
    size_t max_inflight;
    long conns;
    bool fresh_conn;
    double timeout_s;
    double drain_s;

    /* heartbeat */
    unsigned hb_nodes;
    double hb_interval_s;
    const char *hb_ollama_host;
    unsigned hb_num_parallel;

    CURLM *multi;
    int epfd, tfd_curl, tfd_send;
    bool curl_now;
    struct curl_slist *headers;
    struct lg_req *reqs;
    struct lg_req *free_list;
    size_t inflight, inflight_peak;
    size_t active_streams, active_peak;
    int64_t t_active_peak;
    uint64_t next_k;
    int64_t t0, t_rec, t_deadline;
    int64_t t0_wall;

    /* outcomes */
    uint64_t done, ok, errors, err_curl, err_status, err_body, err_deadline;
    uint64_t recorded;
    int64_t t_last_rec; /* when the last recorded request completed */
    uint64_t tokens;
    char first_error[256];
    struct hist lat, ttfb, lag, tok_interval, send_lag;
};

static void lg_error(struct lg *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
lg_error(struct lg *g, const char *fmt, ...)
{
    va_list ap;

    if (g->first_error[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(g->first_error, sizeof(g->first_error), fmt, ap);
    va_end(ap);
}

/* One complete NDJSON line (or the whole body of a non-streamed answer). */
static void
lg_line(struct lg_req *r, const char *p, size_t n, int64_t now_wall)
{
    struct lg *g = r->g;
    const char *c;

    if (n == 0)
        return;
    if (memmem(p, n, "\"error\"", 7) != NULL) {
        r->got_error = true;
        return;
    }
    if (memmem(p, n, g->ok_marker, strlen(g->ok_marker)) != NULL) {
        r->got_ok = true;
        return;
    }
    if (g->mode != LG_STREAM || memmem(p, n, "\"done\":false", 12) == NULL)
        return;
    r->tokens++;
    r->t_last_tok = mono_ns();
    if (r->tokens == 1)
        r->t_first_tok = r->t_last_tok;
    c = memmem(p, n, "\"created_at\":\"", 14);
    if (c != NULL) {
        int64_t t = parse_rfc3339_utc(c + 14, p + n);

        if (t > 0)
            hist_add(&g->lag, now_wall - t);
    }
}

static size_t
lg_on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct lg_req *r = ud;
    size_t n = size * nmemb, i = 0;
    int64_t now_wall = r->g->mode == LG_STREAM ? wall_ns() : 0;

    if (r->t_first == 0) {
        r->t_first = mono_ns();
        if (r->g->mode == LG_STREAM) {
            r->active = true;
            r->g->active_streams++;
            if (r->g->active_streams > r->g->active_peak) {
                r->g->active_peak = r->g->active_streams;
                r->g->t_active_peak = r->t_first;
            }
        }
    }
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : n - i;

        if (r->line_len + take > LINE_CAP)
            r->line_overflow = true;
        else
            memcpy(r->line + r->line_len, p + i, take);
        r->line_len += take;
        i += take;
        if (nl != NULL) {
            if (!r->line_overflow)
                lg_line(r, r->line, r->line_len, now_wall);
            r->line_len = 0;
            i++;
        }
    }
    return n;
}

static void
lg_hb_body(struct lg *g, struct lg_req *r, uint64_t k)
{
    unsigned node = (unsigned)(k % g->hb_nodes);
    uint64_t beat = k / g->hb_nodes;
    /* Deterministic variety so that the scorer has something to rank. */
    uint64_t x =
        (node + 1) * 0x9E3779B97F4A7C15ULL ^ (beat * 0xBF58476D1CE4E5B9ULL);
    double util = (double)(x % 1000) / 10.0;
    double total = 32.0 * (1 + node % 4);
    double avail = total * (0.3 + (double)((x >> 10) % 60) / 100.0);
    static const double bw[] = {120, 400, 800, 1008};
    int len;

    len = snprintf(
        r->body, sizeof(r->body),
        "{\"node_id\":\"node-%04u\",\"arch\":\"x86_64\",\"timestamp\":%.3f,"
        "\"cpu\":{\"cores_physical\":16,\"utilization_pct\":%.1f},"
        "\"memory\":{\"total_gb\":%.1f,\"used_gb\":%.1f,\"available_gb\":%.1f,"
        "\"pressure\":\"normal\",\"wired_gb\":0.0,\"compressed_gb\":0.0},"
        "\"thermal\":{\"state\":\"unknown\",\"temperature_c\":null,"
        "\"source\":\"\"},"
        "\"disk\":{\"total_gb\":1000.0,\"used_gb\":400.0,"
        "\"available_gb\":600.0},"
        "\"ollama\":{\"models_loaded\":["
        "{\"name\":\"bench:1b\",\"size_gb\":1.0,\"requests_active\":0,"
        "\"parameter_size\":\"1B\",\"quantization\":\"Q4_K_M\","
        "\"context_length\":2048},"
        "{\"name\":\"llama3.1:8b\",\"size_gb\":4.9,\"requests_active\":0,"
        "\"parameter_size\":\"8.0B\",\"quantization\":\"Q4_K_M\","
        "\"context_length\":4096}],"
        "\"models_available\":[\"bench:1b\",\"llama3.1:8b\",\"qwen3:8b\","
        "\"gemma3:4b\",\"nomic-embed-text:latest\",\"llama3.3:70b\","
        "\"node-%04u-private:7b\"],"
        "\"requests_active\":0,\"num_parallel\":%u},"
        "\"ollama_host\":\"%s\",\"lan_ip\":\"127.0.0.1\",\"draining\":false,"
        "\"capacity\":null,\"agent_version\":\"bench-flood\","
        "\"image\":null,\"image_port\":0,\"transcription\":null,"
        "\"transcription_port\":0,\"vision_embedding\":null,"
        "\"vision_embedding_port\":0,\"vision_embedding_status\":"
        "{\"backend_available\":false,\"cached_model_count\":0},"
        "\"connection_failures\":0,\"connection_failures_total\":0,"
        "\"chip\":\"bench\",\"memory_bandwidth_gbps\":%.0f,"
        "\"mlx_servers\":[],\"mlx_bind_host\":\"127.0.0.1\"}",
        node, (double)wall_ns() / 1e9, util, total, total - avail, avail, node,
        g->hb_num_parallel, g->hb_ollama_host, bw[node % 4]);
    if (len < 0 || (size_t)len >= sizeof(r->body)) {
        fprintf(stderr, "loadgen: heartbeat body over %zu bytes\n",
                sizeof(r->body));
        exit(2);
    }
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)len);
}

static int64_t
lg_due(const struct lg *g, uint64_t k)
{
    return g->t0 + (int64_t)((double)k * 1e9 / g->rate);
}

static void
lg_start(struct lg *g, uint64_t k)
{
    struct lg_req *r = g->free_list;
    CURLMcode mc;

    g->free_list = r->next_free;
    r->seq = k;
    r->t_sched = lg_due(g, k);
    r->t_start = mono_ns();
    r->t_first = r->t_last_tok = r->t_first_tok = 0;
    r->tokens = 0;
    r->got_ok = r->got_error = r->line_overflow = r->active = false;
    r->line_len = 0;
    curl_easy_setopt(r->easy, CURLOPT_URL, g->urls[k % g->n_urls]);
    if (g->mode == LG_HEARTBEAT) {
        lg_hb_body(g, r, k);
    } else {
        const char *b = g->bodies[k % g->n_bodies];

        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, b);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(b));
    }
    if (r->t_sched >= g->t_rec)
        hist_add(&g->send_lag, r->t_start - r->t_sched);
    mc = curl_multi_add_handle(g->multi, r->easy);
    if (mc != CURLM_OK) {
        fprintf(stderr, "loadgen: curl_multi_add_handle: %s\n",
                curl_multi_strerror(mc));
        exit(2);
    }
    g->inflight++;
    if (g->inflight > g->inflight_peak)
        g->inflight_peak = g->inflight;
}

static void
lg_arm(int tfd, int64_t abs_mono_ns)
{
    struct itimerspec its = {0};

    if (abs_mono_ns > 0) {
        its.it_value.tv_sec = abs_mono_ns / NS_PER_SEC;
        its.it_value.tv_nsec = abs_mono_ns % NS_PER_SEC;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Starts every request that is due, as far as max_inflight allows. */
static void
lg_send_due(struct lg *g)
{
    int64_t now = mono_ns();

    while (g->next_k < g->total && g->free_list != NULL &&
           lg_due(g, g->next_k) <= now)
        lg_start(g, g->next_k++);
    if (g->next_k < g->total && g->free_list != NULL)
        lg_arm(g->tfd_send, lg_due(g, g->next_k));
    /* else: all sent, or a completion frees a slot and calls us again */
}

static void
lg_finish_req(struct lg *g, struct lg_req *r, CURLcode res)
{
    int64_t now = mono_ns();
    long status = 0;
    bool ok, rec = r->t_sched >= g->t_rec;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res == CURLE_OK && r->line_len > 0 && !r->line_overflow)
        lg_line(r, r->line, r->line_len, wall_ns()); /* unterminated tail */
    ok = res == CURLE_OK && status == 200 && r->got_ok && !r->got_error;
    g->done++;
    if (ok) {
        g->ok++;
    } else {
        g->errors++;
        if (res != CURLE_OK) {
            g->err_curl++;
            lg_error(g, "transport: %s (%ld)", curl_easy_strerror(res),
                     (long)res);
        } else if (status != 200) {
            g->err_status++;
            lg_error(g, "HTTP status %ld", status);
        } else {
            g->err_body++;
            lg_error(g, "bad answer (%s, %ld tokens)",
                     r->got_error       ? "an error line"
                     : r->line_overflow ? "line over 8 KiB"
                                        : "no ok marker",
                     r->tokens);
        }
    }
    if (r->active) {
        r->active = false;
        g->active_streams--;
    }
    if (ok && rec) {
        g->recorded++;
        g->t_last_rec = now;
        hist_add(&g->lat, now - r->t_sched);
        if (r->t_first > 0)
            hist_add(&g->ttfb, r->t_first - r->t_sched);
    }
    if (g->mode == LG_STREAM) {
        g->tokens += (uint64_t)r->tokens;
        if (ok && r->tokens > 1)
            hist_add(&g->tok_interval,
                     (r->t_last_tok - r->t_first_tok) / (r->tokens - 1));
    }
    curl_multi_remove_handle(g->multi, r->easy);
    g->inflight--;
    r->next_free = g->free_list;
    g->free_list = r;
}

static void
lg_reap(struct lg *g)
{
    CURLMsg *m;
    int left;
    bool freed = false;

    while ((m = curl_multi_info_read(g->multi, &left)) != NULL) {
        struct lg_req *r;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        lg_finish_req(g, r, m->data.result);
        freed = true;
    }
    if (freed && g->next_k < g->total)
        lg_send_due(g);
}

static int
lg_on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct lg *g = userp;
    struct epoll_event ev;

    (void)e;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(g->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = s;
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(g->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT &&
        epoll_ctl(g->epfd, EPOLL_CTL_ADD, s, &ev) != 0) {
        perror("loadgen: epoll_ctl");
        exit(2);
    }
    return 0;
}

static int
lg_on_timer(CURLM *m, long ms, void *userp)
{
    struct lg *g = userp;

    (void)m;
    if (ms < 0) {
        lg_arm(g->tfd_curl, 0);
    } else if (ms == 0) {
        g->curl_now = true;
    } else {
        lg_arm(g->tfd_curl, mono_ns() + (int64_t)ms * 1000000);
    }
    return 0;
}

static void
lg_setup(struct lg *g)
{
    struct epoll_event ev;
    struct rlimit rl;

    /* The default 50 us timer slack would be added to every send time. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    /* 5,000 streams need more than the usual 1,024 descriptors. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur < (rlim_t)g->max_inflight + 64) {
        fprintf(stderr,
                "loadgen: %zu requests at once need %zu descriptors; the "
                "limit is %llu (ulimit -n)\n",
                g->max_inflight, g->max_inflight + 64,
                (unsigned long long)rl.rlim_cur);
        exit(2);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (g->multi = curl_multi_init()) == NULL) {
        fprintf(stderr, "loadgen: cannot initialise libcurl\n");
        exit(2);
    }
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    g->tfd_curl = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    g->tfd_send = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g->epfd < 0 || g->tfd_curl < 0 || g->tfd_send < 0) {
        perror("loadgen: epoll/timerfd");
        exit(2);
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = g->tfd_curl;
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->tfd_curl, &ev);
    ev.data.fd = g->tfd_send;
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->tfd_send, &ev);

    curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, lg_on_socket);
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, lg_on_timer);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS,
                      g->conns > 0 ? g->conns : (long)g->max_inflight);
    curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      g->conns > 0 ? g->conns : 0L);
    curl_multi_setopt(g->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

    g->headers = curl_slist_append(NULL, "Content-Type: application/json");
    g->headers = curl_slist_append(g->headers, "Expect:");
    g->reqs = calloc(g->max_inflight, sizeof(*g->reqs));
    if (g->reqs == NULL || g->headers == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < g->max_inflight; i++) {
        struct lg_req *r = &g->reqs[i];
        CURL *e = curl_easy_init();

        if (e == NULL) {
            fprintf(stderr, "loadgen: curl_easy_init failed\n");
            exit(2);
        }
        r->easy = e;
        r->g = g;
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->headers);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, lg_on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(g->timeout_s * 1e3));
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, g->fresh_conn ? 1L : 0L);
        r->next_free = g->free_list;
        g->free_list = r;
    }
}

static void
lg_run(struct lg *g)
{
    struct epoll_event evs[512];
    int running;

    g->t0 = mono_ns() + 20000000; /* 20 ms from now */
    g->t0_wall = wall_ns() + 20000000;
    g->t_rec = g->t0 + (int64_t)(g->warmup_s * 1e9);
    g->t_deadline = lg_due(g, g->total) + (int64_t)(g->drain_s * 1e9);
    lg_arm(g->tfd_send, g->t0);
    for (;;) {
        int n = epoll_wait(g->epfd, evs, 512, g->curl_now ? 0 : 100);

        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(2);
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint64_t ticks;

            if (fd == g->tfd_curl) {
                if (read(fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                    perror("loadgen: read timerfd");
                curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0,
                                         &running);
            } else if (fd == g->tfd_send) {
                if (read(fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
                    perror("loadgen: read timerfd");
                lg_send_due(g);
            } else {
                int fl = 0;

                if (evs[i].events & EPOLLIN)
                    fl |= CURL_CSELECT_IN;
                if (evs[i].events & EPOLLOUT)
                    fl |= CURL_CSELECT_OUT;
                if (evs[i].events & (EPOLLERR | EPOLLHUP))
                    fl |= CURL_CSELECT_ERR;
                curl_multi_socket_action(g->multi, fd, fl, &running);
            }
            lg_reap(g);
        }
        if (g->curl_now) {
            g->curl_now = false;
            curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0,
                                     &running);
            lg_reap(g);
        }
        if (g->next_k >= g->total && g->inflight == 0)
            break;
        if (mono_ns() > g->t_deadline) {
            /* What is still running now failed: count it and stop. */
            for (size_t i = 0; i < g->max_inflight; i++) {
                struct lg_req *r = &g->reqs[i];
                bool busy = true;

                for (struct lg_req *f = g->free_list; f; f = f->next_free)
                    if (f == r)
                        busy = false;
                if (!busy)
                    continue;
                g->errors++;
                g->err_deadline++;
                lg_error(g, "%zu requests unfinished at the deadline",
                         g->inflight);
            }
            g->errors += g->total - g->next_k;
            g->err_deadline += g->total - g->next_k;
            break;
        }
    }
}

static void
lg_report(const struct lg *g)
{
    double span = g->duration_s > 0 ? g->duration_s : 0;
    FILE *f = stdout;

    fprintf(f,
            "{\"mode\":\"%s\",\"rate\":%.3f,\"duration_s\":%.3f,"
            "\"warmup_s\":%.3f,\"sent\":%" PRIu64 ",\"done\":%" PRIu64
            ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"err_transport\":%" PRIu64 ",\"err_status\":%" PRIu64
            ",\"err_body\":%" PRIu64 ",\"err_deadline\":%" PRIu64
            ",\"recorded\":%" PRIu64 ",\"inflight_peak\":%zu,",
            g->mode == LG_RATE     ? "rate"
            : g->mode == LG_STREAM ? "stream"
                                   : "heartbeat",
            g->rate, span, g->warmup_s, g->next_k, g->done, g->ok, g->errors,
            g->err_curl, g->err_status, g->err_body, g->err_deadline,
            g->recorded, g->inflight_peak);
    /* Completions per second over the recorded window: the rate the
     * server really sustained (below the target rate when it fell
     * behind and the backlog drained after the window). */
    fprintf(f, "\"achieved_rps\":%.1f,",
            g->t_last_rec > g->t_rec
                ? (double)g->recorded /
                      ((double)(g->t_last_rec - g->t_rec) / 1e9)
                : 0.0);
    fprintf(f, "\"t0_wall_ms\":%.3f,\"first_error\":\"",
            (double)g->t0_wall / 1e6);
    for (const char *p = g->first_error; *p; p++)
        fputc(*p == '"' || *p == '\\' ? '\'' : *p, f);
    fputs("\",", f);
    if (g->mode == LG_STREAM) {
        fprintf(f,
                "\"tokens\":%" PRIu64 ",\"active_peak\":%zu,"
                "\"t_active_peak_s\":%.3f,",
                g->tokens, g->active_peak,
                g->t_active_peak ? (double)(g->t_active_peak - g->t0) / 1e9
                                 : 0.0);
        hist_print(f, "lag_us", &g->lag);
        fputc(',', f);
        hist_print(f, "tok_interval_us", &g->tok_interval);
        fputc(',', f);
    }
    hist_print(f, "lat_us", &g->lat);
    fputc(',', f);
    hist_print(f, "ttfb_us", &g->ttfb);
    fputc(',', f);
    hist_print(f, "send_lag_us", &g->send_lag);
    fputs("}\n", f);
    fflush(f);
}

static const char usage[] =
    "usage: loadgen rate      --url U [--url U2 ...] --body JSON [--body ...]\n"
    "                         --rate R\n"
    "                         --duration S [--warmup S] [--conns N]\n"
    "       loadgen stream    --url U [--url ...] --body JSON --streams N\n"
    "                         --ramp S [--timeout S]\n"
    "       loadgen heartbeat --url U --nodes N --interval S --duration S\n"
    "                         --ollama-host URL [--num-parallel N]\n"
    "request k goes to url[k % n_urls] with body[k % n_bodies]\n"
    "--body @FILE reads the body from FILE\n"
    "common: --max-inflight N (default 4096), --conns N (0: no cap),\n"
    "        --fresh-conn (no keep-alive), --ok-marker STR, --timeout S\n";

/* "--body @FILE" reads the body from FILE (kept for the whole run). */
static const char *
arg_body(const char *v)
{
    FILE *f;
    char *p;
    long n;

    if (v[0] != '@')
        return v;
    if ((f = fopen(v + 1, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 ||
        (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        (p = malloc((size_t)n + 1)) == NULL ||
        fread(p, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "loadgen: cannot read the body file %s\n", v + 1);
        exit(2);
    }
    fclose(f);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    p[n] = '\0';
    return p;
}

static double
arg_num(const char *name, const char *v, double lo, double hi)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(d >= lo && d <= hi)) {
        fprintf(stderr, "loadgen: %s: \"%s\" is not a number in [%g, %g]\n",
                name, v, lo, hi);
        exit(2);
    }
    return d;
}

int
main(int argc, char **argv)
{
    static struct lg g;
    double streams = 0, ramp = 0;

    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "rate") == 0) {
        g.mode = LG_RATE;
    } else if (strcmp(argv[1], "stream") == 0) {
        g.mode = LG_STREAM;
    } else if (strcmp(argv[1], "heartbeat") == 0) {
        g.mode = LG_HEARTBEAT;
    } else {
        fputs(usage, stderr);
        return 2;
    }
    g.ok_marker =
        g.mode == LG_HEARTBEAT ? "\"status\":\"ok\"" : "\"done\":true";
    g.max_inflight = 4096;
    g.conns = g.mode == LG_RATE ? 64 : 0;
    g.timeout_s = 30;
    g.drain_s = 30;
    g.hb_num_parallel = 64;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--fresh-conn") == 0) {
            g.fresh_conn = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "loadgen: %s needs a value\n%s", a, usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--url") == 0) {
            if (g.n_urls == MAX_URLS) {
                fprintf(stderr, "loadgen: at most %d --url\n", MAX_URLS);
                return 2;
            }
            g.urls[g.n_urls++] = v;
        } else if (strcmp(a, "--body") == 0) {
            if (g.n_bodies == MAX_URLS) {
                fprintf(stderr, "loadgen: at most %d --body\n", MAX_URLS);
                return 2;
            }
            g.bodies[g.n_bodies++] = arg_body(v);
        } else if (strcmp(a, "--rate") == 0) {
            g.rate = arg_num(a, v, 0.001, 1e7);
        } else if (strcmp(a, "--duration") == 0) {
            g.duration_s = arg_num(a, v, 0.001, 86400);
        } else if (strcmp(a, "--warmup") == 0) {
            g.warmup_s = arg_num(a, v, 0, 86400);
        } else if (strcmp(a, "--conns") == 0) {
            g.conns = (long)arg_num(a, v, 0, 1e6);
        } else if (strcmp(a, "--max-inflight") == 0) {
            g.max_inflight = (size_t)arg_num(a, v, 1, 1e6);
        } else if (strcmp(a, "--timeout") == 0) {
            g.timeout_s = arg_num(a, v, 0.001, 86400);
        } else if (strcmp(a, "--ok-marker") == 0) {
            g.ok_marker = v;
        } else if (strcmp(a, "--streams") == 0) {
            streams = arg_num(a, v, 1, 1e6);
        } else if (strcmp(a, "--ramp") == 0) {
            ramp = arg_num(a, v, 0.001, 3600);
        } else if (strcmp(a, "--nodes") == 0) {
            g.hb_nodes = (unsigned)arg_num(a, v, 1, 1e6);
        } else if (strcmp(a, "--interval") == 0) {
            g.hb_interval_s = arg_num(a, v, 0.001, 3600);
        } else if (strcmp(a, "--ollama-host") == 0) {
            g.hb_ollama_host = v;
        } else if (strcmp(a, "--num-parallel") == 0) {
            g.hb_num_parallel = (unsigned)arg_num(a, v, 1, 1e6);
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n%s", a, usage);
            return 2;
        }
    }
    if (g.n_urls == 0) {
        fprintf(stderr, "loadgen: --url is required\n");
        return 2;
    }
    switch (g.mode) {
    case LG_RATE:
        if (g.n_bodies == 0 || g.rate <= 0 || g.duration_s <= 0) {
            fputs(usage, stderr);
            return 2;
        }
        g.total = (uint64_t)llround(g.rate * (g.warmup_s + g.duration_s));
        g.drain_s = g.timeout_s;
        break;
    case LG_STREAM:
        if (g.n_bodies == 0 || streams < 1 || ramp <= 0) {
            fputs(usage, stderr);
            return 2;
        }
        g.total = (uint64_t)streams;
        g.max_inflight = g.total;
        g.rate = streams / ramp;
        g.duration_s = ramp;
        g.drain_s = g.timeout_s;
        break;
    case LG_HEARTBEAT:
        if (g.hb_nodes == 0 || g.hb_interval_s <= 0 || g.duration_s <= 0 ||
            g.hb_ollama_host == NULL) {
            fputs(usage, stderr);
            return 2;
        }
        g.rate = g.hb_nodes / g.hb_interval_s;
        g.total = (uint64_t)llround(g.rate * (g.warmup_s + g.duration_s));
        g.drain_s = g.timeout_s;
        break;
    }
    lg_setup(&g);
    lg_run(&g);
    lg_report(&g);
    return g.errors ? 1 : 0;
}
