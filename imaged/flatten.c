#include "flatten.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/array.h"
#include "common/cleanup.h"

#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_MARKER ".wh..wh..opq"
/* aufs keeps its own bookkeeping under .wh..wh.* names (.wh..wh.plnk, .wh..wh.aufs); like
 * Docker, treat them as noise rather than as whiteouts of ".wh.*" names. */
#define AUFS_META_PREFIX ".wh..wh."

/* One pass over one layer. */
struct layer_pass {
    struct flatten_state *state;
    struct layer_reader *reader;
    unsigned layer;
    uint64_t last_reported; /* compressed bytes of this layer last passed to progress */
    struct ext4_xattr *xattrs;
    size_t xattr_capacity;
};

int flatten_normalize_path(const char *name, char **out, struct shed_err *err)
{
    size_t name_len = strlen(name);
    char *buf = malloc(name_len + 1);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t len = 0;
    const char *p = name;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != '/')
            p++;
        size_t component_len = (size_t)(p - start);
        if (component_len == 0 || (component_len == 1 && start[0] == '.'))
            continue;
        if (component_len == 2 && start[0] == '.' && start[1] == '.') {
            if (len == 0) {
                free(buf);
                return shed_errf(err, SHED_E_INVALID_IMAGE,
                                 "member name '%s' escapes the image root ('..')", name);
            }
            char *slash = memrchr(buf, '/', len);
            len = slash != NULL ? (size_t)(slash - buf) : 0;
            continue;
        }
        if (len > 0)
            buf[len++] = '/';
        memcpy(buf + len, start, component_len);
        len += component_len;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

/* ---- progress and cancellation ----------------------------------------------------------- */

static int check_cancel(const struct layer_pass *pass, struct shed_err *err)
{
    const struct imaged_convert_opts *opts = pass->state->opts;
    if (opts->cancel != NULL && *opts->cancel)
        return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
    return 0;
}

static void report_progress(struct layer_pass *pass)
{
    const struct imaged_convert_opts *opts = pass->state->opts;
    uint64_t consumed = layer_reader_consumed(pass->reader);
    if (opts->progress == NULL || consumed == pass->last_reported)
        return;
    pass->last_reported = consumed;
    uint64_t done = pass->state->bytes_done_before_layer + consumed;
    uint64_t total = pass->state->bytes_total;
    opts->progress(done < total ? done : total, total, opts->ctx);
}

static void warn(const struct layer_pass *pass, const char *fmt, const char *path)
{
    const struct imaged_convert_opts *opts = pass->state->opts;
    if (opts->warning == NULL)
        return;
    char message[512];
    snprintf(message, sizeof message, fmt, pass->layer, path);
    opts->warning(message, opts->ctx);
}

/* ---- entry → ext4_meta ------------------------------------------------------------------- */

static const char *entry_name(struct archive_entry *entry)
{
    /* PAX names are UTF-8; the _utf8 accessor returns them unconverted whatever the locale,
     * the plain one keeps the raw bytes of non-UTF-8 ustar names. */
    const char *name = archive_entry_pathname_utf8(entry);
    return name != NULL ? name : archive_entry_pathname(entry);
}

static const char *entry_symlink_target(struct archive_entry *entry)
{
    const char *target = archive_entry_symlink_utf8(entry);
    return target != NULL ? target : archive_entry_symlink(entry);
}

static const char *entry_hardlink_target(struct archive_entry *entry)
{
    const char *target = archive_entry_hardlink_utf8(entry);
    return target != NULL ? target : archive_entry_hardlink(entry);
}

static struct ext4_timestamp timestamp_of(time_t sec, long nsec)
{
    if (nsec < 0 || nsec > 999999999)
        nsec = 0;
    return (struct ext4_timestamp){.sec = (int64_t)sec, .nsec = (uint32_t)nsec};
}

static int collect_xattrs(struct layer_pass *pass, struct archive_entry *entry, size_t *count,
                          struct shed_err *err)
{
    size_t n = (size_t)archive_entry_xattr_reset(entry);
    if (ARRAY_RESERVE(pass->xattrs, pass->xattr_capacity, n, err) < 0)
        return -1;
    size_t i = 0;
    const char *name;
    const void *value;
    size_t len;
    while (i < n && archive_entry_xattr_next(entry, &name, &value, &len) == ARCHIVE_OK)
        pass->xattrs[i++] = (struct ext4_xattr){.name = name, .value = value, .len = len};
    *count = i;
    return 0;
}

