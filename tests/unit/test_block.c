/*
 * The raw image backend on real files: every operation through io_uring and through the
 * synchronous fallback (COVE_BLOCK_NO_URING=1), with results delivered only by
 * block_process_completions(). Files live in /var/tmp (a disk file system, so O_DIRECT and
 * fallocate behave as on an image store) and in /dev/shm (tmpfs: no ZERO_RANGE there, which
 * exercises the write-zeros fallback).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/raw.h"

#define KIB 1024u
#define MAX_OPS 512

/* What the done callbacks saw. */
struct results {
    unsigned calls;
    int result[MAX_OPS];
    unsigned count[MAX_OPS];
};

struct slot {
    struct results *r;
    unsigned index;
};

static void on_done(void *opaque, int result)
{
    struct slot *s = opaque;
    s->r->calls++;
    s->r->result[s->index] = result;
    s->r->count[s->index]++;
}

/* A fresh file of size bytes filled with byte value fill, in dir. */
static char *make_file(const char *dir, uint64_t size, int fill)
{
    char *path;
    assert_true(asprintf(&path, "%s/cove-block-XXXXXX", dir) > 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t buf[64 * KIB];
    memset(buf, fill, sizeof(buf));
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
        assert_int_equal(pwrite(fd, buf, n, (off_t)done), (ssize_t)n);
        done += n;
    }
    assert_int_equal(fsync(fd), 0);
    close(fd);
    return path;
}

static void remove_file(char *path)
{
    unlink(path);
    free(path);
}

static void set_uring(bool uring)
{
    if (uring)
        unsetenv("COVE_BLOCK_NO_URING");
    else
        setenv("COVE_BLOCK_NO_URING", "1", 1);
}

static struct block_backend *open_ok(const char *path, bool read_only, bool direct, bool uring)
{
    char error[256] = "";
    set_uring(uring);
    struct block_backend *b = block_open(path, read_only, direct, error, sizeof(error));
    if (!b)
        fail_msg("block_open: %s", error);
    if (!uring)
        assert_false(block_uses_uring(b));
    else if (!block_uses_uring(b))
        print_message("note: io_uring unavailable here, the io_uring cases ran the fallback\n");
    return b;
}

/* Processes completions until `want` callbacks in all have run. */
static void wait_calls(struct block_backend *b, struct results *r, unsigned want)
{
    for (int rounds = 0; r->calls < want; rounds++) {
        if (rounds > 10000)
            fail_msg("only %u of %u completions arrived", r->calls, want);
        struct pollfd p = {.fd = block_event_fd(b), .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            fail_msg("event fd not readable: %u of %u completions", r->calls, want);
        block_process_completions(b);
    }
    assert_int_equal(r->calls, want);
}

static struct block_op rw_op(enum block_op_kind kind, uint64_t offset, const struct iovec *iov,
                             unsigned iovcnt, struct slot *s)
{
    return (struct block_op){.kind = kind, .offset = offset, .iov = iov, .iovcnt = iovcnt,
                             .done = on_done, .opaque = s};
}

static struct block_op range_op(enum block_op_kind kind, uint64_t offset, uint64_t len,
                                unsigned flags, struct slot *s)
{
    return (struct block_op){.kind = kind, .offset = offset, .len = len, .flags = flags,
                             .done = on_done, .opaque = s};
}

/* Runs one operation to completion and returns its result. */
static int run_op(struct block_backend *b, const struct block_op *op_in)
{
    struct results r = {0};
    struct slot s = {&r, 0};
    struct block_op op = *op_in;
    op.done = on_done;
    op.opaque = &s;
    int rc = block_submit(b, &op);
    if (rc)
        return rc;
    assert_int_equal(r.calls, 0); /* never from inside block_submit */
    wait_calls(b, &r, 1);
    return r.result[0];
}

static int read_at(struct block_backend *b, uint64_t offset, void *buf, size_t len)
{
    struct iovec v = {buf, len};
    struct block_op op = rw_op(BLOCK_OP_READ, offset, &v, 1, NULL);
    return run_op(b, &op);
}

static int write_at(struct block_backend *b, uint64_t offset, const void *buf, size_t len)
{
    struct iovec v = {(void *)buf, len};
    struct block_op op = rw_op(BLOCK_OP_WRITE, offset, &v, 1, NULL);
    return run_op(b, &op);
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t value)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != value)
            return false;
    return true;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 9));
}

