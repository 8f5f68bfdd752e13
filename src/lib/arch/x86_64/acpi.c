/*
 * ACPI tables for the x86_64 guest.
 *
 * Layout: the RSDP sits alone at X86_ACPI_RSDP_ADDR (in the BIOS area, where a kernel that is
 * not handed the RSDP address scans for it); RSDT, XSDT, FADT, MADT, MCFG and DSDT follow each
 * other from X86_ACPI_TABLES_ADDR. The DSDT goes last because its size is only known once its AML is
 * assembled, which happens in place in guest memory.
 *
 * Everything is written byte by byte at spec offsets rather than through packed structs, so
 * the output does not depend on the compiler's layout or the host's endianness.
 */
#include "arch/x86_64/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "arch/x86_64/layout.h"

#define ACPI_OEM_ID "COVE  " /* 6 bytes */
#define ACPI_OEM_TABLE_ID "COVEVM  " /* 8 bytes */
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_ID "COVE"
#define ACPI_CREATOR_REVISION 1

/* Tables are 8-byte aligned so the 64-bit fields of XSDT entries and FADT are naturally placed. */
#define TABLE_ALIGN 8

/* The common System Description Table header. */
#define HDR_LEN 36
#define HDR_LENGTH 4
#define HDR_REVISION 8
#define HDR_CHECKSUM 9

/* RSDP (ACPI 2.0+): the first 20 bytes have their own checksum for ACPI 1.0 readers. */
#define RSDP_V1_LEN 20
#define RSDP_LEN 36
#define RSDP_CHECKSUM 8
#define RSDP_OEM_ID 9
#define RSDP_REVISION 15
#define RSDP_RSDT 16
#define RSDP_LENGTH 20
#define RSDP_XSDT 24
#define RSDP_EXT_CHECKSUM 32

/* FADT revision 6 (ACPI 6.4): the last field is the hypervisor vendor identity. */
#define FADT_REVISION 6
#define FADT_MINOR_REVISION 4
#define FADT_LEN 276
#define FADT_DSDT 40
#define FADT_SCI_INT 46
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL_REG 244
#define FADT_SLEEP_STATUS_REG 256
#define FADT_HYPERVISOR_ID 268

#define IAPC_LEGACY_DEVICES (1u << 0)
#define IAPC_8042 (1u << 1)
#define IAPC_NO_VGA (1u << 2)

#define FADT_PWR_BUTTON (1u << 4) /* set: no fixed-feature power button */
#define FADT_SLP_BUTTON (1u << 5) /* set: no fixed-feature sleep button */
#define FADT_RESET_REG_SUP (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)

/*
 * The SCI does not exist in hardware-reduced mode, but Linux still compares every MADT
 * interrupt source override with SCI_INT: left at 0 it would take the PIT's IRQ0 override for
 * the SCI and make it level/active-low. 9 is where PCs (and QEMU) put it.
 */
#define FADT_SCI_IRQ 9

/* Generic Address Structure. */
#define GAS_LEN 12
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

#define MADT_REVISION 5
#define MADT_LAPIC_ADDR 36
#define MADT_FLAGS 40
#define MADT_ENTRIES 44
#define MADT_PCAT_COMPAT 1u

#define MADT_TYPE_LAPIC 0
#define MADT_TYPE_IOAPIC 1
#define MADT_TYPE_ISO 2
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_LEN 8
#define MADT_IOAPIC_LEN 12
#define MADT_ISO_LEN 10
#define MADT_LAPIC_NMI_LEN 6
#define MADT_LAPIC_ENABLED 1u
#define MADT_ALL_PROCESSORS 0xff

/* MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3; 0 means "bus default". */
#define MPS_INTI_CONFORMS 0x0
#define MPS_INTI_ACTIVE_HIGH 0x1
#define MPS_INTI_LEVEL 0xc

#define ISA_PIT_IRQ 0
#define IOAPIC_PIT_PIN 2 /* KVM's in-kernel IOAPIC wires the PIT to pin 2 */

#define MADT_LEN(cpus)                                                                           \
    (MADT_ENTRIES + (cpus) * MADT_LAPIC_LEN + MADT_IOAPIC_LEN + 2 * MADT_ISO_LEN +              \
     MADT_LAPIC_NMI_LEN)

