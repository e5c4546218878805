/*
 * http_client.c - outgoing HTTP on the libuv loop (libcurl multi glue).
 *
 * Owns one CURLM handle with its uv_timer_t (curl's timeout) and a second
 * timer that kicks curl after an unpause, one struct http_sock (a
 * uv_poll_t) per socket curl asks us to watch, and one struct http_call per
 * call: its easy handle, request header list, the final response's
 * headers and, when the caller did not stream it, the body.
 *
 * The pattern is curl's docs/examples/multi-uv.c, with these rules added:
 * - curl forbids adding, removing or unpausing a transfer from inside its
 *   callbacks, and our users may ask for any of these from on_data. So
 *   every call into curl that can run user callbacks is bracketed by
 *   http_client_enter()/http_client_leave(), requests made meanwhile are
 *   queued on the call (pend), and the outermost leave carries them out
 *   once curl has returned, together with the completions
 *   (curl_multi_info_read) whose on_done it calls. The same bracket makes
 *   on_done safe to free or start calls from.
 * - A socket's uv_poll_t is closed when curl says CURL_POLL_REMOVE, which
 *   curl does before it closes the socket; its memory goes in the close
 *   callback.
 * - A body callback that asks to pause returns CURL_WRITEFUNC_PAUSE;
 *   curl then delivers the same bytes again on unpause, which the call
 *   skips (skip), so that on_data sees every byte exactly once.
 */
#include "herd/http_client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>

#include "herd/buf.h"
#include "herd/log.h"

#define HTTP_CALL_DEF_MAX_HEADER (64u * 1024u)
#define HTTP_CALL_DEF_MAX_BUFFER (8u * 1024u * 1024u)

/* Work deferred until curl has returned (http_call.pend). */
#define HTTP_PEND_ADD    0x1u
#define HTTP_PEND_RESUME 0x2u
#define HTTP_PEND_CANCEL 0x4u

struct http_sock {
    LIST_ENTRY(http_sock) link; /* in client->socks until closing */
    uv_poll_t poll;
    curl_socket_t fd; /* curl's; closed by curl after POLL_REMOVE */
    int events;       /* UV_READABLE | UV_WRITABLE curl asked for */
    bool closing;
    struct http_client *c; /* borrowed */
};

struct http_call {
    TAILQ_ENTRY(http_call) link;      /* in client->calls until freed */
    TAILQ_ENTRY(http_call) pend_link; /* in client->pending if pend */
    struct http_client *c;            /* borrowed */
    CURL *easy;                       /* owned */
    struct curl_slist *req_hdrs;      /* owned */
    http_call_response_cb on_response;
    http_call_data_cb on_data;
    http_call_done_cb on_done;
    void *ud;
    size_t max_body; /* 0: none */
    unsigned pend;   /* HTTP_PEND_* */
    bool in_multi;   /* added to the multi handle */
    bool cancelled;
    bool done;        /* on_done is running or ran */
    bool responded;   /* on_response fired */
    bool paused;      /* the user wants no data */
    bool curl_paused; /* we returned CURL_WRITEFUNC_PAUSE */
    int status;
    int fail_err; /* set by our callbacks: the reason they aborted */
    const char *fail_msg;
    size_t body_bytes;
    size_t skip;     /* bytes curl will deliver again after an unpause */
    struct buf hdrs; /* owned: final response, "name\0value\0"... */
    struct buf body; /* owned: the body when on_data is NULL */
    char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
    uv_loop_t *loop;                 /* borrowed */
    CURLM *multi;                    /* owned */
    uv_timer_t timer;                /* curl's timeout */
    uv_timer_t kick;                 /* socket_action soon, after an unpause */
    TAILQ_HEAD(, http_call) calls;   /* owned */
    TAILQ_HEAD(, http_call) pending; /* borrowed: calls with pend set */
    LIST_HEAD(, http_sock) socks;    /* owned */
    size_t ncalls;
    unsigned depth;   /* inside curl or our dispatch: defer work */
    unsigned handles; /* uv handles whose close callback is to come */
    bool freeing;
    bool free_pending;
    void (*closed)(void *);
    void *closed_ud;
};

