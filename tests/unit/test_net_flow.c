/*
 * The flow classifier: which guest frames may make slirp open a socket (flow.h), with the key
 * slirp would look the socket up by; and that truncated or malformed headers never classify
 * as anything but NONE (and never read past the frame: the ASan build checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/flow.h"
#include "net/slirp.h"
#include "test_net_frames.h"

#define GUEST NET_SLIRP_GUEST
#define GW NET_SLIRP_GATEWAY
#define DNS NET_SLIRP_DNS

static enum net_flow_kind classify(const uint8_t *f, size_t len, struct net_flow_key *key)
{
    /* A copy of exactly len bytes on the heap, so a read past it is caught. */
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, f, len);
    enum net_flow_kind k = net_flow_classify(copy, len, GW, DNS, key);
    free(copy);
    return k;
}

static void test_kinds(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    struct net_flow_key key;
    size_t len = frame_tcp_syn(f, GUEST, 40000, IP4(1, 1, 1, 1), 80);
    assert_int_equal(classify(f, len, &key), NET_FLOW_TCP_SYN);
    assert_int_equal(key.proto, 6);
    assert_int_equal(key.src, GUEST);
    assert_int_equal(key.sport, 40000);
    f[14 + 20 + 13] = 0x12; /* SYN+ACK: an answer, never a new socket */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
    f[14 + 20 + 13] = 0x10; /* ACK */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);

    len = frame_udp(f, GUEST, 5353, GW, 53, "q", 1);
    assert_int_equal(classify(f, len, &key), NET_FLOW_UDP);
    assert_int_equal(key.proto, 17);
    assert_int_equal(key.sport, 5353);
    len = frame_dhcp_discover(f); /* answered inside slirp */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);

    len = frame_udp(f, GUEST, 1, IP4(9, 9, 9, 9), 2, "12345678", 8);
    f[14 + 9] = 1; /* ICMP; the UDP header's first byte becomes the type */
    f[14 + 20] = 8; /* echo request */
    assert_int_equal(classify(f, len, &key), NET_FLOW_ICMP_ECHO);
    f[14 + 20] = 0; /* echo reply */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);

    len = frame_udp(f, GUEST, 5353, GW, 53, "q", 1);
    frame_make_fragment(f, 7, 1, 0);
    assert_int_equal(classify(f, len, &key), NET_FLOW_FRAGMENT);
    frame_make_fragment(f, 7, 0, 100); /* the last, not the first */
    assert_int_equal(classify(f, len, &key), NET_FLOW_FRAGMENT);

    len = frame_arp_request(f, GUEST, GW);
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
}

/* A ping to the host or DNS alias is answered by slirp itself. */
static void test_ping_aliases(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    struct net_flow_key key;
    uint32_t dsts[] = {GW, DNS};
    for (unsigned i = 0; i < 2; i++) {
        size_t len = frame_udp(f, GUEST, 1, dsts[i], 2, "12345678", 8);
        f[14 + 9] = 1;
        f[14 + 20] = 8;
        assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
    }
}

/* Every truncation of a SYN, and headers whose lengths do not add up. */
static void test_hostile(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    struct net_flow_key key;
    size_t len = frame_tcp_syn(f, GUEST, 40000, GW, 80);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(classify(f, cut, &key), NET_FLOW_NONE);
    f[14] = 0x4f; /* a 60-byte IP header in a 40-byte packet */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
    f[14] = 0x44; /* shorter than the minimum */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
    f[14] = 0x65; /* version 6 in an IPv4 frame */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
    f[14] = 0x45;
    f[14 + 2] = 0xff; /* total length past the frame */
    assert_int_equal(classify(f, len, &key), NET_FLOW_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_ping_aliases),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
