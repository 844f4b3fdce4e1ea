/* Private to the container backend (backend_container.c and container_*.c).
 *
 * Layout of one shed, under <instance_dir>/<name>/:
 *   rootfs.ext4            the instance rootfs (cloned by the caller)
 *   console.log            the shed's stdout/stderr, and runc's own messages
 *   container/             0700: keeps host users out of the mounted rootfs
 *     config.json          the OCI runtime spec (container_spec.c); runc exec reads it too
 *     rootfs/              mount point of rootfs.ext4 (loop device, autoclear) while running
 *     init.pid             runc --pid-file: host pid of shed-init
 *     agent.sock           0600: the listening socket shed-init serves the agent protocol on
 *                          (runtime/agent_protocol.h, container_agent.c)
 *     netns                with container_network mode bridge: the shed's network namespace
 *                          (nsfs bind mount) while running; see container_network.h
 * runc keeps its own state under <data_dir>/runc/<container id>/ (runc --root). */
#ifndef SHED_CONTAINER_INTERNAL_H
#define SHED_CONTAINER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/shed_err.h"
#include "container_network.h"
#include "runtime/instance.h"

/* Where in the shed shed-init is bind-mounted (read-only) and run from as PID 1. */
#define CONTAINER_INIT_DEST "/.shed/init"
/* How long stop waits for shed-init after SIGTERM (it gives its children 5 s), then after
 * SIGKILL. Ceilings for a stuck shed, not expected durations. */
#define CONTAINER_STOP_GRACE_MS 10000
#define CONTAINER_KILL_GRACE_MS 10000

/* The backend's private state: fixed at construction, read-only afterwards. */
struct container_state {
    char *runc_path;    /* absolute path of the runc binary */
    char *runc_root;    /* runc --root: <data_dir>/runc */
    char *init_path;    /* host path of the static shed-init binary */
    char *instance_dir; /* config instance_dir */
    /* Parent of every shed's cgroup: "shed-<12 hex of sha256(instance_dir)>", so servers with
     * different data dirs on one host never share (or limit) each other's cgroups. */
    char cgroup_parent[32];
    struct container_network network;
};

/* The paths of one shed (all malloc'd; container_paths_free releases them). */
struct container_paths {
    char *instance;    /* <instance_dir>/<name> */
    char *bundle;      /* <instance>/container */
    char *mountpoint;  /* <bundle>/rootfs */
    char *config_json; /* <bundle>/config.json */
    char *pid_file;    /* <bundle>/init.pid */
    char *netns;       /* <bundle>/netns */
    char *console_log; /* <instance>/console.log */
    char *runc_state;  /* <runc_root>/<id> */
    char id[80];       /* runc container id: "shed-<name>" */
};

int container_paths_init(const struct container_state *state, const char *name,
                         struct container_paths *paths, struct shed_err *err);
void container_paths_free(struct container_paths *paths);

/* ---- container_loop.c: the rootfs on a loop device --------------------------------- */

/* Attaches image to a free loop device (autoclear, so the device goes away with the last
 * mount) and mounts it as ext4 at mountpoint. *device_out (may be NULL) gets "/dev/loopN". */
int container_mount_rootfs(const char *image, const char *mountpoint, char *device_out,
                           size_t device_len, struct shed_err *err);
/* Unmounts mountpoint if something is mounted there; not mounted is not an error. */
int container_unmount_rootfs(const char *mountpoint, struct shed_err *err);
/* Whether mountpoint is a mount point (a different device than its parent). */
bool container_is_mounted(const char *mountpoint);

/* ---- container_spec.c: the OCI runtime spec ----------------------------------------- */

struct container_spec_params {
    const char *hostname;
    const char *rootfs;    /* root.path, relative to the bundle or absolute */
    const char *init_path; /* host path of shed-init */
    const char *local_dir; /* bind-mounted at /workspace; NULL or "" for none */
    const char *cgroups_path;
    const char *network_ns_path; /* join this network namespace; NULL: runc makes one */
    int cpus;                    /* 0: no limit */
    int memory_mb;               /* 0: no limit */
};

/* Writes config.json atomically. */
int container_spec_write(const char *path, const struct container_spec_params *params,
                         struct shed_err *err);

/* ---- container_proc.c: processes ---------------------------------------------------- */

/* Spawns argv[0] (absolute path, or looked up in PATH) with the given fds as stdin/stdout/
 * stderr (-1: /dev/null), every other fd closed, default signal dispositions and an empty
 * signal mask (the server blocks SIGTERM and ignores SIGPIPE; children must not inherit
 * that), in a new session when new_session (so a terminal's ^C never reaches the shed). */
int container_spawn(const char *const *argv, int stdin_fd, int stdout_fd, int stderr_fd,
                    bool new_session, pid_t *pid, struct shed_err *err);
/* container_spawn with any number of fds: fds[0..2] as stdin/stdout/stderr (-1:
 * /dev/null), fds[3..count) passed at their index (e.g. runc run --preserve-fds). */
int container_spawn_fds(const char *const *argv, const int *fds, size_t count, bool new_session,
                        pid_t *pid, struct shed_err *err);
/* Spawns argv in a new session whose controlling terminal is tty_path (a pty slave), as its
 * stdin, stdout and stderr. */
int container_spawn_on_terminal(const char *const *argv, const char *tty_path, pid_t *pid,
                                struct shed_err *err);
/* Waits for a spawned child; *exit_status is its exit code, or 128+N when killed by N. */
int container_wait(pid_t pid, int *exit_status, struct shed_err *err);
/* Runs argv to completion with stdout+stderr captured (the last max_output bytes are kept;
 * *output is malloc'd and NUL-terminated, may be NULL when not wanted). */
int container_run_capture(const char *const *argv, int *exit_status, char **output,
                          size_t max_output, struct shed_err *err);

/* The start time of pid (field 22 of /proc/<pid>/stat, clock ticks since boot) and whether
 * it is alive (not a zombie). -1 with errno ESRCH when it is gone. */
int container_proc_start_time(pid_t pid, uint64_t *start_time, bool *alive);
/* True when pid is alive and still the process that started at start_time (pid reuse). */
bool container_proc_is(pid_t pid, uint64_t start_time);
/* Sends SIGTERM to the process, waits up to grace_ms for it to exit, then SIGKILL and waits
 * again. 0 when it is gone (or was gone already). */
int container_proc_terminate(pid_t pid, uint64_t start_time, int grace_ms, int kill_grace_ms,
                             struct shed_err *err);

/* ---- container_dial.c: connecting inside the shed's network namespace --------------- */

int container_dial(pid_t init_pid, uint64_t init_start_time, uint16_t port, int *fd,
                   struct shed_err *err);

/* ---- container_repo.c: the repo cloned into /workspace ------------------------------- */

/* "owner/repo" → https://github.com/owner/repo.git; anything else is passed to git as is. */
char *container_repo_url(const char *repo);
/* git clone into <rootfs>/workspace (which must not be a symlink or a non-empty dir). */
int container_clone_repo(const char *rootfs, const char *repo, struct shed_err *err);

#endif
