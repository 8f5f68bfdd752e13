/*
 * virtio-net: transmitted frames reach the backend with the header stripped, and only sane
 * ones; frames for the guest fill one posted buffer, or several with MRG_RXBUF (num_buffers
 * says how many), wait in the backend's bounded queue while the guest has posted too little,
 * and never spill outside the buffers; a malformed ring asks for a reset.
 *
 * The test is the driver (rings in fake guest RAM), the transport (fake_driver.h) and the
 * backend (a fake that records what it is sent; frames for the guest are injected with
 * net_backend_deliver, as a real backend would).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "virtio/net.h"

#define MEM_SIZE (1 * X86_MiB)
#define QSIZE 16
#define RXQ 0
#define TXQ 1
#define RING_GPA(q) (0x1000ULL + 0x3000ULL * (q))
#define DATA_GPA 0x10000ULL
#define OUTSIDE_RAM 0x40000000ULL
#define HDR VIRTIO_NET_HDR_SIZE
#define BIT(n) (1ULL << (n))
#define PASSTHROUGH_FEATURES                                                                  \
    (BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |  \
     BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN))

static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

struct fake_backend {
    struct net_backend be;
    unsigned sent;
    size_t last_len;
    uint8_t last[HDR + NET_FRAME_MAX];
    int rx_offloads; /* the last set_rx_offloads, -1 before any */
};

static void fake_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct fake_backend *fb = (struct fake_backend *)be;
    fb->sent++;
    fb->last_len = len;
    memcpy(fb->last, frame, len);
}

static void fake_destroy(struct net_backend *be) { free(be); }

static const struct net_backend_ops fake_ops = {.send = fake_send, .destroy = fake_destroy};

static void fake_set_rx_offloads(struct net_backend *be, unsigned offloads)
{
    ((struct fake_backend *)be)->rx_offloads = (int)offloads;
}

/* A tap-like backend: headers through, every offload, and told which the guest accepted. */
static const struct net_backend_ops vnet_ops = {
    .send = fake_send, .destroy = fake_destroy, .set_rx_offloads = fake_set_rx_offloads};

struct bench {
    struct guest_mem mem;
    struct virtio_device *dev;
    struct fake_backend *fb;
    struct virtq queues[2];
    bool enabled[2];
    struct fake_transport t;
    struct fake_ring ring[2];
    uint64_t next_data;
};

static void enable_queues(struct bench *b)
{
    for (unsigned q = 0; q < 2; q++) {
        memset(fake_ptr(&b->mem, RING_GPA(q), 0x3000), 0, 0x3000);
        fake_ring_init(&b->ring[q], &b->mem, QSIZE, RING_GPA(q));
        assert_int_equal(virtq_init(&b->queues[q], &b->mem, QSIZE, b->ring[q].desc,
                                    b->ring[q].avail, b->ring[q].used, false, false), 0);
        b->enabled[q] = true;
    }
}

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->next_data = DATA_GPA;
    b->fb = calloc(1, sizeof(*b->fb));
    assert_non_null(b->fb);
    struct net_policy open_policy = {NET_POLICY_OPEN, 0, 0};
    net_backend_init(&b->fb->be, &fake_ops, &open_policy);
    b->dev = virtio_net_new(mac, &b->fb->be);
    assert_non_null(b->dev);
    enable_queues(b);
    b->dev->queues = b->queues;
    b->dev->queue_enabled = b->enabled;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC |
                              1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_MRG_RXBUF;
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

/* A zeroed buffer followed by a 16-byte 0xaa canary the device must not touch. */
static uint64_t alloc_buf(struct bench *b, uint32_t len)
{
    uint64_t gpa = b->next_data;
    memset(fake_ptr(&b->mem, gpa, len), 0, len);
    memset(fake_ptr(&b->mem, gpa + len, 16), 0xaa, 16);
    b->next_data = (gpa + len + 16 + 15) & ~15ULL;
    return gpa;
}

static bool canary_intact(struct bench *b, uint64_t gpa, uint32_t len)
{
    const uint8_t *p = fake_ptr(&b->mem, gpa + len, 16);
    for (int i = 0; i < 16; i++)
        if (p[i] != 0xaa)
            return false;
    return true;
}

static void activate(struct bench *b) { b->dev->ops->activate(b->dev); }
static void kick(struct bench *b, unsigned q) { b->dev->ops->queue_notify(b->dev, q); }

