/* image_import: what the input is, its blobs into the store (verified), then the variant
 * through the image cache's own install (import.h). */
#include "import.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_internal.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "import_internal.h"

#define LAYOUT_FILE_MAX 4096
#define INDEX_MAX (8u << 20)
#define CONFIG_MAX (32u << 20)
#define READ_CHUNK (1u << 20)

static const char *const kind_names[] = {
    [IMAGE_IMPORT_AUTO] = "auto",
    [IMAGE_IMPORT_DOCKER_ARCHIVE] = "docker-archive",
    [IMAGE_IMPORT_OCI_ARCHIVE] = "oci-archive",
    [IMAGE_IMPORT_OCI_LAYOUT] = "oci",
    [IMAGE_IMPORT_TARBALL] = "tarball",
};

const char *image_import_kind_name(enum image_import_kind kind)
{
    return (size_t)kind < sizeof kind_names / sizeof kind_names[0] ? kind_names[kind] : "?";
}

int image_import_kind_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (strcmp(kind_names[i], name) == 0)
            return (int)i;
    return -1;
}

void image_import_result_free(struct image_import_result *result)
{
    free(result->source);
    image_ensure_result_free(&result->variant);
    memset(result, 0, sizeof *result);
}

/* ---- progress and cancellation ---------------------------------------------------------- */

/* The progress line about this run's variant (image_opts_log). */
#define say(run, level, ...) image_opts_log((run)->opts, level, (run)->name, __VA_ARGS__)

static int count_progress(struct import_run *run, size_t len, struct shed_err *err)
{
    if (run->opts != NULL && run->opts->cancel != NULL && *run->opts->cancel)
        return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
    run->bytes_done += len;
    if (run->opts != NULL && run->opts->progress != NULL)
        run->opts->progress(run->name, "import", run->bytes_done,
                            run->bytes_total > run->bytes_done ? run->bytes_total : run->bytes_done,
                            run->opts->ctx);
    return 0;
}

/* ---- blobs: source → store ------------------------------------------------------------ */

struct blob_sink {
    struct import_run *run;
    struct oci_blob_writer *writer;
    unsigned char head[8];
    size_t head_len;
};

static int sink_write(void *ctx, const void *data, size_t len, struct shed_err *err)
{
    struct blob_sink *sink = ctx;
    size_t take =
        len < sizeof sink->head - sink->head_len ? len : sizeof sink->head - sink->head_len;
    memcpy(sink->head + sink->head_len, data, take);
    sink->head_len += take;
    if (oci_blob_writer_write(sink->writer, data, len, err) < 0)
        return -1;
    return count_progress(sink->run, len, err);
}

/* What the layer's first bytes say: the converter reads plain, gzip and zstd tars. */
static int compression_of_head(const unsigned char *head, size_t len,
                               enum oci_compression *compression, struct shed_err *err)
{
    static const unsigned char gzip[] = {0x1f, 0x8b}, zstd[] = {0x28, 0xb5, 0x2f, 0xfd},
                               xz[] = {0xfd, '7', 'z', 'X', 'Z'}, bzip2[] = {'B', 'Z', 'h'};
    *compression = OCI_COMPRESSION_NONE;
    if (len >= sizeof gzip && memcmp(head, gzip, sizeof gzip) == 0)
        *compression = OCI_COMPRESSION_GZIP;
    else if (len >= sizeof zstd && memcmp(head, zstd, sizeof zstd) == 0)
        *compression = OCI_COMPRESSION_ZSTD;
    else if ((len >= sizeof xz && memcmp(head, xz, sizeof xz) == 0) ||
             (len >= sizeof bzip2 && memcmp(head, bzip2, sizeof bzip2) == 0))
        return shed_errf(err, SHED_E_UNSUPPORTED,
                         "a layer is compressed with %s; layers can be plain, gzip or zstd tars "
                         "(decompress it first)",
                         head[0] == 'B' ? "bzip2" : "xz");
    return 0;
}

