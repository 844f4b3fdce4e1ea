/* Load/reconcile, start, stop and delete of existing sheds (see shed_lifecycle.h). */
#include "runtime/shed_lifecycle.h"

#include <errno.h>
#include <signal.h>

#include "common/testhook.h"
#include "runtime/instance_disk.h"

int shed_lifecycle_backend(const struct shed_lifecycle *lifecycle, const struct instance *inst,
                           const struct shed_backend **backend, struct shed_err *err)
{
    *backend = backend_set_find(lifecycle->backends, inst->backend);
    if (*backend == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "shed \"%s\" uses backend \"%s\", which is not available in this build "
                         "of shed-server",
                         inst->name, inst->backend[0] ? inst->backend : "(none)");
    return 0;
}

int shed_lifecycle_is_alive(const struct shed_lifecycle *lifecycle, const struct instance *inst)
{
    const struct shed_backend *backend = backend_set_find(lifecycle->backends, inst->backend);
    if (backend != NULL && backend->status != NULL) {
        enum instance_status status;
        struct shed_err ignored = {0};
        if (backend->status(backend, inst, &status, &ignored) < 0)
            return -1;
        return status == INSTANCE_RUNNING;
    }
    if (inst->pid <= 0)
        return -1;
    return !(kill(inst->pid, 0) < 0 && errno == ESRCH);
}

/* Saves a dead "running" shed as stopped — unless a lifecycle operation holds its lock
 * (it is changing the state right now; it will save the truth), or it changed meanwhile. */
static void save_as_stopped(const struct shed_lifecycle *lifecycle, struct instance *inst)
{
    int lock = -1;
    struct shed_err ignored = {0};
    if (instance_store_trylock(lifecycle->store, inst->name, &lock, &ignored) < 0 || lock < 0)
        return;
    struct instance fresh;
    if (instance_store_load(lifecycle->store, inst->name, &fresh, &ignored) == 0) {
        if (fresh.status == INSTANCE_RUNNING && fresh.pid == inst->pid) {
            fresh.status = INSTANCE_STOPPED;
            fresh.pid = 0;
            instance_store_save(lifecycle->store, &fresh, &ignored);
        }
        instance_clear(&fresh);
    }
    instance_store_unlock(lock);
}

/* A shed recorded "starting" whose lock nobody holds was left by a create that never
 * finished (the server was killed mid-create): report and save it as "error", so that it is
 * visibly broken and DELETE (which releases whatever the backend set up) cleans it away. */
static void mark_interrupted_create(const struct shed_lifecycle *lifecycle, struct instance *inst)
{
    int lock = -1;
    struct shed_err ignored = {0};
    if (instance_store_trylock(lifecycle->store, inst->name, &lock, &ignored) < 0 || lock < 0)
        return; /* a create is running right now: "starting" is the truth */
    struct instance fresh;
    if (instance_store_load(lifecycle->store, inst->name, &fresh, &ignored) == 0) {
        if (fresh.status == INSTANCE_STARTING) {
            fresh.status = INSTANCE_ERROR;
            if (instance_store_save(lifecycle->store, &fresh, &ignored) == 0)
                inst->status = INSTANCE_ERROR;
        }
        instance_clear(&fresh);
    }
    instance_store_unlock(lock);
}

void shed_lifecycle_reconcile(const struct shed_lifecycle *lifecycle, struct instance *inst)
{
    if (inst->status == INSTANCE_STARTING) {
        mark_interrupted_create(lifecycle, inst);
        return;
    }
    if (inst->status != INSTANCE_RUNNING || shed_lifecycle_is_alive(lifecycle, inst) != 0)
        return;
    save_as_stopped(lifecycle, inst);
    inst->status = INSTANCE_STOPPED;
    inst->pid = 0;
}

int shed_lifecycle_load(const struct shed_lifecycle *lifecycle, const char *name,
                        struct instance *inst, struct shed_err *err)
{
    if (instance_store_load(lifecycle->store, name, inst, err) < 0)
        return -1;
    shed_lifecycle_reconcile(lifecycle, inst);
    return 0;
}

