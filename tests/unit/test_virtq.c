/*
 * Split virtqueues: chains become the right iovecs, used entries and notifications follow the
 * spec, and every malformation a hostile driver can write is refused without a crash.
 *
 * The test plays the driver: it lays the rings out in a small fake guest RAM and writes
 * descriptors and ring entries the way a guest would (little-endian, at guest addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "virtio/queue.h"

#define MEM_SIZE (1 * X86_MiB)
#define DESC_GPA 0x1000ULL
#define AVAIL_GPA 0x2000ULL
#define USED_GPA 0x3000ULL
#define IND_GPA 0x8000ULL  /* an indirect table */
#define IND2_GPA 0x9000ULL /* a second one, for nesting */
#define DATA_GPA 0x10000ULL
#define QSIZE 16

struct drv {
    struct guest_mem mem;
    struct virtq q;
    uint16_t avail_idx; /* the driver's next avail slot */
    struct virtq_elem elem;
};

/* ---- The driver side. ---- */

static uint8_t *gpa_ptr(struct drv *d, uint64_t gpa, uint64_t len) { return fake_ptr(&d->mem, gpa, len); }
static void put16(struct drv *d, uint64_t gpa, uint16_t v) { fake_put16(&d->mem, gpa, v); }
static uint16_t get16(struct drv *d, uint64_t gpa) { return fake_get16(&d->mem, gpa); }
static uint32_t get32(struct drv *d, uint64_t gpa) { return fake_get32(&d->mem, gpa); }

static void set_desc_at(struct drv *d, uint64_t table, uint32_t i, uint64_t addr, uint32_t len,
                        uint16_t flags, uint16_t next)
{
    fake_set_desc(&d->mem, table, i, addr, len, flags, next);
}

static void set_desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    set_desc_at(d, DESC_GPA, i, addr, len, flags, next);
}

static void set_avail_idx(struct drv *d, uint16_t idx) { put16(d, AVAIL_GPA + 2, idx); }
static void set_avail_flags(struct drv *d, uint16_t f) { put16(d, AVAIL_GPA, f); }
static void set_used_event(struct drv *d, uint16_t v) { put16(d, AVAIL_GPA + 4 + 2 * QSIZE, v); }
static uint16_t used_idx(struct drv *d) { return get16(d, USED_GPA + 2); }
static uint16_t used_flags(struct drv *d) { return get16(d, USED_GPA); }
static uint16_t avail_event(struct drv *d) { return get16(d, USED_GPA + 4 + 8 * QSIZE); }
static uint32_t used_id(struct drv *d, uint16_t slot) { return get32(d, USED_GPA + 4 + 8 * slot); }
static uint32_t used_len(struct drv *d, uint16_t slot) { return get32(d, USED_GPA + 8 + 8 * slot); }

/* Makes the chain starting at `head` available, as a driver does. */
static void add_head(struct drv *d, uint16_t head)
{
    put16(d, AVAIL_GPA + 4 + 2 * (d->avail_idx % QSIZE), head);
    d->avail_idx++;
    set_avail_idx(d, d->avail_idx);
}

/* Both sides start at `start`, as after a device restored at that index. */
static void start_at(struct drv *d, uint16_t start)
{
    d->q.last_avail_idx = d->q.used_idx = start;
    d->avail_idx = start;
    set_avail_idx(d, start);
    put16(d, USED_GPA + 2, start);
}

static void init_queue(struct drv *d, bool event_idx, bool indirect)
{
    assert_int_equal(virtq_init(&d->q, &d->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA, event_idx,
                                indirect), 0);
}

