/* Method + path routing. Patterns are literal segments and {placeholders}; a placeholder
 * matches one non-empty segment, whose value is handed to the handler in request->params. */
#include <stdbool.h>
#include <string.h>

#include "handlers.h"
#include "handlers_system.h"

struct route {
    const char *method;
    const char *pattern;
    api_handler handler;
    /* false: the route defines no body; one that is sent must be empty or "{}", so that a
     * client sending fields the route ignores learns it (400) instead of being misled. */
    bool takes_body;
};

static const struct route routes[] = {
    {"GET", "/api/info", handle_info, false},
    {"GET", "/api/ssh-host-key", handle_ssh_host_key, false},
    {"GET", "/api/sheds", handle_sheds_list, false},
    {"POST", "/api/sheds", handle_shed_create, true},
    {"GET", "/api/sheds/{name}", handle_shed_get, false},
    {"DELETE", "/api/sheds/{name}", handle_shed_delete, false},
    {"POST", "/api/sheds/{name}/start", handle_shed_start, false},
    {"POST", "/api/sheds/{name}/stop", handle_shed_stop, false},
    {"GET", "/api/sheds/{name}/sessions", handle_shed_sessions, false},
    {"DELETE", "/api/sheds/{name}/sessions/{session}", handle_shed_session_delete, false},
    {"GET", "/api/sessions", handle_sessions_all, false},
    {"GET", "/api/sheds/{name}/connect/{port}", handle_shed_connect, false},
    {"GET", "/api/images", handle_images_list, false},
    {"DELETE", "/api/images/{name}", handle_image_delete, false},
    {"POST", "/api/images/prune", handle_images_prune, false},
    {"GET", "/api/system/df", handle_system_df, false},
    {"POST", "/api/system/prune", handle_system_prune, false},
};

#define MAX_SEGMENT 512

/* Matches path against pattern; fills params (pointers into storage) on success. */
static bool route_matches(const char *pattern, const char *path, char storage[][MAX_SEGMENT],
                          const char **params, size_t *param_count)
{
    *param_count = 0;
    while (*pattern != '\0' && *path != '\0') {
        if (*pattern != '/' || *path != '/')
            return false;
        pattern++;
        path++;
        size_t pattern_len = strcspn(pattern, "/");
        size_t path_len = strcspn(path, "/");
        if (pattern[0] == '{') {
            if (path_len == 0 || path_len >= MAX_SEGMENT || *param_count >= API_MAX_PATH_PARAMS)
                return false;
            memcpy(storage[*param_count], path, path_len);
            storage[*param_count][path_len] = '\0';
            params[*param_count] = storage[*param_count];
            (*param_count)++;
        } else if (pattern_len != path_len || memcmp(pattern, path, path_len) != 0) {
            return false;
        }
        pattern += pattern_len;
        path += path_len;
    }
    return *pattern == '\0' && *path == '\0';
}

static bool body_is_empty(const struct api_request *request, struct api_response *response)
{
    static const char *const no_fields[] = {NULL};
    if (request->body_len == 0)
        return true;
    json_t *object = NULL;
    struct shed_err err = {0};
    if (api_parse_body_object(request, no_fields, true, &object, &err) < 0) {
        api_respond_error(response, &err);
        return false;
    }
    json_decref(object);
    return true;
}

void api_route(const struct api_request *request, const struct api_context *context,
               struct api_response *response)
{
    char storage[API_MAX_PATH_PARAMS][MAX_SEGMENT];
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        struct api_request matched = *request;
        if (!route_matches(routes[i].pattern, request->path, storage, matched.params,
                           &matched.param_count))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, request->method) != 0)
            continue;
        if (!routes[i].takes_body && !body_is_empty(&matched, response))
            return;
        routes[i].handler(&matched, context, response);
        return;
    }
    if (path_known)
        api_respond_errorf(response, SHED_E_METHOD_NOT_ALLOWED, "method %s not allowed on %s",
                           request->method, request->path);
    else
        api_respond_errorf(response, SHED_E_NOT_FOUND, "no route for %s %s", request->method,
                           request->path);
}
