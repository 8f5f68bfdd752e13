/*
 * The slirp backend without a guest: the test plays the guest, injecting hand-built frames on
 * the I/O thread and collecting what slirp sends back. DHCP and ARP are answered, host-only
 * drops everything but the aliases before slirp sees it, a port forward accepts a host
 * connection (slirp then opens one toward the guest), and a port in use fails by name.
 *
 * Nothing leaves this machine: the only sockets slirp opens go to 127.0.0.1 (the host alias
 * and the forwards), and frames to other addresses are only sent under host-only, which drops
 * them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io_loop.h"
#include "loop_thread.h"
#include "net/slirp.h"
#include "test_net_frames.h"

#define MAX_FRAMES 64
#define WAIT_MS 3000

struct harness {
    struct loop_thread io; /* the I/O thread; io.loop is the backend's loop */
    pthread_mutex_t lock;
    void (*fn)(struct harness *h, void *arg); /* the call on the I/O thread */
    void *arg;
    struct net_backend *be;
    /* Frames the backend delivered, under lock. */
    uint8_t frames[MAX_FRAMES][FRAME_BUF];
    size_t lens[MAX_FRAMES];
    unsigned count;
};

/* ---- Running things on the I/O thread. ---- */

static void call_trampoline(void *opaque)
{
    struct harness *h = opaque;
    h->fn(h, h->arg);
}

/* Runs fn on the I/O thread, as everything touching the backend must. */
static void run_on_loop(struct harness *h, void (*fn)(struct harness *, void *), void *arg)
{
    h->fn = fn;
    h->arg = arg;
    loop_thread_call(&h->io, call_trampoline, h);
}

static bool receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct harness *h = opaque;
    pthread_mutex_lock(&h->lock);
    if (h->count < MAX_FRAMES && len <= FRAME_BUF) {
        memcpy(h->frames[h->count], frame, len);
        h->lens[h->count++] = len;
    }
    pthread_mutex_unlock(&h->lock);
    return true;
}

static int setup(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    pthread_mutex_init(&h->lock, NULL);
    loop_thread_start(&h->io);
    *state = h;
    return 0;
}

static void destroy_backend(struct harness *h, void *arg)
{
    (void)arg;
    net_backend_free(h->be);
    h->be = NULL;
}

static int teardown(void **state)
{
    struct harness *h = *state;
    if (h->be)
        run_on_loop(h, destroy_backend, NULL);
    loop_thread_stop(&h->io);
    pthread_mutex_destroy(&h->lock);
    free(h);
    return 0;
}

/* ---- The backend, on the I/O thread. ---- */

struct create_args {
    struct net_slirp_config config;
    char error[256];
};

static void do_create(struct harness *h, void *arg)
{
    struct create_args *a = arg;
    h->be = net_slirp_new(h->io.loop, &a->config, a->error, sizeof(a->error));
    if (h->be)
        net_backend_set_receiver(h->be, receive, h);
}

static void start(struct harness *h, enum net_policy_mode policy,
                  const struct net_slirp_forward *fwd, unsigned fwd_count)
{
    struct create_args a = {.config = {policy, fwd, fwd_count}};
    run_on_loop(h, do_create, &a);
    assert_non_null(h->be);
}

struct frame_arg {
    uint8_t buf[FRAME_BUF];
    size_t len;
};

static void do_send(struct harness *h, void *arg)
{
    struct frame_arg *f = arg;
    net_backend_send(h->be, f->buf, f->len);
}

static void inject(struct harness *h, struct frame_arg *f) { run_on_loop(h, do_send, f); }

struct snapshot {
    struct net_stats stats;
    unsigned watched;
};

static void do_snapshot(struct harness *h, void *arg)
{
    struct snapshot *s = arg;
    s->stats = *net_backend_stats(h->be);
    s->watched = net_slirp_watched_fds(h->be);
}

static struct snapshot snapshot(struct harness *h)
{
    struct snapshot s;
    run_on_loop(h, do_snapshot, &s);
    return s;
}

/* ---- Frames coming back. ---- */

typedef bool frame_match_fn(const uint8_t *f, size_t len, const void *want);

