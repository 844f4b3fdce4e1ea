/* ext4_fs: creating the empty filesystem (what mke2fs does), the block and inode
 * allocators, the write-behind buffer for data blocks, and libext2fs error mapping. */
#include "ext4_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <et/com_err.h>

#include "common/cleanup.h"
#include "common/io.h"

/* ext4 minimum we accept: room for the metadata, a 4 MiB journal and some data. */
#define EXT4W_MIN_SIZE (8ULL << 20)
/* Bytes of filesystem per inode when the caller does not say (mke2fs's ext4 default). */
#define EXT4W_BYTES_PER_INODE 16384ULL

static pthread_once_t error_table_once = PTHREAD_ONCE_INIT;

static void error_table_register(void)
{
    /* add_error_table() appends on every call, so it must run only once per process. */
    (void)add_error_table(&et_ext2_error_table);
}

static bool errcode_is_no_space(errcode_t code)
{
    return code == EXT2_ET_BLOCK_ALLOC_FAIL || code == EXT2_ET_INODE_ALLOC_FAIL ||
           code == EXT2_ET_DIR_NO_SPACE || code == ENOSPC;
}

int ext4_fail(struct shed_err *err, errcode_t code, const char *fmt, ...)
{
    char context[384];
    va_list ap;

    pthread_once(&error_table_once, error_table_register);
    va_start(ap, fmt);
    vsnprintf(context, sizeof(context), fmt, ap);
    va_end(ap);
    if (code == ENOMEM || code == EXT2_ET_NO_MEMORY)
        return shed_errf(err, SHED_E_NO_MEMORY, "%s: out of memory", context);
    return shed_errf(err, errcode_is_no_space(code) ? SHED_E_NO_SPACE : SHED_E_IO, "%s: %s",
                     context, error_message(code));
}

/* ---- creation ---- */

static int random_bytes(void *buf, size_t len, struct shed_err *err)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = TEMP_FAILURE_RETRY(getrandom(p, len, 0));
        if (n < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "getrandom");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint64_t inode_count_for(const struct ext4_writer_opts *opts)
{
    uint64_t count = opts->inode_count;

    if (count == 0)
        count = opts->size_bytes / EXT4W_BYTES_PER_INODE;
    if (count < 64)
        count = 64;
    if (count > UINT32_MAX - 1)
        count = UINT32_MAX - 1;
    return count;
}

static void super_params_fill(struct ext2_super_block *param, const struct ext4_writer_opts *opts)
{
    memset(param, 0, sizeof(*param));
    ext2fs_blocks_count_set(param, opts->size_bytes / EXT4W_BLOCK_SIZE);
    param->s_log_block_size = EXT4W_LOG_BLOCK_SIZE;
    param->s_rev_level = EXT2_DYNAMIC_REV;
    param->s_inode_size = EXT4W_INODE_SIZE;
    param->s_inodes_count = (uint32_t)inode_count_for(opts);
    param->s_log_groups_per_flex = 4; /* 16 groups per flex group, like mke2fs */
    param->s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
    param->s_max_mnt_count = (__u16)-1; /* no mount-count-triggered fsck, like mke2fs */
    param->s_feature_compat = EXT2_FEATURE_COMPAT_EXT_ATTR | EXT2_FEATURE_COMPAT_DIR_INDEX;
    param->s_feature_incompat = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT3_FEATURE_INCOMPAT_EXTENTS |
                                EXT4_FEATURE_INCOMPAT_64BIT | EXT4_FEATURE_INCOMPAT_FLEX_BG;
    param->s_feature_ro_compat =
        EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE |
        EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_DIR_NLINK |
        EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM;
}

/* Fresh identity per image: random v4 UUID and directory hash seed. */
static int super_identity_set(ext2_filsys fs, struct shed_err *err)
{
    struct ext2_super_block *sb = fs->super;

    if (random_bytes(sb->s_uuid, sizeof(sb->s_uuid), err) < 0)
        return -1;
    sb->s_uuid[6] = (sb->s_uuid[6] & 0x0f) | 0x40;
    sb->s_uuid[8] = (sb->s_uuid[8] & 0x3f) | 0x80;
    if (random_bytes(sb->s_hash_seed, sizeof(sb->s_hash_seed), err) < 0)
        return -1;
    sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
    sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
    sb->s_checkinterval = 0;
    ext2fs_init_csum_seed(fs);
    return 0;
}

/* The image file is new and sparse, so every inode table already reads as zeros: telling
 * the kernel so keeps it from zeroing them (and un-sparsing the image) on first mount. */
static void groups_mark_itable_zeroed(ext2_filsys fs)
{
    for (dgrp_t group = 0; group < fs->group_desc_count; group++) {
        ext2fs_bg_flags_set(fs, group, EXT2_BG_INODE_ZEROED);
        ext2fs_group_desc_csum_set(fs, group);
    }
}

