/* The SSH server: listening, the connection registry, start and stop (see sshd.h).
 *
 * The listener thread accepts, refuses what is over max_connections, prepares the libssh
 * session (ssh_bind_accept_fd only copies the bind's keys and options: no I/O) and starts a
 * connection thread. A finished connection thread marks its slot done and wakes the
 * listener, which joins it: threads never pile up. Stop closes the listening socket, signals
 * stop_fd (every connection loop polls it), shuts every connection's socket down (a thread
 * still in the key exchange sees EOF) and joins everything. */
#include "sshd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/timeutil.h"
#include "runtime/host_key.h"
#include "ssh_private.h"

struct conn_slot {
    struct conn_slot *next;
    struct sshd *server;
    pthread_t thread;
    ssh_session session;
    int fd;      /* the session's socket (libssh closes it) */
    int control; /* a dup of it for stop's shutdown, closed under the lock when done: so
                    stop never shuts down a number the kernel already gave to another fd */
    bool done;
};

struct sshd {
    struct sshd_shared shared;
    struct instance_store *store;
    ssh_bind bind;
    int listen_fd;
    uint16_t port;
    pthread_t listener;
    bool listener_started;
    int wake_fd; /* eventfd: a connection finished */
    pthread_mutex_t lock;
    struct conn_slot *slots; /* under lock */
    size_t active;           /* under lock */
    size_t max_connections;  /* ssh.max_connections at start */
    char *images_dir;        /* for the lifecycle (a restart key) */
};

static pthread_once_t libssh_once = PTHREAD_ONCE_INIT;
static int libssh_init_rc;

static void init_libssh(void)
{
    libssh_init_rc = ssh_init();
}

static void log_refused(const char *peer, const char *why)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    fprintf(stderr, "%s ssh peer=%s result=refused reason=\"%s\"\n", stamp, peer, why);
}

/* ---- connections --------------------------------------------------------------------- */

static void *conn_thread(void *arg)
{
    struct conn_slot *slot = arg;
    struct sshd *server = slot->server;
    conn_run(&server->shared, slot->session, slot->fd); /* frees the session, closes fd */
    pthread_mutex_lock(&server->lock);
    slot->done = true;
    slot->session = NULL;
    close(slot->control);
    slot->control = -1;
    pthread_mutex_unlock(&server->lock);
    uint64_t one = 1;
    if (write(server->wake_fd, &one, sizeof one) < 0) {
        /* the counter saturates only after 2^64 wakes */
    }
    return NULL;
}

/* Joins the finished connection threads (all of them with every). */
static void reap_slots(struct sshd *server, bool every)
{
    for (;;) {
        struct conn_slot *found = NULL;
        pthread_mutex_lock(&server->lock);
        for (struct conn_slot **at = &server->slots; *at != NULL; at = &(*at)->next) {
            if ((*at)->done || every) {
                found = *at;
                *at = found->next;
                if (found->done)
                    server->active--;
                break;
            }
        }
        pthread_mutex_unlock(&server->lock);
        if (found == NULL)
            return;
        pthread_join(found->thread, NULL);
        if (!found->done) {
            pthread_mutex_lock(&server->lock);
            server->active--;
            pthread_mutex_unlock(&server->lock);
        }
        free(found);
    }
}

static void peer_name(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0) {
        if (addr.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&addr;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (addr.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(out, outlen, "%s:%u", host, port);
}

/* A new connection: its thread, or refused (over the cap, or out of resources). */
static void start_conn(struct sshd *server, int fd)
{
    char peer[64];
    peer_name(fd, peer, sizeof peer);
    pthread_mutex_lock(&server->lock);
    bool full = server->active >= server->max_connections;
    if (!full)
        server->active++;
    pthread_mutex_unlock(&server->lock);
    if (full) {
        log_refused(peer, "too many connections (ssh.max_connections)");
        close(fd);
        return;
    }
    struct conn_slot *slot = calloc(1, sizeof *slot);
    ssh_session session = slot != NULL ? ssh_new() : NULL;
    int control = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (session == NULL || control < 0 || ssh_bind_accept_fd(server->bind, session, fd) != SSH_OK) {
        log_refused(peer, session == NULL || control < 0 ? "out of resources"
                                                         : ssh_get_error(server->bind));
        if (control >= 0)
            close(control);
        goto refuse;
    }
    *slot = (struct conn_slot){.server = server, .session = session, .fd = fd, .control = control};
    pthread_mutex_lock(&server->lock);
    slot->next = server->slots;
    server->slots = slot;
    int rc = pthread_create(&slot->thread, NULL, conn_thread, slot);
    if (rc != 0)
        server->slots = slot->next;
    pthread_mutex_unlock(&server->lock);
    if (rc == 0)
        return;
    log_refused(peer, "cannot start a thread");
    close(control);
refuse:
    /* Once libssh took the socket, freeing the session closes it. */
    if (session == NULL || ssh_get_fd(session) != fd)
        close(fd);
    if (session != NULL)
        ssh_free(session);
    free(slot);
    pthread_mutex_lock(&server->lock);
    server->active--;
    pthread_mutex_unlock(&server->lock);
}

static void *listener_thread(void *arg)
{
    struct sshd *server = arg;
    for (;;) {
        struct pollfd fds[3] = {{.fd = server->listen_fd, .events = POLLIN},
                                {.fd = server->wake_fd, .events = POLLIN},
                                {.fd = server->shared.stop_fd, .events = POLLIN}};
        if (poll(fds, 3, -1) < 0 && errno != EINTR)
            break;
        if (fds[2].revents)
            break;
        if (fds[1].revents) {
            uint64_t count;
            if (read(server->wake_fd, &count, sizeof count) < 0) {
                /* nothing to read: another wake took it */
            }
            reap_slots(server, false);
        }
        if (fds[0].revents) {
            int fd = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                start_conn(server, fd);
            } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of fds: the pending connection stays readable; back off, don't spin. */
                struct timespec pause = {0, 100 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
        }
    }
    return NULL;
}

/* ---- start / stop -------------------------------------------------------------------- */

static int listen_on(const char *bind_address, int port, int *fd_out, uint16_t *bound,
                     struct shed_err *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    const char *host =
        bind_address != NULL && strcmp(bind_address, "localhost") != 0 ? bind_address : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return shed_errf(err, SHED_E_CONFIG, "bind: \"%s\" is not an IPv4 address", host);
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "cannot listen on %s:%d (SSH)", host, port);
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "getsockname");
    *bound = ntohs(addr.sin_port);
    *fd_out = steal_fd(&fd);
    return 0;
}

