#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
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

int fs_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct shed_err *err)
{
    cleanup_free char *tmp = str_printf("%s.tmp.%ld", path, (long)getpid());
    if (tmp == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot create %s", tmp);
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int saved = errno;
        unlink(tmp);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot write %s", tmp);
    }
    if (rename(tmp, path) < 0) {
        int saved = errno;
        unlink(tmp);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot rename %s to %s", tmp, path);
    }
    return fs_fsync_dir_of(path, err);
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
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
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
    errno = 0;
    char *end = NULL;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || value < 0)
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
