/*
 * The PCI bus: config space through ports 0xcf8/0xcfc and through ECAM, BAR sizing and
 * placement, memory-enable gating, capabilities, and what hostile config accesses get.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "bus/pci.h"

#define ECAM X86_PCI_ECAM_BASE
#define WINDOW_END (X86_PCI_MMIO_BASE + X86_PCI_MMIO_SIZE)

/* A device with three BARs whose handlers record what reaches them. */
struct test_dev {
    struct pci_device pci;
    int reads, writes;
    uint64_t last_offset;
    unsigned last_size;
    uint8_t last_data[8];
};

struct fixture {
    struct io_bus pio, mmio;
    struct pci_bus *bus;
    struct test_dev dev;
};

static void dev_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct test_dev *d = opaque;
    d->reads++;
    d->last_offset = offset;
    d->last_size = size;
    memset(data, 0x5a, size);
}

static void dev_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct test_dev *d = opaque;
    d->writes++;
    d->last_offset = offset;
    d->last_size = size;
    memcpy(d->last_data, data, size);
}

static const struct pci_bus_layout layout = {
    .ecam_base = X86_PCI_ECAM_BASE,
    .window_base = X86_PCI_MMIO_BASE,
    .window_size = X86_PCI_MMIO_SIZE,
    .config_port = X86_PCI_CONFIG_PORT,
};

