/* Internals shared by the files of the oci module; not part of the public contract. */
#ifndef SHED_OCI_PRIVATE_H
#define SHED_OCI_PRIVATE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oci.h"
#include "parse.h"

#define OCI_DOCKER_HUB_REGISTRY "registry-1.docker.io"

#define MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MEDIA_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MEDIA_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Manifests and configs are small; anything larger is refused rather than buffered. */
#define OCI_MAX_MANIFEST_BYTES (8u << 20)
#define OCI_MAX_CONFIG_BYTES (32u << 20)

/* ---- ref.c ---- */
const char *oci_ref_manifest_reference(const struct oci_ref *ref);

/* ---- store.c ---- */
/* <images_dir>/blobs/sha256/<hex>.tmp: the resumable partial download of a blob. */
char *store_blob_tmp_path(const struct oci_store *store, const char *digest);
const char *store_blobs_dir(const struct oci_store *store);
/* Reads a manifest or index from the store: at most OCI_MAX_MANIFEST_BYTES (what the registry
 * client accepts), digest verified. */
int store_read_manifest(const struct oci_store *store, const char *digest, char **data, size_t *len,
                        struct shed_err *err);
/* Free bytes of the filesystem holding the blobs. */
int store_free_bytes(const struct oci_store *store, uint64_t *free_bytes, struct shed_err *err);
/* Bytes a resumable partial download of digest already holds (0 when none). */
uint64_t store_partial_bytes(const struct oci_store *store, const char *digest);
/* Writes a small blob whose bytes we hold (manifest, index) after checking its digest. */
int store_put_blob(struct oci_store *store, const char *digest, const void *data, size_t len,
                   struct shed_err *err);

/* ---- manifest.c (the parsers themselves: parse.h) ---- */
/* "linux/amd64", "linux/arm64/v8", … for the machine we run on. */
void platform_of_host(char *buf, size_t len);

/* ---- http.c: one request with an easy handle, headers and a bounded body collected ---- */
struct http_response {
    long status;
    char *body;
    size_t body_len;
    size_t body_capacity;
    char *content_type;
    char *www_authenticate;
    char *location;
    char *content_range;
    long retry_after_seconds; /* -1 when absent */
};

/* What bounds every request of one pull: the caller's cancel flag, the pull's deadline and
 * the speed under which an attempt is abandoned. */
struct http_limits {
    volatile int *cancel;
    uint64_t deadline_ms; /* monotonic_ms() value; 0: none */
    unsigned timeout_seconds;
    long low_speed_limit, low_speed_time;
};

/* From the pull options (timeouts counted from now). */
void http_limits_init(struct http_limits *limits, const struct oci_pull_opts *opts);
/* Cancelled, or past the deadline. */
bool http_limits_reached(const struct http_limits *limits);
/* The error for http_limits_reached: SHED_E_INTERRUPTED, or the deadline (SHED_E_REGISTRY). */
int http_limits_error(const struct http_limits *limits, const char *what, struct shed_err *err);

struct http_request {
    const char *url;
    const struct oci_pull_opts *opts; /* for the server's CA (registry_ca); may be NULL */
    const char *authorization;        /* full header value ("Bearer …"), NULL for none */
    const char *accept;               /* Accept header value, NULL for none */
    size_t max_body;
    const struct http_limits *limits;
};

void http_response_free(struct http_response *response);
/* Common options: user agent, timeouts, no automatic redirects, the limits (cancel and
 * deadline via the progress callback). */
int http_easy_setup(CURL *easy, const struct http_limits *limits);
/* Fills *curl_result; returns -1 only for local failures (memory, curl setup). */
int http_perform(CURL *easy, const struct http_request *request, struct http_response *response,
                 CURLcode *curl_result, struct shed_err *err);
/* Header callback helper: stores a recognised header of one response line into response. */
void http_response_note_header(struct http_response *response, const char *line, size_t len);
long http_parse_retry_after(const char *value);
bool http_status_is_retryable(long status);
bool http_curl_code_is_retryable(CURLcode code, bool connect_refused_retryable);
/* Backoff before attempt number `attempt` (1 = first retry), honouring Retry-After. */
long http_retry_delay_ms(unsigned attempt, long retry_after_seconds);
/* Sleeps, waking early when a limit is reached; returns -1 then. */
int http_sleep_ms(long ms, const struct http_limits *limits);
/* Resolves a (possibly relative) Location against base; malloc'd. */
char *http_resolve_url(const char *base, const char *location);
/* True when a and b have the same scheme, host and port. */
bool http_same_origin(const char *a, const char *b);
/* One line for a failed transfer; a certificate the client does not trust names the server
 * and how to configure its CA (registry_ca). */
