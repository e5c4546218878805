/*
 * test_http_client.c - http_client.c against a raw libuv server in the
 * same process, on one loop.
 *
 * The server here is not an HTTP server: it reads a request, looks its
 * path up in a table of canned answers and writes the bytes it finds
 * there, whole, one byte per loop turn, or not at all, and may close or
 * reset the connection before or after. That is what lets these tests
 * count connections (keep-alive, the pool's cap, the retry on a reused
 * connection) and send what a real server would not (bad framing, 1xx,
 * stray bytes, several chunks in one read).
 *
 * As in test_http_glue.c, callbacks only record and the loop is the only
 * synchronisation: run_until() turns it until a condition holds, with a
 * watchdog that fails the test instead of hanging.
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
#include <strings.h>
#include <uv.h>

#include "herd/http_client.h"
#include "herd/log.h"

#define WATCHDOG_MS 30000u
#define N_POOL_TEST 300u /* concurrent calls: more than the pool keeps */
#define POOL_MAX    256u /* http_client.c's HC_POOL_MAX */

static uv_loop_t g_loop;
static uv_timer_t g_watchdog;
static bool g_watchdog_fired;

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

/* A few turns of the loop that do not wait: what is due happens. */
static void
spin(unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        uv_run(&g_loop, UV_RUN_NOWAIT);
}

static bool
flag_set(void *arg)
{
    return *(bool *)arg;
}

static char
pat(size_t k)
{
    static const char t[] = "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

    return t[((uint64_t)k * 2654435761u >> 11) % 64u];
}

/* --- the raw server --------------------------------------------------------
 */

#define RS_CLOSE_AFTER  0x01u /* close once the answer is written */
#define RS_DRIP         0x02u /* one byte per loop turn */
#define RS_SILENT       0x04u /* never answer */
#define RS_CLOSE_NOW    0x08u /* close without answering */
#define RS_RESET_NOW    0x10u /* reset without answering */
#define RS_DIE_REUSED   0x20u /* a 2nd request on a connection: close it */
#define RS_RESET_REUSED 0x40u /* ... or reset it */

struct canned {
    const char *path;
    const char *resp; /* NULL: built at run time (resp_buf) */
    unsigned flags;
};

static char g_big_close[64 + 3000]; /* /close: close-delimited, 3000 bytes */
static char g_chunks10[2048];       /* /chunks10: 10 chunks in one write */
static char g_chunks_body[1000];    /* what /chunks10 carries */
static char g_bighdr[1024];         /* /bighdr */

