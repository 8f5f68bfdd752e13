/*
 * libFuzzer target for the virtio-blk request parser: the input describes a chain (how many
 * readable and writable buffers, where each lies in guest memory and how long it is), the disk
 * (capacity, read-only, negotiated features) and the guest memory itself. The parser runs on
 * it, then the request is completed as a backend would. Built with ASan+UBSan; the checks
 * below turn a wrong slice, range or used length into a crash too.
 *
 * Input layout (little-endian):
 *   0  u8 out count    1 u8 in count (their sum is capped at VIRTQ_MAX_SEGMENTS unless
 *                                      flag bit 5 asks for a chain the queue never produces)
 *   2  u8 flags: 0 read-only, 1 FLUSH, 2 DISCARD, 3 WRITE_ZEROES negotiated,
 *                4 huge capacity (the u64 below, not its low 16 bits), 5 uncapped counts,
 *                6 the backend fails the request
 *   3  u64 capacity in sectors
 *   11 per buffer: u16 offset, u16 length into guest memory (clipped to fit)
 *   then guest memory: the rest of the input, copied so the buffer ends where memory ends
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk_req.h"

#define HEADER_SIZE 11

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool inside(const uint8_t *mem, size_t mem_size, const void *p, size_t len)
{
    const uint8_t *b = p;
    return b >= mem && len <= mem_size && (size_t)(b - mem) <= mem_size - len;
}

/* The request the parser accepted is sane: data inside memory, lengths and ranges right. */
static uint64_t check_submit(const struct virtio_blk_request *req,
                             const struct virtio_blk_disk *disk, const uint8_t *mem,
                             size_t mem_size)
{
    const struct block_op *op = &req->op;
    if (op->iov != req->iov || op->iovcnt > VIRTIO_BLK_SEG_MAX)
        __builtin_trap();
    uint64_t len = op->len;
    if (op->kind == BLOCK_OP_READ || op->kind == BLOCK_OP_WRITE) {
        len = 0;
        for (unsigned i = 0; i < op->iovcnt; i++) {
            if (!op->iov[i].iov_len || !inside(mem, mem_size, op->iov[i].iov_base, op->iov[i].iov_len))
                __builtin_trap();
            len += op->iov[i].iov_len;
            /* Touch both ends, as the backend's I/O would. */
            uint8_t *b = op->iov[i].iov_base;
            if (op->kind == BLOCK_OP_READ)
                b[0] = b[op->iov[i].iov_len - 1] = 0x5a;
            else
                (void)*(volatile uint8_t *)&b[op->iov[i].iov_len - 1];
        }
        if (!len || len % 512 || len > VIRTIO_BLK_MAX_DATA)
            __builtin_trap();
        if (op->kind == BLOCK_OP_READ && len != req->in_data_len)
            __builtin_trap();
    }
    if (op->kind != BLOCK_OP_FLUSH &&
        (op->offset % 512 || op->offset / 512 > disk->capacity ||
         len / 512 > disk->capacity - op->offset / 512))
        __builtin_trap();
    if (disk->read_only && op->kind != BLOCK_OP_READ && op->kind != BLOCK_OP_FLUSH)
        __builtin_trap();
    return len;
}

static void run(const struct virtq_elem *elem, const struct virtio_blk_disk *disk,
                const uint8_t *mem, size_t mem_size, bool fail)
{
    struct virtio_blk_request *req = malloc(sizeof(*req));
    if (!req)
        return;
    int rc = virtio_blk_parse(elem, disk, req);
    if (req->status && !inside(mem, mem_size, req->status, 1))
        __builtin_trap();
    uint32_t used;
    if (rc == VIRTIO_BLK_SUBMIT) {
        uint64_t len = check_submit(req, disk, mem, mem_size);
        int result = req->op.kind == BLOCK_OP_READ || req->op.kind == BLOCK_OP_WRITE ? (int)len : 0;
        used = virtio_blk_complete(req, fail ? -EIO : result);
    } else {
        if (rc < 0 || rc > VIRTIO_BLK_S_UNSUPP)
            __builtin_trap();
        used = virtio_blk_finish(req, (uint8_t)rc);
    }
    if (req->status ? used > req->in_data_len + 1 : used != 0)
        __builtin_trap();
    free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_SIZE)
        return 0;
    uint8_t flags = data[2];
    unsigned out = data[0], in = data[1];
    if (!(flags & 32) && out + in > VIRTQ_MAX_SEGMENTS)
        in = VIRTQ_MAX_SEGMENTS - out;
    size_t table = (size_t)(out + in) * 4;
    if (size < HEADER_SIZE + table + 1)
        return 0;
    size_t mem_size = size - HEADER_SIZE - table;
    uint8_t *mem = malloc(mem_size);
    struct virtq_elem *elem = calloc(1, sizeof(*elem));
    if (!mem || !elem)
        goto out;
    memcpy(mem, data + HEADER_SIZE + table, mem_size);

    elem->out_count = out;
    elem->in_count = in;
    /* With uncapped counts only the first VIRTQ_MAX_SEGMENTS entries exist; the parser must
     * refuse before looking at any (ASan catches a read past the array). */
    for (unsigned i = 0; i < out + in && i < VIRTQ_MAX_SEGMENTS; i++) {
        const uint8_t *d = data + HEADER_SIZE + 4 * i;
        size_t off = rd16(d) % mem_size, len = rd16(d + 2);
        if (len > mem_size - off)
            len = mem_size - off;
        elem->iov[i] = (struct iovec){mem + off, len};
        if (i < out)
            elem->out_bytes += len;
        else
            elem->in_bytes += len;
    }

    struct virtio_blk_disk disk = {
        .capacity = (flags & 16) ? rd64(data + 3) : rd16(data + 3),
        .read_only = flags & 1,
        .features = (flags & 2 ? UINT64_C(1) << VIRTIO_BLK_F_FLUSH : 0) |
                    (flags & 4 ? UINT64_C(1) << VIRTIO_BLK_F_DISCARD : 0) |
                    (flags & 8 ? UINT64_C(1) << VIRTIO_BLK_F_WRITE_ZEROES : 0),
        .serial = "fuzz-serial",
    };
    run(elem, &disk, mem, mem_size, flags & 64);
out:
    free(elem);
    free(mem);
    return 0;
}
