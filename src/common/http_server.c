/*
 * http_server.c - our HTTP/1.1 server on the libuv loop.
 *
 * One struct http_conn per TCP connection (a uv_tcp_t), one struct
 * http_req per request, at most one request per connection at a time.
 * docs/internals/http_server.md has the design; in short:
 *
 * - Reading: every connection reads into ONE buffer shared by the server
 *   (the alloc callback hands it out). What a read leaves unfinished (a
 *   partial request head, half a chunk-size line, the bytes of a
 *   pipelined next request) is copied into the connection's own "in"
 *   buffer, so an open stream or an idle keep-alive connection holds no
 *   read buffer. Reading goes on while a request is handled, so that a
 *   client that goes away is seen at once; bytes of a next request are
 *   kept up to HTTP_SERVER_PIPELINE_MAX, then reading stops.
 * - Writing: uv_try_write() first; what the kernel does not take is
 *   copied to the connection's "out" buffer and handed to uv_write() in
 *   slices. A whole response goes out at once from the caller's bytes;
 *   small stream writes are gathered in "out" and sent by the wake pass,
 *   so all a stream gets in one turn of the loop is one writev(). A write
 *   on a writable socket is one system call and no epoll_ctl.
 * - User code (handler, done and drain callbacks) is never called from
 *   inside one of our API functions: those only change state and "wake"
 *   the connection; conn_advance() does the transitions, from a libuv
 *   callback or from the wake pass (a uv_check_t after I/O, and a
 *   uv_idle_t that keeps the loop from sleeping while wakes are pending).
 * - One teardown per connection: conn_close() ends the request (its done
 *   callback) and closes the handle; the memory goes in the close
 *   callback.
 * - One timer for the whole server: a 1 s tick checks idle timeouts and
 *   lingering closes.
 *
 * The process must ignore SIGPIPE (uv_try_write uses writev()); herd,
 * herd-sim and herd-node do.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* accept4() */
#endif

#include "herd/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "herd/log.h"

/* Defaults for options left at 0. */
#define HTTP_SERVER_DEF_MAX_BODY   (1024u * 1024u)
#define HTTP_SERVER_DEF_MAX_HEADER (16u * 1024u)
#define HTTP_SERVER_DEF_MAX_QUEUE  (1024u * 1024u)
/* max_conns 0 means "no limit". */
#define HTTP_SERVER_NO_CONN_LIMIT 1000000u
/* Cap on the response headers a handler may add. */
#define HTTP_SERVER_MAX_RESP_HDRS (32u * 1024u)
/* Pause before accepting again after EMFILE/ENFILE. */
#define HTTP_SERVER_ACCEPT_PAUSE_MS 100u
/* Connections accepted per wake-up of the listening socket. */
#define HTTP_SERVER_ACCEPT_BATCH 256
#define HTTP_SERVER_BACKLOG      4096
/* The read buffer shared by every connection of a server. */
#define HTTP_SERVER_RBUF_SIZE (64u * 1024u)
/* Bytes of a next request kept while one is handled; then reads stop. */
#define HTTP_SERVER_PIPELINE_MAX (64u * 1024u)
/* The most bytes handed to one uv_write(): the queue shrinks (and drain
 * callbacks fire) at least this often while a slow client reads. */
#define HTTP_SERVER_WRITE_SLICE (64u * 1024u)
/* A chunk-size line or a trailer line of a chunked request body. */
#define HTTP_SERVER_LINE_MAX 4096u
/* The server's one timer: idle timeouts and lingering closes. */
#define HTTP_SERVER_TICK_MS 1000u
/* How long a closing connection may keep sending us bytes we discard. */
#define HTTP_SERVER_LINGER_MS 2000u
/* Stream writes this big go to the socket at once; smaller ones are
 * gathered until the end of the loop's turn. */
#define HTTP_SERVER_DIRECT_WRITE (16u * 1024u)
/* A response head that fits here is built on the stack. */
#define HTTP_SERVER_HEAD_STACK 1024u

/* A request's life. Keep in sync with http_req_state_names. */
enum http_req_state {
    HTTP_REQ_READING,   /* head parsed, body arriving; no handler yet */
    HTTP_REQ_READY,     /* the whole request is in; handler not called */
    HTTP_REQ_WAITING,   /* handler called, no answer yet */
    HTTP_REQ_RESPONDED, /* a whole response is queued */
    HTTP_REQ_STREAMING, /* a stream is open; more may come */
    HTTP_REQ_ENDING,    /* the stream's end is queued */
    HTTP_REQ_DONE,      /* the done callback fired */
};

enum http_body_mode {
    HTTP_BODY_NONE,
    HTTP_BODY_LENGTH,  /* Content-Length */
    HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
};

enum http_chunk_state {
    HTTP_CHUNK_SIZE,     /* a chunk-size line (with extensions) */
    HTTP_CHUNK_DATA,     /* body_left bytes of chunk data */
    HTTP_CHUNK_DATA_END, /* the CRLF after the data */
    HTTP_CHUNK_TRAILER,  /* trailer lines, up to an empty one */
};

struct http_kv {
    const char *k;
    const char *v; /* NULL: a query argument without '=' */
};

struct http_conn;

struct http_req {
    struct http_conn *c; /* borrowed: outlives the request */
    uint64_t id;
    enum http_req_state state;
    const char *method; /* into the head copy, below */
    const char *path;   /* decoded, without the query */
    struct http_kv *hdrs;
    struct http_kv *args; /* decoded query arguments */
    unsigned nhdrs;
    unsigned nargs;
    char *body; /* owned; NUL-terminated; NULL when empty or too large */
    size_t body_len;
    size_t body_cap;
    uint64_t body_left;   /* LENGTH: bytes to come; CHUNKED: of this chunk */
    uint64_t body_total;  /* LENGTH: the Content-Length */
    size_t trailer_bytes; /* CHUNKED: trailer lines so far */
    enum http_body_mode body_mode;
    enum http_chunk_state chunk_state;
    bool http10;      /* HTTP/1.0 */
    bool is_head;     /* HEAD: a response has no body */
    bool keep_alive;  /* the connection stays open after the response */
    bool want_close;  /* the handler set "Connection: close" */
    bool expect_100;  /* "Expect: 100-continue" not answered yet */
    bool too_large;   /* the body went over max_body and was discarded */
    bool aborted;     /* http_stream_abort() */
    bool chunked_out; /* the response is sent chunked */
    struct buf rhdrs; /* owned: response headers, "Name: value\r\n"... */
    size_t low_water;
    http_drain_cb drain_cb;
    void *drain_ud;
    http_done_cb done_cb;
    void *done_ud;
    void *data; /* borrowed: the user's */
    /* The header and argument arrays and the head's bytes follow. */
};

/* Bytes not consumed yet: data[off .. off+len). Freed when emptied. */
struct http_iobuf {
    char *data;
    size_t off;
    size_t len;
    size_t cap;
};

/* One uv_write() in flight and the bytes it writes. */
struct http_wblk {
    uv_write_t w; /* first: a uv_write_t * is a struct http_wblk * */
    size_t len;
    char data[];
};

TAILQ_HEAD(http_conn_list, http_conn);

struct http_conn {
    uv_tcp_t tcp;                     /* .data = this connection */
    struct http_server *s;            /* borrowed; outlives the connection */
    TAILQ_ENTRY(http_conn) link;      /* in s->conns until conn_close() */
    TAILQ_ENTRY(http_conn) wake_link; /* in s->wakes while woken */
    struct http_req *req;             /* owned: the current request */
    struct http_wblk *wblk;           /* owned: the write in flight */
    struct http_iobuf in;             /* input kept for later */
    struct http_iobuf out;            /* output not handed to libuv yet */
    uint64_t last_ms;                 /* uv_now() when bytes last moved */
    size_t scan;                      /* head bytes searched for its end */
    int werr;                         /* a write failed (libuv error) */
    bool woken;                       /* on s->wakes */
    bool closing;                     /* conn_close() ran */
    bool reading;                     /* uv_read_start() is in effect */
    bool peer_eof;                    /* the client sent its FIN */
    bool failed;      /* an error answer was sent: close after it */
    bool close_after; /* close once the output is sent */
    bool lingering;   /* shut down; discarding input until EOF */
    char peer[INET6_ADDRSTRLEN];
};

struct http_listener {
    uv_poll_t poll;
    int fd; /* owned */
    struct http_server *s;
};

