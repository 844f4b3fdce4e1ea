/* Disk accounting over the on-disk layout (api.md "On-disk layout"): what `system df`
 * reports and what `system prune` plans with.
 *
 * Sizes: logical = st_size, physical = st_blocks * 512, exclusive = physical bytes of the
 * extents FIEMAP reports without FIEMAP_EXTENT_SHARED (on a file system without FIEMAP,
 * exclusive = physical and the report's notes say so). A file reachable under several names
 * (hardlinks: a variant and its content-addressed copy) is counted once in every total.
 *
 * disk: the size vocabulary of every table (df, images, prune). Each block of the data dir
 * is counted once across the whole report, for the first item that holds it, in report
 * order: images (in their listed order, each with its rootfs, sidecars, the base kernel
 * files for _base, and the OCI blobs it reaches), the remaining blobs, sheds, orphans. A
 * hardlinked file counts for the first item naming it; a block shared by reflink (a shed's
 * clone of its image) for the first item whose file has it, i.e. the image, while the clone
 * counts only the blocks it changed. An item that holds blocks an earlier item counted is
 * marked shared_with that item. Without reflinks disk is the physical size of the files the
 * item is the first to name.
 *
 * The scan never writes: it reports a shed's real status through the caller's probe but
 * never saves it, and it takes no lock. */
#ifndef SHED_RUNTIME_DF_H
#define SHED_RUNTIME_DF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"
#include "runtime/instance.h"

/* Whether sheds really run, and what a backend holds for one (runtime never depends on the
 * API layer: the server maps these to the backend's status()/delete(), local commands to
 * the recorded pid). */
struct shed_probe {
    /* 1 running, 0 not running, -1 cannot tell (err filled). NULL: the recorded status. */
    int (*is_running)(const struct instance *inst, void *ctx, struct shed_err *err);
    /* Releases what the backend holds for a stopped shed before its directory is removed
     * (network namespaces, …). NULL: nothing to release. */
    int (*release)(const struct instance *inst, void *ctx, struct shed_err *err);
    void *ctx;
};

/* The probe of the server and of the local commands: a shed's own backend's status() and
 * delete() when the backend is in the set, else whether its recorded pid is alive (a shed
 * recorded running without a pid: cannot tell, so it counts as running). */
struct shed_probe shed_probe_for_backends(const struct backend_set *backends);

/* The shed's status as the probe sees it (the recorded one when it cannot tell). */
enum instance_status shed_probe_status(const struct shed_probe *probe, const struct instance *inst);

struct df_size {
    uint64_t logical;
    uint64_t physical;
    uint64_t exclusive;
    uint64_t disk; /* see above; for a freed size: what the file system gains (= exclusive) */
    uint64_t files;
};

void df_size_add(struct df_size *total, const struct df_size *part);

/* One file as found on disk. */
struct df_file {
    char *path;
    const char *kind;    /* "rootfs", "upper", "lower", "console_log", "console_log_rotated",
                            "kernel", "initrd", "lock", "tmp", "source", "blob", "metadata",
                            "other" (static strings) */
    struct df_size size; /* files = 1 */
    dev_t dev;
    ino_t ino;
    nlink_t nlink;
    struct timespec mtime;
    bool counted;            /* false when an earlier name of the same inode was already counted */
    const char *shared_with; /* orphans: the earlier item holding its blocks, or NULL */
    char *digest;            /* kind "blob" of the OCI store: its digest; else NULL */
};

struct df_file_list {
    struct df_file *items;
    size_t count;
};

struct df_image {
    char *name;
    char *docker_ref; /* "" when unknown */
    bool is_base;
    char digest[DIGEST_STRING_LEN + 1]; /* of its .source; "" when it has none */
    struct df_file rootfs;
    /* .source, .lock, kernel files, temp files of the variant, and (kind "blob") the OCI
     * blobs it reaches that no earlier image does */
    struct df_file_list other_files;
    struct df_size total;
    const char *shared_with; /* the earlier item whose blocks it also holds, or NULL */
};

struct df_shed {
    struct instance inst; /* status as the probe reports it */
    struct timespec metadata_mtime;
    bool has_rootfs, has_console_log;
    struct df_file rootfs;
    struct df_file console_log;
    struct df_file_list other_files;
    struct df_size total;
    const char *shared_with; /* its image, when the rootfs still shares blocks with it */
};

/* A content-addressed rootfs an overlay shed uses as its read-only lower. */
struct df_lower_pin {
    char *shed;  /* the shed's name */
    char *image; /* its variant */
    char *path;  /* rootfs/sha256/<hex>-<size>.ext4 */
};

