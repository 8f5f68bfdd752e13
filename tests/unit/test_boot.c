/* The x86 Linux loaders: zero page contents, placement, and refusal of malformed kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/layout.h"
#include "guest_mem.h"

#define MEM_SIZE (64 * X86_MiB)

struct fixture {
    struct guest_mem mem;
    char dir[64];
    char kernel[128];
    char initrd[128];
};

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A bzImage with 1 setup sector... plus the boot sector, and pm_size bytes of "kernel". */
static size_t make_bzimage(uint8_t *buf, size_t pm_size, uint32_t init_size)
{
    size_t setup = 2 * 512;
    memset(buf, 0, setup + pm_size);
    buf[0x1f1] = 1; /* setup_sects */
    wr16(buf + 0x1fe, 0xaa55);
    buf[0x201] = 0x66; /* jump: header ends at 0x268 */
    wr32(buf + 0x202, 0x53726448);
    wr16(buf + 0x206, 0x020f);
    buf[0x211] = 0x01; /* LOADED_HIGH */
    wr32(buf + 0x22c, 0x7fffffff);
    wr32(buf + 0x230, 0x200000);
    wr16(buf + 0x236, 0x1); /* XLF_KERNEL_64 */
    wr32(buf + 0x238, 2047);
    wr64(buf + 0x258, 0x1000000);
    wr32(buf + 0x260, init_size);
    for (size_t i = 0; i < pm_size; i++)
        buf[setup + i] = (uint8_t)(i * 7 + 1);
    return setup + pm_size;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_int_equal(guest_mem_create(&f->mem, MEM_SIZE, X86_PCI_HOLE_START, X86_HIGH_RAM_START), 0);
    strcpy(f->dir, "/tmp/cove-test-boot-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
    snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->kernel);
    unlink(f->initrd);
    rmdir(f->dir);
    guest_mem_destroy(&f->mem);
    free(f);
    return 0;
}

static void test_bzimage_zero_page(void **state)
{
    struct fixture *f = *state;
    static uint8_t image[1024 + 8192];
    size_t len = make_bzimage(image, 8192, 4 * X86_MiB);
    write_file(f->kernel, image, len);
    uint8_t initrd[5000];
    memset(initrd, 0xab, sizeof(initrd));
    write_file(f->initrd, initrd, sizeof(initrd));

    struct boot_spec spec = {f->kernel, f->initrd, "console=ttyS0 quiet"};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), 0);
    assert_int_equal(entry.rip, X86_HIMEM_START + 0x200);
    assert_int_equal(entry.boot_params, X86_BOOT_PARAMS_ADDR);

    uint8_t *zp = guest_mem_ptr(&f->mem, X86_BOOT_PARAMS_ADDR, 4096);
    assert_int_equal(rd32(zp + 0x202), 0x53726448);
    assert_int_equal(zp[0x210], 0xff); /* type_of_loader */
    assert_true(zp[0x211] & 0x80);     /* CAN_USE_HEAP */
    /* The protected-mode part landed at 1 MiB, byte for byte. */
    assert_memory_equal(guest_mem_ptr(&f->mem, X86_HIMEM_START, 8192), image + 1024, 8192);
    /* Command line. */
    assert_int_equal(rd32(zp + 0x228), X86_CMDLINE_ADDR);
    assert_string_equal((char *)guest_mem_ptr(&f->mem, X86_CMDLINE_ADDR, 20), "console=ttyS0 quiet");
    /* Initrd: page aligned, at the top of RAM, above the kernel's decompression area. */
    uint32_t initrd_at = rd32(zp + 0x218);
    assert_int_equal(rd32(zp + 0x21c), sizeof(initrd));
    assert_int_equal(initrd_at % 4096, 0);
    assert_true(initrd_at + sizeof(initrd) <= MEM_SIZE);
    assert_true(initrd_at >= 0x1000000 + 4 * X86_MiB);
    assert_memory_equal(guest_mem_ptr(&f->mem, initrd_at, sizeof(initrd)), initrd, sizeof(initrd));
    /* e820: low RAM, the reserved BIOS area, RAM from 1 MiB to the end, reserved PCI ECAM. */
    assert_int_equal(zp[0x1e8], 4);
    uint8_t *e = zp + 0x2d0;
    assert_int_equal(rd64(e), 0);
    assert_int_equal(rd32(e + 16), 1);
    assert_int_equal(rd32(e + 20 + 16), 2);
    assert_int_equal(rd64(e + 40), X86_HIMEM_START);
    assert_int_equal(rd64(e + 40) + rd64(e + 48), MEM_SIZE);
    assert_int_equal(rd32(e + 40 + 16), 1);
    assert_int_equal(rd64(e + 60), X86_PCI_ECAM_BASE);
    assert_int_equal(rd64(e + 68), X86_PCI_ECAM_SIZE);
    assert_int_equal(rd32(e + 60 + 16), 2);
}

