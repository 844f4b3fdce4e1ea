/* df_scan: every file of images_dir and instance_dir, classified as api.md's df report
 * describes (images, kernel files, sheds, orphans), with totals that count each inode once. */
#include "df.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "df_private.h"
#include "imaged/layout.h"

/* ---- small helpers ------------------------------------------------------------------- */

static int backend_or_pid_is_running(const struct instance *inst, void *opaque,
                                     struct shed_err *err)
{
    const struct backend_set *backends = opaque;
    const struct shed_backend *backend =
        backends != NULL ? backend_set_find(backends, inst->backend) : NULL;
    if (backend != NULL && backend->status != NULL) {
        enum instance_status status;
        if (backend->status(backend, inst, &status, err) < 0)
            return -1;
        return status == INSTANCE_RUNNING || status == INSTANCE_STARTING;
    }
    if (inst->pid > 0)
        return kill(inst->pid, 0) == 0 || errno == EPERM;
    if (inst->status == INSTANCE_RUNNING || inst->status == INSTANCE_STARTING)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot tell whether shed \"%s\" runs",
                         inst->name);
    return 0;
}

/* What the backend holds for a stopped shed, released as DELETE /api/sheds/{name} does. */
static int backend_release(const struct instance *inst, void *opaque, struct shed_err *err)
{
    const struct backend_set *backends = opaque;
    const struct shed_backend *backend =
        backends != NULL ? backend_set_find(backends, inst->backend) : NULL;
    if (backend == NULL || backend->delete == NULL)
        return 0;
    struct instance copy;
    if (instance_copy(&copy, inst, err) < 0)
        return -1;
    int rc = backend->delete (backend, &copy, err);
    instance_clear(&copy);
    return rc;
}

struct shed_probe shed_probe_for_backends(const struct backend_set *backends)
{
    return (struct shed_probe){.is_running = backend_or_pid_is_running,
                               .release = backend_release,
                               .ctx = (void *)backends};
}

enum instance_status shed_probe_status(const struct shed_probe *probe, const struct instance *inst)
{
    if (probe == NULL || probe->is_running == NULL)
        return inst->status;
    struct shed_err ignored = {0};
    int running = probe->is_running(inst, probe->ctx, &ignored);
    if (running < 0)
        return inst->status; /* cannot tell: trust the record (a running one stays running) */
    if (running)
        return INSTANCE_RUNNING;
    /* Not running: a shed recorded as running or starting whose process is gone is stopped. */
    return inst->status == INSTANCE_ERROR ? INSTANCE_ERROR : INSTANCE_STOPPED;
}

void df_size_add(struct df_size *total, const struct df_size *part)
{
    total->logical += part->logical;
    total->physical += part->physical;
    total->exclusive += part->exclusive;
    total->disk += part->disk;
    total->files += part->files;
}

