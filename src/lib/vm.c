/*
 * VM lifecycle: builds the machine from a configuration, runs one thread per vCPU and one
 * I/O thread, and turns whatever ends the guest (power off, reset, panic, a KVM failure, a
 * host stop) into one recorded exit and a final state.
 */
#include <cove/cove.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot.h"
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/state.h"
#include "bus/io_bus.h"
#include "bus/pci.h"
#include "config_internal.h"
#include "console.h"
#include "devices/acpi_pm.h"
#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "devices/machine_events.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/uart.h"
#include "guest_mem.h"
#include "hv/kvm.h"
#include "hv/kvm_msi.h"
#include "deadline.h"
#include "io_loop.h"
#include "kick.h"
#include "snapshot/file.h"
#include "virtio/blk.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "net/mac.h"
#include "net/slirp.h"
#include "net/tap.h"
#include "virtio/console.h"
#include "virtio/pci.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vm_internal.h"
#include "vm_machine.h"

/* ---- state ---- */

const char *cove_state_name(cove_state state)
{
    switch (state) {
    case COVE_STATE_STOPPED: return "stopped";
    case COVE_STATE_STARTING: return "starting";
    case COVE_STATE_RUNNING: return "running";
    case COVE_STATE_STOPPING: return "stopping";
    case COVE_STATE_ERROR: return "error";
    }
    return "unknown";
}

const char *cove_exit_kind_name(cove_exit_kind kind)
{
    switch (kind) {
    case COVE_EXIT_NONE: return "none";
    case COVE_EXIT_POWEROFF: return "poweroff";
    case COVE_EXIT_REBOOT: return "reboot";
    case COVE_EXIT_STOPPED: return "stopped";
    case COVE_EXIT_GUEST_PANIC: return "guest-panic";
    case COVE_EXIT_TRIPLE_FAULT: return "triple-fault";
    case COVE_EXIT_INTERNAL_ERROR: return "internal-error";
    case COVE_EXIT_HOST_ERROR: return "host-error";
    }
    return "unknown";
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A state change to report to the callback once vm->lock is released. Callbacks run outside
 * the lock (so they may query the VM), and pending_callbacks lets the final one wait for the
 * others, so a caller never sees "stopped" before "stopping".
 */
struct state_note {
    cove_state state;
    cove_state_fn callback;
    void *opaque;
};

/* Call with vm->lock held. */
static struct state_note set_state_locked(cove_vm *vm, cove_state state)
{
    if (vm->state == state)
        return (struct state_note){0};
    vm->state = state;
    uint64_t one = 1;
    if (write(vm->state_fd, &one, sizeof(one)) < 0) {
        /* The counter cannot overflow in practice; a failed wake-up only delays pollers. */
    }
    pthread_cond_broadcast(&vm->changed);
    if (vm->callback)
        vm->pending_callbacks++;
    return (struct state_note){state, vm->callback, vm->callback_opaque};
}

/* Call without vm->lock. */
static void deliver_state(cove_vm *vm, struct state_note note)
{
    if (!note.callback)
        return;
    note.callback(vm, note.state, note.opaque);
    pthread_mutex_lock(&vm->lock);
    vm->pending_callbacks--;
    pthread_cond_broadcast(&vm->changed);
    pthread_mutex_unlock(&vm->lock);
}

static void set_state(cove_vm *vm, cove_state state)
{
    pthread_mutex_lock(&vm->lock);
    struct state_note note = set_state_locked(vm, state);
    pthread_mutex_unlock(&vm->lock);
    deliver_state(vm, note);
}

static void kick_vcpus(cove_vm *vm)
{
    for (unsigned i = 0; i < vm->vcpu_count; i++) {
        struct vcpu_slot *slot = &vm->vcpus[i];
        if (!slot->thread_started)
            continue;
        /* immediate_exit covers a kick that lands just before the thread enters KVM_RUN. */
        slot->vcpu.run->immediate_exit = 1;
        pthread_kill(slot->thread, KICK_SIGNAL);
    }
}

/*
 * Ends the VM for the given reason. The first reason wins: a reset that follows a panic is
 * still a panic. Safe from any thread, any number of times.
 */
static void vm_finish(cove_vm *vm, cove_exit_kind kind, const char *reason)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->exit.kind == COVE_EXIT_NONE) {
        vm->exit.kind = kind;
        snprintf(vm->exit.reason, sizeof(vm->exit.reason), "%s", reason);
    }
    struct state_note note = {0};
    if (vm->state == COVE_STATE_RUNNING)
        note = set_state_locked(vm, COVE_STATE_STOPPING);
    atomic_store(&vm->stopping, true);
    pthread_cond_broadcast(&vm->changed); /* parked vCPU threads must see it */
    pthread_mutex_unlock(&vm->lock);
    kick_vcpus(vm);
    deliver_state(vm, note);
}

static bool exit_is_clean(cove_exit_kind kind)
{
    return kind == COVE_EXIT_POWEROFF || kind == COVE_EXIT_REBOOT || kind == COVE_EXIT_STOPPED;
}

/* The UART has room for input again: let the I/O loop resume reading. */
static void io_wake(void *opaque)
{
    cove_vm *vm = opaque;
    io_loop_wake(vm->io_loop);
}

