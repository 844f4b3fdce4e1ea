/* What a server killed in the middle of its work (kill -9, a crash, a power cut) left
 * behind, released when the next server starts (`shed-server serve`, before it listens).
 *
 * - A shed directory without metadata.json (a create killed between its mkdir and its first
 *   metadata write): removed.
 * - A shed recorded "starting" whose lock nobody holds (a create or start in flight when the
 *   server died): whatever it held is released (processes, the container, its network, the
 *   mounts, loop devices) and it is saved as "error": it can be started again or deleted.
 * - A shed that is not running (stopped, error, or recorded running but its init is gone):
 *   the same release, so no mount, loop device, runc container or netns outlives it; one
 *   recorded running is saved as stopped.
 * Before the release, processes with a file or working directory inside a mount below such a
 * shed's directory (a git clone orphaned by the crash, holding the rootfs mount busy) are
 * killed.
 * A running shed is never touched. Each shed is handled under its lock, taken without
 * waiting: one another process is working on right now is left alone. */
#ifndef SHED_RUNTIME_REAP_H
#define SHED_RUNTIME_REAP_H

#include <stddef.h>

#include "common/shed_err.h"
#include "runtime/backend.h"
#include "runtime/instance.h"

struct reap_report {
    size_t orphans_removed;  /* directories without metadata.json */
    size_t interrupted;      /* "starting" sheds released and saved as "error" */
    size_t released;         /* not-running sheds whose leftovers were released */
    size_t processes_killed; /* processes found inside those sheds' directories */
    size_t failures;         /* sheds that could not be released (see the log) */
};

/* Reaps every shed of the store; log (may be NULL) gets one line per thing done or failed. */
int instance_reap(struct instance_store *store, const struct backend_set *backends,
                  void (*log)(const char *line, void *ctx), void *ctx, struct reap_report *report,
                  struct shed_err *err);

#endif
