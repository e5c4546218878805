/*
 * test_modelname.c - parameter counts and quantisation types of names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "herd/modelname.h"

static double
count(const char *s, const char *units)
{
    double v = -1;

    assert_int_equal(modelname_count(s, strlen(s), units, &v), 0);
    return v;
}

static void
test_counts(void **state)
{
    static const char *const bad[] = {"b", "0b", "-1b",  "1.2.3b", "xb",
                                      "7", "7q", "1e3b", ""};
    double v;

    (void)state;
    assert_true(count("27b", "bmt") == 27.0);
    assert_true(count("1.5B", "bmt") == 1.5);
    assert_true(fabs(count("567m", "bmt") - 0.567) < 1e-12);
    assert_true(count("1t", "bmt") == 1000.0);
    assert_true(fabs(count("4k", "bmtk") - 4e-6) < 1e-18);
    /* The scorer's unit set refuses "32k", a context size in tags. */
    assert_int_equal(modelname_count("32k", 3, "bmt", &v), -EINVAL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(modelname_count(bad[i], strlen(bad[i]), "bmtk", &v),
                         -EINVAL);
    assert_int_equal(modelname_decimal("0", 1, &v), 0);
    assert_true(v == 0.0);
    assert_int_equal(modelname_decimal("1.", 2, &v), 0);
    assert_int_equal(modelname_decimal(".", 1, &v), -EINVAL);
}

static void
test_quant(void **state)
{
    const char *canon = NULL;
    double bits = 0;

    (void)state;
    assert_int_equal(modelname_quant("q4_K_M", 6, &canon, &bits), 0);
    assert_string_equal(canon, "Q4_K_M");
    assert_true(bits == 4.85);
    assert_int_equal(modelname_quant("fp16", 4, &canon, &bits), 0);
    assert_string_equal(canon, "F16");
    assert_true(bits == 16.0);
    assert_int_equal(modelname_quant("q8_0xyz", 4, NULL, &bits), 0);
    assert_true(bits == 8.5); /* only the first n bytes count */
    assert_int_equal(modelname_quant("q9_9", 4, NULL, &bits), -EINVAL);
    assert_int_equal(modelname_quant("", 0, NULL, &bits), -EINVAL);
    assert_int_equal(modelname_quant("q4_k_m_too_long_x", 17, NULL, &bits),
                     -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_quant),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
