/*
 * cove: the command-line front end. It only parses arguments, talks to libcove and maps the
 * outcome to an exit status; every behaviour lives in the library.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>


static void usage(FILE *out)
{
    fprintf(out,
            "usage: cove run [options] [--] CMD [ARG...]   run CMD in a fresh VM\n"
            "       cove run [options]                     boot a VM on the console\n"
            "       cove limits\n"
            "       cove virtiofsd --socket-path PATH --shared-dir DIR [--readonly]\n"
            "                      [--cache MODE]   serve DIR to another VMM (vhost-user-fs)\n"
            "       cove --help | --version\n"
            "\n"
            "run options:\n"
            "  --kernel PATH        bzImage or ELF vmlinux to boot (default: the bundled one)\n"
            "  --initrd PATH        initial ramdisk (default: the bundled cove-agent initramfs)\n"
            "  --cmdline STRING     kernel command line (default: " DEFAULT_CMDLINE ")\n"
            "  --cpus N             number of vCPUs (default 1)\n"
            "  --memory SIZE        guest memory, e.g. 512M or 2G (default 512M)\n"
            "  --console DEVICE     console device: serial (16550A on COM1, default; guest\n"
            "                       console=ttyS0) or hvc (virtio-console; guest console=hvc0)\n"
            "  --serial KIND        where the console goes: stdio (default), none, or file:PATH\n"
            "  --disk PATH[,ro][,cache=none|host][,serial=ID]\n"
            "                       attach a raw disk image or block device (virtio-blk);\n"
            "                       repeatable, at most 16. ro: read-only; cache=none: O_DIRECT,\n"
            "                       cache=host: page cache (default); serial=ID: up to 20 bytes.\n"
            "                       Write a comma in PATH or ID as ,,\n"
            "  --share HOST_DIR:GUEST_PATH[:ro][:cache=MODE]\n"
            "                       share a host directory (virtio-fs); cove-agent mounts it\n"
            "                       at GUEST_PATH. ro: read-only. cache=auto (default: data\n"
            "                       cached until the next open, names 1 s), never (direct I/O,\n"
            "                       host changes seen at once) or always (kept: trees the host\n"
            "                       leaves alone). Repeatable, at most 8\n"
            "  --net KIND           nat (user-mode NAT; the default with a command), host-only\n"
            "                       (NAT that reaches only the host, at 10.0.2.2), tap:NAME (an\n"
            "                       existing TAP device; the guest's eth0 is up, unaddressed) or none\n"
            "  -p, --publish [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]\n"
            "                       forward a host port (127.0.0.1 unless HOST_IP) to the guest\n"
            "  --rng, --no-rng      virtio-rng entropy device (default on here, unlike in\n"
            "                       libcove: a CI guest needs entropy at boot)\n"
            "  --nested             nested virtualization: the guest sees VMX/SVM and can run\n"
            "                       KVM (off by default; needs a host KVM with nested=1)\n"
            "  --boot-timer         report when the guest's init signalled boot-complete\n"
            "  --boot-cache DIR     keep boot snapshots in DIR (default with a command:\n"
            "                       $XDG_CACHE_HOME/cove/boot or ~/.cache/cove/boot): a\n"
            "                       configuration's first run saves its booted guest, later\n"
            "                       runs restore it instead of booting (no disks or shares)\n"
            "  --no-boot-cache      always boot afresh, save nothing\n"
            "\n"
            "with a command:\n"
            "  -i, --interactive    send stdin to CMD (otherwise CMD reads end-of-file)\n"
            "  -t, --tty            run CMD on a terminal (output all on stdout)\n"
            "  -e, --env NAME=VALUE set a variable for CMD; NAME alone takes ours; repeatable\n"
            "  --secret NAME=@FILE  set NAME to FILE's content (one trailing newline dropped);\n"
            "  --secret NAME        or to our $NAME. Secrets reach CMD over vsock only: never a\n"
            "                       command line, the image, or a log\n"
            "  -w, --workdir DIR    CMD's working directory in the guest (default /)\n"
            "  -u, --user UID[:GID] run CMD as these numeric ids (default root)\n"
            "  --timeout DURATION   stop the VM after DURATION (e.g. 90, 60s, 5m, 1h, 500ms)\n"
            "\n"
            "exit status without a command: 0 guest powered off or rebooted; 1 guest failure;\n"
            "2 bad usage or configuration; 3 host failure; 128+N stopped by signal N.\n"
            "With a command: CMD's status (128+N when it died of signal N); 124 --timeout;\n"
            "125 cove itself failed; 126 CMD cannot run; 127 CMD not found\n");
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse_cpus(const char *text, unsigned *cpus)
{
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || value > UINT_MAX) {
        fprintf(stderr, "cove: --cpus '%s': not a whole number\n", text);
        return -1;
    }
    *cpus = (unsigned)value;
    return 0;
}

static int parse_serial(cove_config *config, const char *text)
{
    if (strcmp(text, "stdio") == 0) {
        cove_config_set_serial_stdio(config);
        return 0;
    }
    if (strcmp(text, "none") == 0) {
        cove_config_set_serial_none(config);
        return 0;
    }
    if (strncmp(text, "file:", 5) == 0 && text[5]) {
        if (cove_config_set_serial_file(config, text + 5) == 0)
            return 0;
    }
    fprintf(stderr, "cove: --serial '%s': use stdio, none or file:PATH\n", text);
    return -1;
}

static int parse_console(cove_config *config, const char *text)
{
    if (strcmp(text, "serial") == 0)
        cove_config_set_console_device(config, COVE_CONSOLE_DEVICE_SERIAL);
    else if (strcmp(text, "hvc") == 0)
        cove_config_set_console_device(config, COVE_CONSOLE_DEVICE_VIRTIO);
    else {
        fprintf(stderr, "cove: --console '%s': use serial or hvc\n", text);
        return -1;
    }
    return 0;
}

/*
 * Copies a --disk spec into fields, ending each comma-separated field with a NUL; ",," is a
 * comma inside a field. fields has room for strlen(spec) + 1 bytes. Returns the field count.
 */
