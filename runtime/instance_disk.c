/* instance_disk: the shed's disk from its image (see instance_disk.h). */
#include "instance_disk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "imaged/ext4_writer.h"
#include "imaged/layout.h"

/* ---- the plan ------------------------------------------------------------------------ */

void instance_disk_plan_clear(struct instance_disk_plan *plan)
{
    free(plan->image_rootfs);
    free(plan->lower_path);
    memset(plan, 0, sizeof *plan);
}

/* Whether FICLONE works from the image's file system into instance_dir, asked once per pair
 * of file systems for the life of the process (a file system does not learn or forget
 * reflinks while mounted). */
#define PROBE_SLOTS 16

static struct {
    dev_t src, dst;
    bool can;
} probes[PROBE_SLOTS];
static size_t probe_count;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

static bool probe_cached(dev_t src, dev_t dst, bool *can)
{
    bool found = false;
    pthread_mutex_lock(&probe_lock);
    for (size_t i = 0; !found && i < probe_count; i++)
        if (probes[i].src == src && probes[i].dst == dst) {
            *can = probes[i].can;
            found = true;
        }
    pthread_mutex_unlock(&probe_lock);
    return found;
}

static void probe_remember(dev_t src, dev_t dst, bool can)
{
    pthread_mutex_lock(&probe_lock);
    if (probe_count < PROBE_SLOTS)
        probes[probe_count++] = (typeof(probes[0])){.src = src, .dst = dst, .can = can};
    pthread_mutex_unlock(&probe_lock);
}

