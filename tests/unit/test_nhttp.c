/*
 * test_nhttp.c - herd-node's HTTP client against a scripted server on the
 * same libuv loop (loopback only): every framing, every failure the
 * client names (refused, timeouts, resets, caps, garbage), cancel, IPv6,
 * name resolution, and a real herd-sim. Each case runs on its own loop
 * and ends with uv_loop_close() == 0; on_done must fire exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "herd/buf.h"
#include "herd/fsutil.h"
#include "nhttp.h"

#define MAX_CONNS 8

/* --- the scripted server ------------------------------------------------- */

enum after {
    AFTER_CLOSE, /* FIN once the reply is out */
    AFTER_HANG,  /* keep the connection open, say nothing more */
    AFTER_RESET, /* RST once the reply is out */
};

struct conn {
    struct srv *s;
    uv_tcp_t tcp;
    uv_timer_t drip;
    uv_write_t wr;
    size_t sent;
    bool replying;
    bool open; /* tcp not yet closed */
    bool drip_open;
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    const char *reply; /* NULL: never answer */
    size_t reply_len;
    size_t drip; /* 0: one write; else bytes per loop turn */
    enum after after;
    int accepted;
    int eofs; /* connections the client ended */
    struct buf req;
    struct conn conns[MAX_CONNS];
};

static void conn_reply_more(struct conn *k);
static void conn_on_drip(uv_timer_t *t);

static void
conn_on_closed(uv_handle_t *h)
{
    (void)h;
}

static void
conn_close(struct conn *k)
{
    if (k->drip_open) {
        k->drip_open = false;
        uv_close((uv_handle_t *)&k->drip, conn_on_closed);
    }
    if (k->open) {
        k->open = false;
        uv_close((uv_handle_t *)&k->tcp, conn_on_closed);
    }
}

static void
conn_after(struct conn *k)
{
    if (k->s->after == AFTER_CLOSE) {
        conn_close(k);
    } else if (k->s->after == AFTER_RESET && k->open) {
        k->open = false;
        uv_tcp_close_reset(&k->tcp, conn_on_closed);
    }
}

static void
conn_on_write(uv_write_t *w, int status)
{
    struct conn *k = w->data;

    if (status != 0 || !k->open)
        return;
    if (k->sent < k->s->reply_len)
        uv_timer_start(&k->drip, conn_on_drip, 1, 0);
    else
        conn_after(k);
}

static void
conn_reply_more(struct conn *k)
{
    struct srv *s = k->s;
    size_t n = s->reply_len - k->sent;
    uv_buf_t b;

    if (!k->open)
        return;
    if (s->drip > 0 && n > s->drip)
        n = s->drip;
    b = uv_buf_init((char *)s->reply + k->sent, (unsigned)n);
    k->sent += n;
    k->wr.data = k;
    assert_int_equal(
        uv_write(&k->wr, (uv_stream_t *)&k->tcp, &b, 1, conn_on_write), 0);
}

static void
conn_on_drip(uv_timer_t *t)
{
    conn_reply_more(t->data);
}

/* The request is complete once its head and Content-Length bytes are in. */
static bool
request_complete(const struct buf *b)
{
    const char *end = b->data ? strstr(b->data, "\r\n\r\n") : NULL;
    const char *cl = b->data ? strstr(b->data, "Content-Length: ") : NULL;
    size_t want = 0;

    if (end == NULL)
        return false;
    if (cl != NULL && cl < end)
        want = strtoul(cl + 16, NULL, 10);
    return b->len >= (size_t)(end + 4 - b->data) + want;
}

static void
conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char mem[65536];

    (void)h;
    (void)hint;
    *b = uv_buf_init(mem, sizeof(mem));
}

static void
conn_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct conn *k = st->data;
    struct srv *s = k->s;

    if (n < 0) {
        s->eofs++;
        conn_close(k);
        return;
    }
    assert_int_equal(buf_append(&s->req, b->base, (size_t)n), 0);
    if (!k->replying && s->reply != NULL && request_complete(&s->req)) {
        k->replying = true;
        conn_reply_more(k);
    }
}

