/* Private to the container backend (backend_container.c and container_*.c).
 *
 * Layout of one shed, under <instance_dir>/<name>/:
 *   rootfs.ext4            the instance rootfs (cloned by the caller), or for an overlay shed
 *   upper.ext4             its own layer (container_overlay.c)
 *   console.log            the shed's stdout/stderr, and runc's own messages
 *   container/             0700: keeps host users out of the mounted rootfs
 *     config.json          the OCI runtime spec (container_spec.c); runc exec reads it too
 *     rootfs/              mount point of rootfs.ext4 (loop device, autoclear) while running,
 *                          or of the overlay
 *     upper/               overlay sheds: mount point of upper.ext4 while running
 *     init.pid             runc --pid-file: host pid of shed-init
 *     agent.sock           0600: the listening socket shed-init serves the agent protocol on
 *                          (runtime/agent_protocol.h, container_agent.c)
 *     netns                with container_network mode bridge: the shed's network namespace
 *                          (nsfs bind mount) while running; see container_network.h
 *     workspace/           with a local_dir: its staging bind mount while the shed starts
 * runc keeps its own state under <data_dir>/runc/<container id>/ (runc --root). */
#ifndef SHED_CONTAINER_INTERNAL_H
#define SHED_CONTAINER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/rotating_log.h"
#include "common/shed_err.h"
#include "container_network.h"
#include "runtime/backend.h"
#include "runtime/instance.h"
#include "runtime/local_dir.h"

/* Where in the shed shed-init is bind-mounted (read-only) and run from as PID 1. */
#define CONTAINER_INIT_DEST "/.shed/init"
/* How long stop waits for shed-init after SIGTERM (it gives its children 5 s), then after
 * SIGKILL. Ceilings for a stuck shed, not expected durations. */
#define CONTAINER_STOP_GRACE_MS 10000
#define CONTAINER_KILL_GRACE_MS 10000

/* The backend's private state: fixed at construction, read-only afterwards. */
struct container_state {
    char *runc_path;   /* absolute path of the runc binary */
    char *runc_root;   /* runc --root: <data_dir>/runc */
    char *init_path;   /* host path of the static shed-init binary */
    char *logger_path; /* host path of shed-logger, the console drainer */
    uint64_t console_log_max_bytes;
    char *instance_dir; /* config instance_dir */
    char *data_dir;     /* config data_dir */
    char *images_dir;   /* config images_dir: where overlay sheds' lowers are */
    char *lowers_dir;   /* <data_dir>/lowers: their shared read-only mounts */
    /* Parent of every shed's cgroup: "shed-<12 hex of sha256(instance_dir)>", so servers with
     * different data dirs on one host never share (or limit) each other's cgroups. */
    char cgroup_parent[32];
    struct container_network network;
    struct local_dir_policy local_dir;
    struct shed_config_container limits; /* config container: (plain values, copied) */
};

/* The paths of one shed (all malloc'd; container_paths_free releases them). */
struct container_paths {
    char *instance;     /* <instance_dir>/<name> */
    char *bundle;       /* <instance>/container */
    char *mountpoint;   /* <bundle>/rootfs */
    char *config_json;  /* <bundle>/config.json */
    char *pid_file;     /* <bundle>/init.pid */
    char *netns;        /* <bundle>/netns */
    char *workspace;    /* <bundle>/workspace: local_dir's staging mount while starting */
    char *console_log;  /* <instance>/console.log */
    char *rootfs_image; /* <instance>/rootfs.ext4 (for messages: opened by container_loop.c) */
    char *upper_image;  /* <instance>/upper.ext4: an overlay shed's own layer */
    char *upper_mount;  /* <bundle>/upper: its mount point while running */
    char *runc_state;   /* <runc_root>/<id> */
    char id[80];        /* runc container id: "shed-<name>" */
};

int container_paths_init(const struct container_state *state, const char *name,
                         struct container_paths *paths, struct shed_err *err);