struct http_server {
    uv_loop_t *loop; /* borrowed */
    struct http_server_opts o;
    char name[INET6_ADDRSTRLEN + 16]; /* "127.0.0.1:11435", for messages */
    struct sockaddr_storage addr;     /* bound address, real port */
    socklen_t addrlen;
    unsigned port;
    struct http_listener *listener; /* owned; NULL while not listening */
    uv_timer_t accept_timer;        /* accept paused after EMFILE */
    uv_timer_t tick;                /* idle timeouts, lingering closes */
    uv_idle_t idle;                 /* active while wakes are pending */
    uv_check_t check;               /* the wake pass after I/O */
    struct http_conn_list conns;    /* owned: every open connection */
    struct http_conn_list wakes;    /* borrowed: connections to advance */
    size_t nconns;
    size_t nwakes;
    size_t nreqs;
    uint64_t next_id;
    unsigned handles; /* our handles whose close callback is to come */
    unsigned depth;   /* user callbacks on the stack */
    bool handles_init;
    bool idle_on;
    bool stopping;     /* http_server_free() was called */
    bool free_pending; /* ... from a callback: free once it returns */
    time_t date_t;     /* the second date[] was formatted for */
    char date[64];     /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    char *rbuf;        /* owned: the shared read buffer */
    void (*closed)(void *);
    void *closed_ud;
};

static void conn_advance(struct http_conn *c);
static void conn_close(struct http_conn *c, enum http_end why);
static void http_server_do_free(struct http_server *s);
static void http_server_on_idle(uv_idle_t *h);

/* --- small helpers ------------------------------------------------------ */

static void
iobuf_free(struct http_iobuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* 0 or -ENOMEM (b unchanged). */
static int
iobuf_append(struct http_iobuf *b, const void *p, size_t n)
{
    size_t ncap;
    char *nd;

    if (n == 0)
        return 0;
    if (b->off > 0 && b->off + b->len + n > b->cap) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        ncap = b->cap < 256 ? 256 : b->cap;
        while (ncap < b->len + n)
            ncap *= 2;
        nd = realloc(b->data, ncap);
        if (nd == NULL)
            return -ENOMEM;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->off + b->len, p, n);
    b->len += n;
    return 0;
}

static void
iobuf_consume(struct http_iobuf *b, size_t n)
{
    if (n >= b->len) {
        iobuf_free(b);
        return;
    }
    b->off += n;
    b->len -= n;
}

static const char *
iobuf_head(const struct http_iobuf *b)
{
    return b->data + b->off;
}

static bool
http_is_tchar(unsigned char ch)
{
    /* RFC 9110 token characters. */
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool
http_is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!http_is_tchar((unsigned char)*s))
            return false;
    return true;
}

static int
http_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Percent-decoding in place ('+' too when plus is set, as in query
 * arguments). "%00" is left as it is: decoded, the NUL would cut the C
 * string short and "/api/tags%00junk" would be served as "/api/tags".
 */
static void
http_unescape(char *str, bool plus)
{
    char *w = str;
    const char *p = str;

    while (*p != '\0') {
        int hi = p[0] == '%' ? http_hexval(p[1]) : -1;
        int lo = hi >= 0 ? http_hexval(p[2]) : -1;

        if (hi >= 0 && lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi << 4 | lo);
            p += 3;
        } else if (plus && *p == '+') {
            *w++ = ' ';
            p++;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
}

/* Does the comma-separated list v hold the token tok (any case)? */
static bool
http_has_token(const char *v, const char *tok)
{
    size_t n = strlen(tok);

    while (*v != '\0') {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        if (strncasecmp(v, tok, n) == 0) {
            const char *e = v + n;

            while (*e == ' ' || *e == '\t')
                e++;
            if (*e == '\0' || *e == ',')
                return true;
        }
        while (*v != '\0' && *v != ',')
            v++;
    }
    return false;
}

static const struct {
    int status;
    const char *reason;
} http_reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {507, "Insufficient Storage"},
};

static const char *
http_reason(int status)
{
    size_t i;

    for (i = 0; i < sizeof(http_reasons) / sizeof(http_reasons[0]); i++)
        if (http_reasons[i].status == status)
            return http_reasons[i].reason;
    if (status >= 500)
        return "Server Error";
    if (status >= 400)
        return "Client Error";
    return "Unknown";
}

/* 1xx, 204 and 304 responses never have a body (RFC 9112 §6.3). */
static bool
http_status_bodyless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

static const char *
http_end_name(enum http_end why)
{
    switch (why) {
    case HTTP_END_OK:
        return "ok";
    case HTTP_END_ERROR:
        return "error";
    case HTTP_END_TIMEOUT:
        return "timeout";
    case HTTP_END_CLIENT_GONE:
        return "client gone";
    case HTTP_END_SHUTDOWN:
        return "shutdown";
    }
    return "?";
}

/* The Date header's value, formatted at most once a second. */
static const char *
http_server_date(struct http_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;

    if (t != s->date_t || s->date[0] == '\0') {
        if (gmtime_r(&t, &tm) == NULL)
            return s->date;
        snprintf(s->date, sizeof(s->date),
                 "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        s->date_t = t;
    }
    return s->date;
}

/* --- teardown bookkeeping ----------------------------------------------- */

/* Frees the server once it is stopping and its last handle is closed. */
static void
http_server_maybe_release(struct http_server *s)
{
    void (*closed)(void *);
    void *ud;

    if (!s->stopping || s->free_pending || s->handles > 0 || s->depth > 0)
        return;
    closed = s->closed;
    ud = s->closed_ud;
    free(s->rbuf);
    free(s);
    if (closed != NULL)
        closed(ud);
}

static void
http_server_on_handle_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->handles--;
    http_server_maybe_release(s);
}

static void
http_server_close_handle(struct http_server *s, uv_handle_t *h)
{
    h->data = s;
    uv_close(h, http_server_on_handle_closed);
}

/* --- waking connections ------------------------------------------------- */

static void
http_server_kick(struct http_server *s)
{
    if (s->idle_on || !s->handles_init)
        return;
    uv_idle_start(&s->idle, http_server_on_idle);
    s->idle_on = true;
}

/* Asks for conn_advance(c) once no user code is on the stack. */
static void
conn_wake(struct http_conn *c)
{
    struct http_server *s = c->s;

    if (c->woken || c->closing)
        return;
    c->woken = true;
    TAILQ_INSERT_TAIL(&s->wakes, c, wake_link);
    s->nwakes++;
    http_server_kick(s);
}

static void
conn_unwake(struct http_conn *c)
{
    if (!c->woken)
        return;
    TAILQ_REMOVE(&c->s->wakes, c, wake_link);
    c->woken = false;
    c->s->nwakes--;
}

/* Advances the connections woken so far (not those woken meanwhile: a
 * callback that keeps waking itself cannot hold the loop here). */
static void
http_server_run_wakes(struct http_server *s)
{
    size_t n = s->nwakes;
    struct http_conn *c;

    while (n-- > 0 && !s->stopping && (c = TAILQ_FIRST(&s->wakes)) != NULL) {
        conn_unwake(c);
        conn_advance(c);
    }
    if (s->free_pending && s->depth == 0) {
        http_server_do_free(s);
        return;
    }
    if (s->nwakes == 0 && s->idle_on) {
        uv_idle_stop(&s->idle);
        s->idle_on = false;
    }
}

static void
http_server_on_idle(uv_idle_t *h)
{
    http_server_run_wakes(h->data);
}

static void
http_server_on_check(uv_check_t *h)
{
    struct http_server *s = h->data;

    if (s->nwakes > 0 || s->free_pending)
        http_server_run_wakes(s);
}

/* --- output ------------------------------------------------------------- */

/* Bytes queued on the connection and not yet taken by the kernel. */
static size_t
conn_queued(const struct http_conn *c)
{
    return (c->wblk != NULL ? c->wblk->len : 0) + c->out.len;
}

static void
conn_set_werr(struct http_conn *c, int err)
{
    if (c->werr == 0)
        c->werr = err;
    conn_wake(c);
}

static void conn_on_write(uv_write_t *w, int status);

/* Hands the front of out (one slice) to uv_write(). */
static void
conn_start_write(struct http_conn *c)
{
    size_t n = c->out.len < HTTP_SERVER_WRITE_SLICE ? c->out.len
                                                    : HTTP_SERVER_WRITE_SLICE;
    struct http_wblk *w = malloc(sizeof(*w) + n);
    uv_buf_t b;
    int rc;

    if (w == NULL) {
        conn_set_werr(c, UV_ENOMEM);
        return;
    }
    memcpy(w->data, iobuf_head(&c->out), n);
    w->len = n;
    w->w.data = c;
    b = uv_buf_init(w->data, (unsigned)n);
    rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (rc != 0) {
        free(w);
        conn_set_werr(c, rc);
        return;
    }
    c->wblk = w;
    iobuf_consume(&c->out, n);
}

