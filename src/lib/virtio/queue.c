/*
 * Split virtqueues, device side (virtio 1.2, 2.7).
 *
 * The guest writes the rings concurrently from other CPUs and may be hostile, so:
 * - the ring indices are read with acquire and used->idx is published with release, and each
 *   descriptor is copied out of guest memory once before it is looked at (no double fetch);
 * - every address and length goes through guest_mem_ptr(), which refuses anything that is not
 *   wholly RAM;
 * - a chain walk visits at most `size` direct descriptors plus at most the entry count of one
 *   indirect table, so a loop in `next` ends in an error instead of spinning;
 * - a drain (pop until empty, re-arm, pop again if more came) ends unless the guest keeps
 *   adding chains: the used ring, which the device writes, may not overlap the avail ring or
 *   the descriptor table (or its own pushes would feed it), and an avail index that goes
 *   back after virtq_enable_notify saw it move is a breach, not an empty ring.
 *
 * Choices where the spec leaves room:
 * - A zero-length descriptor is accepted and produces no iovec; its address is never used,
 *   so it is not checked. It still counts for the ordering rule (readable before writable)
 *   and towards the per-chain visit bound.
 * - A chain may be zero or more direct descriptors followed by one descriptor pointing at an
 *   indirect table (2.7.5.3.2); the table descriptor ends the chain. Its WRITE flag is
 *   ignored as the spec requires.
 * - An indirect table may hold at most VIRTQ_MAX_SIZE entries: no driver needs more, and it
 *   keeps the work per chain small.
 * - A chain's buffers may total at most 4 GiB (2.7.5: drivers must not exceed 2^32 bytes).
 * Error codes: -EFAULT for an address outside RAM, -ELOOP for a chain longer than its table,
 * -E2BIG for more than VIRTQ_MAX_SEGMENTS buffers or 4 GiB, -EINVAL for any other breach.
 */
#include "virtio/queue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#define DESC_SIZE 16u
#define MAX_CHAIN_BYTES (1ULL << 32)

/* Offsets inside the rings (2.7.6, 2.7.8). */
#define RING_FLAGS 0
#define RING_IDX 2
#define RING_ENTRIES 4
#define USED_ELEM_SIZE 8

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static uint64_t desc_table_bytes(uint16_t size) { return (uint64_t)DESC_SIZE * size; }
static uint64_t avail_ring_bytes(uint16_t size) { return 6 + 2 * (uint64_t)size; }
static uint64_t used_ring_bytes(uint16_t size) { return 6 + USED_ELEM_SIZE * (uint64_t)size; }

/*
 * The rings were checked by virtq_init and guest RAM never moves, so these only fail if the
 * caller skipped virtq_init; they still go through guest_mem_ptr rather than caching a pointer.
 */
static uint8_t *avail_ring(const struct virtq *q)
{
    return guest_mem_ptr(q->mem, q->avail_gpa, avail_ring_bytes(q->size));
}

static uint8_t *used_ring(const struct virtq *q)
{
    return guest_mem_ptr(q->mem, q->used_gpa, used_ring_bytes(q->size));
}

/* Ring fields are naturally aligned (virtq_init checks the ring alignment), so the __atomic
 * builtins apply; they make the guest's concurrent accesses well-defined on our side. */
static uint16_t load16(const uint8_t *p, int order)
{
    return le16toh(__atomic_load_n((const uint16_t *)(const void *)p, order));
}

static void store16(uint8_t *p, uint16_t v, int order)
{
    __atomic_store_n((uint16_t *)(void *)p, htole16(v), order);
}

static void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

/* One copy of the descriptor: the guest may rewrite it while we look at it. */
static struct desc read_desc(const uint8_t *table, uint32_t i)
{
    uint8_t raw[DESC_SIZE];
    memcpy(raw, table + (size_t)i * DESC_SIZE, DESC_SIZE);
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
    memcpy(&addr, raw, 8);
    memcpy(&len, raw + 8, 4);
    memcpy(&flags, raw + 12, 2);
    memcpy(&next, raw + 14, 2);
    return (struct desc){le64toh(addr), le32toh(len), le16toh(flags), le16toh(next)};
}

