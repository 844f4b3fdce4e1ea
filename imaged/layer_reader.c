#include "layer_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "common/cleanup.h"

/* Large reads keep syscalls off the profile; two such buffers are all the memory a layer
 * needs whatever its size. */
#define INPUT_CHUNK (1u << 20)
#define OUTPUT_CHUNK (1u << 20)

struct layer_reader {
    int fd;
    char *path;
    enum oci_compression compression;
    struct archive *archive;

    uint8_t *in_buf;
    size_t in_len, in_pos;
    bool in_eof;
    uint64_t consumed; /* compressed bytes read from the blob */

    uint8_t *out_buf;
    bool stream_end; /* the decompressed stream has ended cleanly */

    struct inflate_state *gzip;
    bool gzip_member_done;
    ZSTD_DStream *zstd;
    size_t zstd_last_ret; /* 0 when the last zstd frame is complete */

    /* Set by the libarchive read callback, which can only report "-1". */
    bool failed;
    struct shed_err err;
};

/* ---- input ------------------------------------------------------------------------------ */

static bool input_exhausted(const struct layer_reader *r)
{
    return r->in_pos == r->in_len;
}

/* Refills in_buf when it is used up. Sets in_eof at the end of the blob. */
static int input_fill(struct layer_reader *r)
{
    if (!input_exhausted(r) || r->in_eof)
        return 0;
    ssize_t n = TEMP_FAILURE_RETRY(read(r->fd, r->in_buf, INPUT_CHUNK));
    if (n < 0)
        return shed_errf_errno(&r->err, SHED_E_IO, errno, "cannot read %s", r->path);
    r->in_len = (size_t)n;
    r->in_pos = 0;
    r->in_eof = n == 0;
    r->consumed += (uint64_t)n;
    return 0;
}

/* ---- decompressors: each produces the next piece of the tar stream into out_buf and
 * returns its length, 0 at the clean end of the stream, -1 on error (r->err). ---------- */

static ssize_t plain_produce(struct layer_reader *r)
{
    ssize_t n = TEMP_FAILURE_RETRY(read(r->fd, r->out_buf, OUTPUT_CHUNK));
    if (n < 0)
        return shed_errf_errno(&r->err, SHED_E_IO, errno, "cannot read %s", r->path);
    r->consumed += (uint64_t)n;
    return n;
}

static const char *isal_error_name(int ret)
{
    switch (ret) {
    case ISAL_INVALID_BLOCK: return "invalid deflate block";
    case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK: return "invalid lookback distance";
    case ISAL_INVALID_WRAPPER: return "not a gzip stream (bad header)";
    case ISAL_UNSUPPORTED_METHOD: return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM: return "checksum mismatch";
    case ISAL_NEED_DICT: return "needs a preset dictionary";
    default: return "decompression error";
    }
}

/* A gzip blob may hold several members back to back (pigz, concatenated layers): after one
 * ends, the next starts if any input is left. */
static int gzip_start_next_member(struct layer_reader *r, bool *started)
{
    *started = false;
    if (input_fill(r) < 0)
        return -1;
    if (input_exhausted(r))
        return 0;
    isal_inflate_reset(r->gzip);
    r->gzip->crc_flag = ISAL_GZIP;
    r->gzip_member_done = false;
    *started = true;
    return 0;
}