static int meta_of(struct layer_pass *pass, struct archive_entry *entry, struct ext4_meta *meta,
                   struct shed_err *err)
{
    la_int64_t uid = archive_entry_uid(entry), gid = archive_entry_gid(entry);
    if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "uid/gid %lld:%lld out of range",
                         (long long)uid, (long long)gid);
    /* Checked before narrowing: a pax SCHILY.devmajor of 2^32 + 1 must not become 1. */
    unsigned long long major = archive_entry_rdevmajor(entry),
                       minor = archive_entry_rdevminor(entry);
    mode_t type = archive_entry_filetype(entry);
    if ((type == AE_IFCHR || type == AE_IFBLK) &&
        (major > EXT4W_DEVICE_MAJOR_MAX || minor > EXT4W_DEVICE_MINOR_MAX))
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "device number %llu:%llu out of range (major at most %u, minor at most "
                         "%u)",
                         major, minor, EXT4W_DEVICE_MAJOR_MAX, EXT4W_DEVICE_MINOR_MAX);
    *meta = (struct ext4_meta){
        .mode = archive_entry_filetype(entry) | (archive_entry_perm(entry) & 07777),
        .uid = (uint32_t)uid,
        .gid = (uint32_t)gid,
        .mtime = timestamp_of(archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)),
        .has_atime = archive_entry_atime_is_set(entry) != 0,
        .has_ctime = archive_entry_ctime_is_set(entry) != 0,
        .rdev_major = (uint32_t)major,
        .rdev_minor = (uint32_t)minor,
    };
    if (meta->has_atime)
        meta->atime = timestamp_of(archive_entry_atime(entry), archive_entry_atime_nsec(entry));
    if (meta->has_ctime)
        meta->ctime = timestamp_of(archive_entry_ctime(entry), archive_entry_ctime_nsec(entry));
    if (collect_xattrs(pass, entry, &meta->xattr_count, err) < 0)
        return -1;
    meta->xattrs = meta->xattr_count > 0 ? pass->xattrs : NULL;
    return 0;
}

/* ---- members → writer operations --------------------------------------------------------- */

/* Splits "a/b/c" into dir "a/b" (written into dir_buf) and base "c". */
static const char *split_path(const char *path, char *dir_buf)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        dir_buf[0] = '\0';
        return path;
    }
    memcpy(dir_buf, path, (size_t)(slash - path));
    dir_buf[slash - path] = '\0';
    return slash + 1;
}

/* Returns 1 when the member was a whiteout (handled), 0 when it is an ordinary member. */
static int apply_whiteout(struct layer_pass *pass, const char *path, struct shed_err *err)
{
    cleanup_free char *dir = malloc(strlen(path) + 1);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    const char *base = split_path(path, dir);
    if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) != 0)
        return 0;
    struct ext4_writer *writer = pass->state->writer;
    if (strcmp(base, OPAQUE_MARKER) == 0)
        return ext4_writer_clear_dir_lower(writer, dir, err) < 0 ? -1 : 1;
    if (strncmp(base, AUFS_META_PREFIX, strlen(AUFS_META_PREFIX)) == 0)
        return 1;
    const char *victim = base + strlen(WHITEOUT_PREFIX);
    if (victim[0] == '\0' || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "invalid whiteout name '%s'", base);
    cleanup_free char *victim_path =
        dir[0] != '\0' ? malloc(strlen(dir) + 1 + strlen(victim) + 1) : strdup(victim);
    if (victim_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (dir[0] != '\0')
        sprintf(victim_path, "%s/%s", dir, victim);
    return ext4_writer_remove(writer, victim_path, true, err) < 0 ? -1 : 1;
}

static int write_file_data(struct layer_pass *pass, struct ext4_file *file, uint64_t size,
                           struct shed_err *err)
{
    const void *data;
    size_t len;
    uint64_t offset;
    int ret;
    while ((ret = layer_reader_data(pass->reader, &data, &len, &offset, err)) == 1) {
        if (len == 0)
            continue;
        if (offset > size || len > size - offset)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "data beyond the file's size %llu",
                             (unsigned long long)size);
        if (ext4_writer_file_write(file, offset, data, len, err) < 0)
            return -1;
        report_progress(pass);
        if (check_cancel(pass, err) < 0)
            return -1;
    }
    return ret;
}

