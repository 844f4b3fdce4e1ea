/* One request through the API's router and handlers without HTTP: what the router fuzz
 * target (tests/server/fuzz_router.c) and unit tests drive. The target is checked and decoded
 * exactly as for a request that came over HTTP (api_decode_path: 400 INVALID_REQUEST for a
 * NUL, %2F, a control byte, a bad escape, a dot segment), the body is parsed by the same
 * handlers, headers and query come from the lists given. There is no connection, so nothing
 * can be upgraded (connect answers 400) and no event stream is started. */
#ifndef SHED_API_ROUTE_H
#define SHED_API_ROUTE_H

#include <stddef.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

struct server_router;

/* The context server_start would build (it creates the data dirs and the host key). */
int server_router_open(const struct shed_config *config, const struct backend_set *backends,
                       struct server_router **router, struct shed_err *err);
void server_router_close(struct server_router *router);

struct server_route_result {
    unsigned status;
    char *body; /* the JSON body, malloc'd; NULL for an empty one */
};

/* headers: "Name: value" entries, NULL-terminated (may be NULL). The query string of target
 * is split at '&' and percent-decoded like libmicrohttpd does. */
int server_route(struct server_router *router, const char *method, const char *target,
                 const char *const *headers, const char *body, size_t body_len,
                 struct server_route_result *result, struct shed_err *err);
void server_route_result_free(struct server_route_result *result);

#endif
