/*
 * The bundled guest: a kernel and cove-agent's initramfs that `cove run` boots when the user
 * names none. scripts/setup.sh puts them next to the build (build/guest/), an installation
 * puts them in share/cove/ beside bin/; $COVE_KERNEL and $COVE_INITRD override both.
 *
 * The uncompressed ELF vmlinux is preferred to the bzImage: cove loads its segments straight
 * into guest RAM, where a bzImage makes the guest decompress itself first (XZ for the bundled
 * kernel), which is most of the time from start to the kernel's first line. The bzImage is
 * the fallback for an installation that ships only that.
 */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* In order of preference. */
static const char *const kernel_names[] = {"vmlinux", "bzImage"};
static const char *const initrd_names[] = {"initramfs.cpio.gz"};

/* Directories to look in, relative to the directory of the cove executable. */
static const char *const image_dirs[] = {
    "../share/cove", /* installed: PREFIX/bin/cove, PREFIX/share/cove/ */
    "../../guest",   /* the build tree: build/src/cli/cove, build/guest/ */
};

static int exe_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

/* The first image directory holding `name`, written as a path into out. */
static bool find_in_image_dirs(const char *name, char *out, size_t len)
{
    char dir[PATH_MAX];
    if (exe_dir(dir, sizeof(dir)) < 0)
        return false;
    for (size_t i = 0; i < sizeof(image_dirs) / sizeof(image_dirs[0]); i++) {
        int n = snprintf(out, len, "%s/%s/%s", dir, image_dirs[i], name);
        if (n > 0 && (size_t)n < len && access(out, R_OK) == 0)
            return true;
    }
    return false;
}

/* One bundled file: the environment variable, else the first of `names` in the image
 * directories (each name searched in every directory before the next name). */
static int find_image_file(const char *variable, const char *const *names, size_t name_count,
                           char *out, size_t len)
{
    const char *given = getenv(variable);
    if (given && given[0]) {
        snprintf(out, len, "%s", given);
        return 0;
    }
    for (size_t i = 0; i < name_count; i++)
        if (find_in_image_dirs(names[i], out, len))
            return 0;
    bool kernel = strcmp(variable, "COVE_KERNEL") == 0;
    fprintf(stderr,
            "cove: no bundled guest %s found (looked in share/cove/ and the build's guest/ "
            "beside the cove binary); run scripts/setup.sh, set $%s, or pass --%s\n",
            kernel ? "kernel (vmlinux or bzImage)" : names[0], variable,
            kernel ? "kernel" : "initrd");
    return -1;
}

int apply_default_image(cove_config *config, const struct run_options *opts)
{
    char path[PATH_MAX];
    if (!opts->kernel_given) {
        if (find_image_file("COVE_KERNEL", kernel_names,
                            sizeof(kernel_names) / sizeof(kernel_names[0]), path,
                            sizeof(path)) < 0 ||
            cove_config_set_kernel(config, path) < 0)
            return -1;
    }
    /* A command needs cove-agent; a console boot of the user's own kernel may need no initrd. */
    bool wants_initrd = !opts->kernel_given || opts->command_count > 0;
    if (!opts->initrd_given && wants_initrd) {
        if (find_image_file("COVE_INITRD", initrd_names, 1, path, sizeof(path)) < 0 ||
            cove_config_set_initrd(config, path) < 0)
            return -1;
    }
    return 0;
}
