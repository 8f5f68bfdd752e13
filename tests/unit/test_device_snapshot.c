/*
 * Snapshots of the legacy devices (UART, i8042, CMOS RTC): what a guest programmed into one
 * device must read back the same from a fresh device restored from its section, and a
 * damaged section must be refused with the fresh device left as it was. Each device is
 * driven through its ports on a fake machine, as a guest would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "fake_machine.h"
#include "snapshot/stream.h"

#define COM1 X86_COM1_PORT
#define KBD_DATA X86_I8042_DATA_PORT
#define KBD_CMD X86_I8042_COMMAND_PORT
#define CMOS_INDEX X86_CMOS_PORT
#define CMOS_DATA (X86_CMOS_PORT + 1)

struct uarts {
    struct fake_machine fm[2];
    struct uart *uart[2];
    int out[2]; /* where both write; nothing is read */
};

static void make_uarts(struct uarts *u)
{
    assert_int_equal(pipe2(u->out, O_NONBLOCK), 0);
    for (int i = 0; i < 2; i++) {
        fm_init(&u->fm[i], FM_NO_EVENTS);
        u->uart[i] = uart_new(&u->fm[i].sink, X86_COM1_IRQ, u->out[1]);
        assert_non_null(u->uart[i]);
        assert_int_equal(uart_register(u->uart[i], &u->fm[i].bus), 0);
    }
}

static void free_uarts(struct uarts *u)
{
    for (int i = 0; i < 2; i++) {
        uart_free(u->uart[i]);
        fm_destroy(&u->fm[i]);
    }
    close(u->out[0]);
    close(u->out[1]);
}

static void uart_round_trip(void **state)
{
    (void)state;
    struct uarts u;
    make_uarts(&u);
    struct fake_machine *guest = &u.fm[0];
    fm_out8(guest, COM1 + 3, 0x83); /* DLAB: divisor 0x0102 */
    fm_out8(guest, COM1 + 0, 0x02);
    fm_out8(guest, COM1 + 1, 0x01);
    fm_out8(guest, COM1 + 3, 0x1b); /* 8E1 */
    fm_out8(guest, COM1 + 1, 0x01); /* received-data interrupt */
    fm_out8(guest, COM1 + 4, 0x0b);
    fm_out8(guest, COM1 + 7, 0x5a);
    assert_int_equal(uart_receive(u.uart[0], (const uint8_t *)"in", 2), 2);

    struct snap_writer w;
    snap_writer_init(&w);
    uart_save(u.uart[0], &w);
    assert_true(snap_writer_ok(&w));
    struct snap_reader r;
    snap_reader_init(&r, w.data, w.len);
    assert_true(uart_restore(u.uart[1], &r));
    assert_true(snap_reader_ok(&r, true));

    struct fake_machine *restored = &u.fm[1];
    assert_int_equal(fm_in8(restored, COM1 + 3), 0x1b);
    assert_int_equal(fm_in8(restored, COM1 + 1), 0x01);
    assert_int_equal(fm_in8(restored, COM1 + 4), 0x0b);
    assert_int_equal(fm_in8(restored, COM1 + 7), 0x5a);
    assert_int_equal(fm_in8(restored, COM1 + 2) & 0x0f, 0x04); /* data ready is pending */
    assert_int_equal(fm_in8(restored, COM1 + 5) & 0x01, 0x01);
    assert_int_equal(fm_in8(restored, COM1 + 0), 'i');
    assert_int_equal(fm_in8(restored, COM1 + 0), 'n');
    assert_int_equal(fm_in8(restored, COM1 + 5) & 0x01, 0);
    fm_out8(restored, COM1 + 3, 0x9b);
    assert_int_equal(fm_in8(restored, COM1 + 0), 0x02);
    assert_int_equal(fm_in8(restored, COM1 + 1), 0x01);
    snap_writer_free(&w);
    free_uarts(&u);
}

