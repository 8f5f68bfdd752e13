/*
 * virtio-console: transmit chains reach the output descriptor in order, and a reader that stops
 * reading holds the guest's chains back without blocking the loop; input from a pipe
 * lands in the guest's receive buffers in order, never more than the device's bound waits in
 * the device (the rest stays in the pipe), a reset drops what waited, and malformed rings ask
 * for a reset without a crash.
 *
 * The test plays the driver (rings in a small fake guest RAM), the transport (queue set-up, a
 * fake that counts interrupts and reset requests) and the VMM (a real I/O loop whose prepare
 * hook calls virtio_console_prepare). io_loop_stop() is final for a loop, so each test runs
 * the loop once, for a number of rounds, with an optional per-round script.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "console_output.h"
#include "fake_driver.h"
#include "guest_mem.h"
#include "io_loop.h"
#include "virtio/console.h"

#define MEM_SIZE (1 * X86_MiB)
#define QSIZE 16
#define RXQ 0
#define TXQ 1
#define RING_GPA(q) (0x1000ULL + 0x3000ULL * (q)) /* desc; avail +0x1000; used +0x2000 */
#define DATA_GPA 0x10000ULL
#define OUTSIDE_RAM 0x40000000ULL
#define BOUND VIRTIO_CONSOLE_IN_BUFFER

/* The driver's view of one queue. */
struct driver_queue {
    uint16_t avail_idx; /* next avail slot */
    uint16_t next_desc; /* descriptors are handed out round-robin */
};

struct bench;
typedef void (*round_fn)(struct bench *b, int round);

struct bench {
    struct guest_mem mem;
    struct io_loop *loop;
    struct virtio_device *dev;
    struct virtq queues[2];
    bool enabled[2];
    struct fake_transport t;
    struct driver_queue dq[2];
    uint64_t next_data;   /* bump allocator for buffers */
    int in[2], out[2];    /* pipes: the test writes in[1], reads out[0] */
    int round, rounds;    /* loop rounds run / to run */
    round_fn script;      /* runs at the start of each round, may be NULL */
    bool sleep;           /* let the loop sleep when the console is idle */
    void *ctx;            /* the script's own state */
};

struct buf {
    uint64_t gpa;
    uint32_t len;
    bool write;
};

/* ---- The transport. ---- */

static void enable_queues(struct bench *b)
{
    for (unsigned q = 0; q < 2; q++) {
        uint64_t base = RING_GPA(q);
        assert_int_equal(virtq_init(&b->queues[q], &b->mem, QSIZE, base, base + 0x1000,
                                    base + 0x2000, false, false), 0);
        b->enabled[q] = true;
    }
}

/* The driver reset the device: the transport resets it and forgets the queues. */
static void reset_device(struct bench *b)
{
    b->dev->ops->reset(b->dev);
    b->enabled[RXQ] = b->enabled[TXQ] = false;
}

/* The driver starts over with fresh rings. */
static void reinit_queues(struct bench *b)
{
    memset(guest_mem_ptr(&b->mem, RING_GPA(0), 0x6000), 0, 0x6000);
    memset(b->dq, 0, sizeof(b->dq));
    enable_queues(b);
}

static void make_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

/* The write end as a VMM's stdout usually is: blocking. */
static void make_blocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    assert_true(flags >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, flags & ~O_NONBLOCK), 0);
}

static void attach(struct bench *b, int in_fd, int out_fd)
{
    b->dev = virtio_console_new(b->loop, in_fd, out_fd);
    assert_non_null(b->dev);
    enable_queues(b);
    b->dev->queues = b->queues;
    b->dev->queue_enabled = b->enabled;
    b->dev->loop = b->loop;
    b->dev->transport_ops = &fake_transport_ops;
    b->dev->transport = &b->t;
    b->dev->driver_features = 1ULL << VIRTIO_F_VERSION_1;
}

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    b->next_data = DATA_GPA;
    b->loop = io_loop_new();
    assert_non_null(b->loop);
    make_pipe(b->in);
    make_pipe(b->out);
    make_blocking(b->out[1]);
    attach(b, b->in[0], b->out[1]);
    *state = b;
    return 0;
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int teardown(void **state)
{
    struct bench *b = *state;
    if (b->dev)
        b->dev->ops->destroy(b->dev);
    io_loop_free(b->loop);
    for (int i = 0; i < 2; i++) {
        close_fd(b->in[i]);
        close_fd(b->out[i]);
    }
    guest_mem_destroy(&b->mem);
    free(b);
    return 0;
}

