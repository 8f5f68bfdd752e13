/*
 * virtio-net device.
 *
 * Transmit: each chain is the 12-byte header followed by one Ethernet frame. The frame is
 * copied out of guest memory before it is handed on (the guest may rewrite its buffers at any
 * time, and the policy must judge the bytes the backend gets), and the chain is returned
 * before the backend runs, since the backend may answer at once through the receive path.
 *
 * Receive: a frame goes into the next posted chain, or, with MRG_RXBUF, across as many chains
 * as it needs, their count in the first header's num_buffers. Chains are taken one by one and
 * written as they come; if the guest has not posted enough, the chains taken are given back
 * (last_avail_idx rewound: nothing was pushed, so the driver cannot tell) and the frame waits
 * in the backend's queue until the next receive kick. A frame that even a full ring could not
 * hold is dropped rather than left to block every frame behind it.
 *
 * Offloads (what Linux uses for speed, as far as the backend can take it):
 * - CSUM: the guest may leave a TCP/UDP checksum partial (the pseudo-header sum in the field,
 *   csum_start/csum_offset in the header). The device completes it on its copy of the frame
 *   before the backend sees it, since libslirp verifies every checksum and drops bad ones; so
 *   CSUM is offered whatever the backend. The offsets are guest-supplied: a checksum field
 *   that is not wholly inside the frame makes the frame bad (counted, dropped).
 * - GUEST_CSUM: offered when the backend builds every frame it delivers itself (slirp does),
 *   so each receive header says DATA_VALID and the guest skips verifying.
 * - MTU: the backend's link MTU (slirp's is raised to 65520, as slirp4netns does) is offered
 *   in the config space, so the guest sends and takes IP packets of up to 64 KiB: one frame,
 *   one slirp_input and one interrupt where a 1500-byte link needs forty-odd.
 * - No TSO/UFO: with a 65520-byte link a TSO frame would be no larger than a plain one, and
 *   slirp segments nothing (a GSO frame would have to be cut here).
 * - Receive interrupts are not deferred beyond what EVENT_IDX already does: while the guest
 *   polls (NAPI) it keeps used_event behind, so a burst of frames costs one interrupt.
 */
#include "virtio/net.h"

#include <stdlib.h>
#include <string.h>

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_CONFIG_SIZE 12 /* mac[6], status, max_virtqueue_pairs, mtu (each le16) */
#define HDR_F_NEEDS_CSUM 1
#define HDR_F_DATA_VALID 2
#define HDR_CSUM_START 6   /* offsets in the header */
#define HDR_CSUM_OFFSET 8
#define HDR_NUM_BUFFERS 10
#define NET_DEFAULT_MTU 1500

struct virtio_net {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    uint8_t mac[6];
    uint16_t mtu; /* the link's, from the backend */
    struct net_backend *backend;
    bool active; /* DRIVER_OK seen since the last reset */
    bool broken; /* the driver broke the ring protocol; idle until reset */
    struct virtio_net_stats stats;
    struct virtq_elem tx_elem;
    struct virtq_elem rx_first; /* the chain whose header carries num_buffers */
    struct virtq_elem rx_elem;  /* the chains after it */
    uint16_t rx_heads[VIRTIO_NET_QUEUE_SIZE];
    uint32_t rx_lens[VIRTIO_NET_QUEUE_SIZE];
    uint8_t frame[NET_FRAME_MAX]; /* a transmitted frame, copied out of guest memory */
};

static struct virtio_net *to_net(struct virtio_device *dev) { return (struct virtio_net *)dev; }

static bool queue_usable(const struct virtio_net *net, unsigned index)
{
    return net->active && !net->broken && net->dev.queue_enabled[index];
}

static void fail(struct virtio_net *net)
{
    net->broken = true;
    virtio_needs_reset(&net->dev);
}

