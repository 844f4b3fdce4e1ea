#include "clone.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/fs.h>
#endif
#ifdef __APPLE__
#include <sys/clonefile.h>
#endif

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"

#define COPY_BUFFER_SIZE (1u << 20)

const char *clone_strategy_name(enum clone_strategy strategy)
{
    switch (strategy) {
    case CLONE_STRATEGY_REFLINK: return "reflink";
    case CLONE_STRATEGY_COPY_FILE_RANGE: return "copy_file_range";
    case CLONE_STRATEGY_SPARSE_COPY: return "sparse_copy";
    default: return "none";
    }
}

/* The errors that mean "this mechanism does not work here", as opposed to a real failure
 * (ENOSPC, EIO, EACCES, …) that a slower mechanism would only hit again. */
static bool errno_means_unsupported(int errnum)
{
    return errnum == EOPNOTSUPP || errnum == ENOTSUP || errnum == EXDEV || errnum == EINVAL ||
           errnum == ENOTTY || errnum == ENOSYS;
}

static enum shed_code code_for_errno(int errnum)
{
    return errnum == ENOSPC || errnum == EDQUOT ? SHED_E_NO_SPACE : SHED_E_IO;
}

/* 0: cloned; 1: unsupported here; -1: failed with errno set. */
static int try_reflink(int src_fd, int dst_fd)
{
#ifdef FICLONE
    if (ioctl(dst_fd, FICLONE, src_fd) == 0)
        return 0;
    return errno_means_unsupported(errno) ? 1 : -1;
#else
    (void)src_fd;
    (void)dst_fd;
    return 1;
#endif
}

struct segment_copier {
    int src_fd, dst_fd;
    bool copy_file_range_usable;
    char *buffer; /* for the read/write fallback, allocated on first use */
};

/* Copies [*offset, end) with copy_file_range while the kernel supports it here.
 * Returns 0 with *offset advanced (possibly short of end after a fallback), -1 on error. */
static int copy_range_in_kernel(struct segment_copier *copier, off_t *offset, off_t end)
{
#ifdef __linux__
    while (copier->copy_file_range_usable && *offset < end) {
        off_t out_offset = *offset;
        ssize_t n = TEMP_FAILURE_RETRY(copy_file_range(copier->src_fd, offset, copier->dst_fd,
                                                       &out_offset, (size_t)(end - *offset), 0));
        if (n < 0 && errno_means_unsupported(errno)) {
            copier->copy_file_range_usable = false;
            return 0;
        }
        if (n < 0)
            return -1;
        /* 0 before the end: some file systems (procfs-like) report nothing to copy. */
        if (n == 0)
            copier->copy_file_range_usable = false;
    }
#else
    (void)offset;
    (void)end;
    copier->copy_file_range_usable = false;
#endif
    return 0;
}