static bool power_of_two(uint16_t v) { return v != 0 && (v & (v - 1)) == 0; }

/* Compared as host addresses, so that two guest addresses of the same memory count too. */
static bool overlap(const uint8_t *a, uint64_t a_len, const uint8_t *b, uint64_t b_len)
{
    return (uintptr_t)a < (uintptr_t)b + b_len && (uintptr_t)b < (uintptr_t)a + a_len;
}

int virtq_init(struct virtq *q, const struct guest_mem *mem, uint16_t size, uint64_t desc_gpa,
               uint64_t avail_gpa, uint64_t used_gpa, bool event_idx, bool indirect)
{
    /* Queue Size is a power of two (2.7); size == 0 would also make every index mask wrong. */
    if (!power_of_two(size) || size > VIRTQ_MAX_SIZE)
        return -EINVAL;
    /* Alignment from 2.7 ("Alignment requirements"); the atomics rely on it too. */
    if (desc_gpa % 16 || avail_gpa % 2 || used_gpa % 4)
        return -EINVAL;
    const uint8_t *desc = guest_mem_ptr(mem, desc_gpa, desc_table_bytes(size));
    const uint8_t *avail = guest_mem_ptr(mem, avail_gpa, avail_ring_bytes(size));
    const uint8_t *used = guest_mem_ptr(mem, used_gpa, used_ring_bytes(size));
    if (!desc || !avail || !used)
        return -EINVAL;
    /* The device writes the used ring: over the driver's avail index it would feed itself
     * (each push a new "available" chain) and drain forever. */
    if (overlap(used, used_ring_bytes(size), avail, avail_ring_bytes(size)) ||
        overlap(used, used_ring_bytes(size), desc, desc_table_bytes(size)))
        return -EINVAL;
    *q = (struct virtq){
        .mem = mem,
        .size = size,
        .desc_gpa = desc_gpa,
        .avail_gpa = avail_gpa,
        .used_gpa = used_gpa,
        .event_idx = event_idx,
        .indirect = indirect,
    };
    return 0;
}

/* Appends one buffer to elem, enforcing the ordering, segment and byte limits. */
static int add_buffer(const struct virtq *q, struct virtq_elem *elem, const struct desc *d)
{
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    /* 2.7.4.2: all device-readable buffers come before the device-writable ones. */
    if (!writable && elem->in_count)
        return -EINVAL;
    if (d->len == 0)
        return 0;
    if (elem->out_count + elem->in_count >= VIRTQ_MAX_SEGMENTS)
        return -E2BIG;
    /* Sums of at most 256 32-bit lengths cannot overflow; the cap is the spec's 2^32. */
    if (elem->out_bytes + elem->in_bytes + d->len > MAX_CHAIN_BYTES)
        return -E2BIG;
    void *p = guest_mem_ptr(q->mem, d->addr, d->len);
    if (!p)
        return -EFAULT;
    elem->iov[elem->out_count + elem->in_count] = (struct iovec){p, d->len};
    if (writable) {
        elem->in_count++;
        elem->in_bytes += d->len;
    } else {
        elem->out_count++;
        elem->out_bytes += d->len;
    }
    return 0;
}

