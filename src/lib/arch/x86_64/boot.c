/*
 * Linux x86 boot protocol (Documentation/x86/boot.rst), 64-bit entry.
 *
 * A bzImage is entered at its protected-mode part + 0x200 (startup_64 of the decompressor);
 * an ELF vmlinux at its ELF entry (startup_64 proper). Either way the vCPU starts in long
 * mode with the low 4 GiB identity-mapped and RSI holding the zero page, so no real-mode code
 * runs: that is both faster and the only path that works where real mode is emulated.
 */
#include "arch/x86_64/boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"

/* Offsets into the setup header, which sits at the same place in the bzImage file and in
 * boot_params. Byte offsets keep us independent of struct packing. */
enum {
    HDR_SETUP_SECTS = 0x1f1,
    HDR_BOOT_FLAG = 0x1fe,
    HDR_JUMP = 0x200,
    HDR_MAGIC = 0x202,
    HDR_VERSION = 0x206,
    HDR_TYPE_OF_LOADER = 0x210,
    HDR_LOADFLAGS = 0x211,
    HDR_RAMDISK_IMAGE = 0x218,
    HDR_RAMDISK_SIZE = 0x21c,
    HDR_HEAP_END_PTR = 0x224,
    HDR_CMD_LINE_PTR = 0x228,
    HDR_INITRD_ADDR_MAX = 0x22c,
    HDR_KERNEL_ALIGNMENT = 0x230,
    HDR_XLOADFLAGS = 0x236,
    HDR_CMDLINE_SIZE = 0x238,
    HDR_PREF_ADDRESS = 0x258,
    HDR_INIT_SIZE = 0x260,
};

/* Other boot_params fields. */
enum {
    BP_ACPI_RSDP_ADDR = 0x070,
    BP_EXT_RAMDISK_IMAGE = 0x0c0,
    BP_EXT_RAMDISK_SIZE = 0x0c4,
    BP_EXT_CMD_LINE_PTR = 0x0c8,
    BP_E820_ENTRIES = 0x1e8,
    BP_E820_TABLE = 0x2d0,
    BP_E820_MAX = 128,
    BP_SIZE = 4096,
};

#define HDRS_MAGIC 0x53726448u /* "HdrS" */
#define BOOT_FLAG 0xaa55
#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01
#define MIN_PROTOCOL 0x0206 /* cmdline_size and a 64-bit-capable header */
#define E820_RAM 1
#define E820_RESERVED 2
#define PAGE_SIZE 4096ULL

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
static uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }

static bool is_elf64_x86(const uint8_t *head, size_t len)
{
    if (len < sizeof(Elf64_Ehdr) || memcmp(head, ELFMAG, SELFMAG) != 0)
        return false;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)head;
    return head[EI_CLASS] == ELFCLASS64 && head[EI_DATA] == ELFDATA2LSB &&
           eh->e_machine == EM_X86_64 && eh->e_type == ET_EXEC;
}

