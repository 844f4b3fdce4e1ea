/* shed info | list | get | start | stop | delete | sessions | kill-session: the sheds. */
#include <stdio.h>
#include <string.h>

#include "shed.h"

const struct cli_option shed_info_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                               SHED_OPTIONS_END};
const struct cli_option shed_list_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                               SHED_OPTIONS_END};
const struct cli_option shed_get_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                              SHED_OPTIONS_END};
/* start, stop: several names */
const struct cli_option shed_names_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                                SHED_OPTIONS_END};
const struct cli_option shed_delete_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                                 SHED_OPTIONS_END};
const struct cli_option shed_sessions_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                                   SHED_OPTIONS_END};

static int get_and_print(const struct cli_call *call, const char *path,
                         void (*human)(const json_t *))
{
    struct shed_cli *cli = shed_cli_of(call);
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, "GET", path, NULL, &response, &error) < 0)
        return shed_fail(&error);
    if (cli->json)
        shed_print_json(response.json);
    else
        human(response.json);
    client_response_clear(&response);
    return CLI_EXIT_OK;
}

/* ---- info, list, get ------------------------------------------------------------------- */

static void print_info(const json_t *info)
{
    printf("name:       %s\nversion:    %s\nbackend:    %s\n", json_get_str(info, "name"),
           json_get_str(info, "version"), json_get_str(info, "backend"));
    const json_t *backends = json_object_get(info, "backends");
    if (json_is_array(backends)) {
        printf("backends:  ");
        size_t i;
        const json_t *name;
        json_array_foreach(backends, i, name) printf(" %s", json_string_value(name));
        printf("%s\n", json_array_size(backends) == 0 ? " none" : "");
    }
    printf("http_port:  %lld\nssh_port:   %lld\n", json_get_int(info, "http_port"),
           json_get_int(info, "ssh_port"));
}

int cmd_info(const struct cli_call *call)
{
    return get_and_print(call, "/api/info", print_info);
}

static void print_shed_table(const json_t *body)
{
    struct table table = {.columns = 6};
    table_add(&table, (const char *[]){"NAME", "STATUS", "BACKEND", "IMAGE", "IP", "CREATED"});
    size_t i;
    json_t *shed;
    json_array_foreach(json_object_get(body, "sheds"), i, shed)
    {
        table_add(&table, (const char *[]){
                              json_get_str(shed, "name"), json_get_str(shed, "status"),
                              json_get_str(shed, "backend"), json_get_str(shed, "image"),
                              json_get_str(shed, "ip_address"), json_get_str(shed, "created_at")});
    }
    table_print_free(&table);
}

int cmd_list(const struct cli_call *call)
{
    return get_and_print(call, "/api/sheds", print_shed_table);
}

static void print_shed(const json_t *shed)
{
    static const char *const keys[] = {"name",  "status",    "created_at", "backend",
                                       "image", "repo",      "local_dir",  "ip_address",
                                       "cpus",  "memory_mb", "pid",        "rootfs_path"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *value = json_object_get(shed, keys[i]);
        const char *text = json_string_value(value);
        if (strcmp(keys[i], "image") == 0 && text != NULL && strcmp(text, "_base") == 0)
            printf("%-12s %s\n", keys[i], "_base (the server's base_image)");
        else if (text != NULL && text[0] != '\0')
            printf("%-12s %s\n", keys[i], text);
        else if (json_is_integer(value))
            printf("%-12s %lld\n", keys[i], (long long)json_integer_value(value));
    }
}

/* Every NAME must be one the URL can carry before anything is sent. */
static int check_names(const struct cli_call *call, const char *suffix)
{
    char path[600];
    for (size_t i = 0; i < call->operand_count; i++)
        if (shed_api_path(path, sizeof path, "sheds", call->operands[i], suffix) < 0)
            return cli_usage_error(call, "invalid shed name '%s'", call->operands[i]);
    return 0;
}

int cmd_get(const struct cli_call *call)
{
    char path[600];
    int rc = check_names(call, "");
    if (rc != 0)
        return rc;
    shed_api_path(path, sizeof path, "sheds", call->operands[0], "");
    return get_and_print(call, path, print_shed);
}

