/* shed-server convert REF -o OUT.ext4: pulls what is missing, then writes the image's
 * flattened layers as an ext4 root filesystem (OUT.ext4.tmp + fsync + rename). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "cmd/common/progress.h"
#include "commands.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "imaged/cache.h"
#include "imaged/imaged.h"
#include "oci/oci.h"

#define MAX_INSECURE_REGISTRIES 16

struct convert_args {
    const char *ref;
    const char *output;
    const char *platform;
    const char *creds;
    uint64_t size_bytes; /* 0: rootfs_size of the config */
    const char *insecure[MAX_INSECURE_REGISTRIES + 1];
    size_t insecure_count;
    volatile int *cancel; /* set by SIGINT/SIGTERM (cli_catch_interrupts) */
};

const struct cli_option convert_options[] = {
    {"output", 'o', "FILE", "the ext4 image to write (required)", OPT_OUTPUT},
    {"size", 's', "SIZE", "filesystem size, e.g. 20G, 512M (default: rootfs_size, 20G)", OPT_SIZE},
    {"platform", 0, "OS/ARCH[/VARIANT]",
     "platform to pick from a multi-platform image (default: server.yaml's, else this host's)",
     OPT_PLATFORM},
    SERVER_CONFIG_OPTIONS,
    {"creds", 0, "USER:PASSWORD",
     "registry credentials (default: the auths of ~/.docker/config.json)", OPT_CREDS},
    {"insecure-registry", 0, "HOST[:PORT]",
     "use plain HTTP for this registry (repeatable; loopback always does)", OPT_INSECURE_REGISTRY},
    SERVER_OPTIONS_END,
};

static int parse_args(const struct cli_call *call, struct convert_args *args)
{
    struct shed_err err = {0};
    args->ref = call->operands[0];
    args->output = cli_value(call, OPT_OUTPUT);
    args->platform = cli_value(call, OPT_PLATFORM);
    args->creds = cli_value(call, OPT_CREDS);
    const char *size = cli_value(call, OPT_SIZE);
    if (size != NULL && (parse_size(size, &args->size_bytes, &err) < 0 || args->size_bytes == 0))
        return cli_usage_error(call, "invalid --size '%s'", size);
    for (size_t i = 0; i < call->option_count; i++) {
        if (call->options[i].id != OPT_INSECURE_REGISTRY)
            continue;
        if (args->insecure_count == MAX_INSECURE_REGISTRIES)
            return cli_usage_error(call, "too many --insecure-registry options (at most %d)",
                                   MAX_INSECURE_REGISTRIES);
        args->insecure[args->insecure_count++] = call->options[i].value;
    }
    if (args->output == NULL)
        return cli_usage_error(call, "missing --output (-o) FILE");
    return 0;
}

/* ---- progress: the download, then the conversion, each its own phase ----------------------- */

static void on_pull_progress(const struct oci_progress *progress, void *ctx)
{
    if (progress->event == OCI_PROGRESS_MANIFEST)
        progress_begin(ctx, "downloading %zu layer(s)", progress->image->layer_count);
    progress_update(ctx, progress->bytes_done, progress->bytes_total);
}

static void on_convert_progress(uint64_t done, uint64_t total, void *ctx)
{
    progress_update(ctx, done, total);
}

static void on_convert_warning(const char *message, void *ctx)
{
    progress_printf(ctx, stderr, "shed-server: warning: %s", message);
}

/* ---- the command -------------------------------------------------------------------------- */

/* The registries spoken to over plain HTTP: the config's and the command line's. */
static const char **insecure_registries(const struct shed_config *config,
                                        const struct convert_args *args)
{
    size_t count = 0;
    while (config->insecure_registries[count] != NULL)
        count++;
    const char **all = calloc(count + args->insecure_count + 1, sizeof *all);
    if (all == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++)
        all[i] = config->insecure_registries[i];
    for (size_t i = 0; i < args->insecure_count; i++)
        all[count + i] = args->insecure[i];
    return all;
}

static int pull_image(struct oci_store *store, const struct shed_config *config,
                      const struct convert_args *args, struct progress *bar,
                      char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_free const char **insecure = insecure_registries(config, args);
    if (insecure == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct oci_pull_opts pull_opts;
    image_pull_opts_from_config(config, &pull_opts);
    if (args->platform != NULL)
        pull_opts.platform = args->platform;
    pull_opts.creds = args->creds;
    pull_opts.insecure_registries = insecure;
    pull_opts.progress = on_pull_progress;
    pull_opts.progress_ctx = bar;
    pull_opts.cancel = args->cancel;
    struct oci_pull_result result;
    memset(&result, 0, sizeof result);
    int ret = oci_pull(store, args->ref, &pull_opts, &result, err);
    if (ret < 0)
        return -1;
    if (result.bytes_fetched == 0)
        progress_drop_bytes(bar);
    progress_end(bar, result.bytes_fetched == 0 ? "every layer already present" : NULL);
    memcpy(digest, result.image.manifest_digest, DIGEST_STRING_LEN + 1);
    oci_pull_result_free(&result);
    return 0;
}

static int convert_image(const struct oci_store *store, const struct convert_args *args,
                         struct progress *bar, const char *digest, struct shed_err *err)
{
    struct imaged_convert_opts opts = {
        .size_bytes = args->size_bytes,
        .progress = on_convert_progress,
        .warning = on_convert_warning,
        .ctx = bar,
        .cancel = args->cancel,
    };
    progress_begin(bar, "converting to %s", args->output);
    int ret = imaged_convert(store, digest, args->output, &opts, err);
    if (ret == 0)
        progress_end(bar, NULL);
    return ret;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

int cmd_convert(const struct cli_call *call)
{
    struct convert_args args = {0};
    int status = parse_args(call, &args);
    if (status != 0)
        return status;

    struct shed_err err = {0};
    if (cli_catch_interrupts(&args.cancel) < 0) {
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        return cli_fail(&err);
    }
    struct shed_config config;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    if (args.size_bytes == 0)
        args.size_bytes = config.rootfs_size;

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct progress bar;
    progress_init(&bar, stderr);
    struct oci_store *store = NULL;
    char digest[DIGEST_STRING_LEN + 1];
    int ret = oci_store_open(config.images_dir, &store, &err);
    if (ret == 0)
        ret = pull_image(store, &config, &args, &bar, digest, &err);
    if (ret == 0)
        ret = convert_image(store, &args, &bar, digest, &err);
    oci_store_close(store);
    shed_config_free(&config);
    if (ret < 0) {
        progress_clear(&bar);
        return cli_fail(&err);
    }

    char size_text[32];
    printf("%s: %s ext4 root filesystem of %s (%.19s) in %.1f s\n", args.output,
           format_size(args.size_bytes, size_text, sizeof size_text), args.ref, digest,
           seconds_since(&start));
    return EXIT_OK;
}
