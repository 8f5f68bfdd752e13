/*
 * virtio-fs: the identity and configuration space, FUSE requests served from both queues with
 * replies (and READ data) written straight into the chain's writable buffers, nothing used
 * before DRIVER_OK, and a malformed ring that asks for a reset, after which the FUSE session
 * starts over.
 *
 * The test plays the driver (rings in fake guest RAM, fake_driver.h) and the transport.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "virtio/fs.h"

#define MEM_SIZE (4 * X86_MiB)
#define QSIZE 16
#define HIPRIO 0
#define REQUEST 1
#define RING_GPA(q) (0x1000ULL + 0x3000ULL * (q))
#define DATA_GPA 0x10000ULL
#define OUTSIDE_RAM 0x40000000ULL
#define TAG "hostshare"

struct bench {
    char dir[64];
    struct guest_mem mem;
    struct virtio_device *dev;
    struct virtq queues[2];
    bool enabled[2];
    struct fake_ring rings[2];
    struct fake_transport t;
    uint64_t next_data;
    uint64_t unique;
};

static void enable_queues(struct bench *b)
{
    for (unsigned q = 0; q < 2; q++) {
        fake_ring_init(&b->rings[q], &b->mem, QSIZE, RING_GPA(q));
        assert_int_equal(virtq_init(&b->queues[q], &b->mem, QSIZE, b->rings[q].desc,
                                    b->rings[q].avail, b->rings[q].used, false, false), 0);
        b->enabled[q] = true;
    }
}

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->dir, "/tmp/cove-vfs-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/file", b->dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->next_data = DATA_GPA;
    struct fuse_server *srv;
    struct fuse_server_options o = {0};
    assert_int_equal(fuse_server_new(b->dir, &o, &srv), 0);
    b->dev = virtio_fs_new(TAG, srv);
    assert_non_null(b->dev);
    enable_queues(b);
    b->dev->queues = b->queues;
    b->dev->queue_enabled = b->enabled;
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
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    assert_int_equal(system(cmd), 0);
    free(b);
    return 0;
}

/* ---- The driver. ---- */

static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    uint64_t gpa = b->next_data;
    memset(fake_ptr(&b->mem, gpa, len + 16), 0, len);
    memset(fake_ptr(&b->mem, gpa + len, 16), 0xaa, 16);
    b->next_data = (gpa + len + 16 + 15) & ~15ULL;
    return gpa;
}

/* A readable buffer holding a FUSE request (header + args). */
static struct fake_buf request(struct bench *b, uint32_t opcode, uint64_t nodeid,
                               const void *args, uint32_t len)
{
    struct fuse_in_header h = {.len = (uint32_t)sizeof(h) + len, .opcode = opcode,
                               .unique = ++b->unique, .nodeid = nodeid};
    uint64_t gpa = alloc_buf(b, h.len);
    memcpy(fake_ptr(&b->mem, gpa, sizeof(h)), &h, sizeof(h));
    if (len)
        memcpy(fake_ptr(&b->mem, gpa + sizeof(h), len), args, len);
    return (struct fake_buf){gpa, h.len, false};
}

static struct fake_buf reply_buf(struct bench *b, uint32_t len)
{
    return (struct fake_buf){alloc_buf(b, len), len, true};
}

static void kick(struct bench *b, unsigned q) { b->dev->ops->queue_notify(b->dev, q); }
static void activate(struct bench *b) { b->dev->ops->activate(b->dev); }

static struct fuse_out_header out_header(struct bench *b, const struct fake_buf *buf)
{
    struct fuse_out_header oh;
    memcpy(&oh, fake_ptr(&b->mem, buf->gpa, sizeof(oh)), sizeof(oh));
    return oh;
}

static bool canary_intact(struct bench *b, const struct fake_buf *buf)
{
    const uint8_t *p = fake_ptr(&b->mem, buf->gpa + buf->len, 16);
    for (int i = 0; i < 16; i++)
        if (p[i] != 0xaa)
            return false;
    return true;
}

