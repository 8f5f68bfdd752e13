/*
 * virtio-fs: every chain on either queue is one FUSE request, served synchronously by the
 * FUSE server on the I/O thread and returned with the bytes it wrote.
 *
 * The chain's readable buffers are the request, its writable buffers the reply space, exactly
 * the iovec split the server takes, so READ and WRITE data go straight between the file and
 * guest memory. The server bounds-checks everything in the request; a chain it cannot answer
 * (no room for a reply header) is returned with nothing written. A malformed ring makes the
 * device broken until the driver resets it (device.h). A reset also ends the FUSE session:
 * the guest's references are gone with its driver, so the server forgets them.
 */
#include "virtio/fs.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FS_HIPRIO_QUEUE 0
#define FS_REQUEST_QUEUE 1
#define FS_NUM_QUEUES 2
/* Linux sizes its requests by the queue (at most size - 4 data pages) and by FUSE's own cap of
 * 256 pages. 512 lets the second decide: a 1 MiB read or write is one request, where a queue
 * of 256 (252 pages) cut each into 1008 + 16 KiB. Linux never chains more than 256 pages and
 * 4 headers, which virtq_pop takes; a longer chain, legal for a queue of 512 but built by no
 * driver that honours max_pages, is refused as malformed. */
#define FS_QUEUE_SIZE 512
_Static_assert(FUSE_SERVER_MAX_PAGES + 4 <= VIRTQ_MAX_SEGMENTS,
               "a full-size request must fit one chain");
/* struct virtio_fs_config: tag[36], le32 num_request_queues. */
#define FS_CONFIG_SIZE (VIRTIO_FS_TAG_MAX + 4)

struct virtio_fs {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    struct fuse_server *server;
    bool active; /* DRIVER_OK seen since the last reset */
    bool broken; /* the driver broke the ring protocol; idle until reset */
    uint8_t config[FS_CONFIG_SIZE];
    struct virtq_elem elem; /* ~4 KiB: kept here rather than on the I/O thread's stack */
};

/* What serve_one needs: the device, and the queue being drained. */
struct fs_drain {
    struct virtio_fs *fs;
    struct virtq *q;
};

static struct virtio_fs *to_fs(struct virtio_device *dev) { return (struct virtio_fs *)dev; }

static bool queue_usable(const struct virtio_fs *fs, unsigned index)
{
    return fs->active && !fs->broken && fs->dev.queue_enabled[index];
}

/* One FUSE request; the reply's length is at most in_bytes, which fits the ring's u32. */
static bool serve_one(void *ctx, struct virtq_elem *e)
{
    struct fs_drain *d = ctx;
    size_t n = fuse_server_handle(d->fs->server, e->iov, e->out_count, e->iov + e->out_count,
                                  e->in_count);
    virtq_push(d->q, e->head, (uint32_t)n);
    return true;
}

/* Answers the pending requests on the queue (virtq_drain: notifications off meanwhile, a
 * budget per call). */
static void drain(struct virtio_fs *fs, unsigned index)
{
    struct fs_drain d = {fs, &fs->dev.queues[index]};
    unsigned served;
    int r = virtq_drain(d.q, &fs->elem, serve_one, &d, &served);
    if (served)
        virtio_signal_used(&fs->dev, index);
    if (r == 0)
        virtio_requeue(&fs->dev, index);
    if (r < 0) {
        fs->broken = true;
        virtio_needs_reset(&fs->dev, index, r);
    }
}

static void fs_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_fs *fs = to_fs(dev);
    if (index < FS_NUM_QUEUES && queue_usable(fs, index))
        drain(fs, index);
}

static void fs_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data,
                           unsigned size)
{
    memcpy(data, to_fs(dev)->config + offset, size);
}

/* Requests kicked before DRIVER_OK were left queued (2.1.2): serve them now. */
static void fs_activate(struct virtio_device *dev)
{
    struct virtio_fs *fs = to_fs(dev);
    fs->active = true;
    for (unsigned i = 0; i < FS_NUM_QUEUES; i++)
        if (queue_usable(fs, i))
            drain(fs, i);
}

static void fs_reset(struct virtio_device *dev)
{
    struct virtio_fs *fs = to_fs(dev);
    fs->active = false;
    fs->broken = false;
    fuse_server_reset(fs->server);
}

static void fs_destroy(struct virtio_device *dev)
{
    struct virtio_fs *fs = to_fs(dev);
    fuse_server_destroy(fs->server);
    free(fs);
}

/*
 * A share can be in a boot snapshot only before the guest mounts it (cove-agent mounts after
 * READY): the driver has set the device up, no FUSE session exists, and the queues are all
 * there is. The restored VM's server is a new one, on whatever directory its configuration
 * names. Once mounted, the session's inodes and handles are host state a snapshot cannot
 * carry. Each request is answered within its handler, so none is ever in flight here.
 */
static int fs_save(struct virtio_device *dev, struct snap_writer *w)
{
    if (fuse_server_in_session(to_fs(dev)->server))
        return -EBUSY;
    return virtio_save_queues_only(dev, w);
}

static const struct virtio_device_ops fs_ops = {
    .queue_notify = fs_queue_notify,
    .config_read = fs_config_read,
    .activate = fs_activate,
    .reset = fs_reset,
    .destroy = fs_destroy,
    .save = fs_save,
    .restore = virtio_restore_queues_only,
};

struct virtio_device *virtio_fs_new(const char *tag, struct fuse_server *server)
{
    size_t len = tag ? strlen(tag) : 0;
    if (len == 0 || len > VIRTIO_FS_TAG_MAX || !server)
        return NULL;
    struct virtio_fs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return NULL;
    fs->server = server;
    memcpy(fs->config, tag, len);
    uint32_t queues = htole32(1);
    memcpy(fs->config + VIRTIO_FS_TAG_MAX, &queues, sizeof(queues));
    fs->dev = (struct virtio_device){
        .ops = &fs_ops,
        .device_id = VIRTIO_ID_FS,
        .config_size = FS_CONFIG_SIZE,
        .num_queues = FS_NUM_QUEUES,
        .queue_max_size = FS_QUEUE_SIZE,
    };
    return &fs->dev;
}
