#include "test_net_frames.h"

#include <string.h>

const uint8_t frame_guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t broadcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

#define ETH_HLEN 14
#define IP_HLEN 20

uint16_t frame_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

uint32_t frame_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* The Internet checksum's running sum (RFC 1071), folded by csum_fold. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += frame_be16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void eth(uint8_t *buf, const uint8_t *dst, uint16_t type)
{
    memcpy(buf, dst, 6);
    memcpy(buf + 6, frame_guest_mac, 6);
    put16(buf + 12, type);
}

size_t frame_arp_request(uint8_t *buf, uint32_t sender_ip, uint32_t target_ip)
{
    memset(buf, 0, FRAME_BUF);
    eth(buf, broadcast_mac, 0x0806);
    uint8_t *a = buf + ETH_HLEN;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 1);
    memcpy(a + 8, frame_guest_mac, 6);
    put32(a + 14, sender_ip);
    put32(a + 24, target_ip);
    return 60; /* padded to Ethernet's minimum, as a NIC would */
}

/* Ethernet and IPv4 headers around an l4 payload already at buf + 34. */
static size_t ipv4(uint8_t *buf, uint32_t src, uint32_t dst, uint8_t proto, size_t l4_len)
{
    eth(buf, dst == 0xffffffffu ? broadcast_mac : (const uint8_t[6]){0x52, 0x55, 10, 0, 2, 2},
        0x0800);
    uint8_t *ip = buf + ETH_HLEN;
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, (uint16_t)(IP_HLEN + l4_len));
    put16(ip + 4, 0x1234);
    put16(ip + 6, 0x4000); /* don't fragment */
    ip[8] = 64;
    ip[9] = proto;
    put16(ip + 10, 0);
    put32(ip + 12, src);
    put32(ip + 16, dst);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
    return ETH_HLEN + IP_HLEN + l4_len;
}

size_t frame_udp(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                 const void *payload, size_t payload_len)
{
    memset(buf, 0, FRAME_BUF);
    uint8_t *u = buf + ETH_HLEN + IP_HLEN;
    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(8 + payload_len));
    put16(u + 6, 0); /* no checksum: allowed for UDP over IPv4 */
    memcpy(u + 8, payload, payload_len);
    return ipv4(buf, src, dst, 17, 8 + payload_len);
}

size_t frame_tcp_syn(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport)
{
    memset(buf, 0, FRAME_BUF);
    uint8_t *t = buf + ETH_HLEN + IP_HLEN;
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, 1000);  /* sequence number */
    t[12] = 5 << 4;      /* header length: 5 words */
    t[13] = 0x02;        /* SYN */
    put16(t + 14, 65535);
    uint8_t pseudo[12];
    put32(pseudo, src);
    put32(pseudo + 4, dst);
    pseudo[8] = 0;
    pseudo[9] = 6;
    put16(pseudo + 10, 20);
    put16(t + 16, csum_fold(csum_add(csum_add(0, pseudo, 12), t, 20)));
    return ipv4(buf, src, dst, 6, 20);
}

size_t frame_dhcp_discover(uint8_t *buf)
{
    uint8_t bootp[300] = {0};
    bootp[0] = 1; /* BOOTREQUEST */
    bootp[1] = 1; /* Ethernet */
    bootp[2] = 6;
    put32(bootp + 4, 0xc0ffee01); /* transaction id */
    memcpy(bootp + 28, frame_guest_mac, 6);
    static const uint8_t options[] = {99, 130, 83, 99, 53, 1, 1, 255}; /* cookie, DISCOVER */
    memcpy(bootp + 236, options, sizeof(options));
    return frame_udp(buf, 0, 68, 0xffffffffu, 67, bootp, sizeof(bootp));
}

void frame_make_fragment(uint8_t *buf, uint16_t id, int more, uint16_t offset8)
{
    uint8_t *ip = buf + ETH_HLEN;
    put16(ip + 4, id);
    put16(ip + 6, (uint16_t)((more ? 0x2000 : 0) | (offset8 & 0x1fff)));
    put16(ip + 10, 0);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
}