/* ---- The VMM's I/O loop. ---- */

static bool prepare_hook(void *opaque)
{
    struct bench *b = opaque;
    if (b->script)
        b->script(b, b->round);
    bool busy = virtio_console_prepare(b->dev);
    if (++b->round >= b->rounds)
        io_loop_stop(b->loop);
    /* A stepping test must not sleep: the loop would wait for input that never comes. */
    return b->sleep ? busy : true;
}

static void run_loop(struct bench *b, int rounds, round_fn script)
{
    b->rounds = rounds;
    b->script = script;
    io_loop_set_prepare(b->loop, prepare_hook, b);
    io_loop_run(b->loop);
}

/* ---- The driver. ---- */

static uint8_t *gpa_ptr(struct bench *b, uint64_t gpa, uint64_t len) { return fake_ptr(&b->mem, gpa, len); }
static void put16(struct bench *b, uint64_t gpa, uint16_t v) { fake_put16(&b->mem, gpa, v); }
static uint16_t get16(struct bench *b, uint64_t gpa) { return fake_get16(&b->mem, gpa); }
static uint32_t get32(struct bench *b, uint64_t gpa) { return fake_get32(&b->mem, gpa); }

static void set_desc(struct bench *b, unsigned q, uint16_t i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    fake_set_desc(&b->mem, RING_GPA(q), i, addr, len, flags, next);
}

/* A zeroed buffer in guest RAM, optionally holding `data`. */
static uint64_t alloc_buf(struct bench *b, uint32_t len, const void *data)
{
    uint64_t gpa = b->next_data;
    uint8_t *p = gpa_ptr(b, gpa, len);
    memset(p, 0, len);
    if (data)
        memcpy(p, data, len);
    b->next_data = (gpa + len + 15) & ~15ULL;
    return gpa;
}

static void add_head(struct bench *b, unsigned q, uint16_t head)
{
    struct driver_queue *d = &b->dq[q];
    uint64_t avail = RING_GPA(q) + 0x1000;
    put16(b, avail + 4 + 2 * (d->avail_idx % QSIZE), head);
    d->avail_idx++;
    put16(b, avail + 2, d->avail_idx);
}

/* Chains bufs into consecutive descriptors and makes the chain available; returns its head. */
static uint16_t post(struct bench *b, unsigned q, const struct buf *bufs, unsigned n)
{
    struct driver_queue *d = &b->dq[q];
    uint16_t head = d->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSIZE);
        uint16_t flags = (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                         (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
        set_desc(b, q, idx, bufs[i].gpa, bufs[i].len, flags, (uint16_t)((idx + 1) % QSIZE));
    }
    d->next_desc = (uint16_t)((head + n) % QSIZE);
    add_head(b, q, head);
    return head;
}

/* One receive buffer of len bytes; returns its guest address. */
static uint64_t post_rx(struct bench *b, uint32_t len)
{
    struct buf buf = {alloc_buf(b, len, NULL), len, true};
    post(b, RXQ, &buf, 1);
    return buf.gpa;
}

static uint16_t post_tx(struct bench *b, const char *text)
{
    uint32_t len = (uint32_t)strlen(text);
    struct buf buf = {alloc_buf(b, len, text), len, false};
    return post(b, TXQ, &buf, 1);
}

static uint16_t used_idx(struct bench *b, unsigned q) { return get16(b, RING_GPA(q) + 0x2002); }

static uint32_t used_id(struct bench *b, unsigned q, uint16_t slot)
{
    return get32(b, RING_GPA(q) + 0x2004 + 8 * (slot % QSIZE));
}

static uint32_t used_len(struct bench *b, unsigned q, uint16_t slot)
{
    return get32(b, RING_GPA(q) + 0x2008 + 8 * (slot % QSIZE));
}

static void kick(struct bench *b, unsigned q) { b->dev->ops->queue_notify(b->dev, q); }
static void activate(struct bench *b) { b->dev->ops->activate(b->dev); }

/* ---- Host side. ---- */