void df_file_list_clear(struct df_file_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        df_file_clear(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

int df_file_list_add(struct df_file_list *list, struct df_file *file, struct shed_err *err)
{
    struct df_file *grown = realloc(list->items, (list->count + 1) * sizeof *grown);
    if (grown == NULL) {
        df_file_clear(file);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    list->items = grown;
    list->items[list->count++] = *file;
    memset(file, 0, sizeof *file);
    return 0;
}

int df_report_add_note(struct df_report *report, struct shed_err *err, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char **grown = realloc(report->notes, (report->note_count + 2) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    report->notes = grown;
    report->notes[report->note_count] = strdup(text);
    if (report->notes[report->note_count] == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    report->notes[++report->note_count] = NULL;
    return 0;
}

void df_report_free(struct df_report *report)
{
    for (size_t i = 0; i < report->image_count; i++) {
        struct df_image *image = &report->images[i];
        free(image->name);
        free(image->docker_ref);
        df_file_clear(&image->rootfs);
        df_file_list_clear(&image->other_files);
    }
    free(report->images);
    df_file_clear(&report->kernel);
    df_file_clear(&report->initrd);
    df_file_list_clear(&report->blobs);
    for (size_t i = 0; i < report->shed_count; i++) {
        struct df_shed *shed = &report->sheds[i];
        instance_clear(&shed->inst);
        df_file_clear(&shed->rootfs);
        df_file_clear(&shed->console_log);
        df_file_list_clear(&shed->other_files);
    }
    free(report->sheds);
    df_file_list_clear(&report->orphans);
    free(report->blobs_unknown_reason);
    free(report->no_reflink_reason);
    for (size_t i = 0; i < report->lower_pin_count; i++) {
        free(report->lower_pins[i].shed);
        free(report->lower_pins[i].image);
        free(report->lower_pins[i].path);
    }
    free(report->lower_pins);
    for (size_t i = 0; i < report->note_count; i++)
        free(report->notes[i]);
    free(report->notes);
    memset(report, 0, sizeof *report);
}

/* Measures path into *file; a file that vanished meanwhile is reported as *found = false. */
int df_measure_into(struct df_scan_ctx *ctx, const char *path, const char *kind,
                    struct df_file *file, bool *found, struct shed_err *err)
{
    bool fiemap_ok = true;
    *found = false;
    if (df_measure_file(path, kind, file, &fiemap_ok, ctx->extents, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1;
    *found = true;
    if (file->size.physical > 0) {
        if (fiemap_ok)
            ctx->report->fiemap_supported = true;
        else
            ctx->report->fiemap_unsupported = true;
    }
    return 0;
}

/* Adds a measured file to a list (nothing when it vanished). */
int df_measure_append(struct df_scan_ctx *ctx, const char *path, const char *kind,
                      struct df_file_list *list, struct shed_err *err)
{
    struct df_file file;
    bool found = false;
    if (df_measure_into(ctx, path, kind, &file, &found, err) < 0)
        return -1;
    return found ? df_file_list_add(list, &file, err) : 0;
}

/* ---- totals (each inode once) ---------------------------------------------------------- */

/* Open-addressing set of (dev, ino). */
struct inode_set {
    struct {
        dev_t dev;
        ino_t ino;
        bool used;
    } * slots;
    size_t capacity, count;
};

static size_t inode_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

static int inode_set_grow(struct inode_set *set, struct shed_err *err);

/* *added: false when the inode was already in. */
static int inode_set_add(struct inode_set *set, dev_t dev, ino_t ino, bool *added,
                         struct shed_err *err)
{
    if ((set->count + 1) * 2 > set->capacity && inode_set_grow(set, err) < 0)
        return -1;
    size_t mask = set->capacity - 1;
    for (size_t i = inode_hash(dev, ino) & mask;; i = (i + 1) & mask) {
        if (!set->slots[i].used) {
            set->slots[i].used = true;
            set->slots[i].dev = dev;
            set->slots[i].ino = ino;
            set->count++;
            *added = true;
            return 0;
        }
        if (set->slots[i].dev == dev && set->slots[i].ino == ino) {
            *added = false;
            return 0;
        }
    }
}

static int inode_set_grow(struct inode_set *set, struct shed_err *err)
{
    struct inode_set bigger = {.capacity = set->capacity ? set->capacity * 2 : 1024};
    bigger.slots = calloc(bigger.capacity, sizeof *bigger.slots);
    if (bigger.slots == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < set->capacity; i++) {
        bool added;
        if (set->slots[i].used)
            inode_set_add(&bigger, set->slots[i].dev, set->slots[i].ino, &added, err);
    }
    free(set->slots);
    *set = bigger;
    return 0;
}

static int count_file(struct inode_set *seen, struct df_file *file, struct df_size *total,
                      struct shed_err *err)
{
    if (file->path == NULL)
        return 0;
    bool added = false;
    if (inode_set_add(seen, file->dev, file->ino, &added, err) < 0)
        return -1;
    file->counted = added;
    if (added)
        df_size_add(total, &file->size);
    return 0;
}

static int count_list(struct inode_set *seen, struct df_file_list *list, struct df_size *total,
                      struct shed_err *err)
{
    for (size_t i = 0; i < list->count; i++)
        if (count_file(seen, &list->items[i], total, err) < 0)
            return -1;
    return 0;
}

/* Per-item totals (an image's or a shed's own files, each inode once within the item). The
 * `counted` flags are the category totals' business (compute_totals sets them last). */
static int item_total(struct df_file *const *files, size_t count, struct df_file_list *others,
                      struct df_size *total, struct shed_err *err)
{
    struct inode_set seen = {0};
    memset(total, 0, sizeof *total);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = count_file(&seen, files[i], total, err);
    if (rc == 0)
        rc = count_list(&seen, others, total, err);
    free(seen.slots);
    return rc;
}

static int compute_item_totals(struct df_report *report, struct shed_err *err)
{
    for (size_t i = 0; i < report->image_count; i++) {
        struct df_image *image = &report->images[i];
        /* The base image's kernel files under their plain names are _base's too. */
        struct df_file *files[] = {&image->rootfs, &report->kernel, &report->initrd};
        if (item_total(files, image->is_base ? 3 : 1, &image->other_files, &image->total, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < report->shed_count; i++) {
        struct df_shed *shed = &report->sheds[i];
        struct df_file *files[] = {&shed->rootfs, &shed->console_log};
        if (item_total(files, 2, &shed->other_files, &shed->total, err) < 0)
            return -1;
    }
    return 0;
}

/* Category totals; the `counted` flags end up telling which names were counted first. */
static int compute_totals(struct df_report *report, struct shed_err *err)
{
    if (compute_item_totals(report, err) < 0)
        return -1;
    struct inode_set seen = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < report->image_count; i++) {
        rc = count_file(&seen, &report->images[i].rootfs, &report->totals.images, err);
        if (rc == 0)
            rc = count_list(&seen, &report->images[i].other_files, &report->totals.images, err);
    }
    if (rc == 0)
        rc = count_file(&seen, &report->kernel, &report->totals.images, err);
    if (rc == 0)
        rc = count_file(&seen, &report->initrd, &report->totals.images, err);
    if (rc == 0)
        rc = count_list(&seen, &report->blobs, &report->totals.images, err);
    for (size_t i = 0; rc == 0 && i < report->shed_count; i++) {
        struct df_shed *shed = &report->sheds[i];
        rc = count_file(&seen, &shed->rootfs, &report->totals.sheds, err);
        if (rc == 0)
            rc = count_file(&seen, &shed->console_log, &report->totals.sheds, err);
        if (rc == 0)
            rc = count_list(&seen, &shed->other_files, &report->totals.sheds, err);
    }
    if (rc == 0)
        rc = count_list(&seen, &report->orphans, &report->totals.orphans, err);
    free(seen.slots);
    df_size_add(&report->totals.all, &report->totals.images);
    df_size_add(&report->totals.all, &report->totals.sheds);
    df_size_add(&report->totals.all, &report->totals.orphans);
    return rc;
}

/* ---- reflinks ------------------------------------------------------------------------------ */

#define FS_MAGIC_XFS 0x58465342
#define FS_MAGIC_BTRFS 0x9123683e

static const char *fs_type_name(long type)
{
    switch ((unsigned long)type) {
    case 0xef53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlayfs";
    case 0x6969: return "nfs";
    case 0x58465342: return "xfs";
    case 0x9123683e: return "btrfs";
    default: return "this file system";
    }
}

/* Whether clone_file can make a shed's rootfs a reflink of its image here: same file system,
 * and one that shares extents (XFS with reflink, btrfs). Judged from statfs: a df does not
 * write a test clone. */
int df_check_reflink(const struct shed_config *config, struct df_report *report,
                     struct shed_err *err)
{
    struct statfs instances;
    struct stat images_st, instances_st;
    if (statfs(config->instance_dir, &instances) < 0 ||
        stat(config->instance_dir, &instances_st) < 0 || stat(config->images_dir, &images_st) < 0)
        return 0; /* nothing created yet: nothing to say */
    /* Where reflinks fail, instance_disk auto makes overlay sheds: no full copies then. */
    bool overlay_sheds =
        config->instance_disk == SHED_INSTANCE_DISK_OVERLAY ||
        (config->instance_disk == SHED_INSTANCE_DISK_AUTO && !config->container.userns);
    char reason[200] = "";
    if (config->instance_disk == SHED_INSTANCE_DISK_COPY)
        snprintf(reason, sizeof reason, "instance_disk is copy");
    else if (overlay_sheds)
        return 0;
    else if (images_st.st_dev != instances_st.st_dev)
        snprintf(reason, sizeof reason,
                 "images_dir and instance_dir are on different file systems, so a shed's rootfs "
                 "cannot be a reflink of its image");
    else if (instances.f_type != FS_MAGIC_XFS && instances.f_type != FS_MAGIC_BTRFS)
        snprintf(reason, sizeof reason, "the data dir's file system (%s) cannot reflink",
                 fs_type_name(instances.f_type));
    if (reason[0] == '\0')
        return 0;
    report->no_reflink_reason = strdup(reason);
    return report->no_reflink_reason != NULL ? 0
                                             : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

/* "deb 241.8 MiB, mid 391.8 MiB": what one more shed of each image costs without reflinks. */
static void per_image_cost(const struct df_report *report, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < report->image_count && used < len; i++) {
        char size[32];
        used += (size_t)snprintf(
            out + used, len - used, "%s%s %s", i ? ", " : "", report->images[i].name,
            format_size(report->images[i].rootfs.size.physical, size, sizeof size));
    }
}

static int add_notes(struct df_report *report, struct shed_err *err)
{
    if (df_report_add_note(report, err,
                           "logical_bytes = st_size; physical_bytes = st_blocks*512 (what du "
                           "counts); exclusive_bytes = physical bytes of the extents FIEMAP "
                           "reports without FIEMAP_EXTENT_SHARED, so reflink clones are not "
                           "double counted") < 0 ||
        df_report_add_note(report, err,
                           "totals count every inode once: a file hardlinked under several "
                           "names (a variant and its content-addressed rootfs) is counted under "
                           "the first name listed; totals add logical, physical and exclusive "
                           "bytes of those files") < 0)
        return -1;
    if (report->fiemap_unsupported &&
        df_report_add_note(report, err,
                           "FIEMAP is not supported on %s file system holding some files: their "
                           "exclusive_bytes equal physical_bytes (sharing unknown)",
                           report->fiemap_supported ? "a" : "the") < 0)
        return -1;
    if (report->blobs_unknown_reason != NULL &&
        df_report_add_note(report, err,
                           "every OCI blob counts as referenced (so prune keeps them all): "
                           "which blobs the images need is unknown because %s",
                           report->blobs_unknown_reason) < 0)
        return -1;
    if (report->no_reflink_reason != NULL) {
        char costs[300];
        per_image_cost(report, costs, sizeof costs);
        if (df_report_add_note(report, err,
                               "no reflinks: %s; every shed's rootfs is a full copy of its image, "
                               "so each shed costs its image's allocated size%s%s; on XFS with "
                               "reflink=1 or btrfs a shed costs only the blocks it changes",
                               report->no_reflink_reason, costs[0] ? ": " : "", costs) < 0)
            return -1;
    }
    if (df_report_add_note(report, err,
                           "disk_bytes: each block counted once across the report, for the "
                           "first item that holds it (images, blobs, sheds, orphans, in this "
                           "order); an item marked shared_with holds blocks counted for that "
                           "earlier item (a hardlink, or a reflink clone of it)") < 0)
        return -1;
    if (report->blobs.count > 0 &&
        df_report_add_note(report, err,
                           "totals.images includes %zu referenced OCI blob(s) and "
                           "content-addressed rootfs file(s) listed under \"blobs\"",
                           report->blobs.count) < 0)
        return -1;
    return 0;
}

bool df_lower_pinned(const struct df_report *report, const char *path,
                     bool (*except)(const char *shed, const void *ctx), const void *ctx)
{
    if (report->lower_pins_unknown)
        return true;
    for (size_t i = 0; i < report->lower_pin_count; i++) {
        const struct df_lower_pin *pin = &report->lower_pins[i];
        if (strcmp(pin->path, path) == 0 && (except == NULL || !except(pin->shed, ctx)))
            return true;
    }
    return false;
}

static int add_lower_pin(struct df_report *report, const struct shed_config *config,
                         const struct instance_lower_ref *ref, struct shed_err *err)
{
    struct df_lower_pin *grown =
        realloc(report->lower_pins, (report->lower_pin_count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    report->lower_pins = grown;
    struct df_lower_pin *pin = &report->lower_pins[report->lower_pin_count++];
    pin->shed = strdup(ref->name);
    pin->image = strdup(ref->image);
    pin->path = image_layout_content_rootfs(config->images_dir, ref->lower.digest, ref->lower.size);
    if (pin->shed == NULL || pin->image == NULL || pin->path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

/* The overlay sheds' lowers, before anything of images_dir is classified. */
static int load_lower_pins(struct df_scan_ctx *ctx, struct shed_err *err)
{
    if (ctx->instances == NULL)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "df_scan needs the instance store");
    struct instance_lower_refs refs;
    struct shed_err read_err = {0};
    if (instance_store_lower_refs(ctx->instances, &refs, &read_err) < 0) {
        if (read_err.code == SHED_E_NO_MEMORY) {
            *err = read_err;
            return -1;
        }
        ctx->report->lower_pins_unknown = true;
        return df_report_add_note(ctx->report, err,
                                  "every content-addressed rootfs counts as an overlay shed's "
                                  "lower (so prune keeps them all): %s",
                                  read_err.msg);
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < refs.count; i++)
        rc = add_lower_pin(ctx->report, ctx->config, &refs.items[i], err);
    instance_lower_refs_clear(&refs);
    return rc;
}

int df_scan(const struct df_opts *opts, struct df_report *report, struct shed_err *err)
{
    memset(report, 0, sizeof *report);
    struct df_extent_index *own_extents = NULL;
    if (opts->extents == NULL && df_extent_index_new(&own_extents, err) < 0)
        return -1;
    struct df_scan_ctx ctx = {.config = opts->config,
                              .instances = opts->instances,
                              .probe = opts->probe,
                              .extents = opts->extents != NULL ? opts->extents : own_extents,
                              .report = report};
    int rc = load_lower_pins(&ctx, err);
    if (rc == 0)
        rc = df_scan_images(&ctx, err);
    if (rc == 0 && !opts->images_only)
        rc = df_scan_sheds(&ctx, err);
    if (rc == 0)
        rc = compute_totals(report, err);
    if (rc == 0)
        rc = df_attribute_disk(report, ctx.extents, err);
    if (rc == 0)
        rc = df_check_reflink(opts->config, report, err);
    if (rc == 0)
        rc = add_notes(report, err);
    df_extent_index_free(own_extents);
    if (rc < 0)
        df_report_free(report);
    return rc;
}