static void http_client_do_free(struct http_client *c);
static void http_call_destroy(struct http_call *call);

/* --- teardown bookkeeping --------------------------------------------- */

static void
http_client_maybe_release(struct http_client *c)
{
    void (*closed)(void *);
    void *ud;

    if (!c->freeing || c->handles > 0)
        return;
    closed = c->closed;
    ud = c->closed_ud;
    free(c);
    if (closed != NULL)
        closed(ud);
}

static void
http_client_on_handle_closed(uv_handle_t *h)
{
    struct http_client *c = h->data;

    c->handles--;
    http_client_maybe_release(c);
}

/* --- sockets ----------------------------------------------------------- */

static void http_client_drive(struct http_client *c, curl_socket_t fd,
                              int flags);

static void
http_sock_on_poll(uv_poll_t *h, int status, int events)
{
    struct http_sock *hs = h->data;
    int flags = 0;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* hs stays allocated until its close callback, even if curl drops
     * the socket in here. */
    http_client_drive(hs->c, hs->fd, flags);
    /* libuv stops a poll on error; curl still owns the socket and will
     * learn of the error when it reads, so keep watching. */
    if (status < 0 && !hs->closing && hs->events != 0)
        uv_poll_start(&hs->poll, hs->events, http_sock_on_poll);
}

static void
http_sock_on_closed(uv_handle_t *h)
{
    struct http_sock *hs = h->data;
    struct http_client *c = hs->c;

    free(hs);
    c->handles--;
    http_client_maybe_release(c);
}

static void
http_sock_close(struct http_sock *hs)
{
    if (hs->closing)
        return;
    hs->closing = true;
    LIST_REMOVE(hs, link);
    uv_close((uv_handle_t *)&hs->poll, http_sock_on_closed);
}

static struct http_sock *
http_sock_new(struct http_client *c, curl_socket_t fd)
{
    struct http_sock *hs;
    int rc;

    hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return NULL;
    rc = uv_poll_init_socket(c->loop, &hs->poll, fd);
    if (rc != 0) {
        log_warn("http client: cannot watch fd %d: %s", (int)fd,
                 uv_strerror(rc));
        free(hs);
        return NULL;
    }
    hs->poll.data = hs;
    hs->fd = fd;
    hs->c = c;
    LIST_INSERT_HEAD(&c->socks, hs, link);
    c->handles++;
    return hs;
}

/* CURLMOPT_SOCKETFUNCTION */
static int
http_client_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                      void *socketp)
{
    struct http_client *c = userp;
    struct http_sock *hs = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (hs != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            http_sock_close(hs);
        }
        return 0;
    }
    if (c->freeing)
        return 0;
    if (hs == NULL) {
        hs = http_sock_new(c, fd);
        if (hs == NULL)
            return -1; /* curl fails the transfer */
        curl_multi_assign(c->multi, fd, hs);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    hs->events = events;
    if (events == 0)
        uv_poll_stop(&hs->poll);
    else
        uv_poll_start(&hs->poll, events, http_sock_on_poll);
    return 0;
}

/* --- driving curl ------------------------------------------------------ */

