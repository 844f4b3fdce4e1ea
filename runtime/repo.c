/* The repo of a create: the URL policy and the unprivileged clone (see repo.h). */
#include "repo.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "common/timeutil.h"

#define REPO_MAX_LEN 2048
#define HOST_MAX 255
/* The SSH key and known_hosts the config names are copied into git's HOME. */
#define SSH_FILE_MAX (256u << 10)
/* git's output kept for the server log and the error class. */
#define GIT_OUTPUT_MAX 4096
/* A tree deeper than this is refused when it is handed to the shed's root. */
#define TREE_MAX_DEPTH 256
#define CLONE_POLL_MS 100

/* ---- the URL ------------------------------------------------------------------------- */

struct repo_url {
    char scheme[8]; /* https, ssh, http, git, file */
    char host[HOST_MAX + 1];
    char port[8];
    bool bracketed; /* host was [an IPv6 literal] */
};

static bool scheme_allowed(const struct shed_config *config, const char *scheme)
{
    for (char **p = config->repo.schemes; p != NULL && *p != NULL; p++)
        if (strcmp(*p, scheme) == 0)
            return true;
    return false;
}

static int invalid(struct shed_err *err, const char *repo, const char *why)
{
    return shed_errf(err, SHED_E_INVALID_REPO_URL, "invalid repo \"%.200s\": %s", repo, why);
}

