/* HTTP plumbing over libcurl easy handles: one request at a time with headers and a bounded
 * body collected, retry classification and backoff, URL helpers for manual redirects. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/array.h"
#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci_private.h"

#define HTTP_USER_AGENT "shed/" SHED_VERSION

void http_response_free(struct http_response *response)
{
    free(response->body);
    free(response->content_type);
    free(response->www_authenticate);
    free(response->location);
    free(response->content_range);
    memset(response, 0, sizeof *response);
    response->retry_after_seconds = -1;
}

#define HTTP_DEFAULT_LOW_SPEED_LIMIT 1024L
#define HTTP_DEFAULT_LOW_SPEED_TIME 60L
/* One request never takes longer than this, deadline or not. */
#define HTTP_REQUEST_TIMEOUT_MS (300L * 1000)

void http_limits_init(struct http_limits *limits, const struct oci_pull_opts *opts)
{
    memset(limits, 0, sizeof *limits);
    limits->low_speed_limit = HTTP_DEFAULT_LOW_SPEED_LIMIT;
    limits->low_speed_time = HTTP_DEFAULT_LOW_SPEED_TIME;
    if (opts == NULL)
        return;
    limits->cancel = opts->cancel;
    if (opts->low_speed_limit > 0)
        limits->low_speed_limit = opts->low_speed_limit;
    if (opts->low_speed_time > 0)
        limits->low_speed_time = opts->low_speed_time;
    limits->timeout_seconds = opts->timeout_seconds;
    if (opts->timeout_seconds > 0)
        limits->deadline_ms = monotonic_ms() + (uint64_t)opts->timeout_seconds * 1000u;
}

static bool deadline_passed(const struct http_limits *limits)
{
    return limits != NULL && limits->deadline_ms != 0 && monotonic_ms() >= limits->deadline_ms;
}

static bool cancelled(const struct http_limits *limits)
{
    return limits != NULL && limits->cancel != NULL && *limits->cancel;
}

bool http_limits_reached(const struct http_limits *limits)
{
    return cancelled(limits) || deadline_passed(limits);
}

int http_limits_error(const struct http_limits *limits, const char *what, struct shed_err *err)
{
    if (cancelled(limits))
        return shed_errf(err, SHED_E_INTERRUPTED, "interrupted");
    return shed_errf(err, SHED_E_REGISTRY,
                     "%s did not finish within %u s (pull_timeout_seconds): the registry is too "
                     "slow or keeps failing",
                     what, limits != NULL ? limits->timeout_seconds : 0);
}

/* Milliseconds one request may still take: the per-request ceiling, or less near the
 * deadline (at least 1: 0 would mean "no timeout" to libcurl). */
static long request_timeout_ms(const struct http_limits *limits)
{
    if (limits == NULL || limits->deadline_ms == 0)
        return HTTP_REQUEST_TIMEOUT_MS;
    uint64_t now = monotonic_ms();
    if (now >= limits->deadline_ms)
        return 1;
    uint64_t left = limits->deadline_ms - now;
    return left < (uint64_t)HTTP_REQUEST_TIMEOUT_MS ? (long)left : HTTP_REQUEST_TIMEOUT_MS;
}

static int progress_check_limits(void *ctx, curl_off_t dltotal, curl_off_t dlnow,
                                 curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return http_limits_reached(ctx) ? 1 : 0;
}

int http_easy_setup(CURL *easy, const struct http_limits *limits)
{
    CURLcode rc = CURLE_OK;
    /* Redirects are followed by hand so Authorization never reaches another host. */
    rc |= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(easy, CURLOPT_USERAGENT, HTTP_USER_AGENT);
    rc |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (slower than the limit for its time) is a transport error, hence
     * retried — but an attempt that moved too little counts against the retry limit (fetch.c
     * and registry.c), and the deadline ends the whole pull. */
    long limit = limits != NULL ? limits->low_speed_limit : HTTP_DEFAULT_LOW_SPEED_LIMIT;
    long time = limits != NULL ? limits->low_speed_time : HTTP_DEFAULT_LOW_SPEED_TIME;
    rc |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, limit);
    rc |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, time);
    rc |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, request_timeout_ms(limits));
    rc |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    rc |= curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, progress_check_limits);
    rc |= curl_easy_setopt(easy, CURLOPT_XFERINFODATA, (void *)limits);
    return rc == CURLE_OK ? 0 : -1;
}

static char *header_value_dup(const char *value, size_t len)
{
    while (len > 0 && isspace((unsigned char)*value))
        value++, len--;
    while (len > 0 && isspace((unsigned char)value[len - 1]))
        len--;
    return strndup(value, len);
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len)
{
    size_t name_len = strlen(name);
    if (len <= name_len || line[name_len] != ':' || strncasecmp(line, name, name_len) != 0)
        return false;
    *value = line + name_len + 1;
    *value_len = len - name_len - 1;
    return true;
}

