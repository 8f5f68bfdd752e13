/* pvpanic and the boot-timer port, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "bus/io_bus.h"
#include "cove/cove.h"
#include "devices/boot_timer.h"
#include "devices/pvpanic.h"

struct fixture {
    int panics, boots, others;
    struct machine_sink sink;
    struct io_bus bus;
    struct pvpanic *pvpanic;
    struct boot_timer *boot;
};

static void fake_event(void *ctx, enum machine_event event)
{
    struct fixture *f = ctx;

    if (event == MACHINE_EVENT_PANIC)
        f->panics++;
    else if (event == MACHINE_EVENT_BOOT_DONE)
        f->boots++;
    else
        f->others++;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    f->sink = (struct machine_sink){NULL, fake_event, f};
    io_bus_init(&f->bus);
    f->pvpanic = pvpanic_new(&f->sink);
    f->boot = boot_timer_new(&f->sink);
    if (!f->pvpanic || !f->boot || pvpanic_register(f->pvpanic, &f->bus) ||
        boot_timer_register(f->boot, &f->bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pvpanic_free(f->pvpanic);
    boot_timer_free(f->boot);
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

static void test_pvpanic_features(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(in8(f, X86_PVPANIC_PORT), PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
}

static void test_pvpanic_write(void **state)
{
    struct fixture *f = *state;

    out8(f, X86_PVPANIC_PORT, 0);
    out8(f, X86_PVPANIC_PORT, PVPANIC_CRASH_LOADED);
    assert_int_equal(f->panics, 0);
    out8(f, X86_PVPANIC_PORT, PVPANIC_PANICKED);
    assert_int_equal(f->panics, 1);
    assert_int_equal(f->boots + f->others, 0);
}

static void test_boot_timer_once_and_only_magic(void **state)
{
    struct fixture *f = *state;

    out8(f, COVE_BOOT_PORT, 0);
    out8(f, COVE_BOOT_PORT, COVE_BOOT_MAGIC + 1);
    assert_int_equal(f->boots, 0);
    out8(f, COVE_BOOT_PORT, COVE_BOOT_MAGIC);
    assert_int_equal(f->boots, 1);
    out8(f, COVE_BOOT_PORT, COVE_BOOT_MAGIC);
    assert_int_equal(f->boots, 1);
    assert_int_equal(f->panics + f->others, 0);
    assert_int_equal(in8(f, COVE_BOOT_PORT), 0xff);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pvpanic_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvpanic_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boot_timer_once_and_only_magic, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
