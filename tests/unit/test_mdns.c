/*
 * test_mdns.c - mDNS publish and browse (src/common/mdns.c).
 *
 * Part one needs nothing: with DBUS_SYSTEM_BUS_ADDRESS pointing at a
 * socket that does not exist, mdns_new() succeeds, warns once however
 * often it retries, accepts publications and browses for later, rejects
 * bad arguments, and mdns_free() leaves a loop that closes. Built without
 * avahi, it checks the stub instead.
 *
 * Part two runs against a real avahi-daemon, and multicast must never
 * leave the machine: as root, the test creates a network namespace of its
 * own (herd-mdns-<pid>) whose only interfaces are lo and a veth pair
 * (10.99.0.1 and 10.99.0.2), and re-executes itself inside it with
 * `ip netns exec NAME test_mdns --netns DIR`. That inner process mounts a
 * tmpfs on /run (ip netns exec gave it a mount namespace of its own, so
 * avahi's pid file and socket are private), starts a private dbus-daemon
 * (DBUS_SYSTEM_BUS_ADDRESS=unix:path=DIR/bus) and, once mdns_new() has
 * warned that no daemon is there, avahi-daemon; every daemon gets
 * PR_SET_PDEATHSIG so that it dies with the test. Further processes
 * (`--browse`, `--publish` roles of this same binary) are a second
 * browser and rival publishers. The outer process then kills whatever is
 * left in the namespace by pid (`ip netns pids`) and deletes it. Without
 * root, or when `ip netns add` is refused, part two is skipped with a
 * message that says so.
 *
 * Callbacks only record; the test bodies wait on the loop with a
 * watchdog (run_until) and assert.
 */
#define _GNU_SOURCE /* unshare(2) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "herd/log.h"
#include "herd/mdns.h"
#include "herd/parse.h"

#define TYPE         "_herd-test._tcp"
#define NS_ADDR_A    "10.99.0.1"
#define NS_ADDR_B    "10.99.0.2"
#define WAIT_MS      30000u
#define NO_BUS       "unix:path=/nonexistent/herd-test-mdns/bus"
#define STUB_REASON  "built without mDNS support (HERD_WITH_AVAHI=OFF)"
#define MAX_EVENTS   256
#define CHILD_OUTMAX 16384

/* --- shared helpers -------------------------------------------------- */

static uv_loop_t g_loop;
static bool g_stub; /* built without avahi: mdns_new() said so */
static uv_timer_t g_watchdog;
static bool g_watchdog_fired;
static const char *g_waiting_for = "";
static void (*g_on_timeout)(void);

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    g_watchdog_fired = true;
}

/* Turns the loop until cond(arg) holds; fails after WAIT_MS. */
static void
run_until(bool (*cond)(void *), void *arg, const char *what)
{
    g_waiting_for = what;
    g_watchdog_fired = false;
    uv_timer_start(&g_watchdog, on_watchdog, WAIT_MS, 0);
    while (!cond(arg) && !g_watchdog_fired)
        uv_run(&g_loop, UV_RUN_ONCE);
    uv_timer_stop(&g_watchdog);
    if (g_watchdog_fired) {
        fprintf(stderr, "# timed out after %u ms waiting for %s\n", WAIT_MS,
                g_waiting_for);
        if (g_on_timeout != NULL)
            g_on_timeout();
        fail_msg("timed out waiting for %s", what);
    }
}

static bool
flag_set(void *arg)
{
    return *(bool *)arg;
}

static void
on_closed_flag(void *ud)
{
    *(bool *)ud = true;
}

/* Finds an executable in PATH, then in the sbin directories. */
static bool
find_prog(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    char *save = NULL;

    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/bin:/bin",
             path != NULL ? path : "");
    for (char *d = dirs; d != NULL; d = save) {
        save = strchr(d, ':');
        if (save != NULL)
            *save++ = '\0';
        if (*d == '\0')
            continue;
        if (snprintf(out, cap, "%s/%s", d, name) >= (int)cap)
            continue;
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* Runs argv to completion; its exit status, or -1. */
static int
run_cmd(const char *const argv[], bool quiet)
{
    pid_t pid;
    int st;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);

            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    bool ok;

    if (f == NULL)
        return false;
    ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Prints the last bytes of a log file, for a failure's context. */
static void
print_tail(const char *label, const char *path)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return;
    if (fseek(f, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
        rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "# --- %s (%s) ---\n%s\n# ---\n", label, path, buf);
}

/* --- part one: no daemon -------------------------------------------- */

struct capture {
    int saved;
    bool active;
    char path[64];
};

/* Sends stderr (where log.c writes) to a file until capture_end(). */
static void
capture_begin(struct capture *c)
{
    int fd;

    snprintf(c->path, sizeof(c->path), "/tmp/herd-test-mdns-log.XXXXXX");
    fd = mkstemp(c->path);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    dup2(fd, 2);
    close(fd);
    c->active = true;
}

static void
capture_end(struct capture *c)
{
    if (!c->active)
        return;
    c->active = false;
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
}

static unsigned
count_in_file(const char *path, const char *needle)
{
    static char buf[256 * 1024];
    FILE *f = fopen(path, "r");
    size_t n;
    unsigned count = 0;

    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++)
        count++;
    return count;
}

