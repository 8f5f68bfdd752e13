/*
 * The machine a cove_vm is built into, for the files of libcove that build, save and restore
 * it (vm.c, vm_snapshot.c). Everything else goes through vm_internal.h or the public API.
 */
#ifndef COVE_VM_MACHINE_H
#define COVE_VM_MACHINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cove/cove.h>

#include "bus/io_bus.h"
#include "devices/machine_events.h"
#include "guest_mem.h"
#include "hv/kvm.h"
#include "io_loop.h"

struct uart;
struct i8042;
struct rtc;
struct acpi_pm;
struct pvpanic;
struct boot_timer;
struct console_input;
struct pci_bus;
struct kvm_msi_router;
struct virtio_pci;
struct virtio_device;

/* Virtio functions on the PCI bus: the disks, a console and an entropy source. */
#define VM_MAX_VIRTIO (COVE_DISK_MAX + COVE_SHARE_MAX + 4)
/* MSI routes: one per queue plus one for configuration changes, for every function. */
#define VM_MAX_MSI_ROUTES 256

struct vcpu_slot {
    struct cove_vm *vm;
    struct kvm_vcpu vcpu;
    pthread_t thread;
    bool thread_started;
};

struct devices {
    struct uart *uart;
    struct i8042 *i8042;
    struct rtc *rtc;
    struct acpi_pm *acpi_pm;
    struct pvpanic *pvpanic;
    struct boot_timer *boot_timer;
};

struct serial_io {
    int in_fd;        /* -1: no input */
    int out_fd;       /* -1: output discarded */
    int owned_out_fd; /* the console file cove opened, closed at free */
    struct console_input *input;
};

struct cove_vm {
    cove_config *config;

    pthread_mutex_t lock; /* guards state, exit, callback, vcpus_running, ended */
    pthread_cond_t changed;
    cove_state state;
    cove_exit exit;
    bool started;
    bool ended;
    cove_state_fn callback;
    void *callback_opaque;
    cove_warning_fn warning; /* set before the start; read by the I/O thread */
    void *warning_opaque;
    unsigned pending_callbacks; /* state changes whose callback has not returned yet */
    int state_fd;

    atomic_bool stopping;
    atomic_uint_fast64_t boot_signal_ns;

    struct guest_mem mem;
    struct kvm_vm kvm;
    struct io_bus pio;
    struct io_bus mmio;
    struct machine_sink sink;
    struct devices dev;
    struct serial_io serial;
    struct pci_bus *pci;
    struct kvm_msi_router *msi;
    struct virtio_pci *virtio[VM_MAX_VIRTIO];
    unsigned virtio_count;
    struct virtio_device *virtio_console; /* owned by its transport; for the prepare hook */
    struct virtio_device *vsock;          /* owned by its transport; NULL without one */

    struct vcpu_slot *vcpus;
    unsigned vcpu_count;
    unsigned vcpus_running;

    struct io_loop *io_loop;
    pthread_t io_thread;
    bool io_thread_started;

    /* Boot snapshots (vm_snapshot.c). */
    char *snapshot_path;         /* this configuration's boot cache entry; NULL: none */
    uint64_t snapshot_key;
    atomic_int snapshot_state;   /* enum vm_snapshot_state */
    atomic_bool snapshot_due;    /* READY arrived: the next vCPU thread out of KVM_RUN saves */
    atomic_bool pause_pending;   /* vCPU threads park until it clears (vm->lock, changed) */
    unsigned vcpus_parked;       /* guarded by lock */
    pthread_mutex_t resume_lock; /* held while the first connection tells the agent */
    bool resume_told;            /* the restored guest has its clock and entropy */
};

enum vm_snapshot_state {
    VM_SNAPSHOT_OFF,       /* no boot cache, or a configuration it cannot hold */
    VM_SNAPSHOT_WANTED,    /* booting; to be saved when the agent says READY */
    VM_SNAPSHOT_SAVING,
    VM_SNAPSHOT_SAVED,
    VM_SNAPSHOT_GIVEN_UP,  /* could not be saved (see the warning), or an init without READY */
    VM_SNAPSHOT_RESTORED,  /* this VM came from the boot cache */
};

/* ---- vm.c, for vm_snapshot.c ---- */

/* One line to the warning callback, if there is one. */
void vm_warn(cove_vm *vm, const char *line);
/* From vCPU thread self (NULL: another thread): stops the other vCPU threads outside KVM_RUN
 * with their last exit completed. False when the VM is stopping meanwhile (they are resumed). */
bool vm_pause_vcpus(cove_vm *vm, const struct vcpu_slot *self);
void vm_resume_vcpus(cove_vm *vm);
/* The snapshot state reached an end (saved, given up): wakes connections waiting for it. */
void vm_snapshot_settled(cove_vm *vm);

/* ---- vm_snapshot.c ---- */

struct snap_file;

/*
 * Before the machine is built, with KVM open: picks this configuration's boot cache entry
 * (none without a cache or for a configuration a snapshot cannot hold). Returns true with
 * *file open when there is a snapshot to restore; false to boot (and, if the state is
 * VM_SNAPSHOT_WANTED, to save at READY). A damaged entry is removed with a warning.
 */
bool vm_snapshot_prepare(cove_vm *vm, struct snap_file *file);
/* Once devices and vCPUs exist (vCPUs with their CPUID only): puts the saved state into
 * KVM and the devices. Returns 0 or a negative errno with error filled. */
int vm_snapshot_restore(cove_vm *vm, const struct snap_file *file, cove_error *error);
/* On the vCPU thread whose exit was READY: saves the machine into the boot cache, if wanted. */
void vm_snapshot_save(cove_vm *vm, struct vcpu_slot *slot);

#endif
