/*
 * The slirp backend's event plumbing.
 *
 * libslirp wants a poll loop: slirp_pollfds_fill() lists the descriptors and events it wants
 * now, slirp_pollfds_poll() takes the results and also runs its TCP timers. The I/O loop is
 * epoll-based and has no per-iteration hook to spare, so every event that reaches the backend
 * (a socket, the timerfd, a frame from the guest) runs one "pump": poll with the events that
 * arrived, fill again, and bring the epoll registrations in line with the new fill (add what is
 * new, change what differs, remove what slirp no longer lists). A socket that slirp stops
 * listing is removed rather than paused, because a paused descriptor still reports hang-ups
 * and would spin the loop. The timerfd is armed for the earlier of the fill's timeout and the
 * first slirp timer.
 *
 * Guest flows (slirp.h, flow.h) are counted per descriptor: a socket slirp announces
 * (register_poll_fd) while it handles a guest frame, or that first shows up in the fill right
 * after one (slirp 4.7 opens ping sockets without announcing them), is the guest's until slirp
 * unregisters it. Sockets of forwards and of host connections to them are not counted. Should
 * slirp ever close one without unregistering it, a sweep at the cap (at most once a second)
 * forgets descriptors that are no longer sockets.
 */
#include "net/slirp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libslirp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "net/flow.h"

/* One descriptor slirp asked to have polled. */
struct watch {
    struct net_slirp *ns;
    int fd;
    bool registered;  /* on the I/O loop */
    uint32_t events;  /* what epoll watches it for (hang-ups and errors always) */
    uint32_t revents; /* what fired since the last pump */
    bool listed;      /* in the current fill */
    unsigned index;   /* in net_slirp.watches */
};

/* A timer created through SlirpCb.timer_new. */
struct slirp_timer {
    struct slirp_timer *next;
    SlirpTimerCb cb;
    void *cb_opaque;
    int64_t expire_ms; /* -1 when not armed */
};

/* Whose socket a descriptor is. */
enum fd_owner { FD_UNKNOWN, FD_HOST, FD_GUEST };

struct fd_flow {
    uint8_t owner;
    struct net_flow_key key; /* FD_GUEST: the frame that opened it */
};

/* The fill's entries, by the index slirp was given. */
struct fill_entry {
    int fd;
    int revents; /* SLIRP_POLL_* */
};

struct net_slirp {
    struct net_backend be; /* first: net_backend_* see this */
    struct io_loop *loop;
    Slirp *slirp;
    int timer_fd;
    struct watch **watches; /* for iteration */
    unsigned watch_count, watch_cap;
    struct watch **by_fd;   /* for lookup: descriptor numbers are small and dense */
    unsigned by_fd_len;
    struct fill_entry *fill;
    unsigned fill_count, fill_cap;
    uint32_t fill_timeout_ms;
    struct slirp_timer *timers;
    bool pumping, pump_again;
    uint64_t guest_errors;
    /* Guest flows. */
    struct fd_flow *flows; /* by descriptor */
    unsigned flows_len;
    unsigned max_flows;
    bool in_input;        /* inside slirp_input: sockets announced now are the guest's */
    bool fill_for_input;  /* the pump after a guest frame: new sockets in the fill are too */
    struct net_flow_key input_key;
    int64_t last_sweep_ms;
    /* Fragment budget: a token bucket of bytes. */
    size_t frag_budget;
    uint64_t frag_tokens;
    int64_t frag_refill_ms;
    struct net_slirp_stats fstats;
};

static struct net_slirp *to_ns(struct net_backend *be) { return (struct net_slirp *)be; }

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- Guest flows. ---- */

static struct fd_flow *flow_slot(struct net_slirp *ns, int fd)
{
    if (fd < 0)
        return NULL;
    if ((unsigned)fd >= ns->flows_len) {
        unsigned len = (unsigned)fd + 64;
        struct fd_flow *grown = realloc(ns->flows, len * sizeof(*grown));
        if (!grown)
            return NULL; /* untracked: the cap then errs on the side of the guest */
        memset(grown + ns->flows_len, 0, (len - ns->flows_len) * sizeof(*grown));
        ns->flows = grown;
        ns->flows_len = len;
    }
    return &ns->flows[fd];
}

