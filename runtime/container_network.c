/* Bridge + veth + NAT egress for container sheds: see container_network.h. */
#include "container_network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fsutil.h"
#include "common/io.h"
#include "container_internal.h"

/* The tool's complaint kept for an error message. */
#define TOOL_OUTPUT_MAX 512
/* The name of the veth's peer inside the shed. */
#define SHED_INTERFACE "eth0"

/* ---- construction -------------------------------------------------------------------- */

int container_network_init(struct container_network *network, const struct shed_config *config,
                           struct shed_err *err)
{
    memset(network, 0, sizeof *network);
    const struct shed_config_network *settings = &config->container_network;
    network->enabled = settings->mode == SHED_NETWORK_BRIDGE;
    snprintf(network->bridge, sizeof network->bridge, "%s",
             settings->bridge != NULL ? settings->bridge : SHED_CONFIG_DEFAULT_BRIDGE);
    network->subnet = settings->subnet;
    network->prefix_len = settings->prefix_len;
    network->lease_dir = fs_path_join(config->data_dir, "network/leases");
    network->lock_path = fs_path_join(config->data_dir, "network/lock");
    if (network->lease_dir == NULL || network->lock_path == NULL) {
        container_network_free(network);
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    }
    return 0;
}

void container_network_free(struct container_network *network)
{
    free(network->lease_dir);
    free(network->lock_path);
    memset(network, 0, sizeof *network);
}

/* ---- addresses ----------------------------------------------------------------------- */

static void format_ip(uint32_t address, char out[CONTAINER_IP_MAX])
{
    snprintf(out, CONTAINER_IP_MAX, "%u.%u.%u.%u", address >> 24, (address >> 16) & 255,
             (address >> 8) & 255, address & 255);
}

static uint32_t gateway_of(const struct container_network *network)
{
    return network->subnet + 1;
}

static uint32_t host_count(const struct container_network *network)
{
    return 1u << (32 - network->prefix_len);
}

/* Whether ip is, in canonical dotted decimal, a shed address of the subnet (not the network,
 * the gateway or the broadcast address). The address comes from metadata.json and names a
 * lease file: anything else ("../x", "010.88.0.2") must never reach a path. */
static bool is_shed_address(const struct container_network *network, const char *ip)
{
    struct in_addr parsed;
    if (ip == NULL || inet_pton(AF_INET, ip, &parsed) != 1)
        return false;
    uint32_t address = ntohl(parsed.s_addr);
    char canonical[CONTAINER_IP_MAX];
    format_ip(address, canonical);
    uint32_t host = address - network->subnet;
    return strcmp(canonical, ip) == 0 && address >= network->subnet && host >= 2 &&
           host < host_count(network) - 1;
}

/* "sh" + the address in hex: unique per address on the host and within IFNAMSIZ. */
static int host_veth_name(const char *ip, char out[IF_NAMESIZE], struct shed_err *err)
{
    struct in_addr address;
    if (inet_pton(AF_INET, ip, &address) != 1)
        return shed_errf(err, SHED_E_BACKEND_ERROR, "invalid shed address \"%s\"", ip);
    snprintf(out, IF_NAMESIZE, "sh%08x", ntohl(address.s_addr));
    return 0;
}

/* ---- running ip, iptables, unshare, nsenter ------------------------------------------ */

/* The last non-empty line of a tool's output, trimmed in place. */
static const char *last_line(char *output)
{
    size_t len = strlen(output);
    while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == ' '))
        output[--len] = '\0';
    char *line = strrchr(output, '\n');
    return line != NULL ? line + 1 : output;
}

/* Runs argv; 0 when it exits 0, else an error naming the command and its complaint. */
static int run_tool(const char *const *argv, struct shed_err *err)
{
    int status = 0;
    cleanup_free char *output = NULL;
    if (container_run_capture(argv, &status, &output, TOOL_OUTPUT_MAX, err) < 0)
        return -1;
    if (status == 0)
        return 0;
    char command[256] = "";
    size_t used = 0;
    for (size_t i = 0; argv[i] != NULL && used < sizeof command; i++)
        used +=
            (size_t)snprintf(command + used, sizeof command - used, "%s%s", i ? " " : "", argv[i]);
    return shed_errf(err, SHED_E_BACKEND_ERROR, "%s failed (exit %d): %s", command, status,
                     last_line(output));
}

/* Runs argv; *exit_status is its exit code (for tools whose non-zero exit is an answer). */
static int run_tool_status(const char *const *argv, int *exit_status, struct shed_err *err)
{
    return container_run_capture(argv, exit_status, NULL, 0, err);
}

/* ---- the shared part: bridge, forwarding, NAT ---------------------------------------- */

/* Serialises bridge and NAT setup between concurrent creates (and servers on one data dir):
 * `iptables -C` then `-A` is not atomic. */
