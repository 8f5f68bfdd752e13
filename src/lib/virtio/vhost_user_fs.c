/*
 * vhost-user back-end for virtio-fs (see vhost_user_fs.h).
 *
 * What is offered: VIRTIO_F_VERSION_1, indirect descriptors and EVENT_IDX, and
 * VHOST_USER_F_PROTOCOL_FEATURES with no protocol feature in it. QEMU needs the latter to
 * learn how many memory regions it may send (8 without CONFIGURE_MEM_SLOTS); it also makes
 * rings start disabled until SET_VRING_ENABLE. No reply-ack, config, inflight or logging
 * messages exist then, so the message set stays the original protocol's plus those three.
 *
 * Trust: the front-end runs as a user who could read the shared directory anyway, but it
 * still must not make us crash, so every message is checked (sizes, indices, descriptor
 * counts, addresses inside the lent regions). Its guest is hostile as ever: the rings are
 * read by virtio/queue.c through guest_mem, whose regions are exactly the lent RAM. A broken
 * ring stops that queue and signals its error eventfd (QEMU logs it); a malformed message
 * ends the session.
 */
#include "virtio/vhost_user_fs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest_mem.h"
#include "virtio/queue.h"

#define F_INDIRECT_DESC 28
#define F_EVENT_IDX 29
#define F_PROTOCOL_FEATURES 30
#define F_VERSION_1 32
#define OFFERED_FEATURES                                                                          \
    ((1ULL << F_VERSION_1) | (1ULL << F_INDIRECT_DESC) | (1ULL << F_EVENT_IDX) |                  \
     (1ULL << F_PROTOCOL_FEATURES))
#define OFFERED_PROTOCOL_FEATURES 0ULL

/* SET_VRING_KICK/CALL/ERR payload: the queue index, and this bit when no descriptor came. */
#define VRING_INDEX_MASK 0xffu
#define VRING_NO_FD 0x100u

/* Payload sizes of the fixed-size messages. */
#define U64_SIZE 8
#define VRING_STATE_SIZE 8 /* u32 index, u32 num */
#define VRING_ADDR_SIZE 40 /* u32 index, u32 flags, u64 desc, used, avail, log */
#define MEM_REGION_SIZE 32 /* u64 guest address, size, front-end address, mmap offset */

struct lent_region {
    uint64_t gpa, size, uva;
    uint8_t *map; /* the whole mapping, from offset 0 of the front-end's descriptor */
    size_t map_len;
    dev_t file_dev; /* the lent file and the part of it that is guest RAM */
    ino_t file_ino;
    uint64_t offset;
};

struct vhost_user_fs;

struct vu_queue {
    struct vhost_user_fs *vu; /* for the kick handler */
    unsigned index;
    uint16_t num;
    uint64_t desc_uva, avail_uva, used_uva;
    uint16_t base; /* where the next start begins: SET_VRING_BASE, or where the last stop left */
    int kick_fd, call_fd, err_fd;
    bool watched; /* kick_fd is on the loop */
    bool enabled; /* SET_VRING_ENABLE, or always without protocol features */
    bool started;
    bool broken; /* the guest broke the ring: idle until the next start */
    struct virtq q;
};

struct vhost_user_fs {
    struct fuse_server *server;
    struct io_loop *loop;
    uint64_t features;
    struct guest_mem mem; /* regions only: the lent RAM */
    struct lent_region regions[GUEST_MEM_MAX_REGIONS];
    unsigned region_count;
    struct vu_queue queues[VHOST_USER_FS_MAX_QUEUES];
    struct virtq_elem elem; /* ~4 KiB: here rather than on the stack */
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int protocol_error(char *error, size_t error_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, error_len, fmt, ap);
    va_end(ap);
    return -EPROTO;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v)); /* vhost-user is in the host's byte order */
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void put_reply(struct vhost_user_msg *reply, uint32_t request, const void *payload,
                      uint32_t size)
{
    reply->request = request;
    reply->flags = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY;
    reply->size = size;
    memcpy(reply->payload, payload, size);
}

/* Queue i as it is before the front-end says anything about it. */
static void init_queue(struct vhost_user_fs *vu, unsigned i)
{
    vu->queues[i] = (struct vu_queue){vu, i, .kick_fd = -1, .call_fd = -1, .err_fd = -1};
}

