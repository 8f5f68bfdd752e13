/*
 * MSI-X: the capability, table and PBA as the guest sees them through the PCI bus, and what
 * reaches the MSI sink (a fake that records route and fire calls). Also the KVM router's
 * routing table, which must always carry the default irqchip routes.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "bus/msix.h"
#include "bus/pci.h"
#include "hv/kvm_msi.h"

#define VECTORS 3
#define MSIX_BAR 2
#define FIRST_ROUTE 7 /* the fake hands out ids from here, to catch id arithmetic */
#define MAX_ROUTES 32

/* ---- the fake sink ---- */

struct fake_route {
    bool on;
    uint64_t addr;
    uint32_t data;
};

struct fake_sink {
    pthread_mutex_t lock;
    unsigned next;
    int route_calls, fire_calls;
    int route_error; /* returned by route() while nonzero */
    int alloc_error;
    struct fake_route routes[MAX_ROUTES];
    int fires[MAX_ROUTES];
    atomic_int fired_without_route; /* a message sent through a missing route */
};

static int fake_alloc(void *ctx, unsigned count)
{
    struct fake_sink *s = ctx;
    if (s->alloc_error)
        return s->alloc_error;
    if (s->next + count > MAX_ROUTES)
        return -ENOSPC;
    unsigned first = s->next;
    s->next += count;
    return (int)first;
}

