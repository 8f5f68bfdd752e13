#include "io_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define IO_LOOP_BATCH 32

struct io_handler {
    int fd;
    io_handler_fn fn;
    void *opaque;
    bool removed; /* unlinked from epoll; freed once the current batch is dispatched */
};

struct io_loop {
    int epoll_fd;
    int wake_fd;
    atomic_bool stop;
    struct io_handler **handlers;
    size_t count;
    size_t capacity;
    io_prepare_fn prepare;
    void *prepare_opaque;

    pthread_mutex_t park_lock; /* guards the three below */
    pthread_cond_t park_changed;
    bool running;              /* inside io_loop_run */
    bool park_wanted;
    bool parked;
    atomic_bool park_pending; /* park_wanted, read without the lock on every round */
};

struct io_loop *io_loop_new(void)
{
    struct io_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    pthread_mutex_init(&loop->park_lock, NULL);
    pthread_cond_init(&loop->park_changed, NULL);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* The wake descriptor is the one entry whose data.ptr is NULL. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (loop->epoll_fd < 0 || loop->wake_fd < 0 ||
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &ev) < 0) {
        io_loop_free(loop);
        return NULL;
    }
    return loop;
}

void io_loop_free(struct io_loop *loop)
{
    if (!loop)
        return;
    for (size_t i = 0; i < loop->count; i++)
        free(loop->handlers[i]);
    free(loop->handlers);
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    pthread_cond_destroy(&loop->park_changed);
    pthread_mutex_destroy(&loop->park_lock);
    free(loop);
}

static struct io_handler *find_handler(struct io_loop *loop, int fd)
{
    for (size_t i = 0; i < loop->count; i++)
        if (loop->handlers[i]->fd == fd && !loop->handlers[i]->removed)
            return loop->handlers[i];
    return NULL;
}

int io_loop_add(struct io_loop *loop, int fd, uint32_t events, io_handler_fn fn, void *opaque)
{
    if (find_handler(loop, fd))
        return -EEXIST;
    if (loop->count == loop->capacity) {
        size_t capacity = loop->capacity ? 2 * loop->capacity : 8;
        struct io_handler **grown = realloc(loop->handlers, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        loop->handlers = grown;
        loop->capacity = capacity;
    }
    struct io_handler *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    *h = (struct io_handler){.fd = fd, .fn = fn, .opaque = opaque};
    struct epoll_event ev = {.events = events, .data.ptr = h};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(h);
        return err;
    }
    loop->handlers[loop->count++] = h;
    return 0;
}

int io_loop_set_events(struct io_loop *loop, int fd, uint32_t events)
{
    struct io_handler *h = find_handler(loop, fd);
    if (!h)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = h};
    return epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int io_loop_remove(struct io_loop *loop, int fd)
{
    struct io_handler *h = find_handler(loop, fd);
    if (!h)
        return -ENOENT;
    epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    h->removed = true;
    return 0;
}

void io_loop_set_prepare(struct io_loop *loop, io_prepare_fn fn, void *opaque)
{
    loop->prepare = fn;
    loop->prepare_opaque = opaque;
}

/* Frees handlers removed during the last batch; their events can no longer be pending. */
static void reap_removed(struct io_loop *loop)
{
    size_t kept = 0;
    for (size_t i = 0; i < loop->count; i++) {
        if (loop->handlers[i]->removed)
            free(loop->handlers[i]);
        else
            loop->handlers[kept++] = loop->handlers[i];
    }
    loop->count = kept;
}

static void dispatch(struct io_loop *loop, const struct epoll_event *events, int n)
{
    for (int i = 0; i < n; i++) {
        struct io_handler *h = events[i].data.ptr;
        if (!h) {
            uint64_t count;
            if (read(loop->wake_fd, &count, sizeof(count)) < 0) {
                /* already drained by an earlier wake-up */
            }
        } else if (!h->removed) {
            h->fn(h->opaque, events[i].events);
        }
    }
    reap_removed(loop);
}

static void set_running(struct io_loop *loop, bool running)
{
    pthread_mutex_lock(&loop->park_lock);
    loop->running = running;
    pthread_cond_broadcast(&loop->park_changed);
    pthread_mutex_unlock(&loop->park_lock);
}

/* Between rounds: held here while someone parks the loop. */
static void stay_parked(struct io_loop *loop)
{
    pthread_mutex_lock(&loop->park_lock);
    loop->parked = true;
    pthread_cond_broadcast(&loop->park_changed);
    while (loop->park_wanted && !atomic_load(&loop->stop))
        pthread_cond_wait(&loop->park_changed, &loop->park_lock);
    loop->parked = false;
    pthread_mutex_unlock(&loop->park_lock);
}

void io_loop_park(struct io_loop *loop)
{
    pthread_mutex_lock(&loop->park_lock);
    loop->park_wanted = true;
    atomic_store(&loop->park_pending, true);
    io_loop_wake(loop);
    while (loop->running && !loop->parked && !atomic_load(&loop->stop))
        pthread_cond_wait(&loop->park_changed, &loop->park_lock);
    pthread_mutex_unlock(&loop->park_lock);
}

void io_loop_unpark(struct io_loop *loop)
{
    pthread_mutex_lock(&loop->park_lock);
    loop->park_wanted = false;
    atomic_store(&loop->park_pending, false);
    pthread_cond_broadcast(&loop->park_changed);
    pthread_mutex_unlock(&loop->park_lock);
}

void io_loop_run(struct io_loop *loop)
{
    set_running(loop, true);
    while (!atomic_load(&loop->stop)) {
        if (atomic_load(&loop->park_pending))
            stay_parked(loop);
        bool busy = loop->prepare && loop->prepare(loop->prepare_opaque);
        struct epoll_event events[IO_LOOP_BATCH];
        int n = epoll_wait(loop->epoll_fd, events, IO_LOOP_BATCH, busy ? 0 : -1);
        if (n > 0)
            dispatch(loop, events, n);
    }
    set_running(loop, false);
}

void io_loop_wake(struct io_loop *loop)
{
    uint64_t one = 1;
    if (write(loop->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: a wake-up is pending anyway */
    }
}

void io_loop_stop(struct io_loop *loop)
{
    atomic_store(&loop->stop, true);
    io_loop_wake(loop);
    pthread_mutex_lock(&loop->park_lock);
    pthread_cond_broadcast(&loop->park_changed);
    pthread_mutex_unlock(&loop->park_lock);
}
