/*
 * mdns.c - DNS-SD publish and browse with avahi-client on the libuv loop.
 *
 * avahi-client talks to avahi-daemon over D-Bus; it asks its host program
 * for file descriptor watches and timeouts through an AvahiPoll. Ours maps
 * them onto the caller's loop:
 * - AvahiWatch -> struct mdns_fd, one uv_poll_t per descriptor. libdbus
 *   watches its one socket with two watches (read, write), and libuv
 *   allows one poll handle per descriptor, so the poll watches the union
 *   of what the live watches of that fd want and its callback hands each
 *   watch its share of the events.
 * - AvahiTimeout -> a uv_timer_t, armed from avahi's absolute
 *   gettimeofday() deadline.
 * avahi allows a watch or a timeout to be freed from inside any callback;
 * a watch freed during a dispatch stays allocated (dead) until the
 * outermost dispatch returns (mdns_leave), and every uv handle's memory
 * goes in its close callback.
 *
 * Above that, one AvahiClient created with AVAHI_CLIENT_NO_FAIL: it waits
 * (CONNECTING) for a daemon that is not running yet. When the daemon goes
 * away the client fails with AVAHI_ERR_DISCONNECTED; we then drop every
 * entry group, browser and resolver, report the instances we had found as
 * lost, and build a new client from the retry timer (never inside the
 * client's own callback). When not even the D-Bus system bus can be
 * reached, avahi_client_new() fails and the retry timer tries again with
 * a growing delay. Publications and browses are ours, not avahi's: they
 * live in struct mdns_pub / struct mdns_browse and are (re)started each
 * time a client reaches the running state.
 *
 * Without avahi (HERD_WITH_AVAHI undefined) this file is a stub whose
 * mdns_new() says why it cannot work.
 */
#include "herd/mdns.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd/log.h"

#ifdef HERD_WITH_AVAHI

#include <stdint.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/address.h>
#include <avahi-common/alternative.h>
#include <avahi-common/domain.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/watch.h>

#define MDNS_TYPE_MAX      128 /* service type, bytes with the NUL */
#define MDNS_DOMAIN_MAX    256 /* browse domain, bytes with the NUL */
#define MDNS_ADDR_MAX      AVAHI_ADDRESS_STR_MAX
#define MDNS_TXT_MAX       32  /* TXT strings per publication */
#define MDNS_TXT_LEN_MAX   255 /* bytes in one TXT string (DNS limit) */
#define MDNS_INSTANCES_MAX 256 /* instances followed per browse */
#define MDNS_SIGHTS_MAX    16  /* interfaces an instance is followed on */
#define MDNS_RENAMES_MAX   32  /* collisions in a row before giving up */

#define MDNS_DEFAULT_BUS "unix:path=/run/dbus/system_bus_socket"

static unsigned mdns_retry_first_ms = 1000;
static unsigned mdns_retry_max_ms = 30000;

/* What one resolution of an instance said. */
struct mdns_rec {
    char host[MDNS_HOST_MAX];
    char addr[MDNS_ADDR_MAX];
    unsigned port;
    char version[MDNS_VERSION_MAX];
};

/* An instance as seen on one interface, with its resolver. */
struct mdns_sight {
    TAILQ_ENTRY(mdns_sight) link; /* in inst->sights */
    struct mdns_inst *inst;       /* borrowed: the owner */
    AvahiIfIndex ifindex;
    AvahiProtocol proto;
    AvahiServiceResolver *r; /* owned; NULL once resolving failed */
    bool resolved;           /* rec is valid */
    struct mdns_rec rec;
};

/* One instance name of a browse, whatever the interfaces it is on. */
struct mdns_inst {
    TAILQ_ENTRY(mdns_inst) link;     /* in b->insts */
    struct mdns_browse *b;           /* borrowed: the owner */
    TAILQ_HEAD(, mdns_sight) sights; /* owned */
    unsigned nsights;
    struct mdns_sight *primary; /* borrowed: whose rec FOUND reported */
    bool found;                 /* FOUND was reported, LOST not yet */
    struct mdns_rec shown;      /* what FOUND reported */
    char name[MDNS_NAME_MAX];
    char domain[MDNS_DOMAIN_MAX];
};

struct mdns_browse {
    TAILQ_ENTRY(mdns_browse) link; /* in m->browses */
    struct mdns *m;                /* borrowed */
    AvahiServiceBrowser *sb;       /* owned; NULL while disconnected */
    TAILQ_HEAD(, mdns_inst) insts; /* owned */
    unsigned ninsts;
    bool warned_full;
    mdns_browse_cb cb;
    void *ud;
    char type[MDNS_TYPE_MAX];
};

struct mdns_pub {
    TAILQ_ENTRY(mdns_pub) link; /* in m->pubs */
    struct mdns *m;             /* borrowed */
    AvahiEntryGroup *group;     /* owned; NULL while disconnected */
    AvahiStringList *txt;       /* owned */
    unsigned port;
    unsigned renames;         /* collisions since the last establishment */
    bool established;         /* the daemon confirmed `name` */
    bool gave_up;             /* too many collisions: not published */
    char want[MDNS_NAME_MAX]; /* as asked */
    char name[MDNS_NAME_MAX]; /* as published (after collisions) */
    char type[MDNS_TYPE_MAX];
};

