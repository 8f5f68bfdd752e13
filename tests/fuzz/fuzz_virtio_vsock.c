/*
 * libFuzzer target for the virtio-vsock device: the input is a script of driver and host
 * actions (tx chains with arbitrary headers and payloads split over descriptors, rx buffers
 * of arbitrary sizes and layouts, host sockets writing, closing and connecting, device resets,
 * malformed descriptors) run against one device over fake guest RAM.
 *
 * The I/O loop is a fake here (io_loop.h implemented below with poll(2)), so that the script
 * decides when host sockets are served and every run is single-threaded and repeatable.
 *
 * Checked besides ASan/UBSan: the device writes guest RAM only inside rx buffers the driver
 * posted (all other data bytes are compared with a shadow copy), every used rx entry fits its
 * buffer and carries a well-formed header from the host to this guest, and no more rx entries
 * come back than were posted.
 *
 * Script (each command one byte, then its arguments; missing bytes end the script):
 *   0 tx:    u8 mode, 44 header bytes, u16 payload length, u8 split
 *            mode bits: 0 src_cid = guest, 1 dst_cid = host, 2 type = stream, 3 small ports,
 *            4 len = payload length; split: payload descriptors - 1 (0..3)
 *   1 rx:    u8 count (& 15), u16 size, u8 layout (bit 0: header in its own descriptor)
 *   2 host:  u8 which (& 7), u8 action (0 write, 1 close, 2 shut write, 3 drain), u8 len
 *   3 run:   u8 rounds (& 7) of polling the fake loop
 *   4 client: u8 action (0 "CONNECT <port>", 1 garbage, 2 write data), u8 port
 *   5 bad:   u8 queue (& 1): a descriptor outside guest RAM
 *   6 reset: the driver resets and re-activates the device
 *   7 connect: a host connect with timeout 0 (it can only time out or be refused)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io_loop.h"
#include "virtio/vsock.h"

#define MEM_SIZE 0x100000ULL
#define QSIZE 64
#define RING_GPA(q) (0x1000ULL * (q))
#define DATA_GPA 0x4000ULL
#define RX_GPA 0x4000ULL
#define TX_GPA 0x80000ULL
#define CID 3
#define HDR 44
#define HOST_FDS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- A fake I/O loop: poll(2) over what the device registered, on demand. ---- */

struct fake_handler {
    int fd;
    uint32_t events;
    io_handler_fn fn;
    void *opaque;
    bool removed;
};

struct io_loop {
    struct fake_handler h[1024];
    unsigned count;
};

struct io_loop *io_loop_new(void) { return calloc(1, sizeof(struct io_loop)); }
void io_loop_free(struct io_loop *loop) { free(loop); }

static struct fake_handler *find(struct io_loop *loop, int fd)
{
    for (unsigned i = 0; i < loop->count; i++)
        if (loop->h[i].fd == fd && !loop->h[i].removed)
            return &loop->h[i];
    return NULL;
}

int io_loop_add(struct io_loop *loop, int fd, uint32_t events, io_handler_fn fn, void *opaque)
{
    if (find(loop, fd))
        __builtin_trap(); /* the device must not register a descriptor twice */
    if (loop->count == 1024)
        return -ENOMEM;
    loop->h[loop->count++] = (struct fake_handler){fd, events, fn, opaque, false};
    return 0;
}

int io_loop_set_events(struct io_loop *loop, int fd, uint32_t events)
{
    struct fake_handler *h = find(loop, fd);
    if (!h)
        return -ENOENT;
    h->events = events;
    return 0;
}

int io_loop_remove(struct io_loop *loop, int fd)
{
    struct fake_handler *h = find(loop, fd);
    if (!h)
        return -ENOENT;
    h->removed = true;
    return 0;
}

void io_loop_set_prepare(struct io_loop *loop, io_prepare_fn fn, void *opaque)
{
    (void)loop;
    (void)fn;
    (void)opaque;
}

