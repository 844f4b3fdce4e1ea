/* Tests for imaged/ext4_writer: each builds an image through the public API, checks it
 * with the real `e2fsck -fn`, and reads it back with debugfs or libext2fs.
 *
 * One ctest entry per test (tests/harness/check.h: --list, or a test name). */
#include "harness/check.h"
#include "imaged/ext4_writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <ext2fs/ext2fs.h>
#include <ext2fs/ext3_extents.h>

#define MiB (1024ULL * 1024)
#define GiB (1024ULL * MiB)

/* ---- scratch files: one directory per test ---- */

static char scratch_dir[PATH_MAX];
static char image_path[PATH_MAX + 32];
static char mount_dir[PATH_MAX + 32];
static bool mounted;

static void scratch_cleanup(void)
{
    if (mounted)
        umount2(mount_dir, MNT_DETACH);
    mounted = false;
    if (scratch_dir[0] == '\0')
        return;
    unlink(image_path);
    rmdir(mount_dir);
    rmdir(scratch_dir);
    scratch_dir[0] = '\0';
}

static void scratch_setup(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(scratch_dir, sizeof(scratch_dir), "%s/test_ext4.XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(scratch_dir) == NULL)
        CHECK_FATAL("mkdtemp: %s", strerror(errno));
    snprintf(image_path, sizeof(image_path), "%s/image.ext4", scratch_dir);
    snprintf(mount_dir, sizeof(mount_dir), "%s/mnt", scratch_dir);
}

/* Runs argv, returns its exit status; *output gets stdout (and stderr when merge_stderr). */
static int run_argv(char *const argv[], bool merge_stderr, char **output)
{
    int pipefd[2];
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    pid_t pid;
    int status;

    if (buf == NULL || pipe(pipefd) < 0)
        CHECK_FATAL("pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        CHECK_FATAL("fork: %s", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(merge_stderr ? pipefd[1] : devnull, STDERR_FILENO);
        close(pipefd[0]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    for (;;) {
        ssize_t n;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                CHECK_FATAL("out of memory");
        }
        n = TEMP_FAILURE_RETRY(read(pipefd[0], buf + len, cap - len - 1));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(pipefd[0]);
    if (TEMP_FAILURE_RETRY(waitpid(pid, &status, 0)) < 0)
        CHECK_FATAL("waitpid: %s", strerror(errno));
    if (output != NULL)
        *output = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void expect_fsck_clean(void)
{
    char *argv[] = {"e2fsck", "-fn", image_path, NULL};
    char *output = NULL;
    int status = run_argv(argv, true, &output);

    if (status != 0 || strstr(output, "WARNING") != NULL) {
        CHECK_FAIL("e2fsck -fn exited %d:\n%s", status, output);
    }
    free(output);
}

/* debugfs -R request image; stdout only (debugfs prints its banner on stderr). */
static char *debugfs(const char *fmt, ...)
{
    char request[8192];
    char *argv[] = {"debugfs", "-R", request, image_path, NULL};
    char *output = NULL;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(request, sizeof(request), fmt, ap);
    va_end(ap);
    run_argv(argv, false, &output);
    return output;
}

/* ---- building images ---- */

static void must(int ret, const struct shed_err *err, const char *what)
{
    if (ret != 0)
        CHECK_FATAL("%s failed: %s", what, err->msg);
}

static struct ext4_writer *image_create(uint64_t size)
{
    struct ext4_writer_opts opts = {.size_bytes = size};
    struct ext4_writer *writer = NULL;
    struct shed_err err = {0};

    must(ext4_writer_create(image_path, &opts, &writer, &err), &err, "ext4_writer_create");
    return writer;
}

static void image_finish(struct ext4_writer *writer)
{
    struct shed_err err = {0};

    must(ext4_writer_finish(writer, &err), &err, "ext4_writer_finish");
}

static struct ext4_meta meta_of(mode_t mode, uint32_t uid, uint32_t gid, int64_t mtime)
{
    return (struct ext4_meta){.mode = mode, .uid = uid, .gid = gid, .mtime = {mtime, 0}};
}

static void put_dir(struct ext4_writer *w, const char *path, mode_t perm)
{
    struct ext4_meta meta = meta_of(S_IFDIR | perm, 0, 0, 1600000000);
    struct shed_err err = {0};

    must(ext4_writer_mkdir(w, path, &meta, &err), &err, path);
}

/* Writes data in 1000-byte pieces so blocks are assembled across unaligned writes. */
static void put_file_meta(struct ext4_writer *w, const char *path, const struct ext4_meta *meta,
                          const void *data, size_t len)
{
    struct shed_err err = {0};
    struct ext4_file *file;

    must(ext4_writer_file_begin(w, path, meta, len, &file, &err), &err, path);
    for (size_t off = 0; off < len; off += 1000) {
        size_t n = len - off < 1000 ? len - off : 1000;
        must(ext4_writer_file_write(file, off, (const char *)data + off, n, &err), &err, path);
    }
    must(ext4_writer_file_end(file, &err), &err, path);
}

static void put_file(struct ext4_writer *w, const char *path, const char *content)
{
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);

    put_file_meta(w, path, &meta, content, strlen(content));
}

static void put_symlink(struct ext4_writer *w, const char *path, const char *target)
{
    struct ext4_meta meta = meta_of(S_IFLNK | 0777, 0, 0, 1600000000);
    struct shed_err err = {0};

    must(ext4_writer_symlink(w, path, &meta, target, &err), &err, path);
}

static void put_hardlink(struct ext4_writer *w, const char *path, const char *target)
{
    struct shed_err err = {0};

    must(ext4_writer_hardlink(w, path, target, &err), &err, path);
}

static void remove_path(struct ext4_writer *w, const char *path, bool lower_only)
{
    struct shed_err err = {0};

    must(ext4_writer_remove(w, path, lower_only, &err), &err, path);
}

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16) | 1; /* never zero: no accidental holes */
    }
}

/* ---- reading images back with libext2fs ---- */

static ext2_filsys fs_open(void)
{
    ext2_filsys fs;
    errcode_t code = ext2fs_open(image_path, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);

    if (code)
        CHECK_FATAL("ext2fs_open %s: error %ld", image_path, (long)code);
    return fs;
}

static ext2_ino_t fs_lookup(ext2_filsys fs, const char *path)
{
    ext2_ino_t ino = 0;

    if (ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino) != 0)
        return 0;
    return ino;
}

static struct ext2_inode_large fs_inode(ext2_filsys fs, ext2_ino_t ino)
{
    struct ext2_inode_large inode;
    errcode_t code = ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)&inode, sizeof(inode));

    if (code)
        CHECK_FATAL("reading inode %u: error %ld", ino, (long)code);
    return inode;
}

