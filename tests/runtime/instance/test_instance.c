/* The instance store (runtime/instance.h): names, metadata round trip, atomic writes,
 * listing order and error entries, hand edits seen through the cache, delete, and the
 * per-shed lock (one shed serialised, different sheds in parallel). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "harness/check.h"
#include "runtime/instance.h"

/* Each test gets a fresh instance store in its own temp dir. */
static char root[64];
static struct instance_store *store;

static void store_open(void)
{
    snprintf(root, sizeof root, "/tmp/shed-test-instance-XXXXXX");
    if (mkdtemp(root) == NULL)
        CHECK_FATAL("mkdtemp: %s", strerror(errno));
    struct shed_err err = {0};
    char *dir = str_printf("%s/instances", root);
    if (instance_store_open(dir, &store, &err) < 0)
        CHECK_FATAL("open: %s", err.msg);
    free(dir);
}

static void store_close(void)
{
    instance_store_close(store);
    store = NULL;
    char *cleanup = str_printf("rm -rf '%s'", root);
    if (system(cleanup) != 0)
        fprintf(stderr, "warning: could not remove %s\n", root);
    free(cleanup);
}

static void test_name_validation(void)
{
    static const char *const good[] = {"a", "ab", "a1", "my-shed", "a-b-c", "z9"};
    static const char *const bad[] = {"", "A", "1a", "-a", "a-", "a_b", "a.b", "a/b", "ab ", "é"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(instance_name_is_valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!instance_name_is_valid(bad[i]));
    char longest[64];
    memset(longest, 'a', 63);
    longest[63] = '\0';
    CHECK(instance_name_is_valid(longest));
    char too_long[65];
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    CHECK(!instance_name_is_valid(too_long));
    struct shed_err err = {0};
    CHECK(instance_check_name("Bad", &err) < 0 && err.code == SHED_E_INVALID_SHED_NAME);
}

static bool dir_has_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL)
        if (strstr(entry->d_name, ".tmp") != NULL)
            found = true;
    closedir(d);
    return found;
}

static void save_new(struct instance_store *store, const char *name, enum instance_status status)
{
    struct shed_err err = {0};
    struct instance inst;
    CHECK_OK(instance_init(&inst, name, &err), &err);
    CHECK_OK(instance_store_create_dir(store, name, &err), &err);
    inst.status = status;
    inst.cpus = 2;
    CHECK_OK(instance_set_string(&inst.image, "base", &err), &err);
    CHECK_OK(instance_set_string(&inst.backend, "container", &err), &err);
    inst.backend_state = json_pack("{s:s}", "bundle", "/x");
    CHECK_OK(instance_store_save(store, &inst, &err), &err);
    instance_clear(&inst);
}

static void test_round_trip_and_atomic_write(void)
{
    struct shed_err err = {0};
    save_new(store, "round", INSTANCE_RUNNING);
    struct instance inst;
    CHECK_OK(instance_store_load(store, "round", &inst, &err), &err);
    CHECK(strcmp(inst.name, "round") == 0);
    CHECK(inst.status == INSTANCE_RUNNING);
    CHECK(inst.cpus == 2);
    CHECK(strcmp(inst.image, "base") == 0);
    CHECK(strcmp(inst.repo, "") == 0);
    CHECK(strlen(inst.created_at) == 20 && inst.created_at[19] == 'Z');
    CHECK(inst.backend_state != NULL &&
          strcmp(json_string_value(json_object_get(inst.backend_state, "bundle")), "/x") == 0);
    instance_clear(&inst);

    char *dir = instance_store_path(store, "round");
    CHECK(!dir_has_tmp_files(dir));
    free(dir);

    CHECK(instance_store_create_dir(store, "round", &err) < 0 &&
          err.code == SHED_E_SHED_ALREADY_EXISTS);
    CHECK(instance_store_load(store, "missing", &inst, &err) < 0 &&
          err.code == SHED_E_SHED_NOT_FOUND);
    CHECK(instance_store_load(store, "Bad", &inst, &err) < 0 &&
          err.code == SHED_E_INVALID_SHED_NAME);
}

static void write_text(const char *path, const char *text)
{
    struct shed_err err = {0};
    CHECK_OK(fs_write_file_atomic(path, text, strlen(text), 0644, &err), &err);
}

static void test_hand_edit_is_seen(void)
{
    struct shed_err err = {0};
    save_new(store, "edited", INSTANCE_STOPPED);
    struct instance inst;
    CHECK_OK(instance_store_load(store, "edited", &inst, &err), &err); /* now cached */
    instance_clear(&inst);
    char *path = str_printf("%s/edited/metadata.json", instance_store_dir(store));
    write_text(path, "{\"name\":\"edited\",\"status\":\"running\",\"pid\":42,\"image\":\"other\"}");
    free(path);
    CHECK_OK(instance_store_load(store, "edited", &inst, &err), &err);
    CHECK(inst.status == INSTANCE_RUNNING && inst.pid == 42 && strcmp(inst.image, "other") == 0);
    instance_clear(&inst);
}