/* The bind object: the host key, no config files of libssh's own. */
static int prepare_bind(struct sshd *server, const struct shed_config *config, struct shed_err *err)
{
    cleanup_free char *comment = str_printf("shed@%s", config->name);
    cleanup_free char *public_key = NULL;
    char *secret = NULL;
    if (comment == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (host_key_load_or_create(config->data_dir, comment, &public_key, err) < 0 ||
        host_key_openssh_private(config->data_dir, &secret, err) < 0)
        return -1;
    ssh_key key = NULL;
    int rc = ssh_pki_import_privkey_base64(secret, NULL, NULL, NULL, &key);
    host_key_secret_free(secret);
    if (rc != SSH_OK)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "libssh cannot read the host key");
    server->bind = ssh_bind_new();
    bool no = false;
    if (server->bind == NULL ||
        ssh_bind_options_set(server->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no) != SSH_OK ||
        ssh_bind_options_set(server->bind, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
        ssh_key_free(key);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot set up libssh: %s",
                         server->bind != NULL ? ssh_get_error(server->bind) : "out of memory");
    }
    /* The bind owns the key now. */
    return 0;
}

static void free_server(struct sshd *server)
{
    if (server->bind != NULL)
        ssh_bind_free(server->bind);
    if (server->listen_fd >= 0)
        close(server->listen_fd);
    if (server->wake_fd >= 0)
        close(server->wake_fd);
    if (server->shared.stop_fd >= 0)
        close(server->shared.stop_fd);
    instance_store_close(server->store);
    pthread_mutex_destroy(&server->lock);
    free(server->shared.host_name);
    free(server->images_dir);
    free(server);
}

int sshd_start(const struct shed_config *config, const struct backend_set *backends, int port,
               struct sshd **out, struct shed_err *err)
{
    pthread_once(&libssh_once, init_libssh);
    if (libssh_init_rc != SSH_OK)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "ssh_init failed");
    struct sshd *server = calloc(1, sizeof *server);
    if (server == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    server->listen_fd = server->wake_fd = -1;
    pthread_mutex_init(&server->lock, NULL);
    server->max_connections = (size_t)config->ssh.max_connections;
    server->shared.host_name = strdup(config->name);
    server->images_dir = strdup(config->images_dir);
    server->shared.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    server->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (server->shared.host_name == NULL || server->images_dir == NULL) {
        shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        free_server(server);
        return -1;
    }
    if (server->shared.stop_fd < 0 || server->wake_fd < 0) {
        shed_errf_errno(err, SHED_E_IO, errno, "eventfd");
        free_server(server);
        return -1;
    }
    if (fs_mkdir_p(config->data_dir, 0755, err) < 0 ||
        instance_store_open(config->instance_dir, &server->store, err) < 0 ||
        prepare_bind(server, config, err) < 0 ||
        listen_on(config->bind, port, &server->listen_fd, &server->port, err) < 0) {
        free_server(server);
        return -1;
    }
    server->shared.lifecycle = (struct shed_lifecycle){
        .store = server->store, .backends = backends, .images_dir = server->images_dir};
    *out = server;
    return 0;
}

int sshd_serve(struct sshd *server, const struct sshd_config_source *source, struct shed_err *err)
{
    server->shared.source = *source;
    int rc = pthread_create(&server->listener, NULL, listener_thread, server);
    if (rc != 0)
        return shed_errf_errno(err, SHED_E_IO, rc, "pthread_create");
    server->listener_started = true;
    return 0;
}

uint16_t sshd_port(const struct sshd *server)
{
    return server->port;
}

void sshd_stop(struct sshd *server)
{
    if (server == NULL)
        return;
    uint64_t one = 1;
    if (write(server->shared.stop_fd, &one, sizeof one) < 0) {
        /* an eventfd write fails only on overflow */
    }
    if (server->listener_started)
        pthread_join(server->listener, NULL);
    close(server->listen_fd);
    server->listen_fd = -1;
    /* A thread still in the key exchange blocks in libssh: EOF on its socket ends it. */
    pthread_mutex_lock(&server->lock);
    for (struct conn_slot *slot = server->slots; slot != NULL; slot = slot->next)
        if (!slot->done && slot->control >= 0)
            shutdown(slot->control, SHUT_RDWR);
    pthread_mutex_unlock(&server->lock);
    reap_slots(server, true);
    free_server(server);
}
