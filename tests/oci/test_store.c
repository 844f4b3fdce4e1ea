/* The walks over the blob store that disk accounting and pruning rely on: which blobs the
 * manifests reach (with the puller's own size limit), that a manifest which is there but
 * cannot be used makes the answer "unknown" (keep everything) rather than "unreferenced",
 * the ref index as entries, and the blob store's files. The store is laid out on disk the
 * way a pull leaves it (blobs named by the sha256 of their bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/digest.h"
#include "common/fsutil.h"
#include "harness/check.h"
#include "oci/oci.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define GZIP_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"

static char root[256];

static void __attribute__((noreturn)) die(const char *what, const struct shed_err *err)
{
    CHECK_FATAL("%s: %s", what, err != NULL ? err->msg : "failed");
}

/* A fresh images_dir with an empty store. */
static struct oci_store *fresh_store(const char *name)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    struct oci_store *store = NULL;
    struct shed_err err = {0};
    if (oci_store_open(dir, &store, &err) < 0)
        die("oci_store_open", &err);
    return store;
}

static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die(path, NULL);
}

/* Stores data as a blob; digest receives its name. */
static void put_blob(struct oci_store *store, const char *data, size_t len,
                     char digest[DIGEST_STRING_LEN + 1])
{
    if (sha256_digest_of(data, len, digest) < 0)
        die("sha256", NULL);
    char *path = oci_store_blob_path(store, digest);
    write_bytes(path, data, len);
    free(path);
}

static void put_text_blob(struct oci_store *store, const char *text,
                          char digest[DIGEST_STRING_LEN + 1])
{
    put_blob(store, text, strlen(text), digest);
}

/* An image manifest naming config and two layers, padded with an annotation of pad bytes. */
static char *manifest_text(const char *config, const char *layer1, const char *layer2, size_t pad)
{
    char *padding = malloc(pad + 1);
    if (padding == NULL)
        die("malloc", NULL);
    memset(padding, 'p', pad);
    padding[pad] = '\0';
    char *text =
        str_printf("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
                   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                   "\"digest\":\"%s\",\"size\":2},"
                   "\"layers\":[{\"mediaType\":\"" GZIP_LAYER "\",\"digest\":\"%s\",\"size\":3},"
                   "{\"mediaType\":\"" GZIP_LAYER "\",\"digest\":\"%s\",\"size\":3}],"
                   "\"annotations\":{\"padding\":\"%s\"}}",
                   config, layer1, layer2, padding);
    free(padding);
    return text;
}

struct image {
    char manifest[DIGEST_STRING_LEN + 1], config[DIGEST_STRING_LEN + 1];
    char layer1[DIGEST_STRING_LEN + 1], layer2[DIGEST_STRING_LEN + 1];
};

/* A complete image in the store; tag makes its blobs distinct from other images'. */
static void put_image(struct oci_store *store, const char *tag, size_t pad, struct image *image)
{
    char text[64];
    snprintf(text, sizeof text, "{}%s", tag);
    put_text_blob(store, text, image->config);
    snprintf(text, sizeof text, "layer one of %s", tag);
    put_text_blob(store, text, image->layer1);
    snprintf(text, sizeof text, "layer two of %s", tag);
    put_text_blob(store, text, image->layer2);
    char *manifest = manifest_text(image->config, image->layer1, image->layer2, pad);
    put_text_blob(store, manifest, image->manifest);
    free(manifest);
}

static struct oci_blob_set *reachable_from(struct oci_store *store, const char *digest)
{
    struct oci_blob_set *set = NULL;
    struct shed_err err = {0};
    if (oci_blob_set_new(&set, &err) < 0 ||
        oci_blob_set_add_reachable(set, store, digest, &err) < 0)
        die("oci_blob_set_add_reachable", &err);
    return set;
}

static bool reaches_image(const struct oci_blob_set *set, const struct image *image)
{
    return oci_blob_set_has(set, image->manifest) && oci_blob_set_has(set, image->config) &&
           oci_blob_set_has(set, image->layer1) && oci_blob_set_has(set, image->layer2);
}

static void test_an_image_manifest_reaches_its_config_and_layers_only(void)
{
    struct oci_store *store = fresh_store("image");
    struct image a, b;
    put_image(store, "a", 0, &a);
    put_image(store, "b", 0, &b);
    struct oci_blob_set *set = reachable_from(store, a.manifest);
    CHECK(reaches_image(set, &a));
    CHECK(!oci_blob_set_has(set, b.manifest));
    CHECK(!oci_blob_set_has(set, b.layer1));
    CHECK(oci_blob_set_unknown_reason(set) == NULL);
    oci_blob_set_free(set);
    oci_store_close(store);
}