/* ---- write then read back ---- */

static void write_read(bool uring)
{
    char *path = make_file("/var/tmp", 64 * KIB, 0xee);
    struct block_backend *b = open_ok(path, false, false, uring);
    assert_int_equal(block_size(b), 64 * KIB);
    assert_false(block_read_only(b));

    static uint8_t data[12 * KIB], back[12 * KIB];
    fill_pattern(data, sizeof(data), 1);
    /* Uneven pieces on both sides: the backend must not care how buffers are cut. */
    struct iovec wv[3] = {{data, 1000}, {data + 1000, 5000}, {data + 6000, 6288}};
    struct block_op w = rw_op(BLOCK_OP_WRITE, 8 * KIB, wv, 3, NULL);
    assert_int_equal(run_op(b, &w), (int)sizeof(data));

    memset(back, 0, sizeof(back));
    struct iovec rv[2] = {{back, 7}, {back + 7, sizeof(back) - 7}};
    struct block_op r = rw_op(BLOCK_OP_READ, 8 * KIB, rv, 2, NULL);
    assert_int_equal(run_op(b, &r), (int)sizeof(back));
    assert_memory_equal(back, data, sizeof(data));

    /* Untouched bytes around it keep their old contents. */
    uint8_t edge[512];
    assert_int_equal(read_at(b, 7 * KIB + 512, edge, sizeof(edge)), 512);
    assert_true(all_bytes(edge, sizeof(edge), 0xee));
    assert_int_equal(read_at(b, 20 * KIB, edge, sizeof(edge)), 512);
    assert_true(all_bytes(edge, sizeof(edge), 0xee));
    block_close(b);

    /* And it is really in the file. */
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, back, sizeof(back), 8 * KIB), (ssize_t)sizeof(back));
    assert_memory_equal(back, data, sizeof(data));
    close(fd);
    remove_file(path);
}

static void test_write_read_uring(void **state)
{
    (void)state;
    write_read(true);
}

static void test_write_read_fallback(void **state)
{
    (void)state;
    write_read(false);
}

/* ---- many requests at once, more than the ring holds ---- */

#define MANY 300

static void many_in_flight(bool uring)
{
    char *path = make_file("/var/tmp", MANY * 4 * KIB, 0);
    struct block_backend *b = open_ok(path, false, false, uring);
    static uint8_t bufs[MANY][4 * KIB];
    struct iovec iov[MANY];
    struct results res = {0};
    struct slot slots[MANY];

    for (unsigned i = 0; i < MANY; i++) {
        fill_pattern(bufs[i], sizeof(bufs[i]), i);
        iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
        slots[i] = (struct slot){&res, i};
        struct block_op op = rw_op(BLOCK_OP_WRITE, (uint64_t)i * 4 * KIB, &iov[i], 1, &slots[i]);
        assert_int_equal(block_submit(b, &op), 0);
    }
    assert_int_equal(res.calls, 0);
    wait_calls(b, &res, MANY);
    for (unsigned i = 0; i < MANY; i++) {
        assert_int_equal(res.count[i], 1);
        assert_int_equal(res.result[i], 4 * KIB);
    }

    memset(bufs, 0, sizeof(bufs));
    memset(&res, 0, sizeof(res));
    for (unsigned i = 0; i < MANY; i++) {
        struct block_op op = rw_op(BLOCK_OP_READ, (uint64_t)i * 4 * KIB, &iov[i], 1, &slots[i]);
        assert_int_equal(block_submit(b, &op), 0);
    }
    wait_calls(b, &res, MANY);
    for (unsigned i = 0; i < MANY; i++) {
        uint8_t want[4 * KIB];
        fill_pattern(want, sizeof(want), i);
        assert_int_equal(res.result[i], 4 * KIB);
        assert_memory_equal(bufs[i], want, sizeof(want));
    }
    block_close(b);
    remove_file(path);
}

static void test_many_in_flight_uring(void **state)
{
    (void)state;
    many_in_flight(true);
}

static void test_many_in_flight_fallback(void **state)
{
    (void)state;
    many_in_flight(false);
}

/* ---- flush, FUA, discard, write-zeroes ---- */

