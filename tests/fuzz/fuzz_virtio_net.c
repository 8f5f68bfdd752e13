/*
 * libFuzzer target for the virtio-net device: the input is a script of driver and backend
 * actions run against one device over fake guest RAM, with the real backend queue and policy
 * code and a fake backend that records (and, when told, echoes) what it is sent.
 *
 * Checked besides ASan/UBSan: the device never writes the transmit area, never writes an rx
 * buffer past its posted length, returns rx chains with a used length within the chain and
 * only chains that were posted, and hands the backend frames of sane sizes only.
 *
 * The first byte picks features (bit 0: MRG_RXBUF, bit 2: CSUM, bit 3: GUEST_CSUM), the policy
 * (bit 1: host-only) and the backend's capabilities (bit 4: a 65520-byte MTU and valid
 * checksums, as slirp's; bit 5: it carries virtio-net headers and takes every offload, as a
 * tap does, with bit 6: HOST_TSO4/6/ECN and bit 7: GUEST_TSO4/6/ECN negotiated). The tx chain
 * bytes include the header, so its checksum offsets, flags and gso fields are the fuzzer's;
 * a header-carrying backend must only ever get headers that ask for what was negotiated.
 * Script (each command one byte, then its arguments; missing bytes end the script):
 *   0 tx:      u8 split (& 3: descriptors - 1), u8 writable (bit 0: a writable descriptor last),
 *              u16 length, then that many chain bytes (header and frame) from the input
 *   1 rx:      u8 count (& 7), u16 size (% 2048)
 *   2 deliver: u16 length (frames for the guest; any size, the backend drops impossible ones),
 *              and for a header-carrying backend 12 header bytes from the input
 *   3 kick rx
 *   4 bad:     u8 queue (& 1): a descriptor outside guest RAM
 *   5 reset:   the driver resets and re-activates the device
 *   6 echo:    toggles the backend answering each frame at once (tx -> rx inside the kick)
 *   7 csum:    u16 length, u16 start, u16 offset, then that many frame bytes: the checksum
 *              completion alone, checked against the one's-complement identity
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest_mem.h"
#include "net/backend.h"
#include "net/vnet_hdr.h"
#include "virtio/net.h"

#define MEM_SIZE 0x200000ULL
#define QSIZE 64
#define RING_GPA(q) (0x1000ULL * (1 + 2 * (q)))
#define RX_GPA 0x10000ULL
#define RX_SLOT 0x800ULL
#define TX_GPA 0x100000ULL
#define TX_SIZE 0x10010ULL
#define GUARD 0xa5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOST_TSO                                                                              \
    (1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 | 1ULL << VIRTIO_NET_F_HOST_ECN)
#define GUEST_TSO                                                                             \
    (1ULL << VIRTIO_NET_F_GUEST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO6 |                      \
     1ULL << VIRTIO_NET_F_GUEST_ECN)

struct fuzz_backend {
    struct net_backend be;
    bool echo;
    unsigned tx_offloads; /* what the driver negotiated for its transmit side */
};

static void fb_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct fuzz_backend *fb = (struct fuzz_backend *)be;
    if (be->vnet_hdr) {
        if (len < NET_VNET_HDR_SIZE ||
            !net_vnet_hdr_valid(frame, len - NET_VNET_HDR_SIZE, fb->tx_offloads) ||
            (frame[0] & NET_VNET_F_DATA_VALID))
            __builtin_trap();
        frame += NET_VNET_HDR_SIZE;
        len -= NET_VNET_HDR_SIZE;
    }
    if (len < NET_FRAME_MIN || len > NET_FRAME_MAX)
        __builtin_trap();
    if (be->vnet_hdr)
        len += NET_VNET_HDR_SIZE, frame -= NET_VNET_HDR_SIZE;
    if (((struct fuzz_backend *)be)->echo)
        net_backend_deliver(be, frame, len);
}

static void fb_destroy(struct net_backend *be) { free(be); }

static void fb_set_rx_offloads(struct net_backend *be, unsigned offloads)
{
    (void)be, (void)offloads;
}

