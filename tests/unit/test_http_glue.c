/*
 * test_http_glue.c - the HTTP server (http_server.c) and the HTTP client
 * (http_client.c), tested against each other in one process on one loop.
 * test_http_client.c tests the client alone, against a raw server.
 *
 * Callbacks only record what happened; the test bodies assert. The loop
 * is the only synchronisation: run_until() turns it until a condition
 * holds, with a watchdog timer that fails the test instead of hanging.
 * The tests share one server and one client and run in order; the last
 * one frees both and checks that the loop is left with no handle.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "herd/http_client.h"
#include "herd/http_server.h"
#include "herd/log.h"

#define WATCHDOG_MS 60000u

/* (a) */
#define N_STREAMS     1000u
#define STREAM_CHUNKS 20u
#define STREAM_SIZE   512u
/* (b) */
#define N_CANCEL 300u
/* (c) */
#define N_HANG 50u
/* (d) */
#define MAX_BODY (64u * 1024u)
/* (f) */
#define MAX_QUEUE  (1024u * 1024u)
#define BULK_CHUNK (64u * 1024u)
#define BULK_TOTAL (24u * 1024u * 1024u)
/* A high low-water mark keeps the queue near its cap: once the kernel's
 * buffers are full, the queue stays there. */
#define BULK_LOW (MAX_QUEUE - 2u * BULK_CHUNK)

static uv_loop_t g_loop;
static uv_timer_t g_watchdog;
static bool g_watchdog_fired;
static struct http_server *g_srv;
static struct http_client *g_cli;
static unsigned g_port;
static unsigned g_nstreams = N_STREAMS;

/* --- helpers ------------------------------------------------------------ */

/* The byte at offset k of every test body: a mismatch reveals a lost,
 * doubled or reordered piece, not just a wrong count. */
static char
pat(size_t k)
{
    static const char t[] = "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

    return t[((uint64_t)k * 2654435761u >> 11) % 64u];
}

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    g_watchdog_fired = true;
}

static void
run_until(bool (*cond)(void *), void *arg)
{
    g_watchdog_fired = false;
    uv_timer_start(&g_watchdog, on_watchdog, WATCHDOG_MS, 0);
    while (!cond(arg) && !g_watchdog_fired)
        uv_run(&g_loop, UV_RUN_ONCE);
    uv_timer_stop(&g_watchdog);
    assert_false(g_watchdog_fired);
}

static unsigned
query_u(struct http_req *r, const char *name, unsigned def)
{
    const char *v = http_req_query(r, name);
    char *end;
    unsigned long n;

    if (v == NULL || *v == '\0')
        return def;
    n = strtoul(v, &end, 10);
    return *end == '\0' ? (unsigned)n : def;
}

/* --- server side --------------------------------------------------------
 */

struct srv_counts {
    unsigned handled;   /* handler calls */
    unsigned done;      /* done callbacks */
    unsigned end[5];    /* by enum http_end */
    unsigned live;      /* per-request states not yet freed */
    unsigned too_large; /* (d) */
    unsigned bad;       /* misbehaviour seen by a handler */
};
static struct srv_counts g_sc;

static void
srv_count_done(struct http_req *r, enum http_end why, void *ud)
{
    (void)r;
    (void)ud;
    g_sc.done++;
    g_sc.end[why]++;
}

/* /stream?n=&size=&ms=: n chunks of size bytes, one per timer tick. */
struct srv_stream {
    uv_timer_t t;
    struct http_req *r; /* NULL once done */
    unsigned i, n, size;
    size_t off;
};

static void
srv_stream_closed(uv_handle_t *h)
{
    free(h->data);
    g_sc.live--;
}

static void
srv_stream_done(struct http_req *r, enum http_end why, void *ud)
{
    struct srv_stream *st = ud;

    srv_count_done(r, why, NULL);
    st->r = NULL;
    uv_close((uv_handle_t *)&st->t, srv_stream_closed);
}

static void
srv_stream_tick(uv_timer_t *t)
{
    struct srv_stream *st = t->data;
    char chunk[4096];
    unsigned j;

    if (st->i == st->n) {
        uv_timer_stop(t);
        if (http_stream_end(st->r) != 0)
            g_sc.bad++;
        /* The stream is over for the writer, even before it is sent. */
        if (http_stream_write(st->r, "x", 1) != -EPIPE ||
            http_stream_end(st->r) != -EPIPE)
            g_sc.bad++;
        return;
    }
    for (j = 0; j < st->size; j++)
        chunk[j] = pat(st->off + j);
    if (http_stream_write(st->r, chunk, st->size) != 0)
        g_sc.bad++;
    st->off += st->size;
    st->i++;
}

static void
srv_stream(struct http_req *r)
{
    struct srv_stream *st = calloc(1, sizeof(*st));
    unsigned ms = query_u(r, "ms", 1);

    st->r = r;
    st->n = query_u(r, "n", 10);
    st->size = query_u(r, "size", 100);
    if (st->size > 4096)
        st->size = 4096;
    g_sc.live++;
    if (http_stream_write(r, "x", 1) != -EINVAL) /* before begin */
        g_sc.bad++;
    http_req_set_data(r, st);
    http_req_on_done(r, srv_stream_done, st);
    http_stream_begin(r, 200, "application/octet-stream");
    uv_timer_init(&g_loop, &st->t);
    st->t.data = st;
    uv_timer_start(&st->t, srv_stream_tick, ms, ms > 0 ? ms : 1);
}

/* /hang: never answers; (c) and the shutdown test. */
static struct http_req *g_hang_reqs[N_HANG];
static enum http_end g_hang_end[N_HANG];
static unsigned g_hang_handled;
static bool g_hang_cancel_in_handler;
static struct http_call *g_hang_calls[N_HANG];

static void
srv_hang_done(struct http_req *r, enum http_end why, void *ud)
{
    size_t k = (size_t)(uintptr_t)ud;

    srv_count_done(r, why, NULL);
    g_hang_reqs[k] = NULL;
    g_hang_end[k] = why;
}