static void test_list_sorted_with_error_entries(void)
{
    struct shed_err err = {0};
    char *dir = str_printf("%s/list", root);
    struct instance_store *store = NULL;
    CHECK_OK(instance_store_open(dir, &store, &err), &err);
    save_new(store, "zeta", INSTANCE_STOPPED);
    save_new(store, "alpha", INSTANCE_STOPPED);
    save_new(store, "mid", INSTANCE_STOPPED);
    /* a corrupt file, a directory without metadata (being created), a stray file and an
     * invalid directory name */
    char *bad = str_printf("%s/broken", dir);
    mkdir(bad, 0755);
    char *bad_file = str_printf("%s/broken/metadata.json", dir);
    write_text(bad_file, "{not json");
    char *creating = str_printf("%s/creating", dir);
    mkdir(creating, 0755);
    char *stray = str_printf("%s/notes.txt", dir);
    write_text(stray, "x");
    char *upper = str_printf("%s/Upper", dir);
    mkdir(upper, 0755);

    struct instance_list list;
    CHECK_OK(instance_store_list(store, &list, &err), &err);
    CHECK(list.count == 4);
    if (list.count == 4) {
        CHECK(strcmp(list.items[0].name, "alpha") == 0);
        CHECK(strcmp(list.items[1].name, "broken") == 0 && list.items[1].status == INSTANCE_ERROR);
        CHECK(strcmp(list.items[2].name, "mid") == 0);
        CHECK(strcmp(list.items[3].name, "zeta") == 0);
    }
    instance_list_clear(&list);

    CHECK_OK(instance_store_delete(store, "mid", &err), &err);
    CHECK_OK(instance_store_list(store, &list, &err), &err);
    CHECK(list.count == 3);
    instance_list_clear(&list);
    char *mid = str_printf("%s/mid", dir);
    CHECK(!fs_exists(mid));
    CHECK_OK(instance_store_delete(store, "mid", &err), &err); /* already gone: fine */

    free(mid);
    free(bad);
    free(bad_file);
    free(creating);
    free(stray);
    free(upper);
    free(dir);
    instance_store_close(store);
}

#define LOWER_DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void save_overlay(struct instance_store *store, const char *name, const char *image)
{
    struct shed_err err = {0};
    struct instance inst;
    CHECK_OK(instance_init(&inst, name, &err), &err);
    CHECK_OK(instance_store_create_dir(store, name, &err), &err);
    CHECK_OK(instance_set_string(&inst.image, image, &err), &err);
    inst.disk = INSTANCE_DISK_OVERLAY;
    snprintf(inst.lower.digest, sizeof inst.lower.digest, "%s", LOWER_DIGEST);
    inst.lower.size = 2ULL << 30;
    CHECK_OK(instance_store_save(store, &inst, &err), &err);
    instance_clear(&inst);
}

/* The disk kind and the lower survive a round trip; an overlay shed's disk is upper.ext4;
 * metadata without "disk" (older versions) is a full copy. */
static void test_disk_kind_and_lower_round_trip(void)
{
    struct shed_err err = {0};
    save_overlay(store, "over", "big");
    save_new(store, "plain", INSTANCE_STOPPED);
    struct instance inst;
    CHECK_OK(instance_store_load(store, "over", &inst, &err), &err);
    CHECK(inst.disk == INSTANCE_DISK_OVERLAY);
    CHECK_STR_EQ(inst.lower.digest, LOWER_DIGEST);
    CHECK(inst.lower.size == 2ULL << 30);
    char *upper = str_printf("%s/over/upper.ext4", instance_store_dir(store));
    CHECK_STR_EQ(inst.rootfs_path, upper);
    free(upper);
    struct instance copy;
    CHECK_OK(instance_copy(&copy, &inst, &err), &err);
    CHECK(copy.disk == INSTANCE_DISK_OVERLAY && copy.lower.size == 2ULL << 30);
    instance_clear(&copy);
    instance_clear(&inst);

    char *path = str_printf("%s/plain/metadata.json", instance_store_dir(store));
    write_text(path, "{\"name\":\"plain\",\"status\":\"stopped\",\"image\":\"base\"}");
    CHECK_OK(instance_store_load(store, "plain", &inst, &err), &err);
    CHECK(inst.disk == INSTANCE_DISK_COPY);
    CHECK(strstr(inst.rootfs_path, "/plain/rootfs.ext4") != NULL);
    instance_clear(&inst);
    free(path);
}

/* A disk that cannot be told is never guessed: an unknown kind, or a lower that is not a
 * digest and a size (a path could be made of anything else). */
static void test_bad_disk_is_refused(void)
{
    static const char *const bad[] = {
        "{\"name\":\"x\",\"status\":\"stopped\",\"disk\":{\"kind\":\"thin\"}}",
        "{\"name\":\"x\",\"status\":\"stopped\",\"disk\":\"overlay\"}",
        "{\"name\":\"x\",\"status\":\"stopped\",\"disk\":{\"kind\":\"overlay\"}}",
        "{\"name\":\"x\",\"status\":\"stopped\",\"disk\":{\"kind\":\"overlay\","
        "\"lower_digest\":\"sha256:../../etc\",\"lower_size\":1}}",
        "{\"name\":\"x\",\"status\":\"stopped\",\"disk\":{\"kind\":\"overlay\","
        "\"lower_digest\":\"" LOWER_DIGEST "\",\"lower_size\":-5}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t jerr;
        json_t *json = json_loads(bad[i], 0, &jerr);
        CHECK(json != NULL);
        struct instance inst;
        struct shed_err err = {0};
        CHECK(instance_from_json(json, &inst, &err) < 0);
        CHECK(err.code == SHED_E_IO);
        json_decref(json);
    }
}

