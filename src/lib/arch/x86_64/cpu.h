/* x86_64 machine and vCPU set-up on KVM: irqchip, PIT, CPUID, MSRs and the boot register state. */
#ifndef COVE_X86_CPU_H
#define COVE_X86_CPU_H

#include <stddef.h>

#include "arch/x86_64/boot.h"
#include "guest_mem.h"
#include "hv/kvm.h"

/* In-kernel LAPIC/IOAPIC/PIC and PIT, and the addresses KVM needs on Intel. */
int x86_vm_setup(struct kvm_vm *vm, char *error, size_t error_len);

/* GDT and identity page tables for the 64-bit entry, written into low guest memory. */
int x86_write_boot_tables(const struct guest_mem *mem);

/*
 * CPUID (topology for `cpus` vCPUs, hypervisor leaves), MSRs and LAPIC for one vCPU; the boot
 * vCPU (index 0) also gets the long-mode register state that enters the kernel at entry.
 */
int x86_vcpu_setup(struct kvm_vm *vm, struct kvm_vcpu *vcpu, unsigned cpus,
                   const struct boot_entry *entry, char *error, size_t error_len);

#endif
