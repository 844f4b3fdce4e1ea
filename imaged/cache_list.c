/* Operations over all variants of the cache: list, remove, prune, and the collection of
 * content-addressed rootfs files nothing links to any more. File names come from layout.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "cache_internal.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "layout.h"

int unlink_if_present(const char *path, struct shed_err *err)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", path);
    return 0;
}

/* ---- stale temporary files -------------------------------------------------------------- */

static int is_stale_tmp_of(const char *entry, const char *name, bool *stale, struct shed_err *err)
{
    struct image_entry found;
    if (image_layout_classify(entry, &found, err) < 0)
        return -1;
    *stale = found.kind == IMAGE_FILE_TMP && strcmp(found.variant, name) == 0;
    image_entry_clear(&found);
    return 0;
}

int remove_stale_tmp_files(const char *images_dir, const char *name, unsigned *removed,
                           struct shed_err *err)
{
    *removed = 0;
    cleanup_closedir DIR *dir = opendir(images_dir);
    if (dir == NULL)
        return errno == ENOENT
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", images_dir);
    int ret = 0;
    struct dirent *entry;
    while ((ret = fs_dir_next(dir, images_dir, &entry, err)) > 0) {
        bool stale = false;
        if ((ret = is_stale_tmp_of(entry->d_name, name, &stale, err)) < 0)
            break;
        if (!stale)
            continue;
        cleanup_free char *path = fs_path_join(images_dir, entry->d_name);
        if (path == NULL) {
            ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            break;
        }
        if ((ret = unlink_if_present(path, err)) < 0)
            break;
        (*removed)++;
    }
    return ret;
}

/* ---- scanning images_dir ------------------------------------------------------------------ */