/* MCFG: one ECAM allocation (PCI Firmware 3.0, 4.1.2) after 8 reserved bytes. */
#define MCFG_REVISION 1
#define MCFG_ALLOCATION 44
#define MCFG_LEN (MCFG_ALLOCATION + 16)

/* The tables the RSDT and XSDT list: FADT, MADT, MCFG. */
#define SDT_ENTRIES 3

/*
 * DSDT revision 2 makes AML integers 64 bits wide.
 */
#define DSDT_REVISION 2

/* AML opcodes (ACPI 6.4, chapter 20). */
#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE 0x10
#define AML_BUFFER 0x11
#define AML_PACKAGE 0x12
#define AML_METHOD 0x14
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_NOTIFY 0x86
#define AML_EXT_PREFIX 0x5b
#define AML_EXT_DEVICE 0x82
#define AML_ROOT_CHAR 0x5c

/* Small resource descriptors for _CRS (ACPI 6.4, 6.4.2). */
#define RES_IRQ_NO_FLAGS 0x22
#define RES_IO 0x47
#define RES_IO_DECODE16 0x01
#define RES_END_TAG 0x79
#define RES_EXTENDED_IRQ 0x89
#define RES_EXTENDED_IRQ_CONSUMER 0x01
#define RES_EXTENDED_IRQ_EDGE 0x02

/* Large address space descriptors for the PCI host bridge's windows (ACPI 6.4, 6.4.3.5). */
#define RES_DWORD_ADDRESS 0x87
#define RES_WORD_ADDRESS 0x88
#define RES_DWORD_ADDRESS_LEN 23 /* bytes after the 3-byte header */
#define RES_WORD_ADDRESS_LEN 13
#define RES_ADDRESS_MEMORY 0
#define RES_ADDRESS_BUS 2
/* General flags: ResourceProducer, PosDecode, MinFixed, MaxFixed. */
#define RES_ADDRESS_PRODUCER_FIXED 0x0c
/* Memory type-specific flags: ReadWrite, NonCacheable. */
#define RES_MEMORY_RW_NONCACHEABLE 0x01

#define ACPI_NOTIFY_DEVICE_CHECK_BUTTON 0x80 /* for a PNP0C0C button: "pressed" */

/* PkgLength's own bytes are reserved at their maximum and squeezed when the package closes. */
#define AML_PKGLENGTH_MAX 4

struct acpi_layout {
    uint64_t rsdt, xsdt, fadt, madt, mcfg, dsdt;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* The byte that makes data[0..len) sum to zero when stored in a field that was zero. */
static uint8_t checksum_fix(const uint8_t *data, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + data[i]);
    return (uint8_t)-sum;
}

/* ---- AML assembly ------------------------------------------------------------------------ */

size_t acpi_aml_encode_pkglength(uint32_t length, uint8_t out[4])
{
    if (length <= 0x3f) {
        out[0] = (uint8_t)length;
        return 1;
    }
    size_t n = length <= 0xfff ? 2 : length <= 0xfffff ? 3 : length <= 0xfffffff ? 4 : 0;
    if (n == 0)
        return 0;
    /* Lead byte: count of following bytes in bits 6-7, the low nibble of length in bits 0-3. */
    out[0] = (uint8_t)(((n - 1) << 6) | (length & 0xf));
    for (size_t i = 1; i < n; i++)
        out[i] = (uint8_t)(length >> (4 + 8 * (i - 1)));
    return n;
}

size_t acpi_aml_pkglength_for_body(uint32_t body_len, uint8_t out[4])
{
    static const uint32_t max_value[AML_PKGLENGTH_MAX] = {0x3f, 0xfff, 0xfffff, 0xfffffff};
    for (uint32_t n = 1; n <= AML_PKGLENGTH_MAX; n++) {
        if (body_len <= max_value[n - 1] - n)
            return acpi_aml_encode_pkglength(body_len + n, out);
    }
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint32_t acpi_aml_eisaid(const char *id)
{
    if (strlen(id) != 7)
        return 0;
    uint32_t vendor = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return 0;
        vendor = (vendor << 5) | (uint32_t)(id[i] - '@'); /* 'A' is 1 */
    }
    uint32_t product = 0;
    for (int i = 3; i < 7; i++) {
        int d = hex_digit(id[i]);
        if (d < 0)
            return 0;
        product = (product << 4) | (uint32_t)d;
    }
    /* Stored big-endian in the byte stream, which AML then reads as a little-endian DWord. */
    return (vendor >> 8) | (vendor & 0xff) << 8 | (product >> 8) << 16 | (product & 0xff) << 24;
}

