/*
 * blkbench: drives cove's block backend (src/lib/block/raw.h, the io_uring backend virtio-blk
 * uses) from the host, with the request mix of a fio job, to compare the backend alone with
 * fio on the same file (bench/disk.sh --backend; docs/benchmarks.md).
 *
 *   blkbench [-d] [-q DEPTH] [-b BYTES] [-t SECONDS] [-s BYTES] read|write|randread FILE
 *
 *   -d   open the image with O_DIRECT (cove's cache=none; fio --direct=1)
 *   -q   operations kept in flight (default 32; fio --iodepth)
 *   -b   bytes per operation (default 4096; fio --bs), a multiple of 512
 *   -t   run for SECONDS (default 10; fio --runtime --time_based)
 *   -s   use only the first BYTES of the image (default: all of it; fio --size)
 *
 *   read      sequential reads from offset 0, wrapping at the end (fio --rw=read)
 *   write     sequential writes of a fixed pattern (fio --rw=write)
 *   randread  reads at uniformly random block-aligned offsets (fio --rw=randread
 *             --norandommap)
 *
 * Like a virtio-blk device, it waits on the backend's event fd, calls
 * block_process_completions() and submits the next operation from each completion callback,
 * one thread doing everything. Each operation has a buffer of its own, 4096-aligned. At the
 * end it prints one line:
 *
 *   op=NAME bs=N depth=N direct=0|1 uring=0|1 seconds=S ios=N bytes=N iops=N mib_s=S
 *   cpu_user_ms=N cpu_sys_ms=N cpu_ms_per_gib=S
 *
 * where the CPU time is the whole process's (getrusage RUSAGE_SELF, which includes the
 * io_uring worker threads the kernel may start for it) over the timed part: from the first
 * submission until the operations still in flight at the deadline have completed, all of
 * which are counted. Exit status 0, 1 when an
 * operation failed, 2 for bad usage or an image that does not open.
 */
#include "block/raw.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_READ, MODE_WRITE, MODE_RANDREAD };

struct slot {
    struct bench *bench;
    void *buf;
    struct iovec iov;
};

