/* Private to the ext4 writer (imaged/ext4_*.c): the in-memory tree, the block allocator
 * and the helpers the writer's files share. See the design note in ext4_writer.c. */
#ifndef SHED_EXT4_INTERNAL_H
#define SHED_EXT4_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <ext2fs/ext2fs.h>

#include "imaged/ext4_writer.h"

#define EXT4W_BLOCK_SIZE 4096u
#define EXT4W_LOG_BLOCK_SIZE 2 /* s_log_block_size: 1024 << 2 */
#define EXT4W_INODE_SIZE 256u
/* Longest run of blocks one initialized extent can describe. */
#define EXT4W_MAX_EXTENT_BLOCKS 32768u
/* Data is gathered into this many bytes of physically contiguous blocks per pwrite(). */
#define EXT4W_WRITE_BUFFER_BYTES (4u << 20)
/* ext4's limit for i_links_count; directories beyond it use 1 (dir_nlink). */
#define EXT4W_LINK_MAX 65000u
#define EXT4W_SYMLINK_MAX 4095u
#define EXT4W_FAST_SYMLINK_MAX 59u /* target must fit in i_block (60 bytes) without the NUL */

struct ext4_extent_rec {
    uint64_t pblk;
    uint32_t lblk;
    uint32_t len;
};

/* A growable list of extents (logical → physical), kept sorted by lblk. */
struct ext4_extent_list {
    struct ext4_extent_rec *items;
    uint32_t count;
    size_t capacity;
};

struct ext4_xattr_item {
    char *name;
    void *value;
    size_t len;
};

struct ext4_inode_rec;

/* One name in a directory. Tagged with the layer that wrote it (for whiteouts). */
struct ext4_dentry {
    struct ext4_dentry *next_in_bucket;
    struct ext4_inode_rec *inode;
    uint32_t name_hash; /* FNV-1a for the in-memory table, not the ext4 dirhash */
    unsigned layer;
    uint16_t name_len;
    char name[]; /* NUL-terminated */
};

/* Chained hash table name → dentry; buckets grow by doubling. */
struct ext4_dir_table {
    struct ext4_dentry **buckets;
    uint32_t bucket_count, entry_count;
};

/* Everything the writer knows about one inode until ext4_writer_finish writes it. */
struct ext4_inode_rec {
    struct ext4_inode_rec *prev, *next; /* list of live inodes, creation order */
    ext2_ino_t ino;
    uint32_t name_count; /* directory entries naming this inode (hardlinks) */
    uint32_t mode;
    uint32_t uid, gid;
    struct ext4_timestamp atime, mtime, ctime;
    uint64_t size;
    struct ext4_xattr_item *xattrs;
    size_t xattr_count;
    struct ext4_extent_list extents; /* regular files (dirs and slow symlinks at finish) */
    uint64_t data_blocks;            /* blocks referenced by extents */
    char *symlink_target;
    uint32_t rdev_major, rdev_minor;
    /* directories */
    struct ext4_inode_rec *parent;
    struct ext4_dir_table children;
    uint32_t subdir_count;
    bool is_lost_found; /* written with 4 preallocated blocks like mke2fs */
    bool meta_explicit; /* root/lost+found: timestamps came from a mkdir call */
};

/* The one regular file being streamed (ext4_writer_file_begin .. _end). */
struct ext4_file {
    struct ext4_writer *writer;
    struct ext4_inode_rec *inode;
    uint64_t size;      /* declared final size */
    uint64_t write_end; /* end of the last write: the next must start at or after it */
    uint8_t *partial;   /* block being assembled from unaligned writes */
    uint64_t partial_lblk;
    bool has_partial;
};

struct ext4_writer {
    ext2_filsys fs;
    int fd; /* our own descriptor for the bulk data writes (libext2fs has its own) */
    char *path;
    unsigned layer;
    uint64_t blocks_count;

    struct ext4_inode_rec *root;
    struct ext4_inode_rec *lost_found;
    struct ext4_inode_rec *inodes_head, *inodes_tail;
    ext2_ino_t next_ino;

    /* Bump allocator over the block bitmap: blocks [alloc_next, alloc_end) are known free;
     * [alloc_committed, alloc_next) are handed out but not yet marked in the bitmap. */
    blk64_t alloc_next, alloc_end, alloc_committed;

    /* Write-behind buffer of physically contiguous blocks starting at wbuf_pblk. */
    uint8_t *wbuf;
    blk64_t wbuf_pblk;
    uint32_t wbuf_blocks, wbuf_capacity;

