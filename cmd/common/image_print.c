#include "cmd/common/image_print.h"

#include <stdbool.h>
#include <string.h>

#include "cmd/common/json_get.h"
#include "cmd/common/table.h"
#include "common/fsutil.h"

void image_print_disk_cell(const json_t *obj, char *out, size_t len)
{
    const char *shared = json_get_str(obj, "shared_with");
    unsigned long long disk = json_get_uint(obj, "disk_bytes");
    char size[32];
    format_size(disk, size, sizeof size);
    if (shared[0] != '\0' && disk == 0)
        snprintf(out, len, "shared with %s", shared);
    else if (shared[0] != '\0')
        snprintf(out, len, "%s (shares %s)", size, shared);
    else
        snprintf(out, len, "%s", size);
}

/* Where the variant comes from; _base is marked as the base image. */
static const char *source_of(const json_t *image)
{
    if (json_is_true(json_object_get(image, "is_base")) &&
        strcmp(json_get_str(image, "source"), "config") == 0)
        return "base_image";
    return json_get_str(image, "source");
}

void image_print_table(const json_t *images)
{
    struct table table = {.columns = 7};
    table_add(&table,
              (const char *[]){"NAME", "CACHED", "ON DISK", "LOGICAL", "SOURCE", "REF", "DIGEST"});
    size_t i;
    json_t *image;
    json_array_foreach(images, i, image)
    {
        bool cached = json_is_true(json_object_get(image, "cached"));
        char disk[160] = "-", logical[32] = "-", digest[20];
        if (cached) {
            image_print_disk_cell(image, disk, sizeof disk);
            format_size(json_get_uint(image, "logical_bytes"), logical, sizeof logical);
        }
        snprintf(digest, sizeof digest, "%.19s", json_get_str(image, "digest"));
        const char *ref = json_get_str(image, "docker_ref");
        table_add(&table,
                  (const char *[]){json_get_str(image, "name"), cached ? "yes" : "no", disk,
                                   logical, source_of(image),
                                   ref[0] != '\0' ? ref : json_get_str(image, "path"), digest});
    }
    table_print_free(&table);
}

void image_print_prune_detail(const json_t *item, char *out, size_t len)
{
    char disk[32], freed[32], shares[160] = "";
    unsigned long long disk_bytes = json_get_uint(item, "disk_bytes");
    const char *shared = json_get_str(item, "shared_with");
    if (shared[0] != '\0')
        snprintf(shares, sizeof shares, ", shares %s", shared);
    const json_t *frees = json_object_get(item, "freed");
    unsigned long long freed_disk = json_get_uint(frees, "disk_bytes");
    bool differs = frees != NULL && freed_disk != disk_bytes;
    snprintf(out, len, "(%s on disk%s%s%s)", format_size(disk_bytes, disk, sizeof disk), shares,
             differs ? ", frees " : "",
             differs ? format_size(freed_disk, freed, sizeof freed) : "");
}

void image_print_prune(FILE *out, const json_t *body)
{
    bool dry_run = json_is_true(json_object_get(body, "dry_run"));
    const json_t *deleted = json_object_get(body, "deleted");
    size_t i;
    const json_t *entry;
    json_array_foreach(deleted, i, entry)
    {
        char detail[256];
        image_print_prune_detail(entry, detail, sizeof detail);
        fprintf(out, "%s image %s %s\n", dry_run ? "would delete" : "deleted",
                json_get_str(entry, "name"), detail);
    }
    json_array_foreach(json_object_get(body, "skipped"), i, entry) fprintf(
        out, "skipped image %s: %s\n", json_get_str(entry, "name"), json_get_str(entry, "reason"));
    if (json_array_size(deleted) == 0) {
        fprintf(out, "Nothing to prune.\n");
        return;
    }
    char freed[32];
    fprintf(out, "%s %zu image(s): %s freed on disk\n", dry_run ? "Dry run:" : "Pruned",
            json_array_size(deleted),
            format_size(json_get_uint(json_object_get(body, "freed"), "disk_bytes"), freed,
                        sizeof freed));
}
