/* ACPI sleep and reset registers, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "devices/acpi_pm.h"
#include "fake_machine.h"

#define SLP(typ) (uint8_t)(X86_ACPI_SLP_EN | ((typ) << X86_ACPI_SLP_TYP_SHIFT))

struct fixture {
    struct fake_machine fm;
    struct acpi_pm *pm;
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    fm_init(&f->fm, FM_NO_IRQS);
    f->pm = acpi_pm_new(&f->fm.sink);
    if (!f->pm || acpi_pm_register(f->pm, &f->fm.bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    acpi_pm_free(f->pm);
    fm_destroy(&f->fm);
    test_free(f);
    return 0;
}

static void test_s5_powers_off(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, X86_ACPI_SLEEP_CONTROL_PORT, SLP(X86_ACPI_S5_SLP_TYP));
    assert_int_equal(f->fm.events[MACHINE_EVENT_POWEROFF], 1);
    assert_int_equal(fm_events_except(&f->fm, MACHINE_EVENT_POWEROFF), 0);
}

static void test_other_sleep_writes_ignored(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, X86_ACPI_SLEEP_CONTROL_PORT, SLP(3)); /* S3: unsupported */
    fm_out8(&f->fm, X86_ACPI_SLEEP_CONTROL_PORT, SLP(1));
    fm_out8(&f->fm, X86_ACPI_SLEEP_CONTROL_PORT, SLP(X86_ACPI_S5_SLP_TYP) & ~X86_ACPI_SLP_EN);
    fm_out8(&f->fm, X86_ACPI_SLEEP_STATUS_PORT, 0xff);
    /* The right value in the wrong register. */
    fm_out8(&f->fm, X86_ACPI_RESET_PORT, SLP(X86_ACPI_S5_SLP_TYP));
    assert_int_equal(f->fm.event_total, 0);
}

static void test_reset_register(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, X86_ACPI_RESET_PORT, 0x00);
    fm_out8(&f->fm, X86_ACPI_RESET_PORT, 0x06);
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 0);
    fm_out8(&f->fm, X86_ACPI_RESET_PORT, X86_ACPI_RESET_VALUE);
    assert_int_equal(f->fm.events[MACHINE_EVENT_RESET], 1);
    assert_int_equal(fm_events_except(&f->fm, MACHINE_EVENT_RESET), 0);
}

static void test_reads_zero(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(fm_in8(&f->fm, X86_ACPI_SLEEP_STATUS_PORT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_sleep_writes_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_zero, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
