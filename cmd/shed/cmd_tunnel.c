/* shed tunnel NAME LOCAL:REMOTE: forwards 127.0.0.1:LOCAL to port REMOTE inside the shed,
 * one connect upgrade per accepted connection, each on its own thread, until killed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/io.h"
#include "common/sockutil.h"
#include "shed.h"

/* ---- tunnel -------------------------------------------------------------------------- */

struct tunnel {
    const struct client *client;
    const char *shed;
    uint16_t remote_port;
};

struct tunnel_connection {
    const struct tunnel *tunnel;
    int local_fd;
};

/* Copies bytes both ways until both directions reached end of file (half-closes passed on). */
static void copy_both_ways(int a, int b)
{
    struct pollfd fds[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    int open_directions = 2;
    char buf[65536];
    while (open_directions > 0) {
        if (TEMP_FAILURE_RETRY(poll(fds, 2, -1)) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = TEMP_FAILURE_RETRY(recv(fds[i].fd, buf, sizeof buf, 0));
            int other = i == 0 ? b : a;
            if (n > 0 && sock_send_all(other, buf, (size_t)n) == 0)
                continue;
            if (n < 0 || n > 0)
                return; /* an error on either side ends the tunnel */
            shutdown(other, SHUT_WR);
            fds[i].fd = -1;
            open_directions--;
        }
    }
}

static void *tunnel_connection_run(void *arg)
{
    struct tunnel_connection *connection = arg;
    const struct tunnel *tunnel = connection->tunnel;
    int remote_fd = -1;
    char *extra = NULL;
    size_t extra_len = 0;
    struct client_error error;
    if (client_connect_upgrade(tunnel->client, tunnel->shed, tunnel->remote_port, &remote_fd,
                               &extra, &extra_len, &error) < 0) {
        shed_fail(&error);
    } else {
        if (sock_send_all(connection->local_fd, extra, extra_len) == 0)
            copy_both_ways(connection->local_fd, remote_fd);
        close(remote_fd);
    }
    free(extra);
    close(connection->local_fd);
    free(connection);
    return NULL;
}

static int listen_local(uint16_t port, int *fd_out, struct client_error *error)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return client_errorf(error, "IO", "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0) {
        int saved = errno;
        close(fd);
        return client_errorf(error, "IO", "cannot listen on 127.0.0.1:%u: %s", (unsigned)port,
                             strerror(saved));
    }
    *fd_out = fd;
    return 0;
}

static int parse_port_pair(const char *text, uint16_t *local, uint16_t *remote)
{
    unsigned a = 0, b = 0;
    char tail;
    if (sscanf(text, "%u:%u%c", &a, &b, &tail) != 2 || a < 1 || a > 65535 || b < 1 || b > 65535)
        return -1;
    *local = (uint16_t)a;
    *remote = (uint16_t)b;
    return 0;
}

/* Probes the upgrade once before listening, so that a shed that is missing, stopped or a
 * server without connect support fails at once rather than on the first connection. */
static int probe_tunnel(const struct tunnel *tunnel, struct client_error *error)
{
    int fd = -1;
    char *extra = NULL;
    size_t extra_len = 0;
    if (client_connect_upgrade(tunnel->client, tunnel->shed, tunnel->remote_port, &fd, &extra,
                               &extra_len, error) < 0)
        return -1;
    free(extra);
    close(fd);
    return 0;
}

const struct cli_option shed_tunnel_options[] = {SHED_SERVER_OPTIONS, SHED_OPTIONS_END};

int cmd_tunnel(const struct cli_call *call)
{
    struct shed_cli *cli = shed_cli_of(call);
    uint16_t local = 0, remote = 0;
    if (parse_port_pair(call->operands[1], &local, &remote) < 0)
        return cli_usage_error(call, "expected LOCAL:REMOTE ports (1-65535), not '%s'",
                               call->operands[1]);
    struct tunnel tunnel = {
        .client = &cli->client, .shed = call->operands[0], .remote_port = remote};
    if (strpbrk(tunnel.shed, "/?#% ") != NULL)
        return cli_usage_error(call, "invalid shed name '%s'", tunnel.shed);
    struct client_error error;
    int listen_fd = -1;
    if (probe_tunnel(&tunnel, &error) < 0 || listen_local(local, &listen_fd, &error) < 0)
        return shed_fail(&error);
    fprintf(stderr, "shed: forwarding 127.0.0.1:%u to %s:%u (Ctrl-C to stop)\n", (unsigned)local,
            tunnel.shed, (unsigned)remote);
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            close(listen_fd);
            return shed_fail(&(struct client_error){"IO", "accept failed"});
        }
        struct tunnel_connection *connection = malloc(sizeof *connection);
        pthread_t thread;
        if (connection == NULL) {
            close(fd);
            continue;
        }
        *connection = (struct tunnel_connection){.tunnel = &tunnel, .local_fd = fd};
        if (pthread_create(&thread, NULL, tunnel_connection_run, connection) != 0) {
            close(fd);
            free(connection);
            continue;
        }
        pthread_detach(thread);
    }
}
