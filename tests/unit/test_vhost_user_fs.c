/*
 * The vhost-user-fs back-end driven message by message, as QEMU would: the test is the
 * front-end, with its "guest RAM" a memfd it maps itself and lends by descriptor, the rings
 * in it (fake_driver.h, over a guest_mem of that one region) and eventfds for kick, call
 * and error. A FUSE INIT served through the request queue proves the lent RAM, the ring
 * addresses and the call descriptor all line up; the malformed messages and a broken ring
 * show what a front-end or its guest cannot do to us.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake_driver.h"
#include "guest_mem.h"
#include "virtio/vhost_user_fs.h"

#define RAM_SIZE (1u << 20)
#define QSIZE 16
#define REQUEST 1
#define RING_GPA 0x1000ULL
#define DATA_GPA 0x20000ULL

#define F_PROTOCOL_FEATURES (1ULL << 30)
#define F_VERSION_1 (1ULL << 32)

struct bench {
    char dir[64];
    int memfd;
    uint8_t *ram; /* the front-end's mapping of its guest RAM */
    struct guest_mem view; /* the same RAM for the fake driver */
    struct fake_ring ring;
    struct fuse_server *server;
    struct vhost_user_fs *vu;
    int kick, call, err;
    uint64_t next_data; /* the next free guest address for request buffers */
    char error[256];
};

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->dir, "/tmp/cove-vufs-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    b->memfd = memfd_create("front-end-ram", MFD_CLOEXEC);
    assert_true(b->memfd >= 0);
    assert_int_equal(ftruncate(b->memfd, RAM_SIZE), 0);
    b->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, b->memfd, 0);
    assert_true(b->ram != MAP_FAILED);
    b->view.memfd = -1;
    assert_int_equal(guest_mem_add_region(&b->view, 0, RAM_SIZE, b->ram), 0);
    fake_ring_init(&b->ring, &b->view, QSIZE, RING_GPA);
    b->next_data = DATA_GPA;
    struct fuse_server_options o = {0};
    assert_int_equal(fuse_server_new(b->dir, &o, &b->server), 0);
    b->vu = vhost_user_fs_new(b->server, NULL);
    assert_non_null(b->vu);
    b->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(b->kick >= 0 && b->call >= 0 && b->err >= 0);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bench *b = *state;
    vhost_user_fs_free(b->vu);
    fuse_server_destroy(b->server);
    munmap(b->ram, RAM_SIZE);
    close(b->memfd);
    close(b->kick);
    close(b->call);
    close(b->err);
    rmdir(b->dir);
    free(b);
    return 0;
}

/* ---- The front-end. ---- */

static int send_msg(struct bench *b, uint32_t request, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds, struct vhost_user_msg *reply)
{
    struct vhost_user_msg msg = {.request = request, .flags = VHOST_USER_VERSION, .size = size};
    if (size)
        memcpy(msg.payload, payload, size);
    struct vhost_user_msg scratch;
    return vhost_user_fs_message(b->vu, &msg, fds, nfds, reply ? reply : &scratch, b->error,
                                 sizeof(b->error));
}

static int send_u64(struct bench *b, uint32_t request, uint64_t value)
{
    return send_msg(b, request, &value, sizeof(value), NULL, 0, NULL);
}

static int send_state(struct bench *b, uint32_t request, uint32_t index, uint32_t num,
                      struct vhost_user_msg *reply)
{
    uint32_t state[2] = {index, num};
    return send_msg(b, request, state, sizeof(state), NULL, 0, reply);
}

/* A duplicate of fd, for a message that takes the descriptor it carries. */
static int dup_of(int fd)
{
    int copy = dup(fd);
    assert_true(copy >= 0);
    return copy;
}

static int send_vring_fd(struct bench *b, uint32_t request, uint32_t index, int fd)
{
    int copy = dup_of(fd);
    return send_msg(b, request, &(uint64_t){index}, 8, &copy, 1, NULL);
}

static int send_mem_table(struct bench *b, uint64_t uva)
{
    uint8_t table[8 + 32] = {1};
    uint64_t region[4] = {0, RAM_SIZE, uva, 0}; /* guest address, size, front-end address, offset */
    memcpy(table + 8, region, sizeof(region));
    int fd = dup_of(b->memfd);
    return send_msg(b, VHOST_USER_SET_MEM_TABLE, table, sizeof(table), &fd, 1, NULL);
}

