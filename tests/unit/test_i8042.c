/* i8042 controller, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "devices/i8042.h"
#include "fake_machine.h"

#define DATA X86_I8042_DATA_PORT
#define CMD X86_I8042_COMMAND_PORT
#define OBF 0x01
#define IBF 0x02

struct fixture {
    struct fake_machine fm;
    struct i8042 *kbd;
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    fm_init(&f->fm, FM_NO_IRQS); /* the i8042 has no interrupt to raise */
    f->kbd = i8042_new(&f->fm.sink);
    if (!f->kbd || i8042_register(f->kbd, &f->fm.bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    i8042_free(f->kbd);
    fm_destroy(&f->fm);
    test_free(f);
    return 0;
}

static void test_idle_status(void **state)
{
    struct fixture *f = *state;

    /* Linux's kb_wait polls for IBF clear before sending 0xFE: it must never stick. */
    assert_int_equal(fm_in8(&f->fm, CMD) & (OBF | IBF), 0);
    assert_int_equal(fm_in8(&f->fm, CMD) & 0x04, 0x04); /* system flag: POST passed */
}

static void test_pulse_reset(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, CMD, 0xfe);
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 1);
    fm_out8(&f->fm, CMD, 0xff); /* pulses no line */
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 1);
    assert_int_equal(fm_events_except(&f->fm, MACHINE_EVENT_RESET), 0);
}

static void test_self_test(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, CMD, 0xaa);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, OBF);
    assert_int_equal(fm_in8(&f->fm, DATA), 0x55);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, 0);

    fm_out8(&f->fm, CMD, 0xab);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, OBF);
    assert_int_equal(fm_in8(&f->fm, DATA), 0x00);
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 0);
}

static void test_command_byte(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, CMD, 0x60);
    fm_out8(&f->fm, DATA, 0x21);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, 0); /* the parameter is consumed, not echoed */
    fm_out8(&f->fm, CMD, 0x20);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, OBF);
    assert_int_equal(fm_in8(&f->fm, DATA), 0x21);
    assert_int_equal(fm_in8(&f->fm, CMD) & 0x04, 0x00); /* system flag follows command byte bit 2 */

    fm_out8(&f->fm, CMD, 0xad); /* disable keyboard: shows in the command byte, nothing else */
    fm_out8(&f->fm, CMD, 0xa7);
    assert_int_equal(fm_in8(&f->fm, CMD) & OBF, 0);
    fm_out8(&f->fm, CMD, 0x20);
    assert_int_equal(fm_in8(&f->fm, DATA), 0x31);
    fm_out8(&f->fm, CMD, 0xae);
    fm_out8(&f->fm, CMD, 0xa8);
    fm_out8(&f->fm, CMD, 0x20);
    assert_int_equal(fm_in8(&f->fm, DATA), 0x01);
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 0);
}

static void test_output_port_reset(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, CMD, 0xd1);
    fm_out8(&f->fm, DATA, 0xdf); /* A20 on, reset line high: no reset */
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 0);
    fm_out8(&f->fm, CMD, 0xd0);
    assert_int_equal(fm_in8(&f->fm, DATA), 0xdf);
    fm_out8(&f->fm, CMD, 0xd1);
    fm_out8(&f->fm, DATA, 0xde); /* bit 0 clear: reset */
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 1);
    fm_out8(&f->fm, DATA, 0xde); /* no pending command: goes to the absent keyboard */
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 1);
}

static void test_wide_access_unclaimed(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[2] = {0xfe, 0xfe};

    assert_false(io_bus_write(&f->fm.bus, CMD, buf, 2));
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 0);
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
