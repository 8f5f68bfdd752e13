/*
 * The virtio device model, independent of the transport (PCI now; MMIO could follow).
 *
 * A device (blk, console, rng, ...) embeds struct virtio_device as its first member and fills
 * the identity and ops; the transport owns feature negotiation, status, queue set-up and
 * interrupts, and calls queue_notify, activate and reset on the VM's I/O thread, so the
 * device's queue state has one thread: a guest kick arrives through an ioeventfd on the I/O
 * loop, and the device answers by pushing to the used ring and calling virtio_signal_used().
 * The exception is the configuration space: config_read and config_write run on the vCPU
 * thread that accessed it, concurrently with the I/O thread, so they must only touch state
 * that is fixed or that they protect themselves.
 */
#ifndef COVE_VIRTIO_DEVICE_H
#define COVE_VIRTIO_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "io_loop.h"
#include "snapshot/stream.h"
#include "virtio/queue.h"

/* Device types (virtio 1.2, 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_VSOCK 19
#define VIRTIO_ID_FS 26

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

struct virtio_device;

struct virtio_device_ops {
    /* The driver kicked queue `index`. Pop, process, push, signal. */
    void (*queue_notify)(struct virtio_device *dev, unsigned index);
    /* Device-specific configuration space (offset is within it; bounds already checked).
     * Runs on a vCPU thread: see above. */
    void (*config_read)(struct virtio_device *dev, uint32_t offset, uint8_t *data, unsigned size);
    /* NULL when the configuration space is read-only. */
    void (*config_write)(struct virtio_device *dev, uint32_t offset, const uint8_t *data,
                         unsigned size);
    /* DRIVER_OK: the negotiated features and the enabled queues are final. May be NULL. */
    void (*activate)(struct virtio_device *dev);
    /* The driver reset the device: forget queues and in-flight work. May be NULL. */
    void (*reset)(struct virtio_device *dev);
    /* Frees the device (the transport is gone by then). */
    void (*destroy)(struct virtio_device *dev);
    /*
     * Snapshots. NULL: the device holds host state a snapshot cannot carry (an open file with
     * requests in flight, a FUSE session) and a VM with it cannot be saved. save runs on the
     * I/O thread's behalf while that thread is parked, before the transport saves the queues,
     * and may give back chains it holds (last_avail_idx rewound) so that the queues it leaves
     * describe every buffer; it returns -EBUSY when the device is not at a point it can be
     * saved from (a vsock connection is open). restore runs after activate, before any thread
     * runs, and returns false when its section is damaged.
     */
    int (*save)(struct virtio_device *dev, struct snap_writer *w);
    bool (*restore)(struct virtio_device *dev, struct snap_reader *r);
};

/* What the transport provides to the device. */
struct virtio_transport_ops {
    void (*signal_used)(void *transport, unsigned index);
    void (*signal_config)(void *transport);
    /* err: the virtq_pop error (or another negative errno) on queue `queue` that broke it. */
    void (*needs_reset)(void *transport, unsigned queue, int err);
    /* The device stopped draining queue `index` with chains left (VIRTQ_DRAIN_BUDGET): call
     * queue_notify for it again once the loop has served whatever else is ready. */
    void (*requeue)(void *transport, unsigned index);
};

struct virtio_device {
    /* Filled by the device. */
    const struct virtio_device_ops *ops;
    uint32_t device_id;
    uint64_t device_features; /* device-specific bits; the transport adds VERSION_1 etc. */
    uint32_t config_size;
    unsigned num_queues;
    uint16_t queue_max_size; /* a power of two */

    /* Filled by the transport. */
    uint64_t driver_features; /* what the driver accepted (valid from activate on) */
    struct virtq *queues;     /* num_queues of them */
    bool *queue_enabled;
    struct io_loop *loop;
    const struct virtio_transport_ops *transport_ops;
    void *transport;
};

static inline bool virtio_has_feature(const struct virtio_device *dev, unsigned bit)
{
    return (dev->driver_features >> bit) & 1;
}

/* Raises the queue's interrupt if the driver wants one now (virtq_should_signal). */
static inline void virtio_signal_used(struct virtio_device *dev, unsigned index)
{
    if (virtq_should_signal(&dev->queues[index]))
        dev->transport_ops->signal_used(dev->transport, index);
}

/* The driver broke the protocol on `queue` (err as virtq_pop returned it): stop using the
 * device until it resets it. The transport reports it to the VMM. */
static inline void virtio_needs_reset(struct virtio_device *dev, unsigned queue, int err)
{
    dev->transport_ops->needs_reset(dev->transport, queue, err);
}

/* After virtq_drain returned 0: the rest of the queue waits its turn on the loop. */
static inline void virtio_requeue(struct virtio_device *dev, unsigned index)
{
    dev->transport_ops->requeue(dev->transport, index);
}

/* save and restore for a device with nothing beyond its queues: each request is taken and
 * returned within one handler call, so the transport's queue state is all there is. */
static inline int virtio_save_queues_only(struct virtio_device *dev, struct snap_writer *w)
{
    (void)dev;
    (void)w;
    return 0;
}

static inline bool virtio_restore_queues_only(struct virtio_device *dev, struct snap_reader *r)
{
    (void)dev;
    return snap_reader_ok(r, true);
}

#endif