/* ---- start, stop, delete: one request per NAME --------------------------------------- */

/* Sends method to every NAME, reporting each: "DONE NAME" lines, or with --json the server's
 * answer for one NAME and an array of them for several. Exit 1 when any failed. */
static int for_each_name(const struct cli_call *call, const char *method, const char *suffix,
                         const char *done)
{
    struct shed_cli *cli = shed_cli_of(call);
    int rc = check_names(call, suffix);
    if (rc != 0)
        return rc;
    json_t *answers = json_array();
    for (size_t i = 0; i < call->operand_count; i++) {
        const char *name = call->operands[i];
        char path[600];
        shed_api_path(path, sizeof path, "sheds", name, suffix);
        struct client_response response;
        struct client_error error;
        if (client_request(&cli->client, method, path, NULL, &response, &error) < 0) {
            rc = shed_fail(&error);
            continue;
        }
        if (!cli->json)
            printf("%s %s\n", done, name);
        else if (response.json != NULL)
            json_array_append(answers, response.json);
        else /* DELETE answers 204 without a body */
            json_array_append_new(answers, json_pack("{s:s, s:b}", "name", name, done, 1));
        fflush(stdout);
        client_response_clear(&response);
    }
    if (cli->json && call->operand_count == 1 && json_array_size(answers) == 1)
        shed_print_json(json_array_get(answers, 0));
    else if (cli->json && call->operand_count > 1)
        shed_print_json(answers);
    json_decref(answers);
    return rc;
}

int cmd_start(const struct cli_call *call)
{
    return for_each_name(call, "POST", "/start", "started");
}

int cmd_stop(const struct cli_call *call)
{
    return for_each_name(call, "POST", "/stop", "stopped");
}

int cmd_delete(const struct cli_call *call)
{
    return for_each_name(call, "DELETE", "", "deleted");
}

/* ---- sessions -------------------------------------------------------------------------- */

static void print_sessions(const json_t *body)
{
    struct table table = {.columns = 5};
    table_add(&table, (const char *[]){"NAME", "SHED", "ATTACHED", "WINDOWS", "CREATED"});
    size_t i;
    json_t *session;
    json_array_foreach(json_object_get(body, "sessions"), i, session)
    {
        char windows[24];
        snprintf(windows, sizeof windows, "%lld", json_get_int(session, "window_count"));
        table_add(&table, (const char *[]){
                              json_get_str(session, "name"), json_get_str(session, "shed_name"),
                              json_is_true(json_object_get(session, "attached")) ? "yes" : "no",
                              windows, json_get_str(session, "created_at")});
    }
    table_print_free(&table);
}

int cmd_sessions(const struct cli_call *call)
{
    char path[600] = "/api/sessions";
    int rc = check_names(call, "/sessions");
    if (rc != 0)
        return rc;
    if (call->operand_count == 1)
        shed_api_path(path, sizeof path, "sheds", call->operands[0], "/sessions");
    return get_and_print(call, path, print_sessions);
}

int cmd_kill_session(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    const char *name = call->operands[0], *session = call->operands[1];
    char suffix[300], path[600];
    if (strpbrk(session, "/?#% ") != NULL || strlen(session) > 256)
        return cli_usage_error(call, "invalid session name '%s'", session);
    snprintf(suffix, sizeof suffix, "/sessions/%s", session);
    if (shed_api_path(path, sizeof path, "sheds", name, suffix) < 0)
        return cli_usage_error(call, "invalid shed name '%s'", name);
    struct client_response response;
    struct client_error error;
    if (client_request(&cli->client, "DELETE", path, NULL, &response, &error) < 0)
        return shed_fail(&error);
    client_response_clear(&response);
    if (cli->json) {
        json_t *answer =
            json_pack("{s:s, s:s, s:b}", "shed", name, "session", session, "killed", 1);
        shed_print_json(answer);
        json_decref(answer);
    } else {
        printf("killed session %s in %s\n", session, name);
    }
    return CLI_EXIT_OK;
}