static const struct canned g_canned[] = {
    {"/ok", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Seen: yes\r\n\r\nok", 0},
    {"/okjunk", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk", 0},
    {"/ok-close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     RS_CLOSE_AFTER},
    {"/conn-close",
     "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/http10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    {"/http10ka",
     "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
     0},
    {"/chunked",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
     "Transfer-Encoding: chunked\r\n\r\n"
     "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE; a=\"b;c\"\r\n in\r\n\r\nchunks.\r\n"
     "000\r\nX-Trailer: yes\r\n\r\n",
     0},
    {"/drip",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
     "Transfer-Encoding: chunked\r\n\r\n"
     "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE; a=\"b;c\"\r\n in\r\n\r\nchunks.\r\n"
     "000\r\nX-Trailer: yes\r\n\r\n",
     RS_DRIP},
    {"/close", NULL, RS_CLOSE_AFTER},
    {"/chunks10", NULL, 0},
    {"/bighdr", NULL, 0},
    {"/head", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0},
    {"/204", "HTTP/1.1 204 No Content\r\n\r\n", 0},
    {"/304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 0},
    {"/1xx",
     "HTTP/1.1 100 Continue\r\n\r\n"
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
     "HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok",
     0},
    {"/len100", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 0},
    {"/short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
     RS_CLOSE_AFTER},
    {"/halfhead", "HTTP/1.1 200 OK\r\nContent-Le", RS_CLOSE_AFTER},
    {"/silent", "", RS_SILENT},
    {"/closenow", "", RS_CLOSE_NOW},
    {"/resetnow", "", RS_RESET_NOW},
    {"/diereused", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     RS_DIE_REUSED},
    {"/resetreused", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     RS_RESET_REUSED},
    {"/partreused", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    /* -EPROTO, one way each */
    {"/bad/status", "HTTP/1.1 2x0 OK\r\n\r\n", 0},
    {"/bad/nothttp", "SSH-2.0-OpenSSH_9.2\r\n\r\n", 0},
    {"/bad/cl", "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", 0},
    {"/bad/cl2",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 0},
    {"/bad/line", "HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", 0},
    {"/bad/chunksize",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0},
    {"/bad/chunkdata",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 0},
    {"/bad/101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0},
    {"/bad/http2", "HTTP/2 200\r\n\r\n", 0},
};

struct rconn {
    uv_tcp_t tcp;
    struct rconn *prev, *next; /* g_rs.conns */
    uv_idle_t drip;            /* one byte per loop turn */
    unsigned id;               /* 1-based, in accept order */
    unsigned nreq;             /* requests seen on it */
    char in[70000];
    size_t in_len;
    char *drip_buf;
    size_t drip_len, drip_off;
    unsigned drip_flags;
    int handles; /* tcp and drip, until both closed */
    bool closing;
};

struct rsrv {
    uv_tcp_t tcp;
    unsigned port;
    unsigned accepted;
    unsigned requests;
    unsigned peer_closed; /* the client closed (EOF or error) */
    unsigned live;        /* connections not yet freed */
    struct rconn *conns;  /* not yet freed */
    bool closed;          /* the listener's close callback ran */
    char last_req[8192];
    size_t last_req_len;
    unsigned last_conn; /* id of the connection of the last request */
};

static struct rsrv g_rs;

struct rs_write {
    uv_write_t w;
    struct rconn *rc;
    unsigned flags;
    char data[];
};

static void
rs_conn_closed(uv_handle_t *h)
{
    struct rconn *rc = h->data;

    if (--rc->handles == 0) {
        if (rc->prev != NULL)
            rc->prev->next = rc->next;
        else
            g_rs.conns = rc->next;
        if (rc->next != NULL)
            rc->next->prev = rc->prev;
        free(rc->drip_buf);
        free(rc);
        g_rs.live--;
    }
}

static void
rs_close(struct rconn *rc, bool reset)
{
    if (rc->closing)
        return;
    rc->closing = true;
    uv_close((uv_handle_t *)&rc->drip, rs_conn_closed);
    if (reset)
        uv_tcp_close_reset(&rc->tcp, rs_conn_closed);
    else
        uv_close((uv_handle_t *)&rc->tcp, rs_conn_closed);
}

static void
rs_on_written(uv_write_t *w, int status)
{
    struct rs_write *rw = (struct rs_write *)w;

    if (status == 0 && (rw->flags & RS_CLOSE_AFTER))
        rs_close(rw->rc, false);
    free(rw);
}

static void
rs_write(struct rconn *rc, const char *p, size_t n, unsigned flags)
{
    struct rs_write *rw = malloc(sizeof(*rw) + (n > 0 ? n : 1));
    uv_buf_t b;

    memcpy(rw->data, p, n);
    rw->rc = rc;
    rw->flags = flags;
    b = uv_buf_init(rw->data, (unsigned)n);
    if (uv_write(&rw->w, (uv_stream_t *)&rc->tcp, &b, 1, rs_on_written) != 0)
        free(rw);
}

/* An idle handle runs once a loop turn, and the client reads in the
 * poll phase between two turns: each byte is a read of its own. */
static void
rs_drip_tick(uv_idle_t *h)
{
    struct rconn *rc = h->data;

    if (rc->closing || rc->drip_off == rc->drip_len) {
        uv_idle_stop(h);
        return;
    }
    rs_write(rc, rc->drip_buf + rc->drip_off, 1,
             rc->drip_off + 1 == rc->drip_len ? rc->drip_flags : 0);
    rc->drip_off++;
}

static const struct canned *
rs_find(const char *path, size_t n)
{
    for (size_t i = 0; i < sizeof(g_canned) / sizeof(g_canned[0]); i++) {
        if (strlen(g_canned[i].path) == n &&
            memcmp(g_canned[i].path, path, n) == 0)
            return &g_canned[i];
    }
    return NULL;
}

static const char *
rs_body_of(const struct canned *k, size_t *n)
{
    const char *r = k->resp;

    if (r == NULL && strcmp(k->path, "/close") == 0)
        r = g_big_close;
    else if (r == NULL && strcmp(k->path, "/chunks10") == 0)
        r = g_chunks10;
    else if (r == NULL)
        r = g_bighdr;
    *n = strlen(r);
    return r;
}

/* One whole request (head and body) at the start of rc->in. */
static void
rs_request(struct rconn *rc, size_t len)
{
    const char *sp = memchr(rc->in, ' ', len), *end;
    const struct canned *k = NULL;
    const char *resp;
    size_t n;

    rc->nreq++;
    g_rs.requests++;
    g_rs.last_conn = rc->id;
    g_rs.last_req_len =
        len < sizeof(g_rs.last_req) - 1 ? len : sizeof(g_rs.last_req) - 1;
    memcpy(g_rs.last_req, rc->in, g_rs.last_req_len);
    g_rs.last_req[g_rs.last_req_len] = '\0';
    if (sp != NULL) {
        end = sp + 1 + strcspn(sp + 1, " ?");
        k = rs_find(sp + 1, (size_t)(end - sp - 1));
    }
    if (k == NULL) {
        rs_write(rc, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 45,
                 0);
        return;
    }
    if ((k->flags & (RS_DIE_REUSED | RS_RESET_REUSED)) && rc->nreq >= 2) {
        rs_close(rc, (k->flags & RS_RESET_REUSED) != 0);
        return;
    }
    if (k->flags & (RS_CLOSE_NOW | RS_RESET_NOW)) {
        rs_close(rc, (k->flags & RS_RESET_NOW) != 0);
        return;
    }
    if (k->flags & RS_SILENT)
        return;
    resp = rs_body_of(k, &n);
    if (k->flags & RS_DRIP) {
        free(rc->drip_buf);
        rc->drip_buf = malloc(n);
        memcpy(rc->drip_buf, resp, n);
        rc->drip_len = n;
        rc->drip_off = 0;
        rc->drip_flags = k->flags & RS_CLOSE_AFTER;
        uv_idle_start(&rc->drip, rs_drip_tick);
        return;
    }
    rs_write(rc, resp, n, k->flags & RS_CLOSE_AFTER);
}

/* Length of the request at the start of in, or 0 while incomplete. */
static size_t
rs_request_len(const char *in, size_t n)
{
    const char *e = NULL, *cl;
    size_t head, body = 0;

    for (size_t i = 3; i < n && e == NULL; i++) {
        if (memcmp(in + i - 3, "\r\n\r\n", 4) == 0)
            e = in + i + 1;
    }
    if (e == NULL)
        return 0;
    head = (size_t)(e - in);
    for (cl = in; cl < e - 16; cl++) {
        if (strncasecmp(cl, "\r\nContent-Length:", 17) == 0) {
            body = strtoul(cl + 17, NULL, 10);
            break;
        }
    }
    return n >= head + body ? head + body : 0;
}

static void
rs_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct rconn *rc = h->data;

    (void)hint;
    *b = uv_buf_init(rc->in + rc->in_len,
                     (unsigned)(sizeof(rc->in) - rc->in_len));
}

static void
rs_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct rconn *rc = s->data;
    size_t len;

    (void)b;
    if (nread < 0) {
        g_rs.peer_closed++;
        rs_close(rc, false);
        return;
    }
    rc->in_len += (size_t)nread;
    while (!rc->closing && (len = rs_request_len(rc->in, rc->in_len)) > 0) {
        rs_request(rc, len);
        memmove(rc->in, rc->in + len, rc->in_len - len);
        rc->in_len -= len;
    }
}

static void
rs_on_conn(uv_stream_t *server, int status)
{
    struct rconn *rc;

    assert_int_equal(status, 0);
    rc = calloc(1, sizeof(*rc));
    uv_tcp_init(&g_loop, &rc->tcp);
    uv_idle_init(&g_loop, &rc->drip);
    rc->tcp.data = rc;
    rc->drip.data = rc;
    rc->handles = 2;
    rc->id = ++g_rs.accepted;
    g_rs.live++;
    rc->next = g_rs.conns;
    if (g_rs.conns != NULL)
        g_rs.conns->prev = rc;
    g_rs.conns = rc;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&rc->tcp), 0);
    uv_tcp_nodelay(&rc->tcp, 1);
    uv_read_start((uv_stream_t *)&rc->tcp, rs_alloc, rs_on_read);
}

static void
rs_start(void)
{
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    memset(&g_rs, 0, sizeof(g_rs));
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&g_loop, &g_rs.tcp);
    assert_int_equal(uv_tcp_bind(&g_rs.tcp, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&g_rs.tcp, 1024, rs_on_conn), 0);
    uv_tcp_getsockname(&g_rs.tcp, (struct sockaddr *)&ss, &len);
    g_rs.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void
rs_listener_closed(uv_handle_t *h)
{
    (void)h;
    g_rs.closed = true;
}

static bool
rs_gone(void *arg)
{
    (void)arg;
    return g_rs.closed && g_rs.live == 0;
}

/* Closes the listener and every server connection. */
static void
rs_stop(void)
{
    uv_close((uv_handle_t *)&g_rs.tcp, rs_listener_closed);
    for (struct rconn *rc = g_rs.conns; rc != NULL; rc = rc->next)
        rs_close(rc, false);
    run_until(rs_gone, NULL);
}

/* --- the client side ---------------------------------------------------------
 */

struct res {
    struct http_call *call;
    unsigned n_response;
    unsigned n_data;
    unsigned n_done;
    int status;
    int err;
    char msg[256];
    char body[4096];
    size_t len;
    char hdr[64]; /* the header named by want_hdr, at on_response */
    const char *want_hdr;
    bool pause_each; /* on_data returns HTTP_CALL_PAUSE */
    bool paused;
    unsigned data_while_paused;
    bool cancel_in_data;
    bool pause_in_response;
    struct http_client *free_in_data; /* http_client_free from on_data */
    bool *free_flag;
    void (*then)(struct res *r); /* from on_done */
};

static struct http_client *g_cli;
static bool g_in_resume; /* on_data must never run inside http_call_resume */
static unsigned g_data_in_resume;

static void
on_flag_closed(void *ud)
{
    *(bool *)ud = true;
}

static void
r_on_response(struct http_call *call, int status, void *ud)
{
    struct res *r = ud;
    const char *v;

    r->n_response++;
    r->status = status;
    if (r->want_hdr != NULL) {
        v = http_call_header(call, r->want_hdr);
        snprintf(r->hdr, sizeof(r->hdr), "%s", v != NULL ? v : "(null)");
    }
    if (r->pause_in_response) {
        r->paused = true;
        http_call_pause(call);
    }
}

static int
r_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct res *r = ud;

    r->n_data++;
    if (g_in_resume)
        g_data_in_resume++;
    if (r->paused)
        r->data_while_paused++;
    if (r->len + n <= sizeof(r->body)) {
        memcpy(r->body + r->len, p, n);
    }
    r->len += n;
    if (r->free_in_data != NULL) {
        http_client_free(r->free_in_data, on_flag_closed, r->free_flag);
        r->free_in_data = NULL;
        return 0;
    }
    if (r->cancel_in_data) {
        http_call_cancel(call);
        r->call = NULL;
        return 0;
    }
    if (r->pause_each) {
        r->paused = true;
        return HTTP_CALL_PAUSE;
    }
    return 0;
}

static void
r_on_done(struct http_call *call, int err, const char *msg, void *ud)
{
    struct res *r = ud;
    size_t n;
    const char *b = http_call_body(call, &n);

    r->n_done++;
    r->err = err;
    r->status = http_call_status(call);
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    if (n > 0 && n <= sizeof(r->body)) {
        memcpy(r->body, b, n);
        r->len = n;
    }
    r->call = NULL;
    /* Cancelling from inside its own on_done is a no-op. */
    http_call_cancel(call);
    if (r->then != NULL)
        r->then(r);
}

static bool
res_done(void *arg)
{
    return ((struct res *)arg)->n_done > 0;
}

static struct http_call *
r_start_on(struct http_client *cli, struct res *r, const char *method,
           const char *path, bool buffered)
{
    struct http_call_opts o;
    char url[256], err[256];

    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", g_rs.port, path);
    memset(&o, 0, sizeof(o));
    o.method = method;
    o.url = url;
    o.connect_timeout_ms = 10000;
    o.on_response = r_on_response;
    o.on_data = buffered ? NULL : r_on_data;
    o.on_done = r_on_done;
    o.ud = r;
    r->call = http_call_start(cli, &o, err, sizeof(err));
    if (r->call == NULL)
        print_error("http_call_start %s: %s\n", url, err);
    return r->call;
}

static struct http_call *
r_start(struct res *r, const char *path)
{
    return r_start_on(g_cli, r, "GET", path, false);
}

/* One call, driven to its end. */
static void
r_run(struct res *r, const char *path)
{
    assert_non_null(r_start(r, path));
    run_until(res_done, r);
}

static void
body_is(const struct res *r, const char *want)
{
    assert_int_equal(r->len, strlen(want));
    assert_memory_equal(r->body, want, r->len);
}

/* --- fixture ----------------------------------------------------------------
 */

static int
setup(void **state)
{
    (void)state;
    rs_start();
    g_cli = http_client_new(&g_loop);
    return g_cli != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    bool closed = false;

    (void)state;
    http_client_free(g_cli, on_flag_closed, &closed);
    g_cli = NULL;
    run_until(flag_set, &closed);
    rs_stop();
    return 0;
}

/* --- tests ------------------------------------------------------------------
 */

/* The request on the wire: our headers, the caller's minus ours and
 * curl's "Expect:" idiom, Content-Length when there is (or may be) a
 * body, the body; and all of it on one kept-alive connection. */
static void
test_request_bytes(void **state)
{
    static const char *const hdrs[] = {"X-One: 1",
                                       "Host: evil.example",
                                       "Connection: close",
                                       "Content-Length: 99",
                                       "transfer-encoding: chunked",
                                       "Expect:",
                                       "X-Two:  two  ",
                                       NULL};
    struct http_call_opts o;
    struct res r[3];
    char url[256], err[256], want[512];

    (void)state;
    memset(r, 0, sizeof(r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/ok?x=1&y=2#frag",
             g_rs.port);
    memset(&o, 0, sizeof(o));
    o.method = "POST";
    o.url = url;
    o.headers = hdrs;
    o.body = "hel\0o";
    o.body_len = 5;
    o.on_done = r_on_done;
    o.ud = &r[0];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(res_done, &r[0]);
    assert_int_equal(r[0].err, 0);
    assert_int_equal(r[0].status, 200);
    body_is(&r[0], "ok");
    snprintf(want, sizeof(want),
             "POST /ok?x=1&y=2 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Length: 5\r\nX-One: 1\r\nX-Two:  two  \r\n\r\nhel",
             g_rs.port);
    assert_int_equal(g_rs.last_req_len, strlen(want) + 2);
    assert_memory_equal(g_rs.last_req, want, strlen(want));
    assert_memory_equal(g_rs.last_req + strlen(want), "\0o", 2);

    /* No path: "/"; GET: no Content-Length. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", g_rs.port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_done = r_on_done;
    o.ud = &r[1];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(res_done, &r[1]);
    assert_int_equal(r[1].status, 404);
    snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n",
             g_rs.port);
    assert_string_equal(g_rs.last_req, want);

    /* A PUT without a body still says Content-Length: 0. */
    assert_non_null(r_start_on(g_cli, &r[2], "PUT", "/ok", true));
    run_until(res_done, &r[2]);
    assert_int_equal(r[2].err, 0);
    body_is(&r[2], "ok");
    snprintf(want, sizeof(want),
             "PUT /ok HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Length: 0\r\n\r\n",
             g_rs.port);
    assert_string_equal(g_rs.last_req, want);
    assert_int_equal(g_rs.accepted, 1);
    assert_int_equal(g_rs.requests, 3);
}

/* What http_call_start refuses, synchronously, with a reason. */
static void
test_start_refusals(void **state)
{
    static const char *const bad_hdr[] = {"NoColon", NULL};
    static const char *const crlf_hdr[] = {"X-A: 1\r\nX-B: 2", NULL};
    struct http_call_opts o;
    struct res r;
    char err[256];

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&o, 0, sizeof(o));
    o.on_done = r_on_done;
    o.ud = &r;
    o.url = "https://127.0.0.1:1/x";
    err[0] = '\0';
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "https"));
    assert_non_null(strstr(err, "not supported"));
    o.url = "ftp://127.0.0.1/x";
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "scheme"));
    o.url = "http://user:pw@127.0.0.1/x";
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.url = "http://127.0.0.1:99999/x";
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.url = "http://[::1/x";
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.url = "http://127.0.0.1:1/x";
    o.headers = bad_hdr;
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.headers = crlf_hdr;
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.headers = NULL;
    o.method = "GE T";
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    o.method = NULL;
    o.on_done = NULL;
    assert_null(http_call_start(g_cli, &o, err, sizeof(err)));
    spin(5);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(http_client_active(g_cli), 0);
}

