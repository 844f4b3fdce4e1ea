/* Image references: "[registry/]repository[:tag][@sha256:hex]", following the grammar of
 * distribution/reference (lowercase path components, tags of \w[\w.-]{0,127}), with Docker
 * Hub's shorthand ("debian" → registry-1.docker.io/library/debian:latest). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "oci.h"
#include "oci_private.h"

#define REF_MAX_NAME 255
#define REF_MAX_TAG 128

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
static bool path_component_is_valid(const char *s, size_t len)
{
    size_t i = 0;
    for (;;) {
        size_t run_start = i;
        while (i < len && is_lower_alnum(s[i]))
            i++;
        if (i == run_start)
            return false; /* empty component, or separator not between alphanumerics */
        if (i == len)
            return true;
        if (s[i] == '.')
            i++;
        else if (s[i] == '_')
            i += (i + 1 < len && s[i + 1] == '_') ? 2 : 1;
        else if (s[i] == '-')
            while (i < len && s[i] == '-')
                i++;
        else
            return false;
    }
}

static bool repository_is_valid(const char *repo)
{
    if (*repo == '\0' || strlen(repo) > REF_MAX_NAME)
        return false;
    const char *start = repo;
    for (;;) {
        const char *slash = strchr(start, '/');
        size_t len = slash != NULL ? (size_t)(slash - start) : strlen(start);
        if (!path_component_is_valid(start, len))
            return false;
        if (slash == NULL)
            return true;
        start = slash + 1;
    }
}

static bool tag_is_valid(const char *tag)
{
    size_t len = strlen(tag);
    if (len == 0 || len > REF_MAX_TAG || !(isalnum((unsigned char)tag[0]) || tag[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)tag[i]) || tag[i] == '_' || tag[i] == '.' || tag[i] == '-'))
            return false;
    return true;
}

/* host[:port] where host is a DNS name, an IPv4 address or a bracketed IPv6 address. */
static bool registry_is_valid(const char *host)
{
    const char *port = NULL;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close == NULL || close == host + 1)
            return false;
        for (const char *p = host + 1; p < close; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return false;
        if (close[1] != '\0' && close[1] != ':')
            return false;
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(host, ':');
        size_t len = colon != NULL ? (size_t)(colon - host) : strlen(host);
        if (len == 0 || host[0] == '-' || host[0] == '.' || host[len - 1] == '.')
            return false;
        for (size_t i = 0; i < len; i++)
            if (!(isalnum((unsigned char)host[i]) || host[i] == '-' || host[i] == '.'))
                return false;
        port = colon != NULL ? colon + 1 : NULL;
    }
    if (port == NULL)
        return true;
    if (*port == '\0' || strlen(port) > 5)
        return false;
    for (const char *p = port; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    long value = strtol(port, NULL, 10);
    return value > 0 && value <= 65535;
}

/* Docker's rule: the first component names a registry when it contains '.' or ':' or is
 * "localhost"; otherwise the whole name is a Docker Hub repository. */
static bool first_component_is_registry(const char *name, size_t len)
{
    return memchr(name, '.', len) != NULL || memchr(name, ':', len) != NULL ||
           (len == 9 && memcmp(name, "localhost", 9) == 0) || (len > 0 && name[0] == '[');
}

static bool is_docker_hub(const char *registry)
{
    return strcmp(registry, "docker.io") == 0 || strcmp(registry, "index.docker.io") == 0 ||
           strcmp(registry, OCI_DOCKER_HUB_REGISTRY) == 0;
}

