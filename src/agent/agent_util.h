/*
 * Pure helpers of cove-agent: no system calls, so the unit tests can exercise them on the
 * host without running as PID 1.
 */
#ifndef COVE_AGENT_UTIL_H
#define COVE_AGENT_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Joins argv[1..argc-1] with single spaces into a newly allocated string (free() it).
 * Returns NULL when there are no arguments (argc <= 1) or when out of memory.
 */
char *agent_join_args(int argc, char *const argv[]);

/*
 * Describes a wait() status of the guest command for the console, e.g.
 * "command exited with status 3" or "command killed by signal 9". Returns false (and
 * leaves buf an empty string) when there is nothing to report: a clean exit with status 0.
 */
bool agent_describe_status(int status, char *buf, size_t len);

#endif