static uint64_t uva_of(struct bench *b, uint64_t gpa) { return (uint64_t)(uintptr_t)b->ram + gpa; }

/* What QEMU's vhost_dev_start sends for queue 1, up to and including its kick descriptor. */
static void start_request_queue(struct bench *b)
{
    struct vhost_user_msg reply;
    assert_int_equal(send_msg(b, VHOST_USER_GET_FEATURES, NULL, 0, NULL, 0, &reply), 1);
    uint64_t offered;
    memcpy(&offered, reply.payload, 8);
    assert_int_equal(reply.size, 8);
    assert_true(reply.flags & VHOST_USER_FLAG_REPLY);
    assert_true((offered & F_VERSION_1) && (offered & F_PROTOCOL_FEATURES));
    assert_int_equal(send_msg(b, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(send_msg(b, VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, &reply), 1);
    assert_int_equal(send_u64(b, VHOST_USER_SET_PROTOCOL_FEATURES, 0), 0);
    assert_int_equal(send_u64(b, VHOST_USER_SET_FEATURES, F_VERSION_1 | F_PROTOCOL_FEATURES), 0);
    assert_int_equal(send_mem_table(b, uva_of(b, 0)), 0);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_NUM, REQUEST, QSIZE, NULL), 0);
    uint64_t addr[5] = {REQUEST, uva_of(b, b->ring.desc), uva_of(b, b->ring.used),
                        uva_of(b, b->ring.avail), 0};
    assert_int_equal(send_msg(b, VHOST_USER_SET_VRING_ADDR, addr, 40, NULL, 0, NULL), 0);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_BASE, REQUEST, 0, NULL), 0);
    assert_int_equal(send_vring_fd(b, VHOST_USER_SET_VRING_CALL, REQUEST, b->call), 0);
    assert_int_equal(send_vring_fd(b, VHOST_USER_SET_VRING_ERR, REQUEST, b->err), 0);
    assert_int_equal(send_vring_fd(b, VHOST_USER_SET_VRING_KICK, REQUEST, b->kick), 0);
}

static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    uint64_t gpa = b->next_data;
    memset(fake_ptr(&b->view, gpa, len), 0, len);
    b->next_data = (gpa + len + 15) & ~15ULL;
    return gpa;
}

/* Posts FUSE INIT on the request queue; returns the reply buffer's guest address. */
static uint64_t post_init(struct bench *b)
{
    struct fuse_in_header h = {.len = sizeof(h) + sizeof(struct fuse_init_in),
                               .opcode = FUSE_INIT, .unique = 1};
    struct fuse_init_in in = {.major = 7, .minor = FUSE_KERNEL_MINOR_VERSION};
    uint64_t req = alloc_buf(b, h.len), rep = alloc_buf(b, 16 + sizeof(struct fuse_init_out));
    memcpy(fake_ptr(&b->view, req, sizeof(h)), &h, sizeof(h));
    memcpy(fake_ptr(&b->view, req + sizeof(h), sizeof(in)), &in, sizeof(in));
    struct fake_buf bufs[2] = {{req, h.len, false}, {rep, 16 + sizeof(struct fuse_init_out), true}};
    fake_post(&b->ring, bufs, 2);
    return rep;
}