/*
 * Sends out (first) and then bufs, in order: uv_try_write() when no write
 * is in flight, one system call; the rest is copied to out and goes with
 * uv_write(). Errors are recorded in c->werr; conn_advance() acts on them.
 */
static void
conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned nbufs)
{
    uv_buf_t iov[8];
    unsigned k = 0;
    size_t sent;
    unsigned i;
    int rc;

    if (c->closing || c->werr != 0)
        return;
    if (c->wblk == NULL) {
        if (c->out.len > 0)
            iov[k++] =
                uv_buf_init(c->out.data + c->out.off, (unsigned)c->out.len);
        for (i = 0; i < nbufs; i++) /* nbufs < 8 */
            if (bufs[i].len > 0)
                iov[k++] = bufs[i];
        if (k == 0)
            return;
        rc = uv_try_write((uv_stream_t *)&c->tcp, iov, k);
        if (rc == UV_EAGAIN)
            rc = 0;
        if (rc < 0) {
            conn_set_werr(c, rc);
            return;
        }
        sent = (size_t)rc;
        if (sent > 0)
            c->last_ms = uv_now(c->s->loop);
        if (c->out.len > 0) {
            size_t d = sent < c->out.len ? sent : c->out.len;

            iobuf_consume(&c->out, d);
            sent -= d;
        }
    } else {
        sent = 0;
    }
    /* What the kernel did not take waits in out, in order. */
    for (i = 0; i < nbufs; i++) {
        if (sent >= bufs[i].len) {
            sent -= bufs[i].len;
            continue;
        }
        if (iobuf_append(&c->out, bufs[i].base + sent, bufs[i].len - sent) !=
            0) {
            conn_set_werr(c, UV_ENOMEM);
            return;
        }
        sent = 0;
    }
    if (c->wblk == NULL && c->out.len > 0)
        conn_start_write(c);
}

static void
conn_flush(struct http_conn *c)
{
    conn_write(c, NULL, 0);
}

static void
conn_on_write(uv_write_t *w, int status)
{
    struct http_conn *c = w->data;

    c->wblk = NULL;
    free(w);
    if (c->closing)
        return; /* UV_ECANCELED from uv_close() */
    if (status < 0) {
        conn_set_werr(c, status);
        conn_advance(c);
        return;
    }
    c->last_ms = uv_now(c->s->loop);
    if (c->out.len > 0)
        conn_flush(c);
    conn_advance(c);
}

/* How a failed write ends the request. */
static enum http_end
conn_werr_end(int err)
{
    switch (err) {
    case UV_EPIPE:
    case UV_ECONNRESET:
    case UV_ENOTCONN:
    case UV_ECONNABORTED:
    case UV_ETIMEDOUT:
        return HTTP_END_CLIENT_GONE;
    default:
        return HTTP_END_ERROR;
    }
}

/* --- reading ------------------------------------------------------------ */

static void
conn_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct http_conn *c = h->data;

    (void)suggested;
    *b = uv_buf_init(c->s->rbuf, HTTP_SERVER_RBUF_SIZE);
}

static void conn_on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b);

static void
conn_read_resume(struct http_conn *c)
{
    if (c->reading || c->peer_eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read) == 0)
        c->reading = true;
}

