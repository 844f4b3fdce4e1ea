/* Small file-system helpers shared by every module: durable writes, directories, locks. */
#ifndef SHED_FSUTIL_H
#define SHED_FSUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed_err.h"

/* mkdir -p with the given mode for directories it creates. */
int fs_mkdir_p(const char *path, unsigned mode, struct shed_err *err);
/* fsync the directory that contains path (or path itself when it is a directory). */
int fs_fsync_dir_of(const char *path, struct shed_err *err);
int fs_fsync_dir(const char *dir, struct shed_err *err);
/* Writes data to path durably: path.tmp.<pid> + fsync + rename + fsync of the directory. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct shed_err *err);
/* Reads a whole (small) file; *data is NUL-terminated. Fails with SHED_E_IO, errno kept. */
int fs_read_file(const char *path, char **data, size_t *len, size_t max_len, struct shed_err *err);
/* Reads everything from an open fd (at most max_len bytes) in large reads; NUL-terminated. */
int fs_read_fd(int fd, const char *path, char **data, size_t *len, size_t max_len,
               struct shed_err *err);
bool fs_exists(const char *path);
/* The next entry of dir (opened from path), "." and ".." skipped: 1 with *entry, 0 at the
 * end, -1 when reading fails. */
int fs_dir_next(DIR *dir, const char *path, struct dirent **entry, struct shed_err *err);
/* Opens (creating 0644) and flocks path. blocking=false: returns 0 with *fd = -1 when held. */
int fs_lock_file(const char *path, bool blocking, int *fd, struct shed_err *err);
/* malloc'd printf; NULL only on allocation failure. */
char *fs_path_join(const char *a, const char *b);
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses "20G", "512M", "1048576", "1.5G" into bytes (K/M/G/T are powers of 1024). */
int parse_size(const char *text, uint64_t *bytes, struct shed_err *err);
/* "1.5 GiB"-style human size into buf. */
const char *format_size(uint64_t bytes, char *buf, size_t buflen);

#endif
