/* The host side of a container shed's agent (runtime/agent_protocol.h): the socket the
 * shed's init serves on, and processes and listening sockets in the shed through it.
 *
 * Every exchange has a deadline (a wedged shed must not hang a server thread): the request
 * is written and the answer read with poll() on a non-blocking socket. The socket is
 * reached through /proc/self/fd/<bundle dir>/agent.sock, so a long instance_dir never
 * overflows sun_path. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_agent.h"
#include "runtime/agent_protocol.h"

#define DEFAULT_SPAWN_TIMEOUT_MS 10000

const char *const container_default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm-256color",
    "HOME=/root",
    "LANG=C.UTF-8",
    NULL,
};

/* ---- time ---------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* deadline -1: none. */
static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : (int)left;
}

/* 1 ready, 0 deadline passed, -1 error. */
static int wait_ready(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc = TEMP_FAILURE_RETRY(poll(&pfd, 1, remaining_ms(deadline)));
    return rc < 0 ? -1 : rc > 0;
}

/* ---- the socket ---------------------------------------------------------------------- */

/* "/proc/self/fd/<fd of the bundle dir>/agent.sock" for a bundle opened as *dir_fd. */
static int socket_address(const struct container_paths *paths, int *dir_fd,
                          struct sockaddr_un *addr, struct shed_err *err)
{
    *dir_fd = open(paths->bundle, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", paths->bundle);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    snprintf(addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/" AGENT_SOCKET_NAME, *dir_fd);
    return 0;
}

int container_agent_socket_create(const struct container_paths *paths, int *listen_fd,
                                  struct shed_err *err)
{
    cleanup_close int dir_fd = -1;
    struct sockaddr_un addr;
    if (socket_address(paths, &dir_fd, &addr, err) < 0)
        return -1;
    if (unlinkat(dir_fd, AGENT_SOCKET_NAME, 0) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unlink %s/%s", paths->bundle,
                               AGENT_SOCKET_NAME);
    cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "socket");
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        fchmodat(dir_fd, AGENT_SOCKET_NAME, 0600, 0) < 0 || listen(fd, 128) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "listen on %s/%s", paths->bundle,
                               AGENT_SOCKET_NAME);
    *listen_fd = steal_fd(&fd);
    return 0;
}

bool container_agent_present(const struct container_paths *paths)
{
    cleanup_free char *path = fs_path_join(paths->bundle, AGENT_SOCKET_NAME);
    struct stat st;
    return path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* A non-blocking connection to the agent. A full backlog (EAGAIN) is retried until the
 * deadline; nothing listening (ECONNREFUSED: the shed's init is gone) is SHED_NOT_RUNNING. */
static int agent_connect(const struct container_paths *paths, int64_t deadline, int *conn,
                         struct shed_err *err)
{
    cleanup_close int dir_fd = -1;
    struct sockaddr_un addr;
    if (socket_address(paths, &dir_fd, &addr, err) < 0)
        return -1;
    cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "socket");
    while (TEMP_FAILURE_RETRY(connect(fd, (struct sockaddr *)&addr, sizeof addr)) < 0) {
        if (errno == ECONNREFUSED || errno == ENOENT)
            return shed_errf_errno(err, SHED_E_SHED_NOT_RUNNING, errno,
                                   "the shed's agent does not answer");
        if (errno != EAGAIN || remaining_ms(deadline) == 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                                   "cannot connect to the shed's agent");
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    *conn = steal_fd(&fd);
    return 0;
}

/* ---- frames -------------------------------------------------------------------------- */

static void put_fds(struct msghdr *msg, void *control, size_t control_size, const int *fds,
                    size_t nfds)
{
    memset(control, 0, control_size);
    msg->msg_control = control;
    msg->msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(cmsg), fds, nfds * sizeof(int));
}

/* Sends a finished frame, the fds with its first byte. */
static int send_frame(int conn, struct agent_writer *w, const int *fds, size_t nfds,
                      int64_t deadline, struct shed_err *err)
{
    if (!agent_frame_finish(w))
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "request too large for the shed's agent (at most %u bytes)",
                         AGENT_FRAME_MAX);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
    } control;
    size_t off = 0;
    while (off < w->len) {
        struct iovec iov = {.iov_base = w->data + off, .iov_len = w->len - off};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (off == 0 && nfds > 0)
            put_fds(&msg, control.buf, sizeof control.buf, fds, nfds);
        ssize_t sent = TEMP_FAILURE_RETRY(sendmsg(conn, &msg, MSG_NOSIGNAL));
        if (sent > 0) {
            off += (size_t)sent;
            continue;
        }
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                                   "cannot write to the shed's agent");
        int ready = wait_ready(conn, POLLOUT, deadline);
        if (ready <= 0)
            return shed_errf(err, SHED_E_BACKEND_ERROR, "the shed's agent does not take requests");
    }
    return 0;
}

