/*
 * cove_fs_serve: a share served to another VMM over a vhost-user socket, in the calling
 * thread: one io_loop with the listening socket, then the front-end's connection and the
 * queues' kick descriptors (virtio/vhost_user_fs.c), and the caller's stop descriptor.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cove/cove.h>

#include "config_internal.h"
#include "io_loop.h"
#include "virtio/vhost_user_fs.h"

/* A front-end sends each message whole and reads each reply; one that stops part-way, while
 * the loop waits on it alone, gets this long. */
#define FRONT_END_STALL_MS 5000

struct serve {
    struct io_loop *loop;
    const char *socket_path;
    int listen_fd, conn_fd;
    int stop_fd; /* the caller's; -1: none */
    struct vhost_user_fs *vu;
    int result;
    cove_error *error;
};

void cove_fs_serve_options_init(cove_fs_serve_options *options)
{
    *options = (cove_fs_serve_options){.cache = COVE_SHARE_CACHE_AUTO, .stop_fd = -1};
}

static int fail(cove_error *error, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error->message, sizeof(error->message), fmt, ap);
    va_end(ap);
    return err;
}

static void end(struct serve *s, int result)
{
    s->result = result;
    io_loop_stop(s->loop);
}

/*
 * Waits until the connection is ready for `events` (POLLIN, POLLOUT) in the middle of a
 * message, when the loop is not running: the caller's stop descriptor is watched here too, so
 * a stalled front-end cannot keep a stop from being seen. 0, -ECANCELED (stop), -ETIMEDOUT
 * (FRONT_END_STALL_MS without progress) or a negative errno.
 */
static int wait_for_conn(const struct serve *s, short events)
{
    /* poll ignores a negative descriptor: no stop_fd, nothing to watch. */
    struct pollfd fds[2] = {{.fd = s->conn_fd, .events = events},
                            {.fd = s->stop_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(fds, 2, FRONT_END_STALL_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        return fds[1].revents ? -ECANCELED : 0;
    }
}

/* The rest of a message that has begun: exactly len bytes, waiting (wait_for_conn) only when
 * none are there yet. 0, -EPROTO at the end of the stream, or wait_for_conn's errors. */
static int read_rest(const struct serve *s, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(s->conn_fd, buf + done, len - done, MSG_DONTWAIT);
        int r = 0;
        if (n < 0 && errno == EAGAIN)
            r = wait_for_conn(s, POLLIN);
        else if (n < 0 && errno != EINTR)
            return -errno;
        else if (n == 0)
            return -EPROTO;
        else if (n > 0)
            done += (size_t)n;
        if (r < 0)
            return r;
    }
    return 0;
}

static void take_fds(struct msghdr *mh, int *fds, unsigned *nfds)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*nfds < VHOST_USER_MAX_FDS)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
}

