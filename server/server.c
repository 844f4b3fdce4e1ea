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
#include "handlers.h"
#include "run_files.h"

/* A body announced larger than this is refused before it is read (the connection is then
 * closed, and a client still sending may see a reset instead of the 413). Bodies between
 * API_MAX_BODY_BYTES and this are read and discarded, so that the client gets a clean 413. */
#define EARLY_REJECT_BODY_BYTES (64ULL << 20)

/* How long server_stop waits for requests in flight (a create drives a backend for seconds;
 * this is a ceiling, not an expected duration). */
#define SHUTDOWN_GRACE_SECONDS 120

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

static void server_reload_if_changed(struct server *server);
static void note_loaded_file(struct server *server);
static int record_reload(struct server *server, bool ok, const char *message);

/* The requests that delete images: they must not decide with a stale list of configured
 * variants (server_reload). */
static bool deletes_images(const char *method, const char *url)
{
    if (strcmp(method, "DELETE") == 0)
        return strncmp(url, "/api/images/", 12) == 0;
    return strcmp(method, "POST") == 0 &&
           (strcmp(url, "/api/images/prune") == 0 || strcmp(url, "/api/system/prune") == 0);
}

static void route_with(struct server *server, struct MHD_Connection *connection, const char *method,
                       const char *url, struct request_state *state,
                       const struct api_context *context, struct api_response *response)
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
    struct api_request request = {
        .connection = connection,
        .method = method,
        .path = url,
        .body = state->body != NULL ? state->body : "",
        .body_len = state->body_len,
    };
    (void)server;
    api_route(&request, context, response);
}

/* Each request runs with the snapshot current when it arrives, to its end. */
static void dispatch(struct server *server, struct MHD_Connection *connection, const char *method,
                     const char *url, struct request_state *state, struct api_response *response)
{
    if (deletes_images(method, url))
        server_reload_if_changed(server);
    struct api_context context = server->context;
    context.snapshot = config_slot_acquire(&server->config_slot);
    context.config = &context.snapshot->config;
    context.info_backend = context.snapshot->info_backend;
    route_with(server, connection, method, url, state, &context, response);
    config_snapshot_release(context.snapshot);
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
    context->backends = backends;
    if (fs_mkdir_private(config->data_dir, err) < 0 ||
        fs_mkdir_private(config->images_dir, err) < 0)
        return -1;
    if ((server->data_dir = strdup(config->data_dir)) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (instance_store_open(config->instance_dir, &context->instances, err) < 0)
        return -1;
    context->list_cache = shed_list_cache_new();
    if (context->list_cache == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_free char *comment = str_printf("shed@%s", config->name);
    if (comment == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (api_host_key_load_or_create(config->data_dir, comment, &context->host_public_key, err) < 0)
        return -1;
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
    server_claim_release(server->claim);
    free(server->data_dir);
    free(server->loaded_file.path);
    if (server->config_slot.current != NULL)
        config_slot_destroy(&server->config_slot);
    pthread_mutex_destroy(&server->reload_lock);
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

int server_start(struct shed_config *config, struct server_claim *claim,
                 const struct server_config_source *source, const struct backend_set *backends,
                 struct server **out, struct shed_err *err)
{
    struct sockaddr_in addr;
    if (parse_bind_address(config->bind, config->http_port, &addr, err) < 0) {
        server_claim_release(claim);
        return -1;
    }
    struct server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        server_claim_release(claim);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    atomic_init(&server->in_flight, 0);
    server->source = *source;
    server->claim = claim;
    pthread_mutex_init(&server->reload_lock, NULL);
    char bind_text[64];
    snprintf(bind_text, sizeof bind_text, "%s", config->bind);
    int http_port = config->http_port;
    if (prepare_context(server, config, backends, err) < 0 ||
        install_first_config(server, config, backends, err) < 0) {
        free_server(server);
        return -1;
    }
    int listen_fd = -1;
    if (listen_on(&addr, bind_text, http_port, &listen_fd, err) < 0) {
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
        shed_errf(err, SHED_E_IO, "cannot start the HTTP server on %s:%d: %s", bind_text, http_port,
                  server->start_message[0] ? server->start_message : "libmicrohttpd failed");
        free_server(server);
        return -1;
    }
    atomic_store(&server->running, true);
    server->port = bound_port(server->daemon, (uint16_t)http_port);
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
