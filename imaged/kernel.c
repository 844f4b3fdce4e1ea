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

/* libext2fs error codes become messages through the writer's one error-table registration. */
static int ext2_error(struct shed_err *err, errcode_t code, const char *what, const char *path)
{
    return ext4_fail(err, code, "%s %s", what, path);
}

/* The newest candidate of one kind in /boot: name and inode. */
struct boot_pick {
    const char *const *prefixes; /* NULL-terminated */
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

/* Streams an inode's content into path, published atomically (fs_atomic_open: a temp unique
 * to this call, fsync, rename, fsync of the directory). */
static int copy_inode_to(ext2_filsys fs, ext2_ino_t ino, const char *path, struct shed_err *err)
{
    cleanup_free char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    ext2_file_t file;
    errcode_t code = ext2fs_file_open(fs, ino, 0, &file);
    if (code != 0)
        return ext2_error(err, code, "cannot open inode in", fs->device_name);
    cleanup_atomic_file struct fs_atomic_file out = FS_ATOMIC_FILE_INIT;
    int ret = fs_atomic_open(&out, path, 0600, err);
    while (ret == 0) {
        unsigned int got = 0;
        code = ext2fs_file_read(file, buf, COPY_CHUNK, &got);
        if (code != 0) {
            ret = ext2_error(err, code, "cannot read a /boot file of", fs->device_name);
            break;
        }
        if (got == 0)
            break;
        if (write_all(out.fd, buf, got) < 0)
            ret = shed_errf_errno(err, SHED_E_IO, errno, "cannot write %s", out.tmp_path);
    }
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
    return copy_inode_to(fs, pick->ino, path, err);
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
    struct boot_pick kernel = {.prefixes = kernel_prefixes};
    struct boot_pick initrd = {.prefixes = initrd_prefixes};
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
