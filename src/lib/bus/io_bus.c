/*
 * The address-decoding bus: a sorted, non-overlapping array of ranges searched by binary
 * search. Registration happens before the vCPUs run, so lookups take no lock.
 */
#include "bus/io_bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IO_BUS_INITIAL_CAPACITY 8

void io_bus_init(struct io_bus *bus)
{
    bus->ranges = NULL;
    bus->count = 0;
    bus->capacity = 0;
}

void io_bus_destroy(struct io_bus *bus)
{
    free(bus->ranges);
    io_bus_init(bus);
}

/* Index of the first range whose base is above addr (0..count). */
static size_t upper_bound(const struct io_bus *bus, uint64_t addr)
{
    size_t lo = 0, hi = bus->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bus->ranges[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Ranges are half-open [base, base + len); registration guarantees base + len does not wrap. */
static bool range_contains(const struct io_range *r, uint64_t addr)
{
    return addr >= r->base && addr - r->base < r->len;
}

static int grow(struct io_bus *bus)
{
    size_t cap = bus->capacity ? bus->capacity * 2 : IO_BUS_INITIAL_CAPACITY;
    struct io_range *ranges;

    if (cap < bus->capacity || cap > SIZE_MAX / sizeof(*ranges))
        return -ENOMEM;
    ranges = realloc(bus->ranges, cap * sizeof(*ranges));
    if (!ranges)
        return -ENOMEM;
    bus->ranges = ranges;
    bus->capacity = cap;
    return 0;
}

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_read_fn read,
                    io_write_fn write, void *opaque)
{
    size_t pos;
    uint64_t last;

    if (len == 0 || len > UINT64_MAX - base)
        return -EINVAL;
    last = base + len - 1;
    pos = upper_bound(bus, base);
    /* Only the neighbours can overlap: the one below may extend into us, the one above may
     * start inside us. */
    if (pos > 0 && range_contains(&bus->ranges[pos - 1], base))
        return -EEXIST;
    if (pos < bus->count && bus->ranges[pos].base <= last)
        return -EEXIST;
    if (bus->count == bus->capacity) {
        int err = grow(bus);
        if (err)
            return err;
    }
    memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->count - pos) * sizeof(bus->ranges[0]));
    bus->ranges[pos] = (struct io_range){
        .base = base, .len = len, .read = read, .write = write, .opaque = opaque};
    bus->count++;
    return 0;
}

static bool valid_size(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

/*
 * The range that holds the whole access, or NULL. An access that straddles a range's end is
 * treated as unclaimed so a device never sees offset + size beyond what it registered.
 */
static const struct io_range *lookup(const struct io_bus *bus, uint64_t addr, unsigned size)
{
    size_t pos;
    const struct io_range *r;

    if (!valid_size(size))
        return NULL;
    pos = upper_bound(bus, addr);
    if (pos == 0)
        return NULL;
    r = &bus->ranges[pos - 1];
    if (!range_contains(r, addr) || r->len - (addr - r->base) < size)
        return NULL;
    return r;
}

bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, unsigned size)
{
    const struct io_range *r = lookup(bus, addr, size);

    if (!r || !r->read) {
        /* Sizes above 8 never reach here from KVM; cap the fill so a bad size cannot
         * scribble past the largest buffer a caller can have meant. */
        memset(data, 0xff, size <= 8 ? size : 8);
        return r != NULL;
    }
    r->read(r->opaque, addr - r->base, data, size);
    return true;
}

bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, unsigned size)
{
    const struct io_range *r = lookup(bus, addr, size);

    if (!r)
        return false;
    if (r->write)
        r->write(r->opaque, addr - r->base, data, size);
    return true;
}
