/* pvpanic and the boot-timer port, driven through a real port bus with a fake machine sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "cove/cove.h"
#include "devices/boot_timer.h"
#include "devices/pvpanic.h"
#include "fake_machine.h"

struct fixture {
    struct fake_machine fm;
    struct pvpanic *pvpanic;
    struct boot_timer *boot;
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    fm_init(&f->fm, FM_NO_IRQS);
    f->pvpanic = pvpanic_new(&f->fm.sink);
    f->boot = boot_timer_new(&f->fm.sink);
    if (!f->pvpanic || !f->boot || pvpanic_register(f->pvpanic, &f->fm.bus) ||
        boot_timer_register(f->boot, &f->fm.bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pvpanic_free(f->pvpanic);
    boot_timer_free(f->boot);
    fm_destroy(&f->fm);
    test_free(f);
    return 0;
}

static void test_pvpanic_features(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(fm_in8(&f->fm, X86_PVPANIC_PORT), PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
}

static void test_pvpanic_write(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, X86_PVPANIC_PORT, 0);
    fm_out8(&f->fm, X86_PVPANIC_PORT, PVPANIC_CRASH_LOADED);
    assert_int_equal(f->fm.events[MACHINE_EVENT_PANIC], 0);
    fm_out8(&f->fm, X86_PVPANIC_PORT, PVPANIC_PANICKED);
    assert_int_equal(f->fm.events[MACHINE_EVENT_PANIC], 1);
    assert_int_equal(fm_events_except(&f->fm, MACHINE_EVENT_PANIC), 0);
}

static void test_boot_timer_once_and_only_magic(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, COVE_BOOT_PORT, 0);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC - 1);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE], 0);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE], 1);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE], 1);
    assert_int_equal(fm_events_except(&f->fm, MACHINE_EVENT_BOOT_DONE), 0);
    assert_int_equal(fm_in8(&f->fm, COVE_BOOT_PORT), 0xff);
}

/* cove-agent's magic is boot done and a promise of READY; READY counts once, boot or not. */
static void test_boot_timer_agent_and_ready(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_READY_MAGIC);
    assert_int_equal(f->fm.events[MACHINE_EVENT_AGENT_READY], 1);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC_AGENT);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE_AGENT], 1);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_BOOT_MAGIC_AGENT);
    fm_out8(&f->fm, COVE_BOOT_PORT, COVE_READY_MAGIC);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE_AGENT], 1);
    assert_int_equal(f->fm.events[MACHINE_EVENT_BOOT_DONE], 0);
    assert_int_equal(f->fm.events[MACHINE_EVENT_AGENT_READY], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pvpanic_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvpanic_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boot_timer_once_and_only_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boot_timer_agent_and_ready, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
