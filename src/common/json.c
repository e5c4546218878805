/*
 * json.c - JSON helpers over cJSON, with caps and Go-compatible errors.
 *
 * json_parse() first runs a byte-at-a-time scanner that is a transcription
 * of Go's encoding/json scanner (scanner.go) driven the way json.Decoder
 * drives it: the first syntax error gets Go's exact text, input that ends
 * mid-value is "unexpected EOF", and bytes after the first complete value
 * are ignored. Only a document that passed goes to cJSON, and only its
 * validated prefix, so nesting depth is capped before cJSON allocates.
 * json_append_str() mirrors Go's appendString with HTML escaping. This is
 * the only module that includes cJSON's header for parsing and printing.
 */
#include "herd/json.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Results of one scanner step (Go's scanContinue, scanEnd, ...). */
enum json_scan_op {
    JSON_SCAN_CONTINUE,
    JSON_SCAN_SKIP_SPACE,
    JSON_SCAN_BEGIN,      /* value, object or array began */
    JSON_SCAN_END_OBJECT, /* '}' closed an object (scanEnd is one late) */
    JSON_SCAN_END_ARRAY,
    JSON_SCAN_END,   /* top-level value ended before this byte */
    JSON_SCAN_ERROR, /* err/errlen hold the message */
    JSON_SCAN_DEPTH, /* nesting deeper than max_depth */
};

/* What the innermost open container expects next (Go's parseState). */
enum json_parse_state {
    JSON_PS_OBJECT_KEY,
    JSON_PS_OBJECT_VALUE,
    JSON_PS_ARRAY_VALUE,
};

struct json_scan;
typedef int (*json_step_cb)(struct json_scan *s, unsigned char c);

struct json_scan {
    json_step_cb step;
    unsigned char *stack; /* owned: one json_parse_state per open level */
    int depth;
    int max_depth;
    char *err; /* borrowed: caller's errbuf */
    size_t errlen;
};

static int json_begin_value(struct json_scan *s, unsigned char c);
static int json_end_value(struct json_scan *s, unsigned char c);

static int
json_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Go's quoteChar(): the byte as a rune, quoted by strconv.Quote with the
 * double quotes swapped for single ones. Bytes >= 0x80 are Latin-1 runes
 * (Go converts the byte, not a UTF-8 sequence), printed as UTF-8 when
 * printable and as \u00XX when not (C1 controls, NBSP, soft hyphen).
 */
static void
json_quote_char(unsigned char c, char *out, size_t n)
{
    static const char *const ctl[] = {
        [7] = "\\a",  [8] = "\\b",  [9] = "\\t",  [10] = "\\n",
        [11] = "\\v", [12] = "\\f", [13] = "\\r",
    };

    if (c == '\'')
        snprintf(out, n, "'\\''");
    else if (c == '\\')
        snprintf(out, n, "'\\\\'");
    else if (c < sizeof(ctl) / sizeof(ctl[0]) && ctl[c] != NULL)
        snprintf(out, n, "'%s'", ctl[c]);
    else if (c < 0x20 || c == 0x7f)
        snprintf(out, n, "'\\x%02x'", c);
    else if (c < 0x80)
        snprintf(out, n, "'%c'", c);
    else if (c < 0xa1 || c == 0xad)
        snprintf(out, n, "'\\u%04x'", c);
    else
        snprintf(out, n, "'%c%c'", 0xc0 | (c >> 6), 0x80 | (c & 0x3f));
}

static int
json_error(struct json_scan *s, unsigned char c, const char *context)
{
    char q[16];

    json_quote_char(c, q, sizeof(q));
    snprintf(s->err, s->errlen, "invalid character %s %s", q, context);
    return JSON_SCAN_ERROR;
}

static int
json_push(struct json_scan *s, enum json_parse_state ps)
{
    if (s->depth >= s->max_depth) {
        snprintf(s->err, s->errlen, "exceeded max depth");
        return JSON_SCAN_DEPTH;
    }
    s->stack[s->depth++] = (unsigned char)ps;
    return JSON_SCAN_BEGIN;
}

