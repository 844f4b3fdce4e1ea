/* Private to server/: the connections the API server holds, and the limits on them.
 *
 * The server accepts its own connections (libmicrohttpd runs with MHD_USE_NO_LISTEN_SOCKET
 * and gets each socket through MHD_add_connection), so that every connection is answered:
 *
 * - at most max_connections at once, and max_connections_per_client from one client (an
 *   IPv4 address; on the unix socket, a uid). A connection over either cap is answered
 *   "503 SERVER_BUSY" (the API's error JSON, Connection: close) and closed right away — the
 *   acceptor never stops accepting, so a flood never fills the listen queue and a normal
 *   client keeps getting through (libmicrohttpd's own per-IP limit backs this up);
 * - a request's headers and body must arrive within request_timeout_seconds of the
 *   connection opening, or of its request line on a kept-alive connection, and a kept-alive
 *   connection may wait idle_timeout_seconds for its next request. A client over its deadline
 *   gets "408 REQUEST_TIMEOUT" (when it was sending a request) and the connection is shut
 *   down by a watchdog thread. libmicrohttpd's own timeout is an idle timeout, which a client
 *   sending one byte at a time never trips: the watchdog's deadline does not move.
 *
 * While a handler runs (a create may take minutes, a stream or a tunnel longer) there is no
 * deadline. One thread per connection (server.h) stays, bounded by the caps. */
#ifndef SHED_API_CONNECTIONS_H
#define SHED_API_CONNECTIONS_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/shed_err.h"
#include "config/config.h"

/* Who a connection comes from, for the per-client caps: an IPv4 address or a unix uid. */
struct conn_client {
    bool is_unix;
    uint32_t id; /* the address (host order) or the peer's uid */
};

/* "127.0.0.1" or "uid 1000". */
void conn_client_describe(const struct conn_client *client, char *out, size_t len);
/* The client of a connection libmicrohttpd handles (from its address or peer credentials). */
int conn_client_of(struct MHD_Connection *connection, struct conn_client *client);

struct conn_table;

int conn_table_new(const struct shed_config_http *limits, struct conn_table **table,
                   struct shed_err *err);
/* After conn_acceptor_stop and MHD_stop_daemon. */
void conn_table_free(struct conn_table *table);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback (cls: the table). */
void conn_table_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/* The request phases of a connection (all no-ops for a connection the table does not know). */
void conn_request_line(struct MHD_Connection *connection); /* its request line arrived */
/* Answered before its body arrived (413): the deadline still holds, but without a 408. */
void conn_request_answered(struct MHD_Connection *connection);
void conn_request_handling(struct MHD_Connection *connection); /* the handler runs */
void conn_request_done(struct MHD_Connection *connection);     /* the response went out */
/* The connection became a tunnel (101): tunnels have their own timeouts (tunnel.h). */
void conn_request_upgraded(struct MHD_Connection *connection);

/* Starts the acceptor thread on the listening sockets (which stay the caller's) and the
 * watchdog thread; connections go to daemon. */
int conn_acceptor_start(struct conn_table *table, struct MHD_Daemon *daemon, const int *listen_fds,
                        size_t count, struct shed_err *err);
/* Stops accepting (new connections are refused by the kernel from now on) and joins both
 * threads. Connections already handed over stay. */
void conn_acceptor_stop(struct conn_table *table);

#endif
