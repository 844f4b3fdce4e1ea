/* docker-archive (`docker save`, `podman save`, skopeo docker-archive:): manifest.json names
 * one image's config and layer tars. Nothing in it is trusted: the config is stored under
 * the digest of its bytes, each layer must hash (decompressed, when it is compressed) to the
 * config's diff_id at its position, and an OCI manifest is built over what was stored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "import_internal.h"

#define MANIFEST_JSON_MAX (8u << 20)
#define CONFIG_MAX (32u << 20)
#define MAX_LAYERS 1024

struct docker_image {
    json_t *root;
    const char *config;  /* member name, borrowed from root */
    const char **layers; /* member names, borrowed */
    size_t layer_count;
};

static void docker_image_clear(struct docker_image *image)
{
    free(image->layers);
    json_decref(image->root);
    memset(image, 0, sizeof *image);
}

/* "a:1, b:2" of every image of the archive, for the error that says there are several. */
static void list_tags(json_t *images, char *out, size_t len)
{
    out[0] = '\0';
    size_t i, used = 0;
    json_t *image;
    json_array_foreach(images, i, image)
    {
        const char *tag = json_string_value(json_array_get(json_object_get(image, "RepoTags"), 0));
        used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s", i ? ", " : "",
                                 tag != NULL ? tag : "(untagged)");
        if (used >= len)
            break;
    }
}

static int parse_manifest_json(const struct import_run *run, const char *text, size_t len,
                               struct docker_image *image, struct shed_err *err)
{
    json_error_t jerr;
    image->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_array(image->root) || json_array_size(image->root) == 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "%s: manifest.json is not a list of images (%s)", run->path,
                         image->root == NULL ? jerr.text : "wrong shape");
    if (json_array_size(image->root) > 1) {
        char tags[300];
        list_tags(image->root, tags, sizeof tags);
        return shed_errf(err, SHED_E_UNSUPPORTED,
                         "%s holds %zu images (%s); import takes one: save one image per archive",
                         run->path, json_array_size(image->root), tags);
    }
    json_t *entry = json_array_get(image->root, 0);
    json_t *layers = json_object_get(entry, "Layers");
    image->config = json_string_value(json_object_get(entry, "Config"));
    if (image->config == NULL || !json_is_array(layers))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: manifest.json has no Config or Layers",
                         run->path);
    image->layer_count = json_array_size(layers);
    if (image->layer_count > MAX_LAYERS)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: more than %d layers", run->path,
                         MAX_LAYERS);
    image->layers = calloc(image->layer_count ? image->layer_count : 1, sizeof *image->layers);
    if (image->layers == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < image->layer_count; i++)
        if ((image->layers[i] = json_string_value(json_array_get(layers, i))) == NULL)
            return shed_errf(err, SHED_E_INVALID_IMAGE,
                             "%s: layer %zu of manifest.json is not "
                             "a file name",
                             run->path, i + 1);
    return 0;
}

/* The config into the store; its diff_ids say what each layer must hash to. */
static int import_config(struct import_run *run, const struct docker_image *image,
                         char digest[DIGEST_STRING_LEN + 1], uint64_t *size,
                         char (**diff_ids)[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    const char *names[] = {image->config};
    char *text = NULL;
    size_t len = 0;
    if (import_source_read(run->source, names, 1, CONFIG_MAX, &text, &len, err) < 0)
        return -1;
    if (text == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s has no member %s (the config)", run->path,
                         image->config);
    size_t count = 0;
    int rc = oci_config_diff_ids(text, len, diff_ids, &count, err);
    if (rc == 0 && count != image->layer_count)
        rc = shed_errf(err, SHED_E_INVALID_IMAGE,
                       "%s: the config lists %zu layers, manifest.json %zu", run->path, count,
                       image->layer_count);
    if (rc == 0)
        rc = oci_store_add_blob(run->store, text, len, digest, err);
    *size = len;
    free(text);
    return rc;
}

static int verify_layer(struct import_run *run, const struct import_blob *blob, size_t index,
                        const char *diff_id, struct shed_err *err)
{
    char actual[DIGEST_STRING_LEN + 1];
    if (import_diff_id(run, blob, actual, err) < 0)
        return -1;
    if (strcmp(actual, diff_id) != 0)
        return shed_errf(err, SHED_E_INTEGRITY,
                         "%s: layer %zu (%s) has content %s where the config says %s: the "
                         "archive is corrupt",
                         run->path, index + 1, blob->member, actual, diff_id);
    return 0;
}

static int import_layers(struct import_run *run, const struct docker_image *image,
                         const char (*diff_ids)[DIGEST_STRING_LEN + 1], struct oci_layer *layers,
                         struct shed_err *err)
{
    struct import_blob *blobs = calloc(image->layer_count ? image->layer_count : 1, sizeof *blobs);
    if (blobs == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < image->layer_count; i++)
        blobs[i] = (struct import_blob){.member = image->layers[i], .expected_size = UINT64_MAX};
    int rc = import_copy_blobs(run, blobs, image->layer_count, err);
    for (size_t i = 0; rc == 0 && i < image->layer_count; i++) {
        rc = verify_layer(run, &blobs[i], i, diff_ids[i], err);
        memcpy(layers[i].digest, blobs[i].digest, sizeof layers[i].digest);
        layers[i].size = blobs[i].size;
        layers[i].compression = blobs[i].compression;
    }
    free(blobs);
    return rc;
}

int import_docker_archive(struct import_run *run, char manifest_digest[DIGEST_STRING_LEN + 1],
                          struct shed_err *err)
{
    const char *names[] = {"manifest.json"};
    char *text = NULL;
    size_t len = 0;
    if (import_source_read(run->source, names, 1, MANIFEST_JSON_MAX, &text, &len, err) < 0)
        return -1;
    if (text == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s has no manifest.json", run->path);
    struct docker_image image = {0};
    int rc = parse_manifest_json(run, text, len, &image, err);
    free(text);
    char config_digest[DIGEST_STRING_LEN + 1];
    uint64_t config_size = 0;
    cleanup_free char(*diff_ids)[DIGEST_STRING_LEN + 1] = NULL;
    cleanup_free struct oci_layer *layers =
        rc == 0 ? calloc(image.layer_count ? image.layer_count : 1, sizeof *layers) : NULL;
    if (rc == 0 && layers == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (rc == 0)
        rc = import_config(run, &image, config_digest, &config_size, &diff_ids, err);
    if (rc == 0)
        rc = import_layers(run, &image, (const char(*)[DIGEST_STRING_LEN + 1]) diff_ids, layers,
                           err);
    if (rc == 0)
        rc = oci_store_add_image_manifest(run->store, config_digest, config_size, layers,
                                          image.layer_count, manifest_digest, err);
    run->result->layer_count = image.layer_count;
    docker_image_clear(&image);
    return rc;
}
