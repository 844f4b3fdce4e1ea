/* ext4_dir: writes a directory's blocks once, at finish, from its in-memory entries.
 *
 * A directory that fits in one block is a plain linear block. Anything larger becomes an
 * htree (dir_index) like the kernel would have made it: entries sorted by their ext4
 * dirhash and packed into leaf blocks, a dx_root in block 0 mapping hash ranges to leaves,
 * and one level of dx nodes in between when the root's 507 slots are not enough. When two
 * leaves share a hash at their boundary, the second leaf's index hash gets the low
 * "continued" bit, as the kernel expects for collisions. */
#include "ext4_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

#define DIRENT_TAIL_SIZE ((unsigned)sizeof(struct ext2_dir_entry_tail))
#define LEAF_SPACE (EXT4W_BLOCK_SIZE - DIRENT_TAIL_SIZE)
#define DX_ROOT_ENTRIES_OFFSET 32u /* ".", "..", dx_root_info */
#define DX_NODE_ENTRIES_OFFSET 8u  /* one empty dirent spanning the block */
#define DX_LIMIT(offset)                                                                           \
    ((EXT4W_BLOCK_SIZE - (offset) - (unsigned)sizeof(struct ext2_dx_tail)) /                       \
     (unsigned)sizeof(struct ext2_dx_entry))
#define LOST_FOUND_BLOCKS 4u /* mke2fs preallocates 16 KiB */

struct dir_item {
    const char *name;
    uint16_t name_len;
    uint8_t file_type;
    ext2_ino_t ino;
    ext2_dirhash_t hash, minor_hash;
};

struct dir_layout {
    uint8_t *blocks;
    uint32_t block_count;
    bool indexed;
};

uint8_t ext4_dirent_file_type(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return EXT2_FT_REG_FILE;
    case S_IFDIR: return EXT2_FT_DIR;
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    case S_IFLNK: return EXT2_FT_SYMLINK;
    default: return EXT2_FT_UNKNOWN;
    }
}

static unsigned rec_len_of(unsigned name_len)
{
    return (8u + name_len + 3u) & ~3u;
}

static struct ext2_dir_entry *dirent_put(ext2_filsys fs, uint8_t *at, ext2_ino_t ino,
                                         unsigned rec_len, const char *name, unsigned name_len,
                                         uint8_t file_type)
{
    struct ext2_dir_entry *dirent = (struct ext2_dir_entry *)at;

    dirent->inode = ext2fs_cpu_to_le32(ino);
    (void)ext2fs_set_rec_len(fs, rec_len, dirent);
    ext2fs_dirent_set_name_len(dirent, (int)name_len);
    ext2fs_dirent_set_file_type(dirent, file_type);
    memcpy(dirent->name, name, name_len);
    return dirent;
}

/* ---- collecting entries ---- */

struct collect_ctx {
    struct dir_item *items;
    size_t count;
};

static int collect_one(struct ext4_dentry *dentry, void *opaque)
{
    struct collect_ctx *ctx = opaque;

    ctx->items[ctx->count++] = (struct dir_item){
        .name = dentry->name,
        .name_len = dentry->name_len,
        .file_type = ext4_dirent_file_type(dentry->inode->mode),
        .ino = dentry->inode->ino,
    };
    return 0;
}

static int items_hash(struct ext4_writer *w, struct dir_item *items, size_t count,
                      struct shed_err *err)
{
    struct ext2_super_block *sb = w->fs->super;
    int version = sb->s_def_hash_version;

    /* The superblock says how this platform's mke2fs hashed (e2fsck and the kernel agree). */
    if (version <= EXT2_HASH_TEA && (sb->s_flags & EXT2_FLAGS_UNSIGNED_HASH))
        version += 3;
    for (size_t i = 0; i < count; i++) {
        errcode_t code = ext2fs_dirhash2(version, items[i].name, items[i].name_len, NULL, 0,
                                         sb->s_hash_seed, &items[i].hash, &items[i].minor_hash);
        if (code)
            return ext4_fail(err, code, "hashing directory entry %s", items[i].name);
    }
    return 0;
}

