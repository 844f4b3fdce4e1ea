/* Private to ssh/: the SSH front door's pieces.
 *
 *   sshd.c         the listener, the connection registry (cap, threads, stop), start/stop
 *   ssh_conn.c     one connection: key exchange, authentication, the poll loop, the log line
 *   ssh_auth.c     which public keys may log in (authorized_keys file and inline keys)
 *   ssh_session.c  session channels: pty, env, shell/exec/sftp through the shed's processes
 *   ssh_forward.c  direct-tcpip (ssh -L) and agent forwarding (ssh -A)
 *   ssh_stream.c   moving bytes between a channel and fds with the SSH window as flow control
 *
 * Threading: one thread per connection, and a libssh session (with its channels) is only
 * ever used by its connection's thread. The listener thread accepts and hands the socket
 * over; the registry (sshd.c) is the only state shared between threads, under its mutex.
 *
 * Callbacks: libssh calls the channel callbacks from inside ssh_event_dopoll, and also from
 * inside ssh_channel_write and ssh_channel_read_nonblocking (both may process incoming
 * packets). So callbacks only record what happened and move bytes; they never free a
 * channel or a process. Channels are freed by the loop (conn_collect) between polls. */
#ifndef SHED_SSH_PRIVATE_H
#define SHED_SSH_PRIVATE_H

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "common/strv.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "runtime/instance.h"
#include "runtime/shed_lifecycle.h"
#include "sshd.h"

/* ---- sshd.c -------------------------------------------------------------------------- */

struct sshd;

/* What every connection reads; fixed while the server runs. */
struct sshd_shared {
    struct sshd_config_source source; /* each connection's configuration */
    struct shed_lifecycle lifecycle;
    char *host_name; /* for messages: the server's name */
    int stop_fd;     /* an eventfd, readable once the server stops */
};

/* ---- ssh_auth.c ---------------------------------------------------------------------- */

/* Whether key may log in: one of config->ssh.keys or a line of the authorized_keys file
 * (re-read at every attempt, so edits apply at once). Lines with OpenSSH options
 * (command=, from=, ...) are not honoured and so never match. */
bool ssh_key_is_authorized(const struct shed_config *config, ssh_key key);
/* "SHA256:..." as ssh-keygen -l prints it. */
void ssh_key_fingerprint(ssh_key key, char *out, size_t outlen);

/* ---- ssh_stream.c -------------------------------------------------------------------- */

enum stream_input { STREAM_INPUT_PIPE, STREAM_INPUT_PTY, STREAM_INPUT_SOCKET };

/* The bytes of one channel: client data to in_fd; out_fd and err_fd to the client. */
struct stream {
    ssh_channel channel;
    int in_fd;  /* -1: none (or closed) */
    int out_fd; /* -1: none (or at EOF) */
    int err_fd; /* -1: none (or at EOF) */
    enum stream_input in_kind;
    bool owns_fds;       /* close them when done (a pty's fd is the process's to close) */
    bool input_waiting;  /* libssh holds client data in_fd did not take yet */
    bool client_eof;     /* the client sent EOF: passed on once the input is written */
    bool input_done;     /* the EOF was passed on (or in_fd's reader is gone) */
    bool accepting;      /* false until in_fd exists: client data waits in libssh */
    char pending[32768]; /* client data read from libssh that in_fd did not take yet */
    size_t pending_len, pending_off;
    /* output read from an fd that libssh did not take (it takes nothing while a key
     * re-exchange runs): sent before anything more is read */
    char out_pending[32768];
    size_t out_len, out_off;
    bool out_is_stderr;
    uint64_t bytes_in, bytes_out;
};

void stream_init(struct stream *stream, ssh_channel channel);
/* The channel data callback's work: writes what in_fd takes; returns the bytes consumed. */
int stream_on_data(struct stream *stream, const void *data, uint32_t len);
/* Moves what can move without blocking (input libssh holds, EOF); call after every poll. */
void stream_pump_input(struct stream *stream);
/* What stream_pump_output did. */
enum stream_result {
    STREAM_FAILED = -1,       /* the channel failed */
    STREAM_SENT = 0,          /* sent a chunk; more may come */
    STREAM_EOF = 1,           /* the fd ended (closed and set to -1) */
    STREAM_EMPTY = 2,         /* nothing to read right now */
    STREAM_WINDOW_CLOSED = 3, /* the client's window is full: wait for it */
};
/* Reads from out_fd/err_fd at most what the SSH window takes and sends it. */
enum stream_result stream_pump_output(struct stream *stream, bool is_stderr);
/* Sends output libssh did not take before; true when none is left. */
bool stream_flush_output(struct stream *stream);
/* The poll interest of each fd (0: none). */
short stream_in_events(const struct stream *stream);
bool stream_wants_output(const struct stream *stream);
void stream_close_fds(struct stream *stream);

/* ---- channels ------------------------------------------------------------------------ */

enum channel_kind { CHANNEL_SESSION, CHANNEL_DIRECT_TCPIP, CHANNEL_AGENT };

