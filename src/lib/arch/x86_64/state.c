#include "arch/x86_64/state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define TAG_VCPU SNAP_TAG('v', 'c', 'p', 'u')
#define TAG_VM SNAP_TAG('x', 'v', 'm', ' ')
#define MSR_IA32_TSC_DEADLINE 0x6e0
/* KVM's list is about a hundred MSRs on current hosts; this bounds a damaged snapshot. */
#define MSRS_MAX 1024

static int fail(char *error, size_t error_len, const char *what)
{
    int err = errno ? -errno : -EIO;
    snprintf(error, error_len, "%s: %s", what, strerror(-err));
    return err;
}

static int bad_snapshot(char *error, size_t error_len, const char *what)
{
    snprintf(error, error_len, "snapshot: %s is damaged", what);
    return -EINVAL;
}

int x86_vcpu_quiesce(struct kvm_vcpu *vcpu)
{
    vcpu->run->immediate_exit = 1;
    int r = ioctl(vcpu->fd, KVM_RUN, 0);
    int err = r < 0 && errno != EINTR ? -errno : 0;
    vcpu->run->immediate_exit = 0;
    return err;
}

/* ---- vCPU ---- */

/* One ioctl's struct, as KVM defines it: the size first, so a reader can check it. */
static void put_blob(struct snap_writer *w, const void *data, size_t len)
{
    snap_put_u32(w, (uint32_t)len);
    snap_put_bytes(w, data, len);
}

static bool get_blob(struct snap_reader *r, void *data, size_t len)
{
    if (snap_get_u32(r) != len)
        return snap_reject(r);
    snap_get_bytes(r, data, len);
    return snap_reader_ok(r, false);
}

/* XSAVE area size: larger than struct kvm_xsave when KVM_CAP_XSAVE2 says so (AMX). */
static size_t xsave_size(const struct kvm_vm *vm)
{
    int size = kvm_check_extension(vm->vm_fd, KVM_CAP_XSAVE2);
    return size > (int)sizeof(struct kvm_xsave) ? (size_t)size : sizeof(struct kvm_xsave);
}

/* The MSRs KVM saves and restores for migration; NULL on failure. */
static struct kvm_msr_list *msr_list(const struct kvm_vm *vm)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return NULL;
    if (probe.nmsrs == 0 || probe.nmsrs > MSRS_MAX)
        return NULL;
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
    if (!list)
        return NULL;
    list->nmsrs = probe.nmsrs;
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        free(list);
        return NULL;
    }
    return list;
}

/* A kvm_msrs with room for one entry; the union gives the bytes kvm_msrs' alignment. */
union one_msr {
    struct kvm_msrs msrs;
    uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
};

/* One at a time, so that an MSR the vCPU refuses costs only itself: 1 read, 0 refused. */
static int get_msr(const struct kvm_vcpu *vcpu, uint32_t index, uint64_t *value)
{
    union one_msr m = {.bytes = {0}};
    m.msrs.nmsrs = 1;
    m.msrs.entries[0].index = index;
    int n = ioctl(vcpu->fd, KVM_GET_MSRS, &m);
    *value = m.msrs.entries[0].data;
    return n < 0 ? -errno : n;
}

static int set_msr(const struct kvm_vcpu *vcpu, uint32_t index, uint64_t value)
{
    union one_msr m = {.bytes = {0}};
    m.msrs.nmsrs = 1;
    m.msrs.entries[0].index = index;
    m.msrs.entries[0].data = value;
    int n = ioctl(vcpu->fd, KVM_SET_MSRS, &m);
    return n < 0 ? -errno : n;
}

/* Every MSR KVM lists for migration that this vCPU has: a count, then index and value pairs.
 * TSC_DEADLINE goes last: KVM drops it unless the LAPIC timer is in deadline mode, so the
 * restore sets it after the LAPIC (see restore_vcpu). */