/* A descriptor slirp uses: attributed once, when first seen. */
static void note_fd(struct net_slirp *ns, int fd, bool guest)
{
    struct fd_flow *f = flow_slot(ns, fd);
    if (!f || f->owner != FD_UNKNOWN)
        return;
    f->owner = guest ? FD_GUEST : FD_HOST;
    f->key = ns->input_key;
    if (guest)
        ns->fstats.guest_flows++;
}

static void forget_fd(struct net_slirp *ns, int fd)
{
    if (fd < 0 || (unsigned)fd >= ns->flows_len)
        return;
    if (ns->flows[fd].owner == FD_GUEST)
        ns->fstats.guest_flows--;
    ns->flows[fd].owner = FD_UNKNOWN;
}

/* Whether slirp has a UDP socket for this guest source already (it reuses it, see flow.h). */
static bool udp_flow_exists(const struct net_slirp *ns, const struct net_flow_key *key)
{
    for (unsigned fd = 0; fd < ns->flows_len; fd++) {
        const struct fd_flow *f = &ns->flows[fd];
        if (f->owner == FD_GUEST && f->key.proto == key->proto && f->key.src == key->src &&
            f->key.sport == key->sport)
            return true;
    }
    return false;
}

/* Forgets guest descriptors that are no longer sockets (closed behind our back). */
static void sweep_flows(struct net_slirp *ns)
{
    int64_t now_ms = now_ns() / 1000000;
    if (now_ms - ns->last_sweep_ms < 1000)
        return;
    ns->last_sweep_ms = now_ms;
    for (unsigned fd = 0; fd < ns->flows_len; fd++) {
        struct stat st;
        if (ns->flows[fd].owner == FD_GUEST && (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)))
            forget_fd(ns, (int)fd);
    }
}

static bool take_fragment_budget(struct net_slirp *ns, size_t len)
{
    int64_t now_ms = now_ns() / 1000000;
    uint64_t refill = (uint64_t)(now_ms - ns->frag_refill_ms) * ns->frag_budget /
                      NET_SLIRP_FRAGMENT_WINDOW_MS;
    if (refill) {
        ns->frag_tokens = ns->frag_tokens + refill > ns->frag_budget ? ns->frag_budget
                                                                     : ns->frag_tokens + refill;
        ns->frag_refill_ms = now_ms;
    }
    uint64_t cost = len + 2048; /* slirp's mbuf around the fragment */
    if (ns->frag_tokens < cost)
        return false;
    ns->frag_tokens -= cost;
    return true;
}

/* Whether a guest frame may reach slirp: at the cap, nothing that could open a socket does
 * (a fragment could complete a datagram that opens one), except datagrams of UDP flows that
 * exist; fragments also spend the budget. */
static bool admit(struct net_slirp *ns, enum net_flow_kind kind, const struct net_flow_key *key,
                  size_t len)
{
    if (kind == NET_FLOW_NONE)
        return true;
    if (ns->fstats.guest_flows >= ns->max_flows &&
        !(kind == NET_FLOW_UDP && udp_flow_exists(ns, key))) {
        sweep_flows(ns);
        if (ns->fstats.guest_flows >= ns->max_flows) {
            ns->fstats.flows_refused++;
            return false;
        }
    }
    if (kind == NET_FLOW_FRAGMENT && !take_fragment_budget(ns, len)) {
        ns->fstats.fragments_dropped++;
        return false;
    }
    return true;
}

/* ---- Watches: descriptors on the I/O loop. ---- */