static void
srv_hang(struct http_req *r)
{
    unsigned k = query_u(r, "k", 0) % N_HANG;

    g_hang_handled++;
    g_hang_reqs[k] = r;
    http_req_on_done(r, srv_hang_done, (void *)(uintptr_t)k);
    /* The client goes away from inside our handler: the server must still
     * notice once the connection is parked. */
    if (g_hang_cancel_in_handler && g_hang_calls[k] != NULL) {
        http_call_cancel(g_hang_calls[k]);
        g_hang_calls[k] = NULL;
    }
}

static size_t
upload_len(void)
{
    return MAX_BODY;
}

static char
upload_byte(size_t j)
{
    return j == 5 ? '\0' : pat(j); /* bodies may hold NULs */
}

/* /upload: checks the body (d). */
static void
srv_upload(struct http_req *r)
{
    size_t len;
    const char *b = http_req_body(r, &len);
    size_t j;

    if (http_req_too_large(r)) {
        g_sc.too_large++;
        if (len != 0)
            g_sc.bad++;
        http_respond(r, 413, "text/plain", "too large\n", 10);
        return;
    }
    for (j = 0; j < len; j++) {
        if (b[j] != upload_byte(j)) {
            g_sc.bad++;
            break;
        }
    }
    if (b[len] != '\0')
        g_sc.bad++;
    http_respond(r, len == upload_len() ? 200 : 400, "text/plain", "ok\n", 3);
}

/* /bulk: as fast as backpressure allows (f). */
struct srv_bulk {
    struct http_req *r;
    size_t off, total;
    size_t max_queued;
    unsigned drains;
    unsigned e2big;
    bool blocked; /* waiting for a drain */
    enum http_end end;
    bool done;
};
static struct srv_bulk g_bulk;
static bool *g_bulk_client_paused; /* the client's flag, read-only */

static void srv_bulk_fill(struct http_req *r, void *ud);

static void
srv_bulk_fill(struct http_req *r, void *ud)
{
    static char chunk[BULK_CHUNK];
    size_t n;
    size_t j;
    int rc;

    if (ud != NULL) {
        g_bulk.drains++;
        g_bulk.blocked = false;
    }
    while (g_bulk.off < g_bulk.total) {
        n = g_bulk.total - g_bulk.off;
        if (n > BULK_CHUNK)
            n = BULK_CHUNK;
        for (j = 0; j < n; j++)
            chunk[j] = pat(g_bulk.off + j);
        rc = http_stream_write(r, chunk, n);
        if (rc == -E2BIG) {
            g_bulk.e2big++;
            g_bulk.blocked = true;
            http_stream_on_drain(r, BULK_LOW, srv_bulk_fill, &g_bulk);
            return;
        }
        if (rc != 0) {
            g_sc.bad++;
            return;
        }
        g_bulk.off += n;
        if (http_stream_queued(r) > g_bulk.max_queued)
            g_bulk.max_queued = http_stream_queued(r);
    }
    http_stream_end(r);
}

static void
srv_bulk_done(struct http_req *r, enum http_end why, void *ud)
{
    (void)ud;
    srv_count_done(r, why, NULL);
    g_bulk.r = NULL;
    g_bulk.end = why;
    g_bulk.done = true;
}

static void
srv_bulk(struct http_req *r)
{
    g_bulk.r = r;
    g_bulk.off = 0;
    g_bulk.total = query_u(r, "total", BULK_TOTAL);
    http_req_on_done(r, srv_bulk_done, NULL);
    http_stream_begin(r, 200, "application/octet-stream");
    srv_bulk_fill(r, NULL);
}

/* /abort: some bytes, then a broken transfer. */
static void
srv_abort_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void
srv_abort_tick(uv_timer_t *t)
{
    struct http_req *r = t->data;

    if (r != NULL) {
        /* The timer goes away now: the done callback must not see it. */
        http_req_on_done(r, srv_count_done, NULL);
        http_stream_abort(r);
    }
    uv_close((uv_handle_t *)t, srv_abort_timer_closed);
}

static void
srv_abort_done(struct http_req *r, enum http_end why, void *ud)
{
    uv_timer_t *t = ud;

    srv_count_done(r, why, NULL);
    t->data = NULL;
}

static void
srv_abort(struct http_req *r)
{
    uv_timer_t *t = malloc(sizeof(*t));
    char body[1000];
    size_t j;

    for (j = 0; j < sizeof(body); j++)
        body[j] = pat(j);
    uv_timer_init(&g_loop, t);
    t->data = r;
    http_req_on_done(r, srv_abort_done, t);
    http_stream_begin(r, 200, "text/plain");
    http_stream_write(r, body, sizeof(body));
    uv_timer_start(t, srv_abort_tick, 5, 0);
}

/* /echo: what the server saw of the request. */
struct echo_seen {
    char method[16];
    char path[64];
    char peer[64];
    char hdr_lower[32];
    char hdr_upper[32];
    char q[32];
    bool flag_present;
    bool flag_empty;
    bool nope_absent;
    bool missing_hdr_absent;
    int bad_header_rc;
    int second_respond_rc;
    int late_header_rc;
};
static struct echo_seen g_echo;

static void
copy_str(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s != NULL ? s : "(null)");
}

static void
srv_echo(struct http_req *r)
{
    const char *flag = http_req_query(r, "flag");

    memset(&g_echo, 0, sizeof(g_echo));
    copy_str(g_echo.method, sizeof(g_echo.method), http_req_method(r));
    copy_str(g_echo.path, sizeof(g_echo.path), http_req_path(r));
    copy_str(g_echo.peer, sizeof(g_echo.peer), http_req_peer(r));
    copy_str(g_echo.hdr_lower, sizeof(g_echo.hdr_lower),
             http_req_header(r, "x-test"));
    copy_str(g_echo.hdr_upper, sizeof(g_echo.hdr_upper),
             http_req_header(r, "X-TEST"));
    copy_str(g_echo.q, sizeof(g_echo.q), http_req_query(r, "q"));
    g_echo.flag_present = flag != NULL;
    g_echo.flag_empty = flag != NULL && *flag == '\0';
    g_echo.nope_absent = http_req_query(r, "nope") == NULL;
    g_echo.missing_hdr_absent = http_req_header(r, "x-missing") == NULL;
    g_echo.bad_header_rc = http_set_header(r, "Bad:Name", "v");
    http_set_header(r, "X-Herd-Echo", "yes");
    http_respond(r, 200, "text/plain", http_req_peer(r),
                 strlen(http_req_peer(r)));
    g_echo.second_respond_rc = http_respond(r, 500, NULL, NULL, 0);
    g_echo.late_header_rc = http_set_header(r, "X-Late", "1");
}

