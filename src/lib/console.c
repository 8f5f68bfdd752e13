#include "console.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct console_input {
    struct io_loop *loop;
    int fd;
    struct console_sink sink;
    bool pollable; /* false for regular files, which epoll refuses */
    bool watching; /* the descriptor is armed for EPOLLIN */
    bool eof;
};

static void read_some(struct console_input *in)
{
    uint8_t buf[1024];
    size_t space = in->sink.space(in->sink.device);
    if (space > sizeof(buf))
        space = sizeof(buf);
    if (space == 0)
        return;
    ssize_t n = read(in->fd, buf, space);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        in->eof = true;
        if (in->pollable)
            io_loop_remove(in->loop, in->fd);
        return;
    }
    in->sink.receive(in->sink.device, buf, (size_t)n);
}

static void on_readable(void *opaque, uint32_t events)
{
    struct console_input *in = opaque;
    (void)events; /* readable or hung up: read() tells which */
    if (!in->eof)
        read_some(in);
}

bool console_input_prepare(struct console_input *in)
{
    if (in->eof)
        return false;
    bool room = in->sink.space(in->sink.device) > 0;
    if (!in->pollable) {
        if (room)
            read_some(in);
        return !in->eof && in->sink.space(in->sink.device) > 0;
    }
    /* Watch the descriptor only while the device can take bytes, so a guest that never reads
     * its console leaves the rest in the host's pipe instead of in our memory. */
    if (room != in->watching) {
        io_loop_set_events(in->loop, in->fd, room ? EPOLLIN : 0);
        in->watching = room;
    }
    return false;
}

struct console_input *console_input_new(struct io_loop *loop, int in_fd,
                                        const struct console_sink *sink)
{
    struct console_input *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    *in = (struct console_input){.loop = loop, .fd = in_fd, .sink = *sink};
    int r = io_loop_add(loop, in_fd, EPOLLIN, on_readable, in);
    in->pollable = r == 0;
    in->watching = in->pollable;
    if (r < 0 && r != -EPERM) {
        free(in);
        return NULL;
    }
    return in;
}

void console_input_free(struct console_input *in)
{
    if (!in)
        return;
    if (in->pollable && !in->eof)
        io_loop_remove(in->loop, in->fd);
    free(in);
}
