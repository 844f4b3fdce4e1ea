/* The connection table, the acceptor and the watchdog (see connections.h). */
#include "connections.h"

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
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/timeutil.h"
#include "http_util.h"

/* Refused connections are kept a moment after their 503 so that the client reads it before
 * the close (closing with unread request bytes would reset the connection and lose it);
 * beyond this many at once, or this long, they are closed at once. */
#define LINGER_MAX 128
#define LINGER_MS 1000
/* A connection handed to libmicrohttpd that it has not started after this long is checked:
 * forgotten if libmicrohttpd dropped it (its fd closed, or now another file), else kept. */
#define PENDING_MAX_MS 10000
#define WATCHDOG_TICK_MS 100

enum conn_phase {
    CONN_PENDING,   /* accepted, handed to libmicrohttpd, not started yet */
    CONN_RECEIVING, /* a request (or the first one) is arriving: deadline */
    CONN_HANDLING,  /* the handler runs or the response goes out: no deadline */
    CONN_IDLE,      /* kept alive between requests: deadline */
    CONN_UPGRADED,  /* a tunnel: its own timeouts */
};

struct conn_table;

struct conn {
    struct conn *prev, *next;
    struct conn_table *table;
    int fd;
    ino_t ino; /* the socket's inode: tells our fd from a reused number */
    struct conn_client client;
    enum conn_phase phase;
    uint64_t since_ms;    /* when the phase began */
    uint64_t deadline_ms; /* RECEIVING and IDLE */
    bool cut;             /* the watchdog shut it down already */
    bool answered;        /* a response went out before the request arrived (early 413) */
};

struct lingering {
    int fd;
    uint64_t until_ms;
};

struct conn_table {
    pthread_mutex_t lock;
    struct conn *head;
    size_t count;
    struct shed_config_http limits;
    /* the acceptor */
    struct MHD_Daemon *daemon;
    int listen_fds[4];
    size_t listen_count;
    int wake_fd; /* eventfd: stop */
    pthread_t acceptor;
    bool acceptor_running;
    struct lingering linger[LINGER_MAX];
    size_t linger_count;
    /* the watchdog */
    pthread_t watchdog;
    bool watchdog_running;
    bool stopping;
    pthread_cond_t stop_changed;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void log_line(const char *what, const struct conn_client *client, const char *detail)
{
    char stamp[RFC3339_SIZE], who[64];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    conn_client_describe(client, who, sizeof who);
    fprintf(stderr, "%s http %s client=%s %s\n", stamp, what, who, detail);
}

/* ---- clients ------------------------------------------------------------------------- */

void conn_client_describe(const struct conn_client *client, char *out, size_t len)
{
    if (client->is_unix) {
        snprintf(out, len, "uid:%u", client->id);
        return;
    }
    struct in_addr addr = {.s_addr = htonl(client->id)};
    if (inet_ntop(AF_INET, &addr, out, (socklen_t)len) == NULL)
        snprintf(out, len, "?");
}

static int client_of_socket(int fd, const struct sockaddr *addr, struct conn_client *client)
{
    memset(client, 0, sizeof *client);
    if (addr->sa_family == AF_INET) {
        client->id = ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr);
        return 0;
    }
    if (addr->sa_family != AF_UNIX)
        return -1;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -1;
    client->is_unix = true;
    client->id = cred.uid;
    return 0;
}

int conn_client_of(struct MHD_Connection *connection, struct conn_client *client)
{
    const union MHD_ConnectionInfo *addr =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (addr == NULL || addr->client_addr == NULL || fd == NULL)
        return -1;
    return client_of_socket(fd->connect_fd, addr->client_addr, client);
}

static bool same_client(const struct conn_client *a, const struct conn_client *b)
{
    return a->is_unix == b->is_unix && a->id == b->id;
}

/* ---- the table (lock held) ----------------------------------------------------------- */

static size_t count_client(const struct conn_table *table, const struct conn_client *client)
{
    size_t n = 0;
    for (const struct conn *c = table->head; c != NULL; c = c->next)
        n += same_client(&c->client, client);
    return n;
}

static void unlink_conn(struct conn_table *table, struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        table->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    table->count--;
    free(c);
}

static void link_conn(struct conn_table *table, struct conn *c)
{
    c->prev = NULL;
    c->next = table->head;
    if (table->head != NULL)
        table->head->prev = c;
    table->head = c;
    table->count++;
}