static uint8_t *fs_read_file(ext2_filsys fs, ext2_ino_t ino, uint64_t *len)
{
    ext2_file_t file;
    uint8_t *buf;
    unsigned got;
    uint64_t size, done = 0;

    if (ext2fs_file_open(fs, ino, 0, &file) != 0)
        CHECK_FATAL("ext2fs_file_open %u", ino);
    size = ext2fs_file_get_size(file);
    buf = malloc(size + 1);
    if (buf == NULL)
        CHECK_FATAL("out of memory");
    while (done < size) {
        unsigned want = size - done > (1u << 20) ? (1u << 20) : (unsigned)(size - done);
        if (ext2fs_file_read(file, buf + done, want, &got) != 0 || got == 0)
            CHECK_FATAL("ext2fs_file_read %u", ino);
        done += got;
    }
    ext2fs_file_close(file);
    buf[size] = '\0';
    *len = size;
    return buf;
}

static int64_t time_decode(uint32_t seconds, uint32_t extra)
{
    return (int64_t)(int32_t)seconds + ((int64_t)(extra & EXT4_EPOCH_MASK) << 32);
}

static uint64_t blocks_of(ext2_filsys fs, const struct ext2_inode_large *inode)
{
    return ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *)inode) / (fs->blocksize / 512);
}

static uint32_t owner_uid(const struct ext2_inode_large *inode)
{
    return inode->i_uid | ((uint32_t)inode->osd2.linux2.l_i_uid_high << 16);
}

static uint32_t owner_gid(const struct ext2_inode_large *inode)
{
    return inode->i_gid | ((uint32_t)inode->osd2.linux2.l_i_gid_high << 16);
}

static uint64_t size_of(const struct ext2_inode_large *inode)
{
    return inode->i_size | ((uint64_t)inode->i_size_high << 32);
}

/* ---- tests: the filesystem ---- */

static void test_empty_image_has_ext4_features_and_passes_fsck(void)
{
    static const char *const features[] = {"has_journal",  "ext_attr",  "dir_index", "filetype",
                                           "extent",       "64bit",     "flex_bg",   "sparse_super",
                                           "large_file",   "huge_file", "dir_nlink", "extra_isize",
                                           "metadata_csum"};
    char *argv[] = {"dumpe2fs", "-h", image_path, NULL};
    char *super = NULL;
    ext2_filsys fs;

    image_finish(image_create(64 * MiB));
    expect_fsck_clean();
    CHECK_EQ(run_argv(argv, false, &super), 0);
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
        CHECK_STR_CONTAINS(super, features[i]);
    CHECK_STR_CONTAINS(super, "Inode size:\t          256");
    CHECK_STR_CONTAINS(super, "Journal inode:            8");
    CHECK_STR_CONTAINS(super, "Total journal blocks:");
    free(super);

    fs = fs_open();
    CHECK_EQ(ext2fs_blocks_count(fs->super), 64 * MiB / 4096);
    struct ext2_inode_large root = fs_inode(fs, EXT2_ROOT_INO);
    CHECK_EQ(root.i_mode, S_IFDIR | 0755);
    CHECK_EQ(root.i_links_count, 3);
    ext2_ino_t lost_found_ino = fs_lookup(fs, "lost+found");
    CHECK_EQ(lost_found_ino, 11);
    struct ext2_inode_large lost_found = fs_inode(fs, lost_found_ino);
    CHECK_EQ(lost_found.i_mode, S_IFDIR | 0700);
    CHECK_EQ(size_of(&lost_found), 16384);
    CHECK_EQ(lost_found.i_mtime, root.i_mtime);
    ext2fs_close_free(&fs);
}

static void test_each_image_gets_fresh_uuid_and_hash_seed(void)
{
    uint8_t uuid[16], seed[16];
    ext2_filsys fs;

    image_finish(image_create(32 * MiB));
    fs = fs_open();
    memcpy(uuid, fs->super->s_uuid, 16);
    memcpy(seed, fs->super->s_hash_seed, 16);
    ext2fs_close_free(&fs);
    unlink(image_path);

    image_finish(image_create(32 * MiB));
    fs = fs_open();
    CHECK(memcmp(uuid, fs->super->s_uuid, 16) != 0);
    CHECK(memcmp(seed, fs->super->s_hash_seed, 16) != 0);
    CHECK_EQ(fs->super->s_uuid[6] >> 4, 4); /* random (version 4) UUID */
    ext2fs_close_free(&fs);
}

static void test_create_refuses_an_existing_file(void)
{
    struct ext4_writer_opts opts = {.size_bytes = 32 * MiB};
    struct ext4_writer *writer = NULL;
    struct shed_err err = {0};
    struct stat st;

    image_finish(image_create(32 * MiB));
    CHECK(ext4_writer_create(image_path, &opts, &writer, &err) < 0);
    CHECK_EQ(err.code, SHED_E_IO);
    CHECK_STR_CONTAINS(err.msg, "File exists");
    CHECK(stat(image_path, &st) == 0 && st.st_size == (off_t)(32 * MiB));
    expect_fsck_clean(); /* the existing image was left alone */
}

static void test_inode_count_option_is_honoured(void)
{
    struct ext4_writer_opts opts = {.size_bytes = 256 * MiB, .inode_count = 5000};
    struct ext4_writer *writer = NULL;
    struct shed_err err = {0};
    ext2_filsys fs;

    must(ext4_writer_create(image_path, &opts, &writer, &err), &err, "create");
    image_finish(writer);
    expect_fsck_clean();
    fs = fs_open();
    CHECK(fs->super->s_inodes_count >= 5000);
    CHECK(fs->super->s_inodes_count < 5000 + 8 * fs->group_desc_count * 16);
    ext2fs_close_free(&fs);
}

/* ---- tests: root directory ---- */

static void test_root_times_come_from_mkdir_of_root(void)
{
    struct ext4_meta meta = meta_of(S_IFDIR | 0750, 0, 0, -5);
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    ext2_filsys fs;

    meta.mtime.nsec = 42;
    put_file(w, "newer", "x"); /* mtime 1600000000 */
    must(ext4_writer_mkdir(w, "", &meta, &err), &err, "mkdir root");
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    struct ext2_inode_large root = fs_inode(fs, EXT2_ROOT_INO);
    CHECK_EQ(root.i_mode, S_IFDIR | 0750);
    CHECK_EQ(time_decode(root.i_mtime, root.i_mtime_extra), -5);
    CHECK_EQ(root.i_mtime_extra >> 2, 42);
    struct ext2_inode_large lost_found = fs_inode(fs, fs_lookup(fs, "lost+found"));
    CHECK_EQ(time_decode(lost_found.i_mtime, lost_found.i_mtime_extra), -5);
    ext2fs_close_free(&fs);
}

static void test_root_times_default_to_newest_entry(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct ext4_meta meta;
    ext2_filsys fs;

    meta = meta_of(S_IFREG | 0644, 0, 0, 100);
    put_file_meta(w, "a", &meta, "a", 1);
    meta = meta_of(S_IFREG | 0644, 0, 0, 300);
    put_file_meta(w, "b", &meta, "b", 1);
    meta = meta_of(S_IFREG | 0644, 0, 0, 200);
    put_file_meta(w, "c", &meta, "c", 1);
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    struct ext2_inode_large root = fs_inode(fs, EXT2_ROOT_INO);
    CHECK_EQ(time_decode(root.i_mtime, root.i_mtime_extra), 300);
    CHECK_EQ(time_decode(root.i_ctime, root.i_ctime_extra), 300);
    ext2fs_close_free(&fs);
}

