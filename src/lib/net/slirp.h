/*
 * User-mode NAT through libslirp: the guest's TCP/UDP/ICMP become the VMM's own sockets, so no
 * root and no host configuration are needed.
 *
 * The virtual network follows QEMU's conventions, which users already expect: 10.0.2.0/24,
 * the host reachable at 10.0.2.2 (slirp maps it to the host's loopback), DNS at 10.0.2.3
 * (relayed to the host's resolver), and DHCP handing the guest 10.0.2.15. IPv4 only.
 *
 * libslirp is driven entirely from the VM's I/O loop: its sockets are watched with io_loop_add
 * (kept in step with what slirp_pollfds_fill asks for after every event), and its timers (TCP
 * timers and slirp's own) share one timerfd, since the loop's only prepare hook belongs to
 * vm.c. Create, use and free the backend on the I/O thread (or before the loop runs).
 * libslirp asks to be polled at least once a second (every 2 ms while a delayed ACK is due),
 * so the I/O thread wakes that often while the backend exists.
 */
#ifndef COVE_NET_SLIRP_H
#define COVE_NET_SLIRP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io_loop.h"
#include "net/backend.h"

/* IPv4 addresses in host byte order. */
#define NET_SLIRP_NETWORK 0x0a000200u /* 10.0.2.0 */
#define NET_SLIRP_NETMASK 0xffffff00u
#define NET_SLIRP_GATEWAY 0x0a000202u /* 10.0.2.2, the host alias */
#define NET_SLIRP_DNS 0x0a000203u     /* 10.0.2.3 */
#define NET_SLIRP_GUEST 0x0a00020fu   /* 10.0.2.15, the first (and usual) DHCP lease */

/* The virtual link's MTU (slirp's if_mtu and if_mru, offered to the guest): 65520, as
 * slirp4netns and passt use (libslirp takes up to IF_MTU_MAX, 65521). One TCP segment then
 * carries 64 KiB, so a transfer costs a fortieth of the frames (and slirp_input calls) of a
 * 1500-byte link. The link ends at slirp, so nothing outside sees this MTU. */
#define NET_SLIRP_MTU 65520

/* A host port forwarded to the guest (--publish). */
struct net_slirp_forward {
    bool udp;
    const char *host_addr; /* dotted IPv4; NULL means 127.0.0.1 (never all interfaces silently) */
    uint16_t host_port;
    uint16_t guest_port;
};

/*
 * What a flooding guest can make slirp hold (slirp has no limits of its own, see flow.h):
 * - sockets slirp opens for the guest (its TCP connections, UDP source ports, pings): at most
 *   NET_SLIRP_MAX_GUEST_FLOWS at once. At the cap, frames that would open another are dropped
 *   (a connection attempt goes unanswered, as through a full NAT table), datagrams of UDP
 *   flows that exist still pass, and it lifts as slirp closes sockets (a closed TCP one after
 *   its 10 s TIME_WAIT, an idle UDP one after 4 minutes, DNS after 10 s). Each TCP socket has
 *   up to 2 x 128 KiB of buffers (allocated lazily), so that bounds them too.
 * - IP fragments waiting for reassembly (slirp keeps an incomplete datagram 30 s): admitted
 *   within NET_SLIRP_FRAGMENT_BUDGET bytes per 30 s (each counted with 2 KiB of overhead), so
 *   they hold at most twice that; Linux guests fragment only UDP datagrams over the MTU.
 * Frames for the guest are bounded by the backend's receive queue (backend.h).
 */
#define NET_SLIRP_MAX_GUEST_FLOWS 1024
#define NET_SLIRP_FRAGMENT_BUDGET (8u << 20)
#define NET_SLIRP_FRAGMENT_WINDOW_MS 30000

struct net_slirp_config {
    enum net_policy_mode policy;
    const struct net_slirp_forward *forwards;
    unsigned forward_count;
    unsigned max_guest_flows; /* 0: NET_SLIRP_MAX_GUEST_FLOWS (tests set small ones) */
    size_t fragment_budget;   /* 0: NET_SLIRP_FRAGMENT_BUDGET */
};

struct net_slirp_stats {
    unsigned guest_flows;       /* sockets slirp holds for the guest now */
    uint64_t flows_refused;     /* frames dropped at the flow cap */
    uint64_t fragments_dropped; /* fragments beyond the budget */
};

/*
 * Starts the stack and binds every forward. NULL with a one-line message in error when a
 * forward cannot be bound ("port forward tcp 127.0.0.1:8080: Address already in use"), so a
 * port in use is reported before the guest boots. Freed with net_backend_free().
 */
struct net_backend *net_slirp_new(struct io_loop *loop, const struct net_slirp_config *config,
                                  char *error, size_t error_len);

/* The descriptors slirp currently has watched on the loop (its sockets): for tests. */
unsigned net_slirp_watched_fds(const struct net_backend *be);
const struct net_slirp_stats *net_slirp_stats(const struct net_backend *be);

#endif