struct vhost_user_fs *vhost_user_fs_new(struct fuse_server *server, struct io_loop *loop)
{
    struct vhost_user_fs *vu = calloc(1, sizeof(*vu));
    if (!vu)
        return NULL;
    vu->server = server;
    vu->loop = loop;
    vu->mem.memfd = -1;
    for (unsigned i = 0; i < VHOST_USER_FS_MAX_QUEUES; i++)
        init_queue(vu, i);
    return vu;
}

/* ---- Queues ---- */

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* a full eventfd counter already wakes the front-end */
    }
}

static bool serve_one(void *ctx, struct virtq_elem *e)
{
    struct vu_queue *vq = ctx;
    size_t n = fuse_server_handle(vq->vu->server, e->iov, e->out_count, e->iov + e->out_count,
                                  e->in_count);
    virtq_push(&vq->q, e->head, (uint32_t)n);
    return true;
}

/* As virtio/fs.c's drain: every pending chain is one FUSE request. When the budget runs out,
 * the queue's own kick descriptor brings the loop back to it after the others. */
static void serve_queue(struct vhost_user_fs *vu, struct vu_queue *vq)
{
    unsigned served;
    int r = virtq_drain(&vq->q, &vu->elem, serve_one, vq, &served);
    if (served && virtq_should_signal(&vq->q))
        signal_fd(vq->call_fd);
    if (r == 0)
        signal_fd(vq->kick_fd);
    if (r < 0) {
        vq->broken = true;
        signal_fd(vq->err_fd);
    }
}

void vhost_user_fs_kick(struct vhost_user_fs *vu, unsigned index)
{
    if (index >= VHOST_USER_FS_MAX_QUEUES)
        return;
    struct vu_queue *vq = &vu->queues[index];
    if (vq->started && vq->enabled && !vq->broken)
        serve_queue(vu, vq);
}

static void on_kick(void *opaque, uint32_t events)
{
    (void)events;
    struct vu_queue *vq = opaque;
    uint64_t count;
    if (read(vq->kick_fd, &count, sizeof(count)) < 0)
        return;
    vhost_user_fs_kick(vq->vu, vq->index);
}

/* GET_VRING_BASE, a reset or the end: the queue stops and remembers where. */
static void stop_queue(struct vhost_user_fs *vu, struct vu_queue *vq)
{
    if (vq->watched)
        io_loop_remove(vu->loop, vq->kick_fd);
    vq->watched = false;
    close_fd(&vq->kick_fd);
    if (vq->started)
        vq->base = vq->q.last_avail_idx;
    vq->started = false;
    vq->broken = false;
}

/* The front-end's address of a ring, as a guest address in the lent RAM; UINT64_MAX when
 * outside every region. */
static uint64_t ring_gpa(const struct vhost_user_fs *vu, uint64_t uva)
{
    for (unsigned i = 0; i < vu->region_count; i++) {
        const struct lent_region *r = &vu->regions[i];
        if (uva >= r->uva && uva - r->uva < r->size)
            return r->gpa + (uva - r->uva);
    }
    return UINT64_MAX;
}

static int start_queue(struct vhost_user_fs *vu, struct vu_queue *vq, char *error,
                       size_t error_len)
{
    uint64_t desc = ring_gpa(vu, vq->desc_uva), avail = ring_gpa(vu, vq->avail_uva),
             used = ring_gpa(vu, vq->used_uva);
    bool event_idx = (vu->features >> F_EVENT_IDX) & 1;
    bool indirect = (vu->features >> F_INDIRECT_DESC) & 1;
    if (desc == UINT64_MAX || avail == UINT64_MAX || used == UINT64_MAX ||
        virtq_init(&vq->q, &vu->mem, vq->num, desc, avail, used, event_idx, indirect) < 0)
        return protocol_error(error, error_len,
                              "vhost-user: queue %u: size %u or ring addresses outside the "
                              "memory table",
                              vq->index, vq->num);
    /* The used index the guest has seen is where our pushes continue. */
    const uint8_t *used_idx = guest_mem_ptr(&vu->mem, used + 2, 2);
    uint16_t seen;
    memcpy(&seen, used_idx, sizeof(seen));
    vq->q.last_avail_idx = vq->base;
    vq->q.used_idx = seen;
    vq->started = true;
    vq->broken = false;
    if (vu->loop) {
        if (io_loop_add(vu->loop, vq->kick_fd, EPOLLIN, on_kick, vq) < 0)
            return protocol_error(error, error_len, "vhost-user: queue %u: cannot watch the "
                                  "kick descriptor", vq->index);
        vq->watched = true;
    }
    vhost_user_fs_kick(vu, vq->index); /* kicks sent before the ring started are not lost */
    return 0;
}