static void flush_and_fua(bool uring)
{
    char *path = make_file("/var/tmp", 16 * KIB, 0);
    struct block_backend *b = open_ok(path, false, false, uring);
    struct block_op flush = {.kind = BLOCK_OP_FLUSH};
    assert_int_equal(run_op(b, &flush), 0);

    uint8_t data[4 * KIB], back[4 * KIB];
    fill_pattern(data, sizeof(data), 9);
    struct iovec v = {data, sizeof(data)};
    struct block_op fua = rw_op(BLOCK_OP_WRITE, 4 * KIB, &v, 1, NULL);
    fua.flags = BLOCK_OP_F_FUA;
    assert_int_equal(run_op(b, &fua), (int)sizeof(data));
    assert_int_equal(read_at(b, 4 * KIB, back, sizeof(back)), (int)sizeof(back));
    assert_memory_equal(back, data, sizeof(data));
    block_close(b);
    remove_file(path);
}

static void test_flush_uring(void **state)
{
    (void)state;
    flush_and_fua(true);
}

static void test_flush_fallback(void **state)
{
    (void)state;
    flush_and_fua(false);
}

static blkcnt_t blocks_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_blocks;
}

#define RANGE_FILE (1024 * KIB)
#define RANGE_OFF (256 * KIB)
#define RANGE_LEN (512 * KIB)

/* The range reads as zeros and what surrounds it is intact. */
static void check_zeroed(struct block_backend *b)
{
    static uint8_t buf[RANGE_FILE];
    assert_int_equal(read_at(b, 0, buf, sizeof(buf)), (int)sizeof(buf));
    assert_true(all_bytes(buf, RANGE_OFF, 0x5a));
    assert_true(all_bytes(buf + RANGE_OFF, RANGE_LEN, 0));
    assert_true(all_bytes(buf + RANGE_OFF + RANGE_LEN, RANGE_FILE - RANGE_OFF - RANGE_LEN, 0x5a));
}

static void discard(bool uring)
{
    char *path = make_file("/var/tmp", RANGE_FILE, 0x5a);
    blkcnt_t before = blocks_of(path);
    struct block_backend *b = open_ok(path, false, false, uring);
    struct block_op op = range_op(BLOCK_OP_DISCARD, RANGE_OFF, RANGE_LEN, 0, NULL);
    assert_int_equal(run_op(b, &op), 0);
    check_zeroed(b);
    assert_true(blocks_of(path) < before);
    block_close(b);
    remove_file(path);
}

static void test_discard_uring(void **state)
{
    (void)state;
    discard(true);
}

static void test_discard_fallback(void **state)
{
    (void)state;
    discard(false);
}

/* Write-zeroes in dir: without unmap the blocks stay allocated, with unmap they may go. */
static void write_zeroes(const char *dir, bool uring, unsigned flags)
{
    char *path = make_file(dir, RANGE_FILE, 0x5a);
    blkcnt_t before = blocks_of(path);
    struct block_backend *b = open_ok(path, false, false, uring);
    struct block_op op = range_op(BLOCK_OP_WRITE_ZEROES, RANGE_OFF, RANGE_LEN, flags, NULL);
    assert_int_equal(run_op(b, &op), 0);
    check_zeroed(b);
    if (flags & BLOCK_OP_F_MAY_UNMAP)
        assert_true(blocks_of(path) < before);
    else
        assert_true(blocks_of(path) >= before);
    block_close(b);
    remove_file(path);
}

static void test_write_zeroes_uring(void **state)
{
    (void)state;
    write_zeroes("/var/tmp", true, 0);
    write_zeroes("/var/tmp", true, BLOCK_OP_F_MAY_UNMAP);
    write_zeroes("/var/tmp", true, BLOCK_OP_F_FUA);
}

static void test_write_zeroes_fallback(void **state)
{
    (void)state;
    write_zeroes("/var/tmp", false, 0);
    write_zeroes("/var/tmp", false, BLOCK_OP_F_MAY_UNMAP);
}

