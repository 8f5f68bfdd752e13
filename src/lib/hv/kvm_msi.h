/*
 * MSI delivery on KVM: the msi_sink (bus/msix.h) that devices' MSI-X vectors go through.
 *
 * Each route id gets its own GSI (gsi_base + id) and an eventfd bound to that GSI with
 * KVM_IRQFD, so firing is one eventfd write, from any thread, with no lock and no exit. A route
 * that is enabled has an MSI entry (address, data) for its GSI in KVM's routing table; a
 * disabled one has none, so even a stray write to its eventfd injects nothing.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so every rebuild also carries the routes KVM
 * sets up by default with the in-kernel irqchip (kvm_setup_default_irq_routing): IOAPIC pin n
 * for GSI n (0..23), and for GSIs 0..15 also the master/slave PIC pin. Without them
 * KVM_IRQ_LINE, which the legacy devices use (the UART on GSI 4), would reach nothing.
 */
#ifndef COVE_HV_KVM_MSI_H
#define COVE_HV_KVM_MSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/msix.h"
#include "hv/kvm.h"

/* The default irqchip routes: 24 IOAPIC pins, plus 16 PIC pins for GSIs 0..15. */
#define KVM_MSI_IOAPIC_PINS 24
#define KVM_MSI_PIC_PINS 16
#define KVM_MSI_IRQCHIP_ROUTES (KVM_MSI_IOAPIC_PINS + KVM_MSI_PIC_PINS)

struct kvm_msi_router;

/*
 * A router for up to max_routes MSI routes on GSIs gsi_base.. (gsi_base must be at least
 * KVM_MSI_IOAPIC_PINS). vm must have its in-kernel irqchip and outlive the router. Returns
 * NULL with one line in error when KVM lacks irqfd or GSI routing, or the GSIs do not fit.
 */
struct kvm_msi_router *kvm_msi_router_new(struct kvm_vm *vm, unsigned gsi_base, unsigned max_routes,
                            char *error, size_t error_len);
/* Unbinds and closes the eventfds; call after the vCPUs and devices stopped, before the VM
 * is closed. */
void kvm_msi_router_free(struct kvm_msi_router *msi);

/* The sink to hand to msix_new(); valid as long as msi. */
struct msi_sink kvm_msi_router_sink(struct kvm_msi_router *msi);

/* ---- exposed for tests ---- */

struct kvm_irq_routing_entry;

struct kvm_msi_route {
    bool on;
    uint64_t addr;
    uint32_t data;
};

/*
 * Fills out with the default irqchip routes, then one MSI route on GSI gsi_base + i for each
 * routes[i] that is on. Returns the number of entries, or 0 if they would not fit in cap.
 */
size_t kvm_msi_build_routing(unsigned gsi_base, const struct kvm_msi_route *routes, size_t count,
                             struct kvm_irq_routing_entry *out, size_t cap);

#endif
