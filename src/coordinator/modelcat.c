/*
 * modelcat.c - a model's category from its name (see modelcat.h).
 */
#include "modelcat.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

static const struct {
    const char *needle;
    const char *category;
} rules[] = {
    /* first match wins; lower-case substrings of the name */
    {"embed", "embedding"},       {"bge-", "embedding"},
    {"coder", "coding"},          {"codestral", "coding"},
    {"devstral", "coding"},       {"starcoder", "coding"},
    {"codellama", "coding"},      {"deepseek-r1", "reasoning"},
    {"phi-4", "reasoning"},       {"phi4-reasoning", "reasoning"},
    {"qwq", "reasoning"},         {"reasoning", "reasoning"},
    {"gpt-oss", "reasoning"},     {"creative", "creative"},
    {"mistral-nemo", "creative"}, {"story", "creative"},
    {"vision", "vision"},         {"llava", "vision"},
    {"moondream", "vision"},      {"minicpm-v", "vision"},
};

const char *
modelcat_classify(const char *model)
{
    char low[256];
    size_t n = 0;

    if (model == NULL)
        return "general";
    for (; model[n] != '\0' && n < sizeof(low) - 1; n++)
        low[n] = (char)tolower((unsigned char)model[n]);
    low[n] = '\0';
    if (strncmp(low, "x/", 2) == 0)
        return "image";
    for (size_t i = 0; i < sizeof(rules) / sizeof(*rules); i++) {
        if (strstr(low, rules[i].needle) != NULL)
            return rules[i].category;
    }
    return "general";
}
