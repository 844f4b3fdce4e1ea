/* prune_execute: the plan's actions in order, each re-checked at the moment it runs, and
 * console log truncation in place. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "imaged/cache.h"
#include "imaged/layout.h"
#include "oci/oci.h"
#include "prune_private.h"
#include "runtime/instance_disk.h"

#define COPY_CHUNK (1u << 20)
/* Appenders faster than we copy would keep us busy forever: after this many rounds the
 * last bytes of a round may be lost to the truncation. */
#define MAX_COPY_ROUNDS 64

#define REASON_SHED_LOCKED "lock held (shed operation in progress)"
#define REASON_GONE "no longer exists"
#define REASON_NOW_IN_USE "now referenced by a shed or by the config"
#define REASON_CHANGED "changed since the plan"
#define REASON_ROOTFS_BACK "its rootfs exists again"
#define REASON_REACHABLE "now reachable from the ref index or a cached image"

struct run_state {
    struct prune_plan *plan;
    char **in_use; /* images of the sheds left after the instance phase; loaded lazily */
    bool in_use_loaded;
    /* The blob store, held exclusive from the first store file deleted to the end of the
     * run (oci_store_lock_blobs), and what its manifests reach while it is held. */
    struct oci_store *store;
    int store_lock;
    bool store_lock_tried;
    struct oci_blob_set *reachable;
    struct strv planned_blobs;      /* every OCI blob the plan lists with an image */
    struct instance_disk_pins pins; /* the overlay sheds' lowers, asked at each deletion */
};

/* The content-addressed rootfs files among an item's files go once nothing links or pins
 * them any more (the image cache's own rule, under its lock). */
static int remove_unlinked_contents(struct run_state *run, const struct prune_item *item,
                                    struct shed_err *err)
{
    const struct shed_config *config = run->plan->opts.config;
    for (size_t i = 0; i < item->files.count; i++) {
        const struct df_file *file = &item->files.items[i];
        if (image_layout_is_content_rootfs(config->images_dir, file->path) &&
            image_cache_remove_unlinked_content(file->path, file->dev, file->ino, &run->pins.pins,
                                                err) < 0)
            return -1;
    }
    return 0;
}

/* ---- instances ------------------------------------------------------------------------ */

static int execute_instance_locked(struct run_state *run, struct prune_item *item,
                                   const char **skip, struct shed_err *err)
{
    const struct prune_opts *opts = &run->plan->opts;
    struct instance inst;
    if (instance_store_load(opts->instances, item->name, &inst, err) < 0) {
        if (err->code != SHED_E_SHED_NOT_FOUND)
            return -1;
        *skip = REASON_GONE;
        return 0;
    }
    enum instance_status status = shed_probe_status(opts->probe, &inst);
    int rc = 0;
    if (status == INSTANCE_RUNNING || status == INSTANCE_STARTING)
        *skip = PRUNE_REASON_RUNNING;
    else if (opts->probe != NULL && opts->probe->release != NULL)
        rc = opts->probe->release(&inst, opts->probe->ctx, err);
    if (rc == 0 && *skip == NULL)
        rc = instance_store_delete(opts->instances, item->name, err);
    /* An older overlay lower the plan let go with this shed (prune.c plan_lowers). */
    if (rc == 0 && *skip == NULL)
        rc = remove_unlinked_contents(run, item, err);
    instance_clear(&inst);
    return rc;
}

static int execute_instance(struct run_state *run, struct prune_item *item, const char **skip,
                            struct shed_err *err)
{
    int lock = -1;
    if (instance_store_trylock(run->plan->opts.instances, item->name, &lock, err) < 0)
        return -1;
    if (lock < 0) {
        *skip = REASON_SHED_LOCKED;
        return 0;
    }
    int rc = execute_instance_locked(run, item, skip, err);
    instance_store_unlock(lock);
    return rc;
}

/* An orphan shed directory goes when, under the name's lock, it is still the directory the
 * plan measured and still has no metadata.json (a create would have written one). */
