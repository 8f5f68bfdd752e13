/* Configuration: setters, deep copy, and validation messages (their exact text is API). */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <cove/cove.h>

#include "config_internal.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)

/* Per-test scratch directory; everything made in it is removed afterwards. */
struct scratch {
    char dir[64];
    char path[256];
};

static int setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    snprintf(s->dir, sizeof(s->dir), "/tmp/cove-config-XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

/* Tests only make plain files and empty directories directly inside the scratch dir. */
static int teardown(void **state)
{
    struct scratch *s = *state;
    DIR *d = opendir(s->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (unlinkat(dirfd(d), e->d_name, 0) != 0)
                unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
        }
        closedir(d);
    }
    int r = rmdir(s->dir);
    free(s);
    return r;
}

/* The path of name inside the scratch dir (valid until the next call). */
static const char *path_of(struct scratch *s, const char *name)
{
    snprintf(s->path, sizeof(s->path), "%s/%s", s->dir, name);
    return s->path;
}

static const char *write_file(struct scratch *s, const char *name, const void *data, size_t len)
{
    const char *path = path_of(s, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* The smallest setup header the detector accepts: a 64-bit bzImage, boot protocol 2.15. */
static void make_bzimage(uint8_t *image, size_t len, uint16_t version)
{
    memset(image, 0, len);
    image[0x1f1] = 4;                  /* setup_sects */
    put16(image + 0x1fe, 0xaa55);      /* boot_flag */
    memcpy(image + 0x202, "HdrS", 4);  /* header magic */
    put16(image + 0x206, version);     /* protocol version */
    image[0x211] = 0x01;               /* loadflags: LOADED_HIGH */
    put16(image + 0x236, 0x01);        /* xloadflags: XLF_KERNEL_64 */
    put16(image + 0x238, 2048);        /* cmdline_size (low half) */
}

static const char *write_bzimage(struct scratch *s, const char *name)
{
    uint8_t image[4096];
    make_bzimage(image, sizeof(image), 0x020f);
    return write_file(s, name, image, sizeof(image));
}

static const char *write_elf(struct scratch *s, const char *name, uint16_t machine)
{
    struct {
        Elf64_Ehdr eh;
        Elf64_Phdr ph;
    } elf = {0};
    memcpy(elf.eh.e_ident, ELFMAG, SELFMAG);
    elf.eh.e_ident[EI_CLASS] = ELFCLASS64;
    elf.eh.e_ident[EI_DATA] = ELFDATA2LSB;
    elf.eh.e_ident[EI_VERSION] = EV_CURRENT;
    elf.eh.e_type = ET_EXEC;
    elf.eh.e_machine = machine;
    elf.eh.e_version = EV_CURRENT;
    elf.eh.e_entry = 0x1000000;
    elf.eh.e_phoff = sizeof(Elf64_Ehdr);
    elf.eh.e_ehsize = sizeof(Elf64_Ehdr);
    elf.eh.e_phentsize = sizeof(Elf64_Phdr);
    elf.eh.e_phnum = 1;
    elf.ph.p_type = PT_LOAD;
    elf.ph.p_paddr = elf.ph.p_vaddr = 0x1000000;
    return write_file(s, name, &elf, sizeof(elf));
}

/* A config that validates: a fake bzImage and the defaults. */
static cove_config *valid_config(struct scratch *s)
{
    cove_config *c = cove_config_new();
    assert_non_null(c);
    assert_int_equal(cove_config_set_kernel(c, write_bzimage(s, "bzImage")), 0);
    return c;
}

/* Validates c and checks it reports exactly the given messages, in order. */
static void expect_problems(const cove_config *c, size_t n, const char *const *expected)
{
    cove_problems p;
    size_t found = cove_config_validate(c, &p);
    for (size_t i = 0; i < p.count; i++)
        print_message("problem: %s\n", p.messages[i]);
    assert_int_equal(found, n);
    assert_int_equal(p.count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(p.messages[i], expected[i]);
    cove_problems_free(&p);
    assert_int_equal(p.count, 0);
    assert_null(p.messages);
    assert_int_equal(cove_config_validate(c, NULL), n);
}

static void expect_one(const cove_config *c, const char *expected)
{
    expect_problems(c, 1, &expected);
}

static void expect_valid(const cove_config *c)
{
    expect_problems(c, 0, NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    cove_config *c = cove_config_new();
    assert_non_null(c);
    assert_null(cove_config_kernel(c));
    assert_null(cove_config_initrd(c));
    assert_string_equal(cove_config_cmdline(c), "");
    assert_int_equal(cove_config_cpus(c), 1);
    assert_int_equal(cove_config_memory(c), 512 * MIB);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_NONE);
    assert_int_equal(cove_config_console_device(c), COVE_CONSOLE_DEVICE_SERIAL);
    assert_int_equal(cove_config_disk_count(c), 0);
    assert_null(cove_config_disk(c, 0, NULL));
    assert_false(cove_config_entropy(c));
    expect_one(c, "kernel: not set (give the path of a bzImage or vmlinux)");
    cove_config_free(c);
    cove_config_free(NULL);
}

static void test_setters(void **state)
{
    (void)state;
    cove_config *c = cove_config_new();
    char kernel[] = "/boot/vmlinuz";
    assert_int_equal(cove_config_set_kernel(c, kernel), 0);
    kernel[1] = 'X'; /* the config holds its own copy */
    assert_string_equal(cove_config_kernel(c), "/boot/vmlinuz");
    assert_int_equal(cove_config_set_kernel(c, NULL), -EINVAL);
    assert_int_equal(cove_config_set_kernel(c, ""), -EINVAL);
    assert_string_equal(cove_config_kernel(c), "/boot/vmlinuz");

    assert_int_equal(cove_config_set_initrd(c, "/boot/initrd"), 0);
    assert_string_equal(cove_config_initrd(c), "/boot/initrd");
    assert_int_equal(cove_config_set_initrd(c, NULL), 0);
    assert_null(cove_config_initrd(c));

    assert_int_equal(cove_config_set_cmdline(c, "console=ttyS0"), 0);
    assert_string_equal(cove_config_cmdline(c), "console=ttyS0");
    assert_int_equal(cove_config_set_cmdline(c, NULL), 0);
    assert_string_equal(cove_config_cmdline(c), "");

    cove_config_set_cpus(c, 4);
    cove_config_set_memory(c, 2 * MIB * 1024);
    assert_int_equal(cove_config_cpus(c), 4);
    assert_int_equal(cove_config_memory(c), 2 * MIB * 1024);

    cove_config_set_serial_stdio(c);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_STDIO);
    assert_int_equal(c->serial_in_fd, STDIN_FILENO);
    assert_int_equal(c->serial_out_fd, STDOUT_FILENO);
    assert_int_equal(cove_config_set_serial_file(c, NULL), -EINVAL);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_STDIO);
    assert_int_equal(cove_config_set_serial_file(c, "/tmp/serial.log"), 0);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_FILE);
    assert_string_equal(c->serial_path, "/tmp/serial.log");
    cove_config_set_serial_fds(c, -1, 7);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_FDS);
    assert_null(c->serial_path);
    assert_int_equal(c->serial_in_fd, -1);
    assert_int_equal(c->serial_out_fd, 7);
    cove_config_set_serial_none(c);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_NONE);
    cove_config_free(c);
}