/* One uv_poll_t per descriptor avahi watches; see the top comment. */
struct mdns_fd {
    LIST_ENTRY(mdns_fd) link; /* in m->fds until it closes */
    struct mdns *m;           /* borrowed */
    uv_poll_t poll;
    int fd;         /* libdbus's; closed by libdbus after watch_free */
    int uv_events;  /* what the poll watches now; 0 when stopped */
    unsigned nlive; /* live watches on this fd */
    bool closing;
};

/* avahi's opaque watch type, defined by the poll provider. */
struct AvahiWatch {
    LIST_ENTRY(AvahiWatch) link; /* in m->watches until freed */
    struct mdns *m;              /* borrowed */
    struct mdns_fd *f;           /* borrowed; NULL once dead */
    AvahiWatchEvent events;      /* wanted */
    AvahiWatchEvent revents;     /* while its callback runs */
    AvahiWatchCallback cb;
    void *ud;
    unsigned gen; /* m->gen when created: not called in that dispatch */
    bool dead;    /* freed by avahi, memory kept until mdns_leave */
};

/* avahi's opaque timeout type, defined by the poll provider. */
struct AvahiTimeout {
    uv_timer_t timer; /* .data = this; memory goes in its close cb */
    struct mdns *m;   /* borrowed */
    AvahiTimeoutCallback cb;
    void *ud;
};

struct mdns {
    uv_loop_t *loop;             /* borrowed */
    AvahiPoll api;               /* .userdata = this */
    AvahiClient *client;         /* owned; NULL while the bus is unreachable */
    uv_timer_t retry;            /* builds a new client */
    unsigned retry_ms;           /* next delay after an unreachable bus */
    TAILQ_HEAD(, mdns_pub) pubs; /* owned */
    TAILQ_HEAD(, mdns_browse) browses; /* owned */
    LIST_HEAD(, AvahiWatch) watches;   /* owned, dead ones included */
    LIST_HEAD(, mdns_fd) fds;          /* owned, closing ones excluded */
    unsigned handles; /* uv handles whose close callback is to come */
    unsigned depth;   /* inside a dispatch: defer frees */
    unsigned gen;     /* dispatch counter, see AvahiWatch.gen */
    bool up;          /* the client reached a server state */
    bool warned;      /* the unavailability was logged */
    bool freeing;
    bool free_pending; /* mdns_free() from a callback: at mdns_leave */
    void (*closed)(void *);
    void *closed_ud;
};

static void mdns_do_free(struct mdns *m);

/* --- helpers --------------------------------------------------------- */

/*
 * Copies at most n bytes of src, and at most cap - 1, into dst, always
 * NUL-terminated, without splitting a UTF-8 sequence, with control
 * characters replaced by '?': peers choose these bytes and they end up
 * in our logs.
 */
static void
mdns_copy(char *dst, size_t cap, const char *src, size_t n)
{
    size_t i;

    n = strnlen(src, n);
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];

        dst[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    dst[n] = '\0';
}

static bool
mdns_rec_equal(const struct mdns_rec *a, const struct mdns_rec *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0 &&
           strcmp(a->addr, b->addr) == 0 && strcmp(a->version, b->version) == 0;
}

/* One of our uv handles finished closing; the last one frees m. */
static void
mdns_handle_done(struct mdns *m)
{
    void (*closed)(void *);
    void *ud;

    if (--m->handles > 0 || !m->freeing)
        return;
    closed = m->closed;
    ud = m->closed_ud;
    free(m);
    if (closed != NULL)
        closed(ud);
}

static void
mdns_retry_on_closed(uv_handle_t *h)
{
    mdns_handle_done(h->data);
}

static void
mdns_purge_watches(struct mdns *m)
{
    struct AvahiWatch *w, *next;

    for (w = LIST_FIRST(&m->watches); w != NULL; w = next) {
        next = LIST_NEXT(w, link);
        if (w->dead) {
            LIST_REMOVE(w, link);
            free(w);
        }
    }
}

/* Brackets every call into avahi from the loop (a dispatch). */
static void
mdns_enter(struct mdns *m)
{
    m->depth++;
}

static void
mdns_leave(struct mdns *m)
{
    if (--m->depth > 0)
        return;
    mdns_purge_watches(m);
    if (m->free_pending) {
        m->free_pending = false;
        mdns_do_free(m);
    }
}

/* --- AvahiPoll: watches ---------------------------------------------- */

static void mdns_fd_on_poll(uv_poll_t *h, int status, int events);

static void
mdns_fd_on_closed(uv_handle_t *h)
{
    struct mdns_fd *f = h->data;
    struct mdns *m = f->m;

    free(f);
    mdns_handle_done(m);
}

/* Points the poll at the union of what the fd's live watches want. */
static void
mdns_fd_update(struct mdns_fd *f)
{
    struct AvahiWatch *w;
    int want = 0;
    int rc;

    LIST_FOREACH(w, &f->m->watches, link)
    {
        if (w->f != f)
            continue;
        if (w->events & AVAHI_WATCH_IN)
            want |= UV_READABLE;
        if (w->events & AVAHI_WATCH_OUT)
            want |= UV_WRITABLE;
    }
    if (want == f->uv_events)
        return;
    if (want == 0) {
        uv_poll_stop(&f->poll);
    } else {
        rc = uv_poll_start(&f->poll, want, mdns_fd_on_poll);
        if (rc != 0) {
            log_warn("mDNS: cannot watch fd %d: %s", f->fd, uv_strerror(rc));
            want = 0;
        }
    }
    f->uv_events = want;
}

