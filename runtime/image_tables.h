/* The bodies of the image tables (GET /api/images, POST /api/images/prune, and the local
 * `shed-server images ls|prune`), with every size as system df counts it (df.h "disk"), so
 * `images`, `images prune`, `system df` and `system prune` show the same bytes for the same
 * image: images prune is system prune's plan in the images scope. */
#ifndef SHED_RUNTIME_IMAGE_TABLES_H
#define SHED_RUNTIME_IMAGE_TABLES_H

#include <jansson.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "runtime/prune.h"

/* The image list (image_cache_list) with physical_bytes, disk_bytes and shared_with filled
 * from a df scan of images_dir. */
int image_tables_list(const struct shed_config *config, struct instance_store *instances,
                      struct image_info_list *list, struct shed_err *err);

/* {"images": [image objects]} */
int image_tables_list_json(const struct shed_config *config, struct instance_store *instances,
                           json_t **body, struct shed_err *err);

/* Prunes images (opts: config, instances, probe, dry_run; the scope is images): unused
 * variants, their content-addressed rootfs and what the OCI store kept only for them (their
 * ref entries and blobs). {"deleted": [the image objects as listed before], "dry_run": b,
 * "skipped": [{"name", "reason"}], "freed": size, "notes": [...]}. */
int image_tables_prune_json(const struct prune_opts *opts, json_t **body, struct shed_err *err);

#endif
