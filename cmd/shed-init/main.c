/* shed-init: PID 1 of a shed (container backend), and the shed's exec agent.
 *
 * A PID namespace ends when its PID 1 exits, so a shed needs a PID 1 that stays while no
 * session runs. PID 1 also inherits every orphan in the namespace and must reap it, or
 * zombies pile up (tmux servers daemonise, shells leave background jobs behind).
 *
 * The agent: when the backend passes a listening socket as fd 3 (`runc run --preserve-fds
 * 1`), shed-init serves the protocol of runtime/agent_protocol.h on it: each connection
 * starts one process in the shed (with pipes or a pty of the shed's own devpts) or makes one
 * listening socket inside the shed, and reports the process's exit. Without fd 3 (a shed
 * started by an older server) it is only PID 1.
 *
 * One thread, one poll loop over the listening socket, the connections, the exec-result
 * pipes of processes being started and a signalfd. Every signal of interest is blocked and
 * read from the signalfd: no handler, no async-signal-safety questions. Blocking matters for
 * another reason too: the kernel drops a signal sent to a namespace's PID 1 when its
 * disposition is the default, but a blocked signal is always queued.
 *
 * SIGTERM (or SIGINT, SIGHUP): forwarded to every other process in the namespace
 * (kill(-1)), then we keep reaping until they are gone or a grace period passes, and exit
 * 0; the kernel SIGKILLs whatever is left when PID 1 exits.
 *
 * Built static (glibc is fine) so it runs in any image, mounted read-only into the shed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "runtime/agent_protocol.h"

#define SHUTDOWN_GRACE_SECONDS 5
#define AGENT_LISTEN_FD 3
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

/* ---- time ---------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connections --------------------------------------------------------------------- */

enum conn_state {
    CONN_FREE = 0,
    CONN_REQUEST,   /* reading the SPAWN or LISTEN frame */
    CONN_SPAWNING,  /* forked; waiting for the exec result on exec_pipe */
    CONN_RUNNING,   /* STARTED sent; the process runs */
    CONN_EXITED,    /* EXITED sent; waiting for the host to close */
    CONN_LISTENING, /* LISTENING sent; the socket path lives until the host closes */
};

struct conn {
    enum conn_state state;
    int fd;
    /* the frame being read */
    unsigned char header[AGENT_HEADER_SIZE];
    size_t header_got;
    uint32_t payload_len, type;
    unsigned char *payload;
    size_t payload_got;
    int fds[AGENT_FDS_MAX];
    unsigned nfds;
    int64_t deadline; /* CONN_REQUEST: when the request must have arrived */
    /* the process */
    pid_t pid;
    bool tty;
    int master;    /* CONN_SPAWNING with a tty: sent with STARTED */
    int exec_pipe; /* CONN_SPAWNING: EOF = exec'd, 4 bytes = errno of a failed exec */
    bool reaped;   /* reaped while CONN_SPAWNING */
    int wait_status;
    /* the LISTEN socket */
    char listen_dir[64];
    char listen_path[AGENT_PATH_MAX];
};

/* A process whose connection the host closed while it ran: hung up, killed at kill_at. */
struct hangup {
    pid_t pid; /* 0: free */
    int64_t kill_at;
};

static struct conn conns[AGENT_CONNECTIONS_MAX];
static struct hangup hangups[AGENT_CONNECTIONS_MAX];

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void reset_frame(struct conn *c)
{
    free(c->payload);
    c->payload = NULL;
    c->header_got = c->payload_got = 0;
    c->payload_len = c->type = 0;
    for (unsigned i = 0; i < c->nfds; i++)
        close_fd(&c->fds[i]);
    c->nfds = 0;
}

static void remember_hangup(pid_t pid)
{
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++) {
        if (hangups[i].pid == 0) {
            hangups[i] = (struct hangup){.pid = pid, .kill_at = now_ms() + AGENT_HANGUP_GRACE_MS};
            return;
        }
    }
    kill(-pid, SIGKILL); /* no room to wait: at once */
}

