/*
 * http_client.c - outgoing HTTP/1.1 on the libuv loop (see http_client.h
 * and docs/internals/http_client.md).
 *
 * Plain http:// only, over uv_tcp_t. The objects:
 *
 *   struct http_client  one uv_timer_t (every deadline of every call and
 *                       the idle limit of the pool), one uv_idle_t (work
 *                       that must not run inside the caller's function:
 *                       bytes held back by a pause, failures found while
 *                       starting), the 64 KiB read buffer every connection
 *                       reads into, and the pool of idle connections.
 *   struct hc_conn      one TCP connection: its uv_tcp_t, one request slot
 *                       (the connect, then at most one write), and the
 *                       call it serves, or none while idle in the pool.
 *   struct http_call    one request and its response: the request bytes
 *                       (kept until no retry is possible), the parser's
 *                       state, the final response's headers and, when the
 *                       caller did not stream it, the body.
 *
 * A call's states:
 *
 *   RESOLVING   uv_getaddrinfo in flight (IP literals and "localhost"
 *               skip it)
 *   CONNECTING  uv_tcp_connect to the next address; a failed attempt
 *               closes that connection and tries the next address
 *   HEAD        request written (or being written); status line and
 *               headers arriving; 1xx answers skipped
 *   BODY        by Content-Length, chunked, or until the server closes
 *   COMPLETE    the whole response is in: the connection goes back to
 *               the pool (or is closed), then on_done
 *
 * Re-entrancy: every libuv callback that can reach a user callback is
 * bracketed by hc_enter()/hc_leave(). A call that ends (on_done returned,
 * cancelled, or the client freed) leaves c->calls at once and is freed
 * when the outermost bracket is left, so the code below a user callback
 * may always look at the call's flags (over) to learn that it must stop.
 * Connections are freed only in their close callback and the client only
 * once every handle has closed and every resolver has answered, both of
 * which happen from the loop, never below one of our frames.
 *
 * Keep-alive: after a complete response that both sides allow to be kept
 * (HTTP/1.1 without "Connection: close", HTTP/1.0 with keep-alive, and
 * a body with a known end), the connection joins the pool under its
 * "host:port", still reading, so that the server closing it (or sending
 * stray bytes) drops it at once. A request that fails on a reused
 * connection before any byte of its response arrived (EOF, ECONNRESET,
 * EPIPE: the server closed the connection as we sent) is sent again, once,
 * on a new connection.
 */
#include "herd/http_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "herd/buf.h"
#include "herd/log.h"

#define HC_DEF_MAX_HEADER (64u * 1024u)
#define HC_DEF_MAX_BUFFER (8u * 1024u * 1024u)
#define HC_DEF_CONNECT_MS 300000u /* as curl's default */
#define HC_READ_BUF       (64u * 1024u)
#define HC_POOL_MAX       256u   /* idle connections, all hosts together */
#define HC_POOL_IDLE_MS   60000u /* an idle connection is closed after */
#define HC_POOL_BUCKETS   64u
#define HC_MAX_ADDRS      8u
#define HC_MAX_INTERIM    8u    /* 1xx answers skipped before giving up */
#define HC_CHUNK_LINE_MAX 1024u /* one chunk-size line, extensions included */
#define HC_REQ_HEAD_MAX   (64u * 1024u) /* request line and headers */
#define HC_METHOD_MAX     32u
#define HC_URL_HOST_MAX   255u
#define HC_MSG_MAX        320u

#define HC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum hc_state { HC_RESOLVING, HC_CONNECTING, HC_HEAD, HC_BODY, HC_COMPLETE };

enum hc_framing { HC_FR_NONE, HC_FR_LENGTH, HC_FR_CHUNKED, HC_FR_CLOSE };

enum hc_chunk {
    HC_CH_SIZE,    /* the chunk-size line */
    HC_CH_DATA,    /* remaining bytes of chunk data */
    HC_CH_DATA_CR, /* the CRLF after the data */
    HC_CH_DATA_LF,
    HC_CH_TRAILER /* trailer lines until an empty one */
};

union hc_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

struct hc_conn {
    uv_tcp_t tcp;
    union { /* never both at once: the connect, then the request */
        uv_connect_t connect;
        uv_write_t write;
    } req;
    struct http_client *c;          /* borrowed */
    struct http_call *call;         /* served now; NULL when idle */
    TAILQ_ENTRY(hc_conn) pool_link; /* c->pool, oldest first */
    LIST_ENTRY(hc_conn) bucket_link;
    uint64_t idle_since; /* loop ms */
    uint32_t hash;       /* of key */
    unsigned served;     /* complete responses on this connection */
    bool reading : 1;
    bool writing : 1; /* a uv_write of the request is in flight */
    bool write_failed : 1;
    bool pooled : 1;
    bool closing : 1;
    char key[]; /* "host:port" */
};

/* A resolver request outlives a cancelled call: call is then NULL. */
struct hc_resolve {
    uv_getaddrinfo_t req;
    struct http_client *c;
    struct http_call *call;
};

struct http_call {
    TAILQ_ENTRY(http_call) link;       /* c->calls, then c->dead */
    TAILQ_ENTRY(http_call) ready_link; /* c->ready while queued */
    struct http_call *expired_next;    /* the timer's list */
    struct http_client *c;             /* borrowed */
    struct hc_conn *conn;              /* borrowed: the one serving us */
    struct hc_resolve *res;            /* in flight, or NULL */
    http_call_response_cb on_response;
    http_call_data_cb on_data;
    http_call_done_cb on_done;
    void *ud;
    char *host;           /* owned, one block with where */
    const char *where;    /* "host:port", also the pool's key */
    union hc_addr *addrs; /* owned while connecting */
    char *req;            /* owned: the request, while a retry may need it */
    size_t req_len;
    char *held; /* owned: raw bytes read but held by a pause */
    size_t held_len;
    char *pend_msg; /* owned: a failure found while starting */
    int pend_err;
    int status;
    int connect_err; /* libuv error of the last failed attempt */
    uint32_t hash;   /* of where */
    uint16_t port;
    uint8_t n_addrs, next_addr;
    uint8_t n_interim;
    unsigned connect_ms, total_ms;
    uint64_t connect_deadline; /* loop ms, 0: none */
    uint64_t total_deadline;
    uint64_t remaining; /* LENGTH: body bytes due; CHUNKED: of this chunk */
    uint64_t received;  /* response bytes on the current connection */
    size_t max_body;    /* 0: none */
    size_t body_bytes;
    size_t ch_line; /* bytes of the current chunk-size/trailer line */
    size_t trailer_bytes;
    struct buf head;     /* raw head, then "name\0value\0"... */
    struct buf body;     /* the body when on_data is NULL */
    uint8_t state;       /* enum hc_state */
    uint8_t framing;     /* enum hc_framing */
    uint8_t ch;          /* enum hc_chunk */
    bool head_only : 1;  /* HEAD: no body comes back */
    bool keep_alive : 1; /* the connection may serve another call */
    bool eoh_nl : 1;     /* head scan: the last line ended */
    bool ch_digits : 1;
    bool ch_after : 1;
    bool ch_ext : 1;
    bool refused : 1; /* some address refused the connection */
    bool retried : 1;
    bool starting : 1; /* inside http_call_start: no on_done */
    bool ready : 1;    /* in c->ready */
    bool paused : 1;
    bool over : 1;       /* done, failed or cancelled: nothing more */
    bool hdrs_ready : 1; /* head holds the final response's headers */
};

TAILQ_HEAD(hc_calls, http_call);

