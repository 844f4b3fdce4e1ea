#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"
#include "common/timeutil.h"
#include "config_snapshot.h"
#include "connections.h"
#include "handlers.h"
#include "listen.h"
#include "run_files.h"
#include "runtime/host_key.h"

/* A body announced larger than this is refused before it is read (the connection is then
 * closed, and a client still sending may see a reset instead of the 413). Bodies between
 * API_MAX_BODY_BYTES and this are read and discarded, so that the client gets a clean 413. */
#define EARLY_REJECT_BODY_BYTES (64ULL << 20)

/* How long server_stop waits for requests in flight (a create drives a backend for seconds;
 * this is a ceiling, not an expected duration). */
#define SHUTDOWN_GRACE_SECONDS 120
/* libmicrohttpd's own caps sit just above ours (connections.c answers 503 first): they only
 * back ours up, e.g. while a closing connection is still counted by one and not the other. */
#define MHD_LIMIT_SLACK 64

/* What a reload compares: the file last read (NULL: built-in defaults) and its identity. */
struct config_file_identity {
    char *path;
    struct stat st;
    bool exists;
};

struct server {
    struct MHD_Daemon *daemon;
    struct api_context context; /* the parts made at start; config comes from config_slot */
    struct config_slot config_slot;
    struct server_config_source source;
    pthread_mutex_t reload_lock; /* one reload at a time (SIGHUP and stale-file checks) */
    struct config_file_identity loaded_file;
    unsigned reload_generation;
    char *data_dir;             /* the running one (a restart-only key) */
    struct server_claim *claim; /* the data dir's pid file, held */
    struct conn_table *connections;
    atomic_size_t in_flight;
    uint16_t port;
    size_t discovered;
    int tcp_fd, unix_fd;
    ino_t unix_ino;
    char *unix_path;
    /* libmicrohttpd's messages while it starts: kept for our own error, never printed */
    atomic_bool running;
    char start_message[256];
};

/* Per-request state (libmicrohttpd's con_cls, made when the request line arrived): the raw
 * target, the time it started and the body so far. */
struct request_state {
    struct timespec start;
    char *target; /* as the client sent it: not decoded */
    char *body;
    size_t body_len;
    size_t body_capacity;
    bool headers_seen;
    bool too_large;
    bool responded;        /* a response was queued early (413 before the body was read) */
    struct tunnel *tunnel; /* a connect answered 101 whose upgrade has not happened yet */
};

/* The target for the log: control bytes and quotes shown as '?', at most 200 bytes. */
static void loggable(const char *target, char *out, size_t len)
{
    size_t n = 0;
    for (const char *c = target != NULL ? target : "-"; *c != '\0' && n + 1 < len && n < 200; c++)
        out[n++] = (unsigned char)*c < 0x21 || *c == 0x7f || *c == '"' ? '?' : *c;
    out[n] = '\0';
}

