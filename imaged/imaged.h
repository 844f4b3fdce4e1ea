/* imaged: OCI layers → a writable ext4 root filesystem in one pass (no staging directory,
 * no mount, no root), and the image cache built on it. */
#ifndef SHED_IMAGED_H
#define SHED_IMAGED_H

#include <stdint.h>

#include "common/shed_err.h"
#include "oci/oci.h"

#define IMAGED_DEFAULT_SIZE (20ULL << 30)

struct imaged_convert_opts {
    uint64_t size_bytes; /* filesystem size; 0 = IMAGED_DEFAULT_SIZE */
    /* compressed layer bytes consumed so far / total of all layers */
    void (*progress)(uint64_t bytes_done, uint64_t bytes_total, void *ctx);
    /* non-fatal conditions, e.g. "skipping socket usr/run/x.sock" */
    void (*warning)(const char *message, void *ctx);
    void *ctx;
    volatile int
        *cancel; /* set non-zero (e.g. from a signal handler) to stop: SHED_E_INTERRUPTED */
};

/* Writes the flattened layers of the manifest (which, with all its blobs, must already be in
 * the store) to out_path through out_path.tmp + fsync + rename. On failure neither out_path
 * (if it did not exist before) nor the .tmp is left behind. */
int imaged_convert(const struct oci_store *store, const char *manifest_digest, const char *out_path,
                   const struct imaged_convert_opts *opts, struct shed_err *err);

#endif
