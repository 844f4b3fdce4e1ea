/* shed-server pull-images: makes every configured image variant (and _base) ready. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "cmd/common/progress.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "server/server.h"

/* Set by SIGINT/SIGTERM (cli_catch_interrupts); the pull and the conversion poll it and
 * clean up after themselves. */
static volatile int *interrupted;

const struct cli_option pull_images_options[] = {
    {"variant", 'V', "NAME", "only this variant (\"_base\" for the base image)", OPT_VARIANT},
    SERVER_CONFIG_OPTIONS,
    {"verbose", 'v', NULL, "also print digests, layers, lock waits and kernel files", OPT_VERBOSE},
    SERVER_OPTIONS_END,
};

struct pull_output {
    bool verbose;
    struct progress progress;
};

/* Milestones end the running phase and get a line of their own (stdout); details and
 * warnings go above it. */
static void on_log(enum image_log_level level, const char *name, const char *message, void *ctx)
{
    struct pull_output *out = ctx;
    if (level == IMAGE_LOG_DETAIL && !out->verbose)
        return;
    if (level == IMAGE_LOG_WARNING) {
        progress_printf(&out->progress, stderr, "shed-server: warning: %s: %s", name, message);
        return;
    }
    if (level == IMAGE_LOG_INFO)
        progress_end(&out->progress, NULL);
    progress_printf(&out->progress, stdout, "%s: %s", name, message);
}

/* One phase per (variant, download|convert), labelled so the two never look alike. */
static void on_progress(const char *name, const char *phase, uint64_t done, uint64_t total,
                        void *ctx)
{
    struct pull_output *out = ctx;
    char label[160];
    snprintf(label, sizeof label, "%s: %s", name,
             strcmp(phase, "download") == 0  ? "downloading layers"
             : strcmp(phase, "convert") == 0 ? "converting to ext4"
                                             : phase);
    progress_update_phase(&out->progress, label, done, total);
}

static const char *outcome_text(enum image_ensure_outcome outcome)
{
    switch (outcome) {
    case IMAGE_ENSURE_CONVERTED: return "converted";
    case IMAGE_ENSURE_LINKED: return "shared with a variant of the same digest";
    case IMAGE_ENSURE_OFFLINE: return "cached copy, registry unreachable";
    case IMAGE_ENSURE_LOCAL: return "local file";
    default: return "up to date";
    }
}

/* Ensures one variant; returns true when it was (re)built. */
static int pull_one(struct image_cache *cache, const char *name, struct pull_output *out,
                    bool *updated, struct shed_err *err)
{
    struct image_ensure_opts opts = {
        .log = on_log, .progress = on_progress, .ctx = out, .cancel = interrupted};
    struct image_ensure_result result;
    if (image_cache_ensure(cache, name, &opts, &result, err) < 0) {
        progress_end(&out->progress, *interrupted ? "interrupted" : "failed");
        return -1;
    }
    progress_end(&out->progress, NULL);
    *updated = result.outcome == IMAGE_ENSURE_CONVERTED || result.outcome == IMAGE_ENSURE_LINKED;
    if (*updated) {
        char size[32];
        progress_printf(&out->progress, stdout, "%s: ready %s (%s, %s downloaded%s)", name,
                        result.rootfs_path, outcome_text(result.outcome),
                        format_size(result.bytes_fetched, size, sizeof size),
                        result.has_kernel ? ", kernel extracted" : "");
    }
    image_ensure_result_free(&result);
    return 0;
}

/* The variants just made ready are the file's: a server running on this data dir is told to
 * read the file too, so it never calls them "discovered" (nor prunes them) from an older
 * view. No server running is the common case and says nothing. */
static void tell_running_server(const struct shed_config *config)
{
    struct server_reload_outcome outcome;
    struct shed_err err = {0};
    if (server_request_reload(config->data_dir, 30, &outcome, &err) < 0)
        return;
    if (outcome.ok)
        printf("The running server reloaded its configuration: %s\n", outcome.message);
    else
        fprintf(stderr, "shed-server: warning: the running server refused to reload: %s\n",
                outcome.message);
}

static int pull_all(const struct shed_config *config, char **names, struct pull_output *out)
{
    struct image_cache *cache = NULL;
    struct shed_err err;
    if (image_cache_open(config, &cache, &err) < 0)
        return cli_fail(&err);
    unsigned pulled = 0, failed = 0;
    for (char **name = names; *name != NULL && !*interrupted; name++) {
        bool updated = false;
        if (pull_one(cache, *name, out, &updated, &err) < 0) {
            shed_err_prefix(&err, "%s", *name);
            cli_fail(&err);
            failed++;
        } else if (updated) {
            pulled++;
        }
    }
    image_cache_close(cache);
    if (*interrupted) {
        shed_errf(&err, SHED_E_INTERRUPTED, "interrupted; no partial images were left behind");
        return cli_fail(&err);
    }
    if (pulled == 0 && failed == 0)
        printf("All images already cached.\n");
    else
        printf("%u image(s) pulled\n", pulled);
    tell_running_server(config);
    if (failed > 0) {
        fprintf(stderr, "shed-server: %u image(s) failed\n", failed);
        return EXIT_FAILURE_RUN;
    }
    return EXIT_OK;
}

int cmd_pull_images(const struct cli_call *call)
{
    const char *variant = cli_value(call, OPT_VARIANT);
    struct pull_output out = {.verbose = cli_flag(call, OPT_VERBOSE)};
    progress_init(&out.progress, stderr);
    struct shed_config config;
    struct shed_err err;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    char **names = NULL;
    int ret = EXIT_OK;
    if (variant != NULL && shed_config_image_ref(&config, variant) == NULL) {
        shed_errf(&err, SHED_E_UNKNOWN_IMAGE, "image \"%s\" is not in the config", variant);
        ret = cli_fail_where(&err, &config, cli_value(call, OPT_DATA_DIR) != NULL);
    } else if (image_cache_variant_names(&config, &names, &err) < 0) {
        ret = cli_fail(&err);
    } else if (names[0] == NULL) {
        printf("No images configured (images: and base_image: are empty).\n");
    } else if (cli_catch_interrupts(&interrupted) < 0) {
        shed_errf_errno(&err, SHED_E_IO, errno, "cannot install signal handlers");
        ret = cli_fail(&err);
    } else {
        char *only[] = {(char *)variant, NULL};
        ret = pull_all(&config, variant != NULL ? only : names, &out);
    }
    image_names_free(names);
    shed_config_free(&config);
    return ret;
}