static void fill_pattern(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

/* A transmit chain: a header (flags, gso_type) in its own descriptor, then a frame of len
 * bytes filled with the pattern. */
static uint16_t post_tx(struct bench *b, uint8_t flags, uint8_t gso, uint32_t len)
{
    uint64_t hdr = alloc_buf(b, HDR), data = alloc_buf(b, len);
    uint8_t *h = fake_ptr(&b->mem, hdr, HDR);
    h[0] = flags;
    h[1] = gso;
    fill_pattern(fake_ptr(&b->mem, data, len), len, 1);
    struct fake_buf bufs[2] = {{hdr, HDR, false}, {data, len, false}};
    return fake_post(&b->ring[TXQ], bufs, 2);
}

static uint64_t post_rx(struct bench *b, uint32_t len)
{
    uint64_t gpa = alloc_buf(b, len);
    struct fake_buf buf = {gpa, len, true};
    fake_post(&b->ring[RXQ], &buf, 1);
    return gpa;
}

static void deliver(struct bench *b, size_t len, uint8_t seed)
{
    static uint8_t frame[NET_FRAME_MAX];
    fill_pattern(frame, len, seed);
    net_backend_deliver(&b->fb->be, frame, len);
}

static uint16_t num_buffers(struct bench *b, uint64_t gpa)
{
    return fake_get16(&b->mem, gpa + 10);
}

/* ---- Tests. ---- */

static void test_identity_and_config(void **state)
{
    struct bench *b = *state;
    assert_int_equal(b->dev->device_id, VIRTIO_ID_NET);
    assert_int_equal(b->dev->num_queues, 2);
    uint64_t f = b->dev->device_features;
    assert_true(f & 1ULL << VIRTIO_NET_F_MAC);
    assert_true(f & 1ULL << VIRTIO_NET_F_MRG_RXBUF);
    assert_true(f & 1ULL << VIRTIO_NET_F_STATUS);
    /* Checksums are completed by the device whatever the backend; a backend that claims
     * neither valid checksums nor a larger MTU gets neither offered. */
    assert_true(f & 1ULL << VIRTIO_NET_F_CSUM);
    assert_false(f & 1ULL << VIRTIO_NET_F_GUEST_CSUM);
    assert_false(f & 1ULL << VIRTIO_NET_F_MTU);
    assert_int_equal(f & PASSTHROUGH_FEATURES, 0); /* headers are not passed on */
    uint8_t cfg[12];
    b->dev->ops->config_read(b->dev, 0, cfg, sizeof(cfg));
    assert_memory_equal(cfg, mac, 6);
    assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
    assert_int_equal(cfg[10] | cfg[11] << 8, 1500);
    uint8_t tail[8];
    b->dev->ops->config_read(b->dev, 6, tail, sizeof(tail));
    assert_int_equal(tail[0], 1);
    assert_int_equal(tail[6] | tail[7], 0); /* past the config space */
}

/* A backend that builds its frames and has a large link gets GUEST_CSUM and MTU offered; the
 * MTU is in the config space and each receive header says DATA_VALID once negotiated. */
/* The device made again over a new fake backend, of the kind given. */
static void rebuild(struct bench *b, const struct net_backend_ops *ops, bool capable, bool vnet)
{
    b->dev->ops->destroy(b->dev);
    b->fb = calloc(1, sizeof(*b->fb));
    assert_non_null(b->fb);
    struct net_policy open_policy = {NET_POLICY_OPEN, 0, 0};
    net_backend_init(&b->fb->be, ops, &open_policy);
    b->fb->rx_offloads = -1;
    if (capable) {
        b->fb->be.mtu = 65520;
        b->fb->be.rx_csum_valid = true;
    }
    if (vnet) {
        b->fb->be.vnet_hdr = true;
        b->fb->be.offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
                             NET_OFFLOAD_ECN;
    }
    b->dev = virtio_net_new(mac, &b->fb->be);
    assert_non_null(b->dev);
    b->dev->queues = b->queues;
    b->dev->queue_enabled = b->enabled;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
}

static void test_capable_backend(void **state)
{
    struct bench *b = *state;
    rebuild(b, &fake_ops, true, false);
    uint64_t f = b->dev->device_features;
    assert_int_equal(f & PASSTHROUGH_FEATURES, 0); /* slirp's set, unchanged */
    assert_true(f & 1ULL << VIRTIO_NET_F_GUEST_CSUM);
    assert_true(f & 1ULL << VIRTIO_NET_F_MTU);
    uint8_t mtu[2];
    b->dev->ops->config_read(b->dev, 10, mtu, sizeof(mtu));
    assert_int_equal(mtu[0] | mtu[1] << 8, 65520);
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
                              1ULL << VIRTIO_NET_F_GUEST_CSUM;
    activate(b);
    uint64_t gpa[2] = {post_rx(b, 40000), post_rx(b, 40000)};
    deliver(b, 65520 + 14, 9); /* the largest frame such a link carries, across two buffers */
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 2);
    assert_int_equal(num_buffers(b, gpa[0]), 2);
    const uint8_t *h = fake_ptr(&b->mem, gpa[0], HDR);
    assert_int_equal(h[0], 2); /* VIRTIO_NET_HDR_F_DATA_VALID */
    for (int i = 1; i < 10; i++)
        assert_int_equal(h[i], 0);
    assert_true(canary_intact(b, gpa[1], 40000));
}

