/* Private to api/: the context every handler receives, the handlers themselves (one file per
 * area: handlers_info.c, handlers_sheds.c, handlers_sessions.c, handlers_images.c) and the
 * helpers they share. */
#ifndef SHED_API_HANDLERS_H
#define SHED_API_HANDLERS_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "creates.h"
#include "http_util.h"
#include "runtime/backend.h"
#include "runtime/instance.h"
#include "runtime/shed_lifecycle.h"
#include "tunnel.h"

/* GET /api/sheds's rendered body, reused while the store's generation is unchanged and
 * every shed it showed running is still alive (handlers_sheds.c). */
struct shed_list_cache;
struct shed_list_cache *shed_list_cache_new(void);
void shed_list_cache_free(struct shed_list_cache *cache);

struct config_snapshot;

/* Everything a handler may use. The server builds one per request: the parts made at start
 * (shared read-only by all connection threads; the instance store synchronises itself) and
 * the configuration snapshot current when the request arrived, which stays the same to the
 * request's end whatever a reload does meanwhile (config_snapshot.h). A handler whose work
 * outlives the request (an event stream's producer) copies the context and retains
 * snapshot. */
struct api_context {
    const struct shed_config *config; /* snapshot's */
    struct config_snapshot *snapshot;
    struct instance_store *instances;
    const struct backend_set *backends;
    struct shed_lifecycle lifecycle; /* instances + backends, for runtime/shed_lifecycle.h */
    /* What GET /api/info reports as "backend": the configured backend, or with `detect` the
     * first backend that probed usable when the snapshot was made, or "none". */
    const char *info_backend;
    uint16_t http_port;                 /* the port actually bound (http_port 0 picks a free one) */
    char *host_public_key;              /* "ssh-ed25519 AAAA... shed@<name>" */
    struct shed_list_cache *list_cache; /* synchronises itself */
    struct create_registry *creates;    /* creates in flight, to cancel (creates.h) */
    struct tunnel_registry *tunnels;    /* connect tunnels (tunnel.h) */
    char *images_dir;                   /* the running one (a restart key), for lifecycle */
};

/* context.c: the context server_start and server_route (route.h) run on: the data and
 * instance dirs (created when missing), the instance store, the SSH host key, the list
 * cache and the registries. *discovered (may be NULL): the sheds found on disk. */
int api_context_open(struct api_context *context, const struct shed_config *config,
                     const struct backend_set *backends, size_t *discovered, struct shed_err *err);
/* After every request ended (the registries must be stopped first: server.c). */
void api_context_close(struct api_context *context);

typedef void (*api_handler)(const struct api_request *request, const struct api_context *context,
                            struct api_response *response);

/* Dispatches to the route that matches method and path: 404 NOT_FOUND / 405
 * METHOD_NOT_ALLOWED JSON when none does. */
void api_route(const struct api_request *request, const struct api_context *context,
               struct api_response *response);

/* handlers_info.c */
void handle_info(const struct api_request *, const struct api_context *, struct api_response *);
void handle_ssh_host_key(const struct api_request *, const struct api_context *,
                         struct api_response *);

/* handlers_sheds.c */
void handle_sheds_list(const struct api_request *, const struct api_context *,
                       struct api_response *);
void handle_shed_create(const struct api_request *, const struct api_context *,
                        struct api_response *);
void handle_shed_get(const struct api_request *, const struct api_context *, struct api_response *);
void handle_shed_delete(const struct api_request *, const struct api_context *,
                        struct api_response *);
void handle_shed_start(const struct api_request *, const struct api_context *,
                       struct api_response *);
void handle_shed_stop(const struct api_request *, const struct api_context *,
                      struct api_response *);
/* The API's shed object: empty strings and zero numbers are left out. */
json_t *api_shed_json(const struct instance *inst);
/* Loads a shed and reconciles its status with the backend (shed_lifecycle_load). */
int api_load_shed(const struct api_context *context, const char *name, struct instance *inst,
                  struct shed_err *err);

/* handlers_sessions.c: sessions and connect, which need a backend's exec/dial. */
void handle_shed_sessions(const struct api_request *, const struct api_context *,
                          struct api_response *);
void handle_shed_session_delete(const struct api_request *, const struct api_context *,
                                struct api_response *);
void handle_sessions_all(const struct api_request *, const struct api_context *,
                         struct api_response *);
void handle_shed_connect(const struct api_request *, const struct api_context *,
                         struct api_response *);

/* handlers_images.c */
void handle_images_list(const struct api_request *, const struct api_context *,
                        struct api_response *);
void handle_image_delete(const struct api_request *, const struct api_context *,
                         struct api_response *);
void handle_images_prune(const struct api_request *, const struct api_context *,
                         struct api_response *);

#endif
