/* The instance store: one directory per shed under instance_dir.
 *
 *   <instance_dir>/<name>/metadata.json   the shed object (written atomically)
 *   <instance_dir>/<name>/rootfs.ext4     its root filesystem: a clone of the image (disk
 *                                         kinds reflink and copy)
 *   <instance_dir>/<name>/upper.ext4      disk kind overlay: the shed's own writable layer (an
 *                                         ext4 holding upper/ and work/) over the read-only
 *                                         image, its "lower" (docs/architecture.md)
 *   <instance_dir>/<name>/upper.ext4.tmp  an upper.ext4 being made (a create killed there)
 *   <instance_dir>/<name>/console.log     what the shed printed, where the backend keeps it
 *   <instance_dir>/<name>/console.log.1   its older part, once console.log reached its cap
 *   <instance_dir>/.locks/<name>.lock     the shed's lifecycle lock (flock)
 *   <instance_dir>/.locks/.<purpose>.lock locks of the store itself (instance_store_lock_purpose)
 *
 * The store is the only code that names these files or parses metadata.json.
 *
 * The lock lives outside the instance directory on purpose: deleting a shed removes its
 * directory while the lock is held, and a waiter that then acquires the lock must be locking
 * the same file a later create of the same name will lock. Lock files are never deleted
 * (they are empty; one per name ever used).
 *
 * The store keeps a cache of parsed metadata keyed by the file's identity (device, inode,
 * size, mtime): every write goes through rename(), so any change, ours or by hand, gives the
 * file a new identity and is picked up on the next read. The cache is what makes listing
 * a hundred sheds cost a hundred stat() calls instead of a hundred file parses. */
#ifndef SHED_INSTANCE_H
#define SHED_INSTANCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "common/shed_err.h"

#define INSTANCE_NAME_MAX 63

enum instance_status {
    INSTANCE_STOPPED = 0,
    INSTANCE_RUNNING,
    INSTANCE_STARTING,
    INSTANCE_ERROR,
};

/* What the shed's root filesystem is made of ("disk" in metadata.json). */
enum instance_disk_kind {
    INSTANCE_DISK_COPY = 0, /* rootfs.ext4, a full copy of the image (also: nothing recorded) */
    INSTANCE_DISK_REFLINK,  /* rootfs.ext4, a reflink clone sharing the image's extents */
    INSTANCE_DISK_OVERLAY,  /* upper.ext4 over the image's content-addressed rootfs */
};

/* The read-only lower of an overlay shed: a content-addressed rootfs of the image cache,
 * rootfs/sha256/<hex>-<size>.ext4 (imaged/layout.h image_layout_content_rootfs), pinned by
 * this record: the image cache never deletes a content rootfs a shed names here. */
struct instance_lower {
    char digest[DIGEST_STRING_LEN + 1]; /* the image's manifest digest */
    uint64_t size;                      /* the filesystem size it was converted at */
};

/* One shed. String fields are never NULL once initialised ("" when unset). */
struct instance {
    char name[INSTANCE_NAME_MAX + 1];
    enum instance_status status;
    char created_at[32]; /* RFC 3339 UTC, "2026-01-20T10:30:00Z" */
    char *repo;
    char *backend;
    char *image;
    char *ip_address;
    /* loaded: always <instance_dir>/<name>/rootfs.ext4, or upper.ext4 for an overlay shed
     * (never the file's) */
    char *rootfs_path;
    char *local_dir;
    int cpus;
    int memory_mb;
    pid_t pid;
    enum instance_disk_kind disk;
    struct instance_lower lower; /* disk overlay only */
    /* Backend-private fields, stored as the "backend_state" object of metadata.json
     * (NULL when none). Owned by the instance. */
    json_t *backend_state;
};

/* ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ */
bool instance_name_is_valid(const char *name);
/* SHED_E_INVALID_SHED_NAME with a message that quotes the name, or 0. */
int instance_check_name(const char *name, struct shed_err *err);

const char *instance_status_name(enum instance_status status);
/* "copy", "reflink", "overlay". */
const char *instance_disk_name(enum instance_disk_kind kind);
/* false when text names no disk kind. */
bool instance_disk_parse(const char *text, enum instance_disk_kind *kind);
/* false when text names no status. */
bool instance_status_parse(const char *text, enum instance_status *status);

/* Sets name and created_at (now), empty strings elsewhere. name must be valid. */
int instance_init(struct instance *inst, const char *name, struct shed_err *err);
void instance_clear(struct instance *inst);
/* Replaces a string field with a copy of value (NULL means ""). */
int instance_set_string(char **field, const char *value, struct shed_err *err);
int instance_copy(struct instance *dst, const struct instance *src, struct shed_err *err);

/* metadata.json <-> struct instance. The JSON is the API's shed object plus
 * "backend_state"; from_json ignores fields it does not know (written by newer versions). */
json_t *instance_to_json(const struct instance *inst);
int instance_from_json(const json_t *json, struct instance *inst, struct shed_err *err);

struct instance_store;

/* Opens (creating) the store at dir. */
int instance_store_open(const char *dir, struct instance_store **store, struct shed_err *err);
void instance_store_close(struct instance_store *store);
const char *instance_store_dir(const struct instance_store *store);
/* <instance_dir>/<name>, malloc'd (NULL on allocation failure). */
char *instance_store_path(const struct instance_store *store, const char *name);

