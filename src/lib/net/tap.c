#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

_Static_assert(NET_TAP_VNET_HDR_SIZE == NET_VNET_HDR_SIZE, "one header layout");
_Static_assert(NET_OFFLOAD_CSUM == TUN_F_CSUM && NET_OFFLOAD_TSO4 == TUN_F_TSO4 &&
                   NET_OFFLOAD_TSO6 == TUN_F_TSO6 && NET_OFFLOAD_ECN == TUN_F_TSO_ECN,
               "NET_OFFLOAD_* are TUN_F_*");

/* What a tap takes from the guest in a header (the kernel segments and checksums) and can
 * leave to the guest once TUNSETOFFLOAD allows it. */
#define TAP_OFFLOADS (NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN)

struct net_tap {
    struct net_backend be; /* first: net_backend_* see this */
    struct io_loop *loop;
    int fd;
    bool vnet_hdr;
    bool watching; /* on the loop (false once the device went away) */
    bool paused;   /* not read while the guest has no room */
    unsigned rx_offloads; /* what the guest accepted: headers read claim no more */
    struct net_tap_stats stats;
    /* The header (with vnet_hdr), then the frame; one byte more than the largest, so a read
     * that fills it is known to be too long (a tap truncates rather than fails). */
    uint8_t buf[NET_TAP_VNET_HDR_SIZE + NET_FRAME_MAX + 1];
};

static struct net_tap *to_tap(struct net_backend *be) { return (struct net_tap *)be; }

/* ---- Opening the device. ---- */

static int report(char *error, size_t error_len, int err, const char *fmt, const char *name)
{
    snprintf(error, error_len, fmt, name);
    return -err;
}

/* The line for a failed TUNSETIFF. */
static int attach_error(const char *name, int err, char *error, size_t len)
{
    switch (err) {
    case EPERM:
        return report(error, len, EPERM,
                      "tap '%s': permission denied: attaching needs CAP_NET_ADMIN, or a tap "
                      "created for this user (ip tuntap add dev NAME mode tap user USER)", name);
    case EBUSY:
        return report(error, len, EBUSY,
                      "tap '%s': busy: another program is attached to it (a single-queue tap "
                      "takes one; create it with multi_queue to share it)", name);
    case EINVAL:
        return report(error, len, EINVAL,
                      "tap '%s': not a TAP device (a TUN device or another kind of interface)",
                      name);
    default:
        snprintf(error, len, "tap '%s': cannot attach: %s", name, strerror(err));
        return -err;
    }
}

static int open_tun(const char *name, char *error, size_t len)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
        return report(error, len, ENOENT,
                      "tap '%s': /dev/net/tun is missing: this kernel has no TUN/TAP "
                      "(modprobe tun)", name);
    snprintf(error, len, "tap '%s': cannot open /dev/net/tun: %s", name, strerror(err));
    return -err;
}

/* TUNSETIFF; a multi-queue tap only accepts IFF_MULTI_QUEUE (and a single-queue one only its
 * absence), which the kernel reports as EINVAL, so the other form is tried before giving up. */
static int set_iff(int fd, const char *name, bool vnet_hdr)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    short flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    ifr.ifr_flags = flags;
    if (ioctl(fd, TUNSETIFF, &ifr) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    ifr.ifr_flags = (short)(flags | IFF_MULTI_QUEUE);
    return ioctl(fd, TUNSETIFF, &ifr) == 0 ? 0 : -errno;
}

/* The header size, and no offloads: frames arrive whole, with complete checksums. */
static int set_vnet(int fd, const char *name, char *error, size_t len)
{
    int size = NET_TAP_VNET_HDR_SIZE;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) == 0 && ioctl(fd, TUNSETOFFLOAD, 0UL) == 0)
        return 0;
    snprintf(error, len, "tap '%s': cannot set up its virtio-net header: %s", name,
             strerror(errno));
    return -errno;
}

int net_tap_open(const struct net_tap_config *config, char *error, size_t error_len)
{
    const char *name = config->name ? config->name : "";
    if (!name[0] || strlen(name) >= IFNAMSIZ)
        return report(error, error_len, EINVAL,
                      "tap '%s': a device name is 1 to 15 characters", name);
    unsigned before = if_nametoindex(name);
    if (before == 0)
        return report(error, error_len, ENODEV,
                      "tap '%s': no such device (create it first: ip tuntap add dev NAME mode "
                      "tap [user USER])", name);
    int fd = open_tun(name, error, error_len);
    if (fd < 0)
        return fd;
    int r = set_iff(fd, name, config->vnet_hdr);
    if (r < 0) {
        close(fd);
        return attach_error(name, -r, error, error_len);
    }
    /* Gone and re-made, or gone and just created by us: either way not the device asked for
     * (a created one disappears when fd is closed). */
    if (if_nametoindex(name) != before) {
        close(fd);
        return report(error, error_len, ENODEV,
                      "tap '%s': the device went away while attaching", name);
    }
    if (config->vnet_hdr && (r = set_vnet(fd, name, error, error_len)) < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* ---- Frames to the device. ---- */

/* With vnet_hdr the frame comes behind the header virtio-net checked (be.vnet_hdr), which
 * goes to the kernel as it is. */
static void tap_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct net_tap *t = to_tap(be);
    /* A tap never blocks a writer for long; EAGAIN, EIO (the link is down) or ENOBUFS lose
     * the frame as a full wire would; EINVAL is a header the kernel refused. */
    if (write(t->fd, frame, len) != (ssize_t)len)
        t->stats.tx_errors++;
}

int net_tap_set_offload(int fd, unsigned offloads)
{
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) == 0 ? 0 : -errno;
}

