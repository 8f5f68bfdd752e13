/*
 * The FUSE server against a scratch directory: each opcode's behaviour, read-only shares,
 * confinement (nothing planted in the share leads outside it, even for root, who bypasses
 * permission checks), and malformed requests answered with an error rather than a crash.
 *
 * Each test gets a fresh share under /tmp and, next to it, an "outside" directory with a
 * secret file the guest must never reach.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs/fuse_server.h"

#define ROOT FUSE_ROOT_ID
#define SECRET "outside secret"
#define BODY_MAX (128 * 1024)

struct bench {
    char base[64];     /* holds share/ and outside/ */
    char share[96];
    char outside[96];
    struct fuse_server *srv;
    uint64_t unique;
    uint32_t uid, gid; /* the guest caller in request headers */
    uint8_t body[BODY_MAX]; /* the last reply's payload */
};

/* ---- Set-up. ---- */

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void path_of(const char *dir, const char *name, char *out)
{
    snprintf(out, 256, "%s/%s", dir, name);
}

static void init_server(struct bench *b)
{
    struct fuse_init_in in = {.major = 7, .minor = FUSE_KERNEL_MINOR_VERSION,
                              .max_readahead = 65536, .flags = 0xffffffff};
    uint8_t req[sizeof(struct fuse_in_header) + sizeof(in)];
    struct fuse_in_header h = {.len = sizeof(req), .opcode = FUSE_INIT, .unique = 1};
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), &in, sizeof(in));
    uint8_t out[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)];
    struct iovec rd = {req, sizeof(req)}, wr = {out, sizeof(out)};
    assert_int_equal(fuse_server_handle(b->srv, &rd, 1, &wr, 1), sizeof(out));
}

static int open_bench(void **state, bool read_only, unsigned max_inodes, unsigned max_handles)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->base, "/tmp/cove-fuse-XXXXXX");
    assert_non_null(mkdtemp(b->base));
    snprintf(b->share, sizeof(b->share), "%s/share", b->base);
    snprintf(b->outside, sizeof(b->outside), "%s/outside", b->base);
    assert_int_equal(mkdir(b->share, 0755), 0);
    assert_int_equal(mkdir(b->outside, 0755), 0);
    char p[256];
    path_of(b->outside, "secret", p);
    write_file(p, SECRET);
    struct fuse_server_options o = {.read_only = read_only, .max_inodes = max_inodes,
                                    .max_handles = max_handles};
    assert_int_equal(fuse_server_new(b->share, &o, &b->srv), 0);
    init_server(b);
    *state = b;
    return 0;
}

static int setup(void **state) { return open_bench(state, false, 0, 0); }
static int setup_ro(void **state) { return open_bench(state, true, 0, 0); }
static int setup_small(void **state) { return open_bench(state, false, 4, 2); }

static int teardown(void **state)
{
    struct bench *b = *state;
    fuse_server_destroy(b->srv);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->base);
    assert_int_equal(system(cmd), 0);
    free(b);
    return 0;
}

/* ---- Requests. ---- */

/* Sends opcode on nodeid with args (a then b, e.g. a struct and a name) and a reply space of
 * room bytes; returns the reply payload length (in b->body) and sets *err. */
static size_t call2(struct bench *b, uint32_t opcode, uint64_t nodeid, const void *a,
                    size_t alen, const void *a2, size_t a2len, size_t room, int *err)
{
    static uint8_t req[sizeof(struct fuse_in_header) + 2 * 8192];
    static uint8_t out[sizeof(struct fuse_out_header) + BODY_MAX];
    assert_true(alen + a2len <= 2 * 8192 && room <= BODY_MAX);
    struct fuse_in_header h = {.len = (uint32_t)(sizeof(h) + alen + a2len), .opcode = opcode,
                               .unique = ++b->unique, .nodeid = nodeid, .uid = b->uid,
                               .gid = b->gid};
    memcpy(req, &h, sizeof(h));
    if (alen)
        memcpy(req + sizeof(h), a, alen);
    if (a2len)
        memcpy(req + sizeof(h) + alen, a2, a2len);
    struct iovec rd = {req, h.len}, wr = {out, sizeof(struct fuse_out_header) + room};
    size_t n = fuse_server_handle(b->srv, &rd, 1, &wr, 1);
    if (n == 0) {
        *err = 1; /* no reply */
        return 0;
    }
    struct fuse_out_header oh;
    memcpy(&oh, out, sizeof(oh));
    assert_true(n >= sizeof(oh) && n <= wr.iov_len);
    assert_int_equal(oh.len, n);
    assert_int_equal(oh.unique, h.unique);
    *err = oh.error;
    memcpy(b->body, out + sizeof(oh), n - sizeof(oh));
    return n - sizeof(oh);
}

static size_t call(struct bench *b, uint32_t opcode, uint64_t nodeid, const void *a, size_t alen,
                   int *err)
{
    return call2(b, opcode, nodeid, a, alen, NULL, 0, BODY_MAX, err);
}

/* An op whose argument is a struct followed by a NUL-terminated name. */
static int call_named(struct bench *b, uint32_t opcode, uint64_t nodeid, const void *a,
                      size_t alen, const char *name)
{
    int err;
    call2(b, opcode, nodeid, a, alen, name, strlen(name) + 1, BODY_MAX, &err);
    return err;
}

static int lookup(struct bench *b, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    int err = call_named(b, FUSE_LOOKUP, parent, NULL, 0, name);
    if (!err && e)
        memcpy(e, b->body, sizeof(*e));
    return err;
}

static uint64_t lookup_ok(struct bench *b, uint64_t parent, const char *name)
{
    struct fuse_entry_out e;
    assert_int_equal(lookup(b, parent, name, &e), 0);
    return e.nodeid;
}

static int getattr(struct bench *b, uint64_t node, struct fuse_attr *a)
{
    struct fuse_getattr_in in = {0};
    int err;
    call(b, FUSE_GETATTR, node, &in, sizeof(in), &err);
    if (!err && a)
        memcpy(a, &((struct fuse_attr_out *)(void *)b->body)->attr, sizeof(*a));
    return err;
}

