/* Talking to runc: run (detached), delete, exec. Every call names our own --root. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "container_runc.h"

/* runc's complaint kept for an error message. */
#define RUNC_MESSAGE_MAX 1024

/* runc prints `time="…" level=error msg="…"` lines: the last msg="…" is the message. */
static const char *runc_message(char *output)
{
    char *msg = NULL;
    for (char *at = strstr(output, "msg=\""); at != NULL; at = strstr(at + 1, "msg=\""))
        msg = at + 5;
    if (msg == NULL) {
        size_t len = strlen(output);
        while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == ' '))
            output[--len] = '\0';
        return output;
    }
    char *end = strchr(msg, '\n');
    if (end != NULL)
        *end = '\0';
    size_t len = strlen(msg);
    if (len > 0 && msg[len - 1] == '"')
        msg[len - 1] = '\0';
    return msg;
}

int runc_run_detached(const struct container_state *state, const struct container_paths *paths,
                      struct container_console *console, int agent_fd, struct shed_err *err)
{
    if (unlink(paths->pid_file) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unlink %s", paths->pid_file);
    const char *fixed[] = {state->runc_path, "--root",   state->runc_root, "run",
                           "--detach",       "--bundle", paths->bundle,    "--pid-file",
                           paths->pid_file};
    const char *argv[sizeof fixed / sizeof fixed[0] + 4];
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = fixed[i];
    /* The agent's socket is fd 3 of runc, and runc hands it on as fd 3 of the shed's init. */
    if (agent_fd >= 0) {
        argv[n++] = "--preserve-fds";
        argv[n++] = "1";
    }
    argv[n++] = paths->id;
    argv[n] = NULL;
    /* runc passes its stdout/stderr on to the shed's PID 1: both are the console pipe. */
    const int fds[4] = {-1, console->write_fd, console->write_fd, agent_fd};
    pid_t pid;
    int status = 0;
    if (container_spawn_fds(argv, fds, agent_fd >= 0 ? 4 : 3, true, &pid, err) < 0 ||
        container_console_wait(console, pid, &status, err) < 0)
        return -1;
    if (status == 0)
        return 0;
    return shed_errf(err, SHED_E_BACKEND_ERROR, "runc run %s failed (exit %d): %s", paths->id,
                     status, console->tail_len > 0 ? runc_message(console->tail) : "(no message)");
}

int runc_read_pid_file(const struct container_paths *paths, pid_t *pid, struct shed_err *err)
{
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(paths->pid_file, &text, &len, 64, err) < 0)
        return shed_err_prefix(err, "runc left no pid file");
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || value <= 1)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "runc pid file %s holds \"%.20s\"",
                         paths->pid_file, text);
    *pid = (pid_t)value;
    return 0;
}

bool runc_container_exists(const struct container_paths *paths)
{
    struct stat st;
    return stat(paths->runc_state, &st) == 0;
}

int runc_delete_force(const struct container_state *state, const struct container_paths *paths,
                      struct shed_err *err)
{
    if (!runc_container_exists(paths))
        return 0;
    const char *const argv[] = {state->runc_path, "--root", state->runc_root, "delete", "--force",
                                paths->id,        NULL};
    int status = 0;
    cleanup_free char *output = NULL;
    if (container_run_capture(argv, &status, &output, RUNC_MESSAGE_MAX, err) < 0)
        return -1;
    if (status != 0 && runc_container_exists(paths))
        return shed_errf(err, SHED_E_BACKEND_ERROR, "runc delete %s failed (exit %d): %s",
                         paths->id, status, runc_message(output));
    return 0;
}

int runc_exec(const struct container_state *state, const struct container_paths *paths,
              const struct backend_exec_request *request, int *exit_status, struct shed_err *err)
{
    size_t argc = 0;
    while (request->argv[argc] != NULL)
        argc++;
    const char *fixed[] = {state->runc_path, "--root", state->runc_root, "exec"};
    size_t fixed_count = sizeof fixed / sizeof fixed[0];
    /* fixed + "-t" + id + command + NULL */
    cleanup_free const char **argv = calloc(fixed_count + argc + 3, sizeof *argv);
    if (argv == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < fixed_count; i++)
        argv[n++] = fixed[i];
    if (request->tty)
        argv[n++] = "-t";
    argv[n++] = paths->id;
    for (size_t i = 0; i < argc; i++)
        argv[n++] = request->argv[i];
    argv[n] = NULL;
    /* Same session as the caller: with a terminal, runc must stay in its foreground process
     * group to get SIGWINCH (window size changes) and job control. */
    pid_t pid;
    if (container_spawn(argv, request->stdin_fd, request->stdout_fd, request->stderr_fd, false,
                        &pid, err) < 0)
        return -1;
    return container_wait(pid, exit_status, err);
}
