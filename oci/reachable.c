/* The set of blobs reachable from manifests in the store, walked with the puller's own
 * parser and limits (manifest.c, OCI_MAX_MANIFEST_BYTES). Prune deletes what is outside the
 * set, so every doubt goes the other way: a manifest that is there but cannot be read or
 * parsed makes the whole set unknown, and callers keep everything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "oci_private.h"

struct oci_blob_set {
    char (*slots)[DIGEST_STRING_LEN + 1]; /* open addressing; "" = free */
    size_t capacity, count;
    bool unknown;
    char unknown_reason[720];
};

int oci_blob_set_new(struct oci_blob_set **set, struct shed_err *err)
{
    *set = calloc(1, sizeof **set);
    return *set != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

void oci_blob_set_free(struct oci_blob_set *set)
{
    if (set == NULL)
        return;
    free(set->slots);
    free(set);
}

/* Digests are uniformly distributed: their first hex digits are a good hash already. */
static size_t digest_hash(const char *digest)
{
    size_t hash = 0;
    for (const char *c = digest + 7; *c != '\0' && c < digest + 7 + 15; c++)
        hash = hash * 16 + (size_t)(*c <= '9' ? *c - '0' : *c - 'a' + 10);
    return hash;
}

/* The slot holding digest, or the free slot where it belongs. */
static size_t find_slot(const struct oci_blob_set *set, const char *digest)
{
    size_t mask = set->capacity - 1;
    size_t i = digest_hash(digest) & mask;
    while (set->slots[i][0] != '\0' && strcmp(set->slots[i], digest) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow(struct oci_blob_set *set, struct shed_err *err)
{
    struct oci_blob_set bigger = {.capacity = set->capacity ? set->capacity * 2 : 256};
    bigger.slots = calloc(bigger.capacity, sizeof *bigger.slots);
    if (bigger.slots == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < set->capacity; i++)
        if (set->slots[i][0] != '\0')
            memcpy(bigger.slots[find_slot(&bigger, set->slots[i])], set->slots[i],
                   sizeof set->slots[i]);
    free(set->slots);
    set->slots = bigger.slots;
    set->capacity = bigger.capacity;
    return 0;
}

bool oci_blob_set_has(const struct oci_blob_set *set, const char *digest)
{
    if (set->capacity == 0 || digest == NULL || !digest_is_valid(digest))
        return false;
    return set->slots[find_slot(set, digest)][0] != '\0';
}

/* *added: false when it was in the set already. */
static int set_add(struct oci_blob_set *set, const char *digest, bool *added, struct shed_err *err)
{
    *added = false;
    if ((set->count + 1) * 2 > set->capacity && grow(set, err) < 0)
        return -1;
    size_t i = find_slot(set, digest);
    if (set->slots[i][0] != '\0')
        return 0;
    snprintf(set->slots[i], sizeof set->slots[i], "%s", digest);
    set->count++;
    *added = true;
    return 0;
}

/* what: "manifest <digest>" or "ref index entry of <ref>". */
static void mark_unknown(struct oci_blob_set *set, const char *what, const struct shed_err *why)
{
    if (set->unknown)
        return; /* the first problem is the one reported */
    set->unknown = true;
    snprintf(set->unknown_reason, sizeof set->unknown_reason, "%.200s: %.500s", what, why->msg);
}

const char *oci_blob_set_unknown_reason(const struct oci_blob_set *set)
{
    return set->unknown ? set->unknown_reason : NULL;
}

static int add_reachable(struct oci_blob_set *set, const struct oci_store *store,
                         const char *digest, bool nested, struct shed_err *err);

static void mark_manifest_unknown(struct oci_blob_set *set, const char *digest,
                                  const struct shed_err *why)
{
    char what[DIGEST_STRING_LEN + 16];
    snprintf(what, sizeof what, "manifest %s", digest);
    mark_unknown(set, what, why);
}

static int add_image_blobs(struct oci_blob_set *set, const char *body, size_t len,
                           const char *digest, struct shed_err *err)
{
    struct oci_image image;
    struct shed_err why = {0};
    if (manifest_parse_image(body, len, digest, &image, &why) < 0) {
        mark_manifest_unknown(set, digest, &why);
        return 0;
    }
    bool added;
    int rc = set_add(set, image.config_digest, &added, err);
    for (size_t i = 0; rc == 0 && i < image.layer_count; i++)
        rc = set_add(set, image.layers[i].digest, &added, err);
    oci_image_free(&image);
    return rc;
}

static int add_index_manifests(struct oci_blob_set *set, const struct oci_store *store,
                               const char *body, size_t len, const char *digest, bool nested,
                               struct shed_err *err)
{
    struct shed_err why = {0};
    if (nested) {
        /* The puller never follows an index inside an index, so nothing here came from it. */
        shed_errf(&why, SHED_E_UNSUPPORTED, "an index inside an index");
        mark_manifest_unknown(set, digest, &why);
        return 0;
    }
    cleanup_free char(*children)[DIGEST_STRING_LEN + 1] = NULL;
    size_t count = 0;
    if (index_list_manifests(body, len, &children, &count, &why) < 0) {
        mark_manifest_unknown(set, digest, &why);
        return 0;
    }
    for (size_t i = 0; i < count; i++)
        if (add_reachable(set, store, children[i], true, err) < 0)
            return -1;
    return 0;
}

static int add_reachable(struct oci_blob_set *set, const struct oci_store *store,
                         const char *digest, bool nested, struct shed_err *err)
{
    if (!digest_is_valid(digest))
        return 0;
    bool added = false;
    if (set_add(set, digest, &added, err) < 0)
        return -1;
    if (!added)
        return 0; /* walked already */
    cleanup_free char *body = NULL;
    size_t len = 0;
    struct shed_err why = {0};
    if (store_read_manifest(store, digest, &body, &len, &why) < 0) {
        if (!shed_err_is_errno(&why, ENOENT)) /* absent: it reaches nothing we could know of */
            mark_manifest_unknown(set, digest, &why);
        return 0;
    }
    enum manifest_kind kind;
    if (manifest_kind_of(NULL, body, len, &kind, &why) < 0) {
        mark_manifest_unknown(set, digest, &why);
        return 0;
    }
    if (kind == MANIFEST_KIND_INDEX)
        return add_index_manifests(set, store, body, len, digest, nested, err);
    return add_image_blobs(set, body, len, digest, err);
}

int oci_blob_set_add_reachable(struct oci_blob_set *set, const struct oci_store *store,
                               const char *digest, struct shed_err *err)
{
    return add_reachable(set, store, digest, false, err);
}

struct ref_walk {
    struct oci_blob_set *set;
    const struct oci_store *store;
};

static int add_ref_entry(const char *canonical_ref, const char *digest,
                         const struct shed_err *problem, void *opaque, struct shed_err *err)
{
    struct ref_walk *walk = opaque;
    if (digest == NULL) {
        char what[300];
        snprintf(what, sizeof what, "ref index entry of %s", canonical_ref);
        mark_unknown(walk->set, what, problem);
        return 0;
    }
    return add_reachable(walk->set, walk->store, digest, false, err);
}

int oci_blob_set_add_ref_index(struct oci_blob_set *set, const struct oci_store *store,
                               struct shed_err *err)
{
    struct ref_walk walk = {.set = set, .store = store};
    return oci_store_ref_foreach(store, add_ref_entry, &walk, err);
}
