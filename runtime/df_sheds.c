/* The instance_dir half of df_scan: every shed's directory, walked without crossing into
 * another file system (a mounted rootfs is not the shed's disk usage on this one). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "df_private.h"

#define MAX_WALK_DEPTH 16

/* The df kind of a file of the shed's directory (the instance store names the files). */
static const char *shed_file_kind(const char *relative)
{
    enum instance_file file;
    if (!instance_file_from_name(relative, &file))
        return "other";
    switch (file) {
    case INSTANCE_FILE_ROOTFS: return "rootfs";
    case INSTANCE_FILE_CONSOLE_LOG: return "console_log";
    case INSTANCE_FILE_CONSOLE_LOG_ROTATED: return "console_log_rotated";
    case INSTANCE_FILE_METADATA: return "metadata";
    case INSTANCE_FILE_UPPER: return "upper";
    case INSTANCE_FILE_UPPER_TMP: return "tmp";
    }
    return "other";
}

static int add_shed_file(struct df_scan_ctx *ctx, struct df_shed *shed, const char *path,
                         const char *relative, struct shed_err *err)
{
    const char *kind = shed_file_kind(relative);
    bool found = false;
    /* The shed's own disk: rootfs.ext4, or an overlay shed's upper.ext4 (its lower is the
     * image's, counted under the image). */
    enum instance_file file;
    if (instance_file_from_name(relative, &file) && file == instance_disk_file(&shed->inst)) {
        if (df_measure_into(ctx, path, kind, &shed->rootfs, &found, err) < 0)
            return -1;
        shed->has_rootfs = found;
        return 0;
    }
    if (strcmp(kind, "console_log") == 0) {
        if (df_measure_into(ctx, path, kind, &shed->console_log, &found, err) < 0)
            return -1;
        shed->has_console_log = found;
        return 0;
    }
    return df_measure_append(ctx, path, kind, &shed->other_files, err);
}

static int walk_dir(struct df_scan_ctx *ctx, struct df_shed *shed, const char *path,
                    const char *relative, dev_t dev, unsigned depth, struct shed_err *err);

static int walk_entry(struct df_scan_ctx *ctx, struct df_shed *shed, int dir_fd,
                      const char *dir_path, const char *relative, const char *name, dev_t dev,
                      unsigned depth, struct shed_err *err)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s/%s", dir_path, name);
    if (st.st_dev != dev)
        return 0; /* a mount point: another file system's usage */
    cleanup_free char *path = fs_path_join(dir_path, name);
    cleanup_free char *rel =
        relative[0] != '\0' ? str_printf("%s/%s", relative, name) : strdup(name);
    if (path == NULL || rel == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (S_ISDIR(st.st_mode))
        return depth < MAX_WALK_DEPTH ? walk_dir(ctx, shed, path, rel, dev, depth + 1, err) : 0;
    return add_shed_file(ctx, shed, path, rel, err);
}

static int walk_dir(struct df_scan_ctx *ctx, struct df_shed *shed, const char *path,
                    const char *relative, dev_t dev, unsigned depth, struct shed_err *err)
{
    cleanup_closedir DIR *dir = opendir(path);
    if (dir == NULL)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    int rc = 0;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, path, &entry, err)) > 0) {
        rc = walk_entry(ctx, shed, dirfd(dir), path, relative, entry->d_name, dev, depth, err);
        if (rc < 0)
            break;
    }
    return rc;
}

static int scan_shed_dir(struct df_scan_ctx *ctx, struct df_shed *shed, struct shed_err *err)
{
    cleanup_free char *dir = instance_store_path(ctx->instances, shed->inst.name);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct stat st;
    if (stat(dir, &st) < 0)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", dir);
    return walk_dir(ctx, shed, dir, "", st.st_dev, 0, err);
}

/* The metadata.json mtime of every shed, taken before anything asks a backend (whose status
 * reconciliation may rewrite the file and so reset the shed's age). */
static int snapshot_mtimes(struct df_scan_ctx *ctx, struct df_shed *sheds, size_t count,
                           struct shed_err *err)
{
    for (size_t i = 0; i < count; i++) {
        cleanup_free char *path =
            instance_store_file_path(ctx->instances, sheds[i].inst.name, INSTANCE_FILE_METADATA);
        if (path == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        struct stat st;
        if (stat(path, &st) == 0)
            sheds[i].metadata_mtime = st.st_mtim;
        else if (errno != ENOENT)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    }
    return 0;
}

/* One orphan entry for a shed directory without metadata.json (kind "instance"): the sum of
 * the files in it, named by the directory. */
static int add_orphan_instance(struct df_scan_ctx *ctx, const char *name, struct shed_err *err)
{
    cleanup_free char *dir = instance_store_path(ctx->instances, name);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct stat st;
    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", dir);
    struct df_shed found = {0};
    int rc = walk_dir(ctx, &found, dir, "", st.st_dev, 0, err);
    struct df_file orphan = {
        .kind = "instance", .dev = st.st_dev, .ino = st.st_ino, .nlink = 1, .mtime = st.st_mtim};
    if (rc == 0) {
        df_size_add(&orphan.size, &found.rootfs.size);
        df_size_add(&orphan.size, &found.console_log.size);
        for (size_t i = 0; i < found.other_files.count; i++)
            df_size_add(&orphan.size, &found.other_files.items[i].size);
        orphan.path = steal_pointer(&dir);
        rc = df_file_list_add(&ctx->report->orphans, &orphan, err);
    }
    df_file_clear(&found.rootfs);
    df_file_clear(&found.console_log);
    df_file_list_clear(&found.other_files);
    return rc;
}

static int scan_orphan_instances(struct df_scan_ctx *ctx, struct shed_err *err)
{
    char **names = NULL;
    if (instance_store_orphans(ctx->instances, &names, err) < 0)
        return -1;
    int rc = 0;
    for (char **name = names; rc == 0 && *name != NULL; name++)
        rc = add_orphan_instance(ctx, *name, err);
    instance_image_refs_free(names);
    return rc;
}

int df_scan_sheds(struct df_scan_ctx *ctx, struct shed_err *err)
{
    struct df_report *report = ctx->report;
    struct instance_list list;
    if (instance_store_list(ctx->instances, &list, err) < 0)
        return -1;
    report->sheds = calloc(list.count ? list.count : 1, sizeof *report->sheds);
    if (report->sheds == NULL) {
        instance_list_clear(&list);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    /* The instances move into the report (the list keeps only emptied shells). */
    for (size_t i = 0; i < list.count; i++) {
        report->sheds[i].inst = list.items[i];
        memset(&list.items[i], 0, sizeof list.items[i]);
    }
    report->shed_count = list.count;
    instance_list_clear(&list);
    if (snapshot_mtimes(ctx, report->sheds, report->shed_count, err) < 0)
        return -1;
    for (size_t i = 0; i < report->shed_count; i++) {
        struct df_shed *shed = &report->sheds[i];
        shed->inst.status = shed_probe_status(ctx->probe, &shed->inst);
        if (scan_shed_dir(ctx, shed, err) < 0)
            return -1;
    }
    return scan_orphan_instances(ctx, err);
}
