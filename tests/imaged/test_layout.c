/* The one rule for the names of images_dir (imaged/layout.h): what every kind of file the
 * image cache writes is classified as, what is not the cache's, which lock guards which
 * file, and the .source record as the cache and df both read it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "harness/check.h"
#include "imaged/layout.h"

static const struct {
    const char *entry;
    enum image_file_kind kind;
    const char *variant;
} entries[] = {
    {"web-rootfs.ext4", IMAGE_FILE_ROOTFS, "web"},
    {"web-rootfs.ext4.lock", IMAGE_FILE_LOCK, "web"},
    {"web-rootfs.ext4.source", IMAGE_FILE_SOURCE, "web"},
    {"web-rootfs.ext4.tmp", IMAGE_FILE_TMP, "web"},          /* a conversion */
    {"web-rootfs.ext4.tmp.4242", IMAGE_FILE_TMP, "web"},     /* the rootfs link replaced */
    {"web-rootfs.ext4.source.tmp.7", IMAGE_FILE_TMP, "web"}, /* .source written */
    {"web-vmlinux", IMAGE_FILE_KERNEL, "web"},
    {"web-vmlinux.tmp.12", IMAGE_FILE_TMP, "web"},
    {"web-initrd.img", IMAGE_FILE_INITRD, "web"},
    {"web-initrd.img.tmp.12", IMAGE_FILE_TMP, "web"},
    {"vmlinux", IMAGE_FILE_BASE_KERNEL, "_base"},
    {"initrd.img", IMAGE_FILE_BASE_INITRD, "_base"},
    {"vmlinux.tmp.99", IMAGE_FILE_TMP, "_base"},
    {"initrd.img.tmp.99", IMAGE_FILE_TMP, "_base"},
    {"_base-rootfs.ext4", IMAGE_FILE_ROOTFS, "_base"},
    /* names may contain the markers themselves: the suffix decides */
    {"a-rootfs.ext4-rootfs.ext4", IMAGE_FILE_ROOTFS, "a-rootfs.ext4"},
    {"x-vmlinux-rootfs.ext4.lock", IMAGE_FILE_LOCK, "x-vmlinux"},
    {"a-rootfs.ext4-vmlinux", IMAGE_FILE_KERNEL, "a-rootfs.ext4"},
    /* not the cache's */
    {"-rootfs.ext4", IMAGE_FILE_OTHER, NULL},
    {"web-rootfs.ext4.bak", IMAGE_FILE_OTHER, NULL},
    {"web-rootfs.ext4.tmp.", IMAGE_FILE_OTHER, NULL},
    {"web-rootfs.ext4.tmp.12a", IMAGE_FILE_OTHER, NULL},
    {"web-rootfs.ext4.source.tmp", IMAGE_FILE_OTHER, NULL},
    {"web-vmlinux.tmp", IMAGE_FILE_OTHER, NULL},
    {"vmlinux-6.1", IMAGE_FILE_OTHER, NULL},
    {"blobs", IMAGE_FILE_OTHER, NULL},
    {"notes.txt", IMAGE_FILE_OTHER, NULL},
};

static void test_every_cache_file_is_classified_by_one_rule(void)
{
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        struct image_entry found;
        struct shed_err err = {0};
        CHECK(image_layout_classify(entries[i].entry, &found, &err) == 0);
        if (found.kind != entries[i].kind)
            CHECK_FAIL("%s: kind %d, expected %d", entries[i].entry, found.kind, entries[i].kind);
        if (entries[i].variant != NULL)
            CHECK_STR_EQ(found.variant, entries[i].variant);
        else
            CHECK(found.variant == NULL);
        image_entry_clear(&found);
    }
}

