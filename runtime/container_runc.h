/* Private to the container backend: the runc invocations (container_runc.c). */
#ifndef SHED_CONTAINER_RUNC_H
#define SHED_CONTAINER_RUNC_H

#include <stdbool.h>
#include <sys/types.h>

#include "container_internal.h"
#include "runtime/backend.h"

/* runc run --detach with the shed's stdout/stderr on the console's pipe, drained into
 * console.log while runc runs, and agent_fd (-1: none) as fd 3 of its init (--preserve-fds
 * 1); runc's message on failure. */
int runc_run_detached(const struct container_state *state, const struct container_paths *paths,
                      struct container_console *console, int agent_fd, struct shed_err *err);
/* The init pid runc wrote with --pid-file. */
int runc_read_pid_file(const struct container_paths *paths, pid_t *pid, struct shed_err *err);
/* Whether runc has state for the container (its directory under --root). */
bool runc_container_exists(const struct container_paths *paths);
/* runc delete --force (kills what is left, removes cgroups and state); no state: no-op. */
int runc_delete_force(const struct container_state *state, const struct container_paths *paths,
                      struct shed_err *err);
/* runc exec [-t] <id> argv... with the request's fds; waits; exit status passed through. */
int runc_exec(const struct container_state *state, const struct container_paths *paths,
              const struct backend_exec_request *request, int *exit_status, struct shed_err *err);

#endif
