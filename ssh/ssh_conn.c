/* One SSH connection, from the key exchange to its log line.
 *
 * The loop polls the session's socket, every channel's fds, the agent socket in the shed and
 * the server's stop_fd itself, and hands the session's readiness to libssh through an
 * ssh_event holding only the session (ssh_event_dopoll with timeout 0): so fds come and go
 * freely between polls, which libssh's own event loop does not allow from its callbacks. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "ssh_private.h"

/* Per wakeup: output chunks read from one fd, and reads of the session's socket. */
#define OUTPUT_CHUNKS_PER_WAKEUP 8
#define SESSION_READS_PER_WAKEUP 64

int64_t conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- authentication ------------------------------------------------------------------- */

/* The user name as a shed name is checked later; here it is only kept (printable part). */
static void remember_user(struct conn *conn, const char *user)
{
    size_t n = 0;
    for (const char *p = user; *p != '\0' && n + 1 < sizeof conn->user; p++)
        conn->user[n++] = isprint((unsigned char)*p) && *p != '"' ? *p : '?';
    conn->user[n] = '\0';
}

/* The probe (signature_state NONE: "would this key do?") gets SUCCESS only for a key that
 * may log in; libssh answers it with PK_OK, so answering it for any key would tell a client
 * that its key is accepted before it proved anything. */
static int on_auth_pubkey(ssh_session session, const char *user, struct ssh_key_struct *key,
                          char signature_state, void *userdata)
{
    (void)session;
    struct conn *conn = userdata;
    remember_user(conn, user);
    if (signature_state == SSH_PUBLICKEY_STATE_WRONG || !ssh_key_is_authorized(conn->config, key)) {
        conn->auth_failures++;
        return SSH_AUTH_DENIED;
    }
    if (signature_state == SSH_PUBLICKEY_STATE_VALID) {
        ssh_key_fingerprint(key, conn->fingerprint, sizeof conn->fingerprint);
        conn->authenticated = true;
    }
    return SSH_AUTH_SUCCESS;
}

/* "none" logs in only with ssh.auth: none; without, it is how a client asks for the methods
 * (not counted as a failure, as OpenSSH does). */
static int on_auth_none(ssh_session session, const char *user, void *userdata)
{
    (void)session;
    struct conn *conn = userdata;
    remember_user(conn, user);
    if (conn->config->ssh.auth != SHED_SSH_AUTH_NONE)
        return SSH_AUTH_DENIED;
    snprintf(conn->fingerprint, sizeof conn->fingerprint, "none");
    conn->authenticated = true;
    return SSH_AUTH_SUCCESS;
}

static ssh_channel on_session_open(ssh_session session, void *userdata)
{
    struct conn *conn = userdata;
    if (!conn->authenticated || conn->channel_count >= CONN_CHANNELS_MAX)
        return NULL;
    ssh_channel channel = ssh_channel_new(session);
    if (channel == NULL)
        return NULL;
    struct conn_channel *cc = conn_channel_new(conn, CHANNEL_SESSION, channel);
    if (cc == NULL) {
        ssh_channel_free(channel);
        return NULL;
    }
    session_channel_setup(cc);
    return channel;
}

/* ---- channels ------------------------------------------------------------------------- */

struct conn_channel *conn_channel_new(struct conn *conn, enum channel_kind kind,
                                      ssh_channel channel)
{
    struct conn_channel *cc = calloc(1, sizeof *cc);
    if (cc == NULL)
        return NULL;
    cc->conn = conn;
    cc->kind = kind;
    cc->started_ms = conn_now_ms();
    cc->env = STRV_INIT;
    stream_init(&cc->stream, channel);
    cc->next = conn->channels;
    conn->channels = cc;
    conn->channel_count++;
    return cc;
}

static void conn_channel_free(struct conn_channel *cc)
{
    ssh_channel channel = cc->stream.channel;
    if (channel != NULL) {
        ssh_remove_channel_callbacks(channel, &cc->callbacks);
        if (ssh_channel_is_open(channel))
            ssh_channel_close(channel);
        ssh_channel_free(channel); /* libssh keeps it until the client's close arrives */
    }
    if (cc->kind == CHANNEL_SESSION)
        session_channel_release(cc);
    stream_close_fds(&cc->stream);
    free(cc);
}

