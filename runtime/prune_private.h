/* Shared by prune.c (planning) and prune_execute.c. Private to runtime/. */
#ifndef SHED_RUNTIME_PRUNE_PRIVATE_H
#define SHED_RUNTIME_PRUNE_PRIVATE_H

#include "prune.h"

void prune_item_clear(struct prune_item *item);
/* Moves *item into list. */
int prune_list_add(struct prune_list *list, struct prune_item *item, struct shed_err *err);
int prune_skip(struct prune_list *skipped, enum prune_kind kind, const char *name, const char *path,
               const char *reason, struct shed_err *err);
int prune_add_note(struct prune_plan *plan, struct shed_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "too recent (3h < 72h)" */
void prune_reason_too_recent(uint64_t age, uint64_t limit, char *out, size_t len);
uint64_t prune_age_seconds(time_t now, const struct timespec *mtime);

/* Non-blocking flock probe that never creates the file: *held, or *fd holding the lock
 * (-1 when the file does not exist: nobody can hold it). */
int prune_probe_lock(const char *path, int *fd, bool *held, struct shed_err *err);
int prune_any_variant_lock_held(const struct shed_config *config, bool *held, struct shed_err *err);
/* lock_path NULL: every variant lock (*fd stays -1). */
int prune_orphan_lock_state(const struct shed_config *config, const char *lock_path, int *fd,
                            bool *held, struct shed_err *err);

/* Sets every deleting item's freed and the plan's total from the plan's extent index. */
int prune_compute_all_freed(struct prune_plan *plan, struct shed_err *err);

#endif
