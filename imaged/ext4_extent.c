/* ext4_extent: in-memory extent lists and the on-disk extent trees built from them.
 *
 * Files are written front to back, so an extent list only ever grows at its end and the
 * tree can be laid out bottom-up in one go at finish time: full leaves of 340 extents,
 * index levels above them until at most 4 entries remain for i_block. */
#include "ext4_internal.h"

#include <stdlib.h>
#include <string.h>

#include <ext2fs/ext3_extents.h>

#include "common/array.h"
#include "common/cleanup.h"

#define EXTENTS_IN_INODE 4u
#define ENTRIES_PER_TREE_BLOCK                                                                     \
    ((EXT4W_BLOCK_SIZE - sizeof(struct ext3_extent_header)) / sizeof(struct ext3_extent))

int ext4_extents_add_run(struct ext4_extent_list *list, uint32_t lblk, blk64_t pblk, uint32_t len,
                         struct shed_err *err)
{
    while (len > 0) {
        struct ext4_extent_rec *last = list->count ? &list->items[list->count - 1] : NULL;
        uint32_t take;

        if (last != NULL && last->lblk + last->len == lblk && last->pblk + last->len == pblk &&
            last->len < EXT4W_MAX_EXTENT_BLOCKS) {
            take = EXT4W_MAX_EXTENT_BLOCKS - last->len;
            take = take < len ? take : len;
            last->len += take;
        } else {
            if (ARRAY_RESERVE(list->items, list->capacity, (size_t)list->count + 1, err) < 0)
                return -1;
            take = len < EXT4W_MAX_EXTENT_BLOCKS ? len : EXT4W_MAX_EXTENT_BLOCKS;
            list->items[list->count++] =
                (struct ext4_extent_rec){.pblk = pblk, .lblk = lblk, .len = take};
        }
        lblk += take;
        pblk += take;
        len -= take;
    }
    return 0;
}

int ext4_extents_add_block(struct ext4_extent_list *list, uint32_t lblk, blk64_t pblk,
                           struct shed_err *err)
{
    return ext4_extents_add_run(list, lblk, pblk, 1, err);
}

void ext4_extents_free_blocks(struct ext4_writer *w, const struct ext4_extent_list *list)
{
    for (uint32_t i = 0; i < list->count; i++)
        ext4_free_blocks(w, list->items[i].pblk, list->items[i].len);
}

/* One entry of a tree level: an extent (leaves) or a pointer to a child block (index). */
struct level_entry {
    uint32_t lblk;
    uint32_t len; /* leaves only */
    uint64_t pblk;
};

static void header_fill(struct ext3_extent_header *header, uint16_t entries, uint16_t max,
                        uint16_t depth)
{
    header->eh_magic = ext2fs_cpu_to_le16(EXT3_EXT_MAGIC);
    header->eh_entries = ext2fs_cpu_to_le16(entries);
    header->eh_max = ext2fs_cpu_to_le16(max);
    header->eh_depth = ext2fs_cpu_to_le16(depth);
    header->eh_generation = 0;
}

/* Writes entries (a leaf when depth == 0, an index node otherwise) after header. */
static void node_fill(void *node, const struct level_entry *entries, uint32_t count, uint16_t max,
                      uint16_t depth)
{
    struct ext3_extent_header *header = node;

    header_fill(header, (uint16_t)count, max, depth);
    for (uint32_t i = 0; i < count; i++) {
        if (depth == 0) {
            struct ext3_extent *extent = (struct ext3_extent *)(header + 1) + i;
            extent->ee_block = ext2fs_cpu_to_le32(entries[i].lblk);
            extent->ee_len = ext2fs_cpu_to_le16((uint16_t)entries[i].len);
            extent->ee_start_hi = ext2fs_cpu_to_le16((uint16_t)(entries[i].pblk >> 32));
            extent->ee_start = ext2fs_cpu_to_le32((uint32_t)entries[i].pblk);
        } else {
            struct ext3_extent_idx *index = (struct ext3_extent_idx *)(header + 1) + i;
            index->ei_block = ext2fs_cpu_to_le32(entries[i].lblk);
            index->ei_leaf = ext2fs_cpu_to_le32((uint32_t)entries[i].pblk);
            index->ei_leaf_hi = ext2fs_cpu_to_le16((uint16_t)(entries[i].pblk >> 32));
            index->ei_unused = 0;
        }
    }
}

