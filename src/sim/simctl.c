/*
 * simctl.c - herd-sim's own control endpoints, for tests and demos:
 * POST/DELETE /_sim/fault (fault injection at run time), GET /_sim/state
 * (runners, queue, counters, active faults) and GET/DELETE
 * /_sim/requests (what the last inference requests asked for, so that a
 * test of a router can check what reached the node).
 */
#include "gen.h"

#include <inttypes.h>
#include <stdlib.h>
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
                         "],\"pending\":%zu,\"active\":%zu,\"peak_active\":%zu,"
                         "\"stats\":{"
                         "\"loads\":%" PRIu64 ",\"unloads\":%" PRIu64
                         ",\"evictions\":%" PRIu64 ",\"reloads\":%" PRIu64
                         ",\"rejected\":%" PRIu64 "},\"faults\":",
                         sched_pending(sim->sched), sim->active_gens,
                         sim->peak_gens, st.loads, st.unloads, st.evictions,
                         st.reloads, st.rejected);
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

static const char *const api_names[] = {
    "/api/generate",   "/api/chat",  "/v1/chat/completions",
    "/v1/completions", "/api/embed", "/api/embeddings",
    "/v1/embeddings",
};

/* The sampling value a request ends up with: the native "options" value,
 * or the /v1 top-level one (whose defaults differ: 1.0, not Ollama's). */
static double
seen_sampling(const struct gen_spec *spec, const char *key, double native,
              double openai)
{
    bool oai = spec->api == GEN_OAI_CHAT || spec->api == GEN_OAI_COMPLETION;
    const cJSON *src = oai ? spec->body : json_get(spec->body, "options");

    return json_get_num(src, key, oai ? openai : native);
}

void
simctl_record(struct sim *sim, struct http_req *req,
              const struct gen_spec *spec)
{
    const char *host = http_req_header(req, "Host");
    struct buf b;
    size_t slot;
    int rc;

    buf_init(&b, 1u << 16);
    rc = buf_appendf(&b, "{\"seq\":%" PRIu64 ",\"endpoint\":\"%s\",\"model\":",
                     ++sim->seen_total, api_names[spec->api]);
    if (rc == 0)
        rc = json_append_str(&b, spec->model_echo, strlen(spec->model_echo));
    if (rc == 0)
        rc = buf_appendf(
            &b,
            ",\"stream\":%s,\"num_ctx\":%" PRId64 ",\"num_predict\":%" PRId64
            ",\"temperature\":%g,\"top_p\":%g,\"keep_alive_ns\":",
            spec->stream ? "true" : "false", spec->ro.num_ctx,
            spec->tp.num_predict, seen_sampling(spec, "temperature", 0.8, 1.0),
            seen_sampling(spec, "top_p", 0.9, 1.0));
    if (rc == 0)
        rc = spec->has_keep_alive
                 ? buf_appendf(&b, "%" PRId64, spec->keep_alive)
                 : buf_appends(&b, "null");
    if (rc == 0)
        rc = buf_appends(&b, ",\"host\":");
    if (rc == 0)
        rc = host ? json_append_str(&b, host, strlen(host))
                  : buf_appends(&b, "null");
    if (rc == 0)
        rc = buf_appends(&b, "}");
    if (rc != 0) {
        buf_cleanup(&b);
        return;
    }
    slot = (sim->seen_head + sim->n_seen) % SIM_SEEN_MAX;
    if (sim->n_seen == SIM_SEEN_MAX) { /* full: drop the oldest */
        free(sim->seen[sim->seen_head]);
        sim->seen_head = (sim->seen_head + 1) % SIM_SEEN_MAX;
        sim->n_seen--;
    }
    sim->seen[slot] = buf_take(&b, NULL);
    if (sim->seen[slot] != NULL)
        sim->n_seen++;
    buf_cleanup(&b);
}

void
simctl_cleanup(struct sim *sim)
{
    for (size_t i = 0; i < sim->n_seen; i++)
        free(sim->seen[(sim->seen_head + i) % SIM_SEEN_MAX]);
    sim->n_seen = 0;
    sim->seen_head = 0;
}

void
simctl_requests(struct sim *sim, struct http_req *req)
{
    struct buf b;
    int rc;

    if (strcmp(http_req_method(req), "DELETE") == 0)
        simctl_cleanup(sim);
    buf_init(&b, (SIM_SEEN_MAX + 1) * (1u << 16));
    rc = buf_appends(&b, "{\"requests\":[");
    for (size_t i = 0; rc == 0 && i < sim->n_seen; i++) {
        if (i > 0)
            rc = buf_appends(&b, ",");
        if (rc == 0)
            rc =
                buf_appends(&b, sim->seen[(sim->seen_head + i) % SIM_SEEN_MAX]);
    }
    if (rc == 0)
        rc = buf_appendf(&b, "],\"total\":%" PRIu64 "}", sim->seen_total);
    if (rc == 0)
        api_json(req, 200, &b);
    else
        api_error(req, 500, "out of memory");
    buf_cleanup(&b);
}
