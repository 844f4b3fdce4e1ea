/* image_tables.h: the image list joined with df's sizes, and images prune on the prune plan. */
#include "image_tables.h"

#include <stdlib.h>
#include <string.h>

#include "df.h"

static const struct df_image *df_image_named(const struct df_report *report, const char *name)
{
    for (size_t i = 0; i < report->image_count; i++)
        if (strcmp(report->images[i].name, name) == 0)
            return &report->images[i];
    return NULL;
}

static int add_sizes(const struct df_report *report, struct image_info_list *list,
                     struct shed_err *err)
{
    for (size_t i = 0; i < list->count; i++) {
        struct image_info *info = &list->items[i];
        const struct df_image *image = info->cached ? df_image_named(report, info->name) : NULL;
        if (image == NULL)
            continue;
        info->physical_bytes = image->total.physical;
        info->disk_bytes = image->total.disk;
        info->logical_bytes = image->total.logical;
        if (image->shared_with != NULL && (info->shared_with = strdup(image->shared_with)) == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

int image_tables_list(const struct shed_config *config, struct instance_store *instances,
                      struct image_info_list *list, struct shed_err *err)
{
    if (image_cache_list(config, list, err) < 0)
        return -1;
    /* The sheds' metadata says which older content rootfs files overlay sheds stand on. */
    struct df_opts opts = {.config = config, .instances = instances, .images_only = true};
    struct df_report report;
    int rc = df_scan(&opts, &report, err);
    if (rc == 0) {
        rc = add_sizes(&report, list, err);
        df_report_free(&report);
    }
    if (rc < 0)
        image_info_list_free(list);
    return rc;
}

static const struct prune_item *image_item(const struct prune_list *items, const char *name)
{
    for (size_t j = 0; j < items->count; j++)
        if (items->items[j].kind == PRUNE_KIND_IMAGE && strcmp(items->items[j].name, name) == 0)
            return &items->items[j];
    return NULL;
}

/* The image objects; with only, just those of its image items, each with what it frees. */
static json_t *infos_to_json(const struct image_info_list *list, const struct prune_list *only)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < list->count; i++) {
        const struct prune_item *item = only != NULL ? image_item(only, list->items[i].name) : NULL;
        if (only != NULL && item == NULL)
            continue;
        json_t *obj = image_info_to_json(&list->items[i]);
        if (obj != NULL && item != NULL &&
            json_object_set_new(obj, "freed", df_size_to_json(&item->freed)) < 0) {
            json_decref(obj);
            obj = NULL;
        }
        if (json_array_append_new(array, obj) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

int image_tables_list_json(const struct shed_config *config, struct instance_store *instances,
                           json_t **body, struct shed_err *err)
{
    struct image_info_list list;
    if (image_tables_list(config, instances, &list, err) < 0)
        return -1;
    *body = json_pack("{s:o}", "images", infos_to_json(&list, NULL));
    image_info_list_free(&list);
    return *body != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

static json_t *skipped_to_json(const struct prune_list *skipped)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < skipped->count; i++) {
        const struct prune_item *item = &skipped->items[i];
        if (item->kind == PRUNE_KIND_IMAGE &&
            json_array_append_new(array, json_pack("{s:s, s:s}", "name", item->name, "reason",
                                                   item->reason ? item->reason : "")) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *prune_body(const struct prune_plan *plan, const struct image_info_list *before)
{
    return json_pack("{s:o, s:b, s:o, s:o, s:o}", "deleted", infos_to_json(before, &plan->items),
                     "dry_run", plan->opts.dry_run, "skipped", skipped_to_json(&plan->skipped),
                     "freed", df_size_to_json(&plan->freed), "notes",
                     df_notes_to_json(plan->notes, plan->note_count));
}

int image_tables_prune_json(const struct prune_opts *opts, json_t **body, struct shed_err *err)
{
    *body = NULL;
    /* An unreadable metadata.json is an error here, not a skip: guessing which images the
     * sheds use could delete one a shed needs. */
    char **in_use = NULL;
    if (instance_store_image_refs(opts->instances, &in_use, err) < 0)
        return shed_err_prefix(err, "cannot tell which images the sheds use");
    instance_image_refs_free(in_use);
    /* The sizes as they are before anything goes: what `images` showed for these images. */
    struct image_info_list before;
    if (image_tables_list(opts->config, opts->instances, &before, err) < 0)
        return -1;
    struct prune_opts images_only = *opts;
    images_only.scopes = PRUNE_SCOPE_IMAGES;
    struct prune_plan *plan = NULL;
    int rc = prune_plan(&images_only, &plan, err);
    if (rc == 0)
        rc = prune_execute(plan, err);
    if (rc == 0 && (*body = prune_body(plan, &before)) == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    prune_plan_free(plan);
    image_info_list_free(&before);
    return rc;
}
