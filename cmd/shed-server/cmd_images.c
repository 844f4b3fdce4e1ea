/* shed-server images ls|rm|prune: the cached image variants. */
#include <getopt.h>
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

static void print_help(FILE *out)
{
    fputs("Usage: shed-server images ls [--json] [--config FILE]\n"
          "       shed-server images rm NAME [--config FILE]\n"
          "       shed-server images prune [--dry-run] [--json] [--config FILE]\n"
          "\n"
          "ls     config variants first, then <name>-rootfs.ext4 files found in images_dir\n"
          "rm     removes a cached variant (rootfs, .source, kernel files; the .lock stays);\n"
          "       refused for names in server.yaml or used by a shed\n"
          "prune  removes cached variants that neither server.yaml (with a cache built from\n"
          "       the configured ref) nor any shed references\n"
          "\n"
          "Options:\n"
          "  -n, --dry-run       prune: list what would be removed, remove nothing\n"
          "      --json          machine-readable output (the REST API's image objects)\n"
          "  -c, --config FILE   read this server.yaml instead of searching\n"
          "      --data-dir DIR  data directory (images in DIR/images)\n"
          "  -h, --help          show this help\n",
          out);
}

static const char *source_name(const struct image_info *info)
{
    return info->from_config ? "config" : info->imported ? "imported" : "discovered";
}

static json_t *image_to_json(const struct image_info *info)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:b}", "name", info->name, "path", info->path,
                     "docker_ref", info->docker_ref, "digest", info->digest, "size_bytes",
                     (json_int_t)info->size_bytes, "source", source_name(info), "cached",
                     info->cached);
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
        printf("%-20s %-10s %-6s %-10s %-12s %s\n", info->name, source_name(info),
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
static int images_in_use(const struct shed_config *config, char ***in_use, struct shed_err *err)
{
    struct instance_store *store = NULL;
    *in_use = NULL;
    if (instance_store_open(config->instance_dir, &store, err) < 0)
        return -1;
    int ret = instance_store_image_refs(store, in_use, err);
    instance_store_close(store);
    return ret;
}

static int images_rm(const struct shed_config *config, const char *name)
{
    struct shed_err err;
    char **in_use = NULL;
    if (images_in_use(config, &in_use, &err) < 0)
        return cli_fail(&err);
    int ret = image_cache_remove(config, name, (const char *const *)in_use, &err);
    instance_image_refs_free(in_use);
    if (ret < 0)
        return cli_fail(&err);
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
    if (images_in_use(config, &in_use, &err) < 0)
        return cli_fail(&err);
    struct image_info_list pruned;
    int ret = image_cache_prune(config, (const char *const *)in_use, dry_run, &pruned, &err);
    instance_image_refs_free(in_use);
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

static int run_subcommand(const struct shed_config *config, const char *sub, int argc, char **argv,
                          bool json, bool dry_run)
{
    if (strcmp(sub, "rm") == 0) {
        if (argc != 1)
            return cli_usage_error("images", "rm takes exactly one NAME");
        return images_rm(config, argv[0]);
    }
    if (argc != 0)
        return cli_usage_error("images", "unexpected argument '%s'", argv[0]);
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return images_ls(config, json);
    return images_prune(config, dry_run, json);
}

int cmd_images(int argc, char **argv)
{
    enum { OPT_JSON = 256, OPT_DATA_DIR };
    static const struct option options[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, OPT_JSON},
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *data_dir = NULL;
    bool json = false, dry_run = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "nc:h", options, NULL)) != -1) {
        switch (opt) {
        case 'n': dry_run = true; break;
        case OPT_JSON: json = true; break;
        case 'c': config_path = optarg; break;
        case OPT_DATA_DIR: data_dir = optarg; break;
        case 'h': print_help(stdout); return EXIT_OK;
        default: return cli_usage_error("images", "invalid option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("images", "missing subcommand (ls, rm or prune)");
    const char *sub = argv[optind];
    if (strcmp(sub, "ls") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "rm") != 0 &&
        strcmp(sub, "prune") != 0)
        return cli_usage_error("images", "unknown subcommand '%s'", sub);
    if (dry_run && strcmp(sub, "prune") != 0)
        return cli_usage_error("images", "--dry-run only applies to prune");

    struct shed_config config;
    if (cli_load_config(config_path, data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    int ret = run_subcommand(&config, sub, argc - optind - 1, argv + optind + 1, json, dry_run);
    shed_config_free(&config);
    return ret;
}