/* What a session channel does. */
enum session_state {
    SESSION_IDLE,     /* before shell/exec/subsystem */
    SESSION_PENDING,  /* a request accepted; run it from the loop */
    SESSION_RUNNING,  /* the process runs */
    SESSION_DRAINING, /* the process ended; its output is still being sent */
    SESSION_DONE,     /* exit status and EOF sent */
};

struct conn;

struct conn_channel {
    struct conn_channel *next;
    struct conn *conn;
    enum channel_kind kind;
    struct ssh_channel_callbacks_struct callbacks;
    struct stream stream;
    bool remote_closed; /* the client closed it */
    bool opening;       /* CHANNEL_AGENT: open sent, confirmation not yet seen */
    bool eof_sent;      /* byte channels: the socket's EOF was passed to the client */
    bool finished;      /* closed on our side: free at the next collect */
    int64_t started_ms;
    /* CHANNEL_SESSION */
    enum session_state state;
    bool pty;
    char term[64];
    struct backend_winsize winsize;
    struct strv env; /* accepted client variables, "NAME=value" */
    bool agent_forwarding;
    char *command;  /* exec: the command; NULL: an interactive shell */
    bool subsystem; /* command is an sftp-server path, run without a shell */
    char *failure;  /* a request that cannot run: the message the client sees */
    struct backend_process *process;
    bool event_ready; /* its event fd polled readable: ask it whether it ended */
    struct backend_exit exit;
    bool exit_known;
};

/* Channels of one connection (sessions, forwards and agent connections together). */
#define CONN_CHANNELS_MAX 256

/* ---- ssh_conn.c ---------------------------------------------------------------------- */

struct conn {
    const struct sshd_shared *shared;
    const struct shed_config *config; /* acquired from shared->source for the connection */
    ssh_session session;
    ssh_event event;
    int fd;
    char peer[64];  /* "address:port" */
    char local[64]; /* our end, for SSH_CONNECTION */
    char user[INSTANCE_NAME_MAX + 16];
    char fingerprint[96];
    bool authenticated;
    int auth_failures;
    int64_t accepted_ms;
    struct conn_channel *channels;
    size_t channel_count;
    /* the shed: resolved at the first channel that needs it */
    bool shed_checked;
    bool shed_known;
    struct instance inst;
    const struct shed_backend *backend;
    /* agent forwarding: one listener in the shed for the connection's sessions */
    struct backend_listener *agent_listener;
    bool agent_listener_failed;
    /* the log line: the first command and its exit status */
    char log_command[160];
    int log_exit;
    bool log_has_exit;
};

/* Runs one accepted connection to its end (the connection thread's body); closes fd. */
void conn_run(const struct sshd_shared *shared, ssh_session session, int fd);

/* The shed of this connection, running (started first when stopped; with a message on the
 * channel's stderr when channel is not NULL). -1 with the client-facing message in err. */
int conn_running_shed(struct conn *conn, struct conn_channel *channel, struct shed_err *err);
struct conn_channel *conn_channel_new(struct conn *conn, enum channel_kind kind,
                                      ssh_channel channel);
int64_t conn_now_ms(void);
/* libssh channel callbacks every channel kind shares (userdata: its struct conn_channel):
 * client data into the channel's stream (stderr from a client is dropped: it has none to
 * send), its EOF, its close. */
int conn_channel_on_data(ssh_session session, ssh_channel channel, void *data, uint32_t len,
                         int is_stderr, void *userdata);
void conn_channel_on_eof(ssh_session session, ssh_channel channel, void *userdata);
void conn_channel_on_close(ssh_session session, ssh_channel channel, void *userdata);

/* ---- ssh_session.c -------------------------------------------------------------------- */

/* The callbacks of a new session channel. */
void session_channel_setup(struct conn_channel *channel);
/* Runs a pending request, follows the process, sends exit status/EOF/close when done. */
void session_channel_service(struct conn_channel *channel);
/* The fds to poll for it (process event fd). */
int session_event_fd(const struct conn_channel *channel);
void session_channel_release(struct conn_channel *channel);
/* "shed: <text>" as one line on the channel's stderr (dropped if the window is full). */
void session_send_line(struct conn_channel *channel, const char *text);

/* ---- ssh_forward.c -------------------------------------------------------------------- */

/* The message callback for what the typed callbacks do not cover: direct-tcpip opens. 0:
 * answered here; 1: libssh's default answer (refusal). */
int forward_on_message(ssh_session session, ssh_message message, void *userdata);
/* The in-shed agent socket of the connection (made on first use); NULL when unavailable. */
const char *forward_agent_socket(struct conn *conn);
/* A process in the shed connected to the agent socket: open an auth-agent channel for it. */
void forward_agent_accept(struct conn *conn);
/* Finishes the open of agent channels (their confirmation arrives as packets). */
void forward_agent_service(struct conn_channel *channel);
/* The common service of a byte channel (direct-tcpip, agent): EOFs and close. */
void forward_channel_service(struct conn_channel *channel);

#endif
