/*
 * json.h - JSON helpers over cJSON, with caps and Go-compatible errors.
 *
 * Ollama is written in Go; its 400 bodies echo encoding/json's messages.
 * json_parse() runs a small validator first, so a bad document gets the
 * same text a real Ollama would send, and so depth and size are capped
 * before cJSON allocates anything. Callers then use the cJSON tree
 * directly (cJSON is the one data-structure library we expose); the tree
 * belongs to the caller, who frees it with cJSON_Delete().
 */
#ifndef HERD_JSON_H
#define HERD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "herd/buf.h"

#define JSON_DEFAULT_MAX_DEPTH 128

/*
 * Parses exactly one JSON value from s[0..len). Returns 0 and *out, or:
 *  -ENODATA  s is empty or only whitespace (Ollama: "missing request body"
 *            is then the caller's message; errbuf gets "EOF");
 *  -EINVAL   a syntax error; errbuf gets Go's text, e.g.
 *            "invalid character 'x' looking for beginning of value",
 *            "invalid character '}' after object key",
 *            "unexpected EOF" (document cut short);
 *  -E2BIG    nesting deeper than max_depth ("exceeded max depth").
 * Data after the first value is ignored, as Go's json.Decoder does.
 * NUL bytes inside the input are a syntax error, never a truncation.
 */
int json_parse(const char *s, size_t len, int max_depth, cJSON **out,
               char *errbuf, size_t errlen);

/* Go's name for a JSON value's kind in unmarshal errors: "string",
 * "number", "bool", "array", "object", "null". */
const char *json_go_kind(const cJSON *v);

/* Appends the compact form of v to b. 0, -ENOMEM or -E2BIG. */
int json_print(const cJSON *v, struct buf *b) HERD_MUST_USE;

/* Appends s[0..n) as a quoted JSON string, escaping as Go does (<, >, &
 * become \u003c \u003e \u0026; control characters \uXXXX; invalid UTF-8
 * becomes \ufffd). 0, -ENOMEM or -E2BIG. */
int json_append_str(struct buf *b, const char *s, size_t n) HERD_MUST_USE;

/* Lookup helpers; key lookup is case-sensitive. NULL/def when the key is
 * absent or of another type. */
const char *json_get_str(const cJSON *obj, const char *key);
bool json_get_bool(const cJSON *obj, const char *key, bool def);
double json_get_num(const cJSON *obj, const char *key, double def);
const cJSON *json_get(const cJSON *obj, const char *key);

#endif /* HERD_JSON_H */
