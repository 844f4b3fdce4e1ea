/* /api/system: GET df and POST prune, on the same library functions as `shed-server system`
 * (runtime/df.h, runtime/prune.h). Whether a shed runs is asked of its backend's status()
 * when the backend is built in, else of its recorded pid, as everywhere in the server. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "handlers_system.h"
#include "runtime/df.h"
#include "runtime/prune.h"

static struct shed_probe context_probe(const struct api_context *context)
{
    return shed_probe_for_backends(context->backends);
}

/* ---- GET /api/system/df ----------------------------------------------------------------- */

void handle_system_df(const struct api_request *request, const struct api_context *context,
                      struct api_response *response)
{
    (void)request;
    struct shed_probe probe = context_probe(context);
    struct df_opts opts = {
        .config = context->config, .instances = context->instances, .probe = &probe};
    struct df_report report;
    struct shed_err err = {0};
    if (df_scan(&opts, &report, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    api_respond_json(response, 200,
                     df_report_to_json(&report, context->config->name, context->info_backend));
    df_report_free(&report);
}

/* ---- POST /api/system/prune: query ------------------------------------------------------- */

struct scope_scan {
    unsigned scopes;
    struct shed_err err;
    bool failed;
};

static enum MHD_Result collect_scope(void *opaque, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    struct scope_scan *scan = opaque;
    if (strcmp(key, "scope") != 0 || scan->failed)
        return MHD_YES;
    unsigned scope = value != NULL ? prune_scope_from_name(value) : 0;
    if (scope == 0) {
        shed_errf(&scan->err, SHED_E_INVALID_REQUEST,
                  "unknown scope \"%.40s\": use images, instances, logs or orphans",
                  value != NULL ? value : "");
        scan->failed = true;
        return MHD_NO;
    }
    scan->scopes |= scope;
    return MHD_YES;
}

static int parse_scopes(const struct api_request *request, unsigned *scopes, struct shed_err *err)
{
    struct scope_scan scan = {0};
    MHD_get_connection_values(request->connection, MHD_GET_ARGUMENT_KIND, collect_scope, &scan);
    if (scan.failed) {
        *err = scan.err;
        return -1;
    }
    *scopes = scan.scopes != 0 ? scan.scopes : PRUNE_SCOPE_DEFAULT;
    return 0;
}

/* A query value: *present tells "?key" (value NULL) and "?key=" apart from absence. */
static const char *query_value(const struct api_request *request, const char *key, bool *present)
{
    const char *value = NULL;
    *present = MHD_lookup_connection_value_n(request->connection, MHD_GET_ARGUMENT_KIND, key,
                                             strlen(key), &value, NULL) == MHD_YES;
    return value;
}

static int parse_until(const struct api_request *request, uint64_t *seconds, struct shed_err *err)
{
    bool present = false;
    const char *text = query_value(request, "until", &present);
    *seconds = PRUNE_DEFAULT_UNTIL_SECONDS;
    if (!present)
        return 0;
    if (prune_parse_duration(text != NULL ? text : "", seconds, err) < 0)
        return shed_err_prefix(err, "query parameter until");
    return 0;
}

static int parse_log_tail(const struct api_request *request, uint64_t *bytes, struct shed_err *err)
{
    bool present = false;
    const char *text = query_value(request, "log_tail_bytes", &present);
    *bytes = 0;
    if (!present)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long value = text != NULL ? strtoull(text, &end, 10) : 0;
    if (text == NULL || text[0] < '0' || text[0] > '9' || errno != 0 || *end != '\0' ||
        value > PRUNE_MAX_LOG_TAIL_BYTES)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "query parameter log_tail_bytes must be an integer in 0..%u (0: 5 MiB), "
                         "got \"%.40s\"",
                         PRUNE_MAX_LOG_TAIL_BYTES, text != NULL ? text : "");
    *bytes = value;
    return 0;
}

static int parse_prune_query(const struct api_request *request, struct prune_opts *opts,
                             struct shed_err *err)
{
    if (parse_scopes(request, &opts->scopes, err) < 0 ||
        api_query_bool(request, "dry_run", false, &opts->dry_run, err) < 0 ||
        parse_until(request, &opts->until_seconds, err) < 0 ||
        parse_log_tail(request, &opts->log_tail_bytes, err) < 0)
        return -1;
    return 0;
}

/* ---- POST /api/system/prune ------------------------------------------------------------- */

void handle_system_prune(const struct api_request *request, const struct api_context *context,
                         struct api_response *response)
{
    struct shed_probe probe = context_probe(context);
    struct prune_opts opts = {
        .config = context->config, .instances = context->instances, .probe = &probe};
    struct shed_err err = {0};
    if (parse_prune_query(request, &opts, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    struct prune_plan *plan = NULL;
    if (prune_plan(&opts, &plan, &err) < 0 || prune_execute(plan, &err) < 0) {
        prune_plan_free(plan);
        api_respond_error(response, &err);
        return;
    }
    api_respond_json(response, 200, prune_plan_to_json(plan, context->config->name));
    prune_plan_free(plan);
}
