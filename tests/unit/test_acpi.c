/*
 * ACPI table generation: the tables are read back out of guest memory and checked the way a
 * kernel would find them (RSDP -> XSDT -> FADT -> DSDT, XSDT -> MADT).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"
#include "guest_mem.h"

#define MEM_SIZE (2 * X86_MiB)

struct machine {
    struct guest_mem mem;
};

/* RAM [0, size) and nothing above the hole: enough for the BIOS area. */
static struct machine *machine_new(uint64_t size, int fill)
{
    struct machine *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->mem.host = malloc(size);
    assert_non_null(m->mem.host);
    memset(m->mem.host, fill, size);
    m->mem.size = size;
    m->mem.low_size = size;
    m->mem.high_base = X86_HIGH_RAM_START;
    m->mem.memfd = -1;
    return m;
}

static void machine_free(struct machine *m)
{
    free(m->mem.host);
    free(m);
}

static const uint8_t *at(const struct machine *m, uint64_t gpa)
{
    return m->mem.host + gpa;
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
    uint8_t s = 0;
    for (size_t i = 0; i < len; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* Checks a table's placement, signature, length and checksum; returns it. */
static const uint8_t *table(const struct machine *m, uint64_t gpa, const char *sig)
{
    assert_true(gpa >= X86_ACPI_TABLES_ADDR);
    assert_true(gpa + 36 <= X86_ACPI_TABLES_END);
    const uint8_t *t = at(m, gpa);
    assert_memory_equal(t, sig, 4);
    uint32_t len = rd32(t + 4);
    assert_true(len >= 36);
    assert_true(gpa + len <= X86_ACPI_TABLES_END);
    assert_int_equal(sum(t, len), 0);
    assert_memory_equal(t + 10, "COVE  ", 6);
    return t;
}

static const uint8_t *rsdp_of(const struct machine *m, int64_t rsdp)
{
    assert_int_equal(rsdp, X86_ACPI_RSDP_ADDR);
    return at(m, (uint64_t)rsdp);
}

/* The table the XSDT lists with signature sig; fails unless there is exactly one. */
static const uint8_t *xsdt_find(const struct machine *m, const char *sig)
{
    const uint8_t *rsdp = at(m, X86_ACPI_RSDP_ADDR);
    const uint8_t *xsdt = table(m, rd64(rsdp + 24), "XSDT");
    uint32_t entries = (rd32(xsdt + 4) - 36) / 8;
    const uint8_t *found = NULL;
    for (uint32_t i = 0; i < entries; i++) {
        uint64_t gpa = rd64(xsdt + 36 + 8 * i);
        if (memcmp(at(m, gpa), sig, 4) == 0) {
            assert_null(found);
            found = table(m, gpa, sig);
        }
    }
    assert_non_null(found);
    return found;
}

static const uint8_t *dsdt_of(const struct machine *m)
{
    const uint8_t *fadt = xsdt_find(m, "FACP");
    return table(m, rd64(fadt + 140), "DSDT");
}

static void test_rsdp(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    const uint8_t *p = rsdp_of(m, acpi_build_tables(&m->mem, 1));
    assert_memory_equal(p, "RSD PTR ", 8);
    assert_int_equal(sum(p, 20), 0);
    assert_int_equal(p[15], 2);
    assert_int_equal(rd32(p + 20), 36);
    assert_int_equal(sum(p, 36), 0);
    assert_memory_equal(p + 9, "COVE  ", 6);
    /* The XSDT lists the FADT, MADT and MCFG. */
    table(m, rd64(p + 24), "XSDT");
    xsdt_find(m, "FACP");
    xsdt_find(m, "APIC");
    xsdt_find(m, "MCFG");
    /* The RSDT, for readers of ACPI 1.0, lists the same tables. */
    const uint8_t *rsdt = table(m, rd32(p + 16), "RSDT");
    const uint8_t *xsdt = at(m, rd64(p + 24));
    assert_int_equal((rd32(rsdt + 4) - 36) / 4, (rd32(xsdt + 4) - 36) / 8);
    for (uint32_t i = 0; i < (rd32(rsdt + 4) - 36) / 4; i++)
        assert_int_equal(rd32(rsdt + 36 + 4 * i), rd64(xsdt + 36 + 8 * i));
    machine_free(m);
}

/* A Generic Address Structure for a byte-wide register in port I/O space. */
static void assert_gas_io8(const uint8_t *gas, uint16_t port)
{
    assert_int_equal(gas[0], 1); /* System I/O */
    assert_int_equal(gas[1], 8);
    assert_int_equal(gas[2], 0);
    assert_int_equal(rd64(gas + 4), port);
}

static void test_fadt(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 2), X86_ACPI_RSDP_ADDR);
    const uint8_t *f = xsdt_find(m, "FACP");
    assert_int_equal(f[8], 6);
    assert_int_equal(rd32(f + 4), 276);
    uint32_t flags = rd32(f + 112);
    assert_true(flags & (1u << 20));  /* HW_REDUCED_ACPI */
    assert_true(flags & (1u << 10));  /* RESET_REG_SUP */
    uint16_t boot_arch = rd16(f + 109);
    assert_true(boot_arch & (1u << 1));   /* 8042 present */
    assert_false(boot_arch & (1u << 5));  /* CMOS RTC present */
    /* SCI_INT must not be 0, or Linux mistakes the PIT's IRQ0 override for the SCI's. */
    assert_int_not_equal(rd16(f + 46), 0);
    assert_gas_io8(f + 116, X86_ACPI_RESET_PORT);
    assert_int_equal(f[128], X86_ACPI_RESET_VALUE);
    assert_gas_io8(f + 244, X86_ACPI_SLEEP_CONTROL_PORT);
    assert_gas_io8(f + 256, X86_ACPI_SLEEP_STATUS_PORT);
    assert_memory_equal(f + 268, "COVE", 4);
    /* X_DSDT reaches the DSDT; the 32-bit DSDT field agrees. */
    const uint8_t *dsdt = dsdt_of(m);
    assert_int_equal(rd32(f + 40), dsdt - m->mem.host);
    machine_free(m);
}

