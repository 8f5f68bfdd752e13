#include "net/vnet_hdr.h"

#include "net/policy.h"

static bool csum_ok(const uint8_t *hdr, size_t len, unsigned offloads)
{
    if (!(hdr[0] & NET_VNET_F_NEEDS_CSUM))
        return true;
    size_t start = net_vnet_get16(hdr, NET_VNET_CSUM_START);
    size_t offset = net_vnet_get16(hdr, NET_VNET_CSUM_OFFSET);
    return (offloads & NET_OFFLOAD_CSUM) && net_csum_field_fits(len, start, offset);
}

/* The offload a gso_type (ECN bit aside) needs, or 0 for one never accepted. */
static unsigned gso_offload(uint8_t type)
{
    switch (type) {
    case NET_VNET_GSO_TCPV4:
        return NET_OFFLOAD_TSO4;
    case NET_VNET_GSO_TCPV6:
        return NET_OFFLOAD_TSO6;
    default:
        return 0;
    }
}

static bool gso_ok(const uint8_t *hdr, size_t len, unsigned offloads)
{
    uint8_t type = hdr[1];
    if (type == NET_VNET_GSO_NONE)
        return true;
    if ((type & NET_VNET_GSO_ECN) && !(offloads & NET_OFFLOAD_ECN))
        return false;
    unsigned need = gso_offload((uint8_t)(type & ~NET_VNET_GSO_ECN));
    uint16_t size = net_vnet_get16(hdr, NET_VNET_GSO_SIZE);
    /* Segments are checksummed from the partial sum, so a GSO frame without it is bogus. */
    return need && (offloads & need) && (hdr[0] & NET_VNET_F_NEEDS_CSUM) && size > 0 &&
           size <= len && net_vnet_get16(hdr, NET_VNET_HDR_LEN) <= len;
}

bool net_vnet_hdr_valid(const uint8_t hdr[NET_VNET_HDR_SIZE], size_t len, unsigned offloads)
{
    if (hdr[0] & ~(NET_VNET_F_NEEDS_CSUM | NET_VNET_F_DATA_VALID))
        return false;
    return csum_ok(hdr, len, offloads) && gso_ok(hdr, len, offloads);
}
