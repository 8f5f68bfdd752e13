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

#endif
