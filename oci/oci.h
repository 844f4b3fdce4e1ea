/* oci: image references, the registry client (auth, manifests, blobs) and the
 * content-addressed blob store under <images_dir>/blobs/sha256/.
 *
 * Every fallible function returns 0 on success, -1 on failure with err filled. */
#ifndef SHED_OCI_H
#define SHED_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/shed_err.h"

/* ---- references ---------------------------------------------------------------------- */

struct oci_ref {
    char *registry;   /* "ghcr.io", "registry-1.docker.io", "127.0.0.1:5000" */
    char *repository; /* "owner/img", "library/debian" */
    char *tag;        /* "latest" when neither tag nor digest was given; NULL if only a digest */
    char *digest;     /* "sha256:…" when pinned, else NULL */
};

int oci_ref_parse(const char *text, struct oci_ref *ref, struct shed_err *err);
void oci_ref_free(struct oci_ref *ref);
/* Canonical form "registry/repository[:tag][@digest]", malloc'd. */
char *oci_ref_format(const struct oci_ref *ref);
/* The canonical form of a reference as written (the ref index's key for it); malloc'd. */
int oci_ref_canonical(const char *text, char **canonical, struct shed_err *err);

/* ---- blob store ---------------------------------------------------------------------- */

struct oci_store; /* <images_dir>/blobs/sha256/<hex>, plus the ref index */

int oci_store_open(const char *images_dir, struct oci_store **store, struct shed_err *err);
/* Opens the store without creating anything, for readers that must not write (disk
 * accounting): a store that does not exist reads as empty. */
int oci_store_open_existing(const char *images_dir, struct oci_store **store, struct shed_err *err);
void oci_store_close(struct oci_store *store);
const char *oci_store_images_dir(const struct oci_store *store);
/* Path of a blob (whether or not it exists), malloc'd. */
char *oci_store_blob_path(const struct oci_store *store, const char *digest);
bool oci_store_has_blob(const struct oci_store *store, const char *digest);
/* Reads a small blob (manifest, config) and verifies its digest. */
int oci_store_read_blob(const struct oci_store *store, const char *digest, char **data, size_t *len,
                        struct shed_err *err);
/* Adds a small blob whose bytes we hold (a manifest or config we read or built); *digest
 * becomes its digest. An existing blob is left as it is. */
int oci_store_add_blob(struct oci_store *store, const void *data, size_t len,
                       char digest[DIGEST_STRING_LEN + 1], struct shed_err *err);

/* A blob streamed into the store from anywhere but a registry (an image archive): written
 * under a temporary name in the blob directory, hashed while written, and published under
 * its digest only by commit, after the digest (when one was expected) and the size were
 * checked; abort or a failed commit leaves nothing behind. */
struct oci_blob_writer;
/* expected_digest: NULL when only the content will tell; max_size bounds what write accepts
 * (the expected size when known). */
int oci_blob_writer_open(struct oci_store *store, const char *expected_digest, uint64_t max_size,
                         struct oci_blob_writer **writer, struct shed_err *err);
int oci_blob_writer_write(struct oci_blob_writer *writer, const void *data, size_t len,
                          struct shed_err *err);
/* expected_size: UINT64_MAX when unknown. *digest: what was stored. Frees the writer. */
int oci_blob_writer_commit(struct oci_blob_writer *writer, uint64_t expected_size,
                           char digest[DIGEST_STRING_LEN + 1], uint64_t *size,
                           struct shed_err *err);
/* Removes the temporary file and frees the writer (NULL is fine). */
void oci_blob_writer_abort(struct oci_blob_writer *writer);

/* Ref index: canonical ref string → manifest digest (the one pulled last). */
int oci_store_ref_set(struct oci_store *store, const char *canonical_ref, const char *digest,
                      struct shed_err *err);
/* SHED_E_IMAGE_NOT_FOUND when the ref was never pulled. *digest is malloc'd. */
int oci_store_ref_get(const struct oci_store *store, const char *canonical_ref, char **digest,
                      struct shed_err *err);
/* Removes the ref index entry when it still names digest (a pull that moved it meanwhile
 * wins); *removed says whether it did. */
int oci_store_ref_remove_if(struct oci_store *store, const char *canonical_ref, const char *digest,
                            bool *removed, struct shed_err *err);
/* Removes a stored blob (not a partial download); a missing one is not an error. *bytes:
 * what the file held on disk (st_blocks), 0 when there was none. */
int oci_store_blob_remove(struct oci_store *store, const char *digest, uint64_t *bytes,
                          struct shed_err *err);

/* The store-wide blob lock, <images_dir>/blobs/store.lock (created 0600 when missing). A pull
 * holds it shared from its first request until its ref index entry is written, so a blob it
 * downloaded or found present cannot vanish before its manifest makes it reachable; whoever
 * deletes blobs (prune) holds it exclusive and decides what is garbage under it. With wait
 * false and the lock taken the other way, *fd is -1 (not an error). */
