/* shed-server images ls|rm|prune: the cached image variants. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "runtime/instance.h"
#include "runtime/instance_disk.h"

/* The REST API's image object (server/handlers_images.c), "is_base" included. */
static json_t *image_to_json(const struct image_info *info)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:b}", "name", info->name, "path",
                            info->path, "docker_ref", info->docker_ref, "digest", info->digest,
                            "size_bytes", (json_int_t)info->size_bytes, "source",
                            info->from_config ? "config" : "discovered", "cached", info->cached);
    if (obj != NULL && strcmp(info->name, SHED_BASE_IMAGE_NAME) == 0 &&
        json_object_set_new(obj, "is_base", json_true()) < 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* {"<key>": [image objects], extra...} on stdout. */
static int print_json(const char *key, const struct image_info_list *list, bool with_dry_run,
                      bool dry_run)
{
    json_t *array = json_array();
    json_t *root = json_object();
    if (array == NULL || root == NULL)
        goto oom;
    for (size_t i = 0; i < list->count; i++)
        if (json_array_append_new(array, image_to_json(&list->items[i])) < 0)
            goto oom;
    if (json_object_set(root, key, array) < 0 ||
        (with_dry_run && json_object_set_new(root, "dry_run", json_boolean(dry_run)) < 0))
        goto oom;
    char *text = json_dumps(root, JSON_INDENT(2));
    if (text == NULL)
        goto oom;
    puts(text);
    free(text);
    json_decref(array);
    json_decref(root);
    return EXIT_OK;
oom:
    json_decref(array);
    json_decref(root);
    struct shed_err err;
    shed_errf(&err, SHED_E_NO_MEMORY, "out of memory");
    return cli_fail(&err);
}

static const char *short_digest(const char *digest, char *buf, size_t len)
{
    if (strncmp(digest, "sha256:", 7) != 0)
        return digest[0] != '\0' ? digest : "-";
    snprintf(buf, len, "%.12s", digest + 7);
    return buf;
}

static void print_table(const struct image_info_list *list)
{
    printf("%-20s %-10s %-6s %-10s %-12s %s\n", "NAME", "SOURCE", "CACHED", "SIZE", "DIGEST",
           "REF");
    for (size_t i = 0; i < list->count; i++) {
        const struct image_info *info = &list->items[i];
        char size[32], digest[16];
        bool base = strcmp(info->name, SHED_BASE_IMAGE_NAME) == 0 && info->from_config;
        printf("%-20s %-10s %-6s %-10s %-12s %s\n", info->name,
               base                ? "base_image"
               : info->from_config ? "config"
                                   : "discovered",
               info->cached ? "yes" : "no",
               info->cached ? format_size(info->size_bytes, size, sizeof size) : "-",
               short_digest(info->digest, digest, sizeof digest),
               info->docker_ref[0] != '\0' ? info->docker_ref : info->path);
    }
}

static int images_ls(const struct shed_config *config, bool json)
{
    struct image_info_list list;
    struct shed_err err;
    if (image_cache_list(config, &list, &err) < 0)
        return cli_fail(&err);
    int ret = EXIT_OK;
    if (json)
        ret = print_json("images", &list, false, false);
    else
        print_table(&list);
    image_info_list_free(&list);
    return ret;
}

/* The images the sheds use, read through the instance store as the server reads them. */
static int images_in_use(struct instance_store *store, char ***in_use, struct shed_err *err)
{
    *in_use = NULL;
    return instance_store_image_refs(store, in_use, err);
}

static int images_rm(const struct shed_config *config, const char *name, bool data_dir_given)
{
    struct shed_err err;
    char **in_use = NULL;
    struct instance_store *store = NULL;
    if (instance_store_open(config->instance_dir, &store, &err) < 0)
        return cli_fail(&err);
    struct instance_disk_pins pins;
    instance_disk_pins_init(&pins, store, config);
    int ret = instance_disk_check_image_unused(store, name, &err);
    if (ret == 0 && (ret = images_in_use(store, &in_use, &err)) == 0)
        ret = image_cache_remove(config, name, (const char *const *)in_use, &pins.pins, &err);
    instance_image_refs_free(in_use);
    instance_store_close(store);
    if (ret < 0)
        return cli_fail_where(&err, config, data_dir_given);
    printf("removed image %s\n", name);
    return EXIT_OK;
}

static void print_prune(const struct image_info_list *list, bool dry_run)
{
    uint64_t total = 0;
    char size[32];
    for (size_t i = 0; i < list->count; i++) {
        total += list->items[i].size_bytes;
        printf("%s %s (%s)\n", dry_run ? "would remove" : "removed", list->items[i].name,
               format_size(list->items[i].size_bytes, size, sizeof size));
    }
    if (list->count == 0)
        printf("Nothing to prune.\n");
    else
        printf("%zu image(s) %s, %s\n", list->count, dry_run ? "would be pruned" : "pruned",
               format_size(total, size, sizeof size));
}

static int images_prune(const struct shed_config *config, bool dry_run, bool json)
{
    struct shed_err err;
    char **in_use = NULL;
    struct instance_store *store = NULL;
    if (instance_store_open(config->instance_dir, &store, &err) < 0)
        return cli_fail(&err);
    struct instance_disk_pins pins;
    instance_disk_pins_init(&pins, store, config);
    struct image_info_list pruned = {0};
    int ret = images_in_use(store, &in_use, &err);
    if (ret == 0)
        ret = image_cache_prune(config, (const char *const *)in_use, &pins.pins, dry_run, &pruned,
                                &err);
    instance_image_refs_free(in_use);
    instance_store_close(store);
    if (ret < 0)
        return cli_fail(&err);
    ret = EXIT_OK;
    if (json)
        ret = print_json("deleted", &pruned, true, dry_run);
    else
        print_prune(&pruned, dry_run);
    image_info_list_free(&pruned);
    return ret;
}

/* ---- the commands ------------------------------------------------------------------------ */

static int with_config(const struct cli_call *call,
                       int (*run)(const struct cli_call *call, const struct shed_config *config))
{
    struct shed_config config;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    int ret = run(call, &config);
    shed_config_free(&config);
    return ret;
}

static int run_ls(const struct cli_call *call, const struct shed_config *config)
{
    return images_ls(config, cli_flag(call, OPT_JSON));
}

static int run_rm(const struct cli_call *call, const struct shed_config *config)
{
    int ret = EXIT_OK;
    for (size_t i = 0; i < call->operand_count; i++)
        if (images_rm(config, call->operands[i], cli_value(call, OPT_DATA_DIR) != NULL) != EXIT_OK)
            ret = EXIT_FAILURE_RUN;
    return ret;
}

static int run_prune(const struct cli_call *call, const struct shed_config *config)
{
    return images_prune(config, cli_flag(call, OPT_DRY_RUN), cli_flag(call, OPT_JSON));
}

static int cmd_images_ls(const struct cli_call *call)
{
    return with_config(call, run_ls);
}

static int cmd_images_rm(const struct cli_call *call)
{
    return with_config(call, run_rm);
}

static int cmd_images_prune(const struct cli_call *call)
{
    return with_config(call, run_prune);
}

static const struct cli_option ls_options[] = {SERVER_CONFIG_OPTIONS, SERVER_OPTION_JSON,
                                               SERVER_OPTIONS_END};
static const struct cli_option rm_options[] = {SERVER_CONFIG_OPTIONS, SERVER_OPTIONS_END};
static const struct cli_option prune_options[] = {
    {"dry-run", 'n', NULL, "list what would be removed, remove nothing", OPT_DRY_RUN},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTION_JSON,
    SERVER_OPTIONS_END,
};

const struct cli_command images_commands[] = {
    {"ls", "list", "[OPTIONS]", "List the image variants.",
     "Config variants first, then <name>-rootfs.ext4 files found in images_dir. --json\n"
     "prints the REST API's image objects.\n",
     ls_options, .run = cmd_images_ls, .max_operands = 0},
    {"rm", "remove", "[OPTIONS] NAME...", "Remove cached image variants.",
     "Removes the rootfs, .source and kernel files (the .lock stays). Refused for names in\n"
     "server.yaml, used by a shed, or being converted; _base only when base_image is unset.\n",
     rm_options, .run = cmd_images_rm, .min_operands = 1, .max_operands = -1,
     .complete_kind = COMPLETE_IMAGE},
    {"prune", NULL, "[OPTIONS]", "Remove cached variants nothing uses.",
     "Cached variants that neither server.yaml (with a cache built from the configured ref)\n"
     "nor any shed references.\n",
     prune_options, .run = cmd_images_prune, .max_operands = 0},
    {NULL},
};
