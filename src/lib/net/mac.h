/*
 * MAC addresses for the guest's interface: parsed from the configuration, or derived from a
 * seed (the VM's name) so that a VM keeps its address across starts: guest-side state keyed
 * by the MAC (udev interface names, DHCP leases on a TAP bridge) then stays valid.
 */
#ifndef COVE_NET_MAC_H
#define COVE_NET_MAC_H

#include <stdint.h>

/* "52:54:00:12:34:56" (hex, either case). 0, or -EINVAL for anything else and for multicast
 * addresses, which no interface may have. */
int net_mac_parse(const char *text, uint8_t mac[6]);

/* A locally administered unicast address (02 bit set, 01 bit clear) from a hash of seed. */
void net_mac_from_seed(const char *seed, uint8_t mac[6]);

#endif
