#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/sockutil.h"

#define MAX_RESPONSE_BYTES (64u << 20)

int client_errorf(struct client_error *error, const char *code, const char *fmt, ...)
{
    snprintf(error->code, sizeof error->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error->message, sizeof error->message, fmt, ap);
    va_end(ap);
    return -1;
}

int client_init(struct client *client, const char *base_url, const char *token, const char *origin,
                struct client_error *error)
{
    memset(client, 0, sizeof *client);
    size_t len = strlen(base_url);
    while (len > 0 && base_url[len - 1] == '/')
        len--;
    client->base_url = strndup(base_url, len);
    client->token = token != NULL ? strdup(token) : NULL;
    client->origin = origin != NULL ? strdup(origin) : NULL;
    if (client->base_url == NULL || (token != NULL && client->token == NULL) ||
        (origin != NULL && client->origin == NULL)) {
        client_cleanup(client);
        return client_errorf(error, "NO_MEMORY", "out of memory");
    }
    return 0;
}

void client_cleanup(struct client *client)
{
    free(client->base_url);
    free(client->token);
    free(client->origin);
    memset(client, 0, sizeof *client);
}

void client_response_clear(struct client_response *response)
{
    if (response->json != NULL)
        json_decref(response->json);
    memset(response, 0, sizeof *response);
}

/* ---- one transfer -------------------------------------------------------------------- */

struct transfer {
    char *body;
    size_t len;
    size_t capacity;
    bool overflow;
    bool is_event_stream;
    bool content_type_seen;
    /* SSE parsing state */
    client_event_fn on_event;
    void *ctx;
    size_t parsed; /* bytes of body already consumed as complete frames */
};

static void parse_frames(struct transfer *transfer);

static size_t on_header(char *data, size_t size, size_t count, void *userdata)
{
    struct transfer *transfer = userdata;
    size_t len = size * count;
    static const char name[] = "content-type:";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        transfer->content_type_seen = true;
        transfer->is_event_stream = memmem(data, len, "text/event-stream", 17) != NULL;
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t count, void *userdata)
{
    struct transfer *transfer = userdata;
    size_t len = size * count;
    if (transfer->len + len > MAX_RESPONSE_BYTES) {
        transfer->overflow = true;
        return 0;
    }
    if (ARRAY_RESERVE(transfer->body, transfer->capacity, transfer->len + len + 1, NULL) < 0)
        return 0;
    memcpy(transfer->body + transfer->len, data, len);
    transfer->len += len;
    transfer->body[transfer->len] = '\0';
    if (transfer->is_event_stream && transfer->on_event != NULL)
        parse_frames(transfer);
    return len;
}

/* Calls on_event for every complete frame ("event: T\ndata: JSON\n\n") not yet parsed. */
static void parse_frames(struct transfer *transfer)
{
    for (;;) {
        char *start = transfer->body + transfer->parsed;
        char *end = strstr(start, "\n\n");
        if (end == NULL)
            return;
        *end = '\0';
        char type[64] = "message";
        json_t *data = NULL;
        for (char *line = start; line != NULL && *line != '\0';) {
            char *next = strchr(line, '\n');
            if (next != NULL)
                *next++ = '\0';
            if (strncmp(line, "event:", 6) == 0)
                snprintf(type, sizeof type, "%s", line + 6 + (line[6] == ' '));
            else if (strncmp(line, "data:", 5) == 0 && data == NULL)
                data = json_loads(line + 5 + (line[5] == ' '), 0, NULL);
            line = next;
        }
        transfer->on_event(type, data, transfer->ctx);
        if (data != NULL)
            json_decref(data);
        transfer->parsed = (size_t)(end + 2 - transfer->body);
    }
}

