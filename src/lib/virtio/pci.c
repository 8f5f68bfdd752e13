#include "virtio/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Capability types (virtio 1.2, 4.1.4). */
enum {
    CAP_COMMON = 1,
    CAP_NOTIFY = 2,
    CAP_ISR = 3,
    CAP_DEVICE = 4,
    CAP_PCI_CFG = 5,
};

/* virtio_pci_common_cfg (4.1.4.3). */
enum {
    COMMON_DEVICE_FEATURE_SELECT = 0x00,
    COMMON_DEVICE_FEATURE = 0x04,
    COMMON_DRIVER_FEATURE_SELECT = 0x08,
    COMMON_DRIVER_FEATURE = 0x0c,
    COMMON_CONFIG_MSIX_VECTOR = 0x10,
    COMMON_NUM_QUEUES = 0x12,
    COMMON_DEVICE_STATUS = 0x14,
    COMMON_CONFIG_GENERATION = 0x15,
    COMMON_QUEUE_SELECT = 0x16,
    COMMON_QUEUE_SIZE = 0x18,
    COMMON_QUEUE_MSIX_VECTOR = 0x1a,
    COMMON_QUEUE_ENABLE = 0x1c,
    COMMON_QUEUE_NOTIFY_OFF = 0x1e,
    COMMON_QUEUE_DESC = 0x20,
    COMMON_QUEUE_DRIVER = 0x28,
    COMMON_QUEUE_DEVICE = 0x30,
};

/* The PCI configuration access capability's fields, from the capability's start. */
enum {
    PCI_CFG_BAR = 4,
    PCI_CFG_OFFSET = 8,
    PCI_CFG_LENGTH = 12,
    PCI_CFG_DATA = 16,
    PCI_CFG_CAP_LEN = 20,
};

#define NO_VECTOR 0xffff
#define ISR_QUEUE 0x1
#define ISR_CONFIG 0x2
#define TRANSPORT_FEATURES                                                                        \
    ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) | (1ULL << VIRTIO_F_INDIRECT_DESC))

struct vp_queue {
    struct virtio_pci *vp;
    unsigned index;
    uint16_t size;
    uint16_t msix_vector;
    bool enabled;
    uint64_t desc, driver, device;
    int kick_fd;
    bool ioeventfd; /* kick_fd is bound to the notify address in the kernel */
};

/* Work a vCPU thread hands to the I/O loop and waits for. */
enum vp_op { OP_NONE, OP_RESET, OP_ACTIVATE };

struct virtio_pci {
    struct pci_device pci; /* must stay put: the bus points at it */
    struct virtio_device *dev;
    struct virtio_pci_host host;
    struct msix *msix;
    int pci_cfg_cap; /* config offset of the PCI configuration access capability */

    pthread_mutex_t lock; /* the registers below; never held while waiting for the loop */
    uint32_t device_feature_select;
    uint32_t driver_feature_select;
    uint64_t driver_features;
    uint16_t config_vector;
    uint8_t status;
    uint16_t queue_select;
    struct vp_queue *queues;

    atomic_uint isr;
    atomic_uint config_generation;
    atomic_bool live; /* DRIVER_OK and not NEEDS_RESET: kicks reach the device */
    atomic_uint fault_reports;
    char name[160]; /* "virtio-fs at PCI 00:05.0 (share 'job')", for the reports */

    int control_fd; /* wakes the loop for pending_op */
    enum vp_op pending_op;
    pthread_cond_t op_done;
};

static uint64_t offered_features(const struct virtio_pci *vp)
{
    return vp->dev->device_features | TRANSPORT_FEATURES;
}

/* ---- interrupts, from the device on the I/O loop ---- */

static void notify_vector(struct virtio_pci *vp, uint16_t vector)
{
    if (vector != NO_VECTOR)
        msix_notify(vp->msix, vector);
}

static void signal_used(void *transport, unsigned index)
{
    struct virtio_pci *vp = transport;
    atomic_fetch_or(&vp->isr, ISR_QUEUE);
    pthread_mutex_lock(&vp->lock);
    uint16_t vector = vp->queues[index].msix_vector;
    pthread_mutex_unlock(&vp->lock);
    notify_vector(vp, vector);
}

static void signal_config(void *transport)
{
    struct virtio_pci *vp = transport;
    atomic_fetch_add(&vp->config_generation, 1);
    atomic_fetch_or(&vp->isr, ISR_CONFIG);
    pthread_mutex_lock(&vp->lock);
    uint16_t vector = vp->config_vector;
    pthread_mutex_unlock(&vp->lock);
    notify_vector(vp, vector);
}

