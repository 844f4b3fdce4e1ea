/* ext4_write_from_dir: a mounted tree (a shed's root, seen through its overlay or its own
 * ext4) written as a new ext4 image by the ext4 writer, entry for entry.
 *
 * The walk uses descriptors only (openat/fstatat relative to the directory being read, never
 * following a symlink), so a tree deeper than PATH_MAX is walked like any other; it keeps one
 * descriptor per level and stops at MAX_DEPTH levels. Directory entries are read in full and
 * sorted before the walk descends, so the image is the same for the same tree. Hardlinks are
 * recognised by (st_dev, st_ino) of names with more than one link: the first name seen is
 * written, the others become links to it. Regular files are copied data segment by data
 * segment (SEEK_DATA/SEEK_HOLE), so holes stay holes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "imaged/ext4_writer.h"

#define MAX_DEPTH 1024
#define COPY_CHUNK (1u << 20)
#define XATTR_NAMES_MAX 65536 /* the kernel's XATTR_LIST_MAX */
#define XATTR_VALUE_MAX 65536 /* XATTR_SIZE_MAX */
#define MAX_XATTRS 1024

/* (dev, ino) → the first path written for a multiply-linked inode. */
struct link_slot {
    dev_t dev;
    ino_t ino;
    char *path;
};

struct link_table {
    struct link_slot *slots;
    size_t capacity, count;
};

struct walk {
    struct ext4_writer *writer;
    const struct ext4_from_dir_opts *opts;
    struct link_table links;
    char *buffer; /* COPY_CHUNK bytes for file data */
};

static void warn(const struct walk *walk, const char *fmt, const char *path)
{
    if (walk->opts->warning == NULL)
        return;
    char message[600];
    snprintf(message, sizeof message, fmt, path);
    walk->opts->warning(message, walk->opts->ctx);
}

/* ---- hardlinks ----------------------------------------------------------------------- */

static size_t link_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 31));
}

static struct link_slot *link_find(const struct link_table *table, dev_t dev, ino_t ino)
{
    if (table->capacity == 0)
        return NULL;
    size_t mask = table->capacity - 1;
    for (size_t i = link_hash(dev, ino) & mask;; i = (i + 1) & mask) {
        struct link_slot *slot = &table->slots[i];
        if (slot->path == NULL)
            return NULL;
        if (slot->dev == dev && slot->ino == ino)
            return slot;
    }
}

static int link_table_grow(struct link_table *table, struct shed_err *err)
{
    struct link_table bigger = {.capacity = table->capacity ? table->capacity * 2 : 256};
    bigger.slots = calloc(bigger.capacity, sizeof *bigger.slots);
    if (bigger.slots == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < table->capacity; i++) {
        struct link_slot *old = &table->slots[i];
        if (old->path == NULL)
            continue;
        size_t mask = bigger.capacity - 1, j = link_hash(old->dev, old->ino) & mask;
        while (bigger.slots[j].path != NULL)
            j = (j + 1) & mask;
        bigger.slots[j] = *old;
    }
    bigger.count = table->count;
    free(table->slots);
    *table = bigger;
    return 0;
}