static struct conn *find_pending(struct conn_table *table, int fd)
{
    for (struct conn *c = table->head; c != NULL; c = c->next)
        if (c->phase == CONN_PENDING && c->fd == fd)
            return c;
    return NULL;
}

static void set_phase(struct conn_table *table, struct conn *c, enum conn_phase phase)
{
    uint64_t now = now_ms();
    c->phase = phase;
    c->since_ms = now;
    if (phase == CONN_RECEIVING)
        c->deadline_ms = now + (uint64_t)table->limits.request_timeout_seconds * 1000u;
    else if (phase == CONN_IDLE)
        c->deadline_ms = now + (uint64_t)table->limits.idle_timeout_seconds * 1000u;
    else
        c->deadline_ms = 0;
}

/* ---- libmicrohttpd's side -------------------------------------------------------------- */

void conn_table_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                       enum MHD_ConnectionNotificationCode code)
{
    struct conn_table *table = cls;
    pthread_mutex_lock(&table->lock);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn *c = fd != NULL ? find_pending(table, fd->connect_fd) : NULL;
        if (c != NULL) {
            set_phase(table, c, CONN_RECEIVING);
            *socket_context = c;
        }
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != NULL) {
        /* Before libmicrohttpd closes the fd: the watchdog never shuts down a reused one. */
        unlink_conn(table, *socket_context);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&table->lock);
}

/* The connection's record: set when it started, cleared after its thread ended, so valid
 * for as long as its requests run. */
static struct conn *conn_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

void conn_request_line(struct MHD_Connection *connection)
{
    struct conn *c = conn_of(connection);
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->table->lock);
    /* A fresh connection keeps the deadline it got when it opened; a kept-alive one gets a
     * new one now that its next request began. */
    if (c->phase == CONN_IDLE)
        set_phase(c->table, c, CONN_RECEIVING);
    c->answered = false;
    pthread_mutex_unlock(&c->table->lock);
}

void conn_request_answered(struct MHD_Connection *connection)
{
    struct conn *c = conn_of(connection);
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->table->lock);
    c->answered = true;
    pthread_mutex_unlock(&c->table->lock);
}

static void move_to(struct MHD_Connection *connection, enum conn_phase phase)
{
    struct conn *c = conn_of(connection);
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->table->lock);
    if (c->phase != CONN_UPGRADED)
        set_phase(c->table, c, phase);
    pthread_mutex_unlock(&c->table->lock);
}

void conn_request_handling(struct MHD_Connection *connection)
{
    move_to(connection, CONN_HANDLING);
}

void conn_request_done(struct MHD_Connection *connection)
{
    move_to(connection, CONN_IDLE);
}

void conn_request_upgraded(struct MHD_Connection *connection)
{
    move_to(connection, CONN_UPGRADED);
}

/* ---- answers written before libmicrohttpd sees a request -------------------------------- */

