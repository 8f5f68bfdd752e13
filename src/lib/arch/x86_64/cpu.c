#include "arch/x86_64/cpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86_64/layout.h"

/* GDT selectors the 64-bit boot protocol requires (__BOOT_CS, __BOOT_DS), plus a TSS. */
#define GDT_BOOT_CS 0x10
#define GDT_BOOT_DS 0x18
#define GDT_TSS 0x20

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1ULL
#define MTRR_ENABLE_WRITEBACK ((1ULL << 11) | 6) /* MTRRs on, default type write-back */

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

#define CPUID_MAX_ENTRIES 256

static int fail(char *error, size_t error_len, const char *what)
{
    int err = errno;
    snprintf(error, error_len, "%s: %s", what, strerror(err));
    return -err;
}

int x86_vm_setup(struct kvm_vm *vm, char *error, size_t error_len)
{
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0)
        return fail(error, error_len, "KVM_SET_TSS_ADDR");
    uint64_t identity = X86_IDENTITY_MAP_ADDR;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return fail(error, error_len, "KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return fail(error, error_len, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return fail(error, error_len, "KVM_CREATE_PIT2");
    return 0;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof(v)); }

int x86_write_boot_tables(const struct guest_mem *mem)
{
    /* Flat 4 GiB segments; only the access bits differ. */
    static const uint64_t gdt[] = {
        0,
        0,
        0x00af9b000000ffffULL, /* 0x10: 64-bit code */
        0x00cf93000000ffffULL, /* 0x18: data */
        0x008f8b000000ffffULL, /* 0x20: 64-bit TSS (busy) */
    };
    uint8_t *gdt_mem = guest_mem_ptr(mem, X86_GDT_ADDR, sizeof(gdt));
    uint8_t *pml4 = guest_mem_ptr(mem, X86_PML4_ADDR, 4096);
    uint8_t *pdpt = guest_mem_ptr(mem, X86_PDPT_ADDR, 4096);
    uint8_t *pd = guest_mem_ptr(mem, X86_PD_ADDR, 4 * 4096);
    if (!gdt_mem || !pml4 || !pdpt || !pd)
        return -EFAULT;
    memcpy(gdt_mem, gdt, sizeof(gdt));
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    /* Identity map of the low 4 GiB with 2 MiB pages: covers the kernel, the zero page, the
     * command line and the initrd wherever they are, and needs no 1 GiB page support. */
    put64(pml4, X86_PDPT_ADDR | 0x3);
    for (uint64_t i = 0; i < 4; i++)
        put64(pdpt + 8 * i, (X86_PD_ADDR + 4096 * i) | 0x3);
    for (uint64_t i = 0; i < 4 * 512; i++)
        put64(pd + 8 * i, (i << 21) | 0x83); /* present, writable, 2 MiB page */
    return 0;
}

static void set_segment(struct kvm_segment *seg, uint16_t selector, uint8_t type, int code)
{
    *seg = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code ? 0 : 1,
        .s = 1,
        .l = code ? 1 : 0,
        .g = 1,
    };
}

static int set_long_mode(struct kvm_vcpu *vcpu, const struct boot_entry *entry, char *error,
                         size_t error_len)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return fail(error, error_len, "KVM_GET_SREGS");
    set_segment(&sregs.cs, GDT_BOOT_CS, 0xb, 1);
    set_segment(&sregs.ds, GDT_BOOT_DS, 0x3, 0);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    set_segment(&sregs.tr, GDT_TSS, 0xb, 0);
    sregs.tr.s = 0;
    sregs.tr.db = 0;
    sregs.gdt.base = X86_GDT_ADDR;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = X86_PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
        return fail(error, error_len, "KVM_SET_SREGS");

    struct kvm_regs regs = {
        .rflags = 0x2,
        .rip = entry->rip,
        .rsp = X86_BOOT_STACK_ADDR,
        .rbp = X86_BOOT_STACK_ADDR,
        .rsi = entry->boot_params,
    };
    if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
        return fail(error, error_len, "KVM_SET_REGS");

    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return fail(error, error_len, "KVM_SET_FPU");
    return 0;
}

static int set_msrs(struct kvm_vcpu *vcpu, char *error, size_t error_len)
{
    static const struct { uint32_t index; uint64_t value; } initial[] = {
        {MSR_IA32_SYSENTER_CS, 0}, {MSR_IA32_SYSENTER_ESP, 0}, {MSR_IA32_SYSENTER_EIP, 0},
        {MSR_STAR, 0}, {MSR_CSTAR, 0}, {MSR_KERNEL_GS_BASE, 0}, {MSR_SYSCALL_MASK, 0},
        {MSR_LSTAR, 0}, {MSR_IA32_TSC, 0},
        {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
        {MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK},
    };
    enum { COUNT = sizeof(initial) / sizeof(initial[0]) };
    struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + COUNT * sizeof(struct kvm_msr_entry));
    if (!msrs)
        return -ENOMEM;
    msrs->nmsrs = COUNT;
    for (unsigned i = 0; i < COUNT; i++) {
        msrs->entries[i].index = initial[i].index;
        msrs->entries[i].data = initial[i].value;
    }
    int r = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
    int err = r < 0 ? fail(error, error_len, "KVM_SET_MSRS") : 0;
    if (r >= 0 && r != COUNT) {
        snprintf(error, error_len, "KVM_SET_MSRS: MSR 0x%x refused", initial[r].index);
        err = -EINVAL;
    }
    free(msrs);
    return err;
}

