/* shed_create: the create pipeline (see shed_create.h). */
#include "shed_create.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/testhook.h"
#include "imaged/layout.h"
#include "runtime/instance_disk.h"

/* Pull progress is reported in steps of at least 1/PROGRESS_STEPS of the total, so a pull
 * sends about a hundred frames per phase however many chunks the transfer is cut into. */
#define PROGRESS_STEPS 100

struct create_run {
    const struct shed_config *config;
    struct instance_store *store;
    const struct shed_create_request *request;
    const struct shed_create_observer *observer;
    const char *image; /* the variant: request->image or "_base" */
    /* pull progress throttling */
    const char *last_pull_phase;
    uint64_t last_pull_done;
};

static void report(const struct create_run *run, const struct shed_create_progress *progress)
{
    if (run->observer != NULL && run->observer->progress != NULL)
        run->observer->progress(progress, run->observer->ctx);
}

static void report_message(const struct create_run *run, const char *phase, const char *message,
                           bool warning)
{
    struct shed_create_progress progress = {.phase = phase, .message = message, .warning = warning};
    report(run, &progress);
}

static bool is_empty(const char *text)
{
    return text == NULL || text[0] == '\0';
}

/* ---- image --------------------------------------------------------------------------- */

static void on_image_log(enum image_log_level level, const char *name, const char *message,
                         void *ctx)
{
    if (level == IMAGE_LOG_DETAIL)
        return;
    char text[700];
    snprintf(text, sizeof text, "%s: %s", name, message);
    report_message(ctx, "image", text, level == IMAGE_LOG_WARNING);
}

static bool pull_step_reached(struct create_run *run, const char *phase, uint64_t done,
                              uint64_t total)
{
    if (run->last_pull_phase == NULL || strcmp(run->last_pull_phase, phase) != 0 ||
        done < run->last_pull_done)
        return true; /* a new phase (or a restarted transfer) is always shown */
    if (done == total)
        return done != run->last_pull_done;
    return done - run->last_pull_done >= total / PROGRESS_STEPS;
}

static void on_image_progress(const char *name, const char *phase, uint64_t done, uint64_t total,
                              void *ctx)
{
    struct create_run *run = ctx;
    if (total == 0 || !pull_step_reached(run, phase, done, total))
        return;
    run->last_pull_phase = strcmp(phase, "download") == 0 ? "download" : "convert";
    run->last_pull_done = done;
    char text[200];
    snprintf(text, sizeof text, "%s image %s",
             strcmp(phase, "download") == 0 ? "Downloading" : "Converting", name);
    struct shed_create_progress progress = {
        .phase = "image", .message = text, .bytes_done = done, .bytes_total = total};
    report(run, &progress);
}

/* A name not in the config but cached in images_dir (a "discovered" image, api.md) is used as
 * it is: there is no ref to check it against. */
static int use_discovered_image(const struct create_run *run, char **rootfs_path,
                                struct shed_create_report *out, struct shed_err *err)
{
    cleanup_free char *path = image_layout_variant_rootfs(run->config->images_dir, run->image);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (!fs_exists(path))
        return shed_errf(err, SHED_E_UNKNOWN_IMAGE, "unknown image \"%s\"", run->image);
    char text[200];
    snprintf(text, sizeof text, "Using the cached image %s", run->image);
    report_message(run, "image", text, false);
    out->image_outcome = IMAGE_ENSURE_LOCAL;
    *rootfs_path = steal_pointer(&path);
    return 0;
}

/* A fresh image cache session per create: sessions are not shared between threads, and
 * concurrent creates of one variant serialise on the variant's flock (held per open file
 * description, so threads of this process wait for each other exactly like processes do):
 * the first converts, the others then find it fresh. */
static int ensure_image(struct create_run *run, char **rootfs_path, struct shed_create_report *out,
                        struct shed_err *err)
{
    if (shed_config_image_ref(run->config, run->image) == NULL) {
        if (strcmp(run->image, SHED_BASE_IMAGE_NAME) == 0)
            return shed_errf(
                err, SHED_E_UNKNOWN_IMAGE,
                "no image given and base_image is disabled (base_image: null in server.yaml)");
        if (!shed_image_name_is_valid(run->image))
            return shed_errf(err, SHED_E_UNKNOWN_IMAGE, "unknown image \"%.80s\"", run->image);
        return use_discovered_image(run, rootfs_path, out, err);
    }
    char text[200];
    snprintf(text, sizeof text, "Preparing image %s", run->image);
    report_message(run, "image", text, false);
    struct image_cache *cache = NULL;
    if (image_cache_open(run->config, &cache, err) < 0)
        return -1;
    struct image_ensure_opts opts = {.log = on_image_log,
                                     .progress = on_image_progress,
                                     .ctx = run,
                                     .cancel = run->request->cancel};
    struct image_ensure_result result;
    int rc = image_cache_ensure(cache, run->image, &opts, &result, err);
    image_cache_close(cache);
    if (rc < 0) {
        /* A configured local file that is gone is the server's problem (500), not a 404 of
         * the create request. */
        if (err->code == SHED_E_IMAGE_NOT_FOUND)
            err->code = SHED_E_BACKEND_ERROR;
        return shed_err_prefix(err, "image \"%s\"", run->image);
    }
    out->image_outcome = result.outcome;
    out->image_bytes_fetched = result.bytes_fetched;
    *rootfs_path = steal_pointer(&result.rootfs_path);
    image_ensure_result_free(&result);
    return 0;
}

