/*
 * PCI bus 0: config space emulation behind mechanism #1 and ECAM, and BAR placement.
 *
 * One mutex per bus guards the config state of every device on it: config cycles are rare
 * (enumeration, driver probe, MSI-X enable), so nothing is gained by finer locking. BAR
 * accesses, the hot path, take no bus lock: the memory-enable bit is an atomic read.
 * Capability hooks run after the lock is dropped, so they may read config space back.
 */
#include "bus/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The mechanism #1 address register. */
#define CF8_ENABLE 0x80000000u
#define CF8_BUS(a) (((a) >> 16) & 0xffu)
#define CF8_SLOT(a) (((a) >> 11) & 0x1fu)
#define CF8_FUNCTION(a) (((a) >> 8) & 0x7u)
#define CF8_REGISTER(a) ((a) & 0xfcu)
#define CF8_RESERVED_LOW 0x3u /* bits 1:0 read as zero */

/* ECAM: bus 0 only, so an offset is slot:5, function:3, register:12. */
#define ECAM_SLOT(o) ((unsigned)((o) >> 15) & 0x1fu)
#define ECAM_FUNCTION(o) ((unsigned)((o) >> 12) & 0x7u)
#define ECAM_REGISTER(o) ((unsigned)(o) & 0xfffu)

/* A 32-bit, non-prefetchable memory BAR has all four type bits clear. */
#define BAR_TYPE_BITS 0xfu
#define BAR_MAX_SIZE 0x80000000ULL /* the largest a 32-bit BAR can decode */
#define BAR_LIMIT 0x100000000ULL   /* a 32-bit BAR lies below 4 GiB */

/* Guest-writable bits of the header: IO, memory, bus master, parity response, SERR#,
 * INTx disable; the cache line size and interrupt line registers are scratch bytes. */
#define COMMAND_WMASK 0x0547u

struct pci_bus {
    pthread_mutex_t lock; /* guards every device's config state and the slot table */
    atomic_uint cf8;      /* the mechanism #1 address latch */
    struct io_bus *mmio;
    struct pci_bus_layout layout;
    uint64_t window_next; /* BAR placement is a bump allocator over the window */
    struct pci_device *slots[PCI_SLOTS];
    struct pci_device host_bridge;
};