/* What pins a lower and what names an image's users: read from every metadata.json. */
static void test_lower_refs_and_image_users(void)
{
    struct shed_err err = {0};
    char *dir = str_printf("%s/pins", root);
    struct instance_store *pins = NULL;
    CHECK_OK(instance_store_open(dir, &pins, &err), &err);
    save_overlay(pins, "one", "big");
    save_overlay(pins, "two", "big");
    save_new(pins, "three", INSTANCE_STOPPED); /* image "base", a full copy */
    char *creating = str_printf("%s/creating", dir);
    mkdir(creating, 0700); /* no metadata yet: pins nothing */

    struct instance_lower_refs refs;
    CHECK_OK(instance_store_lower_refs(pins, &refs, &err), &err);
    CHECK(refs.count == 2);
    if (refs.count == 2) {
        CHECK_STR_EQ(refs.items[0].name, "one");
        CHECK_STR_EQ(refs.items[1].name, "two");
        CHECK_STR_EQ(refs.items[1].image, "big");
        CHECK_STR_EQ(refs.items[1].lower.digest, LOWER_DIGEST);
    }
    instance_lower_refs_clear(&refs);

    char **names = NULL;
    bool overlay = false;
    CHECK_OK(instance_store_image_users(pins, "big", &names, &overlay, &err), &err);
    CHECK(overlay && names[0] != NULL && strcmp(names[0], "one") == 0 && names[1] != NULL &&
          strcmp(names[1], "two") == 0 && names[2] == NULL);
    instance_image_refs_free(names);
    CHECK_OK(instance_store_image_users(pins, "base", &names, &overlay, &err), &err);
    CHECK(!overlay && names[0] != NULL && names[1] == NULL);
    instance_image_refs_free(names);

    /* Unreadable metadata: an error, so nobody deletes a lower that might be needed. */
    char *broken = str_printf("%s/broken", dir);
    mkdir(broken, 0700);
    char *broken_file = str_printf("%s/broken/metadata.json", dir);
    write_text(broken_file, "{not json");
    CHECK(instance_store_lower_refs(pins, &refs, &err) < 0);
    instance_store_close(pins);
    free(broken_file);
    free(broken);
    free(creating);
    free(dir);
}

struct lock_worker {
    struct instance_store *store;
    const char *name;
    double held_seconds;
    struct timespec acquired;
};

static double seconds(const struct timespec *t)
{
    return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

static void *hold_lock(void *arg)
{
    struct lock_worker *worker = arg;
    struct shed_err err = {0};
    int fd = -1;
    CHECK_OK(instance_store_lock(worker->store, worker->name, &fd, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &worker->acquired);
    struct timespec hold = {0, (long)(worker->held_seconds * 1e9)};
    nanosleep(&hold, NULL);
    instance_store_unlock(fd);
    return NULL;
}

/* Ordering, not timing thresholds: the second locker of the same shed must get the lock
 * only after the first released it; a locker of another shed must not wait for it. */
static void test_locks(void)
{
    struct shed_err err = {0};
    int fd = -1;
    CHECK_OK(instance_store_lock(store, "locked", &fd, &err), &err);
    int other = -1;
    CHECK_OK(instance_store_trylock(store, "locked", &other, &err), &err);
    CHECK(other == -1); /* held: the same shed is serialised even within one process */
    int different = -1;
    CHECK_OK(instance_store_trylock(store, "unrelated", &different, &err), &err);
    CHECK(different >= 0); /* a different shed proceeds */
    instance_store_unlock(different);

    struct lock_worker waiter = {.store = store, .name = "locked", .held_seconds = 0};
    pthread_t thread;
    pthread_create(&thread, NULL, hold_lock, &waiter);
    struct timespec pause = {0, 200 * 1000 * 1000}, released;
    nanosleep(&pause, NULL);
    clock_gettime(CLOCK_MONOTONIC, &released);
    instance_store_unlock(fd);
    pthread_join(thread, NULL);
    CHECK(seconds(&waiter.acquired) >= seconds(&released));
}

static const struct check_test tests[] = {
    CHECK_TEST(test_name_validation),
    CHECK_TEST(test_round_trip_and_atomic_write),
    CHECK_TEST(test_hand_edit_is_seen),
    CHECK_TEST(test_list_sorted_with_error_entries),
    CHECK_TEST(test_locks),
    CHECK_TEST(test_disk_kind_and_lower_round_trip),
    CHECK_TEST(test_bad_disk_is_refused),
    CHECK_TEST(test_lower_refs_and_image_users),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]), store_open, store_close);
}