/* Walks the indirect table that `table_desc` points at; the table's own chain ends the walk. */
static int walk_indirect(const struct virtq *q, struct virtq_elem *elem,
                         const struct desc *table_desc)
{
    if (!q->indirect)
        return -EINVAL;
    /* 2.7.5.3.1: the table descriptor must not also chain on. */
    if (table_desc->flags & VIRTQ_DESC_F_NEXT)
        return -EINVAL;
    uint32_t len = table_desc->len;
    if (len == 0 || len % DESC_SIZE || len / DESC_SIZE > VIRTQ_MAX_SIZE)
        return -EINVAL;
    const uint8_t *table = guest_mem_ptr(q->mem, table_desc->addr, len);
    if (!table)
        return -EFAULT;
    uint32_t count = len / DESC_SIZE;
    uint32_t i = 0;
    for (uint32_t visited = 1;; visited++) {
        if (visited > count)
            return -ELOOP;
        struct desc d = read_desc(table, i);
        if (d.flags & VIRTQ_DESC_F_INDIRECT)
            return -EINVAL; /* only one table per descriptor */
        int r = add_buffer(q, elem, &d);
        if (r < 0)
            return r;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        if (d.next >= count)
            return -EINVAL;
        i = d.next;
    }
}

/* Walks the chain starting at `head` in the descriptor table. */
static int walk_chain(const struct virtq *q, struct virtq_elem *elem, uint16_t head)
{
    const uint8_t *table = guest_mem_ptr(q->mem, q->desc_gpa, desc_table_bytes(q->size));
    if (!table)
        return -EFAULT;
    uint16_t i = head;
    for (uint32_t visited = 1;; visited++) {
        /* The table has `size` entries, so a longer chain must revisit one: a loop. */
        if (visited > q->size)
            return -ELOOP;
        struct desc d = read_desc(table, i);
        if (d.flags & VIRTQ_DESC_F_INDIRECT)
            return walk_indirect(q, elem, &d);
        int r = add_buffer(q, elem, &d);
        if (r < 0)
            return r;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        if (d.next >= q->size)
            return -EINVAL;
        i = d.next;
    }
}

int virtq_pop(struct virtq *q, struct virtq_elem *elem)
{
    uint8_t *avail = avail_ring(q);
    if (!avail)
        return -EFAULT;
    /* Acquire: the ring entry and descriptors read below are those published before idx. */
    uint16_t avail_idx = load16(avail + RING_IDX, __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail_idx);
    bool announced = q->avail_announced;
    q->avail_announced = false;
    /* virtq_enable_notify saw buffers that are gone now: the index went back, which no
     * driver does (2.7.6); left alone, the caller's drain loop would spin on it. */
    if (pending == 0)
        return announced ? -EINVAL : 0;
    /* The driver can have at most `size` buffers outstanding. */
    if (pending > q->size)
        return -EINVAL;
    uint32_t slot = q->last_avail_idx & (q->size - 1u);
    uint16_t head = load16(avail + RING_ENTRIES + 2 * slot, __ATOMIC_RELAXED);
    if (head >= q->size)
        return -EINVAL;
    elem->head = head;
    elem->out_count = elem->in_count = 0;
    elem->out_bytes = elem->in_bytes = 0;
    int r = walk_chain(q, elem, head);
    if (r < 0)
        return r;
    q->last_avail_idx++;
    return 1;
}

const char *virtq_error_text(int err)
{
    switch (err) {
    case -EFAULT: return "a buffer or ring outside guest RAM";
    case -ELOOP: return "a descriptor chain that loops";
    case -E2BIG: return "a descriptor chain of more than 260 buffers or 4 GiB";
    default: return "a malformed ring or descriptor chain";
    }
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    uint8_t *used = used_ring(q);
    if (!used)
        return;
    uint8_t *e = used + RING_ENTRIES + USED_ELEM_SIZE * (uint32_t)(q->used_idx & (q->size - 1u));
    store32(e, head);
    store32(e + 4, written);
    q->used_idx++;
    /* Release: the driver that sees the new idx also sees the element. */
    store16(used + RING_IDX, q->used_idx, __ATOMIC_RELEASE);
}