void io_loop_run(struct io_loop *loop) { (void)loop; }
void io_loop_wake(struct io_loop *loop) { (void)loop; }
void io_loop_stop(struct io_loop *loop) { (void)loop; }

/* One round: every handler whose descriptor is ready now runs once. */
static void loop_round(struct io_loop *loop)
{
    unsigned n = loop->count;
    struct pollfd pfd[1024];
    for (unsigned i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = loop->h[i].removed ? -1 : loop->h[i].fd,
                                 .events = (short)loop->h[i].events};
    if (poll(pfd, n, 0) > 0) {
        for (unsigned i = 0; i < n; i++)
            if (pfd[i].revents && !loop->h[i].removed)
                loop->h[i].fn(loop->h[i].opaque, (uint32_t)pfd[i].revents);
    }
    unsigned kept = 0;
    for (unsigned i = 0; i < loop->count; i++)
        if (!loop->h[i].removed)
            loop->h[kept++] = loop->h[i];
    loop->count = kept;
}

/* ---- The driver and the checks. ---- */

/* Descriptors go round-robin and both queues complete in order, so the free ones are the
 * QSIZE - in_flight after next_desc: the driver never overwrites a chain the device owns. */
struct ring {
    uint16_t avail_idx, next_desc, used_seen;
    unsigned in_flight;
    uint8_t ndesc[QSIZE]; /* descriptors of the chain with this head */
};

struct run {
    struct guest_mem mem;
    uint8_t *shadow;   /* expected contents of the data area */
    uint8_t *mutable_; /* 1 where the device may write (posted rx buffers) */
    struct io_loop *loop;
    struct virtio_device *dev;
    struct virtq queues[3];
    bool enabled[3];
    struct ring ring[3];
    uint32_t rx_size[QSIZE]; /* writable bytes of the rx chain with this head */
    uint64_t rx_addr[QSIZE];
    unsigned rx_posted, rx_used;
    uint64_t rx_next, tx_next;
    bool needs_reset;
    int listener;
    int host[HOST_FDS];
    int clients[HOST_FDS];
    const uint8_t *in;
    size_t left;
};

static char dir[64];

static void remove_dir(void) { rmdir(dir); }

static void t_signal_used(void *t, unsigned index) { (void)t; (void)index; }
static void t_signal_config(void *t) { (void)t; }
static void t_needs_reset(void *t, unsigned queue, int err)
{
    (void)queue, (void)err;
    ((struct run *)t)->needs_reset = true;
}

static void t_requeue(void *t, unsigned index) { (void)t, (void)index; }

static const struct virtio_transport_ops transport_ops = {
    .signal_used = t_signal_used,
    .signal_config = t_signal_config,
    .needs_reset = t_needs_reset,
    .requeue = t_requeue,
};

static uint8_t *gpa(struct run *r, uint64_t addr) { return guest_mem_ptr(&r->mem, addr, 1); }

static void put(struct run *r, uint64_t addr, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        gpa(r, addr + i)[0] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(struct run *r, uint64_t addr, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | gpa(r, addr + i)[0];
    return v;
}

/* Returns the chain's head, or -1 when the ring has no room for it. */
static int post(struct run *r, unsigned q, const uint64_t *addr, const uint32_t *len, unsigned n,
                bool write)
{
    struct ring *g = &r->ring[q];
    uint16_t head = g->next_desc;
    if (g->in_flight + n > QSIZE)
        return -1;
    g->in_flight += n;
    g->ndesc[head] = (uint8_t)n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t d = RING_GPA(q) + 16ULL * ((head + i) % QSIZE);
        put(r, d, addr[i], 8);
        put(r, d + 8, len[i], 4);
        put(r, d + 12, (write ? 2 : 0) | (i + 1 < n ? 1 : 0), 2);
        put(r, d + 14, (head + i + 1) % QSIZE, 2);
    }
    g->next_desc = (uint16_t)((head + n) % QSIZE);
    put(r, RING_GPA(q) + 0x400 + 4 + 2 * (g->avail_idx % QSIZE), head, 2);
    g->avail_idx++;
    put(r, RING_GPA(q) + 0x400 + 2, g->avail_idx, 2);
    return head;
}

