/* The client of one repository on one registry: base URL and scheme, authentication state
 * (Basic credentials or a bearer token reused for its lifetime) and small requests
 * (manifests) with retries and hand-followed redirects. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci_private.h"

#define MANIFEST_ACCEPT                                                                            \
    MEDIA_OCI_MANIFEST ", " MEDIA_OCI_INDEX ", " MEDIA_DOCKER_MANIFEST ", " MEDIA_DOCKER_LIST

struct registry_client {
    char *registry; /* host[:port] as in the reference */
    char *repository;
    char *base_url;            /* scheme://host[:port] */
    CURL *easy;                /* manifests and tokens, one at a time */
    struct http_limits limits; /* of the whole pull: cancel flag, deadline, low speed */
    const struct oci_pull_opts *opts;
    bool credentials_loaded;
    char *user, *password;
    enum auth_scheme scheme;
    char *authorization; /* header value sent to the registry's own origin */
    bool authorization_has_credentials;
    struct auth_challenge bearer_challenge; /* to renew the token when it expires */
    uint64_t token_expires_at_ms;
};

static bool host_is_loopback(const char *registry)
{
    size_t host_len = registry[0] == '[' ? strcspn(registry, "]") + 1 : strcspn(registry, ":");
    return (host_len == 9 && strncmp(registry, "localhost", 9) == 0) ||
           strncmp(registry, "127.", 4) == 0 || strncmp(registry, "[::1]", 5) == 0;
}

/* Plain HTTP for loopback and insecure_registries, unless a CA is configured for the
 * registry: then it is HTTPS, wherever it runs. */
static bool registry_is_insecure(const char *registry, const struct oci_pull_opts *opts)
{
    if (opts != NULL && opts->registry_ca != NULL &&
        opts->registry_ca(registry, opts->registry_ca_ctx) != NULL)
        return false;
    if (host_is_loopback(registry))
        return true;
    for (const char *const *p = opts ? opts->insecure_registries : NULL; p != NULL && *p; p++)
        if (strcmp(*p, registry) == 0)
            return true;
    return false;
}

int registry_client_new(const struct oci_ref *ref, const struct oci_pull_opts *opts,
                        struct registry_client **out, struct shed_err *err)
{
    *out = NULL;
    struct registry_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    c->opts = opts;
    http_limits_init(&c->limits, opts);
    c->registry = strdup(ref->registry);
    c->repository = strdup(ref->repository);
    c->base_url = str_printf(
        "%s://%s", registry_is_insecure(ref->registry, opts) ? "http" : "https", ref->registry);
    c->easy = curl_easy_init();
    if (c->registry == NULL || c->repository == NULL || c->base_url == NULL || c->easy == NULL) {
        registry_client_free(c);
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot create the registry client");
    }
    *out = c;
    return 0;
}

void registry_client_free(struct registry_client *c)
{
    if (c == NULL)
        return;
    free(c->registry);
    free(c->repository);
    free(c->base_url);
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    free(c->user);
    free(c->password);
    free(c->authorization);
    auth_challenge_free(&c->bearer_challenge);
    free(c);
}

const char *registry_name(const struct registry_client *c)
{
    return c->registry;
}

const struct http_limits *registry_limits(const struct registry_client *c)
{
    return &c->limits;
}

const struct oci_pull_opts *registry_opts(const struct registry_client *c)
{
    return c->opts;
}

const char *registry_authorization(const struct registry_client *c)
{
    return c->authorization;
}

const char *registry_base_url(const struct registry_client *c)
{
    return c->base_url;
}

char *registry_blob_url(const struct registry_client *c, const char *digest)
{
    return str_printf("%s/v2/%s/blobs/%s", c->base_url, c->repository, digest);
}

static int load_credentials(struct registry_client *c, struct shed_err *err)
{
    if (c->credentials_loaded)
        return 0;
    if (auth_lookup_credentials(c->registry, c->opts, &c->user, &c->password, err) < 0)
        return -1;
    c->credentials_loaded = true;
    return 0;
}

static int set_authorization(struct registry_client *c, char *value, bool has_credentials)
{
    free(c->authorization);
    c->authorization = value;
    c->authorization_has_credentials = has_credentials;
    return value != NULL ? 0 : -1;
}

