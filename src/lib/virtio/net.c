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
 * - No TSO/UFO for slirp: with a 65520-byte link a TSO frame would be no larger than a plain
 *   one, and slirp segments nothing (a GSO frame would have to be cut here).
 * - A backend that carries virtio-net headers (a tap, backend.h vnet_hdr) gets them as the
 *   guest wrote them, checked against what was negotiated (net_vnet_hdr_valid) but not acted
 *   on: the host kernel completes checksums and segments (HOST_TSO4/6/ECN offered as the
 *   backend takes them) more cheaply than a copy here. Towards the guest, GUEST_CSUM and
 *   GUEST_TSO4/6/ECN are offered as it takes them, and at DRIVER_OK (after FEATURES_OK, before
 *   any receive buffer is used) the backend is told which were accepted, so a TSO frame of up
 *   to 64 KiB arrives whole, across buffers with MRG_RXBUF. No UFO (vnet_hdr.h).
 * - Receive interrupts are not deferred beyond what EVENT_IDX already does: while the guest
 *   polls (NAPI) it keeps used_event behind, so a burst of frames costs one interrupt.
 */
#include "virtio/net.h"

#include <stdlib.h>
#include <string.h>

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_CONFIG_SIZE 12 /* mac[6], status, max_virtqueue_pairs, mtu (each le16) */
#define HDR_F_NEEDS_CSUM NET_VNET_F_NEEDS_CSUM
#define HDR_F_DATA_VALID NET_VNET_F_DATA_VALID
#define HDR_CSUM_START NET_VNET_CSUM_START /* offsets in the header */
#define HDR_CSUM_OFFSET NET_VNET_CSUM_OFFSET
#define HDR_NUM_BUFFERS NET_VNET_NUM_BUFFERS
#define NET_DEFAULT_MTU 1500

_Static_assert(VIRTIO_NET_HDR_SIZE == NET_VNET_HDR_SIZE, "one header layout");

struct virtio_net {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    uint8_t mac[6];
    uint16_t mtu; /* the link's, from the backend */
    struct net_backend *backend;
    bool active; /* DRIVER_OK seen since the last reset */
    bool broken; /* the driver broke the ring protocol; idle until reset */
    int rx_error; /* the virtq_pop error behind a BROKEN placement */
    struct virtio_net_stats stats;
    struct virtq_elem tx_elem;
    struct virtq_elem rx_first; /* the chain whose header carries num_buffers */
    struct virtq_elem rx_elem;  /* the chains after it */
    uint16_t rx_heads[VIRTIO_NET_QUEUE_SIZE];
    uint32_t rx_lens[VIRTIO_NET_QUEUE_SIZE];
    /* A transmitted frame, copied out of guest memory (behind its header for a vnet_hdr
     * backend). */
    uint8_t frame[VIRTIO_NET_HDR_SIZE + NET_FRAME_MAX];
};

static struct virtio_net *to_net(struct virtio_device *dev) { return (struct virtio_net *)dev; }

static bool queue_usable(const struct virtio_net *net, unsigned index)
{
    return net->active && !net->broken && net->dev.queue_enabled[index];
}

static void fail(struct virtio_net *net, unsigned queue, int err)
{
    net->broken = true;
    virtio_needs_reset(&net->dev, queue, err);
}

/* ---- Transmit. ---- */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* The frame's length when the chain's shape is one the device takes, else 0. */
static size_t tx_frame_len(const struct virtq_elem *e)
{
    if (e->in_count || e->out_bytes < VIRTIO_NET_HDR_SIZE + NET_FRAME_MIN ||
        e->out_bytes > VIRTIO_NET_HDR_SIZE + NET_FRAME_MAX)
        return 0;
    return e->out_bytes - VIRTIO_NET_HDR_SIZE;
}

/* Whether the device takes a bare-frame backend's transmit header: only NEEDS_CSUM, and only
 * once negotiated; no segmentation was offered (gso_type 0). hdr_len and gso_size mean
 * nothing without GSO, num_buffers nothing on transmit. */
static bool tx_hdr_plain_ok(const struct virtio_net *net, const uint8_t *hdr)
{
    uint8_t allowed = virtio_has_feature(&net->dev, VIRTIO_NET_F_CSUM) ? HDR_F_NEEDS_CSUM : 0;
    return !(hdr[0] & ~allowed) && hdr[1] == 0;
}

static unsigned feature_offload(const struct virtio_device *dev, unsigned bit, unsigned off)
{
    return virtio_has_feature(dev, bit) ? off : 0;
}

