/*
 * nhttp.c - herd-node's HTTP/1.1 client on libuv (see nhttp.h).
 *
 * One request, one connection, one state machine:
 *
 *   RESOLVING   uv_getaddrinfo in flight (names; literals and "localhost"
 *               skip it, as curl does)
 *   CONNECTING  uv_tcp_connect to the next address; a failed attempt
 *               closes the socket and the next address is tried from
 *               its close callback
 *   HEAD        request written (or being written); status line and
 *               headers arriving, 1xx answers skipped
 *   BODY        Content-Length, chunked or until close
 *   DONE        inside on_done
 *   CLOSING     handles closing; freed when the last one reports
 *
 * nh_finish() is the one way into DONE (on_done, exactly once) and
 * nh_close() the one way into CLOSING (the teardown, also what
 * nhttp_cancel() does). Library callbacks that arrive after the request
 * left the state they were meant for (a write cancelled by the close,
 * a resolver answer after a cancel) only give their reference back.
 * Every peer-controlled size is capped: head bytes, header lines,
 * interim answers, chunk-size lines, trailers and body bytes.
 */
#include "nhttp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "herd/buf.h"
#include "herd/log.h"

#define NH_READ_BUF       8192  /* bytes per read, reused */
#define NH_REQ_HEAD_MAX   16384 /* request line and headers we send */
#define NH_MAX_INTERIM    8     /* 1xx answers skipped before giving up */
#define NH_CHUNK_LINE_MAX 256   /* bytes of one chunk-size line */
#define NH_METHOD_MAX     16

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum nh_state {
    NH_RESOLVING,
    NH_CONNECTING,
    NH_HEAD,
    NH_BODY,
    NH_DONE,
    NH_CLOSING,
    NH_STATE_COUNT /* not a state */
};

static const char *const nh_state_names[] = {
    "resolving", "connecting", "head", "body", "done", "closing",
};
_Static_assert(ARRAY_LEN(nh_state_names) == NH_STATE_COUNT,
               "nh_state_names out of sync with enum nh_state");

enum nh_framing { NH_FR_NONE, NH_FR_LENGTH, NH_FR_CHUNKED, NH_FR_CLOSE };

enum nh_chunk { CH_SIZE, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER };

struct nh_hdr {
    const char *name, *value; /* into head.data */
};

struct nhttp {
    uv_loop_t *loop;        /* borrowed */
    struct nhttp_req *live; /* every request not yet freed */
    size_t n_live;          /* requests not yet freed */
    size_t n_active;        /* started, not yet done or cancelled */
    bool freeing;
    void (*closed)(void *);
    void *closed_ud;
};

struct nhttp_req {
    struct nhttp *c;
    struct nhttp_req *prev, *next; /* in c->live */
    enum nh_state state;
    nhttp_done_cb on_done;
    void *ud;
    /* where to */
    char host[NHTTP_HOST_MAX];
    char where[NHTTP_HOST_MAX + 8]; /* "host:port" for messages */
    uint16_t port;
    struct sockaddr_storage addrs[NHTTP_MAX_ADDRS];
    size_t n_addrs, next_addr;
    int connect_err; /* libuv error of the last failed address */
    bool refused;    /* some address refused: that is what we report */
    /* loop resources; refs = close or resolver callbacks still due */
    int refs;
    uv_timer_t timer; /* deadlines, and failures reported later */
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_tcp_t tcp;
    bool tcp_inited;
    uv_connect_t conn;
    uv_write_t wr;
    /* deadlines in loop time (ms); total 0: none */
    uint64_t connect_deadline, total_deadline;
    unsigned connect_ms, total_ms;
    int pending_err; /* reported by the timer, from the loop */
    char errmsg[320];
    /* the request */
    struct buf out;
    bool head_only; /* HEAD: the answer has no body */
    /* the response */
    int status;
    struct buf head; /* the response head, capped at max_header */
    size_t n_interim;
    struct nh_hdr hdrs[NHTTP_MAX_HEADERS];
    size_t n_hdrs;
    enum nh_framing framing;
    uint64_t remaining; /* LENGTH: body bytes still due; CHUNKED: of the
                           current chunk */
    enum nh_chunk ch;
    uint64_t ch_size;
    size_t ch_line;       /* bytes of the current size or trailer line */
    bool ch_digits;       /* the size line has a digit */
    bool ch_after;        /* past the digits: no more of them */
    bool ch_ext;          /* in a chunk extension: ignored */
    size_t trailer_bytes; /* counted against max_header */
    struct buf body;      /* capped at max_body */
    uint64_t received;    /* bytes read from the socket */
    char rbuf[NH_READ_BUF];
};

static void nh_on_timer(uv_timer_t *t);
static void nh_close(struct nhttp_req *r);
static void nh_connect_next(struct nhttp_req *r);

/* --- URLs ----------------------------------------------------------------- */