/* An AML byte stream in a fixed buffer; any write past cap sets overflow and is dropped. */
struct aml {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool overflow;
};

static void aml_bytes(struct aml *a, const void *data, size_t n)
{
    if (a->overflow || n > a->cap - a->len) {
        a->overflow = true;
        return;
    }
    memcpy(a->buf + a->len, data, n);
    a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
    aml_bytes(a, &b, 1);
}

/* A NameSeg is always exactly four characters, padded with '_' by the caller. */
static void aml_nameseg(struct aml *a, const char seg[5])
{
    aml_bytes(a, seg, 4);
}

/* Opens a package (after its opcode); returns the mark to pass to aml_pkg_end(). */
static size_t aml_pkg_begin(struct aml *a)
{
    static const uint8_t placeholder[AML_PKGLENGTH_MAX];
    size_t mark = a->len;
    aml_bytes(a, placeholder, sizeof(placeholder));
    return mark;
}

static void aml_pkg_end(struct aml *a, size_t mark)
{
    if (a->overflow)
        return;
    size_t body = a->len - mark - AML_PKGLENGTH_MAX;
    uint8_t enc[AML_PKGLENGTH_MAX];
    size_t n = body > UINT32_MAX ? 0 : acpi_aml_pkglength_for_body((uint32_t)body, enc);
    if (n == 0) {
        a->overflow = true;
        return;
    }
    memmove(a->buf + mark + n, a->buf + mark + AML_PKGLENGTH_MAX, body);
    memcpy(a->buf + mark, enc, n);
    a->len -= AML_PKGLENGTH_MAX - n;
}

/* The shortest encoding, as iasl would emit it. */
static void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t le[8];
    put64(le, v);
    if (v == 0 || v == 1) {
        aml_byte(a, v ? AML_ONE : AML_ZERO);
    } else if (v <= UINT8_MAX) {
        aml_byte(a, AML_BYTE_PREFIX);
        aml_bytes(a, le, 1);
    } else if (v <= UINT16_MAX) {
        aml_byte(a, AML_WORD_PREFIX);
        aml_bytes(a, le, 2);
    } else if (v <= UINT32_MAX) {
        aml_byte(a, AML_DWORD_PREFIX);
        aml_bytes(a, le, 4);
    } else {
        aml_byte(a, AML_QWORD_PREFIX);
        aml_bytes(a, le, 8);
    }
}

