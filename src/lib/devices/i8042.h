/*
 * A minimal i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command), with no
 * keyboard or mouse behind it. It exists so a guest can reset the machine the PC way
 * (command 0xFE, or output port bit 0 cleared through command 0xD1) and so the controller
 * probes a kernel may run get sane answers.
 */
#ifndef COVE_DEVICES_I8042_H
#define COVE_DEVICES_I8042_H

#include "bus/io_bus.h"
#include "devices/machine_events.h"
#include "snapshot/stream.h"

struct i8042;

/* sink is copied; its event() runs on a vCPU thread without the device lock held. */
struct i8042 *i8042_new(const struct machine_sink *sink);
void i8042_free(struct i8042 *i8042);
/* Registers both ports; returns the first io_bus_register() error. */
int i8042_register(struct i8042 *i8042, struct io_bus *pio);

/* The controller's registers, for a snapshot; restore returns false when damaged. */
void i8042_save(struct i8042 *i8042, struct snap_writer *w);
bool i8042_restore(struct i8042 *i8042, struct snap_reader *r);

#endif
