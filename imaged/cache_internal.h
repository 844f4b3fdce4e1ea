/* Shared by cache.c (ensure) and cache_list.c (list, remove, prune). Private to imaged/. */
#ifndef SHED_IMAGED_CACHE_INTERNAL_H
#define SHED_IMAGED_CACHE_INTERNAL_H

#include "common/shed_err.h"

/* Removes leftovers of killed writers of this variant (its IMAGE_FILE_TMP files, layout.h).
 * Call with the variant's lock held. *removed counts them. */
int remove_stale_tmp_files(const char *images_dir, const char *name, unsigned *removed,
                           struct shed_err *err);

/* Removes path if it exists. */
int unlink_if_present(const char *path, struct shed_err *err);

#endif