static void test_cmdline_too_long(void **state)
{
    struct fixture *f = *state;
    static uint8_t image[1024 + 4096];
    write_file(f->kernel, image, make_bzimage(image, 4096, X86_MiB));
    char cmdline[3000];
    memset(cmdline, 'x', sizeof(cmdline) - 1);
    cmdline[sizeof(cmdline) - 1] = '\0';
    struct boot_spec spec = {f->kernel, NULL, cmdline};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), -E2BIG);
    assert_non_null(strstr(error, "2999 bytes is longer than the kernel's limit of 2047"));
}

static void test_kernel_needs_more_memory(void **state)
{
    struct fixture *f = *state;
    static uint8_t image[1024 + 4096];
    /* init_size beyond the 64 MiB of RAM: the decompressed kernel cannot fit. */
    write_file(f->kernel, image, make_bzimage(image, 4096, 128 * X86_MiB));
    struct boot_spec spec = {f->kernel, NULL, NULL};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), -ENOSPC);
    assert_non_null(strstr(error, "give the VM more memory"));
}

static void test_initrd_too_big(void **state)
{
    struct fixture *f = *state;
    static uint8_t image[1024 + 4096];
    write_file(f->kernel, image, make_bzimage(image, 4096, 16 * X86_MiB));
    /* 40 MiB of initrd cannot sit above a kernel that runs up to 32 MiB in 64 MiB of RAM. */
    FILE *fp = fopen(f->initrd, "wb");
    assert_int_equal(ftruncate(fileno(fp), 40 * X86_MiB), 0);
    fclose(fp);
    struct boot_spec spec = {f->kernel, f->initrd, NULL};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), -ENOSPC);
    assert_non_null(strstr(error, "does not fit in guest memory beside the kernel"));
}

static size_t make_elf(uint8_t *buf, uint64_t paddr, uint64_t filesz, uint64_t memsz, uint64_t offset)
{
    memset(buf, 0, 4096);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_entry = paddr + 0x40;
    eh->e_phoff = sizeof(*eh);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 1;
    Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));
    ph->p_type = PT_LOAD;
    ph->p_offset = offset;
    ph->p_paddr = paddr;
    ph->p_filesz = filesz;
    ph->p_memsz = memsz;
    for (size_t i = 1024; i < 4096; i++)
        buf[i] = (uint8_t)i;
    return 4096;
}

static void test_elf_segments(void **state)
{
    struct fixture *f = *state;
    uint8_t elf[4096];
    write_file(f->kernel, elf, make_elf(elf, 0x1000000, 3072, 8192, 1024));
    uint8_t *dirty = guest_mem_ptr(&f->mem, 0x1000000 + 3072, 8192 - 3072);
    memset(dirty, 0x5a, 8192 - 3072);
    struct boot_spec spec = {f->kernel, NULL, "x"};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), 0);
    assert_int_equal(entry.rip, 0x1000040);
    assert_memory_equal(guest_mem_ptr(&f->mem, 0x1000000, 3072), elf + 1024, 3072);
    uint8_t zeros[8192 - 3072] = {0};
    assert_memory_equal(dirty, zeros, sizeof(zeros)); /* .bss cleared */
    uint8_t *zp = guest_mem_ptr(&f->mem, X86_BOOT_PARAMS_ADDR, 4096);
    assert_int_equal(rd32(zp + 0x202), 0x53726448); /* synthesised setup header */
}

