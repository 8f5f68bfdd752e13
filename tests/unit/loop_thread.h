/*
 * An io_loop on a thread of its own, as the VM's I/O thread runs it, for tests of backends
 * that must only be touched from that thread: loop_thread_call() runs a function there and
 * waits until it has returned.
 */
#ifndef COVE_TESTS_LOOP_THREAD_H
#define COVE_TESTS_LOOP_THREAD_H

#include <pthread.h>
#include <stdbool.h>

#include "io_loop.h"

struct loop_thread {
    struct io_loop *loop;
    pthread_t thread;
    int call_fd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void (*fn)(void *arg); /* the call waiting for the thread */
    void *arg;
    bool done;
};

/* Asserts (cmocka) on any failure. */
void loop_thread_start(struct loop_thread *t);
void loop_thread_call(struct loop_thread *t, void (*fn)(void *arg), void *arg);
/* Stops the loop, joins the thread and frees the loop; whatever is still on it is not called. */
void loop_thread_stop(struct loop_thread *t);

#endif