static void report_fault(struct virtio_pci *vp, unsigned queue, const char *why)
{
    if (!vp->host.report_fault)
        return;
    unsigned n = atomic_fetch_add(&vp->fault_reports, 1);
    char line[256];
    if (n < VIRTIO_PCI_MAX_FAULT_REPORTS)
        snprintf(line, sizeof(line),
                 "%s: the guest's driver broke queue %u (%s); the device is stopped until the "
                 "driver resets it",
                 vp->name, queue, why);
    else if (n == VIRTIO_PCI_MAX_FAULT_REPORTS)
        snprintf(line, sizeof(line), "%s: the guest's driver keeps breaking the device; further "
                 "faults are not reported", vp->name);
    else
        return;
    vp->host.report_fault(vp->host.ctx, line);
}

/* The driver broke the protocol: the device stops until the driver resets it (2.1.2). */
static void stop_device(struct virtio_pci *vp, unsigned queue, const char *why)
{
    atomic_store(&vp->live, false);
    pthread_mutex_lock(&vp->lock);
    bool was_live = vp->status & VIRTIO_STATUS_DRIVER_OK;
    bool was_stopped = vp->status & VIRTIO_STATUS_NEEDS_RESET;
    vp->status |= VIRTIO_STATUS_NEEDS_RESET;
    pthread_mutex_unlock(&vp->lock);
    if (!was_stopped)
        report_fault(vp, queue, why);
    if (was_live)
        signal_config(vp);
}

static void needs_reset(void *transport, unsigned queue, int err)
{
    stop_device(transport, queue, virtq_error_text(err));
}

/* Makes the loop call queue_notify for q, as a guest kick through the ioeventfd does. */
static void poke_queue(struct vp_queue *q)
{
    uint64_t one = 1;
    if (write(q->kick_fd, &one, sizeof(one)) < 0) {
        /* saturated: a kick is pending anyway */
    }
}

static void requeue(void *transport, unsigned index)
{
    struct virtio_pci *vp = transport;
    if (index < vp->dev->num_queues)
        poke_queue(&vp->queues[index]);
}

static const struct virtio_transport_ops transport_ops = {
    .signal_used = signal_used,
    .signal_config = signal_config,
    .needs_reset = needs_reset,
    .requeue = requeue,
};

/* ---- work on the I/O loop ---- */

static void on_kick(void *opaque, uint32_t events)
{
    struct vp_queue *q = opaque;
    (void)events;
    uint64_t count;
    if (read(q->kick_fd, &count, sizeof(count)) < 0)
        return;
    if (atomic_load(&q->vp->live) && q->vp->dev->queue_enabled[q->index])
        q->vp->dev->ops->queue_notify(q->vp->dev, q->index);
}

static void reset_registers_locked(struct virtio_pci *vp)
{
    vp->device_feature_select = vp->driver_feature_select = 0;
    vp->driver_features = 0;
    vp->config_vector = NO_VECTOR;
    vp->status = 0;
    vp->queue_select = 0;
    for (unsigned i = 0; i < vp->dev->num_queues; i++) {
        struct vp_queue *q = &vp->queues[i];
        q->size = vp->dev->queue_max_size;
        q->msix_vector = NO_VECTOR;
        q->enabled = false;
        q->desc = q->driver = q->device = 0;
    }
    atomic_store(&vp->isr, 0);
}

static void do_reset(struct virtio_pci *vp)
{
    struct virtio_device *dev = vp->dev;
    atomic_store(&vp->live, false);
    if (dev->ops->reset)
        dev->ops->reset(dev);
    memset(dev->queues, 0, dev->num_queues * sizeof(*dev->queues));
    memset(dev->queue_enabled, 0, dev->num_queues * sizeof(*dev->queue_enabled));
    dev->driver_features = 0;
    pthread_mutex_lock(&vp->lock);
    reset_registers_locked(vp);
    pthread_mutex_unlock(&vp->lock);
}

/* Sets up the rings the driver enabled; a ring outside RAM or misaligned is a driver error.
 * Returns the index of such a queue, or -1 when all are good. */
static int init_queues(struct virtio_pci *vp)
{
    struct virtio_device *dev = vp->dev;
    bool event_idx = virtio_has_feature(dev, VIRTIO_F_EVENT_IDX);
    bool indirect = virtio_has_feature(dev, VIRTIO_F_INDIRECT_DESC);
    pthread_mutex_lock(&vp->lock);
    int bad = -1;
    for (unsigned i = 0; i < dev->num_queues && bad < 0; i++) {
        struct vp_queue *q = &vp->queues[i];
        dev->queue_enabled[i] = q->enabled;
        if (q->enabled && virtq_init(&dev->queues[i], vp->host.mem, q->size, q->desc, q->driver,
                                     q->device, event_idx, indirect) < 0)
            bad = (int)i;
    }
    pthread_mutex_unlock(&vp->lock);
    return bad;
}