static int fake_route(void *ctx, unsigned id, bool enabled, uint64_t addr, uint32_t data)
{
    struct fake_sink *s = ctx;
    assert_true(id < MAX_ROUTES);
    pthread_mutex_lock(&s->lock);
    s->route_calls++;
    int r = s->route_error;
    if (r == 0)
        s->routes[id] = (struct fake_route){enabled, addr, data};
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int fake_fire(void *ctx, unsigned id)
{
    struct fake_sink *s = ctx;
    assert_true(id < MAX_ROUTES);
    pthread_mutex_lock(&s->lock);
    s->fire_calls++;
    s->fires[id]++;
    if (!s->routes[id].on)
        atomic_fetch_add(&s->fired_without_route, 1);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- fixture: a PCI bus with one MSI-X device ---- */

struct fixture {
    struct io_bus pio, mmio;
    struct pci_bus *bus;
    struct pci_device dev;
    struct fake_sink sink;
    struct msi_sink msi;
    struct msix *msix;
    uint64_t bar;
};

static const struct pci_bus_layout layout = {
    .ecam_base = X86_PCI_ECAM_BASE,
    .window_base = X86_PCI_MMIO_BASE,
    .window_size = X86_PCI_MMIO_SIZE,
    .config_port = X86_PCI_CONFIG_PORT,
};

static uint64_t ecam(const struct fixture *f, unsigned reg)
{
    return X86_PCI_ECAM_BASE + ((uint64_t)f->dev.slot << 15) + reg;
}

static uint64_t rd(struct io_bus *bus, uint64_t addr, unsigned size)
{
    uint8_t b[8] = {0};
    io_bus_read(bus, addr, b, size);
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void wr(struct io_bus *bus, uint64_t addr, unsigned size, uint64_t v)
{
    uint8_t b[8];
    for (unsigned i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    io_bus_write(bus, addr, b, size);
}

static uint32_t cfg(struct fixture *f, unsigned reg, unsigned size)
{
    return (uint32_t)rd(&f->mmio, ecam(f, reg), size);
}

static void set_cfg(struct fixture *f, unsigned reg, unsigned size, uint32_t v)
{
    wr(&f->mmio, ecam(f, reg), size, v);
}

/* Message control, through config space as a driver writes it. */
static void set_control(struct fixture *f, uint16_t bits)
{
    set_cfg(f, msix_cap_offset(f->msix) + 2, 2, bits);
}

static uint64_t entry(const struct fixture *f, unsigned v, unsigned field)
{
    return f->bar + v * MSIX_ENTRY_SIZE + field;
}

static void program(struct fixture *f, unsigned v, uint64_t addr, uint32_t data)
{
    wr(&f->mmio, entry(f, v, MSIX_ENTRY_ADDR_LO), 4, (uint32_t)addr);
    wr(&f->mmio, entry(f, v, MSIX_ENTRY_ADDR_HI), 4, addr >> 32);
    wr(&f->mmio, entry(f, v, MSIX_ENTRY_DATA), 4, data);
}

static void set_masked(struct fixture *f, unsigned v, bool masked)
{
    wr(&f->mmio, entry(f, v, MSIX_ENTRY_CONTROL), 4, masked ? MSIX_ENTRY_MASKED : 0);
}

static uint64_t pba(struct fixture *f)
{
    return rd(&f->mmio, f->bar + msix_pba_offset(f->msix), 8);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    io_bus_init(&f->pio);
    io_bus_init(&f->mmio);
    pthread_mutex_init(&f->sink.lock, NULL);
    f->sink.next = FIRST_ROUTE;
    f->msi = (struct msi_sink){fake_alloc, fake_route, fake_fire, &f->sink};
    char error[256] = "";
    f->bus = pci_bus_new(&f->pio, &f->mmio, &layout, error, sizeof(error));
    assert_non_null(f->bus);
    f->dev.vendor_id = 0x1af4;
    f->dev.device_id = 0x1044;
    assert_int_equal(msix_new(&f->dev, MSIX_BAR, VECTORS, &f->msi, &f->msix), 0);
    assert_int_equal(pci_bus_add(f->bus, &f->dev, error, sizeof(error)), 0);
    f->bar = pci_bar_address(&f->dev, MSIX_BAR);
    set_cfg(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pci_bus_free(f->bus);
    msix_free(f->msix);
    io_bus_destroy(&f->pio);
    io_bus_destroy(&f->mmio);
    assert_int_equal(atomic_load(&f->sink.fired_without_route), 0);
    pthread_mutex_destroy(&f->sink.lock);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_capability(void **state)
{
    struct fixture *f = *state;
    /* Found by walking the list. */
    unsigned pos = cfg(f, PCI_CAPABILITY_LIST, 1);
    assert_true(cfg(f, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(pos, msix_cap_offset(f->msix));
    assert_int_equal(cfg(f, pos, 1), PCI_CAP_ID_MSIX);
    assert_int_equal(cfg(f, pos + 1, 1), 0);
    /* Table size N-1, disabled, unmasked; table at BAR offset 0, PBA after it, same BAR. */
    assert_int_equal(cfg(f, pos + 2, 2), VECTORS - 1);
    assert_int_equal(cfg(f, pos + 4, 4), MSIX_BAR);
    assert_int_equal(cfg(f, pos + 8, 4), msix_pba_offset(f->msix) | MSIX_BAR);
    assert_int_equal(msix_pba_offset(f->msix), VECTORS * MSIX_ENTRY_SIZE);
    assert_int_equal(msix_pba_offset(f->msix) % 8, 0);
    assert_int_equal(msix_table_offset(f->msix), 0);
    /* The BAR: 4 KiB (the minimum), in the window. */
    assert_true(f->bar >= X86_PCI_MMIO_BASE);
    assert_int_equal(f->bar % 0x1000, 0);
    set_cfg(f, PCI_BAR0 + 4 * MSIX_BAR, 4, 0xffffffff);
    assert_int_equal(cfg(f, PCI_BAR0 + 4 * MSIX_BAR, 4), 0xfffff000);
    set_cfg(f, PCI_BAR0 + 4 * MSIX_BAR, 4, (uint32_t)f->bar);
    /* Only enable and function mask are writable. */
    set_cfg(f, pos + 2, 2, 0xffff);
    assert_int_equal(cfg(f, pos + 2, 2), 0xc000 | (VECTORS - 1));
    set_cfg(f, pos + 4, 4, 0xffffffff);
    assert_int_equal(cfg(f, pos + 4, 4), MSIX_BAR);
    set_cfg(f, pos, 4, 0);
    assert_int_equal(cfg(f, pos + 2, 2), VECTORS - 1);
}

static void test_reset_state(void **state)
{
    struct fixture *f = *state;
    for (unsigned v = 0; v < VECTORS; v++) {
        assert_int_equal(rd(&f->mmio, entry(f, v, MSIX_ENTRY_CONTROL), 4), MSIX_ENTRY_MASKED);
        assert_int_equal(rd(&f->mmio, entry(f, v, MSIX_ENTRY_ADDR_LO), 8), 0);
    }
    assert_int_equal(pba(f), 0);
    /* Disabled: a notification is dropped, not made pending. */
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(pba(f), 0);
    assert_int_equal(f->sink.fire_calls + f->sink.route_calls, 0);
    assert_int_equal(msix_notify(f->msix, VECTORS), -EINVAL);
    assert_int_equal(msix_notify(f->msix, 1u << 31), -EINVAL);
}

static void test_program_and_fire(void **state)
{
    struct fixture *f = *state;
    set_control(f, MSIX_CONTROL_ENABLE);
    /* Programming a masked vector routes nothing. */
    program(f, 1, 0xfee01000, 0x4031);
    assert_int_equal(f->sink.route_calls, 0);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_LO), 4), 0xfee01000);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 4), 0x4031);
    /* Unmasking routes it, with the vector's own id. */
    set_masked(f, 1, false);
    assert_int_equal(f->sink.route_calls, 1);
    struct fake_route *r = &f->sink.routes[FIRST_ROUTE + 1];
    assert_true(r->on);
    assert_int_equal(r->addr, 0xfee01000);
    assert_int_equal(r->data, 0x4031);
    assert_int_equal(msix_notify(f->msix, 1), 0);
    assert_int_equal(f->sink.fires[FIRST_ROUTE + 1], 1);
    assert_int_equal(f->sink.fire_calls, 1);
    assert_int_equal(pba(f), 0);
    /* Rewriting the same values changes no route. */
    program(f, 1, 0xfee01000, 0x4031);
    assert_int_equal(f->sink.route_calls, 1);
    /* A new message while unmasked (Linux moving an interrupt) reroutes. */
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 4, 0x4032);
    assert_int_equal(f->sink.route_calls, 2);
    assert_int_equal(r->data, 0x4032);
    /* Vector 0 stayed masked: its notification pends. */
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(pba(f), 1);
    assert_int_equal(f->sink.fire_calls, 1);
}

static void test_masked_vector_pends(void **state)
{
    struct fixture *f = *state;
    set_control(f, MSIX_CONTROL_ENABLE);
    program(f, 2, 0xfee00000, 0x41);
    assert_int_equal(msix_notify(f->msix, 2), 0);
    assert_int_equal(msix_notify(f->msix, 2), 0);
    assert_int_equal(pba(f), 1u << 2);
    assert_int_equal(rd(&f->mmio, f->bar + msix_pba_offset(f->msix), 4), 1u << 2);
    assert_int_equal(f->sink.fire_calls, 0);
    /* Unmasking delivers the pending message once and clears the bit. */
    set_masked(f, 2, false);
    assert_int_equal(f->sink.fires[FIRST_ROUTE + 2], 1);
    assert_int_equal(pba(f), 0);
    /* Masking again takes the route away; notifications pend again. */
    set_masked(f, 2, true);
    assert_false(f->sink.routes[FIRST_ROUTE + 2].on);
    assert_int_equal(msix_notify(f->msix, 2), 0);
    assert_int_equal(f->sink.fires[FIRST_ROUTE + 2], 1);
    assert_int_equal(pba(f), 1u << 2);
    /* The PBA is read-only. */
    wr(&f->mmio, f->bar + msix_pba_offset(f->msix), 8, 0);
    assert_int_equal(pba(f), 1u << 2);
}

static void test_function_mask(void **state)
{
    struct fixture *f = *state;
    /* Linux enables with the function masked, programs and unmasks, then unmasks the function. */
    set_control(f, MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    program(f, 0, 0xfee00000, 0x50);
    program(f, 1, 0xfee00000, 0x51);
    set_masked(f, 0, false);
    set_masked(f, 1, false);
    assert_int_equal(f->sink.route_calls, 0);
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(pba(f), 1);
    set_control(f, MSIX_CONTROL_ENABLE);
    assert_true(f->sink.routes[FIRST_ROUTE].on);
    assert_true(f->sink.routes[FIRST_ROUTE + 1].on);
    assert_int_equal(f->sink.fires[FIRST_ROUTE], 1); /* the pending one */
    assert_int_equal(f->sink.fires[FIRST_ROUTE + 1], 0);
    assert_int_equal(pba(f), 0);
    /* Masking the function takes every route away and makes notifications pend. */
    set_control(f, MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    assert_false(f->sink.routes[FIRST_ROUTE].on);
    assert_false(f->sink.routes[FIRST_ROUTE + 1].on);
    assert_int_equal(msix_notify(f->msix, 1), 0);
    assert_int_equal(f->sink.fires[FIRST_ROUTE + 1], 0);
    assert_int_equal(pba(f), 2);
    /* A write to message control that changes nothing reroutes nothing. */
    int calls = f->sink.route_calls;
    set_control(f, MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    assert_int_equal(f->sink.route_calls, calls);
}

static void test_disable(void **state)
{
    struct fixture *f = *state;
    set_control(f, MSIX_CONTROL_ENABLE);
    program(f, 0, 0xfee00000, 0x60);
    set_masked(f, 0, false);
    assert_true(f->sink.routes[FIRST_ROUTE].on);
    set_control(f, 0);
    assert_false(f->sink.routes[FIRST_ROUTE].on);
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(f->sink.fire_calls, 0);
    assert_int_equal(pba(f), 0); /* dropped, not pending */
    set_control(f, MSIX_CONTROL_ENABLE);
    assert_true(f->sink.routes[FIRST_ROUTE].on);
    assert_int_equal(f->sink.fire_calls, 0);
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(f->sink.fire_calls, 1);
}

static void test_table_access_sizes(void **state)
{
    struct fixture *f = *state;
    /* Qword writes of address and of data + control. */
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_LO), 8, 0x00000001fee02003ull);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_LO), 4), 0xfee02000); /* bits 1:0 */
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_HI), 4), 1);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_LO), 8), 0x00000001fee02000ull);
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 8, 0xfffffffe00000077ull);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 8), 0x77); /* unmasked */
    /* Byte, word and unaligned accesses are ignored; their reads are all-ones. */
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_CONTROL), 1, 1);
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 2, 0xffff);
    wr(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_HI), 8, ~0ull);
    wr(&f->mmio, entry(f, 1, 2), 4, ~0ull);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 8), 0x77);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_ADDR_LO), 8), 0x00000001fee02000ull);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_CONTROL), 1), 0xff);
    assert_int_equal(rd(&f->mmio, entry(f, 1, MSIX_ENTRY_DATA), 2), 0xffff);
    assert_int_equal(rd(&f->mmio, entry(f, 1, 4), 8), ~0ull);
    /* Reserved vector control bits read as zero. */
    wr(&f->mmio, entry(f, 0, MSIX_ENTRY_CONTROL), 4, 0xfffffffe);
    assert_int_equal(rd(&f->mmio, entry(f, 0, MSIX_ENTRY_CONTROL), 4), 0);
    /* Past the table and PBA, to the end of the BAR: all-ones, writes ignored. */
    uint64_t pba_end = msix_pba_offset(f->msix) + 8;
    for (uint64_t off = pba_end; off < 0x1000; off += 0x1f8) {
        wr(&f->mmio, f->bar + off, 4, 0);
        assert_int_equal(rd(&f->mmio, f->bar + off, 4), 0xffffffff);
    }
    assert_int_equal(rd(&f->mmio, f->bar + 0xff8, 8), ~0ull);
    /* None of it routed or fired anything while MSI-X is disabled. */
    assert_int_equal(f->sink.fire_calls, 0);
    for (unsigned id = 0; id < MAX_ROUTES; id++)
        assert_false(f->sink.routes[id].on);
}

