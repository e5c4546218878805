/*
 * test_http_server.c - the HTTP/1.1 server (src/common/http_server.c)
 * driven with raw sockets on 127.0.0.1, in one process on one loop.
 *
 * The client side is plain non-blocking sockets watched by uv_poll_t
 * handles on the server's loop: requests go out exactly as written
 * (split, pipelined, malformed) and answers are read back as raw bytes.
 * run_until() turns the loop until a condition holds, with a watchdog
 * that fails the test instead of hanging; nothing waits on a sleep.
 *
 * Each test starts its own server and frees it at the end; srv_stop()
 * then checks that every request handed to a handler had exactly one
 * done callback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "herd/http_server.h"
#include "herd/log.h"

#define WATCHDOG_MS 20000u
#define MAX_IDS     4096u
#define MAX_HELD    16u

#define T_MAX_BODY   4096u
#define T_MAX_HEADER 1024u
#define T_MAX_QUEUE  (64u * 1024u)
#define BULK_CHUNK   (16u * 1024u)
#define BULK_TOTAL   (16u * 1024u * 1024u)
#define BULK_LOW     (16u * 1024u)

static uv_loop_t g_loop;
static uv_timer_t g_watchdog;
static bool g_watchdog_fired;
static struct http_server *g_srv;
static unsigned g_port;

/* --- helpers ------------------------------------------------------------ */

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

/* A few turns of the loop without blocking: on loopback, bytes sent are
 * in the server's socket by the time send() returns, so the server reads
 * them here. */
static void
pump(void)
{
    int i;

    for (i = 0; i < 4; i++)
        uv_run(&g_loop, UV_RUN_NOWAIT);
}

static bool
flag_set(void *arg)
{
    return *(bool *)arg;
}

/* --- server side -------------------------------------------------------- */

struct srv_state {
    unsigned handled;
    unsigned done;
    unsigned end[5];
    unsigned handled_by_id[MAX_IDS];
    unsigned done_by_id[MAX_IDS];
    enum http_end end_by_id[MAX_IDS];
    unsigned too_large;
    unsigned bad;
    struct http_req *held[MAX_HELD]; /* /hang and /stream, by ?k= */
    char events[1024];               /* "H1 D1 H2 ..." */
    int head_write_rc;
    int head_end_rc;
    size_t last_active; /* http_server_active() seen by the last handler */
};
static struct srv_state g_s;

/* Requests answered or aborted from a timer: /later and /abort. */
static uv_timer_t g_later_timer;
static struct http_req *g_later_req;
static uv_timer_t g_abort_timer;
static struct http_req *g_abort_req;

static void
srv_event(char what, uint64_t id)
{
    size_t n = strlen(g_s.events);

    snprintf(g_s.events + n, sizeof(g_s.events) - n, "%s%c%llu",
             n > 0 ? " " : "", what, (unsigned long long)id);
}

static void
srv_done(struct http_req *r, enum http_end why, void *ud)
{
    uint64_t id = http_req_id(r);
    unsigned k;

    (void)ud;
    g_s.done++;
    g_s.end[why]++;
    if (id < MAX_IDS) {
        g_s.done_by_id[id]++;
        g_s.end_by_id[id] = why;
    }
    for (k = 0; k < MAX_HELD; k++)
        if (g_s.held[k] == r)
            g_s.held[k] = NULL;
    if (g_later_req == r)
        g_later_req = NULL;
    if (g_abort_req == r)
        g_abort_req = NULL;
    srv_event('D', id);
}

static unsigned
query_u(struct http_req *r, const char *name, unsigned def)
{
    const char *v = http_req_query(r, name);

    return v != NULL && *v != '\0' ? (unsigned)strtoul(v, NULL, 10) : def;
}

static const char *
or_null(const char *s)
{
    return s != NULL ? s : "(null)";
}

/* /echo: what the server saw, in the body. */
static void
srv_echo(struct http_req *r)
{
    size_t blen;
    const char *b = http_req_body(r, &blen);
    size_t cap = blen + 512;
    char *out = malloc(cap);
    int n;

    if (query_u(r, "close", 0) != 0)
        http_set_header(r, "Connection", "close");
    http_set_header(r, "X-Echo", "yes");
    n = snprintf(out, cap,
                 "%s %s q=%s x=%s flag=%s peer=%s b=", http_req_method(r),
                 http_req_path(r), or_null(http_req_query(r, "q")),
                 or_null(http_req_header(r, "x-test")),
                 or_null(http_req_query(r, "FLAG")), http_req_peer(r));
    memcpy(out + n, b, blen); /* bodies may hold NULs */
    if (b[blen] != '\0')
        g_s.bad++;
    http_respond(r, 200, "text/plain", out, (size_t)n + blen);
    free(out);
}

/* /later: answered from a timer, after the handler returned. */

static void
srv_later_fire(uv_timer_t *t)
{
    (void)t;
    if (g_later_req != NULL)
        http_respond(g_later_req, 200, "text/plain", "later", 5);
    g_later_req = NULL;
}

/* /abort: some bytes, then a broken transfer. */

static void
srv_abort_fire(uv_timer_t *t)
{
    (void)t;
    if (g_abort_req != NULL)
        http_stream_abort(g_abort_req);
    g_abort_req = NULL;
}

/* /bulk: as fast as the queue cap allows (backpressure). */
struct bulk {
    struct http_req *r;
    size_t off;
    size_t max_queued;
    size_t queued_at_e2big;
    unsigned e2big;
    unsigned drains;
    bool blocked;
};
static struct bulk g_bulk;