static void
srv_on_conn(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    struct conn *k;

    assert_int_equal(status, 0);
    assert_true(s->accepted < MAX_CONNS);
    k = &s->conns[s->accepted++];
    memset(k, 0, sizeof(*k));
    k->s = s;
    uv_tcp_init(s->loop, &k->tcp);
    uv_timer_init(s->loop, &k->drip);
    k->tcp.data = k;
    k->drip.data = k;
    k->open = k->drip_open = true;
    buf_reset(&s->req);
    assert_int_equal(uv_accept(l, (uv_stream_t *)&k->tcp), 0);
    uv_read_start((uv_stream_t *)&k->tcp, conn_alloc, conn_on_read);
}

/* Listens on ip (127.0.0.1, ::1, ...) port 0; false when ip cannot be
 * bound here (no IPv6 in this sandbox). */
static bool
srv_start(struct srv *s, uv_loop_t *loop, const char *ip, const char *reply,
          enum after after)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->reply = reply;
    s->reply_len = reply ? strlen(reply) : 0;
    s->after = after;
    buf_init(&s->req, 1 << 20);
    if (strchr(ip, ':') != NULL)
        assert_int_equal(uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss), 0);
    else
        assert_int_equal(uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss), 0);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    if (uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, 8, srv_on_conn) != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        return false;
    }
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    s->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return true;
}

static void
srv_stop(struct srv *s)
{
    for (int i = 0; i < s->accepted; i++)
        conn_close(&s->conns[i]);
    uv_close((uv_handle_t *)&s->listener, NULL);
    buf_cleanup(&s->req);
}

/* --- the client side ----------------------------------------------------- */

struct result {
    int calls;
    int err;
    int status;
    char msg[400];
    char body[512];
    bool saw_done; /* the body has "done":true (NDJSON's last line) */
    size_t len;
    char ctype[64], xtest[64];
    bool has_missing;
};

static void
on_done(struct nhttp_req *r, int err, const char *msg, void *ud)
{
    struct result *res = ud;
    const char *ct = nhttp_header(r, "content-TYPE");
    const char *xt = nhttp_header(r, "X-Test");
    const char *body;

    res->calls++;
    res->err = err;
    res->status = nhttp_status(r);
    snprintf(res->msg, sizeof(res->msg), "%s", msg);
    body = nhttp_body(r, &res->len);
    snprintf(res->body, sizeof(res->body), "%s", body);
    res->saw_done = strstr(body, "\"done\":true") != NULL;
    snprintf(res->ctype, sizeof(res->ctype), "%s", ct ? ct : "");
    snprintf(res->xtest, sizeof(res->xtest), "%s", xt ? xt : "");
    res->has_missing = nhttp_header(r, "X-Missing") != NULL;
    nhttp_cancel(r); /* a no-op from inside on_done */
}

struct fix {
    uv_loop_t loop;
    struct nhttp *c;
    struct srv srv;
    char url[400];
};

static void
fix_init(struct fix *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->c = nhttp_new(&f->loop);
    assert_non_null(f->c);
}

static void
on_client_closed(void *ud)
{
    (*(int *)ud)++;
}