static void test_dev_init(struct test_dev *d, uint16_t device_id)
{
    memset(d, 0, sizeof(*d));
    d->pci.vendor_id = 0x1af4;
    d->pci.device_id = device_id;
    d->pci.subsystem_vendor_id = 0x1af4;
    d->pci.subsystem_id = 0x0002;
    d->pci.class_code = 0x018000; /* storage, other */
    d->pci.revision = 1;
    d->pci.bars[0] = (struct pci_bar){0x4000, dev_read, dev_write, d};
    d->pci.bars[2] = (struct pci_bar){0x100, dev_read, dev_write, d}; /* raised to 4 KiB */
    d->pci.bars[4] = (struct pci_bar){0x10000, dev_read, dev_write, d};
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    io_bus_init(&f->pio);
    io_bus_init(&f->mmio);
    char error[256] = "";
    f->bus = pci_bus_new(&f->pio, &f->mmio, &layout, error, sizeof(error));
    assert_non_null(f->bus);
    test_dev_init(&f->dev, 0x1042);
    assert_int_equal(pci_bus_add(f->bus, &f->dev.pci, error, sizeof(error)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pci_bus_free(f->bus);
    io_bus_destroy(&f->pio);
    io_bus_destroy(&f->mmio);
    free(f);
    return 0;
}

/* ---- accessors ---- */

static uint32_t le(const uint8_t *p, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void out32(struct fixture *f, uint16_t port, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    assert_true(io_bus_write(&f->pio, port, b, 4));
}

static uint32_t cf8_address(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
    return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

/* Mechanism #1, as Linux does it: the dword address, then the data port at reg & 3. */
static uint32_t cf8_read(struct fixture *f, unsigned slot, unsigned fn, unsigned reg, unsigned size)
{
    out32(f, 0xcf8, cf8_address(0, slot, fn, reg));
    uint8_t b[4];
    assert_true(io_bus_read(&f->pio, 0xcfc + (reg & 3), b, size));
    return le(b, size);
}

static void cf8_write(struct fixture *f, unsigned slot, unsigned fn, unsigned reg, unsigned size,
                      uint32_t v)
{
    out32(f, 0xcf8, cf8_address(0, slot, fn, reg));
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    assert_true(io_bus_write(&f->pio, 0xcfc + (reg & 3), b, size));
}

static uint64_t ecam_addr(unsigned slot, unsigned fn, unsigned reg)
{
    return ECAM + ((uint64_t)slot << 15 | fn << 12 | reg);
}

static uint32_t ecam_read(struct fixture *f, unsigned slot, unsigned fn, unsigned reg,
                          unsigned size)
{
    uint8_t b[8];
    assert_true(io_bus_read(&f->mmio, ecam_addr(slot, fn, reg), b, size));
    return le(b, size <= 4 ? size : 4);
}

static void ecam_write(struct fixture *f, unsigned slot, unsigned fn, unsigned reg, unsigned size,
                       uint32_t v)
{
    uint8_t b[8] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    assert_true(io_bus_write(&f->mmio, ecam_addr(slot, fn, reg), b, size));
}

static unsigned slot_of(const struct test_dev *d)
{
    return d->pci.slot;
}

/* ---- identity ---- */

static void test_host_bridge(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(cf8_read(f, 0, 0, PCI_VENDOR_ID, 2), PCI_HOST_BRIDGE_VENDOR);
    assert_int_equal(cf8_read(f, 0, 0, PCI_DEVICE_ID, 2), PCI_HOST_BRIDGE_DEVICE);
    /* Class 06/00/00: what Linux's mechanism #1 sanity check looks for. */
    assert_int_equal(cf8_read(f, 0, 0, 0x08, 4) >> 8, 0x060000);
    assert_int_equal(cf8_read(f, 0, 0, 0x0a, 2), 0x0600);
    assert_int_equal(cf8_read(f, 0, 0, PCI_HEADER_TYPE, 1), 0);
    for (unsigned bar = 0; bar < PCI_BARS; bar++)
        assert_int_equal(cf8_read(f, 0, 0, PCI_BAR0 + 4 * bar, 4), 0);
    /* The mechanism #1 probe: a dword write of the enable bit reads back unchanged. */
    out32(f, 0xcf8, 0x80000000u);
    uint8_t b[4];
    assert_true(io_bus_read(&f->pio, 0xcf8, b, 4));
    assert_int_equal(le(b, 4), 0x80000000u);
}

static void test_identity(void **state)
{
    struct fixture *f = *state;
    unsigned s = slot_of(&f->dev);
    assert_int_equal(s, 1);
    assert_int_equal(cf8_read(f, s, 0, PCI_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(cf8_read(f, s, 0, PCI_DEVICE_ID, 2), 0x1042);
    assert_int_equal(cf8_read(f, s, 0, 0, 4), 0x10421af4);
    assert_int_equal(cf8_read(f, s, 0, PCI_REVISION_ID, 1), 1);
    assert_int_equal(cf8_read(f, s, 0, PCI_CLASS_PROG, 1), 0x00);
    assert_int_equal(cf8_read(f, s, 0, 0x0a, 1), 0x80);
    assert_int_equal(cf8_read(f, s, 0, 0x0b, 1), 0x01);
    assert_int_equal(cf8_read(f, s, 0, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(cf8_read(f, s, 0, PCI_SUBSYSTEM_ID, 2), 0x0002);
    assert_int_equal(ecam_read(f, s, 0, PCI_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(ecam_read(f, s, 0, PCI_DEVICE_ID, 2), 0x1042);
    /* No INTx: interrupt pin 0. Reset state: decoding off, no capabilities. */
    assert_int_equal(ecam_read(f, s, 0, PCI_INTERRUPT_PIN, 1), 0);
    assert_int_equal(ecam_read(f, s, 0, PCI_COMMAND, 2), 0);
    assert_int_equal(ecam_read(f, s, 0, PCI_STATUS, 2), 0);
    assert_int_equal(ecam_read(f, s, 0, PCI_CAPABILITY_LIST, 1), 0);
    assert_int_equal(pci_config_get(&f->dev.pci, PCI_VENDOR_ID, 4), 0x10421af4);
}

/* Every byte, word and dword of both functions agrees between the two mechanisms. */
static void test_mechanisms_agree(void **state)
{
    struct fixture *f = *state;
    for (unsigned s = 0; s < 3; s++) {
        for (unsigned reg = 0; reg < PCI_CONFIG_SIZE; reg++) {
            for (unsigned size = 1; size <= 4; size *= 2) {
                if (reg % size)
                    continue;
                assert_int_equal(cf8_read(f, s, 0, reg, size), ecam_read(f, s, 0, reg, size));
            }
        }
    }
    /* A write through one is seen through the other. */
    unsigned s = slot_of(&f->dev);
    cf8_write(f, s, 0, PCI_INTERRUPT_LINE, 1, 0x0b);
    assert_int_equal(ecam_read(f, s, 0, PCI_INTERRUPT_LINE, 1), 0x0b);
    ecam_write(f, s, 0, PCI_CACHE_LINE_SIZE, 1, 0x10);
    assert_int_equal(cf8_read(f, s, 0, PCI_CACHE_LINE_SIZE, 1), 0x10);
    ecam_write(f, s, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    assert_int_equal(cf8_read(f, s, 0, PCI_COMMAND, 2), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void test_empty_slots(void **state)
{
    struct fixture *f = *state;
    for (unsigned s = 2; s < PCI_SLOTS; s++) {
        assert_int_equal(cf8_read(f, s, 0, PCI_VENDOR_ID, 2), 0xffff);
        assert_int_equal(ecam_read(f, s, 0, PCI_VENDOR_ID, 2), 0xffff);
        assert_int_equal(ecam_read(f, s, 0, 0x100, 4), 0xffffffff);
    }
    /* Only function 0 exists. */
    for (unsigned fn = 1; fn < 8; fn++) {
        assert_int_equal(cf8_read(f, 1, fn, PCI_VENDOR_ID, 4), 0xffffffff);
        assert_int_equal(ecam_read(f, 1, fn, PCI_VENDOR_ID, 2), 0xffff);
        assert_int_equal(ecam_read(f, 0, fn, PCI_VENDOR_ID, 2), 0xffff);
    }
    /* Writes to nothing are dropped without effect. */
    ecam_write(f, 7, 0, PCI_COMMAND, 2, 0xffff);
    cf8_write(f, 1, 3, PCI_COMMAND, 2, 0xffff);
    assert_int_equal(ecam_read(f, 1, 0, PCI_COMMAND, 2), 0);
}

/* ---- BARs ---- */

static void test_bar_sizing(void **state)
{
    struct fixture *f = *state;
    unsigned s = slot_of(&f->dev);
    uint32_t bar0 = cf8_read(f, s, 0, PCI_BAR0, 4);
    assert_int_equal(bar0, pci_bar_address(&f->dev.pci, 0));
    assert_int_equal(bar0 & 0xf, 0); /* memory, 32-bit, not prefetchable */

    /* Linux's sizing: save, write all-ones, read the mask, restore. */
    cf8_write(f, s, 0, PCI_BAR0, 4, 0xffffffff);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0, 4), 0xffffc000); /* 16 KiB */
    assert_int_equal(ecam_read(f, s, 0, PCI_BAR0, 4), 0xffffc000);
    cf8_write(f, s, 0, PCI_BAR0, 4, bar0);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0, 4), bar0);

    /* A BAR below 4 KiB is raised to 4 KiB; a 64 KiB one sizes as 64 KiB. */
    cf8_write(f, s, 0, PCI_BAR0 + 8, 4, 0xffffffff);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0 + 8, 4), 0xfffff000);
    ecam_write(f, s, 0, PCI_BAR0 + 16, 4, 0xffffffff);
    assert_int_equal(ecam_read(f, s, 0, PCI_BAR0 + 16, 4), 0xffff0000);

    /* Unimplemented BARs size as 0, and so does the expansion ROM. */
    cf8_write(f, s, 0, PCI_BAR0 + 4, 4, 0xffffffff);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0 + 4, 4), 0);
    cf8_write(f, s, 0, PCI_ROM_ADDRESS, 4, 0xfffff800);
    assert_int_equal(cf8_read(f, s, 0, PCI_ROM_ADDRESS, 4), 0);

    /* BARs are fixed: another address is ignored and the assigned one reads back. */
    cf8_write(f, s, 0, PCI_BAR0, 4, 0xd0000000);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0, 4), bar0);
    /* Byte and word writes to a BAR neither size nor move it. */
    cf8_write(f, s, 0, PCI_BAR0 + 3, 1, 0xff);
    cf8_write(f, s, 0, PCI_BAR0 + 2, 2, 0xffff);
    assert_int_equal(cf8_read(f, s, 0, PCI_BAR0, 4), bar0);
}

static void test_bar_placement(void **state)
{
    struct fixture *f = *state;
    char error[256];
    static struct test_dev more[3];
    for (int i = 0; i < 3; i++) {
        test_dev_init(&more[i], (uint16_t)(0x1000 + i));
        more[i].pci.bars[1] = (struct pci_bar){0x1000000, dev_read, dev_write, &more[i]};
        assert_int_equal(pci_bus_add(f->bus, &more[i].pci, error, sizeof(error)), 0);
        assert_int_equal(more[i].pci.slot, 2 + i);
    }
    struct pci_device *devs[] = {&f->dev.pci, &more[0].pci, &more[1].pci, &more[2].pci};
    uint64_t starts[24], ends[24];
    unsigned n = 0;
    for (unsigned d = 0; d < 4; d++) {
        for (unsigned b = 0; b < PCI_BARS; b++) {
            uint64_t at = pci_bar_address(devs[d], b);
            uint64_t size = devs[d]->bars[b].size < 0x1000 ? 0x1000 : devs[d]->bars[b].size;
            if (devs[d]->bars[b].size == 0) {
                assert_int_equal(at, 0);
                continue;
            }
            assert_int_equal(at % size, 0); /* naturally aligned */
            assert_true(at >= X86_PCI_MMIO_BASE && at + size <= WINDOW_END);
            assert_int_equal(ecam_read(f, devs[d]->slot, 0, PCI_BAR0 + 4 * b, 4), at);
            for (unsigned i = 0; i < n; i++)
                assert_true(at + size <= starts[i] || at >= ends[i]); /* no overlap */
            starts[n] = at;
            ends[n++] = at + size;
        }
    }
    /* Too big for what is left of the window; not a power of two; added twice. */
    static struct test_dev big, odd;
    test_dev_init(&big, 0x2000);
    big.pci.bars[0].size = 0x20000000;
    assert_int_equal(pci_bus_add(f->bus, &big.pci, error, sizeof(error)), -ENOSPC);
    assert_non_null(strstr(error, "no room for BAR 0"));
    test_dev_init(&odd, 0x2001);
    odd.pci.bars[3].size = 0x3000;
    assert_int_equal(pci_bus_add(f->bus, &odd.pci, error, sizeof(error)), -EINVAL);
    assert_non_null(strstr(error, "BAR 3"));
    assert_int_equal(pci_bus_add(f->bus, &f->dev.pci, error, sizeof(error)), -EINVAL);
}

static void test_bus_full(void **state)
{
    struct fixture *f = *state;
    static struct pci_device devs[PCI_SLOTS];
    char error[256];
    memset(devs, 0, sizeof(devs));
    /* Slot 0 is the host bridge and slot 1 the fixture's device. */
    for (unsigned i = 0; i < PCI_SLOTS - 2; i++) {
        devs[i].vendor_id = 0x1af4;
        assert_int_equal(pci_bus_add(f->bus, &devs[i], error, sizeof(error)), 0);
        assert_int_equal(devs[i].slot, i + 2);
    }
    devs[PCI_SLOTS - 1].vendor_id = 0x1af4;
    assert_int_equal(pci_bus_add(f->bus, &devs[PCI_SLOTS - 1], error, sizeof(error)), -ENOSPC);
    assert_int_equal(ecam_read(f, 31, 0, PCI_VENDOR_ID, 2), 0x1af4);
}

static void test_memory_enable_gates_bars(void **state)
{
    struct fixture *f = *state;
    struct test_dev *d = &f->dev;
    unsigned s = slot_of(d);
    uint64_t bar = pci_bar_address(&d->pci, 0);
    uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    /* Decoding off (reset): reads all-ones, writes dropped, the device sees nothing. */
    assert_true(io_bus_read(&f->mmio, bar + 0x10, b, 4));
    assert_int_equal(le(b, 4), 0xffffffff);
    assert_true(io_bus_write(&f->mmio, bar + 0x10, b, 4));
    assert_int_equal(d->reads + d->writes, 0);

    cf8_write(f, s, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_true(io_bus_read(&f->mmio, bar + 0x10, b, 4));
    assert_int_equal(le(b, 4), 0x5a5a5a5a);
    assert_int_equal(d->reads, 1);
    assert_int_equal(d->last_offset, 0x10);
    uint8_t w[8] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
    assert_true(io_bus_write(&f->mmio, bar + 0x3ff8, w, 8));
    assert_int_equal(d->writes, 1);
    assert_int_equal(d->last_offset, 0x3ff8);
    assert_int_equal(d->last_size, 8);
    assert_memory_equal(d->last_data, w, 8);
    /* The raised BAR 2 reaches its handler up to its 4 KiB. */
    uint64_t bar2 = pci_bar_address(&d->pci, 2);
    assert_true(io_bus_read(&f->mmio, bar2 + 0xffc, b, 4));
    assert_int_equal(d->last_offset, 0xffc);

    /* A byte write of the command register's low byte turns decoding off again. */
    ecam_write(f, s, 0, PCI_COMMAND, 1, 0);
    assert_true(io_bus_read(&f->mmio, bar, b, 2));
    assert_int_equal(le(b, 2), 0xffff);
    assert_int_equal(d->reads, 2);
}

/* ---- capabilities ---- */

struct hook_log {
    struct pci_device *dev;
    int writes, reads;
    unsigned offset, size;
    uint32_t value;
    uint32_t seen_in_config; /* what pci_config_get() saw from inside the hook */
};

static void hook_write(void *opaque, unsigned offset, unsigned size, uint32_t value)
{
    struct hook_log *h = opaque;
    h->writes++;
    h->offset = offset;
    h->size = size;
    h->value = value;
    h->seen_in_config = pci_config_get(h->dev, offset, size); /* must not deadlock */
}

static void hook_read(void *opaque, unsigned offset, unsigned size, uint32_t *value)
{
    struct hook_log *h = opaque;
    h->reads++;
    if (offset == h->offset && size == 4)
        *value = 0xc0ffee00u;
}

static const struct pci_cap_ops hook_ops = {.write = hook_write, .read = hook_read};

static void test_capabilities(void **state)
{
    struct fixture *f = *state;
    static struct test_dev d;
    static struct hook_log log;
    char error[256];
    test_dev_init(&d, 0x1050);
    memset(&log, 0, sizeof(log));
    log.dev = &d.pci;
    /* virtio-style vendor capabilities: cap_len, cfg_type, bar, padding, offset, length. */
    uint8_t common[14] = {16, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0x38, 0, 0, 0};
    uint8_t odd[5] = {7, 9, 9, 9, 9};
    uint8_t window[18] = {20, 5};
    int c1 = pci_add_capability(&d.pci, PCI_CAP_ID_VENDOR, common, sizeof(common));
    int c2 = pci_add_capability(&d.pci, PCI_CAP_ID_VENDOR, odd, sizeof(odd));
    int c3 = pci_add_capability(&d.pci, PCI_CAP_ID_VENDOR, window, sizeof(window));
    assert_int_equal(c1, PCI_CAP_START);
    assert_int_equal(c2, c1 + 16);
    assert_int_equal(c3, c2 + 8); /* 7 bytes, rounded up to a dword */
    assert_int_equal(pci_capability_set_ops(&d.pci, c3, &hook_ops, &log), 0);
    assert_int_equal(pci_capability_set_ops(&d.pci, c3 + 1, &hook_ops, &log), -ENOENT);
    assert_int_equal(pci_config_set_wmask(&d.pci, (unsigned)c3 + 16, 4, 0xffffffff), 0);
    assert_int_equal(pci_config_set_wmask(&d.pci, PCI_COMMAND, 2, 0xffff), -EINVAL);
    assert_int_equal(pci_bus_add(f->bus, &d.pci, error, sizeof(error)), 0);
    assert_int_equal(pci_add_capability(&d.pci, PCI_CAP_ID_VENDOR, odd, 1), -EBUSY);
    assert_int_equal(pci_capability_set_ops(&d.pci, c3, NULL, NULL), -EBUSY);
    assert_int_equal(pci_config_set_wmask(&d.pci, (unsigned)c1, 1, 0xff), -EBUSY);

    /* Walk the list as a driver does. */
    unsigned s = d.pci.slot;
    assert_true(cf8_read(f, s, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    unsigned expect[] = {(unsigned)c1, (unsigned)c2, (unsigned)c3};
    unsigned pos = cf8_read(f, s, 0, PCI_CAPABILITY_LIST, 1), count = 0;
    while (pos) {
        assert_true(count < 3);
        assert_int_equal(pos, expect[count]);
        assert_int_equal(ecam_read(f, s, 0, pos, 1), PCI_CAP_ID_VENDOR);
        count++;
        pos = ecam_read(f, s, 0, pos + 1, 1);
    }
    assert_int_equal(count, 3);
    /* Bodies read back, and they are read-only. */
    assert_int_equal(cf8_read(f, s, 0, (unsigned)c1, 4), 0x01105009); /* 09, next 50, 16, 1 */
    assert_int_equal(cf8_read(f, s, 0, (unsigned)c1 + 4, 4), 0x00000004);
    assert_int_equal(ecam_read(f, s, 0, (unsigned)c1 + 12, 1), 0x38);
    cf8_write(f, s, 0, (unsigned)c1, 4, 0xffffffff);
    cf8_write(f, s, 0, (unsigned)c1 + 4, 4, 0xffffffff);
    assert_int_equal(cf8_read(f, s, 0, (unsigned)c1, 4), 0x01105009);
    assert_int_equal(cf8_read(f, s, 0, (unsigned)c1 + 4, 4), 0x00000004);
    assert_int_equal(ecam_read(f, s, 0, (unsigned)c2 + 2, 1), 7);
    /* No write reached the hook: those were other capabilities. */
    assert_int_equal(log.writes, 0);

    /* The hooked capability: its writable field changes, the hook sees the write, and the
     * read hook supplies live values. */
    ecam_write(f, s, 0, (unsigned)c3 + 16, 4, 0x12345678);
    assert_int_equal(log.writes, 1);
    assert_int_equal(log.offset, (unsigned)c3 + 16);
    assert_int_equal(log.size, 4);
    assert_int_equal(log.value, 0x12345678);
    assert_int_equal(log.seen_in_config, 0x12345678);
    assert_int_equal(pci_config_get(&d.pci, (unsigned)c3 + 16, 4), 0x12345678);
    assert_int_equal(cf8_read(f, s, 0, (unsigned)c3 + 16, 4), 0xc0ffee00u);
    assert_true(log.reads >= 1);
    /* A read-only byte of the hooked capability: the hook runs, the byte stays. */
    cf8_write(f, s, 0, (unsigned)c3 + 3, 1, 0x77);
    assert_int_equal(log.writes, 2);
    assert_int_equal(pci_config_get(&d.pci, (unsigned)c3 + 3, 1), 5);
}

static void test_capability_space_full(void **state)
{
    (void)state;
    static struct pci_device d;
    memset(&d, 0, sizeof(d));
    uint8_t body[62] = {0};
    /* 64-byte capabilities: three fit in 0x40..0xff. */
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, body, sizeof(body)), 0x40);
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, body, sizeof(body)), 0x80);
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, body, sizeof(body)), 0xc0);
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, body, 0), -ENOSPC);
    memset(&d, 0, sizeof(d));
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, body, 191), -ENOSPC);
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, NULL, 0), 0x40);
    for (int i = 1; i < PCI_MAX_CAPS; i++)
        assert_true(pci_add_capability(&d, PCI_CAP_ID_VENDOR, NULL, 0) > 0);
    assert_int_equal(pci_add_capability(&d, PCI_CAP_ID_VENDOR, NULL, 0), -ENOSPC);
}