static void do_activate(struct virtio_pci *vp)
{
    struct virtio_device *dev = vp->dev;
    int bad = init_queues(vp);
    if (bad >= 0) {
        stop_device(vp, (unsigned)bad, "a queue size or ring address the device cannot use");
        return;
    }
    atomic_store(&vp->live, true);
    if (dev->ops->activate)
        dev->ops->activate(dev);
    /* A kick that raced with activation must not be lost: look at every queue once. */
    for (unsigned i = 0; i < dev->num_queues; i++)
        if (dev->queue_enabled[i] && atomic_load(&vp->live))
            dev->ops->queue_notify(dev, i);
}

static void on_control(void *opaque, uint32_t events)
{
    struct virtio_pci *vp = opaque;
    (void)events;
    uint64_t count;
    if (read(vp->control_fd, &count, sizeof(count)) < 0)
        return;
    pthread_mutex_lock(&vp->lock);
    enum vp_op op = vp->pending_op;
    pthread_mutex_unlock(&vp->lock);
    if (op == OP_RESET)
        do_reset(vp);
    else if (op == OP_ACTIVATE)
        do_activate(vp);
    pthread_mutex_lock(&vp->lock);
    vp->pending_op = OP_NONE;
    pthread_cond_broadcast(&vp->op_done);
    pthread_mutex_unlock(&vp->lock);
}

/* From a vCPU thread: runs op on the I/O loop and waits, so the device sees one thread. */
static void run_on_loop(struct virtio_pci *vp, enum vp_op op)
{
    pthread_mutex_lock(&vp->lock);
    while (vp->pending_op != OP_NONE)
        pthread_cond_wait(&vp->op_done, &vp->lock);
    vp->pending_op = op;
    uint64_t one = 1;
    if (write(vp->control_fd, &one, sizeof(one)) < 0) {
        /* the counter cannot saturate with one op in flight */
    }
    while (vp->pending_op == op)
        pthread_cond_wait(&vp->op_done, &vp->lock);
    pthread_mutex_unlock(&vp->lock);
}

/* ---- the common configuration structure, from vCPU threads ---- */

static struct vp_queue *selected_queue(struct virtio_pci *vp)
{
    return vp->queue_select < vp->dev->num_queues ? &vp->queues[vp->queue_select] : NULL;
}

static uint64_t queue_field(const struct vp_queue *q, unsigned offset)
{
    switch (offset) {
    case COMMON_QUEUE_SIZE: return q->size;
    case COMMON_QUEUE_MSIX_VECTOR: return q->msix_vector;
    case COMMON_QUEUE_ENABLE: return q->enabled;
    case COMMON_QUEUE_NOTIFY_OFF: return q->index;
    case COMMON_QUEUE_DESC: return q->desc;
    case COMMON_QUEUE_DRIVER: return q->driver;
    case COMMON_QUEUE_DEVICE: return q->device;
    default: return 0;
    }
}

/* The register at offset, read whole; reads of part of a register are served from it. */
static uint64_t common_register(struct virtio_pci *vp, unsigned offset)
{
    uint64_t features = offered_features(vp);
    switch (offset) {
    case COMMON_DEVICE_FEATURE_SELECT: return vp->device_feature_select;
    case COMMON_DEVICE_FEATURE:
        return vp->device_feature_select < 2 ? (uint32_t)(features >> (32 * vp->device_feature_select)) : 0;
    case COMMON_DRIVER_FEATURE_SELECT: return vp->driver_feature_select;
    case COMMON_DRIVER_FEATURE:
        return vp->driver_feature_select < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->driver_feature_select)) : 0;
    case COMMON_CONFIG_MSIX_VECTOR: return vp->config_vector;
    case COMMON_NUM_QUEUES: return vp->dev->num_queues;
    case COMMON_DEVICE_STATUS: return vp->status;
    case COMMON_CONFIG_GENERATION: return atomic_load(&vp->config_generation) & 0xff;
    case COMMON_QUEUE_SELECT: return vp->queue_select;
    default: {
        struct vp_queue *q = selected_queue(vp);
        return q ? queue_field(q, offset) : 0; /* size 0 tells the driver: no such queue */
    }
    }
}

/* Register start and width for an offset, so that 4-byte halves of 64-bit fields work. */
static bool register_at(unsigned offset, unsigned size, unsigned *start, unsigned *width)
{
    static const struct { uint8_t offset, width; } layout[] = {
        {0x00, 4}, {0x04, 4}, {0x08, 4}, {0x0c, 4}, {0x10, 2}, {0x12, 2}, {0x14, 1}, {0x15, 1},
        {0x16, 2}, {0x18, 2}, {0x1a, 2}, {0x1c, 2}, {0x1e, 2}, {0x20, 8}, {0x28, 8}, {0x30, 8},
    };
    for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
        unsigned s = layout[i].offset, w = layout[i].width;
        bool inside = offset >= s && offset + size <= s + w && (offset - s) % size == 0;
        /* 64-bit fields take whole or 32-bit halves (Linux writes halves); others exactly. */
        bool width_ok = w == 8 ? (size == 4 || size == 8) : (offset == s && size == w);
        if (inside && width_ok) {
            *start = s;
            *width = w;
            return true;
        }
    }
    return false;
}

