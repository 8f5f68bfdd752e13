/*
 * bootbench: runs one VMM process and measures it from the outside.
 *
 *   bootbench [-i INTERVAL_US] [-d DUTY_PERCENT] [-m PREFIX] [-t SECONDS] [-b] [-T]
 *             OUTFILE -- VMM [ARGS...]
 *
 * It reads CLOCK_MONOTONIC, forks, and execs VMM with stdin from /dev/null and stdout and
 * stderr appended to OUTFILE. While the VMM runs it samples /proc/PID/smaps every
 * INTERVAL_US (default 2000) and sums the Rss of every mapping except guest RAM: the
 * mappings whose name starts with PREFIX (default "/memfd:", since both cove and the QEMU
 * configuration used by bench/boot.sh keep guest RAM in a memfd; -m may be given up to four
 * times, e.g. for cove's guest RAM mapped from a boot snapshot file). This is the "memory
 * overhead" of Firecracker's memory check: everything the VMM process has resident beyond
 * the guest's memory. The exit is seen through a pidfd, so the wall time does not depend on
 * the sampling interval.
 *
 * Reading smaps is not free (the kernel walks the page tables of every mapping: ~1 ms for
 * cove, ~10 ms for QEMU in the emulated test host), and a sampler that never rests would
 * compete with the VMM for CPU. So after each sample it waits at least long enough to stay
 * under DUTY_PERCENT (default 10) of one CPU, even if that stretches the interval. Memory
 * grows during start-up and then stays flat, so the peak is still seen.
 *
 * When the VMM has exited it prints one line on stdout:
 *
 *   wall_us=N peak_rss_kib=N peak_anon_kib=N guest_rss_kib=N samples=N cpu_us=N maxrss_kib=N status=N
 *
 *   wall_us        fork to exit (the process has been torn down and reaped)
 *   peak_rss_kib   highest sum of Rss over the non-guest mappings in any one sample
 *   peak_anon_kib  Anonymous pages within that sum at the same sample
 *   guest_rss_kib  Rss of the guest RAM mappings at that sample (for information)
 *   samples        number of complete smaps samples
 *   sample_us      mean time one smaps sample took
 *   cpu_us         user + system CPU time of the VMM (all threads)
 *   maxrss_kib     getrusage's ru_maxrss of the VMM: peak RSS *including* guest RAM
 *   status         exit status, or 128+N when killed by signal N
 *
 * -T passes the VMM's stdout (its serial console) through a pipe and writes each line to
 * OUTFILE prefixed with the time since fork at which its first byte arrived, "[+12.345 ms] ",
 * to see when the guest got how far. Carriage returns are dropped.
 * -t kills the VMM (SIGKILL) when it runs longer than SECONDS (the status then says so).
 * -b also prints, on stderr, the non-guest mappings of the peak sample grouped by name with
 * their Rss, largest first (what the overhead is made of).
 *
 * Static and dependency-free so that it can be carried into the busybox-only test host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bootbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ---- smaps sampling ---- */

#define MAX_NAMES 512

struct name_rss {
    char name[96];
    uint64_t rss_kib;
};

struct sample {
    uint64_t rss_kib;   /* non-guest */
    uint64_t anon_kib;  /* non-guest */
    uint64_t guest_kib; /* guest RAM */
    size_t name_count;
    struct name_rss names[MAX_NAMES];
};

static char *smaps_buf;
static size_t smaps_cap;

