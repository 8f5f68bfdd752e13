/*
 * virtio-blk request parsing. Choices the spec leaves open:
 *  - Strict layouts: IN and GET_ID carry no readable bytes past the header, OUT and FLUSH and
 *    discard/write-zeroes carry no writable bytes before the status, FLUSH carries no data.
 *    Anything else is a driver bug, answered with IOERR.
 *  - Discard and write-zeroes take exactly one segment (max_*_seg = 1): more is UNSUPP, none
 *    or a partial one is IOERR. A type whose feature was not negotiated is UNSUPP, so on a
 *    read-only disk (which does not offer them) they are UNSUPP, while OUT is IOERR (5.2.6.2).
 *  - Zero-length reads, writes, discards and write-zeroes succeed at once without I/O.
 *  - Without VIRTIO_BLK_F_FLUSH negotiated, writes and write-zeroes are FUA: a driver that
 *    cannot flush is promised writes are stable when completed (5.2.6.2, case 1).
 *  - The used length counts the writable bytes filled from the start: data + status for a
 *    successful read, the status alone when it is the only writable byte, 0 for a failed read
 *    (its data was not written; drivers must not depend on more, 2.7.8.2).
 */
#include "virtio/blk_req.h"

#include <string.h>

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, (uint16_t)v);
    put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Total length, saturating: a chain's lengths are the guest's. */
static size_t iov_bytes(const struct iovec *iov, unsigned cnt)
{
    size_t total = 0;
    for (unsigned i = 0; i < cnt; i++)
        total = iov[i].iov_len > SIZE_MAX - total ? SIZE_MAX : total + iov[i].iov_len;
    return total;
}

/* Copies bytes [skip, skip + len) of iov into or out of buf; returns how many it copied. */
static size_t iov_copy(const struct iovec *iov, unsigned cnt, size_t skip, uint8_t *buf,
                       size_t len, bool to_iov)
{
    size_t copied = 0;
    for (unsigned i = 0; i < cnt && copied < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = iov[i].iov_len - skip;
        if (n > len - copied)
            n = len - copied;
        uint8_t *p = (uint8_t *)iov[i].iov_base + skip;
        if (to_iov)
            memcpy(p, buf + copied, n);
        else
            memcpy(buf + copied, p, n);
        copied += n;
        skip = 0;
    }
    return copied;
}

/*
 * Fills dst with the bytes [skip, skip + len) of src, cutting the first and last buffers as
 * needed (so a buffer holding header + data or data + status yields only its data) and
 * dropping empty ones. Returns the number of entries, or -1 when more than max are needed.
 */
static int iov_slice(const struct iovec *src, unsigned cnt, size_t skip, size_t len,
                     struct iovec *dst, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cnt && len; i++) {
        if (skip >= src[i].iov_len) {
            skip -= src[i].iov_len;
            continue;
        }
        size_t take = src[i].iov_len - skip;
        if (take > len)
            take = len;
        if (n == max)
            return -1;
        dst[n].iov_base = (uint8_t *)src[i].iov_base + skip;
        dst[n].iov_len = take;
        n++;
        len -= take;
        skip = 0;
    }
    return (int)n;
}

/* The chain as the parser sees it: readable part, writable part before the status byte. */
struct chain {
    const struct iovec *out;
    unsigned out_count;
    size_t out_bytes;
    const struct iovec *in;
    unsigned in_count;
};

/* The status byte is the chain's last writable byte; empty buffers at the end do not count. */
static uint8_t *find_status(const struct iovec *in, unsigned in_count)
{
    for (unsigned i = in_count; i-- > 0;)
        if (in[i].iov_len)
            return (uint8_t *)in[i].iov_base + in[i].iov_len - 1;
    return NULL;
}

/* sector and sectors lie within the disk; no product or sum can overflow. */
static bool in_range(const struct virtio_blk_disk *disk, uint64_t sector, uint64_t sectors)
{
    uint64_t capacity = disk->capacity;
    if (capacity > UINT64_MAX / VIRTIO_BLK_SECTOR_SIZE)
        capacity = UINT64_MAX / VIRTIO_BLK_SECTOR_SIZE;
    return sector <= capacity && sectors <= capacity - sector;
}

static bool flush_negotiated(const struct virtio_blk_disk *disk)
{
    return disk->features & (UINT64_C(1) << VIRTIO_BLK_F_FLUSH);
}

/* Checks a read or write of len bytes at sector and points req->op at its data buffers. */
static int parse_rw(const struct virtio_blk_disk *disk, uint64_t sector,
                    const struct iovec *data, unsigned data_count, size_t skip, size_t len,
                    struct virtio_blk_request *req)
{
    if (len % VIRTIO_BLK_SECTOR_SIZE || len > VIRTIO_BLK_MAX_DATA)
        return VIRTIO_BLK_S_IOERR;
    if (!in_range(disk, sector, len / VIRTIO_BLK_SECTOR_SIZE))
        return VIRTIO_BLK_S_IOERR;
    int n = iov_slice(data, data_count, skip, len, req->iov, VIRTIO_BLK_SEG_MAX);
    if (n < 0)
        return VIRTIO_BLK_S_IOERR;
    if (!len)
        return VIRTIO_BLK_S_OK;
    req->op.offset = sector * VIRTIO_BLK_SECTOR_SIZE;
    req->op.iovcnt = (unsigned)n;
    return VIRTIO_BLK_SUBMIT;
}

