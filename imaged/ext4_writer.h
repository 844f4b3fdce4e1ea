/* ext4_writer: builds an ext4 filesystem image with libext2fs from a stream of path-based
 * operations, applied in order like `tar -x` as root onto an empty directory would apply
 * them. Private to imaged/: the flattener (layer reading, whiteouts) drives it.
 *
 * Paths are normalised relative paths without leading or trailing '/', "." or ".."
 * components: "usr/bin/env"; "" is the root directory. Every operation replaces whatever
 * is at the path (a directory replacing a directory only updates its attributes and keeps
 * its children; anything else replacing a directory removes the directory's subtree).
 * Missing parent directories are created 0755 root:root with the entry's mtime.
 *
 * The writer tags every entry with the current layer (ext4_writer_set_layer) so that OCI
 * whiteouts can remove only what lower layers wrote. */
#ifndef SHED_EXT4_WRITER_H
#define SHED_EXT4_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/shed_err.h"

struct ext4_writer;
struct ext4_file;

struct ext4_writer_opts {
    uint64_t size_bytes;  /* filesystem size in bytes (the file is created sparse) */
    uint64_t inode_count; /* 0 = derived from the size */
};

struct ext4_timestamp {
    int64_t sec; /* may be negative (before 1970) or beyond 2038 */
    uint32_t nsec;
};

struct ext4_xattr {
    const char *name; /* full name: "user.foo", "security.capability", "trusted.x" */
    const void *value;
    size_t len;
};

struct ext4_meta {
    mode_t mode; /* file type bits (S_IFREG, S_IFDIR, …) + permission bits incl. suid/sgid/sticky */
    uint32_t uid, gid;
    struct ext4_timestamp mtime;
    bool has_atime, has_ctime;
    struct ext4_timestamp atime, ctime; /* default to mtime when absent */
    uint32_t rdev_major, rdev_minor;    /* character and block devices */
    const struct ext4_xattr *xattrs;
    size_t xattr_count;
};

/* Creates path (O_EXCL: it must not exist) as an empty ext4 filesystem. */
int ext4_writer_create(const char *path, const struct ext4_writer_opts *opts,
                       struct ext4_writer **writer, struct shed_err *err);
/* Entries written from now on belong to this layer (0 = bottom). */
void ext4_writer_set_layer(struct ext4_writer *writer, unsigned layer);

int ext4_writer_mkdir(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                      struct shed_err *err);
int ext4_writer_symlink(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                        const char *target, struct shed_err *err);
/* The largest device numbers ext4 can store (the kernel's dev_t: 12 + 20 bits). */
#define EXT4W_DEVICE_MAJOR_MAX 4095u
#define EXT4W_DEVICE_MINOR_MAX 0xfffffu

/* Character/block devices and fifos (meta->mode says which). A device number beyond the
 * maxima above fails with SHED_E_INVALID_IMAGE. */
int ext4_writer_mknod(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                      struct shed_err *err);
/* New name for the inode now at target_path (which must exist and not be a directory). */
int ext4_writer_hardlink(struct ext4_writer *writer, const char *path, const char *target_path,
                         struct shed_err *err);

/* Regular files are streamed: begin, write chunks at non-decreasing offsets (gaps and
 * all-zero blocks become holes), end. size is the final logical size. Only one file may be
 * open at a time. */
int ext4_writer_file_begin(struct ext4_writer *writer, const char *path,
                           const struct ext4_meta *meta, uint64_t size, struct ext4_file **file,
                           struct shed_err *err);
int ext4_writer_file_write(struct ext4_file *file, uint64_t offset, const void *data, size_t len,
                           struct shed_err *err);
int ext4_writer_file_end(struct ext4_file *file, struct shed_err *err);

/* Removes path and its subtree; no error when absent. lower_only: remove only entries written
 * by layers below the current one (a directory of the current layer stays, its lower-layer
 * descendants go): the semantics of an OCI whiteout. */
int ext4_writer_remove(struct ext4_writer *writer, const char *path, bool lower_only,
                       struct shed_err *err);
/* OCI opaque directory: removes every lower-layer descendant of the directory at path. */
int ext4_writer_clear_dir_lower(struct ext4_writer *writer, const char *path, struct shed_err *err);

/* Writes directories, bitmaps, descriptors and superblock, fsyncs and closes the file.
 * The writer is freed whether or not this succeeds. */
int ext4_writer_finish(struct ext4_writer *writer, struct shed_err *err);
/* Frees the writer without finishing (the caller removes the file). */
void ext4_writer_abort(struct ext4_writer *writer);

/* Bytes of data written so far (for "needs at least N bytes" messages). */
uint64_t ext4_writer_bytes_used(const struct ext4_writer *writer);

/* ---- reading and copying existing trees ---------------------------------------------- */

/* The mode, owner and times of the root directory of the ext4 image at path, read with
 * libext2fs (nothing mounted, nothing written; xattrs not read). */
int ext4_read_root_meta(const char *path, struct ext4_meta *meta, struct shed_err *err);

struct ext4_from_dir_opts {
    uint64_t size_bytes; /* size of the new filesystem */
    /* non-fatal conditions, e.g. "skipping socket run/x.sock" (may be NULL) */
    void (*warning)(const char *message, void *ctx);
    void *ctx;
};

/* Writes the tree under the directory dir_fd (a mounted filesystem, walked without following
 * symlinks and without crossing into another mount) as a new ext4 at out_path (O_EXCL):
 * types (sockets too), modes, owners, times, xattrs, hardlinks, device numbers and holes as
 * they are. A directory another file system is mounted on is skipped with a warning. The
 * result is fsynced; on failure out_path is removed. */
int ext4_write_from_dir(int dir_fd, const char *out_path, const struct ext4_from_dir_opts *opts,
                        struct shed_err *err);

#endif
