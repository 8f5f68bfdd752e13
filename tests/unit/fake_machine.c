/* See fake_machine.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_machine.h"

static void fm_set_irq(void *ctx, unsigned gsi, int level)
{
    struct fake_machine *fm = ctx;

    if (fm->flags & FM_NO_IRQS)
        fail_msg("the device drove interrupt line %u to %d; it has none to raise", gsi, level);
    if (gsi >= FM_GSIS)
        fail_msg("interrupt line %u does not exist", gsi);
    if (level && !fm->level[gsi])
        fm->rises[gsi]++;
    fm->level[gsi] = level;
    fm->last_gsi = gsi;
    fm->irq_calls++;
}

static void fm_event(void *ctx, enum machine_event event)
{
    struct fake_machine *fm = ctx;

    if (fm->flags & FM_NO_EVENTS)
        fail_msg("the device raised machine event %d", (int)event);
    if ((unsigned)event < FM_EVENT_KINDS)
        fm->events[event]++;
    fm->event_total++;
}

void fm_init(struct fake_machine *fm, unsigned flags)
{
    memset(fm, 0, sizeof(*fm));
    fm->sink = (struct machine_sink){fm_set_irq, fm_event, fm};
    fm->flags = flags;
    io_bus_init(&fm->bus);
}

void fm_destroy(struct fake_machine *fm)
{
    io_bus_destroy(&fm->bus);
}

int fm_events_except(const struct fake_machine *fm, enum machine_event kind)
{
    return fm->event_total - fm->events[kind];
}

void fm_out8(struct fake_machine *fm, uint16_t port, uint8_t val)
{
    assert_true(io_bus_write(&fm->bus, port, &val, 1));
}

uint8_t fm_in8(struct fake_machine *fm, uint16_t port)
{
    uint8_t val = 0xa5; /* fixed, so a device that forgets to fill data is caught, not random */

    assert_true(io_bus_read(&fm->bus, port, &val, 1));
    return val;
}