/* Frees the client and the server; the loop must then close cleanly. */
static void
fix_done(struct fix *f, bool srv)
{
    int closed = 0;

    if (srv)
        srv_stop(&f->srv);
    nhttp_free(f->c, on_client_closed, &closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Runs the loop until res has its answer (10 s at most). */
static void
wait_done(struct fix *f, struct result *res)
{
    uint64_t deadline = now_ms() + 10000;

    while (res->calls == 0 && now_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(res->calls, 1);
}

static struct nhttp_req *
start(struct fix *f, struct nhttp_opts *o, struct result *res)
{
    char err[300] = "";
    struct nhttp_req *r;

    memset(res, 0, sizeof(*res));
    o->on_done = on_done;
    o->ud = res;
    if (o->url == NULL)
        o->url = f->url;
    r = nhttp_start(f->c, o, err, sizeof(err));
    if (r == NULL)
        fail_msg("nhttp_start: %s", err);
    assert_int_equal(res->calls, 0); /* never from inside nhttp_start */
    return r;
}

/* One request against a server started with reply/after; the result. */
static void
exchange(const char *reply, enum after after, size_t drip, struct nhttp_opts *o,
         struct result *res)
{
    struct fix f;

    fix_init(&f);
    assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1", reply, after));
    f.srv.drip = drip;
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/x", f.srv.port);
    (void)start(&f, o, res);
    o->url = NULL; /* it pointed at f.url */
    wait_done(&f, res);
    fix_done(&f, true);
    assert_int_equal(res->calls, 1); /* and not again while closing */
}

/* --- URLs ---------------------------------------------------------------- */

static void
test_parse_url(void **state)
{
    struct nhttp_url u;
    char err[300];

    (void)state;
    assert_int_equal(
        nhttp_parse_url("http://[::1]:8080/a?b=1#f", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.authority, "[::1]:8080");
    assert_int_equal(u.path_len, 6);
    assert_memory_equal(u.path, "/a?b=1", 6);
    assert_int_equal(nhttp_parse_url("localhost:11434", &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 11434);
    assert_int_equal(u.path_len, 0);
    assert_int_equal(nhttp_parse_url("HTTP://Gpu-Box", &u, err, sizeof(err)),
                     0);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.authority, "Gpu-Box");

    assert_int_equal(
        nhttp_parse_url("https://10.0.0.5:11435", &u, err, sizeof(err)),
        -ENOTSUP);
    assert_non_null(strstr(err, "https is not supported by herd-node; put "
                                "the coordinator behind plain http on the "
                                "LAN or use a local proxy"));
    static const char *const bad[] = {
        "",
        "http://",
        "http://:80/",
        "http://h:0",
        "http://h:99999",
        "http://h:8x",
        "ftp://h/",
        "http://u:p@h/",
        "http://h h/",
        "http://h\r\nX: y/",
        "http://[::1/",
        "http://[::1]x/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (nhttp_parse_url(bad[i], &u, err, sizeof(err)) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(strlen(err) > 0);
    }
}

static void
test_start_refuses_bad_options(void **state)
{
    static const char *const crlf[] = {"X-A: 1\r\nX-B: 2", NULL};
    static const char *const host[] = {"host: evil", NULL};
    static const char *const noname[] = {": v", NULL};
    const char *const *bad[] = {crlf, host, noname};
    struct fix f;
    char err[300];
    struct nhttp_opts o = {.url = "http://127.0.0.1:9/", .on_done = on_done};

    (void)state;
    fix_init(&f);
    for (size_t i = 0; i < 3; i++) {
        o.headers = bad[i];
        err[0] = '\0';
        assert_null(nhttp_start(f.c, &o, err, sizeof(err)));
        assert_non_null(strstr(err, "header"));
    }
    o.headers = NULL;
    o.url = "https://127.0.0.1:9/";
    assert_null(nhttp_start(f.c, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "https is not supported by herd-node"));
    o.url = "http://127.0.0.1:9/";
    o.method = "get it";
    assert_null(nhttp_start(f.c, &o, err, sizeof(err)));
    assert_int_equal(nhttp_active(f.c), 0);
    fix_done(&f, false);
}

/* --- framings --------------------------------------------------------------
 */

static void
test_content_length_and_request(void **state)
{
    static const char *const hdrs[] = {"Authorization: Bearer t0k",
                                       "Content-Type: application/json", NULL};
    static const char reply[] = "HTTP/1.1 200 OK\r\n"
                                "Content-Type:  text/plain \r\n"
                                "x-test: Yes\r\n"
                                "Content-Length: 5\r\n"
                                "\r\n"
                                "helloIGNORED";
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.method = "POST",
                           .headers = hdrs,
                           .body = "{\"a\":1}",
                           .body_len = 7,
                           .total_timeout_ms = 5000};

    (void)state;
    fix_init(&f);
    assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1", reply, AFTER_HANG));
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/heartbeat?x=1",
             f.srv.port);
    (void)start(&f, &o, &res);
    assert_int_equal(nhttp_active(f.c), 1);
    /* The server keeps the connection open: Content-Length ends it. */
    wait_done(&f, &res);
    assert_int_equal(nhttp_active(f.c), 0);
    assert_int_equal(res.err, 0);
    assert_string_equal(res.msg, "");
    assert_int_equal(res.status, 200);
    assert_string_equal(res.ctype, "text/plain");
    assert_string_equal(res.xtest, "Yes");
    assert_false(res.has_missing);
    assert_int_equal(res.len, 5);
    assert_string_equal(res.body, "hello");
    /* What went on the wire. */
    assert_non_null(strstr(f.srv.req.data, "POST /heartbeat?x=1 HTTP/1.1\r\n"));
    {
        char host[64];

        snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", f.srv.port);
        assert_non_null(strstr(f.srv.req.data, host));
    }
    assert_non_null(strstr(f.srv.req.data, "\r\nConnection: close\r\n"));
    assert_non_null(strstr(f.srv.req.data, "\r\nContent-Length: 7\r\n"));
    assert_non_null(
        strstr(f.srv.req.data, "\r\nAuthorization: Bearer t0k\r\n"));
    assert_non_null(strstr(f.srv.req.data, "\r\n\r\n{\"a\":1}"));
    /* The client closes its end once done. */
    while (f.srv.eofs == 0)
        uv_run(&f.loop, UV_RUN_ONCE);
    fix_done(&f, true);
}

static void
test_chunked_dripped(void **state)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\n"
                                "Transfer-Encoding: gzip, Chunked\r\n"
                                "Content-Length: 3\r\n"
                                "\r\n"
                                "5;name=value\r\nhello\r\n"
                                "6\r\n world\r\n"
                                "1A \r\n abcdefghijklmnopqrstuvwxy\r\n"
                                "0\r\nX-Trailer: 1\r\n\r\n";
    struct result res;
    struct nhttp_opts o = {0};

    (void)state;
    /* Three bytes per write: every state of the decoder meets a split. */
    exchange(reply, AFTER_HANG, 3, &o, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "hello world abcdefghijklmnopqrstuvwxy");
    assert_int_equal(res.len, 37);
    /* The same in one piece. */
    exchange(reply, AFTER_HANG, 0, &o, &res);
    assert_int_equal(res.err, 0);
    assert_string_equal(res.body, "hello world abcdefghijklmnopqrstuvwxy");
}

static void
test_close_delimited_and_interim(void **state)
{
    struct result res;
    struct nhttp_opts o = {0};

    (void)state;
    exchange("HTTP/1.0 200 OK\nX-Test: lf-only\n\nuntil the end", AFTER_CLOSE,
             4, &o, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.xtest, "lf-only");
    assert_string_equal(res.body, "until the end");

    exchange("HTTP/1.1 100 Continue\r\nX-Test: interim\r\n\r\n"
             "HTTP/1.1 204 No Content\r\n\r\n",
             AFTER_HANG, 0, &o, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 204);
    assert_string_equal(res.xtest, ""); /* the interim's headers are gone */
    assert_int_equal(res.len, 0);
    assert_string_equal(res.body, "");

    /* HEAD: a Content-Length but no body follows. */
    o.method = "HEAD";
    exchange("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", AFTER_HANG, 0, &o,
             &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.len, 0);
}

/* --- failures ------------------------------------------------------------- */

static void
test_refused(void **state)
{
    struct fix f;
    struct result res;
    struct nhttp_opts o = {0};
    int port;

    (void)state;
    fix_init(&f);
    /* A port that was just free: nothing listens there now. */
    assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1", NULL, AFTER_HANG));
    port = f.srv.port;
    srv_stop(&f.srv);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/", port);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, -ECONNREFUSED);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.msg, "connection refused"));
    assert_non_null(strstr(res.msg, "127.0.0.1:"));
    /* localhost: 127.0.0.1 and then ::1 are tried; both refuse. */
    snprintf(f.url, sizeof(f.url), "http://localhost:%d/", port);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, -ECONNREFUSED);
    assert_non_null(strstr(res.msg, "localhost:"));
    fix_done(&f, false);
}

