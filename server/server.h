/* The REST API server (api.md) on libmicrohttpd.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION) with an internal
 * polling thread that only accepts. Several handlers block by nature — create, start and
 * stop drive a backend for seconds, create streams SSE progress while it works, sessions
 * run commands in the shed — and in libmicrohttpd's thread-pool mode a blocking handler
 * stalls every other connection assigned to the same pool thread. Keep-alive connections
 * (wrk, the CLI) pay the thread creation once per connection, not per request.
 *
 * Shutdown (server_stop): stop accepting (MHD_quiesce_daemon), wait until the requests in
 * flight have completed, then close the remaining idle connections. */
#ifndef SHED_API_SERVER_H
#define SHED_API_SERVER_H

#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

struct server;

/* Starts serving config->bind:config->http_port. The config and the backend set must outlive
 * the server. Creates data/instance dirs and the SSH host key when missing, and re-discovers
 * existing sheds from their metadata.json. */
int server_start(const struct shed_config *config, const struct backend_set *backends,
                 struct server **server, struct shed_err *err);
/* The port actually bound (useful with http_port 0). */
uint16_t server_port(const struct server *server);
/* How many sheds were found at start. */
size_t server_discovered_sheds(const struct server *server);
/* Graceful stop (see above); frees the server. */
void server_stop(struct server *server);

#endif
