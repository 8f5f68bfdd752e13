/*
 * execbench: the round trip of a command run through cove-agent in a VM that is already up,
 * measured through libcove's public API as an embedding program would (bench/run.sh;
 * docs/benchmarks.md).
 *
 *   execbench [-n COUNT] [-c CONCURRENT] [-r ROUNDS] [-m MIB] KERNEL INITRD
 *
 * It boots one VM (1 vCPU, MIB MiB of RAM, default 256; vsock and virtio-rng like
 * `cove run`; the console discarded) and runs `true` in it:
 *
 *   1. once, as soon as the agent answers: this one includes the boot;
 *   2. COUNT times (default 50) one after another, each timed from cove_vm_exec() until
 *      cove_exec_wait() has seen it end and cove_exec_free() has returned: a new vsock
 *      connection, the agent's fork and exec of `true`, its exit status back;
 *   3. ROUNDS times (default 5) CONCURRENT (default 8; 0: skip) at once: all started back
 *      to back, then all awaited; each round timed as a whole.
 *
 * Then it stops the VM and prints one line on stdout (times in microseconds):
 *
 *   boot_us=N first_us=N n=N median_us=N p90_us=N min_us=N max_us=N
 *   conc=N rounds=N conc_median_us=N conc_per_exec_us=N samples_us=A,B,...
 *
 *   boot_us           from before cove_vm_new() to the guest's boot signal (its /init ran)
 *   first_us          from before cove_vm_new() to the end of the first `true`
 *   median_us, p90_us the median and 90th percentile (nearest rank) of the COUNT round trips
 *   conc_median_us    the median of the rounds' times; conc_per_exec_us that over CONCURRENT
 *   samples_us        every round trip of step 2, in order
 *
 * Exit status 0; 1 when the VM did not start or any `true` did not exit with status 0 (one
 * line on stderr says which); 2 for bad usage.
 */
#include <cove/cove.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Generous: everything is emulated twice over in the test host. */
#define BOOT_TIMEOUT_MS 600000
#define EXEC_TIMEOUT_MS 120000
#define MAX_COUNT 100000
#define MAX_CONCURRENT 256

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr, "usage: execbench [-n COUNT] [-c CONCURRENT] [-r ROUNDS] [-m MIB] KERNEL INITRD\n");
    exit(2);
}

static unsigned parse_count(const char *text, unsigned max)
{
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || value > max)
        usage();
    return (unsigned)value;
}

static const char *const true_argv[] = {"true", NULL};

/* Starts `true`; NULL with a line on stderr when the agent did not take it. */
static cove_exec *start_true(cove_vm *vm, int timeout_ms)
{
    cove_exec_options options;
    cove_exec_options_init(&options);
    options.argv = true_argv;
    cove_error error;
    cove_exec *exec = cove_vm_exec(vm, &options, timeout_ms, &error);
    if (!exec)
        fprintf(stderr, "execbench: exec: %s\n", error.message);
    return exec;
}

/* Waits for an exec started by start_true and frees it; false unless it exited 0. */
static bool finish_true(cove_exec *exec)
{
    cove_exec_status status;
    cove_exec_state state = cove_exec_wait(exec, EXEC_TIMEOUT_MS, &status);
    cove_exec_free(exec);
    if (state == COVE_EXEC_EXITED && status.code == 0)
        return true;
    fprintf(stderr, "execbench: true ended in state %d, code %d%s%s\n", (int)state, status.code,
            status.message[0] ? ": " : "", status.message);
    return false;
}

