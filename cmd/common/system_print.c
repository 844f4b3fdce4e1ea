#include "cmd/common/system_print.h"

#include <string.h>

#include "cmd/common/image_print.h"
#include "cmd/common/json_get.h"
#include "common/fsutil.h"

/* ON DISK and LOGICAL of a size object: what every table shows (image_print.h). */
static void print_sizes(FILE *out, const json_t *size)
{
    char disk[32], logical[32];
    fprintf(out, " %10s %10s\n", format_size(json_get_uint(size, "disk_bytes"), disk, sizeof disk),
            format_size(json_get_uint(size, "logical_bytes"), logical, sizeof logical));
}

static void print_rollup_row(FILE *out, const char *category, const json_t *total)
{
    fprintf(out, "%-10s %7llu", category, json_get_uint(total, "files"));
    print_sizes(out, total);
}

/* One item: its disk bytes (the object's, "shared with X" when they are X's) and logical. */
static void print_item_row(FILE *out, const char *type, const char *label, const json_t *item,
                           const json_t *size)
{
    char disk[160], logical[32];
    image_print_disk_cell(item, disk, sizeof disk);
    fprintf(out, "  %-12s %22s %10s  %s\n", type, disk,
            format_size(json_get_uint(size, "logical_bytes"), logical, sizeof logical), label);
}

static void print_details(FILE *out, const json_t *df)
{
    fprintf(out, "\n  %-12s %22s %10s  %s\n", "TYPE", "ON DISK", "LOGICAL", "NAME");
    size_t i;
    const json_t *entry;
    json_array_foreach(json_object_get(df, "images"), i, entry)
    {
        char label[160];
        snprintf(label, sizeof label, "%s%s", json_get_str(entry, "name"),
                 json_is_true(json_object_get(entry, "is_base")) ? " (base_image)" : "");
        print_item_row(out, "image", label, entry, json_object_get(entry, "total"));
    }
    json_array_foreach(json_object_get(df, "sheds"), i, entry)
    {
        char label[128];
        snprintf(label, sizeof label, "%s (%s)", json_get_str(entry, "name"),
                 json_get_str(entry, "status"));
        print_item_row(out, "shed", label, entry, json_object_get(entry, "total"));
    }
    json_array_foreach(json_object_get(df, "orphans"), i, entry)
    {
        char type[32];
        snprintf(type, sizeof type, "orphan %s", json_get_str(entry, "kind"));
        /* An orphan's disk bytes are its size object's. */
        json_t *item =
            json_pack("{s:I}", "disk_bytes",
                      (json_int_t)json_get_uint(json_object_get(entry, "size"), "disk_bytes"));
        if (item != NULL && json_object_get(entry, "shared_with") != NULL)
            json_object_set(item, "shared_with", json_object_get(entry, "shared_with"));
        print_item_row(out, type, json_get_str(entry, "path"), item,
                       json_object_get(entry, "size"));
        json_decref(item);
    }
}

void system_print_df(FILE *out, const json_t *df, bool verbose)
{
    const json_t *totals = json_object_get(df, "totals");
    fprintf(out, "%-10s %7s %10s %10s\n", "CATEGORY", "FILES", "ON DISK", "LOGICAL");
    print_rollup_row(out, "images", json_object_get(totals, "images"));
    print_rollup_row(out, "sheds", json_object_get(totals, "sheds"));
    print_rollup_row(out, "orphans", json_object_get(totals, "orphans"));
    print_rollup_row(out, "total", json_object_get(totals, "all"));
    /* Why sheds cost what they do here: said even without -v. */
    size_t i;
    const json_t *note;
    json_array_foreach(json_object_get(df, "notes"), i, note)
    {
        const char *text = json_string_value(note);
        if (!verbose && text != NULL && strncmp(text, "no reflinks:", 12) == 0)
            fprintf(out, "\nNote: %s\n", text);
    }
    if (verbose) {
        print_details(out, df);
        fprintf(out, "\nNotes:\n");
        json_array_foreach(json_object_get(df, "notes"), i, note)
            fprintf(out, "  - %s\n", json_string_value(note));
    }
}

static const char *item_label(const json_t *item)
{
    const char *name = json_get_str(item, "name");
    return name[0] != '\0' ? name : json_get_str(item, "path");
}

/* "(241.8 MiB on disk)": the item's disk bytes as df counts them, with ", frees Y" when
 * deleting it alone frees something else (blocks shared with what stays); a truncation says
 * what it frees. */
static void item_detail(const json_t *item, bool truncate, char *out, size_t len)
{
    char freed[32];
    if (!truncate) {
        image_print_prune_detail(item, out, len);
        return;
    }
    snprintf(out, len, "(frees %s)",
             format_size(json_get_uint(json_object_get(item, "freed"), "disk_bytes"), freed,
                         sizeof freed));
}

void system_print_prune(FILE *out, const json_t *prune)
{
    bool dry_run = json_is_true(json_object_get(prune, "dry_run"));
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(prune, "items"), i, item)
    {
        const char *action = json_get_str(item, "action");
        bool truncate = strcmp(action, "truncated") == 0;
        char detail[256];
        item_detail(item, truncate, detail, sizeof detail);
        fprintf(out, "%s %-11s %s %s\n",
                dry_run ? (truncate ? "would truncate" : "would delete") : action,
                json_get_str(item, "kind"), item_label(item), detail);
    }
    json_array_foreach(json_object_get(prune, "skipped"), i, item)
        fprintf(out, "skipped %-11s %s: %s\n", json_get_str(item, "kind"), item_label(item),
                json_get_str(item, "reason"));
    const json_t *totals = json_object_get(prune, "totals");
    const json_t *freed = json_object_get(totals, "freed");
    char logical[32], disk[32];
    if (json_get_uint(totals, "items") == 0)
        fprintf(out, "Nothing to prune.\n");
    else
        fprintf(out, "%s %llu item(s): %s freed on disk (logical %s)\n",
                dry_run ? "Dry run:" : "Pruned", json_get_uint(totals, "items"),
                format_size(json_get_uint(freed, "disk_bytes"), disk, sizeof disk),
                format_size(json_get_uint(freed, "logical_bytes"), logical, sizeof logical));
    const json_t *note;
    json_array_foreach(json_object_get(prune, "notes"), i, note)
    {
        const char *text = json_string_value(note);
        if (text != NULL && strncmp(text, "partial failure", 15) == 0)
            fprintf(out, "warning: %s\n", text);
    }
}