static uint32_t to_epoll(int slirp_events)
{
    return (slirp_events & SLIRP_POLL_IN ? EPOLLIN : 0u) |
           (slirp_events & SLIRP_POLL_OUT ? EPOLLOUT : 0u) |
           (slirp_events & SLIRP_POLL_PRI ? EPOLLPRI : 0u);
}

static int to_slirp(uint32_t events)
{
    return (events & EPOLLIN ? SLIRP_POLL_IN : 0) | (events & EPOLLOUT ? SLIRP_POLL_OUT : 0) |
           (events & EPOLLPRI ? SLIRP_POLL_PRI : 0) | (events & EPOLLERR ? SLIRP_POLL_ERR : 0) |
           (events & EPOLLHUP ? SLIRP_POLL_HUP : 0);
}

static void pump(struct net_slirp *ns);

static void on_watch(void *opaque, uint32_t events)
{
    struct watch *w = opaque;
    w->revents |= events;
    pump(w->ns);
}

static struct watch *find_watch(const struct net_slirp *ns, int fd)
{
    return fd >= 0 && (unsigned)fd < ns->by_fd_len ? ns->by_fd[fd] : NULL;
}

static void drop_watch(struct net_slirp *ns, struct watch *w)
{
    if (w->registered)
        io_loop_remove(ns->loop, w->fd);
    ns->by_fd[w->fd] = NULL;
    struct watch *last = ns->watches[--ns->watch_count];
    ns->watches[w->index] = last;
    last->index = w->index;
    free(w);
}

/* Makes room for descriptor fd in by_fd and one more watch. */
static bool reserve_watch(struct net_slirp *ns, int fd)
{
    if (ns->watch_count == ns->watch_cap) {
        unsigned cap = ns->watch_cap ? 2 * ns->watch_cap : 16;
        struct watch **grown = realloc(ns->watches, cap * sizeof(*grown));
        if (!grown)
            return false;
        ns->watches = grown;
        ns->watch_cap = cap;
    }
    if ((unsigned)fd >= ns->by_fd_len) {
        unsigned len = (unsigned)fd + 64;
        struct watch **grown = realloc(ns->by_fd, len * sizeof(*grown));
        if (!grown)
            return false;
        memset(grown + ns->by_fd_len, 0, (len - ns->by_fd_len) * sizeof(*grown));
        ns->by_fd = grown;
        ns->by_fd_len = len;
    }
    return true;
}

static struct watch *new_watch(struct net_slirp *ns, int fd)
{
    if (fd < 0 || !reserve_watch(ns, fd))
        return NULL;
    struct watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    *w = (struct watch){.ns = ns, .fd = fd, .index = ns->watch_count};
    ns->watches[ns->watch_count++] = w;
    ns->by_fd[fd] = w;
    return w;
}

/* Registers w for `events`. A descriptor number slirp closed and reused is no longer in the
 * epoll set (the kernel dropped it on close), so a failed change is retried as a fresh add. */
static void watch_set(struct net_slirp *ns, struct watch *w, uint32_t events)
{
    if (w->registered && events == w->events)
        return;
    w->events = events;
    if (w->registered && io_loop_set_events(ns->loop, w->fd, events) == 0)
        return;
    if (w->registered)
        io_loop_remove(ns->loop, w->fd);
    w->registered = io_loop_add(ns->loop, w->fd, events, on_watch, w) == 0;
}

/* ---- The fill and poll callbacks. ---- */

static int add_poll(int fd, int events, void *opaque)
{
    struct net_slirp *ns = opaque;
    if (ns->fill_count == ns->fill_cap) {
        unsigned cap = ns->fill_cap ? 2 * ns->fill_cap : 16;
        struct fill_entry *grown = realloc(ns->fill, cap * sizeof(*grown));
        if (!grown)
            return -1; /* slirp then simply does not poll this socket this round */
        ns->fill = grown;
        ns->fill_cap = cap;
    }
    note_fd(ns, fd, ns->fill_for_input);
    struct watch *w = find_watch(ns, fd);
    if (!w)
        w = new_watch(ns, fd);
    if (!w)
        return -1;
    /* Hang-ups and errors are reported whatever is asked, so SLIRP_POLL_HUP needs no bit. */
    watch_set(ns, w, to_epoll(events));
    w->listed = true;
    ns->fill[ns->fill_count] = (struct fill_entry){.fd = fd};
    return (int)ns->fill_count++;
}