/* /free-server: frees the auxiliary server from inside its own handler. */
static struct http_server *g_aux_srv;
static bool g_aux_srv_closed;

static void
on_flag_closed(void *ud)
{
    *(bool *)ud = true;
}

static void
srv_free_server(struct http_req *r)
{
    (void)r;
    http_server_free(g_aux_srv, on_flag_closed, &g_aux_srv_closed);
    g_aux_srv = NULL;
}

static void
srv_on_request(struct http_req *r, void *ud)
{
    const char *path = http_req_path(r);

    (void)ud;
    g_sc.handled++;
    http_req_on_done(r, srv_count_done, NULL);
    if (strcmp(path, "/stream") == 0)
        srv_stream(r);
    else if (strcmp(path, "/hang") == 0)
        srv_hang(r);
    else if (strcmp(path, "/upload") == 0)
        srv_upload(r);
    else if (strcmp(path, "/bulk") == 0)
        srv_bulk(r);
    else if (strcmp(path, "/abort") == 0)
        srv_abort(r);
    else if (strncmp(path, "/echo", 5) == 0)
        srv_echo(r);
    else if (strcmp(path, "/free-server") == 0)
        srv_free_server(r);
    else
        http_respond(r, 404, "text/plain", "not found\n", 10);
}

/* --- client side -------------------------------------------------------- */

struct cli {
    struct http_call *call; /* NULL once done or cancelled */
    size_t got;
    size_t bad;
    size_t cancel_after; /* cancel from on_data once got reaches it */
    bool pause_first;    /* pause at the first bytes */
    bool paused;
    bool responded;
    bool cancelled;
    bool done;
    int status;
    int err;
    char header[32];
    char body[64];
};
static unsigned g_cli_done;
static unsigned g_cli_done_after_cancel;

static void
cli_on_response(struct http_call *call, int status, void *ud)
{
    struct cli *c = ud;

    c->responded = true;
    c->status = status;
    copy_str(c->header, sizeof(c->header),
             http_call_header(call, "x-herd-echo"));
}

static int
cli_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct cli *c = ud;
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != pat(c->got + i))
            c->bad++;
    c->got += n;
    if (c->cancel_after != 0 && c->got >= c->cancel_after) {
        c->cancelled = true;
        c->call = NULL;
        http_call_cancel(call);
        return 0;
    }
    if (c->pause_first && !c->paused && c->got == n) {
        c->paused = true;
        return HTTP_CALL_PAUSE;
    }
    return 0;
}

static void
cli_on_done(struct http_call *call, int err, const char *msg, void *ud)
{
    struct cli *c = ud;
    size_t len;
    const char *b = http_call_body(call, &len);

    (void)msg;
    if (c->cancelled)
        g_cli_done_after_cancel++;
    c->done = true;
    c->err = err;
    c->status = http_call_status(call);
    if (len > 0)
        snprintf(c->body, sizeof(c->body), "%.*s", (int)len, b);
    c->call = NULL;
    g_cli_done++;
}

static struct http_call *
cli_start_on(struct http_client *hc, unsigned port, struct cli *c,
             const char *method, const char *target, const char *const *headers,
             const void *body, size_t len, bool buffered)
{
    struct http_call_opts o;
    char url[256];
    char err[256];

    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, target);
    memset(&o, 0, sizeof(o));
    o.method = method;
    o.url = url;
    o.headers = headers;
    o.body = body;
    o.body_len = len;
    o.connect_timeout_ms = 10000;
    o.on_response = cli_on_response;
    o.on_data = buffered ? NULL : cli_on_data;
    o.on_done = cli_on_done;
    o.ud = c;
    c->call = http_call_start(hc, &o, err, sizeof(err));
    if (c->call == NULL)
        print_error("http_call_start: %s\n", err);
    return c->call;
}

static struct http_call *
cli_start(struct cli *c, const char *target)
{
    return cli_start_on(g_cli, g_port, c, "GET", target, NULL, NULL, 0, false);
}

struct cli_set {
    struct cli *v;
    unsigned n;
};

static bool
all_done(void *arg)
{
    const struct cli_set *set = arg;
    unsigned i;

    for (i = 0; i < set->n; i++)
        if (!set->v[i].done && !set->v[i].cancelled)
            return false;
    return true;
}

static bool
server_idle(void *arg)
{
    (void)arg;
    return http_server_active(g_srv) == 0 && g_sc.live == 0;
}

static bool
done_count_reached(void *arg)
{
    return g_sc.done >= *(unsigned *)arg && g_sc.live == 0;
}

static void
reset_counts(void)
{
    memset(&g_sc, 0, sizeof(g_sc));
    g_cli_done = 0;
    g_cli_done_after_cancel = 0;
}

/* --- fixture ------------------------------------------------------------ */

static int
setup(void **state)
{
    struct http_server_opts o;
    char err[256];

    (void)state;
    if (uv_loop_init(&g_loop) != 0)
        return -1;
    uv_timer_init(&g_loop, &g_watchdog);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = 0;
    o.max_body = MAX_BODY;
    o.max_header = 16 * 1024;
    o.max_conns = 8192;
    o.idle_timeout_s = 60;
    o.stream_max_queue = MAX_QUEUE;
    o.on_request = srv_on_request;
    g_srv = http_server_new(&g_loop, &o, err, sizeof(err));
    if (g_srv == NULL) {
        print_error("http_server_new: %s\n", err);
        return -1;
    }
    g_port = http_server_port(g_srv);
    g_cli = http_client_new(&g_loop);
    return g_cli != NULL ? 0 : -1;
}

/* --- tests -------------------------------------------------------------- */