static void test_an_index_reaches_every_manifest_it_lists(void)
{
    struct oci_store *store = fresh_store("index");
    struct image amd64;
    put_image(store, "amd64", 0, &amd64);
    /* the arm64 manifest was never pulled: its digest is reachable, nothing more is known */
    const char *arm64 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    char *index = str_printf("{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":["
                             "{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
                             "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
                             "{\"mediaType\":\"" OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
                             "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}}]}",
                             amd64.manifest, arm64);
    char index_digest[DIGEST_STRING_LEN + 1];
    put_text_blob(store, index, index_digest);
    free(index);
    struct oci_blob_set *set = reachable_from(store, index_digest);
    CHECK(oci_blob_set_has(set, index_digest));
    CHECK(reaches_image(set, &amd64));
    CHECK(oci_blob_set_has(set, arm64));
    CHECK(oci_blob_set_unknown_reason(set) == NULL);
    oci_blob_set_free(set);
    oci_store_close(store);
}

static void test_an_absent_manifest_reaches_only_itself(void)
{
    struct oci_store *store = fresh_store("absent");
    const char *gone = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    struct oci_blob_set *set = reachable_from(store, gone);
    CHECK(oci_blob_set_has(set, gone));
    CHECK(oci_blob_set_unknown_reason(set) == NULL);
    oci_blob_set_free(set);
    oci_store_close(store);
}

static void test_manifests_up_to_the_pullers_limit_are_read_and_larger_ones_are_unknown(void)
{
    struct oci_store *store = fresh_store("large");
    struct image six, nine;
    put_image(store, "six", 6u << 20, &six);   /* the puller takes up to 8 MiB */
    put_image(store, "nine", 9u << 20, &nine); /* more than any pull could have stored */
    struct oci_blob_set *set = reachable_from(store, six.manifest);
    CHECK(reaches_image(set, &six));
    CHECK(oci_blob_set_unknown_reason(set) == NULL);
    oci_blob_set_free(set);
    set = reachable_from(store, nine.manifest);
    CHECK(!oci_blob_set_has(set, nine.layer1));
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), nine.manifest);
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), "too large");
    oci_blob_set_free(set);
    oci_store_close(store);
}

static void test_a_damaged_or_foreign_manifest_makes_the_set_unknown(void)
{
    struct oci_store *store = fresh_store("damaged");
    struct image image;
    put_image(store, "damaged", 0, &image);
    char *path = oci_store_blob_path(store, image.manifest);
    const char *torn = "{\"schemaVersion\":2,\"layers\":["; /* torn on disk */
    write_bytes(path, torn, strlen(torn));
    free(path);
    struct oci_blob_set *set = reachable_from(store, image.manifest);
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), image.manifest);
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), "corrupt");
    oci_blob_set_free(set);
    /* intact, but not a manifest the puller would ever have stored (a layer type it
     * refuses): still unknown, never "nothing reachable" */
    char *foreign = str_printf("{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":2},"
                               "\"layers\":[{\"mediaType\":\"application/x-unheard-of\","
                               "\"digest\":\"%s\",\"size\":3}]}",
                               image.config, image.layer1);
    char foreign_digest[DIGEST_STRING_LEN + 1];
    put_text_blob(store, foreign, foreign_digest);
    free(foreign);
    set = reachable_from(store, foreign_digest);
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), foreign_digest);
    oci_blob_set_free(set);
    oci_store_close(store);
}

struct ref_visits {
    int good, bad;
    char last_bad[300];
};

static int count_ref(const char *canonical_ref, const char *digest, const struct shed_err *problem,
                     void *opaque, struct shed_err *err)
{
    (void)err;
    struct ref_visits *visits = opaque;
    if (digest != NULL && problem == NULL && digest_is_valid(digest)) {
        visits->good++;
    } else {
        visits->bad++;
        snprintf(visits->last_bad, sizeof visits->last_bad, "%s", canonical_ref);
    }
    return 0;
}

