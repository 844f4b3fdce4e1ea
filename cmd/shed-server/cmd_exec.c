/* shed-server exec NAME [-t] -- CMD...: runs a command in a running shed, like docker exec.
 *
 * Host-side admin access: it reads the config and the shed's metadata.json directly and
 * drives the shed's backend itself, with no server involved (a server may or may not be
 * running). stdin, stdout and stderr are the command's; its exit status is ours. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "runtime/instance.h"

/* Our own failures, as docker exec does: distinct from the command's usual exit codes. */
#define EXIT_EXEC_FAILED 125

const struct cli_option exec_options[] = {
    {"tty", 't', NULL, "run CMD on a terminal (stdin or stdout must be one)", OPT_TTY},
    SERVER_CONFIG_OPTIONS,
    SERVER_OPTIONS_END,
};

/* Loads the shed and the backend that runs it; fails unless the shed runs. */
static int open_running_shed(const struct shed_config *config, const struct backend_set *backends,
                             const char *name, struct instance *inst,
                             const struct shed_backend **backend, struct shed_err *err)
{
    struct instance_store *store = NULL;
    if (instance_store_open(config->instance_dir, &store, err) < 0)
        return -1;
    int rc = instance_store_load(store, name, inst, err);
    instance_store_close(store);
    if (rc < 0)
        return -1;
    *backend = backend_set_find(backends, inst->backend);
    enum instance_status status = INSTANCE_STOPPED;
    if (*backend == NULL || (*backend)->exec == NULL)
        rc = shed_errf(err, SHED_E_NOT_SUPPORTED,
                       "shed \"%s\" uses backend \"%s\", which cannot run commands in this build",
                       name, inst->backend);
    else if ((*backend)->status(*backend, inst, &status, err) < 0)
        rc = -1;
    else if (status != INSTANCE_RUNNING)
        rc = shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is not running", name);
    if (rc < 0)
        instance_clear(inst);
    return rc;
}

int shed_exec_command(const struct shed_exec_options *options, const char *const *command)
{
    struct shed_config config;
    struct shed_err err = {0};
    if (cli_load_config(options->config_path, options->data_dir, &config) != 0)
        return EXIT_EXEC_FAILED;
    struct instance inst;
    struct backend_set *backends = NULL;
    const struct shed_backend *backend = NULL;
    int exit_status = EXIT_EXEC_FAILED;
    if (backend_set_new(&config, &backends, &err) < 0 ||
        open_running_shed(&config, backends, options->name, &inst, &backend, &err) < 0) {
        cli_fail_where(&err, &config, options->data_dir != NULL);
        backend_set_free(backends);
        shed_config_free(&config);
        return EXIT_EXEC_FAILED;
    }
    struct backend_exec_request request = {
        .argv = command,
        .tty = options->tty,
        .stdin_fd = STDIN_FILENO,
        .stdout_fd = STDOUT_FILENO,
        .stderr_fd = STDERR_FILENO,
    };
    fflush(stdout);
    if (backend->exec(backend, &inst, &request, &exit_status, &err) < 0) {
        cli_fail(&err);
        exit_status = EXIT_EXEC_FAILED;
    }
    backend_set_free(backends);
    instance_clear(&inst);
    shed_config_free(&config);
    return exit_status;
}

int cmd_exec(const struct cli_call *call)
{
    struct shed_exec_options options = {
        .config_path = cli_value(call, OPT_CONFIG),
        .data_dir = cli_value(call, OPT_DATA_DIR),
        .name = call->operands[0],
        .tty = cli_flag(call, OPT_TTY),
    };
    return shed_exec_command(&options, (const char *const *)call->operands + 1);
}