static struct mdns_fd *
mdns_fd_get(struct mdns *m, int fd)
{
    struct mdns_fd *f;
    int rc;

    LIST_FOREACH(f, &m->fds, link)
    {
        if (f->fd == fd)
            return f;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    rc = uv_poll_init(m->loop, &f->poll, fd);
    if (rc != 0) {
        log_warn("mDNS: cannot watch fd %d: %s", fd, uv_strerror(rc));
        free(f);
        return NULL;
    }
    f->poll.data = f;
    f->m = m;
    f->fd = fd;
    m->handles++;
    LIST_INSERT_HEAD(&m->fds, f, link);
    return f;
}

/* The last watch is gone: libdbus is about to close the descriptor. */
static void
mdns_fd_release(struct mdns_fd *f)
{
    f->closing = true;
    LIST_REMOVE(f, link);
    uv_close((uv_handle_t *)&f->poll, mdns_fd_on_closed);
}

static void
mdns_fd_on_poll(uv_poll_t *h, int status, int events)
{
    struct mdns_fd *f = h->data;
    struct mdns *m = f->m;
    struct AvahiWatch *w;
    AvahiWatchEvent rev = 0;
    unsigned gen;

    if (status < 0) {
        rev = AVAHI_WATCH_ERR;
        f->uv_events = 0; /* libuv stopped the poll */
    } else {
        if (events & UV_READABLE)
            rev |= AVAHI_WATCH_IN;
        if (events & UV_WRITABLE)
            rev |= AVAHI_WATCH_OUT;
        if (events & UV_DISCONNECT)
            rev |= AVAHI_WATCH_HUP;
    }
    mdns_enter(m);
    gen = ++m->gen;
    /* Watches freed meanwhile stay in the list (dead) until mdns_leave;
     * watches created meanwhile are skipped by their generation. */
    LIST_FOREACH(w, &m->watches, link)
    {
        AvahiWatchEvent mine;

        if (w->dead || w->f != f || w->gen == gen)
            continue;
        mine = rev & (w->events | AVAHI_WATCH_ERR | AVAHI_WATCH_HUP);
        if (mine == 0)
            continue;
        w->revents = mine;
        w->cb(w, f->fd, mine, w->ud);
        w->revents = 0;
    }
    if (!f->closing)
        mdns_fd_update(f); /* restarts the poll after an error */
    mdns_leave(m);
}

/*
 * avahi's D-Bus glue passes libdbus flags to watch_update, where
 * DBUS_WATCH_WRITABLE (2) is POLLPRI; avahi never asks for POLLPRI, so
 * both encodings are accepted.
 */
static AvahiWatchEvent
mdns_watch_mask(AvahiWatchEvent ev)
{
    AvahiWatchEvent out = ev & (AVAHI_WATCH_IN | AVAHI_WATCH_OUT);

    if (ev & POLLPRI)
        out |= AVAHI_WATCH_OUT;
    return out;
}

static AvahiWatch *
mdns_watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent ev,
               AvahiWatchCallback cb, void *ud)
{
    struct mdns *m = api->userdata;
    struct AvahiWatch *w;
    struct mdns_fd *f;

    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    f = mdns_fd_get(m, fd);
    if (f == NULL) {
        free(w);
        return NULL;
    }
    w->m = m;
    w->f = f;
    w->events = mdns_watch_mask(ev);
    w->cb = cb;
    w->ud = ud;
    w->gen = m->gen;
    LIST_INSERT_HEAD(&m->watches, w, link);
    f->nlive++;
    mdns_fd_update(f);
    return w;
}

static void
mdns_watch_update(AvahiWatch *w, AvahiWatchEvent ev)
{
    w->events = mdns_watch_mask(ev);
    if (!w->dead)
        mdns_fd_update(w->f);
}

static AvahiWatchEvent
mdns_watch_get_events(AvahiWatch *w)
{
    return w->revents;
}

static void
mdns_watch_free(AvahiWatch *w)
{
    struct mdns *m = w->m;
    struct mdns_fd *f = w->f;

    if (w->dead)
        return;
    w->dead = true;
    w->f = NULL;
    if (--f->nlive == 0)
        mdns_fd_release(f);
    else
        mdns_fd_update(f);
    if (m->depth == 0) {
        LIST_REMOVE(w, link);
        free(w);
    }
}

/* --- AvahiPoll: timeouts --------------------------------------------- */

static void
mdns_timeout_on_timer(uv_timer_t *h)
{
    struct AvahiTimeout *t = h->data;
    struct mdns *m = t->m;

    mdns_enter(m);
    t->cb(t, t->ud); /* may free t: its memory stays until close */
    mdns_leave(m);
}

/* tv: avahi's absolute gettimeofday() deadline; NULL disarms. */
static void
mdns_timeout_arm(struct AvahiTimeout *t, const struct timeval *tv)
{
    struct timeval now;
    int64_t us;
    uint64_t ms = 0;

    if (tv == NULL) {
        uv_timer_stop(&t->timer);
        return;
    }
    gettimeofday(&now, NULL);
    us = ((int64_t)tv->tv_sec - now.tv_sec) * 1000000 +
         ((int64_t)tv->tv_usec - now.tv_usec);
    if (us > 0)
        ms = ((uint64_t)us + 999) / 1000;
    uv_timer_start(&t->timer, mdns_timeout_on_timer, ms, 0);
}

