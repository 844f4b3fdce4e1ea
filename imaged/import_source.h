/* Where an imported image's files come from: a tar archive (docker save, oci-archive, maybe
 * compressed; read with libarchive) or an OCI layout directory. Private to imaged/.
 *
 * Hostile input: every member name of an archive is checked when it is opened (an absolute
 * name or a ".." component refuses the whole archive), the member count and name lengths are
 * bounded, a symlink member may only alias another member of the archive, and a directory
 * source opens each path component with O_NOFOLLOW: no symlink of a layout is ever followed.
 * Only regular files are read. */
#ifndef SHED_IMAGED_IMPORT_SOURCE_H
#define SHED_IMAGED_IMPORT_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/shed_err.h"

#define IMPORT_MAX_MEMBERS 100000
#define IMPORT_MAX_NAME 1024

struct import_source;

/* path: a directory (an OCI layout) or a file (a tar archive, any compression libarchive
 * reads). A tar's members are listed and checked here. */
int import_source_open(const char *path, struct import_source **source, struct shed_err *err);
void import_source_close(struct import_source *source);

bool import_source_is_dir(const struct import_source *source);
/* Whether a regular file (or a symlink to one, in an archive) of that name exists. */
bool import_source_has(const struct import_source *source, const char *name);

/* Reads the named members whole (at most max_len bytes each, else SHED_E_INVALID_IMAGE), in
 * one pass over an archive. data[i] is NULL for a name that does not exist; malloc'd. */
int import_source_read(struct import_source *source, const char *const *names, size_t count,
                       size_t max_len, char **data, size_t *lens, struct shed_err *err);

/* Streams members to sinks, in one pass over an archive. */
struct import_copy {
    const char *name;
    int (*write)(void *ctx, const void *data, size_t len, struct shed_err *err);
    void *ctx;
    bool copied; /* set once the member was streamed whole */
};
int import_source_copy(struct import_source *source, struct import_copy *copies, size_t count,
                       struct shed_err *err);

/* The declared size of a member (0 when it does not exist). */
uint64_t import_source_size(const struct import_source *source, const char *name);

#endif
