#include "instance_refs.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"

#define METADATA_MAX_SIZE (4u << 20)

void instance_image_refs_free(char **names)
{
    if (names == NULL)
        return;
    for (char **p = names; *p != NULL; p++)
        free(*p);
    free(names);
}

struct name_list {
    char **items; /* NULL-terminated once finished */
    size_t count, capacity;
};

static int name_list_add(struct name_list *list, const char *name, struct shed_err *err)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i], name) == 0)
            return 0;
    if (list->count + 2 > list->capacity) {
        size_t capacity = list->capacity == 0 ? 8 : list->capacity * 2;
        char **grown = realloc(list->items, capacity * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count] = strdup(name);
    if (list->items[list->count] == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    list->items[++list->count] = NULL;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the "image" of one shed's metadata.json; a shed without one adds nothing. */
static int add_image_of_shed(struct name_list *list, const char *shed_dir, struct shed_err *err)
{
    cleanup_free char *path = fs_path_join(shed_dir, "metadata.json");
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, &text, &len, METADATA_MAX_SIZE, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1;
    json_error_t json_err;
    json_t *root = json_loadb(text, len, 0, &json_err);
    if (root == NULL)
        return shed_errf(err, SHED_E_IO, "cannot parse %s: line %d: %s", path, json_err.line,
                         json_err.text);
    const json_t *image = json_is_object(root) ? json_object_get(root, "image") : NULL;
    int ret = 0;
    if (image != NULL && !json_is_string(image) && !json_is_null(image))
        ret = shed_errf(err, SHED_E_IO, "%s: \"image\" is not a string", path);
    else if (json_is_string(image) && json_string_value(image)[0] != '\0')
        ret = name_list_add(list, json_string_value(image), err);
    json_decref(root);
    return ret;
}

static int scan_instance_dir(DIR *dir, const char *instance_dir, struct name_list *list,
                             struct shed_err *err)
{
    struct dirent *entry;
    int rc;
    while ((rc = fs_dir_next(dir, instance_dir, &entry, err)) > 0) {
        /* Shed names start with a letter: ".", "..", ".locks" and friends are not sheds. */
        if (entry->d_name[0] == '.' || (entry->d_type != DT_DIR && entry->d_type != DT_UNKNOWN))
            continue;
        cleanup_free char *shed_dir = fs_path_join(instance_dir, entry->d_name);
        if (shed_dir == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        if (add_image_of_shed(list, shed_dir, err) < 0)
            return -1;
    }
    return rc;
}

int instance_image_refs(const char *instance_dir, char ***names, struct shed_err *err)
{
    *names = NULL;
    struct name_list list = {.items = calloc(8, sizeof(char *)), .count = 0, .capacity = 8};
    if (list.items == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    DIR *dir = opendir(instance_dir);
    if (dir == NULL && errno != ENOENT) {
        instance_image_refs_free(list.items);
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", instance_dir);
    }
    int ret = dir != NULL ? scan_instance_dir(dir, instance_dir, &list, err) : 0;
    if (dir != NULL)
        closedir(dir);
    if (ret < 0) {
        instance_image_refs_free(list.items);
        return -1;
    }
    qsort(list.items, list.count, sizeof *list.items, compare_names);
    *names = list.items;
    return 0;
}
