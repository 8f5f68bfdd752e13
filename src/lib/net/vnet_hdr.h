/*
 * The virtio_net_hdr_v1 (virtio 1.2, 5.1.6) in front of a frame, the layout both a TAP device
 * with IFF_VNET_HDR and virtio-net use, so a tap's offloads pass through the device unchanged.
 *
 * Both sides of such a header are untrusted: the guest's (checked by virtio-net before the
 * backend sees it) and the kernel's (checked by the tap backend before the guest sees it, in
 * case it claims an offload the guest never accepted). net_vnet_hdr_valid is that one check.
 */
#ifndef COVE_NET_VNET_HDR_H
#define COVE_NET_VNET_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/policy.h" /* NET_ETH_HLEN */

/* flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers (each le16). */
#define NET_VNET_HDR_SIZE 12
#define NET_VNET_HDR_LEN 2
#define NET_VNET_GSO_SIZE 4
#define NET_VNET_CSUM_START 6
#define NET_VNET_CSUM_OFFSET 8
#define NET_VNET_NUM_BUFFERS 10

#define NET_VNET_F_NEEDS_CSUM 1
#define NET_VNET_F_DATA_VALID 2
#define NET_VNET_GSO_NONE 0
#define NET_VNET_GSO_TCPV4 1
#define NET_VNET_GSO_TCPV6 4
#define NET_VNET_GSO_ECN 0x80

/* Offloads a header may ask for: a partial checksum, TCP segmentation over IPv4 / IPv6, and
 * segmentation of frames with ECN's CWR set. The values are TUN_F_* (linux/if_tun.h). No UFO:
 * Linux guests stopped sending it (4.14), so it could not be tested end to end. */
#define NET_OFFLOAD_CSUM 0x01u
#define NET_OFFLOAD_TSO4 0x02u
#define NET_OFFLOAD_TSO6 0x04u
#define NET_OFFLOAD_ECN 0x08u

/* Whether a checksum field at csum_start + csum_offset of a frame of len bytes lies past the
 * Ethernet header and wholly inside the frame: the one bounds rule for the field,
 * whether the device completes the checksum or a backend is trusted to. */
static inline bool net_csum_field_fits(size_t len, size_t start, size_t offset)
{
    return start >= NET_ETH_HLEN && start < len && len - start >= 2 && offset <= len - start - 2;
}

/*
 * Whether the header in front of a frame of len bytes (the header not counted) asks only for
 * offloads in `offloads`, with every position inside the frame: NEEDS_CSUM needs CSUM and a
 * checksum field past the Ethernet header and wholly inside; a gso_type (TCPV4, TCPV6, with
 * ECN only under ECN) needs its offload, NEEDS_CSUM, a gso_size from 1 to len and a hdr_len
 * up to len. DATA_VALID is left to the caller (it means something only towards the guest).
 */
bool net_vnet_hdr_valid(const uint8_t hdr[NET_VNET_HDR_SIZE], size_t len, unsigned offloads);

static inline uint16_t net_vnet_get16(const uint8_t *hdr, unsigned off)
{
    return (uint16_t)(hdr[off] | hdr[off + 1] << 8);
}

#endif