struct http_client {
    uv_loop_t *loop; /* borrowed */
    uv_timer_t timer;
    uv_idle_t idle;
    struct hc_calls calls; /* started, not over */
    struct hc_calls dead;  /* over, freed at the outermost hc_leave */
    struct hc_calls ready; /* work for the idle handle */
    TAILQ_HEAD(, hc_conn) pool;
    LIST_HEAD(, hc_conn) buckets[HC_POOL_BUCKETS];
    size_t ncalls;
    size_t n_pooled;
    uint64_t timer_due; /* loop ms the timer is set for, 0: none */
    unsigned depth;     /* inside our callbacks */
    unsigned handles;   /* uv handles not yet closed */
    unsigned resolving; /* resolver requests not yet answered */
    bool freeing;
    void (*closed)(void *);
    void *closed_ud;
    char rbuf[HC_READ_BUF];
};

static void hc_connect_start(struct http_call *call);
static void hc_connect_next(struct http_call *call);
static void hc_send(struct http_call *call);
static void hc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void hc_on_timer(uv_timer_t *t);

/* --- the client's lifetime ------------------------------------------------ */

static void
hc_maybe_release(struct http_client *c)
{
    void (*closed)(void *) = c->closed;
    void *ud = c->closed_ud;

    if (!c->freeing || c->handles > 0 || c->resolving > 0)
        return;
    free(c);
    if (closed != NULL)
        closed(ud);
}

static void
hc_on_handle_closed(uv_handle_t *h)
{
    struct http_client *c = h->data;

    c->handles--;
    hc_maybe_release(c);
}

static void
hc_call_free(struct http_call *call)
{
    free(call->host);
    free(call->addrs);
    free(call->req);
    free(call->held);
    free(call->pend_msg);
    buf_cleanup(&call->head);
    buf_cleanup(&call->body);
    free(call);
}

static void
hc_enter(struct http_client *c)
{
    c->depth++;
}

static void
hc_leave(struct http_client *c)
{
    struct http_call *call;

    if (--c->depth > 0)
        return;
    while ((call = TAILQ_FIRST(&c->dead)) != NULL) {
        TAILQ_REMOVE(&c->dead, call, link);
        hc_call_free(call);
    }
}

/* The call leaves c->calls; freed now, or once our frames are left. */
static void
hc_call_bury(struct http_call *call)
{
    struct http_client *c = call->c;

    if (call->ready) {
        TAILQ_REMOVE(&c->ready, call, ready_link);
        call->ready = false;
    }
    TAILQ_REMOVE(&c->calls, call, link);
    if (c->depth > 0)
        TAILQ_INSERT_TAIL(&c->dead, call, link);
    else
        hc_call_free(call);
}

/* The call stops counting as active. */
static void
hc_count_down(struct http_client *c)
{
    /* An idle client must not keep the loop alive with its timer. */
    if (--c->ncalls == 0 && !c->freeing)
        uv_unref((uv_handle_t *)&c->timer);
}

/* --- deadlines: one timer for the whole client ---------------------------- */

static uint64_t
hc_call_due(const struct http_call *call)
{
    uint64_t due = call->total_deadline;

    if (call->connect_deadline != 0 &&
        (due == 0 || call->connect_deadline < due))
        due = call->connect_deadline;
    return due;
}

/* Makes sure the timer fires no later than due (loop ms). */
static void
hc_timer_want(struct http_client *c, uint64_t due)
{
    uint64_t now;

    if (c->freeing || (c->timer_due != 0 && c->timer_due <= due))
        return;
    c->timer_due = due;
    now = uv_now(c->loop);
    uv_timer_start(&c->timer, hc_on_timer, due > now ? due - now : 0, 0);
}

/* --- connections and the pool --------------------------------------------- */

static uint32_t
hc_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void
hc_conn_on_closed(uv_handle_t *h)
{
    struct hc_conn *conn = h->data;
    struct http_client *c = conn->c;

    free(conn);
    c->handles--;
    hc_maybe_release(c);
}

static void
hc_pool_remove(struct hc_conn *conn)
{
    struct http_client *c = conn->c;

    TAILQ_REMOVE(&c->pool, conn, pool_link);
    LIST_REMOVE(conn, bucket_link);
    c->n_pooled--;
    conn->pooled = false;
    uv_ref((uv_handle_t *)&conn->tcp);
}

/* Closes the connection; its memory goes in the close callback. A write
 * in flight is cancelled: libuv reads its bytes no more. */
static void
hc_conn_close(struct hc_conn *conn)
{
    if (conn->closing)
        return;
    if (conn->pooled)
        hc_pool_remove(conn);
    conn->closing = true;
    conn->call = NULL;
    uv_close((uv_handle_t *)&conn->tcp, hc_conn_on_closed);
}

static struct hc_conn *
hc_conn_new(struct http_client *c, const char *key, uint32_t hash, int *rc)
{
    size_t klen = strlen(key);
    struct hc_conn *conn = calloc(1, sizeof(*conn) + klen + 1);

    if (conn == NULL) {
        *rc = UV_ENOMEM;
        return NULL;
    }
    *rc = uv_tcp_init(c->loop, &conn->tcp);
    if (*rc != 0) {
        free(conn);
        return NULL;
    }
    conn->tcp.data = conn;
    conn->c = c;
    conn->hash = hash;
    memcpy(conn->key, key, klen + 1);
    c->handles++;
    return conn;
}

static void
hc_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct hc_conn *conn = h->data;

    (void)hint;
    /* One buffer for every connection: a read is parsed before the next
     * one starts, and what a pause holds back is copied out. */
    *b = uv_buf_init(conn->c->rbuf, HC_READ_BUF);
}

static void
hc_read_start(struct hc_conn *conn)
{
    if (conn->reading || conn->closing)
        return;
    if (uv_read_start((uv_stream_t *)&conn->tcp, hc_on_alloc, hc_on_read) == 0)
        conn->reading = true;
}

static void
hc_read_stop(struct hc_conn *conn)
{
    if (!conn->reading || conn->closing)
        return;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    conn->reading = false;
}

/* An idle connection joins the pool, still reading. */
static void
hc_pool_put(struct hc_conn *conn)
{
    struct http_client *c = conn->c;
    struct hc_conn *old;

    if (c->freeing) {
        hc_conn_close(conn);
        return;
    }
    if (c->n_pooled == HC_POOL_MAX) {
        old = TAILQ_FIRST(&c->pool);
        log_trace(TRACE_HTTP, "http client: pool full, closing one to %s",
                  old->key);
        hc_conn_close(old);
    }
    conn->call = NULL;
    conn->pooled = true;
    conn->idle_since = uv_now(c->loop);
    TAILQ_INSERT_TAIL(&c->pool, conn, pool_link);
    /* Head insertion: the most recently used one is found first. */
    LIST_INSERT_HEAD(&c->buckets[conn->hash % HC_POOL_BUCKETS], conn,
                     bucket_link);
    c->n_pooled++;
    hc_read_start(conn);
    /* An idle connection does not keep the loop alive. */
    uv_unref((uv_handle_t *)&conn->tcp);
    hc_timer_want(c, conn->idle_since + HC_POOL_IDLE_MS);
}

static struct hc_conn *
hc_pool_take(struct http_client *c, const char *key, uint32_t hash)
{
    struct hc_conn *conn;

    LIST_FOREACH(conn, &c->buckets[hash % HC_POOL_BUCKETS], bucket_link)
    {
        if (conn->hash == hash && strcmp(conn->key, key) == 0) {
            hc_pool_remove(conn);
            return conn;
        }
    }
    return NULL;
}

/* --- the end of a call ---------------------------------------------------- */