/* The last vCPU thread out settles the final state and lets the I/O thread go. */
static void vcpu_thread_done(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool last = --vm->vcpus_running == 0;
    pthread_cond_broadcast(&vm->changed); /* a pause waits for the others to park or leave */
    struct state_note note = {0};
    if (last) {
        if (vm->exit.kind == COVE_EXIT_NONE) {
            vm->exit.kind = COVE_EXIT_HOST_ERROR;
            snprintf(vm->exit.reason, sizeof(vm->exit.reason), "all vCPUs stopped");
        }
        /* Earlier callbacks ("stopping") go out before the final one. */
        while (vm->pending_callbacks > 0)
            pthread_cond_wait(&vm->changed, &vm->lock);
        note = set_state_locked(vm, exit_is_clean(vm->exit.kind) ? COVE_STATE_STOPPED
                                                                 : COVE_STATE_ERROR);
    }
    pthread_mutex_unlock(&vm->lock);
    if (!last)
        return;
    /* Host programs holding guest streams see them end now, not when the VM is freed. */
    if (vm->vsock)
        virtio_vsock_shutdown(vm->vsock);
    io_loop_stop(vm->io_loop);
    deliver_state(vm, note);
    /* Only now do waiters return and the exit show: by then every callback has run. */
    pthread_mutex_lock(&vm->lock);
    vm->ended = true;
    pthread_cond_broadcast(&vm->changed);
    uint64_t one = 1;
    if (write(vm->state_fd, &one, sizeof(one)) < 0) {
        /* as in set_state_locked */
    }
    pthread_mutex_unlock(&vm->lock);
}

/* ---- devices to VMM ---- */

static void sink_set_irq(void *ctx, unsigned gsi, int level)
{
    cove_vm *vm = ctx;
    kvm_set_irq_line(&vm->kvm, gsi, level);
}

static void sink_event(void *ctx, enum machine_event event)
{
    cove_vm *vm = ctx;
    switch (event) {
    case MACHINE_EVENT_POWEROFF:
        vm_finish(vm, COVE_EXIT_POWEROFF, "guest powered off");
        break;
    case MACHINE_EVENT_RESET:
        vm_finish(vm, COVE_EXIT_REBOOT, "guest rebooted");
        break;
    case MACHINE_EVENT_PANIC:
        /* The guest is dead: with panic=0 it would spin forever, so end it now. */
        vm_finish(vm, COVE_EXIT_GUEST_PANIC, "guest kernel panicked");
        break;
    case MACHINE_EVENT_BOOT_DONE:
    case MACHINE_EVENT_BOOT_DONE_AGENT: {
        uint_fast64_t none = 0;
        atomic_compare_exchange_strong(&vm->boot_signal_ns, &none, monotonic_ns());
        /* An init that will not say READY: there will be no snapshot to wait for. */
        int wanted = VM_SNAPSHOT_WANTED;
        if (event == MACHINE_EVENT_BOOT_DONE &&
            atomic_compare_exchange_strong(&vm->snapshot_state, &wanted, VM_SNAPSHOT_GIVEN_UP))
            vm_snapshot_settled(vm);
        break;
    }
    case MACHINE_EVENT_AGENT_READY:
        if (atomic_load(&vm->snapshot_state) == VM_SNAPSHOT_WANTED)
            atomic_store(&vm->snapshot_due, true);
        break;
    }
}

/* ---- vCPU threads ---- */

static void handle_io(cove_vm *vm, struct kvm_run *run, size_t run_size)
{
    uint64_t bytes = (uint64_t)run->io.size * run->io.count;
    if (run->io.data_offset > run_size || bytes > run_size - run->io.data_offset)
        return;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            io_bus_write(&vm->pio, run->io.port, data, run->io.size);
        else
            io_bus_read(&vm->pio, run->io.port, data, run->io.size);
    }
}

static void handle_mmio(cove_vm *vm, struct kvm_run *run)
{
    unsigned len = run->mmio.len <= 8 ? run->mmio.len : 8;
    if (run->mmio.is_write)
        io_bus_write(&vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    else
        io_bus_read(&vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static const char *internal_error_name(uint32_t suberror)
{
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
    case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
    case KVM_INTERNAL_ERROR_DELIVERY_EV: return "exception during event delivery";
    default: return "unexpected exit";
    }
}

/* Handles one KVM_RUN exit; returns false when this vCPU must stop. */
static bool handle_exit(cove_vm *vm, struct kvm_vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    char reason[COVE_ERROR_MAX];
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(vm, run, vcpu->run_size);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(vm, run);
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_HLT:
        return true;
    case KVM_EXIT_SHUTDOWN:
        snprintf(reason, sizeof(reason), "guest triple fault on vCPU %u", vcpu->index);
        vm_finish(vm, COVE_EXIT_TRIPLE_FAULT, reason);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(reason, sizeof(reason), "KVM internal error: suberror %u (%s) on vCPU %u",
                 run->internal.suberror, internal_error_name(run->internal.suberror), vcpu->index);
        vm_finish(vm, COVE_EXIT_INTERNAL_ERROR, reason);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(reason, sizeof(reason), "KVM could not enter the guest: reason 0x%llx on vCPU %u",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason, vcpu->index);
        vm_finish(vm, COVE_EXIT_INTERNAL_ERROR, reason);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
            sink_event(vm, MACHINE_EVENT_RESET);
        else if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH)
            sink_event(vm, MACHINE_EVENT_PANIC);
        else
            sink_event(vm, MACHINE_EVENT_POWEROFF);
        return false;
    default:
        snprintf(reason, sizeof(reason), "unexpected KVM exit %u on vCPU %u", run->exit_reason,
                 vcpu->index);
        vm_finish(vm, COVE_EXIT_INTERNAL_ERROR, reason);
        return false;
    }
}