static void test_boot_cache(void **state)
{
    (void)state;
    cove_config *c = cove_config_new();
    assert_null(cove_config_boot_cache(c)); /* off by default */
    assert_int_equal(cove_config_set_boot_cache(c, ""), -EINVAL);
    assert_int_equal(cove_config_set_boot_cache(c, "/cache/boot"), 0);
    assert_string_equal(cove_config_boot_cache(c), "/cache/boot");
    cove_config *copy = cove_config_copy(c);
    assert_non_null(copy);
    assert_int_equal(cove_config_set_boot_cache(c, NULL), 0); /* off again */
    assert_null(cove_config_boot_cache(c));
    assert_string_equal(cove_config_boot_cache(copy), "/cache/boot");
    cove_config_free(copy);
    cove_config_free(c);
}

static void test_copy_is_deep(void **state)
{
    (void)state;
    cove_config *c = cove_config_new();
    assert_int_equal(cove_config_set_kernel(c, "/k"), 0);
    assert_int_equal(cove_config_set_initrd(c, "/i"), 0);
    assert_int_equal(cove_config_set_cmdline(c, "quiet"), 0);
    assert_int_equal(cove_config_set_serial_file(c, "/s.log"), 0);
    cove_config_set_cpus(c, 2);
    cove_config_set_memory(c, 256 * MIB);
    cove_config_set_console_device(c, COVE_CONSOLE_DEVICE_VIRTIO);
    cove_config_set_entropy(c, true);
    const cove_disk_options ro = {.read_only = true, .cache = COVE_CACHE_NONE, .serial = "s0"};
    for (int i = 0; i < 5; i++) /* past the first allocation of the disk array */
        assert_int_equal(cove_config_add_disk(c, i == 0 ? "/d0" : "/dn", i == 0 ? &ro : NULL), i);

    cove_config *copy = cove_config_copy(c);
    assert_non_null(copy);
    assert_ptr_not_equal(copy->kernel_path, c->kernel_path);
    assert_ptr_not_equal(copy->serial_path, c->serial_path);
    assert_ptr_not_equal(copy->disks, c->disks);
    assert_ptr_not_equal(copy->disks[0].path, c->disks[0].path);
    assert_ptr_not_equal(copy->disks[0].serial, c->disks[0].serial);

    assert_int_equal(cove_config_set_kernel(c, "/other"), 0);
    assert_int_equal(cove_config_set_initrd(c, NULL), 0);
    assert_int_equal(cove_config_set_cmdline(c, "loud"), 0);
    cove_config_set_serial_none(c);
    cove_config_set_cpus(c, 8);
    cove_config_set_memory(c, 64 * MIB);
    cove_config_set_console_device(c, COVE_CONSOLE_DEVICE_SERIAL);
    cove_config_set_entropy(c, false);
    assert_int_equal(cove_config_add_disk(c, "/more", NULL), 5);
    cove_config_free(c);

    assert_int_equal(cove_config_console_device(copy), COVE_CONSOLE_DEVICE_VIRTIO);
    assert_true(cove_config_entropy(copy));
    assert_int_equal(cove_config_disk_count(copy), 5);
    cove_disk_options got;
    assert_string_equal(cove_config_disk(copy, 0, &got), "/d0");
    assert_true(got.read_only);
    assert_int_equal(got.cache, COVE_CACHE_NONE);
    assert_string_equal(got.serial, "s0");
    assert_string_equal(cove_config_disk(copy, 4, &got), "/dn");
    assert_false(got.read_only);
    assert_null(got.serial);
    assert_null(cove_config_disk(copy, 5, &got));
    assert_string_equal(cove_config_kernel(copy), "/k");
    assert_string_equal(cove_config_initrd(copy), "/i");
    assert_string_equal(cove_config_cmdline(copy), "quiet");
    assert_int_equal(cove_config_serial_kind(copy), COVE_CONSOLE_FILE);
    assert_string_equal(copy->serial_path, "/s.log");
    assert_int_equal(cove_config_cpus(copy), 2);
    assert_int_equal(cove_config_memory(copy), 256 * MIB);
    cove_config_free(copy);
    assert_null(cove_config_copy(NULL));
}

static void test_every_problem_at_once(void **state)
{
    struct scratch *s = *state;
    cove_config *c = cove_config_new();
    char kernel[256], initrd[256], msg_kernel[300], msg_initrd[300], msg_cpus[64];
    snprintf(kernel, sizeof(kernel), "%s", path_of(s, "no-kernel"));
    snprintf(initrd, sizeof(initrd), "%s", path_of(s, "no-initrd"));
    assert_int_equal(cove_config_set_kernel(c, kernel), 0);
    assert_int_equal(cove_config_set_initrd(c, initrd), 0);
    cove_config_set_memory(c, 64 * KIB);
    cove_config_set_cpus(c, 0);
    snprintf(msg_kernel, sizeof(msg_kernel), "kernel '%s': No such file or directory", kernel);
    snprintf(msg_initrd, sizeof(msg_initrd), "initrd '%s': No such file or directory", initrd);
    snprintf(msg_cpus, sizeof(msg_cpus), "cpus 0: must be between 1 and %u", cove_max_cpus());
    const char *expected[] = {msg_kernel, msg_initrd,
                              "memory 64 KiB is below the minimum of 32 MiB", msg_cpus};
    expect_problems(c, 4, expected);
    cove_config_free(c);
}

