/* The OCI runtime spec (config.json) of a shed, written with jansson.
 *
 * Starting point: `runc spec`, with the differences a persistent dev environment needs:
 * - PID 1 is shed-init, bind-mounted read-only from the host;
 * - Docker's default capability set (package managers need CHOWN, DAC_OVERRIDE, SETUID…),
 *   and setuid binaries work (noNewPrivileges false);
 * - the rootfs is writable (it is the shed's own clone);
 * - /tmp is a tmpfs of a fixed size (container.tmp_size), /sys is read-only, no cgroup
 *   filesystem inside;
 * - a seccomp filter with the policy of Docker's default profile (container_seccomp.c);
 * - a pids limit (container.pids_limit) against fork bombs, RLIMIT_NOFILE
 *   (container.nofile) and no core dumps (RLIMIT_CORE 0: a host core_pattern pipe handler
 *   would run as host root on the shed's behalf); no RLIMIT_NPROC, which for uid 0 without
 *   a user namespace would count every root process of the host (the pids cgroup does that
 *   job per shed);
 * - new PID, mount, UTS, IPC and network namespaces: runc brings up loopback in a network
 *   namespace it creates, and nothing else (no bridge, no veth); with egress configured the
 *   backend made and wired the namespace already (container_network.c) and runc joins it
 *   by path;
 * - cpus → CFS quota, memory_mb → memory limit, under a cgroup path relative to the server's
 *   own cgroup (cgroups v1 hybrid here; runc 1.1 resolves relative paths per controller). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "container_internal.h"

static const char *const capabilities[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

static json_t *string_array(const char *const *items, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < count; i++) {
        if (json_array_append_new(array, json_string(items[i])) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *capabilities_json(void)
{
    size_t count = sizeof capabilities / sizeof capabilities[0];
    return json_pack("{s:o, s:o, s:o}", "bounding", string_array(capabilities, count), "effective",
                     string_array(capabilities, count), "permitted",
                     string_array(capabilities, count));
}

static json_t *rlimits_json(const struct container_spec_params *params)
{
    return json_pack("[{s:s, s:I, s:I}, {s:s, s:I, s:I}]", "type", "RLIMIT_NOFILE", "hard",
                     (json_int_t)params->nofile, "soft", (json_int_t)params->nofile, "type",
                     "RLIMIT_CORE", "hard", (json_int_t)0, "soft", (json_int_t)0);
}

static json_t *process_json(const struct container_spec_params *params)
{
    static const char *const env[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm-256color",
        "HOME=/root",
        "LANG=C.UTF-8",
    };
    static const char *const args[] = {CONTAINER_INIT_DEST};
    /* runc sets the rlimits while it still has CAP_SYS_RESOURCE; the shed cannot raise the
     * hard limits afterwards. */
    return json_pack("{s:b, s:{s:i, s:i}, s:o, s:o, s:s, s:o, s:b, s:o}", "terminal", 0, "user",
                     "uid", 0, "gid", 0, "args", string_array(args, 1), "env",
                     string_array(env, sizeof env / sizeof env[0]), "cwd", "/", "capabilities",
                     capabilities_json(), "noNewPrivileges", 0, "rlimits", rlimits_json(params));
}

static json_t *mount_json(const char *destination, const char *type, const char *source,
                          const char *const *options, size_t option_count)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", destination, "type", type, "source",
                     source, "options", string_array(options, option_count));
}