/* Reads the whole file into smaps_buf; returns its length, or -1 (the process is gone). */
static ssize_t read_all(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (smaps_cap - len < 65536) {
            smaps_cap = smaps_cap ? smaps_cap * 2 : 1 << 20;
            smaps_buf = realloc(smaps_buf, smaps_cap);
            if (!smaps_buf)
                die("realloc");
        }
        ssize_t n = read(fd, smaps_buf + len, smaps_cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    smaps_buf[len] = '\0';
    return (ssize_t)len;
}

static void add_name(struct sample *s, const char *name, uint64_t kib)
{
    for (size_t i = 0; i < s->name_count; i++) {
        if (strcmp(s->names[i].name, name) == 0) {
            s->names[i].rss_kib += kib;
            return;
        }
    }
    if (s->name_count < MAX_NAMES) {
        snprintf(s->names[s->name_count].name, sizeof(s->names[0].name), "%s", name);
        s->names[s->name_count].rss_kib = kib;
        s->name_count++;
    }
}

/*
 * Parses one smaps snapshot. Returns false when it is empty (the process has exited or is
 * exiting: its mm is gone), so that a half-torn-down process never counts as a sample.
 */
#define MAX_PREFIXES 4

struct prefixes {
    const char *names[MAX_PREFIXES];
    int count;
};

static bool is_guest(const struct prefixes *guest, const char *pathname)
{
    for (int i = 0; i < guest->count; i++)
        if (strncmp(pathname, guest->names[i], strlen(guest->names[i])) == 0)
            return true;
    return false;
}

static bool take_sample(const char *path, const struct prefixes *guest_ram, bool by_name,
                        struct sample *s)
{
    ssize_t len = read_all(path);
    if (len <= 0)
        return false;
    s->rss_kib = s->anon_kib = s->guest_kib = 0;
    s->name_count = 0;
    bool guest = false;
    bool any = false;
    char name[96] = "";
    for (char *line = smaps_buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* Header lines start with the address range "start-end " (lower-case hex). */
        char *dash = strchr(line, '-');
        char *colon = strchr(line, ':');
        if (dash && (!colon || dash < colon) && line[0] != ' ') {
            /* addr perms offset dev inode [pathname] */
            char *p = line;
            for (int field = 0; field < 5 && p; field++) {
                p = strchr(p, ' ');
                if (p)
                    while (*p == ' ')
                        p++;
            }
            const char *pathname = (p && *p) ? p : "[anon]";
            guest = is_guest(guest_ram, pathname);
            snprintf(name, sizeof(name), "%s", pathname);
            any = true;
        } else if (strncmp(line, "Rss:", 4) == 0) {
            uint64_t kib = strtoull(line + 4, NULL, 10);
            if (guest) {
                s->guest_kib += kib;
            } else {
                s->rss_kib += kib;
                if (by_name && kib)
                    add_name(s, name, kib);
            }
        } else if (strncmp(line, "Anonymous:", 10) == 0) {
            if (!guest)
                s->anon_kib += strtoull(line + 10, NULL, 10);
        }
        line = next;
    }
    return any;
}

/* Copies one read() worth from in to out, stamping each line start with since_ns. Returns
 * false at end of file. */
static bool copy_stamped(int in, int out, uint64_t since_ns, bool *line_start)
{
    char buf[4096], obuf[4096 * 2 + 64];
    ssize_t n = read(in, buf, sizeof(buf));
    if (n <= 0)
        return n < 0 && errno == EINTR;
    size_t o = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\r')
            continue;
        if (*line_start) {
            o += (size_t)snprintf(obuf + o, sizeof(obuf) - o, "[+%llu.%03llu ms] ",
                                  (unsigned long long)(since_ns / 1000000),
                                  (unsigned long long)(since_ns / 1000 % 1000));
            *line_start = false;
        }
        obuf[o++] = buf[i];
        if (buf[i] == '\n')
            *line_start = true;
        if (o > sizeof(obuf) - 64) {
            if (write(out, obuf, o) < 0)
                return false;
            o = 0;
        }
    }
    if (o && write(out, obuf, o) < 0)
        return false;
    return true;
}

