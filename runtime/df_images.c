/* The images_dir half of df_scan: variants and their sidecars, the base kernel files, the
 * content-addressed rootfs store (rootfs/sha256) and the OCI blob store (blobs/sha256),
 * with orphans: sidecars whose rootfs is absent and store files nothing references. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/fsutil.h"
#include "df_private.h"

#define MANIFEST_MAX_BYTES (4u << 20)
#define SOURCE_MAX_BYTES (64u << 10)

/* ---- names ----------------------------------------------------------------------------- */

struct name_set {
    char **items;
    size_t count;
};

static void name_set_clear(struct name_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i]);
    free(set->items);
    memset(set, 0, sizeof *set);
}

static bool name_set_has(const struct name_set *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->items[i], name) == 0)
            return true;
    return false;
}

static int name_set_add(struct name_set *set, const char *name, struct shed_err *err)
{
    if (name_set_has(set, name))
        return 0;
    char **grown = realloc(set->items, (set->count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    set->items = grown;
    set->items[set->count] = strdup(name);
    if (set->items[set->count] == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    set->count++;
    return 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files (and anything not a directory) of dir, sorted. A missing dir is empty. */
static int list_dir(const char *path, struct name_set *names, struct name_set *subdirs,
                    struct shed_err *err)
{
    memset(names, 0, sizeof *names);
    if (subdirs != NULL)
        memset(subdirs, 0, sizeof *subdirs);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    int rc = 0;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, path, &entry, err)) > 0) {
        bool is_dir = entry->d_type == DT_DIR;
        if (entry->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISDIR(st.st_mode);
        }
        struct name_set *target = is_dir ? subdirs : names;
        if (target != NULL && (rc = name_set_add(target, entry->d_name, err)) < 0)
            break;
    }
    closedir(dir);
    if (names->count > 1)
        qsort(names->items, names->count, sizeof *names->items, compare_strings);
    return rc;
}

static bool all_digits(const char *text)
{
    if (*text == '\0')
        return false;
    for (; *text != '\0'; text++)
        if (!isdigit((unsigned char)*text))
            return false;
    return true;
}

/* ".tmp.<digits>" */
static bool is_numbered_tmp(const char *suffix)
{
    return strncmp(suffix, ".tmp.", 5) == 0 && all_digits(suffix + 5);
}

static const char *rootfs_suffix_kind(const char *suffix)
{
    if (*suffix == '\0')
        return "rootfs";
    if (strcmp(suffix, ".lock") == 0)
        return "lock";
    if (strcmp(suffix, ".source") == 0)
        return "source";
    if (strcmp(suffix, ".tmp") == 0 || is_numbered_tmp(suffix))
        return "tmp";
    if (strncmp(suffix, ".source", 7) == 0 && is_numbered_tmp(suffix + 7))
        return "tmp";
    return NULL;
}

static int set_name(const char *entry, size_t len, char **name, struct shed_err *err)
{
    *name = strndup(entry, len);
    return *name != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

int df_classify_variant_entry(const char *entry, char **name, const char **kind,
                              struct shed_err *err)
{
    *name = NULL;
    *kind = NULL;
    for (const char *at = strstr(entry, DF_ROOTFS_SUFFIX); at != NULL;
         at = strstr(at + 1, DF_ROOTFS_SUFFIX)) {
        const char *found = rootfs_suffix_kind(at + strlen(DF_ROOTFS_SUFFIX));
        if (found != NULL && at > entry) {
            *kind = found;
            return set_name(entry, (size_t)(at - entry), name, err);
        }
    }
    static const struct {
        const char *suffix, *kind;
    } kernel_files[] = {{"-vmlinux", "kernel"}, {"-initrd.img", "initrd"}};
    for (size_t i = 0; i < 2; i++) {
        const char *at = strstr(entry, kernel_files[i].suffix);
        for (; at != NULL; at = strstr(at + 1, kernel_files[i].suffix)) {
            const char *rest = at + strlen(kernel_files[i].suffix);
            if (at == entry || (*rest != '\0' && !is_numbered_tmp(rest)))
                continue;
            *kind = *rest == '\0' ? kernel_files[i].kind : "tmp";
            return set_name(entry, (size_t)(at - entry), name, err);
        }
    }
    return 0;
}

/* ---- variants ------------------------------------------------------------------------------ */

struct source_digest {
    char digest[DIGEST_STRING_LEN + 1];
    uint64_t rootfs_size;
};

struct images_scan {
    struct df_scan_ctx *ctx;
    const char *dir;
    struct name_set entries;  /* files of images_dir */
    struct name_set variants; /* names with a <name>-rootfs.ext4 */
    struct source_digest *sources;
    size_t source_count;
};

static struct df_image *find_image(struct df_report *report, const char *name)
{
    for (size_t i = 0; i < report->image_count; i++)
        if (strcmp(report->images[i].name, name) == 0)
            return &report->images[i];
    return NULL;
}

/* Reads ref, digest and rootfs_size of a .source record (api: imaged/cache.h). A record that
 * does not parse yields nothing. */
static int read_source(const char *path, char **ref, struct source_digest *out, bool *valid,
                       struct shed_err *err)
{
    *valid = false;
    if (ref != NULL)
        *ref = NULL;
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, &text, &len, SOURCE_MAX_BYTES, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1; /* unreadable: refuse to guess */
    json_t *root = json_loadb(text, len, 0, NULL);
    const char *ref_text = json_string_value(json_object_get(root, "ref"));
    const char *digest = json_string_value(json_object_get(root, "digest"));
    json_t *size = json_object_get(root, "rootfs_size");
    int rc = 0;
    if (digest != NULL && digest_is_valid(digest)) {
        snprintf(out->digest, sizeof out->digest, "%s", digest);
        out->rootfs_size = json_is_integer(size) ? (uint64_t)json_integer_value(size) : 0;
        *valid = true;
        if (ref != NULL && ref_text != NULL && (*ref = strdup(ref_text)) == NULL)
            rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    json_decref(root);
    return rc;
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

/* A cached variant; docker_ref from the config, else from its .source. */
static int add_cached_variant(struct images_scan *scan, const char *name, const char *config_ref,
                              struct shed_err *err)
{
    cleanup_free char *rootfs = str_printf("%s/%s" DF_ROOTFS_SUFFIX, scan->dir, name);
    cleanup_free char *source = str_printf("%s/%s" DF_ROOTFS_SUFFIX ".source", scan->dir, name);
    if (rootfs == NULL || source == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *source_ref = NULL;
    struct source_digest ignored;
    bool valid = false;
    if (config_ref == NULL && read_source(source, &source_ref, &ignored, &valid, err) < 0)
        return -1;
    return add_image(scan, name, rootfs, config_ref != NULL ? config_ref : source_ref, err);
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
        else if (name_set_has(&scan->variants, image->name))
            rc = add_cached_variant(scan, image->name, image->ref, err);
        if (rc < 0)
            return -1;
    }
    if (name_set_has(&scan->variants, SHED_BASE_IMAGE_NAME) &&
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

static int find_variants(struct images_scan *scan, struct shed_err *err)
{
    for (size_t i = 0; i < scan->entries.count; i++) {
        cleanup_free char *name = NULL;
        const char *kind = NULL;
        if (df_classify_variant_entry(scan->entries.items[i], &name, &kind, err) < 0)
            return -1;
        if (name != NULL && strcmp(kind, "rootfs") == 0 &&
            name_set_add(&scan->variants, name, err) < 0)
            return -1;
    }
    return 0;
}

/* Every .source digest, orphaned ones included: they keep their blobs referenced. */
static int collect_source_digests(struct images_scan *scan, struct shed_err *err)
{
    for (size_t i = 0; i < scan->entries.count; i++) {
        const char *entry = scan->entries.items[i];
        size_t len = strlen(entry);
        if (len < 7 || strcmp(entry + len - 7, ".source") != 0)
            continue;
        cleanup_free char *path = fs_path_join(scan->dir, entry);
        if (path == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        struct source_digest record;
        bool valid = false;
        if (read_source(path, NULL, &record, &valid, err) < 0)
            return -1;
        if (!valid)
            continue;
        struct source_digest *grown =
            realloc(scan->sources, (scan->source_count + 1) * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        scan->sources = grown;
        scan->sources[scan->source_count++] = record;
    }
    return 0;
}

/* One file of images_dir that is not a variant rootfs. */
static int classify_sidecar(struct images_scan *scan, const char *entry, const char *path,
                            struct shed_err *err)
{
    struct df_scan_ctx *ctx = scan->ctx;
    struct df_report *report = ctx->report;
    bool found = false;
    if (strcmp(entry, "vmlinux") == 0) {
        report->has_kernel = true;
        if (df_measure_into(ctx, path, "kernel", &report->kernel, &found, err) < 0)
            return -1;
        report->has_kernel = found;
        return 0;
    }
    if (strcmp(entry, "initrd.img") == 0) {
        if (df_measure_into(ctx, path, "initrd", &report->initrd, &found, err) < 0)
            return -1;
        report->has_initrd = found;
        return 0;
    }
    cleanup_free char *name = NULL;
    const char *kind = NULL;
    if ((strncmp(entry, "vmlinux", 7) == 0 && is_numbered_tmp(entry + 7)) ||
        (strncmp(entry, "initrd.img", 10) == 0 && is_numbered_tmp(entry + 10))) {
        kind = "tmp"; /* the base kernel being published */
        name = strdup(SHED_BASE_IMAGE_NAME);
        if (name == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    } else if (df_classify_variant_entry(entry, &name, &kind, err) < 0) {
        return -1;
    }
    if (name == NULL || strcmp(kind, "rootfs") == 0)
        return 0; /* not ours (or the rootfs, already listed) */
    struct df_image *image = find_image(report, name);
    if (image != NULL)
        return df_measure_append(ctx, path, kind, &image->other_files, err);
    /* A sidecar whose rootfs is absent. Kernel files of a removed variant are left to the
     * image cache (not a kind api.md lists as an orphan). */
    if (strcmp(kind, "lock") == 0 || strcmp(kind, "source") == 0 || strcmp(kind, "tmp") == 0)
        return df_measure_append(ctx, path, kind, &report->orphans, err);
    return 0;
}

static int scan_sidecars(struct images_scan *scan, struct shed_err *err)
{
    for (size_t i = 0; i < scan->entries.count; i++) {
        cleanup_free char *path = fs_path_join(scan->dir, scan->entries.items[i]);
        if (path == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        if (classify_sidecar(scan, scan->entries.items[i], path, err) < 0)
            return -1;
    }
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

/* "<hex>-<size>.ext4" is named by a .source (digest + rootfs_size). */
static bool named_by_source(const struct images_scan *scan, const char *entry)
{
    for (size_t i = 0; i < scan->source_count; i++) {
        char expected[128];
        snprintf(expected, sizeof expected, "%s-%llu.ext4", scan->sources[i].digest + 7,
                 (unsigned long long)scan->sources[i].rootfs_size);
        if (strcmp(expected, entry) == 0)
            return true;
    }
    return false;
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t len = strlen(text), suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(text + len - suffix_len, suffix) == 0;
}

static int scan_content_entry(struct images_scan *scan, const struct name_set *entries,
                              const char *dir, const char *entry, struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    cleanup_free char *path = fs_path_join(dir, entry);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (ends_with(entry, ".ext4")) {
        struct df_file file;
        bool found = false;
        if (df_measure_into(scan->ctx, path, "blob", &file, &found, err) < 0)
            return -1;
        if (!found)
            return 0;
        bool referenced = is_variant_inode(report, &file) || named_by_source(scan, entry);
        return df_file_list_add(referenced ? &report->blobs : &report->orphans, &file, err);
    }
    /* <hex>-<size>.ext4.lock and .ext4.tmp.<pid>: sidecars of that rootfs */
    const char *ext = strstr(entry, ".ext4.");
    if (ext == NULL)
        return 0;
    cleanup_free char *base = strndup(entry, (size_t)(ext - entry) + 5);
    if (base == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    const char *kind = strcmp(ext + 5, ".lock") == 0 ? "lock"
                       : is_numbered_tmp(ext + 5)    ? "tmp"
                                                     : NULL;
    if (kind == NULL)
        return 0;
    bool present = name_set_has(entries, base);
    return df_measure_append(scan->ctx, path, kind, present ? &report->blobs : &report->orphans,
                             err);
}

static int scan_content_store(struct images_scan *scan, struct shed_err *err)
{
    cleanup_free char *dir = fs_path_join(scan->dir, "rootfs/sha256");
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct name_set entries;
    int rc = list_dir(dir, &entries, NULL, err);
    for (size_t i = 0; rc == 0 && i < entries.count; i++)
        rc = scan_content_entry(scan, &entries, dir, entries.items[i], err);
    name_set_clear(&entries);
    return rc;
}

/* ---- OCI blob store: reachability from the ref index and .source digests ----------------------
 */

static int add_digest(struct name_set *set, const char *digest, struct shed_err *err)
{
    if (digest == NULL || !digest_is_valid(digest))
        return 0;
    return name_set_add(set, digest, err);
}

/* Adds what one manifest or index references; follows index entries (manifests) too. */
static int walk_manifest(const char *blobs_dir, const char *digest, struct name_set *reached,
                         unsigned depth, struct shed_err *err)
{
    if (depth > 4 || add_digest(reached, digest, err) < 0)
        return depth > 4 ? 0 : -1;
    cleanup_free char *path = str_printf("%s/%s", blobs_dir, digest + 7);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *text = NULL;
    size_t len = 0;
    struct shed_err ignored = {0};
    if (fs_read_file(path, &text, &len, MANIFEST_MAX_BYTES, &ignored) < 0)
        return 0; /* not in the store (or unreadable): nothing more is reachable from it */
    json_t *root = json_loadb(text, len, 0, NULL);
    int rc = add_digest(
        reached, json_string_value(json_object_get(json_object_get(root, "config"), "digest")),
        err);
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(root, "layers"), i, entry)
    {
        if (rc == 0)
            rc = add_digest(reached, json_string_value(json_object_get(entry, "digest")), err);
    }
    json_array_foreach(json_object_get(root, "manifests"), i, entry)
    {
        const char *child = json_string_value(json_object_get(entry, "digest"));
        if (rc == 0 && child != NULL && digest_is_valid(child))
            rc = walk_manifest(blobs_dir, child, reached, depth + 1, err);
    }
    json_decref(root);
    return rc;
}

/* Manifest digests of the ref index (<images_dir>/refs/<escaped ref>, one digest each). */
static int ref_index_roots(const char *images_dir, struct name_set *roots, struct shed_err *err)
{
    cleanup_free char *dir = fs_path_join(images_dir, "refs");
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct name_set entries;
    int rc = list_dir(dir, &entries, NULL, err);
    for (size_t i = 0; rc == 0 && i < entries.count; i++) {
        cleanup_free char *path = fs_path_join(dir, entries.items[i]);
        cleanup_free char *text = NULL;
        struct shed_err ignored = {0};
        if (path == NULL)
            rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        else if (fs_read_file(path, &text, NULL, 4096, &ignored) == 0) {
            text[strcspn(text, "\n")] = '\0';
            rc = add_digest(roots, text, err);
        }
    }
    name_set_clear(&entries);
    return rc;
}

static int reachable_blobs(struct images_scan *scan, const char *blobs_dir,
                           struct name_set *reached, struct shed_err *err)
{
    struct name_set roots = {0};
    int rc = ref_index_roots(scan->dir, &roots, err);
    for (size_t i = 0; rc == 0 && i < scan->source_count; i++)
        rc = add_digest(&roots, scan->sources[i].digest, err);
    for (size_t i = 0; rc == 0 && i < roots.count; i++)
        rc = walk_manifest(blobs_dir, roots.items[i], reached, 0, err);
    name_set_clear(&roots);
    return rc;
}

static int scan_blob_entry(struct images_scan *scan, const struct name_set *reached,
                           const char *blobs_dir, const char *entry, struct shed_err *err)
{
    struct df_report *report = scan->ctx->report;
    cleanup_free char *path = fs_path_join(blobs_dir, entry);
    cleanup_free char *digest = str_printf("sha256:%s", entry);
    if (path == NULL || digest == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (ends_with(entry, ".tmp")) /* a download in progress or interrupted */
        return df_measure_append(scan->ctx, path, "tmp", &report->orphans, err);
    bool referenced = name_set_has(reached, digest);
    return df_measure_append(scan->ctx, path, "blob",
                             referenced ? &report->blobs : &report->orphans, err);
}

static int scan_blob_store(struct images_scan *scan, struct shed_err *err)
{
    cleanup_free char *blobs_dir = fs_path_join(scan->dir, "blobs/sha256");
    if (blobs_dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct name_set entries, reached = {0};
    int rc = list_dir(blobs_dir, &entries, NULL, err);
    if (rc == 0 && entries.count > 0)
        rc = reachable_blobs(scan, blobs_dir, &reached, err);
    for (size_t i = 0; rc == 0 && i < entries.count; i++)
        rc = scan_blob_entry(scan, &reached, blobs_dir, entries.items[i], err);
    name_set_clear(&entries);
    name_set_clear(&reached);
    return rc;
}

int df_scan_images(struct df_scan_ctx *ctx, struct shed_err *err)
{
    struct images_scan scan = {.ctx = ctx, .dir = ctx->config->images_dir};
    int rc = list_dir(scan.dir, &scan.entries, NULL, err);
    if (rc == 0)
        rc = find_variants(&scan, err);
    if (rc == 0)
        rc = add_images(&scan, err);
    if (rc == 0)
        rc = collect_source_digests(&scan, err);
    if (rc == 0)
        rc = scan_sidecars(&scan, err);
    if (rc == 0)
        rc = scan_content_store(&scan, err);
    if (rc == 0)
        rc = scan_blob_store(&scan, err);
    name_set_clear(&scan.entries);
    name_set_clear(&scan.variants);
    free(scan.sources);
    return rc;
}