/* ---- Memory ---- */

static void unmap_regions(struct vhost_user_fs *vu)
{
    for (unsigned i = 0; i < vu->region_count; i++)
        munmap(vu->regions[i].map, vu->regions[i].map_len);
    vu->region_count = 0;
    vu->mem.region_count = 0;
}

/*
 * Whether part of this file is guest RAM already. Two guest addresses for the same memory
 * would let a ring's checks pass (virtq_init compares host addresses, and these would
 * differ) while the device's writes to one address change what it reads at the other.
 */
static bool lent_twice(const struct vhost_user_fs *vu, const struct stat *st, uint64_t offset,
                       uint64_t size)
{
    for (unsigned i = 0; i < vu->region_count; i++) {
        const struct lent_region *r = &vu->regions[i];
        if (r->file_dev == st->st_dev && r->file_ino == st->st_ino &&
            offset < r->offset + r->size && r->offset < offset + size)
            return true;
    }
    return false;
}

static int map_region(struct vhost_user_fs *vu, const uint8_t *raw, int fd)
{
    uint64_t gpa = get64(raw), size = get64(raw + 8), uva = get64(raw + 16),
             offset = get64(raw + 24);
    if (size == 0 || offset + size < offset || offset + size > SIZE_MAX || uva + size < uva)
        return -EINVAL;
    size_t len = (size_t)(offset + size);
    /* Mapping past the end of the file would succeed, and the guest's first buffer there
     * would kill us with SIGBUS. */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < offset + size ||
        lent_twice(vu, &st, offset, size))
        return -EINVAL;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    uint8_t *host = (uint8_t *)map + offset;
    int r = guest_mem_add_region(&vu->mem, gpa, size, host);
    if (r < 0) {
        munmap(map, len);
        return r;
    }
    vu->regions[vu->region_count++] =
        (struct lent_region){gpa, size, uva, map, len, st.st_dev, st.st_ino, offset};
    return 0;
}

static int set_mem_table(struct vhost_user_fs *vu, const struct vhost_user_msg *msg,
                         const int *fds, unsigned nfds, char *error, size_t error_len)
{
    if (msg->size < 8)
        return protocol_error(error, error_len, "vhost-user: memory table of %u bytes", msg->size);
    uint32_t count = get32(msg->payload);
    if (count == 0 || count > GUEST_MEM_MAX_REGIONS || msg->size < 8 + count * MEM_REGION_SIZE ||
        nfds != count)
        return protocol_error(error, error_len,
                              "vhost-user: memory table of %u regions with %u descriptors", count,
                              nfds);
    /* The rings keep guest addresses, which a new table maps anew. */
    unmap_regions(vu);
    for (uint32_t i = 0; i < count; i++) {
        int r = map_region(vu, msg->payload + 8 + i * MEM_REGION_SIZE, fds[i]);
        if (r < 0) {
            unmap_regions(vu);
            return protocol_error(error, error_len, "vhost-user: memory region %u: %s", i,
                                  strerror(-r));
        }
    }
    return 0;
}

/* ---- Messages ---- */

/* The queue a vring message names, or NULL. */
static struct vu_queue *queue_of(struct vhost_user_fs *vu, uint32_t index)
{
    return index < VHOST_USER_FS_MAX_QUEUES ? &vu->queues[index] : NULL;
}

/* *fd (or -1) is taken by the queue unless this fails before that. */
static int vring_fd(struct vhost_user_fs *vu, const struct vhost_user_msg *msg, int *fd_slot,
                    char *error, size_t error_len)
{
    int fd = fd_slot ? *fd_slot : -1;
    uint64_t v = get64(msg->payload);
    struct vu_queue *vq = queue_of(vu, (uint32_t)(v & VRING_INDEX_MASK));
    bool no_fd = v & VRING_NO_FD;
    if (!vq || (no_fd != (fd < 0)))
        return protocol_error(error, error_len, "vhost-user: request %u for queue %u with%s a "
                              "descriptor", msg->request, (unsigned)(v & VRING_INDEX_MASK),
                              fd < 0 ? "out" : "");
    if (msg->request == VHOST_USER_SET_VRING_KICK && no_fd)
        return protocol_error(error, error_len, "vhost-user: queue %u: polled rings are not "
                              "supported (a kick descriptor is needed)", vq->index);
    if (fd_slot)
        *fd_slot = -1; /* the queue's from here */
    switch (msg->request) {
    case VHOST_USER_SET_VRING_CALL:
        close_fd(&vq->call_fd);
        vq->call_fd = fd;
        return 0;
    case VHOST_USER_SET_VRING_ERR:
        close_fd(&vq->err_fd);
        vq->err_fd = fd;
        return 0;
    default: /* KICK */
        stop_queue(vu, vq);
        vq->kick_fd = fd;
        return start_queue(vu, vq, error, error_len);
    }
}

