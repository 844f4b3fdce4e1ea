/* The container backend's table: lifecycle orchestration over container_*.c. */
#include "backend_container.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "common/testhook.h"
#include "container_agent.h"
#include "container_internal.h"
#include "container_runc.h"
#include "runtime/local_dir.h"

/* ---- paths --------------------------------------------------------------------------- */

int container_paths_init(const struct container_state *state, const char *name,
                         struct container_paths *paths, struct shed_err *err)
{
    memset(paths, 0, sizeof *paths);
    snprintf(paths->id, sizeof paths->id, "shed-%s", name);
    paths->instance = fs_path_join(state->instance_dir, name);
    if (paths->instance != NULL) {
        paths->bundle = fs_path_join(paths->instance, "container");
        paths->console_log =
            fs_path_join(paths->instance, instance_file_name(INSTANCE_FILE_CONSOLE_LOG));
        paths->rootfs_image =
            fs_path_join(paths->instance, instance_file_name(INSTANCE_FILE_ROOTFS));
        paths->upper_image = fs_path_join(paths->instance, instance_file_name(INSTANCE_FILE_UPPER));
    }
    if (paths->bundle != NULL) {
        paths->mountpoint = fs_path_join(paths->bundle, "rootfs");
        paths->config_json = fs_path_join(paths->bundle, "config.json");
        paths->pid_file = fs_path_join(paths->bundle, "init.pid");
        paths->netns = fs_path_join(paths->bundle, "netns");
        paths->workspace = fs_path_join(paths->bundle, "workspace");
        paths->upper_mount = fs_path_join(paths->bundle, "upper");
    }
    paths->runc_state = fs_path_join(state->runc_root, paths->id);
    if (paths->mountpoint == NULL || paths->config_json == NULL || paths->pid_file == NULL ||
        paths->netns == NULL || paths->workspace == NULL || paths->console_log == NULL ||
        paths->rootfs_image == NULL || paths->runc_state == NULL || paths->upper_image == NULL ||
        paths->upper_mount == NULL) {
        container_paths_free(paths);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

void container_paths_free(struct container_paths *paths)
{
    free(paths->instance);
    free(paths->bundle);
    free(paths->mountpoint);
    free(paths->config_json);
    free(paths->pid_file);
    free(paths->netns);
    free(paths->workspace);
    free(paths->console_log);
    free(paths->rootfs_image);
    free(paths->upper_image);
    free(paths->upper_mount);
    free(paths->runc_state);
    memset(paths, 0, sizeof *paths);
}

static void cleanup_paths(struct container_paths *paths)
{
    container_paths_free(paths);
}
#define cleanup_container_paths __attribute__((cleanup(cleanup_paths)))

static const struct container_state *state_of(const struct shed_backend *self)
{
    return self->state;
}

/* ---- the recorded init process ------------------------------------------------------- */

/* inst->backend_state: {"container_id", "init_start_time", "loop_device"}. */
static uint64_t recorded_start_time(const struct instance *inst)
{
    json_t *value = inst->backend_state != NULL
                        ? json_object_get(inst->backend_state, "init_start_time")
                        : NULL;
    return json_is_integer(value) ? (uint64_t)json_integer_value(value) : 0;
}

/* Whether the recorded pid is in this shed's cgroup: a pid (and start time) edited into
 * metadata.json must never get a host process signalled, entered (dial, exec) or reported
 * as the shed. */
static bool init_in_shed_cgroup(const struct container_state *state, const struct instance *inst)
{
    char cgroup[INSTANCE_NAME_MAX + 48];
    snprintf(cgroup, sizeof cgroup, "%s/%s", state->cgroup_parent, inst->name);
    return container_proc_in_cgroup(inst->pid, cgroup);
}

static bool init_is_running(const struct container_state *state, const struct instance *inst)
{
    if (inst->pid <= 0 || !init_in_shed_cgroup(state, inst))
        return false;
    uint64_t start_time = recorded_start_time(inst);
    if (start_time != 0)
        return container_proc_is(inst->pid, start_time);
    /* No start time recorded (metadata written by hand or by an older version): the pid
     * alone, alive and not a zombie. */
    uint64_t ignored = 0;
    bool alive = false;
    return container_proc_start_time(inst->pid, &ignored, &alive) == 0 && alive;
}

static int record_running(struct instance *inst, const struct container_paths *paths, pid_t pid,
                          uint64_t start_time, const char *loop_device, struct shed_err *err)
{
    json_t *state = json_pack("{s:s, s:I, s:s}", "container_id", paths->id, "init_start_time",
                              (json_int_t)start_time, "loop_device", loop_device);
    if (state == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    json_decref(inst->backend_state);
    inst->backend_state = state;
    inst->pid = pid;
    inst->status = INSTANCE_RUNNING;
    return 0;
}

/* ---- start and teardown -------------------------------------------------------------- */

/* Everything the shed holds on the host, released in reverse order of acquisition; each
 * step is a no-op when there is nothing to release, so this serves stop, delete, failed
 * creates and the leftovers of a shed that died behind our back. */
static int teardown(const struct container_state *state, const struct container_paths *paths,
                    const struct instance *inst, struct shed_err *err)
{
    if (inst->pid > 0 && init_in_shed_cgroup(state, inst) &&
        container_proc_terminate(inst->pid, recorded_start_time(inst), CONTAINER_STOP_GRACE_MS,
                                 CONTAINER_KILL_GRACE_MS, err) < 0)
        return -1;
    if (runc_delete_force(state, paths, err) < 0 ||
        container_network_teardown(paths->netns, inst->ip_address, err) < 0 ||
        container_unbind_workspace(paths->workspace, err) < 0)
        return -1;
    if (inst->disk == INSTANCE_DISK_OVERLAY)
        return container_overlay_unmount(state, paths, inst, err);
    if (container_unmount_rootfs(paths->mountpoint, err) < 0)
        return -1;
    container_release_loops(paths->rootfs_image);
    return 0;
}

/* RLIMIT_NOFILE as configured, but not above the server's own hard limit: raising that needs
 * CAP_SYS_RESOURCE, which a server may run without (runc would then fail the start). */
static int nofile_limit(int configured)
{
    struct rlimit own;
    if (getrlimit(RLIMIT_NOFILE, &own) == 0 && own.rlim_max != RLIM_INFINITY &&
        own.rlim_max < (rlim_t)configured)
        return (int)own.rlim_max;
    return configured;
}

static int write_spec(const struct container_state *state, const struct container_paths *paths,
                      const struct instance *inst, bool workspace, struct shed_err *err)
{
    /* The same path as init_in_shed_cgroup checks. */
    char cgroups_path[INSTANCE_NAME_MAX + 48];
    snprintf(cgroups_path, sizeof cgroups_path, "%s/%s", state->cgroup_parent, inst->name);
    struct container_spec_params params = {
        .hostname = inst->name,
        .rootfs = "rootfs",
        .init_path = state->init_path,
        .workspace = workspace ? paths->workspace : NULL,
        .cgroups_path = cgroups_path,
        .network_ns_path = state->network.enabled ? paths->netns : NULL,
        .cpus = inst->cpus,
        .memory_mb = inst->memory_mb,
        .pids_limit = state->limits.pids_limit,
        .tmp_size = state->limits.tmp_size,
        .nofile = nofile_limit(state->limits.nofile),
        .userns_base = state->limits.userns ? state->limits.userns_base : 0,
    };
    return container_spec_write(paths->config_json, &params, err);
}

static int make_bundle_dirs(const struct container_paths *paths, struct shed_err *err)
{
    if (mkdir(paths->bundle, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "mkdir %s", paths->bundle);
    if (mkdir(paths->mountpoint, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "mkdir %s", paths->mountpoint);
    return 0;
}

/* The instance's own rootfs.ext4 (whatever rootfs_path metadata.json records) on a loop
 * device at the mount point; for an overlay shed the overlay of its lower and upper.ext4. */
static int mount_rootfs(const struct container_state *state, const struct container_paths *paths,
                        const struct instance *inst, char loop_device[64], struct shed_err *err)
{
    if (inst->disk == INSTANCE_DISK_OVERLAY)
        return container_overlay_mount(state, paths, inst, err);
    cleanup_close int image_fd = -1;
    if (container_open_rootfs_image(paths->instance, &image_fd, err) < 0)
        return -1;
    return container_mount_rootfs(image_fd, paths->rootfs_image, paths->mountpoint, loop_device, 64,
                                  err);
}

/* container.userns: the rootfs idmapped (after the repo clone, which writes on the plain
 * mount and leaves the tree owned by 0 on disk, the mapped root inside), and the way to it
 * open to the mapped root. */
static int prepare_userns(const struct container_state *state, const struct container_paths *paths,
                          struct shed_err *err)
{
    uint32_t base = state->limits.userns_base;
    if (container_idmap_mount(paths->mountpoint, base, err) < 0)
        return -1;
    const char *dirs[] = {state->data_dir, state->instance_dir, paths->instance, paths->bundle};
    size_t first = state->data_dir != NULL && strncmp(state->instance_dir, state->data_dir,
                                                      strlen(state->data_dir)) == 0
                       ? 0
                       : 1;
    return container_userns_open_path(dirs + first, sizeof dirs / sizeof dirs[0] - first, base,
                                      err);
}

/* With egress configured: the shed's namespace, wired to the bridge before runc joins it;
 * the address is recorded in inst (stable: a shed that has one keeps it). */
static int setup_network(const struct container_state *state, const struct container_paths *paths,
                         struct instance *inst, const struct backend_progress *progress,
                         struct shed_err *err)
{
    if (!state->network.enabled) {
        backend_report(progress, "network", "Own network namespace (loopback only)", false);
        return 0;
    }
    char ip[CONTAINER_IP_MAX] = "";
    if (inst->ip_address != NULL)
        snprintf(ip, sizeof ip, "%s", inst->ip_address);
    if (container_network_setup(&state->network, inst->name, paths->netns, ip, err) < 0) {
        /* A lease this call took goes back: the shed had no address before. */
        struct shed_err ignored = {0};
        if (inst->ip_address == NULL || inst->ip_address[0] == '\0')
            container_network_release(&state->network, inst->name, ip, &ignored);
        return -1;
    }
    char message[128];
    snprintf(message, sizeof message, "Own network namespace, %s on bridge %s", ip,
             state->network.bridge);
    backend_report(progress, "network", message, false);
    return instance_set_string(&inst->ip_address, ip, err);
}

/* After a failed launch: an address this launch leased is given back. */
static void release_new_lease(const struct container_state *state, struct instance *inst,
                              bool had_address)
{
    struct shed_err ignored = {0};
    if (had_address || inst->ip_address == NULL)
        return;
    container_network_release(&state->network, inst->name, inst->ip_address, &ignored);
    free(inst->ip_address);
    inst->ip_address = NULL;
}

/* local_dir's staging mount exists only while runc sets the shed up: runc binds it into the
 * shed's own mount namespace, and the host's copy goes right after. */
static int run_runc(const struct container_state *state, const struct container_paths *paths,
                    const struct instance *inst, int workspace_fd,
                    struct container_console *console, struct shed_err *err)
{
    if (workspace_fd >= 0 && container_bind_workspace(workspace_fd, paths->workspace, err) < 0)
        return -1;
    cleanup_close int agent_fd = -1; /* the shed's init keeps its own copy */
    int rc = write_spec(state, paths, inst, workspace_fd >= 0, err);
    if (rc == 0)
        rc = container_agent_socket_create(paths, &agent_fd, err);
    if (rc == 0)
        rc = runc_run_detached(state, paths, console, agent_fd, err);
    struct shed_err unbind_err = {0};
    if (workspace_fd >= 0 && container_unbind_workspace(paths->workspace, &unbind_err) < 0 &&
        rc == 0) {
        *err = unbind_err;
        rc = -1;
    }
    return rc;
}

static void cleanup_console(struct container_console *console)
{
    container_console_close(console);
}

static int run_container(const struct container_state *state, const struct container_paths *paths,
                         struct instance *inst, int workspace_fd, const char *loop_device,
                         struct shed_err *err)
{
    __attribute__((cleanup(cleanup_console))) struct container_console console;
    if (container_console_open(&console, paths->console_log, state->console_log_max_bytes, err) < 0)
        return -1;
    if (run_runc(state, paths, inst, workspace_fd, &console, err) < 0)
        return -1;
    pid_t pid = 0;
    uint64_t start_time = 0;
    bool alive = false;
    if (runc_read_pid_file(paths, &pid, err) < 0)
        return -1;
    if (container_proc_start_time(pid, &start_time, &alive) < 0 || !alive)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "shed init (pid %d) exited right after start: see %s", (int)pid,
                         paths->console_log);
    if (container_console_hand_off(&console, state->logger_path, paths->console_log,
                                   state->console_log_max_bytes, pid, err) < 0)
        return -1;
    return record_running(inst, paths, pid, start_time, loop_device, err);
}

/* Mounts the rootfs, clones the repo (create only), starts the container. On failure
 * everything it set up is released again. */
static int launch(const struct container_state *state, struct instance *inst, bool clone_repo,
                  const struct backend_progress *progress, struct shed_err *err)
{
    cleanup_container_paths struct container_paths paths;
    if (container_paths_init(state, inst->name, &paths, err) < 0)
        return -1;
    /* Checked again at every start: the config (local_dir_roots) or the host may have changed
     * since the create. */
    cleanup_close int workspace_fd = -1;
    if (inst->local_dir[0] != '\0' &&
        local_dir_open(&state->local_dir, inst->local_dir, &workspace_fd, err) < 0)
        return -1;
    if (teardown(state, &paths, inst, err) < 0)
        return shed_err_prefix(err, "cannot clean up the previous run of shed \"%s\"", inst->name);
    inst->pid = 0;
    char loop_device[64] = "";
    backend_report(progress, "rootfs", "Mounting the root filesystem", false);
    if (make_bundle_dirs(&paths, err) < 0 ||
        mount_rootfs(state, &paths, inst, loop_device, err) < 0)
        return -1;
    shed_test_pause("container-mounted");
    int rc = 0;
    if (clone_repo && inst->repo[0] != '\0') {
        char message[256];
        snprintf(message, sizeof message, "Cloning %.200s into /workspace", inst->repo);
        backend_report(progress, "repo", message, false);
        rc = container_clone_repo(progress, paths.mountpoint, inst->repo, err);
        if (rc < 0)
            backend_report(progress, "repo", err->msg, true);
    }
    if (rc == 0 && state->limits.userns)
        rc = prepare_userns(state, &paths, err);
    bool had_address = inst->ip_address != NULL && inst->ip_address[0] != '\0';
    if (rc == 0)
        rc = setup_network(state, &paths, inst, progress, err);
    if (rc == 0) {
        backend_report(progress, "container", "Starting the container", false);
        rc = run_container(state, &paths, inst, workspace_fd, loop_device, err);
        if (rc == 0)
            shed_test_pause("container-running");
    }
    if (rc < 0) {
        struct shed_err ignored = {0};
        teardown(state, &paths, inst, &ignored);
        release_new_lease(state, inst, had_address);
        inst->pid = 0;
        inst->status = INSTANCE_STOPPED;
    }
    return rc;
}

/* ---- the table ----------------------------------------------------------------------- */

static int container_probe(const struct shed_backend *self, struct shed_err *err)
{
    const struct container_state *state = state_of(self);
    if (geteuid() != 0)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "needs root (runc, loop devices, mounts)");
    if (state->runc_path == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "runc not found in PATH");
    if (access(state->runc_path, X_OK) < 0)
        return shed_errf_errno(err, SHED_E_NOT_SUPPORTED, errno, "runc at %s", state->runc_path);
    if (access("/dev/loop-control", R_OK | W_OK) < 0)
        return shed_errf_errno(err, SHED_E_NOT_SUPPORTED, errno, "/dev/loop-control");
    if (access(state->init_path, X_OK) < 0)
        return shed_errf_errno(err, SHED_E_NOT_SUPPORTED, errno,
                               "shed-init not found next to the program at %s", state->init_path);
    if (access(state->logger_path, X_OK) < 0)
        return shed_errf_errno(err, SHED_E_NOT_SUPPORTED, errno,
                               "shed-logger not found next to the program at %s",
                               state->logger_path);
    return 0;
}

static int container_create(const struct shed_backend *self, struct instance *inst,
                            const struct backend_progress *progress, struct shed_err *err)
{
    return launch(state_of(self), inst, true, progress, err);
}

static int container_start(const struct shed_backend *self, struct instance *inst,
                           const struct backend_progress *progress, struct shed_err *err)
{
    if (init_is_running(state_of(self), inst))
        return shed_errf(err, SHED_E_SHED_ALREADY_RUNNING, "shed \"%s\" is already running",
                         inst->name);
    return launch(state_of(self), inst, false, progress, err);
}

static int container_stop(const struct shed_backend *self, struct instance *inst,
                          struct shed_err *err)
{
    cleanup_container_paths struct container_paths paths;
    if (container_paths_init(state_of(self), inst->name, &paths, err) < 0)
        return -1;
    if (teardown(state_of(self), &paths, inst, err) < 0)
        return shed_err_prefix(err, "cannot stop shed \"%s\"", inst->name);
    inst->status = INSTANCE_STOPPED;
    inst->pid = 0;
    return 0;
}

/* stop, and the address goes back to the pool. */
static int container_delete(const struct shed_backend *self, struct instance *inst,
                            struct shed_err *err)
{
    if (container_stop(self, inst, err) < 0 ||
        container_network_release(&state_of(self)->network, inst->name, inst->ip_address, err) < 0)
        return -1;
    free(inst->ip_address);
    inst->ip_address = NULL;
    return 0;
}

static int container_status(const struct shed_backend *self, const struct instance *inst,
                            enum instance_status *status, struct shed_err *err)
{
    (void)self;
    (void)err;
    *status = init_is_running(state_of(self), inst) ? INSTANCE_RUNNING : INSTANCE_STOPPED;
    return 0;
}

/* Whether name resolves to an executable regular file inside root (the mounted rootfs),
 * symlinks resolved as the shed sees them (RESOLVE_IN_ROOT), never escaping to the host. */
static bool executable_in_root(int root_fd, const char *name)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    cleanup_close int fd = (int)syscall(SYS_openat2, root_fd, name, &how, sizeof how);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return false;
    return S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

/* argv[0] looked up like the shed's PATH (config.json) would. Unknown (cannot look) counts
 * as found: runc then has the last word. */
static bool command_exists(const char *mountpoint, const char *command)
{
    static const char *const path_dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                            "/usr/bin",        "/sbin",          "/bin"};
    cleanup_close int root_fd = open(mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return true;
    if (strchr(command, '/') != NULL)
        return executable_in_root(root_fd, command);
    for (size_t i = 0; i < sizeof path_dirs / sizeof path_dirs[0]; i++) {
        char candidate[PATH_MAX];
        snprintf(candidate, sizeof candidate, "%s/%s", path_dirs[i], command);
        if (executable_in_root(root_fd, candidate))
            return true;
    }
    return false;
}

static void report_not_found(int stderr_fd, const char *command)
{
    if (stderr_fd < 0)
        return;
    char line[512];
    int len = snprintf(line, sizeof line, "shed: %.400s: command not found\n", command);
    if (len > 0 && write_all(stderr_fd, line, (size_t)len) < 0) {
        /* nothing more to say: the exit status tells */
    }
}

static int container_exec(const struct shed_backend *self, const struct instance *inst,
                          const struct backend_exec_request *request, int *exit_status,
                          struct shed_err *err)
{
    if (!init_is_running(state_of(self), inst))
        return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is not running", inst->name);
    if (request->argv == NULL || request->argv[0] == NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "no command to run");
    if (request->tty && !isatty(request->stdin_fd) && !isatty(request->stdout_fd))
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "a terminal was requested but neither stdin nor stdout is one");
    cleanup_container_paths struct container_paths paths;
    if (container_paths_init(state_of(self), inst->name, &paths, err) < 0)
        return -1;
    if (container_agent_present(&paths))
        return container_agent_exec(&paths, request, exit_status, err);
    if (!command_exists(paths.mountpoint, request->argv[0])) {
        report_not_found(request->stderr_fd, request->argv[0]);
        *exit_status = CONTAINER_EXIT_NOT_FOUND;
        return 0;
    }
    return runc_exec(state_of(self), &paths, request, exit_status, err);
}

static int container_dial_port(const struct shed_backend *self, const struct instance *inst,
                               uint16_t port, int *fd, struct shed_err *err)
{
    (void)self;
    if (!init_is_running(state_of(self), inst))
        return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is not running", inst->name);
    return container_dial(inst->pid, recorded_start_time(inst), port, fd, err);
}

/* Through the shed's agent; a shed started before it existed falls back to runc exec. */
static int container_spawn_process(const struct shed_backend *self, const struct instance *inst,
                                   const struct backend_spawn_request *request,
                                   struct backend_process **process, struct shed_err *err)
{
    if (!init_is_running(state_of(self), inst))
        return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is not running", inst->name);
    cleanup_container_paths struct container_paths paths;
    if (container_paths_init(state_of(self), inst->name, &paths, err) < 0)
        return -1;
    if (container_agent_present(&paths))
        return container_agent_spawn(&paths, request, process, err);
    return container_runc_spawn(state_of(self), &paths, request, process, err);
}

static int container_listen(const struct shed_backend *self, const struct instance *inst,
                            struct backend_listener **listener, struct shed_err *err)
{
    if (!init_is_running(state_of(self), inst))
        return shed_errf(err, SHED_E_SHED_NOT_RUNNING, "shed \"%s\" is not running", inst->name);
    cleanup_container_paths struct container_paths paths;
    if (container_paths_init(state_of(self), inst->name, &paths, err) < 0)
        return -1;
    if (!container_agent_present(&paths))
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "shed \"%s\" was started by an older shed-server: restart it", inst->name);
    return container_agent_listen(&paths, listener, err);
}

/* ---- construction -------------------------------------------------------------------- */

/* The absolute path of name in $PATH, or NULL. */
static char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    cleanup_free char *copy = strdup(path);
    if (copy == NULL)
        return NULL;
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        char *candidate = fs_path_join(dir, name);
        if (candidate != NULL && dir[0] == '/' && access(candidate, X_OK) == 0)
            return candidate;
        free(candidate);
    }
    return NULL;
}

