/* The `container` backend: sheds as runc containers over their loop-mounted rootfs.
 *
 * A shed is its rootfs.ext4 loop-mounted (autoclear) under its instance directory, an OCI
 * runtime spec generated from the shed's settings, and a runc container "shed-<name>" whose
 * PID 1 is the project's static shed-init. Own PID, mount, UTS (hostname = shed name), IPC
 * and network namespaces (loopback only; with `container_network: {mode: bridge}` also a veth
 * on a bridge with NAT egress, see container_network.h), cpus/memory_mb as cgroup limits
 * under shed-<hash of instance_dir>/<name> (unique per server). runc keeps its
 * state under <data_dir>/runc, so several servers (and tests) never see each other's
 * containers.
 *
 * Status is read from /proc/<init pid>/stat and compared with the start time recorded at
 * start (pid reuse), so a status read spawns nothing. Processes (spawn, exec, listen) go
 * through the shed's agent — shed-init serving runtime/agent_protocol.h on the socket
 * <bundle>/agent.sock that runc hands it as fd 3 —, a connect and a fork in the shed; a shed
 * started by an older server (no socket) falls back to `runc exec` until its next start.
 * dial enters the shed's network namespace from a short-lived thread (see container_dial.c).
 *
 * Sheds outlive the server: the container's init is not the server's child, and a restarted
 * server finds the same runc root and the recorded pid. */
#ifndef SHED_BACKEND_CONTAINER_H
#define SHED_BACKEND_CONTAINER_H

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

#define CONTAINER_BACKEND_NAME "container"

/* Builds the backend for this config. Never fails because runc or root is missing (probe
 * says why the backend is unusable); fails only on allocation errors. shed-init is looked
 * for next to the running program (/proc/self/exe), where the build puts it.
 * Free with container_backend_free. */
int container_backend_new(const struct shed_config *config, struct shed_backend **backend,
                          struct shed_err *err);
void container_backend_free(struct shed_backend *backend);

/* The exit status exec reports when the command does not exist in the shed (as shells do):
 * the agent's exec fails with ENOENT (without the agent, the command is looked up in the
 * shed's PATH before runc is asked to run it). */
#define CONTAINER_EXIT_NOT_FOUND 127

#endif
