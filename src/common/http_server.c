/*
 * http_server.c - the HTTP server on the libuv loop (libmicrohttpd glue).
 *
 * Owns the listening socket (ours, not MHD's, so it can be closed and
 * re-opened) with its uv_poll_t, one MHD daemon in external epoll mode
 * with a uv_poll_t on MHD's epoll fd and a uv_timer_t that follows
 * MHD_get_timeout(), and one struct http_req per request: its upload
 * body, its response headers, its stream queue and the uv_poll_t that
 * watches its socket while MHD has the connection suspended.
 *
 * The rules that shape this file:
 * - MHD is never re-entered: MHD_run() and MHD_stop_daemon() are called
 *   only from loop callbacks, never from inside an MHD callback. Work
 *   asked for from inside one (a resume, http_server_free) is recorded and
 *   done once MHD has returned.
 * - In external mode nothing happens until MHD_run() is called again, so
 *   every resume marks the server dirty, and a uv_prepare_t and a
 *   uv_check_t run MHD before the loop sleeps and after I/O callbacks.
 *   The MHD timer is re-armed after every MHD_run().
 * - A uv_poll_t on a socket must be closed before the socket is: MHD
 *   closes a connection's fd only after the request-completed callback,
 *   which is where a request's watcher is closed. The request's memory is
 *   released in the watcher's close callback.
 * - Drain callbacks are user code, so they run after MHD_run() returns,
 *   never from inside MHD's content reader.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <microhttpd.h>

#include "herd/log.h"

/* Defaults for options left at 0. */
#define HTTP_SERVER_DEF_MAX_BODY   (1024u * 1024u)
#define HTTP_SERVER_DEF_MAX_HEADER (16u * 1024u)
#define HTTP_SERVER_DEF_MAX_QUEUE  (1024u * 1024u)
/* MHD needs a connection limit; 0 in the options means "no limit". */
#define HTTP_SERVER_NO_CONN_LIMIT 1000000u
/* Room in MHD's per-connection pool beyond the request headers: the
 * write buffer chunks are built in, and MHD's own bookkeeping. */
#define HTTP_SERVER_POOL_ROOM (8u * 1024u)
/* Cap on the response headers a handler may add. */
#define HTTP_SERVER_MAX_RESP_HDRS (32u * 1024u)
/* Buffer MHD uses for unknown-size bodies sent to HTTP/1.0 clients. */
#define HTTP_SERVER_BLOCK_SIZE 4096u
/* Pause before accepting again after EMFILE/ENFILE. */
#define HTTP_SERVER_ACCEPT_PAUSE_MS 100u
#define HTTP_SERVER_BACKLOG         4096

enum http_req_state {
    HTTP_REQ_READING,   /* headers/body arriving; handler not called */
    HTTP_REQ_WAITING,   /* handler called, no answer yet */
    HTTP_REQ_RESPONDED, /* a whole response is queued */
    HTTP_REQ_STREAMING, /* chunked response, more may come */
    HTTP_REQ_ENDING,    /* http_stream_end(): queue drains, then the end */
    HTTP_REQ_DONE,      /* done callback fired */
};

TAILQ_HEAD(http_req_list, http_req);

struct http_req {
    TAILQ_ENTRY(http_req) link;       /* in server->reqs until done */
    TAILQ_ENTRY(http_req) drain_link; /* in server->drains if drain_queued */
    struct http_server *s;            /* borrowed; outlives the request */
    struct MHD_Connection *conn;      /* borrowed; NULL once done */
    uint64_t id;
    enum http_req_state state;
    const char *method; /* borrowed from MHD; valid until done */
    const char *path;   /* borrowed from MHD; valid until done */
    char peer[INET6_ADDRSTRLEN];
    int fd;          /* the connection's socket (MHD owns it) */
    struct buf body; /* owned: the upload */
    struct buf hdrs; /* owned: response headers, "name\0value\0"... */
    struct buf out;  /* owned: the stream queue */
    size_t out_off;  /* bytes at the front of out already handed to MHD */
    bool too_large;
    bool suspended;    /* we suspended the connection and not resumed */
    bool client_gone;  /* the watcher saw EOF or an error */
    bool aborted;      /* http_stream_abort() */
    bool peer_data;    /* the peer sent bytes while suspended */
    bool drain_queued; /* on server->drains */
    bool watch_init;   /* watch is initialised (and must be closed) */
    uv_poll_t watch;   /* the socket, while suspended */
    size_t low_water;
    http_drain_cb drain_cb;
    void *drain_ud;
    http_done_cb done_cb;
    void *done_ud;
    void *data; /* borrowed: the user's */
};