/* ---- Transmit. ---- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The frame's length when the chain's shape and header are ones the device takes, else 0. */
static size_t tx_frame_len(const struct virtio_net *net, const struct virtq_elem *e,
                           uint8_t hdr[VIRTIO_NET_HDR_SIZE])
{
    if (e->in_count || e->out_bytes < VIRTIO_NET_HDR_SIZE + NET_FRAME_MIN ||
        e->out_bytes > VIRTIO_NET_HDR_SIZE + NET_FRAME_MAX)
        return 0;
    virtq_read(e, 0, hdr, VIRTIO_NET_HDR_SIZE);
    /* Only NEEDS_CSUM, and only once negotiated; no segmentation was offered (gso_type 0).
     * hdr_len and gso_size mean nothing without GSO, num_buffers nothing on transmit. */
    uint8_t allowed = virtio_has_feature(&net->dev, VIRTIO_NET_F_CSUM) ? HDR_F_NEEDS_CSUM : 0;
    if ((hdr[0] & ~allowed) || hdr[1] != 0)
        return 0;
    return e->out_bytes - VIRTIO_NET_HDR_SIZE;
}

/* The Internet checksum (RFC 1071) of p[0, len), folded but not complemented. */
static uint16_t csum_sum(const uint8_t *p, size_t len)
{
    uint64_t sum = 0;
    size_t i = 0;
    for (; i + 1 < len; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* Completes a partial checksum as a NIC would (virtio 1.2, 5.1.6.2): the field holds the
 * pseudo-header sum, the checksum covers csum_start to the end, and goes in at csum_offset.
 * False when the field is not wholly inside the frame. A result of 0 is sent as 0xffff, its
 * equal in one's complement, since 0 means "no checksum" to UDP. */
bool virtio_net_complete_csum(uint8_t *frame, size_t len, uint16_t start, uint16_t offset)
{
    if (start < NET_ETH_HLEN || start >= len || len - start < 2 || offset > len - start - 2)
        return false;
    uint16_t sum = (uint16_t)~csum_sum(frame + start, len - start);
    if (sum == 0)
        sum = 0xffff;
    frame[start + offset] = (uint8_t)(sum >> 8);
    frame[start + offset + 1] = (uint8_t)sum;
    return true;
}

static void transmit_one(struct virtio_net *net)
{
    struct virtq_elem *e = &net->tx_elem;
    uint8_t hdr[VIRTIO_NET_HDR_SIZE];
    size_t len = tx_frame_len(net, e, hdr);
    if (len) {
        virtq_read(e, VIRTIO_NET_HDR_SIZE, net->frame, len);
        if ((hdr[0] & HDR_F_NEEDS_CSUM) &&
            !virtio_net_complete_csum(net->frame, len, le16(hdr + HDR_CSUM_START),
                                      le16(hdr + HDR_CSUM_OFFSET)))
            len = 0;
    }
    if (!len)
        net->stats.tx_bad++;
    virtq_push(&net->dev.queues[NET_TXQ], e->head, 0);
    if (len)
        net_backend_send(net->backend, net->frame, len);
}

/* Sends every pending chain, notifications off while draining (as rng.c does). */
static void transmit(struct virtio_net *net)
{
    struct virtq *q = &net->dev.queues[NET_TXQ];
    bool pushed = false;
    int r = 0;
    do {
        virtq_disable_notify(q);
        while (!net->broken && (r = virtq_pop(q, &net->tx_elem)) > 0) {
            transmit_one(net);
            pushed = true;
        }
    } while (r == 0 && !net->broken && virtq_enable_notify(q));
    if (pushed)
        virtio_signal_used(&net->dev, NET_TXQ);
    if (r < 0)
        fail(net);
}

/* ---- Receive. ---- */

enum place_result { PLACED, NO_ROOM, DROPPED, BROKEN };

/* The next posted chain; a first chain too small for the header is returned unused. */
static int pop_rx(struct virtio_net *net, struct virtq_elem *e, bool first)
{
    struct virtq *q = &net->dev.queues[NET_RXQ];
    for (;;) {
        int r = virtq_pop(q, e);
        if (r == 0 && virtq_enable_notify(q))
            r = virtq_pop(q, e);
        if (r <= 0 || !first || e->in_bytes >= VIRTIO_NET_HDR_SIZE)
            return r;
        net->stats.rx_bad++;
        virtq_push(q, e->head, 0);
    }
}

/* Writes bytes [off, off + what fits) of header-then-frame into e; returns the count. */
static size_t write_span(const struct virtq_elem *e, const uint8_t *hdr, const uint8_t *frame,
                         size_t len, size_t off)
{
    size_t done = 0;
    if (off < VIRTIO_NET_HDR_SIZE)
        done = virtq_write(e, 0, hdr + off, VIRTIO_NET_HDR_SIZE - off);
    size_t frame_off = off + done - VIRTIO_NET_HDR_SIZE;
    if (off + done >= VIRTIO_NET_HDR_SIZE && frame_off < len)
        done += virtq_write(e, done, frame + frame_off, len - frame_off);
    return done;
}

/* Gives back the n chains taken for a frame that does not go in after all. */
static void unpop_rx(struct virtio_net *net, unsigned n)
{
    net->dev.queues[NET_RXQ].last_avail_idx -= (uint16_t)n;
}

static unsigned max_chains(const struct virtio_net *net)
{
    if (!virtio_has_feature(&net->dev, VIRTIO_NET_F_MRG_RXBUF))
        return 1;
    uint16_t size = net->dev.queues[NET_RXQ].size;
    return size < VIRTIO_NET_QUEUE_SIZE ? size : VIRTIO_NET_QUEUE_SIZE;
}

/* Takes and fills chains until the frame is in; n is how many were taken. */
static enum place_result fill_chains(struct virtio_net *net, const uint8_t *frame, size_t len,
                                     unsigned *n)
{
    uint8_t hdr[VIRTIO_NET_HDR_SIZE] = {0};
    if (virtio_has_feature(&net->dev, VIRTIO_NET_F_GUEST_CSUM))
        hdr[0] = HDR_F_DATA_VALID; /* offered only when the backend built the frame */
    size_t total = VIRTIO_NET_HDR_SIZE + len, off = 0;
    unsigned limit = max_chains(net);
    while (off < total) {
        if (*n == limit)
            return DROPPED;
        struct virtq_elem *e = *n ? &net->rx_elem : &net->rx_first;
        int r = pop_rx(net, e, *n == 0);
        if (r < 0)
            return BROKEN;
        if (r == 0)
            return NO_ROOM;
        size_t w = write_span(e, hdr, frame, len, off);
        net->rx_heads[*n] = e->head;
        net->rx_lens[*n] = (uint32_t)w;
        (*n)++;
        off += w;
    }
    return PLACED;
}

static enum place_result place_frame(struct virtio_net *net, const uint8_t *frame, size_t len)
{
    unsigned n = 0;
    enum place_result res = fill_chains(net, frame, len, &n);
    if (res != PLACED) {
        if (res != BROKEN)
            unpop_rx(net, n);
        return res;
    }
    uint8_t count[2] = {(uint8_t)n, (uint8_t)(n >> 8)}; /* le16 */
    virtq_write(&net->rx_first, HDR_NUM_BUFFERS, count, sizeof(count));
    struct virtq *q = &net->dev.queues[NET_RXQ];
    for (unsigned i = 0; i < n; i++)
        virtq_push(q, net->rx_heads[i], net->rx_lens[i]);
    virtio_signal_used(&net->dev, NET_RXQ);
    return PLACED;
}

/* The backend's receiver. Before the driver is ready, frames are dropped (consumed): nothing
 * the guest has not asked for yet is worth keeping. */
static bool receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct virtio_net *net = opaque;
    if (!queue_usable(net, NET_RXQ))
        return true;
    switch (place_frame(net, frame, len)) {
    case NO_ROOM:
        return false;
    case DROPPED:
        net->stats.rx_toobig++;
        return true;
    case BROKEN:
        fail(net);
        return true;
    case PLACED:
        break;
    }
    return true;
}

/* ---- Device ops. ---- */

static void net_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_net *net = to_net(dev);
    if (index == NET_TXQ && queue_usable(net, NET_TXQ))
        transmit(net);
    else if (index == NET_RXQ && queue_usable(net, NET_RXQ))
        net_backend_rx_ready(net->backend);
}

