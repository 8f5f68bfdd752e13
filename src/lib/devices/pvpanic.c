/*
 * pvpanic: reads advertise the events the guest may report; a write with PANICKED set reports
 * a panic. CRASH_LOADED (a kdump kernel takes over) needs no action from the VMM. Stateless,
 * so no lock.
 */
#include "devices/pvpanic.h"

#include <stdint.h>
#include <stdlib.h>

#include "arch/x86_64/layout.h"

struct pvpanic {
    struct machine_sink sink;
};

/* The range is one port wide, so the bus only ever passes single-byte accesses. */
static void pvpanic_io_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    (void)opaque;
    (void)offset;
    (void)size;
    data[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
}

static void pvpanic_io_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct pvpanic *p = opaque;

    (void)offset;
    (void)size;
    if ((data[0] & PVPANIC_PANICKED) && p->sink.event)
        p->sink.event(p->sink.ctx, MACHINE_EVENT_PANIC);
}

struct pvpanic *pvpanic_new(const struct machine_sink *sink)
{
    struct pvpanic *p;

    if (!sink)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (p)
        p->sink = *sink;
    return p;
}

void pvpanic_free(struct pvpanic *pvpanic)
{
    free(pvpanic);
}

int pvpanic_register(struct pvpanic *pvpanic, struct io_bus *pio)
{
    return io_bus_register(pio, X86_PVPANIC_PORT, 1, pvpanic_io_read, pvpanic_io_write, pvpanic);
}