static void
http_client_on_timeout(uv_timer_t *t)
{
    http_client_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION */
static int
http_client_on_timer(CURLM *multi, long ms, void *userp)
{
    struct http_client *c = userp;

    (void)multi;
    if (c->freeing)
        return 0;
    if (ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, http_client_on_timeout, (uint64_t)ms, 0);
    return 0;
}

static void
http_client_enter(struct http_client *c)
{
    c->depth++;
}

static void http_client_settle(struct http_client *c);

static void
http_client_leave(struct http_client *c)
{
    if (c->depth == 1 && !c->freeing)
        http_client_settle(c); /* still "inside": new work is queued */
    c->depth--;
    if (c->depth == 0 && c->free_pending)
        http_client_do_free(c);
}

static void
http_client_drive(struct http_client *c, curl_socket_t fd, int flags)
{
    int running;

    if (c->freeing)
        return;
    http_client_enter(c);
    curl_multi_socket_action(c->multi, fd, flags, &running);
    http_client_leave(c);
}

/* --- calls: callbacks from curl ---------------------------------------- */

static void
http_call_fail(struct http_call *call, int err, const char *msg)
{
    if (call->fail_err == 0) {
        call->fail_err = err;
        call->fail_msg = msg;
    }
}

static void
http_call_fire_response(struct http_call *call)
{
    long code = 0;

    call->responded = true;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
    call->status = (int)code;
    if (call->on_response != NULL)
        call->on_response(call, call->status, call->ud);
}

/* Records "Name: value" (CRLF already cut) of the current response. */
static int
http_call_store_header(struct http_call *call, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    const char *v;
    const char *end = p + n;
    size_t nl;

    if (colon == NULL || colon == p || p[0] == ' ' || p[0] == '\t')
        return 0; /* not a header line (or obsolete folding): ignore */
    nl = (size_t)(colon - p);
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (buf_append(&call->hdrs, p, nl) != 0 ||
        buf_append(&call->hdrs, "", 1) != 0 ||
        buf_append(&call->hdrs, v, (size_t)(end - v)) != 0 ||
        buf_append(&call->hdrs, "", 1) != 0)
        return -E2BIG;
    return 0;
}

/* CURLOPT_HEADERFUNCTION: one header line per call. */
static size_t
http_call_on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct http_call *call = ud;
    size_t n = size * nmemb;
    size_t len = n;
    long code = 0;

    if (call->cancelled)
        return 0;
    if (call->responded)
        return n; /* trailers */
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len == 0) { /* end of a header block */
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200) {
            buf_reset(&call->hdrs); /* interim (100 Continue) */
            return n;
        }
        http_call_fire_response(call);
        return call->cancelled ? 0 : n;
    }
    if (len >= 5 && strncasecmp(p, "HTTP/", 5) == 0) {
        buf_reset(&call->hdrs); /* a status line starts a response */
        return n;
    }
    if (http_call_store_header(call, p, len) != 0) {
        http_call_fail(call, -E2BIG, "response headers too large");
        return 0;
    }
    return n;
}

/* Hands n body bytes to the user (or the buffer); false to abort. */
static bool
http_call_deliver(struct http_call *call, const char *p, size_t n)
{
    int rc;

    if (call->max_body != 0 && n > call->max_body - call->body_bytes) {
        http_call_fail(call, -E2BIG, "response body too large");
        return false;
    }
    call->body_bytes += n;
    if (call->on_data == NULL) {
        if (buf_append(&call->body, p, n) != 0) {
            http_call_fail(call, -E2BIG, "response body too large");
            return false;
        }
        return true;
    }
    rc = call->on_data(call, p, n, call->ud);
    if (rc == HTTP_CALL_PAUSE)
        call->paused = true;
    return !call->cancelled;
}

/* CURLOPT_WRITEFUNCTION */
static size_t
http_call_on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct http_call *call = ud;
    size_t n = size * nmemb;
    size_t k;

    if (call->cancelled)
        return 0;
    if (!call->responded) {
        http_call_fire_response(call);
        if (call->cancelled)
            return 0;
    }
    /* curl re-delivers what it held when we paused: the first skip bytes
     * were consumed already. */
    k = call->skip < n ? call->skip : n;
    if (k == n) {
        call->skip -= n;
        return n;
    }
    if (call->paused) {
        call->curl_paused = true; /* curl keeps all n bytes for later */
        return CURL_WRITEFUNC_PAUSE;
    }
    call->skip = 0;
    if (!http_call_deliver(call, p + k, n - k))
        return 0;
    if (call->paused) {
        /* All n bytes are consumed, but pausing is only possible by
         * handing them back to curl, which will offer them again. */
        call->skip = n;
        call->curl_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

/* --- calls: completion and teardown ------------------------------------ */

static int
http_call_map_connect(struct http_call *call)
{
    long oserr = 0;

    curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &oserr);
    if (oserr == EHOSTUNREACH || oserr == ENETUNREACH)
        return -EHOSTUNREACH;
    if (oserr == ETIMEDOUT)
        return -ETIMEDOUT;
    return -ECONNREFUSED;
}