static int reflink_works(const char *image_rootfs, const char *instance_dir, bool *can,
                         struct shed_err *err)
{
    cleanup_close int fd = open(image_rootfs, O_RDONLY | O_CLOEXEC);
    struct stat src, dst;
    if (fd < 0 || fstat(fd, &src) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", image_rootfs);
    if (stat(instance_dir, &dst) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", instance_dir);
    if (probe_cached(src.st_dev, dst.st_dev, can))
        return 0;
    if (clone_can_reflink(fd, instance_dir, can, err) < 0)
        return -1;
    probe_remember(src.st_dev, dst.st_dev, *can);
    return 0;
}

/* The overlay's lower, or a full copy (with the reason in the note) when the image has no
 * content identity to pin. */
static int plan_overlay(const struct shed_config *config, const char *image,
                        struct instance_disk_plan *plan, struct shed_err *err)
{
    struct image_content_ref content;
    if (image_cache_variant_content(config->images_dir, image, &content, err) < 0)
        return -1;
    if (!content.found) {
        plan->kind = INSTANCE_DISK_COPY;
        snprintf(plan->note, sizeof plan->note,
                 "image %.80s is not a content-addressed rootfs of the image cache (a local "
                 "file?), so it cannot be a shared overlay lower: the shed gets a full copy",
                 image);
        return 0;
    }
    plan->kind = INSTANCE_DISK_OVERLAY;
    snprintf(plan->lower.digest, sizeof plan->lower.digest, "%s", content.digest);
    plan->lower.size = content.size;
    plan->lower_path = steal_pointer(&content.path);
    image_content_ref_clear(&content);
    return 0;
}

static int plan_kind(const struct shed_config *config, const char *image,
                     struct instance_disk_plan *plan, struct shed_err *err)
{
    bool can = false;
    switch (config->instance_disk) {
    case SHED_INSTANCE_DISK_COPY: plan->kind = INSTANCE_DISK_COPY; return 0;
    case SHED_INSTANCE_DISK_REFLINK: plan->kind = INSTANCE_DISK_REFLINK; return 0;
    case SHED_INSTANCE_DISK_OVERLAY: return plan_overlay(config, image, plan, err);
    case SHED_INSTANCE_DISK_AUTO: break;
    }
    /* An overlay root cannot be idmapped (config.c refuses instance_disk overlay there). */
    if (config->container.userns) {
        plan->kind = INSTANCE_DISK_REFLINK;
        return 0;
    }
    if (reflink_works(plan->image_rootfs, config->instance_dir, &can, err) < 0)
        return -1;
    if (can) {
        plan->kind = INSTANCE_DISK_REFLINK;
        return 0;
    }
    return plan_overlay(config, image, plan, err);
}

int instance_disk_plan(const struct shed_config *config, const char *image,
                       const char *image_rootfs, struct instance_disk_plan *plan,
                       struct shed_err *err)
{
    memset(plan, 0, sizeof *plan);
    plan->image_rootfs = strdup(image_rootfs);
    if (plan->image_rootfs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (plan_kind(config, image, plan, err) < 0) {
        instance_disk_plan_clear(plan);
        return -1;
    }
    return 0;
}

void instance_disk_describe(const struct instance_disk_plan *plan, struct instance *inst)
{
    inst->disk = plan->kind;
    memset(&inst->lower, 0, sizeof inst->lower);
    if (plan->kind == INSTANCE_DISK_OVERLAY)
        inst->lower = plan->lower;
}

/* ---- the pin ------------------------------------------------------------------------- */

int instance_disk_save_pinned(struct instance_store *store, const struct instance_disk_plan *plan,
                              const struct instance *inst, struct shed_err *err)
{
    if (plan->kind != INSTANCE_DISK_OVERLAY)
        return instance_store_save(store, inst, err);
    cleanup_free char *lock = image_layout_content_lock(plan->lower_path);
    if (lock == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    int fd = -1;
    if (fs_lock_file(lock, true, &fd, err) < 0)
        return -1;
    int rc = 0;
    struct stat st;
    if (lstat(plan->lower_path, &st) < 0 || !S_ISREG(st.st_mode))
        rc = shed_errf(err, SHED_E_BACKEND_ERROR,
                       "the image's content %s went away during the create (an image prune?); "
                       "create the shed again",
                       plan->lower_path);
    else
        rc = instance_store_save(store, inst, err);
    close(fd);
    return rc;
}

int instance_disk_lower_users(struct instance_store *store, const char *images_dir,
                              const char *content_path, char ***sheds, struct shed_err *err)
{
    if (sheds != NULL)
        *sheds = NULL;
    struct instance_lower_refs refs;
    if (instance_store_lower_refs(store, &refs, err) < 0)
        return -1;
    cleanup_strv struct strv users = STRV_INIT;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < refs.count; i++) {
        cleanup_free char *path = image_layout_content_rootfs(
            images_dir, refs.items[i].lower.digest, refs.items[i].lower.size);
        if (path == NULL)
            rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        else if (strcmp(path, content_path) == 0)
            rc = strv_add(&users, refs.items[i].name, err);
    }
    instance_lower_refs_clear(&refs);
    if (rc < 0)
        return -1;
    if (sheds != NULL) {
        *sheds = users.count > 0 ? strv_steal(&users) : calloc(1, sizeof **sheds);
        if (*sheds == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return (int)users.count;
}

static int check_pinned(const char *content_path, bool *pinned, void *ctx, struct shed_err *err)
{
    struct instance_disk_pins *pins = ctx;
    int users = instance_disk_lower_users(pins->store, pins->images_dir, content_path, NULL, err);
    if (users < 0)
        return -1;
    *pinned = users > 0;
    return 0;
}

void instance_disk_pins_init(struct instance_disk_pins *pins, struct instance_store *store,
                             const struct shed_config *config)
{
    pins->store = store;
    pins->images_dir = config->images_dir;
    pins->pins = (struct image_content_pins){.check = check_pinned, .ctx = pins};
}

int instance_disk_release_lower(const char *images_dir, struct instance_store *store,
                                const struct instance *inst, struct shed_err *err)
{
    if (inst->disk != INSTANCE_DISK_OVERLAY)
        return 0;
    cleanup_free char *path =
        image_layout_content_rootfs(images_dir, inst->lower.digest, inst->lower.size);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct instance_disk_pins pins = {.store = store, .images_dir = images_dir};
    pins.pins = (struct image_content_pins){.check = check_pinned, .ctx = &pins};
    return image_cache_remove_unlinked_content(path, 0, 0, &pins.pins, err);
}

/* ---- images in use --------------------------------------------------------------------- */

static void join_names(char *const *names, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (char *const *name = names; *name != NULL && used + 1 < len; name++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", name == names ? "" : ", ", *name);
}

int instance_disk_check_image_unused(struct instance_store *store, const char *image,
                                     struct shed_err *err)
{
    char **names = NULL;
    bool overlay = false;
    if (instance_store_image_users(store, image, &names, &overlay, err) < 0)
        return shed_err_prefix(err, "cannot tell which sheds use image \"%s\"", image);
    int rc = 0;
    if (names[0] != NULL) {
        char list[300];
        join_names(names, list, sizeof list);
        rc = shed_errf(
            err, SHED_E_IMAGE_IN_USE, "image \"%s\" is used by shed(s) %s%s", image, list,
            overlay ? " (an overlay shed's root is this image: delete the shed first)" : "");
    }
    instance_image_refs_free(names);
    return rc;
}

/* ---- making the disk --------------------------------------------------------------------- */

int instance_disk_make_upper(const char *path, uint64_t size, const char *lower,
                             struct shed_err *err)
{
    struct ext4_meta root;
    if (ext4_read_root_meta(lower, &root, err) < 0)
        return -1;
    root.mode = S_IFDIR | (root.mode & 07777);
    struct ext4_meta work = {.mode = S_IFDIR | 0700, .mtime = root.mtime};
    struct ext4_writer *writer = NULL;
    struct ext4_writer_opts opts = {.size_bytes = size};
    if (ext4_writer_create(path, &opts, &writer, err) < 0)
        return -1;
    if (ext4_writer_mkdir(writer, "upper", &root, err) < 0 ||
        ext4_writer_mkdir(writer, "work", &work, err) < 0) {
        ext4_writer_abort(writer);
        unlink(path);
        return -1;
    }
    if (ext4_writer_finish(writer, err) < 0) {
        unlink(path);
        return -1;
    }
    return 0;
}

/* upper.ext4 through upper.ext4.tmp: only a complete one ever has the real name. */
static int make_upper(const struct shed_config *config, struct instance_store *store,
                      const struct instance_disk_plan *plan, const struct instance *inst,
                      struct shed_err *err)
{
    cleanup_free char *tmp = instance_store_file_path(store, inst->name, INSTANCE_FILE_UPPER_TMP);
    cleanup_free char *upper = instance_store_file_path(store, inst->name, INSTANCE_FILE_UPPER);
    if (tmp == NULL || upper == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (unlink(tmp) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", tmp);
    if (instance_disk_make_upper(tmp, config->rootfs_size, plan->lower_path, err) < 0)
        return shed_err_prefix(err, "cannot make %s", upper);
    if (rename(tmp, upper) < 0) {
        int saved = errno;
        unlink(tmp);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot rename %s", tmp);
    }
    return fs_fsync_dir_of(upper, err);
}

int instance_disk_make(const struct shed_config *config, struct instance_store *store,
                       const struct instance_disk_plan *plan, struct instance *inst,
                       enum clone_strategy *strategy, struct shed_err *err)
{
    *strategy = CLONE_STRATEGY_NONE;
    if (plan->kind == INSTANCE_DISK_OVERLAY)
        return make_upper(config, store, plan, inst, err);
    cleanup_free char *rootfs = instance_store_file_path(store, inst->name, INSTANCE_FILE_ROOTFS);
    if (rootfs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    int rc = plan->kind == INSTANCE_DISK_COPY
                 ? clone_file_copy(plan->image_rootfs, rootfs, strategy, err)
                 : clone_file(plan->image_rootfs, rootfs, strategy, err);
    if (rc < 0)
        return shed_err_prefix(err, "cannot clone %s", plan->image_rootfs);
    inst->disk = *strategy == CLONE_STRATEGY_REFLINK ? INSTANCE_DISK_REFLINK : INSTANCE_DISK_COPY;
    return 0;
}
