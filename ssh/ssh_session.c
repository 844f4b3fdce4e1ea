/* Session channels: what `ssh host`, `ssh host CMD`, scp, rsync and sftp open.
 *
 * Requests before the process: pty-req (the size; libssh 0.10 does not hand the client's
 * terminal modes to a server, so the pty starts with the shed's defaults), env (TERM, LANG,
 * LC_* only), auth-agent-req. Then one of shell, exec or subsystem sftp: accepted in the
 * callback and run from the loop, which may first start the shed (a line on stderr says so)
 * or report why it cannot (a line on stderr, exit status 1).
 *
 * The process runs in the shed as root, through root's login shell (`$SHELL -c CMD` for
 * exec, a login shell for shell), in its home directory, with the client's accepted
 * variables, SSH_CONNECTION/SSH_CLIENT, and SSH_AUTH_SOCK with agent forwarding. With a pty
 * it gets a terminal of the shed; else three pipes, so stdout and stderr stay apart and EOF
 * on stdin is an EOF. When it exits, its output is sent to the end (a pty: what it holds;
 * pipes: until every writer closed them, as OpenSSH does), then exit-status (or exit-signal),
 * EOF and close. A channel the client closes first hangs the process up. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "ssh_private.h"

#define ENV_VARIABLES_MAX 64
#define ENV_NAME_MAX 64
#define ENV_VALUE_MAX 1024
/* The images' own sftp-server, where Debian/Ubuntu and Fedora/Alpine put it. */
static const char *const sftp_servers[] = {"/usr/lib/openssh/sftp-server",
                                           "/usr/libexec/sftp-server"};
/* ssh.shell: tmux — attach or create session "default"; a shed without tmux gets a login
 * shell and a line saying why. */
#define TMUX_SHELL_COMMAND                                                                         \
    "if command -v tmux >/dev/null 2>&1; then exec tmux new-session -A -s default; else "          \
    "echo 'shed: tmux is not installed in this shed: a login shell instead' >&2; "                 \
    "exec \"${SHELL:-/bin/sh}\" -l; fi"

static struct conn_channel *from(void *userdata)
{
    return userdata;
}

/* ---- requests (callbacks: record only) ------------------------------------------------ */

static int on_pty_request(ssh_session session, ssh_channel channel, const char *term, int cols,
                          int rows, int xpixels, int ypixels, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    if (cc->state != SESSION_IDLE || cc->pty)
        return -1;
    cc->pty = true;
    snprintf(cc->term, sizeof cc->term, "%s", term != NULL ? term : "");
    cc->term[strcspn(cc->term, "\n\r\t =")] = '\0';
    cc->winsize = (struct backend_winsize){(uint16_t)rows, (uint16_t)cols, (uint16_t)xpixels,
                                           (uint16_t)ypixels};
    return 0;
}

static int on_window_change(ssh_session session, ssh_channel channel, int cols, int rows,
                            int xpixels, int ypixels, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    cc->winsize = (struct backend_winsize){(uint16_t)rows, (uint16_t)cols, (uint16_t)xpixels,
                                           (uint16_t)ypixels};
    struct shed_err ignored = {0};
    if (cc->pty && cc->process != NULL)
        backend_process_resize(cc->process, &cc->winsize, &ignored);
    return 0;
}

/* TERM, LANG and LC_* (what Debian's sshd accepts), bounded, printable. */
static bool env_is_accepted(const char *name, const char *value)
{
    if (name == NULL || value == NULL || strlen(name) > ENV_NAME_MAX ||
        strlen(value) > ENV_VALUE_MAX)
        return false;
    if (strcmp(name, "TERM") != 0 && strcmp(name, "LANG") != 0 && strncmp(name, "LC_", 3) != 0)
        return false;
    if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(name))
        return false;
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20)
            return false;
    return true;
}

static int on_env(ssh_session session, ssh_channel channel, const char *name, const char *value,
                  void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    struct shed_err ignored = {0};
    if (cc->state != SESSION_IDLE || !env_is_accepted(name, value) ||
        cc->env.count >= ENV_VARIABLES_MAX)
        return -1;
    return strv_addf(&cc->env, &ignored, "%s=%s", name, value) < 0 ? -1 : 0;
}

static int on_shell(ssh_session session, ssh_channel channel, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    if (cc->state != SESSION_IDLE)
        return -1;
    cc->state = SESSION_PENDING;
    return 0;
}