static int fail(char *error, size_t error_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *error, size_t error_len, int err, const char *fmt, ...)
{
    if (error && error_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error, error_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static uint32_t get_le(const uint8_t *p, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size && i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, unsigned size, uint32_t v)
{
    for (unsigned i = 0; i < size && i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void fill(uint8_t *data, unsigned size, uint8_t byte)
{
    memset(data, byte, size <= 8 ? size : 8);
}

/* Config cycles are at most a dword and never cross one: that is all a PCI bus carries. */
static bool valid_access(unsigned offset, unsigned size)
{
    if (size != 1 && size != 2 && size != 4)
        return false;
    return offset < PCI_ECAM_FUNCTION_SIZE && (offset & 3) + size <= 4;
}

/* Call with the bus lock held. NULL for an empty slot or a function other than 0. */
static struct pci_device *device_at(struct pci_bus *bus, unsigned slot, unsigned function)
{
    if (slot >= PCI_SLOTS || function != 0)
        return NULL;
    return bus->slots[slot];
}

/* The capability with hooks that [offset, offset + size) touches, or NULL. */
static const struct pci_cap *hooked_cap(const struct pci_device *dev, unsigned offset,
                                        unsigned size)
{
    for (unsigned i = 0; i < dev->cap_count; i++) {
        const struct pci_cap *c = &dev->caps[i];
        if (c->ops && offset < (unsigned)c->offset + c->len && offset + size > c->offset)
            return c;
    }
    return NULL;
}

/* ---- BARs ---- */

static void store_bar(struct pci_device *dev, unsigned i)
{
    const struct pci_bar_state *b = &dev->bar_state[i];
    uint32_t v = 0;
    if (b->size)
        v = b->sizing ? (uint32_t)~(b->size - 1) : (uint32_t)b->addr;
    put_le(dev->config + PCI_BAR0 + 4 * i, 4, v & ~BAR_TYPE_BITS);
}

/*
 * The sizing protocol on a fixed BAR: an all-ones write makes reads return the size mask,
 * any other write (the OS restoring or "moving" it) brings back the assigned address.
 */
static void bar_write(struct pci_device *dev, unsigned i, uint32_t value)
{
    struct pci_bar_state *b = &dev->bar_state[i];
    if (b->size == 0)
        return;
    uint32_t mask = (uint32_t)~(b->size - 1) & ~BAR_TYPE_BITS;
    b->sizing = (value & mask) == mask;
    store_bar(dev, i);
}

static void bar_read_gated(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    const struct pci_bar_state *b = opaque;
    const struct pci_bar *bar = &b->dev->bars[b->index];
    if (!atomic_load(&b->dev->memory_enabled) || !bar->read) {
        fill(data, size, 0xff);
        return;
    }
    bar->read(bar->opaque, offset, data, size);
}

static void bar_write_gated(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    const struct pci_bar_state *b = opaque;
    const struct pci_bar *bar = &b->dev->bars[b->index];
    if (atomic_load(&b->dev->memory_enabled) && bar->write)
        bar->write(bar->opaque, offset, data, size);
}

/* ---- config space ---- */

/* Applies a guest write to dev's config state; returns the capability to notify, if any. */
static const struct pci_cap *device_write(struct pci_device *dev, unsigned offset,
                                          const uint8_t *data, unsigned size)
{
    if (offset >= PCI_BAR0 && offset < PCI_BAR0 + 4 * PCI_BARS) {
        /* Accesses never cross a dword, so this one lies in one BAR; only whole ones count. */
        if (size == 4)
            bar_write(dev, (offset - PCI_BAR0) / 4, get_le(data, 4));
        return NULL;
    }
    for (unsigned i = 0; i < size; i++) {
        uint8_t w = dev->wmask[offset + i];
        dev->config[offset + i] = (uint8_t)((dev->config[offset + i] & ~w) | (data[i] & w));
    }
    if (offset < PCI_COMMAND + 2 && offset + size > PCI_COMMAND)
        atomic_store(&dev->memory_enabled, (dev->config[PCI_COMMAND] & PCI_COMMAND_MEMORY) != 0);
    return hooked_cap(dev, offset, size);
}

void pci_bus_config_read(struct pci_bus *bus, unsigned slot, unsigned function, unsigned offset,
                         uint8_t *data, unsigned size)
{
    if (!valid_access(offset, size)) {
        fill(data, size, 0xff);
        return;
    }
    const struct pci_cap *cap = NULL;
    pthread_mutex_lock(&bus->lock);
    struct pci_device *dev = device_at(bus, slot, function);
    if (!dev) {
        fill(data, size, 0xff); /* no device answers: master abort */
    } else if (offset >= PCI_CONFIG_SIZE) {
        fill(data, size, 0); /* extended space of a conventional device */
    } else {
        memcpy(data, dev->config + offset, size);
        cap = hooked_cap(dev, offset, size);
    }
    pthread_mutex_unlock(&bus->lock);
    if (cap && cap->ops->read) {
        uint32_t v = get_le(data, size);
        cap->ops->read(cap->opaque, offset, size, &v);
        put_le(data, size, v);
    }
}

void pci_bus_config_write(struct pci_bus *bus, unsigned slot, unsigned function,
                          unsigned offset, const uint8_t *data, unsigned size)
{
    if (!valid_access(offset, size))
        return;
    const struct pci_cap *cap = NULL;
    pthread_mutex_lock(&bus->lock);
    struct pci_device *dev = device_at(bus, slot, function);
    if (dev && offset < PCI_CONFIG_SIZE)
        cap = device_write(dev, offset, data, size);
    pthread_mutex_unlock(&bus->lock);
    if (cap && cap->ops->write)
        cap->ops->write(cap->opaque, offset, size, get_le(data, size));
}

/* ---- mechanism #1 (ports 0xcf8..0xcff) and ECAM ---- */

/* The address register exists only as a dword; byte and word accesses are other I/O. */
static void cf8_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct pci_bus *bus = opaque;
    if (offset != 0 || size != 4) {
        fill(data, size, 0xff);
        return;
    }
    put_le(data, 4, atomic_load(&bus->cf8));
}

static void cf8_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct pci_bus *bus = opaque;
    if (offset == 0 && size == 4)
        atomic_store(&bus->cf8, get_le(data, 4) & ~CF8_RESERVED_LOW);
}

/* The config address the latch selects, or false when it selects nothing on this bus. */
static bool cfc_target(struct pci_bus *bus, uint64_t offset, unsigned *slot, unsigned *function,
                       unsigned *reg)
{
    uint32_t a = atomic_load(&bus->cf8);
    if (!(a & CF8_ENABLE) || CF8_BUS(a) != 0)
        return false;
    *slot = CF8_SLOT(a);
    *function = CF8_FUNCTION(a);
    *reg = CF8_REGISTER(a) + (unsigned)offset;
    return true;
}

static void cfc_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    unsigned slot, function, reg;
    if (!cfc_target(opaque, offset, &slot, &function, &reg)) {
        fill(data, size, 0xff);
        return;
    }
    pci_bus_config_read(opaque, slot, function, reg, data, size);
}

static void cfc_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    unsigned slot, function, reg;
    if (cfc_target(opaque, offset, &slot, &function, &reg))
        pci_bus_config_write(opaque, slot, function, reg, data, size);
}

