#include "kernel.h"

#include <errno.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "ext4_internal.h"

#define COPY_CHUNK (1u << 20)
/* Real kernels are ~10 MiB and initrds ~100 MiB: anything far beyond is not one, and copying
 * it (a 1 TiB sparse file reads as a terabyte of zeros) would fill the images dir. */
#define KERNEL_MAX_BYTES (256ULL << 20)
#define INITRD_MAX_BYTES (1ULL << 30)

/* libext2fs error codes become messages through the writer's one error-table registration. */
static int ext2_error(struct shed_err *err, errcode_t code, const char *what, const char *path)
{
    return ext4_fail(err, code, "%s %s", what, path);
}

/* The newest candidate of one kind in /boot: name and inode. */
struct boot_pick {
    const char *const *prefixes; /* NULL-terminated */
    const char *kind;            /* "kernel", "initrd": for messages */
    uint64_t max_bytes;
    char name[256];
    const char *version; /* points into name: the part after the prefix */
    ext2_ino_t ino;
};

struct boot_scan {
    ext2_filsys fs;
    struct boot_pick *picks[2];
};

static bool is_regular_file(ext2_filsys fs, ext2_ino_t ino)
{
    struct ext2_inode inode;
    return ext2fs_read_inode(fs, ino, &inode) == 0 && LINUX_S_ISREG(inode.i_mode);
}

static void consider_entry(struct boot_scan *scan, struct boot_pick *pick, const char *name,
                           ext2_ino_t ino)
{
    for (const char *const *prefix = pick->prefixes; *prefix != NULL; prefix++) {
        size_t len = strlen(*prefix);
        if (strncmp(name, *prefix, len) != 0)
            continue;
        const char *version = name + len;
        if (*version == '-') /* "vmlinux-6.2" must compare with "vmlinuz-6.1" as 6.2 vs 6.1 */
            version++;
        /* strverscmp orders "6.1.0-9" < "6.1.0-18" as a human would. */
        if (pick->ino != 0 && strverscmp(version, pick->version) <= 0)
            return;
        if (!is_regular_file(scan->fs, ino))
            return;
        snprintf(pick->name, sizeof pick->name, "%s", name);
        pick->version = pick->name + (version - name);
        pick->ino = ino;
        return;
    }
}

static int boot_entry(ext2_ino_t dir, int entry, struct ext2_dir_entry *dirent, int offset,
                      int blocksize, char *buf, void *priv)
{
    (void)dir;
    (void)entry;
    (void)offset;
    (void)blocksize;
    (void)buf;
    struct boot_scan *scan = priv;
    size_t len = ext2fs_dirent_name_len(dirent);
    char name[256];
    memcpy(name, dirent->name, len);
    name[len] = '\0';
    if (dirent->inode != 0)
        for (size_t i = 0; i < 2; i++)
            consider_entry(scan, scan->picks[i], name, dirent->inode);
    return 0;
}

static bool all_zero(const char *buf, size_t len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* Streams an inode's content into fd at the same offsets; all-zero chunks (the image's holes
 * among them) are skipped, so holes stay holes, and ftruncate sets the final size. */
