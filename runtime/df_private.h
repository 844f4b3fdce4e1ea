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

int df_measure_into(struct df_scan_ctx *ctx, const char *path, const char *kind,
                    struct df_file *file, bool *found, struct shed_err *err);
int df_measure_append(struct df_scan_ctx *ctx, const char *path, const char *kind,
                      struct df_file_list *list, struct shed_err *err);

#endif