/* Small things: header lookup, query args, peer, response headers. */
static void
test_echo_request_accessors(void **state)
{
    static const char *const hdrs[] = {"X-Test: Abc", NULL};
    struct cli c;
    struct cli_set set = {&c, 1};

    (void)state;
    reset_counts();
    memset(&c, 0, sizeof(c));
    assert_non_null(cli_start_on(g_cli, g_port, &c, "GET",
                                 "/echo/x?q=hello%20world&flag", hdrs, NULL, 0,
                                 true));
    run_until(all_done, &set);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.header, "yes");
    assert_string_equal(c.body, "127.0.0.1");
    assert_string_equal(g_echo.method, "GET");
    assert_string_equal(g_echo.path, "/echo/x");
    assert_string_equal(g_echo.peer, "127.0.0.1");
    assert_string_equal(g_echo.hdr_lower, "Abc");
    assert_string_equal(g_echo.hdr_upper, "Abc");
    assert_string_equal(g_echo.q, "hello world");
    assert_true(g_echo.flag_present);
    assert_true(g_echo.flag_empty);
    assert_true(g_echo.nope_absent);
    assert_true(g_echo.missing_hdr_absent);
    assert_int_equal(g_echo.bad_header_rc, -EINVAL);
    assert_int_equal(g_echo.second_respond_rc, -EINVAL);
    assert_int_equal(g_echo.late_header_rc, -EINVAL);
    run_until(server_idle, NULL);
    assert_int_equal(g_sc.end[HTTP_END_OK], 1);
}

/* The response headers on the client side, case-insensitively. */
static struct cli g_hdr_cli;
static char g_hdr_ctype[64];
static bool g_hdr_absent;

static void
hdr_on_done(struct http_call *call, int err, const char *msg, void *ud)
{
    copy_str(g_hdr_ctype, sizeof(g_hdr_ctype),
             http_call_header(call, "CONTENT-type"));
    g_hdr_absent = http_call_header(call, "x-not-there") == NULL;
    cli_on_done(call, err, msg, ud);
}

static void
test_client_header_lookup(void **state)
{
    struct http_call_opts o;
    char url[128];
    char err[128];
    struct cli_set set = {&g_hdr_cli, 1};

    (void)state;
    memset(&g_hdr_cli, 0, sizeof(g_hdr_cli));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/echo", g_port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_response = cli_on_response;
    o.on_done = hdr_on_done;
    o.ud = &g_hdr_cli;
    g_hdr_cli.call = http_call_start(g_cli, &o, err, sizeof(err));
    assert_non_null(g_hdr_cli.call);
    run_until(all_done, &set);
    assert_int_equal(g_hdr_cli.err, 0);
    assert_string_equal(g_hdr_ctype, "text/plain");
    assert_true(g_hdr_absent);
    assert_string_equal(g_hdr_cli.header, "yes");
    run_until(server_idle, NULL);
}

/* A second server on the same address and port is refused, and says
 * why. */
static void
test_bind_conflict(void **state)
{
    struct http_server_opts o;
    struct http_server *s2;
    char err[256] = "";

    (void)state;
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = g_port;
    o.on_request = srv_on_request;
    s2 = http_server_new(&g_loop, &o, err, sizeof(err));
    assert_null(s2);
    assert_non_null(strstr(err, "127.0.0.1:"));
    assert_non_null(strstr(err, "in use"));
}

/* (a) 1,000 concurrent streams, each checked byte for byte. */
static void
test_concurrent_streams(void **state)
{
    struct cli *v = calloc(g_nstreams, sizeof(*v));
    struct cli_set set = {v, g_nstreams};
    unsigned i;
    unsigned want = g_nstreams;
    size_t total = 0;
    char target[128];

    (void)state;
    reset_counts();
    snprintf(target, sizeof(target), "/stream?n=%u&size=%u&ms=2", STREAM_CHUNKS,
             STREAM_SIZE);
    for (i = 0; i < g_nstreams; i++)
        assert_non_null(cli_start(&v[i], target));
    assert_int_equal(http_client_active(g_cli), g_nstreams);
    run_until(all_done, &set);
    for (i = 0; i < g_nstreams; i++) {
        assert_int_equal(v[i].err, 0);
        assert_int_equal(v[i].status, 200);
        assert_int_equal(v[i].bad, 0);
        assert_int_equal(v[i].got, (size_t)STREAM_CHUNKS * STREAM_SIZE);
        total += v[i].got;
    }
    run_until(done_count_reached, &want);
    assert_int_equal(g_sc.handled, g_nstreams);
    assert_int_equal(g_sc.done, g_nstreams);
    assert_int_equal(g_sc.end[HTTP_END_OK], g_nstreams);
    assert_int_equal(g_sc.bad, 0);
    assert_int_equal(http_server_active(g_srv), 0);
    assert_int_equal(http_client_active(g_cli), 0);
    print_message("    %u streams, %zu bytes verified\n", g_nstreams, total);
    free(v);
}

/* (b) Clients cancel mid-stream: the server sees each one go and frees
 * its per-request state; the cancelled calls never report. */
static void
test_cancel_mid_stream(void **state)
{
    struct cli *v = calloc(N_CANCEL, sizeof(*v));
    unsigned i;
    unsigned want = N_CANCEL;

    (void)state;
    reset_counts();
    for (i = 0; i < N_CANCEL; i++) {
        v[i].cancel_after = 3 * 256; /* in the middle of the stream */
        assert_non_null(cli_start(&v[i], "/stream?n=100000&size=256&ms=3"));
    }
    run_until(done_count_reached, &want);
    for (i = 0; i < N_CANCEL; i++) {
        assert_true(v[i].cancelled);
        assert_int_equal(v[i].bad, 0);
    }
    assert_int_equal(g_cli_done_after_cancel, 0);
    assert_int_equal(g_cli_done, 0);
    assert_int_equal(g_sc.done, N_CANCEL);
    assert_int_equal(g_sc.end[HTTP_END_CLIENT_GONE] + g_sc.end[HTTP_END_ERROR],
                     N_CANCEL);
    assert_int_equal(g_sc.live, 0);
    assert_int_equal(http_server_active(g_srv), 0);
    assert_int_equal(http_client_active(g_cli), 0);
    print_message("    %u cancelled: %u client gone, %u error\n", N_CANCEL,
                  g_sc.end[HTTP_END_CLIENT_GONE], g_sc.end[HTTP_END_ERROR]);
    free(v);
}