static int setup_flags(void **state, bool event_idx, bool indirect)
{
    struct drv *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    assert_int_equal(guest_mem_create(&d->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    init_queue(d, event_idx, indirect);
    *state = d;
    return 0;
}

static int setup(void **state) { return setup_flags(state, false, false); }
static int setup_indirect(void **state) { return setup_flags(state, false, true); }
static int setup_event_idx(void **state) { return setup_flags(state, true, false); }

static int teardown(void **state)
{
    struct drv *d = *state;
    guest_mem_destroy(&d->mem);
    free(d);
    return 0;
}

/* A malformed chain is refused, with the error naming the breach, and not consumed. */
static void expect_malformed(struct drv *d, int err)
{
    uint16_t before = d->q.last_avail_idx;
    assert_int_equal(virtq_pop(&d->q, &d->elem), err);
    assert_int_equal(d->q.last_avail_idx, before);
}

/* ---- Well-formed chains. ---- */

static void test_out_in_chain(void **state)
{
    struct drv *d = *state;
    set_desc(d, 3, DATA_GPA, 100, VIRTQ_DESC_F_NEXT, 7);
    set_desc(d, 7, DATA_GPA + 0x1000, 50, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA + 0x2000, 200, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 3);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    struct virtq_elem *e = &d->elem;
    assert_int_equal(e->head, 3);
    assert_int_equal(e->out_count, 2);
    assert_int_equal(e->in_count, 1);
    assert_int_equal(e->out_bytes, 150);
    assert_int_equal(e->in_bytes, 200);
    assert_ptr_equal(e->iov[0].iov_base, gpa_ptr(d, DATA_GPA, 100));
    assert_int_equal(e->iov[0].iov_len, 100);
    assert_ptr_equal(e->iov[1].iov_base, gpa_ptr(d, DATA_GPA + 0x1000, 50));
    assert_int_equal(e->iov[1].iov_len, 50);
    assert_ptr_equal(e->iov[2].iov_base, gpa_ptr(d, DATA_GPA + 0x2000, 200));
    assert_int_equal(e->iov[2].iov_len, 200);
    assert_int_equal(d->q.last_avail_idx, 1);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 0);
}

static void test_push_publishes_used(void **state)
{
    struct drv *d = *state;
    set_desc(d, 5, DATA_GPA, 64, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 5);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(used_idx(d), 0);
    virtq_push(&d->q, d->elem.head, 42);
    assert_int_equal(used_idx(d), 1);
    assert_int_equal(used_id(d, 0), 5);
    assert_int_equal(used_len(d, 0), 42);
}

static void test_empty_ring(void **state)
{
    struct drv *d = *state;
    assert_int_equal(virtq_pop(&d->q, &d->elem), 0);
    assert_int_equal(d->q.last_avail_idx, 0);
}

static void test_index_wraparound(void **state)
{
    struct drv *d = *state;
    start_at(d, 65534);
    for (uint16_t i = 0; i < 4; i++) {
        set_desc(d, i, DATA_GPA + 0x100 * i, 16, VIRTQ_DESC_F_WRITE, 0);
        add_head(d, i);
    }
    assert_int_equal(get16(d, AVAIL_GPA + 2), 2);
    for (uint16_t i = 0; i < 4; i++) {
        assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
        assert_int_equal(d->elem.head, i);
        virtq_push(&d->q, d->elem.head, i + 1);
    }
    assert_int_equal(virtq_pop(&d->q, &d->elem), 0);
    assert_int_equal(d->q.last_avail_idx, 2);
    assert_int_equal(used_idx(d), 2);
    /* Slots are taken modulo the size: 65534 % 16 == 14, then 15, 0, 1. */
    assert_int_equal(used_id(d, 14), 0);
    assert_int_equal(used_id(d, 15), 1);
    assert_int_equal(used_id(d, 0), 2);
    assert_int_equal(used_len(d, 1), 4);
}

/* The longest legal direct chain uses every descriptor once. */
static void test_chain_of_queue_size(void **state)
{
    struct drv *d = *state;
    for (uint16_t i = 0; i < QSIZE; i++)
        set_desc(d, i, DATA_GPA + 0x10 * i, 8, i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
    add_head(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.out_count, QSIZE);
    assert_int_equal(d->elem.out_bytes, 8 * QSIZE);
}

/* Zero-length buffers are accepted, yield no iovec and their address is never looked at. */
static void test_zero_length_descriptor(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, 0xdead00000000ULL, 0, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA, 10, VIRTQ_DESC_F_NEXT, 2);
    set_desc(d, 2, 0xdead00000000ULL, 0, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.out_count, 1);
    assert_int_equal(d->elem.in_count, 0);
    assert_int_equal(d->elem.out_bytes, 10);
}

static void test_indirect_chain(void **state)
{
    struct drv *d = *state;
    /* Table order 0 -> 2 -> 1, so `next` is followed rather than the table order. */
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 12, VIRTQ_DESC_F_NEXT, 2);
    set_desc_at(d, IND_GPA, 2, DATA_GPA + 0x100, 20, VIRTQ_DESC_F_NEXT, 1);
    set_desc_at(d, IND_GPA, 1, DATA_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
    /* WRITE on the table descriptor itself must be ignored (2.7.5.3.2). */
    set_desc(d, 4, IND_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 4);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.head, 4);
    assert_int_equal(d->elem.out_count, 2);
    assert_int_equal(d->elem.in_count, 1);
    assert_int_equal(d->elem.out_bytes, 32);
    assert_int_equal(d->elem.in_bytes, 30);
    assert_ptr_equal(d->elem.iov[1].iov_base, gpa_ptr(d, DATA_GPA + 0x100, 20));
    assert_ptr_equal(d->elem.iov[2].iov_base, gpa_ptr(d, DATA_GPA + 0x200, 30));
}