static void
conn_read_pause(struct http_conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* --- the request -------------------------------------------------------- */

/* The request ended: tell the user, then release it. */
static void
req_finish(struct http_conn *c, enum http_end why)
{
    struct http_server *s = c->s;
    struct http_req *r = c->req;

    c->req = NULL;
    s->nreqs--;
    r->state = HTTP_REQ_DONE;
    log_trace(TRACE_HTTP, "%" PRIu64 " http: %s %s done: %s", r->id, r->method,
              r->path, http_end_name(why));
    if (r->done_cb != NULL) {
        s->depth++;
        r->done_cb(r, why, r->done_ud);
        s->depth--;
    }
    free(r->body);
    buf_cleanup(&r->rhdrs);
    free(r);
}

/* Appends body bytes; over max_body the body is dropped (too_large) and
 * the rest is read and discarded, so the handler can still answer. */
static void
req_body_append(struct http_req *r, const char *p, size_t n)
{
    size_t max = r->c->s->o.max_body;
    size_t ncap;
    char *nb;

    if (r->too_large || n == 0)
        return;
    if (n > max - r->body_len) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        if (r->body_mode == HTTP_BODY_LENGTH) {
            ncap = (size_t)r->body_total + 1; /* exact: known in advance */
        } else {
            ncap = r->body_cap < 256 ? 256 : r->body_cap * 2;
            while (ncap < r->body_len + n + 1)
                ncap *= 2;
            if (ncap > max + 1)
                ncap = max + 1;
        }
        nb = realloc(r->body, ncap);
        if (nb == NULL) {
            r->too_large = true; /* as the MHD version did on ENOMEM */
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return;
        }
        r->body = nb;
        r->body_cap = ncap;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* One line of a chunked body (without its line end). 0 or -1 (400). */
static int
req_chunk_line(struct http_req *r, const char *line, size_t len)
{
    size_t max_trailers = r->c->s->o.max_header;
    uint64_t size = 0;
    size_t i = 0;
    int h;

    switch (r->chunk_state) {
    case HTTP_CHUNK_SIZE:
        while (i < len && (h = http_hexval(line[i])) >= 0) {
            if (i >= 15)
                return -1; /* over 2^60: nonsense */
            size = size << 4 | (uint64_t)h;
            i++;
        }
        if (i == 0)
            return -1;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i < len && line[i] != ';')
            return -1; /* ";ext=value" is tolerated and ignored */
        if (size == 0) {
            r->chunk_state = HTTP_CHUNK_TRAILER;
        } else {
            r->chunk_state = HTTP_CHUNK_DATA;
            r->body_left = size;
        }
        return 0;
    case HTTP_CHUNK_DATA_END:
        if (len != 0)
            return -1;
        r->chunk_state = HTTP_CHUNK_SIZE;
        return 0;
    case HTTP_CHUNK_TRAILER:
        if (len == 0) {
            r->state = HTTP_REQ_READY;
            return 0;
        }
        r->trailer_bytes += len;
        return r->trailer_bytes > max_trailers ? -1 : 0; /* ignored */
    case HTTP_CHUNK_DATA:
        break;
    }
    return -1;
}

static void conn_fail(struct http_conn *c, int status);

static size_t
req_take_chunked(struct http_req *r, const char *p, size_t n)
{
    size_t used = 0;

    while (used < n && r->state == HTTP_REQ_READING) {
        const char *line = p + used;
        const char *lf;
        size_t len;

        if (r->chunk_state == HTTP_CHUNK_DATA) {
            len = n - used;
            if (len > r->body_left)
                len = (size_t)r->body_left;
            req_body_append(r, line, len);
            r->body_left -= len;
            used += len;
            if (r->body_left == 0)
                r->chunk_state = HTTP_CHUNK_DATA_END;
            continue;
        }
        lf = memchr(line, '\n', n - used);
        if (lf == NULL) {
            if (n - used > HTTP_SERVER_LINE_MAX)
                conn_fail(r->c, 400);
            break; /* the rest of the line is still to come */
        }
        len = (size_t)(lf - line);
        used += len + 1;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (req_chunk_line(r, line, len) != 0) {
            conn_fail(r->c, 400);
            break;
        }
    }
    return used;
}

/* Body bytes of the current request; returns how many it took. */
static size_t
req_take_body(struct http_req *r, const char *p, size_t n)
{
    size_t k;

    if (r->body_mode == HTTP_BODY_CHUNKED)
        return req_take_chunked(r, p, n);
    k = n < r->body_left ? n : (size_t)r->body_left;
    req_body_append(r, p, k);
    r->body_left -= k;
    if (r->body_left == 0)
        r->state = HTTP_REQ_READY;
    return k;
}

/* The request line, NUL-terminated. 0 or an HTTP status. */
static int
req_parse_request_line(struct http_req *r, char *line, char **target)
{
    char *sp1 = strchr(line, ' ');
    char *sp2;
    char *ver;
    char *t;

    if (sp1 == NULL)
        return 400;
    *sp1 = '\0';
    if (!http_is_token(line))
        return 400;
    r->method = line;
    t = sp1 + 1;
    sp2 = strchr(t, ' ');
    if (sp2 == NULL || sp2 == t)
        return 400; /* HTTP/0.9 or an empty target */
    *sp2 = '\0';
    for (char *q = t; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return 400;
    ver = sp2 + 1;
    if (strncmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
        ver[6] != '.' || ver[7] < '0' || ver[7] > '9' || ver[8] != '\0')
        return 400;
    if (ver[5] != '1')
        return 505;
    r->http10 = ver[7] == '0';
    r->is_head = strcmp(r->method, "HEAD") == 0;
    *target = t;
    return 0;
}

/* One header line, NUL-terminated, without its line end. 0 or 400. */
static int
req_parse_header_line(struct http_req *r, char *line)
{
    char *colon;
    char *v;
    char *e;

    if (line[0] == ' ' || line[0] == '\t')
        return 400; /* obsolete line folding (RFC 9112 §5.2) */
    colon = strchr(line, ':');
    if (colon == NULL)
        return 400;
    *colon = '\0';
    if (!http_is_token(line))
        return 400; /* also "Name : value" */
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *e = '\0';
    for (const char *q = v; *q != '\0'; q++)
        if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
            return 400;
    r->hdrs[r->nhdrs].k = line;
    r->hdrs[r->nhdrs].v = v;
    r->nhdrs++;
    return 0;
}

/* Splits the head into lines (LF or CRLF) and parses them. */
static int
req_parse_lines(struct http_req *r, char *head, char **target)
{
    char *line = head;
    bool first = true;
    int rc;

    for (;;) {
        char *lf = strchr(line, '\n');
        char *cr;

        if (lf == NULL)
            return 400; /* cannot happen: the head ends with an empty line */
        *lf = '\0';
        if (lf > line && lf[-1] == '\r')
            lf[-1] = '\0';
        cr = strchr(line, '\r');
        if (cr != NULL)
            return 400; /* a bare CR */
        if (*line == '\0' && !first)
            return 0; /* the empty line that ends the head */
        if (first)
            rc = req_parse_request_line(r, line, target);
        else
            rc = req_parse_header_line(r, line);
        if (rc != 0)
            return rc;
        first = false;
        line = lf + 1;
    }
}

static int
http_parse_length(const char *v, uint64_t *out)
{
    uint64_t n = 0;

    if (*v == '\0')
        return -1;
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9' || n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*v - '0');
    }
    *out = n;
    return 0;
}

/* Framing and connection headers. 0 or an HTTP status. */
static int
req_parse_framing(struct http_req *r, size_t max_body)
{
    bool have_cl = false, te = false, close = false, ka = false;
    uint64_t cl = 0, v;
    unsigned i;

    for (i = 0; i < r->nhdrs; i++) {
        const char *k = r->hdrs[i].k;
        const char *val = r->hdrs[i].v;

        if (strcasecmp(k, "Content-Length") == 0) {
            if (http_parse_length(val, &v) != 0 || (have_cl && v != cl))
                return 400;
            cl = v;
            have_cl = true;
        } else if (strcasecmp(k, "Transfer-Encoding") == 0) {
            if (te || strcasecmp(val, "chunked") != 0)
                return 501; /* only chunked, and only once */
            te = true;
        } else if (strcasecmp(k, "Connection") == 0) {
            close = close || http_has_token(val, "close");
            ka = ka || http_has_token(val, "keep-alive");
        } else if (strcasecmp(k, "Expect") == 0) {
            r->expect_100 = strcasecmp(val, "100-continue") == 0;
        }
    }
    if (have_cl && te)
        return 400; /* no request smuggling */
    r->keep_alive = !close && (!r->http10 || ka);
    if (te) {
        r->body_mode = HTTP_BODY_CHUNKED;
        r->chunk_state = HTTP_CHUNK_SIZE;
    } else if (cl > 0) {
        r->body_mode = HTTP_BODY_LENGTH;
        r->body_left = r->body_total = cl;
        r->too_large = cl > max_body;
    }
    if (r->http10 || r->body_mode == HTTP_BODY_NONE)
        r->expect_100 = false;
    return 0;
}

/* The target: absolute-form tolerated, query split off and decoded. */
static void
req_parse_target(struct http_req *r, char *t)
{
    char *q = strchr(t, '?');
    char *seg;

    if (q != NULL)
        *q++ = '\0';
    r->path = t;
    if (t[0] != '/' && t[0] != '*') {
        char *ss = strstr(t, "://");

        if (ss != NULL) { /* absolute-form: http://host:port/path */
            t = strchr(ss + 3, '/');
            r->path = t != NULL ? t : "/";
        }
    }
    if (t != NULL && strchr(t, '%') != NULL)
        http_unescape(t, false);
    for (seg = q; seg != NULL && *seg != '\0';) {
        char *amp = strchr(seg, '&');
        char *eq;

        if (amp != NULL)
            *amp = '\0';
        if (*seg != '\0') {
            eq = strchr(seg, '=');
            if (eq != NULL)
                *eq++ = '\0';
            http_unescape(seg, true);
            if (eq != NULL)
                http_unescape(eq, true);
            r->args[r->nargs].k = seg;
            r->args[r->nargs].v = eq;
            r->nargs++;
        }
        seg = amp != NULL ? amp + 1 : NULL;
    }
}

static size_t
http_count(const char *p, size_t n, char ch)
{
    size_t k = 0;
    const char *e = p + n;

    while (p < e && (p = memchr(p, ch, (size_t)(e - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/*
 * A whole request head (len bytes, ending with the empty line) into a new
 * struct http_req: one allocation holds the struct, the header and
 * argument arrays and a copy of the head, split in place. NULL with an
 * HTTP status in *status.
 */
static struct http_req *
req_parse(struct http_conn *c, const char *p, size_t len, int *status)
{
    const char *lf = memchr(p, '\n', len);
    size_t nlines = http_count(p, len, '\n');
    size_t nargs = 1 + http_count(p, (size_t)(lf - p), '&');
    struct http_req *r;
    char *head;
    char *target = NULL;
    int rc;

    if (memchr(p, '\0', len) != NULL) {
        *status = 400;
        return NULL;
    }
    r = malloc(sizeof(*r) + (nlines + nargs) * sizeof(struct http_kv) + len +
               1);
    if (r == NULL) {
        *status = 503;
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->c = c;
    r->hdrs = (struct http_kv *)(void *)(r + 1);
    r->args = r->hdrs + nlines;
    head = (char *)(r->args + nargs);
    memcpy(head, p, len);
    head[len] = '\0';
    rc = req_parse_lines(r, head, &target);
    if (rc == 0)
        rc = req_parse_framing(r, c->s->o.max_body);
    if (rc != 0) {
        free(r);
        *status = rc;
        return NULL;
    }
    req_parse_target(r, target);
    buf_init(&r->rhdrs, HTTP_SERVER_MAX_RESP_HDRS);
    r->state = HTTP_REQ_READING;
    if (r->body_mode == HTTP_BODY_NONE) {
        r->state = HTTP_REQ_READY;
    } else if (r->too_large && r->expect_100) {
        /* The client waits for our word before sending a body we would
         * discard: answer now (the handler sees too_large), then close. */
        r->state = HTTP_REQ_READY;
        r->expect_100 = false;
        r->keep_alive = false;
    }
    return r;
}

/* The end of a request head in p[0..n): the index after its empty line,
 * or 0. Searching resumes near from, where the last search stopped. */
static size_t
http_find_head_end(const char *p, size_t n, size_t from)
{
    size_t i = from > 2 ? from - 2 : 0;
    const char *lf;

    while (i < n && (lf = memchr(p + i, '\n', n - i)) != NULL) {
        i = (size_t)(lf - p) + 1;
        if (i < n && p[i] == '\n')
            return i + 1;
        if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
            return i + 2;
    }
    return 0;
}

/* A request head from p[0..n): its length once whole, else 0. */
static size_t
conn_parse_head(struct http_conn *c, const char *p, size_t n)
{
    struct http_server *s = c->s;
    size_t skip = 0;
    size_t end;
    int status = 0;

    /* Empty lines before a request line are ignored (RFC 9112 §2.2). */
    if (c->scan == 0) {
        while (skip < n && (p[skip] == '\r' || p[skip] == '\n'))
            skip++;
        if (skip > 0)
            return skip;
    }
    end = http_find_head_end(p, n, c->scan);
    if (end == 0) {
        if (n >= s->o.max_header)
            conn_fail(c, 431);
        c->scan = n;
        return 0;
    }
    c->scan = 0;
    if (end > s->o.max_header) {
        conn_fail(c, 431);
        return 0;
    }
    c->req = req_parse(c, p, end, &status);
    if (c->req == NULL) {
        conn_fail(c, status);
        return 0;
    }
    c->req->id = ++s->next_id;
    s->nreqs++;
    return end;
}

/* Is the connection taking request bytes now? */
static bool
conn_parsing(const struct http_conn *c)
{
    return !c->closing && !c->failed && !c->close_after && !c->lingering &&
           (c->req == NULL || c->req->state == HTTP_REQ_READING);
}

/* Parses what it can of p[0..n); returns the bytes it took. Stops at the
 * end of a request, which waits for its handler. */
static size_t
conn_parse(struct http_conn *c, const char *p, size_t n)
{
    size_t used = 0;
    size_t k;

    while (used < n && conn_parsing(c)) {
        if (c->req == NULL)
            k = conn_parse_head(c, p + used, n - used);
        else
            k = req_take_body(c->req, p + used, n - used);
        if (k == 0)
            break;
        used += k;
    }
    return used;
}

/* "Expect: 100-continue": the client waits for this before the body. */
static void
conn_maybe_continue(struct http_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct http_req *r = c->req;
    uv_buf_t b;

    if (r == NULL || !r->expect_100)
        return;
    r->expect_100 = false;
    if (r->state != HTTP_REQ_READING)
        return; /* the body came along anyway */
    b = uv_buf_init((char *)(uintptr_t)cont, sizeof(cont) - 1);
    conn_write(c, &b, 1);
}

/* Parses the kept input. */
static void
conn_parse_kept(struct http_conn *c)
{
    size_t used;

    if (c->in.len == 0 || !conn_parsing(c))
        return;
    used = conn_parse(c, iobuf_head(&c->in), c->in.len);
    if (c->failed)
        iobuf_free(&c->in);
    else
        iobuf_consume(&c->in, used);
    conn_maybe_continue(c);
}

/* New bytes from the socket (in the shared buffer). */
static void
conn_feed(struct http_conn *c, const char *p, size_t n)
{
    size_t used;

    if (c->in.len == 0 && conn_parsing(c)) {
        /* The usual case: parsed where they are, only a rest is kept. */
        used = conn_parse(c, p, n);
        conn_maybe_continue(c);
        if (c->failed)
            return; /* the rest is discarded */
        p += used;
        n -= used;
        if (iobuf_append(&c->in, p, n) != 0)
            conn_close(c, HTTP_END_ERROR);
    } else {
        if (iobuf_append(&c->in, p, n) != 0) {
            conn_close(c, HTTP_END_ERROR);
            return;
        }
        conn_parse_kept(c);
    }
    /* Backpressure on a pipelining client: it waits for our answers. */
    if (!c->closing && c->in.len >= HTTP_SERVER_PIPELINE_MAX &&
        !conn_parsing(c))
        conn_read_pause(c);
}

/* --- the connection's state machine ------------------------------------- */

/* An error answer from the server itself (400, 431, ...), then close. */
static void
conn_fail(struct http_conn *c, int status)
{
    char msg[512];
    const char *reason = http_reason(status);
    int n;
    uv_buf_t b;

    log_debug("http: %s: request from %s refused: %d %s", c->s->name, c->peer,
              status, reason);
    if (c->req != NULL) /* never handed to a handler: no done callback */
        req_finish(c, HTTP_END_ERROR);
    c->failed = true;
    c->scan = 0;
    n = snprintf(msg, sizeof(msg),
                 "HTTP/1.1 %d %s\r\nDate: %s\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                 status, reason, http_server_date(c->s), strlen(reason) + 1,
                 reason);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return;
    b = uv_buf_init(msg, (unsigned)n);
    conn_write(c, &b, 1);
}

static void
conn_on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;

    free(req);
    if (c->closing)
        return;
    if (status < 0)
        conn_close(c, HTTP_END_OK);
}

/*
 * The graceful close, once everything is sent: FIN, then read and discard
 * until the client's FIN (or HTTP_SERVER_LINGER_MS), so that its unread
 * bytes cannot make our close() a reset that destroys the answer.
 */
static void
conn_shutdown(struct http_conn *c)
{
    uv_shutdown_t *req;

    if (c->lingering || c->closing)
        return;
    if (c->peer_eof) {
        conn_close(c, HTTP_END_OK);
        return;
    }
    req = malloc(sizeof(*req));
    if (req == NULL) {
        conn_close(c, HTTP_END_OK);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0) {
        free(req);
        conn_close(c, HTTP_END_OK);
        return;
    }
    c->lingering = true;
    c->last_ms = uv_now(c->s->loop);
    iobuf_free(&c->in);
    conn_read_resume(c);
}

/* The whole response is in the kernel's hands. */
static void
req_complete(struct http_conn *c)
{
    bool keep = c->req->keep_alive;

    req_finish(c, HTTP_END_OK);
    c->last_ms = uv_now(c->s->loop);
    if (!keep)
        c->close_after = true;
}

/* No request on the connection: the next one, or the end. Returns true
 * when there is more to do. */
static bool
conn_next(struct http_conn *c)
{
    if (c->close_after || c->failed) {
        if (conn_queued(c) == 0)
            conn_shutdown(c);
        return false;
    }
    conn_parse_kept(c);
    if (c->failed)
        return true;
    if (c->req != NULL && c->req->state == HTTP_REQ_READY)
        return true;
    if (c->peer_eof) {
        conn_close(c, HTTP_END_CLIENT_GONE);
        return false;
    }
    conn_read_resume(c);
    return false;
}

static void
req_dispatch(struct http_conn *c)
{
    struct http_server *s = c->s;
    struct http_req *r = c->req;

    r->state = HTTP_REQ_WAITING;
    log_trace(TRACE_HTTP, "%" PRIu64 " http: %s %s from %s", r->id, r->method,
              r->path, c->peer);
    s->depth++;
    s->o.on_request(r, s->o.ud);
    s->depth--;
}

/* One step for the current request; true when there is more to do. */
static bool
req_advance(struct http_conn *c)
{
    struct http_req *r = c->req;
    http_drain_cb cb;

    if (r->aborted) {
        conn_close(c, HTTP_END_ERROR);
        return false;
    }
    switch (r->state) {
    case HTTP_REQ_READY:
        if (c->s->stopping)
            return false;
        req_dispatch(c);
        return true;
    case HTTP_REQ_WAITING:
        if (c->peer_eof) { /* the client left before we could answer */
            conn_close(c, HTTP_END_CLIENT_GONE);
            return false;
        }
        return false;
    case HTTP_REQ_RESPONDED:
    case HTTP_REQ_ENDING:
        if (conn_queued(c) == 0) {
            req_complete(c);
            return true;
        }
        break;
    default:
        break;
    }
    if (r->drain_cb != NULL && conn_queued(c) <= r->low_water) {
        cb = r->drain_cb;
        r->drain_cb = NULL;
        c->s->depth++;
        cb(r, r->drain_ud);
        c->s->depth--;
        return true;
    }
    return false;
}

/*
 * Does whatever is due on the connection: flush, act on a write error or
 * an abort, call the handler, finish a request whose response is out,
 * call a drain callback, start on the next request, close. Called only
 * where no user code is on the stack.
 */
static void
conn_advance(struct http_conn *c)
{
    while (!c->closing && !c->s->stopping) {
        if (c->req != NULL && c->req->aborted) {
            conn_close(c, HTTP_END_ERROR);
            return;
        }
        if (c->werr != 0) {
            conn_close(c, c->req != NULL ? conn_werr_end(c->werr)
                                         : HTTP_END_ERROR);
            return;
        }
        if (c->wblk == NULL && c->out.len > 0) {
            conn_flush(c);
            if (c->werr != 0)
                continue;
        }
        if (c->req == NULL ? !conn_next(c) : !req_advance(c))
            return;
    }
}

/* The one teardown: ends the request (done callback), closes the handle;
 * the memory goes in the close callback. */
static void
conn_on_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    struct http_server *s = c->s;

    free(c);
    s->handles--;
    http_server_maybe_release(s);
}

static void
conn_close(struct http_conn *c, enum http_end why)
{
    struct http_server *s = c->s;

    if (c->closing)
        return;
    c->closing = true;
    conn_unwake(c);
    TAILQ_REMOVE(&s->conns, c, link);
    s->nconns--;
    if (c->req != NULL)
        req_finish(c, why);
    iobuf_free(&c->in);
    iobuf_free(&c->out);
    uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
}

/* EOF or a read error. */
static void
conn_on_read_end(struct http_conn *c, int err)
{
    struct http_req *r = c->req;

    c->reading = false;
    if (err != UV_EOF) {
        log_trace(TRACE_HTTP, "http: %s: read from %s: %s", c->s->name, c->peer,
                  uv_strerror(err));
        conn_close(c, HTTP_END_CLIENT_GONE);
        return;
    }
    c->peer_eof = true;
    if (c->lingering) {
        conn_close(c, HTTP_END_OK);
        return;
    }
    if (r == NULL) {
        if (conn_queued(c) == 0)
            conn_close(c, HTTP_END_CLIENT_GONE);
        else
            conn_advance(c); /* an error answer is still going out */
        return;
    }
    switch (r->state) {
    case HTTP_REQ_READING:
    case HTTP_REQ_WAITING:
    case HTTP_REQ_STREAMING:
        log_trace(TRACE_HTTP, "%" PRIu64 " http: client gone", r->id);
        conn_close(c, HTTP_END_CLIENT_GONE);
        return;
    default:
        /* The answer is queued whole: let it go out (a half-closed
         * client still reads); a client really gone fails the write. */
        conn_advance(c);
        return;
    }
}

static void
conn_on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = h->data;

    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        conn_on_read_end(c, (int)nread);
        return;
    }
    if (c->lingering)
        return; /* discarded; the linger time runs from the shutdown */
    c->last_ms = uv_now(c->s->loop);
    if (c->failed || c->close_after)
        return; /* discarded */
    conn_feed(c, b->base, (size_t)nread);
    conn_advance(c);
}

/* May the idle timeout end this connection now? Not while a handler
 * works on its answer or a stream has nothing to send: only when bytes
 * should move and do not. */
static bool
conn_may_time_out(const struct http_conn *c)
{
    if (c->req == NULL)
        return true;
    switch (c->req->state) {
    case HTTP_REQ_READING:
        return true;
    case HTTP_REQ_READY:
    case HTTP_REQ_WAITING:
        return false;
    default:
        return conn_queued(c) > 0;
    }
}

static void
http_server_on_tick(uv_timer_t *t)
{
    struct http_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    uint64_t idle_ms = (uint64_t)s->o.idle_timeout_s * 1000u;
    struct http_conn *c;
    struct http_conn *next;

    s->depth++; /* done callbacks may call http_server_free() */
    for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->lingering) {
            if (now - c->last_ms >= HTTP_SERVER_LINGER_MS)
                conn_close(c, HTTP_END_OK);
        } else if (idle_ms > 0 && now - c->last_ms >= idle_ms &&
                   conn_may_time_out(c)) {
            log_trace(TRACE_HTTP, "http: %s: %s idle, closed", s->name,
                      c->peer);
            conn_close(c, HTTP_END_TIMEOUT);
        }
    }
    s->depth--;
    if (s->free_pending)
        http_server_kick(s);
}

/* --- the listening socket ----------------------------------------------- */

static void
http_format_peer(const struct sockaddr_storage *ss, char *out, size_t n)
{
    const void *a = NULL;
    int af = AF_INET;

    out[0] = '\0';
    if (ss->ss_family == AF_INET) {
        a = &((const struct sockaddr_in *)(const void *)ss)->sin_addr;
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a6 =
            &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;
        /* A v4 client of a dual-stack socket reads as plain v4. */
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            a = &a6->s6_addr[12];
        } else {
            a = a6;
            af = AF_INET6;
        }
    }
    if (a == NULL || inet_ntop(af, a, out, (socklen_t)n) == NULL)
        out[0] = '\0';
}

