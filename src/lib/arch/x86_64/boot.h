/*
 * Linux x86 boot protocol: loads a bzImage or an ELF vmlinux into guest memory, places the
 * initrd and command line, and fills the zero page (boot_params) with the e820 map.
 */
#ifndef COVE_X86_BOOT_H
#define COVE_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

enum kernel_format {
    KERNEL_FORMAT_UNKNOWN,
    KERNEL_FORMAT_BZIMAGE, /* setup header "HdrS", protocol >= 2.06, 64-bit entry point */
    KERNEL_FORMAT_ELF,     /* ELF64 x86_64 executable (vmlinux) */
};

/*
 * Recognises a kernel from the first bytes of its file (at least 1 KiB when there are). When
 * the format is UNKNOWN, why (e.g. "bzImage boot protocol 2.02 is older than 2.06") is
 * written to reason.
 */
enum kernel_format kernel_format_detect(const uint8_t *head, size_t len, char *reason,
                                        size_t reason_len);

struct boot_spec {
    const char *kernel_path;
    const char *initrd_path; /* may be NULL */
    const char *cmdline;     /* may be NULL */
};

/* Where the vCPU starts: 64-bit mode, paging on, RSI pointing at boot_params. */
struct boot_entry {
    uint64_t rip;
    uint64_t boot_params;
};

/* Loads everything; on failure writes one line into error. Returns 0 or -errno. */
int x86_load_linux(const struct guest_mem *mem, const struct boot_spec *spec,
                   struct boot_entry *entry, char *error, size_t error_len);

/* Tells the kernel where the ACPI RSDP is (boot_params.acpi_rsdp_addr), after loading. */
void x86_set_acpi_rsdp(const struct guest_mem *mem, uint64_t rsdp);

#endif
