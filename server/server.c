#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/timeutil.h"
#include "handlers.h"
#include "runtime/host_key.h"

/* A body announced larger than this is refused before it is read (the connection is then
 * closed, and a client still sending may see a reset instead of the 413). Bodies between
 * API_MAX_BODY_BYTES and this are read and discarded, so that the client gets a clean 413. */
#define EARLY_REJECT_BODY_BYTES (64ULL << 20)

/* How long server_stop waits for requests in flight (a create drives a backend for seconds;
 * this is a ceiling, not an expected duration). */
#define SHUTDOWN_GRACE_SECONDS 120

struct server {
    struct MHD_Daemon *daemon;
    struct api_context context;
    atomic_size_t in_flight;
    uint16_t port;
    size_t discovered;
    /* libmicrohttpd's messages while it starts: kept for our own error, never printed */
    atomic_bool running;
    char start_message[256];
};

/* Per-request state (libmicrohttpd's con_cls): the time it started and the body so far. */
struct request_state {
    struct timespec start;
    char *body;
    size_t body_len;
    size_t body_capacity;
    bool too_large;
    bool responded; /* a response was queued early (413 before the body was read) */
};

static void log_request(const char *method, const char *path, unsigned status, double ms)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    fprintf(stderr, "%s http method=%s path=%s status=%u ms=%.2f\n", stamp, method, path, status,
            ms);
}

/* libmicrohttpd's error log: a log line like ours once the server runs; while it starts, the
 * message is kept for server_start's one error (no stray library line before it). */
static void log_library_message(void *opaque, const char *fmt, va_list ap)
{
    struct server *server = opaque;
    char message[256];
    vsnprintf(message, sizeof message, fmt, ap);
    message[strcspn(message, "\n")] = '\0';
    if (!atomic_load(&server->running)) {
        snprintf(server->start_message, sizeof server->start_message, "%s", message);
        return;
    }
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    fprintf(stderr, "%s http error=\"%s\"\n", stamp, message);
}

static enum MHD_Result queue_response(struct MHD_Connection *connection,
                                      struct api_response *response)
{
    struct MHD_Response *mhd = response->mhd;
    response->mhd = NULL;
    if (mhd == NULL && (response->json != NULL || response->json_text != NULL)) {
        char *text = response->json_text != NULL ? response->json_text
                                                 : json_dumps(response->json, JSON_COMPACT);
        response->json_text = NULL;
        if (text == NULL)
            return MHD_NO;
        mhd = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (mhd == NULL) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(mhd, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    } else if (mhd == NULL) {
        mhd = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (mhd == NULL)
            return MHD_NO;
    }
    enum MHD_Result result = MHD_queue_response(connection, response->status, mhd);
    MHD_destroy_response(mhd);
    return result;
}

static enum MHD_Result respond_now(struct MHD_Connection *connection, const char *method,
                                   const char *path, struct request_state *state,
                                   struct api_response *response)
{
    unsigned status = response->status;
    enum MHD_Result result = queue_response(connection, response);
    api_response_clear(response);
    log_request(method, path, status, api_elapsed_ms(&state->start));
    return result;
}

/* Constant-time comparison, so the token cannot be guessed byte by byte from timings. */
static bool token_matches(const char *given, const char *expected)
{
    size_t given_len = strlen(given), expected_len = strlen(expected); /* expected non-empty */
    unsigned char diff = given_len != expected_len;
    for (size_t i = 0; i < given_len; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)expected[i % expected_len];
    return diff == 0;
}

static bool request_authorized(struct MHD_Connection *connection, const char *token)
{
    if (token == NULL || token[0] == '\0')
        return true;
    const char *header =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0)
        return false;
    return token_matches(header + 7, token);
}

/* Content-Length above limit? */
static bool content_length_above(struct MHD_Connection *connection, unsigned long long limit)
{
    const char *length =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length == NULL)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(length, &end, 10);
    return errno == ERANGE || (end != length && value > limit);
}

static bool append_body(struct request_state *state, const char *data, size_t size)
{
    if (state->too_large || state->body_len + size > API_MAX_BODY_BYTES) {
        state->too_large = true;
        free(state->body);
        state->body = NULL;
        state->body_len = state->body_capacity = 0;
        return true;
    }
    if (ARRAY_RESERVE(state->body, state->body_capacity, state->body_len + size + 1, NULL) < 0)
        return false;
    memcpy(state->body + state->body_len, data, size);
    state->body_len += size;
    state->body[state->body_len] = '\0';
    return true;
}

static void dispatch(struct server *server, struct MHD_Connection *connection, const char *method,
                     const char *url, struct request_state *state, struct api_response *response)
{
    if (!request_authorized(connection, server->context.config->api_token)) {
        api_respond_errorf(response, SHED_E_UNAUTHORIZED,
                           "missing or wrong \"Authorization: Bearer <token>\" header");
        return;
    }
    if (state->too_large) {
        api_respond_errorf(response, SHED_E_PAYLOAD_TOO_LARGE, "request body larger than %d bytes",
                           API_MAX_BODY_BYTES);
        return;
    }
    struct api_request request = {
        .connection = connection,
        .method = method,
        .path = url,
        .body = state->body != NULL ? state->body : "",
        .body_len = state->body_len,
    };
    api_route(&request, &server->context, response);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct server *server = cls;
    struct request_state *state = *con_cls;
    struct api_response response = {0};
    if (state == NULL) {
        state = calloc(1, sizeof *state);
        if (state == NULL)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &state->start);
        *con_cls = state;
        atomic_fetch_add(&server->in_flight, 1);
        if (content_length_above(connection, EARLY_REJECT_BODY_BYTES)) {
            /* Answer before reading the body; libmicrohttpd then closes the connection. */
            state->too_large = true;
            state->responded = true;
            api_respond_errorf(&response, SHED_E_PAYLOAD_TOO_LARGE,
                               "request body larger than %d bytes", API_MAX_BODY_BYTES);
            return respond_now(connection, method, url, state, &response);
        }
        return MHD_YES;
    }
    if (state->responded) {
        *upload_data_size = 0; /* discard the rest of an oversized body */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!append_body(state, upload_data, *upload_data_size))
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    dispatch(server, connection, method, url, state, &response);
    return respond_now(connection, method, url, state, &response);
}

