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

/* Whether the kernel command line holds `word` as a whole word. */
bool agent_cmdline_has_word(const char *cmdline, const char *word);

/* One share to mount, from a "cove.mount=TAG:PATH[:ro]" word of the kernel command line. */
struct agent_mount {
    char tag[37];    /* virtio-fs tags are at most 36 bytes */
    char path[256];  /* absolute */
    bool read_only;
};

/*
 * Finds the next "cove.mount=" word in the kernel command line at *cursor, fills mount and
 * moves *cursor past it. Malformed words (no tag, a relative or over-long path, an unknown
 * suffix) are skipped. Returns false when there are no more.
 */
bool agent_next_mount(const char **cursor, struct agent_mount *mount);

#endif