static bool
hang_handled(void *arg)
{
    return g_hang_handled >= *(unsigned *)arg;
}

/* (c) A client leaves while the server is parked before answering: the
 * server notices without writing a byte. Once cancelled from the test,
 * N_HANG times from inside the server's own handler. */
static void
test_client_gone_while_suspended(void **state)
{
    struct cli c;
    struct cli *v = calloc(N_HANG, sizeof(*v));
    unsigned one = 1;
    unsigned want = 1;
    unsigned i;
    char target[64];

    (void)state;
    reset_counts();
    memset(&c, 0, sizeof(c));
    g_hang_handled = 0;
    g_hang_cancel_in_handler = false;
    assert_non_null(cli_start(&c, "/hang?k=0"));
    run_until(hang_handled, &one);
    assert_int_equal(http_server_active(g_srv), 1);
    http_call_cancel(c.call);
    c.call = NULL;
    run_until(done_count_reached, &want);
    assert_null(g_hang_reqs[0]);
    assert_int_equal(g_hang_end[0], HTTP_END_CLIENT_GONE);

    reset_counts();
    g_hang_handled = 0;
    g_hang_cancel_in_handler = true;
    want = N_HANG;
    for (i = 0; i < N_HANG; i++) {
        snprintf(target, sizeof(target), "/hang?k=%u", i);
        g_hang_calls[i] = cli_start(&v[i], target);
        assert_non_null(g_hang_calls[i]);
    }
    run_until(done_count_reached, &want);
    for (i = 0; i < N_HANG; i++) {
        assert_null(g_hang_reqs[i]);
        assert_int_equal(g_hang_end[i], HTTP_END_CLIENT_GONE);
        assert_false(v[i].done); /* cancelled: no on_done */
    }
    g_hang_cancel_in_handler = false;
    assert_int_equal(http_server_active(g_srv), 0);
    assert_int_equal(http_client_active(g_cli), 0);
    free(v);
}

/* (d) A body at max_body is delivered whole (NULs included); one byte
 * more and the handler sees too_large. */
static void
test_body_limit(void **state)
{
    size_t n = upload_len() + 1;
    char *body = malloc(n);
    struct cli c[2];
    struct cli_set set = {c, 2};
    size_t j;

    (void)state;
    reset_counts();
    for (j = 0; j < n; j++)
        body[j] = upload_byte(j);
    memset(c, 0, sizeof(c));
    assert_non_null(cli_start_on(g_cli, g_port, &c[0], "POST", "/upload", NULL,
                                 body, n - 1, true));
    assert_non_null(cli_start_on(g_cli, g_port, &c[1], "POST", "/upload", NULL,
                                 body, n, true));
    run_until(all_done, &set);
    assert_int_equal(c[0].err, 0);
    assert_int_equal(c[0].status, 200);
    assert_int_equal(c[1].err, 0);
    assert_int_equal(c[1].status, 413);
    assert_int_equal(g_sc.too_large, 1);
    assert_int_equal(g_sc.bad, 0);
    run_until(server_idle, NULL);
    free(body);
}

static bool
flag_set(void *arg)
{
    return *(bool *)arg;
}

/* (e) Listening off: new connects are refused while open connections
 * still work; on again: the same port accepts again. */
