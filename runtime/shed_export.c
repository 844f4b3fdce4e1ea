/* shed_export: a shed's root, flattened into a plain ext4 (see shed_export.h).
 *
 * The mounts are the container backend's own helpers (container_internal.h): the same
 * loop devices (read-only for the lower), the same overlay options, so the tree written is
 * the one the shed sees. They happen in a child in a private mount namespace on a tmpfs
 * laid over the shed's stopped bundle, so nothing appears in (or can be left behind in) the
 * host's namespace and nothing is created on disk but the output. */
#include "shed_export.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_internal.h"
#include "imaged/ext4_writer.h"
#include "imaged/layout.h"

struct export_job {
    const struct shed_config *config;
    const struct instance *inst;
    const char *instance_dir; /* <instance_dir>/<name> */
    const char *tmp_path;     /* where the child writes */
    uint64_t size_bytes;
    const struct shed_export_opts *opts;
    int warn_fd; /* the child's warnings, one per line, for the parent to pass on */
};

/* ---- in the child ------------------------------------------------------------------------- */

static void child_warning(const char *message, void *ctx)
{
    const struct export_job *job = ctx;
    char line[700];
    int len = snprintf(line, sizeof line, "%s\n", message);
    if (len > 0 && write_all(job->warn_fd, line, (size_t)len) < 0) {
        /* the parent is gone: nothing to tell */
    }
}

