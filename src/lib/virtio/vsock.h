/*
 * virtio-vsock (virtio 1.2, 5.10): stream sockets between the host and the guest.
 *
 * Queues rx (0), tx (1), event (2); configuration space: the guest's CID (le64). Only
 * VIRTIO_VSOCK_TYPE_STREAM is offered. The host side of every connection is an ordinary
 * stream socket the device relays to and from on the VM's I/O thread:
 *  - virtio_vsock_connect(): a socketpair, one end handed to the caller;
 *  - the Unix socket at uds_path (when given): a host program connects, writes
 *    "CONNECT <port>\n", and gets "OK <host-port>\n" once the guest accepted (the socket is
 *    closed on refusal, on a malformed line, and when the line or the guest's answer takes
 *    more than 3 s), then relays (the Firecracker hybrid-vsock convention);
 *  - a guest connection to host port P goes to the Unix socket "<uds_path>_P" when something
 *    listens there; otherwise the guest gets a reset (connection refused).
 *
 * Everything the guest sends is hostile: headers are validated, credit is enforced (data
 * beyond the buf_alloc the device advertised resets the connection), the number of
 * connections is capped (256, Unix socket clients still in their handshake included) and each
 * one buffers at most its advertised buf_alloc (256 KiB), so a guest cannot make the VMM's
 * memory grow without bound; a malformed ring asks for a device reset.
 *
 * Threads: the device ops and all socket I/O run on the I/O thread (device.h);
 * virtio_vsock_connect() and virtio_vsock_shutdown() may be called from any other thread.
 */
#ifndef COVE_VIRTIO_VSOCK_H
#define COVE_VIRTIO_VSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "io_loop.h"
#include "virtio/device.h"

/*
 * guest_cid: the guest's CID (>= 3). uds_path: NULL, or where to listen for host programs
 * (bound here; must not exist; unlinked by destroy). loop: the VM's I/O loop, on which the
 * device serves every host socket (the same loop the transport sets as dev->loop). NULL with
 * err filled on failure. Freed through dev->ops->destroy(dev), after the I/O thread stopped
 * and every virtio_vsock_connect() call returned (virtio_vsock_shutdown() makes them return).
 */
struct virtio_device *virtio_vsock_new(uint64_t guest_cid, const char *uds_path,
                                       struct io_loop *loop, char *err, size_t err_len);

/*
 * From any thread but the I/O thread (which must answer it): asks the guest for a connection
 * to `port` and waits up to timeout_ms (-1: no limit) for its answer. Returns the caller's end
 * of a connected stream socket (blocking, close-on-exec; end-of-file when the guest closes or
 * resets), or -ECONNREFUSED (the guest reset it: nothing listens), -ENOTCONN (the driver is
 * not ready, or reset the device meanwhile: try again later), -ETIMEDOUT (the half-open
 * connection is forgotten, with a reset to the guest if it saw the request), -ECONNRESET (the
 * guest answered with something else than RESPONSE or RST), -ESHUTDOWN (see
 * virtio_vsock_shutdown), -ENOMEM, -EMFILE (out of descriptors, or 256 connections open).
 */
int virtio_vsock_connect(struct virtio_device *dev, uint32_t port, int timeout_ms);

/*
 * From any thread, when the VM has ended (the I/O thread may have stopped already): every host
 * end sees end-of-file (shutdown(2) on the device's sockets), the Unix socket stops
 * accepting, waiting connects fail and later ones fail at once with -ESHUTDOWN. Final.
 */
void virtio_vsock_shutdown(struct virtio_device *dev);

#endif
