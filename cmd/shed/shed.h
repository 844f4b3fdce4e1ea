/* The shed program's shared pieces: option ids, the context every command runs with, output
 * helpers. main.c holds the command table; each cmd_*.c file one group of commands. */
#ifndef SHED_CLI_SHED_H
#define SHED_CLI_SHED_H

#include <jansson.h>
#include <stdbool.h>

#include "client.h"
#include "cmd/common/cli.h"
#include "cmd/common/json_get.h"
#include "cmd/common/table.h"

enum shed_option_id {
    OPT_SERVER = CLI_FIRST_OPTION_ID,
    OPT_TOKEN,
    OPT_JSON,
    OPT_IMAGE,
    OPT_REPO,
    OPT_LOCAL_DIR,
    OPT_CPUS,
    OPT_MEMORY,
    OPT_BACKEND,
    OPT_DRY_RUN,
    OPT_VERBOSE,
    OPT_ALL,
    OPT_FORCE,
    OPT_SCOPE,
    OPT_UNTIL,
    OPT_LOG_TAIL_BYTES,
    OPT_DEFAULT,
    OPT_FIRST_FREE, /* for commands added in other files */
};

/* What complete_kind means in shed's tables. */
enum shed_complete_kind { COMPLETE_SHED = 1, COMPLETE_IMAGE, COMPLETE_SERVER };

/* The globals, as entries of a command's option table. */
#define SHED_OPTION_SERVER                                                                         \
    {                                                                                              \
        "server", 's', "SERVER", "a server of client.yaml, HOST:PORT or a URL", OPT_SERVER         \
    }
#define SHED_OPTION_TOKEN                                                                          \
    {                                                                                              \
        "token", 0, "TOKEN", "bearer token (default: $SHED_API_TOKEN, else client.yaml's)",        \
            OPT_TOKEN                                                                              \
    }
#define SHED_OPTION_JSON                                                                           \
    {                                                                                              \
        "json", 'j', NULL, "print JSON (also: --format json)", OPT_JSON                            \
    }
/* Every command that talks to a server takes these. */
#define SHED_SERVER_OPTIONS SHED_OPTION_SERVER, SHED_OPTION_TOKEN
#define SHED_OPTIONS_END                                                                           \
    {                                                                                              \
        NULL, 0, NULL, NULL, 0                                                                     \
    }

/* The context of every command (cli_call.ctx). */
struct shed_cli {
    struct client client; /* set up before the command runs when it takes --server */
    bool has_client;
    bool json;
};

static inline struct shed_cli *shed_cli_of(const struct cli_call *call)
{
    return call->ctx;
}

/* "shed: CODE: message" on stderr; returns CLI_EXIT_FAILURE. */
int shed_fail(const struct client_error *error);
/* The JSON on stdout, indented, with a trailing newline. */
void shed_print_json(const json_t *json);
/* "/api/sheds/<name><suffix>"; -1 for a name that would change the path. */
int shed_api_path(char *out, size_t outlen, const char *collection, const char *name,
                  const char *suffix);

/* The commands, by file. */
int cmd_info(const struct cli_call *call);
int cmd_list(const struct cli_call *call);
int cmd_get(const struct cli_call *call);
int cmd_start(const struct cli_call *call);
int cmd_stop(const struct cli_call *call);
int cmd_delete(const struct cli_call *call);
int cmd_sessions(const struct cli_call *call);
int cmd_kill_session(const struct cli_call *call);
extern const struct cli_option shed_info_options[], shed_list_options[], shed_names_options[],
    shed_get_options[], shed_delete_options[], shed_sessions_options[];
/* cmd_create.c */
int cmd_create(const struct cli_call *call);
extern const struct cli_option shed_create_options[];
/* cmd_images.c */
extern const struct cli_command shed_images_commands[];
/* cmd_system.c */
extern const struct cli_command shed_system_commands[];
/* cmd_server.c: client.yaml */
extern const struct cli_command shed_server_commands[];
/* cmd_tunnel.c */
int cmd_tunnel(const struct cli_call *call);
extern const struct cli_option shed_tunnel_options[];
/* main.c: completion of shed names, image names and server names. */
void shed_complete(const struct cli_call *call, int kind, const char *prefix);

#endif