/* A new connection on fd (ours from here). */
static void
http_server_add_conn(struct http_server *s, int fd,
                     const struct sockaddr_storage *ss)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    int one = 1;
    int rc;

    if (c == NULL) {
        close(fd);
        return;
    }
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->s = s;
    s->handles++;
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    s->nconns++;
    c->last_ms = uv_now(s->loop);
    http_format_peer(ss, c->peer, sizeof(c->peer));
    /* Tokens are small writes: never hold one back for an ACK. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        log_debug("http: %s: uv_tcp_open: %s", s->name, uv_strerror(rc));
        close(fd); /* not libuv's */
        conn_close(c, HTTP_END_ERROR);
        return;
    }
    conn_read_resume(c);
    if (!c->reading)
        conn_close(c, HTTP_END_ERROR);
}

static int
http_server_accept_one(int lfd, struct sockaddr_storage *ss, socklen_t *len)
{
#ifdef __linux__
    return accept4(lfd, (struct sockaddr *)ss, len,
                   SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(lfd, (struct sockaddr *)ss, len);

    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    return fd;
#endif
}

static void http_server_on_accept(uv_poll_t *h, int status, int events);

static void
http_server_on_accept_timer(uv_timer_t *t)
{
    struct http_server *s = t->data;

    if (s->listener != NULL && !s->stopping)
        uv_poll_start(&s->listener->poll, UV_READABLE, http_server_on_accept);
}

/* Out of fds: stop accepting for a moment instead of spinning on a
 * listening socket that stays readable (relayd does the same). */
static void
http_server_pause_accept(struct http_server *s, struct http_listener *l)
{
    log_warn("http: %s: accept: %s; pausing accept", s->name, strerror(errno));
    uv_poll_stop(&l->poll);
    uv_timer_start(&s->accept_timer, http_server_on_accept_timer,
                   HTTP_SERVER_ACCEPT_PAUSE_MS, 0);
}

static void
http_server_on_accept(uv_poll_t *h, int status, int events)
{
    struct http_listener *l = h->data;
    struct http_server *s = l->s;
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    int i;

    (void)events;
    if (status < 0) {
        /* libuv stopped the watcher; try again in a moment. */
        log_warn("http: %s: listening socket: %s", s->name,
                 uv_strerror(status));
        uv_timer_start(&s->accept_timer, http_server_on_accept_timer,
                       HTTP_SERVER_ACCEPT_PAUSE_MS, 0);
        return;
    }
    for (i = 0; i < HTTP_SERVER_ACCEPT_BATCH; i++) {
        len = sizeof(ss);
        fd = http_server_accept_one(l->fd, &ss, &len);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM)
                http_server_pause_accept(s, l);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_debug("http: %s: accept: %s", s->name, strerror(errno));
            break;
        }
        if (s->nconns >= s->o.max_conns || s->stopping) {
            log_debug("http: %s: %zu connections: one refused", s->name,
                      s->nconns);
            close(fd);
            continue;
        }
        http_server_add_conn(s, fd, &ss);
    }
}