/* A connection's hang-up watch until its first request arrives (after
 * that, the request's own watcher takes over: libuv allows one poll
 * handle per fd). */
struct http_conn_watch {
    uv_poll_t poll;
    int fd;
    bool active;      /* uv_close() not called yet */
    bool poll_closed; /* the close callback came */
    bool conn_closed; /* MHD_CONNECTION_NOTIFY_CLOSED came */
    struct http_server *s;
};

struct http_listener {
    uv_poll_t poll;
    int fd; /* owned */
    struct http_server *s;
};

struct http_server {
    uv_loop_t *loop;        /* borrowed */
    struct MHD_Daemon *mhd; /* owned */
    struct http_server_opts o;
    char name[INET6_ADDRSTRLEN + 16]; /* "127.0.0.1:11435", for messages */
    struct sockaddr_storage addr;     /* bound address, real port */
    socklen_t addrlen;
    unsigned port;
    struct http_listener *listener; /* owned; NULL while not listening */
    uv_poll_t mhd_poll;             /* MHD's epoll fd */
    uv_timer_t mhd_timer;           /* MHD_get_timeout() */
    uv_timer_t accept_timer;        /* accept paused after EMFILE */
    uv_prepare_t prepare;           /* runs MHD when dirty */
    uv_check_t check;               /* runs MHD when dirty */
    struct http_req_list reqs;      /* owned: requests not done yet */
    struct http_req_list drains;    /* borrowed: drain callbacks due */
    size_t nreqs;
    size_t ndrains;
    uint64_t next_id;
    unsigned handles; /* listener, watchers and closing handles whose close
                         callback is still to come */
    bool in_mhd;      /* inside MHD_run() / MHD_stop_daemon() */
    bool dirty;       /* MHD_run() needed (a resume happened) */
    bool stopping;    /* http_server_free() began */
    bool free_pending;
    bool timers_init;   /* mhd_timer, accept_timer, prepare, check */
    bool mhd_poll_init; /* mhd_poll */
    void (*closed)(void *);
    void *closed_ud;
};

static void http_server_run(struct http_server *s);
static void http_server_do_free(struct http_server *s);
static void http_req_on_watch(uv_poll_t *h, int status, int events);
static void http_req_watch_hangup(struct http_req *r);
static void http_conn_watch_end(struct http_conn_watch *w);
static void http_server_on_connection(void *cls, struct MHD_Connection *conn,
                                      void **socket_context,
                                      enum MHD_ConnectionNotificationCode code);
static size_t http_server_unescape(void *cls, struct MHD_Connection *c,
                                   char *str);
static void http_server_on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* --- teardown bookkeeping --------------------------------------------- */

/* Frees the server once it is stopping and its last handle is closed. */
static void
http_server_maybe_release(struct http_server *s)
{
    void (*closed)(void *);
    void *ud;

    if (!s->stopping || s->handles > 0 || s->in_mhd)
        return;
    closed = s->closed;
    ud = s->closed_ud;
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
    s->handles++;
    uv_close(h, http_server_on_handle_closed);
}

/* --- the request ------------------------------------------------------- */

static size_t
http_req_queued(const struct http_req *r)
{
    return r->out.len - r->out_off;
}

static void
http_req_watch_start(struct http_req *r)
{
    struct http_server *s = r->s;
    int events = UV_DISCONNECT;
    int rc;

    if (r->fd < 0)
        return;
    if (!r->watch_init) {
        rc = uv_poll_init(s->loop, &r->watch, r->fd);
        if (rc != 0) {
            log_debug("%" PRIu64 " http: cannot watch fd %d: %s", r->id, r->fd,
                      uv_strerror(rc));
            return;
        }
        r->watch.data = r;
        r->watch_init = true;
        s->handles++;
    }
    /* Once the peer has sent bytes (a pipelined request), readability says
     * nothing more, and level-triggered polling would spin. */
    if (!r->peer_data)
        events |= UV_READABLE;
    rc = uv_poll_start(&r->watch, events, http_req_on_watch);
    if (rc != 0)
        log_debug("%" PRIu64 " http: uv_poll_start: %s", r->id,
                  uv_strerror(rc));
}