static const struct net_backend_ops fb_ops = {
    .send = fb_send, .destroy = fb_destroy, .set_rx_offloads = fb_set_rx_offloads};

struct ring {
    uint16_t avail_idx, next_desc, used_seen;
};

struct run {
    struct guest_mem mem;
    struct virtio_device *dev;
    struct fuzz_backend *fb;
    struct virtq queues[2];
    bool enabled[2];
    struct ring ring[2];
    uint32_t rx_len[QSIZE];   /* posted length of the rx buffer in descriptor slot i */
    uint32_t chain_len[QSIZE]; /* total writable length of the rx chain with head i */
    bool rx_posted[QSIZE];
    const uint8_t *in;
    size_t left;
};

static void t_signal(void *t, unsigned i) { (void)t, (void)i; }
static void t_config(void *t) { (void)t; }
static void t_reset(void *t, unsigned queue, int err) { (void)t, (void)queue, (void)err; }
static void t_requeue(void *t, unsigned i) { (void)t, (void)i; }
static const struct virtio_transport_ops transport = {t_signal, t_config, t_reset, t_requeue};

static uint8_t *ptr(struct run *r, uint64_t gpa, uint64_t len)
{
    uint8_t *p = guest_mem_ptr(&r->mem, gpa, len);
    if (!p)
        __builtin_trap();
    return p;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }

static bool take(struct run *r, void *out, size_t n)
{
    if (r->left < n)
        return false;
    memcpy(out, r->in, n);
    r->in += n;
    r->left -= n;
    return true;
}

static void set_desc(struct run *r, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t *d = ptr(r, RING_GPA(q) + 16ULL * i, 16);
    for (int b = 0; b < 8; b++)
        d[b] = (uint8_t)(addr >> (8 * b));
    for (int b = 0; b < 4; b++)
        d[8 + b] = (uint8_t)(len >> (8 * b));
    put16(d + 12, flags);
    put16(d + 14, next);
}

static void publish(struct run *r, unsigned q, uint16_t head)
{
    uint64_t avail = RING_GPA(q) + 16ULL * QSIZE;
    put16(ptr(r, avail + 4 + 2 * (r->ring[q].avail_idx % QSIZE), 2), head);
    r->ring[q].avail_idx++;
    put16(ptr(r, avail + 2, 2), r->ring[q].avail_idx);
}

static uint64_t used_gpa(unsigned q) { return RING_GPA(q) + 0x1000; }

static void setup_queues(struct run *r)
{
    memset(ptr(r, RING_GPA(0), 0x4000), 0, 0x4000);
    memset(r->ring, 0, sizeof(r->ring));
    memset(r->rx_posted, 0, sizeof(r->rx_posted));
    for (unsigned q = 0; q < 2; q++) {
        if (virtq_init(&r->queues[q], &r->mem, QSIZE, RING_GPA(q), RING_GPA(q) + 16 * QSIZE,
                       used_gpa(q), false, false) < 0)
            __builtin_trap();
        r->enabled[q] = true;
    }
}

/* The rx slot's bytes past its posted length must still be the guard. */
static void check_rx_slot(struct run *r, uint16_t i)
{
    static uint8_t guard[RX_SLOT];
    if (!guard[0])
        memset(guard, GUARD, sizeof(guard));
    const uint8_t *p = ptr(r, RX_GPA + RX_SLOT * i, RX_SLOT);
    if (memcmp(p + r->rx_len[i], guard, RX_SLOT - r->rx_len[i]) != 0)
        __builtin_trap();
}

/* Consumes new rx used entries: each must be a posted chain, within its length. */
static void check_rx_used(struct run *r)
{
    struct ring *ring = &r->ring[0];
    uint16_t idx = get16(ptr(r, used_gpa(0) + 2, 2));
    for (; ring->used_seen != idx; ring->used_seen++) {
        const uint8_t *e = ptr(r, used_gpa(0) + 4 + 8ULL * (ring->used_seen % QSIZE), 8);
        uint32_t id = get32(e), len = get32(e + 4);
        if (id >= QSIZE || !r->rx_posted[id] || len > r->chain_len[id])
            __builtin_trap();
        r->rx_posted[id] = false;
    }
}

