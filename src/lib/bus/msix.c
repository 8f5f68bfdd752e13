/*
 * MSI-X emulation.
 *
 * Two locks. route_lock serializes every change of the guest-visible state (table writes,
 * message control writes) together with the sink route change it causes, which may block for
 * a while (KVM_SET_GSI_ROUTING waits for an SRCU grace period). lock guards the state itself
 * and is only held for a few loads and stores and the sink's fire(), which must not block
 * (an eventfd write); never across route(). So msix_notify(), which takes only lock, never
 * waits behind a route change. Firing under lock is what makes "not live" final: once a
 * vector is marked not live, no message that was decided on earlier is still on its way.
 *
 * A vector is "live" once its route is installed and it is deliverable; msix_notify() fires
 * live vectors and marks the others pending. Unmasking installs the route first and only then
 * makes the vector live (delivering what was pending); masking makes it not live first and
 * only then takes the route away. So a message is never sent through a stale or missing route.
 */
#include "bus/msix.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PBA_WORD_BITS 64

struct msix_entry {
    uint32_t addr_lo, addr_hi, data, control;
};

/* What the sink was last told for a vector. stale: unknown (a route() call failed). */
struct msix_route {
    bool on, stale;
    uint64_t addr;
    uint32_t data;
};

struct msix {
    struct pci_device *dev;
    struct msi_sink sink;
    unsigned vectors;
    unsigned first_route;
    unsigned cap;
    uint32_t table_size, pba_offset, pba_size;

    pthread_mutex_t route_lock; /* taken before lock; guards routed */
    pthread_mutex_t lock;       /* guards everything below except routed */
    bool enabled, function_masked;
    struct msix_entry *table;
    uint64_t *pending; /* the PBA */
    uint64_t *live;
    struct msix_route *routed;
};

static bool test_bit(const uint64_t *bits, unsigned n)
{
    return (bits[n / PBA_WORD_BITS] >> (n % PBA_WORD_BITS)) & 1;
}

static void set_bit(uint64_t *bits, unsigned n, bool on)
{
    uint64_t b = 1ULL << (n % PBA_WORD_BITS);
    if (on)
        bits[n / PBA_WORD_BITS] |= b;
    else
        bits[n / PBA_WORD_BITS] &= ~b;
}

