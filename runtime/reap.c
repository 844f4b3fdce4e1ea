/* instance_reap: releasing what a killed server left (see reap.h). */
#include "reap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/strv.h"

/* How long a killed process may take to go (it holds the mount the release unmounts). */
#define KILL_WAIT_MS 5000

struct reaper {
    struct instance_store *store;
    const struct backend_set *backends;
    void (*log)(const char *line, void *ctx);
    void *ctx;
    struct reap_report *report;
};

/* A shed to release, its lock held until it is done. */
struct candidate {
    struct instance inst;
    const struct shed_backend *backend;
    int lock;
    bool interrupted; /* recorded "starting" */
};

static void __attribute__((format(printf, 2, 3))) say(const struct reaper *r, const char *fmt, ...)
{
    if (r->log == NULL)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->log(line, r->ctx);
}

/* ---- orphans -------------------------------------------------------------------------- */

static void reap_orphan(struct reaper *r, const char *name)
{
    int lock = -1;
    struct shed_err err = {0};
    if (instance_store_trylock(r->store, name, &lock, &err) < 0 || lock < 0)
        return; /* a create holds it: not an orphan, a shed being made */
    if (!instance_store_has_metadata(r->store, name)) {
        if (instance_store_delete(r->store, name, &err) == 0) {
            r->report->orphans_removed++;
            say(r,
                "removed the directory of \"%s\", which has no metadata.json (a create that "
                "never finished)",
                name);
        } else {
            r->report->failures++;
            say(r, "cannot remove the orphan directory of \"%s\": %s", name, err.msg);
        }
    }
    instance_store_unlock(lock);
}

static int reap_orphans(struct reaper *r, struct shed_err *err)
{
    char **names = NULL;
    if (instance_store_orphans(r->store, &names, err) < 0)
        return -1;
    for (char **name = names; *name != NULL; name++)
        reap_orphan(r, *name);
    instance_image_refs_free(names);
    return 0;
}

/* ---- which sheds ------------------------------------------------------------------------ */

/* Takes name when it needs releasing: its lock is free, its backend is built in, and it is
 * not a running shed. 1 with *out filled, 0 to leave it alone. */
static int consider(struct reaper *r, const char *name, struct candidate *out)
{
    struct shed_err err = {0};
    *out = (struct candidate){.lock = -1};
    if (instance_store_trylock(r->store, name, &out->lock, &err) < 0 || out->lock < 0)
        return 0;
    if (instance_store_load(r->store, name, &out->inst, &err) < 0) {
        instance_store_unlock(out->lock);
        return 0; /* unreadable metadata: nothing to go by */
    }
    out->backend = backend_set_find(r->backends, out->inst.backend);
    enum instance_status actual = INSTANCE_STOPPED;
    bool usable = out->backend != NULL && out->backend->stop != NULL &&
                  out->backend->status != NULL &&
                  out->backend->status(out->backend, &out->inst, &actual, &err) == 0;
    out->interrupted = out->inst.status == INSTANCE_STARTING;
    if (!usable || (out->inst.status == INSTANCE_RUNNING && actual == INSTANCE_RUNNING)) {
        instance_clear(&out->inst);
        instance_store_unlock(out->lock);
        return 0;
    }
    return 1;
}

/* ---- processes inside the sheds' directories -------------------------------------------- */

static bool path_inside(const char *path, char *const *dirs)
{
    for (char *const *dir = dirs; *dir != NULL; dir++) {
        size_t len = strlen(*dir);
        if (strncmp(path, *dir, len) == 0 && (path[len] == '/' || path[len] == '\0'))
            return true;
    }
    return false;
}

static bool link_inside(int dir_fd, const char *name, char *const *dirs)
{
    char target[PATH_MAX];
    ssize_t len = readlinkat(dir_fd, name, target, sizeof target - 1);
    if (len <= 0)
        return false;
    target[len] = '\0';
    return path_inside(target, dirs);
}

