/*
 * parse.c - strict number, boolean, size and duration parsers.
 *
 * Every parser consumes the whole string: no leading blanks, no trailing
 * junk, no silent truncation. They return 0, -EINVAL (malformed) or
 * -ERANGE (well-formed but out of bounds) and put a static reason in
 * *why. parse_go_duration() follows Go's time.ParseDuration step by
 * step, so our flags and the API's keep_alive accept exactly what Ollama
 * accepts.
 */
#include "herd/parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PARSE_U63 (UINT64_C(1) << 63)

static int
parse_fail(const char **why, const char *reason, int rc)
{
    if (why != NULL)
        *why = reason;
    return rc;
}

static int
parse_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Accumulates decimal digits; -ERANGE past UINT64_MAX. */
static int
parse_digits_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    for (; *s != '\0'; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Checks that s is one or more digits only. */
static int
parse_all_digits(const char *s, const char **why)
{
    const char *p;

    if (!parse_is_digit(*s))
        return parse_fail(why, "not a number", -EINVAL);
    for (p = s; *p != '\0'; p++) {
        if (!parse_is_digit(*p))
            return parse_fail(why, "trailing characters", -EINVAL);
    }
    return 0;
}

int
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out,
          const char **why)
{
    uint64_t v;
    int rc;

    rc = parse_all_digits(s, why);
    if (rc != 0)
        return rc;
    if (parse_digits_u64(s, &v) != 0 || v < min || v > max)
        return parse_fail(why, "out of range", -ERANGE);
    *out = v;
    return 0;
}

int
parse_i64(const char *s, int64_t min, int64_t max, int64_t *out,
          const char **why)
{
    bool neg = false;
    uint64_t mag;
    int64_t v;
    int rc;

    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    rc = parse_all_digits(s, why);
    if (rc != 0)
        return rc;
    if (parse_digits_u64(s, &mag) != 0 ||
        mag > (neg ? PARSE_U63 : PARSE_U63 - 1))
        return parse_fail(why, "out of range", -ERANGE);
    if (neg)
        v = mag == PARSE_U63 ? INT64_MIN : -(int64_t)mag;
    else
        v = (int64_t)mag;
    if (v < min || v > max)
        return parse_fail(why, "out of range", -ERANGE);
    *out = v;
    return 0;
}

/* [+-]?(D+(.D*)?|.D+)([eE][+-]?D+)? : no hex, inf, nan or blanks. */
static int
parse_is_decimal(const char *s)
{
    size_t ip = 0, fp = 0;

    if (*s == '+' || *s == '-')
        s++;
    while (parse_is_digit(*s)) {
        s++;
        ip++;
    }
    if (*s == '.') {
        s++;
        while (parse_is_digit(*s)) {
            s++;
            fp++;
        }
    }
    if (ip == 0 && fp == 0)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!parse_is_digit(*s))
            return 0;
        while (parse_is_digit(*s))
            s++;
    }
    return *s == '\0';
}

int
parse_double(const char *s, double min, double max, double *out,
             const char **why)
{
    char *end;
    double v;

    if (!parse_is_decimal(s))
        return parse_fail(why, "not a number", -EINVAL);
    errno = 0;
    v = strtod(s, &end);
    if (*end != '\0')
        return parse_fail(why, "not a number", -EINVAL);
    if (isinf(v) || v < min || v > max)
        return parse_fail(why, "out of range", -ERANGE);
    *out = v;
    return 0;
}

int
parse_bool(const char *s, bool *out, const char **why)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n"};
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return parse_fail(why, "not a boolean", -EINVAL);
}

/* Go's leadingInt: digits into x; -1 when x would exceed 1<<63. */
static int
parse_go_leading_int(const char **sp, uint64_t *x)
{
    const char *s = *sp;
    uint64_t v = 0;

    for (; parse_is_digit(*s); s++) {
        if (v > PARSE_U63 / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > PARSE_U63)
            return -1;
    }
    *x = v;
    *sp = s;
    return 0;
}

/* Go's leadingFraction: digits into x with scale; stops accumulating on
 * overflow instead of failing. */
static void
parse_go_leading_fraction(const char **sp, uint64_t *x, double *scale)
{
    const char *s = *sp;
    bool overflow = false;
    uint64_t v = 0, y;

    *scale = 1;
    for (; parse_is_digit(*s); s++) {
        if (overflow)
            continue;
        if (v > (PARSE_U63 - 1) / 10) {
            overflow = true;
            continue;
        }
        y = v * 10 + (uint64_t)(*s - '0');
        if (y > PARSE_U63) {
            overflow = true;
            continue;
        }
        v = y;
        *scale *= 10;
    }
    *x = v;
    *sp = s;
}

/* Go's unitMap; n is the unit's length in bytes. 0 when unknown. */
static uint64_t
parse_go_unit(const char *u, size_t n)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1},
        {"us", 1000},
        {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000}, /* U+03BC greek mu */
        {"ms", 1000000},
        {"s", UINT64_C(1000000000)},
        {"m", UINT64_C(60000000000)},
        {"h", UINT64_C(3600000000000)},
    };
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
            return units[i].ns;
    }
    return 0;
}

/* One "<number><unit>" element; adds its value to *d. Returns 0, or
 * -EINVAL/-ERANGE with *why set. */
