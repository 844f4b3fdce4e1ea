/* Which image variants the sheds use: the "image" field of every
 * <instance_dir>/<shed>/metadata.json. imaged/ never reads instance metadata itself (it sits
 * below runtime/); callers pass this list to image removal and pruning. */
#ifndef SHED_RUNTIME_INSTANCE_REFS_H
#define SHED_RUNTIME_INSTANCE_REFS_H

#include "common/shed_err.h"

/* *names: malloc'd, NULL-terminated, sorted, without duplicates or empty names. A missing
 * instance_dir or a shed directory without metadata.json contributes nothing; a metadata.json
 * that cannot be read or parsed is an error (guessing could delete an image a shed needs). */
int instance_image_refs(const char *instance_dir, char ***names, struct shed_err *err);
void instance_image_refs_free(char **names);

#endif