struct df_report {
    struct df_image *images;
    size_t image_count;
    bool has_kernel, has_initrd;
    struct df_file kernel, initrd; /* <images_dir>/vmlinux, initrd.img */
    /* content-addressed rootfs files, and the OCI blobs that the ref index reaches but no
     * image does */
    struct df_file_list blobs;
    struct df_shed *sheds;
    size_t shed_count;
    /* kinds lock, tmp, source, blob; and instance: a shed directory without metadata.json
     * (one entry, the directory's path, the sizes of everything in it) */
    struct df_file_list orphans;
    struct {
        struct df_size images, sheds, orphans, all;
    } totals;
    /* NULL, or why the OCI blobs that manifests reach could not be told (a manifest that
     * cannot be read): then every blob of the store is listed as referenced. */
    char *blobs_unknown_reason;
    bool fiemap_supported;   /* FIEMAP answered for at least one file */
    bool fiemap_unsupported; /* … and failed with EOPNOTSUPP for at least one */
    /* Why a shed's rootfs is a full copy of its image here (the instance dir's file system
     * cannot reflink, or it is another file system than the images'); NULL: it can. */
    char *no_reflink_reason;
    char **notes; /* NULL-terminated */
    size_t note_count;
    /* Every overlay shed's lower, read before images_dir is scanned. A content rootfs pinned
     * by a shed is referenced: listed as the image's rootfs when a variant still links to it,
     * else among the other files of the pinning shed's image (kind "lower"; under "blobs"
     * when that image is gone). lower_pins_unknown: a metadata.json could not be read, so
     * every content rootfs counts as pinned (unreadable means keep). */
    struct df_lower_pin *lower_pins;
    size_t lower_pin_count;
    bool lower_pins_unknown;
};

/* Whether a shed pins the content rootfs at path; with except (may be NULL) a function that
 * says which sheds not to count (e.g. those a prune is about to delete). */
bool df_lower_pinned(const struct df_report *report, const char *path,
                     bool (*except)(const char *shed, const void *ctx), const void *ctx);

struct df_opts {
    const struct shed_config *config;
    struct instance_store *instances;
    const struct shed_probe *probe;
    /* Also keep every file's extents (for prune's freed-bytes computation). NULL: the scan
     * uses its own. */
    struct df_extent_index *extents;
    bool images_only; /* images_dir only: no sheds (the image tables) */
};

int df_scan(const struct df_opts *opts, struct df_report *report, struct shed_err *err);
void df_report_free(struct df_report *report);
int df_report_add_note(struct df_report *report, struct shed_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The GET /api/system/df body (api.md). */
json_t *df_report_to_json(const struct df_report *report, const char *server_name,
                          const char *backend);
json_t *df_size_to_json(const struct df_size *size);
/* The reports' "notes": a JSON array of the strings. */
json_t *df_notes_to_json(char *const *notes, size_t count);

/* Stats one file (lstat; not following symlinks) and measures its exclusive bytes.
 * *fiemap_ok is false when the file system does not support FIEMAP. */
int df_measure_file(const char *path, const char *kind, struct df_file *file, bool *fiemap_ok,
                    struct df_extent_index *extents, struct shed_err *err);
void df_file_clear(struct df_file *file);
void df_file_list_clear(struct df_file_list *list);
int df_file_list_add(struct df_file_list *list, struct df_file *file, struct shed_err *err);

/* ---- freed bytes of a set of files (for prune) -------------------------------------------
 * Keeps the physical extents of every scanned file so that the bytes a deletion really
 * returns to the file system can be computed: an extent shared (reflink) with a file outside
 * the set is not freed; an inode is freed only when every one of its links is in the set. */
struct df_extent_index;

int df_extent_index_new(struct df_extent_index **index, struct shed_err *err);
void df_extent_index_free(struct df_extent_index *index);

struct df_deletion; /* a set of files about to be deleted */

int df_deletion_new(struct df_deletion **deletion, struct shed_err *err);
void df_deletion_free(struct df_deletion *deletion);
/* Adds one name of a file (its dev/ino/nlink/sizes as measured). */
int df_deletion_add(struct df_deletion *deletion, const struct df_file *file, struct shed_err *err);
/* logical/physical: the sizes of the inodes whose every link is in the set; exclusive: the
 * bytes of their extents that no file outside the set shares (what statvfs will show). */
int df_deletion_freed(const struct df_deletion *deletion, const struct df_extent_index *index,
                      struct df_size *freed, struct shed_err *err);

#endif
