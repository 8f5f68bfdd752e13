/*
 * VM configuration: a plain record of what the caller asked for, and a validator that tells
 * them everything that is wrong with it at once, so a user fixes a config in one pass rather
 * than one error per attempt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cove/cove.h>

#include "arch/x86_64/boot.h"
#include "config_internal.h"

#define DEFAULT_CPUS 1u
#define DEFAULT_MEMORY (UINT64_C(512) << 20)
/* Linux x86 COMMAND_LINE_SIZE is 2048 including the terminating NUL. */
#define CMDLINE_MAX 2047u
/* KVM memory slots and the e820 map work in whole guest pages. */
#define GUEST_PAGE_SIZE 4096u
/* Enough of a kernel file for the detector: the bzImage setup header or the ELF headers. */
#define KERNEL_HEAD_SIZE 4096u

/* ---- Building a configuration ---- */

cove_config *cove_config_new(void)
{
    cove_config *config = calloc(1, sizeof(*config));
    if (!config)
        return NULL;
    config->cpus = DEFAULT_CPUS;
    config->memory = DEFAULT_MEMORY;
    config->serial_kind = COVE_CONSOLE_NONE;
    config->serial_in_fd = -1;
    config->serial_out_fd = -1;
    return config;
}

void cove_config_free(cove_config *config)
{
    if (!config)
        return;
    free(config->kernel_path);
    free(config->initrd_path);
    free(config->cmdline);
    free(config->serial_path);
    free(config);
}

