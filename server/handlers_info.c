/* GET /api/info and GET /api/ssh-host-key (the key itself: runtime/host_key.h). */
#include "handlers.h"

void handle_info(const struct api_request *request, const struct api_context *context,
                 struct api_response *response)
{
    (void)request;
    const struct shed_config *config = context->config;
    /* The backends this build runs, so a client can offer only those. */
    json_t *backends = json_array();
    for (size_t i = 0; backends != NULL && i < context->backends->count; i++)
        json_array_append_new(backends, json_string(context->backends->items[i]->name));
    api_respond_json(response, 200,
                     json_pack("{s:s, s:s, s:i, s:i, s:s, s:o*}", "name", config->name, "version",
                               SHED_VERSION, "ssh_port", config->ssh_port, "http_port",
                               (int)context->http_port, "backend", context->info_backend,
                               "backends", backends));
}

void handle_ssh_host_key(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)request;
    api_respond_json(response, 200, json_pack("{s:s}", "host_key", context->host_public_key));
}
