/* layer_reader: one layer blob (gzip, zstd or plain tar) → a stream of tar entries.
 *
 * Decompression is ours (ISA-L for gzip, libzstd for zstd) and libarchive only parses the
 * plain tar stream it is handed through archive_read_open callbacks: libarchive's own gzip
 * filter is zlib, 4-5x slower than ISA-L. Memory is bounded by two fixed buffers whatever
 * the layer or file size. Private to imaged/. */
#ifndef SHED_LAYER_READER_H
#define SHED_LAYER_READER_H

#include <stddef.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "oci/oci.h"

struct archive_entry;
struct layer_reader;

/* Opens the blob file. SHED_E_IO when it cannot be opened. */
int layer_reader_open(const char *blob_path, enum oci_compression compression,
                      struct layer_reader **reader, struct shed_err *err);
void layer_reader_close(struct layer_reader *reader);

/* The next tar member: returns 1 with *entry set (valid until the next call), 0 at the end
 * of the archive (after checking that the compressed stream ends cleanly), -1 on error
 * (SHED_E_INVALID_IMAGE for corrupt or truncated input, SHED_E_IO for read errors). */
int layer_reader_next(struct layer_reader *reader, struct archive_entry **entry,
                      struct shed_err *err);

/* The next data block of the current regular file: returns 1 with data/len/offset set
 * (offsets grow; gaps between blocks are holes of a sparse file), 0 at the end of the
 * file's data, -1 on error. */
int layer_reader_data(struct layer_reader *reader, const void **data, size_t *len, uint64_t *offset,
                      struct shed_err *err);

/* Compressed bytes of the blob consumed so far (for progress reporting). */
uint64_t layer_reader_consumed(const struct layer_reader *reader);

#endif
