/* The router without HTTP (see route.h). */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strv.h"
#include "handlers.h"

struct server_router {
    struct api_context context; /* with the caller's config instead of a snapshot */
    char info_backend[32];
};

int server_router_open(const struct shed_config *config, const struct backend_set *backends,
                       struct server_router **out, struct shed_err *err)
{
    struct server_router *router = calloc(1, sizeof *router);
    if (router == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (api_context_open(&router->context, config, backends, NULL, err) < 0) {
        api_context_close(&router->context);
        free(router);
        return -1;
    }
    backend_set_describe_default(backends, config->default_backend, router->info_backend,
                                 sizeof router->info_backend);
    router->context.info_backend = router->info_backend;
    *out = router;
    return 0;
}

void server_router_close(struct server_router *router)
{
    if (router == NULL)
        return;
    api_context_close(&router->context);
    free(router);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* libmicrohttpd's unescaping: %XX where both are hex digits, anything else kept. */
static void unescape(char *text)
{
    char *out = text;
    for (const char *in = text; *in != '\0';) {
        int high = in[0] == '%' ? hex_value(in[1]) : -1;
        int low = high >= 0 ? hex_value(in[2]) : -1;
        if (low >= 0) {
            *out++ = (char)(high * 16 + low);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
}

static int split_query(const char *target, struct strv *query, struct shed_err *err)
{
    const char *mark = strchr(target, '?');
    if (mark == NULL)
        return 0;
    cleanup_free char *copy = strdup(mark + 1);
    if (copy == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    char *save = NULL;
    for (char *arg = strtok_r(copy, "&", &save); arg != NULL; arg = strtok_r(NULL, "&", &save)) {
        unescape(arg);
        if (strv_add(query, arg, err) < 0)
            return -1;
    }
    return 0;
}

static int take_body(struct api_response *response, struct server_route_result *result,
                     struct shed_err *err)
{
    if (response->json_text != NULL) {
        result->body = response->json_text;
        response->json_text = NULL;
    } else if (response->json != NULL &&
               (result->body = json_dumps(response->json, JSON_COMPACT)) == NULL) {
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

int server_route(struct server_router *router, const char *method, const char *target,
                 const char *const *headers, const char *body, size_t body_len,
                 struct server_route_result *result, struct shed_err *err)
{
    memset(result, 0, sizeof *result);
    cleanup_free char *path = NULL;
    cleanup_strv struct strv query = STRV_INIT;
    struct api_response response = {0};
    struct shed_err refused = {0};
    if (split_query(target, &query, err) < 0)
        return -1;
    if (api_decode_path(target, &path, &refused) < 0) {
        api_respond_error(&response, &refused);
    } else {
        /* The handlers' bodies are NUL-terminated, like the server's. */
        cleanup_free char *text = malloc(body_len + 1);
        if (text == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        memcpy(text, body, body_len);
        text[body_len] = '\0';
        static const char *const none[] = {NULL};
        struct api_request request = {
            .headers = headers != NULL ? headers : none,
            .query = query.items != NULL ? (const char *const *)query.items : none,
            .method = method,
            .path = path,
            .body = text,
            .body_len = body_len,
        };
        api_route(&request, &router->context, &response);
    }
    result->status = response.status;
    int rc = take_body(&response, result, err);
    if (response.tunnel != NULL)
        tunnel_abandon(response.tunnel);
    api_response_clear(&response);
    return rc;
}

void server_route_result_free(struct server_route_result *result)
{
    free(result->body);
    memset(result, 0, sizeof *result);
}
