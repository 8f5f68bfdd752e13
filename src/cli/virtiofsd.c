/*
 * cove virtiofsd: cove's share server for another VMM, with virtiofsd's option names so that
 * a script or a libvirt <binary path=...> that starts virtiofsd can start this instead.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void virtiofsd_usage(FILE *out)
{
    fprintf(out,
            "usage: cove virtiofsd --socket-path PATH --shared-dir DIR [--readonly]\n"
            "                      [--cache auto|never|always]\n"
            "Serves DIR to one vhost-user front-end (QEMU's vhost-user-fs-pci, Cloud\n"
            "Hypervisor's --fs) on the Unix socket PATH, as virtiofsd does, until it\n"
            "disconnects (exit 0) or a signal N stops it (128+N). 2: bad usage, a missing\n"
            "directory or a socket path that exists; 1: the front-end broke the protocol;\n"
            "3: other host failures.\n");
}

static int parse_cache(const char *text, cove_share_cache *cache)
{
    if (share_cache_from_name(text, strlen(text), cache))
        return 0;
    fprintf(stderr, "cove: --cache '%s': use auto, never or always\n", text);
    return -1;
}

static int parse_virtiofsd_args(int argc, char **argv, cove_fs_serve_options *options)
{
    static const struct option longopts[] = {
        {"socket-path", required_argument, NULL, 's'},
        {"shared-dir", required_argument, NULL, 'd'},
        {"readonly", no_argument, NULL, 'r'},
        {"cache", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': options->socket_path = optarg; break;
        case 'd': options->host_dir = optarg; break;
        case 'r': options->read_only = true; break;
        case 'c':
            if (parse_cache(optarg, &options->cache) < 0)
                return EXIT_USAGE;
            break;
        case 'h': virtiofsd_usage(stdout); return 0;
        default: virtiofsd_usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc || !options->socket_path || !options->host_dir) {
        fprintf(stderr, "cove: virtiofsd needs --socket-path PATH and --shared-dir DIR "
                        "(see cove virtiofsd --help)\n");
        return EXIT_USAGE;
    }
    return -1; /* go on */
}

/* 128+N when a stop signal ended the serving, else 0. */
static int stop_status(int signal_fd)
{
    struct pollfd p = {.fd = signal_fd, .events = POLLIN};
    struct signalfd_siginfo info;
    if (poll(&p, 1, 0) == 1 && read(signal_fd, &info, sizeof(info)) == (ssize_t)sizeof(info))
        return EXIT_SIGNAL_BASE + (int)info.ssi_signo;
    return 0;
}

int cmd_virtiofsd(int argc, char **argv)
{
    cove_fs_serve_options options;
    cove_fs_serve_options_init(&options);
    int status = parse_virtiofsd_args(argc, argv, &options);
    if (status >= 0)
        return status;
    /* A signal ends the serving through the loop, so the socket file is always removed. */
    options.stop_fd = open_stop_signal_fd();
    if (options.stop_fd < 0) {
        fprintf(stderr, "cove: signalfd: %s\n", strerror(errno));
        return EXIT_HOST_FAILED;
    }
    cove_error error;
    int r = cove_fs_serve(&options, &error);
    status = stop_status(options.stop_fd);
    close(options.stop_fd);
    if (r == 0)
        return status;
    fprintf(stderr, "cove: %s\n", error.message);
    switch (r) {
    case -EPROTO: return EXIT_GUEST_FAILED;
    case -ENOENT:
    case -ENOTDIR:
    case -EACCES:
    case -EADDRINUSE:
    case -ENAMETOOLONG: return EXIT_USAGE;
    default: return EXIT_HOST_FAILED;
    }
}
