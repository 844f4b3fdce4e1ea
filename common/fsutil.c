#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "io.h"

char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : out;
}

int fs_dir_next(DIR *dir, const char *path, struct dirent **entry, struct shed_err *err)
{
    for (;;) {
        errno = 0;
        *entry = readdir(dir);
        if (*entry == NULL)
            return errno == 0 ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", path);
        if (strcmp((*entry)->d_name, ".") != 0 && strcmp((*entry)->d_name, "..") != 0)
            return 1;
    }
}

static bool entry_is_directory(DIR *dir, const struct dirent *entry)
{
    struct stat st;
    if (entry->d_type != DT_UNKNOWN)
        return entry->d_type == DT_DIR;
    return fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int fs_list_files(const char *path, struct strv *names, struct shed_err *err)
{
    cleanup_closedir DIR *dir = opendir(path);
    if (dir == NULL)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    int rc = 0;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, path, &entry, err)) > 0)
        if (!entry_is_directory(dir, entry) && (rc = strv_add(names, entry->d_name, err)) < 0)
            break;
    strv_sort(names);
    return rc;
}

char *fs_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    bool slash = la > 0 && a[la - 1] == '/';
    return str_printf("%s%s%s", a, slash ? "" : "/", b);
}

int fs_mkdir_p(const char *path, unsigned mode, struct shed_err *err)
{
    cleanup_free char *copy = strdup(path);
    if (copy == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot create directory %s", copy);
        *p = '/';
    }
    if (mkdir(copy, mode) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot create directory %s", copy);
    struct stat st;
    if (stat(copy, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", copy);
    if (!S_ISDIR(st.st_mode))
        return shed_errf(err, SHED_E_IO, "%s exists and is not a directory", copy);
    return 0;
}

int fs_mkdir_private(const char *path, struct shed_err *err)
{
    if (fs_mkdir_p(path, 0700, err) < 0)
        return -1;
    struct stat st;
    if (lstat(path, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    /* Made by an older version (0755), or by hand: the server's data is nobody else's. Group
     * traverse alone (0710) is how user-namespace mode lets its one mapped root through. */
    if ((st.st_mode & 067) != 0 && S_ISDIR(st.st_mode) && chmod(path, 0700) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot make %s private (chmod 0700)", path);
    return 0;
}

int fs_fsync_dir(const char *dir, struct shed_err *err)
{
    cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open directory %s", dir);
    if (fsync(fd) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot fsync directory %s", dir);
    return 0;
}

int fs_fsync_dir_of(const char *path, struct shed_err *err)
{
    cleanup_free char *copy = strdup(path);
    if (copy == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    char *slash = strrchr(copy, '/');
    if (slash == NULL)
        return fs_fsync_dir(".", err);
    if (slash == copy)
        slash[1] = '\0';
    else
        *slash = '\0';
    return fs_fsync_dir(copy, err);
}

/* ---- atomic publication ------------------------------------------------------------------ */

/* A killed writer's leftover, or a sibling in another PID namespace, can hold a candidate name:
 * O_EXCL sees it and the next sequence number is tried. */
#define TMP_NAME_ATTEMPTS 100

static atomic_uint tmp_sequence;

/* "<name>.tmp.<pid><6-digit sequence>": only digits after ".tmp.", distinct for every call of
 * this process (until the sequence wraps at a million, which O_EXCL covers). */
static char *next_tmp_name(const char *name)
{
    unsigned sequence = atomic_fetch_add(&tmp_sequence, 1) % 1000000u;
    return str_printf("%s.tmp.%ld%06u", name, (long)getpid(), sequence);
}

/* Splits path into its directory, opened, and the name within it (pointing into path). */
static int open_parent_dir(const char *path, int *dir_fd, const char **name, struct shed_err *err)
{
    const char *slash = strrchr(path, '/');
    *name = slash != NULL ? slash + 1 : path;
    if (**name == '\0' || strcmp(*name, ".") == 0 || strcmp(*name, "..") == 0)
        return shed_errf(err, SHED_E_IO, "%s does not name a file", path);
    cleanup_free char *dir = slash == NULL   ? strdup(".")
                             : slash == path ? strdup("/")
                                             : strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    *dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open directory %s", dir);
    return 0;
}

/* path's name with its last component replaced by name (both in one directory). */
static char *sibling_path(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash != NULL ? (int)(slash + 1 - path) : 0;
    return str_printf("%.*s%s", dir_len, path, name);
}

/* Calls make(dir_fd, candidate, arg) with fresh temporary names until one does not exist yet.
 * make returns 0, or -1 with errno (EEXIST: try another name). *tmp_name: the name used. */
static int create_unique_tmp(int dir_fd, const char *name, int (*make)(int, const char *, void *),
                             void *arg, char **tmp_name)
{
    for (int attempt = 0; attempt < TMP_NAME_ATTEMPTS; attempt++) {
        cleanup_free char *candidate = next_tmp_name(name);
        if (candidate == NULL) {
            errno = ENOMEM;
            return -1;
        }
        if (make(dir_fd, candidate, arg) == 0) {
            *tmp_name = steal_pointer(&candidate);
            return 0;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

struct tmp_file_request {
    unsigned mode;
    int fd;
};

static int make_tmp_file(int dir_fd, const char *candidate, void *arg)
{
    struct tmp_file_request *request = arg;
    request->fd =
        openat(dir_fd, candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)request->mode);
    return request->fd < 0 ? -1 : 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

int fs_atomic_open(struct fs_atomic_file *file, const char *path, unsigned mode,
                   struct shed_err *err)
{
    *file = FS_ATOMIC_FILE_INIT;
    const char *name;
    cleanup_close int dir_fd = -1;
    if (open_parent_dir(path, &dir_fd, &name, err) < 0)
        return -1;
    cleanup_free char *final_path = strdup(path);
    if (final_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct tmp_file_request request = {.mode = mode, .fd = -1};
    cleanup_free char *tmp_name = NULL;
    if (create_unique_tmp(dir_fd, name, make_tmp_file, &request, &tmp_name) < 0) {
        if (errno == ENOMEM)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot create a temporary file for %s",
                               path);
    }
    file->tmp_path = sibling_path(path, tmp_name);
    file->fd = request.fd;
    file->dir_fd = steal_fd(&dir_fd);
    file->path = steal_pointer(&final_path);
    if (file->tmp_path == NULL) {
        fs_atomic_discard(file);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

void fs_atomic_discard(struct fs_atomic_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    if (file->tmp_path != NULL && file->dir_fd >= 0)
        (void)unlinkat(file->dir_fd, base_name(file->tmp_path), 0);
    if (file->dir_fd >= 0)
        close(file->dir_fd);
    free(file->path);
    free(file->tmp_path);
    *file = FS_ATOMIC_FILE_INIT;
}

/* Renames tmp_name over name in dir_fd; on failure the temporary entry is removed. */
static int rename_tmp(int dir_fd, const char *tmp_name, const char *name, const char *tmp_path,
                      const char *path, struct shed_err *err)
{
    if (renameat(dir_fd, tmp_name, dir_fd, name) == 0)
        return 0;
    int saved = errno;
    (void)unlinkat(dir_fd, tmp_name, 0);
    return shed_errf_errno(err, SHED_E_IO, saved, "cannot rename %s to %s", tmp_path, path);
}

static int fsync_dir_of(int dir_fd, const char *path, struct shed_err *err)
{
    if (fsync(dir_fd) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot fsync the directory of %s", path);
    return 0;
}

int fs_atomic_commit(struct fs_atomic_file *file, struct shed_err *err)
{
    int rc = 0;
    if (fsync(file->fd) < 0 || (close(steal_fd(&file->fd)) < 0 && errno != EINTR))
        rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot write %s", file->tmp_path);
    if (rc == 0) {
        rc = rename_tmp(file->dir_fd, base_name(file->tmp_path), base_name(file->path),
                        file->tmp_path, file->path, err);
        free(steal_pointer(&file->tmp_path)); /* renamed, or removed by rename_tmp */
    }
    if (rc == 0)
        rc = fsync_dir_of(file->dir_fd, file->path, err);
    fs_atomic_discard(file);
    return rc;
}

int fs_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct shed_err *err)
{
    cleanup_atomic_file struct fs_atomic_file file = FS_ATOMIC_FILE_INIT;
    if (fs_atomic_open(&file, path, mode, err) < 0)
        return -1;
    if (write_all(file.fd, data, len) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot write %s", file.tmp_path);
    return fs_atomic_commit(&file, err);
}

static int make_tmp_link(int dir_fd, const char *candidate, void *arg)
{
    return linkat(AT_FDCWD, (const char *)arg, dir_fd, candidate, 0);
}

int fs_link_atomic(const char *src, const char *dst, struct shed_err *err)
{
    const char *name;
    cleanup_close int dir_fd = -1;
    if (open_parent_dir(dst, &dir_fd, &name, err) < 0)
        return -1;
    cleanup_free char *tmp_name = NULL;
    if (create_unique_tmp(dir_fd, name, make_tmp_link, (void *)src, &tmp_name) < 0) {
        if (errno == ENOMEM)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot link %s beside %s", src, dst);
    }
    cleanup_free char *tmp_path = sibling_path(dst, tmp_name);
    if (tmp_path == NULL) {
        (void)unlinkat(dir_fd, tmp_name, 0);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (rename_tmp(dir_fd, tmp_name, name, tmp_path, dst, err) < 0)
        return -1;
    /* When dst already was a link to src, rename(2) succeeds without doing anything and the
     * temporary link stays: remove it (otherwise the name is gone and this is a no-op). */
    (void)unlinkat(dir_fd, tmp_name, 0);
    return fsync_dir_of(dir_fd, dst, err);
}

int fs_read_fd(int fd, const char *path, char **data, size_t *len, size_t max_len,
               struct shed_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    if ((uint64_t)st.st_size > max_len)
        return shed_errf(err, SHED_E_IO, "%s is too large (%lld bytes, at most %zu)", path,
                         (long long)st.st_size, max_len);
    cleanup_free char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    ssize_t done = read_full(fd, buf, (size_t)st.st_size);
    if (done < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", path);
    buf[done] = '\0';
    if (len != NULL)
        *len = (size_t)done;
    *data = steal_pointer(&buf);
    return 0;
}

int fs_read_file(const char *path, char **data, size_t *len, size_t max_len, struct shed_err *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    return fs_read_fd(fd, path, data, len, max_len, err);
}

bool fs_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int fs_lock_file(const char *path, bool blocking, int *fd_out, struct shed_err *err)
{
    *fd_out = -1;
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open lock %s", path);
    if (TEMP_FAILURE_RETRY(flock(fd, LOCK_EX | (blocking ? 0 : LOCK_NB))) < 0) {
        if (errno == EWOULDBLOCK && !blocking)
            return 0;
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot lock %s", path);
    }
    *fd_out = steal_fd(&fd);
    return 0;
}

int parse_size(const char *text, uint64_t *bytes, struct shed_err *err)
{
    if (text == NULL || *text == '\0')
        return shed_errf(err, SHED_E_INVALID_REQUEST, "empty size");
    /* Digits with an optional decimal fraction, nothing else: strtod alone would also take
     * "nan", "inf", "1e9" and hex floats. */
    size_t digits = strspn(text, "0123456789");
    size_t number_len = digits;
    if (text[number_len] == '.')
        number_len += 1 + strspn(text + number_len + 1, "0123456789");
    if (digits == 0 || number_len == digits + 1)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid size \"%s\"", text);
    errno = 0;
    char *end = NULL;
    double value = strtod(text, &end);
    if (errno != 0 || end != text + number_len || !isfinite(value))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid size \"%s\"", text);
    double scale = 1;
    switch (*end) {
    case 'T':
    case 't': scale *= 1024; /* fall through */
    case 'G':
    case 'g': scale *= 1024; /* fall through */
    case 'M':
    case 'm': scale *= 1024; /* fall through */
    case 'K':
    case 'k':
        scale *= 1024;
        end++;
        break;
    case '\0': break;
    default:
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid size \"%s\" (use K, M, G or T)",
                         text);
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0')
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid size \"%s\"", text);
    double total = value * scale;
    if (total >= 18446744073709551615.0)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "size \"%s\" is too large", text);
    *bytes = (uint64_t)total;
    return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t buflen)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double value = (double)bytes;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < sizeof units / sizeof units[0]) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf(buf, buflen, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, buflen, "%.1f %s", value, units[unit]);
    return buf;
}
