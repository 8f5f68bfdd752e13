/*
 * virtio-vsock (vsock.h): a relay between guest stream connections and host stream sockets.
 *
 * Threads. Everything below runs on the I/O thread except virtio_vsock_connect(),
 * virtio_vsock_shutdown() and config_read. The lock protects exactly what those share with
 * the I/O thread: the connection table's membership and each entry's fd (so shutdown(2) from
 * another thread never hits a descriptor the I/O thread has closed and reused), the listening
 * socket, driver_ok, shut, and the list of connect requests. The I/O thread reads its own
 * table without the lock; it changes it only with the lock held.
 *
 * Packets to the guest. The device never queues packets: each connection keeps flags for the
 * control packets it owes (REQUEST, RESPONSE, CREDIT_UPDATE, SHUTDOWN, RST) and reads host data
 * straight into the guest's rx buffer when it is its turn, so what waits for rx buffers is
 * bounded by the table. Resets for packets that match no connection go to a small fixed ring
 * and are dropped when it is full (the guest's own timeouts cover that). Connections take
 * turns, one packet each, so a busy stream cannot starve the others.
 *
 * Host data is read only when the guest has credit and an rx buffer for it. Until then the
 * connection is marked readable and the loop stops watching it (a hung-up socket would
 * otherwise report EPOLLHUP forever); rx kicks and credit updates resume it.
 *
 * Guest data goes straight to the host socket; what the socket does not take is kept in a
 * per-connection buffer of buf_alloc bytes, which the credit the device advertised can never
 * overflow (more than that resets the connection).
 */
#include "virtio/vsock.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"

#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVENTQ 2
#define VSOCK_QUEUE_SIZE 256
#define VSOCK_CONFIG_SIZE 8

#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_HDR_SIZE 44

enum vsock_op {
    OP_INVALID,
    OP_REQUEST,
    OP_RESPONSE,
    OP_RST,
    OP_SHUTDOWN,
    OP_RW,
    OP_CREDIT_UPDATE,
    OP_CREDIT_REQUEST,
};

/* The receive window the device offers each connection, and the most it buffers for one. */
#define VSOCK_BUF_ALLOC (256u * 1024)
/* Tell the guest about freed room once this much was forwarded since the last header. */
#define VSOCK_CREDIT_THRESHOLD (VSOCK_BUF_ALLOC / 2)
/* Bytes of host data per packet: one read, a bounded time on the I/O thread. */
#define VSOCK_MAX_PKT (64u * 1024)
#define VSOCK_MAX_CONNS 256
#define VSOCK_ORPHAN_RSTS 16
#define VSOCK_FIRST_HOST_PORT (1u << 30)
/* "CONNECT 4294967295\n" fits with room to spare. */
#define VSOCK_LINE_MAX 32
/* Room in sun_path for "_<port>". */
#define VSOCK_PORT_SUFFIX 12
/* How long a Unix socket client may take over its line, and the guest over its answer. */
#define VSOCK_HANDSHAKE_MS 3000

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};

/* Who holds a connect request besides its caller. */
enum req_holder {
    REQ_NEW,      /* queued; the I/O thread has not looked at it */
    REQ_IO,       /* a connection (or the I/O thread) refers to it */
    REQ_RELEASED, /* the I/O thread let go */
};

/* A virtio_vsock_connect() call, on the shared list until both the caller and the I/O thread
 * let go (whoever is last frees it). Every field is under the lock, except that the I/O
 * thread owns fd while it holds the request. */
struct vsock_request {
    struct vsock_request *next;
    uint32_t port;
    int fd; /* the device's end until a connection owns it */
    enum req_holder holder;
    bool done;      /* result is final */
    bool cancelled; /* the caller timed out */
    bool caller_gone;
    int result;
};

enum conn_state {
    CONN_HANDSHAKE,  /* a Unix socket client; its "CONNECT <port>" line is not complete */
    CONN_REQUESTING, /* host-initiated: REQUEST owed or sent, waiting for the guest */
    CONN_CONNECTED,
    CONN_CLOSING,    /* the host end is closed; a RST is owed to the guest */
};

enum {
    PEND_REQUEST = 1,
    PEND_RESPONSE = 2,
    PEND_CREDIT = 4,
    PEND_SHUTDOWN = 8,
};

struct virtio_vsock;

struct vsock_conn {
    struct virtio_vsock *v; /* for the loop's handler */
    unsigned slot;          /* in v->conns */
    enum conn_state state;
    int fd;
    uint32_t guest_port, host_port;
    unsigned pending;              /* PEND_* */
    struct vsock_request *req;     /* a waiting virtio_vsock_connect(), or NULL */
    uint32_t watched;              /* epoll events registered; 0: not in the loop */
    bool readable;                 /* the host end may have data (or EOF) for the guest */
    bool host_eof;                 /* read() returned 0 */
    bool guest_no_rcv;             /* guest SHUTDOWN RCV: it wants no more data */
    bool guest_no_send;            /* guest SHUTDOWN SEND: SHUT_WR once flushed */
    bool host_shut_wr;             /* shutdown(SHUT_WR) done */
    /* Guest to host. */
    uint32_t rx_cnt;               /* bytes the guest sent */
    uint32_t fwd_cnt;              /* of them, bytes the host socket took */
    uint32_t fwd_cnt_sent;         /* fwd_cnt in the last header to the guest */
    uint8_t *buf;                  /* VSOCK_BUF_ALLOC bytes while data waits, else NULL */
    uint32_t buf_head, buf_len;
    /* Host to guest. */
    uint32_t tx_cnt;               /* bytes sent to the guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    /* The handshake line. */
    uint64_t deadline_ms; /* a Unix socket client is dropped then unless connected; 0: none */
    unsigned line_len;
    char line[VSOCK_LINE_MAX];
};

struct orphan_rst {
    uint32_t guest_port, host_port;
};

struct virtio_vsock {
    struct virtio_device dev; /* first: the transport hands this pointer back to the ops */
    uint64_t guest_cid;
    struct io_loop *loop;
    char *uds_path;
    int listen_fd;
    int wake_fd; /* connect and shutdown requests for the I/O thread */
    int timer_fd; /* ticks while Unix socket clients wait (deadline_ms) */
    bool timer_armed;

