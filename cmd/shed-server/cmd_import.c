/* shed-server import FILE --name NAME: an image archive, an OCI layout directory or a rootfs
 * tarball made a variant of the image cache (imaged/import.h), offline. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "cmd/common/progress.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/import.h"

const struct cli_option import_options[] = {
    {"name", 'n', "NAME", "the variant to create (not one of server.yaml's images; required)",
     OPT_NAME},
    {"format", 'f', "KIND", "docker-archive, oci-archive, oci or tarball (default: auto)",
     OPT_FORMAT},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTION_JSON,
    SERVER_OPTIONS_END,
};

struct import_args {
    const char *name, *file;
    enum image_import_kind kind;
    bool json;
};

static int parse_args(const struct cli_call *call, struct import_args *args)
{
    args->file = call->operands[0];
    args->name = cli_value(call, OPT_NAME);
    args->json = cli_flag(call, OPT_JSON);
    args->kind = IMAGE_IMPORT_AUTO;
    const char *format = cli_value(call, OPT_FORMAT);
    if (format != NULL) {
        int kind = image_import_kind_from_name(format);
        if (kind < 0)
            return cli_usage_error(call,
                                   "unknown format '%s' (docker-archive, oci-archive, oci, "
                                   "tarball or auto)",
                                   format);
        args->kind = (enum image_import_kind)kind;
    }
    if (args->name == NULL)
        return cli_usage_error(call, "missing --name NAME (the variant to create)");
    return 0;
}

struct import_output {
    struct progress progress;
};

static void on_log(enum image_log_level level, const char *name, const char *message, void *ctx)
{
    struct import_output *out = ctx;
    if (level == IMAGE_LOG_DETAIL)
        return;
    if (level == IMAGE_LOG_WARNING) {
        progress_printf(&out->progress, stderr, "shed-server: warning: %s: %s", name, message);
        return;
    }
    progress_end(&out->progress, NULL);
    progress_printf(&out->progress, stderr, "%s: %s", name, message);
}

static void on_progress(const char *name, const char *phase, uint64_t done, uint64_t total,
                        void *ctx)
{
    struct import_output *out = ctx;
    char label[160];
    snprintf(label, sizeof label, "%s: %s", name,
             strcmp(phase, "import") == 0    ? "copying blobs into the store"
             : strcmp(phase, "convert") == 0 ? "converting to ext4"
                                             : phase);
    progress_update_phase(&out->progress, label, done, total);
}

static const char *outcome_text(enum image_ensure_outcome outcome)
{
    return outcome == IMAGE_ENSURE_LINKED ? "shared with a variant of the same digest"
                                          : "converted";
}

static int print_result(const struct import_args *args, const struct image_import_result *result,
                        double seconds)
{
    if (!args->json) {
        printf("%s: imported %s (%s, %zu layer(s), %s) as %s (%s) in %.1f s\n", args->name,
               args->file, image_import_kind_name(result->kind), result->layer_count,
               result->manifest_digest, result->variant.rootfs_path,
               outcome_text(result->variant.outcome), seconds);
        return EXIT_OK;
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:b}", "name", args->name, "kind",
                             image_import_kind_name(result->kind), "source", result->source,
                             "digest", result->manifest_digest, "path", result->variant.rootfs_path,
                             "layers", (json_int_t)result->layer_count, "bytes_imported",
                             (json_int_t)result->bytes_imported, "converted",
                             result->variant.outcome == IMAGE_ENSURE_CONVERTED);
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (text == NULL) {
        struct shed_err err;
        shed_errf(&err, SHED_E_NO_MEMORY, "out of memory");
        return cli_fail(&err);
    }
    puts(text);
    free(text);
    return EXIT_OK;
}

int cmd_import(const struct cli_call *call)
{
    struct import_args args;
    int rc = parse_args(call, &args);
    if (rc != 0)
        return rc;
    struct shed_config config;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    struct shed_err err = {0};
    volatile int *interrupted = NULL;
    if (cli_catch_interrupts(&interrupted) < 0) {
        shed_config_free(&config);
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        return cli_fail(&err);
    }
    struct import_output out = {0};
    progress_init(&out.progress, stderr);
    struct image_ensure_opts opts = {
        .log = on_log, .progress = on_progress, .ctx = &out, .cancel = interrupted};
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct image_import_result result;
    rc = image_import(&config, args.file, args.name, args.kind, &opts, &result, &err);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (rc < 0) {
        progress_clear(&out.progress);
        rc = cli_fail(&err);
    } else {
        progress_end(&out.progress, NULL);
        double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
        rc = print_result(&args, &result, seconds);
        image_import_result_free(&result);
    }
    shed_config_free(&config);
    return rc;
}
