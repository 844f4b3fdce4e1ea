/* oci_pull and oci_resolve: reference → manifest (through an index when there is one) →
 * config and layers in the store → ref index entry. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci_private.h"

int oci_global_init(struct shed_err *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return shed_errf(err, SHED_E_REGISTRY, "cannot initialise libcurl: %s",
                         curl_easy_strerror(rc));
    return 0;
}

/* What a reference resolved to: the image manifest, and the index it came through if any. */
struct resolved {
    char *index_body;
    size_t index_len;
    char index_digest[DIGEST_STRING_LEN + 1];
    char *manifest_body;
    size_t manifest_len;
    char manifest_digest[DIGEST_STRING_LEN + 1];
};

static void resolved_free(struct resolved *r)
{
    free(r->index_body);
    free(r->manifest_body);
    memset(r, 0, sizeof *r);
}

/* GETs a manifest and hashes the bytes received: Docker-Content-Digest is never trusted. */
static int get_manifest_verified(struct registry_client *client, const char *reference,
                                 const char *expected_digest, char **body, size_t *len,
                                 char **content_type, char digest[DIGEST_STRING_LEN + 1],
                                 struct shed_err *err)
{
    struct http_response response = {.retry_after_seconds = -1};
    if (registry_get_manifest(client, reference, &response, err) < 0) {
        http_response_free(&response);
        return -1;
    }
    int rc = 0;
    if (response.body == NULL || sha256_digest_of(response.body, response.body_len, digest) < 0)
        rc = shed_errf(err, SHED_E_REGISTRY, "registry %s sent an empty manifest for %s",
                       registry_name(client), reference);
    else if (expected_digest != NULL && strcmp(digest, expected_digest) != 0)
        rc = shed_errf(err, SHED_E_INTEGRITY,
                       "manifest %s from %s has digest %s: it does not "
                       "match the pinned digest",
                       expected_digest, registry_name(client), digest);
    if (rc == 0) {
        *body = steal_pointer(&response.body);
        *len = response.body_len;
        if (content_type != NULL)
            *content_type = steal_pointer(&response.content_type);
    }
    http_response_free(&response);
    return rc;
}

/* The platform's manifest named by an index: from the store when a previous pull kept it
 * (so a re-pull costs one request), else from the registry. */
static int load_platform_manifest(struct registry_client *client, struct oci_store *store,
                                  struct resolved *r, struct shed_err *err)
{
    if (store != NULL && oci_store_has_blob(store, r->manifest_digest) &&
        store_read_manifest(store, r->manifest_digest, &r->manifest_body, &r->manifest_len, NULL) ==
            0)
        return 0;
    char digest[DIGEST_STRING_LEN + 1];
    cleanup_free char *content_type = NULL;
    if (get_manifest_verified(client, r->manifest_digest, r->manifest_digest, &r->manifest_body,
                              &r->manifest_len, &content_type, digest, err) < 0)
        return -1;
    enum manifest_kind kind;
    if (manifest_kind_of(content_type, r->manifest_body, r->manifest_len, &kind, err) < 0)
        return -1;
    if (kind != MANIFEST_KIND_IMAGE)
        return shed_errf(err, SHED_E_UNSUPPORTED, "index entry %s is itself an index",
                         r->manifest_digest);
    return 0;
}

/* store == NULL: only find the digest (one request), as oci_resolve does. */
static int resolve(struct registry_client *client, const struct oci_ref *ref,
                   const struct oci_pull_opts *opts, struct oci_store *store, struct resolved *r,
                   struct shed_err *err)
{
    memset(r, 0, sizeof *r);
    char *body = NULL;
    size_t len = 0;
    char digest[DIGEST_STRING_LEN + 1];
    cleanup_free char *content_type = NULL;
    if (get_manifest_verified(client, oci_ref_manifest_reference(ref), ref->digest, &body, &len,
                              &content_type, digest, err) < 0)
        return -1;
    enum manifest_kind kind;
    if (manifest_kind_of(content_type, body, len, &kind, err) < 0) {
        free(body);
        return -1;
    }
    if (kind == MANIFEST_KIND_IMAGE) {
        r->manifest_body = body;
        r->manifest_len = len;
        memcpy(r->manifest_digest, digest, sizeof digest);
        return 0;
    }
    r->index_body = body;
    r->index_len = len;
    memcpy(r->index_digest, digest, sizeof digest);
    if (index_select_platform(body, len, opts ? opts->platform : NULL, r->manifest_digest, err) < 0)
        return shed_err_prefix(err, "%s", oci_ref_manifest_reference(ref));
    if (store == NULL)
        return 0;
    return load_platform_manifest(client, store, r, err);
}

