/* shed: the command-line client of shed-server's REST API. This file is the command table;
 * the commands are in cmd_*.c (one file per group), the conventions in cmd/common/cli.h.
 *
 * Output: human tables by default, the server's JSON with --json. Errors: one line on
 * stderr, "shed: CODE: message" (the server's code and message), exit 1; usage errors
 * exit 2. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_config.h"
#include "cmd_ssh.h"
#include "common/cleanup.h"
#include "shed.h"

/* Completion asks the server for names, but never waits long for it. */
#define COMPLETION_TIMEOUT_SECONDS 2L

static const struct cli_option global_options[] = {SHED_SERVER_OPTIONS, SHED_OPTION_JSON,
                                                   SHED_OPTIONS_END};

static const struct cli_command commands[] = {
    {"info", NULL, "[OPTIONS]", "Show the server's name, version, backends and ports.", NULL,
     shed_info_options, .run = cmd_info, .max_operands = 0},
    {"list", "ls ps", "[OPTIONS]", "List the sheds.", NULL, shed_list_options, .run = cmd_list,
     .max_operands = 0},
    {"create", NULL, "[OPTIONS] NAME", "Create and start a shed, showing its progress.",
     "Progress goes to stderr: one line per phase on a terminal, plain lines otherwise.\n"
     "Without --image the server's base_image is used (shed images lists the variants).\n",
     shed_create_options, .run = cmd_create, .min_operands = 1, .max_operands = 1},
    {"get", "inspect", "[OPTIONS] NAME", "Show one shed.", NULL, shed_get_options, .run = cmd_get,
     .min_operands = 1, .max_operands = 1, .complete_kind = COMPLETE_SHED},
    {"start", NULL, "[OPTIONS] NAME...", "Start stopped sheds.", NULL, shed_names_options,
     .run = cmd_start, .min_operands = 1, .max_operands = -1, .complete_kind = COMPLETE_SHED},
    {"stop", NULL, "[OPTIONS] NAME...", "Stop running sheds.", NULL, shed_names_options,
     .run = cmd_stop, .min_operands = 1, .max_operands = -1, .complete_kind = COMPLETE_SHED},
    {"delete", "rm", "[OPTIONS] NAME...", "Delete sheds and their data (stopping them first).",
     NULL, shed_delete_options, .run = cmd_delete, .min_operands = 1, .max_operands = -1,
     .complete_kind = COMPLETE_SHED},
    {"sessions", NULL, "[OPTIONS] [NAME]",
     "List the tmux sessions of one shed, or of every running shed.", NULL, shed_sessions_options,
     .run = cmd_sessions, .max_operands = 1, .complete_kind = COMPLETE_SHED},
    {"kill-session", NULL, "[OPTIONS] NAME SESSION", "Kill one tmux session.", NULL,
     shed_sessions_options, .run = cmd_kill_session, .min_operands = 2, .max_operands = 2,
     .complete_kind = COMPLETE_SHED},
    {"images", "image", NULL, "List, remove or prune the server's image variants.",
     .subcommands = shed_images_commands, .default_subcommand = "ls"},
    {"tunnel", NULL, "[OPTIONS] NAME LOCAL:REMOTE",
     "Forward 127.0.0.1:LOCAL to port REMOTE inside the shed until interrupted.", NULL,
     shed_tunnel_options, .run = cmd_tunnel, .min_operands = 2, .max_operands = 2,
     .complete_kind = COMPLETE_SHED},
    {"system", NULL, NULL, "Disk usage (df) and cleanup (prune) of the server's data.",
     .subcommands = shed_system_commands},
    {"server", "servers", NULL, "Add, list or remove the servers of client.yaml.",
     .subcommands = shed_server_commands, .default_subcommand = "ls"},
    /* cmd_ssh.c: through the system's OpenSSH client */
    {"ssh", NULL, "[OPTIONS] NAME [-- CMD...]",
     "Log in to a shed over SSH (or run CMD as ssh does).", NULL, shed_ssh_options, .run = cmd_ssh,
     .min_operands = 1, .max_operands = -1, .passthrough_after = 1, .complete_kind = COMPLETE_SHED},
    {"exec", NULL, "[OPTIONS] NAME -- CMD...",
     "Run a command in a shed over SSH; its exit status is CMD's.", NULL, shed_exec_options,
     .run = cmd_exec, .min_operands = 2, .max_operands = -1, .passthrough_after = 1,
     .complete_kind = COMPLETE_SHED},
    {"attach", NULL, "[OPTIONS] NAME [SESSION]",
     "Attach to a tmux session in a shed over SSH (created if missing).", NULL, shed_ssh_options,
     .run = cmd_attach, .min_operands = 1, .max_operands = 2, .complete_kind = COMPLETE_SHED},
    {"ssh-config", NULL, "[OPTIONS]", "Print (or install) an ssh config with a Host per shed.",
     NULL, shed_ssh_config_options, .run = cmd_ssh_config, .max_operands = 0},
    {NULL},
};