static void cmd_tx(struct run *r)
{
    uint8_t split, writable, lenb[2];
    if (!take(r, &split, 1) || !take(r, &writable, 1) || !take(r, lenb, 2))
        return;
    uint32_t len = get16(lenb) % TX_SIZE;
    uint32_t n = len < r->left ? len : (uint32_t)r->left;
    uint8_t *tx = ptr(r, TX_GPA, TX_SIZE);
    memcpy(tx, r->in, n);
    r->in += n;
    r->left -= n;
    unsigned parts = (split & 3) + 1u, ndesc = parts + (writable & 1);
    uint16_t head = r->ring[1].next_desc;
    for (unsigned i = 0; i < ndesc; i++) {
        uint16_t d = (uint16_t)((head + i) % QSIZE);
        uint32_t lo = n * i / parts, hi = i < parts ? n * (i + 1) / parts : lo + 16;
        uint16_t flags = (uint16_t)((i >= parts ? 2 : 0) | (i + 1 < ndesc ? 1 : 0));
        set_desc(r, 1, d, TX_GPA + (i < parts ? lo : TX_SIZE - 16), hi - lo, flags,
                 (uint16_t)((d + 1) % QSIZE));
    }
    r->ring[1].next_desc = (uint16_t)((head + ndesc) % QSIZE);
    publish(r, 1, head);
    static uint8_t shadow[TX_SIZE];
    memcpy(shadow, tx, TX_SIZE - 16);
    r->dev->ops->queue_notify(r->dev, 1);
    if (memcmp(shadow, tx, TX_SIZE - 16) != 0)
        __builtin_trap();
    check_rx_used(r);
}

static void cmd_rx(struct run *r)
{
    uint8_t count, sizeb[2];
    if (!take(r, &count, 1) || !take(r, sizeb, 2))
        return;
    uint32_t len = get16(sizeb) % RX_SLOT;
    for (unsigned c = 0; c < (count & 7u); c++) {
        uint16_t d = r->ring[0].next_desc;
        if (r->rx_posted[d])
            return; /* every descriptor is with the device */
        check_rx_slot(r, d);
        r->rx_len[d] = len;
        r->chain_len[d] = len;
        memset(ptr(r, RX_GPA + RX_SLOT * d, RX_SLOT), GUARD, RX_SLOT);
        set_desc(r, 0, d, RX_GPA + RX_SLOT * d, len, 2, 0);
        r->rx_posted[d] = true;
        r->ring[0].next_desc = (uint16_t)((d + 1) % QSIZE);
        publish(r, 0, d);
    }
}

static void cmd_deliver(struct run *r)
{
    static uint8_t frame[NET_FRAME_MAX + 64];
    uint8_t lenb[2];
    if (!take(r, lenb, 2))
        return;
    size_t len = get16(lenb);
    memset(frame, (int)len, len);
    if (r->fb->be.vnet_hdr && len >= NET_VNET_HDR_SIZE && !take(r, frame, NET_VNET_HDR_SIZE))
        return;
    net_backend_deliver(&r->fb->be, frame, len);
    check_rx_used(r);
}

static void cmd_bad(struct run *r)
{
    uint8_t q;
    if (!take(r, &q, 1))
        return;
    q &= 1;
    uint16_t d = r->ring[q].next_desc;
    if (q == 0 && r->rx_posted[d])
        return;
    set_desc(r, q, d, 0x40000000ULL, 64, q == 0 ? 2 : 0, 0);
    r->ring[q].next_desc = (uint16_t)((d + 1) % QSIZE);
    publish(r, q, d);
    r->dev->ops->queue_notify(r->dev, q);
    check_rx_used(r);
}

static void cmd_reset(struct run *r)
{
    r->dev->ops->reset(r->dev);
    for (uint16_t i = 0; i < QSIZE; i++)
        check_rx_slot(r, i);
    setup_queues(r);
    r->dev->ops->activate(r->dev);
}