static int open_client(const char *text, const struct oci_pull_opts *opts, struct oci_ref *ref,
                       struct registry_client **client, struct shed_err *err)
{
    if (oci_ref_parse(text, ref, err) < 0)
        return -1;
    if (registry_client_new(ref, opts, client, err) < 0) {
        oci_ref_free(ref);
        return -1;
    }
    return 0;
}

int oci_resolve(const char *text, const struct oci_pull_opts *opts,
                char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    struct oci_ref ref;
    struct registry_client *client;
    if (open_client(text, opts, &ref, &client, err) < 0)
        return -1;
    struct resolved r;
    int rc = resolve(client, &ref, opts, NULL, &r, err);
    if (rc == 0)
        memcpy(digest, r.manifest_digest, DIGEST_STRING_LEN + 1);
    resolved_free(&r);
    registry_client_free(client);
    oci_ref_free(&ref);
    return rc;
}

static void report_manifest(const struct oci_pull_opts *opts, const struct oci_image *image,
                            uint64_t bytes_total)
{
    if (opts == NULL || opts->progress == NULL)
        return;
    struct oci_progress info = {
        .event = OCI_PROGRESS_MANIFEST, .image = image, .bytes_total = bytes_total};
    opts->progress(&info, opts->progress_ctx);
}

/* The manifest's sizes are the registry's word: checked against the configured caps before
 * anything is fetched (the download itself then stops at the declared size). */
static int check_declared_sizes(const struct oci_image *image, const struct oci_pull_opts *opts,
                                struct shed_err *err)
{
    uint64_t max_layer = opts != NULL ? opts->max_layer_bytes : 0;
    uint64_t max_image = opts != NULL ? opts->max_image_bytes : 0;
    uint64_t total = 0;
    char size[32], limit[32];
    for (size_t i = 0; i < image->layer_count; i++) {
        uint64_t layer = image->layers[i].size;
        if (max_layer != 0 && layer > max_layer)
            return shed_errf(err, SHED_E_UNSUPPORTED,
                             "layer %s declares %s, more than max_layer_bytes (%s)",
                             image->layers[i].digest, format_size(layer, size, sizeof size),
                             format_size(max_layer, limit, sizeof limit));
        if (total + layer < total)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "layer sizes overflow");
        total += layer;
    }
    if (max_image != 0 && total > max_image)
        return shed_errf(err, SHED_E_UNSUPPORTED,
                         "the image's layers declare %s in all, more than max_image_bytes (%s)",
                         format_size(total, size, sizeof size),
                         format_size(max_image, limit, sizeof limit));
    return 0;
}

/* What still has to come over the network must fit on the store's filesystem. */
static int check_free_space(const struct oci_store *store, const struct oci_image *image,
                            struct shed_err *err)
{
    uint64_t needed = 0;
    for (size_t i = 0; i <= image->layer_count; i++) {
        const char *digest = i == 0 ? image->config_digest : image->layers[i - 1].digest;
        uint64_t size = i == 0 ? image->config_size : image->layers[i - 1].size;
        if (oci_store_has_blob(store, digest))
            continue;
        uint64_t partial = store_partial_bytes(store, digest);
        needed += partial < size ? size - partial : 0;
    }
    uint64_t free_bytes = 0;
    if (store_free_bytes(store, &free_bytes, err) < 0)
        return -1;
    if (needed <= free_bytes)
        return 0;
    char need_text[32], free_text[32];
    return shed_errf(err, SHED_E_NO_SPACE, "the image needs %s more in %s, which has %s free",
                     format_size(needed, need_text, sizeof need_text), oci_store_images_dir(store),
                     format_size(free_bytes, free_text, sizeof free_text));
}

