/*
 * The KVM MSI router: GSIs, irqfds and the GSI routing table.
 *
 * The lock serializes allocation and table rebuilds (route changes come from vCPU threads as
 * the guest writes MSI-X tables). fire() takes no lock: a route's eventfd is written once,
 * before the route id is published through the atomic count, and never changes after.
 * Every buffer is sized for max_routes when the router is created, so nothing a guest does
 * allocates memory.
 */
#include "hv/kvm_msi.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct kvm_msi_router {
    struct kvm_vm *vm;
    unsigned gsi_base;
    unsigned max_routes;
    pthread_mutex_t lock; /* guards routes, table and allocation */
    atomic_uint count;    /* route ids handed out; fds[0..count) are valid */
    int *fds;
    struct kvm_msi_route *routes;
    struct kvm_irq_routing *table; /* room for every irqchip and MSI route */
};

static struct kvm_irq_routing_entry irqchip_route(unsigned gsi, unsigned chip, unsigned pin)
{
    return (struct kvm_irq_routing_entry){
        .gsi = gsi,
        .type = KVM_IRQ_ROUTING_IRQCHIP,
        .u.irqchip = {.irqchip = chip, .pin = pin},
    };
}

static struct kvm_irq_routing_entry msi_route(unsigned gsi, const struct kvm_msi_route *r)
{
    return (struct kvm_irq_routing_entry){
        .gsi = gsi,
        .type = KVM_IRQ_ROUTING_MSI,
        .u.msi = {.address_lo = (uint32_t)r->addr, .address_hi = (uint32_t)(r->addr >> 32),
                  .data = r->data},
    };
}

size_t kvm_msi_build_routing(unsigned gsi_base, const struct kvm_msi_route *routes, size_t count,
                             struct kvm_irq_routing_entry *out, size_t cap)
{
    if (cap < KVM_MSI_IRQCHIP_ROUTES || count > cap - KVM_MSI_IRQCHIP_ROUTES)
        return 0;
    size_t n = 0;
    /* Exactly KVM's default table, so legacy interrupts behave as before the first rebuild. */
    for (unsigned gsi = 0; gsi < KVM_MSI_IOAPIC_PINS; gsi++) {
        out[n++] = irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi);
        if (gsi < KVM_MSI_PIC_PINS)
            out[n++] = irqchip_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                                     gsi % 8);
    }
    for (size_t i = 0; i < count; i++)
        if (routes[i].on)
            out[n++] = msi_route(gsi_base + (unsigned)i, &routes[i]);
    return n;
}

/* Call with the lock held. */
static int rebuild(struct kvm_msi_router *m)
{
    size_t cap = KVM_MSI_IRQCHIP_ROUTES + (size_t)m->max_routes;
    size_t n = kvm_msi_build_routing(m->gsi_base, m->routes, atomic_load(&m->count),
                                     m->table->entries, cap);
    if (n == 0)
        return -ENOSPC;
    m->table->nr = (uint32_t)n;
    m->table->flags = 0;
    return ioctl(m->vm->vm_fd, KVM_SET_GSI_ROUTING, m->table) < 0 ? -errno : 0;
}

static bool same_route(const struct kvm_msi_route *a, const struct kvm_msi_route *b)
{
    return a->on == b->on && a->addr == b->addr && a->data == b->data;
}