#define MOUNT(dest, type, source, ...)                                                             \
    mount_json(dest, type, source, (const char *const[]){__VA_ARGS__},                             \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static json_t *mounts_json(const struct container_spec_params *params)
{
    char tmp_size[48];
    snprintf(tmp_size, sizeof tmp_size, "size=%llu", (unsigned long long)params->tmp_size);
    json_t *mounts = json_pack(
        "[o, o, o, o, o, o, o, o]", MOUNT("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        MOUNT("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        MOUNT("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666",
              "mode=0620", "gid=5"),
        MOUNT("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        MOUNT("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        MOUNT("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        MOUNT("/tmp", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=1777", tmp_size),
        MOUNT(CONTAINER_INIT_DEST, "bind", params->init_path, "bind", "ro", "nosuid", "nodev"));
    if (mounts == NULL || params->workspace == NULL)
        return mounts;
    /* "bind", not "rbind": mounts below local_dir (a /proc, another disk) stay on the host. */
    if (json_array_append_new(mounts, MOUNT("/workspace", "bind", params->workspace, "bind",
                                            "nosuid", "nodev", "private")) < 0) {
        json_decref(mounts);
        return NULL;
    }
    return mounts;
}

static json_t *resources_json(const struct container_spec_params *params)
{
    json_t *resources = json_pack("{s:[{s:b, s:s}], s:{s:I}}", "devices", "allow", 0, "access",
                                  "rwm", "pids", "limit", (json_int_t)params->pids_limit);
    if (resources == NULL)
        return NULL;
    int rc = 0;
    if (params->cpus > 0) {
        /* cpus CPUs' worth of time per 100 ms period. */
        rc |=
            json_object_set_new(resources, "cpu",
                                json_pack("{s:I, s:I}", "quota", (json_int_t)params->cpus * 100000,
                                          "period", (json_int_t)100000));
    }
    if (params->memory_mb > 0) {
        rc |= json_object_set_new(
            resources, "memory",
            json_pack("{s:I}", "limit", (json_int_t)params->memory_mb * 1024 * 1024));
    }
    if (rc != 0) {
        json_decref(resources);
        return NULL;
    }
    return resources;
}

static json_t *namespaces_json(const struct container_spec_params *params)
{
    json_t *network = params->network_ns_path != NULL ? json_pack("{s:s, s:s}", "type", "network",
                                                                  "path", params->network_ns_path)
                                                      : json_pack("{s:s}", "type", "network");
    json_t *namespaces = json_pack("[{s:s}, o, {s:s}, {s:s}, {s:s}]", "type", "pid", network,
                                   "type", "ipc", "type", "uts", "type", "mount");
    if (namespaces != NULL && params->userns_base != 0 &&
        json_array_append_new(namespaces, json_pack("{s:s}", "type", "user")) < 0) {
        json_decref(namespaces);
        return NULL;
    }
    return namespaces;
}

/* The shed's ids 0..65535 are the host's userns_base.. (container.userns). */
static int add_id_mappings(json_t *linux_obj, const struct container_spec_params *params)
{
    if (params->userns_base == 0)
        return 0;
    static const char *const keys[] = {"uidMappings", "gidMappings"};
    for (size_t i = 0; i < 2; i++) {
        json_t *mapping =
            json_pack("[{s:I, s:I, s:I}]", "containerID", (json_int_t)0, "hostID",
                      (json_int_t)params->userns_base, "size", (json_int_t)SHED_CONFIG_USERNS_SIZE);
        if (mapping == NULL || json_object_set_new(linux_obj, keys[i], mapping) < 0)
            return -1;
    }
    return 0;
}

static json_t *linux_json(const struct container_spec_params *params)
{
    static const char *const masked[] = {
        "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/sys/firmware",       "/proc/scsi",
    };
    static const char *const readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                           "/proc/sysrq-trigger"};
    json_t *linux_obj =
        json_pack("{s:o, s:s, s:o, s:o, s:o, s:o}", "resources", resources_json(params),
                  "cgroupsPath", params->cgroups_path, "namespaces", namespaces_json(params),
                  "maskedPaths", string_array(masked, sizeof masked / sizeof masked[0]),
                  "readonlyPaths", string_array(readonly, sizeof readonly / sizeof readonly[0]),
                  "seccomp", container_seccomp_json());
    if (linux_obj != NULL && add_id_mappings(linux_obj, params) < 0) {
        json_decref(linux_obj);
        return NULL;
    }
    return linux_obj;
}

static json_t *spec_json(const struct container_spec_params *params)
{
    return json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o}", "ociVersion", "1.0.2", "process",
                     process_json(params), "root", "path", params->rootfs, "readonly", 0,
                     "hostname", params->hostname, "mounts", mounts_json(params), "linux",
                     linux_json(params));
}

int container_spec_write(const char *path, const struct container_spec_params *params,
                         struct shed_err *err)
{
    json_t *spec = spec_json(params);
    if (spec == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot build the OCI runtime spec");
    char *text = json_dumps(spec, JSON_INDENT(2));
    json_decref(spec);
    if (text == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "cannot serialise the OCI runtime spec");
    int rc = fs_write_file_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}
