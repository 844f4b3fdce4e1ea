/* The `repo` of a create: which URLs are accepted, and the clone into the shed's /workspace.
 *
 * Accepted (repo_check): owner/repo (https://github.com/owner/repo.git), https://host/path,
 * ssh://[user@]host[:port]/path and user@host:path (ssh), plus http://, git:// and file://
 * when config repo_schemes lists them. Refused: anything git could take for an option (a
 * leading '-'), whitespace and control bytes, git's transport helpers ("ext::", "fd::"), and
 * hosts that name this machine or a private network by address — loopback, link-local,
 * private, shared, unspecified, multicast and reserved IPv4/IPv6 literals, in any spelling
 * the resolver accepts ("127.1", "0x7f.0.0.1", "[::ffff:127.0.0.1]") — or "localhost", unless
 * repo_allow_hosts lists the host (or host:port). Names are not resolved here: a DNS name that
 * points at a private address is not caught (git resolves it later, outside our view).
 *
 * The clone (repo_clone) never runs as host root with host credentials: git runs as
 * repo_user (default nobody) with no supplementary groups and no_new_privs, in its own mount
 * and PID namespaces, with an empty private /tmp (its HOME is /tmp/home, holding only the
 * configured SSH key and known_hosts), an environment made from nothing (PATH, HOME,
 * GIT_CONFIG_NOSYSTEM=1, GIT_TERMINAL_PROMPT=0, GIT_SSH_COMMAND with BatchMode), only the
 * allowed protocols (protocol.allow=never otherwise), no hooks, and the workspace bind-mounted
 * at /tmp/work as its only way into the shed. It must finish within repo_timeout_seconds and
 * move at least repo_low_speed_limit bytes/s over any repo_low_speed_time (git's
 * http.lowSpeed*; ssh keepalives); at the deadline, on cancel, or when the server dies
 * (PR_SET_PDEATHSIG), git — PID 1 of its namespace — is killed, and with it every process
 * it started. Afterwards the tree belongs to the shed's root (owner_uid/owner_gid).
 *
 * Error messages are generic (what failed, never git's output, which can reveal which host
 * paths exist); git's output goes to the server log. */
#ifndef SHED_RUNTIME_REPO_H
#define SHED_RUNTIME_REPO_H

#include <sys/types.h>

#include "common/shed_err.h"
#include "config/config.h"

/* Checks repo against the policy above; *url (malloc'd) is what git is given. Failures are
 * SHED_E_INVALID_REPO_URL saying why. */
int repo_check(const struct shed_config *config, const char *repo, char **url,
               struct shed_err *err);

struct repo_clone_request {
    const char *repo;   /* as the create gave it (checked again here) */
    const char *rootfs; /* the shed's root filesystem, mounted: the clone goes to /workspace */
    uid_t owner_uid;    /* the shed's root, who owns the tree afterwards */
    gid_t owner_gid;
    volatile int *cancel; /* set non-zero: git is killed, SHED_E_INTERRUPTED */
};

/* Clones into <rootfs>/workspace, which must be absent or an empty directory (a symlink or a
 * file there is refused). On failure what git wrote stays (the caller rolls the shed back). */
int repo_clone(const struct shed_config *config, const struct repo_clone_request *request,
               struct shed_err *err);

#endif