/* The MAC and MTU are fixed at creation and the link is always up: nothing here changes.
 * max_virtqueue_pairs is 1 (it is only read with MQ, which is not offered). */
static void net_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data,
                            unsigned size)
{
    struct virtio_net *net = to_net(dev);
    uint8_t cfg[NET_CONFIG_SIZE] = {0};
    memcpy(cfg, net->mac, 6);
    cfg[6] = VIRTIO_NET_S_LINK_UP;
    cfg[8] = 1;
    cfg[10] = (uint8_t)net->mtu;
    cfg[11] = (uint8_t)(net->mtu >> 8);
    memset(data, 0, size);
    if (offset < sizeof(cfg))
        memcpy(data, cfg + offset, size < sizeof(cfg) - offset ? size : sizeof(cfg) - offset);
}

/* Kicks that came before DRIVER_OK were ignored (2.1.2): serve what is queued now. */
static void net_activate(struct virtio_device *dev)
{
    struct virtio_net *net = to_net(dev);
    net->active = true;
    if (queue_usable(net, NET_TXQ))
        transmit(net);
    if (queue_usable(net, NET_RXQ))
        net_backend_rx_ready(net->backend);
}

/* Frames queued for the old driver instance are dropped with it. */
static void net_reset(struct virtio_device *dev)
{
    struct virtio_net *net = to_net(dev);
    net->active = false;
    net->broken = false;
    net_backend_rx_purge(net->backend);
}