/* CREATE name in parent; returns the fh and sets *node. */
static uint64_t create(struct bench *b, uint64_t parent, const char *name, uint64_t *node)
{
    struct fuse_create_in in = {.flags = O_RDWR, .mode = S_IFREG | 0640};
    assert_int_equal(call_named(b, FUSE_CREATE, parent, &in, sizeof(in), name), 0);
    struct fuse_entry_out e;
    struct fuse_open_out o;
    memcpy(&e, b->body, sizeof(e));
    memcpy(&o, b->body + sizeof(e), sizeof(o));
    if (node)
        *node = e.nodeid;
    return o.fh;
}

static int open_node(struct bench *b, uint64_t node, uint32_t flags, uint64_t *fh)
{
    *fh = UINT64_MAX;
    struct fuse_open_in in = {.flags = flags};
    int err;
    call(b, FUSE_OPEN, node, &in, sizeof(in), &err);
    if (!err)
        *fh = ((struct fuse_open_out *)(void *)b->body)->fh;
    return err;
}

static int write_at(struct bench *b, uint64_t fh, uint64_t off, const char *data, size_t len)
{
    struct fuse_write_in in = {.fh = fh, .offset = off, .size = (uint32_t)len};
    int err;
    call2(b, FUSE_WRITE, 0, &in, sizeof(in), data, len, BODY_MAX, &err);
    if (!err)
        assert_int_equal(((struct fuse_write_out *)(void *)b->body)->size, len);
    return err;
}

static size_t read_at(struct bench *b, uint64_t fh, uint64_t off, uint32_t size, int *err)
{
    struct fuse_read_in in = {.fh = fh, .offset = off, .size = size};
    return call(b, FUSE_READ, 0, &in, sizeof(in), err);
}

static void release(struct bench *b, uint64_t fh)
{
    struct fuse_release_in in = {.fh = fh};
    int err;
    call(b, FUSE_RELEASE, 0, &in, sizeof(in), &err);
    assert_int_equal(err, 0);
}

static void host_file(struct bench *b, const char *name, const char *text)
{
    char p[256];
    path_of(b->share, name, p);
    write_file(p, text);
}

static bool host_exists(const char *dir, const char *name)
{
    char p[256];
    struct stat st;
    path_of(dir, name, p);
    return lstat(p, &st) == 0;
}

/* ---- INIT. ---- */

static void test_init(void **state)
{
    struct bench *b = *state;
    struct fuse_init_in in = {.major = 7, .minor = 36, .max_readahead = 4096,
                              .flags = FUSE_DO_READDIRPLUS | FUSE_POSIX_LOCKS | FUSE_ASYNC_DIO};
    int err;
    size_t n = call(b, FUSE_INIT, 0, &in, sizeof(in), &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, sizeof(struct fuse_init_out));
    struct fuse_init_out *o = (void *)b->body;
    assert_int_equal(o->major, 7);
    assert_int_equal(o->minor, 36);
    assert_int_equal(o->flags, FUSE_DO_READDIRPLUS | FUSE_ASYNC_DIO); /* locks stay in the guest */
    assert_int_equal(o->max_readahead, 4096);
    assert_true(o->max_write >= 128 * 1024);
    /* 1 MiB per request: FUSE's own cap, and a chain of 260 buffers the queues take. */
    assert_int_equal(o->max_pages, 256);
    assert_int_equal(o->max_write, 256 * 4096);

    in.minor = 99; /* a newer kernel: our header's minor */
    call(b, FUSE_INIT, 0, &in, sizeof(in), &err);
    assert_int_equal(((struct fuse_init_out *)(void *)b->body)->minor, FUSE_KERNEL_MINOR_VERSION);
    in.major = 8; /* the kernel retries with our major */
    call(b, FUSE_INIT, 0, &in, sizeof(in), &err);
    assert_int_equal(err, 0);
    assert_int_equal(((struct fuse_init_out *)(void *)b->body)->major, 7);
    in.major = 7;
    in.minor = 12;
    call(b, FUSE_INIT, 0, &in, sizeof(in), &err);
    assert_int_equal(err, -EPROTO);
}

static void test_requests_before_init_fail(void **state)
{
    struct bench *b = *state;
    fuse_server_destroy(b->srv);
    struct fuse_server_options o = {0};
    assert_int_equal(fuse_server_new(b->share, &o, &b->srv), 0);
    assert_int_equal(getattr(b, ROOT, NULL), -EIO);
    init_server(b);
    assert_int_equal(getattr(b, ROOT, NULL), 0);
}

static void test_new_errors(void **state)
{
    struct bench *b = *state;
    struct fuse_server *s = NULL;
    struct fuse_server_options o = {0};
    char p[256];
    path_of(b->share, "missing", p);
    assert_int_equal(fuse_server_new(p, &o, &s), -ENOENT);
    host_file(b, "file", "x");
    path_of(b->share, "file", p);
    assert_int_equal(fuse_server_new(p, &o, &s), -ENOTDIR);
    assert_null(s);
}

/* ---- Attributes and files. ---- */

static void test_lookup_getattr(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "hello");
    struct fuse_entry_out e;
    assert_int_equal(lookup(b, ROOT, "f", &e), 0);
    assert_true(e.nodeid > ROOT);
    assert_int_equal(e.attr.size, 5);
    assert_true(S_ISREG(e.attr.mode));
    assert_int_equal(lookup_ok(b, ROOT, "f"), e.nodeid); /* deduplicated by inode */
    struct fuse_attr a;
    assert_int_equal(getattr(b, e.nodeid, &a), 0);
    assert_int_equal(a.ino, e.attr.ino);
    assert_int_equal(getattr(b, ROOT, &a), 0);
    assert_true(S_ISDIR(a.mode));
    assert_int_equal(lookup(b, ROOT, "missing", NULL), -ENOENT);
    assert_int_equal(lookup(b, 12345, "f", NULL), -ESTALE);
    assert_int_equal(getattr(b, 0, NULL), -ESTALE);
}

/* Each cache mode's promises to the guest: how long entries and attributes hold, and the
 * open flags (write-only and read-write opens, by OPEN and by CREATE). */
