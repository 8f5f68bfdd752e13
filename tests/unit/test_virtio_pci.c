/*
 * The virtio-pci transport's fault reports: when a device finds its driver broke a queue, the
 * transport stops it (NEEDS_RESET) and tells the VMM once, in one line naming the device, the
 * queue and the breach; a driver that keeps doing it gets VIRTIO_PCI_MAX_FAULT_REPORTS lines
 * and one more saying so, then silence. The driver here is the test thread writing BAR 0 as a
 * vCPU would; the transport's I/O work runs on a loop thread, as in a VM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "bus/pci.h"
#include "guest_mem.h"
#include "loop_thread.h"
#include "virtio/pci.h"

#define MEM_SIZE (1u << 20)
#define QUEUE_SIZE 16
#define DESC_GPA 0x10000
#define AVAIL_GPA 0x11000
#define USED_GPA 0x12000

/* Offsets in BAR 0's common configuration (virtio 1.2, 4.1.4.3). */
#define DRIVER_FEATURE_SELECT 0x08
#define DRIVER_FEATURE 0x0c
#define DEVICE_STATUS 0x14
#define QUEUE_SELECT 0x16
#define QUEUE_SIZE_REG 0x18
#define QUEUE_ENABLE 0x1c
#define QUEUE_DESC 0x20
#define QUEUE_DRIVER 0x28
#define QUEUE_DEVICE 0x30

#define MAX_LINES (VIRTIO_PCI_MAX_FAULT_REPORTS + 4)

struct bench {
    struct io_bus pio, mmio;
    struct pci_bus *bus;
    struct guest_mem mem;
    struct loop_thread loop;
    struct virtio_pci *vp;
    uint64_t bar0;

    pthread_mutex_t lock; /* the lines, written by the loop thread */
    unsigned line_count;
    char lines[MAX_LINES][256];
};

/* A device that pops what it is kicked for, and stops at the first bad chain, as the real
 * ones do (the chains are left in the ring: the test only posts bad ones). */
static void pop_notify(struct virtio_device *dev, unsigned index)
{
    struct virtq_elem elem;
    int r = virtq_pop(&dev->queues[index], &elem);
    if (r < 0)
        virtio_needs_reset(dev, index, r);
}

static void destroy_device(struct virtio_device *dev) { free(dev); }

static const struct virtio_device_ops pop_ops = {
    .queue_notify = pop_notify,
    .destroy = destroy_device,
};

static void record(void *ctx, const char *line)
{
    struct bench *b = ctx;
    pthread_mutex_lock(&b->lock);
    if (b->line_count < MAX_LINES)
        snprintf(b->lines[b->line_count], sizeof(b->lines[0]), "%s", line);
    b->line_count++;
    pthread_mutex_unlock(&b->lock);
}

static int sink_alloc(void *ctx, unsigned count)
{
    (void)ctx;
    (void)count;
    return 0;
}

static int sink_route(void *ctx, unsigned id, bool enabled, uint64_t addr, uint32_t data)
{
    (void)ctx, (void)id, (void)enabled, (void)addr, (void)data;
    return 0;
}

static int sink_fire(void *ctx, unsigned id)
{
    (void)ctx, (void)id;
    return 0;
}

static const struct pci_bus_layout layout = {
    .ecam_base = X86_PCI_ECAM_BASE,
    .window_base = X86_PCI_MMIO_BASE,
    .window_size = X86_PCI_MMIO_SIZE,
    .config_port = X86_PCI_CONFIG_PORT,
};

