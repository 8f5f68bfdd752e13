/*
 * Raw images over io_uring, with a synchronous fallback behind the same completion model.
 *
 * Every operation is a small state machine (enum stage) fed one syscall result at a time by
 * req_advance(): the io_uring path feeds it completion queue entries, the fallback path runs
 * the syscalls in a loop. So retries, short transfers, fallocate fallbacks and the fdatasync
 * after a FUA write behave identically in both modes.
 *
 * Choices:
 *  - Short reads and writes are continued from where they stopped. A read that hits end of
 *    file (the image shrank under us) fills the rest with zeros, as a raw image reads beyond
 *    its data; a write that makes no progress fails with -EIO.
 *  - -EINTR and -EAGAIN are retried MAX_RETRIES times.
 *  - Discard punches a hole; a file system that cannot is not an error (discard is a hint).
 *  - Write-zeroes tries, in order: PUNCH_HOLE (only with BLOCK_OP_F_MAY_UNMAP, since virtio
 *    allows deallocation only then), ZERO_RANGE, then writing zeros. -EOPNOTSUPP and -EINVAL
 *    from fallocate move on to the next way; writing zeros is always correct.
 *  - With O_DIRECT, buffers not aligned to 512 bytes are staged through a bounce buffer of at
 *    most BOUNCE_MAX bytes per step, so a guest cannot make the host allocate much.
 */
#include "block/raw.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_DIRECT needs buffers, offsets and lengths aligned to the logical block size. */
#define DIRECT_ALIGN 512u
#define BOUNCE_MAX (256u << 10)
/* Writing zeros (no fallocate support) moves this much per step, from shared zero pages. */
#define ZERO_CHUNK (1u << 20)
#define MAX_RETRIES 8

enum stage {
    STAGE_RW,         /* readv / writev of what is left */
    STAGE_FLUSH,      /* fdatasync: a FLUSH, or the tail of a FUA write */
    STAGE_DISCARD,    /* PUNCH_HOLE for a discard */
    STAGE_PUNCH,      /* PUNCH_HOLE for write-zeroes with MAY_UNMAP */
    STAGE_ZERO_RANGE, /* ZERO_RANGE for write-zeroes */
    STAGE_ZERO_WRITE, /* writev from the zero pages */
    STAGE_DONE,
};

enum step_kind { STEP_READV, STEP_WRITEV, STEP_FSYNC, STEP_FALLOCATE };

/* One syscall, described once for both io_uring and the synchronous path. */
struct step {
    enum step_kind kind;
    const struct iovec *iov;
    unsigned iovcnt;
    uint64_t offset;
    uint64_t len; /* fallocate */
    int mode;     /* fallocate */
};

struct block_req {
    struct block_req *next;
    enum block_op_kind kind;
    enum stage stage;
    unsigned flags;
    uint64_t offset;
    uint64_t len;
    uint64_t done; /* bytes of the current data stage already moved */
    int result;
    unsigned retries;
    block_done_fn *cb;
    void *opaque;
    uint8_t *bounce;    /* O_DIRECT staging for misaligned caller buffers, or NULL */
    struct iovec chunk; /* the one iovec of a bounce or zero-write step */
    unsigned first;     /* without bounce: iov[first] is the first buffer not yet done */
    unsigned iovcnt;
    struct iovec iov[]; /* the caller's iovecs; advanced in place unless bouncing */
};

struct req_list {
    struct block_req *head;
    struct block_req *tail;
};

struct block_backend {
    int fd;
    int event_fd;
    uint64_t size;
    bool read_only;
    bool direct;
    bool uring;
    bool plugged;             /* between block_plug and block_unplug: collect, do not submit */
    struct io_uring ring;
    unsigned in_kernel;       /* SQEs prepared and not yet completed */
    struct req_list waiting;  /* steps that did not fit in the ring yet */
    struct req_list finished; /* callbacks due in block_process_completions() */
    uint8_t *zeros;           /* ZERO_CHUNK of read-only zero pages, mapped on first use */
};

/* ---- small helpers ---- */