/* ---- tests: regular files ---- */

static void test_regular_file_contents_round_trip(void)
{
    static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 1048576 + 123};
    struct ext4_writer *w = image_create(64 * MiB);
    uint8_t *data = malloc(2 * MiB);
    ext2_filsys fs;
    char path[64];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
        fill_pattern(data, sizes[i], (uint32_t)i);
        snprintf(path, sizeof(path), "files/f%zu", i);
        put_file_meta(w, path, &meta, data, sizes[i]);
    }
    /* One file written in a single aligned call (the whole-block path). */
    {
        struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
        struct shed_err err = {0};
        struct ext4_file *file;
        fill_pattern(data, 2 * MiB, 99);
        must(ext4_writer_file_begin(w, "files/one-write", &meta, 2 * MiB, &file, &err), &err,
             "begin");
        must(ext4_writer_file_write(file, 0, data, 2 * MiB, &err), &err, "write");
        must(ext4_writer_file_end(file, &err), &err, "end");
    }
    put_file(w, "hello.txt", "hello, world\n");
    image_finish(w);
    expect_fsck_clean();

    char *cat = debugfs("cat /hello.txt");
    CHECK(cat != NULL && strcmp(cat, "hello, world\n") == 0);
    free(cat);

    fs = fs_open();
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t len;
        snprintf(path, sizeof(path), "files/f%zu", i);
        ext2_ino_t ino = fs_lookup(fs, path);
        CHECK(ino != 0);
        if (ino == 0)
            continue;
        struct ext2_inode_large inode = fs_inode(fs, ino);
        CHECK_EQ(inode.i_mode, S_IFREG | 0644);
        CHECK(inode.i_flags & EXT4_EXTENTS_FL);
        CHECK_EQ(blocks_of(fs, &inode), (sizes[i] + 4095) / 4096);
        uint8_t *read = fs_read_file(fs, ino, &len);
        fill_pattern(data, sizes[i], (uint32_t)i);
        CHECK_EQ(len, sizes[i]);
        CHECK(len == sizes[i] && memcmp(read, data, len) == 0);
        free(read);
    }
    {
        uint64_t len;
        uint8_t *read = fs_read_file(fs, fs_lookup(fs, "files/one-write"), &len);
        fill_pattern(data, 2 * MiB, 99);
        CHECK(len == 2 * MiB && memcmp(read, data, len) == 0);
        free(read);
    }
    ext2fs_close_free(&fs);
    free(data);
}

static void test_sparse_file_allocates_only_data_blocks(void)
{
    struct ext4_writer *w = image_create(64 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    const uint64_t size = 10 * MiB;
    uint8_t *expected = calloc(1, size);
    uint8_t *zeros = calloc(1, MiB);
    struct shed_err err = {0};
    struct ext4_file *file;
    uint64_t len;
    ext2_filsys fs;

    must(ext4_writer_file_begin(w, "sparse", &meta, size, &file, &err), &err, "begin");
    fill_pattern(expected, 4096, 1);
    must(ext4_writer_file_write(file, 0, expected, 4096, &err), &err, "data");
    /* Zeros written out explicitly become holes as well. */
    must(ext4_writer_file_write(file, 4096, zeros, MiB, &err), &err, "zeros");
    fill_pattern(expected + 5 * MiB + 100, 10, 2);
    must(ext4_writer_file_write(file, 5 * MiB + 100, expected + 5 * MiB + 100, 10, &err), &err,
         "middle");
    expected[size - 1] = 'z';
    must(ext4_writer_file_write(file, size - 1, "z", 1, &err), &err, "last byte");
    must(ext4_writer_file_end(file, &err), &err, "end");
    image_finish(w);
    expect_fsck_clean();

    fs = fs_open();
    ext2_ino_t ino = fs_lookup(fs, "sparse");
    struct ext2_inode_large inode = fs_inode(fs, ino);
    CHECK_EQ(size_of(&inode), size);
    CHECK_EQ(blocks_of(fs, &inode), 3);
    uint8_t *read = fs_read_file(fs, ino, &len);
    CHECK(len == size && memcmp(read, expected, size) == 0);
    free(read);
    ext2fs_close_free(&fs);
    free(expected);
    free(zeros);
}

static void test_5gib_sparse_file_is_fast_and_tiny(void)
{
    struct ext4_writer *w = image_create(1 * GiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    const uint64_t size = 5 * GiB;
    uint8_t block[4096], read[4096];
    struct shed_err err = {0};
    struct ext4_file *file;
    struct stat st;
    unsigned got;
    ext2_file_t handle;
    ext2_filsys fs;

    fill_pattern(block, sizeof(block), 5);
    must(ext4_writer_file_begin(w, "huge.img", &meta, size, &file, &err), &err, "begin");
    must(ext4_writer_file_write(file, 0, block, 4096, &err), &err, "head");
    must(ext4_writer_file_write(file, 4 * GiB + 4096, block, 4096, &err), &err, "past 4 GiB");
    must(ext4_writer_file_write(file, size - 1, "!", 1, &err), &err, "tail");
    must(ext4_writer_file_end(file, &err), &err, "end");
    image_finish(w);
    expect_fsck_clean();

    CHECK(stat(image_path, &st) == 0);
    CHECK((uint64_t)st.st_blocks * 512 < 200 * MiB); /* journal + metadata + 3 blocks */
    fs = fs_open();
    ext2_ino_t ino = fs_lookup(fs, "huge.img");
    struct ext2_inode_large inode = fs_inode(fs, ino);
    CHECK_EQ(size_of(&inode), size);
    CHECK_EQ(blocks_of(fs, &inode), 3);
    CHECK(ext2fs_file_open(fs, ino, 0, &handle) == 0);
    CHECK(ext2fs_file_llseek(handle, 4 * GiB + 4096, EXT2_SEEK_SET, NULL) == 0);
    CHECK(ext2fs_file_read(handle, read, 4096, &got) == 0 && got == 4096);
    CHECK(memcmp(read, block, 4096) == 0);
    CHECK(ext2fs_file_llseek(handle, 2 * GiB, EXT2_SEEK_SET, NULL) == 0);
    CHECK(ext2fs_file_read(handle, read, 4096, &got) == 0 && got == 4096);
    CHECK(read[0] == 0 && memcmp(read, read + 1, 4095) == 0);
    CHECK(ext2fs_file_llseek(handle, size - 1, EXT2_SEEK_SET, NULL) == 0);
    CHECK(ext2fs_file_read(handle, read, 1, &got) == 0 && got == 1 && read[0] == '!');
    ext2fs_file_close(handle);
    ext2fs_close_free(&fs);
}

/* Every other block a hole: one extent per data block, more than fit in the inode. */
static void write_striped_file(struct ext4_writer *w, const char *path, unsigned data_blocks)
{
    struct ext4_meta meta = meta_of(S_IFREG | 0600, 0, 0, 1600000000);
    uint64_t size = (uint64_t)data_blocks * 2 * 4096;
    struct shed_err err = {0};
    struct ext4_file *file;
    uint8_t block[4096];

    must(ext4_writer_file_begin(w, path, &meta, size, &file, &err), &err, path);
    for (unsigned i = 0; i < data_blocks; i++) {
        fill_pattern(block, sizeof(block), i);
        must(ext4_writer_file_write(file, (uint64_t)i * 2 * 4096, block, 4096, &err), &err, path);
    }
    must(ext4_writer_file_end(file, &err), &err, path);
}

static void check_striped_file(ext2_filsys fs, const char *path, unsigned data_blocks,
                               unsigned expected_depth)
{
    uint8_t block[4096];
    uint64_t len;
    ext2_ino_t ino = fs_lookup(fs, path);
    struct ext2_inode_large inode = fs_inode(fs, ino);
    const struct ext3_extent_header *header = (const void *)inode.i_block;

    CHECK_EQ(header->eh_depth, expected_depth);
    uint8_t *read = fs_read_file(fs, ino, &len);
    CHECK_EQ(len, (uint64_t)data_blocks * 2 * 4096);
    for (unsigned i = 0; i < data_blocks && len == (uint64_t)data_blocks * 8192; i++) {
        fill_pattern(block, sizeof(block), i);
        if (memcmp(read + (uint64_t)i * 8192, block, 4096) != 0 ||
            read[(uint64_t)i * 8192 + 4096] != 0) {
            CHECK_FAIL("%s: block %u differs", path, i);
            break;
        }
    }
    free(read);
}

static void test_fragmented_file_gets_an_extent_tree(void)
{
    struct ext4_writer *w = image_create(128 * MiB);
    ext2_filsys fs;

    write_striped_file(w, "four", 4);
    write_striped_file(w, "depth1", 1000);
    write_striped_file(w, "depth2", 3000);
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    check_striped_file(fs, "four", 4, 0);
    check_striped_file(fs, "depth1", 1000, 1);
    check_striped_file(fs, "depth2", 3000, 2);
    ext2fs_close_free(&fs);
}

/* ---- tests: attributes ---- */

static void test_modes_and_32bit_owners_are_preserved(void)
{
    static const struct {
        const char *path;
        mode_t mode;
        uint32_t uid, gid;
    } entries[] = {
        {"suid", S_IFREG | 04755, 0, 0},
        {"sgid", S_IFREG | 02711, 0, 50},
        {"private", S_IFREG | 0600, 100000, 100001},
        {"tmp", S_IFDIR | 01777, 0, 0},
        {"shared", S_IFDIR | 02770, 65536, 4294967294u},
    };
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    ext2_filsys fs;

    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        struct ext4_meta meta =
            meta_of(entries[i].mode, entries[i].uid, entries[i].gid, 1600000000);
        if (S_ISDIR(entries[i].mode))
            must(ext4_writer_mkdir(w, entries[i].path, &meta, &err), &err, entries[i].path);
        else
            put_file_meta(w, entries[i].path, &meta, "x", 1);
    }
    image_finish(w);
    expect_fsck_clean();

    char *stat = debugfs("stat /private");
    CHECK_STR_CONTAINS(stat, "User: 100000   Group: 100001");
    CHECK_STR_CONTAINS(stat, "Mode:  0600");
    free(stat);
    fs = fs_open();
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, entries[i].path));
        CHECK_EQ(inode.i_mode, entries[i].mode);
        CHECK_EQ(owner_uid(&inode), entries[i].uid);
        CHECK_EQ(owner_gid(&inode), entries[i].gid);
    }
    ext2fs_close_free(&fs);
}