struct retries {
    const char *path;
    unsigned want;
};

static bool
retried_enough(void *arg)
{
    struct retries *r = arg;

    return count_in_file(r->path, "mDNS: still unavailable") >= r->want;
}

static void
never_called(enum mdns_event ev, const struct mdns_service *s, void *ud)
{
    (void)ev, (void)s, (void)ud;
    fail_msg("browse callback without a daemon");
}

static void
check_bad_arguments(struct mdns *m)
{
    static const char *const one[] = {"version=0.1.0", NULL};
    const char *many[40];
    char big[300];

    for (size_t i = 0; i < 39; i++)
        many[i] = "k=v";
    many[39] = NULL;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(mdns_publish(m, "", TYPE, 1, one), -EINVAL);
    assert_int_equal(mdns_publish(m, "x", TYPE, 0, one), -EINVAL);
    assert_int_equal(mdns_publish(m, "x", TYPE, 65536, one), -EINVAL);
    assert_int_equal(mdns_publish(m, "x", "not-a-type", 1, one), -EINVAL);
    assert_int_equal(mdns_publish(m, big, TYPE, 1, one), -EINVAL);
    assert_int_equal(mdns_publish(m, "x", TYPE, 1, many), -EINVAL);
    {
        const char *const huge[] = {big, NULL};

        assert_int_equal(mdns_publish(m, "x", TYPE, 1, huge), -EINVAL);
    }
    assert_int_equal(mdns_browse(m, "bad", never_called, NULL), -EINVAL);
    assert_int_equal(mdns_browse(m, TYPE, NULL, NULL), -EINVAL);
}

static struct capture g_cap;
static char g_saved_bus[1024];
static bool g_had_bus;

/* Undoes test_no_daemon's settings, also when one of its checks failed. */
static int
no_daemon_teardown(void **state)
{
    (void)state;
    capture_end(&g_cap);
    if (g_cap.path[0] != '\0')
        unlink(g_cap.path);
    g_cap.path[0] = '\0';
    log_tracing &= ~TRACE_MDNS;
    log_set_level(LL_INFO);
    mdns_set_retry_for_test(1000, 30000);
    if (g_had_bus)
        setenv("DBUS_SYSTEM_BUS_ADDRESS", g_saved_bus, 1);
    else
        unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
    return 0;
}

static void
test_no_daemon(void **state)
{
    static const char *const txt[] = {"version=0.1.0", NULL};
    const char *old = getenv("DBUS_SYSTEM_BUS_ADDRESS");
    char err[256] = "";
    struct retries r;
    struct mdns *m;
    bool closed = false;

    (void)state;
    g_had_bus = old != NULL;
    if (old != NULL)
        snprintf(g_saved_bus, sizeof(g_saved_bus), "%s", old);
    setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS, 1);
    mdns_set_retry_for_test(5, 20);
    log_set_level(LL_DEBUG);
    log_tracing |= TRACE_MDNS;
    capture_begin(&g_cap);
    m = mdns_new(&g_loop, err, sizeof(err));
    if (m == NULL) {
        /* Built without avahi: the stub says so, and frees nothing. */
        capture_end(&g_cap);
        assert_string_equal(err, STUB_REASON);
        g_stub = true;
        assert_int_equal(mdns_publish(NULL, "x", TYPE, 1, txt), -ENOTSUP);
        assert_int_equal(mdns_browse(NULL, TYPE, never_called, NULL), -ENOTSUP);
        mdns_free(NULL, on_closed_flag, &closed);
        assert_true(closed);
        return;
    }
    assert_int_equal(mdns_publish(m, "herd test", TYPE, 4242, txt), 0);
    assert_int_equal(mdns_browse(m, TYPE, never_called, NULL), 0);
    assert_null(mdns_published_name(m, "herd test", TYPE));
    check_bad_arguments(m);
    /* Several reconnection attempts, each traced, none warned. */
    r.path = g_cap.path;
    r.want = 3;
    run_until(retried_enough, &r, "three reconnection attempts");
    mdns_free(m, on_closed_flag, &closed);
    assert_false(closed); /* never from inside mdns_free */
    run_until(flag_set, &closed, "mdns_free's closed callback");
    capture_end(&g_cap);

    assert_int_equal(count_in_file(g_cap.path, "mDNS unavailable: "
                                               "avahi-daemon is not running ("),
                     1);
    assert_int_equal(count_in_file(g_cap.path, "; use explicit URLs"), 1);
    assert_int_equal(count_in_file(g_cap.path,
                                   "mDNS unavailable: avahi-daemon is not "
                                   "running (cannot connect to the D-Bus "
                                   "system bus at " NO_BUS ": "),
                     1);
    /* Nothing of ours is left on the loop. */
    assert_int_equal(uv_run(&g_loop, UV_RUN_NOWAIT), 0);
}

/* --- roles: a second browser, a rival publisher ---------------------- */

struct role {
    uv_loop_t loop;
    uv_pipe_t in;
    uv_timer_t poll;
    struct mdns *m;
    const char *name;
    bool free_in_cb; /* mdns_free from inside the first callback */
    bool announced;
    bool stopping;
    bool poll_on;
};