/* git's "<transport>::<address>" remote helpers (ext:: runs a command). */
static bool is_transport_helper(const char *repo)
{
    size_t name = strspn(repo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
    return name > 0 && strncmp(repo + name, "::", 2) == 0;
}

static bool is_shorthand(const char *repo)
{
    const char *slash = strchr(repo, '/');
    if (slash == NULL || slash == repo || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
        return false;
    return strspn(repo, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
               (size_t)(slash - repo) &&
           strspn(slash + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
               strlen(slash + 1) &&
           repo[0] != '.' && slash[1] != '.';
}

/* "host", "host:port" or "[v6]:port" of len bytes at text into url. */
static bool parse_host_port(const char *text, size_t len, bool port_allowed, struct repo_url *url)
{
    const char *end = text + len, *host_end;
    const char *host = text;
    if (len > 0 && text[0] == '[') {
        host_end = memchr(text, ']', len);
        if (host_end == NULL)
            return false;
        host++;
        url->bracketed = true;
    } else {
        host_end = memchr(text, ':', len);
        if (host_end == NULL)
            host_end = end;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len > HOST_MAX)
        return false;
    memcpy(url->host, host, host_len);
    url->host[host_len] = '\0';
    const char *after = host_end + (url->bracketed ? 1 : 0);
    if (after < end) {
        size_t port_len = (size_t)(end - after - 1);
        if (!port_allowed || *after != ':' || port_len == 0 || port_len >= sizeof url->port ||
            strspn(after + 1, "0123456789") < port_len)
            return false;
        memcpy(url->port, after + 1, port_len);
        url->port[port_len] = '\0';
    }
    const char *charset = url->bracketed ? "0123456789abcdefABCDEF:."
                                         : "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789.-_";
    if (strspn(url->host, charset) != host_len)
        return false;
    for (char *c = url->host; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return true;
}

/* scheme://[userinfo@]host[:port]/path */
static int parse_scheme_url(const char *repo, const char *sep, struct repo_url *url,
                            struct shed_err *err)
{
    size_t scheme_len = (size_t)(sep - repo);
    if (scheme_len >= sizeof url->scheme)
        return invalid(err, repo, "unknown scheme");
    for (size_t i = 0; i < scheme_len; i++)
        url->scheme[i] = (char)tolower((unsigned char)repo[i]);
    url->scheme[scheme_len] = '\0';
    const char *authority = sep + 3;
    const char *path = strchr(authority, '/');
    if (path == NULL || path[1] == '\0')
        return invalid(err, repo, "no repository path after the host");
    if (strcmp(url->scheme, "file") == 0) {
        if (path != authority)
            return invalid(err, repo, "file:// URLs name no host (file:///path)");
        return 0;
    }
    const char *host = authority;
    const char *at = memrchr(authority, '@', (size_t)(path - authority));
    if (at != NULL)
        host = at + 1;
    if (!parse_host_port(host, (size_t)(path - host), true, url))
        return invalid(err, repo, "malformed host");
    return 0;
}

/* user@host:path, git's scp-like form of ssh. */
static int parse_scp_like(const char *repo, struct repo_url *url, struct shed_err *err)
{
    const char *at = strchr(repo, '@');
    const char *host = at != NULL ? at + 1 : NULL;
    const char *colon = NULL;
    if (host != NULL && host[0] == '[') {
        const char *close = strchr(host, ']');
        colon = close != NULL && close[1] == ':' ? close + 1 : NULL;
    } else if (host != NULL) {
        colon = strchr(host, ':');
    }
    if (at == NULL || at == repo || colon == NULL || colon[1] == '\0' ||
        memchr(repo, '/', (size_t)(colon - repo)) != NULL)
        return invalid(err, repo, "use owner/repo, https://host/path or git@host:path");
    snprintf(url->scheme, sizeof url->scheme, "ssh");
    if (!parse_host_port(host, (size_t)(colon - host), false, url))
        return invalid(err, repo, "malformed host");
    return 0;
}

static bool ipv4_is_private(uint32_t a)
{
    static const struct {
        uint32_t net;
        int len;
    } ranges[] = {
        {0x00000000, 8},  {0x0a000000, 8},  {0x64400000, 10}, {0x7f000000, 8},
        {0xa9fe0000, 16}, {0xac100000, 12}, {0xc0000000, 24}, {0xc0a80000, 16},
        {0xc6120000, 15}, {0xe0000000, 4},  {0xf0000000, 4},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if ((a & (0xffffffffu << (32 - ranges[i].len))) == ranges[i].net)
            return true;
    return false;
}

static bool ipv6_is_private(const struct in6_addr *a)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t zeros[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, zeros, 12) == 0) /* ::, ::1 and the deprecated ::a.b.c.d */
        return true;
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        return ipv4_is_private(v4);
    }
    return (b[0] & 0xfe) == 0xfc ||                   /* fc00::/7 unique local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || /* fec0::/10 site-local */
           b[0] == 0xff;                              /* multicast */
}

/* A label made of digits (or 0x and hex digits): the resolver takes the host for a number. */
static bool label_is_numeric(const char *label)
{
    if (strncasecmp(label, "0x", 2) == 0)
        return strspn(label + 2, "0123456789abcdefABCDEF") == strlen(label + 2);
    return label[0] != '\0' && strspn(label, "0123456789") == strlen(label);
}

static bool host_allowed_by_config(const struct shed_config *config, const struct repo_url *url)
{
    char with_port[HOST_MAX + 12];
    snprintf(with_port, sizeof with_port, url->bracketed ? "[%s]:%s" : "%s:%s", url->host,
             url->port);
    char bracketed[HOST_MAX + 3];
    snprintf(bracketed, sizeof bracketed, "[%s]", url->host);
    for (char **p = config->repo.allow_hosts; p != NULL && *p != NULL; p++) {
        if (strcasecmp(*p, url->bracketed ? bracketed : url->host) == 0)
            return true;
        if (url->port[0] != '\0' && strcasecmp(*p, with_port) == 0)
            return true;
    }
    return false;
}

/* NULL when the host may be cloned from, else why not. */
static const char *host_refusal(const struct repo_url *url)
{
    char host[HOST_MAX + 1];
    snprintf(host, sizeof host, "%s", url->host);
    size_t len = strlen(host);
    if (len > 1 && host[len - 1] == '.')
        host[--len] = '\0';
    if (url->bracketed) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "malformed IPv6 address";
        return ipv6_is_private(&a6) ? "the host is a loopback, private or link-local address"
                                    : NULL;
    }
    if (strcmp(host, "localhost") == 0 || (len > 10 && strcmp(host + len - 10, ".localhost") == 0))
        return "the host is this machine";
    struct in_addr a4;
    if (inet_aton(host, &a4) != 0) /* every spelling the resolver takes: 127.1, 0x7f000001 */
        return ipv4_is_private(ntohl(a4.s_addr))
                   ? "the host is a loopback, private or link-local address"
                   : NULL;
    const char *last = strrchr(host, '.');
    if (label_is_numeric(last != NULL ? last + 1 : host))
        return "malformed host (a name cannot end in a number)";
    return NULL;
}

static int check_host(const struct shed_config *config, const char *repo,
                      const struct repo_url *url, struct shed_err *err)
{
    if (strcmp(url->scheme, "file") == 0 || host_allowed_by_config(config, url))
        return 0;
    const char *why = host_refusal(url);
    if (why == NULL)
        return 0;
    return shed_errf(err, SHED_E_INVALID_REPO_URL,
                     "repo \"%.200s\" not allowed: %s (repo_allow_hosts can allow it)", repo, why);
}

int repo_check(const struct shed_config *config, const char *repo, char **url_out,
               struct shed_err *err)
{
    *url_out = NULL;
    size_t len = strlen(repo);
    if (len == 0 || len > REPO_MAX_LEN)
        return invalid(err, repo, "empty or longer than 2048 bytes");
    if (repo[0] == '-')
        return invalid(err, repo, "starts with '-'");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)repo[i] <= ' ' || repo[i] == 0x7f)
            return invalid(err, repo, "whitespace or control bytes");
    if (is_transport_helper(repo))
        return invalid(err, repo, "git transport helpers (\"x::\") are not allowed");
    struct repo_url url = {0};
    const char *sep = strstr(repo, "://");
    char *normalized = NULL;
    if (sep == NULL && strchr(repo, '@') == NULL && strchr(repo, ':') == NULL && repo[0] != '/') {
        if (!is_shorthand(repo))
            return invalid(err, repo, "use owner/repo or a git URL");
        snprintf(url.scheme, sizeof url.scheme, "https");
        normalized = str_printf("https://github.com/%s.git", repo);
    } else if (sep != NULL) {
        if (parse_scheme_url(repo, sep, &url, err) < 0)
            return -1;
    } else if (parse_scp_like(repo, &url, err) < 0) {
        return -1;
    }
    if (!scheme_allowed(config, url.scheme)) {
        free(normalized);
        return shed_errf(err, SHED_E_INVALID_REPO_URL,
                         "repo \"%.200s\" not allowed: %s is not in repo_schemes", repo,
                         url.scheme);
    }
    if (normalized == NULL && check_host(config, repo, &url, err) < 0)
        return -1;
    *url_out = normalized != NULL ? normalized : strdup(repo);
    return *url_out != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
}