/* Only from an MHD access handler or content reader (MHD's rule). */
static void
http_req_suspend(struct http_req *r)
{
    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    http_req_watch_start(r);
}

static void
http_req_resume(struct http_req *r)
{
    if (!r->suspended)
        return;
    /* Stop watching while the fd is certainly still open: MHD may close
     * it in the next MHD_run(). */
    if (r->watch_init)
        uv_poll_stop(&r->watch);
    r->suspended = false;
    MHD_resume_connection(r->conn);
    r->s->dirty = true;
}

static void
http_req_on_watch(uv_poll_t *h, int status, int events)
{
    struct http_req *r = h->data;
    char c;
    ssize_t n;

    if (r->state == HTTP_REQ_READING) {
        /* The peer hung up before its request was whole. Shutting our
         * read side makes the socket readable at EOF again, a new edge
         * for MHD's epoll: MHD then reads the EOF and closes the
         * connection itself (the done callback follows). */
        log_trace(TRACE_HTTP, "%" PRIu64 " http: hang-up before the body",
                  r->id);
        uv_poll_stop(&r->watch);
        (void)shutdown(r->fd, SHUT_RD);
        r->s->dirty = true;
        return;
    }
    if (status == 0 && !(events & UV_DISCONNECT)) {
        n = recv(r->fd, &c, 1, MSG_PEEK);
        if (n > 0) {
            r->peer_data = true;
            uv_poll_start(&r->watch, UV_DISCONNECT, http_req_on_watch);
            return;
        }
        if (n < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
    }
    log_trace(TRACE_HTTP, "%" PRIu64 " http: client gone while suspended",
              r->id);
    r->client_gone = true;
    http_req_resume(r);
}

static void
http_req_on_watch_closed(uv_handle_t *h)
{
    struct http_req *r = h->data;
    struct http_server *s = r->s;

    free(r);
    s->handles--;
    http_server_maybe_release(s);
}

static void
http_req_unqueue_drain(struct http_req *r)
{
    if (!r->drain_queued)
        return;
    TAILQ_REMOVE(&r->s->drains, r, drain_link);
    r->drain_queued = false;
    r->s->ndrains--;
}

static void
http_req_check_drain(struct http_req *r)
{
    struct http_server *s = r->s;

    if (r->drain_cb == NULL || r->drain_queued ||
        http_req_queued(r) > r->low_water)
        return;
    TAILQ_INSERT_TAIL(&s->drains, r, drain_link);
    r->drain_queued = true;
    s->ndrains++;
    s->dirty = true;
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

/* Has the peer closed or reset the connection? MHD reports a write to a
 * vanished client as a plain error; the socket is still open here (MHD
 * closes it after the completed callback), so ask the kernel. */
static bool
http_req_peer_closed(const struct http_req *r)
{
    char c;
    ssize_t n;

    if (r->fd < 0)
        return false;
    n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static enum http_end
http_req_end_reason(const struct http_req *r,
                    enum MHD_RequestTerminationCode toe)
{
    if (toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN || r->s->stopping)
        return HTTP_END_SHUTDOWN;
    if (r->client_gone)
        return HTTP_END_CLIENT_GONE;
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return HTTP_END_OK;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return HTTP_END_TIMEOUT;
    case MHD_REQUEST_TERMINATED_READ_ERROR:
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return r->aborted ? HTTP_END_ERROR : HTTP_END_CLIENT_GONE;
    default:
        if (!r->aborted && http_req_peer_closed(r))
            return HTTP_END_CLIENT_GONE;
        return HTTP_END_ERROR;
    }
}

/* The request ended: tell the user, then release it. Called from MHD's
 * request-completed callback, before MHD closes the socket. */
static void
http_req_finish(struct http_req *r, enum http_end why)
{
    struct http_server *s = r->s;

    r->state = HTTP_REQ_DONE;
    TAILQ_REMOVE(&s->reqs, r, link);
    s->nreqs--;
    http_req_unqueue_drain(r);
    log_trace(TRACE_HTTP, "%" PRIu64 " http: %s %s done: %s", r->id, r->method,
              r->path, http_end_name(why));
    if (r->done_cb != NULL)
        r->done_cb(r, why, r->done_ud);
    r->conn = NULL;
    buf_cleanup(&r->body);
    buf_cleanup(&r->hdrs);
    buf_cleanup(&r->out);
    if (r->watch_init)
        uv_close((uv_handle_t *)&r->watch, http_req_on_watch_closed);
    else
        free(r);
}

static void
http_req_set_peer(struct http_req *r)
{
    const union MHD_ConnectionInfo *ci;
    const struct sockaddr *sa;
    const void *a = NULL;
    int af = AF_INET;

    r->peer[0] = '\0';
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 =
            &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        /* A v4 client of a dual-stack socket reads as plain v4. */
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            a = &a6->s6_addr[12];
        } else {
            a = a6;
            af = AF_INET6;
        }
    }
    if (a == NULL || inet_ntop(af, a, r->peer, sizeof(r->peer)) == NULL)
        r->peer[0] = '\0';
}

