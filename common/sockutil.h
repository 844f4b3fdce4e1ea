/* Socket helpers shared by the server's tunnel and the CLI's connect/tunnel. */
#ifndef SHED_SOCKUTIL_H
#define SHED_SOCKUTIL_H

#include <stddef.h>

/* Sends all len bytes (retrying on EINTR, never raising SIGPIPE). 0, or -1 with errno set. */
int sock_send_all(int fd, const void *data, size_t len);

#endif