/* 2.7.10: whether the driver's `event` index is in [old, new), the entries used since the
 * last signal, i.e. whether used->idx has just moved past it. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_signal(struct virtq *q)
{
    uint8_t *avail = avail_ring(q);
    if (!avail)
        return true;
    /* Full barrier: our used->idx store must be visible before we read the driver's wish,
     * or both sides could miss each other's update and the driver would sleep forever. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->event_idx)
        return !(load16(avail + RING_FLAGS, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    uint16_t used_event = load16(avail + RING_ENTRIES + 2 * (uint32_t)q->size, __ATOMIC_RELAXED);
    uint16_t old_idx = q->signalled_used;
    bool valid = q->signalled_used_valid;
    /* Moving the window on even when not signalling is right: an event before used_idx that
     * did not fall in this window never will. */
    q->signalled_used = q->used_idx;
    q->signalled_used_valid = true;
    /* With no earlier signal there is no window to compare against: signal to be safe. */
    if (!valid)
        return true;
    return need_event(used_event, q->used_idx, old_idx);
}

bool virtq_enable_notify(struct virtq *q)
{
    uint8_t *used = used_ring(q);
    uint8_t *avail = avail_ring(q);
    if (!used || !avail)
        return false;
    if (q->event_idx) {
        store16(used + RING_ENTRIES + USED_ELEM_SIZE * (uint32_t)q->size, q->last_avail_idx,
                __ATOMIC_RELAXED);
    } else {
        /* Only the device writes used->flags, so read-modify-write is safe. */
        uint16_t flags = load16(used + RING_FLAGS, __ATOMIC_RELAXED);
        store16(used + RING_FLAGS, flags & (uint16_t)~VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
    }
    /* Full barrier: the re-arm must be visible before we look at avail->idx again, else a
     * buffer added in between would get neither a notification nor a pop. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->avail_announced = load16(avail + RING_IDX, __ATOMIC_ACQUIRE) != q->last_avail_idx;
    return q->avail_announced;
}

void virtq_disable_notify(struct virtq *q)
{
    /* With event idx the driver notifies once when it passes avail_event and not again until
     * enable_notify moves it, so there is nothing to write. */
    if (q->event_idx)
        return;
    uint8_t *used = used_ring(q);
    if (!used)
        return;
    uint16_t flags = load16(used + RING_FLAGS, __ATOMIC_RELAXED);
    store16(used + RING_FLAGS, flags | VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

/* Copies between a flat buffer and iov[0..n), starting `offset` bytes into the iovecs. */
static size_t copy_iov(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len,
                       bool to_iov)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t chunk = iov[i].iov_len - offset;
        if (chunk > len - done)
            chunk = len - done;
        uint8_t *seg = (uint8_t *)iov[i].iov_base + offset;
        if (to_iov)
            memcpy(seg, (uint8_t *)buf + done, chunk);
        else
            memcpy((uint8_t *)buf + done, seg, chunk);
        done += chunk;
        offset = 0;
    }
    return done;
}

int virtq_drain(struct virtq *q, struct virtq_elem *elem, virtq_serve_fn serve, void *ctx,
                unsigned *served)
{
    *served = 0;
    int r;
    do {
        virtq_disable_notify(q);
        while ((r = virtq_pop(q, elem)) > 0) {
            ++*served;
            if (!serve(ctx, elem))
                return 1;
            if (*served == VIRTQ_DRAIN_BUDGET)
                return 0;
        }
    } while (r == 0 && virtq_enable_notify(q));
    return r < 0 ? r : 1;
}

size_t virtq_read(const struct virtq_elem *elem, size_t offset, void *dst, size_t len)
{
    return copy_iov(elem->iov, elem->out_count, offset, dst, len, false);
}

size_t virtq_write(const struct virtq_elem *elem, size_t offset, const void *src, size_t len)
{
    /* copy_iov only reads buf when to_iov is true. */
    return copy_iov(elem->iov + elem->out_count, elem->in_count, offset, (void *)src, len, true);
}