    bool active; /* DRIVER_OK seen since the last reset */
    bool broken; /* the driver broke the ring protocol; idle until reset */
    struct vsock_conn *conns[VSOCK_MAX_CONNS];
    unsigned nslots; /* 1 + the highest slot in use: scans stop there */
    unsigned nconns;
    unsigned rr;            /* round robin: the slot to serve first */
    uint32_t next_host_port;
    struct orphan_rst orphans[VSOCK_ORPHAN_RSTS];
    unsigned orphan_head, orphan_count;
    bool rx_held;           /* rx_elem is popped but unused */
    struct virtq_elem rx_elem;
    struct virtq_elem tx_elem;

    pthread_mutex_t lock;
    pthread_cond_t done_cond; /* a request became done */
    bool driver_ok;
    bool shut;
    struct vsock_request *requests;
};

static struct virtio_vsock *to_vsock(struct virtio_device *dev)
{
    return (struct virtio_vsock *)dev;
}

static void deliver(struct virtio_vsock *v);
static void watch(struct virtio_vsock *v, struct vsock_conn *c);

/* ---- Headers. ---- */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static void encode_hdr(const struct vsock_hdr *h, uint8_t *p)
{
    put_le(p, h->src_cid, 8);
    put_le(p + 8, h->dst_cid, 8);
    put_le(p + 16, h->src_port, 4);
    put_le(p + 20, h->dst_port, 4);
    put_le(p + 24, h->len, 4);
    put_le(p + 28, h->type, 2);
    put_le(p + 30, h->op, 2);
    put_le(p + 32, h->flags, 4);
    put_le(p + 36, h->buf_alloc, 4);
    put_le(p + 40, h->fwd_cnt, 4);
}

static void decode_hdr(const uint8_t *p, struct vsock_hdr *h)
{
    h->src_cid = get_le(p, 8);
    h->dst_cid = get_le(p + 8, 8);
    h->src_port = (uint32_t)get_le(p + 16, 4);
    h->dst_port = (uint32_t)get_le(p + 20, 4);
    h->len = (uint32_t)get_le(p + 24, 4);
    h->type = (uint16_t)get_le(p + 28, 2);
    h->op = (uint16_t)get_le(p + 30, 2);
    h->flags = (uint32_t)get_le(p + 32, 4);
    h->buf_alloc = (uint32_t)get_le(p + 36, 4);
    h->fwd_cnt = (uint32_t)get_le(p + 40, 4);
}

/* A header from the host to the guest's (guest_port) for host_port. */
static struct vsock_hdr host_hdr(const struct virtio_vsock *v, uint32_t guest_port,
                                 uint32_t host_port, enum vsock_op op)
{
    return (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID,
        .dst_cid = v->guest_cid,
        .src_port = host_port,
        .dst_port = guest_port,
        .type = VSOCK_TYPE_STREAM,
        .op = (uint16_t)op,
        .buf_alloc = VSOCK_BUF_ALLOC,
    };
}

/* Describes bytes [offset, offset + len) of the `count` buffers in iov by at most max entries
 * of out, so host I/O can go straight to or from guest memory. Returns the entries used. */
static unsigned iov_slice(const struct iovec *iov, unsigned count, size_t offset, size_t len,
                          struct iovec *out, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < count && len > 0 && n < max; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t take = iov[i].iov_len - offset;
        if (take > len)
            take = len;
        out[n++] = (struct iovec){(uint8_t *)iov[i].iov_base + offset, take};
        len -= take;
        offset = 0;
    }
    return n;
}

/* ---- Requests from virtio_vsock_connect (shared: lock held). ---- */

static void free_request_locked(struct virtio_vsock *v, struct vsock_request *req)
{
    for (struct vsock_request **p = &v->requests; *p; p = &(*p)->next) {
        if (*p == req) {
            *p = req->next;
            break;
        }
    }
    if (req->fd >= 0)
        close(req->fd);
    free(req);
}

/* The I/O thread lets go of req with `result` (unless a result was set already). Returns
 * false when the caller did not get this result (it timed out, or shutdown overtook it), so a
 * connection made for it must be reset. */
static bool finish_request(struct virtio_vsock *v, struct vsock_request *req, int result)
{
    pthread_mutex_lock(&v->lock);
    bool wanted = !req->done && !req->cancelled;
    if (wanted) {
        req->done = true;
        req->result = result;
    }
    req->holder = REQ_RELEASED;
    if (req->caller_gone)
        free_request_locked(v, req);
    pthread_cond_broadcast(&v->done_cond);
    pthread_mutex_unlock(&v->lock);
    return wanted;
}

/* ---- The connection table. ---- */

static struct vsock_conn *find_conn(struct virtio_vsock *v, uint32_t guest_port,
                                    uint32_t host_port)
{
    for (unsigned i = 0; i < v->nslots; i++) {
        struct vsock_conn *c = v->conns[i];
        if (c && c->state != CONN_HANDSHAKE && c->guest_port == guest_port &&
            c->host_port == host_port)
            return c;
    }
    return NULL;
}

static bool host_port_used(struct virtio_vsock *v, uint32_t port)
{
    for (unsigned i = 0; i < v->nslots; i++)
        if (v->conns[i] && v->conns[i]->state != CONN_HANDSHAKE && v->conns[i]->host_port == port)
            return true;
    return false;
}

/* A local port for a host-initiated connection, unique among the live ones (there are at most
 * VSOCK_MAX_CONNS, so the search ends). */
static uint32_t alloc_host_port(struct virtio_vsock *v)
{
    for (;;) {
        uint32_t port = v->next_host_port++;
        if (v->next_host_port < VSOCK_FIRST_HOST_PORT || v->next_host_port == UINT32_MAX)
            v->next_host_port = VSOCK_FIRST_HOST_PORT;
        if (!host_port_used(v, port))
            return port;
    }
}