static size_t split_fields(const char *spec, char *fields)
{
    size_t count = 1;
    for (; *spec; spec++) {
        if (spec[0] == ',' && spec[1] == ',') {
            *fields++ = ',';
            spec++;
        } else if (spec[0] == ',') {
            *fields++ = '\0';
            count++;
        } else {
            *fields++ = *spec;
        }
    }
    *fields = '\0';
    return count;
}

/* One sub-option of --disk SPEC into options (options->serial may then point into field). */
static int parse_disk_option(const char *spec, const char *field, cove_disk_options *options)
{
    if (strcmp(field, "ro") == 0)
        options->read_only = true;
    else if (strcmp(field, "cache=host") == 0)
        options->cache = COVE_CACHE_HOST;
    else if (strcmp(field, "cache=none") == 0)
        options->cache = COVE_CACHE_NONE;
    else if (strncmp(field, "serial=", 7) == 0)
        options->serial = field + 7;
    else {
        fprintf(stderr, "cove: --disk '%s': unknown option '%s' (use ro, cache=none|host, "
                "serial=ID)\n", spec, field);
        return -1;
    }
    return 0;
}

static int add_disk(cove_config *config, const char *spec, const char *path,
                    const cove_disk_options *options)
{
    int index = cove_config_add_disk(config, path, options);
    if (index == -EINVAL)
        fprintf(stderr, "cove: --disk '%s': no image path (use PATH[,ro][,cache=none|host]"
                "[,serial=ID])\n", spec);
    else if (index < 0)
        fprintf(stderr, "cove: --disk '%s': %s\n", spec, strerror(-index));
    return index < 0 ? -1 : 0;
}

/* --disk PATH[,ro][,cache=none|host][,serial=ID]; the image itself is checked by validation. */
static int parse_disk(cove_config *config, const char *spec)
{
    char *fields = malloc(strlen(spec) + 1);
    if (!fields) {
        fprintf(stderr, "cove: out of memory\n");
        return -1;
    }
    size_t count = split_fields(spec, fields);
    cove_disk_options options = {.cache = COVE_CACHE_HOST};
    const char *field = fields;
    int r = 0;
    for (size_t i = 1; i < count && r == 0; i++) {
        field += strlen(field) + 1;
        r = parse_disk_option(spec, field, &options);
    }
    if (r == 0)
        r = add_disk(config, spec, fields, &options);
    free(fields);
    return r;
}


