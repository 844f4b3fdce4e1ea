#include "http_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void api_response_clear(struct api_response *response)
{
    if (response->json != NULL)
        json_decref(response->json);
    if (response->mhd != NULL)
        MHD_destroy_response(response->mhd);
    free(response->json_text);
    response->json = NULL;
    response->mhd = NULL;
    response->json_text = NULL;
}

json_t *api_error_json(enum shed_code code, const char *message)
{
    return json_pack("{s:{s:s, s:s}}", "error", "code", shed_code_api_name(code), "message",
                     message);
}

void api_respond_json(struct api_response *response, unsigned status, json_t *body)
{
    api_response_clear(response);
    if (body == NULL) {
        response->status = 500;
        response->json = api_error_json(SHED_E_NO_MEMORY, "out of memory building the response");
        return;
    }
    response->status = status;
    response->json = body;
}

void api_respond_json_text(struct api_response *response, unsigned status, char *text)
{
    api_response_clear(response);
    if (text == NULL) {
        api_respond_json(response, 500, NULL);
        return;
    }
    response->status = status;
    response->json_text = text;
}

void api_respond_empty(struct api_response *response, unsigned status)
{
    api_response_clear(response);
    response->status = status;
}

void api_respond_error(struct api_response *response, const struct shed_err *err)
{
    enum shed_code code = err->code == SHED_OK ? SHED_E_BACKEND_ERROR : err->code;
    const char *message = err->msg[0] != '\0' ? err->msg : "internal error";
    api_respond_json(response, (unsigned)shed_code_http_status(code),
                     api_error_json(code, message));
}

void api_respond_errorf(struct api_response *response, enum shed_code code, const char *fmt, ...)
{
    struct shed_err err = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    api_respond_error(response, &err);
}

/* A request without a connection: the entry of list whose name (up to sep) is key; *value
 * is what follows sep (NULL when the entry has no sep). */
static bool list_lookup(const char *const *list, const char *key, char sep, bool case_blind,
                        const char **value)
{
    size_t key_len = strlen(key);
    for (const char *const *p = list; p != NULL && *p != NULL; p++) {
        const char *end = strchr(*p, sep);
        size_t name_len = end != NULL ? (size_t)(end - *p) : strlen(*p);
        if (name_len != key_len ||
            (case_blind ? strncasecmp(*p, key, key_len) : strncmp(*p, key, key_len)) != 0)
            continue;
        *value = end;
        if (end != NULL) {
            *value = end + 1;
            while (sep == ':' && **value == ' ')
                (*value)++;
        }
        return true;
    }
    return false;
}

const char *api_query(const struct api_request *request, const char *key)
{
    if (request->connection == NULL) {
        const char *value = NULL;
        return list_lookup(request->query, key, '=', false, &value) && value != NULL ? value : NULL;
    }
    return MHD_lookup_connection_value(request->connection, MHD_GET_ARGUMENT_KIND, key);
}

const char *api_header(const struct api_request *request, const char *name)
{
    if (request->connection == NULL) {
        const char *value = NULL;
        return list_lookup(request->headers, name, ':', true, &value) ? value : NULL;
    }
    return MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND, name);
}

/* Whether the query has key, and its value (NULL for "?key" without '='). */
static bool query_present(const struct api_request *request, const char *key, const char **text)
{
    *text = NULL;
    if (request->connection == NULL)
        return list_lookup(request->query, key, '=', false, text);
    return MHD_lookup_connection_value_n(request->connection, MHD_GET_ARGUMENT_KIND, key,
                                         strlen(key), text, NULL) == MHD_YES;
}

int api_query_bool(const struct api_request *request, const char *key, bool fallback, bool *value,
                   struct shed_err *err)
{
    /* MHD reports "?dry_run" (no '=') with a NULL value; tell it apart from absence. */
    const char *text = NULL;
    if (!query_present(request, key, &text)) {
        *value = fallback;
        return 0;
    }
    if (text != NULL && (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)) {
        *value = true;
        return 0;
    }
    if (text != NULL && (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)) {
        *value = false;
        return 0;
    }
    return shed_errf(err, SHED_E_INVALID_REQUEST,
                     "query parameter %s must be true or false, got \"%.40s\"", key,
                     text != NULL ? text : "");
}

