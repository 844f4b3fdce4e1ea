/* The shed's rootfs on a loop device, mounted with mount(2): no losetup, no mount(8).
 *
 * The loop device is configured with LO_FLAGS_AUTOCLEAR and our fd to it is closed right
 * after the mount, so the mount holds the only reference: unmounting (ours, and the copy in
 * the container's mount namespace going away with its last process) releases the device.
 * Nothing has to remember which loop device a shed used. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "container_internal.h"

/* LOOP_CTL_GET_FREE hands the same device to concurrent callers: the loser of the race gets
 * EBUSY from LOOP_CONFIGURE and asks again. */
#define LOOP_ATTACH_ATTEMPTS 64

static int loop_configure(int loop_fd, int image_fd, const char *image, bool read_only)
{
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (unsigned)image_fd;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
    snprintf((char *)config.info.lo_file_name, sizeof config.info.lo_file_name, "%s", image);
    if (ioctl(loop_fd, LOOP_CONFIGURE, &config) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOTTY)
        return -1;
    /* Kernels before 5.8: the two-step configuration. */
    if (ioctl(loop_fd, LOOP_SET_FD, image_fd) < 0)
        return -1;
    if (ioctl(loop_fd, LOOP_SET_STATUS64, &config.info) < 0) {
        int saved = errno;
        ioctl(loop_fd, LOOP_CLR_FD, 0);
        errno = saved;
        return -1;
    }
    return 0;
}

/* Opens a free loop device already bound to image_fd; *loop_fd is owned by the caller. */
static int loop_attach(int image_fd, const char *image, bool read_only, int *loop_fd, char *device,
                       size_t device_len, struct shed_err *err)
{
    cleanup_close int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open /dev/loop-control");
    for (int attempt = 0; attempt < LOOP_ATTACH_ATTEMPTS; attempt++) {
        int number = ioctl(control, LOOP_CTL_GET_FREE);
        if (number < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                                   "no free loop device (LOOP_CTL_GET_FREE)");
        snprintf(device, device_len, "/dev/loop%d", number);
        cleanup_close int fd = open(device, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENXIO)
                continue; /* removed meanwhile */
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", device);
        }
        if (loop_configure(fd, image_fd, image, read_only) == 0) {
            *loop_fd = steal_fd(&fd);
            return 0;
        }
        if (errno != EBUSY)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "attach %s to %s", image,
                                   device);
    }
    return shed_errf(err, SHED_E_BACKEND_ERROR,
                     "no free loop device after %d attempts (all taken concurrently)",
                     LOOP_ATTACH_ATTEMPTS);
}