/* The host is gone: a running process is hung up (its process group: it leads one). */
static void close_conn(struct conn *c)
{
    if ((c->state == CONN_RUNNING || c->state == CONN_SPAWNING) && c->pid > 0 && !c->reaped) {
        kill(-c->pid, SIGHUP);
        kill(-c->pid, SIGCONT);
        remember_hangup(c->pid);
    }
    if (c->listen_path[0] != '\0')
        unlink(c->listen_path);
    if (c->listen_dir[0] != '\0')
        rmdir(c->listen_dir);
    reset_frame(c);
    close_fd(&c->fd);
    close_fd(&c->master);
    close_fd(&c->exec_pipe);
    memset(c, 0, sizeof *c);
    c->fd = c->master = c->exec_pipe = -1;
}

/* Sends a frame (and at most one fd); the host reads every frame it asked for, and these are
 * small, so a frame that does not fit the socket at once means the host is broken. */
static bool send_frame(struct conn *c, struct agent_writer *w, int fd_to_pass)
{
    if (!agent_frame_finish(w))
        return false;
    struct iovec iov = {.iov_base = w->data, .iov_len = w->len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd_to_pass >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd_to_pass, sizeof(int));
    }
    ssize_t sent = TEMP_FAILURE_RETRY(sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL));
    return sent == (ssize_t)w->len;
}

static void send_error(struct conn *c, int errnum, const char *what)
{
    struct agent_writer w = {0};
    char message[AGENT_MESSAGE_MAX];
    snprintf(message, sizeof message, "%s: %s", what, strerror(errnum));
    agent_frame_begin(&w, AGENT_FRAME_ERROR);
    agent_put_u32(&w, (uint32_t)errnum);
    agent_put_string(&w, message);
    send_frame(c, &w, -1);
    agent_writer_free(&w);
}

static bool send_u32_frame(struct conn *c, enum agent_frame_type type, uint32_t value, int fd)
{
    struct agent_writer w = {0};
    agent_frame_begin(&w, type);
    agent_put_u32(&w, value);
    bool ok = send_frame(c, &w, fd);
    agent_writer_free(&w);
    return ok;
}

/* ---- the shed's root account ---------------------------------------------------------- */

struct account {
    char shell[PATH_MAX];
    char home[PATH_MAX];
};

/* uid 0's shell and home from the shed's /etc/passwd (/bin/sh and /root without one). */
static void read_root_account(struct account *account)
{
    snprintf(account->shell, sizeof account->shell, "/bin/sh");
    snprintf(account->home, sizeof account->home, "/root");
    FILE *passwd = fopen("/etc/passwd", "re");
    if (passwd == NULL)
        return;
    char line[4096];
    while (fgets(line, sizeof line, passwd) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *fields[7];
        char *rest = line;
        int n = 0;
        for (; n < 7 && rest != NULL; n++)
            fields[n] = strsep(&rest, ":");
        if (n < 7 || strcmp(fields[2], "0") != 0)
            continue;
        if (fields[6][0] == '/')
            snprintf(account->shell, sizeof account->shell, "%s", fields[6]);
        if (fields[5][0] == '/')
            snprintf(account->home, sizeof account->home, "%s", fields[5]);
        break;
    }
    fclose(passwd);
}

/* ---- starting a process --------------------------------------------------------------- */

struct spawn_request {
    uint32_t flags;
    struct winsize winsize;
    char *cwd;
    char **argv; /* NULL-terminated */
    uint32_t argc;
    char **env; /* NULL-terminated, room for 5 more entries (login defaults) */
    uint32_t envc;
};

