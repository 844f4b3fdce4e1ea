/* The local_dir policy (see local_dir.h). */
#include "local_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strv.h"

/* Deeper than this, a directory is refused rather than walked. */
#define MAX_ANCESTRY 1024
/* openat2 RESOLVE_BENEATH answers EAGAIN when a rename raced the lookup. */
#define RESOLVE_ATTEMPTS 8

/* Never a local_dir, nor anything below them. */
static const char *const system_dirs[] = {"/proc", "/sys",  "/dev", "/etc",
                                          "/boot", "/root", "/run"};

/* File systems whose content is the kernel's, not files. */
static const long pseudo_fs_magics[] = {
    PROC_SUPER_MAGIC, SYSFS_MAGIC,      CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, DEBUGFS_MAGIC,
    TRACEFS_MAGIC,    SECURITYFS_MAGIC, BPF_FS_MAGIC,       NSFS_MAGIC,          DEVPTS_SUPER_MAGIC,
    PSTOREFS_MAGIC,   EFIVARFS_MAGIC,   BINFMTFS_MAGIC,     SELINUX_MAGIC,       SMACK_MAGIC,
};

int local_dir_policy_init(struct local_dir_policy *policy, const struct shed_config *config,
                          struct shed_err *err)
{
    memset(policy, 0, sizeof *policy);
    cleanup_strv struct strv roots = STRV_INIT;
    for (char *const *root = config->local_dir_roots; root != NULL && *root != NULL; root++)
        if (strv_add(&roots, *root, err) < 0)
            return -1;
    const char *dirs[3] = {config->data_dir, config->images_dir, config->instance_dir};
    for (size_t i = 0; i < 3; i++) {
        policy->protected_dirs[i] = dirs[i] != NULL ? strdup(dirs[i]) : NULL;
        if (dirs[i] != NULL && policy->protected_dirs[i] == NULL) {
            local_dir_policy_free(policy);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
    }
    policy->roots = roots.count > 0 ? strv_steal(&roots) : calloc(1, sizeof(char *));
    if (policy->roots == NULL) {
        local_dir_policy_free(policy);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

void local_dir_policy_free(struct local_dir_policy *policy)
{
    strv_free_items(policy->roots);
    for (size_t i = 0; i < 3; i++)
        free(policy->protected_dirs[i]);
    memset(policy, 0, sizeof *policy);
}

/* The one answer for every refusal: nothing in it depends on what exists on the host. */
static int not_allowed(const struct local_dir_policy *policy, const char *path,
                       struct shed_err *err)
{
    if (policy->roots[0] == NULL)
        return shed_errf(err, SHED_E_INVALID_LOCAL_DIR,
                         "local_dir is not allowed on this server (no local_dir_roots configured)");
    return shed_errf(err, SHED_E_INVALID_LOCAL_DIR,
                     "local_dir \"%.200s\" is not allowed: it must be an existing directory below "
                     "one of the server's local_dir_roots, reached without leaving it",
                     path);
}

/* ---- the path, lexically ---------------------------------------------------------------- */

/* An absolute path of plain components, without its trailing slashes (into out). */
static bool plain_absolute_path(const char *path, char out[PATH_MAX])
{
    size_t len = strlen(path);
    if (path[0] != '/' || len >= PATH_MAX)
        return false;
    memcpy(out, path, len + 1);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    for (const char *part = out + 1; *part != '\0';) {
        size_t part_len = strcspn(part, "/");
        if (part_len == 0 || (part_len == 1 && part[0] == '.') ||
            (part_len == 2 && part[0] == '.' && part[1] == '.'))
            return false;
        part += part_len + (part[part_len] == '/');
    }
    return true;
}

/* The root path lies in, and the rest of path below it ("." for the root itself). */
static const char *find_root(const struct local_dir_policy *policy, const char *path,
                             const char **relative)
{
    for (char *const *root = policy->roots; *root != NULL; root++) {
        size_t len = strlen(*root);
        if (strncmp(path, *root, len) != 0 || (path[len] != '\0' && path[len] != '/'))
            continue;
        *relative = path[len] == '\0' ? "." : path + len + 1;
        return *root;
    }
    return NULL;
}

/* ---- the directory, by identity --------------------------------------------------------- */

struct identity {
    dev_t dev;
    ino_t ino;
};

struct ancestry {
    struct identity items[MAX_ANCESTRY];
    size_t count;
};

static bool identity_of_path(const char *path, struct identity *id)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return false;
    *id = (struct identity){st.st_dev, st.st_ino};
    return true;
}

static bool same(struct identity a, struct identity b)
{
    return a.dev == b.dev && a.ino == b.ino;
}

static bool ancestry_has(const struct ancestry *chain, struct identity id)
{
    for (size_t i = 0; i < chain->count; i++)
        if (same(chain->items[i], id))
            return true;
    return false;
}

/* dir_fd's directory and each of its parents up to the root ("/" is its own parent),
 * following ".." as the kernel does (across mount points). false when it cannot be walked. */
static bool walk_ancestry(int dir_fd, struct ancestry *chain)
{
    chain->count = 0;
    cleanup_close int current = openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    while (current >= 0 && chain->count < MAX_ANCESTRY) {
        struct stat st, parent_st;
        if (fstat(current, &st) < 0)
            return false;
        chain->items[chain->count++] = (struct identity){st.st_dev, st.st_ino};
        int parent = openat(current, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0 || fstat(parent, &parent_st) < 0) {
            if (parent >= 0)
                close(parent);
            return false;
        }
        close(current);
        current = parent;
        if (parent_st.st_dev == st.st_dev && parent_st.st_ino == st.st_ino)
            return true;
    }
    return false;
}

static bool on_pseudo_fs(int fd)
{
    struct statfs sfs;
    if (fstatfs(fd, &sfs) < 0)
        return true;
    for (size_t i = 0; i < sizeof pseudo_fs_magics / sizeof pseudo_fs_magics[0]; i++)
        if ((long)sfs.f_type == pseudo_fs_magics[i])
            return true;
    return false;
}

/* Whether dir (target) is one of the server's directories, below one, or a parent of one. */
static bool touches_protected(const struct local_dir_policy *policy, const struct ancestry *target,
                              struct ancestry *scratch)
{
    struct identity self = target->items[0];
    for (size_t i = 0; i < 3; i++) {
        const char *dir = policy->protected_dirs[i];
        struct identity id;
        if (dir == NULL || !identity_of_path(dir, &id))
            continue;
        if (ancestry_has(target, id))
            return true; /* the directory itself, or below it */
        cleanup_close int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !walk_ancestry(fd, scratch) || ancestry_has(scratch, self))
            return true; /* a parent of it (or it cannot be told: refuse) */
    }
    return false;
}

static bool is_forbidden(const struct local_dir_policy *policy, int fd)
{
    /* Two walks of up to MAX_ANCESTRY entries: too large for a thread's stack. */
    cleanup_free struct ancestry *chains = malloc(2 * sizeof *chains);
    if (chains == NULL || !walk_ancestry(fd, &chains[0]) || on_pseudo_fs(fd))
        return true;
    struct identity root;
    if (!identity_of_path("/", &root) || same(chains[0].items[0], root))
        return true;
    for (size_t i = 0; i < sizeof system_dirs / sizeof system_dirs[0]; i++) {
        struct identity id;
        if (identity_of_path(system_dirs[i], &id) && ancestry_has(&chains[0], id))
            return true;
    }
    return touches_protected(policy, &chains[0], &chains[1]);
}

/* ---- resolution ---------------------------------------------------------------------------- */

static int open_beneath(int root_fd, const char *relative)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    for (int attempt = 0; attempt < RESOLVE_ATTEMPTS; attempt++) {
        int fd = (int)syscall(SYS_openat2, root_fd, relative, &how, sizeof how);
        if (fd >= 0 || errno != EAGAIN)
            return fd;
    }
    return -1;
}

int local_dir_open(const struct local_dir_policy *policy, const char *path, int *fd,
                   struct shed_err *err)
{
    *fd = -1;
    char normal[PATH_MAX];
    const char *relative = NULL;
    const char *root =
        plain_absolute_path(path, normal) ? find_root(policy, normal, &relative) : NULL;
    if (root == NULL)
        return not_allowed(policy, path, err);
    cleanup_close int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    cleanup_close int dir_fd = root_fd >= 0 ? open_beneath(root_fd, relative) : -1;
    if (dir_fd < 0 || is_forbidden(policy, dir_fd))
        return not_allowed(policy, path, err);
    *fd = steal_fd(&dir_fd);
    return 0;
}

int local_dir_check(const struct shed_config *config, const char *path, struct shed_err *err)
{
    struct local_dir_policy policy;
    if (local_dir_policy_init(&policy, config, err) < 0)
        return -1;
    int fd = -1;
    int rc = local_dir_open(&policy, path, &fd, err);
    if (fd >= 0)
        close(fd);
    local_dir_policy_free(&policy);
    return rc;
}
