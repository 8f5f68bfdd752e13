/*
 * The FUSE server's core: request parsing, the opcode table, replies, INIT and FORGET.
 *
 * A request is checked before any handler runs: the header must be complete and its length
 * must fit the readable part; the op's fixed arguments must be present; the writable part must
 * hold the op's fixed reply, so that an op that takes a reference (LOOKUP, CREATE, ...) is
 * never performed without the guest learning about it.
 */
#include "fs/fuse_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fs/fuse_internal.h"

/* ---- iovec helpers. ---- */

size_t fuse_iov_total(const struct iovec *v, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (v[i].iov_len > SIZE_MAX - total)
            return SIZE_MAX;
        total += v[i].iov_len;
    }
    return total;
}

/* Walks bytes [off, off + len) of v piece by piece; step returns false to stop early.
 * Returns the bytes walked. */
typedef bool iov_step(void *ctx, uint8_t *base, size_t len, size_t done);

static size_t iov_walk(const struct iovec *v, unsigned n, size_t off, size_t len, iov_step *step,
                       void *ctx)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= v[i].iov_len) {
            off -= v[i].iov_len;
            continue;
        }
        size_t chunk = v[i].iov_len - off;
        if (chunk > len - done)
            chunk = len - done;
        if (!step(ctx, (uint8_t *)v[i].iov_base + off, chunk, done))
            break;
        done += chunk;
        off = 0;
    }
    return done;
}

static bool step_gather(void *dst, uint8_t *base, size_t len, size_t done)
{
    memcpy((uint8_t *)dst + done, base, len);
    return true;
}

static bool step_scatter(void *src, uint8_t *base, size_t len, size_t done)
{
    memcpy(base, (const uint8_t *)src + done, len);
    return true;
}

size_t fuse_iov_gather(const struct iovec *v, unsigned n, size_t off, void *dst, size_t len)
{
    return iov_walk(v, n, off, len, step_gather, dst);
}

size_t fuse_iov_scatter(const struct iovec *v, unsigned n, size_t off, const void *src,
                        size_t len)
{
    return iov_walk(v, n, off, len, step_scatter, (void *)src);
}

struct slice {
    struct iovec *out;
    unsigned count, max;
};

static bool step_slice(void *ctx, uint8_t *base, size_t len, size_t done)
{
    (void)done;
    struct slice *sl = ctx;
    if (sl->count == sl->max)
        return false;
    sl->out[sl->count++] = (struct iovec){base, len};
    return true;
}

unsigned fuse_iov_slice(const struct iovec *v, unsigned n, size_t off, size_t len,
                        struct iovec *out, unsigned max, size_t *got)
{
    struct slice sl = {out, 0, max};
    *got = iov_walk(v, n, off, len, step_slice, &sl);
    return sl.count;
}

/* ---- Arguments and replies. ---- */

int fuse_take_name(const struct fuse_req *r, size_t *pos, const char **name)
{
    if (*pos >= r->arg_len)
        return -EINVAL;
    const char *p = (const char *)r->arg + *pos;
    const char *end = memchr(p, '\0', r->arg_len - *pos);
    if (!end)
        return -EINVAL;
    size_t len = (size_t)(end - p);
    if (len == 0 || memchr(p, '/', len) || !strcmp(p, ".") || !strcmp(p, ".."))
        return -EINVAL;
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    *pos += len + 1;
    *name = p;
    return 0;
}

void *fuse_reply_buf(struct fuse_server *s, struct fuse_req *r, size_t len)
{
    if (len > FUSE_REPLY_MAX || len > r->wr_total - sizeof(struct fuse_out_header))
        return NULL;
    memset(s->reply, 0, len);
    r->out_len = len;
    return s->reply;
}

/* ---- INIT, FORGET, DESTROY. ---- */

/* The INIT flags this server honours; everything else the kernel offers is declined.
 * READDIRPLUS saves a LOOKUP per entry; MAX_PAGES lets WRITE carry FUSE_MAX_WRITE; ASYNC_DIO
 * lets one large direct write (write-only opens, fuse_file.c) go out as several requests. */
#define SERVER_INIT_FLAGS                                                                   \
    (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ATOMIC_O_TRUNC | FUSE_DO_READDIRPLUS |        \
     FUSE_MAX_PAGES | FUSE_ASYNC_DIO)