static void
bulk_fill(struct http_req *r, void *ud)
{
    static char chunk[BULK_CHUNK];
    size_t j;
    int rc;

    if (ud != NULL) {
        g_bulk.drains++;
        g_bulk.blocked = false;
        if (http_stream_queued(r) > BULK_LOW)
            g_s.bad++; /* called above its low-water mark */
    }
    while (g_bulk.off < BULK_TOTAL) {
        for (j = 0; j < BULK_CHUNK; j++)
            chunk[j] = pat(g_bulk.off + j);
        rc = http_stream_write(r, chunk, BULK_CHUNK);
        if (rc == -E2BIG) {
            g_bulk.e2big++;
            g_bulk.queued_at_e2big = http_stream_queued(r);
            g_bulk.blocked = true;
            http_stream_on_drain(r, BULK_LOW, bulk_fill, &g_bulk);
            return;
        }
        if (rc != 0) {
            g_s.bad++;
            return;
        }
        g_bulk.off += BULK_CHUNK;
        if (http_stream_queued(r) > g_bulk.max_queued)
            g_bulk.max_queued = http_stream_queued(r);
    }
    http_stream_end(r);
}

/* /free: frees the server from inside its own handler. */
static bool g_free_closed;

static void
on_flag_closed(void *ud)
{
    *(bool *)ud = true;
}

static void
srv_stream(struct http_req *r, unsigned k)
{
    g_s.held[k] = r;
    http_stream_begin(r, 200, "text/plain");
    http_stream_write(r, "first\n", 6);
}

static void
srv_on_request(struct http_req *r, void *ud)
{
    const char *path = http_req_path(r);
    uint64_t id = http_req_id(r);
    unsigned k = query_u(r, "k", 0) % MAX_HELD;

    (void)ud;
    g_s.handled++;
    if (id < MAX_IDS)
        g_s.handled_by_id[id]++;
    g_s.last_active = http_server_active(g_srv);
    srv_event('H', id);
    http_req_on_done(r, srv_done, NULL);
    if (http_req_too_large(r)) {
        size_t len;

        g_s.too_large++;
        if (*http_req_body(r, &len) != '\0' || len != 0)
            g_s.bad++;
        http_respond(r, 413, "text/plain", "too large", 9);
    } else if (strncmp(path, "/echo", 5) == 0) {
        srv_echo(r);
    } else if (strcmp(path, "/later") == 0) {
        g_later_req = r;
        uv_timer_start(&g_later_timer, srv_later_fire, 0, 0);
    } else if (strcmp(path, "/hang") == 0) {
        g_s.held[k] = r;
    } else if (strcmp(path, "/stream") == 0) {
        srv_stream(r, k);
    } else if (strcmp(path, "/stream10") == 0) {
        http_stream_begin(r, 200, "text/plain");
        http_stream_write(r, "a", 1);
        http_stream_write(r, "b", 1);
        http_stream_end(r);
    } else if (strcmp(path, "/headstream") == 0) {
        http_stream_begin(r, 200, "text/event-stream");
        g_s.head_write_rc = http_stream_write(r, "x", 1);
        g_s.head_end_rc = http_stream_end(r);
    } else if (strcmp(path, "/bulk") == 0) {
        memset(&g_bulk, 0, sizeof(g_bulk));
        g_bulk.r = r;
        http_stream_begin(r, 200, "application/octet-stream");
        bulk_fill(r, NULL);
    } else if (strcmp(path, "/abort") == 0) {
        http_stream_begin(r, 200, "text/plain");
        http_stream_write(r, "partial", 7);
        g_abort_req = r; /* aborted on the next turn, once sent */
        uv_timer_start(&g_abort_timer, srv_abort_fire, 0, 0);
    } else if (strcmp(path, "/free") == 0) {
        http_server_free(g_srv, on_flag_closed, &g_free_closed);
    } else {
        http_respond(r, 404, "text/plain", "not found", 9);
    }
}

static struct http_server_opts
srv_opts(void)
{
    struct http_server_opts o;

    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.max_body = T_MAX_BODY;
    o.max_header = T_MAX_HEADER;
    o.max_conns = 64;
    o.stream_max_queue = T_MAX_QUEUE;
    o.on_request = srv_on_request;
    return o;
}

static void
srv_start(const struct http_server_opts *o)
{
    char err[256];

    memset(&g_s, 0, sizeof(g_s));
    g_srv = http_server_new(&g_loop, o, err, sizeof(err));
    if (g_srv == NULL)
        fail_msg("http_server_new: %s", err);
    g_port = http_server_port(g_srv);
}

/* Frees the server; every request a handler saw had one done callback. */
static void
srv_stop(void)
{
    bool closed = false;
    unsigned id;

    if (g_srv != NULL) {
        http_server_free(g_srv, on_flag_closed, &closed);
        g_srv = NULL;
        run_until(flag_set, &closed);
    }
    for (id = 0; id < MAX_IDS; id++) {
        if (g_s.handled_by_id[id] > 1 || g_s.done_by_id[id] > 1)
            fail_msg("request %u: handled %u times, done %u times", id,
                     g_s.handled_by_id[id], g_s.done_by_id[id]);
        if (g_s.done_by_id[id] != g_s.handled_by_id[id])
            fail_msg("request %u: handled %u, done %u", id,
                     g_s.handled_by_id[id], g_s.done_by_id[id]);
    }
    assert_int_equal(g_s.bad, 0);
}

/* --- client side -------------------------------------------------------- */

