/*
 * The VM's I/O thread: one epoll loop that serves console input now and virtio queues,
 * block completions and network sockets later. Handlers run on the loop's thread only, so a
 * device's I/O state needs no lock against other handlers.
 *
 * Handlers are added and removed before the loop runs or from inside a handler; io_loop_wake()
 * and io_loop_stop() are the only calls for other threads.
 */
#ifndef COVE_IO_LOOP_H
#define COVE_IO_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct io_loop;

/* events: the EPOLL* bits that fired. */
typedef void (*io_handler_fn)(void *opaque, uint32_t events);
/* Called before each wait; returns true when it has work left, so the loop must not sleep. */
typedef bool (*io_prepare_fn)(void *opaque);

struct io_loop *io_loop_new(void);
void io_loop_free(struct io_loop *loop);

/* Watches fd for events (EPOLLIN, EPOLLOUT). -EPERM for descriptors epoll cannot watch
 * (regular files), so the caller can fall back to reading them from a prepare hook. */
int io_loop_add(struct io_loop *loop, int fd, uint32_t events, io_handler_fn fn, void *opaque);
/* Changes what fd is watched for; 0 pauses it (hang-ups are still reported). */
int io_loop_set_events(struct io_loop *loop, int fd, uint32_t events);
int io_loop_remove(struct io_loop *loop, int fd);
/* At most one prepare hook per loop. */
void io_loop_set_prepare(struct io_loop *loop, io_prepare_fn fn, void *opaque);

/* Runs handlers until io_loop_stop(). */
void io_loop_run(struct io_loop *loop);
/* From any thread: makes the loop run its prepare hook again soon. */
void io_loop_wake(struct io_loop *loop);
/*
 * From another thread: waits until the loop is between handlers and holds it there, so the
 * caller may look at state only handlers touch (a snapshot). Returns at once when the loop is
 * not running. io_loop_unpark() lets it go on; io_loop_stop() also ends a park.
 */
void io_loop_park(struct io_loop *loop);
void io_loop_unpark(struct io_loop *loop);
/* From any thread: makes io_loop_run() return. */
void io_loop_stop(struct io_loop *loop);

#endif