static struct http_req *
http_req_new(struct http_server *s, struct MHD_Connection *conn,
             const char *url, const char *method)
{
    const union MHD_ConnectionInfo *ci;
    struct http_req *r;

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->s = s;
    r->conn = conn;
    r->id = ++s->next_id;
    r->state = HTTP_REQ_READING;
    r->method = method;
    r->path = url;
    r->fd = -1;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL)
        r->fd = ci->connect_fd;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci != NULL && ci->socket_context != NULL)
        http_conn_watch_end(ci->socket_context);
    buf_init(&r->body, s->o.max_body);
    buf_init(&r->hdrs, HTTP_SERVER_MAX_RESP_HDRS);
    buf_init(&r->out, s->o.stream_max_queue);
    http_req_set_peer(r);
    TAILQ_INSERT_TAIL(&s->reqs, r, link);
    s->nreqs++;
    http_req_watch_hangup(r);
    log_trace(TRACE_HTTP, "%" PRIu64 " http: %s %s from %s", r->id, method, url,
              r->peer);
    return r;
}

/*
 * While the body is arriving, watch for the peer's hang-up (EPOLLRDHUP
 * only: ordinary data wakes nothing). MHD 0.9.75 in epoll mode takes a
 * short recv() as "socket drained" and waits for the next edge, so a FIN
 * that came in with the last bytes is never read and the connection would
 * stay open until the idle timeout. See http_req_on_watch().
 */
static void
http_req_watch_hangup(struct http_req *r)
{
    if (r->fd < 0)
        return;
    if (!r->watch_init) {
        if (uv_poll_init(r->s->loop, &r->watch, r->fd) != 0)
            return;
        r->watch.data = r;
        r->watch_init = true;
        r->s->handles++;
    }
    (void)uv_poll_start(&r->watch, UV_DISCONNECT, http_req_on_watch);
}

static void
http_req_take_body(struct http_req *r, const char *p, size_t n)
{
    if (r->too_large)
        return;
    if (buf_append(&r->body, p, n) != 0) {
        /* Over max_body (or out of memory): keep reading and discarding
         * so that the handler can still answer, e.g. with a 413. */
        r->too_large = true;
        buf_cleanup(&r->body);
    }
}

/* The whole request is in: call the handler once; park the connection
 * until it answers. MHD calls this again after every resume for as long
 * as no response is queued. */
static enum MHD_Result
http_req_on_complete(struct http_req *r)
{
    struct http_server *s = r->s;

    if (r->client_gone || r->aborted || s->stopping)
        return MHD_NO;
    if (r->state == HTTP_REQ_READING) {
        if (r->watch_init)
            uv_poll_stop(&r->watch); /* the hang-up watch of READING */
        r->state = HTTP_REQ_WAITING;
        s->o.on_request(r, s->o.ud);
        if (r->client_gone || r->aborted)
            return MHD_NO;
    }
    if (r->state == HTTP_REQ_WAITING)
        http_req_suspend(r);
    return MHD_YES;
}

static enum MHD_Result
http_server_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                      const char *method, const char *version,
                      const char *upload_data, size_t *upload_data_size,
                      void **con_cls)
{
    struct http_server *s = cls;
    struct http_req *r = *con_cls;

    (void)version;
    if (r == NULL) {
        /* First call: headers only. */
        r = http_req_new(s, conn, url, method);
        if (r == NULL)
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        http_req_take_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return http_req_on_complete(r);
}

static void
http_server_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_req *r = *con_cls;

    (void)cls;
    (void)conn;
    if (r == NULL)
        return;
    *con_cls = NULL;
    http_req_finish(r, http_req_end_reason(r, toe));
}

