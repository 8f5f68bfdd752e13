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
    uint16_t want_used; /* run_until_used */
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
    uint16_t head;
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

/* ---- Merging: reads or writes of one kick that continue each other go as one. ---- */

/* A read (T_IN) or write (T_OUT) of len bytes at sector, its data in two buffers. */
static uint16_t post_rw(struct bench *b, uint32_t type, uint64_t sector, uint32_t len,
                        uint8_t fill, struct chain *c)
{
    uint64_t hdr = alloc_buf(b, 16);
    uint8_t *h = fake_ptr(&b->mem, hdr, 16);
    memset(h, 0, 16);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    bool device_writes = type == VIRTIO_BLK_T_IN;
    c->data = alloc_buf(b, len);
    memset(fake_ptr(&b->mem, c->data, len), fill, len);
    struct fake_buf bufs[4] = {{hdr, 16, false},
                               {c->data, len / 2, device_writes},
                               {c->data + len / 2, len / 2, device_writes},
                               {0, 0, false}};
    c->status = alloc_buf(b, 1);
    bufs[3] = (struct fake_buf){c->status, 1, true};
    c->head = fake_post(&b->ring, bufs, 4);
    return c->head;
}

static bool stop_when_used(void *opaque)
{
    struct bench *b = opaque;
    if (fake_used_idx(&b->ring) >= b->want_used)
        io_loop_stop(b->loop);
    return false;
}

/* Runs the I/O loop until want requests have been used (the backend's completions). */
static void run_until_used(struct bench *b, uint16_t want)
{
    b->want_used = want;
    io_loop_set_prepare(b->loop, stop_when_used, b);
    alarm(10);
    io_loop_run(b->loop);
    alarm(0);
}

static uint8_t image_byte(uint64_t offset) { return (uint8_t)(offset * 7 + offset / 4096); }

static void fill_image(struct bench *b)
{
    static uint8_t data[1 << 20];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = image_byte(i);
    int fd = open(b->path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
    close(fd);
}

static void assert_read(struct bench *b, const struct chain *c, uint64_t sector, uint32_t len)
{
    assert_int_equal(status_of(b, c), VIRTIO_BLK_S_OK);
    const uint8_t *p = fake_ptr(&b->mem, c->data, len);
    for (uint32_t i = 0; i < len; i++)
        if (p[i] != image_byte(sector * 512 + i))
            fail_msg("sector %llu byte %u", (unsigned long long)sector, i);
}

/*
 * Three reads that continue each other, a write elsewhere, two writes that continue each
 * other (write-through: no FLUSH negotiated) and a read that continues nothing: the first
 * three go as one, the two writes as one (three requests joined another), and every request
 * gets its own data, status and used length, in the image too.
 */
static void test_adjacent_requests_merged(void **state)
{
    struct bench *b = *state;
    fill_image(b);
    /* Seven chains of four descriptors: a longer ring than the other tests'. */
    fake_ring_init(&b->ring, &b->mem, 64, RING_GPA);
    assert_int_equal(virtq_init(&b->queue, &b->mem, 64, b->ring.desc, b->ring.avail,
                                b->ring.used, false, false), 0);
    struct chain r1, r2, r3, w1, w2, w3, r4;
    post_rw(b, VIRTIO_BLK_T_IN, 0, 4096, 0xee, &r1);
    post_rw(b, VIRTIO_BLK_T_IN, 8, 4096, 0xee, &r2);
    post_rw(b, VIRTIO_BLK_T_IN, 16, 8192, 0xee, &r3);
    post_rw(b, VIRTIO_BLK_T_OUT, 512, 4096, 0x11, &w1);
    post_rw(b, VIRTIO_BLK_T_OUT, 1024, 4096, 0x22, &w2);
    post_rw(b, VIRTIO_BLK_T_OUT, 1032, 8192, 0x33, &w3);
    post_rw(b, VIRTIO_BLK_T_IN, 100, 4096, 0xee, &r4);
    kick(b);
    run_until_used(b, 7);
    assert_int_equal(b->t.needs_reset, 0);
    assert_int_equal(virtio_blk_merged(b->dev), 3);
    assert_read(b, &r1, 0, 4096);
    assert_read(b, &r2, 8, 4096);
    assert_read(b, &r3, 16, 8192);
    assert_read(b, &r4, 100, 4096);
    /* Used lengths: a read's data and status, a write's status alone. */
    const struct chain *order[7] = {&r1, &r2, &r3, &w1, &w2, &w3, &r4};
    const uint32_t used_len[7] = {4097, 4097, 8193, 1, 1, 1, 4097};
    for (uint16_t slot = 0; slot < 7; slot++) {
        uint32_t id = fake_used_id(&b->ring, slot);
        for (int i = 0; i < 7; i++)
            if (id == order[i]->head)
                assert_int_equal(fake_used_len(&b->ring, slot), used_len[i]);
    }
    const struct chain *writes[3] = {&w1, &w2, &w3};
    const uint64_t sectors[3] = {512, 1024, 1032};
    const uint32_t lens[3] = {4096, 4096, 8192};
    const uint8_t fills[3] = {0x11, 0x22, 0x33};
    int fd = open(b->path, O_RDONLY);
    assert_true(fd >= 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(status_of(b, writes[i]), VIRTIO_BLK_S_OK);
        uint8_t got[8192];
        assert_int_equal(pread(fd, got, lens[i], (off_t)sectors[i] * 512), (ssize_t)lens[i]);
        for (uint32_t j = 0; j < lens[i]; j++)
            assert_int_equal(got[j], fills[i]);
    }
    close(fd);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_adjacent_requests_merged, setup, teardown),
        T(test_answered_at_once),
        T(test_malformed_needs_reset),
        T(test_refilling_driver_requeued),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
