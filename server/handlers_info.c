/* GET /api/info and GET /api/ssh-host-key (the key itself: runtime/host_key.h). */
#include "handlers.h"

void handle_info(const struct api_request *request, const struct api_context *context,
                 struct api_response *response)
{
    (void)request;
    const struct shed_config *config = context->config;
    api_respond_json(response, 200,
                     json_pack("{s:s, s:s, s:i, s:i, s:s}", "name", config->name, "version",
                               SHED_VERSION, "ssh_port", config->ssh_port, "http_port",
                               (int)context->http_port, "backend", context->info_backend));
}

void handle_ssh_host_key(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    (void)request;
    api_respond_json(response, 200, json_pack("{s:s}", "host_key", context->host_public_key));
}