static int HERD_PRINTF(4, 5)
    url_err(char *err, size_t errlen, int rc, const char *fmt, ...)
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
nh_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
host_char_ok(char c, bool bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
        return true;
    return bracketed && (c == ':' || c == '%');
}

/* "host", "host:port", "[v6]" or "[v6]:port" into u. */
static int
url_authority(const char *url, const char *a, const char *end,
              struct nhttp_url *u, char *err, size_t errlen)
{
    const char *host = a, *host_end, *port = NULL;
    bool br = *a == '[';
    unsigned long v = 0;

    if (br) {
        host = a + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL)
            return url_err(err, errlen, -EINVAL,
                           "%s: unterminated [IPv6] literal", url);
        if (host_end + 1 < end && host_end[1] != ':')
            return url_err(err, errlen, -EINVAL, "%s: junk after ]", url);
        port = host_end + 1 < end ? host_end + 2 : NULL;
    } else {
        host_end = memchr(a, ':', (size_t)(end - a));
        port = host_end != NULL ? host_end + 1 : NULL;
        if (host_end == NULL)
            host_end = end;
    }
    if (host_end == host)
        return url_err(err, errlen, -EINVAL, "%s: no host", url);
    if ((size_t)(host_end - host) >= sizeof(u->host))
        return url_err(err, errlen, -EINVAL, "%s: host name too long", url);
    for (const char *p = host; p < host_end; p++) {
        if (!host_char_ok(*p, br))
            return url_err(err, errlen, -EINVAL,
                           "%s: bad character '%c' in the host", url, *p);
    }
    for (const char *p = port; p != NULL && p < end; p++) {
        v = v * 10 + (unsigned long)(*p - '0');
        if (*p < '0' || *p > '9' || v > 65535)
            return url_err(err, errlen, -EINVAL, "%s: bad port", url);
    }
    if (port != NULL && port < end && v == 0)
        return url_err(err, errlen, -EINVAL, "%s: bad port", url);
    u->port = port != NULL && port < end ? (uint16_t)v : 80;
    snprintf(u->host, sizeof(u->host), "%.*s", (int)(host_end - host), host);
    snprintf(u->authority, sizeof(u->authority), "%.*s", (int)(end - a), a);
    return 0;
}

int
nhttp_parse_url(const char *url, struct nhttp_url *u, char *err, size_t errlen)
{
    const char *a, *end, *sep;
    size_t n, slen;

    if (url == NULL || *url == '\0')
        return url_err(err, errlen, -EINVAL, "empty URL");
    n = strlen(url);
    if (n >= NHTTP_URL_MAX)
        return url_err(err, errlen, -EINVAL, "URL over %d bytes",
                       NHTTP_URL_MAX);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return url_err(err, errlen, -EINVAL,
                           "%.200s: a space or control character in the URL",
                           url);
    }
    a = url;
    sep = strstr(url, "://");
    if (sep != NULL) {
        slen = (size_t)(sep - url);
        if (slen == 5 && strncasecmp(url, "https", 5) == 0)
            return url_err(err, errlen, -ENOTSUP,
                           "%.200s: https is not supported by herd-node; put "
                           "the coordinator behind plain http on the LAN or "
                           "use a local proxy",
                           url);
        if (slen != 4 || strncasecmp(url, "http", 4) != 0)
            return url_err(err, errlen, -EINVAL,
                           "%.200s: unsupported scheme (herd-node speaks "
                           "plain http://)",
                           url);
        a = sep + 3;
    }
    end = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(end - a)) != NULL)
        return url_err(err, errlen, -EINVAL,
                       "%.200s: user info in the URL is not supported", url);
    if (url_authority(url, a, end, u, err, errlen) != 0)
        return -EINVAL;
    u->path = end;
    u->path_len = strcspn(end, "#");
    return 0;
}

/* --- the client ----------------------------------------------------------- */

struct nhttp *
nhttp_new(uv_loop_t *loop)
{
    struct nhttp *c = calloc(1, sizeof(*c));

    if (c != NULL)
        c->loop = loop;
    return c;
}

static void
nh_client_release(struct nhttp *c)
{
    void (*closed)(void *) = c->closed;
    void *ud = c->closed_ud;

    free(c);
    if (closed != NULL)
        closed(ud);
}

void
nhttp_free(struct nhttp *c, void (*closed)(void *ud), void *ud)
{
    struct nhttp_req *r, *next;

    if (c == NULL)
        return;
    c->freeing = true;
    c->closed = closed;
    c->closed_ud = ud;
    for (r = c->live; r != NULL; r = next) {
        next = r->next;
        if (r->state < NH_DONE) /* one in on_done closes when it returns */
            nh_close(r);
    }
    if (c->n_live == 0)
        nh_client_release(c);
}

size_t
nhttp_active(const struct nhttp *c)
{
    return c->n_active;
}

/* --- the request's life --------------------------------------------------- */

static void
nh_enter(struct nhttp_req *r, enum nh_state next)
{
    log_trace(TRACE_HTTP, "nhttp %s: %s -> %s", r->where,
              nh_state_names[r->state], nh_state_names[next]);
    r->state = next;
}

