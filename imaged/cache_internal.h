/* Shared by cache.c (ensure), cache_list.c (list, remove, prune) and import.c. Private to
 * imaged/. */
#ifndef SHED_IMAGED_CACHE_INTERNAL_H
#define SHED_IMAGED_CACHE_INTERNAL_H

#include "cache.h"
#include "common/shed_err.h"

/* Removes leftovers of killed writers of this variant (its IMAGE_FILE_TMP files, layout.h).
 * Call with the variant's lock held. *removed counts them. */
int remove_stale_tmp_files(const char *images_dir, const char *name, unsigned *removed,
                           struct shed_err *err);

/* Removes path if it exists. */
int unlink_if_present(const char *path, struct shed_err *err);

/* One formatted line to opts->log about the variant name (nothing without a log). */
void image_opts_log(const struct image_ensure_opts *opts, enum image_log_level level,
                    const char *name, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
