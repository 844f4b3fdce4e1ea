/* clone_file on the file system of the test's temp dir (ext4 on CI: no reflinks, so the
 * fallback chain runs), plus its error paths. Reflink behaviour on XFS is covered by
 * test_clone_reflink.py, which needs root and loop devices. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "harness/check.h"
#include "runtime/clone.h"

#define WORKDIR_TEMPLATE "/var/tmp/shed-clone-test-XXXXXX"
static char workdir[] = WORKDIR_TEMPLATE;

static char *work_path(const char *name)
{
    return fs_path_join(workdir, name);
}

static void write_at(int fd, off_t offset, size_t len, unsigned char seed)
{
    unsigned char *buf = malloc(len);
    CHECK(buf != NULL);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(seed + i * 7 + i / 4096);
    CHECK(pwrite(fd, buf, len, offset) == (ssize_t)len);
    free(buf);
}

/* A 256 MiB sparse file with 3 MiB + 1 MiB + 4 KiB of data. */
static char *make_sparse_source(const char *name)
{
    char *path = work_path(name);
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 256LL << 20) == 0);
    write_at(fd, 0, 3 << 20, 1);
    write_at(fd, 128LL << 20, 1 << 20, 2);
    write_at(fd, (256LL << 20) - 4096, 4096, 3);
    CHECK(fsync(fd) == 0);
    return path;
}

static bool files_equal(const char *a, const char *b)
{
    cleanup_free char *cmd = str_printf("cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static long long allocated_bytes(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    return (long long)st.st_blocks * 512;
}

static bool on_ext4(const char *path)
{
    struct statfs sfs;
    return statfs(path, &sfs) == 0 && sfs.f_type == EXT4_SUPER_MAGIC;
}

static void test_fallback_copy_keeps_holes_and_content(void)
{
    cleanup_free char *src = make_sparse_source("sparse-src");
    cleanup_free char *dst = work_path("sparse-dst");
    struct shed_err err;
    enum clone_strategy strategy = CLONE_STRATEGY_NONE;
    CHECK(clone_file(src, dst, &strategy, &err) == 0);
    CHECK(strategy != CLONE_STRATEGY_NONE);
    if (on_ext4(workdir))
        CHECK(strategy == CLONE_STRATEGY_COPY_FILE_RANGE);
    CHECK(files_equal(src, dst));
    struct stat src_st, dst_st;
    CHECK(stat(src, &src_st) == 0 && stat(dst, &dst_st) == 0);
    CHECK(dst_st.st_size == src_st.st_size);
    CHECK((dst_st.st_mode & 0777) == 0600); /* private, whatever the source's 0640 */
    /* Only the source's data is allocated: about 4 MiB, not 256 MiB. */
    CHECK(allocated_bytes(dst) <= allocated_bytes(src));
    CHECK(allocated_bytes(dst) < 8LL << 20);
    unlink(src);
    unlink(dst);
}

static void test_empty_source_gives_empty_clone(void)
{
    cleanup_free char *src = work_path("empty-src");
    cleanup_free char *dst = work_path("empty-dst");
    cleanup_close int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    struct shed_err err;
    CHECK(clone_file(src, dst, NULL, &err) == 0);
    struct stat st;
    CHECK(stat(dst, &st) == 0 && st.st_size == 0);
    unlink(src);
    unlink(dst);
}

static void test_existing_destination_is_refused_and_left_alone(void)
{
    cleanup_free char *src = make_sparse_source("excl-src");
    cleanup_free char *dst = work_path("excl-dst");
    struct shed_err err;
    CHECK(fs_write_file_atomic(dst, "keep me", 7, 0644, &err) == 0);
    enum clone_strategy strategy = CLONE_STRATEGY_REFLINK;
    CHECK(clone_file(src, dst, &strategy, &err) == -1);
    CHECK(err.code == SHED_E_IO);
    CHECK_STR_CONTAINS(err.msg, "File exists");
    CHECK(strategy == CLONE_STRATEGY_NONE);
    cleanup_free char *text = NULL;
    CHECK(fs_read_file(dst, &text, NULL, 100, &err) == 0);
    CHECK_STR_EQ(text, "keep me");
    unlink(src);
    unlink(dst);
}

static void test_missing_source_creates_nothing(void)
{
    cleanup_free char *src = work_path("no-such-src");
    cleanup_free char *dst = work_path("no-such-dst");
    struct shed_err err;
    CHECK(clone_file(src, dst, NULL, &err) == -1);
    CHECK(err.code == SHED_E_IO && shed_err_is_errno(&err, ENOENT));
    CHECK_STR_CONTAINS(err.msg, "no-such-src");
    CHECK(!fs_exists(dst));
}

static void test_directory_source_is_refused(void)
{
    cleanup_free char *dst = work_path("dir-dst");
    struct shed_err err;
    CHECK(clone_file(workdir, dst, NULL, &err) == -1);
    CHECK_STR_CONTAINS(err.msg, "not a regular file");
    CHECK(!fs_exists(dst));
}

/* ENOSPC is a real failure, not a reason to try another strategy: it propagates and the
 * partial destination is removed. Needs root to mount a small tmpfs. */
static void test_full_destination_fails_and_removes_partial_copy(void)
{
    if (geteuid() != 0)
        CHECK_SKIP("mounting a tmpfs needs root");
    cleanup_free char *mnt = work_path("small-tmpfs");
    CHECK(mkdir(mnt, 0755) == 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") < 0) {
        int mount_errno = errno;
        rmdir(mnt);
        CHECK_SKIP("cannot mount a tmpfs: %s", strerror(mount_errno));
    }
    cleanup_free char *src = make_sparse_source("big-src");
    cleanup_free char *dst = fs_path_join(mnt, "dst");
    struct shed_err err;
    CHECK(clone_file(src, dst, NULL, &err) == -1);
    CHECK(err.code == SHED_E_NO_SPACE);
    CHECK_STR_CONTAINS(err.msg, "No space left on device");
    CHECK(!fs_exists(dst));
    CHECK(umount(mnt) == 0);
    rmdir(mnt);
    unlink(src);
}

static void test_strategy_names(void)
{
    CHECK_STR_EQ(clone_strategy_name(CLONE_STRATEGY_REFLINK), "reflink");
    CHECK_STR_EQ(clone_strategy_name(CLONE_STRATEGY_COPY_FILE_RANGE), "copy_file_range");
    CHECK_STR_EQ(clone_strategy_name(CLONE_STRATEGY_SPARSE_COPY), "sparse_copy");
    CHECK_STR_EQ(clone_strategy_name(CLONE_STRATEGY_NONE), "none");
}

/* Each test gets its own work directory. */
static void workdir_create(void)
{
    strcpy(workdir, WORKDIR_TEMPLATE);
    if (mkdtemp(workdir) == NULL)
        CHECK_FATAL("mkdtemp %s: %s", workdir, strerror(errno));
}

static void workdir_remove(void)
{
    rmdir(workdir);
}

static const struct check_test tests[] = {
    CHECK_TEST(test_fallback_copy_keeps_holes_and_content),
    CHECK_TEST(test_empty_source_gives_empty_clone),
    CHECK_TEST(test_existing_destination_is_refused_and_left_alone),
    CHECK_TEST(test_missing_source_creates_nothing),
    CHECK_TEST(test_directory_source_is_refused),
    CHECK_TEST(test_full_destination_fails_and_removes_partial_copy),
    CHECK_TEST(test_strategy_names),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]), workdir_create,
                      workdir_remove);
}
