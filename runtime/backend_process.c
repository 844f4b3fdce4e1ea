/* The backend-independent helpers of the process API (backend.h): resizing a process's
 * terminal and relaying a local terminal to it (shed-server exec -t, attach). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "common/io.h"
#include "runtime/backend.h"

int backend_process_resize(struct backend_process *process, const struct backend_winsize *size,
                           struct shed_err *err)
{
    if (process->pty_fd < 0)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "the process has no terminal");
    struct winsize ws = {.ws_row = size->rows,
                         .ws_col = size->cols,
                         .ws_xpixel = size->xpixels,
                         .ws_ypixel = size->ypixels};
    if (ioctl(process->pty_fd, TIOCSWINSZ, &ws) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "TIOCSWINSZ");
    return 0;
}

/* Input typed but not yet taken by the pty (its input queue is small and the process may
 * not be reading): kept here, never blocking the output direction. */
struct pending_input {
    char buf[16384];
    size_t len, off;
};

static void copy_window_size(int from_fd, int pty_fd)
{
    struct winsize ws;
    if (ioctl(from_fd, TIOCGWINSZ, &ws) == 0)
        ioctl(pty_fd, TIOCSWINSZ, &ws);
}

/* SIGWINCH: the local size again; anything else: to the process. */
static void handle_signals(struct backend_process *process, int signal_fd, int in_fd)
{
    struct signalfd_siginfo info;
    bool resized = false;
    while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
        struct shed_err ignored = {0};
        if (info.ssi_signo == SIGWINCH)
            resized = true;
        else
            backend_process_signal(process, (int)info.ssi_signo, &ignored);
    }
    if (resized)
        copy_window_size(in_fd, process->pty_fd);
}

/* Output of the pty to out_fd: 1 more may come, 0 the pty is closed (EIO: no slave left),
 * -1 when out_fd fails. */
static int pump_output(int pty_fd, int out_fd)
{
    char buf[16384];
    ssize_t got = TEMP_FAILURE_RETRY(read(pty_fd, buf, sizeof buf));
    if (got < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : 0;
    if (got == 0)
        return 0;
    return write_all(out_fd, buf, (size_t)got) < 0 ? -1 : 1;
}

/* in_fd is readable: takes what it has (only when nothing is pending). */
static void read_input(struct pending_input *input, int in_fd, bool *in_open)
{
    ssize_t got = TEMP_FAILURE_RETRY(read(in_fd, input->buf, sizeof input->buf));
    if (got <= 0) {
        *in_open = false; /* a pty has no half-close: the process sees no EOF */
        return;
    }
    input->len = (size_t)got;
    input->off = 0;
}

/* Writes what the (non-blocking) pty takes of the pending input. */
static void write_input(struct pending_input *input, int pty_fd)
{
    while (input->off < input->len) {
        ssize_t put =
            TEMP_FAILURE_RETRY(write(pty_fd, input->buf + input->off, input->len - input->off));
        if (put <= 0)
            return; /* EAGAIN: the rest when the pty takes more */
        input->off += (size_t)put;
    }
}

static int relay(struct backend_process *process, int in_fd, int out_fd, int signal_fd,
                 struct backend_exit *exit, struct shed_err *err);

int backend_process_relay_tty(struct backend_process *process, int in_fd, int out_fd, int signal_fd,
                              struct backend_exit *exit, struct shed_err *err)
{
    /* A local terminal goes raw: every key (^C, the tmux prefix) is the shed's to read, and
     * the shed's terminal does the echoing. Restored however the relay ends. */
    struct termios saved;
    bool raw = in_fd >= 0 && tcgetattr(in_fd, &saved) == 0;
    if (raw) {
        struct termios mode = saved;
        cfmakeraw(&mode);
        raw = tcsetattr(in_fd, TCSADRAIN, &mode) == 0;
    }
    int rc = relay(process, in_fd, out_fd, signal_fd, exit, err);
    if (raw)
        tcsetattr(in_fd, TCSADRAIN, &saved);
    return rc;
}

static int relay(struct backend_process *process, int in_fd, int out_fd, int signal_fd,
                 struct backend_exit *exit, struct shed_err *err)
{
    int pty_fd = process->pty_fd;
    if (pty_fd < 0)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "the process has no terminal");
    int flags = fcntl(pty_fd, F_GETFL);
    if (flags < 0 || fcntl(pty_fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "fcntl on the pty");
    if (in_fd >= 0)
        copy_window_size(in_fd, pty_fd); /* fails harmlessly when in_fd is no terminal */
    struct pending_input input = {.len = 0};
    bool in_open = in_fd >= 0, pty_open = true, exited = false;
    while (!exited || pty_open) {
        struct pollfd fds[4] = {
            {.fd = pty_open ? pty_fd : -1, .events = POLLIN},
            {.fd = in_open && input.off == input.len ? in_fd : -1, .events = POLLIN},
            {.fd = exited ? -1 : process->event_fd, .events = POLLIN},
            {.fd = signal_fd, .events = POLLIN},
        };
        if (pty_open && input.off < input.len)
            fds[0].events |= POLLOUT;
        /* Once the process ended, what it printed is drained without waiting for more. */
        if (TEMP_FAILURE_RETRY(poll(fds, 4, exited ? 0 : -1)) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "poll");
        if (exited && fds[0].revents == 0)
            break;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc = pump_output(pty_fd, out_fd);
            if (rc < 0)
                return shed_errf_errno(err, SHED_E_IO, errno, "write to the terminal");
            pty_open = rc > 0;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
            read_input(&input, in_fd, &in_open);
        if (pty_open)
            write_input(&input, pty_fd);
        if (fds[3].revents & POLLIN)
            handle_signals(process, signal_fd, in_fd);
        if (fds[2].revents) {
            int rc = backend_process_wait(process, 0, exit, err);
            if (rc < 0)
                return -1;
            exited = rc == 0;
        }
    }
    if (!exited && backend_process_wait(process, -1, exit, err) < 0)
        return -1;
    return 0;
}