static void expect_cache_mode(struct bench *b, enum fuse_cache cache, uint64_t seconds,
                              uint32_t wronly_flags, uint32_t rdwr_flags)
{
    fuse_server_destroy(b->srv);
    struct fuse_server_options o = {.cache = cache};
    assert_int_equal(fuse_server_new(b->share, &o, &b->srv), 0);
    init_server(b);
    struct fuse_entry_out e;
    assert_int_equal(lookup(b, ROOT, "f", &e), 0);
    assert_int_equal(e.entry_valid, seconds);
    assert_int_equal(e.attr_valid, seconds);
    struct fuse_getattr_in gi = {0};
    int err;
    call(b, FUSE_GETATTR, e.nodeid, &gi, sizeof(gi), &err);
    assert_int_equal(err, 0);
    assert_int_equal(((struct fuse_attr_out *)(void *)b->body)->attr_valid, seconds);
    uint64_t fh;
    assert_int_equal(open_node(b, e.nodeid, O_WRONLY, &fh), 0);
    assert_int_equal(((struct fuse_open_out *)(void *)b->body)->open_flags, wronly_flags);
    assert_int_equal(open_node(b, e.nodeid, O_RDWR, &fh), 0);
    assert_int_equal(((struct fuse_open_out *)(void *)b->body)->open_flags, rdwr_flags);
    struct fuse_create_in ci = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    char name[16];
    snprintf(name, sizeof(name), "new%d", (int)cache);
    assert_int_equal(call_named(b, FUSE_CREATE, ROOT, &ci, sizeof(ci), name), 0);
    memcpy(&e, b->body, sizeof(e));
    assert_int_equal(e.entry_valid, seconds);
    struct fuse_open_out oo;
    memcpy(&oo, b->body + sizeof(e), sizeof(oo));
    assert_int_equal(oo.open_flags, rdwr_flags);
}

static void test_cache_modes(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "data");
    expect_cache_mode(b, FUSE_CACHE_AUTO, 1, FOPEN_DIRECT_IO, 0);
    expect_cache_mode(b, FUSE_CACHE_NEVER, 0, FOPEN_DIRECT_IO, FOPEN_DIRECT_IO);
    expect_cache_mode(b, FUSE_CACHE_ALWAYS, 86400, FOPEN_KEEP_CACHE, FOPEN_KEEP_CACHE);
}

/* Write-only opens bypass the guest's page cache (FOPEN_DIRECT_IO); anything that reads keeps it. */
static void test_open_flags_direct_io_for_writers(void **state)
{
    struct bench *b = *state;
    struct fuse_create_in ci = {.flags = O_WRONLY, .mode = S_IFREG | 0644};
    assert_int_equal(call_named(b, FUSE_CREATE, ROOT, &ci, sizeof(ci), "w"), 0);
    struct fuse_entry_out e;
    struct fuse_open_out o;
    memcpy(&e, b->body, sizeof(e));
    memcpy(&o, b->body + sizeof(e), sizeof(o));
    assert_int_equal(o.open_flags, FOPEN_DIRECT_IO);
    ci.flags = O_RDWR;
    assert_int_equal(call_named(b, FUSE_CREATE, ROOT, &ci, sizeof(ci), "rw"), 0);
    memcpy(&o, b->body + sizeof(e), sizeof(o));
    assert_int_equal(o.open_flags, 0);

    const uint32_t modes[] = {O_WRONLY, O_WRONLY | O_APPEND, O_RDONLY, O_RDWR};
    const uint32_t want[] = {FOPEN_DIRECT_IO, FOPEN_DIRECT_IO, 0, 0};
    for (unsigned i = 0; i < 4; i++) {
        uint64_t fh;
        assert_int_equal(open_node(b, e.nodeid, modes[i], &fh), 0);
        assert_int_equal(((struct fuse_open_out *)(void *)b->body)->open_flags, want[i]);
    }
}

static void test_create_write_read(void **state)
{
    struct bench *b = *state;
    uint64_t node;
    uint64_t fh = create(b, ROOT, "new", &node);
    assert_int_equal(write_at(b, fh, 0, "abcdef", 6), 0);
    assert_int_equal(write_at(b, fh, 3, "XY", 2), 0);
    int err;
    size_t n = read_at(b, fh, 0, 100, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, 6);
    assert_memory_equal(b->body, "abcXYf", 6);
    assert_int_equal(read_at(b, fh, 6, 100, &err), 0); /* end of file */
    assert_int_equal(err, 0);
    struct fuse_attr a;
    assert_int_equal(getattr(b, node, &a), 0);
    assert_int_equal(a.mode & 07777, 0640);
    struct fuse_flush_in fl = {.fh = fh};
    call(b, FUSE_FLUSH, node, &fl, sizeof(fl), &err);
    assert_int_equal(err, 0);
    struct fuse_fsync_in fs = {.fh = fh, .fsync_flags = FUSE_FSYNC_FDATASYNC};
    call(b, FUSE_FSYNC, node, &fs, sizeof(fs), &err);
    assert_int_equal(err, 0);
    release(b, fh);
    assert_int_equal(read_at(b, fh, 0, 10, &err), 0);
    assert_int_equal(err, -EBADF);
    assert_int_equal(open_node(b, node, O_RDONLY, &fh), 0);
    read_at(b, fh, 0, 3, &err);
    assert_memory_equal(b->body, "abc", 3);
    release(b, fh);
}

/* 1 MiB written from 257 readable buffers (header, 256 pages) and read back into as many
 * writable ones, straight between the file and the buffers. */
#define BIG (256 * 4096) /* max_write: the most one request carries */
#define SEG 4096
static void test_big_multi_iovec(void **state)
{
    struct bench *b = *state;
    uint64_t fh = create(b, ROOT, "big", NULL);
    uint8_t *data = malloc(BIG), *back = malloc(BIG + 64);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (uint8_t)(i * 7 + i / 4096);
    struct fuse_in_header h = {.len = sizeof(h) + sizeof(struct fuse_write_in) + BIG,
                               .opcode = FUSE_WRITE, .unique = 77};
    struct fuse_write_in w = {.fh = fh, .size = BIG};
    uint8_t head[sizeof(h) + sizeof(w)];
    memcpy(head, &h, sizeof(h));
    memcpy(head + sizeof(h), &w, sizeof(w));
    struct iovec rd[1 + BIG / SEG];
    rd[0] = (struct iovec){head, sizeof(head)};
    for (unsigned i = 0; i < BIG / SEG; i++)
        rd[1 + i] = (struct iovec){data + i * SEG, SEG};
    struct fuse_out_header oh;
    struct fuse_write_out wo;
    uint8_t wbuf[sizeof(oh) + sizeof(wo)];
    struct iovec wr = {wbuf, sizeof(wbuf)};
    assert_int_equal(fuse_server_handle(b->srv, rd, 1 + BIG / SEG, &wr, 1), sizeof(wbuf));
    memcpy(&oh, wbuf, sizeof(oh));
    memcpy(&wo, wbuf + sizeof(oh), sizeof(wo));
    assert_int_equal(oh.error, 0);
    assert_int_equal(wo.size, BIG);

    struct fuse_read_in r = {.fh = fh, .size = BIG};
    h = (struct fuse_in_header){.len = sizeof(h) + sizeof(r), .opcode = FUSE_READ, .unique = 78};
    memcpy(head, &h, sizeof(h));
    memcpy(head + sizeof(h), &r, sizeof(r));
    struct iovec rrd = {head, sizeof(h) + sizeof(r)};
    struct iovec rwr[1 + BIG / SEG];
    rwr[0] = (struct iovec){&oh, sizeof(oh)};
    for (unsigned i = 0; i < BIG / SEG; i++)
        rwr[1 + i] = (struct iovec){back + i * SEG, SEG};
    memset(back + BIG, 0xaa, 64);
    assert_int_equal(fuse_server_handle(b->srv, &rrd, 1, rwr, 1 + BIG / SEG), sizeof(oh) + BIG);
    assert_int_equal(oh.error, 0);
    assert_int_equal(oh.len, sizeof(oh) + BIG);
    assert_memory_equal(back, data, BIG);
    assert_int_equal(back[BIG], 0xaa);
    release(b, fh);
    free(data);
    free(back);
}

