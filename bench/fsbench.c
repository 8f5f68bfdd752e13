/*
 * fsbench: the timer and the small-file workloads of the directory-sharing benchmark
 * (bench/fs.sh). Static, so that the same binary runs in the benchmark guest (busybox only)
 * and in the test host (the "native" reference).
 *
 *   fsbench time COMMAND [ARG...]   runs COMMAND (its stdout and stderr to /dev/null) and
 *                                   prints "us=N status=S": CLOCK_MONOTONIC from fork to
 *                                   reaping it
 *   fsbench create DIR N SIZE       creates DIR/f0 .. DIR/f<N-1>, each with SIZE bytes
 *                                   (open O_CREAT|O_EXCL, one write, close)
 *   fsbench stat DIR N              lstat()s DIR/f0 .. DIR/f<N-1>, checking that each is a
 *                                   regular file
 *
 * create and stat print nothing and exit 1 with a reason on stderr at the first failure, so
 * that a run that did less than the work is seen (status=1) rather than timed. busybox's date
 * has no %N here, hence the timer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
}

static int parse_count(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

static int cmd_time(char **argv)
{
    unsigned long long t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fsbench: fork");
        return 1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    unsigned long long t1 = now_us();
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("us=%llu status=%d\n", t1 - t0, status);
    return 0;
}

static int cmd_create(const char *dir, unsigned long n, unsigned long size)
{
    static char data[65536];
    if (size > sizeof(data)) {
        fprintf(stderr, "fsbench: SIZE at most %zu\n", sizeof(data));
        return 2;
    }
    memset(data, 'x', size);
    char path[4096];
    for (unsigned long i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/f%lu", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd) != 0) {
            fprintf(stderr, "fsbench: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}

static int cmd_stat(const char *dir, unsigned long n)
{
    char path[4096];
    for (unsigned long i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/f%lu", dir, i);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            fprintf(stderr, "fsbench: %s: %s\n", path, errno ? strerror(errno) : "not a file");
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long n, size;
    if (argc >= 3 && !strcmp(argv[1], "time"))
        return cmd_time(argv + 2);
    if (argc == 5 && !strcmp(argv[1], "create") && !parse_count(argv[3], &n) &&
        !parse_count(argv[4], &size))
        return cmd_create(argv[2], n, size);
    if (argc == 4 && !strcmp(argv[1], "stat") && !parse_count(argv[3], &n))
        return cmd_stat(argv[2], n);
    fprintf(stderr, "usage: fsbench time COMMAND [ARG...] | create DIR N SIZE | stat DIR N\n");
    return 2;
}
