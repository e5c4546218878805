/*
 * test_failure.c - the failure taxonomy on a table: what is retried, what
 * counts against a node, what is the client's fault, what goes in-band.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "failure.h"

static void
test_table(void **state)
{
    static const struct {
        int err, status;
        bool complete, head_sent;
        enum failure_action action;
        bool fault;
        const char *reason, *trace;
        int answer;
    } t[] = {
        /* success */
        {0, 200, true, true, FAIL_NONE, false, "ok", "completed", 200},
        {0, 200, true, false, FAIL_NONE, false, "ok", "completed", 200},
        /* transport errors: node faults; retried until the head is out */
        {-ECONNREFUSED, 0, false, false, FAIL_RETRY, true, "connect_refused",
         "failed", 502},
        {-ETIMEDOUT, 0, false, false, FAIL_RETRY, true, "timeout", "failed",
         502},
        {-ECONNRESET, 200, false, false, FAIL_RETRY, true, "connection_reset",
         "failed", 502},
        {-ECONNRESET, 200, false, true, FAIL_INBAND, true, "connection_reset",
         "failed", 502},
        {-EPROTO, 200, false, true, FAIL_INBAND, true, "protocol_error",
         "failed", 502},
        {-EIO, 0, false, false, FAIL_RETRY, true, "io_error", "failed", 502},
        /* a stream that ended without its done line */
        {0, 200, false, false, FAIL_RETRY, true, "incomplete", "incomplete",
         502},
        {0, 200, false, true, FAIL_INBAND, true, "incomplete", "incomplete",
         502},
        /* 503 server busy: saturated, not a fault */
        {0, 503, false, false, FAIL_RETRY, false, "busy", "failed", 503},
        /* 5xx: node faults */
        {0, 500, false, false, FAIL_RETRY, true, "http_5xx", "failed", 500},
        {0, 502, false, false, FAIL_RETRY, true, "http_5xx", "failed", 502},
        /* 4xx: the request's fault, returned as is, never retried */
        {0, 400, false, false, FAIL_RETURN, false, "client_error", "failed",
         400},
        {0, 404, false, false, FAIL_RETURN, false, "client_error", "failed",
         404},
        {0, 413, false, false, FAIL_RETURN, false, "client_error", "failed",
         413},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++) {
        struct failure_verdict v = failure_classify(
            t[i].err, t[i].status, t[i].complete, t[i].head_sent);

        assert_int_equal(v.action, t[i].action);
        assert_int_equal(v.node_fault, t[i].fault);
        assert_string_equal(v.reason, t[i].reason);
        assert_string_equal(v.trace_status, t[i].trace);
        assert_int_equal(v.status, t[i].answer);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
