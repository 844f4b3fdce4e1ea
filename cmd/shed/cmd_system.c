/* shed system df|prune: disk usage and cleanup through the REST API, on one server or, with
 * --all, on every server of client.yaml in parallel (one thread per server, 10-minute
 * timeout each: a prune may run for minutes). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_config.h"
#include "cmd/common/system_print.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "shed.h"

#define SYSTEM_TIMEOUT_SECONDS 600L
#define MAX_QUERY 2048

struct system_args {
    bool df;
    bool verbose, json, all, force, dry_run;
    char query[MAX_QUERY]; /* prune's query string without dry_run, "" or "a=b&…" */
};

/* One server of the fan-out (or the only one). */
struct target {
    char *name;           /* "" for the -s/default server */
    struct client client; /* its URL and token, with a prune's long timeout */
    /* result of the last request */
    json_t *body;
    struct client_error error;
    bool failed;
    /* request */
    const char *method;
    char path[MAX_QUERY + 64];
};

/* ---- requests ------------------------------------------------------------------------------ */

static void target_request(struct target *target)
{
    json_decref(target->body);
    target->body = NULL;
    target->failed = true;
    struct client_response response;
    if (client_request(&target->client, target->method, target->path, NULL, &response,
                       &target->error) < 0)
        return;
    if (response.json == NULL) {
        client_errorf(&target->error, "PROTOCOL", "invalid JSON from %s", target->client.base_url);
        return;
    }
    target->body = response.json;
    target->failed = false;
}

static void *target_thread(void *opaque)
{
    target_request(opaque);
    return NULL;
}

/* Runs the request of every target, in parallel when there are several. */
static void run_targets(struct target *targets, size_t count)
{
    pthread_t *threads = calloc(count, sizeof *threads);
    bool *started = calloc(count, sizeof *started);
    for (size_t i = 0; i < count; i++) {
        started[i] = count > 1 && threads != NULL && started != NULL &&
                     pthread_create(&threads[i], NULL, target_thread, &targets[i]) == 0;
        if (!started[i])
            target_request(&targets[i]); /* one server, or no thread: run it here */
    }
    for (size_t i = 0; i < count; i++)
        if (started != NULL && started[i])
            pthread_join(threads[i], NULL);
    free(threads);
    free(started);
}

/* ---- servers of client.yaml --------------------------------------------------------------- */

static void targets_free(struct target *targets, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(targets[i].name);
        client_cleanup(&targets[i].client);
        json_decref(targets[i].body);
    }
    free(targets);
}

/* The client of one configured server, with the long timeout a prune needs. */
static int target_client(struct target *target, const char *name, struct client_error *error)
{
    cleanup_free char *url = NULL;
    cleanup_free char *token = NULL;
    cleanup_free char *origin = NULL;
    if (client_resolve_server(name, &url, &token, &origin, error) < 0 ||
        client_init(&target->client, url, token, origin, error) < 0)
        return -1;
    target->client.timeout_seconds = SYSTEM_TIMEOUT_SECONDS;
    return 0;
}

static int all_targets(struct target **out, size_t *count, struct client_error *error)
{
    char **names = NULL;
    if (client_server_names(&names, count, error) < 0) {
        strv_free_items(names);
        return -1;
    }
    struct target *targets = calloc(*count, sizeof *targets);
    int rc = targets != NULL ? 0 : client_errorf(error, "NO_MEMORY", "out of memory");
    for (size_t i = 0; i < *count; i++) {
        if (rc == 0) {
            targets[i].name = names[i];
            rc = target_client(&targets[i], names[i], error);
        } else {
            free(names[i]);
        }
    }
    free(names);
    if (rc < 0) {
        targets_free(targets, targets != NULL ? *count : 0);
        return -1;
    }
    *out = targets;
    return 0;
}

static int one_target(const struct client *client, struct target **out, struct client_error *error)
{
    struct target *target = calloc(1, sizeof *target);
    if (target == NULL)
        return client_errorf(error, "NO_MEMORY", "out of memory");
    target->name = strdup("");
    if (target->name == NULL) {
        targets_free(target, 1);
        return client_errorf(error, "NO_MEMORY", "out of memory");
    }
    if (client_init(&target->client, client->base_url, client->token, client->origin, error) < 0) {
        targets_free(target, 1);
        return -1;
    }
    target->client.timeout_seconds = SYSTEM_TIMEOUT_SECONDS;
    *out = target;
    return 0;
}

/* ---- arguments ------------------------------------------------------------------------------- */