static void test_timestamps_before_1970_and_after_2038_round_trip(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 0);
    ext2_filsys fs;

    meta.mtime = (struct ext4_timestamp){-1000000000, 123456789}; /* 1938-04-24 */
    meta.has_atime = true;
    meta.atime = (struct ext4_timestamp){4102444800LL, 5}; /* 2100-01-01 */
    meta.has_ctime = true;
    meta.ctime = (struct ext4_timestamp){2147483648LL + 10, 999999999}; /* 2038-01-19 */
    put_file_meta(w, "timeless", &meta, "t", 1);
    meta = meta_of(S_IFREG | 0644, 0, 0, 0); /* exactly the epoch: must not become "now" */
    put_file_meta(w, "epoch", &meta, "e", 1);
    image_finish(w);
    expect_fsck_clean();

    char *stat = debugfs("stat /timeless");
    CHECK_STR_CONTAINS(stat, "1938");
    CHECK_STR_CONTAINS(stat, "2100");
    CHECK_STR_CONTAINS(stat, "2038");
    free(stat);
    fs = fs_open();
    struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, "timeless"));
    CHECK_EQ(time_decode(inode.i_mtime, inode.i_mtime_extra), -1000000000);
    CHECK_EQ(inode.i_mtime_extra >> 2, 123456789);
    CHECK_EQ(time_decode(inode.i_atime, inode.i_atime_extra), 4102444800LL);
    CHECK_EQ(inode.i_atime_extra >> 2, 5);
    CHECK_EQ(time_decode(inode.i_ctime, inode.i_ctime_extra), 2147483648LL + 10);
    CHECK_EQ(inode.i_ctime_extra >> 2, 999999999);
    inode = fs_inode(fs, fs_lookup(fs, "epoch"));
    CHECK_EQ(time_decode(inode.i_mtime, inode.i_mtime_extra), 0);
    CHECK_EQ(time_decode(inode.i_atime, inode.i_atime_extra), 0);
    ext2fs_close_free(&fs);
}

static void test_fast_and_slow_symlinks(void)
{
    char target59[60], target60[61], target4095[4096];
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    struct ext4_meta meta = meta_of(S_IFLNK | 0777, 0, 0, 1600000000);
    ext2_filsys fs;
    uint64_t len;

    memset(target59, 'a', 59), target59[59] = '\0';
    memset(target60, 'b', 60), target60[60] = '\0';
    for (int i = 0; i < 4095; i++)
        target4095[i] = "abc/"[i % 4];
    target4095[4095] = '\0';
    put_symlink(w, "fast", target59);
    put_symlink(w, "slow", target60);
    put_symlink(w, "longest", target4095);
    put_symlink(w, "etc/alternatives/x", "/usr/bin/x");
    CHECK(ext4_writer_symlink(w, "empty", &meta, "", &err) < 0);
    CHECK_EQ(err.code, SHED_E_INVALID_IMAGE);
    image_finish(w);
    expect_fsck_clean();

    char *stat = debugfs("stat /fast");
    CHECK_STR_CONTAINS(stat, "Fast link dest: \"aaaaaaaaaa");
    free(stat);
    fs = fs_open();
    struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, "fast"));
    CHECK_EQ(inode.i_mode, S_IFLNK | 0777);
    CHECK_EQ(size_of(&inode), 59);
    CHECK_EQ(blocks_of(fs, &inode), 0);
    CHECK(memcmp(inode.i_block, target59, 59) == 0);
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "longest" : "slow";
        const char *target = i ? target4095 : target60;
        ext2_ino_t ino = fs_lookup(fs, name);
        inode = fs_inode(fs, ino);
        CHECK_EQ(size_of(&inode), strlen(target));
        CHECK_EQ(blocks_of(fs, &inode), 1);
        uint8_t *read = fs_read_file(fs, ino, &len);
        CHECK(len == strlen(target) && memcmp(read, target, len) == 0);
        free(read);
    }
    ext2fs_close_free(&fs);
}