struct tcli {
    int fd;
    uv_poll_t poll;
    bool polling;
    char *buf; /* everything received */
    size_t len;
    size_t cap;
    size_t off; /* responses before this are consumed */
    bool eof;
    int err; /* errno of a failed recv (ECONNRESET) */
};

static void
cli_on_poll(uv_poll_t *h, int status, int events)
{
    struct tcli *c = h->data;
    char tmp[65536];
    ssize_t n;

    (void)status;
    (void)events;
    for (;;) {
        n = recv(c->fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            if (c->len + (size_t)n + 1 > c->cap) {
                c->cap = (c->len + (size_t)n + 1) * 2;
                c->buf = realloc(c->buf, c->cap);
            }
            memcpy(c->buf + c->len, tmp, (size_t)n);
            c->len += (size_t)n;
            c->buf[c->len] = '\0';
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        c->err = n < 0 ? errno : 0;
        c->eof = true;
        break;
    }
    uv_poll_stop(&c->poll);
    c->polling = false;
}

static void
cli_read_start(struct tcli *c)
{
    uv_poll_start(&c->poll, UV_READABLE, cli_on_poll);
    c->polling = true;
}

/* A connection to the test server; NULL with errno when refused. */
static struct tcli *
cli_connect_opt(unsigned port, bool read, int rcvbuf)
{
    struct tcli *c = calloc(1, sizeof(*c));
    struct sockaddr_in sa;

    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* On loopback the kernel completes the handshake from the backlog:
     * a blocking connect() returns without the server's loop running. */
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;

        close(c->fd);
        free(c);
        errno = e;
        return NULL;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    uv_poll_init(&g_loop, &c->poll, c->fd);
    c->poll.data = c;
    if (read)
        cli_read_start(c);
    return c;
}

static struct tcli *
cli_connect(void)
{
    struct tcli *c = cli_connect_opt(g_port, true, 0);

    assert_non_null(c);
    return c;
}

static void
cli_on_closed(uv_handle_t *h)
{
    struct tcli *c = h->data;

    free(c->buf);
    free(c);
}

/* Closes the connection (the server sees EOF). */
static void
cli_free(struct tcli *c)
{
    if (c == NULL)
        return;
    uv_close((uv_handle_t *)&c->poll, cli_on_closed); /* before the fd */
    close(c->fd);
}

static void
cli_send(struct tcli *c, const char *p, size_t n)
{
    ssize_t k;

    while (n > 0) {
        k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            uv_run(&g_loop, UV_RUN_NOWAIT);
            continue;
        }
        if (k < 0)
            return; /* the server closed: the test looks at the answer */
        p += k;
        n -= (size_t)k;
    }
}

static void
cli_sends(struct tcli *c, const char *s)
{
    cli_send(c, s, strlen(s));
}

/* --- reading responses -------------------------------------------------- */

struct resp {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body;
    size_t body_len;
};

static void
resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The value of a response header (exact name), or NULL; static buffer. */
static const char *
resp_header(const struct resp *r, const char *name)
{
    static char v[256];
    char key[128];
    const char *p;
    const char *e;

    snprintf(key, sizeof(key), "\r\n%s: ", name);
    p = strstr(r->head, key);
    if (p == NULL)
        return NULL;
    p += strlen(key);
    e = strstr(p, "\r\n");
    snprintf(v, sizeof(v), "%.*s", (int)(e - p), p);
    return v;
}

/* A chunked body from p[0..n): its length and decoded bytes (out may be
 * NULL), or -1 while incomplete, -2 when malformed. */
static long long
dechunk(const char *p, size_t n, char *out, size_t *used)
{
    size_t i = 0, olen = 0;

    for (;;) {
        const char *lf = memchr(p + i, '\n', n - i);
        unsigned long sz;
        char *end;

        if (lf == NULL)
            return -1;
        sz = strtoul(p + i, &end, 16);
        if (end == p + i)
            return -2;
        i = (size_t)(lf - p) + 1;
        if (sz == 0) {
            if (n - i < 2)
                return -1;
            if (memcmp(p + i, "\r\n", 2) != 0)
                return -2;
            *used = i + 2;
            return (long long)olen;
        }
        if (n - i < sz + 2)
            return -1;
        if (out != NULL)
            memcpy(out + olen, p + i, sz);
        olen += sz;
        i += sz;
        if (memcmp(p + i, "\r\n", 2) != 0)
            return -2;
        i += 2;
    }
}

/* Takes one whole response from the client's bytes; false while there is
 * none yet. head_req: the answer to a HEAD (no body). */