static int save_msrs(const struct kvm_vm *vm, const struct kvm_vcpu *vcpu, struct snap_writer *w)
{
    struct kvm_msr_list *list = msr_list(vm);
    if (!list)
        return -ENOTSUP;
    struct kvm_msr_entry *saved = calloc(list->nmsrs, sizeof(*saved));
    uint32_t count = 0;
    int err = saved ? 0 : -ENOMEM;
    for (uint32_t i = 0; err == 0 && i < list->nmsrs; i++) {
        uint64_t value;
        int n = get_msr(vcpu, list->indices[i], &value);
        if (n < 0)
            err = n;
        else if (n == 1)
            saved[count++] = (struct kvm_msr_entry){.index = list->indices[i], .data = value};
    }
    if (err == 0) {
        snap_put_u32(w, count);
        for (uint32_t i = 0; i < count; i++) {
            snap_put_u32(w, saved[i].index);
            snap_put_u64(w, saved[i].data);
        }
    }
    free(saved);
    free(list);
    return err;
}

/* Sets the saved MSRs but TSC_DEADLINE, whose value it returns in *deadline. Returns the
 * number of MSRs this vCPU refused, or a negative errno. */
static int restore_msrs(const struct kvm_vcpu *vcpu, struct snap_reader *r, uint64_t *deadline)
{
    uint32_t count = snap_get_u32(r);
    if (count > MSRS_MAX)
        return snap_reject(r), -EINVAL;
    int refused = 0;
    *deadline = 0;
    for (uint32_t i = 0; i < count && snap_reader_ok(r, false); i++) {
        uint32_t index = snap_get_u32(r);
        uint64_t value = snap_get_u64(r);
        if (index == MSR_IA32_TSC_DEADLINE) {
            *deadline = value;
            continue;
        }
        int n = set_msr(vcpu, index, value);
        if (n < 0)
            return n;
        refused += n == 0;
    }
    return snap_reader_ok(r, false) ? refused : -EINVAL;
}

struct vcpu_blobs {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs debugregs;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp_state;
    struct kvm_vcpu_events events;
};

static int get_blobs(const struct kvm_vcpu *vcpu, struct vcpu_blobs *b, const char **what)
{
    struct { unsigned long request; void *arg; const char *name; } gets[] = {
        {KVM_GET_REGS, &b->regs, "KVM_GET_REGS"},
        {KVM_GET_SREGS, &b->sregs, "KVM_GET_SREGS"},
        {KVM_GET_XCRS, &b->xcrs, "KVM_GET_XCRS"},
        {KVM_GET_DEBUGREGS, &b->debugregs, "KVM_GET_DEBUGREGS"},
        {KVM_GET_LAPIC, &b->lapic, "KVM_GET_LAPIC"},
        {KVM_GET_MP_STATE, &b->mp_state, "KVM_GET_MP_STATE"},
        {KVM_GET_VCPU_EVENTS, &b->events, "KVM_GET_VCPU_EVENTS"},
    };
    memset(b, 0, sizeof(*b));
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        if (ioctl(vcpu->fd, gets[i].request, gets[i].arg) < 0) {
            *what = gets[i].name;
            return -errno;
        }
    }
    return 0;
}