/* Direct descriptors followed by one indirect descriptor (2.7.5.3.2). */
static void test_direct_then_indirect(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND_GPA, 0, DATA_GPA + 0x100, 40, VIRTQ_DESC_F_WRITE, 0);
    set_desc(d, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.out_count, 1);
    assert_int_equal(d->elem.in_count, 1);
    assert_int_equal(d->elem.in_bytes, 40);
}

static void test_indirect_max_segments(void **state)
{
    struct drv *d = *state;
    for (uint32_t i = 0; i < VIRTQ_MAX_SEGMENTS; i++)
        set_desc_at(d, IND_GPA, i, DATA_GPA + i, 1, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    set_desc_at(d, IND_GPA, VIRTQ_MAX_SEGMENTS - 1, DATA_GPA, 1, 0, 0);
    set_desc(d, 0, IND_GPA, 16 * VIRTQ_MAX_SEGMENTS, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.out_count, VIRTQ_MAX_SEGMENTS);
}

/* ---- Malformed chains: each returns < 0 and leaves the ring where it was. ---- */

static void test_addr_outside_ram(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, MEM_SIZE, 1, 0, 0);
    add_head(d, 0);
    expect_malformed(d, -EFAULT);
    set_desc(d, 0, 0xfffffffffffffff0ULL, 0x20, 0, 0); /* would wrap around 2^64 */
    expect_malformed(d, -EFAULT);
}

static void test_len_crosses_end_of_ram(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, MEM_SIZE - 8, 9, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 0);
    expect_malformed(d, -EFAULT);
    set_desc(d, 0, MEM_SIZE - 8, 8, VIRTQ_DESC_F_WRITE, 0); /* the last byte is fine */
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
}

/* RAM on both sides of a small hole: a buffer spanning it is refused. */
static void test_addr_crosses_hole(void **state)
{
    (void)state;
    struct drv *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    assert_int_equal(guest_mem_create(&d->mem, 2 * X86_MiB, X86_MiB, 4 * X86_MiB), 0);
    init_queue(d, false, false);
    set_desc(d, 0, X86_MiB - 16, 32, 0, 0);
    add_head(d, 0);
    expect_malformed(d, -EFAULT);
    set_desc(d, 0, 2 * X86_MiB, 16, 0, 0); /* inside the hole */
    expect_malformed(d, -EFAULT);
    set_desc(d, 0, 4 * X86_MiB, 16, 0, 0); /* above it: RAM */
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_ptr_equal(d->elem.iov[0].iov_base, d->mem.host + X86_MiB);
    guest_mem_destroy(&d->mem);
    free(d);
}

static void test_chain_loop(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
    add_head(d, 0);
    expect_malformed(d, -ELOOP);
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0); /* onto itself */
    expect_malformed(d, -ELOOP);
}

/* Zero-length descriptors make no segments, so only the visit bound stops this loop. */
static void test_zero_length_loop(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, 0, 0, VIRTQ_DESC_F_NEXT, 0);
    add_head(d, 0);
    expect_malformed(d, -ELOOP);
}

/* Every descriptor once and then back to the start: one longer than the queue. */
static void test_chain_longer_than_queue(void **state)
{
    struct drv *d = *state;
    for (uint16_t i = 0; i < QSIZE; i++)
        set_desc(d, i, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % QSIZE));
    add_head(d, 0);
    expect_malformed(d, -ELOOP);
}

static void test_next_out_of_range(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0xffff);
    expect_malformed(d, -EINVAL);
}