struct bench {
    struct block_backend *backend;
    enum mode mode;
    uint64_t block;     /* bytes per operation */
    uint64_t blocks;    /* operations that fit in the region */
    uint64_t next;      /* the next sequential block */
    uint64_t rng;       /* xorshift64* state */
    uint64_t deadline_ns;
    bool stopping;
    unsigned in_flight;
    uint64_t ios;
    int error;          /* first failure, a negative errno */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_us(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000000u + (uint64_t)tv->tv_usec;
}

static uint64_t random_block(struct bench *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return (b->rng * 0x2545F4914F6CDD1Dull) % b->blocks;
}

static void done(void *opaque, int result);

static int submit(struct slot *s)
{
    struct bench *b = s->bench;
    uint64_t index;
    if (b->mode == MODE_RANDREAD) {
        index = random_block(b);
    } else {
        index = b->next;
        b->next = (b->next + 1) % b->blocks;
    }
    struct block_op op = {
        .kind = b->mode == MODE_WRITE ? BLOCK_OP_WRITE : BLOCK_OP_READ,
        .offset = index * b->block,
        .iov = &s->iov,
        .iovcnt = 1,
        .done = done,
        .opaque = s,
    };
    int rc = block_submit(b->backend, &op);
    if (rc == 0)
        b->in_flight++;
    return rc;
}

static void done(void *opaque, int result)
{
    struct slot *s = opaque;
    struct bench *b = s->bench;
    b->in_flight--;
    if (result < 0) {
        if (!b->error)
            b->error = result;
        b->stopping = true;
        return;
    }
    b->ios++;
    if (b->stopping)
        return;
    if (now_ns() >= b->deadline_ns) {
        b->stopping = true;
        return;
    }
    int rc = submit(s);
    if (rc < 0) {
        if (!b->error)
            b->error = rc;
        b->stopping = true;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: blkbench [-d] [-q DEPTH] [-b BYTES] [-t SECONDS] [-s BYTES] "
                    "read|write|randread FILE\n");
    exit(2);
}

static uint64_t number(const char *arg, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || v == 0) {
        fprintf(stderr, "blkbench: %s must be a positive number, not '%s'\n", what, arg);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    bool direct = false;
    uint64_t depth = 32, block = 4096, seconds = 10, region = 0;
    int opt;
    while ((opt = getopt(argc, argv, "dq:b:t:s:")) != -1) {
        switch (opt) {
        case 'd': direct = true; break;
        case 'q': depth = number(optarg, "-q"); break;
        case 'b': block = number(optarg, "-b"); break;
        case 't': seconds = number(optarg, "-t"); break;
        case 's': region = number(optarg, "-s"); break;
        default: usage();
        }
    }
    if (argc - optind != 2)
        usage();
    struct bench b = {.rng = 0x9E3779B97F4A7C15ull, .block = block};
    const char *name = argv[optind];
    if (strcmp(name, "read") == 0)
        b.mode = MODE_READ;
    else if (strcmp(name, "write") == 0)
        b.mode = MODE_WRITE;
    else if (strcmp(name, "randread") == 0)
        b.mode = MODE_RANDREAD;
    else
        usage();
    if (block % BLOCK_SECTOR_SIZE || block > BLOCK_MAX_TRANSFER || depth > 4096) {
        fprintf(stderr, "blkbench: -b must be a multiple of %d up to 1 GiB, -q at most 4096\n",
                BLOCK_SECTOR_SIZE);
        return 2;
    }

    char error[512];
    b.backend = block_open(argv[optind + 1], b.mode != MODE_WRITE, direct, error, sizeof(error));
    if (!b.backend) {
        fprintf(stderr, "blkbench: %s\n", error);
        return 2;
    }
    uint64_t size = block_size(b.backend);
    if (region == 0 || region > size)
        region = size;
    b.blocks = region / block;
    if (b.blocks == 0) {
        fprintf(stderr, "blkbench: the image (%llu bytes) is smaller than one block\n",
                (unsigned long long)size);
        block_close(b.backend);
        return 2;
    }

    struct slot *slots = calloc(depth, sizeof(*slots));
    if (!slots) {
        fprintf(stderr, "blkbench: out of memory\n");
        return 2;
    }
    for (uint64_t i = 0; i < depth; i++) {
        if (posix_memalign(&slots[i].buf, 4096, block) != 0) {
            fprintf(stderr, "blkbench: out of memory for %llu buffers of %llu bytes\n",
                    (unsigned long long)depth, (unsigned long long)block);
            return 2;
        }
        memset(slots[i].buf, 0xa5 ^ (int)(i & 0xff), block);
        slots[i].bench = &b;
        slots[i].iov = (struct iovec){.iov_base = slots[i].buf, .iov_len = block};
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns();
    b.deadline_ns = start + seconds * 1000000000u;
    for (uint64_t i = 0; i < depth && !b.stopping; i++) {
        int rc = submit(&slots[i]);
        if (rc < 0) {
            b.error = rc;
            b.stopping = true;
        }
    }
    struct pollfd pfd = {.fd = block_event_fd(b.backend), .events = POLLIN};
    while (b.in_flight > 0) {
        int n = poll(&pfd, 1, 1000);
        if (n < 0 && errno != EINTR) {
            perror("blkbench: poll");
            return 1;
        }
        block_process_completions(b.backend);
    }
    uint64_t end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    bool uring = block_uses_uring(b.backend);
    block_close(b.backend);
    for (uint64_t i = 0; i < depth; i++)
        free(slots[i].buf);
    free(slots);

    if (b.error) {
        fprintf(stderr, "blkbench: an operation failed: %s\n", strerror(-b.error));
        return 1;
    }
    double elapsed = (double)(end - start) / 1e9;
    uint64_t user = cpu_us(&ru1.ru_utime) - cpu_us(&ru0.ru_utime);
    uint64_t sys = cpu_us(&ru1.ru_stime) - cpu_us(&ru0.ru_stime);
    uint64_t bytes = b.ios * block;
    double gib = (double)bytes / (1024.0 * 1024 * 1024);
    printf("op=%s bs=%llu depth=%llu direct=%d uring=%d seconds=%.3f ios=%llu bytes=%llu "
           "iops=%.0f mib_s=%.1f cpu_user_ms=%.0f cpu_sys_ms=%.0f cpu_ms_per_gib=%.1f\n",
           name, (unsigned long long)block, (unsigned long long)depth, direct,
           uring ? 1 : 0, elapsed, (unsigned long long)b.ios,
           (unsigned long long)bytes, (double)b.ios / elapsed,
           (double)bytes / elapsed / (1024 * 1024), (double)user / 1000, (double)sys / 1000,
           gib > 0 ? (double)(user + sys) / 1000 / gib : 0.0);
    return 0;
}
