/* The cache's files and records (paths, .source, stale temp files, the content store) and
 * the operations over all variants: list, remove, prune. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_internal.h"
#include "common/cleanup.h"
#include "common/fsutil.h"

#define SOURCE_MAX_SIZE (64u << 10)

/* ---- paths ---------------------------------------------------------------------------- */

void variant_paths_free(struct variant_paths *paths)
{
    free(paths->rootfs);
    free(paths->lock);
    free(paths->source);
    free(paths->tmp);
    free(paths->kernel);
    free(paths->initrd);
    memset(paths, 0, sizeof *paths);
}

int variant_paths_init(const char *images_dir, const char *name, struct variant_paths *paths,
                       struct shed_err *err)
{
    const char *sep = images_dir[0] != '\0' && images_dir[strlen(images_dir) - 1] == '/' ? "" : "/";
    paths->rootfs = str_printf("%s%s%s" ROOTFS_SUFFIX, images_dir, sep, name);
    paths->lock = str_printf("%s%s%s" ROOTFS_SUFFIX ".lock", images_dir, sep, name);
    paths->source = str_printf("%s%s%s" ROOTFS_SUFFIX ".source", images_dir, sep, name);
    paths->tmp = str_printf("%s%s%s" ROOTFS_SUFFIX ".tmp", images_dir, sep, name);
    paths->kernel = str_printf("%s%s%s-vmlinux", images_dir, sep, name);
    paths->initrd = str_printf("%s%s%s-initrd.img", images_dir, sep, name);
    if (!paths->rootfs || !paths->lock || !paths->source || !paths->tmp || !paths->kernel ||
        !paths->initrd) {
        variant_paths_free(paths);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

char *content_dir_path(const char *images_dir)
{
    return fs_path_join(images_dir, "rootfs/sha256");
}

char *content_rootfs_path(const char *images_dir, const char *digest, uint64_t rootfs_size)
{
    const char *hex = strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest;
    cleanup_free char *dir = content_dir_path(images_dir);
    if (dir == NULL)
        return NULL;
    return str_printf("%s/%s-%llu.ext4", dir, hex, (unsigned long long)rootfs_size);
}

int unlink_if_present(const char *path, struct shed_err *err)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", path);
    return 0;
}

/* ---- .source ---------------------------------------------------------------------------- */

void source_record_free(struct source_record *record)
{
    free(record->ref);
    memset(record, 0, sizeof *record);
}

int source_read(const char *path, struct source_record *record, struct shed_err *err)
{
    memset(record, 0, sizeof *record);
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, &text, &len, SOURCE_MAX_SIZE, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1;
    json_t *root = json_loadb(text, len, 0, NULL);
    const char *ref = json_string_value(json_object_get(root, "ref"));
    const char *digest = json_string_value(json_object_get(root, "digest"));
    const char *created_at = json_string_value(json_object_get(root, "created_at"));
    json_t *size = json_object_get(root, "rootfs_size");
    /* A record we cannot read makes the cache stale, which a rebuild repairs. */
    if (ref != NULL && digest != NULL && digest_is_valid(digest)) {
        record->ref = strdup(ref);
        if (record->ref == NULL) {
            json_decref(root);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
        snprintf(record->digest, sizeof record->digest, "%s", digest);
        snprintf(record->created_at, sizeof record->created_at, "%s",
                 created_at != NULL ? created_at : "");
        record->rootfs_size = json_is_integer(size) ? (uint64_t)json_integer_value(size) : 0;
        record->present = true;
    }
    json_decref(root);
    return 0;
}

int source_write(const char *path, const char *ref, const char *digest, uint64_t rootfs_size,
                 struct shed_err *err)
{
    char created_at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created_at, sizeof created_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *root = json_pack("{s:s, s:s, s:I, s:s}", "ref", ref, "digest", digest, "rootfs_size",
                             (json_int_t)rootfs_size, "created_at", created_at);
    if (root == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *line = str_printf("%s\n", text);
    free(text);
    if (line == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return fs_write_file_atomic(path, line, strlen(line), 0644, err);
}

bool source_matches_config(const struct source_record *record, const char *ref,
                           uint64_t rootfs_size)
{
    return record->present && strcmp(record->ref, ref) == 0 && record->rootfs_size == rootfs_size;
}

/* ---- stale temporary files -------------------------------------------------------------- */

static bool all_digits(const char *text)
{
    if (*text == '\0')
        return false;
    for (; *text; text++)
        if (!isdigit((unsigned char)*text))
            return false;
    return true;
}

/* <base>.tmp (the rootfs only) or <base>.tmp.<digits> for one of the variant's files. */
static bool is_stale_tmp_of(const char *entry, const char *name)
{
    static const char *const suffixes[] = {ROOTFS_SUFFIX, ROOTFS_SUFFIX ".source", "-vmlinux",
                                           "-initrd.img"};
    size_t name_len = strlen(name);
    if (strncmp(entry, name, name_len) != 0)
        return false;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t len = strlen(suffixes[i]);
        if (strncmp(entry + name_len, suffixes[i], len) != 0)
            continue;
        const char *rest = entry + name_len + len;
        if (strncmp(rest, ".tmp", 4) != 0)
            continue;
        rest += 4;
        if ((i == 0 && *rest == '\0') || (*rest == '.' && all_digits(rest + 1)))
            return true;
    }
    return false;
}

int remove_stale_tmp_files(const char *images_dir, const char *name, unsigned *removed,
                           struct shed_err *err)
{
    *removed = 0;
    DIR *dir = opendir(images_dir);
    if (dir == NULL)
        return errno == ENOENT
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", images_dir);
    int ret = 0;
    struct dirent *entry;
    while ((ret = fs_dir_next(dir, images_dir, &entry, err)) > 0) {
        if (!is_stale_tmp_of(entry->d_name, name))
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
    closedir(dir);
    return ret;
}

/* ---- scanning images_dir ------------------------------------------------------------------ */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of every regular <name>-rootfs.ext4 in images_dir, sorted; NULL-terminated. */
static int cached_names(const char *images_dir, char ***names_out, struct shed_err *err)
{
    size_t count = 0, capacity = 16;
    char **names = calloc(capacity, sizeof *names);
    if (names == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    *names_out = names;
    DIR *dir = opendir(images_dir);
    if (dir == NULL)
        return errno == ENOENT
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", images_dir);
    int ret = 0;
    size_t suffix_len = strlen(ROOTFS_SUFFIX);
    struct dirent *entry;
    while ((ret = fs_dir_next(dir, images_dir, &entry, err)) > 0) {
        size_t len = strlen(entry->d_name);
        if (len <= suffix_len || strcmp(entry->d_name + len - suffix_len, ROOTFS_SUFFIX) != 0)
            continue;
        if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN)
            continue;
        if (count + 2 > capacity) {
            char **grown = realloc(names, capacity * 2 * sizeof *grown);
            if (grown == NULL) {
                ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
                break;
            }
            names = *names_out = grown;
            capacity *= 2;
        }
        names[count] = strndup(entry->d_name, len - suffix_len);
        if (names[count] == NULL) {
            ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            break;
        }
        names[++count] = NULL;
    }
    closedir(dir);
    qsort(names, count, sizeof *names, compare_names);
    return ret;
}

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
    struct variant_paths paths;
    if (variant_paths_init(images_dir, name, &paths, err) < 0)
        return -1;
    struct source_record record;
    int ret = source_read(paths.source, &record, err);
    struct stat st;
    bool cached = ret == 0 && stat(paths.rootfs, &st) == 0 && S_ISREG(st.st_mode);
    if (ret == 0) {
        const char *ref = config_ref != NULL ? config_ref : (record.present ? record.ref : "");
        ret = set_info_strings(info, name, cached ? paths.rootfs : "", ref,
                               cached && record.present ? record.digest : "", err);
    }
    info->cached = cached;
    info->size_bytes = cached ? (uint64_t)st.st_size : 0;
    source_record_free(&record);
    variant_paths_free(&paths);
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

int image_cache_list(const struct shed_config *config, struct image_info_list *list,
                     struct shed_err *err)
{
    memset(list, 0, sizeof *list);
    int ret = 0;
    for (size_t i = 0; ret == 0 && i < config->image_count; i++) {
        const struct shed_config_image *image = &config->images[i];
        struct image_info *info = image_info_list_add(list, err);
        if (info == NULL)
            ret = -1;
        else if (image->is_path)
            ret = describe_local(image, info, err);
        else
            ret = describe_cached(config->images_dir, image->name, image->ref, info, err);
        if (info != NULL)
            info->from_config = true;
    }
    char **names = NULL;
    if (ret == 0)
        ret = cached_names(config->images_dir, &names, err);
    for (char **name = names; ret == 0 && name != NULL && *name != NULL; name++) {
        if (strcmp(*name, SHED_BASE_IMAGE_NAME) == 0 ||
            shed_config_find_image(config, *name) != NULL)
            continue;
        struct image_info *info = image_info_list_add(list, err);
        ret = info != NULL ? describe_cached(config->images_dir, *name, NULL, info, err) : -1;
    }
    for (char **name = names; name != NULL && *name != NULL; name++)
        free(*name);
    free(names);
    if (ret < 0)
        image_info_list_free(list);
    return ret;
}

/* ---- removal ----------------------------------------------------------------------------- */

/* Deletes a variant's files except its .lock; call with the lock held. The rootfs goes
 * first: a .source without its rootfs is an orphan that `system prune` recognises. */
static int delete_variant_files(const char *images_dir, const char *name, struct shed_err *err)
{
    struct variant_paths paths;
    if (variant_paths_init(images_dir, name, &paths, err) < 0)
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
    if (ret == 0 && strcmp(name, SHED_BASE_IMAGE_NAME) == 0) {
        cleanup_free char *kernel = fs_path_join(images_dir, "vmlinux");
        cleanup_free char *initrd = fs_path_join(images_dir, "initrd.img");
        if (kernel == NULL || initrd == NULL)
            ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        else if ((ret = unlink_if_present(kernel, err)) == 0)
            ret = unlink_if_present(initrd, err);
    }
    if (ret == 0)
        ret = fs_fsync_dir(images_dir, err);
    variant_paths_free(&paths);
    return ret;
}

/* Takes the variant's lock without waiting: *fd = -1 when another process holds it. */
static int try_lock_variant(const char *images_dir, const char *name, int *fd, struct shed_err *err)
{
    struct variant_paths paths;
    if (variant_paths_init(images_dir, name, &paths, err) < 0)
        return -1;
    int ret = fs_lock_file(paths.lock, false, fd, err);
    variant_paths_free(&paths);
    return ret;
}

/* Deletes content-addressed rootfs files that no variant links to any more (link count 1),
 * skipping any whose lock is held (a conversion is about to link it). */
static int collect_unlinked_content(const char *images_dir, struct shed_err *err)
{
    cleanup_free char *dir_path = content_dir_path(images_dir);
    if (dir_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    DIR *dir = opendir(dir_path);
    if (dir == NULL)
        return errno == ENOENT ? 0
                               : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", dir_path);
    int ret = 0;
    struct dirent *entry;
    while (ret == 0 && (entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len < 5 || strcmp(entry->d_name + len - 5, ".ext4") != 0)
            continue;
        cleanup_free char *path = fs_path_join(dir_path, entry->d_name);
        cleanup_free char *lock = str_printf("%s.lock", path ? path : "");
        if (path == NULL || lock == NULL) {
            ret = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            break;
        }
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink > 1)
            continue;
        cleanup_close int lock_fd = -1;
        if ((ret = fs_lock_file(lock, false, &lock_fd, err)) < 0 || lock_fd < 0)
            continue;
        if (stat(path, &st) == 0 && st.st_nlink == 1)
            ret = unlink_if_present(path, err);
    }
    closedir(dir);
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
                       const char *const *in_use, struct shed_err *err)
{
    if (check_removable(config, name, in_use, err) < 0)
        return -1;
    struct variant_paths paths;
    if (variant_paths_init(config->images_dir, name, &paths, err) < 0)
        return -1;
    bool cached = fs_exists(paths.rootfs);
    variant_paths_free(&paths);
    if (!cached)
        return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "image \"%s\" is not cached in %s", name,
                         config->images_dir);
    cleanup_close int lock_fd = -1;
    if (try_lock_variant(config->images_dir, name, &lock_fd, err) < 0)
        return -1;
    if (lock_fd < 0)
        return shed_errf(err, SHED_E_IMAGE_IN_USE,
                         "image \"%s\" is being pulled or converted right now", name);
    if (delete_variant_files(config->images_dir, name, err) < 0)
        return -1;
    return collect_unlinked_content(config->images_dir, err);
}

/* ---- pruning ------------------------------------------------------------------------------ */

/* Kept when a shed uses it, or the config names it and its .source matches the config. */
static int is_referenced(const struct shed_config *config, const char *name,
                         const char *const *in_use, bool *referenced, struct shed_err *err)
{
    *referenced = name_in_list(name, in_use);
    const char *ref = shed_config_image_ref(config, name);
    if (*referenced || ref == NULL || ref[0] == '/')
        return 0;
    struct variant_paths paths;
    if (variant_paths_init(config->images_dir, name, &paths, err) < 0)
        return -1;
    struct source_record record;
    int ret = source_read(paths.source, &record, err);
    *referenced = ret == 0 && source_matches_config(&record, ref, config->rootfs_size);
    source_record_free(&record);
    variant_paths_free(&paths);
    return ret;
}

static int prune_one(const struct shed_config *config, const char *name, bool dry_run,
                     struct image_info_list *pruned, struct shed_err *err)
{
    cleanup_close int lock_fd = -1;
    if (try_lock_variant(config->images_dir, name, &lock_fd, err) < 0)
        return -1;
    if (lock_fd < 0)
        return 0; /* being converted: neither listed nor deleted, in dry runs too */
    struct image_info *info = image_info_list_add(pruned, err);
    if (info == NULL || describe_cached(config->images_dir, name, NULL, info, err) < 0)
        return -1;
    info->from_config = shed_config_image_ref(config, name) != NULL;
    return dry_run ? 0 : delete_variant_files(config->images_dir, name, err);
}

int image_cache_prune(const struct shed_config *config, const char *const *in_use, bool dry_run,
                      struct image_info_list *pruned, struct shed_err *err)
{
    memset(pruned, 0, sizeof *pruned);
    char **names = NULL;
    int ret = cached_names(config->images_dir, &names, err);
    for (char **name = names; ret == 0 && *name != NULL; name++) {
        bool referenced = false;
        ret = is_referenced(config, *name, in_use, &referenced, err);
        if (ret == 0 && !referenced)
            ret = prune_one(config, *name, dry_run, pruned, err);
    }
    for (char **name = names; name != NULL && *name != NULL; name++)
        free(*name);
    free(names);
    if (ret == 0 && !dry_run)
        ret = collect_unlinked_content(config->images_dir, err);
    if (ret < 0)
        image_info_list_free(pruned);
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
