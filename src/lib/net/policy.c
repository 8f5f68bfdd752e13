/*
 * Host-only classification, per EtherType:
 * - ARP is allowed when it is well-formed Ethernet/IPv4 ARP: it never leaves the virtual
 *   network (the backend answers for its own aliases) and the guest needs it to reach them.
 * - IPv4 is allowed to the host alias with any protocol (the alias is the host itself), to the
 *   DNS alias for UDP or TCP port 53 only (the backend relays those to the host's resolver),
 *   and as DHCP (UDP 68 -> 67) to the limited broadcast address, which is how a client without
 *   an address finds the server. Fragments to the DNS alias are dropped, since only a first,
 *   unfragmented packet shows its port; fragments to the host alias are fine, its address is in
 *   every fragment.
 * - IPv6 is dropped entirely, neighbour discovery included: the backend's network is IPv4 only,
 *   so there is no IPv6 host alias, and anything IPv6 could reach would be off the host.
 * - Every other EtherType (VLAN tags included) is dropped.
 */
#include "net/policy.h"
#include "net/bytes.h"

#include <stdbool.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ETHERTYPE_IPV6 0x86dd

#define ARP_LEN 28
#define IPV4_MIN_HLEN 20
#define IPV6_HLEN 40
#define IP_PROTO_TCP 6
#define IP_PROTO_UDP 17
#define TCP_MIN_HLEN 20
#define UDP_HLEN 8
#define IPV4_BROADCAST 0xffffffffu
#define PORT_DNS 53
#define PORT_DHCP_SERVER 67
#define PORT_DHCP_CLIENT 68

/* Ethernet hardware, IPv4 protocol addresses, request or reply. */
static enum net_verdict classify_arp(const uint8_t *arp, size_t len)
{
    if (len < ARP_LEN || net_be16(arp) != 1 || net_be16(arp + 2) != ETHERTYPE_IPV4 || arp[4] != 6 ||
        arp[5] != 4)
        return NET_VERDICT_DROP_MALFORMED;
    uint16_t op = net_be16(arp + 6);
    return op == 1 || op == 2 ? NET_VERDICT_ALLOW : NET_VERDICT_DROP_MALFORMED;
}

/* An IPv4 packet as the classifier sees it, every field already bounds-checked. */
struct ipv4_view {
    uint32_t dst;
    uint8_t proto;
    bool fragment;   /* more fragments follow, or this is not the first */
    const uint8_t *l4;
    size_t l4_len;   /* from the header's total length, not the frame (padding excluded) */
};

static bool parse_ipv4(const uint8_t *ip, size_t len, struct ipv4_view *v)
{
    if (len < IPV4_MIN_HLEN || ip[0] >> 4 != 4)
        return false;
    size_t hlen = (size_t)(ip[0] & 0xf) * 4;
    size_t total = net_be16(ip + 2);
    if (hlen < IPV4_MIN_HLEN || hlen > total || total > len)
        return false;
    uint16_t frag = net_be16(ip + 6);
    v->fragment = (frag & 0x2000) || (frag & 0x1fff);
    v->proto = ip[9];
    v->dst = net_be32(ip + 16);
    v->l4 = ip + hlen;
    v->l4_len = total - hlen;
    return true;
}

/* The destination port of an unfragmented TCP or UDP packet; -1 when it has none. */
static int dest_port(const struct ipv4_view *v)
{
    if (v->fragment)
        return -1;
    if (v->proto == IP_PROTO_UDP && v->l4_len >= UDP_HLEN)
        return net_be16(v->l4 + 2);
    if (v->proto == IP_PROTO_TCP && v->l4_len >= TCP_MIN_HLEN)
        return net_be16(v->l4 + 2);
    return -1;
}

static bool is_dhcp_request(const struct ipv4_view *v)
{
    return v->proto == IP_PROTO_UDP && dest_port(v) == PORT_DHCP_SERVER &&
           net_be16(v->l4) == PORT_DHCP_CLIENT;
}

static enum net_verdict classify_ipv4(const struct net_policy *p, const uint8_t *ip, size_t len)
{
    struct ipv4_view v;
    if (!parse_ipv4(ip, len, &v))
        return NET_VERDICT_DROP_MALFORMED;
    if (v.dst == p->gateway)
        return NET_VERDICT_ALLOW;
    if (v.dst == p->dns && dest_port(&v) == PORT_DNS)
        return NET_VERDICT_ALLOW;
    if (v.dst == IPV4_BROADCAST && is_dhcp_request(&v))
        return NET_VERDICT_ALLOW;
    return NET_VERDICT_DROP_POLICY;
}

static enum net_verdict classify_ipv6(const uint8_t *ip, size_t len)
{
    if (len < IPV6_HLEN || ip[0] >> 4 != 6 || net_be16(ip + 4) > len - IPV6_HLEN)
        return NET_VERDICT_DROP_MALFORMED;
    return NET_VERDICT_DROP_POLICY;
}

enum net_verdict net_policy_classify(const struct net_policy *policy, const uint8_t *frame,
                                     size_t len)
{
    if (!frame || len < NET_FRAME_MIN || len > NET_FRAME_MAX)
        return NET_VERDICT_DROP_MALFORMED;
    if (policy->mode == NET_POLICY_OPEN)
        return NET_VERDICT_ALLOW;
    const uint8_t *l3 = frame + NET_ETH_HLEN;
    size_t l3_len = len - NET_ETH_HLEN;
    switch (net_be16(frame + 12)) {
    case ETHERTYPE_ARP:
        return classify_arp(l3, l3_len);
    case ETHERTYPE_IPV4:
        return classify_ipv4(policy, l3, l3_len);
    case ETHERTYPE_IPV6:
        return classify_ipv6(l3, l3_len);
    default:
        return NET_VERDICT_DROP_POLICY;
    }
}