static int
http_call_map_error(struct http_call *call, CURLcode res)
{
    if (call->fail_err != 0)
        return call->fail_err;
    switch (res) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        return http_call_map_connect(call);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static void
http_call_complete(struct http_call *call, CURLcode res)
{
    const char *msg = "";
    int err;

    curl_multi_remove_handle(call->c->multi, call->easy);
    call->in_multi = false;
    if (call->cancelled) {
        http_call_destroy(call);
        return;
    }
    err = http_call_map_error(call, res);
    if (err != 0)
        msg = call->fail_msg != NULL    ? call->fail_msg
              : call->errbuf[0] != '\0' ? call->errbuf
                                        : curl_easy_strerror(res);
    if (err == 0 && !call->responded)
        http_call_fire_response(call);
    if (!call->cancelled) {
        call->done = true;
        call->on_done(call, err, msg, call->ud);
    }
    http_call_destroy(call);
}

/* Reads finished transfers; true if there were any. */
static bool
http_client_read_done(struct http_client *c)
{
    struct http_call *call;
    CURLMsg *m;
    CURLcode res;
    CURL *easy;
    char *priv;
    bool any = false;
    int left;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        /* m dies with the easy handle: copy what we need first. */
        easy = m->easy_handle;
        res = m->data.result;
        priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        if (priv == NULL)
            continue;
        call = (struct http_call *)(void *)priv;
        any = true;
        http_call_complete(call, res);
    }
    return any;
}

static void
http_call_unpend(struct http_call *call)
{
    if (call->pend == 0)
        return;
    TAILQ_REMOVE(&call->c->pending, call, pend_link);
    call->pend = 0;
}

static void
http_call_pend(struct http_call *call, unsigned what)
{
    if (call->pend == 0)
        TAILQ_INSERT_TAIL(&call->c->pending, call, pend_link);
    call->pend |= what;
}

static void
http_call_destroy(struct http_call *call)
{
    struct http_client *c = call->c;

    http_call_unpend(call);
    TAILQ_REMOVE(&c->calls, call, link);
    c->ncalls--;
    if (call->in_multi)
        curl_multi_remove_handle(c->multi, call->easy);
    curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->req_hdrs);
    buf_cleanup(&call->hdrs);
    buf_cleanup(&call->body);
    free(call);
}

/* Adds to the multi handle; on failure reports through on_done. */
static void
http_call_add(struct http_call *call)
{
    CURLMcode mc = curl_multi_add_handle(call->c->multi, call->easy);

    if (mc == CURLM_OK) {
        call->in_multi = true;
        return;
    }
    call->done = true;
    call->on_done(call, -ENOMEM, curl_multi_strerror(mc), call->ud);
    http_call_destroy(call);
}

static void
http_call_unpause(struct http_call *call)
{
    struct http_client *c = call->c;

    if (call->paused || !call->curl_paused || !call->in_multi)
        return;
    call->curl_paused = false;
    /* May deliver the held bytes (our write callback) right here. */
    curl_easy_pause(call->easy, CURLPAUSE_CONT);
    /* curl only arms its timer if the expiry changed: kick it anyway so
     * the transfer reads its socket again. */
    uv_timer_start(&c->kick, http_client_on_timeout, 0, 0);
}

/* Carries out deferred work and completions until none is left. Runs at
 * depth 1, so what user callbacks ask for in here is queued too. */