static ssize_t gzip_produce(struct layer_reader *r)
{
    struct inflate_state *st = r->gzip;
    for (;;) {
        if (r->gzip_member_done) {
            bool started;
            if (gzip_start_next_member(r, &started) < 0)
                return -1;
            if (!started)
                return 0;
        }
        if (input_fill(r) < 0)
            return -1;
        st->next_in = r->in_buf + r->in_pos;
        st->avail_in = (uint32_t)(r->in_len - r->in_pos);
        st->next_out = r->out_buf;
        st->avail_out = OUTPUT_CHUNK;
        int ret = isal_inflate(st);
        r->in_pos = (size_t)(st->next_in - r->in_buf);
        if (ret < 0)
            return shed_errf(&r->err, SHED_E_INVALID_IMAGE, "corrupt gzip stream: %s",
                             isal_error_name(ret));
        if (st->block_state == ISAL_BLOCK_FINISH)
            r->gzip_member_done = true;
        size_t produced = OUTPUT_CHUNK - st->avail_out;
        if (produced > 0)
            return (ssize_t)produced;
        if (!r->gzip_member_done && input_exhausted(r) && r->in_eof)
            return shed_errf(&r->err, SHED_E_INVALID_IMAGE,
                             "truncated gzip stream (blob ends inside compressed data)");
    }
}

static ssize_t zstd_produce(struct layer_reader *r)
{
    for (;;) {
        if (input_fill(r) < 0)
            return -1;
        /* After a complete frame, a call without input would only ask for the next
         * frame's header: the stream has ended cleanly. */
        if (input_exhausted(r) && r->in_eof && r->zstd_last_ret == 0)
            return 0;
        ZSTD_inBuffer in = {r->in_buf, r->in_len, r->in_pos};
        ZSTD_outBuffer out = {r->out_buf, OUTPUT_CHUNK, 0};
        size_t ret = ZSTD_decompressStream(r->zstd, &out, &in);
        r->in_pos = in.pos;
        if (ZSTD_isError(ret))
            return shed_errf(&r->err, SHED_E_INVALID_IMAGE, "corrupt zstd stream: %s",
                             ZSTD_getErrorName(ret));
        r->zstd_last_ret = ret;
        if (out.pos > 0)
            return (ssize_t)out.pos;
        if (input_exhausted(r) && r->in_eof) {
            if (r->zstd_last_ret != 0)
                return shed_errf(&r->err, SHED_E_INVALID_IMAGE,
                                 "truncated zstd stream (blob ends inside a frame)");
            return 0;
        }
    }
}

static ssize_t stream_produce(struct layer_reader *r)
{
    if (r->stream_end)
        return 0;
    ssize_t n;
    switch (r->compression) {
    case OCI_COMPRESSION_GZIP: n = gzip_produce(r); break;
    case OCI_COMPRESSION_ZSTD: n = zstd_produce(r); break;
    default: n = plain_produce(r); break;
    }
    if (n < 0)
        r->failed = true;
    else if (n == 0)
        r->stream_end = true;
    return n;
}

static la_ssize_t tar_stream_read(struct archive *archive, void *ctx, const void **buf)
{
    struct layer_reader *r = ctx;
    ssize_t n = stream_produce(r);
    if (n < 0) {
        archive_set_error(archive, EIO, "%s", r->err.msg);
        return -1;
    }
    *buf = r->out_buf;
    return n;
}

/* ---- public ----------------------------------------------------------------------------- */