/* N sequential calls, each started from the previous one's on_done (the
 * connection is back in the pool by then), then more from the test:
 * one connection serves them all. */
static unsigned g_chain_left;
static struct res g_chain[21];

static void
chain_next(struct res *r)
{
    struct res *n = r + 1;

    assert_int_equal(r->err, 0);
    if (g_chain_left == 0)
        return;
    g_chain_left--;
    n->then = chain_next;
    assert_non_null(r_start(n, "/ok"));
}

static void
test_keepalive_reuse(void **state)
{
    struct res r[5];

    (void)state;
    memset(g_chain, 0, sizeof(g_chain));
    memset(r, 0, sizeof(r));
    g_chain_left = 20;
    g_chain[0].then = chain_next;
    assert_non_null(r_start(&g_chain[0], "/ok"));
    run_until(res_done, &g_chain[20]);
    for (unsigned i = 0; i <= 20; i++) {
        assert_int_equal(g_chain[i].err, 0);
        body_is(&g_chain[i], "ok");
    }
    for (unsigned i = 0; i < 5; i++) {
        r_run(&r[i], "/chunked");
        assert_int_equal(r[i].err, 0);
        body_is(&r[i], "Wikipedia in\r\n\r\nchunks.");
    }
    assert_int_equal(g_rs.requests, 26);
    assert_int_equal(g_rs.accepted, 1);
    assert_int_equal(g_rs.peer_closed, 0);
}

