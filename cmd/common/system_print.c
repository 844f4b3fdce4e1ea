#include "cmd/common/system_print.h"

#include <string.h>

#include "common/fsutil.h"

static const char *str_of(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    return value != NULL ? value : "";
}

static unsigned long long uint_of(const json_t *obj, const char *key)
{
    json_int_t value = json_integer_value(json_object_get(obj, key));
    return value > 0 ? (unsigned long long)value : 0;
}

/* LOGICAL PHYSICAL EXCLUSIVE columns of a size object. */
static void print_sizes(FILE *out, const json_t *size)
{
    char logical[32], physical[32], exclusive[32];
    fprintf(out, " %10s %10s %10s\n",
            format_size(uint_of(size, "logical_bytes"), logical, sizeof logical),
            format_size(uint_of(size, "physical_bytes"), physical, sizeof physical),
            format_size(uint_of(size, "exclusive_bytes"), exclusive, sizeof exclusive));
}

static void print_rollup_row(FILE *out, const char *category, const json_t *total)
{
    fprintf(out, "%-10s %7llu", category, uint_of(total, "files"));
    print_sizes(out, total);
}

static void print_item_row(FILE *out, const char *type, const char *label, const json_t *size)
{
    char logical[32], physical[32], exclusive[32];
    fprintf(out, "  %-12s %10s %10s %10s  %s\n", type,
            format_size(uint_of(size, "logical_bytes"), logical, sizeof logical),
            format_size(uint_of(size, "physical_bytes"), physical, sizeof physical),
            format_size(uint_of(size, "exclusive_bytes"), exclusive, sizeof exclusive), label);
}

static void print_details(FILE *out, const json_t *df)
{
    fprintf(out, "\n  %-12s %10s %10s %10s  %s\n", "TYPE", "LOGICAL", "PHYSICAL", "EXCLUSIVE",
            "NAME");
    size_t i;
    const json_t *entry;
    json_array_foreach(json_object_get(df, "images"), i, entry)
    {
        char label[160];
        snprintf(label, sizeof label, "%s%s", str_of(entry, "name"),
                 json_is_true(json_object_get(entry, "is_base")) ? " (base_image)" : "");
        print_item_row(out, "image", label, json_object_get(entry, "total"));
    }
    json_array_foreach(json_object_get(df, "sheds"), i, entry)
    {
        char label[128];
        snprintf(label, sizeof label, "%s (%s)", str_of(entry, "name"), str_of(entry, "status"));
        print_item_row(out, "shed", label, json_object_get(entry, "total"));
    }
    json_array_foreach(json_object_get(df, "orphans"), i, entry)
    {
        char type[32];
        snprintf(type, sizeof type, "orphan %s", str_of(entry, "kind"));
        print_item_row(out, type, str_of(entry, "path"), json_object_get(entry, "size"));
    }
}

void system_print_df(FILE *out, const json_t *df, bool verbose)
{
    const json_t *totals = json_object_get(df, "totals");
    fprintf(out, "%-10s %7s %10s %10s %10s\n", "CATEGORY", "FILES", "LOGICAL", "PHYSICAL",
            "EXCLUSIVE");
    print_rollup_row(out, "images", json_object_get(totals, "images"));
    print_rollup_row(out, "sheds", json_object_get(totals, "sheds"));
    print_rollup_row(out, "orphans", json_object_get(totals, "orphans"));
    print_rollup_row(out, "total", json_object_get(totals, "all"));
    if (verbose) {
        print_details(out, df);
        size_t i;
        const json_t *note;
        fprintf(out, "\nNotes:\n");
        json_array_foreach(json_object_get(df, "notes"), i, note)
            fprintf(out, "  - %s\n", json_string_value(note));
    }
}

static const char *item_label(const json_t *item)
{
    const char *name = str_of(item, "name");
    return name[0] != '\0' ? name : str_of(item, "path");
}

void system_print_prune(FILE *out, const json_t *prune)
{
    bool dry_run = json_is_true(json_object_get(prune, "dry_run"));
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(prune, "items"), i, item)
    {
        char freed[32];
        const char *action = str_of(item, "action");
        bool truncate = strcmp(action, "truncated") == 0;
        fprintf(out, "%s %-11s %s (%s)\n",
                dry_run ? (truncate ? "would truncate" : "would delete") : action,
                str_of(item, "kind"), item_label(item),
                format_size(uint_of(json_object_get(item, "freed"), "exclusive_bytes"), freed,
                            sizeof freed));
    }
    json_array_foreach(json_object_get(prune, "skipped"), i, item)
        fprintf(out, "skipped %-11s %s: %s\n", str_of(item, "kind"), item_label(item),
                str_of(item, "reason"));
    const json_t *totals = json_object_get(prune, "totals");
    const json_t *freed = json_object_get(totals, "freed");
    char logical[32], physical[32], exclusive[32];
    if (uint_of(totals, "items") == 0)
        fprintf(out, "Nothing to prune.\n");
    else
        fprintf(out, "%s %llu item(s): %s freed on disk (logical %s, physical %s)\n",
                dry_run ? "Dry run:" : "Pruned", uint_of(totals, "items"),
                format_size(uint_of(freed, "exclusive_bytes"), exclusive, sizeof exclusive),
                format_size(uint_of(freed, "logical_bytes"), logical, sizeof logical),
                format_size(uint_of(freed, "physical_bytes"), physical, sizeof physical));
    const json_t *note;
    json_array_foreach(json_object_get(prune, "notes"), i, note)
    {
        const char *text = json_string_value(note);
        if (text != NULL && strncmp(text, "partial failure", 15) == 0)
            fprintf(out, "warning: %s\n", text);
    }
}
