/* The disk column of every table (df.h, "disk"): each block of the data dir counted once,
 * for the first item of the report that holds it, and the items that share blocks with an
 * earlier one marked so. Hardlinks are told apart by inode; reflinked blocks by the physical
 * ranges of the shared extents the scan recorded (df_extents.c). */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "df_private.h"

/* One item of the report, with its files. */
struct disk_item {
    const char *name;
    const char **shared_with; /* where to note the first earlier item sharing with it */
    struct df_size *total;    /* where its disk bytes go (NULL: the file's own size) */
    struct df_size *category; /* the totals entry it counts in */
    struct df_file **files;
    size_t file_count;
};

struct disk_items {
    struct disk_item *items;
    size_t count;
};

static int add_item(struct disk_items *list, const char *name, const char **shared_with,
                    struct df_size *total, struct df_size *category, struct shed_err *err)
{
    struct disk_item *grown = realloc(list->items, (list->count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    list->items = grown;
    list->items[list->count++] = (struct disk_item){
        .name = name, .shared_with = shared_with, .total = total, .category = category};
    return 0;
}

static int add_file(struct disk_items *list, struct df_file *file, struct shed_err *err)
{
    if (file->path == NULL)
        return 0;
    struct disk_item *item = &list->items[list->count - 1];
    struct df_file **grown = realloc(item->files, (item->file_count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    item->files = grown;
    item->files[item->file_count++] = file;
    return 0;
}

static int add_files(struct disk_items *list, struct df_file_list *files, struct shed_err *err)
{
    for (size_t i = 0; i < files->count; i++)
        if (add_file(list, &files->items[i], err) < 0)
            return -1;
    return 0;
}

static void disk_items_clear(struct disk_items *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].files);
    free(list->items);
}

static int add_images(struct disk_items *list, struct df_report *report, struct shed_err *err)
{
    bool base_seen = false;
    for (size_t i = 0; i < report->image_count; i++) {
        struct df_image *image = &report->images[i];
        if (add_item(list, image->name, &image->shared_with, &image->total, &report->totals.images,
                     err) < 0 ||
            add_file(list, &image->rootfs, err) < 0 ||
            add_files(list, &image->other_files, err) < 0)
            return -1;
        if (image->is_base) {
            base_seen = true;
            if (add_file(list, &report->kernel, err) < 0 ||
                add_file(list, &report->initrd, err) < 0)
                return -1;
        }
    }
    /* The base kernel files of a base image that is gone. */
    if (!base_seen && (report->has_kernel || report->has_initrd) &&
        (add_item(list, "kernel", NULL, NULL, &report->totals.images, err) < 0 ||
         add_file(list, &report->kernel, err) < 0 || add_file(list, &report->initrd, err) < 0))
        return -1;
    return 0;
}

/* Report order: images, the remaining blobs, sheds, orphans (one item per file). */
static int build_items(struct disk_items *list, struct df_report *report, struct shed_err *err)
{
    if (add_images(list, report, err) < 0 ||
        add_item(list, "blobs", NULL, NULL, &report->totals.images, err) < 0 ||
        add_files(list, &report->blobs, err) < 0)
        return -1;
    for (size_t i = 0; i < report->shed_count; i++) {
        struct df_shed *shed = &report->sheds[i];
        if (add_item(list, shed->inst.name, &shed->shared_with, &shed->total, &report->totals.sheds,
                     err) < 0 ||
            (shed->has_rootfs && add_file(list, &shed->rootfs, err) < 0) ||
            (shed->has_console_log && add_file(list, &shed->console_log, err) < 0) ||
            add_files(list, &shed->other_files, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < report->orphans.count; i++) {
        struct df_file *orphan = &report->orphans.items[i];
        if (add_item(list, orphan->path, &orphan->shared_with, NULL, &report->totals.orphans, err) <
                0 ||
            add_file(list, orphan, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- inodes: the first item naming one owns it ------------------------------------------- */

struct owner {
    dev_t dev;
    ino_t ino;
    size_t item;
    struct df_file *file;
    bool used;
};

struct owner_map {
    struct owner *slots;
    size_t capacity, count;
};

static size_t owner_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

static struct owner *owner_slot(const struct owner_map *map, dev_t dev, ino_t ino)
{
    size_t mask = map->capacity - 1;
    for (size_t i = owner_hash(dev, ino) & mask;; i = (i + 1) & mask)
        if (!map->slots[i].used || (map->slots[i].dev == dev && map->slots[i].ino == ino))
            return &map->slots[i];
}

static const struct owner *owner_find(const struct owner_map *map, dev_t dev, ino_t ino)
{
    if (map->capacity == 0)
        return NULL;
    const struct owner *slot = owner_slot(map, dev, ino);
    return slot->used ? slot : NULL;
}

static int owner_add(struct owner_map *map, const struct owner *owner, struct shed_err *err)
{
    if ((map->count + 1) * 2 > map->capacity) {
        struct owner_map bigger = {.capacity = map->capacity ? map->capacity * 2 : 256};
        bigger.slots = calloc(bigger.capacity, sizeof *bigger.slots);
        if (bigger.slots == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        for (size_t i = 0; i < map->capacity; i++)
            if (map->slots[i].used)
                *owner_slot(&bigger, map->slots[i].dev, map->slots[i].ino) = map->slots[i];
        bigger.count = map->count;
        free(map->slots);
        *map = bigger;
    }
    *owner_slot(map, owner->dev, owner->ino) = *owner;
    map->count++;
    return 0;
}

static void note_shared(struct disk_items *list, size_t item, size_t earlier)
{
    struct disk_item *it = &list->items[item];
    if (item != earlier && it->shared_with != NULL && *it->shared_with == NULL)
        *it->shared_with = list->items[earlier].name;
}

/* A file's unshared blocks count for the item that names its inode first. */
static int attribute_inodes(struct disk_items *list, struct owner_map *map, struct shed_err *err)
{
    for (size_t k = 0; k < list->count; k++) {
        for (size_t j = 0; j < list->items[k].file_count; j++) {
            struct df_file *file = list->items[k].files[j];
            const struct owner *owner = owner_find(map, file->dev, file->ino);
            file->size.disk = 0;
            if (owner != NULL) {
                note_shared(list, k, owner->item);
                continue;
            }
            file->size.disk = file->size.exclusive;
            struct owner fresh = {file->dev, file->ino, k, file, true};
            if (owner_add(map, &fresh, err) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---- reflinked blocks: the first item holding a range gets it ----------------------------- */

struct range_event {
    dev_t dev;
    uint64_t at;
    int delta;     /* +1 start, -1 end */
    size_t extent; /* index into the extent list */
};

static int compare_events(const void *a, const void *b)
{
    const struct range_event *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->delta - y->delta; /* ends before starts at one position */
}

struct sweep {
    struct disk_items *list;
    const struct owner **owners; /* per extent; NULL: a file no item holds */
    size_t *active;
    size_t active_count;
};

/* Bytes [from, to) covered by the active extents: to the first item among them; the others
 * share with it. */
static void credit_range(struct sweep *s, uint64_t from, uint64_t to)
{
    const struct owner *first = NULL;
    for (size_t i = 0; i < s->active_count; i++) {
        const struct owner *o = s->owners[s->active[i]];
        if (o != NULL && (first == NULL || o->item < first->item))
            first = o;
    }
    if (first == NULL || to <= from)
        return;
    first->file->size.disk += to - from;
    for (size_t i = 0; i < s->active_count; i++) {
        const struct owner *o = s->owners[s->active[i]];
        if (o != NULL)
            note_shared(s->list, o->item, first->item);
    }
}

static void sweep_event(struct sweep *s, const struct range_event *event)
{
    if (event->delta > 0) {
        s->active[s->active_count++] = event->extent;
        return;
    }
    for (size_t i = 0; i < s->active_count; i++) {
        if (s->active[i] == event->extent) {
            s->active[i] = s->active[--s->active_count];
            return;
        }
    }
}

static int attribute_extents(struct disk_items *list, const struct owner_map *map,
                             const struct df_extent_index *index, struct shed_err *err)
{
    size_t n = df_extent_count(index);
    if (n == 0)
        return 0;
    cleanup_free struct range_event *events = calloc(2 * n, sizeof *events);
    cleanup_free const struct owner **owners = calloc(n, sizeof *owners);
    cleanup_free size_t *active = calloc(n, sizeof *active);
    if (events == NULL || owners == NULL || active == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct df_extent extent;
        df_extent_get(index, i, &extent);
        owners[i] = owner_find(map, extent.dev, extent.ino);
        events[2 * i] = (struct range_event){extent.dev, extent.start, +1, i};
        events[2 * i + 1] = (struct range_event){extent.dev, extent.end, -1, i};
    }
    qsort(events, 2 * n, sizeof *events, compare_events);
    struct sweep s = {.list = list, .owners = owners, .active = active};
    for (size_t i = 0; i < 2 * n; i++) {
        if (i > 0 && events[i].dev == events[i - 1].dev)
            credit_range(&s, events[i - 1].at, events[i].at);
        sweep_event(&s, &events[i]);
    }
    return 0;
}

/* ---- totals ---------------------------------------------------------------------------- */

static void sum_items(struct disk_items *list, struct df_report *report)
{
    report->totals.images.disk = report->totals.sheds.disk = report->totals.orphans.disk = 0;
    for (size_t k = 0; k < list->count; k++) {
        struct disk_item *item = &list->items[k];
        uint64_t disk = 0;
        for (size_t j = 0; j < item->file_count; j++)
            disk += item->files[j]->size.disk;
        if (item->total != NULL)
            item->total->disk = disk;
        item->category->disk += disk;
    }
    report->totals.all.disk =
        report->totals.images.disk + report->totals.sheds.disk + report->totals.orphans.disk;
}

int df_attribute_disk(struct df_report *report, const struct df_extent_index *index,
                      struct shed_err *err)
{
    struct disk_items list = {0};
    struct owner_map map = {0};
    int rc = build_items(&list, report, err);
    if (rc == 0)
        rc = attribute_inodes(&list, &map, err);
    if (rc == 0)
        rc = attribute_extents(&list, &map, index, err);
    if (rc == 0)
        sum_items(&list, report);
    free(map.slots);
    disk_items_clear(&list);
    return rc;
}
