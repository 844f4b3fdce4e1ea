/* shed-server config check: validates server.yaml and prints the resolved configuration. */
#include <stdio.h>

#include "cli_util.h"
#include "commands.h"
#include "config/config.h"

static const struct cli_option check_options[] = {SERVER_CONFIG_OPTIONS, SERVER_OPTIONS_END};

static int config_check(const struct cli_call *call)
{
    struct shed_config config;
    struct shed_err err;
    if (cli_load_config_of(call, &config) != 0)
        return EXIT_FAILURE_RUN;
    int ret = shed_config_print(&config, stdout);
    shed_config_free(&config);
    if (ret < 0 || fflush(stdout) != 0) {
        shed_errf(&err, SHED_E_IO, "cannot write to standard output");
        return cli_fail(&err);
    }
    return EXIT_OK;
}

const struct cli_command config_commands[] = {
    {"check", NULL, "[OPTIONS]", "Validate server.yaml and print the resolved configuration.",
     "Prints the file used (\"# from ...\" or \"# built-in defaults\") and every key, defaults\n"
     "included, as YAML that reads back as the same configuration (api_token is shown as\n"
     "\"<set>\" or null). Exit 1 with the file, line and key when it is invalid.\n",
     check_options, .run = config_check, .max_operands = 0},
    {NULL},
};
