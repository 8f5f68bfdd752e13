/*
 * Streams to a running guest (cove_vm_connect) and the requests to cove-agent built on them:
 * exec, file copy, shutdown. The vsock device does the relaying and exec.c speaks the agent
 * protocol; this file finds the guest's end, waiting while it boots.
 */
#include <cove/cove.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "virtio/vsock.h"
#include "vm_internal.h"

/* How often a connect is retried while nothing listens on the guest port yet. */
#define CONNECT_RETRY_MS 10
/*
 * For cove-agent: every attempt costs the booting guest an interrupt and a reset to send, so
 * until its init has signalled boot-complete (cove-agent does that first thing) attempts are
 * rare, and once it has, frequent: it listens a moment later.
 */
#define AGENT_RETRY_BOOTING_MS 250
#define AGENT_RETRY_BOOTED_MS 2
#define RETRY_SLICE_MS 2

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left of timeout_ms started at `start` (-1 stays -1: no limit; never below 0). */
static int remaining_ms(int timeout_ms, int64_t start)
{
    if (timeout_ms < 0)
        return -1;
    int64_t left = timeout_ms - (monotonic_ms() - start);
    return left > 0 ? (int)left : 0;
}

static int fail(cove_error *error, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(cove_error *error, int err, const char *fmt, ...)
{
    if (error) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error->message, sizeof(error->message), fmt, ap);
        va_end(ap);
    }
    return err;
}

/* A refusal or a driver that is not up yet only means the guest is still booting. */
static bool worth_retrying(int r)
{
    return r == -ECONNREFUSED || r == -ENOTCONN;
}

/*
 * Sleeps until the next attempt is due: retry_ms(vm) after the last one, re-read every
 * RETRY_SLICE_MS so that a shorter interval (the guest just booted) takes effect at once.
 * Returns early when the time is up or the VM ends.
 */
static void pause_before_retry(cove_vm *vm, int timeout_ms, int64_t start,
                               int (*retry_ms)(cove_vm *))
{
    int64_t last_attempt = monotonic_ms();
    while (monotonic_ms() - last_attempt < retry_ms(vm)) {
        int left = remaining_ms(timeout_ms, start);
        if (left == 0 || !vm_accepts_connections(vm))
            return;
        cove_vm_wait(vm, left > 0 && left < RETRY_SLICE_MS ? left : RETRY_SLICE_MS);
    }
}

/* cove_vm_connect, retrying every retry_ms(vm) while the guest refuses. */
static int connect_retrying(cove_vm *vm, uint32_t port, int timeout_ms, int (*retry_ms)(cove_vm *),
                            cove_error *error)
{
    struct virtio_device *vsock = vm_vsock(vm);
    if (!vsock)
        return fail(error, -ENODEV, "the VM has no vsock device (cove_config_set_vsock)");
    int64_t start = monotonic_ms();
    for (;;) {
        if (!vm_accepts_connections(vm))
            return fail(error, -ECONNREFUSED, "vsock port %u: the VM is not running", port);
        int r = virtio_vsock_connect(vsock, port, remaining_ms(timeout_ms, start));
        if (r >= 0)
            return r;
        int left = remaining_ms(timeout_ms, start);
        if (r == -ETIMEDOUT || (worth_retrying(r) && left == 0))
            return fail(error, -ETIMEDOUT, "vsock port %u: nothing answered within %d ms", port,
                        timeout_ms);
        if (r == -ESHUTDOWN)
            return fail(error, -ECONNREFUSED, "vsock port %u: the VM ended", port);
        if (!worth_retrying(r))
            return fail(error, r, "vsock port %u: %s", port, strerror(-r));
        pause_before_retry(vm, timeout_ms, start, retry_ms);
    }
}

static int fixed_retry(cove_vm *vm)
{
    (void)vm;
    return CONNECT_RETRY_MS;
}

int cove_vm_connect(cove_vm *vm, uint32_t port, int timeout_ms, cove_error *error)
{
    return connect_retrying(vm, port, timeout_ms, fixed_retry, error);
}

static int agent_retry(cove_vm *vm)
{
    return cove_vm_boot_signal_ns(vm) ? AGENT_RETRY_BOOTED_MS : AGENT_RETRY_BOOTING_MS;
}

/*
 * A guest restored from a boot snapshot still has the snapshot's clock and random number
 * generator state: before any request, its agent is given the time and fresh entropy. If that
 * fails, nothing is run there.
 */
static int tell_resumed_agent(cove_vm *vm, int timeout_ms, int64_t start, cove_error *error)
{
    if (!vm_resume_claim(vm))
        return 0;
    int fd = connect_retrying(vm, COVE_AGENT_PORT, remaining_ms(timeout_ms, start), agent_retry,
                              error);
    int r = fd < 0 ? fd : agent_resume(fd, remaining_ms(timeout_ms, start), error);
    vm_resume_told(vm, r == 0);
    return r;
}

/* Connects to cove-agent; on failure error says what the user can do about it. */
static int connect_agent(cove_vm *vm, int timeout_ms, cove_error *error)
{
    int64_t start = monotonic_ms();
    /* A boot snapshot is taken when cove-agent says READY: no connection may reach it before. */
    vm_wait_snapshot_settled(vm, timeout_ms);
    int fd = tell_resumed_agent(vm, timeout_ms, start, error);
    if (fd == 0) /* told, or nothing to tell: now the connection for this request */
        fd = connect_retrying(vm, COVE_AGENT_PORT, remaining_ms(timeout_ms, start), agent_retry,
                              error);
    if (fd == -ETIMEDOUT)
        fail(error, fd,
             "cove-agent did not answer on vsock port %u within %d ms (is cove-agent the "
             "guest's init, and does its kernel have CONFIG_VIRTIO_VSOCKETS?)",
             COVE_AGENT_PORT, timeout_ms);
    return fd;
}

cove_exec *cove_vm_exec(cove_vm *vm, const cove_exec_options *options, int timeout_ms,
                        cove_error *error)
{
    int64_t start = monotonic_ms();
    int fd = connect_agent(vm, timeout_ms, error);
    if (fd < 0)
        return NULL;
    return exec_start(fd, options, remaining_ms(timeout_ms, start), error);
}

int cove_vm_copy_in(cove_vm *vm, int src_fd, const char *guest_path, uint32_t mode,
                    int timeout_ms, cove_error *error)
{
    int64_t start = monotonic_ms();
    int fd = connect_agent(vm, timeout_ms, error);
    if (fd < 0)
        return fd;
    return agent_copy_in(fd, src_fd, guest_path, mode, remaining_ms(timeout_ms, start), error);
}

int cove_vm_copy_out(cove_vm *vm, const char *guest_path, int dst_fd, int timeout_ms,
                     cove_error *error)
{
    int64_t start = monotonic_ms();
    int fd = connect_agent(vm, timeout_ms, error);
    if (fd < 0)
        return fd;
    return agent_copy_out(fd, guest_path, dst_fd, remaining_ms(timeout_ms, start), error);
}

int cove_vm_agent_shutdown(cove_vm *vm, int timeout_ms, cove_error *error)
{
    int64_t start = monotonic_ms();
    int fd = connect_agent(vm, timeout_ms, error);
    if (fd < 0)
        return fd;
    return agent_shutdown(fd, remaining_ms(timeout_ms, start), error);
}
