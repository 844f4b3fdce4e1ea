/* Connect tunnels: reservation, the copying thread, idle timeout, stop (see tunnel.h). */
#include "tunnel.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/sockutil.h"
#include "common/timeutil.h"

#define TUNNEL_BUFFER (64 * 1024)

enum tunnel_state {
    TUNNEL_RESERVED, /* counted for its client, not dialed or not upgraded yet */
    TUNNEL_RUNNING,  /* its thread copies bytes */
    TUNNEL_FINISHED, /* its thread returned: to be joined */
    TUNNEL_JOINING,  /* tunnel_registry_stop is joining its thread */
};

/* One direction of the tunnel: bytes read from `from`, not yet written to `to`. */
struct tunnel_direction {
    int from, to;
    char buf[TUNNEL_BUFFER];
    size_t len, off;
    bool eof;  /* `from` ended */
    bool done; /* eof seen, buffer flushed, `to` shut down for writing */
};

struct tunnel {
    struct tunnel *prev, *next;
    struct tunnel_registry *registry;
    struct conn_client client;
    enum tunnel_state state;
    pthread_t thread;
    int client_fd; /* the upgraded HTTP socket (libmicrohttpd's) */
    int shed_fd;   /* the dialed socket (ours) */
    struct MHD_UpgradeResponseHandle *urh;
    struct tunnel **owner_slot;
    struct tunnel_direction up;   /* client → shed */
    struct tunnel_direction down; /* shed → client */
};

