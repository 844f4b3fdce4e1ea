/* An overlay shed's root for the container backend: the image's content rootfs mounted
 * read-only once per image and shared, the shed's upper.ext4 mounted read-write, and the
 * overlay of both on the bundle's rootfs/.
 *
 *   <data_dir>/lowers/<hex>-<size>/       the lower: rootfs/sha256/<hex>-<size>.ext4 on a
 *                                         read-only loop device (LO_FLAGS_READ_ONLY,
 *                                         autoclear), mounted ro,noload
 *   <data_dir>/lowers/<hex>-<size>.lock   flock: mounting and unmounting that lower
 *   <bundle>/upper/                       upper.ext4 (loop, autoclear): upper/ and work/
 *   <bundle>/rootfs/                      overlay lowerdir=lowers/<x>, upperdir=upper/upper,
 *                                         workdir=upper/work
 *
 * The lower's "reference count" is the kernel's: a lower is in use while an overlay in our
 * mount namespace names it as its lowerdir (/proc/self/mountinfo). When a shed stops, its
 * overlay goes first, then, under the lower's lock, the lower too if no other overlay names
 * it. Nothing is counted in memory or on disk, so a crash at any point leaves nothing a
 * count could get wrong; the next teardown of any overlay shed releases every lower nobody
 * uses (release_unused_lowers). Unmounting a lower too early would be harmless anyway: an
 * overlay holds its own private reference to its layers, so its shed keeps running (only
 * the next start mounts the lower again, on a new loop device).
 *
 * Mount options (docs/architecture.md "Overlay sheds"): index=on (a lower file's hardlinks
 * stay one file after one of them is copied up, and the upper is bound to this lower: mounted
 * over another lower it fails instead of mixing them), xino=on (inode numbers stay the same
 * across copy-up and are unique within the shed), redirect_dir=on (directories of the image
 * can be renamed, not EXDEV), metacopy=off (a copy-up copies data too: upper.ext4 holds every
 * changed file whole, readable without its lower). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/testhook.h"
#include "container_internal.h"
#include "imaged/layout.h"

/* How long a stop waits for the kernel to let go of upper.ext4 after the last unmount (the
 * container's mount namespace can outlive its processes for a moment). A ceiling. */
#define UPPER_RELEASE_WAIT_MS 10000

/* ---- names ------------------------------------------------------------------------------ */

/* "<hex>-<size>": the content rootfs's file name without ".ext4". */
static int lower_name(const struct instance *inst, char *out, size_t len, struct shed_err *err)
{
    if (!digest_is_valid(inst->lower.digest) || inst->lower.size == 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "shed \"%s\" records no valid lower",
                         inst->name);
    snprintf(out, len, "%s-%llu", inst->lower.digest + strlen("sha256:"),
             (unsigned long long)inst->lower.size);
    return 0;
}

struct lower_paths {
    char *image;      /* rootfs/sha256/<hex>-<size>.ext4 */
    char *image_dir;  /* rootfs/sha256 */
    char *mountpoint; /* <lowers>/<hex>-<size> */
    char *lock;       /* <lowers>/<hex>-<size>.lock */
};

static void lower_paths_free(struct lower_paths *paths)
{
    free(paths->image);
    free(paths->image_dir);
    free(paths->mountpoint);
    free(paths->lock);
    memset(paths, 0, sizeof *paths);
}
#define cleanup_lower_paths __attribute__((cleanup(lower_paths_free)))