static int parse_in(const struct chain *c, const struct virtio_blk_disk *disk, uint64_t sector,
                    struct virtio_blk_request *req)
{
    if (c->out_bytes != VIRTIO_BLK_HEADER_SIZE)
        return VIRTIO_BLK_S_IOERR;
    req->op.kind = BLOCK_OP_READ;
    return parse_rw(disk, sector, c->in, c->in_count, 0, req->in_data_len, req);
}

static int parse_out(const struct chain *c, const struct virtio_blk_disk *disk, uint64_t sector,
                     struct virtio_blk_request *req)
{
    if (req->in_data_len || disk->read_only)
        return VIRTIO_BLK_S_IOERR;
    req->op.kind = BLOCK_OP_WRITE;
    req->op.flags = flush_negotiated(disk) ? 0 : BLOCK_OP_F_FUA;
    return parse_rw(disk, sector, c->out, c->out_count, VIRTIO_BLK_HEADER_SIZE,
                    c->out_bytes - VIRTIO_BLK_HEADER_SIZE, req);
}

static int parse_flush(const struct chain *c, struct virtio_blk_request *req)
{
    if (c->out_bytes != VIRTIO_BLK_HEADER_SIZE || req->in_data_len)
        return VIRTIO_BLK_S_IOERR;
    req->op.kind = BLOCK_OP_FLUSH;
    return VIRTIO_BLK_SUBMIT;
}

/* Answers at once: the serial, NUL-padded to 20 bytes, cut to what the driver gave. */
static int parse_get_id(const struct chain *c, const struct virtio_blk_disk *disk,
                        struct virtio_blk_request *req)
{
    if (c->out_bytes != VIRTIO_BLK_HEADER_SIZE)
        return VIRTIO_BLK_S_IOERR;
    uint8_t id[VIRTIO_BLK_ID_BYTES] = {0};
    memcpy(id, disk->serial, strnlen(disk->serial, sizeof(disk->serial)));
    size_t n = req->in_data_len < sizeof(id) ? req->in_data_len : sizeof(id);
    req->written = iov_copy(c->in, c->in_count, 0, id, n, true);
    return VIRTIO_BLK_S_OK;
}

/* The single discard / write-zeroes segment, copied out of guest memory. */
static int read_segment(const struct chain *c, uint64_t *sector, uint32_t *sectors,
                        uint32_t *flags)
{
    size_t seg_bytes = c->out_bytes - VIRTIO_BLK_HEADER_SIZE;
    if (!seg_bytes || seg_bytes % VIRTIO_BLK_SEGMENT_SIZE)
        return VIRTIO_BLK_S_IOERR;
    if (seg_bytes > VIRTIO_BLK_SEGMENT_SIZE)
        return VIRTIO_BLK_S_UNSUPP; /* more segments than max_*_seg = 1 */
    uint8_t seg[VIRTIO_BLK_SEGMENT_SIZE];
    iov_copy(c->out, c->out_count, VIRTIO_BLK_HEADER_SIZE, seg, sizeof(seg), false);
    *sector = get_le64(seg);
    *sectors = get_le32(seg + 8);
    *flags = get_le32(seg + 12);
    return VIRTIO_BLK_SUBMIT;
}

static int parse_discard_zeroes(const struct chain *c, const struct virtio_blk_disk *disk,
                                uint32_t type, struct virtio_blk_request *req)
{
    bool discard = type == VIRTIO_BLK_T_DISCARD;
    unsigned feature = discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    if (!(disk->features & (UINT64_C(1) << feature)))
        return VIRTIO_BLK_S_UNSUPP;
    if (req->in_data_len)
        return VIRTIO_BLK_S_IOERR;
    uint64_t sector;
    uint32_t sectors, flags;
    int rc = read_segment(c, &sector, &sectors, &flags);
    if (rc != VIRTIO_BLK_SUBMIT)
        return rc;
    /* Unknown flags, and unmap on a discard, are UNSUPP by 5.2.6.2. */
    if ((flags & ~VIRTIO_BLK_WZ_UNMAP) || (discard && (flags & VIRTIO_BLK_WZ_UNMAP)))
        return VIRTIO_BLK_S_UNSUPP;
    uint32_t max = discard ? VIRTIO_BLK_MAX_DISCARD_SECTORS : VIRTIO_BLK_MAX_WRITE_ZEROES_SECTORS;
    if (disk->read_only || sectors > max || !in_range(disk, sector, sectors))
        return VIRTIO_BLK_S_IOERR;
    if (!sectors)
        return VIRTIO_BLK_S_OK;
    req->op.kind = discard ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE_ZEROES;
    req->op.offset = sector * VIRTIO_BLK_SECTOR_SIZE;
    req->op.len = (uint64_t)sectors * VIRTIO_BLK_SECTOR_SIZE;
    if (!discard && (flags & VIRTIO_BLK_WZ_UNMAP))
        req->op.flags |= BLOCK_OP_F_MAY_UNMAP;
    if (!discard && !flush_negotiated(disk))
        req->op.flags |= BLOCK_OP_F_FUA;
    return VIRTIO_BLK_SUBMIT;
}

