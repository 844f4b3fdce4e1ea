#include "instance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "common/timeutil.h"

#define METADATA_FILE "metadata.json"
#define METADATA_MAX_BYTES (1 << 20)
#define LOCKS_DIR ".locks"

static const char *const instance_file_names[] = {
    [INSTANCE_FILE_METADATA] = METADATA_FILE,
    [INSTANCE_FILE_ROOTFS] = "rootfs.ext4",
    [INSTANCE_FILE_CONSOLE_LOG] = "console.log",
    [INSTANCE_FILE_CONSOLE_LOG_ROTATED] = "console.log.1",
    [INSTANCE_FILE_UPPER] = "upper.ext4",
    [INSTANCE_FILE_UPPER_TMP] = "upper.ext4.tmp",
};

const char *instance_file_name(enum instance_file file)
{
    return instance_file_names[file];
}

bool instance_file_from_name(const char *relative, enum instance_file *file)
{
    for (size_t i = 0; i < sizeof instance_file_names / sizeof instance_file_names[0]; i++) {
        if (strcmp(relative, instance_file_names[i]) == 0) {
            *file = (enum instance_file)i;
            return true;
        }
    }
    return false;
}

/* ---- names and status -------------------------------------------------------------- */

bool instance_name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > INSTANCE_NAME_MAX)
        return false;
    if (name[0] < 'a' || name[0] > 'z')
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-')
            return false;
    }
    return name[len - 1] != '-';
}

int instance_check_name(const char *name, struct shed_err *err)
{
    if (instance_name_is_valid(name))
        return 0;
    return shed_errf(err, SHED_E_INVALID_SHED_NAME,
                     "invalid shed name \"%.80s\": use 1-63 lowercase letters, digits and "
                     "hyphens, starting with a letter and not ending with a hyphen",
                     name);
}

static const char *const status_names[] = {
    [INSTANCE_STOPPED] = "stopped",
    [INSTANCE_RUNNING] = "running",
    [INSTANCE_STARTING] = "starting",
    [INSTANCE_ERROR] = "error",
};

const char *instance_status_name(enum instance_status status)
{
    if ((size_t)status >= sizeof status_names / sizeof status_names[0])
        return "error";
    return status_names[status];
}

bool instance_status_parse(const char *text, enum instance_status *status)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
        if (strcmp(text, status_names[i]) == 0) {
            *status = (enum instance_status)i;
            return true;
        }
    }
    return false;
}

static const char *const disk_names[] = {
    [INSTANCE_DISK_COPY] = "copy",
    [INSTANCE_DISK_REFLINK] = "reflink",
    [INSTANCE_DISK_OVERLAY] = "overlay",
};

const char *instance_disk_name(enum instance_disk_kind kind)
{
    if ((size_t)kind >= sizeof disk_names / sizeof disk_names[0])
        return "copy";
    return disk_names[kind];
}

bool instance_disk_parse(const char *text, enum instance_disk_kind *kind)
{
    for (size_t i = 0; i < sizeof disk_names / sizeof disk_names[0]; i++) {
        if (strcmp(text, disk_names[i]) == 0) {
            *kind = (enum instance_disk_kind)i;
            return true;
        }
    }
    return false;
}

enum instance_file instance_disk_file(const struct instance *inst)
{
    return inst->disk == INSTANCE_DISK_OVERLAY ? INSTANCE_FILE_UPPER : INSTANCE_FILE_ROOTFS;
}

/* ---- the instance value ------------------------------------------------------------ */

#define STRING_FIELD_COUNT 6

/* The string fields in one order, shared by init/clear/copy/JSON. */
static void string_fields(const struct instance *inst, char **fields[STRING_FIELD_COUNT])
{
    struct instance *mutable = (struct instance *)inst;
    fields[0] = &mutable->repo;
    fields[1] = &mutable->backend;
    fields[2] = &mutable->image;
    fields[3] = &mutable->ip_address;
    fields[4] = &mutable->rootfs_path;
    fields[5] = &mutable->local_dir;
}

