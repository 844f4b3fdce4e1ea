/* /api/images: list, delete, prune — on the image cache library (imaged/cache.h), with the
 * names the sheds use (the instance store's instance_store_image_refs) protecting their
 * images and the overlay sheds' lowers pinned (runtime/instance_disk.h). */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "handlers.h"
#include "imaged/cache.h"
#include "runtime/instance.h"
#include "runtime/instance_disk.h"

/* The API's image object (api.md); "is_base" marks _base, the cache of base_image. */
static json_t *image_json(const struct image_info *image)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:b}", "name", image->name, "path",
                            image->path, "docker_ref", image->docker_ref, "digest", image->digest,
                            "size_bytes", (json_int_t)image->size_bytes, "source",
                            image->from_config ? "config" : "discovered", "cached", image->cached);
    if (obj != NULL && strcmp(image->name, SHED_BASE_IMAGE_NAME) == 0 &&
        json_object_set_new(obj, "is_base", json_true()) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* {"<key>":[image objects]} */
static json_t *image_list_json(const char *key, const struct image_info_list *list)
{
    json_t *items = json_array();
    for (size_t i = 0; items != NULL && i < list->count; i++) {
        if (json_array_append_new(items, image_json(&list->items[i])) < 0) {
            json_decref(items);
            items = NULL;
        }
    }
    return items != NULL ? json_pack("{s:o}", key, items) : NULL;
}

void handle_images_list(const struct api_request *request, const struct api_context *context,
                        struct api_response *response)
{
    (void)request;
    struct image_info_list list = {0};
    struct shed_err err = {0};
    if (image_cache_list(context->config, &list, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    api_respond_json(response, 200, image_list_json("images", &list));
    image_info_list_free(&list);
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
        image_cache_remove(context->config, name, (const char *const *)in_use, &pins.pins, &err) <
            0)
        api_respond_error(response, &err);
    else
        api_respond_empty(response, 204);
    instance_image_refs_free(in_use);
}

void handle_images_prune(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    bool dry_run;
    char **in_use = NULL;
    struct image_info_list pruned = {0};
    struct shed_err err = {0};
    struct instance_disk_pins pins;
    instance_disk_pins_init(&pins, context->instances, context->config);
    if (api_query_bool(request, "dry_run", false, &dry_run, &err) < 0 ||
        images_in_use(context, &in_use, &err) < 0 ||
        image_cache_prune(context->config, (const char *const *)in_use, &pins.pins, dry_run,
                          &pruned, &err) < 0)
        api_respond_error(response, &err);
    else
        api_respond_json(response, 200, image_list_json("deleted", &pruned));
    image_info_list_free(&pruned);
    instance_image_refs_free(in_use);
}