static void
http_client_settle(struct http_client *c)
{
    struct http_call *call;
    unsigned pend;
    bool more = true;

    while (more && !c->freeing && !c->free_pending) {
        more = false;
        while ((call = TAILQ_FIRST(&c->pending)) != NULL) {
            more = true;
            pend = call->pend;
            http_call_unpend(call);
            if (pend & HTTP_PEND_CANCEL) {
                http_call_destroy(call);
                continue;
            }
            if (pend & HTTP_PEND_ADD)
                http_call_add(call); /* may free call */
            else if (pend & HTTP_PEND_RESUME)
                http_call_unpause(call);
        }
        if (http_client_read_done(c))
            more = true;
    }
}

/* --- the public API ---------------------------------------------------- */

struct http_client *
http_client_new(uv_loop_t *loop)
{
    struct http_client *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        return NULL;
    }
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        curl_global_cleanup();
        free(c);
        return NULL;
    }
    c->loop = loop;
    TAILQ_INIT(&c->calls);
    TAILQ_INIT(&c->pending);
    LIST_INIT(&c->socks);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, http_client_on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, http_client_on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* curl's default keeps 4 idle connections per running transfer, so a
     * load that ebbs closes connections it will reopen a moment later; a
     * fixed pool of 256 keeps a busy node's connections warm without
     * hoarding thousands after a burst. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 256L);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->kick);
    c->timer.data = c;
    c->kick.data = c;
    return c;
}

static void
http_client_do_free(struct http_client *c)
{
    struct http_call *call;
    struct http_sock *hs;

    c->free_pending = false;
    c->freeing = true;
    while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
        call->cancelled = true;
        http_call_destroy(call);
    }
    /* Close what is still watched while curl's fds are still open. */
    while ((hs = LIST_FIRST(&c->socks)) != NULL) {
        curl_multi_assign(c->multi, hs->fd, NULL);
        http_sock_close(hs);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    curl_global_cleanup();
    c->handles += 2;
    uv_close((uv_handle_t *)&c->timer, http_client_on_handle_closed);
    uv_close((uv_handle_t *)&c->kick, http_client_on_handle_closed);
}

void
http_client_free(struct http_client *c, void (*closed)(void *), void *ud)
{
    if (c == NULL) {
        if (closed != NULL)
            closed(ud);
        return;
    }
    if (c->freeing || c->free_pending)
        return;
    c->closed = closed;
    c->closed_ud = ud;
    if (c->depth > 0) {
        c->free_pending = true; /* once curl and our dispatch are done */
        return;
    }
    http_client_do_free(c);
}

size_t
http_client_active(const struct http_client *c)
{
    return c->ncalls;
}

static void
http_set_err(char *err, size_t errlen, const char *what, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s%s%s", what, what[0] != '\0' ? ": " : "", why);
}

static bool
http_line_ok(const char *s)
{
    return strchr(s, '\r') == NULL && strchr(s, '\n') == NULL;
}

/* The request headers; adds "Expect:" to skip curl's 100-continue wait
 * unless the caller set Expect. */
static int
http_call_set_headers(struct http_call *call, const char *const *h)
{
    struct curl_slist *l;
    bool expect = false;

    for (; h != NULL && *h != NULL; h++) {
        if (!http_line_ok(*h) || strchr(*h, ':') == NULL)
            return -EINVAL;
        if (strncasecmp(*h, "Expect:", 7) == 0)
            expect = true;
        l = curl_slist_append(call->req_hdrs, *h);
        if (l == NULL)
            return -ENOMEM;
        call->req_hdrs = l;
    }
    if (!expect) {
        l = curl_slist_append(call->req_hdrs, "Expect:");
        if (l == NULL)
            return -ENOMEM;
        call->req_hdrs = l;
    }
    curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->req_hdrs);
    return 0;
}

static void
http_call_set_method(struct http_call *call, const struct http_call_opts *o)
{
    CURL *e = call->easy;
    const char *m = o->method != NULL ? o->method : "GET";
    bool body = o->body != NULL || strcmp(m, "POST") == 0 ||
                strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;

    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(o->body != NULL ? o->body_len : 0));
        if (o->body != NULL && o->body_len > 0)
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body);
        else
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    if ((body && strcmp(m, "POST") != 0) || (!body && strcmp(m, "GET") != 0))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
}