/* The offloads the driver accepted for its transmit side. */
static unsigned tx_offloads(const struct virtio_device *dev)
{
    return feature_offload(dev, VIRTIO_NET_F_CSUM, NET_OFFLOAD_CSUM) |
           feature_offload(dev, VIRTIO_NET_F_HOST_TSO4, NET_OFFLOAD_TSO4) |
           feature_offload(dev, VIRTIO_NET_F_HOST_TSO6, NET_OFFLOAD_TSO6) |
           feature_offload(dev, VIRTIO_NET_F_HOST_ECN, NET_OFFLOAD_ECN);
}

/* The offloads the driver accepted for its receive side (none without the checksum one, as
 * TUNSETOFFLOAD also has it). */
static unsigned rx_offloads(const struct virtio_device *dev)
{
    if (!virtio_has_feature(dev, VIRTIO_NET_F_GUEST_CSUM))
        return 0;
    return NET_OFFLOAD_CSUM | feature_offload(dev, VIRTIO_NET_F_GUEST_TSO4, NET_OFFLOAD_TSO4) |
           feature_offload(dev, VIRTIO_NET_F_GUEST_TSO6, NET_OFFLOAD_TSO6) |
           feature_offload(dev, VIRTIO_NET_F_GUEST_ECN, NET_OFFLOAD_ECN);
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
    if (!net_csum_field_fits(len, start, offset))
        return false;
    uint16_t sum = (uint16_t)~csum_sum(frame + start, len - start);
    if (sum == 0)
        sum = 0xffff;
    frame[start + offset] = (uint8_t)(sum >> 8);
    frame[start + offset + 1] = (uint8_t)sum;
    return true;
}

/* A bare-frame backend's frame into net->frame, its checksum completed: its length, or 0. */
static size_t tx_plain(struct virtio_net *net, const struct virtq_elem *e, size_t len)
{
    uint8_t hdr[VIRTIO_NET_HDR_SIZE];
    virtq_read(e, 0, hdr, VIRTIO_NET_HDR_SIZE);
    if (!tx_hdr_plain_ok(net, hdr))
        return 0;
    virtq_read(e, VIRTIO_NET_HDR_SIZE, net->frame, len);
    if ((hdr[0] & HDR_F_NEEDS_CSUM) &&
        !virtio_net_complete_csum(net->frame, len, le16(hdr + HDR_CSUM_START),
                                  le16(hdr + HDR_CSUM_OFFSET)))
        return 0;
    return len;
}

/* A vnet_hdr backend's header and frame into net->frame, the header checked (the copy's, as
 * the guest may rewrite its own) and left to the backend to act on: their length, or 0.
 * DATA_VALID is the device's to set (virtio 1.2, 5.1.6.2); num_buffers is cleared. */
static size_t tx_vnet(struct virtio_net *net, const struct virtq_elem *e, size_t len)
{
    uint8_t *hdr = net->frame;
    virtq_read(e, 0, net->frame, VIRTIO_NET_HDR_SIZE + len);
    unsigned allowed = tx_offloads(&net->dev) & net->backend->offloads;
    if ((hdr[0] & HDR_F_DATA_VALID) || !net_vnet_hdr_valid(hdr, len, allowed))
        return 0;
    hdr[HDR_NUM_BUFFERS] = hdr[HDR_NUM_BUFFERS + 1] = 0;
    return VIRTIO_NET_HDR_SIZE + len;
}

static void transmit_one(struct virtio_net *net)
{
    struct virtq_elem *e = &net->tx_elem;
    size_t len = tx_frame_len(e);
    if (len)
        len = net->backend->vnet_hdr ? tx_vnet(net, e, len) : tx_plain(net, e, len);
    if (!len)
        net->stats.tx_bad++;
    virtq_push(&net->dev.queues[NET_TXQ], e->head, 0);
    if (len)
        net_backend_send(net->backend, net->frame, len);
}

static bool transmit_next(void *ctx, struct virtq_elem *e)
{
    struct virtio_net *net = ctx;
    (void)e; /* net->tx_elem */
    transmit_one(net);
    return !net->broken;
}