/* ---- read-only fields and hostile accesses ---- */

static void test_read_only_fields(void **state)
{
    struct fixture *f = *state;
    unsigned s = slot_of(&f->dev);
    uint8_t before[PCI_CONFIG_SIZE];
    for (unsigned reg = 0; reg < PCI_CONFIG_SIZE; reg++)
        before[reg] = (uint8_t)ecam_read(f, s, 0, reg, 1);
    /* All-ones over everything except the BARs and the command register. */
    for (unsigned reg = 0; reg < PCI_CONFIG_SIZE; reg += 4)
        if (reg != PCI_COMMAND && (reg < PCI_BAR0 || reg >= PCI_BAR0 + 24))
            cf8_write(f, s, 0, reg, 4, 0xffffffff);
    for (unsigned reg = 0; reg < PCI_CONFIG_SIZE; reg++) {
        uint8_t now = (uint8_t)ecam_read(f, s, 0, reg, 1);
        if (reg == PCI_CACHE_LINE_SIZE || reg == PCI_INTERRUPT_LINE)
            assert_int_equal(now, 0xff); /* scratch registers */
        else
            assert_int_equal(now, before[reg]);
    }
    /* The command register keeps only its defined bits. */
    ecam_write(f, s, 0, PCI_COMMAND, 4, 0xffffffff); /* status half is read-only */
    assert_int_equal(ecam_read(f, s, 0, PCI_COMMAND, 2), 0x0547);
    assert_int_equal(ecam_read(f, s, 0, PCI_STATUS, 2), 0);
}