int x86_vcpu_save(const struct kvm_vm *vm, const struct kvm_vcpu *vcpu, struct snap_writer *w,
                  char *error, size_t error_len)
{
    struct vcpu_blobs b;
    const char *what = NULL;
    size_t xsize = xsave_size(vm);
    struct kvm_xsave *xsave = calloc(1, xsize);
    if (!xsave)
        return -ENOMEM;
    int err = get_blobs(vcpu, &b, &what);
    unsigned long get_xsave = xsize > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
    if (err == 0 && ioctl(vcpu->fd, get_xsave, xsave) < 0) {
        err = -errno;
        what = "KVM_GET_XSAVE";
    }
    int tsc_khz = err == 0 ? ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0) : 0;
    if (err == 0 && tsc_khz <= 0) {
        err = -errno;
        what = "KVM_GET_TSC_KHZ";
    }
    if (err == 0) {
        snap_begin(w, TAG_VCPU);
        snap_put_u32(w, vcpu->index);
        snap_put_u32(w, (uint32_t)tsc_khz);
        put_blob(w, &b.regs, sizeof(b.regs));
        put_blob(w, &b.sregs, sizeof(b.sregs));
        put_blob(w, &b.xcrs, sizeof(b.xcrs));
        put_blob(w, &b.debugregs, sizeof(b.debugregs));
        put_blob(w, &b.lapic, sizeof(b.lapic));
        put_blob(w, &b.mp_state, sizeof(b.mp_state));
        put_blob(w, &b.events, sizeof(b.events));
        put_blob(w, xsave, xsize);
        err = save_msrs(vm, vcpu, w);
        what = "KVM_GET_MSRS";
        snap_end(w);
    }
    free(xsave);
    if (err < 0) {
        errno = -err;
        return fail(error, error_len, what);
    }
    return 0;
}

static bool read_blobs(struct snap_reader *r, struct vcpu_blobs *b, struct kvm_xsave *xsave,
                       size_t xsize)
{
    return get_blob(r, &b->regs, sizeof(b->regs)) && get_blob(r, &b->sregs, sizeof(b->sregs)) &&
           get_blob(r, &b->xcrs, sizeof(b->xcrs)) &&
           get_blob(r, &b->debugregs, sizeof(b->debugregs)) &&
           get_blob(r, &b->lapic, sizeof(b->lapic)) &&
           get_blob(r, &b->mp_state, sizeof(b->mp_state)) &&
           get_blob(r, &b->events, sizeof(b->events)) && get_blob(r, xsave, xsize);
}

/*
 * The order matters where KVM derives one piece from another: the special registers (with
 * EFER and the APIC base) before the MSRs, the LAPIC after them, TSC_DEADLINE after the
 * LAPIC, and the pending events last, once everything they refer to is in place.
 */
static int put_state(const struct kvm_vcpu *vcpu, struct vcpu_blobs *b, struct kvm_xsave *xsave,
                     struct snap_reader *r, const char **what)
{
    struct { unsigned long request; void *arg; const char *name; } first[] = {
        {KVM_SET_REGS, &b->regs, "KVM_SET_REGS"},
        {KVM_SET_XSAVE, xsave, "KVM_SET_XSAVE"},
        {KVM_SET_XCRS, &b->xcrs, "KVM_SET_XCRS"},
        {KVM_SET_SREGS, &b->sregs, "KVM_SET_SREGS"},
    }, last[] = {
        {KVM_SET_MP_STATE, &b->mp_state, "KVM_SET_MP_STATE"},
        {KVM_SET_LAPIC, &b->lapic, "KVM_SET_LAPIC"},
    }, events[] = {
        {KVM_SET_VCPU_EVENTS, &b->events, "KVM_SET_VCPU_EVENTS"},
        {KVM_SET_DEBUGREGS, &b->debugregs, "KVM_SET_DEBUGREGS"},
    };
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++)
        if (ioctl(vcpu->fd, first[i].request, first[i].arg) < 0)
            return *what = first[i].name, -errno;
    uint64_t deadline;
    int refused = restore_msrs(vcpu, r, &deadline);
    if (refused != 0)
        return *what = "KVM_SET_MSRS", refused < 0 ? refused : -EINVAL;
    for (size_t i = 0; i < sizeof(last) / sizeof(last[0]); i++)
        if (ioctl(vcpu->fd, last[i].request, last[i].arg) < 0)
            return *what = last[i].name, -errno;
    if (deadline && set_msr(vcpu, MSR_IA32_TSC_DEADLINE, deadline) != 1)
        return *what = "KVM_SET_MSRS (TSC deadline)", -EINVAL;
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        if (ioctl(vcpu->fd, events[i].request, events[i].arg) < 0)
            return *what = events[i].name, -errno;
    return 0;
}

