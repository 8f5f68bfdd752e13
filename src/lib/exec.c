/*
 * The host side of the cove-agent protocol (docs/agent-protocol.md) and the public cove_exec_*
 * API. Each exec owns its connection and one thread that moves its bytes; the caller's thread
 * only ever writes small control frames (SIGNAL, WINSIZE) under the exec's write lock.
 */
#include "exec.h"

#include "agent_proto.h"
#include "deadline.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EXEC_FREE_GRACE_MS 5000 /* how long cove_exec_free waits for EXIT after SIGKILL */

struct cove_exec {
    int fd;
    struct agent_reader reader;
    bool tty;
    int stdin_fd;
    int out_fds[2];     /* stdout, stderr; -1 when discarded or after EPIPE */
    bool stdin_done;    /* STDIN_EOF sent (or stdin unused) */
    uint64_t stdin_sent;
    uint64_t stdin_acked;
    uint32_t pid;       /* the command's pid in the guest */

    pthread_t thread;
    bool thread_started;
    int done_fd;        /* eventfd: readable once the exec has ended */
    int cancel_fd;      /* eventfd: tells the thread to give up on the connection */
    pthread_mutex_t write_lock; /* whole frames onto the socket */
    pthread_mutex_t state_lock;
    pthread_cond_t state_changed;
    cove_exec_status status;
};

/* ---- small helpers ---- */

