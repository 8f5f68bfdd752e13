/*
 * The egress policy: under host-only the guest reaches the host alias, the DNS alias on port
 * 53, ARP and DHCP, and nothing else; truncated and garbage frames are dropped without reading
 * past their end (the ASan build checks that); open passes whatever has a sane size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/policy.h"
#include "test_net_frames.h"

#define GUEST IP4(10, 0, 2, 15)
#define GATEWAY IP4(10, 0, 2, 2)
#define DNS IP4(10, 0, 2, 3)
#define INTERNET IP4(1, 1, 1, 1)

static const struct net_policy host_only = {NET_POLICY_HOST_ONLY, GATEWAY, DNS};
static const struct net_policy open_policy = {NET_POLICY_OPEN, GATEWAY, DNS};

static enum net_verdict classify(const uint8_t *frame, size_t len)
{
    return net_policy_classify(&host_only, frame, len);
}

static void test_tcp_to_gateway_allowed(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    assert_int_equal(classify(f, frame_tcp_syn(f, GUEST, 40000, GATEWAY, 8080)), NET_VERDICT_ALLOW);
    assert_int_equal(classify(f, frame_udp(f, GUEST, 40000, GATEWAY, 9999, "x", 1)),
                     NET_VERDICT_ALLOW);
}

static void test_internet_dropped(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    assert_int_equal(classify(f, frame_tcp_syn(f, GUEST, 40000, INTERNET, 443)),
                     NET_VERDICT_DROP_POLICY);
    assert_int_equal(classify(f, frame_udp(f, GUEST, 40000, INTERNET, 53, "q", 1)),
                     NET_VERDICT_DROP_POLICY);
    /* Another address on the virtual network is not the host either. */
    assert_int_equal(classify(f, frame_tcp_syn(f, GUEST, 40000, IP4(10, 0, 2, 4), 80)),
                     NET_VERDICT_DROP_POLICY);
    /* The same frames pass when the policy is open. */
    size_t len = frame_tcp_syn(f, GUEST, 40000, INTERNET, 443);
    assert_int_equal(net_policy_classify(&open_policy, f, len), NET_VERDICT_ALLOW);
}

static void test_dns_alias_port_53_only(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    assert_int_equal(classify(f, frame_udp(f, GUEST, 40000, DNS, 53, "query", 5)),
                     NET_VERDICT_ALLOW);
    assert_int_equal(classify(f, frame_tcp_syn(f, GUEST, 40000, DNS, 53)), NET_VERDICT_ALLOW);
    assert_int_equal(classify(f, frame_udp(f, GUEST, 40000, DNS, 54, "x", 1)),
                     NET_VERDICT_DROP_POLICY);
    assert_int_equal(classify(f, frame_tcp_syn(f, GUEST, 40000, DNS, 80)),
                     NET_VERDICT_DROP_POLICY);
    /* A fragment hides its port: not allowed to the DNS alias. */
    size_t len = frame_udp(f, GUEST, 40000, DNS, 53, "query", 5);
    f[14 + 6] = 0x20; /* more fragments */
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_POLICY);
}

static void test_arp_and_dhcp_allowed(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    assert_int_equal(classify(f, frame_arp_request(f, GUEST, GATEWAY)), NET_VERDICT_ALLOW);
    assert_int_equal(classify(f, frame_dhcp_discover(f)), NET_VERDICT_ALLOW);
    /* Broadcast that is not DHCP is dropped. */
    assert_int_equal(classify(f, frame_udp(f, GUEST, 40000, 0xffffffffu, 67, "x", 1)),
                     NET_VERDICT_DROP_POLICY);
    /* ARP with the wrong address sizes is not ARP we understand. */
    size_t len = frame_arp_request(f, GUEST, GATEWAY);
    f[14 + 5] = 16;
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_MALFORMED);
}

static void test_ipv6_and_other_types_dropped(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF] = {0};
    f[12] = 0x86;
    f[13] = 0xdd;
    f[14] = 0x60; /* version 6, empty payload */
    assert_int_equal(classify(f, 14 + 40), NET_VERDICT_DROP_POLICY);
    f[18] = 0x10; /* payload length 4096, more than the frame holds */
    assert_int_equal(classify(f, 14 + 40), NET_VERDICT_DROP_MALFORMED);
    f[12] = 0x81; /* a VLAN tag */
    f[13] = 0x00;
    assert_int_equal(classify(f, 64), NET_VERDICT_DROP_POLICY);
}

/* Every prefix of valid frames is judged from its own bytes only (ASan sees each one in an
 * exact-size heap copy); none may be allowed unless it is a whole frame plus padding. */
static void check_truncations(const uint8_t *frame, size_t len, size_t min_allowed)
{
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, frame, n);
        enum net_verdict v = classify(copy, n);
        if (n < min_allowed)
            assert_int_not_equal(v, NET_VERDICT_ALLOW);
        free(copy);
    }
}

static void test_truncated_frames_dropped(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    check_truncations(f, frame_tcp_syn(f, GUEST, 40000, GATEWAY, 80), 14 + 20 + 20);
    check_truncations(f, frame_arp_request(f, GUEST, GATEWAY), 14 + 28);
    check_truncations(f, frame_dhcp_discover(f), 14 + 20 + 8 + 300);
    assert_int_equal(classify(NULL, 0), NET_VERDICT_DROP_MALFORMED);
    assert_int_equal(net_policy_classify(&open_policy, f, 13), NET_VERDICT_DROP_MALFORMED);
    assert_int_equal(net_policy_classify(&open_policy, f, NET_FRAME_MAX + 1),
                     NET_VERDICT_DROP_MALFORMED);
}

static void test_bogus_ipv4_headers_dropped(void **state)
{
    (void)state;
    uint8_t f[FRAME_BUF];
    size_t len = frame_tcp_syn(f, GUEST, 40000, GATEWAY, 80);
    f[14] = 0x44; /* header length 16 < 20 */
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_MALFORMED);
    f[14] = 0x4f; /* header length 60 > total length 40 */
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_MALFORMED);
    f[14] = 0x55; /* version 5 */
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_MALFORMED);
    f[14] = 0x45;
    f[16] = 0xff; /* total length beyond the frame */
    assert_int_equal(classify(f, len), NET_VERDICT_DROP_MALFORMED);
}

/* Pseudo-random garbage never crashes and is never allowed to anywhere but the aliases. */
static void test_garbage_frames(void **state)
{
    (void)state;
    uint8_t f[256];
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof(f));
        for (size_t i = 0; i < len; i++)
            f[i] = (uint8_t)rand_r(&seed);
        if (len > 14 && round % 2) {
            f[12] = 0x08; /* mostly IPv4, to get past the EtherType */
            f[13] = 0x00;
            f[14] = (uint8_t)(0x40 | (f[14] & 0xf));
        }
        if (classify(f, len) == NET_VERDICT_ALLOW && frame_be16(f + 12) == 0x0800) {
            uint32_t dst = frame_be32(f + 14 + 16);
            assert_true(dst == GATEWAY || dst == DNS || dst == 0xffffffffu);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_to_gateway_allowed),
        cmocka_unit_test(test_internet_dropped),
        cmocka_unit_test(test_dns_alias_port_53_only),
        cmocka_unit_test(test_arp_and_dhcp_allowed),
        cmocka_unit_test(test_ipv6_and_other_types_dropped),
        cmocka_unit_test(test_truncated_frames_dropped),
        cmocka_unit_test(test_bogus_ipv4_headers_dropped),
        cmocka_unit_test(test_garbage_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