static void
test_total_timeout(void **state)
{
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 200};
    uint64_t t0 = now_ms(), dt;

    (void)state;
    /* Accepts, reads, never answers. */
    exchange(NULL, AFTER_HANG, 0, &o, &res);
    dt = now_ms() - t0;
    assert_int_equal(res.err, -ETIMEDOUT);
    assert_non_null(strstr(res.msg, "within 200 ms"));
    assert_true(dt >= 190 && dt < 5000);
    /* Headers and part of the body, then silence. */
    exchange("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", AFTER_HANG, 0,
             &o, &res);
    assert_int_equal(res.err, -ETIMEDOUT);
    assert_int_equal(res.status, 200); /* the head had arrived */
}

/*
 * A connect that never completes, on loopback: a listener with a backlog
 * of 0 that never accepts, whose queue a first connection fills; the
 * kernel drops the next SYNs. Skipped where the kernel queues it anyway.
 */
static void
test_connect_timeout(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.connect_timeout_ms = 300, .total_timeout_ms = 1000};
    int lfd, cfd;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fix_init(&f);
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    fix_done(&f, false);
    close(cfd);
    close(lfd);
    if (strstr(res.msg, "cannot connect") == NULL)
        skip(); /* this kernel queued the connection after all */
    assert_int_equal(res.err, -ETIMEDOUT);
    assert_non_null(strstr(res.msg, "cannot connect to 127.0.0.1:"));
    assert_non_null(strstr(res.msg, "within 300 ms"));
}

