/* shed-server reload: makes the server that serves this data dir re-read server.yaml (SIGHUP
 * through its pid file) and prints the outcome it records: what took effect, what needs a
 * restart, or why the file was refused (exit 1; the server keeps its configuration). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_util.h"
#include "commands.h"
#include "server/server.h"

#define DEFAULT_TIMEOUT_SECONDS 60

const struct cli_option reload_options[] = {
    SERVER_CONFIG_OPTIONS,
    {"timeout", 0, "S", "how long to wait for the server's answer (default 60)", OPT_TIMEOUT},
    SERVER_OPTIONS_END,
};

int cmd_reload(const struct cli_call *call)
{
    const char *config_path = cli_value(call, OPT_CONFIG);
    const char *data_dir = cli_value(call, OPT_DATA_DIR);
    const char *timeout_text = cli_value(call, OPT_TIMEOUT);
    unsigned long timeout = DEFAULT_TIMEOUT_SECONDS;
    if (timeout_text != NULL) {
        char *end = NULL;
        errno = 0;
        timeout = strtoul(timeout_text, &end, 10);
        if (errno != 0 || end == timeout_text || *end != '\0' || timeout == 0 || timeout > 3600)
            return cli_usage_error(call, "invalid timeout '%s' (1-3600 seconds)", timeout_text);
    }
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