void container_paths_free(struct container_paths *paths);

/* ---- container_loop.c: the rootfs on a loop device --------------------------------- */

/* Opens dir/name with flags (O_RDONLY, O_RDWR), resolved beneath dir: not a symlink, no magic
 * link, not on another mount, a regular file. */
int container_open_beneath(const char *dir, const char *name, int flags, int *fd,
                           struct shed_err *err);
/* Opens a disk of the shed (<instance>/rootfs.ext4 or upper.ext4) read-write, the path derived
 * from the instance directory (never taken from metadata.json) and resolved beneath it: not
 * a symlink, not on another mount, a regular file with one link (not a hardlink to some other
 * host file). */
int container_open_disk_image(const char *instance, enum instance_file file, int *fd,
                              struct shed_err *err);
int container_open_rootfs_image(const char *instance, int *fd, struct shed_err *err);
/* Attaches the open image to a free loop device (autoclear, so the device goes away with the
 * last mount) and mounts it as ext4 at mountpoint; image names it in messages. *device_out
 * (may be NULL) gets "/dev/loopN". read_only: a read-only loop device (LO_FLAGS_READ_ONLY)
 * mounted ro,noload: nothing can write the image. */
int container_mount_image(int image_fd, const char *image, const char *mountpoint, bool read_only,
                          char *device_out, size_t device_len, struct shed_err *err);
int container_mount_rootfs(int image_fd, const char *image, const char *mountpoint,
                           char *device_out, size_t device_len, struct shed_err *err);
/* Whether some loop device is still bound to image. */
bool container_loops_backed_by(const char *image);
/* Detaches every loop device still bound to image without a mount: what a process killed
 * between attaching and mounting leaves (autoclear acts only on a device a mount held). */
void container_release_loops(const char *image);
/* Unmounts mountpoint if something is mounted there; not mounted is not an error. */
int container_unmount_rootfs(const char *mountpoint, struct shed_err *err);
/* Whether mountpoint is a mount point (statx STATX_ATTR_MOUNT_ROOT; on kernels without it, a
 * different device than its parent). */
bool container_is_mounted(const char *mountpoint);

/* ---- container_overlay.c: an overlay shed's root -------------------------------------- */

/* The overlay's options besides its three directories (container_overlay.c says why). */
#define CONTAINER_OVERLAY_OPTIONS "index=on,xino=on,redirect_dir=on,metacopy=off"

/* Mounts the shed's lower (once per image, shared), its upper.ext4 and the overlay of both at
 * paths->mountpoint. On failure nothing of it stays mounted (a lower another shed uses stays). */
int container_overlay_mount(const struct container_state *state,
                            const struct container_paths *paths, const struct instance *inst,
                            struct shed_err *err);
/* Unmounts the overlay and upper.ext4 (waiting until the kernel released the file), then the
 * lower and every other lower when no overlay uses them any more. Nothing mounted is fine. */
int container_overlay_unmount(const struct container_state *state,
                              const struct container_paths *paths, const struct instance *inst,
                              struct shed_err *err);

/* ---- container_workspace.c: local_dir at /workspace ---------------------------------- */

/* Bind-mounts the directory of dir_fd (from local_dir_open) on staging (created 0700 when
 * missing), private, nosuid, nodev, keeping the source mount's ro/noexec/atime flags. */
int container_bind_workspace(int dir_fd, const char *staging, struct shed_err *err);
/* Unmounts staging if something is mounted there; not mounted is not an error. */
int container_unbind_workspace(const char *staging, struct shed_err *err);

/* ---- container_spec.c: the OCI runtime spec ----------------------------------------- */