static bool
cli_response(struct tcli *c, struct resp *r, bool head_req)
{
    const char *p = c->buf != NULL ? c->buf + c->off : "";
    size_t n = c->len - c->off;
    const char *e = c->buf != NULL ? strstr(p, "\r\n\r\n") : NULL;
    size_t hlen;
    size_t blen = 0;
    size_t used = 0;
    const char *cl;
    long long dl;

    if (e == NULL)
        return false;
    hlen = (size_t)(e - p) + 4;
    memset(r, 0, sizeof(*r));
    r->head = strndup(p, hlen);
    r->status = atoi(p + 9);
    cl = resp_header(r, "Content-Length");
    if (head_req || r->status < 200 || r->status == 204 || r->status == 304) {
        blen = 0;
    } else if (cl != NULL) {
        blen = strtoul(cl, NULL, 10);
        if (n - hlen < blen)
            goto incomplete;
    } else if (resp_header(r, "Transfer-Encoding") != NULL) {
        dl = dechunk(p + hlen, n - hlen, NULL, &used);
        assert_true(dl != -2);
        if (dl < 0)
            goto incomplete;
        r->body = malloc((size_t)dl + 1);
        dechunk(p + hlen, n - hlen, r->body, &used);
        r->body[dl] = '\0';
        r->body_len = (size_t)dl;
        c->off += hlen + used;
        return true;
    } else { /* close-delimited */
        if (!c->eof)
            goto incomplete;
        blen = n - hlen;
    }
    r->body = malloc(blen + 1);
    memcpy(r->body, p + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    c->off += hlen + blen;
    return true;
incomplete:
    resp_free(r);
    return false;
}

struct want {
    struct tcli *c;
    struct resp *r;
    bool head_req;
};

static bool
got_response(void *arg)
{
    struct want *w = arg;

    return cli_response(w->c, w->r, w->head_req);
}

static void
read_response(struct tcli *c, struct resp *r, bool head_req)
{
    struct want w = {c, r, head_req};

    run_until(got_response, &w);
}

static bool
cli_eof(void *arg)
{
    return ((struct tcli *)arg)->eof;
}

static bool
done_reached(void *arg)
{
    return g_s.done >= *(unsigned *)arg;
}

static bool
handled_reached(void *arg)
{
    return g_s.handled >= *(unsigned *)arg;
}

/* One request on a fresh connection; the status, and the body in r. */
static int
exchange(const char *req, struct resp *r)
{
    struct tcli *c = cli_connect();

    cli_sends(c, req);
    read_response(c, r, false);
    cli_free(c);
    return r->status;
}

/* --- tests -------------------------------------------------------------- */

/* A request split in two at every byte boundary, with a Content-Length
 * body and then a chunked one: the same answer every time. */
static void
test_split_every_byte(void **state)
{
    static const char *const reqs[] = {
        "POST /echo/a%20b?q=hello+world&flag HTTP/1.1\r\nHost: x\r\n"
        "X-Test: Abc\r\nContent-Length: 11\r\n\r\nhello world",
        "POST /echo/a%20b?q=hello+world&flag HTTP/1.1\r\nHost: x\r\n"
        "X-Test: Abc\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    };
    const char *want = "POST /echo/a b q=hello world x=Abc flag= "
                       "peer=127.0.0.1 b=hello world";
    struct http_server_opts o = srv_opts();
    unsigned calls = 0;
    size_t i, k, len;

    (void)state;
    srv_start(&o);
    for (i = 0; i < 2; i++) {
        len = strlen(reqs[i]);
        for (k = 1; k < len; k++) {
            struct tcli *c = cli_connect();
            struct resp r;

            cli_send(c, reqs[i], k);
            pump();
            cli_send(c, reqs[i] + k, len - k);
            read_response(c, &r, false);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, want);
            assert_string_equal(resp_header(&r, "X-Echo"), "yes");
            assert_non_null(resp_header(&r, "Date"));
            resp_free(&r);
            cli_free(c);
            calls++;
        }
    }
    assert_int_equal(g_s.handled, calls);
    run_until(done_reached, &calls);
    assert_int_equal(g_s.end[HTTP_END_OK], calls);
    srv_stop();
}

/* Three requests in one packet, the first answered later from a timer:
 * answered in order, and no handler runs before the previous request is
 * done. */
static void
test_pipelined_in_order(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;

    (void)state;
    srv_start(&o);
    c = cli_connect();
    cli_sends(c,
              "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
              "GET /echo?q=3 HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, false);
    assert_string_equal(r.body, "later");
    resp_free(&r);
    read_response(c, &r, false);
    assert_string_equal(r.body, "POST /echo q=(null) x=(null) flag=(null) "
                                "peer=127.0.0.1 b=abc");
    resp_free(&r);
    read_response(c, &r, false);
    assert_string_equal(r.body, "GET /echo q=3 x=(null) flag=(null) "
                                "peer=127.0.0.1 b=");
    resp_free(&r);
    assert_string_equal(g_s.events, "H1 D1 H2 D2 H3 D3");
    assert_int_equal(g_s.last_active, 1);
    /* Still open for more. */
    cli_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_false(c->eof);
    cli_free(c);
    srv_stop();
}

/* Chunked request bodies: big chunks over several sends; over max_body
 * the handler sees too_large and the connection stays usable. */
static void
test_chunked_body(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;
    char body[3000];
    char line[64];
    size_t j;

    (void)state;
    srv_start(&o);
    c = cli_connect();
    for (j = 0; j < sizeof(body); j++)
        body[j] = pat(j);
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    for (j = 0; j < 3; j++) {
        snprintf(line, sizeof(line), "%X\r\n", 1000u);
        cli_sends(c, line);
        pump();
        cli_send(c, body + j * 1000, 1000);
        cli_sends(c, "\r\n");
        pump();
    }
    cli_sends(c, "0\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen("POST /echo q=(null) x=(null) "
                                        "flag=(null) peer=127.0.0.1 b=") +
                                     sizeof(body));
    assert_memory_equal(r.body + r.body_len - sizeof(body), body, sizeof(body));
    resp_free(&r);
    /* 2 x 3000 > max_body (4096): read, discarded, too_large. */
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    for (j = 0; j < 2; j++) {
        cli_sends(c, "BB8\r\n");
        cli_send(c, body, sizeof(body));
        cli_sends(c, "\r\n");
    }
    cli_sends(c, "0\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_int_equal(g_s.too_large, 1);
    cli_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cli_free(c);
    srv_stop();
}

/* Malformed requests: the right error, the connection closed, and no
 * handler call. */
static void
test_bad_requests(void **state)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400},
        {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
         "Content-Length: 4\r\n\r\nabcd",
         400},
        {"POST /echo HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc", 400},
        {"POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST /echo HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400},
        {"POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n"
         "\r\n",
         400},
        {"GET /echo HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400},
        {"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        {"GET /echo HTTP/1.1\r\nNo colon here\r\n\r\n", 400},
        {"GET /echo HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400},
        {"GARBAGE\r\n\r\n", 400},
        {"GET /echo\r\n\r\n", 400},
        {"GET /echo HTTP/2.0\r\n\r\n", 505},
        {"GET /echo FTP/1.1\r\n\r\n", 400},
        {"G(T /echo HTTP/1.1\r\n\r\n", 400},
        {"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         400},
        {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabcX\r\n",
         400},
    };
    struct http_server_opts o = srv_opts();
    size_t i;

    (void)state;
    srv_start(&o);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tcli *c = cli_connect();
        struct resp r;

        cli_sends(c, cases[i].req);
        read_response(c, &r, false);
        if (r.status != cases[i].status)
            fail_msg("case %zu: %d, not %d", i, r.status, cases[i].status);
        assert_string_equal(resp_header(&r, "Connection"), "close");
        resp_free(&r);
        run_until(cli_eof, c);
        assert_int_equal(c->err, 0); /* a FIN, not a reset */
        cli_free(c);
    }
    assert_int_equal(g_s.handled, 0);
    /* Lenient where it is safe: bare LF line ends, the same
     * Content-Length twice, empty lines before the request line. */
    {
        struct resp r;

        assert_int_equal(exchange("GET /echo HTTP/1.1\nX-Test: lf\n\n", &r),
                         200);
        resp_free(&r);
        assert_int_equal(exchange("\r\n\r\nPOST /echo HTTP/1.1\r\n"
                                  "Content-Length: 2\r\nContent-Length: 2\r\n"
                                  "\r\nok",
                                  &r),
                         200);
        assert_string_equal(r.body, "POST /echo q=(null) x=(null) "
                                    "flag=(null) peer=127.0.0.1 b=ok");
        resp_free(&r);
    }
    srv_stop();
}

/* A head of exactly max_header bytes is served; one byte more is 431. */
static void
test_header_limit(void **state)
{
    struct http_server_opts o = srv_opts();
    char req[T_MAX_HEADER * 4];
    size_t fixed = strlen("GET /echo HTTP/1.1\r\nX-Pad: \r\n\r\n");
    struct resp r;

    (void)state;
    srv_start(&o);
    snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nX-Pad: %0*d\r\n\r\n",
             (int)(T_MAX_HEADER - fixed), 0);
    assert_int_equal(strlen(req), T_MAX_HEADER);
    assert_int_equal(exchange(req, &r), 200);
    resp_free(&r);
    snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nX-Pad: %0*d\r\n\r\n",
             (int)(T_MAX_HEADER - fixed + 1), 0);
    assert_int_equal(exchange(req, &r), 431);
    assert_string_equal(r.body, "Request Header Fields Too Large\n");
    resp_free(&r);
    /* No end in sight: 431 once max_header bytes are in. */
    memset(req, 'a', sizeof(req));
    memcpy(req, "GET /echo HTTP/1.1\r\nX-Pad: ", 27);
    req[sizeof(req) - 1] = '\0';
    assert_int_equal(exchange(req, &r), 431);
    resp_free(&r);
    assert_int_equal(g_s.handled, 1);
    srv_stop();
}

/* A body at max_body is delivered; one byte more and the handler sees
 * too_large (the body discarded), on a connection that stays usable. */
static void
test_body_limit(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;
    char *body = malloc(T_MAX_BODY + 1);
    char head[128];
    size_t j;

    (void)state;
    srv_start(&o);
    for (j = 0; j <= T_MAX_BODY; j++)
        body[j] = j == 7 ? '\0' : pat(j); /* a NUL inside */
    c = cli_connect();
    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nContent-Length: %u\r\n\r\n", T_MAX_BODY);
    cli_sends(c, head);
    cli_send(c, body, T_MAX_BODY);
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body + r.body_len - T_MAX_BODY, body, T_MAX_BODY);
    resp_free(&r);
    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
             T_MAX_BODY + 1);
    cli_sends(c, head);
    cli_send(c, body, T_MAX_BODY + 1);
    read_response(c, &r, false);
    assert_int_equal(r.status, 413);
    assert_null(resp_header(&r, "Connection"));
    resp_free(&r);
    assert_int_equal(g_s.too_large, 1);
    cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cli_free(c);
    free(body);
    srv_stop();
}

