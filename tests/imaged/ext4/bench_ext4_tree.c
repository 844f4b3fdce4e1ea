/* bench_ext4_tree: drives the ext4 writer for scripts/bench/ext4_write.sh (not a test).
 *
 *   bench_ext4_tree tree <source dir> <image> <size bytes>
 *       writes a copy of a directory tree (files, dirs, symlinks, hardlinks, devices)
 *   bench_ext4_tree synthetic <image> <size bytes> <files> <bytes per file>
 *       writes generated files without reading anything
 *
 * Prints the elapsed seconds of the writer calls (finish included) and the peak RSS. */
#include "imaged/ext4_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static struct ext4_writer *writer;
static size_t source_prefix;
static uint8_t *chunk;
static struct {
    dev_t dev;
    ino_t ino;
    char *path;
} * links;
static size_t link_count;

static void die(const struct shed_err *err, const char *what)
{
    fprintf(stderr, "%s: %s\n", what, err->msg);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct ext4_meta meta_from(const struct stat *st)
{
    return (struct ext4_meta){.mode = st->st_mode,
                              .uid = st->st_uid,
                              .gid = st->st_gid,
                              .mtime = {st->st_mtim.tv_sec, (uint32_t)st->st_mtim.tv_nsec},
                              .rdev_major = major(st->st_rdev),
                              .rdev_minor = minor(st->st_rdev)};
}

static const char *hardlink_target(const struct stat *st, const char *path)
{
    for (size_t i = 0; i < link_count; i++) {
        if (links[i].dev == st->st_dev && links[i].ino == st->st_ino)
            return links[i].path;
    }
    links = realloc(links, (link_count + 1) * sizeof(*links));
    links[link_count].dev = st->st_dev;
    links[link_count].ino = st->st_ino;
    links[link_count++].path = strdup(path);
    return NULL;
}

static void copy_file(const char *source, const char *path, const struct stat *st)
{
    struct ext4_meta meta = meta_from(st);
    struct shed_err err = {0};
    struct ext4_file *file;
    uint64_t off = 0;
    int fd = open(source, O_RDONLY);

    if (fd < 0) {
        perror(source);
        exit(1);
    }
    if (ext4_writer_file_begin(writer, path, &meta, (uint64_t)st->st_size, &file, &err) < 0)
        die(&err, path);
    for (;;) {
        ssize_t n = read(fd, chunk, CHUNK);
        if (n <= 0)
            break;
        if (ext4_writer_file_write(file, off, chunk, (size_t)n, &err) < 0)
            die(&err, path);
        off += (uint64_t)n;
    }
    close(fd);
    if (ext4_writer_file_end(file, &err) < 0)
        die(&err, path);
}

static int visit(const char *source, const struct stat *st, int type, struct FTW *ftw)
{
    const char *path = source + source_prefix;
    struct ext4_meta meta = meta_from(st);
    struct shed_err err = {0};
    char target[4096];
    const char *link;
    ssize_t n;

    (void)type;
    (void)ftw;
    while (*path == '/')
        path++;
    if (S_ISDIR(st->st_mode)) {
        if (ext4_writer_mkdir(writer, path, &meta, &err) < 0)
            die(&err, path);
    } else if (!S_ISDIR(st->st_mode) && st->st_nlink > 1 && (link = hardlink_target(st, path))) {
        if (ext4_writer_hardlink(writer, path, link, &err) < 0)
            die(&err, path);
    } else if (S_ISREG(st->st_mode)) {
        copy_file(source, path, st);
    } else if (S_ISLNK(st->st_mode)) {
        n = readlink(source, target, sizeof(target) - 1);
        if (n <= 0)
            return 0;
        target[n] = '\0';
        if (ext4_writer_symlink(writer, path, &meta, target, &err) < 0)
            die(&err, path);
    } else if (ext4_writer_mknod(writer, path, &meta, &err) < 0) {
        die(&err, path);
    }
    return 0;
}

static void synthetic(unsigned files, size_t bytes)
{
    struct ext4_meta meta = {.mode = S_IFREG | 0644, .mtime = {1600000000, 0}};
    struct shed_err err = {0};
    struct ext4_file *file;
    char path[64];

    for (size_t i = 0; i < CHUNK; i++)
        chunk[i] = (uint8_t)(i * 2654435761u >> 13) | 1;
    for (unsigned i = 0; i < files; i++) {
        snprintf(path, sizeof(path), "d%03u/file%05u", i % 100, i);
        if (ext4_writer_file_begin(writer, path, &meta, bytes, &file, &err) < 0)
            die(&err, path);
        for (size_t off = 0; off < bytes; off += 65536) {
            size_t n = bytes - off < 65536 ? bytes - off : 65536;
            if (ext4_writer_file_write(file, off, chunk + (off % (CHUNK / 2)), n, &err) < 0)
                die(&err, path);
        }
        if (ext4_writer_file_end(file, &err) < 0)
            die(&err, path);
    }
}

int main(int argc, char **argv)
{
    struct ext4_writer_opts opts = {0};
    struct shed_err err = {0};
    struct rusage usage;
    double start;

    chunk = malloc(CHUNK);
    if (argc == 5 && strcmp(argv[1], "tree") == 0) {
        opts.size_bytes = strtoull(argv[4], NULL, 10);
        start = now();
        if (ext4_writer_create(argv[3], &opts, &writer, &err) < 0)
            die(&err, "create");
        source_prefix = strlen(argv[2]);
        if (nftw(argv[2], visit, 64, FTW_PHYS) != 0)
            return 1;
    } else if (argc == 6 && strcmp(argv[1], "synthetic") == 0) {
        opts.size_bytes = strtoull(argv[3], NULL, 10);
        start = now();
        if (ext4_writer_create(argv[2], &opts, &writer, &err) < 0)
            die(&err, "create");
        synthetic((unsigned)atoi(argv[4]), strtoull(argv[5], NULL, 10));
    } else {
        fprintf(stderr, "usage: see the comment at the top of bench_ext4_tree.c\n");
        return 2;
    }
    if (ext4_writer_finish(writer, &err) < 0)
        die(&err, "finish");
    getrusage(RUSAGE_SELF, &usage);
    printf("seconds %.3f max_rss_kib %ld\n", now() - start, usage.ru_maxrss);
    return 0;
}
