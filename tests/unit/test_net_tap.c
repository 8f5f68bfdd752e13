/*
 * The TAP backend over a SOCK_SEQPACKET socket pair standing in for the tap's descriptor (one
 * datagram per frame, as a tap reads and writes): frames both ways with and without the
 * virtio-net header (passed through intact, offloads included, once the guest accepted them),
 * hostile reads and headers dropped and counted, backpressure (the descriptor is not
 * read while the guest has no room, and nothing is lost), a descriptor that ends leaves the
 * loop; and net_tap_open's errors for names that are not attachable, creating nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "io_loop.h"
#include "loop_thread.h"
#include "net/tap.h"

#define MAX_FRAMES 64
#define HDR NET_TAP_VNET_HDR_SIZE

struct harness {
    struct loop_thread io; /* the I/O thread; io.loop is the backend's loop */
    int peer; /* the "kernel" side of the tap */
    pthread_mutex_t lock;
    void (*fn)(struct harness *h, void *arg); /* the call on the I/O thread */
    void *arg;
    struct net_backend *be;
    bool accept; /* whether the receiver has room */
    uint8_t frames[MAX_FRAMES][128];
    size_t lens[MAX_FRAMES];
    unsigned count;
};

static void call_trampoline(void *opaque)
{
    struct harness *h = opaque;
    h->fn(h, h->arg);
}

/* Runs fn on the I/O thread, as everything touching the backend must. */
static void on_loop(struct harness *h, void (*fn)(struct harness *, void *), void *arg)
{
    h->fn = fn;
    h->arg = arg;
    loop_thread_call(&h->io, call_trampoline, h);
}