static struct import_blob *first_blob_of(struct import_blob *blobs, size_t upto, const char *member)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(blobs[i].member, member) == 0)
            return &blobs[i];
    return NULL;
}

static void abort_writers(struct blob_sink *sinks, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        oci_blob_writer_abort(sinks[i].writer);
        sinks[i].writer = NULL;
    }
}

static int commit_blobs(struct import_blob *blobs, struct blob_sink *sinks, size_t count,
                        struct shed_err *err)
{
    for (size_t i = 0; i < count; i++) {
        if (sinks[i].writer == NULL)
            continue;
        struct oci_blob_writer *writer = steal_pointer(&sinks[i].writer);
        if (oci_blob_writer_commit(writer, blobs[i].expected_size, blobs[i].digest, &blobs[i].size,
                                   err) < 0 ||
            compression_of_head(sinks[i].head, sinks[i].head_len, &blobs[i].compression, err) < 0) {
            abort_writers(sinks + i + 1, count - i - 1);
            return shed_err_prefix(err, "%s", blobs[i].member);
        }
    }
    return 0;
}

/* A blob the store has already needs no copy, only its compression, read from the store. */
static int describe_present(struct import_run *run, struct import_blob *blob, struct shed_err *err)
{
    memcpy(blob->digest, blob->expected_digest, DIGEST_STRING_LEN + 1);
    cleanup_free char *path = oci_store_blob_path(run->store, blob->digest);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char head[8];
    ssize_t n = fd >= 0 ? read_full(fd, head, sizeof head) : -1;
    if (n < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", path);
    blob->size = blob->expected_size;
    return compression_of_head(head, (size_t)n, &blob->compression, err);
}

int import_copy_blobs(struct import_run *run, struct import_blob *blobs, size_t count,
                      struct shed_err *err)
{
    cleanup_free struct blob_sink *sinks = calloc(count ? count : 1, sizeof *sinks);
    cleanup_free struct import_copy *copies = calloc(count ? count : 1, sizeof *copies);
    if (sinks == NULL || copies == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t wanted = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        struct import_blob *blob = &blobs[i];
        if (blob->expected_digest != NULL && oci_store_has_blob(run->store, blob->expected_digest))
            rc = describe_present(run, blob, err);
        else if (first_blob_of(blobs, i, blob->member) != NULL)
            continue; /* the same member twice (a layer used twice): copied once */
        else {
            uint64_t max = blob->expected_size != UINT64_MAX
                               ? blob->expected_size
                               : import_source_size(run->source, blob->member);
            run->bytes_total += max;
            sinks[i].run = run;
            rc =
                oci_blob_writer_open(run->store, blob->expected_digest, max, &sinks[i].writer, err);
            copies[wanted++] =
                (struct import_copy){.name = blob->member, .write = sink_write, .ctx = &sinks[i]};
        }
    }
    if (rc == 0)
        rc = import_source_copy(run->source, copies, wanted, err);
    if (rc == 0)
        rc = commit_blobs(blobs, sinks, count, err);
    else
        abort_writers(sinks, count);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const struct import_blob *first = first_blob_of(blobs, i, blobs[i].member);
        if (first != NULL && blobs[i].digest[0] == '\0') {
            memcpy(blobs[i].digest, first->digest, sizeof blobs[i].digest);
            blobs[i].size = first->size;
            blobs[i].compression = first->compression;
        }
    }
    for (size_t i = 0; rc == 0 && i < count; i++)
        if (sinks[i].head_len > 0 || sinks[i].run != NULL)
            run->result->bytes_imported += blobs[i].size;
    return rc;
}

