/* ext4_read: the little the runtime needs to know about an existing ext4 image without
 * mounting it (libext2fs, read-only): the attributes of its root directory. */
#include <string.h>

#include <ext2fs/ext2fs.h>

#include "ext4_internal.h"
#include "imaged/ext4_writer.h"

/* The kernel's ext4_decode_extra_time(): 2 epoch bits extend the signed 32-bit seconds. */
static struct ext4_timestamp time_decode(__u32 seconds, __u32 extra)
{
    struct ext4_timestamp ts = {.sec = (int32_t)seconds, .nsec = extra >> EXT4_EPOCH_BITS};
    ts.sec += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
    return ts;
}

int ext4_read_root_meta(const char *path, struct ext4_meta *meta, struct shed_err *err)
{
    ext2_filsys fs = NULL;
    errcode_t code = ext2fs_open(path, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
    if (code)
        return ext4_fail(err, code, "opening %s", path);
    struct ext2_inode_large inode;
    memset(&inode, 0, sizeof inode);
    code = ext2fs_read_inode_full(fs, EXT2_ROOT_INO, (struct ext2_inode *)&inode, sizeof inode);
    ext2fs_close_free(&fs);
    if (code)
        return ext4_fail(err, code, "reading the root directory of %s", path);
    memset(meta, 0, sizeof *meta);
    meta->mode = inode.i_mode;
    meta->uid = inode_uid(inode);
    meta->gid = inode_gid(inode);
    bool extra = inode.i_extra_isize >= 4 * sizeof(__u32);
    meta->mtime = time_decode(inode.i_mtime, extra ? inode.i_mtime_extra : 0);
    meta->atime = time_decode(inode.i_atime, extra ? inode.i_atime_extra : 0);
    meta->ctime = time_decode(inode.i_ctime, extra ? inode.i_ctime_extra : 0);
    meta->has_atime = meta->has_ctime = true;
    return 0;
}
