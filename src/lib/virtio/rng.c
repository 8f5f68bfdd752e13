/*
 * virtio-rng: each chain on the request queue is filled with random bytes and returned.
 *
 * Choices where the spec leaves room (5.4.6):
 * - A request gets at most VIRTIO_RNG_MAX_REQUEST bytes, so one hostile 4 GiB buffer cannot
 *   keep the I/O thread busy; the device may use less than the whole buffer.
 * - A chain with device-readable buffers breaks a driver MUST NOT, but is harmless: it is
 *   returned with nothing written rather than failing the whole device. A chain without
 *   writable bytes is returned the same way.
 */
#include "virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RNG_REQUESTQ 0
#define RNG_QUEUE_SIZE 64

struct virtio_rng {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    bool active;              /* DRIVER_OK seen since the last reset */
    bool broken;              /* the driver broke the ring protocol; idle until reset */
    struct virtq_elem elem;   /* ~4 KiB: kept here rather than on the I/O thread's stack */
};

static struct virtio_rng *to_rng(struct virtio_device *dev) { return (struct virtio_rng *)dev; }

/*
 * Blocking getrandom() only waits before the host's CRNG is first seeded, long before any VM
 * starts, so it does not stall the I/O thread in practice. Returns the bytes obtained.
 */
static size_t fill_random(uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return done;
}

/* Fills the chain's writable buffers (up to the cap) and returns the bytes written. */
static uint32_t serve_request(const struct virtq_elem *e)
{
    if (e->out_count)
        return 0;
    size_t total = 0;
    for (unsigned i = 0; i < e->in_count && total < VIRTIO_RNG_MAX_REQUEST; i++) {
        const struct iovec *v = &e->iov[i];
        size_t want = v->iov_len;
        if (want > VIRTIO_RNG_MAX_REQUEST - total)
            want = VIRTIO_RNG_MAX_REQUEST - total;
        size_t got = fill_random(v->iov_base, want);
        total += got;
        if (got < want)
            break;
    }
    return (uint32_t)total;
}

static bool queue_usable(const struct virtio_rng *rng)
{
    return rng->active && !rng->broken && rng->dev.queue_enabled[RNG_REQUESTQ];
}

static bool serve_one(void *ctx, struct virtq_elem *e)
{
    struct virtio_rng *rng = ctx;
    virtq_push(&rng->dev.queues[RNG_REQUESTQ], e->head, serve_request(e));
    return true;
}

/* Answers the pending requests (virtq_drain: notifications off meanwhile, a budget per call). */
static void drain(struct virtio_rng *rng)
{
    unsigned served;
    int r = virtq_drain(&rng->dev.queues[RNG_REQUESTQ], &rng->elem, serve_one, rng, &served);
    if (served)
        virtio_signal_used(&rng->dev, RNG_REQUESTQ);
    if (r == 0)
        virtio_requeue(&rng->dev, RNG_REQUESTQ);
    if (r < 0) {
        rng->broken = true;
        virtio_needs_reset(&rng->dev, RNG_REQUESTQ, r);
    }
}

static void rng_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_rng *rng = to_rng(dev);
    if (index == RNG_REQUESTQ && queue_usable(rng))
        drain(rng);
}

/* No configuration space (config_size 0); answer zeros should a transport ask anyway. */
static void rng_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data,
                            unsigned size)
{
    (void)dev;
    (void)offset;
    memset(data, 0, size);
}

/* The device must not use buffers before DRIVER_OK (2.1.2), so a kick that came earlier was
 * ignored: serve what is already queued now. */
static void rng_activate(struct virtio_device *dev)
{
    struct virtio_rng *rng = to_rng(dev);
    rng->active = true;
    if (queue_usable(rng))
        drain(rng);
}

static void rng_reset(struct virtio_device *dev)
{
    struct virtio_rng *rng = to_rng(dev);
    rng->active = false;
    rng->broken = false;
}

static void rng_destroy(struct virtio_device *dev) { free(to_rng(dev)); }

static const struct virtio_device_ops rng_ops = {
    .queue_notify = rng_queue_notify,
    .config_read = rng_config_read,
    .activate = rng_activate,
    .reset = rng_reset,
    .destroy = rng_destroy,
    .save = virtio_save_queues_only, /* each request is served whole when it arrives */
    .restore = virtio_restore_queues_only,
};

struct virtio_device *virtio_rng_new(void)
{
    struct virtio_rng *rng = calloc(1, sizeof(*rng));
    if (!rng)
        return NULL;
    rng->dev = (struct virtio_device){
        .ops = &rng_ops,
        .device_id = VIRTIO_ID_RNG,
        .num_queues = 1,
        .queue_max_size = RNG_QUEUE_SIZE,
    };
    return &rng->dev;
}