static void
http_server_on_listener_closed(uv_handle_t *h)
{
    struct http_listener *l = h->data;
    struct http_server *s = l->s;

    free(l);
    s->handles--;
    http_server_maybe_release(s);
}

static void
http_server_close_listener(struct http_server *s)
{
    struct http_listener *l = s->listener;

    if (l == NULL)
        return;
    s->listener = NULL;
    if (s->handles_init)
        uv_timer_stop(&s->accept_timer);
    /* uv_close() stops the watcher at once; only then close the fd. */
    uv_close((uv_handle_t *)&l->poll, http_server_on_listener_closed);
    close(l->fd);
    l->fd = -1;
}

static int
http_server_set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* socket + bind + listen on s->addr; records the real port. */
static int
http_server_bind(struct http_server *s, int *fdp)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;
    int fd;
    int rc;

    memset(&ss, 0, sizeof(ss));
    fd = socket(s->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    rc = http_server_set_flags(fd);
    if (rc == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        rc = -errno;
    if (rc == 0 && bind(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0)
        rc = -errno;
    if (rc == 0 && listen(fd, HTTP_SERVER_BACKLOG) != 0)
        rc = -errno;
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    if (ss.ss_family == AF_INET6)
        s->port = ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    else
        s->port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    /* Re-binding later must get the same port, even when 0 was asked. */
    if (s->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)&s->addr)->sin6_port =
            htons((uint16_t)s->port);
    else
        ((struct sockaddr_in *)(void *)&s->addr)->sin_port =
            htons((uint16_t)s->port);
    *fdp = fd;
    return 0;
}

/* Starts watching a bound socket; takes fd (closed on failure). */
static int
http_server_watch_listener(struct http_server *s, int fd)
{
    struct http_listener *l;
    int rc;

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return -ENOMEM;
    }
    rc = uv_poll_init(s->loop, &l->poll, fd);
    if (rc != 0) {
        free(l);
        close(fd);
        return rc;
    }
    l->fd = fd;
    l->s = s;
    l->poll.data = l;
    s->handles++;
    s->listener = l;
    uv_poll_start(&l->poll, UV_READABLE, http_server_on_accept);
    return 0;
}

static void
http_server_format_name(struct http_server *s, const char *host)
{
    if (strchr(host, ':') != NULL)
        snprintf(s->name, sizeof(s->name), "[%s]:%u", host, s->port);
    else
        snprintf(s->name, sizeof(s->name), "%s:%u", host, s->port);
}

