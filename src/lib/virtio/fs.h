/*
 * virtio-fs (virtio 1.2, 5.11): a host directory shared with the guest through the FUSE
 * server in src/lib/fs.
 *
 * Queues: hiprio (index 0, FORGETs) and one request queue (index 1). No feature bits (no
 * notification queue, no DAX window). The configuration space is the tag the guest mounts by
 * (36 bytes, NUL-padded) and num_request_queues (le32, 1); it is fixed at creation, so reading
 * it from a vCPU thread needs no lock.
 */
#ifndef COVE_VIRTIO_FS_H
#define COVE_VIRTIO_FS_H

#include "fs/fuse_server.h"
#include "virtio/device.h"

#define VIRTIO_FS_TAG_MAX 36

/*
 * tag: 1..VIRTIO_FS_TAG_MAX bytes. On success the device owns server and destroys it with
 * itself (dev->ops->destroy(dev), before the I/O loop). NULL when the tag is empty or too long
 * or memory is short; the server then stays the caller's.
 */
struct virtio_device *virtio_fs_new(const char *tag, struct fuse_server *server);

#endif