static void free_strings(char **strings, uint32_t count)
{
    if (strings == NULL)
        return;
    for (uint32_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

static void spawn_request_free(struct spawn_request *request)
{
    free(request->cwd);
    free_strings(request->argv, request->argc);
    free_strings(request->env, request->envc);
}

/* count strings into a NULL-terminated array with extra free slots; total counts bytes. */
static char **read_strings(struct agent_reader *r, uint32_t count, uint32_t extra, size_t *total)
{
    char **strings = calloc((size_t)count + extra + 1, sizeof *strings);
    if (strings == NULL) {
        r->failed = true;
        return NULL;
    }
    for (uint32_t i = 0; i < count && !r->failed; i++) {
        strings[i] = agent_get_string(r, AGENT_ARGS_BYTES_MAX);
        if (strings[i] != NULL)
            *total += strlen(strings[i]) + 1;
    }
    return strings;
}

static bool parse_spawn(const struct conn *c, struct spawn_request *request)
{
    struct agent_reader r = {.data = c->payload, .len = c->payload_len};
    memset(request, 0, sizeof *request);
    if (agent_get_u32(&r) != AGENT_PROTOCOL_VERSION)
        return false;
    request->flags = agent_get_u32(&r);
    request->winsize.ws_row = agent_get_u16(&r);
    request->winsize.ws_col = agent_get_u16(&r);
    request->winsize.ws_xpixel = agent_get_u16(&r);
    request->winsize.ws_ypixel = agent_get_u16(&r);
    request->cwd = agent_get_string(&r, PATH_MAX - 1);
    size_t total = request->cwd != NULL ? strlen(request->cwd) : 0;
    request->argc = agent_get_u32(&r);
    if (r.failed || request->argc > AGENT_ARGV_MAX)
        return false;
    request->argv = read_strings(&r, request->argc, 0, &total);
    request->envc = agent_get_u32(&r);
    if (r.failed || request->envc > AGENT_ENV_MAX)
        return false;
    request->env = read_strings(&r, request->envc, 5, &total);
    if (!agent_reader_done(&r) || total > AGENT_ARGS_BYTES_MAX ||
        (request->flags & ~AGENT_SPAWN_KNOWN_FLAGS) != 0)
        return false;
    bool login = request->flags & AGENT_SPAWN_LOGIN;
    return login ? request->argc <= 1 : request->argc >= 1;
}

/* The number of stdio fds a request says it carries. */
static unsigned expected_fds(uint32_t flags)
{
    if (flags & AGENT_SPAWN_TTY)
        return 0;
    unsigned n = 0;
    for (uint32_t bit = AGENT_SPAWN_HAS_STDIN; bit <= AGENT_SPAWN_HAS_STDERR; bit <<= 1)
        n += (flags & bit) != 0;
    return n;
}

static bool env_has(char **env, const char *name)
{
    size_t len = strlen(name);
    for (char **entry = env; *entry != NULL; entry++)
        if (strncmp(*entry, name, len) == 0 && (*entry)[len] == '=')
            return true;
    return false;
}

/* In the child, before exec: malloc is fine (fork of a single-threaded process). */
static void env_default(char **env, const char *name, const char *value)
{
    if (env_has(env, name))
        return;
    size_t n = 0;
    while (env[n] != NULL)
        n++;
    size_t size = strlen(name) + strlen(value) + 2;
    env[n] = malloc(size);
    if (env[n] != NULL)
        snprintf(env[n], size, "%s=%s", name, value);
    env[n + 1] = NULL;
}

static void setup_stdio(const struct spawn_request *request, const int *fds, int slave)
{
    if (request->flags & AGENT_SPAWN_TTY) {
        ioctl(slave, TIOCSCTTY, 0);
        for (int target = 0; target < 3; target++)
            dup2(slave, target);
        return;
    }
    unsigned next = 0;
    for (int target = 0; target < 3; target++) {
        uint32_t bit = AGENT_SPAWN_HAS_STDIN << target;
        if (request->flags & bit) {
            dup2(fds[next++], target);
        } else {
            int null = open("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
            if (null >= 0 && null != target) {
                dup2(null, target);
                close(null);
            }
        }
    }
}

/* The child: never returns. The exec result goes to the agent through exec_pipe (close on
 * exec: EOF means the command runs; 4 bytes are the errno of a failed exec). */
static void __attribute__((noreturn))
run_child(struct spawn_request *request, const int *fds, int slave, int exec_pipe)
{
    sigset_t none;
    sigemptyset(&none);
    for (int signo = 1; signo < NSIG; signo++)
        signal(signo, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    setup_stdio(request, fds, slave);
    /* Every other fd (the agent's socket, the connections, the signalfd) closes on exec. */
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    struct account account;
    bool login = request->flags & AGENT_SPAWN_LOGIN;
    char *argv0 = request->argv[0];
    char *shell_argv[4] = {NULL};
    char dash_name[PATH_MAX + 1];
    if (login) {
        read_root_account(&account);
        env_default(request->env, "HOME", account.home);
        env_default(request->env, "SHELL", account.shell);
        env_default(request->env, "USER", "root");
        env_default(request->env, "LOGNAME", "root");
        env_default(request->env, "PATH", DEFAULT_PATH);
        const char *base = strrchr(account.shell, '/') + 1;
        if (request->argc == 0) {
            snprintf(dash_name, sizeof dash_name, "-%s", base); /* a login shell */
            shell_argv[0] = dash_name;
        } else {
            shell_argv[0] = (char *)base;
            shell_argv[1] = "-c";
            shell_argv[2] = request->argv[0];
        }
        argv0 = account.shell;
    }
    const char *cwd = request->cwd[0] != '\0' ? request->cwd : login ? account.home : "/";
    if (chdir(cwd) < 0 && chdir("/") < 0) {
        /* nothing better: the cwd stays where shed-init runs */
    }
    environ = request->env;
    execvp(argv0, login ? shell_argv : request->argv);
    int errnum = errno;
    if (write(exec_pipe, &errnum, sizeof errnum) < 0) {
        /* the agent then reports it started; the exit status 127 still tells */
    }
    _exit(127);
}

/* A new pty of the shed's devpts; *slave is opened through the master (no path lookup). */
static int open_pty(const struct winsize *winsize, int *master, int *slave)
{
    *master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0)
        return -1;
    int unlock = 0;
    if (ioctl(*master, TIOCSPTLCK, &unlock) < 0 ||
        (*slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
        close_fd(master);
        return -1;
    }
    if (winsize->ws_row > 0 && winsize->ws_col > 0)
        ioctl(*master, TIOCSWINSZ, winsize);
    return 0;
}

static void handle_spawn(struct conn *c)
{
    struct spawn_request request;
    if (!parse_spawn(c, &request) || c->nfds != expected_fds(request.flags)) {
        send_error(c, EPROTO, "malformed spawn request");
        spawn_request_free(&request);
        close_conn(c);
        return;
    }
    int master = -1, slave = -1, pipe_fds[2] = {-1, -1};
    bool tty = request.flags & AGENT_SPAWN_TTY;
    if ((tty && open_pty(&request.winsize, &master, &slave) < 0) ||
        pipe2(pipe_fds, O_CLOEXEC) < 0) {
        send_error(c, errno, tty ? "cannot open a pty" : "pipe");
        close_fd(&master);
        close_fd(&slave);
        spawn_request_free(&request);
        close_conn(c);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        run_child(&request, c->fds, slave, pipe_fds[1]);
    int fork_errno = errno;
    close_fd(&slave);
    close_fd(&pipe_fds[1]);
    spawn_request_free(&request);
    reset_frame(c); /* closes the stdio fds: the child has them */
    if (pid < 0) {
        close_fd(&master);
        close_fd(&pipe_fds[0]);
        send_error(c, fork_errno, "fork");
        close_conn(c);
        return;
    }
    c->state = CONN_SPAWNING;
    c->pid = pid;
    c->tty = tty;
    c->master = master;
    c->exec_pipe = pipe_fds[0];
}

/* The exec result arrived (or EOF: the command runs). */
static void handle_exec_result(struct conn *c)
{
    int errnum = 0;
    ssize_t got = TEMP_FAILURE_RETRY(read(c->exec_pipe, &errnum, sizeof errnum));
    close_fd(&c->exec_pipe);
    if (got == (ssize_t)sizeof errnum) {
        /* The child exits 127 by itself and is reaped like any orphan. */
        c->state = CONN_EXITED;
        c->pid = 0;
        send_error(c, errnum, "exec");
        close_conn(c);
        return;
    }
    bool ok = send_u32_frame(c, AGENT_FRAME_STARTED, (uint32_t)c->pid, c->master);
    close_fd(&c->master);
    c->state = CONN_RUNNING;
    if (!ok) {
        close_conn(c);
        return;
    }
    if (c->reaped) {
        c->state = CONN_EXITED;
        if (!send_u32_frame(c, AGENT_FRAME_EXITED, (uint32_t)c->wait_status, -1))
            close_conn(c);
    }
}

/* ---- a listening socket in the shed (agent forwarding) -------------------------------- */

static void handle_listen(struct conn *c)
{
    struct agent_reader r = {.data = c->payload, .len = c->payload_len};
    if (agent_get_u32(&r) != AGENT_PROTOCOL_VERSION || !agent_reader_done(&r) || c->nfds != 0) {
        send_error(c, EPROTO, "malformed listen request");
        close_conn(c);
        return;
    }
    reset_frame(c);
    snprintf(c->listen_dir, sizeof c->listen_dir, "/tmp/shed-agent.XXXXXX");
    if (mkdtemp(c->listen_dir) == NULL) {
        c->listen_dir[0] = '\0';
        send_error(c, errno, "mkdtemp /tmp/shed-agent.XXXXXX");
        close_conn(c);
        return;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", c->listen_dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        send_error(c, errno, "listen");
        close_fd(&fd);
        close_conn(c);
        return;
    }
    snprintf(c->listen_path, sizeof c->listen_path, "%s", addr.sun_path);
    struct agent_writer w = {0};
    agent_frame_begin(&w, AGENT_FRAME_LISTENING);
    agent_put_string(&w, c->listen_path);
    bool ok = send_frame(c, &w, fd);
    agent_writer_free(&w);
    close_fd(&fd);
    c->state = CONN_LISTENING;
    if (!ok)
        close_conn(c);
}

/* ---- reading frames ------------------------------------------------------------------- */

static void take_fds(struct conn *c, struct msghdr *msg, bool *too_many)
{
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL; cmsg = CMSG_NXTHDR(msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
            if (c->nfds < AGENT_FDS_MAX)
                c->fds[c->nfds++] = fd;
            else {
                close(fd);
                *too_many = true;
            }
        }
    }
}

/* Reads what is available. 1: a whole frame is in c; 0: not yet; -1: EOF or broken. */
static int read_frame(struct conn *c)
{
    if (c->header_got < AGENT_HEADER_SIZE) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
        } control;
        struct iovec iov = {.iov_base = c->header + c->header_got,
                            .iov_len = AGENT_HEADER_SIZE - c->header_got};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        ssize_t got = TEMP_FAILURE_RETRY(recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (got == 0)
            return -1;
        bool too_many = false;
        take_fds(c, &msg, &too_many);
        if (too_many || (msg.msg_flags & MSG_CTRUNC))
            return -1;
        c->header_got += (size_t)got;
        if (c->header_got < AGENT_HEADER_SIZE)
            return 0;
        agent_header_parse(c->header, &c->payload_len, &c->type);
        if (c->payload_len > AGENT_FRAME_MAX)
            return -1;
        c->payload = malloc(c->payload_len ? c->payload_len : 1);
        if (c->payload == NULL)
            return -1;
    }
    while (c->payload_got < c->payload_len) {
        ssize_t got = TEMP_FAILURE_RETRY(recv(c->fd, c->payload + c->payload_got,
                                              c->payload_len - c->payload_got, MSG_DONTWAIT));
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (got == 0)
            return -1;
        c->payload_got += (size_t)got;
    }
    return 1;
}

static void handle_signal_frame(struct conn *c)
{
    struct agent_reader r = {.data = c->payload, .len = c->payload_len};
    uint32_t signo = agent_get_u32(&r);
    bool ok = agent_reader_done(&r) && signo > 0 && signo < NSIG;
    reset_frame(c);
    if (!ok) {
        close_conn(c);
        return;
    }
    if (c->state == CONN_RUNNING || c->state == CONN_SPAWNING)
        kill(c->tty ? -c->pid : c->pid, (int)signo);
}

static void handle_conn_input(struct conn *c)
{
    for (;;) {
        int rc = read_frame(c);
        if (rc < 0) {
            close_conn(c);
            return;
        }
        if (rc == 0)
            return;
        if (c->state == CONN_REQUEST && c->type == AGENT_FRAME_SPAWN)
            handle_spawn(c);
        else if (c->state == CONN_REQUEST && c->type == AGENT_FRAME_LISTEN)
            handle_listen(c);
        else if (c->state != CONN_REQUEST && c->state != CONN_LISTENING &&
                 c->type == AGENT_FRAME_SIGNAL)
            handle_signal_frame(c);
        else
            close_conn(c);
        if (c->state == CONN_FREE)
            return;
    }
}

static void accept_conns(int listen_fd)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error: poll tells again */
        struct conn *slot = NULL;
        for (size_t i = 0; i < AGENT_CONNECTIONS_MAX && slot == NULL; i++)
            if (conns[i].state == CONN_FREE)
                slot = &conns[i];
        if (slot == NULL) {
            close(fd);
            continue;
        }
        memset(slot, 0, sizeof *slot);
        slot->state = CONN_REQUEST;
        slot->fd = fd;
        slot->master = slot->exec_pipe = -1;
        slot->deadline = now_ms() + AGENT_REQUEST_TIMEOUT_MS;
    }
}

/* ---- children ------------------------------------------------------------------------- */

static void child_exited(pid_t pid, int status)
{
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++)
        if (hangups[i].pid == pid)
            hangups[i].pid = 0;
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++) {
        struct conn *c = &conns[i];
        if (c->pid != pid || (c->state != CONN_SPAWNING && c->state != CONN_RUNNING))
            continue;
        if (c->state == CONN_SPAWNING) {
            c->reaped = true; /* EXITED follows STARTED once the exec result is read */
            c->wait_status = status;
            return;
        }
        c->state = CONN_EXITED;
        if (!send_u32_frame(c, AGENT_FRAME_EXITED, (uint32_t)status, -1))
            close_conn(c);
        return;
    }
}

