/* shed-server pull-images: makes every configured image variant (and _base) ready. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "server/server.h"

/* Set by SIGINT/SIGTERM; the pull and the conversion poll it and clean up after themselves.
 * A signal handler can reach nothing else. */
static volatile int interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* First Ctrl-C: stop cleanly. SA_RESETHAND: a second one kills at once. */
static int install_signal_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESETHAND;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0)
        return -1;
    return 0;
}

static void print_help(FILE *out)
{
    fputs("Usage: shed-server pull-images [--variant NAME] [--config FILE] [--verbose]\n"
          "\n"
          "Makes every image variant of server.yaml ready as <images_dir>/<name>-rootfs.ext4,\n"
          "plus the base_image as _base, in name order. A variant is pulled and converted only\n"
          "when its tag now points at another manifest; variants with the same digest share\n"
          "one conversion. With the registry unreachable a cached copy is used (warning).\n"
          "Exits non-zero if any variant failed; the others are still done. A server running\n"
          "on the same data dir is then told to reload server.yaml (as `shed-server reload`).\n"
          "\n"
          "Options:\n"
          "  -V, --variant NAME  only this variant (\"_base\" for the base image)\n"
          "  -c, --config FILE   read this server.yaml instead of searching\n"
          "      --data-dir DIR  data directory (images in DIR/images)\n"
          "  -v, --verbose       also print digests, layers, lock waits and kernel files\n"
          "  -h, --help          show this help\n",
          out);
}

struct pull_output {
    bool verbose;
    bool progress_on_tty;
    bool progress_line_open;
};

static void end_progress_line(struct pull_output *out)
{
    if (out->progress_line_open) {
        fputs("\r\033[K", stderr);
        out->progress_line_open = false;
    }
}

static void on_log(enum image_log_level level, const char *name, const char *message, void *ctx)
{
    struct pull_output *out = ctx;
    if (level == IMAGE_LOG_DETAIL && !out->verbose)
        return;
    end_progress_line(out);
    if (level == IMAGE_LOG_WARNING)
        fprintf(stderr, "shed-server: warning: %s: %s\n", name, message);
    else
        printf("%s: %s\n", name, message);
    fflush(stdout);
}

static void on_progress(const char *name, const char *phase, uint64_t done, uint64_t total,
                        void *ctx)
{
    struct pull_output *out = ctx;
    if (!out->progress_on_tty || total == 0)
        return;
    char done_text[32], total_text[32];
    fprintf(stderr, "\r\033[K%s: %s %s / %s (%d%%)", name, phase,
            format_size(done, done_text, sizeof done_text),
            format_size(total, total_text, sizeof total_text), (int)(done * 100 / total));
    out->progress_line_open = true;
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
        .log = on_log, .progress = on_progress, .ctx = out, .cancel = &interrupted};
    struct image_ensure_result result;
    if (image_cache_ensure(cache, name, &opts, &result, err) < 0) {
        end_progress_line(out);
        return -1;
    }
    *updated = result.outcome == IMAGE_ENSURE_CONVERTED || result.outcome == IMAGE_ENSURE_LINKED;
    if (*updated) {
        char size[32];
        printf("%s: ready %s (%s, %s downloaded%s)\n", name, result.rootfs_path,
               outcome_text(result.outcome), format_size(result.bytes_fetched, size, sizeof size),
               result.has_kernel ? ", kernel extracted" : "");
    }
    fflush(stdout);
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
    for (char **name = names; *name != NULL && !interrupted; name++) {
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
    if (interrupted) {
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

int cmd_pull_images(int argc, char **argv)
{
    static const struct option options[] = {
        {"variant", required_argument, NULL, 'V'},  {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'D'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *data_dir = NULL, *variant = NULL;
    struct pull_output out = {.progress_on_tty = isatty(STDERR_FILENO) == 1};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "V:c:vh", options, NULL)) != -1) {
        switch (opt) {
        case 'V': variant = optarg; break;
        case 'c': config_path = optarg; break;
        case 'D': data_dir = optarg; break;
        case 'v': out.verbose = true; break;
        case 'h': print_help(stdout); return EXIT_OK;
        default: return cli_usage_error("pull-images", "invalid option");
        }
    }
    if (optind < argc)
        return cli_usage_error("pull-images", "unexpected argument '%s'", argv[optind]);

    struct shed_config config;
    struct shed_err err;
    if (cli_load_config(config_path, data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    char **names = NULL;
    int ret = EXIT_OK;
    if (variant != NULL && shed_config_image_ref(&config, variant) == NULL) {
        shed_errf(&err, SHED_E_UNKNOWN_IMAGE, "image \"%s\" is not in the config", variant);
        ret = cli_fail(&err);
    } else if (image_cache_variant_names(&config, &names, &err) < 0) {
        ret = cli_fail(&err);
    } else if (names[0] == NULL) {
        printf("No images configured (images: and base_image: are empty).\n");
    } else if (install_signal_handlers() < 0) {
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