static void
test_reset_and_truncated(void **state)
{
    static const char partial[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                                  "\r\npartial";
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 5000};

    (void)state;
    exchange(partial, AFTER_RESET, 0, &o, &res);
    assert_int_equal(res.err, -ECONNRESET);
    assert_true(strlen(res.msg) > 0);

    exchange(partial, AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, -ECONNRESET);
    assert_non_null(strstr(res.msg, "after 7 of 100 body bytes"));

    exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
             AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, -ECONNRESET);
    assert_non_null(strstr(res.msg, "chunked"));

    exchange("HTTP/1.1 200 OK\r\nX-Half", AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, -ECONNRESET);
    assert_non_null(strstr(res.msg, "headers"));

    exchange("", AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, -ECONNRESET);
    assert_non_null(strstr(res.msg, "without answering"));
}

static void
test_caps(void **state)
{
    char big[1400];
    struct result res;
    struct nhttp_opts o = {.max_header = 256, .max_body = 10};

    (void)state;
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: %01000d\r\n\r\n", 0);
    exchange(big, AFTER_HANG, 0, &o, &res);
    assert_int_equal(res.err, -E2BIG);
    assert_non_null(strstr(res.msg, "over 256 bytes"));

    /* Too many header lines, each short. */
    {
        struct buf b;

        buf_init(&b, 4096);
        assert_int_equal(buf_appends(&b, "HTTP/1.1 200 OK\r\n"), 0);
        for (int i = 0; i <= NHTTP_MAX_HEADERS; i++)
            assert_int_equal(buf_appendf(&b, "X-%d: %d\r\n", i, i), 0);
        assert_int_equal(buf_appends(&b, "\r\n"), 0);
        o.max_header = 0;
        exchange(b.data, AFTER_HANG, 0, &o, &res);
        buf_cleanup(&b);
        assert_int_equal(res.err, -E2BIG);
        assert_non_null(strstr(res.msg, "header lines"));
    }

    /* A declared length over the cap fails before any body byte. */
    exchange("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", AFTER_HANG, 0, &o,
             &res);
    assert_int_equal(res.err, -E2BIG);
    assert_int_equal(res.status, 200);
    exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n",
             AFTER_HANG, 0, &o, &res);
    assert_int_equal(res.err, -E2BIG);
    exchange("HTTP/1.1 200 OK\r\n\r\n0123456789A", AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, -E2BIG);
    assert_non_null(strstr(res.msg, "over 10 bytes"));
    /* Exactly at the cap is fine. */
    exchange("HTTP/1.1 200 OK\r\n\r\n0123456789", AFTER_CLOSE, 0, &o, &res);
    assert_int_equal(res.err, 0);
    assert_string_equal(res.body, "0123456789");
}

static void
test_garbage(void **state)
{
    static const char *const replies[] = {
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "11111111111111111\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 099 Early\r\n\r\n",
    };
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 5000};

    (void)state;
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        exchange(replies[i], AFTER_HANG, 0, &o, &res);
        if (res.err != -EPROTO)
            fail_msg("reply %zu: err %d (%s), not -EPROTO", i, res.err,
                     res.msg);
        assert_true(strlen(res.msg) > 0);
    }
    /* A NUL inside the head: the server sends it as raw bytes. */
    {
        struct fix f;
        static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";

        fix_init(&f);
        assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1", nul, AFTER_HANG));
        f.srv.reply_len = sizeof(nul) - 1;
        snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/", f.srv.port);
        (void)start(&f, &o, &res);
        wait_done(&f, &res);
        fix_done(&f, true);
        assert_int_equal(res.err, -EPROTO);
        assert_non_null(strstr(res.msg, "NUL"));
    }
}

/* --- cancel and free ------------------------------------------------------ */

