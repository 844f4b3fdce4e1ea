/* Instance rootfs clones: a copy of an image that costs nothing until it is written to.
 *
 * clone_file tries, in order: FICLONE (Linux; clonefile on macOS), which shares every
 * extent; copy_file_range over the source's data segments; a read/write copy of the data
 * segments. The last two find the segments with SEEK_DATA/SEEK_HOLE, so holes stay holes and
 * the copy allocates no more than the source does. */
#ifndef SHED_RUNTIME_CLONE_H
#define SHED_RUNTIME_CLONE_H

#include <stdbool.h>

#include "common/shed_err.h"

enum clone_strategy {
    CLONE_STRATEGY_NONE,
    CLONE_STRATEGY_REFLINK,         /* FICLONE / clonefile: extents shared, O(1) */
    CLONE_STRATEGY_COPY_FILE_RANGE, /* in-kernel copy of the data segments */
    CLONE_STRATEGY_SPARSE_COPY,     /* read/write of the data segments */
};

/* "reflink", "copy_file_range", "sparse_copy" ("none" before anything ran). */
const char *clone_strategy_name(enum clone_strategy strategy);

/* Copies src to dst, which must not exist (created O_EXCL, 0600: a clone is a shed's private
 * disk whatever the source's permissions).
 * Falls back to the next strategy only when one is unsupported here (EOPNOTSUPP, EXDEV,
 * EINVAL, ENOTTY, ENOSYS); any other error (ENOSPC, EIO, EACCES, …) fails. dst is fsynced,
 * then its directory. On failure dst is removed (unless it already existed). *strategy, when
 * non-NULL, reports the strategy that produced dst. */
int clone_file(const char *src, const char *dst, enum clone_strategy *strategy,
               struct shed_err *err);
/* Like clone_file, but a full copy that shares no extent with src: the read/write copy of the
 * data segments, never FICLONE or copy_file_range (which XFS and btrfs may serve by sharing
 * extents). *strategy is CLONE_STRATEGY_SPARSE_COPY. */
int clone_file_copy(const char *src, const char *dst, enum clone_strategy *strategy,
                    struct shed_err *err);
/* Whether a reflink of the open file src_fd into a new file of dst_dir works (FICLONERANGE
 * of its first 4 KiB into an O_TMPFILE, gone again on return; nothing is left in dst_dir). */
int clone_can_reflink(int src_fd, const char *dst_dir, bool *can, struct shed_err *err);

#endif
