/*
 * The MC146818 CMOS RTC at X86_CMOS_PORT (index at +0, data at +1). The clock registers show
 * the host's wall clock in UTC; everything else is 128 bytes of CMOS RAM. No RTC interrupts:
 * guests use the RTC only to read the time at boot.
 */
#ifndef COVE_DEVICES_RTC_H
#define COVE_DEVICES_RTC_H

#include <time.h>

#include "bus/io_bus.h"
#include "snapshot/stream.h"

struct rtc;

/* Clock source: the host's CLOCK_REALTIME. */
struct rtc *rtc_new(void);
/* Clock source: now(opaque), seconds since the epoch (UTC); called with the device lock held. */
struct rtc *rtc_new_with_clock(time_t (*now)(void *opaque), void *opaque);
void rtc_free(struct rtc *rtc);
int rtc_register(struct rtc *rtc, struct io_bus *pio);

/* The index and CMOS RAM, for a snapshot (the time registers are read from the host clock
 * anyway); restore returns false when damaged. */
void rtc_save(struct rtc *rtc, struct snap_writer *w);
bool rtc_restore(struct rtc *rtc, struct snap_reader *r);

#endif