static int execute_orphan_instance(struct run_state *run, struct prune_item *item,
                                   const char **skip, struct shed_err *err)
{
    struct instance_store *store = run->plan->opts.instances;
    int lock = -1;
    if (instance_store_trylock(store, item->name, &lock, err) < 0)
        return -1;
    if (lock < 0) {
        *skip = REASON_SHED_LOCKED;
        return 0;
    }
    struct stat st;
    const struct df_file *planned = &item->files.items[0];
    int rc = 0;
    if (lstat(item->path, &st) < 0)
        *skip = REASON_GONE;
    else if (st.st_dev != planned->dev || st.st_ino != planned->ino ||
             instance_store_has_metadata(store, item->name))
        *skip = REASON_CHANGED;
    else
        rc = instance_store_delete(store, item->name, err);
    instance_store_unlock(lock);
    return rc;
}

/* ---- images --------------------------------------------------------------------------- */

/* Lets the blob lock go (flock conflicts between two descriptors of one process too); a
 * later store file takes it again and recomputes what is reachable under it. */
static void release_blob_store(struct run_state *run)
{
    oci_store_unlock_blobs(run->store_lock);
    run->store_lock = -1;
    run->store_lock_tried = false;
    oci_blob_set_free(run->reachable);
    run->reachable = NULL;
    oci_store_close(run->store);
    run->store = NULL;
}

static int load_in_use(struct run_state *run, struct shed_err *err)
{
    if (run->in_use_loaded)
        return 0;
    if (instance_store_image_refs(run->plan->opts.instances, &run->in_use, err) < 0)
        return shed_err_prefix(err, "cannot tell which images the sheds use");
    run->in_use_loaded = true;
    return 0;
}

/* The ref entry and the planned blobs this image was the last to need: decided before its
 * files go (reclaim), removed after; blobs of images pruned earlier in this run are unneeded
 * by now, so a layer two pruned images share goes with the second. */
static int reclaim_image_blobs(struct run_state *run, struct image_reclaim *reclaim,
                               struct shed_err *err)
{
    if (run->planned_blobs.count == 0 && image_reclaim_ref_count(reclaim) == 0)
        return 0;
    release_blob_store(run); /* image_reclaim_apply takes the blob lock itself */
    struct image_reclaimed done;
    static const char *const none[] = {NULL};
    const char *const *only =
        run->planned_blobs.count > 0 ? (const char *const *)run->planned_blobs.items : none;
    return image_reclaim_apply(run->plan->opts.config, reclaim, only, &done, err);
}

static int execute_image(struct run_state *run, struct prune_item *item, const char **skip,
                         struct shed_err *err)
{
    const struct shed_config *config = run->plan->opts.config;
    if (load_in_use(run, err) < 0)
        return -1;
    const char *gone[] = {item->name, NULL};
    struct image_reclaim *reclaim = NULL;
    if (image_reclaim_new(config, gone, &reclaim, err) < 0)
        return -1;
    enum image_prune_decision decision;
    if (image_cache_prune_variant(config, item->name, (const char *const *)run->in_use, true,
                                  &decision, err) < 0) {
        image_reclaim_free(reclaim);
        return -1;
    }
    if (decision != IMAGE_PRUNE_REMOVE) {
        image_reclaim_free(reclaim);
        *skip = decision == IMAGE_PRUNE_LOCKED ? PRUNE_REASON_LOCK_HELD : REASON_NOW_IN_USE;
        return 0;
    }
    int rc = reclaim_image_blobs(run, reclaim, err);
    image_reclaim_free(reclaim);
    if (rc < 0)
        return -1;
    /* The content-addressed copy the removed variant linked to goes too once nothing links
     * or pins it any more (the image cache's own rule and lock). */
    return remove_unlinked_contents(run, item, err);
}

/* ---- orphans -------------------------------------------------------------------------- */