static void test_memory_disabled(void **state)
{
    struct fixture *f = *state;
    set_cfg(f, PCI_COMMAND, 2, 0);
    program(f, 0, 0xfee00000, 0x70);
    set_cfg(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(rd(&f->mmio, entry(f, 0, MSIX_ENTRY_DATA), 4), 0);
}

static void test_route_failure(void **state)
{
    struct fixture *f = *state;
    set_control(f, MSIX_CONTROL_ENABLE);
    program(f, 0, 0xfee00000, 0x80);
    f->sink.route_error = -ENOSPC;
    set_masked(f, 0, false);
    /* No route: nothing is sent, the message waits. */
    assert_int_equal(msix_notify(f->msix, 0), 0);
    assert_int_equal(f->sink.fire_calls, 0);
    assert_int_equal(pba(f), 1);
    /* The next change of the vector retries and delivers. */
    f->sink.route_error = 0;
    set_masked(f, 0, false);
    assert_true(f->sink.routes[FIRST_ROUTE].on);
    assert_int_equal(f->sink.fires[FIRST_ROUTE], 1);
    assert_int_equal(pba(f), 0);
}

static void test_new_errors(void **state)
{
    (void)state;
    struct fake_sink s = {.next = 0};
    pthread_mutex_init(&s.lock, NULL);
    struct msi_sink sink = {fake_alloc, fake_route, fake_fire, &s};
    struct msi_sink no_fire = {fake_alloc, fake_route, NULL, &s};
    struct pci_device dev;
    struct msix *m = (struct msix *)&dev;
    memset(&dev, 0, sizeof(dev));
    assert_int_equal(msix_new(&dev, 0, 0, &sink, &m), -EINVAL);
    assert_null(m);
    assert_int_equal(msix_new(&dev, 0, MSIX_MAX_VECTORS + 1, &sink, &m), -EINVAL);
    assert_int_equal(msix_new(&dev, PCI_BARS, 1, &sink, &m), -EINVAL);
    assert_int_equal(msix_new(&dev, 0, 1, NULL, &m), -EINVAL);
    assert_int_equal(msix_new(&dev, 0, 1, &no_fire, &m), -EINVAL);
    dev.bars[0].size = 0x1000;
    assert_int_equal(msix_new(&dev, 0, 1, &sink, &m), -EBUSY);
    s.alloc_error = -ENOSPC;
    assert_int_equal(msix_new(&dev, 1, 1, &sink, &m), -ENOSPC);
    assert_int_equal(dev.cap_count, 0); /* nothing left behind */
    assert_int_equal(dev.bars[1].size, 0);
    s.alloc_error = 0;
    /* 16 vectors: 256 bytes of table and 8 of PBA; the bus raises the BAR to 4 KiB later. */
    assert_int_equal(msix_new(&dev, 1, 16, &sink, &m), 0);
    assert_int_equal(dev.bars[1].size, 0x200);
    msix_free(m);
    memset(&dev, 0, sizeof(dev));
    /* 2048 vectors need more routes than the fake has: the sink's error comes back. */
    assert_int_equal(msix_new(&dev, 1, MSIX_MAX_VECTORS, &sink, &m), -ENOSPC);
    pthread_mutex_destroy(&s.lock);
}

static int alloc_any(void *ctx, unsigned count)
{
    (void)ctx;
    (void)count;
    return 0;
}

static int route_none(void *ctx, unsigned id, bool on, uint64_t addr, uint32_t data)
{
    (void)ctx;
    (void)id;
    (void)on;
    (void)addr;
    (void)data;
    return 0;
}

static int fire_none(void *ctx, unsigned id)
{
    (void)ctx;
    (void)id;
    return 0;
}

static void test_largest_table(void **state)
{
    (void)state;
    struct msi_sink sink = {alloc_any, route_none, fire_none, NULL};
    static struct pci_device dev;
    struct msix *m;
    memset(&dev, 0, sizeof(dev));
    assert_int_equal(msix_new(&dev, 5, MSIX_MAX_VECTORS, &sink, &m), 0);
    assert_int_equal(msix_pba_offset(m), 0x8000);
    assert_int_equal(dev.bars[5].size, 0x10000);
    assert_int_equal(pci_config_get(&dev, msix_cap_offset(m) + 2, 2), MSIX_MAX_VECTORS - 1);
    assert_int_equal(msix_notify(m, MSIX_MAX_VECTORS - 1), 0);
    assert_int_equal(msix_notify(m, MSIX_MAX_VECTORS), -EINVAL);
    /* Accesses at the very ends of table and PBA stay in bounds. */
    uint8_t b[8];
    dev.bars[5].write(m, 0x7ff8, (const uint8_t[8]){0}, 8);
    dev.bars[5].read(m, 0x7ff8, b, 8);
    assert_int_equal(b[0], 0);
    dev.bars[5].read(m, 0x80f8, b, 8);
    assert_int_equal(b[0], 0);
    dev.bars[5].read(m, 0x8100, b, 8);
    assert_int_equal(b[0], 0xff);
    msix_free(m);
}

/* Notifications racing with mask toggles: never sent through a missing route, none lost. */
struct race {
    struct fixture *f;
    atomic_bool stop;
    atomic_int notified;
};

static void *notifier(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->stop)) {
        msix_notify(r->f->msix, 0);
        atomic_fetch_add(&r->notified, 1);
    }
    return NULL;
}

