/* Images that come from files instead of a registry (shed-server import): choosing the image
 * of an OCI layout's index.json with the puller's own parser and platform rule, reading the
 * layer list of an image config, and the OCI manifest and config built for images that come
 * without one (docker save archives, plain rootfs tarballs). What is built is deterministic:
 * the same input gives the same digests. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci_private.h"

#define MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
/* An index inside index.json (skopeo --all) is followed; deeper nesting is refused. */
#define MAX_INDEX_DEPTH 2

static const char *layer_media_type(enum oci_compression compression)
{
    switch (compression) {
    case OCI_COMPRESSION_GZIP: return "application/vnd.oci.image.layer.v1.tar+gzip";
    case OCI_COMPRESSION_ZSTD: return "application/vnd.oci.image.layer.v1.tar+zstd";
    case OCI_COMPRESSION_NONE: break;
    }
    return "application/vnd.oci.image.layer.v1.tar";
}

/* ---- an OCI layout's index.json -------------------------------------------------------- */

/* The one entry of an index, or the platform's. */
static int select_entry(const char *body, size_t len, const char *platform,
                        char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_free char(*entries)[DIGEST_STRING_LEN + 1] = NULL;
    size_t count = 0;
    if (index_list_manifests(body, len, &entries, &count, err) < 0)
        return -1;
    if (count == 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the index lists no image");
    /* skopeo's oci: and oci-archive: list one manifest without a platform. */
    if (count == 1) {
        memcpy(digest, entries[0], DIGEST_STRING_LEN + 1);
        return 0;
    }
    return index_select_platform(body, len, platform, digest, err);
}

/* A blob of the source, read and checked against its digest before anything trusts it. */
static int read_verified(oci_source_read_fn read, void *ctx, const char *digest, char **body,
                         size_t *len, struct shed_err *err)
{
    if (read(ctx, digest, OCI_MAX_MANIFEST_BYTES, body, len, err) < 0)
        return -1;
    char actual[DIGEST_STRING_LEN + 1];
    if (sha256_digest_of(*body, *len, actual) < 0)
        return shed_errf(err, SHED_E_IO, "sha256 failed");
    if (strcmp(actual, digest) != 0)
        return shed_errf(err, SHED_E_INTEGRITY, "blob %s has digest %s: the image is corrupt",
                         digest, actual);
    return 0;
}

int oci_layout_import_manifest(struct oci_store *store, const char *index_json, size_t len,
                               const char *platform, oci_source_read_fn read, void *ctx,
                               char manifest_digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_free char *body = NULL;
    size_t body_len = 0;
    const char *index = index_json;
    size_t index_len = len;
    char index_name[DIGEST_STRING_LEN + 1] = "index.json";
    for (int depth = 0; depth < MAX_INDEX_DEPTH; depth++) {
        char digest[DIGEST_STRING_LEN + 1];
        if (select_entry(index, index_len, platform, digest, err) < 0)
            return shed_err_prefix(err, "%s", index_name);
        free(body);
        body = NULL;
        if (read_verified(read, ctx, digest, &body, &body_len, err) < 0)
            return -1;
        enum manifest_kind kind;
        if (manifest_kind_of(NULL, body, body_len, &kind, err) < 0)
            return shed_err_prefix(err, "manifest %s", digest);
        memcpy(manifest_digest, digest, DIGEST_STRING_LEN + 1);
        if (kind == MANIFEST_KIND_IMAGE)
            return store_put_blob(store, digest, body, body_len, err);
        index = body;
        index_len = body_len;
        memcpy(index_name, digest, DIGEST_STRING_LEN + 1);
    }
    return shed_errf(err, SHED_E_UNSUPPORTED, "index %s: indexes nested deeper than %d",
                     manifest_digest, MAX_INDEX_DEPTH);
}

/* ---- image configs ----------------------------------------------------------------------- */

int oci_config_diff_ids(const char *body, size_t len, char (**diff_ids)[DIGEST_STRING_LEN + 1],
                        size_t *count, struct shed_err *err)
{
    *diff_ids = NULL;
    *count = 0;
    json_error_t jerr;
    cleanup_json_decref json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *ids = json_object_get(json_object_get(root, "rootfs"), "diff_ids");
    if (!json_is_array(ids))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the image config has no rootfs.diff_ids");
    size_t n = json_array_size(ids);
    cleanup_free char(*list)[DIGEST_STRING_LEN + 1] = calloc(n ? n : 1, sizeof *list);
    if (list == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        if (id == NULL || !digest_is_valid(id))
            return shed_errf(err, SHED_E_INVALID_IMAGE,
                             "diff_id %zu of the image config is not a sha256 digest", i);
        memcpy(list[i], id, DIGEST_STRING_LEN + 1);
    }
    *diff_ids = steal_pointer(&list);
    *count = n;
    return 0;
}

int oci_store_add_image_config(struct oci_store *store, const char *platform,
                               const char (*diff_ids)[DIGEST_STRING_LEN + 1], size_t count,
                               char digest[DIGEST_STRING_LEN + 1], uint64_t *size,
                               struct shed_err *err)
{
    char os[32] = "linux", arch[32] = "amd64";
    if (platform != NULL && sscanf(platform, "%31[^/]/%31[^/]", os, arch) != 2)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid platform \"%.40s\"", platform);
    cleanup_json_decref json_t *ids = json_array();
    for (size_t i = 0; ids != NULL && i < count; i++)
        if (json_array_append_new(ids, json_string(diff_ids[i])) < 0)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_json_decref json_t *config =
        ids != NULL ? json_pack("{s:s, s:s, s:{}, s:{s:s, s:O}}", "architecture", arch, "os", os,
                                "config", "rootfs", "type", "layers", "diff_ids", ids)
                    : NULL;
    cleanup_free char *text = config != NULL ? json_dumps(config, JSON_COMPACT) : NULL;
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    *size = strlen(text);
    return oci_store_add_blob(store, text, *size, digest, err);
}

/* ---- manifests ----------------------------------------------------------------------------- */

static json_t *descriptor(const char *media_type, const char *digest, uint64_t size)
{
    return json_pack("{s:s, s:s, s:I}", "mediaType", media_type, "digest", digest, "size",
                     (json_int_t)size);
}

int oci_store_add_image_manifest(struct oci_store *store, const char *config_digest,
                                 uint64_t config_size, const struct oci_layer *layers, size_t count,
                                 char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    cleanup_json_decref json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < count; i++)
        if (json_array_append_new(list, descriptor(layer_media_type(layers[i].compression),
                                                   layers[i].digest, layers[i].size)) < 0)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_json_decref json_t *manifest =
        list != NULL
            ? json_pack("{s:i, s:s, s:o, s:O}", "schemaVersion", 2, "mediaType", MEDIA_OCI_MANIFEST,
                        "config", descriptor(MEDIA_OCI_CONFIG, config_digest, config_size),
                        "layers", list)
            : NULL;
    cleanup_free char *text = manifest != NULL ? json_dumps(manifest, JSON_COMPACT) : NULL;
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return oci_store_add_blob(store, text, strlen(text), digest, err);
}
