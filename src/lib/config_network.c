/* The network device of a configuration and its port forwards: recording, copying, checks. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "net/mac.h"

int cove_config_set_network(cove_config *config, cove_network_kind kind,
                            cove_network_policy policy, const char *mac)
{
    char *copy = mac && mac[0] ? strdup(mac) : NULL;
    if (mac && mac[0] && !copy)
        return -ENOMEM;
    free(config->mac);
    free(config->tap_name);
    config->mac = copy;
    config->tap_name = NULL;
    config->network = kind;
    config->network_policy = policy;
    return 0;
}

int cove_config_set_network_tap(cove_config *config, const char *tap_name, const char *mac)
{
    if (!tap_name || !tap_name[0])
        return -EINVAL;
    char *name = strdup(tap_name);
    if (!name)
        return -ENOMEM;
    int r = cove_config_set_network(config, COVE_NETWORK_TAP, COVE_POLICY_OPEN, mac);
    if (r < 0) {
        free(name);
        return r;
    }
    config->tap_name = name;
    return 0;
}

const char *cove_config_network_tap(const cove_config *config)
{
    return config->network == COVE_NETWORK_TAP ? config->tap_name : NULL;
}

cove_network_kind cove_config_network(const cove_config *config, cove_network_policy *policy)
{
    if (policy)
        *policy = config->network_policy;
    return config->network;
}

int cove_config_add_port_forward(cove_config *config, const cove_port_forward *forward)
{
    if (!forward)
        return -EINVAL;
    if (config->forward_count >= 1024)
        return -E2BIG;
    struct cove_forward_config *grown =
        realloc(config->forwards, (config->forward_count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    config->forwards = grown;
    const char *addr = forward->host_addr && forward->host_addr[0] ? forward->host_addr
                                                                    : "127.0.0.1";
    struct cove_forward_config f = {.udp = forward->udp,
                                    .host_addr = strdup(addr),
                                    .host_port = forward->host_port,
                                    .guest_port = forward->guest_port};
    if (!f.host_addr)
        return -ENOMEM;
    config->forwards[config->forward_count] = f;
    return (int)config->forward_count++;
}

size_t cove_config_port_forward_count(const cove_config *config)
{
    return config->forward_count;
}

void config_free_network(cove_config *config)
{
    for (size_t i = 0; i < config->forward_count; i++)
        free(config->forwards[i].host_addr);
    free(config->forwards);
    free(config->mac);
    free(config->tap_name);
    config->forwards = NULL;
    config->forward_count = 0;
    config->mac = NULL;
    config->tap_name = NULL;
}

int config_copy_network(cove_config *copy, const cove_config *config)
{
    if (config->mac && !(copy->mac = strdup(config->mac)))
        return -ENOMEM;
    if (config->tap_name && !(copy->tap_name = strdup(config->tap_name)))
        return -ENOMEM;
    for (size_t i = 0; i < config->forward_count; i++) {
        const struct cove_forward_config *f = &config->forwards[i];
        const cove_port_forward forward = {
            .udp = f->udp, .host_addr = f->host_addr, .host_port = f->host_port,
            .guest_port = f->guest_port};
        if (cove_config_add_port_forward(copy, &forward) < 0)
            return -ENOMEM;
    }
    return 0;
}

static void check_forward(const cove_config *config, size_t index, config_problem_fn problem,
                          void *ctx)
{
    const struct cove_forward_config *f = &config->forwards[index];
    const char *proto = f->udp ? "udp" : "tcp";
    struct in_addr addr;
    if (inet_pton(AF_INET, f->host_addr, &addr) != 1)
        config_report(problem, ctx, "port forward %s %s:%u: not an IPv4 address", proto, f->host_addr,
               f->host_port);
    if (f->host_port == 0 || f->guest_port == 0)
        config_report(problem, ctx, "port forward %s %s:%u -> %u: ports must be 1 to 65535", proto,
               f->host_addr, f->host_port, f->guest_port);
    for (size_t i = 0; i < index; i++) {
        const struct cove_forward_config *o = &config->forwards[i];
        if (o->udp == f->udp && o->host_port == f->host_port &&
            strcmp(o->host_addr, f->host_addr) == 0) {
            config_report(problem, ctx, "port forward %s %s:%u: given twice", proto, f->host_addr,
                   f->host_port);
            return;
        }
    }
}

/* False only when sysfs says the interface is no TAP; without sysfs, attaching will tell. */
static bool is_tap(const char *name)
{
    char path[96];
    snprintf(path, sizeof(path), "/sys/class/net/%s", name);
    if (access(path, F_OK) != 0)
        return true;
    snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", name);
    FILE *f = fopen(path, "re");
    char flags[32] = "";
    if (f) {
        if (!fgets(flags, sizeof(flags), f))
            flags[0] = '\0';
        fclose(f);
    }
    return flags[0] && (strtoul(flags, NULL, 16) & IFF_TAP);
}

/* The device must exist and be a TAP (only TUN/TAP devices have tun_flags, and a TAP's has
 * IFF_TAP). What attaching may need (privilege, a free queue) is found out at start. */
static void check_tap(const char *name, config_problem_fn problem, void *ctx)
{
    if (!name || !name[0]) {
        config_report(problem, ctx, "network: a TAP attachment needs a device name "
                                    "(cove_config_set_network_tap)");
        return;
    }
    /* Linux's own rule (dev_valid_name), so a bad name is not mistaken for a missing one. */
    if (strlen(name) > COVE_TAP_NAME_MAX || strpbrk(name, "/: \t\n") ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        config_report(problem, ctx, "tap '%s': not a device name (1 to %d characters, none of "
                                    "'/', ':' or spaces)", name, COVE_TAP_NAME_MAX);
        return;
    }
    if (if_nametoindex(name) == 0) {
        config_report(problem, ctx, "tap '%s': no such device (create it first: ip tuntap add "
                                    "dev %s mode tap [user USER])", name, name);
        return;
    }
    if (!is_tap(name))
        config_report(problem, ctx, "tap '%s': not a TAP device (a TUN device or another kind "
                                    "of interface)", name);
}

void config_check_network(const cove_config *config, config_problem_fn problem, void *ctx)
{
    if (config->network != COVE_NETWORK_NONE && config->network != COVE_NETWORK_NAT &&
        config->network != COVE_NETWORK_TAP)
        config_report(problem, ctx, "network: unknown kind %d", (int)config->network);
    if (config->network == COVE_NETWORK_TAP) {
        check_tap(config->tap_name, problem, ctx);
        if (config->network_policy != COVE_POLICY_OPEN)
            config_report(problem, ctx, "network: the host-only policy applies to NAT only "
                                        "(a tap's traffic is the host's to filter)");
    }
    if (config->network_policy != COVE_POLICY_OPEN &&
        config->network_policy != COVE_POLICY_HOST_ONLY)
        config_report(problem, ctx, "network: unknown policy %d", (int)config->network_policy);
    uint8_t mac[6];
    if (config->mac && net_mac_parse(config->mac, mac) < 0)
        config_report(problem, ctx, "network: MAC '%s' is not a unicast aa:bb:cc:dd:ee:ff address",
               config->mac);
    if (config->forward_count && config->network != COVE_NETWORK_NAT)
        config_report(problem, ctx, "port forwards need NAT networking (cove_config_set_network)");
    if (config->forward_count > COVE_FORWARD_MAX)
        config_report(problem, ctx, "port forwards: %zu given, at most %d", config->forward_count,
               COVE_FORWARD_MAX);
    for (size_t i = 0; i < config->forward_count; i++)
        check_forward(config, i, problem, ctx);
}