int oci_store_lock_blobs(const struct oci_store *store, bool exclusive, bool wait, int *fd,
                         struct shed_err *err);
void oci_store_unlock_blobs(int fd);
/* Whether someone holds the blob lock now (a pull in progress); creates nothing. */
int oci_store_blobs_busy(const struct oci_store *store, bool *busy, struct shed_err *err);

/* ---- walking the store (disk accounting and pruning) ------------------------------------ */

/* Calls visit for every entry of the ref index (in no particular order). digest is NULL when
 * an entry exists but cannot be read (problem says why); entries removed meanwhile and torn
 * temporary files of an interrupted write are skipped. visit returning -1 stops the walk. */
typedef int (*oci_ref_visit_fn)(const char *canonical_ref, const char *digest,
                                const struct shed_err *problem, void *ctx, struct shed_err *err);
int oci_store_ref_foreach(const struct oci_store *store, oci_ref_visit_fn visit, void *ctx,
                          struct shed_err *err);

enum oci_blob_state {
    OCI_BLOB_STORED,  /* <hex>: a complete, verified blob */
    OCI_BLOB_PARTIAL, /* <name>.tmp: a download in progress or interrupted */
    OCI_BLOB_FOREIGN, /* anything else: not a blob the store wrote */
};

struct oci_blob_entry {
    const char *path;
    const char *digest; /* "sha256:<hex>" when the name is one; NULL otherwise */
    enum oci_blob_state state;
};

/* Calls visit for every file of the blob store, sorted by name. */
typedef int (*oci_blob_visit_fn)(const struct oci_blob_entry *entry, void *ctx,
                                 struct shed_err *err);
int oci_store_blob_foreach(const struct oci_store *store, oci_blob_visit_fn visit, void *ctx,
                           struct shed_err *err);

/* The blobs reachable from manifests: what a pull needs again, so what must be kept. */
struct oci_blob_set;

int oci_blob_set_new(struct oci_blob_set **set, struct shed_err *err);
void oci_blob_set_free(struct oci_blob_set *set);
/* Adds digest and everything reachable from it: an image manifest's config and layers, an
 * index's manifests and theirs. Manifests are read and parsed as the puller reads them (same
 * parser, same size limit, digest verified). A manifest absent from the store adds only its
 * own digest. One that is there but cannot be read or parsed makes the set unknown: then
 * nobody can tell which blobs are garbage, and callers must keep them all. */
int oci_blob_set_add_reachable(struct oci_blob_set *set, const struct oci_store *store,
                               const char *digest, struct shed_err *err);
/* The same for every entry of the ref index; an entry that cannot be read makes the set
 * unknown. */
int oci_blob_set_add_ref_index(struct oci_blob_set *set, const struct oci_store *store,
                               struct shed_err *err);
bool oci_blob_set_has(const struct oci_blob_set *set, const char *digest);
/* NULL when every manifest on the way was read, else what could not be (the first problem). */
const char *oci_blob_set_unknown_reason(const struct oci_blob_set *set);

/* ---- images (a parsed single-platform manifest) --------------------------------------- */

enum oci_compression { OCI_COMPRESSION_NONE, OCI_COMPRESSION_GZIP, OCI_COMPRESSION_ZSTD };

struct oci_layer {
    char digest[DIGEST_STRING_LEN + 1];
    uint64_t size; /* compressed size as in the manifest */
    char *media_type;
    enum oci_compression compression;
};

struct oci_image {
    char manifest_digest[DIGEST_STRING_LEN + 1];
    char *manifest_media_type;
    char config_digest[DIGEST_STRING_LEN + 1];
    uint64_t config_size;
    size_t layer_count;
    struct oci_layer *layers; /* bottom first */
};

/* Parses a manifest already in the store (after oci_pull). Fails with SHED_E_UNSUPPORTED on
 * foreign or unknown layer media types. */
int oci_image_load(const struct oci_store *store, const char *manifest_digest,
                   struct oci_image *image, struct shed_err *err);
void oci_image_free(struct oci_image *image);

/* ---- images from files (shed-server import) -------------------------------------------- */

/* Reads the blob digest of an image's source (an archive, a layout directory): at most
 * max_len bytes, or fail. The caller verifies the digest. */
typedef int (*oci_source_read_fn)(void *ctx, const char *digest, size_t max_len, char **data,
                                  size_t *len, struct shed_err *err);
/* The image an OCI layout's index.json names (the one entry, else the platform's; an index
 * entry is followed once), read through read, verified, and its manifest put in the store. */
int oci_layout_import_manifest(struct oci_store *store, const char *index_json, size_t len,
                               const char *platform, oci_source_read_fn read, void *ctx,
                               char manifest_digest[DIGEST_STRING_LEN + 1], struct shed_err *err);