/* ---- what the clone runs -------------------------------------------------------------- */

/* Everything the child needs, prepared before it exists: after clone() in a multithreaded
 * process it may only make system calls (no malloc, no locks, no stdio). */
struct clone_plan {
    char git[PATH_MAX];
    const char *argv[32];
    const char *envp[16];
    char storage[10][1024]; /* the formatted arguments argv and envp point into */
    size_t stored;
    int workspace_fd, devnull_fd, capture_fd;
    uid_t uid;
    gid_t gid;
    /* The workspace by path (an fd of the parent's mount namespace cannot be bind-mounted in
     * the child's), and what it must turn out to be there. */
    char workspace_path[PATH_MAX];
    dev_t workspace_dev;
    ino_t workspace_ino;
    const char *ssh_key, *known_hosts;
    size_t ssh_key_len, known_hosts_len;
};

#define CHILD_HOME "/tmp/home"
#define CHILD_WORK "/tmp/work"
#define CHILD_KEY CHILD_HOME "/.ssh/id"
#define CHILD_KNOWN_HOSTS CHILD_HOME "/.ssh/known_hosts"
/* git's only configuration besides the command line's. A file:// source belongs to another
 * user than git's, which git would refuse ("dubious ownership"); git runs unprivileged and
 * confined, so the source's ownership is not what keeps it safe. (-c would not reach the
 * upload-pack of a local clone: git clears it for the other side.) */
