/* Private to server/: the TCP tunnels of GET /api/sheds/{n}/connect/{port} (an HTTP upgrade
 * to shed-tcp), with their limits.
 *
 * A tunnel is reserved before the shed is dialed (at most tunnel_max_per_client per client:
 * 503 SERVER_BUSY beyond), answered 101 with the dialed socket, and then run by its own
 * thread, which copies bytes both ways until both directions have ended, until no byte moved
 * either way for tunnel_idle_timeout_seconds, or until the server stops. The threads are
 * joinable: tunnel_registry_stop wakes every tunnel and joins every thread.
 *
 * libmicrohttpd facts: the upgraded socket is non-blocking, bytes the client sent after the
 * headers arrive in extra_in, and the socket is released with MHD_upgrade_action(CLOSE),
 * never close(). When the client goes away before the upgrade happens, the upgrade callback
 * never runs: the request's completion then abandons the tunnel (tunnel_abandon), which
 * closes the dialed socket and frees the reservation. */
#ifndef SHED_API_TUNNEL_H
#define SHED_API_TUNNEL_H

#include "common/shed_err.h"
#include "config/config.h"
#include "connections.h"
#include "http_util.h"

struct tunnel_registry;
struct tunnel;

int tunnel_registry_new(const struct shed_config_http *limits, struct tunnel_registry **registry,
                        struct shed_err *err);
/* Wakes every tunnel and waits for their threads; new reservations fail from now on. */
void tunnel_registry_stop(struct tunnel_registry *registry);
/* After tunnel_registry_stop (and after the HTTP daemon stopped). */
void tunnel_registry_free(struct tunnel_registry *registry);

/* A place for one more tunnel of client: SHED_E_SERVER_BUSY over the cap (or stopping). */
int tunnel_reserve(struct tunnel_registry *registry, const struct conn_client *client,
                   struct tunnel **tunnel, struct shed_err *err);
/* Gives a reservation back (the dial failed). */
void tunnel_release(struct tunnel *tunnel);
/* The 101 response that runs the tunnel over shed_fd (taken in every case). On success
 * response->tunnel is the tunnel: the server keeps it until the request completes. */
void tunnel_respond_upgrade(struct tunnel *tunnel, int shed_fd, struct api_response *response);
/* Called once the request is over; a tunnel whose upgrade never happened is closed and
 * freed. *slot is where the server keeps the tunnel: the upgrade clears it. */
void tunnel_set_owner_slot(struct tunnel *tunnel, struct tunnel **slot);
void tunnel_abandon(struct tunnel *tunnel);

#endif