static void test_setattr(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "0123456789");
    uint64_t node = lookup_ok(b, ROOT, "f");
    struct fuse_setattr_in in = {.valid = FATTR_MODE | FATTR_SIZE | FATTR_ATIME | FATTR_MTIME,
                                 .mode = 0600, .size = 4, .atime = 1000, .mtime = 2000,
                                 .mtimensec = 5};
    int err;
    call(b, FUSE_SETATTR, node, &in, sizeof(in), &err);
    assert_int_equal(err, 0);
    struct fuse_attr_out *o = (void *)b->body;
    assert_int_equal(o->attr.mode & 07777, 0600);
    assert_int_equal(o->attr.size, 4);
    assert_int_equal(o->attr.atime, 1000);
    assert_int_equal(o->attr.mtime, 2000);
    assert_int_equal(o->attr.mtimensec, 5);
    /* Through an open handle, and times set to now. */
    uint64_t fh;
    assert_int_equal(open_node(b, node, O_RDWR, &fh), 0);
    in = (struct fuse_setattr_in){.valid = FATTR_SIZE | FATTR_FH | FATTR_MTIME_NOW | FATTR_MTIME,
                                  .fh = fh, .size = 100};
    call(b, FUSE_SETATTR, node, &in, sizeof(in), &err);
    assert_int_equal(err, 0);
    assert_int_equal(o->attr.size, 100);
    assert_true(o->attr.mtime > 2000);
    release(b, fh);
    in = (struct fuse_setattr_in){.valid = FATTR_SIZE, .size = 1};
    call(b, FUSE_SETATTR, ROOT, &in, sizeof(in), &err);
    assert_int_equal(err, -EISDIR);
}

static void test_statfs_fallocate_lseek_copy(void **state)
{
    struct bench *b = *state;
    int err;
    call(b, FUSE_STATFS, ROOT, NULL, 0, &err);
    assert_int_equal(err, 0);
    assert_true(((struct fuse_statfs_out *)(void *)b->body)->st.bsize > 0);

    uint64_t node;
    uint64_t fh = create(b, ROOT, "sparse", &node);
    struct fuse_fallocate_in fa = {.fh = fh, .offset = 0, .length = 8192};
    call(b, FUSE_FALLOCATE, node, &fa, sizeof(fa), &err);
    assert_int_equal(err, 0);
    struct fuse_attr a;
    getattr(b, node, &a);
    assert_int_equal(a.size, 8192);
    assert_int_equal(write_at(b, fh, 0, "data", 4), 0);

    struct fuse_lseek_in ls = {.fh = fh, .offset = 0, .whence = SEEK_DATA};
    call(b, FUSE_LSEEK, node, &ls, sizeof(ls), &err);
    assert_int_equal(err, 0);
    assert_int_equal(((struct fuse_lseek_out *)(void *)b->body)->offset, 0);
    ls.whence = SEEK_HOLE;
    call(b, FUSE_LSEEK, node, &ls, sizeof(ls), &err);
    assert_int_equal(err, 0);
    assert_true(((struct fuse_lseek_out *)(void *)b->body)->offset <= 8192);
    ls.whence = SEEK_SET;
    call(b, FUSE_LSEEK, node, &ls, sizeof(ls), &err);
    assert_int_equal(err, -EINVAL);

    uint64_t node2;
    uint64_t fh2 = create(b, ROOT, "copy", &node2);
    struct fuse_copy_file_range_in cp = {.fh_in = fh, .off_in = 0, .nodeid_out = node2,
                                         .fh_out = fh2, .off_out = 10, .len = 4};
    call(b, FUSE_COPY_FILE_RANGE, node, &cp, sizeof(cp), &err);
    assert_int_equal(err, 0);
    assert_int_equal(((struct fuse_write_out *)(void *)b->body)->size, 4);
    size_t n = read_at(b, fh2, 10, 100, &err);
    assert_int_equal(n, 4);
    assert_memory_equal(b->body, "data", 4);
    cp.fh_out = 999;
    call(b, FUSE_COPY_FILE_RANGE, node, &cp, sizeof(cp), &err);
    assert_int_equal(err, -EBADF);
    release(b, fh);
    release(b, fh2);
}

static void test_access_readlink(void **state)
{
    struct bench *b = *state;
    struct fuse_access_in ac = {.mask = R_OK | W_OK};
    int err;
    call(b, FUSE_ACCESS, ROOT, &ac, sizeof(ac), &err);
    assert_int_equal(err, 0);
    const char *target = "some/where/../else";
    call_named(b, FUSE_SYMLINK, ROOT, "ln", 3, target);
    struct fuse_entry_out e;
    assert_int_equal(lookup(b, ROOT, "ln", &e), 0);
    assert_true(S_ISLNK(e.attr.mode));
    size_t n = call(b, FUSE_READLINK, e.nodeid, NULL, 0, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, strlen(target));
    assert_memory_equal(b->body, target, n);
    char host[256], p[256];
    path_of(b->share, "ln", p);
    assert_int_equal(readlink(p, host, sizeof(host)), (ssize_t)strlen(target));
    call(b, FUSE_READLINK, ROOT, NULL, 0, &err); /* not a symlink */
    assert_true(err == -EINVAL || err == -ENOENT);
}