static void aml_string(struct aml *a, const char *s)
{
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

/* Name(seg, ...): the caller appends the object. */
static void aml_name(struct aml *a, const char seg[5])
{
    aml_byte(a, AML_NAME);
    aml_nameseg(a, seg);
}

static void aml_name_integer(struct aml *a, const char seg[5], uint64_t v)
{
    aml_name(a, seg);
    aml_integer(a, v);
}

static void aml_buffer(struct aml *a, const uint8_t *data, size_t n)
{
    aml_byte(a, AML_BUFFER);
    size_t pkg = aml_pkg_begin(a);
    aml_integer(a, n);
    aml_bytes(a, data, n);
    aml_pkg_end(a, pkg);
}

static size_t aml_package_begin(struct aml *a, uint8_t elements)
{
    aml_byte(a, AML_PACKAGE);
    size_t pkg = aml_pkg_begin(a);
    aml_byte(a, elements);
    return pkg;
}

/* Scope(\seg) { ... }: close with aml_pkg_end(). */
static size_t aml_root_scope_begin(struct aml *a, const char seg[5])
{
    aml_byte(a, AML_SCOPE);
    size_t pkg = aml_pkg_begin(a);
    aml_byte(a, AML_ROOT_CHAR);
    aml_nameseg(a, seg);
    return pkg;
}

/* Device(seg) { ... }: close with aml_pkg_end(). */
static size_t aml_device_begin(struct aml *a, const char seg[5])
{
    aml_byte(a, AML_EXT_PREFIX);
    aml_byte(a, AML_EXT_DEVICE);
    size_t pkg = aml_pkg_begin(a);
    aml_nameseg(a, seg);
    return pkg;
}

/* IO(Decode16, port, port, 1, len): a fixed range, so minimum equals maximum. */
static void res_io(struct aml *r, uint16_t port, uint8_t len)
{
    uint8_t d[8] = {RES_IO, RES_IO_DECODE16, 0, 0, 0, 0, 1, len};
    put16(d + 2, port);
    put16(d + 4, port);
    aml_bytes(r, d, sizeof(d));
}

/* IRQNoFlags(){irq}: ISA default, edge-triggered active-high. */
static void res_irq_no_flags(struct aml *r, unsigned irq)
{
    uint8_t d[3] = {RES_IRQ_NO_FLAGS, 0, 0};
    put16(d + 1, (uint16_t)(1u << irq));
    aml_bytes(r, d, sizeof(d));
}

/* WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first, last, 0, count). */
static void res_word_bus_number(struct aml *r, uint16_t first, uint16_t last)
{
    uint8_t d[3 + RES_WORD_ADDRESS_LEN] = {RES_WORD_ADDRESS, RES_WORD_ADDRESS_LEN, 0,
                                           RES_ADDRESS_BUS, RES_ADDRESS_PRODUCER_FIXED, 0};
    put16(d + 6, 0); /* granularity */
    put16(d + 8, first);
    put16(d + 10, last);
    put16(d + 12, 0); /* translation offset */
    put16(d + 14, (uint16_t)(last - first + 1));
    aml_bytes(r, d, sizeof(d));
}

/* DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
 * 0, base, base + len - 1, 0, len): a window the bridge forwards to its devices. */
static void res_dword_memory(struct aml *r, uint32_t base, uint32_t len)
{
    uint8_t d[3 + RES_DWORD_ADDRESS_LEN] = {RES_DWORD_ADDRESS, RES_DWORD_ADDRESS_LEN, 0,
                                            RES_ADDRESS_MEMORY, RES_ADDRESS_PRODUCER_FIXED,
                                            RES_MEMORY_RW_NONCACHEABLE};
    put32(d + 6, 0); /* granularity */
    put32(d + 10, base);
    put32(d + 14, base + len - 1);
    put32(d + 18, 0); /* translation offset */
    put32(d + 22, len);
    aml_bytes(r, d, sizeof(d));
}

/* Name(_CRS, ResourceTemplate(){...}) from descriptors collected in r. */
static void aml_name_crs(struct aml *a, struct aml *r)
{
    /* A zero checksum in the end tag means "treat as correct". */
    static const uint8_t end_tag[2] = {RES_END_TAG, 0};
    aml_bytes(r, end_tag, sizeof(end_tag));
    if (r->overflow) {
        a->overflow = true;
        return;
    }
    aml_name(a, "_CRS");
    aml_buffer(a, r->buf, r->len);
}

/* ---- DSDT contents ------------------------------------------------------------------------ */

/* Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive){gsi}. */
static void res_extended_irq(struct aml *r, uint32_t gsi)
{
    uint8_t d[9] = {RES_EXTENDED_IRQ, 6, 0, RES_EXTENDED_IRQ_CONSUMER | RES_EXTENDED_IRQ_EDGE, 1};
    put32(d + 5, gsi);
    aml_bytes(r, d, sizeof(d));
}

/*
 * An ISA device at fixed ports with one interrupt. Describing the legacy devices lets Linux map
 * their interrupts: with hardware-reduced ACPI there is no PIC and so no implicit ISA IRQs, and
 * the RTC and i8042 drivers fail to probe without them.
 */
struct isa_device {
    const char *seg;
    const char *eisa_id;
    uint16_t ports[2];
    uint8_t port_lens[2];
    unsigned irq;
};

static void dsdt_isa_device(struct aml *a, const struct isa_device *d)
{
    uint8_t crs[32];
    struct aml r = {.buf = crs, .cap = sizeof(crs)};
    for (size_t i = 0; i < 2 && d->port_lens[i]; i++)
        res_io(&r, d->ports[i], d->port_lens[i]);
    res_irq_no_flags(&r, d->irq);

    size_t dev = aml_device_begin(a, d->seg);
    aml_name_integer(a, "_HID", acpi_aml_eisaid(d->eisa_id));
    aml_name_integer(a, "_UID", 1);
    aml_name_crs(a, &r);
    aml_pkg_end(a, dev);
}

static void dsdt_legacy_devices(struct aml *a)
{
    static const struct isa_device devices[] = {
        {"COM1", "PNP0501", {X86_COM1_PORT}, {8}, X86_COM1_IRQ},
        {"RTC_", "PNP0B00", {X86_CMOS_PORT}, {2}, X86_CMOS_IRQ},
        {"KBD_", "PNP0303", {X86_I8042_DATA_PORT, X86_I8042_COMMAND_PORT}, {1, 1},
         X86_I8042_KBD_IRQ},
    };
    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
        dsdt_isa_device(a, &devices[i]);
}

/*
 * The power button of a hardware-reduced machine: a Generic Event Device whose interrupt runs
 * _EVT, which notifies the PNP0C0C button device. Linux's button driver then reports
 * KEY_POWER, which the guest's init (systemd-logind, acpid, cove-agent) turns into a power off.
 */
static void dsdt_power_button(struct aml *a)
{
    size_t button = aml_device_begin(a, "PWRB");
    aml_name_integer(a, "_HID", acpi_aml_eisaid("PNP0C0C"));
    aml_name_integer(a, "_UID", 0);
    aml_pkg_end(a, button);

    uint8_t crs[16];
    struct aml r = {.buf = crs, .cap = sizeof(crs)};
    res_extended_irq(&r, X86_GED_GSI);
    size_t ged = aml_device_begin(a, "GED0");
    aml_name(a, "_HID");
    aml_string(a, "ACPI0013");
    aml_name_integer(a, "_UID", 0);
    aml_name_crs(a, &r);
    /* Method(_EVT, 1) { Notify(\_SB.PWRB, 0x80) }: one interrupt, so Arg0 needs no test. */
    aml_byte(a, AML_METHOD);
    size_t method = aml_pkg_begin(a);
    aml_nameseg(a, "_EVT");
    aml_byte(a, 1); /* one argument, not serialized */
    aml_byte(a, AML_NOTIFY);
    aml_byte(a, AML_ROOT_CHAR);
    aml_byte(a, AML_DUAL_NAME_PREFIX);
    aml_nameseg(a, "_SB_");
    aml_nameseg(a, "PWRB");
    aml_integer(a, ACPI_NOTIFY_DEVICE_CHECK_BUTTON);
    aml_pkg_end(a, method);
    aml_pkg_end(a, ged);
}

/*
 * Linux's pvpanic-mmio driver matches ACPI ID QEMU0001 and takes an I/O port resource as
 * readily as MMIO, so the ISA-style pvpanic port needs no PCI device.
 */
static void dsdt_pvpanic(struct aml *a)
{
    uint8_t crs[16];
    struct aml r = {.buf = crs, .cap = sizeof(crs)};
    res_io(&r, X86_PVPANIC_PORT, 1);

    size_t dev = aml_device_begin(a, "PEVT");
    aml_name(a, "_HID");
    aml_string(a, "QEMU0001");
    aml_name_crs(a, &r);
    aml_pkg_end(a, dev);
}

/*
 * The PCI host bridge for bus 0 (bus/pci.h). Linux finds it by _HID PNP0A08 (PCI Express root
 * bridge, whose config space MCFG describes) or _CID PNP0A03, and takes its BAR window from
 * _CRS. The I/O descriptor claims the mechanism #1 ports, as firmware does; Linux drops it
 * from the bridge's windows. No _PRT: devices interrupt through MSI-X only.
 */
static void dsdt_pci_host_bridge(struct aml *a)
{
    uint8_t crs[64];
    struct aml r = {.buf = crs, .cap = sizeof(crs)};
    res_word_bus_number(&r, 0, 0);
    res_io(&r, X86_PCI_CONFIG_PORT, X86_PCI_CONFIG_PORTS);
    res_dword_memory(&r, (uint32_t)X86_PCI_MMIO_BASE, (uint32_t)X86_PCI_MMIO_SIZE);

    size_t dev = aml_device_begin(a, "PCI0");
    aml_name_integer(a, "_HID", acpi_aml_eisaid("PNP0A08"));
    aml_name_integer(a, "_CID", acpi_aml_eisaid("PNP0A03"));
    aml_name_integer(a, "_UID", 0);
    aml_name_integer(a, "_SEG", 0);
    aml_name_integer(a, "_BBN", 0);
    aml_name_crs(a, &r);
    aml_pkg_end(a, dev);
}

static void dsdt_body(struct aml *a)
{
    /*
     * Linux offers ACPI power off only when \_S5 exists, and writes its first element as
     * SLP_TYP to the sleep control register.
     */
    aml_name(a, "_S5_");
    size_t s5 = aml_package_begin(a, 2);
    aml_integer(a, X86_ACPI_S5_SLP_TYP);
    aml_integer(a, X86_ACPI_S5_SLP_TYP);
    aml_pkg_end(a, s5);

    size_t sb = aml_root_scope_begin(a, "_SB_");
    dsdt_legacy_devices(a);
    dsdt_pvpanic(a);
    dsdt_power_button(a);
    dsdt_pci_host_bridge(a);
    aml_pkg_end(a, sb);
}

/* ---- Tables ------------------------------------------------------------------------------ */

/* Zeroed host memory for a table, or NULL when [gpa, gpa + len) is not all RAM. */
static uint8_t *table_at(const struct guest_mem *mem, uint64_t gpa, size_t len)
{
    uint8_t *t = guest_mem_ptr(mem, gpa, len);
    if (t)
        memset(t, 0, len);
    return t;
}

static void put_header(uint8_t *t, const char sig[5], uint32_t len, uint8_t revision)
{
    memcpy(t, sig, 4);
    put32(t + HDR_LENGTH, len);
    t[HDR_REVISION] = revision;
    t[HDR_CHECKSUM] = 0;
    memcpy(t + 10, ACPI_OEM_ID, 6);
    memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
    put32(t + 24, ACPI_OEM_REVISION);
    memcpy(t + 28, ACPI_CREATOR_ID, 4);
    put32(t + 32, ACPI_CREATOR_REVISION);
}

/* Call once the table is complete: the checksum covers every byte. */
static void seal(uint8_t *t)
{
    uint32_t len = (uint32_t)t[HDR_LENGTH] | (uint32_t)t[HDR_LENGTH + 1] << 8 |
                   (uint32_t)t[HDR_LENGTH + 2] << 16 | (uint32_t)t[HDR_LENGTH + 3] << 24;
    t[HDR_CHECKSUM] = 0;
    t[HDR_CHECKSUM] = checksum_fix(t, len);
}

static int write_rsdp(const struct guest_mem *mem, const struct acpi_layout *l)
{
    uint8_t *p = table_at(mem, X86_ACPI_RSDP_ADDR, RSDP_LEN);
    if (!p)
        return -EFAULT;
    memcpy(p, "RSD PTR ", 8);
    memcpy(p + RSDP_OEM_ID, ACPI_OEM_ID, 6);
    p[RSDP_REVISION] = 2;
    put32(p + RSDP_RSDT, (uint32_t)l->rsdt);
    put32(p + RSDP_LENGTH, RSDP_LEN);
    put64(p + RSDP_XSDT, l->xsdt);
    p[RSDP_CHECKSUM] = checksum_fix(p, RSDP_V1_LEN);
    p[RSDP_EXT_CHECKSUM] = checksum_fix(p, RSDP_LEN);
    return 0;
}

/*
 * The RSDT is only for readers that ignore the XSDT (acpi=rsdt, ACPI 1.0 tools); every table
 * is below 4 GiB, so its 32-bit entries can list the same tables.
 */
static int write_rsdt(const struct guest_mem *mem, const struct acpi_layout *l)
{
    uint8_t *t = table_at(mem, l->rsdt, HDR_LEN + SDT_ENTRIES * 4);
    if (!t)
        return -EFAULT;
    put_header(t, "RSDT", HDR_LEN + SDT_ENTRIES * 4, 1);
    put32(t + HDR_LEN, (uint32_t)l->fadt);
    put32(t + HDR_LEN + 4, (uint32_t)l->madt);
    put32(t + HDR_LEN + 8, (uint32_t)l->mcfg);
    seal(t);
    return 0;
}

static int write_xsdt(const struct guest_mem *mem, const struct acpi_layout *l)
{
    uint8_t *t = table_at(mem, l->xsdt, HDR_LEN + SDT_ENTRIES * 8);
    if (!t)
        return -EFAULT;
    put_header(t, "XSDT", HDR_LEN + SDT_ENTRIES * 8, 1);
    put64(t + HDR_LEN, l->fadt);
    put64(t + HDR_LEN + 8, l->madt);
    put64(t + HDR_LEN + 16, l->mcfg);
    seal(t);
    return 0;
}

/* A one-byte register in port I/O space. */
static void put_gas_io8(uint8_t *p, uint16_t port)
{
    p[0] = GAS_SYSTEM_IO;
    p[1] = 8; /* register bit width */
    p[2] = 0; /* bit offset */
    p[3] = GAS_ACCESS_BYTE;
    put64(p + 4, port);
}

static int write_fadt(const struct guest_mem *mem, const struct acpi_layout *l)
{
    uint8_t *t = table_at(mem, l->fadt, FADT_LEN);
    if (!t)
        return -EFAULT;
    put_header(t, "FACP", FADT_LEN, FADT_REVISION);
    put32(t + FADT_DSDT, (uint32_t)l->dsdt);
    put16(t + FADT_SCI_INT, FADT_SCI_IRQ);
    /* There is an i8042 and a CMOS RTC (NO_CMOS_RTC stays clear), but no VGA to probe. */
    put16(t + FADT_IAPC_BOOT_ARCH, IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_NO_VGA);
    put32(t + FADT_FLAGS,
          FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP | FADT_HW_REDUCED_ACPI);
    put_gas_io8(t + FADT_RESET_REG, X86_ACPI_RESET_PORT);
    t[FADT_RESET_VALUE] = X86_ACPI_RESET_VALUE;
    t[FADT_MINOR_VERSION] = FADT_MINOR_REVISION;
    put64(t + FADT_X_DSDT, l->dsdt);
    put_gas_io8(t + FADT_SLEEP_CONTROL_REG, X86_ACPI_SLEEP_CONTROL_PORT);
    put_gas_io8(t + FADT_SLEEP_STATUS_REG, X86_ACPI_SLEEP_STATUS_PORT);
    memcpy(t + FADT_HYPERVISOR_ID, "COVE", 4); /* the other 4 bytes stay zero */
    seal(t);
    return 0;
}

static uint8_t *madt_lapic(uint8_t *e, uint8_t id)
{
    e[0] = MADT_TYPE_LAPIC;
    e[1] = MADT_LAPIC_LEN;
    e[2] = id; /* ACPI processor UID, the same as the APIC ID */
    e[3] = id;
    put32(e + 4, MADT_LAPIC_ENABLED);
    return e + MADT_LAPIC_LEN;
}

static uint8_t *madt_ioapic(uint8_t *e, uint8_t id)
{
    e[0] = MADT_TYPE_IOAPIC;
    e[1] = MADT_IOAPIC_LEN;
    e[2] = id;
    put32(e + 4, (uint32_t)X86_IOAPIC_ADDR);
    put32(e + 8, 0); /* GSI base: pin n is GSI n */
    return e + MADT_IOAPIC_LEN;
}

static uint8_t *madt_iso(uint8_t *e, uint8_t isa_irq, uint32_t gsi, uint16_t flags)
{
    e[0] = MADT_TYPE_ISO;
    e[1] = MADT_ISO_LEN;
    e[2] = 0; /* bus: ISA */
    e[3] = isa_irq;
    put32(e + 4, gsi);
    put16(e + 8, flags);
    return e + MADT_ISO_LEN;
}

/* NMI is wired to LINT1 of every local APIC, as on a PC. */
static uint8_t *madt_lapic_nmi_all(uint8_t *e)
{
    e[0] = MADT_TYPE_LAPIC_NMI;
    e[1] = MADT_LAPIC_NMI_LEN;
    e[2] = MADT_ALL_PROCESSORS;
    put16(e + 3, MPS_INTI_CONFORMS);
    e[5] = 1; /* LINT1 */
    return e + MADT_LAPIC_NMI_LEN;
}

static int write_madt(const struct guest_mem *mem, const struct acpi_layout *l, unsigned cpus)
{
    uint32_t len = MADT_LEN(cpus);
    uint8_t *t = table_at(mem, l->madt, len);
    if (!t)
        return -EFAULT;
    put_header(t, "APIC", len, MADT_REVISION);
    put32(t + MADT_LAPIC_ADDR, (uint32_t)X86_LAPIC_ADDR);
    put32(t + MADT_FLAGS, MADT_PCAT_COMPAT);
    uint8_t *e = t + MADT_ENTRIES;
    for (unsigned i = 0; i < cpus; i++)
        e = madt_lapic(e, (uint8_t)i);
    /* The first ID after the CPUs', so no APIC ID is used twice. */
    e = madt_ioapic(e, (uint8_t)cpus);
    e = madt_iso(e, ISA_PIT_IRQ, IOAPIC_PIT_PIN, MPS_INTI_CONFORMS);
    /* As on QEMU: IRQ9 (the PC's SCI line) is level-triggered, active-high. */
    e = madt_iso(e, FADT_SCI_IRQ, FADT_SCI_IRQ, MPS_INTI_ACTIVE_HIGH | MPS_INTI_LEVEL);
    madt_lapic_nmi_all(e);
    seal(t);
    return 0;
}

/*
 * MCFG: ECAM for segment 0, bus 0 only. Linux also wants the region reserved in e820
 * (fill_e820() in boot.c), or it will not use MMCONFIG.
 */
static int write_mcfg(const struct guest_mem *mem, const struct acpi_layout *l)
{
    uint8_t *t = table_at(mem, l->mcfg, MCFG_LEN);
    if (!t)
        return -EFAULT;
    put_header(t, "MCFG", MCFG_LEN, MCFG_REVISION);
    uint8_t *e = t + MCFG_ALLOCATION;
    put64(e, X86_PCI_ECAM_BASE);
    put16(e + 8, 0); /* PCI segment group */
    e[10] = 0;       /* first bus */
    e[11] = 0;       /* last bus */
    seal(t);
    return 0;
}

/* The DSDT is assembled in place, so it may use everything up to the end of the region. */
static int write_dsdt(const struct guest_mem *mem, const struct acpi_layout *l)
{
    size_t cap = X86_ACPI_TABLES_END - l->dsdt;
    uint8_t *t = guest_mem_ptr(mem, l->dsdt, cap);
    if (!t)
        return -EFAULT;
    struct aml a = {.buf = t, .cap = cap};
    static const uint8_t header[HDR_LEN];
    aml_bytes(&a, header, sizeof(header)); /* filled once the length is known */
    dsdt_body(&a);
    if (a.overflow)
        return -ENOSPC;
    put_header(t, "DSDT", (uint32_t)a.len, DSDT_REVISION);
    seal(t);
    return 0;
}

/* Reserves len bytes at *next; returns the table's address, or 0 when the region is full. */
static uint64_t place(uint64_t *next, uint64_t len)
{
    uint64_t at = (*next + TABLE_ALIGN - 1) & ~(uint64_t)(TABLE_ALIGN - 1);
    if (at >= X86_ACPI_TABLES_END || len > X86_ACPI_TABLES_END - at)
        return 0;
    *next = at + len;
    return at;
}

static int plan_layout(unsigned cpus, struct acpi_layout *l)
{
    uint64_t next = X86_ACPI_TABLES_ADDR;
    l->rsdt = place(&next, HDR_LEN + SDT_ENTRIES * 4);
    l->xsdt = place(&next, HDR_LEN + SDT_ENTRIES * 8);
    l->fadt = place(&next, FADT_LEN);
    l->madt = place(&next, MADT_LEN((uint64_t)cpus));
    l->mcfg = place(&next, MCFG_LEN);
    l->dsdt = place(&next, HDR_LEN); /* grows as its AML is assembled */
    bool full = !l->rsdt || !l->xsdt || !l->fadt || !l->madt || !l->mcfg || !l->dsdt;
    return full ? -ENOSPC : 0;
}

int64_t acpi_build_tables(const struct guest_mem *mem, unsigned cpus)
{
    if (cpus == 0 || cpus > ACPI_MAX_CPUS)
        return -EINVAL;
    struct acpi_layout l;
    int err = plan_layout(cpus, &l);
    if (err == 0)
        err = write_rsdp(mem, &l);
    if (err == 0)
        err = write_rsdt(mem, &l);
    if (err == 0)
        err = write_xsdt(mem, &l);
    if (err == 0)
        err = write_fadt(mem, &l);
    if (err == 0)
        err = write_madt(mem, &l, cpus);
    if (err == 0)
        err = write_mcfg(mem, &l);
    if (err == 0)
        err = write_dsdt(mem, &l);
    return err ? err : (int64_t)X86_ACPI_RSDP_ADDR;
}