/* The literal states: each expects one byte, then hands over to next. */
static int
json_expect(struct json_scan *s, unsigned char c, unsigned char want,
            json_step_cb next, const char *context)
{
    if (c == want) {
        s->step = next;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, context);
}

static int
json_true3(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'e', json_end_value,
                       "in literal true (expecting 'e')");
}

static int
json_true2(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'u', json_true3,
                       "in literal true (expecting 'u')");
}

static int
json_true1(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'r', json_true2,
                       "in literal true (expecting 'r')");
}

static int
json_false4(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'e', json_end_value,
                       "in literal false (expecting 'e')");
}

static int
json_false3(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 's', json_false4,
                       "in literal false (expecting 's')");
}

static int
json_false2(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'l', json_false3,
                       "in literal false (expecting 'l')");
}

static int
json_false1(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'a', json_false2,
                       "in literal false (expecting 'a')");
}

static int
json_null3(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'l', json_end_value,
                       "in literal null (expecting 'l')");
}

static int
json_null2(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'l', json_null3,
                       "in literal null (expecting 'l')");
}

static int
json_null1(struct json_scan *s, unsigned char c)
{
    return json_expect(s, c, 'u', json_null2,
                       "in literal null (expecting 'u')");
}

/* Numbers: Go's stateNeg, state1, state0, stateDot, stateDot0, stateE,
 * stateESign, stateE0. */
static int
json_num_e0(struct json_scan *s, unsigned char c)
{
    if (json_is_digit(c))
        return JSON_SCAN_CONTINUE;
    return json_end_value(s, c);
}