/* ---- The namespace. ---- */

static void test_mkdir_rmdir_unlink(void **state)
{
    struct bench *b = *state;
    struct fuse_mkdir_in md = {.mode = 0750};
    assert_int_equal(call_named(b, FUSE_MKDIR, ROOT, &md, sizeof(md), "d"), 0);
    struct fuse_entry_out *e = (void *)b->body;
    assert_true(S_ISDIR(e->attr.mode));
    assert_int_equal(e->attr.mode & 07777, 0750);
    uint64_t d = e->nodeid;
    assert_int_equal(call_named(b, FUSE_MKDIR, ROOT, &md, sizeof(md), "d"), -EEXIST);
    create(b, d, "inner", NULL);
    assert_int_equal(call_named(b, FUSE_RMDIR, ROOT, NULL, 0, "d"), -ENOTEMPTY);
    assert_int_equal(call_named(b, FUSE_UNLINK, d, NULL, 0, "inner"), 0);
    assert_int_equal(lookup(b, d, "inner", NULL), -ENOENT);
    assert_int_equal(call_named(b, FUSE_RMDIR, ROOT, NULL, 0, "d"), 0);
    assert_false(host_exists(b->share, "d"));
    struct fuse_mknod_in mn = {.mode = S_IFIFO | 0600};
    assert_int_equal(call_named(b, FUSE_MKNOD, ROOT, &mn, sizeof(mn), "fifo"), 0);
    assert_true(S_ISFIFO(((struct fuse_entry_out *)(void *)b->body)->attr.mode));
    uint64_t fh;
    assert_int_equal(open_node(b, lookup_ok(b, ROOT, "fifo"), O_RDONLY, &fh), -ENXIO);
}

static int rename2(struct bench *b, uint64_t dir, const char *from, uint64_t newdir,
                   const char *to, uint32_t flags)
{
    char names[128];
    size_t l1 = strlen(from) + 1, l2 = strlen(to) + 1;
    memcpy(names, from, l1);
    memcpy(names + l1, to, l2);
    struct fuse_rename2_in in = {.newdir = newdir, .flags = flags};
    int err;
    call2(b, FUSE_RENAME2, dir, &in, sizeof(in), names, l1 + l2, BODY_MAX, &err);
    return err;
}

/* As root the server gives new nodes to the guest's caller (the guest checks permissions
 * against them); LINK keeps the existing owner. */
static void test_new_nodes_owned_by_caller(void **state)
{
    struct bench *b = *state;
    if (geteuid() != 0)
        skip();
    b->uid = 1234;
    b->gid = 5678;
    uint64_t node;
    release(b, create(b, ROOT, "c", &node));
    struct fuse_mkdir_in md = {.mode = 0755};
    assert_int_equal(call_named(b, FUSE_MKDIR, ROOT, &md, sizeof(md), "d"), 0);
    assert_int_equal(((struct fuse_entry_out *)(void *)b->body)->attr.uid, 1234);
    call_named(b, FUSE_SYMLINK, ROOT, "l", 2, "target");
    const char *names[] = {"c", "d", "l"};
    for (int i = 0; i < 3; i++) {
        char p[256];
        struct stat st;
        path_of(b->share, names[i], p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_uid, 1234);
        assert_int_equal(st.st_gid, 5678);
    }
    host_file(b, "h", "x");
    b->uid = 42;
    struct fuse_link_in li = {.oldnodeid = lookup_ok(b, ROOT, "h")};
    assert_int_equal(call_named(b, FUSE_LINK, ROOT, &li, sizeof(li), "h2"), 0);
    assert_int_equal(((struct fuse_entry_out *)(void *)b->body)->attr.uid, 0);
}

static void test_rename_link(void **state)
{
    struct bench *b = *state;
    host_file(b, "a", "A");
    host_file(b, "b", "B");
    char names[] = "a\0c";
    struct fuse_rename_in rn = {.newdir = ROOT};
    int err;
    call2(b, FUSE_RENAME, ROOT, &rn, sizeof(rn), names, sizeof(names), BODY_MAX, &err);
    assert_int_equal(err, 0);
    assert_false(host_exists(b->share, "a"));
    assert_true(host_exists(b->share, "c"));
    assert_int_equal(rename2(b, ROOT, "c", ROOT, "b", RENAME_NOREPLACE), -EEXIST);
    struct fuse_mkdir_in md = {.mode = 0755};
    call_named(b, FUSE_MKDIR, ROOT, &md, sizeof(md), "sub");
    uint64_t sub = ((struct fuse_entry_out *)(void *)b->body)->nodeid;
    assert_int_equal(rename2(b, ROOT, "c", sub, "moved", RENAME_NOREPLACE), 0);
    assert_int_equal(rename2(b, sub, "moved", ROOT, "b", RENAME_EXCHANGE), 0);
    assert_int_equal(rename2(b, ROOT, "b", ROOT, "x", 0x80), -EINVAL);

    uint64_t node = lookup_ok(b, ROOT, "b");
    struct fuse_link_in li = {.oldnodeid = node};
    assert_int_equal(call_named(b, FUSE_LINK, sub, &li, sizeof(li), "hard"), 0);
    struct fuse_entry_out *e = (void *)b->body;
    assert_int_equal(e->nodeid, node);
    assert_int_equal(e->attr.nlink, 2);
}

