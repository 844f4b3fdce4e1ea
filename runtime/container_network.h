/* Egress networking for container sheds (config `container_network`, mode bridge).
 *
 * With mode none (the default) nothing here runs: runc creates the shed's network namespace
 * and brings up loopback only. With mode bridge the backend creates the namespace itself, as
 * a bind-mounted nsfs file (<bundle>/netns) that config.json points runc at, and wires it up
 * before `runc run`:
 *
 *   host:  bridge <bridge> (up, gateway = first host of the subnet), ip_forward = 1,
 *          one `iptables -t nat POSTROUTING -s <subnet> ! -o <bridge> -j MASQUERADE` rule
 *   veth:  "sh<8 hex digits of the shed's address>" on the host, enslaved to the bridge;
 *          its peer is "eth0" in the shed
 *   shed:  lo up, eth0 <address>/<prefix> up, default route via the gateway
 *
 * The bridge, its address and the NAT rule are shared by every shed of the subnet and stay
 * once created (one rule per subnet; adding is idempotent), so concurrent creates never race
 * to remove what another shed needs. Everything per shed goes with the shed: stop removes
 * the veth and the namespace file; delete (and a failed create) also releases the address.
 * The "sh<hex address>" names are reserved for this: an interface so named while its shed
 * holds the address is taken to be that shed's leftover (e.g. after a crash) and removed.
 *
 * Addresses are leases: one file <data_dir>/network/leases/<address> holding the shed's
 * name, created O_EXCL, so concurrent creates never share an address and a restarted server
 * knows which are taken. A shed keeps its lease while stopped: its address is stable across
 * stop/start and server restarts (it is the instance's ip_address).
 *
 * Tools: `ip` (iproute2), `iptables`, `unshare`/`nsenter` (util-linux), run with checked exit
 * codes; their output is kept for error messages. */
#ifndef SHED_CONTAINER_NETWORK_H
#define SHED_CONTAINER_NETWORK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/shed_err.h"
#include "config/config.h"

/* Room for "255.255.255.255". */
#define CONTAINER_IP_MAX 16

/* Fixed at backend construction, read-only afterwards. */
struct container_network {
    bool enabled;    /* mode bridge */
    char bridge[16]; /* IFNAMSIZ */
    uint32_t subnet; /* host byte order */
    int prefix_len;
    char *lease_dir; /* <data_dir>/network/leases */
    char *lock_path; /* <data_dir>/network/lock: serialises bridge and NAT setup */
};

int container_network_init(struct container_network *network, const struct shed_config *config,
                           struct shed_err *err);
void container_network_free(struct container_network *network);

/* Creates the shed's network namespace at netns_path and connects it to the bridge. The
 * address is ip when given (a shed that has one keeps it), else a new lease; it is written
 * to ip (CONTAINER_IP_MAX bytes). On failure the namespace and veth are gone again; a lease
 * taken here is kept (container_network_release decides, as the caller knows whether the
 * shed is new). */
int container_network_setup(const struct container_network *network, const char *name,
                            const char *netns_path, char ip[CONTAINER_IP_MAX],
                            struct shed_err *err);

/* Removes the shed's veth (ip may be NULL or "") and its namespace file; each part is a
 * no-op when absent. The lease stays. */
int container_network_teardown(const char *netns_path, const char *ip, struct shed_err *err);

/* Gives the address back (no-op when ip is NULL/"" or the lease is not this shed's). */
int container_network_release(const struct container_network *network, const char *name,
                              const char *ip, struct shed_err *err);

#endif
