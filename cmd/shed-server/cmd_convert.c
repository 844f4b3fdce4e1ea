/* shed-server convert REF -o OUT.ext4: pulls what is missing, then writes the image's
 * flattened layers as an ext4 root filesystem (OUT.ext4.tmp + fsync + rename). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "imaged/imaged.h"
#include "oci/oci.h"

#define MAX_INSECURE_REGISTRIES 16

struct convert_args {
    const char *ref;
    const char *output;
    const char *platform;
    const char *config_path;
    const char *data_dir;
    const char *creds;
    uint64_t size_bytes; /* 0: rootfs_size of the config */
    const char *insecure[MAX_INSECURE_REGISTRIES + 1];
    size_t insecure_count;
};

/* Progress output: a redrawn bar on a terminal, nothing otherwise. */
struct progress_bar {
    bool enabled;
    const char *label;
    int last_permille;
};

/* Set from SIGINT/SIGTERM; the library polls it and stops with SHED_E_INTERRUPTED, after
 * which imaged_convert removes its .tmp. A signal handler can only reach a static. */
static volatile int cancel_requested;

static void on_cancel_signal(int signo)
{
    (void)signo;
    cancel_requested = 1;
}

static int install_cancel_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_cancel_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
}

static void print_help(void)
{
    printf("Usage: shed-server convert [OPTIONS] REF -o OUT.ext4\n"
           "\n"
           "Pull the image REF (only the blobs not yet in the store) and write its flattened\n"
           "layers as a bootable ext4 root filesystem OUT.ext4 (sparse). Needs no root and\n"
           "mounts nothing. OUT.ext4 appears only when complete.\n"
           "\n"
           "Options:\n"
           "  -o, --output=FILE          the ext4 image to write (required)\n"
           "  -s, --size=SIZE            filesystem size, e.g. 20G, 512M (default: rootfs_size\n"
           "                             of server.yaml, 20G)\n"
           "      --platform=OS/ARCH[/VARIANT]  platform to pick from a multi-platform image\n"
           "                             (default: platform of server.yaml, else this host's)\n"
           "  -c, --config=FILE          server.yaml whose images_dir holds the blob store\n"
           "                             (default lookup as for serve)\n"
           "      --data-dir=DIR         data directory (blob store in DIR/images; default\n"
           "                             data_dir of server.yaml, /var/lib/shed as root,\n"
           "                             else ~/.local/share/shed)\n"
           "      --creds=USER:PASSWORD  registry credentials (default: the auths of\n"
           "                             ~/.docker/config.json, else anonymous)\n"
           "      --insecure-registry=HOST[:PORT]  use plain HTTP for this registry\n"
           "                             (loopback registries always use HTTP); repeatable,\n"
           "                             added to insecure_registries of server.yaml\n"
           "  -h, --help                 show this help and exit\n");
}