static uint32_t tree_blocks_needed(uint32_t extents)
{
    uint32_t total = 0;

    while (extents > EXTENTS_IN_INODE) {
        extents = (extents + ENTRIES_PER_TREE_BLOCK - 1) / ENTRIES_PER_TREE_BLOCK;
        total += extents;
    }
    return total;
}

/* Builds one level of tree blocks from entries; rewrites entries in place with the index
 * entries pointing to the new blocks. */
static int level_build(struct ext4_writer *w, struct level_entry *entries, uint32_t *count,
                       uint16_t depth, struct ext4_extent_tree *tree, struct shed_err *err)
{
    uint32_t blocks = (*count + ENTRIES_PER_TREE_BLOCK - 1) / ENTRIES_PER_TREE_BLOCK;

    for (uint32_t b = 0; b < blocks; b++) {
        uint32_t first = b * ENTRIES_PER_TREE_BLOCK;
        uint32_t n =
            *count - first < ENTRIES_PER_TREE_BLOCK ? *count - first : ENTRIES_PER_TREE_BLOCK;
        uint8_t *node = tree->blocks + (size_t)tree->count * EXT4W_BLOCK_SIZE;
        uint64_t got;
        blk64_t pblk;

        if (ext4_alloc_blocks(w, 1, &pblk, &got, err) < 0)
            return -1;
        node_fill(node, entries + first, n, ENTRIES_PER_TREE_BLOCK, depth);
        tree->pblks[tree->count++] = pblk;
        /* The index entry covers from the child's first logical block. */
        entries[b] = (struct level_entry){.lblk = entries[first].lblk, .pblk = pblk};
    }
    *count = blocks;
    return 0;
}

int ext4_extent_tree_build(struct ext4_writer *w, const struct ext4_extent_list *list,
                           uint32_t i_block[EXT2_N_BLOCKS], struct ext4_extent_tree *tree,
                           struct shed_err *err)
{
    cleanup_free struct level_entry *entries = NULL;
    uint32_t total_blocks = tree_blocks_needed(list->count);
    uint32_t count = list->count;
    uint16_t depth = 0;

    memset(tree, 0, sizeof(*tree));
    memset(i_block, 0, sizeof(uint32_t) * EXT2_N_BLOCKS);
    entries = malloc((count ? count : 1) * sizeof(*entries));
    if (entries == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for an extent tree");
    for (uint32_t i = 0; i < count; i++)
        entries[i] = (struct level_entry){
            .lblk = list->items[i].lblk, .len = list->items[i].len, .pblk = list->items[i].pblk};
    if (total_blocks > 0) {
        tree->blocks = calloc(total_blocks, EXT4W_BLOCK_SIZE);
        tree->pblks = calloc(total_blocks, sizeof(*tree->pblks));
        if (tree->blocks == NULL || tree->pblks == NULL) {
            ext4_extent_tree_free(tree);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for an extent tree");
        }
    }
    while (count > EXTENTS_IN_INODE) {
        if (level_build(w, entries, &count, depth, tree, err) < 0) {
            for (uint32_t i = 0; i < tree->count; i++)
                ext4_free_blocks(w, tree->pblks[i], 1);
            ext4_extent_tree_free(tree);
            return -1;
        }
        depth++;
    }
    node_fill(i_block, entries, count, EXTENTS_IN_INODE, depth);
    return 0;
}

/* Needs the inode on disk already: the checksum covers the inode number and generation. */
int ext4_extent_tree_write(struct ext4_writer *w, ext2_ino_t ino, struct ext4_extent_tree *tree,
                           struct shed_err *err)
{
    for (uint32_t i = 0; i < tree->count; i++) {
        void *node = tree->blocks + (size_t)i * EXT4W_BLOCK_SIZE;
        errcode_t code = ext2fs_extent_block_csum_set(w->fs, ino, node);
        if (code)
            return ext4_fail(err, code, "checksumming an extent block of inode %u", ino);
        if (ext4_write_block(w, tree->pblks[i], node, err) < 0)
            return -1;
    }
    return 0;
}

void ext4_extent_tree_free(struct ext4_extent_tree *tree)
{
    free(tree->blocks);
    free(tree->pblks);
    memset(tree, 0, sizeof(*tree));
}