static AvahiTimeout *
mdns_timeout_new(const AvahiPoll *api, const struct timeval *tv,
                 AvahiTimeoutCallback cb, void *ud)
{
    struct mdns *m = api->userdata;
    struct AvahiTimeout *t;

    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    uv_timer_init(m->loop, &t->timer);
    t->timer.data = t;
    t->m = m;
    t->cb = cb;
    t->ud = ud;
    m->handles++;
    mdns_timeout_arm(t, tv);
    return t;
}

static void
mdns_timeout_update(AvahiTimeout *t, const struct timeval *tv)
{
    mdns_timeout_arm(t, tv);
}

static void
mdns_timeout_on_closed(uv_handle_t *h)
{
    struct AvahiTimeout *t = h->data;
    struct mdns *m = t->m;

    free(t);
    mdns_handle_done(m);
}

static void
mdns_timeout_free(AvahiTimeout *t)
{
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, mdns_timeout_on_closed);
}

/* --- publishing ------------------------------------------------------ */

static void mdns_pub_register(struct mdns_pub *p);

static bool
mdns_client_running(const struct mdns *m)
{
    return m->client != NULL &&
           avahi_client_get_state(m->client) == AVAHI_CLIENT_S_RUNNING;
}

/* Connected to a daemon (browsing works, publishing maybe not yet). */
static bool
mdns_client_connected(const struct mdns *m)
{
    AvahiClientState st;

    if (m->client == NULL)
        return false;
    st = avahi_client_get_state(m->client);
    return st == AVAHI_CLIENT_S_RUNNING || st == AVAHI_CLIENT_S_REGISTERING ||
           st == AVAHI_CLIENT_S_COLLISION;
}

static const char *
mdns_client_error(const struct mdns *m)
{
    if (m->client == NULL)
        return "no client";
    return avahi_strerror(avahi_client_errno(m->client));
}

/* Moves to avahi's alternative name ("name #2"); false past the cap. */
static bool
mdns_pub_rename(struct mdns_pub *p)
{
    char *alt;

    if (++p->renames > MDNS_RENAMES_MAX) {
        log_warn("mDNS: gave up publishing \"%s\" (%s): %u names in a row "
                 "were taken",
                 p->want, p->type, MDNS_RENAMES_MAX);
        p->gave_up = true;
        return false;
    }
    alt = avahi_alternative_service_name(p->name);
    if (alt == NULL) {
        log_warn("mDNS: out of memory renaming \"%s\"", p->name);
        p->gave_up = true;
        return false;
    }
    log_warn("mDNS: service name \"%s\" (%s) is taken; publishing as \"%s\"",
             p->name, p->type, alt);
    mdns_copy(p->name, sizeof(p->name), alt, strlen(alt));
    avahi_free(alt);
    return true;
}

static void
mdns_on_group(AvahiEntryGroup *g, AvahiEntryGroupState state, void *ud)
{
    struct mdns_pub *p = ud;

    p->group = g; /* also runs inside avahi_entry_group_new() */
    switch (state) {
    case AVAHI_ENTRY_GROUP_ESTABLISHED:
        p->established = true;
        p->renames = 0;
        log_info("mDNS: publishing \"%s\" (%s) on port %u", p->name, p->type,
                 p->port);
        break;
    case AVAHI_ENTRY_GROUP_COLLISION:
        p->established = false;
        if (mdns_pub_rename(p)) {
            avahi_entry_group_reset(g);
            mdns_pub_register(p);
        }
        break;
    case AVAHI_ENTRY_GROUP_FAILURE:
        p->established = false;
        log_warn("mDNS: publishing \"%s\" (%s) failed: %s", p->name, p->type,
                 mdns_client_error(p->m));
        break;
    case AVAHI_ENTRY_GROUP_UNCOMMITED:
    case AVAHI_ENTRY_GROUP_REGISTERING:
        p->established = false;
        break;
    }
}

/* Adds the service to the (empty) group, renaming on a local clash. */
static int
mdns_pub_add(struct mdns_pub *p)
{
    int rc;

    for (;;) {
        rc = avahi_entry_group_add_service_strlst(
            p->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET, 0, p->name, p->type,
            NULL, NULL, (uint16_t)p->port, p->txt);
        if (rc != AVAHI_ERR_COLLISION)
            return rc;
        if (!mdns_pub_rename(p))
            return AVAHI_ERR_COLLISION;
    }
}

static void
mdns_pub_register(struct mdns_pub *p)
{
    struct mdns *m = p->m;
    int rc;

    if (p->gave_up || !mdns_client_running(m))
        return;
    if (p->group == NULL) {
        p->group = avahi_entry_group_new(m->client, mdns_on_group, p);
        if (p->group == NULL) {
            log_warn("mDNS: cannot publish \"%s\" (%s): %s", p->name, p->type,
                     mdns_client_error(m));
            return;
        }
    }
    if (!avahi_entry_group_is_empty(p->group))
        return;
    rc = mdns_pub_add(p);
    if (rc == AVAHI_OK)
        rc = avahi_entry_group_commit(p->group);
    if (rc != AVAHI_OK) {
        if (!p->gave_up)
            log_warn("mDNS: cannot publish \"%s\" (%s): %s", p->name, p->type,
                     avahi_strerror(rc));
        return;
    }
    log_trace(TRACE_MDNS, "mDNS: registering \"%s\" (%s) on port %u", p->name,
              p->type, p->port);
}

static void
mdns_pub_drop_group(struct mdns_pub *p)
{
    if (p->group != NULL)
        avahi_entry_group_free(p->group);
    p->group = NULL;
    p->established = false;
}