static bool
requests_at_least(void *arg)
{
    return g_rs.requests >= *(unsigned *)arg;
}

static bool
peer_closed_at_least(void *arg)
{
    return g_rs.peer_closed >= *(unsigned *)arg;
}

/* More connections than the pool keeps: the extra ones are closed when
 * their responses end; the ones kept serve the next calls. */
static void
test_pool_cap(void **state)
{
    struct res *r = calloc(N_POOL_TEST, sizeof(*r));
    struct res again[10];
    unsigned extra = N_POOL_TEST - POOL_MAX;

    (void)state;
    memset(again, 0, sizeof(again));
    for (unsigned i = 0; i < N_POOL_TEST; i++)
        assert_non_null(r_start(&r[i], "/ok"));
    for (unsigned i = 0; i < N_POOL_TEST; i++) {
        run_until(res_done, &r[i]);
        assert_int_equal(r[i].err, 0);
    }
    assert_int_equal(g_rs.accepted, N_POOL_TEST);
    run_until(peer_closed_at_least, &extra);
    spin(20);
    assert_int_equal(g_rs.peer_closed, extra);
    for (unsigned i = 0; i < 10; i++) {
        r_run(&again[i], "/ok");
        assert_int_equal(again[i].err, 0);
    }
    assert_int_equal(g_rs.accepted, N_POOL_TEST);
    free(r);
}

