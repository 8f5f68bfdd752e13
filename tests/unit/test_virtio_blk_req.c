/*
 * virtio-blk request parsing: well-formed requests become the right block_op with data slices
 * that exclude header and status; every malformation gets its status without a byte of guest
 * memory changing before virtio_blk_finish() writes the status.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/blk_req.h"

#define CAPACITY 2048 /* sectors: a 1 MiB disk */
#define CANARY 0xa5
#define STATUS_CANARY 0xcc

/* "Guest memory" for one request: every buffer a test hands out lives in here. */
struct guest {
    uint8_t mem[256 * 1024];
    size_t used;
    struct virtq_elem elem;
    struct virtio_blk_request req;
    struct virtio_blk_disk disk;
};

static int setup(void **state)
{
    struct guest *g = calloc(1, sizeof(*g));
    memset(g->mem, CANARY, sizeof(g->mem));
    g->disk.capacity = CAPACITY;
    g->disk.features = virtio_blk_features(false);
    memcpy(g->disk.serial, "cove-disk-0123456789", VIRTIO_BLK_ID_BYTES);
    *state = g;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static uint8_t *alloc(struct guest *g, size_t len)
{
    assert_true(g->used + len <= sizeof(g->mem));
    uint8_t *p = g->mem + g->used;
    g->used += len;
    return p;
}

static uint8_t *add(struct guest *g, size_t len, bool writable)
{
    struct virtq_elem *e = &g->elem;
    if (!writable)
        assert_int_equal(e->in_count, 0); /* readable buffers come first */
    uint8_t *p = alloc(g, len);
    e->iov[e->out_count + e->in_count] = (struct iovec){p, len};
    if (writable) {
        e->in_count++;
        e->in_bytes += len;
    } else {
        e->out_count++;
        e->out_bytes += len;
    }
    return p;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static void fill_header(uint8_t *h, uint32_t type, uint64_t sector)
{
    put_le32(h, type);
    put_le32(h + 4, 0);
    put_le64(h + 8, sector);
}

/* A readable header in one buffer. */
static void add_header(struct guest *g, uint32_t type, uint64_t sector)
{
    fill_header(add(g, VIRTIO_BLK_HEADER_SIZE, false), type, sector);
}

static void add_segment(struct guest *g, uint64_t sector, uint32_t sectors, uint32_t flags)
{
    uint8_t *s = add(g, VIRTIO_BLK_SEGMENT_SIZE, false);
    put_le64(s, sector);
    put_le32(s + 8, sectors);
    put_le32(s + 12, flags);
}

static uint8_t *add_status(struct guest *g)
{
    uint8_t *s = add(g, 1, true);
    *s = STATUS_CANARY;
    return s;
}

static int parse(struct guest *g)
{
    return virtio_blk_parse(&g->elem, &g->disk, &g->req);
}

/* Nothing in guest memory differs from what the test wrote. */
static void assert_untouched(struct guest *g, const uint8_t *copy)
{
    assert_memory_equal(g->mem, copy, sizeof(g->mem));
}

/*
 * The request in g must be refused with `want` and no write to guest memory, then
 * virtio_blk_finish() writes exactly the status byte (when there is one).
 */
static void expect_refused(struct guest *g, int want)
{
    uint8_t *copy = malloc(sizeof(g->mem));
    memcpy(copy, g->mem, sizeof(g->mem));
    int rc = parse(g);
    if (rc != want)
        fail_msg("status %d, expected %d", rc, want);
    assert_untouched(g, copy);
    uint32_t used = virtio_blk_finish(&g->req, (uint8_t)rc);
    if (g->req.status) {
        assert_int_equal(*g->req.status, want);
        *g->req.status = copy[g->req.status - g->mem];
        assert_true(used <= 1);
    } else {
        assert_int_equal(used, 0);
    }
    assert_untouched(g, copy);
    free(copy);
}

static void assert_iov(const struct iovec *v, const void *base, size_t len)
{
    assert_ptr_equal(v->iov_base, base);
    assert_int_equal(v->iov_len, len);
}

/* ---- well-formed requests ---- */

static void test_in(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 100);
    uint8_t *d1 = add(g, 1024, true);
    uint8_t *d2 = add(g, 3072, true);
    uint8_t *status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_READ);
    assert_int_equal(g->req.op.offset, 100 * 512);
    assert_int_equal(g->req.op.iovcnt, 2);
    assert_ptr_equal(g->req.op.iov, g->req.iov);
    assert_iov(&g->req.op.iov[0], d1, 1024);
    assert_iov(&g->req.op.iov[1], d2, 3072);
    assert_ptr_equal(g->req.status, status);
    assert_int_equal(*status, STATUS_CANARY);
    assert_int_equal(virtio_blk_complete(&g->req, 4096), 4097);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

static void test_out(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_OUT, 8);
    uint8_t *d1 = add(g, 512, false);
    uint8_t *d2 = add(g, 1536, false);
    uint8_t *status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_WRITE);
    assert_int_equal(g->req.op.flags, 0);
    assert_int_equal(g->req.op.offset, 8 * 512);
    assert_int_equal(g->req.op.iovcnt, 2);
    assert_iov(&g->req.op.iov[0], d1, 512);
    assert_iov(&g->req.op.iov[1], d2, 1536);
    assert_int_equal(virtio_blk_complete(&g->req, 2048), 1);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

