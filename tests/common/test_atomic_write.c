/* fs_write_file_atomic and fs_link_atomic under concurrency: threads publishing one path never
 * fail because of each other, a reader always finds one complete version, and no temporary
 * file outlives its call. (The temp used to be path.tmp.<pid>, shared by all threads of a
 * process: two concurrent creates of variants sharing one ref failed with ENOENT.) */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "harness/check.h"

#define WRITERS 2
#define WRITES_PER_WRITER 2000
#define MAX_VERSION_LEN (64 * 1024)

static char scratch[64];

static void make_scratch(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/test_atomic.XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
}

/* The names in dir other than keep (NULL: all of them), one per line, for messages. */
static int count_other_entries(const char *dir, const char *keep, char *names, size_t len)
{
    int count = 0;
    names[0] = '\0';
    cleanup_closedir DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        if (keep != NULL && strcmp(entry->d_name, keep) == 0)
            continue;
        count++;
        size_t used = strlen(names);
        snprintf(names + used, len - used, "%s ", entry->d_name);
    }
    return count;
}

static void check_only_entry(const char *dir, const char *keep)
{
    char names[4096];
    int others = count_other_entries(dir, keep, names, sizeof names);
    if (others != 0)
        fprintf(stderr, "  left behind in %s: %s\n", dir, names);
    CHECK(others == 0);
}

/* ---- one complete version -------------------------------------------------------------- */

/* A version is "writer=W seq=S len=L\n" followed by filler up to L bytes: a reader can tell
 * a whole version from a torn or mixed one. Lengths vary so that versions overlap badly. */
static size_t version_len(int writer, int seq)
{
    return 64 + ((size_t)(writer * 7919 + seq * 104729) % (MAX_VERSION_LEN - 64));
}

static char filler_of(int writer, int seq)
{
    return (char)('a' + (writer * 7 + seq) % 26);
}

static char *make_version(int writer, int seq, size_t *len)
{
    *len = version_len(writer, seq);
    char *text = malloc(*len);
    if (text == NULL)
        return NULL;
    int head = snprintf(text, *len, "writer=%d seq=%d len=%zu\n", writer, seq, *len);
    memset(text + head, filler_of(writer, seq), *len - (size_t)head);
    return text;
}

static bool is_complete_version(const char *text, size_t len)
{
    int writer, seq, head = 0;
    size_t declared;
    if (sscanf(text, "writer=%d seq=%d len=%zu\n%n", &writer, &seq, &declared, &head) != 3 ||
        head == 0)
        return false;
    if (declared != len || len != version_len(writer, seq))
        return false;
    char filler = filler_of(writer, seq);
    for (size_t i = (size_t)head; i < len; i++)
        if (text[i] != filler)
            return false;
    return true;
}

/* ---- concurrent writers and a reader ---------------------------------------------------- */

struct shared {
    char path[128];
    atomic_int writers_left;
    atomic_int failed_writes;
    atomic_int torn_reads;
    atomic_int missing_reads;
    atomic_int good_reads;
    char first_error[600];
    pthread_mutex_t error_lock;
};

struct writer_arg {
    struct shared *shared;
    int writer;
};

static void note_error(struct shared *shared, const struct shed_err *err)
{
    pthread_mutex_lock(&shared->error_lock);
    if (shared->first_error[0] == '\0')
        snprintf(shared->first_error, sizeof shared->first_error, "%s", err->msg);
    pthread_mutex_unlock(&shared->error_lock);
}

static void *writer_thread(void *arg)
{
    struct writer_arg *w = arg;
    for (int seq = 0; seq < WRITES_PER_WRITER; seq++) {
        size_t len;
        cleanup_free char *text = make_version(w->writer, seq, &len);
        struct shed_err err = {0};
        if (text == NULL || fs_write_file_atomic(w->shared->path, text, len, 0600, &err) < 0) {
            atomic_fetch_add(&w->shared->failed_writes, 1);
            note_error(w->shared, &err);
        }
    }
    atomic_fetch_sub(&w->shared->writers_left, 1);
    return NULL;
}