/* The oldest minor whose init_out and entry_out layouts the server writes. */
#define MIN_MINOR 23

static int do_init(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_init_in *in = (const void *)r->arg;
    /* Linux sends INIT once per connection, so a second one is a new driver (a guest that
     * rebooted under a vhost-user front-end, which tells us nothing else): the old one's
     * references are gone and must not pile up against the table caps. */
    if (s->initialized)
        fuse_forget_all(s);
    struct fuse_init_out *out = fuse_reply_buf(s, r, sizeof(*out));
    if (!out)
        return -EINVAL;
    out->major = FUSE_KERNEL_VERSION;
    out->minor = FUSE_KERNEL_MINOR_VERSION;
    if (in->major > FUSE_KERNEL_VERSION)
        return 0; /* the kernel retries with our major */
    if (in->major < FUSE_KERNEL_VERSION || in->minor < MIN_MINOR)
        return -EPROTO;
    if (in->minor < out->minor)
        out->minor = in->minor;
    out->max_readahead = in->max_readahead;
    out->flags = in->flags & SERVER_INIT_FLAGS;
    out->max_background = 64;
    out->congestion_threshold = 48;
    out->max_write = FUSE_MAX_WRITE;
    out->time_gran = 1;
    out->max_pages = FUSE_SERVER_MAX_PAGES;
    s->minor = out->minor;
    s->initialized = true;
    return 0;
}

static int do_forget(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_forget_in *in = (const void *)r->arg;
    fuse_forget(s, r->in.nodeid, in->nlookup);
    return 0;
}

/* The entries are read one by one from the guest's buffers, so any count the request's
 * length allows is served without a large copy. */
static int do_batch_forget(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_batch_forget_in *in = (const void *)r->arg;
    size_t room = (r->body_len - sizeof(*in)) / sizeof(struct fuse_forget_one);
    size_t count = in->count < room ? in->count : room;
    size_t off = sizeof(struct fuse_in_header) + sizeof(*in);
    for (size_t i = 0; i < count; i++, off += sizeof(struct fuse_forget_one)) {
        struct fuse_forget_one one;
        if (fuse_iov_gather(r->rd, r->rd_count, off, &one, sizeof(one)) != sizeof(one))
            break;
        fuse_forget(s, one.nodeid, one.nlookup);
    }
    return 0;
}

bool fuse_server_in_session(const struct fuse_server *s)
{
    return s->initialized;
}

void fuse_server_reset(struct fuse_server *s)
{
    fuse_forget_all(s);
    s->initialized = false;
}

static int do_destroy(struct fuse_server *s, struct fuse_req *r)
{
    (void)r;
    fuse_server_reset(s);
    return 0;
}

static int do_enosys(struct fuse_server *s, struct fuse_req *r)
{
    (void)s;
    (void)r;
    return -ENOSYS;
}

/* ---- The opcode table. ---- */

struct fuse_op {
    fuse_handler *fn;
    uint16_t arg_min;   /* fixed arguments the request must carry */
    uint16_t reply_min; /* fixed reply the writable part must hold */
    bool mutating;      /* EROFS on a read-only share */
};

