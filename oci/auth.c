/* Registry authentication: WWW-Authenticate challenges, credentials (--creds or the `auths`
 * of ~/.docker/config.json), Basic header values and the bearer token flow that ghcr.io,
 * Docker Hub and distribution's `auth.token` use. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci_private.h"

/* Tokens without expires_in live 60 s (distribution's token spec). */
#define TOKEN_DEFAULT_LIFETIME_S 60
/* Renew this long before expiry so a token never lapses mid-request. */
#define TOKEN_EXPIRY_MARGIN_MS 5000

uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void auth_challenge_free(struct auth_challenge *challenge)
{
    free(challenge->realm);
    free(challenge->service);
    free(challenge->scope);
    memset(challenge, 0, sizeof *challenge);
}

/* Reads one auth-param value (a quoted-string with \-escapes, or a token) at *p. */
static char *challenge_value(const char **p)
{
    const char *s = *p;
    size_t cap = strlen(s) + 1, n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    if (*s == '"') {
        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1])
                s++;
            out[n++] = *s;
        }
        if (*s == '"')
            s++;
    } else {
        while (*s && *s != ',' && !isspace((unsigned char)*s))
            out[n++] = *s++;
    }
    out[n] = '\0';
    *p = s;
    return out;
}

static int challenge_param(struct auth_challenge *c, const char *name, size_t name_len, char *value)
{
    char **slot = NULL;
    if (name_len == 5 && strncasecmp(name, "realm", 5) == 0)
        slot = &c->realm;
    else if (name_len == 7 && strncasecmp(name, "service", 7) == 0)
        slot = &c->service;
    else if (name_len == 5 && strncasecmp(name, "scope", 5) == 0)
        slot = &c->scope;
    if (slot == NULL) {
        free(value);
        return 0;
    }
    free(*slot);
    *slot = value;
    return 0;
}

int auth_challenge_parse(const char *header, struct auth_challenge *c, struct shed_err *err)
{
    memset(c, 0, sizeof *c);
    const char *p = header;
    while (isspace((unsigned char)*p))
        p++;
    if (strncasecmp(p, "Bearer", 6) == 0 && (p[6] == '\0' || isspace((unsigned char)p[6])))
        c->scheme = AUTH_BEARER, p += 6;
    else if (strncasecmp(p, "Basic", 5) == 0 && (p[5] == '\0' || isspace((unsigned char)p[5])))
        c->scheme = AUTH_BASIC, p += 5;
    else
        return shed_errf(err, SHED_E_AUTH, "unsupported authentication challenge \"%.80s\"",
                         header);
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ',' && !isspace((unsigned char)*p))
            p++;
        size_t name_len = (size_t)(p - name);
        if (*p != '=')
            continue;
        p++;
        char *value = challenge_value(&p);
        if (value == NULL) {
            auth_challenge_free(c);
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
        challenge_param(c, name, name_len, value);
    }
    if (c->scheme == AUTH_BEARER && (c->realm == NULL || *c->realm == '\0')) {
        auth_challenge_free(c);
        return shed_errf(err, SHED_E_AUTH, "bearer challenge without a realm: \"%.80s\"", header);
    }
    return 0;
}

/* ---- credentials ------------------------------------------------------------------------ */