/* Inodes 1..10 are reserved; 2 is the root, 11 lost+found (both written at finish). */
static int reserved_inodes_claim(ext2_filsys fs, struct shed_err *err)
{
    errcode_t code;

    for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INODE(fs->super); ino++)
        ext2fs_inode_alloc_stats2(fs, ino, +1, ino == EXT2_ROOT_INO);
    ext2fs_inode_alloc_stats2(fs, EXT2_FIRST_INODE(fs->super), +1, 1);
    code = ext2fs_update_bb_inode(fs, NULL);
    if (code)
        return ext4_fail(err, code, "writing the bad-blocks inode");
    return 0;
}

static int journal_create(ext2_filsys fs, struct shed_err *err)
{
    struct ext2fs_journal_params params;
    errcode_t code;

    code = ext2fs_get_journal_params(&params, fs);
    if (code)
        return ext4_fail(err, code, "sizing the journal");
    /* The blocks of a new sparse file are zeros already: no need to write them. */
    code = ext2fs_add_journal_inode3(fs, &params, ~0ULL,
                                     EXT2_MKJOURNAL_LAZYINIT | EXT2_MKJOURNAL_NO_MNT_CHECK);
    if (code)
        return ext4_fail(err, code, "creating the journal");
    return 0;
}

static int image_file_create(const char *path, uint64_t size, int *fd_out, struct shed_err *err)
{
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "creating %s", path);
    if (ftruncate(fd, (off_t)size) < 0) {
        int saved = errno;
        unlink(path);
        return shed_errf_errno(err, SHED_E_IO, saved, "sizing %s", path);
    }
    *fd_out = steal_fd(&fd);
    return 0;
}

static int filesystem_layout(struct ext4_writer *w, const char *path,
                             const struct ext4_writer_opts *opts, struct shed_err *err)
{
    struct ext2_super_block param;
    errcode_t code;

    pthread_once(&error_table_once, error_table_register);
    super_params_fill(&param, opts);
    code = ext2fs_initialize(path, EXT2_FLAG_64BITS, &param, unix_io_manager, &w->fs);
    if (code)
        return ext4_fail(err, code, "initializing ext4 on %s", path);
    w->fs->priv_data = w;
    if (super_identity_set(w->fs, err) < 0)
        return -1;
    code = ext2fs_allocate_tables(w->fs);
    if (code)
        return ext4_fail(err, code, "allocating group tables");
    groups_mark_itable_zeroed(w->fs);
    if (reserved_inodes_claim(w->fs, err) < 0)
        return -1;
    if (journal_create(w->fs, err) < 0)
        return -1;
    w->blocks_count = ext2fs_blocks_count(w->fs->super);
    w->next_ino = EXT2_FIRST_INODE(w->fs->super) + 1;
    w->alloc_next = w->alloc_end = w->alloc_committed = w->fs->super->s_first_data_block;
    return 0;
}

int ext4_fs_create(struct ext4_writer *w, const char *path, const struct ext4_writer_opts *opts,
                   struct shed_err *err)
{
    if (opts->size_bytes < EXT4W_MIN_SIZE)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "filesystem size %llu bytes is below the minimum of %llu",
                         (unsigned long long)opts->size_bytes, EXT4W_MIN_SIZE);
    if (image_file_create(path, opts->size_bytes, &w->fd, err) < 0)
        return -1;
    w->path = strdup(path);
    if (w->path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return filesystem_layout(w, path, opts, err);
}

int ext4_fs_close(struct ext4_writer *w, struct shed_err *err)
{
    errcode_t code;

    ext4_alloc_commit(w);
    code = ext2fs_set_gdt_csum(w->fs);
    if (code)
        return ext4_fail(err, code, "checksumming group descriptors");
    /* Flushes superblock, descriptors and bitmaps, then fsyncs the image (one fsync covers
     * our own pwrite()s too: it is the same file). */
    code = ext2fs_close2(w->fs, 0);
    w->fs = NULL;
    if (code)
        return ext4_fail(err, code, "writing filesystem metadata to %s", w->path);
    return 0;
}

/* ---- block allocator ---- */

/* Marks the handed-out part of the window in the bitmap and group counters. */
void ext4_alloc_commit(struct ext4_writer *w)
{
    if (w->alloc_next > w->alloc_committed)
        ext2fs_block_alloc_stats_range(w->fs, w->alloc_committed,
                                       (unsigned)(w->alloc_next - w->alloc_committed), +1);
    w->alloc_committed = w->alloc_next;
}

/* Before libext2fs allocates on its own (xattr blocks), our window may no longer be free. */
void ext4_alloc_forget_window(struct ext4_writer *w)
{
    ext4_alloc_commit(w);
    w->alloc_end = w->alloc_next;
}