int instance_set_string(char **field, const char *value, struct shed_err *err)
{
    char *copy = strdup(value != NULL ? value : "");
    if (copy == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

static int instance_init_empty(struct instance *inst, struct shed_err *err)
{
    memset(inst, 0, sizeof *inst);
    inst->status = INSTANCE_STOPPED;
    char **fields[STRING_FIELD_COUNT];
    string_fields(inst, fields);
    for (size_t i = 0; i < STRING_FIELD_COUNT; i++)
        if (instance_set_string(fields[i], "", err) < 0) {
            instance_clear(inst);
            return -1;
        }
    return 0;
}

int instance_init(struct instance *inst, const char *name, struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    if (instance_init_empty(inst, err) < 0)
        return -1;
    snprintf(inst->name, sizeof inst->name, "%s", name);
    if (format_rfc3339_now(inst->created_at) < 0) {
        instance_clear(inst);
        return shed_errf(err, SHED_E_IO, "cannot format the current time");
    }
    return 0;
}

void instance_clear(struct instance *inst)
{
    char **fields[STRING_FIELD_COUNT];
    string_fields(inst, fields);
    for (size_t i = 0; i < STRING_FIELD_COUNT; i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
    if (inst->backend_state != NULL)
        json_decref(inst->backend_state);
    inst->backend_state = NULL;
}

int instance_copy(struct instance *dst, const struct instance *src, struct shed_err *err)
{
    if (instance_init_empty(dst, err) < 0)
        return -1;
    memcpy(dst->name, src->name, sizeof dst->name);
    memcpy(dst->created_at, src->created_at, sizeof dst->created_at);
    dst->status = src->status;
    dst->cpus = src->cpus;
    dst->memory_mb = src->memory_mb;
    dst->pid = src->pid;
    dst->disk = src->disk;
    dst->lower = src->lower;
    char **to[STRING_FIELD_COUNT], **from[STRING_FIELD_COUNT];
    string_fields(dst, to);
    string_fields(src, from);
    for (size_t i = 0; i < STRING_FIELD_COUNT; i++)
        if (instance_set_string(to[i], *from[i], err) < 0)
            goto fail;
    if (src->backend_state != NULL) {
        dst->backend_state = json_deep_copy(src->backend_state);
        if (dst->backend_state == NULL) {
            shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            goto fail;
        }
    }
    return 0;
fail:
    instance_clear(dst);
    return -1;
}

/* ---- JSON ---------------------------------------------------------------------------- */

static const char *const string_field_names[STRING_FIELD_COUNT] = {
    "repo", "backend", "image", "ip_address", "rootfs_path", "local_dir"};

/* {"kind": "overlay", "lower_digest": "sha256:…", "lower_size": N} or {"kind": "copy"}. */
static json_t *disk_to_json(const struct instance *inst)
{
    if (inst->disk != INSTANCE_DISK_OVERLAY)
        return json_pack("{s:s}", "kind", instance_disk_name(inst->disk));
    return json_pack("{s:s, s:s, s:I}", "kind", instance_disk_name(inst->disk), "lower_digest",
                     inst->lower.digest, "lower_size", (json_int_t)inst->lower.size);
}

json_t *instance_to_json(const struct instance *inst)
{
    json_t *obj =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:I}", "name", inst->name, "status",
                  instance_status_name(inst->status), "created_at", inst->created_at, "cpus",
                  inst->cpus, "memory_mb", inst->memory_mb, "pid", (json_int_t)inst->pid);
    if (obj == NULL)
        return NULL;
    char **fields[STRING_FIELD_COUNT];
    string_fields(inst, fields);
    for (size_t i = 0; i < STRING_FIELD_COUNT; i++) {
        if (json_object_set_new(obj, string_field_names[i],
                                json_string(*fields[i] != NULL ? *fields[i] : "")) < 0)
            goto fail;
    }
    if (json_object_set_new(obj, "disk", disk_to_json(inst)) < 0)
        goto fail;
    if (inst->backend_state != NULL &&
        json_object_set(obj, "backend_state", inst->backend_state) < 0)
        goto fail;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static int json_get_string(const json_t *obj, const char *key, bool required, const char **out,
                           struct shed_err *err)
{
    json_t *value = json_object_get(obj, key);
    if (value == NULL) {
        if (required)
            return shed_errf(err, SHED_E_IO, "metadata: missing \"%s\"", key);
        *out = "";
        return 0;
    }
    if (!json_is_string(value))
        return shed_errf(err, SHED_E_IO, "metadata: \"%s\" is not a string", key);
    *out = json_string_value(value);
    return 0;
}

static int json_get_int(const json_t *obj, const char *key, long long max, long long *out,
                        struct shed_err *err)
{
    json_t *value = json_object_get(obj, key);
    *out = 0;
    if (value == NULL)
        return 0;
    if (!json_is_integer(value) || json_integer_value(value) < 0 || json_integer_value(value) > max)
        return shed_errf(err, SHED_E_IO, "metadata: \"%s\" is not an integer in 0..%lld", key, max);
    *out = json_integer_value(value);
    return 0;
}

static int instance_scalars_from_json(const json_t *json, struct instance *inst,
                                      struct shed_err *err)
{
    const char *name = "", *status = "", *created_at = "";
    if (json_get_string(json, "name", true, &name, err) < 0 ||
        json_get_string(json, "status", true, &status, err) < 0 ||
        json_get_string(json, "created_at", false, &created_at, err) < 0)
        return -1;
    if (!instance_name_is_valid(name))
        return shed_errf(err, SHED_E_IO, "metadata: invalid name \"%.80s\"", name);
    if (!instance_status_parse(status, &inst->status))
        return shed_errf(err, SHED_E_IO, "metadata: unknown status \"%.40s\"", status);
    snprintf(inst->name, sizeof inst->name, "%s", name);
    snprintf(inst->created_at, sizeof inst->created_at, "%s", created_at);
    long long cpus, memory_mb, pid;
    if (json_get_int(json, "cpus", 4096, &cpus, err) < 0 ||
        json_get_int(json, "memory_mb", 1 << 30, &memory_mb, err) < 0 ||
        json_get_int(json, "pid", 1 << 30, &pid, err) < 0)
        return -1;
    inst->cpus = (int)cpus;
    inst->memory_mb = (int)memory_mb;
    inst->pid = (pid_t)pid;
    return 0;
}

/* The lower must name a content rootfs exactly: a digest and a size, nothing a path could be
 * made of. */
static int lower_from_json(const json_t *disk, struct instance *inst, struct shed_err *err)
{
    const char *digest = "";
    if (json_get_string(disk, "lower_digest", true, &digest, err) < 0)
        return -1;
    if (!digest_is_valid(digest))
        return shed_errf(err, SHED_E_IO, "metadata: \"disk\": \"lower_digest\" is not a digest");
    json_t *size = json_object_get(disk, "lower_size");
    if (!json_is_integer(size) || json_integer_value(size) <= 0)
        return shed_errf(err, SHED_E_IO, "metadata: \"disk\": \"lower_size\" is not a size");
    snprintf(inst->lower.digest, sizeof inst->lower.digest, "%s", digest);
    inst->lower.size = (uint64_t)json_integer_value(size);
    return 0;
}

/* No "disk" (an older version's metadata): a full rootfs.ext4. An unknown kind is an error,
 * never a guess: the shed's disk could be mistaken for another one. */
static int disk_from_json(const json_t *json, struct instance *inst, struct shed_err *err)
{
    const json_t *disk = json_object_get(json, "disk");
    if (disk == NULL || json_is_null(disk))
        return 0;
    if (!json_is_object(disk))
        return shed_errf(err, SHED_E_IO, "metadata: \"disk\" is not an object");
    const char *kind = "";
    if (json_get_string(disk, "kind", true, &kind, err) < 0)
        return -1;
    if (!instance_disk_parse(kind, &inst->disk))
        return shed_errf(err, SHED_E_IO, "metadata: unknown disk kind \"%.40s\"", kind);
    return inst->disk == INSTANCE_DISK_OVERLAY ? lower_from_json(disk, inst, err) : 0;
}

int instance_from_json(const json_t *json, struct instance *inst, struct shed_err *err)
{
    if (!json_is_object(json))
        return shed_errf(err, SHED_E_IO, "metadata: not a JSON object");
    if (instance_init_empty(inst, err) < 0)
        return -1;
    if (instance_scalars_from_json(json, inst, err) < 0 || disk_from_json(json, inst, err) < 0)
        goto fail;
    char **fields[STRING_FIELD_COUNT];
    string_fields(inst, fields);
    for (size_t i = 0; i < STRING_FIELD_COUNT; i++) {
        const char *value = "";
        if (json_get_string(json, string_field_names[i], false, &value, err) < 0 ||
            instance_set_string(fields[i], value, err) < 0)
            goto fail;
    }
    json_t *state = json_object_get(json, "backend_state");
    if (state != NULL && !json_is_null(state)) {
        if (!json_is_object(state)) {
            shed_errf(err, SHED_E_IO, "metadata: \"backend_state\" is not an object");
            goto fail;
        }
        inst->backend_state = json_deep_copy(state);
        if (inst->backend_state == NULL) {
            shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            goto fail;
        }
    }
    return 0;
fail:
    instance_clear(inst);
    return -1;
}

/* ---- the store ----------------------------------------------------------------------- */

/* Identity of a metadata.json: any write (always a rename) changes it. */
struct file_identity {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct cache_entry {
    struct file_identity identity;
    struct instance inst;
};

struct instance_store {
    char *dir;
    pthread_mutex_t cache_lock;
    struct cache_entry *cache; /* sorted by inst.name */
    size_t cache_count;
    size_t cache_capacity;

    /* The last full listing, valid until inotify reports a change (see instance_store_list). */
    pthread_mutex_t snapshot_lock;
    struct instance_list snapshot;
    bool snapshot_valid;
    uint64_t generation; /* bumped whenever the snapshot is rebuilt */
    int inotify_fd;      /* -1: no inotify, every listing rescans */
    int top_watch;
};

static void watch_store_open(struct instance_store *store);

int instance_store_open(const char *dir, struct instance_store **out, struct shed_err *err)
{
    if (fs_mkdir_private(dir, err) < 0)
        return -1;
    cleanup_free char *locks = fs_path_join(dir, LOCKS_DIR);
    if (locks == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_mkdir_private(locks, err) < 0)
        return -1;
    struct instance_store *store = calloc(1, sizeof *store);
    if (store == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    store->dir = strdup(dir);
    if (store->dir == NULL) {
        free(store);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    int rc = pthread_mutex_init(&store->cache_lock, NULL);
    if (rc == 0 && (rc = pthread_mutex_init(&store->snapshot_lock, NULL)) != 0)
        pthread_mutex_destroy(&store->cache_lock);
    if (rc != 0) {
        free(store->dir);
        free(store);
        return shed_errf_errno(err, SHED_E_IO, rc, "cannot create a mutex");
    }
    watch_store_open(store);
    *out = store;
    return 0;
}

void instance_store_close(struct instance_store *store)
{
    if (store == NULL)
        return;
    for (size_t i = 0; i < store->cache_count; i++)
        instance_clear(&store->cache[i].inst);
    free(store->cache);
    pthread_mutex_destroy(&store->cache_lock);
    instance_list_clear(&store->snapshot);
    pthread_mutex_destroy(&store->snapshot_lock);
    if (store->inotify_fd >= 0)
        close(store->inotify_fd);
    free(store->dir);
    free(store);
}

const char *instance_store_dir(const struct instance_store *store)
{
    return store->dir;
}

char *instance_store_path(const struct instance_store *store, const char *name)
{
    return fs_path_join(store->dir, name);
}

char *instance_store_file_path(const struct instance_store *store, const char *name,
                               enum instance_file file)
{
    return str_printf("%s/%s/%s", store->dir, name, instance_file_name(file));
}

int instance_store_lock_purpose(struct instance_store *store, const char *purpose, bool blocking,
                                int *fd, struct shed_err *err)
{
    /* The leading dot keeps these apart from shed names, which start with a letter. */
    cleanup_free char *path = str_printf("%s/" LOCKS_DIR "/.%s.lock", store->dir, purpose);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return fs_lock_file(path, blocking, fd, err);
}

static int lock_shed(struct instance_store *store, const char *name, bool blocking, int *fd,
                     struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    cleanup_free char *path = str_printf("%s/" LOCKS_DIR "/%s.lock", store->dir, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return fs_lock_file(path, blocking, fd, err);
}

int instance_store_lock(struct instance_store *store, const char *name, int *fd,
                        struct shed_err *err)
{
    return lock_shed(store, name, true, fd, err);
}

int instance_store_trylock(struct instance_store *store, const char *name, int *fd,
                           struct shed_err *err)
{
    return lock_shed(store, name, false, fd, err);
}

void instance_store_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the only descriptor releases the flock */
}

int instance_store_create_dir(struct instance_store *store, const char *name, struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    cleanup_free char *path = instance_store_path(store, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (mkdir(path, 0700) < 0) {
        if (errno == EEXIST)
            return shed_errf(err, SHED_E_SHED_ALREADY_EXISTS, "shed \"%s\" already exists", name);
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot create %s", path);
    }
    return 0;
}

/* -- cache (callers hold cache_lock) -- */

static bool identity_equal(const struct file_identity *a, const struct file_identity *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static struct file_identity identity_of(const struct stat *st)
{
    return (struct file_identity){st->st_dev, st->st_ino, st->st_size, st->st_mtim};
}

/* Index of name, or of where it would be inserted (*found false). */
static size_t cache_search(const struct instance_store *store, const char *name, bool *found)
{
    size_t lo = 0, hi = store->cache_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(store->cache[mid].inst.name, name);
        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void cache_remove(struct instance_store *store, const char *name)
{
    bool found;
    size_t at = cache_search(store, name, &found);
    if (!found)
        return;
    instance_clear(&store->cache[at].inst);
    memmove(&store->cache[at], &store->cache[at + 1],
            (store->cache_count - at - 1) * sizeof store->cache[0]);
    store->cache_count--;
}

/* Takes ownership of *inst (moved into the cache). */
static int cache_put(struct instance_store *store, const struct file_identity *identity,
                     struct instance *inst, struct shed_err *err)
{
    bool found;
    size_t at = cache_search(store, inst->name, &found);
    if (found) {
        instance_clear(&store->cache[at].inst);
    } else {
        if (store->cache_count == store->cache_capacity) {
            size_t capacity = store->cache_capacity ? store->cache_capacity * 2 : 64;
            struct cache_entry *grown = realloc(store->cache, capacity * sizeof *grown);
            if (grown == NULL)
                return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
            store->cache = grown;
            store->cache_capacity = capacity;
        }
        memmove(&store->cache[at + 1], &store->cache[at],
                (store->cache_count - at) * sizeof store->cache[0]);
        store->cache_count++;
    }
    store->cache[at].identity = *identity;
    store->cache[at].inst = *inst;
    memset(inst, 0, sizeof *inst);
    return 0;
}

/* Copies the cached instance when its identity still matches; 1 on a hit, 0 on a miss. */
static int cache_get(struct instance_store *store, const char *name,
                     const struct file_identity *identity, struct instance *out,
                     struct shed_err *err)
{
    pthread_mutex_lock(&store->cache_lock);
    bool found;
    size_t at = cache_search(store, name, &found);
    int rc = 0;
    if (found && identity_equal(&store->cache[at].identity, identity))
        rc = instance_copy(out, &store->cache[at].inst, err) < 0 ? -1 : 1;
    pthread_mutex_unlock(&store->cache_lock);
    return rc;
}

/* -- reading -- */

static int parse_metadata_fd(int fd, const char *path, struct instance *inst, struct shed_err *err)
{
    /* One read of the whole file: json_loadfd reads a byte per syscall, which dominated
     * listing thousands of sheds. */
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (fs_read_fd(fd, path, &text, &len, METADATA_MAX_BYTES, err) < 0)
        return -1;
    json_error_t jerr;
    json_t *json = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (json == NULL)
        return shed_errf(err, SHED_E_IO, "%s: line %d: %s", path, jerr.line, jerr.text);
    int rc = instance_from_json(json, inst, err);
    json_decref(json);
    if (rc < 0)
        return shed_err_prefix(err, "%s", path);
    return 0;
}

/* The recorded rootfs_path is never believed: the shed's disk is <dir>/<name>/rootfs.ext4
 * (upper.ext4 for an overlay shed), whatever an edited metadata.json says (the API shows the
 * derived path). */
static int derive_rootfs_path(const struct instance_store *store, struct instance *inst,
                              struct shed_err *err)
{
    cleanup_free char *path = instance_store_file_path(store, inst->name, instance_disk_file(inst));
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return instance_set_string(&inst->rootfs_path, path, err);
}

/* Loads <dir>/<name>/metadata.json through the cache. A file that does not parse yields
 * a status ERROR instance (with only the name) when tolerate_bad is set. */
static int load_metadata(struct instance_store *store, const char *name, bool tolerate_bad,
                         struct instance *inst, struct shed_err *err)
{
    cleanup_free char *path = instance_store_file_path(store, name, INSTANCE_FILE_METADATA);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return shed_errf(err, SHED_E_SHED_NOT_FOUND, "shed \"%s\" not found", name);
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    }
    struct file_identity identity = identity_of(&st);
    int hit = cache_get(store, name, &identity, inst, err);
    if (hit != 0)
        return hit < 0 ? -1 : 0;

    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return shed_errf(err, SHED_E_SHED_NOT_FOUND, "shed \"%s\" not found", name);
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    }
    if (fstat(fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    identity = identity_of(&st);
    struct shed_err parse_err = {0};
    if (parse_metadata_fd(fd, path, inst, &parse_err) < 0) {
        if (!tolerate_bad) {
            *err = parse_err;
            return -1;
        }
        if (instance_init_empty(inst, err) < 0)
            return -1;
        snprintf(inst->name, sizeof inst->name, "%s", name);
        inst->status = INSTANCE_ERROR;
    } else {
        /* A copied directory keeps its old metadata: the directory name is the truth. */
        snprintf(inst->name, sizeof inst->name, "%s", name);
        if (derive_rootfs_path(store, inst, err) < 0) {
            instance_clear(inst);
            return -1;
        }
    }
    struct instance cached;
    if (instance_copy(&cached, inst, err) < 0) {
        instance_clear(inst);
        return -1;
    }
    pthread_mutex_lock(&store->cache_lock);
    int rc = cache_put(store, &identity, &cached, err);
    pthread_mutex_unlock(&store->cache_lock);
    if (rc < 0) {
        instance_clear(&cached);
        instance_clear(inst);
        return -1;
    }
    return 0;
}

int instance_store_load(struct instance_store *store, const char *name, struct instance *inst,
                        struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    return load_metadata(store, name, false, inst, err);
}

int instance_store_save(struct instance_store *store, const struct instance *inst,
                        struct shed_err *err)
{
    cleanup_free char *path = instance_store_file_path(store, inst->name, INSTANCE_FILE_METADATA);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    json_t *json = instance_to_json(inst);
    if (json == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot serialise shed \"%s\"", inst->name);
    cleanup_free char *text = json_dumps(json, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(json);
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot serialise shed \"%s\"", inst->name);
    cleanup_free char *with_newline = str_printf("%s\n", text);
    if (with_newline == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return fs_write_file_atomic(path, with_newline, strlen(with_newline), 0600, err);
}

/* nftw gives its callback no context pointer; the first failure's errno is returned
 * through nftw's own return value instead of a global. */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    return rc < 0 ? errno : 0;
}

int instance_store_delete(struct instance_store *store, const char *name, struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    cleanup_free char *path = instance_store_path(store, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    pthread_mutex_lock(&store->cache_lock);
    cache_remove(store, name);
    pthread_mutex_unlock(&store->cache_lock);
    if (!fs_exists(path))
        return 0;
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rc != 0)
        return shed_errf_errno(err, SHED_E_IO, rc > 0 ? rc : errno,
                               "cannot remove the instance directory %s", path);
    if (fs_exists(path))
        return shed_errf(err, SHED_E_IO, "cannot remove %s: something is still mounted inside it",
                         path);
    return fs_fsync_dir(store->dir, err);
}

/* -- listing -- */

struct name_list {
    char **names;
    size_t count;
    size_t capacity;
};

static void name_list_clear(struct name_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    memset(list, 0, sizeof *list);
}

static int name_list_add(struct name_list *list, const char *name, struct shed_err *err)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 64;
        char **grown = realloc(list->names, capacity * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        list->names = grown;
        list->capacity = capacity;
    }
    list->names[list->count] = strdup(name);
    if (list->names[list->count] == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    list->count++;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool entry_is_dir(int dirfd, const struct dirent *entry)
{
    if (entry->d_type == DT_DIR)
        return true;
    if (entry->d_type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(dirfd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Names of the directories that look like sheds (valid name), sorted. */
static int read_instance_names(const char *dir, struct name_list *names, struct shed_err *err)
{
    cleanup_closedir DIR *d = opendir(dir);
    if (d == NULL)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", dir);
    int rc = 0;
    errno = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (!instance_name_is_valid(entry->d_name) || !entry_is_dir(dirfd(d), entry))
            continue;
        if ((rc = name_list_add(names, entry->d_name, err)) < 0)
            break;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", dir);
    if (rc == 0 && names->count > 1)
        qsort(names->names, names->count, sizeof names->names[0], compare_names);
    return rc;
}

/* Drops cache entries of sheds that no longer exist (names sorted, cache sorted). */
static void cache_retain_only(struct instance_store *store, const struct name_list *names)
{
    pthread_mutex_lock(&store->cache_lock);
    size_t kept = 0, n = 0;
    for (size_t i = 0; i < store->cache_count; i++) {
        const char *cached = store->cache[i].inst.name;
        while (n < names->count && strcmp(names->names[n], cached) < 0)
            n++;
        if (n < names->count && strcmp(names->names[n], cached) == 0)
            store->cache[kept++] = store->cache[i];
        else
            instance_clear(&store->cache[i].inst);
    }
    store->cache_count = kept;
    pthread_mutex_unlock(&store->cache_lock);
}

static bool watch_shed_dirs(struct instance_store *store, const struct name_list *names);

/* Reads every shed from disk (through the parse cache): readdir + one stat per shed.
 * *watched: every shed directory is watched (before its metadata was read, so no change
 * after the read can go unnoticed). */
static int scan_instances(struct instance_store *store, struct instance_list *list, bool *watched,
                          struct shed_err *err)
{
    memset(list, 0, sizeof *list);
    struct name_list names = {0};
    if (read_instance_names(store->dir, &names, err) < 0) {
        name_list_clear(&names);
        return -1;
    }
    *watched = store->inotify_fd >= 0 && watch_shed_dirs(store, &names);
    list->items = calloc(names.count ? names.count : 1, sizeof list->items[0]);
    if (list->items == NULL) {
        name_list_clear(&names);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < names.count; i++) {
        struct shed_err load_err = {0};
        if (load_metadata(store, names.names[i], true, &list->items[list->count], &load_err) == 0) {
            list->count++;
            continue;
        }
        /* A directory without metadata.json is a shed being created (or a stray
         * directory): not a shed yet. Anything else is a real failure. */
        if (load_err.code == SHED_E_SHED_NOT_FOUND)
            continue;
        *err = load_err;
        instance_list_clear(list);
        name_list_clear(&names);
        return -1;
    }
    cache_retain_only(store, &names);
    name_list_clear(&names);
    return 0;
}

/* -- change notification --
 * A full scan costs a stat() per shed, and where syscalls are expensive (this kind of VM:
 * ~8 us each) a hundred sheds cap listing near a thousand per second. So the last listing
 * is kept and reused until inotify reports a change that matters: an entry created, removed
 * or renamed in instance_dir, or metadata.json written, renamed or removed in a shed's
 * directory (writes to rootfs.ext4 or console.log do not count). Without inotify every
 * listing scans. */

#define SHED_DIR_EVENTS                                                                            \
    (IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF)

static void watch_store_open(struct instance_store *store)
{
    store->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (store->inotify_fd < 0)
        return;
    store->top_watch = inotify_add_watch(store->inotify_fd, store->dir,
                                         IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                             IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    if (store->top_watch < 0) {
        close(store->inotify_fd);
        store->inotify_fd = -1;
    }
}

static bool event_matters(const struct instance_store *store, const struct inotify_event *event)
{
    if (event->mask & (IN_Q_OVERFLOW | IN_IGNORED))
        return (event->mask & IN_Q_OVERFLOW) != 0;
    if (event->wd == store->top_watch || event->len == 0)
        return true;
    return strcmp(event->name, METADATA_FILE) == 0;
}

/* Drains pending events; true when one of them may have changed the listing. */
static bool drain_changes(struct instance_store *store)
{
    bool changed = false;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(store->inotify_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return changed; /* EAGAIN: nothing more */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *event = (const struct inotify_event *)p;
            changed |= event_matters(store, event);
            p += sizeof *event + event->len;
        }
    }
}

/* Watches every shed directory; false when one cannot be watched (then the snapshot cannot
 * be trusted and the next listing scans again). */
static bool watch_shed_dirs(struct instance_store *store, const struct name_list *names)
{
    for (size_t i = 0; i < names->count; i++) {
        cleanup_free char *path = instance_store_path(store, names->names[i]);
        if (path == NULL || inotify_add_watch(store->inotify_fd, path, SHED_DIR_EVENTS) < 0)
            return false;
    }
    return true;
}

static int copy_list(const struct instance_list *from, struct instance_list *to,
                     struct shed_err *err)
{
    memset(to, 0, sizeof *to);
    to->items = calloc(from->count ? from->count : 1, sizeof to->items[0]);
    if (to->items == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (; to->count < from->count; to->count++) {
        if (instance_copy(&to->items[to->count], &from->items[to->count], err) < 0) {
            instance_list_clear(to);
            return -1;
        }
    }
    return 0;
}

/* Rebuilds the snapshot when a change was reported (caller holds snapshot_lock). */
static int refresh_snapshot(struct instance_store *store, struct shed_err *err)
{
    if (drain_changes(store))
        store->snapshot_valid = false;
    if (store->snapshot_valid)
        return 0;
    /* Events drained above are all reflected by this scan; events arriving during or after
     * it invalidate the new snapshot on the next call. */
    bool watched = false;
    instance_list_clear(&store->snapshot);
    store->generation++;
    int rc = scan_instances(store, &store->snapshot, &watched, err);
    store->snapshot_valid = rc == 0 && watched;
    return rc;
}

int instance_store_list(struct instance_store *store, struct instance_list *list,
                        struct shed_err *err)
{
    bool watched = false;
    if (store->inotify_fd < 0)
        return scan_instances(store, list, &watched, err);
    pthread_mutex_lock(&store->snapshot_lock);
    int rc = refresh_snapshot(store, err);
    if (rc == 0)
        rc = copy_list(&store->snapshot, list, err);
    pthread_mutex_unlock(&store->snapshot_lock);
    return rc;
}

int instance_store_generation(struct instance_store *store, uint64_t *generation,
                              struct shed_err *err)
{
    pthread_mutex_lock(&store->snapshot_lock);
    int rc = 0;
    if (store->inotify_fd < 0)
        store->generation++; /* nothing tells us about changes: every call is new */
    else
        rc = refresh_snapshot(store, err);
    *generation = store->generation;
    pthread_mutex_unlock(&store->snapshot_lock);
    return rc;
}

void instance_list_clear(struct instance_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        instance_clear(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* -- the images the sheds use -- */

void instance_image_refs_free(char **names)
{
    strv_free_items(names);
}

/* The image of one shed; a directory without metadata.json (a shed being created) adds
 * nothing, and nothing that cannot be parsed is guessed at. */
static int add_image_of_shed(struct instance_store *store, const char *name, struct strv *refs,
                             struct shed_err *err)
{
    struct instance inst;
    struct shed_err load_err = {0};
    if (load_metadata(store, name, false, &inst, &load_err) < 0) {
        if (load_err.code == SHED_E_SHED_NOT_FOUND)
            return 0;
        *err = load_err;
        return -1;
    }
    int rc = inst.image[0] != '\0' ? strv_add_unique(refs, inst.image, err) : 0;
    instance_clear(&inst);
    return rc;
}

bool instance_store_has_metadata(struct instance_store *store, const char *name)
{
    cleanup_free char *path = instance_store_file_path(store, name, INSTANCE_FILE_METADATA);
    return path == NULL || fs_exists(path); /* cannot tell: not an orphan */
}

int instance_store_orphans(struct instance_store *store, char ***names, struct shed_err *err)
{
    *names = NULL;
    struct name_list dirs = {0};
    cleanup_strv struct strv orphans = STRV_INIT;
    int rc = read_instance_names(store->dir, &dirs, err);
    for (size_t i = 0; rc == 0 && i < dirs.count; i++)
        if (!instance_store_has_metadata(store, dirs.names[i]))
            rc = strv_add(&orphans, dirs.names[i], err);
    name_list_clear(&dirs);
    if (rc < 0)
        return -1;
    *names = orphans.count > 0 ? strv_steal(&orphans) : calloc(1, sizeof **names);
    return *names != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

int instance_store_image_refs(struct instance_store *store, char ***names, struct shed_err *err)
{
    *names = NULL;
    struct name_list sheds = {0};
    cleanup_strv struct strv refs = STRV_INIT;
    int rc = read_instance_names(store->dir, &sheds, err);
    for (size_t i = 0; rc == 0 && i < sheds.count; i++)
        rc = add_image_of_shed(store, sheds.names[i], &refs, err);
    name_list_clear(&sheds);
    if (rc < 0)
        return -1;
    strv_sort(&refs);
    /* Callers walk the list without a NULL check: an empty one is an empty array. */
    *names = refs.count > 0 ? strv_steal(&refs) : calloc(1, sizeof **names);
    return *names != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

/* -- who uses an image, and which lowers the overlay sheds pin -- */

/* Loads every shed that has metadata.json, for fn; unreadable metadata fails (never guessed). */
static int for_each_loaded_shed(struct instance_store *store,
                                int (*fn)(const struct instance *inst, void *ctx,
                                          struct shed_err *err),
                                void *ctx, struct shed_err *err)
{
    struct name_list sheds = {0};
    int rc = read_instance_names(store->dir, &sheds, err);
    for (size_t i = 0; rc == 0 && i < sheds.count; i++) {
        struct instance inst;
        struct shed_err load_err = {0};
        if (load_metadata(store, sheds.names[i], false, &inst, &load_err) < 0) {
            if (load_err.code == SHED_E_SHED_NOT_FOUND)
                continue;
            *err = load_err;
            rc = -1;
            break;
        }
        rc = fn(&inst, ctx, err);
        instance_clear(&inst);
    }
    name_list_clear(&sheds);
    return rc;
}

struct image_users {
    const char *image;
    struct strv names;
    bool overlay;
};

static int add_image_user(const struct instance *inst, void *ctx, struct shed_err *err)
{
    struct image_users *users = ctx;
    if (strcmp(inst->image, users->image) != 0)
        return 0;
    users->overlay |= inst->disk == INSTANCE_DISK_OVERLAY;
    return strv_add(&users->names, inst->name, err);
}

int instance_store_image_users(struct instance_store *store, const char *image, char ***names,
                               bool *overlay, struct shed_err *err)
{
    *names = NULL;
    *overlay = false;
    struct image_users users = {.image = image, .names = STRV_INIT};
    if (for_each_loaded_shed(store, add_image_user, &users, err) < 0) {
        strv_free(&users.names);
        return -1;
    }
    *overlay = users.overlay;
    *names = users.names.count > 0 ? strv_steal(&users.names) : calloc(1, sizeof **names);
    strv_free(&users.names);
    return *names != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

void instance_lower_refs_clear(struct instance_lower_refs *refs)
{
    for (size_t i = 0; i < refs->count; i++)
        free(refs->items[i].image);
    free(refs->items);
    memset(refs, 0, sizeof *refs);
}

static int add_lower_ref(const struct instance *inst, void *ctx, struct shed_err *err)
{
    struct instance_lower_refs *refs = ctx;
    if (inst->disk != INSTANCE_DISK_OVERLAY)
        return 0;
    struct instance_lower_ref *grown = realloc(refs->items, (refs->count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    refs->items = grown;
    struct instance_lower_ref *ref = &refs->items[refs->count];
    memset(ref, 0, sizeof *ref);
    snprintf(ref->name, sizeof ref->name, "%s", inst->name);
    ref->lower = inst->lower;
    ref->image = strdup(inst->image);
    if (ref->image == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    refs->count++;
    return 0;
}

int instance_store_lower_refs(struct instance_store *store, struct instance_lower_refs *refs,
                              struct shed_err *err)
{
    memset(refs, 0, sizeof *refs);
    if (for_each_loaded_shed(store, add_lower_ref, refs, err) < 0) {
        instance_lower_refs_clear(refs);
        return -1;
    }
    return 0;
}
