/*
 * The thin layer over /dev/kvm that is the same on every architecture: VM and vCPU file
 * descriptors, memory slots, interrupt lines. Arch code adds its own set-up on top.
 */
#ifndef COVE_KVM_H
#define COVE_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kvm_run;

struct kvm_vm {
    int kvm_fd;
    int vm_fd;
    size_t run_size; /* size of each vCPU's shared kvm_run area */
};

struct kvm_vcpu {
    int fd;
    unsigned index;
    struct kvm_run *run;
    size_t run_size;
};

/* Opens /dev/kvm and creates a VM. On failure writes one line into error. */
int kvm_vm_open(struct kvm_vm *vm, char *error, size_t error_len);
void kvm_vm_close(struct kvm_vm *vm);
/* The value of KVM_CHECK_EXTENSION for cap on the system fd, or 0. */
int kvm_check_extension(int fd, long cap);
int kvm_set_memory(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host);
int kvm_set_irq_line(struct kvm_vm *vm, unsigned gsi, int level);

/*
 * irqfd: a write to eventfd injects GSI gsi in the kernel (through the routing table), with no
 * exit to user space. Needs the in-kernel irqchip. Return 0 or -errno.
 */
int kvm_irqfd_assign(struct kvm_vm *vm, unsigned gsi, int eventfd);
int kvm_irqfd_deassign(struct kvm_vm *vm, unsigned gsi, int eventfd);

/*
 * ioeventfd: a guest write of len bytes (1, 2, 4, 8; 0 matches any length) to addr, in port
 * space when pio, else MMIO, signals eventfd in the kernel instead of exiting to user space,
 * whatever the value (no datamatch). remove takes the same arguments. Return 0 or -errno.
 */
int kvm_ioeventfd_add(struct kvm_vm *vm, uint64_t addr, unsigned len, bool pio, int eventfd);
int kvm_ioeventfd_remove(struct kvm_vm *vm, uint64_t addr, unsigned len, bool pio, int eventfd);

int kvm_vcpu_create(struct kvm_vm *vm, unsigned index, struct kvm_vcpu *vcpu);
void kvm_vcpu_destroy(struct kvm_vcpu *vcpu);

#endif
