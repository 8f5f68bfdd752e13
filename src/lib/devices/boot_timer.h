/*
 * The boot timer port (COVE_BOOT_PORT): the guest writes COVE_BOOT_MAGIC once userspace is
 * up, and the VMM timestamps it. Only the first magic write is reported.
 */
#ifndef COVE_DEVICES_BOOT_TIMER_H
#define COVE_DEVICES_BOOT_TIMER_H

#include "bus/io_bus.h"
#include "devices/machine_events.h"

struct boot_timer;

/* sink is copied; its event() runs on the writing vCPU's thread, so take the timestamp there. */
struct boot_timer *boot_timer_new(const struct machine_sink *sink);
void boot_timer_free(struct boot_timer *timer);
int boot_timer_register(struct boot_timer *timer, struct io_bus *pio);

#endif
