/*
 * io_bus: registration rules, dispatch, and a machine-wide hostile-input run that throws
 * random accesses at every device on a real bus.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/io_bus.h"
#include "cove/cove.h"
#include "devices/acpi_pm.h"
#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "fake_machine.h"

struct access_log {
    int reads, writes;
    uint64_t offset;
    unsigned size;
    uint8_t written[8];
};

static void log_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct access_log *log = opaque;

    log->reads++;
    log->offset = offset;
    log->size = size;
    for (unsigned i = 0; i < size; i++)
        data[i] = (uint8_t)(0xa0 + offset + i);
}

static void log_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct access_log *log = opaque;

    log->writes++;
    log->offset = offset;
    log->size = size;
    memcpy(log->written, data, size);
}

static void test_overlap_rejected(void **state)
{
    struct io_bus bus;
    struct access_log log = {0};

    (void)state;
    io_bus_init(&bus);
    assert_int_equal(io_bus_register(&bus, 0x10, 0x10, log_read, log_write, &log), 0);
    assert_int_equal(io_bus_register(&bus, 0x18, 0x10, log_read, log_write, &log), -EEXIST);
    assert_int_equal(io_bus_register(&bus, 0x08, 0x09, log_read, log_write, &log), -EEXIST);
    assert_int_equal(io_bus_register(&bus, 0x1f, 0x01, log_read, log_write, &log), -EEXIST);
    assert_int_equal(io_bus_register(&bus, 0x00, 0x100, log_read, log_write, &log), -EEXIST);
    assert_int_equal(io_bus_register(&bus, 0x10, 0x10, log_read, log_write, &log), -EEXIST);
    /* Touching neighbours are fine: ranges are half-open. */
    assert_int_equal(io_bus_register(&bus, 0x00, 0x10, log_read, log_write, &log), 0);
    assert_int_equal(io_bus_register(&bus, 0x20, 0x10, log_read, log_write, &log), 0);
    assert_int_equal(bus.count, 3);
    io_bus_destroy(&bus);
    assert_int_equal(bus.count, 0);
    assert_null(bus.ranges);
}