/* Held out of KVM_RUN, the last exit completed, until the pause ends or the VM stops. */
static void park_vcpu(cove_vm *vm, struct vcpu_slot *slot)
{
    x86_vcpu_quiesce(&slot->vcpu);
    pthread_mutex_lock(&vm->lock);
    vm->vcpus_parked++;
    pthread_cond_broadcast(&vm->changed);
    while (atomic_load(&vm->pause_pending) && !atomic_load(&vm->stopping))
        pthread_cond_wait(&vm->changed, &vm->lock);
    vm->vcpus_parked--;
    pthread_mutex_unlock(&vm->lock);
}

bool vm_pause_vcpus(cove_vm *vm, const struct vcpu_slot *self)
{
    atomic_store(&vm->pause_pending, true);
    for (unsigned i = 0; i < vm->vcpu_count; i++) {
        struct vcpu_slot *slot = &vm->vcpus[i];
        if (slot == self || !slot->thread_started)
            continue;
        slot->vcpu.run->immediate_exit = 1;
        pthread_kill(slot->thread, KICK_SIGNAL);
    }
    unsigned others = self ? 1 : 0;
    pthread_mutex_lock(&vm->lock);
    while (vm->vcpus_parked + others < vm->vcpus_running && !atomic_load(&vm->stopping))
        pthread_cond_wait(&vm->changed, &vm->lock);
    bool paused = !atomic_load(&vm->stopping);
    pthread_mutex_unlock(&vm->lock);
    if (!paused)
        vm_resume_vcpus(vm);
    return paused;
}

void vm_resume_vcpus(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    atomic_store(&vm->pause_pending, false);
    pthread_cond_broadcast(&vm->changed);
    pthread_mutex_unlock(&vm->lock);
}

void vm_snapshot_settled(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    pthread_cond_broadcast(&vm->changed);
    pthread_mutex_unlock(&vm->lock);
    uint64_t one = 1;
    if (write(vm->state_fd, &one, sizeof(one)) < 0) {
        /* as in set_state_locked */
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu_slot *slot = arg;
    cove_vm *vm = slot->vm;
    kick_unblock();

    while (!atomic_load(&vm->stopping)) {
        if (atomic_load(&vm->pause_pending))
            park_vcpu(vm, slot);
        if (ioctl(slot->vcpu.fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                slot->vcpu.run->immediate_exit = 0;
                continue;
            }
            char reason[COVE_ERROR_MAX];
            snprintf(reason, sizeof(reason), "KVM_RUN failed on vCPU %u: %s", slot->vcpu.index,
                     strerror(errno));
            vm_finish(vm, COVE_EXIT_HOST_ERROR, reason);
            break;
        }
        if (!handle_exit(vm, &slot->vcpu))
            break;
        /* A load first: the exchange writes a line every vCPU shares, on every exit. */
        if (atomic_load(&vm->snapshot_due) && atomic_exchange(&vm->snapshot_due, false))
            vm_snapshot_save(vm, slot);
    }
    vcpu_thread_done(vm);
    return NULL;
}

/* ---- the I/O thread: console input now, virtio queues later ---- */

static int fail(cove_error *error, int err, const char *fmt, const char *detail)
{
    if (error)
        snprintf(error->message, sizeof(error->message), fmt, detail);
    return err;
}

static bool io_prepare(void *opaque)
{
    cove_vm *vm = opaque;
    bool busy = vm->serial.input && console_input_prepare(vm->serial.input);
    if (vm->virtio_console)
        busy |= virtio_console_prepare(vm->virtio_console);
    return busy;
}

static void *io_thread(void *arg)
{
    cove_vm *vm = arg;
    io_loop_run(vm->io_loop);
    return NULL;
}

static size_t uart_space(void *device) { return uart_rx_space(device); }
static size_t uart_take(void *device, const uint8_t *buf, size_t len)
{
    return uart_receive(device, buf, len);
}

static int attach_serial_input(cove_vm *vm, cove_error *error)
{
    io_loop_set_prepare(vm->io_loop, io_prepare, vm);
    if (vm->serial.in_fd < 0 || vm->config->console_device != COVE_CONSOLE_DEVICE_SERIAL)
        return 0;
    struct console_sink sink = {.space = uart_space, .receive = uart_take, .device = vm->dev.uart};
    vm->serial.input = console_input_new(vm->io_loop, vm->serial.in_fd, &sink);
    if (!vm->serial.input)
        return fail(error, -EINVAL, "serial: cannot watch input descriptor %s", "for reading");
    return 0;
}

static int open_serial(cove_vm *vm, cove_error *error)
{
    struct serial_io *s = &vm->serial;
    *s = (struct serial_io){.in_fd = -1, .out_fd = -1, .owned_out_fd = -1};
    switch (vm->config->serial_kind) {
    case COVE_CONSOLE_NONE:
        break;
    case COVE_CONSOLE_STDIO:
        s->in_fd = STDIN_FILENO;
        s->out_fd = STDOUT_FILENO;
        break;
    case COVE_CONSOLE_FDS:
        s->in_fd = vm->config->serial_in_fd;
        s->out_fd = vm->config->serial_out_fd;
        break;
    case COVE_CONSOLE_FILE:
        s->owned_out_fd = open(vm->config->serial_path,
                               O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->owned_out_fd < 0) {
            snprintf(error->message, sizeof(error->message), "serial file '%s': %s",
                     vm->config->serial_path, strerror(errno));
            return -errno;
        }
        s->out_fd = s->owned_out_fd;
        break;
    }
    return 0;
}

/* ---- building the machine ---- */


static int create_devices(cove_vm *vm, cove_error *error)
{
    struct devices *d = &vm->dev;
    /* The UART is always there (early boot messages, a guest that insists on ttyS0), but it
     * is connected only when it is the chosen console device. */
    bool serial_console = vm->config->console_device == COVE_CONSOLE_DEVICE_SERIAL;
    d->uart = uart_new(&vm->sink, X86_COM1_IRQ, serial_console ? vm->serial.out_fd : -1);
    d->i8042 = i8042_new(&vm->sink);
    d->rtc = rtc_new();
    d->acpi_pm = acpi_pm_new(&vm->sink);
    d->pvpanic = pvpanic_new(&vm->sink);
    d->boot_timer = boot_timer_new(&vm->sink);
    if (!d->uart || !d->i8042 || !d->rtc || !d->acpi_pm || !d->pvpanic || !d->boot_timer)
        return fail(error, -ENOMEM, "%s", "out of memory creating devices");
    uart_set_rx_space_cb(d->uart, io_wake, vm);
    int r = uart_register(d->uart, &vm->pio);
    if (r == 0)
        r = i8042_register(d->i8042, &vm->pio);
    if (r == 0)
        r = rtc_register(d->rtc, &vm->pio);
    if (r == 0)
        r = acpi_pm_register(d->acpi_pm, &vm->pio);
    if (r == 0)
        r = pvpanic_register(d->pvpanic, &vm->pio);
    if (r == 0)
        r = boot_timer_register(d->boot_timer, &vm->pio);
    if (r < 0)
        return fail(error, r, "registering devices: %s", strerror(-r));
    return 0;
}

static void free_devices(struct devices *d)
{
    if (d->uart)
        uart_free(d->uart);
    if (d->i8042)
        i8042_free(d->i8042);
    if (d->rtc)
        rtc_free(d->rtc);
    if (d->acpi_pm)
        acpi_pm_free(d->acpi_pm);
    if (d->pvpanic)
        pvpanic_free(d->pvpanic);
    if (d->boot_timer)
        boot_timer_free(d->boot_timer);
    *d = (struct devices){0};
}

/* Fresh RAM, or (snapshot not NULL) the snapshot's, mapped copy-on-write. */
static int setup_memory(cove_vm *vm, const struct snap_file *snapshot, cove_error *error)
{
    int r = snapshot ? guest_mem_map_file(&vm->mem, snapshot->fd, snapshot->mem_offset,
                                          snapshot->mem_size, X86_PCI_HOLE_START,
                                          X86_HIGH_RAM_START)
                     : guest_mem_create(&vm->mem, vm->config->memory, X86_PCI_HOLE_START,
                                        X86_HIGH_RAM_START);
    if (r < 0)
        return fail(error, r, "allocating guest memory: %s", strerror(-r));
    r = kvm_set_memory(&vm->kvm, 0, 0, vm->mem.low_size, vm->mem.host);
    if (r == 0 && vm->mem.size > vm->mem.low_size)
        r = kvm_set_memory(&vm->kvm, 1, vm->mem.high_base, vm->mem.size - vm->mem.low_size,
                           vm->mem.host + vm->mem.low_size);
    if (r < 0)
        return fail(error, r, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-r));
    return 0;
}