static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        sum += i & 1 ? p[i] : (uint32_t)p[i] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* A completed checksum touches only its field, which must lie inside the frame past the
 * Ethernet header; and (for a word-aligned field) the covered bytes plus the seed that was in
 * the field sum to all ones, which is what the receiver checks. */
static void cmd_csum(struct run *r)
{
    static uint8_t frame[NET_FRAME_MAX], orig[NET_FRAME_MAX];
    uint8_t args[6];
    if (!take(r, args, sizeof(args)))
        return;
    size_t len = get16(args) % (NET_FRAME_MAX + 1);
    uint16_t start = get16(args + 2), offset = get16(args + 4);
    if (!take(r, frame, len))
        return;
    memcpy(orig, frame, len);
    if (!virtio_net_complete_csum(frame, len, start, offset)) {
        if (memcmp(frame, orig, len))
            __builtin_trap();
        return;
    }
    size_t field = (size_t)start + offset;
    if (start < NET_FRAME_MIN || field + 2 > len || memcmp(frame, orig, field) ||
        memcmp(frame + field + 2, orig + field + 2, len - field - 2))
        __builtin_trap();
    uint32_t seed = (uint32_t)orig[field] << 8 | orig[field + 1];
    if (offset % 2 == 0 && sum16(seed, frame + start, len - start) != 0xffff)
        __builtin_trap();
}

static void run_script(struct run *r)
{
    uint8_t cmd;
    while (take(r, &cmd, 1)) {
        switch (cmd % 8) {
        case 0: cmd_tx(r); break;
        case 1: cmd_rx(r); break;
        case 2: cmd_deliver(r); break;
        case 3:
            r->dev->ops->queue_notify(r->dev, 0);
            check_rx_used(r);
            break;
        case 4: cmd_bad(r); break;
        case 5: cmd_reset(r); break;
        case 6: r->fb->echo = !r->fb->echo; break;
        case 7: cmd_csum(r); break;
        }
    }
    for (uint16_t i = 0; i < QSIZE; i++)
        check_rx_slot(r, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct run *r = calloc(1, sizeof(*r));
    if (!r || guest_mem_create(&r->mem, MEM_SIZE, 0xc0000000ULL, 0x100000000ULL) < 0)
        abort();
    memset(ptr(r, RX_GPA, RX_SLOT * QSIZE), GUARD, RX_SLOT * QSIZE);
    r->fb = calloc(1, sizeof(*r->fb));
    struct net_policy policy = {data[0] & 2 ? NET_POLICY_HOST_ONLY : NET_POLICY_OPEN,
                                0x0a000202, 0x0a000203};
    net_backend_init(&r->fb->be, &fb_ops, &policy);
    if (data[0] & 16) {
        r->fb->be.mtu = 65520;
        r->fb->be.rx_csum_valid = true;
    }
    if (data[0] & 32) {
        r->fb->be.vnet_hdr = true;
        r->fb->be.offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
                             NET_OFFLOAD_ECN;
    }
    static const uint8_t mac[6] = {0x52, 0x54, 0, 1, 2, 3};
    r->dev = virtio_net_new(mac, &r->fb->be);
    r->dev->queues = r->queues;
    r->dev->queue_enabled = r->enabled;
    r->dev->transport_ops = &transport;
    r->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_NET_F_MAC |
                              (data[0] & 1 ? 1ULL << VIRTIO_NET_F_MRG_RXBUF : 0) |
                              (data[0] & 4 ? 1ULL << VIRTIO_NET_F_CSUM : 0) |
                              (data[0] & 8 ? 1ULL << VIRTIO_NET_F_GUEST_CSUM : 0) |
                              (data[0] & 64 ? HOST_TSO : 0) | (data[0] & 128 ? GUEST_TSO : 0);
    r->fb->tx_offloads = (data[0] & 4 ? NET_OFFLOAD_CSUM : 0) |
                         (data[0] & 64 ? NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN : 0);
    setup_queues(r);
    r->dev->ops->activate(r->dev);
    r->in = data + 1;
    r->left = size - 1;
    run_script(r);
    r->dev->ops->destroy(r->dev);
    guest_mem_destroy(&r->mem);
    free(r);
    return 0;
}