static void list_push(struct req_list *l, struct block_req *r)
{
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static struct block_req *list_pop(struct req_list *l)
{
    struct block_req *r = l->head;
    if (r) {
        l->head = r->next;
        if (!l->head)
            l->tail = NULL;
    }
    return r;
}

/* Copies between a flat buffer and the bytes [skip, skip + len) of an iovec array; a NULL
 * buffer zeroes the iovec bytes instead. */
static void iov_xfer(const struct iovec *iov, unsigned cnt, size_t skip, uint8_t *buf,
                     size_t len, bool to_iov)
{
    for (unsigned i = 0; i < cnt && len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t n = iov[i].iov_len - skip;
        if (n > len)
            n = len;
        uint8_t *p = (uint8_t *)iov[i].iov_base + skip;
        if (!buf)
            memset(p, 0, n);
        else if (to_iov)
            memcpy(p, buf, n);
        else
            memcpy(buf, p, n);
        if (buf)
            buf += n;
        len -= n;
        skip = 0;
    }
}

static void signal_event(struct block_backend *b)
{
    uint64_t one = 1;
    /* Cannot fail short of counter overflow; a lost wake-up would only delay callbacks. */
    if (write(b->event_fd, &one, sizeof(one)) < 0) {
    }
}

static void clear_event(struct block_backend *b)
{
    uint64_t v;
    if (read(b->event_fd, &v, sizeof(v)) < 0) {
    }
}

/* ---- the per-request state machine ---- */

static bool finish(struct block_req *r, int result)
{
    r->result = result;
    r->stage = STAGE_DONE;
    return false;
}

static int success_value(const struct block_req *r)
{
    return r->kind == BLOCK_OP_READ || r->kind == BLOCK_OP_WRITE ? (int)r->len : 0;
}

/* Switches to another stage; returns true (a step to issue) unless that is impossible. */
static bool enter(struct block_backend *b, struct block_req *r, enum stage stage)
{
    r->stage = stage;
    r->done = 0;
    r->retries = 0;
    if (stage == STAGE_ZERO_WRITE && !b->zeros) {
        void *p = mmap(NULL, ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return finish(r, -ENOMEM);
        b->zeros = p;
    }
    return true;
}

/* The data part is over: a FUA operation still needs its fdatasync. */
static bool data_done(struct block_backend *b, struct block_req *r, int res)
{
    if (res < 0)
        return finish(r, res);
    if ((r->flags & BLOCK_OP_F_FUA) && r->kind != BLOCK_OP_READ)
        return enter(b, r, STAGE_FLUSH);
    return finish(r, success_value(r));
}

/* Marks res bytes of the current read/write step as moved. */
static void rw_consume(struct block_req *r, size_t res)
{
    if (r->bounce) {
        if (r->kind == BLOCK_OP_READ)
            iov_xfer(r->iov, r->iovcnt, r->done, r->bounce, res, true);
    } else {
        size_t n = res;
        while (n && r->first < r->iovcnt) {
            struct iovec *v = &r->iov[r->first];
            size_t k = n < v->iov_len ? n : v->iov_len;
            v->iov_base = (uint8_t *)v->iov_base + k;
            v->iov_len -= k;
            n -= k;
            if (!v->iov_len)
                r->first++;
        }
    }
    r->done += res;
}

static bool rw_advance(struct block_backend *b, struct block_req *r, int res)
{
    if (res < 0)
        return finish(r, res);
    if (res == 0) {
        if (r->kind == BLOCK_OP_WRITE)
            return finish(r, -EIO);
        /* End of file: the rest of a raw image reads as zeros. */
        if (r->bounce)
            iov_xfer(r->iov, r->iovcnt, r->done, NULL, r->len - r->done, true);
        else
            iov_xfer(r->iov + r->first, r->iovcnt - r->first, 0, NULL, r->len - r->done, true);
        r->done = r->len;
    } else {
        rw_consume(r, (size_t)res);
    }
    r->retries = 0;
    return r->done < r->len ? true : data_done(b, r, 0);
}

static bool zero_write_advance(struct block_backend *b, struct block_req *r, int res)
{
    if (res < 0)
        return finish(r, res);
    if (res == 0)
        return finish(r, -EIO);
    r->done += (unsigned)res;
    r->retries = 0;
    return r->done < r->len ? true : data_done(b, r, 0);
}

static bool fallocate_unsupported(int res)
{
    return res == -EOPNOTSUPP || res == -EINVAL;
}

/* Feeds one syscall result in; returns true when the request has another step to issue. */
static bool req_advance(struct block_backend *b, struct block_req *r, int res)
{
    if ((res == -EINTR || res == -EAGAIN) && r->retries < MAX_RETRIES) {
        r->retries++;
        return true;
    }
    switch (r->stage) {
    case STAGE_RW:
        return rw_advance(b, r, res);
    case STAGE_FLUSH:
        return finish(r, res < 0 ? res : success_value(r));
    case STAGE_DISCARD:
        return data_done(b, r, res == -EOPNOTSUPP ? 0 : res);
    case STAGE_PUNCH:
        return fallocate_unsupported(res) ? enter(b, r, STAGE_ZERO_RANGE) : data_done(b, r, res);
    case STAGE_ZERO_RANGE:
        return fallocate_unsupported(res) ? enter(b, r, STAGE_ZERO_WRITE) : data_done(b, r, res);
    case STAGE_ZERO_WRITE:
        return zero_write_advance(b, r, res);
    case STAGE_DONE:
        break;
    }
    return finish(r, -EIO);
}

/* Picks the first stage; returns true when it needs a syscall. */
static bool req_start(struct block_backend *b, struct block_req *r)
{
    switch (r->kind) {
    case BLOCK_OP_READ:
    case BLOCK_OP_WRITE:
        r->stage = STAGE_RW;
        return r->len ? true : data_done(b, r, 0);
    case BLOCK_OP_FLUSH:
        return enter(b, r, STAGE_FLUSH);
    case BLOCK_OP_DISCARD:
        return r->len ? enter(b, r, STAGE_DISCARD) : finish(r, 0);
    case BLOCK_OP_WRITE_ZEROES:
        if (!r->len)
            return finish(r, 0);
        return enter(b, r, (r->flags & BLOCK_OP_F_MAY_UNMAP) ? STAGE_PUNCH : STAGE_ZERO_RANGE);
    }
    return finish(r, -EINVAL);
}

/* A read or write of what is left: straight from the caller's buffers, or one bounce chunk
 * (write data staged into it now; read data copied out by rw_consume()). */
static void rw_step(struct block_req *r, struct step *s)
{
    s->kind = r->kind == BLOCK_OP_READ ? STEP_READV : STEP_WRITEV;
    s->offset = r->offset + r->done;
    if (!r->bounce) {
        s->iov = r->iov + r->first;
        s->iovcnt = r->iovcnt - r->first;
        return;
    }
    uint64_t left = r->len - r->done;
    r->chunk.iov_base = r->bounce;
    r->chunk.iov_len = left < BOUNCE_MAX ? left : BOUNCE_MAX;
    if (r->kind == BLOCK_OP_WRITE)
        iov_xfer(r->iov, r->iovcnt, r->done, r->bounce, r->chunk.iov_len, false);
    s->iov = &r->chunk;
    s->iovcnt = 1;
}

static void zero_write_step(const struct block_backend *b, struct block_req *r, struct step *s)
{
    uint64_t left = r->len - r->done;
    r->chunk.iov_base = b->zeros;
    r->chunk.iov_len = left < ZERO_CHUNK ? left : ZERO_CHUNK;
    s->kind = STEP_WRITEV;
    s->iov = &r->chunk;
    s->iovcnt = 1;
    s->offset = r->offset + r->done;
}

/* Describes the syscall the request's current stage needs. */
static void describe_step(const struct block_backend *b, struct block_req *r, struct step *s)
{
    memset(s, 0, sizeof(*s));
    s->kind = STEP_FALLOCATE;
    s->offset = r->offset;
    s->len = r->len;
    switch (r->stage) {
    case STAGE_RW:
        rw_step(r, s);
        break;
    case STAGE_ZERO_WRITE:
        zero_write_step(b, r, s);
        break;
    case STAGE_FLUSH:
        s->kind = STEP_FSYNC;
        break;
    case STAGE_DISCARD:
    case STAGE_PUNCH:
        s->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        break;
    case STAGE_ZERO_RANGE:
        s->mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        break;
    case STAGE_DONE: /* never issued */
        break;
    }
}

/* ---- the synchronous path ---- */

static int run_step_sync(int fd, const struct step *s)
{
    ssize_t n;
    switch (s->kind) {
    case STEP_READV:
        n = preadv(fd, s->iov, (int)s->iovcnt, (off_t)s->offset);
        break;
    case STEP_WRITEV:
        n = pwritev(fd, s->iov, (int)s->iovcnt, (off_t)s->offset);
        break;
    case STEP_FSYNC:
        n = fdatasync(fd);
        break;
    default:
        n = fallocate(fd, s->mode, (off_t)s->offset, (off_t)s->len);
        break;
    }
    return n < 0 ? -errno : (int)n;
}

static void run_sync(struct block_backend *b, struct block_req *r, bool more)
{
    while (more) {
        struct step s;
        describe_step(b, r, &s);
        more = req_advance(b, r, run_step_sync(b->fd, &s));
    }
}

/* ---- the io_uring path ---- */

static void prep_sqe(struct io_uring_sqe *sqe, int fd, const struct step *s)
{
    switch (s->kind) {
    case STEP_READV:
        io_uring_prep_readv(sqe, fd, s->iov, s->iovcnt, s->offset);
        break;
    case STEP_WRITEV:
        io_uring_prep_writev(sqe, fd, s->iov, s->iovcnt, s->offset);
        break;
    case STEP_FSYNC:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case STEP_FALLOCATE:
        io_uring_prep_fallocate(sqe, fd, s->mode, (off_t)s->offset, (off_t)s->len);
        break;
    }
}

/* Moves waiting steps into the ring, at most BLOCK_QUEUE_DEPTH in the kernel so the
 * completion ring (twice as large) can never overflow, and submits them. */
static void fill_ring(struct block_backend *b)
{
    while (b->waiting.head && b->in_kernel < BLOCK_QUEUE_DEPTH) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        if (!sqe)
            break;
        struct block_req *r = list_pop(&b->waiting);
        struct step s;
        describe_step(b, r, &s);
        prep_sqe(sqe, b->fd, &s);
        io_uring_sqe_set_data(sqe, r);
        b->in_kernel++;
    }
    if (b->plugged)
        return;
    /* On failure the SQEs stay in the ring and go with the next submit. */
    while (io_uring_sq_ready(&b->ring) && io_uring_submit(&b->ring) == -EINTR) {
    }
}

void block_plug(struct block_backend *b)
{
    b->plugged = true;
}

void block_unplug(struct block_backend *b)
{
    b->plugged = false;
    if (b->uring)
        fill_ring(b);
}

static void reap(struct block_backend *b)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&b->ring, head, cqe) {
        struct block_req *r = io_uring_cqe_get_data(cqe);
        b->in_kernel--;
        seen++;
        if (req_advance(b, r, cqe->res))
            list_push(&b->waiting, r);
        else
            list_push(&b->finished, r);
    }
    io_uring_cq_advance(&b->ring, seen);
    fill_ring(b);
}