static void test_device_nodes_and_fifos(void)
{
    static const struct {
        const char *path;
        mode_t mode;
        uint32_t major, minor;
    } nodes[] = {
        {"dev/null", S_IFCHR | 0666, 1, 3},
        {"dev/sda", S_IFBLK | 0660, 8, 0},
        {"dev/nvme", S_IFBLK | 0600, 259, 300000},
        {"dev/initctl", S_IFIFO | 0600, 0, 0},
    };
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    ext2_filsys fs;

    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        struct ext4_meta meta = meta_of(nodes[i].mode, 0, 6, 1600000000);
        meta.rdev_major = nodes[i].major;
        meta.rdev_minor = nodes[i].minor;
        must(ext4_writer_mknod(w, nodes[i].path, &meta, &err), &err, nodes[i].path);
    }
    image_finish(w);
    expect_fsck_clean();

    char *stat = debugfs("stat /dev/null");
    CHECK_STR_CONTAINS(stat, "Type: character special");
    CHECK_STR_CONTAINS(stat, "Device major/minor number: 01:03");
    free(stat);
    stat = debugfs("stat /dev/nvme");
    CHECK_STR_CONTAINS(stat, "Device major/minor number: 259:300000");
    free(stat);
    fs = fs_open();
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, nodes[i].path));
        uint32_t major = nodes[i].major, minor = nodes[i].minor;
        CHECK_EQ(inode.i_mode, nodes[i].mode);
        CHECK_EQ(owner_gid(&inode), 6);
        if (S_ISFIFO(nodes[i].mode)) {
            CHECK_EQ(inode.i_block[0], 0);
            CHECK_EQ(inode.i_block[1], 0);
        } else if (major < 256 && minor < 256) {
            CHECK_EQ(inode.i_block[0], (major << 8) | minor);
        } else {
            CHECK_EQ(inode.i_block[0], 0);
            CHECK_EQ(inode.i_block[1], (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12));
        }
    }
    ext2fs_close_free(&fs);
}

/* 12 bits of major and 20 of minor fit; one more would be stored as another device. */
static void test_device_numbers_out_of_range_are_refused(void)
{
    static const struct {
        uint32_t major, minor;
    } refused[] = {{4096, 0}, {0, 0x100000}, {UINT32_MAX, 1}};
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    struct ext4_meta meta = meta_of(S_IFCHR | 0600, 0, 0, 1600000000);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        meta.rdev_major = refused[i].major;
        meta.rdev_minor = refused[i].minor;
        CHECK(ext4_writer_mknod(w, "dev/bad", &meta, &err) == -1);
        CHECK(err.code == SHED_E_INVALID_IMAGE);
        CHECK_STR_CONTAINS(err.msg, "out of range");
    }
    meta.rdev_major = 4095;
    meta.rdev_minor = 0xfffff;
    must(ext4_writer_mknod(w, "dev/largest", &meta, &err), &err, "dev/largest");
    image_finish(w);
    expect_fsck_clean();
    char *stat = debugfs("stat /dev/largest");
    CHECK_STR_CONTAINS(stat, "Device major/minor number: 4095:1048575");
    free(stat);
    char *listing = debugfs("ls /dev");
    CHECK(strstr(listing, "bad") == NULL);
    free(listing);
}

static void test_extended_attributes_round_trip(void)
{
    /* VFS_CAP_REVISION_2 with cap_net_bind_service permitted + effective. */
    static const uint8_t capability[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x04};
    static const char selinux[] = "system_u:object_r:bin_t:s0";
    char *big = malloc(3072);
    struct ext4_writer *w = image_create(32 * MiB);
    ext2_filsys fs;

    for (int i = 0; i < 3072; i++)
        big[i] = (char)('A' + i % 26);
    struct ext4_xattr file_xattrs[] = {
        {"security.capability", capability, sizeof(capability)},
        {"user.comment", "hello", 5},
        {"trusted.overlay.opaque", "y", 1},
        {"security.selinux", selinux, sizeof(selinux)},
    };
    struct ext4_xattr big_xattrs[] = {{"user.big", big, 3072}};
    struct ext4_meta meta = meta_of(S_IFREG | 0755, 0, 0, 1600000000);
    meta.xattrs = file_xattrs;
    meta.xattr_count = 4;
    put_file_meta(w, "usr/bin/ping", &meta, "ELF", 3);
    meta.xattrs = big_xattrs;
    meta.xattr_count = 1;
    put_file_meta(w, "big", &meta, "x", 1);
    meta = meta_of(S_IFDIR | 0755, 0, 0, 1600000000);
    meta.xattrs = file_xattrs + 1;
    meta.xattr_count = 1;
    struct shed_err err = {0};
    must(ext4_writer_mkdir(w, "labelled", &meta, &err), &err, "mkdir");
    image_finish(w);
    expect_fsck_clean();

    char *list = debugfs("ea_list /usr/bin/ping");
    CHECK_STR_CONTAINS(list, "user.comment");
    CHECK_STR_CONTAINS(list, "security.capability");
    free(list);
    fs = fs_open();
    struct {
        const char *path;
        struct ext4_xattr *xattrs;
        size_t count;
    } expect[] = {
        {"usr/bin/ping", file_xattrs, 4}, {"big", big_xattrs, 1}, {"labelled", file_xattrs + 1, 1}};
    for (size_t e = 0; e < 3; e++) {
        struct ext2_xattr_handle *handle;
        size_t count = 0;
        ext2_ino_t ino = fs_lookup(fs, expect[e].path);
        CHECK(ext2fs_xattrs_open(fs, ino, &handle) == 0);
        CHECK(ext2fs_xattrs_read(handle) == 0);
        CHECK(ext2fs_xattrs_count(handle, &count) == 0 && count == expect[e].count);
        for (size_t i = 0; i < expect[e].count; i++) {
            void *value = NULL;
            size_t len = 0;
            CHECK(ext2fs_xattr_get(handle, expect[e].xattrs[i].name, &value, &len) == 0);
            CHECK(len == expect[e].xattrs[i].len &&
                  memcmp(value, expect[e].xattrs[i].value, len) == 0);
            free(value);
        }
        ext2fs_xattrs_close(&handle);
    }
    /* 3 KiB does not fit in the inode body: it lives in an external xattr block. */
    struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, "big"));
    CHECK(ext2fs_file_acl_block(fs, (struct ext2_inode *)&inode) != 0);
    ext2fs_close_free(&fs);
    free(big);
}

/* ---- tests: hardlinks and removal ---- */