/* shed-init and shed-logger are built next to shed-server (and installed next to it). */
static char *path_beside_program(const char *name)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return NULL;
    self[len] = '\0';
    return fs_path_join(dirname(self), name);
}

static void state_free(struct container_state *state)
{
    if (state == NULL)
        return;
    free(state->runc_path);
    free(state->runc_root);
    free(state->init_path);
    free(state->logger_path);
    free(state->instance_dir);
    free(state->data_dir);
    free(state->images_dir);
    free(state->lowers_dir);
    container_network_free(&state->network);
    local_dir_policy_free(&state->local_dir);
    free(state);
}

void container_backend_free(struct shed_backend *backend)
{
    if (backend == NULL)
        return;
    state_free(backend->state);
    free(backend);
}

static int derive_cgroup_parent(const char *instance_dir, char out[32])
{
    char digest[DIGEST_STRING_LEN + 1];
    if (sha256_digest_of(instance_dir, strlen(instance_dir), digest) < 0)
        return -1;
    snprintf(out, 32, "shed-%.12s", digest + strlen("sha256:"));
    return 0;
}

int container_backend_new(const struct shed_config *config, struct shed_backend **out,
                          struct shed_err *err)
{
    struct container_state *state = calloc(1, sizeof *state);
    struct shed_backend *backend = calloc(1, sizeof *backend);
    if (state == NULL || backend == NULL) {
        free(backend);
        free(state);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    state->runc_path = find_in_path("runc"); /* NULL: probe explains */
    state->runc_root = fs_path_join(config->data_dir, "runc");
    state->init_path = path_beside_program("shed-init");
    state->logger_path = path_beside_program("shed-logger");
    state->console_log_max_bytes = config->console_log_max_bytes;
    state->instance_dir = strdup(config->instance_dir);
    state->data_dir = strdup(config->data_dir);
    state->images_dir = strdup(config->images_dir);
    state->lowers_dir = fs_path_join(config->data_dir, "lowers");
    state->limits = config->container;
    int network_rc = container_network_init(&state->network, config, err);
    if (network_rc == 0)
        network_rc = local_dir_policy_init(&state->local_dir, config, err);
    *backend = (struct shed_backend){
        .name = CONTAINER_BACKEND_NAME,
        .state = state,
        .probe = container_probe,
        .create = container_create,
        .start = container_start,
        .stop = container_stop,
        .delete = container_delete,
        .status = container_status,
        .exec = container_exec,
        .dial = container_dial_port,
        .spawn = container_spawn_process,
        .listen = container_listen,
    };
    if (network_rc < 0) {
        container_backend_free(backend);
        return -1;
    }
    if (state->runc_root == NULL || state->init_path == NULL || state->logger_path == NULL ||
        state->instance_dir == NULL || state->data_dir == NULL || state->images_dir == NULL ||
        state->lowers_dir == NULL ||
        derive_cgroup_parent(state->instance_dir, state->cgroup_parent) < 0) {
        container_backend_free(backend);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    *out = backend;
    return 0;
}