static bool receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct harness *h = opaque;
    pthread_mutex_lock(&h->lock);
    bool ok = h->accept;
    if (ok && h->count < MAX_FRAMES) { /* the first bytes of each, and its length */
        size_t keep = len < sizeof(h->frames[0]) ? len : sizeof(h->frames[0]);
        memcpy(h->frames[h->count], frame, keep);
        h->lens[h->count++] = len;
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

static bool vnet_arg;

static void do_create(struct harness *h, void *arg)
{
    int fd = *(int *)arg;
    h->be = net_tap_new_fd(h->io.loop, fd, vnet_arg);
    assert_non_null(h->be);
    net_backend_set_receiver(h->be, receive, h);
}

static int setup_with(void **state, bool vnet_hdr)
{
    struct harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h->accept = true;
    pthread_mutex_init(&h->lock, NULL);
    loop_thread_start(&h->io);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    h->peer = sv[1];
    vnet_arg = vnet_hdr;
    on_loop(h, do_create, &sv[0]);
    *state = h;
    return 0;
}

static int setup_vnet(void **state) { return setup_with(state, true); }
static int setup_plain(void **state) { return setup_with(state, false); }

static void do_free(struct harness *h, void *arg)
{
    (void)arg;
    net_backend_free(h->be);
    h->be = NULL;
}

static int teardown(void **state)
{
    struct harness *h = *state;
    on_loop(h, do_free, NULL);
    loop_thread_stop(&h->io);
    pthread_mutex_destroy(&h->lock);
    if (h->peer >= 0)
        close(h->peer);
    free(h);
    return 0;
}

/* ---- Helpers. ---- */

static size_t make_frame(uint8_t *buf, uint8_t tag)
{
    memset(buf, 0, 60);
    memset(buf, 0xff, 6);       /* broadcast */
    buf[6] = 0x02;              /* a locally administered source */
    buf[12] = 0x08;             /* IPv4 */
    buf[14] = tag;              /* tells frames apart */
    return 60;
}

struct send_arg {
    uint8_t frame[HDR + 64];
    size_t len;
};

static void do_send(struct harness *h, void *arg)
{
    struct send_arg *a = arg;
    net_backend_send(h->be, a->frame, a->len);
}

static void peer_write(struct harness *h, const void *hdr, size_t hdr_len, const void *frame,
                       size_t len)
{
    struct iovec iov[2] = {{(void *)hdr, hdr_len}, {(void *)frame, len}};
    struct msghdr msg = {.msg_iov = hdr_len ? iov : iov + 1, .msg_iovlen = hdr_len ? 2 : 1};
    assert_int_equal(sendmsg(h->peer, &msg, 0), (ssize_t)(hdr_len + len));
}

static unsigned received(struct harness *h)
{
    pthread_mutex_lock(&h->lock);
    unsigned n = h->count;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* Waits up to 2 s for n frames at the receiver. */
static void wait_received(struct harness *h, unsigned n)
{
    for (int i = 0; i < 200 && received(h) < n; i++)
        usleep(10000);
    assert_int_equal(received(h), n);
}

struct snap {
    struct net_stats stats;
    struct net_tap_stats tap;
    unsigned queued;
};

static void do_snap(struct harness *h, void *arg)
{
    struct snap *s = arg;
    s->stats = *net_backend_stats(h->be);
    s->tap = *net_tap_stats(h->be);
    s->queued = h->be->rxq_count;
}

static struct snap snap(struct harness *h)
{
    struct snap s;
    on_loop(h, do_snap, &s);
    return s;
}

/* ---- Tests. ---- */

/* Guest to tap: the header virtio-net checked goes to the kernel intact, offloads and all. */
static void test_send_vnet(void **state)
{
    struct harness *h = *state;
    struct send_arg a;
    static const uint8_t tso[HDR] = {1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0};
    memcpy(a.frame, tso, HDR);
    a.len = HDR + make_frame(a.frame + HDR, 7);
    on_loop(h, do_send, &a);
    uint8_t got[128];
    ssize_t n = recv(h->peer, got, sizeof(got), 0);
    assert_int_equal(n, HDR + 60);
    assert_memory_equal(got, a.frame, HDR + 60);
    assert_int_equal(snap(h).stats.tx_frames, 1);
}

static void test_send_plain(void **state)
{
    struct harness *h = *state;
    struct send_arg a;
    a.len = make_frame(a.frame, 9);
    on_loop(h, do_send, &a);
    uint8_t got[128];
    assert_int_equal(recv(h->peer, got, sizeof(got), 0), 60);
    assert_memory_equal(got, a.frame, 60);
}

/* Tap to guest: the frame behind its header; short reads and offload claims (none enabled
 * yet) are dropped and counted, and the frame after them still arrives. */
static void test_receive_vnet_and_hostile(void **state)
{
    struct harness *h = *state;
    uint8_t frame[64], hdr[HDR] = {2}; /* DATA_VALID: the kernel's to say */
    make_frame(frame, 1);
    peer_write(h, hdr, HDR, frame, 60);
    peer_write(h, hdr, HDR, frame, 5);  /* shorter than an Ethernet header */
    peer_write(h, hdr, 4, NULL, 0);     /* shorter than the virtio-net header */
    uint8_t gso[HDR] = {1, 1, 54, 0, 6, 0, 34, 0, 16, 0}; /* GSO_TCPV4, sound but not enabled */
    peer_write(h, gso, HDR, frame, 60);
    uint8_t csum[HDR] = {1, 0, 0, 0, 0, 0, 34, 0, 16, 0};    /* NEEDS_CSUM */
    peer_write(h, csum, HDR, frame, 60);
    make_frame(frame, 2);
    peer_write(h, hdr, HDR, frame, 60);
    wait_received(h, 2);
    assert_int_equal(h->lens[0], HDR + 60);
    assert_memory_equal(h->frames[0], hdr, HDR);
    assert_int_equal(h->frames[0][HDR + 14], 1);
    assert_int_equal(h->frames[1][HDR + 14], 2);
    struct snap s = snap(h);
    assert_int_equal(s.tap.rx_bad, 4);
    assert_int_equal(s.stats.rx_frames, 2);
}

static void do_set_offloads(struct harness *h, void *arg)
{
    net_backend_set_rx_offloads(h->be, *(unsigned *)arg);
}

static uint8_t big[HDR + NET_FRAME_MAX + 1];

/* Once the guest accepted CSUM and TSO4, the kernel's 64 KiB TSO frames reach it with their
 * header intact; headers claiming more, or pointing outside the frame, and reads longer than
 * the largest frame, do not. (TUNSETOFFLOAD itself fails on a socket pair, counted.) */
static void test_receive_offloads(void **state)
{
    struct harness *h = *state;
    unsigned o = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4;
    on_loop(h, do_set_offloads, &o);
    assert_int_equal(snap(h).tap.offload_errors, 1);
    const uint8_t good[HDR] = {1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0};
    const uint8_t bad[][HDR] = {
        {1, 4, 54, 0, 0xa8, 5, 34, 0, 16, 0},    /* TCPV6: not accepted */
        {1, 0x81, 54, 0, 0xa8, 5, 34, 0, 16, 0}, /* ECN: not accepted */
        {1, 3, 54, 0, 0xa8, 5, 34, 0, 16, 0},    /* UDP */
        {1, 1, 54, 0, 0, 0, 34, 0, 16, 0},       /* gso_size 0 */
        {1, 1, 54, 0, 0xa8, 5, 0xff, 0xff, 16, 0}, /* checksum outside the frame */
        {0, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0},    /* GSO without NEEDS_CSUM */
        {0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0},       /* an unknown flag */
    };
    make_frame(big + HDR, 5);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        peer_write(h, bad[i], HDR, big + HDR, 4000);
    peer_write(h, good, HDR, big + HDR, NET_FRAME_MAX + 1); /* one byte too long */
    peer_write(h, good, HDR, big + HDR, NET_FRAME_MAX);
    wait_received(h, 1);
    assert_int_equal(h->lens[0], HDR + NET_FRAME_MAX);
    assert_memory_equal(h->frames[0], good, HDR);
    assert_int_equal(h->frames[0][HDR + 14], 5);
    assert_int_equal(snap(h).tap.rx_bad, sizeof(bad) / sizeof(bad[0]) + 1);
}

static void test_receive_plain(void **state)
{
    struct harness *h = *state;
    uint8_t frame[64];
    make_frame(frame, 3);
    peer_write(h, NULL, 0, frame, 60);
    wait_received(h, 1);
    assert_memory_equal(h->frames[0], frame, 60);
}

static void do_release(struct harness *h, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&h->lock);
    h->accept = true;
    pthread_mutex_unlock(&h->lock);
    net_backend_rx_ready(h->be);
}

/* While the receiver has no room, one frame waits in the backend and the rest stay unread in
 * the descriptor; once it has room, all arrive in order and none was dropped. */
static void test_backpressure(void **state)
{
    struct harness *h = *state;
    h->accept = false;
    uint8_t frame[64], hdr[HDR] = {0};
    for (uint8_t i = 0; i < 8; i++) {
        make_frame(frame, i);
        peer_write(h, hdr, HDR, frame, 60);
    }
    usleep(100000);
    struct snap s = snap(h);
    assert_int_equal(s.queued, 1);
    assert_int_equal(s.tap.pauses, 1);
    assert_int_equal(received(h), 0);
    on_loop(h, do_release, NULL);
    wait_received(h, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(h->frames[i][HDR + 14], i);
    s = snap(h);
    assert_int_equal(s.stats.rx_dropped, 0);
    assert_int_equal(s.queued, 0);
}

static void do_count_fds(struct harness *h, void *arg)
{
    (void)h;
    (void)arg;
}

/* The other end goes away: the descriptor leaves the loop (no busy loop on its hang-up), and
 * frames from the guest are counted as refused. */
static void test_peer_gone(void **state)
{
    struct harness *h = *state;
    close(h->peer);
    h->peer = -1;
    usleep(50000);
    on_loop(h, do_count_fds, NULL); /* the loop still serves other handlers */
    assert_true(snap(h).tap.gone);
    struct send_arg a;
    memset(a.frame, 0, HDR);
    a.len = HDR + make_frame(a.frame + HDR, 4);
    on_loop(h, do_send, &a);
    assert_int_equal(snap(h).tap.tx_errors, 1);
}

/* Names that cannot be attached: one line each, the errno the CLI reports, nothing created. */
static void test_open_errors(void **state)
{
    (void)state;
    char error[256];
    struct net_tap_config c = {.name = "cove-none-7", .vnet_hdr = true};
    assert_int_equal(net_tap_open(&c, error, sizeof(error)), -ENODEV);
    assert_string_equal(error, "tap 'cove-none-7': no such device (create it first: ip tuntap "
                               "add dev NAME mode tap [user USER])");
    assert_int_equal(if_nametoindex("cove-none-7"), 0);
    c.name = "sixteen-chars-xx";
    assert_int_equal(net_tap_open(&c, error, sizeof(error)), -EINVAL);
    assert_string_equal(error, "tap 'sixteen-chars-xx': a device name is 1 to 15 characters");
    c.name = "";
    assert_int_equal(net_tap_open(&c, error, sizeof(error)), -EINVAL);
    /* lo exists but is no TAP: refused (EINVAL) by TUNSETIFF, or EACCES/EPERM before it when
     * this user may not open /dev/net/tun. */
    c.name = "lo";
    int r = net_tap_open(&c, error, sizeof(error));
    assert_true(r == -EINVAL || r == -EACCES || r == -EPERM);
    assert_int_equal(strncmp(error, "tap 'lo': ", 10), 0);
    int err = 0;
    assert_null(net_tap_new(NULL, &c, &err, error, sizeof(error)));
    assert_int_equal(err, r);
}

int main(void)
{
    /* Writing to the pair's closed end raises SIGPIPE, which a tap never does. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_vnet, setup_vnet, teardown),
        cmocka_unit_test_setup_teardown(test_send_plain, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_receive_vnet_and_hostile, setup_vnet, teardown),
        cmocka_unit_test_setup_teardown(test_receive_offloads, setup_vnet, teardown),
        cmocka_unit_test_setup_teardown(test_receive_plain, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup_vnet, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone, setup_vnet, teardown),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