static void
nh_free(struct nhttp_req *r)
{
    struct nhttp *c = r->c;

    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    c->n_live--;
    buf_cleanup(&r->out);
    buf_cleanup(&r->head);
    buf_cleanup(&r->body);
    free(r);
    if (c->freeing && c->n_live == 0)
        nh_client_release(c);
}

/* A handle closed or the resolver answered: one reference less. */
static void
nh_unref(struct nhttp_req *r)
{
    if (--r->refs == 0 && r->state == NH_CLOSING)
        nh_free(r);
}

static void
nh_on_timer_closed(uv_handle_t *h)
{
    nh_unref(h->data);
}

static void
nh_on_tcp_closed(uv_handle_t *h)
{
    struct nhttp_req *r = h->data;

    r->tcp_inited = false;
    if (r->state == NH_CONNECTING) { /* closed after a failed attempt */
        r->refs--;
        nh_connect_next(r);
        return;
    }
    nh_unref(r);
}

/* The teardown: idempotent, never frees (the close callbacks do). */
static void
nh_close(struct nhttp_req *r)
{
    if (r->state == NH_CLOSING)
        return;
    if (r->state != NH_DONE) /* cancelled: nh_finish did not count it */
        r->c->n_active--;
    nh_enter(r, NH_CLOSING);
    if (!uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, nh_on_timer_closed);
    if (r->tcp_inited && !uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, nh_on_tcp_closed);
    if (r->gai_pending)
        (void)uv_cancel((uv_req_t *)&r->gai); /* its callback still runs */
}

/* The one way to on_done. err 0, or -errno with r->errmsg set. */
static void
nh_finish(struct nhttp_req *r, int err)
{
    if (r->state >= NH_DONE)
        return;
    nh_enter(r, NH_DONE);
    r->c->n_active--;
    r->on_done(r, err, err != 0 ? r->errmsg : "", r->ud);
    nh_close(r);
}

static void HERD_PRINTF(3, 4)
    nh_fail(struct nhttp_req *r, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
    nh_finish(r, err);
}

/* A failure found where on_done must not run yet: the timer reports it
 * from the loop. */
static void HERD_PRINTF(3, 4)
    nh_fail_later(struct nhttp_req *r, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
    r->pending_err = err;
    uv_timer_start(&r->timer, nh_on_timer, 0, 0);
}

/* --- deadlines ------------------------------------------------------------ */

/* Arms the timer for the next deadline of the current phase. */
static void
nh_arm(struct nhttp_req *r)
{
    uint64_t now = uv_now(r->c->loop), due = r->total_deadline;

    if (r->state < NH_HEAD && (due == 0 || r->connect_deadline < due))
        due = r->connect_deadline;
    if (due == 0) {
        uv_timer_stop(&r->timer);
        return;
    }
    uv_timer_start(&r->timer, nh_on_timer, due > now ? due - now : 0, 0);
}

static void
nh_on_timer(uv_timer_t *t)
{
    struct nhttp_req *r = t->data;
    uint64_t now = uv_now(r->c->loop);
    bool total = r->total_deadline != 0 && now >= r->total_deadline;

    if (r->pending_err != 0) {
        nh_finish(r, r->pending_err);
    } else if (r->state < NH_HEAD && (total || now >= r->connect_deadline)) {
        nh_fail(r, -ETIMEDOUT, "cannot connect to %s within %u ms", r->where,
                total && r->total_ms < r->connect_ms ? r->total_ms
                                                     : r->connect_ms);
    } else if (total) {
        nh_fail(r, -ETIMEDOUT, "no complete answer from %s within %u ms",
                r->where, r->total_ms);
    } else {
        nh_arm(r); /* early: not due yet */
    }
}

/* --- resolving and connecting --------------------------------------------- */

static void
nh_add_addr(struct nhttp_req *r, const struct sockaddr *sa, size_t len)
{
    struct sockaddr_storage *ss;

    if (r->n_addrs == NHTTP_MAX_ADDRS || len > sizeof(*ss))
        return;
    ss = &r->addrs[r->n_addrs++];
    memcpy(ss, sa, len);
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(r->port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(r->port);
}

/* IP literals and "localhost" need no resolver (nor its thread pool). */
static bool
nh_literal(struct nhttp_req *r)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;

    if (uv_ip4_addr(r->host, r->port, &in4) == 0) {
        nh_add_addr(r, (const struct sockaddr *)&in4, sizeof(in4));
    } else if (strchr(r->host, ':') != NULL &&
               uv_ip6_addr(r->host, r->port, &in6) == 0) {
        nh_add_addr(r, (const struct sockaddr *)&in6, sizeof(in6));
    } else if (strcasecmp(r->host, "localhost") == 0) {
        /* IPv4 first: Ollama listens on 127.0.0.1 by default. */
        (void)uv_ip4_addr("127.0.0.1", r->port, &in4);
        (void)uv_ip6_addr("::1", r->port, &in6);
        nh_add_addr(r, (const struct sockaddr *)&in4, sizeof(in4));
        nh_add_addr(r, (const struct sockaddr *)&in6, sizeof(in6));
    }
    return r->n_addrs > 0;
}