static int fail(cove_error *error, int err, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(cove_error *error, int err, const char *format, ...)
{
    if (error) {
        va_list args;
        va_start(args, format);
        vsnprintf(error->message, sizeof(error->message), format, args);
        va_end(args);
    }
    return err;
}

/* An absolute time limit; timeout_ms -1 gives none. */
struct deadline {
    bool unlimited;
    struct timespec at;
};

static struct deadline deadline_in(int timeout_ms)
{
    return (struct deadline){.unlimited = timeout_ms < 0,
                             .at = deadline_after_ms(CLOCK_MONOTONIC, timeout_ms)};
}

static int deadline_ms(const struct deadline *d)
{
    if (d->unlimited)
        return -1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(d->at.tv_sec - now.tv_sec) * 1000 +
                 (d->at.tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

/* Waits for events on fd until the deadline: 0, -ETIMEDOUT, or a negative errno. */
static int wait_fd(int fd, short events, const struct deadline *d)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, deadline_ms(d));
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int wait_readable(int fd, void *deadline)
{
    return wait_fd(fd, POLLIN, deadline);
}

static int wait_writable(int fd, void *deadline)
{
    return wait_fd(fd, POLLOUT, deadline);
}

static int send_all(int fd, const uint8_t *data, size_t len, const struct deadline *d)
{
    return agent_write_all(fd, data, len, wait_writable, (void *)d);
}

/* The next frame before the deadline: 1, or a negative errno (-EPIPE: the stream ended). */
static int read_frame(int fd, struct agent_reader *reader, struct agent_frame *frame,
                      const struct deadline *d)
{
    int got = agent_read_frame(reader, fd, frame, wait_readable, (void *)d);
    return got == 0 ? -EPIPE : got;
}

static int send_frame(int fd, const struct agent_buf *buf, const struct deadline *d)
{
    return buf->overflow ? -EMSGSIZE : send_all(fd, buf->data, buf->len, d);
}

static int describe_stream_error(cove_error *error, int err, const char *doing)
{
    if (err == -ETIMEDOUT)
        return fail(error, err, "cove-agent did not answer in time (%s)", doing);
    if (err == -EPROTO || err == -EMSGSIZE)
        return fail(error, -EPROTO, "malformed message from cove-agent (%s)", doing);
    return fail(error, err, "connection to cove-agent lost (%s): %s", doing, strerror(-err));
}

/* An ERROR frame becomes the call's error; anything else unexpected is a protocol error. */
static int describe_reply(cove_error *error, const struct agent_frame *frame, const char *doing)
{
    struct agent_failure failure;
    if (frame->type == AGENT_ERROR && agent_parse_failure(frame, &failure) == 0) {
        int err = failure.err > 0 && failure.err < 4096 ? failure.err : EIO;
        return fail(error, -err, "cove-agent: %s", failure.message);
    }
    const char *name = agent_type_name(frame->type);
    return fail(error, -EPROTO, "unexpected %s from cove-agent (%s)", name ? name : "frame",
                doing);
}

/* Waits for OK. Returns 0 or a negative errno with error filled. */
static int expect_ok(int fd, struct agent_reader *reader, const struct deadline *d,
                     cove_error *error, const char *doing)
{
    struct agent_frame frame;
    int got = read_frame(fd, reader, &frame, d);
    if (got < 0)
        return describe_stream_error(error, got, doing);
    if (frame.type == AGENT_OK && agent_parse_empty(&frame) == 0)
        return 0;
    return describe_reply(error, &frame, doing);
}

/* HELLO both ways: the agent's version must be ours. */
static int handshake(int fd, struct agent_reader *reader, const struct deadline *d,
                     cove_error *error)
{
    struct agent_frame frame;
    int got = read_frame(fd, reader, &frame, d);
    if (got < 0)
        return describe_stream_error(error, got, "waiting for its HELLO");
    struct agent_hello theirs;
    if (frame.type != AGENT_HELLO)
        return describe_reply(error, &frame, "waiting for its HELLO");
    if (agent_parse_hello(&frame, &theirs) < 0)
        return fail(error, -EPROTO, "malformed HELLO from cove-agent");
    if (theirs.version != AGENT_PROTO_VERSION)
        return fail(error, -EPROTONOSUPPORT,
                    "cove-agent speaks protocol version %u, this libcove version %u: rebuild "
                    "the guest's initramfs with a matching cove-agent",
                    (unsigned)theirs.version, AGENT_PROTO_VERSION);

    uint8_t data[AGENT_HEADER_SIZE + 8];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_hello ours = {.version = AGENT_PROTO_VERSION, .frame_max = AGENT_FRAME_MAX};
    agent_encode_hello(&buf, &ours);
    int err = send_frame(fd, &buf, d);
    return err < 0 ? describe_stream_error(error, err, "sending HELLO") : 0;
}

/* Makes fd nonblocking and greets the agent. */
static int open_session(int fd, struct agent_reader *reader, const struct deadline *d,
                        cove_error *error)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return fail(error, -errno, "agent connection: %s", strerror(errno));
    if (agent_reader_init(reader) < 0)
        return fail(error, -ENOMEM, "out of memory");
    int err = handshake(fd, reader, d, error);
    if (err < 0)
        agent_reader_destroy(reader);
    return err;
}

/* ---- the exec's state ---- */

static void finish(cove_exec *exec, cove_exec_state state, int code, const char *message)
{
    pthread_mutex_lock(&exec->state_lock);
    if (exec->status.state == COVE_EXEC_RUNNING) {
        exec->status.state = state;
        exec->status.code = code;
        snprintf(exec->status.message, sizeof(exec->status.message), "%s", message);
        pthread_cond_broadcast(&exec->state_changed);
        uint64_t one = 1;
        ssize_t ignored = write(exec->done_fd, &one, sizeof(one));
        (void)ignored;
    }
    pthread_mutex_unlock(&exec->state_lock);
}

static bool running(cove_exec *exec)
{
    pthread_mutex_lock(&exec->state_lock);
    bool result = exec->status.state == COVE_EXEC_RUNNING;
    pthread_mutex_unlock(&exec->state_lock);
    return result;
}

/* Sends one frame from any thread; whole frames never interleave. */
static int send_locked(cove_exec *exec, const struct agent_buf *buf)
{
    const struct deadline none = {.unlimited = true};
    pthread_mutex_lock(&exec->write_lock);
    int err = send_frame(exec->fd, buf, &none);
    pthread_mutex_unlock(&exec->write_lock);
    return err;
}

/* ---- the exec thread ---- */

/*
 * Writes output to the caller's descriptor, which may be nonblocking or a pipe nobody reads.
 * Each write waits for room first and is at most PIPE_BUF bytes, which a writable pipe takes
 * without blocking, so cove_exec_free can always cancel a stuck consumer.
 */
static int write_output(cove_exec *exec, int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        struct pollfd fds[2] = {{.fd = fd, .events = POLLOUT},
                                {.fd = exec->cancel_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (fds[1].revents)
            return -ECANCELED;
        ssize_t n = write(fd, data, len < PIPE_BUF ? len : PIPE_BUF);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void deliver_output(cove_exec *exec, int which, const struct agent_frame *frame)
{
    int *fd = &exec->out_fds[which];
    if (*fd < 0)
        return;
    int err = write_output(exec, *fd, frame->payload, frame->length);
    if (err == 0)
        return;
    *fd = -1; /* that stream is dropped */
    /* Nobody reads that output any more (`cove run -- yes | head -1`): the command learns it
     * as a local one would, from SIGPIPE. Other errors only drop the stream. */
    if (err == -EPIPE)
        cove_exec_signal(exec, SIGPIPE);
}

static void deliver_exit(cove_exec *exec, const struct agent_frame *frame)
{
    struct agent_exit status;
    if (agent_parse_exit(frame, &status) < 0) {
        finish(exec, COVE_EXEC_LOST, EPROTO, "malformed EXIT from cove-agent");
        return;
    }
    if (status.kind == AGENT_EXIT_SIGNAL)
        finish(exec, COVE_EXEC_SIGNALED, status.code, "");
    else
        finish(exec, COVE_EXEC_EXITED, status.code, "");
}

static void deliver_ack(cove_exec *exec, const struct agent_frame *frame)
{
    uint32_t bytes = 0;
    if (agent_parse_u32(frame, &bytes) < 0 || bytes > exec->stdin_sent - exec->stdin_acked) {
        finish(exec, COVE_EXEC_LOST, EPROTO, "malformed STDIN_ACK from cove-agent");
        return;
    }
    exec->stdin_acked += bytes;
}

static void deliver_frame(cove_exec *exec, const struct agent_frame *frame)
{
    char message[COVE_ERROR_MAX];
    cove_error error;
    switch (frame->type) {
    case AGENT_STDOUT:
    case AGENT_STDERR:
        if (agent_parse_data(frame) < 0)
            finish(exec, COVE_EXEC_LOST, EPROTO, "oversized output frame from cove-agent");
        else
            deliver_output(exec, frame->type == AGENT_STDOUT ? 0 : 1, frame);
        return;
    case AGENT_STDIN_ACK:
        deliver_ack(exec, frame);
        return;
    case AGENT_EXIT:
        deliver_exit(exec, frame);
        return;
    default:
        describe_reply(&error, frame, "during the exec");
        snprintf(message, sizeof(message), "%s", error.message);
        finish(exec, COVE_EXEC_LOST, EPROTO, message);
        return;
    }
}

/* Delivers the complete frames already received (the handshake may have read ahead). */
static void deliver_pending(cove_exec *exec)
{
    struct agent_frame frame;
    int got;
    while (running(exec) && (got = agent_reader_next(&exec->reader, &frame)) != 0) {
        if (got < 0) {
            finish(exec, COVE_EXEC_LOST, EPROTO, "malformed frame from cove-agent");
            return;
        }
        deliver_frame(exec, &frame);
    }
}

static void read_agent(cove_exec *exec)
{
    ssize_t n = agent_reader_fill(&exec->reader, exec->fd);
    if (n == -EAGAIN)
        return;
    if (n <= 0)
        finish(exec, COVE_EXEC_LOST, n == 0 ? EPIPE : (int)-n,
               "connection to cove-agent lost before the command ended");
    else
        deliver_pending(exec);
}

static size_t stdin_room(const cove_exec *exec)
{
    uint64_t unacked = exec->stdin_sent - exec->stdin_acked;
    size_t room = AGENT_STDIN_WINDOW - (size_t)unacked;
    return room < AGENT_CHUNK_MAX ? room : AGENT_CHUNK_MAX;
}

/* Sends the next chunk of stdin (within the window), or STDIN_EOF at its end. */
static void forward_stdin(cove_exec *exec, uint8_t *frame_buf)
{
    uint8_t *chunk = frame_buf + AGENT_HEADER_SIZE;
    ssize_t n;
    do {
        n = read(exec->stdin_fd, chunk, stdin_room(exec));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    struct agent_buf buf;
    agent_buf_init(&buf, frame_buf, AGENT_HEADER_SIZE + AGENT_CHUNK_MAX);
    if (n <= 0) { /* end of file, or a read error, which ends the input too */
        agent_encode_empty(&buf, AGENT_STDIN_EOF);
        exec->stdin_done = true;
    } else {
        /* The chunk was read in place behind the header. */
        size_t start = agent_frame_begin(&buf, AGENT_STDIN);
        buf.len += (size_t)n;
        agent_frame_end(&buf, start);
        exec->stdin_sent += (uint64_t)n;
    }
    /* The agent stops reading once the command is gone and may close before our input is
     * all sent; its EXIT can still be on the way. So a failed send only ends the input: the
     * reading side tells an exit from a lost connection. */
    if (send_locked(exec, &buf) < 0)
        exec->stdin_done = true;
}

enum { SLOT_AGENT, SLOT_STDIN, SLOT_CANCEL, SLOT_COUNT };

static void *exec_thread(void *opaque)
{
    cove_exec *exec = opaque;
    uint8_t *frame_buf = malloc(AGENT_HEADER_SIZE + AGENT_CHUNK_MAX);
    if (frame_buf == NULL)
        finish(exec, COVE_EXEC_LOST, ENOMEM, "out of memory");
    deliver_pending(exec);
    while (running(exec)) {
        bool want_stdin = !exec->stdin_done && stdin_room(exec) > 0;
        struct pollfd fds[SLOT_COUNT] = {
            [SLOT_AGENT] = {.fd = exec->fd, .events = POLLIN},
            [SLOT_STDIN] = {.fd = want_stdin ? exec->stdin_fd : -1, .events = POLLIN},
            [SLOT_CANCEL] = {.fd = exec->cancel_fd, .events = POLLIN},
        };
        if (poll(fds, SLOT_COUNT, -1) < 0) {
            if (errno != EINTR)
                finish(exec, COVE_EXEC_LOST, errno, "poll failed in the exec thread");
            continue;
        }
        if (fds[SLOT_CANCEL].revents) {
            finish(exec, COVE_EXEC_LOST, ETIMEDOUT, "cove-agent did not end the command");
            break;
        }
        if (fds[SLOT_AGENT].revents)
            read_agent(exec);
        if (fds[SLOT_STDIN].revents && running(exec))
            forward_stdin(exec, frame_buf);
    }
    free(frame_buf);
    return NULL;
}

/* The thread runs with every signal blocked: a write to a closed pipe then fails with EPIPE
 * instead of raising SIGPIPE in the caller's process. */
static int start_thread(cove_exec *exec)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&exec->thread, NULL, exec_thread, exec);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    exec->thread_started = err == 0;
    return -err;
}

/* ---- starting ---- */

static cove_exec *exec_new(int fd, const cove_exec_options *options)
{
    cove_exec *exec = calloc(1, sizeof(*exec));
    if (exec == NULL)
        return NULL;
    exec->fd = fd;
    exec->tty = options->tty;
    exec->stdin_fd = options->stdin_fd;
    exec->stdin_done = options->stdin_fd < 0;
    exec->out_fds[0] = options->stdout_fd;
    exec->out_fds[1] = options->tty ? -1 : options->stderr_fd;
    exec->status.state = COVE_EXEC_RUNNING;
    exec->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    exec->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&exec->write_lock, NULL);
    pthread_mutex_init(&exec->state_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&exec->state_changed, &attr);
    pthread_condattr_destroy(&attr);
    if (exec->done_fd < 0 || exec->cancel_fd < 0) {
        exec->fd = -1; /* the caller still owns it on this path */
        cove_exec_free(exec);
        return NULL;
    }
    return exec;
}

static size_t count_entries(const char *const *list)
{
    size_t count = 0;
    while (list != NULL && list[count] != NULL)
        count++;
    return count;
}

static int check_options(const cove_exec_options *options, cove_error *error)
{
    if (options == NULL || options->argv == NULL || options->argv[0] == NULL ||
        options->argv[0][0] == '\0')
        return fail(error, -EINVAL, "exec: no command given (argv is empty)");
    if (count_entries(options->argv) > AGENT_MAX_ARGS)
        return fail(error, -E2BIG, "exec: more than %d arguments", AGENT_MAX_ARGS);
    if (count_entries(options->env) > AGENT_MAX_ENV)
        return fail(error, -E2BIG, "exec: more than %d environment entries", AGENT_MAX_ENV);
    for (size_t i = 0; options->env != NULL && options->env[i] != NULL; i++) {
        const char *equals = strchr(options->env[i], '=');
        if (equals == NULL || equals == options->env[i])
            return fail(error, -EINVAL, "exec: environment entry %zu is not NAME=VALUE", i);
    }
    if (options->cwd != NULL && options->cwd[0] != '/')
        return fail(error, -EINVAL, "exec: the working directory must be absolute");
    return 0;
}

static int send_exec(int fd, const cove_exec_options *options, const struct deadline *d,
                     cove_error *error)
{
    struct agent_exec_request *request = calloc(1, sizeof(*request));
    uint8_t *data = malloc(AGENT_FRAME_MAX);
    int err = request && data ? 0 : fail(error, -ENOMEM, "out of memory");
    if (err == 0) {
        request->flags = (options->tty ? AGENT_EXEC_TTY : 0) |
                         (options->stdin_fd >= 0 ? AGENT_EXEC_STDIN : 0);
        request->uid = options->uid;
        request->gid = options->gid;
        request->rows = options->rows;
        request->cols = options->cols;
        request->cwd = options->cwd ? options->cwd : "/";
        request->argc = (uint32_t)count_entries(options->argv);
        request->envc = (uint32_t)count_entries(options->env);
        memcpy(request->argv, options->argv, request->argc * sizeof(char *));
        if (request->envc > 0)
            memcpy(request->env, options->env, request->envc * sizeof(char *));
        struct agent_buf buf;
        agent_buf_init(&buf, data, AGENT_FRAME_MAX);
        if (!agent_encode_exec(&buf, request))
            err = fail(error, -E2BIG, "exec: arguments and environment exceed %u KiB, or an "
                                      "entry exceeds %u KiB", AGENT_FRAME_MAX / 1024,
                       AGENT_MAX_STRING / 1024);
        else if ((err = send_frame(fd, &buf, d)) < 0)
            describe_stream_error(error, err, "sending EXEC");
    }
    free(request);
    free(data);
    return err;
}

/* STARTED, or EXEC_FAILED (the exec then ends FAILED at once). */
static int await_start(cove_exec *exec, const struct deadline *d, cove_error *error)
{
    struct agent_frame frame;
    int got = read_frame(exec->fd, &exec->reader, &frame, d);
    if (got < 0)
        return describe_stream_error(error, got, "waiting for the command to start");
    struct agent_failure failure;
    if (frame.type == AGENT_STARTED && agent_parse_u32(&frame, &exec->pid) == 0)
        return 0;
    if (frame.type == AGENT_EXEC_FAILED && agent_parse_failure(&frame, &failure) == 0) {
        static const cove_exec_step steps[] = {
            [AGENT_STEP_EXEC] = COVE_EXEC_STEP_EXEC,
            [AGENT_STEP_CWD] = COVE_EXEC_STEP_WORKDIR,
            [AGENT_STEP_IDS] = COVE_EXEC_STEP_USER,
        };
        exec->status.step = steps[failure.step]; /* parse_failure bounds it */
        finish(exec, COVE_EXEC_FAILED, failure.err, failure.message);
        return 0;
    }
    return describe_reply(error, &frame, "waiting for the command to start");
}

cove_exec *exec_start(int agent_fd, const cove_exec_options *options, int timeout_ms,
                      cove_error *error)
{
    struct deadline d = deadline_in(timeout_ms);
    int err = check_options(options, error);
    cove_exec *exec = err == 0 ? exec_new(agent_fd, options) : NULL;
    if (exec == NULL) {
        if (err == 0)
            fail(error, -ENOMEM, "out of memory");
        close(agent_fd);
        return NULL;
    }
    err = open_session(agent_fd, &exec->reader, &d, error);
    if (err < 0) {
        cove_exec_free(exec);
        return NULL;
    }
    err = send_exec(agent_fd, options, &d, error);
    if (err == 0)
        err = await_start(exec, &d, error);
    if (err == 0 && running(exec) && (err = start_thread(exec)) < 0)
        fail(error, err, "cannot start the exec thread: %s", strerror(-err));
    if (err < 0) {
        finish(exec, COVE_EXEC_LOST, -err, "");
        cove_exec_free(exec);
        return NULL;
    }
    return exec;
}

/* ---- the public exec API ---- */

void cove_exec_options_init(cove_exec_options *options)
{
    memset(options, 0, sizeof(*options));
    options->cwd = "/";
    options->stdin_fd = -1;
    options->stdout_fd = -1;
    options->stderr_fd = -1;
}

/* SIGNAL and WINSIZE, from the caller's thread; -ESRCH once the exec has ended. */
static int send_control(cove_exec *exec, const struct agent_buf *buf)
{
    if (!running(exec))
        return -ESRCH;
    int err = send_locked(exec, buf);
    return err < 0 && !running(exec) ? -ESRCH : err;
}

int cove_exec_signal(cove_exec *exec, int signo)
{
    if (signo < 1 || signo > 64)
        return -EINVAL;
    uint8_t data[AGENT_HEADER_SIZE + 4];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_u32(&buf, AGENT_SIGNAL, (uint32_t)signo);
    return send_control(exec, &buf);
}

int cove_exec_resize(cove_exec *exec, uint16_t rows, uint16_t cols)
{
    if (!exec->tty)
        return -ENOTTY;
    if (rows == 0 || cols == 0)
        return -EINVAL;
    uint8_t data[AGENT_HEADER_SIZE + 4];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_winsize(&buf, rows, cols);
    return send_control(exec, &buf);
}

int cove_exec_fd(const cove_exec *exec)
{
    return exec->done_fd;
}

cove_exec_state cove_exec_wait(cove_exec *exec, int timeout_ms, cove_exec_status *status)
{
    struct deadline d = deadline_in(timeout_ms);
    pthread_mutex_lock(&exec->state_lock);
    while (exec->status.state == COVE_EXEC_RUNNING) {
        if (d.unlimited) {
            pthread_cond_wait(&exec->state_changed, &exec->state_lock);
        } else if (pthread_cond_timedwait(&exec->state_changed, &exec->state_lock, &d.at) ==
                   ETIMEDOUT) {
            break;
        }
    }
    cove_exec_state state = exec->status.state;
    if (status)
        *status = exec->status;
    pthread_mutex_unlock(&exec->state_lock);
    return state;
}

void cove_exec_free(cove_exec *exec)
{
    if (exec == NULL)
        return;
    if (exec->thread_started) {
        if (running(exec) && cove_exec_signal(exec, SIGKILL) == 0)
            cove_exec_wait(exec, EXEC_FREE_GRACE_MS, NULL);
        uint64_t one = 1;
        ssize_t ignored = write(exec->cancel_fd, &one, sizeof(one));
        (void)ignored;
        pthread_join(exec->thread, NULL);
    }
    if (exec->fd >= 0)
        close(exec->fd);
    if (exec->done_fd >= 0)
        close(exec->done_fd);
    if (exec->cancel_fd >= 0)
        close(exec->cancel_fd);
    agent_reader_destroy(&exec->reader);
    pthread_mutex_destroy(&exec->write_lock);
    pthread_mutex_destroy(&exec->state_lock);
    pthread_cond_destroy(&exec->state_changed);
    free(exec);
}

/* ---- one-shot requests ---- */

static int send_file_request(int fd, uint16_t type, const char *guest_path, uint32_t mode,
                             const struct deadline *d, cove_error *error)
{
    if (guest_path == NULL || guest_path[0] != '/')
        return fail(error, -EINVAL, "guest path must be absolute");
    if (strlen(guest_path) > AGENT_MAX_PATH)
        return fail(error, -ENAMETOOLONG, "guest path longer than %d bytes", AGENT_MAX_PATH);
    if (mode > 07777)
        return fail(error, -EINVAL, "file mode %o has more than permission bits", mode);
    uint8_t data[AGENT_HEADER_SIZE + 4 + AGENT_MAX_PATH + 1];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_file_request file = {.mode = mode, .path = guest_path};
    agent_encode_file(&buf, type, &file);
    int err = send_frame(fd, &buf, d);
    return err < 0 ? describe_stream_error(error, err, "sending the file request") : 0;
}

/* A send that failed may have been refused: the agent's ERROR, if any, says why. */
static int describe_send_failure(int fd, struct agent_reader *reader, cove_error *error,
                                 int err, const char *doing)
{
    struct deadline soon = deadline_in(1000);
    struct agent_frame frame;
    if (read_frame(fd, reader, &frame, &soon) > 0 && frame.type == AGENT_ERROR)
        return describe_reply(error, &frame, doing);
    return describe_stream_error(error, err, doing);
}

static int upload(int fd, struct agent_reader *reader, int src_fd, const struct deadline *d,
                  cove_error *error)
{
    uint8_t *data = malloc(AGENT_HEADER_SIZE + AGENT_CHUNK_MAX);
    if (data == NULL)
        return fail(error, -ENOMEM, "out of memory");
    int err = 0;
    for (;;) {
        ssize_t n = read(src_fd, data + AGENT_HEADER_SIZE, AGENT_CHUNK_MAX);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && (err = wait_fd(src_fd, POLLIN, d)) == 0)
            continue;
        if (n < 0) {
            err = fail(error, err < 0 ? err : -errno, "reading the file to copy in: %s",
                       strerror(err < 0 ? -err : errno));
            break;
        }
        struct agent_buf buf;
        agent_buf_init(&buf, data, AGENT_HEADER_SIZE + AGENT_CHUNK_MAX);
        size_t start = agent_frame_begin(&buf, n > 0 ? AGENT_DATA : AGENT_DATA_END);
        buf.len += (size_t)n;
        agent_frame_end(&buf, start);
        err = send_frame(fd, &buf, d);
        if (err < 0) {
            err = describe_send_failure(fd, reader, error, err, "sending the file");
            break;
        }
        if (n == 0) {
            err = expect_ok(fd, reader, d, error, "finishing the file");
            break;
        }
    }
    free(data);
    return err;
}

int agent_copy_in(int agent_fd, int src_fd, const char *guest_path, uint32_t mode, int timeout_ms,
                  cove_error *error)
{
    struct deadline d = deadline_in(timeout_ms);
    struct agent_reader reader;
    int err = open_session(agent_fd, &reader, &d, error);
    if (err == 0) {
        err = send_file_request(agent_fd, AGENT_FILE_PUT, guest_path, mode, &d, error);
        if (err == 0)
            err = expect_ok(agent_fd, &reader, &d, error, "creating the guest file");
        if (err == 0)
            err = upload(agent_fd, &reader, src_fd, &d, error);
        agent_reader_destroy(&reader);
    }
    close(agent_fd);
    return err;
}

static int download(int fd, struct agent_reader *reader, int dst_fd, const struct deadline *d,
                    cove_error *error)
{
    for (;;) {
        struct agent_frame frame;
        int got = read_frame(fd, reader, &frame, d);
        if (got < 0)
            return describe_stream_error(error, got, "receiving the file");
        if (frame.type == AGENT_DATA_END && agent_parse_empty(&frame) == 0)
            return 0;
        if (frame.type != AGENT_DATA || agent_parse_data(&frame) < 0)
            return describe_reply(error, &frame, "receiving the file");
        const struct deadline none = {.unlimited = true};
        int err = send_all(dst_fd, frame.payload, frame.length, &none);
        if (err < 0)
            return fail(error, err, "writing the copied file: %s", strerror(-err));
    }
}

int agent_copy_out(int agent_fd, const char *guest_path, int dst_fd, int timeout_ms,
                   cove_error *error)
{
    struct deadline d = deadline_in(timeout_ms);
    struct agent_reader reader;
    int err = open_session(agent_fd, &reader, &d, error);
    if (err == 0) {
        err = send_file_request(agent_fd, AGENT_FILE_GET, guest_path, 0, &d, error);
        if (err == 0)
            err = download(agent_fd, &reader, dst_fd, &d, error);
        agent_reader_destroy(&reader);
    }
    close(agent_fd);
    return err;
}

/* A request of one frame (encoded in buf) that the agent answers with OK; closes agent_fd. */
static int request_ok(int agent_fd, const struct agent_buf *buf, int timeout_ms, cove_error *error,
                      const char *sending, const char *doing)
{
    struct deadline d = deadline_in(timeout_ms);
    struct agent_reader reader;
    int err = open_session(agent_fd, &reader, &d, error);
    if (err == 0) {
        err = send_frame(agent_fd, buf, &d);
        if (err < 0)
            describe_stream_error(error, err, sending);
        else
            err = expect_ok(agent_fd, &reader, &d, error, doing);
        agent_reader_destroy(&reader);
    }
    close(agent_fd);
    return err;
}

int agent_shutdown(int agent_fd, int timeout_ms, cove_error *error)
{
    uint8_t data[AGENT_HEADER_SIZE];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_empty(&buf, AGENT_SHUTDOWN);
    return request_ok(agent_fd, &buf, timeout_ms, error, "sending SHUTDOWN",
                      "asking for the power-off");
}

/* The entropy comes from getrandom(), so no two restored guests get the same. */
static int fill_resume(struct agent_resume *resume, cove_error *error)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    resume->realtime_sec = now.tv_sec;
    resume->realtime_nsec = (uint32_t)now.tv_nsec;
    size_t got = 0;
    while (got < sizeof(resume->entropy)) {
        ssize_t n = getrandom(resume->entropy + got, sizeof(resume->entropy) - got, 0);
        if (n < 0 && errno != EINTR)
            return fail(error, -errno, "getrandom: %s", strerror(errno));
        got += n > 0 ? (size_t)n : 0;
    }
    return 0;
}

int agent_resume(int agent_fd, int timeout_ms, cove_error *error)
{
    struct agent_resume resume;
    int err = fill_resume(&resume, error);
    if (err < 0) {
        close(agent_fd);
        return err;
    }
    uint8_t data[AGENT_HEADER_SIZE + 64];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_resume(&buf, &resume);
    explicit_bzero(&resume, sizeof(resume));
    err = request_ok(agent_fd, &buf, timeout_ms, error, "sending RESUME",
                     "giving the restored guest its clock");
    explicit_bzero(data, sizeof(data));
    return err;
}
