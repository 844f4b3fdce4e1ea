/* import_source: the members of an image archive, or the files of an OCI layout directory,
 * read without trusting a single name (import_source.h). */
#include "import_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"

#define READ_CHUNK (1u << 20)
#define MAX_ALIAS_HOPS 8

enum member_type { MEMBER_FILE, MEMBER_ALIAS };

struct member {
    char *name;
    enum member_type type;
    char *target; /* MEMBER_ALIAS: the member it stands for (normalised); NULL if unusable */
    uint64_t size;
};

struct import_source {
    char *path;
    bool is_dir;
    int dir_fd;
    struct member *members;
    size_t count;
};

/* ---- names ---------------------------------------------------------------------------- */

/* Strips "./" prefixes and trailing slashes; *normal is malloc'd, NULL for the archive's
 * root itself. Refuses absolute names, ".." components and overlong names. */
static int normalise_name(const char *raw, char **normal, struct shed_err *err)
{
    *normal = NULL;
    if (strlen(raw) > IMPORT_MAX_NAME)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "archive member name longer than %d bytes",
                         IMPORT_MAX_NAME);
    if (raw[0] == '/')
        return shed_errf(err, SHED_E_INVALID_IMAGE,
                         "archive member \"%.200s\" has an absolute name: refused", raw);
    while (raw[0] == '.' && raw[1] == '/')
        raw += 2;
    char *name = strdup(raw);
    if (name == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    size_t len = strlen(name);
    while (len > 0 && name[len - 1] == '/')
        name[--len] = '\0';
    for (const char *part = name; *part != '\0';) {
        size_t part_len = strcspn(part, "/");
        if (part_len == 2 && part[0] == '.' && part[1] == '.') {
            free(name);
            return shed_errf(err, SHED_E_INVALID_IMAGE,
                             "archive member \"%.200s\" has a \"..\" component: refused", raw);
        }
        part += part_len;
        while (*part == '/')
            part++;
    }
    if (name[0] == '\0' || strcmp(name, ".") == 0) {
        free(name);
        return 0;
    }
    *normal = name;
    return 0;
}

/* A symlink target relative to the member's directory, as a member name; NULL when it
 * leaves the archive (then the alias is simply never used). */
static char *resolve_link_target(const char *member, const char *target)
{
    if (target[0] == '/')
        return NULL;
    const char *slash = strrchr(member, '/');
    cleanup_free char *joined = slash != NULL
                                    ? str_printf("%.*s/%s", (int)(slash - member), member, target)
                                    : strdup(target);
    if (joined == NULL)
        return NULL;
    /* Collapse "." and ".." by hand: a ".." above the root means outside. */
    char *out = malloc(strlen(joined) + 1);
    if (out == NULL)
        return NULL;
    size_t used = 0;
    for (char *part = strtok(joined, "/"); part != NULL; part = strtok(NULL, "/")) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            if (used == 0) {
                free(out);
                return NULL;
            }
            while (used > 0 && out[used - 1] != '/')
                used--;
            if (used > 0)
                used--;
            continue;
        }
        if (used > 0)
            out[used++] = '/';
        memcpy(out + used, part, strlen(part));
        used += strlen(part);
    }
    out[used] = '\0';
    if (used == 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- the member index ------------------------------------------------------------------ */

static const struct member *find_member(const struct import_source *source, const char *name)
{
    for (size_t i = 0; i < source->count; i++)
        if (strcmp(source->members[i].name, name) == 0)
            return &source->members[i];
    return NULL;
}

/* The regular member a name stands for, through aliases; NULL when there is none. */
static const struct member *resolve_member(const struct import_source *source, const char *name)
{
    const struct member *member = find_member(source, name);
    for (int hops = 0; member != NULL && member->type == MEMBER_ALIAS; hops++) {
        if (hops == MAX_ALIAS_HOPS || member->target == NULL)
            return NULL;
        member = find_member(source, member->target);
    }
    return member;
}

static int add_member(struct import_source *source, struct member *member, struct shed_err *err)
{
    if (source->count == IMPORT_MAX_MEMBERS)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "the archive has more than %d members",
                         IMPORT_MAX_MEMBERS);
    if (find_member(source, member->name) != NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "archive member \"%.200s\" appears twice",
                         member->name);
    struct member *grown = realloc(source->members, (source->count + 1) * sizeof *grown);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    source->members = grown;
    source->members[source->count++] = *member;
    memset(member, 0, sizeof *member);
    return 0;
}