/* tmpfs has no ZERO_RANGE: the backend falls back to writing zeros. */
static void test_write_zeroes_without_zero_range(void **state)
{
    (void)state;
    if (access("/dev/shm", W_OK) != 0) {
        print_message("note: no writable /dev/shm, using /var/tmp\n");
        write_zeroes("/var/tmp", true, 0);
        return;
    }
    write_zeroes("/dev/shm", true, 0);
    write_zeroes("/dev/shm", false, 0);
    write_zeroes("/dev/shm", true, BLOCK_OP_F_MAY_UNMAP);
}

/* ---- reads past end of file, range checks, read-only ---- */

static void read_past_eof(bool uring)
{
    char *path = make_file("/var/tmp", 16 * KIB, 0x77);
    struct block_backend *b = open_ok(path, false, false, uring);
    /* Someone shrinks the image under us: the missing part reads as zeros. */
    assert_int_equal(truncate(path, 10 * KIB), 0);
    static uint8_t buf[8 * KIB];
    memset(buf, 0xff, sizeof(buf));
    struct iovec v[2] = {{buf, 3 * KIB}, {buf + 3 * KIB, 5 * KIB}};
    struct block_op op = rw_op(BLOCK_OP_READ, 8 * KIB, v, 2, NULL);
    assert_int_equal(run_op(b, &op), (int)sizeof(buf));
    assert_true(all_bytes(buf, 2 * KIB, 0x77));
    assert_true(all_bytes(buf + 2 * KIB, 6 * KIB, 0));
    block_close(b);
    remove_file(path);
}

static void test_read_past_eof_uring(void **state)
{
    (void)state;
    read_past_eof(true);
}

static void test_read_past_eof_fallback(void **state)
{
    (void)state;
    read_past_eof(false);
}

static void test_rejects_bad_ops(void **state)
{
    (void)state;
    char *path = make_file("/var/tmp", 16 * KIB, 0);
    struct block_backend *b = open_ok(path, false, false, true);
    struct results res = {0};
    struct slot s = {&res, 0};
    uint8_t buf[512];
    struct iovec v = {buf, sizeof(buf)};
    struct block_op past = rw_op(BLOCK_OP_WRITE, 16 * KIB, &v, 1, &s);
    assert_int_equal(block_submit(b, &past), -EINVAL);
    struct block_op huge = rw_op(BLOCK_OP_READ, UINT64_MAX - 100, &v, 1, &s);
    assert_int_equal(block_submit(b, &huge), -EINVAL);
    struct block_op wrap = range_op(BLOCK_OP_DISCARD, 512, UINT64_MAX, 0, &s);
    assert_int_equal(block_submit(b, &wrap), -EINVAL);
    struct block_op no_cb = rw_op(BLOCK_OP_READ, 0, &v, 1, &s);
    no_cb.done = NULL;
    assert_int_equal(block_submit(b, &no_cb), -EINVAL);
    struct block_op too_many = rw_op(BLOCK_OP_READ, 0, &v, BLOCK_MAX_IOV + 1, &s);
    assert_int_equal(block_submit(b, &too_many), -EINVAL);
    struct block_op bad_kind = rw_op((enum block_op_kind)99, 0, &v, 1, &s);
    assert_int_equal(block_submit(b, &bad_kind), -EINVAL);
    /* Nothing was accepted, so nothing completes. */
    assert_int_equal(block_process_completions(b), 0);
    assert_int_equal(res.calls, 0);

    /* Zero-length work still completes through the event fd. */
    struct block_op empty = rw_op(BLOCK_OP_READ, 16 * KIB, NULL, 0, NULL);
    assert_int_equal(run_op(b, &empty), 0);
    struct block_op nothing = range_op(BLOCK_OP_DISCARD, 0, 0, 0, NULL);
    assert_int_equal(run_op(b, &nothing), 0);
    block_close(b);
    remove_file(path);
}