/* Turns a 4xx/5xx body into the user-facing error. */
static int error_from_response(long status, const char *body, struct client_error *error)
{
    json_t *json = body != NULL ? json_loads(body, 0, NULL) : NULL;
    const char *code = NULL, *message = NULL;
    if (json != NULL &&
        json_unpack(json, "{s:{s:s, s:s}}", "error", "code", &code, "message", &message) == 0) {
        client_errorf(error, code, "%s", message);
    } else {
        client_errorf(error, "HTTP_ERROR", "the server answered HTTP %ld", status);
    }
    if (json != NULL)
        json_decref(json);
    return -1;
}

/* The server could not be reached at all: say which URL was tried, where it came from, and
 * what to check. */
static int connection_error(const struct client *client, const char *reason,
                            struct client_error *error)
{
    bool from_command_line = client->origin == NULL || strcmp(client->origin, "-s") == 0;
    return client_errorf(error, "CONNECTION",
                         "cannot connect to %s (%s): %s; is shed-server running there?%s",
                         client->base_url, client->origin != NULL ? client->origin : "-s", reason,
                         from_command_line ? ""
                                           : " Pick a server with -s HOST:PORT or 'shed server "
                                             "add NAME URL'.");
}

static int perform(const struct client *client, const char *method, const char *path,
                   const json_t *body, bool stream, struct transfer *transfer, long *status,
                   struct client_error *error)
{
    cleanup_free char *url = str_printf("%s%s", client->base_url, path);
    cleanup_free char *payload = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    cleanup_free char *auth =
        client->token != NULL ? str_printf("Authorization: Bearer %s", client->token) : NULL;
    if (url == NULL || (body != NULL && payload == NULL) || (client->token != NULL && auth == NULL))
        return client_errorf(error, "NO_MEMORY", "out of memory");
    CURL *curl = curl_easy_init();
    if (curl == NULL)
        return client_errorf(error, "NO_MEMORY", "cannot initialise libcurl");
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers,
                                stream ? "Accept: text/event-stream" : "Accept: application/json");
    if (payload != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    if (auth != NULL)
        headers = curl_slist_append(headers, auth);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, transfer);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    if (client->timeout_seconds > 0)
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, client->timeout_seconds);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (payload != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    curl_off_t connected_at = 0; /* 0: the TCP connection never came up */
    curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connected_at);
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    if (transfer->overflow)
        return client_errorf(error, "PROTOCOL", "response from %s larger than %u bytes",
                             client->base_url, MAX_RESPONSE_BYTES);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        (rc == CURLE_OPERATION_TIMEDOUT && connected_at == 0))
        return connection_error(client, curl_easy_strerror(rc), error);
    if (rc != CURLE_OK)
        return client_errorf(error, "CONNECTION", "%s: %s", client->base_url,
                             curl_easy_strerror(rc));
    return 0;
}

static int finish_plain(struct transfer *transfer, long status, struct client_response *response,
                        struct client_error *error)
{
    if (status >= 400)
        return error_from_response(status, transfer->body, error);
    response->status = status;
    if (transfer->len == 0)
        return 0;
    json_error_t jerr;
    response->json = json_loadb(transfer->body, transfer->len, 0, &jerr);
    if (response->json == NULL)
        return client_errorf(error, "PROTOCOL", "invalid JSON from the server: %s", jerr.text);
    return 0;
}

int client_request(const struct client *client, const char *method, const char *path,
                   const json_t *body, struct client_response *response, struct client_error *error)
{
    memset(response, 0, sizeof *response);
    struct transfer transfer = {0};
    long status = 0;
    int rc = perform(client, method, path, body, false, &transfer, &status, error);
    if (rc == 0)
        rc = finish_plain(&transfer, status, response, error);
    free(transfer.body);
    return rc;
}

int client_stream(const struct client *client, const char *method, const char *path,
                  const json_t *body, client_event_fn on_event, void *ctx,
                  struct client_response *response, struct client_error *error)
{
    memset(response, 0, sizeof *response);
    struct transfer transfer = {.on_event = on_event, .ctx = ctx};
    long status = 0;
    int rc = perform(client, method, path, body, true, &transfer, &status, error);
    if (rc == 0 && !transfer.is_event_stream)
        rc = finish_plain(&transfer, status, response, error);
    else if (rc == 0)
        response->status = status;
    free(transfer.body);
    return rc;
}

