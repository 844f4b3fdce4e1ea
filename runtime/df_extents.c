/* Measuring one file (stat + FIEMAP) and the bytes a set of deletions really frees.
 *
 * Exclusive bytes: FIEMAP without FIEMAP_FLAG_SYNC (a df must not force writeback of every
 * dirty file), so extents still in delayed allocation are reported with their logical length
 * and counted as exclusive (they are not shared with anyone yet). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "df.h"
#include "df_private.h"

#define FIEMAP_BATCH 256

/* A physical range shared (reflink) by some file we scanned. */
struct shared_extent {
    dev_t dev;
    ino_t ino;
    uint64_t start, end; /* physical bytes [start, end) */
};

struct inode_key {
    dev_t dev;
    ino_t ino;
};

struct df_extent_index {
    struct shared_extent *extents;
    size_t count, capacity;
    struct inode_key *recorded; /* inodes whose extents are already in (hardlinks) */
    size_t recorded_count, recorded_capacity;
};

int df_extent_index_new(struct df_extent_index **index, struct shed_err *err)
{
    *index = calloc(1, sizeof **index);
    return *index != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

void df_extent_index_free(struct df_extent_index *index)
{
    if (index == NULL)
        return;
    free(index->extents);
    free(index->recorded);
    free(index);
}

size_t df_extent_count(const struct df_extent_index *index)
{
    return index != NULL ? index->count : 0;
}

void df_extent_get(const struct df_extent_index *index, size_t i, struct df_extent *extent)
{
    const struct shared_extent *e = &index->extents[i];
    *extent = (struct df_extent){e->dev, e->ino, e->start, e->end};
}

static bool index_has_inode(const struct df_extent_index *index, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < index->recorded_count; i++)
        if (index->recorded[i].dev == dev && index->recorded[i].ino == ino)
            return true;
    return false;
}