/* Recorded whether or not the kernel took it: reads are checked against what the guest
 * accepted, so after a failed call (counted) the kernel keeps its previous set and a frame
 * that claims more than the guest accepted is dropped, never handed on. */
static void tap_set_rx_offloads(struct net_backend *be, unsigned offloads)
{
    struct net_tap *t = to_tap(be);
    t->rx_offloads = offloads;
    if (net_tap_set_offload(t->fd, offloads) < 0)
        t->stats.offload_errors++;
}

/* ---- Frames from the device. ---- */

static void set_watch(struct net_tap *t, uint32_t events)
{
    if (t->watching)
        io_loop_set_events(t->loop, t->fd, events);
}

/* The device was deleted (or the descriptor broke): reads would fail for ever and epoll would
 * report it at once each time, so the descriptor leaves the loop. Sends keep failing softly. */
static void stop_watching(struct net_tap *t)
{
    if (!t->watching)
        return;
    io_loop_remove(t->loop, t->fd);
    t->watching = false;
    t->stats.gone = true;
}

/* Whether a read of n bytes is a frame to deliver: of a possible size and, with vnet_hdr,
 * claiming only offloads the guest accepted, at positions inside the frame. */
static bool read_ok(const struct net_tap *t, size_t n)
{
    size_t hdr = t->vnet_hdr ? NET_TAP_VNET_HDR_SIZE : 0;
    if (n < hdr + NET_FRAME_MIN || n - hdr > NET_FRAME_MAX)
        return false;
    return !t->vnet_hdr || net_vnet_hdr_valid(t->buf, n - hdr, t->rx_offloads);
}

/* Reads one frame; false when there is nothing more to read now. */
static bool read_one(struct net_tap *t)
{
    ssize_t n = read(t->fd, t->buf, sizeof(t->buf));
    if (n <= 0) {
        /* A tap never reads 0; a descriptor at its end (the tests' socket pair) would, for
         * ever, as would one whose device was deleted (EBADFD). */
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            stop_watching(t);
        return false;
    }
    if (!read_ok(t, (size_t)n)) {
        t->stats.rx_bad++;
        return true;
    }
    net_backend_deliver(&t->be, t->buf, (size_t)n);
    return true;
}

static void on_readable(void *opaque, uint32_t events)
{
    struct net_tap *t = opaque;
    for (unsigned i = 0; i < NET_TAP_READ_BURST && !t->paused; i++) {
        if (!read_one(t))
            break;
        /* The frame waits in the backend's queue: the guest has no room, so the rest stays in
         * the kernel until it has. */
        if (t->be.rxq_count) {
            t->paused = true;
            t->stats.pauses++;
            set_watch(t, 0);
        }
    }
    if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN))
        stop_watching(t);
}

static void tap_rx_drained(struct net_backend *be)
{
    struct net_tap *t = to_tap(be);
    if (!t->paused)
        return;
    t->paused = false;
    set_watch(t, EPOLLIN);
}

static void tap_destroy(struct net_backend *be)
{
    struct net_tap *t = to_tap(be);
    stop_watching(t);
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

static const struct net_backend_ops tap_ops = {
    .send = tap_send,
    .destroy = tap_destroy,
    .rx_drained = tap_rx_drained,
    .set_rx_offloads = tap_set_rx_offloads,
};

struct net_backend *net_tap_new_fd(struct io_loop *loop, int fd, bool vnet_hdr)
{
    struct net_tap *t = calloc(1, sizeof(*t));
    if (!t) {
        close(fd);
        return NULL;
    }
    /* No aliases on a tap: the open policy, whose only check is the frame size. */
    const struct net_policy policy = {.mode = NET_POLICY_OPEN};
    net_backend_init(&t->be, &tap_ops, &policy);
    t->loop = loop;
    t->fd = fd;
    t->vnet_hdr = vnet_hdr;
    t->be.vnet_hdr = vnet_hdr;
    t->be.offloads = vnet_hdr ? TAP_OFFLOADS : 0;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        io_loop_add(loop, fd, EPOLLIN, on_readable, t) < 0) {
        tap_destroy(&t->be);
        return NULL;
    }
    t->watching = true;
    return &t->be;
}

struct net_backend *net_tap_new(struct io_loop *loop, const struct net_tap_config *config,
                                int *err, char *error, size_t error_len)
{
    int fd = net_tap_open(config, error, error_len);
    struct net_backend *be = fd >= 0 ? net_tap_new_fd(loop, fd, config->vnet_hdr) : NULL;
    if (fd >= 0 && !be)
        snprintf(error, error_len, "tap '%s': out of memory", config->name);
    if (err)
        *err = be ? 0 : fd < 0 ? fd : -ENOMEM;
    return be;
}

const struct net_tap_stats *net_tap_stats(const struct net_backend *be)
{
    return &((const struct net_tap *)be)->stats;
}
