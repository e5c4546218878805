/*
 * nhttp.h - herd-node's own HTTP/1.1 client: plain http:// on libuv.
 *
 * herd-node needs four GETs to the local Ollama and one POST to the
 * coordinator per heartbeat; libcurl (and the 40 shared libraries that
 * Debian's build of it pulls in) tripled the agent's resident memory for
 * that. This client speaks just enough HTTP/1.1: one request per
 * connection ("Connection: close"), names resolved with uv_getaddrinfo
 * ("localhost" and IP literals without a resolver), every address of a
 * name tried in turn, a Content-Length, chunked or close-delimited
 * response, caps on header and body bytes, a connect and a total timeout.
 * No TLS: an https:// URL is refused with a sentence saying so.
 *
 * Ownership: a client (struct nhttp) belongs to one loop and owns its
 * requests. A request is started with nhttp_start(), which copies
 * everything it is given; its on_done fires exactly once, from the loop
 * (never from inside nhttp_start), unless the request was cancelled
 * first. The response (status, headers, body) can be read during on_done
 * only: the request is freed once on_done returns, and the pointer is
 * dead from then on. Everything runs on the loop thread; any function
 * here may be called from any callback.
 */
#ifndef NODE_NHTTP_H
#define NODE_NHTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NHTTP_URL_MAX         2048    /* bytes of a URL */
#define NHTTP_HOST_MAX        256     /* bytes of a host name or literal */
#define NHTTP_MAX_HEADERS     64      /* response header lines kept */
#define NHTTP_MAX_ADDRS       8       /* addresses of a name tried */
#define NHTTP_CONNECT_DEFAULT 30000   /* ms, when connect_timeout_ms is 0 */
#define NHTTP_HEADER_DEFAULT  16384u  /* response header bytes when 0 */
#define NHTTP_BODY_DEFAULT    1048576 /* response body bytes when 0 */

struct nhttp;
struct nhttp_req;

/*
 * err: 0 when a whole response arrived, whatever its status; else
 * -ECONNREFUSED (no address of the host accepted the connection),
 * -ETIMEDOUT (connect or total timeout), -ECONNRESET (the peer closed or
 * reset the connection before the response was complete), -EPROTO (not
 * HTTP/1.x, or bad framing), -E2BIG (headers over max_header, body over
 * max_body), -EHOSTUNREACH (the name does not resolve, or no route),
 * -ENOMEM, or another -errno from the socket. errmsg: one sentence
 * naming the host ("" when err is 0). Both valid during the call only.
 */
typedef void (*nhttp_done_cb)(struct nhttp_req *r, int err, const char *errmsg,
                              void *ud);

struct nhttp_opts {
    const char *method;         /* "GET" when NULL; "HEAD" reads no body */
    const char *url;            /* "http://host[:port][/path][?query]";
                                   no scheme means http; port 80 */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or
                                   NULL; Host, Connection, Content-Length
                                   and Transfer-Encoding are ours */
    const void *body;           /* NULL: none (no Content-Length for GET) */
    size_t body_len;
    unsigned connect_timeout_ms; /* resolve + connect; 0: 30 s */
    unsigned total_timeout_ms;   /* the whole request; 0: none */
    size_t max_header;           /* response head bytes; 0: 16 KiB */
    size_t max_body;             /* response body bytes; 0: 1 MiB */
    nhttp_done_cb on_done;       /* required */
    void *ud;
};

/* A URL taken apart; host without brackets, authority as written. */
struct nhttp_url {
    char host[NHTTP_HOST_MAX];
    char authority[NHTTP_HOST_MAX + 8]; /* "host[:port]", for Host: */
    uint16_t port;
    const char *path; /* into the parsed string: "/..." or "" for "/" */
    size_t path_len;
};

/*
 * Splits url. 0, or -EINVAL / -ENOTSUP (https) with a sentence in err
 * (may be NULL). Refuses user info, empty hosts, bad ports, control
 * characters and spaces.
 */
int nhttp_parse_url(const char *url, struct nhttp_url *u, char *err,
                    size_t errlen);

/* Cannot fail but for memory (NULL). */
struct nhttp *nhttp_new(uv_loop_t *loop);

/*
 * Cancels every running request (no on_done), and calls closed(ud) (may
 * be NULL) once every handle is closed and all memory released: at once
 * when nothing is open, else from the loop. Safe from any callback,
 * on_done included; c is dead after.
 */
void nhttp_free(struct nhttp *c, void (*closed)(void *ud), void *ud);

/* Requests started and not yet done or cancelled. */
size_t nhttp_active(const struct nhttp *c);

/*
 * Starts a request; o and what it points to may be freed on return.
 * NULL with a sentence in err (may be NULL) when the options are invalid
 * (bad or https URL, bad header line, no on_done) or memory is short;
 * on_done is then never called.
 */
struct nhttp_req *nhttp_start(struct nhttp *c, const struct nhttp_opts *o,
                              char *err, size_t errlen);

/*
 * Aborts the request: on_done is not called, its socket is closed (the
 * memory goes once libuv has closed the handles). The pointer is dead on
 * return. A no-op from inside the request's own on_done.
 */
void nhttp_cancel(struct nhttp_req *r);

/* The final status (never 1xx); 0 before the headers arrived. */
int nhttp_status(const struct nhttp_req *r);

/* A response header by name, case-insensitive (the first of several);
 * NULL when absent. Valid during on_done. */
const char *nhttp_header(const struct nhttp_req *r, const char *name);

/* The body, NUL-terminated ("" when none). Valid during on_done. */
const char *nhttp_body(const struct nhttp_req *r, size_t *len);

#endif /* NODE_NHTTP_H */