static void test_notify_races_mask(void **state)
{
    struct fixture *f = *state;
    set_control(f, MSIX_CONTROL_ENABLE);
    program(f, 0, 0xfee00000, 0x90);
    struct race r = {.f = f};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, notifier, &r), 0);
    /* Toggle only while both notifiers are running, and for long enough to overlap. */
    while (atomic_load(&r.notified) < 1000)
        sched_yield();
    int goal = atomic_load(&r.notified) + 50000;
    for (int i = 0; i < 2000 || (atomic_load(&r.notified) < goal && i < 2000000); i++) {
        set_masked(f, 0, (i & 1) == 0);
        if (i % 100 == 0)
            set_control(f, MSIX_CONTROL_ENABLE | (i % 200 ? MSIX_CONTROL_FUNCTION_MASK : 0));
    }
    set_control(f, MSIX_CONTROL_ENABLE);
    set_masked(f, 0, true);
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* A final notification pends; unmasking delivers it: nothing is lost at the end. */
    msix_notify(f->msix, 0);
    assert_int_equal(pba(f), 1);
    int before = f->sink.fires[FIRST_ROUTE];
    set_masked(f, 0, false);
    assert_int_equal(f->sink.fires[FIRST_ROUTE], before + 1);
    assert_int_equal(pba(f), 0);
    assert_true(atomic_load(&r.notified) > 0);
    assert_int_equal(atomic_load(&f->sink.fired_without_route), 0);
}