static void host_write(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

static size_t pipe_pending(int fd)
{
    int n = 0;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return (size_t)n;
}

/* Reads what is in a non-blocking pipe now. */
static size_t drain_pipe(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

/* Output goes out on the writer thread: reads until `want` bytes came, or 10 s passed. */
static size_t read_output(struct bench *b, uint8_t *buf, size_t want)
{
    size_t got = 0;
    struct pollfd readable = {.fd = b->out[0], .events = POLLIN};
    while (got < want && poll(&readable, 1, 10000) > 0) {
        ssize_t n = read(b->out[0], buf + got, want - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* Destroys the device, which writes out what its output holds. */
static void destroy_device(struct bench *b)
{
    b->dev->ops->destroy(b->dev);
    b->dev = NULL;
}

static void fill_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
}

/* ---- Tests: identity and output. ---- */

static void test_identity(void **state)
{
    struct bench *b = *state;
    assert_int_equal(b->dev->device_id, VIRTIO_ID_CONSOLE);
    assert_int_equal(b->dev->num_queues, 2);
    assert_int_equal(b->dev->device_features, 0);
    assert_int_equal(b->dev->config_size, 12);
    uint8_t cfg[12];
    memset(cfg, 0xff, sizeof(cfg));
    b->dev->ops->config_read(b->dev, 0, cfg, sizeof(cfg));
    for (size_t i = 0; i < sizeof(cfg); i++)
        assert_int_equal(cfg[i], 0);
    assert_null(b->dev->ops->config_write);
}

/* Several chains, one of them split over two descriptors, come out in order. */
static void test_output_in_order(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint16_t h0 = post_tx(b, "hello, ");
    struct buf split[2] = {{alloc_buf(b, 3, "vir"), 3, false}, {alloc_buf(b, 3, "tio"), 3, false}};
    uint16_t h1 = post(b, TXQ, split, 2);
    uint16_t h2 = post_tx(b, " console\n");
    kick(b, TXQ);
    assert_int_equal(used_idx(b, TXQ), 3); /* taken by the output at once */
    destroy_device(b);
    uint8_t got[64];
    size_t n = drain_pipe(b->out[0], got, sizeof(got));
    assert_int_equal(n, strlen("hello, virtio console\n"));
    assert_memory_equal(got, "hello, virtio console\n", n);
    assert_int_equal(used_id(b, TXQ, 0), h0);
    assert_int_equal(used_id(b, TXQ, 1), h1);
    assert_int_equal(used_id(b, TXQ, 2), h2);
    for (uint16_t i = 0; i < 3; i++)
        assert_int_equal(used_len(b, TXQ, i), 0);
    assert_int_equal(b->t.signals[TXQ], 1);
    assert_int_equal(b->t.needs_reset, 0);
}

/* A driver that refills transmitq0 as fast as the device drains it cannot hold the I/O
 * thread: a kick returns after the drain budget and asks the transport to come back, and
 * what was taken reaches the output. */
static void test_refilling_driver_requeued(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint16_t head = post_tx(b, "x");
    struct fake_ring r = {.mem = &b->mem, .size = QSIZE, .desc = RING_GPA(TXQ),
                          .avail = RING_GPA(TXQ) + 0x1000, .used = RING_GPA(TXQ) + 0x2000,
                          .avail_idx = b->dq[TXQ].avail_idx, .next_desc = b->dq[TXQ].next_desc};
    struct fake_refiller f;
    fake_refiller_start(&f, &r, head);
    fake_kick_until_requeued(b->dev, &b->t, TXQ);
    fake_refiller_stop(&f);
    assert_int_equal(b->t.requeues[TXQ], 1);
    assert_int_equal(b->t.needs_reset, 0);
    uint16_t used = used_idx(b, TXQ);
    assert_true(used >= VIRTQ_DRAIN_BUDGET);
    destroy_device(b);
    uint8_t got[1 << 16];
    size_t n = drain_pipe(b->out[0], got, sizeof(got));
    assert_int_equal(n, used); /* one byte per chain used */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], 'x');
}

/* Writable buffers on a transmit chain are ignored, not written and not sent. */
static void test_output_ignores_writable(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf bufs[2] = {{alloc_buf(b, 2, "ok"), 2, false}, {alloc_buf(b, 8, NULL), 8, true}};
    post(b, TXQ, bufs, 2);
    kick(b, TXQ);
    assert_int_equal(used_len(b, TXQ, 0), 0);
    destroy_device(b);
    uint8_t got[16];
    assert_int_equal(drain_pipe(b->out[0], got, sizeof(got)), 2);
    assert_memory_equal(got, "ok", 2);
}

/* A broken output descriptor drops the bytes; the chains still go back to the guest. */
static void test_output_error_drops(void **state)
{
    struct bench *b = *state;
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    close(b->out[0]);
    b->out[0] = -1;
    activate(b);
    post_tx(b, "lost");
    post_tx(b, "also lost");
    kick(b, TXQ);
    assert_int_equal(used_idx(b, TXQ), 2);
    assert_int_equal(b->t.signals[TXQ], 1);
    assert_int_equal(b->t.needs_reset, 0);
    signal(SIGPIPE, old);
}

/* Nothing is used before DRIVER_OK; activation sends what was queued. */
static void test_output_waits_for_activate(void **state)
{
    struct bench *b = *state;
    post_tx(b, "early");
    kick(b, TXQ);
    assert_int_equal(used_idx(b, TXQ), 0);
    assert_int_equal(pipe_pending(b->out[0]), 0);
    activate(b);
    uint8_t got[16];
    assert_int_equal(read_output(b, got, 5), 5);
    assert_memory_equal(got, "early", 5);
    assert_int_equal(used_idx(b, TXQ), 1);
}

/* ---- Tests: a reader that stops reading. ---- */

#define STALL_CHAINS 12
#define STALL_CHAIN_LEN 4000
#define STALL_BYTES (STALL_CHAINS * STALL_CHAIN_LEN)

struct stall_ctx {
    pthread_t reader;
    bool reading;
    size_t received;
    uint8_t want[STALL_BYTES];
    uint8_t got[STALL_BYTES];
};

/* The reader's pipe holds one page, so the output (its buffer plus the pipe) fills long
 * before the chains posted here are all out. */
static void post_stall_chains(struct bench *b, struct stall_ctx *ctx, unsigned chains)
{
    assert_true(fcntl(b->out[1], F_SETPIPE_SZ, 4096) >= 4096);
    fill_pattern(ctx->want, sizeof(ctx->want));
    for (unsigned i = 0; i < chains; i++) {
        struct buf buf = {alloc_buf(b, STALL_CHAIN_LEN, ctx->want + i * STALL_CHAIN_LEN),
                          STALL_CHAIN_LEN, false};
        post(b, TXQ, &buf, 1);
    }
}

/* The reader, on a thread of its own so that nothing but the writer's wake-up can get the
 * sleeping loop to resume the device: once it has everything, the test is done. */
static void *reader_thread(void *arg)
{
    struct bench *b = arg;
    struct stall_ctx *ctx = b->ctx;
    ctx->received = read_output(b, ctx->got, sizeof(ctx->got));
    io_loop_stop(b->loop);
    return NULL;
}

/* Round 0 sends input; once the guest has it (output still stalled), the reader starts. */
static void stalled_script(struct bench *b, int round)
{
    static uint64_t rx;
    static uint16_t tx_used;
    struct stall_ctx *ctx = b->ctx;
    if (round == 0) {
        tx_used = used_idx(b, TXQ);
        host_write(b->in[1], "ping", 4);
        rx = post_rx(b, 16);
    } else if (rx && used_idx(b, RXQ) == 1) {
        assert_memory_equal(gpa_ptr(b, rx, 4), "ping", 4);
        assert_int_equal(used_idx(b, TXQ), tx_used); /* nothing was read: nothing more went */
        assert_int_equal(pthread_create(&ctx->reader, NULL, reader_thread, b), 0);
        ctx->reading = true;
        rx = 0;
    }
}

/*
 * The kick returns with most chains held back (the loop is not blocked in write()), input
 * still reaches the guest meanwhile, and once the reader reads again everything arrives in
 * order: the writer's wake-up resumes the device from the loop's prepare step, with no kick.
 */
static void check_stalled_reader(struct bench *b)
{
    static struct stall_ctx ctx; /* two 48 KB buffers: off the stack */
    memset(&ctx, 0, sizeof(ctx));
    b->ctx = &ctx;
    activate(b);
    post_stall_chains(b, &ctx, STALL_CHAINS);
    alarm(10); /* a blocked loop or a lost wake-up would hang: fail instead */
    kick(b, TXQ);
    uint16_t used = used_idx(b, TXQ);
    assert_true(used >= 1 && used < STALL_CHAINS);

    b->sleep = true;
    run_loop(b, 1000000, stalled_script);
    alarm(0);
    assert_true(ctx.reading);
    pthread_join(ctx.reader, NULL);
    assert_int_equal(used_idx(b, RXQ), 1);
    assert_int_equal(ctx.received, sizeof(ctx.want));
    assert_memory_equal(ctx.got, ctx.want, sizeof(ctx.want));
    assert_int_equal(used_idx(b, TXQ), STALL_CHAINS);
    assert_true(b->t.signals[TXQ] >= 2);
    assert_int_equal(b->t.needs_reset, 0);
}

static void test_output_stalled_reader(void **state)
{
    check_stalled_reader(*state);
}

/* The same with a non-blocking out_fd (set so by whoever owns it): EAGAIN is a wait for
 * room, not a write error that drops the output. */
static void test_output_stalled_reader_nonblocking(void **state)
{
    struct bench *b = *state;
    assert_int_equal(fcntl(b->out[1], F_SETFL, fcntl(b->out[1], F_GETFL) | O_NONBLOCK), 0);
    check_stalled_reader(b);
}

/* Destroying the device while its reader takes nothing returns (after the linger) instead of
 * waiting for ever; what went out is the start of the output, in order. */
static void test_destroy_with_stalled_reader(void **state)
{
    struct bench *b = *state;
    static struct stall_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    activate(b);
    post_stall_chains(b, &ctx, 8);
    kick(b, TXQ);
    alarm(10);
    destroy_device(b);
    alarm(0);
    size_t n = drain_pipe(b->out[0], ctx.got, sizeof(ctx.got));
    assert_true(n > 0 && n <= 4096);
    assert_memory_equal(ctx.got, ctx.want, n);
}

/* A reset while a chain is held drops the chain (it belongs to the old driver); the new
 * driver's output follows what the output had already taken. */
static void test_reset_while_held(void **state)
{
    struct bench *b = *state;
    static struct stall_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    activate(b);
    post_stall_chains(b, &ctx, STALL_CHAINS);
    kick(b, TXQ);
    assert_true(used_idx(b, TXQ) < STALL_CHAINS);
    reset_device(b);
    reinit_queues(b);
    activate(b);
    post_tx(b, "after-reset");
    kick(b, TXQ);
    /* Read everything, resuming the device from the prepare step as the loop would. */
    static uint8_t out[STALL_BYTES];
    size_t got = 0;
    alarm(10);
    while (used_idx(b, TXQ) != 1) {
        got += read_output(b, out + got, 1);
        got += drain_pipe(b->out[0], out + got, sizeof(out) - got);
        virtio_console_prepare(b->dev);
    }
    destroy_device(b);
    alarm(0);
    got += drain_pipe(b->out[0], out + got, sizeof(out) - got);
    size_t tail = strlen("after-reset");
    assert_true(got > tail && got < STALL_BYTES); /* the held rest of the old chains never went */
    assert_memory_equal(out, ctx.want, got - tail);
    assert_memory_equal(out + got - tail, "after-reset", tail);
    assert_int_equal(b->t.needs_reset, 0);
}

/* ---- Tests: input. ---- */

static void write_tail_at_round_3(struct bench *b, int round)
{
    if (round == 3)
        host_write(b->in[1], "tail", 4);
}

/* Input fills the posted buffers in order, split across them, and keeps going as it comes. */
static void test_input_split_across_buffers(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint64_t rx[4];
    for (int i = 0; i < 4; i++)
        rx[i] = post_rx(b, 8);
    host_write(b->in[1], "0123456789abcdefXYZ", 19);
    run_loop(b, 6, write_tail_at_round_3);
    assert_int_equal(used_idx(b, RXQ), 4);
    const uint32_t lens[4] = {8, 8, 3, 4};
    const char *want[4] = {"01234567", "89abcdef", "XYZ", "tail"};
    for (uint16_t i = 0; i < 4; i++) {
        assert_int_equal(used_id(b, RXQ, i), i);
        assert_int_equal(used_len(b, RXQ, i), lens[i]);
        assert_memory_equal(gpa_ptr(b, rx[i], lens[i]), want[i], lens[i]);
    }
    assert_int_equal(b->t.signals[RXQ], 2);
    assert_int_equal(b->t.needs_reset, 0);
}

/* Input read while the guest has no buffers waits in the device and goes out on the kick
 * that posts some. */
static void post_two_at_round_3(struct bench *b, int round)
{
    if (round != 3)
        return;
    assert_int_equal(used_idx(b, RXQ), 0);
    assert_int_equal(pipe_pending(b->in[0]), 0); /* taken into the device */
    post_rx(b, 64);
    post_rx(b, 64);
    kick(b, RXQ);
}

static void test_input_waits_for_buffers(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint8_t data[100];
    fill_pattern(data, sizeof(data));
    host_write(b->in[1], data, sizeof(data));
    uint64_t first = b->next_data;
    run_loop(b, 5, post_two_at_round_3);
    assert_int_equal(used_idx(b, RXQ), 2);
    assert_int_equal(used_len(b, RXQ, 0), 64);
    assert_int_equal(used_len(b, RXQ, 1), 36);
    assert_memory_equal(gpa_ptr(b, first, 64), data, 64);
    assert_memory_equal(gpa_ptr(b, first + 64, 36), data + 64, 36);
}

/* With no buffers posted, the device takes the bound and no more: the rest stays in the pipe,
 * and what the device took is delivered, in order, once buffers come. */
static void test_input_bounded(void **state)
{
    struct bench *b = *state;
    activate(b);
    uint8_t data[3 * BOUND];
    fill_pattern(data, sizeof(data));
    host_write(b->in[1], data, sizeof(data));
    run_loop(b, 12, NULL);
    assert_int_equal(used_idx(b, RXQ), 0);
    uint8_t rest[3 * BOUND];
    assert_int_equal(drain_pipe(b->in[0], rest, sizeof(rest)), sizeof(data) - BOUND);
    assert_memory_equal(rest, data + BOUND, sizeof(data) - BOUND);

    uint64_t rx = post_rx(b, 2 * BOUND);
    kick(b, RXQ);
    assert_int_equal(used_len(b, RXQ, 0), BOUND);
    assert_memory_equal(gpa_ptr(b, rx, BOUND), data, BOUND);
}

/*
 * The whole path with a sleeping loop, as in the VMM: the guest kicks through an eventfd (the
 * transport's ioeventfd) each time it has consumed its small buffer. Input far beyond the
 * bound gets through in order, so the device resumes console input whenever it frees room.
 */
struct resume_ctx {
    int kick_fd;
    size_t received;
    uint8_t got[3 * BOUND];
};

static void kick_handler(void *opaque, uint32_t events)
{
    (void)events;
    struct bench *b = opaque;
    struct resume_ctx *ctx = b->ctx;
    uint64_t count;
    assert_int_equal(read(ctx->kick_fd, &count, sizeof(count)), sizeof(count));
    kick(b, RXQ);
}

/* The guest: once its buffer is used, it takes the bytes and posts it again. */
static void guest_round(struct bench *b, int round)
{
    (void)round;
    struct resume_ctx *ctx = b->ctx;
    uint16_t used = used_idx(b, RXQ);
    if (used != b->dq[RXQ].avail_idx)
        return;
    if (used) {
        uint32_t len = used_len(b, RXQ, (uint16_t)(used - 1));
        assert_true(ctx->received + len <= sizeof(ctx->got));
        memcpy(ctx->got + ctx->received, gpa_ptr(b, DATA_GPA, len), len);
        ctx->received += len;
    }
    if (ctx->received == sizeof(ctx->got)) {
        io_loop_stop(b->loop);
        return;
    }
    b->next_data = DATA_GPA;
    post_rx(b, 100);
    uint64_t one = 1;
    assert_int_equal(write(ctx->kick_fd, &one, sizeof(one)), sizeof(one));
}

static void test_input_resumes_after_full(void **state)
{
    struct bench *b = *state;
    struct resume_ctx ctx = {.received = 0};
    ctx.kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(ctx.kick_fd >= 0);
    assert_int_equal(io_loop_add(b->loop, ctx.kick_fd, EPOLLIN, kick_handler, b), 0);
    b->ctx = &ctx;
    b->sleep = true;
    activate(b);
    uint8_t data[3 * BOUND];
    fill_pattern(data, sizeof(data));
    host_write(b->in[1], data, sizeof(data));
    alarm(10); /* a lost wake-up would sleep forever: fail instead */
    run_loop(b, 100000, guest_round);
    alarm(0);
    assert_int_equal(ctx.received, sizeof(data));
    assert_memory_equal(ctx.got, data, sizeof(data));
    assert_int_equal(b->t.needs_reset, 0);
    io_loop_remove(b->loop, ctx.kick_fd);
    close(ctx.kick_fd);
}

/* ---- Tests: reset and hostile rings. ---- */

/*
 * Round 1: "stale" has been read into the device (no buffers). Reset: it is dropped and input
 * detached, so "fresh" stays in the pipe until the driver activates again; then only "fresh"
 * reaches the new buffer.
 */
static void reset_script(struct bench *b, int round)
{
    if (round == 2) {
        assert_int_equal(pipe_pending(b->in[0]), 0);
        reset_device(b);
        host_write(b->in[1], "fresh", 5);
    } else if (round == 4) {
        assert_int_equal(pipe_pending(b->in[0]), 5);
        reinit_queues(b);
        post_rx(b, 64);
        activate(b);
    }
}

static void test_reset_drops_input(void **state)
{
    struct bench *b = *state;
    activate(b);
    host_write(b->in[1], "stale", 5);
    uint64_t rx = b->next_data;
    run_loop(b, 7, reset_script);
    assert_int_equal(used_idx(b, RXQ), 1);
    assert_int_equal(used_len(b, RXQ, 0), 5);
    assert_memory_equal(gpa_ptr(b, rx, 5), "fresh", 5);
}

/* A receive buffer outside RAM found while delivering input: reset requested, no crash. */
static void test_malformed_rx_needs_reset(void **state)
{
    struct bench *b = *state;
    activate(b);
    struct buf bad = {OUTSIDE_RAM, 64, true};
    post(b, RXQ, &bad, 1);
    host_write(b->in[1], "x", 1);
    run_loop(b, 4, NULL);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(b->t.reset_queue, RXQ);
    assert_int_equal(b->t.reset_err, -EFAULT);
    assert_int_equal(used_idx(b, RXQ), 0);
    kick(b, RXQ); /* broken: the rings are left alone until reset */
    kick(b, TXQ);
    assert_int_equal(b->t.needs_reset, 1);
}

/* A transmit chain that loops: reset requested, earlier good chains still sent. */
static void test_malformed_tx_needs_reset(void **state)
{
    struct bench *b = *state;
    activate(b);
    post_tx(b, "good");
    set_desc(b, TXQ, 9, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 9);
    add_head(b, TXQ, 9);
    kick(b, TXQ);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(b->t.reset_queue, TXQ);
    assert_int_equal(b->t.reset_err, -ELOOP);
    assert_int_equal(used_idx(b, TXQ), 1);
    assert_int_equal(b->t.signals[TXQ], 1);
    destroy_device(b);
    uint8_t got[16];
    assert_int_equal(drain_pipe(b->out[0], got, sizeof(got)), 4);
    assert_memory_equal(got, "good", 4);
}

/* A head index beyond the queue, kicked on the receive queue with input waiting. */
static void test_malformed_head_on_rx_kick(void **state)
{
    struct bench *b = *state;
    activate(b);
    host_write(b->in[1], "abc", 3);
    run_loop(b, 3, NULL);
    add_head(b, RXQ, QSIZE + 3);
    kick(b, RXQ);
    assert_int_equal(b->t.needs_reset, 1);
    assert_int_equal(used_idx(b, RXQ), 0);
}

/* Without descriptors, the device is output-discarding and input-less, and that is fine. */
static void test_no_descriptors(void **state)
{
    struct bench *b = *state;
    b->dev->ops->destroy(b->dev);
    attach(b, -1, -1);
    activate(b);
    post_tx(b, "nowhere");
    kick(b, TXQ);
    assert_int_equal(used_idx(b, TXQ), 1);
    assert_false(virtio_console_prepare(b->dev));
    post_rx(b, 16);
    kick(b, RXQ);
    assert_int_equal(used_idx(b, RXQ), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refilling_driver_requeued, setup, teardown),
        T(test_identity),
        T(test_output_in_order),
        T(test_output_ignores_writable),
        T(test_output_error_drops),
        T(test_output_waits_for_activate),
        T(test_output_stalled_reader),
        T(test_output_stalled_reader_nonblocking),
        T(test_destroy_with_stalled_reader),
        T(test_reset_while_held),
        T(test_input_split_across_buffers),
        T(test_input_waits_for_buffers),
        T(test_input_bounded),
        T(test_input_resumes_after_full),
        T(test_reset_drops_input),
        T(test_malformed_rx_needs_reset),
        T(test_malformed_tx_needs_reset),
        T(test_malformed_head_on_rx_kick),
        T(test_no_descriptors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
