/*
 * The modern virtio-over-PCI transport (virtio 1.2, 4.1), without the legacy interface.
 *
 * One virtio device becomes one PCI function: vendor 0x1af4, device 0x1040 + type, with the
 * virtio capabilities (common, notify, ISR, device-specific configuration and the PCI
 * configuration access window) in BAR 0 and MSI-X (one vector per queue plus one for
 * configuration changes) in BAR 1.
 *
 * Threads: the guest's register accesses arrive on vCPU threads; everything the device model
 * does runs on the VM's I/O loop. Queue kicks reach the loop through an eventfd per queue
 * (bound to the notify address with KVM ioeventfd when the host offers it, so a kick costs no
 * exit to user space). Reset and activation are handed to the loop and waited for, so a device
 * never sees two threads.
 */
#ifndef COVE_VIRTIO_PCI_H
#define COVE_VIRTIO_PCI_H

#include <stddef.h>
#include <stdint.h>

#include "bus/msix.h"
#include "bus/pci.h"
#include "guest_mem.h"
#include "io_loop.h"
#include "virtio/device.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040

/* BAR 0 layout: one page per structure. */
#define VIRTIO_PCI_COMMON_OFFSET 0x0000
#define VIRTIO_PCI_COMMON_SIZE 0x40
#define VIRTIO_PCI_ISR_OFFSET 0x1000
#define VIRTIO_PCI_DEVICE_OFFSET 0x2000
#define VIRTIO_PCI_NOTIFY_OFFSET 0x3000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4
#define VIRTIO_PCI_BAR0_SIZE 0x4000
#define VIRTIO_PCI_MSIX_BAR 1

/* What the VMM lends the transport. */
struct virtio_pci_host {
    struct pci_bus *bus;
    struct io_loop *loop;
    const struct guest_mem *mem;
    struct msi_sink msi;
    /* Binds eventfd to guest writes of len bytes at MMIO address addr (KVM ioeventfd).
     * NULL, or a failure, leaves kicks to the BAR write handler, which is slower but equal. */
    int (*add_ioeventfd)(void *ctx, uint64_t addr, unsigned len, int eventfd);
    void (*remove_ioeventfd)(void *ctx, uint64_t addr, unsigned len, int eventfd);
    /* Takes one line when the guest's driver broke the device's rules and the device stopped
     * (at most VIRTIO_PCI_MAX_FAULT_REPORTS per device, then one saying so). May be NULL. */
    void (*report_fault)(void *ctx, const char *line);
    void *ctx;
    /* What the user calls this device, for the reports ("share 'job'"); NULL: none. */
    const char *label;
};

/* A guest that breaks its rings on purpose, again and again, must not flood the host's log. */
#define VIRTIO_PCI_MAX_FAULT_REPORTS 8

struct virtio_pci;

/*
 * Puts dev on the bus. The transport owns dev from then on (dev->ops->destroy at free).
 * Returns NULL with one line in error on failure (and destroys dev).
 */
struct virtio_pci *virtio_pci_new(struct virtio_device *dev, const struct virtio_pci_host *host,
                                  char *error, size_t error_len);
/* After the vCPUs and the I/O loop stopped. */
void virtio_pci_free(struct virtio_pci *vp);

/*
 * Snapshots of the transport (registers, queues, MSI-X) and the device behind it. save: with
 * the vCPUs stopped and the I/O loop parked; -ENOTSUP for a device without snapshot support,
 * -EBUSY when the device cannot be saved now. restore: into a function freshly built from the
 * same configuration, after the PCI bus restored its config space and before any thread runs;
 * a live device is activated on the rings the driver had set up, and each of its queues is
 * looked at once the I/O loop runs. Returns false when the section is damaged.
 */
int virtio_pci_save(struct virtio_pci *vp, struct snap_writer *w);
bool virtio_pci_restore(struct virtio_pci *vp, struct snap_reader *r);

/* The PCI function, e.g. for tests that drive config space. */
struct pci_device *virtio_pci_function(struct virtio_pci *vp);

#endif