static int get_revents(int idx, void *opaque)
{
    struct net_slirp *ns = opaque;
    if (idx < 0 || (unsigned)idx >= ns->fill_count)
        return 0;
    return ns->fill[idx].revents;
}

/* Hands the events gathered since the last pump to slirp, indexed as in the last fill. */
static void poll_once(struct net_slirp *ns)
{
    for (unsigned i = 0; i < ns->fill_count; i++) {
        struct watch *w = find_watch(ns, ns->fill[i].fd);
        ns->fill[i].revents = w ? to_slirp(w->revents) : 0;
    }
    for (unsigned i = 0; i < ns->watch_count; i++)
        ns->watches[i]->revents = 0;
    slirp_pollfds_poll(ns->slirp, 0, get_revents, ns);
}

static void fill_once(struct net_slirp *ns)
{
    for (unsigned i = 0; i < ns->watch_count; i++)
        ns->watches[i]->listed = false;
    ns->fill_count = 0;
    ns->fill_timeout_ms = UINT32_MAX;
    slirp_pollfds_fill(ns->slirp, &ns->fill_timeout_ms, add_poll, ns);
    for (unsigned i = ns->watch_count; i-- > 0;)
        if (!ns->watches[i]->listed)
            drop_watch(ns, ns->watches[i]);
}

/* ---- Timers. ---- */

static int64_t next_deadline_ms(const struct net_slirp *ns)
{
    int64_t deadline = -1;
    if (ns->fill_timeout_ms != UINT32_MAX)
        deadline = now_ns() / 1000000 + ns->fill_timeout_ms;
    for (const struct slirp_timer *t = ns->timers; t; t = t->next)
        if (t->expire_ms >= 0 && (deadline < 0 || t->expire_ms < deadline))
            deadline = t->expire_ms;
    return deadline;
}