static void
test_listen_toggle(void **state)
{
    struct http_client *keep = http_client_new(&g_loop);
    struct http_client *fresh = http_client_new(&g_loop);
    struct cli c[4];
    struct cli_set set;
    bool keep_closed = false;
    bool fresh_closed = false;

    (void)state;
    reset_counts();
    memset(c, 0, sizeof(c));
    /* A connection opened before, kept alive. */
    set = (struct cli_set){&c[0], 1};
    cli_start_on(keep, g_port, &c[0], "GET", "/echo", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_equal(c[0].status, 200);

    assert_int_equal(http_server_listen(g_srv, false), 0);
    set = (struct cli_set){&c[1], 1};
    cli_start_on(fresh, g_port, &c[1], "GET", "/echo", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_equal(c[1].err, -ECONNREFUSED);

    set = (struct cli_set){&c[2], 1};
    cli_start_on(keep, g_port, &c[2], "GET", "/echo", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_equal(c[2].err, 0);
    assert_int_equal(c[2].status, 200);

    assert_int_equal(http_server_listen(g_srv, true), 0);
    assert_int_equal(http_server_listen(g_srv, true), 0); /* idempotent */
    assert_int_equal(http_server_port(g_srv), g_port);
    set = (struct cli_set){&c[3], 1};
    cli_start_on(fresh, g_port, &c[3], "GET", "/echo", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_equal(c[3].err, 0);
    assert_int_equal(c[3].status, 200);

    http_client_free(keep, on_flag_closed, &keep_closed);
    http_client_free(fresh, on_flag_closed, &fresh_closed);
    run_until(flag_set, &keep_closed);
    run_until(flag_set, &fresh_closed);
    run_until(server_idle, NULL);
}

static bool
bulk_blocked(void *arg)
{
    (void)arg;
    return g_bulk_client_paused != NULL && *g_bulk_client_paused &&
           g_bulk.blocked && g_bulk.r != NULL &&
           http_stream_queued(g_bulk.r) >= MAX_QUEUE - 3u * BULK_CHUNK;
}

/* (f) Backpressure: a paused client makes the server's queue fill up to
 * its cap; resumed, the drain callbacks fire and every byte arrives. */
static void
test_backpressure(void **state)
{
    struct cli c;
    struct cli_set set = {&c, 1};
    size_t got_when_paused;
    unsigned drains_when_paused;
    unsigned want = 1;

    (void)state;
    reset_counts();
    memset(&g_bulk, 0, sizeof(g_bulk));
    memset(&c, 0, sizeof(c));
    c.pause_first = true;
    g_bulk_client_paused = &c.paused;
    assert_non_null(cli_start(&c, "/bulk"));
    run_until(bulk_blocked, NULL);
    got_when_paused = c.got;
    drains_when_paused = g_bulk.drains;
    assert_true(c.paused);
    assert_true(got_when_paused < BULK_TOTAL);
    assert_true(g_bulk.max_queued > MAX_QUEUE - BULK_CHUNK);
    assert_true(http_stream_queued(g_bulk.r) <= MAX_QUEUE);
    print_message("    paused after %zu bytes; server queue %zu, %zu written\n",
                  got_when_paused, http_stream_queued(g_bulk.r), g_bulk.off);
    c.paused = false;
    http_call_resume(c.call);
    run_until(all_done, &set);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.got, BULK_TOTAL);
    assert_int_equal(c.bad, 0);
    assert_true(g_bulk.drains > drains_when_paused);
    run_until(done_count_reached, &want);
    assert_true(g_bulk.done);
    assert_int_equal(g_bulk.end, HTTP_END_OK);
    g_bulk_client_paused = NULL;
    print_message("    %u bytes after resume, %u drains\n", BULK_TOTAL,
                  g_bulk.drains);
}

/* http_call_pause() from outside a callback holds the bytes back until
 * http_call_resume(); none is lost or doubled. */
static struct cli g_pr;
static bool g_pr_paused;
static unsigned g_pr_data_while_paused;
static uv_timer_t g_pr_timer;

static void
pr_pause_now(uv_timer_t *t)
{
    (void)t;
    http_call_pause(g_pr.call);
    g_pr_paused = true;
}

static int
pr_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    if (g_pr_paused)
        g_pr_data_while_paused++;
    if (g_pr.got == 0) /* pause from a timer, outside the client */
        uv_timer_start(&g_pr_timer, pr_pause_now, 0, 0);
    return cli_on_data(call, p, n, ud);
}

static void
test_client_pause_resume(void **state)
{
    struct http_call_opts o;
    struct cli_set set = {&g_pr, 1};
    char url[128];
    char err[128];
    unsigned one = 1;

    (void)state;
    reset_counts();
    memset(&g_pr, 0, sizeof(g_pr));
    g_pr_paused = false;
    g_pr_data_while_paused = 0;
    uv_timer_init(&g_loop, &g_pr_timer);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/stream?n=50&size=100&ms=2",
             g_port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_data = pr_on_data;
    o.on_done = cli_on_done;
    o.ud = &g_pr;
    g_pr.call = http_call_start(g_cli, &o, err, sizeof(err));
    assert_non_null(g_pr.call);
    /* The server finishes while the client holds the rest back. */
    run_until(done_count_reached, &one);
    assert_int_equal(g_sc.end[HTTP_END_OK], 1);
    assert_true(g_pr_paused);
    assert_false(g_pr.done);
    assert_int_equal(g_pr_data_while_paused, 0);
    g_pr_paused = false;
    http_call_resume(g_pr.call);
    run_until(all_done, &set);
    assert_int_equal(g_pr.err, 0);
    assert_int_equal(g_pr.got, 5000);
    assert_int_equal(g_pr.bad, 0);
    uv_close((uv_handle_t *)&g_pr_timer, NULL);
}

/* http_stream_abort: the client sees a broken transfer after the bytes
 * already sent. */
static void
test_stream_abort(void **state)
{
    struct cli c;
    struct cli_set set = {&c, 1};
    unsigned want = 1;

    (void)state;
    reset_counts();
    memset(&c, 0, sizeof(c));
    assert_non_null(cli_start(&c, "/abort"));
    run_until(all_done, &set);
    assert_int_equal(c.err, -ECONNRESET);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.got, 1000);
    assert_int_equal(c.bad, 0);
    run_until(done_count_reached, &want);
    assert_int_equal(g_sc.end[HTTP_END_ERROR], 1);
}

/* The client's own caps: a body over max_body fails with -E2BIG. */
static void
test_client_body_cap(void **state)
{
    struct http_call_opts o;
    struct cli c;
    struct cli_set set = {&c, 1};
    char url[128];
    char err[128];

    (void)state;
    reset_counts();
    memset(&c, 0, sizeof(c));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/stream?n=10&size=100&ms=1",
             g_port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.max_body = 550;
    o.on_data = cli_on_data;
    o.on_done = cli_on_done;
    o.ud = &c;
    c.call = http_call_start(g_cli, &o, err, sizeof(err));
    assert_non_null(c.call);
    run_until(all_done, &set);
    assert_int_equal(c.err, -E2BIG);
    assert_true(c.got <= 550);
    assert_true(c.got >= 100);
    assert_int_equal(c.bad, 0);
    run_until(server_idle, NULL);
}

/* An IPv6 server reports "::1" as the peer (skipped without IPv6). */
static void
test_ipv6_peer(void **state)
{
    struct http_server_opts o;
    struct http_server *s6;
    struct http_call_opts co;
    struct cli c;
    struct cli_set set = {&c, 1};
    bool closed = false;
    char err[256];
    char url[128];

    (void)state;
    memset(&o, 0, sizeof(o));
    o.host = "::1";
    o.on_request = srv_on_request;
    s6 = http_server_new(&g_loop, &o, err, sizeof(err));
    if (s6 == NULL) {
        print_message("    no IPv6 here (%s): skipped\n", err);
        skip();
    }
    memset(&c, 0, sizeof(c));
    snprintf(url, sizeof(url), "http://[::1]:%u/echo", http_server_port(s6));
    memset(&co, 0, sizeof(co));
    co.url = url;
    co.on_done = cli_on_done;
    co.ud = &c;
    c.call = http_call_start(g_cli, &co, err, sizeof(err));
    assert_non_null(c.call);
    run_until(all_done, &set);
    assert_int_equal(c.err, 0);
    assert_string_equal(g_echo.peer, "::1");
    assert_string_equal(c.body, "::1");
    http_server_free(s6, on_flag_closed, &closed);
    run_until(flag_set, &closed);
}

static struct http_server *
aux_server(unsigned max_conns, size_t max_header)
{
    struct http_server_opts o;
    char err[256];
    struct http_server *s;

    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.max_conns = max_conns;
    o.max_header = max_header;
    o.on_request = srv_on_request;
    s = http_server_new(&g_loop, &o, err, sizeof(err));
    if (s == NULL)
        print_error("http_server_new: %s\n", err);
    return s;
}

/* The connection limit closes extra connections at once; request headers
 * over max_header get a 431 without reaching the handler. */
static void
test_server_limits(void **state)
{
    struct http_server *s2 = aux_server(1, 8192);
    unsigned port;
    struct cli c[3];
    struct cli_set set;
    char *big = malloc(40000);
    const char *hdrs[] = {big, NULL};
    unsigned one = 1;
    bool closed = false;

    (void)state;
    assert_non_null(s2);
    port = http_server_port(s2);
    reset_counts();
    g_hang_handled = 0;
    memset(c, 0, sizeof(c));
    cli_start_on(g_cli, port, &c[0], "GET", "/hang?k=0", NULL, NULL, 0, false);
    run_until(hang_handled, &one);
    set = (struct cli_set){&c[1], 1};
    cli_start_on(g_cli, port, &c[1], "GET", "/echo", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_equal(c[1].err, -ECONNRESET);
    assert_int_equal(g_sc.handled, 1);

    http_call_cancel(c[0].call);
    c[0].call = NULL;
    run_until(done_count_reached, &one);
    assert_int_equal(g_hang_end[0], HTTP_END_CLIENT_GONE);

    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'b', 40000 - 8);
    big[40000 - 1] = '\0';
    set = (struct cli_set){&c[2], 1};
    cli_start_on(g_cli, port, &c[2], "GET", "/echo", hdrs, NULL, 0, true);
    run_until(all_done, &set);
    /* The server answers 431 and closes with the rest of the header unread,
     * which resets the connection: the client may see either. */
    assert_true((c[2].err == 0 && c[2].status == 431) ||
                c[2].err == -ECONNRESET);
    assert_int_equal(g_sc.handled, 1); /* the handler never saw it */
    http_server_free(s2, on_flag_closed, &closed);
    run_until(flag_set, &closed);
    free(big);
}

/* Client-side limits: a total timeout, a header cap. */
static void
test_client_limits(void **state)
{
    struct http_call_opts o;
    struct cli c[2];
    struct cli_set set = {c, 2};
    char url[2][128];
    char err[128];
    unsigned one = 1;

    (void)state;
    reset_counts();
    g_hang_handled = 0;
    memset(c, 0, sizeof(c));
    snprintf(url[0], sizeof(url[0]), "http://127.0.0.1:%u/hang?k=0", g_port);
    memset(&o, 0, sizeof(o));
    o.url = url[0];
    o.total_timeout_ms = 100;
    o.on_done = cli_on_done;
    o.ud = &c[0];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    snprintf(url[1], sizeof(url[1]), "http://127.0.0.1:%u/echo", g_port);
    o.url = url[1];
    o.total_timeout_ms = 0;
    o.max_header = 64; /* smaller than any real response's */
    o.ud = &c[1];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(all_done, &set);
    assert_int_equal(c[0].err, -ETIMEDOUT);
    assert_int_equal(c[1].err, -E2BIG);
    run_until(done_count_reached, &one);
    assert_int_equal(g_hang_end[0], HTTP_END_CLIENT_GONE);
    run_until(server_idle, NULL);
}

/* Calls started from on_data (inside the client) and from on_done, and a call
 * cancelled from its own on_response. */
static struct cli g_re[4];

static int
re_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct cli *c = ud;

    if (c->got == 0) /* inside the client's read callback */
        cli_start(&g_re[1], "/echo");
    return cli_on_data(call, p, n, ud);
}