static void kick(struct run *r, unsigned q)
{
    if (!r->needs_reset) /* the transport stops kicks until the driver resets */
        r->dev->ops->queue_notify(r->dev, q);
}

static void enable(struct run *r)
{
    memset(gpa(r, 0), 0, DATA_GPA);
    memset(r->ring, 0, sizeof(r->ring));
    for (unsigned q = 0; q < 3; q++) {
        virtq_init(&r->queues[q], &r->mem, QSIZE, RING_GPA(q), RING_GPA(q) + 0x400,
                   RING_GPA(q) + 0x800, false, false);
        r->enabled[q] = true;
    }
    r->needs_reset = false;
    r->dev->ops->activate(r->dev);
}

/* What the device put in an rx buffer: a whole header from the host to this guest. */
static void check_packet(struct run *r, uint32_t head, uint32_t len)
{
    if (len > r->rx_size[head] || ++r->rx_used > r->rx_posted)
        __builtin_trap();
    if (len == 0)
        return; /* a buffer too small for a packet comes back empty */
    uint64_t a = r->rx_addr[head];
    uint16_t op = (uint16_t)get(r, a + 30, 2);
    if (len < HDR || get(r, a, 8) != 2 || get(r, a + 8, 8) != CID || get(r, a + 28, 2) != 1 ||
        op < 1 || op > 7 || get(r, a + 24, 4) != len - HDR || (op != 5 && len != HDR))
        __builtin_trap();
}

/* Takes the used entries of queue q, checking rx ones. */
static void reap(struct run *r, unsigned q)
{
    struct ring *g = &r->ring[q];
    uint16_t used = (uint16_t)get(r, RING_GPA(q) + 0x800 + 2, 2);
    while (g->used_seen != used) {
        uint64_t e = RING_GPA(q) + 0x800 + 4 + 8ULL * (g->used_seen % QSIZE);
        uint32_t head = (uint32_t)get(r, e, 4), len = (uint32_t)get(r, e + 4, 4);
        g->used_seen++;
        /* In order, so the head is the oldest chain in flight. */
        if (head != (uint16_t)((g->next_desc + QSIZE - g->in_flight) % QSIZE))
            __builtin_trap();
        g->in_flight -= g->ndesc[head];
        if (q == 0)
            check_packet(r, head, len);
        else if (len != 0)
            __builtin_trap();
    }
}

/* Whole pages without rx buffers compare at once; the others byte by byte. Not instrumented
 * for coverage: a megabyte of the harness's own compares would only slow the search. */
__attribute__((no_sanitize("coverage"))) static void check_memory(struct run *r)
{
    const uint8_t *mem = gpa(r, DATA_GPA);
    for (uint64_t page = 0; page < MEM_SIZE - DATA_GPA; page += 4096) {
        if (!memchr(r->mutable_ + page, 1, 4096)) {
            if (memcmp(mem + page, r->shadow + page, 4096) != 0)
                __builtin_trap();
            continue;
        }
        for (uint64_t i = page; i < page + 4096; i++)
            if (!r->mutable_[i] && mem[i] != r->shadow[i])
                __builtin_trap();
    }
}

/* ---- The script. ---- */

static bool take(struct run *r, void *dst, size_t n)
{
    if (r->left < n)
        return false;
    memcpy(dst, r->in, n);
    r->in += n;
    r->left -= n;
    return true;
}

static uint64_t alloc(uint64_t *next, uint64_t base, uint64_t end, uint32_t len)
{
    if (*next < base || *next + len > end)
        *next = base;
    uint64_t a = *next;
    *next += len;
    return a;
}

