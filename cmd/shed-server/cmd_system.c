/* shed-server system df|prune: disk accounting and cleanup on the local data dir, for cron
 * and systemd timers. Works while the server runs: it takes the same locks (per-shed
 * lifecycle locks, image variant locks, the prune lock). */
#include <errno.h>
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
    bool verbose, json, dry_run;
    unsigned scopes;
    uint64_t until_seconds;
    uint64_t log_tail_bytes;
};

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

static int parse_option(const struct cli_call *call, const struct cli_value *option,
                        struct system_args *args)
{
    struct shed_err err = {0};
    unsigned scope;
    switch (option->id) {
    case OPT_SCOPE:
        if ((scope = prune_scope_from_name(option->value)) == 0)
            return cli_usage_error(call, "unknown scope '%s' (images, instances, logs, orphans)",
                                   option->value);
        args->scopes |= scope;
        return 0;
    case OPT_UNTIL:
        if (prune_parse_duration(option->value, &args->until_seconds, &err) < 0)
            return cli_usage_error(call, "%s", err.msg);
        return 0;
    case OPT_LOG_TAIL_BYTES:
        if (parse_log_tail(option->value, &args->log_tail_bytes) < 0)
            return cli_usage_error(call, "--log-tail-bytes must be 0..%u (0: 5 MiB)",
                                   PRUNE_MAX_LOG_TAIL_BYTES);
        return 0;
    default: return 0;
    }
}

static int parse_args(const struct cli_call *call, struct system_args *args)
{
    args->until_seconds = PRUNE_DEFAULT_UNTIL_SECONDS;
    args->verbose = cli_flag(call, OPT_VERBOSE);
    args->json = cli_flag(call, OPT_JSON);
    args->dry_run = cli_flag(call, OPT_DRY_RUN);
    for (size_t i = 0; i < call->option_count; i++) {
        int rc = parse_option(call, &call->options[i], args);
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

static int run_subcommand(const struct cli_call *call, const char *sub)
{
    struct system_args args = {0};
    int rc = parse_args(call, &args);
    if (rc != 0)
        return rc;
    struct shed_config config;
    struct shed_err err = {0};
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    struct instance_store *store = NULL;
    if (instance_store_open(config.instance_dir, &store, &err) < 0)
        rc = cli_fail(&err);
    else
        rc = run_with_backends(sub, &config, store, &args);
    instance_store_close(store);
    shed_config_free(&config);
    return rc;
}

static int system_df(const struct cli_call *call)
{
    return run_subcommand(call, "df");
}

static int system_prune(const struct cli_call *call)
{
    return run_subcommand(call, "prune");
}

static const struct cli_option df_options[] = {
    {"verbose", 'v', NULL, "one line per image, shed and orphan, and the notes", OPT_VERBOSE},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTION_JSON,
    SERVER_OPTIONS_END,
};

static const struct cli_option prune_options[] = {
    {"scope", 's', "SCOPE",
     "images, instances, logs or orphans, repeatable (default: images, instances, orphans)",
     OPT_SCOPE},
    {"until", 'u', "DURATION", "prune sheds whose metadata.json is older (default 72h)", OPT_UNTIL},
    {"log-tail-bytes", 0, "N", "logs scope: bytes each console log keeps (default 5 MiB)",
     OPT_LOG_TAIL_BYTES},
    {"dry-run", 'n', NULL, "list what prune would do, change nothing", OPT_DRY_RUN},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTION_JSON,
    SERVER_OPTIONS_END,
};

const struct cli_command system_commands[] = {
    {"df", NULL, "[OPTIONS]", "Disk usage of images, sheds and orphans.",
     "Logical (st_size), physical (allocated blocks) and exclusive (blocks not shared with a\n"
     "reflink clone) bytes. The same report as GET /api/system/df.\n",
     df_options, .run = system_df, .max_operands = 0},
    {"prune", NULL, "[OPTIONS]", "Delete stopped sheds, unused images and orphans.",
     "Deletes stopped sheds older than --until, images nothing uses any more, orphaned\n"
     "temporary files, and (scope logs) truncates console logs. No prompt: without\n"
     "--dry-run it deletes. Safe while the server runs (same locks). For cron and the\n"
     "shed-prune.timer systemd unit.\n",
     prune_options, .run = system_prune, .max_operands = 0},
    {NULL},
};
