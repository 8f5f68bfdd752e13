/*
 * virtio-blk requests (virtio 1.2, 5.2.6): turns a popped chain into a block_op, or into a
 * status to report at once, and writes the status back.
 *
 * A request is a readable header {le32 type; le32 reserved; le64 sector}, then data (readable
 * for writes and discard/write-zeroes segments, writable for reads and GET_ID), then one
 * writable status byte: the last writable byte of the chain. Everything in the chain is the
 * guest's and hostile: the parser copies the header and segments out before looking at them
 * (the guest can change guest memory at any time), checks every length and range without
 * overflow, and writes nothing but GET_ID data before virtio_blk_finish() writes the status.
 *
 * Use:
 *     int v = virtio_blk_parse(&elem, &disk, &req);
 *     if (v == VIRTIO_BLK_SUBMIT) {
 *         req.op.done = ..; req.op.opaque = ..;
 *         int rc = block_submit(backend, &req.op);
 *         if (rc == 0)
 *             return;                                  // done() calls virtio_blk_complete()
 *         used = virtio_blk_complete(&req, rc);
 *     } else {
 *         used = virtio_blk_finish(&req, (uint8_t)v);
 *     }
 *     virtq_push(q, elem.head, used);
 */
#ifndef COVE_VIRTIO_BLK_REQ_H
#define COVE_VIRTIO_BLK_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/raw.h"
#include "virtio/queue.h"

/* Feature bits (virtio 1.2, 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status codes (5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_SECTOR_SIZE 512
#define VIRTIO_BLK_HEADER_SIZE 16
#define VIRTIO_BLK_SEGMENT_SIZE 16 /* a discard / write-zeroes segment */
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WZ_UNMAP 1u     /* segment flag */

/* Limits the device advertises (config space) and enforces. */
#define VIRTIO_BLK_SEG_MAX 254 /* data buffers per request: the 256-entry queue minus header, status */
#define VIRTIO_BLK_MAX_DATA BLOCK_MAX_TRANSFER     /* bytes per read/write (results are ints) */
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22)  /* 2 GiB */
#define VIRTIO_BLK_MAX_WRITE_ZEROES_SECTORS (1u << 22)
#define VIRTIO_BLK_DISCARD_ALIGNMENT 8             /* sectors: 4 KiB, a file system block */
/* The config space up to and including write_zeroes_may_unmap and its padding. */
#define VIRTIO_BLK_CONFIG_SIZE 60

/* Returned by virtio_blk_parse() when req->op must go to the block backend. */
#define VIRTIO_BLK_SUBMIT (-1)

struct virtio_blk_disk {
    uint64_t capacity;                 /* 512-byte sectors */
    bool read_only;
    uint64_t features;                 /* the features the driver accepted (FEATURES_OK) */
    char serial[VIRTIO_BLK_ID_BYTES];  /* GET_ID answer, NUL-padded; need not be terminated */
};

struct virtio_blk_request {
    /* What to submit; done and opaque are the caller's to fill. iov points into this struct:
     * move the request, refill iov. */
    struct block_op op;
    uint32_t type;
    uint8_t *status;          /* the status byte in guest memory; NULL when there is none */
    size_t in_data_len;       /* writable bytes before the status byte */
    size_t written;           /* writable bytes filled from the start, for the used length */
    struct iovec iov[VIRTIO_BLK_SEG_MAX];
};

/*
 * Validates elem against disk. Returns VIRTIO_BLK_SUBMIT with req->op ready, or a status
 * (VIRTIO_BLK_S_*) for the caller to hand to virtio_blk_finish() at once: malformed or
 * out-of-range requests, unsupported types, GET_ID (already answered) and zero-length work.
 * Only GET_ID writes guest memory here; nothing else is touched.
 */
int virtio_blk_parse(const struct virtq_elem *elem, const struct virtio_blk_disk *disk,
                     struct virtio_blk_request *req);

/* Writes the status byte (if there is one) and returns the used length for virtq_push(). */
uint32_t virtio_blk_finish(struct virtio_blk_request *req, uint8_t status);

/* Completes a submitted request from the backend's result (bytes or -errno): OK or IOERR. */
uint32_t virtio_blk_complete(struct virtio_blk_request *req, int result);

/* The device features to offer (the transport adds VERSION_1 and the ring features). */
uint64_t virtio_blk_features(bool read_only);

/* Fills the little-endian config space for a disk of capacity sectors. */
void virtio_blk_config(uint64_t capacity, uint8_t out[VIRTIO_BLK_CONFIG_SIZE]);

#endif