static int apply_regular_file(struct layer_pass *pass, struct archive_entry *entry,
                              const char *path, const struct ext4_meta *meta, struct shed_err *err)
{
    la_int64_t size = archive_entry_size(entry);
    if (size < 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "negative file size");
    struct ext4_file *file = NULL;
    if (ext4_writer_file_begin(pass->state->writer, path, meta, (uint64_t)size, &file, err) < 0)
        return -1;
    /* On failure the open file is released by ext4_writer_abort with the writer. */
    if (write_file_data(pass, file, (uint64_t)size, err) < 0)
        return -1;
    return ext4_writer_file_end(file, err);
}

static int apply_hardlink(struct layer_pass *pass, const char *path, const char *target,
                          struct shed_err *err)
{
    cleanup_free char *target_path = NULL;
    if (flatten_normalize_path(target, &target_path, err) < 0)
        return -1;
    if (strcmp(target_path, path) == 0)
        return 0; /* a link to itself changes nothing */
    return ext4_writer_hardlink(pass->state->writer, path, target_path, err);
}

static int apply_member(struct layer_pass *pass, struct archive_entry *entry, const char *path,
                        struct shed_err *err)
{
    int whiteout = apply_whiteout(pass, path, err);
    if (whiteout != 0)
        return whiteout < 0 ? -1 : 0;

    struct ext4_writer *writer = pass->state->writer;
    const char *link_target = entry_hardlink_target(entry);
    if (link_target != NULL)
        return apply_hardlink(pass, path, link_target, err);

    struct ext4_meta meta;
    if (meta_of(pass, entry, &meta, err) < 0)
        return -1;
    mode_t type = archive_entry_filetype(entry);
    if (path[0] == '\0' && type != AE_IFDIR)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the root can only be a directory");
    switch (type) {
    case AE_IFDIR: return ext4_writer_mkdir(writer, path, &meta, err);
    case AE_IFREG: return apply_regular_file(pass, entry, path, &meta, err);
    case AE_IFLNK: {
        const char *target = entry_symlink_target(entry);
        if (target == NULL || target[0] == '\0')
            return shed_errf(err, SHED_E_INVALID_IMAGE, "symlink without a target");
        return ext4_writer_symlink(writer, path, &meta, target, err);
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: return ext4_writer_mknod(writer, path, &meta, err);
    case AE_IFSOCK: warn(pass, "layer %u: skipping socket %s", path); return 0;
    default: warn(pass, "layer %u: skipping %s of unknown file type", path); return 0;
    }
}

/* Keeps the totals the "needs at least N" message is computed from. */
static void account_member(struct flatten_state *state, struct archive_entry *entry)
{
    state->entries++;
    if (archive_entry_filetype(entry) == AE_IFREG && entry_hardlink_target(entry) == NULL &&
        archive_entry_size(entry) > 0)
        state->file_bytes += (uint64_t)archive_entry_size(entry);
}

static int flatten_member(struct layer_pass *pass, struct archive_entry *entry,
                          struct shed_err *err)
{
    struct flatten_state *state = pass->state;
    const char *name = entry_name(entry);
    if (name == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "member without a name");
    account_member(state, entry);
    cleanup_free char *path = NULL;
    if (flatten_normalize_path(name, &path, err) < 0)
        return -1;
    if (state->out_of_space)
        return 0;
    if (apply_member(pass, entry, path, err) == 0)
        return 0;
    if (err->code == SHED_E_NO_SPACE) {
        state->out_of_space = true;
        state->out_of_space_err = *err;
        return 0;
    }
    return shed_err_prefix(err, "member '%s'", name);
}

int flatten_layer(struct flatten_state *state, struct layer_reader *reader, unsigned layer,
                  struct shed_err *err)
{
    struct layer_pass pass = {.state = state, .reader = reader, .layer = layer};
    if (!state->out_of_space)
        ext4_writer_set_layer(state->writer, layer);
    struct archive_entry *entry;
    int ret;
    while ((ret = layer_reader_next(reader, &entry, err)) == 1) {
        if (check_cancel(&pass, err) < 0 || flatten_member(&pass, entry, err) < 0) {
            ret = -1;
            break;
        }
        report_progress(&pass);
    }
    if (ret == 0)
        report_progress(&pass);
    free(pass.xattrs);
    return ret;
}
