/* flatten: applies the members of one layer, in order, to the ext4 writer with OCI
 * semantics: member names normalised, `..` escapes rejected, `.wh.<name>` whiteouts and
 * `.wh..wh..opq` opaque markers turned into removals of lower-layer entries, everything
 * else into mkdir/symlink/mknod/hardlink/file operations. Private to imaged/. */
#ifndef SHED_FLATTEN_H
#define SHED_FLATTEN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "ext4_writer.h"
#include "imaged.h"
#include "layer_reader.h"

/* Normalises a tar member name into the writer's path form: "./a//b/" → "a/b", "/" and
 * "." → "" (the root). ".." components are resolved lexically; one that would climb above
 * the root fails with SHED_E_INVALID_IMAGE. *out is malloc'd. */
int flatten_normalize_path(const char *name, char **out, struct shed_err *err);

/* State shared by all layers of one conversion. */
struct flatten_state {
    struct ext4_writer *writer;
    const struct imaged_convert_opts *opts;
    uint64_t bytes_done_before_layer; /* compressed bytes of the layers already flattened */
    uint64_t bytes_total;
    /* After the writer ran out of space, the remaining members are only read and sized so
     * that the error can say how big the filesystem must be. */
    bool out_of_space;
    struct shed_err out_of_space_err;
    uint64_t file_bytes; /* sum of all regular file sizes seen, in every layer */
    uint64_t entries;    /* members seen, in every layer */
};

/* Reads every member of the layer and applies it. Returns 0 (also once out of space: see
 * state->out_of_space) or -1 with err filled, prefixed with the member at fault. */
int flatten_layer(struct flatten_state *state, struct layer_reader *reader, unsigned layer,
                  struct shed_err *err);

#endif
