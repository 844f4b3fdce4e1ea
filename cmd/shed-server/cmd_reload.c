/* shed-server reload: makes the server that serves this data dir re-read server.yaml (SIGHUP
 * through its pid file) and prints the outcome it records: what took effect, what needs a
 * restart, or why the file was refused (exit 1; the server keeps its configuration). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_util.h"
#include "commands.h"
#include "server/server.h"

#define DEFAULT_TIMEOUT_SECONDS 60

static void print_help(FILE *out)
{
    fputs("Usage: shed-server reload [OPTIONS]\n"
          "\n"
          "Makes the running `shed-server serve` of this data dir re-read its configuration,\n"
          "as SIGHUP (and `systemctl reload`) do, and prints what it did. Keys that only take\n"
          "effect at start (bind, http_port, ssh_port, data_dir, images_dir, instance_dir,\n"
          "container_network) keep their running values and are named as needing a restart.\n"
          "An invalid file is refused with its error (exit 1): the server keeps running with\n"
          "the configuration it had. The server is found by <data_dir>/shed-server.pid.\n"
          "\n"
          "Options:\n" CLI_CONFIG_OPTIONS_HELP
          "      --timeout=S        how long to wait for the server's answer (default 60)\n"
          "  -h, --help             show this help and exit\n",
          out);
}

int cmd_reload(int argc, char **argv)
{
    enum { OPT_DATA_DIR = 256, OPT_TIMEOUT };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *data_dir = NULL;
    unsigned long timeout = DEFAULT_TIMEOUT_SECONDS;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        char *end = NULL;
        switch (opt) {
        case 'c': config_path = optarg; break;
        case OPT_DATA_DIR: data_dir = optarg; break;
        case OPT_TIMEOUT:
            errno = 0;
            timeout = strtoul(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || timeout == 0 || timeout > 3600)
                return cli_usage_error("reload", "invalid timeout '%s' (1-3600 seconds)", optarg);
            break;
        case 'h': print_help(stdout); return EXIT_OK;
        default: return cli_usage_error("reload", "invalid option");
        }
    }
    if (optind < argc)
        return cli_usage_error("reload", "unexpected argument '%s'", argv[optind]);
    /* The data dir comes from the file the server would read, unless --data-dir names it: a
     * file the server will refuse still tells where the server is. */
    struct shed_config config = {0};
    struct shed_err err = {0};
    if (data_dir == NULL && shed_config_load(config_path, &config, &err) < 0) {
        fprintf(stderr,
                "shed-server: %s: %s (the server was not signalled; give --data-dir to "
                "have it refuse the file itself)\n",
                shed_code_name(err.code), err.msg);
        return EXIT_FAILURE_RUN;
    }
    struct server_reload_outcome outcome;
    int rc = server_request_reload(data_dir != NULL ? data_dir : config.data_dir, (unsigned)timeout,
                                   &outcome, &err);
    shed_config_free(&config);
    if (rc < 0)
        return cli_fail(&err);
    if (!outcome.ok) {
        fprintf(stderr, "shed-server: reload refused: %s\n", outcome.message);
        return EXIT_FAILURE_RUN;
    }
    printf("reloaded: %s\n", outcome.message);
    return EXIT_OK;
}
