/* shed-server pull REF: fetch an image's manifest, config and layers into the blob store.
 * Prints the resolved manifest digest (or a JSON summary with --json) on stdout; progress
 * goes to stderr: one line per finished layer, and on a terminal the download's line with
 * bytes, rate and ETA below them. */
#include <errno.h>
#include <jansson.h>
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
#include "oci/oci.h"

/* Layers as lines, the whole download as the renderer's one phase. */
static void print_layer_line(struct progress *display, const struct oci_progress *p)
{
    const struct oci_layer *layer = &p->image->layers[p->layer_index];
    char size[32];
    progress_printf(display, stderr, "layer %zu/%zu %s %s %s", p->layer_index + 1,
                    p->image->layer_count, layer->digest,
                    format_size(layer->size, size, sizeof size),
                    p->already_present ? "already present" : "pulled");
}

static void on_progress(const struct oci_progress *p, void *ctx)
{
    struct progress *display = ctx;
    if (p->event == OCI_PROGRESS_MANIFEST) {
        progress_begin(display, "downloading %zu layer(s)", p->image->layer_count);
        progress_update(display, 0, p->bytes_total);
        return;
    }
    if (p->event == OCI_PROGRESS_LAYER_DONE)
        print_layer_line(display, p);
    progress_update(display, p->bytes_done, p->bytes_total);
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

const struct cli_option pull_options[] = {
    {"platform", 0, "OS/ARCH[/VARIANT]",
     "platform to pick from a multi-platform image (default: server.yaml's, else this host's)",
     OPT_PLATFORM},
    SERVER_CONFIG_OPTIONS,
    {"creds", 0, "USER:PASSWORD",
     "registry credentials (default: the auths of ~/.docker/config.json)", OPT_CREDS},
    {"parallel", 0, "N", "layers downloaded at once, 1-64 (default 4)", OPT_PARALLEL},
    SERVER_OPTION_JSON,
    SERVER_OPTIONS_END,
};

struct pull_args {
    const char *ref, *platform, *creds;
    unsigned parallel;
    bool json;
    volatile int *cancel; /* set by SIGINT/SIGTERM: the pull stops, its .tmp files resume */
};

static int parse_args(const struct cli_call *call, struct pull_args *a)
{
    memset(a, 0, sizeof *a);
    a->ref = call->operands[0];
    a->platform = cli_value(call, OPT_PLATFORM);
    a->creds = cli_value(call, OPT_CREDS);
    a->json = cli_flag(call, OPT_JSON);
    const char *parallel = cli_value(call, OPT_PARALLEL);
    if (parallel != NULL) {
        char *end = NULL;
        long n = strtol(parallel, &end, 10);
        if (*parallel == '\0' || *end != '\0' || n < 1 || n > 64)
            return cli_usage_error(call, "--parallel takes a number from 1 to 64");
        a->parallel = (unsigned)n;
    }
    return 0;
}

static int run_pull(const struct pull_args *a, const struct shed_config *config,
                    struct oci_store *store)
{
    struct progress display;
    progress_init(&display, stderr);
    struct oci_pull_opts opts;
    image_pull_opts_from_config(config, &opts);
    if (a->platform != NULL)
        opts.platform = a->platform;
    opts.creds = a->creds;
    opts.max_parallel = a->parallel;
    opts.progress = on_progress;
    opts.progress_ctx = &display;
    opts.cancel = a->cancel;
    struct oci_pull_result result;
    struct shed_err err = {0};
    int rc = oci_pull(store, a->ref, &opts, &result, &err);
    if (rc < 0) {
        progress_clear(&display);
        cli_fail(&err);
        return err.code == SHED_E_INTERRUPTED ? 130 : EXIT_FAILURE_RUN;
    }
    struct oci_ref ref;
    cleanup_free char *canonical = NULL;
    if (oci_ref_parse(a->ref, &ref, &err) == 0) {
        canonical = oci_ref_format(&ref);
        oci_ref_free(&ref);
    }
    if (result.bytes_fetched == 0)
        progress_drop_bytes(&display);
    progress_end(&display, result.bytes_fetched == 0 ? "every layer already present" : NULL);
    int exit_code = EXIT_OK;
    if (a->json)
        exit_code = print_json(canonical ? canonical : a->ref, &result);
    else
        printf("%s\n", result.image.manifest_digest);
    oci_pull_result_free(&result);
    return exit_code;
}

int cmd_pull(const struct cli_call *call)
{
    struct pull_args args;
    int rc = parse_args(call, &args);
    if (rc != 0)
        return rc;
    struct shed_err err = {0};
    struct shed_config config;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    if (cli_catch_interrupts(&args.cancel) < 0) {
        shed_config_free(&config);
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        return cli_fail(&err);
    }
    struct oci_store *store = NULL;
    if (oci_store_open(config.images_dir, &store, &err) < 0)
        rc = cli_fail(&err);
    else
        rc = run_pull(&args, &config, store);
    oci_store_close(store);
    shed_config_free(&config);
    return rc;
}
