/*
 * failure.c - the failure taxonomy (see failure.h).
 */
#include "failure.h"

#include <errno.h>

const char *
failure_err_reason(int err)
{
    switch (err) {
    case -ECONNREFUSED:
        return "connect_refused";
    case -ETIMEDOUT:
        return "timeout";
    case -ECONNRESET:
        return "connection_reset";
    case -EPROTO:
        return "protocol_error";
    case -EHOSTUNREACH:
        return "unreachable";
    case -E2BIG:
        return "too_large";
    default:
        return "io_error";
    }
}

struct failure_verdict
failure_classify(int err, int status, bool complete, bool head_sent)
{
    struct failure_verdict v = {FAIL_NONE, false, "ok", "completed", 200};

    if (err != 0) {
        v.action = head_sent ? FAIL_INBAND : FAIL_RETRY;
        v.node_fault = true;
        v.reason = failure_err_reason(err);
        v.trace_status = "failed";
        v.status = 502;
        return v;
    }
    if (status == 200) {
        if (complete)
            return v;
        v.action = head_sent ? FAIL_INBAND : FAIL_RETRY;
        v.node_fault = true;
        v.reason = "incomplete";
        v.trace_status = "incomplete";
        v.status = 502;
        return v;
    }
    v.trace_status = "failed";
    v.status = status;
    if (status == 503) {
        v.action = FAIL_RETRY;
        v.reason = "busy";
    } else if (status >= 500) {
        v.action = FAIL_RETRY;
        v.node_fault = true;
        v.reason = "http_5xx";
    } else {
        v.action = FAIL_RETURN;
        v.reason = "client_error";
    }
    return v;
}
