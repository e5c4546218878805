/*
 * api.h - the coordinator's HTTP front end: routes each request to its
 * handler and answers errors in the format of the API the client speaks.
 */
#ifndef COORD_API_H
#define COORD_API_H

#include <stdbool.h>

#include "herd.h"

/* The http_server request callback (ud = struct herd *). */
void api_on_request(struct http_req *req, void *ud);

/*
 * An error answer: Ollama's {"error":"msg"}, or for the OpenAI API
 * {"error":{"message","type","param":null,"code":null}} with type (NULL:
 * invalid_request_error for 400, not_found_error for 404, api_error
 * otherwise).
 */
void api_error(struct http_req *req, bool openai, int status, const char *type,
               const char *fmt, ...) HERD_PRINTF(5, 6);

/* The same body, appended to b (for relaying a node's error). */
int api_error_body(struct buf *b, bool openai, int status, const char *type,
                   const char *msg) HERD_MUST_USE;

#endif /* COORD_API_H */
