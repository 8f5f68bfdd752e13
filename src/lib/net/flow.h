/*
 * Which guest frames may make libslirp open a host socket (a "flow"), so the slirp backend can
 * cap them before slirp sees the frame: slirp itself has no limit on sockets (each TCP one
 * with up to 2 x 128 KiB of buffers) or on IP fragments waiting for reassembly (kept ~30 s),
 * so a flooding guest could otherwise grow the VMM's memory and descriptors without bound.
 *
 * The classification follows libslirp 4.7: a TCP segment opens a socket only when it is a
 * SYN (without ACK) no socket matches; a UDP datagram when no socket has its source address
 * and port (DHCP to port 67 is answered inside slirp); an ICMP echo request to anything but
 * the host and DNS aliases (which slirp answers itself); a fragment may complete a datagram of
 * any of these. Pure functions: guest frames are hostile, every header is bounds-checked, and
 * what cannot be parsed is NONE (slirp drops it as well, since it needs the same headers).
 */
#ifndef COVE_NET_FLOW_H
#define COVE_NET_FLOW_H

#include <stddef.h>
#include <stdint.h>

enum net_flow_kind {
    NET_FLOW_NONE,      /* cannot open a socket */
    NET_FLOW_TCP_SYN,   /* a connection attempt */
    NET_FLOW_UDP,       /* a datagram: a socket unless one has this source */
    NET_FLOW_ICMP_ECHO, /* a ping slirp relays through a socket of its own */
    NET_FLOW_FRAGMENT,  /* part of a datagram slirp reassembles (held until complete) */
};

/* The guest end of a flow: what slirp keys its UDP sockets by. Host byte order. */
struct net_flow_key {
    uint8_t proto; /* IPPROTO_TCP, _UDP or _ICMP */
    uint32_t src;
    uint16_t sport; /* 0 for ICMP */
};

/* gateway and dns: slirp's host and DNS aliases (host byte order). key is filled for TCP_SYN,
 * UDP and ICMP_ECHO. */
enum net_flow_kind net_flow_classify(const uint8_t *frame, size_t len, uint32_t gateway,
                                     uint32_t dns, struct net_flow_key *key);

#endif