/* Whether the process (its /proc dir open) has its cwd or an open file inside dirs. */
static bool uses_dirs(int proc_fd, char *const *dirs)
{
    if (link_inside(proc_fd, "cwd", dirs))
        return true;
    int fd_dir = openat(proc_fd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cleanup_closedir DIR *fds = fd_dir >= 0 ? fdopendir(fd_dir) : NULL;
    if (fds == NULL) {
        if (fd_dir >= 0)
            close(fd_dir);
        return false;
    }
    for (struct dirent *entry; (entry = readdir(fds)) != NULL;)
        if (entry->d_name[0] != '.' && link_inside(dirfd(fds), entry->d_name, dirs))
            return true;
    return false;
}

/* SIGKILL through a pidfd taken before the check, so a reused pid is never hit. */
static bool kill_if_inside(pid_t pid, char *const *dirs)
{
    cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    char path[32];
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    cleanup_close int proc_fd = pidfd >= 0 ? open(path, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    if (proc_fd < 0 || !uses_dirs(proc_fd, dirs) ||
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0)
        return false;
    struct pollfd wait = {.fd = pidfd, .events = POLLIN};
    TEMP_FAILURE_RETRY(poll(&wait, 1, KILL_WAIT_MS));
    return true;
}

static void kill_users(struct reaper *r, char *const *dirs)
{
    cleanup_closedir DIR *proc = opendir("/proc");
    if (proc == NULL)
        return;
    pid_t self = getpid();
    for (struct dirent *entry; (entry = readdir(proc)) != NULL;) {
        char *end = NULL;
        long pid = strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || pid <= 1 || pid == self)
            continue;
        if (kill_if_inside((pid_t)pid, dirs)) {
            r->report->processes_killed++;
            say(r, "killed process %ld, left working inside a mount of a shed", pid);
        }
    }
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_mountinfo(char *text)
{
    char *out = text;
    for (const char *in = text; *in != '\0'; out++) {
        if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' &&
            in[3] >= '0' && in[3] <= '7') {
            *out = (char)((in[1] - '0') << 6 | (in[2] - '0') << 3 | (in[3] - '0'));
            in += 4;
        } else {
            *out = *in++;
        }
    }
    *out = '\0';
}

/* The mount points at or below dir: what a process working inside them keeps busy. Only those
 * are searched for processes (an admin's shell in a shed's directory is left alone). */
static int add_mounts_below(const char *dir, struct strv *mounts, struct shed_err *err)
{
    cleanup_fclose FILE *mountinfo = fopen("/proc/self/mountinfo", "re");
    if (mountinfo == NULL)
        return 0;
    char line[8192], point[PATH_MAX];
    while (fgets(line, sizeof line, mountinfo) != NULL) {
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1)
            continue;
        unescape_mountinfo(point);
        if (path_inside(point, (char *const[]){(char *)dir, NULL}) &&
            !strv_contains(mounts, point) && strv_add(mounts, point, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- the release -------------------------------------------------------------------------- */

static void release(struct reaper *r, struct candidate *c)
{
    struct shed_err err = {0};
    enum instance_status recorded = c->inst.status;
    if (c->backend->stop(c->backend, &c->inst, &err) < 0) {
        r->report->failures++;
        say(r, "cannot release what shed \"%s\" holds: %s", c->inst.name, err.msg);
        return;
    }
    c->inst.pid = 0;
    c->inst.status = c->interrupted                 ? INSTANCE_ERROR
                     : recorded == INSTANCE_RUNNING ? INSTANCE_STOPPED
                                                    : recorded;
    if (c->inst.status != recorded && instance_store_save(r->store, &c->inst, &err) < 0) {
        r->report->failures++;
        say(r, "cannot save shed \"%s\": %s", c->inst.name, err.msg);
        return;
    }
    if (c->interrupted) {
        r->report->interrupted++;
        say(r,
            "shed \"%s\" was being created or started when the server stopped: released, "
            "now \"error\" (start or delete it)",
            c->inst.name);
    } else {
        r->report->released++;
    }
}

static int collect(struct reaper *r, struct candidate **out, size_t *count, struct strv *dirs,
                   struct shed_err *err)
{
    struct instance_list list;
    if (instance_store_list(r->store, &list, err) < 0)
        return -1;
    *out = calloc(list.count ? list.count : 1, sizeof **out);
    int rc = *out != NULL ? 0 : shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    for (size_t i = 0; rc == 0 && i < list.count; i++) {
        struct candidate *c = &(*out)[*count];
        if (consider(r, list.items[i].name, c) == 0)
            continue;
        (*count)++;
        cleanup_free char *dir = instance_store_path(r->store, c->inst.name);
        char canonical[PATH_MAX];
        rc = dir == NULL ? shed_errf(err, SHED_E_NO_MEMORY, "out of memory")
                         : add_mounts_below(realpath(dir, canonical) ? canonical : dir, dirs, err);
    }
    instance_list_clear(&list);
    return rc;
}

int instance_reap(struct instance_store *store, const struct backend_set *backends,
                  void (*log)(const char *line, void *ctx), void *ctx, struct reap_report *report,
                  struct shed_err *err)
{
    memset(report, 0, sizeof *report);
    struct reaper r = {store, backends, log, ctx, report};
    if (reap_orphans(&r, err) < 0)
        return -1;
    struct candidate *candidates = NULL;
    size_t count = 0;
    cleanup_strv struct strv dirs = STRV_INIT;
    int rc = collect(&r, &candidates, &count, &dirs, err);
    if (rc == 0 && dirs.count > 0)
        kill_users(&r, dirs.items);
    for (size_t i = 0; i < count; i++) {
        if (rc == 0)
            release(&r, &candidates[i]);
        instance_clear(&candidates[i].inst);
        instance_store_unlock(candidates[i].lock);
    }
    free(candidates);
    return rc;
}