int x86_vcpu_restore(const struct kvm_vm *vm, const struct kvm_vcpu *vcpu, struct snap_reader *r,
                     char *error, size_t error_len)
{
    struct snap_reader s;
    snap_section(r, TAG_VCPU, &s);
    uint32_t index = snap_get_u32(&s);
    uint32_t tsc_khz = snap_get_u32(&s);
    if (!snap_reader_ok(&s, false) || index != vcpu->index)
        return bad_snapshot(error, error_len, "a vCPU's state");
    int host_khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);
    if (host_khz > 0 && (uint32_t)host_khz != tsc_khz) {
        snprintf(error, error_len, "snapshot: made with a %u kHz TSC, this host's is %d kHz",
                 tsc_khz, host_khz);
        return -ESTALE;
    }
    size_t xsize = xsave_size(vm);
    struct vcpu_blobs b;
    struct kvm_xsave *xsave = calloc(1, xsize);
    if (!xsave)
        return -ENOMEM;
    int err = -EINVAL;
    const char *what = "a vCPU's state";
    if (read_blobs(&s, &b, xsave, xsize))
        err = put_state(vcpu, &b, xsave, &s, &what);
    free(xsave);
    if (err == -EINVAL && !snap_reader_ok(&s, true))
        return bad_snapshot(error, error_len, "a vCPU's state");
    if (err < 0) {
        errno = -err;
        return fail(error, error_len, what);
    }
    return 0;
}

/* ---- the VM: PIC, IOAPIC, PIT, clock ---- */

int x86_vm_save(const struct kvm_vm *vm, struct snap_writer *w, char *error, size_t error_len)
{
    struct kvm_irqchip chips[3] = {{.chip_id = KVM_IRQCHIP_PIC_MASTER},
                                   {.chip_id = KVM_IRQCHIP_PIC_SLAVE},
                                   {.chip_id = KVM_IRQCHIP_IOAPIC}};
    for (int i = 0; i < 3; i++)
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
            return fail(error, error_len, "KVM_GET_IRQCHIP");
    struct kvm_pit_state2 pit;
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return fail(error, error_len, "KVM_GET_PIT2");
    struct kvm_clock_data clock = {0};
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
        return fail(error, error_len, "KVM_GET_CLOCK");
    snap_begin(w, TAG_VM);
    for (int i = 0; i < 3; i++)
        put_blob(w, &chips[i], sizeof(chips[i]));
    put_blob(w, &pit, sizeof(pit));
    snap_put_u64(w, clock.clock);
    snap_end(w);
    return 0;
}

int x86_vm_restore(const struct kvm_vm *vm, struct snap_reader *r, char *error, size_t error_len)
{
    struct snap_reader s;
    snap_section(r, TAG_VM, &s);
    struct kvm_irqchip chips[3];
    struct kvm_pit_state2 pit;
    bool ok = true;
    for (int i = 0; i < 3 && ok; i++)
        ok = get_blob(&s, &chips[i], sizeof(chips[i])) && chips[i].chip_id == (uint32_t)i;
    ok = ok && get_blob(&s, &pit, sizeof(pit));
    /* The guest's clock goes on from where it stood: no time passed for it. */
    struct kvm_clock_data clock = {.clock = snap_get_u64(&s)};
    if (!ok || !snap_reader_ok(&s, true))
        return bad_snapshot(error, error_len, "the interrupt controllers' state");
    for (int i = 0; i < 3; i++)
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
            return fail(error, error_len, "KVM_SET_IRQCHIP");
    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
        return fail(error, error_len, "KVM_SET_PIT2");
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
        return fail(error, error_len, "KVM_SET_CLOCK");
    return 0;
}
