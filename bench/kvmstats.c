/*
 * kvmstats.so: an LD_PRELOAD shim that reports KVM's counters for a VMM's vCPU 0.
 *
 *   KVMSTATS_OUT=FILE LD_PRELOAD=kvmstats.so VMM ARGS...
 *
 * KVM only answers ioctls on a VM or vCPU descriptor from the process that created the VM,
 * so the counters cannot be read from outside. The shim wraps ioctl(): when KVM_CREATE_VCPU
 * returns vCPU 0, it asks that vCPU for its statistics descriptor (KVM_GET_STATS_FD) and keeps
 * it; the descriptor holds a reference to the VM, so it stays readable after the VMM has
 * closed everything. When the process exits (exit() or a return from main: destructors run)
 * it appends one line to FILE:
 *
 *   kvm-vcpu0: exits=N io_exits=N mmio_exits=N halt_exits=N ... halt_wait_ns=N
 *              cpu_guest_ms=N cpu_user_ms=N cpu_system_ms=N
 *
 * (every non-zero single-value counter), and where the whole process's CPU time went, from
 * /proc/self/stat (which includes threads that have already ended): running the guest,
 * the VMM's own user-space code (user time minus guest time), and the host kernel (system
 * calls and KVM's exit handling). This works for cove and QEMU alike, which both call ioctl()
 * through the C library. Used by bench/boot.sh --profile; not in timed runs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int (*real_ioctl)(int, unsigned long, ...);
static int stats_fd = -1;

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl)
        real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    int r = real_ioctl(fd, request, arg);
    if (request == KVM_CREATE_VCPU && (uintptr_t)arg == 0 && r >= 0 && stats_fd < 0)
        stats_fd = real_ioctl(r, KVM_GET_STATS_FD, 0);
    return r;
}

__attribute__((destructor)) static void report(void)
{
    const char *out = getenv("KVMSTATS_OUT");
    if (stats_fd < 0 || !out)
        return;
    struct kvm_stats_header h;
    if (pread(stats_fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
        return;
    size_t desc_size = sizeof(struct kvm_stats_desc) + h.name_size;
    char *descs = malloc(desc_size * h.num_desc);
    if (!descs)
        return;
    FILE *f = NULL;
    if (pread(stats_fd, descs, desc_size * h.num_desc, h.desc_offset) != (ssize_t)(desc_size * h.num_desc) ||
        !(f = fopen(out, "a"))) {
        free(descs);
        return;
    }
    fprintf(f, "kvm-vcpu0:");
    for (uint32_t i = 0; i < h.num_desc; i++) {
        const struct kvm_stats_desc *d = (const struct kvm_stats_desc *)(descs + i * desc_size);
        uint32_t type = d->flags & KVM_STATS_TYPE_MASK;
        if (d->size != 1 || (type != KVM_STATS_TYPE_CUMULATIVE && type != KVM_STATS_TYPE_PEAK))
            continue;
        uint64_t value;
        if (pread(stats_fd, &value, sizeof(value), h.data_offset + d->offset) == (ssize_t)sizeof(value) && value)
            fprintf(f, " %s=%llu", d->name, (unsigned long long)value);
    }
    /* /proc/self/stat: utime and stime are fields 14 and 15, guest_time field 43, in ticks. */
    char buf[2048];
    int sfd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = sfd >= 0 ? read(sfd, buf, sizeof(buf) - 1) : -1;
    if (sfd >= 0)
        close(sfd);
    char *p = n > 0 ? strrchr((buf[n] = '\0', buf), ')') : NULL;
    if (p) {
        unsigned long long v[64] = {0};
        int field = 2; /* p points at the end of field 2, the command name */
        for (char *tok = strtok(p + 1, " "); tok && field < 63; tok = strtok(NULL, " "))
            v[++field] = strtoull(tok, NULL, 10);
        long hz = sysconf(_SC_CLK_TCK);
        if (field >= 43 && hz > 0)
            fprintf(f, " cpu_guest_ms=%llu cpu_user_ms=%llu cpu_system_ms=%llu", v[43] * 1000 / hz,
                    (v[14] > v[43] ? v[14] - v[43] : 0) * 1000 / hz, v[15] * 1000 / hz);
    }
    fprintf(f, "\n");
    fclose(f);
    free(descs);
}