static void log_request(const char *method, const char *target, unsigned status, double ms)
{
    char stamp[RFC3339_SIZE], path[256];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    loggable(target, path, sizeof path);
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    fprintf(stderr, "%s http method=%s path=%s status=%u ms=%.2f\n", stamp, method, path, status,
            ms);
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
                                   struct request_state *state, struct api_response *response)
{
    unsigned status = response->status;
    if (response->tunnel != NULL) {
        /* Kept until the request completes: the upgrade takes it over, or it is abandoned. */
        state->tunnel = response->tunnel;
        tunnel_set_owner_slot(state->tunnel, &state->tunnel);
        response->tunnel = NULL;
    }
    enum MHD_Result result = queue_response(connection, response);
    api_response_clear(response);
    log_request(method, state->target, status, api_elapsed_ms(&state->start));
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

/* The unix socket's file permissions are its access control: no token there. */
static bool request_authorized(struct MHD_Connection *connection, const char *token)
{
    if (token == NULL || token[0] == '\0')
        return true;
    struct conn_client client;
    if (conn_client_of(connection, &client) == 0 && client.is_unix)
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

static void server_reload_if_changed(struct server *server);
static void note_loaded_file(struct server *server);
static int record_reload(struct server *server, bool ok, const char *message);

/* The requests that delete images: they must not decide with a stale list of configured
 * variants (server_reload). The raw target's path (before any query) is enough to tell. */
static bool deletes_images(const char *method, const char *target)
{
    if (target == NULL)
        return false;
    size_t len = strcspn(target, "?");
    if (strcmp(method, "DELETE") == 0)
        return strncmp(target, "/api/images/", 12) == 0;
    return strcmp(method, "POST") == 0 &&
           ((len == 17 && strncmp(target, "/api/images/prune", len) == 0) ||
            (len == 17 && strncmp(target, "/api/system/prune", len) == 0));
}

static void route_with(struct MHD_Connection *connection, const char *method,
                       struct request_state *state, const struct api_context *context,
                       struct api_response *response)
{
    if (!request_authorized(connection, context->config->api_token)) {
        api_respond_errorf(response, SHED_E_UNAUTHORIZED,
                           "missing or wrong \"Authorization: Bearer <token>\" header");
        return;
    }
    if (state->too_large) {
        api_respond_errorf(response, SHED_E_PAYLOAD_TOO_LARGE, "request body larger than %d bytes",
                           API_MAX_BODY_BYTES);
        return;
    }
    /* Routed on the target as the client sent it, decoded here: libmicrohttpd's decoding
     * keeps whatever follows a %00 out of sight ("/api/sheds/a%00x" would name shed "a"). */
    cleanup_free char *path = NULL;
    struct shed_err err = {0};
    if (api_decode_path(state->target != NULL ? state->target : "", &path, &err) < 0) {
        api_respond_error(response, &err);
        return;
    }
    struct api_request request = {
        .connection = connection,
        .method = method,
        .path = path,
        .body = state->body != NULL ? state->body : "",
        .body_len = state->body_len,
    };
    api_route(&request, context, response);
}

/* Each request runs with the snapshot current when it arrives, to its end. */
static void dispatch(struct server *server, struct MHD_Connection *connection, const char *method,
                     struct request_state *state, struct api_response *response)
{
    if (deletes_images(method, state->target))
        server_reload_if_changed(server);
    struct api_context context = server->context;
    context.snapshot = config_slot_acquire(&server->config_slot);
    context.config = &context.snapshot->config;
    context.info_backend = context.snapshot->info_backend;
    route_with(connection, method, state, &context, response);
    config_snapshot_release(context.snapshot);
}

static struct request_state *request_state_new(struct server *server, const char *target)
{
    struct request_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &state->start);
    /* One byte more than api_decode_path takes, so that a longer target is refused there. */
    state->target = target != NULL ? strndup(target, API_MAX_TARGET + 1) : NULL;
    atomic_fetch_add(&server->in_flight, 1);
    return state;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line arrived (its target not decoded yet); what
 * this returns is the request's con_cls. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *connection)
{
    conn_request_line(connection);
    return request_state_new(cls, uri);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct server *server = cls;
    struct request_state *state = *con_cls;
    struct api_response response = {0};
    if (state == NULL && (state = *con_cls = request_state_new(server, url)) == NULL)
        return MHD_NO;
    if (!state->headers_seen) {
        state->headers_seen = true;
        if (content_length_above(connection, EARLY_REJECT_BODY_BYTES)) {
            /* Answer before reading the body; libmicrohttpd then closes the connection. */
            state->too_large = true;
            state->responded = true;
            conn_request_answered(connection);
            api_respond_errorf(&response, SHED_E_PAYLOAD_TOO_LARGE,
                               "request body larger than %d bytes", API_MAX_BODY_BYTES);
            return respond_now(connection, method, state, &response);
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
    conn_request_handling(connection); /* the request is in: no deadline while it runs */
    dispatch(server, connection, method, state, &response);
    return respond_now(connection, method, state, &response);
}

static void on_request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                                 enum MHD_RequestTerminationCode code)
{
    (void)code;
    struct server *server = cls;
    struct request_state *state = *con_cls;
    conn_request_done(connection);
    if (state == NULL)
        return;
    tunnel_abandon(state->tunnel); /* answered 101, but the upgrade never happened */
    free(state->target);
    free(state->body);
    free(state);
    *con_cls = NULL;
    atomic_fetch_sub(&server->in_flight, 1);
}

static void free_server(struct server *server)
{
    if (server == NULL)
        return;
    conn_table_free(server->connections);
    api_context_close(&server->context);
    if (server->unix_fd >= 0) {
        listen_unix_remove(server->unix_path, server->unix_ino);
        close(server->unix_fd);
    }
    if (server->tcp_fd >= 0)
        close(server->tcp_fd);
    free(server->unix_path);
    server_claim_release(server->claim);
    free(server->data_dir);
    free(server->loaded_file.path);
    if (server->config_slot.current != NULL)
        config_slot_destroy(&server->config_slot);
    pthread_mutex_destroy(&server->reload_lock);
    free(server);
}

static int open_listeners(struct server *server, const struct shed_config *config,
                          struct shed_err *err)
{
    if (listen_tcp(config->bind, config->http_port, &server->tcp_fd, &server->port, err) < 0)
        return -1; /* "cannot listen on ADDR:PORT: Address already in use" */
    if (config->unix_socket == NULL)
        return 0;
    if ((server->unix_path = strdup(config->unix_socket)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return listen_unix(config, &server->unix_fd, &server->unix_ino, err);
}

/* libmicrohttpd's error log: a log line like ours once the server runs; while it starts, the
 * message is kept for server_start's one error (no stray library line before it). Uncorking
 * a unix socket "fails" on every connection (it is not TCP): only noise, dropped. */
static void log_library_message(void *opaque, const char *fmt, va_list ap)
{
    struct server *server = opaque;
    char message[256];
    vsnprintf(message, sizeof message, fmt, ap);
    message[strcspn(message, "\n")] = '\0';
    if (strstr(message, "Failed to push the data from buffers") != NULL)
        return;
    if (!atomic_load(&server->running)) {
        snprintf(server->start_message, sizeof server->start_message, "%s", message);
        return;
    }
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    fprintf(stderr, "%s http error=\"%s\"\n", stamp, message);
}

static struct MHD_Daemon *start_daemon(struct server *server, const struct shed_config *config)
{
    const struct shed_config_http *http = &config->http;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET;
    /* The logger first: libmicrohttpd logs what goes wrong with the options after it. */
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, server, MHD_OPTION_EXTERNAL_LOGGER, log_library_message,
        server, MHD_OPTION_NOTIFY_COMPLETED, on_request_completed, server,
        MHD_OPTION_NOTIFY_CONNECTION, conn_table_notify, server->connections,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, server, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)http->idle_timeout_seconds, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(http->max_connections + MHD_LIMIT_SLACK), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(http->max_connections_per_client + 4), MHD_OPTION_END);
}

/* The configuration becomes the first snapshot; the file it came from is remembered. */
static int install_first_config(struct server *server, struct shed_config *config,
                                const struct backend_set *backends, struct shed_err *err)
{
    note_loaded_file(server);
    struct config_snapshot *first = NULL;
    if (config_snapshot_new(config, backends, &first, err) < 0)
        return -1;
    config_slot_init(&server->config_slot, first);
    return record_reload(server, true, "serving");
}

/* What the server keeps of the config at start: the context, the connection table and the
 * listening sockets. */
static int open_context(struct server *server, const struct shed_config *config,
                        const struct backend_set *backends, struct shed_err *err)
{
    if (api_context_open(&server->context, config, backends, &server->discovered, err) < 0)
        return -1;
    if ((server->data_dir = strdup(config->data_dir)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (conn_table_new(&config->http, &server->connections, err) < 0)
        return -1;
    return open_listeners(server, config, err);
}

static int start_accepting(struct server *server, struct shed_err *err)
{
    int listen_fds[2];
    size_t listen_count = 0;
    listen_fds[listen_count++] = server->tcp_fd;
    if (server->unix_fd >= 0)
        listen_fds[listen_count++] = server->unix_fd;
    return conn_acceptor_start(server->connections, server->daemon, listen_fds, listen_count, err);
}

int server_start(struct shed_config *config, struct server_claim *claim,
                 const struct server_config_source *source, const struct backend_set *backends,
                 struct server **out, struct shed_err *err)
{
    if (listen_check_exposure(config, err) < 0) {
        server_claim_release(claim);
        return -1;
    }
    struct server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        server_claim_release(claim);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    server->tcp_fd = server->unix_fd = -1;
    atomic_init(&server->in_flight, 0);
    server->source = *source;
    server->claim = claim;
    pthread_mutex_init(&server->reload_lock, NULL);
    if (open_context(server, config, backends, err) < 0) {
        free_server(server);
        return -1;
    }
    server->daemon = start_daemon(server, config);
    if (server->daemon == NULL) {
        shed_errf(err, SHED_E_IO, "cannot start the HTTP server on %s:%d: %s", config->bind,
                  config->http_port,
                  server->start_message[0] ? server->start_message : "libmicrohttpd failed");
        free_server(server);
        return -1;
    }
    atomic_store(&server->running, true);
    /* config moves into the first snapshot: from here on requests take theirs from the slot. */
    server->context.config = NULL;
    if (install_first_config(server, config, backends, err) < 0 ||
        start_accepting(server, err) < 0) {
        MHD_stop_daemon(server->daemon);
        free_server(server);
        return -1;
    }
    server->context.http_port = server->port;
    *out = server;
    return 0;
}

/* ---- the configuration: snapshots and reloads --------------------------------------------- */

const struct shed_config *server_config_acquire(struct server *server)
{
    return &config_slot_acquire(&server->config_slot)->config;
}

void server_config_release(const struct shed_config *config)
{
    if (config != NULL)
        config_snapshot_release(
            (struct config_snapshot *)((char *)config - offsetof(struct config_snapshot, config)));
}

/* Remembers which file the source reads now, and its identity, as the one last read. */
static void note_loaded_file(struct server *server)
{
    struct config_file_identity *file = &server->loaded_file;
    free(file->path);
    file->path = server->source.file != NULL ? server->source.file(server->source.ctx) : NULL;
    file->exists = file->path != NULL && stat(file->path, &file->st) == 0;
}

static bool same_file(const struct config_file_identity *file, const char *path)
{
    if ((file->path == NULL) != (path == NULL))
        return false;
    if (path == NULL)
        return true;
    struct stat st;
    bool exists = stat(path, &st) == 0;
    if (strcmp(file->path, path) != 0 || exists != file->exists)
        return false;
    return !exists ||
           (st.st_dev == file->st.st_dev && st.st_ino == file->st.st_ino &&
            st.st_size == file->st.st_size && st.st_mtim.tv_sec == file->st.st_mtim.tv_sec &&
            st.st_mtim.tv_nsec == file->st.st_mtim.tv_nsec &&
            st.st_ctim.tv_sec == file->st.st_ctim.tv_sec &&
            st.st_ctim.tv_nsec == file->st.st_ctim.tv_nsec);
}

static void log_reload(bool ok, const char *message)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    fprintf(stderr, "%s reload result=%s %s\n", stamp, ok ? "ok" : "refused", message);
}

static int record_reload(struct server *server, bool ok, const char *message)
{
    struct shed_err err = {0};
    if (run_files_record_reload(server->data_dir, server->reload_generation, ok, message, &err) < 0)
        fprintf(stderr, "shed-server: cannot record the reload: %s\n", err.msg);
    return 0;
}

/* "config=<file> images=N base_image=<ref>[; needs a restart: k1, k2 (running values kept)]" */
static void describe_reload(const struct shed_config *config, const struct strv *restart, char *out,
                            size_t len)
{
    int used = snprintf(out, len, "config=%s images=%zu base_image=%s",
                        config->path != NULL ? config->path : "(built-in defaults)",
                        config->image_count, config->base_image ? config->base_image : "null");
    for (size_t i = 0; i < restart->count && used > 0 && (size_t)used < len; i++)
        used += snprintf(out + used, len - (size_t)used, "%s%s",
                         i == 0 ? "; needs a restart: " : ", ", restart->items[i]);
    if (restart->count > 0 && used > 0 && (size_t)used < len)
        snprintf(out + used, len - (size_t)used, " (running values kept)");
}

static int reload_locked(struct server *server, struct shed_err *err)
{
    server->reload_generation++;
    struct shed_config next;
    note_loaded_file(server);
    if (server->source.load(server->source.ctx, &next, err) < 0) {
        char message[700];
        snprintf(message, sizeof message, "%s: %s; the running configuration stays",
                 shed_code_name(err->code), err->msg);
        log_reload(false, message);
        record_reload(server, false, message);
        return -1;
    }
    struct strv restart = STRV_INIT;
    const struct shed_config *running = server_config_acquire(server);
    int rc = shed_config_keep_restart_keys(&next, running, &restart, err);
    server_config_release(running);
    /* The socket stays where it is: a token removed (or allow_unauthenticated dropped) must
     * not leave it open off this host without one. */
    if (rc == 0)
        rc = listen_check_exposure(&next, err);
    struct config_snapshot *snapshot = NULL;
    char message[900];
    if (rc == 0)
        describe_reload(&next, &restart, message, sizeof message);
    if (rc == 0 && (rc = config_snapshot_new(&next, server->context.backends, &snapshot, err)) == 0)
        config_slot_swap(&server->config_slot, snapshot);
    if (rc < 0) {
        shed_config_free(&next);
        snprintf(message, sizeof message, "%s: %s", shed_code_name(err->code), err->msg);
    }
    strv_free(&restart);
    log_reload(rc == 0, message);
    record_reload(server, rc == 0, message);
    return rc;
}

int server_reload(struct server *server, struct shed_err *err)
{
    pthread_mutex_lock(&server->reload_lock);
    int rc = reload_locked(server, err);
    pthread_mutex_unlock(&server->reload_lock);
    return rc;
}

static void server_reload_if_changed(struct server *server)
{
    pthread_mutex_lock(&server->reload_lock);
    char *path = server->source.file != NULL ? server->source.file(server->source.ctx) : NULL;
    if (!same_file(&server->loaded_file, path)) {
        struct shed_err err = {0};
        (void)reload_locked(server, &err); /* logged and recorded either way */
    }
    free(path);
    pthread_mutex_unlock(&server->reload_lock);
}

uint16_t server_port(const struct server *server)
{
    return server->port;
}

size_t server_discovered_sheds(const struct server *server)
{
    return server->discovered;
}

/* Stop accepting; cancel the creates in flight (they roll back) and close the tunnels; let
 * the other requests finish (at most SHUTDOWN_GRACE_SECONDS); then close what is left. */
void server_stop(struct server *server)
{
    if (server == NULL)
        return;
    conn_acceptor_stop(server->connections);
    create_cancel_all(server->context.creates);
    tunnel_registry_stop(server->context.tunnels);
    for (int waited = 0; waited < SHUTDOWN_GRACE_SECONDS * 100; waited++) {
        if (atomic_load(&server->in_flight) == 0)
            break;
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    MHD_stop_daemon(server->daemon);
    free_server(server);
}