enum kernel_format kernel_format_detect(const uint8_t *head, size_t len, char *reason,
                                        size_t reason_len)
{
    if (reason_len)
        reason[0] = '\0';
    if (is_elf64_x86(head, len))
        return KERNEL_FORMAT_ELF;
    if (len >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0) {
        snprintf(reason, reason_len, "ELF file, but not a 64-bit x86 executable");
        return KERNEL_FORMAT_UNKNOWN;
    }
    if (len < HDR_CMDLINE_SIZE + 4 || get32(head + HDR_MAGIC) != HDRS_MAGIC ||
        get16(head + HDR_BOOT_FLAG) != BOOT_FLAG)
        return KERNEL_FORMAT_UNKNOWN;
    uint16_t version = get16(head + HDR_VERSION);
    if (version < MIN_PROTOCOL) {
        snprintf(reason, reason_len, "bzImage boot protocol %u.%02u is older than 2.06",
                 version >> 8, version & 0xff);
        return KERNEL_FORMAT_UNKNOWN;
    }
    if (!(head[HDR_LOADFLAGS] & LOADED_HIGH)) {
        snprintf(reason, reason_len, "zImage (not loaded high) is not supported");
        return KERNEL_FORMAT_UNKNOWN;
    }
    if (len > HDR_XLOADFLAGS + 1 && !(get16(head + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
        snprintf(reason, reason_len, "bzImage has no 64-bit entry point (32-bit kernel?)");
        return KERNEL_FORMAT_UNKNOWN;
    }
    return KERNEL_FORMAT_BZIMAGE;
}

/* A whole file read into memory, bounded by max_len. */
struct file_buf {
    uint8_t *data;
    size_t len;
};

static int read_at(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file shrank under us */
        done += (size_t)n;
    }
    return 0;
}

static int open_sized(const char *path, off_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    *size = st.st_size;
    return fd;
}

struct loaded_kernel {
    uint64_t entry;
    uint64_t end; /* first byte above everything the kernel will occupy while booting */
};

/* Copies [file_off, file_off + len) of fd into guest memory at gpa, bounds-checked. */
static int copy_to_guest(const struct guest_mem *mem, int fd, off_t file_off, uint64_t gpa,
                         uint64_t len, char *error, size_t error_len, const char *what)
{
    void *dst = guest_mem_ptr(mem, gpa, len);
    if (!dst) {
        snprintf(error, error_len, "%s does not fit in guest memory (%llu bytes at 0x%llx)",
                 what, (unsigned long long)len, (unsigned long long)gpa);
        return -ENOSPC;
    }
    int r = read_at(fd, dst, len, file_off);
    if (r < 0)
        snprintf(error, error_len, "%s: %s", what, strerror(-r));
    return r;
}

static int load_bzimage(const struct guest_mem *mem, int fd, off_t size, uint8_t *zero_page,
                        struct loaded_kernel *out, char *error, size_t error_len)
{
    uint8_t hdr[1024];
    if ((size_t)size < sizeof(hdr) || read_at(fd, hdr, sizeof(hdr), 0) < 0) {
        snprintf(error, error_len, "kernel: truncated bzImage");
        return -EINVAL;
    }
    /* The header ends where the jump at 0x200 lands. */
    size_t hdr_end = 0x202 + hdr[HDR_JUMP + 1];
    if (hdr_end > sizeof(hdr))
        hdr_end = sizeof(hdr);
    memcpy(zero_page + HDR_SETUP_SECTS, hdr + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);

    unsigned setup_sects = hdr[HDR_SETUP_SECTS] ? hdr[HDR_SETUP_SECTS] : 4;
    off_t pm_offset = (off_t)(setup_sects + 1) * 512;
    if (pm_offset >= size) {
        snprintf(error, error_len, "kernel: bzImage has no protected-mode part");
        return -EINVAL;
    }
    uint64_t pm_size = (uint64_t)(size - pm_offset);
    int r = copy_to_guest(mem, fd, pm_offset, X86_HIMEM_START, pm_size, error, error_len,
                          "kernel");
    if (r < 0)
        return r;

    /* Where the decompressor will put the kernel: see startup_64 in compressed/head_64.S. */
    uint64_t alignment = get32(hdr + HDR_KERNEL_ALIGNMENT);
    if (alignment == 0 || (alignment & (alignment - 1)))
        alignment = 2 * X86_MiB;
    uint64_t run_at = align_up(X86_HIMEM_START, alignment);
    uint64_t pref = get64(hdr + HDR_PREF_ADDRESS);
    if (pref > run_at)
        run_at = pref;
    uint64_t run_end = run_at + get32(hdr + HDR_INIT_SIZE);
    uint64_t load_end = X86_HIMEM_START + pm_size;
    out->end = run_end > load_end ? run_end : load_end;
    out->entry = X86_HIMEM_START + 0x200;
    return 0;
}

static int load_elf(const struct guest_mem *mem, int fd, off_t size, uint8_t *zero_page,
                    struct loaded_kernel *out, char *error, size_t error_len)
{
    Elf64_Ehdr eh;
    if (read_at(fd, &eh, sizeof(eh), 0) < 0 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phnum == 0 || eh.e_phnum > 64) {
        snprintf(error, error_len, "kernel: malformed ELF header");
        return -EINVAL;
    }
    out->end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (read_at(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) < 0) {
            snprintf(error, error_len, "kernel: truncated ELF program headers");
            return -EINVAL;
        }
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > (uint64_t)size ||
            ph.p_filesz > (uint64_t)size - ph.p_offset || ph.p_paddr < X86_HIMEM_START) {
            snprintf(error, error_len, "kernel: ELF segment %u lies outside the file or below 1 MiB", i);
            return -EINVAL;
        }
        int r = copy_to_guest(mem, fd, (off_t)ph.p_offset, ph.p_paddr, ph.p_filesz, error,
                              error_len, "kernel");
        if (r < 0)
            return r;
        /* .bss and friends: the memfd starts zeroed, but be explicit for reused memory. */
        uint8_t *tail = guest_mem_ptr(mem, ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz);
        if (!tail) {
            snprintf(error, error_len, "kernel does not fit in guest memory");
            return -ENOSPC;
        }
        memset(tail, 0, ph.p_memsz - ph.p_filesz);
        if (ph.p_paddr + ph.p_memsz > out->end)
            out->end = ph.p_paddr + ph.p_memsz;
    }
    if (out->end == 0) {
        snprintf(error, error_len, "kernel: ELF file has no loadable segment");
        return -EINVAL;
    }
    /* A vmlinux carries no setup header: give the kernel the fields it reads. */
    put16(zero_page + HDR_BOOT_FLAG, BOOT_FLAG);
    put32(zero_page + HDR_MAGIC, HDRS_MAGIC);
    put16(zero_page + HDR_VERSION, 0x020f);
    put32(zero_page + HDR_KERNEL_ALIGNMENT, 0x1000000);
    put32(zero_page + HDR_INITRD_ADDR_MAX, 0x7fffffff);
    put32(zero_page + HDR_CMDLINE_SIZE, X86_CMDLINE_MAX - 1);
    out->entry = eh.e_entry;
    return 0;
}