/* Expect: 100-continue: "100 Continue" before the body; over max_body
 * the final answer comes at once instead, and the connection closes. */
static void
test_expect_continue(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;

    (void)state;
    srv_start(&o);
    c = cli_connect();
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 100);
    assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
    resp_free(&r);
    assert_int_equal(g_s.handled, 0);
    cli_sends(c, "hello");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo q=(null) x=(null) flag=(null) "
                                "peer=127.0.0.1 b=hello");
    resp_free(&r);
    /* The body came along with the head: no 100. */
    cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n"
                 "Expect: 100-continue\r\n\r\nok");
    read_response(c, &r, false);
    if (r.status == 100) { /* the body came in a read of its own */
        resp_free(&r);
        read_response(c, &r, false);
    }
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Too large: the handler answers before any body byte. */
    cli_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 413);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    assert_int_equal(g_s.too_large, 1);
    run_until(cli_eof, c);
    cli_free(c);
    srv_stop();
}

/* HEAD: the headers of the GET, no body; a HEAD on a stream ends at
 * once. The same connection then serves a GET (no stray bytes). */
static void
test_head(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;
    unsigned want = 2;
    char clen[16];

    (void)state;
    srv_start(&o);
    c = cli_connect();
    cli_sends(c, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, true);
    assert_int_equal(r.status, 200);
    /* The length the GET's body would have. */
    snprintf(clen, sizeof(clen), "%zu",
             strlen("HEAD /echo q=(null) x=(null) flag=(null) "
                    "peer=127.0.0.1 b="));
    assert_string_equal(resp_header(&r, "Content-Length"), clen);
    resp_free(&r);
    cli_sends(c, "HEAD /headstream HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, true);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Content-Type"), "text/event-stream");
    resp_free(&r);
    run_until(done_reached, &want);
    assert_int_equal(g_s.end[HTTP_END_OK], 2);
    assert_int_equal(g_s.head_write_rc, -EPIPE);
    assert_int_equal(g_s.head_end_rc, -EPIPE);
    cli_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /echo q=(null) x=(null) flag=(null) "
                                "peer=127.0.0.1 b=");
    resp_free(&r);
    assert_int_equal(c->len, c->off); /* nothing after it */
    cli_free(c);
    srv_stop();
}

