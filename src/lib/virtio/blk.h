/*
 * virtio-blk (virtio 1.2, 5.2) on a raw image: one request queue served on the I/O loop, the
 * requests parsed by blk_req.c and carried out asynchronously by the block backend.
 */
#ifndef COVE_VIRTIO_BLK_H
#define COVE_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>

#include "virtio/device.h"

#define VIRTIO_BLK_QUEUE_SIZE 256

/* Opens the image (direct: O_DIRECT). serial may be NULL. NULL with one line in error. */
struct virtio_device *virtio_blk_new(const char *path, bool read_only, bool direct,
                                     const char *serial, char *error, size_t error_len);

#endif