static void test_read_only_refuses_writes(void **state)
{
    (void)state;
    char *path = make_file("/var/tmp", 16 * KIB, 0x33);
    struct block_backend *b = open_ok(path, true, false, true);
    assert_true(block_read_only(b));
    struct results res = {0};
    struct slot s = {&res, 0};
    uint8_t buf[512] = {0};
    struct iovec v = {buf, sizeof(buf)};
    struct block_op w = rw_op(BLOCK_OP_WRITE, 0, &v, 1, &s);
    assert_int_equal(block_submit(b, &w), -EROFS);
    struct block_op d = range_op(BLOCK_OP_DISCARD, 0, 4 * KIB, 0, &s);
    assert_int_equal(block_submit(b, &d), -EROFS);
    struct block_op z = range_op(BLOCK_OP_WRITE_ZEROES, 0, 4 * KIB, 0, &s);
    assert_int_equal(block_submit(b, &z), -EROFS);
    /* Even out of range: the refusal comes before looking at anything else. */
    struct block_op far = rw_op(BLOCK_OP_WRITE, 1u << 30, &v, 1, &s);
    assert_int_equal(block_submit(b, &far), -EROFS);
    assert_int_equal(block_process_completions(b), 0);
    assert_int_equal(res.calls, 0);

    /* Reads and flushes work. */
    assert_int_equal(read_at(b, 0, buf, sizeof(buf)), 512);
    assert_true(all_bytes(buf, sizeof(buf), 0x33));
    struct block_op flush = {.kind = BLOCK_OP_FLUSH};
    assert_int_equal(run_op(b, &flush), 0);
    block_close(b);

    uint8_t check[16 * KIB];
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, check, sizeof(check), 0), (ssize_t)sizeof(check));
    close(fd);
    assert_true(all_bytes(check, sizeof(check), 0x33));
    remove_file(path);
}

/* ---- callbacks, drain, close ---- */

struct chain_state {
    struct block_backend *b;
    struct iovec v;
    unsigned left;
    unsigned calls;
    int last;
    unsigned in_callback_completions;
};

/* Each completion submits the next write: callbacks may submit. */
static void chain_done(void *opaque, int result)
{
    struct chain_state *c = opaque;
    c->calls++;
    c->last = result;
    if (c->left) {
        c->left--;
        struct block_op op = {.kind = BLOCK_OP_WRITE, .offset = (uint64_t)c->left * 512,
                              .iov = &c->v, .iovcnt = 1, .done = chain_done, .opaque = c};
        assert_int_equal(block_submit(c->b, &op), 0);
    }
}

static void test_callback_submits(void **state)
{
    (void)state;
    for (int uring = 0; uring < 2; uring++) {
        char *path = make_file("/var/tmp", 16 * KIB, 0);
        uint8_t buf[512];
        memset(buf, 0x44, sizeof(buf));
        struct chain_state c = {.v = {buf, sizeof(buf)}, .left = 8};
        c.b = open_ok(path, false, false, uring);
        struct block_op op = {.kind = BLOCK_OP_WRITE, .offset = 8 * 512, .iov = &c.v,
                              .iovcnt = 1, .done = chain_done, .opaque = &c};
        assert_int_equal(block_submit(c.b, &op), 0);
        for (int i = 0; i < 100 && c.calls < 9; i++) {
            struct pollfd p = {.fd = block_event_fd(c.b), .events = POLLIN};
            assert_int_equal(poll(&p, 1, 5000), 1);
            block_process_completions(c.b);
        }
        assert_int_equal(c.calls, 9);
        assert_int_equal(c.last, 512);
        uint8_t back[9 * 512];
        assert_int_equal(read_at(c.b, 0, back, sizeof(back)), (int)sizeof(back));
        assert_true(all_bytes(back, sizeof(back), 0x44));
        block_close(c.b);
        remove_file(path);
    }
}

static void test_drain_runs_every_callback(void **state)
{
    (void)state;
    for (int uring = 0; uring < 2; uring++) {
        char *path = make_file("/var/tmp", 256 * KIB, 0);
        struct block_backend *b = open_ok(path, false, false, uring);
        static uint8_t bufs[64][4 * KIB];
        struct iovec iov[64];
        struct results res = {0};
        struct slot slots[64];
        for (unsigned i = 0; i < 64; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
            slots[i] = (struct slot){&res, i};
            struct block_op op = rw_op(i % 2 ? BLOCK_OP_READ : BLOCK_OP_WRITE,
                                       (uint64_t)i * 4 * KIB, &iov[i], 1, &slots[i]);
            assert_int_equal(block_submit(b, &op), 0);
        }
        block_drain(b);
        assert_int_equal(res.calls, 64);
        for (unsigned i = 0; i < 64; i++)
            assert_int_equal(res.result[i], 4 * KIB);
        assert_int_equal(block_process_completions(b), 0);
        block_close(b);
        remove_file(path);
    }
}