static int
http_server_resolve(struct http_server *s, const char *host)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char port[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", s->o.port);
    rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rc != 0)
        return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    if (res->ai_addrlen > sizeof(s->addr)) {
        freeaddrinfo(res);
        return -EAFNOSUPPORT;
    }
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* --- the server --------------------------------------------------------- */

static void
http_server_apply_defaults(struct http_server_opts *o)
{
    if (o->max_body == 0)
        o->max_body = HTTP_SERVER_DEF_MAX_BODY;
    if (o->max_header == 0)
        o->max_header = HTTP_SERVER_DEF_MAX_HEADER;
    if (o->stream_max_queue == 0)
        o->stream_max_queue = HTTP_SERVER_DEF_MAX_QUEUE;
    if (o->max_conns == 0)
        o->max_conns = HTTP_SERVER_NO_CONN_LIMIT;
}

/* The uv handles that live as long as the server. */
static void
http_server_init_handles(struct http_server *s)
{
    uv_timer_init(s->loop, &s->accept_timer);
    uv_timer_init(s->loop, &s->tick);
    uv_idle_init(s->loop, &s->idle);
    uv_check_init(s->loop, &s->check);
    s->accept_timer.data = s;
    s->tick.data = s;
    s->idle.data = s;
    s->check.data = s;
    s->handles += 4;
    s->handles_init = true;
    uv_timer_start(&s->tick, http_server_on_tick, HTTP_SERVER_TICK_MS,
                   HTTP_SERVER_TICK_MS);
    uv_check_start(&s->check, http_server_on_check);
    /* Housekeeping: they must not keep the loop alive. */
    uv_unref((uv_handle_t *)&s->tick);
    uv_unref((uv_handle_t *)&s->check);
}

static void
http_server_set_error(char *err, size_t errlen, const char *name, int rc)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", name, strerror(-rc));
}

struct http_server *
http_server_new(uv_loop_t *loop, const struct http_server_opts *o, char *err,
                size_t errlen)
{
    struct http_server *s;
    const char *host = o->host != NULL ? o->host : "";
    int lfd = -1;
    int rc;

    s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->rbuf = malloc(HTTP_SERVER_RBUF_SIZE);
    if (s == NULL || s->rbuf == NULL) {
        free(s);
        http_server_set_error(err, errlen, host, -ENOMEM);
        return NULL;
    }
    s->loop = loop;
    s->o = *o;
    s->o.host = NULL; /* not kept: the caller's string */
    http_server_apply_defaults(&s->o);
    TAILQ_INIT(&s->conns);
    TAILQ_INIT(&s->wakes);
    s->port = o->port;
    http_server_format_name(s, host);
    rc = o->on_request == NULL ? -EINVAL : http_server_resolve(s, host);
    if (rc == 0)
        rc = http_server_bind(s, &lfd);
    if (rc != 0) {
        http_server_set_error(err, errlen, s->name, rc);
        free(s->rbuf);
        free(s);
        return NULL;
    }
    http_server_format_name(s, host);
    http_server_init_handles(s);
    rc = http_server_watch_listener(s, lfd);
    if (rc != 0) {
        http_server_set_error(err, errlen, s->name, rc);
        /* Handles are initialised: release asynchronously. */
        s->stopping = true;
        http_server_do_free(s);
        return NULL;
    }
    log_debug("http: listening on %s", s->name);
    return s;
}

unsigned
http_server_port(const struct http_server *s)
{
    return s->port;
}

int
http_server_listen(struct http_server *s, bool on)
{
    int fd = -1;
    int rc;

    if (s->stopping)
        return -EINVAL;
    if (!on) {
        http_server_close_listener(s);
        return 0;
    }
    if (s->listener != NULL)
        return 0;
    rc = http_server_bind(s, &fd);
    if (rc == 0)
        rc = http_server_watch_listener(s, fd);
    if (rc != 0)
        log_warn("http: %s: listen: %s", s->name, strerror(-rc));
    return rc;
}

size_t
http_server_active(const struct http_server *s)
{
    return s->nreqs;
}

static void
http_server_do_free(struct http_server *s)
{
    struct http_conn *c;

    s->free_pending = false;
    http_server_close_listener(s);
    if (s->handles_init) {
        s->handles_init = false;
        s->idle_on = false;
        http_server_close_handle(s, (uv_handle_t *)&s->accept_timer);
        http_server_close_handle(s, (uv_handle_t *)&s->tick);
        http_server_close_handle(s, (uv_handle_t *)&s->idle);
        http_server_close_handle(s, (uv_handle_t *)&s->check);
    }
    /* Every open request ends with SHUTDOWN, its done callback now. */
    while ((c = TAILQ_FIRST(&s->conns)) != NULL)
        conn_close(c, HTTP_END_SHUTDOWN);
    http_server_maybe_release(s);
}

void
http_server_free(struct http_server *s, void (*closed)(void *), void *ud)
{
    if (s == NULL) {
        if (closed != NULL)
            closed(ud);
        return;
    }
    if (s->stopping)
        return;
    s->stopping = true;
    s->closed = closed;
    s->closed_ud = ud;
    if (s->depth > 0) {
        /* Inside one of our callbacks: stop once it has returned. */
        s->free_pending = true;
        http_server_kick(s);
        return;
    }
    http_server_do_free(s);
}

/* --- request accessors -------------------------------------------------- */

uint64_t
http_req_id(const struct http_req *r)
{
    return r->id;
}

const char *
http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *
http_req_path(const struct http_req *r)
{
    return r->path;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
    unsigned i;

    if (name == NULL)
        return NULL;
    for (i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->hdrs[i].k, name) == 0)
            return r->hdrs[i].v;
    return NULL;
}

const char *
http_req_query(const struct http_req *r, const char *name)
{
    unsigned i;

    if (name == NULL)
        return NULL;
    for (i = 0; i < r->nargs; i++)
        if (strcasecmp(r->args[i].k, name) == 0)
            return r->args[i].v != NULL ? r->args[i].v : ""; /* "?flag" */
    return NULL;
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
    if (len != NULL)
        *len = r->body_len;
    return r->body != NULL ? r->body : "";
}

bool
http_req_too_large(const struct http_req *r)
{
    return r->too_large;
}

const char *
http_req_peer(const struct http_req *r)
{
    return r->c->peer;
}

void
http_req_set_data(struct http_req *r, void *data)
{
    r->data = data;
}

void *
http_req_data(const struct http_req *r)
{
    return r->data;
}

void
http_req_on_done(struct http_req *r, http_done_cb cb, void *ud)
{
    r->done_cb = cb;
    r->done_ud = ud;
}

/* --- answering ---------------------------------------------------------- */

static bool
http_header_value_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static bool
http_header_name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s == '\r' || *s == '\n' || *s == ':' || *s == ' ' || *s == '\t')
            return false;
    return true;
}

int
http_set_header(struct http_req *r, const char *name, const char *value)
{
    size_t nl;
    size_t vl;

    if (r->state == HTTP_REQ_DONE)
        return -EPIPE;
    if (r->state != HTTP_REQ_WAITING || name == NULL || value == NULL ||
        !http_header_name_ok(name) || !http_header_value_ok(value))
        return -EINVAL;
    /* The framing headers are ours. */
    if (strcasecmp(name, "Content-Length") == 0 ||
        strcasecmp(name, "Transfer-Encoding") == 0)
        return -EINVAL;
    if (strcasecmp(name, "Connection") == 0) {
        if (http_has_token(value, "close"))
            r->want_close = true;
        return 0; /* we write our own Connection header */
    }
    nl = strlen(name);
    vl = strlen(value);
    if (nl + vl + 4 > r->rhdrs.max - r->rhdrs.len)
        return -E2BIG;
    if (buf_append(&r->rhdrs, name, nl) != 0 ||
        buf_append(&r->rhdrs, ": ", 2) != 0 ||
        buf_append(&r->rhdrs, value, vl) != 0 ||
        buf_append(&r->rhdrs, "\r\n", 2) != 0)
        return -ENOMEM;
    return 0;
}

/* May the handler still answer? 0, -EPIPE (ended) or -EINVAL. */
static int
http_req_can_answer(const struct http_req *r)
{
    const struct http_conn *c = r->c;

    if (r->state == HTTP_REQ_DONE || r->aborted || c->closing || c->werr != 0 ||
        c->s->stopping)
        return -EPIPE;
    if (r->state != HTTP_REQ_WAITING)
        return -EINVAL;
    return 0;
}

