/*
 * virtio-rng: requests are filled with random bytes up to their writable length (and the cap),
 * odd but harmless chains get an empty answer, and a malformed ring asks for a reset without
 * touching anything.
 *
 * The test plays both the driver (rings in a small fake guest RAM, written the way a guest
 * would) and the transport (queue set-up, a fake that counts interrupts and reset requests).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "virtio/rng.h"

#define MEM_SIZE (1 * X86_MiB)
#define QSIZE 16
#define DESC_GPA 0x1000ULL
#define AVAIL_GPA 0x2000ULL
#define USED_GPA 0x3000ULL
#define DATA_GPA 0x10000ULL
#define OUTSIDE_RAM 0x40000000ULL

struct bench {
    struct guest_mem mem;
    struct virtio_device *dev;
    struct virtq queue;
    bool enabled;
    struct fake_transport t;
    uint16_t avail_idx; /* the driver's next avail slot */
    uint16_t next_desc; /* descriptors are handed out round-robin */
    uint64_t next_data; /* bump allocator for buffers */
};

struct buf {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

/* ---- The transport. ---- */

/* Queue set-up as the transport does when the driver enables the queue. */
static void enable_queue(struct bench *b, bool event_idx)
{
    assert_int_equal(virtq_init(&b->queue, &b->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA,
                                event_idx, false), 0);
    b->enabled = true;
}

/* The driver reset the device: the transport resets it and forgets the queue; the driver
 * starts over with fresh rings. */
static void reset_device(struct bench *b)
{
    b->dev->ops->reset(b->dev);
    b->enabled = false;
    memset(guest_mem_ptr(&b->mem, DESC_GPA, 0x3000), 0, 0x3000);
    b->avail_idx = b->next_desc = 0;
    enable_queue(b, false);
}

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->next_data = DATA_GPA;
    b->dev = virtio_rng_new();
    assert_non_null(b->dev);
    enable_queue(b, false);
    b->dev->queues = &b->queue;
    b->dev->queue_enabled = &b->enabled;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1;
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bench *b = *state;
    b->dev->ops->destroy(b->dev);
    guest_mem_destroy(&b->mem);
    free(b);
    return 0;
}

/* ---- The driver. ---- */

static uint8_t *gpa_ptr(struct bench *b, uint64_t gpa, uint64_t len) { return fake_ptr(&b->mem, gpa, len); }
static void put16(struct bench *b, uint64_t gpa, uint16_t v) { fake_put16(&b->mem, gpa, v); }
static uint16_t get16(struct bench *b, uint64_t gpa) { return fake_get16(&b->mem, gpa); }
static uint32_t get32(struct bench *b, uint64_t gpa) { return fake_get32(&b->mem, gpa); }

static void set_desc(struct bench *b, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    fake_set_desc(&b->mem, DESC_GPA, i, addr, len, flags, next);
}

/* A zeroed buffer in guest RAM, followed by a 16-byte 0xaa canary the device must not touch. */
static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    uint64_t gpa = b->next_data;
    memset(gpa_ptr(b, gpa, len), 0, len);
    memset(gpa_ptr(b, gpa + len, 16), 0xaa, 16);
    b->next_data = (gpa + len + 16 + 15) & ~15ULL;
    return gpa;
}

static bool canary_intact(struct bench *b, const struct buf *buf)
{
    const uint8_t *p = gpa_ptr(b, buf->gpa + buf->len, 16);
    for (int i = 0; i < 16; i++)
        if (p[i] != 0xaa)
            return false;
    return true;
}

/* Chains bufs into consecutive descriptors and makes the chain available; returns its head. */
static uint16_t post(struct bench *b, const struct buf *bufs, unsigned n)
{
    uint16_t head = b->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE);
        uint16_t flags = (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                         (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
        set_desc(b, idx, bufs[i].gpa, bufs[i].len, flags, (uint16_t)((idx + 1) % QSIZE));
    }
    b->next_desc = (uint16_t)((head + n) % QSIZE);
    put16(b, AVAIL_GPA + 4 + 2 * (b->avail_idx % QSIZE), head);
    b->avail_idx++;
    put16(b, AVAIL_GPA + 2, b->avail_idx);
    return head;
}