static int split_user_password(const char *text, char **user, char **password, struct shed_err *err)
{
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text)
        return shed_errf(err, SHED_E_INVALID_REQUEST, "credentials must be \"user:password\"");
    *user = strndup(text, (size_t)(colon - text));
    *password = strdup(colon + 1);
    if (*user == NULL || *password == NULL) {
        free(*user), free(*password);
        *user = *password = NULL;
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

static char *base64_decode(const char *text)
{
    size_t len = strlen(text);
    unsigned char *out = malloc(len / 4 * 3 + 4);
    if (out == NULL || len % 4 != 0) {
        free(out);
        return NULL;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the '=' padding as zero bytes. */
    while (len > 0 && text[--len] == '=')
        n--;
    out[n] = '\0';
    return (char *)out;
}

char *auth_basic_header_value(const char *user, const char *password)
{
    cleanup_free char *plain = str_printf("%s:%s", user, password);
    if (plain == NULL)
        return NULL;
    size_t len = strlen(plain);
    cleanup_free char *encoded = malloc(4 * ((len + 2) / 3) + 1);
    if (encoded == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)encoded, (const unsigned char *)plain, (int)len);
    return str_printf("Basic %s", encoded);
}

static char *docker_config_path(const struct oci_pull_opts *opts)
{
    if (opts != NULL && opts->docker_config != NULL)
        return strdup(opts->docker_config);
    const char *dir = getenv("DOCKER_CONFIG");
    if (dir != NULL && *dir)
        return fs_path_join(dir, "config.json");
    const char *home = getenv("HOME");
    return home != NULL ? str_printf("%s/.docker/config.json", home) : NULL;
}

/* `auths` keys are written as "host", "https://host", "http://host/v2/"…; Docker Hub's is
 * "https://index.docker.io/v1/". */
static bool auths_key_matches(const char *key, const char *registry)
{
    if (strcmp(registry, OCI_DOCKER_HUB_REGISTRY) == 0 &&
        (strstr(key, "index.docker.io") != NULL || strcmp(key, "docker.io") == 0))
        return true;
    const char *host = key;
    if (strncmp(host, "https://", 8) == 0)
        host += 8;
    else if (strncmp(host, "http://", 7) == 0)
        host += 7;
    size_t len = strcspn(host, "/");
    return len == strlen(registry) && strncmp(host, registry, len) == 0;
}

/* The credential helper docker would ask for registry: credHelpers' entry for it, else
 * credsStore; NULL when the file's own `auths` hold the credentials. */
static const char *credential_helper_of(json_t *root, const char *registry)
{
    const char *key;
    json_t *entry;
    json_object_foreach(json_object_get(root, "credHelpers"), key, entry)
    {
        if (auths_key_matches(key, registry) && json_string_value(entry) != NULL &&
            json_string_value(entry)[0] != '\0')
            return json_string_value(entry);
    }
    const char *store = json_string_value(json_object_get(root, "credsStore"));
    return store != NULL && store[0] != '\0' ? store : NULL;
}

/* The server address docker hands its helpers: the registry, or Docker Hub's index URL. */
static int credentials_from_helper(const char *helper, const char *registry, const char *path,
                                   char **user, char **password, struct shed_err *err)
{
    const char *server =
        strcmp(registry, OCI_DOCKER_HUB_REGISTRY) == 0 ? "https://index.docker.io/v1/" : registry;
    if (credhelper_get(helper, server, user, password, err) < 0)
        return shed_err_prefix(err, "%s", path);
    return 0;
}

static int docker_config_credentials(const char *registry, const struct oci_pull_opts *opts,
                                     char **user, char **password, struct shed_err *err)
{
    cleanup_free char *path = docker_config_path(opts);
    if (path == NULL || !fs_exists(path))
        return 0;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL)
        return shed_errf(err, SHED_E_AUTH, "cannot parse %s: %s (line %d)", path, jerr.text,
                         jerr.line);
    const char *helper = credential_helper_of(root, registry);
    if (helper != NULL) {
        int helper_rc = credentials_from_helper(helper, registry, path, user, password, err);
        json_decref(root);
        return helper_rc;
    }
    const char *key;
    json_t *entry;
    int rc = 0;
    json_object_foreach(json_object_get(root, "auths"), key, entry)
    {
        if (!auths_key_matches(key, registry))
            continue;
        const char *auth = json_string_value(json_object_get(entry, "auth"));
        const char *u = json_string_value(json_object_get(entry, "username"));
        const char *pw = json_string_value(json_object_get(entry, "password"));
        if (auth != NULL && *auth) {
            cleanup_free char *decoded = base64_decode(auth);
            rc = decoded != NULL ? split_user_password(decoded, user, password, err)
                                 : shed_errf(err, SHED_E_AUTH,
                                             "%s: auths entry for %s is not "
                                             "valid base64",
                                             path, key);
        } else if (u != NULL && pw != NULL) {
            *user = strdup(u), *password = strdup(pw);
            if (*user == NULL || *password == NULL)
                rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
        }
        break;
    }
    json_decref(root);
    return rc;
}

int auth_lookup_credentials(const char *registry, const struct oci_pull_opts *opts, char **user,
                            char **password, struct shed_err *err)
{
    *user = *password = NULL;
    if (opts != NULL && opts->creds != NULL)
        return split_user_password(opts->creds, user, password, err);
    return docker_config_credentials(registry, opts, user, password, err);
}

/* ---- bearer tokens ---------------------------------------------------------------------- */

static char *token_url(CURL *easy, const struct auth_challenge *c, const char *repository)
{
    cleanup_free char *default_scope = str_printf("repository:%s:pull", repository);
    const char *scope = c->scope != NULL ? c->scope : default_scope;
    if (scope == NULL)
        return NULL;
    char *scope_q = curl_easy_escape(easy, scope, 0);
    char *service_q = c->service ? curl_easy_escape(easy, c->service, 0) : NULL;
    char *url = NULL;
    if (scope_q != NULL && (c->service == NULL || service_q != NULL))
        url = str_printf("%s%s%s%s%sscope=%s", c->realm, strchr(c->realm, '?') ? "&" : "?",
                         service_q ? "service=" : "", service_q ? service_q : "",
                         service_q ? "&" : "", scope_q);
    curl_free(scope_q);
    curl_free(service_q);
    return url;
}