static struct bench *make_bench(struct virtio_device *dev)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    pthread_mutex_init(&b->lock, NULL);
    io_bus_init(&b->pio);
    io_bus_init(&b->mmio);
    char error[256] = "";
    b->bus = pci_bus_new(&b->pio, &b->mmio, &layout, error, sizeof(error));
    assert_non_null(b->bus);
    assert_int_equal(guest_mem_create(&b->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START),
                     0);
    loop_thread_start(&b->loop);
    const struct virtio_pci_host host = {
        .bus = b->bus,
        .loop = b->loop.loop,
        .mem = &b->mem,
        .msi = {.alloc = sink_alloc, .route = sink_route, .fire = sink_fire},
        .report_fault = record,
        .ctx = b,
        .label = "disk 'x.img'",
    };
    b->vp = virtio_pci_new(dev, &host, error, sizeof(error));
    assert_non_null(b->vp);
    struct pci_device *fn = virtio_pci_function(b->vp);
    const uint8_t memory_enable[2] = {0x02, 0x00}; /* command register: memory space */
    pci_bus_config_write(b->bus, fn->slot, 0, 0x04, memory_enable, 2);
    b->bar0 = pci_bar_address(fn, 0);
    assert_true(b->bar0 != 0);
    return b;
}

static int setup(void **state)
{
    struct virtio_device *dev = calloc(1, sizeof(*dev));
    assert_non_null(dev);
    *dev = (struct virtio_device){.ops = &pop_ops, .device_id = VIRTIO_ID_BLOCK,
                                  .num_queues = 1, .queue_max_size = QUEUE_SIZE};
    *state = make_bench(dev);
    return 0;
}

static void free_transport(void *arg) { virtio_pci_free(arg); }

