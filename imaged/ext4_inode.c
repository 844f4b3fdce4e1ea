/* ext4_inode: turning an inode record into its on-disk 256-byte inode, plus the kinds
 * whose content lives in the inode itself (fast symlinks, devices) and extended attributes. */
#include "ext4_internal.h"

#include <string.h>
#include <sys/sysmacros.h>

/* ext4 stores seconds as a signed 32-bit field plus 2 "epoch" bits in the *_extra field,
 * which extends the range to 1901..2446; nanoseconds take the other 30 bits. */
#define EXT4_TIME_MIN INT32_MIN
#define EXT4_TIME_MAX (INT32_MAX + (3LL << 32))

static void time_encode(const struct ext4_timestamp *ts, __u32 *seconds, __u32 *extra)
{
    int64_t sec = ts->sec;
    uint32_t nsec = ts->nsec < 1000000000u ? ts->nsec : 999999999u;

    if (sec < EXT4_TIME_MIN) {
        sec = EXT4_TIME_MIN;
        nsec = 0;
    }
    if (sec > EXT4_TIME_MAX) {
        sec = EXT4_TIME_MAX;
        nsec = 999999999u;
    }
    *seconds = (__u32)(int32_t)sec;
    /* Same as the kernel's ext4_encode_extra_time(). */
    *extra = (__u32)(((sec - (int32_t)sec) >> 32) & EXT4_EPOCH_MASK) | (nsec << EXT4_EPOCH_BITS);
}

static uint16_t links_count_of(const struct ext4_inode_rec *rec)
{
    if (ext4_is_dir(rec)) {
        uint64_t links = 2ULL + rec->subdir_count;
        /* dir_nlink: a directory with too many subdirectories reports 1. */
        return links >= EXT4W_LINK_MAX ? 1 : (uint16_t)links;
    }
    return (uint16_t)rec->name_count;
}

int ext4_inode_write(struct ext4_writer *w, struct ext4_inode_rec *rec, uint32_t flags,
                     const uint32_t i_block[EXT2_N_BLOCKS], uint64_t extra_blocks,
                     struct shed_err *err)
{
    struct ext2_inode_large inode;
    errcode_t code;

    memset(&inode, 0, sizeof(inode));
    inode.i_mode = (__u16)rec->mode;
    inode.i_uid = (__u16)rec->uid;
    inode.osd2.linux2.l_i_uid_high = (__u16)(rec->uid >> 16);
    inode.i_gid = (__u16)rec->gid;
    inode.osd2.linux2.l_i_gid_high = (__u16)(rec->gid >> 16);
    inode.i_links_count = links_count_of(rec);
    inode.i_flags = flags;
    inode.i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    time_encode(&rec->atime, &inode.i_atime, &inode.i_atime_extra);
    time_encode(&rec->mtime, &inode.i_mtime, &inode.i_mtime_extra);
    time_encode(&rec->ctime, &inode.i_ctime, &inode.i_ctime_extra);
    /* Creation time is not part of a tar entry: use ctime, so images are reproducible. */
    time_encode(&rec->ctime, &inode.i_crtime, &inode.i_crtime_extra);
    memcpy(inode.i_block, i_block, sizeof(inode.i_block));
    code = ext2fs_inode_size_set(w->fs, (struct ext2_inode *)&inode, rec->size);
    if (code)
        return ext4_fail(err, code, "setting the size of inode %u", rec->ino);
    code = ext2fs_iblk_set(w->fs, (struct ext2_inode *)&inode, rec->data_blocks + extra_blocks);
    if (code)
        return ext4_fail(err, code, "setting the block count of inode %u", rec->ino);
    /* Not ext2fs_write_new_inode(): it replaces a zero timestamp (1970-01-01) with "now". */
    code = ext2fs_write_inode_full(w->fs, rec->ino, (struct ext2_inode *)&inode, sizeof(inode));
    if (code)
        return ext4_fail(err, code, "writing inode %u", rec->ino);
    return 0;
}

/* Regular files and slow symlinks and directories: extents in i_block, tree beyond 4. */
int ext4_inode_write_extents(struct ext4_writer *w, struct ext4_inode_rec *rec, uint32_t flags,
                             struct shed_err *err)
{
    struct ext4_extent_tree tree;
    uint32_t i_block[EXT2_N_BLOCKS];
    int ret;

