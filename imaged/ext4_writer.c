/* ext4_writer: builds an ext4 image from path-based operations (see ext4_writer.h).
 *
 * Design
 * - ext4_fs.c creates the filesystem as mke2fs would (ext2fs_initialize, group tables,
 *   reserved inodes, lazily-initialised journal) in a new sparse file; inode tables are
 *   never written except for the inodes we use, so the image stays sparse.
 * - The namespace lives in memory until ext4_writer_finish: one ext4_inode_rec per inode
 *   (hardlinks share it; name_count counts the names) and, per directory, a hash table
 *   name → ext4_dentry. Each dentry carries the layer that wrote it, which is all OCI
 *   whiteouts and opaque directories need. Replacing or removing is a table operation;
 *   an inode whose last name goes away returns its blocks and inode number to the bitmaps
 *   at once, so the counts e2fsck checks stay right.
 * - File data is the only thing written before finish (ext4_data.c): whole non-zero blocks
 *   go to a bump allocator over the block bitmap (ext4_fs.c) and through a 4 MiB
 *   write-behind buffer of physically contiguous blocks with pwrite() on our own fd.
 *   Each file's extents are kept in memory (ext4_extent.c).
 * - ext4_writer_finish writes every live inode once, in creation order: directories get
 *   their blocks built in one go (ext4_dir.c: linear, or htree when larger than a block),
 *   extent trees are laid out bottom-up, xattrs go through ext2fs_xattr_set. Then
 *   libext2fs writes the bitmaps, group descriptors and superblock and fsyncs.
 * - Intermediate path components that are symlinks are followed inside the image (an
 *   absolute target is relative to the image root, ".." stops at the root), as container
 *   runtimes do when applying layers: "lib/x.so" lands in usr/lib when lib → usr/lib.
 *   The last component is never followed: the entry replaces the symlink.
 */
#include "imaged/ext4_writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "ext4_internal.h"

#define MAX_SYMLINK_EXPANSIONS 40 /* the kernel's limit for one lookup */
#define LOST_FOUND_LAYER (~0u)    /* lost+found belongs to the filesystem, not a layer */

/* ---- per-directory name table ---- */

static uint32_t name_hash(const char *name, size_t len)
{
    uint32_t hash = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (uint8_t)name[i]) * 16777619u;
    return hash;
}

static struct ext4_dentry *dir_lookup(const struct ext4_inode_rec *dir, const char *name,
                                      size_t len)
{
    uint32_t hash = name_hash(name, len);
    struct ext4_dentry *dentry;

    if (dir->children.bucket_count == 0)
        return NULL;
    dentry = dir->children.buckets[hash & (dir->children.bucket_count - 1)];
    for (; dentry != NULL; dentry = dentry->next_in_bucket) {
        if (dentry->name_hash == hash && dentry->name_len == len &&
            memcmp(dentry->name, name, len) == 0)
            return dentry;
    }
    return NULL;
}