static void test_in_then_out(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA + 8, 8, 0, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
    set_desc(d, 1, DATA_GPA + 8, 0, 0, 0); /* even a zero-length readable one */
    expect_malformed(d, -EINVAL);
}

static void test_head_out_of_range(void **state)
{
    struct drv *d = *state;
    add_head(d, QSIZE);
    expect_malformed(d, -EINVAL);
}

static void test_avail_idx_jump(void **state)
{
    struct drv *d = *state;
    set_avail_idx(d, QSIZE + 1);
    expect_malformed(d, -EINVAL);
    set_avail_idx(d, 0xffff); /* "behind" is the same as far ahead */
    expect_malformed(d, -EINVAL);
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    set_avail_idx(d, QSIZE); /* exactly a full ring is legal; all slots are 0 */
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
}

static void test_indirect_not_negotiated(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 8, 0, 0);
    set_desc(d, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
}

static void test_nested_indirect(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND2_GPA, 0, DATA_GPA, 8, 0, 0);
    set_desc_at(d, IND_GPA, 0, IND2_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
    set_desc(d, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
}

static void test_indirect_bad_len(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 8, 0, 0);
    set_desc(d, 0, IND_GPA, 24, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
    set_desc(d, 0, IND_GPA, 0, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(d, -EINVAL);
    set_desc(d, 0, IND_GPA, 15, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(d, -EINVAL);
}

static void test_indirect_outside_ram(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -EFAULT);
    set_desc(d, 0, X86_PCI_HOLE_START, 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(d, -EFAULT);
}

static void test_indirect_with_next(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 8, 0, 0);
    set_desc(d, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
}

static void test_indirect_loop_and_range(void **state)
{
    struct drv *d = *state;
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
    set_desc_at(d, IND_GPA, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
    set_desc(d, 0, IND_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -ELOOP);
    set_desc_at(d, IND_GPA, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 2); /* past the table's end */
    expect_malformed(d, -EINVAL);
}

static void test_indirect_in_then_out(void **state)
{
    struct drv *d = *state;
    /* A writable direct buffer, then a table holding a readable one. */
    set_desc(d, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
    set_desc_at(d, IND_GPA, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    expect_malformed(d, -EINVAL);
}

static void test_too_many_segments(void **state)
{
    struct drv *d = *state;
    uint32_t n = VIRTQ_MAX_SEGMENTS + 1;
    for (uint32_t i = 0; i < n; i++)
        set_desc_at(d, IND_GPA, i, DATA_GPA + i, 1, i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
                    (uint16_t)(i + 1));
    set_desc(d, 0, IND_GPA, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
    add_head(d, 0);
    expect_malformed(d, -E2BIG);
}

/* More than 2^32 bytes in one chain: sparse 2 GiB of RAM, each buffer 2 GiB - 1. */
static void test_chain_over_4gib(void **state)
{
    (void)state;
    struct drv *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    assert_int_equal(guest_mem_create(&d->mem, 2 * X86_GiB, X86_PCI_HOLE_START,
                                      X86_HIGH_RAM_START), 0);
    init_queue(d, false, false);
    for (uint16_t i = 0; i < 3; i++)
        set_desc(d, i, 0, (uint32_t)(2 * X86_GiB - 1), i < 2 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
    add_head(d, 0);
    expect_malformed(d, -E2BIG);
    set_desc(d, 1, 0, (uint32_t)(2 * X86_GiB - 1), 0, 0); /* two of them fit */
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_int_equal(d->elem.out_bytes, 4 * X86_GiB - 2);
    guest_mem_destroy(&d->mem);
    free(d);
}

/* ---- virtq_init. ---- */

static void test_init_checks(void **state)
{
    struct drv *d = *state;
    struct virtq q;
    const struct guest_mem *m = &d->mem;
    assert_int_equal(virtq_init(&q, m, 16, 0x1008, AVAIL_GPA, USED_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, 0x2001, USED_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, 0x3002, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 0, DESC_GPA, AVAIL_GPA, USED_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 3, DESC_GPA, AVAIL_GPA, USED_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 12, DESC_GPA, AVAIL_GPA, USED_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 0xffff, DESC_GPA, AVAIL_GPA, USED_GPA, false, false),
                     -EINVAL);
    /* Each ring in turn reaching past the end of RAM (avail/used sizes include the event
     * fields: 6 + 2 * size and 6 + 8 * size). */
    assert_int_equal(virtq_init(&q, m, 16, MEM_SIZE - 0xf0, AVAIL_GPA, USED_GPA, false, false),
                     -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, MEM_SIZE - 36, USED_GPA, false, false),
                     -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, MEM_SIZE - 132, false, false),
                     -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, X86_HIGH_RAM_START, false, false),
                     -EINVAL);
    /* The exact fits, and the extreme sizes. */
    assert_int_equal(virtq_init(&q, m, 16, MEM_SIZE - 0x100, AVAIL_GPA, USED_GPA, false, false), 0);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, MEM_SIZE - 38, USED_GPA, false, false), 0);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, MEM_SIZE - 136, false, false), 0);
    assert_int_equal(virtq_init(&q, m, 1, DESC_GPA, AVAIL_GPA, USED_GPA, false, false), 0);
    assert_int_equal(virtq_init(&q, m, VIRTQ_MAX_SIZE, 0, 0x80000, 0x92000, true, true), 0);
    assert_int_equal(q.size, VIRTQ_MAX_SIZE);
    assert_int_equal(q.last_avail_idx, 0);
    assert_false(q.signalled_used_valid);
}

/* The used ring, which the device writes, overlapping what it reads: over the avail index
 * every push would announce a new chain and a drain would never end. Touching is fine, and
 * the two rings the device only reads may share memory. */
static void test_init_used_ring_overlap(void **state)
{
    struct drv *d = *state;
    struct virtq q;
    const struct guest_mem *m = &d->mem;
    const uint64_t used_bytes = 6 + 8 * 16;
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, AVAIL_GPA, false, false), -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, AVAIL_GPA - 4, false, false),
                     -EINVAL);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, AVAIL_GPA + 36, false, false),
                     -EINVAL); /* on the avail ring's last field, used_event */
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, DESC_GPA + 0xfc, false, false),
                     -EINVAL); /* over the last descriptor */
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, USED_GPA + 0x84, USED_GPA, true, false),
                     -EINVAL); /* the avail ring on the used ring's last field, avail_event */
    /* Touching is not overlapping; the rings the device only reads may share memory. */
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, AVAIL_GPA + 40, false, false), 0);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, AVAIL_GPA, AVAIL_GPA - used_bytes - 2, false,
                                false), 0);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, USED_GPA + 0x86, USED_GPA, true, false), 0);
    assert_int_equal(virtq_init(&q, m, 16, DESC_GPA, DESC_GPA + 0x80, USED_GPA, false, false), 0);
}