static uint64_t get_le(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, unsigned size, uint64_t v)
{
    for (unsigned i = 0; i < size && i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- routing ---- */

/* The route vector v should have now. Call with lock held. */
static struct msix_route wanted_route(const struct msix *m, unsigned v)
{
    const struct msix_entry *e = &m->table[v];
    if (!m->enabled || m->function_masked || (e->control & MSIX_ENTRY_MASKED))
        return (struct msix_route){0};
    return (struct msix_route){.on = true, .addr = (uint64_t)e->addr_hi << 32 | e->addr_lo,
                               .data = e->data};
}

static bool same_route(const struct msix_route *a, const struct msix_route *b)
{
    return !a->stale && !b->stale && a->on == b->on && a->addr == b->addr && a->data == b->data;
}

/*
 * Brings vector v's route and liveness in line with its state, and delivers its pending
 * message if it is deliverable now. Call with route_lock held.
 */
static void sync_vector(struct msix *m, unsigned v)
{
    pthread_mutex_lock(&m->lock);
    struct msix_route want = wanted_route(m, v);
    if (!want.on)
        set_bit(m->live, v, false); /* before the route goes: notifications pend from here */
    pthread_mutex_unlock(&m->lock);

    struct msix_route *have = &m->routed[v];
    if (!same_route(have, &want)) {
        int r = m->sink.route(m->sink.ctx, m->first_route + v, want.on, want.addr, want.data);
        *have = want;
        if (r < 0) {
            /* Not live, so messages stay pending; the next change of this vector retries. */
            have->stale = true;
            return;
        }
    }
    if (!want.on)
        return;
    pthread_mutex_lock(&m->lock);
    set_bit(m->live, v, true);
    if (test_bit(m->pending, v)) {
        set_bit(m->pending, v, false);
        m->sink.fire(m->sink.ctx, m->first_route + v);
    }
    pthread_mutex_unlock(&m->lock);
}

int msix_notify(struct msix *m, unsigned vector)
{
    if (vector >= m->vectors)
        return -EINVAL;
    int r = 0;
    pthread_mutex_lock(&m->lock);
    if (m->enabled && test_bit(m->live, vector))
        r = m->sink.fire(m->sink.ctx, m->first_route + vector);
    else if (m->enabled)
        set_bit(m->pending, vector, true);
    pthread_mutex_unlock(&m->lock);
    return r;
}

/* ---- message control ---- */

/* Any write touching the capability: re-read message control and apply it. */
static void cap_write(void *opaque, unsigned offset, unsigned size, uint32_t value)
{
    struct msix *m = opaque;
    (void)offset;
    (void)size;
    (void)value;
    pthread_mutex_lock(&m->route_lock);
    /* Read under route_lock, so concurrent writers apply their values in order. */
    uint32_t control = pci_config_get(m->dev, m->cap + 2, 2);
    bool enabled = control & MSIX_CONTROL_ENABLE;
    bool masked = control & MSIX_CONTROL_FUNCTION_MASK;
    pthread_mutex_lock(&m->lock);
    bool changed = enabled != m->enabled || masked != m->function_masked;
    m->enabled = enabled;
    m->function_masked = masked;
    pthread_mutex_unlock(&m->lock);
    for (unsigned v = 0; changed && v < m->vectors; v++)
        sync_vector(m, v);
    pthread_mutex_unlock(&m->route_lock);
}

static const struct pci_cap_ops msix_cap_ops = {.write = cap_write};

/* ---- the table and PBA (in the BAR) ---- */

/* Only aligned dword and qword accesses are defined; anything else is ignored. */
static bool aligned_access(uint64_t offset, unsigned size)
{
    return (size == 4 || size == 8) && offset % size == 0;
}

static uint32_t entry_dword(const struct msix_entry *e, unsigned field)
{
    switch (field) {
    case MSIX_ENTRY_ADDR_LO: return e->addr_lo;
    case MSIX_ENTRY_ADDR_HI: return e->addr_hi;
    case MSIX_ENTRY_DATA: return e->data;
    default: return e->control;
    }
}

static void set_entry_dword(struct msix_entry *e, unsigned field, uint32_t v)
{
    switch (field) {
    case MSIX_ENTRY_ADDR_LO: e->addr_lo = v & ~3u; break; /* dword aligned: bits 1:0 are 0 */
    case MSIX_ENTRY_ADDR_HI: e->addr_hi = v; break;
    case MSIX_ENTRY_DATA: e->data = v; break;
    default: e->control = v & MSIX_ENTRY_MASKED; break; /* the other bits are reserved */
    }
}

/* Call with lock held; offset is aligned to size and inside the table or the PBA. */
static uint64_t bar_value(const struct msix *m, uint64_t offset, unsigned size)
{
    if (offset < m->table_size) {
        const struct msix_entry *e = &m->table[offset / MSIX_ENTRY_SIZE];
        unsigned field = offset % MSIX_ENTRY_SIZE;
        uint64_t v = entry_dword(e, field);
        if (size == 8)
            v |= (uint64_t)entry_dword(e, field + 4) << 32;
        return v;
    }
    uint64_t pba = offset - m->pba_offset;
    return m->pending[pba / 8] >> (8 * (pba % 8));
}

static void bar_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct msix *m = opaque;
    bool in_table = offset < m->table_size;
    bool in_pba = offset >= m->pba_offset && offset - m->pba_offset < m->pba_size;
    if (!aligned_access(offset, size) || (!in_table && !in_pba)) {
        memset(data, 0xff, size <= 8 ? size : 8);
        return;
    }
    pthread_mutex_lock(&m->lock);
    uint64_t v = bar_value(m, offset, size);
    pthread_mutex_unlock(&m->lock);
    put_le(data, size, v);
}

/* The PBA is read-only; table writes may change the vector's route. */
static void bar_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct msix *m = opaque;
    if (!aligned_access(offset, size) || offset >= m->table_size)
        return;
    unsigned v = (unsigned)(offset / MSIX_ENTRY_SIZE);
    unsigned field = offset % MSIX_ENTRY_SIZE;
    uint64_t value = get_le(data, size);
    pthread_mutex_lock(&m->route_lock);
    pthread_mutex_lock(&m->lock);
    set_entry_dword(&m->table[v], field, (uint32_t)value);
    if (size == 8)
        set_entry_dword(&m->table[v], field + 4, (uint32_t)(value >> 32));
    pthread_mutex_unlock(&m->lock);
    sync_vector(m, v);
    pthread_mutex_unlock(&m->route_lock);
}

/* ---- set-up ---- */