static int load_initrd(const struct guest_mem *mem, const char *path, uint64_t kernel_end,
                       uint8_t *zero_page, char *error, size_t error_len)
{
    off_t size;
    int fd = open_sized(path, &size);
    if (fd < 0) {
        snprintf(error, error_len, "initrd '%s': %s", path,
                 fd == -EINVAL ? "not a regular file" : strerror(-fd));
        return fd;
    }
    /* The highest page-aligned spot below both the kernel's limit and the end of low RAM,
     * as bootloaders do: it keeps the initrd clear of the kernel's own decompression. */
    uint64_t limit = get32(zero_page + HDR_INITRD_ADDR_MAX) + 1ULL;
    if (limit > mem->low_size)
        limit = mem->low_size;
    int r = -ENOSPC;
    if ((uint64_t)size <= limit) {
        uint64_t start = align_down(limit - (uint64_t)size, PAGE_SIZE);
        if (start >= align_up(kernel_end, PAGE_SIZE)) {
            r = copy_to_guest(mem, fd, 0, start, (uint64_t)size, error, error_len, "initrd");
            put32(zero_page + HDR_RAMDISK_IMAGE, (uint32_t)start);
            put32(zero_page + HDR_RAMDISK_SIZE, (uint32_t)size);
            put32(zero_page + BP_EXT_RAMDISK_IMAGE, (uint32_t)(start >> 32));
            put32(zero_page + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)size >> 32));
        }
    }
    if (r == -ENOSPC)
        snprintf(error, error_len,
                 "initrd '%s' (%llu bytes) does not fit in guest memory beside the kernel: "
                 "give the VM more memory", path, (unsigned long long)size);
    close(fd);
    return r;
}