static void uart_refuses_damage(void **state)
{
    (void)state;
    struct uarts u;
    make_uarts(&u);
    fm_out8(&u.fm[0], COM1 + 7, 0x5a);
    assert_int_equal(uart_receive(u.uart[0], (const uint8_t *)"abc", 3), 3);
    struct snap_writer w;
    snap_writer_init(&w);
    uart_save(u.uart[0], &w);
    struct snap_reader r;
    for (size_t cut = 0; cut < w.len; cut++) {
        snap_reader_init(&r, w.data, cut);
        assert_false(uart_restore(u.uart[1], &r));
    }
    /* The buffered-input count claims more than the UART can hold (the length stays right). */
    size_t count_at = w.len - 3 - 4;
    w.data[count_at + 3] = 0x10;
    snap_reader_init(&r, w.data, w.len);
    assert_false(uart_restore(u.uart[1], &r));
    assert_int_equal(fm_in8(&u.fm[1], COM1 + 7), 0); /* unchanged */
    assert_int_equal(fm_in8(&u.fm[1], COM1 + 5) & 0x01, 0);
    snap_writer_free(&w);
    free_uarts(&u);
}

static void i8042_round_trip(void **state)
{
    (void)state;
    struct fake_machine fm[2];
    struct i8042 *kbd[2];
    for (int i = 0; i < 2; i++) {
        fm_init(&fm[i], 0);
        kbd[i] = i8042_new(&fm[i].sink);
        assert_non_null(kbd[i]);
        assert_int_equal(i8042_register(kbd[i], &fm[i].bus), 0);
    }
    fm_out8(&fm[0], KBD_CMD, 0x60); /* write the command byte */
    fm_out8(&fm[0], KBD_DATA, 0x45);
    fm_out8(&fm[0], KBD_CMD, 0x20); /* read it back: left in the output buffer */

    struct snap_writer w;
    snap_writer_init(&w);
    i8042_save(kbd[0], &w);
    struct snap_reader r;
    snap_reader_init(&r, w.data, w.len - 1);
    assert_false(i8042_restore(kbd[1], &r));
    assert_int_equal(fm_in8(&fm[1], KBD_CMD) & 0x01, 0); /* unchanged: nothing to read */
    snap_reader_init(&r, w.data, w.len);
    assert_true(i8042_restore(kbd[1], &r));
    assert_int_equal(fm_in8(&fm[1], KBD_CMD) & 0x01, 0x01);
    assert_int_equal(fm_in8(&fm[1], KBD_DATA), 0x45);
    snap_writer_free(&w);
    for (int i = 0; i < 2; i++) {
        i8042_free(kbd[i]);
        fm_destroy(&fm[i]);
    }
}

static void rtc_round_trip(void **state)
{
    (void)state;
    struct fake_machine fm[2];
    struct rtc *rtc[2];
    for (int i = 0; i < 2; i++) {
        fm_init(&fm[i], FM_NO_EVENTS);
        rtc[i] = rtc_new();
        assert_non_null(rtc[i]);
        assert_int_equal(rtc_register(rtc[i], &fm[i].bus), 0);
    }
    fm_out8(&fm[0], CMOS_INDEX, 0x20); /* CMOS RAM past the clock registers */
    fm_out8(&fm[0], CMOS_DATA, 0xab);
    fm_out8(&fm[0], CMOS_INDEX, 0x30);
    fm_out8(&fm[0], CMOS_DATA, 0xcd);

    struct snap_writer w;
    snap_writer_init(&w);
    rtc_save(rtc[0], &w);
    struct snap_reader r;
    snap_reader_init(&r, w.data, w.len - 1);
    assert_false(rtc_restore(rtc[1], &r));
    snap_reader_init(&r, w.data, w.len);
    assert_true(rtc_restore(rtc[1], &r));
    assert_int_equal(fm_in8(&fm[1], CMOS_DATA), 0xcd); /* the index came along */
    fm_out8(&fm[1], CMOS_INDEX, 0x20);
    assert_int_equal(fm_in8(&fm[1], CMOS_DATA), 0xab);
    snap_writer_free(&w);
    for (int i = 0; i < 2; i++) {
        rtc_free(rtc[i]);
        fm_destroy(&fm[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uart_round_trip),
        cmocka_unit_test(uart_refuses_damage),
        cmocka_unit_test(i8042_round_trip),
        cmocka_unit_test(rtc_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
