/* A shed's disk: how its root filesystem is made from its image (config instance_disk), the
 * pin an overlay shed holds on its lower, and the images sheds depend on.
 *
 * Kinds (metadata.json "disk", enum instance_disk_kind):
 *   reflink  <shed>/rootfs.ext4, a FICLONE clone of the image: extents shared until written
 *   copy     <shed>/rootfs.ext4, a full copy of the image
 *   overlay  <shed>/upper.ext4, an empty sparse ext4 (rootfs_size) holding upper/ and work/,
 *            over the image's content-addressed rootfs rootfs/sha256/<hex>-<size>.ext4 as the
 *            read-only lower, shared by every shed of that content and never written
 * instance_disk auto: reflink where FICLONE works from the image's file system into
 * instance_dir (probed once per pair of file systems), else overlay.
 *
 * Overlay needs the image's content identity: a variant pulled from a registry (its rootfs
 * is the content store's file named by its .source). A configured local ext4 file or a
 * rootfs put into images_dir by hand has none: such a shed gets a full copy, and the create
 * says why in its progress.
 *
 * The pin: an overlay shed's metadata.json names its lower (digest + size). The image cache
 * deletes a content rootfs only under that file's lock and only when no metadata.json names
 * it (instance_disk_pins); the create writes metadata.json under the same lock, so a
 * content rootfs is either pinned before any collection looks at it or gone before the
 * create uses it (then the create fails and nothing is left). */
#ifndef SHED_RUNTIME_INSTANCE_DISK_H
#define SHED_RUNTIME_INSTANCE_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "runtime/clone.h"
#include "runtime/instance.h"

/* What a create will make, decided before anything is written. */
struct instance_disk_plan {
    enum instance_disk_kind kind;
    char *image_rootfs;          /* the image's ext4 (cloned for reflink and copy) */
    struct instance_lower lower; /* overlay */
    char *lower_path;            /* overlay: the content rootfs */
    char note[300];              /* why the kind differs from the one configured; "" if not */
};

/* Decides the disk for a shed of image (a variant name) whose ext4 is image_rootfs. */
int instance_disk_plan(const struct shed_config *config, const char *image,
                       const char *image_rootfs, struct instance_disk_plan *plan,
                       struct shed_err *err);
void instance_disk_plan_clear(struct instance_disk_plan *plan);

/* Records the plan's kind (and lower) in inst. */
void instance_disk_describe(const struct instance_disk_plan *plan, struct instance *inst);

/* Saves inst's metadata.json. For an overlay shed under the lower's lock, after checking
 * that the lower still exists: from then on the image cache keeps it (see above).
 * SHED_E_BACKEND_ERROR when the lower went away meanwhile (an image prune raced the
 * create): the caller rolls back. */
int instance_disk_save_pinned(struct instance_store *store, const struct instance_disk_plan *plan,
                              const struct instance *inst, struct shed_err *err);

/* Makes the disk in the shed's (existing) directory: the clone, or upper.ext4 (written as
 * upper.ext4.tmp, fsynced, renamed: a killed create never leaves a half-made upper.ext4).
 * inst->disk is corrected when a reflink fell back to a copy; *strategy tells how a clone
 * was made (CLONE_STRATEGY_NONE for an overlay). On failure the disk file is gone. */
int instance_disk_make(const struct shed_config *config, struct instance_store *store,
                       const struct instance_disk_plan *plan, struct instance *inst,
                       enum clone_strategy *strategy, struct shed_err *err);

/* Creates path (O_EXCL) as an empty ext4 of size bytes holding the directories upper/ and
 * work/ (0755 and 0700, root): O(1), a few hundred KiB of metadata in a sparse file. upper/
 * takes the mode, owner and times of the root directory of lower (an ext4 image), so the
 * shed's / looks like the image's. */
int instance_disk_make_upper(const char *path, uint64_t size, const char *lower,
                             struct shed_err *err);

/* The image cache's pin check for the lowers of this store's overlay sheds (pass &pins->pins
 * to the image cache). store and config must outlive it. */
struct instance_disk_pins {
    struct instance_store *store;
    const char *images_dir;
    struct image_content_pins pins;
};

void instance_disk_pins_init(struct instance_disk_pins *pins, struct instance_store *store,
                             const struct shed_config *config);
/* Whether a shed's metadata.json names content_path as its lower; *sheds (may be NULL):
 * malloc'd, NULL-terminated names of those sheds (free with instance_image_refs_free). */
int instance_disk_lower_users(struct instance_store *store, const char *images_dir,
                              const char *content_path, char ***sheds, struct shed_err *err);

/* After an overlay shed is deleted: its lower goes too when no variant links it any more and
 * no other shed stands on it (the old content of a re-pulled tag), under the image cache's
 * rule and lock. Nothing for other disk kinds. */
int instance_disk_release_lower(const char *images_dir, struct instance_store *store,
                                const struct instance *inst, struct shed_err *err);

/* SHED_E_IMAGE_IN_USE naming the sheds that use image ("image \"big\" is used by shed(s) a,
 * b; a is an overlay over it"), or 0 when none does. For `images rm`, before the image
 * cache's own checks. */
int instance_disk_check_image_unused(struct instance_store *store, const char *image,
                                     struct shed_err *err);

#endif
