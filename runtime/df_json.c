/* The GET /api/system/df body (api.md), shared by the server and `shed-server system df`. */
#include <stdio.h>
#include <time.h>

#include "common/timeutil.h"
#include "df.h"

json_t *df_size_to_json(const struct df_size *size)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "logical_bytes", (json_int_t)size->logical,
                     "physical_bytes", (json_int_t)size->physical, "exclusive_bytes",
                     (json_int_t)size->exclusive, "disk_bytes", (json_int_t)size->disk);
}

/* Totals also say how many files (inodes) they add up. */
static json_t *total_to_json(const struct df_size *size)
{
    json_t *obj = df_size_to_json(size);
    if (obj != NULL &&
        json_object_set_new(obj, "files", json_integer((json_int_t)size->files)) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* disk_bytes of the item and, when it holds blocks an earlier item counted, shared_with. */
static int add_disk(json_t *obj, uint64_t disk, const char *shared_with)
{
    if (json_object_set_new(obj, "disk_bytes", json_integer((json_int_t)disk)) < 0)
        return -1;
    if (shared_with != NULL &&
        json_object_set_new(obj, "shared_with", json_string(shared_with)) < 0)
        return -1;
    return 0;
}

static json_t *file_to_json(const struct df_file *file)
{
    json_t *obj = json_pack("{s:s, s:o, s:s}", "path", file->path, "size",
                            df_size_to_json(&file->size), "kind", file->kind);
    if (obj != NULL && file->shared_with != NULL &&
        json_object_set_new(obj, "shared_with", json_string(file->shared_with)) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *file_list_to_json(const struct df_file_list *list)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < list->count; i++) {
        if (json_array_append_new(array, file_to_json(&list->items[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *image_to_json(const struct df_image *image)
{
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "name", image->name, "path", image->rootfs.path,
                  "docker_ref", image->docker_ref, "size", df_size_to_json(&image->rootfs.size),
                  "other_files", file_list_to_json(&image->other_files), "total",
                  total_to_json(&image->total));
    if (obj != NULL && ((image->is_base && json_object_set_new(obj, "is_base", json_true()) < 0) ||
                        add_disk(obj, image->total.disk, image->shared_with) < 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *shed_to_json(const struct df_shed *shed)
{
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "name", shed->inst.name, "status",
                  instance_status_name(shed->inst.status), "image",
                  shed->inst.image != NULL ? shed->inst.image : "", "disk",
                  instance_disk_name(shed->inst.disk), "other_files",
                  file_list_to_json(&shed->other_files), "total", total_to_json(&shed->total));
    if (obj == NULL)
        return NULL;
    /* "rootfs" is always present: a shed whose rootfs is missing shows an empty one. */
    struct df_file missing = {.path = (char *)"", .kind = "rootfs"};
    if (add_disk(obj, shed->total.disk, shed->shared_with) < 0 ||
        json_object_set_new(obj, "rootfs",
                            file_to_json(shed->has_rootfs ? &shed->rootfs : &missing)) < 0 ||
        (shed->has_console_log &&
         json_object_set_new(obj, "console_log", file_to_json(&shed->console_log)) < 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *images_to_json(const struct df_report *report)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < report->image_count; i++) {
        if (json_array_append_new(array, image_to_json(&report->images[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *sheds_to_json(const struct df_report *report)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < report->shed_count; i++) {
        if (json_array_append_new(array, shed_to_json(&report->sheds[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

json_t *df_notes_to_json(char *const *notes, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < count; i++) {
        if (json_array_append_new(array, json_string(notes[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static int add_optional_files(json_t *root, const struct df_report *report)
{
    if (report->has_kernel &&
        json_object_set_new(root, "kernel", file_to_json(&report->kernel)) < 0)
        return -1;
    if (report->has_initrd &&
        json_object_set_new(root, "initrd", file_to_json(&report->initrd)) < 0)
        return -1;
    return 0;
}

json_t *df_report_to_json(const struct df_report *report, const char *server_name,
                          const char *backend)
{
    char generated_at[RFC3339_SIZE];
    format_rfc3339_now(generated_at); /* "" only after the year 9999 */
    json_t *totals = json_pack(
        "{s:o, s:o, s:o, s:o}", "images", total_to_json(&report->totals.images), "sheds",
        total_to_json(&report->totals.sheds), "orphans", total_to_json(&report->totals.orphans),
        "all", total_to_json(&report->totals.all));
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "server_name",
                  server_name != NULL ? server_name : "", "backend", backend != NULL ? backend : "",
                  "generated_at", generated_at, "images", images_to_json(report), "blobs",
                  file_list_to_json(&report->blobs), "sheds", sheds_to_json(report), "orphans",
                  file_list_to_json(&report->orphans), "totals", totals, "notes",
                  df_notes_to_json(report->notes, report->note_count));
    if (root != NULL && add_optional_files(root, report) < 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}