static int cmp_name_rss(const void *a, const void *b)
{
    const struct name_rss *x = a, *y = b;
    return x->rss_kib < y->rss_kib ? 1 : x->rss_kib > y->rss_kib ? -1 : 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bootbench [-i INTERVAL_US] [-d DUTY_PERCENT] [-m GUEST_PREFIX] [-t SECONDS] [-b] "
                    "[-T] OUTFILE -- VMM [ARGS...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long interval_us = 2000;
    long duty_percent = 10;
    struct prefixes guest_ram = {.count = 0};
    long timeout_s = 0;
    bool breakdown = false;
    bool stamp = false;
    int opt;
    while ((opt = getopt(argc, argv, "+i:d:m:t:bT")) != -1) {
        switch (opt) {
        case 'i': interval_us = strtol(optarg, NULL, 10); break;
        case 'd': duty_percent = strtol(optarg, NULL, 10); break;
        case 't': timeout_s = strtol(optarg, NULL, 10); break;
        case 'm':
            if (guest_ram.count == MAX_PREFIXES)
                usage();
            guest_ram.names[guest_ram.count++] = optarg;
            break;
        case 'b': breakdown = true; break;
        case 'T': stamp = true; break;
        default: usage();
        }
    }
    if (interval_us <= 0 || duty_percent <= 0 || duty_percent > 100 || argc - optind < 3 || strcmp(argv[optind + 1], "--") != 0)
        usage();
    if (guest_ram.count == 0)
        guest_ram.names[guest_ram.count++] = "/memfd:";
    const char *outfile = argv[optind];
    char **vmm_argv = argv + optind + 2;

    int out_fd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0)
        die(outfile);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0)
        die("/dev/null");

    static struct sample cur, peak;
    bool have_peak = false;
    unsigned long samples = 0;
    uint64_t sampling_ns = 0;

    int pipe_fds[2] = {-1, -1};
    if (stamp && pipe2(pipe_fds, O_CLOEXEC) < 0)
        die("pipe2");

    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        dup2(null_fd, 0);
        dup2(stamp ? pipe_fds[1] : out_fd, 1);
        dup2(out_fd, 2);
        execvp(vmm_argv[0], vmm_argv);
        fprintf(stderr, "bootbench: exec %s: %s\n", vmm_argv[0], strerror(errno));
        _exit(127);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        die("pidfd_open");
    if (stamp)
        close(pipe_fds[1]);
    bool line_start = true;

    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    uint64_t end_ns = 0;
    uint64_t next_ns = t0;
    bool killed = false;
    for (;;) {
        uint64_t t = now_ns();
        if (timeout_s > 0 && !killed && t - t0 > (uint64_t)timeout_s * 1000000000u) {
            fprintf(stderr, "bootbench: %s still running after %ld s: killing it\n", vmm_argv[0], timeout_s);
            kill(pid, SIGKILL);
            killed = true;
        }
        if (t >= next_ns) {
            uint64_t started = t;
            if (take_sample(path, &guest_ram, breakdown, &cur)) {
                samples++;
                if (!have_peak || cur.rss_kib > peak.rss_kib) {
                    peak = cur;
                    have_peak = true;
                }
            }
            t = now_ns();
            uint64_t cost = t - started;
            sampling_ns += cost;
            next_ns += (uint64_t)interval_us * 1000;
            /* Rest long enough to stay under the duty cycle; never pile up. */
            uint64_t rest = cost * (uint64_t)(100 - duty_percent) / (uint64_t)duty_percent;
            if (next_ns < t + rest)
                next_ns = t + rest;
        }
        int timeout_ms = (int)((next_ns - t + 999999) / 1000000);
        struct pollfd pfd[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = pipe_fds[0], .events = POLLIN}};
        int r = poll(pfd, pipe_fds[0] >= 0 ? 2 : 1, timeout_ms);
        if (r < 0 && errno != EINTR)
            die("poll");
        if (r > 0 && (pfd[0].revents & POLLIN)) {
            end_ns = now_ns();
            break;
        }
        if (r > 0 && pfd[1].revents) {
            if (!copy_stamped(pipe_fds[0], out_fd, now_ns() - t0, &line_start)) {
                close(pipe_fds[0]);
                pipe_fds[0] = -1;
            }
        }
    }
    /* What the VMM wrote just before it exited. */
    while (pipe_fds[0] >= 0 && copy_stamped(pipe_fds[0], out_fd, now_ns() - t0, &line_start))
        ;

    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        die("wait4");
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    uint64_t cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                      (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;

    printf("wall_us=%llu peak_rss_kib=%llu peak_anon_kib=%llu guest_rss_kib=%llu samples=%lu "
           "sample_us=%llu cpu_us=%llu maxrss_kib=%ld status=%d\n",
           (unsigned long long)((end_ns - t0) / 1000), (unsigned long long)peak.rss_kib,
           (unsigned long long)peak.anon_kib, (unsigned long long)peak.guest_kib, samples,
           (unsigned long long)(samples ? sampling_ns / samples / 1000 : 0),
           (unsigned long long)cpu_us, ru.ru_maxrss, code);
    fflush(stdout);
    if (breakdown && have_peak) {
        qsort(peak.names, peak.name_count, sizeof(peak.names[0]), cmp_name_rss);
        for (size_t i = 0; i < peak.name_count; i++)
            fprintf(stderr, "  %7llu KiB  %s\n", (unsigned long long)peak.names[i].rss_kib,
                    peak.names[i].name);
    }
    return 0;
}