static int on_exec(ssh_session session, ssh_channel channel, const char *command, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    if (cc->state != SESSION_IDLE || command == NULL || (cc->command = strdup(command)) == NULL)
        return -1;
    cc->state = SESSION_PENDING;
    return 0;
}

/* Whether path is an executable file in the shed (asked through the shed's own /bin/sh). */
static bool shed_has_executable(struct conn *conn, const char *path)
{
    const char *const argv[] = {"/bin/sh", "-c", "[ -x \"$1\" ]", "sh", path, NULL};
    struct backend_spawn_request request = {
        .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .timeout_ms = 10000};
    struct backend_process *process = NULL;
    struct shed_err err = {0};
    struct backend_exit exit;
    bool found = conn->backend->spawn(conn->backend, &conn->inst, &request, &process, &err) == 0 &&
                 backend_process_wait(process, 10000, &exit, &err) == 0 && !exit.signaled &&
                 exit.code == 0;
    backend_process_free(process);
    return found;
}

/* sftp: the image's sftp-server, else a channel failure (the client says the subsystem
 * request failed). A shed that cannot run is reported like for exec. */
static int on_subsystem(ssh_session session, ssh_channel channel, const char *name, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    if (cc->state != SESSION_IDLE || name == NULL || strcmp(name, "sftp") != 0)
        return -1;
    struct shed_err err = {0};
    if (conn_running_shed(cc->conn, NULL, &err) < 0) {
        cc->failure = strdup(err.msg);
        cc->state = SESSION_PENDING;
        return cc->failure != NULL ? 0 : -1;
    }
    for (size_t i = 0; i < sizeof sftp_servers / sizeof sftp_servers[0]; i++) {
        if (shed_has_executable(cc->conn, sftp_servers[i])) {
            cc->command = strdup(sftp_servers[i]);
            cc->subsystem = true;
            cc->state = SESSION_PENDING;
            return cc->command != NULL ? 0 : -1;
        }
    }
    return -1;
}

static void on_agent_request(ssh_session session, ssh_channel channel, void *userdata)
{
    (void)session;
    (void)channel;
    from(userdata)->agent_forwarding = true;
}