/* Copies text (NULL stays NULL) into *slot; *slot is left alone when out of memory. */
static int replace_string(char **slot, const char *text)
{
    char *copy = NULL;
    if (text && !(copy = strdup(text)))
        return -ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

/* An empty path can never name a file, so it is refused like NULL. */
static bool is_path(const char *path)
{
    return path && path[0] != '\0';
}

int cove_config_set_kernel(cove_config *config, const char *path)
{
    if (!is_path(path))
        return -EINVAL;
    return replace_string(&config->kernel_path, path);
}

int cove_config_set_initrd(cove_config *config, const char *path)
{
    if (path && !is_path(path))
        return -EINVAL;
    return replace_string(&config->initrd_path, path);
}

int cove_config_set_cmdline(cove_config *config, const char *cmdline)
{
    /* One representation for "no command line", so readers test only for NULL. */
    if (cmdline && cmdline[0] == '\0')
        cmdline = NULL;
    return replace_string(&config->cmdline, cmdline);
}

void cove_config_set_cpus(cove_config *config, unsigned cpus)
{
    config->cpus = cpus;
}

void cove_config_set_memory(cove_config *config, uint64_t bytes)
{
    config->memory = bytes;
}

/* Switches the serial console, dropping a file path a previous choice left behind. */
static void set_serial(cove_config *config, cove_console_kind kind, int in_fd, int out_fd)
{
    free(config->serial_path);
    config->serial_path = NULL;
    config->serial_kind = kind;
    config->serial_in_fd = in_fd;
    config->serial_out_fd = out_fd;
}

void cove_config_set_serial_none(cove_config *config)
{
    set_serial(config, COVE_CONSOLE_NONE, -1, -1);
}

void cove_config_set_serial_stdio(cove_config *config)
{
    set_serial(config, COVE_CONSOLE_STDIO, STDIN_FILENO, STDOUT_FILENO);
}

void cove_config_set_serial_fds(cove_config *config, int in_fd, int out_fd)
{
    set_serial(config, COVE_CONSOLE_FDS, in_fd, out_fd);
}

int cove_config_set_serial_file(cove_config *config, const char *path)
{
    if (!is_path(path))
        return -EINVAL;
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    set_serial(config, COVE_CONSOLE_FILE, -1, -1);
    config->serial_path = copy;
    return 0;
}

const char *cove_config_kernel(const cove_config *config)
{
    return config->kernel_path;
}

const char *cove_config_initrd(const cove_config *config)
{
    return config->initrd_path;
}

/* Never NULL, so callers can print it without a check. */
const char *cove_config_cmdline(const cove_config *config)
{
    return config->cmdline ? config->cmdline : "";
}

unsigned cove_config_cpus(const cove_config *config)
{
    return config->cpus;
}

uint64_t cove_config_memory(const cove_config *config)
{
    return config->memory;
}

cove_console_kind cove_config_serial_kind(const cove_config *config)
{
    return config->serial_kind;
}

cove_config *cove_config_copy(const cove_config *config)
{
    if (!config)
        return NULL;
    cove_config *copy = malloc(sizeof(*copy));
    if (!copy)
        return NULL;
    *copy = *config;
    /* Cleared first so a failure half way frees only what this copy owns. */
    copy->kernel_path = copy->initrd_path = copy->cmdline = copy->serial_path = NULL;
    if (replace_string(&copy->kernel_path, config->kernel_path) ||
        replace_string(&copy->initrd_path, config->initrd_path) ||
        replace_string(&copy->cmdline, config->cmdline) ||
        replace_string(&copy->serial_path, config->serial_path)) {
        cove_config_free(copy);
        return NULL;
    }
    return copy;
}

/* ---- Validation ---- */

struct report {
    cove_problems *out; /* NULL when the caller only wants the count */
    size_t found;       /* may exceed out->count if a message could not be allocated */
    size_t capacity;
};

static void store_problem(struct report *r, char *message)
{
    cove_problems *out = r->out;
    if (out->count == r->capacity) {
        size_t capacity = r->capacity ? 2 * r->capacity : 8;
        char **grown = realloc(out->messages, capacity * sizeof(*grown));
        if (!grown) {
            free(message);
            return;
        }
        out->messages = grown;
        r->capacity = capacity;
    }
    out->messages[out->count++] = message;
}

__attribute__((format(printf, 2, 3))) static void add_problem(struct report *r, const char *fmt,
                                                                ...)
{
    r->found++;
    if (!r->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *message;
    int n = vasprintf(&message, fmt, ap);
    va_end(ap);
    /* Out of memory: the problem is still counted in the return value. */
    if (n >= 0)
        store_problem(r, message);
}

/* strerror() is not thread-safe and validation may run on any thread. */
static const char *error_text(int err, char *buf, size_t len)
{
    return strerror_r(err, buf, len);
}

static void add_errno_problem(struct report *r, const char *what, const char *path, int err)
{
    char buf[128];
    add_problem(r, "%s '%s': %s", what, path, error_text(err, buf, sizeof(buf)));
}

/*
 * Opens a file cove will read whole (kernel, initrd). Non-blocking so a FIFO given by
 * mistake cannot hang validation. Reports why and returns -1 when it is not a readable
 * regular file.
 */
static int open_input(struct report *r, const char *what, const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        add_errno_problem(r, what, path, errno);
        return -1;
    }
    if (fstat(fd, st) != 0)
        add_errno_problem(r, what, path, errno);
    else if (S_ISDIR(st->st_mode))
        add_problem(r, "%s '%s': is a directory", what, path);
    else if (!S_ISREG(st->st_mode))
        add_problem(r, "%s '%s': not a regular file", what, path);
    else
        return fd;
    close(fd);
    return -1;
}

/* Reads up to len bytes from the start of fd; returns how many, or -errno. */
static ssize_t read_head(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static void check_kernel(struct report *r, const char *path)
{
    if (!path) {
        add_problem(r, "kernel: not set (give the path of a bzImage or vmlinux)");
        return;
    }
    struct stat st;
    int fd = open_input(r, "kernel", path, &st);
    if (fd < 0)
        return;
    uint8_t head[KERNEL_HEAD_SIZE];
    ssize_t n = read_head(fd, head, sizeof(head));
    close(fd);
    if (n < 0) {
        add_errno_problem(r, "kernel", path, (int)-n);
        return;
    }
    char reason[160] = "";
    if (kernel_format_detect(head, (size_t)n, reason, sizeof(reason)) != KERNEL_FORMAT_UNKNOWN)
        return;
    if (reason[0])
        add_problem(r, "kernel '%s': not a bzImage or ELF vmlinux (%s)", path, reason);
    else
        add_problem(r, "kernel '%s': not a bzImage or ELF vmlinux", path);
}

static void check_initrd(struct report *r, const char *path)
{
    if (!path)
        return;
    struct stat st;
    int fd = open_input(r, "initrd", path, &st);
    if (fd < 0)
        return;
    close(fd);
    /* An empty initrd is almost always a failed build, and the kernel would just panic. */
    if (st.st_size == 0)
        add_problem(r, "initrd '%s': empty file", path);
}

static void check_memory(struct report *r, uint64_t memory)
{
    uint64_t min = cove_min_memory(), max = cove_max_memory();
    char have[32], limit[32];
    cove_format_size(memory, have, sizeof(have));
    if (memory < min) {
        cove_format_size(min, limit, sizeof(limit));
        add_problem(r, "memory %s is below the minimum of %s", have, limit);
    } else if (memory > max) {
        cove_format_size(max, limit, sizeof(limit));
        /* Just over the limit both round to the same text; exact bytes show the difference. */
        if (strcmp(have, limit) == 0) {
            snprintf(have, sizeof(have), "%llu bytes", (unsigned long long)memory);
            snprintf(limit, sizeof(limit), "%llu bytes", (unsigned long long)max);
        }
        add_problem(r, "memory %s is above the maximum of %s (%s)", have, limit,
                    max < COVE_MEMORY_CAP ? "the host's RAM" : "cove's limit");
    } else if (memory % GUEST_PAGE_SIZE != 0) {
        /* In bytes: a rounded "64 MiB" would hide what is wrong. */
        add_problem(r, "memory %llu bytes is not a multiple of 4 KiB (the page size)",
                    (unsigned long long)memory);
    }
}

static void check_cpus(struct report *r, unsigned cpus)
{
    unsigned min = cove_min_cpus(), max = cove_max_cpus();
    if (cpus < min || cpus > max)
        add_problem(r, "cpus %u: must be between %u and %u", cpus, min, max);
}

static void check_cmdline(struct report *r, const char *cmdline)
{
    size_t len = cmdline ? strlen(cmdline) : 0;
    if (len > CMDLINE_MAX)
        add_problem(r, "cmdline: %zu bytes is longer than the kernel's limit of %u", len,
                    CMDLINE_MAX);
}

/* Checks that a caller's descriptor is open in a mode the console can use. */
static void check_fd(struct report *r, const char *role, int fd, int unusable_mode,
                     const char *needed)
{
    int flags = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (flags < 0)
        add_problem(r, "serial: %s descriptor %d is not open", role, fd);
    else if ((flags & O_ACCMODE) == unusable_mode)
        add_problem(r, "serial: %s descriptor %d is not open for %s", role, fd, needed);
}

/* The log is created at VM start, so here only its directory has to exist and be writable. */
static void check_serial_file(struct report *r, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            add_problem(r, "serial file '%s': is a directory", path);
        else if (access(path, W_OK) != 0)
            add_errno_problem(r, "serial file", path, errno);
        return;
    }
    if (errno != ENOENT) {
        add_errno_problem(r, "serial file", path, errno);
        return;
    }
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        add_errno_problem(r, "serial file", path, ENOMEM);
        return;
    }
    if (stat(dir, &st) != 0)
        add_errno_problem(r, "serial file", path, errno);
    else if (!S_ISDIR(st.st_mode))
        add_errno_problem(r, "serial file", path, ENOTDIR);
    else if (access(dir, W_OK | X_OK) != 0)
        add_errno_problem(r, "serial file", path, errno);
    free(dir);
}