/* Takes ownership of fd (closing it on failure). NULL when the table is full. */
static struct vsock_conn *add_conn(struct virtio_vsock *v, int fd, enum conn_state state)
{
    struct vsock_conn *c = NULL;
    unsigned slot = 0;
    while (slot < VSOCK_MAX_CONNS && v->conns[slot])
        slot++;
    if (slot < VSOCK_MAX_CONNS)
        c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->v = v;
    c->slot = slot;
    c->state = state;
    c->fd = fd;
    pthread_mutex_lock(&v->lock);
    v->conns[slot] = c;
    if (slot >= v->nslots)
        v->nslots = slot + 1;
    v->nconns++;
    pthread_mutex_unlock(&v->lock);
    return c;
}

static void close_host_end(struct virtio_vsock *v, struct vsock_conn *c)
{
    if (c->fd < 0)
        return;
    if (c->watched)
        io_loop_remove(v->loop, c->fd);
    c->watched = 0;
    pthread_mutex_lock(&v->lock);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&v->lock);
    free(c->buf);
    c->buf = NULL;
    c->buf_len = 0;
}

/* Forgets c without telling the guest; a waiting connect gets `result`. */
static void free_conn(struct virtio_vsock *v, struct vsock_conn *c, int result)
{
    if (c->req)
        finish_request(v, c->req, result);
    close_host_end(v, c);
    pthread_mutex_lock(&v->lock);
    v->conns[c->slot] = NULL;
    v->nconns--;
    while (v->nslots && !v->conns[v->nslots - 1])
        v->nslots--;
    pthread_mutex_unlock(&v->lock);
    free(c);
}

/* Closes the host end and owes the guest a RST; the entry goes once the RST is out. Never
 * frees c, so callers holding it may go on. */
static void doom_conn(struct virtio_vsock *v, struct vsock_conn *c, int result)
{
    if (c->req)
        finish_request(v, c->req, result);
    c->req = NULL;
    close_host_end(v, c);
    c->state = CONN_CLOSING;
    c->pending = 0;
}

/* As doom_conn, but before the guest heard of the connection (a handshake, an unsent REQUEST)
 * there is nothing to reset and c is freed at once. */
static void reset_conn(struct virtio_vsock *v, struct vsock_conn *c, int result)
{
    bool guest_knows = c->state == CONN_CONNECTED || c->state == CONN_CLOSING ||
                       (c->state == CONN_REQUESTING && !(c->pending & PEND_REQUEST));
    if (guest_knows)
        doom_conn(v, c, result);
    else
        free_conn(v, c, result);
}

static void queue_orphan_rst(struct virtio_vsock *v, const struct vsock_hdr *h)
{
    if (h->op == OP_RST || v->orphan_count == VSOCK_ORPHAN_RSTS)
        return; /* never answer a reset; drop when full */
    unsigned i = (v->orphan_head + v->orphan_count++) % VSOCK_ORPHAN_RSTS;
    v->orphans[i] = (struct orphan_rst){h->src_port, h->dst_port};
}

/* ---- Host sockets. ---- */

static void on_conn_event(void *opaque, uint32_t events);

/* Watches exactly what c waits for, and nothing when it waits for nothing. */
static void watch(struct virtio_vsock *v, struct vsock_conn *c)
{
    uint32_t want = 0;
    if (c->fd < 0)
        return;
    if (c->state == CONN_HANDSHAKE)
        want = EPOLLIN;
    else if (c->state == CONN_CONNECTED)
        want = (c->readable || c->host_eof || c->guest_no_rcv ? 0 : EPOLLIN) |
               (c->buf_len ? EPOLLOUT : 0);
    if (want == c->watched)
        return;
    int r;
    if (!want)
        r = io_loop_remove(v->loop, c->fd);
    else if (!c->watched)
        r = io_loop_add(v->loop, c->fd, want, on_conn_event, c);
    else
        r = io_loop_set_events(v->loop, c->fd, want);
    c->watched = r == 0 ? want : 0;
    if (r < 0 && want)
        doom_conn(v, c, -ENOMEM); /* a RST the guest may not expect is harmless */
}

/* Once guest data is flushed: passes on the guest's SHUTDOWN SEND, and resets the connection
 * when both directions are done. */
static void maybe_finish(struct virtio_vsock *v, struct vsock_conn *c)
{
    if (c->state != CONN_CONNECTED || c->buf_len)
        return;
    if (c->guest_no_send && !c->host_shut_wr) {
        shutdown(c->fd, SHUT_WR);
        c->host_shut_wr = true;
    }
    bool host_done = c->guest_no_rcv || (c->host_eof && !(c->pending & PEND_SHUTDOWN));
    if (c->guest_no_send && host_done)
        doom_conn(v, c, 0);
}

static void credit_check(struct vsock_conn *c)
{
    if (c->fwd_cnt - c->fwd_cnt_sent >= VSOCK_CREDIT_THRESHOLD)
        c->pending |= PEND_CREDIT;
}