/* Connections that must not be kept: Connection: close, HTTP/1.0
 * without keep-alive, a close-delimited body, stray bytes after the
 * response. And HTTP/1.0 with keep-alive, which may. */
static void
test_not_kept(void **state)
{
    static const struct {
        const char *path;
        const char *body;
        unsigned conns; /* accepted after this call */
    } steps[] = {
        {"/conn-close", "ok", 1}, {"/ok", "ok", 2},     {"/http10", "ok", 2},
        {"/ok", "ok", 3},         {"/okjunk", "ok", 3}, {"/ok", "ok", 4},
        {"/http10ka", "ok", 4},   {"/ok", "ok", 4},
    };
    struct res r;

    (void)state;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        memset(&r, 0, sizeof(r));
        r_run(&r, steps[i].path);
        assert_int_equal(r.err, 0);
        body_is(&r, steps[i].body);
        assert_int_equal(g_rs.accepted, steps[i].conns);
    }
}

/* A close-delimited body of 3000 bytes: complete at EOF. */
static void
test_close_delimited(void **state)
{
    struct res r, r2;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    r_run(&r, "/close");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 3000);
    for (size_t i = 0; i < 3000; i++)
        assert_int_equal(r.body[i], pat(i));
    r_run(&r2, "/ok");
    assert_int_equal(r2.err, 0);
    assert_int_equal(g_rs.accepted, 2);
}

/* A chunked answer (extensions, a quoted ';', upper-case hex, leading
 * zeros, a trailer) written one byte per loop turn, so every byte
 * boundary is a read boundary; the connection serves the next call. */
static void
test_chunked_dribble(void **state)
{
    struct res r[2];

    (void)state;
    memset(r, 0, sizeof(r));
    r[0].want_hdr = "CONTENT-TYPE";
    r_run(&r[0], "/drip");
    assert_int_equal(r[0].err, 0);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].n_response, 1);
    assert_string_equal(r[0].hdr, "text/plain");
    body_is(&r[0], "Wikipedia in\r\n\r\nchunks.");
    assert_true(r[0].n_data >= 20); /* it did arrive in pieces */
    print_message("    the body came in %u pieces\n", r[0].n_data);
    r[1].want_hdr = "x-trailer"; /* trailers are not headers */
    r_run(&r[1], "/drip");
    assert_int_equal(r[1].err, 0);
    assert_string_equal(r[1].hdr, "(null)");
    body_is(&r[1], "Wikipedia in\r\n\r\nchunks.");
    assert_int_equal(g_rs.accepted, 1);
}

static bool
res_paused(void *arg)
{
    struct res *r = arg;

    return r->paused || r->n_done > 0;
}

/* Ten chunks in one read; on_data pauses at each. What the pause held
 * back comes after http_call_resume, from the loop (never from inside
 * resume), in order, exactly once; on_done only after the last resume. */
static void
test_pause_held_chunks(void **state)
{
    struct res r, r2;
    unsigned rounds = 0;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    g_data_in_resume = 0;
    r.pause_each = true;
    assert_non_null(r_start(&r, "/chunks10"));
    for (;;) {
        run_until(res_paused, &r);
        if (r.n_done > 0)
            break;
        spin(5); /* nothing flows while paused */
        assert_int_equal(r.data_while_paused, 0);
        assert_int_equal(r.n_data, rounds + 1);
        rounds++;
        r.paused = false;
        g_in_resume = true;
        http_call_resume(r.call);
        http_call_resume(r.call); /* idempotent */
        g_in_resume = false;
    }
    assert_int_equal(g_data_in_resume, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n_data, 10);
    assert_int_equal(rounds, 10); /* the last resume lets on_done come */
    assert_int_equal(r.len, sizeof(g_chunks_body));
    assert_memory_equal(r.body, g_chunks_body, sizeof(g_chunks_body));

    /* Paused from on_response: the whole body waits, then comes. */
    r2.pause_in_response = true;
    assert_non_null(r_start(&r2, "/chunks10"));
    run_until(res_paused, &r2);
    spin(5);
    assert_int_equal(r2.n_data, 0);
    assert_int_equal(r2.n_done, 0);
    r2.paused = false;
    http_call_resume(r2.call);
    assert_int_equal(r2.n_data, 0);
    run_until(res_done, &r2);
    assert_int_equal(r2.err, 0);
    assert_int_equal(r2.len, sizeof(g_chunks_body));
    assert_memory_equal(r2.body, g_chunks_body, sizeof(g_chunks_body));
    assert_int_equal(g_rs.accepted, 1);
}

