/* spawn for a shed started before its agent existed: `runc exec` as a child of this process,
 * until the shed's next start gives it an agent.
 *
 * The process is runc's: its pidfd is the event fd, signals go to runc (which forwards them
 * to the command), its exit status is the command's (runc reports a signal death as 128+N,
 * which is how it is reported here too). With a tty, runc exec -t runs on a pty of the host
 * that becomes runc's controlling terminal: runc relays it to the shed's own console and
 * follows its size on SIGWINCH, so TIOCSWINSZ on our master resizes the shed's side too. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/strv.h"
#include "container_agent.h"

/* How long freeing a process still running waits for runc to pass SIGHUP on and exit. */
#define RUNC_HANGUP_GRACE_MS 2000

struct runc_process {
    struct backend_process base; /* first */
    pid_t pid;                   /* runc exec */
    int pidfd;
    bool exited;
    struct backend_exit exit;
};

static int runc_process_signal(struct backend_process *base, int signo, struct shed_err *err)
{
    struct runc_process *process = (struct runc_process *)base;
    if (process->exited)
        return 0;
    if (syscall(SYS_pidfd_send_signal, process->pidfd, signo, NULL, 0) < 0 && errno != ESRCH)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "signal %d to runc", signo);
    return 0;
}

static int runc_process_wait(struct backend_process *base, int timeout_ms,
                             struct backend_exit *exit, struct shed_err *err)
{
    struct runc_process *process = (struct runc_process *)base;
    if (!process->exited) {
        struct pollfd pfd = {.fd = process->pidfd, .events = POLLIN};
        int ready = TEMP_FAILURE_RETRY(poll(&pfd, 1, timeout_ms));
        if (ready < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "poll");
        if (ready == 0)
            return 1;
        int status = 0;
        if (TEMP_FAILURE_RETRY(waitpid(process->pid, &status, 0)) < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "waitpid %d", process->pid);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code > 128 && code < 128 + NSIG)
            process->exit = (struct backend_exit){.signaled = true, .signo = code - 128};
        else
            process->exit = (struct backend_exit){.code = code};
        process->exited = true;
    }
    *exit = process->exit;
    return 0;
}

static void runc_process_free(struct backend_process *base)
{
    struct runc_process *process = (struct runc_process *)base;
    if (!process->exited) {
        struct backend_exit ignored;
        struct shed_err ignored_err = {0};
        syscall(SYS_pidfd_send_signal, process->pidfd, SIGHUP, NULL, 0);
        if (runc_process_wait(base, RUNC_HANGUP_GRACE_MS, &ignored, &ignored_err) != 0) {
            syscall(SYS_pidfd_send_signal, process->pidfd, SIGKILL, NULL, 0);
            runc_process_wait(base, -1, &ignored, &ignored_err);
        }
    }
    close(process->pidfd);
    if (base->pty_fd >= 0)
        close(base->pty_fd);
    free(process);
}

static const struct backend_process_ops runc_process_ops = {
    .signal = runc_process_signal,
    .wait = runc_process_wait,
    .free = runc_process_free,
};

/* runc --root R exec [-t] [--cwd D] [--env K=V]... ID CMD... */
static int build_argv(const struct container_state *state, const struct container_paths *paths,
                      const struct backend_spawn_request *request, struct strv *argv,
                      struct shed_err *err)
{
    const char *fixed[] = {state->runc_path, "--root", state->runc_root, "exec"};
    int rc = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        rc |= strv_add(argv, fixed[i], err);
    if (request->tty)
        rc |= strv_add(argv, "-t", err);
    if (request->cwd != NULL && request->cwd[0] != '\0') {
        rc |= strv_add(argv, "--cwd", err);
        rc |= strv_add(argv, request->cwd, err);
    }
    for (const char *const *env = request->env; env != NULL && *env != NULL; env++) {
        rc |= strv_add(argv, "--env", err);
        rc |= strv_add(argv, *env, err);
    }
    rc |= strv_add(argv, paths->id, err);
    if (request->login) {
        /* No reading of the shed's passwd here: the fallback's login shell is /bin/sh. */
        rc |= strv_add(argv, "/bin/sh", err);
        rc |= strv_add(argv, request->command != NULL ? "-c" : "-l", err);
        if (request->command != NULL)
            rc |= strv_add(argv, request->command, err);
    } else {
        for (const char *const *arg = request->argv; arg != NULL && *arg != NULL; arg++)
            rc |= strv_add(argv, *arg, err);
    }
    return rc != 0 ? -1 : 0;
}

/* A pty of the host: *master (ours) and the slave's path for runc. */
static int open_host_pty(const struct backend_winsize *size, int *master, char *slave,
                         size_t slave_len, struct shed_err *err)
{
    cleanup_close int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || grantpt(fd) < 0 || unlockpt(fd) < 0 || ptsname_r(fd, slave, slave_len) != 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot open a pty");
    struct winsize ws = {.ws_row = size->rows,
                         .ws_col = size->cols,
                         .ws_xpixel = size->xpixels,
                         .ws_ypixel = size->ypixels};
    if (ws.ws_row > 0 && ws.ws_col > 0)
        ioctl(fd, TIOCSWINSZ, &ws);
    *master = steal_fd(&fd);
    return 0;
}

int container_runc_spawn(const struct container_state *state, const struct container_paths *paths,
                         const struct backend_spawn_request *request, struct backend_process **out,
                         struct shed_err *err)
{
    if (!request->login && (request->argv == NULL || request->argv[0] == NULL))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "no command to run");
    cleanup_strv struct strv argv = STRV_INIT;
    if (build_argv(state, paths, request, &argv, err) < 0)
        return -1;
    cleanup_close int master = -1;
    char slave[64];
    pid_t pid = 0;
    if (request->tty) {
        if (open_host_pty(&request->winsize, &master, slave, sizeof slave, err) < 0 ||
            container_spawn_on_terminal((const char *const *)argv.items, slave, &pid, err) < 0)
            return -1;
    } else if (container_spawn((const char *const *)argv.items, request->stdin_fd,
                               request->stdout_fd, request->stderr_fd, true, &pid, err) < 0) {
        return -1;
    }
    struct runc_process *process = calloc(1, sizeof *process);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (process == NULL || pidfd < 0) {
        int saved = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(process);
        if (pidfd >= 0)
            close(pidfd);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, saved, "cannot follow runc exec");
    }
    process->base = (struct backend_process){
        .ops = &runc_process_ops, .pty_fd = steal_fd(&master), .event_fd = pidfd, .pid = 0};
    process->pid = pid;
    process->pidfd = pidfd;
    *out = &process->base;
    return 0;
}