/* Sends iov to the host end. Returns the bytes taken, or -1 when the socket is gone. */
static ssize_t host_send(int fd, struct iovec *iov, unsigned n)
{
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    for (;;) {
        ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Writes buffered guest data to the host end. False when the connection was reset. */
static bool flush_buf(struct virtio_vsock *v, struct vsock_conn *c)
{
    while (c->buf_len) {
        uint32_t run = VSOCK_BUF_ALLOC - c->buf_head;
        if (run > c->buf_len)
            run = c->buf_len;
        struct iovec iov = {c->buf + c->buf_head, run};
        ssize_t n = host_send(c->fd, &iov, 1);
        if (n < 0) {
            doom_conn(v, c, 0);
            return false;
        }
        if (n == 0)
            break;
        c->buf_head = (c->buf_head + (uint32_t)n) % VSOCK_BUF_ALLOC;
        c->buf_len -= (uint32_t)n;
        c->fwd_cnt += (uint32_t)n;
    }
    if (!c->buf_len) {
        free(c->buf);
        c->buf = NULL;
        c->buf_head = 0;
    }
    credit_check(c);
    return true;
}


static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* A tick every half second while some client has a deadline: coarse, and idle otherwise. */
static void arm_timer(struct virtio_vsock *v, bool on)
{
    if (v->timer_armed == on || v->timer_fd < 0)
        return;
    struct itimerspec spec = {0};
    if (on)
        spec.it_interval.tv_nsec = spec.it_value.tv_nsec = 500000000L;
    if (timerfd_settime(v->timer_fd, 0, &spec, NULL) == 0)
        v->timer_armed = on;
}

/* A client that connected gets VSOCK_HANDSHAKE_MS for its line, and again for the guest. */
static void set_deadline(struct virtio_vsock *v, struct vsock_conn *c)
{
    c->deadline_ms = now_ms() + VSOCK_HANDSHAKE_MS;
    arm_timer(v, true);
}

static bool parse_connect_line(const char *line, uint32_t *port)
{
    static const char prefix[] = "CONNECT ";
    if (strncmp(line, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *p = line + sizeof(prefix) - 1;
    uint64_t value = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        value = value * 10 + (uint64_t)(*p - '0');
        if (value > UINT32_MAX)
            return false;
    }
    *port = (uint32_t)value;
    return *p == '\0';
}

static bool guest_ready(const struct virtio_vsock *v)
{
    return v->active && !v->broken && v->dev.queue_enabled[VSOCK_RXQ] &&
           v->dev.queue_enabled[VSOCK_TXQ];
}

/* Reads the client's "CONNECT <port>\n" a byte at a time, so that no data after the line is
 * consumed, and asks the guest once it is complete. A malformed or over-long line, or a guest
 * without a driver, closes the client. */
static void handshake_read(struct virtio_vsock *v, struct vsock_conn *c)
{
    for (;;) {
        char ch;
        ssize_t n = read(c->fd, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 || (ch != '\n' && c->line_len == VSOCK_LINE_MAX - 1)) {
            free_conn(v, c, 0);
            return;
        }
        if (ch == '\n')
            break;
        c->line[c->line_len++] = ch;
    }
    c->line[c->line_len] = '\0';
    uint32_t port;
    if (!parse_connect_line(c->line, &port) || !guest_ready(v)) {
        free_conn(v, c, 0);
        return;
    }
    c->host_port = alloc_host_port(v);
    c->guest_port = port;
    c->state = CONN_REQUESTING;
    c->pending = PEND_REQUEST;
    set_deadline(v, c);
    watch(v, c); /* nothing is relayed until the guest accepts */
}

static void on_conn_event(void *opaque, uint32_t events)
{
    struct vsock_conn *c = opaque;
    struct virtio_vsock *v = c->v;
    if (c->state == CONN_HANDSHAKE) {
        handshake_read(v, c);
    } else if (c->state == CONN_CONNECTED) {
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->host_eof)
            c->readable = true;
        if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->buf_len && flush_buf(v, c))
            maybe_finish(v, c);
        watch(v, c);
    }
    deliver(v);
}

/* ---- Packets to the guest. ---- */

static void fail(struct virtio_vsock *v, unsigned queue, int err)
{
    v->broken = true;
    pthread_mutex_lock(&v->lock);
    v->driver_ok = false;
    pthread_mutex_unlock(&v->lock);
    virtio_needs_reset(&v->dev, queue, err);
}

/*
 * Makes an rx buffer available in rx_elem. Returns 1, 0 when the guest has none posted, or <0
 * for a malformed ring. A buffer without room for a header and a byte of data is returned
 * unused: every packet must fit the buffer it is given, and a data packet needs that room.
 */
static int get_rx(struct virtio_vsock *v)
{
    struct virtq *q = &v->dev.queues[VSOCK_RXQ];
    while (!v->rx_held) {
        int r = virtq_pop(q, &v->rx_elem);
        if (r == 0 && virtq_enable_notify(q))
            r = virtq_pop(q, &v->rx_elem);
        if (r <= 0)
            return r;
        if (v->rx_elem.in_bytes > VSOCK_HDR_SIZE)
            v->rx_held = true;
        else
            virtq_push(q, v->rx_elem.head, 0);
    }
    return 1;
}

/* Writes the header (after h->len bytes of data already in place) and returns the buffer. */
static void put_rx(struct virtio_vsock *v, const struct vsock_hdr *h)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    encode_hdr(h, raw);
    virtq_write(&v->rx_elem, 0, raw, sizeof(raw));
    virtq_push(&v->dev.queues[VSOCK_RXQ], v->rx_elem.head, VSOCK_HDR_SIZE + h->len);
    v->rx_held = false;
}

/* Every header carries the credit, so any packet answers a pending CREDIT_UPDATE. */
static void send_packet(struct virtio_vsock *v, struct vsock_conn *c, enum vsock_op op,
                        uint32_t flags, uint32_t len)
{
    struct vsock_hdr h = host_hdr(v, c->guest_port, c->host_port, op);
    h.flags = flags;
    h.len = len;
    h.fwd_cnt = c->fwd_cnt;
    put_rx(v, &h);
    c->fwd_cnt_sent = c->fwd_cnt;
    c->pending &= ~(unsigned)PEND_CREDIT;
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight < c->peer_buf_alloc ? c->peer_buf_alloc - in_flight : 0;
}

static bool can_send_data(const struct vsock_conn *c)
{
    return c->state == CONN_CONNECTED && c->readable && !c->host_eof && !c->guest_no_rcv &&
           peer_credit(c) > 0;
}

static bool has_work(const struct vsock_conn *c)
{
    return c->state == CONN_CLOSING ||
           (c->state != CONN_HANDSHAKE && (c->pending || can_send_data(c)));
}

/*
 * Reads host data straight into the held rx buffer, within the guest's credit. Returns true
 * when a packet went out; false when the host end had nothing (EAGAIN: it is no longer
 * readable), reached end-of-file (a SHUTDOWN is now owed) or failed (the connection is doomed).
 */
