/*
 * Boot snapshots (cove_config_set_boot_cache): the key that says which configuration a
 * snapshot is of, saving the machine when cove-agent says READY, and restoring it into a VM
 * built from the same configuration.
 *
 * The snapshot point is chosen so that little state is in flight: the guest's init is idle
 * in poll() with its listener open, nothing connected (vm_agent.c holds connections back
 * until the snapshot is settled), the vCPU that wrote READY has completed that port write,
 * the others are parked outside KVM_RUN, and the I/O thread is parked between handlers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/state.h"
#include "bus/pci.h"
#include "config_internal.h"
#include "devices/i8042.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "snapshot/cache.h"
#include "snapshot/file.h"
#include "snapshot/stream.h"
#include "virtio/pci.h"
#include "vm_machine.h"

#define CPUID_ENTRIES_MAX 256
#define TAG_MACHINE SNAP_TAG('c', 'o', 'v', 'e')

/* ---- which configuration ---- */

static uint64_t hash_u64(uint64_t h, uint64_t v)
{
    return snap_hash(h, &v, sizeof(v));
}

/* NULL and "" hash differently. */
static uint64_t hash_str(uint64_t h, const char *s)
{
    return s ? snap_hash(h, s, strlen(s) + 1) : hash_u64(h, UINT64_MAX);
}

/* A file by name and identity: replacing or rebuilding it makes another key. */
static uint64_t hash_file(uint64_t h, const char *path)
{
    struct stat st;
    h = hash_str(h, path);
    if (!path || stat(path, &st) < 0)
        return hash_u64(h, 0);
    h = hash_u64(h, st.st_dev);
    h = hash_u64(h, st.st_ino);
    h = hash_u64(h, (uint64_t)st.st_size);
    h = hash_u64(h, (uint64_t)st.st_mtim.tv_sec);
    return hash_u64(h, (uint64_t)st.st_mtim.tv_nsec);
}

/* The CPUID vCPU 0 gets, as patched: KVM's supported list also carries the APIC ID of the
 * host CPU this thread runs on (leaves 0x1, 0xb and 0x1f), which the patch replaces. */
static uint64_t hash_cpuid(uint64_t h, const cove_config *c, struct kvm_cpuid2 *cpuid)
{
    const struct x86_cpu_options options = {.cpus = c->cpus,
                                            .nested_virtualization = c->nested_virtualization};
    x86_patch_cpuid(cpuid, &options, 0);
    return snap_hash(h, cpuid->entries, cpuid->nent * sizeof(cpuid->entries[0]));
}

/* The host side: this libcove's code (the object it was loaded from), the host kernel, and
 * the CPU features KVM offers, which the guest kernel chose its code paths by. */
