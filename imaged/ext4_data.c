/* ext4_data: streaming a regular file's content into data blocks.
 *
 * Writes arrive at non-decreasing offsets. Whole blocks go straight to the allocator and the
 * write-behind buffer; the pieces of a block split across writes are assembled in
 * file->partial first. Blocks that are entirely zero are never allocated (holes), so
 * sparse files stay sparse whether the gaps were explicit or written out as zeros. */
#include "ext4_internal.h"

#include <string.h>

static bool block_is_zero(const uint8_t *block)
{
    static const uint8_t zeros[EXT4W_BLOCK_SIZE];

    /* Most data blocks differ in their first bytes: test those before a full compare. */
    if (block[0] != 0 || block[EXT4W_BLOCK_SIZE - 1] != 0)
        return false;
    return memcmp(block, zeros, EXT4W_BLOCK_SIZE) == 0;
}

static int block_store(struct ext4_file *file, uint64_t lblk, const uint8_t *block,
                       struct shed_err *err)
{
    struct ext4_writer *w = file->writer;
    struct ext4_inode_rec *inode = file->inode;
    uint64_t got;
    blk64_t pblk;

    if (block_is_zero(block))
        return 0;
    if (lblk > UINT32_MAX - 1)
        return shed_errf(err, SHED_E_UNSUPPORTED, "file is too large for ext4 (block %llu)",
                         (unsigned long long)lblk);
    if (ext4_alloc_blocks(w, 1, &pblk, &got, err) < 0) {
        w->shortfall_bytes = file->size - lblk * EXT4W_BLOCK_SIZE;
        return -1;
    }
    if (ext4_extents_add_block(&inode->extents, (uint32_t)lblk, pblk, err) < 0) {
        ext4_free_blocks(w, pblk, 1);
        return -1;
    }
    inode->data_blocks++;
    return ext4_write_block(w, pblk, block, err);
}

static int partial_flush(struct ext4_file *file, struct shed_err *err)
{
    if (!file->has_partial)
        return 0;
    file->has_partial = false;
    return block_store(file, file->partial_lblk, file->partial, err);
}

/* Copies bytes into the assembling block for lblk (starting a zeroed one if needed). */
static void partial_fill(struct ext4_file *file, uint64_t lblk, size_t in_block,
                         const uint8_t *data, size_t len)
{
    if (!file->has_partial) {
        memset(file->partial, 0, EXT4W_BLOCK_SIZE);
        file->partial_lblk = lblk;
        file->has_partial = true;
    }
    memcpy(file->partial + in_block, data, len);
}

int ext4_data_write(struct ext4_file *file, uint64_t offset, const uint8_t *data, size_t len,
                    struct shed_err *err)
{
    if (offset < file->write_end)
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "write at offset %llu overlaps earlier data (ends at %llu)",
                         (unsigned long long)offset, (unsigned long long)file->write_end);
    if (offset > file->size || len > file->size - offset)
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "write of %zu bytes at offset %llu goes past the file size %llu", len,
                         (unsigned long long)offset, (unsigned long long)file->size);
    file->write_end = offset + len;

    while (len > 0) {
        uint64_t lblk = offset / EXT4W_BLOCK_SIZE;
        size_t in_block = (size_t)(offset % EXT4W_BLOCK_SIZE);
        size_t take = EXT4W_BLOCK_SIZE - in_block;

        if (file->has_partial && file->partial_lblk != lblk && partial_flush(file, err) < 0)
            return -1;
        if (in_block == 0 && len >= EXT4W_BLOCK_SIZE && !file->has_partial) {
            if (block_store(file, lblk, data, err) < 0)
                return -1;
            take = EXT4W_BLOCK_SIZE;
        } else {
            take = take < len ? take : len;
            partial_fill(file, lblk, in_block, data, take);
            if (in_block + take == EXT4W_BLOCK_SIZE && partial_flush(file, err) < 0)
                return -1;
        }
        offset += take;
        data += take;
        len -= take;
    }
    return 0;
}

int ext4_data_finish(struct ext4_file *file, struct shed_err *err)
{
    if (partial_flush(file, err) < 0)
        return -1;
    file->inode->size = file->size;
    return 0;
}