    struct ext4_file file;
    bool file_open;

    bool have_latest_mtime;
    struct ext4_timestamp latest_mtime; /* default timestamps of / and lost+found */
    uint64_t shortfall_bytes;           /* what the last failed allocation still needed */
};

/* ext4_fs.c: the filesystem, allocators, raw writes, error mapping */
int ext4_fail(struct shed_err *err, errcode_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ext4_fs_create(struct ext4_writer *w, const char *path, const struct ext4_writer_opts *opts,
                   struct shed_err *err);
int ext4_fs_close(struct ext4_writer *w, struct shed_err *err);
int ext4_alloc_blocks(struct ext4_writer *w, uint64_t want, blk64_t *pblk, uint64_t *got,
                      struct shed_err *err);
void ext4_alloc_commit(struct ext4_writer *w);
void ext4_alloc_forget_window(struct ext4_writer *w);
void ext4_free_blocks(struct ext4_writer *w, blk64_t pblk, uint64_t count);
int ext4_alloc_inode(struct ext4_writer *w, bool is_dir, ext2_ino_t *ino, struct shed_err *err);
void ext4_free_inode(struct ext4_writer *w, ext2_ino_t ino, bool is_dir);
int ext4_write_block(struct ext4_writer *w, blk64_t pblk, const void *data, struct shed_err *err);
int ext4_write_flush(struct ext4_writer *w, struct shed_err *err);

/* ext4_extent.c: extent lists and trees */
int ext4_extents_add_block(struct ext4_extent_list *list, uint32_t lblk, blk64_t pblk,
                           struct shed_err *err);
int ext4_extents_add_run(struct ext4_extent_list *list, uint32_t lblk, blk64_t pblk, uint32_t len,
                         struct shed_err *err);
void ext4_extents_free_blocks(struct ext4_writer *w, const struct ext4_extent_list *list);
/* Lays out the extent tree of an inode: fills i_block and, past 4 extents, allocates tree
 * blocks (returned in *tree, *tree_pblks, *tree_count for ext4_extent_tree_write). */
struct ext4_extent_tree {
    uint8_t *blocks;
    blk64_t *pblks;
    uint32_t count;
};
int ext4_extent_tree_build(struct ext4_writer *w, const struct ext4_extent_list *list,
                           uint32_t i_block[EXT2_N_BLOCKS], struct ext4_extent_tree *tree,
                           struct shed_err *err);
int ext4_extent_tree_write(struct ext4_writer *w, ext2_ino_t ino, struct ext4_extent_tree *tree,
                           struct shed_err *err);
void ext4_extent_tree_free(struct ext4_extent_tree *tree);

/* ext4_dir.c: directory blocks (linear and htree) */
int ext4_dir_write(struct ext4_writer *w, struct ext4_inode_rec *dir, struct shed_err *err);
uint8_t ext4_dirent_file_type(uint32_t mode);

/* ext4_inode.c: on-disk inodes and their extended attributes */
int ext4_inode_write(struct ext4_writer *w, struct ext4_inode_rec *rec, uint32_t flags,
                     const uint32_t i_block[EXT2_N_BLOCKS], uint64_t extra_blocks,
                     struct shed_err *err);
int ext4_inode_write_extents(struct ext4_writer *w, struct ext4_inode_rec *rec, uint32_t flags,
                             struct shed_err *err);
int ext4_inode_write_file(struct ext4_writer *w, struct ext4_inode_rec *rec, struct shed_err *err);
int ext4_inode_write_symlink(struct ext4_writer *w, struct ext4_inode_rec *rec,
                             struct shed_err *err);
int ext4_inode_write_special(struct ext4_writer *w, struct ext4_inode_rec *rec,
                             struct shed_err *err);
int ext4_inode_write_xattrs(struct ext4_writer *w, struct ext4_inode_rec *rec,
                            struct shed_err *err);

/* ext4_data.c: streaming regular-file data */
int ext4_data_write(struct ext4_file *file, uint64_t offset, const uint8_t *data, size_t len,
                    struct shed_err *err);
int ext4_data_finish(struct ext4_file *file, struct shed_err *err);

/* ext4_writer.c: iteration helpers shared with ext4_dir.c */
typedef int (*ext4_dentry_fn)(struct ext4_dentry *dentry, void *ctx);
int ext4_dir_for_each(struct ext4_inode_rec *dir, ext4_dentry_fn fn, void *ctx);

static inline bool ext4_is_dir(const struct ext4_inode_rec *rec)
{
    return (rec->mode & S_IFMT) == S_IFDIR;
}

#endif
