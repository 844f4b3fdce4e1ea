/* What deleting variants leaves unneeded in the OCI store: the ref index entries only they
 * used and the blobs nothing that stays reaches (cache.h, image_reclaim_*). Reachability is
 * oci/'s walk; a manifest or ref entry that cannot be read makes the answer "unknown", and
 * then nothing is reclaimed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "layout.h"
#include "oci/oci.h"

struct reclaim_ref {
    char *canonical;
    char digest[DIGEST_STRING_LEN + 1];
};

struct image_reclaim {
    struct oci_store *store;
    struct oci_blob_set *keep; /* reachable from what stays */
    struct oci_blob_set *gone; /* reachable from the variants that go */
    struct reclaim_ref *refs;  /* entries that only the gone variants used */
    size_t ref_count;
    char unknown[600]; /* "" when the walks were complete */
};

/* Every .source record of images_dir, with its variant name. */
struct source_list {
    struct strv names;
    struct image_source *records;
};

static void source_list_clear(struct source_list *list)
{
    for (size_t i = 0; i < list->names.count; i++)
        image_source_clear(&list->records[i]);
    free(list->records);
    strv_free(&list->names);
}

static int add_source(const char *images_dir, const char *name, struct source_list *list,
                      struct shed_err *err)
{
    struct image_source record;
    if (image_source_read(images_dir, name, &record, err) < 0)
        return -1;
    if (!record.present) {
        image_source_clear(&record);
        return 0;
    }
    struct image_source *grown =
        realloc(list->records, (list->names.count + 1) * sizeof *list->records);
    if (grown == NULL || strv_add(&list->names, name, err) < 0) {
        list->records = grown != NULL ? grown : list->records;
        image_source_clear(&record);
        return grown == NULL ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory") : -1;
    }
    list->records = grown;
    list->records[list->names.count - 1] = record;
    return 0;
}

