/* Shared by import.c (kinds, OCI layouts, tarballs, installing) and import_docker.c.
 * Private to imaged/. */
#ifndef SHED_IMAGED_IMPORT_INTERNAL_H
#define SHED_IMAGED_IMPORT_INTERNAL_H

#include "import.h"
#include "import_source.h"
#include "oci/oci.h"

struct import_run {
    const struct shed_config *config;
    const char *name;
    const struct image_ensure_opts *opts;
    struct import_source *source; /* NULL for a tarball (the file is the layer) */
    const char *path;
    struct oci_store *store;
    uint64_t bytes_total, bytes_done; /* progress of the blob copies */
    struct image_import_result *result;
};

/* One blob to bring from the source into the store. */
struct import_blob {
    const char *member;                 /* its name in the source */
    const char *expected_digest;        /* NULL: the content tells */
    uint64_t expected_size;             /* UINT64_MAX: unknown (the member's size bounds it) */
    char digest[DIGEST_STRING_LEN + 1]; /* out */
    uint64_t size;                      /* out */
    enum oci_compression compression;   /* out: from the first bytes */
};

/* Copies the blobs in one pass over the source, each verified (digest and size when
 * expected), skipping those the store has already. Duplicated members are read once. */
int import_copy_blobs(struct import_run *run, struct import_blob *blobs, size_t count,
                      struct shed_err *err);
/* The diff_id of a stored layer blob: its digest when plain, else the digest of its
 * decompressed tar stream. */
int import_diff_id(struct import_run *run, const struct import_blob *blob,
                   char diff_id[DIGEST_STRING_LEN + 1], struct shed_err *err);

/* docker-archive: manifest.json → config and layers in the store, an OCI manifest for them.
 * *manifest_digest on success. */
int import_docker_archive(struct import_run *run, char manifest_digest[DIGEST_STRING_LEN + 1],
                          struct shed_err *err);

#endif