/* ---- connect upgrade (raw socket: libcurl 7.88 has no upgrade support) --------------- */

/* http://host[:port] → host and port strings. */
static int split_http_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                          struct client_error *error)
{
    if (strncmp(url, "http://", 7) != 0)
        return client_errorf(error, "USAGE", "tunnel needs an http:// server URL, not %s", url);
    const char *start = url + 7;
    size_t len = strcspn(start, "/");
    const char *colon = memchr(start, ':', len);
    size_t host_len = colon != NULL ? (size_t)(colon - start) : len;
    if (host_len == 0 || host_len >= hostlen)
        return client_errorf(error, "USAGE", "invalid server URL %s", url);
    memcpy(host, start, host_len);
    host[host_len] = '\0';
    if (colon != NULL)
        snprintf(port, portlen, "%.*s", (int)(len - host_len - 1), colon + 1);
    else
        snprintf(port, portlen, "80");
    return 0;
}

static int dial_server(const struct client *client, int *fd_out, struct client_error *error)
{
    const char *url = client->base_url;
    char host[256], port[16];
    if (split_http_url(url, host, sizeof host, port, sizeof port, error) < 0)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addrs = NULL;
    int rc = getaddrinfo(host, port, &hints, &addrs);
    if (rc != 0)
        return client_errorf(error, "CONNECTION", "%s: %s", host, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *a = addrs; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addrs);
    if (fd < 0)
        return connection_error(client, strerror(errno), error);
    *fd_out = fd;
    return 0;
}

/* Reads until the end of the response headers; the bytes after them go to *extra. */
static int read_response_head(int fd, char *buf, size_t buflen, size_t *head_len, size_t *total)
{
    size_t len = 0;
    while (len + 1 < buflen) {
        ssize_t n = TEMP_FAILURE_RETRY(recv(fd, buf + len, buflen - 1 - len, 0));
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            *head_len = (size_t)(end + 4 - buf);
            *total = len;
            return 0;
        }
    }
    buf[len] = '\0';
    *head_len = *total = len;
    return -1;
}

int client_connect_upgrade(const struct client *client, const char *shed, uint16_t port, int *fd,
                           char **extra, size_t *extra_len, struct client_error *error)
{
    int sock = -1;
    if (dial_server(client, &sock, error) < 0)
        return -1;
    cleanup_free char *request =
        str_printf("GET /api/sheds/%s/connect/%u HTTP/1.1\r\nHost: shed\r\nConnection: Upgrade\r\n"
                   "Upgrade: shed-tcp\r\n%s%s%s\r\n",
                   shed, (unsigned)port, client->token ? "Authorization: Bearer " : "",
                   client->token ? client->token : "", client->token ? "\r\n" : "");
    char buf[16384];
    size_t head_len = 0, total = 0;
    if (request == NULL || sock_send_all(sock, request, strlen(request)) < 0 ||
        read_response_head(sock, buf, sizeof buf, &head_len, &total) < 0) {
        close(sock);
        return client_errorf(error, "CONNECTION", "connect request to %s failed", client->base_url);
    }
    long status = 0;
    if (sscanf(buf, "HTTP/1.%*d %ld", &status) != 1) {
        close(sock);
        return client_errorf(error, "PROTOCOL", "not an HTTP response from %s", client->base_url);
    }
    if (status != 101) {
        close(sock);
        return error_from_response(status, buf + head_len, error);
    }
    *extra_len = total - head_len;
    *extra = malloc(*extra_len + 1);
    if (*extra == NULL) {
        close(sock);
        return client_errorf(error, "NO_MEMORY", "out of memory");
    }
    memcpy(*extra, buf + head_len, *extra_len);
    *fd = sock;
    return 0;
}