static void test_tx_frame_reaches_backend(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint16_t head = post_tx(b, 0, 0, 60);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
    assert_int_equal(b->fb->last_len, 60);
    uint8_t want[60];
    fill_pattern(want, sizeof(want), 1);
    assert_memory_equal(b->fb->last, want, sizeof(want));
    assert_int_equal(fake_used_idx(&b->ring[TXQ]), 1);
    assert_int_equal(fake_used_id(&b->ring[TXQ], 0), head);
    assert_int_equal(fake_used_len(&b->ring[TXQ], 0), 0);
    assert_int_equal(b->t.signals[TXQ], 1);
}

/* A driver that keeps the transmit ring full cannot hold the I/O thread: a kick returns after
 * the drain budget and asks the transport to come back (see test_virtio_rng for the idea). */
static void test_tx_refilling_driver_requeued(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint16_t head = post_tx(b, 0, 0, 60);
    struct fake_refiller f;
    fake_refiller_start(&f, &b->ring[TXQ], head);
    fake_kick_until_requeued(b->dev, &b->t, TXQ);
    fake_refiller_stop(&f);
    assert_int_equal(b->t.requeues[TXQ], 1);
    assert_int_equal(b->t.needs_reset, 0);
    assert_true(b->fb->sent >= VIRTQ_DRAIN_BUDGET);
}

/* Too short, too long, writable, asking for offloads: all returned, none handed on. */
static void test_tx_bad_chains_refused(void **state)
{
    struct bench *b = *state;
    activate(b);
    post_tx(b, 0, 0, NET_FRAME_MIN - 1);
    post_tx(b, 0, 0, NET_FRAME_MAX + 1);
    post_tx(b, 1, 0, 60); /* NEEDS_CSUM */
    post_tx(b, 0, 1, 60); /* GSO_TCPV4 */
    struct fake_buf bufs[2] = {{alloc_buf(b, 80), 80, false}, {alloc_buf(b, 16), 16, true}};
    fake_post(&b->ring[TXQ], bufs, 2);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 0);
    assert_int_equal(virtio_net_stats(b->dev)->tx_bad, 5);
    assert_int_equal(fake_used_idx(&b->ring[TXQ]), 5);
    assert_int_equal(b->t.needs_reset, 0);
    post_tx(b, 0, 0, NET_FRAME_MAX);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
    assert_int_equal(b->fb->last_len, NET_FRAME_MAX);
}

/* ---- Checksum offload. ---- */

#define ETH 14
#define IPH 20

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* RFC 1071 written out separately from the device's: 32-bit accumulator, folded at the end. */
static uint32_t ref_sum(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sum += i & 1 ? p[i] : (uint32_t)p[i] << 8;
    return sum;
}

static uint16_t ref_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* The pseudo-header's sum for an IPv4 frame built by ip_frame. */
static uint32_t pseudo_sum(const uint8_t *f, uint8_t proto, size_t l4_len)
{
    return ref_sum(0, f + ETH + 12, 8) + proto + (uint32_t)l4_len;
}

/* Ethernet + IPv4 + l4_len bytes of patterned transport data (ports, lengths don't matter
 * to a checksum). */
