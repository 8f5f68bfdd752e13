/*
 * A network backend: where the guest's Ethernet frames go (slirp, or a host TAP device) and
 * where frames for the guest come from.
 *
 * Guest -> backend: net_backend_send() checks the frame against the policy first, so no
 * backend ever parses a frame the policy refused; dropped frames are counted.
 * Backend -> guest: the backend calls net_backend_deliver(), which hands the frame to the
 * receiver (the virtio-net device) at once, or keeps a copy in a bounded queue while the
 * receiver has no room; beyond the cap frames are dropped and counted, never buffered, so a
 * guest that posts no receive buffers cannot make the VMM grow. TCP retransmits what was lost.
 *
 * Threading: everything here runs on the VM's I/O thread (the backend's descriptors are on its
 * io_loop); nothing is thread-safe, the counters included.
 */
#ifndef COVE_NET_BACKEND_H
#define COVE_NET_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/policy.h"
#include "net/vnet_hdr.h"

/* The receive queue's caps: frames and bytes held while the receiver has no room. */
#define NET_RXQ_MAX_FRAMES 256
#define NET_RXQ_MAX_BYTES (1024 * 1024)

/* Takes a frame for the guest: true when it was consumed (delivered, or dropped on purpose),
 * false when there is no room now, in which case the frame is queued and offered again after
 * net_backend_rx_ready(). The frame is only valid during the call. */
typedef bool (*net_receive_fn)(void *opaque, const uint8_t *frame, size_t len);

struct net_stats {
    uint64_t tx_frames;           /* guest frames the backend took */
    uint64_t tx_dropped_policy;   /* refused by the policy */
    uint64_t tx_dropped_malformed;
    uint64_t rx_frames;           /* frames the receiver took */
    uint64_t rx_dropped;          /* queue full, or a frame of impossible size */
};

struct net_backend;

struct net_backend_ops {
    /* A frame the policy allowed. */
    void (*send)(struct net_backend *be, const uint8_t *frame, size_t len);
    void (*destroy)(struct net_backend *be);
    /* Optional: the receive queue is empty again (the receiver took everything, or it was
     * purged), so a backend that stopped reading its source while frames waited may resume. */
    void (*rx_drained)(struct net_backend *be);
    /* Optional, for vnet_hdr backends: the offloads (NET_OFFLOAD_*, within `offloads`) the
     * guest accepted on its receive side; frames delivered from now on claim no others. */
    void (*set_rx_offloads)(struct net_backend *be, unsigned offloads);
};

struct net_rx_slot {
    uint8_t *data;
    size_t len;
};

/* Embedded first in each backend. The capabilities are set by the backend after
 * net_backend_init (zero, the default, is a 1500-byte link of bare frames the guest must
 * check).
 * vnet_hdr: every frame through send, deliver and the receiver starts with a virtio_net_hdr_v1
 * (vnet_hdr.h), so offloads pass through as the header describes them instead of being done
 * by the device (a tap: the host kernel segments and checksums far more cheaply). `offloads`
 * is what such a backend takes in the headers of guest frames and can be asked, through
 * set_rx_offloads, to leave to the guest; the caller checks every header it hands on. */
struct net_backend {
    const struct net_backend_ops *ops;
    unsigned mtu;       /* the largest IP packet it takes and sends; 0 means 1500 */
    bool rx_csum_valid; /* every frame it delivers has correct checksums (it built them) */
    bool vnet_hdr;      /* frames carry a NET_VNET_HDR_SIZE header in front */
    unsigned offloads;  /* NET_OFFLOAD_* it takes (vnet_hdr only) */
    struct net_policy policy;
    net_receive_fn receive;
    void *receive_opaque;
    struct net_stats stats;
    struct net_rx_slot rxq[NET_RXQ_MAX_FRAMES]; /* a ring */
    unsigned rxq_head;
    unsigned rxq_count;
    size_t rxq_bytes;
};

/* For backends: fills the common part. */
void net_backend_init(struct net_backend *be, const struct net_backend_ops *ops,
                      const struct net_policy *policy);
/* For backends: a frame for the guest (behind its header for a vnet_hdr backend). */
void net_backend_deliver(struct net_backend *be, const uint8_t *frame, size_t len);

/* The receiver; frames that arrive before there is one are queued (within the caps). */
void net_backend_set_receiver(struct net_backend *be, net_receive_fn fn, void *opaque);
/* The guest's receive offloads, for a vnet_hdr backend that can leave them to it. */
void net_backend_set_rx_offloads(struct net_backend *be, unsigned offloads);
/* A frame from the guest (behind its header for a vnet_hdr backend). */
void net_backend_send(struct net_backend *be, const uint8_t *frame, size_t len);
/* The receiver has room again: offers the queued frames, oldest first. */
void net_backend_rx_ready(struct net_backend *be);
/* Drops everything queued for the guest (the device was reset). */
void net_backend_rx_purge(struct net_backend *be);
const struct net_stats *net_backend_stats(const struct net_backend *be);
void net_backend_free(struct net_backend *be);

#endif
