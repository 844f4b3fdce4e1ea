/* shed-server subcommands: one handler per file (cmd_<name>.c), each with its option table;
 * main.c holds the command table. */
#ifndef SHED_COMMANDS_H
#define SHED_COMMANDS_H

#include <stdbool.h>

#include "cmd/common/cli.h"

enum server_option_id {
    OPT_CONFIG = CLI_FIRST_OPTION_ID,
    OPT_DATA_DIR,
    OPT_JSON,
    OPT_PORT,
    OPT_BIND,
    OPT_PLATFORM,
    OPT_CREDS,
    OPT_PARALLEL,
    OPT_OUTPUT,
    OPT_SIZE,
    OPT_INSECURE_REGISTRY,
    OPT_VARIANT,
    OPT_VERBOSE,
    OPT_DRY_RUN,
    OPT_SCOPE,
    OPT_UNTIL,
    OPT_LOG_TAIL_BYTES,
    OPT_TTY,
    OPT_NAME,
    OPT_FORMAT,
    OPT_TIMEOUT,
    OPT_SSH_PORT,
    OPT_FIRST_FREE,
};

/* What complete_kind means in shed-server's tables. */
enum server_complete_kind { COMPLETE_SHED = 1, COMPLETE_IMAGE, COMPLETE_FILE };

/* The globals, as entries of a command's option table. */
#define SERVER_OPTION_CONFIG                                                                       \
    {                                                                                              \
        "config", 'c', "FILE",                                                                     \
            "server.yaml to use (default: ./server.yaml, ~/.config/shed/server.yaml, "             \
            "/etc/shed/server.yaml)",                                                              \
            OPT_CONFIG                                                                             \
    }
#define SERVER_OPTION_DATA_DIR                                                                     \
    {                                                                                              \
        "data-dir", 0, "DIR", "data directory (images in DIR/images, sheds in DIR/instances)",     \
            OPT_DATA_DIR                                                                           \
    }
#define SERVER_OPTION_JSON                                                                         \
    {                                                                                              \
        "json", 'j', NULL, "print JSON (also: --format json)", OPT_JSON                            \
    }
/* Every command that reads or writes the data dir takes these. */
#define SERVER_CONFIG_OPTIONS SERVER_OPTION_CONFIG, SERVER_OPTION_DATA_DIR
#define SERVER_OPTIONS_END                                                                         \
    {                                                                                              \
        NULL, 0, NULL, NULL, 0                                                                     \
    }

int cmd_serve(const struct cli_call *call);
int cmd_pull(const struct cli_call *call);
int cmd_convert(const struct cli_call *call);
int cmd_pull_images(const struct cli_call *call);
int cmd_clone(const struct cli_call *call);
int cmd_exec(const struct cli_call *call);
int cmd_attach(const struct cli_call *call);
int cmd_import(const struct cli_call *call);
int cmd_reload(const struct cli_call *call);
int cmd_export(const struct cli_call *call);
extern const struct cli_option serve_options[], pull_options[], convert_options[],
    pull_images_options[], clone_options[], exec_options[], attach_options[], import_options[],
    reload_options[], export_options[];
extern const struct cli_command config_commands[], images_commands[], system_commands[];

/* cmd_exec.c, shared with attach: runs command in a running shed with our stdio; returns
 * the command's exit status (125 when shed-server itself failed). */
struct shed_exec_options {
    const char *config_path; /* NULL: default lookup */
    const char *data_dir;    /* NULL: from the config */
    const char *name;
    bool tty;
};
int shed_exec_command(const struct shed_exec_options *options, const char *const *command);

#endif