/* Reads exactly len bytes (the first chunk through recvmsg, for an fd); *fd_out gets a
 * passed fd or stays -1. 0, or -1 (EOF before len: SHED_NOT_RUNNING). */
static int recv_exact(int conn, void *buf, size_t len, int *fd_out, int64_t deadline,
                      struct shed_err *err)
{
    size_t got = 0;
    while (got < len) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = {.iov_base = (char *)buf + got, .iov_len = len - got};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        if (fd_out != NULL) {
            msg.msg_control = control.buf;
            msg.msg_controllen = sizeof control.buf;
        }
        ssize_t n = TEMP_FAILURE_RETRY(recvmsg(conn, &msg, MSG_CMSG_CLOEXEC));
        if (n > 0) {
            for (struct cmsghdr *c = fd_out ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
                 c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                    c->cmsg_len == CMSG_LEN(sizeof(int)) && *fd_out < 0)
                    memcpy(fd_out, CMSG_DATA(c), sizeof(int));
            }
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            return shed_errf(err, SHED_E_SHED_NOT_RUNNING,
                             "the shed's agent closed the connection");
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                                   "cannot read from the shed's agent");
        int ready = wait_ready(conn, POLLIN, deadline);
        if (ready <= 0)
            return shed_errf(err, SHED_E_BACKEND_ERROR,
                             "the shed's agent did not answer in time (is the shed wedged?)");
    }
    return 0;
}

/* One answer frame: *type, *payload (malloc'd, *len bytes), *fd_out (-1 when none). */
static int recv_frame(int conn, int64_t deadline, uint32_t *type, unsigned char **payload,
                      uint32_t *len, int *fd_out, struct shed_err *err)
{
    unsigned char header[AGENT_HEADER_SIZE];
    *fd_out = -1;
    *payload = NULL;
    if (recv_exact(conn, header, sizeof header, fd_out, deadline, err) < 0)
        return -1;
    agent_header_parse(header, len, type);
    if (*len > AGENT_FRAME_MAX || (*payload = malloc(*len ? *len : 1)) == NULL) {
        if (*fd_out >= 0)
            close(*fd_out);
        *fd_out = -1;
        return shed_errf(err, SHED_E_BACKEND_ERROR, "malformed answer from the shed's agent");
    }
    if (recv_exact(conn, *payload, *len, NULL, deadline, err) < 0) {
        free(*payload);
        *payload = NULL;
        if (*fd_out >= 0)
            close(*fd_out);
        *fd_out = -1;
        return -1;
    }
    return 0;
}

/* An ERROR frame as err: ENOENT of an exec is SHED_NOT_FOUND ("no such command"). */
static int agent_error(const unsigned char *payload, uint32_t len, struct shed_err *err)
{
    struct agent_reader r = {.data = payload, .len = len};
    uint32_t errnum = agent_get_u32(&r);
    cleanup_free char *message = agent_get_string(&r, AGENT_MESSAGE_MAX);
    if (!agent_reader_done(&r))
        return shed_errf(err, SHED_E_BACKEND_ERROR, "malformed error from the shed's agent");
    enum shed_code code = errnum == ENOENT ? SHED_E_NOT_FOUND : SHED_E_BACKEND_ERROR;
    shed_errf(err, code, "in the shed: %s", message);
    err->sys_errno = (int)errnum;
    return -1;
}

/* ---- processes ----------------------------------------------------------------------- */

struct agent_process {
    struct backend_process base; /* first: the ops get this pointer */
    int conn;
    bool exited;
    struct backend_exit exit;
};

static void decode_wait_status(int status, struct backend_exit *exit)
{
    memset(exit, 0, sizeof *exit);
    if (WIFSIGNALED(status)) {
        exit->signaled = true;
        exit->signo = WTERMSIG(status);
        exit->core_dumped = WCOREDUMP(status);
    } else {
        exit->code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    }
}

static int agent_process_signal(struct backend_process *base, int signo, struct shed_err *err)
{
    struct agent_process *process = (struct agent_process *)base;
    if (process->exited)
        return 0;
    struct agent_writer w = {0};
    agent_frame_begin(&w, AGENT_FRAME_SIGNAL);
    agent_put_u32(&w, (uint32_t)signo);
    int rc = send_frame(process->conn, &w, NULL, 0, deadline_after(1000), err);
    agent_writer_free(&w);
    return rc;
}