static void test_the_ref_index_is_walked_entry_by_entry(void)
{
    struct oci_store *store = fresh_store("refs");
    struct image a, b;
    put_image(store, "ra", 0, &a);
    put_image(store, "rb", 0, &b);
    struct shed_err err = {0};
    if (oci_store_ref_set(store, "127.0.0.1:5000/o/a:v1", a.manifest, &err) < 0 ||
        oci_store_ref_set(store, "127.0.0.1:5000/o/b:v1", b.manifest, &err) < 0)
        die("oci_store_ref_set", &err);
    char path[600];
    const char *refs = oci_store_images_dir(store);
    snprintf(path, sizeof path, "%s/refs/README", refs); /* not an entry */
    write_bytes(path, "hello", 5);
    snprintf(path, sizeof path, "%s/refs/127.0.0.1%%3A5000%%2Fo%%2Fa%%3Av1.tmp.4242", refs);
    write_bytes(path, "", 0); /* a write killed before its bytes landed */
    struct ref_visits visits = {0};
    CHECK(oci_store_ref_foreach(store, count_ref, &visits, &err) == 0);
    CHECK(visits.good == 2 && visits.bad == 0);

    struct oci_blob_set *set = NULL;
    if (oci_blob_set_new(&set, &err) < 0 || oci_blob_set_add_ref_index(set, store, &err) < 0)
        die("oci_blob_set_add_ref_index", &err);
    CHECK(reaches_image(set, &a) && reaches_image(set, &b));
    CHECK(oci_blob_set_unknown_reason(set) == NULL);
    oci_blob_set_free(set);

    snprintf(path, sizeof path, "%s/refs/127.0.0.1%%3A5000%%2Fo%%2Fc%%3Av1", refs);
    write_bytes(path, "not a digest\n", 13); /* an entry that cannot be read */
    memset(&visits, 0, sizeof visits);
    CHECK(oci_store_ref_foreach(store, count_ref, &visits, &err) == 0);
    CHECK(visits.good == 2 && visits.bad == 1);
    CHECK_STR_EQ(visits.last_bad, "127.0.0.1:5000/o/c:v1");
    if (oci_blob_set_new(&set, &err) < 0 || oci_blob_set_add_ref_index(set, store, &err) < 0)
        die("oci_blob_set_add_ref_index", &err);
    CHECK_STR_CONTAINS(oci_blob_set_unknown_reason(set), "127.0.0.1:5000/o/c:v1");
    oci_blob_set_free(set);
    oci_store_close(store);
}

struct blob_visits {
    int count;
    char names[4][80];
    enum oci_blob_state states[4];
    bool has_digest[4];
};

static int record_blob(const struct oci_blob_entry *entry, void *opaque, struct shed_err *err)
{
    (void)err;
    struct blob_visits *visits = opaque;
    if (visits->count < 4) {
        const char *base = strrchr(entry->path, '/');
        snprintf(visits->names[visits->count], sizeof visits->names[0], "%s",
                 base != NULL ? base + 1 : entry->path);
        visits->states[visits->count] = entry->state;
        visits->has_digest[visits->count] = entry->digest != NULL;
    }
    visits->count++;
    return 0;
}

static void test_the_blob_store_lists_every_file_sorted_with_its_state(void)
{
    struct oci_store *store = fresh_store("blobs");
    char digest[DIGEST_STRING_LEN + 1];
    put_text_blob(store, "stored", digest);
    char path[600];
    snprintf(path, sizeof path, "%s/blobs/sha256/%s.tmp", oci_store_images_dir(store), digest + 7);
    write_bytes(path, "st", 2);
    snprintf(path, sizeof path, "%s/blobs/sha256/zz-junk", oci_store_images_dir(store));
    write_bytes(path, "?", 1);
    struct blob_visits visits = {0};
    struct shed_err err = {0};
    CHECK(oci_store_blob_foreach(store, record_blob, &visits, &err) == 0);
    CHECK(visits.count == 3);
    CHECK_STR_EQ(visits.names[0], digest + 7);
    CHECK(visits.states[0] == OCI_BLOB_STORED && visits.has_digest[0]);
    CHECK(strncmp(visits.names[1], digest + 7, 64) == 0 && visits.states[1] == OCI_BLOB_PARTIAL);
    CHECK_STR_EQ(visits.names[2], "zz-junk");
    CHECK(visits.states[2] == OCI_BLOB_FOREIGN && !visits.has_digest[2]);
    oci_store_close(store);
}

static void test_a_store_that_does_not_exist_reads_empty_and_is_not_created(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/never", root);
    struct oci_store *store = NULL;
    struct shed_err err = {0};
    CHECK(oci_store_open_existing(dir, &store, &err) == 0);
    struct blob_visits blobs = {0};
    struct ref_visits refs = {0};
    CHECK(oci_store_blob_foreach(store, record_blob, &blobs, &err) == 0 && blobs.count == 0);
    CHECK(oci_store_ref_foreach(store, count_ref, &refs, &err) == 0 && refs.good == 0);
    CHECK(!fs_exists(dir));
    oci_store_close(store);
}

/* Every test gets its own temporary root for its stores. */
static void make_root(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/shed-oci-store-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(root) == NULL)
        CHECK_FATAL("mkdtemp %s failed", root);
}

static void remove_root(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_an_image_manifest_reaches_its_config_and_layers_only),
    CHECK_TEST(test_an_index_reaches_every_manifest_it_lists),
    CHECK_TEST(test_an_absent_manifest_reaches_only_itself),
    CHECK_TEST(test_manifests_up_to_the_pullers_limit_are_read_and_larger_ones_are_unknown),
    CHECK_TEST(test_a_damaged_or_foreign_manifest_makes_the_set_unknown),
    CHECK_TEST(test_the_ref_index_is_walked_entry_by_entry),
    CHECK_TEST(test_the_blob_store_lists_every_file_sorted_with_its_state),
    CHECK_TEST(test_a_store_that_does_not_exist_reads_empty_and_is_not_created),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], make_root, remove_root);
}
