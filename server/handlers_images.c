/* /api/images: list, delete, prune. The list and the prune are the image tables of
 * runtime/image_tables.h (sizes as system df counts them; images prune is system prune's plan
 * in the images scope); delete is the image cache's own removal (imaged/cache.h), which also
 * reclaims what the OCI store kept only for the image. The names the sheds use protect their
 * images, and the overlay sheds' lowers are pinned (runtime/instance_disk.h). */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "handlers.h"
#include "imaged/cache.h"
#include "runtime/df.h"
#include "runtime/image_tables.h"
#include "runtime/instance.h"
#include "runtime/instance_disk.h"

void handle_images_list(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    (void)request;
    json_t *body = NULL;
    struct shed_err err = {0};
    if (image_tables_list_json(context->config, context->instances, &body, &err) < 0)
        api_respond_error(response, &err);
    else
        api_respond_json(response, 200, body);
}

/* The images the sheds use: their metadata.json "image" fields. An unreadable metadata.json
 * is an error, not an empty answer (guessing could delete an image a shed needs). */
static int images_in_use(const struct api_context *context, char ***names, struct shed_err *err)
{
    if (instance_store_image_refs(context->instances, names, err) < 0)
        return shed_err_prefix(err, "cannot tell which images the sheds use");
    return 0;
}

void handle_image_delete(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    const char *name = request->params[0];
    if (!shed_image_name_is_valid(name)) {
        api_respond_errorf(response, SHED_E_IMAGE_NOT_FOUND, "image \"%.80s\" not found", name);
        return;
    }
    char **in_use = NULL;
    struct shed_err err = {0};
    struct instance_disk_pins pins;
    instance_disk_pins_init(&pins, context->instances, context->config);
    if (instance_disk_check_image_unused(context->instances, name, &err) < 0 ||
        images_in_use(context, &in_use, &err) < 0 ||
        image_cache_remove(context->config, name, (const char *const *)in_use, &pins.pins, NULL,
                           &err) < 0)
        api_respond_error(response, &err);
    else
        api_respond_empty(response, 204);
    instance_image_refs_free(in_use);
}

void handle_images_prune(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    bool dry_run;
    struct shed_err err = {0};
    if (api_query_bool(request, "dry_run", false, &dry_run, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    struct shed_probe probe = shed_probe_for_backends(context->backends);
    struct prune_opts opts = {.config = context->config,
                              .instances = context->instances,
                              .probe = &probe,
                              .dry_run = dry_run};
    json_t *body = NULL;
    if (image_tables_prune_json(&opts, &body, &err) < 0)
        api_respond_error(response, &err);
    else
        api_respond_json(response, 200, body);
}