/* MHD's content reader for streams: hands over the queue; with nothing
 * queued, parks the connection until http_stream_write() wakes it. */
static ssize_t
http_req_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct http_req *r = cls;
    size_t n;

    (void)pos;
    if (r->client_gone || r->aborted)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = http_req_queued(r);
    if (n == 0) {
        if (r->state == HTTP_REQ_ENDING)
            return MHD_CONTENT_READER_END_OF_STREAM;
        http_req_suspend(r);
        return 0;
    }
    if (n > max)
        n = max;
    memcpy(out, r->out.data + r->out_off, n);
    r->out_off += n;
    if (r->out_off == r->out.len) {
        buf_reset(&r->out);
        r->out_off = 0;
    }
    http_req_check_drain(r);
    return (ssize_t)n;
}

/* --- driving MHD ------------------------------------------------------- */

static void
http_server_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    if (log_get_level() < LL_DEBUG)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_debug("http: mhd: %s", line);
}

static void
http_server_on_timer(uv_timer_t *t)
{
    http_server_run(t->data);
}

static void
http_server_arm_timer(struct http_server *s)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;

    if (s->stopping)
        return;
    /* Left-over work (drains queued by drain callbacks, resumes) runs on
     * the next turn of the loop rather than waiting for an event. */
    if (s->ndrains == 0 && !s->dirty &&
        MHD_get_timeout(s->mhd, &ms) != MHD_YES) {
        uv_timer_stop(&s->mhd_timer);
        return;
    }
    uv_timer_start(&s->mhd_timer, http_server_on_timer, (uint64_t)ms, 0);
}

/* Calls the drain callbacks that came due in the last MHD_run(). Bounded
 * by the count at entry, so a callback that re-arms itself cannot keep
 * us here. */
static void
http_server_run_drains(struct http_server *s)
{
    size_t n = s->ndrains;
    struct http_req *r;
    http_drain_cb cb;

    while (n-- > 0 && !s->stopping && (r = TAILQ_FIRST(&s->drains))) {
        http_req_unqueue_drain(r);
        cb = r->drain_cb;
        if (cb == NULL || http_req_queued(r) > r->low_water)
            continue;
        r->drain_cb = NULL;
        cb(r, r->drain_ud);
    }
}

static void
http_server_run(struct http_server *s)
{
    if (s->stopping || s->mhd == NULL)
        return;
    if (s->in_mhd) {
        s->dirty = true;
        return;
    }
    s->dirty = false;
    s->in_mhd = true;
    MHD_run(s->mhd);
    s->in_mhd = false;
    if (s->free_pending) {
        http_server_do_free(s);
        return;
    }
    http_server_run_drains(s);
    http_server_arm_timer(s);
}

static void
http_server_on_epoll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    http_server_run(h->data);
}

static void
http_server_on_prepare(uv_prepare_t *h)
{
    struct http_server *s = h->data;

    if (s->dirty)
        http_server_run(s);
}

static void
http_server_on_check(uv_check_t *h)
{
    struct http_server *s = h->data;

    if (s->dirty)
        http_server_run(s);
}

/* --- the listening socket ---------------------------------------------- */

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
    bool added = false;
    int fd;

    (void)events;
    if (status < 0) {
        /* libuv stopped the watcher; try again in a moment. */
        log_warn("http: %s: listening socket: %s", s->name,
                 uv_strerror(status));
        uv_timer_start(&s->accept_timer, http_server_on_accept_timer,
                       HTTP_SERVER_ACCEPT_PAUSE_MS, 0);
        return;
    }
    for (;;) {
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
        /* MHD owns fd from here, and closes it itself on failure (e.g.
         * over the connection limit). */
        if (MHD_add_connection(s->mhd, fd, (struct sockaddr *)&ss, len) !=
            MHD_YES)
            log_debug("http: %s: connection refused by MHD", s->name);
        added = true;
    }
    if (added)
        http_server_run(s);
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

/* --- the server -------------------------------------------------------- */

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

static struct MHD_Daemon *
http_server_start_mhd(struct http_server *s)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG;
    size_t hdr = s->o.max_header < 8192 ? 8192 : s->o.max_header;

    /* The logger goes first, or MHD logs trouble with the options before
     * it on its own. */
    return MHD_start_daemon(
        flags, 0, NULL, NULL, http_server_on_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, http_server_on_mhd_log, s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, hdr + HTTP_SERVER_POOL_ROOM,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)s->o.max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->o.idle_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, http_server_on_completed, s,
        MHD_OPTION_UNESCAPE_CALLBACK, http_server_unescape, s,
        MHD_OPTION_NOTIFY_CONNECTION, http_server_on_connection, s,
        MHD_OPTION_END);
}