static void ecam_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    pci_bus_config_read(opaque, ECAM_SLOT(offset), ECAM_FUNCTION(offset), ECAM_REGISTER(offset),
                        data, size);
}

static void ecam_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    pci_bus_config_write(opaque, ECAM_SLOT(offset), ECAM_FUNCTION(offset),
                         ECAM_REGISTER(offset), data, size);
}

/* ---- building the bus ---- */

static bool is_power_of_two(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* Sizes the device's BARs; fails before anything is placed or registered. */
static int size_bars(struct pci_device *dev, char *error, size_t error_len)
{
    for (unsigned i = 0; i < PCI_BARS; i++) {
        uint64_t size = dev->bars[i].size;
        if (size && (!is_power_of_two(size) || size > BAR_MAX_SIZE))
            return fail(error, error_len, -EINVAL,
                        "PCI device %04x:%04x: BAR %u size 0x%llx is not a power of two up to 2 GiB",
                        dev->vendor_id, dev->device_id, i, (unsigned long long)size);
        if (size && size < PCI_BAR_MIN_SIZE)
            size = PCI_BAR_MIN_SIZE;
        dev->bar_state[i] = (struct pci_bar_state){.dev = dev, .index = i, .size = size};
    }
    return 0;
}

/* Natural alignment makes the size mask decode the whole BAR, as on hardware. */
static int place_bars(struct pci_bus *bus, struct pci_device *dev, char *error, size_t error_len)
{
    uint64_t next = bus->window_next;
    uint64_t end = bus->layout.window_base + bus->layout.window_size;
    for (unsigned i = 0; i < PCI_BARS; i++) {
        struct pci_bar_state *b = &dev->bar_state[i];
        if (!b->size)
            continue;
        uint64_t at = (next + b->size - 1) & ~(b->size - 1);
        if (at < next || at > end || b->size > end - at)
            return fail(error, error_len, -ENOSPC,
                        "PCI device %04x:%04x: no room for BAR %u (0x%llx bytes) in the MMIO window",
                        dev->vendor_id, dev->device_id, i, (unsigned long long)b->size);
        b->addr = at;
        next = at + b->size;
    }
    bus->window_next = next;
    return 0;
}

static int register_bars(struct pci_bus *bus, struct pci_device *dev, char *error,
                         size_t error_len)
{
    for (unsigned i = 0; i < PCI_BARS; i++) {
        struct pci_bar_state *b = &dev->bar_state[i];
        if (!b->size)
            continue;
        int r = io_bus_register(bus->mmio, b->addr, b->size, bar_read_gated, bar_write_gated, b);
        if (r < 0)
            return fail(error, error_len, r, "PCI device %04x:%04x: BAR %u at 0x%llx: %s",
                        dev->vendor_id, dev->device_id, i, (unsigned long long)b->addr,
                        strerror(-r));
    }
    return 0;
}

/* The type-0 header at reset: memory decoding off, capabilities as added. */
static void write_header(struct pci_device *dev)
{
    uint8_t *c = dev->config, *w = dev->wmask;
    memset(c, 0, PCI_CAP_START);
    memset(w, 0, PCI_CAP_START);
    put_le(c + PCI_VENDOR_ID, 2, dev->vendor_id);
    put_le(c + PCI_DEVICE_ID, 2, dev->device_id);
    put_le(c + PCI_STATUS, 2, dev->cap_count ? PCI_STATUS_CAP_LIST : 0);
    c[PCI_REVISION_ID] = dev->revision;
    put_le(c + PCI_CLASS_PROG, 3, dev->class_code);
    put_le(c + PCI_SUBSYSTEM_VENDOR_ID, 2, dev->subsystem_vendor_id);
    put_le(c + PCI_SUBSYSTEM_ID, 2, dev->subsystem_id);
    c[PCI_CAPABILITY_LIST] = dev->cap_count ? dev->caps[0].offset : 0;
    /* Interrupt pin 0: no INTx, devices interrupt through MSI-X only. */
    put_le(w + PCI_COMMAND, 2, COMMAND_WMASK);
    w[PCI_CACHE_LINE_SIZE] = 0xff;
    w[PCI_INTERRUPT_LINE] = 0xff;
    for (unsigned i = 0; i < PCI_BARS; i++)
        store_bar(dev, i);
    atomic_store(&dev->memory_enabled, false);
}

static int free_slot(const struct pci_bus *bus)
{
    for (unsigned s = 0; s < PCI_SLOTS; s++)
        if (!bus->slots[s])
            return (int)s;
    return -1;
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *dev, char *error, size_t error_len)
{
    if (dev->bus)
        return fail(error, error_len, -EINVAL, "PCI device %04x:%04x added twice",
                    dev->vendor_id, dev->device_id);
    int slot = free_slot(bus);
    if (slot < 0)
        return fail(error, error_len, -ENOSPC, "PCI bus full: %d slots", PCI_SLOTS);
    int r = size_bars(dev, error, error_len);
    if (r == 0)
        r = place_bars(bus, dev, error, error_len);
    if (r < 0)
        return r;
    write_header(dev);
    r = register_bars(bus, dev, error, error_len);
    if (r < 0)
        return r;
    pthread_mutex_lock(&bus->lock);
    dev->slot = (unsigned)slot;
    dev->bus = bus;
    bus->slots[slot] = dev;
    pthread_mutex_unlock(&bus->lock);
    return 0;
}

static int register_config_access(struct pci_bus *bus, struct io_bus *pio, char *error,
                                  size_t error_len)
{
    const struct pci_bus_layout *l = &bus->layout;
    int r = 0;
    if (pio) {
        r = io_bus_register(pio, l->config_port, 4, cf8_read, cf8_write, bus);
        if (r == 0)
            r = io_bus_register(pio, l->config_port + 4u, 4, cfc_read, cfc_write, bus);
        if (r < 0)
            return fail(error, error_len, r, "PCI config ports 0x%x: %s", l->config_port,
                        strerror(-r));
    }
    r = io_bus_register(bus->mmio, l->ecam_base, PCI_ECAM_BUS_SIZE, ecam_read, ecam_write, bus);
    if (r < 0)
        return fail(error, error_len, r, "PCI ECAM at 0x%llx: %s",
                    (unsigned long long)l->ecam_base, strerror(-r));
    return 0;
}

static int add_host_bridge(struct pci_bus *bus, char *error, size_t error_len)
{
    struct pci_device *hb = &bus->host_bridge;
    hb->vendor_id = PCI_HOST_BRIDGE_VENDOR;
    hb->device_id = PCI_HOST_BRIDGE_DEVICE;
    hb->subsystem_vendor_id = PCI_HOST_BRIDGE_VENDOR;
    hb->subsystem_id = PCI_HOST_BRIDGE_DEVICE;
    hb->class_code = PCI_CLASS_HOST_BRIDGE;
    return pci_bus_add(bus, hb, error, error_len);
}

struct pci_bus *pci_bus_new(struct io_bus *pio, struct io_bus *mmio,
                            const struct pci_bus_layout *layout, char *error, size_t error_len)
{
    const struct pci_bus_layout *l = layout;
    /* BARs are 32-bit, so the whole window must be below 4 GiB. */
    if (!mmio || !l || l->window_size == 0 || l->window_base >= BAR_LIMIT ||
        l->window_size > BAR_LIMIT - l->window_base) {
        fail(error, error_len, -EINVAL, "PCI bus: invalid layout");
        return NULL;
    }
    struct pci_bus *bus = calloc(1, sizeof(*bus));
    if (!bus) {
        fail(error, error_len, -ENOMEM, "PCI bus: out of memory");
        return NULL;
    }
    pthread_mutex_init(&bus->lock, NULL);
    bus->mmio = mmio;
    bus->layout = *l;
    bus->window_next = l->window_base;
    if (register_config_access(bus, pio, error, error_len) < 0 ||
        add_host_bridge(bus, error, error_len) < 0) {
        /* Ranges already registered stay pointed at the bus, so it must outlive them: the
         * caller abandons the whole machine, io buses included, before freeing it. */
        pci_bus_free(bus);
        return NULL;
    }
    return bus;
}

void pci_bus_free(struct pci_bus *bus)
{
    if (!bus)
        return;
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

/* ---- device-side helpers ---- */

int pci_add_capability(struct pci_device *dev, uint8_t id, const void *body, size_t len)
{
    if (dev->bus)
        return -EBUSY;
    if (dev->cap_count == PCI_MAX_CAPS)
        return -ENOSPC;
    unsigned at = PCI_CAP_START;
    if (dev->cap_count) {
        const struct pci_cap *last = &dev->caps[dev->cap_count - 1];
        at = ((unsigned)last->offset + last->len + 3u) & ~3u; /* pointers are dword aligned */
    }
    if (at >= PCI_CONFIG_SIZE || len > PCI_CONFIG_SIZE - at - 2)
        return -ENOSPC;
    dev->config[at] = id;
    dev->config[at + 1] = 0;
    if (len)
        memcpy(dev->config + at + 2, body, len);
    memset(dev->wmask + at, 0, len + 2);
    if (dev->cap_count)
        dev->config[dev->caps[dev->cap_count - 1].offset + 1] = (uint8_t)at;
    dev->caps[dev->cap_count++] = (struct pci_cap){.offset = (uint8_t)at, .len = (uint8_t)(len + 2)};
    return (int)at;
}

int pci_capability_set_ops(struct pci_device *dev, int offset, const struct pci_cap_ops *ops,
                           void *opaque)
{
    if (dev->bus)
        return -EBUSY;
    for (unsigned i = 0; i < dev->cap_count; i++) {
        if (dev->caps[i].offset == offset) {
            dev->caps[i].ops = ops;
            dev->caps[i].opaque = opaque;
            return 0;
        }
    }
    return -ENOENT;
}

int pci_config_set_wmask(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask)
{
    if (dev->bus)
        return -EBUSY;
    /* The header's writable bits are the bus's business (BARs, command). */
    if (!valid_access(offset, size) || offset < PCI_CAP_START || offset >= PCI_CONFIG_SIZE)
        return -EINVAL;
    put_le(dev->wmask + offset, size, mask);
    return 0;
}

uint32_t pci_config_get(struct pci_device *dev, unsigned offset, unsigned size)
{
    if (!valid_access(offset, size) || offset >= PCI_CONFIG_SIZE)
        return 0;
    struct pci_bus *bus = dev->bus;
    if (bus)
        pthread_mutex_lock(&bus->lock);
    uint32_t v = get_le(dev->config + offset, size);
    if (bus)
        pthread_mutex_unlock(&bus->lock);
    return v;
}

uint64_t pci_bar_address(const struct pci_device *dev, unsigned bar)
{
    return bar < PCI_BARS ? dev->bar_state[bar].addr : 0;
}

/* ---- snapshots ---- */

#define TAG_PCI SNAP_TAG('p', 'c', 'i', ' ')

void pci_bus_save(struct pci_bus *bus, struct snap_writer *w)
{
    pthread_mutex_lock(&bus->lock);
    snap_begin(w, TAG_PCI);
    snap_put_u32(w, atomic_load(&bus->cf8));
    for (unsigned slot = 0; slot < PCI_SLOTS; slot++) {
        const struct pci_device *dev = bus->slots[slot];
        if (!dev)
            continue;
        snap_put_u8(w, (uint8_t)slot);
        snap_put_bytes(w, dev->config, PCI_CONFIG_SIZE);
        for (unsigned i = 0; i < PCI_BARS; i++)
            snap_put_u8(w, dev->bar_state[i].sizing);
    }
    snap_put_u8(w, 0xff); /* no more slots */
    snap_end(w);
    pthread_mutex_unlock(&bus->lock);
}

static void restore_device(struct pci_device *dev, const uint8_t *config, const uint8_t *sizing)
{
    for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++)
        dev->config[i] = (uint8_t)((dev->config[i] & ~dev->wmask[i]) | (config[i] & dev->wmask[i]));
    for (unsigned i = 0; i < PCI_BARS; i++) {
        dev->bar_state[i].sizing = sizing[i] != 0;
        store_bar(dev, i);
    }
    atomic_store(&dev->memory_enabled, (dev->config[PCI_COMMAND] & PCI_COMMAND_MEMORY) != 0);
}

bool pci_bus_restore(struct pci_bus *bus, struct snap_reader *r)
{
    struct snap_reader s;
    snap_section(r, TAG_PCI, &s);
    uint32_t cf8 = snap_get_u32(&s);
    bool seen[PCI_SLOTS] = {false};
    pthread_mutex_lock(&bus->lock);
    for (;;) {
        uint8_t slot = snap_get_u8(&s);
        if (slot == 0xff || !snap_reader_ok(&s, false))
            break;
        uint8_t config[PCI_CONFIG_SIZE], sizing[PCI_BARS];
        snap_get_bytes(&s, config, sizeof(config));
        snap_get_bytes(&s, sizing, sizeof(sizing));
        if (slot >= PCI_SLOTS || !bus->slots[slot] || seen[slot]) {
            snap_reject(&s);
            break;
        }
        seen[slot] = true;
        restore_device(bus->slots[slot], config, sizing);
    }
    bool every_slot = true;
    for (unsigned slot = 0; slot < PCI_SLOTS; slot++)
        every_slot &= seen[slot] == (bus->slots[slot] != NULL);
    pthread_mutex_unlock(&bus->lock);
    if (!snap_reader_ok(&s, true) || !every_slot)
        return snap_reject(r);
    atomic_store(&bus->cf8, cf8);
    return true;
}