static void
mdns_pub_destroy(struct mdns_pub *p)
{
    mdns_pub_drop_group(p);
    avahi_string_list_free(p->txt);
    free(p);
}

/* --- browsing -------------------------------------------------------- */

static void
mdns_report(struct mdns_inst *inst, enum mdns_event ev)
{
    struct mdns_browse *b = inst->b;
    struct mdns_service s = {
        .name = inst->name,
        .host = inst->shown.host,
        .addr = inst->shown.addr,
        .port = inst->shown.port,
        .version = inst->shown.version,
    };

    if (b->m->freeing)
        return;
    log_trace(TRACE_MDNS, "mDNS: %s \"%s\" (%s) at %s:%u version \"%s\"",
              ev == MDNS_FOUND ? "found" : "lost", s.name, b->type, s.addr,
              s.port, s.version);
    b->cb(ev, &s, b->ud);
}

/* Reports the primary sighting's record when it is new or changed. */
static void
mdns_inst_update(struct mdns_inst *inst)
{
    struct mdns_sight *s, *best = NULL;

    if (inst->primary != NULL && inst->primary->resolved) {
        best = inst->primary;
    } else {
        TAILQ_FOREACH(s, &inst->sights, link)
        {
            if (s->resolved) {
                best = s;
                break;
            }
        }
    }
    inst->primary = best;
    if (best == NULL)
        return;
    if (inst->found && mdns_rec_equal(&inst->shown, &best->rec))
        return;
    inst->shown = best->rec;
    inst->found = true;
    mdns_report(inst, MDNS_FOUND);
}

/* The value of the first "version" key (case-insensitive), or "". */
static void
mdns_txt_version(AvahiStringList *txt, char *out, size_t cap)
{
    out[0] = '\0';
    for (; txt != NULL; txt = avahi_string_list_get_next(txt)) {
        const char *t = (const char *)avahi_string_list_get_text(txt);
        size_t n = avahi_string_list_get_size(txt);

        if (n < 7 || strncasecmp(t, "version", 7) != 0)
            continue;
        if (n == 7)
            return;
        if (t[7] != '=')
            continue;
        mdns_copy(out, cap, t + 8, n - 8);
        return;
    }
}

static void
mdns_on_resolve(AvahiServiceResolver *r, AvahiIfIndex ifindex,
                AvahiProtocol proto, AvahiResolverEvent ev, const char *name,
                const char *type, const char *domain, const char *host,
                const AvahiAddress *a, uint16_t port, AvahiStringList *txt,
                AvahiLookupResultFlags flags, void *ud)
{
    struct mdns_sight *s = ud;
    struct mdns_rec *rec = &s->rec;

    (void)ifindex;
    (void)proto;
    (void)name;
    (void)type;
    (void)domain;
    (void)flags;
    if (ev != AVAHI_RESOLVER_FOUND || a == NULL ||
        a->proto != AVAHI_PROTO_INET) {
        log_trace(TRACE_MDNS, "mDNS: cannot resolve \"%s\" on interface %d: %s",
                  s->inst->name, (int)s->ifindex,
                  mdns_client_error(s->inst->b->m));
        avahi_service_resolver_free(r);
        s->r = NULL;
        s->resolved = false;
        mdns_inst_update(s->inst);
        return;
    }
    mdns_copy(rec->host, sizeof(rec->host), host, SIZE_MAX);
    avahi_address_snprint(rec->addr, sizeof(rec->addr), a);
    rec->port = port;
    mdns_txt_version(txt, rec->version, sizeof(rec->version));
    s->resolved = true;
    mdns_inst_update(s->inst);
}

static struct mdns_inst *
mdns_inst_find(struct mdns_browse *b, const char *name, const char *domain)
{
    struct mdns_inst *inst;

    TAILQ_FOREACH(inst, &b->insts, link)
    {
        if (strcasecmp(inst->name, name) == 0 &&
            strcasecmp(inst->domain, domain) == 0)
            return inst;
    }
    return NULL;
}

static struct mdns_inst *
mdns_inst_new(struct mdns_browse *b, const char *name, const char *domain)
{
    struct mdns_inst *inst;

    if (strlen(name) >= MDNS_NAME_MAX || strlen(domain) >= MDNS_DOMAIN_MAX)
        return NULL;
    if (b->ninsts >= MDNS_INSTANCES_MAX) {
        if (!b->warned_full)
            log_warn("mDNS: more than %d instances of %s: ignoring the rest",
                     MDNS_INSTANCES_MAX, b->type);
        b->warned_full = true;
        return NULL;
    }
    inst = calloc(1, sizeof(*inst));
    if (inst == NULL)
        return NULL;
    inst->b = b;
    TAILQ_INIT(&inst->sights);
    mdns_copy(inst->name, sizeof(inst->name), name, SIZE_MAX);
    mdns_copy(inst->domain, sizeof(inst->domain), domain, SIZE_MAX);
    TAILQ_INSERT_TAIL(&b->insts, inst, link);
    b->ninsts++;
    return inst;
}

static struct mdns_sight *
mdns_sight_find(struct mdns_inst *inst, AvahiIfIndex ifindex,
                AvahiProtocol proto)
{
    struct mdns_sight *s;

    TAILQ_FOREACH(s, &inst->sights, link)
    {
        if (s->ifindex == ifindex && s->proto == proto)
            return s;
    }
    return NULL;
}

