/* The shed's /workspace from local_dir: the directory local_dir_open resolved is bind-mounted
 * by its descriptor (/proc/self/fd/N: the kernel binds what the fd is, no path is looked up
 * again) onto <bundle>/workspace, a directory of ours that the shed cannot reach, with
 * nosuid, nodev and private propagation. runc binds that staging mount (non-recursively: no
 * mount below local_dir comes along) into the shed, and once the shed runs the staging mount
 * goes again: the shed's copy lives in its own mount namespace. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "container_internal.h"

/* The flags of the mount local_dir lies on that a bind remount must keep (dropping them
 * would widen access, e.g. make a read-only mount writable). */
static unsigned long kept_mount_flags(int dir_fd)
{
    struct statvfs st;
    unsigned long flags = 0;
    if (fstatvfs(dir_fd, &st) < 0)
        return MS_RDONLY; /* cannot tell: the safe side */
    if (st.f_flag & ST_RDONLY)
        flags |= MS_RDONLY;
    if (st.f_flag & ST_NOEXEC)
        flags |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME)
        flags |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME)
        flags |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME)
        flags |= MS_RELATIME;
    return flags;
}

int container_bind_workspace(int dir_fd, const char *staging, struct shed_err *err)
{
    if (mkdir(staging, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "mkdir %s", staging);
    if (container_unbind_workspace(staging, err) < 0)
        return -1;
    char source[64];
    snprintf(source, sizeof source, "/proc/self/fd/%d", dir_fd);
    if (mount(source, staging, NULL, MS_BIND, NULL) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "bind local_dir on %s", staging);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | kept_mount_flags(dir_fd);
    if (mount(NULL, staging, NULL, MS_PRIVATE, NULL) < 0 ||
        mount(NULL, staging, NULL, flags, NULL) < 0) {
        int saved = errno;
        umount2(staging, MNT_DETACH | UMOUNT_NOFOLLOW);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, saved,
                               "make the local_dir mount %s private, nosuid and nodev", staging);
    }
    return 0;
}

int container_unbind_workspace(const char *staging, struct shed_err *err)
{
    for (int depth = 0; depth < 16 && container_is_mounted(staging); depth++)
        if (umount2(staging, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
            errno != ENOENT)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unmount %s", staging);
    return 0;
}