/* "INT" -> SIGINT, for the signals RFC 4254 names. */
static int signal_number(const char *name)
{
    static const struct {
        const char *name;
        int signo;
    } signals[] = {{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},   {"HUP", SIGHUP},
                   {"ILL", SIGILL},   {"INT", SIGINT},   {"KILL", SIGKILL}, {"PIPE", SIGPIPE},
                   {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
                   {"USR2", SIGUSR2}};
    for (size_t i = 0; name != NULL && i < sizeof signals / sizeof signals[0]; i++)
        if (strcmp(name, signals[i].name) == 0)
            return signals[i].signo;
    return 0;
}

static void on_signal(ssh_session session, ssh_channel channel, const char *name, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = from(userdata);
    int signo = signal_number(name);
    struct shed_err ignored = {0};
    if (signo != 0 && cc->process != NULL && !cc->exit_known)
        backend_process_signal(cc->process, signo, &ignored);
}

void session_channel_setup(struct conn_channel *cc)
{
    cc->callbacks = (struct ssh_channel_callbacks_struct){
        .userdata = cc,
        .channel_data_function = conn_channel_on_data,
        .channel_eof_function = conn_channel_on_eof,
        .channel_close_function = conn_channel_on_close,
        .channel_signal_function = on_signal,
        .channel_pty_request_function = on_pty_request,
        .channel_shell_request_function = on_shell,
        .channel_auth_agent_req_function = on_agent_request,
        .channel_pty_window_change_function = on_window_change,
        .channel_exec_request_function = on_exec,
        .channel_env_request_function = on_env,
        .channel_subsystem_request_function = on_subsystem,
    };
    ssh_callbacks_init(&cc->callbacks);
    ssh_set_channel_callbacks(cc->stream.channel, &cc->callbacks);
}

/* ---- running the request (from the loop) ---------------------------------------------- */

void session_send_line(struct conn_channel *cc, const char *text)
{
    char line[700];
    int len = snprintf(line, sizeof line, "shed: %s%s", text, cc->pty ? "\r\n" : "\n");
    if (len > 0 && ssh_channel_window_size(cc->stream.channel) >= (uint32_t)len)
        ssh_channel_write_stderr(cc->stream.channel, line, (uint32_t)len);
}

static void note_exit(struct conn_channel *cc, int status)
{
    struct conn *conn = cc->conn;
    if (!conn->log_has_exit) {
        conn->log_exit = status;
        conn->log_has_exit = true;
    }
}

/* The end of the channel: exit status (or signal), EOF, close. */
static void finish(struct conn_channel *cc)
{
    ssh_channel channel = cc->stream.channel;
    if (cc->exit_known && cc->exit.signaled) {
        const char *name = sigabbrev_np(cc->exit.signo);
        ssh_channel_request_send_exit_signal(channel, name != NULL ? name : "KILL",
                                             cc->exit.core_dumped, "", "");
    } else {
        ssh_channel_request_send_exit_status(channel, cc->exit_known ? cc->exit.code : 1);
    }
    note_exit(cc, cc->exit_known ? backend_exit_status(&cc->exit) : 1);
    ssh_channel_send_eof(channel);
    ssh_channel_close(channel);
    cc->state = SESSION_DONE;
    cc->finished = true;
}

static void fail_request(struct conn_channel *cc, const char *message)
{
    session_send_line(cc, message);
    cc->exit_known = false;
    finish(cc);
}

static void remember_command(struct conn_channel *cc)
{
    struct conn *conn = cc->conn;
    if (strcmp(conn->log_command, "-") != 0)
        return;
    const char *what = cc->subsystem ? "sftp" : cc->command != NULL ? cc->command : "(shell)";
    size_t n = 0;
    for (const char *p = what; *p != '\0' && n + 1 < sizeof conn->log_command; p++)
        conn->log_command[n++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '?' : *p;
    conn->log_command[n] = '\0';
}

/* The process's environment: TERM, the accepted client variables, SSH_*. */
static int build_env(struct conn_channel *cc, struct strv *env, struct shed_err *err)
{
    struct conn *conn = cc->conn;
    if (cc->pty && cc->term[0] != '\0' && strv_addf(env, err, "TERM=%s", cc->term) < 0)
        return -1;
    for (size_t i = 0; i < cc->env.count; i++)
        if (!(cc->pty && strncmp(cc->env.items[i], "TERM=", 5) == 0) &&
            strv_add(env, cc->env.items[i], err) < 0)
            return -1;
    char client[64];
    snprintf(client, sizeof client, "%s", conn->peer);
    if (strv_addf(env, err, "SSH_CONNECTION=%s %s", conn->peer, conn->local) < 0 ||
        strv_addf(env, err, "SSH_CLIENT=%s %s", client, strrchr(conn->local, ' ') + 1) < 0)
        return -1;
    if (cc->agent_forwarding) {
        const char *path = forward_agent_socket(conn);
        if (path != NULL && strv_addf(env, err, "SSH_AUTH_SOCK=%s", path) < 0)
            return -1;
    }
    return 0;
}

/* Three pipes: ours[i] is our end (non-blocking), theirs[i] the process's. */
static int make_pipes(int ours[3], int theirs[3], struct shed_err *err)
{
    for (int i = 0; i < 3; i++)
        ours[i] = theirs[i] = -1;
    for (int i = 0; i < 3; i++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "pipe");
        ours[i] = i == 0 ? fds[1] : fds[0];
        theirs[i] = i == 0 ? fds[0] : fds[1];
        fcntl(ours[i], F_SETFL, fcntl(ours[i], F_GETFL) | O_NONBLOCK);
        /* Bigger pipes: fewer wakeups per MiB (best effort, capped by the system). */
        fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    }
    return 0;
}

static void close_fds(int fds[3])
{
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static int spawn_process(struct conn_channel *cc, struct shed_err *err)
{
    struct conn *conn = cc->conn;
    cleanup_strv struct strv env = STRV_INIT;
    if (build_env(cc, &env, err) < 0)
        return -1;
    bool tmux = cc->command == NULL && cc->pty && conn->config->ssh.shell == SHED_SSH_SHELL_TMUX;
    struct backend_spawn_request request = {
        .login = true,
        .command = tmux ? TMUX_SHELL_COMMAND : cc->command,
        .env = (const char *const *)env.items,
        .tty = cc->pty,
        .winsize = cc->winsize,
        .stdin_fd = -1,
        .stdout_fd = -1,
        .stderr_fd = -1,
    };
    char exec_command[64];
    if (cc->subsystem) {
        snprintf(exec_command, sizeof exec_command, "exec %s", cc->command);
        request.command = exec_command;
    }
    int ours[3] = {-1, -1, -1}, theirs[3] = {-1, -1, -1};
    if (!cc->pty) {
        if (make_pipes(ours, theirs, err) < 0) {
            close_fds(ours);
            close_fds(theirs);
            return -1;
        }
        request.stdin_fd = theirs[0];
        request.stdout_fd = theirs[1];
        request.stderr_fd = theirs[2];
    }
    int rc = conn->backend->spawn(conn->backend, &conn->inst, &request, &cc->process, err);
    close_fds(theirs); /* the process has its own copies */
    if (rc < 0) {
        close_fds(ours);
        return -1;
    }
    struct stream *stream = &cc->stream;
    if (cc->pty) {
        int pty = backend_process_pty_fd(cc->process);
        fcntl(pty, F_SETFL, fcntl(pty, F_GETFL) | O_NONBLOCK);
        stream->in_fd = stream->out_fd = pty;
        stream->in_kind = STREAM_INPUT_PTY;
        stream->owns_fds = false; /* the process's: closed by backend_process_free */
    } else {
        stream->in_fd = ours[0];
        stream->out_fd = ours[1];
        stream->err_fd = ours[2];
        stream->in_kind = STREAM_INPUT_PIPE;
        stream->owns_fds = true;
    }
    stream->accepting = true;
    return 0;
}

static void run_request(struct conn_channel *cc)
{
    remember_command(cc);
    if (cc->failure != NULL) {
        fail_request(cc, cc->failure);
        return;
    }
    struct shed_err err = {0};
    if (conn_running_shed(cc->conn, cc, &err) < 0 || spawn_process(cc, &err) < 0) {
        fail_request(cc, err.msg);
        return;
    }
    cc->state = SESSION_RUNNING;
}

/* ---- following the process ------------------------------------------------------------ */

int session_event_fd(const struct conn_channel *cc)
{
    if (cc->state != SESSION_RUNNING || cc->process == NULL)
        return -1;
    return backend_process_event_fd(cc->process);
}

static void check_exit(struct conn_channel *cc)
{
    struct shed_err err = {0};
    int rc = backend_process_wait(cc->process, 0, &cc->exit, &err);
    if (rc == 1)
        return;
    if (rc < 0) {
        /* The shed went away under it: say so, and end like a killed process. */
        session_send_line(cc, err.msg);
        cc->exit = (struct backend_exit){.signaled = true, .signo = SIGKILL};
    }
    cc->exit_known = true;
    cc->state = SESSION_DRAINING;
}

/* Whether everything the process printed has been sent. A pty is read until it has nothing
 * more (background jobs may keep it open); pipes until every writer closed them. */
static bool drained(struct conn_channel *cc)
{
    struct stream *stream = &cc->stream;
    if (!stream_flush_output(stream))
        return false;
    if (stream->in_kind != STREAM_INPUT_PTY)
        return stream->out_fd < 0 && stream->err_fd < 0;
    for (;;) {
        enum stream_result rc = stream_pump_output(stream, false);
        if (rc == STREAM_WINDOW_CLOSED)
            return false;
        if (rc != STREAM_SENT)
            return true; /* EOF, nothing more, or the channel failed */
    }
}

void session_channel_service(struct conn_channel *cc)
{
    if (cc->remote_closed) {
        cc->finished = true; /* freeing the channel hangs its process up */
        return;
    }
    if (cc->state == SESSION_PENDING)
        run_request(cc);
    if (cc->state == SESSION_RUNNING || cc->state == SESSION_DRAINING) {
        stream_pump_input(&cc->stream);
        stream_flush_output(&cc->stream);
    }
    if (cc->state == SESSION_RUNNING && cc->event_ready) {
        cc->event_ready = false;
        check_exit(cc);
    }
    if (cc->state == SESSION_DRAINING && drained(cc))
        finish(cc);
}

void session_channel_release(struct conn_channel *cc)
{
    if (cc->stream.in_kind == STREAM_INPUT_PTY) {
        /* The pty belongs to the process. */
        cc->stream.in_fd = cc->stream.out_fd = -1;
    }
    backend_process_free(cc->process);
    cc->process = NULL;
    strv_free(&cc->env);
    free(cc->command);
    free(cc->failure);
}
