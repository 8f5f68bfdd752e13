/*
 * virtio-net (virtio 1.2, 5.1): the guest's Ethernet interface, backed by a net_backend.
 *
 * Queues receiveq (0) and transmitq (1); one pair, no control queue. Features offered: MAC
 * (the address is fixed at creation: the caller keeps it stable per VM), STATUS (the link is
 * always up), MRG_RXBUF (a frame may span several receive buffers), CSUM (partial checksums
 * are completed here), and, as the backend allows, GUEST_CSUM (its frames need no checking)
 * and MTU (its link MTU, up to 64 KiB). For a backend that carries virtio-net headers (a tap)
 * CSUM, HOST_TSO4/6/ECN and GUEST_CSUM/TSO4/TSO6/ECN as it takes them, headers passed through
 * after checking (see net.c).
 *
 * Guest frames are hostile: a transmit chain shorter than the 12-byte header plus an Ethernet
 * header, longer than the header plus NET_FRAME_MAX, with device-writable buffers, or asking
 * for offloads that were not negotiated, or with a checksum position outside the frame, is
 * returned unused and counted, never handed on.
 * Frames for the guest that find no posted buffer wait in the backend's bounded queue
 * (backend.h); a malformed ring asks for a device reset.
 *
 * Threads: everything but config_read runs on the I/O thread (device.h); config_read only
 * reads the MAC and the constant status.
 */
#ifndef COVE_VIRTIO_NET_H
#define COVE_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/backend.h"
#include "virtio/device.h"

/* Feature bits (virtio 1.2, 5.1.3). */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1
/* struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
 * num_buffers. */
#define VIRTIO_NET_HDR_SIZE 12
#define VIRTIO_NET_QUEUE_SIZE 256

struct virtio_net_stats {
    uint64_t tx_bad;    /* transmit chains refused (sizes, layout, offload flags, csum offsets) */
    uint64_t rx_bad;    /* receive buffers too small for a header, returned empty, and
                         * backend headers claiming offloads the driver did not accept */
    uint64_t rx_toobig; /* frames no set of posted buffers could ever hold, dropped */
};

/*
 * Takes ownership of backend (freed by destroy, also when this fails) and becomes its
 * receiver. NULL when out of memory. Freed through dev->ops->destroy(dev), on the I/O thread
 * or once it stopped.
 */
struct virtio_device *virtio_net_new(const uint8_t mac[6], struct net_backend *backend);

/* Completes a partial checksum in place: the one's-complement sum from `start` to the end of
 * the frame (the field at start + offset holding the pseudo-header sum) goes into that field.
 * False, the frame untouched, when the field is not wholly inside the frame or start lies in
 * the Ethernet header. Exposed for tests and the fuzzer. */
bool virtio_net_complete_csum(uint8_t *frame, size_t len, uint16_t start, uint16_t offset);

/* I/O thread only. */
const struct virtio_net_stats *virtio_net_stats(struct virtio_device *dev);

#endif