static int copy_range_with_buffer(struct segment_copier *copier, off_t offset, off_t end)
{
    if (copier->buffer == NULL) {
        copier->buffer = malloc(COPY_BUFFER_SIZE);
        if (copier->buffer == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    while (offset < end) {
        size_t want =
            (size_t)(end - offset) < COPY_BUFFER_SIZE ? (size_t)(end - offset) : COPY_BUFFER_SIZE;
        ssize_t n = TEMP_FAILURE_RETRY(pread(copier->src_fd, copier->buffer, want, offset));
        if (n < 0)
            return -1;
        if (n == 0)
            return 0; /* the source shrank under us; the final ftruncate fixes the size */
        if (pwrite_all(copier->dst_fd, copier->buffer, (size_t)n, offset) < 0)
            return -1;
        offset += n;
    }
    return 0;
}

static int copy_segment(struct segment_copier *copier, off_t start, off_t end)
{
    off_t offset = start;
    if (copy_range_in_kernel(copier, &offset, end) < 0)
        return -1;
    return copy_range_with_buffer(copier, offset, end);
}

/* Finds the next data segment at or after offset: 0 with [*data, *hole), 1 when only holes
 * remain. File systems without SEEK_DATA (EINVAL) are treated as one data segment. */
static int next_data_segment(int fd, off_t offset, off_t size, off_t *data, off_t *hole)
{
    *data = lseek(fd, offset, SEEK_DATA);
    if (*data < 0 && errno == ENXIO)
        return 1;
    if (*data < 0 && errno == EINVAL) {
        *data = offset;
        *hole = size;
        return 0;
    }
    if (*data < 0)
        return -1;
    *hole = lseek(fd, *data, SEEK_HOLE);
    if (*hole < 0)
        return -1;
    if (*hole > size)
        *hole = size;
    return 0;
}

/* Copies every data segment of src into dst at the same offsets; holes stay holes. Without
 * allow_sharing, copy_file_range is not used (XFS and btrfs may serve it by sharing extents). */
static int copy_sparse(int src_fd, int dst_fd, off_t size, bool allow_sharing,
                       enum clone_strategy *used)
{
    struct segment_copier copier = {.src_fd = src_fd,
                                    .dst_fd = dst_fd,
                                    .copy_file_range_usable = allow_sharing,
                                    .buffer = NULL};
    int ret = 0;
    off_t offset = 0;
    while (ret == 0 && offset < size) {
        off_t data, hole;
        int found = next_data_segment(src_fd, offset, size, &data, &hole);
        if (found != 0) {
            ret = found < 0 ? -1 : 0;
            break;
        }
        ret = copy_segment(&copier, data, hole);
        offset = hole;
    }
    int saved = errno;
    free(copier.buffer);
    errno = saved;
    *used =
        copier.copy_file_range_usable ? CLONE_STRATEGY_COPY_FILE_RANGE : CLONE_STRATEGY_SPARSE_COPY;
    if (ret < 0)
        return -1;
    return ftruncate(dst_fd, size);
}

/* Fills dst_fd from src_fd with the cheapest strategy that works (that shares nothing,
 * without allow_sharing); errno on failure. */
static int clone_contents(int src_fd, int dst_fd, off_t size, bool allow_sharing,
                          enum clone_strategy *used)
{
    if (!allow_sharing)
        return copy_sparse(src_fd, dst_fd, size, false, used);
    int reflinked = try_reflink(src_fd, dst_fd);
    if (reflinked < 0)
        return -1;
    if (reflinked == 0) {
        *used = CLONE_STRATEGY_REFLINK;
        return 0;
    }
    return copy_sparse(src_fd, dst_fd, size, true, used);
}

#ifdef __APPLE__
/* clonefile creates dst itself (failing if it exists), so it runs before the O_EXCL open.
 * 0: cloned; 1: unsupported here; -1: failed. */
static int try_clonefile(const char *src, const char *dst, struct shed_err *err)
{
    if (clonefile(src, dst, 0) == 0)
        return fs_fsync_dir_of(dst, err) < 0 ? (unlink(dst), -1) : 0;
    if (errno_means_unsupported(errno))
        return 1;
    return shed_errf_errno(err, code_for_errno(errno), errno, "cannot clone %s to %s", src, dst);
}
#endif

static int clone_or_copy(const char *src, const char *dst, bool allow_sharing,
                         enum clone_strategy *strategy, struct shed_err *err)
{
    enum clone_strategy used = CLONE_STRATEGY_NONE;
    if (strategy != NULL)
        *strategy = used;
#ifdef __APPLE__
    int cloned = allow_sharing ? try_clonefile(src, dst, err) : 1;
    if (cloned <= 0) {
        if (cloned == 0 && strategy != NULL)
            *strategy = CLONE_STRATEGY_REFLINK;
        return cloned;
    }
#endif
    cleanup_close int src_fd = open(src, O_RDONLY | O_CLOEXEC);
    if (src_fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", src);
    struct stat st;
    if (fstat(src_fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", src);
    if (!S_ISREG(st.st_mode))
        return shed_errf(err, SHED_E_IO, "%s is not a regular file", src);

    cleanup_close int dst_fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (dst_fd < 0)
        return shed_errf_errno(err, code_for_errno(errno), errno, "cannot create %s", dst);
    /* From here on dst is ours: every failure removes it. */
    if (clone_contents(src_fd, dst_fd, st.st_size, allow_sharing, &used) < 0 || fsync(dst_fd) < 0) {
        int saved = errno;
        unlink(dst);
        return shed_errf_errno(err, code_for_errno(saved), saved, "cannot copy %s to %s (%s)", src,
                               dst, clone_strategy_name(used));
    }
    if (close(steal_fd(&dst_fd)) < 0) {
        int saved = errno;
        unlink(dst);
        return shed_errf_errno(err, code_for_errno(saved), saved, "cannot write %s", dst);
    }
    if (fs_fsync_dir_of(dst, err) < 0) {
        unlink(dst);
        return -1;
    }
    if (strategy != NULL)
        *strategy = used;
    return 0;
}

int clone_file(const char *src, const char *dst, enum clone_strategy *strategy,
               struct shed_err *err)
{
    return clone_or_copy(src, dst, true, strategy, err);
}

int clone_file_copy(const char *src, const char *dst, enum clone_strategy *strategy,
                    struct shed_err *err)
{
    return clone_or_copy(src, dst, false, strategy, err);
}

int clone_can_reflink(int src_fd, const char *dst_dir, bool *can, struct shed_err *err)
{
    *can = false;
#ifdef FICLONERANGE
    cleanup_close int fd = open(dst_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno_means_unsupported(errno) || errno == EISDIR
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot probe %s", dst_dir);
    struct file_clone_range range = {.src_fd = src_fd, .src_offset = 0, .src_length = 4096};
    if (ioctl(fd, FICLONERANGE, &range) == 0)
        *can = true;
    else if (!errno_means_unsupported(errno))
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot probe reflinks into %s", dst_dir);
#else
    (void)src_fd;
    (void)dst_dir;
#endif
    return 0;
}
