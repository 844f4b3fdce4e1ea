/* The wire protocol between the host and the agent in a container shed (shed-init, PID 1),
 * shared by both ends: cmd/shed-init/main.c (the agent) and runtime/container_agent.c (the
 * host). Header-only and dependency-free, because shed-init is a static program that links
 * none of the modules.
 *
 * Transport: the container backend makes a listening AF_UNIX stream socket
 * <bundle>/agent.sock (bundle dir 0700, socket 0600) before `runc run` and hands it to the
 * shed's init with `runc run --preserve-fds 1`: it arrives as fd 3. Only host root can reach
 * the path; nothing inside the shed can (the bundle is not in the shed's mount namespace).
 *
 * One connection = one request: a SPAWN (one process) or a LISTEN (one socket in the shed).
 *
 * Frames: u32 payload length, u32 type, then the payload; integers little-endian, a string
 * is u32 length + bytes (no NUL). File descriptors travel as SCM_RIGHTS with the first byte
 * of a frame's header. Every size is bounded (below); a malformed or oversized frame closes
 * the connection. Every request carries the protocol version first.
 *
 *   host -> agent  SPAWN   u32 version, u32 flags, u16 rows, u16 cols, u16 xpixels,
 *                          u16 ypixels, string cwd ("" = / or HOME with LOGIN),
 *                          u32 argc, argc strings, u32 envc, envc strings ("K=V");
 *                          without TTY: one fd per HAS_STDIN/HAS_STDOUT/HAS_STDERR flag,
 *                          in that order (a stream the process does not get is /dev/null)
 *                  SIGNAL  u32 signo: to the process (its process group with a TTY)
 *                  LISTEN  u32 version
 *   agent -> host  STARTED u32 pid (in the shed's PID namespace); with TTY the pty master fd
 *                  ERROR   u32 errno, string message (the request failed; ENOENT: no such
 *                          command, which the host reports as exit status 127)
 *                  EXITED  u32 wait status (as waitpid(2) encodes it)
 *                  LISTENING string path, the listening socket's fd
 *
 * SPAWN flags: TTY: the process gets a new pty of the shed's devpts as its controlling
 * terminal (so `tty` names /dev/pts/N); the host resizes it with TIOCSWINSZ on the master.
 * LOGIN: run through root's login shell from the shed's /etc/passwd, as OpenSSH does: argc 0
 * = an interactive login shell ("-bash"), argc 1 = `$SHELL -c argv[0]`; HOME, SHELL, USER,
 * LOGNAME and PATH are added to the environment unless given. Without LOGIN, argv[0] is
 * looked up in the PATH of the given environment. The process gets exactly the environment
 * sent (the agent's own never leaks), a new session, every other fd closed.
 *
 * A connection closed by the host while its process runs hangs the process up: SIGHUP (and
 * SIGCONT) to its process group, SIGKILL after AGENT_HANGUP_GRACE_MS. A process that exited
 * normally leaves what it started in the background alone. A LISTEN socket's path (in a
 * fresh 0700 directory under /tmp) is removed when its connection closes. */
#ifndef SHED_AGENT_PROTOCOL_H
#define SHED_AGENT_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_PROTOCOL_VERSION 1u
/* The socket's name in the bundle directory. */
#define AGENT_SOCKET_NAME "agent.sock"

/* Limits, enforced by both ends. */
#define AGENT_FRAME_MAX (1u << 20)        /* payload bytes of one frame */
#define AGENT_ARGS_BYTES_MAX (256u << 10) /* argv + env + cwd bytes of a SPAWN */
#define AGENT_ARGV_MAX 4096u
#define AGENT_ENV_MAX 1024u
#define AGENT_MESSAGE_MAX 512u
#define AGENT_PATH_MAX 108u /* sun_path */
#define AGENT_FDS_MAX 3u
/* How long the agent waits for a request to arrive whole once connected. */
#define AGENT_REQUEST_TIMEOUT_MS 10000
/* Between SIGHUP and SIGKILL for the process of a connection the host closed. */
#define AGENT_HANGUP_GRACE_MS 2000
/* Connections the agent serves at once; more are closed at once. */
#define AGENT_CONNECTIONS_MAX 512u

#define AGENT_HEADER_SIZE 8u

enum agent_frame_type {
    AGENT_FRAME_SPAWN = 1,
    AGENT_FRAME_SIGNAL = 2,
    AGENT_FRAME_LISTEN = 3,
    AGENT_FRAME_STARTED = 16,
    AGENT_FRAME_ERROR = 17,
    AGENT_FRAME_EXITED = 18,
    AGENT_FRAME_LISTENING = 19,
};

enum agent_spawn_flag {
    AGENT_SPAWN_TTY = 1u << 0,
    AGENT_SPAWN_LOGIN = 1u << 1,
    AGENT_SPAWN_HAS_STDIN = 1u << 2,
    AGENT_SPAWN_HAS_STDOUT = 1u << 3,
    AGENT_SPAWN_HAS_STDERR = 1u << 4,
};
#define AGENT_SPAWN_KNOWN_FLAGS 0x1fu

