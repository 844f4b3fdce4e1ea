/* Shared by cache.c (ensure) and cache_list.c (list, remove, prune). Private to imaged/. */
#ifndef SHED_IMAGED_CACHE_INTERNAL_H
#define SHED_IMAGED_CACHE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/shed_err.h"

#define ROOTFS_SUFFIX "-rootfs.ext4"

/* Every file of one variant in images_dir. */
struct variant_paths {
    char *rootfs; /* <dir>/<name>-rootfs.ext4 */
    char *lock;   /* …ext4.lock */
    char *source; /* …ext4.source */
    char *tmp;    /* …ext4.tmp */
    char *kernel; /* <dir>/<name>-vmlinux */
    char *initrd; /* <dir>/<name>-initrd.img */
};

int variant_paths_init(const char *images_dir, const char *name, struct variant_paths *paths,
                       struct shed_err *err);
void variant_paths_free(struct variant_paths *paths);

/* The .source record: what a cached rootfs was built from. */
struct source_record {
    bool present; /* false when the file is missing or unreadable as a record */
    char *ref;
    char digest[DIGEST_STRING_LEN + 1];
    uint64_t rootfs_size;
    char created_at[32];
};

/* A missing or malformed .source reads as present=false (the cache is then stale); only I/O
 * errors other than ENOENT fail. */
int source_read(const char *path, struct source_record *record, struct shed_err *err);
int source_write(const char *path, const char *ref, const char *digest, uint64_t rootfs_size,
                 struct shed_err *err);
void source_record_free(struct source_record *record);
/* The record says this rootfs was built from ref at rootfs_size (digest not compared). */
bool source_matches_config(const struct source_record *record, const char *ref,
                           uint64_t rootfs_size);

/* Removes leftovers of killed writers of this variant: <rootfs>.tmp, <rootfs>.tmp.<digits>,
 * and <file>.tmp.<digits> of the .source and kernel files. Call with the variant's lock held.
 * *removed counts them. */
int remove_stale_tmp_files(const char *images_dir, const char *name, unsigned *removed,
                           struct shed_err *err);

/* <images_dir>/rootfs/sha256 */
char *content_dir_path(const char *images_dir);
/* <images_dir>/rootfs/sha256/<hex>-<size>.ext4 */
char *content_rootfs_path(const char *images_dir, const char *digest, uint64_t rootfs_size);

/* Removes path if it exists. */
int unlink_if_present(const char *path, struct shed_err *err);

#endif