static void net_destroy(struct virtio_device *dev)
{
    struct virtio_net *net = to_net(dev);
    net_backend_free(net->backend);
    free(net);
}

static const struct virtio_device_ops net_ops = {
    .queue_notify = net_queue_notify,
    .config_read = net_config_read,
    .activate = net_activate,
    .reset = net_reset,
    .destroy = net_destroy,
};

/* The features the backend can take (see the top of this file). */
static uint64_t offered_features(const struct net_backend *be)
{
    uint64_t f = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
                 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_CSUM;
    if (be->rx_csum_valid)
        f |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
    if (be->mtu)
        f |= 1ULL << VIRTIO_NET_F_MTU;
    return f;
}

static uint16_t link_mtu(const struct net_backend *be)
{
    if (!be->mtu)
        return NET_DEFAULT_MTU;
    return be->mtu > NET_FRAME_MAX - NET_ETH_HLEN ? NET_FRAME_MAX - NET_ETH_HLEN
                                                  : (uint16_t)be->mtu;
}

struct virtio_device *virtio_net_new(const uint8_t mac[6], struct net_backend *backend)
{
    struct virtio_net *net = calloc(1, sizeof(*net));
    if (!net) {
        net_backend_free(backend);
        return NULL;
    }
    net->dev = (struct virtio_device){
        .ops = &net_ops,
        .device_id = VIRTIO_ID_NET,
        .device_features = offered_features(backend),
        .config_size = NET_CONFIG_SIZE,
        .num_queues = 2,
        .queue_max_size = VIRTIO_NET_QUEUE_SIZE,
    };
    memcpy(net->mac, mac, 6);
    net->mtu = link_mtu(backend);
    net->backend = backend;
    net_backend_set_receiver(backend, receive, net);
    return &net->dev;
}

const struct virtio_net_stats *virtio_net_stats(struct virtio_device *dev)
{
    return &to_net(dev)->stats;
}