static void
role_closed(void *ud)
{
    (void)ud;
}

static void
role_stop(struct role *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    uv_close((uv_handle_t *)&r->in, NULL);
    if (r->poll_on)
        uv_close((uv_handle_t *)&r->poll, NULL);
    mdns_free(r->m, role_closed, NULL);
}

static void
role_on_event(enum mdns_event ev, const struct mdns_service *s, void *ud)
{
    struct role *r = ud;

    printf("%s\t%s\t%s\t%u\t%s\t%s\n", ev == MDNS_FOUND ? "FOUND" : "LOST",
           s->name, s->addr, s->port, s->version, s->host);
    fflush(stdout);
    if (r->free_in_cb)
        role_stop(r);
}

/* Says under which name the publication was established, once. */
static void
role_on_poll(uv_timer_t *t)
{
    struct role *r = t->data;
    const char *name = mdns_published_name(r->m, r->name, TYPE);

    if (name == NULL || r->announced)
        return;
    r->announced = true;
    printf("PUBLISHED\t%s\n", name);
    fflush(stdout);
}

static void
role_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char b[256];

    (void)h, (void)hint;
    *buf = uv_buf_init(b, sizeof(b));
}

/* The parent closes our stdin to stop us. */
static void
role_on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0)
        role_stop(s->data);
}

/*
 * argv: --browse | --browse-free-in-cb
 *       --publish NAME PORT VERSION
 * Exit status 0 when the loop closed cleanly after mdns_free.
 */
static int
role_main(int argc, char **argv)
{
    static struct role r;
    char err[256];
    char txt0[96];
    const char *txt[] = {txt0, NULL};
    uint64_t port;
    int rc;

    log_init("mdns-role", LL_INFO);
    uv_loop_init(&r.loop);
    r.m = mdns_new(&r.loop, err, sizeof(err));
    if (r.m == NULL) {
        fprintf(stderr, "mdns_new: %s\n", err);
        return 2;
    }
    if (strcmp(argv[1], "--publish") == 0 && argc == 5) {
        r.name = argv[2];
        snprintf(txt0, sizeof(txt0), "version=%s", argv[4]);
        if (parse_u64(argv[3], 1, 65535, &port, NULL) != 0) {
            fprintf(stderr, "bad port %s\n", argv[3]);
            return 2;
        }
        rc = mdns_publish(r.m, argv[2], TYPE, (unsigned)port, txt);
        uv_timer_init(&r.loop, &r.poll);
        r.poll.data = &r;
        r.poll_on = true;
        uv_timer_start(&r.poll, role_on_poll, 10, 10);
    } else {
        r.free_in_cb = strcmp(argv[1], "--browse-free-in-cb") == 0;
        rc = mdns_browse(r.m, TYPE, role_on_event, &r);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(-rc));
        return 2;
    }
    uv_pipe_init(&r.loop, &r.in, 0);
    r.in.data = &r;
    uv_pipe_open(&r.in, 0);
    uv_read_start((uv_stream_t *)&r.in, role_alloc, role_on_stdin);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&r.loop);
    if (rc != 0)
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return rc == 0 ? 0 : 3;
}

/* --- part two, inside the namespace ---------------------------------- */

struct event {
    enum mdns_event ev;
    char name[MDNS_NAME_MAX];
    char host[MDNS_HOST_MAX];
    char addr[64];
    unsigned port;
    char version[MDNS_VERSION_MAX];
};

/* A role process of ours, spawned on the loop. */
struct child {
    uv_process_t proc;
    uv_pipe_t in, out;
    char out_buf[CHILD_OUTMAX];
    size_t out_len;
    size_t out_pos; /* lines before this were consumed */
    bool started;
    bool exited;
    int64_t status;
    int term_signal;
    int open; /* handles not yet closed */
};

static struct {
    char dir[128];
    char self[PATH_MAX];
    char avahi[PATH_MAX];
    char dbus[PATH_MAX];
    pid_t dbus_pid;
    pid_t avahi_pid;
    struct mdns *m;
    struct event ev[MAX_EVENTS];
    size_t nev;
    size_t ev_pos;        /* events before this were consumed */
    struct child browser; /* --browse, for most of the run */
    struct child rival;   /* --publish of the same name */
    struct child freer;   /* --browse-free-in-cb */
} in;

static void
on_event(enum mdns_event ev, const struct mdns_service *s, void *ud)
{
    struct event *e;

    (void)ud;
    if (in.nev >= MAX_EVENTS)
        return;
    e = &in.ev[in.nev++];
    e->ev = ev;
    snprintf(e->name, sizeof(e->name), "%s", s->name);
    snprintf(e->host, sizeof(e->host), "%s", s->host);
    snprintf(e->addr, sizeof(e->addr), "%s", s->addr);
    e->port = s->port;
    snprintf(e->version, sizeof(e->version), "%s", s->version);
}