/* ---- instance ------------------------------------------------------------------------ */

static int check_cancel(const struct create_run *run, struct shed_err *err)
{
    volatile int *cancel = run->request->cancel;
    if (cancel != NULL && *cancel)
        return shed_errf(err, SHED_E_INTERRUPTED, "the create of shed \"%s\" was cancelled",
                         run->request->name);
    return 0;
}

static int check_absent(const struct create_run *run, struct shed_err *err)
{
    cleanup_free char *dir = instance_store_path(run->store, run->request->name);
    if (dir == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (fs_exists(dir))
        return shed_errf(err, SHED_E_SHED_ALREADY_EXISTS, "shed \"%s\" already exists",
                         run->request->name);
    return 0;
}

/* The shed's disk (instance_disk.h): its own clone of the image, or an empty upper.ext4 over
 * the image's content as the read-only lower. */
static int make_disk(const struct create_run *run, const struct instance_disk_plan *plan,
                     struct instance *inst, struct shed_create_report *out, struct shed_err *err)
{
    bool overlay = plan->kind == INSTANCE_DISK_OVERLAY;
    report_message(run, "rootfs",
                   overlay ? "Making the shed's own layer over the image"
                           : "Cloning the image's root filesystem",
                   false);
    if (instance_disk_make(run->config, run->store, plan, inst, &out->clone_strategy, err) < 0)
        return -1;
    out->disk = inst->disk;
    char text[200];
    if (overlay)
        snprintf(text, sizeof text, "Root filesystem ready (overlay over the image, read-only)");
    else
        snprintf(text, sizeof text, "Root filesystem ready (%s)",
                 clone_strategy_name(out->clone_strategy));
    report_message(run, "rootfs", text, false);
    return 0;
}

int shed_create_check_resources(const struct shed_config *config, int cpus, int memory_mb,
                                struct shed_err *err)
{
    if (cpus > config->container.max_cpus)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "cpus %d is more than this server allows (at most %d)", cpus,
                         config->container.max_cpus);
    if (memory_mb > config->container.max_memory_mb)
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "memory_mb %d is more than this server allows (at most %d)", memory_mb,
                         config->container.max_memory_mb);
    return 0;
}

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int describe_instance(const struct create_run *run, const struct instance_disk_plan *plan,
                             struct instance *inst, struct shed_err *err)
{
    const struct shed_create_request *request = run->request;
    if (instance_init(inst, request->name, err) < 0)
        return -1;
    inst->status = INSTANCE_STARTING;
    instance_disk_describe(plan, inst);
    cleanup_free char *rootfs =
        instance_store_file_path(run->store, request->name, instance_disk_file(inst));
    if (rootfs == NULL) {
        instance_clear(inst);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    /* A default above the maximum (default_cpus 2 on a one-CPU host) is the maximum. */
    const struct shed_config *config = run->config;
    inst->cpus = request->cpus > 0 ? request->cpus
                                   : min_int(config->default_cpus, config->container.max_cpus);
    inst->memory_mb = request->memory_mb > 0
                          ? request->memory_mb
                          : min_int(config->default_memory_mb, config->container.max_memory_mb);
    if (instance_set_string(&inst->repo, request->repo, err) < 0 ||
        instance_set_string(&inst->local_dir, request->local_dir, err) < 0 ||
        instance_set_string(&inst->backend, request->backend->name, err) < 0 ||
        instance_set_string(&inst->image, run->image, err) < 0 ||
        instance_set_string(&inst->rootfs_path, rootfs, err) < 0) {
        instance_clear(inst);
        return -1;
    }
    return 0;
}

/* Appends " (rollback: why)" to the error the create failed with, so a shed that could not be
 * removed completely is never reported as cleanly rolled back. */
static void note_rollback_failure(struct shed_err *err, const struct shed_err *why)
{
    static const char prefix[] = " (rollback: ";
    size_t used = strlen(err->msg);
    if (used + sizeof prefix + 1 >= sizeof err->msg)
        return;
    /* Truncating the reason to what fits is intended: the start of it says what failed. */
    int room = (int)(sizeof err->msg - used - sizeof prefix - 1);
    snprintf(err->msg + used, sizeof err->msg - used, "%s%.*s)", prefix, room, why->msg);
}

/* Undoes a create: the backend first (it may hold a mount of the rootfs inside the instance
 * directory, and the directory removal never crosses a mount), then the directory. */
static void roll_back(const struct create_run *run, struct instance *inst, bool backend_touched,
                      struct shed_err *err)
{
    const struct shed_backend *backend = run->request->backend;
    struct shed_err why = {0};
    if (backend_touched && inst->status == INSTANCE_RUNNING && backend->stop != NULL &&
        backend->stop(backend, inst, &why) < 0)
        note_rollback_failure(err, &why);
    if (backend_touched && backend->delete != NULL && backend->delete (backend, inst, &why) < 0)
        note_rollback_failure(err, &why);
    if (instance_store_delete(run->store, run->request->name, &why) < 0)
        note_rollback_failure(err, &why);
}

static void on_backend_progress(const char *phase, const char *message, bool warning, void *ctx)
{
    report_message(ctx, phase, message, warning);
}

/* backend->create, then the running state saved. On failure the shed is rolled back. */
static int start_on_backend(const struct create_run *run, struct instance *inst,
                            struct shed_err *err)
{
    const struct shed_backend *backend = run->request->backend;
    if (backend->create == NULL || check_cancel(run, err) < 0) {
        if (backend->create == NULL)
            shed_errf(err, SHED_E_NOT_SUPPORTED, "backend \"%s\" cannot create sheds",
                      backend->name);
        roll_back(run, inst, false, err);
        return -1;
    }
    struct backend_progress progress = {.report = on_backend_progress,
                                        .ctx = (void *)run,
                                        .cancel = run->request->cancel,
                                        .config = run->config};
    if (backend->create(backend, inst, &progress, err) < 0) {
        roll_back(run, inst, true, err);
        return -1;
    }
    inst->status = INSTANCE_RUNNING;
    if (instance_store_save(run->store, inst, err) < 0) {
        roll_back(run, inst, true, err);
        return -1;
    }
    return 0;
}

/* The directory, metadata.json and the disk; rolled back on failure. */
static int make_instance(struct create_run *run, const struct instance_disk_plan *plan,
                         struct instance *inst, struct shed_create_report *out,
                         struct shed_err *err)
{
    if (instance_store_create_dir(run->store, run->request->name, err) < 0)
        return -1;
    shed_test_pause("create-dir");
    /* For an overlay shed this is also the pin on its lower (instance_disk.h). */
    if (instance_disk_save_pinned(run->store, plan, inst, err) < 0) {
        roll_back(run, inst, false, err);
        return -1;
    }
    shed_test_pause("create-metadata");
    if (make_disk(run, plan, inst, out, err) < 0 || check_cancel(run, err) < 0) {
        roll_back(run, inst, false, err);
        return -1;
    }
    shed_test_pause("create-rootfs");
    return 0;
}

/* Everything after the name is locked and known to be free. */
static int create_locked(struct create_run *run, struct instance *created,
                         struct shed_create_report *out, struct shed_err *err)
{
    cleanup_free char *image_rootfs = NULL;
    if (check_absent(run, err) < 0 || ensure_image(run, &image_rootfs, out, err) < 0)
        return -1;
    struct instance_disk_plan plan;
    if (instance_disk_plan(run->config, run->image, image_rootfs, &plan, err) < 0)
        return -1;
    if (plan.note[0] != '\0')
        report_message(run, "rootfs", plan.note, true);
    /* metadata.json ("starting") is the first thing in the directory: a create killed at any
     * later point leaves a shed that reads "error" and can be deleted, never an invisible
     * directory (one killed in between leaves an orphan that df, prune and startup see). */
    struct instance inst;
    int rc = describe_instance(run, &plan, &inst, err);
    if (rc == 0 && (rc = make_instance(run, &plan, &inst, out, err)) < 0)
        instance_clear(&inst);
    instance_disk_plan_clear(&plan);
    if (rc < 0)
        return -1;
    if (start_on_backend(run, &inst, err) < 0) {
        instance_clear(&inst);
        return -1;
    }
    *created = inst;
    return 0;
}

int shed_create(const struct shed_config *config, struct instance_store *store,
                const struct shed_create_request *request,
                const struct shed_create_observer *observer, struct instance *created,
                struct shed_create_report *report_out, struct shed_err *err)
{
    if (instance_check_name(request->name, err) < 0)
        return -1;
    if (request->backend == NULL)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "no backend given for shed \"%s\"",
                         request->name);
    if (shed_create_check_resources(config, request->cpus, request->memory_mb, err) < 0)
        return -1;
    struct create_run run = {
        .config = config,
        .store = store,
        .request = request,
        .observer = observer,
        .image = is_empty(request->image) ? SHED_BASE_IMAGE_NAME : request->image,
    };
    struct shed_create_report ignored;
    struct shed_create_report *out = report_out != NULL ? report_out : &ignored;
    memset(out, 0, sizeof *out);
    int lock = -1;
    if (instance_store_lock(store, request->name, &lock, err) < 0)
        return -1;
    int rc = create_locked(&run, created, out, err);
    instance_store_unlock(lock);
    return rc;
}
