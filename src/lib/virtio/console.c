/*
 * virtio-console, port 0 only.
 *
 * Output: every chain on transmitq0 is copied into the console output (console_output.h), whose
 * writer thread writes it to out_fd, and returned at once. When the output's buffer is full (its
 * reader stalled) the chain being copied is held, with how much of it went, and transmitq0 is
 * left alone until the writer has made room: the guest waits, the I/O thread does not.
 * Input: a console_input (console.h) reads in_fd into a small bounded buffer here; bytes move
 * from it into the guest's receive buffers whenever both exist, i.e. after each read from
 * in_fd and on each kick of receiveq0. The buffer's free room is what console input may read,
 * so a guest that never reads its console leaves the rest in the host descriptor.
 *
 * Everything runs on the I/O thread (device.h), so no lock is needed. Rings are written by a
 * possibly hostile guest: any error from virtq_pop marks the device broken and asks for a
 * reset; nothing is read from or written to the queues again until the driver resets it.
 */
#include "virtio/console.h"

#include <stdlib.h>
#include <string.h>

/* The host console input (src/lib/console.h): a plain "console.h" would find this directory's
 * header first. */
#include "../console.h"
#include "console_output.h"

#define CONSOLE_RXQ 0
#define CONSOLE_TXQ 1
#define CONSOLE_QUEUE_SIZE 128
/* struct virtio_console_config: cols, rows (u16), max_nr_ports, emerg_wr (u32). */
#define CONSOLE_CONFIG_SIZE 12

struct virtio_console {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    int in_fd;
    struct console_output *output; /* NULL: out_fd was -1, output is discarded */
    bool active; /* DRIVER_OK seen since the last reset */
    bool broken; /* the driver broke the ring protocol; idle until reset */
    struct console_input *input; /* attached while active and in_fd >= 0 */
    size_t in_len;               /* bytes waiting in in_buf for receive buffers */
    uint8_t in_buf[VIRTIO_CONSOLE_IN_BUFFER];
    struct virtq_elem elem; /* receive chains; ~4 KiB, kept off the I/O thread's stack */
    struct virtq_elem tx_elem; /* the transmit chain being copied out */
    bool tx_held;              /* tx_elem popped but not all of it taken by the output */
    size_t tx_taken;           /* how much of tx_elem's readable bytes the output took */
};

static struct virtio_console *to_console(struct virtio_device *dev)
{
    return (struct virtio_console *)dev;
}

static bool queue_usable(const struct virtio_console *c, unsigned index)
{
    return c->active && !c->broken && c->dev.queue_enabled[index];
}

static void fail(struct virtio_console *c, unsigned queue, int err)
{
    c->broken = true;
    virtio_needs_reset(&c->dev, queue, err);
}

/* ---- Output: transmitq0 to out_fd. ---- */

/* Offers the held chain's readable bytes, from where the last offer stopped, to the output;
 * writable buffers (which a transmit chain should not have) are ignored. Returns whether the
 * output took all of them. */
static bool offer_held(struct virtio_console *c)
{
    const struct virtq_elem *e = &c->tx_elem;
    if (!c->output)
        return true;
    size_t skip = c->tx_taken;
    for (unsigned i = 0; i < e->out_count; i++) {
        size_t seg_len = e->iov[i].iov_len;
        if (skip >= seg_len) {
            skip -= seg_len;
            continue;
        }
        size_t want = seg_len - skip;
        size_t n = console_output_write(c->output, (const uint8_t *)e->iov[i].iov_base + skip,
                                        want);
        c->tx_taken += n;
        if (n < want)
            return false;
        skip = 0;
    }
    return true;
}

/* Moves chains from transmitq0 to the output until the queue is empty, the output full or
 * *budget chains went. Returns 1 when empty, 0 when full (the chain stays held) or out of
 * budget, or a negative errno. */
static int drain_transmitq(struct virtio_console *c, bool *pushed, unsigned *budget)
{
    struct virtq *q = &c->dev.queues[CONSOLE_TXQ];
    for (; *budget > 0; --*budget) {
        if (!c->tx_held) {
            int r = virtq_pop(q, &c->tx_elem);
            if (r <= 0)
                return r < 0 ? r : 1;
            c->tx_held = true;
            c->tx_taken = 0;
        }
        if (!offer_held(c))
            return 0;
        virtq_push(q, c->tx_elem.head, 0);
        c->tx_held = false;
        *pushed = true;
    }
    return 0;
}

/* Drains transmitq0 with notifications off, re-arming them once it is empty (as rng.c does).
 * While the output is full they stay off: the prepare step resumes, not a kick. */
static void transmit(struct virtio_console *c)
{
    struct virtq *q = &c->dev.queues[CONSOLE_TXQ];
    bool pushed = false;
    unsigned budget = VIRTQ_DRAIN_BUDGET;
    int r;
    do {
        virtq_disable_notify(q);
        r = drain_transmitq(c, &pushed, &budget);
    } while (r == 1 && virtq_enable_notify(q));
    if (pushed)
        virtio_signal_used(&c->dev, CONSOLE_TXQ);
    if (r == 0 && budget == 0)
        virtio_requeue(&c->dev, CONSOLE_TXQ);
    if (r < 0)
        fail(c, CONSOLE_TXQ, r);
}

/* ---- Input: in_fd to in_buf to receiveq0. ---- */

