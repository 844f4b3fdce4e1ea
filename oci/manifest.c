/* Manifests and indexes (OCI and Docker schema 2): kind detection, parsing into oci_image,
 * platform selection, and oci_image_load from the store. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci.h"
#include "oci_private.h"

struct layer_type {
    const char *media_type;
    enum oci_compression compression;
};

static const struct layer_type layer_types[] = {
    {"application/vnd.oci.image.layer.v1.tar", OCI_COMPRESSION_NONE},
    {"application/vnd.oci.image.layer.v1.tar+gzip", OCI_COMPRESSION_GZIP},
    {"application/vnd.oci.image.layer.v1.tar+zstd", OCI_COMPRESSION_ZSTD},
    {"application/vnd.docker.image.rootfs.diff.tar", OCI_COMPRESSION_NONE},
    {"application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_COMPRESSION_GZIP},
    {"application/vnd.docker.image.rootfs.diff.tar.zstd", OCI_COMPRESSION_ZSTD},
};

static bool layer_type_is_foreign(const char *media_type)
{
    return strstr(media_type, "foreign") != NULL || strstr(media_type, "nondistributable") != NULL;
}

static int layer_compression_of(const char *media_type, enum oci_compression *compression,
                                struct shed_err *err)
{
    for (size_t i = 0; i < sizeof layer_types / sizeof layer_types[0]; i++) {
        if (strcmp(media_type, layer_types[i].media_type) == 0) {
            *compression = layer_types[i].compression;
            return 0;
        }
    }
    if (layer_type_is_foreign(media_type))
        return shed_errf(err, SHED_E_UNSUPPORTED,
                         "foreign (non-distributable) layer of type %s "
                         "is not supported: its content is not in the registry",
                         media_type);
    return shed_errf(err, SHED_E_UNSUPPORTED,
                     "unsupported layer media type %s (supported: "
                     "tar, tar+gzip, tar+zstd)",
                     media_type);
}

static int json_load(const char *body, size_t len, json_t **root, struct shed_err *err)
{
    json_error_t jerr;
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (*root == NULL || !json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return shed_errf(err, SHED_E_INVALID_IMAGE, "manifest is not a JSON object (%s)",
                         jerr.text);
    }
    return 0;
}

int manifest_kind_of(const char *content_type, const char *body, size_t len,
                     enum manifest_kind *kind, struct shed_err *err)
{
    cleanup_json_decref json_t *root = NULL;
    if (json_load(body, len, &root, err) < 0)
        return -1;
    /* The body's own mediaType wins over Content-Type (some registries answer a generic
     * type); without either, the shape decides. */
    const char *type = json_string_value(json_object_get(root, "mediaType"));
    if (type == NULL)
        type = content_type;
    json_t *schema = json_object_get(root, "schemaVersion");
    if (json_integer_value(schema) == 1 ||
        (type != NULL && (strncmp(type, MEDIA_DOCKER_SCHEMA1, strlen(MEDIA_DOCKER_SCHEMA1)) == 0 ||
                          strcmp(type, MEDIA_DOCKER_SCHEMA1_SIGNED) == 0)))
        return shed_errf(err, SHED_E_UNSUPPORTED, "Docker schema 1 manifests are not supported");
    if (json_is_array(json_object_get(root, "manifests")) ||
        (type != NULL &&
         (strcmp(type, MEDIA_OCI_INDEX) == 0 || strcmp(type, MEDIA_DOCKER_LIST) == 0))) {
        *kind = MANIFEST_KIND_INDEX;
        return 0;
    }
    if (json_is_array(json_object_get(root, "layers"))) {
        *kind = MANIFEST_KIND_IMAGE;
        return 0;
    }
    return shed_errf(err, SHED_E_UNSUPPORTED, "unsupported manifest type %s",
                     type != NULL ? type : "(none)");
}

