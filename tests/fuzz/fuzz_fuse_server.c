/*
 * libFuzzer target for the FUSE server: arbitrary request bytes, split into an arbitrary
 * layout of readable and writable buffers, against a scratch share created once (a file, a
 * directory, a symlink out of it) and rebuilt every few thousand inputs. Built with
 * ASan+UBSan; the checks below turn a write past the writable buffers or into the readable
 * ones, a reply longer than their space or a reply header that disagrees with the returned
 * length into a crash.
 *
 * Input layout:
 *   0  u8 readable buffer count (1 + v % 8)     1 u8 writable buffer count (v % 9)
 *   2  u8 flags: bit 0 the read-only server, bit 1 skip the INIT the target sends first
 *   3  u16 le length per readable buffer, then per writable buffer (the last readable one
 *      takes whatever request bytes are left)
 *   then the request bytes.
 *
 * The host's disk is protected, not the server's logic: RLIMIT_FSIZE caps file sizes and
 * FALLOCATE ranges are clamped (tmpfs with KEEP_SIZE ignores the rlimit).
 */
#include <dirent.h>
#include <errno.h>
#include <linux/fuse.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fuse_server.h"

#define MAX_BUFS 8
#define CANARY 16
#define WR_ARENA (MAX_BUFS * (65535 + CANARY))
#define RESET_EVERY 4096
#define FILE_LIMIT (16 << 20)
#define SCRATCH_PREFIX "cove-fuzz-fuse-"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char base[64];
static char share[96];
static struct fuse_server *servers[2];
static unsigned inputs;
static uint8_t arena[WR_ARENA];
static uint8_t request[1 << 20];
static uint8_t request_copy[1 << 20]; /* the readable part must come back untouched */

static void shell(const char *fmt, const char *arg)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), fmt, arg, arg, arg, arg);
    if (system(cmd) != 0)
        abort();
}

static void cleanup(void)
{
    for (int i = 0; i < 2; i++)
        fuse_server_destroy(servers[i]);
    if (base[0])
        shell("rm -rf '%s'", base);
}

static void make_share(void)
{
    for (int i = 0; i < 2; i++)
        fuse_server_destroy(servers[i]);
    shell("rm -rf '%s/share' && mkdir -p '%s/share/d' && echo data > '%s/share/a' && "
          "ln -s /etc/passwd '%s/share/l'",
          base);
    for (int i = 0; i < 2; i++) {
        struct fuse_server_options o = {.read_only = i == 1, .max_inodes = 256,
                                        .max_handles = 64};
        if (fuse_server_new(share, &o, &servers[i]))
            abort();
    }
}

/* libFuzzer does not always run atexit handlers (a crash, a timeout), so each run names its
 * scratch directory after its pid and removes those of runs that are gone. */
static void remove_stale(void)
{
    DIR *d = opendir("/tmp");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        char dir[300];
        if (sscanf(e->d_name, SCRATCH_PREFIX "%d", &pid) != 1 || pid <= 0)
            continue;
        if (!kill(pid, 0) || errno != ESRCH)
            continue; /* still running */
        snprintf(dir, sizeof(dir), "/tmp/%s", e->d_name);
        shell("rm -rf '%s'", dir);
    }
    closedir(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    remove_stale();
    snprintf(base, sizeof(base), "/tmp/" SCRATCH_PREFIX "%d", (int)getpid());
    shell("rm -rf '%s' && mkdir '%s'", base);
    snprintf(share, sizeof(share), "%s/share", base);
    struct rlimit fsize = {FILE_LIMIT, FILE_LIMIT};
    setrlimit(RLIMIT_FSIZE, &fsize);
    make_share();
    atexit(cleanup);
    return 0;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void send_init(struct fuse_server *s)
{
    struct {
        struct fuse_in_header h;
        struct fuse_init_in in;
    } req = {{.len = sizeof(req), .opcode = FUSE_INIT, .unique = 1},
             {.major = 7, .minor = FUSE_KERNEL_MINOR_VERSION, .flags = 0xffffffff}};
    uint8_t out[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)];
    struct iovec rd = {&req, sizeof(req)}, wr = {out, sizeof(out)};
    if (fuse_server_handle(s, &rd, 1, &wr, 1) != sizeof(out))
        __builtin_trap();
}