static bool run_true(cove_vm *vm, int timeout_ms)
{
    cove_exec *exec = start_true(vm, timeout_ms);
    return exec && finish_true(exec);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The median of sorted[0..n-1] (n > 0). */
static uint64_t median(const uint64_t *sorted, size_t n)
{
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static bool run_rounds(cove_vm *vm, unsigned concurrent, unsigned rounds, uint64_t *round_ns)
{
    cove_exec *execs[MAX_CONCURRENT];
    for (unsigned r = 0; r < rounds; r++) {
        uint64_t t0 = now_ns();
        unsigned started = 0;
        bool ok = true;
        while (ok && started < concurrent) {
            execs[started] = start_true(vm, EXEC_TIMEOUT_MS);
            if (execs[started])
                started++;
            else
                ok = false;
        }
        for (unsigned i = 0; i < started; i++)
            ok = finish_true(execs[i]) && ok;
        if (!ok)
            return false;
        round_ns[r] = now_ns() - t0;
    }
    return true;
}

int main(int argc, char **argv)
{
    unsigned count = 50, concurrent = 8, rounds = 5, memory_mib = 256;
    int opt;
    while ((opt = getopt(argc, argv, "n:c:r:m:")) != -1) {
        switch (opt) {
        case 'n': count = parse_count(optarg, MAX_COUNT); break;
        case 'c': concurrent = parse_count(optarg, MAX_CONCURRENT); break;
        case 'r': rounds = parse_count(optarg, MAX_COUNT); break;
        case 'm': memory_mib = parse_count(optarg, 1u << 20); break;
        default: usage();
        }
    }
    if (argc - optind != 2 || count == 0 || rounds == 0 || memory_mib == 0)
        usage();
    if (concurrent == 0)
        rounds = 0;
    uint64_t *samples = calloc(count, sizeof(*samples));
    uint64_t *sorted = calloc(count, sizeof(*sorted));
    uint64_t *round_ns = calloc(rounds ? rounds : 1, sizeof(*round_ns));
    if (!samples || !sorted || !round_ns) {
        fprintf(stderr, "execbench: out of memory\n");
        return 1;
    }

    uint64_t t0 = now_ns();
    cove_config *config = cove_config_new();
    if (!config || cove_config_set_kernel(config, argv[optind]) < 0 ||
        cove_config_set_initrd(config, argv[optind + 1]) < 0 ||
        cove_config_set_vsock(config, 0, NULL) < 0) {
        fprintf(stderr, "execbench: cannot build the configuration\n");
        return 1;
    }
    cove_config_set_cpus(config, 1);
    cove_config_set_memory(config, (uint64_t)memory_mib << 20);
    cove_config_set_serial_none(config);
    cove_config_set_entropy(config, true);
    cove_error error;
    cove_vm *vm = cove_vm_new(config, &error);
    cove_config_free(config);
    if (!vm || cove_vm_start(vm, &error) < 0) {
        fprintf(stderr, "execbench: %s\n", error.message);
        return 1;
    }

    int status = 1;
    if (!run_true(vm, BOOT_TIMEOUT_MS))
        goto out;
    uint64_t first_ns = now_ns() - t0;
    uint64_t boot_signal = cove_vm_boot_signal_ns(vm);
    uint64_t boot_ns = boot_signal ? boot_signal - t0 : 0;

    for (unsigned i = 0; i < count; i++) {
        uint64_t start = now_ns();
        if (!run_true(vm, EXEC_TIMEOUT_MS))
            goto out;
        samples[i] = now_ns() - start;
    }
    if (rounds && !run_rounds(vm, concurrent, rounds, round_ns))
        goto out;

    memcpy(sorted, samples, count * sizeof(*sorted));
    qsort(sorted, count, sizeof(*sorted), cmp_u64);
    size_t p90 = (count * 9 + 9) / 10; /* nearest rank: ceil(0.9 n) */
    uint64_t conc_median = 0;
    if (rounds) {
        qsort(round_ns, rounds, sizeof(*round_ns), cmp_u64);
        conc_median = median(round_ns, rounds);
    }
    printf("boot_us=%llu first_us=%llu n=%u median_us=%llu p90_us=%llu min_us=%llu max_us=%llu "
           "conc=%u rounds=%u conc_median_us=%llu conc_per_exec_us=%llu samples_us=",
           (unsigned long long)(boot_ns / 1000), (unsigned long long)(first_ns / 1000), count,
           (unsigned long long)(median(sorted, count) / 1000),
           (unsigned long long)(sorted[p90 - 1] / 1000), (unsigned long long)(sorted[0] / 1000),
           (unsigned long long)(sorted[count - 1] / 1000), concurrent, rounds,
           (unsigned long long)(conc_median / 1000),
           (unsigned long long)(concurrent ? conc_median / concurrent / 1000 : 0));
    for (unsigned i = 0; i < count; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)(samples[i] / 1000));
    printf("\n");
    status = 0;
out:
    cove_vm_stop(vm);
    cove_vm_wait(vm, -1);
    cove_vm_free(vm);
    free(samples);
    free(sorted);
    free(round_ns);
    return status;
}