static int
http_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decoding of the path and query arguments, in place. "%00" is
 * left as it is: decoded, the NUL would cut the C string short and
 * "/api/tags%00junk" would be served as "/api/tags".
 */
static size_t
http_server_unescape(void *cls, struct MHD_Connection *c, char *str)
{
    char *w = str;
    const char *p = str;

    (void)cls;
    (void)c;
    while (*p != '\0') {
        int hi = p[0] == '%' ? http_hexval(p[1]) : -1;
        int lo = hi >= 0 ? http_hexval(p[2]) : -1;

        if (hi >= 0 && lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi << 4 | lo);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return (size_t)(w - str);
}

/* MHD keeps a pointer to the watch (the socket context) until the
 * connection closes, so it is freed only once both are over. */
static void
http_conn_watch_closed(uv_handle_t *h)
{
    struct http_conn_watch *w = h->data;
    struct http_server *s = w->s;

    w->poll_closed = true;
    if (w->conn_closed)
        free(w);
    s->handles--;
    http_server_maybe_release(s);
}

/* Stops and closes the watch (before MHD closes the fd); idempotent. */
static void
http_conn_watch_end(struct http_conn_watch *w)
{
    if (!w->active)
        return;
    w->active = false;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, http_conn_watch_closed);
}

/* The peer hung up before a whole request head arrived: the same trick as
 * in http_req_on_watch() lets MHD see the EOF it missed. */
static void
http_conn_watch_on_event(uv_poll_t *h, int status, int events)
{
    struct http_conn_watch *w = h->data;

    (void)status;
    (void)events;
    uv_poll_stop(&w->poll);
    (void)shutdown(w->fd, SHUT_RD);
    w->s->dirty = true;
}

static void
http_server_on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    const union MHD_ConnectionInfo *ci;
    struct http_conn_watch *w = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (w != NULL) {
            *socket_context = NULL;
            w->conn_closed = true;
            if (w->poll_closed)
                free(w);
            else
                http_conn_watch_end(w);
        }
        return;
    }
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL || (w = calloc(1, sizeof(*w))) == NULL)
        return;
    w->fd = ci->connect_fd;
    w->s = s;
    if (uv_poll_init(s->loop, &w->poll, w->fd) != 0) {
        free(w);
        return;
    }
    w->poll.data = w;
    w->active = true;
    s->handles++;
    (void)uv_poll_start(&w->poll, UV_DISCONNECT, http_conn_watch_on_event);
    *socket_context = w;
}

/* The uv handles that live as long as the server. */
static int
http_server_init_handles(struct http_server *s, int efd)
{
    int rc;

    uv_timer_init(s->loop, &s->mhd_timer);
    uv_timer_init(s->loop, &s->accept_timer);
    uv_prepare_init(s->loop, &s->prepare);
    uv_check_init(s->loop, &s->check);
    s->mhd_timer.data = s;
    s->accept_timer.data = s;
    s->prepare.data = s;
    s->check.data = s;
    s->timers_init = true;
    rc = uv_poll_init(s->loop, &s->mhd_poll, efd);
    if (rc != 0)
        return rc;
    s->mhd_poll.data = s;
    s->mhd_poll_init = true;
    uv_prepare_start(&s->prepare, http_server_on_prepare);
    uv_check_start(&s->check, http_server_on_check);
    /* They only flush work; they should not keep the loop alive. */
    uv_unref((uv_handle_t *)&s->prepare);
    uv_unref((uv_handle_t *)&s->check);
    return uv_poll_start(&s->mhd_poll, UV_READABLE, http_server_on_epoll);
}

static void
http_server_set_error(char *err, size_t errlen, const char *name, int rc)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", name, strerror(-rc));
}