static int dir_table_grow(struct ext4_dir_table *table, struct shed_err *err)
{
    uint32_t count = table->bucket_count ? table->bucket_count * 2 : 8;
    struct ext4_dentry **buckets = calloc(count, sizeof(*buckets));

    if (buckets == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for a directory");
    for (uint32_t i = 0; i < table->bucket_count; i++) {
        struct ext4_dentry *dentry = table->buckets[i];
        while (dentry != NULL) {
            struct ext4_dentry *next = dentry->next_in_bucket;
            struct ext4_dentry **slot = &buckets[dentry->name_hash & (count - 1)];
            dentry->next_in_bucket = *slot;
            *slot = dentry;
            dentry = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->bucket_count = count;
    return 0;
}

static int dir_table_insert(struct ext4_dir_table *table, struct ext4_dentry *dentry,
                            struct shed_err *err)
{
    struct ext4_dentry **slot;

    if (table->entry_count >= table->bucket_count && dir_table_grow(table, err) < 0)
        return -1;
    slot = &table->buckets[dentry->name_hash & (table->bucket_count - 1)];
    dentry->next_in_bucket = *slot;
    *slot = dentry;
    table->entry_count++;
    return 0;
}

static void dir_table_detach(struct ext4_dir_table *table, struct ext4_dentry *dentry)
{
    struct ext4_dentry **slot = &table->buckets[dentry->name_hash & (table->bucket_count - 1)];

    while (*slot != dentry)
        slot = &(*slot)->next_in_bucket;
    *slot = dentry->next_in_bucket;
    table->entry_count--;
}

/* Calls fn for each entry; fn may remove the entry it is given (and nothing else here). */
int ext4_dir_for_each(struct ext4_inode_rec *dir, ext4_dentry_fn fn, void *ctx)
{
    for (uint32_t i = 0; i < dir->children.bucket_count; i++) {
        struct ext4_dentry *dentry = dir->children.buckets[i];
        while (dentry != NULL) {
            struct ext4_dentry *next = dentry->next_in_bucket;
            int ret = fn(dentry, ctx);
            if (ret != 0)
                return ret;
            dentry = next;
        }
    }
    return 0;
}

/* ---- inode records ---- */

static void xattrs_free(struct ext4_inode_rec *rec)
{
    for (size_t i = 0; i < rec->xattr_count; i++) {
        free(rec->xattrs[i].name);
        free(rec->xattrs[i].value);
    }
    free(rec->xattrs);
    rec->xattrs = NULL;
    rec->xattr_count = 0;
}

/* Sets one attribute, replacing a previous value of the same name (like setxattr). */
static int xattr_put(struct ext4_inode_rec *rec, const struct ext4_xattr *x, struct shed_err *err)
{
    struct ext4_xattr_item *item = NULL;
    void *value;

    if (x->name == NULL || x->name[0] == '\0' || strlen(x->name) > 255)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "invalid extended attribute name");
    value = malloc(x->len ? x->len : 1);
    if (value == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for extended attributes");
    if (x->len > 0)
        memcpy(value, x->value, x->len);
    for (size_t i = 0; i < rec->xattr_count; i++) {
        if (strcmp(rec->xattrs[i].name, x->name) == 0)
            item = &rec->xattrs[i];
    }
    if (item == NULL) {
        struct ext4_xattr_item *items =
            realloc(rec->xattrs, (rec->xattr_count + 1) * sizeof(*items));
        char *name = strdup(x->name);
        if (items != NULL)
            rec->xattrs = items;
        if (items == NULL || name == NULL) {
            free(name);
            free(value);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for extended attributes");
        }
        item = &rec->xattrs[rec->xattr_count++];
        *item = (struct ext4_xattr_item){.name = name};
    }
    free(item->value);
    item->value = value;
    item->len = x->len;
    return 0;
}

static void timestamps_apply(struct ext4_writer *w, struct ext4_inode_rec *rec,
                             const struct ext4_meta *meta)
{
    rec->mtime = meta->mtime;
    rec->atime = meta->has_atime ? meta->atime : meta->mtime;
    rec->ctime = meta->has_ctime ? meta->ctime : meta->mtime;
    if (!w->have_latest_mtime || meta->mtime.sec > w->latest_mtime.sec ||
        (meta->mtime.sec == w->latest_mtime.sec && meta->mtime.nsec > w->latest_mtime.nsec)) {
        w->latest_mtime = meta->mtime;
        w->have_latest_mtime = true;
    }
}

/* Attributes from a tar header: owner, permission bits, times, xattrs (merged). */
static int meta_apply(struct ext4_writer *w, struct ext4_inode_rec *rec,
                      const struct ext4_meta *meta, struct shed_err *err)
{
    rec->mode = (rec->mode & S_IFMT) | (meta->mode & 07777);
    rec->uid = meta->uid;
    rec->gid = meta->gid;
    timestamps_apply(w, rec, meta);
    for (size_t i = 0; i < meta->xattr_count; i++) {
        if (xattr_put(rec, &meta->xattrs[i], err) < 0)
            return -1;
    }
    return 0;
}

static void inode_list_append(struct ext4_writer *w, struct ext4_inode_rec *rec)
{
    rec->prev = w->inodes_tail;
    if (w->inodes_tail != NULL)
        w->inodes_tail->next = rec;
    else
        w->inodes_head = rec;
    w->inodes_tail = rec;
}

static void inode_list_remove(struct ext4_writer *w, struct ext4_inode_rec *rec)
{
    if (rec->prev != NULL)
        rec->prev->next = rec->next;
    else
        w->inodes_head = rec->next;
    if (rec->next != NULL)
        rec->next->prev = rec->prev;
    else
        w->inodes_tail = rec->prev;
}

/* Frees the record and the dentries it owns (not the inodes they name). */
static void inode_rec_destroy(struct ext4_inode_rec *rec)
{
    for (uint32_t i = 0; i < rec->children.bucket_count; i++) {
        struct ext4_dentry *dentry = rec->children.buckets[i];
        while (dentry != NULL) {
            struct ext4_dentry *next = dentry->next_in_bucket;
            free(dentry);
            dentry = next;
        }
    }
    free(rec->children.buckets);
    free(rec->extents.items);
    free(rec->symlink_target);
    xattrs_free(rec);
    free(rec);
}

/* A new inode with a number, owned by the writer's list; named by the caller. */
static int inode_rec_new(struct ext4_writer *w, uint32_t mode, ext2_ino_t fixed_ino,
                         struct ext4_inode_rec **out, struct shed_err *err)
{
    struct ext4_inode_rec *rec = calloc(1, sizeof(*rec));

    if (rec == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for an inode");
    rec->mode = mode;
    if (fixed_ino != 0) {
        rec->ino = fixed_ino;
    } else if (ext4_alloc_inode(w, S_ISDIR(mode), &rec->ino, err) < 0) {
        free(rec);
        return -1;
    }
    inode_list_append(w, rec);
    *out = rec;
    return 0;
}

/* Returns the inode's number and blocks to the filesystem. */
static void inode_release(struct ext4_writer *w, struct ext4_inode_rec *rec)
{
    ext4_extents_free_blocks(w, &rec->extents);
    ext4_free_inode(w, rec->ino, ext4_is_dir(rec));
    inode_list_remove(w, rec);
    inode_rec_destroy(rec);
}

/* ---- names ---- */

static int dentry_add(struct ext4_writer *w, struct ext4_inode_rec *dir, const char *name,
                      size_t len, struct ext4_inode_rec *rec, struct shed_err *err)
{
    struct ext4_dentry *dentry = malloc(sizeof(*dentry) + len + 1);

    if (dentry == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory for a directory entry");
    dentry->inode = rec;
    dentry->name_hash = name_hash(name, len);
    dentry->layer = w->layer;
    dentry->name_len = (uint16_t)len;
    memcpy(dentry->name, name, len);
    dentry->name[len] = '\0';
    if (dir_table_insert(&dir->children, dentry, err) < 0) {
        free(dentry);
        return -1;
    }
    rec->name_count++;
    if (ext4_is_dir(rec)) {
        rec->parent = dir;
        dir->subdir_count++;
    }
    return 0;
}

static void dentry_remove(struct ext4_writer *w, struct ext4_inode_rec *dir,
                          struct ext4_dentry *dentry);
static void dentry_remove_lower(struct ext4_writer *w, struct ext4_inode_rec *dir,
                                struct ext4_dentry *dentry);

/* What ext4_dir_for_each callbacks that remove entries need to know. */
struct dir_removal {
    struct ext4_writer *writer;
    struct ext4_inode_rec *dir;
};

static int remove_child(struct ext4_dentry *dentry, void *opaque)
{
    struct dir_removal *removal = opaque;

    dentry_remove(removal->writer, removal->dir, dentry);
    return 0;
}

static int remove_child_lower(struct ext4_dentry *dentry, void *opaque)
{
    struct dir_removal *removal = opaque;

    dentry_remove_lower(removal->writer, removal->dir, dentry);
    return 0;
}

static void dir_clear(struct ext4_writer *w, struct ext4_inode_rec *dir)
{
    struct dir_removal removal = {.writer = w, .dir = dir};

    (void)ext4_dir_for_each(dir, remove_child, &removal);
}

static void dir_clear_lower(struct ext4_writer *w, struct ext4_inode_rec *dir)
{
    struct dir_removal removal = {.writer = w, .dir = dir};

    (void)ext4_dir_for_each(dir, remove_child_lower, &removal);
}

/* Unlinks one name; the inode goes when it was the last (a directory takes its subtree). */
static void dentry_remove(struct ext4_writer *w, struct ext4_inode_rec *dir,
                          struct ext4_dentry *dentry)
{
    struct ext4_inode_rec *rec = dentry->inode;

    dir_table_detach(&dir->children, dentry);
    free(dentry);
    if (ext4_is_dir(rec)) {
        dir_clear(w, rec);
        dir->subdir_count--;
    }
    if (--rec->name_count == 0)
        inode_release(w, rec);
}

/* Whiteout semantics: what lower layers wrote goes; current-layer directories stay but
 * lose their lower-layer content. */
static void dentry_remove_lower(struct ext4_writer *w, struct ext4_inode_rec *dir,
                                struct ext4_dentry *dentry)
{
    if (dentry->layer < w->layer)
        dentry_remove(w, dir, dentry);
    else if (ext4_is_dir(dentry->inode))
        dir_clear_lower(w, dentry->inode);
}

/* ---- paths ---- */

static bool is_dot_or_dotdot(const char *name, size_t len)
{
    return (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.');
}

/* Splits "a/b/c" into the directory part "a/b" and the leaf "c". */
static int path_split(const char *path, size_t *dir_len, const char **leaf, size_t *leaf_len,
                      struct shed_err *err)
{
    const char *slash = strrchr(path, '/');

    *leaf = slash ? slash + 1 : path;
    *leaf_len = strlen(*leaf);
    *dir_len = slash ? (size_t)(slash - path) : 0;
    if (*leaf_len == 0 || is_dot_or_dotdot(*leaf, *leaf_len) || path[0] == '/')
        return shed_errf(err, SHED_E_INVALID_IMAGE, "invalid path \"%s\"", path);
    if (*leaf_len > EXT2_NAME_LEN)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "name longer than %d bytes in \"%s\"",
                         EXT2_NAME_LEN, path);
    return 0;
}

/* Missing parents: 0755 root:root with the entry's times, like tar. */
static int implicit_dir_create(struct ext4_writer *w, struct ext4_inode_rec *parent,
                               const char *name, size_t len, const struct ext4_timestamp *mtime,
                               struct ext4_inode_rec **out, struct shed_err *err)
{
    struct ext4_meta meta = {.mode = S_IFDIR | 0755, .mtime = *mtime};
    struct ext4_inode_rec *rec = NULL;

    if (inode_rec_new(w, S_IFDIR | 0755, 0, &rec, err) < 0)
        return -1;
    timestamps_apply(w, rec, &meta);
    if (dentry_add(w, parent, name, len, rec, err) < 0) {
        inode_release(w, rec);
        return -1;
    }
    *out = rec;
    return 0;
}

/* Replaces the component at *pos in *buf (ending at end) with target + the rest. */
static int symlink_expand(char **buf, size_t *pos, const char *target, struct shed_err *err)
{
    const char *rest = *buf + *pos;
    size_t target_len = strlen(target), rest_len = strlen(rest);
    char *expanded = malloc(target_len + 1 + rest_len + 1);

    if (expanded == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory resolving a path");
    memcpy(expanded, target, target_len);
    expanded[target_len] = '/';
    memcpy(expanded + target_len + 1, rest, rest_len + 1);
    free(*buf);
    *buf = expanded;
    *pos = 0;
    return 0;
}

struct walk {
    struct ext4_writer *writer;
    const struct ext4_timestamp *create_mtime; /* NULL: do not create missing directories */
    const char *path;                          /* for messages */
};

/* Resolves the directory part of a path; *out = NULL when it does not exist and
 * walk->create_mtime is NULL. */
static int walk_dirs(struct walk *walk, const char *dir_path, size_t dir_len,
                     struct ext4_inode_rec **out, struct shed_err *err)
{
    struct ext4_writer *w = walk->writer;
    struct ext4_inode_rec *cur = w->root;
    cleanup_free char *buf = strndup(dir_path, dir_len);
    size_t pos = 0;
    int expansions = 0;

    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory resolving a path");
    *out = NULL;
    for (;;) {
        while (buf[pos] == '/')
            pos++;
        if (buf[pos] == '\0')
            break;
        const char *name = buf + pos;
        size_t len = strcspn(name, "/");
        pos += len;
        if (len == 1 && name[0] == '.')
            continue;
        if (len == 2 && name[0] == '.' && name[1] == '.') {
            cur = cur->parent;
            continue;
        }
        if (len > EXT2_NAME_LEN)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "name longer than %d bytes in \"%s\"",
                             EXT2_NAME_LEN, walk->path);
        struct ext4_dentry *dentry = dir_lookup(cur, name, len);
        if (dentry == NULL) {
            if (walk->create_mtime == NULL)
                return 0;
            if (implicit_dir_create(w, cur, name, len, walk->create_mtime, &cur, err) < 0)
                return -1;
            continue;
        }
        struct ext4_inode_rec *rec = dentry->inode;
        if (ext4_is_dir(rec)) {
            cur = rec;
        } else if (S_ISLNK(rec->mode)) {
            if (++expansions > MAX_SYMLINK_EXPANSIONS)
                return shed_errf(err, SHED_E_INVALID_IMAGE,
                                 "too many levels of symbolic links in \"%s\"", walk->path);
            if (rec->symlink_target[0] == '/')
                cur = w->root;
            if (symlink_expand(&buf, &pos, rec->symlink_target, err) < 0)
                return -1;
        } else {
            if (walk->create_mtime == NULL)
                return 0;
            return shed_errf(err, SHED_E_INVALID_IMAGE,
                             "\"%s\": a parent component is not a directory", walk->path);
        }
    }
    *out = cur;
    return 0;
}

struct target {
    struct ext4_inode_rec *dir; /* NULL when the parent does not exist */
    const char *leaf;
    size_t leaf_len;
    struct ext4_dentry *existing; /* what is at the path now, if anything */
};

static int target_resolve(struct ext4_writer *w, const char *path,
                          const struct ext4_timestamp *create_mtime, struct target *t,
                          struct shed_err *err)
{
    struct walk walk = {.writer = w, .create_mtime = create_mtime, .path = path};
    size_t dir_len;

    if (w->file_open)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "\"%s\": a file is still open in the ext4 writer", path);
    if (path_split(path, &dir_len, &t->leaf, &t->leaf_len, err) < 0)
        return -1;
    if (walk_dirs(&walk, path, dir_len, &t->dir, err) < 0)
        return -1;
    t->existing = t->dir ? dir_lookup(t->dir, t->leaf, t->leaf_len) : NULL;
    return 0;
}

/* Creates a new inode of the given type at path, replacing whatever was there. */
static int entry_create(struct ext4_writer *w, const char *path, const struct ext4_meta *meta,
                        uint32_t type, struct ext4_inode_rec **out, struct shed_err *err)
{
    struct ext4_inode_rec *rec = NULL;
    struct target t;

    if (target_resolve(w, path, &meta->mtime, &t, err) < 0)
        return -1;
    if (t.existing != NULL)
        dentry_remove(w, t.dir, t.existing);
    if (inode_rec_new(w, type, 0, &rec, err) < 0)
        return -1;
    if (meta_apply(w, rec, meta, err) < 0 ||
        dentry_add(w, t.dir, t.leaf, t.leaf_len, rec, err) < 0) {
        inode_release(w, rec);
        return shed_err_prefix(err, "%s", path);
    }
    *out = rec;
    return 0;
}

/* ---- public API ---- */

static int root_create(struct ext4_writer *w, struct shed_err *err)
{
    struct ext4_inode_rec *lost_found = NULL;

    if (inode_rec_new(w, S_IFDIR | 0755, EXT2_ROOT_INO, &w->root, err) < 0)
        return -1;
    w->root->parent = w->root;
    w->root->name_count = 1;
    if (inode_rec_new(w, S_IFDIR | 0700, EXT2_FIRST_INODE(w->fs->super), &lost_found, err) < 0)
        return -1;
    lost_found->is_lost_found = true;
    w->layer = LOST_FOUND_LAYER;
    if (dentry_add(w, w->root, "lost+found", strlen("lost+found"), lost_found, err) < 0)
        return -1;
    w->layer = 0;
    return 0;
}

int ext4_writer_create(const char *path, const struct ext4_writer_opts *opts,
                       struct ext4_writer **writer, struct shed_err *err)
{
    struct ext4_writer *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    w->fd = -1;
    w->wbuf_capacity = EXT4W_WRITE_BUFFER_BYTES / EXT4W_BLOCK_SIZE;
    w->wbuf = malloc(EXT4W_WRITE_BUFFER_BYTES);
    w->file.partial = malloc(EXT4W_BLOCK_SIZE);
    w->file.writer = w;
    if (w->wbuf == NULL || w->file.partial == NULL) {
        ext4_writer_abort(w);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    if (ext4_fs_create(w, path, opts, err) < 0 || root_create(w, err) < 0) {
        if (w->fd >= 0)
            unlink(path);
        ext4_writer_abort(w);
        return -1;
    }
    *writer = w;
    return 0;
}

void ext4_writer_set_layer(struct ext4_writer *writer, unsigned layer)
{
    writer->layer = layer;
}

static int root_meta_set(struct ext4_writer *w, const struct ext4_meta *meta, struct shed_err *err)
{
    if (w->file_open)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "a file is still open in the ext4 writer");
    w->root->meta_explicit = true;
    return meta_apply(w, w->root, meta, err);
}

int ext4_writer_mkdir(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                      struct shed_err *err)
{
    struct ext4_inode_rec *rec = NULL;
    struct target t;

    if (path[0] == '\0')
        return root_meta_set(writer, meta, err);
    if (target_resolve(writer, path, &meta->mtime, &t, err) < 0)
        return -1;
    if (t.existing != NULL && ext4_is_dir(t.existing->inode)) {
        /* A directory over a directory keeps the children and takes the new attributes. */
        t.existing->layer = writer->layer;
        t.existing->inode->meta_explicit = true;
        if (meta_apply(writer, t.existing->inode, meta, err) < 0)
            return shed_err_prefix(err, "%s", path);
        return 0;
    }
    return entry_create(writer, path, meta, S_IFDIR, &rec, err);
}

int ext4_writer_symlink(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                        const char *target, struct shed_err *err)
{
    struct ext4_inode_rec *rec = NULL;
    size_t len = strlen(target);
    struct ext4_meta link_meta = *meta;

    if (len == 0 || len > EXT4W_SYMLINK_MAX)
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "%s: symlink target must be 1 to %u bytes (is %zu)", path,
                         EXT4W_SYMLINK_MAX, len);
    /* Symlink permissions are always 0777 on Linux, whatever the archive says. */
    link_meta.mode = S_IFLNK | 0777;
    if (path[0] == '\0')
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the root cannot be a symlink");
    if (entry_create(writer, path, &link_meta, S_IFLNK, &rec, err) < 0)
        return -1;
    rec->symlink_target = strdup(target);
    if (rec->symlink_target == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

int ext4_writer_mknod(struct ext4_writer *writer, const char *path, const struct ext4_meta *meta,
                      struct shed_err *err)
{
    uint32_t type = meta->mode & S_IFMT;
    struct ext4_inode_rec *rec = NULL;

    if (type != S_IFCHR && type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "%s: mknod of file type 0%o", path,
                         (unsigned)type);
    if (path[0] == '\0')
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the root must be a directory");
    /* ext4 (like the kernel's new_encode_dev) has 12 bits of major and 20 of minor: anything
     * larger would be stored as a different device. */
    if ((type == S_IFCHR || type == S_IFBLK) &&
        (meta->rdev_major > EXT4W_DEVICE_MAJOR_MAX || meta->rdev_minor > EXT4W_DEVICE_MINOR_MAX))
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "%s: device number %u:%u out of range (major at most %u, minor at most "
                         "%u)",
                         path, meta->rdev_major, meta->rdev_minor, EXT4W_DEVICE_MAJOR_MAX,
                         EXT4W_DEVICE_MINOR_MAX);
    if (entry_create(writer, path, meta, type, &rec, err) < 0)
        return -1;
    rec->rdev_major = meta->rdev_major;
    rec->rdev_minor = meta->rdev_minor;
    return 0;
}

int ext4_writer_hardlink(struct ext4_writer *writer, const char *path, const char *target_path,
                         struct shed_err *err)
{
    struct target link, target;
    struct ext4_inode_rec *rec = NULL;
    int ret;

    if (path[0] == '\0' || target_path[0] == '\0')
        return shed_errf(err, SHED_E_INVALID_IMAGE, "hardlink to or from the root directory");
    if (target_resolve(writer, target_path, NULL, &target, err) < 0)
        return -1;
    if (target.existing == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: hardlink target %s does not exist", path,
                         target_path);
    rec = target.existing->inode;
    if (ext4_is_dir(rec))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: hardlink target %s is a directory", path,
                         target_path);
    if (rec->name_count >= EXT4W_LINK_MAX)
        return shed_errf(err, SHED_E_UNSUPPORTED, "%s: %s already has %u links", path, target_path,
                         rec->name_count);
    /* Hold the inode while the old entry at path goes: it might be the target's only name
     * (the same path, or a directory containing the target). */
    rec->name_count++;
    ret = target_resolve(writer, path, &rec->mtime, &link, err);
    if (ret == 0 && link.existing != NULL)
        dentry_remove(writer, link.dir, link.existing);
    if (ret == 0)
        ret = dentry_add(writer, link.dir, link.leaf, link.leaf_len, rec, err);
    if (--rec->name_count == 0)
        inode_release(writer, rec);
    return ret;
}

int ext4_writer_file_begin(struct ext4_writer *writer, const char *path,
                           const struct ext4_meta *meta, uint64_t size, struct ext4_file **file,
                           struct shed_err *err)
{
    struct ext4_inode_rec *rec = NULL;

    if (path[0] == '\0')
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the root must be a directory");
    if (size > (uint64_t)UINT32_MAX * EXT4W_BLOCK_SIZE)
        return shed_errf(err, SHED_E_UNSUPPORTED, "%s: %llu bytes is too large for ext4", path,
                         (unsigned long long)size);
    if (entry_create(writer, path, meta, S_IFREG, &rec, err) < 0)
        return -1;
    writer->file.inode = rec;
    writer->file.size = size;
    writer->file.write_end = 0;
    writer->file.has_partial = false;
    writer->file_open = true;
    *file = &writer->file;
    return 0;
}

int ext4_writer_file_write(struct ext4_file *file, uint64_t offset, const void *data, size_t len,
                           struct shed_err *err)
{
    if (!file->writer->file_open)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "write to a file that is not open");
    return ext4_data_write(file, offset, data, len, err);
}

int ext4_writer_file_end(struct ext4_file *file, struct shed_err *err)
{
    if (!file->writer->file_open)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "end of a file that is not open");
    file->writer->file_open = false;
    return ext4_data_finish(file, err);
}

int ext4_writer_remove(struct ext4_writer *writer, const char *path, bool lower_only,
                       struct shed_err *err)
{
    struct target t;

    if (path[0] == '\0') {
        if (writer->file_open)
            return shed_errf(err, SHED_E_INVALID_REQUEST, "a file is still open");
        if (lower_only)
            dir_clear_lower(writer, writer->root);
        else
            dir_clear(writer, writer->root);
        return 0;
    }
    if (target_resolve(writer, path, NULL, &t, err) < 0)
        return -1;
    if (t.existing == NULL)
        return 0;
    if (lower_only)
        dentry_remove_lower(writer, t.dir, t.existing);
    else
        dentry_remove(writer, t.dir, t.existing);
    return 0;
}

int ext4_writer_clear_dir_lower(struct ext4_writer *writer, const char *path, struct shed_err *err)
{
    struct target t;

    if (path[0] == '\0')
        return ext4_writer_remove(writer, "", true, err);
    if (target_resolve(writer, path, NULL, &t, err) < 0)
        return -1;
    if (t.existing != NULL && ext4_is_dir(t.existing->inode))
        dir_clear_lower(writer, t.existing->inode);
    return 0;
}

/* ---- finish ---- */

/* Without an entry for "/" the root gets the newest mtime in the image: reproducible,
 * unlike the time of conversion. lost+found follows the root unless a layer set it. */
static void default_times_apply(struct ext4_writer *w, struct ext4_inode_rec *rec)
{
    struct ext4_meta meta = {.mtime = w->latest_mtime};

    if (rec->meta_explicit)
        return;
    if (rec != w->root && w->root->meta_explicit)
        meta.mtime = w->root->mtime;
    rec->mtime = rec->atime = rec->ctime = meta.mtime;
}

static int inode_finish(struct ext4_writer *w, struct ext4_inode_rec *rec, struct shed_err *err)
{
    int ret;

    if (rec == w->root || rec->is_lost_found)
        default_times_apply(w, rec);
    switch (rec->mode & S_IFMT) {
    case S_IFDIR: ret = ext4_dir_write(w, rec, err); break;
    case S_IFREG: ret = ext4_inode_write_file(w, rec, err); break;
    case S_IFLNK: ret = ext4_inode_write_symlink(w, rec, err); break;
    default: ret = ext4_inode_write_special(w, rec, err); break;
    }
    if (ret == 0)
        ret = ext4_inode_write_xattrs(w, rec, err);
    return ret;
}

int ext4_writer_finish(struct ext4_writer *writer, struct shed_err *err)
{
    struct ext4_writer *w = writer;
    int ret = 0;

    if (w->file_open)
        ret = shed_errf(err, SHED_E_INVALID_REQUEST, "finish with a file still open");
    for (struct ext4_inode_rec *rec = w->inodes_head; ret == 0 && rec != NULL; rec = rec->next)
        ret = inode_finish(w, rec, err);
    if (ret == 0)
        ret = ext4_write_flush(w, err);
    if (ret == 0)
        ret = ext4_fs_close(w, err);
    if (ret == 0 && close(steal_fd(&w->fd)) < 0)
        ret = shed_errf_errno(err, SHED_E_IO, errno, "closing %s", w->path);
    if (ret < 0)
        shed_err_prefix(err, "writing ext4 image %s", w->path);
    ext4_writer_abort(w);
    return ret;
}

void ext4_writer_abort(struct ext4_writer *writer)
{
    struct ext4_inode_rec *rec = NULL;

    if (writer == NULL)
        return;
    while ((rec = writer->inodes_head) != NULL) {
        writer->inodes_head = rec->next;
        inode_rec_destroy(rec);
    }
    if (writer->fs != NULL)
        ext2fs_free(writer->fs);
    if (writer->fd >= 0)
        close(writer->fd);
    free(writer->wbuf);
    free(writer->file.partial);
    free(writer->path);
    free(writer);
}

uint64_t ext4_writer_bytes_used(const struct ext4_writer *writer)
{
    uint64_t free_blocks;

    if (writer->fs == NULL)
        return 0;
    free_blocks = ext2fs_free_blocks_count(writer->fs->super);
    return (writer->blocks_count - free_blocks + (writer->alloc_next - writer->alloc_committed)) *
               EXT4W_BLOCK_SIZE +
           writer->shortfall_bytes;
}