static int index_mark_inode(struct df_extent_index *index, dev_t dev, ino_t ino,
                            struct shed_err *err)
{
    if (index->recorded_count == index->recorded_capacity) {
        size_t capacity = index->recorded_capacity ? index->recorded_capacity * 2 : 64;
        struct inode_key *grown = realloc(index->recorded, capacity * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        index->recorded = grown;
        index->recorded_capacity = capacity;
    }
    index->recorded[index->recorded_count++] = (struct inode_key){dev, ino};
    return 0;
}

static int index_add(struct df_extent_index *index, dev_t dev, ino_t ino, uint64_t start,
                     uint64_t length, struct shed_err *err)
{
    if (index->count == index->capacity) {
        size_t capacity = index->capacity ? index->capacity * 2 : 256;
        struct shared_extent *grown = realloc(index->extents, capacity * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        index->extents = grown;
        index->capacity = capacity;
    }
    index->extents[index->count++] = (struct shared_extent){dev, ino, start, start + length};
    return 0;
}

/* Walks the file's extents: *exclusive sums those without FIEMAP_EXTENT_SHARED; shared ones
 * go into index (when non-NULL). Returns 1 when FIEMAP is unsupported here. */
static int walk_extents(int fd, const struct stat *st, uint64_t *exclusive,
                        struct df_extent_index *index, struct shed_err *err)
{
    size_t size = sizeof(struct fiemap) + FIEMAP_BATCH * sizeof(struct fiemap_extent);
    cleanup_free struct fiemap *map = calloc(1, size);
    if (map == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    bool record = index != NULL && !index_has_inode(index, st->st_dev, st->st_ino);
    uint64_t start = 0;
    *exclusive = 0;
    for (;;) {
        memset(map, 0, size);
        map->fm_start = start;
        map->fm_length = FIEMAP_MAX_OFFSET - start;
        map->fm_extent_count = FIEMAP_BATCH;
        if (ioctl(fd, FS_IOC_FIEMAP, map) < 0) {
            if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL)
                return 1;
            return shed_errf_errno(err, SHED_E_IO, errno, "FIEMAP failed");
        }
        if (map->fm_mapped_extents == 0)
            break;
        bool last = false;
        for (uint32_t i = 0; i < map->fm_mapped_extents; i++) {
            const struct fiemap_extent *e = &map->fm_extents[i];
            if (e->fe_flags & FIEMAP_EXTENT_SHARED) {
                if (record &&
                    index_add(index, st->st_dev, st->st_ino, e->fe_physical, e->fe_length, err) < 0)
                    return -1;
            } else {
                *exclusive += e->fe_length;
            }
            start = e->fe_logical + e->fe_length;
            last = last || (e->fe_flags & FIEMAP_EXTENT_LAST);
        }
        if (last)
            break;
    }
    if (record && index_mark_inode(index, st->st_dev, st->st_ino, err) < 0)
        return -1;
    return 0;
}

static int measure_exclusive(const char *path, const struct stat *st, uint64_t *exclusive,
                             bool *fiemap_ok, struct df_extent_index *index, struct shed_err *err)
{
    *fiemap_ok = true;
    *exclusive = 0;
    if (!S_ISREG(st->st_mode) || st->st_blocks == 0)
        return 0; /* nothing allocated: nothing to share */
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOATIME);
    if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot open %s", path);
    int rc = walk_extents(fd, st, exclusive, index, err);
    if (rc < 0)
        return shed_err_prefix(err, "%s", path);
    if (rc == 1) {
        *fiemap_ok = false;
        *exclusive = (uint64_t)st->st_blocks * 512;
    }
    /* The last extent is rounded up to a block: never report more than is allocated. */
    if (*exclusive > (uint64_t)st->st_blocks * 512)
        *exclusive = (uint64_t)st->st_blocks * 512;
    return 0;
}

void df_file_clear(struct df_file *file)
{
    free(file->path);
    free(file->digest);
    memset(file, 0, sizeof *file);
}

int df_measure_file(const char *path, const char *kind, struct df_file *file, bool *fiemap_ok,
                    struct df_extent_index *extents, struct shed_err *err)
{
    memset(file, 0, sizeof *file);
    *fiemap_ok = true;
    struct stat st;
    if (lstat(path, &st) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot stat %s", path);
    uint64_t exclusive = 0;
    if (measure_exclusive(path, &st, &exclusive, fiemap_ok, extents, err) < 0)
        return -1;
    file->path = strdup(path);
    if (file->path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    file->kind = kind;
    file->size = (struct df_size){.logical = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0,
                                  .physical = (uint64_t)st.st_blocks * 512,
                                  .exclusive = exclusive,
                                  .files = 1};
    file->dev = st.st_dev;
    file->ino = st.st_ino;
    file->nlink = st.st_nlink;
    file->mtime = st.st_mtim;
    file->counted = true;
    return 0;
}

/* ---- deletions ------------------------------------------------------------------------- */

struct deleted_inode {
    dev_t dev;
    ino_t ino;
    nlink_t nlink;
    nlink_t names_in_set;
    struct df_size size;
};

struct df_deletion {
    struct deleted_inode *inodes;
    size_t count, capacity;
};

int df_deletion_new(struct df_deletion **deletion, struct shed_err *err)
{
    *deletion = calloc(1, sizeof **deletion);
    return *deletion != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

void df_deletion_free(struct df_deletion *deletion)
{
    if (deletion == NULL)
        return;
    free(deletion->inodes);
    free(deletion);
}

int df_deletion_add(struct df_deletion *deletion, const struct df_file *file, struct shed_err *err)
{
    for (size_t i = 0; i < deletion->count; i++) {
        struct deleted_inode *known = &deletion->inodes[i];
        if (known->dev == file->dev && known->ino == file->ino) {
            known->names_in_set++;
            return 0;
        }
    }
    if (deletion->count == deletion->capacity) {
        size_t capacity = deletion->capacity ? deletion->capacity * 2 : 32;
        struct deleted_inode *grown = realloc(deletion->inodes, capacity * sizeof *grown);
        if (grown == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        deletion->inodes = grown;
        deletion->capacity = capacity;
    }
    deletion->inodes[deletion->count++] =
        (struct deleted_inode){file->dev, file->ino, file->nlink ? file->nlink : 1, 1, file->size};
    return 0;
}

static const struct deleted_inode *find_fully_deleted(const struct df_deletion *deletion, dev_t dev,
                                                      ino_t ino)
{
    for (size_t i = 0; i < deletion->count; i++) {
        const struct deleted_inode *d = &deletion->inodes[i];
        if (d->dev == dev && d->ino == ino)
            return d->names_in_set >= d->nlink ? d : NULL;
    }
    return NULL;
}

/* One boundary of a shared extent for the sweep: +1/-1 to the files covering a range, and
 * to those of them that stay (are not deleted). */
struct sweep_event {
    dev_t dev;
    uint64_t at;
    int covering;
    int staying;
};

static int compare_events(const void *a, const void *b)
{
    const struct sweep_event *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return 0;
}

/* Bytes of shared extents of deleted inodes that no staying file also covers. */
static int freed_shared_bytes(const struct df_deletion *deletion,
                              const struct df_extent_index *index, uint64_t *freed,
                              struct shed_err *err)
{
    *freed = 0;
    if (index == NULL || index->count == 0)
        return 0;
    cleanup_free struct sweep_event *events = calloc(index->count * 2, sizeof *events);
    if (events == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < index->count; i++) {
        const struct shared_extent *e = &index->extents[i];
        int staying = find_fully_deleted(deletion, e->dev, e->ino) == NULL ? 1 : 0;
        events[2 * i] = (struct sweep_event){e->dev, e->start, 1, staying};
        events[2 * i + 1] = (struct sweep_event){e->dev, e->end, -1, -staying};
    }
    size_t n = index->count * 2;
    qsort(events, n, sizeof *events, compare_events);
    int covering = 0, staying = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && events[i].dev == events[i - 1].dev && covering > 0 && staying == 0)
            *freed += events[i].at - events[i - 1].at;
        covering += events[i].covering;
        staying += events[i].staying;
    }
    return 0;
}

int df_deletion_freed(const struct df_deletion *deletion, const struct df_extent_index *index,
                      struct df_size *freed, struct shed_err *err)
{
    memset(freed, 0, sizeof *freed);
    for (size_t i = 0; i < deletion->count; i++) {
        const struct deleted_inode *d = &deletion->inodes[i];
        if (d->names_in_set < d->nlink)
            continue; /* another name keeps the inode */
        freed->logical += d->size.logical;
        freed->physical += d->size.physical;
        freed->exclusive += d->size.exclusive; /* its unshared extents */
        freed->files++;
    }
    uint64_t shared = 0;
    if (freed_shared_bytes(deletion, index, &shared, err) < 0)
        return -1;
    freed->exclusive += shared;
    freed->disk = freed->exclusive; /* what the file system gains */
    return 0;
}