static void common_read(struct virtio_pci *vp, uint64_t offset, uint8_t *data, unsigned size)
{
    unsigned start, width;
    memset(data, 0, size);
    if (!register_at((unsigned)offset, size, &start, &width))
        return;
    pthread_mutex_lock(&vp->lock);
    uint64_t value = common_register(vp, start) >> (8 * (offset - start));
    pthread_mutex_unlock(&vp->lock);
    for (unsigned i = 0; i < size; i++)
        data[i] = (uint8_t)(value >> (8 * i));
}

static uint16_t valid_vector(const struct virtio_pci *vp, uint64_t vector)
{
    /* An impossible vector reads back as NO_VECTOR: that is how the driver learns of it. */
    return vector < vp->dev->num_queues + 1u ? (uint16_t)vector : NO_VECTOR;
}

static void write_queue_field(struct virtio_pci *vp, unsigned start, uint64_t value, unsigned shift,
                              unsigned size)
{
    struct vp_queue *q = selected_queue(vp);
    if (!q || (vp->status & VIRTIO_STATUS_DRIVER_OK))
        return; /* queues are fixed once the driver said DRIVER_OK */
    uint64_t mask = size == 8 ? UINT64_MAX : ((1ULL << (8 * size)) - 1) << shift;
    switch (start) {
    case COMMON_QUEUE_SIZE:
        if (value >= 1 && value <= vp->dev->queue_max_size)
            q->size = (uint16_t)value;
        break;
    case COMMON_QUEUE_MSIX_VECTOR: q->msix_vector = valid_vector(vp, value); break;
    case COMMON_QUEUE_ENABLE: q->enabled = value == 1; break;
    case COMMON_QUEUE_DESC: q->desc = (q->desc & ~mask) | (value << shift); break;
    case COMMON_QUEUE_DRIVER: q->driver = (q->driver & ~mask) | (value << shift); break;
    case COMMON_QUEUE_DEVICE: q->device = (q->device & ~mask) | (value << shift); break;
    default: break;
    }
}

/* FEATURES_OK stays clear when the driver chose features we did not offer (3.1.1). */
static uint8_t accept_status_locked(struct virtio_pci *vp, uint8_t status)
{
    uint8_t old = vp->status;
    if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        bool subset = (vp->driver_features & ~offered_features(vp)) == 0;
        bool modern = (vp->driver_features >> VIRTIO_F_VERSION_1) & 1;
        if (!subset || !modern)
            status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
        else
            vp->dev->driver_features = vp->driver_features;
    }
    if (!(status & VIRTIO_STATUS_FEATURES_OK))
        status &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
    return (uint8_t)(status | (old & VIRTIO_STATUS_NEEDS_RESET));
}

static void write_status(struct virtio_pci *vp, uint8_t status)
{
    if (status == 0) {
        run_on_loop(vp, OP_RESET);
        return;
    }
    pthread_mutex_lock(&vp->lock);
    bool was_ok = vp->status & VIRTIO_STATUS_DRIVER_OK;
    vp->status = accept_status_locked(vp, status);
    bool activate = !was_ok && (vp->status & VIRTIO_STATUS_DRIVER_OK);
    pthread_mutex_unlock(&vp->lock);
    if (activate)
        run_on_loop(vp, OP_ACTIVATE);
}

static void common_write(struct virtio_pci *vp, uint64_t offset, const uint8_t *data, unsigned size)
{
    unsigned start, width;
    if (!register_at((unsigned)offset, size, &start, &width))
        return;
    uint64_t value = 0;
    for (unsigned i = 0; i < size; i++)
        value |= (uint64_t)data[i] << (8 * i);
    if (start == COMMON_DEVICE_STATUS) {
        write_status(vp, (uint8_t)value);
        return;
    }
    unsigned shift = 8 * (unsigned)(offset - start);
    pthread_mutex_lock(&vp->lock);
    bool features_fixed = vp->status & VIRTIO_STATUS_FEATURES_OK;
    switch (start) {
    case COMMON_DEVICE_FEATURE_SELECT: vp->device_feature_select = (uint32_t)value; break;
    case COMMON_DRIVER_FEATURE_SELECT: vp->driver_feature_select = (uint32_t)value; break;
    case COMMON_DRIVER_FEATURE:
        if (!features_fixed && vp->driver_feature_select < 2) {
            unsigned half = 32 * vp->driver_feature_select;
            vp->driver_features = (vp->driver_features & ~(0xffffffffULL << half)) | (value << half);
        }
        break;
    case COMMON_CONFIG_MSIX_VECTOR: vp->config_vector = valid_vector(vp, value); break;
    case COMMON_QUEUE_SELECT: vp->queue_select = (uint16_t)value; break;
    default: write_queue_field(vp, start, value, shift, size); break;
    }
    pthread_mutex_unlock(&vp->lock);
}

