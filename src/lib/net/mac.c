#include "net/mac.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

int net_mac_parse(const char *text, uint8_t mac[6])
{
    unsigned b[6];
    char end;
    if (!text || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
                        &b[5], &end) != 6)
        return -EINVAL;
    /* sscanf also takes "1:2:3:4:5:6" and leading spaces or signs: insist on the canonical
     * 17 characters of hex digits and colons. */
    for (int i = 0; i < 17; i++) {
        char c = text[i];
        bool colon = i % 3 == 2;
        bool hex = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
        if (colon ? c != ':' : !hex)
            return -EINVAL;
    }
    if (b[0] & 1)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    return 0;
}

/* FNV-1a: stable across hosts and versions, which is all that is asked of it here. */
void net_mac_from_seed(const char *seed, uint8_t mac[6])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = seed ? seed : ""; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3ULL;
    }
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)(h >> (8 * i));
    mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02);
}