/* INIT on the request queue; returns the used length. */
static uint32_t send_init(struct bench *b)
{
    struct fuse_init_in in = {.major = 7, .minor = FUSE_KERNEL_MINOR_VERSION};
    struct fake_buf bufs[3] = {request(b, FUSE_INIT, 0, &in, sizeof(in)), reply_buf(b, 16),
                               reply_buf(b, sizeof(struct fuse_init_out))};
    fake_post(&b->rings[REQUEST], bufs, 3);
    kick(b, REQUEST);
    struct fake_ring *r = &b->rings[REQUEST];
    uint16_t slot = (uint16_t)(fake_used_idx(r) - 1);
    assert_int_equal(out_header(b, &bufs[1]).error, 0);
    return fake_used_len(r, slot);
}

static uint64_t lookup_file(struct bench *b, int *err)
{
    struct fake_buf bufs[2] = {request(b, FUSE_LOOKUP, FUSE_ROOT_ID, "file", 5),
                               reply_buf(b, 16 + sizeof(struct fuse_entry_out))};
    fake_post(&b->rings[REQUEST], bufs, 2);
    kick(b, REQUEST);
    *err = out_header(b, &bufs[1]).error;
    struct fuse_entry_out e;
    memcpy(&e, fake_ptr(&b->mem, bufs[1].gpa + 16, sizeof(e)), sizeof(e));
    return e.nodeid;
}

static uint64_t open_file(struct bench *b, uint64_t node, uint32_t flags)
{
    struct fuse_open_in oi = {.flags = flags};
    struct fake_buf bufs[2] = {request(b, FUSE_OPEN, node, &oi, sizeof(oi)),
                               reply_buf(b, 16 + sizeof(struct fuse_open_out))};
    fake_post(&b->rings[REQUEST], bufs, 2);
    kick(b, REQUEST);
    assert_int_equal(out_header(b, &bufs[1]).error, 0);
    struct fuse_open_out oo;
    memcpy(&oo, fake_ptr(&b->mem, bufs[1].gpa + 16, sizeof(oo)), sizeof(oo));
    return oo.fh;
}

/* ---- Tests. ---- */

static void test_identity_and_config(void **state)
{
    struct bench *b = *state;
    assert_int_equal(b->dev->device_id, VIRTIO_ID_FS);
    assert_int_equal(b->dev->num_queues, 2);
    assert_int_equal(b->dev->device_features, 0);
    assert_int_equal(b->dev->config_size, 40);
    uint8_t cfg[40];
    for (unsigned off = 0; off < 40; off += 4)
        b->dev->ops->config_read(b->dev, off, cfg + off, 4);
    assert_memory_equal(cfg, TAG, sizeof(TAG));
    for (size_t i = sizeof(TAG); i < 36; i++)
        assert_int_equal(cfg[i], 0);
    uint32_t nq;
    memcpy(&nq, cfg + 36, 4);
    assert_int_equal(le32toh(nq), 1);
    uint16_t qmax = b->dev->queue_max_size;
    assert_true(qmax > 0 && (qmax & (qmax - 1)) == 0);

    struct fuse_server *srv;
    struct fuse_server_options o = {0};
    assert_int_equal(fuse_server_new(b->dir, &o, &srv), 0);
    assert_null(virtio_fs_new("", srv));
    assert_null(virtio_fs_new("0123456789012345678901234567890123456", srv)); /* 37 */
    struct virtio_device *d = virtio_fs_new("012345678901234567890123456789012345", srv);
    assert_non_null(d); /* 36: fills the field, no NUL */
    d->ops->destroy(d);
}

/* INIT, LOOKUP and a READ whose data lands in two writable descriptors. */
static void test_requests(void **state)
{
    struct bench *b = *state;
    activate(b);
    assert_int_equal(send_init(b), 16 + sizeof(struct fuse_init_out));
    int err;
    uint64_t node = lookup_file(b, &err);
    assert_int_equal(err, 0);

    uint64_t fh = open_file(b, node, O_RDONLY);

    struct fuse_read_in ri = {.fh = fh, .offset = 2, .size = 100};
    struct fake_buf rd[3] = {request(b, FUSE_READ, node, &ri, sizeof(ri)), reply_buf(b, 20),
                             reply_buf(b, 100)};
    uint16_t head = fake_post(&b->rings[REQUEST], rd, 3);
    kick(b, REQUEST);
    struct fake_ring *r = &b->rings[REQUEST];
    uint16_t slot = (uint16_t)(fake_used_idx(r) - 1);
    assert_int_equal(fake_used_id(r, slot), head);
    assert_int_equal(fake_used_len(r, slot), 16 + 8);
    assert_int_equal(out_header(b, &rd[1]).len, 24);
    assert_memory_equal(fake_ptr(&b->mem, rd[1].gpa + 16, 4), "2345", 4);
    assert_memory_equal(fake_ptr(&b->mem, rd[2].gpa, 4), "6789", 4);
    assert_true(canary_intact(b, &rd[1]) && canary_intact(b, &rd[2]));
    assert_true(b->t.signals[REQUEST] >= 4);
    assert_int_equal(b->t.needs_reset, 0);
}

