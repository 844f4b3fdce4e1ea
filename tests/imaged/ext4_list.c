/* ext4_list IMAGE: lists every entry of an ext4 image read with libext2fs (nothing is
 * mounted), one line each, for tests/imaged/treecmp.py:
 *
 *   path_hex type mode uid gid size sha256 link_hex major minor ino nlink mtime_sec
 *   mtime_nsec blocks512 xattrs
 *
 * Strings are hex-encoded ("-" when empty) so that any byte survives; xattrs are
 * "name_hex=value_hex" joined by ",", or "-". type is one of f d l c b p s ?. */
#include <ext2fs/ext2fs.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct name_list {
    char **names;
    size_t count, capacity;
};

static void fail(const char *what, errcode_t code)
{
    fprintf(stderr, "ext4_list: %s: %s\n", what, error_message(code));
    exit(1);
}

static void print_hex(const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len == 0)
        fputc('-', stdout);
    for (size_t i = 0; i < len; i++)
        printf("%02x", p[i]);
}

static char type_char(unsigned mode)
{
    switch (mode & 0170000) {
    case 0100000: return 'f';
    case 0040000: return 'd';
    case 0120000: return 'l';
    case 0020000: return 'c';
    case 0060000: return 'b';
    case 0010000: return 'p';
    case 0140000: return 's';
    default: return '?';
    }
}

/* Reads the whole content of an inode through the file API (holes read as zeros). */
static void read_inode_data(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *inode,
                            EVP_MD_CTX *md, char *buf, size_t buf_len)
{
    ext2_file_t file;
    errcode_t code = ext2fs_file_open2(fs, ino, (struct ext2_inode *)inode, 0, &file);
    if (code)
        fail("file_open", code);
    size_t total = 0;
    for (;;) {
        unsigned int got = 0;
        code = ext2fs_file_read(file, buf + (md == NULL ? total : 0),
                                md == NULL ? (unsigned)(buf_len - total) : (unsigned)buf_len, &got);
        if (code)
            fail("file_read", code);
        if (got == 0)
            break;
        if (md != NULL)
            EVP_DigestUpdate(md, buf, got);
        else
            total += got;
        if (md == NULL && total >= buf_len)
            break;
    }
    ext2fs_file_close(file);
}

static void print_content_hash(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *inode)
{
    static char buf[1 << 20];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    read_inode_data(fs, ino, inode, md, buf, sizeof buf);
    unsigned char digest[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    print_hex(digest, len);
}

static void print_symlink_target(ext2_filsys fs, ext2_ino_t ino, struct ext2_inode_large *inode)
{
    size_t size = EXT2_I_SIZE(inode);
    if (ext2fs_is_fast_symlink((struct ext2_inode *)inode)) {
        print_hex(inode->i_block, size);
        return;
    }
    char *target = calloc(1, size + 1);
    read_inode_data(fs, ino, inode, NULL, target, size);
    print_hex(target, size);
    free(target);
}

static int print_xattr(char *name, char *value, size_t value_len, void *data)
{
    int *first = data;
    if (!*first)
        fputc(',', stdout);
    *first = 0;
    print_hex(name, strlen(name));
    fputc('=', stdout);
    print_hex(value, value_len);
    return 0;
}

static void print_xattrs(ext2_filsys fs, ext2_ino_t ino)
{
    struct ext2_xattr_handle *handle;
    errcode_t code = ext2fs_xattrs_open(fs, ino, &handle);
    if (code)
        fail("xattrs_open", code);
    code = ext2fs_xattrs_read(handle);
    if (code)
        fail("xattrs_read", code);
    int first = 1;
    ext2fs_xattrs_iterate(handle, print_xattr, &first);
    if (first)
        fputc('-', stdout);
    ext2fs_xattrs_close(&handle);
}

static void device_numbers(const struct ext2_inode_large *inode, unsigned *major, unsigned *minor)
{
    if (inode->i_block[0] != 0) {
        *major = (inode->i_block[0] >> 8) & 255;
        *minor = inode->i_block[0] & 255;
    } else {
        unsigned dev = inode->i_block[1];
        *major = (dev & 0xfff00) >> 8;
        *minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    }
}

static void print_entry(ext2_filsys fs, ext2_ino_t ino, const char *path,
                        struct ext2_inode_large *inode)
{
    unsigned mode = inode->i_mode;
    char type = type_char(mode);
    print_hex(path, strlen(path));
    long long mtime = (int32_t)inode->i_mtime;
    unsigned nsec = 0;
    if (inode->i_extra_isize >= 24) { /* i_mtime_extra is present */
        mtime += (long long)(inode->i_mtime_extra & 3) << 32;
        nsec = inode->i_mtime_extra >> 2;
    }
    printf(" %c %o %u %u %llu ", type, mode & 07777, inode_uid(*inode), inode_gid(*inode),
           (unsigned long long)EXT2_I_SIZE(inode));
    if (type == 'f')
        print_content_hash(fs, ino, inode);
    else
        fputc('-', stdout);
    fputc(' ', stdout);
    if (type == 'l')
        print_symlink_target(fs, ino, inode);
    else
        fputc('-', stdout);
    unsigned major = 0, minor = 0;
    if (type == 'c' || type == 'b')
        device_numbers(inode, &major, &minor);
    printf(" %u %u %u %u %lld %u %llu ", major, minor, ino, inode->i_links_count, mtime, nsec,
           (unsigned long long)ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *)inode));
    print_xattrs(fs, ino);
    fputc('\n', stdout);
}

