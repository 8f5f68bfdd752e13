/* ACPI sleep and reset registers, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "devices/acpi_pm.h"

#define SLP(typ) (uint8_t)(X86_ACPI_SLP_EN | ((typ) << X86_ACPI_SLP_TYP_SHIFT))

struct fixture {
    int poweroffs, resets, others;
    struct machine_sink sink;
    struct io_bus bus;
    struct acpi_pm *pm;
};

static void fake_event(void *ctx, enum machine_event event)
{
    struct fixture *f = ctx;

    if (event == MACHINE_EVENT_POWEROFF)
        f->poweroffs++;
    else if (event == MACHINE_EVENT_RESET)
        f->resets++;
    else
        f->others++;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    f->sink = (struct machine_sink){NULL, fake_event, f};
    io_bus_init(&f->bus);
    f->pm = acpi_pm_new(&f->sink);
    if (!f->pm || acpi_pm_register(f->pm, &f->bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    acpi_pm_free(f->pm);
    io_bus_destroy(&f->bus);
    test_free(f);
    return 0;
}

static void out8(struct fixture *f, uint16_t port, uint8_t val)
{
    assert_true(io_bus_write(&f->bus, port, &val, 1));
}

static void test_s5_powers_off(void **state)
{
    struct fixture *f = *state;

    out8(f, X86_ACPI_SLEEP_CONTROL_PORT, SLP(X86_ACPI_S5_SLP_TYP));
    assert_int_equal(f->poweroffs, 1);
    assert_int_equal(f->resets + f->others, 0);
}

static void test_other_sleep_writes_ignored(void **state)
{
    struct fixture *f = *state;

    out8(f, X86_ACPI_SLEEP_CONTROL_PORT, SLP(3)); /* S3: unsupported */
    out8(f, X86_ACPI_SLEEP_CONTROL_PORT, SLP(1));
    out8(f, X86_ACPI_SLEEP_CONTROL_PORT, SLP(X86_ACPI_S5_SLP_TYP) & ~X86_ACPI_SLP_EN);
    out8(f, X86_ACPI_SLEEP_STATUS_PORT, 0xff);
    out8(f, X86_ACPI_RESET_PORT, SLP(X86_ACPI_S5_SLP_TYP)); /* right value, wrong register */
    assert_int_equal(f->poweroffs + f->resets + f->others, 0);
}

static void test_reset_register(void **state)
{
    struct fixture *f = *state;

    out8(f, X86_ACPI_RESET_PORT, 0x00);
    out8(f, X86_ACPI_RESET_PORT, 0x06);
    assert_int_equal(f->resets, 0);
    out8(f, X86_ACPI_RESET_PORT, X86_ACPI_RESET_VALUE);
    assert_int_equal(f->resets, 1);
    assert_int_equal(f->poweroffs + f->others, 0);
}

static void test_reads_zero(void **state)
{
    struct fixture *f = *state;
    uint8_t val = 0xaa;

    assert_true(io_bus_read(&f->bus, X86_ACPI_SLEEP_STATUS_PORT, &val, 1));
    assert_int_equal(val, 0);
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
