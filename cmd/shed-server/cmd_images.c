/* shed-server images ls|rm|prune: the cached image variants. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "cmd/common/image_print.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "runtime/backend.h"
#include "runtime/df.h"
#include "runtime/image_tables.h"
#include "runtime/instance.h"
#include "runtime/instance_disk.h"

/* The REST API's bodies (runtime/image_tables.h): the same sizes as system df. */
static int images_ls(const struct shed_config *config, bool json)
{
    json_t *body = NULL;
    struct shed_err err;
    struct instance_store *store = NULL;
    if (instance_store_open(config->instance_dir, &store, &err) < 0)
        return cli_fail(&err);
    int listed = image_tables_list_json(config, store, &body, &err);
    instance_store_close(store);
    if (listed < 0)
        return cli_fail(&err);
    int ret = EXIT_OK;
    if (json)
        ret = cli_print_json(body);
    else
        image_print_table(json_object_get(body, "images"));
    json_decref(body);
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
    struct image_reclaimed reclaimed;
    int ret = instance_disk_check_image_unused(store, name, &err);
    if (ret == 0 && (ret = images_in_use(store, &in_use, &err)) == 0)
        ret = image_cache_remove(config, name, (const char *const *)in_use, &pins.pins, &reclaimed,
                                 &err);
    instance_image_refs_free(in_use);
    instance_store_close(store);
    if (ret < 0)
        return cli_fail_where(&err, config, data_dir_given);
    char size[32];
    if (reclaimed.blobs > 0)
        printf("removed image %s and %u blob(s) only it needed (%s)\n", name, reclaimed.blobs,
               format_size(reclaimed.bytes, size, sizeof size));
    else
        printf("removed image %s\n", name);
    if (reclaimed.kept_because[0] != '\0')
        fprintf(stderr, "shed-server: note: its blobs stay: %s\n", reclaimed.kept_because);
    return EXIT_OK;
}

/* As the server does it: running-ness from the backends this build has. */
static int images_prune(const struct shed_config *config, bool dry_run, bool json)
{
    struct shed_err err = {0};
    struct instance_store *store = NULL;
    struct backend_set *backends = NULL;
    if (instance_store_open(config->instance_dir, &store, &err) < 0)
        return cli_fail(&err);
    if (backend_set_new(config, &backends, &err) < 0) {
        instance_store_close(store);
        return cli_fail(&err);
    }
    struct shed_probe probe = shed_probe_for_backends(backends);
    struct prune_opts opts = {
        .config = config, .instances = store, .probe = &probe, .dry_run = dry_run};
    json_t *body = NULL;
    int ret = image_tables_prune_json(&opts, &body, &err) < 0 ? cli_fail(&err) : EXIT_OK;
    if (ret == EXIT_OK && json)
        ret = cli_print_json(body);
    else if (ret == EXIT_OK)
        image_print_prune(stdout, body);
    json_decref(body);
    backend_set_free(backends);
    instance_store_close(store);
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