static void
dump_state(void)
{
    fprintf(stderr, "# events seen by the test process:\n");
    for (size_t i = 0; i < in.nev; i++)
        fprintf(stderr, "#   %s \"%s\" %s:%u version \"%s\" host \"%s\"\n",
                in.ev[i].ev == MDNS_FOUND ? "FOUND" : "LOST", in.ev[i].name,
                in.ev[i].addr, in.ev[i].port, in.ev[i].version, in.ev[i].host);
    fprintf(stderr, "# second browser's output:\n%.*s\n",
            (int)in.browser.out_len, in.browser.out_buf);
    fprintf(stderr, "# rival publisher's output:\n%.*s\n",
            (int)in.rival.out_len, in.rival.out_buf);
    if (in.avahi_pid > 0 && waitpid(in.avahi_pid, NULL, WNOHANG) != 0)
        fprintf(stderr, "# avahi-daemon (pid %d) is no longer running\n",
                (int)in.avahi_pid);
    {
        char path[256];

        snprintf(path, sizeof(path), "%s/avahi.log", in.dir);
        print_tail("avahi-daemon log", path);
        snprintf(path, sizeof(path), "%s/dbus.log", in.dir);
        print_tail("dbus-daemon log", path);
    }
}

struct want_event {
    enum mdns_event ev;
    const char *name; /* NULL: any */
    unsigned port;    /* 0: any */
    const struct event *got;
};

static bool
event_seen(void *arg)
{
    struct want_event *w = arg;

    for (size_t i = in.ev_pos; i < in.nev; i++) {
        const struct event *e = &in.ev[i];

        if (e->ev != w->ev || (w->name != NULL && strcmp(e->name, w->name)) ||
            (w->port != 0 && e->port != w->port))
            continue;
        w->got = e;
        in.ev_pos = i + 1;
        return true;
    }
    return false;
}

static const struct event *
wait_event(enum mdns_event ev, const char *name, unsigned port,
           const char *what)
{
    struct want_event w = {ev, name, port, NULL};

    run_until(event_seen, &w, what);
    return w.got;
}

static void
check_found(const struct event *e, const char *name, unsigned port,
            const char *version)
{
    assert_int_equal(e->ev, MDNS_FOUND);
    assert_string_equal(e->name, name);
    assert_int_equal(e->port, port);
    assert_string_equal(e->version, version);
    if (strcmp(e->addr, NS_ADDR_A) != 0 && strcmp(e->addr, NS_ADDR_B) != 0)
        fail_msg("address %s is not one of the namespace's", e->addr);
    assert_non_null(strstr(e->host, ".local"));
}

/* --- daemons ---------------------------------------------------------- */

/* Forks argv with stdout to out_fd (or the log), stderr to the log, and
 * PR_SET_PDEATHSIG so that it dies with us. */
static pid_t
spawn_daemon(const char *const argv[], const char *log, int out_fd)
{
    pid_t parent = getpid();
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid != 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(126);
    {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (fd < 0)
            _exit(126);
        dup2(out_fd >= 0 ? out_fd : fd, 1);
        dup2(fd, 2);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Sends sig and reaps; SIGKILL after 10 s. */
static void
stop_daemon(pid_t *pid, int sig)
{
    int st;

    if (*pid <= 0)
        return;
    kill(*pid, sig);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(*pid, &st, WNOHANG) != 0) {
            *pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, &st, 0);
    *pid = 0;
}

static void
start_dbus(void)
{
    char conf[256], log[256], line[512];
    const char *argv[] = {
        in.dbus, conf, "--nofork", "--nopidfile", "--print-address=1", NULL};
    struct pollfd pfd;
    size_t len = 0;
    int fds[2];

    snprintf(conf, sizeof(conf), "--config-file=%s/dbus.conf", in.dir);
    snprintf(log, sizeof(log), "%s/dbus.log", in.dir);
    assert_int_equal(pipe(fds), 0);
    in.dbus_pid = spawn_daemon(argv, log, fds[1]);
    close(fds[1]);
    assert_true(in.dbus_pid > 0);
    /* Ready once it prints its address. */
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
        ssize_t n;

        if (poll(&pfd, 1, (int)WAIT_MS) <= 0)
            break;
        n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    line[len] = '\0';
    if (strstr(line, "unix:path=") == NULL) {
        print_tail("dbus-daemon log", log);
        fail_msg("dbus-daemon did not start (it printed \"%s\")", line);
    }
}

static void
start_avahi(void)
{
    char conf[256], log[256];
    const char *argv[] = {in.avahi,      "-f",           conf, "--no-drop-root",
                          "--no-chroot", "--no-rlimits", NULL};

    snprintf(conf, sizeof(conf), "%s/avahi.conf", in.dir);
    snprintf(log, sizeof(log), "%s/avahi.log", in.dir);
    in.avahi_pid = spawn_daemon(argv, log, -1);
    assert_true(in.avahi_pid > 0);
}

/* --- role processes --------------------------------------------------- */

static void
child_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct child *c = h->data;

    (void)hint;
    *buf = uv_buf_init(c->out_buf + c->out_len,
                       (unsigned)(sizeof(c->out_buf) - 1 - c->out_len));
}

static void
child_on_closed(uv_handle_t *h)
{
    struct child *c = h->data;

    c->open--;
}

