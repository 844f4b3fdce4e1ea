/* The content-addressed blob store <images_dir>/blobs/sha256/<hex> and the ref index
 * <images_dir>/refs/<escaped canonical ref> (one small file per ref holding the manifest
 * digest, replaced atomically, so concurrent pulls never see a torn entry). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci.h"
#include "oci_private.h"

struct oci_store {
    char *images_dir;
    char *blobs_dir; /* <images_dir>/blobs/sha256 */
    char *refs_dir;  /* <images_dir>/refs */
};

int oci_store_open(const char *images_dir, struct oci_store **out, struct shed_err *err)
{
    *out = NULL;
    struct oci_store *store = calloc(1, sizeof *store);
    if (store == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    store->images_dir = strdup(images_dir);
    store->blobs_dir = fs_path_join(images_dir, "blobs/sha256");
    store->refs_dir = fs_path_join(images_dir, "refs");
    if (store->images_dir == NULL || store->blobs_dir == NULL || store->refs_dir == NULL) {
        oci_store_close(store);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (fs_mkdir_p(store->blobs_dir, 0755, err) < 0 || fs_mkdir_p(store->refs_dir, 0755, err) < 0) {
        oci_store_close(store);
        return shed_err_prefix(err, "cannot open image store %s", images_dir);
    }
    *out = store;
    return 0;
}

void oci_store_close(struct oci_store *store)
{
    if (store == NULL)
        return;
    free(store->images_dir);
    free(store->blobs_dir);
    free(store->refs_dir);
    free(store);
}

const char *oci_store_images_dir(const struct oci_store *store)
{
    return store->images_dir;
}

const char *store_blobs_dir(const struct oci_store *store)
{
    return store->blobs_dir;
}

/* NULL for a malformed digest too: a digest is never allowed to become a path like "../x". */
char *oci_store_blob_path(const struct oci_store *store, const char *digest)
{
    if (!digest_is_valid(digest))
        return NULL;
    return str_printf("%s/%s", store->blobs_dir, digest + 7);
}

char *store_blob_tmp_path(const struct oci_store *store, const char *digest)
{
    if (!digest_is_valid(digest))
        return NULL;
    return str_printf("%s/%s.tmp", store->blobs_dir, digest + 7);
}

bool oci_store_has_blob(const struct oci_store *store, const char *digest)
{
    cleanup_free char *path = oci_store_blob_path(store, digest);
    struct stat st;
    return path != NULL && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int oci_store_read_blob(const struct oci_store *store, const char *digest, char **data, size_t *len,
                        struct shed_err *err)
{
    *data = NULL;
    cleanup_free char *path = oci_store_blob_path(store, digest);
    if (path == NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid digest \"%s\"", digest);
    cleanup_free char *buf = NULL;
    size_t buf_len = 0;
    if (fs_read_file(path, &buf, &buf_len, OCI_MAX_CONFIG_BYTES, err) < 0)
        return shed_err_prefix(err, "blob %s", digest);
    char actual[DIGEST_STRING_LEN + 1];
    if (sha256_digest_of(buf, buf_len, actual) < 0)
        return shed_errf(err, SHED_E_IO, "sha256 failed");
    if (strcmp(actual, digest) != 0)
        return shed_errf(err, SHED_E_INTEGRITY,
                         "blob %s in the store is corrupt (content hashes "
                         "to %s); delete %s and pull again",
                         digest, actual, path);
    if (len != NULL)
        *len = buf_len;
    *data = steal_pointer(&buf);
    return 0;
}

int store_put_blob(struct oci_store *store, const char *digest, const void *data, size_t len,
                   struct shed_err *err)
{
    char actual[DIGEST_STRING_LEN + 1];
    if (sha256_digest_of(data, len, actual) < 0)
        return shed_errf(err, SHED_E_IO, "sha256 failed");
    if (strcmp(actual, digest) != 0)
        return shed_errf(err, SHED_E_INTEGRITY, "content of %s hashes to %s", digest, actual);
    if (oci_store_has_blob(store, digest))
        return 0;
    cleanup_free char *path = oci_store_blob_path(store, digest);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return fs_write_file_atomic(path, data, len, 0644, err);
}

/* Escapes a canonical ref into one file name: every byte outside [A-Za-z0-9._-] becomes %XX,
 * so "127.0.0.1:5000/a/b:1" and "127.0.0.1:5000/a_b:1" never collide. */
static char *ref_file_name(const char *canonical_ref)
{
    size_t len = strlen(canonical_ref);
    char *out = malloc(3 * len + 1);
    if (out == NULL)
        return NULL;
    char *p = out;
    for (const unsigned char *c = (const unsigned char *)canonical_ref; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-';
        if (plain)
            *p++ = (char)*c;
        else
            p += sprintf(p, "%%%02X", *c);
    }
    *p = '\0';
    /* "." and ".." cannot come out of a canonical ref (it always holds a '/'), but refuse
     * them anyway rather than write outside refs/. */
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0 || strlen(out) > 255) {
        free(out);
        return NULL;
    }
    return out;
}

static char *ref_path(const struct oci_store *store, const char *canonical_ref)
{
    cleanup_free char *name = ref_file_name(canonical_ref);
    return name != NULL ? fs_path_join(store->refs_dir, name) : NULL;
}

int oci_store_ref_set(struct oci_store *store, const char *canonical_ref, const char *digest,
                      struct shed_err *err)
{
    if (!digest_is_valid(digest))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid digest \"%s\"", digest);
    cleanup_free char *path = ref_path(store, canonical_ref);
    if (path == NULL)
        return shed_errf(err, SHED_E_INVALID_REF, "cannot record reference \"%s\"", canonical_ref);
    char line[DIGEST_STRING_LEN + 2];
    snprintf(line, sizeof line, "%s\n", digest);
    return fs_write_file_atomic(path, line, strlen(line), 0644, err);
}

int oci_store_ref_get(const struct oci_store *store, const char *canonical_ref, char **digest,
                      struct shed_err *err)
{
    *digest = NULL;
    cleanup_free char *path = ref_path(store, canonical_ref);
    if (path == NULL)
        return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "image %s was never pulled", canonical_ref);
    cleanup_free char *text = NULL;
    if (fs_read_file(path, &text, NULL, 4096, err) < 0) {
        if (shed_err_is_errno(err, ENOENT))
            return shed_errf_errno(err, SHED_E_IMAGE_NOT_FOUND, ENOENT, "image %s was never pulled",
                                   canonical_ref);
        return -1;
    }
    text[strcspn(text, "\n")] = '\0';
    if (!digest_is_valid(text))
        return shed_errf(err, SHED_E_IO, "ref index entry %s is corrupt", path);
    *digest = steal_pointer(&text);
    return 0;
}