#define CHILD_GITCONFIG CHILD_HOME "/.gitconfig"
static const char child_gitconfig[] = "[safe]\n\tdirectory = *\n";

static char *find_git(char *out, size_t len)
{
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *dir = path; *dir != '\0';) {
        size_t dir_len = strcspn(dir, ":");
        if (dir_len > 0 && dir[0] == '/' &&
            (size_t)snprintf(out, len, "%.*s/git", (int)dir_len, dir) < len &&
            access(out, X_OK) == 0)
            return out;
        dir += dir_len + (dir[dir_len] == ':');
    }
    return NULL;
}

static int lookup_user(const char *name, uid_t *uid, gid_t *gid, struct shed_err *err)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    int rc = getpwnam_r(name, &pw, buf, sizeof buf, &found);
    if (found == NULL)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, rc != 0 ? rc : ENOENT,
                               "repo_user \"%.64s\" is not a user of this host", name);
    if (pw.pw_uid == 0 || pw.pw_gid == 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "repo_user \"%.64s\" is root: git must run unprivileged", name);
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A formatted string kept in the plan; NULL when it does not fit. */
static const char *stored(struct clone_plan *plan, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *stored(struct clone_plan *plan, const char *fmt, ...)
{
    if (plan->stored >= sizeof plan->storage / sizeof plan->storage[0])
        return NULL;
    char *slot = plan->storage[plan->stored++];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(slot, sizeof plan->storage[0], fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < sizeof plan->storage[0] ? slot : NULL;
}

/* protocol.<name>.allow=always for each allowed scheme (http also covers https's helper). */
static const char *protocol_name(const char *scheme)
{
    return strcmp(scheme, "https") == 0 ? "https" : scheme;
}

static int build_argv(struct clone_plan *plan, const struct shed_config *config, const char *url,
                      struct shed_err *err)
{
    size_t n = 0;
    const char **argv = plan->argv;
    argv[n++] = "git";
    argv[n++] = "-c";
    argv[n++] = "protocol.allow=never";
    for (char **scheme = config->repo.schemes; scheme != NULL && *scheme != NULL; scheme++) {
        if (n + 2 >= sizeof plan->argv / sizeof plan->argv[0] - 16)
            break;
        argv[n++] = "-c";
        argv[n++] = stored(plan, "protocol.%s.allow=always", protocol_name(*scheme));
    }
    argv[n++] = "-c";
    argv[n++] = "core.hooksPath=/dev/null";
    argv[n++] = "-c";
    argv[n++] = "credential.helper=";
    argv[n++] = "-c";
    argv[n++] = stored(plan, "http.lowSpeedLimit=%d", config->repo.low_speed_limit);
    argv[n++] = "-c";
    argv[n++] = stored(plan, "http.lowSpeedTime=%d", config->repo.low_speed_time);
    argv[n++] = "clone";
    argv[n++] = "--quiet";
    argv[n++] = "--template=";
    argv[n++] = "--";
    argv[n++] = url;
    argv[n++] = CHILD_WORK;
    argv[n] = NULL;
    for (size_t i = 0; i < n; i++)
        if (argv[i] == NULL)
            return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot prepare the git command");
    return 0;
}

static int build_envp(struct clone_plan *plan, const struct shed_config *config,
                      struct shed_err *err)
{
    const char *checking = config->repo.ssh_known_hosts != NULL ? "yes" : "accept-new";
    const char *ssh = stored(plan,
                             "GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes "
                             "-o IdentitiesOnly=yes -o IdentityAgent=none %s "
                             "-o UserKnownHostsFile=" CHILD_KNOWN_HOSTS
                             " -o StrictHostKeyChecking=%s -o ConnectTimeout=30 "
                             "-o ServerAliveInterval=15 -o ServerAliveCountMax=4",
                             config->repo.ssh_key != NULL ? "-i " CHILD_KEY : "", checking);
    cleanup_free char *allowed = NULL;
    for (char **scheme = config->repo.schemes; scheme != NULL && *scheme != NULL; scheme++) {
        char *next = str_printf("%s%s%s", allowed != NULL ? allowed : "",
                                allowed != NULL ? ":" : "", *scheme);
        free(allowed);
        if ((allowed = next) == NULL)
            return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    const char *protocols =
        stored(plan, "GIT_ALLOW_PROTOCOL=%s", allowed != NULL ? allowed : "none");
    if (ssh == NULL || protocols == NULL)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "cannot prepare git's environment");
    const char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                          "HOME=" CHILD_HOME,
                          "LC_ALL=C",
                          "GIT_CONFIG_NOSYSTEM=1",
                          "GIT_TERMINAL_PROMPT=0",
                          "GIT_ASKPASS=/bin/false",
                          "SSH_ASKPASS=/bin/false",
                          ssh,
                          protocols,
                          NULL};
    memcpy(plan->envp, envp, sizeof envp);
    return 0;
}

/* ---- the child (after clone(): system calls only) -------------------------------------- */

/* Says which step failed (and its errno, in decimal) on git's output, and exits 126. */
static __attribute__((noreturn)) void child_fail(const struct clone_plan *plan, const char *what)
{
    int saved = errno;
    char digits[12];
    size_t at = sizeof digits;
    do
        digits[--at] = (char)('0' + saved % 10);
    while ((saved /= 10) > 0 && at > 0);
    static const char prefix[] = "shed: cannot prepare the clone: ";
    (void)!write(plan->capture_fd, prefix, sizeof prefix - 1);
    (void)!write(plan->capture_fd, what, strlen(what));
    (void)!write(plan->capture_fd, " (errno ", 8);
    (void)!write(plan->capture_fd, digits + at, sizeof digits - at);
    (void)!write(plan->capture_fd, ")\n", 2);
    _exit(126);
}

static void child_write_file(const struct clone_plan *plan, const char *path, const char *data,
                             size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, data, len) < 0 || fchown(fd, plan->uid, plan->gid) < 0)
        child_fail(plan, path);
    close(fd);
}