static int vring_state(struct vhost_user_fs *vu, const struct vhost_user_msg *msg,
                       struct vhost_user_msg *reply, char *error, size_t error_len)
{
    uint32_t index = get32(msg->payload), num = get32(msg->payload + 4);
    struct vu_queue *vq = queue_of(vu, index);
    bool flag = msg->request == VHOST_USER_SET_VRING_ENABLE;
    if (!vq || (msg->request != VHOST_USER_GET_VRING_BASE && num > (flag ? 1u : UINT16_MAX)))
        return protocol_error(error, error_len, "vhost-user: request %u: queue %u, value %u",
                              msg->request, index, num);
    switch (msg->request) {
    case VHOST_USER_SET_VRING_NUM:
        /* Any size virtq_init takes: requests stay within VIRTQ_MAX_SEGMENTS buffers however
         * long the queue, since the FUSE server caps their pages in INIT. */
        vq->num = (uint16_t)num;
        return 0;
    case VHOST_USER_SET_VRING_BASE:
        vq->base = (uint16_t)num;
        return 0;
    case VHOST_USER_SET_VRING_ENABLE:
        vq->enabled = num;
        vhost_user_fs_kick(vu, index); /* what was posted while it was disabled */
        return 0;
    default: { /* GET_VRING_BASE: stop, and tell where the next start must begin */
        stop_queue(vu, vq);
        uint8_t state[VRING_STATE_SIZE];
        uint32_t base = vq->base;
        memcpy(state, &index, 4);
        memcpy(state + 4, &base, 4);
        put_reply(reply, msg->request, state, sizeof(state));
        return 1;
    }
    }
}

static int vring_addr(struct vhost_user_fs *vu, const struct vhost_user_msg *msg, char *error,
                      size_t error_len)
{
    uint32_t index = get32(msg->payload);
    struct vu_queue *vq = queue_of(vu, index);
    if (!vq)
        return protocol_error(error, error_len, "vhost-user: ring addresses for queue %u", index);
    vq->desc_uva = get64(msg->payload + 8);
    vq->used_uva = get64(msg->payload + 16);
    vq->avail_uva = get64(msg->payload + 24);
    return 0;
}

/* Stops every queue and gives back every descriptor the front-end lent for them. */
static void release_queues(struct vhost_user_fs *vu)
{
    for (unsigned i = 0; i < VHOST_USER_FS_MAX_QUEUES; i++) {
        struct vu_queue *vq = &vu->queues[i];
        stop_queue(vu, vq);
        close_fd(&vq->call_fd);
        close_fd(&vq->err_fd);
        init_queue(vu, i);
    }
}

static void reset_session(struct vhost_user_fs *vu)
{
    release_queues(vu);
    vu->features = 0;
    fuse_server_reset(vu->server);
}

/* The payload size each request must have, or -1 for variable (the memory table). */
static int payload_size(uint32_t request)
{
    switch (request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_SET_OWNER:
    case VHOST_USER_RESET_OWNER: return 0;
    case VHOST_USER_SET_FEATURES:
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR: return U64_SIZE;
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE: return VRING_STATE_SIZE;
    case VHOST_USER_GET_PROTOCOL_FEATURES: return 0;
    case VHOST_USER_SET_PROTOCOL_FEATURES: return U64_SIZE;
    case VHOST_USER_SET_VRING_ADDR: return VRING_ADDR_SIZE;
    default: return -1;
    }
}

/* How many descriptors each request carries (the vring ones: 0 or 1, checked later). */
static bool fd_count_ok(uint32_t request, unsigned nfds)
{
    switch (request) {
    case VHOST_USER_SET_MEM_TABLE: return true;
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR: return nfds <= 1;
    default: return nfds == 0;
    }
}