static void
nh_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct nhttp_req *r = req->data;

    r->gai_pending = false;
    for (const struct addrinfo *ai = res; status == 0 && ai != NULL;
         ai = ai->ai_next) {
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            nh_add_addr(r, ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    r->refs--;
    if (r->state != NH_RESOLVING) { /* cancelled or timed out */
        if (r->refs == 0 && r->state == NH_CLOSING)
            nh_free(r);
        return;
    }
    if (status != 0)
        nh_fail(r, -EHOSTUNREACH, "cannot resolve %s: %s", r->host,
                uv_strerror(status));
    else if (r->n_addrs == 0)
        nh_fail(r, -EHOSTUNREACH, "%s has no IPv4 or IPv6 address", r->host);
    else
        nh_connect_next(r);
}

static void
nh_resolve(struct nhttp_req *r)
{
    struct addrinfo hints;
    int rc;

    if (nh_literal(r)) {
        nh_connect_next(r);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->gai.data = r;
    rc = uv_getaddrinfo(r->c->loop, &r->gai, nh_on_resolved, r->host, NULL,
                        &hints);
    if (rc != 0) {
        nh_fail_later(r, -EHOSTUNREACH, "cannot resolve %s: %s", r->host,
                      uv_strerror(rc));
        return;
    }
    r->gai_pending = true;
    r->refs++;
}

/* Every address failed: say why, refusals first. */
static void
nh_connect_failed(struct nhttp_req *r)
{
    int e = r->refused ? UV_ECONNREFUSED : r->connect_err;

    if (e == UV_ECONNREFUSED)
        nh_fail(r, -ECONNREFUSED, "cannot connect to %s: connection refused",
                r->where);
    else if (e == UV_ETIMEDOUT)
        nh_fail(r, -ETIMEDOUT, "cannot connect to %s: timed out", r->where);
    else if (e == UV_ENETUNREACH || e == UV_EHOSTUNREACH)
        nh_fail(r, -EHOSTUNREACH, "cannot connect to %s: %s", r->where,
                uv_strerror(e));
    else
        nh_fail(r, e < 0 ? e : -EIO, "cannot connect to %s: %s", r->where,
                uv_strerror(e));
}

/* An attempt failed: close its socket; nh_on_tcp_closed tries the next. */
static void
nh_attempt_failed(struct nhttp_req *r, int err)
{
    r->connect_err = err;
    if (err == UV_ECONNREFUSED)
        r->refused = true;
    uv_close((uv_handle_t *)&r->tcp, nh_on_tcp_closed);
}

static void nh_on_connect(uv_connect_t *req, int status);

/* Called from the loop or from nhttp_start; a synchronous refusal of
 * uv_tcp_connect goes through the close callback, so on_done never runs
 * inside nhttp_start. */
static void
nh_connect_next(struct nhttp_req *r)
{
    const struct sockaddr *sa;
    int rc;

    if (r->state != NH_CONNECTING)
        nh_enter(r, NH_CONNECTING);
    if (r->next_addr == r->n_addrs) {
        nh_connect_failed(r);
        return;
    }
    sa = (const struct sockaddr *)&r->addrs[r->next_addr++];
    rc = uv_tcp_init(r->c->loop, &r->tcp);
    if (rc != 0) {
        nh_fail_later(r, rc, "cannot create a socket: %s", uv_strerror(rc));
        return;
    }
    r->tcp.data = r;
    r->conn.data = r;
    r->tcp_inited = true;
    r->refs++;
    rc = uv_tcp_connect(&r->conn, &r->tcp, sa, nh_on_connect);
    if (rc != 0)
        nh_attempt_failed(r, rc);
}

static void nh_on_write(uv_write_t *req, int status);
static void nh_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void nh_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void
nh_on_connect(uv_connect_t *req, int status)
{
    struct nhttp_req *r = req->data;
    uv_buf_t b;
    int rc;

    if (r->state != NH_CONNECTING) /* closing: UV_ECANCELED */
        return;
    if (status != 0) {
        nh_attempt_failed(r, status);
        return;
    }
    nh_enter(r, NH_HEAD);
    nh_arm(r); /* from now on only the total deadline */
    (void)uv_tcp_nodelay(&r->tcp, 1);
    b = uv_buf_init(r->out.data, (unsigned)r->out.len);
    r->wr.data = r;
    rc = uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, nh_on_write);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->tcp, nh_on_alloc, nh_on_read);
    if (rc != 0)
        nh_fail(r, -ECONNRESET, "cannot send the request to %s: %s", r->where,
                uv_strerror(rc));
}