static void child_make_home(const struct clone_plan *plan)
{
    if (mkdir(CHILD_HOME, 0700) < 0 || chown(CHILD_HOME, plan->uid, plan->gid) < 0 ||
        mkdir(CHILD_HOME "/.ssh", 0700) < 0 || chown(CHILD_HOME "/.ssh", plan->uid, plan->gid) < 0)
        child_fail(plan, "home");
    if (plan->ssh_key != NULL)
        child_write_file(plan, CHILD_KEY, plan->ssh_key, plan->ssh_key_len);
    child_write_file(plan, CHILD_KNOWN_HOSTS, plan->known_hosts != NULL ? plan->known_hosts : "",
                     plan->known_hosts_len);
    child_write_file(plan, CHILD_GITCONFIG, child_gitconfig, sizeof child_gitconfig - 1);
}

/* "/proc/self/fd/<fd>" into out (at least 32 bytes), without stdio. */
static void proc_fd_path(int fd, char *out)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    size_t n = 0;
    do
        digits[n++] = (char)('0' + fd % 10);
    while ((fd /= 10) > 0 && n < sizeof digits);
    memcpy(out, prefix, sizeof prefix - 1);
    for (size_t i = 0; i < n; i++)
        out[sizeof prefix - 1 + i] = digits[n - 1 - i];
    out[sizeof prefix - 1 + n] = '\0';
}

/* The workspace opened again in the child's namespace, never through a symlink, and only if
 * it is still the directory the parent checked. */
