/*
 * libFuzzer target for the flow classifier (net/flow.c): the input is one guest frame, copied
 * so that it ends where the allocation ends (ASan catches a read past it). The result must be
 * a known kind, and a key is only claimed for kinds that have one, with the protocol that
 * kind implies.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/flow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *frame = malloc(size ? size : 1);
    if (!frame)
        return 0;
    memcpy(frame, data, size);
    struct net_flow_key key = {.proto = 0xee};
    enum net_flow_kind kind = net_flow_classify(frame, size, 0x0a000202u, 0x0a000203u, &key);
    switch (kind) {
    case NET_FLOW_NONE:
    case NET_FLOW_FRAGMENT:
        break;
    case NET_FLOW_TCP_SYN:
        if (key.proto != 6)
            abort();
        break;
    case NET_FLOW_UDP:
        if (key.proto != 17)
            abort();
        break;
    case NET_FLOW_ICMP_ECHO:
        if (key.proto != 1 || key.sport != 0)
            abort();
        break;
    default:
        abort();
    }
    free(frame);
    return 0;
}