static bool send_data(struct virtio_vsock *v, struct vsock_conn *c)
{
    const struct virtq_elem *e = &v->rx_elem;
    size_t room = e->in_bytes - VSOCK_HDR_SIZE, credit = peer_credit(c);
    size_t want = room < credit ? room : credit;
    if (want > VSOCK_MAX_PKT)
        want = VSOCK_MAX_PKT;
    struct iovec iov[VIRTQ_MAX_SEGMENTS];
    unsigned n = iov_slice(&e->iov[e->out_count], e->in_count, VSOCK_HDR_SIZE, want, iov,
                           VIRTQ_MAX_SEGMENTS);
    ssize_t got;
    do
        got = readv(c->fd, iov, (int)n);
    while (got < 0 && errno == EINTR);
    if (got > 0) {
        c->tx_cnt += (uint32_t)got;
        send_packet(v, c, OP_RW, 0, (uint32_t)got);
        return true;
    }
    c->readable = false;
    if (got == 0) {
        c->host_eof = true;
        c->pending |= PEND_SHUTDOWN;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        doom_conn(v, c, 0);
    }
    return false;
}

/* One packet for c into the held rx buffer, by priority: a RST ends it, the handshake comes
 * before data, SHUTDOWN after it. Returns true when the buffer was used. May free c. */
static bool serve_conn(struct virtio_vsock *v, struct vsock_conn *c)
{
    if (c->state == CONN_CLOSING) {
        send_packet(v, c, OP_RST, 0, 0);
        free_conn(v, c, 0);
        return true;
    }
    bool sent = true;
    if (c->pending & PEND_REQUEST) {
        c->pending &= ~(unsigned)PEND_REQUEST;
        send_packet(v, c, OP_REQUEST, 0, 0);
    } else if (c->pending & PEND_RESPONSE) {
        c->pending &= ~(unsigned)PEND_RESPONSE;
        send_packet(v, c, OP_RESPONSE, 0, 0);
    } else if (can_send_data(c) && send_data(v, c)) {
        /* sent */
    } else if (c->state == CONN_CLOSING) {
        sent = false; /* send_data doomed it: the RST goes on its next turn */
    } else if (c->pending & PEND_CREDIT) {
        send_packet(v, c, OP_CREDIT_UPDATE, 0, 0);
    } else if (c->pending & PEND_SHUTDOWN) {
        c->pending &= ~(unsigned)PEND_SHUTDOWN;
        send_packet(v, c, OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 0);
        maybe_finish(v, c);
    } else {
        sent = false;
    }
    watch(v, c);
    return sent;
}

static void send_orphan_rst(struct virtio_vsock *v)
{
    struct orphan_rst o = v->orphans[v->orphan_head];
    v->orphan_head = (v->orphan_head + 1) % VSOCK_ORPHAN_RSTS;
    v->orphan_count--;
    struct vsock_hdr h = host_hdr(v, o.guest_port, o.host_port, OP_RST);
    put_rx(v, &h);
}

/* The next connection with something for the guest, taking turns. */
static struct vsock_conn *next_busy(struct virtio_vsock *v)
{
    for (unsigned k = 0; k < v->nslots; k++) {
        unsigned i = (v->rr + k) % v->nslots;
        if (v->conns[i] && has_work(v->conns[i])) {
            v->rr = i + 1;
            return v->conns[i];
        }
    }
    return NULL;
}

/* Fills rx buffers while there is something to send. Each pass either uses a buffer or
 * clears a connection's reason to be served, so this ends. */
static void deliver(struct virtio_vsock *v)
{
    if (!guest_ready(v))
        return;
    bool pushed = false;
    for (;;) {
        struct vsock_conn *c = v->orphan_count ? NULL : next_busy(v);
        if (!c && !v->orphan_count)
            break;
        int r = get_rx(v);
        if (r < 0)
            fail(v, VSOCK_RXQ, r);
        if (r <= 0)
            break;
        if (!c) {
            send_orphan_rst(v);
            pushed = true;
        } else if (serve_conn(v, c)) {
            pushed = true;
        }
    }
    if (pushed)
        virtio_signal_used(&v->dev, VSOCK_RXQ);
}

/* ---- Packets from the guest. ---- */

/* Guest data for c: straight to the host end while nothing waits, buffered after that. */
static void guest_data(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_elem *e,
                       uint32_t len)
{
    /* The credit the guest was given is buf_alloc minus what it sent beyond the fwd_cnt it was
     * last told; it cannot have been told more than fwd_cnt, so the buffer never overflows. */
    if ((uint64_t)(uint32_t)(c->rx_cnt - c->fwd_cnt_sent) + len > VSOCK_BUF_ALLOC) {
        doom_conn(v, c, 0);
        return;
    }
    if (len == 0)
        return;
    c->rx_cnt += len;
    size_t done = 0;
    if (!c->buf_len) {
        struct iovec iov[VIRTQ_MAX_SEGMENTS];
        unsigned n = iov_slice(e->iov, e->out_count, VSOCK_HDR_SIZE, len, iov,
                               VIRTQ_MAX_SEGMENTS);
        ssize_t w = host_send(c->fd, iov, n);
        if (w < 0) {
            doom_conn(v, c, 0);
            return;
        }
        done = (size_t)w;
        c->fwd_cnt += (uint32_t)w;
    }
    if (done < len && !c->buf && !(c->buf = malloc(VSOCK_BUF_ALLOC))) {
        doom_conn(v, c, 0);
        return;
    }
    while (done < len) {
        uint32_t tail = (c->buf_head + c->buf_len) % VSOCK_BUF_ALLOC;
        uint32_t run = VSOCK_BUF_ALLOC - tail;
        if (run > len - done)
            run = (uint32_t)(len - done);
        virtq_read(e, VSOCK_HDR_SIZE + done, c->buf + tail, run);
        c->buf_len += run;
        done += run;
    }
    credit_check(c);
}

static void guest_shutdown(struct virtio_vsock *v, struct vsock_conn *c, uint32_t flags)
{
    if (flags & VSOCK_SHUTDOWN_RCV)
        c->guest_no_rcv = true;
    if (flags & VSOCK_SHUTDOWN_SEND)
        c->guest_no_send = true;
    maybe_finish(v, c);
}

/* The guest accepted a host-initiated connection. */
static void accepted(struct virtio_vsock *v, struct vsock_conn *c)
{
    c->state = CONN_CONNECTED;
    if (c->req) {
        struct vsock_request *req = c->req;
        c->req = NULL;
        if (!finish_request(v, req, 0))
            doom_conn(v, c, 0); /* the caller gave up: its end is closed */
    } else {
        char ok[24];
        int len = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
        /* The client's socket is empty at this point, so a short write means it is gone. */
        if (send(c->fd, ok, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) != len)
            doom_conn(v, c, 0);
    }
    watch(v, c); /* relaying starts */
}

