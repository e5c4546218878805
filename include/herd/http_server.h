/*
 * http_server.h - an HTTP/1.1 server on the process's libuv loop.
 *
 * Our own server (src/common/http_server.c, described in
 * docs/internals/http_server.md): one uv_tcp_t per connection, one read
 * buffer shared by all of them, writes with uv_try_write() first, one
 * timer for the whole server. The listening socket can be switched off
 * and on again (fault injection) and the real port is known at once
 * (port 0). HTTP/1.0 and 1.1 with keep-alive and pipelining (answered in
 * order); no TLS, no HTTP/2.
 *
 * Everything here runs on the loop thread and is not thread-safe. The
 * process must ignore SIGPIPE (herd, herd-sim and herd-node do).
 *
 * A request's life: the handler is called once, when the whole body has
 * arrived (or the body went over max_body). It answers at once or later
 * (from a timer, another callback...): http_respond(), or
 * http_stream_begin() + http_stream_write()* + http_stream_end(). The
 * done callback fires exactly once, when the request ends for any
 * reason, never from inside http_respond() and the other request
 * functions below (http_server_free() is the exception); after it
 * returns, the struct http_req is freed and must not be touched.
 *
 * The server keeps reading while a request is handled, so a client that
 * goes away (waiting for the handler, or during a stream) is noticed at
 * once: the done callback gets HTTP_END_CLIENT_GONE.
 *
 * The server answers some requests itself, without calling the handler,
 * and then closes the connection: 400 (malformed request line or header,
 * obsolete line folding, Content-Length not a number or given twice with
 * different values, both Content-Length and Transfer-Encoding, a bad
 * chunk), 431 (request line and headers over max_header), 501 (a
 * Transfer-Encoding other than chunked), 505 (not HTTP/1.x).
 */
#ifndef HERD_HTTP_SERVER_H
#define HERD_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "herd/buf.h"

struct http_server;
struct http_req;

enum http_end {
    HTTP_END_OK,          /* the whole response was sent */
    HTTP_END_ERROR,       /* write error or the stream was aborted */
    HTTP_END_TIMEOUT,     /* connection idle timeout */
    HTTP_END_CLIENT_GONE, /* the client closed the connection first */
    HTTP_END_SHUTDOWN,    /* http_server_free() ended it */
};

typedef void (*http_handler_cb)(struct http_req *req, void *ud);
typedef void (*http_done_cb)(struct http_req *req, enum http_end why, void *ud);
typedef void (*http_drain_cb)(struct http_req *req, void *ud);

struct http_server_opts {
    const char *host;        /* "127.0.0.1", "::1", "0.0.0.0", "::" */
    unsigned port;           /* 0 picks a free port */
    size_t max_body;         /* bigger bodies: handler sees too_large */
    size_t max_header;       /* request line + headers, bytes: else 431 */
    unsigned max_conns;      /* connections beyond it are closed at once */
    unsigned idle_timeout_s; /* 0 = none; not while a handler works on an
                                answer or a stream has nothing to send */
    size_t stream_max_queue; /* http_stream_write fails past this */
    http_handler_cb on_request;
    void *ud;
};

/* Binds and listens. NULL with a message in err ("127.0.0.1:11434:
 * Address already in use"). */
struct http_server *http_server_new(uv_loop_t *loop,
                                    const struct http_server_opts *o, char *err,
                                    size_t errlen);

/* The bound port (the real one when 0 was asked). */
unsigned http_server_port(const struct http_server *s);

/* Closes (false) or re-opens (true) the listening socket on the same
 * address and port: while closed, connects are refused by the kernel.
 * Connections already open are not affected. 0 or -errno. */
int http_server_listen(struct http_server *s, bool on);

/* Requests whose done callback has not fired yet. */
size_t http_server_active(const struct http_server *s);

/* Ends every open request (done callbacks with HTTP_END_SHUTDOWN, before
 * it returns; from inside one of the server's callbacks, once that
 * callback has returned), closes every connection and the uv handles,
 * and calls closed(ud) once all memory is released; the loop then has no
 * handle of ours. */
void http_server_free(struct http_server *s, void (*closed)(void *), void *ud);

/* --- the request ------------------------------------------------------ */

uint64_t http_req_id(const struct http_req *r);        /* unique, from 1 */
const char *http_req_method(const struct http_req *r); /* "GET", ... */
const char *http_req_path(const struct http_req *r);   /* no query string */
/* Case-insensitive; NULL when absent. */
const char *http_req_header(const struct http_req *r, const char *name);
/* Decoded query argument; NULL when absent. */
const char *http_req_query(const struct http_req *r, const char *name);
/* The body (NUL-terminated; may contain NULs); "" and 0 when none. */
const char *http_req_body(const struct http_req *r, size_t *len);
/* The body was larger than max_body: it was discarded, not buffered. */
bool http_req_too_large(const struct http_req *r);
/* "127.0.0.1" / "::1": the peer's address, without port. */
const char *http_req_peer(const struct http_req *r);

/* Per-request user pointer and callbacks. */
void http_req_set_data(struct http_req *r, void *data);
void *http_req_data(const struct http_req *r);
void http_req_on_done(struct http_req *r, http_done_cb cb, void *ud);

/* Adds a response header; before http_respond/http_stream_begin.
 * Content-Length and Transfer-Encoding are the server's (-EINVAL);
 * "Connection: close" closes the connection after the response. */
int http_set_header(struct http_req *r, const char *name, const char *value);

/* Sends a whole response (body copied; len 0 is an empty body) and ends
 * the request. ctype may be NULL (no Content-Type). To a HEAD request the
 * headers only, with the body's Content-Length. 0 or -errno. */
int http_respond(struct http_req *r, int status, const char *ctype,
                 const void *body, size_t len);

/* Starts a chunked response (close-delimited for an HTTP/1.0 client);
 * headers go out with the first flush. To a HEAD request the headers
 * only, and the request ends: later writes get -EPIPE. */
int http_stream_begin(struct http_req *r, int status, const char *ctype);
/* Queues bytes (copied) and wakes the connection: what a stream gets in
 * one turn of the loop goes out in one write. -E2BIG when the queue
 * would exceed stream_max_queue, -EPIPE when the request already ended. */
int http_stream_write(struct http_req *r, const void *p, size_t n);
/* Bytes queued but not yet handed to the socket. */
size_t http_stream_queued(const struct http_req *r);
/* Calls cb once the queue falls to low_water or less (backpressure). */
void http_stream_on_drain(struct http_req *r, size_t low_water,
                          http_drain_cb cb, void *ud);
/* Ends the stream after the queued bytes (terminating chunk). */
int http_stream_end(struct http_req *r);
/* Ends the stream abruptly: bytes still queued are dropped and the
 * connection is closed without the terminating chunk, so the client sees
 * a broken transfer. */
void http_stream_abort(struct http_req *r);

#endif /* HERD_HTTP_SERVER_H */
