/* shed-server import: an image from a file instead of a registry, made a variant of the image
 * cache through the same converter as a pull.
 *
 * Accepted inputs (IMAGE_IMPORT_AUTO tells them apart by their members):
 *   docker-archive  `docker save` / `podman save` / skopeo docker-archive: manifest.json, the
 *                   config and layer tars (the archive and the layers maybe compressed)
 *   oci-archive     a tar of an OCI image layout (oci-layout, index.json, blobs/)
 *   oci             an OCI image layout directory
 *   tarball         a plain root filesystem tar (`docker import` semantics: one layer, a
 *                   minimal config), plain, gzip or zstd
 *
 * Every blob goes into the content store (oci/) with its digest verified: OCI blobs against
 * their descriptors, docker-archive layers against the config's diff_ids; docker-archive and
 * tarball images get an OCI manifest built for them. The variant NAME is then converted (or
 * linked, when the content store has that manifest digest at this size) exactly like a pulled
 * one, and its .source records that it was imported, from what, and the manifest digest.
 * Imported variants are not in server.yaml: `images ls` lists them as "imported", a create can
 * name them, prune keeps them (only `images rm` removes one). */
#ifndef SHED_IMAGED_IMPORT_H
#define SHED_IMAGED_IMPORT_H

#include "config/config.h"
#include "imaged/cache.h"

enum image_import_kind {
    IMAGE_IMPORT_AUTO,
    IMAGE_IMPORT_DOCKER_ARCHIVE,
    IMAGE_IMPORT_OCI_ARCHIVE,
    IMAGE_IMPORT_OCI_LAYOUT,
    IMAGE_IMPORT_TARBALL,
};

/* "docker-archive", "oci-archive", "oci", "tarball" (also the prefixes of the recorded
 * source); "auto" for AUTO. */
const char *image_import_kind_name(enum image_import_kind kind);
/* The kind of a name as above; -1 for an unknown one. */
int image_import_kind_from_name(const char *name);

struct image_import_result {
    enum image_import_kind kind; /* what the input turned out to be */
    char manifest_digest[DIGEST_STRING_LEN + 1];
    size_t layer_count;
    uint64_t bytes_imported; /* blob bytes copied into the store (0 for blobs already there) */
    char *source;            /* what .source records: "<kind>:<absolute path>"; malloc'd */
    struct image_ensure_result variant;
};

void image_import_result_free(struct image_import_result *result);

/* Imports path as the variant name (a valid variant name that server.yaml does not use;
 * an existing imported or discovered variant of that name is replaced). opts: log and
 * progress (phase "import": bytes copied; then "convert"), cancel. */
int image_import(const struct shed_config *config, const char *path, const char *name,
                 enum image_import_kind kind, const struct image_ensure_opts *opts,
                 struct image_import_result *result, struct shed_err *err);

#endif