static int link_remember(struct link_table *table, dev_t dev, ino_t ino, const char *path,
                         struct shed_err *err)
{
    if ((table->count + 1) * 2 > table->capacity && link_table_grow(table, err) < 0)
        return -1;
    size_t mask = table->capacity - 1, i = link_hash(dev, ino) & mask;
    while (table->slots[i].path != NULL)
        i = (i + 1) & mask;
    table->slots[i].path = strdup(path);
    if (table->slots[i].path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    table->slots[i].dev = dev;
    table->slots[i].ino = ino;
    table->count++;
    return 0;
}

static void link_table_free(struct link_table *table)
{
    for (size_t i = 0; i < table->capacity; i++)
        free(table->slots[i].path);
    free(table->slots);
    memset(table, 0, sizeof *table);
}

/* ---- attributes ---------------------------------------------------------------------- */

struct xattr_set {
    struct ext4_xattr *items;
    size_t count;
    char *names;
};

static void xattr_set_free(struct xattr_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free((void *)set->items[i].value);
    free(set->items);
    free(set->names);
    memset(set, 0, sizeof *set);
}

/* The entry's xattrs, through its open fd (regular files, directories) or, for what cannot be
 * opened for reading (symlinks, devices, fifos, sockets), /proc/self/fd/<dir>/<name> without
 * following the last component. */
static ssize_t list_names(int fd, const char *proc_path, char *buf, size_t len)
{
    return fd >= 0 ? flistxattr(fd, buf, len) : llistxattr(proc_path, buf, len);
}

static ssize_t get_value(int fd, const char *proc_path, const char *name, void *buf, size_t len)
{
    return fd >= 0 ? fgetxattr(fd, name, buf, len) : lgetxattr(proc_path, name, buf, len);
}

static int read_xattr(int fd, const char *proc_path, const char *name, struct xattr_set *set,
                      const char *path, struct shed_err *err)
{
    ssize_t len = get_value(fd, proc_path, name, NULL, 0);
    if (len < 0 || len > XATTR_VALUE_MAX)
        return shed_errf_errno(err, SHED_E_IO, len < 0 ? errno : E2BIG, "%s: xattr %s", path, name);
    void *value = malloc(len > 0 ? (size_t)len : 1);
    if (value == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    ssize_t got = len > 0 ? get_value(fd, proc_path, name, value, (size_t)len) : 0;
    if (got < 0) {
        free(value);
        return shed_errf_errno(err, SHED_E_IO, errno, "%s: xattr %s", path, name);
    }
    set->items[set->count++] =
        (struct ext4_xattr){.name = name, .value = value, .len = (size_t)got};
    return 0;
}

static int read_xattrs(int fd, int dir_fd, const char *name, const char *path,
                       struct xattr_set *set, struct shed_err *err)
{
    char proc_path[64 + NAME_MAX];
    snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d/%s", dir_fd, name);
    ssize_t len = list_names(fd, proc_path, NULL, 0);
    if (len < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
        return 0;
    if (len < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "%s: xattrs", path);
    if (len == 0)
        return 0;
    if (len > XATTR_NAMES_MAX)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: xattr names too long", path);
    set->names = malloc((size_t)len + 1);
    if (set->names == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    /* The list cannot change meanwhile (the tree is ours alone), so the sizes hold. */
    len = list_names(fd, proc_path, set->names, (size_t)len);
    if (len < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "%s: xattrs", path);
    set->names[len] = '\0';
    size_t count = 0;
    for (ssize_t at = 0; at < len; at += (ssize_t)strlen(set->names + at) + 1)
        count++;
    if (count > MAX_XATTRS)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: more than %d xattrs", path, MAX_XATTRS);
    set->items = calloc(count, sizeof *set->items);
    if (set->items == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (ssize_t at = 0; at < len; at += (ssize_t)strlen(set->names + at) + 1)
        if (read_xattr(fd, proc_path, set->names + at, set, path, err) < 0)
            return -1;
    return 0;
}

static struct ext4_timestamp timestamp_of(const struct timespec *ts)
{
    return (struct ext4_timestamp){.sec = ts->tv_sec, .nsec = (uint32_t)ts->tv_nsec};
}

static struct ext4_meta meta_of(const struct stat *st, const struct xattr_set *xattrs)
{
    return (struct ext4_meta){
        .mode = st->st_mode,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .mtime = timestamp_of(&st->st_mtim),
        .has_atime = true,
        .atime = timestamp_of(&st->st_atim),
        .has_ctime = true,
        .ctime = timestamp_of(&st->st_ctim),
        .rdev_major = major(st->st_rdev),
        .rdev_minor = minor(st->st_rdev),
        .xattrs = xattrs->items,
        .xattr_count = xattrs->count,
    };
}

/* ---- entries ------------------------------------------------------------------------- */

static int copy_data(struct walk *walk, int fd, struct ext4_file *file, off_t size,
                     const char *path, struct shed_err *err)
{
    off_t offset = 0;
    while (offset < size) {
        off_t data = lseek(fd, offset, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return 0; /* only holes left */
        if (data < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "%s: SEEK_DATA", path);
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "%s: SEEK_HOLE", path);
        for (offset = data; offset < hole && offset < size;) {
            size_t want =
                (size_t)(hole - offset) < COPY_CHUNK ? (size_t)(hole - offset) : COPY_CHUNK;
            ssize_t n = TEMP_FAILURE_RETRY(pread(fd, walk->buffer, want, offset));
            if (n < 0)
                return shed_errf_errno(err, SHED_E_IO, errno, "reading %s", path);
            if (n == 0)
                return shed_errf(err, SHED_E_IO, "%s shrank while it was read", path);
            if (ext4_writer_file_write(file, (uint64_t)offset, walk->buffer, (size_t)n, err) < 0)
                return -1;
            offset += n;
        }
    }
    return 0;
}

static int write_file(struct walk *walk, int fd, const char *path, const struct stat *st,
                      const struct ext4_meta *meta, struct shed_err *err)
{
    struct ext4_file *file = NULL;
    if (ext4_writer_file_begin(walk->writer, path, meta, (uint64_t)st->st_size, &file, err) < 0)
        return -1;
    int rc = copy_data(walk, fd, file, st->st_size, path, err);
    struct shed_err end_err = {0};
    if (ext4_writer_file_end(file, &end_err) < 0 && rc == 0) {
        *err = end_err;
        rc = -1;
    }
    return rc;
}

static int write_symlink(struct walk *walk, int dir_fd, const char *name, const char *path,
                         const struct stat *st, const struct ext4_meta *meta, struct shed_err *err)
{
    char target[4097];
    ssize_t len = readlinkat(dir_fd, name, target, sizeof target);
    if (len < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "readlink %s", path);
    if ((size_t)len >= sizeof target || len != st->st_size)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: symlink target too long", path);
    target[len] = '\0';
    return ext4_writer_symlink(walk->writer, path, meta, target, err);
}

static int walk_dir(struct walk *walk, int dir_fd, const char *path, unsigned depth,
                    struct shed_err *err);

/* Opens what can be opened for reading its data and xattrs: regular files and directories
 * (never following a symlink, never blocking on a fifo). -1 for the other types. */
static int open_entry(int dir_fd, const char *name, const struct stat *st, const char *path,
                      int *fd, struct shed_err *err)
{
    *fd = -1;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return 0;
    int flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NOATIME;
    if (S_ISDIR(st->st_mode))
        flags |= O_DIRECTORY;
    *fd = openat(dir_fd, name, flags);
    if (*fd < 0 && errno == EPERM) /* O_NOATIME needs ownership; we are root, but be safe */
        *fd = openat(dir_fd, name, flags & ~O_NOATIME);
    if (*fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    struct stat now;
    if (fstat(*fd, &now) < 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev)
        return shed_errf(err, SHED_E_IO, "%s changed while the tree was read", path);
    return 0;
}

/* A hardlink to an inode already written; 1 when it was one. */
static int write_if_link(struct walk *walk, const char *path, const struct stat *st,
                         struct shed_err *err)
{
    if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
        return 0;
    const struct link_slot *first = link_find(&walk->links, st->st_dev, st->st_ino);
    if (first == NULL)
        return link_remember(&walk->links, st->st_dev, st->st_ino, path, err);
    return ext4_writer_hardlink(walk->writer, path, first->path, err) < 0 ? -1 : 1;
}

static int write_by_type(struct walk *walk, int dir_fd, const char *name, int fd, const char *path,
                         const struct stat *st, const struct ext4_meta *meta, unsigned depth,
                         struct shed_err *err)
{
    switch (st->st_mode & S_IFMT) {
    case S_IFDIR:
        if (ext4_writer_mkdir(walk->writer, path, meta, err) < 0)
            return -1;
        return walk_dir(walk, fd, path, depth + 1, err);
    case S_IFREG: return write_file(walk, fd, path, st, meta, err);
    case S_IFLNK: return write_symlink(walk, dir_fd, name, path, st, meta, err);
    default: return ext4_writer_mknod(walk->writer, path, meta, err);
    }
}

static bool is_mount_root(int dir_fd, const char *name)
{
    struct statx stx;
    return statx(dir_fd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) == 0 &&
           (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int write_entry(struct walk *walk, int dir_fd, const char *name, const char *path,
                       unsigned depth, struct shed_err *err)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    if (S_ISDIR(st.st_mode) && is_mount_root(dir_fd, name)) {
        warn(walk, "skipping %s: another file system is mounted there", path);
        return 0;
    }
    int linked = write_if_link(walk, path, &st, err);
    if (linked != 0)
        return linked < 0 ? -1 : 0;
    cleanup_close int fd = -1;
    if (open_entry(dir_fd, name, &st, path, &fd, err) < 0)
        return -1;
    struct xattr_set xattrs = {0};
    int rc = read_xattrs(fd, dir_fd, name, path, &xattrs, err);
    if (rc == 0) {
        struct ext4_meta meta = meta_of(&st, &xattrs);
        rc = write_by_type(walk, dir_fd, name, fd, path, &st, &meta, depth, err);
    }
    xattr_set_free(&xattrs);
    return rc;
}

/* Every name of the directory but . and .., sorted. */
static int read_names(int dir_fd, const char *path, struct strv *names, struct shed_err *err)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path[0] ? path : "/");
    cleanup_closedir DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", path[0] ? path : "/");
    }
    int rc;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, path, &entry, err)) > 0)
        if (strv_add(names, entry->d_name, err) < 0)
            return -1;
    strv_sort(names);
    return rc;
}

static int walk_dir(struct walk *walk, int dir_fd, const char *path, unsigned depth,
                    struct shed_err *err)
{
    if (depth > MAX_DEPTH)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: more than %d directory levels", path,
                         MAX_DEPTH);
    cleanup_strv struct strv names = STRV_INIT;
    if (read_names(dir_fd, path, &names, err) < 0)
        return -1;
    for (size_t i = 0; i < names.count; i++) {
        cleanup_free char *child =
            path[0] != '\0' ? str_printf("%s/%s", path, names.items[i]) : strdup(names.items[i]);
        if (child == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        if (write_entry(walk, dir_fd, names.items[i], child, depth, err) < 0)
            return -1;
    }
    return 0;
}

static int write_root(struct walk *walk, int dir_fd, struct shed_err *err)
{
    struct stat st;
    if (fstat(dir_fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat the tree's root");
    if (!S_ISDIR(st.st_mode))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "the tree's root is not a directory");
    struct xattr_set xattrs = {0};
    int rc = read_xattrs(dir_fd, dir_fd, ".", "/", &xattrs, err);
    if (rc == 0) {
        struct ext4_meta meta = meta_of(&st, &xattrs);
        rc = ext4_writer_mkdir(walk->writer, "", &meta, err);
    }
    xattr_set_free(&xattrs);
    return rc < 0 ? -1 : walk_dir(walk, dir_fd, "", 0, err);
}

int ext4_write_from_dir(int dir_fd, const char *out_path, const struct ext4_from_dir_opts *opts,
                        struct shed_err *err)
{
    struct walk walk = {.opts = opts};
    walk.buffer = malloc(COPY_CHUNK);
    if (walk.buffer == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct ext4_writer_opts writer_opts = {.size_bytes = opts->size_bytes};
    int rc = ext4_writer_create(out_path, &writer_opts, &walk.writer, err);
    if (rc == 0) {
        rc = write_root(&walk, dir_fd, err);
        if (rc == 0)
            rc = ext4_writer_finish(walk.writer, err);
        else
            ext4_writer_abort(walk.writer);
        if (rc < 0)
            unlink(out_path);
    }
    link_table_free(&walk.links);
    free(walk.buffer);
    return rc;
}
