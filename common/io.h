/* Whole-buffer reads and writes that survive short transfers and signals.
 *
 * Each returns -1 with errno set on failure, so the caller attaches its own code and message
 * (shed_errf_errno). For a single call that only needs EINTR retried, use glibc's
 * TEMP_FAILURE_RETRY(expr) from <unistd.h> (this header includes it). */
#ifndef SHED_IO_H
#define SHED_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>

/* Writes all len bytes: 0, or -1 (a write that makes no progress fails with EIO). */
int write_all(int fd, const void *data, size_t len);
/* Writes all len bytes at offset (the file offset is not moved): 0 or -1. */
int pwrite_all(int fd, const void *data, size_t len, off_t offset);
/* Reads until len bytes (at most SSIZE_MAX) or the end of the file: the count read (less
 * than len only at the end), or -1. */
ssize_t read_full(int fd, void *buf, size_t len);
/* read_full at offset (the file offset is not moved). */
ssize_t pread_full(int fd, void *buf, size_t len, off_t offset);

#endif
