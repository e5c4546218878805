/*
 * test_modelcat.c - model categories from names, as ollama-herd's
 * classify_model falls back to, used by the VRAM fallback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "modelcat.h"

static void
test_classify(void **state)
{
    static const char *const cases[][2] = {
        {"qwen2.5-coder:7b", "coding"},   {"codestral:22b", "coding"},
        {"devstral:24b", "coding"},       {"deepseek-r1:70b", "reasoning"},
        {"QwQ:32b", "reasoning"},         {"phi-4:14b", "reasoning"},
        {"mistral-nemo:12b", "creative"}, {"llava:13b", "vision"},
        {"moondream:latest", "vision"},   {"nomic-embed-text", "embedding"},
        {"x/z-image-turbo", "image"},     {"llama3.2:3b", "general"},
        {"qwen3:8b", "general"},          {"", "general"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        assert_string_equal(modelcat_classify(cases[i][0]), cases[i][1]);
    assert_string_equal(modelcat_classify(NULL), "general");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