static void test_elf_segment_outside_file(void **state)
{
    struct fixture *f = *state;
    uint8_t elf[4096];
    write_file(f->kernel, elf, make_elf(elf, 0x1000000, 100000, 100000, 1024));
    struct boot_spec spec = {f->kernel, NULL, NULL};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), -EINVAL);
    assert_non_null(strstr(error, "outside the file"));
}

static void test_elf_segment_outside_memory(void **state)
{
    struct fixture *f = *state;
    uint8_t elf[4096];
    write_file(f->kernel, elf, make_elf(elf, 0x7ffff000, 3072, 3072, 1024));
    struct boot_spec spec = {f->kernel, NULL, NULL};
    struct boot_entry entry;
    char error[256] = "";
    assert_int_equal(x86_load_linux(&f->mem, &spec, &entry, error, sizeof(error)), -ENOSPC);
}

static void test_detect(void **state)
{
    (void)state;
    static uint8_t image[1024 + 4096];
    char reason[128];
    make_bzimage(image, 4096, X86_MiB);
    assert_int_equal(kernel_format_detect(image, 1024, reason, sizeof(reason)), KERNEL_FORMAT_BZIMAGE);
    wr16(image + 0x236, 0); /* no 64-bit entry */
    assert_int_equal(kernel_format_detect(image, 1024, reason, sizeof(reason)), KERNEL_FORMAT_UNKNOWN);
    assert_non_null(strstr(reason, "64-bit"));
    uint8_t text[1024];
    memset(text, 'a', sizeof(text));
    assert_int_equal(kernel_format_detect(text, sizeof(text), reason, sizeof(reason)), KERNEL_FORMAT_UNKNOWN);
    assert_int_equal(kernel_format_detect(text, 3, reason, sizeof(reason)), KERNEL_FORMAT_UNKNOWN);
    uint8_t elf[4096];
    make_elf(elf, 0x1000000, 10, 10, 1024);
    assert_int_equal(kernel_format_detect(elf, sizeof(elf), reason, sizeof(reason)), KERNEL_FORMAT_ELF);
}

static void test_guest_mem_bounds(void **state)
{
    struct fixture *f = *state;
    assert_non_null(guest_mem_ptr(&f->mem, 0, MEM_SIZE));
    assert_null(guest_mem_ptr(&f->mem, 0, MEM_SIZE + 1));
    assert_null(guest_mem_ptr(&f->mem, MEM_SIZE - 1, 2));
    assert_null(guest_mem_ptr(&f->mem, UINT64_MAX, 2));
    assert_null(guest_mem_ptr(&f->mem, 1, UINT64_MAX));
    assert_null(guest_mem_ptr(&f->mem, X86_HIGH_RAM_START, 1)); /* no high RAM at 64 MiB */
}

static void test_guest_mem_split(void **state)
{
    (void)state;
    struct guest_mem mem;
    /* Shrink the "hole" so a 4 MiB memfd splits: 1 MiB low, 3 MiB high at 16 MiB. */
    assert_int_equal(guest_mem_create(&mem, 4 * X86_MiB, X86_MiB, 16 * X86_MiB), 0);
    assert_int_equal(mem.low_size, X86_MiB);
    uint8_t *low_end = guest_mem_ptr(&mem, X86_MiB - 1, 1);
    uint8_t *high = guest_mem_ptr(&mem, 16 * X86_MiB, 1);
    assert_non_null(low_end);
    assert_ptr_equal(high, low_end + 1); /* back to back in the memfd */
    assert_null(guest_mem_ptr(&mem, X86_MiB, 1));               /* in the hole */
    assert_null(guest_mem_ptr(&mem, X86_MiB - 1, 2));           /* crosses into the hole */
    assert_non_null(guest_mem_ptr(&mem, 16 * X86_MiB, 3 * X86_MiB));
    assert_null(guest_mem_ptr(&mem, 16 * X86_MiB, 3 * X86_MiB + 1));
    guest_mem_destroy(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bzimage_zero_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_needs_more_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_segment_outside_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_segment_outside_memory, setup, teardown),
        cmocka_unit_test(test_detect),
        cmocka_unit_test_setup_teardown(test_guest_mem_bounds, setup, teardown),
        cmocka_unit_test(test_guest_mem_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
