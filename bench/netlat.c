/*
 * TCP round-trip latency for bench/net.sh: a connection per request, as a CI job's HTTP
 * fetches and package downloads make them.
 *
 *   netlat -s PORT            serve: for each connection read a request line, answer
 *                             "HTTP/1.0 200 OK" with a 64-byte body, close (runs until killed)
 *   netlat ADDR PORT N        client: N times connect, send "GET / HTTP/1.0", read the whole
 *                             answer until the server closes; prints one line
 *                             "NETLAT n=N ok=K median_us=M p10_us=A p90_us=B"
 *
 * Each sample is connect() to the end of the answer (EOF), CLOCK_MONOTONIC. Built static by
 * bench/net.sh, so it runs in the guest and the test host without libraries.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char answer[] = "HTTP/1.0 200 OK\r\nContent-Length: 64\r\n\r\n"
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

static int serve(int port)
{
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 64) < 0) {
        perror("netlat: bind/listen");
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char buf[512];
        ssize_t n = read(c, buf, sizeof(buf)); /* the request fits one segment */
        if (n > 0 && write(c, answer, sizeof(answer) - 1) < 0) {
            /* the client went away: its sample is lost, nothing to do here */
        }
        close(c);
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One connect + request + answer; the time in microseconds, or -1. */
static double one(const struct sockaddr_in *sa)
{
    static const char req[] = "GET / HTTP/1.0\r\n\r\n";
    double t0 = now_us();
    int s = socket(AF_INET, SOCK_STREAM, 0), one_ = 1;
    if (s < 0)
        return -1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof(one_));
    double r = -1;
    if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)) == 0 &&
        write(s, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1) {
        char buf[512];
        size_t got = 0;
        ssize_t n;
        while ((n = read(s, buf, sizeof(buf))) > 0)
            got += (size_t)n;
        if (n == 0 && got == sizeof(answer) - 1)
            r = now_us() - t0;
    }
    close(s);
    return r;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int client(const char *addr, int port, int n)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || n < 1) {
        fprintf(stderr, "netlat: bad address or count\n");
        return 2;
    }
    double *t = calloc((size_t)n, sizeof(*t));
    int ok = 0;
    for (int i = 0; i < n && t; i++) {
        double us = one(&sa);
        if (us >= 0)
            t[ok++] = us;
    }
    if (!ok) {
        printf("NETLAT n=%d ok=0 median_us=0 p10_us=0 p90_us=0\n", n);
        return 1;
    }
    qsort(t, (size_t)ok, sizeof(*t), cmp);
    printf("NETLAT n=%d ok=%d median_us=%.0f p10_us=%.0f p90_us=%.0f\n", n, ok, t[ok / 2],
           t[ok / 10], t[ok * 9 / 10]);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "-s") == 0)
        return serve(atoi(argv[2]));
    if (argc == 4)
        return client(argv[1], atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: netlat -s PORT | netlat ADDR PORT N\n");
    return 2;
}
