/*
 * libFuzzer target for the split virtqueue: the input is a hostile guest's RAM plus the ring
 * placement, and the device pops, reads, writes and pushes until the ring is empty or broken.
 * Built with ASan+UBSan: any access outside the RAM buffer or any undefined behaviour is a
 * crash, and the checks below turn a wrong iovec or byte count into one too.
 *
 * Input layout (little-endian), then guest RAM (the rest of the input, copied so that the
 * buffer ends exactly where RAM ends):
 *   0  u16 queue size          2  u8 flags (bit 0 event idx, bit 1 indirect)
 *   3  u8  copy offset         4  u32 desc gpa     8  u32 avail gpa    12  u32 used gpa
 *   16 u16 start index (last_avail_idx = used_idx, for wraparound)
 *   18 u16 low RAM size / 16 (0: all RAM below the hole)
 *   20 u32 hole size (rounded down to 16; high RAM resumes at low size + hole)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest_mem.h"
#include "virtio/queue.h"

#define HEADER_SIZE 24
#define COPY_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }

/* A guest_mem over a plain buffer, split around a hole like the x86 layout. Both halves start
 * 16-aligned on the host and in the guest, as with the real 3 GiB / 4 GiB split. */
static struct guest_mem make_mem(uint8_t *ram, size_t ram_size, const uint8_t *hdr)
{
    uint64_t low = (uint64_t)rd16(hdr + 18) * 16;
    if (low == 0 || low > ram_size)
        low = ram_size;
    return (struct guest_mem){
        .host = ram,
        .size = ram_size,
        .low_size = low,
        .high_base = low + (rd32(hdr + 20) & ~15u),
        .memfd = -1,
    };
}

/* Every iovec must lie inside RAM and the counts must add up. */
static void check_elem(const struct virtq_elem *e, const struct guest_mem *mem)
{
    if (e->out_count + e->in_count > VIRTQ_MAX_SEGMENTS)
        __builtin_trap();
    size_t out = 0, in = 0;
    for (unsigned i = 0; i < e->out_count + e->in_count; i++) {
        const uint8_t *b = e->iov[i].iov_base;
        size_t len = e->iov[i].iov_len;
        if (len == 0 || b < mem->host || len > mem->size ||
            (size_t)(b - mem->host) > mem->size - len)
            __builtin_trap();
        /* Touch both ends so ASan sees it too. */
        volatile uint8_t first = b[0], last = b[len - 1];
        (void)first;
        (void)last;
        if (i < e->out_count)
            out += len;
        else
            in += len;
    }
    if (out != e->out_bytes || in != e->in_bytes || out + in > (1ULL << 32))
        __builtin_trap();
}

/* Reads and writes a bounded amount at an offset, as a device would; returns bytes written. */
static uint32_t exercise(const struct virtq_elem *e, size_t offset)
{
    uint8_t buf[COPY_MAX];
    size_t want = e->out_bytes > offset ? e->out_bytes - offset : 0;
    if (want > COPY_MAX)
        want = COPY_MAX;
    if (virtq_read(e, offset, buf, COPY_MAX) != want)
        __builtin_trap();
    memset(buf, 0xa5, sizeof(buf));
    want = e->in_bytes > offset ? e->in_bytes - offset : 0;
    if (want > COPY_MAX)
        want = COPY_MAX;
    if (virtq_write(e, offset, buf, COPY_MAX) != want)
        __builtin_trap();
    return (uint32_t)want;
}

static void run_queue(struct virtq *q, const struct guest_mem *mem, size_t offset)
{
    struct virtq_elem elem;
    /* The device's own writes can land on the avail ring and keep it non-empty; bound the
     * number of requests so one input cannot run for ever. */
    for (unsigned n = 0; n < (unsigned)q->size + 16; n++) {
        if (virtq_pop(q, &elem) <= 0)
            break;
        check_elem(&elem, mem);
        virtq_push(q, elem.head, exercise(&elem, offset));
        (void)virtq_should_signal(q);
    }
    virtq_disable_notify(q);
    (void)virtq_enable_notify(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size <= HEADER_SIZE)
        return 0;
    size_t ram_size = size - HEADER_SIZE;
    uint8_t *ram = malloc(ram_size);
    if (!ram)
        return 0;
    memcpy(ram, data + HEADER_SIZE, ram_size);
    struct guest_mem mem = make_mem(ram, ram_size, data);
    uint8_t flags = data[2];
    struct virtq q;
    if (virtq_init(&q, &mem, rd16(data), rd32(data + 4), rd32(data + 8), rd32(data + 12),
                   flags & 1, flags & 2) == 0) {
        q.last_avail_idx = q.used_idx = rd16(data + 16);
        run_queue(&q, &mem, data[3]);
    }
    free(ram);
    return 0;
}