struct madt_count {
    unsigned lapics, ioapics, nmis;
    unsigned lapic_ids[ACPI_MAX_CPUS];
    uint8_t ioapic_id;
    uint32_t ioapic_addr, ioapic_gsi_base;
    int irq0_gsi, irq9_gsi; /* -1: no override */
    uint16_t irq9_flags;
};

static void madt_entry(const uint8_t *e, struct madt_count *c)
{
    switch (e[0]) {
    case 0:
        assert_int_equal(e[1], 8);
        assert_true(rd32(e + 4) & 1); /* enabled */
        assert_true(c->lapics < ACPI_MAX_CPUS);
        c->lapic_ids[c->lapics++] = e[3];
        break;
    case 1:
        assert_int_equal(e[1], 12);
        c->ioapics++;
        c->ioapic_id = e[2];
        c->ioapic_addr = rd32(e + 4);
        c->ioapic_gsi_base = rd32(e + 8);
        break;
    case 2:
        assert_int_equal(e[1], 10);
        assert_int_equal(e[2], 0); /* ISA */
        if (e[3] == 0)
            c->irq0_gsi = (int)rd32(e + 4);
        if (e[3] == 9) {
            c->irq9_gsi = (int)rd32(e + 4);
            c->irq9_flags = rd16(e + 8);
        }
        break;
    case 4:
        assert_int_equal(e[1], 6);
        assert_int_equal(e[2], 0xff);
        assert_int_equal(e[5], 1); /* LINT1 */
        c->nmis++;
        break;
    default:
        fail_msg("unexpected MADT entry type %u", e[0]);
    }
}

/* Walks the MADT entries, which must tile the table exactly. */
static void madt_walk(const uint8_t *madt, struct madt_count *c)
{
    memset(c, 0, sizeof(*c));
    c->irq0_gsi = c->irq9_gsi = -1;
    uint32_t len = rd32(madt + 4), off = 44;
    while (off < len) {
        assert_true(madt[off + 1] >= 2);
        assert_true(off + madt[off + 1] <= len);
        madt_entry(madt + off, c);
        off += madt[off + 1];
    }
    assert_int_equal(off, len);
}

