/* Small file-system helpers shared by every module: durable writes, directories, locks. */
#ifndef SHED_FSUTIL_H
#define SHED_FSUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed_err.h"
#include "strv.h"

/* mkdir -p with the given mode for directories it creates. */
int fs_mkdir_p(const char *path, unsigned mode, struct shed_err *err);
/* fs_mkdir_p with 0700, and path itself made 0700 when it exists with more than group
 * traverse (0710) allowed (the server's data directories are private to root). */
int fs_mkdir_private(const char *path, struct shed_err *err);
/* fsync the directory that contains path (or path itself when it is a directory). */
int fs_fsync_dir_of(const char *path, struct shed_err *err);
int fs_fsync_dir(const char *dir, struct shed_err *err);

/* A file written under a temporary name beside its final one and published whole or not at
 * all: fs_atomic_open, write to fd, fs_atomic_commit (fsync, rename over the final name, fsync
 * of the directory). The temporary name is unique per call, <name>.tmp.<pid><6-digit
 * sequence>, and created O_EXCL, so threads and processes writing one path never share a temp;
 * it keeps the ".tmp.<digits>" shape by which imaged and df recognise a killed writer's
 * leftovers. */
struct fs_atomic_file {
    int fd;         /* the temporary file, open for writing; -1 once committed or discarded */
    int dir_fd;     /* the directory of both names */
    char *path;     /* the final path, for messages */
    char *tmp_path; /* the temporary file's path, for messages */
};
#define FS_ATOMIC_FILE_INIT ((struct fs_atomic_file){.fd = -1, .dir_fd = -1})

/* Creates the temporary file for path with mode (before the umask). */
int fs_atomic_open(struct fs_atomic_file *file, const char *path, unsigned mode,
                   struct shed_err *err);
/* fsync, rename over the final name, fsync of the directory; the temp is removed on failure.
 * Either way file is released afterwards. */
int fs_atomic_commit(struct fs_atomic_file *file, struct shed_err *err);
/* Removes the temporary file unless it was committed and releases file (idempotent). */
void fs_atomic_discard(struct fs_atomic_file *file);
#define cleanup_atomic_file __attribute__((cleanup(fs_atomic_discard)))

/* Writes data to path durably and atomically (fs_atomic_open + write + fs_atomic_commit):
 * readers see the old content or the new, never a mix, and concurrent writers never fail
 * because of each other (the last rename wins). */
int fs_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct shed_err *err);
/* Makes dst a hard link to src, replacing dst atomically: a link under a unique temporary
 * name (as above), rename, fsync of dst's directory. */
int fs_link_atomic(const char *src, const char *dst, struct shed_err *err);
/* Reads a whole (small) file; *data is NUL-terminated. Fails with SHED_E_IO, errno kept. */
int fs_read_file(const char *path, char **data, size_t *len, size_t max_len, struct shed_err *err);
/* Reads everything from an open fd (at most max_len bytes) in large reads; NUL-terminated. */
int fs_read_fd(int fd, const char *path, char **data, size_t *len, size_t max_len,
               struct shed_err *err);
bool fs_exists(const char *path);
/* The next entry of dir (opened from path), "." and ".." skipped: 1 with *entry, 0 at the
 * end, -1 when reading fails. */
int fs_dir_next(DIR *dir, const char *path, struct dirent **entry, struct shed_err *err);
/* Adds the name of every entry of the directory at path that is not a directory (symlinks are
 * not followed), sorted. A missing directory has none. */
int fs_list_files(const char *path, struct strv *names, struct shed_err *err);
/* Opens (creating 0600) and flocks path. blocking=false: returns 0 with *fd = -1 when held. */
int fs_lock_file(const char *path, bool blocking, int *fd, struct shed_err *err);
/* malloc'd printf; NULL only on allocation failure. */
char *fs_path_join(const char *a, const char *b);
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses "20G", "512M", "1048576", "1.5G" into bytes (K/M/G/T are powers of 1024). */
int parse_size(const char *text, uint64_t *bytes, struct shed_err *err);
/* "1.5 GiB"-style human size into buf. */
const char *format_size(uint64_t bytes, char *buf, size_t buflen);

#endif