static int token_parse(const char *body, size_t len, struct bearer_token *token,
                       struct shed_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    /* "token" per distribution's spec, "access_token" per OAuth2; either may come alone. */
    const char *value = json_string_value(json_object_get(root, "token"));
    if (value == NULL || *value == '\0')
        value = json_string_value(json_object_get(root, "access_token"));
    json_int_t lifetime = json_integer_value(json_object_get(root, "expires_in"));
    int rc = 0;
    if (value == NULL || *value == '\0')
        rc = shed_errf(err, SHED_E_AUTH, "token server answered without a token");
    else if ((token->token = strdup(value)) == NULL)
        rc = shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (lifetime <= 0)
        lifetime = TOKEN_DEFAULT_LIFETIME_S;
    token->expires_at_ms = monotonic_ms() + (uint64_t)lifetime * 1000u;
    token->expires_at_ms -=
        (uint64_t)lifetime * 1000u > 2 * TOKEN_EXPIRY_MARGIN_MS ? TOKEN_EXPIRY_MARGIN_MS : 0;
    json_decref(root);
    return rc;
}

/* host[:port] of an http(s) URL as curl reads it ("[::1]:5000" for IPv6), or NULL. */
static char *url_host_port(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *out = NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        out = curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK
                  ? str_printf("%s:%s", host, port)
                  : strdup(host);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

static bool listed(const char *const *list, const char *host)
{
    for (const char *const *p = list; p != NULL && *p != NULL && host != NULL; p++)
        if (strcmp(*p, host) == 0)
            return true;
    return false;
}

bool auth_realm_may_get_credentials(const char *realm, const struct auth_realm_policy *policy)
{
    if (strncasecmp(realm, "https://", 8) == 0)
        return true;
    if (http_same_origin(realm, policy->registry_base_url))
        return true;
    cleanup_free char *realm_host = url_host_port(realm);
    return listed(policy->insecure_registries, policy->registry) ||
           listed(policy->insecure_registries, realm_host);
}

int auth_fetch_token(CURL *easy, const struct auth_challenge *challenge, const char *repository,
                     const char *user, const char *password, const struct auth_realm_policy *policy,
                     const struct http_limits *limits, const struct oci_pull_opts *opts,
                     struct bearer_token *token, struct shed_err *err)
{
    memset(token, 0, sizeof *token);
    if (user != NULL && !auth_realm_may_get_credentials(challenge->realm, policy))
        return shed_errf(
            err, SHED_E_AUTH,
            "registry %s asks for the credentials to be sent to the token server %.200s "
            "over plain HTTP on another origin: refused (list %s in "
            "insecure_registries if that is intended)",
            policy->registry, challenge->realm, policy->registry);
    cleanup_free char *url = token_url(easy, challenge, repository);
    cleanup_free char *basic = user != NULL ? auth_basic_header_value(user, password) : NULL;
    if (url == NULL || (user != NULL && basic == NULL))
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    struct http_request request = {
        .url = url, .opts = opts, .authorization = basic, .max_body = 1u << 20, .limits = limits};
    struct http_response response = {.retry_after_seconds = -1};
    for (unsigned attempt = 1;; attempt++) {
        CURLcode curl_result = CURLE_OK;
        int rc = http_perform(easy, &request, &response, &curl_result, err);
        bool retry =
            attempt < HTTP_MAX_ATTEMPTS && (rc < 0 ? http_curl_code_is_retryable(curl_result, false)
                                                   : http_status_is_retryable(response.status));
        if (retry) {
            if (http_sleep_ms(http_retry_delay_ms(attempt, response.retry_after_seconds), limits) <
                0) {
                http_response_free(&response);
                return http_limits_error(limits, "token server", err);
            }
            continue;
        }
        if (rc < 0) {
            http_response_free(&response);
            return shed_err_prefix(err, "token server");
        }
        break;
    }
    int rc = 0;
    if (response.status == 401 || response.status == 403)
        rc = shed_errf(err, SHED_E_AUTH, "token server %s refused %s (HTTP %ld)", challenge->realm,
                       user ? "the credentials" : "anonymous access", response.status);
    else if (response.status != 200)
        rc = shed_errf(err, SHED_E_AUTH, "token server %s answered HTTP %ld", challenge->realm,
                       response.status);
    else
        rc = token_parse(response.body, response.body_len, token, err);
    http_response_free(&response);
    return rc;
}