static void check_madt(unsigned cpus)
{
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, cpus), X86_ACPI_RSDP_ADDR);
    const uint8_t *madt = xsdt_find(m, "APIC");
    assert_int_equal(rd32(madt + 36), X86_LAPIC_ADDR);
    assert_int_equal(rd32(madt + 40) & 1, 1); /* PCAT_COMPAT */
    struct madt_count c;
    madt_walk(madt, &c);
    assert_int_equal(c.lapics, cpus);
    for (unsigned i = 0; i < cpus; i++) {
        assert_int_equal(c.lapic_ids[i], i);
        assert_int_not_equal(c.ioapic_id, c.lapic_ids[i]);
    }
    assert_int_equal(c.ioapics, 1);
    assert_int_equal(c.ioapic_addr, X86_IOAPIC_ADDR);
    assert_int_equal(c.ioapic_gsi_base, 0);
    assert_int_equal(c.irq0_gsi, 2);
    assert_int_equal(c.irq9_gsi, 9);
    assert_int_equal(c.irq9_flags, 0x000d); /* active high, level */
    assert_int_equal(c.nmis, 1);
    machine_free(m);
}

static void test_madt_1_cpu(void **state)
{
    (void)state;
    check_madt(1);
}

static void test_madt_4_cpus(void **state)
{
    (void)state;
    check_madt(4);
}

static void test_madt_max_cpus(void **state)
{
    (void)state;
    check_madt(ACPI_MAX_CPUS);
}

/* Decodes a PkgLength independently of the code under test; returns its value. */
static uint32_t pkglength(const uint8_t *p, size_t *size)
{
    unsigned follow = p[0] >> 6;
    if (follow == 0) {
        *size = 1;
        return p[0] & 0x3f;
    }
    uint32_t v = p[0] & 0x0f;
    for (unsigned i = 0; i < follow; i++)
        v |= (uint32_t)p[1 + i] << (4 + 8 * i);
    *size = 1 + follow;
    return v;
}

static const uint8_t *find(const uint8_t *hay, size_t hay_len, const void *needle, size_t len)
{
    return memmem(hay, hay_len, needle, len);
}

static void test_dsdt_contents(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 1), X86_ACPI_RSDP_ADDR);
    const uint8_t *d = dsdt_of(m);
    size_t len = rd32(d + 4);
    assert_true(d[8] >= 2); /* 64-bit integers */

    /* Name(_S5, Package(){5, 5}) at the root scope, first thing after the header. */
    static const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x02,
                                 0x0a, X86_ACPI_S5_SLP_TYP, 0x0a, X86_ACPI_S5_SLP_TYP};
    assert_memory_equal(d + 36, s5, sizeof(s5));

    /* pvpanic: Name(_HID, "QEMU0001") and IO(Decode16, 0x505, 0x505, 1, 1). */
    static const uint8_t pv_hid[] = "\x08_HID\x0dQEMU0001";
    assert_non_null(find(d, len, pv_hid, sizeof(pv_hid)));
    static const uint8_t pv_io[] = {0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01};
    assert_non_null(find(d, len, pv_io, sizeof(pv_io)));

    /* COM1: _HID EISAID("PNP0501"), IO 0x3f8 length 8, IRQNoFlags(){4}. */
    static const uint8_t com_hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01};
    assert_non_null(find(d, len, com_hid, sizeof(com_hid)));
    static const uint8_t com_crs[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
                                      0x22, 0x10, 0x00, 0x79, 0x00};
    assert_non_null(find(d, len, com_crs, sizeof(com_crs)));

    /* RTC at 0x70 (2 ports, IRQ 8) and the keyboard controller at 0x60/0x64 (IRQ 1). */
    static const uint8_t rtc_crs[] = {0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02,
                                      0x22, 0x00, 0x01, 0x79, 0x00};
    assert_non_null(find(d, len, rtc_crs, sizeof(rtc_crs)));
    static const uint8_t kbd_crs[] = {0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01,
                                      0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01,
                                      0x22, 0x02, 0x00, 0x79, 0x00};
    assert_non_null(find(d, len, kbd_crs, sizeof(kbd_crs)));

    /* The power button: GED with Interrupt(Consumer, Edge, ActiveHigh){10} and
     * Method(_EVT, 1) { Notify(\_SB.PWRB, 0x80) }. */
    static const uint8_t ged_hid[] = "\x08_HID\x0d" "ACPI0013";
    assert_non_null(find(d, len, ged_hid, sizeof(ged_hid)));
    static const uint8_t ged_irq[] = {0x89, 0x06, 0x00, 0x03, 0x01, X86_GED_GSI, 0, 0, 0, 0x79, 0x00};
    assert_non_null(find(d, len, ged_irq, sizeof(ged_irq)));
    static const uint8_t evt[] = {0x14, 0x13, '_', 'E', 'V', 'T', 0x01, 0x86, 0x5c, 0x2e,
                                  '_', 'S', 'B', '_', 'P', 'W', 'R', 'B', 0x0a, 0x80};
    assert_non_null(find(d, len, evt, sizeof(evt)));
    static const uint8_t button_hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0c, 0x0c};
    assert_non_null(find(d, len, button_hid, sizeof(button_hid)));
    machine_free(m);
}

