#include "fake_driver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <endian.h>
#include <string.h>
#include <unistd.h>

static void t_signal_used(void *t, unsigned index)
{
    assert_true(index < FAKE_MAX_QUEUES);
    ((struct fake_transport *)t)->signals[index]++;
}

static void t_signal_config(void *t) { (void)t; }
static void t_needs_reset(void *t, unsigned queue, int err)
{
    struct fake_transport *ft = t;
    ft->needs_reset++;
    ft->reset_queue = queue;
    ft->reset_err = err;
}

static void t_requeue(void *t, unsigned index)
{
    assert_true(index < FAKE_MAX_QUEUES);
    ((struct fake_transport *)t)->requeues[index]++;
}

const struct virtio_transport_ops fake_transport_ops = {
    .signal_used = t_signal_used,
    .signal_config = t_signal_config,
    .needs_reset = t_needs_reset,
    .requeue = t_requeue,
};

uint8_t *fake_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    uint8_t *p = guest_mem_ptr(mem, gpa, len);
    assert_non_null(p);
    return p;
}

void fake_put16(const struct guest_mem *mem, uint64_t gpa, uint16_t v)
{
    v = htole16(v);
    memcpy(fake_ptr(mem, gpa, 2), &v, 2);
}

uint16_t fake_get16(const struct guest_mem *mem, uint64_t gpa)
{
    uint16_t v;
    memcpy(&v, fake_ptr(mem, gpa, 2), 2);
    return le16toh(v);
}

uint32_t fake_get32(const struct guest_mem *mem, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, fake_ptr(mem, gpa, 4), 4);
    return le32toh(v);
}

void fake_set_desc(const struct guest_mem *mem, uint64_t table, uint32_t i, uint64_t addr,
                   uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t raw[16];
    uint64_t a = htole64(addr);
    uint32_t l = htole32(len);
    uint16_t f = htole16(flags), n = htole16(next);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &l, 4);
    memcpy(raw + 12, &f, 2);
    memcpy(raw + 14, &n, 2);
    memcpy(fake_ptr(mem, table + 16ULL * i, 16), raw, 16);
}

void fake_ring_init(struct fake_ring *r, const struct guest_mem *mem, uint16_t size, uint64_t desc)
{
    uint64_t avail = desc + 16ULL * size;
    *r = (struct fake_ring){
        .mem = mem,
        .size = size,
        .desc = desc,
        .avail = avail,
        .used = (avail + 6 + 2ULL * size + 0xfff) & ~0xfffULL,
    };
}

void fake_add_head(struct fake_ring *r, uint16_t head)
{
    fake_put16(r->mem, r->avail + 4 + 2 * (r->avail_idx % r->size), head);
    r->avail_idx++;
    fake_put16(r->mem, r->avail + 2, r->avail_idx);
}

uint16_t fake_post(struct fake_ring *r, const struct fake_buf *bufs, unsigned n)
{
    uint16_t head = r->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % r->size);
        uint16_t flags = (bufs[i].write ? 2 : 0) | (i + 1 < n ? 1 : 0); /* WRITE, NEXT */
        fake_set_desc(r->mem, r->desc, idx, bufs[i].gpa, bufs[i].len, flags,
                      (uint16_t)((idx + 1) % r->size));
    }
    r->next_desc = (uint16_t)((head + n) % r->size);
    fake_add_head(r, head);
    return head;
}

uint16_t fake_used_idx(const struct fake_ring *r) { return fake_get16(r->mem, r->used + 2); }

uint32_t fake_used_id(const struct fake_ring *r, uint16_t slot)
{
    return fake_get32(r->mem, r->used + 4 + 8ULL * (slot % r->size));
}

uint32_t fake_used_len(const struct fake_ring *r, uint16_t slot)
{
    return fake_get32(r->mem, r->used + 8 + 8ULL * (slot % r->size));
}

static void *refill_thread(void *arg)
{
    struct fake_refiller *f = arg;
    struct fake_ring *r = f->ring;
    uint16_t *avail_idx = (uint16_t *)fake_ptr(r->mem, r->avail + 2, 2);
    uint16_t *slots = (uint16_t *)fake_ptr(r->mem, r->avail + 4, 2ULL * r->size);
    const uint16_t *used_idx = (const uint16_t *)fake_ptr(r->mem, r->used + 2, 2);
    uint16_t next = r->avail_idx;
    while (!atomic_load(&f->stop)) {
        if ((uint16_t)(next - __atomic_load_n(used_idx, __ATOMIC_ACQUIRE)) >= r->size)
            continue; /* every entry is out: wait for the device */
        __atomic_store_n(&slots[next % r->size], f->head, __ATOMIC_RELAXED);
        __atomic_store_n(avail_idx, ++next, __ATOMIC_RELEASE);
    }
    r->avail_idx = next;
    return NULL;
}

void fake_refiller_start(struct fake_refiller *f, struct fake_ring *r, uint16_t head)
{
    f->ring = r;
    f->head = head;
    atomic_store(&f->stop, false);
    assert_int_equal(pthread_create(&f->thread, NULL, refill_thread, f), 0);
}

void fake_refiller_stop(struct fake_refiller *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
}

void fake_kick_until_requeued(struct virtio_device *dev, const struct fake_transport *t,
                              unsigned q)
{
    alarm(10);
    while (t->requeues[q] == 0 && !t->needs_reset)
        dev->ops->queue_notify(dev, q);
    alarm(0);
}
