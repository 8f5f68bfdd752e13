/*
 * virtio-vsock: host connects reach the guest as REQUESTs and end in a working socket, a RST
 * or a timeout; guest connects reach "<uds_path>_<port>"; the "CONNECT <port>" endpoint; data
 * relayed byte-exact both ways within the credit each side gave; shutdowns, resets and
 * virtio_vsock_shutdown close what they must; a hostile driver gets resets, never a crash.
 *
 * The test plays the driver (rings in fake guest RAM, fake_driver.h) and the transport (a fake
 * that counts interrupts and reset requests). A real I/O loop runs on its own thread, as in the
 * VMM, since virtio_vsock_connect() blocks until the guest answers. The test thread touches
 * guest RAM and calls the device ops only while the loop thread is parked in a handler
 * (freeze/thaw), so the device still sees one thread at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "io_loop.h"
#include "virtio/vsock.h"

#define MEM_SIZE (16 * X86_MiB)
#define QSIZE 128
#define RXQ 0
#define TXQ 1
#define RING_GPA(q) (0x1000ULL + 0x4000ULL * (q))
#define DATA_GPA 0x100000ULL
#define OUTSIDE_RAM 0x40000000ULL

#define CID 3
#define HOST_CID 2
#define HDR 44
#define RX_DATA 4096
#define DEVICE_BUF_ALLOC (256 * 1024)
#define FIRST_HOST_PORT (1u << 30)

enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };

/* The header as Linux declares it (struct virtio_vsock_hdr: packed, little endian), copied
 * as is: an oracle independent of the device's own offset-by-offset encoding. */
struct __attribute__((packed)) hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};
_Static_assert(sizeof(struct hdr) == HDR, "virtio 1.2, 5.10.6");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the header is copied as is");

struct pkt {
    struct hdr h;
    uint32_t used_len;
    uint8_t data[RX_DATA];
};

struct bench {
    struct guest_mem mem;
    struct io_loop *loop;
    pthread_t thread;
    bool running;
    struct virtio_device *dev;
    struct virtq queues[3];
    bool enabled[3];
    struct fake_ring ring[3];
    struct fake_transport t;
    uint64_t next_data;
    uint64_t rx_gpa[QSIZE]; /* where the rx chain with this head starts */
    bool rx_split;          /* post rx header and data as separate descriptors (Linux 6.1) */
    /* freeze/thaw */
    int park_fd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool parked;
    char dir[64];
    char uds[96];
    int listeners[4];
};

/* ---- The loop thread, and parking it. ---- */

