/* x86_64 machine and vCPU set-up on KVM: irqchip, PIT, CPUID, MSRs and the boot register state. */
#ifndef COVE_X86_CPU_H
#define COVE_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>

#include "arch/x86_64/boot.h"
#include "guest_mem.h"
#include "hv/kvm.h"

/* In-kernel LAPIC/IOAPIC/PIC and PIT, and the addresses KVM needs on Intel. */
int x86_vm_setup(struct kvm_vm *vm, char *error, size_t error_len);

/* GDT and identity page tables for the 64-bit entry, written into low guest memory. */
int x86_write_boot_tables(const struct guest_mem *mem);

/* What the guest's CPUID describes. */
struct x86_cpu_options {
    unsigned cpus;              /* single-threaded cores in one package */
    bool nested_virtualization; /* VMX or SVM as KVM offers it; hidden otherwise */
};

/*
 * Adapts KVM's supported CPUID for vCPU `index`: the topology, no PMU, and VMX/SVM (with the
 * SVM feature leaf) hidden unless nested virtualization is asked for. -ENOTSUP when it is
 * asked for and KVM offers neither.
 */
int x86_patch_cpuid(struct kvm_cpuid2 *cpuid, const struct x86_cpu_options *options,
                    unsigned index);

/* The CPUID the vCPU shows (KVM's supported set, patched as above); x86_vcpu_setup does this
 * first, a vCPU restored from a snapshot only this. */
int x86_vcpu_set_cpuid(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
                       const struct x86_cpu_options *options, char *error, size_t error_len);

/*
 * CPUID (x86_patch_cpuid), MSRs and LAPIC for one vCPU; the boot vCPU (index 0) also gets the
 * long-mode register state that enters the kernel at entry.
 */
int x86_vcpu_setup(struct kvm_vm *vm, struct kvm_vcpu *vcpu, const struct x86_cpu_options *options,
                   const struct boot_entry *entry, char *error, size_t error_len);

#endif