static int descriptor_read(json_t *desc, const char *what, char digest[DIGEST_STRING_LEN + 1],
                           uint64_t *size, const char **media_type, struct shed_err *err)
{
    const char *d = json_string_value(json_object_get(desc, "digest"));
    json_t *s = json_object_get(desc, "size");
    if (!json_is_object(desc) || d == NULL || !json_is_integer(s) || json_integer_value(s) < 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "manifest has a malformed %s descriptor", what);
    if (!digest_is_valid(d))
        return shed_errf(err, SHED_E_UNSUPPORTED, "%s digest \"%s\" is not a sha256 digest", what,
                         d);
    memcpy(digest, d, DIGEST_STRING_LEN + 1);
    *size = (uint64_t)json_integer_value(s);
    if (media_type != NULL)
        *media_type = json_string_value(json_object_get(desc, "mediaType"));
    return 0;
}

static int layers_parse(json_t *layers, struct oci_image *image, struct shed_err *err)
{
    image->layer_count = json_array_size(layers);
    image->layers = calloc(image->layer_count ? image->layer_count : 1, sizeof *image->layers);
    if (image->layers == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < image->layer_count; i++) {
        struct oci_layer *layer = &image->layers[i];
        const char *media_type = NULL;
        if (descriptor_read(json_array_get(layers, i), "layer", layer->digest, &layer->size,
                            &media_type, err) < 0)
            return -1;
        if (media_type == NULL)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "layer %zu has no media type", i);
        if (layer_compression_of(media_type, &layer->compression, err) < 0)
            return shed_err_prefix(err, "layer %zu (%s)", i, layer->digest);
        if ((layer->media_type = strdup(media_type)) == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

int manifest_parse_image(const char *body, size_t len, const char *digest, struct oci_image *image,
                         struct shed_err *err)
{
    memset(image, 0, sizeof *image);
    cleanup_json_decref json_t *root = NULL;
    if (json_load(body, len, &root, err) < 0)
        return -1;
    if (json_integer_value(json_object_get(root, "schemaVersion")) != 2)
        return shed_errf(err, SHED_E_UNSUPPORTED, "manifest schemaVersion is not 2");
    json_t *layers = json_object_get(root, "layers");
    if (!json_is_array(layers))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "manifest has no layers array");
    const char *type = json_string_value(json_object_get(root, "mediaType"));
    image->manifest_media_type = strdup(type != NULL ? type : MEDIA_OCI_MANIFEST);
    if (image->manifest_media_type == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    snprintf(image->manifest_digest, sizeof image->manifest_digest, "%s", digest);
    if (descriptor_read(json_object_get(root, "config"), "config", image->config_digest,
                        &image->config_size, NULL, err) < 0 ||
        layers_parse(layers, image, err) < 0) {
        oci_image_free(image);
        return -1;
    }
    return 0;
}

int oci_image_load(const struct oci_store *store, const char *manifest_digest,
                   struct oci_image *image, struct shed_err *err)
{
    memset(image, 0, sizeof *image);
    cleanup_free char *body = NULL;
    size_t len = 0;
    if (store_read_manifest(store, manifest_digest, &body, &len, err) < 0) {
        if (shed_err_is_errno(err, ENOENT))
            return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "manifest %s is not in the store",
                             manifest_digest);
        return -1;
    }
    enum manifest_kind kind;
    if (manifest_kind_of(NULL, body, len, &kind, err) < 0)
        return -1;
    if (kind != MANIFEST_KIND_IMAGE)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "%s is an index, not an image manifest",
                         manifest_digest);
    return manifest_parse_image(body, len, manifest_digest, image, err);
}

void oci_image_free(struct oci_image *image)
{
    if (image == NULL)
        return;
    for (size_t i = 0; image->layers != NULL && i < image->layer_count; i++)
        free(image->layers[i].media_type);
    free(image->layers);
    free(image->manifest_media_type);
    memset(image, 0, sizeof *image);
}

int index_list_manifests(const char *body, size_t len, char (**digests)[DIGEST_STRING_LEN + 1],
                         size_t *count, struct shed_err *err)
{
    *digests = NULL;
    *count = 0;
    cleanup_json_decref json_t *root = NULL;
    if (json_load(body, len, &root, err) < 0)
        return -1;
    json_t *manifests = json_object_get(root, "manifests");
    if (!json_is_array(manifests))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "index has no manifests array");
    size_t n = json_array_size(manifests);
    cleanup_free char(*list)[DIGEST_STRING_LEN + 1] = calloc(n ? n : 1, sizeof *list);
    if (list == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        uint64_t size;
        if (descriptor_read(json_array_get(manifests, i), "index entry", list[i], &size, NULL,
                            err) < 0)
            return -1;
    }
    *digests = steal_pointer(&list);
    *count = n;
    return 0;
}