/* A complete response in the API's error format, Connection: close. */
static size_t format_error_response(enum shed_code code, const char *message, char *out, size_t len)
{
    char body[512];
    json_t *json = api_error_json(code, message);
    char *text = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    snprintf(body, sizeof body, "%s", text != NULL ? text : "{}");
    free(text);
    int status = shed_code_http_status(code);
    int n = snprintf(out, len,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, status == 503 ? "Service Unavailable" : "Request Timeout",
                     strlen(body), body);
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/* Best effort: the socket is non-blocking and the answer small enough for its buffer. */
static void send_error_response(int fd, enum shed_code code, const char *message)
{
    char response[1024];
    size_t len = format_error_response(code, message, response, sizeof response);
    if (len > 0)
        (void)!send(fd, response, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* ---- the watchdog ---------------------------------------------------------------------- */

/* Whether c's fd is still the socket that was accepted (libmicrohttpd closes the fd of a
 * connection it drops, and the number may be reused). */
static bool still_our_socket(const struct conn *c)
{
    struct stat st;
    return fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == c->ino;
}

/* Lock held. Shuts down (never closes: libmicrohttpd owns the fd) what is over its deadline;
 * the connection's thread then sees the end of the stream and closes it. */
static void cut_late_connections(struct conn_table *table, uint64_t now)
{
    for (struct conn *c = table->head, *next; c != NULL; c = next) {
        next = c->next;
        if (c->phase == CONN_PENDING && now - c->since_ms > PENDING_MAX_MS) {
            if (!still_our_socket(c)) {
                unlink_conn(table, c); /* libmicrohttpd dropped it without telling */
                continue;
            }
            c->since_ms = now; /* only slow to start (a loaded machine): still counted */
        }
        bool timed = c->phase == CONN_RECEIVING || c->phase == CONN_IDLE;
        if (!timed || c->cut || now < c->deadline_ms)
            continue;
        /* No 408 over a response libmicrohttpd may still be sending. */
        if (c->phase == CONN_RECEIVING && !c->answered) {
            char message[128];
            snprintf(message, sizeof message,
                     "the request did not arrive within %d s (http_request_timeout_seconds)",
                     table->limits.request_timeout_seconds);
            send_error_response(c->fd, SHED_E_REQUEST_TIMEOUT, message);
            log_line("timeout", &c->client, "phase=request");
        }
        shutdown(c->fd, SHUT_RDWR);
        c->cut = true;
    }
}

static void *watchdog_run(void *arg)
{
    struct conn_table *table = arg;
    pthread_mutex_lock(&table->lock);
    while (!table->stopping) {
        cut_late_connections(table, now_ms());
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += WATCHDOG_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&table->stop_changed, &table->lock, &until);
    }
    pthread_mutex_unlock(&table->lock);
    return NULL;
}

/* ---- the acceptor ---------------------------------------------------------------------- */

/* Reads what the client sent so far: closing with unread bytes would reset the connection
 * (and the client could lose the 503 before reading it). */
static void drain(int fd)
{
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++) {
    }
}

static void linger_add(struct conn_table *table, int fd)
{
    shutdown(fd, SHUT_WR); /* the 503 is followed by the end of the stream */
    if (table->linger_count == LINGER_MAX) {
        drain(fd);
        close(fd);
        return;
    }
    table->linger[table->linger_count++] = (struct lingering){fd, now_ms() + LINGER_MS};
}

/* Reads and drops what refused clients still send; closes them at EOF or after LINGER_MS. */
static void linger_service(struct conn_table *table, const struct pollfd *fds, size_t first)
{
    uint64_t now = now_ms();
    char sink[4096];
    for (size_t i = 0; i < table->linger_count;) {
        const struct pollfd *pfd = &fds[first + i];
        bool done = now >= table->linger[i].until_ms;
        if (!done && pfd->fd == table->linger[i].fd &&
            (pfd->revents & (POLLIN | POLLHUP | POLLERR)))
            done = recv(pfd->fd, sink, sizeof sink, MSG_DONTWAIT) <= 0;
        if (!done) {
            i++;
            continue;
        }
        drain(table->linger[i].fd);
        close(table->linger[i].fd);
        table->linger[i] = table->linger[--table->linger_count];
    }
}

/* Over a cap: answered and closed; else recorded and handed to libmicrohttpd. */
static void admit(struct conn_table *table, int fd, const struct sockaddr_storage *addr,
                  socklen_t addr_len)
{
    struct conn_client client;
    if (client_of_socket(fd, (const struct sockaddr *)addr, &client) < 0) {
        close(fd);
        return;
    }
    const char *refusal = NULL;
    struct conn *c = NULL;
    pthread_mutex_lock(&table->lock);
    for (struct conn *stale = find_pending(table, fd); stale != NULL;
         stale = find_pending(table, fd))
        unlink_conn(table, stale); /* its fd was closed without a start: it came back */
    if (table->count >= (size_t)table->limits.max_connections)
        refusal = "the server has too many connections (http_max_connections); try again";
    else if (count_client(table, &client) >= (size_t)table->limits.max_connections_per_client)
        refusal = "too many connections from this client (http_max_connections_per_client)";
    else if ((c = calloc(1, sizeof *c)) != NULL) {
        struct stat st;
        *c = (struct conn){
            .table = table, .fd = fd, .ino = fstat(fd, &st) == 0 ? st.st_ino : 0, .client = client};
        set_phase(table, c, CONN_PENDING);
        link_conn(table, c);
    } else
        refusal = "out of memory";
    pthread_mutex_unlock(&table->lock);
    if (refusal != NULL) {
        send_error_response(fd, SHED_E_SERVER_BUSY, refusal);
        log_line("refused", &client, refusal);
        linger_add(table, fd);
        return;
    }
    if (MHD_add_connection(table->daemon, fd, (const struct sockaddr *)addr, addr_len) != MHD_YES) {
        /* libmicrohttpd closed the socket. */
        pthread_mutex_lock(&table->lock);
        for (struct conn *p = table->head; p != NULL; p = p->next)
            if (p == c && p->phase == CONN_PENDING) {
                unlink_conn(table, p);
                break;
            }
        pthread_mutex_unlock(&table->lock);
    }
}

static void accept_ready(struct conn_table *table, int listen_fd)
{
    /* A bounded batch per wake-up, so lingering sockets and stop are still served. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd =
            accept4(listen_fd, (struct sockaddr *)&addr, &addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                struct timespec pause = {0, 10 * 1000 * 1000}; /* out of fds: let some close */
                nanosleep(&pause, NULL);
            }
            return;
        }
        admit(table, fd, &addr, addr_len);
    }
}

