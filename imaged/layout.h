/* The layout of images_dir: the one place that knows the names of the image cache's files
 * and reads or writes the .source record. Everyone else (df, prune, create, the API) asks
 * here instead of building or parsing these names.
 *
 * In images_dir (cache.h says what each file is for):
 *   <name>-rootfs.ext4              a variant's rootfs
 *   <name>-rootfs.ext4.lock         its lock (never deleted)
 *   <name>-rootfs.ext4.source       what it was built from (struct image_source)
 *   <name>-rootfs.ext4.tmp          a conversion in progress, or the leftover of a killed one
 *   <file>.tmp.<digits>             the leftover of an atomic write (fs_atomic_open,
 *                                   fs_link_atomic) of one of the variant's files: the
 *                                   rootfs link, .source, kernel files
 *   <name>-vmlinux, <name>-initrd.img       the kernel and initrd found in the image
 *   vmlinux, initrd.img (+ .tmp.<digits>)   the same for _base, under the names the VM
 *                                   backends look for; they belong to _base
 *   rootfs/sha256/<hex>-<size>.ext4 one rootfs per (manifest digest, filesystem size), shared
 *                                   by hardlinks; + .lock, + .tmp.<digits> while published
 *   blobs/, refs/                   the OCI store (oci/oci.h): not the cache's
 *
 * Variant names are those of shed_image_name_is_valid (or "_base"); an entry is classified
 * by the last part that makes it one of the files above, so a name may itself contain
 * "-rootfs.ext4" or "-vmlinux". */
#ifndef SHED_IMAGED_LAYOUT_H
#define SHED_IMAGED_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "common/shed_err.h"

/* ---- paths ---------------------------------------------------------------------------- */

/* Every file of one variant; malloc'd. */
struct image_variant_paths {
    char *rootfs; /* <dir>/<name>-rootfs.ext4 */
    char *lock;   /* …ext4.lock */
    char *source; /* …ext4.source */
    char *tmp;    /* …ext4.tmp */
    char *kernel; /* <dir>/<name>-vmlinux */
    char *initrd; /* <dir>/<name>-initrd.img */
    /* _base only (NULL for other variants): <dir>/vmlinux and <dir>/initrd.img */
    char *base_kernel, *base_initrd;
};

int image_layout_variant_paths(const char *images_dir, const char *name,
                               struct image_variant_paths *paths, struct shed_err *err);
void image_variant_paths_free(struct image_variant_paths *paths);
/* <dir>/<name>-rootfs.ext4 alone; NULL only on allocation failure. */
char *image_layout_variant_rootfs(const char *images_dir, const char *name);

/* <dir>/rootfs/sha256 */
char *image_layout_content_dir(const char *images_dir);
/* <dir>/rootfs/sha256/<hex>-<size>.ext4 for a manifest digest and filesystem size. */
char *image_layout_content_rootfs(const char *images_dir, const char *digest, uint64_t rootfs_size);
/* The lock of a content-addressed rootfs (its path + ".lock"). */
char *image_layout_content_lock(const char *content_rootfs);
/* True when path is a content-addressed rootfs of images_dir (rootfs/sha256/<x>.ext4). */
bool image_layout_is_content_rootfs(const char *images_dir, const char *path);

/* "<out_path>.tmp": where imaged_convert writes its output (for a variant, the rootfs' .tmp). */
char *image_layout_convert_tmp_path(const char *out_path);

/* ---- classifying what is found in images_dir --------------------------------------------- */

enum image_file_kind {
    IMAGE_FILE_OTHER,       /* not a file of the image cache */
    IMAGE_FILE_ROOTFS,      /* <name>-rootfs.ext4 */
    IMAGE_FILE_LOCK,        /* <name>-rootfs.ext4.lock */
    IMAGE_FILE_SOURCE,      /* <name>-rootfs.ext4.source */
    IMAGE_FILE_TMP,         /* any temporary file of the variant */
    IMAGE_FILE_KERNEL,      /* <name>-vmlinux */
    IMAGE_FILE_INITRD,      /* <name>-initrd.img */
    IMAGE_FILE_BASE_KERNEL, /* vmlinux (variant _base) */
    IMAGE_FILE_BASE_INITRD, /* initrd.img (variant _base) */
};