static void on_park(void *opaque, uint32_t events)
{
    struct bench *b = opaque;
    (void)events;
    uint64_t n;
    assert_int_equal(read(b->park_fd, &n, sizeof(n)), sizeof(n));
    pthread_mutex_lock(&b->lock);
    b->parked = true;
    pthread_cond_broadcast(&b->cond);
    while (b->parked)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

/* From here to thaw() the test thread is the I/O thread. */
static void freeze(struct bench *b)
{
    uint64_t one = 1;
    pthread_mutex_lock(&b->lock);
    assert_int_equal(write(b->park_fd, &one, sizeof(one)), sizeof(one));
    while (!b->parked)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

static void thaw(struct bench *b)
{
    pthread_mutex_lock(&b->lock);
    b->parked = false;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Everything that became ready before this call has been handled when it returns: epoll
 * reports ready descriptors in order, so the park request comes after them. */
static void sync_loop(struct bench *b)
{
    freeze(b);
    thaw(b);
}

static void *loop_thread(void *opaque)
{
    io_loop_run(opaque);
    return NULL;
}

static void stop_loop(struct bench *b)
{
    if (!b->running)
        return;
    io_loop_stop(b->loop);
    pthread_join(b->thread, NULL);
    b->running = false;
}

/* ---- Set-up. ---- */

static void enable_queues(struct bench *b)
{
    memset(fake_ptr(&b->mem, RING_GPA(0), 0xc000), 0, 0xc000);
    for (unsigned q = 0; q < 3; q++) {
        fake_ring_init(&b->ring[q], &b->mem, QSIZE, RING_GPA(q));
        assert_int_equal(virtq_init(&b->queues[q], &b->mem, QSIZE, b->ring[q].desc,
                                    b->ring[q].avail, b->ring[q].used, false, false), 0);
        b->enabled[q] = true;
    }
}

static void activate(struct bench *b)
{
    freeze(b);
    enable_queues(b);
    b->dev->ops->activate(b->dev);
    thaw(b);
}

static void reset_device(struct bench *b)
{
    freeze(b);
    b->dev->ops->reset(b->dev);
    memset(b->queues, 0, sizeof(b->queues));
    memset(b->enabled, 0, sizeof(b->enabled));
    thaw(b);
}

static int setup_bench(void **state, bool active, bool with_uds)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->next_data = DATA_GPA;
    b->rx_split = true;
    for (int i = 0; i < 4; i++)
        b->listeners[i] = -1;
    strcpy(b->dir, "/tmp/cove-vsock-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    snprintf(b->uds, sizeof(b->uds), "%s/v.sock", b->dir);
    b->loop = io_loop_new();
    assert_non_null(b->loop);
    char err[128];
    b->dev = virtio_vsock_new(CID, with_uds ? b->uds : NULL, b->loop, err, sizeof(err));
    assert_non_null(b->dev);
    b->dev->queues = b->queues;
    b->dev->queue_enabled = b->enabled;
    b->dev->loop = b->loop;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->park_fd = eventfd(0, EFD_CLOEXEC);
    assert_true(b->park_fd >= 0);
    assert_int_equal(io_loop_add(b->loop, b->park_fd, EPOLLIN, on_park, b), 0);
    assert_int_equal(pthread_create(&b->thread, NULL, loop_thread, b->loop), 0);
    b->running = true;
    if (active)
        activate(b);
    *state = b;
    return 0;
}

static int setup(void **state) { return setup_bench(state, true, true); }
static int setup_inactive(void **state) { return setup_bench(state, false, true); }
static int setup_no_uds(void **state) { return setup_bench(state, true, false); }

static int teardown(void **state)
{
    struct bench *b = *state;
    stop_loop(b);
    b->dev->ops->destroy(b->dev);
    assert_int_equal(access(b->uds, F_OK), -1); /* destroy unlinked it */
    io_loop_free(b->loop);
    close(b->park_fd);
    for (int i = 0; i < 4; i++)
        if (b->listeners[i] >= 0)
            close(b->listeners[i]);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", b->dir);
    assert_int_equal(system(cmd), 0);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    guest_mem_destroy(&b->mem);
    free(b);
    return 0;
}

/* ---- The driver. ---- */

static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    if (b->next_data + len > MEM_SIZE)
        b->next_data = DATA_GPA; /* far more than any test keeps in flight */
    uint64_t gpa = b->next_data;
    memset(fake_ptr(&b->mem, gpa, len), 0, len);
    b->next_data = (gpa + len + 15) & ~15ULL;
    return gpa;
}

/* n receive buffers of RX_DATA bytes after the header. */
static void post_rx_locked(struct bench *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t gpa = alloc_buf(b, HDR + RX_DATA);
        struct fake_buf split[2] = {{gpa, HDR, true}, {gpa + HDR, RX_DATA, true}};
        struct fake_buf whole = {gpa, HDR + RX_DATA, true};
        uint16_t head = b->rx_split ? fake_post(&b->ring[RXQ], split, 2)
                                    : fake_post(&b->ring[RXQ], &whole, 1);
        b->rx_gpa[head] = gpa;
    }
    b->dev->ops->queue_notify(b->dev, RXQ);
}

static void post_rx(struct bench *b, unsigned n)
{
    freeze(b);
    post_rx_locked(b, n);
    thaw(b);
}

/* A tx chain: the header in one descriptor, the data (if any) split in two more. */
static void send_raw(struct bench *b, const struct hdr *h, const void *data, uint32_t len)
{
    freeze(b);
    uint64_t gpa = alloc_buf(b, HDR + len);
    memcpy(fake_ptr(&b->mem, gpa, HDR), h, HDR);
    if (len)
        memcpy(fake_ptr(&b->mem, gpa + HDR, len), data, len);
    uint32_t first = len / 3;
    struct fake_buf bufs[3] = {{gpa, HDR, false}};
    unsigned n = 1;
    if (first)
        bufs[n++] = (struct fake_buf){gpa + HDR, first, false};
    if (len > first)
        bufs[n++] = (struct fake_buf){gpa + HDR + first, len - first, false};
    fake_post(&b->ring[TXQ], bufs, n);
    b->dev->ops->queue_notify(b->dev, TXQ);
    thaw(b);
}

static struct hdr guest_hdr(uint16_t op, uint32_t guest_port, uint32_t host_port)
{
    return (struct hdr){.src_cid = CID, .dst_cid = HOST_CID, .src_port = guest_port,
                        .dst_port = host_port, .type = 1, .op = op, .buf_alloc = 1 << 20};
}

static void send_op(struct bench *b, uint16_t op, uint32_t guest_port, uint32_t host_port)
{
    struct hdr h = guest_hdr(op, guest_port, host_port);
    send_raw(b, &h, NULL, 0);
}

static void send_data(struct bench *b, uint32_t guest_port, uint32_t host_port, const void *data,
                      uint32_t len)
{
    struct hdr h = guest_hdr(RW, guest_port, host_port);
    h.len = len;
    send_raw(b, &h, data, len);
}

/* Takes the next used rx buffer if there is one. */
static bool try_recv(struct bench *b, struct pkt *p)
{
    freeze(b);
    struct fake_ring *r = &b->ring[RXQ];
    bool got = fake_used_idx(r) != r->used_seen;
    if (got) {
        uint32_t head = fake_used_id(r, r->used_seen);
        p->used_len = fake_used_len(r, r->used_seen);
        r->used_seen++;
        assert_true(head < QSIZE);
        assert_true(p->used_len >= HDR && p->used_len <= HDR + RX_DATA);
        uint8_t *raw = fake_ptr(&b->mem, b->rx_gpa[head], p->used_len);
        memcpy(&p->h, raw, HDR);
        assert_int_equal(p->h.len, p->used_len - HDR);
        memcpy(p->data, raw + HDR, p->h.len);
    }
    thaw(b);
    return got;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void recv_pkt(struct bench *b, struct pkt *p)
{
    for (int i = 0; i < 3000; i++) {
        if (try_recv(b, p))
            return;
        sleep_ms(1);
    }
    fail_msg("no packet from the device");
}

static void expect_op(struct bench *b, struct pkt *p, uint16_t op)
{
    recv_pkt(b, p);
    assert_int_equal(p->h.op, op);
    assert_int_equal(p->h.src_cid, HOST_CID);
    assert_int_equal(p->h.dst_cid, CID);
    assert_int_equal(p->h.type, 1);
    assert_int_equal(p->h.buf_alloc, DEVICE_BUF_ALLOC);
}

static void expect_quiet(struct bench *b, int ms)
{
    struct pkt p;
    sleep_ms(ms);
    if (try_recv(b, &p))
        fail_msg("unexpected packet op %u", p.h.op);
}

static unsigned needs_reset(struct bench *b)
{
    freeze(b);
    unsigned n = b->t.needs_reset;
    thaw(b);
    return n;
}

/* ---- The host side. ---- */

struct connect_call {
    pthread_t thread;
    struct virtio_device *dev;
    uint32_t port;
    int timeout_ms;
    int result;
};

static void *connect_thread(void *opaque)
{
    struct connect_call *c = opaque;
    c->result = virtio_vsock_connect(c->dev, c->port, c->timeout_ms);
    return NULL;
}

static void start_connect(struct bench *b, struct connect_call *c, uint32_t port, int timeout_ms)
{
    *c = (struct connect_call){.dev = b->dev, .port = port, .timeout_ms = timeout_ms};
    assert_int_equal(pthread_create(&c->thread, NULL, connect_thread, c), 0);
}

static int finish_connect(struct connect_call *c)
{
    pthread_join(c->thread, NULL);
    return c->result;
}

/* A host connect whose REQUEST the guest got (in *p). */
static void host_request(struct bench *b, struct connect_call *call, uint32_t port, int timeout_ms,
                         struct pkt *p)
{
    start_connect(b, call, port, timeout_ms);
    post_rx(b, 1);
    expect_op(b, p, REQUEST);
    assert_int_equal(p->h.dst_port, port);
}

/* A host connect the guest accepts: returns the host fd; *host_port is the device's port. */
static int connect_pair(struct bench *b, uint32_t guest_port, uint32_t guest_buf_alloc,
                        uint32_t *host_port)
{
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, guest_port, 5000, &p);
    assert_int_equal(p.h.dst_port, guest_port);
    struct hdr h = guest_hdr(RESPONSE, guest_port, p.h.src_port);
    h.buf_alloc = guest_buf_alloc;
    send_raw(b, &h, NULL, 0);
    int fd = finish_connect(&call);
    assert_true(fd >= 0);
    *host_port = p.h.src_port;
    return fd;
}

static bool wait_readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 1;
}