static void test_hostile_cf8(void **state)
{
    struct fixture *f = *state;
    uint8_t b[8] = {0x12, 0x34, 0x56, 0x78};
    out32(f, 0xcf8, cf8_address(0, 1, 0, 0));
    /* Byte and word accesses to the address register do not touch it and read all-ones. */
    uint8_t one = 0x01;
    assert_true(io_bus_write(&f->pio, 0xcfb, &one, 1));
    assert_true(io_bus_write(&f->pio, 0xcf8, b, 2));
    assert_true(io_bus_read(&f->pio, 0xcf9, b, 1));
    assert_int_equal(b[0], 0xff);
    assert_true(io_bus_read(&f->pio, 0xcf8, b, 2));
    assert_int_equal(le(b, 2), 0xffff);
    assert_true(io_bus_read(&f->pio, 0xcf8, b, 4));
    assert_int_equal(le(b, 4), cf8_address(0, 1, 0, 0));
    /* The reserved low bits read as zero. */
    out32(f, 0xcf8, cf8_address(0, 1, 0, 0) | 3);
    assert_true(io_bus_read(&f->pio, 0xcf8, b, 4));
    assert_int_equal(le(b, 4), cf8_address(0, 1, 0, 0));

    /* Enable bit clear: the data port is not config space. */
    out32(f, 0xcf8, cf8_address(0, 1, 0, 0) & ~0x80000000u);
    assert_true(io_bus_read(&f->pio, 0xcfc, b, 4));
    assert_int_equal(le(b, 4), 0xffffffff);
    uint8_t cmd[2] = {PCI_COMMAND_MEMORY, 0};
    out32(f, 0xcf8, cf8_address(0, 1, 0, PCI_COMMAND) & ~0x80000000u);
    assert_true(io_bus_write(&f->pio, 0xcfc, cmd, 2));
    assert_int_equal(ecam_read(f, 1, 0, PCI_COMMAND, 2), 0);
    /* Other buses do not exist. */
    for (unsigned bus = 1; bus < 256; bus += 37) {
        out32(f, 0xcf8, cf8_address(bus, 1, 0, 0));
        assert_true(io_bus_read(&f->pio, 0xcfc, b, 4));
        assert_int_equal(le(b, 4), 0xffffffff);
        out32(f, 0xcf8, cf8_address(bus, 1, 0, PCI_COMMAND));
        assert_true(io_bus_write(&f->pio, 0xcfc, cmd, 2));
    }
    assert_int_equal(ecam_read(f, 1, 0, PCI_COMMAND, 2), 0);
    /* Data port sub-accesses land at the right byte; an unaligned word inside the dword too. */
    out32(f, 0xcf8, cf8_address(0, 1, 0, 0));
    assert_true(io_bus_read(&f->pio, 0xcfe, b, 2));
    assert_int_equal(le(b, 2), 0x1042);
    assert_true(io_bus_read(&f->pio, 0xcfd, b, 1));
    assert_int_equal(b[0], 0x1a);
    assert_true(io_bus_read(&f->pio, 0xcfd, b, 2));
    assert_int_equal(le(b, 2), 0x421a);
    /* Accesses straddling the data port's end are not claimed (and so read all-ones). */
    assert_false(io_bus_read(&f->pio, 0xcfe, b, 4));
    assert_int_equal(le(b, 4), 0xffffffff);
}