static void
child_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct child *c = s->data;

    (void)buf;
    if (n > 0) {
        c->out_len += (size_t)n;
        c->out_buf[c->out_len] = '\0';
        if (c->out_len < sizeof(c->out_buf) - 1)
            return;
    }
    if (n < 0 || c->out_len >= sizeof(c->out_buf) - 1)
        uv_read_stop(s);
}

static void
child_on_exit(uv_process_t *p, int64_t status, int sig)
{
    struct child *c = p->data;

    c->exited = true;
    c->status = status;
    c->term_signal = sig;
}

static void
child_start(struct child *c, const char *a1, const char *a2, const char *a3,
            const char *a4)
{
    char *argv[] = {in.self,    (char *)a1, (char *)a2,
                    (char *)a3, (char *)a4, NULL};
    uv_stdio_container_t io[3];
    uv_process_options_t o;
    int rc;

    memset(c, 0, sizeof(*c));
    memset(&o, 0, sizeof(o));
    uv_pipe_init(&g_loop, &c->in, 0);
    uv_pipe_init(&g_loop, &c->out, 0);
    c->in.data = c->out.data = c->proc.data = c;
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)&c->in;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&c->out;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.file = in.self;
    o.args = argv;
    o.exit_cb = child_on_exit;
    o.stdio = io;
    o.stdio_count = 3;
    fflush(NULL);
    rc = uv_spawn(&g_loop, &c->proc, &o);
    c->open = 3;
    if (rc != 0) {
        uv_close((uv_handle_t *)&c->in, child_on_closed);
        uv_close((uv_handle_t *)&c->out, child_on_closed);
        uv_close((uv_handle_t *)&c->proc, child_on_closed);
        fail_msg("cannot spawn %s %s: %s", in.self, a1, uv_strerror(rc));
    }
    c->started = true;
    uv_read_start((uv_stream_t *)&c->out, child_alloc, child_on_read);
}

struct want_line {
    struct child *c;
    const char *prefix;
    char line[512];
};

/* The next unconsumed output line of c that starts with prefix. */
static bool
line_seen(void *arg)
{
    struct want_line *w = arg;
    struct child *c = w->c;
    const char *p = c->out_buf + c->out_pos;
    const char *nl;

    for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        if (strncmp(p, w->prefix, strlen(w->prefix)) != 0)
            continue;
        snprintf(w->line, sizeof(w->line), "%.*s", (int)(nl - p), p);
        c->out_pos = (size_t)(nl + 1 - c->out_buf);
        return true;
    }
    return false;
}

static void
wait_line(struct child *c, const char *prefix, char *line, size_t cap,
          const char *what)
{
    struct want_line w = {c, prefix, ""};

    run_until(line_seen, &w, what);
    if (line != NULL)
        snprintf(line, cap, "%s", w.line);
}

static bool
child_gone(void *arg)
{
    struct child *c = arg;

    return c->exited;
}

static bool
child_closed(void *arg)
{
    struct child *c = arg;

    return c->open == 0;
}

/* Closes c's stdin (it frees its mdns and exits) or kills it; reaps. */
static void
child_stop(struct child *c, int sig)
{
    if (!c->started)
        return;
    c->started = false;
    if (sig != 0 && !c->exited)
        uv_process_kill(&c->proc, sig);
    uv_close((uv_handle_t *)&c->in, child_on_closed);
    run_until(child_gone, c, "a role process to exit");
    uv_close((uv_handle_t *)&c->out, child_on_closed);
    uv_close((uv_handle_t *)&c->proc, child_on_closed);
    run_until(child_closed, c, "a role process's handles to close");
}

/* --- the namespace tests, in order ------------------------------------ */

static int
inner_setup(void **state)
{
    (void)state;
    /* A mount namespace of our own, whatever ip netns exec gave us, so
     * that the tmpfs on /run (avahi's pid file and socket) is private. */
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "# cannot make a private mount namespace: %s\n",
                strerror(errno));
        return -1;
    }
    if (mount("herd-test-mdns", "/run", "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755") != 0) {
        fprintf(stderr, "# mount tmpfs on /run: %s\n", strerror(errno));
        return -1;
    }
    uv_timer_init(&g_loop, &g_watchdog);
    g_on_timeout = dump_state;
    return 0;
}

static int
inner_teardown(void **state)
{
    (void)state;
    child_stop(&in.browser, SIGKILL);
    child_stop(&in.rival, SIGKILL);
    child_stop(&in.freer, SIGKILL);
    if (in.m != NULL) {
        bool closed = false;

        mdns_free(in.m, on_closed_flag, &closed);
        in.m = NULL;
        while (!closed)
            uv_run(&g_loop, UV_RUN_ONCE);
    }
    stop_daemon(&in.avahi_pid, SIGTERM);
    stop_daemon(&in.dbus_pid, SIGTERM);
    g_on_timeout = NULL;
    return 0;
}

