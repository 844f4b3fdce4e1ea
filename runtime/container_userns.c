/* User-namespace mode (config container.userns): the shed's uid/gid 0..65535 are host
 * uids/gids userns_base.. (an unprivileged range), so root in the shed is nobody on the host.
 *
 * The image's files belong to uid 0 on disk. Rather than chown a whole rootfs, the rootfs is
 * mounted idmapped (MOUNT_ATTR_IDMAP, ext4 supports it since Linux 5.12) with the same
 * mapping: on-disk uid 0 is host uid userns_base, which is uid 0 in the shed, so the shed
 * sees its files as it always did and writes them back as uid 0 on disk. The disk stays
 * interchangeable with the non-userns mode.
 *
 * runc sets the shed up from inside the new user namespace, as the mapped root, which has no
 * rights over host-owned directories: the directories on the way to the bundle's rootfs
 * (data dir, instance dir, the shed's directory, its bundle) get group userns_base and mode
 * 0710, so exactly that gid may traverse them (not list them, not open anything in them). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "container_internal.h"

static int write_map(pid_t pid, const char *file, uint32_t base, struct shed_err *err)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int len = snprintf(line, sizeof line, "0 %u %u\n", base, (unsigned)SHED_CONFIG_USERNS_SIZE);
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, line, (size_t)len) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "write %s", path);
    return 0;
}

/* A child that only creates a user namespace and waits to be killed; its namespace, once
 * mapped, is the idmap of the mount. */
static pid_t spawn_userns_holder(int *ready_read)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* async-signal-safe calls only: this is a fork of a multithreaded server */
        char byte = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
        if (write(ready[1], &byte, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    *ready_read = ready[0];
    if (pid < 0)
        close(ready[0]);
    return pid;
}

int container_userns_fd(uint32_t base, int *fd, struct shed_err *err)
{
    int ready = -1;
    pid_t pid = spawn_userns_holder(&ready);
    if (pid < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "fork for a user namespace");
    char byte = 0;
    ssize_t got = TEMP_FAILURE_RETRY(read(ready, &byte, 1));
    close(ready);
    int rc = 0;
    if (got != 1 || byte != 'y')
        rc = shed_errf(err, SHED_E_NOT_SUPPORTED,
                       "cannot create a user namespace here (container.userns)");
    if (rc == 0 &&
        (write_map(pid, "uid_map", base, err) < 0 || write_map(pid, "gid_map", base, err) < 0))
        rc = -1;
    if (rc == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
            rc = shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", path);
    }
    kill(pid, SIGKILL);
    TEMP_FAILURE_RETRY(waitpid(pid, NULL, 0));
    return rc;
}

int container_idmap_mount(const char *mountpoint, uint32_t base, struct shed_err *err)
{
    cleanup_close int userns = -1;
    if (container_userns_fd(base, &userns, err) < 0)
        return -1;
    cleanup_close int tree =
        (int)open_tree(AT_FDCWD, mountpoint, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open_tree %s", mountpoint);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
        return shed_errf_errno(err, SHED_E_NOT_SUPPORTED, errno,
                               "idmapped mount of the rootfs (container.userns needs Linux 5.12+)");
    /* The plain mount goes (its super block stays: the clone holds it), the idmapped one
     * takes its place. */
    if (umount2(mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unmount %s", mountpoint);
    if (move_mount(tree, "", AT_FDCWD, mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "move the idmapped rootfs to %s",
                               mountpoint);
    return 0;
}

/* The directories above the first of ours are the host's: the mapped root needs o+x on each
 * (runc resolves the bundle's rootfs path as that uid), and we do not change them. */
static int check_ancestors(const char *first, uint32_t base, struct shed_err *err)
{
    cleanup_free char *path = strdup(first);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (char *slash = strrchr(path, '/'); slash != NULL && slash != path;
         slash = strrchr(path, '/')) {
        *slash = '\0';
        struct stat st;
        if (stat(path, &st) < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "stat %s", path);
        if ((st.st_mode & S_IXOTH) == 0)
            return shed_errf(err, SHED_E_BACKEND_ERROR,
                             "container.userns: %s is not traversable by the shed's mapped root "
                             "(host uid %u): give it o+x, or use a data_dir below directories "
                             "that have it",
                             path, base);
    }
    return 0;
}

int container_userns_open_path(const char *const *dirs, size_t count, uint32_t base,
                               struct shed_err *err)
{
    if (count > 0 && check_ancestors(dirs[0], base, err) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (chown(dirs[i], (uid_t)-1, (gid_t)base) < 0 || chmod(dirs[i], 0710) < 0)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                                   "let the shed's mapped root traverse %s", dirs[i]);
    }
    return 0;
}
