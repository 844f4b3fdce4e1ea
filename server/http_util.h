/* HTTP plumbing shared by the router and the handlers: the request and response values a
 * handler works with, JSON and error bodies, query and header access, body parsing.
 *
 * Handlers are functions from (request, context) to a response: they fill a struct
 * api_response and never touch libmicrohttpd's queueing themselves. The one translation from
 * struct shed_err to an HTTP status and error body happens here (api_respond_error). */
#ifndef SHED_API_HTTP_UTIL_H
#define SHED_API_HTTP_UTIL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/shed_err.h"

#define API_MAX_BODY_BYTES (1024 * 1024)
#define API_MAX_PATH_PARAMS 4

struct api_request {
    /* NULL for a request that did not come over HTTP (server_route, route.h): headers and
     * query then come from the two lists below. */
    struct MHD_Connection *connection;
    const char *const *headers; /* "Name: value", NULL-terminated */
    const char *const *query;   /* "key=value" or "key", decoded, NULL-terminated */
    const char *method;
    const char *path; /* decoded and checked (api_decode_path) */
    /* Values of the {placeholders} of the matched route, in pattern order, URL-decoded. */
    const char *params[API_MAX_PATH_PARAMS];
    size_t param_count;
    const char *body; /* NUL-terminated; "" when there is none */
    size_t body_len;
};

struct tunnel;

struct api_response {
    unsigned status;
    /* A connect tunnel waiting for its upgrade (tunnel.h): not owned, the server keeps it
     * until the request completes. */
    struct tunnel *tunnel;
    /* Exactly one of: a JSON body (owned), a prepared libmicrohttpd response (owned; used
     * for streams and upgrades), or neither (an empty body, e.g. 204). */
    json_t *json;
    struct MHD_Response *mhd;
    char *json_text; /* or an already serialised JSON body (owned, malloc'd) */
};

/* Takes ownership of body (which may be NULL on allocation failure: then a 500). */
void api_respond_json(struct api_response *response, unsigned status, json_t *body);
void api_respond_empty(struct api_response *response, unsigned status);
/* Takes ownership of text, an already serialised JSON body (NULL: a 500). */
void api_respond_json_text(struct api_response *response, unsigned status, char *text);
/* The spec's {"error":{"code","message"}} with the status of err->code. */
void api_respond_error(struct api_response *response, const struct shed_err *err);
void api_respond_errorf(struct api_response *response, enum shed_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
json_t *api_error_json(enum shed_code code, const char *message);
void api_response_clear(struct api_response *response);

/* The value of a query parameter (first occurrence), or NULL. */
const char *api_query(const struct api_request *request, const char *key);
/* A boolean query parameter: absent → fallback; "true"/"1" or "false"/"0"; anything else
 * (an empty value included) → SHED_E_INVALID_REQUEST. */
int api_query_bool(const struct api_request *request, const char *key, bool fallback, bool *value,
                   struct shed_err *err);
const char *api_header(const struct api_request *request, const char *name);
/* True when the Accept header asks for text/event-stream. */
bool api_wants_event_stream(const struct api_request *request);

/* Parses the body as a JSON object; every key must be in allowed (NULL-terminated).
 * Malformed JSON, a non-object or an unknown key → SHED_E_INVALID_REQUEST. An empty body
 * counts as {} when empty_ok. */
int api_parse_body_object(const struct api_request *request, const char *const *allowed,
                          bool empty_ok, json_t **object, struct shed_err *err);
/* Typed field access for request objects: absent → *present = false (no error); wrong type →
 * SHED_E_INVALID_REQUEST naming the field. */
int api_field_string(const json_t *object, const char *key, const char **value,
                     struct shed_err *err);
int api_field_int(const json_t *object, const char *key, long long min, long long max,
                  long long *value, bool *present, struct shed_err *err);

/* The path of a request target (the part before '?'), percent-decoded. Refused with
 * SHED_E_INVALID_REQUEST, so that no handler ever sees a name other than the one the client
 * wrote: a target not starting with '/', longer than API_MAX_TARGET, a raw control byte, a
 * '%' not followed by two hex digits, an escape decoding to NUL, '/', '\\', a control byte
 * or DEL, and a "." or ".." segment (raw or decoded). *path is malloc'd. */
#define API_MAX_TARGET 8192
int api_decode_path(const char *target, char **path, struct shed_err *err);

/* "ms" since start, for the request log. */
double api_elapsed_ms(const struct timespec *start);

#endif
