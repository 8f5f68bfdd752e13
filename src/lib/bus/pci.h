/*
 * A PCI host bridge with one bus (bus 0): configuration access through ports 0xcf8/0xcfc
 * (mechanism #1) and through ECAM (MMCONFIG), and 32-bit memory BARs placed in an MMIO window.
 *
 * A device embeds a struct pci_device, fills the "declared by the device" fields, adds its
 * capabilities (pci_add_capability(), msix_new()) and calls pci_bus_add(), which gives it a
 * slot, places its BARs and registers them on the MMIO bus. Nothing can be added afterwards:
 * like io_bus ranges, the machine is fixed before the vCPUs start.
 *
 * BARs are FIXED at the address the bus assigns. A guest write of another address is ignored
 * and the assigned address reads back (the all-ones sizing write still reads back the size
 * mask). Moving a BAR would mean changing io_bus ranges while vCPUs dispatch on them without a
 * lock; and there is no need, since Linux keeps firmware assignments that fit inside the host
 * bridge window (the DSDT _CRS), which these always do.
 *
 * Slot 0 holds the host bridge itself (class 06/00/00). Linux's check that mechanism #1 works
 * (pci_sanity_check) needs a host bridge or VGA device on bus 0 when there is no DMI BIOS
 * date, and without mechanism #1 it also refuses MMCONFIG ("not using MMCONFIG").
 *
 * Only function 0 exists; other functions, other buses and empty slots read all-ones.
 * Extended config space (256..4095) of a device reads as zero and ignores writes.
 */
#ifndef COVE_BUS_PCI_H
#define COVE_BUS_PCI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/io_bus.h"
#include "snapshot/stream.h"

#define PCI_SLOTS 32
#define PCI_BARS 6
#define PCI_CONFIG_SIZE 256       /* the conventional header and capabilities */
#define PCI_ECAM_FUNCTION_SIZE 4096
#define PCI_ECAM_BUS_SIZE (PCI_SLOTS * 8 * PCI_ECAM_FUNCTION_SIZE) /* 1 MiB */
#define PCI_BAR_MIN_SIZE 4096     /* smaller BARs are raised to this: one page each */
#define PCI_MAX_CAPS 16

/* Config space offsets and bits (PCI Local Bus 3.0, chapter 6). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_START 0x40

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_STATUS_CAP_LIST 0x0010

#define PCI_CAP_ID_VENDOR 0x09 /* virtio's capabilities */
#define PCI_CAP_ID_MSIX 0x11

/* The host bridge at slot 0: Red Hat's ID for a generic (virtual) PCIe host bridge. */
#define PCI_HOST_BRIDGE_VENDOR 0x1b36
#define PCI_HOST_BRIDGE_DEVICE 0x0008
#define PCI_CLASS_HOST_BRIDGE 0x060000

/*
 * One 32-bit non-prefetchable memory BAR. size 0: the BAR does not exist (reads 0). Otherwise
 * a power of two; below PCI_BAR_MIN_SIZE it is raised to that, and the handlers then see
 * offsets up to the raised size. read/write get offsets relative to the BAR, sizes 1/2/4/8,
 * on vCPU threads, concurrently; NULL reads all-ones / ignores writes. While the guest has
 * memory decoding off (command bit 1) they are not called: reads give all-ones, writes drop.
 */
struct pci_bar {
    uint64_t size;
    io_read_fn read;
    io_write_fn write;
    void *opaque;
};

/*
 * Side effects of a capability, for capabilities whose bytes mean something to the device
 * (MSI-X message control, virtio's PCI_CFG window). Offsets are config-space offsets. Both run
 * on vCPU threads without any bus lock held, so they may call pci_config_get(); two vCPUs may
 * run them at once (a guest serializes its config cycles, a hostile one need not), so a write
 * hook should re-read the state it acts on rather than trust the order of calls.
 */
struct pci_cap_ops {
    /* After a guest write to [offset, offset + size) landed (only writable bits change).
     * value is what the guest wrote, little-endian in the low size bytes. */
    void (*write)(void *opaque, unsigned offset, unsigned size, uint32_t value);
    /* Before a guest read of [offset, offset + size) returns: may replace *value. */
    void (*read)(void *opaque, unsigned offset, unsigned size, uint32_t *value);
};

struct pci_bus;

/* Zero it, then fill the first block; the rest belongs to the bus. */
struct pci_device {
    /* ---- declared by the device, before pci_bus_add() ---- */
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code; /* base class << 16 | subclass << 8 | programming interface */
    uint8_t revision;
    struct pci_bar bars[PCI_BARS];

