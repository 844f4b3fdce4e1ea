/* The shed's repo: cloned on the host, into the mounted rootfs, before the shed starts. */
#include "container_internal.h"
#include "runtime/repo.h"

int container_clone_repo(const struct backend_progress *progress, const char *rootfs,
                         const char *repo, struct shed_err *err)
{
    if (progress == NULL || progress->config == NULL)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "a repo clone needs the request's configuration");
    volatile int *cancel = progress->cancel;
    /* The shed's root is the host's root (no user namespace): uid 0 owns its files. */
    struct repo_clone_request request = {
        .repo = repo, .rootfs = rootfs, .owner_uid = 0, .owner_gid = 0, .cancel = cancel};
    return repo_clone(progress->config, &request, err);
}