struct tunnel_registry {
    pthread_mutex_t lock;
    struct tunnel *head;
    int per_client;
    int idle_timeout_ms;
    int wake_fd; /* eventfd: readable once stopping */
    bool stopping;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the registry (lock held) --------------------------------------------------------- */

static void unlink_tunnel(struct tunnel_registry *registry, struct tunnel *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        registry->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
}

/* Joins the threads that ended (they do not block: they returned already). */
static void reap_finished(struct tunnel_registry *registry)
{
    for (struct tunnel *t = registry->head, *next; t != NULL; t = next) {
        next = t->next;
        if (t->state != TUNNEL_FINISHED)
            continue;
        pthread_join(t->thread, NULL);
        unlink_tunnel(registry, t);
        free(t);
    }
}

int tunnel_registry_new(const struct shed_config_http *limits, struct tunnel_registry **out,
                        struct shed_err *err)
{
    struct tunnel_registry *registry = calloc(1, sizeof *registry);
    if (registry == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    registry->per_client = limits->tunnels_per_client;
    registry->idle_timeout_ms = limits->tunnel_idle_timeout_seconds * 1000;
    registry->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (registry->wake_fd < 0 || pthread_mutex_init(&registry->lock, NULL) != 0) {
        if (registry->wake_fd >= 0)
            close(registry->wake_fd);
        free(registry);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot set up the tunnel registry");
    }
    *out = registry;
    return 0;
}

void tunnel_registry_stop(struct tunnel_registry *registry)
{
    if (registry == NULL)
        return;
    pthread_mutex_lock(&registry->lock);
    registry->stopping = true;
    uint64_t one = 1;
    (void)!write(registry->wake_fd, &one, sizeof one);
    /* Join outside the lock: an ending thread takes it to say so. */
    for (;;) {
        struct tunnel *running = NULL;
        for (struct tunnel *t = registry->head; t != NULL && running == NULL; t = t->next)
            if (t->state == TUNNEL_RUNNING)
                running = t;
        if (running == NULL)
            break;
        pthread_t thread = running->thread;
        running->state = TUNNEL_JOINING; /* joined here: reap_finished must not */
        pthread_mutex_unlock(&registry->lock);
        pthread_join(thread, NULL);
        pthread_mutex_lock(&registry->lock);
        unlink_tunnel(registry, running);
        free(running);
    }
    reap_finished(registry);
    pthread_mutex_unlock(&registry->lock);
}

void tunnel_registry_free(struct tunnel_registry *registry)
{
    if (registry == NULL)
        return;
    tunnel_registry_stop(registry);
    /* What is left are reservations whose request never completed: the daemon is gone. */
    while (registry->head != NULL) {
        struct tunnel *t = registry->head;
        unlink_tunnel(registry, t);
        if (t->shed_fd >= 0)
            close(t->shed_fd);
        free(t);
    }
    pthread_mutex_destroy(&registry->lock);
    close(registry->wake_fd);
    free(registry);
}

/* ---- reservations --------------------------------------------------------------------- */

int tunnel_reserve(struct tunnel_registry *registry, const struct conn_client *client,
                   struct tunnel **out, struct shed_err *err)
{
    *out = NULL;
    pthread_mutex_lock(&registry->lock);
    reap_finished(registry);
    int count = 0;
    for (struct tunnel *t = registry->head; t != NULL; t = t->next)
        count += t->client.is_unix == client->is_unix && t->client.id == client->id &&
                 (t->state == TUNNEL_RESERVED || t->state == TUNNEL_RUNNING);
    int rc = 0;
    if (registry->stopping)
        rc = shed_errf(err, SHED_E_SERVER_BUSY, "the server is stopping");
    else if (count >= registry->per_client)
        rc = shed_errf(err, SHED_E_SERVER_BUSY,
                       "this client has %d tunnels open already (tunnel_max_per_client)", count);
    else if ((*out = calloc(1, sizeof **out)) == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (rc == 0) {
        struct tunnel *t = *out;
        *t = (struct tunnel){.registry = registry,
                             .client = *client,
                             .shed_fd = -1,
                             .client_fd = -1,
                             .next = registry->head};
        if (registry->head != NULL)
            registry->head->prev = t;
        registry->head = t;
    }
    pthread_mutex_unlock(&registry->lock);
    return rc;
}

/* Lock held or not: the tunnel is not running, nothing else touches it. */
static void drop_reservation(struct tunnel *t)
{
    struct tunnel_registry *registry = t->registry;
    pthread_mutex_lock(&registry->lock);
    unlink_tunnel(registry, t);
    pthread_mutex_unlock(&registry->lock);
    if (t->shed_fd >= 0)
        close(t->shed_fd);
    free(t);
}

void tunnel_release(struct tunnel *t)
{
    if (t != NULL)
        drop_reservation(t);
}

void tunnel_set_owner_slot(struct tunnel *t, struct tunnel **slot)
{
    t->owner_slot = slot;
}

void tunnel_abandon(struct tunnel *t)
{
    if (t != NULL && t->state == TUNNEL_RESERVED)
        drop_reservation(t);
}

/* ---- the copying thread --------------------------------------------------------------- */

/* Moves bytes for one direction as far as possible without blocking; -1 on a hard error.
 * *moved becomes true when any byte moved. */
static int tunnel_pump(struct tunnel_direction *dir, bool *moved)
{
    if (dir->len == dir->off && !dir->eof) {
        ssize_t n = recv(dir->from, dir->buf, sizeof dir->buf, MSG_DONTWAIT);
        if (n > 0) {
            dir->len = (size_t)n;
            dir->off = 0;
            *moved = true;
        } else if (n == 0) {
            dir->eof = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return -1;
        }
    }
    while (dir->off < dir->len) {
        ssize_t n =
            send(dir->to, dir->buf + dir->off, dir->len - dir->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        dir->off += (size_t)n;
        *moved = true;
    }
    if (dir->eof && !dir->done) {
        shutdown(dir->to, SHUT_WR); /* pass the half-close on */
        dir->done = true;
    }
    return 0;
}

/* What to wait for in one direction: readable source or writable destination. */
static void tunnel_interest(const struct tunnel_direction *dir, struct pollfd *from_fd,
                            struct pollfd *to_fd)
{
    if (dir->done)
        return;
    if (dir->off < dir->len)
        to_fd->events |= POLLOUT;
    else if (!dir->eof)
        from_fd->events |= POLLIN;
}

static void log_tunnel_end(const struct tunnel *t, const char *why)
{
    char stamp[RFC3339_SIZE], who[64];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    conn_client_describe(&t->client, who, sizeof who);
    fprintf(stderr, "%s tunnel closed client=%s reason=%s\n", stamp, who, why);
}

static void *tunnel_run(void *arg)
{
    struct tunnel *t = arg;
    struct tunnel_registry *registry = t->registry;
    uint64_t last_activity = now_ms();
    const char *why = "ended";
    while (!(t->up.done && t->down.done)) {
        bool moved = false;
        if (tunnel_pump(&t->up, &moved) < 0 || tunnel_pump(&t->down, &moved) < 0) {
            why = "error";
            break;
        }
        uint64_t now = now_ms();
        if (moved)
            last_activity = now;
        if (now - last_activity >= (uint64_t)registry->idle_timeout_ms) {
            why = "idle (tunnel_idle_timeout_seconds)";
            break;
        }
        struct pollfd fds[3] = {
            {.fd = t->client_fd}, {.fd = t->shed_fd}, {.fd = registry->wake_fd, .events = POLLIN}};
        tunnel_interest(&t->up, &fds[0], &fds[1]);
        tunnel_interest(&t->down, &fds[1], &fds[0]);
        if (fds[0].events == 0 && fds[1].events == 0)
            continue; /* something to flush or finish right away */
        int timeout = (int)((uint64_t)registry->idle_timeout_ms - (now - last_activity));
        if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
            why = "error";
            break;
        }
        if ((fds[0].revents | fds[1].revents) & POLLNVAL) {
            why = "error";
            break;
        }
        if (fds[2].revents & POLLIN) {
            why = "server stopping";
            break;
        }
    }
    if (strcmp(why, "ended") != 0)
        log_tunnel_end(t, why);
    close(t->shed_fd);
    t->shed_fd = -1;
    MHD_upgrade_action(t->urh, MHD_UPGRADE_ACTION_CLOSE);
    pthread_mutex_lock(&registry->lock);
    if (t->state == TUNNEL_RUNNING)
        t->state = TUNNEL_FINISHED; /* else tunnel_registry_stop joins it */
    pthread_mutex_unlock(&registry->lock);
    return NULL;
}

static void tunnel_upgraded(void *cls, struct MHD_Connection *connection, void *con_cls,
                            const char *extra_in, size_t extra_in_size, MHD_socket sock,
                            struct MHD_UpgradeResponseHandle *urh)
{
    (void)con_cls;
    conn_request_upgraded(connection);
    struct tunnel *t = cls;
    struct tunnel_registry *registry = t->registry;
    t->client_fd = sock;
    t->urh = urh;
    t->up = (struct tunnel_direction){.from = sock, .to = t->shed_fd};
    t->down = (struct tunnel_direction){.from = t->shed_fd, .to = sock};
    /* From here the thread (or this function, when it cannot start) owns the tunnel. */
    if (t->owner_slot != NULL)
        *t->owner_slot = NULL;
    /* Bytes the client sent right after its request headers go to the shed first. */
    bool started = sock_send_all(t->shed_fd, extra_in, extra_in_size) == 0;
    pthread_mutex_lock(&registry->lock);
    if (started && !registry->stopping) {
        t->state = TUNNEL_RUNNING;
        started = pthread_create(&t->thread, NULL, tunnel_run, t) == 0;
        if (!started)
            t->state = TUNNEL_RESERVED;
    } else {
        started = false;
    }
    pthread_mutex_unlock(&registry->lock);
    if (!started) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        drop_reservation(t);
    }
}

void tunnel_respond_upgrade(struct tunnel *t, int shed_fd, struct api_response *response)
{
    t->shed_fd = shed_fd;
    struct MHD_Response *mhd = MHD_create_response_for_upgrade(tunnel_upgraded, t);
    /* libmicrohttpd adds "Connection: Upgrade" itself; "Upgrade" is ours to set. */
    if (mhd == NULL ||
        MHD_add_response_header(mhd, MHD_HTTP_HEADER_UPGRADE, "shed-tcp") != MHD_YES) {
        if (mhd != NULL)
            MHD_destroy_response(mhd);
        drop_reservation(t);
        api_respond_errorf(response, SHED_E_NO_MEMORY, "cannot prepare the upgrade response");
        return;
    }
    api_response_clear(response);
    response->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    response->mhd = mhd;
    response->tunnel = t;
}