static void test_hostile_ecam(void **state)
{
    struct fixture *f = *state;
    uint8_t b[8];
    /* Qword and dword-crossing accesses are not config cycles. */
    assert_true(io_bus_read(&f->mmio, ecam_addr(1, 0, 0), b, 8));
    assert_int_equal(le(b, 4), 0xffffffff);
    assert_int_equal(le(b + 4, 4), 0xffffffff);
    assert_int_equal(ecam_read(f, 1, 0, 3, 2), 0xffff);
    assert_int_equal(ecam_read(f, 1, 0, 2, 4), 0xffffffff);
    ecam_write(f, 1, 0, PCI_COMMAND, 8, 0xffffffff);
    ecam_write(f, 1, 0, PCI_COMMAND + 1, 4, 0xffffffff);
    assert_int_equal(ecam_read(f, 1, 0, PCI_COMMAND, 2), 0);
    /* Extended config space reads zero for a device, ignores writes. */
    for (unsigned reg = 0x100; reg < 0x1000; reg += 0x1fc) {
        assert_int_equal(ecam_read(f, 1, 0, reg, 4), 0);
        ecam_write(f, 1, 0, reg, 4, 0xffffffff);
        assert_int_equal(ecam_read(f, 1, 0, reg, 4), 0);
    }
    assert_int_equal(ecam_read(f, 1, 0, 0xffc, 4), 0);
    assert_int_equal(ecam_read(f, 1, 0, 0xfff, 1), 0);
    /* The last bytes of ECAM, and past its end. */
    assert_int_equal(ecam_read(f, 31, 7, 0xffc, 4), 0xffffffff);
    assert_false(io_bus_read(&f->mmio, ECAM + PCI_ECAM_BUS_SIZE - 2, b, 4));
    assert_false(io_bus_read(&f->mmio, ECAM + PCI_ECAM_BUS_SIZE, b, 4));
    /* The direct entry points reject what the handlers never pass. */
    pci_bus_config_read(f->bus, 99, 0, 0, b, 4);
    assert_int_equal(le(b, 4), 0xffffffff);
    pci_bus_config_read(f->bus, 1, 9, 0, b, 4);
    assert_int_equal(le(b, 4), 0xffffffff);
    pci_bus_config_read(f->bus, 1, 0, 0x1000, b, 4);
    assert_int_equal(le(b, 4), 0xffffffff);
    pci_bus_config_read(f->bus, 1, 0, 0, b, 3);
    assert_int_equal(le(b, 3), 0xffffff);
    pci_bus_config_write(f->bus, 1, 0, 0x100000, b, 4);
    assert_int_equal(pci_config_get(&f->dev.pci, 0x100, 4), 0);
    assert_int_equal(pci_config_get(&f->dev.pci, 3, 2), 0);
}

