/* shed-server config check: validates server.yaml and prints the resolved configuration. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "config/config.h"

static void print_help(FILE *out)
{
    fputs("Usage: shed-server config check [--config FILE]\n"
          "\n"
          "Validates server.yaml and prints the resolved configuration, defaults included.\n"
          "Without --config the first of ./server.yaml, ~/.config/shed/server.yaml and\n"
          "/etc/shed/server.yaml is used, else the built-in defaults.\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE   read this file instead of searching\n"
          "      --data-dir DIR  show the configuration with DIR as data_dir\n"
          "  -h, --help          show this help\n",
          out);
}

int cmd_config(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *data_dir = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'D': data_dir = optarg; break;
        case 'h': print_help(stdout); return EXIT_OK;
        default: return cli_usage_error("config", "invalid option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("config", "missing subcommand (check)");
    if (strcmp(argv[optind], "check") != 0)
        return cli_usage_error("config", "unknown subcommand '%s'", argv[optind]);
    if (optind + 1 < argc)
        return cli_usage_error("config", "unexpected argument '%s'", argv[optind + 1]);

    struct shed_config config;
    struct shed_err err;
    if (cli_load_config(config_path, data_dir, &config) != 0)
        return EXIT_FAILURE_RUN;
    int ret = shed_config_print(&config, stdout);
    shed_config_free(&config);
    if (ret < 0 || fflush(stdout) != 0) {
        shed_errf(&err, SHED_E_IO, "cannot write to standard output");
        return cli_fail(&err);
    }
    return EXIT_OK;
}