static int child_open_workspace(const struct clone_plan *plan)
{
    int fd = open(plan->workspace_path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        child_fail(plan, "workspace");
    if (st.st_dev != plan->workspace_dev || st.st_ino != plan->workspace_ino) {
        errno = EXDEV;
        child_fail(plan, "workspace changed");
    }
    return fd;
}

/* A private mount namespace: nothing propagates back to the host; an empty tmpfs on /tmp
 * hides the host's; the workspace is reachable at /tmp/work only. */
static void child_make_mounts(const struct clone_plan *plan)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(plan, "private mounts");
    int workspace = child_open_workspace(plan);
    char source[32];
    proc_fd_path(workspace, source);
    if (mount("shed-git", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16m") <
        0)
        child_fail(plan, "tmpfs on /tmp");
    if (mkdir(CHILD_WORK, 0755) < 0 || mount(source, CHILD_WORK, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, CHILD_WORK, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) < 0)
        child_fail(plan, "workspace bind mount");
    close(workspace);
}

static __attribute__((noreturn)) void child_run(const struct clone_plan *plan)
{
    child_make_mounts(plan);
    child_make_home(plan);
    if (chdir(CHILD_WORK) < 0)
        child_fail(plan, "chdir");
    if (dup2(plan->devnull_fd, 0) < 0 || dup2(plan->capture_fd, 1) < 0 ||
        dup2(plan->capture_fd, 2) < 0)
        child_fail(plan, "stdio");
    if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
        child_fail(plan, "close_range");
    if (setgroups(0, NULL) < 0 || setresgid(plan->gid, plan->gid, plan->gid) < 0 ||
        setresuid(plan->uid, plan->uid, plan->uid) < 0)
        child_fail(plan, "dropping privileges");
    /* After the uid change, which would clear it: git dies with the server. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(plan, "prctl");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(plan->git, (char *const *)plan->argv, (char *const *)plan->envp);
    child_fail(plan, "execve git");
}

/* ---- the parent ------------------------------------------------------------------------ */

/* git as PID 1 of new mount and PID namespaces: killing it kills everything it started. A
 * fork-like clone (no new stack), so the child runs on its copy of this stack. */
static int start_child(const struct clone_plan *plan, pid_t *pid, struct shed_err *err)
{
    long rc = syscall(SYS_clone, (unsigned long)(CLONE_NEWNS | CLONE_NEWPID | SIGCHLD), NULL, NULL,
                      NULL, NULL);
    if (rc < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                               "cannot start git in its own namespaces");
    if (rc == 0)
        child_run(plan);
    *pid = (pid_t)rc;
    return 0;
}

enum clone_end { CLONE_EXITED, CLONE_TIMED_OUT, CLONE_CANCELLED };

/* Waits for the child, killing it at the deadline or on cancel. */
static int wait_child(pid_t pid, uint64_t deadline_ms, volatile int *cancel, int *status,
                      enum clone_end *end, struct shed_err *err)
{
    cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    *end = CLONE_EXITED;
    for (;;) {
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        if (pidfd >= 0 && TEMP_FAILURE_RETRY(poll(&pfd, 1, CLONE_POLL_MS)) > 0)
            break;
        if (pidfd < 0) { /* no pidfd: poll the pid itself */
            int ws = 0;
            pid_t done = waitpid(pid, &ws, WNOHANG);
            if (done == pid) {
                *status = ws;
                return 0;
            }
            struct timespec tick = {0, CLONE_POLL_MS * 1000000L};
            nanosleep(&tick, NULL);
        }
        bool cancelled = cancel != NULL && *cancel;
        if (cancelled || now_ms() >= deadline_ms) {
            *end = cancelled ? CLONE_CANCELLED : CLONE_TIMED_OUT;
            kill(pid, SIGKILL); /* not reaped yet: the pid is still ours */
            break;
        }
    }
    if (TEMP_FAILURE_RETRY(waitpid(pid, status, 0)) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "waitpid git");
    return 0;
}

/* ---- the workspace --------------------------------------------------------------------- */

/* <rootfs>/workspace as an fd: made when absent; a symlink, a file or a non-empty directory
 * (the image's) is refused without saying more about it. */
static int open_workspace(const char *rootfs, int *fd, struct shed_err *err)
{
    cleanup_close int root = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot open the shed's rootfs");
    if (mkdirat(root, "workspace", 0755) < 0 && errno != EEXIST)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot make /workspace");
    cleanup_close int ws =
        openat(root, "workspace", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ws < 0)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "the image's /workspace is not a directory: cannot clone into it");
    int probe = dup(ws);
    DIR *dir = probe >= 0 ? fdopendir(probe) : NULL;
    if (dir == NULL) {
        if (probe >= 0)
            close(probe);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot read /workspace");
    }
    rewinddir(dir); /* the dup shares the fd's offset */
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(dir)) != NULL;)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(dir);
    if (!empty)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "the image's /workspace is not empty: cannot clone into it");
    *fd = steal_fd(&ws);
    return 0;
}