static int
http_call_setup(struct http_call *call, const struct http_call_opts *o)
{
    CURL *e = call->easy;

    if (curl_easy_setopt(e, CURLOPT_URL, o->url) != CURLE_OK)
        return -EINVAL;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)call);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_call_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_call_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->total_timeout_ms);
    http_call_set_method(call, o);
    return http_call_set_headers(call, o->headers);
}

static struct http_call *
http_call_new(struct http_client *c, const struct http_call_opts *o)
{
    struct http_call *call;

    call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->c = c;
    call->on_response = o->on_response;
    call->on_data = o->on_data;
    call->on_done = o->on_done;
    call->ud = o->ud;
    call->max_body = o->max_body;
    if (o->on_data == NULL && call->max_body == 0)
        call->max_body = HTTP_CALL_DEF_MAX_BUFFER;
    buf_init(&call->hdrs,
             o->max_header != 0 ? o->max_header : HTTP_CALL_DEF_MAX_HEADER);
    buf_init(&call->body,
             call->max_body != 0 ? call->max_body : HTTP_CALL_DEF_MAX_BUFFER);
    call->easy = curl_easy_init();
    if (call->easy == NULL) {
        free(call);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&c->calls, call, link);
    c->ncalls++;
    return call;
}

struct http_call *
http_call_start(struct http_client *c, const struct http_call_opts *o,
                char *err, size_t errlen)
{
    struct http_call *call;
    CURLMcode mc;
    int rc;

    if (c->freeing || c->free_pending || o->url == NULL || o->on_done == NULL) {
        http_set_err(err, errlen, "", "invalid call options");
        return NULL;
    }
    call = http_call_new(c, o);
    if (call == NULL) {
        http_set_err(err, errlen, "", "out of memory");
        return NULL;
    }
    rc = http_call_setup(call, o);
    if (rc != 0) {
        http_set_err(err, errlen, o->url,
                     rc == -ENOMEM ? "out of memory" : "invalid request");
        http_call_destroy(call);
        return NULL;
    }
    if (c->depth > 0) { /* curl refuses additions from its callbacks */
        http_call_pend(call, HTTP_PEND_ADD);
        return call;
    }
    mc = curl_multi_add_handle(c->multi, call->easy);
    if (mc != CURLM_OK) {
        http_set_err(err, errlen, o->url, curl_multi_strerror(mc));
        http_call_destroy(call);
        return NULL;
    }
    call->in_multi = true;
    return call;
}

void
http_call_pause(struct http_call *call)
{
    /* The write callback refuses the next bytes; curl keeps them. */
    call->paused = true;
}

void
http_call_resume(struct http_call *call)
{
    struct http_client *c = call->c;

    if (!call->paused)
        return;
    call->paused = false;
    if (!call->curl_paused)
        return; /* curl never saw the pause */
    if (c->depth > 0) {
        http_call_pend(call, HTTP_PEND_RESUME);
        return;
    }
    http_client_enter(c);
    http_call_unpause(call);
    http_client_leave(c);
}

void
http_call_cancel(struct http_call *call)
{
    struct http_client *c;

    if (call == NULL || call->cancelled || call->done)
        return;
    c = call->c;
    call->cancelled = true;
    if (c->depth > 0) { /* curl may be on the stack */
        http_call_pend(call, HTTP_PEND_CANCEL);
        return;
    }
    http_call_destroy(call);
}

int
http_call_status(const struct http_call *call)
{
    return call->status;
}

const char *
http_call_header(const struct http_call *call, const char *name)
{
    const char *p = call->hdrs.data;
    const char *end = p + call->hdrs.len;
    const char *v;

    while (p != NULL && p < end) {
        v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

const char *
http_call_body(const struct http_call *call, size_t *len)
{
    if (len != NULL)
        *len = call->body.len;
    return call->body.data != NULL ? call->body.data : "";
}