static size_t ip_frame(uint8_t *f, uint8_t proto, size_t l4_len)
{
    memset(f, 0, ETH + IPH);
    put_be16(f + 12, 0x0800);
    f[ETH] = 0x45;
    put_be16(f + ETH + 2, (uint16_t)(IPH + l4_len));
    f[ETH + 8] = 64;
    f[ETH + 9] = proto;
    const uint8_t addrs[8] = {10, 0, 2, 15, 10, 0, 2, 2};
    memcpy(f + ETH + 12, addrs, 8);
    fill_pattern(f + ETH + IPH, l4_len, 0x5b);
    return ETH + IPH + l4_len;
}

/* A transmit chain with the header's every field given. */
static void post_tx_hdr(struct bench *b, uint8_t flags, uint8_t gso, uint16_t start,
                        uint16_t offset, const uint8_t *frame, uint32_t len)
{
    uint64_t hdr = alloc_buf(b, HDR), data = alloc_buf(b, len);
    uint8_t *h = fake_ptr(&b->mem, hdr, HDR);
    h[0] = flags;
    h[1] = gso;
    h[6] = (uint8_t)start;
    h[7] = (uint8_t)(start >> 8);
    h[8] = (uint8_t)offset;
    h[9] = (uint8_t)(offset >> 8);
    memcpy(fake_ptr(&b->mem, data, len), frame, len);
    struct fake_buf bufs[2] = {{hdr, HDR, false}, {data, len, false}};
    fake_post(&b->ring[TXQ], bufs, 2);
}

static void negotiate_csum(struct bench *b)
{
    b->dev->driver_features |= 1ULL << VIRTIO_NET_F_CSUM;
    activate(b);
}

/* The guest leaves the pseudo-header sum in the field, as Linux does for CHECKSUM_PARTIAL;
 * the backend must get the checksum an independent computation gives, the rest untouched. */
static void expect_completed(struct bench *b, uint8_t proto, uint16_t field, size_t l4_len)
{
    static uint8_t f[NET_FRAME_MAX], want[NET_FRAME_MAX];
    size_t len = ip_frame(f, proto, l4_len);
    uint8_t *l4 = f + ETH + IPH;
    memset(l4 + field, 0, 2);
    uint16_t csum = (uint16_t)~ref_fold(ref_sum(pseudo_sum(f, proto, l4_len), l4, l4_len));
    memcpy(want, f, len);
    put_be16(want + ETH + IPH + field, csum ? csum : 0xffff);
    put_be16(l4 + field, ref_fold(pseudo_sum(f, proto, l4_len)));
    unsigned sent = b->fb->sent;
    post_tx_hdr(b, 1, 0, ETH + IPH, field, f, (uint32_t)len);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, sent + 1);
    assert_int_equal(b->fb->last_len, len);
    assert_memory_equal(b->fb->last, want, len);
    /* And the receiver's check: pseudo-header plus segment sum to all ones. */
    uint32_t check = ref_sum(pseudo_sum(f, proto, l4_len), b->fb->last + ETH + IPH, l4_len);
    assert_int_equal(ref_fold(check), 0xffff);
}

static void test_tx_csum_completed(void **state)
{
    struct bench *b = *state;
    negotiate_csum(b);
    expect_completed(b, 6, 16, 20 + 1000);       /* TCP, even length */
    expect_completed(b, 6, 16, 20 + 33);         /* TCP, odd length: the last byte padded */
    expect_completed(b, 17, 6, 8 + 1);           /* UDP */
    expect_completed(b, 6, 16, 65520 - IPH);     /* a full 65520-byte packet */
    assert_int_equal(virtio_net_stats(b->dev)->tx_bad, 0);
}

/* Guest-supplied offsets that put the field outside the frame (or into the Ethernet header),
 * unknown flags, and segmentation that was never offered: each frame refused, none sent. */
