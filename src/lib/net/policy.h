/*
 * Egress policy for frames the guest sends: a pure classifier, applied before a backend sees
 * the frame, so a policy cannot be bypassed by whatever the backend's own parser accepts.
 *
 * Guest frames are hostile. Every header is bounds-checked against the frame's length before
 * it is read, and anything the classifier cannot parse is dropped under host-only (the policy
 * fails closed). Under open, only the frame size is checked: the backend parses the rest.
 */
#ifndef COVE_NET_POLICY_H
#define COVE_NET_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* An Ethernet header without a payload is the shortest frame worth handing on; the longest is
 * a 64 KiB IP packet (what TSO/UFO can produce) plus that header. */
#define NET_ETH_HLEN 14
#define NET_FRAME_MIN NET_ETH_HLEN
#define NET_FRAME_MAX (65535 + NET_ETH_HLEN)

enum net_policy_mode {
    NET_POLICY_OPEN,      /* everything the backend accepts */
    NET_POLICY_HOST_ONLY, /* the host alias, DNS through the DNS alias, ARP and DHCP only */
};

struct net_policy {
    enum net_policy_mode mode;
    uint32_t gateway; /* the host alias (IPv4, host byte order) */
    uint32_t dns;     /* the DNS alias (IPv4, host byte order) */
};

enum net_verdict {
    NET_VERDICT_ALLOW,
    NET_VERDICT_DROP_MALFORMED, /* too short, too long, or headers that do not add up */
    NET_VERDICT_DROP_POLICY,    /* well-formed, but the policy forbids it */
};

enum net_verdict net_policy_classify(const struct net_policy *policy, const uint8_t *frame,
                                     size_t len);

#endif