    /* ---- the bus's; use the functions below ---- */
    struct pci_bus *bus; /* set by pci_bus_add() */
    unsigned slot;
    atomic_bool memory_enabled; /* command bit 1, read lock-free on every BAR access */
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE]; /* bits the guest may change */
    unsigned cap_count;
    struct pci_cap {
        uint8_t offset, len; /* len counts the 2-byte header */
        const struct pci_cap_ops *ops;
        void *opaque;
    } caps[PCI_MAX_CAPS];
    /* Each BAR's placement; also the opaque of its io_bus range. */
    struct pci_bar_state {
        struct pci_device *dev;
        unsigned index;
        uint64_t addr, size; /* size: as declared, raised to PCI_BAR_MIN_SIZE */
        bool sizing;         /* the last write was all-ones: reads give the size mask */
    } bar_state[PCI_BARS];
};

struct pci_bus_layout {
    uint64_t ecam_base;   /* PCI_ECAM_BUS_SIZE bytes of MMIO */
    uint64_t window_base; /* BARs go in [window_base, window_base + window_size), below 4 GiB */
    uint64_t window_size;
    uint16_t config_port; /* mechanism #1: address at port, data at port + 4 */
};

/*
 * Creates bus 0 and registers its config mechanisms: the two 4-port registers on pio (NULL:
 * ECAM only) and ECAM on mmio, where BARs are registered later too. Both buses must outlive
 * the PCI bus. Returns NULL and one line in error on failure.
 */
struct pci_bus *pci_bus_new(struct io_bus *pio, struct io_bus *mmio,
                            const struct pci_bus_layout *layout, char *error, size_t error_len);
/* After the vCPUs have stopped: the io_bus ranges still point into the bus and its devices. */
void pci_bus_free(struct pci_bus *bus);

/*
 * Adds dev in the next free slot: writes its header, places each BAR naturally aligned in the
 * window and registers it on the MMIO bus. dev must stay put until pci_bus_free(). Returns 0,
 * or -EINVAL (a BAR size that is not a power of two, or added twice), -ENOSPC (no slot or no
 * room in the window) or an io_bus error, with one line in error.
 */
int pci_bus_add(struct pci_bus *bus, struct pci_device *dev, char *error, size_t error_len);

/*
 * Appends a capability: id, a next pointer, then the len bytes of body (all read-only; open
 * fields with pci_config_set_wmask()). Returns its config-space offset (body at offset + 2),
 * or -ENOSPC when config space or the capability table is full, -EBUSY after pci_bus_add().
 */
int pci_add_capability(struct pci_device *dev, uint8_t id, const void *body, size_t len);
/* Gives the capability at offset (as pci_add_capability() returned it) side effects. */
int pci_capability_set_ops(struct pci_device *dev, int offset, const struct pci_cap_ops *ops,
                           void *opaque);
/* Makes bits of the size-byte (1, 2, 4) field at offset guest-writable; before pci_bus_add(). */
int pci_config_set_wmask(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask);

/* The device's own view of its config space (no hooks run): size 1, 2 or 4 within 256 bytes. */
uint32_t pci_config_get(struct pci_device *dev, unsigned offset, unsigned size);
/* The guest address of a BAR once pci_bus_add() placed it; 0 for a BAR that does not exist. */
uint64_t pci_bar_address(const struct pci_device *dev, unsigned bar);

/*
 * Every function's guest-written config state (command, capability fields, BAR sizing) and
 * the mechanism #1 address latch, for a snapshot. Restore expects the same devices in the
 * same slots (the machine is built from the same configuration) and takes only the bits the
 * guest could have written; capability hooks are not called: devices with state behind
 * them (MSI-X) restore it themselves. Returns false when the section is damaged or describes
 * other slots.
 */
void pci_bus_save(struct pci_bus *bus, struct snap_writer *w);
bool pci_bus_restore(struct pci_bus *bus, struct snap_reader *r);

/*
 * Guest config accesses, as the port and ECAM handlers make them; exposed for tests and for
 * other transports. offset is within the function's 4 KiB; size 1, 2 or 4 and the access must
 * not cross a 4-byte boundary, else reads give all-ones and writes are dropped.
 */
void pci_bus_config_read(struct pci_bus *bus, unsigned slot, unsigned function, unsigned offset,
                         uint8_t *data, unsigned size);
void pci_bus_config_write(struct pci_bus *bus, unsigned slot, unsigned function,
                          unsigned offset, const uint8_t *data, unsigned size);

#endif