static void test_tx_csum_hostile_headers(void **state)
{
    struct bench *b = *state;
    negotiate_csum(b);
    static uint8_t f[NET_FRAME_MAX];
    uint32_t len = (uint32_t)ip_frame(f, 6, 40);
    const struct {
        uint8_t flags, gso;
        uint16_t start, offset;
    } bad[] = {
        {1, 0, 13, 16},                          /* start in the Ethernet header */
        {1, 0, (uint16_t)len, 0},                /* start at the end */
        {1, 0, (uint16_t)(len - 1), 0},          /* one byte left for the field */
        {1, 0, ETH + IPH, 39},                   /* field half outside */
        {1, 0, ETH + IPH, 0xffff},               /* offset wraps */
        {1, 0, 0xffff, 0xffff},
        {1 | 4, 0, ETH + IPH, 16},               /* an unknown flag (RSC_INFO) */
        {2, 0, ETH + IPH, 16},                   /* DATA_VALID is receive-only */
        {1, 1, ETH + IPH, 16},                   /* GSO_TCPV4, not offered */
        {1, 0x80, ETH + IPH, 16},                /* GSO_ECN */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* One at a time: ten two-descriptor chains would wrap the ring before the kick. */
        post_tx_hdr(b, bad[i].flags, bad[i].gso, bad[i].start, bad[i].offset, f, len);
        kick(b, TXQ);
        assert_int_equal(virtio_net_stats(b->dev)->tx_bad, i + 1);
    }
    assert_int_equal(b->fb->sent, 0);
    assert_int_equal(fake_used_idx(&b->ring[TXQ]), 10);
    assert_int_equal(b->t.needs_reset, 0);
    /* The last place the field fits is taken. */
    post_tx_hdr(b, 1, 0, ETH + IPH, 38, f, len);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
}

/* Without NEEDS_CSUM the offsets are not looked at, and the frame goes on as it is. */
static void test_tx_csum_offsets_ignored_without_flag(void **state)
{
    struct bench *b = *state;
    negotiate_csum(b);
    static uint8_t f[NET_FRAME_MAX];
    uint32_t len = (uint32_t)ip_frame(f, 6, 40);
    post_tx_hdr(b, 0, 0, 0xffff, 0xffff, f, len);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
    assert_memory_equal(b->fb->last, f, len);
}

static void test_rx_single_buffer(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint64_t gpa = post_rx(b, 1526);
    deliver(b, 100, 3);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 1);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 0), HDR + 100);
    assert_int_equal(num_buffers(b, gpa), 1);
    const uint8_t *p = fake_ptr(&b->mem, gpa, HDR + 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(p[i], 0);
    uint8_t want[100];
    fill_pattern(want, sizeof(want), 3);
    assert_memory_equal(p + HDR, want, sizeof(want));
    assert_true(canary_intact(b, gpa, 1526));
    assert_int_equal(b->t.signals[RXQ], 1);
}

static void test_rx_merges_buffers(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint64_t gpa[3];
    for (int i = 0; i < 3; i++)
        gpa[i] = post_rx(b, 512);
    deliver(b, 1200, 5);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 3);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 0), 512);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 1), 512);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 2), HDR + 1200 - 1024);
    assert_int_equal(num_buffers(b, gpa[0]), 3);
    uint8_t got[HDR + 1200], want[1200];
    for (int i = 0; i < 3; i++)
        memcpy(got + 512 * i, fake_ptr(&b->mem, gpa[i], i < 2 ? 512 : 188), i < 2 ? 512 : 188);
    fill_pattern(want, sizeof(want), 5);
    assert_memory_equal(got + HDR, want, sizeof(want));
    for (int i = 0; i < 3; i++)
        assert_true(canary_intact(b, gpa[i], 512));
}

/* Too few buffers for a merged frame: nothing is used and the frame waits; once the guest
 * posts more, it goes in whole, starting with the buffer it was offered first. */
static void test_rx_waits_for_enough_buffers(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint64_t first = post_rx(b, 512);
    deliver(b, 1200, 7);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
    assert_int_equal(b->fb->be.rxq_count, 1);
    post_rx(b, 512);
    post_rx(b, 512);
    kick(b, RXQ);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 3);
    assert_int_equal(num_buffers(b, first), 3);
    assert_int_equal(b->fb->be.rxq_count, 0);
}

/* Without MRG_RXBUF a frame needs one buffer that holds it; one that does not is dropped so
 * it cannot block the frames behind it, and the buffer stays for the next. */
static void test_rx_without_merge(void **state)
{
    struct bench *b = *state;
    b->dev->driver_features &= ~(1ULL << VIRTIO_NET_F_MRG_RXBUF);
    activate(b);
    uint64_t gpa = post_rx(b, 512);
    deliver(b, 600, 1);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
    assert_int_equal(virtio_net_stats(b->dev)->rx_toobig, 1);
    deliver(b, 400, 2);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 1);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 0), HDR + 400);
    assert_int_equal(num_buffers(b, gpa), 1);
}

/* A frame no full ring could hold is dropped, and the buffers stay posted. */
static void test_rx_frame_larger_than_ring(void **state)
{
    struct bench *b = *state;
    activate(b);
    for (int i = 0; i < QSIZE; i++)
        post_rx(b, 64);
    deliver(b, 2000, 1);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
    assert_int_equal(virtio_net_stats(b->dev)->rx_toobig, 1);
    assert_int_equal(b->fb->be.rxq_count, 0);
    deliver(b, 100, 1);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 2);
}