static void
mdns_inst_destroy(struct mdns_inst *inst)
{
    struct mdns_sight *s;

    while ((s = TAILQ_FIRST(&inst->sights)) != NULL) {
        TAILQ_REMOVE(&inst->sights, s, link);
        if (s->r != NULL)
            avahi_service_resolver_free(s->r);
        free(s);
    }
    TAILQ_REMOVE(&inst->b->insts, inst, link);
    inst->b->ninsts--;
    free(inst);
}

static void
mdns_sight_add(struct mdns_browse *b, AvahiIfIndex ifindex, AvahiProtocol proto,
               const char *name, const char *domain)
{
    struct mdns_inst *inst = mdns_inst_find(b, name, domain);
    struct mdns_sight *s;

    if (inst == NULL)
        inst = mdns_inst_new(b, name, domain);
    if (inst == NULL || mdns_sight_find(inst, ifindex, proto) != NULL ||
        inst->nsights >= MDNS_SIGHTS_MAX)
        return;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    s->inst = inst;
    s->ifindex = ifindex;
    s->proto = proto;
    s->r = avahi_service_resolver_new(b->m->client, ifindex, proto, name,
                                      b->type, domain, AVAHI_PROTO_INET, 0,
                                      mdns_on_resolve, s);
    if (s->r == NULL)
        log_trace(TRACE_MDNS, "mDNS: cannot resolve \"%s\": %s", inst->name,
                  mdns_client_error(b->m));
    TAILQ_INSERT_TAIL(&inst->sights, s, link);
    inst->nsights++;
    log_trace(TRACE_MDNS, "mDNS: \"%s\" (%s) seen on interface %d", inst->name,
              b->type, (int)ifindex);
out:
    if (inst->nsights == 0)
        mdns_inst_destroy(inst);
}

static void
mdns_sight_remove(struct mdns_browse *b, AvahiIfIndex ifindex,
                  AvahiProtocol proto, const char *name, const char *domain)
{
    struct mdns_inst *inst = mdns_inst_find(b, name, domain);
    struct mdns_sight *s;

    if (inst == NULL)
        return;
    s = mdns_sight_find(inst, ifindex, proto);
    if (s == NULL)
        return;
    TAILQ_REMOVE(&inst->sights, s, link);
    inst->nsights--;
    if (inst->primary == s)
        inst->primary = NULL;
    if (s->r != NULL)
        avahi_service_resolver_free(s->r);
    free(s);
    log_trace(TRACE_MDNS, "mDNS: \"%s\" (%s) gone from interface %d",
              inst->name, b->type, (int)ifindex);
    if (inst->nsights > 0) {
        mdns_inst_update(inst);
        return;
    }
    if (inst->found)
        mdns_report(inst, MDNS_LOST);
    mdns_inst_destroy(inst);
}

static void
mdns_on_browse(AvahiServiceBrowser *sb, AvahiIfIndex ifindex,
               AvahiProtocol proto, AvahiBrowserEvent ev, const char *name,
               const char *type, const char *domain,
               AvahiLookupResultFlags flags, void *ud)
{
    struct mdns_browse *b = ud;

    (void)sb;
    (void)type;
    (void)flags;
    switch (ev) {
    case AVAHI_BROWSER_NEW:
        mdns_sight_add(b, ifindex, proto, name, domain);
        break;
    case AVAHI_BROWSER_REMOVE:
        mdns_sight_remove(b, ifindex, proto, name, domain);
        break;
    case AVAHI_BROWSER_FAILURE:
        log_warn("mDNS: browsing %s failed: %s", b->type,
                 mdns_client_error(b->m));
        break;
    case AVAHI_BROWSER_CACHE_EXHAUSTED:
    case AVAHI_BROWSER_ALL_FOR_NOW:
        log_trace(TRACE_MDNS, "mDNS: browsing %s: %s", b->type,
                  ev == AVAHI_BROWSER_ALL_FOR_NOW ? "all for now"
                                                  : "cache exhausted");
        break;
    }
}

static void
mdns_browse_start(struct mdns_browse *b)
{
    struct mdns *m = b->m;

    if (b->sb != NULL || !mdns_client_connected(m))
        return;
    b->sb =
        avahi_service_browser_new(m->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_INET,
                                  b->type, NULL, 0, mdns_on_browse, b);
    if (b->sb == NULL)
        log_warn("mDNS: cannot browse %s: %s", b->type, mdns_client_error(m));
}

/* Forgets every instance (reporting LOST for found ones when report). */
static void
mdns_browse_stop(struct mdns_browse *b, bool report)
{
    struct mdns_inst *inst;

    while ((inst = TAILQ_FIRST(&b->insts)) != NULL) {
        if (report && inst->found)
            mdns_report(inst, MDNS_LOST);
        mdns_inst_destroy(inst);
    }
    if (b->sb != NULL)
        avahi_service_browser_free(b->sb);
    b->sb = NULL;
}

/* --- the client ------------------------------------------------------ */

/* Drops every avahi object but the client itself. */
static void
mdns_forget(struct mdns *m, bool report)
{
    struct mdns_pub *p;
    struct mdns_browse *b;

    TAILQ_FOREACH(p, &m->pubs, link)
    {
        mdns_pub_drop_group(p);
    }
    TAILQ_FOREACH(b, &m->browses, link)
    {
        mdns_browse_stop(b, report);
    }
}