/* Reads exactly len bytes (or fails after a few seconds). */
static void host_read_exact(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        assert_true(wait_readable(fd, 3000));
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        assert_true(n > 0);
        got += (size_t)n;
    }
}

static void expect_eof(int fd)
{
    uint8_t c;
    assert_true(wait_readable(fd, 3000));
    assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), 0);
}

/* End-of-file, or a reset when the device closed with our bytes unread. */
static void expect_closed(int fd)
{
    uint8_t c;
    assert_true(wait_readable(fd, 3000));
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + i / 251 + seed);
}

/* Guest port 5000 sends total bytes of a pattern (left in sent) in chunks of `chunk`. */
static void guest_send_pattern(struct bench *b, uint32_t host_port, uint8_t *sent, size_t total,
                               uint32_t chunk)
{
    fill_pattern(sent, total, (unsigned)total);
    for (size_t off = 0; off < total; off += chunk)
        send_data(b, 5000, host_port, sent + off, chunk);
}

static int listen_port(struct bench *b, int slot, uint32_t port)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_%u", b->uds, port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 8), 0);
    b->listeners[slot] = fd;
    return fd;
}

static int uds_client(struct bench *b)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", b->uds);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

/* ---- Tests: identity and host connects. ---- */

static void test_identity(void **state)
{
    struct bench *b = *state;
    assert_int_equal(b->dev->device_id, VIRTIO_ID_VSOCK);
    assert_int_equal(b->dev->num_queues, 3);
    assert_int_equal(b->dev->config_size, 8);
    assert_int_equal(b->dev->device_features, 0); /* no SEQPACKET */
    uint64_t cid = 0;
    b->dev->ops->config_read(b->dev, 0, (uint8_t *)&cid, 8);
    assert_int_equal(cid, CID);
    uint32_t high = 1;
    b->dev->ops->config_read(b->dev, 4, (uint8_t *)&high, 4);
    assert_int_equal(high, 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char err[128];
    struct io_loop *loop = io_loop_new();
    assert_null(virtio_vsock_new(2, NULL, loop, err, sizeof(err)));
    assert_null(virtio_vsock_new(UINT32_MAX, NULL, loop, err, sizeof(err)));
    char path[200];
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    assert_null(virtio_vsock_new(3, path, loop, err, sizeof(err)));
    assert_non_null(strstr(err, "too long"));
    io_loop_free(loop);
}

static void test_connect_not_ready(void **state)
{
    struct bench *b = *state;
    assert_int_equal(virtio_vsock_connect(b->dev, 5000, 1000), -ENOTCONN);
    activate(b);
    post_rx(b, 1);
    struct connect_call call;
    start_connect(b, &call, 5000, 100);
    struct pkt p;
    expect_op(b, &p, REQUEST);
    assert_int_equal(finish_connect(&call), -ETIMEDOUT);
}

static void test_connect_accepted(void **state)
{
    struct bench *b = *state;
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 5000, 5000, &p);
    post_rx(b, 3);
    assert_int_equal(p.h.dst_port, 5000);
    assert_true(p.h.src_port >= FIRST_HOST_PORT);
    assert_int_equal(p.h.len, 0);
    uint32_t host_port = p.h.src_port;
    send_op(b, RESPONSE, 5000, host_port);
    int fd = finish_connect(&call);
    assert_true(fd >= 0);

    assert_int_equal(write(fd, "hello", 5), 5);
    expect_op(b, &p, RW);
    assert_int_equal(p.h.src_port, host_port);
    assert_int_equal(p.h.dst_port, 5000);
    assert_int_equal(p.h.len, 5);
    assert_memory_equal(p.data, "hello", 5);

    send_data(b, 5000, host_port, "world!", 6);
    uint8_t buf[6];
    host_read_exact(fd, buf, 6);
    assert_memory_equal(buf, "world!", 6);

    /* A second connection gets another port. */
    uint32_t port2;
    int fd2 = connect_pair(b, 5000, 1 << 20, &port2);
    assert_int_not_equal(port2, host_port);
    close(fd2);
    close(fd);
}