static void test_rx_buffer_smaller_than_header(void **state)
{
    struct bench *b = *state;
    activate(b);
    post_rx(b, HDR - 1);
    uint64_t gpa = post_rx(b, 256);
    deliver(b, 60, 1);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 2);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 0), 0);
    assert_int_equal(fake_used_len(&b->ring[RXQ], 1), HDR + 60);
    assert_int_equal(num_buffers(b, gpa), 1);
    assert_int_equal(virtio_net_stats(b->dev)->rx_bad, 1);
}

/* A guest that posts nothing: frames wait up to the backend's cap, the rest are dropped. */
static void test_rx_bounded_without_buffers(void **state)
{
    struct bench *b = *state;
    activate(b);
    for (int i = 0; i < 1000; i++)
        deliver(b, 60, (uint8_t)i);
    assert_int_equal(b->fb->be.rxq_count, NET_RXQ_MAX_FRAMES);
    assert_int_equal(net_backend_stats(&b->fb->be)->rx_dropped, 1000 - NET_RXQ_MAX_FRAMES);
    for (int i = 0; i < QSIZE; i++)
        post_rx(b, 128);
    kick(b, RXQ);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), QSIZE);
    assert_int_equal(b->fb->be.rxq_count, NET_RXQ_MAX_FRAMES - QSIZE);
}

static void test_waits_for_activate(void **state)
{
    struct bench *b = *state;
    post_tx(b, 0, 0, 60);
    kick(b, TXQ);
    post_rx(b, 256);
    deliver(b, 60, 1); /* dropped: no driver yet */
    assert_int_equal(b->fb->sent, 0);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
    activate(b);
    assert_int_equal(b->fb->sent, 1);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
}

static void test_malformed_ring_needs_reset(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct fake_buf bad = {OUTSIDE_RAM, 100, false};
    fake_post(&b->ring[TXQ], &bad, 1);
    kick(b, TXQ);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(b->fb->sent, 0);
    post_tx(b, 0, 0, 60);
    kick(b, TXQ); /* ignored until the reset */
    assert_int_equal(b->fb->sent, 0);
    b->dev->ops->reset(b->dev);
    enable_queues(b);
    activate(b);
    post_tx(b, 0, 0, 60);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
}

static void test_reset_drops_queued_frames(void **state)
{
    struct bench *b = *state;
    activate(b);
    deliver(b, 60, 1);
    assert_int_equal(b->fb->be.rxq_count, 1);
    b->dev->ops->reset(b->dev);
    assert_int_equal(b->fb->be.rxq_count, 0);
}

/* ---- A backend that carries virtio-net headers (a tap). ---- */

#define ALL_OFFLOADS (NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN)

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* A header asking for TSO of a TCP/IPv4 frame (or less, by the arguments). */
static void tso_hdr(uint8_t h[HDR], uint8_t flags, uint8_t gso, uint16_t hdr_len,
                    uint16_t gso_size, uint16_t start)
{
    memset(h, 0, HDR);
    h[0] = flags;
    h[1] = gso;
    put_le16(h + 2, hdr_len);
    put_le16(h + 4, gso_size);
    put_le16(h + 6, start);
    put_le16(h + 8, 16); /* TCP's checksum field */
}

static void post_tx_raw(struct bench *b, const uint8_t h[HDR], const uint8_t *frame,
                        uint32_t len)
{
    uint64_t hdr = alloc_buf(b, HDR), data = alloc_buf(b, len);
    memcpy(fake_ptr(&b->mem, hdr, HDR), h, HDR);
    memcpy(fake_ptr(&b->mem, data, len), frame, len);
    struct fake_buf bufs[2] = {{hdr, HDR, false}, {data, len, false}};
    fake_post(&b->ring[TXQ], bufs, 2);
}

/* Offered as the backend takes them; at DRIVER_OK it hears what the driver accepted, at reset
 * that it is nothing; without the checksum offload no other. */
