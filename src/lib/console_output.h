/*
 * Host-side console output that never blocks its caller: bytes are copied into a bounded
 * buffer and a writer thread of its own writes them to the descriptor. A reader that stops
 * reading (a stalled pipe, a terminal held with ^S) fills the buffer; then writes take less
 * than offered, and the device holds the guest back until the writer has made room. The I/O
 * thread, and every other device on it, goes on meanwhile.
 *
 * Why a thread rather than O_NONBLOCK: the descriptor is usually the process's stdout, whose
 * open file description is shared with the shell and the rest of a pipeline; setting its flags
 * would change their writes too. A blocking write on a thread of its own works for every kind
 * of descriptor (pipe, terminal, socket, file) without touching it.
 */
#ifndef COVE_CONSOLE_OUTPUT_H
#define COVE_CONSOLE_OUTPUT_H

#include <stddef.h>

#include "io_loop.h"

#define CONSOLE_OUTPUT_BUFFER 16384
/* How long closing waits for a reader that takes nothing before giving up on what is left,
 * and how long it waits at most, however slowly the reader goes on taking bytes. */
#define CONSOLE_OUTPUT_LINGER_MS 1000
#define CONSOLE_OUTPUT_CLOSE_MS 10000

struct console_output;

/*
 * Starts the writer for fd, which stays owned by the caller and must outlive the output.
 * wake: the loop whose prepare hook retries a write that was cut short (io_loop_wake() is
 * called once room is free again). NULL when out of memory or out of threads.
 */
struct console_output *console_output_new(int fd, struct io_loop *wake);

/*
 * Takes as much of buf as there is room for and returns how much. Less than len means the
 * buffer is full: the wake loop's prepare hook runs once room is free, and should offer the
 * rest again. After a write error (the reader went away) everything is taken and dropped, as
 * the UART drops its bytes. From one thread at a time.
 */
size_t console_output_write(struct console_output *out, const void *buf, size_t len);

/*
 * Writes out what is buffered, waiting as long as the reader keeps taking bytes, but no more
 * than CONSOLE_OUTPUT_LINGER_MS at a time when it takes none and CONSOLE_OUTPUT_CLOSE_MS in
 * all; then what is left is dropped and the thread is stopped. NULL is ignored.
 */
void console_output_free(struct console_output *out);

#endif