static void cmd_tx(struct run *r)
{
    uint8_t mode, h[HDR], split;
    uint16_t len;
    if (!take(r, &mode, 1) || !take(r, h, HDR) || !take(r, &len, 2) || !take(r, &split, 1))
        return;
    len %= 4096;
    if (len > r->left)
        len = (uint16_t)r->left;
    uint8_t payload[4096];
    take(r, payload, len);
    uint64_t a = alloc(&r->tx_next, TX_GPA, MEM_SIZE, HDR + len);
    if (mode & 1)
        memcpy(h, (uint8_t[8]){CID}, 8);
    if (mode & 2)
        memcpy(h + 8, (uint8_t[8]){2}, 8);
    if (mode & 4)
        memcpy(h + 28, (uint8_t[2]){1}, 2);
    if (mode & 8) {
        h[17] = h[18] = h[19] = h[21] = h[22] = h[23] = 0;
        h[16] &= 3;
        h[20] &= 3; /* ports 0..3 keep hitting the same few connections */
    }
    if (mode & 16)
        memcpy(h + 24, (uint8_t[4]){(uint8_t)len, (uint8_t)(len >> 8)}, 4);
    memcpy(gpa(r, a), h, HDR);
    memcpy(gpa(r, a) + HDR, payload, len);
    memcpy(r->shadow + (a - DATA_GPA), gpa(r, a), HDR + len);
    uint64_t addr[5] = {a};
    uint32_t lens[5] = {HDR};
    unsigned parts = 1 + (split & 3), n = 1;
    for (unsigned i = 0, off = 0; i < parts && len; i++) {
        uint32_t piece = i + 1 == parts ? len - off : len / parts;
        addr[n] = a + HDR + off;
        lens[n++] = piece;
        off += piece;
    }
    post(r, 1, addr, lens, n, false);
    kick(r, 1);
}

static void cmd_rx(struct run *r)
{
    uint8_t count, layout;
    uint16_t sz;
    if (!take(r, &count, 1) || !take(r, &sz, 2) || !take(r, &layout, 1))
        return;
    sz %= 4096; /* 64 in flight fit the rx area without overlapping */
    for (unsigned i = 0; i < (count & 15u); i++) {
        uint64_t a = alloc(&r->rx_next, RX_GPA, TX_GPA, sz);
        memset(r->mutable_ + (a - DATA_GPA), 1, sz);
        bool split = (layout & 1) && sz > HDR;
        uint64_t addr[2] = {a, a + HDR};
        uint32_t lens[2] = {split ? HDR : sz, sz - HDR};
        int head = post(r, 0, addr, lens, split ? 2 : 1, true);
        if (head < 0)
            break;
        r->rx_size[head] = sz;
        r->rx_addr[head] = a;
        r->rx_posted++;
    }
    kick(r, 0);
}