static void test_hardlinks_share_one_inode(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    ext2_filsys fs;

    put_file(w, "usr/bin/perl", "#!perl\n");
    put_hardlink(w, "usr/bin/perl5.36", "usr/bin/perl");
    put_hardlink(w, "other/perl", "usr/bin/perl");
    image_finish(w);
    expect_fsck_clean();

    char *stat = debugfs("stat /other/perl");
    CHECK_STR_CONTAINS(stat, "Links: 3");
    free(stat);
    fs = fs_open();
    ext2_ino_t ino = fs_lookup(fs, "usr/bin/perl");
    CHECK(ino != 0);
    CHECK_EQ(fs_lookup(fs, "usr/bin/perl5.36"), ino);
    CHECK_EQ(fs_lookup(fs, "other/perl"), ino);
    CHECK_EQ(fs_inode(fs, ino).i_links_count, 3);
    ext2fs_close_free(&fs);
}

static void test_hardlink_survives_removal_of_first_name(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    uint64_t len;
    ext2_filsys fs;

    put_file(w, "lib/original", "lower content\n");
    put_hardlink(w, "lib/link", "lib/original");
    ext4_writer_set_layer(w, 1);
    remove_path(w, "lib/original", true); /* an OCI whiteout of the link's target */
    image_finish(w);
    expect_fsck_clean();

    char *cat = debugfs("cat /lib/link");
    CHECK(cat != NULL && strcmp(cat, "lower content\n") == 0);
    free(cat);
    fs = fs_open();
    CHECK_EQ(fs_lookup(fs, "lib/original"), 0);
    ext2_ino_t ino = fs_lookup(fs, "lib/link");
    CHECK_EQ(fs_inode(fs, ino).i_links_count, 1);
    uint8_t *read = fs_read_file(fs, ino, &len);
    CHECK(len == 14 && memcmp(read, "lower content\n", 14) == 0);
    free(read);
    ext2fs_close_free(&fs);
}

static void test_removing_last_name_frees_inode_and_blocks(void)
{
    struct ext4_writer *w = image_create(64 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    uint8_t *data = malloc(4 * MiB);
    ext2_filsys fs;
    blk64_t free_before;
    uint32_t free_inodes_before;

    image_finish(w);
    fs = fs_open();
    free_before = ext2fs_free_blocks_count(fs->super);
    free_inodes_before = fs->super->s_free_inodes_count;
    ext2fs_close_free(&fs);
    unlink(image_path);

    w = image_create(64 * MiB);
    fill_pattern(data, 4 * MiB, 7);
    put_file_meta(w, "tree/big", &meta, data, 4 * MiB);
    put_file(w, "tree/sub/small", "small");
    put_hardlink(w, "tree/sub/link", "tree/big");
    remove_path(w, "tree", false);
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    CHECK_EQ(fs_lookup(fs, "tree"), 0);
    CHECK_EQ(ext2fs_free_blocks_count(fs->super), free_before);
    CHECK_EQ(fs->super->s_free_inodes_count, free_inodes_before);
    ext2fs_close_free(&fs);
    free(data);
}

/* ---- tests: names, paths, directories ---- */

static void test_255_byte_names_and_4000_byte_paths(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    char name[257], path[4100];
    struct shed_err err = {0};
    struct ext4_file *file;
    size_t len = 0;
    ext2_filsys fs;

    memset(name, 'n', 255);
    name[255] = '\0';
    put_file(w, name, "long name");
    while (len < 3790) {
        len += (size_t)snprintf(path + len, sizeof(path) - len, "%0199d/", (int)len);
    }
    memset(path + len, 'p', 4000 - len);
    path[4000] = '\0';
    put_file(w, path, "deep");
    memset(name, 'x', 256);
    name[256] = '\0';
    CHECK(ext4_writer_file_begin(w, name, &meta, 0, &file, &err) < 0);
    CHECK_EQ(err.code, SHED_E_INVALID_IMAGE);
    image_finish(w);
    expect_fsck_clean();

    fs = fs_open();
    memset(name, 'n', 255);
    name[255] = '\0';
    ext2_ino_t ino = fs_lookup(fs, name);
    CHECK(ino != 0);
    ino = fs_lookup(fs, path);
    CHECK(ino != 0);
    if (ino != 0) {
        uint64_t size;
        uint8_t *read = fs_read_file(fs, ino, &size);
        CHECK(size == 4 && memcmp(read, "deep", 4) == 0);
        free(read);
    }
    ext2fs_close_free(&fs);
}

static void put_many_files(struct ext4_writer *w, const char *dir, unsigned count,
                           unsigned name_len)
{
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    struct shed_err err = {0};
    struct ext4_file *file;
    char path[600];

    for (unsigned i = 0; i < count; i++) {
        int n = snprintf(path, sizeof(path), "%s/entry-%06u-", dir, i);
        memset(path + n, 'z', name_len - 13);
        path[n + name_len - 13] = '\0';
        must(ext4_writer_file_begin(w, path, &meta, 0, &file, &err), &err, path);
        must(ext4_writer_file_end(file, &err), &err, path);
    }
}

static void check_many_files(ext2_filsys fs, const char *dir, unsigned count, unsigned name_len)
{
    char path[600];
    unsigned missing = 0;

    for (unsigned i = 0; i < count; i += 97) {
        int n = snprintf(path, sizeof(path), "%s/entry-%06u-", dir, i);
        memset(path + n, 'z', name_len - 13);
        path[n + name_len - 13] = '\0';
        if (fs_lookup(fs, path) == 0)
            missing++;
    }
    CHECK_EQ(missing, 0);
}

static void test_large_directory_is_indexed(void)
{
    struct ext4_writer *w = image_create(512 * MiB);
    ext2_filsys fs;

    put_dir(w, "big", 0755);
    put_many_files(w, "big", 20000, 16);
    image_finish(w);
    expect_fsck_clean();

    char *htree = debugfs("htree /big");
    CHECK_STR_CONTAINS(htree, "Root node dump:");
    CHECK_STR_CONTAINS(htree, "Indirect levels: 0");
    free(htree);
    char *stat = debugfs("stat /big");
    CHECK_STR_CONTAINS(stat, "Flags: 0x81000"); /* EXTENTS_FL | INDEX_FL */
    free(stat);
    fs = fs_open();
    struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, "big"));
    CHECK(inode.i_flags & EXT2_INDEX_FL);
    check_many_files(fs, "big", 20000, 16);
    ext2fs_close_free(&fs);
}

static void test_huge_directory_gets_two_level_htree(void)
{
    struct ext4_writer *w = image_create(256 * MiB);
    ext2_filsys fs;

    put_many_files(w, "huge", 12000, 200); /* ~19 per leaf: more leaves than the root holds */
    image_finish(w);
    expect_fsck_clean();

    char *htree = debugfs("htree /huge");
    CHECK_STR_CONTAINS(htree, "Indirect levels: 1");
    free(htree);
    fs = fs_open();
    check_many_files(fs, "huge", 12000, 200);
    ext2fs_close_free(&fs);
}

/* Entries that need just over one block with "." and "..", but fit one leaf without them:
 * an htree whose root points at a single leaf. */
