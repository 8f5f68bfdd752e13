/*
 * The guest's ACPI tables on x86_64: RSDP, RSDT, XSDT, FADT, MADT and a hand-assembled DSDT.
 *
 * The machine is hardware-reduced ACPI (no PM1/GPE blocks, no SCI): power off and reset go
 * through the FADT's sleep control and reset registers, which the layout.h ports implement.
 */
#ifndef COVE_X86_ACPI_H
#define COVE_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

/*
 * The MADT describes CPUs with xAPIC entries, whose 8-bit APIC ID cannot be 0xff (broadcast);
 * the I/O APIC takes the ID right after the last CPU, so at most 254 CPUs fit.
 */
#define ACPI_MAX_CPUS 254u

/*
 * Writes RSDP (ACPI 2.0+, at X86_ACPI_RSDP_ADDR), XSDT, FADT, MADT and DSDT into guest memory
 * for a machine with `cpus` vCPUs (APIC IDs 0..cpus-1). Returns the guest address of the RSDP,
 * or a negative errno: -EINVAL if cpus is 0 or above ACPI_MAX_CPUS, -ENOSPC if the tables do
 * not fit below X86_ACPI_TABLES_END, -EFAULT if memory is missing.
 */
int64_t acpi_build_tables(const struct guest_mem *mem, unsigned cpus);

/*
 * AML helpers, exposed for tests.
 *
 * acpi_aml_encode_pkglength() encodes the PkgLength value `length`, which by definition counts
 * the encoding's own bytes. Returns the bytes written to out (1 to 4), or 0 when length does
 * not fit in 28 bits.
 */
size_t acpi_aml_encode_pkglength(uint32_t length, uint8_t out[4]);

/*
 * The PkgLength for a package whose contents after the PkgLength are body_len bytes: picks
 * the shortest encoding that can also count itself. Returns its size (1 to 4), or 0 if too big.
 */
size_t acpi_aml_pkglength_for_body(uint32_t body_len, uint8_t out[4]);

/*
 * The 32-bit integer ASL's EISAID("PNP0501") compiles to, for a seven-character ID of three
 * upper-case letters and four hex digits. Returns 0 (never a valid ID) when id is malformed.
 */
uint32_t acpi_aml_eisaid(const char *id);

#endif