static int
parse_go_element(const char **sp, uint64_t *d, const char **why)
{
    const char *s = *sp, *p, *u;
    uint64_t v = 0, f = 0, unit;
    double scale = 1;
    bool pre, post = false;

    if (!(*s == '.' || parse_is_digit(*s)))
        return parse_fail(why, "invalid duration", -EINVAL);
    p = s;
    if (parse_go_leading_int(&s, &v) != 0)
        return parse_fail(why, "invalid duration", -ERANGE);
    pre = s != p;
    if (*s == '.') {
        s++;
        p = s;
        parse_go_leading_fraction(&s, &f, &scale);
        post = s != p;
    }
    if (!pre && !post)
        return parse_fail(why, "invalid duration", -EINVAL);
    u = s;
    while (*s != '\0' && *s != '.' && !parse_is_digit(*s))
        s++;
    if (s == u)
        return parse_fail(why, "missing unit in duration", -EINVAL);
    unit = parse_go_unit(u, (size_t)(s - u));
    if (unit == 0)
        return parse_fail(why, "unknown unit in duration", -EINVAL);
    if (v > PARSE_U63 / unit)
        return parse_fail(why, "invalid duration", -ERANGE);
    v *= unit;
    if (f > 0) {
        /* float64, as Go does, to be exact for fractions of hours. */
        v += (uint64_t)((double)f * ((double)unit / scale));
        if (v > PARSE_U63)
            return parse_fail(why, "invalid duration", -ERANGE);
    }
    *d += v;
    if (*d > PARSE_U63)
        return parse_fail(why, "invalid duration", -ERANGE);
    *sp = s;
    return 0;
}

int
parse_go_duration(const char *s, int64_t *ns, const char **why)
{
    bool neg = false;
    uint64_t d = 0;
    int rc;

    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (*s == '\0')
        return parse_fail(why, "invalid duration", -EINVAL);
    while (*s != '\0') {
        rc = parse_go_element(&s, &d, why);
        if (rc == -ERANGE)
            *ns = neg ? -INT64_MAX : INT64_MAX; /* saturated */
        if (rc != 0)
            return rc;
    }
    if (neg) {
        *ns = d == PARSE_U63 ? INT64_MIN : -(int64_t)d;
        return 0;
    }
    if (d > PARSE_U63 - 1) {
        *ns = INT64_MAX;
        return parse_fail(why, "invalid duration", -ERANGE);
    }
    *ns = (int64_t)d;
    return 0;
}

int
parse_duration_or_secs(const char *s, int64_t *ns, const char **why)
{
    const char *dwhy = NULL;
    double secs;
    int rc;

    rc = parse_go_duration(s, ns, &dwhy);
    if (rc == 0 || rc == -ERANGE)
        return rc == 0 ? 0 : parse_fail(why, dwhy, rc);
    if (parse_double(s, -HUGE_VAL, HUGE_VAL, &secs, NULL) != 0)
        return parse_fail(why, dwhy, rc);
    secs *= 1e9;
    /* 2^63 is exactly representable; anything at or past it overflows. */
    if (secs >= 9223372036854775808.0 || secs < -9223372036854775808.0) {
        *ns = secs < 0 ? -INT64_MAX : INT64_MAX;
        return parse_fail(why, "invalid duration", -ERANGE);
    }
    *ns = (int64_t)secs;
    return 0;
}

/* Multiplier of a size unit (B optional, any case), or 0 when unknown. */
static uint64_t
parse_size_unit(const char *u)
{
    static const struct {
        const char *name;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000},
        {"kb", 1000},
        {"ki", 1024},
        {"kib", 1024},
        {"m", 1000000},
        {"mb", 1000000},
        {"mi", UINT64_C(1) << 20},
        {"mib", UINT64_C(1) << 20},
        {"g", UINT64_C(1000000000)},
        {"gb", UINT64_C(1000000000)},
        {"gi", UINT64_C(1) << 30},
        {"gib", UINT64_C(1) << 30},
        {"t", UINT64_C(1000000000000)},
        {"tb", UINT64_C(1000000000000)},
        {"ti", UINT64_C(1) << 40},
        {"tib", UINT64_C(1) << 40},
    };
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(units[i].name, u) == 0)
            return units[i].mult;
    }
    return 0;
}

int
parse_size(const char *s, uint64_t *out, const char **why)
{
    const char *p = s, *frac;
    uint64_t ip = 0, fv = 0, pow10 = 1, mult, v, add;

    if (!parse_is_digit(*p))
        return parse_fail(why, "not a size", -EINVAL);
    for (; parse_is_digit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');

        if (ip > (UINT64_MAX - d) / 10)
            return parse_fail(why, "out of range", -ERANGE);
        ip = ip * 10 + d;
    }
    if (*p == '.') {
        frac = ++p;
        /* Nine digits are plenty; later ones are dropped (truncation). */
        for (; parse_is_digit(*p); p++) {
            if (p - frac < 9) {
                fv = fv * 10 + (uint64_t)(*p - '0');
                pow10 *= 10;
            }
        }
        if (p == frac)
            return parse_fail(why, "not a size", -EINVAL);
    }
    mult = parse_size_unit(p);
    if (mult == 0)
        return parse_fail(why, "unknown size unit", -EINVAL);
    if (ip > UINT64_MAX / mult)
        return parse_fail(why, "out of range", -ERANGE);
    v = ip * mult;
    /* fv * mult / pow10 without overflow: fv < pow10 <= 1e9. */
    add = fv * (mult / pow10) + fv * (mult % pow10) / pow10;
    if (add > UINT64_MAX - v)
        return parse_fail(why, "out of range", -ERANGE);
    *out = v + add;
    return 0;
}