static void replace_string(char **slot, const char *value, size_t len)
{
    free(*slot);
    *slot = header_value_dup(value, len);
}

void http_response_note_header(struct http_response *response, const char *line, size_t len)
{
    const char *value;
    size_t value_len;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100 Continue): forget the previous one's headers. */
        char *body = response->body;
        size_t body_len = response->body_len;
        response->body = NULL;
        http_response_free(response);
        response->body = body;
        response->body_len = body_len;
        cleanup_free char *status_line = strndup(line, len);
        if (status_line == NULL || sscanf(status_line, "HTTP/%*s %ld", &response->status) != 1)
            response->status = 0;
    } else if (header_is(line, len, "Content-Type", &value, &value_len)) {
        replace_string(&response->content_type, value, value_len);
    } else if (header_is(line, len, "WWW-Authenticate", &value, &value_len)) {
        replace_string(&response->www_authenticate, value, value_len);
    } else if (header_is(line, len, "Location", &value, &value_len)) {
        replace_string(&response->location, value, value_len);
    } else if (header_is(line, len, "Content-Range", &value, &value_len)) {
        replace_string(&response->content_range, value, value_len);
    } else if (header_is(line, len, "Retry-After", &value, &value_len)) {
        cleanup_free char *text = header_value_dup(value, value_len);
        response->retry_after_seconds = text != NULL ? http_parse_retry_after(text) : -1;
    }
}

struct collect_ctx {
    struct http_response *response;
    size_t max_body;
    bool too_large;
};

static size_t collect_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct collect_ctx *ctx = userdata;
    http_response_note_header(ctx->response, data, size * nitems);
    return size * nitems;
}

static size_t collect_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct collect_ctx *ctx = userdata;
    struct http_response *r = ctx->response;
    size_t n = size * nmemb;
    if (r->body_len + n > ctx->max_body) {
        ctx->too_large = true;
        return 0;
    }
    if (ARRAY_RESERVE(r->body, r->body_capacity, r->body_len + n + 1, NULL) < 0)
        return 0;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

int http_perform(CURL *easy, const struct http_request *request, struct http_response *response,
                 CURLcode *curl_result, struct shed_err *err)
{
    http_response_free(response);
    cleanup_free char *auth_line =
        request->authorization ? str_printf("Authorization: %s", request->authorization) : NULL;
    cleanup_free char *accept_line =
        request->accept ? str_printf("Accept: %s", request->accept) : NULL;
    if ((request->authorization && !auth_line) || (request->accept && !accept_line))
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct curl_slist *headers = NULL, *tmp;
    if (auth_line != NULL) {
        if ((tmp = curl_slist_append(headers, auth_line)) == NULL)
            goto no_memory;
        headers = tmp;
    }
    if (accept_line != NULL) {
        if ((tmp = curl_slist_append(headers, accept_line)) == NULL)
            goto no_memory;
        headers = tmp;
    }
    struct collect_ctx ctx = {.response = response, .max_body = request->max_body};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(easy);
    CURLcode rc = http_easy_setup(easy, request->limits) == 0 ? CURLE_OK : CURLE_FAILED_INIT;
    rc |= curl_easy_setopt(easy, CURLOPT_URL, request->url);
    rc |= http_apply_tls(easy, request->url, request->opts) == 0 ? CURLE_OK : CURLE_FAILED_INIT;
    rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    rc |= curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, collect_header);
    rc |= curl_easy_setopt(easy, CURLOPT_HEADERDATA, &ctx);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_body);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, &ctx);
    rc |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    if (rc != CURLE_OK) {
        curl_slist_free_all(headers);
        return shed_errf(err, SHED_E_REGISTRY, "cannot set up HTTP request to %s", request->url);
    }
    *curl_result = curl_easy_perform(easy);
    curl_slist_free_all(headers);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response->status);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    if (ctx.too_large)
        return shed_errf(err, SHED_E_REGISTRY, "response from %s is larger than %zu bytes",
                         request->url, request->max_body);
    if ((*curl_result == CURLE_ABORTED_BY_CALLBACK || *curl_result == CURLE_OPERATION_TIMEDOUT) &&
        http_limits_reached(request->limits))
        return http_limits_error(request->limits, request->url, err);
    if (*curl_result != CURLE_OK)
        return http_curl_error(err, *curl_result, request->url, errbuf, request->opts);
    return 0;

no_memory:
    curl_slist_free_all(headers);
    return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

char *http_url_authority(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *authority = NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        /* Without CURLU_DEFAULT_PORT: only a port the URL names, as references write it. */
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port != NULL)
            authority = str_printf("%s:%s", host, port);
        else
            authority = strdup(host);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return authority;
}

const char *http_ca_for_url(const char *url, const struct oci_pull_opts *opts)
{
    if (opts == NULL || opts->registry_ca == NULL)
        return NULL;
    cleanup_free char *authority = http_url_authority(url);
    return authority != NULL ? opts->registry_ca(authority, opts->registry_ca_ctx) : NULL;
}