#define OP(code, handler, arg, reply, mut) [code] = {handler, arg, reply, mut}
static const struct fuse_op ops[] = {
    OP(FUSE_INIT, do_init, 16, sizeof(struct fuse_init_out), false),
    OP(FUSE_DESTROY, do_destroy, 0, 0, false),
    OP(FUSE_FORGET, do_forget, sizeof(struct fuse_forget_in), 0, false),
    OP(FUSE_BATCH_FORGET, do_batch_forget, sizeof(struct fuse_batch_forget_in), 0, false),
    OP(FUSE_LOOKUP, fuse_do_lookup, 0, sizeof(struct fuse_entry_out), false),
    OP(FUSE_GETATTR, fuse_do_getattr, 0, sizeof(struct fuse_attr_out), false),
    OP(FUSE_SETATTR, fuse_do_setattr, sizeof(struct fuse_setattr_in),
       sizeof(struct fuse_attr_out), true),
    OP(FUSE_READLINK, fuse_do_readlink, 0, 0, false),
    OP(FUSE_SYMLINK, fuse_do_symlink, 0, sizeof(struct fuse_entry_out), true),
    OP(FUSE_MKNOD, fuse_do_mknod, sizeof(struct fuse_mknod_in), sizeof(struct fuse_entry_out),
       true),
    OP(FUSE_MKDIR, fuse_do_mkdir, sizeof(struct fuse_mkdir_in), sizeof(struct fuse_entry_out),
       true),
    OP(FUSE_UNLINK, fuse_do_unlink, 0, 0, true),
    OP(FUSE_RMDIR, fuse_do_rmdir, 0, 0, true),
    OP(FUSE_RENAME, fuse_do_rename, sizeof(struct fuse_rename_in), 0, true),
    OP(FUSE_RENAME2, fuse_do_rename2, sizeof(struct fuse_rename2_in), 0, true),
    OP(FUSE_LINK, fuse_do_link, sizeof(struct fuse_link_in), sizeof(struct fuse_entry_out),
       true),
    OP(FUSE_OPEN, fuse_do_open, sizeof(struct fuse_open_in), sizeof(struct fuse_open_out),
       false),
    OP(FUSE_READ, fuse_do_read, sizeof(struct fuse_read_in), 0, false),
    OP(FUSE_WRITE, fuse_do_write, sizeof(struct fuse_write_in), sizeof(struct fuse_write_out),
       true),
    OP(FUSE_STATFS, fuse_do_statfs, 0, sizeof(struct fuse_statfs_out), false),
    OP(FUSE_RELEASE, fuse_do_release, sizeof(struct fuse_release_in), 0, false),
    OP(FUSE_FSYNC, fuse_do_fsync, sizeof(struct fuse_fsync_in), 0, false),
    OP(FUSE_SETXATTR, do_enosys, 0, 0, true),
    OP(FUSE_GETXATTR, do_enosys, 0, 0, false),
    OP(FUSE_LISTXATTR, do_enosys, 0, 0, false),
    OP(FUSE_REMOVEXATTR, do_enosys, 0, 0, true),
    OP(FUSE_FLUSH, fuse_do_flush, sizeof(struct fuse_flush_in), 0, false),
    OP(FUSE_OPENDIR, fuse_do_opendir, sizeof(struct fuse_open_in), sizeof(struct fuse_open_out),
       false),
    OP(FUSE_READDIR, fuse_do_readdir, sizeof(struct fuse_read_in), 0, false),
    OP(FUSE_READDIRPLUS, fuse_do_readdirplus, sizeof(struct fuse_read_in), 0, false),
    OP(FUSE_RELEASEDIR, fuse_do_releasedir, sizeof(struct fuse_release_in), 0, false),
    OP(FUSE_FSYNCDIR, fuse_do_fsyncdir, sizeof(struct fuse_fsync_in), 0, false),
    OP(FUSE_ACCESS, fuse_do_access, sizeof(struct fuse_access_in), 0, false),
    OP(FUSE_CREATE, fuse_do_create, sizeof(struct fuse_create_in),
       sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), true),
    OP(FUSE_FALLOCATE, fuse_do_fallocate, sizeof(struct fuse_fallocate_in), 0, true),
    OP(FUSE_LSEEK, fuse_do_lseek, sizeof(struct fuse_lseek_in), sizeof(struct fuse_lseek_out),
       false),
    OP(FUSE_COPY_FILE_RANGE, fuse_do_copy_file_range, sizeof(struct fuse_copy_file_range_in),
       sizeof(struct fuse_write_out), true),
};

/* Runs the op; 0 or a negative errno for the reply header. */
static int dispatch(struct fuse_server *s, struct fuse_req *r)
{
    uint32_t code = r->in.opcode;
    const struct fuse_op *op = code < sizeof(ops) / sizeof(ops[0]) ? &ops[code] : NULL;
    if (!op || !op->fn)
        return -ENOSYS;
    if (!s->initialized && code != FUSE_INIT)
        return -EIO;
    if (r->arg_len < op->arg_min)
        return -EINVAL;
    if (op->reply_min && r->wr_total - sizeof(struct fuse_out_header) < op->reply_min)
        return -EINVAL;
    if (op->mutating && s->read_only)
        return -EROFS;
    return op->fn(s, r);
}

