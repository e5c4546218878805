/*
 * http_client.h - outgoing HTTP calls on the process's libuv loop.
 *
 * Our own HTTP/1.1 client over uv_tcp_t (http_client.c; the design is in
 * docs/internals/http_client.md). Plain http:// only: no TLS, no proxies,
 * no HTTP/2. Connections are kept alive and reused per host:port (at most
 * 256 idle in all, each closed after 60 s idle); a request that finds a
 * reused connection closed by the server before any byte of its answer is
 * sent again, once, on a new connection. Everything here runs on the loop
 * thread and is not thread-safe. The process must ignore SIGPIPE (as any
 * program writing to libuv streams must).
 *
 * A call's life: http_call_start() returns it running. on_response fires
 * once the final response's headers are in (never for 1xx), on_data for
 * each piece of the body, and on_done exactly once at the end, unless the
 * call was cancelled first. The client frees the call after on_done
 * returns: the pointer is dead from then on.
 *
 * Re-entrancy: every callback runs from the loop, never from inside one
 * of the functions below (on_done is never called from inside
 * http_call_start, nor body bytes delivered from inside
 * http_call_resume), and every function here may be called from any
 * callback (of this module or another): cancelling the call whose on_data
 * is running, starting calls, freeing the client.
 */
#ifndef HERD_HTTP_CLIENT_H
#define HERD_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

struct http_client;
struct http_call;

/* on_data's return value that pauses the transfer (see on_data). */
#define HTTP_CALL_PAUSE 1

/* status: the final HTTP status (200, 404, ...). */
typedef void (*http_call_response_cb)(struct http_call *call, int status,
                                      void *ud);
/*
 * n > 0 bytes of the body. They are consumed whatever the return value:
 * 0 to go on, HTTP_CALL_PAUSE to stop the flow until http_call_resume():
 * the connection stops reading (the next bytes wait in the kernel, and
 * the server feels the backpressure); what was already read but not yet
 * delivered waits in the call. A paused call does not complete (no
 * on_done with err 0) before it is resumed; a failure, the total timeout
 * included, still ends it.
 */
typedef int (*http_call_data_cb)(struct http_call *call, const char *p,
                                 size_t n, void *ud);
/*
 * err: 0 when a whole response arrived (whatever its status), else
 * -ECONNREFUSED (connect failed), -ETIMEDOUT (connect or total timeout),
 * -ECONNRESET (the peer closed or broke the transfer, a truncated body
 * included), -EPROTO (not HTTP, bad framing), -E2BIG (over max_header or
 * max_body), -EHOSTUNREACH (name not resolved), -ENOMEM or -EIO.
 * errmsg: a human-readable reason ("" when err is 0). Both only valid
 * during the callback.
 */
typedef void (*http_call_done_cb)(struct http_call *call, int err,
                                  const char *errmsg, void *ud);

struct http_call_opts {
    const char *method;                /* "GET" when NULL; any token ("HEAD"
                                          sends no body back) */
    const char *url;                   /* "http://host:port/path?query" */
    const char *const *headers;        /* NULL-terminated "Name: value" lines,
                                          copied; may be NULL */
    const void *body;                  /* copied; NULL for none */
    size_t body_len;                   /* bytes of body */
    unsigned connect_timeout_ms;       /* resolve + connect; 0: 300 s; not
                                          used on a reused connection */
    unsigned total_timeout_ms;         /* 0: none; counts while paused too */
    size_t max_header;                 /* response header bytes; 0: 64 KiB */
    size_t max_body;                   /* response body bytes; 0: no cap when
                                          on_data is set, 8 MiB when buffered */
    http_call_response_cb on_response; /* may be NULL */
    /* NULL: the body is buffered, see http_call_body() */
    http_call_data_cb on_data;
    http_call_done_cb on_done; /* required */
    void *ud;                  /* passed to the callbacks */
};

/* NULL when out of memory. Holds two uv handles (a timer for every
 * deadline and an idle handle), neither of which keeps the loop alive
 * while no call is running; idle pooled connections do not either. */
struct http_client *http_client_new(uv_loop_t *loop);

/*
 * Cancels every running call (no on_done), closes every connection (the
 * pooled ones too) and the uv handles, and calls closed(ud) (may be NULL),
 * from the loop, once all memory is released and any name lookup still
 * in the thread pool has answered; the loop then has no handle of ours.
 * Safe from any callback; c is dead after.
 */
void http_client_free(struct http_client *c, void (*closed)(void *), void *ud);

/* Calls started and not yet done or cancelled. */
size_t http_client_active(const struct http_client *c);

/*
 * Starts a call; o and everything it points to may be freed on return.
 * NULL with a message in err (may be NULL) when the options are invalid:
 * no url or on_done, a scheme other than http:// (https:// included), a
 * bad host or port, user info in the URL, a bad method, a header line
 * that is not "Name: value" or holds CR/LF. on_done is then never called.
 * Request headers: Host, Content-Length (sent when there is a body, and
 * for POST/PUT/PATCH without one), Transfer-Encoding and Connection are
 * ours, so the caller's lines of those names are dropped, as is a line
 * with an empty value (curl's "Expect:" idiom: do not send it).
 * Everything found after that (connect refused, a name that does not
 * resolve, ...) comes through on_done, from the loop.
 */
struct http_call *http_call_start(struct http_client *c,
                                  const struct http_call_opts *o, char *err,
                                  size_t errlen);

/* Stops / restarts the flow of body bytes (backpressure); idempotent. */
void http_call_pause(struct http_call *call);
void http_call_resume(struct http_call *call);

/*
 * Aborts the call and frees it (now, or once the callback of this client
 * that is running returns); its connection is closed, not pooled, and
 * on_done is not called. The pointer is dead on return. A no-op from
 * inside the call's own on_done.
 */
void http_call_cancel(struct http_call *call);

/*
 * Whether http_call_start() would take url: 0, -EPROTONOSUPPORT for a
 * scheme other than http:// (https:// included), -EINVAL when it is
 * malformed; a sentence in err (may be NULL).
 */
int http_url_check(const char *url, char *err, size_t errlen);

/* The final status, 0 before on_response. */
int http_call_status(const struct http_call *call);

/*
 * A header of the final response, case-insensitive name; NULL when
 * absent. Valid until on_done returns.
 */
const char *http_call_header(const struct http_call *call, const char *name);

/*
 * The buffered body (on_data NULL), NUL-terminated; "" and 0 otherwise.
 * Valid until on_done returns.
 */
const char *http_call_body(const struct http_call *call, size_t *len);

#endif /* HERD_HTTP_CLIENT_H */