/* The scratch directory: a tmpfs over the shed's bundle, visible only in our namespace. */
static int make_scratch(const char *instance_dir, char **scratch, struct shed_err *err)
{
    *scratch = fs_path_join(instance_dir, "container");
    if (*scratch == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (mkdir(*scratch, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_IO, errno, "mkdir %s", *scratch);
    if (mount("shed-export", *scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "mount a tmpfs on %s", *scratch);
    return 0;
}

static int scratch_dir(const char *scratch, const char *name, char **path, struct shed_err *err)
{
    *path = fs_path_join(scratch, name);
    if (*path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (mkdir(*path, 0700) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "mkdir %s", *path);
    return 0;
}

static int mount_disk(const char *instance_dir, enum instance_file file, const char *at,
                      struct shed_err *err)
{
    cleanup_close int fd = -1;
    cleanup_free char *image = fs_path_join(instance_dir, instance_file_name(file));
    if (image == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (container_open_disk_image(instance_dir, file, &fd, err) < 0)
        return -1;
    /* Read-write, so a journal left by a crash is replayed like at the next start. */
    return container_mount_image(fd, image, at, false, NULL, 0, err);
}

static int mount_lower(const struct export_job *job, const char *at, struct shed_err *err)
{
    cleanup_free char *image = image_layout_content_rootfs(
        job->config->images_dir, job->inst->lower.digest, job->inst->lower.size);
    cleanup_free char *dir = image_layout_content_dir(job->config->images_dir);
    if (image == NULL || dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = -1;
    if (container_open_beneath(dir, strrchr(image, '/') + 1, O_RDONLY, &fd, err) < 0)
        return shed_err_prefix(err, "the lower of shed \"%s\"", job->inst->name);
    return container_mount_image(fd, image, at, true, NULL, 0, err);
}

/* The shed's root, read-only, at <scratch>/root. */
static int assemble(const struct export_job *job, const char *scratch, char **root,
                    struct shed_err *err)
{
    if (scratch_dir(scratch, "root", root, err) < 0)
        return -1;
    if (job->inst->disk != INSTANCE_DISK_OVERLAY) {
        if (mount_disk(job->instance_dir, INSTANCE_FILE_ROOTFS, *root, err) < 0)
            return -1;
        return mount(NULL, *root, NULL, MS_REMOUNT | MS_RDONLY | MS_BIND, NULL) < 0
                   ? shed_errf_errno(err, SHED_E_IO, errno, "remount %s read-only", *root)
                   : 0;
    }
    cleanup_free char *lower = NULL, *upper = NULL;
    if (scratch_dir(scratch, "lower", &lower, err) < 0 ||
        scratch_dir(scratch, "upper", &upper, err) < 0 || mount_lower(job, lower, err) < 0 ||
        mount_disk(job->instance_dir, INSTANCE_FILE_UPPER, upper, err) < 0)
        return -1;
    cleanup_free char *options =
        str_printf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work," CONTAINER_OVERLAY_OPTIONS,
                   lower, upper, upper);
    if (options == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (mount("overlay", *root, "overlay", MS_RDONLY, options) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "mount the overlay of shed \"%s\" (%s)",
                               job->inst->name, options);
    return 0;
}

/* Deep trees keep a descriptor per level open. */
static void raise_nofile(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static int child_export(const struct export_job *job, struct shed_err *err)
{
    if (unshare(CLONE_NEWNS) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "unshare a mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "make the mounts private");
    raise_nofile();
    cleanup_free char *scratch = NULL, *root = NULL;
    if (make_scratch(job->instance_dir, &scratch, err) < 0 ||
        assemble(job, scratch, &root, err) < 0)
        return -1;
    cleanup_close int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "open %s", root);
    struct ext4_from_dir_opts opts = {
        .size_bytes = job->size_bytes, .warning = child_warning, .ctx = (void *)job};
    return ext4_write_from_dir(root_fd, job->tmp_path, &opts, err);
}

/* ---- in the parent ------------------------------------------------------------------------ */

static void pass_on_warnings(const struct export_job *job, int fd)
{
    cleanup_fclose FILE *in = fdopen(dup(fd), "r");
    if (in == NULL)
        return;
    char line[700];
    while (fgets(line, sizeof line, in) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (job->opts->warning != NULL)
            job->opts->warning(line, job->opts->ctx);
    }
}

/* Runs child_export in a child; its error comes back through a pipe as the struct itself. */
static int run_child(struct export_job *job, struct shed_err *err)
{
    int result[2], warnings[2];
    if (pipe2(result, O_CLOEXEC) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "pipe");
    if (pipe2(warnings, O_CLOEXEC) < 0) {
        close(result[0]);
        close(result[1]);
        return shed_errf_errno(err, SHED_E_IO, errno, "pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(result[0]);
        close(warnings[0]);
        job->warn_fd = warnings[1];
        struct shed_err child_err = {0};
        int rc = child_export(job, &child_err);
        if (rc < 0 && write_all(result[1], &child_err, sizeof child_err) < 0)
            _exit(2);
        _exit(rc < 0 ? 1 : 0);
    }
    close(result[1]);
    close(warnings[1]);
    if (pid < 0) {
        close(result[0]);
        close(warnings[0]);
        return shed_errf_errno(err, SHED_E_IO, errno, "fork");
    }
    pass_on_warnings(job, warnings[0]);
    close(warnings[0]);
    struct shed_err child_err = {0};
    ssize_t got = read_full(result[0], &child_err, sizeof child_err);
    close(result[0]);
    int status = 0;
    TEMP_FAILURE_RETRY(waitpid(pid, &status, 0));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (got == (ssize_t)sizeof child_err) {
        child_err.msg[sizeof child_err.msg - 1] = '\0';
        *err = child_err;
        return -1;
    }
    return shed_errf(err, SHED_E_IO, "the export process died (status %d)", status);
}

/* The larger of the shed's own disk and its lower: what the shed could hold. */
static int default_size(const struct instance *inst, const char *instance_dir, uint64_t *size,
                        struct shed_err *err)
{
    cleanup_free char *disk =
        fs_path_join(instance_dir, instance_file_name(instance_disk_file(inst)));
    struct stat st;
    if (disk == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (stat(disk, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "shed \"%s\" has no disk %s", inst->name,
                               disk);
    *size = (uint64_t)st.st_size;
    if (inst->disk == INSTANCE_DISK_OVERLAY && inst->lower.size > *size)
        *size = inst->lower.size;
    return 0;
}

static int check_stopped(const struct shed_export_opts *opts, const struct instance *inst,
                         struct shed_err *err)
{
    enum instance_status status = shed_probe_status(opts->probe, inst);
    if (status == INSTANCE_RUNNING || status == INSTANCE_STARTING)
        return shed_errf(err, SHED_E_SHED_ALREADY_RUNNING,
                         "shed \"%s\" is running: stop it first (an export of a running shed "
                         "would not be consistent)",
                         inst->name);
    return 0;
}

static int export_locked(const struct shed_config *config, struct instance_store *store,
                         const char *name, const char *out_path,
                         const struct shed_export_opts *opts, struct shed_err *err)
{
    struct instance inst;
    if (instance_store_load(store, name, &inst, err) < 0)
        return -1;
    cleanup_free char *instance_dir = instance_store_path(store, name);
    cleanup_free char *tmp = image_layout_convert_tmp_path(out_path);
    struct export_job job = {.config = config, .inst = &inst, .opts = opts, .warn_fd = -1};
    int rc = instance_dir == NULL || tmp == NULL ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory")
                                                 : check_stopped(opts, &inst, err);
    job.instance_dir = instance_dir;
    job.tmp_path = tmp;
    job.size_bytes = opts->size_bytes;
    if (rc == 0 && job.size_bytes == 0)
        rc = default_size(&inst, instance_dir, &job.size_bytes, err);
    if (rc == 0 && unlink(tmp) < 0 && errno != ENOENT)
        rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", tmp);
    if (rc == 0)
        rc = run_child(&job, err);
    if (rc == 0 && rename(tmp, out_path) < 0)
        rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot rename %s to %s", tmp, out_path);
    if (rc == 0)
        rc = fs_fsync_dir_of(out_path, err);
    if (rc < 0 && tmp != NULL)
        unlink(tmp);
    instance_clear(&inst);
    return rc;
}

int shed_export(const struct shed_config *config, struct instance_store *store, const char *name,
                const char *out_path, const struct shed_export_opts *opts, struct shed_err *err)
{
    int lock = -1;
    if (instance_store_lock(store, name, &lock, err) < 0)
        return -1;
    int rc = export_locked(config, store, name, out_path, opts, err);
    instance_store_unlock(lock);
    return rc;
}