/* Frees the channels that are finished (between polls only: see ssh_private.h). */
static void conn_collect(struct conn *conn)
{
    for (struct conn_channel **at = &conn->channels; *at != NULL;) {
        struct conn_channel *cc = *at;
        if (!cc->finished) {
            at = &cc->next;
            continue;
        }
        *at = cc->next;
        conn->channel_count--;
        conn_channel_free(cc);
    }
}

/* ---- the shed ------------------------------------------------------------------------- */

int conn_running_shed(struct conn *conn, struct conn_channel *channel, struct shed_err *err)
{
    const struct sshd_shared *shared = conn->shared;
    if (conn->shed_known)
        instance_clear(&conn->inst);
    conn->shed_known = false;
    struct shed_err load_err = {0};
    if (!instance_name_is_valid(conn->user) ||
        shed_lifecycle_load(&shared->lifecycle, conn->user, &conn->inst, &load_err) < 0)
        return shed_errf(err, SHED_E_SHED_NOT_FOUND, "no shed named \"%s\" on %s", conn->user,
                         shared->host_name);
    conn->shed_known = true;
    if (conn->inst.status != INSTANCE_RUNNING) {
        if (conn->inst.status != INSTANCE_STOPPED)
            return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is in state %s", conn->user,
                             instance_status_name(conn->inst.status));
        char line[160];
        snprintf(line, sizeof line, "starting shed \"%s\"...", conn->user);
        if (channel != NULL)
            session_send_line(channel, line);
        struct instance started;
        if (shed_lifecycle_start(&shared->lifecycle, conn->user, &started, err) < 0 &&
            err->code != SHED_E_SHED_ALREADY_RUNNING)
            return shed_err_prefix(err, "cannot start shed \"%s\"", conn->user);
        if (err->code != SHED_E_SHED_ALREADY_RUNNING)
            instance_clear(&started);
        shed_err_clear(err);
        instance_clear(&conn->inst);
        conn->shed_known = false;
        if (shed_lifecycle_load(&shared->lifecycle, conn->user, &conn->inst, err) < 0)
            return -1;
        conn->shed_known = true;
        if (conn->inst.status != INSTANCE_RUNNING)
            return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" did not start", conn->user);
    }
    conn->backend = backend_set_find(shared->lifecycle.backends, conn->inst.backend);
    if (conn->backend == NULL || conn->backend->spawn == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "shed \"%s\" uses backend \"%s\", which cannot run commands here",
                         conn->user, conn->inst.backend);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------- */

enum watch_role {
    WATCH_SESSION,
    WATCH_STOP,
    WATCH_AGENT,
    WATCH_IN,
    WATCH_OUT,
    WATCH_ERR,
    WATCH_EVENT
};

struct watch {
    enum watch_role role;
    struct conn_channel *channel;
};

struct poll_set {
    struct pollfd fds[4 + 4 * CONN_CHANNELS_MAX];
    struct watch watches[4 + 4 * CONN_CHANNELS_MAX];
    size_t count;
};

static void watch(struct poll_set *set, int fd, short events, enum watch_role role,
                  struct conn_channel *channel)
{
    if (fd < 0 || events == 0)
        return;
    set->fds[set->count] = (struct pollfd){.fd = fd, .events = events};
    set->watches[set->count++] = (struct watch){.role = role, .channel = channel};
}

static void build_poll_set(struct conn *conn, struct poll_set *set)
{
    set->count = 0;
    short session_events = POLLIN;
    if (ssh_get_poll_flags(conn->session) & SSH_WRITE_PENDING)
        session_events |= POLLOUT;
    watch(set, conn->fd, session_events, WATCH_SESSION, NULL);
    watch(set, conn->shared->stop_fd, POLLIN, WATCH_STOP, NULL);
    if (conn->agent_listener != NULL)
        watch(set, conn->agent_listener->fd, POLLIN, WATCH_AGENT, NULL);
    for (struct conn_channel *cc = conn->channels; cc != NULL; cc = cc->next) {
        if (cc->finished)
            continue;
        struct stream *stream = &cc->stream;
        bool output = stream_wants_output(stream);
        /* A pty or socket is one fd for both directions. */
        if (stream->in_fd >= 0 && stream->in_fd == stream->out_fd)
            watch(set, stream->in_fd, (short)(stream_in_events(stream) | (output ? POLLIN : 0)),
                  WATCH_OUT, cc);
        else {
            watch(set, stream->in_fd, stream_in_events(stream), WATCH_IN, cc);
            watch(set, stream->out_fd, output ? POLLIN : 0, WATCH_OUT, cc);
        }
        watch(set, stream->err_fd, output ? POLLIN : 0, WATCH_ERR, cc);
        if (cc->kind == CHANNEL_SESSION)
            watch(set, session_event_fd(cc), POLLIN, WATCH_EVENT, cc);
    }
}

