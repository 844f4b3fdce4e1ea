/* The api_context's parts made at start, shared read-only by every request; each request
 * adds the config snapshot current when it arrived (see handlers.h). */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "handlers.h"
#include "runtime/host_key.h"

int api_context_open(struct api_context *context, const struct shed_config *config,
                     const struct backend_set *backends, size_t *discovered, struct shed_err *err)
{
    memset(context, 0, sizeof *context);
    context->config = config;
    context->backends = backends;
    if (fs_mkdir_private(config->data_dir, err) < 0 ||
        fs_mkdir_private(config->images_dir, err) < 0)
        return -1;
    if (instance_store_open(config->instance_dir, &context->instances, err) < 0)
        return -1;
    if ((context->images_dir = strdup(config->images_dir)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    context->lifecycle = (struct shed_lifecycle){
        .store = context->instances, .backends = backends, .images_dir = context->images_dir};
    context->list_cache = shed_list_cache_new();
    if (context->list_cache == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (create_registry_new(&context->creates, err) < 0 ||
        tunnel_registry_new(&config->http, &context->tunnels, err) < 0)
        return -1;
    cleanup_free char *comment = str_printf("shed@%s", config->name);
    if (comment == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (host_key_load_or_create(config->data_dir, comment, &context->host_public_key, err) < 0)
        return -1;
    /* Re-discover the sheds that exist on disk (and warm the metadata cache). */
    struct instance_list list;
    if (instance_store_list(context->instances, &list, err) < 0)
        return shed_err_prefix(err, "cannot read the instance directory");
    if (discovered != NULL)
        *discovered = list.count;
    instance_list_clear(&list);
    return 0;
}

void api_context_close(struct api_context *context)
{
    tunnel_registry_free(context->tunnels);
    create_registry_free(context->creates);
    instance_store_close(context->instances);
    shed_list_cache_free(context->list_cache);
    free(context->host_public_key);
    free(context->images_dir);
    memset(context, 0, sizeof *context);
}