static void
nh_on_write(uv_write_t *req, int status)
{
    struct nhttp_req *r = req->data;

    if (status == 0 || r->state >= NH_DONE) /* UV_ECANCELED: closing */
        return;
    nh_fail(r, -ECONNRESET,
            "connection to %s broke while sending the request: %s", r->where,
            uv_strerror(status));
}

/* --- the response head ---------------------------------------------------- */

/* Index just past the empty line ending the head, or 0. Only a line end
 * that involves bytes from `from` on can be new. */
static size_t
head_end(const char *d, size_t len, size_t from)
{
    for (size_t i = from >= 2 ? from - 2 : 0; i < len; i++) {
        if (d[i] != '\n')
            continue;
        if (i + 1 < len && d[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && d[i + 1] == '\r' && d[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Cuts the line at p at its '\n' (and a '\r' before it); the next line. */
static char *
cut_line(char *p)
{
    char *nl = strchr(p, '\n');

    *nl = '\0';
    if (nl > p && nl[-1] == '\r')
        nl[-1] = '\0';
    return nl + 1;
}

/* "HTTP/1.x NNN reason" -> status, or -1. */
static int
parse_status_line(const char *l)
{
    int st;

    if (strncmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' ||
        l[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return -1;
    }
    if (l[12] != ' ' && l[12] != '\0')
        return -1;
    st = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    return st >= 100 ? st : -1;
}

/* One "Name: value" line, cut in place. 0 or -EPROTO / -E2BIG. */
static int
nh_header_line(struct nhttp_req *r, char *line)
{
    char *colon = strchr(line, ':'), *v, *e;

    if (line[0] == ' ' || line[0] == '\t') {
        nh_fail(r, -EPROTO, "%s sent a folded header line", r->where);
        return -EPROTO;
    }
    for (char *p = line; colon != NULL && p < colon; p++) {
        if (!nh_tchar(*p))
            colon = NULL;
    }
    if (colon == NULL || colon == line) {
        nh_fail(r, -EPROTO, "%s sent a malformed header line", r->where);
        return -EPROTO;
    }
    if (r->n_hdrs == NHTTP_MAX_HEADERS) {
        nh_fail(r, -E2BIG, "%s sent more than %d header lines", r->where,
                NHTTP_MAX_HEADERS);
        return -E2BIG;
    }
    *colon = '\0';
    v = colon + 1 + strspn(colon + 1, " \t");
    e = v + strlen(v);
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    r->hdrs[r->n_hdrs].name = line;
    r->hdrs[r->n_hdrs++].value = v;
    return 0;
}

/* Content-Length into *len: 0, 1 when absent, or -EPROTO (bad, or two
 * that disagree). */
static int
nh_content_length(const struct nhttp_req *r, uint64_t *len)
{
    bool seen = false;

    for (size_t i = 0; i < r->n_hdrs; i++) {
        const char *v = r->hdrs[i].value;
        uint64_t n = 0;

        if (strcasecmp(r->hdrs[i].name, "content-length") != 0)
            continue;
        if (*v == '\0' || strlen(v) > 18 || v[strspn(v, "0123456789")])
            return -EPROTO;
        for (; *v; v++)
            n = n * 10 + (uint64_t)(*v - '0');
        if (seen && n != *len)
            return -EPROTO;
        seen = true;
        *len = n;
    }
    return seen ? 0 : 1;
}

/* Transfer-Encoding whose last coding is "chunked". */
static bool
te_chunked(const char *te)
{
    const char *last = strrchr(te, ',');

    last = last != NULL ? last + 1 : te;
    last += strspn(last, " \t");
    return strncasecmp(last, "chunked", 7) == 0 &&
           last[7 + strspn(last + 7, " \t")] == '\0';
}

/* The final head is in: how the body is framed. Finishes a response
 * without a body. 0, or -1 when the request failed. */
static int
nh_framing(struct nhttp_req *r)
{
    const char *te = nhttp_header(r, "transfer-encoding");
    uint64_t len = 0;
    int rc;

    nh_enter(r, NH_BODY);
    if (r->head_only || r->status == 204 || r->status == 304) {
        r->framing = NH_FR_NONE;
    } else if (te != NULL) {
        r->framing = te_chunked(te) ? NH_FR_CHUNKED : NH_FR_CLOSE;
    } else if ((rc = nh_content_length(r, &len)) < 0) {
        nh_fail(r, -EPROTO, "%s sent a bad Content-Length", r->where);
        return -1;
    } else if (rc == 0) {
        if (len > r->body.max) {
            nh_fail(r, -E2BIG,
                    "the body from %s is %llu bytes, over the cap of %zu",
                    r->where, (unsigned long long)len, r->body.max);
            return -1;
        }
        r->framing = NH_FR_LENGTH;
        r->remaining = len;
    } else {
        r->framing = NH_FR_CLOSE;
    }
    if (r->framing == NH_FR_NONE ||
        (r->framing == NH_FR_LENGTH && r->remaining == 0))
        nh_finish(r, 0);
    return 0;
}

/* The head (NUL-terminated, ending with its empty line) is complete. */
static int
nh_parse_head(struct nhttp_req *r)
{
    char *line = r->head.data, *next;
    int st;

    if (memchr(r->head.data, '\0', r->head.len) != NULL) {
        nh_fail(r, -EPROTO, "%s sent a NUL byte in its headers", r->where);
        return -1;
    }
    next = cut_line(line);
    st = parse_status_line(line);
    if (st < 0) {
        nh_fail(r, -EPROTO, "%s sent a malformed status line", r->where);
        return -1;
    }
    r->n_hdrs = 0;
    for (line = next; *line != '\0' && *line != '\n' &&
                      !(line[0] == '\r' && line[1] == '\n');
         line = next) {
        next = cut_line(line);
        if (nh_header_line(r, line) != 0)
            return -1;
    }
    if (st >= 200) {
        r->status = st;
        return nh_framing(r);
    }
    if (st == 101 || ++r->n_interim > NH_MAX_INTERIM) {
        nh_fail(r, -EPROTO,
                "%s answered %d, which an HTTP/1.1 GET or POST "
                "cannot use",
                r->where, st);
        return -1;
    }
    buf_reset(&r->head); /* 100 Continue and friends: wait for the real one */
    r->n_hdrs = 0;
    return 0;
}

/* Head bytes: consumes what belongs to the head (*used). 0 while more is
 * needed or after a complete head, -1 when the request failed. */
static int
nh_feed_head(struct nhttp_req *r, const char *p, size_t n, size_t *used)
{
    size_t old = r->head.len, room = r->head.max - old;
    size_t take = n < room ? n : room, end, cmp;

    if (buf_append(&r->head, p, take) != 0) {
        nh_fail(r, -ENOMEM, "out of memory reading from %s", r->where);
        return -1;
    }
    cmp = r->head.len < 5 ? r->head.len : 5;
    if (memcmp(r->head.data, "HTTP/", cmp) != 0) {
        nh_fail(r, -EPROTO, "%s did not answer with HTTP", r->where);
        return -1;
    }
    end = head_end(r->head.data, r->head.len, old);
    if (end == 0) {
        if (take < n || r->head.len == r->head.max) {
            nh_fail(r, -E2BIG, "the response head from %s is over %zu bytes",
                    r->where, r->head.max);
            return -1;
        }
        *used = take;
        return 0;
    }
    *used = end - old;
    r->head.len = end;
    r->head.data[end] = '\0';
    return nh_parse_head(r);
}

/* --- the body ------------------------------------------------------------- */

static int
nh_body_append(struct nhttp_req *r, const char *p, size_t n)
{
    int rc = buf_append(&r->body, p, n);

    if (rc == -E2BIG)
        nh_fail(r, -E2BIG, "the body from %s is over %zu bytes", r->where,
                r->body.max);
    else if (rc != 0)
        nh_fail(r, -ENOMEM, "out of memory reading from %s", r->where);
    return rc;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
nh_chunk_bad(struct nhttp_req *r, const char *what)
{
    nh_fail(r, -EPROTO, "%s sent a bad chunked body: %s", r->where, what);
    return -1;
}

/* The end of a chunk-size line. */
static int
nh_chunk_size_done(struct nhttp_req *r)
{
    if (!r->ch_digits)
        return nh_chunk_bad(r, "no chunk size");
    r->ch_line = 0;
    r->ch_digits = r->ch_after = r->ch_ext = false;
    if (r->ch_size == 0) {
        r->ch = CH_TRAILER;
        return 0;
    }
    if (r->ch_size > r->body.max - r->body.len) {
        nh_fail(r, -E2BIG, "the body from %s is over %zu bytes", r->where,
                r->body.max);
        return -1;
    }
    r->remaining = r->ch_size;
    r->ch_size = 0;
    r->ch = CH_DATA;
    return 0;
}

/* One byte of a chunk-size line: hex digits, [BWS] [; extension] CRLF. */
static int
nh_chunk_size_byte(struct nhttp_req *r, char c)
{
    int h = hexval(c);

    if (++r->ch_line > NH_CHUNK_LINE_MAX)
        return nh_chunk_bad(r, "chunk-size line too long");
    if (c == '\n')
        return nh_chunk_size_done(r);
    if (r->ch_ext)
        return 0;
    if (h >= 0 && !r->ch_after) {
        if (r->ch_size >> 59)
            return nh_chunk_bad(r, "chunk size too large");
        r->ch_size = r->ch_size * 16 + (uint64_t)h;
        r->ch_digits = true;
        return 0;
    }
    if (!r->ch_digits)
        return nh_chunk_bad(r, "no chunk size");
    if (c == ';')
        r->ch_ext = true;
    else if (c == ' ' || c == '\t' || c == '\r')
        r->ch_after = true;
    else
        return nh_chunk_bad(r, "junk in a chunk-size line");
    return 0;
}

/* One byte outside chunk data. 0, or -1 when the request is over. */
static int
nh_chunk_byte(struct nhttp_req *r, char c)
{
    switch (r->ch) {
    case CH_SIZE:
        return nh_chunk_size_byte(r, c);
    case CH_DATA_CR:
        if (c != '\r' && c != '\n')
            return nh_chunk_bad(r, "chunk data longer than its size");
        r->ch = c == '\r' ? CH_DATA_LF : CH_SIZE;
        return 0;
    case CH_DATA_LF:
        if (c != '\n')
            return nh_chunk_bad(r, "chunk data longer than its size");
        r->ch = CH_SIZE;
        return 0;
    default: /* CH_TRAILER: lines until an empty one */
        if (++r->trailer_bytes > r->head.max) {
            nh_fail(r, -E2BIG, "the trailers from %s are over %zu bytes",
                    r->where, r->head.max);
            return -1;
        }
        if (c == '\n' && r->ch_line == 0) {
            nh_finish(r, 0);
            return -1;
        }
        r->ch_line = c == '\n' ? 0 : r->ch_line + (c != '\r');
        return 0;
    }
}

static void
nh_feed_chunked(struct nhttp_req *r, const char *p, size_t n)
{
    while (n > 0 && r->state == NH_BODY) {
        if (r->ch == CH_DATA) {
            size_t take = n < r->remaining ? n : (size_t)r->remaining;

            if (nh_body_append(r, p, take) != 0)
                return;
            p += take;
            n -= take;
            r->remaining -= take;
            if (r->remaining == 0)
                r->ch = CH_DATA_CR;
        } else {
            if (nh_chunk_byte(r, *p) != 0)
                return;
            p++;
            n--;
        }
    }
}

static void
nh_feed_body(struct nhttp_req *r, const char *p, size_t n)
{
    size_t take;

    switch (r->framing) {
    case NH_FR_LENGTH:
        take = n < r->remaining ? n : (size_t)r->remaining;
        if (nh_body_append(r, p, take) != 0)
            return;
        r->remaining -= take;
        if (r->remaining == 0)
            nh_finish(r, 0); /* anything after it is ignored */
        break;
    case NH_FR_CHUNKED:
        nh_feed_chunked(r, p, n);
        break;
    case NH_FR_CLOSE:
        (void)nh_body_append(r, p, n);
        break;
    default:
        break;
    }
}

/* --- reading -------------------------------------------------------------- */

static void
nh_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct nhttp_req *r = h->data;

    (void)hint;
    *b = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void
nh_on_eof(struct nhttp_req *r)
{
    if (r->state == NH_HEAD && r->received == 0)
        nh_fail(r, -ECONNRESET, "%s closed the connection without answering",
                r->where);
    else if (r->state == NH_HEAD)
        nh_fail(r, -ECONNRESET,
                "%s closed the connection in the middle of the headers",
                r->where);
    else if (r->framing == NH_FR_CLOSE)
        nh_finish(r, 0);
    else if (r->framing == NH_FR_LENGTH)
        nh_fail(r, -ECONNRESET,
                "%s closed the connection after %zu of %llu body bytes",
                r->where, r->body.len,
                (unsigned long long)(r->body.len + r->remaining));
    else
        nh_fail(r, -ECONNRESET,
                "%s closed the connection in the middle of a chunked body",
                r->where);
}

static void
nh_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct nhttp_req *r = s->data;
    const char *p = b->base;
    size_t n = nread > 0 ? (size_t)nread : 0, used;

    if (r->state != NH_HEAD && r->state != NH_BODY)
        return;
    if (nread == UV_EOF) {
        nh_on_eof(r);
        return;
    }
    if (nread < 0) {
        nh_fail(r, nread == UV_ECONNRESET ? -ECONNRESET : (int)nread,
                "connection to %s broke: %s", r->where,
                uv_strerror((int)nread));
        return;
    }
    r->received += n;
    while (n > 0 && r->state == NH_HEAD) {
        used = 0;
        if (nh_feed_head(r, p, n, &used) != 0)
            return;
        p += used;
        n -= used;
    }
    if (n > 0 && r->state == NH_BODY)
        nh_feed_body(r, p, n);
}

/* --- starting ------------------------------------------------------------- */

/* NULL when the line may be sent, else what is wrong with it. */
static const char *
nh_header_bad(const char *line)
{
    static const char *const ours[] = {"host", "connection", "content-length",
                                       "transfer-encoding"};
    const char *colon = strchr(line, ':');
    size_t n;

    if (colon == NULL || colon == line)
        return "is not \"Name: value\"";
    for (const char *p = line; p < colon; p++) {
        if (!nh_tchar(*p))
            return "has a bad character in its name";
    }
    for (const char *p = colon; *p != '\0'; p++) {
        if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
            return "contains a control character";
    }
    n = (size_t)(colon - line);
    for (size_t i = 0; i < ARRAY_LEN(ours); i++) {
        if (strlen(ours[i]) == n && strncasecmp(line, ours[i], n) == 0)
            return "is set by the client itself";
    }
    return NULL;
}

/* The request bytes: request line, our headers, the caller's, body. */
static int
nh_build(struct nhttp_req *r, const struct nhttp_opts *o,
         const struct nhttp_url *u, char *err, size_t errlen)
{
    const char *m = o->method != NULL ? o->method : "GET", *why;
    bool slash = u->path_len == 0 || u->path[0] == '?';
    int rc;

    if (*m == '\0' || strlen(m) > NH_METHOD_MAX ||
        m[strspn(m, "ABCDEFGHIJKLM"
                    "NOPQRSTUVWXYZ")])
        return url_err(err, errlen, -EINVAL, "bad method \"%.20s\"", m);
    r->head_only = strcmp(m, "HEAD") == 0;
    buf_init(&r->out, NH_REQ_HEAD_MAX + o->body_len);
    rc = buf_appendf(&r->out,
                     "%s %s%.*s HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: herd-node/" HERD_VERSION "\r\n"
                     "Connection: close\r\n",
                     m, slash ? "/" : "", (int)u->path_len, u->path,
                     u->authority);
    if (rc == 0 &&
        (o->body != NULL || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0))
        rc = buf_appendf(&r->out, "Content-Length: %zu\r\n", o->body_len);
    for (size_t i = 0; rc == 0 && o->headers && o->headers[i]; i++) {
        why = nh_header_bad(o->headers[i]);
        if (why != NULL)
            return url_err(err, errlen, -EINVAL, "header \"%.60s\" %s",
                           o->headers[i], why);
        rc = buf_appendf(&r->out, "%s\r\n", o->headers[i]);
    }
    if (rc == 0)
        rc = buf_append(&r->out, "\r\n", 2);
    if (rc == 0 && o->body_len > 0)
        rc = buf_append(&r->out, o->body, o->body_len);
    if (rc == -E2BIG)
        return url_err(err, errlen, rc, "request headers over %d bytes",
                       NH_REQ_HEAD_MAX);
    if (rc != 0)
        return url_err(err, errlen, rc, "out of memory");
    return 0;
}

/* Fills r from the options; nothing on the loop yet. */
static int
nh_setup(struct nhttp_req *r, const struct nhttp_opts *o, char *err,
         size_t errlen)
{
    struct nhttp_url u;
    int rc;

    buf_init(&r->out, 0);
    buf_init(&r->head, o->max_header ? o->max_header : NHTTP_HEADER_DEFAULT);
    buf_init(&r->body, o->max_body ? o->max_body : NHTTP_BODY_DEFAULT);
    rc = nhttp_parse_url(o->url, &u, err, errlen);
    if (rc != 0)
        return rc;
    if (o->body == NULL && o->body_len > 0)
        return url_err(err, errlen, -EINVAL, "body_len without a body");
    memcpy(r->host, u.host, sizeof(r->host));
    r->port = u.port;
    if (strchr(u.host, ':') != NULL)
        snprintf(r->where, sizeof(r->where), "[%s]:%u", u.host, u.port);
    else
        snprintf(r->where, sizeof(r->where), "%s:%u", u.host, u.port);
    r->on_done = o->on_done;
    r->ud = o->ud;
    r->connect_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : NHTTP_CONNECT_DEFAULT;
    r->total_ms = o->total_timeout_ms;
    return nh_build(r, o, &u, err, errlen);
}

struct nhttp_req *
nhttp_start(struct nhttp *c, const struct nhttp_opts *o, char *err,
            size_t errlen)
{
    struct nhttp_req *r;
    uint64_t now;

    if (c->freeing || o->on_done == NULL || o->url == NULL) {
        url_err(err, errlen, -EINVAL, "%s",
                c->freeing ? "the HTTP client is shutting down"
                           : "nhttp_start: url and on_done are required");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        url_err(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    r->c = c;
    if (nh_setup(r, o, err, errlen) != 0) {
        buf_cleanup(&r->out);
        free(r);
        return NULL;
    }
    r->next = c->live;
    if (c->live != NULL)
        c->live->prev = r;
    c->live = r;
    c->n_live++;
    c->n_active++;
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    r->refs = 1;
    uv_update_time(c->loop);
    now = uv_now(c->loop);
    r->connect_deadline = now + r->connect_ms;
    r->total_deadline = r->total_ms ? now + r->total_ms : 0;
    nh_arm(r);
    nh_resolve(r);
    return r;
}

void
nhttp_cancel(struct nhttp_req *r)
{
    if (r != NULL && r->state < NH_DONE)
        nh_close(r);
}

/* --- the response --------------------------------------------------------- */

int
nhttp_status(const struct nhttp_req *r)
{
    return r->status;
}

const char *
nhttp_header(const struct nhttp_req *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (strcasecmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    }
    return NULL;
}

const char *
nhttp_body(const struct nhttp_req *r, size_t *len)
{
    if (len != NULL)
        *len = r->body.len;
    return r->body.data != NULL ? r->body.data : "";
}
