/*
 * A tiny virtio driver for device unit tests: split rings laid out in fake guest RAM and
 * written the way a guest writes them (little endian, through guest_mem_ptr so a test's own
 * bad address fails loudly). Asserts with cmocka.
 */
#ifndef COVE_TEST_FAKE_DRIVER_H
#define COVE_TEST_FAKE_DRIVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"
#include "virtio/device.h"

/* The transport's side: counts interrupts per queue and reset requests (transport = &t). */
#define FAKE_MAX_QUEUES 4
struct fake_transport {
    unsigned signals[FAKE_MAX_QUEUES];
    unsigned requeues[FAKE_MAX_QUEUES]; /* virtio_requeue calls: the test notifies again */
    unsigned needs_reset;
    unsigned reset_queue; /* the queue and error of the last needs_reset */
    int reset_err;
};
extern const struct virtio_transport_ops fake_transport_ops;

/* One buffer of a chain. */
struct fake_buf {
    uint64_t gpa;
    uint32_t len;
    bool write; /* device-writable */
};

/* The driver's side of one split queue. */
struct fake_ring {
    const struct guest_mem *mem;
    uint16_t size;
    uint64_t desc, avail, used;
    uint16_t avail_idx; /* next avail slot */
    uint16_t next_desc; /* descriptors are handed out round-robin */
    uint16_t used_seen; /* used entries the test has consumed */
};

uint8_t *fake_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);
void fake_put16(const struct guest_mem *mem, uint64_t gpa, uint16_t v);
uint16_t fake_get16(const struct guest_mem *mem, uint64_t gpa);
uint32_t fake_get32(const struct guest_mem *mem, uint64_t gpa);
/* Descriptor i of the table at `table` (the ring's, or an indirect one). */
void fake_set_desc(const struct guest_mem *mem, uint64_t table, uint32_t i, uint64_t addr,
                   uint32_t len, uint16_t flags, uint16_t next);

/* Rings at desc, avail = desc + 16 * size, used = the next 4 KiB boundary after avail. */
void fake_ring_init(struct fake_ring *r, const struct guest_mem *mem, uint16_t size, uint64_t desc);
/* Makes the chain at head available. */
void fake_add_head(struct fake_ring *r, uint16_t head);
/* Chains bufs into consecutive descriptors, makes the chain available; returns its head. */
uint16_t fake_post(struct fake_ring *r, const struct fake_buf *bufs, unsigned n);
uint16_t fake_used_idx(const struct fake_ring *r);

/*
 * A hostile driver on another vCPU: a thread that makes the chain at head available again
 * each time the device uses an entry, so the ring is never empty for long. For the drain
 * budget (VIRTQ_DRAIN_BUDGET): kick until the device asks to be requeued.
 */
struct fake_refiller {
    struct fake_ring *ring;
    uint16_t head;
    atomic_bool stop;
    pthread_t thread;
};
void fake_refiller_start(struct fake_refiller *f, struct fake_ring *r, uint16_t head);
void fake_refiller_stop(struct fake_refiller *f);
/* Notifies dev's queue q until the device asks to be requeued (t counts it) or breaks. An
 * unbounded drain never returns: alarm() fails the test instead of hanging. A drain may also
 * find the ring empty for a moment, should the refiller be descheduled: then it kicks again. */
void fake_kick_until_requeued(struct virtio_device *dev, const struct fake_transport *t,
                              unsigned q);
uint32_t fake_used_id(const struct fake_ring *r, uint16_t slot);
uint32_t fake_used_len(const struct fake_ring *r, uint16_t slot);

#endif
