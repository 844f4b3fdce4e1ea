/* The local_dir policy: which host directory a shed may get bind-mounted at /workspace.
 *
 * Off unless the config names roots (`local_dir_roots`). A local_dir is allowed when
 *   - it is an absolute path of plain components (no ".", "..", empty) equal to or below one
 *     of the roots;
 *   - it resolves from an fd of that root without leaving it (openat2 RESOLVE_BENEATH |
 *     RESOLVE_NO_MAGICLINKS: a symlink inside the root that points out of it, absolute or
 *     through "..", fails) to an existing directory;
 *   - the directory it resolves to, compared by identity (device and inode, walking ".."),
 *     is not "/", is not /proc, /sys, /dev, /etc, /boot, /root, /run or below one of them,
 *     is not the server's data, images or instance directory, not below one of them and not
 *     one of their parents; and it is not on a kernel pseudo file system (proc, sysfs,
 *     cgroup, debugfs, tracefs, securityfs, bpf, nsfs, devpts, ...).
 * Every refusal is the same SHED_E_INVALID_LOCAL_DIR "not allowed" message, so the answer
 * never tells whether a host path exists.
 *
 * The caller gets the resolved directory as an O_PATH fd and binds exactly that (the
 * container backend mounts /proc/self/fd/<fd>, never the path again), so nothing can swap
 * the path between the check and the mount. The check runs at create and again at every
 * start (the config or the host may have changed since). */
#ifndef SHED_RUNTIME_LOCAL_DIR_H
#define SHED_RUNTIME_LOCAL_DIR_H

#include "common/shed_err.h"
#include "config/config.h"

/* The roots and the server's own directories, copied from a config. */
struct local_dir_policy {
    char **roots;            /* NULL-terminated */
    char *protected_dirs[3]; /* data_dir, images_dir, instance_dir */
};

int local_dir_policy_init(struct local_dir_policy *policy, const struct shed_config *config,
                          struct shed_err *err);
void local_dir_policy_free(struct local_dir_policy *policy);

/* Resolves path under the policy: *fd is an O_PATH | O_DIRECTORY descriptor of the allowed
 * directory (the caller closes it), or -1 with SHED_E_INVALID_LOCAL_DIR. */
int local_dir_open(const struct local_dir_policy *policy, const char *path, int *fd,
                   struct shed_err *err);

/* local_dir_open without keeping the descriptor: for validating a request. */
int local_dir_check(const struct shed_config *config, const char *path, struct shed_err *err);

#endif
