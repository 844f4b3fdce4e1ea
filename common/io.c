#include "io.h"

#include <errno.h>
#include <limits.h>

/* read(2) and write(2) transfer at most SSIZE_MAX bytes; larger requests are split. */
static size_t clamp_len(size_t len)
{
    return len > SSIZE_MAX ? SSIZE_MAX : len;
}

int write_all(int fd, const void *data, size_t len)
{
    const char *next = data;
    while (len > 0) {
        ssize_t n = TEMP_FAILURE_RETRY(write(fd, next, clamp_len(len)));
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        next += n;
        len -= (size_t)n;
    }
    return 0;
}

int pwrite_all(int fd, const void *data, size_t len, off_t offset)
{
    const char *next = data;
    while (len > 0) {
        ssize_t n = TEMP_FAILURE_RETRY(pwrite(fd, next, clamp_len(len), offset));
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        next += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
    char *next = buf;
    size_t done = 0;
    len = clamp_len(len);
    while (done < len) {
        ssize_t n = TEMP_FAILURE_RETRY(read(fd, next + done, len - done));
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t pread_full(int fd, void *buf, size_t len, off_t offset)
{
    char *next = buf;
    size_t done = 0;
    len = clamp_len(len);
    while (done < len) {
        ssize_t n = TEMP_FAILURE_RETRY(pread(fd, next + done, len - done, offset + (off_t)done));
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}