/* Descriptors taken by a queue are set to -1 in fds; the caller closes the rest. */
static int dispatch(struct vhost_user_fs *vu, const struct vhost_user_msg *msg, int *fds,
                    unsigned nfds, struct vhost_user_msg *reply, char *error, size_t error_len)
{
    switch (msg->request) {
    case VHOST_USER_GET_FEATURES: {
        uint64_t offered = OFFERED_FEATURES;
        put_reply(reply, msg->request, &offered, sizeof(offered));
        return 1;
    }
    case VHOST_USER_SET_FEATURES: {
        uint64_t features = get64(msg->payload);
        if (features & ~OFFERED_FEATURES)
            return protocol_error(error, error_len, "vhost-user: features %#llx were not offered",
                                  (unsigned long long)(features & ~OFFERED_FEATURES));
        vu->features = features;
        /* Without protocol features rings need no enabling (vhost-user.rst, "Ring states"). */
        for (unsigned i = 0; !(features >> F_PROTOCOL_FEATURES & 1) && i < VHOST_USER_FS_MAX_QUEUES; i++)
            vu->queues[i].enabled = true;
        return 0;
    }
    case VHOST_USER_GET_PROTOCOL_FEATURES: {
        uint64_t offered = OFFERED_PROTOCOL_FEATURES;
        put_reply(reply, msg->request, &offered, sizeof(offered));
        return 1;
    }
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        if (get64(msg->payload) & ~OFFERED_PROTOCOL_FEATURES)
            return protocol_error(error, error_len, "vhost-user: protocol features %#llx were "
                                  "not offered", (unsigned long long)get64(msg->payload));
        return 0;
    case VHOST_USER_SET_OWNER: return 0;
    case VHOST_USER_RESET_OWNER: reset_session(vu); return 0;
    case VHOST_USER_SET_MEM_TABLE: return set_mem_table(vu, msg, fds, nfds, error, error_len);
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE: return vring_state(vu, msg, reply, error, error_len);
    case VHOST_USER_SET_VRING_ADDR: return vring_addr(vu, msg, error, error_len);
    default: /* KICK, CALL, ERR */
        return vring_fd(vu, msg, nfds ? &fds[0] : NULL, error, error_len);
    }
}

int vhost_user_fs_message(struct vhost_user_fs *vu, const struct vhost_user_msg *msg,
                          const int *fds, unsigned nfds, struct vhost_user_msg *reply,
                          char *error, size_t error_len)
{
    int want = payload_size(msg->request);
    int owned[VHOST_USER_MAX_FDS];
    unsigned kept = nfds < VHOST_USER_MAX_FDS ? nfds : VHOST_USER_MAX_FDS;
    if (kept) /* fds may be NULL then */
        memcpy(owned, fds, kept * sizeof(int));
    for (unsigned i = kept; i < nfds; i++)
        close(fds[i]);
    int r;
    if ((msg->flags & VHOST_USER_FLAG_VERSION_MASK) != VHOST_USER_VERSION)
        r = protocol_error(error, error_len, "vhost-user: message version %u (1 expected)",
                           msg->flags & VHOST_USER_FLAG_VERSION_MASK);
    else if (want < 0 && msg->request != VHOST_USER_SET_MEM_TABLE)
        r = protocol_error(error, error_len, "vhost-user: request %u is not supported",
                           msg->request);
    else if ((want >= 0 && msg->size != (uint32_t)want) || msg->size > VHOST_USER_MAX_PAYLOAD)
        r = protocol_error(error, error_len, "vhost-user: request %u with %u bytes",
                           msg->request, msg->size);
    else if (nfds > VHOST_USER_MAX_FDS || !fd_count_ok(msg->request, nfds))
        r = protocol_error(error, error_len, "vhost-user: request %u with %u descriptors",
                           msg->request, nfds);
    else
        r = dispatch(vu, msg, owned, nfds, reply, error, error_len);
    /* The memory table's are mapped (or refused) by now; a queue took a vring's. */
    for (unsigned i = 0; i < kept; i++)
        if (owned[i] >= 0)
            close(owned[i]);
    return r;
}

void vhost_user_fs_free(struct vhost_user_fs *vu)
{
    if (!vu)
        return;
    release_queues(vu);
    unmap_regions(vu);
    free(vu);
}
