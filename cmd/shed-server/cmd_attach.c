/* shed-server attach NAME [SESSION]: opens (or creates) a tmux session in a running shed on
 * the current terminal: `tmux new-session -A -s SESSION` through `shed-server exec -t`. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"

static void print_help(void)
{
    printf("Usage: shed-server attach [OPTIONS] NAME [SESSION]\n"
           "\n"
           "Attach the current terminal to tmux session SESSION (default \"default\") in the\n"
           "running shed NAME, creating the session when it does not exist. Detach with the\n"
           "tmux prefix + d; the session keeps running. Exit status as for exec.\n"
           "\n"
           "Options:\n" CLI_CONFIG_OPTIONS_HELP
           "  -h, --help             show this help and exit\n");
}

/* ^[A-Za-z0-9][A-Za-z0-9_-]*$ (api.md): also keeps tmux from reading it as a target spec. */
static bool session_name_is_valid(const char *name)
{
    static const char allowed[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    return name[0] != '\0' && name[0] != '_' && name[0] != '-' &&
           strspn(name, allowed) == strlen(name);
}

int cmd_attach(int argc, char **argv)
{
    enum { OPT_DATA_DIR = 256 };
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct shed_exec_options options = {.tty = true};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c': options.config_path = optarg; break;
        case OPT_DATA_DIR: options.data_dir = optarg; break;
        case 'h': print_help(); return EXIT_OK;
        default: return cli_usage_error("attach", "invalid option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("attach", "missing shed NAME");
    if (argc - optind > 2)
        return cli_usage_error("attach", "unexpected argument '%s'", argv[optind + 2]);
    options.name = argv[optind];
    const char *session = optind + 1 < argc ? argv[optind + 1] : "default";
    if (!session_name_is_valid(session))
        return cli_usage_error("attach", "invalid session name '%s'", session);
    if (!isatty(STDIN_FILENO))
        return cli_usage_error("attach", "stdin is not a terminal");
    const char *const command[] = {"tmux", "new-session", "-A", "-s", session, NULL};
    return shed_exec_command(&options, command);
}