static unsigned count_frames(struct harness *h, frame_match_fn *match, const void *want)
{
    unsigned n = 0;
    pthread_mutex_lock(&h->lock);
    for (unsigned i = 0; i < h->count; i++)
        n += match(h->frames[i], h->lens[i], want);
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* Waits up to ms for at least n delivered frames that match. */
static bool wait_frames(struct harness *h, frame_match_fn *match, const void *want, unsigned n,
                        int ms)
{
    for (int waited = 0; waited < ms; waited += 5) {
        if (count_frames(h, match, want) >= n)
            return true;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    return false;
}

static bool wait_frame(struct harness *h, frame_match_fn *match, const void *want)
{
    return wait_frames(h, match, want, 1, WAIT_MS);
}

static unsigned frames_seen(struct harness *h)
{
    pthread_mutex_lock(&h->lock);
    unsigned n = h->count;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* IPv4 with protocol `proto`; returns the l4 header or NULL. */
static const uint8_t *ipv4_l4(const uint8_t *f, size_t len, uint8_t proto)
{
    if (len < 14 + 20 + 8 || frame_be16(f + 12) != 0x0800 || f[14 + 9] != proto)
        return NULL;
    size_t hlen = (size_t)(f[14] & 0xf) * 4;
    return len >= 14 + hlen + 20 ? f + 14 + hlen : NULL;
}

static bool is_dhcp_offer(const uint8_t *f, size_t len, const void *want)
{
    (void)want;
    const uint8_t *u = ipv4_l4(f, len, 17);
    if (!u || frame_be16(u) != 67 || frame_be16(u + 2) != 68 || (size_t)(u - f) + 8 + 240 > len)
        return false;
    const uint8_t *bootp = u + 8;
    return bootp[0] == 2 && frame_be32(bootp + 16) == NET_SLIRP_GUEST;
}

static bool is_arp_reply_from(const uint8_t *f, size_t len, const void *want)
{
    uint32_t ip = *(const uint32_t *)want;
    return len >= 14 + 28 && frame_be16(f + 12) == 0x0806 && frame_be16(f + 14 + 6) == 2 &&
           frame_be32(f + 14 + 14) == ip && memcmp(f + 14 + 18, frame_guest_mac, 6) == 0;
}

static bool is_syn_to_guest(const uint8_t *f, size_t len, const void *want)
{
    uint16_t port = *(const uint16_t *)want;
    const uint8_t *t = ipv4_l4(f, len, 6);
    return t && frame_be32(f + 14 + 16) == NET_SLIRP_GUEST && frame_be16(t + 2) == port &&
           (t[13] & 0x12) == 0x02;
}

/* A SYN whose MSS option (the first option, as slirp sends it) is *want. */
static bool is_syn_with_mss(const uint8_t *f, size_t len, const void *want)
{
    const uint8_t *t = ipv4_l4(f, len, 6);
    if (!t || (t[13] & 0x12) != 0x02 || (t[12] >> 4) * 4 < 24 || (size_t)(t - f) + 24 > len)
        return false;
    return t[20] == 2 && t[21] == 4 && frame_be16(t + 22) == *(const uint16_t *)want;
}

/* ---- Host sockets. ---- */

/* A TCP or UDP socket bound (and for TCP listening) on 127.0.0.1 at a free port. */
static int bound_socket(bool udp, uint16_t *port)
{
    int s = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (!udp)
        assert_int_equal(listen(s, 4), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return s;
}

static uint16_t free_port(void)
{
    uint16_t port;
    close(bound_socket(false, &port));
    return port;
}

/* The guest announces itself, so slirp knows its MAC before sending to it. */
static void guest_arp(struct harness *h)
{
    struct frame_arg f;
    f.len = frame_arp_request(f.buf, NET_SLIRP_GUEST, NET_SLIRP_GATEWAY);
    inject(h, &f);
}

/* ---- Tests. ---- */

/* DHCP works under either policy: the guest gets 10.0.2.15. */
static void expect_dhcp_offer(struct harness *h, enum net_policy_mode policy)
{
    start(h, policy, NULL, 0);
    struct frame_arg f;
    f.len = frame_dhcp_discover(f.buf);
    inject(h, &f);
    assert_true(wait_frame(h, is_dhcp_offer, NULL));
    assert_int_equal(snapshot(h).stats.tx_frames, 1);
}

static void test_dhcp_offer(void **state) { expect_dhcp_offer(*state, NET_POLICY_OPEN); }

static void test_dhcp_offer_under_host_only(void **state)
{
    expect_dhcp_offer(*state, NET_POLICY_HOST_ONLY);
}

static void test_arp_reply(void **state)
{
    struct harness *h = *state;
    start(h, NET_POLICY_HOST_ONLY, NULL, 0);
    guest_arp(h);
    uint32_t gw = NET_SLIRP_GATEWAY;
    assert_true(wait_frame(h, is_arp_reply_from, &gw));
    struct frame_arg f;
    f.len = frame_arp_request(f.buf, NET_SLIRP_GUEST, NET_SLIRP_DNS);
    inject(h, &f);
    uint32_t dns = NET_SLIRP_DNS;
    assert_true(wait_frame(h, is_arp_reply_from, &dns));
}

/* Frames to the internet are counted and dropped: slirp opens no socket for them and sends
 * nothing back. The same kind of frame to the host alias does reach the host. */
static void test_host_only_drops_before_slirp(void **state)
{
    struct harness *h = *state;
    start(h, NET_POLICY_HOST_ONLY, NULL, 0);
    guest_arp(h);
    uint32_t gw = NET_SLIRP_GATEWAY;
    assert_true(wait_frame(h, is_arp_reply_from, &gw));
    struct snapshot before = snapshot(h);
    unsigned seen = frames_seen(h);

    struct frame_arg f;
    f.len = frame_tcp_syn(f.buf, NET_SLIRP_GUEST, 40000, IP4(1, 1, 1, 1), 80);
    inject(h, &f);
    f.len = frame_udp(f.buf, NET_SLIRP_GUEST, 40001, IP4(8, 8, 8, 8), 53, "q", 1);
    inject(h, &f);
    f.len = frame_tcp_syn(f.buf, NET_SLIRP_GUEST, 40002, IP4(10, 0, 2, 4), 80);
    inject(h, &f);
    nanosleep(&(struct timespec){0, 200000000}, NULL);
    struct snapshot after = snapshot(h);
    assert_int_equal(after.stats.tx_dropped_policy - before.stats.tx_dropped_policy, 3);
    assert_int_equal(after.stats.tx_frames, before.stats.tx_frames);
    assert_int_equal(after.watched, before.watched);
    assert_int_equal(frames_seen(h), seen);

    /* The host alias is the host's loopback: a SYN to it becomes a connection here. */
    uint16_t port;
    int listener = bound_socket(false, &port);
    f.len = frame_tcp_syn(f.buf, NET_SLIRP_GUEST, 40003, NET_SLIRP_GATEWAY, port);
    inject(h, &f);
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    int conn = accept(listener, NULL, NULL);
    assert_true(conn >= 0);
    close(conn);
    close(listener);
}

/* Forwards a free host port to guest_port, connects to it from the host and waits for the
 * SYN slirp sends the guest for it; returns the host's socket. */
static int connect_forward(struct harness *h, enum net_policy_mode policy, uint16_t guest_port)
{
    uint16_t port = free_port();
    struct net_slirp_forward fwd = {.udp = false, .host_port = port, .guest_port = guest_port};
    start(h, policy, &fwd, 1);
    guest_arp(h);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_true(wait_frame(h, is_syn_to_guest, &guest_port));
    return s;
}

static void test_forward_reaches_guest(void **state)
{
    close(connect_forward(*state, NET_POLICY_HOST_ONLY, 8080));
}

/* The link MTU reached slirp: the SYN it sends the guest offers a 64 KiB segment (MTU less the
 * IP and TCP headers), and the backend tells the device the MTU and that its checksums hold. */
static void test_link_mtu(void **state)
{
    struct harness *h = *state;
    close(connect_forward(h, NET_POLICY_OPEN, 8080));
    uint16_t mss = NET_SLIRP_MTU - 40;
    assert_true(wait_frame(h, is_syn_with_mss, &mss));
    assert_int_equal(h->be->mtu, 65520);
    assert_true(h->be->rx_csum_valid);
}

/* Nothing but slirp's timers makes it send again: an unanswered SYN is retransmitted (after
 * its 3 s initial timeout), so the timerfd does drive slirp's TCP timers. */
static void test_timers_retransmit_syn(void **state)
{
    struct harness *h = *state;
    int s = connect_forward(h, NET_POLICY_OPEN, 22);
    uint16_t guest_port = 22;
    assert_true(wait_frames(h, is_syn_to_guest, &guest_port, 2, 10000));
    close(s);
}

static void expect_in_use(struct harness *h, bool udp)
{
    uint16_t port;
    int taken = bound_socket(udp, &port);
    struct create_args a = {.config = {NET_POLICY_OPEN, NULL, 1}};
    struct net_slirp_forward fwd = {.udp = udp, .host_port = port, .guest_port = 80};
    a.config.forwards = &fwd;
    run_on_loop(h, do_create, &a);
    assert_null(h->be);
    char want[64];
    snprintf(want, sizeof(want), "%s 127.0.0.1:%u", udp ? "udp" : "tcp", port);
    assert_non_null(strstr(a.error, want));
    assert_non_null(strstr(a.error, strerror(EADDRINUSE)));
    close(taken);
}

static void test_forward_port_in_use(void **state)
{
    struct harness *h = *state;
    expect_in_use(h, false);
    expect_in_use(h, true);
}

static void test_forward_bad_address(void **state)
{
    struct harness *h = *state;
    struct net_slirp_forward fwd = {.host_addr = "localhost", .host_port = 1, .guest_port = 1};
    struct create_args a = {.config = {NET_POLICY_OPEN, &fwd, 1}};
    run_on_loop(h, do_create, &a);
    assert_null(h->be);
    assert_non_null(strstr(a.error, "localhost"));
}

static void start_capped(struct harness *h, unsigned max_flows, size_t fragment_budget)
{
    struct create_args a = {.config = {.policy = NET_POLICY_OPEN,
                                       .max_guest_flows = max_flows,
                                       .fragment_budget = fragment_budget}};
    run_on_loop(h, do_create, &a);
    assert_non_null(h->be);
}

static struct net_slirp_stats slirp_stats(struct harness *h);

/* Datagrams waiting on a host UDP socket, each source port recorded; waits up to 1 s for more. */
static unsigned drain_udp(int s, uint16_t *ports, unsigned max)
{
    unsigned n = 0;
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    while (n < max && poll(&pfd, 1, 1000) == 1) {
        char buf[64];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        if (recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl) < 0)
            break;
        ports[n++] = ntohs(from.sin_port);
    }
    return n;
}

/* At the cap, a flooding guest opens no more sockets: of 10 UDP sources to the host alias only
 * 4 reach the host (each through a socket of its own), one of those 4 still gets through
 * afterwards, and connection attempts and pings elsewhere are dropped and counted. */
static void test_guest_flow_cap(void **state)
{
    struct harness *h = *state;
    start_capped(h, 4, 0);
    guest_arp(h);
    uint16_t port;
    int host = bound_socket(true, &port);
    struct frame_arg f;
    for (uint16_t i = 0; i < 10; i++) {
        f.len = frame_udp(f.buf, NET_SLIRP_GUEST, (uint16_t)(30000 + i), NET_SLIRP_GATEWAY, port,
                          "x", 1);
        inject(h, &f);
    }
    uint16_t ports[16];
    unsigned got = drain_udp(host, ports, 16);
    assert_int_equal(got, 4);
    unsigned distinct = 0;
    for (unsigned i = 0; i < got; i++) {
        bool seen = false;
        for (unsigned j = 0; j < i; j++)
            seen |= ports[j] == ports[i];
        distinct += !seen;
    }
    assert_int_equal(distinct, 4);
    struct net_slirp_stats st = slirp_stats(h);
    assert_int_equal(st.guest_flows, 4);
    assert_int_equal(st.flows_refused, 6);

    /* An existing flow still passes; a new connection does not reach a listener. */
    f.len = frame_udp(f.buf, NET_SLIRP_GUEST, 30000, NET_SLIRP_GATEWAY, port, "y", 1);
    inject(h, &f);
    assert_int_equal(drain_udp(host, ports, 16), 1);
    uint16_t tcp_port;
    int listener = bound_socket(false, &tcp_port);
    f.len = frame_tcp_syn(f.buf, NET_SLIRP_GUEST, 40000, NET_SLIRP_GATEWAY, tcp_port);
    inject(h, &f);
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 500), 0);
    st = slirp_stats(h);
    assert_int_equal(st.flows_refused, 7);
    assert_int_equal(st.guest_flows, 4);
    close(listener);
    close(host);
}

/* Fragments that never complete are admitted only within the budget (each costs its length
 * plus 2 KiB): with 16 KiB, four of 1,000-byte fragments, the rest dropped and counted. */
static void test_fragment_budget(void **state)
{
    struct harness *h = *state;
    start_capped(h, 0, 16 * 1024);
    guest_arp(h);
    char payload[1000] = {0};
    struct frame_arg f;
    uint64_t before = snapshot(h).stats.tx_frames;
    for (uint16_t i = 0; i < 20; i++) {
        f.len = frame_udp(f.buf, NET_SLIRP_GUEST, 30000, NET_SLIRP_GATEWAY, 9, payload,
                          sizeof(payload) - 8);
        frame_make_fragment(f.buf, (uint16_t)(100 + i), 1, 0);
        inject(h, &f);
    }
    struct net_slirp_stats st = slirp_stats(h);
    unsigned admitted = 16 * 1024 / (1034 + 2048);
    assert_int_equal(st.fragments_dropped, 20 - admitted);
    assert_int_equal(snapshot(h).stats.tx_frames - before, 20); /* the policy passed them all */
}

static void do_slirp_stats(struct harness *h, void *arg)
{
    *(struct net_slirp_stats *)arg = *net_slirp_stats(h->be);
}

static struct net_slirp_stats slirp_stats(struct harness *h)
{
    struct net_slirp_stats st;
    run_on_loop(h, do_slirp_stats, &st);
    return st;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_guest_flow_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragment_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dhcp_offer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dhcp_offer_under_host_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arp_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_only_drops_before_slirp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_reaches_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_mtu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers_retransmit_syn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_bad_address, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