/* An index that goes back after virtq_enable_notify saw it move is a broken ring, not an
 * empty one: otherwise the device's drain loop (pop until empty, re-arm, pop again if more)
 * would spin on it for as long as the driver keeps it so. */
static void test_avail_idx_goes_back(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    virtq_disable_notify(&d->q);
    add_head(d, 0);
    assert_true(virtq_enable_notify(&d->q));
    set_avail_idx(d, 0); /* taken back */
    assert_int_equal(virtq_pop(&d->q, &d->elem), -EINVAL);
    /* Without an announcement an empty ring is simply empty, however often it is looked at. */
    init_queue(d, false, false);
    assert_false(virtq_enable_notify(&d->q));
    assert_int_equal(virtq_pop(&d->q, &d->elem), 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 0);
}

/* ---- Notifications. ---- */

static void push_n(struct drv *d, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        virtq_push(&d->q, 0, 0);
}

static void test_no_interrupt_flag(void **state)
{
    struct drv *d = *state;
    push_n(d, 1);
    assert_true(virtq_should_signal(&d->q));
    set_avail_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
    push_n(d, 1);
    assert_false(virtq_should_signal(&d->q));
    set_avail_flags(d, 0);
    assert_true(virtq_should_signal(&d->q));
}

static void test_event_idx_signal(void **state)
{
    struct drv *d = *state;
    /* Nothing signalled yet: no window to compare against, so signal. */
    set_used_event(d, 100);
    push_n(d, 1);
    assert_true(virtq_should_signal(&d->q)); /* window starts at used_idx 1 */
    /* used_event = 3: the driver wants a signal once used->idx passes 3, i.e. reaches 4. */
    set_used_event(d, 3);
    push_n(d, 2); /* used 3: not yet */
    assert_false(virtq_should_signal(&d->q));
    push_n(d, 1); /* used 4: 3 is in [3, 4) */
    assert_true(virtq_should_signal(&d->q));
    push_n(d, 1); /* used 5: already past, no new request */
    assert_false(virtq_should_signal(&d->q));
    assert_false(virtq_should_signal(&d->q)); /* nothing pushed at all */
    /* The window's left edge is inclusive: used_event == old. */
    set_used_event(d, 5);
    push_n(d, 1);
    assert_true(virtq_should_signal(&d->q));
    /* NO_INTERRUPT means nothing once event idx is negotiated. */
    set_avail_flags(d, VIRTQ_AVAIL_F_NO_INTERRUPT);
    set_used_event(d, 6);
    push_n(d, 1);
    assert_true(virtq_should_signal(&d->q));
}