/* READDIR / READDIRPLUS of 300 entries in pages of at most 1 KiB, resumed by offset. */
static unsigned list_dir(struct bench *b, uint64_t dir, bool plus, uint8_t *seen)
{
    struct fuse_open_in oi = {0};
    int err;
    call(b, FUSE_OPENDIR, dir, &oi, sizeof(oi), &err);
    assert_int_equal(err, 0);
    uint64_t fh = ((struct fuse_open_out *)(void *)b->body)->fh;
    uint64_t off = 0;
    unsigned count = 0, pages = 0;
    for (;;) {
        struct fuse_read_in in = {.fh = fh, .offset = off, .size = 1024};
        size_t n = call(b, plus ? FUSE_READDIRPLUS : FUSE_READDIR, dir, &in, sizeof(in), &err);
        assert_int_equal(err, 0);
        assert_true(n <= 1024);
        if (!n)
            break;
        pages++;
        for (size_t pos = 0; pos < n;) {
            struct fuse_entry_out *e = (void *)(b->body + pos);
            struct fuse_dirent *d = plus ? (void *)(e + 1) : (void *)e;
            char name[256] = {0};
            memcpy(name, d->name, d->namelen);
            unsigned idx;
            if (sscanf(name, "e%u", &idx) == 1) {
                assert_true(idx < 300);
                seen[idx]++;
                count++;
                if (plus) {
                    assert_true(e->nodeid > ROOT);
                    struct fuse_forget_in fg = {.nlookup = 1};
                    call(b, FUSE_FORGET, e->nodeid, &fg, sizeof(fg), &err);
                }
            } else if (plus) {
                assert_int_equal(e->nodeid, 0); /* "." and "..": no reference */
            }
            off = d->off;
            pos += plus ? FUSE_DIRENTPLUS_SIZE((struct fuse_direntplus *)(void *)e)
                        : FUSE_DIRENT_SIZE(d);
        }
    }
    assert_true(pages > 5);
    struct fuse_release_in rel = {.fh = fh};
    call(b, FUSE_RELEASEDIR, dir, &rel, sizeof(rel), &err);
    assert_int_equal(err, 0);
    return count;
}

static void test_readdir_paged(void **state)
{
    struct bench *b = *state;
    for (int i = 0; i < 300; i++) {
        char name[16];
        snprintf(name, sizeof(name), "e%d", i);
        host_file(b, name, "x");
    }
    for (int plus = 0; plus < 2; plus++) {
        uint8_t seen[300] = {0};
        assert_int_equal(list_dir(b, ROOT, plus, seen), 300);
        for (int i = 0; i < 300; i++)
            assert_int_equal(seen[i], 1);
    }
    struct fuse_open_in oi = {0};
    int err;
    call(b, FUSE_OPENDIR, lookup_ok(b, ROOT, "e1"), &oi, sizeof(oi), &err);
    assert_int_equal(err, -ENOTDIR);
}

static void test_forget(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "x");
    host_file(b, "g", "x");
    uint64_t f = lookup_ok(b, ROOT, "f");
    lookup_ok(b, ROOT, "f");
    struct fuse_forget_in fg = {.nlookup = 1};
    int err;
    assert_int_equal(call(b, FUSE_FORGET, f, &fg, sizeof(fg), &err), 0);
    assert_int_equal(err, 1); /* no reply */
    assert_int_equal(getattr(b, f, NULL), 0);
    call(b, FUSE_FORGET, f, &fg, sizeof(fg), &err);
    assert_int_equal(getattr(b, f, NULL), -ESTALE);
    call(b, FUSE_FORGET, ROOT, &fg, sizeof(fg), &err); /* the root stays */
    assert_int_equal(getattr(b, ROOT, NULL), 0);

    f = lookup_ok(b, ROOT, "f");
    uint64_t g = lookup_ok(b, ROOT, "g");
    struct {
        struct fuse_batch_forget_in h;
        struct fuse_forget_one one[3];
    } batch = {{.count = 3}, {{f, 1}, {g, 5}, {99999, 1}}};
    call(b, FUSE_BATCH_FORGET, 0, &batch, sizeof(batch), &err);
    assert_int_equal(getattr(b, f, NULL), -ESTALE);
    assert_int_equal(getattr(b, g, NULL), -ESTALE);
    batch.h.count = 1000000; /* more than the request holds: only what is there */
    call(b, FUSE_BATCH_FORGET, 0, &batch, sizeof(batch), &err);
    assert_int_equal(lookup_ok(b, ROOT, "f") > ROOT, 1);
}

/* A reference to a new file "f" and an open handle of it, for a session to drop. */
static uint64_t hold_file(struct bench *b, uint64_t *fh)
{
    host_file(b, "f", "x");
    uint64_t f = lookup_ok(b, ROOT, "f");
    assert_int_equal(open_node(b, f, O_RDONLY, fh), 0);
    return f;
}

/* After a new INIT: the old session's reference f and handle fh are gone, the root and new
 * lookups work. */
static void expect_old_session_gone(struct bench *b, uint64_t f, uint64_t fh)
{
    assert_int_equal(getattr(b, f, NULL), -ESTALE);
    int err;
    read_at(b, fh, 0, 1, &err);
    assert_int_equal(err, -EBADF);
    assert_int_equal(getattr(b, ROOT, NULL), 0);
    assert_true(lookup_ok(b, ROOT, "f") > ROOT);
}

/* DESTROY ends the session: references and handles are gone, the next request must be INIT. */
static void test_destroy(void **state)
{
    struct bench *b = *state;
    uint64_t fh, f = hold_file(b, &fh);
    int err;
    call(b, FUSE_DESTROY, 0, NULL, 0, &err);
    assert_int_equal(err, 0);
    assert_int_equal(getattr(b, ROOT, NULL), -EIO);
    init_server(b);
    expect_old_session_gone(b, f, fh);
}

/* A second INIT is a new connection (a guest rebooted behind vhost-user, no DESTROY): the
 * old one's references and handles are dropped, as DESTROY would. */
static void test_second_init_starts_over(void **state)
{
    struct bench *b = *state;
    uint64_t fh, f = hold_file(b, &fh);
    init_server(b);
    expect_old_session_gone(b, f, fh);
}

static void test_enosys(void **state)
{
    struct bench *b = *state;
    uint32_t codes[] = {FUSE_GETXATTR, FUSE_LISTXATTR, FUSE_SETXATTR, FUSE_REMOVEXATTR,
                        FUSE_GETLK, FUSE_IOCTL, 100, 4096, 0xffffffff};
    uint8_t args[64] = {0};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        int err;
        call(b, codes[i], ROOT, args, sizeof(args), &err);
        assert_int_equal(err, -ENOSYS);
    }
}

static void test_table_caps(void **state)
{
    struct bench *b = *state; /* 4 inodes (the root is one), 2 handles */
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "f%d", i);
        host_file(b, name, "x");
    }
    uint64_t f0 = lookup_ok(b, ROOT, "f0");
    lookup_ok(b, ROOT, "f1");
    lookup_ok(b, ROOT, "f2");
    assert_int_equal(lookup(b, ROOT, "f3", NULL), -ENFILE);
    uint64_t fh1, fh2, fh3;
    assert_int_equal(open_node(b, f0, O_RDONLY, &fh1), 0);
    assert_int_equal(open_node(b, f0, O_RDONLY, &fh2), 0);
    assert_int_equal(open_node(b, f0, O_RDONLY, &fh3), -ENFILE);
    release(b, fh1);
    assert_int_equal(open_node(b, f0, O_RDONLY, &fh3), 0);
    struct fuse_forget_in fg = {.nlookup = 1};
    int err;
    call(b, FUSE_FORGET, f0, &fg, sizeof(fg), &err);
    assert_int_equal(lookup(b, ROOT, "f3", NULL), 0);
}