static int orphan_still_orphan(struct run_state *run, const struct prune_item *item,
                               const char **skip, struct shed_err *err)
{
    const struct shed_config *config = run->plan->opts.config;
    const struct df_file *planned = &item->files.items[0];
    struct stat st;
    if (lstat(item->path, &st) < 0) {
        if (errno != ENOENT)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", item->path);
        *skip = REASON_GONE;
        return 0;
    }
    if (st.st_dev != planned->dev || st.st_ino != planned->ino) {
        *skip = REASON_CHANGED;
        return 0;
    }
    if (item->kind == PRUNE_KIND_BLOB) {
        if (st.st_nlink > 1)
            *skip = REASON_NOW_IN_USE; /* a variant links it again */
        else if (image_layout_is_content_rootfs(config->images_dir, item->path)) {
            int users = instance_disk_lower_users(run->pins.store, config->images_dir, item->path,
                                                  NULL, err);
            if (users < 0)
                return -1;
            if (users > 0)
                *skip = REASON_NOW_IN_USE; /* an overlay shed stands on it now */
        }
        return 0;
    }
    /* The rootfs whose absence made the file an orphan (none for the OCI blob store). */
    cleanup_free char *rootfs = NULL, *lock = NULL;
    if (image_layout_guard(config->images_dir, item->path, &rootfs, &lock, err) < 0)
        return -1;
    if (rootfs != NULL && fs_exists(rootfs))
        *skip = REASON_ROOTFS_BACK;
    return 0;
}

/* ---- the OCI blob store ---------------------------------------------------------------- */

/* What the ref index and every cached variant's .source reach now. */
static int compute_reachable(struct run_state *run, struct shed_err *err)
{
    const char *images_dir = run->plan->opts.config->images_dir;
    if (oci_blob_set_new(&run->reachable, err) < 0 ||
        oci_blob_set_add_ref_index(run->reachable, run->store, err) < 0)
        return -1;
    char **variants = NULL;
    int rc = image_layout_cached_variants(images_dir, &variants, err);
    for (char **name = variants; rc == 0 && name != NULL && *name != NULL; name++) {
        struct image_source record;
        rc = image_source_read(images_dir, *name, &record, err);
        if (rc == 0 && record.present)
            rc = oci_blob_set_add_reachable(run->reachable, run->store, record.digest, err);
        if (rc == 0)
            image_source_clear(&record);
    }
    image_names_free(variants);
    return rc;
}

/* Takes the store's blob lock exclusive (once per run, never waiting: a pull in progress
 * makes the store's files skipped) and computes what is reachable under it. A blob the
 * plan saw unreferenced may have been made reachable by a pull that finished since. */
static int hold_blob_store(struct run_state *run, bool *held, struct shed_err *err)
{
    if (!run->store_lock_tried) {
        run->store_lock_tried = true;
        const char *images_dir = run->plan->opts.config->images_dir;
        if (oci_store_open_existing(images_dir, &run->store, err) < 0 ||
            oci_store_lock_blobs(run->store, true, false, &run->store_lock, err) < 0)
            return -1;
        if (run->store_lock >= 0 && compute_reachable(run, err) < 0)
            return -1;
    }
    *held = run->store_lock >= 0;
    return 0;
}

/* "sha256:<hex>" of a blob store file (its name, or the name before .tmp), or false. */
static bool blob_digest_of(const char *path, char digest[DIGEST_STRING_LEN + 1])
{
    const char *name = strrchr(path, '/');
    name = name != NULL ? name + 1 : path;
    snprintf(digest, DIGEST_STRING_LEN + 1, "sha256:%.64s", name);
    return digest_is_valid(digest);
}

/* A blob store file goes only with the store held exclusive, and a blob only while nothing
 * reaches it (or nobody can tell: then it stays). */
static int blob_store_check(struct run_state *run, const struct prune_item *item, const char **skip,
                            struct shed_err *err)
{
    bool held = false;
    if (hold_blob_store(run, &held, err) < 0)
        return -1;
    if (!held) {
        *skip = PRUNE_REASON_PULL_RUNNING;
        return 0;
    }
    char digest[DIGEST_STRING_LEN + 1];
    if (item->kind == PRUNE_KIND_BLOB &&
        (oci_blob_set_unknown_reason(run->reachable) != NULL ||
         (blob_digest_of(item->path, digest) && oci_blob_set_has(run->reachable, digest))))
        *skip = REASON_REACHABLE;
    return 0;
}