static void member_clear(struct member *member)
{
    free(member->name);
    free(member->target);
    memset(member, 0, sizeof *member);
}

/* The names an image archive's metadata can point at: top-level files (manifest.json,
 * index.json, oci-layout, <hex>.json, <hex>.tar), <dir>/layer.tar (docker save before 25)
 * and blobs/<algorithm>/<hex>. A rootfs tarball's many deeper files are checked, not kept. */
static bool name_is_indexed(const char *name)
{
    const char *slash = strchr(name, '/');
    if (slash == NULL)
        return true;
    const char *second = strchr(slash + 1, '/');
    if (second == NULL)
        return strcmp(slash + 1, "layer.tar") == 0;
    return strncmp(name, "blobs/", 6) == 0 && strchr(second + 1, '/') == NULL;
}

/* One header of the listing pass: regular files and links are remembered, directories
 * only checked, anything else (devices, fifos) ignored. */
static int index_entry(struct import_source *source, struct archive_entry *entry,
                       struct shed_err *err)
{
    struct member member = {0};
    if (normalise_name(archive_entry_pathname(entry), &member.name, err) < 0)
        return -1;
    if (member.name == NULL || !name_is_indexed(member.name)) {
        member_clear(&member);
        return 0;
    }
    const char *hardlink = archive_entry_hardlink(entry);
    int rc = 0;
    if (hardlink != NULL) {
        member.type = MEMBER_ALIAS;
        rc = normalise_name(hardlink, &member.target, err);
    } else if (archive_entry_filetype(entry) == AE_IFLNK) {
        member.type = MEMBER_ALIAS;
        const char *target = archive_entry_symlink(entry);
        member.target = target != NULL ? resolve_link_target(member.name, target) : NULL;
    } else if (archive_entry_filetype(entry) == AE_IFREG) {
        member.type = MEMBER_FILE;
        member.size = archive_entry_size(entry) > 0 ? (uint64_t)archive_entry_size(entry) : 0;
    } else {
        member_clear(&member);
        return 0;
    }
    if (rc == 0)
        rc = add_member(source, &member, err);
    member_clear(&member);
    return rc;
}

static int archive_failure(struct archive *a, const char *path, struct shed_err *err)
{
    const char *why = archive_error_string(a);
    return shed_errf(err, SHED_E_INVALID_IMAGE, "%s is not a readable archive: %s", path,
                     why != NULL ? why : "unknown error");
}

