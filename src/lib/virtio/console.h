/*
 * virtio-console (virtio 1.2, 5.3), port 0 only: the guest's hvc0.
 *
 * No feature bits (no MULTIPORT, no SIZE, no EMERG_WRITE); the 12-byte configuration space
 * reads as zeros. Queues: receiveq0 (index 0, host to guest) and transmitq0 (index 1, guest to
 * host).
 *
 * Input is bounded: at most VIRTIO_CONSOLE_IN_BUFFER bytes wait in the device for the guest to
 * post receive buffers; beyond that console input stops reading and the rest stays in the
 * host descriptor (console.h).
 */
#ifndef COVE_VIRTIO_CONSOLE_H
#define COVE_VIRTIO_CONSOLE_H

#include <stdbool.h>

#include "virtio/device.h"

#define VIRTIO_CONSOLE_IN_BUFFER 4096

/*
 * in_fd is read once the driver activates the device, out_fd receives what the guest writes;
 * either may be -1 (no input / output discarded). Both stay owned by the caller and must
 * outlive the device. loop: the I/O loop the transport will put the device on. Output goes
 * through a writer thread (console_output.h), so a reader that stalls holds back the guest's
 * console, never the I/O thread; ignore SIGPIPE if out_fd is a pipe or socket. in_fd must not
 * also be watched by another console input on the same loop (io_loop_add refuses a second
 * handler: the device then has no input). NULL when out of memory or threads. Freed through
 * dev->ops->destroy(dev), before the I/O loop; that writes out what the output holds, giving
 * up on a reader that takes nothing for CONSOLE_OUTPUT_LINGER_MS.
 */
struct virtio_device *virtio_console_new(struct io_loop *loop, int in_fd, int out_fd);

/*
 * The console's share of the I/O loop's prepare step (a loop has one prepare hook, so the
 * VMM's hook calls this): resumes reading in_fd once the guest made room, reads a regular
 * file, resumes output once the writer made room. Returns true while it has work left and the loop must not sleep.
 */
bool virtio_console_prepare(struct virtio_device *dev);

#endif