/* mdns_new() before the daemon: it waits, then publishes and browses. */
static void
test_daemon_appears(void **state)
{
    static const char *const txt[] = {"version=0.1.0", "role=test", NULL};
    char err[256];
    const struct event *e;

    (void)state;
    start_dbus();
    in.m = mdns_new(&g_loop, err, sizeof(err));
    assert_non_null(in.m);
    assert_int_equal(mdns_publish(in.m, "herd-test", TYPE, 40001, txt), 0);
    assert_int_equal(mdns_browse(in.m, TYPE, on_event, NULL), 0);
    assert_null(mdns_published_name(in.m, "herd-test", TYPE));
    start_avahi();
    e = wait_event(MDNS_FOUND, "herd-test", 0,
                   "FOUND herd-test once avahi-daemon started");
    check_found(e, "herd-test", 40001, "0.1.0");
    assert_string_equal(mdns_published_name(in.m, "herd-test", TYPE),
                        "herd-test");
}

static void
check_line(const char *line, const char *ev, const char *name, unsigned port,
           const char *version)
{
    char want[256];

    snprintf(want, sizeof(want), "%s\t%s\t", ev, name);
    if (strncmp(line, want, strlen(want)) != 0)
        fail_msg("unexpected line \"%s\"", line);
    if (port == 0)
        return;
    snprintf(want, sizeof(want), "\t%u\t%s\t", port, version);
    if (strstr(line, want) == NULL ||
        (strstr(line, "\t" NS_ADDR_A "\t") == NULL &&
         strstr(line, "\t" NS_ADDR_B "\t") == NULL))
        fail_msg("line \"%s\" lacks port %u, version %s or a namespace "
                 "address",
                 line, port, version);
}

/* A second process browsing sees what the first one published. */
static void
test_second_process_browses(void **state)
{
    char line[512];

    (void)state;
    assert_non_null(in.m);
    child_start(&in.browser, "--browse", NULL, NULL, NULL);
    wait_line(&in.browser, "FOUND\therd-test\t", line, sizeof(line),
              "the second process to find herd-test");
    check_line(line, "FOUND", "herd-test", 40001, "0.1.0");
}

/* Another publisher of the same name is renamed, and both are seen. */
static void
test_collision_renames(void **state)
{
    char line[512], renamed[MDNS_NAME_MAX];
    const struct event *e;

    (void)state;
    assert_non_null(in.m);
    child_start(&in.rival, "--publish", "herd-test", "40002", "0.2.0");
    wait_line(&in.rival, "PUBLISHED\t", line, sizeof(line),
              "the rival publisher to be established");
    snprintf(renamed, sizeof(renamed), "%.63s", line + strlen("PUBLISHED\t"));
    assert_string_not_equal(renamed, "herd-test");
    assert_non_null(strstr(renamed, "herd-test"));
    e = wait_event(MDNS_FOUND, renamed, 0, "FOUND for the renamed rival");
    check_found(e, renamed, 40002, "0.2.0");
    wait_line(&in.browser, "FOUND\therd-test #", line, sizeof(line),
              "the second process to find the renamed rival");
    check_line(line, "FOUND", renamed, 40002, "0.2.0");
    /* Ours kept its name. */
    assert_string_equal(mdns_published_name(in.m, "herd-test", TYPE),
                        "herd-test");
}

/* The rival goes (mdns_free: LOST), comes back on another port (FOUND),
 * and is killed (LOST: the daemon withdraws a dead client's services). */
static void
test_lost_and_back(void **state)
{
    char line[512], renamed[MDNS_NAME_MAX];
    const struct event *e;

    (void)state;
    assert_non_null(in.m);
    child_stop(&in.rival, 0);
    assert_true(in.rival.term_signal == 0 && in.rival.status == 0);
    e = wait_event(MDNS_LOST, NULL, 0, "LOST once the rival freed its mdns");
    assert_string_not_equal(e->name, "herd-test");
    assert_int_equal(e->port, 40002);
    snprintf(renamed, sizeof(renamed), "%s", e->name);
    wait_line(&in.browser, "LOST\t", line, sizeof(line),
              "the second process to lose the rival");
    check_line(line, "LOST", renamed, 0, NULL);

    child_start(&in.rival, "--publish", "herd-test", "40003", "0.3.0");
    wait_line(&in.rival, "PUBLISHED\t", line, sizeof(line),
              "the rival to come back");
    e = wait_event(MDNS_FOUND, line + strlen("PUBLISHED\t"), 40003,
                   "FOUND for the rival on its new port");
    check_found(e, line + strlen("PUBLISHED\t"), 40003, "0.3.0");

    child_stop(&in.rival, SIGKILL);
    e = wait_event(MDNS_LOST, NULL, 40003, "LOST once the rival was killed");
    assert_string_not_equal(e->name, "herd-test");
}

/* mdns_free() from inside a browse callback is deferred and clean. */
static void
test_free_in_callback(void **state)
{
    struct child *c = &in.freer;
    char line[512];

    (void)state;
    assert_non_null(in.m);
    child_start(c, "--browse-free-in-cb", NULL, NULL, NULL);
    wait_line(c, "FOUND\t", line, sizeof(line),
              "a browser that frees from its callback to find something");
    run_until(child_gone, c, "that browser to exit");
    assert_int_equal(c->term_signal, 0);
    assert_int_equal(c->status, 0);
    child_stop(c, 0);
}

/* avahi-daemon restarts: everything is lost, then published and found
 * again without anyone asking. */