static uint64_t hash_host(uint64_t h, const cove_config *c, const struct kvm_vm *kvm)
{
    Dl_info self;
    h = hash_file(h, dladdr((void *)hash_cpuid, &self) ? self.dli_fname : NULL);
    struct utsname u;
    if (uname(&u) == 0) {
        h = hash_str(h, u.release);
        h = hash_str(h, u.version);
    }
    size_t size = sizeof(struct kvm_cpuid2) + CPUID_ENTRIES_MAX * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, size);
    if (cpuid) {
        cpuid->nent = CPUID_ENTRIES_MAX;
        if (ioctl(kvm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
            h = hash_cpuid(h, c, cpuid);
        free(cpuid);
    }
    return h;
}

static uint64_t boot_key(const cove_config *c, const struct kvm_vm *kvm)
{
    uint64_t h = hash_str(SNAP_HASH_INIT, "cove boot snapshot");
    h = hash_u64(h, SNAP_FILE_VERSION);
    h = hash_file(h, c->kernel_path);
    h = hash_file(h, c->initrd_path);
    h = hash_str(h, c->cmdline);
    h = hash_u64(h, c->cpus);
    h = hash_u64(h, c->memory);
    h = hash_u64(h, c->nested_virtualization);
    h = hash_u64(h, c->entropy);
    h = hash_u64(h, c->network);
    h = hash_u64(h, c->network_policy);
    h = hash_str(h, c->mac);
    h = hash_u64(h, c->vsock_cid);
    /* A share's tag is in its device's configuration space, read by the guest's driver at
     * boot; its directory is not in the guest until the mount, which follows the restore. */
    h = hash_u64(h, c->share_count);
    for (size_t i = 0; i < c->share_count; i++)
        h = hash_str(h, c->shares[i].tag);
    return hash_host(h, c, kvm);
}

/* Devices whose state a snapshot can carry: see cove_config_set_boot_cache. */
static bool config_can_snapshot(const cove_config *c)
{
    return c->disk_count == 0 && c->console_device == COVE_CONSOLE_DEVICE_SERIAL &&
           c->network != COVE_NETWORK_TAP && c->vsock;
}

/* mkdir -p, the last component private: a snapshot is a copy of a guest's memory. */
static int make_cache_dir(const char *dir)
{
    char *path = strdup(dir);
    if (!path)
        return -ENOMEM;
    int r = 0;
    for (char *slash = strchr(path + 1, '/'); slash && r == 0; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            r = -errno;
        *slash = '/';
    }
    if (r == 0 && mkdir(path, 0700) < 0 && errno != EEXIST)
        r = -errno;
    free(path);
    return r;
}

__attribute__((format(printf, 2, 3))) static void warn(cove_vm *vm, const char *fmt, ...)
{
    char line[COVE_ERROR_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    vm_warn(vm, line);
}

bool vm_snapshot_prepare(cove_vm *vm, struct snap_file *file)
{
    const cove_config *c = vm->config;
    atomic_store(&vm->snapshot_state, VM_SNAPSHOT_OFF);
    if (!c->boot_cache_dir || !config_can_snapshot(c))
        return false;
    int r = make_cache_dir(c->boot_cache_dir);
    if (r < 0) {
        warn(vm, "boot cache '%s': %s; booting without it", c->boot_cache_dir, strerror(-r));
        return false;
    }
    vm->snapshot_key = boot_key(c, &vm->kvm);
    free(vm->snapshot_path);
    size_t len = strlen(c->boot_cache_dir) + 32;
    vm->snapshot_path = malloc(len);
    if (!vm->snapshot_path)
        return false;
    snprintf(vm->snapshot_path, len, "%s/%016llx.snap", c->boot_cache_dir,
             (unsigned long long)vm->snapshot_key);
    char error[COVE_ERROR_MAX];
    r = snap_file_open(vm->snapshot_path, vm->snapshot_key, c->memory, file, error, sizeof(error));
    if (r == 0) {
        snap_cache_touch(vm->snapshot_path);
        atomic_store(&vm->snapshot_state, VM_SNAPSHOT_RESTORED);
        return true;
    }
    if (r != -ENOENT) {
        warn(vm, "%s; removed, booting afresh", error);
        unlink(vm->snapshot_path);
    }
    atomic_store(&vm->snapshot_state, VM_SNAPSHOT_WANTED);
    return false;
}

/* ---- saving ---- */

static int save_devices(cove_vm *vm, struct snap_writer *w, char *error, size_t error_len)
{
    uart_save(vm->dev.uart, w);
    i8042_save(vm->dev.i8042, w);
    rtc_save(vm->dev.rtc, w);
    pci_bus_save(vm->pci, w);
    snap_put_u32(w, vm->virtio_count);
    for (unsigned i = 0; i < vm->virtio_count; i++) {
        int r = virtio_pci_save(vm->virtio[i], w);
        if (r < 0) {
            snprintf(error, error_len, "%s",
                     r == -EBUSY ? "a device was in use at READY (a vsock connection open, or "
                                   "a share mounted, before the guest said it was ready)"
                                 : "a device cannot be saved");
            return r;
        }
    }
    return 0;
}

static int save_machine(cove_vm *vm, struct snap_writer *w, char *error, size_t error_len)
{
    snap_begin(w, TAG_MACHINE);
    int r = x86_vm_save(&vm->kvm, w, error, error_len);
    snap_put_u32(w, vm->vcpu_count);
    for (unsigned i = 0; r == 0 && i < vm->vcpu_count; i++)
        r = x86_vcpu_save(&vm->kvm, &vm->vcpus[i].vcpu, w, error, error_len);
    if (r == 0)
        r = save_devices(vm, w, error, error_len);
    snap_end(w);
    if (r == 0 && !snap_writer_ok(w)) {
        snprintf(error, error_len, "out of memory");
        r = -ENOMEM;
    }
    return r;
}

/* With everything else stopped: the state, then the file with the RAM. */
static int save_stopped(cove_vm *vm, char *error, size_t error_len)
{
    struct snap_writer w;
    snap_writer_init(&w);
    int r = save_machine(vm, &w, error, error_len);
    if (r == 0)
        r = snap_file_write(vm->snapshot_path, vm->snapshot_key, w.data, w.len, &vm->mem, error,
                            error_len);
    snap_writer_free(&w);
    return r;
}

void vm_snapshot_save(cove_vm *vm, struct vcpu_slot *slot)
{
    int wanted = VM_SNAPSHOT_WANTED;
    if (!atomic_compare_exchange_strong(&vm->snapshot_state, &wanted, VM_SNAPSHOT_SAVING))
        return;
    char error[COVE_ERROR_MAX] = "the VM stopped";
    int r = x86_vcpu_quiesce(&slot->vcpu);
    if (r < 0)
        snprintf(error, sizeof(error), "KVM_RUN: %s", strerror(-r));
    else if (!vm_pause_vcpus(vm, slot))
        r = -EINTR;
    if (r == 0) {
        io_loop_park(vm->io_loop);
        r = save_stopped(vm, error, sizeof(error));
        io_loop_unpark(vm->io_loop);
        vm_resume_vcpus(vm);
    }
    atomic_store(&vm->snapshot_state, r == 0 ? VM_SNAPSHOT_SAVED : VM_SNAPSHOT_GIVEN_UP);
    if (r < 0 && r != -EINTR)
        warn(vm, "boot snapshot not saved: %s", error);
    vm_snapshot_settled(vm);
    /* After the settle, so that requests waiting for it need not wait for this too. */
    if (r == 0)
        snap_cache_prune(vm->config->boot_cache_dir, SNAP_CACHE_MAX_ENTRIES);
}

/* ---- restoring ---- */

static int bad(cove_error *error, const char *path, const char *what)
{
    snprintf(error->message, sizeof(error->message), "boot snapshot '%s': %s", path, what);
    return -EINVAL;
}

static bool restore_devices(cove_vm *vm, struct snap_reader *r)
{
    if (!uart_restore(vm->dev.uart, r) || !i8042_restore(vm->dev.i8042, r) ||
        !rtc_restore(vm->dev.rtc, r) || !pci_bus_restore(vm->pci, r))
        return false;
    if (snap_get_u32(r) != vm->virtio_count)
        return snap_reject(r);
    for (unsigned i = 0; i < vm->virtio_count; i++)
        if (!virtio_pci_restore(vm->virtio[i], r))
            return false;
    return true;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int vm_snapshot_restore(cove_vm *vm, const struct snap_file *file, cove_error *error)
{
    struct snap_reader all, r;
    snap_reader_init(&all, file->state, file->state_len);
    snap_section(&all, TAG_MACHINE, &r);
    char why[COVE_ERROR_MAX];
    int err = x86_vm_restore(&vm->kvm, &r, why, sizeof(why));
    if (err == 0 && snap_get_u32(&r) != vm->vcpu_count)
        return bad(error, vm->snapshot_path, "made for another number of vCPUs");
    for (unsigned i = 0; err == 0 && i < vm->vcpu_count; i++)
        err = x86_vcpu_restore(&vm->kvm, &vm->vcpus[i].vcpu, &r, why, sizeof(why));
    if (err < 0) {
        int n = snprintf(error->message, sizeof(error->message), "boot snapshot '%s': ",
                         vm->snapshot_path);
        if (n >= 0 && (size_t)n < sizeof(error->message))
            snprintf(error->message + n, sizeof(error->message) - (size_t)n, "%s", why);
        return err;
    }
    if (!restore_devices(vm, &r) || !snap_reader_ok(&r, true) || !snap_reader_ok(&all, true))
        return bad(error, vm->snapshot_path, "the devices' state is damaged");
    /* The guest is up already: connections may go ahead at once. */
    atomic_store(&vm->boot_signal_ns, now_ns());
    return 0;
}