static uint16_t used_idx(struct bench *b) { return get16(b, USED_GPA + 2); }
static uint32_t used_id(struct bench *b, uint16_t slot) { return get32(b, USED_GPA + 4 + 8 * slot); }
static uint32_t used_len(struct bench *b, uint16_t slot) { return get32(b, USED_GPA + 8 + 8 * slot); }

static void kick(struct bench *b) { b->dev->ops->queue_notify(b->dev, 0); }

static void activate(struct bench *b) { b->dev->ops->activate(b->dev); }

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- Tests. ---- */

static void test_identity(void **state)
{
    struct bench *b = *state;
    assert_int_equal(b->dev->device_id, VIRTIO_ID_RNG);
    assert_int_equal(b->dev->num_queues, 1);
    assert_int_equal(b->dev->config_size, 0);
    assert_int_equal(b->dev->device_features, 0);
    uint16_t qmax = b->dev->queue_max_size;
    assert_true(qmax > 0 && (qmax & (qmax - 1)) == 0);
}

/* Exactly the writable bytes are filled, with something other than zeros. */
static void test_fills_writable_bytes(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf bufs[2] = {{alloc_buf(b, 100), 100, true}, {alloc_buf(b, 300), 300, true}};
    uint16_t head = post(b, bufs, 2);
    kick(b);
    assert_int_equal(used_idx(b), 1);
    assert_int_equal(used_id(b, 0), head);
    assert_int_equal(used_len(b, 0), 400);
    assert_int_equal(b->t.signals[0], 1);
    assert_int_equal(b->t.needs_reset, 0);
    for (int i = 0; i < 2; i++) {
        /* All zero by chance: 2^-800 at the least. */
        assert_false(all_zero(gpa_ptr(b, bufs[i].gpa, bufs[i].len), bufs[i].len));
        assert_true(canary_intact(b, &bufs[i]));
    }
}

/* One kick serves every pending request, in order, with one interrupt. */
static void test_serves_all_pending(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint16_t heads[3];
    for (int i = 0; i < 3; i++) {
        struct buf buf = {alloc_buf(b, 16 * (i + 1)), 16 * (i + 1), true};
        heads[i] = post(b, &buf, 1);
    }
    kick(b);
    assert_int_equal(used_idx(b), 3);
    for (uint16_t i = 0; i < 3; i++) {
        assert_int_equal(used_id(b, i), heads[i]);
        assert_int_equal(used_len(b, i), 16 * (i + 1));
    }
    assert_int_equal(b->t.signals[0], 1);
    kick(b); /* nothing new: no used entries, no interrupt */
    assert_int_equal(used_idx(b), 3);
    assert_int_equal(b->t.signals[0], 1);
}

/*
 * A hostile driver on another vCPU reposts every chain the moment it is used, so the ring is
 * never empty: one notification still returns, after VIRTQ_DRAIN_BUDGET chains, and asks the
 * transport to come back to the queue (the I/O thread serves the other devices meanwhile).
 */
static void test_refilling_driver_cannot_hold_device(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf buf = {alloc_buf(b, 16), 16, true};
    uint16_t head = post(b, &buf, 1);
    /* This test's rings, as the shared refiller sees a ring. */
    struct fake_ring ring = {.mem = &b->mem, .size = QSIZE, .desc = DESC_GPA,
                             .avail = AVAIL_GPA, .used = USED_GPA, .avail_idx = b->avail_idx};
    struct fake_refiller f;
    fake_refiller_start(&f, &ring, head);
    fake_kick_until_requeued(b->dev, &b->t, 0);
    fake_refiller_stop(&f);
    assert_int_equal(b->t.requeues[0], 1);
    assert_int_equal(b->t.needs_reset, 0);
}

