/* Shared by df.c, df_images.c, df_sheds.c and prune*.c. Private to runtime/. */
#ifndef SHED_RUNTIME_DF_PRIVATE_H
#define SHED_RUNTIME_DF_PRIVATE_H

#include "df.h"

struct df_scan_ctx {
    const struct shed_config *config;
    struct instance_store *instances;
    const struct shed_probe *probe;
    struct df_extent_index *extents;
    struct df_report *report;
};

int df_scan_images(struct df_scan_ctx *ctx, struct shed_err *err);
int df_scan_sheds(struct df_scan_ctx *ctx, struct shed_err *err);

/* The shared (reflinked) extents the scan recorded, each inode's once. */
struct df_extent {
    dev_t dev;
    ino_t ino;
    uint64_t start, end; /* physical bytes [start, end) */
};
size_t df_extent_count(const struct df_extent_index *index);
void df_extent_get(const struct df_extent_index *index, size_t i, struct df_extent *extent);

/* Sets report->no_reflink_reason when a shed's rootfs cannot be a reflink of its image. */
int df_check_reflink(const struct shed_config *config, struct df_report *report,
                     struct shed_err *err);

/* Sets the disk bytes (df.h) of every file, item and total of the report, and the items'
 * shared_with. */
int df_attribute_disk(struct df_report *report, const struct df_extent_index *index,
                      struct shed_err *err);

int df_measure_into(struct df_scan_ctx *ctx, const char *path, const char *kind,
                    struct df_file *file, bool *found, struct shed_err *err);
int df_measure_append(struct df_scan_ctx *ctx, const char *path, const char *kind,
                      struct df_file_list *list, struct shed_err *err);

#endif