static int decompressor_init(struct layer_reader *r, struct shed_err *err)
{
    if (r->compression == OCI_COMPRESSION_GZIP) {
        r->gzip = malloc(sizeof *r->gzip);
        if (r->gzip == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        isal_inflate_init(r->gzip);
        r->gzip->crc_flag = ISAL_GZIP;
    } else if (r->compression == OCI_COMPRESSION_ZSTD) {
        r->zstd = ZSTD_createDStream();
        if (r->zstd == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory (zstd)");
        size_t ret = ZSTD_initDStream(r->zstd);
        if (ZSTD_isError(ret))
            return shed_errf(err, SHED_E_INVALID_IMAGE, "zstd: %s", ZSTD_getErrorName(ret));
        r->zstd_last_ret = 1; /* an empty blob is not a complete zstd stream */
    }
    return 0;
}

static int archive_init(struct layer_reader *r, struct shed_err *err)
{
    r->archive = archive_read_new();
    if (r->archive == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory (libarchive)");
    /* tar covers ustar, pax and GNU tar (incl. sparse); "empty" accepts a 0-byte layer. */
    if (archive_read_support_format_tar(r->archive) != ARCHIVE_OK ||
        archive_read_support_format_empty(r->archive) != ARCHIVE_OK ||
        archive_read_support_filter_none(r->archive) != ARCHIVE_OK)
        return shed_errf(err, SHED_E_UNSUPPORTED, "libarchive: %s",
                         archive_error_string(r->archive));
    if (archive_read_open(r->archive, r, NULL, tar_stream_read, NULL) != ARCHIVE_OK) {
        if (r->failed) {
            *err = r->err;
            return -1;
        }
        return shed_errf(err, SHED_E_INVALID_IMAGE, "not a tar stream: %s",
                         archive_error_string(r->archive));
    }
    return 0;
}

int layer_reader_open(const char *blob_path, enum oci_compression compression,
                      struct layer_reader **reader, struct shed_err *err)
{
    struct layer_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    r->fd = -1;
    r->compression = compression;
    r->path = strdup(blob_path);
    r->in_buf = malloc(INPUT_CHUNK);
    r->out_buf = malloc(OUTPUT_CHUNK);
    if (r->path == NULL || r->in_buf == NULL || r->out_buf == NULL) {
        layer_reader_close(r);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    r->fd = open(blob_path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        shed_errf_errno(err, SHED_E_IO, errno, "cannot open layer blob %s", blob_path);
        layer_reader_close(r);
        return -1;
    }
    /* The blob is read once front to back. */
    (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (decompressor_init(r, err) < 0 || archive_init(r, err) < 0) {
        layer_reader_close(r);
        return -1;
    }
    *reader = r;
    return 0;
}

void layer_reader_close(struct layer_reader *r)
{
    if (r == NULL)
        return;
    if (r->archive != NULL)
        archive_read_free(r->archive);
    if (r->zstd != NULL)
        ZSTD_freeDStream(r->zstd);
    free(r->gzip);
    if (r->fd >= 0)
        close(r->fd);
    free(r->in_buf);
    free(r->out_buf);
    free(r->path);
    free(r);
}

/* Turns a libarchive failure into our error, preferring the decompressor's own message
 * (libarchive only saw "-1" from the read callback). */
static int archive_failure(struct layer_reader *r, struct shed_err *err)
{
    if (r->failed) {
        *err = r->err;
        return -1;
    }
    const char *msg = archive_error_string(r->archive);
    return shed_errf(err, SHED_E_INVALID_IMAGE, "invalid tar stream: %s",
                     msg != NULL ? msg : "unknown error");
}

/* libarchive stops at the tar end-of-archive blocks; reading the compressed stream to its
 * end also verifies its trailer (gzip CRC and length, zstd frame end). */
static int drain_stream(struct layer_reader *r, struct shed_err *err)
{
    ssize_t n;
    while ((n = stream_produce(r)) > 0)
        ;
    if (n < 0) {
        *err = r->err;
        return -1;
    }
    return 0;
}

int layer_reader_next(struct layer_reader *r, struct archive_entry **entry, struct shed_err *err)
{
    int ret = archive_read_next_header(r->archive, entry);
    if (ret == ARCHIVE_OK || ret == ARCHIVE_WARN)
        return 1;
    if (ret == ARCHIVE_EOF)
        return drain_stream(r, err) < 0 ? -1 : 0;
    return archive_failure(r, err);
}

int layer_reader_data(struct layer_reader *r, const void **data, size_t *len, uint64_t *offset,
                      struct shed_err *err)
{
    la_int64_t off = 0;
    int ret = archive_read_data_block(r->archive, data, len, &off);
    if (ret == ARCHIVE_EOF)
        return 0;
    if (ret != ARCHIVE_OK && ret != ARCHIVE_WARN)
        return archive_failure(r, err);
    if (off < 0)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "invalid tar stream: negative data offset");
    *offset = (uint64_t)off;
    return 1;
}

uint64_t layer_reader_consumed(const struct layer_reader *r)
{
    return r->consumed;
}