static void test_event_idx_wrap(void **state)
{
    struct drv *d = *state;
    start_at(d, 65534);
    assert_true(virtq_should_signal(&d->q)); /* signalled_used = 65534 */
    set_used_event(d, 65535);
    push_n(d, 1); /* 65535 */
    assert_false(virtq_should_signal(&d->q));
    push_n(d, 1); /* 0: 65535 is in [65535, 0) modulo 2^16 */
    assert_true(virtq_should_signal(&d->q));
    set_used_event(d, 1);
    push_n(d, 3); /* 3: a window of several entries containing 1 */
    assert_true(virtq_should_signal(&d->q));
}

static void test_enable_notify(void **state)
{
    struct drv *d = *state;
    virtq_disable_notify(&d->q);
    assert_int_equal(used_flags(d), VIRTQ_USED_F_NO_NOTIFY);
    assert_false(virtq_enable_notify(&d->q));
    assert_int_equal(used_flags(d), 0);
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    assert_true(virtq_enable_notify(&d->q));
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_false(virtq_enable_notify(&d->q));
}

static void test_enable_notify_event_idx(void **state)
{
    struct drv *d = *state;
    start_at(d, 700);
    virtq_disable_notify(&d->q);
    assert_int_equal(used_flags(d), 0); /* with event idx flags are not used */
    assert_false(virtq_enable_notify(&d->q));
    assert_int_equal(avail_event(d), 700);
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    add_head(d, 0);
    assert_true(virtq_enable_notify(&d->q));
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_true(virtq_enable_notify(&d->q));
    assert_int_equal(avail_event(d), 701);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);
    assert_false(virtq_enable_notify(&d->q));
    assert_int_equal(avail_event(d), 702);
}

/* ---- virtq_drain. ---- */

/* The serve callback: pushes each chain and, as a hostile driver on another vCPU can, makes
 * it available again at once (repost), or stops after `stop_after` chains. */
struct drain_ctx {
    struct drv *d;
    unsigned served;
    bool repost;
    unsigned stop_after;
};

static bool drain_serve(void *opaque, struct virtq_elem *e)
{
    struct drain_ctx *ctx = opaque;
    ctx->served++;
    virtq_push(&ctx->d->q, e->head, 0);
    if (ctx->repost)
        add_head(ctx->d, e->head);
    return ctx->served != ctx->stop_after;
}

/* Three chains: all served, the ring is empty and notifications are armed again. */
static void test_drain_empties_ring(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    for (int i = 0; i < 3; i++)
        add_head(d, 0);
    struct drain_ctx ctx = {.d = d};
    unsigned served;
    assert_int_equal(virtq_drain(&d->q, &d->elem, drain_serve, &ctx, &served), 1);
    assert_int_equal(served, 3);
    assert_int_equal(used_idx(d), 3);
    assert_int_equal(used_flags(d), 0);
}

/* A driver that refills the ring as fast as it drains cannot hold the device: the drain stops
 * at the budget, says so, and leaves notifications off for the device's next turn. */
static void test_drain_budget(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    struct drain_ctx ctx = {.d = d, .repost = true};
    unsigned served;
    assert_int_equal(virtq_drain(&d->q, &d->elem, drain_serve, &ctx, &served), 0);
    assert_int_equal(served, VIRTQ_DRAIN_BUDGET);
    assert_int_equal(used_idx(d), VIRTQ_DRAIN_BUDGET);
    assert_int_equal(used_flags(d), VIRTQ_USED_F_NO_NOTIFY);
    ctx.repost = false;
    assert_int_equal(virtq_drain(&d->q, &d->elem, drain_serve, &ctx, &served), 1);
    assert_int_equal(served, 1); /* the last repost */
}