static void test_connect_refused(void **state)
{
    struct bench *b = *state;
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 6000, 5000, &p);
    send_op(b, RST, 6000, p.h.src_port);
    assert_int_equal(finish_connect(&call), -ECONNREFUSED);
    expect_quiet(b, 20); /* no answer to a RST */
}

static void test_connect_timeout_resets(void **state)
{
    struct bench *b = *state;
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 7000, 100, &p);
    post_rx(b, 1);
    assert_int_equal(finish_connect(&call), -ETIMEDOUT);
    uint32_t host_port = p.h.src_port;
    expect_op(b, &p, RST);
    assert_int_equal(p.h.src_port, host_port);
    assert_int_equal(p.h.dst_port, 7000);
    /* A late RESPONSE matches nothing now: it is reset. */
    send_op(b, RESPONSE, 7000, host_port);
    post_rx(b, 1);
    expect_op(b, &p, RST);
}

/* A REQUEST waiting for rx buffers still times out (and is never sent afterwards). */
static void test_connect_timeout_without_rx(void **state)
{
    struct bench *b = *state;
    assert_int_equal(virtio_vsock_connect(b->dev, 7000, 50), -ETIMEDOUT);
    post_rx(b, 1);
    expect_quiet(b, 50);
}

/* ---- Tests: data and credit. ---- */

static void test_host_to_guest_within_credit(void **state)
{
    struct bench *b = *state;
    enum { TOTAL = 40000, CREDIT = 16384 };
    uint32_t host_port;
    int fd = connect_pair(b, 5000, CREDIT, &host_port);
    static uint8_t sent[TOTAL], got[TOTAL];
    fill_pattern(sent, TOTAL, 1);
    assert_int_equal(write(fd, sent, TOTAL), TOTAL);
    post_rx(b, 20); /* room for all of it: only the credit limits */

    size_t received = 0;
    struct pkt p;
    while (received < TOTAL) {
        size_t window_end = received - received % CREDIT + CREDIT;
        while (received < window_end && received < TOTAL) {
            expect_op(b, &p, RW);
            memcpy(got + received, p.data, p.h.len);
            received += p.h.len;
            assert_true(received <= window_end); /* never beyond the credit */
        }
        expect_quiet(b, 20);
        struct hdr h = guest_hdr(CREDIT_UPDATE, 5000, host_port);
        h.buf_alloc = CREDIT;
        h.fwd_cnt = (uint32_t)received;
        send_raw(b, &h, NULL, 0);
    }
    assert_memory_equal(got, sent, TOTAL);
    close(fd);
}

/* More than the rx buffers hold: the device waits for buffers, then goes on. */
static void test_host_to_guest_waits_for_buffers(void **state)
{
    struct bench *b = *state;
    enum { TOTAL = 3 * RX_DATA + 100 };
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    static uint8_t sent[TOTAL], got[TOTAL];
    fill_pattern(sent, TOTAL, 2);
    assert_int_equal(write(fd, sent, TOTAL), TOTAL);
    size_t received = 0;
    struct pkt p;
    b->rx_split = false; /* one descriptor for header and data works too */
    while (received < TOTAL) {
        expect_quiet(b, 10);
        post_rx(b, 1);
        expect_op(b, &p, RW);
        assert_true(p.h.len <= RX_DATA);
        memcpy(got + received, p.data, p.h.len);
        received += p.h.len;
    }
    assert_memory_equal(got, sent, TOTAL);
    close(fd);
}