/* The device at p (ExtOp Device) named name; returns the offset just past it. */
static size_t device_at(const uint8_t *p, const char *name)
{
    assert_int_equal(p[0], 0x5b);
    assert_int_equal(p[1], 0x82);
    size_t n;
    uint32_t pkg = pkglength(p + 2, &n);
    assert_memory_equal(p + 2 + n, name, 4);
    return 2 + pkg;
}

/* \_SB spans exactly to the end of the DSDT and holds exactly the devices cove describes. */
static void test_dsdt_structure(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 1), X86_ACPI_RSDP_ADDR);
    const uint8_t *d = dsdt_of(m);
    size_t len = rd32(d + 4);
    size_t off = 36 + 12; /* header, Name(_S5, ...) */
    assert_int_equal(d[off], 0x10); /* ScopeOp */
    size_t n;
    uint32_t scope_len = pkglength(d + off + 1, &n);
    assert_int_equal(off + 1 + scope_len, len);
    size_t scope_end = off + 1 + scope_len;
    off += 1 + n;
    assert_memory_equal(d + off, "\\_SB_", 5);
    off += 5;
    static const char *const devices[] = {"COM1", "RTC_", "KBD_", "PEVT", "PWRB", "GED0", "PCI0"};
    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
        off += device_at(d + off, devices[i]);
    assert_int_equal(off, scope_end);
    machine_free(m);
}

/* The device named name directly under \_SB: its bytes, from ExtOp Device to its end. */
static const uint8_t *sb_device(const uint8_t *d, const char *name, size_t *dev_len)
{
    size_t n, off = 36 + 12; /* header, Name(_S5, ...) */
    uint32_t scope_len = pkglength(d + off + 1, &n);
    size_t scope_end = off + 1 + scope_len;
    off += 1 + n + 5; /* ScopeOp, PkgLength, \_SB_ */
    while (off < scope_end) {
        assert_int_equal(d[off], 0x5b); /* ExtOpPrefix, DeviceOp */
        assert_int_equal(d[off + 1], 0x82);
        size_t len = 2 + pkglength(d + off + 2, &n);
        if (memcmp(d + off + 2 + n, name, 4) == 0) {
            *dev_len = len;
            return d + off;
        }
        off += len;
    }
    fail_msg("no device %s under \\_SB", name);
    return NULL;
}

