/*
 * VM configuration: a plain record of what the caller asked for, and a validator that tells
 * them everything that is wrong with it at once, so a user fixes a config in one pass rather
 * than one error per attempt.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
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
/* virtio-blk counts capacity in 512-byte sectors, whatever the image's block size. */
#define DISK_SECTOR_SIZE 512u

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
    config->console_device = COVE_CONSOLE_DEVICE_SERIAL;
    config->entropy = false;
    config->nested_virtualization = false;
    return config;
}

static void free_disks(cove_config *config)
{
    for (size_t i = 0; i < config->disk_count; i++) {
        free(config->disks[i].path);
        free(config->disks[i].serial);
    }
    free(config->disks);
    config->disks = NULL;
    config->disk_count = config->disk_capacity = 0;
}

void cove_config_free(cove_config *config)
{
    if (!config)
        return;
    free(config->kernel_path);
    free(config->initrd_path);
    free(config->cmdline);
    free(config->serial_path);
    free(config->vsock_path);
    free(config->boot_cache_dir);
    free_disks(config);
    config_free_shares(config);
    config_free_network(config);
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

void cove_config_set_console_device(cove_config *config, cove_console_device device)
{
    config->console_device = device;
}

void cove_config_set_nested_virtualization(cove_config *config, bool enabled)
{
    config->nested_virtualization = enabled;
}

void cove_config_set_entropy(cove_config *config, bool enabled)
{
    config->entropy = enabled;
}

/* Makes room for one more disk. */
static int grow_disks(cove_config *config)
{
    if (config->disk_count < config->disk_capacity)
        return 0;
    size_t capacity = config->disk_capacity ? 2 * config->disk_capacity : 4;
    struct cove_disk_config *grown = realloc(config->disks, capacity * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    config->disks = grown;
    config->disk_capacity = capacity;
    return 0;
}

int cove_config_add_disk(cove_config *config, const char *path, const cove_disk_options *options)
{
    static const cove_disk_options defaults = {.read_only = false, .cache = COVE_CACHE_HOST};
    if (!options)
        options = &defaults;
    if (!is_path(path))
        return -EINVAL;
    /* More than COVE_DISK_MAX is recorded for validation to report; an int index is the end. */
    if (config->disk_count >= INT_MAX)
        return -E2BIG;
    if (grow_disks(config) < 0)
        return -ENOMEM;
    struct cove_disk_config disk = {.read_only = options->read_only, .cache = options->cache};
    const char *serial = options->serial && options->serial[0] ? options->serial : NULL;
    if (replace_string(&disk.path, path) || replace_string(&disk.serial, serial)) {
        free(disk.path);
        return -ENOMEM;
    }
    config->disks[config->disk_count] = disk;
    return (int)config->disk_count++;
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

cove_console_device cove_config_console_device(const cove_config *config)
{
    return config->console_device;
}

size_t cove_config_disk_count(const cove_config *config)
{
    return config->disk_count;
}

const char *cove_config_disk(const cove_config *config, size_t index, cove_disk_options *options)
{
    if (index >= config->disk_count)
        return NULL;
    const struct cove_disk_config *disk = &config->disks[index];
    if (options)
        *options = (cove_disk_options){
            .read_only = disk->read_only, .cache = disk->cache, .serial = disk->serial};
    return disk->path;
}

bool cove_config_entropy(const cove_config *config)
{
    return config->entropy;
}

/* Gives copy (whose disks are still the original's) its own copies of them. */
static int copy_disks(cove_config *copy, const cove_config *config)
{
    copy->disks = NULL;
    copy->disk_count = copy->disk_capacity = 0;
    for (size_t i = 0; i < config->disk_count; i++) {
        cove_disk_options options;
        const char *path = cove_config_disk(config, i, &options);
        if (cove_config_add_disk(copy, path, &options) < 0)
            return -ENOMEM;
    }
    return 0;
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
    copy->vsock_path = copy->boot_cache_dir = NULL;
    copy->shares = NULL;
    copy->share_count = 0;
    copy->mac = NULL;
    copy->tap_name = NULL;
    copy->forwards = NULL;
    copy->forward_count = 0;
    if (copy_disks(copy, config) || config_copy_shares(copy, config) ||
        config_copy_network(copy, config) ||
        replace_string(&copy->kernel_path, config->kernel_path) ||
        replace_string(&copy->initrd_path, config->initrd_path) ||
        replace_string(&copy->cmdline, config->cmdline) ||
        replace_string(&copy->serial_path, config->serial_path) ||
        replace_string(&copy->vsock_path, config->vsock_path) ||
        replace_string(&copy->boot_cache_dir, config->boot_cache_dir)) {
        cove_config_free(copy);
        return NULL;
    }
    return copy;
}

int cove_config_set_vsock(cove_config *config, uint64_t guest_cid, const char *uds_path)
{
    if (uds_path && !uds_path[0])
        return -EINVAL;
    if (replace_string(&config->vsock_path, uds_path) < 0)
        return -ENOMEM;
    config->vsock = true;
    config->vsock_cid = guest_cid ? guest_cid : COVE_VSOCK_MIN_CID;
    return 0;
}

int cove_config_set_boot_cache(cove_config *config, const char *dir)
{
    if (dir && !is_path(dir))
        return -EINVAL;
    return replace_string(&config->boot_cache_dir, dir);
}

const char *cove_config_boot_cache(const cove_config *config)
{
    return config->boot_cache_dir;
}

bool cove_config_vsock(const cove_config *config, uint64_t *guest_cid, const char **uds_path)
{
    if (guest_cid)
        *guest_cid = config->vsock_cid;
    if (uds_path)
        *uds_path = config->vsock_path;
    return config->vsock;
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
 * Opens a file for reading, non-blocking so a FIFO given by mistake cannot hang validation.
 * Reports why and returns -1 when it is not readable, or neither a regular file nor (when
 * block_ok) a block device.
 */
static int open_checked(struct report *r, const char *what, const char *path, struct stat *st,
                        bool block_ok)
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
    else if (block_ok && !S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode))
        add_problem(r, "%s '%s': not a regular file or block device", what, path);
    else if (!block_ok && !S_ISREG(st->st_mode))
        add_problem(r, "%s '%s': not a regular file", what, path);
    else
        return fd;
    close(fd);
    return -1;
}

/* Opens a file cove will read whole (kernel, initrd): it must be a readable regular file. */
static int open_input(struct report *r, const char *what, const char *path, struct stat *st)
{
    return open_checked(r, what, path, st, false);
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

/* A file created at VM start: here only its directory has to exist and be writable. */
static void check_parent_dir(struct report *r, const char *what, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        add_errno_problem(r, what, path, ENOMEM);
        return;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        add_errno_problem(r, what, path, errno);
    else if (!S_ISDIR(st.st_mode))
        add_errno_problem(r, what, path, ENOTDIR);
    else if (access(dir, W_OK | X_OK) != 0)
        add_errno_problem(r, what, path, errno);
    free(dir);
}

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
    if (errno != ENOENT)
        add_errno_problem(r, "serial file", path, errno);
    else
        check_parent_dir(r, "serial file", path);
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

static void check_console_device(struct report *r, cove_console_device device)
{
    if (device != COVE_CONSOLE_DEVICE_SERIAL && device != COVE_CONSOLE_DEVICE_VIRTIO)
        add_problem(r, "console: unknown device %d", (int)device);
}

/* What makes two disk paths the same image: the inode, or for a block device the device. */
struct disk_identity {
    bool known; /* false when the image could not be opened */
    bool block;
    dev_t dev;
    ino_t ino;
};

static struct disk_identity identity_of(const struct stat *st)
{
    if (S_ISBLK(st->st_mode))
        return (struct disk_identity){.known = true, .block = true, .dev = st->st_rdev};
    return (struct disk_identity){.known = true, .dev = st->st_dev, .ino = st->st_ino};
}

static bool same_image(const struct disk_identity *a, const struct disk_identity *b)
{
    return a->known && b->known && a->block == b->block && a->dev == b->dev && a->ino == b->ino;
}

/* The image's size in bytes, or -errno. */
static int image_size(int fd, const struct stat *st, uint64_t *size)
{
    if (S_ISBLK(st->st_mode))
        return ioctl(fd, BLKGETSIZE64, size) == 0 ? 0 : -errno;
    *size = (uint64_t)st->st_size;
    return 0;
}

static void check_disk_size(struct report *r, const char *path, int fd, const struct stat *st)
{
    uint64_t size;
    int err = image_size(fd, st, &size);
    if (err)
        add_errno_problem(r, "disk", path, -err);
    else if (size == 0)
        add_problem(r, "disk '%s': empty image (0 bytes)", path);
    else if (size % DISK_SECTOR_SIZE != 0)
        add_problem(r, "disk '%s': size %llu is not a multiple of %u bytes", path,
                    (unsigned long long)size, DISK_SECTOR_SIZE);
}

/*
 * Whether the VM's O_RDWR open would be refused: 0, or why. Asked without opening for
 * writing, because closing a block device opened for writing makes udev rescan it, and
 * validation changes nothing. faccessat(AT_EACCESS) is the kernel's own permission check for
 * the effective user: mode bits (which do not bind root), a read-only file system or
 * read-only bind mount (EROFS), an immutable file (EPERM). A block device can also be set
 * read-only itself (blockdev --setro), which only BLKROGET tells.
 */
static int write_refusal(int fd, const char *path, const struct stat *st)
{
    if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) != 0)
        return errno;
    int read_only = 0;
    if (S_ISBLK(st->st_mode) && ioctl(fd, BLKROGET, &read_only) == 0 && read_only)
        return EROFS;
    return 0;
}

static void check_disk_writable(struct report *r, const char *path, int fd,
                                const struct stat *st)
{
    int err = write_refusal(fd, path, st);
    if (err == EACCES || err == EPERM || err == EROFS)
        add_problem(r, "disk '%s': not writable (attach it read-only with ,ro)", path);
    else if (err)
        add_errno_problem(r, "disk", path, err);
}

/* cache=none opens the image O_DIRECT, which some file systems refuse (EINVAL). */
static void check_direct_io(struct report *r, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    else if (errno == EINVAL)
        add_problem(r, "disk '%s': cache=none (O_DIRECT) is not supported by its file system "
                    "(use cache=host)", path);
    else
        add_errno_problem(r, "disk", path, errno);
}

/* The image itself; records its identity for check_disk_shared. */
static void check_disk_image(struct report *r, const struct cove_disk_config *disk,
                             struct disk_identity *id)
{
    struct stat st;
    int fd = open_checked(r, "disk", disk->path, &st, true);
    if (fd < 0)
        return;
    *id = identity_of(&st);
    check_disk_size(r, disk->path, fd, &st);
    if (!disk->read_only)
        check_disk_writable(r, disk->path, fd, &st);
    if (disk->cache == COVE_CACHE_NONE)
        check_direct_io(r, disk->path);
    close(fd);
}

static void check_disk_options(struct report *r, const struct cove_disk_config *disk)
{
    if (disk->cache != COVE_CACHE_HOST && disk->cache != COVE_CACHE_NONE)
        add_problem(r, "disk '%s': unknown cache mode %d", disk->path, (int)disk->cache);
    if (disk->serial && strlen(disk->serial) > COVE_DISK_SERIAL_MAX)
        add_problem(r, "disk '%s': serial '%s' is longer than %d bytes", disk->path,
                    disk->serial, COVE_DISK_SERIAL_MAX);
}

/*
 * Disk index against the ones before it: one image attached twice is only safe when every
 * attachment is read-only; otherwise the guest would corrupt it through two caches.
 */
static void check_disk_shared(struct report *r, const cove_config *config,
                              const struct disk_identity *ids, size_t index)
{
    const struct cove_disk_config *disk = &config->disks[index];
    for (size_t i = 0; i < index; i++) {
        const struct cove_disk_config *other = &config->disks[i];
        if (!same_image(&ids[index], &ids[i]) || (disk->read_only && other->read_only))
            continue;
        add_problem(r, "disk '%s': the same image as disk %zu '%s', attached read-write "
                    "(attach both read-only)", disk->path, i, other->path);
        return;
    }
}

static void check_disks(struct report *r, const cove_config *config)
{
    size_t count = config->disk_count;
    if (count > COVE_DISK_MAX)
        add_problem(r, "disks: %zu is more than cove's limit of %d", count, COVE_DISK_MAX);
    if (count == 0)
        return;
    struct disk_identity *ids = calloc(count, sizeof(*ids));
    if (!ids) {
        add_problem(r, "disks: out of memory while checking them");
        return;
    }
    for (size_t i = 0; i < count; i++) {
        check_disk_image(r, &config->disks[i], &ids[i]);
        check_disk_options(r, &config->disks[i]);
        check_disk_shared(r, config, ids, i);
    }
    free(ids);
}

static void add_share_problem(void *report, const char *message)
{
    add_problem(report, "%s", message);
}

/* The socket is bound at VM start; like Firecracker, cove never replaces an existing file. */
static void check_vsock(struct report *r, const cove_config *config)
{
    if (!config->vsock)
        return;
    if (config->vsock_cid < COVE_VSOCK_MIN_CID || config->vsock_cid > COVE_VSOCK_MAX_CID)
        add_problem(r, "vsock: guest CID %llu is reserved or too large (use %u to %u)",
                    (unsigned long long)config->vsock_cid, COVE_VSOCK_MIN_CID,
                    COVE_VSOCK_MAX_CID);
    const char *path = config->vsock_path;
    if (!path)
        return;
    struct stat st;
    if (strlen(path) > COVE_VSOCK_PATH_MAX)
        add_problem(r, "vsock socket '%s': longer than %d bytes (use a shorter path)", path,
                    COVE_VSOCK_PATH_MAX);
    else if (lstat(path, &st) == 0)
        add_problem(r, "vsock socket '%s': already exists (remove it or pick another path)",
                    path);
    else if (errno != ENOENT)
        add_errno_problem(r, "vsock socket", path, errno);
    else
        check_parent_dir(r, "vsock socket", path);
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
    check_console_device(&r, config->console_device);
    check_disks(&r, config);
    check_vsock(&r, config);
    config_check_shares(config, add_share_problem, &r);
    config_check_network(config, add_share_problem, &r);
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