bool api_wants_event_stream(const struct api_request *request)
{
    if (request->connection == NULL)
        return false; /* nothing to stream to (route.h) */
    const char *accept = api_header(request, MHD_HTTP_HEADER_ACCEPT);
    return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
}

static bool key_allowed(const char *key, const char *const *allowed)
{
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strcmp(key, allowed[i]) == 0)
            return true;
    return false;
}

int api_parse_body_object(const struct api_request *request, const char *const *allowed,
                          bool empty_ok, json_t **object, struct shed_err *err)
{
    *object = NULL;
    if (request->body_len == 0) {
        if (!empty_ok)
            return shed_errf(err, SHED_E_INVALID_REQUEST, "a JSON object body is required");
        *object = json_object();
        return *object != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    json_error_t jerr;
    json_t *json = json_loadb(request->body, request->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (json == NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "malformed JSON body: line %d column %d: %s",
                         jerr.line, jerr.column, jerr.text);
    if (!json_is_object(json)) {
        json_decref(json);
        return shed_errf(err, SHED_E_INVALID_REQUEST, "the body must be a JSON object");
    }
    const char *key;
    json_t *value;
    json_object_foreach(json, key, value)
    {
        if (!key_allowed(key, allowed)) {
            shed_errf(err, SHED_E_INVALID_REQUEST, "unknown field \"%.80s\"", key);
            json_decref(json); /* frees key: only after the message was formatted */
            return -1;
        }
    }
    *object = json;
    return 0;
}

int api_field_string(const json_t *object, const char *key, const char **value,
                     struct shed_err *err)
{
    json_t *field = json_object_get(object, key);
    *value = NULL;
    if (field == NULL)
        return 0;
    if (!json_is_string(field))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "field \"%s\" must be a string", key);
    *value = json_string_value(field);
    return 0;
}

int api_field_int(const json_t *object, const char *key, long long min, long long max,
                  long long *value, bool *present, struct shed_err *err)
{
    json_t *field = json_object_get(object, key);
    *present = field != NULL;
    if (field == NULL)
        return 0;
    if (!json_is_integer(field))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "field \"%s\" must be an integer", key);
    *value = json_integer_value(field);
    if (*value < min || *value > max)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "field \"%s\" must be in %lld..%lld", key,
                         min, max);
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool byte_is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* "." and "..": never a name, and a router must not resolve them. */
static bool segment_is_dots(const char *start, size_t len)
{
    return (len == 1 && start[0] == '.') || (len == 2 && start[0] == '.' && start[1] == '.');
}

int api_decode_path(const char *target, char **path, struct shed_err *err)
{
    *path = NULL;
    size_t len = strcspn(target, "?");
    if (len == 0 || target[0] != '/' || len > API_MAX_TARGET)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "the request path must start with '/' and "
                         "be at most %d bytes",
                         API_MAX_TARGET);
    char *out = malloc(len + 1);
    if (out == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t n = 0, segment = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c == '%') {
            int high = i + 2 < len ? hex_digit(target[i + 1]) : -1;
            int low = high >= 0 ? hex_digit(target[i + 2]) : -1;
            if (low < 0) {
                free(out);
                return shed_errf(err, SHED_E_INVALID_REQUEST,
                                 "malformed percent-escape in the request path");
            }
            c = (unsigned char)(high * 16 + low);
            i += 2;
            if (c == '\0' || c == '/' || c == '\\' || byte_is_control(c)) {
                free(out);
                return shed_errf(err, SHED_E_INVALID_REQUEST,
                                 "the request path holds an escaped NUL, '/', '\\' or control "
                                 "byte (%%%02X)",
                                 c);
            }
        } else if (byte_is_control(c)) {
            free(out);
            return shed_errf(err, SHED_E_INVALID_REQUEST, "the request path holds a control byte");
        } else if (c == '/') {
            if (segment_is_dots(out + segment, n - segment)) {
                free(out);
                return shed_errf(err, SHED_E_INVALID_REQUEST,
                                 "\".\" and \"..\" are not path segments of the API");
            }
            segment = n + 1;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    if (segment_is_dots(out + segment, n - segment)) {
        free(out);
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "\".\" and \"..\" are not path segments of the API");
    }
    *path = out;
    return 0;
}

double api_elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}