/* ---- platforms ------------------------------------------------------------------------- */

struct platform {
    char os[32], arch[32], variant[32];
};

void platform_of_host(char *buf, size_t len)
{
    static const struct {
        const char *machine, *platform;
    } table[] = {
        {"x86_64", "linux/amd64"},    {"aarch64", "linux/arm64"},   {"arm64", "linux/arm64"},
        {"armv7l", "linux/arm/v7"},   {"armv6l", "linux/arm/v6"},   {"i686", "linux/386"},
        {"i386", "linux/386"},        {"ppc64le", "linux/ppc64le"}, {"s390x", "linux/s390x"},
        {"riscv64", "linux/riscv64"}, {"mips64", "linux/mips64le"},
    };
    struct utsname uts;
    if (uname(&uts) == 0)
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (strcmp(uts.machine, table[i].machine) == 0) {
                snprintf(buf, len, "%s", table[i].platform);
                return;
            }
    snprintf(buf, len, "linux/%s", uname(&uts) == 0 ? uts.machine : "amd64");
}

static int platform_parse(const char *text, struct platform *p, struct shed_err *err)
{
    memset(p, 0, sizeof *p);
    char extra[2] = "";
    int n = sscanf(text, "%31[^/]/%31[^/]/%31[^/]/%1s", p->os, p->arch, p->variant, extra);
    if (n < 2 || n > 3 || strlen(text) >= 96)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "invalid platform \"%s\" (expected "
                         "os/arch[/variant], e.g. linux/arm64)",
                         text);
    return 0;
}

/* arm64 images rarely name their variant; "v8" is what they would say. */
static bool variant_matches(const struct platform *want, const char *arch, const char *variant)
{
    if (want->variant[0] == '\0')
        return true;
    if (variant == NULL || *variant == '\0')
        return strcmp(arch, "arm64") == 0 && strcmp(want->variant, "v8") == 0;
    return strcmp(want->variant, variant) == 0;
}

static void append_platform(char *list, size_t size, const char *os, const char *arch,
                            const char *variant)
{
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s%s/%s%s%s", used ? ", " : "", os, arch,
             variant && *variant ? "/" : "", variant && *variant ? variant : "");
}

int index_select_platform(const char *body, size_t len, const char *platform_text,
                          char digest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    char host[64];
    if (platform_text == NULL) {
        platform_of_host(host, sizeof host);
        platform_text = host;
    }
    struct platform want;
    if (platform_parse(platform_text, &want, err) < 0)
        return -1;
    cleanup_json_decref json_t *root = NULL;
    if (json_load(body, len, &root, err) < 0)
        return -1;
    json_t *manifests = json_object_get(root, "manifests");
    char available[400] = "";
    size_t i;
    json_t *entry;
    json_array_foreach(manifests, i, entry)
    {
        json_t *plat = json_object_get(entry, "platform");
        const char *os = json_string_value(json_object_get(plat, "os"));
        const char *arch = json_string_value(json_object_get(plat, "architecture"));
        const char *variant = json_string_value(json_object_get(plat, "variant"));
        /* BuildKit attestations hang off the index as unknown/unknown entries. */
        if (os == NULL || arch == NULL ||
            (strcmp(os, "unknown") == 0 && strcmp(arch, "unknown") == 0))
            continue;
        if (strcmp(os, want.os) == 0 && strcmp(arch, want.arch) == 0 &&
            variant_matches(&want, arch, variant)) {
            uint64_t size;
            return descriptor_read(entry, "index entry", digest, &size, NULL, err);
        }
        append_platform(available, sizeof available, os, arch, variant);
    }
    return shed_errf(err, SHED_E_UNSUPPORTED, "no image for platform %s; available: %s",
                     platform_text, available[0] ? available : "none");
}