static int connect_to(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Host action on an accepted guest connection (index < 4) or a client (index >= 4). */
static void cmd_host(struct run *r)
{
    uint8_t which, action, len;
    if (!take(r, &which, 1) || !take(r, &action, 1) || !take(r, &len, 1))
        return;
    int *fds = (which & 4) ? r->clients : r->host;
    int *fd = &fds[which & 3];
    if (*fd < 0 && !(which & 4) && r->listener >= 0)
        *fd = accept4(r->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (*fd < 0)
        return;
    uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    switch (action & 3) {
    case 0:
        if (send(*fd, buf, (size_t)len * 16, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* full or gone: both fine */
        }
        break;
    case 1:
        close(*fd);
        *fd = -1;
        break;
    case 2:
        shutdown(*fd, SHUT_WR);
        break;
    default:
        while (recv(*fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
        }
    }
}

static void cmd_client(struct run *r, const char *uds)
{
    uint8_t action, port;
    if (!take(r, &action, 1) || !take(r, &port, 1))
        return;
    int *fd = &r->clients[port & 3];
    if (*fd < 0)
        *fd = connect_to(uds);
    if (*fd < 0)
        return;
    char line[32];
    int n = action % 3 == 0 ? snprintf(line, sizeof(line), "CONNECT %u\n", port)
          : action % 3 == 1 ? snprintf(line, sizeof(line), "CONNECTX%u\n\n", port)
                            : snprintf(line, sizeof(line), "data%u", port);
    if (send(*fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* closed by the device: fine */
    }
}

static void cmd_bad(struct run *r)
{
    uint8_t q;
    if (!take(r, &q, 1))
        return;
    uint64_t addr = 0x40000000ULL;
    uint32_t len = 64;
    q &= 1;
    post(r, q, &addr, &len, 1, q == 0);
    kick(r, q);
}

static void cmd_reset(struct run *r)
{
    r->dev->ops->reset(r->dev);
    memset(r->queues, 0, sizeof(r->queues));
    memset(r->enabled, 0, sizeof(r->enabled));
    r->rx_posted = r->rx_used = 0;
    enable(r);
}

static void script(struct run *r, const char *uds)
{
    uint8_t cmd, arg;
    while (take(r, &cmd, 1)) {
        switch (cmd % 8) {
        case 0: cmd_tx(r); break;
        case 1: cmd_rx(r); break;
        case 2: cmd_host(r); break;
        case 3:
            if (take(r, &arg, 1))
                for (unsigned i = 0; i <= (arg & 7u); i++)
                    loop_round(r->loop);
            break;
        case 4: cmd_client(r, uds); break;
        case 5: cmd_bad(r); break;
        case 6: cmd_reset(r); break;
        default: virtio_vsock_connect(r->dev, 1, 0); break;
        }
        reap(r, 0);
        reap(r, 1);
    }
}

static int listen_at(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 8) < 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void run_script(struct run *r)
{
    char uds[96], port1[104], err[128];
    snprintf(uds, sizeof(uds), "%s/v", dir);
    snprintf(port1, sizeof(port1), "%s_1", uds);
    unlink(port1);
    r->listener = listen_at(port1); /* a guest connect to port 1 succeeds */
    r->dev = virtio_vsock_new(CID, uds, r->loop, err, sizeof(err));
    if (!r->dev)
        __builtin_trap();
    r->dev->queues = r->queues;
    r->dev->queue_enabled = r->enabled;
    r->dev->transport_ops = &transport_ops;
    r->dev->transport = r;
    enable(r);
    script(r, uds);
    for (unsigned i = 0; i < 4; i++)
        loop_round(r->loop); /* whatever is pending still behaves */
    reap(r, 0);
    check_memory(r);
    virtio_vsock_shutdown(r->dev);
    r->dev->ops->destroy(r->dev);
    for (unsigned i = 0; i < r->loop->count; i++)
        if (!r->loop->h[i].removed)
            __builtin_trap(); /* destroy left a descriptor in the loop */
    if (r->listener >= 0)
        close(r->listener);
    unlink(port1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        strcpy(dir, "/tmp/cove-fuzz-vsock-XXXXXX");
        if (!mkdtemp(dir))
            __builtin_trap();
        atexit(remove_dir);
    }
    struct run *r = calloc(1, sizeof(*r));
    if (!r || guest_mem_create(&r->mem, MEM_SIZE, 0xc0000000ULL, 0x100000000ULL) < 0)
        __builtin_trap();
    r->shadow = calloc(1, MEM_SIZE - DATA_GPA);
    r->mutable_ = calloc(1, MEM_SIZE - DATA_GPA);
    r->loop = io_loop_new();
    if (!r->shadow || !r->mutable_ || !r->loop)
        __builtin_trap();
    for (unsigned i = 0; i < HOST_FDS; i++)
        r->host[i] = r->clients[i] = -1;
    r->in = data;
    r->left = size;
    run_script(r);
    for (unsigned i = 0; i < HOST_FDS; i++) {
        if (r->host[i] >= 0)
            close(r->host[i]);
        if (r->clients[i] >= 0)
            close(r->clients[i]);
    }
    io_loop_free(r->loop);
    guest_mem_destroy(&r->mem);
    free(r->shadow);
    free(r->mutable_);
    free(r);
    return 0;
}