/* ---- Read-only shares. ---- */

static void test_read_only(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "data");
    uint64_t f = lookup_ok(b, ROOT, "f");
    uint8_t args[256] = {0};
    memcpy(args + 64, "name\0other", 11); /* names after any op's fixed arguments */
    uint32_t mutating[] = {FUSE_SETATTR, FUSE_CREATE, FUSE_WRITE, FUSE_MKDIR, FUSE_MKNOD,
                           FUSE_UNLINK, FUSE_RMDIR, FUSE_RENAME, FUSE_RENAME2, FUSE_LINK,
                           FUSE_SYMLINK, FUSE_FALLOCATE, FUSE_COPY_FILE_RANGE, FUSE_SETXATTR,
                           FUSE_REMOVEXATTR};
    for (size_t i = 0; i < sizeof(mutating) / sizeof(mutating[0]); i++) {
        int err;
        call(b, mutating[i], f, args, sizeof(args), &err);
        assert_int_equal(err, -EROFS);
    }
    uint64_t fh;
    assert_int_equal(open_node(b, f, O_WRONLY, &fh), -EROFS);
    assert_int_equal(open_node(b, f, O_RDONLY | O_TRUNC, &fh), -EROFS);
    assert_int_equal(open_node(b, f, O_RDONLY, &fh), 0);
    int err;
    assert_int_equal(read_at(b, fh, 0, 10, &err), 4);
    struct fuse_access_in ac = {.mask = W_OK};
    call(b, FUSE_ACCESS, f, &ac, sizeof(ac), &err);
    assert_int_equal(err, -EROFS);
    char p[256];
    struct stat st;
    path_of(b->share, "f", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 4);
}

/* ---- Confinement. ---- */

static void plant_symlink(struct bench *b, const char *target, const char *name)
{
    char p[256];
    path_of(b->share, name, p);
    assert_int_equal(symlink(target, p), 0);
}

static void assert_secret_intact(struct bench *b)
{
    char p[256], buf[64] = {0};
    path_of(b->outside, "secret", p);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)strlen(SECRET));
    close(fd);
    assert_string_equal(buf, SECRET);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
}

/* Symlinks planted in the share (absolute, relative with '..', to files and directories) are
 * returned as symlinks and never followed on the host. */
static void test_planted_symlinks(void **state)
{
    struct bench *b = *state;
    char abs_secret[256];
    path_of(b->outside, "secret", abs_secret);
    plant_symlink(b, abs_secret, "abs");
    plant_symlink(b, "../outside/secret", "rel");
    plant_symlink(b, b->outside, "absdir");
    plant_symlink(b, "../outside", "reldir");
    plant_symlink(b, "/etc/shadow", "shadow");
    const char *files[] = {"abs", "rel", "shadow"};
    for (int i = 0; i < 3; i++) {
        struct fuse_entry_out e;
        assert_int_equal(lookup(b, ROOT, files[i], &e), 0);
        assert_true(S_ISLNK(e.attr.mode));
        uint64_t fh;
        assert_int_equal(open_node(b, e.nodeid, O_RDONLY, &fh), -ELOOP);
        assert_int_equal(open_node(b, e.nodeid, O_RDWR, &fh), -ELOOP);
        struct fuse_setattr_in sa = {.valid = FATTR_MODE, .mode = 0777};
        int err;
        call(b, FUSE_SETATTR, e.nodeid, &sa, sizeof(sa), &err);
        assert_int_equal(err, -EOPNOTSUPP);
        sa = (struct fuse_setattr_in){.valid = FATTR_SIZE, .size = 0};
        call(b, FUSE_SETATTR, e.nodeid, &sa, sizeof(sa), &err);
        assert_int_equal(err, -EINVAL);
        struct fuse_open_in oi = {0};
        call(b, FUSE_OPENDIR, e.nodeid, &oi, sizeof(oi), &err);
        assert_int_equal(err, -ENOTDIR);
    }
    const char *dirs[] = {"absdir", "reldir"};
    for (int i = 0; i < 2; i++) {
        uint64_t d = lookup_ok(b, ROOT, dirs[i]);
        assert_int_not_equal(lookup(b, d, "secret", NULL), 0);
        struct fuse_create_in ci = {.flags = O_RDWR, .mode = 0644};
        assert_int_not_equal(call_named(b, FUSE_CREATE, d, &ci, sizeof(ci), "planted"), 0);
        struct fuse_mkdir_in md = {.mode = 0755};
        assert_int_not_equal(call_named(b, FUSE_MKDIR, d, &md, sizeof(md), "planted"), 0);
        assert_int_not_equal(call_named(b, FUSE_UNLINK, d, NULL, 0, "secret"), 0);
        assert_int_not_equal(rename2(b, d, "secret", ROOT, "stolen", 0), 0);
        struct fuse_open_in oi = {0};
        int err;
        call(b, FUSE_OPENDIR, d, &oi, sizeof(oi), &err);
        assert_int_not_equal(err, 0);
    }
    /* CREATE over a planted symlink must not create or truncate its target. */
    struct fuse_create_in ci = {.flags = O_RDWR | O_TRUNC, .mode = 0644};
    assert_int_not_equal(call_named(b, FUSE_CREATE, ROOT, &ci, sizeof(ci), "abs"), 0);
    assert_false(host_exists(b->outside, "planted"));
    assert_false(host_exists(b->share, "stolen"));
    assert_secret_intact(b);
}

