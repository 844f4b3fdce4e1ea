/* The backend interface: what runs a shed (container under runc, qemu, firecracker, vz).
 *
 * A backend is a table of function pointers plus a name and its own state. The API layer
 * never knows which backend it drives: a new backend plugs in by adding its table to the
 * backend set (backend_set_new in runtime/backend_set.c, the one place that builds it for
 * the server and the local commands alike), with no change to the API.
 *
 * Ownership and locking: every call that changes a shed (create/start/stop/delete) is made
 * with the shed's lock held (instance_store_lock), so a backend never sees two lifecycle
 * calls for one shed at once; calls for different sheds may run concurrently on different
 * threads. status/exec/dial/spawn/listen may run concurrently with anything and must not
 * block for long.
 *
 * Errors: every function returns 0 or -1 with err filled (shed_errf). Use SHED_E_BACKEND_ERROR
 * (or an internal code, reported as BACKEND_ERROR) for failures of the machinery, and the API
 * codes where one fits (SHED_E_NOT_SUPPORTED, SHED_E_CONNECT_FAILED, SHED_E_TMUX_NOT_AVAILABLE).
 * A function pointer left NULL means "this backend cannot do that": the API answers
 * 501 NOT_SUPPORTED. */
#ifndef SHED_BACKEND_H
#define SHED_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "common/shed_err.h"
#include "runtime/instance.h"

/* Progress reporting during create/start: phases of api.md ("image", "rootfs", "network",
 * "vm", "agent", "repo"; the container backend uses "container" for its own phase). A
 * warning is a non-fatal condition (e.g. a repo clone that failed). */
struct backend_progress {
    void (*report)(const char *phase, const char *message, bool warning, void *ctx);
    void *ctx;
    /* Set non-zero when the create is cancelled (DELETE of the starting shed, SIGTERM): a
     * long step (the repo clone) stops with SHED_E_INTERRUPTED. May be NULL. */
    volatile int *cancel;
    /* The configuration the request runs with (a create's repo policy: reloadable, so never
     * the one the backend was built with). NULL: the backend's own. */
    const struct shed_config *config;
};

static inline void backend_report(const struct backend_progress *progress, const char *phase,
                                  const char *message, bool warning)
{
    if (progress != NULL && progress->report != NULL)
        progress->report(phase, message, warning, progress->ctx);
}

/* A command to run inside a running shed. The fds are the host-side ends the command's
 * stdin/stdout/stderr are connected to (-1: /dev/null). */
struct backend_exec_request {
    const char *const *argv; /* NULL-terminated, argv[0] looked up in the shed's PATH */
    bool tty;                /* allocate a terminal; stdin_fd is then its controlling side */
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
};

/* ---- processes in a running shed (spawn) ------------------------------------------------
 *
 * What the SSH front door, sessions and `shed-server exec` run in a shed. A process is
 * started by a backend's spawn and then driven through the backend_process_* functions,
 * which work the same for every backend: wait on backend_process_event_fd in a poll loop,
 * signal it, resize its terminal, collect its exit. Freeing a process that still runs hangs
 * it up (SIGHUP to its process group, SIGKILL shortly after): a caller that goes away leaves
 * nothing running behind. */

/* A terminal's size: rows and columns, and pixels (0 when unknown). */
struct backend_winsize {
    uint16_t rows, cols, xpixels, ypixels;
};

struct backend_spawn_request {
    /* Without login: the command, argv[0] looked up in the PATH of env. */
    const char *const *argv;
    /* With login: run through root's login shell from the shed's /etc/passwd, as OpenSSH
     * does — command as `$SHELL -c command`, or command NULL for an interactive login shell;
     * HOME, SHELL, USER, LOGNAME and PATH are added to env unless it has them. */
    bool login;
    const char *command;
    /* "NAME=value" strings, NULL-terminated: the process gets exactly these. NULL: the
     * shed's default environment (what its init has: PATH, TERM, HOME, LANG). */
    const char *const *env;
    const char *cwd; /* NULL: / (HOME with login) */
    /* A new terminal of the shed's own (the process's controlling terminal, stdin, stdout
     * and stderr; `tty` in the shed names it), sized winsize (zero: the kernel's default). */
    bool tty;
    struct backend_winsize winsize;
    /* Without tty: what the process's stdin/stdout/stderr are (-1: /dev/null). The caller
     * keeps its fds (the process gets copies). */
    int stdin_fd, stdout_fd, stderr_fd;
    /* The longest starting may take (a wedged shed must not hang the caller); 0: 10 s. */
    int timeout_ms;
};

