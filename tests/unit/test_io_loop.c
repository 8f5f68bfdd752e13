/* The I/O loop and console input: handlers, wake-ups, removal, and bounded console buffering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "console.h"
#include "io_loop.h"

struct counter {
    struct io_loop *loop;
    int fd;
    int calls;
    int stop_after;
    bool remove_self;
};

static void count_and_drain(void *opaque, uint32_t events)
{
    struct counter *c = opaque;
    assert_true(events & EPOLLIN);
    char buf[64];
    assert_true(read(c->fd, buf, sizeof(buf)) > 0);
    c->calls++;
    if (c->remove_self)
        assert_int_equal(io_loop_remove(c->loop, c->fd), 0);
    if (c->calls >= c->stop_after)
        io_loop_stop(c->loop);
}

static void test_handler_runs_and_stop(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct counter c = {.loop = loop, .fd = fds[0], .stop_after = 1};
    assert_int_equal(io_loop_add(loop, fds[0], EPOLLIN, count_and_drain, &c), 0);
    assert_int_equal(io_loop_add(loop, fds[0], EPOLLIN, count_and_drain, &c), -EEXIST);
    assert_int_equal(write(fds[1], "x", 1), 1);
    io_loop_run(loop);
    assert_int_equal(c.calls, 1);
    io_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void test_regular_file_refused(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    FILE *f = tmpfile();
    assert_int_equal(io_loop_add(loop, fileno(f), EPOLLIN, count_and_drain, NULL), -EPERM);
    fclose(f);
    io_loop_free(loop);
}

/* The first handler removes itself and makes both pipes readable again: only the second
 * handler may run after that. */
struct remover {
    struct io_loop *loop;
    int fd;
    int other_write_fd;
    int own_write_fd;
    int calls;
};

static void remove_self(void *opaque, uint32_t events)
{
    (void)events;
    struct remover *r = opaque;
    char buf[8];
    assert_true(read(r->fd, buf, sizeof(buf)) > 0);
    r->calls++;
    assert_int_equal(io_loop_remove(r->loop, r->fd), 0);
    assert_int_equal(write(r->own_write_fd, "y", 1), 1);
    assert_int_equal(write(r->other_write_fd, "y", 1), 1);
}

