/*
 * ACPI sleep/reset registers. The device holds no mutable state (the registers read as 0:
 * sleep control is write-only, WAK_STS never sets because the guest never wakes from sleep),
 * so it needs no lock.
 */
#include "devices/acpi_pm.h"

#include <stdint.h>
#include <stdlib.h>

#include "arch/x86_64/layout.h"

#define PM_BASE X86_ACPI_SLEEP_CONTROL_PORT
#define PM_NR_PORTS 3
#define OFF_SLEEP_CONTROL (X86_ACPI_SLEEP_CONTROL_PORT - PM_BASE)
#define OFF_RESET (X86_ACPI_RESET_PORT - PM_BASE)

_Static_assert(X86_ACPI_SLEEP_STATUS_PORT == PM_BASE + 1 && X86_ACPI_RESET_PORT == PM_BASE + 2,
               "acpi_pm registers one contiguous range");

struct acpi_pm {
    struct machine_sink sink;
};

static void fire(const struct acpi_pm *pm, enum machine_event ev)
{
    if (pm->sink.event)
        pm->sink.event(pm->sink.ctx, ev);
}

static void write_sleep_control(const struct acpi_pm *pm, uint8_t val)
{
    unsigned typ = (val & X86_ACPI_SLP_TYP_MASK) >> X86_ACPI_SLP_TYP_SHIFT;

    /* Only S5 is offered in the DSDT; any other SLP_TYP is ignored rather than half-done. */
    if ((val & X86_ACPI_SLP_EN) && typ == X86_ACPI_S5_SLP_TYP)
        fire(pm, MACHINE_EVENT_POWEROFF);
}

static void write_reg(const struct acpi_pm *pm, uint64_t reg, uint8_t val)
{
    if (reg == OFF_SLEEP_CONTROL)
        write_sleep_control(pm, val);
    else if (reg == OFF_RESET && val == X86_ACPI_RESET_VALUE)
        fire(pm, MACHINE_EVENT_RESET);
    /* sleep status: write-one-to-clear bits that are never set */
}

static void pm_io_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    (void)opaque;
    (void)offset;
    for (unsigned i = 0; i < size; i++)
        data[i] = 0;
}

/* Wide accesses act as consecutive byte writes, as the bus splits them. */
static void pm_io_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        write_reg(opaque, offset + i, data[i]);
}

struct acpi_pm *acpi_pm_new(const struct machine_sink *sink)
{
    struct acpi_pm *pm;

    if (!sink)
        return NULL;
    pm = calloc(1, sizeof(*pm));
    if (pm)
        pm->sink = *sink;
    return pm;
}

void acpi_pm_free(struct acpi_pm *pm)
{
    free(pm);
}

int acpi_pm_register(struct acpi_pm *pm, struct io_bus *pio)
{
    return io_bus_register(pio, PM_BASE, PM_NR_PORTS, pm_io_read, pm_io_write, pm);
}