static int append_query(struct system_args *args, const char *key, const char *value)
{
    char *escaped = curl_easy_escape(NULL, value, 0);
    if (escaped == NULL)
        return -1;
    size_t used = strlen(args->query);
    int n = snprintf(args->query + used, sizeof args->query - used, "%s%s=%s", used ? "&" : "", key,
                     escaped);
    curl_free(escaped);
    return n < 0 || (size_t)n >= sizeof args->query - used ? -1 : 0;
}

/* The prune query: every --scope, --until and --log-tail-bytes, in order (the server checks
 * the values). */
static int parse_args(const struct cli_call *call, bool df, struct system_args *args)
{
    memset(args, 0, sizeof *args);
    args->df = df;
    args->json = shed_cli_of(call)->json;
    args->verbose = cli_flag(call, OPT_VERBOSE);
    args->all = cli_flag(call, OPT_ALL);
    args->force = cli_flag(call, OPT_FORCE);
    args->dry_run = cli_flag(call, OPT_DRY_RUN);
    for (size_t i = 0; i < call->option_count; i++) {
        const struct cli_value *option = &call->options[i];
        const char *key = option->id == OPT_SCOPE            ? "scope"
                          : option->id == OPT_UNTIL          ? "until"
                          : option->id == OPT_LOG_TAIL_BYTES ? "log_tail_bytes"
                                                             : NULL;
        if (key != NULL && append_query(args, key, option->value) < 0)
            return cli_usage_error(call, "%.40s: query too long", option->value);
    }
    return 0;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void print_json(const json_t *json)
{
    char *text = json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

/* --all --json: {"servers":[{"server","url","result"|"error"}]} */
static void print_all_json(const struct target *targets, size_t count)
{
    json_t *servers = json_array();
    for (size_t i = 0; servers != NULL && i < count; i++) {
        const struct target *t = &targets[i];
        json_t *entry = t->failed ? json_pack("{s:s, s:s, s:{s:s, s:s}}", "server", t->name, "url",
                                              t->client.base_url, "error", "code", t->error.code,
                                              "message", t->error.message)
                                  : json_pack("{s:s, s:s, s:O}", "server", t->name, "url",
                                              t->client.base_url, "result", t->body);
        json_array_append_new(servers, entry);
    }
    json_t *root = json_pack("{s:o}", "servers", servers);
    if (root != NULL)
        print_json(root);
    json_decref(root);
}

/* Prints every target's result; returns CLI_EXIT_FAILURE when any failed. */
static int print_results(const struct target *targets, size_t count, const struct system_args *args)
{
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < count; i++)
        if (targets[i].failed)
            rc = CLI_EXIT_FAILURE;
    if (args->json) {
        if (args->all)
            print_all_json(targets, count);
        else if (!targets[0].failed)
            print_json(targets[0].body);
    }
    for (size_t i = 0; i < count; i++) {
        const struct target *t = &targets[i];
        if (args->all && !args->json)
            printf("%s== %s (%s)\n", i > 0 ? "\n" : "", t->name, t->client.base_url);
        if (t->failed && (!args->json || !args->all))
            fprintf(stderr, "shed: %s%s%s: %s\n", args->all ? t->name : "", args->all ? ": " : "",
                    t->error.code, t->error.message);
        else if (!t->failed && !args->json && args->df)
            system_print_df(stdout, t->body, args->verbose);
        else if (!t->failed && !args->json)
            system_print_prune(stdout, t->body);
    }
    return rc;
}

/* ---- df and prune -----------------------------------------------------------------------------
 */

static void set_request(struct target *targets, size_t count, const char *method,
                        const struct system_args *args, bool dry_run)
{
    for (size_t i = 0; i < count; i++) {
        targets[i].method = method;
        if (args->df)
            snprintf(targets[i].path, sizeof targets[i].path, "/api/system/df");
        else
            snprintf(targets[i].path, sizeof targets[i].path, "/api/system/prune?dry_run=%s%s%s",
                     dry_run ? "true" : "false", args->query[0] ? "&" : "", args->query);
    }
}

static bool confirmed(void)
{
    printf("Proceed? [y/N] ");
    fflush(stdout);
    char line[32];
    bool answered = fgets(line, sizeof line, stdin) != NULL;
    if (!isatty(STDIN_FILENO)) /* the answer was not echoed: end the prompt's line */
        putchar('\n');
    if (!answered)
        return false;
    return strcmp(line, "y\n") == 0 || strcmp(line, "Y\n") == 0 || strcmp(line, "yes\n") == 0 ||
           strcmp(line, "y") == 0;
}

/* Whether the dry runs that succeeded found nothing to do: then nothing is asked. */
static bool nothing_to_prune(const struct target *targets, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!targets[i].failed &&
            json_get_int(json_object_get(targets[i].body, "totals"), "items") > 0)
            return false;
    return true;
}