/* ---- the KVM router's table ---- */

static void test_kvm_routing_table(void **state)
{
    (void)state;
    struct kvm_msi_route routes[4] = {
        {.on = true, .addr = 0xfee00000, .data = 0x41},
        {.on = false, .addr = 0xfee00000, .data = 0x42},
        {.on = true, .addr = 0x1fee01000ull, .data = 0x43},
        {0},
    };
    struct kvm_irq_routing_entry e[KVM_MSI_IRQCHIP_ROUTES + 4];
    size_t n = kvm_msi_build_routing(X86_MSI_GSI_BASE, routes, 4, e, KVM_MSI_IRQCHIP_ROUTES + 4);
    assert_int_equal(n, KVM_MSI_IRQCHIP_ROUTES + 2);
    /* KVM's defaults: every IOAPIC pin on its own GSI, and PIC pins for GSIs 0..15. */
    unsigned ioapic[24] = {0}, pic[16] = {0};
    for (size_t i = 0; i < KVM_MSI_IRQCHIP_ROUTES; i++) {
        assert_int_equal(e[i].type, KVM_IRQ_ROUTING_IRQCHIP);
        assert_int_equal(e[i].flags, 0);
        unsigned gsi = e[i].gsi, chip = e[i].u.irqchip.irqchip, pin = e[i].u.irqchip.pin;
        if (chip == KVM_IRQCHIP_IOAPIC) {
            assert_true(gsi < 24);
            assert_int_equal(pin, gsi);
            ioapic[gsi]++;
        } else {
            assert_true(gsi < 16);
            assert_int_equal(chip, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
            assert_int_equal(pin, gsi % 8);
            pic[gsi]++;
        }
    }
    for (unsigned g = 0; g < 24; g++)
        assert_int_equal(ioapic[g], 1);
    for (unsigned g = 0; g < 16; g++)
        assert_int_equal(pic[g], 1);
    /* The UART's line in particular. */
    assert_int_equal(ioapic[X86_COM1_IRQ], 1);
    /* Then only the enabled MSI routes, each on its own GSI. */
    struct kvm_irq_routing_entry *m = &e[KVM_MSI_IRQCHIP_ROUTES];
    assert_int_equal(m[0].type, KVM_IRQ_ROUTING_MSI);
    assert_int_equal(m[0].gsi, X86_MSI_GSI_BASE);
    assert_int_equal(m[0].u.msi.address_lo, 0xfee00000);
    assert_int_equal(m[0].u.msi.address_hi, 0);
    assert_int_equal(m[0].u.msi.data, 0x41);
    assert_int_equal(m[1].gsi, X86_MSI_GSI_BASE + 2);
    assert_int_equal(m[1].u.msi.address_lo, 0xfee01000);
    assert_int_equal(m[1].u.msi.address_hi, 1);
    assert_int_equal(m[1].u.msi.data, 0x43);
    /* With every route off, the table is exactly the defaults: never empty. */
    memset(routes, 0, sizeof(routes));
    assert_int_equal(kvm_msi_build_routing(X86_MSI_GSI_BASE, routes, 4, e, KVM_MSI_IRQCHIP_ROUTES + 4),
                     KVM_MSI_IRQCHIP_ROUTES);
    /* Too small a buffer for the worst case is refused, not overrun. */
    assert_int_equal(kvm_msi_build_routing(X86_MSI_GSI_BASE, routes, 4, e, KVM_MSI_IRQCHIP_ROUTES + 3), 0);
    assert_int_equal(kvm_msi_build_routing(X86_MSI_GSI_BASE, routes, 0, e, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_and_fire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_masked_vector_pends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_access_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_races_mask, setup, teardown),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_largest_table),
        cmocka_unit_test(test_kvm_routing_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
