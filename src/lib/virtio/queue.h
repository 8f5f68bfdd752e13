/*
 * Split virtqueues (virtio 1.2, 2.7), device side.
 *
 * Everything in the rings is written by the guest and is hostile: every address and length
 * goes through guest_mem_ptr(), chains are bounded by the queue size (no loops), indirect
 * tables are bounded by their own length, and any malformation is reported as an error so the
 * transport can put the device into DEVICE_NEEDS_RESET instead of trusting it.
 */
#ifndef COVE_VIRTIO_QUEUE_H
#define COVE_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_mem.h"

#define VIRTQ_MAX_SIZE 32768

/* Descriptor flags and ring flags (virtio 1.2, 2.7.5 / 2.7.6 / 2.7.8). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Feature bits the queue code implements; the transport offers them for every device. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* The most buffers one request may span; a longer chain is a malformed request. 260 is the
 * longest chain Linux builds: a virtio-fs WRITE of FUSE's 256 data pages plus 4 headers. */
#define VIRTQ_MAX_SEGMENTS 260

struct virtq {
    const struct guest_mem *mem;
    uint16_t size;          /* a power of two, 1..VIRTQ_MAX_SIZE; set by the driver */
    uint64_t desc_gpa;      /* descriptor table */
    uint64_t avail_gpa;     /* driver area */
    uint64_t used_gpa;      /* device area */
    bool event_idx;         /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect;          /* VIRTIO_F_INDIRECT_DESC negotiated */
    /* Device-private progress. */
    uint16_t last_avail_idx; /* next avail ring slot to take */
    uint16_t used_idx;       /* next used ring slot to fill */
    uint16_t signalled_used; /* used_idx when the driver was last notified (event idx) */
    bool signalled_used_valid;
    bool avail_announced;    /* virtq_enable_notify saw more: the next pop must find them */
};

/* One request: the chain's buffers, device-readable ("out") first, then device-writable ("in"). */
struct virtq_elem {
    uint16_t head; /* descriptor index to hand back in the used ring */
    unsigned out_count;
    unsigned in_count;
    size_t out_bytes;
    size_t in_bytes;
    struct iovec iov[VIRTQ_MAX_SEGMENTS]; /* out_count readable, then in_count writable */
};

/*
 * Checks the rings' placement once the driver enables the queue: every ring must lie in guest
 * RAM and be aligned as the spec requires, and the used ring, which the device writes, must
 * not overlap the other two. Returns 0 or -EINVAL.
 */
int virtq_init(struct virtq *q, const struct guest_mem *mem, uint16_t size, uint64_t desc_gpa,
               uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect);

/*
 * Takes the next available chain. Returns 1 with elem filled, 0 when the ring is empty, or a
 * negative errno when the driver broke the rules (bad address, loop, over-long chain, a
 * readable buffer after a writable one, a nested or misused indirect table, avail index more
 * than size ahead, an index that went back after virtq_enable_notify saw it move): the caller
 * must stop using the queue and ask for a device reset.
 */
int virtq_pop(struct virtq *q, struct virtq_elem *elem);

/* Returns a chain to the driver with `written` bytes written into its writable buffers. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* What a virtq_pop error means, as a phrase for a report: "a buffer outside guest RAM". */
const char *virtq_error_text(int err);

/*
 * Whether the driver wants an interrupt for what was pushed since the last call that returned
 * true: VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX.
 */
bool virtq_should_signal(struct virtq *q);

/*
 * Re-arms notifications after the device drained the ring (with event idx: publishes
 * avail_event = last_avail_idx). Returns true when more buffers arrived meanwhile, in which
 * case the caller must pop again before sleeping.
 */
bool virtq_enable_notify(struct virtq *q);

/*
 * Asks the driver not to notify while the device is draining the ring (VIRTQ_USED_F_NO_NOTIFY;
 * with event idx nothing is written: avail_event simply stays behind until re-armed).
 */
void virtq_disable_notify(struct virtq *q);

/*
 * Chains served from one queue per drain before the device lets its loop serve the others. A
 * guest can refill a ring as fast as the device empties it, without a single exit, and the I/O
 * thread sees a stop only between handlers: without a bound, one queue could hold it for ever.
 */
#define VIRTQ_DRAIN_BUDGET 256

/* Serves one popped chain (pushing it or keeping it); false stops the drain (the device broke
 * or cannot go on now), true goes on to the next. */
typedef bool (*virtq_serve_fn)(void *ctx, struct virtq_elem *elem);

/*
 * The device side of a notification: pops chains into elem and hands each to serve, with
 * notifications off while it works and re-armed once the ring is empty (a chain that raced the
 * re-arm is taken by another pass). Stops after VIRTQ_DRAIN_BUDGET chains. Returns 1 when the
 * ring is empty or serve stopped, 0 when the budget ran out with chains left (notifications
 * still off: the device must come back, see virtio_requeue), or virtq_pop's error. *served:
 * how many chains serve was given.
 */
int virtq_drain(struct virtq *q, struct virtq_elem *elem, virtq_serve_fn serve, void *ctx,
                unsigned *served);

/* Copies helpers for devices: gather from the readable / scatter into the writable buffers. */
size_t virtq_read(const struct virtq_elem *elem, size_t offset, void *dst, size_t len);
size_t virtq_write(const struct virtq_elem *elem, size_t offset, const void *src, size_t len);

#endif