static void free_bench(struct bench *b)
{
    loop_thread_call(&b->loop, free_transport, b->vp); /* its fds are on the loop */
    loop_thread_stop(&b->loop);
    guest_mem_destroy(&b->mem);
    pci_bus_free(b->bus);
    io_bus_destroy(&b->pio);
    io_bus_destroy(&b->mmio);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static int teardown(void **state)
{
    free_bench(*state);
    return 0;
}

static void bar_write(struct bench *b, uint64_t offset, uint64_t value, unsigned size)
{
    uint8_t data[8];
    for (unsigned i = 0; i < size; i++)
        data[i] = (uint8_t)(value >> (8 * i));
    assert_true(io_bus_write(&b->mmio, b->bar0 + offset, data, size));
}

static uint8_t status(struct bench *b)
{
    uint8_t v = 0;
    assert_true(io_bus_read(&b->mmio, b->bar0 + DEVICE_STATUS, &v, 1));
    return v;
}

static void put16(struct bench *b, uint64_t gpa, uint16_t v)
{
    uint8_t *p = guest_mem_ptr(&b->mem, gpa, 2);
    assert_non_null(p);
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* The driver's start-up (3.1.1) up to FEATURES_OK. */
static void negotiate(struct bench *b)
{
    bar_write(b, DEVICE_STATUS, 0, 1); /* reset */
    bar_write(b, DEVICE_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    bar_write(b, DRIVER_FEATURE_SELECT, 1, 4);
    bar_write(b, DRIVER_FEATURE, 1, 4); /* VIRTIO_F_VERSION_1 */
    bar_write(b, DEVICE_STATUS,
              VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
}

/* Queue 0 with its descriptor table at desc, then DRIVER_OK. */
static void enable_and_go(struct bench *b, uint64_t desc)
{
    bar_write(b, QUEUE_SELECT, 0, 2);
    bar_write(b, QUEUE_SIZE_REG, QUEUE_SIZE, 2);
    bar_write(b, QUEUE_DESC, desc, 8);
    bar_write(b, QUEUE_DRIVER, AVAIL_GPA, 8);
    bar_write(b, QUEUE_DEVICE, USED_GPA, 8);
    bar_write(b, QUEUE_ENABLE, 1, 2);
    bar_write(b, DEVICE_STATUS,
              VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                  VIRTIO_STATUS_DRIVER_OK,
              1);
}

/* The whole start-up with queue 0 at good addresses and empty. */
static void bring_up(struct bench *b)
{
    put16(b, AVAIL_GPA + 2, 0); /* avail->idx */
    negotiate(b);
    enable_and_go(b, DESC_GPA);
    assert_int_equal(status(b) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static unsigned lines(struct bench *b)
{
    pthread_mutex_lock(&b->lock);
    unsigned n = b->line_count;
    pthread_mutex_unlock(&b->lock);
    return n;
}

static void nothing(void *arg) { (void)arg; }

/* Posts descriptor 0 pointing at itself, kicks queue 0 (through the BAR: no ioeventfd here)
 * and waits for the loop to have seen it: until the device stopped, or a few loop turns when
 * it was stopped already. */
static void post_loop_and_kick(struct bench *b)
{
    uint8_t *desc = guest_mem_ptr(&b->mem, DESC_GPA, 16);
    assert_non_null(desc);
    memset(desc, 0, 16);
    desc[8] = 16;                /* len */
    desc[12] = VIRTQ_DESC_F_NEXT; /* flags; next = 0: itself */
    put16(b, AVAIL_GPA + 4, 0);  /* ring[0]: head 0 */
    put16(b, AVAIL_GPA + 2, 1);  /* avail->idx */
    bar_write(b, VIRTIO_PCI_NOTIFY_OFFSET, 0, 2);
    for (int turn = 0; turn < 100 && !(status(b) & VIRTIO_STATUS_NEEDS_RESET); turn++)
        loop_thread_call(&b->loop, nothing, NULL);
    for (int turn = 0; turn < 3; turn++)
        loop_thread_call(&b->loop, nothing, NULL);
}

static void test_fault_reported_once_per_stop(void **state)
{
    struct bench *b = *state;
    bring_up(b);
    post_loop_and_kick(b);
    assert_true(status(b) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(lines(b), 1);
    char want[256];
    snprintf(want, sizeof(want),
             "virtio-blk at PCI 00:%02x.0 (disk 'x.img'): the guest's driver broke queue 0 (a "
             "descriptor chain that loops); the device is stopped until the driver resets it",
             virtio_pci_function(b->vp)->slot);
    assert_string_equal(b->lines[0], want);
    /* Stopped: more kicks reach no device and tell nothing new. */
    post_loop_and_kick(b);
    post_loop_and_kick(b);
    assert_int_equal(lines(b), 1);
}

static void test_rings_outside_ram_reported(void **state)
{
    struct bench *b = *state;
    negotiate(b);
    enable_and_go(b, MEM_SIZE - 16); /* the table runs off the end of RAM */
    assert_true(status(b) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(lines(b), 1);
    assert_non_null(strstr(b->lines[0], "broke queue 0 (a queue size or ring address the device "
                                        "cannot use)"));
}

/* A driver that breaks the device after every reset: a bounded number of lines. */
static void test_reports_capped(void **state)
{
    struct bench *b = *state;
    for (int round = 0; round < VIRTIO_PCI_MAX_FAULT_REPORTS + 3; round++) {
        bring_up(b);
        post_loop_and_kick(b);
        assert_true(status(b) & VIRTIO_STATUS_NEEDS_RESET);
    }
    assert_int_equal(lines(b), VIRTIO_PCI_MAX_FAULT_REPORTS + 1);
    for (unsigned i = 0; i < VIRTIO_PCI_MAX_FAULT_REPORTS; i++)
        assert_non_null(strstr(b->lines[i], "broke queue 0 (a descriptor chain that loops)"));
    assert_non_null(strstr(b->lines[VIRTIO_PCI_MAX_FAULT_REPORTS],
                           "keeps breaking the device; further faults are not reported"));
}

/* ---- snapshots ---- */

/* A device that serves every chain it is kicked for, and has a little state of its own. */
struct counter {
    struct virtio_device dev;
    atomic_uint served;
    uint32_t marker; /* saved and restored */
    bool busy;       /* save refuses, as vsock does with a connection open */
};

static void count_notify(struct virtio_device *dev, unsigned index)
{
    struct counter *c = (struct counter *)dev;
    struct virtq_elem elem;
    int r;
    while ((r = virtq_pop(&dev->queues[index], &elem)) == 1) {
        virtq_push(&dev->queues[index], elem.head, 0);
        atomic_fetch_add(&c->served, 1);
    }
    if (r < 0)
        virtio_needs_reset(dev, index, r);
}

static int count_save(struct virtio_device *dev, struct snap_writer *w)
{
    struct counter *c = (struct counter *)dev;
    snap_put_u32(w, c->marker);
    return c->busy ? -EBUSY : 0;
}

static bool count_restore(struct virtio_device *dev, struct snap_reader *r)
{
    ((struct counter *)dev)->marker = snap_get_u32(r);
    return snap_reader_ok(r, true);
}

static const struct virtio_device_ops count_ops = {
    .queue_notify = count_notify,
    .destroy = destroy_device,
    .save = count_save,
    .restore = count_restore,
};

static struct counter *new_counter(void)
{
    struct counter *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->dev = (struct virtio_device){.ops = &count_ops, .device_id = VIRTIO_ID_RNG,
                                    .num_queues = 1, .queue_max_size = QUEUE_SIZE};
    return c;
}

static uint16_t get16(struct bench *b, uint64_t gpa)
{
    const uint8_t *p = guest_mem_ptr(&b->mem, gpa, 2);
    assert_non_null(p);
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Makes a one-buffer chain available as the avail ring's next entry, and kicks queue 0. */
static void post_good_chain_and_kick(struct bench *b)
{
    uint8_t *desc = guest_mem_ptr(&b->mem, DESC_GPA, 16);
    memset(desc, 0, 16);
    desc[2] = 0x02; /* addr 0x20000 */
    desc[8] = 16;   /* len */
    uint16_t idx = get16(b, AVAIL_GPA + 2);
    put16(b, AVAIL_GPA + 4 + 2 * (idx % QUEUE_SIZE), 0);
    put16(b, AVAIL_GPA + 2, (uint16_t)(idx + 1));
    bar_write(b, VIRTIO_PCI_NOTIFY_OFFSET, 0, 2);
    for (int turn = 0; turn < 3; turn++)
        loop_thread_call(&b->loop, nothing, NULL);
}

struct save_call {
    struct bench *b;
    struct snap_writer w;
    int result;
};

/* On the loop's thread, so no handler runs meanwhile: what io_loop_park gives the VM. */
static void save_on_loop(void *arg)
{
    struct save_call *call = arg;
    pci_bus_save(call->b->bus, &call->w);
    call->result = virtio_pci_save(call->b->vp, &call->w);
}

struct restore_call {
    struct bench *b;
    const uint8_t *data;
    size_t len;
    bool ok;
};

static void restore_on_loop(void *arg)
{
    struct restore_call *call = arg;
    struct snap_reader r;
    snap_reader_init(&r, call->data, call->len);
    call->ok = pci_bus_restore(call->b->bus, &r) && virtio_pci_restore(call->b->vp, &r) &&
               snap_reader_ok(&r, true);
}

static uint64_t bar_read(struct bench *b, uint64_t offset, unsigned size)
{
    uint8_t data[8] = {0};
    assert_true(io_bus_read(&b->mmio, b->bar0 + offset, data, size));
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)data[i] << (8 * i);
    return v;
}

static void test_snapshot_resumes_where_the_device_was(void **state)
{
    (void)state;
    struct counter *saved_dev = new_counter();
    struct bench *saved = make_bench(&saved_dev->dev);
    bring_up(saved);
    post_good_chain_and_kick(saved);
    assert_int_equal(atomic_load(&saved_dev->served), 1);
    saved_dev->marker = 77;
    struct save_call save = {.b = saved};
    snap_writer_init(&save.w);
    loop_thread_call(&saved->loop, save_on_loop, &save);
    assert_int_equal(save.result, 0);
    assert_true(snap_writer_ok(&save.w));

    struct counter *restored_dev = new_counter();
    struct bench *restored = make_bench(&restored_dev->dev);
    memcpy(restored->mem.host, saved->mem.host, MEM_SIZE); /* what the RAM snapshot carries */
    struct restore_call restore = {.b = restored, .data = save.w.data, .len = save.w.len - 1};
    loop_thread_call(&restored->loop, restore_on_loop, &restore);
    assert_false(restore.ok); /* cut short */
    restore.len = save.w.len;
    loop_thread_call(&restored->loop, restore_on_loop, &restore);
    assert_true(restore.ok);
    assert_int_equal(restored_dev->marker, 77);
    assert_true(status(restored) & VIRTIO_STATUS_DRIVER_OK);
    bar_write(restored, QUEUE_SELECT, 0, 2);
    assert_true(bar_read(restored, QUEUE_DESC, 8) == DESC_GPA);
    assert_int_equal(bar_read(restored, QUEUE_ENABLE, 2), 1);

    /* The chain served before the snapshot is not served again... */
    for (int turn = 0; turn < 3; turn++)
        loop_thread_call(&restored->loop, nothing, NULL);
    assert_int_equal(atomic_load(&restored_dev->served), 0);
    /* ...and the next one lands in the next used slot. */
    post_good_chain_and_kick(restored);
    assert_int_equal(atomic_load(&restored_dev->served), 1);
    assert_int_equal(get16(restored, USED_GPA + 2), 2);
    assert_int_equal(status(restored) & VIRTIO_STATUS_NEEDS_RESET, 0);

    saved_dev->busy = true;
    snap_writer_free(&save.w);
    snap_writer_init(&save.w);
    loop_thread_call(&saved->loop, save_on_loop, &save);
    assert_int_equal(save.result, -EBUSY);
    snap_writer_free(&save.w);
    free_bench(saved);
    free_bench(restored);
}

static void test_device_without_snapshot_support(void **state)
{
    struct bench *b = *state;
    bring_up(b);
    struct save_call save = {.b = b};
    snap_writer_init(&save.w);
    loop_thread_call(&b->loop, save_on_loop, &save);
    assert_int_equal(save.result, -ENOTSUP);
    snap_writer_free(&save.w);
}

/* A device with a budget of one chain per notification, which asks to be called again while
 * chains are left, as virtq_drain's users do at VIRTQ_DRAIN_BUDGET. */
static void one_per_call_notify(struct virtio_device *dev, unsigned index)
{
    struct counter *c = (struct counter *)dev;
    struct virtq_elem elem;
    if (virtq_pop(&dev->queues[index], &elem) != 1)
        return;
    virtq_push(&dev->queues[index], elem.head, 0);
    atomic_fetch_add(&c->served, 1);
    virtio_requeue(dev, index);
}

static const struct virtio_device_ops one_per_call_ops = {
    .queue_notify = one_per_call_notify,
    .destroy = destroy_device,
};

/* One guest kick, three chains: the transport brings the device back to the queue through the
 * loop until all are served. */
static void test_requeue_serves_the_rest(void **state)
{
    (void)state;
    struct counter *c = new_counter();
    c->dev.ops = &one_per_call_ops;
    struct bench *b = make_bench(&c->dev);
    bring_up(b);
    uint8_t *desc = guest_mem_ptr(&b->mem, DESC_GPA, 16);
    memset(desc, 0, 16);
    desc[2] = 0x02; /* addr 0x20000 */
    desc[8] = 16;   /* len */
    for (uint16_t i = 0; i < 3; i++)
        put16(b, AVAIL_GPA + 4 + 2 * i, 0);
    put16(b, AVAIL_GPA + 2, 3);
    bar_write(b, VIRTIO_PCI_NOTIFY_OFFSET, 0, 2);
    for (int turn = 0; turn < 100 && atomic_load(&c->served) < 3; turn++)
        loop_thread_call(&b->loop, nothing, NULL);
    assert_int_equal(atomic_load(&c->served), 3);
    assert_int_equal(get16(b, USED_GPA + 2), 3);
    free_bench(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fault_reported_once_per_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rings_outside_ram_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reports_capped, setup, teardown),
        cmocka_unit_test(test_snapshot_resumes_where_the_device_was),
        cmocka_unit_test_setup_teardown(test_device_without_snapshot_support, setup, teardown),
        cmocka_unit_test(test_requeue_serves_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