/* Sets the kernel to path and expects exactly "kernel '<path>': <what>". */
static void expect_kernel_problem(const char *path, const char *what)
{
    char path_copy[256], msg[512];
    snprintf(path_copy, sizeof(path_copy), "%s", path);
    snprintf(msg, sizeof(msg), "kernel '%s': %s", path_copy, what);
    cove_config *c = cove_config_new();
    assert_int_equal(cove_config_set_kernel(c, path_copy), 0);
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_kernel_not_a_kernel(void **state)
{
    struct scratch *s = *state;
    const char text[] = "#!/bin/sh\necho this is not a kernel\n";
    expect_kernel_problem(write_file(s, "text", text, sizeof(text) - 1),
                          "not a bzImage or ELF vmlinux");
    expect_kernel_problem(write_file(s, "empty", "", 0), "not a bzImage or ELF vmlinux");
    expect_kernel_problem(write_elf(s, "arm64", EM_AARCH64),
                          "not a bzImage or ELF vmlinux (ELF file, but not a 64-bit x86 "
                          "executable)");
    uint8_t old[4096];
    make_bzimage(old, sizeof(old), 0x0202);
    expect_kernel_problem(write_file(s, "old", old, sizeof(old)),
                          "not a bzImage or ELF vmlinux (bzImage boot protocol 2.02 is older "
                          "than 2.06)");
    assert_int_equal(mkdir(path_of(s, "dir"), 0700), 0);
    expect_kernel_problem(path_of(s, "dir"), "is a directory");
}

static void test_kernel_formats_accepted(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    expect_valid(c);
    assert_int_equal(cove_config_set_kernel(c, write_elf(s, "vmlinux", EM_X86_64)), 0);
    expect_valid(c);
    /* Shorter than the 4 KiB validation reads: only the setup header matters. */
    uint8_t image[1024];
    make_bzimage(image, sizeof(image), 0x0206);
    assert_int_equal(cove_config_set_kernel(c, write_file(s, "short", image, sizeof(image))), 0);
    expect_valid(c);
    cove_config_free(c);
}

static void test_initrd(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    char msg[512];
    assert_int_equal(cove_config_set_initrd(c, write_file(s, "initrd", "07070100", 8)), 0);
    expect_valid(c);

    assert_int_equal(cove_config_set_initrd(c, write_file(s, "empty", "", 0)), 0);
    snprintf(msg, sizeof(msg), "initrd '%s': empty file", path_of(s, "empty"));
    expect_one(c, msg);

    assert_int_equal(mkdir(path_of(s, "dir"), 0700), 0);
    assert_int_equal(cove_config_set_initrd(c, path_of(s, "dir")), 0);
    snprintf(msg, sizeof(msg), "initrd '%s': is a directory", path_of(s, "dir"));
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_memory_limits(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    uint64_t max = cove_max_memory();
    char limit[32], msg[256];
    cove_format_size(max, limit, sizeof(limit));
    const char *why = max < COVE_MEMORY_CAP ? "the host's RAM" : "cove's limit";

    cove_config_set_memory(c, cove_min_memory());
    expect_valid(c);
    cove_config_set_memory(c, max);
    expect_valid(c);

    /* Rounded, both would read the same; the message then gives exact bytes. */
    cove_config_set_memory(c, max + 4096);
    snprintf(msg, sizeof(msg), "memory %llu bytes is above the maximum of %llu bytes (%s)",
             (unsigned long long)(max + 4096), (unsigned long long)max, why);
    expect_one(c, msg);

    cove_config_set_memory(c, UINT64_C(2) << 40);
    snprintf(msg, sizeof(msg), "memory 2 TiB is above the maximum of %s (%s)", limit, why);
    expect_one(c, msg);

    cove_config_set_memory(c, 32 * MIB - 1);
    expect_one(c, "memory 31.99 MiB is below the minimum of 32 MiB");

    cove_config_set_memory(c, 64 * MIB + 100);
    expect_one(c, "memory 67108964 bytes is not a multiple of 4 KiB (the page size)");
    cove_config_free(c);
}

static void test_cpu_limits(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    unsigned max = cove_max_cpus();
    char msg[64];
    cove_config_set_cpus(c, max);
    expect_valid(c);
    cove_config_set_cpus(c, max + 1);
    snprintf(msg, sizeof(msg), "cpus %u: must be between 1 and %u", max + 1, max);
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_cmdline_length(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    char line[3001];
    memset(line, 'x', sizeof(line) - 1);
    line[3000] = '\0';
    assert_int_equal(cove_config_set_cmdline(c, line), 0);
    expect_one(c, "cmdline: 3000 bytes is longer than the kernel's limit of 2047");
    line[2047] = '\0';
    assert_int_equal(cove_config_set_cmdline(c, line), 0);
    expect_valid(c);
    cove_config_free(c);
}

static void test_serial_fds(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    int p[2];
    assert_int_equal(pipe(p), 0);
    char msg[64];

    cove_config_set_serial_fds(c, p[0], p[1]);
    expect_valid(c);
    cove_config_set_serial_fds(c, -1, p[1]);
    expect_valid(c);

    cove_config_set_serial_fds(c, -1, -1);
    expect_one(c, "serial: output descriptor -1 is not open");

    /* The write end cannot be read from and the read end cannot be written to. */
    cove_config_set_serial_fds(c, p[1], p[0]);
    const char *wrong_way[] = {NULL, NULL};
    char msg_in[64], msg_out[64];
    snprintf(msg_in, sizeof(msg_in), "serial: input descriptor %d is not open for reading", p[1]);
    snprintf(msg_out, sizeof(msg_out), "serial: output descriptor %d is not open for writing",
             p[0]);
    wrong_way[0] = msg_in;
    wrong_way[1] = msg_out;
    expect_problems(c, 2, wrong_way);

    int closed = dup(p[0]);
    assert_true(closed >= 0);
    close(closed);
    cove_config_set_serial_fds(c, closed, p[1]);
    snprintf(msg, sizeof(msg), "serial: input descriptor %d is not open", closed);
    expect_one(c, msg);

    close(p[0]);
    close(p[1]);
    cove_config_free(c);
}

static void test_serial_file(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    char msg[512];
    struct stat st;

    assert_int_equal(cove_config_set_serial_file(c, path_of(s, "serial.log")), 0);
    expect_valid(c);
    /* Validation must not create the log; the VM does that when it starts. */
    assert_int_equal(stat(path_of(s, "serial.log"), &st), -1);

    write_file(s, "existing.log", "old\n", 4);
    assert_int_equal(cove_config_set_serial_file(c, path_of(s, "existing.log")), 0);
    expect_valid(c);

    assert_int_equal(cove_config_set_serial_file(c, path_of(s, "no-dir/serial.log")), 0);
    snprintf(msg, sizeof(msg), "serial file '%s': No such file or directory",
             path_of(s, "no-dir/serial.log"));
    expect_one(c, msg);

    assert_int_equal(cove_config_set_serial_file(c, path_of(s, "existing.log/serial.log")), 0);
    snprintf(msg, sizeof(msg), "serial file '%s': Not a directory",
             path_of(s, "existing.log/serial.log"));
    expect_one(c, msg);

    assert_int_equal(mkdir(path_of(s, "dir"), 0700), 0);
    assert_int_equal(cove_config_set_serial_file(c, path_of(s, "dir")), 0);
    snprintf(msg, sizeof(msg), "serial file '%s': is a directory", path_of(s, "dir"));
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_device_setters(void **state)
{
    (void)state;
    cove_config *c = cove_config_new();
    cove_config_set_console_device(c, COVE_CONSOLE_DEVICE_VIRTIO);
    assert_int_equal(cove_config_console_device(c), COVE_CONSOLE_DEVICE_VIRTIO);
    /* The attachment and the device are independent choices. */
    cove_config_set_serial_stdio(c);
    assert_int_equal(cove_config_console_device(c), COVE_CONSOLE_DEVICE_VIRTIO);
    assert_int_equal(cove_config_serial_kind(c), COVE_CONSOLE_STDIO);
    cove_config_set_entropy(c, true);
    assert_true(cove_config_entropy(c));
    cove_config_set_entropy(c, false);
    assert_false(cove_config_entropy(c));

    assert_int_equal(cove_config_add_disk(c, NULL, NULL), -EINVAL);
    assert_int_equal(cove_config_add_disk(c, "", NULL), -EINVAL);
    char path[] = "/img/a.raw", serial[] = "SERIAL-1";
    cove_disk_options options = {.read_only = true, .cache = COVE_CACHE_NONE, .serial = serial};
    assert_int_equal(cove_config_add_disk(c, path, NULL), 0);
    assert_int_equal(cove_config_add_disk(c, path, &options), 1);
    options.serial = "";
    assert_int_equal(cove_config_add_disk(c, "/img/b.raw", &options), 2);
    path[1] = 'X'; /* the config holds its own copies */
    serial[0] = 'X';
    assert_int_equal(cove_config_disk_count(c), 3);

    cove_disk_options got = {.read_only = true, .serial = "junk"};
    assert_string_equal(cove_config_disk(c, 0, &got), "/img/a.raw");
    assert_false(got.read_only);
    assert_int_equal(got.cache, COVE_CACHE_HOST);
    assert_null(got.serial);
    assert_string_equal(cove_config_disk(c, 1, &got), "/img/a.raw");
    assert_true(got.read_only);
    assert_int_equal(got.cache, COVE_CACHE_NONE);
    assert_string_equal(got.serial, "SERIAL-1");
    assert_string_equal(cove_config_disk(c, 2, NULL), "/img/b.raw");
    assert_string_equal(cove_config_disk(c, 2, &got), "/img/b.raw");
    assert_null(got.serial); /* "" means none */
    assert_null(cove_config_disk(c, 3, &got));
    cove_config_free(c);
}

static void test_unknown_device_values(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    cove_config_set_console_device(c, (cove_console_device)7);
    expect_one(c, "console: unknown device 7");
    cove_config_set_console_device(c, COVE_CONSOLE_DEVICE_VIRTIO);
    expect_valid(c);
    cove_config_free(c);
}

/* ---- Disks ---- */

/* A sparse image of size bytes in the scratch dir. */
static const char *write_image(struct scratch *s, const char *name, off_t size, mode_t mode)
{
    const char *path = path_of(s, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
    return path;
}

/* A valid config with one disk at path (copied before path_of is called again). */
static cove_config *config_with_disk(struct scratch *s, const char *path,
                                     const cove_disk_options *options)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", path);
    cove_config *c = valid_config(s);
    assert_int_equal(cove_config_add_disk(c, copy, options), 0);
    return c;
}

/* Attaches path with the defaults and expects exactly "disk '<path>': <what>". */
static void expect_disk_problem(struct scratch *s, const char *path, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "disk '%s': %s", path, what);
    cove_config *c = config_with_disk(s, path, NULL);
    expect_one(c, msg);
    cove_config_free(c);
}

/* Everything about a file validation could change or create. */
struct snapshot {
    struct stat image, dir;
    size_t entries;
};

static struct snapshot take_snapshot(struct scratch *s, const char *image)
{
    struct snapshot snap;
    assert_int_equal(stat(image, &snap.image), 0);
    assert_int_equal(stat(s->dir, &snap.dir), 0);
    DIR *d = opendir(s->dir);
    assert_non_null(d);
    for (snap.entries = 0; readdir(d);)
        snap.entries++;
    closedir(d);
    return snap;
}

static void assert_same_stat(const struct stat *a, const struct stat *b)
{
    assert_int_equal(a->st_size, b->st_size);
    assert_int_equal(a->st_mode, b->st_mode);
    assert_int_equal(a->st_mtim.tv_sec, b->st_mtim.tv_sec);
    assert_int_equal(a->st_mtim.tv_nsec, b->st_mtim.tv_nsec);
    assert_int_equal(a->st_ctim.tv_sec, b->st_ctim.tv_sec);
    assert_int_equal(a->st_ctim.tv_nsec, b->st_ctim.tv_nsec);
}

static void test_disk_valid(void **state)
{
    struct scratch *s = *state;
    char image[256], other[256];
    snprintf(image, sizeof(image), "%s", write_image(s, "disk.img", 1 * MIB, 0600));
    snprintf(other, sizeof(other), "%s", write_image(s, "other.img", 512, 0600));
    cove_config *c = config_with_disk(s, image, NULL);
    cove_disk_options options = {.read_only = true, .cache = COVE_CACHE_NONE,
                                 .serial = "12345678901234567890"}; /* exactly 20 bytes */
    assert_int_equal(cove_config_add_disk(c, other, &options), 1);
    struct snapshot before = take_snapshot(s, image);
    expect_valid(c);

    /* Validation opened the image but changed and created nothing. */
    struct snapshot after = take_snapshot(s, image);
    assert_same_stat(&after.image, &before.image);
    assert_same_stat(&after.dir, &before.dir);
    assert_int_equal(after.entries, before.entries);
    cove_config_free(c);
}

static void test_disk_not_an_image(void **state)
{
    struct scratch *s = *state;
    char msg[512];
    expect_disk_problem(s, path_of(s, "missing.img"), "No such file or directory");
    assert_int_equal(mkdir(path_of(s, "dir"), 0700), 0);
    expect_disk_problem(s, path_of(s, "dir"), "is a directory");
    expect_disk_problem(s, "/dev/null", "not a regular file or block device");
    assert_int_equal(mkfifo(path_of(s, "fifo"), 0600), 0);
    expect_disk_problem(s, path_of(s, "fifo"), "not a regular file or block device");
    expect_disk_problem(s, write_image(s, "empty.img", 0, 0600), "empty image (0 bytes)");
    expect_disk_problem(s, write_image(s, "odd.img", 1000, 0600),
                        "size 1000 is not a multiple of 512 bytes");
    expect_disk_problem(s, write_image(s, "odd2.img", 1 * MIB + 1, 0600),
                        "size 1048577 is not a multiple of 512 bytes");

    /* Every disk's problems, in order, in one pass. */
    cove_config *c = valid_config(s);
    char missing[256], fifo[256], msg_fifo[300];
    snprintf(missing, sizeof(missing), "%s", path_of(s, "missing.img"));
    snprintf(fifo, sizeof(fifo), "%s", path_of(s, "fifo"));
    assert_int_equal(cove_config_add_disk(c, missing, NULL), 0);
    assert_int_equal(cove_config_add_disk(c, fifo, NULL), 1);
    snprintf(msg, sizeof(msg), "disk '%s': No such file or directory", missing);
    snprintf(msg_fifo, sizeof(msg_fifo), "disk '%s': not a regular file or block device", fifo);
    const char *expected[] = {msg, msg_fifo};
    expect_problems(c, 2, expected);
    cove_config_free(c);
}

static void test_disk_serial(void **state)
{
    struct scratch *s = *state;
    char image[256], msg[512];
    snprintf(image, sizeof(image), "%s", write_image(s, "disk.img", 4096, 0600));
    cove_disk_options options = {.serial = "123456789012345678901"};
    cove_config *c = config_with_disk(s, image, &options);
    snprintf(msg, sizeof(msg), "disk '%s': serial '123456789012345678901' is longer than 20 bytes",
             image);
    expect_one(c, msg);
    cove_config_free(c);

    /* Checked even when the image is missing: both problems at once. */
    options.serial = "a-serial-that-is-far-too-long";
    c = config_with_disk(s, path_of(s, "missing.img"), &options);
    char msg_missing[512];
    snprintf(msg_missing, sizeof(msg_missing), "disk '%s': No such file or directory",
             path_of(s, "missing.img"));
    snprintf(msg, sizeof(msg),
             "disk '%s': serial 'a-serial-that-is-far-too-long' is longer than 20 bytes",
             path_of(s, "missing.img"));
    const char *expected[] = {msg_missing, msg};
    expect_problems(c, 2, expected);
    cove_config_free(c);
}

static void test_disk_cache_mode(void **state)
{
    struct scratch *s = *state;
    char msg[512];
    cove_disk_options options = {.cache = (cove_cache_mode)9};
    cove_config *c = config_with_disk(s, write_image(s, "disk.img", 4096, 0600), &options);
    snprintf(msg, sizeof(msg), "disk '%s': unknown cache mode 9", path_of(s, "disk.img"));
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_disk_limit(void **state)
{
    struct scratch *s = *state;
    char image[256];
    snprintf(image, sizeof(image), "%s", write_image(s, "disk.img", 4096, 0600));
    /* Read-only, so sharing the one image is fine and only the count is wrong. */
    const cove_disk_options ro = {.read_only = true};
    cove_config *c = valid_config(s);
    for (int i = 0; i < COVE_DISK_MAX; i++)
        assert_int_equal(cove_config_add_disk(c, image, &ro), i);
    expect_valid(c);
    assert_int_equal(cove_config_add_disk(c, image, &ro), COVE_DISK_MAX);
    expect_one(c, "disks: 17 is more than cove's limit of 16");
    cove_config_free(c);
}

/*
 * Attaches a then b (names in the scratch dir, read-only as given) and expects b to be
 * reported as the same image as a when clash, else a valid config.
 */
static void expect_pair(struct scratch *s, const char *a, bool a_ro, const char *b, bool b_ro,
                        bool clash)
{
    char path_a[256], path_b[256], msg[1024];
    snprintf(path_a, sizeof(path_a), "%s", path_of(s, a));
    snprintf(path_b, sizeof(path_b), "%s", path_of(s, b));
    cove_config *c = valid_config(s);
    const cove_disk_options ro = {.read_only = a_ro}, ro_b = {.read_only = b_ro};
    assert_int_equal(cove_config_add_disk(c, path_a, &ro), 0);
    assert_int_equal(cove_config_add_disk(c, path_b, &ro_b), 1);
    snprintf(msg, sizeof(msg), "disk '%s': the same image as disk 0 '%s', attached read-write "
             "(attach both read-only)", path_b, path_a);
    if (clash)
        expect_one(c, msg);
    else
        expect_valid(c);
    cove_config_free(c);
}

static void test_disk_same_image(void **state)
{
    struct scratch *s = *state;
    char image[256];
    snprintf(image, sizeof(image), "%s", write_image(s, "disk.img", 4096, 0600));
    write_image(s, "other.img", 4096, 0600);
    assert_int_equal(symlink("disk.img", path_of(s, "symlink.img")), 0);
    assert_int_equal(link(image, path_of(s, "hardlink.img")), 0);
    assert_int_equal(mkdir(path_of(s, "sub"), 0700), 0);

    expect_pair(s, "disk.img", false, "disk.img", false, true);
    expect_pair(s, "disk.img", false, "symlink.img", false, true);
    expect_pair(s, "disk.img", false, "hardlink.img", false, true);
    expect_pair(s, "disk.img", false, "sub/../disk.img", false, true);
    /* One writer is enough to corrupt what the other reads. */
    expect_pair(s, "disk.img", true, "hardlink.img", false, true);
    expect_pair(s, "symlink.img", false, "disk.img", true, true);
    expect_pair(s, "disk.img", true, "symlink.img", true, false);
    expect_pair(s, "disk.img", false, "other.img", false, false);

    /* A third disk is compared with every one before it; one line per disk. */
    cove_config *c = valid_config(s);
    char other[256], hard[256], msg[1024];
    snprintf(other, sizeof(other), "%s", path_of(s, "other.img"));
    snprintf(hard, sizeof(hard), "%s", path_of(s, "hardlink.img"));
    assert_int_equal(cove_config_add_disk(c, other, NULL), 0);
    assert_int_equal(cove_config_add_disk(c, image, NULL), 1);
    assert_int_equal(cove_config_add_disk(c, hard, NULL), 2);
    assert_int_equal(cove_config_add_disk(c, image, NULL), 3);
    char msg3[1024];
    snprintf(msg, sizeof(msg), "disk '%s': the same image as disk 1 '%s', attached read-write "
             "(attach both read-only)", hard, image);
    snprintf(msg3, sizeof(msg3), "disk '%s': the same image as disk 1 '%s', attached "
             "read-write (attach both read-only)", image, image);
    const char *expected[] = {msg, msg3};
    expect_problems(c, 2, expected);
    cove_config_free(c);
}

/*
 * Whether the calling process could open path for writing: the ground truth the
 * "not writable" check has to agree with. Opening a regular file of the test's own and
 * closing it again changes nothing.
 */
static bool can_write(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/*
 * Drops every capability of the calling process. Then root, too, is bound by mode bits: it
 * is CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH that let it past them, not the uid. Dropping is
 * always allowed, needs no other user and works the same for a non-root test run.
 */
static int drop_capabilities(void)
{
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
    memset(none, 0, sizeof(none));
    return (int)syscall(SYS_capset, &header, none);
}

/*
 * Validates a one-disk config (path, read-write) in a child process without capabilities,
 * and expects exactly msg after the kernel-not-set problem. The child compares with plain
 * code, not cmocka, whose failure would unwind into a second copy of the test run.
 */
static void expect_disk_problem_unprivileged(const char *path, const char *msg)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cove_config *c = cove_config_new();
        cove_problems p;
        if (drop_capabilities() != 0 || !c || cove_config_add_disk(c, path, NULL) < 0)
            _exit(3);
        cove_config_validate(c, &p);
        int ok = p.count == 2 && strcmp(p.messages[1], msg) == 0;
        for (size_t i = 0; !ok && i < p.count; i++)
            fprintf(stderr, "problem: %s\n", p.messages[i]);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_disk_permissions(void **state)
{
    struct scratch *s = *state;
    char readonly[256], unreadable[256], msg[512], not_writable[512];
    snprintf(readonly, sizeof(readonly), "%s", write_image(s, "readonly.img", 4096, 0444));
    snprintf(unreadable, sizeof(unreadable), "%s", write_image(s, "unreadable.img", 4096, 0200));

    snprintf(not_writable, sizeof(not_writable),
             "disk '%s': not writable (attach it read-only with ,ro)", readonly);
    expect_disk_problem_unprivileged(readonly, not_writable);
    snprintf(msg, sizeof(msg), "disk '%s': Permission denied", unreadable);
    expect_disk_problem_unprivileged(unreadable, msg);

    /*
     * In this process (root or not), validation must say "not writable" exactly when the
     * kernel refuses the O_RDWR open the VM will do: for root, which may write a 0444 file,
     * the check stays quiet because the write would succeed, not because it is skipped.
     */
    cove_config *c = config_with_disk(s, readonly, NULL);
    if (can_write(readonly)) {
        print_message("note: this process may write a 0444 file (as root), so it is valid\n");
        expect_valid(c);
    } else {
        expect_one(c, not_writable);
    }
    cove_config_free(c);

    /* Read-only attachments never need write permission. */
    const cove_disk_options ro = {.read_only = true};
    c = config_with_disk(s, readonly, &ro);
    expect_valid(c);
    cove_config_free(c);
}

static void test_problems_free(void **state)
{
    (void)state;
    cove_problems p = {0};
    cove_problems_free(&p); /* empty is fine */
    cove_problems_free(NULL);
    cove_config *c = cove_config_new();
    cove_config_set_cpus(c, 0);
    assert_int_equal(cove_config_validate(c, &p), 2);
    cove_problems_free(&p);
    assert_int_equal(p.count, 0);
    assert_null(p.messages);
    cove_config_free(c);
}

static void test_vsock(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    char msg[512];
    uint64_t cid = 0;
    const char *path = "unset";

    assert_false(cove_config_vsock(c, &cid, &path));
    assert_int_equal(cove_config_set_vsock(c, 0, NULL), 0);
    assert_true(cove_config_vsock(c, &cid, &path));
    assert_int_equal(cid, COVE_VSOCK_MIN_CID); /* 0 picks the default */
    assert_null(path);
    expect_valid(c);

    assert_int_equal(cove_config_set_vsock(c, 7, path_of(s, "v.sock")), 0);
    assert_true(cove_config_vsock(c, &cid, &path));
    assert_int_equal(cid, 7);
    assert_string_equal(path, path_of(s, "v.sock"));
    expect_valid(c);
    /* Validation must not create the socket; the VM binds it when it starts. */
    struct stat st;
    assert_int_equal(lstat(path_of(s, "v.sock"), &st), -1);

    cove_config *copy = cove_config_copy(c);
    assert_int_equal(cove_config_set_vsock(c, 9, path_of(s, "other.sock")), 0);
    assert_true(cove_config_vsock(copy, &cid, &path));
    assert_int_equal(cid, 7);
    assert_string_equal(path, path_of(s, "v.sock"));
    cove_config_free(copy);

    assert_int_equal(cove_config_set_vsock(c, 3, ""), -EINVAL);

    assert_int_equal(cove_config_set_vsock(c, 2, NULL), 0);
    expect_one(c, "vsock: guest CID 2 is reserved or too large (use 3 to 4294967294)");
    assert_int_equal(cove_config_set_vsock(c, UINT64_C(1) << 32, NULL), 0);
    expect_one(c, "vsock: guest CID 4294967296 is reserved or too large (use 3 to 4294967294)");

    write_file(s, "taken.sock", "", 0);
    assert_int_equal(cove_config_set_vsock(c, 3, path_of(s, "taken.sock")), 0);
    snprintf(msg, sizeof(msg), "vsock socket '%s': already exists (remove it or pick another path)",
             path_of(s, "taken.sock"));
    expect_one(c, msg);

    assert_int_equal(cove_config_set_vsock(c, 3, path_of(s, "no-dir/v.sock")), 0);
    snprintf(msg, sizeof(msg), "vsock socket '%s': No such file or directory",
             path_of(s, "no-dir/v.sock"));
    expect_one(c, msg);

    char long_path[200];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    assert_int_equal(cove_config_set_vsock(c, 3, long_path), 0);
    snprintf(msg, sizeof(msg), "vsock socket '%s': longer than 95 bytes (use a shorter path)",
             long_path);
    expect_one(c, msg);
    cove_config_free(c);
}

static void test_shares(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    char msg[512];
    const char *dir = NULL;
    bool ro = true;

    assert_int_equal(cove_config_share_count(c), 0);
    assert_null(cove_config_share(c, 0, &dir, &ro));
    assert_int_equal(mkdir(path_of(s, "src"), 0700), 0);
    assert_int_equal(mkdir(path_of(s, "cache"), 0700), 0);
    assert_int_equal(cove_config_add_share(c, "job", path_of(s, "src"), false), 0);
    assert_int_equal(cove_config_add_share(c, "cache", path_of(s, "cache"), true), 1);
    assert_int_equal(cove_config_share_count(c), 2);
    assert_string_equal(cove_config_share(c, 1, &dir, &ro), "cache");
    assert_string_equal(dir, path_of(s, "cache"));
    assert_true(ro);
    assert_string_equal(cove_config_share(c, 0, NULL, &ro), "job");
    assert_false(ro);
    assert_int_equal(cove_config_share_cache(c, 0), COVE_SHARE_CACHE_AUTO);
    assert_int_equal(cove_config_set_share_cache(c, 1, COVE_SHARE_CACHE_NEVER), 0);
    assert_int_equal(cove_config_share_cache(c, 1), COVE_SHARE_CACHE_NEVER);
    assert_int_equal(cove_config_set_share_cache(c, 2, COVE_SHARE_CACHE_NEVER), -ENOENT);
    assert_int_equal(cove_config_set_share_cache(c, 0, (cove_share_cache)7), -EINVAL);
    assert_int_equal(cove_config_share_cache(c, 0), COVE_SHARE_CACHE_AUTO);
    expect_valid(c);

    assert_int_equal(cove_config_add_share(c, "", path_of(s, "src"), false), -EINVAL);
    assert_int_equal(cove_config_add_share(c, "x", "", false), -EINVAL);
    assert_int_equal(cove_config_add_share(c, NULL, path_of(s, "src"), false), -EINVAL);

    /* A deep copy: freeing the original leaves the copy's shares intact. */
    cove_config *copy = cove_config_copy(c);
    cove_config_free(c);
    assert_int_equal(cove_config_share_count(copy), 2);
    assert_string_equal(cove_config_share(copy, 0, &dir, NULL), "job");
    assert_string_equal(dir, path_of(s, "src"));
    assert_int_equal(cove_config_share_cache(copy, 1), COVE_SHARE_CACHE_NEVER);
    expect_valid(copy);
    cove_config_free(copy);

    c = valid_config(s);
    cove_config_add_share(c, "missing", path_of(s, "no-such-dir"), false);
    snprintf(msg, sizeof(msg), "share 'missing': directory '%s': No such file or directory",
             path_of(s, "no-such-dir"));
    expect_one(c, msg);
    cove_config_free(c);

    c = valid_config(s);
    write_file(s, "file", "x", 1);
    cove_config_add_share(c, "file", path_of(s, "file"), true);
    snprintf(msg, sizeof(msg), "share 'file': '%s' is not a directory", path_of(s, "file"));
    expect_one(c, msg);
    cove_config_free(c);

    c = valid_config(s);
    cove_config_add_share(c, "job", path_of(s, "src"), false);
    cove_config_add_share(c, "job", path_of(s, "cache"), true);
    expect_one(c, "share 'job': tag already used by share 0 (tags must differ)");
    cove_config_free(c);

    c = valid_config(s);
    const char *long_tag = "a-tag-of-thirty-seven-bytes-xxxxxxxxx";
    assert_int_equal(strlen(long_tag), COVE_SHARE_TAG_MAX + 1);
    cove_config_add_share(c, long_tag, path_of(s, "src"), false);
    snprintf(msg, sizeof(msg), "share '%s': tag is longer than 36 bytes", long_tag);
    expect_one(c, msg);
    cove_config_free(c);

    c = valid_config(s);
    for (int i = 0; i <= COVE_SHARE_MAX; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "t%d", i);
        cove_config_add_share(c, tag, path_of(s, "src"), true);
    }
    expect_one(c, "shares: 9 given, at most 8");
    cove_config_free(c);
}

static void test_network(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    cove_network_policy policy = COVE_POLICY_HOST_ONLY;
    assert_int_equal(cove_config_network(c, &policy), COVE_NETWORK_NONE);
    assert_int_equal(policy, COVE_POLICY_OPEN);

    const cove_port_forward web = {.host_port = 8080, .guest_port = 80};
    assert_int_equal(cove_config_add_port_forward(c, &web), 0);
    expect_one(c, "port forwards need NAT networking (cove_config_set_network)");
    assert_int_equal(cove_config_set_network(c, COVE_NETWORK_NAT, COVE_POLICY_HOST_ONLY, NULL), 0);
    expect_valid(c);
    assert_int_equal(cove_config_network(c, &policy), COVE_NETWORK_NAT);
    assert_int_equal(policy, COVE_POLICY_HOST_ONLY);
    assert_int_equal(cove_config_port_forward_count(c), 1);

    cove_config *copy = cove_config_copy(c);
    assert_int_equal(cove_config_port_forward_count(copy), 1);
    expect_valid(copy);
    cove_config_free(copy);

    /* The same host port twice, a bad address, a zero port, a multicast MAC. */
    assert_int_equal(cove_config_add_port_forward(c, &web), 1);
    expect_one(c, "port forward tcp 127.0.0.1:8080: given twice");
    cove_config_free(c);

    c = valid_config(s);
    cove_config_set_network(c, COVE_NETWORK_NAT, COVE_POLICY_OPEN, "01:00:5e:00:00:01");
    expect_one(c, "network: MAC '01:00:5e:00:00:01' is not a unicast aa:bb:cc:dd:ee:ff address");
    cove_config_set_network(c, COVE_NETWORK_NAT, COVE_POLICY_OPEN, "52:54:00:12:34:56");
    expect_valid(c);
    const cove_port_forward bad_addr = {.host_addr = "localhost", .host_port = 1, .guest_port = 2};
    cove_config_add_port_forward(c, &bad_addr);
    expect_one(c, "port forward tcp localhost:1: not an IPv4 address");
    cove_config_free(c);

    c = valid_config(s);
    cove_config_set_network(c, COVE_NETWORK_NAT, COVE_POLICY_OPEN, NULL);
    const cove_port_forward zero = {.udp = true, .host_addr = "0.0.0.0", .guest_port = 53};
    cove_config_add_port_forward(c, &zero);
    expect_one(c, "port forward udp 0.0.0.0:0 -> 53: ports must be 1 to 65535");
    cove_config_free(c);
}

/* A TAP attachment: recorded and copied; validation names a missing device, a bad name, an
 * interface that is no TAP (lo), and what only NAT has (forwards, host-only). */
static void test_network_tap(void **state)
{
    struct scratch *s = *state;
    cove_config *c = valid_config(s);
    assert_int_equal(cove_config_set_network_tap(c, NULL, NULL), -EINVAL);
    assert_int_equal(cove_config_set_network_tap(c, "", NULL), -EINVAL);
    assert_null(cove_config_network_tap(c));
    assert_int_equal(cove_config_set_network_tap(c, "cove-nosuch9", NULL), 0);
    cove_network_policy policy = COVE_POLICY_HOST_ONLY;
    assert_int_equal(cove_config_network(c, &policy), COVE_NETWORK_TAP);
    assert_int_equal(policy, COVE_POLICY_OPEN);
    assert_string_equal(cove_config_network_tap(c), "cove-nosuch9");
    expect_one(c, "tap 'cove-nosuch9': no such device (create it first: ip tuntap add dev "
                  "cove-nosuch9 mode tap [user USER])");
    cove_config *copy = cove_config_copy(c);
    assert_string_equal(cove_config_network_tap(copy), "cove-nosuch9");
    cove_config_free(copy);

    cove_config_set_network_tap(c, "lo", NULL);
    expect_one(c, "tap 'lo': not a TAP device (a TUN device or another kind of interface)");
    cove_config_set_network_tap(c, "much-too-long-name", NULL);
    expect_one(c, "tap 'much-too-long-name': not a device name (1 to 15 characters, none of "
                  "'/', ':' or spaces)");
    cove_config_set_network_tap(c, "../lo", NULL);
    expect_one(c, "tap '../lo': not a device name (1 to 15 characters, none of '/', ':' or "
                  "spaces)");

    /* Forwards and host-only are NAT's; a later NAT setting drops the name. */
    cove_config_set_network_tap(c, "lo", NULL);
    cove_config_set_network(c, COVE_NETWORK_TAP, COVE_POLICY_HOST_ONLY, NULL);
    const char *both[] = {
        "network: a TAP attachment needs a device name (cove_config_set_network_tap)",
        "network: the host-only policy applies to NAT only (a tap's traffic is the host's to "
        "filter)",
    };
    expect_problems(c, 2, both);
    cove_config_set_network(c, COVE_NETWORK_NAT, COVE_POLICY_OPEN, NULL);
    assert_null(cove_config_network_tap(c));
    expect_valid(c);
    cove_config_set_network_tap(c, "lo", NULL);
    const cove_port_forward web = {.host_port = 8080, .guest_port = 80};
    cove_config_add_port_forward(c, &web);
    const char *forward[] = {
        "tap 'lo': not a TAP device (a TUN device or another kind of interface)",
        "port forwards need NAT networking (cove_config_set_network)",
    };
    expect_problems(c, 2, forward);
    cove_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_setters),
        cmocka_unit_test(test_copy_is_deep),
        cmocka_unit_test(test_boot_cache),
        cmocka_unit_test(test_problems_free),
        cmocka_unit_test_setup_teardown(test_every_problem_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_not_a_kernel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_formats_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_file, setup, teardown),
        cmocka_unit_test(test_device_setters),
        cmocka_unit_test_setup_teardown(test_unknown_device_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_not_an_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_cache_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_same_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vsock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_network_tap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