/* sha256 of the decompressed stream, with libarchive's filters and its raw format. */
static int digest_of_decompressed(const char *path, char out[DIGEST_STRING_LEN + 1],
                                  struct shed_err *err)
{
    struct archive *a = archive_read_new();
    struct sha256_ctx *sha = sha256_new();
    cleanup_free char *buf = malloc(READ_CHUNK);
    int rc = 0;
    struct archive_entry *entry = NULL;
    if (a == NULL || sha == NULL || buf == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    else if (archive_read_support_filter_all(a) != ARCHIVE_OK ||
             archive_read_support_format_raw(a) != ARCHIVE_OK ||
             archive_read_open_filename(a, path, READ_CHUNK) != ARCHIVE_OK ||
             archive_read_next_header(a, &entry) != ARCHIVE_OK)
        rc = shed_errf(err, SHED_E_INVALID_IMAGE, "cannot decompress %s: %s", path,
                       archive_error_string(a));
    for (la_ssize_t n = 1; rc == 0 && n > 0;) {
        n = archive_read_data(a, buf, READ_CHUNK);
        if (n < 0)
            rc = shed_errf(err, SHED_E_INVALID_IMAGE, "cannot decompress %s: %s", path,
                           archive_error_string(a));
        else if (n > 0 && sha256_update(sha, buf, (size_t)n) < 0)
            rc = shed_errf(err, SHED_E_IO, "sha256 failed");
    }
    if (rc == 0 && sha256_final_digest(sha, out) < 0)
        rc = shed_errf(err, SHED_E_IO, "sha256 failed");
    sha256_free(sha);
    if (a != NULL)
        archive_read_free(a);
    return rc;
}

int import_diff_id(struct import_run *run, const struct import_blob *blob,
                   char diff_id[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    if (blob->compression == OCI_COMPRESSION_NONE) {
        memcpy(diff_id, blob->digest, DIGEST_STRING_LEN + 1);
        return 0;
    }
    cleanup_free char *path = oci_store_blob_path(run->store, blob->digest);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return digest_of_decompressed(path, diff_id, err);
}

/* ---- OCI layouts (a directory or a tar of one) ------------------------------------------ */

static char *blob_member(const char *digest)
{
    return str_printf("blobs/sha256/%s", digest + strlen("sha256:"));
}

static int read_layout_blob(void *ctx, const char *digest, size_t max_len, char **data, size_t *len,
                            struct shed_err *err)
{
    struct import_run *run = ctx;
    cleanup_free char *member = blob_member(digest);
    if (member == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    const char *names[] = {member};
    if (import_source_read(run->source, names, 1, max_len, data, len, err) < 0)
        return -1;
    if (*data == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s has no blob %s", run->path, digest);
    return 0;
}

static int check_layout_marker(const struct import_run *run, const char *text, size_t len,
                               struct shed_err *err)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    const char *version = json_string_value(json_object_get(root, "imageLayoutVersion"));
    int rc = version == NULL ? shed_errf(err, SHED_E_INVALID_IMAGE,
                                         "%s: oci-layout has no imageLayoutVersion", run->path)
                             : 0;
    json_decref(root);
    return rc;
}

static int import_oci_layout(struct import_run *run, char manifest[DIGEST_STRING_LEN + 1],
                             struct shed_err *err)
{
    const char *names[] = {"oci-layout", "index.json"};
    char *data[2] = {NULL, NULL};
    size_t lens[2];
    int rc = import_source_read(run->source, names, 2, INDEX_MAX, data, lens, err);
    if (rc == 0 && (data[0] == NULL || data[1] == NULL))
        rc = shed_errf(err, SHED_E_INVALID_IMAGE, "%s is not an OCI layout (no %s)", run->path,
                       data[0] == NULL ? "oci-layout" : "index.json");
    if (rc == 0)
        rc = check_layout_marker(run, data[0], lens[0], err);
    if (rc == 0)
        rc = oci_layout_import_manifest(run->store, data[1], lens[1], run->config->platform,
                                        read_layout_blob, run, manifest, err);
    free(data[0]);
    free(data[1]);
    if (rc < 0)
        return -1;
    struct oci_image image;
    if (oci_image_load(run->store, manifest, &image, err) < 0)
        return -1;
    size_t count = image.layer_count + 1;
    struct import_blob *blobs = calloc(count, sizeof *blobs);
    char **members = calloc(count, sizeof *members);
    rc = blobs != NULL && members != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const char *digest = i == 0 ? image.config_digest : image.layers[i - 1].digest;
        members[i] = blob_member(digest);
        blobs[i] = (struct import_blob){
            .member = members[i],
            .expected_digest = digest,
            .expected_size = i == 0 ? image.config_size : image.layers[i - 1].size,
        };
        if (members[i] == NULL)
            rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (rc == 0 && image.config_size > CONFIG_MAX)
        rc = shed_errf(err, SHED_E_INVALID_IMAGE, "the image config is larger than %u bytes",
                       CONFIG_MAX);
    if (rc == 0)
        rc = import_copy_blobs(run, blobs, count, err);
    run->result->layer_count = image.layer_count;
    for (size_t i = 0; members != NULL && i < count; i++)
        free(members[i]);
    free(members);
    free(blobs);
    oci_image_free(&image);
    return rc;
}

/* ---- tarballs: the file is the one layer ----------------------------------------------- */

static int copy_file_to_store(struct import_run *run, struct import_blob *blob,
                              struct shed_err *err)
{
    cleanup_close int fd = open(run->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", run->path);
    if (!S_ISREG(st.st_mode))
        return shed_errf(err, SHED_E_INVALID_REQUEST, "%s is not a regular file", run->path);
    run->bytes_total = (uint64_t)st.st_size;
    struct blob_sink sink = {.run = run};
    if (oci_blob_writer_open(run->store, NULL, (uint64_t)st.st_size, &sink.writer, err) < 0)
        return -1;
    cleanup_free char *buf = malloc(READ_CHUNK);
    int rc = buf != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (ssize_t n = 1; rc == 0 && n > 0;) {
        n = TEMP_FAILURE_RETRY(read(fd, buf, READ_CHUNK));
        if (n < 0)
            rc = shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", run->path);
        else if (n > 0)
            rc = sink_write(&sink, buf, (size_t)n, err);
    }
    if (rc < 0) {
        oci_blob_writer_abort(sink.writer);
        return -1;
    }
    if (oci_blob_writer_commit(sink.writer, (uint64_t)st.st_size, blob->digest, &blob->size, err) <
        0)
        return -1;
    run->result->bytes_imported += blob->size;
    return compression_of_head(sink.head, sink.head_len, &blob->compression, err);
}

static int import_tarball(struct import_run *run, char manifest[DIGEST_STRING_LEN + 1],
                          struct shed_err *err)
{
    struct import_blob layer = {.member = run->path, .expected_size = UINT64_MAX};
    char diff_id[DIGEST_STRING_LEN + 1], config_digest[DIGEST_STRING_LEN + 1];
    uint64_t config_size = 0;
    if (copy_file_to_store(run, &layer, err) < 0 || import_diff_id(run, &layer, diff_id, err) < 0)
        return -1;
    const char(*ids)[DIGEST_STRING_LEN + 1] = (const char(*)[DIGEST_STRING_LEN + 1]) diff_id;
    if (oci_store_add_image_config(run->store, run->config->platform, ids, 1, config_digest,
                                   &config_size, err) < 0)
        return -1;
    struct oci_layer oci_layer = {.size = layer.size, .compression = layer.compression};
    memcpy(oci_layer.digest, layer.digest, sizeof oci_layer.digest);
    run->result->layer_count = 1;
    return oci_store_add_image_manifest(run->store, config_digest, config_size, &oci_layer, 1,
                                        manifest, err);
}

/* ---- which kind, then the variant -------------------------------------------------------- */

static enum image_import_kind detect_kind(const struct import_source *source)
{
    if (import_source_is_dir(source))
        return IMAGE_IMPORT_OCI_LAYOUT;
    if (import_source_has(source, "manifest.json"))
        return IMAGE_IMPORT_DOCKER_ARCHIVE;
    if (import_source_has(source, "oci-layout") && import_source_has(source, "index.json"))
        return IMAGE_IMPORT_OCI_ARCHIVE;
    return IMAGE_IMPORT_TARBALL;
}

static int check_name(const struct shed_config *config, const char *name, struct shed_err *err)
{
    if (!shed_image_name_is_valid(name))
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "invalid image name \"%.80s\" (letters, digits, '.', '_', '-'; at most "
                         "128; starting with a letter or digit)",
                         name);
    const struct shed_config_image *configured = shed_config_find_image(config, name);
    if (configured != NULL)
        return shed_errf(err, SHED_E_IMAGE_IN_USE,
                         "image \"%s\" is in server.yaml (images.%s: %s); import under another "
                         "name",
                         name, name, configured->ref);
    return 0;
}

static int import_blobs(struct import_run *run, enum image_import_kind kind,
                        char manifest[DIGEST_STRING_LEN + 1], struct shed_err *err)
{
    switch (kind) {
    case IMAGE_IMPORT_DOCKER_ARCHIVE: return import_docker_archive(run, manifest, err);
    case IMAGE_IMPORT_OCI_ARCHIVE:
    case IMAGE_IMPORT_OCI_LAYOUT: return import_oci_layout(run, manifest, err);
    case IMAGE_IMPORT_TARBALL: return import_tarball(run, manifest, err);
    case IMAGE_IMPORT_AUTO: break;
    }
    return shed_errf(err, SHED_E_INVALID_REQUEST, "no import kind");
}

/* The source, its kind (the one asked for must match what the path is). */
static int open_input(struct import_run *run, enum image_import_kind *kind, struct shed_err *err)
{
    if (import_source_open(run->path, &run->source, err) < 0)
        return -1;
    enum image_import_kind found = detect_kind(run->source);
    if (*kind == IMAGE_IMPORT_AUTO)
        *kind = found;
    bool is_dir = import_source_is_dir(run->source);
    if ((*kind == IMAGE_IMPORT_OCI_LAYOUT) != is_dir)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "%s is %s, not %s", run->path,
                         is_dir ? "a directory" : "a file",
                         is_dir ? "an archive" : "an OCI layout directory");
    return 0;
}

static int install(struct import_run *run, struct shed_err *err)
{
    struct image_cache *cache = NULL;
    if (image_cache_open(run->config, &cache, err) < 0)
        return -1;
    int rc =
        image_cache_install(cache, run->name, run->result->source, run->result->manifest_digest,
                            run->opts, &run->result->variant, err);
    image_cache_close(cache);
    return rc;
}

int image_import(const struct shed_config *config, const char *path, const char *name,
                 enum image_import_kind kind, const struct image_ensure_opts *opts,
                 struct image_import_result *result, struct shed_err *err)
{
    memset(result, 0, sizeof *result);
    if (check_name(config, name, err) < 0)
        return -1;
    cleanup_free char *absolute = realpath(path, NULL);
    if (absolute == NULL)
        return shed_errf_errno(err, errno == ENOENT ? SHED_E_INVALID_REQUEST : SHED_E_IO, errno,
                               "cannot import %s", path);
    struct import_run run = {
        .config = config, .name = name, .opts = opts, .path = absolute, .result = result};
    int rc = open_input(&run, &kind, err);
    result->kind = kind;
    if (rc == 0)
        rc = oci_store_open(config->images_dir, &run.store, err);
    if (rc == 0) {
        say(&run, IMAGE_LOG_INFO, "importing %s (%s)", absolute, image_import_kind_name(kind));
        rc = import_blobs(&run, kind, result->manifest_digest, err);
    }
    if (rc == 0 &&
        (result->source = str_printf("%s:%s", image_import_kind_name(kind), absolute)) == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (rc == 0)
        rc = install(&run, err);
    import_source_close(run.source);
    oci_store_close(run.store);
    if (rc < 0)
        image_import_result_free(result);
    return rc;
}