/* Lets go of the connection (closed) and the resolver (cancelled). */
static void
hc_detach(struct http_call *call)
{
    if (call->conn != NULL) {
        hc_conn_close(call->conn);
        call->conn = NULL;
    }
    if (call->res != NULL) {
        call->res->call = NULL;
        (void)uv_cancel((uv_req_t *)&call->res->req); /* it still answers */
        call->res = NULL;
    }
}

static void hc_ready(struct http_call *call);

/* The one way to on_done. */
static void
hc_finish(struct http_call *call, int err, const char *msg)
{
    struct http_client *c = call->c;

    if (call->over || call->pend_err != 0)
        return;
    hc_detach(call);
    if (call->starting) { /* on_done never runs inside http_call_start */
        call->pend_err = err != 0 ? err : -EIO;
        call->pend_msg = strdup(msg);
        hc_ready(call);
        return;
    }
    call->over = true;
    hc_count_down(c);
    call->on_done(call, err, err != 0 ? msg : "", call->ud);
    hc_call_bury(call);
}

static void HERD_PRINTF(3, 4)
    hc_fail(struct http_call *call, int err, const char *fmt, ...)
{
    char msg[HC_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hc_finish(call, err, msg);
}

/* The whole response is in; stray: bytes followed it. */
static void
hc_complete(struct http_call *call, bool stray)
{
    struct hc_conn *conn = call->conn;

    call->conn = NULL;
    conn->call = NULL;
    if (call->keep_alive && !stray && !conn->writing && !conn->write_failed) {
        conn->served++;
        hc_pool_put(conn); /* before on_done, which may want it again */
    } else {
        hc_conn_close(conn);
    }
    hc_finish(call, 0, "");
}

/* --- the timer ------------------------------------------------------------ */

static void
hc_timeout(struct http_call *call, uint64_t now)
{
    bool total = call->total_deadline != 0 && now >= call->total_deadline;

    if (call->state < HC_HEAD)
        hc_fail(call, -ETIMEDOUT, "cannot connect to %s within %u ms",
                call->where,
                total && call->total_ms < call->connect_ms ? call->total_ms
                                                           : call->connect_ms);
    else
        hc_fail(call, -ETIMEDOUT, "no complete answer from %s within %u ms",
                call->where, call->total_ms);
}

/* Sets the timer for the earliest deadline left, if any. */
static void
hc_timer_rearm(struct http_client *c)
{
    struct http_call *call;
    struct hc_conn *conn = TAILQ_FIRST(&c->pool);
    uint64_t due = 0, d;

    if (c->freeing)
        return;
    if (conn != NULL)
        due = conn->idle_since + HC_POOL_IDLE_MS;
    TAILQ_FOREACH(call, &c->calls, link)
    {
        d = call->over ? 0 : hc_call_due(call);
        if (d != 0 && (due == 0 || d < due))
            due = d;
    }
    c->timer_due = 0;
    if (due != 0)
        hc_timer_want(c, due);
}

static void
hc_on_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    uint64_t now = uv_now(c->loop), d;
    struct http_call *call, *expired = NULL, *next;
    struct hc_conn *conn;

    c->timer_due = 0;
    hc_enter(c);
    while ((conn = TAILQ_FIRST(&c->pool)) != NULL &&
           conn->idle_since + HC_POOL_IDLE_MS <= now)
        hc_conn_close(conn);
    /* Collected first: the callbacks may start and end calls. */
    TAILQ_FOREACH(call, &c->calls, link)
    {
        d = call->over ? 0 : hc_call_due(call);
        if (d != 0 && d <= now) {
            call->expired_next = expired;
            expired = call;
        }
    }
    for (call = expired; call != NULL; call = next) {
        next = call->expired_next;
        if (!call->over) /* memory stays until hc_leave */
            hc_timeout(call, now);
    }
    hc_timer_rearm(c);
    hc_leave(c);
}

/* --- the ready queue: work done from the loop, not from the caller -------- */

static void hc_on_idle(uv_idle_t *h);

static void
hc_ready(struct http_call *call)
{
    struct http_client *c = call->c;

    if (call->ready || c->freeing)
        return;
    call->ready = true;
    TAILQ_INSERT_TAIL(&c->ready, call, ready_link);
    uv_idle_start(&c->idle, hc_on_idle);
}

static void hc_input(struct http_call *call, const char *p, size_t n,
                     bool from_held);

static void
hc_on_idle(uv_idle_t *h)
{
    struct http_client *c = h->data;
    struct http_call *call;
    int err;

    hc_enter(c);
    while (!c->freeing && (call = TAILQ_FIRST(&c->ready)) != NULL) {
        TAILQ_REMOVE(&c->ready, call, ready_link);
        call->ready = false;
        if (call->pend_err != 0) {
            err = call->pend_err;
            call->pend_err = 0;
            hc_finish(call, err,
                      call->pend_msg != NULL ? call->pend_msg
                                             : "out of memory");
        } else if (!call->paused && call->conn != NULL) {
            /* Resumed: what the pause held back goes first (it may be
             * nothing but the end of the response), then the socket. */
            hc_input(call, call->held != NULL ? call->held : "", call->held_len,
                     true);
        }
    }
    if (!c->freeing && TAILQ_EMPTY(&c->ready))
        uv_idle_stop(h);
    hc_leave(c);
}

/* --- resolving and connecting --------------------------------------------- */

static void
hc_add_addr(struct http_call *call, const struct sockaddr *sa, size_t len)
{
    union hc_addr *a;

    if (call->n_addrs == HC_MAX_ADDRS || len > sizeof(*a))
        return;
    a = &call->addrs[call->n_addrs++];
    memcpy(a, sa, len);
    if (sa->sa_family == AF_INET)
        a->in4.sin_port = htons(call->port);
    else
        a->in6.sin6_port = htons(call->port);
}

/* IP literals and "localhost" need no resolver (nor its thread pool). */
static bool
hc_literal(struct http_call *call)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;

    if (uv_ip4_addr(call->host, call->port, &in4) == 0) {
        hc_add_addr(call, (const struct sockaddr *)&in4, sizeof(in4));
    } else if (strchr(call->host, ':') != NULL &&
               uv_ip6_addr(call->host, call->port, &in6) == 0) {
        hc_add_addr(call, (const struct sockaddr *)&in6, sizeof(in6));
    } else if (strcasecmp(call->host, "localhost") == 0) {
        /* IPv4 first: Ollama listens on 127.0.0.1 by default. */
        (void)uv_ip4_addr("127.0.0.1", call->port, &in4);
        (void)uv_ip6_addr("::1", call->port, &in6);
        hc_add_addr(call, (const struct sockaddr *)&in4, sizeof(in4));
        hc_add_addr(call, (const struct sockaddr *)&in6, sizeof(in6));
    }
    return call->n_addrs > 0;
}

