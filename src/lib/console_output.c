#include "console_output.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "kick.h"

/*
 * A ring of CONSOLE_OUTPUT_BUFFER bytes: [head, head + len) waits to be written. The caller
 * only appends to the free part and the writer only reads the waiting part, so the write(),
 * which may take for ever, runs outside the lock.
 */
struct console_output {
    int fd;
    struct io_loop *wake;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* data arrived, bytes went out, closing, or the writer ended */
    size_t head;
    size_t len;
    uint64_t written;  /* bytes written so far: what closing watches for progress */
    bool want_room;    /* a write was cut short: wake the loop when room is free */
    bool broken;       /* write() failed: drop everything from now on */
    bool closing;      /* write out what is left, then end */
    atomic_bool abandoned; /* closing gave up on the reader: end now */
    bool writer_ended;
    uint8_t buf[CONSOLE_OUTPUT_BUFFER];
};

/*
 * Returns what write() returned, or -errno; -ECANCELED once closing gave up on the reader,
 * whose kick (kick.h) ends a write() or poll() stuck on it. A non-blocking fd (someone else's
 * choice) waits in poll() for room instead of failing with EAGAIN.
 */
static ssize_t interruptible_write(struct console_output *out, const void *buf, size_t len)
{
    struct pollfd writable = {.fd = out->fd, .events = POLLOUT};
    ssize_t n;
    while ((n = write(out->fd, buf, len)) < 0 && (errno == EINTR || errno == EAGAIN)) {
        if (atomic_load(&out->abandoned))
            return -ECANCELED;
        if (errno == EAGAIN)
            poll(&writable, 1, -1);
    }
    return n < 0 ? -errno : n;
}

/* Called with the lock held after interruptible_write() returned n. */
static void account(struct console_output *out, ssize_t n)
{
    if (n <= 0) {
        out->broken = true;
        n = (ssize_t)out->len;
    }
    out->head = (out->head + (size_t)n) % sizeof(out->buf);
    out->len -= (size_t)n;
    out->written += (uint64_t)n;
    pthread_cond_broadcast(&out->changed);
    if (out->want_room) {
        out->want_room = false;
        if (out->wake)
            io_loop_wake(out->wake);
    }
}

static void *writer_thread(void *arg)
{
    struct console_output *out = arg;
    kick_unblock();
    pthread_mutex_lock(&out->lock);
    for (;;) {
        while (out->len == 0 && !out->closing)
            pthread_cond_wait(&out->changed, &out->lock);
        if (out->len == 0 || atomic_load(&out->abandoned))
            break;
        size_t chunk = sizeof(out->buf) - out->head;
        if (chunk > out->len)
            chunk = out->len;
        const uint8_t *start = out->buf + out->head;
        pthread_mutex_unlock(&out->lock);
        ssize_t n = interruptible_write(out, start, chunk);
        pthread_mutex_lock(&out->lock);
        account(out, n);
    }
    out->writer_ended = true;
    pthread_cond_broadcast(&out->changed);
    pthread_mutex_unlock(&out->lock);
    return NULL;
}

size_t console_output_write(struct console_output *out, const void *buf, size_t len)
{
    pthread_mutex_lock(&out->lock);
    if (out->broken) {
        pthread_mutex_unlock(&out->lock);
        return len;
    }
    size_t room = sizeof(out->buf) - out->len;
    size_t taken = len < room ? len : room;
    size_t tail = (out->head + out->len) % sizeof(out->buf);
    size_t first = sizeof(out->buf) - tail;
    if (first > taken)
        first = taken;
    /* The free part is the caller's alone: copying it under the lock costs little and keeps
     * the ring's accounting in one place. */
    memcpy(out->buf + tail, buf, first);
    memcpy(out->buf, (const uint8_t *)buf + first, taken - first);
    out->len += taken;
    if (taken < len)
        out->want_room = true;
    if (taken > 0)
        pthread_cond_broadcast(&out->changed);
    pthread_mutex_unlock(&out->lock);
    return taken;
}

/* Every signal blocked in the writer but the kick, which it unblocks itself, so none meant for
 * the application lands there. */
static int start_writer(struct console_output *out)
{
    kick_install_handler();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&out->thread, NULL, writer_thread, out);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

struct console_output *console_output_new(int fd, struct io_loop *wake)
{
    struct console_output *out = calloc(1, sizeof(*out));
    if (!out)
        return NULL;
    out->fd = fd;
    out->wake = wake;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int r = pthread_cond_init(&out->changed, &attr);
    pthread_condattr_destroy(&attr);
    if (r == 0 && pthread_mutex_init(&out->lock, NULL) != 0) {
        pthread_cond_destroy(&out->changed);
        r = -1;
    }
    if (r == 0 && start_writer(out) != 0) {
        pthread_mutex_destroy(&out->lock);
        pthread_cond_destroy(&out->changed);
        r = -1;
    }
    if (r != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Waits, with the lock held, until the writer ends, takes nothing for a whole linger, or the
 * closing time is up (a reader that takes a byte a second would hold it for hours). Returns
 * whether it ended. */
static bool wait_for_writer(struct console_output *out)
{
    const struct timespec close_by = deadline_after_ms(CLOCK_MONOTONIC, CONSOLE_OUTPUT_CLOSE_MS);
    while (!out->writer_ended) {
        uint64_t seen = out->written;
        struct timespec deadline = deadline_after_ms(CLOCK_MONOTONIC, CONSOLE_OUTPUT_LINGER_MS);
        if (before(&close_by, &deadline))
            deadline = close_by;
        int r = 0;
        while (!out->writer_ended && out->written == seen && r != ETIMEDOUT)
            r = pthread_cond_timedwait(&out->changed, &out->lock, &deadline);
        if (!out->writer_ended && (out->written == seen || r == ETIMEDOUT))
            return false;
    }
    return true;
}

/* Kicks the writer until it ends: a kick that lands just before it enters write() is lost, so
 * one is sent every few milliseconds. Called with the lock held. */
static void stop_writer(struct console_output *out)
{
    atomic_store(&out->abandoned, true);
    while (!out->writer_ended) {
        pthread_kill(out->thread, KICK_SIGNAL);
        struct timespec soon = deadline_after_ms(CLOCK_MONOTONIC, 10);
        pthread_cond_timedwait(&out->changed, &out->lock, &soon);
    }
}

void console_output_free(struct console_output *out)
{
    if (!out)
        return;
    pthread_mutex_lock(&out->lock);
    out->closing = true;
    pthread_cond_broadcast(&out->changed);
    if (!wait_for_writer(out))
        stop_writer(out);
    pthread_mutex_unlock(&out->lock);
    pthread_join(out->thread, NULL);
    pthread_mutex_destroy(&out->lock);
    pthread_cond_destroy(&out->changed);
    free(out);
}
