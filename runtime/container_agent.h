/* Private to the container backend: processes in a shed through its agent (shed-init on fd 3,
 * runtime/agent_protocol.h) — container_agent.c — and, for a shed started before the agent
 * existed (no <bundle>/agent.sock), through `runc exec` — container_runc_process.c. */
#ifndef SHED_CONTAINER_AGENT_H
#define SHED_CONTAINER_AGENT_H

#include <stdbool.h>

#include "container_internal.h"
#include "runtime/backend.h"

/* The environment of a process started without one (exec, the sessions' tmux): the same as
 * the shed's init gets in its OCI spec (container_spec.c). */
extern const char *const container_default_env[];

/* ---- container_agent.c --------------------------------------------------------------- */

/* Makes <bundle>/agent.sock (0600) listening; *listen_fd is passed to runc run as fd 3 and
 * closed by the caller once the container runs. A stale socket file is replaced. */
int container_agent_socket_create(const struct container_paths *paths, int *listen_fd,
                                  struct shed_err *err);
/* Whether the shed was started with an agent (its socket exists). */
bool container_agent_present(const struct container_paths *paths);

int container_agent_spawn(const struct container_paths *paths,
                          const struct backend_spawn_request *request,
                          struct backend_process **process, struct shed_err *err);
int container_agent_listen(const struct container_paths *paths, struct backend_listener **listener,
                           struct shed_err *err);
/* backend->exec through the agent: the command with container_default_env, cwd /, the
 * request's fds (with tty: a pty relayed to them); waits. A missing command prints
 * "shed: CMD: command not found" on the request's stderr and exits 127. */
int container_agent_exec(const struct container_paths *paths,
                         const struct backend_exec_request *request, int *exit_status,
                         struct shed_err *err);

/* ---- container_runc_process.c --------------------------------------------------------- */

/* spawn through `runc exec` (a child of this process; a tty is a pty of the host relayed by
 * runc). With login, /bin/sh stands in for the login shell. */
int container_runc_spawn(const struct container_state *state, const struct container_paths *paths,
                         const struct backend_spawn_request *request,
                         struct backend_process **process, struct shed_err *err);

#endif