static void
hc_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct hc_resolve *r = req->data;
    struct http_client *c = r->c;
    struct http_call *call = r->call;

    c->resolving--;
    free(r);
    if (call == NULL) { /* cancelled */
        uv_freeaddrinfo(res);
        hc_maybe_release(c);
        return;
    }
    call->res = NULL;
    for (const struct addrinfo *ai = res; status == 0 && ai != NULL;
         ai = ai->ai_next) {
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            hc_add_addr(call, ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    hc_enter(c);
    if (status != 0)
        hc_fail(call, -EHOSTUNREACH, "cannot resolve %s: %s", call->host,
                uv_strerror(status));
    else if (call->n_addrs == 0)
        hc_fail(call, -EHOSTUNREACH, "%s has no IPv4 or IPv6 address",
                call->host);
    else
        hc_connect_next(call);
    hc_leave(c);
}

static void
hc_resolve(struct http_call *call)
{
    struct http_client *c = call->c;
    struct hc_resolve *r = calloc(1, sizeof(*r));
    struct addrinfo hints;
    int rc;

    if (r == NULL) {
        hc_fail(call, -ENOMEM, "out of memory");
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->c = c;
    r->call = call;
    r->req.data = r;
    rc = uv_getaddrinfo(c->loop, &r->req, hc_on_resolved, call->host, NULL,
                        &hints);
    if (rc != 0) {
        free(r);
        hc_fail(call, -EHOSTUNREACH, "cannot resolve %s: %s", call->host,
                uv_strerror(rc));
        return;
    }
    c->resolving++;
    call->res = r;
}

/* A new connection for the call: resolve if need be, then connect. */
static void
hc_connect_start(struct http_call *call)
{
    struct http_client *c = call->c;

    call->state = HC_RESOLVING;
    call->connect_deadline = uv_now(c->loop) + call->connect_ms;
    hc_timer_want(c, call->connect_deadline);
    call->n_addrs = call->next_addr = 0;
    call->refused = false;
    call->connect_err = 0;
    if (call->addrs == NULL) {
        call->addrs = calloc(HC_MAX_ADDRS, sizeof(*call->addrs));
        if (call->addrs == NULL) {
            hc_fail(call, -ENOMEM, "out of memory");
            return;
        }
    }
    if (hc_literal(call))
        hc_connect_next(call);
    else
        hc_resolve(call);
}

/* Every address failed: say why, refusals first. */
static void
hc_connect_failed(struct http_call *call)
{
    int e = call->refused ? UV_ECONNREFUSED : call->connect_err;

    if (e == UV_ECONNREFUSED)
        hc_fail(call, -ECONNREFUSED, "cannot connect to %s: connection refused",
                call->where);
    else if (e == UV_ETIMEDOUT)
        hc_fail(call, -ETIMEDOUT, "cannot connect to %s: timed out",
                call->where);
    else if (e == UV_ENETUNREACH || e == UV_EHOSTUNREACH)
        hc_fail(call, -EHOSTUNREACH, "cannot connect to %s: %s", call->where,
                uv_strerror(e));
    else if (e == UV_ENOMEM || e == UV_EMFILE || e == UV_ENFILE ||
             e == UV_ENOBUFS)
        hc_fail(call, -EIO, "cannot connect to %s: %s", call->where,
                uv_strerror(e));
    else
        hc_fail(call, -ECONNREFUSED, "cannot connect to %s: %s", call->where,
                uv_strerror(e));
}

static void
hc_attempt_failed(struct http_call *call, int uverr)
{
    call->connect_err = uverr;
    if (uverr == UV_ECONNREFUSED)
        call->refused = true;
    if (call->conn != NULL) {
        hc_conn_close(call->conn);
        call->conn = NULL;
    }
}

static void
hc_on_connect(uv_connect_t *req, int status)
{
    struct hc_conn *conn = req->data;
    struct http_client *c = conn->c;
    struct http_call *call = conn->call;

    if (conn->closing || call == NULL) /* UV_ECANCELED: closing */
        return;
    hc_enter(c);
    if (status != 0) {
        hc_attempt_failed(call, status);
        hc_connect_next(call);
    } else {
        call->connect_deadline = 0;
        free(call->addrs); /* not needed by an open stream */
        call->addrs = NULL;
        (void)uv_tcp_nodelay(&conn->tcp, 1);
        hc_send(call);
    }
    hc_leave(c);
}

/* Tries the addresses in turn from the next one; a synchronous refusal
 * moves on at once. */
static void
hc_connect_next(struct http_call *call)
{
    struct http_client *c = call->c;
    struct hc_conn *conn;
    int rc;

    call->state = HC_CONNECTING;
    while (call->next_addr < call->n_addrs) {
        const union hc_addr *a = &call->addrs[call->next_addr++];

        conn = hc_conn_new(c, call->where, call->hash, &rc);
        if (conn == NULL) {
            call->connect_err = rc;
            continue;
        }
        conn->call = call;
        call->conn = conn;
        conn->req.connect.data = conn;
        rc = uv_tcp_connect(&conn->req.connect, &conn->tcp, &a->sa,
                            hc_on_connect);
        if (rc == 0)
            return;
        hc_attempt_failed(call, rc);
    }
    hc_connect_failed(call);
}

/* --- sending -------------------------------------------------------------- */

static void hc_broke(struct http_call *call, int uverr);

static void
hc_on_write(uv_write_t *req, int status)
{
    struct hc_conn *conn = req->data;
    struct http_client *c = conn->c;
    struct http_call *call = conn->call;

    conn->writing = false;
    if (conn->closing || call == NULL) /* UV_ECANCELED: closing */
        return;
    if (status == 0) {
        if (call->received > 0) { /* no retry can need it now */
            free(call->req);
            call->req = NULL;
        }
        return;
    }
    conn->write_failed = true;
    /* An answer already arriving is read to its end; else the request
     * failed (or is retried). */
    if (call->received == 0) {
        hc_enter(c);
        hc_broke(call, status);
        hc_leave(c);
    }
}

/* The connection is open: send the request in one write. */
static void
hc_send(struct http_call *call)
{
    struct hc_conn *conn = call->conn;
    uv_buf_t b = uv_buf_init(call->req, (unsigned)call->req_len);
    int n, rc;

    call->state = HC_HEAD;
    call->received = 0;
    call->eoh_nl = false;
    call->n_interim = 0;
    buf_reset(&call->head);
    hc_read_start(conn);
    n = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        hc_broke(call, n);
        return;
    }
    if ((size_t)n == call->req_len)
        return;
    b = uv_buf_init(call->req + n, (unsigned)(call->req_len - (size_t)n));
    conn->req.write.data = conn;
    rc = uv_write(&conn->req.write, (uv_stream_t *)&conn->tcp, &b, 1,
                  hc_on_write);
    if (rc != 0) {
        hc_broke(call, rc);
        return;
    }
    conn->writing = true;
}

/* --- the response head ---------------------------------------------------- */

static bool
hc_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* "HTTP/1.x NNN reason" -> status (minor version in *minor), or -1. */
static int
hc_status_line(const char *l, size_t n, int *minor)
{
    int st;

    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' ||
        l[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return -1;
    }
    if (n > 12 && l[12] != ' ')
        return -1;
    *minor = l[7] - '0';
    st = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    return st >= 100 ? st : -1;
}

/* Does the comma-separated list v hold the token tok? */
static bool
hc_has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok), n;

    while (*v != '\0') {
        v += strspn(v, " \t,");
        n = strcspn(v, ",");
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        if (n == tl && strncasecmp(v, tok, tl) == 0)
            return true;
        v += strcspn(v, ",");
    }
    return false;
}