static void test_bad_names(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "x");
    const char *bad[] = {"..", ".", "", "../outside", "a/b", "/etc", "f/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lookup(b, ROOT, bad[i], NULL), -EINVAL);
        struct fuse_create_in ci = {.flags = O_RDWR, .mode = 0644};
        assert_int_equal(call_named(b, FUSE_CREATE, ROOT, &ci, sizeof(ci), bad[i]), -EINVAL);
        assert_int_equal(call_named(b, FUSE_UNLINK, ROOT, NULL, 0, bad[i]), -EINVAL);
        assert_int_equal(rename2(b, ROOT, "f", ROOT, bad[i], 0), -EINVAL);
    }
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(lookup(b, ROOT, longname, NULL), -ENAMETOOLONG);
    /* Renames and links only reach directories of the share. */
    assert_int_equal(rename2(b, ROOT, "f", 4242, "x", 0), -ESTALE);
    struct fuse_link_in li = {.oldnodeid = 4242};
    assert_int_equal(call_named(b, FUSE_LINK, ROOT, &li, sizeof(li), "x"), -ESTALE);
    /* Device nodes would reach host devices. */
    struct fuse_mknod_in mn = {.mode = S_IFBLK | 0600, .rdev = makedev(8, 0)};
    assert_int_equal(call_named(b, FUSE_MKNOD, ROOT, &mn, sizeof(mn), "disk"), -EPERM);
    mn.mode = S_IFCHR | 0600;
    assert_int_equal(call_named(b, FUSE_MKNOD, ROOT, &mn, sizeof(mn), "mem"), -EPERM);
    assert_true(host_exists(b->share, "f"));
    assert_secret_intact(b);
}

/* ---- Malformed requests. ---- */

static size_t raw(struct bench *b, const void *req, size_t len, size_t room, int *err)
{
    static uint8_t out[256];
    struct iovec rd = {(void *)req, len}, wr = {out, room};
    memset(out, 0x5a, sizeof(out));
    size_t n = fuse_server_handle(b->srv, &rd, 1, &wr, 1);
    assert_true(n <= room);
    for (size_t i = room; i < sizeof(out); i++)
        assert_int_equal(out[i], 0x5a);
    struct fuse_out_header oh = {0};
    if (n >= sizeof(oh))
        memcpy(&oh, out, sizeof(oh));
    *err = oh.error;
    return n;
}

static void test_malformed(void **state)
{
    struct bench *b = *state;
    host_file(b, "f", "x");
    uint8_t req[256] = {0};
    struct fuse_in_header h = {.len = 60, .opcode = FUSE_LOOKUP, .unique = 5, .nodeid = ROOT};
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), "f\0", 2);
    int err;
    /* Truncated header. */
    assert_int_equal(raw(b, req, 20, 200, &err), sizeof(struct fuse_out_header));
    assert_int_equal(err, -EINVAL);
    /* Length past the buffer, and shorter than a header. */
    assert_int_equal(raw(b, req, 50, 200, &err), sizeof(struct fuse_out_header));
    assert_int_equal(err, -EINVAL);
    h.len = 10;
    memcpy(req, &h, sizeof(h));
    raw(b, req, 60, 200, &err);
    assert_int_equal(err, -EINVAL);
    /* A name without its NUL within the request's length. */
    h.len = sizeof(h) + 1;
    memcpy(req, &h, sizeof(h));
    raw(b, req, 60, 200, &err);
    assert_int_equal(err, -EINVAL);
    /* No room for a reply header: nothing written. */
    h.len = sizeof(h) + 2;
    memcpy(req, &h, sizeof(h));
    assert_int_equal(raw(b, req, sizeof(h) + 2, 10, &err), 0);
    /* Room for a header but not for the entry: refused before the lookup takes a reference. */
    raw(b, req, sizeof(h) + 2, 16, &err);
    assert_int_equal(err, -EINVAL);
    /* Fixed arguments missing. */
    h = (struct fuse_in_header){.len = sizeof(h) + 4, .opcode = FUSE_READ, .unique = 6};
    memcpy(req, &h, sizeof(h));
    raw(b, req, sizeof(h) + 4, 200, &err);
    assert_int_equal(err, -EINVAL);
    /* WRITE claiming more data than it carries; READ asking for 4 GiB. */
    uint64_t fh;
    assert_int_equal(open_node(b, lookup_ok(b, ROOT, "f"), O_RDWR, &fh), 0);
    struct fuse_write_in w = {.fh = fh, .size = 0xffffffff};
    call2(b, FUSE_WRITE, 0, &w, sizeof(w), "abc", 3, 100, &err);
    assert_int_equal(err, -EINVAL);
    struct fuse_read_in r = {.fh = fh, .size = 0xffffffff};
    assert_int_equal(call2(b, FUSE_READ, 0, &r, sizeof(r), NULL, 0, 100, &err), 1);
    r.offset = UINT64_MAX;
    call2(b, FUSE_READ, 0, &r, sizeof(r), NULL, 0, 100, &err);
    assert_int_equal(err, -EINVAL);
    /* Wrong handle kinds. */
    struct fuse_read_in rd = {.fh = fh, .size = 4096};
    call(b, FUSE_READDIR, ROOT, &rd, sizeof(rd), &err);
    assert_int_equal(err, -EBADF);
    rd.fh = 1u << 30;
    read_at(b, rd.fh, 0, 10, &err);
    assert_int_equal(err, -EBADF);
    /* A FORGET needs no writable part and never gets a reply, even when malformed. */
    h = (struct fuse_in_header){.len = 200, .opcode = FUSE_BATCH_FORGET, .unique = 8};
    memcpy(req, &h, sizeof(h));
    assert_int_equal(raw(b, req, 60, 0, &err), 0);
    h.len = sizeof(h) + 4;
    memcpy(req, &h, sizeof(h));
    assert_int_equal(raw(b, req, sizeof(h) + 4, 200, &err), 0);
    /* A symlink target without NUL. */
    char nonul[] = {'l', 0, 'x', 'y'};
    call(b, FUSE_SYMLINK, ROOT, nonul, sizeof(nonul), &err);
    assert_int_equal(err, -EINVAL);
    assert_false(host_exists(b->share, "l"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_init),
        T(test_requests_before_init_fail),
        T(test_new_errors),
        T(test_lookup_getattr),
        T(test_create_write_read),
        T(test_open_flags_direct_io_for_writers),
        T(test_cache_modes),
        T(test_big_multi_iovec),
        T(test_setattr),
        T(test_statfs_fallocate_lseek_copy),
        T(test_access_readlink),
        T(test_mkdir_rmdir_unlink),
        T(test_new_nodes_owned_by_caller),
        T(test_rename_link),
        T(test_readdir_paged),
        T(test_forget),
        T(test_destroy),
        T(test_second_init_starts_over),
        T(test_enosys),
        cmocka_unit_test_setup_teardown(test_table_caps, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup_ro, teardown),
        T(test_planted_symlinks),
        T(test_bad_names),
        T(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