/* FORGET on the hiprio queue: used with nothing written, and the inode is gone. */
static void test_hiprio_forget(void **state)
{
    struct bench *b = *state;
    activate(b);
    send_init(b);
    int err;
    uint64_t node = lookup_file(b, &err);
    struct fuse_forget_in fi = {.nlookup = 1};
    struct fake_buf fb = request(b, FUSE_FORGET, node, &fi, sizeof(fi));
    fake_post(&b->rings[HIPRIO], &fb, 1);
    kick(b, HIPRIO);
    assert_int_equal(fake_used_idx(&b->rings[HIPRIO]), 1);
    assert_int_equal(fake_used_len(&b->rings[HIPRIO], 0), 0);
    assert_int_equal(b->t.signals[HIPRIO], 1);

    struct fuse_getattr_in gi = {0};
    struct fake_buf ga[2] = {request(b, FUSE_GETATTR, node, &gi, sizeof(gi)),
                             reply_buf(b, 16 + sizeof(struct fuse_attr_out))};
    fake_post(&b->rings[REQUEST], ga, 2);
    kick(b, REQUEST);
    assert_int_equal(out_header(b, &ga[1]).error, -ESTALE);
}

/* A chain without room for a reply header is returned with nothing written. */
static void test_no_reply_space(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct fuse_init_in in = {.major = 7, .minor = 38};
    struct fake_buf buf = request(b, FUSE_INIT, 0, &in, sizeof(in));
    fake_post(&b->rings[REQUEST], &buf, 1);
    kick(b, REQUEST);
    assert_int_equal(fake_used_idx(&b->rings[REQUEST]), 1);
    assert_int_equal(fake_used_len(&b->rings[REQUEST], 0), 0);
    assert_int_equal(b->t.needs_reset, 0);
}

static void test_waits_for_activate(void **state)
{
    struct bench *b = *state;
    struct fuse_init_in in = {.major = 7, .minor = 38};
    struct fake_buf bufs[2] = {request(b, FUSE_INIT, 0, &in, sizeof(in)),
                               reply_buf(b, 16 + sizeof(struct fuse_init_out))};
    fake_post(&b->rings[REQUEST], bufs, 2);
    kick(b, REQUEST);
    assert_int_equal(fake_used_idx(&b->rings[REQUEST]), 0);
    activate(b);
    assert_int_equal(fake_used_idx(&b->rings[REQUEST]), 1);
    assert_int_equal(fake_used_len(&b->rings[REQUEST], 0), 16 + sizeof(struct fuse_init_out));
}

/* A buffer outside RAM: reset requested, nothing used; after the reset the FUSE session starts
 * over (requests before INIT fail) and the device works again. */
static void test_malformed_needs_reset(void **state)
{
    struct bench *b = *state;
    activate(b);
    send_init(b);
    uint16_t before = fake_used_idx(&b->rings[REQUEST]);
    struct fake_buf bad = {OUTSIDE_RAM, 64, false};
    fake_post(&b->rings[REQUEST], &bad, 1);
    kick(b, REQUEST);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(fake_used_idx(&b->rings[REQUEST]), before);
    kick(b, REQUEST);
    assert_int_equal(b->t.needs_reset, 1);

    b->dev->ops->reset(b->dev);
    memset(fake_ptr(&b->mem, RING_GPA(0), 0x6000), 0, 0x6000);
    enable_queues(b);
    activate(b);
    int err;
    lookup_file(b, &err);
    assert_int_equal(err, -EIO); /* no INIT yet in this session */
    send_init(b);
    lookup_file(b, &err);
    assert_int_equal(err, 0);
}

/* ---- A full-size request, as Linux builds it. ---- */