static int dispatch(const struct chain *c, const struct virtio_blk_disk *disk, uint64_t sector,
                    struct virtio_blk_request *req)
{
    switch (req->type) {
    case VIRTIO_BLK_T_IN:
        return parse_in(c, disk, sector, req);
    case VIRTIO_BLK_T_OUT:
        return parse_out(c, disk, sector, req);
    case VIRTIO_BLK_T_FLUSH:
        return parse_flush(c, req);
    case VIRTIO_BLK_T_GET_ID:
        return parse_get_id(c, disk, req);
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return parse_discard_zeroes(c, disk, req->type, req);
    }
    return VIRTIO_BLK_S_UNSUPP;
}

int virtio_blk_parse(const struct virtq_elem *elem, const struct virtio_blk_disk *disk,
                     struct virtio_blk_request *req)
{
    memset(&req->op, 0, sizeof(req->op));
    req->op.iov = req->iov;
    req->type = UINT32_MAX;
    req->status = NULL;
    req->in_data_len = 0;
    req->written = 0;
    /* The queue bounds these; the parser does not rely on it. */
    if (elem->out_count > VIRTQ_MAX_SEGMENTS ||
        elem->in_count > VIRTQ_MAX_SEGMENTS - elem->out_count)
        return VIRTIO_BLK_S_IOERR;
    struct chain c = {
        .out = elem->iov,
        .out_count = elem->out_count,
        .out_bytes = iov_bytes(elem->iov, elem->out_count),
        .in = elem->iov + elem->out_count,
        .in_count = elem->in_count,
    };
    req->status = find_status(c.in, c.in_count);
    if (!req->status)
        return VIRTIO_BLK_S_IOERR; /* nowhere to say so: finish() writes nothing */
    req->in_data_len = iov_bytes(c.in, c.in_count) - 1;
    uint8_t header[VIRTIO_BLK_HEADER_SIZE];
    if (c.out_bytes < sizeof(header))
        return VIRTIO_BLK_S_IOERR;
    iov_copy(c.out, c.out_count, 0, header, sizeof(header), false);
    req->type = get_le32(header);
    return dispatch(&c, disk, get_le64(header + 8), req);
}

uint32_t virtio_blk_finish(struct virtio_blk_request *req, uint8_t status)
{
    if (!req->status)
        return 0;
    *req->status = status;
    /* The status counts only when it directly follows what was filled. */
    size_t used = req->written + (req->written == req->in_data_len ? 1 : 0);
    return used > UINT32_MAX ? UINT32_MAX : (uint32_t)used;
}

uint32_t virtio_blk_complete(struct virtio_blk_request *req, int result)
{
    if (result < 0)
        return virtio_blk_finish(req, VIRTIO_BLK_S_IOERR);
    if (req->type == VIRTIO_BLK_T_IN) {
        if ((size_t)result != req->in_data_len)
            return virtio_blk_finish(req, VIRTIO_BLK_S_IOERR);
        req->written = req->in_data_len;
    }
    return virtio_blk_finish(req, VIRTIO_BLK_S_OK);
}

uint64_t virtio_blk_features(bool read_only)
{
    uint64_t f = UINT64_C(1) << VIRTIO_BLK_F_SEG_MAX | UINT64_C(1) << VIRTIO_BLK_F_BLK_SIZE |
                 UINT64_C(1) << VIRTIO_BLK_F_FLUSH;
    /* A read-only disk has nothing to discard or zero: those requests become UNSUPP. */
    if (read_only)
        return f | UINT64_C(1) << VIRTIO_BLK_F_RO;
    return f | UINT64_C(1) << VIRTIO_BLK_F_DISCARD | UINT64_C(1) << VIRTIO_BLK_F_WRITE_ZEROES;
}

void virtio_blk_config(uint64_t capacity, uint8_t out[VIRTIO_BLK_CONFIG_SIZE])
{
    memset(out, 0, VIRTIO_BLK_CONFIG_SIZE); /* size_max, geometry, topology, writeback: unused */
    put_le64(out + 0, capacity);
    put_le32(out + 12, VIRTIO_BLK_SEG_MAX);
    put_le32(out + 20, VIRTIO_BLK_SECTOR_SIZE);
    put_le32(out + 36, VIRTIO_BLK_MAX_DISCARD_SECTORS);
    put_le32(out + 40, 1);
    put_le32(out + 44, VIRTIO_BLK_DISCARD_ALIGNMENT);
    put_le32(out + 48, VIRTIO_BLK_MAX_WRITE_ZEROES_SECTORS);
    put_le32(out + 52, 1);
    out[56] = 1; /* write_zeroes_may_unmap: an unmap write-zeroes punches a hole */
}