static int load_guest(cove_vm *vm, struct boot_entry *entry, cove_error *error)
{
    struct boot_spec spec = {
        .kernel_path = vm->config->kernel_path,
        .initrd_path = vm->config->initrd_path,
        .cmdline = vm->config->cmdline,
    };
    int r = x86_load_linux(&vm->mem, &spec, entry, error->message, sizeof(error->message));
    if (r < 0)
        return r;
    if (x86_write_boot_tables(&vm->mem) < 0)
        return fail(error, -EFAULT, "%s", "guest memory too small for boot tables");
    int64_t rsdp = acpi_build_tables(&vm->mem, vm->config->cpus);
    if (rsdp < 0)
        return fail(error, (int)rsdp, "building ACPI tables: %s", strerror((int)-rsdp));
    x86_set_acpi_rsdp(&vm->mem, (uint64_t)rsdp);
    return 0;
}

/* entry NULL: vCPUs for a snapshot to restore, with only their CPUID set. */
static int create_vcpus(cove_vm *vm, const struct boot_entry *entry, cove_error *error)
{
    vm->vcpus = calloc(vm->config->cpus, sizeof(*vm->vcpus));
    if (!vm->vcpus)
        return fail(error, -ENOMEM, "%s", "out of memory");
    const struct x86_cpu_options cpu_options = {
        .cpus = vm->config->cpus,
        .nested_virtualization = vm->config->nested_virtualization,
    };
    for (unsigned i = 0; i < vm->config->cpus; i++) {
        struct vcpu_slot *slot = &vm->vcpus[i];
        slot->vm = vm;
        int r = kvm_vcpu_create(&vm->kvm, i, &slot->vcpu);
        if (r < 0)
            return fail(error, r, "KVM_CREATE_VCPU: %s", strerror(-r));
        vm->vcpu_count = i + 1;
        if (entry)
            r = x86_vcpu_setup(&vm->kvm, &slot->vcpu, &cpu_options, entry, error->message,
                               sizeof(error->message));
        else
            r = x86_vcpu_set_cpuid(&vm->kvm, &slot->vcpu, &cpu_options, error->message,
                                   sizeof(error->message));
        if (r < 0)
            return r;
    }
    return 0;
}

