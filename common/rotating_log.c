/* A capped, once-rotated append log (see rotating_log.h). */
#include "rotating_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "io.h"

static int open_current(struct rotating_log *log, struct shed_err *err)
{
    int fd = openat(log->dir_fd, log->name,
                    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open the log %s", log->name);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return shed_errf(err, SHED_E_IO, "the log %s is not a regular file", log->name);
    }
    if (log->fd >= 0)
        close(log->fd);
    log->fd = fd;
    return 0;
}

int rotating_log_open(struct rotating_log *log, const char *path, uint64_t max_bytes,
                      struct shed_err *err)
{
    *log = ROTATING_LOG_INIT;
    log->max_bytes = max_bytes > 0 ? max_bytes : 1;
    const char *slash = strrchr(path, '/');
    cleanup_free char *dir = slash == NULL   ? strdup(".")
                             : slash == path ? strdup("/")
                                             : strndup(path, (size_t)(slash - path));
    log->name = strdup(slash != NULL ? slash + 1 : path);
    log->rotated_name = str_printf("%s.1", slash != NULL ? slash + 1 : path);
    if (dir == NULL || log->name == NULL || log->rotated_name == NULL) {
        rotating_log_close(log);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        int saved = errno;
        rotating_log_close(log);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot open directory %s", dir);
    }
    if (open_current(log, err) < 0) {
        rotating_log_close(log);
        return -1;
    }
    return 0;
}

/* Whether the name still names the open file (prune, an admin or logrotate may have moved
 * it); false also when it is gone. */
static bool still_current(const struct rotating_log *log, const struct stat *open_st)
{
    struct stat named;
    return fstatat(log->dir_fd, log->name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
           named.st_dev == open_st->st_dev && named.st_ino == open_st->st_ino;
}

/* The current file, reopened when it is not the named one, rotated first when len more bytes
 * would pass the cap. */
static int make_room(struct rotating_log *log, size_t len, struct shed_err *err)
{
    struct stat st;
    if (fstat(log->fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat the log %s", log->name);
    if (!still_current(log, &st)) {
        if (open_current(log, err) < 0 || fstat(log->fd, &st) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot reopen the log %s", log->name);
    }
    if ((uint64_t)st.st_size + len <= log->max_bytes)
        return 0;
    if (st.st_size > 0 && renameat(log->dir_fd, log->name, log->dir_fd, log->rotated_name) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot rotate the log %s", log->name);
    return st.st_size > 0 ? open_current(log, err) : 0;
}

int rotating_log_write(struct rotating_log *log, const void *data, size_t len, struct shed_err *err)
{
    if (log->fd < 0)
        return shed_errf(err, SHED_E_IO, "the log is closed");
    if (len > log->max_bytes) {
        data = (const char *)data + (len - log->max_bytes);
        len = (size_t)log->max_bytes;
    }
    if (len == 0)
        return 0;
    if (make_room(log, len, err) < 0)
        return -1;
    if (write_all(log->fd, data, len) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot write the log %s", log->name);
    return 0;
}

void rotating_log_close(struct rotating_log *log)
{
    if (log->fd >= 0)
        close(log->fd);
    if (log->dir_fd >= 0)
        close(log->dir_fd);
    free(log->name);
    free(log->rotated_name);
    *log = ROTATING_LOG_INIT;
}