/* ---- BAR 0 ---- */

static void kick(struct virtio_pci *vp, uint64_t offset)
{
    uint64_t index = offset / VIRTIO_PCI_NOTIFY_MULTIPLIER;
    if (offset % VIRTIO_PCI_NOTIFY_MULTIPLIER || index >= vp->dev->num_queues)
        return;
    poke_queue(&vp->queues[index]);
}

static bool in_region(uint64_t offset, unsigned size, uint64_t start, uint64_t len)
{
    return offset >= start && offset - start < len && size <= len - (offset - start);
}

static void bar0_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *dev = vp->dev;
    memset(data, 0, size);
    if (in_region(offset, size, VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_COMMON_SIZE))
        common_read(vp, offset - VIRTIO_PCI_COMMON_OFFSET, data, size);
    else if (offset == VIRTIO_PCI_ISR_OFFSET)
        data[0] = (uint8_t)atomic_exchange(&vp->isr, 0); /* reading acknowledges (4.1.4.5) */
    else if (in_region(offset, size, VIRTIO_PCI_DEVICE_OFFSET, dev->config_size))
        dev->ops->config_read(dev, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFFSET), data, size);
}

static void bar0_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct virtio_pci *vp = opaque;
    struct virtio_device *dev = vp->dev;
    if (in_region(offset, size, VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_COMMON_SIZE))
        common_write(vp, offset - VIRTIO_PCI_COMMON_OFFSET, data, size);
    else if (in_region(offset, size, VIRTIO_PCI_DEVICE_OFFSET, dev->config_size) &&
             dev->ops->config_write)
        dev->ops->config_write(dev, (uint32_t)(offset - VIRTIO_PCI_DEVICE_OFFSET), data, size);
    else if (offset >= VIRTIO_PCI_NOTIFY_OFFSET)
        kick(vp, offset - VIRTIO_PCI_NOTIFY_OFFSET);
}

/* ---- the PCI configuration access capability (4.1.4.9) ---- */

/* The BAR 0 window the capability's bar/offset/length fields select, or false. */
static bool cfg_window(struct virtio_pci *vp, uint32_t *offset, unsigned *length)
{
    unsigned cap = (unsigned)vp->pci_cfg_cap;
    uint32_t bar = pci_config_get(&vp->pci, cap + PCI_CFG_BAR, 1);
    *offset = pci_config_get(&vp->pci, cap + PCI_CFG_OFFSET, 4);
    *length = pci_config_get(&vp->pci, cap + PCI_CFG_LENGTH, 4);
    return bar == 0 && (*length == 1 || *length == 2 || *length == 4) &&
           in_region(*offset, *length, 0, VIRTIO_PCI_BAR0_SIZE);
}

static void cfg_cap_write(void *opaque, unsigned offset, unsigned size, uint32_t value)
{
    struct virtio_pci *vp = opaque;
    uint32_t bar_offset;
    unsigned length;
    (void)value;
    if (offset != (unsigned)vp->pci_cfg_cap + PCI_CFG_DATA || !cfg_window(vp, &bar_offset, &length) ||
        size < length)
        return;
    uint8_t data[4];
    uint32_t stored = pci_config_get(&vp->pci, offset, 4);
    for (unsigned i = 0; i < 4; i++)
        data[i] = (uint8_t)(stored >> (8 * i));
    bar0_write(vp, bar_offset, data, length);
}

static void cfg_cap_read(void *opaque, unsigned offset, unsigned size, uint32_t *value)
{
    struct virtio_pci *vp = opaque;
    uint32_t bar_offset;
    unsigned length;
    if (offset != (unsigned)vp->pci_cfg_cap + PCI_CFG_DATA || size < 4 ||
        !cfg_window(vp, &bar_offset, &length))
        return;
    uint8_t data[4] = {0};
    bar0_read(vp, bar_offset, data, length);
    *value = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
             (uint32_t)data[3] << 24;
}

static const struct pci_cap_ops cfg_cap_ops = {.write = cfg_cap_write, .read = cfg_cap_read};

/* ---- building the function ---- */

static uint32_t class_for(uint32_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_NET: return 0x020000;     /* network controller */
    case VIRTIO_ID_BLOCK: return 0x018000;   /* mass storage, other */
    case VIRTIO_ID_CONSOLE: return 0x078000; /* communication, other */
    default: return 0xff0000;                /* unclassified */
    }
}

static const char *type_name(uint32_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_NET: return "virtio-net";
    case VIRTIO_ID_BLOCK: return "virtio-blk";
    case VIRTIO_ID_CONSOLE: return "virtio-console";
    case VIRTIO_ID_RNG: return "virtio-rng";
    case VIRTIO_ID_VSOCK: return "virtio-vsock";
    case VIRTIO_ID_FS: return "virtio-fs";
    default: return "virtio device";
    }
}