static int apply_option(cove_config *config, struct run_options *opts, int opt, const char *arg)
{
    uint64_t bytes;
    unsigned cpus;
    switch (opt) {
    case OPT_KERNEL:
        opts->kernel_given = true;
        return cove_config_set_kernel(config, arg) == 0 ? 0 : -1;
    case OPT_INITRD:
        opts->initrd_given = true;
        return cove_config_set_initrd(config, arg) == 0 ? 0 : -1;
    case OPT_CMDLINE:
        opts->cmdline_given = true;
        return cove_config_set_cmdline(config, arg) == 0 ? 0 : -1;
    case OPT_CPUS:
        if (parse_cpus(arg, &cpus) < 0)
            return -1;
        cove_config_set_cpus(config, cpus);
        return 0;
    case OPT_MEMORY:
        if (cove_parse_size(arg, &bytes) < 0) {
            fprintf(stderr, "cove: --memory '%s': not a size (use e.g. 512M or 2G)\n", arg);
            return -1;
        }
        cove_config_set_memory(config, bytes);
        return 0;
    case OPT_CONSOLE:
        return parse_console(config, arg);
    case OPT_SERIAL:
        opts->serial_given = true;
        return parse_serial(config, arg);
    case OPT_DISK:
        return parse_disk(config, arg);
    case OPT_SHARE:
        return parse_share(config, opts, arg);
    case OPT_NET:
        return parse_net(config, opts, arg);
    case OPT_PUBLISH:
    case 'p':
        return parse_publish(config, arg);
    case OPT_RNG:
    case OPT_NO_RNG:
        cove_config_set_entropy(config, opt == OPT_RNG);
        return 0;
    case OPT_NESTED:
        cove_config_set_nested_virtualization(config, true);
        return 0;
    case OPT_BOOT_TIMER:
        opts->boot_timer = true;
        return 0;
    case OPT_BOOT_CACHE:
        opts->boot_cache = arg;
        opts->no_boot_cache = false;
        return 0;
    case OPT_NO_BOOT_CACHE:
        opts->no_boot_cache = true;
        return 0;
    default:
        return apply_command_option(opts, opt, arg);
    }
}