static int lock_network(const struct container_network *network, int *fd, struct shed_err *err)
{
    *fd = open(network->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", network->lock_path);
    if (TEMP_FAILURE_RETRY(flock(*fd, LOCK_EX)) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "flock %s", network->lock_path);
    return 0;
}

static int ensure_bridge(const struct container_network *network, struct shed_err *err)
{
    char gateway[CONTAINER_IP_MAX + 4];
    format_ip(gateway_of(network), gateway);
    snprintf(gateway + strlen(gateway), sizeof gateway - strlen(gateway), "/%d",
             network->prefix_len);
    if (if_nametoindex(network->bridge) == 0) {
        const char *const add[] = {"ip", "link", "add", network->bridge, "type", "bridge", NULL};
        if (run_tool(add, err) < 0)
            return shed_err_prefix(err, "cannot create bridge %s", network->bridge);
    }
    const char *const address[] = {"ip", "addr", "replace", gateway, "dev", network->bridge, NULL};
    const char *const up[] = {"ip", "link", "set", network->bridge, "up", NULL};
    if (run_tool(address, err) < 0 || run_tool(up, err) < 0)
        return shed_err_prefix(err, "cannot configure bridge %s", network->bridge);
    return 0;
}

/* Per network namespace: this is the server's own namespace's switch. */
static int enable_ip_forward(struct shed_err *err)
{
    static const char path[] = "/proc/sys/net/ipv4/ip_forward";
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "open %s", path);
    if (write_all(fd, "1\n", 2) < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "write %s", path);
    return 0;
}

static int ensure_masquerade(const struct container_network *network, struct shed_err *err)
{
    char subnet[CONTAINER_IP_MAX + 4];
    format_ip(network->subnet, subnet);
    snprintf(subnet + strlen(subnet), sizeof subnet - strlen(subnet), "/%d", network->prefix_len);
#define MASQUERADE_RULE(action)                                                                    \
    {                                                                                              \
        "iptables", "-w", "-t", "nat", action, "POSTROUTING", "-s", subnet, "!", "-o",             \
            network->bridge, "-j", "MASQUERADE", NULL                                              \
    }
    const char *const check[] = MASQUERADE_RULE("-C");
    const char *const append[] = MASQUERADE_RULE("-A");
#undef MASQUERADE_RULE
    int status = 0;
    if (run_tool_status(check, &status, err) < 0)
        return -1;
    if (status == 0)
        return 0; /* already there */
    if (run_tool(append, err) < 0)
        return shed_err_prefix(err, "cannot add the NAT rule for %s", subnet);
    return 0;
}

static int ensure_shared_network(const struct container_network *network, struct shed_err *err)
{
    cleanup_flock int lock_fd = -1;
    if (fs_mkdir_p(network->lease_dir, 0700, err) < 0 || lock_network(network, &lock_fd, err) < 0)
        return -1;
    if (ensure_bridge(network, err) < 0 || enable_ip_forward(err) < 0 ||
        ensure_masquerade(network, err) < 0)
        return -1;
    return 0;
}

/* ---- leases -------------------------------------------------------------------------- */

/* 1 when the lease file for ip names this shed, 0 when it names another or is absent. */
static int lease_is_mine(const char *path, const char *name, struct shed_err *err)
{
    cleanup_free char *owner = NULL;
    size_t len = 0;
    if (!fs_exists(path))
        return 0;
    if (fs_read_file(path, &owner, &len, 256, err) < 0)
        return -1;
    return strcmp(owner, name) == 0;
}

/* Claims ip for name: 1 when it is now name's (new or already), 0 when another shed has it. */
static int claim_lease(const struct container_network *network, const char *name, const char *ip,
                       struct shed_err *err)
{
    cleanup_free char *path = fs_path_join(network->lease_dir, ip);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno != EEXIST)
            return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "create %s", path);
        return lease_is_mine(path, name, err);
    }
    size_t len = strlen(name);
    if (write_all(fd, name, len) < 0) {
        int saved = errno;
        unlink(path);
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, saved, "write %s", path);
    }
    return 1;
}

/* The shed's address: its own (kept) or the first free one of the subnet. */
static int take_lease(const struct container_network *network, const char *name,
                      char ip[CONTAINER_IP_MAX], struct shed_err *err)
{
    if (ip[0] != '\0') {
        if (!is_shed_address(network, ip))
            return shed_errf(err, SHED_E_BACKEND_ERROR,
                             "recorded address \"%.16s\" of shed \"%s\" is not an address of the "
                             "shed subnet",
                             ip, name);
        int mine = claim_lease(network, name, ip, err);
        if (mine < 0)
            return -1;
        if (mine == 0)
            return shed_errf(err, SHED_E_BACKEND_ERROR,
                             "address %s of shed \"%s\" is leased to another shed", ip, name);
        return 0;
    }
    /* .0 is the network, .1 the gateway, the last the broadcast address. */
    for (uint32_t host = 2; host < host_count(network) - 1; host++) {
        format_ip(network->subnet + host, ip);
        int mine = claim_lease(network, name, ip, err);
        if (mine != 0)
            return mine < 0 ? -1 : 0;
    }
    ip[0] = '\0';
    return shed_errf(err, SHED_E_BACKEND_ERROR, "no free address left in the shed subnet");
}

