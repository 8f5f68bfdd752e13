/*
 * virtio_garbage: a hostile virtio driver, run as root inside a Cove guest by the e2e cases
 * (cases/106-hostile-guest.sh, cases/101-disk-readonly.sh). Built static, like cove-agent.
 *
 * It takes one virtio PCI function away from its Linux driver (sysfs unbind), maps BAR 0 and
 * drives the modern virtio-pci transport by hand: it negotiates, then breaks every rule it can
 * (read-only and non-existent registers, feature negotiation, queue sizes, rings outside RAM,
 * on the device's own BAR or misaligned, descriptor loops, huge and wrapping lengths, bad
 * `next` and head indices, bad indirect tables, too many segments, malformed block requests,
 * a reset with I/O in flight, the PCI configuration access window, MSI-X messages that point
 * nowhere, notify writes of every width), resetting the device after each attempt; and races:
 * a descriptor rewritten while the device reads it, a second vCPU resetting, kicking and moving
 * rings while the first sends requests, reset storms with several requests in flight. Rings
 * live in locked anonymous pages whose guest-physical addresses come from /proc/self/pagemap.
 * Every address handed to the device is one of those pages or outside RAM, so the guest's own
 * memory is never at risk.
 *
 * A valid request before and after the garbage shows that the raw driver really reaches the
 * device (so "nothing happened" is not mistaken for "the device coped") and that a reset
 * brings it back. With --rebind the Linux driver gets the device back and is used: the disk
 * is read (and one sector written), or /dev/hwrng read.
 *
 *   virtio_garbage blk DISK [--rebind]   DISK (e.g. vdb) must hold "SECTOR-%08u" at the start
 *                                        of each 512-byte sector N; with --rebind sector 7 is
 *                                        rewritten through Linux as "REBOUND-WRITE-7" (padded
 *                                        with spaces to a final newline, like the pattern)
 *   virtio_garbage rng [--rebind]
 *   virtio_garbage console [--rebind]    virtio-console (the case boots with --console hvc, so
 *                                        run it with SIGHUP ignored and stdout in a file: the
 *                                        unbind hangs up hvc0). Raw transmits show on cove's
 *                                        stdout as "VG-CONSOLE-TX-OK", "VG-CONSOLE-FEED-ME"
 *                                        (then the case must feed stdin with lines holding
 *                                        "RX-0123456789abcdef"), "VG-CONSOLE-TX-AFTER"; after
 *                                        --rebind, "VG-CONSOLE-REBOUND" goes out as a kernel
 *                                        message through the console
 *   virtio_garbage write-probe DISK      one write request of "GARBAGE-WRITE" to sector 0, then
 *                                        a read of it (for a read-only disk: IOERR expected)
 *
 * Output: "vg: ..." lines, one per attempt with what the device did, then "VG-RESULT=ok" or
 * "VG-RESULT=fail unexpected=N". The exit status is 0 only when every check held. Outcomes it
 * expects (NEEDS_RESET for a broken ring, IOERR/UNSUPP for a bad request) follow the virtio
 * 1.2 spec and Cove's documented choices (src/lib/virtio/queue.c, blk_req.c, rng.c).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define POOL_PAGES 320u

/* virtio-pci common configuration (virtio 1.2, 4.1.4.3), Cove's BAR 0 layout. */
#define C_DFSELECT 0x00
#define C_DF 0x04
#define C_GFSELECT 0x08
#define C_GF 0x0c
#define C_MSIX 0x10
#define C_NUMQ 0x12
#define C_STATUS 0x14
#define C_CFGGEN 0x15
#define C_Q_SELECT 0x16
#define C_Q_SIZE 0x18
#define C_Q_MSIX 0x1a
#define C_Q_ENABLE 0x1c
#define C_Q_NOFF 0x1e
#define C_Q_DESC 0x20
#define C_Q_DRIVER 0x28
#define C_Q_DEVICE 0x30
#define ISR_OFF 0x1000
#define DEVCFG_OFF 0x2000
#define NOTIFY_OFF 0x3000
#define NOTIFY_MUL 4
#define BAR0_SIZE 0x4000

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64
#define S_FAILED 128

#define F_INDIRECT (1ULL << 28)
#define F_EVENT_IDX (1ULL << 29)
#define F_VERSION_1 (1ULL << 32)
#define BLK_F_RO (1ULL << 5)

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

#define NO_VECTOR 0xffff

/* How long to wait for the device to react (it runs on the VMM's I/O thread). */
#define REACT_MS 5000
#define QUIET_MS 300

static int unexpected;
static int attempts;
static const char *who = "?";
/* The queue the ring attacks go to: one the device pops on a kick (virtio-console's
 * transmitq; its receiveq is popped only when host input waits). */
static unsigned attack_q;
/* Request headers as printable text: virtio-console writes what it pops to cove's stdout. */
static bool printable_headers;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("vg: %s: ", who);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

/* Records a check; a false one counts as unexpected and says so. */
static bool expect(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool expect(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("vg: %s: %s", who, ok ? "" : "UNEXPECTED: ");
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
    if (!ok)
        unexpected++;
    return ok;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("vg: %s: FATAL: ", who);
    vprintf(fmt, ap);
    printf("\nVG-RESULT=fail fatal\n");
    fflush(stdout);
    va_end(ap);
    exit(1);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- sysfs ---- */

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n < 0 ? -errno : 0;
    close(fd);
    return err;
}

static int read_text(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = 0;
    return err;
}

/* ---- DMA memory: locked pages and their guest-physical addresses ---- */

struct page {
    uint8_t *va;
    uint64_t pa;
};

static struct page pool[POOL_PAGES];
static unsigned pool_used;

static void pool_init(void)
{
    uint8_t *base = mmap(NULL, POOL_PAGES * PAGE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
    if (base == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    if (mlock(base, POOL_PAGES * PAGE) != 0)
        die("mlock: %s", strerror(errno));
    memset(base, 0, POOL_PAGES * PAGE);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("/proc/self/pagemap: %s", strerror(errno));
    for (unsigned i = 0; i < POOL_PAGES; i++) {
        uint64_t entry = 0;
        uintptr_t va = (uintptr_t)(base + (size_t)i * PAGE);
        if (pread(fd, &entry, 8, (off_t)(va / PAGE * 8)) != 8)
            die("pagemap read: %s", strerror(errno));
        uint64_t pfn = entry & ((1ULL << 55) - 1);
        if (!(entry >> 63) || pfn == 0)
            die("page %u not present or no PFN (pagemap entry %#llx; root needed)", i,
                (unsigned long long)entry);
        pool[i] = (struct page){base + (size_t)i * PAGE, pfn * PAGE};
    }
    close(fd);
}

/* A fresh zeroed page; the pool starts over at each attempt (the device was reset). */
static struct page *page_new(void)
{
    if (pool_used == POOL_PAGES)
        die("page pool exhausted");
    struct page *p = &pool[pool_used++];
    memset(p->va, 0, PAGE);
    return p;
}

static void pool_rewind(void) { pool_used = 0; }

/* ---- the PCI function ---- */

struct dev {
    char addr[64];
    char sys[160];
    unsigned device_id; /* PCI device id */
    volatile uint8_t *bar0;
    uint64_t bar0_pa;
    int cfg_fd;
    uint16_t command; /* as found, restored before rebinding */
    uint16_t num_queues;
    uint64_t features; /* offered */
    uint64_t ram_end;  /* end of the highest System RAM range */
};

static uint8_t r8(struct dev *d, unsigned off) { return *(volatile uint8_t *)(d->bar0 + off); }
static uint16_t r16(struct dev *d, unsigned off) { return *(volatile uint16_t *)(d->bar0 + off); }
static uint32_t r32(struct dev *d, unsigned off) { return *(volatile uint32_t *)(d->bar0 + off); }
static uint64_t r64(struct dev *d, unsigned off) { return *(volatile uint64_t *)(d->bar0 + off); }
static void w8(struct dev *d, unsigned off, uint8_t v) { *(volatile uint8_t *)(d->bar0 + off) = v; }
static void w16(struct dev *d, unsigned off, uint16_t v) { *(volatile uint16_t *)(d->bar0 + off) = v; }
static void w32(struct dev *d, unsigned off, uint32_t v) { *(volatile uint32_t *)(d->bar0 + off) = v; }
static void w64(struct dev *d, unsigned off, uint64_t v) { *(volatile uint64_t *)(d->bar0 + off) = v; }

/* 64-bit registers as Linux writes them: two 32-bit halves. */
static void w64h(struct dev *d, unsigned off, uint64_t v)
{
    w32(d, off, (uint32_t)v);
    w32(d, off + 4, (uint32_t)(v >> 32));
}

static uint32_t cfg_read(struct dev *d, unsigned off, unsigned size)
{
    uint32_t v = 0;
    if (pread(d->cfg_fd, &v, size, off) != (ssize_t)size)
        die("config read at %#x: %s", off, strerror(errno));
    return v;
}

static void cfg_write(struct dev *d, unsigned off, unsigned size, uint32_t v)
{
    if (pwrite(d->cfg_fd, &v, size, off) != (ssize_t)size)
        die("config write at %#x: %s", off, strerror(errno));
}

/* The offset of the first capability with id (and, for vendor ones, cfg_type), or 0. */
static unsigned find_cap(struct dev *d, uint8_t id, int cfg_type)
{
    unsigned pos = cfg_read(d, 0x34, 1) & 0xfc;
    for (int guard = 0; pos && guard < 48; guard++) {
        uint8_t cap_id = (uint8_t)cfg_read(d, pos, 1);
        if (cap_id == id && (cfg_type < 0 || cfg_read(d, pos + 3, 1) == (unsigned)cfg_type))
            return pos;
        pos = cfg_read(d, pos + 1, 1) & 0xfc;
    }
    return 0;
}

static uint64_t resource_start(struct dev *d, unsigned bar, uint64_t *size)
{
    char path[256], buf[1024];
    snprintf(path, sizeof(path), "%s/resource", d->sys);
    if (read_text(path, buf, sizeof(buf)) != 0)
        die("cannot read %s", path);
    char *line = buf;
    for (unsigned i = 0; i < bar && line; i++) {
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    unsigned long long start = 0, end = 0;
    if (!line || sscanf(line, "%llx %llx", &start, &end) != 2 || !start)
        die("no BAR %u in %s", bar, path);
    *size = end - start + 1;
    return start;
}

static volatile uint8_t *map_bar(struct dev *d, unsigned bar, size_t size)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/resource%u", d->sys, bar);
    int fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap %s: %s", path, strerror(errno));
    close(fd);
    return p;
}

static uint64_t find_ram_end(void)
{
    FILE *f = fopen("/proc/iomem", "r");
    if (!f)
        die("/proc/iomem: %s", strerror(errno));
    char line[256];
    uint64_t end_max = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long s, e;
        if (line[0] != ' ' && strstr(line, "System RAM") && sscanf(line, "%llx-%llx", &s, &e) == 2 &&
            e + 1 > end_max)
            end_max = e + 1;
    }
    fclose(f);
    if (!end_max)
        die("no System RAM in /proc/iomem (root needed)");
    return end_max;
}

/* The PCI address behind a block device, from /sys/block/DISK/device (virtioN) -> parent. */
static void addr_of_disk(const char *disk, char *addr, size_t len)
{
    char path[256], real[4096]; /* realpath() writes up to PATH_MAX */
    snprintf(path, sizeof(path), "/sys/block/%s/device/..", disk);
    if (!realpath(path, real))
        die("%s: %s", path, strerror(errno));
    const char *base = strrchr(real, '/');
    base = base ? base + 1 : real;
    if (strlen(base) >= len)
        die("PCI address '%s' too long", base);
    memcpy(addr, base, strlen(base) + 1);
}

/* The first virtio function with PCI device id `id`. */
static bool addr_of_id(unsigned id, char *addr, size_t len)
{
    for (unsigned slot = 0; slot < 32; slot++) {
        char path[128], buf[32];
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/0000:00:%02x.0/vendor", slot);
        if (read_text(path, buf, sizeof(buf)) != 0 || strtoul(buf, NULL, 0) != 0x1af4)
            continue;
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/0000:00:%02x.0/device", slot);
        if (read_text(path, buf, sizeof(buf)) == 0 && strtoul(buf, NULL, 0) == id) {
            snprintf(addr, len, "0000:00:%02x.0", slot);
            return true;
        }
    }
    return false;
}

static void dev_open(struct dev *d, const char *addr)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->addr, sizeof(d->addr), "%s", addr);
    snprintf(d->sys, sizeof(d->sys), "/sys/bus/pci/devices/%s", addr);
    char path[256], buf[64];
    snprintf(path, sizeof(path), "%s/device", d->sys);
    if (read_text(path, buf, sizeof(buf)) != 0)
        die("no PCI device %s", addr);
    d->device_id = (unsigned)strtoul(buf, NULL, 0);

    snprintf(path, sizeof(path), "%s/driver/unbind", d->sys);
    int r = write_text(path, addr);
    say("unbind %s (device %#x) from its driver: %s", addr, d->device_id, r ? strerror(-r) : "done");
    if (r)
        die("unbind failed");

    snprintf(path, sizeof(path), "%s/config", d->sys);
    d->cfg_fd = open(path, O_RDWR | O_CLOEXEC);
    if (d->cfg_fd < 0)
        die("open %s: %s", path, strerror(errno));
    /* The driver's removal may leave memory decoding and bus mastering off: turn them on. */
    d->command = (uint16_t)cfg_read(d, 4, 2);
    cfg_write(d, 4, 2, d->command | 0x6);
    uint64_t size;
    d->bar0_pa = resource_start(d, 0, &size);
    if (size < BAR0_SIZE)
        die("BAR 0 is %#llx bytes, expected at least %#x", (unsigned long long)size, BAR0_SIZE);
    d->bar0 = map_bar(d, 0, BAR0_SIZE);
    d->ram_end = find_ram_end();
    d->num_queues = r16(d, C_NUMQ);
    w32(d, C_DFSELECT, 0);
    uint64_t lo = r32(d, C_DF);
    w32(d, C_DFSELECT, 1);
    d->features = lo | (uint64_t)r32(d, C_DF) << 32;
    say("BAR 0 at %#llx, %u queue(s), features %#llx, RAM ends at %#llx", (unsigned long long)d->bar0_pa,
        d->num_queues, (unsigned long long)d->features, (unsigned long long)d->ram_end);
    if (!expect(d->num_queues > 0 && (d->features & F_VERSION_1),
                "the common configuration is where it should be (queues > 0, VERSION_1 offered)"))
        die("not a modern virtio-pci function at BAR 0");
}

