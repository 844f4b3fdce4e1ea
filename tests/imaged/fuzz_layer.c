/* Fuzz target: the layer reader and the flattener — gzip, zstd or plain tar bytes in, an ext4
 * filesystem out, through the converter's own entry point (imaged_convert) on a private blob
 * store. The input is one layer, or several separated by LAYER_SEPARATOR (lower layers first,
 * so whiteouts and opaque directories act on what the layers below wrote); each layer's
 * compression is recognised by its magic bytes, as a registry's media type would say it. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/io.h"
#include "imaged/imaged.h"
#include "oci/oci.h"

#define LAYER_SEPARATOR "--shed-layer--"
#define MAX_LAYERS 4
/* Small enough to be made quickly, large enough for what a small input can hold. */
#define FS_SIZE (16u << 20)

static char images_dir[] = "/tmp/shed-fuzz-layer-XXXXXX";
static char out_path[sizeof images_dir + 16];
static struct oci_store *store;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    oci_store_close(store);
    nftw(images_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    struct shed_err err = {0};
    if (mkdtemp(images_dir) == NULL || oci_store_open(images_dir, &store, &err) < 0) {
        fprintf(stderr, "fuzz_layer: cannot set up: %s\n", err.msg);
        abort();
    }
    snprintf(out_path, sizeof out_path, "%s/out.ext4", images_dir);
    atexit(cleanup);
    return 0;
}

static const char *media_type_of(const uint8_t *data, size_t size)
{
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)
        return "application/vnd.oci.image.layer.v1.tar+gzip";
    if (size >= 4 && data[0] == 0x28 && data[1] == 0xb5 && data[2] == 0x2f && data[3] == 0xfd)
        return "application/vnd.oci.image.layer.v1.tar+zstd";
    return "application/vnd.oci.image.layer.v1.tar";
}

/* Puts a blob into the store under its digest. */
static int put_blob(const void *data, size_t size, char digest[DIGEST_STRING_LEN + 1])
{
    if (sha256_digest_of(data, size, digest) < 0)
        return -1;
    char *path = oci_store_blob_path(store, digest);
    if (path == NULL)
        return -1;
    FILE *f = fopen(path, "wb");
    int rc = f != NULL && fwrite(data, 1, size, f) == size ? 0 : -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    free(path);
    return rc;
}

static void remove_blob(const char *digest)
{
    char *path = oci_store_blob_path(store, digest);
    if (path != NULL)
        unlink(path);
    free(path);
}

struct layer {
    const uint8_t *data;
    size_t size;
    char digest[DIGEST_STRING_LEN + 1];
};

static size_t split_layers(const uint8_t *data, size_t size, struct layer *layers)
{
    size_t count = 0, sep = strlen(LAYER_SEPARATOR);
    const uint8_t *start = data, *end = data + size;
    while (count < MAX_LAYERS - 1) {
        const uint8_t *at = memmem(start, (size_t)(end - start), LAYER_SEPARATOR, sep);
        if (at == NULL)
            break;
        layers[count++] = (struct layer){.data = start, .size = (size_t)(at - start)};
        start = at + sep;
    }
    layers[count++] = (struct layer){.data = start, .size = (size_t)(end - start)};
    return count;
}

static char *manifest_json(const struct layer *layers, size_t count, const char *config_digest,
                           size_t config_size)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return NULL;
    fprintf(out,
            "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
            "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
            "\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
            config_digest, config_size);
    for (size_t i = 0; i < count; i++)
        fprintf(out, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", i ? "," : "",
                media_type_of(layers[i].data, layers[i].size), layers[i].digest, layers[i].size);
    fputs("]}", out);
    fclose(out);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct layer layers[MAX_LAYERS];
    size_t count = split_layers(data, size, layers);
    static const char config[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":"
                                 "{\"type\":\"layers\",\"diff_ids\":[]}}";
    char config_digest[DIGEST_STRING_LEN + 1], manifest_digest[DIGEST_STRING_LEN + 1] = "";
    bool stored = put_blob(config, sizeof config - 1, config_digest) == 0;
    for (size_t i = 0; stored && i < count; i++)
        stored = put_blob(layers[i].data, layers[i].size, layers[i].digest) == 0;
    char *manifest = stored ? manifest_json(layers, count, config_digest, sizeof config - 1) : NULL;
    if (manifest != NULL && put_blob(manifest, strlen(manifest), manifest_digest) == 0) {
        struct imaged_convert_opts opts = {.size_bytes = FS_SIZE};
        struct shed_err err = {0};
        int rc = imaged_convert(store, manifest_digest, out_path, &opts, &err);
        if (getenv("SHED_FUZZ_VERBOSE") != NULL)
            fprintf(stderr, "fuzz_layer: %zu layer(s): %s\n", count,
                    rc == 0 ? "converted" : err.msg);
        if (rc == 0)
            unlink(out_path);
        else if (access(out_path, F_OK) == 0)
            abort(); /* a failed conversion leaves no output behind */
    }
    free(manifest);
    if (manifest_digest[0] != '\0')
        remove_blob(manifest_digest);
    for (size_t i = 0; i < count; i++)
        if (layers[i].digest[0] != '\0')
            remove_blob(layers[i].digest);
    remove_blob(config_digest);
    return 0;
}
