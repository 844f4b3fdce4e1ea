/* Fuzz target: the manifest and index parsers (what a registry answers to a manifest GET).
 * The first byte picks the Content-Type the registry claims; the rest is the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

static const char *const content_types[] = {
    NULL,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "text/html",
};

#define DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000000"

static void parse_image(const char *body, size_t len)
{
    struct oci_image image;
    memset(&image, 0, sizeof image);
    struct shed_err err = {0};
    if (manifest_parse_image(body, len, DIGEST, &image, &err) == 0) {
        for (size_t i = 0; i < image.layer_count; i++)
            if (!digest_is_valid(image.layers[i].digest))
                abort(); /* a parsed layer always has a usable digest */
        oci_image_free(&image);
    }
}

static void parse_index(const char *body, size_t len)
{
    char(*digests)[DIGEST_STRING_LEN + 1] = NULL;
    size_t count = 0;
    struct shed_err err = {0};
    if (index_list_manifests(body, len, &digests, &count, &err) == 0) {
        for (size_t i = 0; i < count; i++)
            if (!digest_is_valid(digests[i]))
                abort();
        free(digests);
    }
    static const char *const platforms[] = {NULL, "linux/amd64", "linux/arm64/v8", "linux/arm"};
    for (size_t i = 0; i < sizeof platforms / sizeof platforms[0]; i++) {
        char digest[DIGEST_STRING_LEN + 1];
        if (index_select_platform(body, len, platforms[i], digest, &err) == 0 &&
            !digest_is_valid(digest))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *type = content_types[data[0] % (sizeof content_types / sizeof content_types[0])];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    enum manifest_kind kind;
    struct shed_err err = {0};
    if (manifest_kind_of(type, body, len, &kind, &err) == 0) {
        if (kind == MANIFEST_KIND_IMAGE)
            parse_image(body, len);
        else
            parse_index(body, len);
    }
    /* The parsers are also used on what the kind check would not let through. */
    parse_image(body, len);
    parse_index(body, len);
    return 0;
}