int container_network_release(const struct container_network *network, const char *name,
                              const char *ip, struct shed_err *err)
{
    if (!is_shed_address(network, ip))
        return 0; /* nothing of ours can be named so */
    cleanup_free char *path = fs_path_join(network->lease_dir, ip);
    if (path == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    int mine = lease_is_mine(path, name, err);
    if (mine <= 0)
        return mine;
    if (unlink(path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unlink %s", path);
    return 0;
}

/* ---- the shed's own part: namespace, veth, addresses --------------------------------- */

/* A new network namespace kept alive by a bind mount on netns_path (no process in it). */
static int create_netns(const char *netns_path, struct shed_err *err)
{
    cleanup_close int fd = open(netns_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "create %s", netns_path);
    cleanup_free char *option = str_printf("--net=%s", netns_path);
    if (option == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    const char *const argv[] = {"unshare", option, "true", NULL};
    if (run_tool(argv, err) < 0)
        return shed_err_prefix(err, "cannot create the shed's network namespace");
    return 0;
}

static int connect_veth(const struct container_network *network, const char *host_veth,
                        const char *netns_path, struct shed_err *err)
{
    const char *const add[] = {"ip",   "link", "add",          host_veth, "type",     "veth",
                               "peer", "name", SHED_INTERFACE, "netns",   netns_path, NULL};
    const char *const attach[] = {"ip",     "link",          "set", host_veth,
                                  "master", network->bridge, "up",  NULL};
    if (run_tool(add, err) < 0 || run_tool(attach, err) < 0)
        return shed_err_prefix(err, "cannot connect the shed to bridge %s", network->bridge);
    return 0;
}

/* Inside the shed's namespace: lo and eth0 up, the address, the default route. */
static int configure_inside(const struct container_network *network, const char *netns_path,
                            const char *ip, struct shed_err *err)
{
    cleanup_free char *enter = str_printf("--net=%s", netns_path);
    cleanup_free char *address = str_printf("%s/%d", ip, network->prefix_len);
    char gateway[CONTAINER_IP_MAX];
    format_ip(gateway_of(network), gateway);
    if (enter == NULL || address == NULL)
        return shed_errf(err, SHED_E_NO_MEMORY, "out of memory");
    const char *const steps[][9] = {
        {"nsenter", enter, "ip", "link", "set", "lo", "up", NULL},
        {"nsenter", enter, "ip", "addr", "add", address, "dev", SHED_INTERFACE, NULL},
        {"nsenter", enter, "ip", "link", "set", SHED_INTERFACE, "up", NULL},
        {"nsenter", enter, "ip", "route", "add", "default", "via", gateway, NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (run_tool(steps[i], err) < 0)
            return shed_err_prefix(err, "cannot configure the shed's network");
    return 0;
}

int container_network_setup(const struct container_network *network, const char *name,
                            const char *netns_path, char ip[CONTAINER_IP_MAX], struct shed_err *err)
{
    char host_veth[IF_NAMESIZE];
    if (ensure_shared_network(network, err) < 0 || take_lease(network, name, ip, err) < 0 ||
        host_veth_name(ip, host_veth, err) < 0)
        return -1;
    if (create_netns(netns_path, err) == 0 &&
        connect_veth(network, host_veth, netns_path, err) == 0 &&
        configure_inside(network, netns_path, ip, err) == 0)
        return 0;
    struct shed_err ignored = {0};
    container_network_teardown(netns_path, ip, &ignored);
    return -1;
}

int container_network_teardown(const char *netns_path, const char *ip, struct shed_err *err)
{
    char host_veth[IF_NAMESIZE];
    if (ip != NULL && ip[0] != '\0' && host_veth_name(ip, host_veth, err) == 0 &&
        if_nametoindex(host_veth) != 0) {
        /* Deleting one end removes the pair. */
        const char *const del[] = {"ip", "link", "del", host_veth, NULL};
        if (run_tool(del, err) < 0 && if_nametoindex(host_veth) != 0)
            return -1;
    }
    if (umount2(netns_path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unmount %s", netns_path);
    if (unlink(netns_path) < 0 && errno != ENOENT)
        return shed_errf_errno(err, SHED_E_BACKEND_ERROR, errno, "unlink %s", netns_path);
    return 0;
}
