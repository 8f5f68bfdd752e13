/*
 * Host-side console input: moves bytes from a host descriptor (stdin, a pipe, a file) into a
 * console device (the 16550A now, virtio-console later) without ever buffering more than the
 * device can take. Runs on the VM's I/O loop.
 */
#ifndef COVE_CONSOLE_H
#define COVE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io_loop.h"

/* The device side: how much it can take now, and taking it. */
struct console_sink {
    size_t (*space)(void *device);
    size_t (*receive)(void *device, const uint8_t *buf, size_t len);
    void *device;
};

struct console_input;

/* Starts feeding in_fd into sink. The descriptor stays owned by the caller. */
struct console_input *console_input_new(struct io_loop *loop, int in_fd,
                                        const struct console_sink *sink);
void console_input_free(struct console_input *input);

/*
 * The I/O loop's prepare step for this input: resumes watching the descriptor when the device
 * has room again, and reads a regular file (which epoll cannot watch). Returns true while a
 * file still has bytes the device can take now.
 */
bool console_input_prepare(struct console_input *input);

#endif