static int item_compare(const void *a, const void *b)
{
    const struct dir_item *x = a, *y = b;

    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->minor_hash != y->minor_hash)
        return x->minor_hash < y->minor_hash ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---- linear directories ---- */

static size_t linear_bytes(const struct dir_item *items, size_t count)
{
    size_t total = rec_len_of(1) + rec_len_of(2);

    for (size_t i = 0; i < count; i++)
        total += rec_len_of(items[i].name_len);
    return total;
}

/* Packs entries into blocks, each ending with the checksum tail; the last entry of a
 * block stretches to the tail. Blocks left over hold one empty entry. */
static void linear_fill(struct ext4_writer *w, struct ext4_inode_rec *dir,
                        const struct dir_item *items, size_t count, struct dir_layout *layout)
{
    uint32_t block = 0;
    unsigned offset = 0;
    struct ext2_dir_entry *last = NULL;
    uint8_t *base = layout->blocks;

    for (size_t i = 0; i < count + 2; i++) {
        const char *name = i == 0 ? "." : i == 1 ? ".." : items[i - 2].name;
        unsigned name_len = i == 0 ? 1 : i == 1 ? 2 : items[i - 2].name_len;
        ext2_ino_t ino = i == 0 ? dir->ino : i == 1 ? dir->parent->ino : items[i - 2].ino;
        uint8_t type = i < 2 ? EXT2_FT_DIR : items[i - 2].file_type;
        unsigned rec_len = rec_len_of(name_len);

        if (offset + rec_len > LEAF_SPACE) {
            (void)ext2fs_set_rec_len(w->fs, LEAF_SPACE - (unsigned)((uint8_t *)last - base), last);
            block++;
            base = layout->blocks + (size_t)block * EXT4W_BLOCK_SIZE;
            offset = 0;
        }
        last = dirent_put(w->fs, base + offset, ino, rec_len, name, name_len, type);
        offset += rec_len;
    }
    (void)ext2fs_set_rec_len(w->fs, LEAF_SPACE - (unsigned)((uint8_t *)last - base), last);
    for (block++; block < layout->block_count; block++)
        dirent_put(w->fs, layout->blocks + (size_t)block * EXT4W_BLOCK_SIZE, 0, LEAF_SPACE, "", 0,
                   0);
    for (block = 0; block < layout->block_count; block++)
        ext2fs_initialize_dirent_tail(
            w->fs, (struct ext2_dir_entry_tail *)(layout->blocks +
                                                  (size_t)block * EXT4W_BLOCK_SIZE + LEAF_SPACE));
}

/* ---- htree directories ---- */

/* Leaf boundaries: leaf_first[i] is the index of the first item of leaf i. */
static uint32_t leaves_plan(const struct dir_item *items, size_t count, uint32_t *leaf_first)
{
    uint32_t leaves = 0;
    unsigned used = LEAF_SPACE;

    for (size_t i = 0; i < count; i++) {
        unsigned rec_len = rec_len_of(items[i].name_len);
        if (used + rec_len > LEAF_SPACE) {
            leaf_first[leaves++] = (uint32_t)i;
            used = 0;
        }
        used += rec_len;
    }
    return leaves;
}

static void leaf_fill(struct ext4_writer *w, uint8_t *block, const struct dir_item *items,
                      size_t count)
{
    unsigned offset = 0;
    struct ext2_dir_entry *last = NULL;

    for (size_t i = 0; i < count; i++) {
        unsigned rec_len = rec_len_of(items[i].name_len);
        last = dirent_put(w->fs, block + offset, items[i].ino, rec_len, items[i].name,
                          items[i].name_len, items[i].file_type);
        offset += rec_len;
    }
    (void)ext2fs_set_rec_len(w->fs, LEAF_SPACE - (unsigned)((uint8_t *)last - block), last);
    ext2fs_initialize_dirent_tail(w->fs, (struct ext2_dir_entry_tail *)(block + LEAF_SPACE));
}

/* The hash a parent records for leaf i: its first hash, marked "continued" if the previous
 * leaf ends with the same hash. */
static uint32_t leaf_index_hash(const struct dir_item *items, const uint32_t *leaf_first,
                                uint32_t leaf)
{
    uint32_t hash = items[leaf_first[leaf]].hash;

    if (leaf > 0 && items[leaf_first[leaf] - 1].hash == hash)
        hash |= 1;
    return hash;
}