static int start_threads(cove_vm *vm, cove_error *error)
{
    kick_install_handler();
    /* Threads start with the kick signal blocked; each vCPU thread unblocks it for itself. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int r = pthread_create(&vm->io_thread, NULL, io_thread, vm);
    vm->io_thread_started = r == 0;
    pthread_mutex_lock(&vm->lock);
    for (unsigned i = 0; r == 0 && i < vm->vcpu_count; i++) {
        r = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
        if (r == 0) {
            vm->vcpus[i].thread_started = true;
            vm->vcpus_running++;
        }
    }
    pthread_mutex_unlock(&vm->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return fail(error, -r, "starting threads: %s", strerror(r));
    return 0;
}

static int add_ioeventfd(void *ctx, uint64_t addr, unsigned len, int eventfd)
{
    cove_vm *vm = ctx;
    return kvm_ioeventfd_add(&vm->kvm, addr, len, false, eventfd);
}

static void remove_ioeventfd(void *ctx, uint64_t addr, unsigned len, int eventfd)
{
    cove_vm *vm = ctx;
    kvm_ioeventfd_remove(&vm->kvm, addr, len, false, eventfd);
}

static void report_fault(void *ctx, const char *line)
{
    cove_vm *vm = ctx;
    if (vm->warning)
        vm->warning(vm, line, vm->warning_opaque);
}

static int create_pci(cove_vm *vm, cove_error *error)
{
    const struct pci_bus_layout layout = {
        .ecam_base = X86_PCI_ECAM_BASE,
        .window_base = X86_PCI_MMIO_BASE,
        .window_size = X86_PCI_MMIO_SIZE,
        .config_port = X86_PCI_CONFIG_PORT,
    };
    vm->pci = pci_bus_new(&vm->pio, &vm->mmio, &layout, error->message, sizeof(error->message));
    if (!vm->pci)
        return -EINVAL;
    vm->msi = kvm_msi_router_new(&vm->kvm, X86_MSI_GSI_BASE, VM_MAX_MSI_ROUTES, error->message,
                                 sizeof(error->message));
    return vm->msi ? 0 : -ENOTSUP;
}

/* Puts a virtio device on the PCI bus; the transport owns it from here, even on failure.
 * label: what the user calls it, for fault reports (NULL: nothing beyond its type). */
static int add_virtio(cove_vm *vm, struct virtio_device *dev, const char *label,
                      cove_error *error)
{
    if (!dev)
        return fail(error, -ENOMEM, "%s", "out of memory creating a virtio device");
    if (vm->virtio_count == VM_MAX_VIRTIO) {
        dev->ops->destroy(dev);
        return fail(error, -ENOSPC, "%s", "too many virtio devices");
    }
    const struct virtio_pci_host host = {
        .bus = vm->pci,
        .loop = vm->io_loop,
        .mem = &vm->mem,
        .msi = kvm_msi_router_sink(vm->msi),
        .add_ioeventfd = add_ioeventfd,
        .remove_ioeventfd = remove_ioeventfd,
        .report_fault = report_fault,
        .ctx = vm,
        .label = label,
    };
    struct virtio_pci *vp = virtio_pci_new(dev, &host, error->message, sizeof(error->message));
    if (!vp)
        return -EINVAL;
    vm->virtio[vm->virtio_count++] = vp;
    return 0;
}

/* One share: its FUSE server, then the virtio-fs device that owns it. */
static int add_share(cove_vm *vm, const struct cove_share_config *share, cove_error *error)
{
    const struct fuse_server_options options = {.read_only = share->read_only,
                                                 .cache = share_fuse_cache(share->cache)};
    struct fuse_server *server;
    int r = fuse_server_new(share->host_dir, &options, &server);
    if (r < 0) {
        snprintf(error->message, sizeof(error->message), "share '%s': directory '%s': %s",
                 share->tag, share->host_dir, strerror(-r));
        return r;
    }
    struct virtio_device *dev = virtio_fs_new(share->tag, server);
    if (!dev) {
        fuse_server_destroy(server);
        return fail(error, -ENOMEM, "%s", "out of memory creating a virtio-fs device");
    }
    char label[COVE_ERROR_MAX];
    snprintf(label, sizeof(label), "share '%s'", share->tag);
    return add_virtio(vm, dev, label, error);
}

/* A TAP attachment: the device opened now, so a missing, forbidden or busy tap fails the
 * start with its own errno, before the guest boots. */
static int add_tap(cove_vm *vm, cove_error *error)
{
    const cove_config *c = vm->config;
    /* The header the virtio-net path will hand through once it offers offloads; for now the
     * backend strips and fills it, and no offload is enabled on the tap. */
    const struct net_tap_config tap = {.name = c->tap_name, .vnet_hdr = true};
    int err;
    struct net_backend *backend =
        net_tap_new(vm->io_loop, &tap, &err, error->message, sizeof(error->message));
    if (!backend)
        return err;
    uint8_t mac[6];
    if (!c->mac || net_mac_parse(c->mac, mac) < 0)
        net_mac_from_seed(c->tap_name, mac); /* per tap: VMs on one bridge must differ */
    char label[COVE_ERROR_MAX];
    snprintf(label, sizeof(label), "tap '%s'", c->tap_name);
    return add_virtio(vm, virtio_net_new(mac, backend), label, error);
}

/* NAT networking: libslirp (its forwards bound now, so a port in use fails the start) behind
 * a virtio-net device. */
static int add_network(cove_vm *vm, cove_error *error)
{
    const cove_config *c = vm->config;
    struct net_slirp_forward forwards[COVE_FORWARD_MAX];
    for (size_t i = 0; i < c->forward_count; i++)
        forwards[i] = (struct net_slirp_forward){.udp = c->forwards[i].udp,
                                                 .host_addr = c->forwards[i].host_addr,
                                                 .host_port = c->forwards[i].host_port,
                                                 .guest_port = c->forwards[i].guest_port};
    const struct net_slirp_config slirp = {
        .policy = c->network_policy == COVE_POLICY_HOST_ONLY ? NET_POLICY_HOST_ONLY
                                                             : NET_POLICY_OPEN,
        .forwards = forwards,
        .forward_count = (unsigned)c->forward_count,
    };
    struct net_backend *backend =
        net_slirp_new(vm->io_loop, &slirp, error->message, sizeof(error->message));
    if (!backend)
        return -EADDRINUSE;
    uint8_t mac[6];
    if (!c->mac || net_mac_parse(c->mac, mac) < 0)
        net_mac_from_seed("cove", mac); /* one fixed address: every VM is alone on its NAT */
    return add_virtio(vm, virtio_net_new(mac, backend), "NAT network", error);
}

static int create_virtio_devices(cove_vm *vm, cove_error *error)
{
    int r = 0;
    if (vm->config->console_device == COVE_CONSOLE_DEVICE_VIRTIO) {
        struct virtio_device *console =
            virtio_console_new(vm->io_loop, vm->serial.in_fd, vm->serial.out_fd);
        r = add_virtio(vm, console, "console", error);
        if (r == 0)
            vm->virtio_console = console;
    }
    for (size_t i = 0; r == 0 && i < vm->config->disk_count; i++) {
        const struct cove_disk_config *disk = &vm->config->disks[i];
        struct virtio_device *blk =
            virtio_blk_new(disk->path, disk->read_only, disk->cache == COVE_CACHE_NONE,
                           disk->serial, error->message, sizeof(error->message));
        char label[COVE_ERROR_MAX];
        snprintf(label, sizeof(label), "disk '%s'", disk->path);
        r = blk ? add_virtio(vm, blk, label, error) : -EINVAL;
    }
    if (r == 0 && vm->config->network == COVE_NETWORK_NAT)
        r = add_network(vm, error);
    if (r == 0 && vm->config->network == COVE_NETWORK_TAP)
        r = add_tap(vm, error);
    for (size_t i = 0; r == 0 && i < vm->config->share_count; i++)
        r = add_share(vm, &vm->config->shares[i], error);
    if (r == 0 && vm->config->entropy)
        r = add_virtio(vm, virtio_rng_new(), NULL, error);
    if (r == 0 && vm->config->vsock) {
        struct virtio_device *vsock =
            virtio_vsock_new(vm->config->vsock_cid, vm->config->vsock_path, vm->io_loop,
                             error->message, sizeof(error->message));
        r = vsock ? add_virtio(vm, vsock, NULL, error) : -EINVAL;
        if (r == 0)
            vm->vsock = vsock;
    }
    return r;
}

/* The guest's start: its kernel loaded and the boot vCPU at its entry, or a snapshot's state. */
static int load_or_restore(cove_vm *vm, const struct snap_file *snapshot, cove_error *error)
{
    if (snapshot) {
        int r = create_vcpus(vm, NULL, error);
        return r == 0 ? vm_snapshot_restore(vm, snapshot, error) : r;
    }
    struct boot_entry entry;
    int r = load_guest(vm, &entry, error);
    return r == 0 ? create_vcpus(vm, &entry, error) : r;
}

static int build_machine(cove_vm *vm, cove_error *error)
{
    int r = kvm_vm_open(&vm->kvm, error->message, sizeof(error->message));
    if (r == 0)
        r = x86_vm_setup(&vm->kvm, error->message, sizeof(error->message));
    struct snap_file file = {.fd = -1};
    bool restore = r == 0 && vm_snapshot_prepare(vm, &file);
    if (r == 0)
        r = setup_memory(vm, restore ? &file : NULL, error);
    if (r == 0)
        r = open_serial(vm, error);
    if (r == 0)
        r = create_devices(vm, error);
    if (r == 0)
        r = attach_serial_input(vm, error);
    if (r == 0)
        r = create_pci(vm, error);
    if (r == 0)
        r = create_virtio_devices(vm, error);
    if (r == 0)
        r = load_or_restore(vm, restore ? &file : NULL, error);
    snap_file_close(&file);
    return r;
}

/* ---- public API ---- */

static int boot_afresh(cove_vm *vm, cove_error *error);

cove_vm *cove_vm_new(const cove_config *config, cove_error *error)
{
    cove_error scratch;
    if (!error)
        error = &scratch;
    error->message[0] = '\0';
    cove_problems problems = {0};
    if (cove_config_validate(config, &problems) > 0) {
        snprintf(error->message, sizeof(error->message), "%s", problems.messages[0]);
        cove_problems_free(&problems);
        return NULL;
    }
    cove_vm *vm = calloc(1, sizeof(*vm));
    if (!vm || !(vm->config = cove_config_copy(config))) {
        free(vm);
        snprintf(error->message, sizeof(error->message), "out of memory");
        return NULL;
    }
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->changed, NULL);
    pthread_mutex_init(&vm->resume_lock, NULL);
    vm->state = COVE_STATE_STOPPED;
    vm->kvm = (struct kvm_vm){.kvm_fd = -1, .vm_fd = -1};
    vm->mem.memfd = -1;
    vm->serial = (struct serial_io){.in_fd = -1, .out_fd = -1, .owned_out_fd = -1};
    vm->sink = (struct machine_sink){.set_irq = sink_set_irq, .event = sink_event, .ctx = vm};
    io_bus_init(&vm->pio);
    io_bus_init(&vm->mmio);
    vm->state_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    vm->io_loop = io_loop_new();
    if (vm->state_fd < 0 || !vm->io_loop) {
        snprintf(error->message, sizeof(error->message), "creating event descriptors: %s",
                 strerror(errno));
        cove_vm_free(vm);
        return NULL;
    }
    return vm;
}