/* Keeps FALLOCATE small: the range is the host disk's, not the server's, concern. */
static void clamp_fallocate(uint8_t *req, size_t len)
{
    struct fuse_in_header h;
    if (len < sizeof(h) + sizeof(struct fuse_fallocate_in))
        return;
    memcpy(&h, req, sizeof(h));
    if (h.opcode != FUSE_FALLOCATE)
        return;
    struct fuse_fallocate_in f;
    memcpy(&f, req + sizeof(h), sizeof(f));
    f.offset %= 1 << 20;
    f.length %= 1 << 20;
    memcpy(req + sizeof(h), &f, sizeof(f));
}

static void check_reply(const struct iovec *wr, unsigned wr_count, size_t n)
{
    size_t total = 0;
    for (unsigned i = 0; i < wr_count; i++) {
        total += wr[i].iov_len;
        const uint8_t *c = (const uint8_t *)wr[i].iov_base + wr[i].iov_len;
        for (int k = 0; k < CANARY; k++)
            if (c[k] != 0xa5)
                __builtin_trap();
    }
    if (n > total)
        __builtin_trap();
    if (n >= sizeof(struct fuse_out_header)) {
        struct fuse_out_header oh;
        size_t got = 0;
        for (unsigned i = 0; i < wr_count && got < sizeof(oh); i++) {
            size_t c = wr[i].iov_len < sizeof(oh) - got ? wr[i].iov_len : sizeof(oh) - got;
            memcpy((uint8_t *)&oh + got, wr[i].iov_base, c);
            got += c;
        }
        if (oh.len != n || oh.error > 0 || oh.error < -4095)
            __builtin_trap();
    } else if (n) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool xfsz_ignored;
    if (!xfsz_ignored) {
        /* Here rather than at initialisation: libFuzzer installs its own handler after that.
         * Ignored, a write past RLIMIT_FSIZE fails with EFBIG. */
        signal(SIGXFSZ, SIG_IGN);
        xfsz_ignored = true;
    }
    if (size < 3)
        return 0;
    unsigned rd_count = 1 + data[0] % MAX_BUFS, wr_count = data[1] % (MAX_BUFS + 1);
    struct fuse_server *s = servers[data[2] & 1];
    size_t pos = 3 + 2 * (size_t)(rd_count + wr_count);
    if (size < pos)
        return 0;
    if (++inputs % RESET_EVERY == 0) {
        make_share();
        s = servers[data[2] & 1];
    }
    if (!(data[2] & 2))
        send_init(s);

    size_t req_len = size - pos < sizeof(request) ? size - pos : sizeof(request);
    memcpy(request, data + pos, req_len);
    clamp_fallocate(request, req_len);
    memcpy(request_copy, request, req_len);
    struct iovec rd[MAX_BUFS], wr[MAX_BUFS];
    size_t off = 0;
    for (unsigned i = 0; i < rd_count; i++) {
        size_t len = rd16(data + 3 + 2 * i);
        if (i + 1 == rd_count || len > req_len - off)
            len = req_len - off;
        rd[i] = (struct iovec){request + off, len};
        off += len;
    }
    memset(arena, 0xa5, sizeof(arena));
    uint8_t *p = arena;
    for (unsigned i = 0; i < wr_count; i++) {
        size_t len = rd16(data + 3 + 2 * (rd_count + i));
        wr[i] = (struct iovec){p, len};
        p += len + CANARY;
    }
    size_t n = fuse_server_handle(s, rd, rd_count, wr, wr_count);
    check_reply(wr, wr_count, n);
    if (memcmp(request, request_copy, req_len))
        __builtin_trap();
    return 0;
}