/* ---- writing: a growable buffer with the header reserved at the front ---------------- */

struct agent_writer {
    unsigned char *data;
    size_t len, capacity;
    bool failed; /* out of memory or over AGENT_FRAME_MAX: the frame must not be sent */
};

static inline void agent_put_bytes(struct agent_writer *w, const void *bytes, size_t len)
{
    if (w->failed)
        return;
    if (len > AGENT_HEADER_SIZE + AGENT_FRAME_MAX - w->len) {
        w->failed = true;
        return;
    }
    if (w->len + len > w->capacity) {
        size_t capacity = w->capacity ? w->capacity : 256;
        while (capacity < w->len + len)
            capacity *= 2;
        unsigned char *grown = (unsigned char *)realloc(w->data, capacity);
        if (grown == NULL) {
            w->failed = true;
            return;
        }
        w->data = grown;
        w->capacity = capacity;
    }
    if (len > 0)
        memcpy(w->data + w->len, bytes, len);
    w->len += len;
}

static inline void agent_put_u16(struct agent_writer *w, uint16_t value)
{
    unsigned char raw[2] = {(unsigned char)value, (unsigned char)(value >> 8)};
    agent_put_bytes(w, raw, 2);
}

static inline void agent_put_u32(struct agent_writer *w, uint32_t value)
{
    unsigned char raw[4] = {(unsigned char)value, (unsigned char)(value >> 8),
                            (unsigned char)(value >> 16), (unsigned char)(value >> 24)};
    agent_put_bytes(w, raw, 4);
}

static inline void agent_put_string(struct agent_writer *w, const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;
    agent_put_u32(w, (uint32_t)len);
    agent_put_bytes(w, text, len);
}

/* Starts a frame of type: the header's length is filled in by agent_frame_finish. */
static inline void agent_frame_begin(struct agent_writer *w, enum agent_frame_type type)
{
    w->len = 0;
    w->failed = false;
    agent_put_u32(w, 0);
    agent_put_u32(w, (uint32_t)type);
}

/* Fills in the payload length; false when the frame cannot be sent. */
static inline bool agent_frame_finish(struct agent_writer *w)
{
    if (w->failed || w->len < AGENT_HEADER_SIZE)
        return false;
    uint32_t payload = (uint32_t)(w->len - AGENT_HEADER_SIZE);
    unsigned char raw[4] = {(unsigned char)payload, (unsigned char)(payload >> 8),
                            (unsigned char)(payload >> 16), (unsigned char)(payload >> 24)};
    memcpy(w->data, raw, 4);
    return true;
}

static inline void agent_writer_free(struct agent_writer *w)
{
    free(w->data);
    w->data = NULL;
    w->len = w->capacity = 0;
}

/* ---- reading: bounds-checked cursor over a received payload --------------------------- */

struct agent_reader {
    const unsigned char *data;
    size_t len, off;
    bool failed; /* read past the end or a bound broken: the frame is malformed */
};

static inline uint32_t agent_get_le(const unsigned char *raw, int bytes)
{
    uint32_t value = 0;
    for (int i = bytes - 1; i >= 0; i--)
        value = value << 8 | raw[i];
    return value;
}

/* The header's payload length and type. */
static inline void agent_header_parse(const unsigned char header[AGENT_HEADER_SIZE],
                                      uint32_t *payload_len, uint32_t *type)
{
    *payload_len = agent_get_le(header, 4);
    *type = agent_get_le(header + 4, 4);
}

static inline uint32_t agent_get_u32(struct agent_reader *r)
{
    if (r->failed || r->len - r->off < 4) {
        r->failed = true;
        return 0;
    }
    uint32_t value = agent_get_le(r->data + r->off, 4);
    r->off += 4;
    return value;
}

static inline uint16_t agent_get_u16(struct agent_reader *r)
{
    if (r->failed || r->len - r->off < 2) {
        r->failed = true;
        return 0;
    }
    uint16_t value = (uint16_t)agent_get_le(r->data + r->off, 2);
    r->off += 2;
    return value;
}

/* A string as a malloc'd NUL-terminated copy, at most max bytes and without NULs inside;
 * NULL (and the reader failed) otherwise. */
static inline char *agent_get_string(struct agent_reader *r, size_t max)
{
    uint32_t len = agent_get_u32(r);
    if (r->failed || len > max || r->len - r->off < len ||
        memchr(r->data + r->off, '\0', len) != NULL) {
        r->failed = true;
        return NULL;
    }
    char *text = (char *)malloc((size_t)len + 1);
    if (text == NULL) {
        r->failed = true;
        return NULL;
    }
    memcpy(text, r->data + r->off, len);
    text[len] = '\0';
    r->off += len;
    return text;
}

/* True when the payload was read exactly to its end without error. */
static inline bool agent_reader_done(const struct agent_reader *r)
{
    return !r->failed && r->off == r->len;
}

#endif
