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

/* The read-ahead a share's mount gets, in KiB. Linux gives a FUSE mount 128 KiB (the default
 * backing device's), so sequential reads came as 128 KiB READs, one guest exit and one
 * interrupt each; 1 MiB lets the kernel send requests as large as the queue allows (about
 * 500 KiB) and keep two in flight. Read-ahead grows only on sequential access, so small
 * random reads are not inflated by it. */
#define AGENT_SHARE_READ_AHEAD_KB 1024

/* The sysfs file of the read-ahead of the backing device with numbers major:minor (a FUSE
 * mount's is named after its anonymous device). Returns false if it does not fit buf. */
bool agent_read_ahead_path(unsigned major, unsigned minor, char *buf, size_t len);

#endif
