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

#include <jansson.h>

#include "common/digest.h"
#include "common/shed_err.h"
#include "config/config.h"
#include "imaged/layout.h"
#include "oci/oci.h"

/* The pull options server.yaml implies: platform, insecure registries, the deadline, low
 * speed and minimum progress of transfers, layer and image size caps. The caller adds
 * progress, cancel and credentials. */
void image_pull_opts_from_config(const struct shed_config *config, struct oci_pull_opts *opts);

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

/* Makes name the conversion of a manifest already in the store (shed-server import): under
 * the variant's lock, linked from the content store or converted exactly as for a pull,
 * kernel files extracted, and .source written last as an import of source. */
int image_cache_install(struct image_cache *cache, const char *name, const char *source,
                        const char *manifest_digest, const struct image_ensure_opts *opts,
                        struct image_ensure_result *result, struct shed_err *err);

/* Every name pull-images ensures: the `images:` entries plus "_base" when base_image is set,
 * sorted (strcmp). *names is malloc'd and NULL-terminated (free with image_names_free). */
int image_cache_variant_names(const struct shed_config *config, char ***names,
                              struct shed_err *err);

/* ---- what deleted variants leave unneeded in the OCI store ------------------------------- */

/* The blobs and ref index entries that deleting the variants gone (names, NULL-terminated)
 * makes unneeded: a ref entry goes when it names a gone variant's ref (canonical form) and
 * digest and no variant that stays was built from that ref; a blob goes when a gone variant
 * reaches it and nothing that stays does (the other ref entries, the other .source digests,
 * by oci/'s reachability walk). Computed before the variants' files are deleted. When a
 * manifest or ref entry cannot be read, the answer is unknown and nothing goes. */
struct image_reclaim;

int image_reclaim_new(const struct shed_config *config, const char *const *gone,
                      struct image_reclaim **reclaim, struct shed_err *err);
void image_reclaim_free(struct image_reclaim *reclaim);
/* NULL when the walks were complete, else why nothing can be reclaimed. */
const char *image_reclaim_unknown(const struct image_reclaim *reclaim);
bool image_reclaim_blob(const struct image_reclaim *reclaim, const char *digest);
size_t image_reclaim_ref_count(const struct image_reclaim *reclaim);
/* The canonical ref of entry i and the digest it names. */
const char *image_reclaim_ref(const struct image_reclaim *reclaim, size_t i, const char **digest);

struct image_reclaimed {
    unsigned refs, blobs;
    uint64_t bytes;         /* on disk (st_blocks) of the blobs removed */
    char kept_because[640]; /* "" when reclaimed; else why nothing was */
};

/* After the gone variants' files are deleted (and their locks released): removes the ref
 * entries and the unneeded blobs (only those listed in only, when non-NULL), unless a pull or
 * conversion holds a lock of the image cache right now (it may be about to use a blob it
 * found in the store): then nothing is removed and kept_because says why. */
int image_reclaim_apply(const struct shed_config *config, struct image_reclaim *reclaim,
                        const char *const *only, struct image_reclaimed *done,
                        struct shed_err *err);

/* ---- listing, removal, pruning ------------------------------------------------------- */

/* The API's image object. */
struct image_info {
    char *name;
    char *path;          /* "" when not cached */
    char *docker_ref;    /* "" for local-only images */
    char *digest;        /* "" when unknown */
    uint64_t size_bytes; /* logical: the rootfs' st_size */
    bool from_config;    /* source: "config" (else "imported" or "discovered") */
    bool imported;       /* its .source says shed-server import made it */
    bool cached;
    /* As system df counts the image (runtime/df.h; filled by runtime/image_tables.h, 0 and
     * NULL until then): its files' physical bytes, its disk bytes, and the earlier listed
     * item whose blocks it shares (malloc'd), if any. */
    uint64_t physical_bytes, disk_bytes, logical_bytes; /* logical: of all its files */
    char *shared_with;
};

struct image_info_list {
    struct image_info *items;
    size_t count;
};

void image_info_list_free(struct image_info_list *list);

/* The API's image object (api.md): name, path, docker_ref, digest, size_bytes, source,
 * cached, is_base for _base, physical_bytes, disk_bytes, logical_bytes, shared_with when
 * set. */
json_t *image_info_to_json(const struct image_info *info);

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

/* Removes <name>-rootfs.ext4, its .source, .tmp and kernel files (the .lock stays), the
 * content-addressed rootfs when nothing links it any more and pins keeps nothing of it, and
 * what the OCI store kept only
 * for this variant: its ref index entry and the blobs nothing else reaches (image_reclaim_*;
 * *reclaimed says what went, may be NULL). SHED_E_IMAGE_IN_USE when the name is in the
 * config or in in_use (NULL-terminated names used by sheds) or a conversion holds the lock;
 * SHED_E_IMAGE_NOT_FOUND when not cached. */
int image_cache_remove(const struct shed_config *config, const char *name,
                       const char *const *in_use, const struct image_content_pins *pins,
                       struct image_reclaimed *reclaimed, struct shed_err *err);

/* The prune decision for one cached variant (images prune and system prune: runtime/prune.h
 * lists everything before deleting anything). KEEP: a shed uses it, the config names it and
 * its .source matches the config (a config entry whose cache was built from another ref or
 * size does not protect it), or it was imported (an import has no registry to come back
 * from); LOCKED: unreferenced but a conversion holds its lock; REMOVE: it goes. With remove
 * set, a REMOVE variant's files are deleted under its lock (the .lock stays). Content-addressed
 * rootfs files are never touched here. */
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