static void test_directory_just_over_one_block_is_indexed(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    char path[300];
    ext2_filsys fs;

    for (int i = 0; i < 15; i++) { /* 15 × 264 bytes + 1 × 108 = 4068 bytes of entries */
        snprintf(path, sizeof(path), "edge/%02d", i);
        memset(path + 7, 'l', 253);
        path[260] = '\0';
        put_file(w, path, "x");
    }
    snprintf(path, sizeof(path), "edge/%0100d", 0);
    put_file(w, path, "y");
    image_finish(w);
    expect_fsck_clean();
    char *htree = debugfs("htree /edge");
    CHECK_STR_CONTAINS(htree, "Number of entries (count): 1");
    free(htree);
    fs = fs_open();
    CHECK(fs_inode(fs, fs_lookup(fs, "edge")).i_flags & EXT2_INDEX_FL);
    CHECK(fs_lookup(fs, path + 5) == 0); /* relative to the root: not there */
    CHECK(fs_lookup(fs, path) != 0);
    ext2fs_close_free(&fs);
}

static void test_missing_parents_are_created_with_entry_mtime(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0600, 7, 7, 1234567890);
    ext2_filsys fs;

    put_file_meta(w, "a/b/c", &meta, "c", 1);
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    for (const char **p = (const char *[]){"a", "a/b", NULL}; *p; p++) {
        struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, *p));
        CHECK_EQ(inode.i_mode, S_IFDIR | 0755);
        CHECK_EQ(owner_uid(&inode), 0);
        CHECK_EQ(time_decode(inode.i_mtime, inode.i_mtime_extra), 1234567890);
    }
    CHECK_EQ(fs_inode(fs, fs_lookup(fs, "a")).i_links_count, 3);
    ext2fs_close_free(&fs);
}

static void test_mkdir_over_directory_keeps_children_and_updates_attributes(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct ext4_meta meta = meta_of(S_IFDIR | 0700, 5, 6, 1500000000);
    struct shed_err err = {0};
    ext2_filsys fs;

    put_dir(w, "etc", 0755);
    put_file(w, "etc/passwd", "root:x:0:0\n");
    must(ext4_writer_mkdir(w, "etc", &meta, &err), &err, "mkdir again");
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    struct ext2_inode_large inode = fs_inode(fs, fs_lookup(fs, "etc"));
    CHECK_EQ(inode.i_mode, S_IFDIR | 0700);
    CHECK_EQ(owner_uid(&inode), 5);
    CHECK_EQ(time_decode(inode.i_mtime, inode.i_mtime_extra), 1500000000);
    CHECK(fs_lookup(fs, "etc/passwd") != 0);
    ext2fs_close_free(&fs);
}

static void test_replacement_between_file_dir_and_symlink(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    uint64_t len;
    ext2_filsys fs;

    put_file(w, "p", "file");
    put_dir(w, "p", 0755); /* file → dir */
    put_file(w, "p/child", "child");
    put_symlink(w, "p", "target");  /* dir (with a child) → symlink */
    put_file(w, "p", "file again"); /* symlink → file */
    put_dir(w, "q", 0755);
    put_dir(w, "q/sub", 0755);
    put_file(w, "q/sub/f", "f");
    put_symlink(w, "q", "p"); /* dir tree → symlink */
    put_symlink(w, "r", "x");
    put_dir(w, "r", 0711); /* symlink → dir */
    image_finish(w);
    expect_fsck_clean();

    fs = fs_open();
    ext2_ino_t ino = fs_lookup(fs, "p");
    struct ext2_inode_large inode = fs_inode(fs, ino);
    CHECK_EQ(inode.i_mode & S_IFMT, S_IFREG);
    uint8_t *read = fs_read_file(fs, ino, &len);
    CHECK(len == 10 && memcmp(read, "file again", 10) == 0);
    free(read);
    CHECK_EQ(fs_inode(fs, fs_lookup(fs, "q")).i_mode & S_IFMT, S_IFLNK);
    CHECK_EQ(fs_inode(fs, fs_lookup(fs, "r")).i_mode, S_IFDIR | 0711);
    /* 11 reserved+lost+found, root, p, q, r: nothing leaked from the replaced entries. */
    CHECK_EQ(fs->super->s_inodes_count - fs->super->s_free_inodes_count, 11 + 3);
    ext2fs_close_free(&fs);
}

static void test_parent_symlinks_are_followed_inside_the_image(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    ext2_filsys fs;

    put_dir(w, "usr/lib", 0755);
    put_symlink(w, "lib", "usr/lib");
    put_symlink(w, "abs", "/usr/lib");
    put_symlink(w, "escape", "../../../usr");
    put_file(w, "lib/libc.so.6", "libc");
    put_file(w, "abs/ld.so", "ld");
    put_file(w, "escape/share", "share");
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    CHECK(fs_lookup(fs, "usr/lib/libc.so.6") != 0);
    CHECK(fs_lookup(fs, "usr/lib/ld.so") != 0);
    CHECK(fs_lookup(fs, "usr/share") != 0);
    CHECK_EQ(fs_inode(fs, fs_lookup(fs, "lib")).i_mode & S_IFMT, S_IFLNK);
    ext2fs_close_free(&fs);
}

/* ---- tests: layers ---- */

static void test_whiteout_removes_only_lower_layer_entries(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    ext2_filsys fs;

    put_dir(w, "a", 0755);
    put_file(w, "a/x", "x");
    put_file(w, "a/sub/z", "z");
    put_file(w, "gone", "g");
    ext4_writer_set_layer(w, 1);
    put_dir(w, "a", 0755); /* re-declared by the upper layer */
    put_file(w, "a/new", "new");
    remove_path(w, "a", true);
    remove_path(w, "gone", true);
    remove_path(w, "never/existed", true);
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    CHECK(fs_lookup(fs, "a") != 0);
    CHECK(fs_lookup(fs, "a/new") != 0);
    CHECK_EQ(fs_lookup(fs, "a/x"), 0);
    CHECK_EQ(fs_lookup(fs, "a/sub"), 0);
    CHECK_EQ(fs_lookup(fs, "gone"), 0);
    ext2fs_close_free(&fs);
}

static void test_opaque_directory_clears_lower_entries(void)
{
    struct ext4_writer *w = image_create(32 * MiB);
    struct shed_err err = {0};
    ext2_filsys fs;

    put_file(w, "d/x", "x");
    put_file(w, "d/deep/y", "y");
    ext4_writer_set_layer(w, 2);
    put_file(w, "d/n", "n");
    must(ext4_writer_clear_dir_lower(w, "d", &err), &err, "clear_dir_lower");
    image_finish(w);
    expect_fsck_clean();
    fs = fs_open();
    CHECK(fs_lookup(fs, "d") != 0);
    CHECK(fs_lookup(fs, "d/n") != 0);
    CHECK_EQ(fs_lookup(fs, "d/x"), 0);
    CHECK_EQ(fs_lookup(fs, "d/deep"), 0);
    ext2fs_close_free(&fs);
}

/* ---- tests: limits ---- */

static void test_out_of_space_is_reported(void)
{
    struct ext4_writer *w = image_create(16 * MiB);
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    uint8_t *chunk = malloc(MiB);
    struct shed_err err = {0};
    struct ext4_file *file;
    int ret = 0;

    fill_pattern(chunk, MiB, 3);
    must(ext4_writer_file_begin(w, "too-big", &meta, 32 * MiB, &file, &err), &err, "begin");
    for (uint64_t off = 0; off < 32 * MiB && ret == 0; off += MiB)
        ret = ext4_writer_file_write(file, off, chunk, MiB, &err);
    CHECK(ret < 0);
    CHECK_EQ(err.code, SHED_E_NO_SPACE);
    CHECK_STR_CONTAINS(err.msg, "full");
    CHECK(ext4_writer_bytes_used(w) > 16 * MiB);
    ext4_writer_abort(w);
    free(chunk);
}