static void test_the_paths_made_are_the_paths_classified(void)
{
    struct image_variant_paths paths;
    struct shed_err err = {0};
    CHECK(image_layout_variant_paths("/srv/img/", "web", &paths, &err) == 0);
    CHECK_STR_EQ(paths.rootfs, "/srv/img/web-rootfs.ext4");
    CHECK_STR_EQ(paths.lock, "/srv/img/web-rootfs.ext4.lock");
    CHECK_STR_EQ(paths.source, "/srv/img/web-rootfs.ext4.source");
    CHECK_STR_EQ(paths.tmp, "/srv/img/web-rootfs.ext4.tmp");
    CHECK_STR_EQ(paths.kernel, "/srv/img/web-vmlinux");
    CHECK_STR_EQ(paths.initrd, "/srv/img/web-initrd.img");
    CHECK(paths.base_kernel == NULL && paths.base_initrd == NULL);
    image_variant_paths_free(&paths);
    CHECK(image_layout_variant_paths("/srv/img", "_base", &paths, &err) == 0);
    CHECK_STR_EQ(paths.base_kernel, "/srv/img/vmlinux");
    CHECK_STR_EQ(paths.base_initrd, "/srv/img/initrd.img");
    image_variant_paths_free(&paths);
    char *content = image_layout_content_rootfs(
        "/srv/img", "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        64u << 20);
    CHECK_STR_EQ(content, "/srv/img/rootfs/sha256/"
                          "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff-"
                          "67108864.ext4");
    CHECK(image_layout_is_content_rootfs("/srv/img", content));
    CHECK(!image_layout_is_content_rootfs("/srv/img", "/srv/img/web-rootfs.ext4"));
    free(content);
}

static void test_content_store_entries_belong_to_their_rootfs(void)
{
    static const struct {
        const char *entry;
        enum image_content_kind kind;
        const char *rootfs;
    } cases[] = {
        {"ab-1.ext4", IMAGE_CONTENT_ROOTFS, "ab-1.ext4"},
        {"ab-1.ext4.lock", IMAGE_CONTENT_LOCK, "ab-1.ext4"},
        {"ab-1.ext4.tmp.77", IMAGE_CONTENT_TMP, "ab-1.ext4"},
        {"ab-1.ext4.tmp", IMAGE_CONTENT_OTHER, NULL},
        {"ab-1.img", IMAGE_CONTENT_OTHER, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum image_content_kind kind;
        char *rootfs = NULL;
        struct shed_err err = {0};
        CHECK(image_layout_classify_content(cases[i].entry, &kind, &rootfs, &err) == 0);
        CHECK(kind == cases[i].kind);
        if (cases[i].rootfs != NULL)
            CHECK_STR_EQ(rootfs, cases[i].rootfs);
        else
            CHECK(rootfs == NULL);
        free(rootfs);
    }
}

static void test_each_file_is_guarded_by_its_rootfs_lock(void)
{
    static const struct {
        const char *path, *rootfs, *lock;
    } cases[] = {
        {"/i/web-rootfs.ext4.source", "/i/web-rootfs.ext4", "/i/web-rootfs.ext4.lock"},
        {"/i/web-vmlinux.tmp.3", "/i/web-rootfs.ext4", "/i/web-rootfs.ext4.lock"},
        {"/i/vmlinux.tmp.3", "/i/_base-rootfs.ext4", "/i/_base-rootfs.ext4.lock"},
        {"/i/rootfs/sha256/ab-1.ext4.tmp.9", "/i/rootfs/sha256/ab-1.ext4",
         "/i/rootfs/sha256/ab-1.ext4.lock"},
        {"/i/blobs/sha256/abcd", NULL, NULL}, /* the OCI store has no lock of its own */
        {"/i/notes.txt", NULL, NULL},
        {"/elsewhere/web-rootfs.ext4.source", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *rootfs = NULL, *lock = NULL;
        struct shed_err err = {0};
        CHECK(image_layout_guard("/i", cases[i].path, &rootfs, &lock, &err) == 0);
        if (cases[i].lock != NULL) {
            CHECK_STR_EQ(rootfs, cases[i].rootfs);
            CHECK_STR_EQ(lock, cases[i].lock);
        } else {
            CHECK(rootfs == NULL && lock == NULL);
        }
        free(rootfs);
        free(lock);
    }
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        CHECK_FATAL("cannot write %s", path);
}

static void test_the_source_record_and_the_cached_variants(void)
{
    char dir[] = "/tmp/shed-layout-XXXXXX";
    if (mkdtemp(dir) == NULL)
        CHECK_FATAL("mkdtemp %s failed", dir);
    const char *digest = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    struct shed_err err = {0};
    CHECK(image_source_write(dir, "web", "reg/o/web:v1", digest, 1u << 30, &err) == 0);
    struct image_source record;
    CHECK(image_source_read(dir, "web", &record, &err) == 0);
    CHECK(record.present && record.rootfs_size == (1u << 30));
    CHECK_STR_EQ(record.digest, digest);
    CHECK(image_source_matches(&record, "reg/o/web:v1", 1u << 30));
    CHECK(!image_source_matches(&record, "reg/o/web:v2", 1u << 30));
    CHECK(!image_source_matches(&record, "reg/o/web:v1", 2u << 30));
    image_source_clear(&record);
    /* a record without a ref still names its digest (its blobs stay referenced) but
     * matches no configured ref; one without a valid digest is no record */
    write_text(dir, "old-rootfs.ext4.source",
               "{\"digest\": \"sha256:00112233445566778899aabbccddeeff00112233445566778899aab"
               "bccddeeff\"}");
    CHECK(image_source_read(dir, "old", &record, &err) == 0);
    CHECK(record.present && !image_source_matches(&record, "reg/o/old:v1", 0));
    CHECK_STR_EQ(record.ref, "");
    image_source_clear(&record);
    write_text(dir, "bad-rootfs.ext4.source", "{\"ref\": \"x\", \"digest\": \"md5:1\"}");
    CHECK(image_source_read(dir, "bad", &record, &err) == 0 && !record.present);
    image_source_clear(&record);
    CHECK(image_source_read(dir, "missing", &record, &err) == 0 && !record.present);
    image_source_clear(&record);

    write_text(dir, "web-rootfs.ext4", "");
    write_text(dir, "b-rootfs.ext4", "");
    write_text(dir, "b-rootfs.ext4.tmp", "");
    char sub[600];
    snprintf(sub, sizeof sub, "%s/dir-rootfs.ext4", dir);
    CHECK(mkdir(sub, 0755) == 0); /* not a regular file: not a cached variant */
    char **names = NULL;
    CHECK(image_layout_cached_variants(dir, &names, &err) == 0);
    CHECK(names != NULL && names[0] != NULL && names[1] != NULL && names[2] == NULL);
    if (names != NULL && names[0] != NULL && names[1] != NULL) {
        CHECK_STR_EQ(names[0], "b");
        CHECK_STR_EQ(names[1], "web");
    }
    image_names_free(names);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_every_cache_file_is_classified_by_one_rule),
    CHECK_TEST(test_the_paths_made_are_the_paths_classified),
    CHECK_TEST(test_content_store_entries_belong_to_their_rootfs),
    CHECK_TEST(test_each_file_is_guarded_by_its_rootfs_lock),
    CHECK_TEST(test_the_source_record_and_the_cached_variants),
};

int main(int argc, char **argv)
{
    return CHECK_MAIN(argc, argv, tests);
}