/* A huge buffer gets the cap and no more; the rest is left as it was. */
static void test_caps_request(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint32_t len = 2 * VIRTIO_RNG_MAX_REQUEST;
    struct buf buf = {alloc_buf(b, len), len, true};
    post(b, &buf, 1);
    kick(b);
    assert_int_equal(used_len(b, 0), VIRTIO_RNG_MAX_REQUEST);
    const uint8_t *p = gpa_ptr(b, buf.gpa, len);
    assert_false(all_zero(p + VIRTIO_RNG_MAX_REQUEST - 256, 256));
    assert_true(all_zero(p + VIRTIO_RNG_MAX_REQUEST, len - VIRTIO_RNG_MAX_REQUEST));
}

/* Readable buffers (a driver MUST NOT) and empty chains are returned with nothing written. */
static void test_odd_chains_get_empty_answer(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf mixed[2] = {{alloc_buf(b, 16), 16, false}, {alloc_buf(b, 32), 32, true}};
    post(b, mixed, 2);
    struct buf empty = {alloc_buf(b, 8), 0, true};
    post(b, &empty, 1);
    kick(b);
    assert_int_equal(used_idx(b), 2);
    assert_int_equal(used_len(b, 0), 0);
    assert_int_equal(used_len(b, 1), 0);
    assert_true(all_zero(gpa_ptr(b, mixed[1].gpa, 32), 32));
    assert_int_equal(b->t.needs_reset, 0);
}

/* A buffer outside RAM: reset requested, nothing used, the device idles until the reset and
 * then works again. */
static void test_malformed_chain_needs_reset(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf bad = {OUTSIDE_RAM, 64, true};
    post(b, &bad, 1);
    kick(b);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(used_idx(b), 0);
    assert_int_equal(b->t.signals[0], 0);
    kick(b); /* broken: the ring is not looked at again */
    assert_int_equal(b->t.needs_reset, 1);

    reset_device(b);
    activate(b);
    struct buf good = {alloc_buf(b, 32), 32, true};
    post(b, &good, 1);
    kick(b);
    assert_int_equal(used_idx(b), 1);
    assert_int_equal(used_len(b, 0), 32);
    assert_int_equal(b->t.needs_reset, 1);
}

/* Good requests before a bad one are still answered and signalled. */
static void test_good_then_malformed(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf good = {alloc_buf(b, 32), 32, true};
    post(b, &good, 1);
    set_desc(b, 5, DATA_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5); /* a loop */
    put16(b, AVAIL_GPA + 4 + 2 * b->avail_idx, 5);
    put16(b, AVAIL_GPA + 2, ++b->avail_idx);
    kick(b);
    assert_int_equal(used_idx(b), 1);
    assert_int_equal(b->t.signals[0], 1);
    assert_int_equal(b->t.needs_reset, 1);
}

/* No buffer is used before DRIVER_OK; activation serves what was queued. */
static void test_waits_for_activate(void **state)
{
    struct bench *b = *state;
    struct buf buf = {alloc_buf(b, 32), 32, true};
    post(b, &buf, 1);
    kick(b);
    assert_int_equal(used_idx(b), 0);
    activate(b);
    assert_int_equal(used_idx(b), 1);
    assert_int_equal(b->t.signals[0], 1);
}

/* The driver's NO_INTERRUPT flag is honoured. */
static void test_no_interrupt(void **state)
{
    struct bench *b = *state;
    activate(b);
    put16(b, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
    struct buf buf = {alloc_buf(b, 32), 32, true};
    post(b, &buf, 1);
    kick(b);
    assert_int_equal(used_idx(b), 1);
    assert_int_equal(b->t.signals[0], 0);
}

/* With event idx the device publishes avail_event after draining, so the driver kicks again
 * for its next request. */
static void test_event_idx_rearms(void **state)
{
    struct bench *b = *state;
    enable_queue(b, true);
    activate(b);
    for (int i = 0; i < 2; i++) {
        struct buf buf = {alloc_buf(b, 8), 8, true};
        post(b, &buf, 1);
    }
    kick(b);
    assert_int_equal(used_idx(b), 2);
    assert_int_equal(get16(b, USED_GPA + 4 + 8 * QSIZE), 2); /* avail_event */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fills_writable_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serves_all_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refilling_driver_cannot_hold_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_chains_get_empty_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_chain_needs_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_then_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_activate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx_rearms, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
