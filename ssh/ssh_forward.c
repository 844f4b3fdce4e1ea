/* Byte channels: direct-tcpip (ssh -L) into the shed's loopback, and agent forwarding.
 *
 * direct-tcpip has no typed server callback in libssh 0.10: it arrives as a channel-open
 * message. Only localhost, 127.0.0.1 and ::1 are destinations (the shed's own loopback:
 * the same dial as the connect API), and the port is dialed before the channel is accepted,
 * so a refused port is a refused channel and never an accepted one that closes at once.
 * libssh 0.10 can only refuse a channel as "administratively prohibited"; the log line says
 * what really happened.
 *
 * Agent forwarding: a listening socket in the shed (backend->listen) whose path is
 * SSH_AUTH_SOCK of the connection's sessions; each connection a process makes to it is an
 * auth-agent@openssh.com channel to the client, which bridges it to the client's agent. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "ssh_private.h"

static void log_forward(const struct conn *conn, const char *host, int port, const char *result)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    char safe_host[64];
    size_t n = 0;
    for (const char *p = host != NULL ? host : "-"; *p != '\0' && n + 1 < sizeof safe_host; p++)
        safe_host[n++] = (unsigned char)*p > 0x20 && *p != '"' ? *p : '?';
    safe_host[n] = '\0';
    fprintf(stderr, "%s ssh-forward user=%s destination=%s:%d result=\"%s\"\n", stamp, conn->user,
            safe_host, port, result);
}

/* ---- the byte channel ----------------------------------------------------------------- */

/* A channel whose other end is a connected socket (ours to close). */
static void byte_channel_setup(struct conn_channel *cc, int fd, bool accepting)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct stream *stream = &cc->stream;
    stream->in_fd = stream->out_fd = fd;
    stream->in_kind = STREAM_INPUT_SOCKET;
    stream->owns_fds = true;
    stream->accepting = accepting;
    cc->callbacks = (struct ssh_channel_callbacks_struct){
        .userdata = cc,
        .channel_data_function = conn_channel_on_data,
        .channel_eof_function = conn_channel_on_eof,
        .channel_close_function = conn_channel_on_close,
    };
    ssh_callbacks_init(&cc->callbacks);
    ssh_set_channel_callbacks(stream->channel, &cc->callbacks);
}

void forward_channel_service(struct conn_channel *cc)
{
    struct stream *stream = &cc->stream;
    if (cc->remote_closed) {
        cc->finished = true;
        return;
    }
    stream_pump_input(stream);
    /* The socket said EOF: pass it on once (after what is still pending); both ways ended:
     * close. */
    if (!stream_flush_output(stream))
        return;
    if (stream->out_fd < 0 && !cc->eof_sent) {
        ssh_channel_send_eof(stream->channel);
        cc->eof_sent = true;
    }
    if (cc->eof_sent && stream->input_done) {
        ssh_channel_close(stream->channel);
        cc->finished = true;
    }
}

/* ---- direct-tcpip --------------------------------------------------------------------- */

static bool is_loopback_name(const char *host)
{
    return host != NULL && (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
                            strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0);
}

static int open_direct_tcpip(struct conn *conn, ssh_message message)
{
    const char *host = ssh_message_channel_request_open_destination(message);
    int port = ssh_message_channel_request_open_destination_port(message);
    if (!conn->authenticated)
        return 1;
    if (!is_loopback_name(host) || port < 1 || port > 65535) {
        log_forward(conn, host, port, "refused: only the shed's own loopback is reachable");
        return 1;
    }
    if (conn->channel_count >= CONN_CHANNELS_MAX) {
        log_forward(conn, host, port, "refused: too many channels");
        return 1;
    }
    struct shed_err err = {0};
    int fd = -1;
    if (conn_running_shed(conn, NULL, &err) < 0 || conn->backend->dial == NULL ||
        conn->backend->dial(conn->backend, &conn->inst, (uint16_t)port, &fd, &err) < 0) {
        char result[600];
        snprintf(result, sizeof result, "refused: %s",
                 err.msg[0] ? err.msg : "the backend cannot dial");
        log_forward(conn, host, port, result);
        return 1;
    }
    ssh_channel channel = ssh_message_channel_request_open_reply_accept(message);
    struct conn_channel *cc =
        channel != NULL ? conn_channel_new(conn, CHANNEL_DIRECT_TCPIP, channel) : NULL;
    if (cc == NULL) {
        close(fd);
        if (channel != NULL) {
            ssh_channel_close(channel);
            ssh_channel_free(channel);
        }
        return 0; /* answered (or the session is broken) */
    }
    byte_channel_setup(cc, fd, true);
    log_forward(conn, host, port, "ok");
    return 0;
}

int forward_on_message(ssh_session session, ssh_message message, void *userdata)
{
    (void)session;
    struct conn *conn = userdata;
    if (ssh_message_type(message) == SSH_REQUEST_CHANNEL_OPEN &&
        ssh_message_subtype(message) == SSH_CHANNEL_DIRECT_TCPIP)
        return open_direct_tcpip(conn, message);
    return 1; /* tcpip-forward (-R), x11, ...: refused */
}

/* ---- agent forwarding ----------------------------------------------------------------- */

const char *forward_agent_socket(struct conn *conn)
{
    if (conn->agent_listener != NULL)
        return conn->agent_listener->path;
    if (conn->agent_listener_failed || conn->backend == NULL || conn->backend->listen == NULL)
        return NULL;
    struct shed_err err = {0};
    if (conn->backend->listen(conn->backend, &conn->inst, &conn->agent_listener, &err) < 0) {
        conn->agent_listener_failed = true;
        fprintf(stderr, "ssh: agent forwarding for %s unavailable: %s\n", conn->user, err.msg);
        return NULL;
    }
    fcntl(conn->agent_listener->fd, F_SETFL, fcntl(conn->agent_listener->fd, F_GETFL) | O_NONBLOCK);
    return conn->agent_listener->path;
}

void forward_agent_accept(struct conn *conn)
{
    int fd = accept4(conn->agent_listener->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    ssh_channel channel =
        conn->channel_count < CONN_CHANNELS_MAX ? ssh_channel_new(conn->session) : NULL;
    struct conn_channel *cc =
        channel != NULL ? conn_channel_new(conn, CHANNEL_AGENT, channel) : NULL;
    if (cc == NULL) {
        if (channel != NULL)
            ssh_channel_free(channel);
        close(fd);
        return;
    }
    /* Callbacks first: the client may answer the open with data at once. */
    byte_channel_setup(cc, fd, false);
    cc->opening = true;
    forward_agent_service(cc);
}

void forward_agent_service(struct conn_channel *cc)
{
    int rc = ssh_channel_open_auth_agent(cc->stream.channel);
    if (rc == SSH_AGAIN)
        return;
    cc->opening = false;
    if (rc != SSH_OK) {
        cc->finished = true; /* the client refused (no agent): the process sees EOF */
        return;
    }
    cc->stream.accepting = true;
}