/* Random garbage at every mechanism must not crash, and cannot change identity or BARs. */
static void test_random_accesses(void **state)
{
    struct fixture *f = *state;
    uint32_t id = ecam_read(f, 1, 0, 0, 4);
    uint32_t class = ecam_read(f, 1, 0, 8, 4);
    uint64_t bar[PCI_BARS];
    for (unsigned i = 0; i < PCI_BARS; i++)
        bar[i] = pci_bar_address(&f->dev.pci, i);
    static const unsigned sizes[] = {1, 2, 4, 8};
    uint32_t seed = 12345;
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t r = seed >> 1;
        uint8_t b[8];
        for (int k = 0; k < 8; k++)
            b[k] = (uint8_t)(r >> (k * 3));
        unsigned size = sizes[r & 3];
        switch ((r >> 2) & 3) {
        case 0: /* ECAM, anywhere in the first two slots */
            io_bus_write(&f->mmio, ECAM + ((r >> 4) & 0xffff), b, size);
            break;
        case 1:
            io_bus_read(&f->mmio, ECAM + ((r >> 4) & 0xfffff), b, size);
            break;
        case 2: /* a random address latch, then data */
            out32(f, 0xcf8, r ^ (r << 13));
            io_bus_write(&f->pio, 0xcfc + ((r >> 6) & 3), b, size <= 4 ? size : 4);
            break;
        default:
            io_bus_read(&f->pio, 0xcf8 + ((r >> 6) & 7), b, size <= 4 ? size : 4);
            break;
        }
    }
    assert_int_equal(ecam_read(f, 1, 0, 0, 4), id);
    assert_int_equal(ecam_read(f, 1, 0, 8, 4), class);
    for (unsigned i = 0; i < PCI_BARS; i++) {
        cf8_write(f, 1, 0, PCI_BAR0 + 4 * i, 4, 0);
        assert_int_equal(cf8_read(f, 1, 0, PCI_BAR0 + 4 * i, 4), bar[i]);
    }
    assert_int_equal(ecam_read(f, 0, 0, 0, 4), 0x00081b36);
}

