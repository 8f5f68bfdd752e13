#include "net/backend.h"

#include <stdlib.h>
#include <string.h>

void net_backend_init(struct net_backend *be, const struct net_backend_ops *ops,
                      const struct net_policy *policy)
{
    memset(be, 0, sizeof(*be));
    be->ops = ops;
    be->policy = *policy;
}

void net_backend_set_receiver(struct net_backend *be, net_receive_fn fn, void *opaque)
{
    be->receive = fn;
    be->receive_opaque = opaque;
}

/* The header in front of a vnet_hdr backend's frames: the policy judges the frame behind it. */
static size_t hdr_size(const struct net_backend *be)
{
    return be->vnet_hdr ? NET_VNET_HDR_SIZE : 0;
}

void net_backend_set_rx_offloads(struct net_backend *be, unsigned offloads)
{
    if (be->vnet_hdr && be->ops->set_rx_offloads)
        be->ops->set_rx_offloads(be, offloads & be->offloads);
}

void net_backend_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    size_t hdr = hdr_size(be);
    if (len < hdr) {
        be->stats.tx_dropped_malformed++;
        return;
    }
    switch (net_policy_classify(&be->policy, frame + hdr, len - hdr)) {
    case NET_VERDICT_ALLOW:
        be->stats.tx_frames++;
        be->ops->send(be, frame, len);
        break;
    case NET_VERDICT_DROP_POLICY:
        be->stats.tx_dropped_policy++;
        break;
    case NET_VERDICT_DROP_MALFORMED:
        be->stats.tx_dropped_malformed++;
        break;
    }
}

static bool offer(struct net_backend *be, const uint8_t *frame, size_t len)
{
    if (!be->receive || !be->receive(be->receive_opaque, frame, len))
        return false;
    be->stats.rx_frames++;
    return true;
}

static void enqueue(struct net_backend *be, const uint8_t *frame, size_t len)
{
    if (be->rxq_count == NET_RXQ_MAX_FRAMES || len > NET_RXQ_MAX_BYTES - be->rxq_bytes) {
        be->stats.rx_dropped++;
        return;
    }
    uint8_t *copy = malloc(len);
    if (!copy) {
        be->stats.rx_dropped++;
        return;
    }
    memcpy(copy, frame, len);
    unsigned tail = (be->rxq_head + be->rxq_count) % NET_RXQ_MAX_FRAMES;
    be->rxq[tail] = (struct net_rx_slot){copy, len};
    be->rxq_count++;
    be->rxq_bytes += len;
}

static void dequeue(struct net_backend *be)
{
    free(be->rxq[be->rxq_head].data);
    be->rxq_bytes -= be->rxq[be->rxq_head].len;
    be->rxq[be->rxq_head] = (struct net_rx_slot){0};
    be->rxq_head = (be->rxq_head + 1) % NET_RXQ_MAX_FRAMES;
    be->rxq_count--;
}

/* Order is kept: a frame waits behind the queued ones even when the receiver has room. */
void net_backend_deliver(struct net_backend *be, const uint8_t *frame, size_t len)
{
    size_t hdr = hdr_size(be);
    if (len < hdr + NET_FRAME_MIN || len - hdr > NET_FRAME_MAX) {
        be->stats.rx_dropped++;
        return;
    }
    if (be->rxq_count == 0 && offer(be, frame, len))
        return;
    enqueue(be, frame, len);
}

static void drained(struct net_backend *be)
{
    if (be->ops->rx_drained)
        be->ops->rx_drained(be);
}

void net_backend_rx_ready(struct net_backend *be)
{
    while (be->rxq_count) {
        const struct net_rx_slot *s = &be->rxq[be->rxq_head];
        if (!offer(be, s->data, s->len))
            return;
        dequeue(be);
    }
    drained(be);
}

void net_backend_rx_purge(struct net_backend *be)
{
    while (be->rxq_count)
        dequeue(be);
    drained(be);
}

const struct net_stats *net_backend_stats(const struct net_backend *be) { return &be->stats; }

void net_backend_free(struct net_backend *be)
{
    if (!be)
        return;
    net_backend_rx_purge(be);
    be->ops->destroy(be);
}