/* rootfs.diff_ids of an image config (OCI or Docker), bottom layer first; malloc'd. */
int oci_config_diff_ids(const char *body, size_t len, char (**diff_ids)[DIGEST_STRING_LEN + 1],
                        size_t *count, struct shed_err *err);
/* The minimal config of an image that has none (a rootfs tarball): os and architecture of
 * platform ("os/arch"), the diff_ids, nothing else; stored, *digest and *size set. */
int oci_store_add_image_config(struct oci_store *store, const char *platform,
                               const char (*diff_ids)[DIGEST_STRING_LEN + 1], size_t count,
                               char digest[DIGEST_STRING_LEN + 1], uint64_t *size,
                               struct shed_err *err);
/* An OCI image manifest of the config and layers (digest, size and compression of each
 * used), stored; *digest is the image's manifest digest from then on. */
int oci_store_add_image_manifest(struct oci_store *store, const char *config_digest,
                                 uint64_t config_size, const struct oci_layer *layers, size_t count,
                                 char digest[DIGEST_STRING_LEN + 1], struct shed_err *err);

/* ---- pulling ------------------------------------------------------------------------- */

/* Initialises libcurl; call once from main (before any thread starts) in every program that
 * uses oci_pull or oci_resolve. */
int oci_global_init(struct shed_err *err);

enum oci_progress_event {
    OCI_PROGRESS_MANIFEST,    /* manifest resolved; image is filled */
    OCI_PROGRESS_LAYER_BYTES, /* bytes arrived for layer index */
    OCI_PROGRESS_LAYER_DONE,  /* layer index verified and stored (or already present) */
};

struct oci_progress {
    enum oci_progress_event event;
    size_t layer_index;
    const struct oci_image *image;
    uint64_t layer_bytes_done, layer_bytes_total;
    uint64_t bytes_done, bytes_total; /* all layers of the image */
    bool already_present;             /* LAYER_DONE for a blob we did not fetch */
};

typedef void (*oci_progress_fn)(const struct oci_progress *progress, void *ctx);

/* The CA file the certificate of the server at authority ("host" or "host:port", as in a
 * reference or URL) must chain to, or NULL for the system's CAs alone. */
typedef const char *(*oci_registry_ca_fn)(const char *authority, const void *ctx);

struct oci_pull_opts {
    const char *platform;                   /* "os/arch[/variant]"; NULL = the host's */
    const char *creds;                      /* "user:pass" or NULL */
    const char *docker_config;              /* path of config.json; NULL = ~/.docker/config.json */
    const char *const *insecure_registries; /* NULL-terminated list of hosts[:port] using HTTP */
    /* Extra CAs per server (server.yaml registry_ca): a registry with one is spoken to over
     * HTTPS even on loopback. NULL: none. */
    oci_registry_ca_fn registry_ca;
    const void *registry_ca_ctx;
    unsigned max_parallel; /* parallel layer downloads; 0 = default */
    oci_progress_fn progress;
    void *progress_ctx;
    volatile int *cancel; /* when non-NULL and set non-zero: stop with SHED_E_INTERRUPTED */
    /* Limits of a hostile or broken registry; 0 = the default in parentheses. */
    unsigned timeout_seconds;    /* the whole pull or resolve, retries included (none) */
    long low_speed_limit;        /* bytes/s under which, for ... (1024) */
    long low_speed_time;         /* ... this many seconds, an attempt is abandoned (60) */
    uint64_t min_progress_bytes; /* an attempt that moved fewer bytes of a blob (and did not
                                  * finish it) counts against the retry limit (64 KiB) */
    uint64_t max_layer_bytes;    /* a manifest declaring a larger layer is refused (no cap) */
    uint64_t max_image_bytes;    /* ... or more bytes of layers in all (no cap) */
};

struct oci_pull_result {
    struct oci_image image;
    uint64_t bytes_fetched; /* blob bytes transferred over the network (0 on a re-pull) */
};

/* Resolves ref, fetches manifest, config and every missing layer into the store, records
 * ref → manifest digest in the ref index. Holds the store's blob lock shared throughout (see
 * oci_store_lock_blobs). Before any blob is fetched the declared sizes are checked against
 * max_layer_bytes/max_image_bytes and the free space of the store (SHED_E_NO_SPACE); a blob
 * is never written past its declared size. */
int oci_pull(struct oci_store *store, const char *ref, const struct oci_pull_opts *opts,
             struct oci_pull_result *result, struct shed_err *err);
void oci_pull_result_free(struct oci_pull_result *result);

/* One manifest request: the digest the ref points at now, for the platform (for an index,
 * the platform's manifest digest). Used for cache freshness. */
int oci_resolve(const char *ref, const struct oci_pull_opts *opts,
                char digest[DIGEST_STRING_LEN + 1], struct shed_err *err);

#endif