static void
re_on_done(struct http_call *call, int err, const char *msg, void *ud)
{
    cli_on_done(call, err, msg, ud);
    cli_start(&g_re[2], "/stream?n=2&size=10&ms=1");
}

static void
re_cancel_on_response(struct http_call *call, int status, void *ud)
{
    struct cli *c = ud;

    c->status = status;
    c->cancelled = true;
    c->call = NULL;
    http_call_cancel(call);
}

static void
test_client_reentrancy(void **state)
{
    struct http_call_opts o;
    struct cli_set set = {g_re, 4};
    char url[2][128];
    char err[128];
    unsigned want = 4;

    (void)state;
    reset_counts();
    memset(g_re, 0, sizeof(g_re));
    memset(&o, 0, sizeof(o));
    snprintf(url[0], sizeof(url[0]),
             "http://127.0.0.1:%u/stream?n=3&size=100&ms=1", g_port);
    o.url = url[0];
    o.on_data = re_on_data;
    o.on_done = re_on_done;
    o.ud = &g_re[0];
    g_re[0].call = http_call_start(g_cli, &o, err, sizeof(err));
    assert_non_null(g_re[0].call);
    snprintf(url[1], sizeof(url[1]),
             "http://127.0.0.1:%u/stream?n=100000&size=10&ms=5", g_port);
    o.url = url[1];
    o.on_response = re_cancel_on_response;
    o.on_data = cli_on_data;
    o.on_done = cli_on_done;
    o.ud = &g_re[3];
    g_re[3].call = http_call_start(g_cli, &o, err, sizeof(err));
    assert_non_null(g_re[3].call);
    run_until(all_done, &set);
    /* g_re[2] was started by g_re[0]'s on_done: wait for it too. */
    run_until(all_done, &set);
    assert_int_equal(g_re[0].err, 0);
    assert_int_equal(g_re[0].got, 300);
    assert_int_equal(g_re[1].err, 0);
    assert_int_equal(g_re[1].status, 200);
    assert_int_equal(g_re[2].err, 0);
    assert_int_equal(g_re[2].got, 20);
    assert_true(g_re[3].cancelled);
    assert_int_equal(g_re[3].status, 200);
    assert_int_equal(g_cli_done_after_cancel, 0);
    run_until(done_count_reached, &want);
    assert_int_equal(g_sc.end[HTTP_END_OK], 3);
    assert_int_equal(g_sc.end[HTTP_END_CLIENT_GONE], 1);
    assert_int_equal(http_client_active(g_cli), 0);
}