/* How a process ended. */
struct backend_exit {
    bool signaled;
    int code;  /* the exit code, when !signaled */
    int signo; /* the signal that killed it, when signaled */
    bool core_dumped;
};

/* As a shell reports it: the code, or 128+N when killed by signal N. */
static inline int backend_exit_status(const struct backend_exit *exit)
{
    return exit->signaled ? 128 + exit->signo : exit->code;
}

/* The exit status a missing command gets (as shells report it): spawn fails with code
 * SHED_E_NOT_FOUND and errno ENOENT when argv[0] does not exist in the shed. */
#define BACKEND_EXIT_NOT_FOUND 127

struct backend_process;

/* A backend's implementation of its processes. */
struct backend_process_ops {
    int (*signal)(struct backend_process *process, int signo, struct shed_err *err);
    /* 0 with *exit filled once the process has ended, 1 while it still runs after timeout_ms
     * (-1: wait as long as it takes), -1 on error (e.g. the shed stopped under it). */
    int (*wait)(struct backend_process *process, int timeout_ms, struct backend_exit *exit,
                struct shed_err *err);
    void (*free)(struct backend_process *process);
};

/* The backend-independent part of a process; backends embed it first in their own. */
struct backend_process {
    const struct backend_process_ops *ops;
    int pty_fd;   /* the terminal's master (read output, write input); -1 without tty */
    int event_fd; /* readable once backend_process_wait would not block */
    long pid;     /* the process's pid as the shed sees it (for logs); 0 when unknown */
};

static inline int backend_process_pty_fd(const struct backend_process *process)
{
    return process->pty_fd;
}

static inline int backend_process_event_fd(const struct backend_process *process)
{
    return process->event_fd;
}

static inline int backend_process_signal(struct backend_process *process, int signo,
                                         struct shed_err *err)
{
    return process->ops->signal(process, signo, err);
}

static inline int backend_process_wait(struct backend_process *process, int timeout_ms,
                                       struct backend_exit *exit, struct shed_err *err)
{
    return process->ops->wait(process, timeout_ms, exit, err);
}

/* Kills it if it still runs (see above); NULL is fine. */
static inline void backend_process_free(struct backend_process *process)
{
    if (process != NULL)
        process->ops->free(process);
}

/* Resizes the process's terminal (TIOCSWINSZ on the master: the shed sees SIGWINCH). */
int backend_process_resize(struct backend_process *process, const struct backend_winsize *size,
                           struct shed_err *err);

/* Copies between a local terminal (or any pair of fds) and the process's pty until the
 * process ends: in_fd to the pty, the pty to out_fd. A terminal in_fd is raw meanwhile, and
 * its size is copied to the pty at the start. signal_fd (-1: none) is a signalfd: SIGWINCH
 * copies in_fd's size to the pty again, any other signal is passed on to the process.
 * Fills *exit. */
int backend_process_relay_tty(struct backend_process *process, int in_fd, int out_fd, int signal_fd,
                              struct backend_exit *exit, struct shed_err *err);

/* A listening unix socket inside a running shed, made for SSH agent forwarding: processes
 * in the shed connect to path; the host accepts on fd. Its path is removed when it is
 * closed. */
struct backend_listener {
    int fd;
    char path[108];
    void (*close)(struct backend_listener *listener);
};

static inline void backend_listener_close(struct backend_listener *listener)
{
    if (listener != NULL)
        listener->close(listener);
}

struct shed_backend {
    /* "container", "qemu", "firecracker", "vz": the name stored in metadata.json. */
    const char *name;
    /* Backend-private state (e.g. paths to binaries, parsed per-backend config). */
    void *state;

    /* 0 when the backend can run sheds on this host; otherwise -1 with err saying why not
     * (e.g. "runc not found in PATH"). Used by `detect` and reported by the server. */
    int (*probe)(const struct shed_backend *self, struct shed_err *err);