static int parse_run_args(int argc, char **argv, cove_config *config, struct run_options *opts)
{
    static const struct option long_options[] = {
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"serial", required_argument, NULL, OPT_SERIAL},
        {"disk", required_argument, NULL, OPT_DISK},
        {"rng", no_argument, NULL, OPT_RNG},
        {"no-rng", no_argument, NULL, OPT_NO_RNG},
        {"nested", no_argument, NULL, OPT_NESTED},
        {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
        {"boot-cache", required_argument, NULL, OPT_BOOT_CACHE},
        {"no-boot-cache", no_argument, NULL, OPT_NO_BOOT_CACHE},
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        {"env", required_argument, NULL, 'e'},
        {"secret", required_argument, NULL, OPT_SECRET},
        {"workdir", required_argument, NULL, 'w'},
        {"user", required_argument, NULL, 'u'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"share", required_argument, NULL, OPT_SHARE},
        {"net", required_argument, NULL, OPT_NET},
        {"publish", required_argument, NULL, OPT_PUBLISH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    bool ok = true;
    /* "+": the first word that is not an option starts the command, as with docker run. */
    while ((opt = getopt_long(argc, argv, "+:hite:w:u:p:", long_options, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (opt == ':' || opt == '?') {
            fprintf(stderr, opt == ':' ? "cove: option '%s' needs a value (see cove --help)\n"
                                       : "cove: unknown option '%s' (see cove --help)\n",
                    argv[optind - 1]);
            ok = false;
            continue;
        }
        if (apply_option(config, opts, opt, optarg) < 0)
            ok = false;
    }
    opts->command = argv + optind;
    opts->command_count = argc - optind;
    if (opts->command_count == 0 && (opts->interactive || opts->tty || opts->env_count ||
                                     opts->workdir || opts->user_given || opts->timeout_ms)) {
        fprintf(stderr, "cove: -i, -t, --env, --secret, --workdir, --user and --timeout need a "
                        "command (cove run [options] -- CMD)\n");
        ok = false;
    }
    return ok ? 0 : -1;
}

static int report_problems(const cove_config *config)
{
    cove_problems problems;
    size_t count = cove_config_validate(config, &problems);
    for (size_t i = 0; i < problems.count; i++)
        fprintf(stderr, "cove: %s\n", problems.messages[i]);
    cove_problems_free(&problems);
    return count ? -1 : 0;
}

/* Waits for the VM to end, turning SIGINT/SIGTERM/SIGHUP into a forced stop. Returns the
 * signal that stopped it, or 0. */
static int wait_for_vm(cove_vm *vm, int signal_fd)
{
    int stopped_by = 0;
    struct pollfd fds[2] = {
        {.fd = signal_fd, .events = POLLIN},
        {.fd = cove_vm_state_fd(vm), .events = POLLIN},
    };
    while (cove_vm_exit(vm).kind == COVE_EXIT_NONE) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo info;
            if (read(signal_fd, &info, sizeof(info)) == sizeof(info) && !stopped_by) {
                stopped_by = (int)info.ssi_signo;
                cove_vm_stop(vm);
            }
        }
        if (fds[1].revents & POLLIN) {
            uint64_t count;
            if (read(fds[1].fd, &count, sizeof(count)) < 0) {
                /* nothing to drain */
            }
        }
    }
    cove_vm_wait(vm, -1);
    return stopped_by;
}

static int exit_status(const cove_exit *exit_info, int stopped_by)
{
    switch (exit_info->kind) {
    case COVE_EXIT_POWEROFF:
    case COVE_EXIT_REBOOT:
        return 0;
    case COVE_EXIT_STOPPED:
        return stopped_by ? EXIT_SIGNAL_BASE + stopped_by : 0;
    case COVE_EXIT_HOST_ERROR:
        fprintf(stderr, "cove: %s\n", exit_info->reason);
        return EXIT_HOST_FAILED;
    default:
        fprintf(stderr, "cove: %s\n", exit_info->reason);
        return EXIT_GUEST_FAILED;
    }
}

static int run_vm(const cove_config *config, const struct run_options *opts, uint64_t started_ns)
{
    /* Before libcove starts threads, so only the signalfd ever sees them. */
    int signal_fd = open_stop_signal_fd();
    if (signal_fd < 0) {
        fprintf(stderr, "cove: signalfd: %s\n", strerror(errno));
        return EXIT_HOST_FAILED;
    }
    cove_error error;
    cove_vm *vm = cove_vm_new(config, &error);
    if (!vm) {
        fprintf(stderr, "cove: %s\n", error.message);
        close(signal_fd);
        return EXIT_HOST_FAILED;
    }
    cove_vm_set_warning_callback(vm, print_vm_warning, NULL);
    struct terminal term = {0};
    if (cove_config_serial_kind(config) == COVE_CONSOLE_STDIO)
        terminal_raw(&term, true);
    int status;
    if (cove_vm_start(vm, &error) < 0) {
        terminal_restore(&term);
        fprintf(stderr, "cove: %s\n", error.message);
        status = EXIT_HOST_FAILED;
    } else {
        int stopped_by = wait_for_vm(vm, signal_fd);
        terminal_restore(&term);
        cove_exit exit_info = cove_vm_exit(vm);
        status = exit_status(&exit_info, stopped_by);
        uint64_t boot_ns = cove_vm_boot_signal_ns(vm);
        if (opts->boot_timer && boot_ns)
            fprintf(stderr, "cove: boot-timer: %llu us\n",
                    (unsigned long long)((boot_ns - started_ns) / 1000));
    }
    cove_vm_free(vm);
    close(signal_fd);
    return status;
}

static int add_mounts_to_cmdline(cove_config *config, const struct run_options *opts)
{
    if (!opts->agent_words)
        return 0;
    const char *cmdline = cove_config_cmdline(config);
    char *with_mounts = cmdline_with_mounts(cmdline ? cmdline : "", opts);
    int r = with_mounts ? cove_config_set_cmdline(config, with_mounts) : -1;
    free(with_mounts);
    if (r < 0)
        fprintf(stderr, "cove: out of memory\n");
    return r;
}

/* $XDG_CACHE_HOME/cove/boot, else ~/.cache/cove/boot; NULL when neither is set. */
static char *default_boot_cache(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    const char *base = xdg && xdg[0] == '/' ? xdg : home && home[0] == '/' ? home : NULL;
    if (!base)
        return NULL;
    const char *rest = base == xdg ? "/cove/boot" : "/.cache/cove/boot";
    size_t len = strlen(base) + strlen(rest) + 1;
    char *dir = malloc(len);
    if (dir)
        snprintf(dir, len, "%s%s", base, rest);
    return dir;
}

/* Boot snapshots for commands (the main job) unless --no-boot-cache; a console boot only
 * with --boot-cache. */
static int apply_boot_cache(cove_config *config, const struct run_options *opts)
{
    if (opts->no_boot_cache || (!opts->boot_cache && opts->command_count == 0))
        return 0;
    char *dir = opts->boot_cache ? NULL : default_boot_cache();
    int r = cove_config_set_boot_cache(config, opts->boot_cache ? opts->boot_cache : dir);
    free(dir);
    if (r < 0)
        fprintf(stderr, "cove: --boot-cache: %s\n",
                r == -EINVAL ? "needs a directory (or use --no-boot-cache)" : strerror(-r));
    return r;
}

static int cmd_run(int argc, char **argv, uint64_t started_ns)
{
    cove_config *config = cove_config_new();
    if (!config) {
        fprintf(stderr, "cove: out of memory\n");
        return EXIT_HOST_FAILED;
    }
    cove_config_set_serial_stdio(config);
    /* Unlike libcove's default: a CI guest wants entropy at boot (--no-rng turns it off). */
    cove_config_set_entropy(config, true);
    struct run_options opts = {0};
    int parsed = parse_run_args(argc, argv, config, &opts);
    if (parsed >= 0)
        warn_share_file_limit(&opts);
    bool with_command = opts.command_count > 0;
    int status;
    if (parsed < 0 || apply_default_image(config, &opts) < 0 ||
        (!opts.cmdline_given && cove_config_set_cmdline(config, DEFAULT_CMDLINE) < 0) ||
        apply_default_network(config, &opts) < 0 ||
        add_mounts_to_cmdline(config, &opts) < 0 ||
        apply_boot_cache(config, &opts) < 0 ||
        report_problems(config) < 0)
        status = with_command ? EXIT_EXEC_COVE_FAILED : EXIT_USAGE;
    else if (with_command)
        status = run_command(config, &opts, started_ns);
    else
        status = run_vm(config, &opts, started_ns);
    run_options_free(&opts);
    cove_config_free(config);
    return status;
}

static int cmd_limits(void)
{
    char min_mem[32], max_mem[32];
    cove_format_size(cove_min_memory(), min_mem, sizeof(min_mem));
    cove_format_size(cove_max_memory(), max_mem, sizeof(max_mem));
    printf("cpus: %u to %u\nmemory: %s to %s\n", cove_min_cpus(), cove_max_cpus(), min_mem, max_mem);
    return 0;
}

/* The most descriptors we ask for: what virtiofsd asks for too. */
#define FILE_LIMIT_WANTED 1048576

/* A shared directory holds a descriptor per inode the guest caches (libcove caps that at half
 * the soft limit), and a guest that lists a folder of 10,000 files caches 10,000. So take all
 * the process may have and, where we may (root, CAP_SYS_RESOURCE), raise the hard limit too:
 * a plain kernel's default hard limit, 4096, would stop a share at about 2,000 files. */
static void raise_file_limit(void)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0)
        return;
    /* The kernel refuses a hard limit above fs.nr_open. */
    rlim_t wanted = FILE_LIMIT_WANTED;
    FILE *nr_open = fopen("/proc/sys/fs/nr_open", "r");
    unsigned long ceiling;
    if (nr_open) {
        if (fscanf(nr_open, "%lu", &ceiling) == 1 && ceiling < wanted)
            wanted = ceiling;
        fclose(nr_open);
    }
    struct rlimit raised = {wanted, wanted};
    if (files.rlim_max < wanted && setrlimit(RLIMIT_NOFILE, &raised) == 0)
        return;
    if (files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
}

int main(int argc, char **argv)
{
    uint64_t started_ns = monotonic_ns();
    /* A console reader that goes away (cove run | head) must not kill the VMM mid-write. */
    signal(SIGPIPE, SIG_IGN);
    raise_file_limit();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 || strcmp(command, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(command, "--version") == 0) {
        printf("cove %s\n", COVE_VERSION);
        return 0;
    }
    if (strcmp(command, "run") == 0)
        return cmd_run(argc - 1, argv + 1, started_ns);
    if (strcmp(command, "limits") == 0)
        return cmd_limits();
    if (strcmp(command, "virtiofsd") == 0)
        return cmd_virtiofsd(argc - 1, argv + 1);
    fprintf(stderr, "cove: unknown command '%s' (see cove --help)\n", command);
    return EXIT_USAGE;
}