/* Does the connection stay open after this response? */
static bool
req_decide_keep_alive(const struct http_req *r, bool close_delimited)
{
    const struct http_conn *c = r->c;

    return r->keep_alive && !r->want_close && !close_delimited &&
           !c->peer_eof && !c->s->stopping;
}

struct http_head_builder {
    char *p;
    size_t len;
    size_t cap;
};

static void
hb_add(struct http_head_builder *b, const char *s, size_t n)
{
    if (b->len + n <= b->cap)
        memcpy(b->p + b->len, s, n);
    b->len += n; /* counts on: the length needed when it did not fit */
}

static void
hb_adds(struct http_head_builder *b, const char *s)
{
    hb_add(b, s, strlen(s));
}

static void
hb_addu(struct http_head_builder *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    hb_add(b, tmp + i, sizeof(tmp) - i);
}

/*
 * The status line and headers of a response into out[0..cap); returns
 * the length, which is more than cap when it did not fit (call again
 * with that much room). clen is the Content-Length, or -1 for a stream.
 */
static size_t
req_format_head(struct http_req *r, char *out, size_t cap, int status,
                const char *ctype, int64_t clen)
{
    struct http_head_builder b = {out, 0, cap};

    hb_add(&b, "HTTP/1.1 ", 9);
    hb_addu(&b, (uint64_t)status);
    hb_add(&b, " ", 1);
    hb_adds(&b, http_reason(status));
    hb_add(&b, "\r\nDate: ", 8);
    hb_adds(&b, http_server_date(r->c->s));
    hb_add(&b, "\r\n", 2);
    if (ctype != NULL) {
        hb_add(&b, "Content-Type: ", 14);
        hb_adds(&b, ctype);
        hb_add(&b, "\r\n", 2);
    }
    if (r->rhdrs.len > 0)
        hb_add(&b, r->rhdrs.data, r->rhdrs.len);
    if (status >= 200 && status != 204 && status != 304) {
        if (clen >= 0) {
            hb_add(&b, "Content-Length: ", 16);
            hb_addu(&b, (uint64_t)clen);
            hb_add(&b, "\r\n", 2);
        } else if (!r->http10) {
            hb_adds(&b, "Transfer-Encoding: chunked\r\n");
        }
    }
    if (!r->keep_alive)
        hb_adds(&b, "Connection: close\r\n");
    else if (r->http10)
        hb_adds(&b, "Connection: keep-alive\r\n");
    hb_add(&b, "\r\n", 2);
    return b.len;
}

/* The head in stack[] when it fits, else in *heap (to free). */
static size_t
req_build_head(struct http_req *r, char *stack, char **heap, int status,
               const char *ctype, int64_t clen)
{
    size_t n =
        req_format_head(r, stack, HTTP_SERVER_HEAD_STACK, status, ctype, clen);

    *heap = NULL;
    if (n <= HTTP_SERVER_HEAD_STACK)
        return n;
    *heap = malloc(n);
    if (*heap == NULL)
        return 0;
    return req_format_head(r, *heap, n, status, ctype, clen);
}

int
http_respond(struct http_req *r, int status, const char *ctype,
             const void *body, size_t len)
{
    char stack[HTTP_SERVER_HEAD_STACK];
    char *heap;
    uv_buf_t b[2];
    size_t hlen;
    bool nobody;
    int rc = http_req_can_answer(r);

    if (rc != 0)
        return rc;
    if (status < 100 || status > 999)
        return -EINVAL;
    if (body == NULL)
        len = 0;
    nobody = r->is_head || http_status_bodyless(status);
    r->keep_alive = req_decide_keep_alive(r, false);
    hlen = req_build_head(r, stack, &heap, status, ctype, (int64_t)len);
    if (hlen == 0)
        return -ENOMEM;
    b[0] = uv_buf_init(heap != NULL ? heap : stack, (unsigned)hlen);
    b[1] = uv_buf_init((char *)(uintptr_t)body, nobody ? 0 : (unsigned)len);
    r->state = HTTP_REQ_RESPONDED;
    buf_cleanup(&r->rhdrs);
    conn_write(r->c, b, 2);
    free(heap);
    conn_wake(r->c);
    return 0;
}

int
http_stream_begin(struct http_req *r, int status, const char *ctype)
{
    char stack[HTTP_SERVER_HEAD_STACK];
    char *heap;
    size_t hlen;
    bool nobody;
    int rc = http_req_can_answer(r);

    if (rc != 0)
        return rc;
    if (status < 100 || status > 999)
        return -EINVAL;
    nobody = r->is_head || http_status_bodyless(status);
    /* An HTTP/1.0 client knows no chunks: the body ends with the
     * connection. */
    r->chunked_out = !r->http10 && !nobody;
    r->keep_alive = req_decide_keep_alive(r, r->http10 && !nobody);
    hlen = req_build_head(r, stack, &heap, status, ctype, -1);
    if (hlen == 0)
        return -ENOMEM;
    /* Held in out: it goes with the first write, or at the end of this
     * turn of the loop when none comes. */
    rc = iobuf_append(&r->c->out, heap != NULL ? heap : stack, hlen);
    free(heap);
    if (rc != 0)
        return rc;
    /* Nothing may follow the head of a HEAD response: it ends now. */
    r->state = nobody ? HTTP_REQ_ENDING : HTTP_REQ_STREAMING;
    buf_cleanup(&r->rhdrs);
    conn_wake(r->c);
    return 0;
}

static int
http_req_stream_state(const struct http_req *r)
{
    const struct http_conn *c = r->c;

    if (r->state == HTTP_REQ_DONE || r->state == HTTP_REQ_ENDING ||
        r->aborted || c->closing || c->werr != 0 || c->s->stopping)
        return -EPIPE;
    if (r->state != HTTP_REQ_STREAMING)
        return -EINVAL;
    return 0;
}

int
http_stream_write(struct http_req *r, const void *p, size_t n)
{
    struct http_conn *c = r->c;
    char hdr[24];
    uv_buf_t b[3];
    size_t queued = conn_queued(c);
    size_t max = c->s->o.stream_max_queue;
    size_t framing = 0;
    int hl = 0;
    int rc = http_req_stream_state(r);

    if (rc != 0)
        return rc;
    if (r->chunked_out && n > 0) {
        hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
        framing = (size_t)hl + 2;
    }
    if (queued > max || n > max - queued || framing > max - queued - n)
        return -E2BIG;
    if (n == 0)
        return 0;
    b[0] = uv_buf_init(hdr, (unsigned)hl);
    b[1] = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
    b[2] = uv_buf_init((char *)(uintptr_t) "\r\n", r->chunked_out ? 2 : 0);
    if (n >= HTTP_SERVER_DIRECT_WRITE) {
        conn_write(c, b, 3); /* big: not worth a copy */
        conn_wake(c);
        return 0;
    }
    /* Small writes are gathered: everything a stream gets in one turn of
     * the loop (a token, its newline, the end) goes out in one writev()
     * from the wake pass. */
    if (iobuf_append(&c->out, hdr, (size_t)hl) != 0 ||
        iobuf_append(&c->out, p, n) != 0 ||
        iobuf_append(&c->out, "\r\n", r->chunked_out ? 2 : 0) != 0)
        conn_set_werr(c, UV_ENOMEM);
    conn_wake(c);
    return 0;
}

size_t
http_stream_queued(const struct http_req *r)
{
    return conn_queued(r->c);
}

void
http_stream_on_drain(struct http_req *r, size_t low_water, http_drain_cb cb,
                     void *ud)
{
    if (r->state == HTTP_REQ_DONE)
        return;
    r->low_water = low_water;
    r->drain_cb = cb;
    r->drain_ud = ud;
    if (cb != NULL && conn_queued(r->c) <= low_water)
        conn_wake(r->c); /* already low: call it soon */
}

int
http_stream_end(struct http_req *r)
{
    static const char last[] = "0\r\n\r\n";
    int rc = http_req_stream_state(r);

    if (rc != 0)
        return rc;
    if (r->chunked_out && iobuf_append(&r->c->out, last, sizeof(last) - 1) != 0)
        conn_set_werr(r->c, UV_ENOMEM);
    r->state = HTTP_REQ_ENDING;
    conn_wake(r->c);
    return 0;
}

void
http_stream_abort(struct http_req *r)
{
    struct http_conn *c = r->c;

    if (r->state == HTTP_REQ_DONE || r->aborted || c->s->stopping)
        return;
    r->aborted = true;
    r->drain_cb = NULL;
    iobuf_free(&c->out);
    /* Closed by conn_advance(): the client sees a broken transfer. */
    conn_wake(c);
}