#define PAGE 4096u
#define MIB_PAGES 256u /* FUSE_SERVER_MAX_PAGES */
#define BIG_QSIZE 512

/* The header and the op struct in buffers of their own, as virtio_fs sends them. */
static void split_request(struct bench *b, struct fake_buf *out, uint32_t opcode, uint64_t node,
                          const void *args, uint32_t len, uint32_t data_len)
{
    struct fuse_in_header h = {.len = (uint32_t)sizeof(h) + len + data_len, .opcode = opcode,
                               .unique = ++b->unique, .nodeid = node};
    out[0] = (struct fake_buf){alloc_buf(b, sizeof(h)), sizeof(h), false};
    memcpy(fake_ptr(&b->mem, out[0].gpa, sizeof(h)), &h, sizeof(h));
    out[1] = (struct fake_buf){alloc_buf(b, len), len, false};
    memcpy(fake_ptr(&b->mem, out[1].gpa, len), args, len);
}

/* One page buffer per data page, each apart from the next (alloc_buf leaves a canary). */
static void page_bufs(struct bench *b, struct fake_buf *out, bool write)
{
    for (unsigned i = 0; i < MIB_PAGES; i++)
        out[i] = (struct fake_buf){alloc_buf(b, PAGE), PAGE, write};
}

static uint8_t pattern(size_t i) { return (uint8_t)(i * 7 + i / PAGE); }

/* WRITE of 1 MiB: in header, write_in, 256 pages, out header, write_out: 260 buffers. */
static void write_mib(struct bench *b, uint64_t node, uint64_t fh)
{
    struct fake_buf bufs[MIB_PAGES + 4];
    struct fuse_write_in wi = {.fh = fh, .offset = 0, .size = MIB_PAGES * PAGE};
    split_request(b, bufs, FUSE_WRITE, node, &wi, sizeof(wi), MIB_PAGES * PAGE);
    page_bufs(b, bufs + 2, false);
    for (unsigned i = 0; i < MIB_PAGES; i++) {
        uint8_t *p = fake_ptr(&b->mem, bufs[2 + i].gpa, PAGE);
        for (unsigned j = 0; j < PAGE; j++)
            p[j] = pattern((size_t)i * PAGE + j);
    }
    bufs[MIB_PAGES + 2] = reply_buf(b, 16);
    bufs[MIB_PAGES + 3] = reply_buf(b, sizeof(struct fuse_write_out));
    fake_post(&b->rings[REQUEST], bufs, MIB_PAGES + 4);
    kick(b, REQUEST);
    assert_int_equal(b->t.needs_reset, 0);
    struct fake_ring *r = &b->rings[REQUEST];
    assert_int_equal(fake_used_len(r, (uint16_t)(fake_used_idx(r) - 1)),
                     16 + sizeof(struct fuse_write_out));
    assert_int_equal(out_header(b, &bufs[MIB_PAGES + 2]).error, 0);
    struct fuse_write_out wo;
    memcpy(&wo, fake_ptr(&b->mem, bufs[MIB_PAGES + 3].gpa, sizeof(wo)), sizeof(wo));
    assert_int_equal(wo.size, MIB_PAGES * PAGE);
}

/* READ of 1 MiB: in header, read_in, out header, 256 pages: 259 buffers. */
static void read_mib(struct bench *b, uint64_t node, uint64_t fh)
{
    struct fake_buf bufs[MIB_PAGES + 3];
    struct fuse_read_in ri = {.fh = fh, .offset = 0, .size = MIB_PAGES * PAGE};
    split_request(b, bufs, FUSE_READ, node, &ri, sizeof(ri), 0);
    bufs[2] = reply_buf(b, 16);
    page_bufs(b, bufs + 3, true);
    fake_post(&b->rings[REQUEST], bufs, MIB_PAGES + 3);
    kick(b, REQUEST);
    assert_int_equal(b->t.needs_reset, 0);
    struct fake_ring *r = &b->rings[REQUEST];
    assert_int_equal(fake_used_len(r, (uint16_t)(fake_used_idx(r) - 1)), 16 + MIB_PAGES * PAGE);
    for (unsigned i = 0; i < MIB_PAGES; i++) {
        const uint8_t *p = fake_ptr(&b->mem, bufs[3 + i].gpa, PAGE);
        for (unsigned j = 0; j < PAGE; j++)
            if (p[j] != pattern((size_t)i * PAGE + j))
                fail_msg("page %u byte %u", i, j);
        assert_true(canary_intact(b, &bufs[3 + i]));
    }
}