static bool is_shut(struct virtio_vsock *v)
{
    pthread_mutex_lock(&v->lock);
    bool shut = v->shut;
    pthread_mutex_unlock(&v->lock);
    return shut;
}

/* A Unix socket connected to "<uds_path>_<port>", or -1. A Unix stream connect completes or
 * fails at once (EAGAIN when the listener's backlog is full), so non-blocking is enough. */
static int connect_uds(const struct virtio_vsock *v, uint32_t port)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s_%u", v->uds_path, port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* A guest REQUEST for a connection the device does not have. */
static void guest_connect(struct virtio_vsock *v, const struct vsock_hdr *h)
{
    int fd = -1;
    if (v->uds_path && v->nconns < VSOCK_MAX_CONNS && !is_shut(v))
        fd = connect_uds(v, h->dst_port);
    struct vsock_conn *c = fd >= 0 ? add_conn(v, fd, CONN_CONNECTED) : NULL;
    if (!c) {
        queue_orphan_rst(v, h);
        return;
    }
    c->guest_port = h->src_port;
    c->host_port = h->dst_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->pending = PEND_RESPONSE;
    watch(v, c);
}

/* A packet for an existing connection. */
static void conn_packet(struct virtio_vsock *v, struct vsock_conn *c, const struct vsock_hdr *h,
                        const struct virtq_elem *e)
{
    if (c->state == CONN_CLOSING) {
        if (h->op == OP_RST)
            free_conn(v, c, 0); /* the guest forgot it already: no RST needed */
        return;
    }
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    bool connected = c->state == CONN_CONNECTED;
    switch (h->op) {
    case OP_RESPONSE:
        if (c->state == CONN_REQUESTING && !(c->pending & PEND_REQUEST))
            accepted(v, c);
        else
            reset_conn(v, c, -ECONNRESET);
        return;
    case OP_RST:
        free_conn(v, c, -ECONNREFUSED);
        return;
    case OP_SHUTDOWN:
        if (connected)
            guest_shutdown(v, c, h->flags);
        break;
    case OP_RW:
        if (connected && !c->guest_no_send)
            guest_data(v, c, e, h->len);
        else
            connected = false;
        break;
    case OP_CREDIT_UPDATE:
        break; /* the credit was read above; deliver() resumes */
    case OP_CREDIT_REQUEST:
        c->pending |= PEND_CREDIT;
        break;
    default: /* REQUEST for an existing connection, or an unknown op */
        connected = false;
        break;
    }
    if (!connected) {
        reset_conn(v, c, -ECONNRESET);
        return;
    }
    watch(v, c);
}

static void guest_packet(struct virtio_vsock *v, const struct virtq_elem *e)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vsock_hdr h;
    if (e->out_bytes < VSOCK_HDR_SIZE)
        return; /* no header: nothing to answer */
    virtq_read(e, 0, raw, sizeof(raw));
    decode_hdr(raw, &h);
    if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID)
        return; /* not from this guest or not for the host: nobody to answer */
    struct vsock_conn *c = find_conn(v, h.src_port, h.dst_port);
    bool valid = h.type == VSOCK_TYPE_STREAM && h.len <= e->out_bytes - VSOCK_HDR_SIZE;
    if (c && valid)
        conn_packet(v, c, &h, e);
    else if (c && h.op != OP_RST)
        reset_conn(v, c, -ECONNRESET);
    else if (c)
        free_conn(v, c, -ECONNREFUSED);
    else if (valid && h.op == OP_REQUEST)
        guest_connect(v, &h);
    else
        queue_orphan_rst(v, &h);
}

static bool transmit_one(void *ctx, struct virtq_elem *e)
{
    struct virtio_vsock *v = ctx;
    guest_packet(v, e);
    virtq_push(&v->dev.queues[VSOCK_TXQ], e->head, 0);
    return true;
}

/* Takes the guest's packets (virtq_drain: notifications off meanwhile, a budget per call). */
static void transmit(struct virtio_vsock *v)
{
    unsigned served;
    int r = virtq_drain(&v->dev.queues[VSOCK_TXQ], &v->tx_elem, transmit_one, v, &served);
    if (served)
        virtio_signal_used(&v->dev, VSOCK_TXQ);
    if (r == 0)
        virtio_requeue(&v->dev, VSOCK_TXQ);
    if (r < 0)
        fail(v, VSOCK_TXQ, r);
}

/* ---- Requests from other threads. ---- */

/* The next live request the I/O thread has not seen, now held by it; NULL when none. Ones
 * that were answered (reset, shutdown) or given up before it looked are let go at once. */
static struct vsock_request *take_request(struct virtio_vsock *v)
{
    for (;;) {
        pthread_mutex_lock(&v->lock);
        struct vsock_request *req = v->requests;
        while (req && req->holder != REQ_NEW)
            req = req->next;
        bool dead = false;
        if (req) {
            req->holder = REQ_IO;
            dead = req->done || req->cancelled;
        }
        pthread_mutex_unlock(&v->lock);
        if (!dead)
            return req;
        finish_request(v, req, 0); /* keeps the result already set */
    }
}

static void start_request(struct virtio_vsock *v, struct vsock_request *req)
{
    if (!guest_ready(v)) {
        finish_request(v, req, -ENOTCONN);
        return;
    }
    struct vsock_conn *c = add_conn(v, req->fd, CONN_REQUESTING);
    req->fd = -1; /* add_conn took it, or closed it */
    if (!c) {
        finish_request(v, req, -EMFILE);
        return;
    }
    c->req = req;
    c->guest_port = req->port;
    c->host_port = alloc_host_port(v);
    c->pending = PEND_REQUEST;
}

/* Connections whose caller timed out (or was shut down) are forgotten, with a RST when the
 * guest saw the REQUEST. */