/* The files of a shed's directory that have a meaning; they are named here only. */
enum instance_file {
    INSTANCE_FILE_METADATA,            /* metadata.json */
    INSTANCE_FILE_ROOTFS,              /* rootfs.ext4 */
    INSTANCE_FILE_CONSOLE_LOG,         /* console.log, where the backend writes one */
    INSTANCE_FILE_CONSOLE_LOG_ROTATED, /* console.log.1: the one older part (log cap) */
    INSTANCE_FILE_UPPER,               /* upper.ext4: an overlay shed's own layer */
    INSTANCE_FILE_UPPER_TMP,           /* upper.ext4.tmp: one being made */
};

const char *instance_file_name(enum instance_file file);
/* Which of them a path relative to the shed's directory is; false for any other file. */
bool instance_file_from_name(const char *relative, enum instance_file *file);
/* <instance_dir>/<name>/<file>, malloc'd (NULL on allocation failure). */
char *instance_store_file_path(const struct instance_store *store, const char *name,
                               enum instance_file file);

/* Takes the shed's lifecycle lock (blocking); *fd is to be closed by instance_store_unlock. */
int instance_store_lock(struct instance_store *store, const char *name, int *fd,
                        struct shed_err *err);
/* Like instance_store_lock without waiting: *fd is -1 (and 0 returned) when it is held. */
int instance_store_trylock(struct instance_store *store, const char *name, int *fd,
                           struct shed_err *err);
void instance_store_unlock(int fd);
/* A lock of the store itself rather than of a shed (e.g. "system-prune": one prune at a
 * time per instance_dir), beside the sheds' locks; *fd = -1 when held and not blocking. */
int instance_store_lock_purpose(struct instance_store *store, const char *purpose, bool blocking,
                                int *fd, struct shed_err *err);

/* Creates the empty instance directory; SHED_E_SHED_ALREADY_EXISTS if it exists. */
int instance_store_create_dir(struct instance_store *store, const char *name, struct shed_err *err);
/* SHED_E_INVALID_SHED_NAME for a malformed name, SHED_E_SHED_NOT_FOUND when there is no such
 * shed (or no metadata.json). */
int instance_store_load(struct instance_store *store, const char *name, struct instance *inst,
                        struct shed_err *err);
/* Writes metadata.json atomically (tmp + fsync + rename + fsync dir). */
int instance_store_save(struct instance_store *store, const struct instance *inst,
                        struct shed_err *err);
/* Removes the instance directory and everything in it, never crossing into another file
 * system (a still-mounted rootfs or bind mount makes this fail instead of emptying it).
 * A missing directory is not an error. */
int instance_store_delete(struct instance_store *store, const char *name, struct shed_err *err);

struct instance_list {
    struct instance *items;
    size_t count;
};

/* Every shed, sorted by name. A shed whose metadata.json cannot be read or parsed is listed
 * with status ERROR (and only its name), so one bad file never hides the others. */
int instance_store_list(struct instance_store *store, struct instance_list *list,
                        struct shed_err *err);
void instance_list_clear(struct instance_list *list);

/* The image variants the sheds use: the "image" of every metadata.json, read by the store's
 * own parser. *names: malloc'd, NULL-terminated, sorted, without duplicates or empty names
 * (free with instance_image_refs_free). A shed directory without metadata.json contributes
 * nothing; a metadata.json that cannot be read or parsed is an error (guessing could delete
 * an image a shed needs). */
int instance_store_image_refs(struct instance_store *store, char ***names, struct shed_err *err);
void instance_image_refs_free(char **names);
/* The shed a disk file belongs to: rootfs.ext4, or upper.ext4 for an overlay shed. */
enum instance_file instance_disk_file(const struct instance *inst);

/* The sheds using an image, for a refusal that names them: every shed whose "image" is
 * image, and whether any of them is an overlay shed (whose root is that image's content). *names:
 * malloc'd, NULL-terminated, sorted (free with instance_image_refs_free). Unreadable
 * metadata is an error, as for instance_store_image_refs. */
int instance_store_image_users(struct instance_store *store, const char *image, char ***names,
                               bool *overlay, struct shed_err *err);

/* One overlay shed's lower (instance_store_lower_refs). */
struct instance_lower_ref {
    char name[INSTANCE_NAME_MAX + 1]; /* the shed */
    char *image;                      /* its variant name */
    struct instance_lower lower;
};

struct instance_lower_refs {
    struct instance_lower_ref *items; /* sorted by shed name */
    size_t count;
};

/* The lowers every overlay shed pins, read by the store's own parser. A directory without
 * metadata.json pins nothing; a metadata.json that cannot be read or parsed is an error (the
 * caller must then keep every content rootfs: unreadable means keep). */
int instance_store_lower_refs(struct instance_store *store, struct instance_lower_refs *refs,
                              struct shed_err *err);
void instance_lower_refs_clear(struct instance_lower_refs *refs);

/* Directories of instance_dir named like a shed but without metadata.json: what a create
 * killed between its mkdir and its first metadata write leaves, or a stray directory. Not
 * sheds (never listed, 404 everywhere); df reports them as orphans, prune (orphans scope) and
 * server startup remove them, each under the name's lock. *names: malloc'd, NULL-terminated,
 * sorted (free with instance_image_refs_free). */
int instance_store_orphans(struct instance_store *store, char ***names, struct shed_err *err);
/* Whether <instance_dir>/<name>/metadata.json exists (lstat). */
bool instance_store_has_metadata(struct instance_store *store, const char *name);
/* A number that changes whenever the listing may have changed (a shed created, deleted or
 * its metadata.json rewritten, by us or by hand), so callers can cache what they derive
 * from a listing. Without inotify it changes on every call. */
int instance_store_generation(struct instance_store *store, uint64_t *generation,
                              struct shed_err *err);

#endif
