/*
 * How devices reach the VMM: interrupt lines, and machine-level events (power off, reset,
 * panic, boot done) that end or annotate the VM's life. Devices never touch KVM or the VM
 * object directly, which keeps them testable with a fake sink.
 */
#ifndef COVE_MACHINE_EVENTS_H
#define COVE_MACHINE_EVENTS_H

#include <stdint.h>

enum machine_event {
    MACHINE_EVENT_POWEROFF,  /* ACPI S5 written to the sleep control register */
    MACHINE_EVENT_RESET,     /* i8042 pulse reset line, ACPI reset register */
    MACHINE_EVENT_PANIC,     /* pvpanic: guest kernel panicked */
    MACHINE_EVENT_BOOT_DONE, /* the guest wrote the boot-timer magic */
    MACHINE_EVENT_BOOT_DONE_AGENT, /* the same, from an init that will say READY later */
    MACHINE_EVENT_AGENT_READY, /* the init waits idle for requests: snapshot time */
};

struct machine_sink {
    /* Drives interrupt line gsi (IOAPIC pin) to level 0 or 1. Edge devices pulse 1 then 0. */
    void (*set_irq)(void *ctx, unsigned gsi, int level);
    void (*event)(void *ctx, enum machine_event event);
    void *ctx;
};

#endif
