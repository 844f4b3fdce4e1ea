/* Creating a shed: the pipeline behind POST /api/sheds.
 *
 *   lock the name → 409 if it exists → make the image ready (image_cache_ensure: pull and
 *   convert at most once across processes and threads) → decide the disk (instance_disk.h:
 *   config instance_disk) → create the instance directory → metadata.json (status starting;
 *   for an overlay shed written under its lower's lock, which pins the lower) → the disk:
 *   clone the image into <instance_dir>/<name>/rootfs.ext4, or make an empty upper.ext4 →
 *   backend->create → metadata.json (status running).
 *
 * Crash consistency: metadata.json is written right after the directory, so a create killed
 * at any later point leaves a shed that reads "error" (a "starting" shed whose lock is free)
 * and can be deleted, and server startup releases whatever it held (instance_reap). Killed
 * between the mkdir and that write, it leaves a directory without metadata: an orphan that
 * df reports and prune and startup remove.
 *
 * Any failure rolls the shed back completely: the backend's delete (which must cope with a
 * half-created shed), then the instance directory. What is left is what was there before:
 * no directory, no metadata, nothing of the backend. The image cache is not rolled back (a
 * pulled image stays cached, as pull-images would leave it).
 *
 * Progress is reported through one callback in the phases of api.md: "image" (with bytes
 * while a pull runs), "rootfs", then whatever the backend reports ("network", "container",
 * "repo", ...). The callback runs on the creating thread. */
#ifndef SHED_RUNTIME_SHED_CREATE_H
#define SHED_RUNTIME_SHED_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "imaged/cache.h"
#include "runtime/backend.h"
#include "runtime/clone.h"
#include "runtime/instance.h"

/* What to create. Strings are borrowed; NULL or "" means "not given". */
struct shed_create_request {
    const char *name;
    const char *image; /* a variant name; NULL: the server's base image ("_base") */
    const char *repo;
    const char *local_dir;
    int cpus;      /* 0: config default_cpus (at most container.max_cpus) */
    int memory_mb; /* 0: config default_memory_mb (at most container.max_memory_mb) */
    const struct shed_backend *backend; /* already resolved (detect done by the caller) */
    /* Set non-zero (from another thread) to cancel: the step running stops — a pull, a
     * conversion, the repo clone — and the shed is rolled back; SHED_E_INTERRUPTED. */
    volatile int *cancel;
};

/* One progress report. bytes_total is 0 when no byte counts go with the message. */
struct shed_create_progress {
    const char *phase;
    const char *message;
    bool warning;
    uint64_t bytes_done;
    uint64_t bytes_total;
};

struct shed_create_observer {
    void (*progress)(const struct shed_create_progress *progress, void *ctx);
    void *ctx;
};

/* How the shed came to be, for the server's log. */
struct shed_create_report {
    enum image_ensure_outcome image_outcome; /* IMAGE_ENSURE_LOCAL also for a discovered image */
    uint64_t image_bytes_fetched;
    enum clone_strategy clone_strategy; /* CLONE_STRATEGY_NONE for an overlay shed */
    enum instance_disk_kind disk;
};

/* The server's maximums (config container.max_cpus / max_memory_mb, by default the host's CPU
 * count and RAM): a request above one fails with SHED_E_INVALID_REQUEST naming the maximum.
 * 0 means "not given". Checked by the API before a create starts and by shed_create. */
int shed_create_check_resources(const struct shed_config *config, int cpus, int memory_mb,
                                struct shed_err *err);

/* Creates and starts the shed. On success *created is the shed as saved (status RUNNING);
 * free it with instance_clear. Errors: SHED_E_INVALID_SHED_NAME, SHED_E_UNKNOWN_IMAGE (a
 * name neither configured nor cached), SHED_E_SHED_ALREADY_EXISTS, and whatever pulling,
 * cloning or the backend fail with. report may be NULL. */
int shed_create(const struct shed_config *config, struct instance_store *store,
                const struct shed_create_request *request,
                const struct shed_create_observer *observer, struct instance *created,
                struct shed_create_report *report, struct shed_err *err);

#endif