static int agent_process_wait(struct backend_process *base, int timeout_ms,
                              struct backend_exit *exit, struct shed_err *err)
{
    struct agent_process *process = (struct agent_process *)base;
    if (!process->exited) {
        int64_t deadline = deadline_after(timeout_ms);
        int ready = wait_ready(process->conn, POLLIN, deadline);
        if (ready < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "poll");
        if (ready == 0)
            return 1;
        uint32_t type = 0, len = 0;
        cleanup_free unsigned char *payload = NULL;
        int fd = -1;
        /* The whole frame follows its first byte at once: a short deadline is plenty. */
        if (recv_frame(process->conn, deadline_after(5000), &type, &payload, &len, &fd, err) < 0)
            return shed_err_prefix(err, "process %ld", base->pid);
        if (fd >= 0)
            close(fd);
        struct agent_reader r = {.data = payload, .len = len};
        uint32_t status = agent_get_u32(&r);
        if (type != AGENT_FRAME_EXITED || !agent_reader_done(&r))
            return shed_errf(err, SHED_E_BACKEND_ERROR, "unexpected frame %u from the shed's agent",
                             type);
        decode_wait_status((int)status, &process->exit);
        process->exited = true;
    }
    *exit = process->exit;
    return 0;
}

static void agent_process_free(struct backend_process *base)
{
    struct agent_process *process = (struct agent_process *)base;
    /* Closing the connection is the hang-up: the agent signals what still runs. */
    close(process->conn);
    if (base->pty_fd >= 0)
        close(base->pty_fd);
    free(process);
}

static const struct backend_process_ops agent_process_ops = {
    .signal = agent_process_signal,
    .wait = agent_process_wait,
    .free = agent_process_free,
};

static void put_strings(struct agent_writer *w, const char *const *strings)
{
    uint32_t count = 0;
    while (strings != NULL && strings[count] != NULL)
        count++;
    agent_put_u32(w, count);
    for (uint32_t i = 0; i < count; i++)
        agent_put_string(w, strings[i]);
}

/* The SPAWN frame and the stdio fds it carries (*nfds of them in fds). */
static void build_spawn(const struct backend_spawn_request *request, struct agent_writer *w,
                        int fds[AGENT_FDS_MAX], size_t *nfds)
{
    uint32_t flags =
        (request->tty ? AGENT_SPAWN_TTY : 0) | (request->login ? AGENT_SPAWN_LOGIN : 0);
    *nfds = 0;
    if (!request->tty) {
        const int stdio[3] = {request->stdin_fd, request->stdout_fd, request->stderr_fd};
        for (int i = 0; i < 3; i++) {
            if (stdio[i] >= 0) {
                flags |= AGENT_SPAWN_HAS_STDIN << i;
                fds[(*nfds)++] = stdio[i];
            }
        }
    }
    agent_frame_begin(w, AGENT_FRAME_SPAWN);
    agent_put_u32(w, AGENT_PROTOCOL_VERSION);
    agent_put_u32(w, flags);
    agent_put_u16(w, request->winsize.rows);
    agent_put_u16(w, request->winsize.cols);
    agent_put_u16(w, request->winsize.xpixels);
    agent_put_u16(w, request->winsize.ypixels);
    agent_put_string(w, request->cwd);
    const char *const *env = request->env != NULL ? request->env : container_default_env;
    if (request->login) {
        const char *const command[] = {request->command, NULL};
        put_strings(w, request->command != NULL ? command : NULL);
    } else {
        put_strings(w, request->argv);
    }
    put_strings(w, env);
}

/* Reads STARTED (or ERROR) into process. */
static int read_started(struct agent_process *process, int64_t deadline, struct shed_err *err)
{
    uint32_t type = 0, len = 0;
    cleanup_free unsigned char *payload = NULL;
    int fd = -1;
    if (recv_frame(process->conn, deadline, &type, &payload, &len, &fd, err) < 0)
        return -1;
    if (type == AGENT_FRAME_ERROR) {
        if (fd >= 0)
            close(fd);
        return agent_error(payload, len, err);
    }
    struct agent_reader r = {.data = payload, .len = len};
    uint32_t pid = agent_get_u32(&r);
    if (type != AGENT_FRAME_STARTED || !agent_reader_done(&r)) {
        if (fd >= 0)
            close(fd);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "unexpected frame %u from the shed's agent",
                         type);
    }
    process->base.pid = pid;
    process->base.pty_fd = fd;
    return 0;
}