static void arm_timerfd(struct net_slirp *ns)
{
    int64_t deadline = next_deadline_ms(ns);
    struct itimerspec its = {0};
    if (deadline >= 0) {
        /* A zero it_value disarms: a deadline already past is made the earliest instant. */
        its.it_value.tv_sec = deadline / 1000;
        its.it_value.tv_nsec = (deadline % 1000) * 1000000 + 1;
    }
    timerfd_settime(ns->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Runs one expired timer; false when none is. A callback may free or re-arm any timer, so the
 * list is searched afresh each time. */
static bool run_one_timer(struct net_slirp *ns, int64_t now_ms)
{
    for (struct slirp_timer *t = ns->timers; t; t = t->next) {
        if (t->expire_ms >= 0 && t->expire_ms <= now_ms) {
            t->expire_ms = -1;
            t->cb(t->cb_opaque);
            return true;
        }
    }
    return false;
}

static void on_timerfd(void *opaque, uint32_t events)
{
    (void)events;
    struct net_slirp *ns = opaque;
    uint64_t expirations;
    if (read(ns->timer_fd, &expirations, sizeof(expirations)) < 0) {
        /* spurious: nothing expired, the pump below is harmless */
    }
    int64_t now_ms = now_ns() / 1000000;
    while (run_one_timer(ns, now_ms)) {
    }
    pump(ns);
}

/* Runs until slirp has no more immediate work; re-entered calls (slirp calling back into the
 * backend while it is being pumped) only ask for one more round. */
static void pump(struct net_slirp *ns)
{
    if (ns->pumping) {
        ns->pump_again = true;
        return;
    }
    ns->pumping = true;
    do {
        ns->pump_again = false;
        poll_once(ns);
        fill_once(ns);
    } while (ns->pump_again);
    ns->pumping = false;
    arm_timerfd(ns);
}

/* ---- SlirpCb. ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    net_backend_deliver(&((struct net_slirp *)opaque)->be, buf, len);
    return (ssize_t)len;
}

/* The message names a guest misdeed (a bad packet): counted, not logged, so a guest cannot
 * flood the host's logs. */
static void cb_guest_error(const char *msg, void *opaque)
{
    (void)msg;
    ((struct net_slirp *)opaque)->guest_errors++;
}

static int64_t cb_clock_get_ns(void *opaque)
{
    (void)opaque;
    return now_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
    struct net_slirp *ns = opaque;
    struct slirp_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    *t = (struct slirp_timer){.next = ns->timers, .cb = cb, .cb_opaque = cb_opaque,
                              .expire_ms = -1};
    ns->timers = t;
    return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
    struct net_slirp *ns = opaque;
    for (struct slirp_timer **p = &ns->timers; *p; p = &(*p)->next) {
        if (*p == timer) {
            *p = (*p)->next;
            free(timer);
            return;
        }
    }
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    struct net_slirp *ns = opaque;
    if (timer)
        ((struct slirp_timer *)timer)->expire_ms = expire_ms < 0 ? 0 : expire_ms;
    if (!ns->pumping)
        arm_timerfd(ns);
}

/* Watching happens through the fill, which knows the events too; this only says whose the
 * socket is. */
static void cb_register_poll_fd(int fd, void *opaque)
{
    struct net_slirp *ns = opaque;
    note_fd(ns, fd, ns->in_input);
}

/* slirp is about to close fd: take it off the loop while the number is still its own. */
static void cb_unregister_poll_fd(int fd, void *opaque)
{
    struct net_slirp *ns = opaque;
    forget_fd(ns, fd);
    struct watch *w = find_watch(ns, fd);
    if (w)
        drop_watch(ns, w);
}

/* Only guest forwards (not used) wait for this; every other change shows up in the fill. */
static void cb_notify(void *opaque) { (void)opaque; }

static const SlirpCb slirp_callbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_new = cb_timer_new,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_unregister_poll_fd,
    .notify = cb_notify,
};

/* ---- The backend. ---- */

static void ns_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    struct net_slirp *ns = to_ns(be);
    struct net_flow_key key = {0};
    enum net_flow_kind kind = net_flow_classify(frame, len, NET_SLIRP_GATEWAY, NET_SLIRP_DNS, &key);
    if (!admit(ns, kind, &key, len))
        return;
    ns->input_key = key;
    ns->in_input = true;
    slirp_input(ns->slirp, frame, (int)len);
    ns->in_input = false;
    ns->fill_for_input = kind != NET_FLOW_NONE;
    pump(ns);
    ns->fill_for_input = false;
}

static void ns_destroy(struct net_backend *be)
{
    struct net_slirp *ns = to_ns(be);
    if (ns->slirp)
        slirp_cleanup(ns->slirp);
    while (ns->watch_count)
        drop_watch(ns, ns->watches[ns->watch_count - 1]);
    while (ns->timers)
        cb_timer_free(ns->timers, ns);
    if (ns->timer_fd >= 0) {
        io_loop_remove(ns->loop, ns->timer_fd);
        close(ns->timer_fd);
    }
    free(ns->watches);
    free(ns->by_fd);
    free(ns->fill);
    free(ns->flows);
    free(ns);
}

static const struct net_backend_ops slirp_ops = {
    .send = ns_send,
    .destroy = ns_destroy,
};

static struct in_addr in4(uint32_t host_order) { return (struct in_addr){htonl(host_order)}; }

static Slirp *start_slirp(struct net_slirp *ns)
{
    SlirpConfig cfg = {
        .version = 4,
        .in_enabled = true,
        .vnetwork = in4(NET_SLIRP_NETWORK),
        .vnetmask = in4(NET_SLIRP_NETMASK),
        .vhost = in4(NET_SLIRP_GATEWAY),
        .in6_enabled = false,
        .vhostname = "cove",
        .vdhcp_start = in4(NET_SLIRP_GUEST),
        .vnameserver = in4(NET_SLIRP_DNS),
        .if_mtu = NET_SLIRP_MTU,
        .if_mru = NET_SLIRP_MTU,
    };
    return slirp_new(&cfg, &slirp_callbacks, ns);
}

