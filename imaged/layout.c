/* The names of images_dir (see layout.h) and the .source record. */
#include "layout.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "common/timeutil.h"
#include "config/config.h"

#define ROOTFS_SUFFIX "-rootfs.ext4"
#define KERNEL_SUFFIX "-vmlinux"
#define INITRD_SUFFIX "-initrd.img"
#define BASE_KERNEL "vmlinux"
#define BASE_INITRD "initrd.img"
#define CONTENT_DIR "rootfs/sha256"
#define CONTENT_SUFFIX ".ext4"
#define LOCK_SUFFIX ".lock"
#define SOURCE_SUFFIX ".source"
#define SOURCE_MAX_SIZE (64u << 10)

/* ---- paths ---------------------------------------------------------------------------- */

void image_variant_paths_free(struct image_variant_paths *paths)
{
    free(paths->rootfs);
    free(paths->lock);
    free(paths->source);
    free(paths->tmp);
    free(paths->kernel);
    free(paths->initrd);
    free(paths->base_kernel);
    free(paths->base_initrd);
    memset(paths, 0, sizeof *paths);
}

char *image_layout_variant_rootfs(const char *images_dir, const char *name)
{
    cleanup_free char *file = str_printf("%s" ROOTFS_SUFFIX, name);
    return file != NULL ? fs_path_join(images_dir, file) : NULL;
}

static int base_kernel_paths(const char *images_dir, struct image_variant_paths *paths)
{
    paths->base_kernel = fs_path_join(images_dir, BASE_KERNEL);
    paths->base_initrd = fs_path_join(images_dir, BASE_INITRD);
    return paths->base_kernel != NULL && paths->base_initrd != NULL ? 0 : -1;
}