/* Once the bus has placed the function: "virtio-fs at PCI 00:05.0 (share 'job')". */
static void set_name(struct virtio_pci *vp)
{
    const char *label = vp->host.label;
    snprintf(vp->name, sizeof(vp->name), "%s at PCI 00:%02x.0%s%s%s", type_name(vp->dev->device_id),
             vp->pci.slot, label ? " (" : "", label ? label : "", label ? ")" : "");
    vp->host.label = NULL; /* the caller's string need not outlive the call */
}

static int add_virtio_cap(struct virtio_pci *vp, uint8_t type, uint32_t offset, uint32_t length,
                          size_t extra)
{
    uint8_t body[18] = {0};
    body[0] = (uint8_t)(16 + extra); /* cap_len, counting the id and next bytes */
    body[1] = type;
    body[2] = 0; /* BAR 0 */
    memcpy(body + 6, &offset, 4);
    memcpy(body + 10, &length, 4);
    if (extra) {
        uint32_t multiplier = VIRTIO_PCI_NOTIFY_MULTIPLIER;
        memcpy(body + 14, &multiplier, 4);
    }
    return pci_add_capability(&vp->pci, PCI_CAP_ID_VENDOR, body, 14 + extra);
}

static int add_capabilities(struct virtio_pci *vp)
{
    struct virtio_device *dev = vp->dev;
    int r = add_virtio_cap(vp, CAP_COMMON, VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_COMMON_SIZE, 0);
    if (r >= 0)
        r = add_virtio_cap(vp, CAP_NOTIFY, VIRTIO_PCI_NOTIFY_OFFSET,
                           dev->num_queues * VIRTIO_PCI_NOTIFY_MULTIPLIER, 4);
    if (r >= 0)
        r = add_virtio_cap(vp, CAP_ISR, VIRTIO_PCI_ISR_OFFSET, 1, 0);
    if (r >= 0 && dev->config_size)
        r = add_virtio_cap(vp, CAP_DEVICE, VIRTIO_PCI_DEVICE_OFFSET, dev->config_size, 0);
    if (r < 0)
        return r;
    uint8_t body[PCI_CFG_CAP_LEN - 2] = {PCI_CFG_CAP_LEN, CAP_PCI_CFG};
    r = pci_add_capability(&vp->pci, PCI_CAP_ID_VENDOR, body, sizeof(body));
    if (r < 0)
        return r;
    vp->pci_cfg_cap = r;
    pci_config_set_wmask(&vp->pci, (unsigned)r + PCI_CFG_BAR, 1, 0xff);
    pci_config_set_wmask(&vp->pci, (unsigned)r + PCI_CFG_OFFSET, 4, 0xffffffff);
    pci_config_set_wmask(&vp->pci, (unsigned)r + PCI_CFG_LENGTH, 4, 0xffffffff);
    pci_config_set_wmask(&vp->pci, (unsigned)r + PCI_CFG_DATA, 4, 0xffffffff);
    return pci_capability_set_ops(&vp->pci, r, &cfg_cap_ops, vp);
}

static int create_queues(struct virtio_pci *vp)
{
    struct virtio_device *dev = vp->dev;
    vp->queues = calloc(dev->num_queues, sizeof(*vp->queues));
    dev->queues = calloc(dev->num_queues, sizeof(*dev->queues));
    dev->queue_enabled = calloc(dev->num_queues, sizeof(*dev->queue_enabled));
    if (!vp->queues || !dev->queues || !dev->queue_enabled)
        return -ENOMEM;
    for (unsigned i = 0; i < dev->num_queues; i++) {
        struct vp_queue *q = &vp->queues[i];
        *q = (struct vp_queue){.vp = vp, .index = i, .kick_fd = -1};
        q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->kick_fd < 0)
            return -errno;
        int r = io_loop_add(vp->host.loop, q->kick_fd, EPOLLIN, on_kick, q);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Binds each queue's notify address to its eventfd in the kernel, once the BAR is placed. */
static void bind_ioeventfds(struct virtio_pci *vp)
{
    if (!vp->host.add_ioeventfd)
        return;
    uint64_t notify = pci_bar_address(&vp->pci, 0) + VIRTIO_PCI_NOTIFY_OFFSET;
    for (unsigned i = 0; i < vp->dev->num_queues; i++) {
        struct vp_queue *q = &vp->queues[i];
        uint64_t addr = notify + i * VIRTIO_PCI_NOTIFY_MULTIPLIER;
        /* Linux writes the queue index as 16 bits (vp_notify). */
        q->ioeventfd = vp->host.add_ioeventfd(vp->host.ctx, addr, 2, q->kick_fd) == 0;
    }
}

static int build(struct virtio_pci *vp, char *error, size_t error_len)
{
    struct virtio_device *dev = vp->dev;
    vp->pci.vendor_id = VIRTIO_PCI_VENDOR;
    vp->pci.device_id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + dev->device_id);
    vp->pci.subsystem_vendor_id = VIRTIO_PCI_VENDOR;
    vp->pci.subsystem_id = 0x1100;
    vp->pci.revision = 1; /* modern-only devices have revision 1 or more (4.1.2.1) */
    vp->pci.class_code = class_for(dev->device_id);
    vp->pci.bars[0] = (struct pci_bar){VIRTIO_PCI_BAR0_SIZE, bar0_read, bar0_write, vp};
    int r = create_queues(vp);
    if (r == 0)
        r = add_capabilities(vp);
    if (r == 0)
        r = msix_new(&vp->pci, VIRTIO_PCI_MSIX_BAR, dev->num_queues + 1, &vp->host.msi, &vp->msix);
    if (r < 0) {
        snprintf(error, error_len, "virtio device %u: %s", dev->device_id, strerror(-r));
        return r;
    }
    r = pci_bus_add(vp->host.bus, &vp->pci, error, error_len);
    if (r == 0) {
        set_name(vp);
        bind_ioeventfds(vp);
    }
    return r;
}

