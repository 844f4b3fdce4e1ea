/* Bytes between a channel and fds, with the SSH windows as the only buffers.
 *
 * Client to fd: the data callback writes what the (non-blocking) fd takes and reports only
 * that as consumed; libssh keeps the rest in its channel buffer and, while it holds data,
 * does not grow the window it grants the client, so a slow process holds the client back
 * instead of the server buffering without bound. The rest is pulled with
 * ssh_channel_read_nonblocking once the fd is writable again (one small pending buffer).
 *
 * Fd to client: an fd is read only while the client's window is open, and never more than
 * the window, so ssh_channel_write never has to wait or buffer; at a closed window the fd
 * is not polled (its writer blocks) until libssh reports the window grew. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ssh_private.h"

void stream_init(struct stream *stream, ssh_channel channel)
{
    memset(stream, 0, sizeof *stream);
    stream->channel = channel;
    stream->in_fd = stream->out_fd = stream->err_fd = -1;
}

/* Writes to in_fd: bytes written (0 when it would block); -1 when the reader is gone. */
static ssize_t write_input(struct stream *stream, const void *data, size_t len)
{
    ssize_t put = stream->in_kind == STREAM_INPUT_SOCKET
                      ? send(stream->in_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                      : write(stream->in_fd, data, len);
    while (put < 0 && errno == EINTR)
        put = stream->in_kind == STREAM_INPUT_SOCKET
                  ? send(stream->in_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL)
                  : write(stream->in_fd, data, len);
    if (put < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    stream->bytes_in += (uint64_t)put;
    return put;
}

/* The reader of in_fd is gone: what the client still sends is dropped. */
static void drop_input(struct stream *stream)
{
    if (stream->owns_fds && stream->in_fd >= 0 && stream->in_fd != stream->out_fd)
        close(stream->in_fd);
    stream->in_fd = -1;
    stream->input_done = true;
    stream->pending_len = stream->pending_off = 0;
}

int stream_on_data(struct stream *stream, const void *data, uint32_t len)
{
    if (!stream->accepting || stream->pending_off < stream->pending_len) {
        stream->input_waiting = true;
        return 0; /* libssh keeps it, in order, until in_fd can take it */
    }
    if (stream->in_fd < 0)
        return (int)len;
    ssize_t put = write_input(stream, data, len);
    if (put < 0) {
        drop_input(stream);
        return (int)len;
    }
    if ((uint32_t)put < len)
        stream->input_waiting = true;
    return (int)put;
}

/* Passes the client's EOF on: a pipe is closed, a socket half-closed; a pty has no EOF. */
static void close_input(struct stream *stream)
{
    stream->input_done = true;
    if (stream->in_fd < 0)
        return;
    if (stream->in_kind == STREAM_INPUT_SOCKET)
        shutdown(stream->in_fd, SHUT_WR);
    else if (stream->in_kind == STREAM_INPUT_PIPE)
        drop_input(stream);
}

/* Writes the pending buffer; true when it is empty afterwards. */
static bool flush_pending(struct stream *stream)
{
    while (stream->pending_off < stream->pending_len) {
        ssize_t put = write_input(stream, stream->pending + stream->pending_off,
                                  stream->pending_len - stream->pending_off);
        if (put < 0) {
            drop_input(stream);
            return true;
        }
        if (put == 0)
            return false;
        stream->pending_off += (size_t)put;
    }
    stream->pending_len = stream->pending_off = 0;
    return true;
}

void stream_pump_input(struct stream *stream)
{
    if (!stream->accepting)
        return;
    while (stream->in_fd >= 0 && flush_pending(stream) && stream->input_waiting) {
        int got = ssh_channel_read_nonblocking(stream->channel, stream->pending,
                                               sizeof stream->pending, 0);
        if (got <= 0) {
            stream->input_waiting = false; /* libssh holds nothing more */
            break;
        }
        stream->pending_len = (size_t)got;
        stream->pending_off = 0;
    }
    if (stream->in_fd < 0) {
        /* Nobody reads: whatever libssh still holds is dropped, so its window reopens. */
        char sink[4096];
        while (stream->input_waiting &&
               ssh_channel_read_nonblocking(stream->channel, sink, sizeof sink, 0) > 0) {
        }
        stream->input_waiting = false;
    }
    if (stream->client_eof && !stream->input_done && !stream->input_waiting &&
        stream->pending_len == 0)
        close_input(stream);
}

short stream_in_events(const struct stream *stream)
{
    if (stream->in_fd < 0 || !stream->accepting || stream->input_done)
        return 0;
    return stream->pending_len > 0 || stream->input_waiting ? POLLOUT : 0;
}

bool stream_wants_output(const struct stream *stream)
{
    return stream->out_off == stream->out_len && ssh_channel_window_size(stream->channel) > 0;
}

bool stream_flush_output(struct stream *stream)
{
    while (stream->out_off < stream->out_len) {
        uint32_t len = (uint32_t)(stream->out_len - stream->out_off);
        const char *data = stream->out_pending + stream->out_off;
        int sent = stream->out_is_stderr ? ssh_channel_write_stderr(stream->channel, data, len)
                                         : ssh_channel_write(stream->channel, data, len);
        if (sent <= 0)
            return false; /* SSH_ERROR shows as a dead session; 0: later */
        stream->out_off += (size_t)sent;
        stream->bytes_out += (uint64_t)sent;
    }
    stream->out_len = stream->out_off = 0;
    return true;
}

enum stream_result stream_pump_output(struct stream *stream, bool is_stderr)
{
    int *fd = is_stderr ? &stream->err_fd : &stream->out_fd;
    if (!stream_flush_output(stream))
        return STREAM_WINDOW_CLOSED;
    if (*fd < 0)
        return STREAM_EOF;
    uint32_t window = ssh_channel_window_size(stream->channel);
    if (window == 0)
        return STREAM_WINDOW_CLOSED;
    size_t want = window < sizeof stream->out_pending ? window : sizeof stream->out_pending;
    ssize_t got = stream->in_kind == STREAM_INPUT_SOCKET && !is_stderr
                      ? recv(*fd, stream->out_pending, want, MSG_DONTWAIT)
                      : read(*fd, stream->out_pending, want);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return STREAM_EMPTY;
    if (got <= 0) {
        /* EOF, or EIO from a pty whose last slave closed. A socket's fd is also its in_fd:
         * it stays open for the other direction. */
        if (stream->owns_fds && *fd != stream->in_fd)
            close(*fd);
        *fd = -1;
        return STREAM_EOF;
    }
    /* Within the window, libssh takes it all, except during a key re-exchange: then it is
     * kept and sent once the exchange is over. */
    stream->out_len = (size_t)got;
    stream->out_off = 0;
    stream->out_is_stderr = is_stderr;
    if (!stream_flush_output(stream) && !ssh_channel_is_open(stream->channel))
        return STREAM_FAILED;
    return STREAM_SENT;
}

void stream_close_fds(struct stream *stream)
{
    if (stream->owns_fds) {
        if (stream->in_fd >= 0)
            close(stream->in_fd);
        if (stream->out_fd >= 0 && stream->out_fd != stream->in_fd)
            close(stream->out_fd);
        if (stream->err_fd >= 0 && stream->err_fd != stream->in_fd &&
            stream->err_fd != stream->out_fd)
            close(stream->err_fd);
    }
    stream->in_fd = stream->out_fd = stream->err_fd = -1;
}
