/* shed-server system df|prune: disk accounting and cleanup on the local data dir, for cron
 * and systemd timers. Works while the server runs: it takes the same locks (per-shed
 * lifecycle locks, image variant locks, the prune lock). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "cmd/common/system_print.h"
#include "commands.h"
#include "common/fsutil.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "runtime/df.h"
#include "runtime/prune.h"

struct system_args {
    const char *config_path;
    const char *data_dir;
    bool verbose, json, dry_run;
    unsigned scopes;
    uint64_t until_seconds;
    bool until_given;
    uint64_t log_tail_bytes;
};

static void print_help(FILE *out)
{
    fputs("Usage: shed-server system df [-v] [--json] [--config FILE] [--data-dir DIR]\n"
          "       shed-server system prune [--scope S]... [--until DURATION]\n"
          "                                [--log-tail-bytes N] [--dry-run] [--json]\n"
          "                                [--config FILE] [--data-dir DIR]\n"
          "\n"
          "df     disk usage of images, sheds and orphans: logical (st_size), physical\n"
          "       (allocated blocks) and exclusive (blocks not shared with a reflink clone)\n"
          "prune  deletes stopped sheds older than --until, images nothing uses any more,\n"
          "       orphaned temporary files, and (scope logs) truncates console logs; the dry\n"
          "       run lists exactly what the real run would do\n"
          "\n"
          "Options:\n"
          "  -v, --verbose           df: one line per image, shed and orphan, and the notes\n"
          "      --json              the REST API's JSON body\n"
          "  -s, --scope S           prune scope, repeatable: images, instances, logs, orphans\n"
          "                          (default: images, instances, orphans)\n"
          "  -u, --until DURATION    prune sheds whose metadata.json is older (default 72h)\n"
          "      --log-tail-bytes N  logs scope: bytes each console log keeps (default 5 MiB,\n"
          "                          at most 64 MiB)\n"
          "  -n, --dry-run           list what prune would do, change nothing\n"
          "  -c, --config FILE       read this server.yaml instead of searching\n"
          "      --data-dir DIR      data directory (images and instances under it)\n"
          "  -h, --help              show this help\n",
          out);
}

/* ---- arguments ---------------------------------------------------------------------------- */

static int parse_log_tail(const char *text, uint64_t *bytes)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
        value > PRUNE_MAX_LOG_TAIL_BYTES)
        return -1;
    *bytes = value;
    return 0;
}

static int parse_option(int opt, struct system_args *args)
{
    enum { OPT_JSON = 256, OPT_LOG_TAIL, OPT_DATA_DIR };
    struct shed_err err = {0};
    unsigned scope;
    switch (opt) {
    case 'v': args->verbose = true; return 0;
    case 'n': args->dry_run = true; return 0;
    case OPT_JSON: args->json = true; return 0;
    case 'c': args->config_path = optarg; return 0;
    case OPT_DATA_DIR: args->data_dir = optarg; return 0;
    case 's':
        if ((scope = prune_scope_from_name(optarg)) == 0)
            return cli_usage_error("system",
                                   "unknown scope '%s' (images, instances, logs, orphans)", optarg);
        args->scopes |= scope;
        return 0;
    case 'u':
        if (prune_parse_duration(optarg, &args->until_seconds, &err) < 0)
            return cli_usage_error("system", "%s", err.msg);
        args->until_given = true;
        return 0;
    case OPT_LOG_TAIL:
        if (parse_log_tail(optarg, &args->log_tail_bytes) < 0)
            return cli_usage_error("system", "--log-tail-bytes must be 0..%u (0: 5 MiB)",
                                   PRUNE_MAX_LOG_TAIL_BYTES);
        return 0;
    case 'h': print_help(stdout); return -1;
    default: return cli_usage_error("system", "invalid option");
    }
}

/* 0: run; -1: --help printed; else a usage exit status. */
static int parse_args(int argc, char **argv, struct system_args *args)
{
    static const struct option options[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 256},
        {"scope", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {"log-tail-bytes", required_argument, NULL, 257},
        {"dry-run", no_argument, NULL, 'n'},
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 258},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    args->until_seconds = PRUNE_DEFAULT_UNTIL_SECONDS;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "vs:u:nc:h", options, NULL)) != -1) {
        int rc = parse_option(opt, args);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- df and prune ------------------------------------------------------------------------- */

static int print_json_body(json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text == NULL) {
        struct shed_err err;
        shed_errf(&err, SHED_E_NO_MEMORY, "out of memory");
        return cli_fail(&err);
    }
    puts(text);
    free(text);
    return EXIT_OK;
}