/* A call cancelled from its own on_data: nothing more arrives, no
 * on_done, the connection is closed (not kept with half a response). */
static void
test_cancel_in_on_data(void **state)
{
    struct res r, r2;
    unsigned one = 1;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    r.cancel_in_data = true;
    assert_non_null(r_start(&r, "/chunks10"));
    run_until(peer_closed_at_least, &one);
    spin(5);
    assert_int_equal(r.n_data, 1);
    assert_int_equal(r.n_done, 0);
    assert_int_equal(http_client_active(g_cli), 0);
    r_run(&r2, "/ok");
    assert_int_equal(r2.err, 0);
    assert_int_equal(g_rs.accepted, 2);
}

/* The server closes an idle kept-alive connection: the next call still
 * succeeds (the close is noticed, or the request is sent again). */
static void
test_server_closes_idle(void **state)
{
    struct res r[3];

    (void)state;
    memset(r, 0, sizeof(r));
    r_run(&r[0], "/ok-close");
    assert_int_equal(r[0].err, 0);
    r_run(&r[1], "/ok");
    assert_int_equal(r[1].err, 0);
    body_is(&r[1], "ok");
    assert_int_equal(g_rs.accepted, 2);
}

/* The server closes (or resets) a reused connection when the request
 * arrives, without a byte of answer: sent again, once, on a new one. */
static void
test_retry_on_reused(void **state)
{
    struct res r[4];

    (void)state;
    memset(r, 0, sizeof(r));
    r_run(&r[0], "/diereused");
    assert_int_equal(r[0].err, 0);
    r_run(&r[1], "/diereused");
    assert_int_equal(r[1].err, 0);
    body_is(&r[1], "ok");
    assert_int_equal(g_rs.accepted, 2);
    assert_int_equal(g_rs.requests, 3);
    assert_int_equal(g_rs.last_conn, 2);

    r_run(&r[2], "/resetreused"); /* on connection 2, its 2nd request */
    assert_int_equal(r[2].err, 0);
    body_is(&r[2], "ok");
    assert_int_equal(g_rs.accepted, 3);
    assert_int_equal(g_rs.requests, 5);
}

/* No retry on a new connection, nor once the answer began. */
static void
test_no_retry(void **state)
{
    struct res r[5];

    (void)state;
    memset(r, 0, sizeof(r));
    r_run(&r[0], "/closenow");
    assert_int_equal(r[0].err, -ECONNRESET);
    assert_int_equal(g_rs.accepted, 1);
    assert_int_equal(g_rs.requests, 1);
    r_run(&r[1], "/resetnow");
    assert_int_equal(r[1].err, -ECONNRESET);
    assert_int_equal(g_rs.accepted, 2);
    r_run(&r[2], "/ok");
    assert_int_equal(r[2].err, 0);
    r_run(&r[3], "/halfhead"); /* reused, then half a head and a close */
    assert_int_equal(r[3].err, -ECONNRESET);
    assert_int_equal(g_rs.accepted, 3);
    r_run(&r[4], "/short"); /* 3 of 10 body bytes */
    assert_int_equal(r[4].err, -ECONNRESET);
    assert_int_equal(r[4].status, 200);
    body_is(&r[4], "abc");
}

/* HEAD: no body, whatever Content-Length says; 204 and 304 neither. The
 * connection goes on serving. */
static void
test_no_body_answers(void **state)
{
    struct res r[4];

    (void)state;
    memset(r, 0, sizeof(r));
    assert_non_null(r_start_on(g_cli, &r[0], "HEAD", "/head", false));
    run_until(res_done, &r[0]);
    assert_int_equal(r[0].err, 0);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].n_data, 0);
    r_run(&r[1], "/204");
    assert_int_equal(r[1].err, 0);
    assert_int_equal(r[1].status, 204);
    r_run(&r[2], "/304");
    assert_int_equal(r[2].err, 0);
    assert_int_equal(r[2].status, 304);
    assert_int_equal(r[2].n_data, 0);
    r_run(&r[3], "/ok");
    assert_int_equal(r[3].err, 0);
    body_is(&r[3], "ok");
    assert_int_equal(g_rs.accepted, 1);
}

/* 100 and 103 are skipped: one on_response, for the 200, with its own
 * headers only. */
static void
test_interim(void **state)
{
    struct res r, r2;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    r.want_hdr = "x-final";
    r_run(&r, "/1xx");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.n_response, 1);
    assert_string_equal(r.hdr, "1");
    body_is(&r, "ok");
    r2.want_hdr = "link";
    r_run(&r2, "/1xx");
    assert_string_equal(r2.hdr, "(null)");
}