static void test_close_with_work_in_flight(void **state)
{
    (void)state;
    for (int uring = 0; uring < 2; uring++) {
        char *path = make_file("/var/tmp", 1024 * KIB, 0);
        struct block_backend *b = open_ok(path, false, false, uring);
        static uint8_t bufs[200][4 * KIB];
        struct iovec iov[200];
        struct results res = {0};
        struct slot slots[200];
        for (unsigned i = 0; i < 200; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
            slots[i] = (struct slot){&res, i};
            struct block_op op = rw_op(BLOCK_OP_READ, (uint64_t)i * 4 * KIB, &iov[i], 1, &slots[i]);
            assert_int_equal(block_submit(b, &op), 0);
        }
        block_close(b); /* waits for the kernel, calls nobody, leaks nothing */
        assert_int_equal(res.calls, 0);
        remove_file(path);
    }
}

/* ---- O_DIRECT ---- */

static void direct_io(bool uring)
{
    char *path = make_file("/var/tmp", 2048 * KIB, 0x11);
    char error[256] = "";
    set_uring(uring);
    struct block_backend *b = block_open(path, false, true, error, sizeof(error));
    if (!b) {
        /* A file system without O_DIRECT must say so plainly. */
        char want1[512], want2[512];
        snprintf(want1, sizeof(want1),
                 "disk image '%s': cache=none (O_DIRECT) is not supported by its file system",
                 path);
        snprintf(want2, sizeof(want2),
                 "disk image '%s': cache=none (O_DIRECT) needs 512-byte direct I/O, which it "
                 "refuses", path);
        if (strcmp(error, want1) != 0 && strcmp(error, want2) != 0)
            fail_msg("unexpected O_DIRECT error: %s", error);
        remove_file(path);
        return;
    }
    uint8_t *mem;
    assert_int_equal(posix_memalign((void **)&mem, 4096, 4096 * KIB), 0);
    uint8_t *data = mem, *back = mem + 16 * KIB;
    fill_pattern(data, 8 * KIB, 3);
    /* Aligned buffers go straight to the kernel. */
    assert_int_equal(write_at(b, 8 * KIB, data, 8 * KIB), 8 * KIB);
    memset(back, 0, 8 * KIB);
    assert_int_equal(read_at(b, 8 * KIB, back, 8 * KIB), 8 * KIB);
    assert_memory_equal(back, data, 8 * KIB);

    /* Misaligned ones (as a guest may send) go through the bounce buffer, in several steps
     * when larger than it. */
    const size_t len = 600 * KIB;
    uint8_t *odd = mem + 32 * KIB + 3;
    fill_pattern(odd, len, 5);
    struct iovec wv[3] = {{odd, 1000}, {odd + 1000, 300 * KIB}, {odd + 1000 + 300 * KIB,
                                                                 len - 1000 - 300 * KIB}};
    struct block_op w = rw_op(BLOCK_OP_WRITE, 16 * KIB, wv, 3, NULL);
    assert_int_equal(run_op(b, &w), (int)len);
    uint8_t *odd_back = mem + 2048 * KIB + 1;
    struct iovec rv[2] = {{odd_back, 7}, {odd_back + 7, len - 7}};
    struct block_op r = rw_op(BLOCK_OP_READ, 16 * KIB, rv, 2, NULL);
    assert_int_equal(run_op(b, &r), (int)len);
    assert_memory_equal(odd_back, odd, len);
    block_close(b);
    free(mem);
    remove_file(path);
}

static void test_direct_io_uring(void **state)
{
    (void)state;
    direct_io(true);
}

static void test_direct_io_fallback(void **state)
{
    (void)state;
    direct_io(false);
}

/* ---- open errors ---- */

static void expect_open_error(const char *path, bool read_only, const char *what)
{
    char error[512] = "", want[512];
    snprintf(want, sizeof(want), "disk image '%s': %s", path, what);
    assert_null(block_open(path, read_only, false, error, sizeof(error)));
    assert_string_equal(error, want);
}

static void test_open_errors(void **state)
{
    (void)state;
    expect_open_error("/var/tmp/cove-no-such-image", false, "no such file");
    expect_open_error("/var/tmp", true, "not a regular file or block device");
    expect_open_error("/var/tmp", false, "not a regular file or block device");
    expect_open_error("/dev/null", false, "not a regular file or block device");

    char *odd = make_file("/var/tmp", 1000, 0);
    expect_open_error(odd, false, "image size 1000 is not a multiple of 512");
    remove_file(odd);
}

