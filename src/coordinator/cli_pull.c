/*
 * cli_pull.c - `herd pull MODEL [--node ID]`: asks a running coordinator
 * to pull a model onto the fleet and shows Ollama's progress, as a bar on
 * a terminal and one line per step otherwise. Exit 0 on success, 1 when
 * the pull failed, 2 for a usage error.
 */
#include "cli_pull.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "herd/buf.h"
#include "herd/http_client.h"
#include "herd/json.h"
#include "translate.h"

struct cli {
    bool tty, failed, success;
    int status;
    char node[256];
    char last_status[256];
    char error[512];
    struct ndjson nd;
    struct buf errbody;
};

static void
cli_bar(struct cli *c, const char *status, double done, double total)
{
    int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
    char bar[64];

    if (fill > width)
        fill = width;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, ' ', (size_t)(width - fill));
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K%-24.24s [%s] %3.0f%% %.2f/%.2f GB", status, bar,
            total > 0 ? 100.0 * done / total : 0.0, done / 1e9, total / 1e9);
    (void)c;
}

static int
cli_line(const char *line, size_t len, void *ud)
{
    struct cli *c = ud;
    cJSON *v = NULL;
    const char *st, *err;

    if (json_parse(line, len, 16, &v, NULL, 0) != 0)
        return 0;
    err = json_get_str(v, "error");
    st = json_get_str(v, "status");
    if (err != NULL) {
        c->failed = true;
        snprintf(c->error, sizeof(c->error), "%s", err);
    } else if (st != NULL) {
        double total = json_get_num(v, "total", 0);
        double done = json_get_num(v, "completed", 0);

        if (strcmp(st, "success") == 0)
            c->success = true;
        if (c->tty && total > 0) {
            cli_bar(c, st, done, total);
        } else if (strcmp(st, c->last_status) != 0) {
            if (c->tty)
                fputs("\r\033[K", stderr);
            fprintf(c->tty ? stderr : stdout, "%s\n", st);
        }
        snprintf(c->last_status, sizeof(c->last_status), "%s", st);
    }
    cJSON_Delete(v);
    return 0;
}

static void
cli_on_response(struct http_call *call, int status, void *ud)
{
    struct cli *c = ud;
    const char *node = http_call_header(call, "X-Fleet-Node");

    c->status = status;
    if (node != NULL)
        snprintf(c->node, sizeof(c->node), "%s", node);
}

static int
cli_on_data(struct http_call *call, const char *p, size_t n, void *ud)
{
    struct cli *c = ud;

    (void)call;
    if (c->status != 200) {
        if (c->errbody.len + n < 65536 && buf_append(&c->errbody, p, n) != 0)
            return 0;
        return 0;
    }
    ndjson_feed(&c->nd, p, n, cli_line, c);
    return 0;
}

static void
cli_on_done(struct http_call *call, int err, const char *errmsg, void *ud)
{
    struct cli *c = ud;

    (void)call;
    if (err != 0) {
        c->failed = true;
        snprintf(c->error, sizeof(c->error), "%s", errmsg);
        return;
    }
    ndjson_finish(&c->nd, cli_line, c);
    if (c->status != 200) {
        cJSON *v = NULL;
        const char *e = NULL;

        c->failed = true;
        if (json_parse(c->errbody.data ? c->errbody.data : "", c->errbody.len,
                       8, &v, NULL, 0) == 0)
            e = json_get_str(v, "error");
        snprintf(c->error, sizeof(c->error), "HTTP %d: %s", c->status,
                 e ? e : "(no message)");
        cJSON_Delete(v);
    }
}

static void
cli_usage(FILE *f)
{
    fputs("usage: herd pull MODEL [--node ID] [--url URL] [--admin-key KEY]\n"
          "\n"
          "Pulls MODEL onto the fleet through a running herd: onto node ID,\n"
          "or onto the node with the most free memory that fits it.\n"
          "  --url URL        the coordinator (env FLEET_URL; default\n"
          "                   http://localhost:11435)\n"
          "  --admin-key KEY  when herd has FLEET_ADMIN_KEY (env\n"
          "                   FLEET_ADMIN_KEY)\n",
          f);
}

int
herd_cli_pull(int argc, char **argv)
{
    const char *model = NULL, *node = NULL;
    const char *url = getenv("FLEET_URL"), *key = getenv("FLEET_ADMIN_KEY");
    char full[1024], auth[600], errbuf[256];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    struct http_call_opts o = {0};
    struct http_client *hc;
    struct cli c = {0};
    struct buf body;
    uv_loop_t loop;
    int rc = 1;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--node") == 0 && i + 1 < argc) {
            node = argv[++i];
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(argv[i], "--admin-key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (argv[i][0] != '-' && model == NULL) {
            model = argv[i];
        } else {
            fprintf(stderr, "herd pull: unexpected '%s'\n", argv[i]);
            cli_usage(stderr);
            return 2;
        }
    }
    if (model == NULL) {
        cli_usage(stderr);
        return 2;
    }
    if (url == NULL || *url == '\0')
        url = "http://localhost:11435";
    snprintf(full, sizeof(full), "%s/api/pull", url);
    if (key != NULL && *key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        headers[1] = auth;
    }
    buf_init(&body, 4096);
    if (buf_appends(&body, "{\"model\":") != 0 ||
        json_append_str(&body, model, strlen(model)) != 0 ||
        (node != NULL && (buf_appends(&body, ",\"node_id\":") != 0 ||
                          json_append_str(&body, node, strlen(node)) != 0)) ||
        buf_appends(&body, ",\"stream\":true}") != 0) {
        fprintf(stderr, "herd pull: arguments too long\n");
        buf_cleanup(&body);
        return 2;
    }
    c.tty = isatty(STDERR_FILENO);
    ndjson_init(&c.nd, 1u << 20);
    buf_init(&c.errbody, 65536);
    uv_loop_init(&loop);
    hc = http_client_new(&loop);
    o.method = "POST";
    o.url = full;
    o.headers = headers;
    o.body = body.data;
    o.body_len = body.len;
    o.connect_timeout_ms = 10000;
    o.on_response = cli_on_response;
    o.on_data = cli_on_data;
    o.on_done = cli_on_done;
    o.ud = &c;
    if (hc == NULL || http_call_start(hc, &o, errbuf, sizeof(errbuf)) == NULL) {
        fprintf(stderr, "herd pull: %s\n", hc ? errbuf : "out of memory");
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (c.tty)
            fputs("\r\033[K", stderr);
        if (!c.failed && c.success) {
            printf("pulled %s onto %s\n", model, c.node[0] ? c.node : "?");
            rc = 0;
        } else {
            fprintf(stderr, "herd pull: %s\n",
                    c.error[0] ? c.error : "the pull did not finish");
        }
    }
    if (hc != NULL)
        http_client_free(hc, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    ndjson_cleanup(&c.nd);
    buf_cleanup(&c.errbody);
    buf_cleanup(&body);
    return rc;
}