/* HTTP/1.0: closed after the answer unless keep-alive was asked; a stream
 * is close-delimited. */
static void
test_http10(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;

    (void)state;
    srv_start(&o);
    c = cli_connect();
    cli_sends(c, "GET /echo HTTP/1.0\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Connection"), "close");
    assert_true(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    resp_free(&r);
    run_until(cli_eof, c);
    cli_free(c);

    c = cli_connect();
    cli_sends(c, "GET /echo HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    read_response(c, &r, false);
    assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
    resp_free(&r);
    cli_sends(c, "GET /echo?q=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_response(c, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_false(c->eof);
    /* A stream to an HTTP/1.0 client: no chunks, the end is the close. */
    cli_sends(c, "GET /stream10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    run_until(cli_eof, c);
    assert_true(cli_response(c, &r, false));
    assert_string_equal(r.body, "ab");
    assert_null(resp_header(&r, "Transfer-Encoding"));
    assert_string_equal(resp_header(&r, "Connection"), "close");
    resp_free(&r);
    cli_free(c);
    srv_stop();
}

/* "Connection: close" from the client, or from the handler. */
static void
test_connection_close(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;
    unsigned i;

    (void)state;
    srv_start(&o);
    for (i = 0; i < 2; i++) {
        c = cli_connect();
        cli_sends(c, i == 0 ? "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n"
                            : "GET /echo?close=1 HTTP/1.1\r\n\r\n");
        read_response(c, &r, false);
        assert_int_equal(r.status, 200);
        assert_string_equal(resp_header(&r, "Connection"), "close");
        resp_free(&r);
        run_until(cli_eof, c);
        assert_int_equal(c->err, 0);
        cli_free(c);
    }
    srv_stop();
}

static bool
stream_first_chunk(void *arg)
{
    struct tcli *c = arg;

    return c->buf != NULL && strstr(c->buf, "6\r\nfirst\n\r\n") != NULL;
}

/* A client that leaves while its request waits for the handler, and
 * while a stream is open: one done callback each, CLIENT_GONE. */
static void
test_client_gone_once(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c[2];
    unsigned want = 2;

    (void)state;
    srv_start(&o);
    c[0] = cli_connect();
    cli_sends(c[0], "GET /hang?k=1 HTTP/1.1\r\n\r\n");
    c[1] = cli_connect();
    cli_sends(c[1], "GET /stream?k=2 HTTP/1.1\r\n\r\n");
    run_until(handled_reached, &want);
    run_until(stream_first_chunk, c[1]);
    assert_non_null(g_s.held[1]);
    assert_non_null(g_s.held[2]);
    assert_int_equal(http_server_active(g_srv), 2);
    cli_free(c[0]);
    want = 1;
    run_until(done_reached, &want);
    assert_null(g_s.held[1]);
    assert_int_equal(g_s.end_by_id[1], HTTP_END_CLIENT_GONE);
    cli_free(c[1]);
    want = 2;
    run_until(done_reached, &want);
    assert_null(g_s.held[2]);
    assert_int_equal(g_s.end_by_id[2], HTTP_END_CLIENT_GONE);
    assert_int_equal(g_s.end[HTTP_END_CLIENT_GONE], 2);
    assert_int_equal(http_server_active(g_srv), 0);
    pump();
    assert_int_equal(g_s.done, 2); /* once each */
    srv_stop();
}

/* http_stream_abort(): the client sees the connection end without the
 * terminating chunk; the done callback says ERROR. */
static void
test_stream_abort(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    unsigned want = 1;

    (void)state;
    srv_start(&o);
    c = cli_connect();
    cli_sends(c, "GET /abort HTTP/1.1\r\n\r\n");
    run_until(cli_eof, c);
    assert_non_null(strstr(c->buf, "7\r\npartial\r\n"));
    assert_null(strstr(c->buf, "0\r\n\r\n"));
    run_until(done_reached, &want);
    assert_int_equal(g_s.end[HTTP_END_ERROR], 1);
    cli_free(c);
    srv_stop();
}

struct elapsed {
    uv_timer_t t;
    bool fired;
};

static void
on_elapsed(uv_timer_t *t)
{
    ((struct elapsed *)t->data)->fired = true;
}

/* The idle timeout closes a silent connection and one with half a
 * request, not one whose request waits for its handler. */
static void
test_idle_timeout(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c[3];
    struct elapsed el;
    unsigned want = 1;

    (void)state;
    o.idle_timeout_s = 1;
    srv_start(&o);
    c[0] = cli_connect();
    c[1] = cli_connect();
    cli_sends(c[1], "GET /echo HTTP/1.1\r\nHost: x");
    c[2] = cli_connect();
    cli_sends(c[2], "GET /hang?k=3 HTTP/1.1\r\n\r\n");
    run_until(handled_reached, &want);
    memset(&el, 0, sizeof(el));
    uv_timer_init(&g_loop, &el.t);
    el.t.data = &el;
    uv_timer_start(&el.t, on_elapsed, 2500, 0);
    run_until(cli_eof, c[0]);
    run_until(cli_eof, c[1]);
    assert_int_equal(c[1]->len, 0); /* closed without an answer */
    run_until(flag_set, &el.fired);
    assert_false(c[2]->eof);
    assert_non_null(g_s.held[3]);
    cli_free(c[2]);
    run_until(done_reached, &want);
    assert_int_equal(g_s.end_by_id[1], HTTP_END_CLIENT_GONE);
    uv_close((uv_handle_t *)&el.t, NULL);
    cli_free(c[0]);
    cli_free(c[1]);
    srv_stop();
}

/* Connections beyond max_conns are closed at once, without an answer;
 * once one goes, a new one is served. */
static void
test_max_conns(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c[3];
    struct resp r;
    unsigned want = 2;

    (void)state;
    o.max_conns = 2;
    srv_start(&o);
    c[0] = cli_connect();
    cli_sends(c[0], "GET /hang?k=1 HTTP/1.1\r\n\r\n");
    c[1] = cli_connect();
    cli_sends(c[1], "GET /hang?k=2 HTTP/1.1\r\n\r\n");
    run_until(handled_reached, &want);
    c[2] = cli_connect();
    cli_sends(c[2], "GET /echo HTTP/1.1\r\n\r\n");
    run_until(cli_eof, c[2]);
    assert_int_equal(c[2]->len, 0);
    assert_int_equal(g_s.handled, 2);
    cli_free(c[2]);
    cli_free(c[0]);
    want = 1;
    run_until(done_reached, &want);
    pump(); /* the server's side of c[0] is closed now or soon */
    assert_int_equal(exchange("GET /echo HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
    cli_free(c[1]);
    srv_stop();
}

static unsigned g_turns;

static bool
count_turns_until(void *arg)
{
    g_turns++;
    return *(bool *)arg;
}

/* Out of file descriptors: accept() fails with EMFILE and the server
 * pauses accepting instead of spinning on a listening socket that stays
 * readable; with descriptors back, the waiting client is served. */
static void
test_accept_emfile(void **state)
{
    struct http_server_opts o = srv_opts();
    struct rlimit old, low;
    struct elapsed el;
    struct tcli *c;
    struct resp r;
    int lowest;

    (void)state;
    srv_start(&o);
    c = cli_connect(); /* in the backlog, not accepted yet */
    cli_sends(c, "GET /echo HTTP/1.1\r\n\r\n");
    memset(&el, 0, sizeof(el));
    uv_timer_init(&g_loop, &el.t);
    el.t.data = &el;
    lowest = dup(0); /* the lowest free descriptor */
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest; /* no descriptor for accept() */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uv_timer_start(&el.t, on_elapsed, 350, 0);
    g_turns = 0;
    run_until(count_turns_until, &el.fired);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    print_message("    %u turns of the loop in 350 ms without descriptors\n",
                  g_turns);
    assert_true(g_turns < 50); /* paused, not spinning */
    assert_int_equal(g_s.handled, 0);
    read_response(c, &r, false); /* accepted once the pause is over */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    uv_close((uv_handle_t *)&el.t, NULL);
    cli_free(c);
    srv_stop();
}

/* Listening off: connects are refused, open connections still work; on
 * again: the same port. */
static void
test_listen_toggle(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *keep;
    struct resp r;

    (void)state;
    srv_start(&o);
    keep = cli_connect();
    /* Accepted before listening stops (one still in the backlog would be
     * reset with the listening socket). */
    cli_sends(keep, "GET /echo HTTP/1.1\r\n\r\n");
    read_response(keep, &r, false);
    resp_free(&r);
    assert_int_equal(http_server_listen(g_srv, false), 0);
    assert_null(cli_connect_opt(g_port, true, 0));
    assert_int_equal(errno, ECONNREFUSED);
    cli_sends(keep, "GET /echo HTTP/1.1\r\n\r\n");
    read_response(keep, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(http_server_listen(g_srv, true), 0);
    assert_int_equal(http_server_listen(g_srv, true), 0); /* idempotent */
    assert_int_equal(exchange("GET /echo HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
    cli_free(keep);
    srv_stop();
}

static bool
bulk_blocked(void *arg)
{
    (void)arg;
    return g_bulk.blocked;
}

static bool
bulk_done_and_read(void *arg)
{
    struct tcli *c = arg;

    return g_s.done >= 1 && c->buf != NULL && c->len >= BULK_TOTAL &&
           memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0;
}

/* Backpressure: with a client that does not read, the queue fills up to
 * stream_max_queue and writes fail with -E2BIG; once the client reads,
 * drain callbacks fire below the low-water mark and every byte arrives. */
static void
test_backpressure(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c;
    struct resp r;
    size_t j;

    (void)state;
    srv_start(&o);
    c = cli_connect_opt(g_port, false, 4096);
    assert_non_null(c);
    cli_sends(c, "GET /bulk HTTP/1.1\r\n\r\n");
    run_until(bulk_blocked, NULL);
    assert_true(g_bulk.off < BULK_TOTAL);
    assert_true(http_stream_queued(g_bulk.r) <= T_MAX_QUEUE);
    assert_true(g_bulk.queued_at_e2big > T_MAX_QUEUE - BULK_CHUNK - 16);
    assert_true(g_bulk.max_queued <= T_MAX_QUEUE);
    print_message("    blocked after %zu bytes, %zu queued\n", g_bulk.off,
                  g_bulk.queued_at_e2big);
    cli_read_start(c);
    run_until(bulk_done_and_read, c);
    assert_int_equal(g_s.end[HTTP_END_OK], 1);
    assert_true(g_bulk.drains >= 1);
    assert_int_equal(g_bulk.drains, g_bulk.e2big);
    assert_true(cli_response(c, &r, false));
    assert_int_equal(r.body_len, BULK_TOTAL);
    for (j = 0; j < BULK_TOTAL; j++)
        if (r.body[j] != pat(j))
            fail_msg("byte %zu is wrong", j);
    resp_free(&r);
    print_message("    %u drains, %u E2BIG\n", g_bulk.drains, g_bulk.e2big);
    cli_free(c);
    srv_stop();
}

/* Odd targets: absolute-form, decoding, "%00" kept, case-insensitive
 * lookups. */
static void
test_targets(void **state)
{
    struct http_server_opts o = srv_opts();
    struct resp r;

    (void)state;
    srv_start(&o);
    assert_int_equal(
        exchange("GET http://example.com:80/echo/x%2Fy?Q=a%2Bb+c&&flag=1 "
                 "HTTP/1.1\r\nx-TEST:  spaced  \r\n\r\n",
                 &r),
        200);
    assert_string_equal(r.body, "GET /echo/x/y q=a+b c x=spaced flag=1 "
                                "peer=127.0.0.1 b=");
    resp_free(&r);
    assert_int_equal(
        exchange("GET http://example.com?q=1 HTTP/1.1\r\n\r\n", &r),
        404); /* the path is "/" */
    resp_free(&r);
    assert_int_equal(exchange("GET /echo%00junk?q=%00 HTTP/1.1\r\n\r\n", &r),
                     200);
    assert_string_equal(r.body, "GET /echo%00junk q=%00 x=(null) "
                                "flag=(null) peer=127.0.0.1 b=");
    resp_free(&r);
    srv_stop();
}

/* http_server_free() with requests in flight: a waiting one and a stream
 * end with SHUTDOWN, at once; connections idle or mid-request are closed
 * too; closed() comes once everything is released. */
static void
test_free_in_flight(void **state)
{
    struct http_server_opts o = srv_opts();
    struct tcli *c[5];
    bool closed = false;
    unsigned want = 2;
    unsigned i;

    (void)state;
    srv_start(&o);
    c[0] = cli_connect();
    cli_sends(c[0], "GET /hang?k=1 HTTP/1.1\r\n\r\n");
    c[1] = cli_connect();
    cli_sends(c[1], "GET /stream?k=2 HTTP/1.1\r\n\r\n");
    c[2] = cli_connect(); /* idle */
    c[3] = cli_connect();
    cli_sends(c[3], "GET /echo HTT"); /* half a head */
    c[4] = cli_connect();
    cli_sends(c[4], "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    run_until(handled_reached, &want);
    pump();
    assert_int_equal(http_server_active(g_srv), 3); /* with c[4]'s */
    http_server_free(g_srv, on_flag_closed, &closed);
    g_srv = NULL;
    assert_int_equal(g_s.done, 2);
    assert_int_equal(g_s.end[HTTP_END_SHUTDOWN], 2);
    assert_false(closed);
    run_until(flag_set, &closed);
    for (i = 0; i < 5; i++) {
        run_until(cli_eof, c[i]);
        cli_free(c[i]);
    }
    srv_stop();

    /* Freed from inside a handler: after it returns. */
    srv_start(&o);
    g_free_closed = false;
    c[0] = cli_connect();
    cli_sends(c[0], "GET /free HTTP/1.1\r\n\r\n");
    run_until(flag_set, &g_free_closed);
    g_srv = NULL;
    assert_int_equal(g_s.end[HTTP_END_SHUTDOWN], 1);
    run_until(cli_eof, c[0]);
    cli_free(c[0]);
    srv_stop();
}

/* Last: the loop is left with no handle of ours. */
static void
test_loop_left_clean(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_close((uv_handle_t *)&g_later_timer, NULL);
    uv_close((uv_handle_t *)&g_abort_timer, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_alive(&g_loop), 0);
    assert_int_equal(uv_loop_close(&g_loop), 0);
}

static int
setup(void **state)
{
    (void)state;
    if (uv_loop_init(&g_loop) != 0)
        return -1;
    uv_timer_init(&g_loop, &g_watchdog);
    uv_timer_init(&g_loop, &g_later_timer);
    uv_timer_init(&g_loop, &g_abort_timer);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_client_gone_once),
        cmocka_unit_test(test_stream_abort),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_accept_emfile),
        cmocka_unit_test(test_listen_toggle),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_free_in_flight),
        cmocka_unit_test(test_loop_left_clean),
    };

    signal(SIGPIPE, SIG_IGN);
    if (getenv("HTTP_SERVER_DEBUG") != NULL) {
        log_init("test_http_server", LL_DEBUG);
        log_tracing = TRACE_HTTP;
    }
    if (getenv("HTTP_SERVER_FILTER") != NULL)
        cmocka_set_test_filter(getenv("HTTP_SERVER_FILTER"));
    return cmocka_run_group_tests(tests, setup, NULL);
}
