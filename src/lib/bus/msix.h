/*
 * MSI-X for a PCI device (PCI Local Bus 3.0, 6.8.2): the capability, the vector table and the
 * pending bit array in a BAR of their own, and delivery through an abstract MSI sink.
 *
 * The guest programs each vector's message (address, data) and mask bit in the table and
 * enables MSI-X (and masks the whole function) in the capability's message control. A vector
 * is deliverable when MSI-X is enabled, the function is not masked and the vector is not
 * masked; only then does it have a route in the sink. msix_notify() on a deliverable vector
 * fires it; on a masked one it sets the vector's pending bit instead, and the message goes out
 * as soon as the vector becomes deliverable. With MSI-X disabled a notification is dropped
 * (the function would use INTx, which these devices do not have).
 */
#ifndef COVE_BUS_MSIX_H
#define COVE_BUS_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "bus/pci.h"

#define MSIX_MAX_VECTORS 2048 /* the table size field is 11 bits */
#define MSIX_ENTRY_SIZE 16

/* Message control bits, and the table entry layout. */
#define MSIX_CONTROL_TABLE_SIZE 0x07ffu /* N - 1 */
#define MSIX_CONTROL_FUNCTION_MASK 0x4000u
#define MSIX_CONTROL_ENABLE 0x8000u
#define MSIX_ENTRY_ADDR_LO 0
#define MSIX_ENTRY_ADDR_HI 4
#define MSIX_ENTRY_DATA 8
#define MSIX_ENTRY_CONTROL 12
#define MSIX_ENTRY_MASKED 0x1u

/*
 * Where MSI messages go: the VMM's interrupt router (hv/kvm_msi.h), or a fake in tests.
 * Route ids are the sink's; each device gets a block of them from alloc().
 */
struct msi_sink {
    /* Reserves count consecutive route ids; returns the first, or a negative errno. Called
     * while the machine is built, before the vCPUs start. */
    int (*alloc)(void *ctx, unsigned count);
    /* Points route id at the message (addr, data), or with enabled false takes its route
     * away so nothing can be delivered through it. May block (it reprograms the hypervisor);
     * called on vCPU threads, never concurrently for the same device. Returns 0 or -errno. */
    int (*route)(void *ctx, unsigned id, bool enabled, uint64_t addr, uint32_t data);
    /* Sends route id's message. Must not block (it runs under the device's MSI-X lock) nor
     * call back into msix: called from any thread, any time. */
    int (*fire)(void *ctx, unsigned id);
    void *ctx;
};

struct msix;

/*
 * Gives dev MSI-X with `vectors` vectors (1..MSIX_MAX_VECTORS): adds the capability, and takes
 * BAR `bar` (which must be unused) for the table at offset 0 and the PBA after it. Call before
 * pci_bus_add(dev). sink is copied. Returns 0 and *out, or -EINVAL, -EBUSY (BAR taken, or
 * dev already on a bus), -ENOSPC (config space, or the sink's routes) or -ENOMEM.
 */
int msix_new(struct pci_device *dev, unsigned bar, unsigned vectors, const struct msi_sink *sink,
             struct msix **out);
/* After the vCPUs stopped and nothing calls msix_notify() any more. Routes are not released. */
void msix_free(struct msix *msix);

/*
 * Signals vector: fires it if deliverable, else marks it pending (or drops it while MSI-X is
 * disabled). Callable from any thread; never blocks on a route change. Returns 0, -EINVAL
 * for a vector out of range, or the sink's error from fire().
 */
int msix_notify(struct msix *msix, unsigned vector);

/*
 * The vector table and pending bits, for a snapshot. Restore runs after the PCI bus restored
 * the function's config space (message control is there), before the vCPUs start, and
 * installs the routes of the vectors that are deliverable. Returns false when the section is
 * damaged or has another vector count.
 */
void msix_save(struct msix *msix, struct snap_writer *w);
bool msix_restore(struct msix *msix, struct snap_reader *r);

/* The capability's config-space offset, the BAR's offsets of table and PBA. */
unsigned msix_cap_offset(const struct msix *msix);
uint32_t msix_table_offset(const struct msix *msix);
uint32_t msix_pba_offset(const struct msix *msix);

#endif