static void test_vnet_features_and_offloads(void **state)
{
    struct bench *b = *state;
    rebuild(b, &vnet_ops, false, true);
    uint64_t f = b->dev->device_features;
    assert_int_equal(f & PASSTHROUGH_FEATURES, PASSTHROUGH_FEATURES);
    assert_true(f & BIT(VIRTIO_NET_F_GUEST_CSUM));
    assert_true(f & BIT(VIRTIO_NET_F_CSUM));
    assert_false(f & BIT(VIRTIO_NET_F_MTU));
    b->dev->driver_features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
                              BIT(VIRTIO_NET_F_GUEST_TSO4);
    activate(b);
    assert_int_equal(b->fb->rx_offloads, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4);
    b->dev->ops->reset(b->dev);
    assert_int_equal(b->fb->rx_offloads, 0);
    b->dev->driver_features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_GUEST_TSO4);
    activate(b);
    assert_int_equal(b->fb->rx_offloads, 0);
    /* One that cannot be told what the guest accepted keeps the guest's side plain. */
    rebuild(b, &fake_ops, false, true);
    f = b->dev->device_features;
    assert_true(f & BIT(VIRTIO_NET_F_HOST_TSO4));
    assert_false(f & (BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4)));
}

static void negotiate_host_tso(struct bench *b, bool ecn)
{
    b->dev->driver_features |= BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |
                               (ecn ? BIT(VIRTIO_NET_F_HOST_ECN) : 0);
    activate(b);
}

/* The guest's TSO frame reaches the backend with its header as written (num_buffers cleared)
 * and its checksum left partial for the kernel. */
static void test_vnet_tx_passthrough(void **state)
{
    struct bench *b = *state;
    rebuild(b, &vnet_ops, false, true);
    negotiate_host_tso(b, true);
    static uint8_t f[NET_FRAME_MAX];
    uint32_t len = (uint32_t)ip_frame(f, 6, 20000);
    uint8_t h[HDR];
    tso_hdr(h, 1, 1 | 0x80, 54, 1448, ETH + IPH);
    put_le16(h + 10, 0x7777);
    post_tx_raw(b, h, f, len);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
    assert_int_equal(b->fb->last_len, HDR + len);
    put_le16(h + 10, 0);
    assert_memory_equal(b->fb->last, h, HDR);
    assert_memory_equal(b->fb->last + HDR, f, len);
    /* Offloads not asked for: the frame as it is behind a zero header. */
    memset(h, 0, HDR);
    post_tx_raw(b, h, f, 60);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 2);
    assert_memory_equal(b->fb->last, h, HDR);
    assert_memory_equal(b->fb->last + HDR, f, 60);
    assert_int_equal(virtio_net_stats(b->dev)->tx_bad, 0);
}

/* Each header asks for something not negotiated or points outside the frame: refused. */
static void test_vnet_tx_hostile(void **state)
{
    struct bench *b = *state;
    rebuild(b, &vnet_ops, false, true);
    negotiate_host_tso(b, false);
    static uint8_t f[NET_FRAME_MAX];
    uint32_t len = (uint32_t)ip_frame(f, 6, 4000);
    const struct {
        uint8_t flags, gso;
        uint16_t hdr_len, size, start;
    } bad[] = {
        {1, 4, 54, 1448, ETH + IPH},          /* TCPV6, not negotiated */
        {1, 1 | 0x80, 54, 1448, ETH + IPH},   /* ECN, not negotiated */
        {1, 3, 54, 1448, ETH + IPH},          /* UDP, never offered */
        {1, 2, 54, 1448, ETH + IPH},          /* no such type */
        {1, 1, 54, 0, ETH + IPH},             /* gso_size 0 */
        {1, 1, 54, (uint16_t)(len + 1), ETH + IPH},
        {1, 1, (uint16_t)(len + 1), 1448, ETH + IPH},
        {0, 1, 54, 1448, ETH + IPH},          /* GSO without NEEDS_CSUM */
        {1, 1, 54, 1448, (uint16_t)len},      /* checksum outside */
        {1, 1, 54, 1448, 10},                 /* in the Ethernet header */
        {3, 0, 0, 0, ETH + IPH},              /* DATA_VALID is the device's */
        {1 | 4, 0, 0, 0, ETH + IPH},          /* unknown flag */
    };
    uint8_t h[HDR];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tso_hdr(h, bad[i].flags, bad[i].gso, bad[i].hdr_len, bad[i].size, bad[i].start);
        post_tx_raw(b, h, f, len); /* one at a time: the ring has fewer descriptors */
        kick(b, TXQ);
        assert_int_equal(virtio_net_stats(b->dev)->tx_bad, i + 1);
    }
    assert_int_equal(b->fb->sent, 0);
    assert_int_equal(virtio_net_stats(b->dev)->tx_bad, sizeof(bad) / sizeof(bad[0]));
    assert_int_equal(b->t.needs_reset, 0);
    tso_hdr(h, 1, 1, 54, 1448, ETH + IPH); /* the same frame, well formed */
    post_tx_raw(b, h, f, len);
    kick(b, TXQ);
    assert_int_equal(b->fb->sent, 1);
}