static int lower_paths_init(const struct container_state *state, const struct instance *inst,
                            struct lower_paths *paths, struct shed_err *err)
{
    memset(paths, 0, sizeof *paths);
    char name[DIGEST_STRING_LEN + 32];
    if (lower_name(inst, name, sizeof name, err) < 0)
        return -1;
    paths->image =
        image_layout_content_rootfs(state->images_dir, inst->lower.digest, inst->lower.size);
    paths->image_dir = image_layout_content_dir(state->images_dir);
    paths->mountpoint = fs_path_join(state->lowers_dir, name);
    paths->lock = str_printf("%s/%s.lock", state->lowers_dir, name);
    if (paths->image == NULL || paths->image_dir == NULL || paths->mountpoint == NULL ||
        paths->lock == NULL) {
        lower_paths_free(paths);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

/* The overlay's option string cannot quote: ',' separates options, ':' lower layers, '\\'
 * escapes, and mountinfo (which tells which lowers are in use) escapes whitespace. */
static int check_option_path(const char *path, struct shed_err *err)
{
    for (const char *p = path; *p != '\0'; p++)
        if (*p == ',' || *p == ':' || *p == '\\' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return shed_errf(err, SHED_E_BACKEND_ERROR,
                             "%s: an overlay shed's paths cannot contain ',', ':', '\\\\', "
                             "spaces or control characters (move data_dir)",
                             path);
    return 0;
}

/* ---- which lowers are in use ---------------------------------------------------------------- */

/* Whether one of the super options (comma-separated) of a mountinfo line is exactly option. */
static bool has_option(const char *options, const char *option)
{
    size_t len = strlen(option);
    for (const char *p = options; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t part = end != NULL ? (size_t)(end - p) : strlen(p);
        if (part == len && strncmp(p, option, len) == 0)
            return true;
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/* Whether an overlay mount of our namespace has lowerdir=mountpoint. */
static bool lower_in_use(const char *mountpoint)
{
    cleanup_free char *option = str_printf("lowerdir=%s", mountpoint);
    cleanup_fclose FILE *mountinfo = fopen("/proc/self/mountinfo", "re");
    if (option == NULL || mountinfo == NULL)
        return true; /* cannot tell: leave it mounted */
    char line[16384];
    while (fgets(line, sizeof line, mountinfo) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* "... - <fstype> <source> <super options>" */
        char *dash = strstr(line, " - ");
        if (dash == NULL)
            continue;
        char *fstype = dash + 3, *source = strchr(fstype, ' ');
        char *options = source != NULL ? strchr(source + 1, ' ') : NULL;
        if (options == NULL || strncmp(fstype, "overlay ", 8) != 0)
            continue;
        if (has_option(options + 1, option))
            return true;
    }
    return false;
}

/* ---- the lower ------------------------------------------------------------------------------ */

static int lock_lower(const struct container_state *state, const struct lower_paths *lower, int *fd,
                      struct shed_err *err)
{
    if (fs_mkdir_private(state->lowers_dir, err) < 0)
        return -1;
    return fs_lock_file(lower->lock, true, fd, err);
}

/* With the lower's lock held: mounted at its mount point, once. */
static int mount_lower(const struct lower_paths *lower, const char *shed, struct shed_err *err)
{
    if (mkdir(lower->mountpoint, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "mkdir %s", lower->mountpoint);
    if (container_is_mounted(lower->mountpoint))
        return 0;
    /* Opened read-only, beneath the content store, as the file itself. */
    const char *name = strrchr(lower->image, '/') + 1;
    cleanup_close int fd = -1;
    if (container_open_beneath(lower->image_dir, name, O_RDONLY, &fd, err) < 0)
        return shed_err_prefix(err, "the image of shed \"%s\" (its overlay lower) is gone", shed);
    return container_mount_image(fd, lower->image, lower->mountpoint, true, NULL, 0, err);
}

/* With the lower's lock held: unmounted when no overlay uses it any more; its loop device
 * goes with the mount (autoclear), or here when a crash left it attached without one. */
static void release_lower_locked(const struct lower_paths *lower)
{
    struct shed_err ignored = {0};
    if (lower_in_use(lower->mountpoint))
        return;
    if (container_unmount_rootfs(lower->mountpoint, &ignored) == 0)
        rmdir(lower->mountpoint);
    container_release_loops(lower->image);
}

static void release_lower(const struct container_state *state, const struct lower_paths *lower)
{
    int fd = -1;
    struct shed_err ignored = {0};
    if (lock_lower(state, lower, &fd, &ignored) < 0)
        return;
    release_lower_locked(lower);
    close(fd);
}

/* Every lower under <data_dir>/lowers no overlay uses: what a crash between mounting a lower
 * and mounting its overlay leaves, or the lower of a shed whose directory was removed by
 * hand. Each under its lock. */
static void release_unused_lowers(const struct container_state *state)
{
    cleanup_closedir DIR *dir = opendir(state->lowers_dir);
    if (dir == NULL)
        return;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        if (entry->d_name[0] == '.' || strchr(entry->d_name, '.') != NULL)
            continue; /* . .. and the .lock files */
        cleanup_free char *mountpoint = fs_path_join(state->lowers_dir, entry->d_name);
        cleanup_free char *lock = str_printf("%s.lock", mountpoint != NULL ? mountpoint : "");
        int fd = -1;
        struct shed_err ignored = {0};
        if (mountpoint == NULL || lock == NULL || fs_lock_file(lock, true, &fd, &ignored) < 0)
            continue;
        if (!lower_in_use(mountpoint) && container_unmount_rootfs(mountpoint, &ignored) == 0)
            rmdir(mountpoint);
        close(fd);
    }
}

/* ---- the upper and the overlay ----------------------------------------------------------------
 */

static int mount_upper(const struct container_paths *paths, struct shed_err *err)
{
    if (mkdir(paths->upper_mount, 0700) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "mkdir %s", paths->upper_mount);
    cleanup_close int fd = -1;
    if (container_open_disk_image(paths->instance, INSTANCE_FILE_UPPER, &fd, err) < 0)
        return -1;
    if (container_mount_image(fd, paths->upper_image, paths->upper_mount, false, NULL, 0, err) < 0)
        return -1;
    /* The two directories the overlay needs, as instance_disk_make_upper made them; not a
     * symlink planted by anyone with access to the file. */
    const char *dirs[] = {"upper", "work"};
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        cleanup_free char *dir = fs_path_join(paths->upper_mount, dirs[i]);
        if (dir == NULL || lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return shed_errf(err, SHED_E_BACKEND_ERROR, "%s has no directory %s/",
                             paths->upper_image, dirs[i]);
    }
    return 0;
}

static int mount_overlay(const struct container_paths *paths, const struct lower_paths *lower,
                         struct shed_err *err)
{
    if (check_option_path(lower->mountpoint, err) < 0 ||
        check_option_path(paths->upper_mount, err) < 0)
        return -1;
    cleanup_free char *options =
        str_printf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work," CONTAINER_OVERLAY_OPTIONS,
                   lower->mountpoint, paths->upper_mount, paths->upper_mount);
    if (options == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (strlen(options) >= 4096)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "the overlay's paths are too long (%s)",
                         options);
    if (mount("overlay", paths->mountpoint, "overlay", 0, options) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                               "mount overlay on %s (%s): a stale index means upper.ext4 was "
                               "made over another lower (see dmesg)",
                               paths->mountpoint, options);
    return 0;
}

/* Waits until no loop device holds upper.ext4: the kernel has then written and released it
 * (so e2fsck, an export or a copy sees a clean file system the moment stop returns). */
static void wait_upper_released(const struct container_paths *paths)
{
    container_release_loops(paths->upper_image);
    for (int waited = 0;
         waited < UPPER_RELEASE_WAIT_MS && container_loops_backed_by(paths->upper_image);
         waited += 10) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* ---- the shed's root ------------------------------------------------------------------------- */

int container_overlay_mount(const struct container_state *state,
                            const struct container_paths *paths, const struct instance *inst,
                            struct shed_err *err)
{
    if (state->limits.userns)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "shed \"%s\" is an overlay shed, which cannot run with container.userns "
                         "(an overlay root cannot be idmapped)",
                         inst->name);
    cleanup_lower_paths struct lower_paths lower;
    if (lower_paths_init(state, inst, &lower, err) < 0)
        return -1;
    int lock = -1;
    if (lock_lower(state, &lower, &lock, err) < 0)
        return -1;
    /* Under the lock from the lower's mount to the overlay's: a stop of another shed of this
     * image cannot take the lower away in between. */
    int rc = mount_lower(&lower, inst->name, err);
    if (rc == 0)
        shed_test_pause("overlay-lower-mounted");
    if (rc == 0)
        rc = mount_upper(paths, err);
    if (rc == 0)
        rc = mount_overlay(paths, &lower, err);
    if (rc < 0) {
        struct shed_err ignored = {0};
        container_unmount_rootfs(paths->upper_mount, &ignored);
        wait_upper_released(paths);
        release_lower_locked(&lower);
    }
    close(lock);
    return rc;
}

int container_overlay_unmount(const struct container_state *state,
                              const struct container_paths *paths, const struct instance *inst,
                              struct shed_err *err)
{
    bool was_mounted = container_is_mounted(paths->mountpoint);
    if (container_unmount_rootfs(paths->mountpoint, err) < 0 ||
        container_unmount_rootfs(paths->upper_mount, err) < 0)
        return -1;
    wait_upper_released(paths);
    if (was_mounted)
        shed_test_pause("overlay-unmounted");
    cleanup_lower_paths struct lower_paths lower;
    struct shed_err ignored = {0};
    if (lower_paths_init(state, inst, &lower, &ignored) == 0)
        release_lower(state, &lower);
    release_unused_lowers(state);
    return 0;
}