/* LINT0 delivers the legacy PIC (ExtINT), LINT1 NMIs, as firmware leaves them. */
static int set_lapic_lints(struct kvm_vcpu *vcpu, char *error, size_t error_len)
{
    struct kvm_lapic_state lapic;
    if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
        return fail(error, error_len, "KVM_GET_LAPIC");
    uint32_t lint0, lint1;
    memcpy(&lint0, lapic.regs + APIC_LVT_LINT0, 4);
    memcpy(&lint1, lapic.regs + APIC_LVT_LINT1, 4);
    lint0 = (lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
    lint1 = (lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
    memcpy(lapic.regs + APIC_LVT_LINT0, &lint0, 4);
    memcpy(lapic.regs + APIC_LVT_LINT1, &lint1, 4);
    if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
        return fail(error, error_len, "KVM_SET_LAPIC");
    return 0;
}

static unsigned bits_for(unsigned count)
{
    unsigned bits = 0;
    while ((1u << bits) < count)
        bits++;
    return bits;
}

#define CPUID_1_ECX_VMX (1u << 5)
#define CPUID_80000001_ECX_SVM (1u << 2)
#define CPUID_SVM_FEATURES 0x8000000a

/* Describes `cpus` single-threaded cores in one package, this vCPU being core `index`. */
static void patch_topology(struct kvm_cpuid_entry2 *e, unsigned index, unsigned cpus)
{
    switch (e->function) {
    case 0x1:
        e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | (cpus << 16);
        e->ecx |= 1u << 31; /* running under a hypervisor */
        if (cpus > 1)
            e->edx |= 1u << 28; /* HTT: EBX[23:16] is valid */
        break;
    case 0x4:
        if (e->eax & 0x1f) /* a real cache level: cores sharing the package */
            e->eax = (e->eax & 0x03ffffffu) | ((cpus - 1) << 26);
        break;
    case 0xa: /* no PMU: guests would otherwise program counters KVM may not offer */
        e->eax = e->ebx = e->ecx = e->edx = 0;
        break;
    case 0xb:
    case 0x1f: /* the same layout; Linux prefers it when there is one */
        e->edx = index;
        if (e->index == 0) {
            e->eax = 0;
            e->ebx = 1;
            e->ecx = (1u << 8) | 0;
        } else if (e->index == 1) {
            e->eax = bits_for(cpus);
            e->ebx = cpus;
            e->ecx = (2u << 8) | 1;
        } else {
            e->eax = e->ebx = 0;
            e->ecx = e->index;
        }
        break;
    case 0x80000008:
        e->ecx = (e->ecx & ~0xf0ffu) | (bits_for(cpus) << 12) | (cpus - 1);
        break;
    default:
        break;
    }
}

/* Whether the entry offers VMX or SVM. */
static bool offers_virtualization(const struct kvm_cpuid_entry2 *e)
{
    return (e->function == 0x1 && (e->ecx & CPUID_1_ECX_VMX)) ||
           (e->function == 0x80000001 && (e->ecx & CPUID_80000001_ECX_SVM));
}

static void hide_virtualization(struct kvm_cpuid_entry2 *e)
{
    if (e->function == 0x1)
        e->ecx &= ~CPUID_1_ECX_VMX;
    else if (e->function == 0x80000001)
        e->ecx &= ~CPUID_80000001_ECX_SVM;
    else if (e->function == CPUID_SVM_FEATURES)
        e->eax = e->ebx = e->ecx = e->edx = 0;
}

int x86_patch_cpuid(struct kvm_cpuid2 *cpuid, const struct x86_cpu_options *options,
                    unsigned index)
{
    bool offered = false;
    for (unsigned i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        patch_topology(e, index, options->cpus);
        offered = offered || offers_virtualization(e);
        if (!options->nested_virtualization)
            hide_virtualization(e);
    }
    return options->nested_virtualization && !offered ? -ENOTSUP : 0;
}

int x86_vcpu_set_cpuid(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
                       const struct x86_cpu_options *options, char *error, size_t error_len)
{
    size_t size = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, size);
    if (!cpuid)
        return -ENOMEM;
    cpuid->nent = CPUID_MAX_ENTRIES;
    int r = 0;
    if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
        r = fail(error, error_len, "KVM_GET_SUPPORTED_CPUID");
        goto out;
    }
    r = x86_patch_cpuid(cpuid, options, vcpu->index);
    if (r < 0) {
        snprintf(error, error_len,
                 "nested virtualization: this host's KVM offers guests neither VMX nor SVM "
                 "(load kvm_intel or kvm_amd with nested=1, or leave it off)");
        goto out;
    }
    if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0)
        r = fail(error, error_len, "KVM_SET_CPUID2");
out:
    free(cpuid);
    return r;
}

int x86_vcpu_setup(struct kvm_vm *vm, struct kvm_vcpu *vcpu, const struct x86_cpu_options *options,
                   const struct boot_entry *entry, char *error, size_t error_len)
{
    int r = x86_vcpu_set_cpuid(vm, vcpu, options, error, error_len);
    if (r == 0)
        r = set_msrs(vcpu, error, error_len);
    if (r == 0)
        r = set_lapic_lints(vcpu, error, error_len);
    /* Other vCPUs wait for INIT/SIPI from the guest, handled by the in-kernel LAPIC. */
    if (r == 0 && vcpu->index == 0)
        r = set_long_mode(vcpu, entry, error, error_len);
    return r;
}
