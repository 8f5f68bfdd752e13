/*
 * Deadlines for pthread_cond_timedwait and the like: the clock's now plus a number of
 * milliseconds, normalised. Each caller picks the clock its condition variable waits by.
 */
#ifndef COVE_DEADLINE_H
#define COVE_DEADLINE_H

#include <time.h>

/* clock's now + ms (ms <= 0: now). */
struct timespec deadline_after_ms(clockid_t clock, long ms);

#endif