/* The PCI host bridge Linux looks for: PNP0A08/PNP0A03, segment 0, bus 0, and its windows. */
static void test_dsdt_pci_host_bridge(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 1), X86_ACPI_RSDP_ADDR);
    size_t len = 0;
    const uint8_t *dev = sb_device(dsdt_of(m), "PCI0", &len);
    static const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x08};
    static const uint8_t cid[] = {0x08, '_', 'C', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03};
    static const uint8_t uid[] = {0x08, '_', 'U', 'I', 'D', 0x00};
    static const uint8_t seg[] = {0x08, '_', 'S', 'E', 'G', 0x00};
    static const uint8_t bbn[] = {0x08, '_', 'B', 'B', 'N', 0x00};
    assert_non_null(find(dev, len, hid, sizeof(hid)));
    assert_non_null(find(dev, len, cid, sizeof(cid)));
    assert_non_null(find(dev, len, uid, sizeof(uid)));
    assert_non_null(find(dev, len, seg, sizeof(seg)));
    assert_non_null(find(dev, len, bbn, sizeof(bbn)));
    /* _CRS: WordBusNumber(0..0), IO(Decode16, 0xcf8, 0xcf8, 1, 8), and the BAR window as a
     * DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite). */
    static const uint8_t crs[] = {
        0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00,
        0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
        0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0,
        0xff, 0xff, 0xff, 0xdf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
        0x79, 0x00};
    assert_non_null(find(dev, len, crs, sizeof(crs)));
    /* The window is the one the PCI bus places BARs in, and it is outside RAM and ECAM. */
    assert_int_equal(X86_PCI_MMIO_BASE, 0xc0000000);
    assert_int_equal(X86_PCI_MMIO_BASE + X86_PCI_MMIO_SIZE - 1, 0xdfffffff);
    assert_true(X86_PCI_MMIO_BASE >= X86_PCI_HOLE_START);
    assert_true(X86_PCI_MMIO_BASE + X86_PCI_MMIO_SIZE <= X86_PCI_ECAM_BASE);
    machine_free(m);
}

/* MCFG: one allocation, ECAM at X86_PCI_ECAM_BASE for segment 0, buses 0..0. */
static void test_mcfg(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 2), X86_ACPI_RSDP_ADDR);
    const uint8_t *t = xsdt_find(m, "MCFG");
    assert_int_equal(rd32(t + 4), 60);
    assert_int_equal(t[8], 1);
    for (int i = 36; i < 44; i++)
        assert_int_equal(t[i], 0); /* reserved */
    assert_int_equal(rd64(t + 44), X86_PCI_ECAM_BASE);
    assert_int_equal(rd16(t + 52), 0);
    assert_int_equal(t[54], 0);
    assert_int_equal(t[55], 0);
    assert_int_equal(rd32(t + 56), 0);
    /* Bus 0 only: 1 MiB of ECAM, below 4 GiB (older kernels ignore MCFG above it) and
     * clear of the IOAPIC. */
    assert_int_equal(X86_PCI_ECAM_SIZE, 1 << 20);
    assert_true(X86_PCI_ECAM_BASE + X86_PCI_ECAM_SIZE <= X86_IOAPIC_ADDR);
    machine_free(m);
}

static void test_pkglength_encoding(void **state)
{
    (void)state;
    uint8_t out[4];
    assert_int_equal(acpi_aml_encode_pkglength(63, out), 1);
    assert_int_equal(out[0], 0x3f);
    assert_int_equal(acpi_aml_encode_pkglength(64, out), 2);
    assert_int_equal(out[0], 0x40);
    assert_int_equal(out[1], 0x04);
    assert_int_equal(acpi_aml_encode_pkglength(4095, out), 2);
    assert_int_equal(out[0], 0x4f);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(acpi_aml_encode_pkglength(4096, out), 3);
    assert_int_equal(out[0], 0x80);
    assert_int_equal(out[1], 0x00);
    assert_int_equal(out[2], 0x01);
    assert_int_equal(acpi_aml_encode_pkglength(0xfffff, out), 3);
    assert_int_equal(acpi_aml_encode_pkglength(0x100000, out), 4);
    assert_int_equal(out[0], 0xc0);
    assert_int_equal(out[3], 0x01);
    assert_int_equal(acpi_aml_encode_pkglength(0x10000000, out), 0);
}

/* The PkgLength counts itself, so a body of 63 bytes no longer fits a one-byte encoding. */
static void test_pkglength_for_body(void **state)
{
    (void)state;
    uint8_t out[4];
    size_t n;
    assert_int_equal(acpi_aml_pkglength_for_body(62, out), 1);
    assert_int_equal(pkglength(out, &n), 63);
    assert_int_equal(acpi_aml_pkglength_for_body(63, out), 2);
    assert_int_equal(pkglength(out, &n), 65);
    assert_int_equal(acpi_aml_pkglength_for_body(4093, out), 2);
    assert_int_equal(pkglength(out, &n), 4095);
    assert_int_equal(acpi_aml_pkglength_for_body(4094, out), 3);
    assert_int_equal(pkglength(out, &n), 4097);
    assert_int_equal(acpi_aml_pkglength_for_body(0x0ffffffb, out), 4);
    assert_int_equal(pkglength(out, &n), 0x0fffffff);
    assert_int_equal(acpi_aml_pkglength_for_body(0x0ffffffc, out), 0);
}