static void fail_channel(struct conn_channel *cc)
{
    stream_close_fds(&cc->stream);
    cc->finished = true;
}

/* A readable fd is read for several chunks in a row (while the window lasts): one poll per
 * chunk would cost more than the chunk's copy. */
static enum stream_result pump_output(struct conn_channel *cc, bool is_stderr)
{
    enum stream_result rc = STREAM_SENT;
    for (int i = 0; i < OUTPUT_CHUNKS_PER_WAKEUP && rc == STREAM_SENT; i++)
        rc = stream_pump_output(&cc->stream, is_stderr);
    return rc;
}

/* Lets libssh take what the socket has, several reads in a row: it reads 4 KiB a call. */
static int feed_session(struct conn *conn)
{
    for (int i = 0; i < SESSION_READS_PER_WAKEUP; i++) {
        int rc = ssh_event_dopoll(conn->event, 0);
        if (rc == SSH_ERROR)
            return -1;
        if (rc == SSH_AGAIN)
            break; /* nothing more right now */
    }
    return 0;
}

static void handle_ready(struct conn *conn, struct poll_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        short revents = set->fds[i].revents;
        struct conn_channel *cc = set->watches[i].channel;
        if (revents == 0 || (cc != NULL && cc->finished))
            continue;
        switch (set->watches[i].role) {
        case WATCH_SESSION:
        case WATCH_STOP: break; /* handled by the caller */
        case WATCH_AGENT: forward_agent_accept(conn); break;
        case WATCH_IN: stream_pump_input(&cc->stream); break;
        case WATCH_OUT:
            if (revents & POLLOUT)
                stream_pump_input(&cc->stream);
            if ((revents & (POLLIN | POLLHUP | POLLERR)) && pump_output(cc, false) == STREAM_FAILED)
                fail_channel(cc);
            break;
        case WATCH_ERR:
            if (pump_output(cc, true) == STREAM_FAILED)
                fail_channel(cc);
            break;
        case WATCH_EVENT: cc->event_ready = true; break; /* the service step asks the process */
        }
    }
}

static void service_channels(struct conn *conn)
{
    for (struct conn_channel *cc = conn->channels; cc != NULL; cc = cc->next) {
        if (cc->finished)
            continue;
        if (cc->kind == CHANNEL_SESSION)
            session_channel_service(cc);
        else if (cc->kind == CHANNEL_AGENT && cc->opening)
            forward_agent_service(cc);
        else
            forward_channel_service(cc);
    }
}

static bool session_alive(ssh_session session)
{
    return ssh_is_connected(session) &&
           !(ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR));
}

/* Why the connection ended (for the log line). */
static const char *run_loop(struct conn *conn)
{
    int64_t grace_ms = (int64_t)conn->config->ssh.login_grace_seconds * 1000;
    struct poll_set *set = malloc(sizeof *set);
    if (set == NULL)
        return "out of memory";
    const char *why = "closed";
    for (;;) {
        if (!session_alive(conn->session))
            break;
        if (conn->auth_failures >= conn->config->ssh.max_auth_tries) {
            ssh_disconnect(conn->session);
            why = "too many authentication failures";
            break;
        }
        int timeout = -1;
        if (!conn->authenticated) {
            int64_t left = conn->accepted_ms + grace_ms - conn_now_ms();
            if (left <= 0) {
                ssh_disconnect(conn->session);
                why = "login grace time over";
                break;
            }
            timeout = (int)left;
        }
        build_poll_set(conn, set);
        if (poll(set->fds, set->count, timeout) < 0 && errno != EINTR) {
            why = "poll failed";
            break;
        }
        if (set->fds[1].revents) {
            why = "server stopping";
            break;
        }
        if (set->fds[0].revents && feed_session(conn) < 0 && !session_alive(conn->session))
            break;
        handle_ready(conn, set);
        service_channels(conn);
        conn_collect(conn);
    }
    free(set);
    return why;
}