static void test_guest_to_host_bulk(void **state)
{
    struct bench *b = *state;
    enum { TOTAL = 200000, CHUNK = 10000 };
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    static uint8_t sent[TOTAL], got[TOTAL];
    guest_send_pattern(b, host_port, sent, TOTAL, CHUNK);
    host_read_exact(fd, got, TOTAL);
    assert_memory_equal(got, sent, TOTAL);
    /* The host drained more than half the window: a credit update tells the guest. */
    struct pkt p;
    post_rx(b, 1);
    expect_op(b, &p, CREDIT_UPDATE);
    assert_int_equal(p.h.fwd_cnt, TOTAL);
    close(fd);
}

static void test_guest_beyond_credit_resets(void **state)
{
    struct bench *b = *state;
    enum { CHUNK = 32768 };
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    static uint8_t data[CHUNK];
    fill_pattern(data, CHUNK, 4);
    /* The host reads nothing and the guest posts no rx buffers, so no credit update can go
     * out: the window is the 256 KiB of the RESPONSE. */
    for (int i = 0; i < DEVICE_BUF_ALLOC / CHUNK; i++)
        send_data(b, 5000, host_port, data, CHUNK);
    expect_quiet(b, 10);
    send_data(b, 5000, host_port, data, 1);
    post_rx(b, 2);
    struct pkt p;
    expect_op(b, &p, RST);
    assert_int_equal(p.h.src_port, host_port);
    /* The host end is closed; what the socket took before is still readable. */
    static uint8_t sink[DEVICE_BUF_ALLOC];
    ssize_t n;
    while ((n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0) {
    }
    assert_int_equal(n, 0);
    close(fd);
}

static void test_credit_request_answered(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    send_data(b, 5000, host_port, "abc", 3);
    uint8_t buf[3];
    host_read_exact(fd, buf, 3);
    send_op(b, CREDIT_REQUEST, 5000, host_port);
    post_rx(b, 1);
    struct pkt p;
    expect_op(b, &p, CREDIT_UPDATE);
    assert_int_equal(p.h.fwd_cnt, 3);
    assert_int_equal(p.h.src_port, host_port);
    close(fd);
}

/* Two busy host ends share the rx buffers. */
static void test_round_robin(void **state)
{
    struct bench *b = *state;
    uint32_t port_a, port_b;
    int a = connect_pair(b, 5001, 1 << 20, &port_a);
    int c = connect_pair(b, 5002, 1 << 20, &port_b);
    static uint8_t data[8 * RX_DATA];
    assert_int_equal(write(a, data, sizeof(data)), sizeof(data));
    assert_int_equal(write(c, data, sizeof(data)), sizeof(data));
    sync_loop(b); /* both are readable now, and wait for rx buffers */
    post_rx(b, 6);
    unsigned count_a = 0, count_b = 0;
    struct pkt p;
    for (int i = 0; i < 6; i++) {
        expect_op(b, &p, RW);
        count_a += p.h.dst_port == 5001;
        count_b += p.h.dst_port == 5002;
    }
    assert_int_equal(count_a, 3);
    assert_int_equal(count_b, 3);
    close(a);
    close(c);
}

/* ---- Tests: guest connects and the Unix socket endpoint. ---- */

static void test_guest_connect(void **state)
{
    struct bench *b = *state;
    int l = listen_port(b, 0, 9000);
    post_rx(b, 4);
    send_op(b, REQUEST, 1234, 9000);
    struct pkt p;
    expect_op(b, &p, RESPONSE);
    assert_int_equal(p.h.src_port, 9000);
    assert_int_equal(p.h.dst_port, 1234);
    int fd = accept(l, NULL, NULL);
    assert_true(fd >= 0);
    send_data(b, 1234, 9000, "ping", 4);
    uint8_t buf[4];
    host_read_exact(fd, buf, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(write(fd, "pong", 4), 4);
    expect_op(b, &p, RW);
    assert_memory_equal(p.data, "pong", 4);

    /* Nothing listens on 9001. */
    send_op(b, REQUEST, 1235, 9001);
    expect_op(b, &p, RST);
    assert_int_equal(p.h.src_port, 9001);
    assert_int_equal(p.h.dst_port, 1235);
    close(fd);
}

static void test_guest_connect_without_uds(void **state)
{
    struct bench *b = *state;
    listen_port(b, 0, 9000); /* not used: the device has no uds_path */
    post_rx(b, 1);
    send_op(b, REQUEST, 1234, 9000);
    struct pkt p;
    expect_op(b, &p, RST);
    assert_int_equal(p.h.dst_port, 1234);
}

static void test_uds_endpoint(void **state)
{
    struct bench *b = *state;
    post_rx(b, 4);
    int client = uds_client(b);
    assert_int_equal(write(client, "CONNECT 77\nearly", 16), 16);
    struct pkt p;
    expect_op(b, &p, REQUEST);
    assert_int_equal(p.h.dst_port, 77);
    uint32_t host_port = p.h.src_port;
    assert_true(host_port >= FIRST_HOST_PORT);
    send_op(b, RESPONSE, 77, host_port);
    char line[32];
    char want[32];
    int len = snprintf(want, sizeof(want), "OK %u\n", host_port);
    host_read_exact(client, (uint8_t *)line, (size_t)len);
    assert_memory_equal(line, want, (size_t)len);
    /* Bytes written after the line were not eaten by the handshake. */
    expect_op(b, &p, RW);
    assert_int_equal(p.h.len, 5);
    assert_memory_equal(p.data, "early", 5);
    send_data(b, 77, host_port, "back", 4);
    host_read_exact(client, (uint8_t *)line, 4);
    assert_memory_equal(line, "back", 4);
    close(client);
}

static void test_uds_endpoint_refused_and_malformed(void **state)
{
    struct bench *b = *state;
    post_rx(b, 4);
    int client = uds_client(b);
    assert_int_equal(write(client, "CONNECT 78\n", 11), 11);
    struct pkt p;
    expect_op(b, &p, REQUEST);
    send_op(b, RST, 78, p.h.src_port);
    expect_eof(client);
    close(client);

    const char *bad[] = {"HELLO 1\n", "CONNECT\n", "CONNECT 99999999999\n", "CONNECT 1x\n",
                         "CONNECT 0000000000000000000000000000001\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        client = uds_client(b);
        assert_int_equal(write(client, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
        expect_closed(client);
        close(client);
    }
    expect_quiet(b, 20);
}

/* A client that never finishes its line, or whose REQUEST the guest never answers, is
 * dropped after the handshake time (3 s), so it cannot hold a slot for ever. */
static void test_uds_handshake_times_out(void **state)
{
    struct bench *b = *state;
    int silent = uds_client(b);
    assert_int_equal(write(silent, "CONN", 4), 4);
    int unanswered = uds_client(b);
    assert_int_equal(write(unanswered, "CONNECT 79\n", 11), 11);
    post_rx(b, 2);
    struct pkt p;
    expect_op(b, &p, REQUEST);
    uint32_t host_port = p.h.src_port;
    assert_false(wait_readable(silent, 2000)); /* still waiting well within the time */
    expect_closed(silent);
    expect_eof(unanswered);
    expect_op(b, &p, RST); /* the guest saw the REQUEST: it hears the end too */
    assert_int_equal(p.h.src_port, host_port);
    close(silent);
    close(unanswered);
}

/* ---- Tests: shutdown, reset, the end of the VM. ---- */

static void test_shutdown_both_ways(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    post_rx(b, 4);
    assert_int_equal(write(fd, "last", 4), 4);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    struct pkt p;
    expect_op(b, &p, RW);
    assert_memory_equal(p.data, "last", 4);
    expect_op(b, &p, SHUTDOWN);
    assert_int_equal(p.h.flags & 2, 2); /* the host sends no more */

    /* The guest still sends, then shuts down its side: data first, then end-of-file. */
    send_data(b, 5000, host_port, "tail", 4);
    struct hdr h = guest_hdr(SHUTDOWN, 5000, host_port);
    h.flags = 2;
    send_raw(b, &h, NULL, 0);
    uint8_t buf[4];
    host_read_exact(fd, buf, 4);
    assert_memory_equal(buf, "tail", 4);
    expect_eof(fd);
    /* Both directions done: the device resets the connection. */
    expect_op(b, &p, RST);
    assert_int_equal(p.h.src_port, host_port);
    close(fd);
}

static void test_guest_close_first(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    post_rx(b, 2);
    struct hdr h = guest_hdr(SHUTDOWN, 5000, host_port);
    h.flags = 3;
    send_raw(b, &h, NULL, 0);
    struct pkt p;
    expect_op(b, &p, RST);
    expect_eof(fd);
    close(fd);
}

static void test_guest_rst_closes_host(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    send_op(b, RST, 5000, host_port);
    expect_eof(fd);
    close(fd);
    post_rx(b, 1);
    expect_quiet(b, 20);
}

static void test_reset_closes_host_ends(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 5001, 5000, &p);
    reset_device(b);
    expect_eof(fd);
    assert_int_equal(finish_connect(&call), -ENOTCONN);
    assert_int_equal(virtio_vsock_connect(b->dev, 5000, 100), -ENOTCONN);
    close(fd);
    /* A new driver instance starts clean. */
    activate(b);
    fd = connect_pair(b, 5000, 1 << 20, &host_port);
    close(fd);
}

static void test_vsock_shutdown(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 5001, 5000, &p);
    stop_loop(b); /* the VM ended: nothing runs on the I/O thread any more */
    virtio_vsock_shutdown(b->dev);
    expect_eof(fd);
    assert_int_equal(finish_connect(&call), -ESHUTDOWN);
    assert_int_equal(virtio_vsock_connect(b->dev, 5000, 100), -ESHUTDOWN);
    close(fd);
}

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* With the loop still running: the guest hears of the end, nothing spins on the hung-up
 * sockets, and the Unix socket takes no more clients. */
static void test_vsock_shutdown_running(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    int client = uds_client(b);
    post_rx(b, 2);
    virtio_vsock_shutdown(b->dev);
    expect_eof(fd);
    expect_eof(client);
    struct pkt p;
    expect_op(b, &p, SHUTDOWN);
    assert_int_equal(p.h.src_port, host_port);
    double before = cpu_seconds();
    sleep_ms(200);
    assert_true(cpu_seconds() - before < 0.05);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", b->uds);
    int late = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(late, (struct sockaddr *)&addr, sizeof(addr)), -1);
    assert_int_equal(virtio_vsock_connect(b->dev, 5000, 100), -ESHUTDOWN);
    close(late);
    close(client);
    close(fd);
}

/* Guest data the host has not read yet still arrives before the end-of-file of a SHUTDOWN. */
static void test_guest_shutdown_after_buffered_data(void **state)
{
    struct bench *b = *state;
    enum { TOTAL = 240000, CHUNK = 12000 };
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    static uint8_t sent[TOTAL], got[TOTAL];
    guest_send_pattern(b, host_port, sent, TOTAL, CHUNK);
    struct hdr h = guest_hdr(SHUTDOWN, 5000, host_port);
    h.flags = 2;
    send_raw(b, &h, NULL, 0);
    host_read_exact(fd, got, TOTAL);
    assert_memory_equal(got, sent, TOTAL);
    expect_eof(fd);
    close(fd);
}

/* ---- Tests: a hostile driver. ---- */

static void test_connection_cap(void **state)
{
    struct bench *b = *state;
    enum { CAP = 256 };
    int l = listen_port(b, 0, 9000);
    static int clients[CAP];
    for (int i = 0; i < CAP; i++)
        clients[i] = uds_client(b); /* each waits in the handshake and holds a slot */
    int extra = uds_client(b);
    expect_eof(extra); /* beyond the cap: closed */
    close(extra);
    post_rx(b, 2);
    send_op(b, REQUEST, 1234, 9000);
    struct pkt p;
    expect_op(b, &p, RST);
    for (int i = 0; i < CAP; i++)
        close(clients[i]);
    sync_loop(b); /* their slots are free */
    send_op(b, REQUEST, 1234, 9000);
    expect_op(b, &p, RESPONSE);
    int fd = accept(l, NULL, NULL);
    assert_true(fd >= 0);
    close(fd);
}

static void test_malformed_headers(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    post_rx(b, 16);
    struct pkt p;
    struct hdr h;

    h = guest_hdr(RW, 1, 2); /* unknown connection */
    h.len = 1;
    send_raw(b, &h, "x", 1);
    expect_op(b, &p, RST);
    assert_int_equal(p.h.dst_port, 1);
    assert_int_equal(p.h.src_port, 2);
    h = guest_hdr(42, 1, 2); /* unknown op */
    send_raw(b, &h, NULL, 0);
    expect_op(b, &p, RST);
    h = guest_hdr(REQUEST, 1, 2); /* SEQPACKET was not offered */
    h.type = 2;
    send_raw(b, &h, NULL, 0);
    expect_op(b, &p, RST);
    h = guest_hdr(REQUEST, 1, 2); /* len beyond the chain */
    h.len = 0xffffffff;
    send_raw(b, &h, "abc", 3);
    expect_op(b, &p, RST);
    /* Not for the host, or not from this guest: nobody to answer. */
    h = guest_hdr(REQUEST, 1, 2);
    h.dst_cid = 7;
    send_raw(b, &h, NULL, 0);
    h = guest_hdr(REQUEST, 1, 2);
    h.src_cid = 4;
    send_raw(b, &h, NULL, 0);
    send_op(b, RST, 1, 2); /* a reset is never answered */
    /* A chain shorter than a header, and one with no readable bytes. */
    freeze(b);
    uint64_t gpa = alloc_buf(b, 64);
    struct fake_buf tiny = {gpa, 10, false}, writable = {gpa, 64, true};
    fake_post(&b->ring[TXQ], &tiny, 1);
    fake_post(&b->ring[TXQ], &writable, 1);
    b->dev->ops->queue_notify(b->dev, TXQ);
    thaw(b);
    expect_quiet(b, 20);

    /* The live connection survived all that. */
    send_data(b, 5000, host_port, "ok", 2);
    uint8_t buf[2];
    host_read_exact(fd, buf, 2);
    assert_memory_equal(buf, "ok", 2);

    /* Data whose len exceeds the chain resets that connection. */
    h = guest_hdr(RW, 5000, host_port);
    h.len = 100;
    send_raw(b, &h, "short", 5);
    expect_op(b, &p, RST);
    assert_int_equal(p.h.src_port, host_port);
    expect_eof(fd);
    assert_int_equal(needs_reset(b), 0);
    close(fd);
}

static void test_duplicate_request_resets(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    post_rx(b, 2);
    send_op(b, REQUEST, 5000, host_port);
    struct pkt p;
    expect_op(b, &p, RST);
    expect_eof(fd);
    close(fd);
}

static void test_data_on_unconnected_resets(void **state)
{
    struct bench *b = *state;
    struct connect_call call;
    struct pkt p;
    host_request(b, &call, 5000, 5000, &p);
    post_rx(b, 1);
    send_data(b, 5000, p.h.src_port, "early", 5); /* before the RESPONSE */
    expect_op(b, &p, RST);
    assert_int_equal(finish_connect(&call), -ECONNRESET);
}

static void test_orphan_resets_bounded(void **state)
{
    struct bench *b = *state;
    for (int i = 0; i < 100; i++)
        send_op(b, CREDIT_REQUEST, (uint32_t)i, 2);
    post_rx(b, 60);
    struct pkt p;
    unsigned n = 0;
    sleep_ms(20);
    while (try_recv(b, &p)) {
        assert_int_equal(p.h.op, RST);
        n++;
    }
    assert_true(n > 0 && n < 100); /* dropped when the ring was full */
}

static void test_malformed_ring_needs_reset(void **state)
{
    struct bench *b = *state;
    freeze(b);
    struct fake_buf bad = {OUTSIDE_RAM, 64, false};
    fake_post(&b->ring[TXQ], &bad, 1);
    b->dev->ops->queue_notify(b->dev, TXQ);
    thaw(b);
    assert_int_equal(needs_reset(b), 1);
    assert_int_equal(virtio_vsock_connect(b->dev, 5000, 100), -ENOTCONN);
    /* Idle until reset: a valid request is ignored. */
    freeze(b);
    post_rx_locked(b, 1);
    thaw(b);
    send_op(b, REQUEST, 1, 9000);
    expect_quiet(b, 20);
    reset_device(b);
    activate(b);
    post_rx(b, 1);
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    close(fd);
}

static void test_malformed_rx_ring_needs_reset(void **state)
{
    struct bench *b = *state;
    freeze(b);
    struct fake_buf bad = {OUTSIDE_RAM, 4096, true};
    fake_post(&b->ring[RXQ], &bad, 1);
    b->dev->ops->queue_notify(b->dev, RXQ);
    thaw(b);
    send_op(b, REQUEST, 1, 9000); /* owes a RST: the device looks at the rx ring */
    assert_int_equal(needs_reset(b), 1);
}

/* ---- Snapshots ---- */

static int save_frozen(struct bench *b, struct snap_writer *w)
{
    freeze(b);
    int r = b->dev->ops->save(b->dev, w);
    thaw(b);
    return r;
}

/* A connection's host end is a socket of this process, which a restored VM would not have. */
static void test_snapshot_only_without_connections(void **state)
{
    struct bench *b = *state;
    struct snap_writer w;
    snap_writer_init(&w);
    assert_int_equal(save_frozen(b, &w), 0);
    snap_writer_free(&w);

    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    snap_writer_init(&w);
    assert_int_equal(save_frozen(b, &w), -EBUSY);
    snap_writer_free(&w);
    close(fd);
}

/* A driver that keeps the transmit ring full cannot hold the I/O thread: a kick returns after
 * the drain budget and asks to be requeued. The packet, from another CID, is dropped unanswered
 * each time; the live connection is unharmed. */
static void test_refilling_driver_requeued(void **state)
{
    struct bench *b = *state;
    uint32_t host_port;
    int fd = connect_pair(b, 5000, 1 << 20, &host_port);
    freeze(b);
    uint64_t gpa = alloc_buf(b, HDR);
    struct hdr h = guest_hdr(RW, 5000, host_port);
    h.src_cid = CID + 1;
    memcpy(fake_ptr(&b->mem, gpa, HDR), &h, HDR);
    struct fake_buf buf = {gpa, HDR, false};
    uint16_t head = fake_post(&b->ring[TXQ], &buf, 1);
    struct fake_refiller f;
    fake_refiller_start(&f, &b->ring[TXQ], head);
    fake_kick_until_requeued(b->dev, &b->t, TXQ);
    fake_refiller_stop(&f);
    /* The requeued turn: what the refiller left (less than a ring) goes, and the ring is
     * empty again for the data below. */
    b->dev->ops->queue_notify(b->dev, TXQ);
    assert_int_equal(b->t.requeues[TXQ], 1);
    assert_int_equal(b->t.needs_reset, 0);
    thaw(b);
    send_data(b, 5000, host_port, "ok", 2);
    uint8_t got[2];
    host_read_exact(fd, got, 2);
    assert_memory_equal(got, "ok", 2);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test_setup_teardown(test_connect_not_ready, setup_inactive, teardown),
        cmocka_unit_test_setup_teardown(test_connect_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_without_rx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_to_guest_within_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_to_guest_waits_for_buffers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_to_host_bulk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refilling_driver_requeued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_beyond_credit_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credit_request_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_connect_without_uds, setup_no_uds, teardown),
        cmocka_unit_test_setup_teardown(test_uds_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uds_endpoint_refused_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uds_handshake_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_close_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_rst_closes_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_closes_host_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vsock_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vsock_shutdown_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_shutdown_after_buffered_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_request_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_on_unconnected_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_resets_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_ring_needs_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_rx_ring_needs_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_only_without_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
