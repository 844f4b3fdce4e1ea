/* shed-server import FILE --name NAME: an image archive, an OCI layout directory or a rootfs
 * tarball made a variant of the image cache (imaged/import.h), offline. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/import.h"

static volatile int interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int install_signal_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigemptyset(&action.sa_mask);
    return sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0 ? -1 : 0;
}

static void print_help(FILE *out)
{
    fputs("Usage: shed-server import [OPTIONS] FILE --name NAME\n"
          "\n"
          "Makes an image from a file the variant NAME of the image cache, without a registry:\n"
          "the same conversion as a pull, NAME-rootfs.ext4 in images_dir, ready for\n"
          "`shed create x --image NAME`. FILE is one of (told apart by its content):\n"
          "  docker-archive  docker save / podman save / skopeo docker-archive: (maybe gzip)\n"
          "  oci-archive     a tar of an OCI image layout (skopeo oci-archive:)\n"
          "  oci             an OCI image layout directory (skopeo oci:DIR)\n"
          "  tarball         a plain root filesystem tar, plain, gzip or zstd (docker import)\n"
          "Blobs go into the content store, each digest verified. Imported variants are kept\n"
          "by prune; `images rm NAME` removes one. Importing a NAME again replaces it.\n"
          "\n"
          "Options:\n"
          "  -n, --name=NAME        the variant to create (not one of server.yaml's images)\n"
          "  -f, --format=KIND      docker-archive, oci-archive, oci or tarball (default: auto)\n"
          "      --json             print the result as JSON\n" CLI_CONFIG_OPTIONS_HELP
          "  -h, --help             show this help and exit\n",
          out);
}

struct import_args {
    const char *config_path, *data_dir, *name, *file;
    enum image_import_kind kind;
    bool json;
};

/* Returns 0 to run, 1 after --help, or EXIT_USAGE. */
static int parse_args(int argc, char **argv, struct import_args *args)
{
    enum { OPT_JSON = 256, OPT_DATA_DIR };
    static const struct option options[] = {
        {"name", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, OPT_JSON},
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, kind;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "n:f:c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'n': args->name = optarg; break;
        case 'f':
            if ((kind = image_import_kind_from_name(optarg)) < 0)
                return cli_usage_error("import",
                                       "unknown format '%s' (docker-archive, oci-archive, oci, "
                                       "tarball or auto)",
                                       optarg);
            args->kind = (enum image_import_kind)kind;
            break;
        case OPT_JSON: args->json = true; break;
        case 'c': args->config_path = optarg; break;
        case OPT_DATA_DIR: args->data_dir = optarg; break;
        case 'h': print_help(stdout); return 1;
        default: return cli_usage_error("import", "invalid option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("import",
                               optind >= argc ? "missing FILE" : "expected exactly one FILE");
    args->file = argv[optind];
    if (args->name == NULL)
        return cli_usage_error("import", "missing --name NAME (the variant to create)");
    return 0;
}

struct import_output {
    bool tty;
    bool line_open;
};

static void end_line(struct import_output *out)
{
    if (out->line_open) {
        fputs("\r\033[K", stderr);
        out->line_open = false;
    }
}

static void on_log(enum image_log_level level, const char *name, const char *message, void *ctx)
{
    struct import_output *out = ctx;
    if (level == IMAGE_LOG_DETAIL)
        return;
    end_line(out);
    fprintf(stderr, "%s%s: %s\n", level == IMAGE_LOG_WARNING ? "shed-server: warning: " : "", name,
            message);
}

static void on_progress(const char *name, const char *phase, uint64_t done, uint64_t total,
                        void *ctx)
{
    struct import_output *out = ctx;
    if (!out->tty || total == 0)
        return;
    char done_text[32], total_text[32];
    fprintf(stderr, "\r\033[K%s: %s %s / %s (%d%%)", name, phase,
            format_size(done, done_text, sizeof done_text),
            format_size(total, total_text, sizeof total_text), (int)(done * 100 / total));
    out->line_open = true;
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

int cmd_import(int argc, char **argv)
{
    struct import_args args = {.kind = IMAGE_IMPORT_AUTO};
    int rc = parse_args(argc, argv, &args);
    if (rc != 0)
        return rc == 1 ? EXIT_OK : rc;
    struct shed_config config;
    if (cli_load_config(args.config_path, args.data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    struct shed_err err = {0};
    if (install_signal_handlers() < 0) {
        shed_config_free(&config);
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        return cli_fail(&err);
    }
    struct import_output out = {.tty = isatty(STDERR_FILENO) == 1};
    struct image_ensure_opts opts = {
        .log = on_log, .progress = on_progress, .ctx = &out, .cancel = &interrupted};
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct image_import_result result;
    rc = image_import(&config, args.file, args.name, args.kind, &opts, &result, &err);
    end_line(&out);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (rc < 0)
        rc = cli_fail(&err);
    else {
        double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
        rc = print_result(&args, &result, seconds);
        image_import_result_free(&result);
    }
    shed_config_free(&config);
    return rc;
}