/* Copies buffered input into the next receive buffer. Returns 1 when one was used, 0 when
 * the guest has none posted, or a negative errno for a malformed chain. */
static int fill_one(struct virtio_console *c)
{
    struct virtq *q = &c->dev.queues[CONSOLE_RXQ];
    int r = virtq_pop(q, &c->elem);
    /* Out of buffers: re-arm notifications so the guest kicks when it posts more, and look
     * once more in case it posted one before the re-arm was visible. */
    if (r == 0 && virtq_enable_notify(q))
        r = virtq_pop(q, &c->elem);
    if (r <= 0)
        return r;
    size_t n = virtq_write(&c->elem, 0, c->in_buf, c->in_len);
    memmove(c->in_buf, c->in_buf + n, c->in_len - n);
    c->in_len -= n;
    virtq_push(q, c->elem.head, (uint32_t)n);
    return 1;
}

/* Moves as much buffered input into the guest as it has room for. */
static void deliver(struct virtio_console *c)
{
    if (!queue_usable(c, CONSOLE_RXQ))
        return;
    bool was_full = c->in_len == sizeof(c->in_buf);
    bool pushed = false;
    int r = 1;
    while (c->in_len > 0 && (r = fill_one(c)) > 0)
        pushed = true;
    if (pushed)
        virtio_signal_used(&c->dev, CONSOLE_RXQ);
    if (r < 0)
        fail(c, CONSOLE_RXQ, r);
    /* A full buffer made console input stop watching in_fd; its prepare step resumes it. The
     * loop runs prepare after every handler anyway, so this only matters should room ever be
     * freed outside a loop iteration; one eventfd write per full-to-not-full is cheap. */
    if (was_full && c->in_len < sizeof(c->in_buf) && c->input)
        io_loop_wake(c->dev.loop);
}

static size_t sink_space(void *device)
{
    struct virtio_console *c = device;
    return sizeof(c->in_buf) - c->in_len;
}

static size_t sink_receive(void *device, const uint8_t *buf, size_t len)
{
    struct virtio_console *c = device;
    size_t room = sizeof(c->in_buf) - c->in_len;
    if (len > room)
        len = room; /* console input never offers more than the space; be safe anyway */
    memcpy(c->in_buf + c->in_len, buf, len);
    c->in_len += len;
    deliver(c);
    return len;
}

/* Without input (in_fd -1, or a descriptor the loop refuses) the console is output only. */
static void attach_input(struct virtio_console *c)
{
    if (c->in_fd < 0 || c->input)
        return;
    struct console_sink sink = {.space = sink_space, .receive = sink_receive, .device = c};
    c->input = console_input_new(c->dev.loop, c->in_fd, &sink);
}

static void detach_input(struct virtio_console *c)
{
    console_input_free(c->input);
    c->input = NULL;
    c->in_len = 0;
}

bool virtio_console_prepare(struct virtio_device *dev)
{
    struct virtio_console *c = to_console(dev);
    /* A held chain means the output was full: the writer wakes the loop once it made room. */
    if (c->tx_held && queue_usable(c, CONSOLE_TXQ))
        transmit(c);
    return c->input && console_input_prepare(c->input);
}

/* ---- The device ops. ---- */

static void console_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_console *c = to_console(dev);
    if (index == CONSOLE_TXQ && queue_usable(c, CONSOLE_TXQ))
        transmit(c);
    else if (index == CONSOLE_RXQ)
        deliver(c); /* checks usability itself */
}

/* Every field is meaningful only with a feature this device does not offer: all zeros. */
static void console_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data,
                                unsigned size)
{
    (void)dev;
    (void)offset;
    memset(data, 0, size);
}

/* The device must not use buffers before DRIVER_OK (2.1.2): output kicked earlier was left
 * queued, so send it now; input starts only now, so nothing waits for receive buffers. */
static void console_activate(struct virtio_device *dev)
{
    struct virtio_console *c = to_console(dev);
    c->active = true;
    attach_input(c);
    if (queue_usable(c, CONSOLE_TXQ))
        transmit(c);
}

/* Input read but not delivered, and a chain held for output, belong to the old driver
 * instance: drop them. What the output already took is the host's and still goes out. */
static void console_reset(struct virtio_device *dev)
{
    struct virtio_console *c = to_console(dev);
    detach_input(c);
    c->tx_held = false;
    c->active = false;
    c->broken = false;
}

static void console_destroy(struct virtio_device *dev)
{
    struct virtio_console *c = to_console(dev);
    console_input_free(c->input);
    console_output_free(c->output);
    free(c);
}

static const struct virtio_device_ops console_ops = {
    .queue_notify = console_queue_notify,
    .config_read = console_config_read,
    .activate = console_activate,
    .reset = console_reset,
    .destroy = console_destroy,
};

struct virtio_device *virtio_console_new(struct io_loop *loop, int in_fd, int out_fd)
{
    struct virtio_console *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (out_fd >= 0 && !(c->output = console_output_new(out_fd, loop))) {
        free(c);
        return NULL;
    }
    c->dev = (struct virtio_device){
        .ops = &console_ops,
        .device_id = VIRTIO_ID_CONSOLE,
        .config_size = CONSOLE_CONFIG_SIZE,
        .num_queues = 2,
        .queue_max_size = CONSOLE_QUEUE_SIZE,
    };
    c->in_fd = in_fd;
    return &c->dev;
}