/* Transfer-Encoding whose last coding is "chunked". */
static bool
hc_te_chunked(const char *te)
{
    const char *last = strrchr(te, ',');
    size_t n;

    last = last != NULL ? last + 1 : te;
    last += strspn(last, " \t");
    n = strlen(last);
    while (n > 0 && (last[n - 1] == ' ' || last[n - 1] == '\t'))
        n--;
    return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

/* The value of a packed header, or NULL. */
static const char *
hc_header_find(const struct http_call *call, const char *name)
{
    const char *p = call->head.data, *end = p + call->head.len, *v;

    while (p != NULL && p < end) {
        v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

/* What the head says about framing and keep-alive. */
struct hc_head_info {
    uint64_t cl;
    bool cl_seen, te, conn_close, conn_ka;
};

/* Notes a header that decides the framing. 0 or -1 (failed). */
static int
hc_note_header(struct http_call *call, const char *name, size_t nl,
               const char *v, size_t vl, struct hc_head_info *hi)
{
    uint64_t n = 0;

    if (nl == 14 && strncasecmp(name, "content-length", 14) == 0) {
        if (vl == 0 || vl > 18 || strspn(v, "0123456789") != vl) {
            hc_fail(call, -EPROTO, "%s sent a bad Content-Length", call->where);
            return -1;
        }
        for (size_t i = 0; i < vl; i++)
            n = n * 10 + (uint64_t)(v[i] - '0');
        if (hi->cl_seen && n != hi->cl) {
            hc_fail(call, -EPROTO, "%s sent two different Content-Lengths",
                    call->where);
            return -1;
        }
        hi->cl = n;
        hi->cl_seen = true;
    } else if (nl == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
        hi->te = true;
    } else if (nl == 10 && strncasecmp(name, "connection", 10) == 0) {
        hi->conn_close = hi->conn_close || hc_has_token(v, "close");
        hi->conn_ka = hi->conn_ka || hc_has_token(v, "keep-alive");
    }
    return 0;
}

/* Packs the "Name: value" lines from offset `from` (after the status
 * line) in place into "name\0value\0"..., for http_call_header. 0 or -1
 * (failed). */
static int
hc_pack_headers(struct http_call *call, size_t from, struct hc_head_info *hi)
{
    char *d = call->head.data, *line, *lf;
    size_t len = call->head.len, r = from, w = 0, e, nl, vl;
    const char *colon, *v;

    while (r < len) {
        line = d + r;
        lf = memchr(line, '\n', len - r);
        e = lf != NULL ? (size_t)(lf - line) : len - r;
        r += e + 1;
        if (e > 0 && line[e - 1] == '\r')
            e--;
        if (e == 0)
            break; /* the empty line */
        if (line[0] == ' ' || line[0] == '\t') {
            hc_fail(call, -EPROTO, "%s sent a folded header line", call->where);
            return -1;
        }
        colon = memchr(line, ':', e);
        for (const char *p = line; colon != NULL && p < colon; p++) {
            if (!hc_tchar(*p))
                colon = NULL;
        }
        if (colon == NULL || colon == line) {
            hc_fail(call, -EPROTO, "%s sent a malformed header line",
                    call->where);
            return -1;
        }
        nl = (size_t)(colon - line);
        v = colon + 1;
        while (v < line + e && (*v == ' ' || *v == '\t'))
            v++;
        vl = (size_t)(line + e - v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        /* A packed line is never longer than the raw one: w <= r. */
        memmove(d + w, line, nl);
        d[w + nl] = '\0';
        memmove(d + w + nl + 1, v, vl);
        d[w + nl + 1 + vl] = '\0';
        if (hc_note_header(call, d + w, nl, d + w + nl + 1, vl, hi) != 0)
            return -1;
        w += nl + 1 + vl + 1;
    }
    call->head.len = w;
    d[w] = '\0';
    call->hdrs_ready = true;
    return 0;
}

/* How the body of the final response is framed. 0 or -1 (failed). */
static int
hc_framing(struct http_call *call, int minor)
{
    struct hc_head_info hi = {0};
    const char *nl = memchr(call->head.data, '\n', call->head.len);

    if (hc_pack_headers(call, (size_t)(nl - call->head.data) + 1, &hi) != 0)
        return -1;
    call->keep_alive =
        minor >= 1 ? !hi.conn_close : hi.conn_ka && !hi.conn_close;
    if (call->head_only || call->status == 204 || call->status == 304) {
        call->framing = HC_FR_NONE;
    } else if (hi.te) {
        call->framing = hc_te_chunked(hc_header_find(call, "transfer-encoding"))
                            ? HC_FR_CHUNKED
                            : HC_FR_CLOSE;
        if (hi.cl_seen) /* both: chunked wins, but trust no more */
            call->keep_alive = false;
    } else if (hi.cl_seen) {
        if (call->max_body != 0 && hi.cl > call->max_body) {
            hc_fail(call, -E2BIG,
                    "the response body from %s is %llu bytes, over the cap "
                    "of %zu",
                    call->where, (unsigned long long)hi.cl, call->max_body);
            return -1;
        }
        call->framing = HC_FR_LENGTH;
        call->remaining = hi.cl;
    } else {
        call->framing = HC_FR_CLOSE;
    }
    if (call->framing == HC_FR_CLOSE)
        call->keep_alive = false;
    return 0;
}

/* The head (ending with its empty line) is complete. */
static void
hc_head_done(struct http_call *call)
{
    const char *d = call->head.data;
    const char *nl = memchr(d, '\n', call->head.len);
    size_t ll = (size_t)(nl - d);
    int st, minor = 0;

    if (memchr(d, '\0', call->head.len) != NULL) {
        hc_fail(call, -EPROTO, "%s sent a NUL byte in its headers",
                call->where);
        return;
    }
    if (ll > 0 && d[ll - 1] == '\r')
        ll--;
    st = hc_status_line(d, ll, &minor);
    if (st < 0) {
        hc_fail(call, -EPROTO, "%s sent a malformed status line", call->where);
        return;
    }
    if (st < 200) {
        if (st == 101 || ++call->n_interim > HC_MAX_INTERIM) {
            hc_fail(call, -EPROTO,
                    "%s answered %d, which this client cannot use", call->where,
                    st);
            return;
        }
        buf_reset(&call->head); /* 100 Continue and friends */
        call->eoh_nl = false;
        return;
    }
    call->status = st;
    if (hc_framing(call, minor) != 0)
        return;
    call->state = call->framing == HC_FR_NONE ? HC_COMPLETE : HC_BODY;
    call->ch = HC_CH_SIZE;
    if (call->on_response != NULL)
        call->on_response(call, st, call->ud);
}

/* Head bytes: returns how many belong to the head. */
static size_t
hc_feed_head(struct http_call *call, const char *p, size_t n)
{
    size_t i = 0, take, cmp;
    bool end = false;

    if (call->head.len == 0) /* blank lines before a status line */
        while (i < n && (p[i] == '\r' || p[i] == '\n'))
            i++;
    /* The head ends with an empty line: "\n" then "\r\n" or "\n". */
    for (take = i; take < n && !end; take++) {
        if (p[take] == '\n') {
            end = call->eoh_nl;
            call->eoh_nl = true;
        } else if (p[take] != '\r') {
            call->eoh_nl = false;
        }
    }
    if (take - i > call->head.max - call->head.len) {
        hc_fail(call, -E2BIG, "the response headers from %s are over %zu bytes",
                call->where, call->head.max);
        return n;
    }
    if (buf_append(&call->head, p + i, take - i) != 0) {
        hc_fail(call, -ENOMEM, "out of memory reading from %s", call->where);
        return n;
    }
    cmp = call->head.len < 5 ? call->head.len : 5;
    if (memcmp(call->head.data, "HTTP/", cmp) != 0) {
        hc_fail(call, -EPROTO, "%s did not answer with HTTP", call->where);
        return n;
    }
    if (end)
        hc_head_done(call);
    return take;
}

/* --- the body ------------------------------------------------------------- */

/* n body bytes to the caller (or the buffer). */
static void
hc_deliver(struct http_call *call, const char *p, size_t n)
{
    int rc;

    if (n == 0)
        return;
    if (call->max_body != 0 && n > call->max_body - call->body_bytes) {
        hc_fail(call, -E2BIG, "the response body from %s is over %zu bytes",
                call->where, call->max_body);
        return;
    }
    call->body_bytes += n;
    if (call->on_data == NULL) {
        rc = buf_append(&call->body, p, n);
        if (rc != 0)
            hc_fail(call, rc == -E2BIG ? -E2BIG : -ENOMEM,
                    "the response body from %s is over %zu bytes", call->where,
                    call->body.max);
        return;
    }
    rc = call->on_data(call, p, n, call->ud);
    if (rc == HTTP_CALL_PAUSE && !call->over)
        call->paused = true;
}

static int
hc_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static void
hc_chunk_bad(struct http_call *call, const char *what)
{
    hc_fail(call, -EPROTO, "%s sent a bad chunked body: %s", call->where, what);
}

/* The end of a chunk-size line. */
static void
hc_chunk_size_done(struct http_call *call)
{
    if (!call->ch_digits) {
        hc_chunk_bad(call, "no chunk size");
        return;
    }
    call->ch_line = 0;
    call->ch_digits = call->ch_after = call->ch_ext = false;
    if (call->remaining == 0) {
        call->ch = HC_CH_TRAILER;
        return;
    }
    if (call->max_body != 0 &&
        call->remaining > call->max_body - call->body_bytes) {
        hc_fail(call, -E2BIG, "the response body from %s is over %zu bytes",
                call->where, call->max_body);
        return;
    }
    call->ch = HC_CH_DATA;
}

/* One byte of a chunk-size line: hex digits, [BWS] [; extension] CRLF. */
static void
hc_chunk_size_byte(struct http_call *call, char ch)
{
    int h = hc_hexval(ch);

    if (++call->ch_line > HC_CHUNK_LINE_MAX) {
        hc_chunk_bad(call, "chunk-size line too long");
    } else if (ch == '\n') {
        hc_chunk_size_done(call);
    } else if (call->ch_ext) {
        return;
    } else if (h >= 0 && !call->ch_after) {
        if (call->remaining >> 59) {
            hc_chunk_bad(call, "chunk size too large");
            return;
        }
        call->remaining = call->remaining * 16 + (uint64_t)h;
        call->ch_digits = true;
    } else if (!call->ch_digits) {
        hc_chunk_bad(call, "no chunk size");
    } else if (ch == ';') {
        call->ch_ext = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\r') {
        call->ch_after = true;
    } else {
        hc_chunk_bad(call, "junk in a chunk-size line");
    }
}

/* One byte outside chunk data. */
static void
hc_chunk_byte(struct http_call *call, char ch)
{
    switch (call->ch) {
    case HC_CH_SIZE:
        hc_chunk_size_byte(call, ch);
        return;
    case HC_CH_DATA_CR:
        if (ch != '\r' && ch != '\n')
            hc_chunk_bad(call, "chunk data longer than its size");
        else
            call->ch = ch == '\r' ? HC_CH_DATA_LF : HC_CH_SIZE;
        return;
    case HC_CH_DATA_LF:
        if (ch != '\n')
            hc_chunk_bad(call, "chunk data longer than its size");
        else
            call->ch = HC_CH_SIZE;
        return;
    default: /* HC_CH_TRAILER: lines until an empty one */
        if (++call->trailer_bytes > call->head.max) {
            hc_fail(call, -E2BIG, "the trailers from %s are over %zu bytes",
                    call->where, call->head.max);
            return;
        }
        if (ch == '\n' && call->ch_line == 0) {
            call->state = HC_COMPLETE;
            return;
        }
        call->ch_line = ch == '\n' ? 0 : call->ch_line + (ch != '\r');
        return;
    }
}

/* Body bytes; returns how many were consumed. Stops at the end of the
 * response, on a pause (the rest is held) and when the call is over. */
static size_t
hc_feed_body(struct http_call *call, const char *p, size_t n)
{
    size_t i = 0, k;

    while (!call->over && call->state == HC_BODY && !call->paused) {
        if (call->framing == HC_FR_LENGTH && call->remaining == 0) {
            call->state = HC_COMPLETE;
            break;
        }
        if (i == n)
            break;
        if (call->framing == HC_FR_CHUNKED && call->ch != HC_CH_DATA) {
            hc_chunk_byte(call, p[i++]);
            continue;
        }
        k = n - i;
        if (call->framing != HC_FR_CLOSE && k > call->remaining)
            k = (size_t)call->remaining;
        if (call->framing != HC_FR_CLOSE)
            call->remaining -= k;
        if (call->framing == HC_FR_CHUNKED && call->remaining == 0)
            call->ch = HC_CH_DATA_CR;
        i += k;
        hc_deliver(call, p + i - k, k); /* consumed, whatever it says */
    }
    return i;
}

/* Response bytes; returns how many belong to this response. */
static size_t
hc_feed(struct http_call *call, const char *p, size_t n)
{
    size_t i = 0;

    while (!call->over && call->state == HC_HEAD && i < n)
        i += hc_feed_head(call, p + i, n - i);
    if (!call->over && call->state == HC_BODY)
        i += hc_feed_body(call, p + i, n - i);
    return i;
}

/* Runs n bytes (from the socket, or held by a pause) through the parser,
 * then completes the call, holds what a pause left, or reads on. */
static void
hc_input(struct http_call *call, const char *p, size_t n, bool from_held)
{
    struct hc_conn *conn = call->conn;
    size_t used = hc_feed(call, p, n), rest = n - used;
    char *keep;

    if (call->over)
        return; /* failed or cancelled: the connection is closed */
    if (call->state == HC_COMPLETE) {
        hc_complete(call, rest > 0);
        return;
    }
    if (call->paused) {
        hc_read_stop(conn);
        if (from_held) {
            if (rest > 0)
                memmove(call->held, p + used, rest);
            call->held_len = rest;
            return;
        }
        if (rest == 0)
            return;
        keep = realloc(call->held, call->held_len + rest);
        if (keep == NULL) {
            hc_fail(call, -ENOMEM, "out of memory reading from %s",
                    call->where);
            return;
        }
        memcpy(keep + call->held_len, p + used, rest);
        call->held = keep;
        call->held_len += rest;
        return;
    }
    if (from_held) {
        free(call->held);
        call->held = NULL;
        call->held_len = 0;
        hc_read_start(conn);
    }
}

/* --- reading -------------------------------------------------------------- */

/* Retry a request on a fresh connection? Only once, only for a reused
 * connection the server closed before answering a byte. */
static bool
hc_can_retry(const struct http_call *call, int uverr)
{
    return call->conn != NULL && call->conn->served > 0 && !call->retried &&
           call->received == 0 && call->req != NULL &&
           (uverr == UV_EOF || uverr == UV_ECONNRESET || uverr == UV_EPIPE);
}

/* The connection broke (read or write error, or EOF). */
static void
hc_broke(struct http_call *call, int uverr)
{
    if (uverr == UV_EOF && call->state == HC_BODY &&
        call->framing == HC_FR_CLOSE) {
        call->state = HC_COMPLETE;
        hc_complete(call, false);
        return;
    }
    if (hc_can_retry(call, uverr)) {
        log_trace(TRACE_HTTP,
                  "http client: kept-alive connection to %s closed (%s), "
                  "sending again on a new one",
                  call->where, uv_strerror(uverr));
        call->retried = true;
        hc_conn_close(call->conn);
        call->conn = NULL;
        hc_connect_start(call);
        return;
    }
    if (call->state == HC_HEAD && call->received == 0 && uverr == UV_EOF)
        hc_fail(call, -ECONNRESET, "%s closed the connection without answering",
                call->where);
    else if (call->state == HC_HEAD && call->received == 0)
        hc_fail(call, -ECONNRESET, "connection to %s broke: %s", call->where,
                uv_strerror(uverr));
    else if (call->state == HC_HEAD)
        hc_fail(call, -ECONNRESET,
                "%s closed the connection in the middle of the headers",
                call->where);
    else if (call->framing == HC_FR_LENGTH)
        hc_fail(call, -ECONNRESET,
                "%s closed the connection %llu bytes before the end of the "
                "body",
                call->where, (unsigned long long)call->remaining);
    else
        hc_fail(call, -ECONNRESET, "connection to %s broke in the body: %s",
                call->where, uverr == UV_EOF ? "closed" : uv_strerror(uverr));
}

static void
hc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct hc_conn *conn = s->data;
    struct http_client *c = conn->c;
    struct http_call *call = conn->call;

    if (nread == 0 || conn->closing)
        return;
    if (call == NULL) { /* idle: the server closed it, or sent junk */
        log_trace(TRACE_HTTP, "http client: idle connection to %s %s",
                  conn->key, nread < 0 ? "closed" : "got stray bytes");
        hc_conn_close(conn);
        return;
    }
    hc_enter(c);
    if (nread < 0) {
        hc_broke(call, (int)nread);
    } else {
        call->received += (uint64_t)nread;
        if (call->req != NULL && !conn->writing) {
            free(call->req); /* no retry once the answer began */
            call->req = NULL;
        }
        hc_input(call, b->base, (size_t)nread, false);
    }
    hc_leave(c);
}

/* --- URLs and the request ------------------------------------------------- */

struct hc_url {
    const char *host; /* brackets stripped */
    size_t host_len;
    const char *authority; /* as written: the Host header */
    size_t authority_len;
    const char *path; /* from the first '/' or '?', fragment excluded */
    size_t path_len;
    uint16_t port;
};

static int HERD_PRINTF(4, 5)
    hc_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool
hc_host_char(char ch, bool bracketed)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_')
        return true;
    return bracketed && (ch == ':' || ch == '%');
}

/* "host", "host:port", "[v6]" or "[v6]:port". */
static int
hc_authority(const char *url, const char *a, const char *end, struct hc_url *u,
             char *err, size_t errlen)
{
    const char *host = a, *host_end, *port;
    bool br = *a == '[';
    unsigned long v = 0;

    if (br) {
        host = a + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL)
            return hc_err(err, errlen, -EINVAL,
                          "%.200s: unterminated [IPv6] literal", url);
        if (host_end + 1 < end && host_end[1] != ':')
            return hc_err(err, errlen, -EINVAL, "%.200s: junk after ]", url);
        port = host_end + 1 < end ? host_end + 2 : NULL;
    } else {
        host_end = memchr(a, ':', (size_t)(end - a));
        port = host_end != NULL ? host_end + 1 : NULL;
        if (host_end == NULL)
            host_end = end;
    }
    if (host_end == host)
        return hc_err(err, errlen, -EINVAL, "%.200s: no host", url);
    if ((size_t)(host_end - host) > HC_URL_HOST_MAX)
        return hc_err(err, errlen, -EINVAL, "%.200s: host name too long", url);
    for (const char *p = host; p < host_end; p++) {
        if (!hc_host_char(*p, br))
            return hc_err(err, errlen, -EINVAL,
                          "%.200s: bad character '%c' in the host", url, *p);
    }
    for (const char *p = port; p != NULL && p < end; p++) {
        if (*p < '0' || *p > '9')
            return hc_err(err, errlen, -EINVAL, "%.200s: bad port", url);
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return hc_err(err, errlen, -EINVAL, "%.200s: bad port", url);
    }
    if (port != NULL && port < end && v == 0)
        return hc_err(err, errlen, -EINVAL, "%.200s: bad port", url);
    u->port = port != NULL && port < end ? (uint16_t)v : 80;
    u->host = host;
    u->host_len = (size_t)(host_end - host);
    u->authority = a;
    u->authority_len = (size_t)(end - a);
    return 0;
}

static int
hc_parse_url(const char *url, struct hc_url *u, char *err, size_t errlen)
{
    const char *a = url, *end, *sep;
    size_t slen;

    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return hc_err(err, errlen, -EINVAL,
                          "%.200s: a space or control character in the URL",
                          url);
    }
    sep = strstr(url, "://");
    if (sep != NULL) {
        slen = (size_t)(sep - url);
        if (slen == 5 && strncasecmp(url, "https", 5) == 0)
            return hc_err(err, errlen, -EPROTONOSUPPORT,
                          "%.200s: https is not supported (herd speaks plain "
                          "http:// to its nodes; put a TLS terminator on the "
                          "node if it needs one)",
                          url);
        if (slen != 4 || strncasecmp(url, "http", 4) != 0)
            return hc_err(err, errlen, -EPROTONOSUPPORT,
                          "%.200s: unsupported scheme (only http://)", url);
        a = sep + 3;
    }
    end = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(end - a)) != NULL)
        return hc_err(err, errlen, -EINVAL,
                      "%.200s: user info in the URL is not supported", url);
    if (hc_authority(url, a, end, u, err, errlen) != 0)
        return -EINVAL;
    u->path = end;
    u->path_len = strcspn(end, "#");
    return 0;
}

