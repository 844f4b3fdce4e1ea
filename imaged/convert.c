/* imaged_convert: manifest in the store → <out>.tmp (ext4) → fsync → rename to <out>. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "ext4_writer.h"
#include "flatten.h"
#include "imaged.h"
#include "layer_reader.h"
#include "layout.h"

#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

static void image_cleanup(struct oci_image *image)
{
    oci_image_free(image);
}
#define cleanup_image __attribute__((cleanup(image_cleanup)))

static int check_blobs_present(const struct oci_store *store, const struct oci_image *image,
                               uint64_t *total, struct shed_err *err)
{
    *total = 0;
    for (size_t i = 0; i < image->layer_count; i++) {
        if (!oci_store_has_blob(store, image->layers[i].digest))
            return shed_errf(err, SHED_E_INVALID_IMAGE, "layer %zu blob %s is not in the store",
                             i + 1, image->layers[i].digest);
        *total += image->layers[i].size;
    }
    return 0;
}

/* "sha256:0123456789ab": enough of a digest to recognise it in a one-line message. */
static void short_digest(const char *digest, char out[20])
{
    snprintf(out, 20, "%.19s", digest);
}

static int flatten_one_layer(const struct oci_store *store, const struct oci_image *image,
                             size_t index, struct flatten_state *state, struct shed_err *err)
{
    const struct oci_layer *layer = &image->layers[index];
    char digest[20];
    short_digest(layer->digest, digest);
    cleanup_free char *blob_path = oci_store_blob_path(store, layer->digest);
    if (blob_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct layer_reader *reader = NULL;
    int ret = layer_reader_open(blob_path, layer->compression, &reader, err);
    if (ret == 0) {
        ret = flatten_layer(state, reader, (unsigned)index, err);
        layer_reader_close(reader);
    }
    if (ret < 0)
        return shed_err_prefix(err, "layer %zu/%zu (%s)", index + 1, image->layer_count, digest);
    state->bytes_done_before_layer += layer->size;
    return 0;
}

/* The journal mke2fs (ext2fs_default_journal_size) gives a filesystem of this size. */
static uint64_t journal_size_for(uint64_t fs_size)
{
    if (fs_size < 128 * MIB)
        return 4 * MIB;
    if (fs_size < GIB)
        return 16 * MIB;
    if (fs_size < 2 * GIB)
        return 32 * MIB;
    if (fs_size < 16 * GIB)
        return 64 * MIB;
    if (fs_size < 32 * GIB)
        return 128 * MIB;
    return 256 * MIB;
}

/* A generous estimate of the filesystem an image needs: file data plus extent and tail
 * slack, a block per entry for inodes, directories and small files, then the journal and
 * ~2% of inode tables and bitmaps (which grow with the size: hence the fixed point), plus
 * a 5% margin. */
static uint64_t estimate_needed_size(const struct flatten_state *state, uint64_t bytes_used)
{
    uint64_t data = state->file_bytes > bytes_used ? state->file_bytes : bytes_used;
    uint64_t raw = data + data / 16 + state->entries * 4096;
    uint64_t needed = raw;
    for (int i = 0; i < 4; i++)
        needed = raw + journal_size_for(needed) + needed / 50 + 4 * MIB;
    return needed + needed / 20;
}

/* Rounds a size up to something a user would type: multiples of 64M below 1G, of 256M
 * below 4G, else whole G. */
static uint64_t round_suggestion(uint64_t bytes, char *text, size_t text_len)
{
    if (bytes < 4 * GIB) {
        uint64_t step_mib = bytes < GIB ? 64 : 256;
        uint64_t mib = (bytes + step_mib * MIB - 1) / (step_mib * MIB) * step_mib;
        if (mib % 1024 == 0)
            snprintf(text, text_len, "%lluG", (unsigned long long)(mib / 1024));
        else
            snprintf(text, text_len, "%lluM", (unsigned long long)mib);
        return mib * MIB;
    }
    uint64_t gib = (bytes + GIB - 1) / GIB;
    snprintf(text, text_len, "%lluG", (unsigned long long)gib);
    return gib * GIB;
}

static int out_of_space_error(const struct flatten_state *state, uint64_t fs_size,
                              uint64_t bytes_used, struct shed_err *err)
{
    char suggestion[32], have[32], needed[32], data[32];
    uint64_t rounded =
        round_suggestion(estimate_needed_size(state, bytes_used), suggestion, sizeof suggestion);
    format_size(fs_size, have, sizeof have);
    format_size(rounded, needed, sizeof needed);
    format_size(state->file_bytes, data, sizeof data);
    return shed_errf(err, SHED_E_NO_SPACE,
                     "image does not fit in a %s filesystem: it needs at least %s (%s of file "
                     "data in %llu entries); set the size to at least %s (--size, or rootfs_size "
                     "in server.yaml)",
                     have, needed, data, (unsigned long long)state->entries, suggestion);
}

/* Finishes the scan of the remaining layers (sizes only) and turns it into the error. */
static int fail_out_of_space(const struct oci_store *store, const struct oci_image *image,
                             size_t next_layer, struct flatten_state *state, uint64_t fs_size,
                             uint64_t bytes_used, struct shed_err *err)
{
    state->out_of_space = true;
    for (size_t i = next_layer; i < image->layer_count; i++)
        if (flatten_one_layer(store, image, i, state, err) < 0)
            return -1;
    return out_of_space_error(state, fs_size, bytes_used, err);
}

static int write_layers(const struct oci_store *store, const struct oci_image *image,
                        struct flatten_state *state, uint64_t fs_size, struct shed_err *err)
{
    for (size_t i = 0; i < image->layer_count; i++) {
        if (flatten_one_layer(store, image, i, state, err) < 0)
            return -1;
        if (state->out_of_space)
            return fail_out_of_space(store, image, i + 1, state, fs_size,
                                     ext4_writer_bytes_used(state->writer), err);
    }
    return 0;
}

static int convert_to_tmp(const struct oci_store *store, const struct oci_image *image,
                          const char *tmp_path, const struct imaged_convert_opts *opts,
                          uint64_t bytes_total, struct shed_err *err)
{
    uint64_t fs_size = opts->size_bytes != 0 ? opts->size_bytes : IMAGED_DEFAULT_SIZE;
    struct ext4_writer_opts writer_opts = {.size_bytes = fs_size};
    struct flatten_state state = {.opts = opts, .bytes_total = bytes_total};
    if (ext4_writer_create(tmp_path, &writer_opts, &state.writer, err) < 0)
        return -1;
    if (write_layers(store, image, &state, fs_size, err) < 0) {
        ext4_writer_abort(state.writer);
        return -1;
    }
    uint64_t bytes_used = ext4_writer_bytes_used(state.writer);
    if (ext4_writer_finish(state.writer, err) < 0) {
        if (err->code == SHED_E_NO_SPACE)
            return out_of_space_error(&state, fs_size, bytes_used, err);
        return -1;
    }
    if (opts->progress != NULL)
        opts->progress(bytes_total, bytes_total, opts->ctx);
    return 0;
}

static int publish(const char *tmp_path, const char *out_path, struct shed_err *err)
{
    if (rename(tmp_path, out_path) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot rename %s to %s", tmp_path, out_path);
    return fs_fsync_dir_of(out_path, err);
}

int imaged_convert(const struct oci_store *store, const char *manifest_digest, const char *out_path,
                   const struct imaged_convert_opts *opts_in, struct shed_err *err)
{
    struct imaged_convert_opts opts = {0};
    if (opts_in != NULL)
        opts = *opts_in;
    cleanup_image struct oci_image image = {0};
    if (oci_image_load(store, manifest_digest, &image, err) < 0)
        return -1;
    uint64_t bytes_total;
    if (check_blobs_present(store, &image, &bytes_total, err) < 0)
        return -1;
    cleanup_free char *tmp_path = image_layout_convert_tmp_path(out_path);
    if (tmp_path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    /* A .tmp can only be the leftover of a run that was killed: callers serialise
     * conversions of one target (the image cache holds a lock per target). */
    if (unlink(tmp_path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove stale %s", tmp_path);
    if (convert_to_tmp(store, &image, tmp_path, &opts, bytes_total, err) < 0 ||
        publish(tmp_path, out_path, err) < 0) {
        (void)unlink(tmp_path);
        return -1;
    }
    return 0;
}