static uint64_t drain_eventfd(int fd)
{
    uint64_t n = 0;
    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* ---- Tests. ---- */

static void test_init_served_through_lent_ram(void **state)
{
    struct bench *b = *state;
    start_request_queue(b);
    uint64_t rep = post_init(b);
    vhost_user_fs_kick(b->vu, REQUEST);
    assert_int_equal(fake_used_idx(&b->ring), 0); /* protocol features: not enabled yet */
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_ENABLE, REQUEST, 1, NULL), 0);
    assert_int_equal(fake_used_idx(&b->ring), 1); /* served as soon as it was enabled */
    struct fuse_out_header oh;
    memcpy(&oh, fake_ptr(&b->view, rep, sizeof(oh)), sizeof(oh));
    assert_int_equal(oh.error, 0);
    assert_int_equal(oh.unique, 1);
    struct fuse_init_out out;
    memcpy(&out, fake_ptr(&b->view, rep + 16, sizeof(out)), sizeof(out));
    assert_int_equal(out.major, 7);
    assert_int_equal(fake_used_len(&b->ring, 0), oh.len);
    assert_int_equal(drain_eventfd(b->call), 1); /* the guest was told */
    /* Stopping tells where the next start must begin. */
    struct vhost_user_msg reply;
    assert_int_equal(send_state(b, VHOST_USER_GET_VRING_BASE, REQUEST, 0, &reply), 1);
    uint32_t where[2];
    memcpy(where, reply.payload, sizeof(where));
    assert_int_equal(where[0], REQUEST);
    assert_int_equal(where[1], 1);
    /* Stopped: nothing more is served. */
    post_init(b);
    vhost_user_fs_kick(b->vu, REQUEST);
    assert_int_equal(fake_used_idx(&b->ring), 1);
}

static void test_malformed_messages_refused(void **state)
{
    struct bench *b = *state;
    struct vhost_user_msg msg = {.request = VHOST_USER_GET_FEATURES, .flags = 2}, reply;
    assert_int_equal(vhost_user_fs_message(b->vu, &msg, NULL, 0, &reply, b->error, sizeof(b->error)),
                     -EPROTO);
    assert_non_null(strstr(b->error, "version 2"));
    assert_int_equal(send_msg(b, 99, NULL, 0, NULL, 0, NULL), -EPROTO);
    assert_non_null(strstr(b->error, "request 99 is not supported"));
    assert_int_equal(send_msg(b, VHOST_USER_SET_FEATURES, "1234", 4, NULL, 0, NULL), -EPROTO);
    assert_int_equal(send_u64(b, VHOST_USER_SET_FEATURES, 1ULL << 40), -EPROTO);
    assert_int_equal(send_u64(b, VHOST_USER_SET_PROTOCOL_FEATURES, 1), -EPROTO);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_NUM, VHOST_USER_FS_MAX_QUEUES, 16, NULL),
                     -EPROTO);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_ENABLE, REQUEST, 2, NULL), -EPROTO);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_NUM, REQUEST, 65536, NULL), -EPROTO);
    /* A descriptor where none belongs is closed, not kept. */
    int stray = dup_of(b->call);
    assert_int_equal(send_msg(b, VHOST_USER_SET_OWNER, NULL, 0, &stray, 1, NULL), -EPROTO);
    assert_false(fd_open(stray));
    /* A memory table whose count and descriptors disagree: both descriptors closed. */
    uint8_t table[8 + 32] = {1};
    int fds[2] = {dup_of(b->memfd), dup_of(b->memfd)};
    assert_int_equal(send_msg(b, VHOST_USER_SET_MEM_TABLE, table, sizeof(table), fds, 2, NULL),
                     -EPROTO);
    assert_false(fd_open(fds[0]) || fd_open(fds[1]));
    /* A region larger than what the descriptor can map. */
    uint64_t region[4] = {0, 1ULL << 40, uva_of(b, 0), 0};
    memcpy(table + 8, region, sizeof(region));
    int fd = dup_of(b->memfd);
    assert_int_equal(send_msg(b, VHOST_USER_SET_MEM_TABLE, table, sizeof(table), &fd, 1, NULL),
                     -EPROTO);
    assert_false(fd_open(fd));
    /* A polled ring (no kick descriptor) is not something we do. */
    assert_int_equal(send_msg(b, VHOST_USER_SET_VRING_KICK, &(uint64_t){REQUEST | 0x100}, 8,
                              NULL, 0, NULL), -EPROTO);
}

