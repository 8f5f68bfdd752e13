/*
 * CMOS RTC. The clock registers are computed from the time source on every read, so the RTC
 * never drifts from the host and needs no update timer; writes to them are ignored (the guest
 * cannot set the host's clock).
 */
#include "devices/rtc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86_64/layout.h"

#define CMOS_SIZE 128
#define INDEX_MASK 0x7f /* bit 7 of the index port is the NMI disable, not part of the index */

#define REG_SECONDS 0x00
#define REG_MINUTES 0x02
#define REG_HOURS 0x04
#define REG_WEEKDAY 0x06
#define REG_DAY 0x07
#define REG_MONTH 0x08
#define REG_YEAR 0x09
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32

#define A_UIP 0x80
#define A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define B_DM 0x04      /* binary rather than BCD */
#define B_24H 0x02
#define B_DEFAULT B_24H
#define D_VRT 0x80 /* valid RAM and time: the CMOS battery is fine */
#define HOUR_PM 0x80

struct rtc {
    pthread_mutex_t lock;
    time_t (*now)(void *opaque);
    void *opaque;
    uint8_t index;
    uint8_t ram[CMOS_SIZE];
};

static time_t host_now(void *opaque)
{
    struct timespec ts;

    (void)opaque;
    if (clock_gettime(CLOCK_REALTIME, &ts))
        return 0;
    return ts.tv_sec;
}

static bool is_clock_reg(uint8_t reg)
{
    return reg == REG_SECONDS || reg == REG_MINUTES || reg == REG_HOURS ||
           (reg >= REG_WEEKDAY && reg <= REG_YEAR) || reg == REG_CENTURY;
}

/* v is below 100 for every register. */
static uint8_t encode(const struct rtc *r, unsigned v)
{
    if (r->ram[REG_B] & B_DM)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t encode_hour(const struct rtc *r, int hour)
{
    if (r->ram[REG_B] & B_24H)
        return encode(r, (unsigned)hour);
    /* 12-hour mode: 12, 1..11 with the PM flag in bit 7, outside the BCD/binary digits. */
    return encode(r, hour % 12 ? (unsigned)(hour % 12) : 12) | (hour >= 12 ? HOUR_PM : 0);
}

static uint8_t read_clock(const struct rtc *r, uint8_t reg)
{
    time_t t = r->now(r->opaque);
    struct tm tm;

    /* A clock source out of gmtime's range reads as the epoch rather than garbage. */
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    switch (reg) {
    case REG_SECONDS: return encode(r, (unsigned)tm.tm_sec % 60);
    case REG_MINUTES: return encode(r, (unsigned)tm.tm_min);
    case REG_HOURS: return encode_hour(r, tm.tm_hour);
    case REG_WEEKDAY: return encode(r, (unsigned)tm.tm_wday + 1); /* Sunday is 1 */
    case REG_DAY: return encode(r, (unsigned)tm.tm_mday);
    case REG_MONTH: return encode(r, (unsigned)tm.tm_mon + 1);
    case REG_YEAR: return encode(r, (unsigned)(tm.tm_year + 1900) % 100);
    default: return encode(r, (unsigned)(tm.tm_year + 1900) / 100 % 100);
    }
}

static uint8_t read_data(const struct rtc *r)
{
    uint8_t reg = r->index;

    if (is_clock_reg(reg))
        return read_clock(r, reg);
    switch (reg) {
    case REG_A: return r->ram[REG_A] & ~A_UIP; /* never mid-update: readers never spin */
    case REG_C: return 0;                      /* no interrupt flags ever raised */
    case REG_D: return D_VRT;
    default: return r->ram[reg];
    }
}

static void write_data(struct rtc *r, uint8_t val)
{
    uint8_t reg = r->index;

    if (is_clock_reg(reg) || reg == REG_C || reg == REG_D)
        return;
    r->ram[reg] = reg == REG_A ? (val & ~A_UIP) : val;
}

static void rtc_io_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct rtc *r = opaque;

    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < size; i++)
        data[i] = offset + i == 0 ? 0xff : read_data(r); /* the index port is write-only */
    pthread_mutex_unlock(&r->lock);
}

/* A 16-bit write sets the index and then writes the data byte, as the ISA bus splits it. */
static void rtc_io_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct rtc *r = opaque;

    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < size; i++) {
        if (offset + i == 0)
            r->index = data[i] & INDEX_MASK;
        else
            write_data(r, data[i]);
    }
    pthread_mutex_unlock(&r->lock);
}

struct rtc *rtc_new_with_clock(time_t (*now)(void *opaque), void *opaque)
{
    struct rtc *r;

    if (!now)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (pthread_mutex_init(&r->lock, NULL)) {
        free(r);
        return NULL;
    }
    r->now = now;
    r->opaque = opaque;
    r->ram[REG_A] = A_DEFAULT;
    r->ram[REG_B] = B_DEFAULT;
    return r;
}

struct rtc *rtc_new(void)
{
    return rtc_new_with_clock(host_now, NULL);
}

void rtc_free(struct rtc *rtc)
{
    if (!rtc)
        return;
    pthread_mutex_destroy(&rtc->lock);
    free(rtc);
}

int rtc_register(struct rtc *rtc, struct io_bus *pio)
{
    return io_bus_register(pio, X86_CMOS_PORT, 2, rtc_io_read, rtc_io_write, rtc);
}

#define TAG_RTC SNAP_TAG('c', 'm', 'o', 's')

void rtc_save(struct rtc *rtc, struct snap_writer *w)
{
    pthread_mutex_lock(&rtc->lock);
    snap_begin(w, TAG_RTC);
    snap_put_u8(w, rtc->index);
    snap_put_bytes(w, rtc->ram, sizeof(rtc->ram));
    snap_end(w);
    pthread_mutex_unlock(&rtc->lock);
}

bool rtc_restore(struct rtc *rtc, struct snap_reader *r)
{
    struct snap_reader s;
    snap_section(r, TAG_RTC, &s);
    uint8_t index = snap_get_u8(&s);
    uint8_t ram[CMOS_SIZE];
    snap_get_bytes(&s, ram, sizeof(ram));
    if (!snap_reader_ok(&s, true))
        return snap_reject(r);
    pthread_mutex_lock(&rtc->lock);
    rtc->index = index & INDEX_MASK;
    memcpy(rtc->ram, ram, sizeof(ram));
    pthread_mutex_unlock(&rtc->lock);
    return true;
}
