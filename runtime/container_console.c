/* The shed's console: a pipe whose write end becomes the stdout/stderr of runc and, through
 * it, of the shed's PID 1; never a host file (a host fd in the shed could be written without
 * limit). While runc starts the shed, the server drains the pipe itself into console.log
 * (common/rotating_log.h: a cap and one rotation), so runc's own messages land there and are
 * at hand for the error message, and runc can never block on a full pipe. Once the shed runs,
 * the read end goes to shed-logger (cmd/shed-logger), which outlives the server and exits when
 * the shed's last process is gone; it is moved into the shed's cgroups, so a service manager
 * stopping the server's cgroup does not take the shed's console with it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_internal.h"

int container_console_open(struct container_console *console, const char *console_log,
                           uint64_t max_bytes, struct shed_err *err)
{
    memset(console, 0, sizeof *console);
    console->log = ROTATING_LOG_INIT;
    console->read_fd = console->write_fd = -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "pipe for the console");
    console->read_fd = fds[0];
    console->write_fd = fds[1];
    if (rotating_log_open(&console->log, console_log, max_bytes, err) < 0) {
        container_console_close(console);
        return -1;
    }
    return 0;
}

void container_console_close(struct container_console *console)
{
    if (console->read_fd >= 0)
        close(console->read_fd);
    if (console->write_fd >= 0)
        close(console->write_fd);
    console->read_fd = console->write_fd = -1;
    rotating_log_close(&console->log);
}

/* What the pipe holds now (non-blocking): into console.log, and its end kept in tail. */
static int drain_available(struct container_console *console, struct shed_err *err)
{
    char buf[16384];
    for (;;) {
        ssize_t got = read(console->read_fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno == EAGAIN)
            return 0;
        if (got < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "read the console");
        if (got == 0)
            return 0;
        struct shed_err ignored = {0}; /* a full disk must not fail the start */
        rotating_log_write(&console->log, buf, (size_t)got, &ignored);
        size_t keep = (size_t)got < CONTAINER_CONSOLE_TAIL ? (size_t)got : CONTAINER_CONSOLE_TAIL;
        size_t old = console->tail_len + keep > CONTAINER_CONSOLE_TAIL
                         ? CONTAINER_CONSOLE_TAIL - keep
                         : console->tail_len;
        memmove(console->tail, console->tail + console->tail_len - old, old);
        memcpy(console->tail + old, buf + got - keep, keep);
        console->tail_len = old + keep;
        console->tail[console->tail_len] = '\0';
    }
}

static int set_blocking(int fd, bool blocking)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

int container_console_wait(struct container_console *console, pid_t child, int *exit_status,
                           struct shed_err *err)
{
    /* Ours goes: from now on only runc and the shed hold the write end. */
    close(console->write_fd);
    console->write_fd = -1;
    cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    if (pidfd < 0 || set_blocking(console->read_fd, false) < 0) {
        shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "watch runc (pid %d)", (int)child);
        struct shed_err ignored = {0};
        container_wait(child, exit_status, &ignored);
        return -1;
    }
    for (bool exited = false; !exited;) {
        struct pollfd fds[2] = {{.fd = console->read_fd, .events = POLLIN},
                                {.fd = pidfd, .events = POLLIN}};
        if (TEMP_FAILURE_RETRY(poll(fds, 2, -1)) < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "poll the console");
        exited = (fds[1].revents & POLLIN) != 0;
        if (drain_available(console, err) < 0)
            return -1;
        if ((fds[0].revents & POLLHUP) && !(fds[0].revents & POLLIN) && !exited) {
            /* every writer gone while runc still runs: only its exit is left to wait for */
            if (TEMP_FAILURE_RETRY(poll(&fds[1], 1, -1)) < 0)
                return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "poll runc");
            exited = true;
        }
    }
    if (drain_available(console, err) < 0)
        return -1;
    return container_wait(child, exit_status, err);
}

/* Runs shed-logger on the read end; its pid is what it prints (after forking away). */
static int spawn_logger(const struct container_console *console, const char *logger_path,
                        const char *console_log, uint64_t max_bytes, pid_t *logger,
                        struct shed_err *err)
{
    char max_text[32];
    snprintf(max_text, sizeof max_text, "%llu", (unsigned long long)max_bytes);
    const char *const argv[] = {logger_path, max_text, console_log, NULL};
    cleanup_close int output = memfd_create("shed-logger", MFD_CLOEXEC);
    if (output < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "memfd_create");
    pid_t pid;
    int status = 0;
    if (container_spawn(argv, console->read_fd, output, output, true, &pid, err) < 0 ||
        container_wait(pid, &status, err) < 0)
        return -1;
    char text[512];
    ssize_t len = pread_full(output, text, sizeof text - 1, 0);
    text[len > 0 ? len : 0] = '\0';
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (status != 0 || end == text || value <= 1) {
        text[strcspn(text, "\n")] = '\0';
        return shed_errf(err, SHED_E_BACKEND_ERROR, "shed-logger failed (exit %d): %s", status,
                         text[0] ? text : "(no message)");
    }
    *logger = (pid_t)value;
    return 0;
}

int container_console_hand_off(struct container_console *console, const char *logger_path,
                               const char *console_log, uint64_t max_bytes, pid_t init_pid,
                               struct shed_err *err)
{
    /* The server's writer goes first: from here on the logger is console.log's only writer. */
    rotating_log_close(&console->log);
    if (set_blocking(console->read_fd, true) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "console pipe");
    pid_t logger = 0;
    if (spawn_logger(console, logger_path, console_log, max_bytes, &logger, err) < 0)
        return -1;
    close(console->read_fd);
    console->read_fd = -1;
    /* Best effort: where this fails the logger stays in the server's cgroup, and only a
     * service manager that kills that whole cgroup would cut the shed's console short. */
    container_cgroup_join(init_pid, logger);
    return 0;
}