/* Writes 0 to device_status and checks the reset completed (status reads back 0). */
static void reset(struct dev *d)
{
    w8(d, C_STATUS, 0);
    long long end = now_ms() + REACT_MS;
    while (r8(d, C_STATUS) != 0 && now_ms() < end)
        sleep_ms(1);
    uint8_t s = r8(d, C_STATUS);
    if (s != 0)
        expect(false, "reset: status reads %#x, not 0", s);
}

/* Reset, ACK, DRIVER, features, FEATURES_OK. Returns whether FEATURES_OK stuck. */
static bool negotiate(struct dev *d, uint64_t features)
{
    reset(d);
    w8(d, C_STATUS, S_ACK);
    w8(d, C_STATUS, S_ACK | S_DRIVER);
    w32(d, C_GFSELECT, 0);
    w32(d, C_GF, (uint32_t)features);
    w32(d, C_GFSELECT, 1);
    w32(d, C_GF, (uint32_t)(features >> 32));
    w8(d, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    return r8(d, C_STATUS) & S_FEATURES_OK;
}

static void driver_ok(struct dev *d)
{
    w8(d, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static void kick(struct dev *d, unsigned q) { w16(d, NOTIFY_OFF + q * NOTIFY_MUL, (uint16_t)q); }

/* Waits until device_status has NEEDS_RESET. */
static bool wait_needs_reset(struct dev *d, int ms)
{
    long long end = now_ms() + ms;
    do {
        if (r8(d, C_STATUS) & S_NEEDS_RESET)
            return true;
        sleep_ms(1);
    } while (now_ms() < end);
    return false;
}

/* ---- virtqueues in pool pages ---- */

struct vq {
    unsigned index;
    uint16_t size;
    struct page *desc, *avail, *used;
    uint16_t avail_idx; /* published */
    uint16_t used_seen;
};

static void vq_new(struct vq *q, unsigned index, uint16_t size)
{
    *q = (struct vq){.index = index, .size = size};
    q->desc = page_new();
    q->avail = page_new();
    q->used = page_new();
}

/* Programs the queue's registers with explicit addresses (garbage allowed). */
static void vq_program_at(struct dev *d, unsigned index, uint16_t size, uint64_t desc,
                          uint64_t avail, uint64_t used)
{
    w16(d, C_Q_SELECT, (uint16_t)index);
    w16(d, C_Q_SIZE, size);
    w16(d, C_Q_MSIX, NO_VECTOR);
    w64h(d, C_Q_DESC, desc);
    w64h(d, C_Q_DRIVER, avail);
    w64h(d, C_Q_DEVICE, used);
    w16(d, C_Q_ENABLE, 1);
}

static void vq_program(struct dev *d, struct vq *q)
{
    vq_program_at(d, q->index, q->size, q->desc->pa, q->avail->pa, q->used->pa);
}

static void desc_set(uint8_t *table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t *e = table + (size_t)i * 16;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &len, 4);
    memcpy(e + 12, &flags, 2);
    memcpy(e + 14, &next, 2);
}

static void vq_desc(struct vq *q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    desc_set(q->desc->va, i, addr, len, flags, next);
}

static volatile uint16_t *avail_idx_ptr(struct vq *q) { return (volatile uint16_t *)(q->avail->va + 2); }
static volatile uint16_t *used_idx_ptr(struct vq *q) { return (volatile uint16_t *)(q->used->va + 2); }

/* Makes head available (avail->ring, then avail->idx, release-ordered). */
static void vq_publish(struct vq *q, uint16_t head)
{
    uint16_t *ring = (uint16_t *)(void *)(q->avail->va + 4);
    ring[q->avail_idx % q->size] = head;
    q->avail_idx++;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *avail_idx_ptr(q) = q->avail_idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Waits for the next used element; false on timeout. */
static bool vq_wait_used(struct vq *q, int ms, uint32_t *id, uint32_t *len)
{
    long long end = now_ms() + ms;
    do {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (*used_idx_ptr(q) != q->used_seen) {
            const uint8_t *e = q->used->va + 4 + 8 * (q->used_seen % q->size);
            uint32_t i, l;
            memcpy(&i, e, 4);
            memcpy(&l, e + 4, 4);
            if (id)
                *id = i;
            if (len)
                *len = l;
            q->used_seen++;
            return true;
        }
        sleep_ms(1);
    } while (now_ms() < end);
    return false;
}

/* Sets the device up with these queues; false when it refused (no FEATURES_OK, or NEEDS_RESET). */
static bool start(struct dev *d, uint64_t features, struct vq *qs, unsigned nq)
{
    if (!negotiate(d, features))
        return false;
    for (unsigned i = 0; i < nq; i++)
        vq_program(d, &qs[i]);
    driver_ok(d);
    return (r8(d, C_STATUS) & (S_DRIVER_OK | S_NEEDS_RESET)) == S_DRIVER_OK;
}

/* Negotiated features for the ring attacks: what Linux would take, minus event idx. */
static uint64_t ring_features(struct dev *d) { return d->features & (F_VERSION_1 | F_INDIRECT); }

/* One attempt: the pool starts over and the device is reset at the end. */
static void begin(const char *name)
{
    attempts++;
    pool_rewind();
    say("-- %s", name);
}

/* ---- transport attacks (every device type) ---- */

static void attack_register_sweep(struct dev *d)
{
    begin("read every register width at every offset, and unused parts of BAR 0");
    static const unsigned widths[] = {1, 2, 4, 8};
    volatile uint64_t sink = 0;
    for (unsigned w = 0; w < 4; w++)
        for (unsigned off = 0; off + widths[w] <= 0x48; off++) {
            switch (widths[w]) {
            case 1: sink += r8(d, off); break;
            case 2: sink += r16(d, off); break;
            case 4: sink += r32(d, off); break;
            default: sink += r64(d, off); break;
            }
        }
    static const unsigned spots[] = {0x40, 0x100, 0xff8, 0x1000, 0x1001, 0x1004, 0x1ff8, 0x2000,
                                     0x2004, 0x2038, 0x203c, 0x2040, 0x2ff8, 0x3000, 0x3002,
                                     0x3004, 0x3008, 0x3100, 0x3ff8};
    for (unsigned i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        sink += r8(d, spots[i]);
        sink += r16(d, spots[i]);
        sink += r32(d, spots[i]);
        sink += r64(d, spots[i]);
    }
    (void)sink;
    expect(r16(d, C_NUMQ) == d->num_queues, "still %u queue(s) after %s", d->num_queues, "the sweep");
}

static void attack_readonly_writes(struct dev *d)
{
    begin("writes to read-only registers, the device config, ISR and holes; odd widths");
    w32(d, C_DF, 0xffffffff);
    w16(d, C_NUMQ, 0xffff);
    w8(d, C_CFGGEN, 0xff);
    w16(d, C_Q_NOFF, 0xffff);
    w8(d, ISR_OFF, 0xff);
    w32(d, ISR_OFF, 0xffffffff);
    for (unsigned off = DEVCFG_OFF; off < DEVCFG_OFF + 0x48; off += 4)
        w32(d, off, 0xdeadbeef);
    w64(d, DEVCFG_OFF, ~0ULL);
    for (unsigned off = 0x38; off < 0x48; off++)
        w8(d, off, 0xa5);
    w16(d, C_CFGGEN, 0xffff);      /* misaligned, over config_generation and queue_select */
    w32(d, C_STATUS - 1, 0x55555555); /* misaligned over several registers */
    reset(d);
    w8(d, C_Q_DESC + 1, 0x77);      /* a byte inside a 64-bit register */
    w16(d, C_Q_DESC + 3, 0x7777);   /* misaligned halfword */
    w64(d, C_Q_DESC, 0x1234567890abcdefULL);
    w64(d, C_Q_SIZE, ~0ULL);        /* an 8-byte write over size, vector, enable, notify_off */
    w32(d, 0x0ffc, 0);              /* the last dword of the first page */
    w64(d, 0x1ff8, ~0ULL);
    w64(d, 0x3ff8, ~0ULL);
    w32(d, C_DFSELECT, 0);
    uint64_t lo = r32(d, C_DF);
    w32(d, C_DFSELECT, 1);
    uint64_t f = lo | (uint64_t)r32(d, C_DF) << 32;
    expect(f == d->features && r16(d, C_NUMQ) == d->num_queues,
           "device features and queue count unchanged (%#llx, %u)", (unsigned long long)f, r16(d, C_NUMQ));
    reset(d);
}

static void attack_features(struct dev *d)
{
    begin("feature negotiation: every bit, no VERSION_1, DRIVER_OK without FEATURES_OK");
    bool ok = negotiate(d, ~0ULL);
    expect(!ok, "all 64 feature bits: FEATURES_OK %s", ok ? "accepted" : "refused");
    ok = negotiate(d, d->features & ~F_VERSION_1);
    expect(!ok, "features without VERSION_1: FEATURES_OK %s", ok ? "accepted" : "refused");
    reset(d);
    w8(d, C_STATUS, S_ACK | S_DRIVER | S_DRIVER_OK);
    uint8_t s = r8(d, C_STATUS);
    expect(!(s & S_DRIVER_OK), "DRIVER_OK without FEATURES_OK: status %#x", s);
    reset(d);
    /* Feature select beyond the two defined words, then the features change after FEATURES_OK. */
    w32(d, C_GFSELECT, 0xffffffff);
    w32(d, C_GF, 0xffffffff);
    w32(d, C_DFSELECT, 7);
    uint32_t beyond = r32(d, C_DF);
    expect(beyond == 0, "device feature word 7 reads %#x", beyond);
    ok = negotiate(d, F_VERSION_1);
    w32(d, C_GFSELECT, 0);
    w32(d, C_GF, 0xffffffff);
    uint32_t after = r32(d, C_GF);
    expect(ok && after == 0, "features are fixed after FEATURES_OK (word 0 reads %#x)", after);
    /* Garbage status values, including FAILED and NEEDS_RESET set by the driver. */
    w8(d, C_STATUS, 0xff);
    w8(d, C_STATUS, S_FAILED);
    w8(d, C_STATUS, 0x7f);
    reset(d);
}

static void attack_queue_registers(struct dev *d)
{
    begin("queue registers: bad queue_select, sizes 0/3/huge, bad MSI-X vectors");
    reset(d);
    w8(d, C_STATUS, S_ACK | S_DRIVER);
    w16(d, C_Q_SELECT, d->num_queues);
    uint16_t size = r16(d, C_Q_SIZE);
    expect(size == 0, "queue %u (one past the last) has size %u", d->num_queues, size);
    w16(d, C_Q_SELECT, 0xffff);
    w16(d, C_Q_SIZE, 16);
    w64h(d, C_Q_DESC, ~0ULL);
    w16(d, C_Q_ENABLE, 1);
    size = r16(d, C_Q_SIZE);
    uint16_t enabled = r16(d, C_Q_ENABLE);
    expect(size == 0 && enabled == 0, "queue 0xffff: size %u, enable %u", size, enabled);
    w16(d, C_Q_SELECT, 0);
    uint16_t max = r16(d, C_Q_SIZE);
    w16(d, C_Q_SIZE, 0);
    w16(d, C_Q_SIZE, 0xffff);
    size = r16(d, C_Q_SIZE);
    expect(size == max, "sizes 0 and 0xffff ignored (size %u, max %u)", size, max);
    w16(d, C_MSIX, 0x7ff);
    w16(d, C_Q_MSIX, 0x1234);
    uint16_t cv = r16(d, C_MSIX), qv = r16(d, C_Q_MSIX);
    expect(cv == NO_VECTOR && qv == NO_VECTOR, "impossible MSI-X vectors read back %#x, %#x", cv, qv);
    w16(d, C_Q_ENABLE, 0xffff);
    reset(d);

    /* A size that is not a power of two, with real rings: the device must refuse the queue. */
    struct vq q;
    vq_new(&q, 0, 3);
    bool live = start(d, ring_features(d), &q, 1);
    bool nr = wait_needs_reset(d, REACT_MS);
    expect(!live && nr, "queue size 3 at DRIVER_OK: %s", nr ? "NEEDS_RESET" : "accepted");
    kick(d, 0);
    reset(d);
}

static void attack_kicks(struct dev *d)
{
    begin("notify writes of every width and offset, before and after DRIVER_OK");
    reset(d);
    for (unsigned off = 0; off < 0x40; off++) {
        w8(d, NOTIFY_OFF + off, (uint8_t)off);
        if (off % 2 == 0)
            w16(d, NOTIFY_OFF + off, 0xffff);
        if (off % 4 == 0)
            w32(d, NOTIFY_OFF + off, 0xffffffff);
        if (off % 8 == 0)
            w64(d, NOTIFY_OFF + off, ~0ULL);
    }
    struct vq q;
    vq_new(&q, 0, 16);
    expect(start(d, ring_features(d), &q, 1), "a valid empty queue goes live");
    for (unsigned i = 0; i < 2000; i++)
        kick(d, i % (d->num_queues + 2u));
    w32(d, NOTIFY_OFF + 0xffc, 0);
    sleep_ms(QUIET_MS);
    uint8_t s = r8(d, C_STATUS);
    expect(!(s & S_NEEDS_RESET) && *used_idx_ptr(&q) == 0,
           "2000 kicks of an empty ring: status %#x, used idx %u", s, *used_idx_ptr(&q));
    reset(d);
}

/* ---- ring attacks ---- */

/* Rings whose addresses are wrong: the device must refuse them at DRIVER_OK. */
static void attack_ring_addresses(struct dev *d)
{
    struct page *ok_desc = NULL, *ok_avail = NULL, *ok_used = NULL;
    struct {
        const char *name;
        int which; /* 0 desc, 1 avail, 2 used */
        uint64_t addr;
    } cases[] = {
        {"descriptor table at 1 TiB (outside RAM)", 0, 1ULL << 40},
        {"avail ring at 1 TiB", 1, 1ULL << 40},
        {"used ring at 1 TiB", 2, 1ULL << 40},
        {"descriptor table straddling the end of RAM", 0, 0},
        {"used ring straddling the end of RAM", 2, 0},
        {"descriptor table on the device's own BAR 0", 0, 0},
        {"used ring on the device's own BAR 0", 2, 0},
        {"descriptor table at 2^64 - 16", 0, ~0ULL - 15},
        {"misaligned descriptor table (+8)", 0, 0},
        {"misaligned used ring (+2)", 2, 0},
        /* Rings the device writes over what it reads: without the check the used ring's index
         * became the avail ring's and the I/O thread drained it forever. */
        {"used ring on the avail ring", 2, 0},
        {"used ring on the descriptor table", 2, 0},
    };
    cases[3].addr = d->ram_end - 64;
    cases[4].addr = d->ram_end - 64;
    cases[5].addr = d->bar0_pa;
    cases[6].addr = d->bar0_pa + NOTIFY_OFF;
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        begin(cases[i].name);
        ok_desc = page_new();
        ok_avail = page_new();
        ok_used = page_new();
        uint64_t a[3] = {ok_desc->pa, ok_avail->pa, ok_used->pa};
        if (i == 8)
            a[0] += 8;
        else if (i == 9)
            a[2] += 2;
        else if (i == 10)
            a[2] = a[1];
        else if (i == 11)
            a[2] = a[0] + 64;
        else
            a[cases[i].which] = cases[i].addr;
        if (!negotiate(d, ring_features(d))) {
            expect(false, "FEATURES_OK refused for valid features");
            continue;
        }
        vq_program_at(d, attack_q, 16, a[0], a[1], a[2]);
        driver_ok(d);
        kick(d, attack_q);
        bool nr = wait_needs_reset(d, REACT_MS);
        expect(nr, "%s", nr ? "NEEDS_RESET" : "no NEEDS_RESET: the device took the ring");
        for (int k = 0; k < 100; k++)
            kick(d, attack_q);
        reset(d);
    }
}

/* A chain builder for one attempt: fills the queue's table, publishes head 0 (or `head`),
 * kicks, and expects NEEDS_RESET. */
typedef void (*chain_fn)(struct dev *d, struct vq *q);

static void expect_broken(struct dev *d, const char *name, chain_fn build, uint16_t size)
{
    begin(name);
    struct vq q;
    vq_new(&q, attack_q, size);
    if (!expect(start(d, ring_features(d), &q, 1), "queue goes live")) {
        reset(d);
        return;
    }
    build(d, &q);
    kick(d, q.index);
    bool nr = wait_needs_reset(d, REACT_MS);
    uint32_t id, len;
    bool used = vq_wait_used(&q, 0, &id, &len);
    expect(nr && !used, "%s%s", nr ? "NEEDS_RESET" : "no NEEDS_RESET",
           used ? ", and a used element came back" : "");
    for (int k = 0; k < 50; k++)
        kick(d, q.index);
    reset(d);
}

static uint64_t data_pa(void) { return page_new()->pa; }

static void chain_loop2(struct dev *d, struct vq *q)
{
    (void)d;
    uint64_t a = data_pa(), b = data_pa();
    vq_desc(q, 0, a, 16, D_NEXT, 1);
    vq_desc(q, 1, b, 16, D_NEXT | D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_self_loop(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 5, data_pa(), 1, D_NEXT | D_WRITE, 5);
    vq_publish(q, 5);
}

static void chain_huge_len(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, data_pa(), 0xffffffffu, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_outside_ram(struct dev *d, struct vq *q)
{
    vq_desc(q, 0, d->ram_end + (1ULL << 30), 512, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_on_bar(struct dev *d, struct vq *q)
{
    vq_desc(q, 0, d->bar0_pa + C_STATUS, 1, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_wrapping(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, 0xfffffffffffff000ULL, 0x2000, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_straddle_ram_end(struct dev *d, struct vq *q)
{
    vq_desc(q, 0, d->ram_end - 256, 512, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_bad_next(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, data_pa(), 16, D_NEXT, 0xffff);
    vq_publish(q, 0);
}

static void chain_bad_head(struct dev *d, struct vq *q)
{
    (void)d;
    vq_publish(q, 0xfff0);
}

static void chain_idx_jump(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, data_pa(), 16, D_WRITE, 0);
    vq_publish(q, 0);
    q->avail_idx = 0x8000;
    *avail_idx_ptr(q) = q->avail_idx;
}

static void chain_order(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, data_pa(), 16, D_WRITE | D_NEXT, 1);
    vq_desc(q, 1, data_pa(), 16, D_NEXT, 2);
    vq_desc(q, 2, data_pa(), 1, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_indirect_loop(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new();
    desc_set(t->va, 0, data_pa(), 16, D_NEXT, 1);
    desc_set(t->va, 1, data_pa(), 16, D_NEXT, 2);
    desc_set(t->va, 2, data_pa(), 16, D_NEXT, 0);
    vq_desc(q, 0, t->pa, 3 * 16, D_INDIRECT, 0);
    vq_publish(q, 0);
}

static void chain_indirect_odd_len(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new();
    desc_set(t->va, 0, data_pa(), 16, D_WRITE, 0);
    vq_desc(q, 0, t->pa, 17, D_INDIRECT, 0);
    vq_publish(q, 0);
}

static void chain_indirect_nested(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new(), *t2 = page_new();
    desc_set(t2->va, 0, data_pa(), 16, D_WRITE, 0);
    desc_set(t->va, 0, t2->pa, 16, D_INDIRECT, 0);
    vq_desc(q, 0, t->pa, 16, D_INDIRECT, 0);
    vq_publish(q, 0);
}

static void chain_indirect_with_next(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new();
    desc_set(t->va, 0, data_pa(), 16, D_WRITE, 0);
    vq_desc(q, 0, t->pa, 16, D_INDIRECT | D_NEXT, 1);
    vq_desc(q, 1, data_pa(), 16, D_WRITE, 0);
    vq_publish(q, 0);
}

static void chain_indirect_outside(struct dev *d, struct vq *q)
{
    vq_desc(q, 0, d->ram_end + 4096, 64, D_INDIRECT, 0);
    vq_publish(q, 0);
}

static void chain_indirect_huge(struct dev *d, struct vq *q)
{
    (void)d;
    vq_desc(q, 0, page_new()->pa, 0xfffffff0u, D_INDIRECT, 0);
    vq_publish(q, 0);
}

static void chain_indirect_bad_next(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new();
    desc_set(t->va, 0, data_pa(), 16, D_WRITE | D_NEXT, 200);
    vq_desc(q, 0, t->pa, 2 * 16, D_INDIRECT, 0);
    vq_publish(q, 0);
}

/* 15 direct descriptors then an indirect table of 256 one-byte buffers: 271 segments. */
static void chain_too_many_segments(struct dev *d, struct vq *q)
{
    (void)d;
    struct page *t = page_new();
    uint64_t buf = data_pa();
    for (unsigned i = 0; i < 256; i++)
        desc_set(t->va, i, buf + i, 1, (uint16_t)(D_WRITE | (i < 255 ? D_NEXT : 0)), (uint16_t)(i + 1));
    for (unsigned i = 0; i < 15; i++)
        vq_desc(q, i, buf + 256 + i, 1, D_WRITE | D_NEXT, (uint16_t)(i + 1));
    vq_desc(q, 15, t->pa, 256 * 16, D_INDIRECT, 0);
    vq_publish(q, 0);
}

/* Sixteen readable buffers of RAM-sized length: more than the spec's 4 GiB per chain. */
static void chain_over_4g(struct dev *d, struct vq *q)
{
    uint32_t len = (uint32_t)(d->ram_end > 0xffffffffULL ? 0xfffff000u : (d->ram_end - 0x100000) & ~0xfffULL);
    unsigned n = (unsigned)((1ULL << 32) / len + 2);
    if (n > q->size)
        n = q->size;
    for (unsigned i = 0; i < n; i++)
        vq_desc(q, i, 0x100000, len, (uint16_t)(i + 1 < n ? D_NEXT : 0), (uint16_t)(i + 1));
    vq_publish(q, 0);
}

static void attack_chains(struct dev *d)
{
    static const struct {
        const char *name;
        chain_fn fn;
        uint16_t size;
    } chains[] = {
        {"descriptor loop 0 -> 1 -> 0", chain_loop2, 16},
        {"descriptor pointing at itself", chain_self_loop, 16},
        {"buffer of 4 GiB - 1", chain_huge_len, 16},
        {"buffer outside RAM", chain_outside_ram, 16},
        {"buffer on the device's own registers", chain_on_bar, 16},
        {"buffer wrapping past 2^64", chain_wrapping, 16},
        {"buffer straddling the end of RAM", chain_straddle_ram_end, 16},
        {"next index 0xffff", chain_bad_next, 16},
        {"avail ring head 0xfff0", chain_bad_head, 16},
        {"avail idx 0x8000 ahead", chain_idx_jump, 16},
        {"writable buffer before a readable one", chain_order, 16},
        {"indirect table with a loop", chain_indirect_loop, 16},
        {"indirect table of 17 bytes", chain_indirect_odd_len, 16},
        {"indirect table inside an indirect table", chain_indirect_nested, 16},
        {"indirect descriptor with NEXT", chain_indirect_with_next, 16},
        {"indirect table outside RAM", chain_indirect_outside, 16},
        {"indirect table of 4 GiB - 16", chain_indirect_huge, 16},
        {"indirect next index past the table", chain_indirect_bad_next, 16},
        {"271 segments in one chain", chain_too_many_segments, 16},
        {"chain of more than 4 GiB", chain_over_4g, 32},
    };
    for (unsigned i = 0; i < sizeof(chains) / sizeof(chains[0]); i++)
        expect_broken(d, chains[i].name, chains[i].fn, chains[i].size);
}

/* DRIVER_OK taken back without a reset, rings moved to garbage, DRIVER_OK again. */
static void attack_driver_ok_toggle(struct dev *d)
{
    begin("DRIVER_OK cleared without a reset, rings moved outside RAM, DRIVER_OK again");
    struct vq q;
    vq_new(&q, 0, 16);
    expect(start(d, ring_features(d), &q, 1), "queue goes live");
    w8(d, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    w16(d, C_Q_SELECT, 0);
    w64h(d, C_Q_DESC, 1ULL << 42);
    w64h(d, C_Q_DEVICE, 1ULL << 42);
    w16(d, C_Q_SIZE, 2);
    driver_ok(d);
    kick(d, 0);
    vq_desc(&q, 0, d->ram_end + 4096, 512, D_WRITE, 0);
    vq_publish(&q, 0);
    kick(d, 0);
    sleep_ms(QUIET_MS);
    say("status afterwards %#x (no particular outcome required)", r8(d, C_STATUS));
    reset(d);
}

/* ---- races ---- */

struct racer {
    struct dev *d;
    struct vq *q;
    uint64_t good_pa;
    volatile int stop;
    unsigned long rounds;
};

/* Runs the racer on another CPU when there is one (the case gives the guest two on hardware
 * KVM; with one, the threads interleave by preemption). */
static void pin_to_other_cpu(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* Flips descriptor 1 between a valid 512-byte buffer and garbage as fast as it can. */
static void *flip_descriptor(void *arg)
{
    struct racer *r = arg;
    pin_to_other_cpu();
    volatile uint8_t *e = r->q->desc->va + 16;
    uint64_t evil_addr = r->d->ram_end + (1ULL << 32);
    while (!r->stop) {
        unsigned k = (unsigned)(r->rounds++ % 4);
        uint64_t addr = k == 1 ? evil_addr : r->good_pa;
        uint32_t len = k == 2 ? 0xffffffffu : k == 3 ? 0x7ffff000u : 512;
        uint16_t flags = k == 3 ? D_NEXT : D_WRITE | D_NEXT;
        memcpy((void *)e, &addr, 8);
        memcpy((void *)(e + 8), &len, 4);
        memcpy((void *)(e + 12), &flags, 2);
    }
    return NULL;
}

/* Resets, re-activates, kicks and moves the rings of the device from a second vCPU. */
static void *hammer_registers(void *arg)
{
    struct racer *r = arg;
    struct dev *d = r->d;
    pin_to_other_cpu();
    uint64_t evil = d->ram_end + 4096;
    while (!r->stop) {
        unsigned k = (unsigned)(r->rounds++ % 16);
        switch (k) {
        case 0: w8(d, C_STATUS, 0); break;
        case 1: driver_ok(d); break;
        case 2: w16(d, C_Q_SELECT, (uint16_t)attack_q); w64h(d, C_Q_DESC, (r->rounds & 32) ? evil : r->q->desc->pa); break;
        case 3: w16(d, C_Q_ENABLE, 1); break;
        case 4: w8(d, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK); break;
        case 5: w16(d, C_Q_SIZE, (r->rounds & 64) ? 16 : 3); break;
        default: kick(d, attack_q); break;
        }
    }
    return NULL;
}

static void run_racer(struct racer *r, void *(*fn)(void *), pthread_t *t)
{
    r->stop = 0;
    r->rounds = 0;
    if (pthread_create(t, NULL, fn, r) != 0)
        die("pthread_create: %s", strerror(errno));
}

static void stop_racer(struct racer *r, pthread_t t)
{
    r->stop = 1;
    pthread_join(t, NULL);
}

/* A valid-looking request on head 0 (header, 512-byte buffer, status) of a live queue. */
static void post_read(struct vq *q, struct page *hdr, uint64_t data, uint32_t type)
{
    memset(hdr->va, 0, 80);
    if (printable_headers)
        memcpy(hdr->va, "vg: tx in race\n", 16);
    else
        memcpy(hdr->va, &type, 4);
    hdr->va[64] = 0xee;
    vq_desc(q, 0, hdr->pa, 16, D_NEXT, 1);
    vq_desc(q, 1, data, 512, D_WRITE | D_NEXT, 2);
    vq_desc(q, 2, hdr->pa + 64, 1, D_WRITE, 0);
    vq_publish(q, 0);
}

/* Requests whose data descriptor another thread keeps rewriting: the device must see one
 * version of it (valid: the read completes; garbage: NEEDS_RESET or an error status). */
static void race_descriptor(struct dev *d, uint32_t type, int duration_ms)
{
    begin("requests while another CPU rewrites their descriptor");
    struct vq q;
    vq_new(&q, attack_q, 16);
    struct page *hdr = page_new(), *data = page_new();
    struct racer r = {.d = d, .q = &q, .good_pa = data->pa};
    pthread_t t;
    unsigned completed = 0, broken = 0, silent = 0, requests = 0;
    run_racer(&r, flip_descriptor, &t);
    long long end = now_ms() + duration_ms;
    while (now_ms() < end) {
        memset(q.avail->va, 0, PAGE);
        memset(q.used->va, 0, PAGE);
        q.avail_idx = q.used_seen = 0;
        if (!start(d, ring_features(d), &q, 1)) {
            broken++;
            continue;
        }
        for (int i = 0; i < 32 && now_ms() < end; i++) {
            post_read(&q, hdr, data->pa, type);
            kick(d, attack_q);
            requests++;
            if (vq_wait_used(&q, 200, NULL, NULL)) {
                completed++;
            } else if (r8(d, C_STATUS) & S_NEEDS_RESET) {
                broken++;
                break;
            } else {
                silent++;
                break;
            }
        }
        reset(d);
    }
    stop_racer(&r, t);
    say("%u requests: %u completed, %u broke the ring, %u unanswered; the racer ran %lu rounds",
        requests, completed, broken, silent, r.rounds);
    /* "unanswered" needs no NEEDS_RESET: the device may be mid-request when the ring is reset. */
    expect(requests > 0 && completed + broken > 0, "the device answered while the descriptor raced");
    reset(d);
}

/* Requests from this CPU while another resets, re-activates, kicks and moves the rings. */
static void race_registers(struct dev *d, uint32_t type, int duration_ms)
{
    begin("requests while another CPU resets, kicks and moves the rings");
    struct vq q;
    vq_new(&q, attack_q, 16);
    struct page *hdr = page_new(), *data = page_new();
    struct racer r = {.d = d, .q = &q, .good_pa = data->pa};
    pthread_t t;
    unsigned rounds = 0, completed = 0;
    run_racer(&r, hammer_registers, &t);
    long long end = now_ms() + duration_ms;
    while (now_ms() < end) {
        rounds++;
        memset(q.avail->va, 0, PAGE);
        memset(q.used->va, 0, PAGE);
        q.avail_idx = q.used_seen = 0;
        /* negotiate() without its checks: the other CPU changes the status at will. */
        uint64_t f = ring_features(d);
        w8(d, C_STATUS, 0);
        w8(d, C_STATUS, S_ACK | S_DRIVER);
        w32(d, C_GFSELECT, 0);
        w32(d, C_GF, (uint32_t)f);
        w32(d, C_GFSELECT, 1);
        w32(d, C_GF, (uint32_t)(f >> 32));
        w8(d, C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
        vq_program(d, &q);
        driver_ok(d);
        post_read(&q, hdr, data->pa, type);
        kick(d, attack_q);
        if (vq_wait_used(&q, 20, NULL, NULL))
            completed++;
    }
    stop_racer(&r, t);
    say("%u rounds, %u completed; the racer made %lu register accesses", rounds, completed, r.rounds);
    reset(d);
    expect(r8(d, C_STATUS) == 0, "the device resets cleanly afterwards");
}

/* Several requests in flight, reset at once, many times over. */
static void reset_storm(struct dev *d, uint32_t type, unsigned data_pages)
{
    begin("reset storm: 8 requests in flight, reset at once, 50 times");
    for (unsigned round = 0; round < 50; round++) {
        pool_rewind();
        struct vq q;
        vq_new(&q, attack_q, 128);
        if (!start(d, ring_features(d), &q, 1)) {
            expect(false, "round %u: the queue did not go live", round);
            break;
        }
        unsigned n = 0;
        for (unsigned req = 0; req < 8; req++) {
            struct page *hdr = page_new();
            memcpy(hdr->va, &type, 4);
            uint64_t sector = req * 8;
            memcpy(hdr->va + 8, &sector, 8);
            uint16_t head = (uint16_t)n;
            if (data_pages) {
                vq_desc(&q, n, hdr->pa, 16, D_NEXT, (uint16_t)(n + 1));
                n++;
            }
            for (unsigned p = 0; p < (data_pages ? data_pages : 1); p++, n++)
                vq_desc(&q, n, page_new()->pa, PAGE, D_WRITE | D_NEXT, (uint16_t)(n + 1));
            if (data_pages)
                vq_desc(&q, n++, hdr->pa + 64, 1, D_WRITE, 0);
            else
                vq_desc(&q, n - 1, page_new()->pa, PAGE, D_WRITE, 0);
            vq_publish(&q, head);
        }
        kick(d, attack_q);
        if (round % 2)
            sleep_ms(1);
        reset(d);
    }
}

/* The used ring laid over the avail ring: every element the device writes lands on the ring
 * it reads next. */
static void used_over_avail(struct dev *d, uint32_t type)
{
    begin("used ring on top of the avail ring");
    struct vq q;
    vq_new(&q, attack_q, 16);
    if (!negotiate(d, ring_features(d))) {
        expect(false, "FEATURES_OK refused");
        return;
    }
    vq_program_at(d, attack_q, 16, q.desc->pa, q.avail->pa, q.avail->pa);
    driver_ok(d);
    struct page *hdr = page_new(), *data = page_new();
    for (int i = 0; i < 8; i++) {
        post_read(&q, hdr, data->pa, type);
        kick(d, attack_q);
    }
    sleep_ms(QUIET_MS);
    say("status afterwards %#x (no particular outcome required)", r8(d, C_STATUS));
    reset(d);
}

static void race_attacks(struct dev *d, uint32_t type, unsigned storm_pages)
{
    race_descriptor(d, type, 2000);
    race_registers(d, type, 2000);
    reset_storm(d, type, storm_pages);
    used_over_avail(d, type);
}

/* ---- MSI-X and the PCI configuration access window ---- */

static void attack_msix(struct dev *d, void (*traffic)(struct dev *d, unsigned vector))
{
    begin("MSI-X: messages to nowhere, masks toggled, writes past the table");
    unsigned cap = find_cap(d, 0x11, -1);
    if (!expect(cap != 0, "MSI-X capability found at %#x", cap))
        return;
    uint16_t control = (uint16_t)cfg_read(d, cap + 2, 2);
    uint32_t table = cfg_read(d, cap + 4, 4);
    unsigned bir = table & 7, entries = (control & 0x7ff) + 1u;
    uint64_t size;
    uint64_t start_pa = resource_start(d, bir, &size);
    volatile uint8_t *bar = map_bar(d, bir, (size_t)size);
    volatile uint32_t *t = (volatile uint32_t *)(void *)(bar + (table & ~7u));
    say("%u vectors, table in BAR %u at %#llx (+%#x), %llu bytes", entries, bir,
        (unsigned long long)start_pa, table & ~7u, (unsigned long long)size);
    /* Destination APIC 0x45 does not exist, so nothing reaches a vCPU; data is all ones. */
    for (unsigned v = 0; v < entries; v++) {
        t[v * 4 + 0] = 0x12345670;
        t[v * 4 + 1] = 0xdeadbeef;
        t[v * 4 + 2] = 0xffffffff;
        t[v * 4 + 3] = 0;
    }
    cfg_write(d, cap + 2, 2, 0x8000);
    traffic(d, 1);
    for (unsigned k = 0; k < 200; k++) {
        t[(k % entries) * 4 + 3] = k & 1;
        cfg_write(d, cap + 2, 2, (k & 2) ? 0xc000 : 0x8000);
        t[(k % entries) * 4 + 0] = 0x12345670 + (k << 20);
    }
    cfg_write(d, cap + 2, 2, 0x8000);
    traffic(d, 1);
    /* Past the table: the PBA (read-only) and beyond. */
    for (uint64_t off = (table & ~7u) + entries * 16u; off + 4 <= size; off += 4)
        *(volatile uint32_t *)(void *)(bar + off) = 0xffffffff;
    volatile uint64_t sink = 0;
    for (uint64_t off = 0; off + 8 <= size; off += 8)
        sink += *(volatile uint64_t *)(void *)(bar + off);
    (void)sink;
    /* Back to what Linux expects to find: MSI-X off, every vector masked. */
    cfg_write(d, cap + 2, 2, control & ~0xc000u);
    for (unsigned v = 0; v < entries; v++) {
        t[v * 4 + 0] = 0;
        t[v * 4 + 1] = 0;
        t[v * 4 + 2] = 0;
        t[v * 4 + 3] = 1;
    }
    munmap((void *)bar, (size_t)size);
    reset(d);
}

static void attack_cfg_window(struct dev *d, bool (*probe)(struct dev *d, bool via_window))
{
    begin("the PCI configuration access window (VIRTIO_PCI_CAP_PCI_CFG)");
    unsigned cap = find_cap(d, 0x09, 5);
    if (!expect(cap != 0, "PCI_CFG capability found at %#x", cap))
        return;
    /* Legitimate use: num_queues through the window. */
    cfg_write(d, cap + 4, 1, 0);
    cfg_write(d, cap + 8, 4, C_NUMQ);
    cfg_write(d, cap + 12, 4, 2);
    uint32_t nq = cfg_read(d, cap + 16, 4) & 0xffff;
    expect(nq == d->num_queues, "num_queues through the window: %u", nq);
    /* Garbage windows: bad BAR, lengths, offsets at and past the end, narrow data accesses. */
    static const struct {
        uint8_t bar;
        uint32_t offset, length;
    } bad[] = {{1, 0, 4},      {5, 0x14, 1},   {0xff, 0, 4},        {0, 0x14, 3},
               {0, 0x14, 0},   {0, 0x14, 8},   {0, 0x3ffe, 4},      {0, 0x4000, 1},
               {0, 0xffffffff, 4}, {0, 0xfffffffe, 2}, {0, 0x1000, 0xffffffff}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_write(d, cap + 4, 1, bad[i].bar);
        cfg_write(d, cap + 8, 4, bad[i].offset);
        cfg_write(d, cap + 12, 4, bad[i].length);
        cfg_write(d, cap + 16, 4, 0xffffffff);
        cfg_write(d, cap + 16, 1, 0);
        cfg_write(d, cap + 18, 2, 0xffff);
        (void)cfg_read(d, cap + 16, 4);
        (void)cfg_read(d, cap + 17, 1);
    }
    /* Status through the window: a reset and a garbage status. */
    cfg_write(d, cap + 4, 1, 0);
    cfg_write(d, cap + 8, 4, C_STATUS);
    cfg_write(d, cap + 12, 4, 1);
    cfg_write(d, cap + 16, 4, 0xff);
    cfg_write(d, cap + 16, 4, 0);
    expect(r8(d, C_STATUS) == 0, "reset through the window: status %#x", r8(d, C_STATUS));
    if (probe)
        expect(probe(d, true), "a valid request kicked through the window completes");
    cfg_write(d, cap + 8, 4, 0);
    cfg_write(d, cap + 12, 4, 0);
    reset(d);
}

/* Kicks queue q through the window (a legitimate, if slow, notify). */
static void window_kick(struct dev *d, unsigned q)
{
    unsigned cap = find_cap(d, 0x09, 5);
    cfg_write(d, cap + 4, 1, 0);
    cfg_write(d, cap + 8, 4, NOTIFY_OFF + q * NOTIFY_MUL);
    cfg_write(d, cap + 12, 4, 2);
    cfg_write(d, cap + 16, 4, q);
}

/* ---- virtio-blk ---- */

static uint64_t blk_capacity(struct dev *d) { return r64(d, DEVCFG_OFF); }

struct blk_req {
    uint32_t type;
    uint64_t sector;
    uint32_t data_len; /* bytes in one data buffer (0: none) */
    bool data_writable;
    uint8_t status;
    uint32_t used_len;
    struct page *data;
};

/* One request on a fresh queue: header, optional data, status. Returns whether it completed. */
static bool blk_do(struct dev *d, struct blk_req *r, bool via_window)
{
    struct vq q;
    vq_new(&q, 0, 16);
    if (!start(d, ring_features(d), &q, 1))
        return false;
    struct page *hdr = page_new();
    if (!r->data)
        r->data = page_new();
    memcpy(hdr->va, &r->type, 4);
    memcpy(hdr->va + 8, &r->sector, 8);
    hdr->va[64] = 0xee; /* the status byte, so "not written" shows */
    unsigned n = 0;
    vq_desc(&q, n, hdr->pa, 16, D_NEXT, (uint16_t)(n + 1));
    n++;
    if (r->data_len) {
        vq_desc(&q, n, r->data->pa, r->data_len, (uint16_t)(D_NEXT | (r->data_writable ? D_WRITE : 0)),
                (uint16_t)(n + 1));
        n++;
    }
    vq_desc(&q, n, hdr->pa + 64, 1, D_WRITE, 0);
    vq_publish(&q, 0);
    if (via_window)
        window_kick(d, 0);
    else
        kick(d, 0);
    uint32_t id = 0;
    bool done = vq_wait_used(&q, REACT_MS, &id, &r->used_len);
    r->status = hdr->va[64];
    return done && id == 0;
}

static bool sector_ok(const uint8_t *p, uint64_t sector)
{
    char want[32];
    snprintf(want, sizeof(want), "SECTOR-%08llu", (unsigned long long)sector);
    return memcmp(p, want, strlen(want)) == 0;
}

/* A valid read of 8 sectors at `sector`; checks the status and the pattern. */
static bool blk_read_check(struct dev *d, uint64_t sector, bool via_window)
{
    struct blk_req r = {.type = BLK_T_IN, .sector = sector, .data_len = 4096, .data_writable = true};
    bool done = blk_do(d, &r, via_window);
    bool ok = done && r.status == BLK_S_OK && r.used_len == 4097;
    for (unsigned i = 0; ok && i < 8; i++)
        ok = sector_ok(r.data->va + 512 * i, sector + i);
    say("read sectors %llu-%llu%s: %s, status %u, used %u, data %.15s", (unsigned long long)sector,
        (unsigned long long)sector + 7, via_window ? " (kicked through the window)" : "",
        done ? "completed" : "NO COMPLETION", r.status, r.used_len, r.data->va);
    reset(d);
    return ok;
}

static bool blk_probe(struct dev *d, bool via_window) { return blk_read_check(d, 8, via_window); }

static void blk_expect_status(struct dev *d, const char *name, struct blk_req *r, int want)
{
    begin(name);
    bool done = blk_do(d, r, false);
    bool nr = r8(d, C_STATUS) & S_NEEDS_RESET;
    expect(done && r->status == want, "%s, status %u (want %d), used %u%s",
           done ? "completed" : "no completion", r->status, want, r->used_len,
           nr ? ", NEEDS_RESET" : "");
    reset(d);
}

static void attack_blk_requests(struct dev *d)
{
    uint64_t cap = blk_capacity(d);
    say("capacity %llu sectors", (unsigned long long)cap);
    struct blk_req r;

    r = (struct blk_req){.type = 0xdeadbeef, .data_len = 512, .data_writable = true};
    blk_expect_status(d, "request type 0xdeadbeef", &r, BLK_S_UNSUPP);
    r = (struct blk_req){.type = BLK_T_IN, .sector = 1ULL << 63, .data_len = 512, .data_writable = true};
    blk_expect_status(d, "read at sector 2^63", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_IN, .sector = ~0ULL, .data_len = 512, .data_writable = true};
    blk_expect_status(d, "read at sector 2^64 - 1", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_IN, .sector = cap - 1, .data_len = 4096, .data_writable = true};
    blk_expect_status(d, "read across the end of the disk", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_IN, .sector = 0, .data_len = 100, .data_writable = true};
    blk_expect_status(d, "read of 100 bytes (not whole sectors)", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_IN, .sector = 0, .data_len = 512, .data_writable = false};
    blk_expect_status(d, "read into a device-readable buffer", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_FLUSH, .data_len = 512, .data_writable = true};
    blk_expect_status(d, "flush with a data buffer", &r, BLK_S_IOERR);
    r = (struct blk_req){.type = BLK_T_DISCARD, .data_len = 16, .data_writable = false};
    blk_expect_status(d, "discard without the feature negotiated", &r, BLK_S_UNSUPP);
    r = (struct blk_req){.type = BLK_T_GET_ID, .data_len = 4, .data_writable = true};
    blk_expect_status(d, "GET_ID into a 4-byte buffer", &r, BLK_S_OK);
    if (!(d->features & BLK_F_RO)) {
        r = (struct blk_req){.type = BLK_T_OUT, .sector = cap, .data_len = 512, .data_writable = false};
        blk_expect_status(d, "write at the capacity (one past the end)", &r, BLK_S_IOERR);
    }

    /* A header only: no status byte at all. The element must still come back (or the ring be
     * declared broken), and nothing may be written. */
    begin("request without a status byte");
    {
        struct vq q;
        vq_new(&q, 0, 16);
        if (expect(start(d, ring_features(d), &q, 1), "queue goes live")) {
            struct page *hdr = page_new();
            uint32_t type = BLK_T_IN;
            memcpy(hdr->va, &type, 4);
            vq_desc(&q, 0, hdr->pa, 16, 0, 0);
            vq_publish(&q, 0);
            kick(d, 0);
            uint32_t id = 99, len = 99;
            bool done = vq_wait_used(&q, REACT_MS, &id, &len);
            bool nr = r8(d, C_STATUS) & S_NEEDS_RESET;
            expect((done && id == 0 && len == 0) || nr, "%s (id %u, used %u)%s",
                   done ? "completed" : "no completion", id, len, nr ? ", NEEDS_RESET" : "");
        }
        reset(d);
    }

    /* The data of a read lands on the descriptor table itself, then the driver publishes a
     * second request whose descriptors are now disk contents. */
    begin("read into the descriptor table, then a request made of disk data");
    {
        struct vq q;
        vq_new(&q, 0, 16);
        if (expect(start(d, ring_features(d), &q, 1), "queue goes live")) {
            struct page *hdr = page_new();
            uint32_t type = BLK_T_IN;
            memcpy(hdr->va, &type, 4);
            vq_desc(&q, 0, hdr->pa, 16, D_NEXT, 1);
            vq_desc(&q, 1, q.desc->pa, 512, D_WRITE | D_NEXT, 2);
            vq_desc(&q, 2, hdr->pa + 64, 1, D_WRITE, 0);
            vq_publish(&q, 0);
            kick(d, 0);
            bool done = vq_wait_used(&q, REACT_MS, NULL, NULL);
            expect(done && hdr->va[64] == BLK_S_OK && sector_ok(q.desc->va, 0),
                   "the read completed over its own descriptors (status %u)", hdr->va[64]);
            vq_publish(&q, 0);
            kick(d, 0);
            sleep_ms(QUIET_MS);
            say("then: status %#x, used idx %u (either outcome is fine)", r8(d, C_STATUS), *used_idx_ptr(&q));
        }
        reset(d);
    }

    /* Reset while a large read is in flight; the next driver instance reuses the same pages and
     * must not see a completion of the old request. */
    begin("reset with a 256 KiB read in flight, rings reused at once");
    {
        struct vq q;
        vq_new(&q, 0, 128);
        if (expect(start(d, ring_features(d), &q, 1), "queue goes live")) {
            struct page *hdr = page_new();
            uint32_t type = BLK_T_IN;
            memcpy(hdr->va, &type, 4);
            vq_desc(&q, 0, hdr->pa, 16, D_NEXT, 1);
            for (unsigned i = 0; i < 64; i++)
                vq_desc(&q, 1 + i, page_new()->pa, PAGE, D_WRITE | D_NEXT, (uint16_t)(2 + i));
            vq_desc(&q, 65, hdr->pa + 64, 1, D_WRITE, 0);
            vq_publish(&q, 0);
            kick(d, 0);
            reset(d);
            memset(q.used->va, 0, PAGE);
            memset(q.avail->va, 0, PAGE);
            q.avail_idx = q.used_seen = 0;
            bool live = start(d, ring_features(d), &q, 1);
            sleep_ms(QUIET_MS * 3);
            uint16_t used = *used_idx_ptr(&q);
            expect(live && used == 0, "after the reset the new ring has used idx %u (0: nothing stale)", used);
        }
        reset(d);
    }
}

static bool blk_write_sector(struct dev *d, uint64_t sector, const char *text, uint8_t *status)
{
    struct blk_req r = {.type = BLK_T_OUT, .sector = sector, .data_len = 512, .data_writable = false};
    r.data = page_new();
    memset(r.data->va, ' ', 512);
    memcpy(r.data->va, text, strlen(text));
    bool done = blk_do(d, &r, false);
    *status = r.status;
    reset(d);
    return done;
}

/* ---- virtio-rng ---- */

static bool rng_request(struct dev *d, unsigned buffers, uint32_t len, uint16_t flags, uint32_t *used_len,
                        bool *nonzero)
{
    struct vq q;
    vq_new(&q, 0, 64);
    if (!start(d, ring_features(d), &q, 1))
        return false;
    struct page *bufs[64];
    for (unsigned i = 0; i < buffers; i++) {
        bufs[i] = page_new();
        vq_desc(&q, i, bufs[i]->pa, len, (uint16_t)(flags | (i + 1 < buffers ? D_NEXT : 0)), (uint16_t)(i + 1));
    }
    vq_publish(&q, 0);
    kick(d, 0);
    uint32_t id = 99;
    bool done = vq_wait_used(&q, REACT_MS, &id, used_len);
    *nonzero = false;
    for (unsigned i = 0; i < buffers; i++)
        for (unsigned k = 0; k < len && k < PAGE; k++)
            if (bufs[i]->va[k])
                *nonzero = true;
    return done && id == 0;
}

static bool rng_probe(struct dev *d, bool via_window)
{
    (void)via_window;
    uint32_t used = 0;
    bool nonzero;
    bool done = rng_request(d, 1, 64, D_WRITE, &used, &nonzero);
    say("64-byte request: %s, used %u, %s", done ? "completed" : "NO COMPLETION", used,
        nonzero ? "not all zero" : "ALL ZERO");
    reset(d);
    return done && used == 64 && nonzero;
}

static void attack_rng_requests(struct dev *d)
{
    uint32_t used = 0;
    bool nonzero;
    begin("device-readable buffer only");
    bool done = rng_request(d, 1, 64, 0, &used, &nonzero);
    expect(done && used == 0 && !nonzero, "%s, used %u", done ? "completed" : "no completion", used);
    reset(d);
    begin("48 writable pages (192 KiB) in one chain");
    done = rng_request(d, 48, PAGE, D_WRITE, &used, &nonzero);
    expect(done && used > 0 && used <= 48 * PAGE && nonzero, "%s, used %u", done ? "completed" : "no completion",
           used);
    reset(d);
    begin("zero-length writable buffer");
    done = rng_request(d, 1, 0, D_WRITE, &used, &nonzero);
    expect(done && used == 0, "%s, used %u", done ? "completed" : "no completion", used);
    reset(d);
}

/* ---- MSI-X traffic per device ---- */

static void blk_traffic(struct dev *d, unsigned vector)
{
    struct vq q;
    vq_new(&q, 0, 16);
    if (!negotiate(d, ring_features(d)))
        return;
    w16(d, C_MSIX, 0);
    vq_program(d, &q);
    w16(d, C_Q_SELECT, 0);
    w16(d, C_Q_MSIX, (uint16_t)vector);
    driver_ok(d);
    struct page *hdr = page_new(), *data = page_new();
    vq_desc(&q, 0, hdr->pa, 16, D_NEXT, 1);
    vq_desc(&q, 1, data->pa, 512, D_WRITE | D_NEXT, 2);
    vq_desc(&q, 2, hdr->pa + 64, 1, D_WRITE, 0);
    vq_publish(&q, 0);
    kick(d, 0);
    bool done = vq_wait_used(&q, REACT_MS, NULL, NULL);
    expect(done && sector_ok(data->va, 0), "a read with its interrupt on a garbage message: %s",
           done ? "completed" : "NO COMPLETION");
    /* A broken ring raises the configuration interrupt too. */
    vq_desc(&q, 0, 1ULL << 50, 16, 0, 0);
    vq_publish(&q, 0);
    kick(d, 0);
    wait_needs_reset(d, REACT_MS);
    reset(d);
}

static void rng_traffic(struct dev *d, unsigned vector)
{
    struct vq q;
    vq_new(&q, 0, 16);
    if (!negotiate(d, ring_features(d)))
        return;
    w16(d, C_MSIX, 0);
    vq_program(d, &q);
    w16(d, C_Q_SELECT, 0);
    w16(d, C_Q_MSIX, (uint16_t)vector);
    driver_ok(d);
    vq_desc(&q, 0, page_new()->pa, 32, D_WRITE, 0);
    vq_publish(&q, 0);
    kick(d, 0);
    bool done = vq_wait_used(&q, REACT_MS, NULL, NULL);
    expect(done, "a request with its interrupt on a garbage message: %s", done ? "completed" : "NO COMPLETION");
    vq_desc(&q, 0, 1ULL << 50, 16, D_WRITE, 0);
    vq_publish(&q, 0);
    kick(d, 0);
    wait_needs_reset(d, REACT_MS);
    reset(d);
}

/* ---- virtio-console (port 0 only: receiveq 0, transmitq 1) ---- */

#define CON_RX 0
#define CON_TX 1
#define FEED_TEXT "RX-0123456789abcdef"

/* Sends text through transmitq on a fresh device; with vector, interrupts go to that MSI-X
 * vector. Returns whether the chain came back. */
static bool console_tx(struct dev *d, const char *text, bool via_window, uint16_t vector)
{
    struct vq q;
    vq_new(&q, CON_TX, 16);
    if (!negotiate(d, ring_features(d)))
        return false;
    if (vector != NO_VECTOR)
        w16(d, C_MSIX, 0);
    vq_program(d, &q);
    w16(d, C_Q_SELECT, CON_TX);
    w16(d, C_Q_MSIX, vector);
    driver_ok(d);
    struct page *buf = page_new();
    size_t len = strlen(text);
    memcpy(buf->va, text, len);
    /* Split in two descriptors, to go through a chain. */
    vq_desc(&q, 0, buf->pa, (uint32_t)(len / 2), D_NEXT, 1);
    vq_desc(&q, 1, buf->pa + len / 2, (uint32_t)(len - len / 2), 0, 0);
    vq_publish(&q, 0);
    if (via_window)
        window_kick(d, CON_TX);
    else
        kick(d, CON_TX);
    bool done = vq_wait_used(&q, REACT_MS, NULL, NULL);
    reset(d);
    return done;
}

static bool console_probe(struct dev *d, bool via_window)
{
    return console_tx(d, "VG-CONSOLE-WINDOW\n", via_window, NO_VECTOR);
}

static void console_traffic(struct dev *d, unsigned vector)
{
    bool done = console_tx(d, "VG-CONSOLE-MSIX\n", false, (uint16_t)(vector + 1));
    expect(done, "a transmit with its interrupt on a garbage message: %s", done ? "completed" : "NO COMPLETION");
}

/* Receive buffers on receiveq while the case feeds cove's stdin: the data must arrive. */
static bool console_rx_check(struct dev *d, int wait_ms)
{
    struct vq rx;
    vq_new(&rx, CON_RX, 16);
    if (!start(d, ring_features(d), &rx, 1))
        return false;
    struct page *bufs[8];
    for (unsigned i = 0; i < 8; i++) {
        bufs[i] = page_new();
        vq_desc(&rx, i, bufs[i]->pa, 256, D_WRITE, 0);
        vq_publish(&rx, (uint16_t)i);
    }
    kick(d, CON_RX);
    uint32_t id = 99, len = 0;
    bool done = vq_wait_used(&rx, wait_ms, &id, &len);
    bool ok = done && id < 8 && len > 0 && len <= 256;
    char text[257] = "";
    if (ok) {
        memcpy(text, bufs[id]->va, len);
        text[len] = 0;
        ok = strstr(text, FEED_TEXT) != NULL || strstr(text, "0123456789") != NULL;
    }
    for (char *c = text; *c; c++)
        if (!isprint((unsigned char)*c))
            *c = '.';
    say("receive buffer: %s, id %u, %u bytes: %.40s", done ? "filled" : "NOT FILLED", id, len, text);
    reset(d);
    return ok;
}

/* Broken chains on receiveq, found when cove has input to deliver. */
static void attack_rx(struct dev *d)
{
    static const struct {
        const char *name;
        chain_fn fn;
    } chains[] = {
        {"receive: descriptor loop", chain_loop2},
        {"receive: buffer outside RAM", chain_outside_ram},
        {"receive: buffer of 4 GiB - 1", chain_huge_len},
        {"receive: indirect table with a loop", chain_indirect_loop},
        {"receive: avail idx 0x8000 ahead", chain_idx_jump},
    };
    attack_q = CON_RX;
    for (unsigned i = 0; i < sizeof(chains) / sizeof(chains[0]); i++)
        expect_broken(d, chains[i].name, chains[i].fn, 16);
    attack_q = CON_TX;
    /* Receive buffers the device can only read: filled with nothing, returned. */
    begin("receive: device-readable buffers only, while input waits");
    struct vq rx;
    vq_new(&rx, CON_RX, 16);
    if (expect(start(d, ring_features(d), &rx, 1), "queue goes live")) {
        for (unsigned i = 0; i < 4; i++) {
            vq_desc(&rx, i, page_new()->pa, 64, 0, 0);
            vq_publish(&rx, (uint16_t)i);
        }
        kick(d, CON_RX);
        sleep_ms(QUIET_MS * 3);
        say("status %#x, used idx %u (either outcome is fine)", r8(d, C_STATUS), *used_idx_ptr(&rx));
    }
    reset(d);
}

/* Transmit chains with odd shapes: writable parts are not sent, the rest is. */
static void attack_tx_shapes(struct dev *d)
{
    begin("transmit: writable buffers only, then readable + writable");
    struct vq q;
    vq_new(&q, CON_TX, 16);
    if (expect(start(d, ring_features(d), &q, 1), "queue goes live")) {
        struct page *a = page_new(), *b = page_new();
        memcpy(a->va, "vg: transmit, readable part\n", 28);
        memcpy(b->va, "SHOULD-NOT-BE-SENT\n", 19);
        vq_desc(&q, 0, b->pa, 19, D_WRITE, 0);
        vq_publish(&q, 0);
        vq_desc(&q, 1, a->pa, 28, D_NEXT, 2);
        vq_desc(&q, 2, b->pa, 19, D_WRITE, 0);
        vq_publish(&q, 1);
        kick(d, CON_TX);
        bool one = vq_wait_used(&q, REACT_MS, NULL, NULL);
        bool two = vq_wait_used(&q, REACT_MS, NULL, NULL);
        expect(one && two, "both chains came back");
    }
    reset(d);
}

/*
 * Linux's console on the rebound function. Not /dev/hvc0: while PID 1 holds the console open,
 * that minor still leads to the old, hung-up tty, whose writes are dropped. The kernel console
 * (printk) does use the new port: hvc_alloc points console slot 0 at it. So the line goes out
 * as a kernel message, at a level `quiet` still prints.
 */
static void console_after_rebind(void)
{
    who = "console-rebound";
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? write(fd, "<2>VG-CONSOLE-REBOUND\n", 22) : -1;
    int err = n < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    expect(n == 22, "a kernel message for the rebound console: %s", err ? strerror(err) : "written");
}

/* ---- giving the device back to Linux ---- */

static void rebind(struct dev *d)
{
    reset(d);
    munmap((void *)d->bar0, BAR0_SIZE);
    cfg_write(d, 4, 2, d->command);
    close(d->cfg_fd);
    int r = write_text("/sys/bus/pci/drivers/virtio-pci/bind", d->addr);
    expect(r == 0, "rebind %s to virtio-pci: %s", d->addr, r ? strerror(-r) : "done");
}

/* The disk Linux made of the rebound function: /sys/bus/pci/devices/ADDR/virtioN/block/NAME. */
static bool rebound_disk(struct dev *d, char *name, size_t len)
{
    for (int tries = 0; tries < 50; tries++) {
        for (unsigned n = 0; n < 64; n++) {
            char path[256], real[4096];
            snprintf(path, sizeof(path), "%s/virtio%u/block", d->sys, n);
            if (!realpath(path, real))
                continue;
            for (const char *c = "abcdefghijklmnopq"; *c; c++) {
                char dev[300];
                snprintf(dev, sizeof(dev), "%s/vd%c", path, *c);
                if (access(dev, F_OK) == 0) {
                    snprintf(name, len, "vd%c", *c);
                    return true;
                }
            }
        }
        sleep_ms(100);
    }
    return false;
}

static void blk_after_rebind(struct dev *d, uint64_t capacity)
{
    who = "blk-rebound";
    char name[16], path[64];
    if (!expect(rebound_disk(d, name, sizeof(name)), "the rebound function is a disk again"))
        return;
    snprintf(path, sizeof(path), "/dev/%s", name);
    int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (!expect(fd >= 0, "open %s: %s", path, fd >= 0 ? "ok" : strerror(errno)))
        return;
    static uint8_t buf[65536] __attribute__((aligned(4096)));
    uint64_t bad = 0, checked = 0;
    for (uint64_t off = 0; off < capacity * 512; off += sizeof(buf)) {
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);
        if (n <= 0)
            break;
        for (ssize_t s = 0; s + 512 <= n; s += 512, checked++)
            if (!sector_ok(buf + s, (off + (uint64_t)s) / 512))
                bad++;
    }
    expect(checked == capacity && bad == 0, "read all %llu sectors of %s through Linux: %llu bad",
           (unsigned long long)checked, name, (unsigned long long)bad);
    memset(buf, ' ', 511);
    buf[511] = '\n'; /* the same layout as the pattern's sectors */
    memcpy(buf, "REBOUND-WRITE-7", 15);
    ssize_t n = pwrite(fd, buf, 512, 7 * 512);
    int err = n == 512 ? 0 : errno;
    expect(n == 512 && fsync(fd) == 0, "wrote sector 7 through Linux: %s", err ? strerror(err) : "ok");
    close(fd);
}

static void rng_after_rebind(void)
{
    who = "rng-rebound";
    char cur[128] = "";
    for (int tries = 0; tries < 50 && !strstr(cur, "virtio"); tries++) {
        read_text("/sys/class/misc/hw_random/rng_current", cur, sizeof(cur));
        if (!strstr(cur, "virtio"))
            sleep_ms(100);
    }
    expect(strstr(cur, "virtio") != NULL, "rng_current is '%s'", cur);
    int fd = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
    uint8_t buf[64] = {0};
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
    bool nonzero = false;
    for (unsigned i = 0; i < sizeof(buf); i++)
        nonzero |= buf[i] != 0;
    expect(n == 64 && nonzero, "read %zd bytes from /dev/hwrng, %s", n, nonzero ? "not all zero" : "all zero");
    if (fd >= 0)
        close(fd);
}

/* ---- the runs ---- */

static void common_attacks(struct dev *d)
{
    attack_register_sweep(d);
    attack_readonly_writes(d);
    attack_features(d);
    attack_queue_registers(d);
    attack_kicks(d);
    attack_ring_addresses(d);
    attack_chains(d);
    attack_driver_ok_toggle(d);
}

static void run_console(bool do_rebind)
{
    who = "console";
    char addr[64];
    if (!addr_of_id(0x1043, addr, sizeof(addr)))
        die("no virtio-console function (PCI 1af4:1043)");
    struct dev d;
    dev_open(&d, addr);
    pool_init();
    attack_q = CON_TX;
    printable_headers = true;
    expect(console_tx(&d, "VG-CONSOLE-TX-OK\n", false, NO_VECTOR), "a transmit through the raw driver");
    expect(console_tx(&d, "VG-CONSOLE-FEED-ME\n", false, NO_VECTOR), "asked the case for input");
    expect(console_rx_check(&d, 60000), "input from cove's stdin reaches a receive buffer");
    common_attacks(&d);
    attack_tx_shapes(&d);
    attack_rx(&d);
    race_attacks(&d, 0, 0);
    attack_msix(&d, console_traffic);
    attack_cfg_window(&d, console_probe);
    begin("after all of it");
    expect(console_rx_check(&d, REACT_MS), "input still reaches a receive buffer");
    expect(console_tx(&d, "VG-CONSOLE-TX-AFTER\n", false, NO_VECTOR), "a transmit after the garbage");
    if (do_rebind) {
        rebind(&d);
        console_after_rebind();
    }
}

static void run_blk(const char *disk, bool do_rebind)
{
    who = "blk";
    char addr[64];
    addr_of_disk(disk, addr, sizeof(addr));
    struct dev d;
    dev_open(&d, addr);
    if (d.device_id != 0x1042)
        die("%s is not virtio-blk (device %#x)", addr, d.device_id);
    pool_init();
    uint64_t capacity = blk_capacity(&d);
    expect(blk_read_check(&d, 0, false), "a valid read through the raw driver, before the garbage");
    common_attacks(&d);
    attack_blk_requests(&d);
    race_attacks(&d, BLK_T_IN, 8);
    attack_msix(&d, blk_traffic);
    attack_cfg_window(&d, blk_probe);
    begin("after all of it");
    expect(blk_read_check(&d, capacity - 8, false), "a valid read through the raw driver, after the garbage");
    if (do_rebind) {
        rebind(&d);
        blk_after_rebind(&d, capacity);
    }
}

static void run_rng(bool do_rebind)
{
    who = "rng";
    char addr[64];
    if (!addr_of_id(0x1044, addr, sizeof(addr)))
        die("no virtio-rng function (PCI 1af4:1044)");
    struct dev d;
    dev_open(&d, addr);
    pool_init();
    expect(rng_probe(&d, false), "a valid request through the raw driver, before the garbage");
    common_attacks(&d);
    attack_rng_requests(&d);
    race_attacks(&d, 0, 0);
    attack_msix(&d, rng_traffic);
    attack_cfg_window(&d, NULL);
    begin("after all of it");
    expect(rng_probe(&d, false), "a valid request through the raw driver, after the garbage");
    if (do_rebind) {
        rebind(&d);
        rng_after_rebind();
    }
}

/* One write request to sector 0, then a read of it, through the raw driver. */
static void run_write_probe(const char *disk)
{
    who = "write-probe";
    char addr[64];
    addr_of_disk(disk, addr, sizeof(addr));
    struct dev d;
    dev_open(&d, addr);
    pool_init();
    bool ro = d.features & BLK_F_RO;
    say("the device %s VIRTIO_BLK_F_RO", ro ? "offers" : "does not offer");
    uint8_t status = 0xee;
    bool done = blk_write_sector(&d, 0, "GARBAGE-WRITE", &status);
    printf("VG-WRITE-STATUS=%s%u\n", done ? "" : "none-", status);
    struct blk_req r = {.type = BLK_T_IN, .sector = 0, .data_len = 512, .data_writable = true};
    done = blk_do(&d, &r, false);
    bool changed = memcmp(r.data->va, "GARBAGE-WRITE", 13) == 0;
    printf("VG-READBACK=%s\n", !done || r.status != BLK_S_OK ? "failed" : changed ? "changed" : "unchanged");
    fflush(stdout);
    reset(&d);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        goto usage;
    bool do_rebind = argc > 2 && strcmp(argv[argc - 1], "--rebind") == 0;
    if (strcmp(argv[1], "blk") == 0 && argc >= 3)
        run_blk(argv[2], do_rebind);
    else if (strcmp(argv[1], "rng") == 0)
        run_rng(do_rebind);
    else if (strcmp(argv[1], "console") == 0)
        run_console(do_rebind);
    else if (strcmp(argv[1], "write-probe") == 0 && argc == 3)
        run_write_probe(argv[2]);
    else
        goto usage;
    printf("vg: %d attempt(s)\n", attempts);
    if (unexpected) {
        printf("VG-RESULT=fail unexpected=%d\n", unexpected);
        return 1;
    }
    printf("VG-RESULT=ok\n");
    return 0;
usage:
    fprintf(stderr, "usage: virtio_garbage blk DISK [--rebind] | rng [--rebind] | console [--rebind] |"
            " write-probe DISK\n");
    return 2;
}
