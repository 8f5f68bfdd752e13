/*
 * The virtio-blk device over a real raw image, with the test as driver and transport: the
 * requests it answers at once (GET_ID, an unsupported type) come back with their status, a
 * malformed chain asks for a reset, and a driver that keeps the ring full cannot hold the I/O
 * thread (the drain budget). The request parser and the backend have their own tests
 * (test_virtio_blk_req, test_block); the whole path with I/O is e2e (100-103).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "io_loop.h"
#include "virtio/blk.h"
#include "virtio/blk_req.h"

#define MEM_SIZE (1 * X86_MiB)
#define RING_GPA 0x1000ULL
#define DATA_GPA 0x20000ULL
#define OUTSIDE_RAM 0x40000000ULL
#define QSIZE 16
#define SERIAL "disk-serial-42"

struct bench {
    char path[64];
    struct guest_mem mem;
    struct io_loop *loop;
    struct virtio_device *dev;
    struct virtq queue;
    bool enabled;
    struct fake_ring ring;
    struct fake_transport t;
    uint64_t next_data;
};

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->path, "/tmp/cove-blk-XXXXXX");
    int fd = mkstemp(b->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->loop = io_loop_new();
    assert_non_null(b->loop);
    char error[256] = "";
    b->dev = virtio_blk_new(b->path, false, false, SERIAL, error, sizeof(error));
    assert_non_null(b->dev);
    fake_ring_init(&b->ring, &b->mem, QSIZE, RING_GPA);
    assert_int_equal(virtq_init(&b->queue, &b->mem, QSIZE, b->ring.desc, b->ring.avail,
                                b->ring.used, false, false), 0);
    b->enabled = true;
    b->dev->queues = &b->queue;
    b->dev->queue_enabled = &b->enabled;
    b->dev->loop = b->loop;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1;
    b->dev->ops->activate(b->dev);
    b->next_data = DATA_GPA;
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bench *b = *state;
    b->dev->ops->destroy(b->dev);
    io_loop_free(b->loop);
    guest_mem_destroy(&b->mem);
    unlink(b->path);
    free(b);
    return 0;
}

static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    uint64_t gpa = b->next_data;
    memset(fake_ptr(&b->mem, gpa, len), 0xee, len);
    b->next_data = (gpa + len + 15) & ~15ULL;
    return gpa;
}

/* A request header (type, sector), a writable data buffer of len bytes (if any), the status. */
struct chain {
    struct fake_buf bufs[3];
    unsigned count;
    uint64_t data, status;
};

static uint16_t post_request(struct bench *b, uint32_t type, uint32_t len, struct chain *c)
{
    uint64_t hdr = alloc_buf(b, 16);
    uint8_t *h = fake_ptr(&b->mem, hdr, 16);
    memset(h, 0, 16);
    memcpy(h, &type, 4);
    c->count = 0;
    c->bufs[c->count++] = (struct fake_buf){hdr, 16, false};
    if (len) {
        c->data = alloc_buf(b, len);
        c->bufs[c->count++] = (struct fake_buf){c->data, len, true};
    }
    c->status = alloc_buf(b, 1);
    c->bufs[c->count++] = (struct fake_buf){c->status, 1, true};
    return fake_post(&b->ring, c->bufs, c->count);
}

static uint8_t status_of(struct bench *b, const struct chain *c)
{
    return *fake_ptr(&b->mem, c->status, 1);
}

static void kick(struct bench *b) { b->dev->ops->queue_notify(b->dev, 0); }

/* GET_ID answers at once with the serial, NUL-padded, and its status; an unknown type is
 * UNSUPP. Both in the used ring, with one interrupt for the pass. */
static void test_answered_at_once(void **state)
{
    struct bench *b = *state;
    struct chain id, odd;
    post_request(b, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_ID_BYTES, &id);
    post_request(b, 99, 0, &odd);
    kick(b);
    assert_int_equal(fake_used_idx(&b->ring), 2);
    assert_int_equal(status_of(b, &id), VIRTIO_BLK_S_OK);
    const uint8_t *serial = fake_ptr(&b->mem, id.data, VIRTIO_BLK_ID_BYTES);
    assert_memory_equal(serial, SERIAL, strlen(SERIAL));
    for (size_t i = strlen(SERIAL); i < VIRTIO_BLK_ID_BYTES; i++)
        assert_int_equal(serial[i], 0);
    assert_int_equal(status_of(b, &odd), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(b->t.signals[0], 1);
    assert_int_equal(b->t.needs_reset, 0);
}

/* A chain with a buffer outside guest RAM: a reset is asked for, and later kicks are ignored. */
static void test_malformed_needs_reset(void **state)
{
    struct bench *b = *state;
    struct fake_buf bad = {OUTSIDE_RAM, 16, false};
    fake_post(&b->ring, &bad, 1);
    kick(b);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(b->t.reset_err, -EFAULT);
    struct chain id;
    post_request(b, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_ID_BYTES, &id);
    kick(b);
    assert_int_equal(fake_used_idx(&b->ring), 0);
}

/* Requests answered at once free their chains as fast as a driver on another vCPU posts new
 * ones: a kick still returns after the drain budget and asks to be requeued. */
static void test_refilling_driver_requeued(void **state)
{
    struct bench *b = *state;
    struct chain id;
    uint16_t head = post_request(b, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_ID_BYTES, &id);
    struct fake_refiller f;
    fake_refiller_start(&f, &b->ring, head);
    fake_kick_until_requeued(b->dev, &b->t, 0);
    fake_refiller_stop(&f);
    assert_int_equal(b->t.requeues[0], 1);
    assert_int_equal(b->t.needs_reset, 0);
    assert_int_equal(status_of(b, &id), VIRTIO_BLK_S_OK);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_answered_at_once),
        T(test_malformed_needs_reset),
        T(test_refilling_driver_requeued),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
