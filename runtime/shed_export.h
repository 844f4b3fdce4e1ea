/* Exporting a shed: its root filesystem as it sees it, flattened into one plain ext4 image
 * (`shed-server export NAME -o FILE.ext4`), e.g. to move it to another host, whatever its
 * disk kind (overlay, reflink or copy).
 *
 * The shed must not be running (its lock is held throughout, so nothing starts it
 * meanwhile). A child process in a private mount namespace assembles the shed's root
 * read-only (an overlay shed: its lower, its upper.ext4 and the overlay, with the options
 * the backend uses; otherwise rootfs.ext4) and walks it into the ext4 writer
 * (ext4_write_from_dir): types, modes, owners, times, xattrs, hardlinks, devices and holes
 * as the shed sees them. The namespace's mounts and loop devices vanish with the child,
 * however it ends. The output is written as FILE.ext4.tmp and renamed when complete.
 *
 * It forks and works in the child: call it from a single-threaded program (the CLI). */
#ifndef SHED_RUNTIME_SHED_EXPORT_H
#define SHED_RUNTIME_SHED_EXPORT_H

#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/df.h"
#include "runtime/instance.h"

struct shed_export_opts {
    uint64_t size_bytes;            /* 0: the larger of the shed's disk and its lower */
    const struct shed_probe *probe; /* whether the shed runs (NULL: its recorded status) */
    void (*warning)(const char *message, void *ctx);
    void *ctx;
};

/* SHED_E_SHED_NOT_FOUND, SHED_E_SHED_ALREADY_RUNNING ("stop it first"), SHED_E_NO_SPACE when
 * the tree does not fit size_bytes, and whatever mounting or writing fails with. */
int shed_export(const struct shed_config *config, struct instance_store *store, const char *name,
                const char *out_path, const struct shed_export_opts *opts, struct shed_err *err);

#endif