/* Config and layers into the store, in parallel. */
static int fetch_image_blobs(struct registry_client *client, struct oci_store *store,
                             const struct oci_image *image, const struct oci_pull_opts *opts,
                             uint64_t *bytes_fetched, struct shed_err *err)
{
    struct blob_fetch *blobs = calloc(image->layer_count + 1, sizeof *blobs);
    if (blobs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    blobs[0] = (struct blob_fetch){image->config_digest, image->config_size, SIZE_MAX};
    struct fetch_progress progress = {.opts = opts, .image = image};
    for (size_t i = 0; i < image->layer_count; i++) {
        blobs[i + 1] = (struct blob_fetch){image->layers[i].digest, image->layers[i].size, i};
        progress.bytes_total += image->layers[i].size;
    }
    report_manifest(opts, image, progress.bytes_total);
    int rc = fetch_blobs(client, store, blobs, image->layer_count + 1, opts, &progress,
                         bytes_fetched, err);
    free(blobs);
    return rc;
}

/* Manifest (and index) land after every blob, so a manifest in the store means a complete
 * image; the ref index entry comes last. */
static int record_image(struct oci_store *store, const struct oci_ref *ref,
                        const struct resolved *r, struct shed_err *err)
{
    if (r->index_body != NULL &&
        store_put_blob(store, r->index_digest, r->index_body, r->index_len, err) < 0)
        return -1;
    if (store_put_blob(store, r->manifest_digest, r->manifest_body, r->manifest_len, err) < 0)
        return -1;
    cleanup_free char *canonical = oci_ref_format(ref);
    if (canonical == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return oci_store_ref_set(store, canonical, r->manifest_digest, err);
}

static int pull_with_client(struct oci_store *store, struct registry_client *client,
                            const struct oci_ref *ref, const struct oci_pull_opts *opts,
                            struct oci_pull_result *result, struct shed_err *err)
{
    struct resolved r;
    if (resolve(client, ref, opts, store, &r, err) < 0) {
        resolved_free(&r);
        return -1;
    }
    int rc = manifest_parse_image(r.manifest_body, r.manifest_len, r.manifest_digest,
                                  &result->image, err);
    if (rc == 0 && result->image.config_size > OCI_MAX_CONFIG_BYTES)
        rc = shed_errf(err, SHED_E_UNSUPPORTED, "image config of %llu bytes is too large",
                       (unsigned long long)result->image.config_size);
    if (rc == 0)
        rc = check_declared_sizes(&result->image, opts, err);
    if (rc == 0)
        rc = check_free_space(store, &result->image, err);
    if (rc == 0)
        rc = fetch_image_blobs(client, store, &result->image, opts, &result->bytes_fetched, err);
    if (rc == 0)
        rc = record_image(store, ref, &r, err);
    resolved_free(&r);
    return rc;
}

int oci_pull(struct oci_store *store, const char *text, const struct oci_pull_opts *opts,
             struct oci_pull_result *result, struct shed_err *err)
{
    memset(result, 0, sizeof *result);
    struct oci_ref ref;
    struct registry_client *client;
    if (open_client(text, opts, &ref, &client, err) < 0)
        return -1;
    /* Shared: pulls run side by side; prune's blob deletion waits for all of them. */
    int lock = -1;
    int rc = oci_store_lock_blobs(store, false, true, &lock, err);
    if (rc == 0)
        rc = pull_with_client(store, client, &ref, opts, result, err);
    oci_store_unlock_blobs(lock);
    if (rc < 0)
        oci_pull_result_free(result);
    registry_client_free(client);
    oci_ref_free(&ref);
    return rc;
}

void oci_pull_result_free(struct oci_pull_result *result)
{
    if (result == NULL)
        return;
    oci_image_free(&result->image);
    memset(result, 0, sizeof *result);
}