static void
test_daemon_restart(void **state)
{
    char line[512];
    const struct event *e;

    (void)state;
    assert_non_null(in.m);
    stop_daemon(&in.avahi_pid, SIGTERM);
    e = wait_event(MDNS_LOST, "herd-test", 0, "LOST when avahi-daemon went");
    assert_int_equal(e->port, 40001);
    wait_line(&in.browser, "LOST\therd-test\t", line, sizeof(line),
              "the second process to lose herd-test");
    assert_null(mdns_published_name(in.m, "herd-test", TYPE));

    start_avahi();
    e = wait_event(MDNS_FOUND, "herd-test", 0,
                   "FOUND herd-test after avahi-daemon came back");
    check_found(e, "herd-test", 40001, "0.1.0");
    wait_line(&in.browser, "FOUND\therd-test\t", line, sizeof(line),
              "the second process to find herd-test again");
    check_line(line, "FOUND", "herd-test", 40001, "0.1.0");
    assert_string_equal(mdns_published_name(in.m, "herd-test", TYPE),
                        "herd-test");
}

/* Freeing withdraws the publication and leaves nothing on the loop. */
static void
test_free_withdraws(void **state)
{
    char line[512];
    bool closed = false;

    (void)state;
    assert_non_null(in.m);
    mdns_free(in.m, on_closed_flag, &closed);
    in.m = NULL;
    assert_false(closed);
    run_until(flag_set, &closed, "mdns_free's closed callback");
    wait_line(&in.browser, "LOST\therd-test\t", line, sizeof(line),
              "the second process to see herd-test withdrawn");
    child_stop(&in.browser, 0);
    assert_true(in.browser.term_signal == 0 && in.browser.status == 0);
    uv_timer_stop(&g_watchdog);
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&g_loop), 0);
}

static int
inner_main(const char *dir, const char *netns)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon_appears),
        cmocka_unit_test(test_second_process_browses),
        cmocka_unit_test(test_collision_renames),
        cmocka_unit_test(test_lost_and_back),
        cmocka_unit_test(test_free_in_callback),
        cmocka_unit_test(test_daemon_restart),
        cmocka_unit_test(test_free_withdraws),
    };

    snprintf(in.dir, sizeof(in.dir), "%s", dir);
    memset(in.self, 0, sizeof(in.self)); /* readlink() does not terminate */
    if (readlink("/proc/self/exe", in.self, sizeof(in.self) - 1) < 0 ||
        !find_prog("avahi-daemon", in.avahi, sizeof(in.avahi)) ||
        !find_prog("dbus-daemon", in.dbus, sizeof(in.dbus))) {
        fprintf(stderr, "# cannot find this program, avahi-daemon or "
                        "dbus-daemon\n");
        return 1;
    }
    printf("mDNS namespace test: private dbus-daemon and avahi-daemon in "
           "network namespace %s (%s)\n",
           netns, dir);
    fflush(stdout);
    log_init("test_mdns", LL_INFO);
    uv_loop_init(&g_loop);
    return cmocka_run_group_tests_name("mdns in a network namespace", tests,
                                       inner_setup, inner_teardown);
}

/* --- part two, outside: the namespace's life -------------------------- */

static struct {
    char ip[PATH_MAX];
    char name[64];
    char dir[64];
    bool added;
} ns;

/* Runs "ip netns exec NAME <words of cmd>"; true on exit status 0. */
static bool
ns_run(const char *cmd)
{
    char words[256];
    const char *argv[24] = {ns.ip, "netns", "exec", ns.name};
    size_t n = 4;

    snprintf(words, sizeof(words), "%s", cmd);
    for (char *w = words; *w != '\0' && n < 23;) {
        char *sp = strchr(w, ' ');

        argv[n++] = w;
        if (sp == NULL)
            break;
        *sp = '\0';
        w = sp + 1;
    }
    argv[n] = NULL;
    return run_cmd(argv, false) == 0;
}

static bool
ns_write_configs(void)
{
    char path[128], text[2048];

    snprintf(path, sizeof(path), "%s/dbus.conf", ns.dir);
    snprintf(text, sizeof(text),
             "<!DOCTYPE busconfig PUBLIC "
             "\"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
             " \"http://www.freedesktop.org/standards/dbus/1.0/"
             "busconfig.dtd\">\n"
             "<busconfig>\n"
             "  <type>system</type>\n"
             "  <listen>unix:path=%s/bus</listen>\n"
             "  <auth>EXTERNAL</auth>\n"
             "  <policy context=\"default\">\n"
             "    <allow user=\"*\"/> <allow own=\"*\"/>\n"
             "    <allow send_type=\"method_call\"/>\n"
             "    <allow send_destination=\"*\"/>\n"
             "    <allow receive_sender=\"*\"/>\n"
             "  </policy>\n"
             "</busconfig>\n",
             ns.dir);
    if (!write_file(path, text))
        return false;
    snprintf(path, sizeof(path), "%s/avahi.conf", ns.dir);
    return write_file(path, "[server]\n"
                            "host-name=herd-test-host\n"
                            "use-ipv4=yes\n"
                            "use-ipv6=no\n"
                            "allow-interfaces=va,vb\n"
                            "enable-dbus=yes\n"
                            "[wide-area]\n"
                            "enable-wide-area=no\n"
                            "[publish]\n"
                            "publish-hinfo=no\n"
                            "publish-workstation=no\n");
}