/* Gives the tree below dir_fd to uid:gid, never following a symlink. */
static int chown_tree(int dir_fd, uid_t uid, gid_t gid, int depth, struct shed_err *err)
{
    if (depth > TREE_MAX_DEPTH)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "the repository's tree is too deep");
    int copy = dup(dir_fd);
    DIR *dir = copy >= 0 ? fdopendir(copy) : NULL;
    if (dir == NULL) {
        if (copy >= 0)
            close(copy);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot read the clone");
    }
    rewinddir(dir); /* the dup shares dir_fd's offset, which an earlier walk moved */
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (fchownat(dir_fd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot chown the clone");
            break;
        }
        int child = openat(dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child < 0)
            continue; /* not a directory */
        rc = chown_tree(child, uid, gid, depth + 1, err);
        close(child);
    }
    closedir(dir);
    return rc;
}

/* ---- the clone ------------------------------------------------------------------------- */

static int read_ssh_file(const char *path, char **data, size_t *len, struct shed_err *err)
{
    *data = NULL;
    *len = 0;
    if (path == NULL)
        return 0;
    if (fs_read_file(path, data, len, SSH_FILE_MAX, err) < 0)
        return shed_err_prefix(err, "repo ssh file");
    return 0;
}

/* What the API may say about a failed clone: a class, never git's words (which can tell
 * which host paths exist). */
static const char *failure_class(const char *output)
{
    static const struct {
        const char *needle, *text;
    } classes[] = {
        {"Could not resolve host", "cannot resolve the host"},
        {"Could not resolve hostname", "cannot resolve the host"},
        {"Connection refused", "cannot connect to the host"},
        {"Connection timed out", "cannot connect to the host"},
        {"Authentication failed", "authentication required or refused"},
        {"could not read Username", "authentication required or refused"},
        {"Permission denied", "authentication required or refused"},
        {"Host key verification failed", "the host key is unknown or changed"},
        {"not found", "repository not found"},
        {"does not appear to be a git repository", "repository not found"},
        {"too slow", "the transfer was too slow (repo_low_speed_limit)"},
    };
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strstr(output, classes[i].needle) != NULL)
            return classes[i].text;
    return "the repository could not be fetched";
}

static void log_git_output(const char *url, const char *output)
{
    char stamp[RFC3339_SIZE];
    if (format_rfc3339_now(stamp) < 0)
        snprintf(stamp, sizeof stamp, "-");
    char line[GIT_OUTPUT_MAX + 1];
    snprintf(line, sizeof line, "%s", output);
    for (char *c = line; *c; c++)
        if (*c == '\n' || (unsigned char)*c < ' ')
            *c = ' ';
    fprintf(stderr, "%s repo clone url=%s git_output=\"%s\"\n", stamp, url, line);
}

static int read_capture(int fd, char *out, size_t max)
{
    off_t size = lseek(fd, 0, SEEK_END);
    size_t want = size < 0 ? 0 : (size_t)size < max - 1 ? (size_t)size : max - 1;
    ssize_t got = want > 0 ? pread_full(fd, out, want, size - (off_t)want) : 0;
    out[got > 0 ? got : 0] = '\0';
    return 0;
}

static int prepare_plan(struct clone_plan *plan, const struct shed_config *config, const char *url,
                        const char *rootfs, int workspace_fd, struct shed_err *err)
{
    if (find_git(plan->git, sizeof plan->git) == NULL)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "git is not installed on the host");
    if (lookup_user(config->repo.user, &plan->uid, &plan->gid, err) < 0 ||
        build_argv(plan, config, url, err) < 0 || build_envp(plan, config, err) < 0)
        return -1;
    plan->workspace_fd = workspace_fd;
    struct stat st;
    if (fstat(workspace_fd, &st) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot stat /workspace");
    plan->workspace_dev = st.st_dev;
    plan->workspace_ino = st.st_ino;
    if ((size_t)snprintf(plan->workspace_path, sizeof plan->workspace_path, "%s/workspace",
                         rootfs) >= sizeof plan->workspace_path)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "the shed's rootfs path is too long");
    plan->devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    plan->capture_fd = memfd_create("shed-git", MFD_CLOEXEC);
    if (plan->devnull_fd < 0 || plan->capture_fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot prepare git's stdio");
    return 0;
}