static void *reader_thread(void *arg)
{
    struct shared *shared = arg;
    while (atomic_load(&shared->writers_left) > 0) {
        cleanup_free char *text = NULL;
        size_t len = 0;
        struct shed_err err = {0};
        if (fs_read_file(shared->path, &text, &len, MAX_VERSION_LEN, &err) < 0)
            atomic_fetch_add(&shared->missing_reads, 1); /* the path must never vanish */
        else if (!is_complete_version(text, len))
            atomic_fetch_add(&shared->torn_reads, 1);
        else
            atomic_fetch_add(&shared->good_reads, 1);
    }
    return NULL;
}

static void test_concurrent_writers_of_one_file_never_fail(void)
{
    struct shared shared = {.error_lock = PTHREAD_MUTEX_INITIALIZER};
    snprintf(shared.path, sizeof shared.path, "%s/shared.json", scratch);
    /* A first version, so that the reader always has something to find. */
    size_t len;
    cleanup_free char *first = make_version(WRITERS, 0, &len);
    struct shed_err err = {0};
    CHECK(fs_write_file_atomic(shared.path, first, len, 0600, &err) == 0);
    atomic_store(&shared.writers_left, WRITERS);
    pthread_t writers[WRITERS], reader;
    struct writer_arg args[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (struct writer_arg){.shared = &shared, .writer = i};
        CHECK(pthread_create(&writers[i], NULL, writer_thread, &args[i]) == 0);
    }
    CHECK(pthread_create(&reader, NULL, reader_thread, &shared) == 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(writers[i], NULL);
    pthread_join(reader, NULL);
    int failed = atomic_load(&shared.failed_writes);
    if (failed != 0)
        fprintf(stderr, "  %d of %d writes failed, the first: %s\n", failed,
                WRITERS * WRITES_PER_WRITER, shared.first_error);
    CHECK(failed == 0);
    CHECK(atomic_load(&shared.missing_reads) == 0);
    CHECK(atomic_load(&shared.torn_reads) == 0);
    CHECK(atomic_load(&shared.good_reads) > 0);
    /* The survivor is the last version of one of the writers. */
    cleanup_free char *text = NULL;
    CHECK(fs_read_file(shared.path, &text, &len, MAX_VERSION_LEN, &err) == 0);
    CHECK(text != NULL && is_complete_version(text, len));
    char last[32];
    snprintf(last, sizeof last, "seq=%d ", WRITES_PER_WRITER - 1);
    CHECK_STR_CONTAINS(text, last);
    struct stat st;
    CHECK(stat(shared.path, &st) == 0 && (st.st_mode & 07777) == 0600);
    check_only_entry(scratch, "shared.json");
    unlink(shared.path);
}

/* ---- the temporary file ----------------------------------------------------------------- */

/* imaged's stale-temp sweep and df's orphan rules know a writer's temp by "<name>.tmp.<digits>". */
static void test_temp_name_is_unique_and_numbered(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/x-rootfs.ext4.source", scratch);
    struct shed_err err = {0};
    cleanup_atomic_file struct fs_atomic_file a = FS_ATOMIC_FILE_INIT;
    cleanup_atomic_file struct fs_atomic_file b = FS_ATOMIC_FILE_INIT;
    CHECK(fs_atomic_open(&a, path, 0644, &err) == 0);
    CHECK(fs_atomic_open(&b, path, 0644, &err) == 0);
    CHECK(a.tmp_path != NULL && b.tmp_path != NULL && strcmp(a.tmp_path, b.tmp_path) != 0);
    for (const char *tmp = a.tmp_path; tmp != NULL; tmp = tmp == a.tmp_path ? b.tmp_path : NULL) {
        size_t prefix = strlen(path) + strlen(".tmp.");
        CHECK(strncmp(tmp, path, strlen(path)) == 0);
        CHECK(strncmp(tmp + strlen(path), ".tmp.", 5) == 0);
        CHECK(strlen(tmp) > prefix && strspn(tmp + prefix, "0123456789") == strlen(tmp + prefix));
        CHECK(fs_exists(tmp));
    }
    /* Nothing is published until commit; a discarded file leaves nothing. */
    CHECK(!fs_exists(path));
    fs_atomic_discard(&b);
    CHECK(b.fd == -1 && b.tmp_path == NULL);
    CHECK(write(a.fd, "new", 3) == 3);
    CHECK(fs_atomic_commit(&a, &err) == 0);
    cleanup_free char *text = NULL;
    CHECK(fs_read_file(path, &text, NULL, 100, &err) == 0);
    CHECK_STR_EQ(text, "new");
    check_only_entry(scratch, "x-rootfs.ext4.source");
    unlink(path);
}

static void test_failed_publish_removes_the_temp(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/occupied", scratch);
    CHECK(mkdir(path, 0700) == 0); /* a directory is in the way: rename must fail */
    char inside[160];
    snprintf(inside, sizeof inside, "%s/keep", path);
    struct shed_err err = {0};
    CHECK(fs_write_file_atomic(inside, "x", 1, 0600, &err) == 0);
    err = (struct shed_err){0};
    CHECK(fs_write_file_atomic(path, "data", 4, 0600, &err) == -1);
    CHECK(err.code == SHED_E_IO);
    CHECK_STR_CONTAINS(err.msg, "cannot rename");
    check_only_entry(scratch, "occupied");
    err = (struct shed_err){0};
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no-such-dir/file", scratch);
    CHECK(fs_write_file_atomic(missing, "data", 4, 0600, &err) == -1);
    CHECK(err.code == SHED_E_IO && shed_err_is_errno(&err, ENOENT));
    unlink(inside);
    rmdir(path);
}

/* ---- atomic hard links ------------------------------------------------------------------ */

struct linker_arg {
    const char *src, *dst;
    atomic_int *failed;
};

static void *linker_thread(void *arg)
{
    struct linker_arg *l = arg;
    for (int i = 0; i < 500; i++) {
        struct shed_err err = {0};
        if (fs_link_atomic(l->src, l->dst, &err) < 0) {
            fprintf(stderr, "  fs_link_atomic: %s\n", err.msg);
            atomic_fetch_add(l->failed, 1);
        }
    }
    return NULL;
}

static void test_concurrent_links_to_one_name_never_fail(void)
{
    char src[2][128], dst[128];
    struct shed_err err = {0};
    for (int i = 0; i < 2; i++) {
        snprintf(src[i], sizeof src[i], "%s/content-%d", scratch, i);
        CHECK(fs_write_file_atomic(src[i], i == 0 ? "zero" : "one", i == 0 ? 4 : 3, 0644, &err) ==
              0);
    }
    snprintf(dst, sizeof dst, "%s/vmlinux", scratch);
    atomic_int failed = 0;
    pthread_t threads[2];
    struct linker_arg args[2];
    for (int i = 0; i < 2; i++) {
        args[i] = (struct linker_arg){.src = src[i], .dst = dst, .failed = &failed};
        CHECK(pthread_create(&threads[i], NULL, linker_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    CHECK(atomic_load(&failed) == 0);
    struct stat linked, s0, s1;
    CHECK(stat(dst, &linked) == 0 && stat(src[0], &s0) == 0 && stat(src[1], &s1) == 0);
    CHECK(linked.st_ino == s0.st_ino || linked.st_ino == s1.st_ino);
    /* Linking again what is already there (rename(2) then does nothing) leaves no temp. */
    const char *current = linked.st_ino == s0.st_ino ? src[0] : src[1];
    CHECK(fs_link_atomic(current, dst, &err) == 0);
    char names[4096];
    CHECK(count_other_entries(scratch, NULL, names, sizeof names) == 3);
    unlink(dst);
    unlink(src[0]);
    unlink(src[1]);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_concurrent_writers_of_one_file_never_fail),
    CHECK_TEST(test_temp_name_is_unique_and_numbered),
    CHECK_TEST(test_failed_publish_removes_the_temp),
    CHECK_TEST(test_concurrent_links_to_one_name_never_fail),
};

int main(int argc, char **argv)
{
    make_scratch();
    int status = CHECK_MAIN(argc, argv, tests);
    rmdir(scratch);
    return status;
}