static void
test_cancel_and_free(void **state)
{
    struct fix f;
    struct result a, b, c;
    struct nhttp_opts o = {0};
    struct nhttp_req *ra;
    int closed = 0;

    (void)state;
    fix_init(&f);
    assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1", NULL, AFTER_HANG));
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/", f.srv.port);
    /* Cancelled before it even connected. */
    nhttp_cancel(start(&f, &o, &a));
    assert_int_equal(nhttp_active(f.c), 0);
    /* Cancelled once the server has it: the server sees the close. */
    ra = start(&f, &o, &b);
    while (f.srv.req.len == 0)
        uv_run(&f.loop, UV_RUN_ONCE);
    nhttp_cancel(ra);
    while (f.srv.eofs < f.srv.accepted)
        uv_run(&f.loop, UV_RUN_ONCE);
    /* Freed with one in flight: no on_done either; closed fires once. */
    (void)start(&f, &o, &c);
    assert_int_equal(nhttp_active(f.c), 1);
    srv_stop(&f.srv);
    nhttp_free(f.c, on_client_closed, &closed);
    assert_int_equal(closed, 0); /* handles still closing */
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(a.calls + b.calls + c.calls, 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

/* on_done may free the whole client, its own request included. */
struct free_in_cb {
    struct nhttp *c;
    int calls, closed;
};

static void
free_on_done(struct nhttp_req *r, int err, const char *msg, void *ud)
{
    struct free_in_cb *x = ud;

    (void)r;
    (void)err;
    (void)msg;
    x->calls++;
    nhttp_free(x->c, on_client_closed, &x->closed);
    assert_int_equal(x->closed, 0); /* this request is still open */
}

static void
test_free_inside_on_done(void **state)
{
    struct fix f;
    struct srv silent;
    struct free_in_cb x = {0};
    struct nhttp_opts o = {.on_done = free_on_done, .ud = &x};
    struct result other;
    struct nhttp_opts o2 = {0};
    char url2[64];

    (void)state;
    fix_init(&f);
    assert_true(srv_start(&f.srv, &f.loop, "127.0.0.1",
                          "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                          AFTER_CLOSE));
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d/", f.srv.port);
    x.c = f.c;
    o.url = f.url;
    assert_non_null(nhttp_start(f.c, &o, NULL, 0));
    /* A second one, to a server that never answers: cancelled by the
     * free, no on_done. */
    assert_true(srv_start(&silent, &f.loop, "127.0.0.1", NULL, AFTER_HANG));
    snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/", silent.port);
    o2.url = url2;
    (void)start(&f, &o2, &other);
    while (x.calls == 0)
        uv_run(&f.loop, UV_RUN_ONCE);
    srv_stop(&f.srv);
    srv_stop(&silent);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.closed, 1);
    assert_int_equal(other.calls, 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

/* --- addresses ------------------------------------------------------------ */

static void
test_ipv6_and_localhost_fallback(void **state)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
                                "v6";
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 5000};

    (void)state;
    fix_init(&f);
    if (!srv_start(&f.srv, &f.loop, "::1", reply, AFTER_CLOSE)) {
        fix_done(&f, false);
        skip(); /* no IPv6 loopback here */
    }
    snprintf(f.url, sizeof(f.url), "http://[::1]:%d/", f.srv.port);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, 0);
    assert_string_equal(res.body, "v6");
    {
        char host[64];

        snprintf(host, sizeof(host), "\r\nHost: [::1]:%d\r\n", f.srv.port);
        assert_non_null(strstr(f.srv.req.data, host));
    }
    /* localhost: 127.0.0.1 refuses (nobody there), ::1 answers. */
    snprintf(f.url, sizeof(f.url), "http://localhost:%d/", f.srv.port);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    fix_done(&f, true);
    if (res.err == -ECONNREFUSED)
        skip(); /* that port is taken on 127.0.0.1 by someone else */
    assert_int_equal(res.err, 0);
    assert_string_equal(res.body, "v6");
}

/* A name that this machine's resolver maps to a loopback address (the
 * host name, usually in /etc/hosts), through uv_getaddrinfo. */
static void
test_resolved_name(void **state)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char name[256], ip[64];
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 5000};
    const struct sockaddr_in *sin;

    (void)state;
    assert_int_equal(gethostname(name, sizeof(name)), 0);
    if (getaddrinfo(name, NULL, &hints, &ai) != 0)
        skip();
    sin = (const struct sockaddr_in *)ai->ai_addr;
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
    freeaddrinfo(ai);
    if (strncmp(ip, "127.", 4) != 0)
        skip(); /* loopback only */
    fix_init(&f);
    assert_true(srv_start(&f.srv, &f.loop, ip,
                          "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nname",
                          AFTER_CLOSE));
    snprintf(f.url, sizeof(f.url), "http://%s:%d/", name, f.srv.port);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, 0);
    assert_string_equal(res.body, "name");
    /* Cancelled while the resolver works: its answer is dropped. */
    nhttp_cancel(start(&f, &o, &res));
    fix_done(&f, true);
    assert_int_equal(res.calls, 0);
}

