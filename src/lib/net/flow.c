#include "net/flow.h"
#include "net/bytes.h"

#include <stdbool.h>

#define ETH_HLEN 14
#define ETHERTYPE_IPV4 0x0800
#define IPV4_MIN_HLEN 20
#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_FLAGS_OFFSET 13
#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define ICMP_ECHO 8
#define PORT_DHCP_SERVER 67

/* The transport protocol's part; l4_len bytes at l4 are inside the IP packet. */
static enum net_flow_kind classify_l4(uint8_t proto, const uint8_t *l4, size_t l4_len,
                                      uint32_t dst, uint32_t gateway, uint32_t dns,
                                      struct net_flow_key *key)
{
    switch (proto) {
    case PROTO_TCP:
        if (l4_len < 20 || (l4[TCP_FLAGS_OFFSET] & (TCP_SYN | TCP_ACK)) != TCP_SYN)
            return NET_FLOW_NONE;
        key->sport = net_be16(l4);
        return NET_FLOW_TCP_SYN;
    case PROTO_UDP:
        if (l4_len < 8 || net_be16(l4 + 2) == PORT_DHCP_SERVER)
            return NET_FLOW_NONE;
        key->sport = net_be16(l4);
        return NET_FLOW_UDP;
    case PROTO_ICMP:
        if (l4_len < 8 || l4[0] != ICMP_ECHO || dst == gateway || dst == dns)
            return NET_FLOW_NONE;
        key->sport = 0;
        return NET_FLOW_ICMP_ECHO;
    default:
        return NET_FLOW_NONE;
    }
}

enum net_flow_kind net_flow_classify(const uint8_t *frame, size_t len, uint32_t gateway,
                                     uint32_t dns, struct net_flow_key *key)
{
    if (len < ETH_HLEN + IPV4_MIN_HLEN || net_be16(frame + 12) != ETHERTYPE_IPV4)
        return NET_FLOW_NONE;
    const uint8_t *ip = frame + ETH_HLEN;
    size_t ip_len = len - ETH_HLEN;
    size_t hlen = (size_t)(ip[0] & 0xf) * 4;
    size_t total = net_be16(ip + 2);
    if (ip[0] >> 4 != 4 || hlen < IPV4_MIN_HLEN || hlen > total || total > ip_len)
        return NET_FLOW_NONE;
    uint16_t frag = net_be16(ip + 6);
    if ((frag & 0x2000) || (frag & 0x1fff))
        return NET_FLOW_FRAGMENT;
    *key = (struct net_flow_key){.proto = ip[9], .src = net_be32(ip + 12)};
    return classify_l4(ip[9], ip + hlen, total - hlen, net_be32(ip + 16), gateway, dns, key);
}
