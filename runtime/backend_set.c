/* The backend set of this build: construction from the config and backend resolution
 * (explicit names and `detect`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"
#include "runtime/backend_container.h"

/* The set and the backends it owns; set is first so backend_set_free can find the rest. */
struct owned_backend_set {
    struct backend_set set;
    struct shed_backend *container;
    const struct shed_backend *items[1];
};

const char *const *backend_set_builtin_names(void)
{
    /* Keep in step with backend_set_new. */
    static const char *const names[] = {CONTAINER_BACKEND_NAME, NULL};
    return names;
}

int backend_set_new(const struct shed_config *config, struct backend_set **set,
                    struct shed_err *err)
{
    struct owned_backend_set *owned = calloc(1, sizeof *owned);
    if (owned == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    if (container_backend_new(config, &owned->container, err) < 0) {
        free(owned);
        return -1;
    }
    /* In `detect` preference order: firecracker, qemu, container. */
    owned->items[0] = owned->container;
    owned->set = (struct backend_set){.items = owned->items, .count = 1};
    *set = &owned->set;
    return 0;
}

void backend_set_free(struct backend_set *set)
{
    if (set == NULL)
        return;
    struct owned_backend_set *owned = (struct owned_backend_set *)set;
    container_backend_free(owned->container);
    free(owned);
}

static const struct shed_backend *detect_backend(const struct backend_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        const struct shed_backend *backend = set->items[i];
        struct shed_err ignored = {0};
        if (backend->probe == NULL || backend->probe(backend, &ignored) == 0)
            return backend;
    }
    return NULL;
}

void backend_set_describe_default(const struct backend_set *set, const char *configured, char *out,
                                  size_t outlen)
{
    if (configured == NULL)
        configured = "detect";
    if (strcmp(configured, "detect") != 0) {
        snprintf(out, outlen, "%s", configured);
        return;
    }
    const struct shed_backend *detected = detect_backend(set);
    snprintf(out, outlen, "%s", detected != NULL ? detected->name : "none");
}

static int explain_no_backend(const struct backend_set *set, struct shed_err *err)
{
    if (set->count == 0)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "no backend is available: this build of shed-server has none");
    char reasons[400] = "";
    size_t used = 0;
    for (size_t i = 0; i < set->count && used < sizeof reasons; i++) {
        struct shed_err why = {0};
        const struct shed_backend *backend = set->items[i];
        if (backend->probe != NULL && backend->probe(backend, &why) < 0)
            used += (size_t)snprintf(reasons + used, sizeof reasons - used, "%s%s: %s",
                                     used ? "; " : "", backend->name, why.msg);
    }
    return shed_errf(err, SHED_E_NOT_SUPPORTED, "no usable backend on this host (%s)", reasons);
}

int backend_set_resolve(const struct backend_set *set, const char *configured,
                        const char *requested, const struct shed_backend **out,
                        struct shed_err *err)
{
    const char *name = requested;
    if (name == NULL || name[0] == '\0')
        name = configured != NULL ? configured : "detect";
    if (!backend_name_is_known(name))
        return shed_errf(err, SHED_E_INVALID_REQUEST,
                         "unknown backend \"%.40s\" (firecracker, vz, qemu, container or detect)",
                         name);
    if (strcmp(name, "detect") == 0) {
        *out = detect_backend(set);
        return *out != NULL ? 0 : explain_no_backend(set, err);
    }
    const struct shed_backend *backend = backend_set_find(set, name);
    if (backend == NULL)
        return shed_errf(err, SHED_E_NOT_SUPPORTED,
                         "backend \"%s\" is not available in this build of shed-server", name);
    struct shed_err why = {0};
    if (backend->probe != NULL && backend->probe(backend, &why) < 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "backend \"%s\" is not usable here: %s", name,
                         why.msg);
    *out = backend;
    return 0;
}
