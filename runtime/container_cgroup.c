/* Moving a helper process (the shed's console logger) into the cgroups of the shed's init,
 * in every hierarchy the host has: cgroup v2, and on hybrid hosts each v1 controller
 * hierarchy (memory, pids, cpu, name=systemd, ...). The hierarchies are found in
 * /proc/self/mountinfo, the shed's paths in /proc/<init>/cgroup. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_internal.h"

#define CGROUP_FILE_MAX (64u * 1024u)

/* Whether every comma-separated item of controllers is among the comma-separated options. */
static bool options_name_controllers(const char *options, const char *controllers)
{
    char want[256];
    snprintf(want, sizeof want, "%s", controllers);
    for (char *save = NULL, *item = strtok_r(want, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        size_t len = strlen(item);
        bool found = false;
        for (const char *at = options; !found && (at = strstr(at, item)) != NULL; at += len)
            found = (at == options || at[-1] == ',') && (at[len] == ',' || at[len] == '\0');
        if (!found)
            return false;
    }
    return true;
}

/* The mount point of the hierarchy of controllers ("" = cgroup v2) from mountinfo lines:
 * "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTIONS". Only
 * mounts of the hierarchy's root are used (a cgroup namespace's view would need mapping). */
static bool find_hierarchy(char *mountinfo, const char *controllers, char *out, size_t out_len)
{
    for (char *save = NULL, *line = strtok_r(mountinfo, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char root[256], mountpoint[256], fstype[32], superoptions[512];
        const char *dash = strstr(line, " - ");
        if (dash == NULL || sscanf(line, "%*s %*s %*s %255s %255s", root, mountpoint) != 2 ||
            sscanf(dash + 3, "%31s %*s %511s", fstype, superoptions) != 2 || strcmp(root, "/") != 0)
            continue;
        bool v2 = controllers[0] == '\0';
        if ((v2 && strcmp(fstype, "cgroup2") == 0) ||
            (!v2 && strcmp(fstype, "cgroup") == 0 &&
             options_name_controllers(superoptions, controllers))) {
            snprintf(out, out_len, "%s", mountpoint);
            return true;
        }
    }
    return false;
}

static int write_pid(const char *dir, const char *path, pid_t pid)
{
    cleanup_free char *procs = str_printf("%s%s/cgroup.procs", dir, path);
    if (procs == NULL)
        return -1;
    cleanup_close int fd = open(procs, O_WRONLY | O_CLOEXEC);
    char text[24];
    int len = snprintf(text, sizeof text, "%d\n", (int)pid);
    return fd < 0 ? -1 : write_all(fd, text, (size_t)len);
}

/* A /proc file (whose st_size is 0: read to the end), NUL-terminated; NULL on failure or
 * when it is larger than max. */
static char *read_proc_file(const char *path, size_t max)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    cleanup_free char *text = fd >= 0 ? malloc(max + 1) : NULL;
    ssize_t len = text != NULL ? read_full(fd, text, max + 1) : -1;
    if (len < 0 || (size_t)len > max)
        return NULL;
    text[len] = '\0';
    return steal_pointer(&text);
}

int container_cgroup_join(pid_t member, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)member);
    cleanup_free char *cgroups = read_proc_file(path, CGROUP_FILE_MAX);
    cleanup_free char *mountinfo = read_proc_file("/proc/self/mountinfo", 16 * CGROUP_FILE_MAX);
    if (cgroups == NULL || mountinfo == NULL)
        return -1;
    int failures = 0;
    for (char *save = NULL, *line = strtok_r(cgroups, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        /* "<id>:<controllers>:<path>" */
        char *controllers = strchr(line, ':');
        char *cgroup = controllers != NULL ? strchr(controllers + 1, ':') : NULL;
        if (cgroup == NULL)
            continue;
        *cgroup++ = '\0';
        controllers++;
        cleanup_free char *copy = strdup(mountinfo);
        char hierarchy[256];
        if (copy == NULL || !find_hierarchy(copy, controllers, hierarchy, sizeof hierarchy) ||
            write_pid(hierarchy, cgroup, pid) < 0)
            failures++;
    }
    return failures == 0 ? 0 : -1;
}