static int run_df(const struct shed_config *config, const struct backend_set *backends,
                  struct instance_store *store, const struct shed_probe *probe,
                  const struct system_args *args)
{
    struct df_report report;
    struct shed_err err = {0};
    struct df_opts opts = {.config = config, .instances = store, .probe = probe};
    if (df_scan(&opts, &report, &err) < 0)
        return cli_fail(&err);
    /* The same "backend" as GET /api/system/df: the resolved one, not "detect". */
    char backend[32];
    backend_set_describe_default(backends, config->default_backend, backend, sizeof backend);
    json_t *body = df_report_to_json(&report, config->name, backend);
    df_report_free(&report);
    int rc = EXIT_OK;
    if (args->json)
        rc = print_json_body(body);
    else if (body != NULL)
        system_print_df(stdout, body, args->verbose);
    else
        rc = print_json_body(NULL);
    json_decref(body);
    return rc;
}

static int run_prune(const struct shed_config *config, struct instance_store *store,
                     const struct shed_probe *probe, const struct system_args *args)
{
    struct prune_opts opts = {.config = config,
                              .instances = store,
                              .probe = probe,
                              .scopes = args->scopes,
                              .until_seconds = args->until_seconds,
                              .log_tail_bytes = args->log_tail_bytes,
                              .dry_run = args->dry_run};
    struct prune_plan *plan = NULL;
    struct shed_err err = {0};
    if (prune_plan(&opts, &plan, &err) < 0 || prune_execute(plan, &err) < 0) {
        prune_plan_free(plan);
        return cli_fail(&err);
    }
    json_t *body = prune_plan_to_json(plan, config->name);
    prune_plan_free(plan);
    int rc = args->json || body == NULL ? print_json_body(body) : EXIT_OK;
    if (!args->json && body != NULL)
        system_print_prune(stdout, body);
    json_decref(body);
    return rc;
}

/* Running-ness as the server sees it: the backends it is built with (backend_set_new). */
static int run_with_backends(const char *sub, const struct shed_config *config,
                             struct instance_store *store, const struct system_args *args)
{
    struct backend_set *backends = NULL;
    struct shed_err err = {0};
    if (backend_set_new(config, &backends, &err) < 0)
        return cli_fail(&err);
    struct shed_probe probe = shed_probe_for_backends(backends);
    int rc = strcmp(sub, "df") == 0 ? run_df(config, backends, store, &probe, args)
                                    : run_prune(config, store, &probe, args);
    backend_set_free(backends);
    return rc;
}

static int run_subcommand(const char *sub, const struct system_args *args)
{
    struct shed_config config;
    struct shed_err err = {0};
    if (cli_load_config(args->config_path, args->data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    struct instance_store *store = NULL;
    int rc = EXIT_OK;
    if (instance_store_open(config.instance_dir, &store, &err) < 0) {
        rc = cli_fail(&err);
    } else {
        rc = run_with_backends(sub, &config, store, args);
    }
    instance_store_close(store);
    shed_config_free(&config);
    return rc;
}

int cmd_system(int argc, char **argv)
{
    struct system_args args = {0};
    int rc = parse_args(argc, argv, &args);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (optind >= argc)
        return cli_usage_error("system", "missing subcommand (df or prune)");
    const char *sub = argv[optind];
    if (optind + 1 < argc)
        return cli_usage_error("system", "unexpected argument '%s'", argv[optind + 1]);
    bool is_df = strcmp(sub, "df") == 0;
    if (!is_df && strcmp(sub, "prune") != 0)
        return cli_usage_error("system", "unknown subcommand '%s' (df or prune)", sub);
    if (is_df && (args.dry_run || args.scopes != 0 || args.log_tail_bytes != 0 || args.until_given))
        return cli_usage_error("system", "--scope, --until, --log-tail-bytes and --dry-run "
                                         "only apply to prune");
    if (!is_df && args.verbose)
        return cli_usage_error("system", "--verbose only applies to df");
    return run_subcommand(sub, &args);
}