/* Second half of http_server_new(): MHD and the uv handles. */
static int
http_server_start(struct http_server *s, int lfd)
{
    const union MHD_DaemonInfo *di;
    int rc;

    s->mhd = http_server_start_mhd(s);
    if (s->mhd == NULL) {
        close(lfd);
        return -EINVAL;
    }
    di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (di == NULL) {
        close(lfd);
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        return -EINVAL;
    }
    rc = http_server_init_handles(s, di->epoll_fd);
    if (rc == 0)
        rc = http_server_watch_listener(s, lfd);
    else
        close(lfd);
    return rc;
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
    if (s == NULL) {
        http_server_set_error(err, errlen, host, -ENOMEM);
        return NULL;
    }
    s->loop = loop;
    s->o = *o;
    s->o.host = NULL; /* not kept: the caller's string */
    http_server_apply_defaults(&s->o);
    TAILQ_INIT(&s->reqs);
    TAILQ_INIT(&s->drains);
    s->port = o->port;
    http_server_format_name(s, host);
    rc = o->on_request == NULL ? -EINVAL : http_server_resolve(s, host);
    if (rc == 0)
        rc = http_server_bind(s, &lfd);
    if (rc != 0) {
        http_server_set_error(err, errlen, s->name, rc);
        free(s);
        return NULL;
    }
    http_server_format_name(s, host);
    rc = http_server_start(s, lfd);
    if (rc != 0) {
        http_server_set_error(err, errlen, s->name, rc);
        /* Handles may be initialised: release asynchronously. */
        s->closed = NULL;
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
    struct http_req *r;

    s->stopping = true;
    s->free_pending = false;
    http_server_close_listener(s);
    if (s->timers_init) {
        s->timers_init = false;
        http_server_close_handle(s, (uv_handle_t *)&s->accept_timer);
        http_server_close_handle(s, (uv_handle_t *)&s->mhd_timer);
        http_server_close_handle(s, (uv_handle_t *)&s->prepare);
        http_server_close_handle(s, (uv_handle_t *)&s->check);
    }
    /* Before MHD_stop_daemon() closes the epoll fd. */
    if (s->mhd_poll_init) {
        s->mhd_poll_init = false;
        http_server_close_handle(s, (uv_handle_t *)&s->mhd_poll);
    }
    /* MHD refuses to stop with suspended connections: resume them all;
     * MHD_stop_daemon() then ends each with DAEMON_SHUTDOWN. */
    TAILQ_FOREACH(r, &s->reqs, link)
    {
        http_req_resume(r);
    }
    if (s->mhd != NULL) {
        s->in_mhd = true;
        MHD_stop_daemon(s->mhd);
        s->in_mhd = false;
        s->mhd = NULL;
    }
    /* Requests MHD did not report (none expected): end them too. */
    while ((r = TAILQ_FIRST(&s->reqs)) != NULL)
        http_req_finish(r, HTTP_END_SHUTDOWN);
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
    if (s->stopping || s->free_pending)
        return;
    s->closed = closed;
    s->closed_ud = ud;
    if (s->in_mhd) {
        /* Inside an MHD callback: stop once MHD_run() has returned. */
        s->free_pending = true;
        s->dirty = true;
        return;
    }
    http_server_do_free(s);
}

/* --- request accessors --------------------------------------------------
 */

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

static const char *
http_req_lookup(const struct http_req *r, enum MHD_ValueKind kind,
                const char *name)
{
    const char *v = NULL;
    size_t vlen = 0;

    if (r->conn == NULL || name == NULL)
        return NULL;
    if (MHD_lookup_connection_value_n(r->conn, kind, name, strlen(name), &v,
                                      &vlen) != MHD_YES)
        return NULL;
    return v != NULL ? v : ""; /* "?flag" has no value */
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
    return http_req_lookup(r, MHD_HEADER_KIND, name);
}

const char *
http_req_query(const struct http_req *r, const char *name)
{
    return http_req_lookup(r, MHD_GET_ARGUMENT_KIND, name);
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
    if (len != NULL)
        *len = r->body.len;
    return r->body.data != NULL ? r->body.data : "";
}

bool
http_req_too_large(const struct http_req *r)
{
    return r->too_large;
}

const char *
http_req_peer(const struct http_req *r)
{
    return r->peer;
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
http_header_token_ok(const char *s, bool is_name)
{
    if (is_name && *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s == '\r' || *s == '\n')
            return false;
        if (is_name && (*s == ':' || *s == ' ' || *s == '\t'))
            return false;
    }
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
        !http_header_token_ok(name, true) ||
        !http_header_token_ok(value, false))
        return -EINVAL;
    nl = strlen(name) + 1;
    vl = strlen(value) + 1;
    if (nl + vl > r->hdrs.max - r->hdrs.len)
        return -E2BIG;
    if (buf_append(&r->hdrs, name, nl) != 0 ||
        buf_append(&r->hdrs, value, vl) != 0)
        return -ENOMEM;
    return 0;
}

