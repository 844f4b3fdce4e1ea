/* shed-server pull REF: fetch an image's manifest, config and layers into the blob store.
 * Prints the resolved manifest digest (or a JSON summary with --json) on stdout; progress
 * goes to stderr: a bar per layer on a terminal, one line per finished layer otherwise. */
#include <getopt.h>
#include <jansson.h>
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
#include "oci/oci.h"

#define BAR_WIDTH 30
#define REDRAW_INTERVAL_MS 100

/* Set from the signal handler: the one piece of state a handler may touch. The pull stops,
 * leaving partial .tmp files for the next pull to resume. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct pull_display {
    bool tty;
    size_t layer_count;
    uint64_t *done; /* per layer */
    bool drawn;
    uint64_t last_draw_ms;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void draw_bars(struct pull_display *d, const struct oci_image *image)
{
    if (d->drawn)
        fprintf(stderr, "\033[%zuA", d->layer_count);
    for (size_t i = 0; i < d->layer_count; i++) {
        uint64_t total = image->layers[i].size;
        size_t filled = total ? (size_t)(d->done[i] * BAR_WIDTH / total) : BAR_WIDTH;
        char bar[BAR_WIDTH + 1], done_text[32], total_text[32];
        for (size_t k = 0; k < BAR_WIDTH; k++)
            bar[k] = k < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        fprintf(stderr, "\r\033[K%.19s [%s] %s / %s\n", image->layers[i].digest + 7, bar,
                format_size(d->done[i], done_text, sizeof done_text),
                format_size(total, total_text, sizeof total_text));
    }
    fflush(stderr);
    d->drawn = true;
    d->last_draw_ms = now_ms();
}

static void print_layer_line(const struct oci_progress *p)
{
    const struct oci_layer *layer = &p->image->layers[p->layer_index];
    char size[32];
    fprintf(stderr, "layer %zu/%zu %s %s %s\n", p->layer_index + 1, p->image->layer_count,
            layer->digest, format_size(layer->size, size, sizeof size),
            p->already_present ? "already present" : "pulled");
}

static void on_progress(const struct oci_progress *p, void *ctx)
{
    struct pull_display *d = ctx;
    if (p->event == OCI_PROGRESS_MANIFEST) {
        free(d->done);
        d->layer_count = p->image->layer_count;
        d->done = calloc(d->layer_count ? d->layer_count : 1, sizeof *d->done);
        d->drawn = false;
        if (d->done != NULL && d->tty)
            draw_bars(d, p->image);
        return;
    }
    if (d->done == NULL || p->layer_index >= d->layer_count)
        return;
    d->done[p->layer_index] = p->layer_bytes_done;
    if (p->event == OCI_PROGRESS_LAYER_DONE && !d->tty)
        print_layer_line(p);
    if (d->tty &&
        (p->event == OCI_PROGRESS_LAYER_DONE || now_ms() - d->last_draw_ms >= REDRAW_INTERVAL_MS))
        draw_bars(d, p->image);
}

static int print_json(const char *canonical_ref, const struct oci_pull_result *r)
{
    json_t *layers = json_array();
    for (size_t i = 0; layers != NULL && i < r->image.layer_count; i++) {
        const struct oci_layer *l = &r->image.layers[i];
        if (json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "digest", l->digest, "size",
                                                    (json_int_t)l->size, "media_type",
                                                    l->media_type)) < 0) {
            json_decref(layers);
            layers = NULL;
        }
    }
    json_t *root =
        layers == NULL
            ? NULL
            : json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:I}", "ref", canonical_ref, "digest",
                        r->image.manifest_digest, "media_type", r->image.manifest_media_type,
                        "config_digest", r->image.config_digest, "config_size",
                        (json_int_t)r->image.config_size, "layers", layers, "bytes_fetched",
                        (json_int_t)r->bytes_fetched);
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (text == NULL) {
        struct shed_err err;
        shed_errf(&err, SHED_E_NO_MEMORY, "cannot format the JSON result");
        return cli_fail(&err);
    }
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}