static void deliver_vnet(struct bench *b, const uint8_t h[HDR], size_t len, uint8_t seed)
{
    static uint8_t buf[HDR + NET_FRAME_MAX];
    memcpy(buf, h, HDR);
    fill_pattern(buf + HDR, len, seed);
    net_backend_deliver(&b->fb->be, buf, HDR + len);
}

/* A 64 KiB TSO frame from the backend, across buffers, its header as the backend wrote it. */
static void test_vnet_rx_passthrough(void **state)
{
    struct bench *b = *state;
    rebuild(b, &vnet_ops, false, true);
    b->dev->driver_features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
                              BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4);
    activate(b);
    uint64_t gpa[3];
    for (int i = 0; i < 3; i++)
        gpa[i] = post_rx(b, 30000);
    uint8_t h[HDR];
    tso_hdr(h, 1, 1, 54, 1448, ETH + IPH);
    deliver_vnet(b, h, NET_FRAME_MAX, 4);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 3);
    assert_int_equal(num_buffers(b, gpa[0]), 3);
    assert_memory_equal(fake_ptr(&b->mem, gpa[0], HDR), h, 10);
    static uint8_t got[3 * 30000], want[NET_FRAME_MAX];
    for (int i = 0; i < 3; i++)
        memcpy(got + 30000 * i, fake_ptr(&b->mem, gpa[i], 30000), 30000);
    fill_pattern(want, sizeof(want), 4);
    assert_memory_equal(got + HDR, want, sizeof(want));
    assert_int_equal(fake_used_len(&b->ring[RXQ], 2), HDR + NET_FRAME_MAX - 60000);
    assert_true(canary_intact(b, gpa[2], 30000));
}

/* Nothing negotiated: frames as before (a zero header: DATA_VALID dropped), and one whose
 * header claims an offload the driver did not accept is dropped and counted. */
static void test_vnet_rx_not_negotiated(void **state)
{
    struct bench *b = *state;
    rebuild(b, &vnet_ops, false, true);
    activate(b);
    uint64_t gpa = post_rx(b, 1526);
    uint8_t h[HDR];
    tso_hdr(h, 1, 1, 54, 1448, ETH + IPH);
    deliver_vnet(b, h, 1400, 2);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 0);
    assert_int_equal(virtio_net_stats(b->dev)->rx_bad, 1);
    memset(h, 0, HDR);
    h[0] = 2; /* DATA_VALID */
    deliver_vnet(b, h, 100, 3);
    assert_int_equal(fake_used_idx(&b->ring[RXQ]), 1);
    const uint8_t *p = fake_ptr(&b->mem, gpa, HDR + 100);
    for (int i = 0; i < 10; i++)
        assert_int_equal(p[i], 0);
    assert_int_equal(num_buffers(b, gpa), 1);
    uint8_t want[100];
    fill_pattern(want, sizeof(want), 3);
    assert_memory_equal(p + HDR, want, sizeof(want));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity_and_config),
        T(test_tx_frame_reaches_backend),
        T(test_tx_refilling_driver_requeued),
        T(test_tx_bad_chains_refused),
        T(test_tx_csum_completed),
        T(test_tx_csum_hostile_headers),
        T(test_tx_csum_offsets_ignored_without_flag),
        T(test_capable_backend),
        T(test_rx_single_buffer),
        T(test_rx_merges_buffers),
        T(test_rx_waits_for_enough_buffers),
        T(test_rx_without_merge),
        T(test_rx_frame_larger_than_ring),
        T(test_rx_buffer_smaller_than_header),
        T(test_rx_bounded_without_buffers),
        T(test_waits_for_activate),
        T(test_malformed_ring_needs_reset),
        T(test_reset_drops_queued_frames),
        T(test_vnet_features_and_offloads),
        T(test_vnet_tx_passthrough),
        T(test_vnet_tx_hostile),
        T(test_vnet_rx_passthrough),
        T(test_vnet_rx_not_negotiated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