int container_open_beneath(const char *dir, const char *name, int flags, int *fd,
                           struct shed_err *err)
{
    cleanup_close int dir_fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir_fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", dir);
    /* No symlink, no magic link, no other mount: the file itself, in that directory. */
    struct open_how how = {
        .flags = (uint64_t)flags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    cleanup_close int file_fd = (int)syscall(SYS_openat2, dir_fd, name, &how, sizeof how);
    if (file_fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s/%s", dir, name);
    struct stat st;
    if (fstat(file_fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "stat %s/%s", dir, name);
    if (!S_ISREG(st.st_mode))
        return shed_errf(err, SHED_E_BACKEND_ERROR, "%s/%s is not a regular file", dir, name);
    *fd = steal_fd(&file_fd);
    return 0;
}

int container_open_disk_image(const char *instance, enum instance_file file, int *fd,
                              struct shed_err *err)
{
    const char *name = instance_file_name(file);
    cleanup_close int image_fd = -1;
    if (container_open_beneath(instance, name, O_RDWR, &image_fd, err) < 0)
        return -1;
    struct stat st;
    if (fstat(image_fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "stat %s/%s", instance, name);
    if (st.st_nlink != 1)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "%s/%s is not the shed's own regular file (a link to another file?)",
                         instance, name);
    *fd = steal_fd(&image_fd);
    return 0;
}

int container_open_rootfs_image(const char *instance, int *fd, struct shed_err *err)
{
    return container_open_disk_image(instance, INSTANCE_FILE_ROOTFS, fd, err);
}

int container_mount_rootfs(int image_fd, const char *image, const char *mountpoint,
                           char *device_out, size_t device_len, struct shed_err *err)
{
    return container_mount_image(image_fd, image, mountpoint, false, device_out, device_len, err);
}

int container_mount_image(int image_fd, const char *image, const char *mountpoint, bool read_only,
                          char *device_out, size_t device_len, struct shed_err *err)
{
    char device[64];
    cleanup_close int loop_fd = -1;
    if (loop_attach(image_fd, image, read_only, &loop_fd, device, sizeof device, err) < 0)
        return -1;
    /* Read-only: noload, so not even a journal replay is attempted (the lower is clean, and
     * nothing may write it). */
    if (mount(device, mountpoint, "ext4", read_only ? MS_RDONLY : 0, read_only ? "noload" : NULL) <
        0) {
        int saved = errno;
        /* Not mounted: autoclear only acts on a device that was opened by a mount, so
         * detach explicitly. */
        ioctl(loop_fd, LOOP_CLR_FD, 0);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, saved, "mount %s (%s) on %s", device,
                               image, mountpoint);
    }
    if (device_out != NULL)
        snprintf(device_out, device_len, "%s", device);
    return 0; /* closing loop_fd leaves the mount as the device's only user */
}

/* Whether /sys/block/<device>/loop/backing_file names image. */
static bool loop_backed_by(const char *device, const char *image)
{
    char path[300], backing[PATH_MAX + 16];
    snprintf(path, sizeof path, "/sys/block/%s/loop/backing_file", device);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t len = fd >= 0 ? read(fd, backing, sizeof backing - 1) : -1;
    if (len <= 0)
        return false;
    backing[len] = '\0';
    backing[strcspn(backing, "\n")] = '\0';
    return strcmp(backing, image) == 0;
}

/* Detaches device when it is still bound to the file image_st describes. A device in use (a
 * mount, even one in a dying container's namespace) only gets autoclear: the kernel frees it
 * with its last user. */
static void detach_loop_of(const char *device, const struct stat *image_st)
{
    char path[300];
    snprintf(path, sizeof path, "/dev/%s", device);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct loop_info64 info;
    if (fd < 0 || ioctl(fd, LOOP_GET_STATUS64, &info) < 0 || info.lo_device != image_st->st_dev ||
        info.lo_inode != image_st->st_ino)
        return;
    ioctl(fd, LOOP_CLR_FD, 0);
}

void container_release_loops(const char *image)
{
    /* sysfs shows the backing file's canonical path. */
    char canonical[PATH_MAX];
    struct stat st;
    if (realpath(image, canonical) == NULL || lstat(canonical, &st) < 0)
        return;
    cleanup_closedir DIR *block = opendir("/sys/block");
    if (block == NULL)
        return;
    for (struct dirent *entry; (entry = readdir(block)) != NULL;)
        if (strncmp(entry->d_name, "loop", 4) == 0 && loop_backed_by(entry->d_name, canonical))
            detach_loop_of(entry->d_name, &st);
}

bool container_loops_backed_by(const char *image)
{
    char canonical[PATH_MAX];
    if (realpath(image, canonical) == NULL)
        return false;
    cleanup_closedir DIR *block = opendir("/sys/block");
    if (block == NULL)
        return false;
    for (struct dirent *entry; (entry = readdir(block)) != NULL;)
        if (strncmp(entry->d_name, "loop", 4) == 0 && loop_backed_by(entry->d_name, canonical))
            return true;
    return false;
}

bool container_is_mounted(const char *mountpoint)
{
    /* A bind mount from the same file system has the same device as its parent: only the
     * kernel's mount-root attribute tells. */
    struct statx stx;
    if (statx(AT_FDCWD, mountpoint, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) == 0 &&
        (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    struct stat st, parent_st;
    if (stat(mountpoint, &st) < 0)
        return false;
    cleanup_free char *parent = str_printf("%s/..", mountpoint);
    if (parent == NULL || stat(parent, &parent_st) < 0)
        return false;
    return st.st_dev != parent_st.st_dev;
}

int container_unmount_rootfs(const char *mountpoint, struct shed_err *err)
{
    /* EBUSY right after the shed's processes died: the container's mount namespace can
     * outlive them for a moment. Retry briefly, then detach lazily (the mount is gone from
     * our namespace at once; the device is released when the last user lets go). */
    for (int attempt = 0; attempt < 50; attempt++) {
        if (!container_is_mounted(mountpoint))
            return 0;
        if (umount2(mountpoint, UMOUNT_NOFOLLOW) == 0)
            continue; /* loop: something may be stacked below */
        if (errno == EINVAL || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unmount %s", mountpoint);
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (umount2(mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unmount %s (lazily)", mountpoint);
    return 0;
}
