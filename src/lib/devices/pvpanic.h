/*
 * The pvpanic ISA device (QEMU's interface, driven by Linux's pvpanic driver) at
 * X86_PVPANIC_PORT: the guest kernel reports a panic with a one-byte write.
 */
#ifndef COVE_DEVICES_PVPANIC_H
#define COVE_DEVICES_PVPANIC_H

#include "bus/io_bus.h"
#include "devices/machine_events.h"

#define PVPANIC_PANICKED 0x01
#define PVPANIC_CRASH_LOADED 0x02

struct pvpanic;

/* sink is copied; its event() runs on the writing vCPU's thread. */
struct pvpanic *pvpanic_new(const struct machine_sink *sink);
void pvpanic_free(struct pvpanic *pvpanic);
int pvpanic_register(struct pvpanic *pvpanic, struct io_bus *pio);

#endif