int
http_url_check(const char *url, char *err, size_t errlen)
{
    struct hc_url u;
    char dummy[1];

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (url == NULL || *url == '\0') {
        snprintf(err, errlen, "no URL");
        return -EINVAL;
    }
    return hc_parse_url(url, &u, err, errlen);
}

/* NULL when the caller's header line is to be sent, "" when it is to be
 * dropped silently, else what is wrong with it. */
static const char *
hc_header_check(const char *line)
{
    static const char *const ours[] = {"host", "connection", "content-length",
                                       "transfer-encoding"};
    const char *colon = strchr(line, ':');
    size_t n;

    if (colon == NULL || colon == line)
        return "is not \"Name: value\"";
    for (const char *p = line; p < colon; p++) {
        if (!hc_tchar(*p))
            return "has a bad character in its name";
    }
    for (const char *p = colon; *p != '\0'; p++) {
        if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
            return "contains a control character";
    }
    n = (size_t)(colon - line);
    for (size_t i = 0; i < HC_ARRAY_LEN(ours); i++) {
        if (strlen(ours[i]) == n && strncasecmp(line, ours[i], n) == 0)
            return ""; /* ours to set */
    }
    /* "Name:" with no value is curl's way to say "do not send it". */
    if (colon[1 + strspn(colon + 1, " \t")] == '\0')
        return "";
    return NULL;
}

