/* Private to api/: the context every handler receives, the handlers themselves (one file per
 * area: handlers_info.c, handlers_sheds.c, handlers_sessions.c, handlers_images.c) and the
 * helpers they share. */
#ifndef SHED_API_HANDLERS_H
#define SHED_API_HANDLERS_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "http_util.h"
#include "runtime/backend.h"
#include "runtime/instance.h"
#include "runtime/shed_lifecycle.h"

/* GET /api/sheds's rendered body, reused while the store's generation is unchanged and
 * every shed it showed running is still alive (handlers_sheds.c). */
struct shed_list_cache;
struct shed_list_cache *shed_list_cache_new(void);
void shed_list_cache_free(struct shed_list_cache *cache);

/* Everything a handler may use; built once by server_start, shared read-only by all
 * connection threads (the instance store synchronises itself). */
struct api_context {
    const struct shed_config *config;
    struct instance_store *instances;
    const struct backend_set *backends;
    struct shed_lifecycle lifecycle; /* instances + backends, for runtime/shed_lifecycle.h */
    /* What GET /api/info reports as "backend": the configured backend, or with `detect` the
     * first backend that probes usable, or "none" when no backend is usable. */
    char info_backend[32];
    uint16_t http_port;                 /* the port actually bound (http_port 0 picks a free one) */
    char *host_public_key;              /* "ssh-ed25519 AAAA... shed@<name>" */
    struct shed_list_cache *list_cache; /* synchronises itself */
};

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
