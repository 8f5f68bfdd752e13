/*
 * An address-decoding bus, used for both the port I/O space and the MMIO space.
 *
 * Devices register ranges before the vCPUs start; afterwards the table is only read, so
 * vCPU threads dispatch concurrently without a lock. Each device serialises its own state.
 */
#ifndef COVE_IO_BUS_H
#define COVE_IO_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* offset is relative to the registered base; size is 1, 2, 4 or 8 bytes. */
typedef void (*io_read_fn)(void *opaque, uint64_t offset, uint8_t *data, unsigned size);
typedef void (*io_write_fn)(void *opaque, uint64_t offset, const uint8_t *data, unsigned size);

struct io_range {
    uint64_t base;
    uint64_t len;
    io_read_fn read;   /* NULL: reads as all ones */
    io_write_fn write; /* NULL: writes ignored */
    void *opaque;
};

struct io_bus {
    struct io_range *ranges; /* sorted by base, never overlapping */
    size_t count;
    size_t capacity;
};

void io_bus_init(struct io_bus *bus);
void io_bus_destroy(struct io_bus *bus);
/* Returns 0, -EEXIST when the range overlaps one already registered, -EINVAL, or -ENOMEM. */
int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_read_fn read,
                    io_write_fn write, void *opaque);
/*
 * Routes one access. Returns false when no device claims the address; an unclaimed read
 * fills data with 0xff, like an empty bus.
 */
bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, unsigned size);
bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, unsigned size);

#endif