/* ---- operations under the lock ------------------------------------------------------- */

typedef int (*locked_op)(const struct shed_lifecycle *lifecycle, struct instance *inst,
                         struct shed_err *err);

/* Runs op on the shed with its lock held; the shed is (re)loaded under the lock. */
static int with_shed_locked(const struct shed_lifecycle *lifecycle, const char *name, locked_op op,
                            struct instance *inst, struct shed_err *err)
{
    if (instance_check_name(name, err) < 0)
        return -1;
    int lock = -1;
    if (instance_store_lock(lifecycle->store, name, &lock, err) < 0)
        return -1;
    int rc = shed_lifecycle_load(lifecycle, name, inst, err);
    if (rc == 0) {
        rc = op(lifecycle, inst, err);
        if (rc < 0)
            instance_clear(inst);
    }
    instance_store_unlock(lock);
    return rc;
}

static int stop_locked(const struct shed_lifecycle *lifecycle, struct instance *inst,
                       struct shed_err *err)
{
    if (inst->status != INSTANCE_RUNNING)
        return shed_errf(err, SHED_E_SHED_ALREADY_STOPPED, "shed \"%s\" is not running",
                         inst->name);
    const struct shed_backend *backend;
    if (shed_lifecycle_backend(lifecycle, inst, &backend, err) < 0)
        return -1;
    if (backend->stop == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" cannot stop sheds",
                         backend->name);
    if (backend->stop(backend, inst, err) < 0)
        return -1;
    inst->status = INSTANCE_STOPPED;
    inst->pid = 0;
    return instance_store_save(lifecycle->store, inst, err);
}

static int start_locked(const struct shed_lifecycle *lifecycle, struct instance *inst,
                        struct shed_err *err)
{
    if (inst->status == INSTANCE_RUNNING)
        return shed_errf(err, SHED_E_SHED_ALREADY_RUNNING, "shed \"%s\" is already running",
                         inst->name);
    const struct shed_backend *backend;
    if (shed_lifecycle_backend(lifecycle, inst, &backend, err) < 0)
        return -1;
    if (backend->start == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" cannot start sheds",
                         backend->name);
    if (backend->start(backend, inst, NULL, err) < 0)
        return -1;
    inst->status = INSTANCE_RUNNING;
    return instance_store_save(lifecycle->store, inst, err);
}

/* A running shed is stopped first. A stopped shed whose backend is not built in can still be
 * deleted: nothing of it runs, and the directory removal never crosses a mount point. */
static int delete_locked(const struct shed_lifecycle *lifecycle, struct instance *inst,
                         struct shed_err *err)
{
    if (inst->status == INSTANCE_RUNNING && stop_locked(lifecycle, inst, err) < 0)
        return shed_err_prefix(err, "cannot stop shed \"%s\" before deleting it", inst->name);
    const struct shed_backend *backend = backend_set_find(lifecycle->backends, inst->backend);
    if (backend != NULL && backend->delete != NULL && backend->delete (backend, inst, err) < 0)
        return -1;
    shed_test_pause("delete-released");
    if (instance_store_delete(lifecycle->store, inst->name, err) < 0)
        return -1;
    /* An older lower this shed was the last to stand on; if that fails, prune collects it. */
    struct shed_err ignored = {0};
    instance_disk_release_lower(lifecycle->images_dir, lifecycle->store, inst, &ignored);
    return 0;
}

int shed_lifecycle_start(const struct shed_lifecycle *lifecycle, const char *name,
                         struct instance *inst, struct shed_err *err)
{
    return with_shed_locked(lifecycle, name, start_locked, inst, err);
}

int shed_lifecycle_stop(const struct shed_lifecycle *lifecycle, const char *name,
                        struct instance *inst, struct shed_err *err)
{
    return with_shed_locked(lifecycle, name, stop_locked, inst, err);
}

int shed_lifecycle_delete(const struct shed_lifecycle *lifecycle, const char *name,
                          struct instance *inst, struct shed_err *err)
{
    return with_shed_locked(lifecycle, name, delete_locked, inst, err);
}
