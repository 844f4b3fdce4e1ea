/* The configuration a running server answers with, as refcounted immutable snapshots: every
 * request takes the current one when it starts and keeps it to its end (an event stream's
 * producer thread holds its own reference), so a reload (SIGHUP) never changes the config
 * under a handler; it publishes a new snapshot, and the old one is freed when its last
 * request is done. Private to server/. */
#ifndef SHED_API_CONFIG_SNAPSHOT_H
#define SHED_API_CONFIG_SNAPSHOT_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

struct config_snapshot {
    atomic_uint refs;
    struct shed_config config;
    /* GET /api/info's "backend" for this config: default_backend, or with `detect` the first
     * backend that probed usable when the snapshot was made, or "none". */
    char info_backend[32];
};

/* A snapshot of *config (moved in: *config is left empty), one reference held. */
int config_snapshot_new(struct shed_config *config, const struct backend_set *backends,
                        struct config_snapshot **snapshot, struct shed_err *err);
struct config_snapshot *config_snapshot_retain(struct config_snapshot *snapshot);
void config_snapshot_release(struct config_snapshot *snapshot);

/* The current snapshot, swapped atomically. */
struct config_slot {
    pthread_mutex_t lock;
    struct config_snapshot *current;
};

void config_slot_init(struct config_slot *slot, struct config_snapshot *first);
/* A reference to the current snapshot (release it when done). */
struct config_snapshot *config_slot_acquire(struct config_slot *slot);
/* Publishes next (its reference moves into the slot) and drops the slot's reference to the
 * previous one. */
void config_slot_swap(struct config_slot *slot, struct config_snapshot *next);
void config_slot_destroy(struct config_slot *slot);

#endif
