/*
 * The x86 machine state KVM holds, saved into and restored from a snapshot stream: each
 * vCPU's registers, FPU/XSAVE, LAPIC, MSRs and pending events, and the VM's in-kernel PIC,
 * IOAPIC, PIT and clock. Device state is the devices' own (each saves itself).
 *
 * Save only when the vCPU is out of KVM_RUN with no exit left half-done (x86_vcpu_quiesce).
 * Restore into a fresh vCPU that has its CPUID set and has never run.
 */
#ifndef COVE_X86_STATE_H
#define COVE_X86_STATE_H

#include <stddef.h>

#include "hv/kvm.h"
#include "snapshot/stream.h"

/* Completes an I/O or MMIO exit without entering the guest again (immediate_exit), so the
 * registers KVM reports are final: the instruction that exited has retired. */
int x86_vcpu_quiesce(struct kvm_vcpu *vcpu);

int x86_vcpu_save(const struct kvm_vm *vm, const struct kvm_vcpu *vcpu, struct snap_writer *w,
                  char *error, size_t error_len);
int x86_vcpu_restore(const struct kvm_vm *vm, const struct kvm_vcpu *vcpu, struct snap_reader *r,
                     char *error, size_t error_len);

int x86_vm_save(const struct kvm_vm *vm, struct snap_writer *w, char *error, size_t error_len);
int x86_vm_restore(const struct kvm_vm *vm, struct snap_reader *r, char *error, size_t error_len);

#endif
