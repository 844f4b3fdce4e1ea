/* prune_plan: every action and skip of a `system prune`, computed from one df scan. */
#include "prune.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "df_private.h"
#include "imaged/cache.h"
#include "imaged/layout.h"
#include "oci/oci.h"
#include "prune_private.h"

/* ---- lists and notes ------------------------------------------------------------------ */

void prune_item_clear(struct prune_item *item)
{
    free(item->name);
    free(item->path);
    free(item->reason);
    free(item->lock_path);
    free(item->shared_with);
    strv_free(&item->blob_digests);
    df_file_list_clear(&item->files);
    memset(item, 0, sizeof *item);
}

static void prune_list_clear(struct prune_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        prune_item_clear(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* Moves *item into list. */
int prune_list_add(struct prune_list *list, struct prune_item *item, struct shed_err *err)
{
    struct prune_item *grown = realloc(list->items, (list->count + 1) * sizeof *grown);
    if (grown == NULL) {
        prune_item_clear(item);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    list->items = grown;
    list->items[list->count++] = *item;
    memset(item, 0, sizeof *item);
    return 0;
}

int prune_add_note(struct prune_plan *plan, struct shed_err *err, const char *fmt, ...)
{
    char text[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char **grown = realloc(plan->notes, (plan->note_count + 2) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    plan->notes = grown;
    plan->notes[plan->note_count] = strdup(text);
    if (plan->notes[plan->note_count] == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    plan->notes[++plan->note_count] = NULL;
    return 0;
}

/* An item with its strings set (name may be NULL). */
static int item_init(struct prune_item *item, enum prune_kind kind, const char *name,
                     const char *path, struct shed_err *err)
{
    memset(item, 0, sizeof *item);
    item->kind = kind;
    item->name = name != NULL ? strdup(name) : NULL;
    item->path = path != NULL ? strdup(path) : NULL;
    if ((name != NULL && item->name == NULL) || (path != NULL && item->path == NULL)) {
        prune_item_clear(item);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

/* Adds a skipped entry with its reason. */
int prune_skip(struct prune_list *skipped, enum prune_kind kind, const char *name, const char *path,
               const char *reason, struct shed_err *err)
{
    struct prune_item item;
    if (item_init(&item, kind, name, path, err) < 0)
        return -1;
    item.reason = strdup(reason);
    if (item.reason == NULL) {
        prune_item_clear(&item);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return prune_list_add(skipped, &item, err);
}

static int copy_file_into(struct df_file_list *list, const struct df_file *file,
                          struct shed_err *err)
{
    if (file->path == NULL)
        return 0;
    struct df_file copy = *file;
    copy.shared_with = NULL; /* points into the report, which the plan does not keep */
    copy.path = strdup(file->path);
    copy.digest = file->digest != NULL ? strdup(file->digest) : NULL;
    if (copy.path == NULL || (file->digest != NULL && copy.digest == NULL)) {
        free(copy.path);
        free(copy.digest);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return df_file_list_add(list, &copy, err);
}

/* What the tables show for the item (df.h "disk"). */
static int set_disk(struct prune_item *item, uint64_t disk, const char *shared_with,
                    struct shed_err *err)
{
    item->disk_bytes = disk;
    if (shared_with != NULL && (item->shared_with = strdup(shared_with)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

static int copy_files_into(struct df_file_list *list, const struct df_file_list *files,
                           struct shed_err *err)
{
    for (size_t i = 0; i < files->count; i++)
        if (copy_file_into(list, &files->items[i], err) < 0)
            return -1;
    return 0;
}

/* ---- ages ----------------------------------------------------------------------------- */

/* The age in its largest whole unit ("3h", "12m", "40s"), as the skip reason shows it. */
static void format_age(uint64_t seconds, char *out, size_t len)
{
    if (seconds >= 3600)
        snprintf(out, len, "%lluh", (unsigned long long)(seconds / 3600));
    else if (seconds >= 60)
        snprintf(out, len, "%llum", (unsigned long long)(seconds / 60));
    else
        snprintf(out, len, "%llus", (unsigned long long)seconds);
}

/* A limit without zero units: "72h", "1h30m", "0s". */
static void format_limit(uint64_t seconds, char *out, size_t len)
{
    unsigned long long h = seconds / 3600, m = seconds % 3600 / 60, s = seconds % 60;
    size_t used = 0;
    out[0] = '\0';
    if (h > 0)
        used += (size_t)snprintf(out + used, len - used, "%lluh", h);
    if (m > 0 && used < len)
        used += (size_t)snprintf(out + used, len - used, "%llum", m);
    if ((s > 0 || seconds == 0) && used < len)
        snprintf(out + used, len - used, "%llus", s);
}

void prune_reason_too_recent(uint64_t age, uint64_t limit, char *out, size_t len)
{
    char age_text[32], limit_text[48];
    format_age(age, age_text, sizeof age_text);
    format_limit(limit, limit_text, sizeof limit_text);
    snprintf(out, len, "too recent (%s < %s)", age_text, limit_text);
}

uint64_t prune_age_seconds(time_t now, const struct timespec *mtime)
{
    return now > mtime->tv_sec ? (uint64_t)(now - mtime->tv_sec) : 0;
}

/* ---- locks ---------------------------------------------------------------------------- */

int prune_probe_lock(const char *path, int *fd, bool *held, struct shed_err *err)
{
    *fd = -1;
    *held = false;
    /* No O_CREAT: probing must not create lock files, and a missing lock is a free one. */
    cleanup_close int lock_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (lock_fd < 0)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            *held = true;
            return 0;
        }
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot lock %s", path);
    }
    *fd = steal_fd(&lock_fd);
    return 0;
}

/* For files that have no canonical lock of their own (OCI blobs): any conversion in progress
 * may be about to use them, so every lock of the image cache is probed. */
int prune_any_variant_lock_held(const struct shed_config *config, bool *held, struct shed_err *err)
{
    *held = false;
    char **locks = NULL;
    int rc = image_layout_lock_files(config->images_dir, &locks, err);
    for (char **lock = locks; rc == 0 && !*held && *lock != NULL; lock++) {
        int fd = -1;
        rc = prune_probe_lock(*lock, &fd, held, err);
        if (fd >= 0)
            close(fd);
    }
    image_names_free(locks);
    return rc;
}

/* ---- instances ------------------------------------------------------------------------ */

static bool metadata_unreadable(const struct instance *inst)
{
    /* instance_store_list lists a shed whose metadata.json does not parse with status ERROR
     * and nothing but its name. */
    return inst->status == INSTANCE_ERROR && inst->created_at[0] == '\0';
}

static int plan_instance(struct prune_plan *plan, const struct df_shed *shed, struct shed_err *err)
{
    const struct instance *inst = &shed->inst;
    cleanup_free char *dir = instance_store_path(plan->opts.instances, inst->name);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (inst->status == INSTANCE_RUNNING || inst->status == INSTANCE_STARTING)
        return prune_skip(&plan->skipped, PRUNE_KIND_INSTANCE, inst->name, dir,
                          PRUNE_REASON_RUNNING, err);
    uint64_t age = prune_age_seconds(plan->now, &shed->metadata_mtime);
    if (age < plan->opts.until_seconds) {
        char reason[128];
        prune_reason_too_recent(age, plan->opts.until_seconds, reason, sizeof reason);
        return prune_skip(&plan->skipped, PRUNE_KIND_INSTANCE, inst->name, dir, reason, err);
    }
    struct prune_item item;
    if (item_init(&item, PRUNE_KIND_INSTANCE, inst->name, dir, err) < 0)
        return -1;
    item.metadata_mtime = shed->metadata_mtime;
    if (set_disk(&item, shed->total.disk, shed->shared_with, err) < 0 ||
        copy_file_into(&item.files, &shed->rootfs, err) < 0 ||
        copy_file_into(&item.files, &shed->console_log, err) < 0 ||
        copy_files_into(&item.files, &shed->other_files, err) < 0) {
        prune_item_clear(&item);
        return -1;
    }
    return prune_list_add(&plan->items, &item, err);
}

static int plan_lowers(struct prune_plan *plan, const struct df_report *report,
                       struct shed_err *err);

static int plan_instances(struct prune_plan *plan, const struct df_report *report,
                          struct shed_err *err)
{
    for (size_t i = 0; i < report->shed_count; i++)
        if (plan_instance(plan, &report->sheds[i], err) < 0)
            return -1;
    return plan_lowers(plan, report, err);
}

static bool instance_planned(const struct prune_plan *plan, const char *name)
{
    for (size_t i = 0; i < plan->items.count; i++)
        if (plan->items.items[i].kind == PRUNE_KIND_INSTANCE &&
            strcmp(plan->items.items[i].name, name) == 0)
            return true;
    return false;
}

/* For df_lower_pinned: the sheds this plan deletes pin nothing any more. */
static bool shed_is_planned(const char *shed, const void *ctx)
{
    return instance_planned(ctx, shed);
}

static struct prune_item *planned_instance(struct prune_plan *plan, const char *name)
{
    for (size_t i = 0; i < plan->items.count; i++)
        if (plan->items.items[i].kind == PRUNE_KIND_INSTANCE &&
            strcmp(plan->items.items[i].name, name) == 0)
            return &plan->items.items[i];
    return NULL;
}

/* An older lower (no variant links to it, kind "lower") that only planned sheds stand on goes
 * with the last of them in plan order: the image cache deletes it right after that shed
 * (prune_execute.c), so the item that frees it says so, and only once. */
static int plan_lower(struct prune_plan *plan, const struct df_report *report,
                      const struct df_file *lower, struct shed_err *err)
{
    if (df_lower_pinned(report, lower->path, shed_is_planned, plan))
        return 0;
    struct prune_item *last = NULL;
    for (size_t i = 0; i < report->lower_pin_count; i++) {
        const struct df_lower_pin *pin = &report->lower_pins[i];
        struct prune_item *item =
            strcmp(pin->path, lower->path) == 0 ? planned_instance(plan, pin->shed) : NULL;
        if (item != NULL && (last == NULL || item > last))
            last = item;
    }
    return last != NULL ? copy_file_into(&last->files, lower, err) : 0;
}

static int plan_lowers(struct prune_plan *plan, const struct df_report *report,
                       struct shed_err *err)
{
    for (size_t i = 0; i < report->image_count; i++) {
        const struct df_file_list *files = &report->images[i].other_files;
        for (size_t j = 0; j < files->count; j++)
            if (strcmp(files->items[j].kind, "lower") == 0 &&
                plan_lower(plan, report, &files->items[j], err) < 0)
                return -1;
    }
    return 0;
}

/* ---- images --------------------------------------------------------------------------- */

/* Images of the non-overlay sheds that survive the planned instance deletions,
 * NULL-terminated. */
static int surviving_images(const struct prune_plan *plan, const struct df_report *report,
                            char ***names, bool *unknown, struct shed_err *err)
{
    *unknown = false;
    *names = calloc(report->shed_count + 1, sizeof **names);
    if (*names == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t count = 0;
    for (size_t i = 0; i < report->shed_count; i++) {
        const struct instance *inst = &report->sheds[i].inst;
        if (instance_planned(plan, inst->name))
            continue;
        if (metadata_unreadable(inst))
            *unknown = true;
        /* Overlay sheds keep their image too, but plan_image names them in a skip. */
        if (inst->image != NULL && inst->image[0] != '\0' && inst->disk != INSTANCE_DISK_OVERLAY)
            (*names)[count++] = inst->image; /* borrowed from the report */
    }
    return 0;
}

static bool same_inode(const struct df_file *a, const struct df_file *b)
{
    return a->path != NULL && b->path != NULL && a->dev == b->dev && a->ino == b->ino;
}

/* Whether a file listed with an image goes with it: not its .lock, not an overlay shed's
 * older lower ("lower": it goes with its last shed, plan_lowers), and of its OCI blobs only
 * those nothing that stays reaches. */
static bool goes_with_image(const struct df_file *file, const struct image_reclaim *reclaim)
{
    if (strcmp(file->kind, "lock") == 0 || strcmp(file->kind, "lower") == 0)
        return false;
    if (strcmp(file->kind, "blob") == 0)
        return file->digest != NULL && image_reclaim_blob(reclaim, file->digest);
    return true;
}

/* The files image_cache_prune_variant deletes (all but the .lock), the content-addressed
 * rootfs the variant links to, which the image's removal leaves unlinked unless a surviving
 * overlay shed stands on it, and the OCI blobs that become unneeded (every pruned image's,
 * wherever df listed them). */
static int image_files(const struct prune_plan *plan, const struct df_report *report,
                       const struct df_image *image, const struct image_reclaim *reclaim,
                       struct prune_item *item, struct shed_err *err)
{
    struct df_file_list *files = &item->files;
    if (copy_file_into(files, &image->rootfs, err) < 0)
        return -1;
    for (size_t i = 0; i < image->other_files.count; i++) {
        const struct df_file *file = &image->other_files.items[i];
        if (!goes_with_image(file, reclaim))
            continue;
        if (copy_file_into(files, file, err) < 0 ||
            (strcmp(file->kind, "blob") == 0 &&
             strv_add(&item->blob_digests, file->digest, err) < 0))
            return -1;
    }
    if (image->is_base && (copy_file_into(files, &report->kernel, err) < 0 ||
                           copy_file_into(files, &report->initrd, err) < 0))
        return -1;
    for (size_t i = 0; i < report->blobs.count; i++) {
        const struct df_file *blob = &report->blobs.items[i];
        if (same_inode(blob, &image->rootfs) &&
            !df_lower_pinned(report, blob->path, shed_is_planned, plan) &&
            copy_file_into(files, blob, err) < 0)
            return -1;
    }
    return 0;
}

/* Only variants cached in images_dir; a config entry naming a local ext4 file is the user's. */
static bool is_cached_variant(const struct prune_plan *plan, const struct df_image *image)
{
    cleanup_free char *expected =
        image_layout_variant_rootfs(plan->opts.config->images_dir, image->name);
    return expected != NULL && strcmp(expected, image->rootfs.path) == 0;
}

/* "used by overlay shed(s) a, b": the surviving overlay sheds whose root is image, or "". */
static void overlay_users(const struct prune_plan *plan, const struct df_report *report,
                          const char *image, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < report->shed_count && used + 1 < len; i++) {
        const struct instance *inst = &report->sheds[i].inst;
        if (inst->disk != INSTANCE_DISK_OVERLAY || strcmp(inst->image, image) != 0 ||
            instance_planned(plan, inst->name))
            continue;
        used += (size_t)snprintf(out + used, len - used, "%s%s",
                                 used == 0 ? "used by overlay shed(s) " : ", ", inst->name);
    }
}

static int plan_image(struct prune_plan *plan, const struct df_report *report,
                      const struct df_image *image, const struct image_reclaim *reclaim,
                      struct shed_err *err)
{
    struct prune_item item;
    if (item_init(&item, PRUNE_KIND_IMAGE, image->name, image->rootfs.path, err) < 0)
        return -1;
    if (set_disk(&item, image->total.disk, image->shared_with, err) < 0 ||
        image_files(plan, report, image, reclaim, &item, err) < 0) {
        prune_item_clear(&item);
        return -1;
    }
    return prune_list_add(&plan->items, &item, err);
}

/* The decision for one image: *goes, or kept, or skipped (locked, or overlay sheds stand on
 * it: they are named). */
static int decide_image(struct prune_plan *plan, const struct df_report *report,
                        const struct df_image *image, const char *const *in_use, bool *goes,
                        struct shed_err *err)
{
    *goes = false;
    enum image_prune_decision decision;
    if (image_cache_prune_variant(plan->opts.config, image->name, in_use, false, &decision, err) <
        0)
        return -1;
    if (decision == IMAGE_PRUNE_KEEP)
        return 0;
    /* Only overlay sheds keep it: say so, since deleting it would take their root away. */
    char users[400];
    overlay_users(plan, report, image->name, users, sizeof users);
    if (users[0] != '\0')
        return prune_skip(&plan->skipped, PRUNE_KIND_IMAGE, image->name, image->rootfs.path, users,
                          err);
    if (decision == IMAGE_PRUNE_LOCKED)
        return prune_skip(&plan->skipped, PRUNE_KIND_IMAGE, image->name, image->rootfs.path,
                          PRUNE_REASON_LOCK_HELD, err);
    *goes = decision == IMAGE_PRUNE_REMOVE;
    return 0;
}

/* Which images go, then what goes with them: the blobs none of the images that stay needs
 * (image_reclaim, decided as if every planned image were gone already). */
static int plan_images(struct prune_plan *plan, const struct df_report *report,
                       struct shed_err *err)
{
    cleanup_free char **in_use = NULL;
    bool unknown = false;
    if (surviving_images(plan, report, &in_use, &unknown, err) < 0)
        return -1;
    cleanup_strv struct strv going = STRV_INIT;
    for (size_t i = 0; i < report->image_count; i++) {
        const struct df_image *image = &report->images[i];
        const struct shed_config_image *configured =
            shed_config_find_image(plan->opts.config, image->name);
        if (!is_cached_variant(plan, image) || (configured != NULL && configured->is_path))
            continue; /* a configured local file is the user's, wherever it lives */
        bool goes = false;
        int rc = unknown
                     ? prune_skip(&plan->skipped, PRUNE_KIND_IMAGE, image->name, image->rootfs.path,
                                  "a surviving shed's metadata.json is unreadable, so its "
                                  "image is unknown",
                                  err)
                     : decide_image(plan, report, image, (const char *const *)in_use, &goes, err);
        if (rc < 0 || (goes && strv_add(&going, image->name, err) < 0))
            return -1;
    }
    if (going.count == 0)
        return 0;
    struct image_reclaim *reclaim = NULL;
    if (image_reclaim_new(plan->opts.config, (const char *const *)going.items, &reclaim, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < report->image_count; i++)
        if (strv_contains(&going, report->images[i].name))
            rc = plan_image(plan, report, &report->images[i], reclaim, err);
    image_reclaim_free(reclaim);
    return rc;
}

/* ---- orphans -------------------------------------------------------------------------- */

/* The lock that guards an orphan (its variant's or its content-addressed rootfs'); NULL
 * (= every variant lock) for the OCI blob store, whose files have no lock of their own. */
static int orphan_lock_path(const struct shed_config *config, const struct df_file *orphan,
                            char **lock, struct shed_err *err)
{
    cleanup_free char *rootfs = NULL;
    return image_layout_guard(config->images_dir, orphan->path, &rootfs, lock, err);
}

static enum prune_kind orphan_kind(const char *kind)
{
    if (strcmp(kind, "lock") == 0)
        return PRUNE_KIND_LOCK;
    if (strcmp(kind, "source") == 0)
        return PRUNE_KIND_SOURCE;
    if (strcmp(kind, "blob") == 0)
        return PRUNE_KIND_BLOB;
    return PRUNE_KIND_TMP;
}

/* The blob store's files have no lock of their own: any conversion may need them. */
static bool needs_min_age(enum prune_kind kind, const char *lock_path)
{
    return kind == PRUNE_KIND_TMP || (kind == PRUNE_KIND_BLOB && lock_path == NULL);
}

int prune_orphan_lock_state(const struct shed_config *config, const char *lock_path, int *fd,
                            bool *held, struct shed_err *err)
{
    *fd = -1;
    if (lock_path != NULL)
        return prune_probe_lock(lock_path, fd, held, err);
    return prune_any_variant_lock_held(config, held, err);
}

/* Whether a pull holds the OCI store's blob lock right now (probed, not kept: execute takes
 * it for real). */
static int blob_store_busy(const struct shed_config *config, bool *busy, struct shed_err *err)
{
    struct oci_store *store = NULL;
    int rc = oci_store_open_existing(config->images_dir, &store, err);
    if (rc == 0)
        rc = oci_store_blobs_busy(store, busy, err);
    oci_store_close(store);
    return rc;
}

/* A shed directory without metadata: guarded by the name's lock (a create holds it from its
 * mkdir until metadata.json is written), so no minimum age. */
static int plan_orphan_instance(struct prune_plan *plan, const struct df_file *orphan,
                                struct shed_err *err)
{
    const char *slash = strrchr(orphan->path, '/');
    const char *name = slash != NULL ? slash + 1 : orphan->path;
    int lock = -1;
    if (instance_store_trylock(plan->opts.instances, name, &lock, err) < 0)
        return -1;
    if (lock < 0)
        return prune_skip(&plan->skipped, PRUNE_KIND_ORPHAN_INSTANCE, name, orphan->path,
                          PRUNE_REASON_LOCK_HELD, err);
    instance_store_unlock(lock);
    struct prune_item item;
    if (item_init(&item, PRUNE_KIND_ORPHAN_INSTANCE, name, orphan->path, err) < 0)
        return -1;
    if (copy_file_into(&item.files, orphan, err) < 0) {
        prune_item_clear(&item);
        return -1;
    }
    return prune_list_add(&plan->items, &item, err);
}

static int plan_orphan(struct prune_plan *plan, const struct df_file *orphan, struct shed_err *err)
{
    if (strcmp(orphan->kind, "instance") == 0)
        return plan_orphan_instance(plan, orphan, err);
    enum prune_kind kind = orphan_kind(orphan->kind);
    if (kind == PRUNE_KIND_LOCK)
        return prune_skip(&plan->skipped, kind, NULL, orphan->path, PRUNE_REASON_LOCK_RETAINED,
                          err);
    struct prune_item item;
    if (item_init(&item, kind, NULL, orphan->path, err) < 0)
        return -1;
    if (orphan_lock_path(plan->opts.config, orphan, &item.lock_path, err) < 0 ||
        copy_file_into(&item.files, orphan, err) < 0) {
        prune_item_clear(&item);
        return -1;
    }
    uint64_t age = prune_age_seconds(plan->now, &orphan->mtime);
    const char *reason = NULL;
    char recent[128];
    if (needs_min_age(kind, item.lock_path) && age < PRUNE_TMP_MIN_AGE_SECONDS) {
        prune_reason_too_recent(age, PRUNE_TMP_MIN_AGE_SECONDS, recent, sizeof recent);
        reason = recent;
    } else {
        int fd = -1;
        bool held = false;
        if (prune_orphan_lock_state(plan->opts.config, item.lock_path, &fd, &held, err) < 0) {
            prune_item_clear(&item);
            return -1;
        }
        if (fd >= 0)
            close(fd);
        bool pulling = false;
        if (!held && item.lock_path == NULL &&
            blob_store_busy(plan->opts.config, &pulling, err) < 0) {
            prune_item_clear(&item);
            return -1;
        }
        reason = held ? PRUNE_REASON_LOCK_HELD : pulling ? PRUNE_REASON_PULL_RUNNING : NULL;
    }
    if (reason == NULL)
        return prune_list_add(&plan->items, &item, err);
    int rc = prune_skip(&plan->skipped, kind, NULL, orphan->path, reason, err);
    prune_item_clear(&item);
    return rc;
}

static int plan_orphans(struct prune_plan *plan, const struct df_report *report,
                        struct shed_err *err)
{
    for (size_t i = 0; i < report->orphans.count; i++)
        if (plan_orphan(plan, &report->orphans.items[i], err) < 0)
            return -1;
    return 0;
}

/* ---- console logs ------------------------------------------------------------------- */

static int plan_logs(struct prune_plan *plan, const struct df_report *report, struct shed_err *err)
{
    uint64_t keep = plan->opts.log_tail_bytes;
    for (size_t i = 0; i < report->shed_count; i++) {
        const struct df_shed *shed = &report->sheds[i];
        if (!shed->has_console_log || shed->console_log.size.logical <= keep ||
            instance_planned(plan, shed->inst.name))
            continue; /* nothing to cut, or deleted with its shed */
        struct prune_item item;
        if (item_init(&item, PRUNE_KIND_CONSOLE_LOG, shed->inst.name, shed->console_log.path, err) <
            0)
            return -1;
        item.action = PRUNE_ACTION_TRUNCATE;
        item.keep_bytes = keep;
        /* Estimated; the real run reports what the truncation released. */
        item.freed.logical = shed->console_log.size.logical - keep;
        uint64_t kept_physical = (keep + 4095) / 4096 * 4096;
        item.freed.physical = shed->console_log.size.physical > kept_physical
                                  ? shed->console_log.size.physical - kept_physical
                                  : 0;
        item.freed.exclusive = item.freed.physical;
        if (prune_list_add(&plan->items, &item, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- freed bytes ---------------------------------------------------------------------- */

/* freed of one item alone, or of every deleting item when item is NULL. */
int prune_compute_freed(const struct prune_plan *plan, const struct prune_item *only,
                        struct df_size *freed, struct shed_err *err)
{
    struct df_deletion *deletion = NULL;
    if (df_deletion_new(&deletion, err) < 0)
        return -1;
    int rc = 0;
    struct df_size truncated = {0};
    for (size_t i = 0; rc == 0 && i < plan->items.count; i++) {
        const struct prune_item *item = &plan->items.items[i];
        if (only != NULL && item != only)
            continue;
        if (item->action == PRUNE_ACTION_TRUNCATE) {
            df_size_add(&truncated, &item->freed);
            continue;
        }
        for (size_t j = 0; rc == 0 && j < item->files.count; j++)
            rc = df_deletion_add(deletion, &item->files.items[j], err);
    }
    if (rc == 0)
        rc = df_deletion_freed(deletion, plan->extents, freed, err);
    df_deletion_free(deletion);
    if (rc == 0) {
        truncated.files = 0;
        df_size_add(freed, &truncated);
    }
    return rc;
}

int prune_compute_all_freed(struct prune_plan *plan, struct shed_err *err)
{
    for (size_t i = 0; i < plan->items.count; i++) {
        struct prune_item *item = &plan->items.items[i];
        if (item->action == PRUNE_ACTION_DELETE &&
            prune_compute_freed(plan, item, &item->freed, err) < 0)
            return -1;
    }
    return prune_compute_freed(plan, NULL, &plan->freed, err);
}

/* ---- the plan ------------------------------------------------------------------------- */

static int take_prune_lock(struct prune_plan *plan, struct shed_err *err)
{
    return instance_store_lock_purpose(plan->opts.instances, "system-prune", true,
                                       &plan->prune_lock_fd, err);
}

static int plan_notes(struct prune_plan *plan, const struct df_report *report, struct shed_err *err)
{
    if (prune_add_note(plan, err,
                       "freed: logical_bytes and physical_bytes (st_size, st_blocks*512) of the "
                       "files whose every link is removed; exclusive_bytes: the bytes of their "
                       "extents no surviving file shares (reflinks), i.e. the free space the "
                       "file system gains; totals count extents shared only among pruned "
                       "files once") < 0)
        return -1;
    if (report->fiemap_unsupported &&
        prune_add_note(plan, err,
                       "FIEMAP is not supported here for some files: their "
                       "exclusive_bytes equal physical_bytes") < 0)
        return -1;
    if (report->blobs_unknown_reason != NULL &&
        prune_add_note(plan, err,
                       "no OCI blob is pruned: which blobs the images need is unknown because %s",
                       report->blobs_unknown_reason) < 0)
        return -1;
    if ((plan->opts.scopes & PRUNE_SCOPE_LOGS) &&
        prune_add_note(plan, err, "console logs keep their last %llu bytes",
                       (unsigned long long)plan->opts.log_tail_bytes) < 0)
        return -1;
    return 0;
}

static int build_plan(struct prune_plan *plan, struct shed_err *err)
{
    struct df_report report;
    struct df_opts df = {.config = plan->opts.config,
                         .instances = plan->opts.instances,
                         .probe = plan->opts.probe,
                         .extents = plan->extents};
    /* df_scan snapshots the metadata mtimes before it asks the probe anything. */
    if (df_scan(&df, &report, err) < 0)
        return -1;
    plan->now = time(NULL);
    unsigned scopes = plan->opts.scopes;
    int rc = 0;
    if (scopes & PRUNE_SCOPE_INSTANCES)
        rc = plan_instances(plan, &report, err);
    if (rc == 0 && (scopes & PRUNE_SCOPE_IMAGES))
        rc = plan_images(plan, &report, err);
    if (rc == 0 && (scopes & PRUNE_SCOPE_ORPHANS))
        rc = plan_orphans(plan, &report, err);
    if (rc == 0 && (scopes & PRUNE_SCOPE_LOGS))
        rc = plan_logs(plan, &report, err);
    if (rc == 0)
        rc = prune_compute_all_freed(plan, err);
    if (rc == 0)
        rc = plan_notes(plan, &report, err);
    df_report_free(&report);
    return rc;
}

int prune_plan(const struct prune_opts *opts, struct prune_plan **out, struct shed_err *err)
{
    *out = NULL;
    struct prune_plan *plan = calloc(1, sizeof *plan);
    if (plan == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    plan->opts = *opts;
    plan->prune_lock_fd = -1;
    if (plan->opts.scopes == 0)
        plan->opts.scopes = PRUNE_SCOPE_DEFAULT;
    if (plan->opts.log_tail_bytes == 0)
        plan->opts.log_tail_bytes = PRUNE_DEFAULT_LOG_TAIL_BYTES;
    if (df_extent_index_new(&plan->extents, err) < 0 || take_prune_lock(plan, err) < 0 ||
        build_plan(plan, err) < 0) {
        prune_plan_free(plan);
        return -1;
    }
    *out = plan;
    return 0;
}

void prune_plan_free(struct prune_plan *plan)
{
    if (plan == NULL)
        return;
    prune_list_clear(&plan->items);
    prune_list_clear(&plan->skipped);
    for (size_t i = 0; i < plan->note_count; i++)
        free(plan->notes[i]);
    free(plan->notes);
    df_extent_index_free(plan->extents);
    if (plan->prune_lock_fd >= 0)
        close(plan->prune_lock_fd);
    free(plan);
}
