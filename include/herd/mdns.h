/*
 * mdns.h - DNS-SD over mDNS (publish and browse) on the process's libuv
 * loop.
 *
 * Built on avahi-client, which talks to avahi-daemon over the D-Bus
 * system bus; only mdns.c includes avahi's headers. avahi is driven from
 * the caller's loop (uv_poll_t and uv_timer_t): no thread of ours, no
 * avahi threaded poll. Everything here runs on the loop thread and is not
 * thread-safe.
 *
 * A missing daemon is not an error: mdns_new() succeeds, logs one
 * warning, and keeps trying; what was published or browsed starts when
 * avahi-daemon appears, and again after it restarts. Built without avahi
 * (cmake -DHERD_WITH_AVAHI=OFF, or avahi-client missing), mdns_new()
 * returns NULL with the reason and the binaries run with explicit URLs.
 *
 * Callbacks (mdns_browse_cb) run on the loop, never from inside a
 * function of this module that the caller is still in. From a callback
 * the caller may call any function here, mdns_free() included.
 */
#ifndef HERD_MDNS_H
#define HERD_MDNS_H

#include <stddef.h>
#include <uv.h>

struct mdns;

/*
 * One resolved service instance. Every string is NUL-terminated, capped
 * (see MDNS_*_MAX), with control characters replaced by '?', and valid
 * only during the callback.
 */
struct mdns_service {
    const char *name;    /* instance name, "Fleet Manager Router" */
    const char *host;    /* SRV target, "box.local" */
    const char *addr;    /* IPv4 address, "192.168.1.20" */
    unsigned port;       /* SRV port */
    const char *version; /* TXT "version" value, "" when absent */
};

#define MDNS_NAME_MAX    64  /* bytes with the NUL (a DNS label) */
#define MDNS_HOST_MAX    256 /* bytes with the NUL */
#define MDNS_VERSION_MAX 64  /* bytes with the NUL; longer is truncated */

enum mdns_event { MDNS_FOUND, MDNS_LOST };

/*
 * MDNS_FOUND: an instance resolved; it comes again for the same name when
 * its host, address, port or version change (take it as an update).
 * MDNS_LOST: the instance left, or avahi-daemon went away (FOUND comes
 * again once it is back and the instance still there); s carries what
 * FOUND last said.
 */
typedef void (*mdns_browse_cb)(enum mdns_event ev, const struct mdns_service *s,
                               void *ud);

/*
 * NULL with a reason in err (may be NULL) only when built without avahi
 * ("built without mDNS support (HERD_WITH_AVAHI=OFF)") or out of memory.
 * A missing avahi-daemon or D-Bus system bus is not a failure: one
 * warning ("mDNS unavailable: avahi-daemon is not running (...); use
 * explicit URLs") and the module keeps trying.
 */
struct mdns *mdns_new(uv_loop_t *loop, char *err, size_t errlen);

/*
 * Publishes instance `name` (1..63 bytes) of `type` ("_fleet-manager._tcp")
 * on `port` (1..65535) of every interface, IPv4, with the TXT records
 * `txt` ("version=0.1.0", ..., NULL; may be NULL; each at most 255 bytes,
 * at most 32). Everything is copied. When the name is taken on the
 * network it is published under avahi's alternative ("name #2", ...), and
 * it is published again after a daemon restart. 0, -EINVAL on a bad
 * argument, -ENOMEM, -ENOTSUP without avahi.
 */
int mdns_publish(struct mdns *m, const char *name, const char *type,
                 unsigned port, const char *const *txt);

/*
 * The name the publication of (name, type) is established under ("name"
 * or, after a collision, "name #2"); NULL until the daemon confirmed it,
 * and while it is away. Valid until the next loop iteration.
 */
const char *mdns_published_name(const struct mdns *m, const char *name,
                                const char *type);

/*
 * Browses `type` on every interface, IPv4, and resolves each instance:
 * cb(MDNS_FOUND, s, ud) once it resolved, cb(MDNS_LOST, s, ud) when it
 * goes. An instance seen on several interfaces is reported once. At most
 * 256 instances per browse are followed (more are ignored, with a
 * warning). 0, -EINVAL, -ENOMEM, -ENOTSUP without avahi.
 */
int mdns_browse(struct mdns *m, const char *type, mdns_browse_cb cb, void *ud);

/*
 * Withdraws what was published, stops browsing (no callback runs after
 * this), closes everything and calls closed(ud) (may be NULL) once every
 * uv handle is closed: the loop then has no handle of ours. closed runs
 * from a later loop turn, never from inside mdns_free(), except with m
 * NULL (a build without avahi): then it is called at once.
 */
void mdns_free(struct mdns *m, void (*closed)(void *), void *ud);

/*
 * Test-only: the delay before reconnecting after the D-Bus system bus
 * could not be reached, first_ms doubling up to max_ms (defaults 1 s and
 * 30 s). Applies to mdns objects created afterwards.
 */
void mdns_set_retry_for_test(unsigned first_ms, unsigned max_ms);

#endif /* HERD_MDNS_H */
