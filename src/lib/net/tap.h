/*
 * A TAP backend: the guest's frames go to an existing host TAP device (`--net tap:NAME`), so
 * the guest is on whatever network the host joins the tap to (a bridge, a routed address).
 * Cove never creates, configures or deletes the device: whoever made it decides its
 * addresses, and a user who owns a tap (ip tuntap add ... user USER) needs no privilege.
 *
 * Attaching: /dev/net/tun, TUNSETIFF with IFF_TAP | IFF_NO_PI (and IFF_VNET_HDR when asked),
 * retried with IFF_MULTI_QUEUE for a multi-queue tap (cove uses one of its queues). The device
 * must exist before: with CAP_NET_ADMIN, TUNSETIFF on a missing name would quietly create a
 * throw-away tap instead, so the interface index is checked before and after.
 *
 * With vnet_hdr, every frame on the descriptor carries a 12-byte virtio_net_hdr_v1, the layout
 * virtio-net uses, and the backend is a vnet_hdr one (backend.h): headers pass between the
 * guest and the kernel as they are, so the guest's TSO frames and partial checksums go to the
 * kernel (which segments and checksums them, or hands them on whole to a bridge or the host's
 * stack), and the kernel's large frames reach a guest that accepted GUEST_TSO. What the kernel
 * may send is set with TUNSETOFFLOAD: none at open, then what the guest accepted
 * (set_rx_offloads); a read whose header claims more, or positions outside its frame, is
 * dropped and counted. Frames of up to 64 KiB plus the header are read. Without vnet_hdr the
 * descriptor and the backend interface carry bare Ethernet frames.
 *
 * Receive backpressure: while the virtio-net device has no room (frames wait in the backend's
 * queue), the descriptor is not read, so the host kernel holds the frames (in the tap's own
 * bounded queue) instead of cove; reading resumes when the queue drains.
 */
#ifndef COVE_NET_TAP_H
#define COVE_NET_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io_loop.h"
#include "net/backend.h"

/* A virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
 * num_buffers. */
#define NET_TAP_VNET_HDR_SIZE 12

struct net_tap_config {
    const char *name; /* the TAP device, e.g. "tap0" */
    bool vnet_hdr;    /* frames on the descriptor carry a virtio_net_hdr_v1 */
};

/* Frames read from the descriptor per wake-up before other handlers get a turn. */
#define NET_TAP_READ_BURST 64

struct net_tap_stats {
    uint64_t tx_errors;  /* guest frames the device refused (link down, no buffer) */
    uint64_t rx_bad;     /* reads too short or too long, or with a header refused */
    uint64_t offload_errors; /* TUNSETOFFLOAD calls the kernel refused (frames stay plain) */
    uint64_t pauses;     /* times reading stopped because the guest had no room */
    bool gone;           /* the descriptor ended or broke (the device was deleted): not read */
};

/*
 * Opens and attaches the device. Returns the descriptor, or a negative errno with one line in
 * error naming the device and the fix: -ENODEV no such device, -EINVAL not a TAP device,
 * -EPERM not allowed (CAP_NET_ADMIN, or a tap owned by this user), -EBUSY attached elsewhere,
 * -ENOENT no /dev/net/tun, -EACCES /dev/net/tun not openable.
 */
int net_tap_open(const struct net_tap_config *config, char *error, size_t error_len);

/* Opens the device (net_tap_open) and starts the backend on loop. NULL with error filled
 * (and *err the negative errno when err is not NULL). Freed with net_backend_free(). */
struct net_backend *net_tap_new(struct io_loop *loop, const struct net_tap_config *config,
                                int *err, char *error, size_t error_len);

/* The backend over a descriptor already attached (or any datagram descriptor, for tests):
 * takes ownership of fd, also on failure. */
struct net_backend *net_tap_new_fd(struct io_loop *loop, int fd, bool vnet_hdr);

/* TUNSETOFFLOAD: the offloads (NET_OFFLOAD_*, which are TUN_F_*) the kernel may leave to
 * the reader of fd. 0 or a negative errno. Apart so the rest can be tested on a socket pair. */
int net_tap_set_offload(int fd, unsigned offloads);

const struct net_tap_stats *net_tap_stats(const struct net_backend *be);

#endif