static void test_rings_outside_lent_ram_refused(void **state)
{
    struct bench *b = *state;
    assert_int_equal(send_u64(b, VHOST_USER_SET_FEATURES, F_VERSION_1), 0);
    assert_int_equal(send_mem_table(b, uva_of(b, 0)), 0);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_NUM, REQUEST, QSIZE, NULL), 0);
    uint64_t addr[5] = {REQUEST, uva_of(b, RAM_SIZE - 16), uva_of(b, b->ring.used),
                        uva_of(b, b->ring.avail), 0}; /* the table runs off the end */
    assert_int_equal(send_msg(b, VHOST_USER_SET_VRING_ADDR, addr, 40, NULL, 0, NULL), 0);
    assert_int_equal(send_vring_fd(b, VHOST_USER_SET_VRING_KICK, REQUEST, b->kick), -EPROTO);
    assert_non_null(strstr(b->error, "outside the memory table"));
}

/* Two regions of one file: its halves at two guest addresses are fine, the same bytes at two
 * are not (a device writing at one address would change what it reads at the other). */
static void test_file_lent_twice_refused(void **state)
{
    struct bench *b = *state;
    const uint64_t half = RAM_SIZE / 2;
    uint8_t table[8 + 64] = {2};
    uint64_t regions[8] = {0, half, uva_of(b, 0), 0,             /* the first half */
                           1ULL << 32, half, uva_of(b, half), half}; /* the second, high */
    memcpy(table + 8, regions, sizeof(regions));
    int fds[2] = {dup_of(b->memfd), dup_of(b->memfd)};
    assert_int_equal(send_msg(b, VHOST_USER_SET_MEM_TABLE, table, sizeof(table), fds, 2, NULL), 0);
    regions[7] = half - 4096; /* the second region now starts one page into the first */
    memcpy(table + 8, regions, sizeof(regions));
    int again[2] = {dup_of(b->memfd), dup_of(b->memfd)};
    assert_int_equal(send_msg(b, VHOST_USER_SET_MEM_TABLE, table, sizeof(table), again, 2, NULL),
                     -EPROTO);
    assert_non_null(strstr(b->error, "memory region 1"));
    assert_false(fd_open(again[0]) || fd_open(again[1]));
}

/* The guest breaks its ring: the queue stops, its error descriptor fires, nothing crashes. */
static void test_broken_ring_stops_queue(void **state)
{
    struct bench *b = *state;
    start_request_queue(b);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_ENABLE, REQUEST, 1, NULL), 0);
    fake_set_desc(&b->view, b->ring.desc, 3, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 3); /* a loop */
    fake_add_head(&b->ring, 3);
    vhost_user_fs_kick(b->vu, REQUEST);
    assert_int_equal(drain_eventfd(b->err), 1);
    assert_int_equal(fake_used_idx(&b->ring), 0);
    post_init(b);
    vhost_user_fs_kick(b->vu, REQUEST);
    assert_int_equal(fake_used_idx(&b->ring), 0); /* idle until the next start */
}

/* A guest that refills the request queue as fast as it is served cannot hold the loop: one
 * kick serves the drain budget, then writes the queue's own kick descriptor so that the loop
 * comes back to it after the others. A kick that empties the queue writes nothing. */
static void test_refilling_guest_pokes_kick(void **state)
{
    struct bench *b = *state;
    start_request_queue(b);
    assert_int_equal(send_state(b, VHOST_USER_SET_VRING_ENABLE, REQUEST, 1, NULL), 0);
    post_init(b);
    vhost_user_fs_kick(b->vu, REQUEST);
    assert_int_equal(fake_used_idx(&b->ring), 1);
    assert_int_equal(drain_eventfd(b->kick), 0);

    uint16_t head = (uint16_t)(b->ring.next_desc - 2);
    uint16_t before = fake_used_idx(&b->ring);
    struct fake_refiller f;
    fake_refiller_start(&f, &b->ring, head);
    alarm(10);
    uint64_t poked = 0;
    while (poked == 0) {
        vhost_user_fs_kick(b->vu, REQUEST); /* an unbounded drain never returns: alarm */
        poked = drain_eventfd(b->kick);
    }
    alarm(0);
    fake_refiller_stop(&f);
    assert_int_equal(poked, 1);
    assert_true((uint16_t)(fake_used_idx(&b->ring) - before) >= VIRTQ_DRAIN_BUDGET);
    assert_int_equal(drain_eventfd(b->err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_served_through_lent_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_messages_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rings_outside_lent_ram_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_lent_twice_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_ring_stops_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refilling_guest_pokes_kick, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