/* Finds the next run of free blocks at or after start; false when there is none. */
static bool free_run_find(struct ext4_writer *w, blk64_t start, blk64_t *run_start,
                          blk64_t *run_end)
{
    blk64_t last = w->blocks_count - 1;
    blk64_t first_free, next_used;

    if (start > last)
        return false;
    if (ext2fs_find_first_zero_block_bitmap2(w->fs->block_map, start, last, &first_free) != 0)
        return false;
    if (ext2fs_find_first_set_block_bitmap2(w->fs->block_map, first_free, last, &next_used) != 0)
        next_used = last + 1;
    *run_start = first_free;
    *run_end = next_used;
    return true;
}

static int window_refill(struct ext4_writer *w, uint64_t want, struct shed_err *err)
{
    blk64_t start, end;

    ext4_alloc_commit(w);
    /* Bump forward first; once at the end, wrap around to reuse freed blocks. */
    if (!free_run_find(w, w->alloc_end, &start, &end) &&
        !free_run_find(w, w->fs->super->s_first_data_block, &start, &end)) {
        w->shortfall_bytes = want * EXT4W_BLOCK_SIZE;
        return shed_errf(err, SHED_E_NO_SPACE,
                         "the filesystem (%llu bytes) is full: no free block left",
                         (unsigned long long)(w->blocks_count * EXT4W_BLOCK_SIZE));
    }
    w->alloc_next = w->alloc_committed = start;
    w->alloc_end = end;
    return 0;
}

/* Hands out up to want physically contiguous blocks (at least one). */
int ext4_alloc_blocks(struct ext4_writer *w, uint64_t want, blk64_t *pblk, uint64_t *got,
                      struct shed_err *err)
{
    uint64_t available;

    if (w->alloc_next >= w->alloc_end && window_refill(w, want, err) < 0)
        return -1;
    available = w->alloc_end - w->alloc_next;
    *pblk = w->alloc_next;
    *got = want < available ? want : available;
    w->alloc_next += *got;
    return 0;
}

void ext4_free_blocks(struct ext4_writer *w, blk64_t pblk, uint64_t count)
{
    ext4_alloc_commit(w);
    while (count > 0) {
        unsigned chunk = count > (1u << 30) ? (1u << 30) : (unsigned)count;
        ext2fs_block_alloc_stats_range(w->fs, pblk, chunk, -1);
        pblk += chunk;
        count -= chunk;
    }
}

/* ---- inode allocator ---- */

int ext4_alloc_inode(struct ext4_writer *w, bool is_dir, ext2_ino_t *ino, struct shed_err *err)
{
    ext2_ino_t last = w->fs->super->s_inodes_count;
    ext2_ino_t first = EXT2_FIRST_INODE(w->fs->super) + 1;
    ext2_ino_t found;

    if (w->next_ino > last ||
        ext2fs_find_first_zero_inode_bitmap2(w->fs->inode_map, w->next_ino, last, &found) != 0) {
        if (ext2fs_find_first_zero_inode_bitmap2(w->fs->inode_map, first, last, &found) != 0)
            return shed_errf(err, SHED_E_NO_SPACE,
                             "the filesystem is out of inodes (%u); use a larger size or "
                             "inode count",
                             last);
    }
    ext2fs_inode_alloc_stats2(w->fs, found, +1, is_dir);
    w->next_ino = found + 1;
    *ino = found;
    return 0;
}

void ext4_free_inode(struct ext4_writer *w, ext2_ino_t ino, bool is_dir)
{
    ext2fs_inode_alloc_stats2(w->fs, ino, -1, is_dir);
}

/* ---- raw block writes ---- */

int ext4_write_flush(struct ext4_writer *w, struct shed_err *err)
{
    size_t len = (size_t)w->wbuf_blocks * EXT4W_BLOCK_SIZE;

    if (w->wbuf_blocks == 0)
        return 0;
    w->wbuf_blocks = 0;
    if (pwrite_all(w->fd, w->wbuf, len, (off_t)(w->wbuf_pblk * EXT4W_BLOCK_SIZE)) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "writing %s", w->path);
    return 0;
}

/* Queues one block; consecutive blocks are written with one large pwrite(). Blocks written
 * here never pass through libext2fs's cache, which only ever holds metadata blocks. */
int ext4_write_block(struct ext4_writer *w, blk64_t pblk, const void *data, struct shed_err *err)
{
    bool contiguous = w->wbuf_blocks > 0 && pblk == w->wbuf_pblk + w->wbuf_blocks;

    if (w->wbuf_blocks > 0 && (!contiguous || w->wbuf_blocks == w->wbuf_capacity)) {
        if (ext4_write_flush(w, err) < 0)
            return -1;
    }
    if (w->wbuf_blocks == 0)
        w->wbuf_pblk = pblk;
    memcpy(w->wbuf + (size_t)w->wbuf_blocks * EXT4W_BLOCK_SIZE, data, EXT4W_BLOCK_SIZE);
    w->wbuf_blocks++;
    return 0;
}