static size_t send_reply(struct fuse_server *s, const struct fuse_req *r, int err)
{
    size_t payload = err ? 0 : r->direct_len ? r->direct_len : r->out_len;
    struct fuse_out_header out = {
        .len = (uint32_t)(sizeof(out) + payload),
        .error = err,
        .unique = r->in.unique,
    };
    fuse_iov_scatter(r->wr, r->wr_count, 0, &out, sizeof(out));
    if (!err && !r->direct_len && r->out_len)
        fuse_iov_scatter(r->wr, r->wr_count, sizeof(out), s->reply, r->out_len);
    return sizeof(out) + payload;
}

static bool no_reply_op(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET;
}

size_t fuse_server_handle(struct fuse_server *s, const struct iovec *rd, unsigned rd_count,
                          const struct iovec *wr, unsigned wr_count)
{
    struct fuse_req r = {.rd = rd, .rd_count = rd_count, .wr = wr, .wr_count = wr_count};
    r.wr_total = fuse_iov_total(wr, wr_count);
    size_t rd_total = fuse_iov_total(rd, rd_count);
    bool whole = fuse_iov_gather(rd, rd_count, 0, &r.in, sizeof(r.in)) == sizeof(r.in);
    /* FORGETs get no reply, so they need no writable part. */
    bool silent = whole && no_reply_op(r.in.opcode);
    if (!silent && r.wr_total < sizeof(struct fuse_out_header))
        return 0;
    if (!whole) {
        r.in = (struct fuse_in_header){0};
        return send_reply(s, &r, -EINVAL);
    }
    if (r.in.len < sizeof(r.in) || r.in.len > rd_total)
        return silent ? 0 : send_reply(s, &r, -EINVAL);
    r.body_len = r.in.len - sizeof(r.in);
    r.arg_len = r.body_len < FUSE_ARGS_MAX ? r.body_len : FUSE_ARGS_MAX;
    fuse_iov_gather(rd, rd_count, sizeof(r.in), s->args, r.arg_len);
    r.arg = s->args;
    int err = dispatch(s, &r);
    return silent ? 0 : send_reply(s, &r, err);
}

/* ---- Life cycle. ---- */

static unsigned default_inodes(void)
{
    struct rlimit lim;
    unsigned max = FUSE_SERVER_DEFAULT_INODES;
    if (!getrlimit(RLIMIT_NOFILE, &lim) && lim.rlim_cur != RLIM_INFINITY &&
        lim.rlim_cur / 2 < max)
        max = lim.rlim_cur / 2 > 16 ? (unsigned)(lim.rlim_cur / 2) : 16;
    return max;
}

int fuse_server_new(const char *dir, const struct fuse_server_options *opts,
                    struct fuse_server **out)
{
    struct fuse_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->read_only = opts->read_only;
    s->cache = opts->cache;
    s->cache_seconds = opts->cache == FUSE_CACHE_NEVER    ? 0
                       : opts->cache == FUSE_CACHE_ALWAYS ? FUSE_CACHE_SECONDS_ALWAYS
                                                          : FUSE_CACHE_SECONDS_AUTO;
    /* The guest kernel checks permissions against the owner the server reports (virtio-fs
     * mounts with default_permissions), so a node a guest user creates must be theirs, or
     * they could not use it. Only root may give files away; otherwise they stay the VMM's. */
    s->give_away = geteuid() == 0;
    s->inode_max = opts->max_inodes ? opts->max_inodes : default_inodes();
    s->handle_max = opts->max_handles ? opts->max_handles : FUSE_SERVER_DEFAULT_HANDLES;
    int err = 0, root = -1;
    s->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (s->proc_fd < 0 || (root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        err = -errno;
    if (!err)
        err = fuse_inodes_init(s, root);
    if (err) {
        if (root >= 0)
            close(root);
        if (s->proc_fd >= 0)
            close(s->proc_fd);
        free(s);
        return err;
    }
    *out = s;
    return 0;
}

void fuse_server_destroy(struct fuse_server *s)
{
    if (!s)
        return;
    fuse_inodes_fini(s);
    close(s->proc_fd);
    free(s);
}