/* A driver that did not take FLUSH is promised durable writes: FUA. */
static void test_out_without_flush_feature_is_fua(void **state)
{
    struct guest *g = *state;
    g->disk.features &= ~(UINT64_C(1) << VIRTIO_BLK_F_FLUSH);
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 512, false);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.flags, BLOCK_OP_F_FUA);
}

static void test_flush(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_FLUSH, 0);
    uint8_t *status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_FLUSH);
    assert_int_equal(virtio_blk_complete(&g->req, 0), 1);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

static void test_get_id(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_GET_ID, 0);
    uint8_t *id = add(g, VIRTIO_BLK_ID_BYTES, true);
    uint8_t *status = add_status(g);
    int rc = parse(g);
    assert_int_equal(rc, VIRTIO_BLK_S_OK);
    assert_memory_equal(id, "cove-disk-0123456789", VIRTIO_BLK_ID_BYTES);
    assert_int_equal(virtio_blk_finish(&g->req, (uint8_t)rc), VIRTIO_BLK_ID_BYTES + 1);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

static void test_get_id_short_serial_and_buffers(void **state)
{
    struct guest *g = *state;
    memset(g->disk.serial, 0, sizeof(g->disk.serial));
    memcpy(g->disk.serial, "abc", 3);
    add_header(g, VIRTIO_BLK_T_GET_ID, 0);
    uint8_t *id = add(g, 32, true); /* larger than 20: only 20 are filled */
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_S_OK);
    assert_memory_equal(id, "abc\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", VIRTIO_BLK_ID_BYTES);
    for (int i = VIRTIO_BLK_ID_BYTES; i < 32; i++)
        assert_int_equal(id[i], CANARY);
    /* The status does not follow the filled bytes, so only they count. */
    assert_int_equal(virtio_blk_finish(&g->req, VIRTIO_BLK_S_OK), VIRTIO_BLK_ID_BYTES);

    /* A smaller buffer gets what fits. */
    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_GET_ID, 0);
    uint8_t *small = add(g, 2, true);
    uint8_t *tail = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_S_OK);
    assert_memory_equal(small, "ab", 2);
    assert_int_equal(*tail, STATUS_CANARY);
    assert_int_equal(virtio_blk_finish(&g->req, VIRTIO_BLK_S_OK), 3);
}

static void test_discard(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 64, 128, 0);
    uint8_t *status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_DISCARD);
    assert_int_equal(g->req.op.offset, 64 * 512);
    assert_int_equal(g->req.op.len, 128 * 512);
    assert_int_equal(g->req.op.iovcnt, 0);
    assert_int_equal(g->req.op.flags, 0);
    assert_int_equal(virtio_blk_complete(&g->req, 0), 1);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

static void test_write_zeroes(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add_segment(g, 2000, 48, VIRTIO_BLK_WZ_UNMAP); /* ends exactly at the capacity */
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_WRITE_ZEROES);
    assert_int_equal(g->req.op.offset, 2000 * 512);
    assert_int_equal(g->req.op.len, 48 * 512);
    assert_int_equal(g->req.op.flags, BLOCK_OP_F_MAY_UNMAP);

    memset(&g->elem, 0, sizeof(g->elem));
    g->disk.features &= ~(UINT64_C(1) << VIRTIO_BLK_F_FLUSH);
    add_header(g, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add_segment(g, 0, 8, 0);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.flags, BLOCK_OP_F_FUA);
}

/* ---- layouts the spec allows ---- */

