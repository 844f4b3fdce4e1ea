/* Private to server/: where the API listens, and who may reach it.
 *
 * - TCP on config bind:http_port. On loopback the API needs no token (the default); on any
 *   other address the server refuses to start without api_token unless the config says
 *   allow_unauthenticated: true (listen_check_exposure's message says what to do).
 * - Optionally a unix socket at config unix_socket, created with unix_socket_mode (default
 *   0600) and unix_socket_group: the file's permissions are its access control, so requests
 *   on it need no token. A stale socket left by a server that is gone is replaced; a live one
 *   (something accepts on it) or anything that is not a socket is never touched. */
#ifndef SHED_API_LISTEN_H
#define SHED_API_LISTEN_H

#include <stdint.h>
#include <sys/types.h>

#include "common/shed_err.h"
#include "config/config.h"

/* SHED_E_CONFIG when the API would be reachable off this host without authentication. */
int listen_check_exposure(const struct shed_config *config, struct shed_err *err);

/* A non-blocking listening socket on bind:port (0: a free port, *bound_port says which). */
int listen_tcp(const char *address, int port, int *fd, uint16_t *bound_port, struct shed_err *err);

/* The unix socket of the config (which must name one); *ino identifies it for removal. */
int listen_unix(const struct shed_config *config, int *fd, ino_t *ino, struct shed_err *err);
/* Unlinks path if it is still the socket listen_unix made (ino). */
void listen_unix_remove(const char *path, ino_t ino);

#endif
