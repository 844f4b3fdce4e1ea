/* The images_dir half of df_scan: variants and their sidecars, the base kernel files, the
 * content-addressed rootfs store (rootfs/sha256) and the OCI blob store (blobs/sha256),
 * with orphans: sidecars whose rootfs is absent and store files nothing references. What
 * each file is comes from its owner (imaged/layout.h for the image cache, oci/oci.h for the
 * blob store); this file only measures them and sorts them into the report. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "df_private.h"
#include "imaged/layout.h"
#include "oci/oci.h"

/* ---- variants ------------------------------------------------------------------------------ */

struct images_scan {
    struct df_scan_ctx *ctx;
    const char *dir;
    struct strv entries;  /* files of images_dir */
    struct strv variants; /* names with a <name>-rootfs.ext4 */
    struct image_source *sources;
    size_t source_count;
};

static struct df_image *find_image(struct df_report *report, const char *name)
{
    for (size_t i = 0; i < report->image_count; i++)
        if (strcmp(report->images[i].name, name) == 0)
            return &report->images[i];
    return NULL;
}

static int add_image(struct images_scan *scan, const char *name, const char *rootfs_path,
                     const char *docker_ref, struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    struct df_file rootfs;
    bool found = false;
    if (df_measure_into(scan->ctx, rootfs_path, "rootfs", &rootfs, &found, err) < 0)
        return -1;
    if (!found)
        return 0;
    struct df_image *grown = realloc(report->images, (report->image_count + 1) * sizeof *grown);
    if (grown == NULL) {
        df_file_clear(&rootfs);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    report->images = grown;
    struct df_image *image = &report->images[report->image_count++];
    memset(image, 0, sizeof *image);
    image->rootfs = rootfs;
    image->is_base = strcmp(name, SHED_BASE_IMAGE_NAME) == 0;
    image->name = strdup(name);
    image->docker_ref = strdup(docker_ref != NULL ? docker_ref : "");
    if (image->name == NULL || image->docker_ref == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

/* A cached variant; docker_ref from the config, else from its .source, which also says the
 * manifest digest it was built from (what its blobs are). */
static int add_cached_variant(struct images_scan *scan, const char *name, const char *config_ref,
                              struct shed_err *err)
{
    cleanup_free char *rootfs = image_layout_variant_rootfs(scan->dir, name);
    if (rootfs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct image_source record;
    if (image_source_read(scan->dir, name, &record, err) < 0)
        return -1;
    const char *ref = config_ref != NULL ? config_ref : record.present ? record.ref : "";
    size_t before = scan->ctx->report->image_count;
    int rc = add_image(scan, name, rootfs, ref, err);
    if (rc == 0 && record.present && scan->ctx->report->image_count > before)
        snprintf(scan->ctx->report->images[before].digest,
                 sizeof scan->ctx->report->images[before].digest, "%s", record.digest);
    image_source_clear(&record);
    return rc;
}

/* Config variants first (file order), then _base, then the other cached ones (sorted). */
static int add_images(struct images_scan *scan, struct shed_err *err)
{
    const struct shed_config *config = scan->ctx->config;
    for (size_t i = 0; i < config->image_count; i++) {
        const struct shed_config_image *image = &config->images[i];
        int rc = 0;
        if (image->is_path)
            rc = add_image(scan, image->name, image->ref, "", err);
        else if (strv_contains(&scan->variants, image->name))
            rc = add_cached_variant(scan, image->name, image->ref, err);
        if (rc < 0)
            return -1;
    }
    if (strv_contains(&scan->variants, SHED_BASE_IMAGE_NAME) &&
        add_cached_variant(scan, SHED_BASE_IMAGE_NAME, config->base_image, err) < 0)
        return -1;
    for (size_t i = 0; i < scan->variants.count; i++) {
        const char *name = scan->variants.items[i];
        if (find_image(scan->ctx->report, name) == NULL &&
            add_cached_variant(scan, name, NULL, err) < 0)
            return -1;
    }
    return 0;
}

static int add_source(struct images_scan *scan, const char *name, struct shed_err *err)
{
    struct image_source record;
    if (image_source_read(scan->dir, name, &record, err) < 0)
        return -1;
    if (!record.present) {
        image_source_clear(&record);
        return 0;
    }
    struct image_source *grown = realloc(scan->sources, (scan->source_count + 1) * sizeof *grown);
    if (grown == NULL) {
        image_source_clear(&record);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    scan->sources = grown;
    scan->sources[scan->source_count++] = record;
    return 0;
}

/* The variants that have a rootfs, and the .source records of every variant, orphaned ones
 * included (they keep their blobs and their content-addressed rootfs referenced). */
static int scan_entry_names(struct images_scan *scan, const char *entry, struct shed_err *err)
{
    struct image_entry found;
    if (image_layout_classify(entry, &found, err) < 0)
        return -1;
    int rc = 0;
    if (found.kind == IMAGE_FILE_ROOTFS)
        rc = strv_add_unique(&scan->variants, found.variant, err);
    else if (found.kind == IMAGE_FILE_SOURCE)
        rc = add_source(scan, found.variant, err);
    image_entry_clear(&found);
    return rc;
}

static int find_variants_and_sources(struct images_scan *scan, struct shed_err *err)
{
    for (size_t i = 0; i < scan->entries.count; i++)
        if (scan_entry_names(scan, scan->entries.items[i], err) < 0)
            return -1;
    return 0;
}

static const char *sidecar_kind_name(enum image_file_kind kind)
{
    switch (kind) {
    case IMAGE_FILE_LOCK: return "lock";
    case IMAGE_FILE_SOURCE: return "source";
    case IMAGE_FILE_TMP: return "tmp";
    case IMAGE_FILE_KERNEL: return "kernel";
    case IMAGE_FILE_INITRD: return "initrd";
    default: return "other";
    }
}

/* vmlinux / initrd.img: the base image's kernel files under the names VM backends use. */
static int add_base_kernel_file(struct images_scan *scan, enum image_file_kind kind,
                                const char *path, struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    bool is_kernel = kind == IMAGE_FILE_BASE_KERNEL;
    bool found = false;
    if (df_measure_into(scan->ctx, path, is_kernel ? "kernel" : "initrd",
                        is_kernel ? &report->kernel : &report->initrd, &found, err) < 0)
        return -1;
    if (is_kernel)
        report->has_kernel = found;
    else
        report->has_initrd = found;
    return 0;
}

/* One file of images_dir that is not a variant rootfs. */
static int add_sidecar(struct images_scan *scan, const struct image_entry *found, const char *path,
                       struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    if (found->kind == IMAGE_FILE_BASE_KERNEL || found->kind == IMAGE_FILE_BASE_INITRD)
        return add_base_kernel_file(scan, found->kind, path, err);
    const char *kind = sidecar_kind_name(found->kind);
    struct df_image *image = find_image(report, found->variant);
    if (image != NULL)
        return df_measure_append(scan->ctx, path, kind, &image->other_files, err);
    /* A sidecar whose rootfs is absent. Kernel files of a removed variant are left to the
     * image cache (not a kind api.md lists as an orphan). */
    if (found->kind == IMAGE_FILE_LOCK || found->kind == IMAGE_FILE_SOURCE ||
        found->kind == IMAGE_FILE_TMP)
        return df_measure_append(scan->ctx, path, kind, &report->orphans, err);
    return 0;
}

static int scan_sidecar(struct images_scan *scan, const char *entry, struct shed_err *err)
{
    struct image_entry found;
    if (image_layout_classify(entry, &found, err) < 0)
        return -1;
    int rc = 0;
    if (found.kind != IMAGE_FILE_OTHER && found.kind != IMAGE_FILE_ROOTFS) {
        cleanup_free char *path = fs_path_join(scan->dir, entry);
        rc = path != NULL ? add_sidecar(scan, &found, path, err)
                          : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    image_entry_clear(&found);
    return rc;
}

static int scan_sidecars(struct images_scan *scan, struct shed_err *err)
{
    for (size_t i = 0; i < scan->entries.count; i++)
        if (scan_sidecar(scan, scan->entries.items[i], err) < 0)
            return -1;
    return 0;
}

/* ---- content-addressed rootfs store ---------------------------------------------------------- */

static bool is_variant_inode(const struct df_report *report, const struct df_file *file)
{
    for (size_t i = 0; i < report->image_count; i++) {
        const struct df_file *rootfs = &report->images[i].rootfs;
        if (rootfs->dev == file->dev && rootfs->ino == file->ino)
            return true;
    }
    return false;
}

/* The content-addressed rootfs at path is the one a .source names (digest + rootfs_size). */
static int named_by_source(const struct images_scan *scan, const char *path, bool *named,
                           struct shed_err *err)
{
    *named = false;
    for (size_t i = 0; !*named && i < scan->source_count; i++) {
        cleanup_free char *expected = image_layout_content_rootfs(
            scan->dir, scan->sources[i].digest, scan->sources[i].rootfs_size);
        if (expected == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        *named = strcmp(expected, path) == 0;
    }
    return 0;
}

/* The image of the first shed that pins path, when that image is in the report. */
static struct df_image *pinning_image(struct df_report *report, const char *path)
{
    for (size_t i = 0; i < report->lower_pin_count; i++)
        if (strcmp(report->lower_pins[i].path, path) == 0)
            return find_image(report, report->lower_pins[i].image);
    return NULL;
}

static int add_content_rootfs(struct images_scan *scan, const char *path, struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    struct df_file file;
    bool found = false, named = false;
    if (df_measure_into(scan->ctx, path, "blob", &file, &found, err) < 0)
        return -1;
    if (!found)
        return 0;
    if (named_by_source(scan, path, &named, err) < 0) {
        df_file_clear(&file);
        return -1;
    }
    bool variant = is_variant_inode(report, &file);
    bool pinned = df_lower_pinned(report, path, NULL, NULL);
    /* Content no variant links any more but an overlay shed still stands on (a re-pulled
     * tag's old content): counted once, under the shed's image. */
    struct df_image *image = pinned && !variant ? pinning_image(report, path) : NULL;
    if (image != NULL) {
        file.kind = "lower";
        return df_file_list_add(&image->other_files, &file, err);
    }
    bool referenced = named || variant || pinned;
    return df_file_list_add(referenced ? &report->blobs : &report->orphans, &file, err);
}

/* A content-addressed rootfs, or one of its sidecars (.lock, .tmp.<n>): those belong with
 * their rootfs while it exists. */
static int scan_content_entry(struct images_scan *scan, const struct strv *entries, const char *dir,
                              const char *entry, struct shed_err *err)
{
    enum image_content_kind kind;
    cleanup_free char *rootfs_entry = NULL;
    if (image_layout_classify_content(entry, &kind, &rootfs_entry, err) < 0)
        return -1;
    if (kind == IMAGE_CONTENT_OTHER)
        return 0;
    cleanup_free char *path = fs_path_join(dir, entry);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (kind == IMAGE_CONTENT_ROOTFS)
        return add_content_rootfs(scan, path, err);
    struct df_report *report = scan->ctx->report;
    bool present = strv_contains(entries, rootfs_entry);
    return df_measure_append(scan->ctx, path, kind == IMAGE_CONTENT_LOCK ? "lock" : "tmp",
                             present ? &report->blobs : &report->orphans, err);
}

static int scan_content_store(struct images_scan *scan, struct shed_err *err)
{
    cleanup_free char *dir = image_layout_content_dir(scan->dir);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct strv entries = STRV_INIT;
    int rc = fs_list_files(dir, &entries, err);
    for (size_t i = 0; rc == 0 && i < entries.count; i++)
        rc = scan_content_entry(scan, &entries, dir, entries.items[i], err);
    strv_free(&entries);
    return rc;
}

/* ---- OCI blob store: what the ref index and the .source digests reach ------------------------ */

struct blob_scan {
    struct images_scan *scan;
    struct oci_blob_set *reached;
    bool keep_all;                  /* reachability unknown: every blob counts as referenced */
    struct oci_blob_set **by_image; /* what each image of the report reaches (NULL: nothing) */
};

/* Each cached image's own blobs: what its .source digest reaches. */
static int image_blob_sets(struct blob_scan *blobs, const struct oci_store *store,
                           struct shed_err *err)
{
    const struct df_report *report = blobs->scan->ctx->report;
    blobs->by_image =
        calloc(report->image_count ? report->image_count : 1, sizeof *blobs->by_image);
    if (blobs->by_image == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < report->image_count; i++) {
        if (report->images[i].digest[0] == '\0')
            continue;
        if (oci_blob_set_new(&blobs->by_image[i], err) < 0 ||
            oci_blob_set_add_reachable(blobs->by_image[i], store, report->images[i].digest, err) <
                0)
            return -1;
    }
    return 0;
}

static void free_image_blob_sets(struct blob_scan *blobs)
{
    const struct df_report *report = blobs->scan->ctx->report;
    for (size_t i = 0; blobs->by_image != NULL && i < report->image_count; i++)
        oci_blob_set_free(blobs->by_image[i]);
    free(blobs->by_image);
}

/* The first image (report order) that reaches digest gets the blob; later ones that reach it
 * too share it. NULL when no image does. */
static struct df_image *owner_image(struct blob_scan *blobs, const char *digest)
{
    struct df_report *report = blobs->scan->ctx->report;
    struct df_image *owner = NULL;
    for (size_t i = 0; digest != NULL && i < report->image_count; i++) {
        if (blobs->by_image[i] == NULL || !oci_blob_set_has(blobs->by_image[i], digest))
            continue;
        if (owner == NULL)
            owner = &report->images[i];
        else if (report->images[i].shared_with == NULL)
            report->images[i].shared_with = owner->name;
    }
    return owner;
}

static int reachable_blobs(struct blob_scan *blobs, const struct oci_store *store,
                           struct shed_err *err)
{
    const struct images_scan *scan = blobs->scan;
    if (oci_blob_set_new(&blobs->reached, err) < 0 ||
        oci_blob_set_add_ref_index(blobs->reached, store, err) < 0)
        return -1;
    for (size_t i = 0; i < scan->source_count; i++)
        if (oci_blob_set_add_reachable(blobs->reached, store, scan->sources[i].digest, err) < 0)
            return -1;
    const char *unknown = oci_blob_set_unknown_reason(blobs->reached);
    if (unknown == NULL)
        return 0;
    blobs->keep_all = true;
    scan->ctx->report->blobs_unknown_reason = strdup(unknown);
    return scan->ctx->report->blobs_unknown_reason != NULL
               ? 0
               : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

static int add_blob_entry(const struct oci_blob_entry *entry, void *opaque, struct shed_err *err)
{
    struct blob_scan *blobs = opaque;
    struct df_scan_ctx *ctx = blobs->scan->ctx;
    if (entry->state == OCI_BLOB_PARTIAL) /* a download in progress or interrupted */
        return df_measure_append(ctx, entry->path, "tmp", &ctx->report->orphans, err);
    bool referenced = blobs->keep_all ||
                      (entry->digest != NULL && oci_blob_set_has(blobs->reached, entry->digest));
    struct df_image *owner = referenced ? owner_image(blobs, entry->digest) : NULL;
    struct df_file_list *list = owner != NULL ? &owner->other_files
                                : referenced  ? &ctx->report->blobs
                                              : &ctx->report->orphans;
    size_t before = list->count;
    if (df_measure_append(ctx, entry->path, "blob", list, err) < 0)
        return -1;
    if (list->count > before && entry->digest != NULL &&
        (list->items[before].digest = strdup(entry->digest)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

static int scan_blob_store(struct images_scan *scan, struct shed_err *err)
{
    struct oci_store *store = NULL;
    struct blob_scan blobs = {.scan = scan};
    int rc = oci_store_open_existing(scan->dir, &store, err);
    if (rc == 0)
        rc = reachable_blobs(&blobs, store, err);
    if (rc == 0)
        rc = image_blob_sets(&blobs, store, err);
    if (rc == 0)
        rc = oci_store_blob_foreach(store, add_blob_entry, &blobs, err);
    free_image_blob_sets(&blobs);
    oci_blob_set_free(blobs.reached);
    oci_store_close(store);
    return rc;
}

int df_scan_images(struct df_scan_ctx *ctx, struct shed_err *err)
{
    struct images_scan scan = {.ctx = ctx, .dir = ctx->config->images_dir};
    int rc = fs_list_files(scan.dir, &scan.entries, err);
    if (rc == 0)
        rc = find_variants_and_sources(&scan, err);
    if (rc == 0)
        rc = add_images(&scan, err);
    if (rc == 0)
        rc = scan_sidecars(&scan, err);
    if (rc == 0)
        rc = scan_content_store(&scan, err);
    if (rc == 0)
        rc = scan_blob_store(&scan, err);
    strv_free(&scan.entries);
    strv_free(&scan.variants);
    for (size_t i = 0; i < scan.source_count; i++)
        image_source_clear(&scan.sources[i]);
    free(scan.sources);
    return rc;
}