/* Returns 0 to run, 1 after --help, or an EXIT_USAGE status. */
static int parse_args(int argc, char **argv, struct convert_args *args)
{
    enum { OPT_PLATFORM = 256, OPT_DATA_DIR, OPT_INSECURE, OPT_CREDS };
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'},
        {"size", required_argument, NULL, 's'},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"insecure-registry", required_argument, NULL, OPT_INSECURE},
        {"creds", required_argument, NULL, OPT_CREDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct shed_err err = {0};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":o:s:c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'o': args->output = optarg; break;
        case 'c': args->config_path = optarg; break;
        case OPT_CREDS: args->creds = optarg; break;
        case 's':
            if (parse_size(optarg, &args->size_bytes, &err) < 0 || args->size_bytes == 0)
                return cli_usage_error("convert", "invalid --size '%s'", optarg);
            break;
        case OPT_PLATFORM: args->platform = optarg; break;
        case OPT_DATA_DIR: args->data_dir = optarg; break;
        case OPT_INSECURE:
            if (args->insecure_count == MAX_INSECURE_REGISTRIES)
                return cli_usage_error("convert", "too many --insecure-registry options");
            args->insecure[args->insecure_count++] = optarg;
            break;
        case 'h': print_help(); return 1;
        case ':': return cli_usage_error("convert", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage_error("convert", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("convert", "missing image reference");
    if (argc - optind > 1)
        return cli_usage_error("convert", "unexpected argument '%s'", argv[optind + 1]);
    args->ref = argv[optind];
    if (args->output == NULL)
        return cli_usage_error("convert", "missing --output (-o) FILE");
    return 0;
}

/* ---- progress ----------------------------------------------------------------------------- */

static void progress_draw(struct progress_bar *bar, uint64_t done, uint64_t total)
{
    if (!bar->enabled || total == 0)
        return;
    int permille = (int)(done * 1000 / total);
    if (permille == bar->last_permille)
        return;
    bar->last_permille = permille;
    enum { WIDTH = 30 };
    char cells[WIDTH + 1];
    int filled = permille * WIDTH / 1000;
    for (int i = 0; i < WIDTH; i++)
        cells[i] = i < filled ? '#' : '.';
    cells[WIDTH] = '\0';
    char done_text[32], total_text[32];
    fprintf(stderr, "\r%-10s [%s] %3d%%  %s / %s\033[K", bar->label, cells, permille / 10,
            format_size(done, done_text, sizeof done_text),
            format_size(total, total_text, sizeof total_text));
    fflush(stderr);
}

static void progress_end(struct progress_bar *bar)
{
    if (bar->enabled && bar->last_permille >= 0)
        fputc('\n', stderr);
    bar->last_permille = -1;
}

static void on_pull_progress(const struct oci_progress *progress, void *ctx)
{
    if (progress->event == OCI_PROGRESS_LAYER_BYTES || progress->event == OCI_PROGRESS_LAYER_DONE)
        progress_draw(ctx, progress->bytes_done, progress->bytes_total);
}

static void on_convert_progress(uint64_t done, uint64_t total, void *ctx)
{
    progress_draw(ctx, done, total);
}

static void on_convert_warning(const char *message, void *ctx)
{
    struct progress_bar *bar = ctx;
    progress_end(bar);
    fprintf(stderr, "shed-server: warning: %s\n", message);
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
                      const struct convert_args *args, struct progress_bar *bar,
                      char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_free const char **insecure = insecure_registries(config, args);
    if (insecure == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct oci_pull_opts pull_opts = {
        .platform = args->platform != NULL ? args->platform : config->platform,
        .creds = args->creds,
        .insecure_registries = insecure,
        .registry_ca = shed_config_registry_ca_of,
        .registry_ca_ctx = config,
        .progress = on_pull_progress,
        .progress_ctx = bar,
        .cancel = &cancel_requested,
    };
    struct oci_pull_result result;
    memset(&result, 0, sizeof result);
    bar->label = "pulling";
    int ret = oci_pull(store, args->ref, &pull_opts, &result, err);
    progress_end(bar);
    if (ret < 0)
        return -1;
    memcpy(digest, result.image.manifest_digest, DIGEST_STRING_LEN + 1);
    oci_pull_result_free(&result);
    return 0;
}

static int convert_image(const struct oci_store *store, const struct convert_args *args,
                         struct progress_bar *bar, const char *digest, struct shed_err *err)
{
    struct imaged_convert_opts opts = {
        .size_bytes = args->size_bytes,
        .progress = on_convert_progress,
        .warning = on_convert_warning,
        .ctx = bar,
        .cancel = &cancel_requested,
    };
    bar->label = "converting";
    int ret = imaged_convert(store, digest, args->output, &opts, err);
    progress_end(bar);
    return ret;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

int cmd_convert(int argc, char **argv)
{
    struct convert_args args = {0};
    int status = parse_args(argc, argv, &args);
    if (status != 0)
        return status == 1 ? EXIT_OK : status;

    struct shed_err err = {0};
    if (install_cancel_handlers() < 0) {
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        return cli_fail(&err);
    }
    struct shed_config config;
    if (cli_load_config(args.config_path, args.data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    if (args.size_bytes == 0)
        args.size_bytes = config.rootfs_size;

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct progress_bar bar = {.enabled = isatty(STDERR_FILENO) == 1, .last_permille = -1};
    struct oci_store *store = NULL;
    char digest[DIGEST_STRING_LEN + 1];
    int ret = oci_store_open(config.images_dir, &store, &err);
    if (ret == 0)
        ret = pull_image(store, &config, &args, &bar, digest, &err);
    if (ret == 0)
        ret = convert_image(store, &args, &bar, digest, &err);
    oci_store_close(store);
    shed_config_free(&config);
    if (ret < 0)
        return cli_fail(&err);

    char size_text[32];
    printf("%s: %s ext4 root filesystem of %s (%.19s) in %.1f s\n", args.output,
           format_size(args.size_bytes, size_text, sizeof size_text), args.ref, digest,
           seconds_since(&start));
    return EXIT_OK;
}