static void test_eisaid(void **state)
{
    (void)state;
    assert_int_equal(acpi_aml_eisaid("PNP0501"), 0x0105d041);
    assert_int_equal(acpi_aml_eisaid("PNP0A08"), 0x080ad041);
    assert_int_equal(acpi_aml_eisaid("PNP0C0C"), 0x0c0cd041);
    assert_int_equal(acpi_aml_eisaid("pnp0501"), 0);
    assert_int_equal(acpi_aml_eisaid("PNP05G1"), 0);
    assert_int_equal(acpi_aml_eisaid("PNP050"), 0);
}

/* Too little RAM: below the RSDP, below the tables, and ending inside the table region. */
static void test_missing_memory(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {512 * X86_KiB, X86_ACPI_TABLES_ADDR, 0xf0000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct machine *m = machine_new(sizes[i], 0);
        assert_int_equal(acpi_build_tables(&m->mem, 1), -EFAULT);
        machine_free(m);
    }
}

static void test_cpu_count_limits(void **state)
{
    (void)state;
    struct machine *m = machine_new(MEM_SIZE, 0);
    assert_int_equal(acpi_build_tables(&m->mem, 0), -EINVAL);
    assert_int_equal(acpi_build_tables(&m->mem, ACPI_MAX_CPUS + 1), -EINVAL);
    assert_int_equal(acpi_build_tables(&m->mem, 100000), -EINVAL);
    assert_int_equal(acpi_build_tables(&m->mem, ACPI_MAX_CPUS), X86_ACPI_RSDP_ADDR);
    machine_free(m);
}

/* Reserved fields are written, not inherited: tables over garbage equal tables over zeros. */
static void test_dirty_memory(void **state)
{
    (void)state;
    struct machine *clean = machine_new(MEM_SIZE, 0);
    struct machine *dirty = machine_new(MEM_SIZE, 0xa5);
    assert_int_equal(acpi_build_tables(&clean->mem, 3), X86_ACPI_RSDP_ADDR);
    assert_int_equal(acpi_build_tables(&dirty->mem, 3), X86_ACPI_RSDP_ADDR);
    const uint8_t *rsdp = at(clean, X86_ACPI_RSDP_ADDR);
    assert_memory_equal(rsdp, at(dirty, X86_ACPI_RSDP_ADDR), 36);
    /* Only padding between tables may differ, so each table is compared whole. */
    const uint8_t *tables[] = {
        at(clean, rd32(rsdp + 16)), at(clean, rd64(rsdp + 24)), xsdt_find(clean, "FACP"),
        xsdt_find(clean, "APIC"), xsdt_find(clean, "MCFG"), dsdt_of(clean),
    };
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        uint64_t gpa = (uint64_t)(tables[i] - clean->mem.host);
        assert_memory_equal(tables[i], at(dirty, gpa), rd32(tables[i] + 4));
    }
    machine_free(clean);
    machine_free(dirty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsdp),
        cmocka_unit_test(test_fadt),
        cmocka_unit_test(test_madt_1_cpu),
        cmocka_unit_test(test_madt_4_cpus),
        cmocka_unit_test(test_madt_max_cpus),
        cmocka_unit_test(test_dsdt_contents),
        cmocka_unit_test(test_dsdt_structure),
        cmocka_unit_test(test_dsdt_pci_host_bridge),
        cmocka_unit_test(test_mcfg),
        cmocka_unit_test(test_pkglength_encoding),
        cmocka_unit_test(test_pkglength_for_body),
        cmocka_unit_test(test_eisaid),
        cmocka_unit_test(test_missing_memory),
        cmocka_unit_test(test_cpu_count_limits),
        cmocka_unit_test(test_dirty_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