/* serve stops the drain: one chain taken, the rest left in the ring. */
static void test_drain_serve_stops(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    add_head(d, 0);
    struct drain_ctx ctx = {.d = d, .stop_after = 1};
    unsigned served;
    assert_int_equal(virtq_drain(&d->q, &d->elem, drain_serve, &ctx, &served), 1);
    assert_int_equal(served, 1);
    assert_int_equal(d->q.last_avail_idx, 1);
}

/* A malformed chain after good ones: its error, with the good ones counted. */
static void test_drain_error(void **state)
{
    struct drv *d = *state;
    set_desc(d, 0, DATA_GPA, 8, 0, 0);
    add_head(d, 0);
    add_head(d, QSIZE + 1);
    struct drain_ctx ctx = {.d = d};
    unsigned served;
    assert_true(virtq_drain(&d->q, &d->elem, drain_serve, &ctx, &served) < 0);
    assert_int_equal(served, 1);
}

/* ---- Copy helpers. ---- */

static void test_read_write_segments(void **state)
{
    struct drv *d = *state;
    uint8_t *data = gpa_ptr(d, DATA_GPA, 0x1000);
    for (unsigned i = 0; i < 0x100; i++)
        data[i] = (uint8_t)i;
    /* Readable 3 + 5 + 7 bytes from scattered places, writable 4 + 4. */
    set_desc(d, 0, DATA_GPA + 10, 3, VIRTQ_DESC_F_NEXT, 1);
    set_desc(d, 1, DATA_GPA + 50, 5, VIRTQ_DESC_F_NEXT, 2);
    set_desc(d, 2, DATA_GPA + 100, 7, VIRTQ_DESC_F_NEXT, 3);
    set_desc(d, 3, DATA_GPA + 0x200, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
    set_desc(d, 4, DATA_GPA + 0x300, 4, VIRTQ_DESC_F_WRITE, 0);
    add_head(d, 0);
    assert_int_equal(virtq_pop(&d->q, &d->elem), 1);

    uint8_t buf[32];
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(virtq_read(&d->elem, 2, buf, 8), 8);
    const uint8_t want[8] = {12, 50, 51, 52, 53, 54, 100, 101};
    assert_memory_equal(buf, want, 8);
    assert_int_equal(buf[8], 0xee);
    /* Past the end: a short count, then nothing. */
    assert_int_equal(virtq_read(&d->elem, 10, buf, sizeof(buf)), 5);
    assert_int_equal(buf[0], 102);
    assert_int_equal(buf[4], 106);
    assert_int_equal(virtq_read(&d->elem, 15, buf, 1), 0);
    assert_int_equal(virtq_read(&d->elem, 1000, buf, 1), 0);

    const uint8_t src[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(virtq_write(&d->elem, 3, src, 4), 4);
    assert_int_equal(data[0x203], 1);
    const uint8_t want_w[3] = {2, 3, 4};
    assert_memory_equal(data + 0x300, want_w, 3);
    assert_int_equal(data[0x303], 0);
    assert_int_equal(virtq_write(&d->elem, 6, src, 6), 2);
    assert_int_equal(virtq_write(&d->elem, 8, src, 6), 0);
    /* The readable buffers are never written. */
    assert_int_equal(data[10], 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_out_in_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_publishes_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_of_queue_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_chain, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_direct_then_indirect, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_max_segments, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_addr_outside_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_len_crosses_end_of_ram, setup, teardown),
        cmocka_unit_test(test_addr_crosses_hole),
        cmocka_unit_test_setup_teardown(test_chain_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_longer_than_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_then_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_goes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_used_ring_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_indirect, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_bad_len, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_outside_ram, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_with_next, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_loop_and_range, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_in_then_out, setup_indirect, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_segments, setup_indirect, teardown),
        cmocka_unit_test(test_chain_over_4gib),
        cmocka_unit_test_setup_teardown(test_init_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx_signal, setup_event_idx, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx_wrap, setup_event_idx, teardown),
        cmocka_unit_test_setup_teardown(test_enable_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_notify_event_idx, setup_event_idx, teardown),
        cmocka_unit_test_setup_teardown(test_drain_empties_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_serve_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_segments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