static bool uring_has_ops(struct io_uring *ring)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(ring);
    if (!p)
        return false;
    bool ok = io_uring_opcode_supported(p, IORING_OP_READV) &&
              io_uring_opcode_supported(p, IORING_OP_WRITEV) &&
              io_uring_opcode_supported(p, IORING_OP_FSYNC) &&
              io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
    io_uring_free_probe(p);
    return ok;
}

/* io_uring is optional: seccomp filters and old kernels refuse it, and tests turn it off. */
static bool uring_setup(struct block_backend *b)
{
    const char *off = getenv("COVE_BLOCK_NO_URING");
    if (off && *off && strcmp(off, "0") != 0)
        return false;
    if (io_uring_queue_init(BLOCK_QUEUE_DEPTH, &b->ring, 0) < 0)
        return false;
    if (!uring_has_ops(&b->ring) || io_uring_register_eventfd(&b->ring, b->event_fd) < 0) {
        io_uring_queue_exit(&b->ring);
        return false;
    }
    return true;
}

/* ---- submission and completion ---- */

static int op_length(const struct block_op *op, uint64_t *len)
{
    *len = 0;
    switch (op->kind) {
    case BLOCK_OP_READ:
    case BLOCK_OP_WRITE:
        if (op->iovcnt > BLOCK_MAX_IOV || (op->iovcnt && !op->iov))
            return -EINVAL;
        for (unsigned i = 0; i < op->iovcnt; i++) {
            if (op->iov[i].iov_len > BLOCK_MAX_TRANSFER - *len)
                return -EINVAL;
            *len += op->iov[i].iov_len;
        }
        return 0;
    case BLOCK_OP_DISCARD:
    case BLOCK_OP_WRITE_ZEROES:
        *len = op->len;
        return 0;
    case BLOCK_OP_FLUSH:
        return 0;
    }
    return -EINVAL;
}