static void test_out_of_inodes_is_reported(void)
{
    struct ext4_writer_opts opts = {.size_bytes = 32 * MiB, .inode_count = 64};
    struct ext4_meta meta = meta_of(S_IFREG | 0644, 0, 0, 1600000000);
    struct ext4_writer *w = NULL;
    struct shed_err err = {0};
    struct ext4_file *file;
    char path[32];
    int ret = 0;

    must(ext4_writer_create(image_path, &opts, &w, &err), &err, "create");
    for (int i = 0; i < 100000 && ret == 0; i++) {
        snprintf(path, sizeof(path), "f%d", i);
        ret = ext4_writer_file_begin(w, path, &meta, 0, &file, &err);
        if (ret == 0)
            ret = ext4_writer_file_end(file, &err);
    }
    CHECK(ret < 0);
    CHECK_EQ(err.code, SHED_E_NO_SPACE);
    CHECK_STR_CONTAINS(err.msg, "inodes");
    ext4_writer_abort(w);
}

/* ---- tests: the kernel ---- */

static bool loop_devices_usable(void)
{
    char *argv[] = {"losetup", "-f", NULL};

    return run_argv(argv, true, NULL) == 0;
}

static void test_kernel_mounts_image_read_write(void)
{
    struct ext4_writer *w;
    struct ext4_meta meta = meta_of(S_IFREG | 04755, 100000, 100001, 4102444800LL);
    struct ext4_xattr xattrs[] = {{"user.comment", "hello", 5}};
    char path[PATH_MAX + 64], buf[64];
    struct stat st;
    ssize_t n;
    unsigned missing = 0;

    if (geteuid() != 0 || !loop_devices_usable())
        CHECK_SKIP("needs root and loop devices");
    w = image_create(512 * MiB);
    meta.xattrs = xattrs;
    meta.xattr_count = 1;
    put_file_meta(w, "bin/tool", &meta, "tool\n", 5);
    put_symlink(w, "link", "bin/tool");
    put_dir(w, "big", 0755);
    put_many_files(w, "big", 20000, 16);
    image_finish(w);

    if (mkdir(mount_dir, 0700) < 0)
        CHECK_FATAL("mkdir %s: %s", mount_dir, strerror(errno));
    char *mount_argv[] = {"mount", "-o", "loop", image_path, mount_dir, NULL};
    char *output = NULL;
    if (run_argv(mount_argv, true, &output) != 0)
        CHECK_FATAL("mount failed: %s", output);
    free(output);
    mounted = true;

    snprintf(path, sizeof(path), "%s/bin/tool", mount_dir);
    CHECK(stat(path, &st) == 0);
    CHECK_EQ(st.st_mode, S_IFREG | 04755);
    CHECK_EQ(st.st_uid, 100000);
    CHECK_EQ(st.st_gid, 100001);
    CHECK_EQ(st.st_mtim.tv_sec, 4102444800LL);
    n = getxattr(path, "user.comment", buf, sizeof(buf));
    CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
    snprintf(path, sizeof(path), "%s/link", mount_dir);
    n = readlink(path, buf, sizeof(buf));
    CHECK(n == 8 && memcmp(buf, "bin/tool", 8) == 0);
    /* Every name must be found through the kernel's htree lookup. */
    for (unsigned i = 0; i < 20000; i++) {
        snprintf(path, sizeof(path), "%s/big/entry-%06u-zzz", mount_dir, i);
        if (stat(path, &st) != 0)
            missing++;
    }
    CHECK_EQ(missing, 0);
    /* Writes: a new entry in the indexed directory, a new directory and file. */
    snprintf(path, sizeof(path), "%s/big/added-by-kernel", mount_dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL && fputs("kernel\n", f) >= 0 && fclose(f) == 0);
    snprintf(path, sizeof(path), "%s/newdir", mount_dir);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/big/entry-000000-zzz", mount_dir);
    CHECK(unlink(path) == 0);

    char *umount_argv[] = {"umount", mount_dir, NULL};
    CHECK_EQ(run_argv(umount_argv, true, NULL), 0);
    mounted = false;
    expect_fsck_clean();
    char *cat = debugfs("cat /big/added-by-kernel");
    CHECK(cat != NULL && strcmp(cat, "kernel\n") == 0);
    free(cat);
}

/* ---- main ---- */

static const struct check_test tests[] = {
    CHECK_TEST(test_empty_image_has_ext4_features_and_passes_fsck),
    CHECK_TEST(test_each_image_gets_fresh_uuid_and_hash_seed),
    CHECK_TEST(test_create_refuses_an_existing_file),
    CHECK_TEST(test_inode_count_option_is_honoured),
    CHECK_TEST(test_root_times_come_from_mkdir_of_root),
    CHECK_TEST(test_root_times_default_to_newest_entry),
    CHECK_TEST(test_regular_file_contents_round_trip),
    CHECK_TEST(test_sparse_file_allocates_only_data_blocks),
    CHECK_TEST(test_5gib_sparse_file_is_fast_and_tiny),
    CHECK_TEST(test_fragmented_file_gets_an_extent_tree),
    CHECK_TEST(test_modes_and_32bit_owners_are_preserved),
    CHECK_TEST(test_timestamps_before_1970_and_after_2038_round_trip),
    CHECK_TEST(test_fast_and_slow_symlinks),
    CHECK_TEST(test_device_nodes_and_fifos),
    CHECK_TEST(test_device_numbers_out_of_range_are_refused),
    CHECK_TEST(test_extended_attributes_round_trip),
    CHECK_TEST(test_hardlinks_share_one_inode),
    CHECK_TEST(test_hardlink_survives_removal_of_first_name),
    CHECK_TEST(test_removing_last_name_frees_inode_and_blocks),
    CHECK_TEST(test_255_byte_names_and_4000_byte_paths),
    CHECK_TEST(test_large_directory_is_indexed),
    CHECK_TEST(test_huge_directory_gets_two_level_htree),
    CHECK_TEST(test_directory_just_over_one_block_is_indexed),
    CHECK_TEST(test_missing_parents_are_created_with_entry_mtime),
    CHECK_TEST(test_mkdir_over_directory_keeps_children_and_updates_attributes),
    CHECK_TEST(test_replacement_between_file_dir_and_symlink),
    CHECK_TEST(test_parent_symlinks_are_followed_inside_the_image),
    CHECK_TEST(test_whiteout_removes_only_lower_layer_entries),
    CHECK_TEST(test_opaque_directory_clears_lower_entries),
    CHECK_TEST(test_out_of_space_is_reported),
    CHECK_TEST(test_out_of_inodes_is_reported),
    CHECK_TEST(test_kernel_mounts_image_read_write),
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]), scratch_setup,
                      scratch_cleanup);
}