static int report_failure(const char *url, const struct shed_config *config, enum clone_end end,
                          int status, int capture_fd, struct shed_err *err)
{
    char output[GIT_OUTPUT_MAX + 1];
    read_capture(capture_fd, output, sizeof output);
    log_git_output(url, output);
    if (end == CLONE_CANCELLED)
        return shed_errf(err, SHED_E_INTERRUPTED, "the clone of %.200s was cancelled", url);
    if (end == CLONE_TIMED_OUT)
        return shed_errf(err, SHED_E_BACKEND_ERROR,
                         "git clone of %.200s did not finish within %d s (repo_timeout_seconds)",
                         url, config->repo.timeout_seconds);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    /* For a path of this host, "not found" and "permission denied" would tell which paths
     * exist: one answer for every failure. */
    bool local = strncasecmp(url, "file:", 5) == 0;
    return shed_errf(err, SHED_E_BACKEND_ERROR, "git clone of %.200s failed (exit %d): %s", url,
                     code, local ? "the repository could not be fetched" : failure_class(output));
}

static void plan_free(struct clone_plan *plan)
{
    if (plan == NULL)
        return;
    if (plan->devnull_fd >= 0)
        close(plan->devnull_fd);
    if (plan->capture_fd >= 0)
        close(plan->capture_fd);
    free(plan);
}

static void cleanup_plan(struct clone_plan **plan)
{
    plan_free(*plan);
}

/* Runs git to its end (or its deadline); 0 only when it exited 0. */
static int run_git(const struct shed_config *config, const char *url, struct clone_plan *plan,
                   volatile int *cancel, struct shed_err *err)
{
    uint64_t deadline = now_ms() + (uint64_t)config->repo.timeout_seconds * 1000u;
    pid_t pid = -1;
    int status = 0;
    enum clone_end end = CLONE_EXITED;
    if (start_child(plan, &pid, err) < 0 ||
        wait_child(pid, deadline, cancel, &status, &end, err) < 0)
        return -1;
    if (end != CLONE_EXITED || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return report_failure(url, config, end, status, plan->capture_fd, err);
    return 0;
}

int repo_clone(const struct shed_config *config, const struct repo_clone_request *request,
               struct shed_err *err)
{
    cleanup_free char *url = NULL;
    if (repo_check(config, request->repo, &url, err) < 0)
        return -1;
    __attribute__((cleanup(cleanup_plan))) struct clone_plan *plan = calloc(1, sizeof *plan);
    if (plan == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    plan->devnull_fd = plan->capture_fd = -1;
    cleanup_free char *ssh_key = NULL, *known_hosts = NULL;
    cleanup_close int workspace = -1;
    if (read_ssh_file(config->repo.ssh_key, &ssh_key, &plan->ssh_key_len, err) < 0 ||
        read_ssh_file(config->repo.ssh_known_hosts, &known_hosts, &plan->known_hosts_len, err) <
            0 ||
        open_workspace(request->rootfs, &workspace, err) < 0 ||
        prepare_plan(plan, config, url, request->rootfs, workspace, err) < 0)
        return -1;
    plan->ssh_key = ssh_key;
    plan->known_hosts = known_hosts;
    /* git writes into the workspace as its own user; the shed's root gets it back below. */
    if (fchown(workspace, plan->uid, plan->gid) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "cannot prepare /workspace");
    if (run_git(config, url, plan, request->cancel, err) < 0)
        return -1;
    if (fchown(workspace, request->owner_uid, request->owner_gid) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno,
                               "cannot hand /workspace to the shed");
    return chown_tree(workspace, request->owner_uid, request->owner_gid, 0, err);
}