static int copy_file_data(ext2_file_t file, uint64_t size, int fd, const char *tmp_path,
                          const char *image, struct shed_err *err)
{
    cleanup_free char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (uint64_t offset = 0; offset < size;) {
        unsigned int got = 0;
        errcode_t code = ext2fs_file_read(file, buf, COPY_CHUNK, &got);
        if (code != 0)
            return ext2_error(err, code, "cannot read a /boot file of", image);
        if (got == 0)
            break;
        if (!all_zero(buf, got) && pwrite_all(fd, buf, got, (off_t)offset) < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot write %s", tmp_path);
        offset += got;
    }
    if (ftruncate(fd, (off_t)size) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot size %s", tmp_path);
    return 0;
}

/* Copies the picked inode to path, published atomically (fs_atomic_open: a temp unique to
 * this call, fsync, rename, fsync of the directory), after checking from the inode that it
 * is not larger than a kernel/initrd can be. */
static int copy_pick_to(ext2_filsys fs, const struct boot_pick *pick, const char *path,
                        struct shed_err *err)
{
    ext2_file_t file;
    errcode_t code = ext2fs_file_open(fs, pick->ino, 0, &file);
    if (code != 0)
        return ext2_error(err, code, "cannot open inode in", fs->device_name);
    __u64 size = 0;
    int ret = 0;
    code = ext2fs_file_get_lsize(file, &size);
    if (code != 0)
        ret = ext2_error(err, code, "cannot size a /boot file of", fs->device_name);
    else if (size > pick->max_bytes) {
        char have[32], most[32];
        ret = shed_errf(err, SHED_E_INVALID_IMAGE,
                        "/boot/%s is %s, more than a %s may be (%s): not extracted", pick->name,
                        format_size(size, have, sizeof have), pick->kind,
                        format_size(pick->max_bytes, most, sizeof most));
    }
    cleanup_atomic_file struct fs_atomic_file out = FS_ATOMIC_FILE_INIT;
    if (ret == 0)
        ret = fs_atomic_open(&out, path, 0600, err);
    if (ret == 0)
        ret = copy_file_data(file, size, out.fd, out.tmp_path, fs->device_name, err);
    ext2fs_file_close(file);
    if (ret < 0)
        return -1;
    return fs_atomic_commit(&out, err);
}

static int remove_if_present(const char *path, struct shed_err *err)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove %s", path);
    return 0;
}

static int publish_pick(ext2_filsys fs, const struct boot_pick *pick, const char *path, bool *found,
                        struct shed_err *err)
{
    *found = pick->ino != 0;
    if (!*found)
        return remove_if_present(path, err);
    return copy_pick_to(fs, pick, path, err);
}

static int scan_boot(ext2_filsys fs, struct boot_scan *scan, const char *rootfs_path,
                     struct shed_err *err)
{
    ext2_ino_t boot = 0;
    errcode_t code = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, "boot", &boot);
    if (code == EXT2_ET_FILE_NOT_FOUND)
        return 0;
    if (code != 0)
        return ext2_error(err, code, "cannot look up /boot in", rootfs_path);
    struct ext2_inode inode;
    code = ext2fs_read_inode(fs, boot, &inode);
    if (code != 0)
        return ext2_error(err, code, "cannot read /boot of", rootfs_path);
    if (!LINUX_S_ISDIR(inode.i_mode))
        return 0;
    code = ext2fs_dir_iterate2(fs, boot, 0, NULL, boot_entry, scan);
    if (code != 0)
        return ext2_error(err, code, "cannot list /boot of", rootfs_path);
    return 0;
}

int kernel_extract(const char *rootfs_path, const char *kernel_path, const char *initrd_path,
                   bool *has_kernel, bool *has_initrd, struct shed_err *err)
{
    static const char *const kernel_prefixes[] = {"vmlinuz-", "vmlinux", NULL};
    static const char *const initrd_prefixes[] = {"initrd.img-", NULL};
    struct boot_pick kernel = {
        .prefixes = kernel_prefixes, .kind = "kernel", .max_bytes = KERNEL_MAX_BYTES};
    struct boot_pick initrd = {
        .prefixes = initrd_prefixes, .kind = "initrd", .max_bytes = INITRD_MAX_BYTES};
    *has_kernel = *has_initrd = false;

    ext2_filsys fs = NULL;
    errcode_t code = ext2fs_open(rootfs_path, 0, 0, 0, unix_io_manager, &fs);
    if (code != 0)
        return ext2_error(err, code, "cannot open ext4 image", rootfs_path);
    struct boot_scan scan = {.fs = fs, .picks = {&kernel, &initrd}};
    int ret = scan_boot(fs, &scan, rootfs_path, err);
    if (ret == 0)
        ret = publish_pick(fs, &kernel, kernel_path, has_kernel, err);
    if (ret == 0)
        ret = publish_pick(fs, &initrd, initrd_path, has_initrd, err);
    ext2fs_close_free(&fs);
    return ret;
}
