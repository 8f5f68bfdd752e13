#include "hv/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int kvm_check_extension(int fd, long cap)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

static int fail(char *error, size_t error_len, const char *what, int err)
{
    snprintf(error, error_len, "%s: %s", what, strerror(err));
    return -err;
}

int kvm_vm_open(struct kvm_vm *vm, char *error, size_t error_len)
{
    *vm = (struct kvm_vm){.kvm_fd = -1, .vm_fd = -1};
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        int err = errno;
        snprintf(error, error_len, "/dev/kvm: %s%s", strerror(err),
                 err == ENOENT ? " (load the kvm module; is virtualization enabled?)"
                 : err == EACCES ? " (add yourself to the kvm group)" : "");
        return -err;
    }
    int r = 0;
    if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        snprintf(error, error_len, "/dev/kvm: unsupported KVM API version");
        r = -ENOTSUP;
        goto out;
    }
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) {
        r = fail(error, error_len, "KVM_GET_VCPU_MMAP_SIZE", errno);
        goto out;
    }
    vm->run_size = (size_t)run_size;
    do {
        vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0) {
        r = fail(error, error_len, "KVM_CREATE_VM", errno);
        goto out;
    }
    fcntl(vm->vm_fd, F_SETFD, FD_CLOEXEC);
    return 0;
out:
    kvm_vm_close(vm);
    return r;
}

void kvm_vm_close(struct kvm_vm *vm)
{
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vm->vm_fd = vm->kvm_fd = -1;
}

int kvm_set_memory(struct kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
}

int kvm_set_irq_line(struct kvm_vm *vm, unsigned gsi, int level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};
    return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

static int irqfd(struct kvm_vm *vm, unsigned gsi, int eventfd, uint32_t flags)
{
    if (eventfd < 0)
        return -EBADF;
    struct kvm_irqfd req = {.fd = (uint32_t)eventfd, .gsi = gsi, .flags = flags};
    return ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0 ? -errno : 0;
}

int kvm_irqfd_assign(struct kvm_vm *vm, unsigned gsi, int eventfd)
{
    return irqfd(vm, gsi, eventfd, 0);
}

int kvm_irqfd_deassign(struct kvm_vm *vm, unsigned gsi, int eventfd)
{
    return irqfd(vm, gsi, eventfd, KVM_IRQFD_FLAG_DEASSIGN);
}

static int ioeventfd(struct kvm_vm *vm, uint64_t addr, unsigned len, bool pio, int eventfd,
                     uint32_t flags)
{
    if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8)
        return -EINVAL;
    if (eventfd < 0)
        return -EBADF;
    struct kvm_ioeventfd req = {
        .addr = addr,
        .len = len,
        .fd = eventfd,
        .flags = flags | (pio ? KVM_IOEVENTFD_FLAG_PIO : 0),
    };
    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &req) < 0 ? -errno : 0;
}

int kvm_ioeventfd_add(struct kvm_vm *vm, uint64_t addr, unsigned len, bool pio, int eventfd)
{
    return ioeventfd(vm, addr, len, pio, eventfd, 0);
}

int kvm_ioeventfd_remove(struct kvm_vm *vm, uint64_t addr, unsigned len, bool pio, int eventfd)
{
    return ioeventfd(vm, addr, len, pio, eventfd, KVM_IOEVENTFD_FLAG_DEASSIGN);
}

int kvm_vcpu_create(struct kvm_vm *vm, unsigned index, struct kvm_vcpu *vcpu)
{
    *vcpu = (struct kvm_vcpu){.fd = -1, .index = index};
    vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (vcpu->fd < 0)
        return -errno;
    fcntl(vcpu->fd, F_SETFD, FD_CLOEXEC);
    void *run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (run == MAP_FAILED) {
        int err = -errno;
        close(vcpu->fd);
        vcpu->fd = -1;
        return err;
    }
    vcpu->run = run;
    vcpu->run_size = vm->run_size;
    return 0;
}

void kvm_vcpu_destroy(struct kvm_vcpu *vcpu)
{
    if (vcpu->run)
        munmap(vcpu->run, vcpu->run_size);
    if (vcpu->fd >= 0)
        close(vcpu->fd);
    vcpu->run = NULL;
    vcpu->fd = -1;
}
