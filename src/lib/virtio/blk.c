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
    struct blk_request *merged_next; /* the next request of its merge (see struct merge) */
    uint64_t data_len;               /* bytes its read or write moves */
    struct virtq_elem elem;
    struct virtio_blk_request req;
};

/*
 * Reads (or writes) of one kick that continue each other on the disk go to the backend as
 * one readv (writev), as QEMU's request merging does: a guest's sequential I/O with several
 * requests in flight then costs the host one operation per run instead of one per request
 * (one io_uring worker hand-off where the file cannot be read without blocking, as tmpfs in
 * Linux 6.1; measured in docs/benchmarks.md). The first request leads; the others hang off
 * it in merged_next order, and the iovecs of all are gathered here (block_submit copies
 * them). Only requests of one kick merge, so nothing waits for a later one.
 */
struct merge {
    struct blk_request *first, *last;
    unsigned count;
    unsigned iovcnt;
    uint64_t end;   /* the disk offset just past the last request */
    uint64_t bytes; /* of all */
    struct iovec iov[BLOCK_MAX_IOV];
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
    struct merge merge;  /* being gathered during one queue_notify; empty otherwise */
    uint64_t merged;     /* requests that joined another's merge */
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

/* A merge finished: every request of it gets its own length, or the error of the whole. */
static void merge_done(void *opaque, int result)
{
    struct blk_request *r = opaque;
    while (r) {
        struct blk_request *next = r->merged_next;
        request_done(r, result < 0 ? result : (int)r->data_len);
        r = next;
    }
}

static void flush_signal(struct virtio_blk *blk)
{
    if (blk->signal_pending) {
        blk->signal_pending = false;
        virtio_signal_used(&blk->vdev, 0);
    }
}

static void submit_one(struct blk_request *r)
{
    r->req.op.done = request_done;
    r->req.op.opaque = r;
    int rc = block_submit(r->blk->backend, &r->req.op);
    if (rc < 0)
        finish_request(r, virtio_blk_complete(&r->req, rc));
}

/* Hands the gathered requests to the backend, as one operation when there are several. */
static void submit_merge(struct virtio_blk *blk)
{
    struct merge *m = &blk->merge;
    struct blk_request *first = m->first;
    unsigned count = m->count;
    m->first = m->last = NULL;
    m->count = 0;
    if (count == 0)
        return;
    if (count == 1) {
        submit_one(first);
        return;
    }
    struct block_op op = {.kind = first->req.op.kind, .flags = first->req.op.flags,
                          .offset = first->req.op.offset,
                          .iov = m->iov, .iovcnt = m->iovcnt, .done = merge_done,
                          .opaque = first};
    blk->merged += count - 1;
    int rc = block_submit(blk->backend, &op);
    if (rc < 0)
        merge_done(first, rc);
}

static uint64_t iov_bytes(const struct iovec *iov, unsigned count)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < count; i++)
        n += iov[i].iov_len;
    return n;
}

/* Whether r can join the merge being gathered (or start one: no merge, a read or write). */
static bool joins_merge(const struct merge *m, const struct blk_request *r)
{
    const struct block_op *op = &r->req.op;
    if (op->kind != BLOCK_OP_READ && op->kind != BLOCK_OP_WRITE)
        return false;
    if (!m->first)
        return true;
    /* Write-through writes (FUA: no FLUSH negotiated) merge with each other: one fdatasync
     * after the merged write makes every one of them durable before it completes. */
    return op->kind == m->first->req.op.kind && op->flags == m->first->req.op.flags &&
           op->offset == m->end &&
           m->iovcnt + op->iovcnt <= BLOCK_MAX_IOV && m->bytes + r->data_len <= BLOCK_MAX_TRANSFER;
}

static void add_to_merge(struct merge *m, struct blk_request *r)
{
    const struct block_op *op = &r->req.op;
    if (!m->first) {
        m->first = r;
        m->iovcnt = 0;
        m->bytes = 0;
    } else {
        m->last->merged_next = r;
    }
    memcpy(m->iov + m->iovcnt, op->iov, op->iovcnt * sizeof(*op->iov));
    m->iovcnt += op->iovcnt;
    m->last = r;
    m->count++;
    m->bytes += r->data_len;
    m->end = op->offset + r->data_len;
}

/* Parses one popped request; completes it at once when there is nothing to do, gathers it
 * into the merge when it continues it, or submits what was gathered and then itself. */
static void start_request(struct blk_request *r)
{
    struct virtio_blk *blk = r->blk;
    int verdict = virtio_blk_parse(&r->elem, &blk->disk, &r->req);
    if (verdict != VIRTIO_BLK_SUBMIT) {
        finish_request(r, virtio_blk_finish(&r->req, (uint8_t)verdict));
        return;
    }
    r->merged_next = NULL;
    r->data_len = iov_bytes(r->req.op.iov, r->req.op.iovcnt);
    if (!joins_merge(&blk->merge, r))
        submit_merge(blk); /* what was gathered goes first: requests start in ring order */
    if (joins_merge(&blk->merge, r))
        add_to_merge(&blk->merge, r);
    else
        submit_one(r);
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
    submit_merge(blk);
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

uint64_t virtio_blk_merged(const struct virtio_device *dev)
{
    return ((const struct virtio_blk *)dev)->merged;
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