/* ---- the connection -------------------------------------------------------------------- */

static void local_name(int fd, char *out, size_t outlen, bool peer)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&addr, &len)
                  : getsockname(fd, (struct sockaddr *)&addr, &len);
    if (rc == 0 && addr.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (rc == 0 && addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, outlen, "%s %u", host, port);
}

static void log_connection(const struct conn *conn, const char *result)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    char peer[64];
    snprintf(peer, sizeof peer, "%s", conn->peer);
    char *space = strchr(peer, ' ');
    if (space != NULL)
        *space = ':';
    char exit_text[16] = "-";
    if (conn->log_has_exit)
        snprintf(exit_text, sizeof exit_text, "%d", conn->log_exit);
    fprintf(stderr,
            "%s ssh peer=%s user=%s key=%s shed=%s command=\"%s\" exit=%s ms=%lld result=\"%s\"\n",
            stamp, peer, conn->user[0] ? conn->user : "-",
            conn->fingerprint[0] ? conn->fingerprint : "-",
            conn->shed_known ? conn->inst.name : "-", conn->log_command, exit_text,
            (long long)(conn_now_ms() - conn->accepted_ms), result);
}

static void release(struct conn *conn)
{
    while (conn->channels != NULL) {
        struct conn_channel *cc = conn->channels;
        conn->channels = cc->next;
        conn_channel_free(cc); /* processes still running are hung up */
    }
    backend_listener_close(conn->agent_listener);
    conn->agent_listener = NULL;
    if (conn->event != NULL) {
        ssh_event_remove_session(conn->event, conn->session);
        ssh_event_free(conn->event);
    }
    if (conn->shed_known)
        instance_clear(&conn->inst);
}

void conn_run(const struct sshd_shared *shared, ssh_session session, int fd)
{
    struct conn conn = {.shared = shared,
                        .config = shared->source.acquire(shared->source.ctx),
                        .session = session,
                        .fd = fd,
                        .log_command = "-"};
    conn.accepted_ms = conn_now_ms();
    local_name(fd, conn.peer, sizeof conn.peer, true);
    local_name(fd, conn.local, sizeof conn.local, false);
    struct ssh_server_callbacks_struct callbacks = {
        .userdata = &conn,
        .auth_pubkey_function = on_auth_pubkey,
        .auth_none_function = on_auth_none,
        .channel_open_request_session_function = on_session_open,
    };
    ssh_callbacks_init(&callbacks);
    ssh_set_server_callbacks(session, &callbacks);
    ssh_set_auth_methods(session, conn.config->ssh.auth == SHED_SSH_AUTH_NONE
                                      ? SSH_AUTH_METHOD_NONE | SSH_AUTH_METHOD_PUBLICKEY
                                      : SSH_AUTH_METHOD_PUBLICKEY);
    ssh_set_message_callback(session, forward_on_message, &conn);
    long grace = conn.config->ssh.login_grace_seconds;
    ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &grace);
    const char *result = "closed";
    if (ssh_handle_key_exchange(session) != SSH_OK) {
        result = "key exchange failed";
    } else {
        ssh_set_blocking(session, 0);
        conn.event = ssh_event_new();
        if (conn.event == NULL || ssh_event_add_session(conn.event, session) != SSH_OK)
            result = "out of memory";
        else
            result = run_loop(&conn);
    }
    if (!conn.authenticated && strcmp(result, "closed") == 0)
        result = "not authenticated";
    log_connection(&conn, result);
    release(&conn);
    ssh_disconnect(session);
    ssh_free(session); /* closes fd */
    shared->source.release(conn.config, shared->source.ctx);
}

int conn_channel_on_data(ssh_session session, ssh_channel channel, void *data, uint32_t len,
                         int is_stderr, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = userdata;
    if (is_stderr)
        return (int)len;
    return stream_on_data(&cc->stream, data, len);
}

void conn_channel_on_eof(ssh_session session, ssh_channel channel, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = userdata;
    cc->stream.client_eof = true;
}

void conn_channel_on_close(ssh_session session, ssh_channel channel, void *userdata)
{
    (void)session;
    (void)channel;
    struct conn_channel *cc = userdata;
    cc->remote_closed = true;
}
