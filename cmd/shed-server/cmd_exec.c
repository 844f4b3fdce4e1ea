/* shed-server exec NAME [-t] -- CMD...: runs a command in a running shed, like docker exec.
 *
 * Host-side admin access: it reads the config and the shed's metadata.json directly and
 * drives the shed's backend itself, with no server involved (a server may or may not be
 * running). stdin, stdout and stderr are the command's; its exit status is ours. The command
 * runs through the backend's process API (for containers: the shed's agent): with -t on a
 * terminal of the shed, relayed to ours (raw, resized on SIGWINCH); SIGINT, SIGTERM, SIGHUP
 * and SIGQUIT are passed on to it. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "common/io.h"
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
    if (*backend == NULL || (*backend)->spawn == NULL)
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

/* The signals passed on to the command (and SIGWINCH, which resizes its terminal), taken
 * through a signalfd instead of ending shed-server. */
static int forwarded_signals_fd(bool tty, sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
    if (tty)
        sigaddset(set, SIGWINCH);
    if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
        return -1;
    return signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* Without a terminal: the command has our stdio; signals are passed on until it ends. */
static int wait_forwarding(struct backend_process *process, int signal_fd,
                           struct backend_exit *exit, struct shed_err *err)
{
    for (;;) {
        struct pollfd fds[2] = {{.fd = backend_process_event_fd(process), .events = POLLIN},
                                {.fd = signal_fd, .events = POLLIN}};
        if (TEMP_FAILURE_RETRY(poll(fds, 2, -1)) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "poll");
        struct signalfd_siginfo info;
        while (fds[1].revents && read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
            struct shed_err ignored = {0};
            backend_process_signal(process, (int)info.ssi_signo, &ignored);
        }
        if (fds[0].revents) {
            int rc = backend_process_wait(process, 0, exit, err);
            if (rc <= 0)
                return rc;
        }
    }
}

static int run_command(const struct shed_backend *backend, const struct instance *inst, bool tty,
                       const char *const *command, struct shed_err *err)
{
    struct backend_spawn_request request = {.argv = command,
                                            .tty = tty,
                                            .stdin_fd = STDIN_FILENO,
                                            .stdout_fd = STDOUT_FILENO,
                                            .stderr_fd = STDERR_FILENO};
    struct winsize ws;
    if (tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
        request.winsize =
            (struct backend_winsize){ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel};
    sigset_t signals;
    int signal_fd = forwarded_signals_fd(tty, &signals);
    if (signal_fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "signalfd");
    struct backend_process *process = NULL;
    struct backend_exit exit;
    int rc = backend->spawn(backend, inst, &request, &process, err);
    if (rc == 0)
        rc = tty ? backend_process_relay_tty(process, STDIN_FILENO, STDOUT_FILENO, signal_fd, &exit,
                                             err)
                 : wait_forwarding(process, signal_fd, &exit, err);
    backend_process_free(process);
    close(signal_fd);
    sigprocmask(SIG_UNBLOCK, &signals, NULL);
    if (rc == 0)
        return backend_exit_status(&exit);
    if (err->code == SHED_E_NOT_FOUND) {
        fprintf(stderr, "shed-server exec: %s: command not found in shed \"%s\"\n", command[0],
                inst->name);
        return BACKEND_EXIT_NOT_FOUND;
    }
    return -1;
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
    fflush(stdout);
    exit_status = run_command(backend, &inst, options->tty, command, &err);
    if (exit_status < 0) {
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