/* May the handler still answer? 0, -EPIPE (ended) or -EINVAL. */
static int
http_req_can_answer(const struct http_req *r)
{
    if (r->state == HTTP_REQ_DONE || r->client_gone || r->aborted ||
        r->s->stopping)
        return -EPIPE;
    if (r->state != HTTP_REQ_WAITING)
        return -EINVAL;
    return 0;
}

/* Adds the headers, queues resp, and drops our reference to it. */
static int
http_req_queue(struct http_req *r, struct MHD_Response *resp, int status,
               const char *ctype)
{
    const char *p = r->hdrs.data;
    const char *end = p + r->hdrs.len;
    int rc = 0;

    if (ctype != NULL &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) !=
            MHD_YES)
        rc = -EINVAL;
    while (rc == 0 && p != NULL && p < end) {
        const char *v = p + strlen(p) + 1;

        if (MHD_add_response_header(resp, p, v) != MHD_YES)
            rc = -EINVAL;
        p = v + strlen(v) + 1;
    }
    if (rc == 0 &&
        (status < 100 || status > 999 ||
         MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES))
        rc = -EINVAL;
    MHD_destroy_response(resp);
    return rc;
}

int
http_respond(struct http_req *r, int status, const char *ctype,
             const void *body, size_t len)
{
    struct MHD_Response *resp;
    int rc = http_req_can_answer(r);

    if (rc != 0)
        return rc;
    if (body == NULL)
        len = 0;
    resp = MHD_create_response_from_buffer(len, (void *)(body ? body : ""),
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return -ENOMEM;
    rc = http_req_queue(r, resp, status, ctype);
    if (rc != 0)
        return rc;
    r->state = HTTP_REQ_RESPONDED;
    buf_cleanup(&r->hdrs);
    http_req_resume(r);
    return 0;
}

int
http_stream_begin(struct http_req *r, int status, const char *ctype)
{
    struct MHD_Response *resp;
    int rc = http_req_can_answer(r);

    if (rc != 0)
        return rc;
    resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, HTTP_SERVER_BLOCK_SIZE, http_req_read, r, NULL);
    if (resp == NULL)
        return -ENOMEM;
    rc = http_req_queue(r, resp, status, ctype);
    if (rc != 0)
        return rc;
    r->state = HTTP_REQ_STREAMING;
    buf_cleanup(&r->hdrs);
    http_req_resume(r);
    return 0;
}

static int
http_req_stream_state(const struct http_req *r)
{
    if (r->state == HTTP_REQ_DONE || r->state == HTTP_REQ_ENDING ||
        r->client_gone || r->aborted || r->s->stopping)
        return -EPIPE;
    if (r->state != HTTP_REQ_STREAMING)
        return -EINVAL;
    return 0;
}

int
http_stream_write(struct http_req *r, const void *p, size_t n)
{
    int rc = http_req_stream_state(r);

    if (rc != 0)
        return rc;
    if (n > r->out.max - http_req_queued(r))
        return -E2BIG;
    if (n == 0)
        return 0;
    if (r->out_off > 0) { /* make room at the front */
        buf_consume(&r->out, r->out_off);
        r->out_off = 0;
    }
    rc = buf_append(&r->out, p, n);
    if (rc != 0)
        return rc;
    http_req_resume(r);
    return 0;
}

size_t
http_stream_queued(const struct http_req *r)
{
    return http_req_queued(r);
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
    if (cb == NULL)
        http_req_unqueue_drain(r);
    else
        http_req_check_drain(r); /* already low: call it soon */
}

int
http_stream_end(struct http_req *r)
{
    int rc = http_req_stream_state(r);

    if (rc != 0)
        return rc;
    r->state = HTTP_REQ_ENDING;
    http_req_resume(r);
    return 0;
}

void
http_stream_abort(struct http_req *r)
{
    if (r->state == HTTP_REQ_DONE || r->aborted || r->s->stopping)
        return;
    r->aborted = true;
    buf_reset(&r->out);
    r->out_off = 0;
    http_req_unqueue_drain(r);
    r->drain_cb = NULL;
    /* The content reader (or, before any answer, the access handler)
     * sees the flag once MHD runs and closes the connection. */
    http_req_resume(r);
}