struct virtio_pci *virtio_pci_new(struct virtio_device *dev, const struct virtio_pci_host *host,
                                  char *error, size_t error_len)
{
    struct virtio_pci *vp = calloc(1, sizeof(*vp));
    if (!vp) {
        dev->ops->destroy(dev);
        snprintf(error, error_len, "out of memory");
        return NULL;
    }
    vp->dev = dev;
    vp->host = *host;
    pthread_mutex_init(&vp->lock, NULL);
    pthread_cond_init(&vp->op_done, NULL);
    dev->loop = host->loop;
    dev->transport = vp;
    dev->transport_ops = &transport_ops;
    vp->control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int r = vp->control_fd < 0 ? -errno
                               : io_loop_add(host->loop, vp->control_fd, EPOLLIN, on_control, vp);
    if (r < 0) {
        snprintf(error, error_len, "virtio device %u: %s", dev->device_id, strerror(-r));
    } else {
        r = build(vp, error, error_len);
    }
    if (r < 0) {
        virtio_pci_free(vp);
        return NULL;
    }
    reset_registers_locked(vp);
    return vp;
}

void virtio_pci_free(struct virtio_pci *vp)
{
    if (!vp)
        return;
    struct virtio_device *dev = vp->dev;
    uint64_t notify = pci_bar_address(&vp->pci, 0) + VIRTIO_PCI_NOTIFY_OFFSET;
    for (unsigned i = 0; vp->queues && i < dev->num_queues; i++) {
        struct vp_queue *q = &vp->queues[i];
        if (q->ioeventfd && vp->host.remove_ioeventfd)
            vp->host.remove_ioeventfd(vp->host.ctx, notify + i * VIRTIO_PCI_NOTIFY_MULTIPLIER, 2,
                                      q->kick_fd);
        if (q->kick_fd >= 0) {
            io_loop_remove(vp->host.loop, q->kick_fd);
            close(q->kick_fd);
        }
    }
    if (vp->control_fd >= 0) {
        io_loop_remove(vp->host.loop, vp->control_fd);
        close(vp->control_fd);
    }
    msix_free(vp->msix);
    free(vp->queues);
    free(dev->queues);
    free(dev->queue_enabled);
    dev->ops->destroy(dev);
    pthread_cond_destroy(&vp->op_done);
    pthread_mutex_destroy(&vp->lock);
    free(vp);
}

struct pci_device *virtio_pci_function(struct virtio_pci *vp)
{
    return &vp->pci;
}

/* ---- snapshots ---- */

#define TAG_VIRTIO_PCI SNAP_TAG('v', 'p', 'c', 'i')
#define TAG_VIRTIO_DEVICE SNAP_TAG('v', 'd', 'e', 'v')

static void save_queue(struct snap_writer *w, const struct vp_queue *q, const struct virtq *vq)
{
    snap_put_u16(w, q->size);
    snap_put_u16(w, q->msix_vector);
    snap_put_u8(w, q->enabled);
    snap_put_u64(w, q->desc);
    snap_put_u64(w, q->driver);
    snap_put_u64(w, q->device);
    snap_put_u16(w, vq->last_avail_idx);
    snap_put_u16(w, vq->used_idx);
    snap_put_u16(w, vq->signalled_used);
    snap_put_u8(w, vq->signalled_used_valid);
}

