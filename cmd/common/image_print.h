/* Human output of the image tables (GET /api/images, POST /api/images/prune), shared by
 * `shed-server images` and `shed images`, so both print the same columns: ON DISK (the bytes
 * system df counts for the image; "shared with X" when they are counted for X) and LOGICAL
 * (the rootfs' apparent size). */
#ifndef SHED_CMD_IMAGE_PRINT_H
#define SHED_CMD_IMAGE_PRINT_H

#include <jansson.h>
#include <stdio.h>

/* NAME CACHED ON DISK LOGICAL SOURCE REF DIGEST, one row per image object. */
void image_print_table(const json_t *images);
/* One line per deleted image and per skipped one, then the total freed. */
void image_print_prune(FILE *out, const json_t *body);
/* "(2.5 MiB on disk, shares four, frees 1.0 MiB)": a prune line's detail, from an object with
 * disk_bytes, shared_with and freed (the parts that apply). */
void image_print_prune_detail(const json_t *item, char *out, size_t len);
/* "241.8 MiB", "shared with deb", "1.0 MiB (shares deb)", "-": the ON DISK cell of an object
 * with disk_bytes and shared_with. */
void image_print_disk_cell(const json_t *obj, char *out, size_t len);

#endif