static int execute_orphan(struct run_state *run, struct prune_item *item, const char **skip,
                          struct shed_err *err)
{
    /* The OCI store's files have no lock of their own (lock_path NULL): the store's. */
    if (item->lock_path == NULL && (blob_store_check(run, item, skip, err) < 0 || *skip != NULL))
        return *skip != NULL ? 0 : -1;
    cleanup_close int lock = -1;
    bool held = false;
    if (prune_orphan_lock_state(run->plan->opts.config, item->lock_path, &lock, &held, err) < 0)
        return -1;
    if (held) {
        *skip = PRUNE_REASON_LOCK_HELD;
        return 0;
    }
    /* With the lock held (when the file has one) nothing can start using it meanwhile. */
    if (orphan_still_orphan(run, item, skip, err) < 0 || *skip != NULL)
        return *skip != NULL ? 0 : -1;
    if (unlink(item->path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", item->path);
    return 0;
}

/* ---- console logs --------------------------------------------------------------------- */

static int copy_range(int fd, uint64_t from, uint64_t to, uint64_t end, uint64_t *written,
                      char *buf, struct shed_err *err)
{
    while (from < end) {
        size_t want = end - from < COPY_CHUNK ? (size_t)(end - from) : COPY_CHUNK;
        ssize_t n = pread(fd, buf, want, (off_t)from);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot read the log");
        if (n == 0)
            break;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(fd, buf + done, (size_t)(n - done), (off_t)(to + (uint64_t)done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return shed_errf_errno(err, SHED_E_IO, errno, "cannot write the log");
            done += w;
        }
        from += (uint64_t)n;
        to += (uint64_t)n;
        *written = to;
    }
    return 0;
}

/* Moves [size - keep, EOF) to the start, following bytes appended meanwhile; *kept is the
 * new length. Writers appending with O_APPEND land past EOF, never inside the moved range. */
static int move_tail(int fd, uint64_t size, uint64_t keep, uint64_t *kept, struct shed_err *err)
{
    cleanup_free char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    uint64_t from = size - keep, written = 0, end = size;
    for (int round = 0; round < MAX_COPY_ROUNDS; round++) {
        uint64_t to = written;
        if (copy_range(fd, from, to, end, &written, buf, err) < 0)
            return -1;
        from = end;
        struct stat st;
        if (fstat(fd, &st) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat the log");
        if ((uint64_t)st.st_size <= end)
            break;
        end = (uint64_t)st.st_size; /* appended while we copied: move those bytes too */
    }
    *kept = written;
    return 0;
}

int prune_truncate_log(const char *path, uint64_t keep_bytes, struct df_size *freed,
                       struct shed_err *err)
{
    memset(freed, 0, sizeof *freed);
    cleanup_close int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    struct stat before, after;
    if (fstat(fd, &before) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    if (!S_ISREG(before.st_mode) || (uint64_t)before.st_size <= keep_bytes)
        return 0;
    uint64_t kept = 0;
    if (move_tail(fd, (uint64_t)before.st_size, keep_bytes, &kept, err) < 0)
        return shed_err_prefix(err, "%s", path);
    struct stat grown;
    if (fstat(fd, &grown) < 0 || ftruncate(fd, (off_t)kept) < 0 || fstat(fd, &after) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot truncate %s", path);
    freed->logical = (uint64_t)grown.st_size - kept;
    freed->physical = before.st_blocks > after.st_blocks
                          ? (uint64_t)(before.st_blocks - after.st_blocks) * 512
                          : 0;
    freed->exclusive = freed->physical;
    return 0;
}

static int execute_log(struct prune_item *item, const char **skip, struct shed_err *err)
{
    struct df_size freed;
    if (prune_truncate_log(item->path, item->keep_bytes, &freed, err) < 0) {
        if (!shed_err_is_errno(err, ENOENT))
            return -1;
        *skip = REASON_GONE;
        return 0;
    }
    item->freed = freed;
    return 0;
}

/* ---- the run -------------------------------------------------------------------------- */

static int execute_item(struct run_state *run, struct prune_item *item, const char **skip,
                        struct shed_err *err)
{
    *skip = NULL;
    switch (item->kind) {
    case PRUNE_KIND_INSTANCE: return execute_instance(run, item, skip, err);
    case PRUNE_KIND_IMAGE: return execute_image(run, item, skip, err);
    case PRUNE_KIND_CONSOLE_LOG: return execute_log(item, skip, err);
    case PRUNE_KIND_ORPHAN_INSTANCE: return execute_orphan_instance(run, item, skip, err);
    default: return execute_orphan(run, item, skip, err);
    }
}

/* Moves item to skipped with reason (the item's strings move along). */
static int move_to_skipped(struct prune_plan *plan, struct prune_item *item, const char *reason,
                           struct shed_err *err)
{
    free(item->reason);
    item->reason = strdup(reason);
    if (item->reason == NULL) {
        prune_item_clear(item);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return prune_list_add(&plan->skipped, item, err);
}

/* After a failure: the failed item and every later one go to skipped. */
static int stop_after_failure(struct prune_plan *plan, struct prune_list *pending, size_t failed,
                              const struct shed_err *failure, struct shed_err *err)
{
    char reason[600];
    snprintf(reason, sizeof reason, "failed: %s", failure->msg);
    if (prune_add_note(plan, err, "partial failure: %s; %zu later item(s) not attempted",
                       failure->msg, pending->count - failed - 1) < 0)
        return -1;
    for (size_t i = failed; i < pending->count; i++) {
        const char *why = i == failed ? reason : "not attempted: an earlier action failed";
        if (move_to_skipped(plan, &pending->items[i], why, err) < 0)
            return -1;
    }
    return 0;
}

static int run_items(struct run_state *run, struct prune_list *pending, struct shed_err *err)
{
    struct prune_plan *plan = run->plan;
    for (size_t i = 0; i < pending->count; i++) {
        struct prune_item *item = &pending->items[i];
        const char *skip = NULL;
        struct shed_err failure = {0};
        if (execute_item(run, item, &skip, &failure) < 0) {
            if (plan->items.count == 0) { /* nothing changed yet: the whole request fails */
                *err = failure;
                return -1;
            }
            return stop_after_failure(plan, pending, i, &failure, err);
        }
        int rc = skip != NULL ? move_to_skipped(plan, item, skip, err)
                              : prune_list_add(&plan->items, item, err);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int prune_execute(struct prune_plan *plan, struct shed_err *err)
{
    if (plan->executed)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "this prune plan was already executed");
    plan->executed = true;
    if (plan->opts.dry_run)
        return 0;
    struct prune_list pending = plan->items; /* re-filled with what actually ran */
    memset(&plan->items, 0, sizeof plan->items);
    struct run_state run = {.plan = plan, .store_lock = -1, .planned_blobs = STRV_INIT};
    for (size_t i = 0; i < pending.count; i++)
        for (size_t j = 0; j < pending.items[i].blob_digests.count; j++)
            if (strv_add_unique(&run.planned_blobs, pending.items[i].blob_digests.items[j], err) <
                0) {
                strv_free(&run.planned_blobs);
                plan->items = pending; /* nothing ran: the plan keeps its items */
                return -1;
            }
    instance_disk_pins_init(&run.pins, plan->opts.instances, plan->opts.config);
    int rc = run_items(&run, &pending, err);
    oci_store_unlock_blobs(run.store_lock);
    oci_blob_set_free(run.reachable);
    oci_store_close(run.store);
    /* Items that ran or were skipped moved out of pending (leaving zeroed slots); after a
     * failure of the first action the rest are dropped with it. */
    for (size_t i = 0; i < pending.count; i++)
        prune_item_clear(&pending.items[i]);
    free(pending.items);
    instance_image_refs_free(run.in_use);
    strv_free(&run.planned_blobs);
    if (rc == 0)
        rc = prune_compute_all_freed(plan, err);
    return rc;
}