static void test_header_split_across_buffers(void **state)
{
    struct guest *g = *state;
    uint8_t h[VIRTIO_BLK_HEADER_SIZE];
    fill_header(h, VIRTIO_BLK_T_IN, 0x0102030405ull);
    uint8_t *a = add(g, 7, false), *b = add(g, 9, false);
    memcpy(a, h, 7);
    memcpy(b, h + 7, 9);
    g->disk.capacity = UINT64_C(1) << 40;
    uint8_t *data = add(g, 512, true);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.kind, BLOCK_OP_READ);
    assert_int_equal(g->req.op.offset, 0x0102030405ull * 512);
    assert_iov(&g->req.op.iov[0], data, 512);
}

static void test_header_and_data_share_a_buffer(void **state)
{
    struct guest *g = *state;
    uint8_t *buf = add(g, VIRTIO_BLK_HEADER_SIZE + 1024, false);
    fill_header(buf, VIRTIO_BLK_T_OUT, 4);
    uint8_t *more = add(g, 512, false);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.iovcnt, 2);
    assert_iov(&g->req.op.iov[0], buf + VIRTIO_BLK_HEADER_SIZE, 1024);
    assert_iov(&g->req.op.iov[1], more, 512);
}

static void test_data_and_status_share_a_buffer(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    uint8_t *first = add(g, 512, true);
    uint8_t *buf = add(g, 1024 + 1, true);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.iovcnt, 2);
    assert_iov(&g->req.op.iov[0], first, 512);
    assert_iov(&g->req.op.iov[1], buf, 1024);
    assert_ptr_equal(g->req.status, buf + 1024);
    assert_int_equal(virtio_blk_complete(&g->req, 1536), 1537);
    assert_int_equal(buf[1024], VIRTIO_BLK_S_OK);
}

/* Empty buffers, even after the status byte, are ignored. */
static void test_empty_buffers_are_ignored(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    add(g, 0, false);
    uint8_t *data = add(g, 512, true);
    add(g, 0, true);
    uint8_t *status = add_status(g);
    add(g, 0, true);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.iovcnt, 1);
    assert_iov(&g->req.op.iov[0], data, 512);
    assert_ptr_equal(g->req.status, status);
}

static void test_zero_length_read_completes_at_once(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, CAPACITY);
    uint8_t *status = add_status(g);
    int rc = parse(g);
    assert_int_equal(rc, VIRTIO_BLK_S_OK);
    assert_int_equal(virtio_blk_finish(&g->req, (uint8_t)rc), 1);
    assert_int_equal(*status, VIRTIO_BLK_S_OK);
}

static void test_last_sector(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, CAPACITY - 1);
    add(g, 512, true);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
}

static void test_max_segments(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    for (int i = 0; i < VIRTIO_BLK_SEG_MAX; i++)
        add(g, 512, true);
    add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(g->req.op.iovcnt, VIRTIO_BLK_SEG_MAX);
}

/* ---- completion ---- */

static void test_completion_errors(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    add(g, 1024, true);
    uint8_t *status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    /* A failed read filled nothing the driver may use: only the status is written. */
    assert_int_equal(virtio_blk_complete(&g->req, -EIO), 0);
    assert_int_equal(*status, VIRTIO_BLK_S_IOERR);
    *status = STATUS_CANARY;
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(virtio_blk_complete(&g->req, 512), 0); /* short */
    assert_int_equal(*status, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 512, false);
    status = add_status(g);
    assert_int_equal(parse(g), VIRTIO_BLK_SUBMIT);
    assert_int_equal(virtio_blk_complete(&g->req, -ENOSPC), 1);
    assert_int_equal(*status, VIRTIO_BLK_S_IOERR);
}

/* ---- malformations ---- */

