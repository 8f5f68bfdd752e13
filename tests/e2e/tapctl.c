/*
 * tapctl: TAP devices for the network cases, where busybox has no `ip tuntap` (e2e only).
 *
 *   tapctl add NAME [--user UID] [--multi-queue]   a persistent TAP device (down, no address)
 *   tapctl del NAME                                removes one made by add
 *   tapctl hold NAME SECONDS                       attaches to it, prints HELD, holds it
 *   tapctl as UID GID CMD [ARG...]                 runs CMD with only those ids (no groups)
 *
 * Exit status 0, or 1 with one line on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char *what, const char *name)
{
    fprintf(stderr, "tapctl: %s %s: %s\n", what, name, strerror(errno));
    return 1;
}

/* Opens /dev/net/tun attached to (or creating) the tap NAME. */
static int attach(const char *name, bool multi_queue)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int add(int argc, char **argv)
{
    const char *name = argv[0];
    long uid = -1;
    bool multi_queue = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
            uid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--multi-queue") == 0)
            multi_queue = true;
        else
            return fprintf(stderr, "tapctl: add: unknown argument '%s'\n", argv[i]), 1;
    }
    if (if_nametoindex(name) != 0)
        return fprintf(stderr, "tapctl: add %s: exists already\n", name), 1;
    int fd = attach(name, multi_queue);
    if (fd < 0)
        return fail("add", name);
    if ((uid >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)uid) < 0) ||
        ioctl(fd, TUNSETPERSIST, 1UL) < 0)
        return fail("add", name);
    close(fd);
    return 0;
}

/* Attaching with the device's own queue mode, then clearing persistence, removes it. */
static int del(const char *name)
{
    int fd = attach(name, false);
    if (fd < 0 && errno == EINVAL)
        fd = attach(name, true);
    if (fd < 0 || ioctl(fd, TUNSETPERSIST, 0UL) < 0)
        return fail("del", name);
    close(fd);
    return 0;
}

static int hold(const char *name, const char *seconds)
{
    int fd = attach(name, false);
    if (fd < 0)
        return fail("hold", name);
    printf("HELD\n");
    fflush(stdout);
    sleep((unsigned)strtoul(seconds, NULL, 10));
    close(fd);
    return 0;
}

static int as(char **argv)
{
    gid_t gid = (gid_t)strtoul(argv[1], NULL, 10);
    uid_t uid = (uid_t)strtoul(argv[0], NULL, 10);
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        return fail("as", argv[0]);
    execvp(argv[2], argv + 2);
    return fail("exec", argv[2]);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "add") == 0)
        return add(argc - 2, argv + 2);
    if (argc == 3 && strcmp(argv[1], "del") == 0)
        return del(argv[2]);
    if (argc == 4 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2], argv[3]);
    if (argc >= 5 && strcmp(argv[1], "as") == 0)
        return as(argv + 2);
    fprintf(stderr, "usage: tapctl add NAME [--user UID] [--multi-queue] | del NAME | "
                    "hold NAME SECONDS | as UID GID CMD [ARG...]\n");
    return 2;
}