/* One message with its descriptors. 1, 0 at the front-end's end, or a negative errno. */
static int receive(const struct serve *s, struct vhost_user_msg *msg, int *fds, unsigned *nfds)
{
    int fd = s->conn_fd;
    uint8_t header[VHOST_USER_HEADER_SIZE];
    union {
        char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {header, sizeof(header)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof(control.buf)};
    *nfds = 0;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n == 0 ? 0 : -errno;
    take_fds(&mh, fds, nfds);
    int r = 0;
    if ((size_t)n < sizeof(header))
        r = read_rest(s, header + n, sizeof(header) - (size_t)n);
    if (r == 0) {
        memcpy(&msg->request, header, 4);
        memcpy(&msg->flags, header + 4, 4);
        memcpy(&msg->size, header + 8, 4);
        if (msg->size > VHOST_USER_MAX_PAYLOAD)
            r = -EMSGSIZE;
        else
            r = read_rest(s, msg->payload, msg->size);
    }
    if (r < 0) {
        for (unsigned i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return r;
    }
    return 1;
}

static int send_reply(const struct serve *s, const struct vhost_user_msg *reply)
{
    uint8_t buf[VHOST_USER_HEADER_SIZE + VHOST_USER_MAX_PAYLOAD];
    memcpy(buf, &reply->request, 4);
    memcpy(buf + 4, &reply->flags, 4);
    memcpy(buf + 8, &reply->size, 4);
    memcpy(buf + VHOST_USER_HEADER_SIZE, reply->payload, reply->size);
    size_t len = VHOST_USER_HEADER_SIZE + reply->size, done = 0;
    while (done < len) {
        ssize_t n = send(s->conn_fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        int r = 0;
        if (n < 0 && errno == EAGAIN)
            r = wait_for_conn(s, POLLOUT);
        else if (n < 0 && errno != EINTR)
            return -errno;
        else if (n > 0)
            done += (size_t)n;
        if (r < 0)
            return r;
    }
    return 0;
}

/* What went wrong with the connection, as the line the caller shows; stalled: what the
 * front-end did not do, for -ETIMEDOUT. */
static int connection_failed(struct serve *s, int err, const char *doing, const char *stalled)
{
    if (err == -ETIMEDOUT)
        return fail(s->error, -EPROTO, "vhost-user: %s: the front-end %s for %d s", doing,
                    stalled, FRONT_END_STALL_MS / 1000);
    return fail(s->error, err == -EMSGSIZE ? -EPROTO : err, "vhost-user: %s: %s", doing,
                strerror(-err));
}

static void on_message(void *opaque, uint32_t events)
{
    struct serve *s = opaque;
    (void)events;
    struct vhost_user_msg msg, reply;
    int fds[VHOST_USER_MAX_FDS];
    unsigned nfds;
    int r = receive(s, &msg, fds, &nfds);
    /* At the front-end's end, or a stop seen mid-message: the session is over. */
    if (r == 0 || r == -ECANCELED) {
        end(s, 0);
        return;
    }
    if (r < 0) {
        end(s, connection_failed(s, r, "reading the front-end's message",
                                 "sent part of a message, then nothing"));
        return;
    }
    r = vhost_user_fs_message(s->vu, &msg, fds, nfds, &reply, s->error->message,
                              sizeof(s->error->message));
    if (r == 1)
        r = send_reply(s, &reply);
    if (r == -ECANCELED)
        end(s, 0);
    else if (r == -EPROTO)
        end(s, r); /* vhost_user_fs_message wrote the line */
    else if (r < 0)
        end(s, connection_failed(s, r, "answering the front-end", "did not read its reply"));
}

static void on_accept(void *opaque, uint32_t events)
{
    struct serve *s = opaque;
    (void)events;
    int conn = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return; /* the front-end gave up connecting; wait for the next */
    /* One front-end per server, as with virtiofsd: nobody else may connect. */
    io_loop_remove(s->loop, s->listen_fd);
    close(s->listen_fd);
    s->listen_fd = -1;
    unlink(s->socket_path);
    s->conn_fd = conn;
    int r = io_loop_add(s->loop, conn, EPOLLIN, on_message, s);
    if (r < 0)
        end(s, fail(s->error, r, "vhost-user: watching the connection: %s", strerror(-r)));
}

static void on_stop(void *opaque, uint32_t events)
{
    (void)events;
    end(opaque, 0);
}

static int listen_at(const char *path, cove_error *error)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return fail(error, -ENAMETOOLONG, "socket '%s': the path is longer than %zu bytes", path,
                    sizeof(addr.sun_path) - 1);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(error, -errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
        int err = errno;
        close(fd);
        if (err == EADDRINUSE)
            return fail(error, -err, "socket '%s': the path exists (remove it, or choose "
                        "another)", path);
        return fail(error, -err, "socket '%s': %s", path, strerror(err));
    }
    return fd;
}

static int serve_loop(struct serve *s, int stop_fd)
{
    int r = io_loop_add(s->loop, s->listen_fd, EPOLLIN, on_accept, s);
    if (r == 0 && stop_fd >= 0)
        r = io_loop_add(s->loop, stop_fd, EPOLLIN, on_stop, s);
    if (r < 0)
        return fail(s->error, r, "vhost-user: %s", strerror(-r));
    io_loop_run(s->loop);
    return s->result;
}

int cove_fs_serve(const cove_fs_serve_options *options, cove_error *error)
{
    cove_error scratch;
    if (!error)
        error = &scratch;
    if (!options || !options->socket_path || !options->host_dir)
        return fail(error, -EINVAL, "%s", "cove_fs_serve: a socket path and a directory are needed");
    const struct fuse_server_options fuse = {.read_only = options->read_only,
                                             .cache = share_fuse_cache(options->cache)};
    struct fuse_server *server;
    int r = fuse_server_new(options->host_dir, &fuse, &server);
    if (r < 0)
        return fail(error, r, "directory '%s': %s", options->host_dir, strerror(-r));
    struct serve s = {.socket_path = options->socket_path, .listen_fd = -1, .conn_fd = -1,
                      .stop_fd = options->stop_fd, .error = error};
    s.loop = io_loop_new();
    s.vu = s.loop ? vhost_user_fs_new(server, s.loop) : NULL;
    if (!s.vu)
        r = fail(error, -ENOMEM, "%s", "out of memory");
    else if ((s.listen_fd = listen_at(options->socket_path, error)) < 0)
        r = s.listen_fd;
    else
        r = serve_loop(&s, options->stop_fd);
    if (s.listen_fd >= 0) {
        close(s.listen_fd);
        unlink(options->socket_path); /* never accepted: the socket file is still ours */
    }
    vhost_user_fs_free(s.vu); /* before the loop: it takes the kick descriptors off it */
    if (s.conn_fd >= 0) {
        io_loop_remove(s.loop, s.conn_fd);
        close(s.conn_fd);
    }
    io_loop_free(s.loop);
    fuse_server_destroy(server);
    return r;
}
