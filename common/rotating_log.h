/* An append-only log file with a size cap and one rotation: <path> holds at most max_bytes,
 * and when the next write would pass that, <path> becomes <path>.1 (replacing the older one)
 * and a new <path> is started. So the pair never holds more than twice the cap, whatever is
 * written.
 *
 * The file may be truncated (`system prune --scope logs` moves its tail to the front), renamed
 * or removed behind the writer's back: each write checks that <path> still is the open file
 * (device and inode) and reopens it otherwise; sizes are read from the file, not counted.
 * Files are created 0600 and never followed through a symlink. */
#ifndef SHED_ROTATING_LOG_H
#define SHED_ROTATING_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "shed_err.h"

struct rotating_log {
    int dir_fd;         /* the directory of path */
    char *name;         /* path's last component */
    char *rotated_name; /* name + ".1" */
    uint64_t max_bytes;
    int fd; /* open for appending; -1 when closed */
};
#define ROTATING_LOG_INIT ((struct rotating_log){.dir_fd = -1, .fd = -1})

/* Opens (creating) path for appending. max_bytes must be at least 1. */
int rotating_log_open(struct rotating_log *log, const char *path, uint64_t max_bytes,
                      struct shed_err *err);
/* Appends data; a chunk larger than the cap keeps only its last max_bytes. */
int rotating_log_write(struct rotating_log *log, const void *data, size_t len,
                       struct shed_err *err);
void rotating_log_close(struct rotating_log *log);
#define cleanup_rotating_log __attribute__((cleanup(rotating_log_close)))

#endif
