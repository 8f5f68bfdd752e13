#include "virtio/blk.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "block/raw.h"
#include "virtio/blk_req.h"

/* A request from pop to completion; its buffers are guest memory the backend fills. */
struct blk_request {
    struct virtio_blk *blk;
    struct blk_request *prev, *next; /* in flight, for reset and teardown */
    uint64_t generation;             /* the device generation it belongs to */
    struct virtq_elem elem;
    struct virtio_blk_request req;
};

struct virtio_blk {
    struct virtio_device vdev; /* first: the transport sees only this */
    struct block_backend *backend;
    struct virtio_blk_disk disk;
    uint8_t config[VIRTIO_BLK_CONFIG_SIZE]; /* fixed at creation: safe from vCPU threads */
    struct blk_request *inflight;
    uint64_t generation; /* bumped at reset: older completions must not touch the rings */
    bool broken;         /* the driver broke the protocol: ignore kicks until reset */
    bool watching;       /* the backend's completion descriptor is on the loop */
    bool signal_pending; /* pushed since the last interrupt decision */
};

static struct virtio_blk *to_blk(struct virtio_device *dev)
{
    return (struct virtio_blk *)dev;
}

static void unlink_request(struct blk_request *r)
{
    struct virtio_blk *blk = r->blk;
    if (r->prev)
        r->prev->next = r->next;
    else
        blk->inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
}

static void finish_request(struct blk_request *r, uint32_t used)
{
    struct virtio_blk *blk = r->blk;
    if (r->generation == blk->generation && !blk->broken) {
        virtq_push(&blk->vdev.queues[0], r->elem.head, used);
        blk->signal_pending = true;
    }
    unlink_request(r);
}

static void request_done(void *opaque, int result)
{
    struct blk_request *r = opaque;
    /* From before a reset: its status byte may lie in memory the driver reuses by now. */
    if (r->generation != r->blk->generation) {
        unlink_request(r);
        return;
    }
    finish_request(r, virtio_blk_complete(&r->req, result));
}

static void flush_signal(struct virtio_blk *blk)
{
    if (blk->signal_pending) {
        blk->signal_pending = false;
        virtio_signal_used(&blk->vdev, 0);
    }
}

/* Parses and starts one popped request; completes it at once when there is nothing to do. */
static void start_request(struct blk_request *r)
{
    struct virtio_blk *blk = r->blk;
    int verdict = virtio_blk_parse(&r->elem, &blk->disk, &r->req);
    if (verdict != VIRTIO_BLK_SUBMIT) {
        finish_request(r, virtio_blk_finish(&r->req, (uint8_t)verdict));
        return;
    }
    r->req.op.done = request_done;
    r->req.op.opaque = r;
    int rc = block_submit(blk->backend, &r->req.op);
    if (rc < 0)
        finish_request(r, virtio_blk_complete(&r->req, rc));
}

static struct blk_request *new_request(struct virtio_blk *blk)
{
    struct blk_request *r = malloc(sizeof(*r));
    if (!r)
        return NULL;
    r->blk = blk;
    r->generation = blk->generation;
    r->prev = NULL;
    r->next = blk->inflight;
    if (blk->inflight)
        blk->inflight->prev = r;
    blk->inflight = r;
    return r;
}

/* Pops until the ring is empty or *budget chains were taken. Returns 0 then (or when memory
 * ran out), or virtq_pop's error when the driver broke the rules. */
static int drain_ring(struct virtio_blk *blk, unsigned *budget)
{
    struct virtq *q = &blk->vdev.queues[0];
    for (; *budget > 0; --*budget) {
        struct blk_request *r = new_request(blk);
        if (!r)
            return 0; /* out of memory: the requests stay in the ring for the next kick */
        int popped = virtq_pop(q, &r->elem);
        if (popped <= 0) {
            unlink_request(r);
            return popped;
        }
        start_request(r);
    }
    return 0;
}

static void blk_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_blk *blk = to_blk(dev);
    if (blk->broken || index != 0)
        return;
    struct virtq *q = &dev->queues[0];
    block_plug(blk->backend);
    /* Requests the backend completes at once (the synchronous fallback) free their chains as
     * fast as the guest posts new ones: the budget (queue.h) bounds one call. */
    unsigned budget = VIRTQ_DRAIN_BUDGET;
    int err;
    do {
        virtq_disable_notify(q);
        err = drain_ring(blk, &budget);
    } while (err == 0 && budget > 0 && virtq_enable_notify(q));
    block_unplug(blk->backend);
    if (err < 0) {
        blk->broken = true;
        virtio_needs_reset(dev, 0, err);
        return;
    }
    if (budget == 0)
        virtio_requeue(dev, 0);
    flush_signal(blk);
}

static void on_completions(void *opaque, uint32_t events)
{
    struct virtio_blk *blk = opaque;
    (void)events;
    block_process_completions(blk->backend);
    flush_signal(blk);
}

static void blk_activate(struct virtio_device *dev)
{
    struct virtio_blk *blk = to_blk(dev);
    blk->disk.features = dev->driver_features;
    if (!blk->watching)
        blk->watching = io_loop_add(dev->loop, block_event_fd(blk->backend), EPOLLIN,
                                    on_completions, blk) == 0;
}

static void blk_reset(struct virtio_device *dev)
{
    struct virtio_blk *blk = to_blk(dev);
    /* The old rings may be reused memory by now: let in-flight I/O finish, but push nothing. */
    blk->generation++;
    block_drain(blk->backend);
    blk->broken = false;
    blk->signal_pending = false;
}

static void blk_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data, unsigned size)
{
    memcpy(data, to_blk(dev)->config + offset, size);
}

static void blk_destroy(struct virtio_device *dev)
{
    struct virtio_blk *blk = to_blk(dev);
    /* The loop has stopped; block_close waits for what the kernel still holds. */
    block_close(blk->backend);
    while (blk->inflight)
        unlink_request(blk->inflight);
    free(blk);
}

static const struct virtio_device_ops blk_ops = {
    .queue_notify = blk_queue_notify,
    .config_read = blk_config_read,
    .activate = blk_activate,
    .reset = blk_reset,
    .destroy = blk_destroy,
};

struct virtio_device *virtio_blk_new(const char *path, bool read_only, bool direct,
                                     const char *serial, char *error, size_t error_len)
{
    struct virtio_blk *blk = calloc(1, sizeof(*blk));
    if (!blk)
        return NULL;
    blk->backend = block_open(path, read_only, direct, error, error_len);
    if (!blk->backend) {
        free(blk);
        return NULL;
    }
    blk->disk.capacity = block_size(blk->backend) / VIRTIO_BLK_SECTOR_SIZE;
    blk->disk.read_only = read_only;
    /* GET_ID's 20 bytes are NUL-padded, not NUL-terminated (5.2.6). */
    if (serial)
        memcpy(blk->disk.serial, serial, strnlen(serial, sizeof(blk->disk.serial)));
    virtio_blk_config(blk->disk.capacity, blk->config);
    blk->vdev = (struct virtio_device){
        .ops = &blk_ops,
        .device_id = VIRTIO_ID_BLOCK,
        .device_features = virtio_blk_features(read_only),
        .config_size = VIRTIO_BLK_CONFIG_SIZE,
        .num_queues = 1,
        .queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
    };
    return &blk->vdev;
}
