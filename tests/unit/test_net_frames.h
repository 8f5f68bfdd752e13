/*
 * Hand-built guest frames for the network tests: Ethernet with ARP, IPv4 with UDP or TCP, and a
 * DHCP DISCOVER, checksummed as a real guest would (libslirp verifies IP and TCP checksums).
 * Each builder writes into buf (at least FRAME_BUF bytes) and returns the frame's length.
 */
#ifndef COVE_TEST_NET_FRAMES_H
#define COVE_TEST_NET_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_BUF 2048
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

extern const uint8_t frame_guest_mac[6];

uint16_t frame_be16(const uint8_t *p);
uint32_t frame_be32(const uint8_t *p);

size_t frame_arp_request(uint8_t *buf, uint32_t sender_ip, uint32_t target_ip);
size_t frame_udp(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                 const void *payload, size_t payload_len);
size_t frame_tcp_syn(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport);
/* From 0.0.0.0:68 to 255.255.255.255:67, client hardware address frame_guest_mac. */
size_t frame_dhcp_discover(uint8_t *buf);
/* Turns the IPv4 packet in buf into a fragment (identification id, more fragments following
 * or not, offset in 8-byte units), its header checksum redone. */
void frame_make_fragment(uint8_t *buf, uint16_t id, int more, uint16_t offset8);

#endif