static int load_cmdline(const struct guest_mem *mem, const char *cmdline, uint8_t *zero_page,
                        char *error, size_t error_len)
{
    const char *text = cmdline ? cmdline : "";
    size_t len = strlen(text) + 1;
    uint64_t limit = get32(zero_page + HDR_CMDLINE_SIZE) + 1ULL;
    if (len > limit || len > X86_CMDLINE_MAX) {
        snprintf(error, error_len, "cmdline: %zu bytes is longer than the kernel's limit of %llu",
                 len - 1, (unsigned long long)(limit - 1));
        return -E2BIG;
    }
    char *dst = guest_mem_ptr(mem, X86_CMDLINE_ADDR, len);
    if (!dst)
        return -EFAULT;
    memcpy(dst, text, len);
    put32(zero_page + HDR_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
    put32(zero_page + BP_EXT_CMD_LINE_PTR, 0);
    return 0;
}

static void add_e820(uint8_t *zero_page, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t n = zero_page[BP_E820_ENTRIES];
    if (n >= BP_E820_MAX || size == 0)
        return;
    uint8_t *entry = zero_page + BP_E820_TABLE + 20 * n;
    put64(entry, addr);
    put64(entry + 8, size);
    put32(entry + 16, type);
    zero_page[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

static void fill_e820(const struct guest_mem *mem, uint8_t *zero_page)
{
    add_e820(zero_page, 0, X86_EBDA_START, E820_RAM);
    /* EBDA, VGA hole and BIOS area: the ACPI tables live here. */
    add_e820(zero_page, X86_EBDA_START, X86_HIMEM_START - X86_EBDA_START, E820_RESERVED);
    add_e820(zero_page, X86_HIMEM_START, mem->low_size - X86_HIMEM_START, E820_RAM);
    /* PCI ECAM (MCFG): Linux uses MMCONFIG only if firmware reserved it in e820. */
    add_e820(zero_page, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, E820_RESERVED);
    add_e820(zero_page, mem->high_base, mem->size - mem->low_size, E820_RAM);
}

static int load_kernel(const struct guest_mem *mem, const char *path, uint8_t *zero_page,
                       struct loaded_kernel *kernel, char *error, size_t error_len)
{
    off_t size;
    int fd = open_sized(path, &size);
    if (fd < 0) {
        snprintf(error, error_len, "kernel '%s': %s", path,
                 fd == -EINVAL ? "not a regular file" : strerror(-fd));
        return fd;
    }
    uint8_t head[1024] = {0};
    size_t head_len = (size_t)size < sizeof(head) ? (size_t)size : sizeof(head);
    char reason[128];
    int r = read_at(fd, head, head_len, 0);
    enum kernel_format format = r < 0 ? KERNEL_FORMAT_UNKNOWN
                                      : kernel_format_detect(head, head_len, reason, sizeof(reason));
    if (format == KERNEL_FORMAT_BZIMAGE)
        r = load_bzimage(mem, fd, size, zero_page, kernel, error, error_len);
    else if (format == KERNEL_FORMAT_ELF)
        r = load_elf(mem, fd, size, zero_page, kernel, error, error_len);
    else {
        snprintf(error, error_len, "kernel '%s': not a bzImage or ELF vmlinux", path);
        r = -EINVAL;
    }
    close(fd);
    return r;
}

int x86_load_linux(const struct guest_mem *mem, const struct boot_spec *spec,
                   struct boot_entry *entry, char *error, size_t error_len)
{
    uint8_t *zero_page = guest_mem_ptr(mem, X86_BOOT_PARAMS_ADDR, BP_SIZE);
    if (!zero_page || mem->low_size < 2 * X86_HIMEM_START) {
        snprintf(error, error_len, "guest memory too small to boot");
        return -ENOSPC;
    }
    memset(zero_page, 0, BP_SIZE);
    struct loaded_kernel kernel;
    int r = load_kernel(mem, spec->kernel_path, zero_page, &kernel, error, error_len);
    if (r < 0)
        return r;
    if (kernel.end > mem->low_size) {
        snprintf(error, error_len, "kernel needs %llu MiB of memory to boot: give the VM more memory",
                 (unsigned long long)(kernel.end / X86_MiB + 1));
        return -ENOSPC;
    }
    zero_page[HDR_TYPE_OF_LOADER] = 0xff; /* "undefined" loader, as the protocol asks */
    zero_page[HDR_LOADFLAGS] |= CAN_USE_HEAP;
    put16(zero_page + HDR_HEAP_END_PTR, 0xfe00);
    if (spec->initrd_path) {
        r = load_initrd(mem, spec->initrd_path, kernel.end, zero_page, error, error_len);
        if (r < 0)
            return r;
    }
    r = load_cmdline(mem, spec->cmdline, zero_page, error, error_len);
    if (r < 0)
        return r;
    fill_e820(mem, zero_page);
    entry->rip = kernel.entry;
    entry->boot_params = X86_BOOT_PARAMS_ADDR;
    return 0;
}

void x86_set_acpi_rsdp(const struct guest_mem *mem, uint64_t rsdp)
{
    uint8_t *zero_page = guest_mem_ptr(mem, X86_BOOT_PARAMS_ADDR, BP_SIZE);
    if (zero_page)
        put64(zero_page + BP_ACPI_RSDP_ADDR, rsdp);
}
