/*
 * What the parts of libcove built on a running VM (vm_agent.c) need from vm.c, without
 * reaching into struct cove_vm.
 */
#ifndef COVE_VM_INTERNAL_H
#define COVE_VM_INTERNAL_H

#include <stdbool.h>

#include <cove/cove.h>

struct virtio_device;

/* The VM's vsock device, or NULL when its configuration has none. */
struct virtio_device *vm_vsock(cove_vm *vm);
/* Whether the VM has started and nothing has ended it yet: connections can still succeed. */
bool vm_accepts_connections(cove_vm *vm);
/* Waits while a boot snapshot is still to be taken (the guest must see no connection until
 * then), at most timeout_ms (-1: no limit), or until the VM ends. */
void vm_wait_snapshot_settled(cove_vm *vm, int timeout_ms);
/* For a VM restored from a boot snapshot whose agent has not been told yet: takes the claim
 * to tell it (true), which the caller ends with vm_resume_told(). Others wait meanwhile. */
bool vm_resume_claim(cove_vm *vm);
void vm_resume_told(cove_vm *vm, bool told);

#endif