void cove_vm_set_state_callback(cove_vm *vm, cove_state_fn callback, void *opaque)
{
    pthread_mutex_lock(&vm->lock);
    vm->callback = callback;
    vm->callback_opaque = opaque;
    pthread_mutex_unlock(&vm->lock);
}

void cove_vm_set_warning_callback(cove_vm *vm, cove_warning_fn callback, void *opaque)
{
    /* Only before the start: the I/O thread then reads it without the lock. */
    pthread_mutex_lock(&vm->lock);
    if (!vm->started) {
        vm->warning = callback;
        vm->warning_opaque = opaque;
    }
    pthread_mutex_unlock(&vm->lock);
}

int cove_vm_start(cove_vm *vm, cove_error *error)
{
    cove_error scratch;
    if (!error)
        error = &scratch;
    error->message[0] = '\0';
    pthread_mutex_lock(&vm->lock);
    bool already = vm->started;
    vm->started = true;
    pthread_mutex_unlock(&vm->lock);
    if (already) {
        snprintf(error->message, sizeof(error->message), "VM already started (create a new one)");
        return -EBUSY;
    }
    set_state(vm, COVE_STATE_STARTING);
    int r = build_machine(vm, error);
    if (r < 0 && atomic_load(&vm->snapshot_state) == VM_SNAPSHOT_RESTORED)
        r = boot_afresh(vm, error);
    if (r == 0) {
        set_state(vm, COVE_STATE_RUNNING);
        r = start_threads(vm, error);
    }
    if (r < 0) {
        pthread_mutex_lock(&vm->lock);
        vm->exit.kind = COVE_EXIT_HOST_ERROR;
        snprintf(vm->exit.reason, sizeof(vm->exit.reason), "%s", error->message);
        bool threads = vm->vcpus_running > 0;
        pthread_mutex_unlock(&vm->lock);
        if (threads) {
            vm_finish(vm, COVE_EXIT_HOST_ERROR, error->message);
        } else {
            pthread_mutex_lock(&vm->lock);
            vm->ended = true;
            pthread_mutex_unlock(&vm->lock);
            set_state(vm, COVE_STATE_ERROR);
        }
    }
    return r;
}