static void on_request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                                 enum MHD_RequestTerminationCode code)
{
    (void)connection;
    (void)code;
    struct server *server = cls;
    struct request_state *state = *con_cls;
    if (state == NULL)
        return;
    free(state->body);
    free(state);
    *con_cls = NULL;
    atomic_fetch_sub(&server->in_flight, 1);
}

static int parse_bind_address(const char *bind, int port, struct sockaddr_in *addr,
                              struct shed_err *err)
{
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    const char *host = bind != NULL && bind[0] != '\0' ? bind : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return shed_errf(err, SHED_E_CONFIG, "bind: \"%s\" is not an IPv4 address", host);
    return 0;
}

/* The listening socket, bound here so a failure says why (EADDRINUSE, EADDRNOTAVAIL). */
static int listen_on(const struct sockaddr_in *addr, const char *bind_text, int port, int *fd_out,
                     struct shed_err *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_IO, errno, "socket");
    int one = 1; /* as libmicrohttpd does: a restart need not wait out TIME_WAIT */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 || listen(fd, 128) < 0) {
        int saved = errno;
        close(fd);
        return shed_errf_errno(err, SHED_E_IO, saved, "cannot listen on %s:%d", bind_text, port);
    }
    *fd_out = fd;
    return 0;
}

static int prepare_context(struct server *server, const struct shed_config *config,
                           const struct backend_set *backends, struct shed_err *err)
{
    struct api_context *context = &server->context;
    context->config = config;
    context->backends = backends;
    if (fs_mkdir_private(config->data_dir, err) < 0 ||
        fs_mkdir_private(config->images_dir, err) < 0)
        return -1;
    if (instance_store_open(config->instance_dir, &context->instances, err) < 0)
        return -1;
    context->lifecycle = (struct shed_lifecycle){.store = context->instances, .backends = backends};
    context->list_cache = shed_list_cache_new();
    if (context->list_cache == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *comment = str_printf("shed@%s", config->name);
    if (comment == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (host_key_load_or_create(config->data_dir, comment, &context->host_public_key, err) < 0)
        return -1;
    backend_set_describe_default(backends, config->default_backend, context->info_backend,
                                 sizeof context->info_backend);
    /* Re-discover the sheds that exist on disk (and warm the metadata cache). */
    struct instance_list list;
    if (instance_store_list(context->instances, &list, err) < 0)
        return shed_err_prefix(err, "cannot read the instance directory");
    server->discovered = list.count;
    instance_list_clear(&list);
    return 0;
}

static void free_server(struct server *server)
{
    if (server == NULL)
        return;
    instance_store_close(server->context.instances);
    shed_list_cache_free(server->context.list_cache);
    free(server->context.host_public_key);
    free(server);
}

static uint16_t bound_port(struct MHD_Daemon *daemon, uint16_t fallback)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL && info->port != 0 ? info->port : fallback;
}

int server_start(const struct shed_config *config, const struct backend_set *backends,
                 struct server **out, struct shed_err *err)
{
    struct sockaddr_in addr;
    if (parse_bind_address(config->bind, config->http_port, &addr, err) < 0)
        return -1;
    struct server *server = calloc(1, sizeof *server);
    if (server == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    atomic_init(&server->in_flight, 0);
    if (prepare_context(server, config, backends, err) < 0) {
        free_server(server);
        return -1;
    }
    int listen_fd = -1;
    if (listen_on(&addr, config->bind, config->http_port, &listen_fd, err) < 0) {
        free_server(server);
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, server, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_EXTERNAL_LOGGER, log_library_message, server, MHD_OPTION_NOTIFY_COMPLETED,
        on_request_completed, server, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_END);
    if (server->daemon == NULL) {
        if (fcntl(listen_fd, F_GETFD) >= 0) /* still ours: libmicrohttpd did not take it */
            close(listen_fd);
        shed_errf(err, SHED_E_IO, "cannot start the HTTP server on %s:%d: %s", config->bind,
                  config->http_port,
                  server->start_message[0] ? server->start_message : "libmicrohttpd failed");
        free_server(server);
        return -1;
    }
    atomic_store(&server->running, true);
    server->port = bound_port(server->daemon, (uint16_t)config->http_port);
    server->context.http_port = server->port;
    *out = server;
    return 0;
}

uint16_t server_port(const struct server *server)
{
    return server->port;
}

size_t server_discovered_sheds(const struct server *server)
{
    return server->discovered;
}

void server_stop(struct server *server)
{
    if (server == NULL)
        return;
    MHD_socket listen_fd = MHD_quiesce_daemon(server->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    for (int waited = 0; waited < SHUTDOWN_GRACE_SECONDS * 100; waited++) {
        if (atomic_load(&server->in_flight) == 0)
            break;
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    MHD_stop_daemon(server->daemon);
    free_server(server);
}
