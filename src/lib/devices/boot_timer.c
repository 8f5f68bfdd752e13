/*
 * Boot timer. The only state is two "already fired" atomic flags (boot done, ready), so two
 * vCPUs racing to write a magic still produce exactly one event each without a lock.
 */
#include "devices/boot_timer.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "cove/cove.h"

struct boot_timer {
    struct machine_sink sink;
    atomic_bool fired;
    atomic_bool ready;
};

/* One port wide: the bus only passes single-byte writes. Reads are left to the bus (0xff). */
static void boot_timer_io_write(void *opaque, uint64_t offset, const uint8_t *data,
                                unsigned size)
{
    struct boot_timer *t = opaque;

    (void)offset;
    (void)size;
    if (!t->sink.event)
        return;
    if (data[0] == COVE_READY_MAGIC) {
        if (!atomic_exchange(&t->ready, true))
            t->sink.event(t->sink.ctx, MACHINE_EVENT_AGENT_READY);
        return;
    }
    if ((data[0] != COVE_BOOT_MAGIC && data[0] != COVE_BOOT_MAGIC_AGENT) ||
        atomic_exchange(&t->fired, true))
        return;
    t->sink.event(t->sink.ctx, data[0] == COVE_BOOT_MAGIC ? MACHINE_EVENT_BOOT_DONE
                                                          : MACHINE_EVENT_BOOT_DONE_AGENT);
}

struct boot_timer *boot_timer_new(const struct machine_sink *sink)
{
    struct boot_timer *t;

    if (!sink)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->sink = *sink;
    atomic_init(&t->fired, false);
    atomic_init(&t->ready, false);
    return t;
}

void boot_timer_free(struct boot_timer *timer)
{
    free(timer);
}

int boot_timer_register(struct boot_timer *timer, struct io_bus *pio)
{
    return io_bus_register(pio, COVE_BOOT_PORT, 1, NULL, boot_timer_io_write, timer);
}
