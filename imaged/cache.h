/* The image cache: every variant named in server.yaml, ready as an ext4 root filesystem.
 *
 * On disk, in images_dir (the names are made and recognised by imaged/layout.h only):
 *   <name>-rootfs.ext4          the variant's rootfs (a hardlink to its content-addressed copy)
 *   <name>-rootfs.ext4.lock     flock held while the variant is checked or (re)built; never
 *                               deleted (an unlinked lock file would let a second process
 *                               lock a different inode under the same name)
 *   <name>-rootfs.ext4.source   JSON {ref, digest, rootfs_size, created_at}: what the rootfs
 *                               was built from; written last, atomically
 *   <name>-rootfs.ext4.tmp      a conversion in progress (or the leftover of a killed one)
 *   <name>-vmlinux, <name>-initrd.img   kernel and initrd found in the image's /boot
 *   vmlinux, initrd.img         the same for _base (the default base image)
 *   rootfs/sha256/<hex>-<size>.ext4     one rootfs per (manifest digest, filesystem size),
 *                               shared by every variant with that digest (+ a .lock each)
 *   blobs/sha256/<hex>          the OCI blob store (oci/)
 *
 * A variant is fresh when its .source names the configured ref, the digest the ref resolves
 * to now, and the configured rootfs_size. Locks are always taken name first, digest second. */
#ifndef SHED_IMAGED_CACHE_H
#define SHED_IMAGED_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/digest.h"
#include "common/shed_err.h"
#include "config/config.h"
#include "imaged/layout.h"

/* ---- ensuring a variant is ready ----------------------------------------------------- */

enum image_log_level {
    IMAGE_LOG_INFO,    /* milestones: "converting", "up to date", "ready" */
    IMAGE_LOG_DETAIL,  /* what --verbose adds: resolved digests, layers, lock waits */
    IMAGE_LOG_WARNING, /* e.g. the registry is unreachable and a cached copy is used */
};

struct image_ensure_opts {
    void (*log)(enum image_log_level level, const char *name, const char *message, void *ctx);
    /* phase "download" (compressed layer bytes fetched) or "convert" (layer bytes consumed) */
    void (*progress)(const char *name, const char *phase, uint64_t done, uint64_t total, void *ctx);
    void *ctx;
    volatile int *cancel; /* set non-zero (e.g. from a signal handler): SHED_E_INTERRUPTED */
};

enum image_ensure_outcome {
    IMAGE_ENSURE_FRESH,     /* the cache already matched the registry */
    IMAGE_ENSURE_CONVERTED, /* pulled and converted */
    IMAGE_ENSURE_LINKED,    /* another variant already had this digest: linked, not converted */
    IMAGE_ENSURE_OFFLINE,   /* registry unreachable: the cached copy is used as is */
    IMAGE_ENSURE_LOCAL,     /* the config names a local ext4 file: used in place */
};

struct image_ensure_result {
    enum image_ensure_outcome outcome;
    char *rootfs_path;                  /* malloc'd */
    char digest[DIGEST_STRING_LEN + 1]; /* "" for local files */
    uint64_t bytes_fetched;             /* blob bytes downloaded */
    bool has_kernel, has_initrd;        /* <name>-vmlinux / <name>-initrd.img exist */
};

struct image_cache; /* a session: the config, the blob store, digests resolved so far */

int image_cache_open(const struct shed_config *config, struct image_cache **cache,
                     struct shed_err *err);
void image_cache_close(struct image_cache *cache);

/* Makes the variant (a name in `images:`, or "_base" for base_image) ready, converting at
 * most once across processes. SHED_E_UNKNOWN_IMAGE for names not in the config. */
int image_cache_ensure(struct image_cache *cache, const char *name,
                       const struct image_ensure_opts *opts, struct image_ensure_result *result,
                       struct shed_err *err);
void image_ensure_result_free(struct image_ensure_result *result);

/* Every name pull-images ensures: the `images:` entries plus "_base" when base_image is set,
 * sorted (strcmp). *names is malloc'd and NULL-terminated (free with image_names_free). */
int image_cache_variant_names(const struct shed_config *config, char ***names,
                              struct shed_err *err);

/* ---- listing, removal, pruning ------------------------------------------------------- */

