/* Listening sockets and the exposure rule (see listen.h). */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"

#define LISTEN_BACKLOG 1024

int listen_check_exposure(const struct shed_config *config, struct shed_err *err)
{
    bool has_token = config->api_token != NULL && config->api_token[0] != '\0';
    if (shed_config_bind_is_loopback(config->bind) || has_token || config->allow_unauthenticated)
        return 0;
    return shed_errf(
        err, SHED_E_CONFIG,
        "bind %s is not a loopback address and no api_token is set: anyone who can reach "
        "%s:%d could create sheds and run commands as root on this host. Set api_token in "
        "server.yaml (clients then send \"Authorization: Bearer <token>\"), or bind to "
        "127.0.0.1 and reach the API through a VPN or an SSH tunnel, or set "
        "allow_unauthenticated: true if every host that can reach this address is trusted",
        config->bind, config->bind, config->http_port);
}

static int parse_bind_address(const char *address, int port, struct sockaddr_in *addr,
                              struct shed_err *err)
{
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    const char *host = address != NULL && address[0] != '\0' ? address : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return shed_errf(err, SHED_E_CONFIG, "bind: \"%s\" is not an IPv4 address", host);
    return 0;
}

int listen_tcp(const char *address, int port, int *fd_out, uint16_t *bound_port,
               struct shed_err *err)
{
    struct sockaddr_in addr;
    if (parse_bind_address(address, port, &addr, err) < 0)
        return -1;
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "socket");
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot listen on %s:%d", address, port);
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "getsockname");
    *bound_port = ntohs(addr.sin_port);
    *fd_out = steal_fd(&fd);
    return 0;
}

/* Whether a server accepts on the socket at path (then it is not ours to replace). */
static bool socket_is_live(const struct sockaddr_un *addr)
{
    cleanup_close int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return probe >= 0 && connect(probe, (const struct sockaddr *)addr, sizeof *addr) == 0;
}

/* A stale socket at path goes; anything else there stays and is an error. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *addr,
                              struct shed_err *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : shed_errf_errno(err, SHED_E_IO, errno, "unix_socket %s", path);
    if (!S_ISSOCK(st.st_mode))
        return shed_errf(err, SHED_E_CONFIG, "unix_socket %s exists and is not a socket", path);
    if (socket_is_live(addr))
        return shed_errf(err, SHED_E_IO, "unix_socket %s is in use by another server", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot remove the stale %s", path);
    return 0;
}

static int socket_group(const char *name, gid_t *gid, struct shed_err *err)
{
    struct group grp, *found = NULL;
    char buf[4096];
    int rc = getgrnam_r(name, &grp, buf, sizeof buf, &found);
    if (found == NULL)
        return shed_errf_errno(err, SHED_E_CONFIG, rc != 0 ? rc : ENOENT,
                               "unix_socket_group \"%.64s\" is not a group of this host", name);
    *gid = grp.gr_gid;
    return 0;
}

/* The socket is created with no permission for anyone but its owner (umask narrowed around
 * bind: a concurrent file of another thread can only come out narrower, never wider), then
 * given its group and mode. */
static int bind_private(int fd, const struct sockaddr_un *addr, const char *path,
                        struct shed_err *err)
{
    mode_t old = umask(0177);
    int rc = bind(fd, (const struct sockaddr *)addr, sizeof *addr);
    int saved = errno;
    umask(old);
    if (rc < 0)
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot bind unix_socket %s", path);
    return 0;
}

int listen_unix(const struct shed_config *config, int *fd_out, ino_t *ino, struct shed_err *err)
{
    const char *path = config->unix_socket;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path)
        return shed_errf(err, SHED_E_CONFIG, "unix_socket %s: path too long", path);
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    gid_t gid = (gid_t)-1;
    if (config->unix_socket_group != NULL && socket_group(config->unix_socket_group, &gid, err) < 0)
        return -1;
    if (clear_stale_socket(path, &addr, err) < 0)
        return -1;
    cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "socket");
    if (bind_private(fd, &addr, path, err) < 0)
        return -1;
    /* Never following a symlink: path is the socket bind just made, or this fails. */
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        (gid != (gid_t)-1 && lchown(path, (uid_t)-1, gid) < 0) ||
        fchmodat(AT_FDCWD, path, config->unix_socket_mode, AT_SYMLINK_NOFOLLOW) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        int saved = errno;
        unlink(path);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot set up unix_socket %s", path);
    }
    *ino = st.st_ino;
    *fd_out = steal_fd(&fd);
    return 0;
}

void listen_unix_remove(const char *path, ino_t ino)
{
    struct stat st;
    if (path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == ino)
        unlink(path);
}