static void test_new_errors(void **state)
{
    (void)state;
    struct io_bus pio, mmio;
    io_bus_init(&pio);
    io_bus_init(&mmio);
    char error[256] = "";
    struct pci_bus_layout bad = layout;
    bad.window_size = 0;
    assert_null(pci_bus_new(&pio, &mmio, &bad, error, sizeof(error)));
    assert_non_null(strstr(error, "invalid layout"));
    bad = layout;
    bad.window_size = 0x40000001; /* ends past 4 GiB: no room for 32-bit BARs */
    assert_null(pci_bus_new(&pio, &mmio, &bad, error, sizeof(error)));
    bad.window_base = 0x100000000ull;
    bad.window_size = 0x1000;
    assert_null(pci_bus_new(&pio, &mmio, &bad, error, sizeof(error)));
    assert_int_equal(mmio.count + pio.count, 0);
    /* ECAM ports only (no port bus), then a clash with it. */
    struct pci_bus *bus = pci_bus_new(NULL, &mmio, &layout, error, sizeof(error));
    assert_non_null(bus);
    assert_int_equal(pio.count, 0);
    struct io_bus mmio2;
    io_bus_init(&mmio2);
    assert_int_equal(io_bus_register(&mmio2, X86_PCI_ECAM_BASE + 0x1000, 4, NULL, NULL, NULL), 0);
    assert_null(pci_bus_new(&pio, &mmio2, &layout, error, sizeof(error)));
    assert_non_null(strstr(error, "ECAM"));
    pci_bus_free(bus);
    pci_bus_free(NULL);
    io_bus_destroy(&pio);
    io_bus_destroy(&mmio);
    io_bus_destroy(&mmio2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mechanisms_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bus_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_enable_gates_bars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
        cmocka_unit_test(test_capability_space_full),
        cmocka_unit_test_setup_teardown(test_read_only_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_cf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_ecam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_accesses, setup, teardown),
        cmocka_unit_test(test_new_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