struct container_spec_params {
    const char *hostname;
    const char *rootfs;    /* root.path, relative to the bundle or absolute */
    const char *init_path; /* host path of shed-init */
    const char *workspace; /* the staging mount of local_dir (bound at /workspace); NULL: none */
    const char *cgroups_path;
    const char *network_ns_path; /* join this network namespace; NULL: runc makes one */
    int cpus;                    /* 0: no limit */
    int memory_mb;               /* 0: no limit */
    int pids_limit;              /* pids.max */
    uint64_t tmp_size;           /* bytes of the /tmp tmpfs */
    int nofile;                  /* RLIMIT_NOFILE, soft and hard */
    uint32_t userns_base;        /* 0: no user namespace; else host id of the shed's 0 */
};

/* container_seccomp.c: the linux.seccomp object (Docker's default policy, io_uring refused). */
json_t *container_seccomp_json(void);

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
/* Whether one of pid's cgroups (any hierarchy of /proc/<pid>/cgroup) ends with /<cgroup>. */
bool container_proc_in_cgroup(pid_t pid, const char *cgroup);
/* True when pid is alive and still the process that started at start_time (pid reuse). */
bool container_proc_is(pid_t pid, uint64_t start_time);
/* Sends SIGTERM to the process, waits up to grace_ms for it to exit, then SIGKILL and waits
 * again. 0 when it is gone (or was gone already). */
int container_proc_terminate(pid_t pid, uint64_t start_time, int grace_ms, int kill_grace_ms,
                             struct shed_err *err);

/* ---- container_userns.c: user-namespace mode (config container.userns) --------------- */

/* An fd of a new user namespace mapping 0..65535 to base..base+65535 (uids and gids). */
int container_userns_fd(uint32_t base, int *fd, struct shed_err *err);
/* Replaces the mount at mountpoint by an idmapped clone of it with that mapping. */
int container_idmap_mount(const char *mountpoint, uint32_t base, struct shed_err *err);
/* Gives dirs (outermost first) group base and mode 0710: the mapped root may traverse them,
 * nothing more; the host's directories above the first must already have o+x. */
int container_userns_open_path(const char *const *dirs, size_t count, uint32_t base,
                               struct shed_err *err);

/* ---- container_console.c: the console pipe and its logger ----------------------------- */

/* Bytes of the console kept for an error message (runc's complaint). */
#define CONTAINER_CONSOLE_TAIL 2048

struct container_console {
    int read_fd;  /* the pipe's read end: ours until container_console_hand_off */
    int write_fd; /* the write end, for runc's stdout/stderr; ours until the wait */
    struct rotating_log log;
    char tail[CONTAINER_CONSOLE_TAIL + 1]; /* the last bytes drained, NUL-terminated */
    size_t tail_len;
};

/* The pipe, and console_log opened for the server's own draining. */
int container_console_open(struct container_console *console, const char *console_log,
                           uint64_t max_bytes, struct shed_err *err);
/* Closes our write end, then drains the pipe into console.log until child (runc) exits;
 * *exit_status as container_wait. */
int container_console_wait(struct container_console *console, pid_t child, int *exit_status,
                           struct shed_err *err);
/* Hands the read end to shed-logger (logger_path) and moves the logger into the cgroups of
 * init_pid. The console is closed on our side afterwards. */
int container_console_hand_off(struct container_console *console, const char *logger_path,
                               const char *console_log, uint64_t max_bytes, pid_t init_pid,
                               struct shed_err *err);
void container_console_close(struct container_console *console);

/* container_cgroup.c: moves pid into every cgroup of member (all hierarchies); 0, or -1 when
 * one of them could not be joined. */
int container_cgroup_join(pid_t member, pid_t pid);

/* ---- container_dial.c: connecting inside the shed's network namespace --------------- */

int container_dial(pid_t init_pid, uint64_t init_start_time, uint16_t port, int *fd,
                   struct shed_err *err);

/* ---- container_repo.c: the repo cloned into /workspace ------------------------------- */

/* repo_clone (runtime/repo.h) into <rootfs>/workspace with the repo policy of
 * progress->config, the tree then owned by the shed's root; progress->cancel (may be NULL)
 * kills git. */
int container_clone_repo(const struct backend_progress *progress, const char *rootfs,
                         const char *repo, struct shed_err *err);

#endif