static int sink_route(void *ctx, unsigned id, bool enabled, uint64_t addr, uint32_t data)
{
    struct kvm_msi_router *m = ctx;
    struct kvm_msi_route want = {.on = enabled, .addr = enabled ? addr : 0,
                                 .data = enabled ? data : 0};
    pthread_mutex_lock(&m->lock);
    int r = 0;
    if (id >= atomic_load(&m->count)) {
        r = -EINVAL;
    } else if (!same_route(&m->routes[id], &want)) {
        struct kvm_msi_route old = m->routes[id];
        m->routes[id] = want;
        r = rebuild(m);
        if (r < 0)
            m->routes[id] = old; /* KVM kept the previous table */
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

static int sink_fire(void *ctx, unsigned id)
{
    struct kvm_msi_router *m = ctx;
    if (id >= atomic_load(&m->count))
        return -EINVAL;
    uint64_t one = 1;
    if (write(m->fds[id], &one, sizeof(one)) == (ssize_t)sizeof(one))
        return 0;
    /* EAGAIN: the counter is saturated, so an interrupt is already on its way. */
    return errno == EAGAIN ? 0 : -errno;
}

/* Binds a fresh eventfd to GSI gsi; returns it or -errno. */
static int new_irqfd(struct kvm_msi_router *m, unsigned gsi)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    int r = kvm_irqfd_assign(m->vm, gsi, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

static void release_irqfd(struct kvm_msi_router *m, unsigned id)
{
    kvm_irqfd_deassign(m->vm, m->gsi_base + id, m->fds[id]);
    close(m->fds[id]);
    m->fds[id] = -1;
}

static int sink_alloc(void *ctx, unsigned count)
{
    struct kvm_msi_router *m = ctx;
    pthread_mutex_lock(&m->lock);
    unsigned first = atomic_load(&m->count);
    int r = count == 0 || count > m->max_routes - first ? -ENOSPC : 0;
    for (unsigned i = 0; r == 0 && i < count; i++) {
        int fd = new_irqfd(m, m->gsi_base + first + i);
        if (fd < 0) {
            while (i-- > 0)
                release_irqfd(m, first + i);
            r = fd;
            break;
        }
        m->fds[first + i] = fd;
    }
    if (r == 0)
        atomic_store(&m->count, first + count); /* publishes the fds to fire() */
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? r : (int)first;
}

struct msi_sink kvm_msi_router_sink(struct kvm_msi_router *m)
{
    return (struct msi_sink){
        .alloc = sink_alloc, .route = sink_route, .fire = sink_fire, .ctx = m};
}

static int check_kvm(struct kvm_vm *vm, unsigned gsi_base, unsigned max_routes, char *error,
                     size_t error_len)
{
    int gsis = kvm_check_extension(vm->kvm_fd, KVM_CAP_IRQ_ROUTING);
    if (!kvm_check_extension(vm->kvm_fd, KVM_CAP_IRQFD) || gsis <= 0) {
        snprintf(error, error_len, "KVM lacks irqfd or GSI routing, needed for MSI-X");
        return -ENOTSUP;
    }
    /* KVM bounds both GSI numbers and table entries by the same number. */
    if (gsi_base < KVM_MSI_IOAPIC_PINS || max_routes == 0 ||
        (uint64_t)gsi_base + max_routes > (uint64_t)gsis ||
        (uint64_t)KVM_MSI_IRQCHIP_ROUTES + max_routes > (uint64_t)gsis) {
        snprintf(error, error_len, "MSI routes %u..%u do not fit KVM's %d GSIs", gsi_base,
                 gsi_base + max_routes, gsis);
        return -ERANGE;
    }
    return 0;
}

struct kvm_msi_router *kvm_msi_router_new(struct kvm_vm *vm, unsigned gsi_base, unsigned max_routes,
                            char *error, size_t error_len)
{
    if (check_kvm(vm, gsi_base, max_routes, error, error_len) < 0)
        return NULL;
    struct kvm_msi_router *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(error, error_len, "MSI router: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->vm = vm;
    m->gsi_base = gsi_base;
    m->max_routes = max_routes;
    size_t entries = KVM_MSI_IRQCHIP_ROUTES + (size_t)max_routes;
    m->fds = calloc(max_routes, sizeof(*m->fds));
    m->routes = calloc(max_routes, sizeof(*m->routes));
    m->table = calloc(1, sizeof(*m->table) + entries * sizeof(m->table->entries[0]));
    if (!m->fds || !m->routes || !m->table) {
        snprintf(error, error_len, "MSI router: out of memory");
        kvm_msi_router_free(m);
        return NULL;
    }
    return m;
}

void kvm_msi_router_free(struct kvm_msi_router *m)
{
    if (!m)
        return;
    for (unsigned id = 0; id < atomic_load(&m->count); id++)
        release_irqfd(m, id);
    pthread_mutex_destroy(&m->lock);
    free(m->fds);
    free(m->routes);
    free(m->table);
    free(m);
}