/* The API's image object. */
struct image_info {
    char *name;
    char *path;       /* "" when not cached */
    char *docker_ref; /* "" for local-only images */
    char *digest;     /* "" when unknown */
    uint64_t size_bytes;
    bool from_config; /* source: "config" (else "discovered") */
    bool cached;
};

struct image_info_list {
    struct image_info *items;
    size_t count;
};

void image_info_list_free(struct image_info_list *list);

/* Config variants first (in file order), then _base when base_image is set, then the other
 * <name>-rootfs.ext4 files found (sorted; a _base cached for an earlier base_image among
 * them, as prune sees it). */
int image_cache_list(const struct shed_config *config, struct image_info_list *list,
                     struct shed_err *err);

/* Content-addressed rootfs files that something outside the image cache still needs: the
 * read-only lowers of overlay sheds (runtime/instance_disk.c). check is asked under the
 * content file's lock, right before the file would be deleted because no variant links to it
 * any more; *pinned keeps it. -1 (cannot tell) keeps it too. A NULL pins (or check) pins
 * nothing. */
struct image_content_pins {
    int (*check)(const char *content_path, bool *pinned, void *ctx, struct shed_err *err);
    void *ctx;
};

/* Removes <name>-rootfs.ext4, its .source, .tmp and kernel files; keeps the .lock.
 * SHED_E_IMAGE_IN_USE when the name is in the config or in in_use (NULL-terminated names
 * used by sheds) or a conversion holds the lock; SHED_E_IMAGE_NOT_FOUND when not cached.
 * The content rootfs it linked to goes when nothing links to it and pins does not keep it. */
int image_cache_remove(const struct shed_config *config, const char *name,
                       const char *const *in_use, const struct image_content_pins *pins,
                       struct shed_err *err);

/* Cached variants that neither the config (with a matching .source: a config entry whose
 * cache was built from another ref or size does not protect it) nor a shed references.
 * dry_run: only lists them. A variant whose lock is held is left out of both. Content-
 * addressed rootfs files no variant links to any more are deleted too (not listed), unless
 * pins keeps them. */
int image_cache_prune(const struct shed_config *config, const char *const *in_use,
                      const struct image_content_pins *pins, bool dry_run,
                      struct image_info_list *pruned, struct shed_err *err);

/* image_cache_prune's decision for one cached variant, for callers that list everything
 * before deleting anything (system prune). KEEP: the config or a shed references it;
 * LOCKED: unreferenced but a conversion holds its lock; REMOVE: it goes. With remove set, a
 * REMOVE variant's files are deleted under its lock exactly as image_cache_prune deletes them
 * (the .lock stays). Content-addressed rootfs files are never touched here. */
enum image_prune_decision { IMAGE_PRUNE_KEEP, IMAGE_PRUNE_LOCKED, IMAGE_PRUNE_REMOVE };
int image_cache_prune_variant(const struct shed_config *config, const char *name,
                              const char *const *in_use, bool remove,
                              enum image_prune_decision *decision, struct shed_err *err);

/* Deletes the content-addressed rootfs at path when no variant links to it any more (link
 * count 1) and pins does not keep it, unless its lock is held (a conversion is about to link
 * it, or a create is pinning it) or path is no longer the file (dev, ino) the caller
 * measured (any file when both are 0). A missing file is not an error. */
int image_cache_remove_unlinked_content(const char *path, dev_t dev, ino_t ino,
                                        const struct image_content_pins *pins,
                                        struct shed_err *err);

/* ---- the content a variant is --------------------------------------------------------- */

/* What an overlay shed's lower is: the content-addressed rootfs a cached variant is the same
 * file as (rootfs/sha256/<hex>-<size>.ext4 of the digest and filesystem size its .source
 * records). found is false for a variant whose rootfs is not such a file: a configured local
 * ext4, a rootfs put into images_dir by hand, or a variant caught in the middle of a rebuild. */
struct image_content_ref {
    bool found;
    char digest[DIGEST_STRING_LEN + 1];
    uint64_t size;
    char *path; /* malloc'd when found */
};

int image_cache_variant_content(const char *images_dir, const char *name,
                                struct image_content_ref *ref, struct shed_err *err);
void image_content_ref_clear(struct image_content_ref *ref);

#endif
