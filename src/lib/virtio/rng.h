/*
 * virtio-rng (virtio 1.2, 5.4): the guest's entropy source, fed from the host's getrandom().
 *
 * One queue (requestq, index 0); no feature bits and no configuration space. Every request is
 * answered at once, so the device holds no state between notifications.
 */
#ifndef COVE_VIRTIO_RNG_H
#define COVE_VIRTIO_RNG_H

#include "virtio/device.h"

/* The most bytes one request gets; a larger buffer is answered in part, as 5.4.6 allows. */
#define VIRTIO_RNG_MAX_REQUEST (64 * 1024)

/* NULL when out of memory. Freed through dev->ops->destroy(dev). */
struct virtio_device *virtio_rng_new(void);

#endif
