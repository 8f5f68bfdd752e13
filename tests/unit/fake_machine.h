/*
 * The harness the device unit tests share: a port bus and a fake machine sink that records
 * what a device asks of the machine (interrupt levels and machine events), plus byte-wide
 * port accessors that fail the test when no device claims the access.
 *
 * Embed a struct fake_machine in the test's fixture, fm_init() it before creating the
 * devices (they take &fm.sink and register on &fm.bus) and fm_destroy() it after freeing them.
 * The struct must not move while devices hold &fm.sink.
 */
#ifndef COVE_TEST_FAKE_MACHINE_H
#define COVE_TEST_FAKE_MACHINE_H

#include <stdint.h>

#include "bus/io_bus.h"
#include "devices/machine_events.h"

#define FM_GSIS 24 /* IOAPIC input pins */
/* One past the last enum machine_event: keep in step with machine_events.h. */
#define FM_EVENT_KINDS (MACHINE_EVENT_AGENT_READY + 1)

/* fm_init flags: fail the test when the device under test does what it never should. */
enum {
    FM_NO_IRQS = 1 << 0,   /* any set_irq call */
    FM_NO_EVENTS = 1 << 1, /* any machine event */
};

struct fake_machine {
    struct machine_sink sink; /* ctx is the fake_machine itself */
    struct io_bus bus;
    unsigned flags;

    int events[FM_EVENT_KINDS]; /* per enum machine_event */
    int event_total;            /* every event, including any outside the enum */

    int level[FM_GSIS]; /* current level of each line */
    int rises[FM_GSIS]; /* 0 -> 1 transitions: what an edge-triggered IOAPIC delivers */
    int irq_calls;      /* every set_irq call, on any line */
    unsigned last_gsi;  /* the line of the latest set_irq call */
};

void fm_init(struct fake_machine *fm, unsigned flags);
void fm_destroy(struct fake_machine *fm);

/* Events seen other than kind: those a test expects never to happen. */
int fm_events_except(const struct fake_machine *fm, enum machine_event kind);

/* One-byte port accesses that assert a device claimed the port. */
void fm_out8(struct fake_machine *fm, uint16_t port, uint8_t val);
uint8_t fm_in8(struct fake_machine *fm, uint16_t port);

#endif
