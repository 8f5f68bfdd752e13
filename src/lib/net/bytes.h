/* Reading network byte order out of frames, which may sit at any alignment in guest memory. */
#ifndef COVE_NET_BYTES_H
#define COVE_NET_BYTES_H

#include <stdint.h>

static inline uint16_t net_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline uint32_t net_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
