/* CMOS RTC, driven through a real port bus with an injected clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "devices/rtc.h"
#include "fake_machine.h"

#define INDEX X86_CMOS_PORT
#define DATA (X86_CMOS_PORT + 1)

#define T_2026_11_21_123456 ((time_t)1795264496) /* a Saturday */

struct fixture {
    time_t now;
    struct fake_machine fm; /* only its bus: the RTC raises no interrupt and no event */
    struct rtc *rtc;
};

static time_t fake_now(void *opaque)
{
    return ((struct fixture *)opaque)->now;
}

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    f->now = T_2026_11_21_123456;
    fm_init(&f->fm, FM_NO_IRQS | FM_NO_EVENTS);
    f->rtc = rtc_new_with_clock(fake_now, f);
    if (!f->rtc || rtc_register(f->rtc, &f->fm.bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    rtc_free(f->rtc);
    fm_destroy(&f->fm);
    test_free(f);
    return 0;
}

static uint8_t cmos_read(struct fixture *f, uint8_t index)
{
    fm_out8(&f->fm, INDEX, index);
    return fm_in8(&f->fm, DATA);
}

static void cmos_write(struct fixture *f, uint8_t index, uint8_t val)
{
    fm_out8(&f->fm, INDEX, index);
    fm_out8(&f->fm, DATA, val);
}

static const uint8_t clock_regs[] = {0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32};

static void test_bcd_time(void **state)
{
    struct fixture *f = *state;
    static const uint8_t bcd[] = {0x56, 0x34, 0x12, 0x07, 0x21, 0x11, 0x26, 0x20};

    assert_int_equal(cmos_read(f, 0x0b), 0x02); /* 24 h, BCD */
    for (size_t i = 0; i < sizeof(clock_regs); i++)
        assert_int_equal(cmos_read(f, clock_regs[i]), bcd[i]);
}

static void test_binary_time(void **state)
{
    struct fixture *f = *state;
    static const uint8_t bin[] = {56, 34, 12, 7, 21, 11, 26, 20};

    cmos_write(f, 0x0b, 0x06); /* DM: binary */
    assert_int_equal(cmos_read(f, 0x0b), 0x06);
    for (size_t i = 0; i < sizeof(clock_regs); i++)
        assert_int_equal(cmos_read(f, clock_regs[i]), bin[i]);
}

static void test_twelve_hour_mode(void **state)
{
    struct fixture *f = *state;

    cmos_write(f, 0x0b, 0x00);
    assert_int_equal(cmos_read(f, 0x04), 0x92); /* 12 PM */
    f->now += 3600;
    assert_int_equal(cmos_read(f, 0x04), 0x81); /* 1 PM */
    f->now -= 13 * 3600;
    assert_int_equal(cmos_read(f, 0x04), 0x12); /* 12 AM */
}

static void test_clock_follows_source(void **state)
{
    struct fixture *f = *state;

    f->now += 61;
    assert_int_equal(cmos_read(f, 0x00), 0x57);
    assert_int_equal(cmos_read(f, 0x02), 0x35);
    cmos_write(f, 0x00, 0x11); /* the guest cannot set the clock */
    assert_int_equal(cmos_read(f, 0x00), 0x57);
}

static void test_status_registers(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(cmos_read(f, 0x0a), 0x26);
    cmos_write(f, 0x0a, 0xff);
    assert_int_equal(cmos_read(f, 0x0a) & 0x80, 0); /* UIP never reads set */
    assert_int_equal(cmos_read(f, 0x0c), 0x00);
    assert_int_equal(cmos_read(f, 0x0d), 0x80);
    cmos_write(f, 0x0d, 0x00);
    assert_int_equal(cmos_read(f, 0x0d), 0x80);
}

static void test_cmos_ram_and_nmi_bit(void **state)
{
    struct fixture *f = *state;

    cmos_write(f, 0x40, 0xab);
    cmos_write(f, 0x7f, 0xcd);
    assert_int_equal(cmos_read(f, 0x40), 0xab);
    assert_int_equal(cmos_read(f, 0xc0), 0xab); /* bit 7 of the index is NMI disable */
    assert_int_equal(cmos_read(f, 0xff), 0xcd);
    cmos_write(f, 0x81, 0x22); /* alarm seconds, through the NMI-masked index */
    assert_int_equal(cmos_read(f, 0x01), 0x22);
}

static void test_word_write_sets_index_then_data(void **state)
{
    struct fixture *f = *state;
    const uint8_t word[2] = {0x50, 0x99};

    assert_true(io_bus_write(&f->fm.bus, INDEX, word, 2));
    assert_int_equal(cmos_read(f, 0x50), 0x99);
    assert_int_equal(fm_in8(&f->fm, INDEX), 0xff); /* the index port is write-only */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bcd_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twelve_hour_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_follows_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmos_ram_and_nmi_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_word_write_sets_index_then_data, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