static int
outer_teardown(void **state)
{
    char path[128];

    (void)state;
    if (ns.added) {
        /* Whatever still runs in our namespace is ours: kill it by pid. */
        char cmd[PATH_MAX + 96];
        FILE *p;

        snprintf(cmd, sizeof(cmd), "'%s' netns pids '%s' 2>/dev/null", ns.ip,
                 ns.name);
        p = popen(cmd, "r");
        if (p != NULL) {
            char line[64];
            uint64_t pid;

            while (fgets(line, sizeof(line), p) != NULL) {
                line[strcspn(line, "\n")] = '\0';
                if (parse_u64(line, 2, INT32_MAX, &pid, NULL) == 0 &&
                    (pid_t)pid != getpid())
                    kill((pid_t)pid, SIGKILL);
            }
            pclose(p);
        }
        {
            const char *argv[] = {ns.ip, "netns", "del", ns.name, NULL};

            if (run_cmd(argv, false) != 0)
                fprintf(stderr, "# ip netns del %s failed\n", ns.name);
        }
        ns.added = false;
    }
    if (ns.dir[0] != '\0') {
        static const char *const files[] = {
            "dbus.conf", "avahi.conf", "dbus.log", "avahi.log", "bus", NULL};

        for (size_t i = 0; files[i] != NULL; i++) {
            snprintf(path, sizeof(path), "%s/%s", ns.dir, files[i]);
            unlink(path);
        }
        rmdir(ns.dir);
        ns.dir[0] = '\0';
    }
    return 0;
}

static void
skip_because(const char *why)
{
    printf("SKIP: mDNS namespace test (real avahi-daemon): %s\n", why);
    fflush(stdout);
    skip();
}

static void
test_in_namespace(void **state)
{
    char self[PATH_MAX], bus[128];
    pid_t pid;
    int st;

    (void)state;
    if (g_stub)
        skip_because(STUB_REASON);
    if (geteuid() != 0)
        skip_because("not root (it needs ip netns)");
    if (!find_prog("ip", ns.ip, sizeof(ns.ip)))
        skip_because("no ip command (apt-get install iproute2)");
    {
        char prog[PATH_MAX];

        if (!find_prog("avahi-daemon", prog, sizeof(prog)) ||
            !find_prog("dbus-daemon", prog, sizeof(prog)))
            fail_msg("avahi-daemon or dbus-daemon is missing: run "
                     "scripts/bootstrap");
    }
    snprintf(ns.name, sizeof(ns.name), "herd-mdns-%ld", (long)getpid());
    {
        const char *argv[] = {ns.ip, "netns", "add", ns.name, NULL};

        if (run_cmd(argv, false) != 0)
            skip_because("`ip netns add` was refused");
    }
    ns.added = true;
    snprintf(ns.dir, sizeof(ns.dir), "/tmp/herd-mdns-XXXXXX");
    assert_non_null(mkdtemp(ns.dir));
    assert_true(ns_write_configs());
    /* lo, and a veth pair whose two ends both live in the namespace. */
    assert_true(ns_run("ip link set lo up"));
    assert_true(ns_run("ip link add va type veth peer name vb"));
    assert_true(ns_run("ip addr add " NS_ADDR_A "/24 dev va"));
    assert_true(ns_run("ip addr add " NS_ADDR_B "/24 dev vb"));
    assert_true(ns_run("ip link set va up"));
    assert_true(ns_run("ip link set vb up"));

    /* readlink() does not terminate what it writes */
    memset(self, 0, sizeof(self));
    assert_true(readlink("/proc/self/exe", self, sizeof(self) - 1) > 0);
    snprintf(bus, sizeof(bus), "unix:path=%s/bus", ns.dir);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[] = {ns.ip,     "netns", "exec",  ns.name, self,
                              "--netns", ns.dir,  ns.name, NULL};

        setenv("DBUS_SYSTEM_BUS_ADDRESS", bus, 1);
        execv(ns.ip, (char *const *)argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    printf("mDNS namespace test ran in %s and passed\n", ns.name);
}

static int
outer_setup(void **state)
{
    (void)state;
    uv_loop_init(&g_loop);
    uv_timer_init(&g_loop, &g_watchdog);
    return 0;
}

static int
outer_group_teardown(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&g_watchdog, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    return uv_loop_close(&g_loop) == 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_daemon, no_daemon_teardown),
        cmocka_unit_test_teardown(test_in_namespace, outer_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strncmp(argv[1], "--browse", 8) == 0)
        return role_main(argc, argv);
    if (argc == 5 && strcmp(argv[1], "--publish") == 0)
        return role_main(argc, argv);
    if (argc == 4 && strcmp(argv[1], "--netns") == 0)
        return inner_main(argv[2], argv[3]);
    log_init("test_mdns", LL_INFO);
    return cmocka_run_group_tests_name("mdns", tests, outer_setup,
                                       outer_group_teardown);
}