int container_agent_spawn(const struct container_paths *paths,
                          const struct backend_spawn_request *request, struct backend_process **out,
                          struct shed_err *err)
{
    if (!request->login && (request->argv == NULL || request->argv[0] == NULL))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "no command to run");
    int64_t deadline =
        deadline_after(request->timeout_ms > 0 ? request->timeout_ms : DEFAULT_SPAWN_TIMEOUT_MS);
    struct agent_process *process = calloc(1, sizeof *process);
    if (process == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    process->base = (struct backend_process){.ops = &agent_process_ops, .pty_fd = -1};
    if (agent_connect(paths, deadline, &process->conn, err) < 0) {
        free(process);
        return -1;
    }
    process->base.event_fd = process->conn;
    struct agent_writer w = {0};
    int fds[AGENT_FDS_MAX];
    size_t nfds = 0;
    build_spawn(request, &w, fds, &nfds);
    int rc = send_frame(process->conn, &w, fds, nfds, deadline, err);
    agent_writer_free(&w);
    if (rc == 0)
        rc = read_started(process, deadline, err);
    if (rc < 0) {
        agent_process_free(&process->base);
        return -1;
    }
    if (request->tty && process->base.pty_fd < 0) {
        agent_process_free(&process->base);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "the shed's agent sent no terminal");
    }
    *out = &process->base;
    return 0;
}

/* ---- listening sockets ---------------------------------------------------------------- */

struct agent_listener {
    struct backend_listener base; /* first */
    int conn;
};

static void agent_listener_close(struct backend_listener *base)
{
    struct agent_listener *listener = (struct agent_listener *)base;
    close(base->fd);
    close(listener->conn); /* the agent removes the path */
    free(listener);
}

int container_agent_listen(const struct container_paths *paths, struct backend_listener **out,
                           struct shed_err *err)
{
    int64_t deadline = deadline_after(DEFAULT_SPAWN_TIMEOUT_MS);
    cleanup_close int conn = -1;
    if (agent_connect(paths, deadline, &conn, err) < 0)
        return -1;
    struct agent_writer w = {0};
    agent_frame_begin(&w, AGENT_FRAME_LISTEN);
    agent_put_u32(&w, AGENT_PROTOCOL_VERSION);
    int rc = send_frame(conn, &w, NULL, 0, deadline, err);
    agent_writer_free(&w);
    uint32_t type = 0, len = 0;
    cleanup_free unsigned char *payload = NULL;
    cleanup_close int fd = -1;
    if (rc < 0 || recv_frame(conn, deadline, &type, &payload, &len, &fd, err) < 0)
        return -1;
    if (type == AGENT_FRAME_ERROR)
        return agent_error(payload, len, err);
    struct agent_reader r = {.data = payload, .len = len};
    cleanup_free char *path = agent_get_string(&r, AGENT_PATH_MAX - 1);
    if (type != AGENT_FRAME_LISTENING || !agent_reader_done(&r) || fd < 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "unexpected frame %u from the shed's agent",
                         type);
    struct agent_listener *listener = calloc(1, sizeof *listener);
    if (listener == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    listener->base.fd = steal_fd(&fd);
    listener->base.close = agent_listener_close;
    snprintf(listener->base.path, sizeof listener->base.path, "%s", path);
    listener->conn = steal_fd(&conn);
    *out = &listener->base;
    return 0;
}

/* ---- exec ---------------------------------------------------------------------------- */

static void report_not_found(int stderr_fd, const char *command)
{
    if (stderr_fd < 0)
        return;
    char line[512];
    int len = snprintf(line, sizeof line, "shed: %.400s: command not found\n", command);
    if (len > 0 && write_all(stderr_fd, line, (size_t)len) < 0) {
        /* nothing more to say: the exit status tells */
    }
}

int container_agent_exec(const struct container_paths *paths,
                         const struct backend_exec_request *request, int *exit_status,
                         struct shed_err *err)
{
    struct backend_spawn_request spawn = {
        .argv = request->argv,
        .tty = request->tty,
        .stdin_fd = request->stdin_fd,
        .stdout_fd = request->stdout_fd,
        .stderr_fd = request->stderr_fd,
    };
    struct backend_process *process = NULL;
    if (container_agent_spawn(paths, &spawn, &process, err) < 0) {
        if (err->code != SHED_E_NOT_FOUND)
            return -1;
        report_not_found(request->stderr_fd, request->argv[0]);
        *exit_status = BACKEND_EXIT_NOT_FOUND;
        shed_err_clear(err);
        return 0;
    }
    struct backend_exit exit;
    int rc = request->tty ? backend_process_relay_tty(process, request->stdin_fd,
                                                      request->stdout_fd, -1, &exit, err)
                          : backend_process_wait(process, -1, &exit, err);
    backend_process_free(process);
    if (rc < 0)
        return -1;
    *exit_status = backend_exit_status(&exit);
    return 0;
}