/* slirp binds with SO_REUSEADDR, which lets a UDP bind succeed next to another socket that set
 * it too; a plain bind first makes a UDP port in use an error as it is for TCP. */
static int probe_udp(struct in_addr addr, uint16_t port)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr};
    int err = bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
    close(s);
    return err;
}

static int add_forward(struct net_slirp *ns, const struct net_slirp_forward *f, char *error,
                       size_t error_len)
{
    const char *host = f->host_addr ? f->host_addr : "127.0.0.1";
    const char *proto = f->udp ? "udp" : "tcp";
    struct in_addr addr;
    if (inet_pton(AF_INET, host, &addr) != 1) {
        snprintf(error, error_len, "port forward %s %s:%u: not an IPv4 address", proto, host,
                 f->host_port);
        return -EINVAL;
    }
    int err = f->udp ? probe_udp(addr, f->host_port) : 0;
    if (!err) {
        errno = 0;
        if (slirp_add_hostfwd(ns->slirp, f->udp, addr, f->host_port, in4(NET_SLIRP_GUEST),
                              f->guest_port) < 0)
            err = errno ? errno : EADDRINUSE;
    }
    if (err) {
        snprintf(error, error_len, "port forward %s %s:%u: %s", proto, host, f->host_port,
                 strerror(err));
        return -err;
    }
    return 0;
}

struct net_backend *net_slirp_new(struct io_loop *loop, const struct net_slirp_config *config,
                                  char *error, size_t error_len)
{
    struct net_slirp *ns = calloc(1, sizeof(*ns));
    if (!ns) {
        snprintf(error, error_len, "network: out of memory");
        return NULL;
    }
    struct net_policy policy = {config->policy, NET_SLIRP_GATEWAY, NET_SLIRP_DNS};
    net_backend_init(&ns->be, &slirp_ops, &policy);
    ns->be.mtu = NET_SLIRP_MTU;
    ns->be.rx_csum_valid = true; /* slirp builds every frame it sends, checksums included */
    ns->loop = loop;
    ns->max_flows = config->max_guest_flows ? config->max_guest_flows : NET_SLIRP_MAX_GUEST_FLOWS;
    ns->frag_budget = config->fragment_budget ? config->fragment_budget : NET_SLIRP_FRAGMENT_BUDGET;
    ns->frag_tokens = ns->frag_budget;
    ns->frag_refill_ms = now_ns() / 1000000;
    ns->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ns->timer_fd < 0 || io_loop_add(loop, ns->timer_fd, EPOLLIN, on_timerfd, ns) < 0) {
        snprintf(error, error_len, "network: timerfd: %s", strerror(errno));
        if (ns->timer_fd >= 0)
            close(ns->timer_fd);
        ns->timer_fd = -1;
        ns_destroy(&ns->be);
        return NULL;
    }
    ns->slirp = start_slirp(ns);
    if (!ns->slirp) {
        snprintf(error, error_len, "network: cannot start libslirp");
        ns_destroy(&ns->be);
        return NULL;
    }
    for (unsigned i = 0; i < config->forward_count; i++) {
        if (add_forward(ns, &config->forwards[i], error, error_len) < 0) {
            ns_destroy(&ns->be);
            return NULL;
        }
    }
    pump(ns); /* registers the forwards' listening sockets */
    return &ns->be;
}

unsigned net_slirp_watched_fds(const struct net_backend *be)
{
    return ((const struct net_slirp *)be)->watch_count;
}

const struct net_slirp_stats *net_slirp_stats(const struct net_backend *be)
{
    return &((const struct net_slirp *)be)->fstats;
}