static void
mdns_unavailable(struct mdns *m, const char *why)
{
    if (m->warned) {
        log_trace(TRACE_MDNS, "mDNS: still unavailable (%s)", why);
        return;
    }
    log_warn("mDNS unavailable: avahi-daemon is not running (%s); use "
             "explicit URLs",
             why);
    m->warned = true;
}

/* The client reached a server state. */
static void
mdns_set_up(struct mdns *m)
{
    if (!m->up)
        log_info("mDNS: connected to avahi-daemon");
    m->up = true;
    m->warned = false;
    m->retry_ms = mdns_retry_first_ms;
}

static void
mdns_on_running(struct mdns *m)
{
    struct mdns_pub *p;
    struct mdns_browse *b;

    mdns_set_up(m);
    TAILQ_FOREACH(p, &m->pubs, link)
    {
        mdns_pub_register(p);
    }
    TAILQ_FOREACH(b, &m->browses, link)
    {
        mdns_browse_start(b);
    }
}

/* Host name being (re)registered: withdraw until RUNNING again. */
static void
mdns_on_registering(struct mdns *m)
{
    struct mdns_pub *p;
    struct mdns_browse *b;

    mdns_set_up(m);
    TAILQ_FOREACH(p, &m->pubs, link)
    {
        if (p->group != NULL)
            avahi_entry_group_reset(p->group);
        p->established = false;
    }
    TAILQ_FOREACH(b, &m->browses, link)
    {
        mdns_browse_start(b);
    }
}

static void mdns_on_retry(uv_timer_t *h);

/* A new client after the current delay, which doubles up to the cap. */
static void
mdns_retry_later(struct mdns *m)
{
    uv_timer_start(&m->retry, mdns_on_retry, m->retry_ms, 0);
    m->retry_ms = m->retry_ms > mdns_retry_max_ms / 2 ? mdns_retry_max_ms
                                                      : m->retry_ms * 2;
}

static void
mdns_on_failure(struct mdns *m, int err)
{
    bool was_up = m->up;

    m->up = false;
    mdns_forget(m, true);
    if (err == AVAHI_ERR_DISCONNECTED && was_up) {
        if (!m->warned)
            log_warn("mDNS: lost avahi-daemon (%s); publishing and browsing "
                     "resume when it is back",
                     avahi_strerror(err));
        m->warned = true;
        uv_timer_start(&m->retry, mdns_on_retry, 0, 0);
        return;
    }
    mdns_unavailable(m, avahi_strerror(err));
    mdns_retry_later(m);
}

static void
mdns_on_client(AvahiClient *c, AvahiClientState state, void *ud)
{
    struct mdns *m = ud;

    m->client = c; /* also runs inside avahi_client_new() */
    log_trace(TRACE_MDNS, "mDNS: client state %d", (int)state);
    switch (state) {
    case AVAHI_CLIENT_S_RUNNING:
        mdns_on_running(m);
        break;
    case AVAHI_CLIENT_S_REGISTERING:
    case AVAHI_CLIENT_S_COLLISION:
        mdns_on_registering(m);
        break;
    case AVAHI_CLIENT_CONNECTING:
        mdns_unavailable(m, "nothing owns org.freedesktop.Avahi on the D-Bus "
                            "system bus");
        break;
    case AVAHI_CLIENT_FAILURE:
        mdns_on_failure(m, avahi_client_errno(c));
        break;
    }
}

static void
mdns_connect(struct mdns *m)
{
    char why[320];
    const char *bus = getenv("DBUS_SYSTEM_BUS_ADDRESS");
    AvahiClient *c;
    int err = 0;

    c = avahi_client_new(&m->api, AVAHI_CLIENT_NO_FAIL, mdns_on_client, m,
                         &err);
    m->client = c;
    if (c != NULL)
        return;
    if (bus == NULL || bus[0] == '\0')
        bus = MDNS_DEFAULT_BUS;
    snprintf(why, sizeof(why),
             "cannot connect to the D-Bus system bus at %.200s: %s", bus,
             avahi_strerror(err));
    mdns_unavailable(m, why);
    mdns_retry_later(m);
}

/* Replaces a failed client, or tries the bus again. */
static void
mdns_on_retry(uv_timer_t *h)
{
    struct mdns *m = h->data;

    mdns_enter(m);
    if (m->client != NULL) {
        avahi_client_free(m->client);
        m->client = NULL;
    }
    mdns_connect(m);
    mdns_leave(m);
}

/* --- API ------------------------------------------------------------- */

struct mdns *
mdns_new(uv_loop_t *loop, char *err, size_t errlen)
{
    struct mdns *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->api.userdata = m;
    m->api.watch_new = mdns_watch_new;
    m->api.watch_update = mdns_watch_update;
    m->api.watch_get_events = mdns_watch_get_events;
    m->api.watch_free = mdns_watch_free;
    m->api.timeout_new = mdns_timeout_new;
    m->api.timeout_update = mdns_timeout_update;
    m->api.timeout_free = mdns_timeout_free;
    m->retry_ms = mdns_retry_first_ms;
    TAILQ_INIT(&m->pubs);
    TAILQ_INIT(&m->browses);
    LIST_INIT(&m->watches);
    LIST_INIT(&m->fds);
    uv_timer_init(loop, &m->retry);
    m->retry.data = m;
    m->handles = 1;
    mdns_enter(m);
    mdns_connect(m);
    mdns_leave(m);
    return m;
}

