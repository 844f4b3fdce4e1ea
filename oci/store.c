/* The content-addressed blob store <images_dir>/blobs/sha256/<hex> (a download in progress
 * is <hex>.tmp) and the ref index <images_dir>/refs/<escaped canonical ref> (one small file
 * per ref holding the manifest digest, replaced atomically, so concurrent pulls never see a
 * torn entry). Nobody else builds these paths or reads these files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "oci.h"
#include "oci_private.h"

struct oci_store {
    char *images_dir;
    char *blobs_dir; /* <images_dir>/blobs/sha256 */
    char *refs_dir;  /* <images_dir>/refs */
};

static int store_new(const char *images_dir, struct oci_store **out, struct shed_err *err)
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
    *out = store;
    return 0;
}

int oci_store_open(const char *images_dir, struct oci_store **out, struct shed_err *err)
{
    struct oci_store *store;
    if (store_new(images_dir, &store, err) < 0)
        return -1;
    if (fs_mkdir_p(store->blobs_dir, 0700, err) < 0 || fs_mkdir_p(store->refs_dir, 0700, err) < 0) {
        oci_store_close(store);
        return shed_err_prefix(err, "cannot open image store %s", images_dir);
    }
    *out = store;
    return 0;
}

int oci_store_open_existing(const char *images_dir, struct oci_store **out, struct shed_err *err)
{
    return store_new(images_dir, out, err);
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

/* A whole blob of at most max_len bytes, its digest verified. */
static int read_verified(const struct oci_store *store, const char *digest, size_t max_len,
                         char **data, size_t *len, struct shed_err *err)
{
    *data = NULL;
    cleanup_free char *path = oci_store_blob_path(store, digest);
    if (path == NULL)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "invalid digest \"%s\"", digest);
    cleanup_free char *buf = NULL;
    size_t buf_len = 0;
    if (fs_read_file(path, &buf, &buf_len, max_len, err) < 0)
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

int oci_store_read_blob(const struct oci_store *store, const char *digest, char **data, size_t *len,
                        struct shed_err *err)
{
    return read_verified(store, digest, OCI_MAX_CONFIG_BYTES, data, len, err);
}

int store_read_manifest(const struct oci_store *store, const char *digest, char **data, size_t *len,
                        struct shed_err *err)
{
    return read_verified(store, digest, OCI_MAX_MANIFEST_BYTES, data, len, err);
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
    return fs_write_file_atomic(path, data, len, 0600, err);
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
    return fs_write_file_atomic(path, line, strlen(line), 0600, err);
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

/* ---- walking the store ------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The canonical ref a ref index file is named for, or NULL when the name is not one that
 * ref_file_name produces (a stray file is not an entry). */
static char *ref_of_file_name(const char *name)
{
    size_t len = strlen(name);
    cleanup_free char *ref = malloc(len + 1);
    if (ref == NULL)
        return NULL;
    char *out = ref;
    for (const char *c = name; *c != '\0'; c++) {
        if (*c != '%') {
            *out++ = *c;
            continue;
        }
        int high = hex_value(c[1]), low = high >= 0 ? hex_value(c[2]) : -1;
        if (low < 0)
            return NULL;
        *out++ = (char)(high * 16 + low);
        c += 2;
    }
    *out = '\0';
    if (strchr(ref, '/') == NULL)
        return NULL; /* a canonical ref always names a repository on a registry */
    cleanup_free char *again =
        memchr(ref, '\0', (size_t)(out - ref)) == NULL ? ref_file_name(ref) : NULL;
    if (again == NULL || strcmp(again, name) != 0)
        return NULL;
    return steal_pointer(&ref);
}

/* "<entry>.tmp.<digits>": what fs_write_file_atomic leaves behind when killed mid-write. */
static bool is_write_leftover(const char *name)
{
    for (const char *at = strstr(name, ".tmp."); at != NULL; at = strstr(at + 1, ".tmp.")) {
        const char *digits = at + 5;
        if (*digits != '\0' && strspn(digits, "0123456789") == strlen(digits))
            return true;
    }
    return false;
}

static int visit_ref_file(const struct oci_store *store, const char *name, oci_ref_visit_fn visit,
                          void *ctx, struct shed_err *err)
{
    cleanup_free char *ref = ref_of_file_name(name);
    if (ref == NULL)
        return 0;
    cleanup_free char *digest = NULL;
    struct shed_err why = {0};
    if (oci_store_ref_get(store, ref, &digest, &why) == 0)
        return visit(ref, digest, NULL, ctx, err);
    if (why.code == SHED_E_IMAGE_NOT_FOUND)
        return 0; /* removed meanwhile */
    if (is_write_leftover(name))
        return 0; /* a torn temporary file, never an entry */
    return visit(ref, NULL, &why, ctx, err);
}

int oci_store_ref_foreach(const struct oci_store *store, oci_ref_visit_fn visit, void *ctx,
                          struct shed_err *err)
{
    cleanup_closedir DIR *dir = opendir(store->refs_dir);
    if (dir == NULL)
        return errno == ENOENT
                   ? 0
                   : shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", store->refs_dir);
    int rc = 0;
    struct dirent *entry;
    while ((rc = fs_dir_next(dir, store->refs_dir, &entry, err)) > 0)
        if ((rc = visit_ref_file(store, entry->d_name, visit, ctx, err)) < 0)
            break;
    return rc;
}

static bool is_hex_digest_name(const char *name, size_t len)
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return true;
}

static int visit_blob_file(const struct oci_store *store, const char *name, oci_blob_visit_fn visit,
                           void *ctx, struct shed_err *err)
{
    size_t len = strlen(name);
    bool partial = len >= 4 && strcmp(name + len - 4, ".tmp") == 0;
    size_t hex_len = partial ? len - 4 : len;
    char digest[DIGEST_STRING_LEN + 1] = "";
    if (is_hex_digest_name(name, hex_len))
        snprintf(digest, sizeof digest, "sha256:%.*s", (int)hex_len, name);
    cleanup_free char *path = fs_path_join(store->blobs_dir, name);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct oci_blob_entry entry = {
        .path = path,
        .digest = digest[0] != '\0' ? digest : NULL,
        .state = partial             ? OCI_BLOB_PARTIAL
                 : digest[0] != '\0' ? OCI_BLOB_STORED
                                     : OCI_BLOB_FOREIGN,
    };
    return visit(&entry, ctx, err);
}

int oci_store_blob_foreach(const struct oci_store *store, oci_blob_visit_fn visit, void *ctx,
                           struct shed_err *err)
{
    cleanup_strv struct strv names = STRV_INIT;
    int rc = fs_list_files(store->blobs_dir, &names, err);
    for (size_t i = 0; rc == 0 && i < names.count; i++)
        rc = visit_blob_file(store, names.items[i], visit, ctx, err);
    return rc;
}
