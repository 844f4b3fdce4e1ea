#include "config_snapshot.h"

#include <stdlib.h>
#include <string.h>

int config_snapshot_new(struct shed_config *config, const struct backend_set *backends,
                        struct config_snapshot **out, struct shed_err *err)
{
    struct config_snapshot *snapshot = calloc(1, sizeof *snapshot);
    if (snapshot == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    atomic_init(&snapshot->refs, 1);
    snapshot->config = *config;
    memset(config, 0, sizeof *config);
    backend_set_describe_default(backends, snapshot->config.default_backend, snapshot->info_backend,
                                 sizeof snapshot->info_backend);
    *out = snapshot;
    return 0;
}

struct config_snapshot *config_snapshot_retain(struct config_snapshot *snapshot)
{
    if (snapshot == NULL) /* a context without one (server/route.c's) */
        return NULL;
    atomic_fetch_add(&snapshot->refs, 1);
    return snapshot;
}

void config_snapshot_release(struct config_snapshot *snapshot)
{
    if (snapshot == NULL || atomic_fetch_sub(&snapshot->refs, 1) != 1)
        return;
    shed_config_free(&snapshot->config);
    free(snapshot);
}

void config_slot_init(struct config_slot *slot, struct config_snapshot *first)
{
    pthread_mutex_init(&slot->lock, NULL);
    slot->current = first;
}

struct config_snapshot *config_slot_acquire(struct config_slot *slot)
{
    pthread_mutex_lock(&slot->lock);
    struct config_snapshot *snapshot = config_snapshot_retain(slot->current);
    pthread_mutex_unlock(&slot->lock);
    return snapshot;
}

void config_slot_swap(struct config_slot *slot, struct config_snapshot *next)
{
    pthread_mutex_lock(&slot->lock);
    struct config_snapshot *previous = slot->current;
    slot->current = next;
    pthread_mutex_unlock(&slot->lock);
    config_snapshot_release(previous);
}

void config_slot_destroy(struct config_slot *slot)
{
    config_snapshot_release(slot->current);
    slot->current = NULL;
    pthread_mutex_destroy(&slot->lock);
}