int http_curl_error(struct shed_err *err, CURLcode code, const char *url, const char *errbuf,
                    const struct oci_pull_opts *opts);
/* "host" or "host:port" (the port only when the URL names one) of url; malloc'd, NULL when
 * url does not parse. */
char *http_url_authority(const char *url);
/* The CA file configured for url's server, or NULL. */
const char *http_ca_for_url(const char *url, const struct oci_pull_opts *opts);
/* CURLOPT_CAINFO for url's server when registry_ca names a file for it. */
int http_apply_tls(CURL *easy, const char *url, const struct oci_pull_opts *opts);

#define HTTP_MAX_ATTEMPTS 6
#define HTTP_MAX_REDIRECTS 5

/* ---- auth.c ---- */
/* Credentials for registry: --creds, else docker config.json auths. Both NULL when none. */
int auth_lookup_credentials(const char *registry, const struct oci_pull_opts *opts, char **user,
                            char **password, struct shed_err *err);
char *auth_basic_header_value(const char *user, const char *password);
struct bearer_token {
    char *token;
    uint64_t expires_at_ms; /* monotonic clock */
};
/* Where a token request may carry Basic credentials: over https, to the registry's own
 * origin, or when the registry or the realm's host is listed in insecure_registries. A
 * registry cannot make shed send them in clear text to a server of its choosing. */
struct auth_realm_policy {
    const char *registry;                   /* host[:port] as in the reference */
    const char *registry_base_url;          /* scheme://host[:port] */
    const char *const *insecure_registries; /* NULL-terminated, may be NULL */
};
bool auth_realm_may_get_credentials(const char *realm, const struct auth_realm_policy *policy);
int auth_fetch_token(CURL *easy, const struct auth_challenge *challenge, const char *repository,
                     const char *user, const char *password, const struct auth_realm_policy *policy,
                     const struct http_limits *limits, const struct oci_pull_opts *opts,
                     struct bearer_token *token, struct shed_err *err);
uint64_t monotonic_ms(void);

/* ---- credhelper.c: docker credential helpers ---- */
#define CREDHELPER_TIMEOUT_SECONDS 30
#define CREDHELPER_MAX_OUTPUT (64 * 1024)
/* Helper names are what follows "docker-credential-": [A-Za-z0-9._-], at most 64 bytes, not
 * starting with '.' or '-' (so never a path or an option). */
bool credhelper_name_is_valid(const char *name);
/* Runs docker-credential-<helper> get for server (a registry host[:port], or Docker Hub's
 * "https://index.docker.io/v1/"). No credentials stored for it: 0 with both NULL. */
int credhelper_get(const char *helper, const char *server, char **user, char **secret,
                   struct shed_err *err);

/* ---- registry.c: the client of one repository on one registry ---- */
struct registry_client;

int registry_client_new(const struct oci_ref *ref, const struct oci_pull_opts *opts,
                        struct registry_client **client, struct shed_err *err);
void registry_client_free(struct registry_client *client);
/* GET /v2/<repo>/manifests/<reference> with every manifest type in Accept. */
int registry_get_manifest(struct registry_client *client, const char *reference,
                          struct http_response *response, struct shed_err *err);
char *registry_blob_url(const struct registry_client *client, const char *digest);
/* "http[s]://host[:port]": the origin that may see Authorization. */
const char *registry_base_url(const struct registry_client *client);
/* "Bearer …"/"Basic …" for requests to the registry itself, NULL when anonymous. */
const char *registry_authorization(const struct registry_client *client);
/* After a 401: runs the challenge (token fetch or Basic credentials). Fails with SHED_E_AUTH
 * when the credentials we already sent were refused. */
int registry_authenticate(struct registry_client *client, const char *www_authenticate,
                          struct shed_err *err);
/* Drops a cached token that is close to expiry so the next request renews it. */
int registry_refresh_token_if_expired(struct registry_client *client, struct shed_err *err);
const char *registry_name(const struct registry_client *client);
const struct http_limits *registry_limits(const struct registry_client *client);
const struct oci_pull_opts *registry_opts(const struct registry_client *client);

/* ---- fetch.c: parallel, resumable, verified blob downloads ---- */
struct blob_fetch {
    const char *digest;
    uint64_t size;
    size_t layer_index; /* for progress; SIZE_MAX for the config */
};

struct fetch_progress {
    const struct oci_pull_opts *opts;
    const struct oci_image *image;
    uint64_t bytes_total, bytes_done;
};

int fetch_blobs(struct registry_client *client, struct oci_store *store,
                const struct blob_fetch *blobs, size_t count, const struct oci_pull_opts *opts,
                struct fetch_progress *progress, uint64_t *bytes_fetched, struct shed_err *err);

#endif