    /* Prepares the backend's resources for a new shed whose rootfs is already cloned to
     * inst->rootfs_path, then starts it: on success inst->status is RUNNING and pid,
     * ip_address and backend_state are filled as the backend sees fit. On failure the backend
     * leaves nothing of its own behind (no mount, no container, no network namespace); the
     * caller removes the instance directory. */
    int (*create)(const struct shed_backend *self, struct instance *inst,
                  const struct backend_progress *progress, struct shed_err *err);
    /* Starts a stopped shed; updates inst (status RUNNING, pid, ...). */
    int (*start)(const struct shed_backend *self, struct instance *inst,
                 const struct backend_progress *progress, struct shed_err *err);
    /* Stops a running shed; updates inst (status STOPPED, pid 0). */
    int (*stop)(const struct shed_backend *self, struct instance *inst, struct shed_err *err);
    /* Releases everything the backend holds for a stopped shed (the caller removes the
     * instance directory afterwards). Must succeed on a half-created shed too. */
    int (*delete)(const struct shed_backend *self, struct instance *inst, struct shed_err *err);
    /* The shed's real state (RUNNING or STOPPED), without changing anything. Called on every
     * read of a shed, so it must be cheap: no process spawned per call. */
    int (*status)(const struct shed_backend *self, const struct instance *inst,
                  enum instance_status *status, struct shed_err *err);
    /* Runs a command in a running shed and waits for it; *exit_status is its exit code
     * (128+N when killed by signal N). */
    int (*exec)(const struct shed_backend *self, const struct instance *inst,
                const struct backend_exec_request *request, int *exit_status, struct shed_err *err);
    /* Connects to 127.0.0.1:port inside the shed's own network namespace; *fd is a
     * connected stream socket owned by the caller. SHED_E_CONNECT_FAILED when nothing
     * listens there. */
    int (*dial)(const struct shed_backend *self, const struct instance *inst, uint16_t port,
                int *fd, struct shed_err *err);
    /* Starts a process in a running shed (see backend_spawn_request); *process is the
     * caller's (backend_process_free). SHED_E_SHED_NOT_RUNNING, SHED_E_NOT_FOUND (with
     * errno ENOENT) for a command that does not exist in the shed. */
    int (*spawn)(const struct shed_backend *self, const struct instance *inst,
                 const struct backend_spawn_request *request, struct backend_process **process,
                 struct shed_err *err);
    /* Makes a listening unix socket inside a running shed (backend_listener). */
    int (*listen)(const struct shed_backend *self, const struct instance *inst,
                  struct backend_listener **listener, struct shed_err *err);
};

/* Backend names the API accepts in `backend` (api.md), "detect" included. */
static inline bool backend_name_is_known(const char *name)
{
    static const char *const known[] = {"firecracker", "vz", "qemu", "container", "detect"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i]) == 0)
            return true;
    return false;
}

/* The backends compiled into a program, in detection preference order (firecracker, qemu,
 * container). */
struct backend_set {
    const struct shed_backend *const *items;
    size_t count;
};

static inline const struct shed_backend *backend_set_find(const struct backend_set *set,
                                                          const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->items[i]->name, name) == 0)
            return set->items[i];
    return NULL;
}

struct shed_config;

/* The names of the backends this build runs, in `detect` order, NULL-terminated (what
 * backend_set_new builds; for help texts, which have no config). */
const char *const *backend_set_builtin_names(void);

/* Every backend this build runs, each built for this config (a backend carries state derived
 * from it). Used by the server and by every local command, so they drive a shed the same
 * way. Fails only on allocation errors: a backend that cannot run here is in the set and
 * says why through probe. Free with backend_set_free. */
int backend_set_new(const struct shed_config *config, struct backend_set **set,
                    struct shed_err *err);
void backend_set_free(struct backend_set *set);

/* The backend for a request: requested NULL or "" = configured ("detect" when NULL), and
 * "detect" = the first backend of the set whose probe succeeds. An unknown name →
 * SHED_E_INVALID_REQUEST; known but not built in → SHED_E_NOT_SUPPORTED; built in but not
 * usable on this host → SHED_E_BACKEND_ERROR with the probe's reason. */
int backend_set_resolve(const struct backend_set *set, const char *configured,
                        const char *requested, const struct shed_backend **backend,
                        struct shed_err *err);
/* What GET /api/info reports as "backend": the configured name, or with "detect" the first
 * backend that probes usable, or "none". */
void backend_set_describe_default(const struct backend_set *set, const char *configured, char *out,
                                  size_t outlen);

#endif