static int
json_num_esign(struct json_scan *s, unsigned char c)
{
    if (json_is_digit(c)) {
        s->step = json_num_e0;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in exponent of numeric literal");
}

static int
json_num_e(struct json_scan *s, unsigned char c)
{
    if (c == '+' || c == '-') {
        s->step = json_num_esign;
        return JSON_SCAN_CONTINUE;
    }
    return json_num_esign(s, c);
}

static int
json_num_dot0(struct json_scan *s, unsigned char c)
{
    if (json_is_digit(c))
        return JSON_SCAN_CONTINUE;
    if (c == 'e' || c == 'E') {
        s->step = json_num_e;
        return JSON_SCAN_CONTINUE;
    }
    return json_end_value(s, c);
}

static int
json_num_dot(struct json_scan *s, unsigned char c)
{
    if (json_is_digit(c)) {
        s->step = json_num_dot0;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "after decimal point in numeric literal");
}

static int
json_num_0(struct json_scan *s, unsigned char c)
{
    if (c == '.') {
        s->step = json_num_dot;
        return JSON_SCAN_CONTINUE;
    }
    if (c == 'e' || c == 'E') {
        s->step = json_num_e;
        return JSON_SCAN_CONTINUE;
    }
    return json_end_value(s, c);
}

static int
json_num_1(struct json_scan *s, unsigned char c)
{
    if (json_is_digit(c))
        return JSON_SCAN_CONTINUE;
    return json_num_0(s, c);
}

static int
json_num_neg(struct json_scan *s, unsigned char c)
{
    if (c == '0') {
        s->step = json_num_0;
        return JSON_SCAN_CONTINUE;
    }
    if (c >= '1' && c <= '9') {
        s->step = json_num_1;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in numeric literal");
}

/* Strings: Go's stateInString, stateInStringEsc, stateInStringEscU*. */
static int json_in_string(struct json_scan *s, unsigned char c);

static int
json_is_hex(unsigned char c)
{
    return json_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int
json_esc_u4(struct json_scan *s, unsigned char c)
{
    if (json_is_hex(c)) {
        s->step = json_in_string;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in \\u hexadecimal character escape");
}

static int
json_esc_u3(struct json_scan *s, unsigned char c)
{
    if (json_is_hex(c)) {
        s->step = json_esc_u4;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in \\u hexadecimal character escape");
}

static int
json_esc_u2(struct json_scan *s, unsigned char c)
{
    if (json_is_hex(c)) {
        s->step = json_esc_u3;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in \\u hexadecimal character escape");
}

static int
json_esc_u1(struct json_scan *s, unsigned char c)
{
    if (json_is_hex(c)) {
        s->step = json_esc_u2;
        return JSON_SCAN_CONTINUE;
    }
    return json_error(s, c, "in \\u hexadecimal character escape");
}

static int
json_in_string_esc(struct json_scan *s, unsigned char c)
{
    switch (c) {
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
    case '\\':
    case '/':
    case '"':
        s->step = json_in_string;
        return JSON_SCAN_CONTINUE;
    case 'u':
        s->step = json_esc_u1;
        return JSON_SCAN_CONTINUE;
    default:
        return json_error(s, c, "in string escape code");
    }
}

static int
json_in_string(struct json_scan *s, unsigned char c)
{
    if (c == '"') {
        s->step = json_end_value;
        return JSON_SCAN_CONTINUE;
    }
    if (c == '\\') {
        s->step = json_in_string_esc;
        return JSON_SCAN_CONTINUE;
    }
    if (c < 0x20)
        return json_error(s, c, "in string literal");
    return JSON_SCAN_CONTINUE;
}

/* After a complete value at the top level: the value ended before c. Go
 * complains about non-space bytes here only on the next call, which the
 * Decoder never makes, so trailing data is ignored. */
static int
json_end_top(struct json_scan *s, unsigned char c)
{
    (void)s;
    (void)c;
    return JSON_SCAN_END;
}

static int
json_begin_string(struct json_scan *s, unsigned char c)
{
    if (json_is_space(c))
        return JSON_SCAN_SKIP_SPACE;
    if (c == '"') {
        s->step = json_in_string;
        return JSON_SCAN_BEGIN;
    }
    return json_error(s, c, "looking for beginning of object key string");
}

static int
json_begin_string_or_empty(struct json_scan *s, unsigned char c)
{
    if (json_is_space(c))
        return JSON_SCAN_SKIP_SPACE;
    if (c == '}') {
        s->stack[s->depth - 1] = JSON_PS_OBJECT_VALUE;
        return json_end_value(s, c);
    }
    return json_begin_string(s, c);
}

static int
json_begin_value_or_empty(struct json_scan *s, unsigned char c)
{
    if (json_is_space(c))
        return JSON_SCAN_SKIP_SPACE;
    if (c == ']')
        return json_end_value(s, c);
    return json_begin_value(s, c);
}

static int
json_begin_value(struct json_scan *s, unsigned char c)
{
    static const json_step_cb lit[256] = {
        ['"'] = json_in_string, ['-'] = json_num_neg, ['0'] = json_num_0,
        ['t'] = json_true1,     ['f'] = json_false1,  ['n'] = json_null1,
        ['1'] = json_num_1,     ['2'] = json_num_1,   ['3'] = json_num_1,
        ['4'] = json_num_1,     ['5'] = json_num_1,   ['6'] = json_num_1,
        ['7'] = json_num_1,     ['8'] = json_num_1,   ['9'] = json_num_1,
    };

    if (json_is_space(c))
        return JSON_SCAN_SKIP_SPACE;
    if (c == '{') {
        s->step = json_begin_string_or_empty;
        return json_push(s, JSON_PS_OBJECT_KEY);
    }
    if (c == '[') {
        s->step = json_begin_value_or_empty;
        return json_push(s, JSON_PS_ARRAY_VALUE);
    }
    if (lit[c] != NULL) {
        s->step = lit[c];
        return JSON_SCAN_BEGIN;
    }
    return json_error(s, c, "looking for beginning of value");
}

static int
json_end_value(struct json_scan *s, unsigned char c)
{
    unsigned char *ps;

    if (s->depth == 0) {
        s->step = json_end_top;
        return json_end_top(s, c);
    }
    if (json_is_space(c)) {
        s->step = json_end_value;
        return JSON_SCAN_SKIP_SPACE;
    }
    ps = &s->stack[s->depth - 1];
    switch (*ps) {
    case JSON_PS_OBJECT_KEY:
        if (c == ':') {
            *ps = JSON_PS_OBJECT_VALUE;
            s->step = json_begin_value;
            return JSON_SCAN_CONTINUE;
        }
        return json_error(s, c, "after object key");
    case JSON_PS_OBJECT_VALUE:
        if (c == ',') {
            *ps = JSON_PS_OBJECT_KEY;
            s->step = json_begin_string;
            return JSON_SCAN_CONTINUE;
        }
        if (c == '}') {
            s->depth--;
            s->step = json_end_value;
            return JSON_SCAN_END_OBJECT;
        }
        return json_error(s, c, "after object key:value pair");
    default:
        if (c == ',') {
            s->step = json_begin_value;
            return JSON_SCAN_CONTINUE;
        }
        if (c == ']') {
            s->depth--;
            s->step = json_end_value;
            return JSON_SCAN_END_ARRAY;
        }
        return json_error(s, c, "after array element");
    }
}

/*
 * Json.Decoder.readValue: scans until the first value is complete. Sets
 * *end to the length of the value (leading blanks included). Returns 0,
 * -ENODATA, -EINVAL or -E2BIG.
 */
static int
json_scan_value(struct json_scan *s, const char *p, size_t len, size_t *end)
{
    bool nonspace = false;
    size_t i;
    int op;

    for (i = 0; i < len; i++) {
        unsigned char c;

        if (s->step == json_in_string) {
            /* inside a string, a plain byte changes nothing: skip the
             * run without a call per byte (most of a document) */
            while (i < len && (unsigned char)p[i] >= 0x20 && p[i] != '"' &&
                   p[i] != '\\')
                i++;
            if (i == len)
                break;
        }
        c = (unsigned char)p[i];
        nonspace = nonspace || !json_is_space(c);
        op = s->step(s, c);
        if (op == JSON_SCAN_END) {
            *end = i;
            return 0;
        }
        if ((op == JSON_SCAN_END_OBJECT || op == JSON_SCAN_END_ARRAY) &&
            json_end_value(s, ' ') == JSON_SCAN_END) {
            *end = i + 1;
            return 0;
        }
        if (op == JSON_SCAN_ERROR)
            return -EINVAL;
        if (op == JSON_SCAN_DEPTH)
            return -E2BIG;
    }
    /* EOF: a pending number or literal may end here. */
    if (s->step(s, ' ') == JSON_SCAN_END) {
        *end = len;
        return 0;
    }
    snprintf(s->err, s->errlen, "%s", nonspace ? "unexpected EOF" : "EOF");
    return nonspace ? -EINVAL : -ENODATA;
}

int
json_parse(const char *s, size_t len, int max_depth, cJSON **out, char *errbuf,
           size_t errlen)
{
    char dummy[1];
    struct json_scan sc = {0};
    size_t end = 0;
    cJSON *root;
    int rc;

    *out = NULL;
    if (errbuf == NULL || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof(dummy);
    }
    errbuf[0] = '\0';
    if (max_depth <= 0)
        max_depth = JSON_DEFAULT_MAX_DEPTH;
    sc.step = json_begin_value;
    sc.max_depth = max_depth;
    sc.err = errbuf;
    sc.errlen = errlen;
    /* Depth can never exceed the byte count, so a huge max_depth does
     * not mean a huge allocation. */
    sc.stack = malloc((size_t)max_depth < len ? (size_t)max_depth : len + 1);
    if (sc.stack == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = json_scan_value(&sc, s, len, &end);
    if (rc != 0)
        goto out;
    root = cJSON_ParseWithLength(s, end);
    if (root == NULL) {
        /* Valid for Go but not for cJSON: a lone UTF-16 surrogate escape
         * (Go substitutes U+FFFD), nesting past CJSON_NESTING_LIMIT, or
         * an allocation failure. */
        snprintf(errbuf, errlen, "invalid JSON document");
        rc = -EINVAL;
        goto out;
    }
    *out = root;
out:
    free(sc.stack);
    return rc;
}

const char *
json_go_kind(const cJSON *v)
{
    if (v == NULL || cJSON_IsNull(v))
        return "null";
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsNumber(v))
        return "number";
    if (cJSON_IsBool(v))
        return "bool";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "invalid";
}

/*
 * json_print writes what cJSON_PrintUnformatted() writes, byte for byte
 * (tests/unit/test_json.c compares them), without its costs: cJSON
 * prints every number with sprintf and reads it back with sscanf, and
 * builds the text in a buffer of its own that is then copied.
 */
#define JSON_PRINT_MAX_DEPTH 1000

static int
json_print_str(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    const unsigned char *run = p;
    int rc;

    if ((rc = buf_append(b, "\"", 1)) != 0)
        return rc;
    for (;; p++) {
        char esc[6];
        size_t n = 2;

        if (*p >= 0x20 && *p != '"' && *p != '\\')
            continue;
        if (p > run && (rc = buf_append(b, run, (size_t)(p - run))) != 0)
            return rc;
        if (*p == '\0')
            break;
        esc[0] = '\\';
        switch (*p) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            n = 6;
        }
        if ((rc = buf_append(b, esc, n)) != 0)
            return rc;
        run = p + 1;
    }
    return buf_append(b, "\"", 1);
}

static int
json_print_num(struct buf *b, const cJSON *v)
{
    double d = v->valuedouble, back;
    char tmp[32];
    int n;

    if (isnan(d) || isinf(d))
        return buf_append(b, "null", 4);
    if (d == 0 && signbit(d))
        return buf_append(b, "-0", 2);
    if (d == floor(d) && fabs(d) < 1e15) /* what "%1.15g" writes then */
        return buf_append_i64(b, (long long)d);
    n = snprintf(tmp, sizeof(tmp), "%1.15g", d);
    back = strtod(tmp, NULL);
    if (n < 0 || (size_t)n >= sizeof(tmp) ||
        fabs(back - d) >
            (fabs(back) > fabs(d) ? fabs(back) : fabs(d)) * DBL_EPSILON)
        n = snprintf(tmp, sizeof(tmp), "%1.17g", d);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return buf_append(b, tmp, (size_t)n);
}

static int
json_print_value(const cJSON *v, struct buf *b, int depth)
{
    const cJSON *c;
    int rc = 0;

    if (depth > JSON_PRINT_MAX_DEPTH)
        return -E2BIG;
    switch (v->type & 0xff) {
    case cJSON_NULL:
        return buf_append(b, "null", 4);
    case cJSON_False:
        return buf_append(b, "false", 5);
    case cJSON_True:
        return buf_append(b, "true", 4);
    case cJSON_Number:
        return json_print_num(b, v);
    case cJSON_String:
        return json_print_str(b, v->valuestring);
    case cJSON_Raw:
        return v->valuestring ? buf_appends(b, v->valuestring) : -EINVAL;
    case cJSON_Array:
    case cJSON_Object: {
        bool obj = (v->type & 0xff) == cJSON_Object;

        if ((rc = buf_append(b, obj ? "{" : "[", 1)) != 0)
            return rc;
        for (c = v->child; c != NULL; c = c->next) {
            if (c != v->child && (rc = buf_append(b, ",", 1)) != 0)
                return rc;
            if (obj) {
                if (c->string == NULL)
                    return -EINVAL;
                if ((rc = json_print_str(b, c->string)) != 0 ||
                    (rc = buf_append(b, ":", 1)) != 0)
                    return rc;
            }
            if ((rc = json_print_value(c, b, depth + 1)) != 0)
                return rc;
        }
        return buf_append(b, obj ? "}" : "]", 1);
    }
    default:
        return -EINVAL;
    }
}

int
json_print(const cJSON *v, struct buf *b)
{
    size_t mark = b->len;
    int rc;

    if (v == NULL)
        return -EINVAL;
    rc = json_print_value(v, b, 0);
    if (rc != 0) {
        b->len = mark; /* nothing half-printed stays */
        if (b->data != NULL)
            b->data[mark] = '\0';
    }
    return rc;
}

/* Go's utf8.DecodeRune acceptance: length of a valid sequence at p, or 0
 * (then Go consumes one byte as RuneError). *cp gets the code point. */
static size_t
json_utf8_decode(const unsigned char *p, size_t n, unsigned *cp)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, i;
    unsigned v;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        lo = p[0] == 0xe0 ? 0xa0 : 0x80;
        hi = p[0] == 0xed ? 0x9f : 0xbf;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        lo = p[0] == 0xf0 ? 0x90 : 0x80;
        hi = p[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    v = p[0] & (0x7fu >> len);
    for (i = 1; i < len; i++) {
        if (i > 1 && (p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    *cp = v;
    return len;
}

/* The escape for one ASCII byte, or NULL when Go writes it as is. */
static const char *
json_ascii_escape(unsigned char c, char tmp[8])
{
    static const char hex[] = "0123456789abcdef";

    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '<':
    case '>':
    case '&':
        break;
    default:
        if (c >= 0x20)
            return NULL;
        break;
    }
    memcpy(tmp, "\\u00", 4);
    tmp[4] = hex[c >> 4];
    tmp[5] = hex[c & 0xf];
    tmp[6] = '\0';
    return tmp;
}

/* Appends s[0..n) with Go's escaping into b, which the caller restores on
 * failure. */
static int
json_append_body(struct buf *b, const unsigned char *s, size_t n)
{
    size_t i = 0, start = 0;
    const char *esc;
    char tmp[8];
    unsigned cp = 0;
    int rc;

    while (i < n) {
        size_t step = 1;

        esc = NULL;
        if (s[i] < 0x80) {
            esc = json_ascii_escape(s[i], tmp);
        } else {
            step = json_utf8_decode(s + i, n - i, &cp);
            if (step == 0) {
                step = 1;
                esc = "\\ufffd";
            } else if (cp == 0x2028 || cp == 0x2029) {
                esc = cp == 0x2028 ? "\\u2028" : "\\u2029";
            }
        }
        if (esc != NULL) {
            rc = buf_append(b, s + start, i - start);
            if (rc == 0)
                rc = buf_appends(b, esc);
            if (rc != 0)
                return rc;
            start = i + step;
        }
        i += step;
    }
    return buf_append(b, s + start, n - start);
}

int
json_append_str(struct buf *b, const char *s, size_t n)
{
    size_t old = b->len;
    int rc;

    rc = buf_append(b, "\"", 1);
    if (rc == 0)
        rc = json_append_body(b, (const unsigned char *)s, n);
    if (rc == 0)
        rc = buf_append(b, "\"", 1);
    if (rc != 0 && b->data != NULL) {
        b->len = old; /* leave b as it was */
        b->data[old] = '\0';
    }
    return rc;
}

/*
 * The last member named key: Go's decoder lets a later duplicate key
 * overwrite an earlier one, while cJSON_GetObjectItem returns the first.
 */
const cJSON *
json_get(const cJSON *obj, const char *key)
{
    const cJSON *it, *found = NULL;

    if (!cJSON_IsObject(obj) || key == NULL)
        return NULL;
    for (it = obj->child; it != NULL; it = it->next) {
        if (it->string != NULL && strcmp(it->string, key) == 0)
            found = it;
    }
    return found;
}

const char *
json_get_str(const cJSON *obj, const char *key)
{
    const cJSON *v = json_get(obj, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool
json_get_bool(const cJSON *obj, const char *key, bool def)
{
    const cJSON *v = json_get(obj, key);

    return cJSON_IsBool(v) ? cJSON_IsTrue(v) != 0 : def;
}

double
json_get_num(const cJSON *obj, const char *key, double def)
{
    const cJSON *v = json_get(obj, key);

    return cJSON_IsNumber(v) ? v->valuedouble : def;
}