static int read_sources(const char *images_dir, struct source_list *list, struct shed_err *err)
{
    cleanup_strv struct strv entries = STRV_INIT;
    if (fs_list_files(images_dir, &entries, err) < 0)
        return -1;
    for (size_t i = 0; i < entries.count; i++) {
        struct image_entry entry;
        if (image_layout_classify(entries.items[i], &entry, err) < 0)
            return -1;
        int rc =
            entry.kind == IMAGE_FILE_SOURCE ? add_source(images_dir, entry.variant, list, err) : 0;
        image_entry_clear(&entry);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static bool is_gone(const char *name, const char *const *gone)
{
    for (; gone != NULL && *gone != NULL; gone++)
        if (strcmp(*gone, name) == 0)
            return true;
    return false;
}

static void set_unknown(struct image_reclaim *r, const char *why)
{
    if (r->unknown[0] == '\0')
        snprintf(r->unknown, sizeof r->unknown, "%s", why);
}

/* The ref index key of a record's ref; NULL for imports and refs that do not parse. */
static char *canonical_of(const struct image_source *record)
{
    if (record->imported || record->ref[0] == '\0')
        return NULL;
    char *canonical = NULL;
    struct shed_err ignored;
    return oci_ref_canonical(record->ref, &canonical, &ignored) == 0 ? canonical : NULL;
}

static bool ref_staying(const struct source_list *sources, const char *const *gone,
                        const char *canonical)
{
    for (size_t i = 0; i < sources->names.count; i++) {
        if (is_gone(sources->names.items[i], gone))
            continue;
        cleanup_free char *other = canonical_of(&sources->records[i]);
        if (other != NULL && strcmp(other, canonical) == 0)
            return true;
    }
    return false;
}

/* A gone variant's ref entry goes with it when it still names the variant's digest and no
 * variant that stays was built from the same ref. */
static int collect_refs(struct image_reclaim *r, const struct source_list *sources,
                        const char *const *gone, struct shed_err *err)
{
    for (size_t i = 0; i < sources->names.count; i++) {
        const struct image_source *record = &sources->records[i];
        if (!is_gone(sources->names.items[i], gone))
            continue;
        char *canonical = canonical_of(record);
        cleanup_free char *current = NULL;
        struct shed_err why = {0};
        bool owned = canonical != NULL && !ref_staying(sources, gone, canonical) &&
                     oci_store_ref_get(r->store, canonical, &current, &why) == 0 &&
                     strcmp(current, record->digest) == 0;
        if (!owned) {
            free(canonical);
            continue;
        }
        struct reclaim_ref *grown = realloc(r->refs, (r->ref_count + 1) * sizeof *grown);
        if (grown == NULL) {
            free(canonical);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
        r->refs = grown;
        r->refs[r->ref_count].canonical = canonical;
        memcpy(r->refs[r->ref_count++].digest, record->digest, DIGEST_STRING_LEN + 1);
    }
    return 0;
}

static bool ref_goes(const struct image_reclaim *r, const char *canonical, const char *digest)
{
    for (size_t i = 0; i < r->ref_count; i++)
        if (strcmp(r->refs[i].canonical, canonical) == 0 && strcmp(r->refs[i].digest, digest) == 0)
            return true;
    return false;
}

static int keep_ref_entry(const char *canonical_ref, const char *digest,
                          const struct shed_err *problem, void *ctx, struct shed_err *err)
{
    struct image_reclaim *r = ctx;
    if (digest == NULL) {
        char why[500];
        snprintf(why, sizeof why, "ref index entry of %.200s: %.250s", canonical_ref,
                 problem != NULL ? problem->msg : "unreadable");
        set_unknown(r, why);
        return 0;
    }
    if (ref_goes(r, canonical_ref, digest))
        return 0;
    return oci_blob_set_add_reachable(r->keep, r->store, digest, err);
}

static int walk_sets(struct image_reclaim *r, const struct source_list *sources,
                     const char *const *gone, struct shed_err *err)
{
    if (oci_store_ref_foreach(r->store, keep_ref_entry, r, err) < 0)
        return -1;
    for (size_t i = 0; i < sources->names.count; i++) {
        struct oci_blob_set *set = is_gone(sources->names.items[i], gone) ? r->gone : r->keep;
        if (oci_blob_set_add_reachable(set, r->store, sources->records[i].digest, err) < 0)
            return -1;
    }
    const char *why = oci_blob_set_unknown_reason(r->keep);
    if (why == NULL)
        why = oci_blob_set_unknown_reason(r->gone);
    if (why != NULL)
        set_unknown(r, why);
    return 0;
}

int image_reclaim_new(const struct shed_config *config, const char *const *gone,
                      struct image_reclaim **out, struct shed_err *err)
{
    *out = NULL;
    struct image_reclaim *r = calloc(1, sizeof *r);
    if (r == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct source_list sources = {.names = STRV_INIT};
    int rc = oci_store_open_existing(config->images_dir, &r->store, err);
    if (rc == 0)
        rc = oci_blob_set_new(&r->keep, err);
    if (rc == 0)
        rc = oci_blob_set_new(&r->gone, err);
    if (rc == 0)
        rc = read_sources(config->images_dir, &sources, err);
    if (rc == 0)
        rc = collect_refs(r, &sources, gone, err);
    if (rc == 0)
        rc = walk_sets(r, &sources, gone, err);
    source_list_clear(&sources);
    if (rc < 0) {
        image_reclaim_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

void image_reclaim_free(struct image_reclaim *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->ref_count; i++)
        free(r->refs[i].canonical);
    free(r->refs);
    oci_blob_set_free(r->keep);
    oci_blob_set_free(r->gone);
    oci_store_close(r->store);
    free(r);
}

const char *image_reclaim_unknown(const struct image_reclaim *r)
{
    return r->unknown[0] != '\0' ? r->unknown : NULL;
}

bool image_reclaim_blob(const struct image_reclaim *r, const char *digest)
{
    return r->unknown[0] == '\0' && oci_blob_set_has(r->gone, digest) &&
           !oci_blob_set_has(r->keep, digest);
}

size_t image_reclaim_ref_count(const struct image_reclaim *r)
{
    return r->ref_count;
}

const char *image_reclaim_ref(const struct image_reclaim *r, size_t i, const char **digest)
{
    *digest = r->refs[i].digest;
    return r->refs[i].canonical;
}

/* ---- carrying it out -------------------------------------------------------------------- */

struct blob_sweep {
    struct image_reclaim *r;
    const char *const *only;
    struct image_reclaimed *done;
};

static bool listed(const char *digest, const char *const *only)
{
    if (only == NULL)
        return true;
    for (; *only != NULL; only++)
        if (strcmp(*only, digest) == 0)
            return true;
    return false;
}

static int sweep_blob(const struct oci_blob_entry *entry, void *ctx, struct shed_err *err)
{
    struct blob_sweep *sweep = ctx;
    if (entry->state != OCI_BLOB_STORED || !listed(entry->digest, sweep->only) ||
        !image_reclaim_blob(sweep->r, entry->digest))
        return 0;
    uint64_t bytes = 0;
    if (oci_store_blob_remove(sweep->r->store, entry->digest, &bytes, err) < 0)
        return -1;
    sweep->done->blobs++;
    sweep->done->bytes += bytes;
    return 0;
}

/* A conversion or pull in progress may be about to use a blob it found in the store. */
static int any_lock_held(const struct shed_config *config, bool *held, struct shed_err *err)
{
    *held = false;
    char **locks = NULL;
    int rc = image_layout_lock_files(config->images_dir, &locks, err);
    for (char **lock = locks; rc == 0 && !*held && lock != NULL && *lock != NULL; lock++) {
        int fd = -1;
        rc = fs_lock_file(*lock, false, &fd, err);
        *held = rc == 0 && fd < 0;
        if (fd >= 0)
            close(fd);
    }
    image_names_free(locks);
    return rc;
}

/* With the store's blob lock held exclusive: a pull that finished since image_reclaim_new
 * wrote its ref entry before letting the lock go, so walking the ref index again now keeps
 * whatever it needs. */
static int remove_under_blob_lock(struct image_reclaim *r, const char *const *only,
                                  struct image_reclaimed *done, struct shed_err *err)
{
    if (oci_store_ref_foreach(r->store, keep_ref_entry, r, err) < 0)
        return -1;
    if (oci_blob_set_unknown_reason(r->keep) != NULL)
        set_unknown(r, oci_blob_set_unknown_reason(r->keep));
    if (image_reclaim_unknown(r) != NULL) {
        snprintf(done->kept_because, sizeof done->kept_because, "%s", image_reclaim_unknown(r));
        return 0;
    }
    for (size_t i = 0; i < r->ref_count; i++) {
        bool removed = false;
        if (oci_store_ref_remove_if(r->store, r->refs[i].canonical, r->refs[i].digest, &removed,
                                    err) < 0)
            return -1;
        done->refs += removed;
    }
    struct blob_sweep sweep = {.r = r, .only = only, .done = done};
    return oci_store_blob_foreach(r->store, sweep_blob, &sweep, err);
}

int image_reclaim_apply(const struct shed_config *config, struct image_reclaim *r,
                        const char *const *only, struct image_reclaimed *done, struct shed_err *err)
{
    memset(done, 0, sizeof *done);
    if (image_reclaim_unknown(r) != NULL) {
        snprintf(done->kept_because, sizeof done->kept_because, "%s", image_reclaim_unknown(r));
        return 0;
    }
    bool held = false;
    if (any_lock_held(config, &held, err) < 0)
        return -1;
    if (held) {
        snprintf(done->kept_because, sizeof done->kept_because,
                 "an image pull or conversion is in progress");
        return 0;
    }
    int lock = -1;
    if (oci_store_lock_blobs(r->store, true, false, &lock, err) < 0)
        return -1;
    if (lock < 0) {
        snprintf(done->kept_because, sizeof done->kept_because, "a pull is using the blob store");
        return 0;
    }
    int rc = remove_under_blob_lock(r, only, done, err);
    oci_store_unlock_blobs(lock);
    return rc;
}
