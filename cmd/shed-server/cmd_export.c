/* shed-server export NAME -o FILE.ext4: a stopped shed's root filesystem, as the shed sees
 * it, flattened into one plain ext4 image (runtime/shed_export.h), whatever its disk kind:
 * to keep it, or to move it to another host. */
#include <stdio.h>
#include <time.h>

#include "cli_util.h"
#include "commands.h"
#include "common/fsutil.h"
#include "runtime/backend.h"
#include "runtime/df.h"
#include "runtime/instance.h"
#include "runtime/shed_export.h"

const struct cli_option export_options[] = {
    {"output", 'o', "FILE", "the ext4 image to write (required)", OPT_OUTPUT},
    {"size", 's', "SIZE",
     "filesystem size, e.g. 20G (default: the larger of the shed's disk and its image)", OPT_SIZE},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTIONS_END,
};

static void on_warning(const char *message, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "shed-server: warning: %s\n", message);
}

static int run_export(const struct cli_call *call, const struct shed_config *config, uint64_t size,
                      struct shed_err *err)
{
    const char *name = call->operands[0], *output = cli_value(call, OPT_OUTPUT);
    struct backend_set *backends = NULL;
    struct instance_store *store = NULL;
    if (backend_set_new(config, &backends, err) < 0)
        return -1;
    int rc = instance_store_open(config->instance_dir, &store, err);
    if (rc == 0) {
        struct shed_probe probe = shed_probe_for_backends(backends);
        struct shed_export_opts opts = {.size_bytes = size, .probe = &probe, .warning = on_warning};
        struct timespec start, end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        rc = shed_export(config, store, name, output, &opts, err);
        clock_gettime(CLOCK_MONOTONIC, &end);
        if (rc == 0)
            printf("exported shed %s to %s in %.1f s\n", name, output,
                   (double)(end.tv_sec - start.tv_sec) +
                       (double)(end.tv_nsec - start.tv_nsec) / 1e9);
    }
    instance_store_close(store);
    backend_set_free(backends);
    return rc;
}

int cmd_export(const struct cli_call *call)
{
    if (cli_value(call, OPT_OUTPUT) == NULL)
        return cli_usage_error(call, "-o FILE.ext4 is required");
    uint64_t size = 0;
    struct shed_err err = {0};
    const char *size_text = cli_value(call, OPT_SIZE);
    if (size_text != NULL && (parse_size(size_text, &size, &err) < 0 || size == 0))
        return cli_usage_error(call, "invalid --size '%s'", size_text);
    struct shed_config config;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    int ret = EXIT_OK;
    if (run_export(call, &config, size, &err) < 0)
        ret = cli_fail_where(&err, &config, cli_value(call, OPT_DATA_DIR) != NULL);
    shed_config_free(&config);
    return ret;
}