    if (ext4_extent_tree_build(w, &rec->extents, i_block, &tree, err) < 0)
        return -1;
    ret = ext4_inode_write(w, rec, flags | EXT4_EXTENTS_FL, i_block, tree.count, err);
    if (ret == 0)
        ret = ext4_extent_tree_write(w, rec->ino, &tree, err);
    ext4_extent_tree_free(&tree);
    return ret;
}

int ext4_inode_write_file(struct ext4_writer *w, struct ext4_inode_rec *rec, struct shed_err *err)
{
    return ext4_inode_write_extents(w, rec, 0, err);
}

int ext4_inode_write_symlink(struct ext4_writer *w, struct ext4_inode_rec *rec,
                             struct shed_err *err)
{
    size_t len = strlen(rec->symlink_target);
    uint8_t block[EXT4W_BLOCK_SIZE];
    uint32_t i_block[EXT2_N_BLOCKS];
    uint64_t got;
    blk64_t pblk;

    rec->size = len;
    if (len <= EXT4W_FAST_SYMLINK_MAX) {
        /* Fast symlink: the target lives in i_block, no blocks, no extent flag. */
        memset(i_block, 0, sizeof(i_block));
        memcpy(i_block, rec->symlink_target, len);
        return ext4_inode_write(w, rec, 0, i_block, 0, err);
    }
    if (ext4_alloc_blocks(w, 1, &pblk, &got, err) < 0)
        return -1;
    if (ext4_extents_add_block(&rec->extents, 0, pblk, err) < 0) {
        ext4_free_blocks(w, pblk, 1);
        return -1;
    }
    rec->data_blocks = 1;
    memset(block, 0, sizeof(block));
    memcpy(block, rec->symlink_target, len);
    if (ext4_write_block(w, pblk, block, err) < 0)
        return -1;
    return ext4_inode_write_extents(w, rec, 0, err);
}

/* Device numbers go in i_block exactly as the kernel's ext4_do_update_inode() puts them. */
static void device_encode(const struct ext4_inode_rec *rec, uint32_t i_block[EXT2_N_BLOCKS])
{
    uint32_t major = rec->rdev_major, minor = rec->rdev_minor;

    if (major < 256 && minor < 256) {
        i_block[0] = ext2fs_cpu_to_le32((major << 8) | minor);
    } else {
        i_block[1] = ext2fs_cpu_to_le32((minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12));
    }
}

int ext4_inode_write_special(struct ext4_writer *w, struct ext4_inode_rec *rec,
                             struct shed_err *err)
{
    uint32_t i_block[EXT2_N_BLOCKS];

    memset(i_block, 0, sizeof(i_block));
    if (S_ISCHR(rec->mode) || S_ISBLK(rec->mode))
        device_encode(rec, i_block);
    rec->size = 0;
    return ext4_inode_write(w, rec, 0, i_block, 0, err);
}

/* libext2fs places small values in the inode body and the rest in one shared block. */
int ext4_inode_write_xattrs(struct ext4_writer *w, struct ext4_inode_rec *rec, struct shed_err *err)
{
    struct ext2_xattr_handle *handle = NULL;
    errcode_t code;
    int ret = 0;

    if (rec->xattr_count == 0)
        return 0;
    /* libext2fs allocates the xattr block itself, from the bitmap. */
    ext4_alloc_forget_window(w);
    code = ext2fs_xattrs_open(w->fs, rec->ino, &handle);
    if (code)
        return ext4_fail(err, code, "opening the extended attributes of inode %u", rec->ino);
    code = ext2fs_xattrs_read(handle);
    if (code)
        ret = ext4_fail(err, code, "reading the extended attributes of inode %u", rec->ino);
    for (size_t i = 0; ret == 0 && i < rec->xattr_count; i++) {
        const struct ext4_xattr_item *x = &rec->xattrs[i];
        code = ext2fs_xattr_set(handle, x->name, x->value, x->len);
        if (code == EXT2_ET_EA_NO_SPACE)
            ret = shed_errf(err, SHED_E_UNSUPPORTED,
                            "extended attribute %s (%zu bytes) does not fit: ext4 keeps all "
                            "of an inode's attributes in its body and one 4 KiB block",
                            x->name, x->len);
        else if (code)
            ret = ext4_fail(err, code, "setting extended attribute %s (%zu bytes) on inode %u",
                            x->name, x->len, rec->ino);
    }
    code = ext2fs_xattrs_close(&handle);
    if (code && ret == 0)
        ret = ext4_fail(err, code, "closing the extended attributes of inode %u", rec->ino);
    return ret;
}