static void check_serial(struct report *r, const cove_config *config)
{
    switch (config->serial_kind) {
    case COVE_CONSOLE_NONE:
        break;
    case COVE_CONSOLE_STDIO:
        /* A closed stdin just means no input; output with nowhere to go is a mistake. */
        check_fd(r, "output", config->serial_out_fd, O_RDONLY, "writing");
        break;
    case COVE_CONSOLE_FDS:
        if (config->serial_in_fd != -1)
            check_fd(r, "input", config->serial_in_fd, O_WRONLY, "reading");
        check_fd(r, "output", config->serial_out_fd, O_RDONLY, "writing");
        break;
    case COVE_CONSOLE_FILE:
        check_serial_file(r, config->serial_path);
        break;
    default:
        add_problem(r, "serial: unknown console kind %d", (int)config->serial_kind);
        break;
    }
}

size_t cove_config_validate(const cove_config *config, cove_problems *problems)
{
    struct report r = {.out = problems};
    if (problems) {
        problems->count = 0;
        problems->messages = NULL;
    }
    if (!config) {
        add_problem(&r, "configuration: missing (cove_config_new() returned NULL?)");
        return r.found;
    }
    check_kernel(&r, config->kernel_path);
    check_initrd(&r, config->initrd_path);
    check_memory(&r, config->memory);
    check_cpus(&r, config->cpus);
    check_cmdline(&r, config->cmdline);
    check_serial(&r, config);
    return r.found;
}

void cove_problems_free(cove_problems *problems)
{
    if (!problems)
        return;
    for (size_t i = 0; i < problems->count; i++)
        free(problems->messages[i]);
    free(problems->messages);
    problems->messages = NULL;
    problems->count = 0;
}