static const char footer[] =
    "SERVER (-s): a name from client.yaml ('shed server add'), HOST:PORT (http:// assumed)\n"
    "or a URL; without -s, client.yaml's default, else http://127.0.0.1:8080.\n"
    "\n"
    "Exit status: 0 success; 1 failure (\"shed: CODE: message\" on stderr, CODE being the\n"
    "server's error code or CONNECTION, CONFIG, PROTOCOL, ...); 2 usage error.\n";

static bool takes_server(const struct cli_command *command)
{
    for (const struct cli_option *option = command->options; option && option->name; option++)
        if (option->id == OPT_SERVER)
            return true;
    return false;
}

/* The client of the server the command names (-s), with its token. */
static int connect_client(const struct cli_call *call, struct client *client,
                          struct client_error *error)
{
    cleanup_free char *url = NULL, *config_token = NULL, *origin = NULL;
    if (client_resolve_server(cli_value(call, OPT_SERVER), &url, &config_token, &origin, error) < 0)
        return -1;
    const char *token = cli_value(call, OPT_TOKEN);
    if (token == NULL)
        token = getenv("SHED_API_TOKEN");
    if (token == NULL)
        token = config_token;
    return client_init(client, url, token, origin, error);
}

static int before_run(struct cli_call *call)
{
    struct shed_cli *cli = call->ctx;
    cli->json = cli_flag(call, OPT_JSON);
    if (!takes_server(call->command))
        return 0;
    struct client_error error;
    if (connect_client(call, &cli->client, &error) < 0) {
        if (strcmp(error.code, "USAGE") == 0)
            return cli_usage_error(call, "%s", error.message);
        return shed_fail(&error);
    }
    cli->has_client = true;
    return 0;
}

static void complete_from_server(const struct cli_call *call, const char *path, const char *key,
                                 const char *prefix)
{
    struct client client;
    struct client_error error;
    if (connect_client(call, &client, &error) < 0)
        return;
    client.timeout_seconds = COMPLETION_TIMEOUT_SECONDS;
    struct client_response response;
    if (client_request(&client, "GET", path, NULL, &response, &error) == 0) {
        size_t i;
        const json_t *item;
        json_array_foreach(json_object_get(response.json, key), i, item)
        {
            const char *name = json_get_str(item, "name");
            if (strncmp(name, prefix, strlen(prefix)) == 0)
                printf("%s\n", name);
        }
        client_response_clear(&response);
    }
    client_cleanup(&client);
}

void shed_complete(const struct cli_call *call, int kind, const char *prefix)
{
    if (kind == COMPLETE_SHED) {
        complete_from_server(call, "/api/sheds", "sheds", prefix);
    } else if (kind == COMPLETE_IMAGE) {
        complete_from_server(call, "/api/images", "images", prefix);
    } else if (kind == COMPLETE_SERVER) {
        struct client_config config;
        struct client_error error;
        if (client_config_load(&config, &error) < 0)
            return;
        for (size_t i = 0; i < config.count; i++)
            if (strncmp(config.servers[i].name, prefix, strlen(prefix)) == 0)
                printf("%s\n", config.servers[i].name);
        client_config_free(&config);
    }
}

static const struct cli_program program = {
    .name = "shed",
    .summary = "The client of shed-server: create, list and manage sheds over its REST API.",
    .options = global_options,
    .commands = commands,
    .footer = footer,
    .version = "shed " SHED_VERSION,
    .before_run = before_run,
    .complete = shed_complete,
};

int main(int argc, char **argv)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "shed: NO_MEMORY: cannot initialise libcurl\n");
        return CLI_EXIT_FAILURE;
    }
    struct shed_cli cli = {.has_client = false};
    int rc = cli_main(&program, argc, argv, &cli);
    if (cli.has_client)
        client_cleanup(&cli.client);
    curl_global_cleanup();
    return rc;
}