static void *acceptor_run(void *arg)
{
    struct conn_table *table = arg;
    struct pollfd fds[1 + 4 + LINGER_MAX];
    for (;;) {
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = table->wake_fd, .events = POLLIN};
        for (size_t i = 0; i < table->listen_count; i++)
            fds[n++] = (struct pollfd){.fd = table->listen_fds[i], .events = POLLIN};
        size_t first_linger = n;
        for (size_t i = 0; i < table->linger_count; i++)
            fds[n++] = (struct pollfd){.fd = table->linger[i].fd, .events = POLLIN};
        int ready = poll(fds, n, table->linger_count > 0 ? 100 : -1);
        if (ready < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN)
            break;
        for (size_t i = 0; i < table->listen_count; i++)
            if (fds[1 + i].revents & POLLIN)
                accept_ready(table, table->listen_fds[i]);
        linger_service(table, fds, first_linger);
    }
    for (size_t i = 0; i < table->linger_count; i++) {
        drain(table->linger[i].fd);
        close(table->linger[i].fd);
    }
    table->linger_count = 0;
    return NULL;
}

int conn_acceptor_start(struct conn_table *table, struct MHD_Daemon *daemon, const int *listen_fds,
                        size_t count, struct shed_err *err)
{
    if (count > sizeof table->listen_fds / sizeof table->listen_fds[0])
        return shed_errf(err, SHED_E_BACKEND_ERROR, "too many listening sockets");
    table->daemon = daemon;
    memcpy(table->listen_fds, listen_fds, count * sizeof *listen_fds);
    table->listen_count = count;
    if (pthread_create(&table->acceptor, NULL, acceptor_run, table) != 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot start the acceptor thread");
    table->acceptor_running = true;
    return 0;
}

void conn_acceptor_stop(struct conn_table *table)
{
    if (!table->acceptor_running)
        return;
    uint64_t one = 1;
    (void)!write(table->wake_fd, &one, sizeof one);
    pthread_join(table->acceptor, NULL);
    table->acceptor_running = false;
}

/* ---- the table ------------------------------------------------------------------------- */

int conn_table_new(const struct shed_config_http *limits, struct conn_table **out,
                   struct shed_err *err)
{
    struct conn_table *table = calloc(1, sizeof *table);
    if (table == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    table->limits = *limits;
    table->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_condattr_t attr;
    bool cond_ok = pthread_condattr_init(&attr) == 0 &&
                   pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
                   pthread_cond_init(&table->stop_changed, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (table->wake_fd < 0 || !cond_ok || pthread_mutex_init(&table->lock, NULL) != 0) {
        if (table->wake_fd >= 0)
            close(table->wake_fd);
        free(table);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot set up the connection table");
    }
    if (pthread_create(&table->watchdog, NULL, watchdog_run, table) != 0) {
        conn_table_free(table);
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot start the watchdog thread");
    }
    table->watchdog_running = true;
    *out = table;
    return 0;
}

void conn_table_free(struct conn_table *table)
{
    if (table == NULL)
        return;
    conn_acceptor_stop(table);
    if (table->watchdog_running) {
        pthread_mutex_lock(&table->lock);
        table->stopping = true;
        pthread_cond_broadcast(&table->stop_changed);
        pthread_mutex_unlock(&table->lock);
        pthread_join(table->watchdog, NULL);
    }
    while (table->head != NULL)
        unlink_conn(table, table->head);
    pthread_mutex_destroy(&table->lock);
    pthread_cond_destroy(&table->stop_changed);
    close(table->wake_fd);
    free(table);
}