static bool name_in_list(const char *name, const char *const *list)
{
    for (; list != NULL && *list != NULL; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

/* ---- image objects ------------------------------------------------------------------------ */

static void image_info_clear(struct image_info *info)
{
    free(info->name);
    free(info->path);
    free(info->docker_ref);
    free(info->digest);
    free(info->shared_with);
    memset(info, 0, sizeof *info);
}

void image_info_list_free(struct image_info_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        image_info_clear(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static const char *source_name(const struct image_info *info)
{
    return info->from_config ? "config" : info->imported ? "imported" : "discovered";
}

json_t *image_info_to_json(const struct image_info *info)
{
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:I, s:I, s:I}", "name", info->name, "path",
                  info->path, "docker_ref", info->docker_ref, "digest", info->digest, "size_bytes",
                  (json_int_t)info->size_bytes, "source", source_name(info), "cached", info->cached,
                  "physical_bytes", (json_int_t)info->physical_bytes, "disk_bytes",
                  (json_int_t)info->disk_bytes, "logical_bytes", (json_int_t)info->logical_bytes);
    bool base = obj != NULL && strcmp(info->name, SHED_BASE_IMAGE_NAME) == 0;
    if ((base && json_object_set_new(obj, "is_base", json_true()) < 0) ||
        (obj != NULL && info->shared_with != NULL &&
         json_object_set_new(obj, "shared_with", json_string(info->shared_with)) < 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static struct image_info *image_info_list_add(struct image_info_list *list, struct shed_err *err)
{
    struct image_info *grown = realloc(list->items, (list->count + 1) * sizeof *grown);
    if (grown == NULL) {
        shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        return NULL;
    }
    list->items = grown;
    struct image_info *info = &list->items[list->count++];
    memset(info, 0, sizeof *info);
    return info;
}

static int set_info_strings(struct image_info *info, const char *name, const char *path,
                            const char *docker_ref, const char *digest, struct shed_err *err)
{
    info->name = strdup(name);
    info->path = strdup(path);
    info->docker_ref = strdup(docker_ref);
    info->digest = strdup(digest);
    if (!info->name || !info->path || !info->docker_ref || !info->digest)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

/* Describes the cached files of name in images_dir. config_ref: the configured registry ref,
 * or NULL (then the ref comes from .source). */
static int describe_cached(const char *images_dir, const char *name, const char *config_ref,
                           struct image_info *info, struct shed_err *err)
{
    struct image_variant_paths paths;
    if (image_layout_variant_paths(images_dir, name, &paths, err) < 0)
        return -1;
    struct image_source record;
    int ret = image_source_read(images_dir, name, &record, err);
    struct stat st;
    bool cached = ret == 0 && stat(paths.rootfs, &st) == 0 && S_ISREG(st.st_mode);
    if (ret == 0) {
        const char *ref = config_ref != NULL ? config_ref : (record.present ? record.ref : "");
        ret = set_info_strings(info, name, cached ? paths.rootfs : "", ref,
                               cached && record.present ? record.digest : "", err);
    }
    info->cached = cached;
    info->imported = record.present && record.imported;
    info->size_bytes = cached ? (uint64_t)st.st_size : 0;
    image_source_clear(&record);
    image_variant_paths_free(&paths);
    return ret;
}

/* A variant configured as a local ext4 path: the file itself is the image. */
static int describe_local(const struct shed_config_image *image, struct image_info *info,
                          struct shed_err *err)
{
    struct stat st;
    bool cached = stat(image->ref, &st) == 0 && S_ISREG(st.st_mode);
    info->cached = cached;
    info->size_bytes = cached ? (uint64_t)st.st_size : 0;
    return set_info_strings(info, image->name, cached ? image->ref : "", "", "", err);
}

static int describe_configured(const struct shed_config *config,
                               const struct shed_config_image *image, struct image_info_list *list,
                               struct shed_err *err)
{
    struct image_info *info = image_info_list_add(list, err);
    if (info == NULL)
        return -1;
    info->from_config = true;
    if (image->is_path)
        return describe_local(image, info, err);
    return describe_cached(config->images_dir, image->name, image->ref, info, err);
}

int image_cache_list(const struct shed_config *config, struct image_info_list *list,
                     struct shed_err *err)
{
    memset(list, 0, sizeof *list);
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < config->image_count; i++)
        ret = describe_configured(config, &config->images[i], list, err);
    /* The base image is a variant like the others (df and prune see it so too). */
    if (ret == 0 && config->base_image != NULL) {
        const struct shed_config_image base = {.name = SHED_BASE_IMAGE_NAME,
                                               .ref = config->base_image,
                                               .is_path = config->base_image[0] == '/'};
        ret = describe_configured(config, &base, list, err);
    }
    char **names = NULL;
    if (ret == 0)
        ret = image_layout_cached_variants(config->images_dir, &names, err);
    for (char **name = names; ret == 0 && name != NULL && *name != NULL; name++) {
        if ((strcmp(*name, SHED_BASE_IMAGE_NAME) == 0 && config->base_image != NULL) ||
            shed_config_find_image(config, *name) != NULL)
            continue;
        struct image_info *info = image_info_list_add(list, err);
        ret = info != NULL ? describe_cached(config->images_dir, *name, NULL, info, err) : -1;
    }
    image_names_free(names);
    if (ret < 0)
        image_info_list_free(list);
    return ret;
}

/* ---- removal ----------------------------------------------------------------------------- */

/* Deletes a variant's files except its .lock; call with the lock held. The rootfs goes
 * first: a .source without its rootfs is an orphan that `system prune` recognises. */
static int delete_variant_files(const char *images_dir, const char *name, struct shed_err *err)
{
    struct image_variant_paths paths;
    if (image_layout_variant_paths(images_dir, name, &paths, err) < 0)
        return -1;
    unsigned removed = 0;
    int ret = unlink_if_present(paths.rootfs, err);
    if (ret == 0)
        ret = unlink_if_present(paths.source, err);
    if (ret == 0)
        ret = unlink_if_present(paths.kernel, err);
    if (ret == 0)
        ret = unlink_if_present(paths.initrd, err);
    if (ret == 0)
        ret = remove_stale_tmp_files(images_dir, name, &removed, err);
    if (ret == 0 && paths.base_kernel != NULL &&
        (ret = unlink_if_present(paths.base_kernel, err)) == 0)
        ret = unlink_if_present(paths.base_initrd, err);
    if (ret == 0)
        ret = fs_fsync_dir(images_dir, err);
    image_variant_paths_free(&paths);
    return ret;
}

/* Takes the variant's lock without waiting: *fd = -1 when another process holds it. */
static int try_lock_variant(const char *images_dir, const char *name, int *fd, struct shed_err *err)
{
    struct image_variant_paths paths;
    if (image_layout_variant_paths(images_dir, name, &paths, err) < 0)
        return -1;
    int ret = fs_lock_file(paths.lock, false, fd, err);
    image_variant_paths_free(&paths);
    return ret;
}

/* Whether pins keeps path; "cannot tell" keeps it as well. */
static bool content_pinned(const struct image_content_pins *pins, const char *path)
{
    if (pins == NULL || pins->check == NULL)
        return false;
    bool pinned = true;
    struct shed_err ignored = {0};
    if (pins->check(path, &pinned, pins->ctx, &ignored) < 0)
        return true;
    return pinned;
}

int image_cache_remove_unlinked_content(const char *path, dev_t dev, ino_t ino,
                                        const struct image_content_pins *pins, struct shed_err *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    bool same = (dev == 0 && ino == 0) || (st.st_dev == dev && st.st_ino == ino);
    if (!same || !S_ISREG(st.st_mode) || st.st_nlink > 1)
        return 0;
    cleanup_free char *lock = image_layout_content_lock(path);
    if (lock == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int lock_fd = -1;
    if (fs_lock_file(lock, false, &lock_fd, err) < 0)
        return -1;
    if (lock_fd < 0)
        return 0; /* a conversion is about to link it again */
    /* Under the lock nobody can link or pin it meanwhile: check again, then remove. */
    if (lstat(path, &st) == 0 && st.st_nlink == 1 && !content_pinned(pins, path))
        return unlink_if_present(path, err);
    return 0;
}

static int collect_content_entry(const char *dir_path, const char *entry,
                                 const struct image_content_pins *pins, struct shed_err *err)
{
    enum image_content_kind kind;
    cleanup_free char *base = NULL;
    if (image_layout_classify_content(entry, &kind, &base, err) < 0)
        return -1;
    if (kind != IMAGE_CONTENT_ROOTFS)
        return 0;
    cleanup_free char *path = fs_path_join(dir_path, entry);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return image_cache_remove_unlinked_content(path, 0, 0, pins, err);
}

/* Deletes content-addressed rootfs files that no variant links to and pins does not keep. */
static int collect_unlinked_content(const char *images_dir, const struct image_content_pins *pins,
                                    struct shed_err *err)
{
    cleanup_free char *dir_path = image_layout_content_dir(images_dir);
    if (dir_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_closedir DIR *dir = opendir(dir_path);
    if (dir == NULL)
        return errno == ENOENT ? 0
                               : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", dir_path);
    int ret = 0;
    struct dirent *entry;
    while ((ret = fs_dir_next(dir, dir_path, &entry, err)) > 0)
        if ((ret = collect_content_entry(dir_path, entry->d_name, pins, err)) < 0)
            break;
    return ret;
}

static int check_removable(const struct shed_config *config, const char *name,
                           const char *const *in_use, struct shed_err *err)
{
    bool is_base = strcmp(name, SHED_BASE_IMAGE_NAME) == 0;
    if (!is_base && !shed_image_name_is_valid(name))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid image name \"%s\"", name);
    if (is_base && config->base_image != NULL)
        return shed_errf(err, SHED_E_IMAGE_IN_USE,
                         "image \"%s\" is the configured base_image; change server.yaml first",
                         name);
    if (!is_base && shed_config_find_image(config, name) != NULL)
        return shed_errf(err, SHED_E_IMAGE_IN_USE,
                         "image \"%s\" is in the config (images.%s); remove it from server.yaml "
                         "first",
                         name, name);
    if (name_in_list(name, in_use))
        return shed_errf(err, SHED_E_IMAGE_IN_USE, "image \"%s\" is used by a shed", name);
    return 0;
}

int image_cache_remove(const struct shed_config *config, const char *name,
                       const char *const *in_use, const struct image_content_pins *pins,
                       struct image_reclaimed *reclaimed, struct shed_err *err)
{
    struct image_reclaimed ignored;
    if (reclaimed == NULL)
        reclaimed = &ignored;
    memset(reclaimed, 0, sizeof *reclaimed);
    if (check_removable(config, name, in_use, err) < 0)
        return -1;
    cleanup_free char *rootfs = image_layout_variant_rootfs(config->images_dir, name);
    if (rootfs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    bool cached = fs_exists(rootfs);
    if (!cached)
        return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "image \"%s\" is not cached in %s", name,
                         config->images_dir);
    int lock_fd = -1;
    if (try_lock_variant(config->images_dir, name, &lock_fd, err) < 0)
        return -1;
    if (lock_fd < 0)
        return shed_errf(err, SHED_E_IMAGE_IN_USE,
                         "image \"%s\" is being pulled or converted right now", name);
    /* Decided while the variant's .source still says what it reaches. */
    const char *gone[] = {name, NULL};
    struct image_reclaim *reclaim = NULL;
    int rc = image_reclaim_new(config, gone, &reclaim, err);
    if (rc == 0)
        rc = delete_variant_files(config->images_dir, name, err);
    close(lock_fd);
    if (rc == 0)
        rc = collect_unlinked_content(config->images_dir, pins, err);
    if (rc == 0)
        rc = image_reclaim_apply(config, reclaim, NULL, reclaimed, err);
    image_reclaim_free(reclaim);
    return rc;
}

/* ---- pruning ------------------------------------------------------------------------------ */

/* Kept when a shed uses it, the config names it and its .source matches the config, or it
 * was imported (and the config does not name it for something else). */
static int is_referenced(const struct shed_config *config, const char *name,
                         const char *const *in_use, bool *referenced, struct shed_err *err)
{
    *referenced = name_in_list(name, in_use);
    const char *ref = shed_config_image_ref(config, name);
    if (*referenced || (ref != NULL && ref[0] == '/'))
        return 0;
    struct image_source record;
    int ret = image_source_read(config->images_dir, name, &record, err);
    if (ret == 0 && ref != NULL)
        *referenced = image_source_matches(&record, ref, config->rootfs_size);
    else if (ret == 0)
        *referenced = record.present && record.imported;
    image_source_clear(&record);
    return ret;
}

int image_cache_prune_variant(const struct shed_config *config, const char *name,
                              const char *const *in_use, bool remove,
                              enum image_prune_decision *decision, struct shed_err *err)
{
    *decision = IMAGE_PRUNE_KEEP;
    bool referenced = false;
    if (is_referenced(config, name, in_use, &referenced, err) < 0)
        return -1;
    if (referenced)
        return 0;
    cleanup_close int lock_fd = -1;
    if (try_lock_variant(config->images_dir, name, &lock_fd, err) < 0)
        return -1;
    *decision = lock_fd < 0 ? IMAGE_PRUNE_LOCKED : IMAGE_PRUNE_REMOVE;
    if (*decision == IMAGE_PRUNE_REMOVE && remove)
        return delete_variant_files(config->images_dir, name, err);
    return 0;
}

/* ---- the content a variant is ------------------------------------------------------------ */

void image_content_ref_clear(struct image_content_ref *ref)
{
    free(ref->path);
    memset(ref, 0, sizeof *ref);
}

static bool same_regular_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return lstat(a, &sa) == 0 && lstat(b, &sb) == 0 && S_ISREG(sa.st_mode) &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int image_cache_variant_content(const char *images_dir, const char *name,
                                struct image_content_ref *ref, struct shed_err *err)
{
    memset(ref, 0, sizeof *ref);
    struct image_source record;
    if (image_source_read(images_dir, name, &record, err) < 0)
        return -1;
    int ret = 0;
    if (record.present && record.rootfs_size > 0) {
        cleanup_free char *variant = image_layout_variant_rootfs(images_dir, name);
        char *content = image_layout_content_rootfs(images_dir, record.digest, record.rootfs_size);
        if (variant == NULL || content == NULL) {
            free(content);
            ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        } else if (same_regular_file(variant, content)) {
            ref->found = true;
            snprintf(ref->digest, sizeof ref->digest, "%s", record.digest);
            ref->size = record.rootfs_size;
            ref->path = content;
        } else {
            free(content);
        }
    }
    image_source_clear(&record);
    return ret;
}