static void drop_abandoned(struct virtio_vsock *v)
{
    for (unsigned i = 0; i < v->nslots; i++) {
        struct vsock_conn *c = v->conns[i];
        if (!c || !c->req)
            continue;
        pthread_mutex_lock(&v->lock);
        bool gone = c->req->cancelled || c->req->done;
        pthread_mutex_unlock(&v->lock);
        if (gone)
            reset_conn(v, c, -ETIMEDOUT);
    }
}

static void on_wake(void *opaque, uint32_t events)
{
    struct virtio_vsock *v = opaque;
    (void)events;
    uint64_t count;
    if (read(v->wake_fd, &count, sizeof(count)) < 0) {
        /* already drained */
    }
    struct vsock_request *req;
    while ((req = take_request(v)))
        start_request(v, req);
    drop_abandoned(v);
    deliver(v);
}

static void wake(struct virtio_vsock *v)
{
    uint64_t one = 1;
    if (write(v->wake_fd, &one, sizeof(one)) < 0) {
        /* saturated: a wake-up is pending anyway */
    }
}

/* ---- The Unix socket endpoint. ---- */

static void on_timer(void *opaque, uint32_t events)
{
    struct virtio_vsock *v = opaque;
    (void)events;
    uint64_t ticks;
    if (read(v->timer_fd, &ticks, sizeof(ticks)) < 0) {
        /* spurious */
    }
    uint64_t now = now_ms();
    bool waiting = false;
    for (unsigned i = 0; i < v->nslots; i++) {
        struct vsock_conn *c = v->conns[i];
        bool pending = c && c->deadline_ms &&
                       (c->state == CONN_HANDSHAKE || c->state == CONN_REQUESTING);
        if (pending && now >= c->deadline_ms)
            reset_conn(v, c, 0);
        else
            waiting |= pending;
    }
    arm_timer(v, waiting);
    deliver(v);
}

static void on_accept(void *opaque, uint32_t events)
{
    struct virtio_vsock *v = opaque;
    if (events & (EPOLLHUP | EPOLLERR)) {
        /* virtio_vsock_shutdown(): the socket hangs up for ever (and refuses clients). */
        io_loop_remove(v->loop, v->listen_fd);
        return;
    }
    /* A bounded batch: a flood of clients cannot keep the I/O thread here. */
    for (int i = 0; i < 16; i++) {
        int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                io_loop_remove(v->loop, v->listen_fd); /* shut down: stop listening */
            return;
        }
        if (is_shut(v)) {
            close(fd);
            continue;
        }
        struct vsock_conn *c = add_conn(v, fd, CONN_HANDSHAKE); /* closes fd when full */
        if (c) {
            set_deadline(v, c);
            watch(v, c);
        }
    }
}

