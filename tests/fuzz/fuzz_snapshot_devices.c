/*
 * libFuzzer target for the snapshot readers of the legacy devices (UART, i8042, CMOS) and the
 * stream they read through (snapshot/stream.c). A snapshot file lives in the user's cache and
 * may be damaged in any way, so each restore must refuse what it cannot use without reading
 * past the input, and a device restored from whatever it accepted must then behave: the guest
 * side of each is driven through its ports afterwards (ASan catches a buffer index the
 * snapshot bent). The input is copied so that it ends where the allocation ends.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "snapshot/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_irq(void *ctx, unsigned gsi, int level)
{
    (void)ctx, (void)gsi, (void)level;
}

static void no_event(void *ctx, enum machine_event event)
{
    (void)ctx, (void)event;
}

static const struct machine_sink sink = {.set_irq = no_irq, .event = no_event};

/* Every register of every port, read and written, as a guest poking around would. */
static void drive_ports(struct io_bus *bus, uint16_t first, unsigned count, uint8_t value)
{
    for (int round = 0; round < 2; round++)
        for (unsigned port = first; port < first + count; port++) {
            uint8_t byte = 0;
            io_bus_read(bus, port, &byte, 1);
            byte = value;
            io_bus_write(bus, port, &byte, 1);
        }
    for (int i = 0; i < 64; i++) { /* drain the UART's receive buffer */
        uint8_t byte;
        io_bus_read(bus, X86_COM1_PORT, &byte, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    struct io_bus bus;
    io_bus_init(&bus);
    struct uart *uart = uart_new(&sink, X86_COM1_IRQ, -1);
    struct i8042 *kbd = i8042_new(&sink);
    struct rtc *rtc = rtc_new();
    if (uart && kbd && rtc && uart_register(uart, &bus) == 0 && i8042_register(kbd, &bus) == 0 &&
        rtc_register(rtc, &bus) == 0) {
        /* Each device reads its own section; the later ones also get whatever follows. */
        struct snap_reader r;
        snap_reader_init(&r, copy, size);
        bool ok = uart_restore(uart, &r);
        ok = i8042_restore(kbd, &r) && ok;
        ok = rtc_restore(rtc, &r) && ok;
        if (ok != snap_reader_ok(&r, false))
            abort(); /* a device said yes to a stream that failed */
        uint8_t value = size ? copy[size - 1] : 0;
        drive_ports(&bus, X86_COM1_PORT, 8, value);
        drive_ports(&bus, X86_I8042_DATA_PORT, 1, value);
        drive_ports(&bus, X86_I8042_COMMAND_PORT, 1, value);
        drive_ports(&bus, X86_CMOS_PORT, 2, value);
    }
    rtc_free(rtc);
    i8042_free(kbd);
    uart_free(uart);
    io_bus_destroy(&bus);
    free(copy);
    return 0;
}