static void test_remove_inside_handler(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    struct remover first = {.loop = loop, .fd = a[0], .other_write_fd = b[1], .own_write_fd = a[1]};
    struct counter second = {.loop = loop, .fd = b[0], .stop_after = 1};
    assert_int_equal(io_loop_add(loop, a[0], EPOLLIN, remove_self, &first), 0);
    assert_int_equal(io_loop_add(loop, b[0], EPOLLIN, count_and_drain, &second), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    io_loop_run(loop);
    assert_int_equal(first.calls, 1);
    assert_int_equal(second.calls, 1);
    assert_int_equal(io_loop_remove(loop, a[0]), -ENOENT);
    io_loop_free(loop);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}

static void *stop_later(void *arg)
{
    usleep(20 * 1000);
    io_loop_stop(arg);
    return NULL;
}

static void test_stop_from_another_thread(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    pthread_t t;
    pthread_create(&t, NULL, stop_later, loop);
    io_loop_run(loop); /* would block forever without the wake-up */
    pthread_join(t, NULL);
    io_loop_free(loop);
}

/* A console device that takes at most `room` bytes until drained by the test. */
struct fake_console {
    uint8_t got[8192];
    size_t len;
    size_t room;
};

static size_t fake_space(void *device)
{
    struct fake_console *c = device;
    return c->room;
}

static size_t fake_receive(void *device, const uint8_t *buf, size_t len)
{
    struct fake_console *c = device;
    assert_true(len <= c->room);
    memcpy(c->got + c->len, buf, len);
    c->len += len;
    c->room -= len;
    return len;
}

struct prepare_ctx {
    struct console_input *input;
    struct io_loop *loop;
    int rounds;
};

/* Stops the loop after a few rounds: each round is one prepare + one wait. */
static bool prepare_then_stop(void *opaque)
{
    struct prepare_ctx *p = opaque;
    bool busy = console_input_prepare(p->input);
    if (++p->rounds >= 4)
        io_loop_stop(p->loop);
    (void)busy;
    return true; /* never sleep: the test drives a fixed number of rounds */
}

static void test_console_never_takes_more_than_room(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char data[4096];
    memset(data, 'a', sizeof(data));
    assert_int_equal(write(fds[1], data, sizeof(data)), (ssize_t)sizeof(data));

    struct fake_console dev = {.room = 100};
    struct console_sink sink = {fake_space, fake_receive, &dev};
    struct console_input *in = console_input_new(loop, fds[0], &sink);
    assert_non_null(in);
    struct prepare_ctx p = {.input = in, .loop = loop};
    io_loop_set_prepare(loop, prepare_then_stop, &p);
    io_loop_run(loop);
    /* Only what the device had room for left the pipe; the rest waits in the host's pipe. */
    assert_int_equal(dev.len, 100);
    char rest[8192];
    assert_int_equal(read(fds[0], rest, sizeof(rest)), (ssize_t)(sizeof(data) - 100));
    console_input_free(in);
    io_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static void test_console_reads_regular_file(void **state)
{
    (void)state;
    struct io_loop *loop = io_loop_new();
    FILE *f = tmpfile();
    fputs("hello from a file", f);
    fflush(f);
    rewind(f);
    struct fake_console dev = {.room = 5};
    struct console_sink sink = {fake_space, fake_receive, &dev};
    struct console_input *in = console_input_new(loop, fileno(f), &sink);
    assert_non_null(in);
    /* Bounded by the device's room too: 5 bytes, then it waits. */
    assert_false(console_input_prepare(in));
    assert_int_equal(dev.len, 5);
    dev.room = 100;
    console_input_prepare(in);
    console_input_prepare(in); /* reaches end of file */
    assert_int_equal(dev.len, strlen("hello from a file"));
    assert_memory_equal(dev.got, "hello from a file", dev.len);
    console_input_free(in);
    io_loop_free(loop);
    fclose(f);
}

/* ---- parking (a snapshot looks at device state while the loop is held) ---- */

struct parked_loop {
    struct io_loop *loop;
    int fds[2];
    _Atomic int calls;
    pthread_t thread;
};

static void count_atomically(void *opaque, uint32_t events)
{
    struct parked_loop *p = opaque;
    (void)events;
    char buf[64];
    assert_true(read(p->fds[0], buf, sizeof(buf)) > 0);
    atomic_fetch_add(&p->calls, 1);
}

static void *run_loop(void *arg)
{
    io_loop_run(((struct parked_loop *)arg)->loop);
    return NULL;
}

static bool calls_reach(struct parked_loop *p, int want)
{
    for (int i = 0; i < 5000 && atomic_load(&p->calls) < want; i++)
        usleep(1000);
    return atomic_load(&p->calls) == want;
}

static void test_park_holds_handlers(void **state)
{
    (void)state;
    struct parked_loop p = {.loop = io_loop_new()};
    io_loop_park(p.loop); /* not running: returns at once */
    io_loop_unpark(p.loop);
    assert_int_equal(pipe(p.fds), 0);
    assert_int_equal(io_loop_add(p.loop, p.fds[0], EPOLLIN, count_atomically, &p), 0);
    assert_int_equal(pthread_create(&p.thread, NULL, run_loop, &p), 0);
    assert_int_equal(write(p.fds[1], "a", 1), 1);
    assert_true(calls_reach(&p, 1));

    io_loop_park(p.loop);
    assert_int_equal(write(p.fds[1], "b", 1), 1);
    usleep(50 * 1000); /* a loop that did not hold would have run the handler by now */
    assert_int_equal(atomic_load(&p.calls), 1);
    io_loop_unpark(p.loop);
    assert_true(calls_reach(&p, 2));

    io_loop_park(p.loop);
    io_loop_stop(p.loop); /* ends the park: the loop returns */
    assert_int_equal(pthread_join(p.thread, NULL), 0);
    assert_int_equal(atomic_load(&p.calls), 2);
    io_loop_free(p.loop);
    close(p.fds[0]);
    close(p.fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handler_runs_and_stop),
        cmocka_unit_test(test_regular_file_refused),
        cmocka_unit_test(test_remove_inside_handler),
        cmocka_unit_test(test_stop_from_another_thread),
        cmocka_unit_test(test_console_never_takes_more_than_room),
        cmocka_unit_test(test_console_reads_regular_file),
        cmocka_unit_test(test_park_holds_handlers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