static uint64_t round_up_pow2(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static struct msix *msix_alloc(unsigned vectors)
{
    struct msix *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    size_t words = (vectors + PBA_WORD_BITS - 1) / PBA_WORD_BITS;
    m->vectors = vectors;
    m->table = calloc(vectors, sizeof(*m->table));
    m->routed = calloc(vectors, sizeof(*m->routed));
    m->pending = calloc(words, sizeof(*m->pending));
    m->live = calloc(words, sizeof(*m->live));
    pthread_mutex_init(&m->route_lock, NULL);
    pthread_mutex_init(&m->lock, NULL);
    if (!m->table || !m->routed || !m->pending || !m->live) {
        msix_free(m);
        return NULL;
    }
    /* Vectors come out of reset masked. */
    for (unsigned v = 0; v < vectors; v++)
        m->table[v].control = MSIX_ENTRY_MASKED;
    m->table_size = vectors * MSIX_ENTRY_SIZE;
    m->pba_offset = m->table_size; /* already 8-byte aligned, as the BIR field needs */
    m->pba_size = (uint32_t)(words * 8);
    return m;
}

/* Capability body: message control, table offset/BIR, PBA offset/BIR. */
static int add_capability(struct msix *m, unsigned bar)
{
    uint8_t body[10];
    put_le(body, 2, m->vectors - 1);
    put_le(body + 2, 4, bar); /* the table at offset 0 */
    put_le(body + 6, 4, m->pba_offset | bar);
    int cap = pci_add_capability(m->dev, PCI_CAP_ID_MSIX, body, sizeof(body));
    if (cap < 0)
        return cap;
    m->cap = (unsigned)cap;
    int r = pci_config_set_wmask(m->dev, m->cap + 2, 2,
                                 MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
    if (r == 0)
        r = pci_capability_set_ops(m->dev, cap, &msix_cap_ops, m);
    return r;
}

int msix_new(struct pci_device *dev, unsigned bar, unsigned vectors, const struct msi_sink *sink,
             struct msix **out)
{
    *out = NULL;
    if (!sink || !sink->alloc || !sink->route || !sink->fire || vectors == 0 ||
        vectors > MSIX_MAX_VECTORS || bar >= PCI_BARS)
        return -EINVAL;
    if (dev->bus || dev->bars[bar].size)
        return -EBUSY;
    struct msix *m = msix_alloc(vectors);
    if (!m)
        return -ENOMEM;
    m->dev = dev;
    m->sink = *sink;
    /* Routes first: once the capability exists it cannot be taken back, so nothing may fail
     * after it. */
    int first = sink->alloc(sink->ctx, vectors);
    if (first < 0) {
        msix_free(m);
        return first;
    }
    m->first_route = (unsigned)first;
    int r = add_capability(m, bar);
    if (r < 0) {
        msix_free(m);
        return r;
    }
    dev->bars[bar] = (struct pci_bar){.size = round_up_pow2(m->pba_offset + m->pba_size),
                                      .read = bar_read, .write = bar_write, .opaque = m};
    *out = m;
    return 0;
}

void msix_free(struct msix *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->route_lock);
    pthread_mutex_destroy(&m->lock);
    free(m->table);
    free(m->routed);
    free(m->pending);
    free(m->live);
    free(m);
}

unsigned msix_cap_offset(const struct msix *m)
{
    return m->cap;
}

uint32_t msix_table_offset(const struct msix *m)
{
    (void)m;
    return 0;
}

uint32_t msix_pba_offset(const struct msix *m)
{
    return m->pba_offset;
}

/* ---- snapshots ---- */

#define TAG_MSIX SNAP_TAG('m', 's', 'i', 'x')

void msix_save(struct msix *m, struct snap_writer *w)
{
    pthread_mutex_lock(&m->lock);
    snap_begin(w, TAG_MSIX);
    snap_put_u32(w, m->vectors);
    for (unsigned v = 0; v < m->vectors; v++) {
        const struct msix_entry *e = &m->table[v];
        snap_put_u32(w, e->addr_lo);
        snap_put_u32(w, e->addr_hi);
        snap_put_u32(w, e->data);
        snap_put_u32(w, e->control);
        snap_put_u8(w, test_bit(m->pending, v));
    }
    snap_end(w);
    pthread_mutex_unlock(&m->lock);
}

bool msix_restore(struct msix *m, struct snap_reader *r)
{
    struct snap_reader s;
    snap_section(r, TAG_MSIX, &s);
    if (snap_get_u32(&s) != m->vectors)
        return snap_reject(r);
    pthread_mutex_lock(&m->route_lock);
    uint32_t control = pci_config_get(m->dev, m->cap + 2, 2);
    pthread_mutex_lock(&m->lock);
    m->enabled = control & MSIX_CONTROL_ENABLE;
    m->function_masked = control & MSIX_CONTROL_FUNCTION_MASK;
    for (unsigned v = 0; v < m->vectors; v++) {
        struct msix_entry *e = &m->table[v];
        set_entry_dword(e, MSIX_ENTRY_ADDR_LO, snap_get_u32(&s));
        set_entry_dword(e, MSIX_ENTRY_ADDR_HI, snap_get_u32(&s));
        set_entry_dword(e, MSIX_ENTRY_DATA, snap_get_u32(&s));
        set_entry_dword(e, MSIX_ENTRY_CONTROL, snap_get_u32(&s));
        set_bit(m->pending, v, snap_get_u8(&s) != 0);
    }
    pthread_mutex_unlock(&m->lock);
    bool ok = snap_reader_ok(&s, true);
    for (unsigned v = 0; ok && v < m->vectors; v++)
        sync_vector(m, v);
    pthread_mutex_unlock(&m->route_lock);
    return ok || snap_reject(r);
}