struct dx_child {
    uint32_t hash;  /* unused for the first child of a node */
    uint32_t block; /* logical block in the directory */
};

static void dx_entries_put(uint8_t *at, unsigned limit, const struct dx_child *children,
                           uint32_t count)
{
    struct ext2_dx_countlimit *countlimit = (struct ext2_dx_countlimit *)at;
    struct ext2_dx_entry *entries = (struct ext2_dx_entry *)at;

    for (uint32_t i = 0; i < count; i++) {
        if (i > 0)
            entries[i].hash = ext2fs_cpu_to_le32(children[i].hash);
        entries[i].block = ext2fs_cpu_to_le32(children[i].block);
    }
    /* countlimit overlays the hash of entry 0. */
    countlimit->limit = ext2fs_cpu_to_le16((uint16_t)limit);
    countlimit->count = ext2fs_cpu_to_le16((uint16_t)count);
}

static void dx_root_put(struct ext4_writer *w, struct ext4_inode_rec *dir, uint8_t *block,
                        uint8_t levels, const struct dx_child *children, uint32_t count)
{
    struct ext2_dx_root_info *info = (struct ext2_dx_root_info *)(block + 24);

    dirent_put(w->fs, block, dir->ino, 12, ".", 1, EXT2_FT_DIR);
    dirent_put(w->fs, block + 12, dir->parent->ino, EXT4W_BLOCK_SIZE - 12, "..", 2, EXT2_FT_DIR);
    info->reserved_zero = 0;
    info->hash_version = w->fs->super->s_def_hash_version;
    info->info_length = sizeof(*info);
    info->indirect_levels = levels;
    info->unused_flags = 0;
    dx_entries_put(block + DX_ROOT_ENTRIES_OFFSET, DX_LIMIT(DX_ROOT_ENTRIES_OFFSET), children,
                   count);
}

static void dx_node_put(struct ext4_writer *w, uint8_t *block, const struct dx_child *children,
                        uint32_t count)
{
    dirent_put(w->fs, block, 0, EXT4W_BLOCK_SIZE, "", 0, 0);
    dx_entries_put(block + DX_NODE_ENTRIES_OFFSET, DX_LIMIT(DX_NODE_ENTRIES_OFFSET), children,
                   count);
}

