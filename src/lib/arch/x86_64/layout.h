/*
 * The x86_64 guest physical and port address map. Every fixed address cove puts in front of
 * a guest is here, so the boot code, ACPI tables and devices cannot disagree.
 */
#ifndef COVE_X86_LAYOUT_H
#define COVE_X86_LAYOUT_H

#define X86_KiB 0x400ULL
#define X86_MiB 0x100000ULL
#define X86_GiB 0x40000000ULL

/* Low memory used by the boot path (all below the EBDA at 0x9fc00). */
#define X86_GDT_ADDR 0x500ULL
#define X86_BOOT_PARAMS_ADDR 0x7000ULL  /* struct boot_params, the "zero page" */
#define X86_BOOT_STACK_ADDR 0x8ff0ULL
#define X86_PML4_ADDR 0x9000ULL          /* identity page tables: PML4, PDPT, 4 PDs */
#define X86_PDPT_ADDR 0xa000ULL
#define X86_PD_ADDR 0xb000ULL            /* 4 pages: identity map of the low 4 GiB, 2 MiB pages */
#define X86_CMDLINE_ADDR 0x20000ULL
#define X86_CMDLINE_MAX 0x10000ULL       /* 64 KiB, far above what any kernel accepts */
#define X86_EBDA_START 0x9fc00ULL
#define X86_HIMEM_START 0x100000ULL      /* where the protected-mode kernel is loaded */

/* ACPI tables live in the BIOS area so a kernel that scans for the RSDP finds it too. */
#define X86_ACPI_RSDP_ADDR 0xe0000ULL
#define X86_ACPI_TABLES_ADDR 0xe1000ULL
#define X86_ACPI_TABLES_END 0x100000ULL

/* The PCI hole: RAM stops at 3 GiB and resumes at 4 GiB. */
#define X86_PCI_HOLE_START (3 * X86_GiB)
#define X86_HIGH_RAM_START (4 * X86_GiB)
/*
 * PCI (bus 0 only) in the hole. BARs are placed in the 32-bit MMIO window, which the DSDT's
 * host bridge _CRS advertises. ECAM (MMCONFIG, described by MCFG and reserved in e820)
 * follows it: 32 devices x 8 functions x 4 KiB for one bus is 1 MiB.
 */
#define X86_PCI_MMIO_BASE 0xc0000000ULL
#define X86_PCI_MMIO_SIZE 0x20000000ULL /* 0xc0000000 .. 0xdfffffff */
#define X86_PCI_ECAM_BASE 0xe0000000ULL
#define X86_PCI_ECAM_SIZE X86_MiB
#define X86_IOAPIC_ADDR 0xfec00000ULL
#define X86_LAPIC_ADDR 0xfee00000ULL
#define X86_IDENTITY_MAP_ADDR 0xfffbc000ULL /* one page KVM needs on Intel */
#define X86_TSS_ADDR 0xfffbd000ULL          /* three pages KVM needs on Intel */

/* Legacy ports and their ISA interrupts. */
#define X86_COM1_PORT 0x3f8
#define X86_COM1_IRQ 4
#define X86_I8042_DATA_PORT 0x60
#define X86_I8042_COMMAND_PORT 0x64
#define X86_I8042_KBD_IRQ 1
#define X86_CMOS_PORT 0x70 /* index at 0x70, data at 0x71 */
#define X86_CMOS_IRQ 8
#define X86_PVPANIC_PORT 0x505
/* PCI configuration mechanism #1: the address register at 0xcf8, the data window at 0xcfc. */
#define X86_PCI_CONFIG_PORT 0xcf8
#define X86_PCI_CONFIG_PORTS 8

/* The ACPI Generic Event Device's interrupt: a pulse on it is a power-button press. */
#define X86_GED_GSI 10

/* GSIs 0..23 are the IOAPIC's pins; MSI-X vectors get GSIs from here up (KVM routing). */
#define X86_IOAPIC_PINS 24
#define X86_MSI_GSI_BASE 24

/*
 * Hardware-reduced ACPI registers (one byte each), described by the FADT. A write of
 * SLP_EN | SLP_TYP(5) to the sleep control register is S5 (power off); a write of
 * X86_ACPI_RESET_VALUE to the reset register resets the machine.
 */
#define X86_ACPI_SLEEP_CONTROL_PORT 0x3c0
#define X86_ACPI_SLEEP_STATUS_PORT 0x3c1
#define X86_ACPI_RESET_PORT 0x3c2
#define X86_ACPI_RESET_VALUE 0x1
#define X86_ACPI_S5_SLP_TYP 5
#define X86_ACPI_SLP_TYP_SHIFT 2
#define X86_ACPI_SLP_TYP_MASK (7 << X86_ACPI_SLP_TYP_SHIFT)
#define X86_ACPI_SLP_EN (1 << 5)

#endif
