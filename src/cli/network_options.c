/* --net and --publish: the network device and its port forwards. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_net(cove_config *config, struct run_options *opts, const char *arg)
{
    opts->net_given = true;
    if (strcmp(arg, "nat") == 0)
        return cove_config_set_network(config, COVE_NETWORK_NAT, COVE_POLICY_OPEN, NULL);
    if (strcmp(arg, "host-only") == 0)
        return cove_config_set_network(config, COVE_NETWORK_NAT, COVE_POLICY_HOST_ONLY, NULL);
    if (strcmp(arg, "none") == 0)
        return cove_config_set_network(config, COVE_NETWORK_NONE, COVE_POLICY_OPEN, NULL);
    if (strncmp(arg, "tap:", 4) == 0 && arg[4]) {
        if (cove_config_set_network_tap(config, arg + 4, NULL) == 0)
            return 0;
        fprintf(stderr, "cove: --net '%s': out of memory\n", arg);
        return -1;
    }
    fprintf(stderr, "cove: --net '%s': use nat, host-only, tap:NAME or none\n", arg);
    return -1;
}

static bool parse_port(const char *text, size_t len, uint16_t *port)
{
    uint64_t value;
    if (len > 5 || !parse_decimal(text, len, 1, 65535, &value))
        return false;
    *port = (uint16_t)value;
    return true;
}

/* [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp] */
int parse_publish(cove_config *config, const char *arg)
{
    cove_port_forward forward = {0};
    size_t len = strlen(arg);
    const char *slash = strchr(arg, '/');
    if (slash) {
        forward.udp = strcmp(slash, "/udp") == 0;
        if (!forward.udp && strcmp(slash, "/tcp") != 0)
            goto bad;
        len = (size_t)(slash - arg);
    }
    const char *last = memrchr(arg, ':', len);
    if (!last || !parse_port(last + 1, len - (size_t)(last + 1 - arg), &forward.guest_port))
        goto bad;
    const char *first = memrchr(arg, ':', (size_t)(last - arg));
    const char *host_port = first ? first + 1 : arg;
    if (!parse_port(host_port, (size_t)(last - host_port), &forward.host_port))
        goto bad;
    char addr[64] = "";
    if (first) {
        if ((size_t)(first - arg) >= sizeof(addr) || first == arg)
            goto bad;
        memcpy(addr, arg, (size_t)(first - arg));
        forward.host_addr = addr;
    }
    if (cove_config_add_port_forward(config, &forward) < 0) {
        fprintf(stderr, "cove: --publish '%s': out of memory\n", arg);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "cove: --publish '%s': use [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]\n", arg);
    return -1;
}

int apply_default_network(cove_config *config, struct run_options *opts)
{
    if (!opts->net_given && opts->command_count > 0 &&
        cove_config_set_network(config, COVE_NETWORK_NAT, COVE_POLICY_OPEN, NULL) < 0)
        return -1;
    /* cove-agent gives eth0 slirp's address under NAT; on a tap it only brings the link up
     * (the tap's network is the host's to know: the command sets an address or runs DHCP). */
    switch (cove_config_network(config, NULL)) {
    case COVE_NETWORK_NAT:
        return add_agent_word(opts, "cove.net=nat");
    case COVE_NETWORK_TAP:
        return add_agent_word(opts, "cove.net=link");
    case COVE_NETWORK_NONE:
        break;
    }
    return 0;
}
