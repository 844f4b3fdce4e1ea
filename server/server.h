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

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"
#include "runtime/backend.h"

struct server;

/* Where a running server's configuration comes from: what a restart would read (server.yaml
 * by the lookup, then the command line's overrides). The server calls it for each reload. */
struct server_config_source {
    int (*load)(void *ctx, struct shed_config *config, struct shed_err *err);
    /* The file load would read now, or NULL (built-in defaults); malloc'd. */
    char *(*file)(void *ctx);
    void *ctx; /* must outlive the server */
};

/* One server per data dir: <data_dir>/shed-server.pid, flocked for the server's life. Taken
 * before anything that assumes no other server works on the data dir (the cleanup after an
 * interrupted server, then server_start). SHED_E_CONFIG when another server holds it;
 * creates data_dir when missing. */
struct server_claim;
int server_claim_data_dir(const char *data_dir, struct server_claim **claim, struct shed_err *err);
void server_claim_release(struct server_claim *claim);

/* Starts serving config->bind:config->http_port. config and claim (of config->data_dir) are
 * moved in (config left empty, claim released with the server, also on failure); source
 * loads later configurations (server_reload). The backend set must outlive the server.
 * Creates data/instance dirs and the SSH host key when missing and re-discovers existing
 * sheds from their metadata.json. */
int server_start(struct shed_config *config, struct server_claim *claim,
                 const struct server_config_source *source, const struct backend_set *backends,
                 struct server **server, struct shed_err *err);
/* The port actually bound (useful with http_port 0). */
uint16_t server_port(const struct server *server);
/* How many sheds were found at start. */
size_t server_discovered_sheds(const struct server *server);
/* The configuration in effect now, held until released (a reload does not change it). */
const struct shed_config *server_config_acquire(struct server *server);
void server_config_release(const struct shed_config *config);

/* SIGHUP: loads the configuration anew and makes it the one every request from now on
 * sees, atomically. Keys that only take effect at start (shed_config_keep_restart_keys) keep
 * their running values and are reported as needing a restart. A file that does not load is
 * refused with its error and the running configuration stays. Either way the outcome is
 * logged on stderr and recorded in <data_dir>/shed-server.reload for `shed-server reload`.
 * Returns 0 when the new configuration took effect. */
int server_reload(struct server *server, struct shed_err *err);
/* Besides, the requests that delete images (DELETE /api/images/{name}, POST
 * /api/images/prune, POST /api/system/prune, dry runs included) first reload when the file
 * the source would read is not the one last read (another path, or the same path changed:
 * device, inode, size, mtime, ctime): they never act on a stale list of configured variants,
 * even when nobody sent SIGHUP after editing server.yaml. */

/* Graceful stop (see above); frees the server. */
void server_stop(struct server *server);

/* ---- for `shed-server reload` ----------------------------------------------------------- */

struct server_reload_outcome {
    bool ok;
    char message[1024]; /* the error, or what was loaded and what needs a restart */
};

/* Signals the server that serves data_dir (its pid file) to reload, and waits up to
 * timeout_seconds for the outcome it records. SHED_E_NOT_FOUND-like SHED_E_CONFIG errors
 * say when no server runs there. */
int server_request_reload(const char *data_dir, unsigned timeout_seconds,
                          struct server_reload_outcome *outcome, struct shed_err *err);

#endif