static int run_prune(struct target *targets, size_t count, struct system_args *args)
{
    bool execute_now = args->force && !args->dry_run;
    set_request(targets, count, "POST", args, !execute_now);
    run_targets(targets, count);
    int rc = print_results(targets, count, args);
    if (execute_now || args->dry_run || nothing_to_prune(targets, count))
        return rc;
    if (args->json) {
        fprintf(stderr, "shed system prune: --json shows the dry run only; add --force to prune\n");
        return rc;
    }
    if (!confirmed()) {
        printf("Nothing pruned.\n");
        return rc;
    }
    /* Servers whose dry run failed are not pruned. */
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (!targets[i].failed)
            kept++;
    if (kept == 0)
        return rc;
    set_request(targets, count, "POST", args, false);
    for (size_t i = 0; i < count; i++)
        if (targets[i].failed)
            targets[i].method = NULL;
    struct target *live = calloc(kept, sizeof *live);
    if (live == NULL) {
        fprintf(stderr, "shed: NO_MEMORY: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    for (size_t i = 0, j = 0; i < count; i++)
        if (targets[i].method != NULL)
            live[j++] = targets[i];
    run_targets(live, kept);
    int final = print_results(live, kept, args);
    for (size_t i = 0, j = 0; i < count; i++) /* the bodies now belong to live */
        if (targets[i].method != NULL) {
            targets[i].body = live[j++].body;
        }
    free(live);
    return rc != CLI_EXIT_OK ? rc : final;
}

static int run_system(const struct cli_call *call, bool df)
{
    const struct client *client = &shed_cli_of(call)->client;
    struct system_args args;
    int rc = parse_args(call, df, &args);
    if (rc != 0)
        return rc;
    struct target *targets = NULL;
    size_t count = 1;
    struct client_error error;
    if ((args.all ? all_targets(&targets, &count, &error) : one_target(client, &targets, &error)) <
        0) {
        fprintf(stderr, "shed: %s: %s\n", error.code, error.message);
        return CLI_EXIT_FAILURE;
    }
    if (args.df) {
        set_request(targets, count, "GET", &args, false);
        run_targets(targets, count);
        rc = print_results(targets, count, &args);
    } else {
        rc = run_prune(targets, count, &args);
    }
    targets_free(targets, count);
    return rc;
}

static int system_df(const struct cli_call *call)
{
    return run_system(call, true);
}

static int system_prune(const struct cli_call *call)
{
    return run_system(call, false);
}

/* -s is --server everywhere in shed; --scope has no short form. */
static const struct cli_option df_options[] = {
    {"verbose", 'v', NULL, "one line per image, shed and orphan, and the notes", OPT_VERBOSE},
    {"all", 'a', NULL, "every server of client.yaml, in parallel", OPT_ALL},
    SHED_SERVER_OPTIONS,
    SHED_OPTION_JSON,
    SHED_OPTIONS_END,
};

static const struct cli_option prune_options[] = {
    {"scope", 0, "SCOPE", "images, instances, logs or orphans (repeatable; default: all but logs)",
     OPT_SCOPE},
    {"until", 'u', "DURATION", "prune sheds stopped for longer (default 72h; e.g. 90m, 0s)",
     OPT_UNTIL},
    {"log-tail-bytes", 0, "N", "bytes each console log keeps (0: 5 MiB)", OPT_LOG_TAIL_BYTES},
    {"dry-run", 'n', NULL, "only show what would be pruned", OPT_DRY_RUN},
    {"force", 'f', NULL, "prune without asking", OPT_FORCE},
    {"all", 'a', NULL, "every server of client.yaml, in parallel", OPT_ALL},
    SHED_SERVER_OPTIONS,
    SHED_OPTION_JSON,
    SHED_OPTIONS_END,
};

const struct cli_command shed_system_commands[] = {
    {"df", NULL, "[OPTIONS]",
     "Disk usage of the server's images, sheds and orphans (logical, physical, exclusive).",
     "Exclusive bytes are the blocks no reflink clone shares: what deleting the item frees.\n",
     df_options, .run = system_df, .max_operands = 0},
    {"prune", NULL, "[OPTIONS]",
     "Delete stopped sheds, unused images and orphans, after showing the dry run.",
     "Shows the dry run, then asks 'Proceed? [y/N]' (not when there is nothing to prune,\n"
     "nor with --force). With --json and without --force it prints the dry run only.\n",
     prune_options, .run = system_prune, .max_operands = 0},
    {NULL},
};
