/* shed-server attach NAME [SESSION]: opens (or creates) a tmux session in a running shed on
 * the current terminal: `tmux new-session -A -s SESSION` through `shed-server exec -t`. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"

const struct cli_option attach_options[] = {SERVER_CONFIG_OPTIONS, SERVER_OPTIONS_END};

/* ^[A-Za-z0-9][A-Za-z0-9_-]*$ (api.md): also keeps tmux from reading it as a target spec. */
static bool session_name_is_valid(const char *name)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    return name[0] != '\0' && name[0] != '_' && name[0] != '-' &&
           strspn(name, allowed) == strlen(name);
}

int cmd_attach(const struct cli_call *call)
{
    struct shed_exec_options options = {
        .config_path = cli_value(call, OPT_CONFIG),
        .data_dir = cli_value(call, OPT_DATA_DIR),
        .name = call->operands[0],
        .tty = true,
    };
    const char *session = call->operand_count > 1 ? call->operands[1] : "default";
    if (!session_name_is_valid(session))
        return cli_usage_error(call, "invalid session name '%s'", session);
    if (!isatty(STDIN_FILENO))
        return cli_usage_error(call, "stdin is not a terminal");
    const char *const command[] = {"tmux", "new-session", "-A", "-s", session, NULL};
    return shed_exec_command(&options, command);
}