static int listen_uds(struct virtio_vsock *v, const char *path, char *err, size_t err_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) + VSOCK_PORT_SUFFIX >= sizeof(addr.sun_path)) {
        snprintf(err, err_len, "vsock: socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    v->uds_path = strdup(path);
    v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = !v->uds_path ? -ENOMEM : v->listen_fd < 0 ? -errno : 0;
    if (r == 0 && bind(v->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        r = -errno;
        free(v->uds_path); /* not ours to unlink */
        v->uds_path = NULL;
    }
    if (r == 0 && listen(v->listen_fd, 64) < 0)
        r = -errno;
    if (r == 0)
        r = io_loop_add(v->loop, v->listen_fd, EPOLLIN, on_accept, v);
    if (r < 0)
        snprintf(err, err_len, "vsock: %s: %s", path, strerror(-r));
    return r;
}

/* ---- The device ops. ---- */

static void vsock_queue_notify(struct virtio_device *dev, unsigned index)
{
    struct virtio_vsock *v = to_vsock(dev);
    if (!guest_ready(v))
        return;
    if (index == VSOCK_TXQ)
        transmit(v);
    /* rx: new buffers; tx: answers may be owed. The event queue is never used. */
    if (index == VSOCK_TXQ || index == VSOCK_RXQ)
        deliver(v);
}

static void vsock_config_read(struct virtio_device *dev, uint32_t offset, uint8_t *data,
                              unsigned size)
{
    uint8_t cfg[VSOCK_CONFIG_SIZE];
    put_le(cfg, to_vsock(dev)->guest_cid, 8); /* fixed at creation: no lock needed */
    memset(data, 0, size);
    if (offset < sizeof(cfg))
        memcpy(data, cfg + offset, size < sizeof(cfg) - offset ? size : sizeof(cfg) - offset);
}

static void vsock_activate(struct virtio_device *dev)
{
    struct virtio_vsock *v = to_vsock(dev);
    v->active = true;
    pthread_mutex_lock(&v->lock);
    v->driver_ok = !v->broken;
    pthread_mutex_unlock(&v->lock);
}

/* Every connection belonged to the old driver instance: host ends see end-of-file. */
static void vsock_reset(struct virtio_device *dev)
{
    struct virtio_vsock *v = to_vsock(dev);
    for (unsigned i = 0; i < v->nslots; i++)
        if (v->conns[i])
            free_conn(v, v->conns[i], -ENOTCONN);
    pthread_mutex_lock(&v->lock);
    v->driver_ok = false;
    for (struct vsock_request *req = v->requests; req; req = req->next) {
        if (!req->done) {
            req->done = true;
            req->result = -ENOTCONN;
        }
    }
    pthread_cond_broadcast(&v->done_cond);
    pthread_mutex_unlock(&v->lock);
    v->orphan_head = v->orphan_count = 0;
    v->rx_held = false;
    v->active = false;
    v->broken = false;
}

/* After the I/O thread stopped; every connect call must have returned (see vsock.h). */
static void vsock_destroy(struct virtio_device *dev)
{
    struct virtio_vsock *v = to_vsock(dev);
    for (unsigned i = 0; i < v->nslots; i++) {
        struct vsock_conn *c = v->conns[i];
        if (c) {
            close_host_end(v, c);
            free(c);
        }
    }
    while (v->requests)
        free_request_locked(v, v->requests);
    if (v->listen_fd >= 0) {
        io_loop_remove(v->loop, v->listen_fd);
        close(v->listen_fd);
    }
    if (v->uds_path)
        unlink(v->uds_path);
    if (v->timer_fd >= 0) {
        io_loop_remove(v->loop, v->timer_fd);
        close(v->timer_fd);
    }
    if (v->wake_fd >= 0) {
        io_loop_remove(v->loop, v->wake_fd);
        close(v->wake_fd);
    }
    free(v->uds_path);
    pthread_cond_destroy(&v->done_cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

/*
 * Only a device with no connection can be saved: a connection's other end is a host socket
 * of this process, which a restored VM would not have. The guest may listen; that is its own
 * state. Resets owed for stray packets are dropped (the guest's timeouts cover them), and a
 * held rx buffer goes back to the ring.
 */
static int vsock_save(struct virtio_device *dev, struct snap_writer *w)
{
    struct virtio_vsock *v = to_vsock(dev);
    pthread_mutex_lock(&v->lock);
    bool busy = v->nconns > 0 || v->requests != NULL;
    pthread_mutex_unlock(&v->lock);
    if (busy)
        return -EBUSY;
    if (v->rx_held) {
        v->dev.queues[VSOCK_RXQ].last_avail_idx--;
        v->rx_held = false;
    }
    snap_put_u32(w, v->next_host_port);
    return 0;
}

static bool vsock_restore(struct virtio_device *dev, struct snap_reader *r)
{
    struct virtio_vsock *v = to_vsock(dev);
    v->next_host_port = snap_get_u32(r);
    return snap_reader_ok(r, true);
}

static const struct virtio_device_ops vsock_ops = {
    .queue_notify = vsock_queue_notify,
    .config_read = vsock_config_read,
    .activate = vsock_activate,
    .reset = vsock_reset,
    .destroy = vsock_destroy,
    .save = vsock_save,
    .restore = vsock_restore,
};

static struct virtio_vsock *alloc_vsock(uint64_t guest_cid, struct io_loop *loop)
{
    struct virtio_vsock *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->dev = (struct virtio_device){
        .ops = &vsock_ops,
        .device_id = VIRTIO_ID_VSOCK,
        .config_size = VSOCK_CONFIG_SIZE,
        .num_queues = 3,
        .queue_max_size = VSOCK_QUEUE_SIZE,
        .loop = loop,
    };
    v->guest_cid = guest_cid;
    v->loop = loop;
    v->listen_fd = -1;
    v->next_host_port = VSOCK_FIRST_HOST_PORT;
    pthread_mutex_init(&v->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&v->done_cond, &attr);
    pthread_condattr_destroy(&attr);
    v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    return v;
}

struct virtio_device *virtio_vsock_new(uint64_t guest_cid, const char *uds_path,
                                       struct io_loop *loop, char *err, size_t err_len)
{
    /* 0-2 are reserved, and Linux keeps CIDs in 32 bits with ~0 meaning "any". */
    if (guest_cid < 3 || guest_cid >= UINT32_MAX) {
        snprintf(err, err_len, "vsock: invalid guest CID %llu", (unsigned long long)guest_cid);
        return NULL;
    }
    struct virtio_vsock *v = alloc_vsock(guest_cid, loop);
    if (!v) {
        snprintf(err, err_len, "vsock: out of memory");
        return NULL;
    }
    int r = v->wake_fd < 0 || v->timer_fd < 0 ? -errno
                                              : io_loop_add(loop, v->wake_fd, EPOLLIN, on_wake, v);
    if (r == 0)
        r = io_loop_add(loop, v->timer_fd, EPOLLIN, on_timer, v);
    if (r < 0)
        snprintf(err, err_len, "vsock: %s", strerror(-r));
    if (r == 0 && uds_path)
        r = listen_uds(v, uds_path, err, err_len);
    if (r < 0) {
        vsock_destroy(&v->dev);
        return NULL;
    }
    return &v->dev;
}

/* ---- From other threads. ---- */

/* Waits for req's result (lock held). On timeout the I/O thread is told to forget it. */
static int wait_request_locked(struct virtio_vsock *v, struct vsock_request *req, int timeout_ms)
{
    struct timespec deadline = deadline_after_ms(CLOCK_MONOTONIC, timeout_ms);
    while (!req->done) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&v->done_cond, &v->lock);
        } else if (pthread_cond_timedwait(&v->done_cond, &v->lock, &deadline) == ETIMEDOUT &&
                   !req->done) {
            req->cancelled = true;
            wake(v);
            return -ETIMEDOUT;
        }
    }
    return req->result;
}

int virtio_vsock_connect(struct virtio_device *dev, uint32_t port, int timeout_ms)
{
    struct virtio_vsock *v = to_vsock(dev);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return -errno;
    struct vsock_request *req = calloc(1, sizeof(*req));
    if (!req || fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0) {
        free(req);
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    req->port = port;
    req->fd = fds[1];
    pthread_mutex_lock(&v->lock);
    int r = v->shut ? -ESHUTDOWN : !v->driver_ok ? -ENOTCONN : 0;
    if (r == 0) {
        req->next = v->requests;
        v->requests = req;
        wake(v);
        r = wait_request_locked(v, req, timeout_ms);
        req->caller_gone = true;
        if (req->holder != REQ_IO)
            free_request_locked(v, req);
    } else {
        close(req->fd);
        free(req);
    }
    pthread_mutex_unlock(&v->lock);
    if (r == 0)
        return fds[0];
    close(fds[0]);
    return r;
}

void virtio_vsock_shutdown(struct virtio_device *dev)
{
    struct virtio_vsock *v = to_vsock(dev);
    pthread_mutex_lock(&v->lock);
    v->shut = true;
    for (unsigned i = 0; i < v->nslots; i++)
        if (v->conns[i] && v->conns[i]->fd >= 0)
            shutdown(v->conns[i]->fd, SHUT_RDWR);
    if (v->listen_fd >= 0)
        shutdown(v->listen_fd, SHUT_RDWR);
    for (struct vsock_request *req = v->requests; req; req = req->next) {
        if (!req->done) {
            req->done = true;
            req->result = -ESHUTDOWN;
        }
    }
    pthread_cond_broadcast(&v->done_cond);
    pthread_mutex_unlock(&v->lock);
    wake(v);
}
