/*
 * modelname.c - parameter counts and quantisation types of model names
 * (see modelname.h).
 */
#include "herd/modelname.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bits per weight of the GGUF quantisation types (llama.cpp's figures). */
static const struct {
    const char *name;
    double bits;
} modelname_quants[] = {
    {"Q2_K", 3.35},  {"Q3_K_S", 3.5},   {"Q3_K_M", 3.91},  {"Q3_K_L", 4.27},
    {"Q4_0", 4.55},  {"Q4_1", 5.0},     {"Q4_K_S", 4.58},  {"Q4_K_M", 4.85},
    {"Q5_0", 5.54},  {"Q5_1", 6.0},     {"Q5_K_S", 5.54},  {"Q5_K_M", 5.69},
    {"Q6_K", 6.56},  {"Q8_0", 8.5},     {"F16", 16.0},     {"BF16", 16.0},
    {"F32", 32.0},   {"IQ2_XXS", 2.06}, {"IQ3_XXS", 3.06}, {"IQ4_XS", 4.25},
    {"IQ4_NL", 4.5}, {"MXFP4", 4.25},
};

int
modelname_decimal(const char *p, size_t n, double *out)
{
    char tmp[32];
    char *end = NULL;
    bool dot = false, digit = false;

    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.' && !dot)
            dot = true;
        else if (isdigit((unsigned char)p[i]))
            digit = true;
        else
            return -EINVAL;
    }
    if (!digit)
        return -EINVAL;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    *out = strtod(tmp, &end);
    return *end == '\0' && isfinite(*out) ? 0 : -EINVAL;
}

int
modelname_count(const char *p, size_t n, const char *units, double *out)
{
    int unit;
    double v, mul;

    if (n < 2)
        return -EINVAL;
    unit = tolower((unsigned char)p[n - 1]);
    if (strchr(units, unit) == NULL)
        return -EINVAL;
    switch (unit) {
    case 't':
        mul = 1e3;
        break;
    case 'b':
        mul = 1.0;
        break;
    case 'm':
        mul = 1e-3;
        break;
    case 'k':
        mul = 1e-6;
        break;
    default:
        return -EINVAL;
    }
    if (modelname_decimal(p, n - 1, &v) != 0 || v <= 0)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int
modelname_quant(const char *s, size_t n, const char **canon, double *bits)
{
    char up[16];

    if (n == 0 || n >= sizeof(up))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        up[i] = (char)toupper((unsigned char)s[i]);
    up[n] = '\0';
    if (strcmp(up, "FP16") == 0)
        memcpy(up, "F16", 4);
    else if (strcmp(up, "FP32") == 0)
        memcpy(up, "F32", 4);
    for (size_t i = 0; i < sizeof(modelname_quants) / sizeof(*modelname_quants);
         i++) {
        if (strcmp(modelname_quants[i].name, up) == 0) {
            if (canon != NULL)
                *canon = modelname_quants[i].name;
            if (bits != NULL)
                *bits = modelname_quants[i].bits;
            return 0;
        }
    }
    return -EINVAL;
}
