/* The REST client behind the `shed` CLI (libcurl): JSON requests, SSE streams, the HTTP
 * upgrade of connect. (client.yaml and -s SERVER are client_config.h's.) */
#ifndef SHED_API_CLIENT_H
#define SHED_API_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* A failure as the user sees it: the server's code ("SHED_NOT_FOUND") and message, or a
 * client-side code ("CONNECTION", "PROTOCOL", "USAGE", "CONFIG") for what never reached it. */
struct client_error {
    char code[48];
    char message[512];
};

int client_errorf(struct client_error *error, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct client {
    char *base_url;       /* "http://host:port", no trailing slash */
    char *token;          /* bearer token or NULL */
    char *origin;         /* where base_url came from ("-s", "server \"lab\" of ..."), or NULL */
    long timeout_seconds; /* limit for a whole transfer; 0 (client_init's default): none */
};

struct client_response {
    long status;
    json_t *json; /* the parsed body, NULL when empty */
};

/* origin (may be NULL) says where base_url came from, for the hint of a connection error. */
int client_init(struct client *client, const char *base_url, const char *token, const char *origin,
                struct client_error *error);
void client_cleanup(struct client *client);
void client_response_clear(struct client_response *response);

/* Sends method path (body may be NULL). A 4xx/5xx becomes *error from the server's error
 * body and returns -1; *response then holds nothing. */
int client_request(const struct client *client, const char *method, const char *path,
                   const json_t *body, struct client_response *response,
                   struct client_error *error);

/* Sends with `Accept: text/event-stream` and calls on_event for every frame (type, parsed
 * data). A plain JSON answer (the server's validation errors) is reported like
 * client_request; *response holds a plain 2xx JSON answer if the server did not stream. */
typedef void (*client_event_fn)(const char *type, const json_t *data, void *ctx);
int client_stream(const struct client *client, const char *method, const char *path,
                  const json_t *body, client_event_fn on_event, void *ctx,
                  struct client_response *response, struct client_error *error);

/* Opens a TCP connection to the server and performs the connect upgrade for
 * /api/sheds/<shed>/connect/<port>. On 101, *fd is the raw stream; leftover bytes the
 * server sent after its headers are returned in *extra (malloc'd) / *extra_len. */
int client_connect_upgrade(const struct client *client, const char *shed, uint16_t port, int *fd,
                           char **extra, size_t *extra_len, struct client_error *error);

#endif
