/* The lifecycle of existing sheds — load with status reconciliation, start, stop, delete —
 * as one implementation for every front end: the HTTP API (server/handlers_sheds.c) and the
 * SSH front door (ssh/, which starts a stopped shed on connect).
 *
 * Locking: start, stop and delete take the shed's lifecycle lock (instance_store_lock) and
 * reload the shed under it, so operations on one shed are serialised while different sheds
 * proceed in parallel. Loading takes no lock.
 *
 * Reconciliation: metadata.json says what the shed was last seen doing; the backend says
 * what it does now. A shed recorded running whose backend reports it gone reads (and is
 * saved) as stopped; a shed recorded "starting" whose lock nobody holds was left by a create
 * that never finished, and reads (and is saved) as "error". A save is skipped while a
 * lifecycle operation holds the lock: that operation is about to save the truth. */
#ifndef SHED_SHED_LIFECYCLE_H
#define SHED_SHED_LIFECYCLE_H

#include "common/shed_err.h"
#include "runtime/backend.h"
#include "runtime/instance.h"

/* What the operations work on; neither is owned. */
struct shed_lifecycle {
    struct instance_store *store;
    const struct backend_set *backends;
    const char *images_dir; /* where an overlay shed's lower lives (owned by the caller) */
};

/* The backend that manages an existing shed (by the name in its metadata);
 * SHED_E_NOT_SUPPORTED when this build does not have it. */
int shed_lifecycle_backend(const struct shed_lifecycle *lifecycle, const struct instance *inst,
                           const struct shed_backend **backend, struct shed_err *err);
/* Whether a shed recorded as running still runs: the backend's answer when it is built in,
 * else whether the recorded pid is alive. 1 yes, 0 no, -1 cannot tell. */
int shed_lifecycle_is_alive(const struct shed_lifecycle *lifecycle, const struct instance *inst);
/* Brings inst's status in line with the backend (see above). */
void shed_lifecycle_reconcile(const struct shed_lifecycle *lifecycle, struct instance *inst);
/* Loads a shed and reconciles it. SHED_E_SHED_NOT_FOUND, SHED_E_INVALID_SHED_NAME. */
int shed_lifecycle_load(const struct shed_lifecycle *lifecycle, const char *name,
                        struct instance *inst, struct shed_err *err);

/* Each fills *inst with the shed as it is afterwards (clear it with instance_clear; nothing
 * to clear on failure). SHED_E_SHED_ALREADY_RUNNING / _STOPPED when there is nothing to do,
 * SHED_E_NOT_SUPPORTED when the backend cannot. delete stops a running shed first; *inst is
 * then the shed as it was. */
int shed_lifecycle_start(const struct shed_lifecycle *lifecycle, const char *name,
                         struct instance *inst, struct shed_err *err);
int shed_lifecycle_stop(const struct shed_lifecycle *lifecycle, const char *name,
                        struct instance *inst, struct shed_err *err);
int shed_lifecycle_delete(const struct shed_lifecycle *lifecycle, const char *name,
                          struct instance *inst, struct shed_err *err);

#endif