/* max_header and max_body: -E2BIG. */
static void
test_caps(void **state)
{
    struct http_call_opts o;
    struct res r[4];
    char url[4][256], err[256];

    (void)state;
    memset(r, 0, sizeof(r));
    memset(&o, 0, sizeof(o));
    o.on_data = r_on_data;
    o.on_done = r_on_done;
    snprintf(url[0], sizeof(url[0]), "http://127.0.0.1:%u/bighdr", g_rs.port);
    o.url = url[0];
    o.max_header = 512;
    o.ud = &r[0];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    snprintf(url[1], sizeof(url[1]), "http://127.0.0.1:%u/len100", g_rs.port);
    o.url = url[1];
    o.max_header = 0;
    o.max_body = 99;
    o.ud = &r[1];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    snprintf(url[2], sizeof(url[2]), "http://127.0.0.1:%u/chunks10", g_rs.port);
    o.url = url[2];
    o.max_body = 550;
    o.ud = &r[2];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    snprintf(url[3], sizeof(url[3]), "http://127.0.0.1:%u/chunks10", g_rs.port);
    o.url = url[3];
    o.max_body = 1000; /* exactly the body: fine */
    o.on_data = NULL;
    o.ud = &r[3];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    for (int i = 0; i < 4; i++)
        run_until(res_done, &r[i]);
    assert_int_equal(r[0].err, -E2BIG);
    assert_int_equal(r[1].err, -E2BIG);
    assert_int_equal(r[2].err, -E2BIG);
    assert_true(r[2].len <= 550);
    assert_int_equal(r[3].err, 0);
    assert_int_equal(r[3].len, 1000);
    assert_memory_equal(r[3].body, g_chunks_body, 1000);
}

/* Bad framing of every kind: -EPROTO. */
static void
test_bad_framing(void **state)
{
    static const char *const paths[] = {
        "/bad/status",    "/bad/nothttp", "/bad/cl",
        "/bad/cl2",       "/bad/line",    "/bad/chunksize",
        "/bad/chunkdata", "/bad/101",     "/bad/http2",
    };
    struct res r;

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        memset(&r, 0, sizeof(r));
        r_run(&r, paths[i]);
        if (r.err != -EPROTO)
            print_error("%s: %d %s\n", paths[i], r.err, r.msg);
        assert_int_equal(r.err, -EPROTO);
        assert_true(r.msg[0] != '\0');
    }
}

/* A refused connect, and a server that accepts but never answers (the
 * total timeout). "localhost" needs no resolver. */