int image_layout_variant_paths(const char *images_dir, const char *name,
                               struct image_variant_paths *paths, struct shed_err *err)
{
    memset(paths, 0, sizeof *paths);
    paths->rootfs = image_layout_variant_rootfs(images_dir, name);
    if (paths->rootfs != NULL) {
        paths->lock = str_printf("%s" LOCK_SUFFIX, paths->rootfs);
        paths->source = str_printf("%s" SOURCE_SUFFIX, paths->rootfs);
        paths->tmp = image_layout_convert_tmp_path(paths->rootfs);
    }
    cleanup_free char *kernel = str_printf("%s" KERNEL_SUFFIX, name);
    cleanup_free char *initrd = str_printf("%s" INITRD_SUFFIX, name);
    if (kernel != NULL && initrd != NULL) {
        paths->kernel = fs_path_join(images_dir, kernel);
        paths->initrd = fs_path_join(images_dir, initrd);
    }
    bool ok = paths->lock && paths->source && paths->tmp && paths->kernel && paths->initrd;
    if (ok && strcmp(name, SHED_BASE_IMAGE_NAME) == 0)
        ok = base_kernel_paths(images_dir, paths) == 0;
    if (!ok) {
        image_variant_paths_free(paths);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

char *image_layout_content_dir(const char *images_dir)
{
    return fs_path_join(images_dir, CONTENT_DIR);
}

char *image_layout_content_rootfs(const char *images_dir, const char *digest, uint64_t rootfs_size)
{
    const char *hex = strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest;
    cleanup_free char *dir = image_layout_content_dir(images_dir);
    if (dir == NULL)
        return NULL;
    return str_printf("%s/%s-%llu" CONTENT_SUFFIX, dir, hex, (unsigned long long)rootfs_size);
}

char *image_layout_content_lock(const char *content_rootfs)
{
    return str_printf("%s" LOCK_SUFFIX, content_rootfs);
}

char *image_layout_convert_tmp_path(const char *out_path)
{
    return str_printf("%s.tmp", out_path);
}

/* The part of path after "<images_dir>/", or NULL when path is not below images_dir. */
static const char *below_images_dir(const char *images_dir, const char *path)
{
    cleanup_free char *prefix = fs_path_join(images_dir, "");
    if (prefix == NULL || strncmp(path, prefix, strlen(prefix)) != 0)
        return NULL;
    return path + strlen(prefix);
}

/* The entry name of path when it is directly in <images_dir>/rootfs/sha256, else NULL. */
static const char *content_entry_of(const char *images_dir, const char *path)
{
    const char *rest = below_images_dir(images_dir, path);
    if (rest == NULL || strncmp(rest, CONTENT_DIR "/", strlen(CONTENT_DIR) + 1) != 0)
        return NULL;
    rest += strlen(CONTENT_DIR) + 1;
    return strchr(rest, '/') == NULL ? rest : NULL;
}

/* ---- classification --------------------------------------------------------------------- */

static bool all_digits(const char *text)
{
    if (*text == '\0')
        return false;
    for (; *text != '\0'; text++)
        if (!isdigit((unsigned char)*text))
            return false;
    return true;
}

/* ".tmp.<digits>": the temporary name of an atomic write (common/fsutil.h keeps that shape
 * for fs_atomic_open and fs_link_atomic). */
static bool is_numbered_tmp(const char *suffix)
{
    return strncmp(suffix, ".tmp.", 5) == 0 && all_digits(suffix + 5);
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t len = strlen(text), suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(text + len - suffix_len, suffix) == 0;
}

/* What follows "<name>-rootfs.ext4" in one of the variant's files. */
static enum image_file_kind rootfs_family_kind(const char *suffix)
{
    if (*suffix == '\0')
        return IMAGE_FILE_ROOTFS;
    if (strcmp(suffix, LOCK_SUFFIX) == 0)
        return IMAGE_FILE_LOCK;
    if (strcmp(suffix, SOURCE_SUFFIX) == 0)
        return IMAGE_FILE_SOURCE;
    if (strcmp(suffix, ".tmp") == 0 || is_numbered_tmp(suffix))
        return IMAGE_FILE_TMP; /* the converter's output, or the rootfs link being replaced */
    if (strncmp(suffix, SOURCE_SUFFIX, strlen(SOURCE_SUFFIX)) == 0 &&
        is_numbered_tmp(suffix + strlen(SOURCE_SUFFIX)))
        return IMAGE_FILE_TMP;
    return IMAGE_FILE_OTHER;
}

/* What follows "<name>-vmlinux" or "<name>-initrd.img". */
static enum image_file_kind kernel_family_kind(const char *suffix, enum image_file_kind file)
{
    if (*suffix == '\0')
        return file;
    return is_numbered_tmp(suffix) ? IMAGE_FILE_TMP : IMAGE_FILE_OTHER;
}

/* Finds "<name><marker><suffix>" with a non-empty name and a suffix family_kind accepts;
 * *name_len is the name's length. */
static enum image_file_kind match_family(const char *entry, const char *marker,
                                         enum image_file_kind file, size_t *name_len)
{
    size_t marker_len = strlen(marker);
    for (const char *at = strstr(entry, marker); at != NULL; at = strstr(at + 1, marker)) {
        const char *suffix = at + marker_len;
        enum image_file_kind kind = file == IMAGE_FILE_ROOTFS ? rootfs_family_kind(suffix)
                                                              : kernel_family_kind(suffix, file);
        if (kind != IMAGE_FILE_OTHER && at > entry) {
            *name_len = (size_t)(at - entry);
            return kind;
        }
    }
    return IMAGE_FILE_OTHER;
}

/* vmlinux, initrd.img and their temporary files: the base image's. */
static enum image_file_kind base_kernel_kind(const char *entry)
{
    if (strcmp(entry, BASE_KERNEL) == 0)
        return IMAGE_FILE_BASE_KERNEL;
    if (strcmp(entry, BASE_INITRD) == 0)
        return IMAGE_FILE_BASE_INITRD;
    if ((strncmp(entry, BASE_KERNEL, strlen(BASE_KERNEL)) == 0 &&
         is_numbered_tmp(entry + strlen(BASE_KERNEL))) ||
        (strncmp(entry, BASE_INITRD, strlen(BASE_INITRD)) == 0 &&
         is_numbered_tmp(entry + strlen(BASE_INITRD))))
        return IMAGE_FILE_TMP;
    return IMAGE_FILE_OTHER;
}

void image_entry_clear(struct image_entry *entry)
{
    free(entry->variant);
    memset(entry, 0, sizeof *entry);
}

static int set_entry(struct image_entry *out, enum image_file_kind kind, const char *name,
                     size_t name_len, struct shed_err *err)
{
    out->variant = strndup(name, name_len);
    if (out->variant == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    out->kind = kind;
    return 0;
}

int image_layout_classify(const char *entry, struct image_entry *out, struct shed_err *err)
{
    memset(out, 0, sizeof *out);
    static const struct {
        const char *marker;
        enum image_file_kind file;
    } families[] = {{ROOTFS_SUFFIX, IMAGE_FILE_ROOTFS},
                    {KERNEL_SUFFIX, IMAGE_FILE_KERNEL},
                    {INITRD_SUFFIX, IMAGE_FILE_INITRD}};
    enum image_file_kind kind = base_kernel_kind(entry);
    if (kind != IMAGE_FILE_OTHER)
        return set_entry(out, kind, SHED_BASE_IMAGE_NAME, strlen(SHED_BASE_IMAGE_NAME), err);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        size_t name_len = 0;
        kind = match_family(entry, families[i].marker, families[i].file, &name_len);
        if (kind != IMAGE_FILE_OTHER)
            return set_entry(out, kind, entry, name_len, err);
    }
    return 0;
}

int image_layout_classify_content(const char *entry, enum image_content_kind *kind,
                                  char **rootfs_entry, struct shed_err *err)
{
    *kind = IMAGE_CONTENT_OTHER;
    *rootfs_entry = NULL;
    size_t base_len = 0;
    const char *tmp = strstr(entry, CONTENT_SUFFIX ".tmp.");
    if (ends_with(entry, CONTENT_SUFFIX)) {
        *kind = IMAGE_CONTENT_ROOTFS;
        base_len = strlen(entry);
    } else if (ends_with(entry, CONTENT_SUFFIX LOCK_SUFFIX)) {
        *kind = IMAGE_CONTENT_LOCK;
        base_len = strlen(entry) - strlen(LOCK_SUFFIX);
    } else if (tmp != NULL && is_numbered_tmp(tmp + strlen(CONTENT_SUFFIX))) {
        *kind = IMAGE_CONTENT_TMP;
        base_len = (size_t)(tmp - entry) + strlen(CONTENT_SUFFIX);
    } else {
        return 0;
    }
    *rootfs_entry = strndup(entry, base_len);
    return *rootfs_entry != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

bool image_layout_is_content_rootfs(const char *images_dir, const char *path)
{
    const char *entry = content_entry_of(images_dir, path);
    return entry != NULL && ends_with(entry, CONTENT_SUFFIX);
}

static int content_guard(const char *images_dir, const char *entry, char **rootfs, char **lock,
                         struct shed_err *err)
{
    enum image_content_kind kind;
    cleanup_free char *base = NULL;
    if (image_layout_classify_content(entry, &kind, &base, err) < 0)
        return -1;
    if (kind == IMAGE_CONTENT_OTHER)
        return 0;
    cleanup_free char *dir = image_layout_content_dir(images_dir);
    *rootfs = dir != NULL ? fs_path_join(dir, base) : NULL;
    *lock = *rootfs != NULL ? image_layout_content_lock(*rootfs) : NULL;
    return *lock != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

static int variant_guard(const char *images_dir, const char *entry, char **rootfs, char **lock,
                         struct shed_err *err)
{
    struct image_entry found;
    if (image_layout_classify(entry, &found, err) < 0)
        return -1;
    if (found.kind != IMAGE_FILE_OTHER) {
        *rootfs = image_layout_variant_rootfs(images_dir, found.variant);
        *lock = *rootfs != NULL ? str_printf("%s" LOCK_SUFFIX, *rootfs) : NULL;
    }
    bool failed = found.kind != IMAGE_FILE_OTHER && *lock == NULL;
    image_entry_clear(&found);
    return failed ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory") : 0;
}

int image_layout_guard(const char *images_dir, const char *path, char **rootfs, char **lock,
                       struct shed_err *err)
{
    *rootfs = *lock = NULL;
    const char *content = content_entry_of(images_dir, path);
    const char *rest = below_images_dir(images_dir, path);
    int rc = 0;
    if (content != NULL)
        rc = content_guard(images_dir, content, rootfs, lock, err);
    else if (rest != NULL && strchr(rest, '/') == NULL)
        rc = variant_guard(images_dir, rest, rootfs, lock, err);
    if (rc < 0) {
        free(*rootfs);
        free(*lock);
        *rootfs = *lock = NULL;
    }
    return rc;
}

/* ---- listings ---------------------------------------------------------------------------- */

void image_names_free(char **names)
{
    strv_free_items(names);
}

/* Appends <dir_path>/<name>. */
static int add_path(struct strv *list, const char *dir_path, const char *name, struct shed_err *err)
{
    cleanup_free char *path = fs_path_join(dir_path, name);
    return path != NULL ? strv_add(list, path, err)
                        : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

/* Hands the list out NULL-terminated, sorted when asked: an empty array when nothing was
 * added (callers walk it without a NULL check). */
static int finish_list(struct strv *list, bool sorted, char ***out, struct shed_err *err)
{
    if (sorted)
        strv_sort(list);
    *out = list->count > 0 ? strv_steal(list) : calloc(1, sizeof **out);
    return *out != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

/* Calls add(entry) for every entry of dir (a missing dir has none). */
static int for_each_entry(const char *path,
                          int (*add)(const struct dirent *entry, const char *dir_path,
                                     struct strv *list, struct shed_err *err),
                          struct strv *list, struct shed_err *err)
{
    cleanup_closedir DIR *dir = opendir(path);
    if (dir == NULL)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    int rc = 0;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, path, &entry, err)) > 0)
        if ((rc = add(entry, path, list, err)) < 0)
            break;
    return rc;
}

static int add_cached_variant(const struct dirent *entry, const char *dir_path, struct strv *list,
                              struct shed_err *err)
{
    (void)dir_path;
    if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN)
        return 0;
    struct image_entry found;
    if (image_layout_classify(entry->d_name, &found, err) < 0)
        return -1;
    int rc = 0;
    if (found.kind == IMAGE_FILE_ROOTFS)
        rc = strv_add(list, found.variant, err);
    image_entry_clear(&found);
    return rc;
}

int image_layout_cached_variants(const char *images_dir, char ***names, struct shed_err *err)
{
    *names = NULL;
    cleanup_strv struct strv list = STRV_INIT;
    if (for_each_entry(images_dir, add_cached_variant, &list, err) < 0)
        return -1;
    return finish_list(&list, true, names, err);
}

static int add_variant_lock(const struct dirent *entry, const char *dir_path, struct strv *list,
                            struct shed_err *err)
{
    struct image_entry found;
    if (image_layout_classify(entry->d_name, &found, err) < 0)
        return -1;
    bool is_lock = found.kind == IMAGE_FILE_LOCK;
    image_entry_clear(&found);
    return is_lock ? add_path(list, dir_path, entry->d_name, err) : 0;
}

static int add_content_lock(const struct dirent *entry, const char *dir_path, struct strv *list,
                            struct shed_err *err)
{
    enum image_content_kind kind;
    cleanup_free char *base = NULL;
    if (image_layout_classify_content(entry->d_name, &kind, &base, err) < 0)
        return -1;
    if (kind != IMAGE_CONTENT_LOCK)
        return 0;
    return add_path(list, dir_path, entry->d_name, err);
}

int image_layout_lock_files(const char *images_dir, char ***paths, struct shed_err *err)
{
    *paths = NULL;
    cleanup_strv struct strv list = STRV_INIT;
    cleanup_free char *content = image_layout_content_dir(images_dir);
    int rc = content != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (rc == 0)
        rc = for_each_entry(images_dir, add_variant_lock, &list, err);
    if (rc == 0)
        rc = for_each_entry(content, add_content_lock, &list, err);
    return rc == 0 ? finish_list(&list, false, paths, err) : -1;
}

/* ---- .source ------------------------------------------------------------------------------ */

void image_source_clear(struct image_source *record)
{
    free(record->ref);
    memset(record, 0, sizeof *record);
}

static char *source_path(const char *images_dir, const char *name)
{
    cleanup_free char *rootfs = image_layout_variant_rootfs(images_dir, name);
    return rootfs != NULL ? str_printf("%s" SOURCE_SUFFIX, rootfs) : NULL;
}

/* A record without a valid digest is not one: the cache is stale, which a rebuild repairs. */
static int source_from_json(const json_t *root, struct image_source *record, struct shed_err *err)
{
    const char *ref = json_string_value(json_object_get(root, "ref"));
    const char *digest = json_string_value(json_object_get(root, "digest"));
    const char *created_at = json_string_value(json_object_get(root, "created_at"));
    json_t *size = json_object_get(root, "rootfs_size");
    if (digest == NULL || !digest_is_valid(digest))
        return 0;
    record->ref = strdup(ref != NULL ? ref : "");
    if (record->ref == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    snprintf(record->digest, sizeof record->digest, "%s", digest);
    snprintf(record->created_at, sizeof record->created_at, "%s",
             created_at != NULL ? created_at : "");
    record->rootfs_size = json_is_integer(size) ? (uint64_t)json_integer_value(size) : 0;
    record->present = true;
    return 0;
}

int image_source_read(const char *images_dir, const char *name, struct image_source *record,
                      struct shed_err *err)
{
    memset(record, 0, sizeof *record);
    cleanup_free char *path = source_path(images_dir, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, &text, &len, SOURCE_MAX_SIZE, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1;
    json_t *root = json_loadb(text, len, 0, NULL);
    int rc = source_from_json(root, record, err);
    json_decref(root);
    return rc;
}

int image_source_write(const char *images_dir, const char *name, const char *ref,
                       const char *digest, uint64_t rootfs_size, struct shed_err *err)
{
    cleanup_free char *path = source_path(images_dir, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    char created_at[RFC3339_SIZE];
    if (format_rfc3339_now(created_at) < 0)
        return shed_errf(err, SHED_E_IO, "cannot format the current time");
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
    return fs_write_file_atomic(path, line, strlen(line), 0600, err);
}

bool image_source_matches(const struct image_source *record, const char *ref, uint64_t rootfs_size)
{
    return record->present && strcmp(record->ref, ref) == 0 && record->rootfs_size == rootfs_size;
}