static void print_help(void)
{
    printf("Usage: shed-server pull [OPTIONS] REF\n\n"
           "Pull an image's manifest, config and layers into the blob store and print the\n"
           "resolved manifest digest.\n\n"
           "REF: [registry[:port]/]repository[:tag][@sha256:digest]; Docker Hub names may be\n"
           "short (debian, library/debian:12). localhost and 127.0.0.1 use plain HTTP.\n\n"
           "Options:\n"
           "  --platform OS/ARCH[/VARIANT]  platform to pick from a multi-platform image\n"
           "                                (default: platform of server.yaml, else this\n"
           "                                machine's)\n"
           "  -c, --config FILE             server.yaml whose images_dir holds the blob store\n"
           "                                and whose insecure_registries use plain HTTP\n"
           "                                (default lookup as for serve)\n"
           "  --data-dir DIR                data directory (blobs in DIR/images/blobs)\n"
           "  --creds USER:PASSWORD         registry credentials (default: the auths of\n"
           "                                ~/.docker/config.json)\n"
           "  --parallel N                  layers downloaded at once (default 4)\n"
           "  --json                        print digest, config and layers as JSON\n"
           "  --help                        show this help\n");
}

struct pull_args {
    const char *ref, *platform, *config_path, *data_dir, *creds;
    unsigned parallel;
    bool json;
};

/* Returns -1 to continue, else the exit code. */
static int parse_args(int argc, char **argv, struct pull_args *a)
{
    static const struct option options[] = {
        {"platform", required_argument, NULL, 'p'}, {"data-dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},   {"creds", required_argument, NULL, 'C'},
        {"parallel", required_argument, NULL, 'j'}, {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (c) {
        case 'c': a->config_path = optarg; break;
        case 'p': a->platform = optarg; break;
        case 'd': a->data_dir = optarg; break;
        case 'C': a->creds = optarg; break;
        case 'J': a->json = true; break;
        case 'h': print_help(); return EXIT_OK;
        case 'j': {
            char *end = NULL;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 1 || n > 64)
                return cli_usage_error("pull", "--parallel takes a number from 1 to 64");
            a->parallel = (unsigned)n;
            break;
        }
        case ':': return cli_usage_error("pull", "option '%s' needs a value", argv[optind - 1]);
        default: return cli_usage_error("pull", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("pull", "missing image reference");
    if (optind + 1 < argc)
        return cli_usage_error("pull", "unexpected argument '%s'", argv[optind + 1]);
    a->ref = argv[optind];
    return -1;
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run_pull(const struct pull_args *a, const struct shed_config *config,
                    struct oci_store *store)
{
    struct pull_display display = {.tty = isatty(STDERR_FILENO) == 1};
    struct oci_pull_opts opts = {
        .platform = a->platform != NULL ? a->platform : config->platform,
        .insecure_registries = (const char *const *)config->insecure_registries,
        .registry_ca = shed_config_registry_ca_of,
        .registry_ca_ctx = config,
        .creds = a->creds,
        .max_parallel = a->parallel,
        .progress = on_progress,
        .progress_ctx = &display,
        .cancel = (volatile int *)&interrupted,
    };
    struct oci_pull_result result;
    struct shed_err err = {0};
    int rc = oci_pull(store, a->ref, &opts, &result, &err);
    free(display.done);
    if (rc < 0) {
        cli_fail(&err);
        return err.code == SHED_E_INTERRUPTED ? 130 : EXIT_FAILURE_RUN;
    }
    struct oci_ref ref;
    cleanup_free char *canonical = NULL;
    if (oci_ref_parse(a->ref, &ref, &err) == 0) {
        canonical = oci_ref_format(&ref);
        oci_ref_free(&ref);
    }
    int exit_code = EXIT_OK;
    if (a->json)
        exit_code = print_json(canonical ? canonical : a->ref, &result);
    else
        printf("%s\n", result.image.manifest_digest);
    oci_pull_result_free(&result);
    return exit_code;
}

int cmd_pull(int argc, char **argv)
{
    struct pull_args args;
    int rc = parse_args(argc, argv, &args);
    if (rc >= 0)
        return rc;
    struct shed_err err = {0};
    struct shed_config config;
    if (cli_load_config(args.config_path, args.data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    install_signal_handlers();
    struct oci_store *store = NULL;
    if (oci_store_open(config.images_dir, &store, &err) < 0)
        rc = cli_fail(&err);
    else
        rc = run_pull(&args, &config, store);
    oci_store_close(store);
    shed_config_free(&config);
    return rc;
}