int cove_vm_stop(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool running = vm->started && !vm->ended;
    pthread_mutex_unlock(&vm->lock);
    if (!running)
        return -EINVAL;
    vm_finish(vm, COVE_EXIT_STOPPED, "stopped by the host");
    return 0;
}

int cove_vm_request_stop(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool running = vm->state == COVE_STATE_RUNNING;
    pthread_mutex_unlock(&vm->lock);
    if (!running)
        return -EINVAL;
    /* A press of the ACPI power button: an edge on the Generic Event Device's interrupt. */
    int r = kvm_set_irq_line(&vm->kvm, X86_GED_GSI, 1);
    if (r == 0)
        r = kvm_set_irq_line(&vm->kvm, X86_GED_GSI, 0);
    return r;
}

cove_state cove_vm_state(const cove_vm *vm)
{
    cove_vm *mutable_vm = (cove_vm *)vm;
    pthread_mutex_lock(&mutable_vm->lock);
    cove_state state = vm->state;
    pthread_mutex_unlock(&mutable_vm->lock);
    return state;
}

int cove_vm_state_fd(const cove_vm *vm)
{
    return vm->state_fd;
}

/* timeout_ms from now on the clock pthread_cond_timedwait uses (for timeout_ms > 0). */
static struct timespec deadline_in_ms(int timeout_ms)
{
    return deadline_after_ms(CLOCK_REALTIME, timeout_ms);
}

/* With vm->lock held: waits for `changed`; false once the deadline passed (or timeout_ms 0). */
static bool wait_changed_locked(cove_vm *vm, int timeout_ms, const struct timespec *deadline)
{
    if (timeout_ms < 0)
        return pthread_cond_wait(&vm->changed, &vm->lock) == 0;
    return timeout_ms > 0 && pthread_cond_timedwait(&vm->changed, &vm->lock, deadline) != ETIMEDOUT;
}

cove_state cove_vm_wait(cove_vm *vm, int timeout_ms)
{
    struct timespec deadline = deadline_in_ms(timeout_ms);
    pthread_mutex_lock(&vm->lock);
    while (vm->started && !vm->ended && wait_changed_locked(vm, timeout_ms, &deadline)) {
    }
    cove_state state = vm->state;
    pthread_mutex_unlock(&vm->lock);
    return state;
}

cove_exit cove_vm_exit(const cove_vm *vm)
{
    cove_vm *mutable_vm = (cove_vm *)vm;
    pthread_mutex_lock(&mutable_vm->lock);
    cove_exit exit = vm->exit;
    if (!vm->ended)
        exit = (cove_exit){.kind = COVE_EXIT_NONE};
    pthread_mutex_unlock(&mutable_vm->lock);
    return exit;
}

uint64_t cove_vm_boot_signal_ns(const cove_vm *vm)
{
    return atomic_load(&((cove_vm *)vm)->boot_signal_ns);
}

