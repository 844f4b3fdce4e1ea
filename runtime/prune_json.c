/* Scopes, durations and the POST /api/system/prune body. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"

static const struct {
    const char *name;
    unsigned scope;
} scope_names[] = {
    {"images", PRUNE_SCOPE_IMAGES},
    {"instances", PRUNE_SCOPE_INSTANCES},
    {"logs", PRUNE_SCOPE_LOGS},
    {"orphans", PRUNE_SCOPE_ORPHANS},
};

unsigned prune_scope_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof scope_names / sizeof scope_names[0]; i++)
        if (strcmp(scope_names[i].name, name) == 0)
            return scope_names[i].scope;
    return 0;
}

json_t *prune_scopes_to_json(unsigned scopes)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < sizeof scope_names / sizeof scope_names[0]; i++) {
        if ((scopes & scope_names[i].scope) &&
            json_array_append_new(array, json_string(scope_names[i].name)) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static int unit_seconds(char unit, uint64_t *seconds)
{
    switch (unit) {
    case 'h': *seconds = 3600; return 0;
    case 'm': *seconds = 60; return 0;
    case 's': *seconds = 1; return 0;
    default: return -1;
    }
}

#define MAX_DURATION_SECONDS (100ull * 365 * 24 * 3600)

int prune_parse_duration(const char *text, uint64_t *seconds, struct shed_err *err)
{
    *seconds = 0;
    const char *p = text;
    if (p == NULL || *p == '\0')
        goto invalid;
    if (strcmp(p, "0") == 0)
        return 0;
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            goto invalid; /* a sign (negative durations), a fraction, a space */
        errno = 0;
        char *end = NULL;
        unsigned long long value = strtoull(p, &end, 10);
        uint64_t unit = 0;
        if (errno != 0 || end == p || unit_seconds(*end, &unit) < 0)
            goto invalid;
        if (value > MAX_DURATION_SECONDS / unit || *seconds + value * unit > MAX_DURATION_SECONDS)
            goto invalid;
        *seconds += value * unit;
        p = end + 1;
    }
    return 0;
invalid:
    return shed_errf(err, SHED_E_INVALID_REQUEST,
                     "invalid duration \"%.40s\": use a non-negative duration like 72h, 90m, "
                     "1h30m or 0s",
                     text != NULL ? text : "");
}

void prune_format_duration(uint64_t seconds, char *out, size_t len)
{
    unsigned long long h = seconds / 3600, m = seconds % 3600 / 60, s = seconds % 60;
    if (h > 0)
        snprintf(out, len, "%lluh%llum%llus", h, m, s);
    else if (m > 0)
        snprintf(out, len, "%llum%llus", m, s);
    else
        snprintf(out, len, "%llus", s);
}

static const char *const kind_names[] = {
    [PRUNE_KIND_INSTANCE] = "instance",
    [PRUNE_KIND_IMAGE] = "image",
    [PRUNE_KIND_TMP] = "tmp",
    [PRUNE_KIND_SOURCE] = "source",
    [PRUNE_KIND_LOCK] = "lock",
    [PRUNE_KIND_BLOB] = "blob",
    [PRUNE_KIND_CONSOLE_LOG] = "console_log",
    [PRUNE_KIND_ORPHAN_INSTANCE] = "instance",
};

const char *prune_kind_name(enum prune_kind kind)
{
    return (size_t)kind < sizeof kind_names / sizeof kind_names[0] ? kind_names[kind] : "unknown";
}

static int set_optional_string(json_t *obj, const char *key, const char *value)
{
    if (value == NULL)
        return 0;
    return json_object_set_new(obj, key, json_string(value));
}

static json_t *item_to_json(const struct prune_item *item, bool skipped)
{
    json_t *obj = json_pack("{s:s}", "kind", prune_kind_name(item->kind));
    if (obj == NULL)
        return NULL;
    int rc = set_optional_string(obj, "name", item->name);
    if (rc == 0)
        rc = set_optional_string(obj, "path", item->path);
    if (rc == 0 && !skipped)
        rc = json_object_set_new(
            obj, "action",
            json_string(item->action == PRUNE_ACTION_TRUNCATE ? "truncated" : "deleted"));
    if (rc == 0 && !skipped)
        rc = json_object_set_new(obj, "freed", df_size_to_json(&item->freed));
    if (rc == 0)
        rc = set_optional_string(obj, "reason", item->reason);
    if (rc < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *list_to_json(const struct prune_list *list, bool skipped)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < list->count; i++) {
        if (json_array_append_new(array, item_to_json(&list->items[i], skipped)) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

json_t *prune_plan_to_json(const struct prune_plan *plan, const char *server_name)
{
    char until[48];
    prune_format_duration(plan->opts.until_seconds, until, sizeof until);
    json_t *totals = json_pack("{s:o, s:I}", "freed", df_size_to_json(&plan->freed), "items",
                               (json_int_t)plan->items.count);
    return json_pack("{s:b, s:s, s:o, s:s, s:o, s:o, s:o, s:o}", "dry_run", plan->opts.dry_run,
                     "server_name", server_name != NULL ? server_name : "", "scope",
                     prune_scopes_to_json(plan->opts.scopes), "until", until, "items",
                     list_to_json(&plan->items, false), "skipped",
                     list_to_json(&plan->skipped, true), "notes",
                     df_notes_to_json(plan->notes, plan->note_count), "totals", totals);
}