static int open_archive(const char *path, struct archive **out, struct shed_err *err)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, READ_CHUNK) != ARCHIVE_OK) {
        archive_failure(a, path, err);
        archive_read_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

/* Calls visit for every header; visit may read the member's data. */
static int for_each_header(const char *path,
                           int (*visit)(struct archive *a, struct archive_entry *entry, void *ctx,
                                        struct shed_err *err),
                           void *ctx, struct shed_err *err)
{
    struct archive *a = NULL;
    if (open_archive(path, &a, err) < 0)
        return -1;
    int rc = 0;
    for (;;) {
        struct archive_entry *entry = NULL;
        int status = archive_read_next_header(a, &entry);
        if (status == ARCHIVE_EOF)
            break;
        if (status != ARCHIVE_OK && status != ARCHIVE_WARN) {
            rc = archive_failure(a, path, err);
            break;
        }
        if ((rc = visit(a, entry, ctx, err)) < 0)
            break;
    }
    archive_read_free(a);
    return rc;
}

static int index_visit(struct archive *a, struct archive_entry *entry, void *ctx,
                       struct shed_err *err)
{
    (void)a;
    return index_entry(ctx, entry, err);
}

int import_source_open(const char *path, struct import_source **out, struct shed_err *err)
{
    *out = NULL;
    struct import_source *source = calloc(1, sizeof *source);
    if (source == NULL || (source->path = strdup(path)) == NULL) {
        free(source);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    source->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (source->dir_fd >= 0)
        source->is_dir = true;
    else if (errno != ENOTDIR)
        rc = shed_errf_errno(err, errno == ENOENT ? SHED_E_INVALID_REQUEST : SHED_E_IO, errno,
                             "cannot open %s", path);
    else
        rc = for_each_header(path, index_visit, source, err);
    if (rc < 0) {
        import_source_close(source);
        return -1;
    }
    *out = source;
    return 0;
}

void import_source_close(struct import_source *source)
{
    if (source == NULL)
        return;
    for (size_t i = 0; i < source->count; i++)
        member_clear(&source->members[i]);
    free(source->members);
    if (source->dir_fd >= 0)
        close(source->dir_fd);
    free(source->path);
    free(source);
}

bool import_source_is_dir(const struct import_source *source)
{
    return source->is_dir;
}

/* ---- directories: every component opened without following symlinks -------------------- */

static int open_in_dir(const struct import_source *source, const char *name, int *fd_out,
                       struct shed_err *err)
{
    *fd_out = -1;
    cleanup_free char *normal = NULL;
    if (normalise_name(name, &normal, err) < 0)
        return -1;
    if (normal == NULL)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "empty file name in the layout");
    int dir = source->dir_fd;
    cleanup_close int owned = -1;
    char *part = normal;
    for (char *slash; (slash = strchr(part, '/')) != NULL; part = slash + 1) {
        *slash = '\0';
        int next = openat(dir, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            return shed_errf_errno(err, SHED_E_INVALID_IMAGE, errno,
                                   "%s/%s (symlinks in a layout are not followed)", source->path,
                                   name);
        if (owned >= 0)
            close(owned);
        owned = dir = next;
    }
    /* O_NONBLOCK: a fifo planted in the layout must not hang the import. */
    cleanup_close int fd = openat(dir, part, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_INVALID_IMAGE, errno,
                               "%s/%s (symlinks in a layout are not followed)", source->path, name);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s/%s is not a regular file", source->path,
                         name);
    *fd_out = steal_fd(&fd);
    return 0;
}

/* Absent (ENOENT) is an answer; a layout file that is there but refused (a symlink, not a
 * regular file) is an error, so the user learns why. */
static int member_present(const struct import_source *source, const char *name, bool *present,
                          struct shed_err *err)
{
    *present = false;
    if (!source->is_dir) {
        *present = resolve_member(source, name) != NULL;
        return 0;
    }
    int fd = -1;
    if (open_in_dir(source, name, &fd, err) < 0)
        return shed_err_is_errno(err, ENOENT) ? 0 : -1;
    close(fd);
    *present = true;
    return 0;
}

bool import_source_has(const struct import_source *source, const char *name)
{
    if (!source->is_dir)
        return resolve_member(source, name) != NULL;
    struct shed_err ignored;
    int fd = -1;
    if (open_in_dir(source, name, &fd, &ignored) < 0)
        return false;
    close(fd);
    return true;
}

uint64_t import_source_size(const struct import_source *source, const char *name)
{
    if (!source->is_dir) {
        const struct member *member = resolve_member(source, name);
        return member != NULL ? member->size : 0;
    }
    struct shed_err ignored;
    int fd = -1;
    struct stat st;
    if (open_in_dir(source, name, &fd, &ignored) < 0)
        return 0;
    uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    close(fd);
    return size;
}

static int stream_fd(int fd, const char *what,
                     int (*write)(void *, const void *, size_t, struct shed_err *), void *ctx,
                     struct shed_err *err)
{
    cleanup_free char *buf = malloc(READ_CHUNK);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (;;) {
        ssize_t n = TEMP_FAILURE_RETRY(read(fd, buf, READ_CHUNK));
        if (n < 0)
            return shed_errf_errno(err, SHED_E_IO, errno, "cannot read %s", what);
        if (n == 0)
            return 0;
        if (write(ctx, buf, (size_t)n, err) < 0)
            return -1;
    }
}

/* ---- reading members --------------------------------------------------------------------- */

struct buffer_sink {
    char *data;
    size_t len, max;
    const char *name;
};

static int buffer_write(void *ctx, const void *data, size_t len, struct shed_err *err)
{
    struct buffer_sink *sink = ctx;
    if (len > sink->max - sink->len)
        return shed_errf(err, SHED_E_INVALID_IMAGE, "%s is larger than %zu bytes", sink->name,
                         sink->max);
    char *grown = realloc(sink->data, sink->len + len + 1);
    if (grown == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    sink->data = grown;
    memcpy(sink->data + sink->len, data, len);
    sink->len += len;
    sink->data[sink->len] = '\0';
    return 0;
}

int import_source_read(struct import_source *source, const char *const *names, size_t count,
                       size_t max_len, char **data, size_t *lens, struct shed_err *err)
{
    struct buffer_sink *sinks = calloc(count ? count : 1, sizeof *sinks);
    struct import_copy *copies = calloc(count ? count : 1, sizeof *copies);
    if (sinks == NULL || copies == NULL) {
        free(sinks);
        free(copies);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    size_t wanted = 0;
    for (size_t i = 0; i < count; i++) {
        data[i] = NULL;
        lens[i] = 0;
        bool present = false;
        if (member_present(source, names[i], &present, err) < 0) {
            free(sinks);
            free(copies);
            return -1;
        }
        if (!present)
            continue;
        sinks[i] = (struct buffer_sink){.max = max_len, .name = names[i]};
        copies[wanted++] =
            (struct import_copy){.name = names[i], .write = buffer_write, .ctx = &sinks[i]};
    }
    int rc = import_source_copy(source, copies, wanted, err);
    for (size_t i = 0; i < count; i++) {
        if (rc == 0 && sinks[i].name != NULL && sinks[i].data == NULL)
            sinks[i].data = calloc(1, 1); /* an empty member */
        if (rc == 0 && sinks[i].name != NULL && sinks[i].data == NULL)
            rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        if (rc == 0) {
            data[i] = sinks[i].data;
            lens[i] = sinks[i].len;
        } else {
            free(sinks[i].data);
        }
    }
    free(sinks);
    free(copies);
    return rc;
}

/* ---- streaming members ----------------------------------------------------------------- */

struct copy_pass {
    const struct import_source *source;
    struct import_copy *copies;
    size_t count;
    const char **real_names; /* the regular member each copy reads */
};

static int copy_entry_data(struct archive *a, struct copy_pass *pass, const char *name,
                           struct shed_err *err)
{
    cleanup_free char *buf = malloc(READ_CHUNK);
    if (buf == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, READ_CHUNK);
        if (n < 0)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: member %s: %s", pass->source->path,
                             name, archive_error_string(a));
        if (n == 0)
            break;
        for (size_t i = 0; i < pass->count; i++)
            if (strcmp(pass->real_names[i], name) == 0 &&
                pass->copies[i].write(pass->copies[i].ctx, buf, (size_t)n, err) < 0)
                return -1;
    }
    for (size_t i = 0; i < pass->count; i++)
        if (strcmp(pass->real_names[i], name) == 0)
            pass->copies[i].copied = true;
    return 0;
}

static int copy_visit(struct archive *a, struct archive_entry *entry, void *ctx,
                      struct shed_err *err)
{
    struct copy_pass *pass = ctx;
    if (archive_entry_filetype(entry) != AE_IFREG || archive_entry_hardlink(entry) != NULL)
        return 0;
    cleanup_free char *name = NULL;
    if (normalise_name(archive_entry_pathname(entry), &name, err) < 0)
        return -1;
    for (size_t i = 0; name != NULL && i < pass->count; i++)
        if (strcmp(pass->real_names[i], name) == 0)
            return copy_entry_data(a, pass, name, err);
    return 0;
}

static int copy_from_dir(struct import_source *source, struct import_copy *copies, size_t count,
                         struct shed_err *err)
{
    for (size_t i = 0; i < count; i++) {
        cleanup_close int fd = -1;
        if (open_in_dir(source, copies[i].name, &fd, err) < 0 ||
            stream_fd(fd, copies[i].name, copies[i].write, copies[i].ctx, err) < 0)
            return -1;
        copies[i].copied = true;
    }
    return 0;
}

int import_source_copy(struct import_source *source, struct import_copy *copies, size_t count,
                       struct shed_err *err)
{
    if (source->is_dir)
        return copy_from_dir(source, copies, count, err);
    cleanup_free const char **real_names = calloc(count ? count : 1, sizeof *real_names);
    if (real_names == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const struct member *member = resolve_member(source, copies[i].name);
        if (member == NULL)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "%s has no member %s", source->path,
                             copies[i].name);
        real_names[i] = member->name;
    }
    struct copy_pass pass = {
        .source = source, .copies = copies, .count = count, .real_names = real_names};
    if (count > 0 && for_each_header(source->path, copy_visit, &pass, err) < 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (!copies[i].copied)
            return shed_errf(err, SHED_E_INVALID_IMAGE, "%s: member %s could not be read",
                             source->path, copies[i].name);
    return 0;
}