cove_boot_source cove_vm_boot_source(const cove_vm *vm)
{
    switch (atomic_load(&((cove_vm *)vm)->snapshot_state)) {
    case VM_SNAPSHOT_SAVED: return COVE_BOOT_COLD_SAVED;
    case VM_SNAPSHOT_RESTORED: return COVE_BOOT_RESTORED;
    default: return COVE_BOOT_COLD;
    }
}

static bool snapshot_pending(cove_vm *vm)
{
    int state = atomic_load(&vm->snapshot_state);
    return state == VM_SNAPSHOT_WANTED || state == VM_SNAPSHOT_SAVING;
}

void vm_wait_snapshot_settled(cove_vm *vm, int timeout_ms)
{
    struct timespec deadline = deadline_in_ms(timeout_ms);
    pthread_mutex_lock(&vm->lock);
    /* vm_snapshot_settled and the VM's end both broadcast `changed` under the lock. */
    while (snapshot_pending(vm) && vm->started && !vm->ended && vm->exit.kind == COVE_EXIT_NONE &&
           wait_changed_locked(vm, timeout_ms, &deadline)) {
    }
    pthread_mutex_unlock(&vm->lock);
}

bool vm_resume_claim(cove_vm *vm)
{
    if (atomic_load(&vm->snapshot_state) != VM_SNAPSHOT_RESTORED)
        return false;
    pthread_mutex_lock(&vm->resume_lock);
    if (!vm->resume_told)
        return true; /* still locked: the caller tells the agent */
    pthread_mutex_unlock(&vm->resume_lock);
    return false;
}

void vm_resume_told(cove_vm *vm, bool told)
{
    vm->resume_told = told;
    pthread_mutex_unlock(&vm->resume_lock);
}

void vm_warn(cove_vm *vm, const char *line)
{
    if (vm->warning)
        vm->warning(vm, line, vm->warning_opaque);
}

struct virtio_device *vm_vsock(cove_vm *vm)
{
    return vm->vsock;
}

bool vm_accepts_connections(cove_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    bool live = vm->started && !vm->ended && vm->exit.kind == COVE_EXIT_NONE;
    pthread_mutex_unlock(&vm->lock);
    return live;
}

static void join_threads(cove_vm *vm)
{
    for (unsigned i = 0; i < vm->vcpu_count; i++)
        if (vm->vcpus[i].thread_started)
            pthread_join(vm->vcpus[i].thread, NULL);
    if (vm->io_thread_started) {
        io_loop_stop(vm->io_loop);
        pthread_join(vm->io_thread, NULL);
    }
}

/* Everything the machine holds, once no thread runs: devices before the buses and the
 * interrupt router they point into, those before the KVM VM and the memory. */
static void free_built_machine(cove_vm *vm)
{
    console_input_free(vm->serial.input);
    for (unsigned i = 0; i < vm->virtio_count; i++)
        virtio_pci_free(vm->virtio[i]);
    pci_bus_free(vm->pci);
    kvm_msi_router_free(vm->msi);
    for (unsigned i = 0; i < vm->vcpu_count; i++)
        kvm_vcpu_destroy(&vm->vcpus[i].vcpu);
    free(vm->vcpus);
    free_devices(&vm->dev);
    io_bus_destroy(&vm->pio);
    io_bus_destroy(&vm->mmio);
    kvm_vm_close(&vm->kvm);
    guest_mem_destroy(&vm->mem);
    if (vm->serial.owned_out_fd >= 0)
        close(vm->serial.owned_out_fd);
    vm->serial = (struct serial_io){.in_fd = -1, .out_fd = -1, .owned_out_fd = -1};
    vm->pci = NULL;
    vm->msi = NULL;
    vm->virtio_count = 0;
    vm->virtio_console = vm->vsock = NULL;
    vm->vcpus = NULL;
    vm->vcpu_count = 0;
}

static void free_machine(cove_vm *vm)
{
    free_built_machine(vm);
    if (vm->state_fd >= 0)
        close(vm->state_fd);
    io_loop_free(vm->io_loop);
}

/*
 * A snapshot that would not restore (the host's KVM changed, say): it is removed, what was
 * built from it is thrown away, and the guest boots afresh (and is saved again at READY).
 */
static int boot_afresh(cove_vm *vm, cove_error *error)
{
    char line[COVE_ERROR_MAX + 128];
    snprintf(line, sizeof(line), "%s; booting afresh", error->message);
    vm_warn(vm, line);
    unlink(vm->snapshot_path);
    free_built_machine(vm);
    io_loop_free(vm->io_loop);
    io_bus_init(&vm->pio);
    io_bus_init(&vm->mmio);
    vm->io_loop = io_loop_new();
    if (!vm->io_loop) {
        snprintf(error->message, sizeof(error->message), "out of memory");
        return -ENOMEM;
    }
    error->message[0] = '\0';
    return build_machine(vm, error);
}

void cove_vm_free(cove_vm *vm)
{
    if (!vm)
        return;
    pthread_mutex_lock(&vm->lock);
    bool running = vm->started && !vm->ended;
    pthread_mutex_unlock(&vm->lock);
    if (running)
        vm_finish(vm, COVE_EXIT_STOPPED, "stopped by the host");
    join_threads(vm);
    free_machine(vm);
    free(vm->snapshot_path);
    pthread_mutex_destroy(&vm->resume_lock);
    cove_config_free(vm->config);
    pthread_cond_destroy(&vm->changed);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}
