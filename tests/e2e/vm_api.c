/*
 * End-to-end test of the libcove API on a real KVM, as an embedding program uses it: several
 * VMs in one process, the state callback and its order, the pollable state descriptor, forced
 * and requested stops, and validation errors returned rather than printed.
 *
 *   vm_api KERNEL INITRD
 *
 * Prints one line per check and exits 1 if any failed.
 */
#include <cove/cove.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 16

static const char *kernel_path;
static const char *initrd_path;
static int failures;

static void check(bool ok, const char *what)
{
    printf("vm_api: %s: %s\n", ok ? "ok" : "FAIL", what);
    if (!ok)
        failures++;
}

/* The state changes one VM reported through its callback, in order. */
struct history {
    pthread_mutex_t lock;
    cove_state states[MAX_EVENTS];
    int count;
};

static void record_state(cove_vm *vm, cove_state state, void *opaque)
{
    (void)vm;
    struct history *h = opaque;
    pthread_mutex_lock(&h->lock);
    if (h->count < MAX_EVENTS)
        h->states[h->count++] = state;
    pthread_mutex_unlock(&h->lock);
}

static bool history_is(struct history *h, const cove_state *expected, int n)
{
    pthread_mutex_lock(&h->lock);
    bool same = h->count == n && memcmp(h->states, expected, sizeof(*expected) * (size_t)n) == 0;
    if (!same) {
        printf("  states seen:");
        for (int i = 0; i < h->count; i++)
            printf(" %s", cove_state_name(h->states[i]));
        printf("\n");
    }
    pthread_mutex_unlock(&h->lock);
    return same;
}

static cove_config *guest_config(const char *command, int out_fd)
{
    char cmdline[512];
    snprintf(cmdline, sizeof(cmdline), "console=ttyS0 quiet panic=-1 -- %s", command);
    cove_config *c = cove_config_new();
    cove_config_set_kernel(c, kernel_path);
    cove_config_set_initrd(c, initrd_path);
    cove_config_set_cmdline(c, cmdline);
    cove_config_set_memory(c, 128ULL << 20);
    if (out_fd >= 0)
        cove_config_set_serial_fds(c, -1, out_fd);
    return c;
}

/* Waits until the guest's init has signalled boot-complete, at most timeout_ms. */
static bool wait_for_boot(cove_vm *vm, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (cove_vm_boot_signal_ns(vm))
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static void test_two_vms_at_once(void)
{
    static const cove_state clean[] = {COVE_STATE_STARTING, COVE_STATE_RUNNING,
                                       COVE_STATE_STOPPING, COVE_STATE_STOPPED};
    struct history h[2] = {{.lock = PTHREAD_MUTEX_INITIALIZER}, {.lock = PTHREAD_MUTEX_INITIALIZER}};
    cove_vm *vms[2];
    for (int i = 0; i < 2; i++) {
        cove_config *c = guest_config(i == 0 ? "true" : "sleep 1", -1);
        cove_error error;
        vms[i] = cove_vm_new(c, &error);
        cove_config_free(c);
        check(vms[i] != NULL, "VM created from a valid configuration");
        if (!vms[i])
            return;
        check(cove_vm_state(vms[i]) == COVE_STATE_STOPPED, "a new VM is stopped");
        cove_vm_set_state_callback(vms[i], record_state, &h[i]);
    }
    for (int i = 0; i < 2; i++) {
        cove_error error;
        check(cove_vm_start(vms[i], &error) == 0, "two VMs start in one process");
    }
    for (int i = 0; i < 2; i++) {
        check(cove_vm_wait(vms[i], 120000) == COVE_STATE_STOPPED, "each VM ends stopped");
        cove_exit e = cove_vm_exit(vms[i]);
        check(e.kind == COVE_EXIT_POWEROFF, "each guest powered off on its own");
        if (e.kind != COVE_EXIT_POWEROFF)
            printf("  VM %d ended with: %s\n", i, e.reason);
        check(history_is(&h[i], clean, 4), "callback saw starting, running, stopping, stopped");
        check(cove_vm_boot_signal_ns(vms[i]) != 0, "the boot timer recorded the guest's signal");
        cove_vm_free(vms[i]);
    }
}

static void test_forced_stop_and_state_fd(void)
{
    cove_config *c = guest_config("sleep 600", -1);
    cove_vm *vm = cove_vm_new(c, NULL);
    cove_config_free(c);
    if (!vm) {
        check(false, "VM created");
        return;
    }
    struct pollfd pfd = {.fd = cove_vm_state_fd(vm), .events = POLLIN};
    check(poll(&pfd, 1, 0) == 0, "state descriptor quiet before start");
    check(cove_vm_start(vm, NULL) == 0, "VM started");
    check(poll(&pfd, 1, 1000) == 1, "state descriptor readable after a state change");
    check(cove_vm_state(vm) == COVE_STATE_RUNNING, "state is running");
    check(wait_for_boot(vm, 60000), "guest booted");
    check(cove_vm_exit(vm).kind == COVE_EXIT_NONE, "no exit while running");
    check(cove_vm_stop(vm) == 0, "forced stop accepted");
    check(cove_vm_wait(vm, 30000) == COVE_STATE_STOPPED, "VM stopped after a forced stop");
    check(cove_vm_exit(vm).kind == COVE_EXIT_STOPPED, "exit kind is stopped");
    check(cove_vm_stop(vm) == -EINVAL, "a second stop is refused");
    cove_vm_free(vm);
}

static void test_request_stop(void)
{
    cove_config *c = guest_config("sleep 600", -1);
    cove_vm *vm = cove_vm_new(c, NULL);
    cove_config_free(c);
    if (!vm) {
        check(false, "VM created");
        return;
    }
    check(cove_vm_request_stop(vm) == -EINVAL, "request-stop refused before start");
    check(cove_vm_start(vm, NULL) == 0, "VM started");
    check(wait_for_boot(vm, 60000), "guest booted");
    /* The agent listens for the power button once it is up; give it a moment to open it. */
    cove_state state = COVE_STATE_RUNNING;
    for (int i = 0; i < 30 && state == COVE_STATE_RUNNING; i++) {
        cove_vm_request_stop(vm);
        state = cove_vm_wait(vm, 1000);
    }
    check(state == COVE_STATE_STOPPED, "guest powered off after the power button");
    check(cove_vm_exit(vm).kind == COVE_EXIT_POWEROFF, "exit kind is poweroff");
    cove_vm_free(vm);
}

static void test_invalid_config(void)
{
    cove_config *c = cove_config_new();
    cove_config_set_kernel(c, "/nonexistent/kernel");
    cove_config_set_memory(c, 1 << 20);
    cove_error error;
    cove_vm *vm = cove_vm_new(c, &error);
    check(vm == NULL, "invalid configuration refused");
    check(strstr(error.message, "/nonexistent/kernel") != NULL, "the error names the kernel path");
    cove_problems problems;
    check(cove_config_validate(c, &problems) == 2, "validate reports both problems");
    cove_problems_free(&problems);
    cove_config_free(c);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: vm_api KERNEL INITRD\n");
        return 2;
    }
    kernel_path = argv[1];
    initrd_path = argv[2];
    test_invalid_config();
    test_two_vms_at_once();
    test_forced_stop_and_state_fd();
    test_request_stop();
    printf("vm_api: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