static int op_check(const struct block_backend *b, const struct block_op *op, uint64_t *len)
{
    if (!op || !op->done)
        return -EINVAL;
    int rc = op_length(op, len);
    if (rc)
        return rc;
    if (op->kind == BLOCK_OP_FLUSH)
        return 0;
    if (op->kind != BLOCK_OP_READ && b->read_only)
        return -EROFS;
    /* Callers bound requests already; this keeps a bug from growing the image. */
    if (op->offset > b->size || *len > b->size - op->offset)
        return -EINVAL;
    return 0;
}

static bool needs_bounce(const struct block_backend *b, const struct block_op *op)
{
    if (!b->direct || (op->kind != BLOCK_OP_READ && op->kind != BLOCK_OP_WRITE))
        return false;
    for (unsigned i = 0; i < op->iovcnt; i++)
        if (op->iov[i].iov_len &&
            ((uintptr_t)op->iov[i].iov_base % DIRECT_ALIGN || op->iov[i].iov_len % DIRECT_ALIGN))
            return true;
    return false;
}

static struct block_req *req_new(const struct block_backend *b, const struct block_op *op,
                                 uint64_t len)
{
    unsigned cnt = op->kind == BLOCK_OP_READ || op->kind == BLOCK_OP_WRITE ? op->iovcnt : 0;
    struct block_req *r = calloc(1, sizeof(*r) + cnt * sizeof(struct iovec));
    if (!r)
        return NULL;
    if (cnt)
        memcpy(r->iov, op->iov, cnt * sizeof(struct iovec));
    r->iovcnt = cnt;
    r->kind = op->kind;
    r->flags = op->flags;
    r->offset = op->offset;
    r->len = len;
    r->cb = op->done;
    r->opaque = op->opaque;
    if (len && needs_bounce(b, op)) {
        size_t size = len < BOUNCE_MAX ? (size_t)len : BOUNCE_MAX;
        size = (size + 4095) & ~(size_t)4095;
        if (posix_memalign((void **)&r->bounce, 4096, size) != 0) {
            free(r);
            return NULL;
        }
    }
    return r;
}