static int collect_name(struct ext2_dir_entry *dirent, int offset, int blocksize, char *buf,
                        void *data)
{
    (void)offset;
    (void)blocksize;
    (void)buf;
    struct name_list *list = data;
    int len = ext2fs_dirent_name_len(dirent);
    if ((len == 1 && dirent->name[0] == '.') ||
        (len == 2 && dirent->name[0] == '.' && dirent->name[1] == '.'))
        return 0;
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? list->capacity * 2 : 64;
        list->names = realloc(list->names, list->capacity * sizeof *list->names);
    }
    char *entry = malloc(sizeof(ext2_ino_t) + (size_t)len + 1);
    memcpy(entry, &dirent->inode, sizeof(ext2_ino_t));
    memcpy(entry + sizeof(ext2_ino_t), dirent->name, (size_t)len);
    entry[sizeof(ext2_ino_t) + (size_t)len] = '\0';
    list->names[list->count++] = entry;
    return 0;
}

static void walk(ext2_filsys fs, ext2_ino_t ino, const char *path)
{
    struct ext2_inode_large inode;
    errcode_t code = ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)&inode, sizeof inode);
    if (code)
        fail("read_inode", code);
    print_entry(fs, ino, path, &inode);
    if (!LINUX_S_ISDIR(inode.i_mode))
        return;
    struct name_list list = {0};
    code = ext2fs_dir_iterate(fs, ino, 0, NULL, collect_name, &list);
    if (code)
        fail("dir_iterate", code);
    for (size_t i = 0; i < list.count; i++) {
        ext2_ino_t child;
        memcpy(&child, list.names[i], sizeof child);
        const char *name = list.names[i] + sizeof(ext2_ino_t);
        size_t len = strlen(path) + 1 + strlen(name) + 1;
        char *child_path = malloc(len);
        snprintf(child_path, len, "%s%s%s", path, path[0] ? "/" : "", name);
        walk(fs, child, child_path);
        free(child_path);
        free(list.names[i]);
    }
    free(list.names);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ext4_list IMAGE\n");
        return 2;
    }
    add_error_table(&et_ext2_error_table);
    ext2_filsys fs;
    errcode_t code = ext2fs_open2(argv[1], NULL, 0, 0, 0, unix_io_manager, &fs);
    if (code)
        fail(argv[1], code);
    walk(fs, EXT2_ROOT_INO, "");
    ext2fs_close_free(&fs);
    return 0;
}