/* Makes path unwritable even for root (immutable flag), or plainly for anyone else. */
static bool deny_writes(const char *path, bool deny)
{
    if (geteuid() != 0)
        return chmod(path, deny ? 0444 : 0644) == 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    int attr = 0;
    bool ok = ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0;
    attr = deny ? attr | FS_IMMUTABLE_FL : attr & ~FS_IMMUTABLE_FL;
    ok = ok && ioctl(fd, FS_IOC_SETFLAGS, &attr) == 0;
    close(fd);
    return ok;
}

static void test_open_permission_denied(void **state)
{
    (void)state;
    char *path = make_file("/var/tmp", 4 * KIB, 0);
    if (!deny_writes(path, true)) {
        print_message("note: cannot make a file unwritable here; permission case not run\n");
        remove_file(path);
        return;
    }
    expect_open_error(path, false, "permission denied");
    /* Read-only opening still works. */
    char error[256];
    struct block_backend *b = block_open(path, true, false, error, sizeof(error));
    assert_non_null(b);
    block_close(b);
    assert_true(deny_writes(path, false));
    remove_file(path);
}

static void test_empty_image(void **state)
{
    (void)state;
    char *path = make_file("/var/tmp", 0, 0);
    struct block_backend *b = open_ok(path, false, true, true);
    assert_int_equal(block_size(b), 0);
    block_close(b);
    remove_file(path);
}

/* ---- plugging: one kick's requests reach the kernel together ---- */

static void test_plug_holds_submissions_until_unplug(void **state)
{
    (void)state;
    char *path = make_file("/var/tmp", 16 * 4 * KIB, 7);
    struct block_backend *b = open_ok(path, false, false, true);
    if (!block_uses_uring(b)) {
        fail_msg("io_uring is unavailable here: plugging cannot be observed");
    }
    static uint8_t bufs[16][4 * KIB];
    struct iovec iov[16];
    struct results res = {0};
    struct slot slots[16];
    block_plug(b);
    for (unsigned i = 0; i < 16; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
        slots[i] = (struct slot){&res, i};
        struct block_op op = rw_op(BLOCK_OP_READ, (uint64_t)i * 4 * KIB, &iov[i], 1, &slots[i]);
        assert_int_equal(block_submit(b, &op), 0);
    }
    /* Nothing was submitted, so nothing can complete, however long we wait. */
    struct pollfd p = {.fd = block_event_fd(b), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 100), 0);
    assert_int_equal(block_process_completions(b), 0);
    assert_int_equal(res.calls, 0);
    block_unplug(b);
    wait_calls(b, &res, 16);
    for (unsigned i = 0; i < 16; i++)
        assert_int_equal(res.result[i], 4 * KIB);
    block_close(b);
    remove_file(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read_uring),
        cmocka_unit_test(test_write_read_fallback),
        cmocka_unit_test(test_many_in_flight_uring),
        cmocka_unit_test(test_many_in_flight_fallback),
        cmocka_unit_test(test_flush_uring),
        cmocka_unit_test(test_flush_fallback),
        cmocka_unit_test(test_discard_uring),
        cmocka_unit_test(test_discard_fallback),
        cmocka_unit_test(test_write_zeroes_uring),
        cmocka_unit_test(test_write_zeroes_fallback),
        cmocka_unit_test(test_write_zeroes_without_zero_range),
        cmocka_unit_test(test_read_past_eof_uring),
        cmocka_unit_test(test_read_past_eof_fallback),
        cmocka_unit_test(test_rejects_bad_ops),
        cmocka_unit_test(test_read_only_refuses_writes),
        cmocka_unit_test(test_callback_submits),
        cmocka_unit_test(test_drain_runs_every_callback),
        cmocka_unit_test(test_close_with_work_in_flight),
        cmocka_unit_test(test_direct_io_uring),
        cmocka_unit_test(test_direct_io_fallback),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_open_permission_denied),
        cmocka_unit_test(test_empty_image),
        cmocka_unit_test(test_plug_holds_submissions_until_unplug),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