static void test_invalid_ranges(void **state)
{
    struct io_bus bus;

    (void)state;
    io_bus_init(&bus);
    assert_int_equal(io_bus_register(&bus, 0x10, 0, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(io_bus_register(&bus, UINT64_MAX, 2, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(io_bus_register(&bus, UINT64_MAX - 3, 5, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(io_bus_register(&bus, UINT64_MAX - 3, 3, NULL, NULL, NULL), 0);
    assert_int_equal(bus.count, 1);
    io_bus_destroy(&bus);
}

static void test_dispatch_offsets(void **state)
{
    struct io_bus bus;
    struct access_log a = {0}, b = {0};
    uint8_t data[8];
    const uint8_t out[4] = {1, 2, 3, 4};

    (void)state;
    io_bus_init(&bus);
    assert_int_equal(io_bus_register(&bus, 0x3f8, 8, log_read, log_write, &a), 0);
    assert_int_equal(io_bus_register(&bus, 0x70, 2, log_read, log_write, &b), 0);

    assert_true(io_bus_read(&bus, 0x3fb, data, 2));
    assert_int_equal(a.reads, 1);
    assert_int_equal(a.offset, 3);
    assert_int_equal(a.size, 2);
    assert_int_equal(data[0], 0xa3);
    assert_int_equal(data[1], 0xa4);
    assert_int_equal(b.reads, 0);

    assert_true(io_bus_write(&bus, 0x71, out, 1));
    assert_int_equal(b.writes, 1);
    assert_int_equal(b.offset, 1);
    assert_int_equal(b.written[0], 1);

    assert_true(io_bus_write(&bus, 0x3fc, out, 4));
    assert_int_equal(a.offset, 4);
    assert_memory_equal(a.written, out, 4);
    io_bus_destroy(&bus);
}

static void test_unclaimed_and_straddling(void **state)
{
    struct io_bus bus;
    struct access_log a = {0};
    uint8_t data[8] = {0};
    const uint8_t out[8] = {0};

    (void)state;
    io_bus_init(&bus);
    assert_int_equal(io_bus_register(&bus, 0x70, 2, log_read, log_write, &a), 0);

    assert_false(io_bus_read(&bus, 0x72, data, 4));
    assert_memory_equal(data, "\xff\xff\xff\xff\x00", 5);
    assert_false(io_bus_write(&bus, 0x6f, out, 1));
    /* Partly inside the range: the device must never see offset + size past its length. */
    assert_false(io_bus_read(&bus, 0x71, data, 2));
    assert_false(io_bus_write(&bus, 0x70, out, 4));
    assert_false(io_bus_read(&bus, 0x70, data, 3)); /* not a valid size */
    assert_int_equal(a.reads + a.writes, 0);
    io_bus_destroy(&bus);
}

static void test_null_handlers(void **state)
{
    struct io_bus bus;
    uint8_t data[2] = {0, 0};

    (void)state;
    io_bus_init(&bus);
    assert_int_equal(io_bus_register(&bus, 0x440, 1, NULL, NULL, NULL), 0);
    assert_true(io_bus_read(&bus, 0x440, data, 1));
    assert_int_equal(data[0], 0xff);
    assert_int_equal(data[1], 0);
    assert_true(io_bus_write(&bus, 0x440, data, 1));
    io_bus_destroy(&bus);
}

/* Registering out of order, past the initial capacity, still routes every address right. */
static void test_many_ranges_sorted(void **state)
{
    struct io_bus bus;
    struct access_log logs[64] = {{0}};
    uint8_t data;

    (void)state;
    io_bus_init(&bus);
    for (unsigned i = 0; i < 64; i++) {
        unsigned slot = (i * 37) % 64; /* a permutation of 0..63 */
        assert_int_equal(io_bus_register(&bus, 0x1000 + slot * 0x10, 4, log_read, log_write,
                                         &logs[slot]), 0);
    }
    for (size_t i = 1; i < bus.count; i++)
        assert_true(bus.ranges[i - 1].base < bus.ranges[i].base);
    for (unsigned slot = 0; slot < 64; slot++) {
        assert_true(io_bus_read(&bus, 0x1000 + slot * 0x10 + 2, &data, 1));
        assert_int_equal(logs[slot].reads, 1);
        assert_int_equal(logs[slot].offset, 2);
        assert_false(io_bus_read(&bus, 0x1000 + slot * 0x10 + 4, &data, 1));
    }
    io_bus_destroy(&bus);
}

/* --- hostile input against the whole port space ------------------------------------------ */

struct machine {
    struct fake_machine fm;
    struct uart *uart;
    struct i8042 *i8042;
    struct rtc *rtc;
    struct acpi_pm *pm;
    struct pvpanic *pvpanic;
    struct boot_timer *boot;
};

static void machine_build(struct machine *m, int out_fd)
{
    const struct machine_sink *sink = &m->fm.sink;

    fm_init(&m->fm, 0);
    m->uart = uart_new(sink, 4, out_fd);
    m->i8042 = i8042_new(sink);
    m->rtc = rtc_new();
    m->pm = acpi_pm_new(sink);
    m->pvpanic = pvpanic_new(sink);
    m->boot = boot_timer_new(sink);
    assert_int_equal(uart_register(m->uart, &m->fm.bus), 0);
    assert_int_equal(i8042_register(m->i8042, &m->fm.bus), 0);
    assert_int_equal(rtc_register(m->rtc, &m->fm.bus), 0);
    assert_int_equal(acpi_pm_register(m->pm, &m->fm.bus), 0);
    assert_int_equal(pvpanic_register(m->pvpanic, &m->fm.bus), 0);
    assert_int_equal(boot_timer_register(m->boot, &m->fm.bus), 0);
    /* A second device on the same ports is refused. */
    assert_int_equal(uart_register(m->uart, &m->fm.bus), -EEXIST);
}

static void machine_destroy(struct machine *m)
{
    uart_free(m->uart);
    i8042_free(m->i8042);
    rtc_free(m->rtc);
    acpi_pm_free(m->pm);
    pvpanic_free(m->pvpanic);
    boot_timer_free(m->boot);
    fm_destroy(&m->fm);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const uint16_t hostile_ports[] = {0x3f8, 0x60, 0x64, 0x70, 0x3c0, 0x505, 0x440};

static void hostile_step(struct machine *m, uint64_t *seed)
{
    uint64_t r = xorshift(seed);
    static const unsigned sizes[] = {1, 2, 4, 8};
    unsigned size = sizes[r & 3];
    uint64_t port = hostile_ports[(r >> 2) % 7] + ((r >> 8) & 7);
    uint8_t data[8];

    memcpy(data, &r, sizeof(data));
    data[0] = (uint8_t)(r >> 40);
    if ((r >> 16) & 1)
        io_bus_write(&m->fm.bus, port, data, size);
    else
        io_bus_read(&m->fm.bus, port, data, size);
    if (((r >> 17) & 63) == 0) {
        static const uint8_t input[800];
        uart_receive(m->uart, input, size * 100); /* host input racing the guest's reads */
    }
}

static void test_hostile_input(void **state)
{
    struct machine m;
    uint64_t seed = 0x5eed5eed12345678ULL;
    int out_fd = open("/dev/null", O_WRONLY);
    size_t before;

    (void)state;
    assert_true(out_fd >= 0);
    machine_build(&m, out_fd);
    for (int i = 0; i < 2000; i++) /* warm-up: let every lazily allocated libc path settle */
        hostile_step(&m, &seed);
    before = mallinfo2().uordblks;
    for (int i = 0; i < 200000; i++)
        hostile_step(&m, &seed);
    assert_int_equal(mallinfo2().uordblks, before);
    assert_true(uart_rx_space(m.uart) <= UART_RX_CAPACITY);
    assert_true(m.fm.irq_calls > 0);
    assert_true(m.fm.event_total > 0);
    machine_destroy(&m);
    close(out_fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlap_rejected),
        cmocka_unit_test(test_invalid_ranges),
        cmocka_unit_test(test_dispatch_offsets),
        cmocka_unit_test(test_unclaimed_and_straddling),
        cmocka_unit_test(test_null_handlers),
        cmocka_unit_test(test_many_ranges_sorted),
        cmocka_unit_test(test_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