static void req_free(struct block_req *r)
{
    free(r->bounce);
    free(r);
}

int block_submit(struct block_backend *b, const struct block_op *op)
{
    uint64_t len;
    int rc = op_check(b, op, &len);
    if (rc)
        return rc;
    struct block_req *r = req_new(b, op, len);
    if (!r)
        return -ENOMEM;
    bool more = req_start(b, r);
    if (!b->uring)
        run_sync(b, r, more);
    else if (more) {
        list_push(&b->waiting, r);
        fill_ring(b);
        return 0;
    }
    list_push(&b->finished, r);
    signal_event(b);
    return 0;
}

static unsigned deliver(struct block_backend *b)
{
    /* Detach first: callbacks may submit, and what they submit belongs to a later call. */
    struct block_req *r = b->finished.head;
    b->finished.head = b->finished.tail = NULL;
    unsigned n = 0;
    while (r) {
        struct block_req *next = r->next;
        r->cb(r->opaque, r->result);
        req_free(r);
        r = next;
        n++;
    }
    return n;
}

unsigned block_process_completions(struct block_backend *b)
{
    /* Clear before reaping: a completion posted after this read signals again. */
    clear_event(b);
    if (b->uring)
        reap(b);
    return deliver(b);
}

void block_drain(struct block_backend *b)
{
    for (;;) {
        clear_event(b);
        if (b->uring)
            reap(b);
        if (b->finished.head) {
            deliver(b);
            continue;
        }
        if (!b->uring || !b->in_kernel)
            return;
        /* Submits too: SQEs a failed io_uring_submit() left behind must not wait for ever. */
        int rc = io_uring_submit_and_wait(&b->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            return;
    }
}

/* ---- opening and closing ---- */

static void open_error(char *error, size_t error_len, const char *path, const char *what)
{
    snprintf(error, error_len, "disk image '%s': %s", path, what);
}

static const char *open_errno_text(int err, bool direct)
{
    switch (err) {
    case ENOENT:
        return "no such file";
    case EACCES:
    case EPERM:
        return "permission denied";
    case EROFS:
        return "read-only file system (open the image read-only)";
    case EISDIR:
    case ENXIO:
    case ENODEV:
        return "not a regular file or block device";
    case EINVAL:
        if (direct)
            return "cache=none (O_DIRECT) is not supported by its file system";
        break;
    }
    return strerror(err);
}

/* Opens path as a regular file or block device and learns its size; -1 with error set. */
static int open_image(const char *path, bool read_only, bool direct, uint64_t *size,
                      char *error, size_t error_len)
{
    /* O_NONBLOCK keeps a FIFO from blocking the open; it is cleared again below because
     * io_uring would then return -EAGAIN instead of waiting for the page cache. */
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    int fd = open(path, flags | (direct ? O_DIRECT : 0));
    if (fd < 0) {
        open_error(error, error_len, path, open_errno_text(errno, direct));
        return -1;
    }
    struct stat st;
    const char *problem = NULL;
    if (fstat(fd, &st) < 0)
        problem = strerror(errno);
    else if (S_ISREG(st.st_mode))
        *size = (uint64_t)st.st_size;
    else if (!S_ISBLK(st.st_mode))
        problem = "not a regular file or block device";
    else if (ioctl(fd, BLKGETSIZE64, size) < 0)
        problem = strerror(errno);
    if (!problem && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        problem = strerror(errno);
    if (problem) {
        open_error(error, error_len, path, problem);
        close(fd);
        return -1;
    }
    return fd;
}

/* Some file systems accept O_DIRECT at open and refuse the I/O, and 4K-sector devices refuse
 * 512-byte direct I/O: one aligned read finds both now rather than as guest I/O errors. */
static bool direct_io_works(int fd, uint64_t size)
{
    if (size < DIRECT_ALIGN)
        return true;
    uint8_t *buf;
    if (posix_memalign((void **)&buf, 4096, 4096) != 0)
        return true;
    /* buf + 512: the memory alignment the bounce logic promises (512, not 4096). */
    ssize_t n = pread(fd, buf + DIRECT_ALIGN, DIRECT_ALIGN, 0);
    bool ok = n >= 0 || errno != EINVAL;
    free(buf);
    return ok;
}

static bool check_image(int fd, uint64_t size, bool direct, const char *path, char *error,
                        size_t error_len)
{
    char text[96];
    if (size % BLOCK_SECTOR_SIZE) {
        snprintf(text, sizeof(text), "image size %llu is not a multiple of 512",
                 (unsigned long long)size);
        open_error(error, error_len, path, text);
        return false;
    }
    if (direct && !direct_io_works(fd, size)) {
        open_error(error, error_len, path,
                   "cache=none (O_DIRECT) needs 512-byte direct I/O, which it refuses");
        return false;
    }
    return true;
}

struct block_backend *block_open(const char *path, bool read_only, bool direct, char *error,
                                 size_t error_len)
{
    uint64_t size = 0;
    int fd = open_image(path, read_only, direct, &size, error, error_len);
    if (fd < 0)
        return NULL;
    struct block_backend *b = NULL;
    if (!check_image(fd, size, direct, path, error, error_len))
        goto fail;
    b = calloc(1, sizeof(*b));
    if (!b) {
        open_error(error, error_len, path, strerror(ENOMEM));
        goto fail;
    }
    b->fd = fd;
    b->size = size;
    b->read_only = read_only;
    b->direct = direct;
    b->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->event_fd < 0) {
        open_error(error, error_len, path, strerror(errno));
        goto fail;
    }
    b->uring = uring_setup(b);
    return b;
fail:
    free(b);
    close(fd);
    return NULL;
}

static void free_list(struct req_list *l)
{
    struct block_req *r;
    while ((r = list_pop(l)))
        req_free(r);
}

void block_close(struct block_backend *b)
{
    if (!b)
        return;
    /* The kernel may still write into these requests' buffers: wait, but call nobody. */
    while (b->uring && b->in_kernel) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait(&b->ring, 1);
        if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
            continue;
        if (rc < 0 || io_uring_peek_cqe(&b->ring, &cqe) != 0)
            break;
        req_free(io_uring_cqe_get_data(cqe));
        io_uring_cqe_seen(&b->ring, cqe);
        b->in_kernel--;
    }
    if (b->uring)
        io_uring_queue_exit(&b->ring);
    free_list(&b->waiting);
    free_list(&b->finished);
    if (b->zeros)
        munmap(b->zeros, ZERO_CHUNK);
    close(b->event_fd);
    close(b->fd);
    free(b);
}

uint64_t block_size(const struct block_backend *b)
{
    return b->size;
}

bool block_read_only(const struct block_backend *b)
{
    return b->read_only;
}

bool block_uses_uring(const struct block_backend *b)
{
    return b->uring;
}

int block_event_fd(const struct block_backend *b)
{
    return b->event_fd;
}
