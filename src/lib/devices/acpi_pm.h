/*
 * Hardware-reduced ACPI power management: the FADT's sleep control, sleep status and reset
 * registers (one byte each at X86_ACPI_SLEEP_CONTROL_PORT, _STATUS_PORT, X86_ACPI_RESET_PORT).
 * S5 powers off, the reset value resets; no other sleep state is supported.
 */
#ifndef COVE_DEVICES_ACPI_PM_H
#define COVE_DEVICES_ACPI_PM_H

#include "bus/io_bus.h"
#include "devices/machine_events.h"

struct acpi_pm;

/* sink is copied; its event() runs on the writing vCPU's thread. */
struct acpi_pm *acpi_pm_new(const struct machine_sink *sink);
void acpi_pm_free(struct acpi_pm *pm);
/* Registers the three registers as one 3-port range. */
int acpi_pm_register(struct acpi_pm *pm, struct io_bus *pio);

#endif
