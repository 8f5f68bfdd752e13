/* i8042 controller, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "devices/i8042.h"

#define DATA X86_I8042_DATA_PORT
#define CMD X86_I8042_COMMAND_PORT
#define OBF 0x01
#define IBF 0x02

struct fixture {
    int resets, other_events;
    struct machine_sink sink;
    struct io_bus bus;
    struct i8042 *kbd;
};

static void fake_set_irq(void *ctx, unsigned gsi, int level)
{
    (void)ctx;
    (void)gsi;
    (void)level;
    fail_msg("the i8042 has no interrupt to raise");
}

static void fake_event(void *ctx, enum machine_event event)
{
    struct fixture *f = ctx;

    if (event == MACHINE_EVENT_RESET)
        f->resets++;
    else
        f->other_events++;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    f->sink = (struct machine_sink){fake_set_irq, fake_event, f};
    io_bus_init(&f->bus);
    f->kbd = i8042_new(&f->sink);
    if (!f->kbd || i8042_register(f->kbd, &f->bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    i8042_free(f->kbd);
    io_bus_destroy(&f->bus);
    test_free(f);
    return 0;
}

static void out8(struct fixture *f, uint16_t port, uint8_t val)
{
    assert_true(io_bus_write(&f->bus, port, &val, 1));
}

static uint8_t in8(struct fixture *f, uint16_t port)
{
    uint8_t val;

    assert_true(io_bus_read(&f->bus, port, &val, 1));
    return val;
}

static void test_idle_status(void **state)
{
    struct fixture *f = *state;

    /* Linux's kb_wait polls for IBF clear before sending 0xFE: it must never stick. */
    assert_int_equal(in8(f, CMD) & (OBF | IBF), 0);
    assert_int_equal(in8(f, CMD) & 0x04, 0x04); /* system flag: POST passed */
}

static void test_pulse_reset(void **state)
{
    struct fixture *f = *state;

    out8(f, CMD, 0xfe);
    assert_int_equal(f->resets, 1);
    out8(f, CMD, 0xff); /* pulses no line */
    assert_int_equal(f->resets, 1);
    assert_int_equal(f->other_events, 0);
}

static void test_self_test(void **state)
{
    struct fixture *f = *state;

    out8(f, CMD, 0xaa);
    assert_int_equal(in8(f, CMD) & OBF, OBF);
    assert_int_equal(in8(f, DATA), 0x55);
    assert_int_equal(in8(f, CMD) & OBF, 0);

    out8(f, CMD, 0xab);
    assert_int_equal(in8(f, CMD) & OBF, OBF);
    assert_int_equal(in8(f, DATA), 0x00);
    assert_int_equal(f->resets, 0);
}

static void test_command_byte(void **state)
{
    struct fixture *f = *state;

    out8(f, CMD, 0x60);
    out8(f, DATA, 0x21);
    assert_int_equal(in8(f, CMD) & OBF, 0); /* the parameter is consumed, not echoed */
    out8(f, CMD, 0x20);
    assert_int_equal(in8(f, CMD) & OBF, OBF);
    assert_int_equal(in8(f, DATA), 0x21);
    assert_int_equal(in8(f, CMD) & 0x04, 0x00); /* system flag follows command byte bit 2 */

    out8(f, CMD, 0xad); /* disable keyboard: shows in the command byte, nothing else */
    out8(f, CMD, 0xa7);
    assert_int_equal(in8(f, CMD) & OBF, 0);
    out8(f, CMD, 0x20);
    assert_int_equal(in8(f, DATA), 0x31);
    out8(f, CMD, 0xae);
    out8(f, CMD, 0xa8);
    out8(f, CMD, 0x20);
    assert_int_equal(in8(f, DATA), 0x01);
    assert_int_equal(f->resets, 0);
}

static void test_output_port_reset(void **state)
{
    struct fixture *f = *state;

    out8(f, CMD, 0xd1);
    out8(f, DATA, 0xdf); /* A20 on, reset line high: no reset */
    assert_int_equal(f->resets, 0);
    out8(f, CMD, 0xd0);
    assert_int_equal(in8(f, DATA), 0xdf);
    out8(f, CMD, 0xd1);
    out8(f, DATA, 0xde); /* bit 0 clear: reset */
    assert_int_equal(f->resets, 1);
    out8(f, DATA, 0xde); /* no pending command: goes to the absent keyboard */
    assert_int_equal(f->resets, 1);
}

static void test_wide_access_unclaimed(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[2] = {0xfe, 0xfe};

    assert_false(io_bus_write(&f->bus, CMD, buf, 2));
    assert_int_equal(f->resets, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pulse_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_test, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_port_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wide_access_unclaimed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