static void test_short_header(void **state)
{
    struct guest *g = *state;
    uint8_t h[VIRTIO_BLK_HEADER_SIZE];
    fill_header(h, VIRTIO_BLK_T_IN, 0);
    memcpy(add(g, 15, false), h, 15);
    add(g, 512, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_no_header(void **state)
{
    struct guest *g = *state;
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_no_status_byte(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 512, false);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
    assert_null(g->req.status);
}

static void test_zero_writable_bytes(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_FLUSH, 0);
    add(g, 0, true);
    add(g, 0, true);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
    assert_null(g->req.status);
}

static void test_data_not_a_multiple_of_512(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    add(g, 1000, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 100, false);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_sector_beyond_end(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, CAPACITY);
    add(g, 512, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_OUT, CAPACITY - 1); /* starts inside, ends outside */
    add(g, 1024, false);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_sector_overflow(void **state)
{
    struct guest *g = *state;
    /* sector * 512 wraps to 0, and sector + 1 wraps too: neither may pass. */
    const uint64_t sectors[] = {UINT64_MAX / 512 + 1, UINT64_MAX, UINT64_MAX - 1,
                                (UINT64_C(1) << 55) | 1};
    g->disk.capacity = UINT64_MAX; /* even a disk claiming everything */
    for (size_t i = 0; i < sizeof(sectors) / sizeof(sectors[0]); i++) {
        memset(&g->elem, 0, sizeof(g->elem));
        add_header(g, VIRTIO_BLK_T_IN, sectors[i]);
        add(g, 1024, true);
        add_status(g);
        expect_refused(g, VIRTIO_BLK_S_IOERR);
    }
}

static void test_read_only_write(void **state)
{
    struct guest *g = *state;
    g->disk.read_only = true;
    g->disk.features = virtio_blk_features(true);
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 512, false);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

/* Not offered on a read-only disk, so UNSUPP; if a caller offered them anyway, IOERR. */
static void test_read_only_discard_and_zeroes(void **state)
{
    struct guest *g = *state;
    g->disk.read_only = true;
    g->disk.features = virtio_blk_features(true);
    const uint32_t types[] = {VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES};
    for (int i = 0; i < 2; i++) {
        memset(&g->elem, 0, sizeof(g->elem));
        add_header(g, types[i], 0);
        add_segment(g, 0, 8, 0);
        add_status(g);
        expect_refused(g, VIRTIO_BLK_S_UNSUPP);
    }
    g->disk.features |= UINT64_C(1) << VIRTIO_BLK_F_DISCARD | UINT64_C(1) << VIRTIO_BLK_F_WRITE_ZEROES;
    for (int i = 0; i < 2; i++) {
        memset(&g->elem, 0, sizeof(g->elem));
        add_header(g, types[i], 0);
        add_segment(g, 0, 8, 0);
        add_status(g);
        expect_refused(g, VIRTIO_BLK_S_IOERR);
    }
}

static void test_writable_data_for_out(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_OUT, 0);
    add(g, 512, false);
    add(g, 512, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_readable_data_for_in(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    add(g, 512, false);
    add(g, 512, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_data_for_flush(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_FLUSH, 0);
    add(g, 512, false);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_readable_data_for_get_id(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_GET_ID, 0);
    add(g, 4, false);
    add(g, 20, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_too_many_segments(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    for (int i = 0; i < VIRTIO_BLK_SEG_MAX + 1; i++)
        add(g, 512, true);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

/* A chain the queue would never produce: the parser does not trust the counts. */
static void test_counts_beyond_the_array(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    add_status(g);
    g->elem.in_count = VIRTQ_MAX_SEGMENTS;
    expect_refused(g, VIRTIO_BLK_S_IOERR);
    assert_null(g->req.status);
}

static void test_too_large(void **state)
{
    struct guest *g = *state;
    g->disk.capacity = UINT64_C(1) << 40;
    add_header(g, VIRTIO_BLK_T_IN, 0);
    /* Never dereferenced: the parser refuses on length alone. */
    uint8_t *p = alloc(g, 512);
    g->elem.iov[g->elem.out_count + g->elem.in_count++] =
        (struct iovec){p, (size_t)VIRTIO_BLK_MAX_DATA + 512};
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_unknown_types(void **state)
{
    struct guest *g = *state;
    const uint32_t types[] = {2, 3, 5, 10, 12, 14, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        memset(&g->elem, 0, sizeof(g->elem));
        add_header(g, types[i], 0);
        add_status(g);
        expect_refused(g, VIRTIO_BLK_S_UNSUPP);
    }
}

static void test_discard_two_segments(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 0, 8, 0);
    add_segment(g, 16, 8, 0);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_UNSUPP);
}

static void test_discard_bad_segment_sizes(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0); /* no segment */
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add(g, 20, false); /* a segment and a bit */
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 0, 8, 0);
    add(g, 1, true); /* writable data before the status */
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_discard_beyond_end(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, CAPACITY - 8, 16, 0);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add_segment(g, UINT64_MAX, 1, 0);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_discard_flags(void **state)
{
    struct guest *g = *state;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 0, 8, VIRTIO_BLK_WZ_UNMAP); /* unmap is for write-zeroes only */
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_UNSUPP);

    memset(&g->elem, 0, sizeof(g->elem));
    add_header(g, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    add_segment(g, 0, 8, 2); /* a reserved flag */
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_UNSUPP);
}

static void test_discard_over_limit(void **state)
{
    struct guest *g = *state;
    g->disk.capacity = UINT64_C(1) << 40;
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_IOERR);
}

static void test_discard_not_negotiated(void **state)
{
    struct guest *g = *state;
    g->disk.features &= ~(UINT64_C(1) << VIRTIO_BLK_F_DISCARD);
    add_header(g, VIRTIO_BLK_T_DISCARD, 0);
    add_segment(g, 0, 8, 0);
    add_status(g);
    expect_refused(g, VIRTIO_BLK_S_UNSUPP);
}

/* ---- features and config space ---- */

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_features(void **state)
{
    (void)state;
    uint64_t rw = virtio_blk_features(false), ro = virtio_blk_features(true);
    const uint64_t base = UINT64_C(1) << VIRTIO_BLK_F_SEG_MAX |
                          UINT64_C(1) << VIRTIO_BLK_F_BLK_SIZE | UINT64_C(1) << VIRTIO_BLK_F_FLUSH;
    assert_int_equal(rw, base | UINT64_C(1) << VIRTIO_BLK_F_DISCARD |
                             UINT64_C(1) << VIRTIO_BLK_F_WRITE_ZEROES);
    assert_int_equal(ro, base | UINT64_C(1) << VIRTIO_BLK_F_RO);
    assert_false(rw & (UINT64_C(1) << VIRTIO_BLK_F_SIZE_MAX));
}

static void test_config(void **state)
{
    (void)state;
    uint8_t c[VIRTIO_BLK_CONFIG_SIZE];
    memset(c, 0xff, sizeof(c));
    virtio_blk_config(UINT64_C(0x123456789a), c);
    assert_int_equal(le32_at(c), 0x3456789a);
    assert_int_equal(le32_at(c + 4), 0x12);
    assert_int_equal(le32_at(c + 8), 0);   /* size_max */
    assert_int_equal(le32_at(c + 12), 254); /* seg_max */
    assert_int_equal(le32_at(c + 16), 0);  /* geometry */
    assert_int_equal(le32_at(c + 20), 512);
    for (int i = 24; i < 36; i++)          /* topology, writeback, unused0, num_queues */
        assert_int_equal(c[i], 0);
    assert_int_equal(le32_at(c + 36), VIRTIO_BLK_MAX_DISCARD_SECTORS);
    assert_int_equal(le32_at(c + 40), 1);
    assert_int_equal(le32_at(c + 44), VIRTIO_BLK_DISCARD_ALIGNMENT);
    assert_int_equal(le32_at(c + 48), VIRTIO_BLK_MAX_WRITE_ZEROES_SECTORS);
    assert_int_equal(le32_at(c + 52), 1);
    assert_int_equal(c[56], 1);
    assert_int_equal(c[57] | c[58] | c[59], 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_in),
        T(test_out),
        T(test_out_without_flush_feature_is_fua),
        T(test_flush),
        T(test_get_id),
        T(test_get_id_short_serial_and_buffers),
        T(test_discard),
        T(test_write_zeroes),
        T(test_header_split_across_buffers),
        T(test_header_and_data_share_a_buffer),
        T(test_data_and_status_share_a_buffer),
        T(test_empty_buffers_are_ignored),
        T(test_zero_length_read_completes_at_once),
        T(test_last_sector),
        T(test_max_segments),
        T(test_completion_errors),
        T(test_short_header),
        T(test_no_header),
        T(test_no_status_byte),
        T(test_zero_writable_bytes),
        T(test_data_not_a_multiple_of_512),
        T(test_sector_beyond_end),
        T(test_sector_overflow),
        T(test_read_only_write),
        T(test_read_only_discard_and_zeroes),
        T(test_writable_data_for_out),
        T(test_readable_data_for_in),
        T(test_data_for_flush),
        T(test_readable_data_for_get_id),
        T(test_too_many_segments),
        T(test_counts_beyond_the_array),
        T(test_too_large),
        T(test_unknown_types),
        T(test_discard_two_segments),
        T(test_discard_bad_segment_sizes),
        T(test_discard_beyond_end),
        T(test_discard_flags),
        T(test_discard_over_limit),
        T(test_discard_not_negotiated),
        T(test_features),
        T(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