struct image_entry {
    enum image_file_kind kind;
    char *variant; /* malloc'd; NULL for IMAGE_FILE_OTHER */
};

/* What the entry (a file name in images_dir, no directory part) is. */
int image_layout_classify(const char *entry, struct image_entry *out, struct shed_err *err);
void image_entry_clear(struct image_entry *entry);

enum image_content_kind {
    IMAGE_CONTENT_OTHER,  /* not the content store's */
    IMAGE_CONTENT_ROOTFS, /* <x>.ext4 */
    IMAGE_CONTENT_LOCK,   /* <x>.ext4.lock */
    IMAGE_CONTENT_TMP,    /* <x>.ext4.tmp.<digits> */
};

/* What an entry of rootfs/sha256 is; *rootfs_entry (malloc'd, NULL for OTHER) is the name of
 * the rootfs it belongs to (the entry itself for a rootfs). */
int image_layout_classify_content(const char *entry, enum image_content_kind *kind,
                                  char **rootfs_entry, struct shed_err *err);

/* The rootfs a file of images_dir belongs to, and the lock that guards both: a variant's file
 * → <name>-rootfs.ext4 and its .lock (the base kernel files → _base's); a content-store file
 * → its <x>.ext4 and <x>.ext4.lock. Both NULL for anything else (the OCI store has no lock of
 * its own). path is as found under images_dir (images_dir joined with the entry). */
int image_layout_guard(const char *images_dir, const char *path, char **rootfs, char **lock,
                       struct shed_err *err);

/* Names of the variants with a regular <name>-rootfs.ext4 in images_dir, sorted (strcmp),
 * NULL-terminated (free with image_names_free). A missing images_dir has none. */
int image_layout_cached_variants(const char *images_dir, char ***names, struct shed_err *err);
/* Every lock file of the cache (variants' and content-addressed rootfs'), NULL-terminated
 * (free with image_names_free). */
int image_layout_lock_files(const char *images_dir, char ***paths, struct shed_err *err);
/* Frees a NULL-terminated list of malloc'd strings. */
void image_names_free(char **names);

/* ---- the .source record ---------------------------------------------------------------- */

/* What a cached rootfs was built from: JSON {ref, digest, rootfs_size, created_at}, plus
 * "imported": true for shed-server import (ref is then "<kind>:<path>", import.h). */
struct image_source {
    bool present; /* false when the file is missing or does not hold a valid digest */
    bool imported;
    char *ref; /* "" when the record names no ref (then it matches no config) */
    char digest[DIGEST_STRING_LEN + 1];
    uint64_t rootfs_size;
    char created_at[32];
};

/* Reads <name>-rootfs.ext4.source. A missing or malformed record reads as present = false
 * (the cache is then stale and rebuilt); only I/O errors other than ENOENT fail. */
int image_source_read(const char *images_dir, const char *name, struct image_source *record,
                      struct shed_err *err);
/* Writes the record durably (tmp + fsync + rename), created_at = now. */
int image_source_write(const char *images_dir, const char *name, const char *ref,
                       const char *digest, uint64_t rootfs_size, struct shed_err *err);
/* The record of an imported variant: source ("<kind>:<path>") as its ref, imported: true. */
int image_source_write_imported(const char *images_dir, const char *name, const char *source,
                                const char *digest, uint64_t rootfs_size, struct shed_err *err);
void image_source_clear(struct image_source *record);
/* The record says the rootfs was built from ref at rootfs_size (the digest is not compared). */
bool image_source_matches(const struct image_source *record, const char *ref, uint64_t rootfs_size);

#endif