static int
mdns_txt_copy(const char *const *txt, AvahiStringList **out)
{
    AvahiStringList *l = NULL;
    size_t i;

    *out = NULL;
    for (i = 0; txt != NULL && txt[i] != NULL; i++) {
        if (i >= MDNS_TXT_MAX || strlen(txt[i]) > MDNS_TXT_LEN_MAX) {
            avahi_string_list_free(l);
            return -EINVAL;
        }
        AvahiStringList *n = avahi_string_list_add(l, txt[i]);
        if (n == NULL) {
            avahi_string_list_free(l);
            return -ENOMEM;
        }
        l = n;
    }
    *out = avahi_string_list_reverse(l);
    return 0;
}

int
mdns_publish(struct mdns *m, const char *name, const char *type, unsigned port,
             const char *const *txt)
{
    struct mdns_pub *p;
    int rc;

    if (m == NULL || m->freeing || name == NULL || type == NULL ||
        strlen(name) >= MDNS_NAME_MAX || !avahi_is_valid_service_name(name) ||
        strlen(type) >= MDNS_TYPE_MAX ||
        !avahi_is_valid_service_type_strict(type) || port == 0 || port > 65535)
        return -EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    rc = mdns_txt_copy(txt, &p->txt);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->m = m;
    p->port = port;
    mdns_copy(p->want, sizeof(p->want), name, SIZE_MAX);
    mdns_copy(p->name, sizeof(p->name), name, SIZE_MAX);
    mdns_copy(p->type, sizeof(p->type), type, SIZE_MAX);
    TAILQ_INSERT_TAIL(&m->pubs, p, link);
    mdns_enter(m);
    mdns_pub_register(p);
    mdns_leave(m);
    return 0;
}

const char *
mdns_published_name(const struct mdns *m, const char *name, const char *type)
{
    const struct mdns_pub *p;

    if (m == NULL)
        return NULL;
    TAILQ_FOREACH(p, &m->pubs, link)
    {
        if (strcmp(p->want, name) == 0 && strcmp(p->type, type) == 0)
            return p->established ? p->name : NULL;
    }
    return NULL;
}

int
mdns_browse(struct mdns *m, const char *type, mdns_browse_cb cb, void *ud)
{
    struct mdns_browse *b;

    if (m == NULL || m->freeing || type == NULL || cb == NULL ||
        strlen(type) >= MDNS_TYPE_MAX ||
        !avahi_is_valid_service_type_generic(type))
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->m = m;
    b->cb = cb;
    b->ud = ud;
    TAILQ_INIT(&b->insts);
    mdns_copy(b->type, sizeof(b->type), type, SIZE_MAX);
    TAILQ_INSERT_TAIL(&m->browses, b, link);
    mdns_enter(m);
    mdns_browse_start(b);
    mdns_leave(m);
    return 0;
}

static void
mdns_do_free(struct mdns *m)
{
    struct mdns_pub *p;
    struct mdns_browse *b;

    uv_timer_stop(&m->retry);
    /* Entry groups first, while connected: the daemon withdraws them
     * (goodbye packets) at once. */
    while ((p = TAILQ_FIRST(&m->pubs)) != NULL) {
        TAILQ_REMOVE(&m->pubs, p, link);
        mdns_pub_destroy(p);
    }
    while ((b = TAILQ_FIRST(&m->browses)) != NULL) {
        TAILQ_REMOVE(&m->browses, b, link);
        mdns_browse_stop(b, false);
        free(b);
    }
    if (m->client != NULL)
        avahi_client_free(m->client); /* frees its watches and timeouts */
    m->client = NULL;
    mdns_purge_watches(m);
    uv_close((uv_handle_t *)&m->retry, mdns_retry_on_closed);
}

void
mdns_free(struct mdns *m, void (*closed)(void *), void *ud)
{
    if (m == NULL) {
        if (closed != NULL)
            closed(ud);
        return;
    }
    if (m->freeing)
        return;
    m->freeing = true;
    m->closed = closed;
    m->closed_ud = ud;
    if (m->depth > 0) {
        m->free_pending = true;
        return;
    }
    mdns_do_free(m);
}

void
mdns_set_retry_for_test(unsigned first_ms, unsigned max_ms)
{
    mdns_retry_first_ms = first_ms;
    mdns_retry_max_ms = max_ms;
}

#else /* !HERD_WITH_AVAHI */

struct mdns *
mdns_new(uv_loop_t *loop, char *err, size_t errlen)
{
    (void)loop;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen,
                 "built without mDNS support (HERD_WITH_AVAHI=OFF)");
    return NULL;
}

int
mdns_publish(struct mdns *m, const char *name, const char *type, unsigned port,
             const char *const *txt)
{
    (void)m, (void)name, (void)type, (void)port, (void)txt;
    return -ENOTSUP;
}

const char *
mdns_published_name(const struct mdns *m, const char *name, const char *type)
{
    (void)m, (void)name, (void)type;
    return NULL;
}

int
mdns_browse(struct mdns *m, const char *type, mdns_browse_cb cb, void *ud)
{
    (void)m, (void)type, (void)cb, (void)ud;
    return -ENOTSUP;
}

void
mdns_free(struct mdns *m, void (*closed)(void *), void *ud)
{
    (void)m;
    if (closed != NULL)
        closed(ud);
}

void
mdns_set_retry_for_test(unsigned first_ms, unsigned max_ms)
{
    (void)first_ms, (void)max_ms;
}

#endif /* HERD_WITH_AVAHI */
