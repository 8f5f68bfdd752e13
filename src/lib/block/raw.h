/*
 * Raw disk images: a regular file or a block device, read and written asynchronously.
 *
 * I/O goes through io_uring (readv, writev, fsync, fallocate) with at most BLOCK_QUEUE_DEPTH
 * operations in the kernel; more wait in a software queue. When io_uring is unavailable
 * (io_uring_queue_init fails under seccomp or on an old kernel, or COVE_BLOCK_NO_URING=1 is
 * set) the same operations run synchronously inside block_submit(). Either way the result
 * comes back the same way: block_event_fd() becomes readable and block_process_completions()
 * calls each operation's done callback. A backend belongs to one thread (the VM's I/O thread);
 * nothing here is thread-safe.
 */
#ifndef COVE_BLOCK_RAW_H
#define COVE_BLOCK_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SECTOR_SIZE 512
/* Operations handed to the kernel at once; more wait in the backend's software queue. */
#define BLOCK_QUEUE_DEPTH 128
/* The most iovecs one read or write may carry (the kernel's UIO_MAXIOV). */
#define BLOCK_MAX_IOV 1024
/* The most bytes one read or write may move: results are ints. */
#define BLOCK_MAX_TRANSFER (1u << 30)

enum block_op_kind {
    BLOCK_OP_READ,
    BLOCK_OP_WRITE,
    BLOCK_OP_FLUSH,        /* fdatasync */
    BLOCK_OP_DISCARD,      /* a hint: punches a hole where the file system can */
    BLOCK_OP_WRITE_ZEROES, /* the range reads as zeros afterwards, guaranteed */
};

/* The write (or write-zeroes, discard) is durable before it completes: fdatasync follows it. */
#define BLOCK_OP_F_FUA 1u
/* Write-zeroes may deallocate the range (punch a hole) instead of writing zeros. */
#define BLOCK_OP_F_MAY_UNMAP 2u

/* result: bytes moved for reads and writes (always the full length), 0 for the other kinds,
 * or a negative errno. */
typedef void block_done_fn(void *opaque, int result);

struct block_op {
    enum block_op_kind kind;
    unsigned flags;          /* BLOCK_OP_F_* */
    uint64_t offset;         /* bytes; reads, writes, discard, write-zeroes */
    const struct iovec *iov; /* reads and writes; copied by block_submit, the buffers are not */
    unsigned iovcnt;
    uint64_t len;            /* bytes; discard and write-zeroes */
    block_done_fn *done;
    void *opaque;
};

struct block_backend;

/*
 * Opens an image; direct selects O_DIRECT (cache=none). NULL with a one-line message in error
 * ("disk image 'PATH': ...") when the file is missing, not a regular file or block device, not
 * accessible, not a multiple of 512 bytes, or refuses direct I/O.
 */
struct block_backend *block_open(const char *path, bool read_only, bool direct, char *error,
                                 size_t error_len);
/*
 * Waits for the operations the kernel still holds (it writes into their buffers), then frees
 * everything without calling any done callback: call block_drain() first to get them.
 */
void block_close(struct block_backend *b);

uint64_t block_size(const struct block_backend *b); /* bytes, a multiple of 512 */
bool block_read_only(const struct block_backend *b);
bool block_uses_uring(const struct block_backend *b);
/* Readable (EPOLLIN) when completions are ready for block_process_completions(). */
int block_event_fd(const struct block_backend *b);

/*
 * Starts an operation (zero-length ones included: they succeed without I/O).
 * 0: op->done will be called exactly once, from a later
 * block_process_completions() or block_drain(), never from inside this call. Negative errno,
 * and done is never called: -EROFS for a write, discard or write-zeroes on a read-only backend,
 * -EINVAL for a malformed op (no callback, too many iovecs or bytes, a range past the end of
 * the image), -ENOMEM. op and its iovec array may be reused at once; the buffers they point
 * to must stay valid until done.
 */
int block_submit(struct block_backend *b, const struct block_op *op);

/*
 * Between block_plug and block_unplug, block_submit only queues: the requests of one guest
 * kick then reach the kernel in one io_uring_submit at unplug instead of one system call
 * each. Without io_uring (the synchronous fallback) both do nothing.
 */
void block_plug(struct block_backend *b);
void block_unplug(struct block_backend *b);

/* Calls the done callback of every finished operation; returns how many. Callbacks may call
 * block_submit(); what they submit completes in a later call. */
unsigned block_process_completions(struct block_backend *b);

/* Waits until every submitted operation has finished and its callback ran (for device reset). */
void block_drain(struct block_backend *b);

#endif
