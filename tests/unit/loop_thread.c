#include "loop_thread.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_call(void *opaque, uint32_t events)
{
    (void)events;
    struct loop_thread *t = opaque;
    uint64_t n;
    assert_int_equal(read(t->call_fd, &n, sizeof(n)), sizeof(n));
    t->fn(t->arg);
    pthread_mutex_lock(&t->lock);
    t->done = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void *run(void *loop)
{
    io_loop_run(loop);
    return NULL;
}

void loop_thread_start(struct loop_thread *t)
{
    t->loop = io_loop_new();
    assert_non_null(t->loop);
    t->call_fd = eventfd(0, EFD_CLOEXEC);
    assert_true(t->call_fd >= 0);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    assert_int_equal(io_loop_add(t->loop, t->call_fd, EPOLLIN, on_call, t), 0);
    assert_int_equal(pthread_create(&t->thread, NULL, run, t->loop), 0);
}

void loop_thread_call(struct loop_thread *t, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&t->lock);
    t->fn = fn;
    t->arg = arg;
    t->done = false;
    uint64_t one = 1;
    assert_int_equal(write(t->call_fd, &one, sizeof(one)), sizeof(one));
    while (!t->done)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

void loop_thread_stop(struct loop_thread *t)
{
    io_loop_stop(t->loop);
    pthread_join(t->thread, NULL);
    io_loop_free(t->loop);
    close(t->call_fd);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
}