static int htree_fill(struct ext4_writer *w, struct ext4_inode_rec *dir, struct dir_item *items,
                      size_t count, struct dir_layout *layout, struct shed_err *err)
{
    const uint32_t root_limit = DX_LIMIT(DX_ROOT_ENTRIES_OFFSET);
    const uint32_t node_limit = DX_LIMIT(DX_NODE_ENTRIES_OFFSET);
    cleanup_free uint32_t *leaf_first = NULL;
    cleanup_free struct dx_child *children = NULL;
    uint32_t leaves, nodes, first_leaf_block;

    qsort(items, count, sizeof(*items), item_compare);
    leaf_first = malloc((count + 1) * sizeof(*leaf_first));
    children = malloc((count + 1) * sizeof(*children));
    if (leaf_first == NULL || children == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for a directory index");
    leaves = leaves_plan(items, count, leaf_first);
    leaf_first[leaves] = (uint32_t)count;
    nodes = leaves <= root_limit ? 0 : (leaves + node_limit - 1) / node_limit;
    if (nodes > root_limit)
        return shed_errf(err, SHED_E_UNSUPPORTED,
                         "directory inode %u is too large for a two-level htree (%zu entries)",
                         dir->ino, count);
    first_leaf_block = 1 + nodes;
    layout->block_count = first_leaf_block + leaves;
    layout->indexed = true;
    layout->blocks = calloc(layout->block_count, EXT4W_BLOCK_SIZE);
    if (layout->blocks == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for directory blocks");

    for (uint32_t leaf = 0; leaf < leaves; leaf++) {
        leaf_fill(w, layout->blocks + (size_t)(first_leaf_block + leaf) * EXT4W_BLOCK_SIZE,
                  items + leaf_first[leaf], leaf_first[leaf + 1] - leaf_first[leaf]);
        children[leaf] = (struct dx_child){.hash = leaf_index_hash(items, leaf_first, leaf),
                                           .block = first_leaf_block + leaf};
    }
    if (nodes == 0) {
        dx_root_put(w, dir, layout->blocks, 0, children, leaves);
        return 0;
    }
    for (uint32_t node = 0; node < nodes; node++) {
        uint32_t first = node * node_limit;
        uint32_t n = leaves - first < node_limit ? leaves - first : node_limit;
        dx_node_put(w, layout->blocks + (size_t)(1 + node) * EXT4W_BLOCK_SIZE, children + first, n);
        /* Reuse the array for the root's view: node i starts where its first leaf does. */
        children[node] = (struct dx_child){.hash = children[first].hash, .block = 1 + node};
    }
    dx_root_put(w, dir, layout->blocks, 1, children, nodes);
    return 0;
}

/* ---- placing and writing ---- */

static int layout_place(struct ext4_writer *w, struct ext4_inode_rec *dir, uint32_t block_count,
                        struct shed_err *err)
{
    uint32_t lblk = 0;

    while (lblk < block_count) {
        blk64_t pblk;
        uint64_t got;
        if (ext4_alloc_blocks(w, block_count - lblk, &pblk, &got, err) < 0)
            return -1;
        if (ext4_extents_add_run(&dir->extents, lblk, pblk, (uint32_t)got, err) < 0)
            return -1;
        lblk += (uint32_t)got;
    }
    dir->data_blocks = block_count;
    dir->size = (uint64_t)block_count * EXT4W_BLOCK_SIZE;
    return 0;
}

static int layout_write(struct ext4_writer *w, struct ext4_inode_rec *dir,
                        struct dir_layout *layout, struct shed_err *err)
{
    uint32_t lblk = 0;

    for (uint32_t e = 0; e < dir->extents.count; e++) {
        const struct ext4_extent_rec *extent = &dir->extents.items[e];
        for (uint32_t i = 0; i < extent->len; i++, lblk++) {
            uint8_t *block = layout->blocks + (size_t)lblk * EXT4W_BLOCK_SIZE;
            errcode_t code =
                ext2fs_dir_block_csum_set(w->fs, dir->ino, (struct ext2_dir_entry *)block);
            if (code)
                return ext4_fail(err, code, "checksumming block %u of directory inode %u", lblk,
                                 dir->ino);
            if (ext4_write_block(w, extent->pblk + i, block, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int layout_build(struct ext4_writer *w, struct ext4_inode_rec *dir, struct dir_item *items,
                        size_t count, struct dir_layout *layout, struct shed_err *err)
{
    size_t bytes = linear_bytes(items, count);
    uint32_t min_blocks = dir->is_lost_found ? LOST_FOUND_BLOCKS : 1;

    if (bytes <= LEAF_SPACE) {
        /* Linear: one block (lost+found: its preallocated four, like mke2fs). */
        layout->block_count = min_blocks;
        layout->blocks = calloc(min_blocks, EXT4W_BLOCK_SIZE);
        if (layout->blocks == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for directory blocks");
        linear_fill(w, dir, items, count, layout);
        return 0;
    }
    if (items_hash(w, items, count, err) < 0)
        return -1;
    return htree_fill(w, dir, items, count, layout, err);
}

int ext4_dir_write(struct ext4_writer *w, struct ext4_inode_rec *dir, struct shed_err *err)
{
    cleanup_free struct dir_item *items = NULL;
    struct collect_ctx ctx = {0};
    struct dir_layout layout = {0};
    int ret;

    items = malloc((dir->children.entry_count + 1) * sizeof(*items));
    if (items == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for a directory");
    ctx.items = items;
    (void)ext4_dir_for_each(dir, collect_one, &ctx);
    ret = layout_build(w, dir, items, ctx.count, &layout, err);
    if (ret == 0)
        ret = layout_place(w, dir, layout.block_count, err);
    if (ret == 0)
        ret = ext4_inode_write_extents(w, dir, layout.indexed ? EXT2_INDEX_FL : 0, err);
    if (ret == 0)
        ret = layout_write(w, dir, &layout, err);
    free(layout.blocks);
    return ret;
}