int virtio_pci_save(struct virtio_pci *vp, struct snap_writer *w)
{
    struct virtio_device *dev = vp->dev;
    if (!dev->ops->save || !dev->ops->restore)
        return -ENOTSUP;
    snap_begin(w, TAG_VIRTIO_DEVICE);
    int r = dev->ops->save(dev, w); /* first: it may give back chains it holds */
    snap_end(w);
    if (r < 0)
        return r;
    pthread_mutex_lock(&vp->lock);
    snap_begin(w, TAG_VIRTIO_PCI);
    snap_put_u32(w, dev->device_id);
    snap_put_u32(w, dev->num_queues);
    snap_put_u32(w, vp->device_feature_select);
    snap_put_u32(w, vp->driver_feature_select);
    snap_put_u64(w, vp->driver_features);
    snap_put_u16(w, vp->config_vector);
    snap_put_u8(w, vp->status);
    snap_put_u16(w, vp->queue_select);
    snap_put_u32(w, atomic_load(&vp->isr));
    snap_put_u32(w, atomic_load(&vp->config_generation));
    for (unsigned i = 0; i < dev->num_queues; i++)
        save_queue(w, &vp->queues[i], &dev->queues[i]);
    snap_end(w);
    pthread_mutex_unlock(&vp->lock);
    msix_save(vp->msix, w);
    return 0;
}

/* The registers, as the guest left them; the queues' progress goes in *progress. */
static bool restore_registers(struct virtio_pci *vp, struct snap_reader *s, struct virtq *progress)
{
    struct virtio_device *dev = vp->dev;
    if (snap_get_u32(s) != dev->device_id || snap_get_u32(s) != dev->num_queues)
        return snap_reject(s);
    vp->device_feature_select = snap_get_u32(s);
    vp->driver_feature_select = snap_get_u32(s);
    vp->driver_features = snap_get_u64(s);
    vp->config_vector = valid_vector(vp, snap_get_u16(s));
    vp->status = snap_get_u8(s);
    vp->queue_select = snap_get_u16(s);
    atomic_store(&vp->isr, snap_get_u32(s) & (ISR_QUEUE | ISR_CONFIG));
    atomic_store(&vp->config_generation, snap_get_u32(s));
    for (unsigned i = 0; i < dev->num_queues; i++) {
        struct vp_queue *q = &vp->queues[i];
        uint16_t size = snap_get_u16(s);
        q->size = size >= 1 && size <= dev->queue_max_size ? size : dev->queue_max_size;
        q->msix_vector = valid_vector(vp, snap_get_u16(s));
        q->enabled = snap_get_u8(s) != 0;
        q->desc = snap_get_u64(s);
        q->driver = snap_get_u64(s);
        q->device = snap_get_u64(s);
        progress[i].last_avail_idx = snap_get_u16(s);
        progress[i].used_idx = snap_get_u16(s);
        progress[i].signalled_used = snap_get_u16(s);
        progress[i].signalled_used_valid = snap_get_u8(s) != 0;
    }
    /* Features beyond the offer would have been refused at FEATURES_OK. */
    if ((vp->driver_features & ~offered_features(vp)) != 0)
        return snap_reject(s);
    return snap_reader_ok(s, true);
}

/* A live device: its rings set up as at DRIVER_OK, at the saved progress, then activated. */
static bool restore_live(struct virtio_pci *vp, const struct virtq *progress)
{
    struct virtio_device *dev = vp->dev;
    dev->driver_features = vp->driver_features;
    if (init_queues(vp) >= 0)
        return false;
    for (unsigned i = 0; i < dev->num_queues; i++) {
        struct virtq *q = &dev->queues[i];
        q->last_avail_idx = progress[i].last_avail_idx;
        q->used_idx = progress[i].used_idx;
        q->signalled_used = progress[i].signalled_used;
        q->signalled_used_valid = progress[i].signalled_used_valid;
    }
    atomic_store(&vp->live, true);
    if (dev->ops->activate)
        dev->ops->activate(dev);
    return true;
}

bool virtio_pci_restore(struct virtio_pci *vp, struct snap_reader *r)
{
    struct virtio_device *dev = vp->dev;
    struct snap_reader device, regs;
    snap_section(r, TAG_VIRTIO_DEVICE, &device);
    snap_section(r, TAG_VIRTIO_PCI, &regs);
    struct virtq *progress = calloc(dev->num_queues, sizeof(*progress));
    if (!progress || !dev->ops->restore)
        return free(progress), snap_reject(r);
    pthread_mutex_lock(&vp->lock);
    bool ok = snap_reader_ok(r, false) && restore_registers(vp, &regs, progress);
    uint8_t status = vp->status;
    pthread_mutex_unlock(&vp->lock);
    bool live = (status & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_NEEDS_RESET);
    /* MSI-X before activation: a device may complete requests at once, and their interrupts
     * must find the vectors routed. */
    ok = ok && msix_restore(vp->msix, r);
    if (ok && live)
        ok = restore_live(vp, progress);
    free(progress);
    ok = ok && dev->ops->restore(dev, &device);
    /* Whatever the driver made available meanwhile is looked at once the loop runs. */
    for (unsigned i = 0; ok && live && i < dev->num_queues; i++)
        poke_queue(&vp->queues[i]);
    return ok || snap_reject(r);
}