static char *
hc_put(char *w, const void *p, size_t n)
{
    memcpy(w, p, n);
    return w + n;
}

/* v in decimal into out (at least 21 bytes), no NUL; the length. No
 * printf on the request path. */
static size_t
hc_utoa(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* The request in one block: request line, our headers, the caller's,
 * the body. */
static int
hc_build(struct http_call *call, const struct http_call_opts *o,
         const struct hc_url *u, char *err, size_t errlen)
{
    const char *m = o->method != NULL ? o->method : "GET", *why;
    bool slash = u->path_len == 0 || u->path[0] == '?';
    bool cl = o->body != NULL || strcmp(m, "POST") == 0 ||
              strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
    char num[24], *w;
    size_t numlen = hc_utoa(num, o->body_len);
    size_t head, mlen = strlen(m);

    if (mlen == 0 || mlen > HC_METHOD_MAX)
        return hc_err(err, errlen, -EINVAL, "bad method \"%.40s\"", m);
    for (size_t i = 0; i < mlen; i++) {
        if (!hc_tchar(m[i]))
            return hc_err(err, errlen, -EINVAL, "bad method \"%.40s\"", m);
    }
    if (o->body == NULL && o->body_len > 0)
        return hc_err(err, errlen, -EINVAL, "body_len without a body");
    call->head_only = strcmp(m, "HEAD") == 0;
    head = mlen + 1 + slash + u->path_len + sizeof(" HTTP/1.1\r\nHost: ") - 1 +
           u->authority_len + 2 + 2;
    if (cl)
        head += sizeof("Content-Length: ") - 1 + numlen + 2;
    for (size_t i = 0; o->headers != NULL && o->headers[i] != NULL; i++) {
        why = hc_header_check(o->headers[i]);
        if (why != NULL && *why != '\0')
            return hc_err(err, errlen, -EINVAL, "header \"%.60s\" %s",
                          o->headers[i], why);
        if (why == NULL)
            head += strlen(o->headers[i]) + 2;
    }
    if (head > HC_REQ_HEAD_MAX)
        return hc_err(err, errlen, -E2BIG, "request headers over %u bytes",
                      HC_REQ_HEAD_MAX);
    call->req_len = head + o->body_len;
    call->req = malloc(call->req_len);
    if (call->req == NULL)
        return hc_err(err, errlen, -ENOMEM, "out of memory");
    w = hc_put(call->req, m, mlen);
    w = hc_put(w, " /", 1 + slash);
    w = hc_put(w, u->path, u->path_len);
    w = hc_put(w, " HTTP/1.1\r\nHost: ", sizeof(" HTTP/1.1\r\nHost: ") - 1);
    w = hc_put(w, u->authority, u->authority_len);
    w = hc_put(w, "\r\n", 2);
    if (cl) {
        w = hc_put(w, "Content-Length: ", sizeof("Content-Length: ") - 1);
        w = hc_put(w, num, numlen);
        w = hc_put(w, "\r\n", 2);
    }
    for (size_t i = 0; o->headers != NULL && o->headers[i] != NULL; i++) {
        if (hc_header_check(o->headers[i]) == NULL) {
            w = hc_put(w, o->headers[i], strlen(o->headers[i]));
            w = hc_put(w, "\r\n", 2);
        }
    }
    w = hc_put(w, "\r\n", 2);
    if (o->body_len > 0)
        hc_put(w, o->body, o->body_len);
    return 0;
}

/* Fills the call from the options; nothing on the loop yet. */
static int
hc_setup(struct http_call *call, const struct http_call_opts *o, char *err,
         size_t errlen)
{
    struct hc_url u = {0};
    size_t wlen;
    char *w;
    bool v6;
    int rc;

    rc = hc_parse_url(o->url, &u, err, errlen);
    if (rc != 0)
        return rc;
    rc = hc_build(call, o, &u, err, errlen);
    if (rc != 0)
        return rc;
    v6 = memchr(u.host, ':', u.host_len) != NULL;
    wlen = u.host_len + (v6 ? 2 : 0) + 7;
    call->host = malloc(u.host_len + 1 + wlen);
    if (call->host == NULL)
        return hc_err(err, errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < u.host_len; i++) { /* names are caseless */
        char ch = u.host[i];

        call->host[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    call->host[u.host_len] = '\0';
    w = call->host + u.host_len + 1; /* "host:port" or "[v6]:port" */
    call->where = w;
    if (v6)
        *w++ = '[';
    w = hc_put(w, call->host, u.host_len);
    if (v6)
        *w++ = ']';
    *w++ = ':';
    w += hc_utoa(w, u.port);
    *w = '\0';
    call->hash = hc_hash(call->where);
    call->port = u.port;
    call->on_response = o->on_response;
    call->on_data = o->on_data;
    call->on_done = o->on_done;
    call->ud = o->ud;
    call->connect_ms =
        o->connect_timeout_ms != 0 ? o->connect_timeout_ms : HC_DEF_CONNECT_MS;
    call->total_ms = o->total_timeout_ms;
    call->max_body = o->max_body;
    if (o->on_data == NULL && call->max_body == 0)
        call->max_body = HC_DEF_MAX_BUFFER;
    buf_init(&call->head,
             o->max_header != 0 ? o->max_header : HC_DEF_MAX_HEADER);
    buf_init(&call->body,
             call->max_body != 0 ? call->max_body : HC_DEF_MAX_BUFFER);
    return 0;
}

/* --- the public API ------------------------------------------------------- */

struct http_client *
http_client_new(uv_loop_t *loop)
{
    struct http_client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->loop = loop;
    TAILQ_INIT(&c->calls);
    TAILQ_INIT(&c->dead);
    TAILQ_INIT(&c->ready);
    TAILQ_INIT(&c->pool);
    for (size_t i = 0; i < HC_POOL_BUCKETS; i++)
        LIST_INIT(&c->buckets[i]);
    uv_timer_init(loop, &c->timer);
    uv_idle_init(loop, &c->idle);
    c->timer.data = c;
    c->idle.data = c;
    uv_unref((uv_handle_t *)&c->timer);
    c->handles = 2;
    return c;
}

void
http_client_free(struct http_client *c, void (*closed)(void *), void *ud)
{
    struct http_call *call, *next;
    struct hc_conn *conn;

    if (c == NULL) {
        if (closed != NULL)
            closed(ud);
        return;
    }
    if (c->freeing)
        return;
    c->freeing = true;
    c->closed = closed;
    c->closed_ud = ud;
    for (call = TAILQ_FIRST(&c->calls); call != NULL; call = next) {
        next = TAILQ_NEXT(call, link);
        if (!call->over) /* one whose on_done is running is left to it */
            http_call_cancel(call);
    }
    while ((conn = TAILQ_FIRST(&c->pool)) != NULL)
        hc_conn_close(conn);
    uv_close((uv_handle_t *)&c->timer, hc_on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, hc_on_handle_closed);
}

size_t
http_client_active(const struct http_client *c)
{
    return c->ncalls;
}

struct http_call *
http_call_start(struct http_client *c, const struct http_call_opts *o,
                char *err, size_t errlen)
{
    struct http_call *call;
    struct hc_conn *conn;

    if (c->freeing || o->url == NULL || o->on_done == NULL) {
        hc_err(err, errlen, -EINVAL, "%s",
               c->freeing ? "the HTTP client is shutting down"
                          : "invalid call options (url and on_done needed)");
        return NULL;
    }
    call = calloc(1, sizeof(*call));
    if (call == NULL) {
        hc_err(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    call->c = c;
    if (hc_setup(call, o, err, errlen) != 0) {
        hc_call_free(call);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&c->calls, call, link);
    if (c->ncalls++ == 0)
        uv_ref((uv_handle_t *)&c->timer);
    call->starting = true;
    if (call->total_ms != 0) {
        call->total_deadline = uv_now(c->loop) + call->total_ms;
        hc_timer_want(c, call->total_deadline);
    }
    conn = hc_pool_take(c, call->where, call->hash);
    if (conn != NULL) {
        conn->call = call;
        call->conn = conn;
        hc_send(call);
    } else {
        hc_connect_start(call);
    }
    call->starting = false;
    return call;
}

void
http_call_pause(struct http_call *call)
{
    if (call == NULL || call->over)
        return;
    call->paused = true;
    if (call->conn != NULL && call->state == HC_BODY)
        hc_read_stop(call->conn);
}

void
http_call_resume(struct http_call *call)
{
    if (call == NULL || call->over || !call->paused)
        return;
    call->paused = false;
    /* The held bytes go from the loop, never from inside this function. */
    if (call->conn != NULL && call->state >= HC_HEAD)
        hc_ready(call);
}

void
http_call_cancel(struct http_call *call)
{
    struct http_client *c;

    if (call == NULL || call->over)
        return;
    c = call->c;
    call->over = true;
    hc_count_down(c);
    hc_detach(call);
    hc_call_bury(call);
}

int
http_call_status(const struct http_call *call)
{
    return call->status;
}

const char *
http_call_header(const struct http_call *call, const char *name)
{
    return call->hdrs_ready ? hc_header_find(call, name) : NULL;
}

const char *
http_call_body(const struct http_call *call, size_t *len)
{
    if (len != NULL)
        *len = call->body.len;
    return call->body.data != NULL ? call->body.data : "";
}