static int authenticate_basic(struct registry_client *c, struct shed_err *err)
{
    if (c->user == NULL)
        return shed_errf(err, SHED_E_AUTH,
                         "registry %s requires authentication; pass --creds "
                         "user:password or add it to ~/.docker/config.json",
                         c->registry);
    if (c->scheme == AUTH_BASIC && c->authorization_has_credentials)
        return shed_errf(err, SHED_E_AUTH, "registry %s rejected the credentials of user \"%s\"",
                         c->registry, c->user);
    c->scheme = AUTH_BASIC;
    if (set_authorization(c, auth_basic_header_value(c->user, c->password), true) < 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

static int fetch_bearer_token(struct registry_client *c, struct shed_err *err)
{
    struct bearer_token token;
    struct auth_realm_policy policy = {
        .registry = c->registry,
        .registry_base_url = c->base_url,
        .insecure_registries = c->opts != NULL ? c->opts->insecure_registries : NULL,
    };
    if (auth_fetch_token(c->easy, &c->bearer_challenge, c->repository, c->user, c->password,
                         &policy, &c->limits, c->opts, &token, err) < 0)
        return -1;
    c->scheme = AUTH_BEARER;
    c->token_expires_at_ms = token.expires_at_ms;
    char *value = str_printf("Bearer %s", token.token);
    free(token.token);
    if (set_authorization(c, value, c->user != NULL) < 0)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

int registry_authenticate(struct registry_client *c, const char *www_authenticate,
                          struct shed_err *err)
{
    if (www_authenticate == NULL)
        return shed_errf(err, SHED_E_AUTH, "registry %s answered 401 without a challenge",
                         c->registry);
    if (load_credentials(c, err) < 0)
        return -1;
    struct auth_challenge challenge;
    if (auth_challenge_parse(www_authenticate, &challenge, err) < 0)
        return -1;
    if (challenge.scheme == AUTH_BASIC) {
        auth_challenge_free(&challenge);
        return authenticate_basic(c, err);
    }
    auth_challenge_free(&c->bearer_challenge);
    c->bearer_challenge = challenge;
    return fetch_bearer_token(c, err);
}

int registry_refresh_token_if_expired(struct registry_client *c, struct shed_err *err)
{
    if (c->scheme != AUTH_BEARER || monotonic_ms() < c->token_expires_at_ms)
        return 0;
    return fetch_bearer_token(c, err);
}

/* distribution answers {"errors":[{"code":"…","message":"…"}]}; show the first. */
static void registry_error_text(const struct http_response *r, char *buf, size_t len)
{
    buf[0] = '\0';
    json_t *root = r->body != NULL ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_t *first = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(first, "code"));
    const char *message = json_string_value(json_object_get(first, "message"));
    if (code != NULL)
        snprintf(buf, len, ": %s%s%s", code, message ? " " : "", message ? message : "");
    json_decref(root);
}

/* One GET against the registry with retries, redirects (Authorization only for the
 * registry's own origin) and at most two authentication rounds. */
static int registry_get(struct registry_client *c, const char *url, const char *accept,
                        size_t max_body, struct http_response *response, struct shed_err *err)
{
    cleanup_free char *current = strdup(url);
    if (current == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    unsigned attempt = 1, redirects = 0, auth_rounds = 0;
    for (;;) {
        if (registry_refresh_token_if_expired(c, err) < 0)
            return -1;
        bool own_origin = http_same_origin(current, c->base_url);
        struct http_request request = {.url = current,
                                       .opts = c->opts,
                                       .accept = accept,
                                       .max_body = max_body,
                                       .limits = &c->limits,
                                       .authorization = own_origin ? c->authorization : NULL};
        CURLcode curl_result = CURLE_OK;
        int rc = http_perform(c->easy, &request, response, &curl_result, err);
        if (rc < 0 && (http_limits_reached(&c->limits) || attempt >= HTTP_MAX_ATTEMPTS ||
                       !http_curl_code_is_retryable(curl_result, false)))
            return -1;
        if (rc == 0 && response->status >= 300 && response->status < 400 && response->location) {
            if (++redirects > HTTP_MAX_REDIRECTS)
                return shed_errf(err, SHED_E_REGISTRY, "too many redirects from %s", url);
            char *next = http_resolve_url(current, response->location);
            if (next == NULL)
                return shed_errf(err, SHED_E_REGISTRY, "bad redirect to %s", response->location);
            free(current);
            current = next;
            continue;
        }
        if (rc == 0 && response->status == 401 && own_origin && auth_rounds++ < 2) {
            if (registry_authenticate(c, response->www_authenticate, err) < 0)
                return -1;
            continue;
        }
        if (rc < 0 || (http_status_is_retryable(response->status) && attempt < HTTP_MAX_ATTEMPTS)) {
            if (http_sleep_ms(
                    http_retry_delay_ms(attempt, rc < 0 ? -1 : response->retry_after_seconds),
                    &c->limits) < 0)
                return http_limits_error(&c->limits, url, err);
            attempt++;
            continue;
        }
        return 0;
    }
}

int registry_get_manifest(struct registry_client *c, const char *reference,
                          struct http_response *response, struct shed_err *err)
{
    cleanup_free char *url =
        str_printf("%s/v2/%s/manifests/%s", c->base_url, c->repository, reference);
    if (url == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (registry_get(c, url, MANIFEST_ACCEPT, OCI_MAX_MANIFEST_BYTES, response, err) < 0)
        return shed_err_prefix(err, "manifest %s/%s:%s", c->registry, c->repository, reference);
    if (response->status == 200)
        return 0;
    char detail[300];
    registry_error_text(response, detail, sizeof detail);
    if (response->status == 404)
        return shed_errf(err, SHED_E_IMAGE_NOT_FOUND, "%s/%s:%s not found in the registry%s",
                         c->registry, c->repository, reference, detail);
    if (response->status == 401 || response->status == 403)
        return shed_errf(err, SHED_E_AUTH, "registry %s denied access to %s (HTTP %ld)%s",
                         c->registry, c->repository, response->status, detail);
    return shed_errf(err, SHED_E_REGISTRY, "registry %s answered HTTP %ld for manifest %s%s",
                     c->registry, response->status, reference, detail);
}