/* Sends the pending chains (virtq_drain: notifications off meanwhile, a budget per call). */
static void transmit(struct virtio_net *net)
{
    if (net->broken)
        return;
    unsigned served;
    int r = virtq_drain(&net->dev.queues[NET_TXQ], &net->tx_elem, transmit_next, net, &served);
    if (served)
        virtio_signal_used(&net->dev, NET_TXQ);
    if (r == 0)
        virtio_requeue(&net->dev, NET_TXQ);
    if (r < 0)
        fail(net, NET_TXQ, r);
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
static enum place_result fill_chains(struct virtio_net *net, const uint8_t *hdr,
                                     const uint8_t *frame, size_t len, unsigned *n)
{
    size_t total = VIRTIO_NET_HDR_SIZE + len, off = 0;
    unsigned limit = max_chains(net);
    while (off < total) {
        if (*n == limit)
            return DROPPED;
        struct virtq_elem *e = *n ? &net->rx_elem : &net->rx_first;
        int r = pop_rx(net, e, *n == 0);
        if (r < 0) {
            net->rx_error = r;
            return BROKEN;
        }
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

static enum place_result place_frame(struct virtio_net *net, const uint8_t *hdr,
                                     const uint8_t *frame, size_t len)
{
    unsigned n = 0;
    enum place_result res = fill_chains(net, hdr, frame, len, &n);
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

/* The guest's header for a frame from the backend, in hdr; false when it must be dropped.
 * A bare-frame backend's frames get a zero one (DATA_VALID when GUEST_CSUM was offered, which
 * is only when the backend built them). A vnet_hdr backend's header is taken off the frame
 * and checked against what the driver accepted: the backend was told, but a frame read
 * before may have waited in its queue. DATA_VALID goes on only under GUEST_CSUM. */
static bool rx_header(const struct virtio_net *net, const uint8_t **frame, size_t *len,
                      uint8_t hdr[VIRTIO_NET_HDR_SIZE])
{
    bool guest_csum = virtio_has_feature(&net->dev, VIRTIO_NET_F_GUEST_CSUM);
    memset(hdr, 0, VIRTIO_NET_HDR_SIZE);
    if (!net->backend->vnet_hdr) {
        hdr[0] = guest_csum ? HDR_F_DATA_VALID : 0;
        return true;
    }
    /* net_backend_deliver passes nothing shorter than the header and an Ethernet header. */
    memcpy(hdr, *frame, HDR_NUM_BUFFERS); /* num_buffers is the device's */
    *frame += VIRTIO_NET_HDR_SIZE;
    *len -= VIRTIO_NET_HDR_SIZE;
    if (!guest_csum)
        hdr[0] &= (uint8_t)~HDR_F_DATA_VALID;
    return net_vnet_hdr_valid(hdr, *len, rx_offloads(&net->dev));
}

/* The backend's receiver. Before the driver is ready, frames are dropped (consumed): nothing
 * the guest has not asked for yet is worth keeping. */
static bool receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct virtio_net *net = opaque;
    if (!queue_usable(net, NET_RXQ))
        return true;
    uint8_t hdr[VIRTIO_NET_HDR_SIZE];
    if (!rx_header(net, &frame, &len, hdr)) {
        net->stats.rx_bad++;
        return true;
    }
    switch (place_frame(net, hdr, frame, len)) {
    case NO_ROOM:
        return false;
    case DROPPED:
        net->stats.rx_toobig++;
        return true;
    case BROKEN:
        fail(net, NET_RXQ, net->rx_error);
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
    net_backend_set_rx_offloads(net->backend, rx_offloads(dev));
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
    /* The next driver may accept less; until it is ready nothing reaches it anyway. */
    net_backend_set_rx_offloads(net->backend, 0);
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
    /* Frames the backend still queues for the guest stay with this VM; a restored one starts
     * with a fresh backend (for NAT, a new slirp that forgot the old connections, as after a
     * link flap). */
    .save = virtio_save_queues_only,
    .restore = virtio_restore_queues_only,
};

static uint64_t offload_feature(unsigned offloads, unsigned off, unsigned bit)
{
    return (offloads & off) ? 1ULL << bit : 0;
}

/* A vnet_hdr backend's offloads as features; all need the checksum one (virtio 1.2, 5.1.3.1),
 * and those towards the guest a backend that can be told which were accepted. */
static uint64_t passthrough_features(const struct net_backend *be)
{
    unsigned o = be->vnet_hdr && (be->offloads & NET_OFFLOAD_CSUM) ? be->offloads : 0;
    unsigned tso = o & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6);
    uint64_t host = offload_feature(o, NET_OFFLOAD_TSO4, VIRTIO_NET_F_HOST_TSO4) |
                    offload_feature(o, NET_OFFLOAD_TSO6, VIRTIO_NET_F_HOST_TSO6) |
                    offload_feature(tso ? o : 0, NET_OFFLOAD_ECN, VIRTIO_NET_F_HOST_ECN);
    if (!o || !be->ops->set_rx_offloads)
        return host;
    return host | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
           offload_feature(o, NET_OFFLOAD_TSO4, VIRTIO_NET_F_GUEST_TSO4) |
           offload_feature(o, NET_OFFLOAD_TSO6, VIRTIO_NET_F_GUEST_TSO6) |
           offload_feature(tso ? o : 0, NET_OFFLOAD_ECN, VIRTIO_NET_F_GUEST_ECN);
}

/* The features the backend can take (see the top of this file). CSUM is always offered: for a
 * bare-frame backend it is completed here; a vnet_hdr backend is expected to take it (a tap
 * does), else frames that ask for it are refused. */
static uint64_t offered_features(const struct net_backend *be)
{
    uint64_t f = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
                 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_CSUM |
                 passthrough_features(be);
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