static void
test_connect_refused_and_timeout(void **state)
{
    struct http_call_opts o;
    struct res r[3];
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    unsigned dead_port, one = 1;
    char url[256], err[256];

    (void)state;
    memset(r, 0, sizeof(r));
    /* A port that was just free: bound, never listened on, closed. */
    uv_tcp_init(&g_loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&t, (const struct sockaddr *)&a, 0), 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
    dead_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    spin(1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", dead_port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_done = r_on_done;
    o.ud = &r[0];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    assert_int_equal(r[0].n_done, 0); /* never from inside the start */
    run_until(res_done, &r[0]);
    assert_int_equal(r[0].err, -ECONNREFUSED);
    assert_non_null(strstr(r[0].msg, "refused"));

    snprintf(url, sizeof(url), "http://localhost:%u/silent", g_rs.port);
    o.url = url;
    o.total_timeout_ms = 150;
    o.ud = &r[1];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(res_done, &r[1]);
    assert_int_equal(r[1].err, -ETIMEDOUT);
    assert_int_equal(g_rs.requests, 1); /* it did connect and send */
    run_until(peer_closed_at_least, &one);

    /* Paused calls time out too. */
    snprintf(url, sizeof(url), "http://localhost:%u/chunks10", g_rs.port);
    o.url = url;
    o.on_data = r_on_data;
    o.ud = &r[2];
    r[2].pause_each = true;
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(res_done, &r[2]);
    assert_int_equal(r[2].err, -ETIMEDOUT);
    assert_int_equal(r[2].n_data, 1);
}

/* http_client_free from on_data, with a call waiting and a connection
 * in the pool: no on_done for anyone, every connection closed, then the
 * closed callback. */
static void
test_free_from_callback(void **state)
{
    struct http_client *cli = http_client_new(&g_loop);
    struct res r[3];
    bool closed = false;
    unsigned two = 2;
    unsigned want;

    (void)state;
    memset(r, 0, sizeof(r));
    assert_non_null(r_start_on(cli, &r[0], "GET", "/ok", false));
    run_until(res_done, &r[0]); /* leaves a pooled connection */
    assert_non_null(r_start_on(cli, &r[1], "GET", "/silent", false));
    run_until(requests_at_least, &two);
    r[2].free_in_data = cli;
    r[2].free_flag = &closed;
    assert_non_null(r_start_on(cli, &r[2], "GET", "/chunks10", false));
    run_until(flag_set, &closed);
    want = g_rs.accepted;
    run_until(peer_closed_at_least, &want);
    assert_int_equal(r[1].n_done, 0);
    assert_int_equal(r[2].n_done, 0);
    assert_int_equal(r[2].n_data, 1);
}

/* http_client_free from on_done and from on_response. */
static struct http_client *g_aux;
static bool g_aux_closed;

static void
free_aux_then(struct res *r)
{
    (void)r;
    http_client_free(g_aux, on_flag_closed, &g_aux_closed);
}

static void
free_aux_on_response(struct http_call *call, int status, void *ud)
{
    (void)call;
    (void)status;
    (void)ud;
    http_client_free(g_aux, on_flag_closed, &g_aux_closed);
}

static void
test_free_from_done_and_response(void **state)
{
    struct http_call_opts o;
    struct res r[2];
    char url[256], err[256];

    (void)state;
    memset(r, 0, sizeof(r));
    g_aux = http_client_new(&g_loop);
    g_aux_closed = false;
    r[0].then = free_aux_then;
    assert_non_null(r_start_on(g_aux, &r[0], "GET", "/ok", true));
    assert_non_null(r_start_on(g_aux, &r[1], "GET", "/silent", true));
    run_until(flag_set, &g_aux_closed);
    assert_int_equal(r[0].n_done, 1);
    assert_int_equal(r[0].err, 0);
    assert_int_equal(r[1].n_done, 0);

    memset(r, 0, sizeof(r));
    g_aux = http_client_new(&g_loop);
    g_aux_closed = false;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/chunks10", g_rs.port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_response = free_aux_on_response;
    o.on_data = r_on_data;
    o.on_done = r_on_done;
    o.ud = &r[0];
    assert_non_null(http_call_start(g_aux, &o, err, sizeof(err)));
    run_until(flag_set, &g_aux_closed);
    assert_int_equal(r[0].n_data, 0);
    assert_int_equal(r[0].n_done, 0);
}

/* A name that is not a literal goes through uv_getaddrinfo ("127.1" is
 * 127.0.0.1 to getaddrinfo, not to inet_pton, and needs no DNS); a call
 * cancelled, and a client freed, while the name is being looked up. */
static void
test_resolver(void **state)
{
    struct http_client *aux = http_client_new(&g_loop);
    struct http_call_opts o;
    struct res r[3];
    char url[256], err[256];
    bool closed = false;

    (void)state;
    memset(r, 0, sizeof(r));
    snprintf(url, sizeof(url), "http://127.1:%u/ok", g_rs.port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.on_data = r_on_data;
    o.on_done = r_on_done;
    o.ud = &r[0];
    assert_non_null(http_call_start(g_cli, &o, err, sizeof(err)));
    run_until(res_done, &r[0]);
    assert_int_equal(r[0].err, 0);
    body_is(&r[0], "ok");

    o.ud = &r[1];
    http_call_cancel(http_call_start(g_cli, &o, err, sizeof(err)));
    o.ud = &r[2];
    assert_non_null(http_call_start(aux, &o, err, sizeof(err)));
    http_client_free(aux, on_flag_closed, &closed);
    run_until(flag_set, &closed);
    spin(5);
    assert_int_equal(r[1].n_done, 0);
    assert_int_equal(r[2].n_done, 0);
    assert_int_equal(http_client_active(g_cli), 0);
}

static void
build_canned(void)
{
    size_t off = 0, n;
    int k;

    k = snprintf(g_big_close, sizeof(g_big_close),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    for (size_t i = 0; i < 3000; i++)
        g_big_close[k + (int)i] = pat(i);
    g_big_close[k + 3000] = '\0';

    for (size_t i = 0; i < sizeof(g_chunks_body); i++)
        g_chunks_body[i] = pat(i);
    off = (size_t)snprintf(g_chunks10, sizeof(g_chunks10),
                           "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                           "chunked\r\n\r\n");
    for (int c = 0; c < 10; c++) {
        off += (size_t)snprintf(g_chunks10 + off, sizeof(g_chunks10) - off,
                                "64\r\n");
        memcpy(g_chunks10 + off, g_chunks_body + c * 100, 100);
        off += 100;
        memcpy(g_chunks10 + off, "\r\n", 2);
        off += 2;
    }
    n = (size_t)snprintf(g_chunks10 + off, sizeof(g_chunks10) - off,
                         "0\r\n\r\n");
    (void)n;

    k = snprintf(g_bighdr, sizeof(g_bighdr), "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(g_bighdr + k, 'b', 600);
    snprintf(g_bighdr + k + 600, sizeof(g_bighdr) - (size_t)k - 600,
             "\r\nContent-Length: 2\r\n\r\nok");
}

/* http_url_check says what http_call_start would say of a URL, without
 * starting anything (herd-node checks its URLs at start with it). */
static void
test_url_check(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(http_url_check("http://127.0.0.1:11434", err, sizeof(err)),
                     0);
    assert_int_equal(http_url_check("localhost:11434/x?y", err, sizeof(err)),
                     0);
    assert_int_equal(http_url_check("http://[::1]:80/", err, sizeof(err)), 0);
    assert_int_equal(http_url_check("HTTPS://gpu:11434", err, sizeof(err)),
                     -EPROTONOSUPPORT);
    assert_non_null(strstr(err, "https"));
    assert_int_equal(http_url_check("ftp://x", err, sizeof(err)),
                     -EPROTONOSUPPORT);
    assert_int_equal(http_url_check("http://a b", err, sizeof(err)), -EINVAL);
    assert_int_equal(http_url_check("http://u@h:1", err, sizeof(err)), -EINVAL);
    assert_int_equal(http_url_check("", NULL, 0), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_dribble, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_held_chunks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_on_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_idle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_on_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_and_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_from_done_and_response, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolver, setup, teardown),
        cmocka_unit_test(test_url_check),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    build_canned();
    if (getenv("HTTP_CLIENT_DEBUG") != NULL) {
        log_init("test_http_client", LL_DEBUG);
        log_tracing = TRACE_HTTP;
    }
    if (getenv("HTTP_CLIENT_FILTER") != NULL)
        cmocka_set_test_filter(getenv("HTTP_CLIENT_FILTER"));
    if (uv_loop_init(&g_loop) != 0)
        return 1;
    uv_timer_init(&g_loop, &g_watchdog);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* Nothing of ours may be left on the loop. */
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    if (uv_loop_alive(&g_loop) || uv_loop_close(&g_loop) != 0) {
        fprintf(stderr, "test_http_client: handles left on the loop\n");
        return 1;
    }
    return rc;
}