/* Reaps every child that has exited. Returns 1 when no child is left, 0 otherwise. */
static int reap_children(void)
{
    for (;;) {
        int status = 0;
        pid_t pid = TEMP_FAILURE_RETRY(waitpid(-1, &status, WNOHANG));
        if (pid == 0)
            return 0;
        if (pid < 0)
            return errno == ECHILD;
        child_exited(pid, status);
    }
}

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigprocmask(SIG_SETMASK, set, NULL);
}

/* Forwards the stop request and reaps until everyone is gone or the grace period ends. */
static void shut_down(const sigset_t *set, int signo)
{
    kill(-1, signo == SIGINT || signo == SIGHUP ? SIGTERM : signo);
    kill(-1, SIGCONT); /* stopped processes cannot act on SIGTERM */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SHUTDOWN_GRACE_SECONDS;
    while (!reap_children()) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec ||
            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return;
        struct timespec tick = {0, 100 * 1000 * 1000};
        sigtimedwait(set, NULL, &tick); /* woken early by SIGCHLD */
    }
}

/* The listening socket the backend passed as fd 3, or -1 when there is none. */
static int agent_listen_fd(void)
{
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (fcntl(AGENT_LISTEN_FD, F_GETFD) < 0 ||
        getsockopt(AGENT_LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting)
        return -1;
    fcntl(AGENT_LISTEN_FD, F_SETFD, FD_CLOEXEC);
    int flags = fcntl(AGENT_LISTEN_FD, F_GETFL);
    fcntl(AGENT_LISTEN_FD, F_SETFL, flags | O_NONBLOCK);
    return AGENT_LISTEN_FD;
}

/* ---- the loop ------------------------------------------------------------------------- */

enum watch_kind { WATCH_SIGNALS, WATCH_LISTEN, WATCH_CONN, WATCH_EXEC_PIPE };

struct watch {
    enum watch_kind kind;
    struct conn *conn;
};

/* The earliest deadline (request timeouts, hangup kills) as a poll timeout. */
static int next_timeout(int64_t now)
{
    int64_t next = -1;
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++) {
        if (conns[i].state == CONN_REQUEST && (next < 0 || conns[i].deadline < next))
            next = conns[i].deadline;
        if (hangups[i].pid != 0 && (next < 0 || hangups[i].kill_at < next))
            next = hangups[i].kill_at;
    }
    if (next < 0)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

static void run_timers(int64_t now)
{
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++) {
        if (conns[i].state == CONN_REQUEST && conns[i].deadline <= now)
            close_conn(&conns[i]);
        if (hangups[i].pid != 0 && hangups[i].kill_at <= now) {
            kill(-hangups[i].pid, SIGKILL);
            hangups[i].pid = 0;
        }
    }
}