static int split_digest(char *text, struct oci_ref *ref, struct shed_err *err)
{
    char *at = strrchr(text, '@');
    if (at == NULL)
        return 0;
    *at = '\0';
    const char *digest = at + 1;
    if (strchr(digest, ':') != NULL && strncmp(digest, "sha256:", 7) != 0)
        return shed_errf(err, SHED_E_INVALID_REF,
                         "unsupported digest algorithm in \"%s\" "
                         "(only sha256)",
                         digest);
    if (!digest_is_valid(digest))
        return shed_errf(err, SHED_E_INVALID_REF,
                         "invalid digest \"%s\" (expected sha256: and 64 lowercase hex digits)",
                         digest);
    ref->digest = strdup(digest);
    return ref->digest != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

static int split_tag(char *name, struct oci_ref *ref, struct shed_err *err)
{
    char *last_slash = strrchr(name, '/');
    char *colon = strrchr(last_slash != NULL ? last_slash : name, ':');
    if (colon == NULL)
        return 0;
    *colon = '\0';
    if (!tag_is_valid(colon + 1))
        return shed_errf(err, SHED_E_INVALID_REF, "invalid tag \"%s\"", colon + 1);
    ref->tag = strdup(colon + 1);
    return ref->tag != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

static int split_registry(const char *name, struct oci_ref *ref, struct shed_err *err)
{
    const char *slash = strchr(name, '/');
    const char *repo = name;
    if (slash != NULL && first_component_is_registry(name, (size_t)(slash - name))) {
        ref->registry = strndup(name, (size_t)(slash - name));
        repo = slash + 1;
    } else {
        ref->registry = strdup(OCI_DOCKER_HUB_REGISTRY);
    }
    if (ref->registry == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (!registry_is_valid(ref->registry))
        return shed_errf(err, SHED_E_INVALID_REF, "invalid registry host \"%s\"", ref->registry);
    if (is_docker_hub(ref->registry)) {
        free(ref->registry);
        ref->registry = strdup(OCI_DOCKER_HUB_REGISTRY);
        /* Official images live under library/ */
        ref->repository = strchr(repo, '/') == NULL ? str_printf("library/%s", repo) : strdup(repo);
    } else {
        ref->repository = strdup(repo);
    }
    if (ref->registry == NULL || ref->repository == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (!repository_is_valid(ref->repository))
        return shed_errf(err, SHED_E_INVALID_REF,
                         "invalid repository name \"%s\" (lowercase letters, digits and "
                         "separators . _ __ - between components)",
                         repo);
    return 0;
}

static int ref_parse_into(const char *text, struct oci_ref *ref, struct shed_err *err)
{
    if (text == NULL || *text == '\0')
        return shed_errf(err, SHED_E_INVALID_REF, "empty image reference");
    for (const char *p = text; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return shed_errf(err, SHED_E_INVALID_REF,
                             "image reference contains whitespace or "
                             "control characters");
    cleanup_free char *copy = strdup(text);
    if (copy == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (split_digest(copy, ref, err) < 0 || split_tag(copy, ref, err) < 0)
        return -1;
    if (*copy == '\0')
        return shed_errf(err, SHED_E_INVALID_REF, "image reference has no repository name");
    if (split_registry(copy, ref, err) < 0)
        return -1;
    if (ref->tag == NULL && ref->digest == NULL && (ref->tag = strdup("latest")) == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    return 0;
}

int oci_ref_parse(const char *text, struct oci_ref *ref, struct shed_err *err)
{
    memset(ref, 0, sizeof *ref);
    if (ref_parse_into(text, ref, err) == 0)
        return 0;
    if (err != NULL && err->code == SHED_E_INVALID_REF && text != NULL && *text != '\0') {
        /* Quote the reference without its control characters: errors are one line. */
        char shown[300];
        snprintf(shown, sizeof shown, "%s", text);
        for (char *p = shown; *p; p++)
            if (iscntrl((unsigned char)*p))
                *p = '?';
        shed_err_prefix(err, "invalid image reference \"%s\"", shown);
    }
    oci_ref_free(ref);
    return -1;
}

void oci_ref_free(struct oci_ref *ref)
{
    if (ref == NULL)
        return;
    free(ref->registry);
    free(ref->repository);
    free(ref->tag);
    free(ref->digest);
    memset(ref, 0, sizeof *ref);
}

char *oci_ref_format(const struct oci_ref *ref)
{
    return str_printf("%s/%s%s%s%s%s", ref->registry, ref->repository, ref->tag ? ":" : "",
                      ref->tag ? ref->tag : "", ref->digest ? "@" : "",
                      ref->digest ? ref->digest : "");
}

/* What the registry API calls the manifest "reference": the digest when pinned. */
const char *oci_ref_manifest_reference(const struct oci_ref *ref)
{
    return ref->digest != NULL ? ref->digest : ref->tag;
}

int oci_ref_canonical(const char *text, char **canonical, struct shed_err *err)
{
    *canonical = NULL;
    struct oci_ref ref;
    if (oci_ref_parse(text, &ref, err) < 0)
        return -1;
    *canonical = oci_ref_format(&ref);
    oci_ref_free(&ref);
    return *canonical != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}