/* A client freed from an on_done, with another call still running: that
 * one is cancelled silently and the server sees the client go. */
static struct http_client *g_aux_cli;
static bool g_aux_cli_closed;

static void
free_client_on_done(struct http_call *call, int err, const char *msg, void *ud)
{
    cli_on_done(call, err, msg, ud);
    http_client_free(g_aux_cli, on_flag_closed, &g_aux_cli_closed);
    g_aux_cli = NULL;
}

/* A server freed from inside one of its handlers. */
static void
test_free_from_callbacks(void **state)
{
    struct http_call_opts o;
    struct cli c[3];
    char url[128];
    char err[128];
    unsigned one = 1;
    struct cli_set set;

    (void)state;
    reset_counts();
    g_hang_handled = 0;
    memset(c, 0, sizeof(c));
    g_aux_cli_closed = false;
    g_aux_cli = http_client_new(&g_loop);
    assert_non_null(g_aux_cli);
    cli_start_on(g_aux_cli, g_port, &c[0], "GET", "/hang?k=0", NULL, NULL, 0,
                 false);
    run_until(hang_handled, &one);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/echo", g_port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_done = free_client_on_done;
    o.ud = &c[1];
    assert_non_null(http_call_start(g_aux_cli, &o, err, sizeof(err)));
    run_until(flag_set, &g_aux_cli_closed);
    assert_true(c[1].done);
    assert_int_equal(c[1].status, 200);
    assert_false(c[0].done); /* cancelled by the free: no on_done */
    run_until(server_idle, NULL);
    assert_int_equal(g_hang_end[0], HTTP_END_CLIENT_GONE);

    reset_counts();
    g_aux_srv_closed = false;
    g_aux_srv = aux_server(0, 0);
    assert_non_null(g_aux_srv);
    set = (struct cli_set){&c[2], 1};
    cli_start_on(g_cli, http_server_port(g_aux_srv), &c[2], "GET",
                 "/free-server", NULL, NULL, 0, true);
    run_until(all_done, &set);
    assert_int_not_equal(c[2].err, 0);
    run_until(flag_set, &g_aux_srv_closed);
    assert_int_equal(g_sc.end[HTTP_END_SHUTDOWN], 1);
}

static bool g_srv_closed;
static bool g_cli_closed;

static void
on_srv_closed(void *ud)
{
    (void)ud;
    g_srv_closed = true;
}

static void
on_cli_closed(void *ud)
{
    (void)ud;
    g_cli_closed = true;
}

static bool
shutdown_ready(void *arg)
{
    (void)arg;
    return g_hang_handled >= 3 && g_sc.handled >= 5;
}

/* (g) Freeing the server ends what is open with SHUTDOWN; then the client
 * goes, and the loop is left with no handle at all. */
static void
test_shutdown_leaves_no_handle(void **state)
{
    struct cli c[5];
    struct cli_set set = {c, 5};
    unsigned i;
    char target[64];

    (void)state;
    reset_counts();
    g_hang_handled = 0;
    memset(c, 0, sizeof(c));
    for (i = 0; i < 3; i++) {
        snprintf(target, sizeof(target), "/hang?k=%u", i);
        assert_non_null(cli_start(&c[i], target));
    }
    assert_non_null(cli_start(&c[3], "/stream?n=100000&size=100&ms=2"));
    assert_non_null(cli_start(&c[4], "/stream?n=100000&size=100&ms=50"));
    run_until(shutdown_ready, NULL);
    assert_int_equal(http_server_active(g_srv), 5);

    http_server_free(g_srv, on_srv_closed, NULL);
    g_srv = NULL;
    assert_int_equal(g_sc.done, 5);
    assert_int_equal(g_sc.end[HTTP_END_SHUTDOWN], 5);
    run_until(all_done, &set);
    for (i = 0; i < 5; i++)
        assert_int_not_equal(c[i].err, 0);
    run_until(flag_set, &g_srv_closed);
    assert_int_equal(g_sc.live, 0);

    http_client_free(g_cli, on_cli_closed, NULL);
    g_cli = NULL;
    run_until(flag_set, &g_cli_closed);
    /* One more turn runs the watchdog's close callback; anything of ours
     * still open would make uv_loop_close() fail with UV_EBUSY. */
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_alive(&g_loop), 0);
    assert_int_equal(uv_loop_close(&g_loop), 0);
}

static void
raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < 2 * N_STREAMS + 200) {
        /* Each stream costs two fds here (client and server side). */
        g_nstreams = (unsigned)(rl.rlim_cur - 200) / 2;
        print_message("RLIMIT_NOFILE is %lu: %u streams instead of %u\n",
                      (unsigned long)rl.rlim_cur, g_nstreams, N_STREAMS);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_request_accessors),
        cmocka_unit_test(test_client_header_lookup),
        cmocka_unit_test(test_bind_conflict),
        cmocka_unit_test(test_concurrent_streams),
        cmocka_unit_test(test_cancel_mid_stream),
        cmocka_unit_test(test_client_gone_while_suspended),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_listen_toggle),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_client_pause_resume),
        cmocka_unit_test(test_stream_abort),
        cmocka_unit_test(test_client_body_cap),
        cmocka_unit_test(test_ipv6_peer),
        cmocka_unit_test(test_server_limits),
        cmocka_unit_test(test_client_limits),
        cmocka_unit_test(test_client_reentrancy),
        cmocka_unit_test(test_free_from_callbacks),
        cmocka_unit_test(test_shutdown_leaves_no_handle),
    };

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* HTTP_GLUE_DEBUG=1: the request trace. */
    if (getenv("HTTP_GLUE_DEBUG") != NULL) {
        log_init("test_http_glue", LL_DEBUG);
        log_tracing = TRACE_HTTP;
    }
    if (getenv("HTTP_GLUE_FILTER") != NULL)
        cmocka_set_test_filter(getenv("HTTP_GLUE_FILTER"));
    return cmocka_run_group_tests(tests, setup, NULL);
}