/* Returns the signal that asks us to stop. */
static int serve(const sigset_t *set, int signal_fd, int listen_fd)
{
    static struct pollfd pfds[2 + 2 * AGENT_CONNECTIONS_MAX];
    static struct watch watches[2 + 2 * AGENT_CONNECTIONS_MAX];
    for (;;) {
        size_t n = 0;
        pfds[n] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
        watches[n++] = (struct watch){.kind = WATCH_SIGNALS};
        if (listen_fd >= 0) {
            pfds[n] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
            watches[n++] = (struct watch){.kind = WATCH_LISTEN};
        }
        for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++) {
            struct conn *c = &conns[i];
            if (c->state == CONN_FREE)
                continue;
            pfds[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
            watches[n++] = (struct watch){.kind = WATCH_CONN, .conn = c};
            if (c->exec_pipe >= 0) {
                pfds[n] = (struct pollfd){.fd = c->exec_pipe, .events = POLLIN};
                watches[n++] = (struct watch){.kind = WATCH_EXEC_PIPE, .conn = c};
            }
        }
        if (poll(pfds, n, next_timeout(now_ms())) < 0 && errno != EINTR)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (pfds[i].revents == 0)
                continue;
            struct conn *c = watches[i].conn;
            switch (watches[i].kind) {
            case WATCH_SIGNALS: {
                struct signalfd_siginfo info;
                while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
                    if (info.ssi_signo != SIGCHLD)
                        return (int)info.ssi_signo;
                }
                reap_children();
                break;
            }
            case WATCH_LISTEN: accept_conns(listen_fd); break;
            case WATCH_EXEC_PIPE:
                /* the conn may have been closed by an earlier event of this round */
                if (c->state == CONN_SPAWNING && c->exec_pipe == pfds[i].fd)
                    handle_exec_result(c);
                break;
            case WATCH_CONN:
                if (c->state != CONN_FREE && c->fd == pfds[i].fd)
                    handle_conn_input(c);
                break;
            }
        }
        run_timers(now_ms());
    }
    (void)set;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (getpid() != 1)
        fprintf(stderr, "shed-init: warning: not PID 1 (pid %d)\n", (int)getpid());
    sigset_t set;
    block_signals(&set);
    for (size_t i = 0; i < AGENT_CONNECTIONS_MAX; i++)
        conns[i].fd = conns[i].master = conns[i].exec_pipe = -1;
    int listen_fd = agent_listen_fd();
    int signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    int signo;
    if (signal_fd < 0) {
        /* Cannot watch anything but signals: the PID 1 of old. */
        fprintf(stderr, "shed-init: signalfd: %s (no exec agent)\n", strerror(errno));
        if (listen_fd >= 0)
            close(listen_fd);
        for (;;) {
            siginfo_t info;
            signo = sigwaitinfo(&set, &info);
            if (signo == SIGCHLD)
                reap_children();
            else if (signo > 0)
                break;
        }
    } else {
        signo = serve(&set, signal_fd, listen_fd);
    }
    if (listen_fd >= 0)
        close(listen_fd);
    shut_down(&set, signo);
    return 0;
}