static void
test_unresolvable(void **state)
{
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.connect_timeout_ms = 3000};

    (void)state;
    fix_init(&f);
    /* RFC 6761: .invalid never resolves. Without DNS this may also end
     * in the connect timeout; both say "resolve" or "connect". */
    snprintf(f.url, sizeof(f.url), "http://no-such-host.invalid/");
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    fix_done(&f, false);
    if (res.err == -ETIMEDOUT)
        assert_non_null(strstr(res.msg, "cannot connect"));
    else
        assert_int_equal(res.err, -EHOSTUNREACH);
    assert_non_null(strstr(res.msg, "no-such-host.invalid"));
}

/* --- against a real herd-sim ---------------------------------------------- */

static pid_t
start_sim(char *url, size_t n, const char *dir)
{
    const char *bindir = getenv("HERD_BIN_DIR");
    char bin[512], ready[512], *txt = NULL;
    struct timespec ts = {0, 10 * 1000 * 1000};
    size_t len;
    pid_t pid;

    assert_non_null(bindir);
    snprintf(bin, sizeof(bin), "%s/herd-sim", bindir);
    snprintf(ready, sizeof(ready), "%s/ready", dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(bin, bin, "--port", "0", "--ready-file", ready, "--time-scale",
              "0", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 2000 && fs_read_file(ready, 256, &txt, &len) != 0; i++)
        nanosleep(&ts, NULL);
    assert_non_null(txt);
    txt[strcspn(txt, "\n")] = '\0';
    snprintf(url, n, "http://%s", txt);
    free(txt);
    return pid;
}

static pid_t sim_pid; /* killed by the teardown, whatever happened */

static int
stop_sim(void **state)
{
    int status = 0;

    (void)state;
    if (sim_pid <= 0)
        return 0;
    kill(sim_pid, SIGTERM);
    waitpid(sim_pid, &status, 0);
    sim_pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void
test_against_herd_sim(void **state)
{
    char dir[] = "/tmp/test_nhttp.XXXXXX", base[300], url[400];
    static const char gen[] = "{\"model\":\"llama3.2:3b\",\"prompt\":\"hi\","
                              "\"stream\":true}";
    struct fix f;
    struct result res;
    struct nhttp_opts o = {.total_timeout_ms = 10000, .max_body = 1 << 20};

    (void)state;
    assert_non_null(mkdtemp(dir));
    sim_pid = start_sim(base, sizeof(base), dir);
    fix_init(&f);
    snprintf(url, sizeof(url), "%s/api/version", base);
    o.url = url;
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"version\""));
    assert_non_null(strstr(res.ctype, "application/json"));
    /* A streamed answer (NDJSON, chunked by the server) to a POST. */
    snprintf(url, sizeof(url), "%s/api/generate", base);
    o.method = "POST";
    o.body = gen;
    o.body_len = strlen(gen);
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 200);
    assert_true(res.saw_done);
    assert_true(res.len > 512);
    /* A 404 is an answer, not an error. */
    snprintf(url, sizeof(url), "%s/no/such/path", base);
    o.method = NULL;
    o.body = NULL;
    o.body_len = 0;
    (void)start(&f, &o, &res);
    wait_done(&f, &res);
    assert_int_equal(res.err, 0);
    assert_int_equal(res.status, 404);
    fix_done(&f, false);
    assert_int_equal(stop_sim(NULL), 0);
    snprintf(url, sizeof(url), "rm -rf %s", dir);
    assert_int_equal(system(url), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_start_refuses_bad_options),
        cmocka_unit_test(test_content_length_and_request),
        cmocka_unit_test(test_chunked_dripped),
        cmocka_unit_test(test_close_delimited_and_interim),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_reset_and_truncated),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_cancel_and_free),
        cmocka_unit_test(test_free_inside_on_done),
        cmocka_unit_test(test_ipv6_and_localhost_fallback),
        cmocka_unit_test(test_resolved_name),
        cmocka_unit_test(test_unresolvable),
        cmocka_unit_test_teardown(test_against_herd_sim, stop_sim),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