int http_apply_tls(CURL *easy, const char *url, const struct oci_pull_opts *opts)
{
    const char *ca_file = http_ca_for_url(url, opts);
    if (ca_file == NULL)
        return 0;
    return curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file) == CURLE_OK ? 0 : -1;
}

/* A server certificate the client refused: which server, why, and what to do about it. */
static int certificate_error(struct shed_err *err, const char *authority, const char *what,
                             const char *ca_file)
{
    if (strstr(what, "expired") != NULL)
        return shed_errf(err, SHED_E_REGISTRY,
                         "registry %s: its TLS certificate is not trusted because it has expired "
                         "(%s); the registry must renew it",
                         authority, what);
    if (ca_file != NULL)
        return shed_errf(err, SHED_E_REGISTRY,
                         "registry %s: its TLS certificate is not trusted by the CA in %s "
                         "(registry_ca of server.yaml): %s",
                         authority, ca_file, what);
    return shed_errf(err, SHED_E_REGISTRY,
                     "registry %s: its TLS certificate is not trusted (%s); if a private CA "
                     "signed it, add its CA to server.yaml: registry_ca: {\"%s\": /path/to/ca.pem}",
                     authority, what, authority);
}

int http_curl_error(struct shed_err *err, CURLcode code, const char *url, const char *errbuf,
                    const struct oci_pull_opts *opts)
{
    cleanup_free char *host = NULL;
    CURLU *u = curl_url();
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        char *h = NULL, *port = NULL;
        curl_url_get(u, CURLUPART_HOST, &h, 0);
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
        host = str_printf("%s:%s", h ? h : "?", port ? port : "?");
        curl_free(h);
        curl_free(port);
    }
    curl_url_cleanup(u);
    cleanup_free char *authority = http_url_authority(url);
    const char *server = authority != NULL ? authority : url;
    const char *what = errbuf != NULL && *errbuf ? errbuf : curl_easy_strerror(code);
    const char *ca_file = http_ca_for_url(url, opts);
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return shed_errf(err, SHED_E_REGISTRY, "cannot resolve registry host %s (%s)",
                         host ? host : url, what);
    case CURLE_COULDNT_CONNECT:
        return shed_errf(err, SHED_E_REGISTRY, "cannot connect to registry %s (%s)",
                         host ? host : url, what);
    case CURLE_PEER_FAILED_VERIFICATION: return certificate_error(err, server, what, ca_file);
    case CURLE_SSL_CACERT_BADFILE:
        return shed_errf(err, SHED_E_REGISTRY,
                         "registry %s: cannot use the CA file %s of registry_ca (%s)", server,
                         ca_file != NULL ? ca_file : "(none)", what);
    default: return shed_errf(err, SHED_E_REGISTRY, "request to %s failed: %s", url, what);
    }
}

long http_parse_retry_after(const char *value)
{
    char *end = NULL;
    errno = 0;
    long seconds = strtol(value, &end, 10);
    if (end != value && *end == '\0' && errno == 0)
        return seconds < 0 ? 0 : seconds;
    /* HTTP-date form */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (rest == NULL)
        return -1;
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    return when > now ? (long)(when - now) : 0;
}

bool http_status_is_retryable(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

bool http_curl_code_is_retryable(CURLcode code, bool connect_refused_retryable)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT: return connect_refused_retryable;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: return true;
    default: return false;
    }
}

long http_retry_delay_ms(unsigned attempt, long retry_after_seconds)
{
    /* Retry-After is the server telling us exactly when; cap it so a bogus value cannot hang
     * a pull for hours. */
    if (retry_after_seconds >= 0)
        return (retry_after_seconds > 120 ? 120 : retry_after_seconds) * 1000L;
    long delay = 250L << (attempt > 6 ? 6 : attempt - 1);
    return delay > 8000 ? 8000 : delay;
}

int http_sleep_ms(long ms, const struct http_limits *limits)
{
    while (ms > 0) {
        if (http_limits_reached(limits))
            return -1;
        long step = ms > 50 ? 50 : ms;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return http_limits_reached(limits) ? -1 : 0;
}

char *http_resolve_url(const char *base, const char *location)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return NULL;
    char *out = NULL;
    if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, location, CURLU_ALLOW_SPACE) == CURLUE_OK) {
        char *full = NULL;
        if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
            out = strdup(full);
            curl_free(full);
        }
    }
    curl_url_cleanup(u);
    return out;
}

static char *url_origin(const char *url)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return NULL;
    char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        out = str_printf("%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    if (out != NULL)
        for (char *p = out; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    return out;
}

bool http_same_origin(const char *a, const char *b)
{
    cleanup_free char *origin_a = url_origin(a);
    cleanup_free char *origin_b = url_origin(b);
    return origin_a != NULL && origin_b != NULL && strcmp(origin_a, origin_b) == 0;
}