/* The queue is long enough for Linux to send 1 MiB per request (it caps max_pages at the
 * queue's size - 4), INIT offers those 256 pages, and a 1 MiB WRITE and READ, each one chain
 * of 260 and 259 buffers, are served whole: the file holds what was written, the read brings
 * it back. */
static void test_one_mib_per_request(void **state)
{
    struct bench *b = *state;
    assert_true(b->dev->queue_max_size >= MIB_PAGES + 4);
    fake_ring_init(&b->rings[REQUEST], &b->mem, BIG_QSIZE, RING_GPA(REQUEST));
    assert_int_equal(virtq_init(&b->queues[REQUEST], &b->mem, BIG_QSIZE, b->rings[REQUEST].desc,
                                b->rings[REQUEST].avail, b->rings[REQUEST].used, false, false),
                     0);
    activate(b);
    struct fuse_init_in in = {.major = 7, .minor = FUSE_KERNEL_MINOR_VERSION,
                              .flags = FUSE_MAX_PAGES};
    struct fake_buf init[2] = {request(b, FUSE_INIT, 0, &in, sizeof(in)),
                               reply_buf(b, 16 + sizeof(struct fuse_init_out))};
    fake_post(&b->rings[REQUEST], init, 2);
    kick(b, REQUEST);
    struct fuse_init_out io;
    memcpy(&io, fake_ptr(&b->mem, init[1].gpa + 16, sizeof(io)), sizeof(io));
    assert_int_equal(io.max_pages, MIB_PAGES);
    assert_true(io.max_write >= MIB_PAGES * PAGE);

    int err;
    uint64_t node = lookup_file(b, &err);
    assert_int_equal(err, 0);
    uint64_t fh = open_file(b, node, O_RDWR);
    write_mib(b, node, fh);
    char path[128];
    snprintf(path, sizeof(path), "%s/file", b->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, MIB_PAGES * PAGE);
    read_mib(b, node, fh);
}

/* A driver that keeps the request queue full cannot hold the I/O thread: a kick returns after
 * the drain budget and asks the transport to come back. The chain, a GETATTR of the root, is
 * answered every time. */
static void test_refilling_driver_requeued(void **state)
{
    struct bench *b = *state;
    activate(b);
    send_init(b);
    struct fuse_getattr_in in = {0};
    struct fake_buf bufs[2] = {request(b, FUSE_GETATTR, FUSE_ROOT_ID, &in, sizeof(in)),
                               reply_buf(b, 16 + sizeof(struct fuse_attr_out))};
    uint16_t head = fake_post(&b->rings[REQUEST], bufs, 2);
    struct fake_refiller f;
    fake_refiller_start(&f, &b->rings[REQUEST], head);
    fake_kick_until_requeued(b->dev, &b->t, REQUEST);
    fake_refiller_stop(&f);
    assert_int_equal(b->t.requeues[REQUEST], 1);
    assert_int_equal(b->t.needs_reset, 0);
    assert_int_equal(out_header(b, &bufs[1]).error, 0);
}

/* A boot snapshot may carry the device until the guest mounts the share: save succeeds with
 * the device set up and no session, is refused once INIT opened one, and succeeds again after
 * a reset ended it. restore takes what save wrote (nothing beyond the queues). */
static int save_device(struct bench *b)
{
    struct snap_writer w;
    snap_writer_init(&w);
    int r = b->dev->ops->save(b->dev, &w);
    if (r == 0) {
        struct snap_reader rd;
        snap_reader_init(&rd, w.data, w.len);
        assert_true(b->dev->ops->restore(b->dev, &rd));
    }
    snap_writer_free(&w);
    return r;
}

static void test_snapshot_only_before_mount(void **state)
{
    struct bench *b = *state;
    activate(b);
    assert_int_equal(save_device(b), 0);
    send_init(b);
    assert_int_equal(save_device(b), -EBUSY);
    b->dev->ops->reset(b->dev);
    assert_int_equal(save_device(b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hiprio_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_reply_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_activate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_needs_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_only_before_mount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refilling_driver_requeued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_mib_per_request, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
