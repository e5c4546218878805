/*
 * simctl.c - herd-sim's own control endpoints, for tests and demos:
 * POST/DELETE /_sim/fault (fault injection at run time) and GET
 * /_sim/state (runners, queue, counters, active faults).
 */
#include "sim.h"

#include <inttypes.h>
#include <string.h>

#include "herd/log.h"

static void
simctl_relisten(uv_timer_t *t)
{
    struct sim *sim = t->data;

    if (http_server_listen(sim->server, true) != 0)
        log_error("fault refuse: could not listen again");
    else
        log_info("fault refuse: listening again");
}

/* Stops listening now and re-opens after duration_ns. */
void
simctl_refuse(struct sim *sim, int64_t duration_ns)
{
    log_info("fault refuse: not listening for %" PRId64 " ms",
             duration_ns / 1000000);
    (void)http_server_listen(sim->server, false);
    uv_timer_start(&sim->refuse_timer, simctl_relisten,
                   (uint64_t)(duration_ns / 1000000), 0);
}

static void
simctl_answer_faults(struct sim *sim, struct http_req *req)
{
    struct buf b;
    int rc;

    buf_init(&b, 1u << 16);
    rc = buf_appends(&b, "{\"faults\":");
    if (rc == 0)
        rc = fault_dump_json(&sim->faults, &b);
    if (rc == 0)
        rc = buf_appends(&b, "}");
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
}

void
simctl_fault(struct sim *sim, struct http_req *req)
{
    struct fault f;
    cJSON *body = NULL;
    char err[256];
    int rc;

    if (strcmp(http_req_method(req), "DELETE") == 0) {
        fault_clear(&sim->faults);
        simctl_answer_faults(sim, req);
        return;
    }
    if (api_parse_body(req, false, "sim.Fault", &body) != 0)
        return;
    rc = fault_parse_json(body, &f, err, sizeof(err));
    cJSON_Delete(body);
    if (rc < 0) {
        api_error(req, 400, "%s", err);
        return;
    }
    if (rc == 1) { /* kind "none" */
        fault_clear(&sim->faults);
    } else if (f.kind == FAULT_REFUSE) {
        /* Answer first, then stop listening. */
        simctl_answer_faults(sim, req);
        simctl_refuse(sim, f.duration_ns);
        return;
    } else if (fault_add(&sim->faults, &f) != 0) {
        api_error(req, 400, "too many active faults (%d)", FAULT_MAX);
        return;
    }
    log_info("fault %s set (count %lld)", fault_kind_name(f.kind),
             (long long)f.count);
    simctl_answer_faults(sim, req);
}

void
simctl_state(struct sim *sim, struct http_req *req)
{
    struct sched_ps ps[64];
    struct sched_stats st;
    size_t n = sched_ps(sim->sched, ps, 64);
    struct buf b;
    int rc;

    if (n > 64)
        n = 64;
    sched_get_stats(sim->sched, &st);
    buf_init(&b, 1u << 20);
    rc = buf_appends(&b, "{\"runners\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = buf_appends(&b, i ? ",{\"model\":" : "{\"model\":");
        if (rc == 0)
            rc = json_append_str(&b, ps[i].model->name,
                                 strlen(ps[i].model->name));
        if (rc == 0)
            rc = buf_appendf(&b,
                             ",\"context_length\":%u,\"parallel\":%d,"
                             "\"in_use\":%d,\"loading\":%s}",
                             ps[i].context_length, ps[i].parallel, ps[i].in_use,
                             ps[i].loading ? "true" : "false");
    }
    if (rc == 0)
        rc = buf_appendf(&b,
                         "],\"pending\":%zu,\"active\":%zu,\"stats\":{"
                         "\"loads\":%" PRIu64 ",\"unloads\":%" PRIu64
                         ",\"evictions\":%" PRIu64 ",\"reloads\":%" PRIu64
                         ",\"rejected\":%" PRIu64 "},\"faults\":",
                         sched_pending(sim->sched), sim->active_gens, st.loads,
                         st.unloads, st.evictions, st.reloads, st.rejected);
    if (rc == 0)
        rc = fault_dump_json(&sim->faults, &b);
    if (rc == 0)
        rc = buf_appends(&b, "}");
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
}
