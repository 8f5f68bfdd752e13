#include "exec_server.h"

#include "agent_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SERVER_PATH "/bin:/sbin:/usr/bin:/usr/sbin"
#define SERVER_DRAIN_GRACE_MS 1000 /* output drained after the command exited, at most */
#define SERVER_REAP_POLL_MS 50     /* without pidfds, how often to look for the exit */
/* The outbound queue: two output frames plus room for the small control frames. */
#define SERVER_OUT_CAP (2 * (AGENT_CHUNK_MAX + AGENT_HEADER_SIZE) + 4096)
#define SERVER_OUT_FRAME (AGENT_CHUNK_MAX + AGENT_HEADER_SIZE)
#define TTY_EOF_CHAR '\004' /* VEOF: end of input for a command reading the tty */

extern char **environ;

struct server {
    int fd;
    struct agent_reader reader;
};

/* ---- blocking frame I/O on the (nonblocking) socket ---- */

/* The server has no time limits: the host going away ends every wait. */
static int wait_readable(int fd, void *opaque)
{
    (void)opaque;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, -1) < 0 && errno != EINTR ? -errno : 0;
}

static int wait_writable(int fd, void *opaque)
{
    (void)opaque;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, -1) < 0 && errno != EINTR ? -errno : 0;
}

static int send_buf(struct server *s, const struct agent_buf *buf)
{
    return buf->overflow ? -EMSGSIZE
                         : agent_write_all(s->fd, buf->data, buf->len, wait_writable, NULL);
}

/* The next frame: 1, 0 at end of stream, or a negative errno (-EPROTO: malformed). */
static int read_frame(struct server *s, struct agent_frame *frame)
{
    return agent_read_frame(&s->reader, s->fd, frame, wait_readable, NULL);
}

static int send_failure(struct server *s, uint16_t type, int err, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
static int send_failure(struct server *s, uint16_t type, int err, const char *format, ...)
{
    char message[AGENT_MAX_MESSAGE + 1];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    uint8_t data[AGENT_HEADER_SIZE + 4 + sizeof(message)];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_failure failure = {.err = err, .step = AGENT_STEP_EXEC, .message = message};
    agent_encode_failure(&buf, type, &failure);
    return send_buf(s, &buf);
}

static int send_empty(struct server *s, uint16_t type)
{
    uint8_t data[AGENT_HEADER_SIZE];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_empty(&buf, type);
    return send_buf(s, &buf);
}

/* Answers a message the protocol does not allow here; the connection then ends. */
static enum exec_server_result reject(struct server *s, const struct agent_frame *frame,
                                      const char *where)
{
    const char *name = agent_type_name(frame->type);
    send_failure(s, AGENT_ERROR, EPROTO, "malformed or unexpected %s %s", name ? name : "frame",
                 where);
    return EXEC_SERVER_DONE;
}

static enum exec_server_result reject_stream(struct server *s, int err)
{
    if (err == -EPROTO || err == -EMSGSIZE)
        send_failure(s, AGENT_ERROR, -err, "malformed frame: %s", strerror(-err));
    return EXEC_SERVER_DONE;
}

/* ---- the command's process ---- */

/* The protocol's step numbers, so a child's report goes out as it is. */
enum child_stage { STAGE_EXEC = AGENT_STEP_EXEC, STAGE_CWD = AGENT_STEP_CWD, STAGE_IDS = AGENT_STEP_IDS };

/* What a child that could not exec writes to the report pipe. */
struct child_report {
    int stage;
    int err;
};

struct command {
    const struct agent_exec_request *request;
    char **envp;
    char slave_path[64]; /* tty only */
    int stdin_read;      /* the child's ends; -1 when unused */
    int stdout_write;
    int stderr_write;
    int report_write;
};

static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* PID 1 blocks SIGCHLD for its signalfd */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
}

static void report_and_exit(int fd, enum child_stage stage)
{
    struct child_report report = {.stage = stage, .err = errno};
    ssize_t ignored = write(fd, &report, sizeof(report));
    (void)ignored;
    _exit(127);
}

static void attach_tty(const struct command *cmd)
{
    int slave = open(cmd->slave_path, O_RDWR);
    if (slave < 0)
        report_and_exit(cmd->report_write, STAGE_EXEC);
    ioctl(slave, TIOCSCTTY, 0);
    struct winsize size = {.ws_row = cmd->request->rows, .ws_col = cmd->request->cols};
    ioctl(slave, TIOCSWINSZ, &size);
    for (int fd = 0; fd <= 2; fd++)
        dup2(slave, fd);
    if (slave > 2)
        close(slave);
}

static void attach_pipes(const struct command *cmd)
{
    int in = cmd->stdin_read >= 0 ? cmd->stdin_read : open("/dev/null", O_RDONLY);
    dup2(in, STDIN_FILENO);
    dup2(cmd->stdout_write, STDOUT_FILENO);
    dup2(cmd->stderr_write, STDERR_FILENO);
}

/* Only a change of identity needs the calls (and the privilege they require). */
static void switch_ids(const struct command *cmd)
{
    gid_t gid = cmd->request->gid;
    uid_t uid = cmd->request->uid;
    if (gid == getgid() && uid == getuid())
        return;
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        report_and_exit(cmd->report_write, STAGE_IDS);
}

static void run_child(const struct command *cmd)
{
    reset_signals();
    setsid();
    if (cmd->request->flags & AGENT_EXEC_TTY)
        attach_tty(cmd);
    else
        attach_pipes(cmd);
    switch_ids(cmd);
    if (chdir(cmd->request->cwd) < 0)
        report_and_exit(cmd->report_write, STAGE_CWD);
    environ = cmd->envp; /* execvp searches the PATH of the new environment */
    execvp(cmd->request->argv[0], (char *const *)cmd->request->argv);
    report_and_exit(cmd->report_write, STAGE_EXEC);
}

static bool same_name(const char *a, const char *b)
{
    size_t len = strcspn(a, "=");
    return strncmp(a, b, len) == 0 && b[len] == '=';
}

/* The agent's defaults, overridden or extended by the request's entries (never logged). */
static char **build_env(const struct agent_exec_request *request)
{
    char **envp = calloc(3 + request->envc + 1, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    size_t count = 0;
    envp[count++] = "PATH=" SERVER_PATH;
    envp[count++] = "HOME=/root";
    if (request->flags & AGENT_EXEC_TTY)
        envp[count++] = "TERM=xterm-256color";
    for (uint32_t i = 0; i < request->envc; i++) {
        size_t at = 0;
        while (at < count && !same_name(request->env[i], envp[at]))
            at++;
        envp[at] = (char *)request->env[i];
        if (at == count)
            count++;
    }
    envp[count] = NULL;
    return envp;
}

/* ---- one exec ---- */

struct exec_session {
    struct server *s;
    bool tty;
    pid_t pid;
    int pidfd;        /* -1 without pidfd support: the exit is then polled */
    int stdin_fd;     /* the command's stdin (pipe or pty master); -1 once closed */
    int out_fds[2];   /* stdout and stderr (tty: the master and -1); -1 once at EOF */
    int master_fd;    /* tty only */
    bool stdin_used;
    bool stdin_eof;   /* the host sent STDIN_EOF */
    bool stdin_gone;  /* the command closed its stdin: further input is dropped */
    uint8_t *stdin_buf;
    size_t stdin_start;
    size_t stdin_len;
    uint64_t received; /* STDIN bytes from the host */
    uint64_t acked;    /* of those, acknowledged (queued as STDIN_ACK) */
    uint64_t written;  /* of those, written to the command or dropped */
    bool reaped;
    int wait_status;
    struct timespec drain_deadline;
    bool exit_queued;
    uint8_t *out;
    size_t out_len;
};

static int open_pty(struct exec_session *x, struct command *cmd)
{
    x->master_fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (x->master_fd < 0 || grantpt(x->master_fd) < 0 || unlockpt(x->master_fd) < 0 ||
        ptsname_r(x->master_fd, cmd->slave_path, sizeof(cmd->slave_path)) != 0)
        return -errno;
    x->stdin_fd = dup(x->master_fd); /* its own descriptor so stdin can close independently */
    x->out_fds[0] = x->master_fd;
    x->out_fds[1] = -1;
    return x->stdin_fd < 0 ? -errno : 0;
}

static int make_pipe(int *read_end, int *write_end)
{
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) < 0)
        return -errno;
    *read_end = ends[0];
    *write_end = ends[1];
    return 0;
}

static int open_pipes(struct exec_session *x, struct command *cmd)
{
    int err = 0;
    if (x->stdin_used)
        err = make_pipe(&cmd->stdin_read, &x->stdin_fd);
    if (err == 0)
        err = make_pipe(&x->out_fds[0], &cmd->stdout_write);
    if (err == 0)
        err = make_pipe(&x->out_fds[1], &cmd->stderr_write);
    return err;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void close_child_ends(struct command *cmd)
{
    close_fd(&cmd->stdin_read);
    close_fd(&cmd->stdout_write);
    close_fd(&cmd->stderr_write);
    close_fd(&cmd->report_write);
}

static void format_failure(const struct child_report *report, const struct command *cmd,
                           char *buf, size_t len)
{
    const char *name = cmd->request->argv[0];
    if (report->stage == STAGE_IDS)
        snprintf(buf, len, "cannot switch to uid %u gid %u: %s", (unsigned)cmd->request->uid,
                 (unsigned)cmd->request->gid, strerror(report->err));
    else if (report->stage == STAGE_CWD)
        snprintf(buf, len, "cannot change to directory %.200s: %s", cmd->request->cwd,
                 strerror(report->err));
    else if (report->err == ENOENT)
        snprintf(buf, len, "command not found: %.200s", name);
    else if (report->err == EACCES)
        snprintf(buf, len, "permission denied (not executable?): %.200s", name);
    else
        snprintf(buf, len, "cannot execute %.200s: %s", name, strerror(report->err));
}

static int send_exec_failed(struct server *s, const struct child_report *report,
                            const char *message)
{
    uint8_t data[AGENT_HEADER_SIZE + 8 + AGENT_MAX_MESSAGE + 1];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_failure failure = {
        .err = report->err, .step = (uint32_t)report->stage, .message = message};
    agent_encode_failure(&buf, AGENT_EXEC_FAILED, &failure);
    return send_buf(s, &buf);
}

/* Forks the command. Returns 0 when it runs, 1 when it could not start (EXEC_FAILED was
 * sent), or a negative errno. */
static int spawn(struct exec_session *x, const struct agent_exec_request *request)
{
    struct command cmd = {.request = request, .stdin_read = -1, .stdout_write = -1,
                          .stderr_write = -1, .report_write = -1};
    int report_read = -1;
    int err = x->tty ? open_pty(x, &cmd) : open_pipes(x, &cmd);
    if (err == 0)
        err = make_pipe(&report_read, &cmd.report_write);
    cmd.envp = build_env(request);
    if (err == 0 && cmd.envp == NULL)
        err = -ENOMEM;
    if (err == 0) {
        x->pid = fork();
        if (x->pid == 0)
            run_child(&cmd);
        if (x->pid < 0)
            err = -errno;
    }
    close_child_ends(&cmd);
    free(cmd.envp);
    if (err < 0) {
        close_fd(&report_read);
        return err;
    }

    struct child_report report;
    ssize_t n;
    do {
        n = read(report_read, &report, sizeof(report));
    } while (n < 0 && errno == EINTR);
    close(report_read);
    if (n != (ssize_t)sizeof(report))
        return 0; /* the exec closed the pipe: the command runs */

    while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
        continue;
    x->pid = -1;
    char message[AGENT_MAX_MESSAGE + 1];
    format_failure(&report, &cmd, message, sizeof(message));
    send_exec_failed(x->s, &report, message);
    return 1;
}

static void session_close(struct exec_session *x)
{
    if (x->master_fd == x->out_fds[0])
        x->master_fd = -1; /* one descriptor, closed once */
    close_fd(&x->stdin_fd);
    close_fd(&x->out_fds[0]);
    close_fd(&x->out_fds[1]);
    close_fd(&x->master_fd);
    close_fd(&x->pidfd);
    free(x->stdin_buf);
    free(x->out);
}

/* Kills whatever is left of the command and reaps it: the host is gone or misbehaved. */
static void abandon(struct exec_session *x)
{
    if (x->pid > 0 && !x->reaped) {
        kill(-x->pid, SIGKILL);
        kill(x->pid, SIGKILL);
        while (waitpid(x->pid, NULL, 0) < 0 && errno == EINTR)
            continue;
        x->reaped = true;
    }
}

static void now_plus(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static int ms_until(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

static void try_reap(struct exec_session *x)
{
    if (x->reaped)
        return;
    pid_t got = waitpid(x->pid, &x->wait_status, WNOHANG);
    if (got != x->pid)
        return;
    x->reaped = true;
    close_fd(&x->pidfd);
    /* What the command left behind goes too, so a daemonised grandchild holding the pipes
     * cannot keep the exec open past the grace. */
    kill(-x->pid, SIGKILL);
    now_plus(&x->drain_deadline, SERVER_DRAIN_GRACE_MS);
}

static struct agent_buf out_buf(struct exec_session *x)
{
    struct agent_buf buf;
    agent_buf_init(&buf, x->out, SERVER_OUT_CAP);
    buf.len = x->out_len;
    return buf;
}

/* Queues the acknowledgement of every STDIN byte written since the last one. */
static void queue_ack(struct exec_session *x)
{
    if (x->written == x->acked)
        return;
    struct agent_buf buf = out_buf(x);
    if (agent_encode_u32(&buf, AGENT_STDIN_ACK, (uint32_t)(x->written - x->acked))) {
        x->out_len = buf.len;
        x->acked = x->written;
    }
}

static void queue_exit(struct exec_session *x)
{
    struct agent_exit status = {.kind = AGENT_EXIT_CODE, .code = 0};
    if (WIFSIGNALED(x->wait_status)) {
        status.kind = AGENT_EXIT_SIGNAL;
        status.code = WTERMSIG(x->wait_status);
    } else {
        status.code = WEXITSTATUS(x->wait_status);
    }
    struct agent_buf buf = out_buf(x);
    if (agent_encode_exit(&buf, &status)) {
        x->out_len = buf.len;
        x->exit_queued = true;
    }
}

static int flush_out(struct exec_session *x)
{
    while (x->out_len > 0) {
        ssize_t n = send(x->s->fd, x->out, x->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0)
            return -errno;
        memmove(x->out, x->out + n, x->out_len - (size_t)n);
        x->out_len -= (size_t)n;
    }
    return 0;
}

/* Drops buffered and future input: the command will not read it. */
static void drop_stdin(struct exec_session *x)
{
    x->written += x->stdin_len;
    x->stdin_len = 0;
    x->stdin_gone = true;
    close_fd(&x->stdin_fd);
}

static void write_stdin(struct exec_session *x)
{
    while (x->stdin_len > 0) {
        ssize_t n = write(x->stdin_fd, x->stdin_buf + x->stdin_start, x->stdin_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) { /* EPIPE: the command closed its stdin; EIO: the tty went away */
            drop_stdin(x);
            return;
        }
        x->stdin_start += (size_t)n;
        x->stdin_len -= (size_t)n;
        x->written += (uint64_t)n;
    }
    x->stdin_start = 0;
    if (x->stdin_eof && x->stdin_fd >= 0) {
        if (x->tty) {
            char eof = TTY_EOF_CHAR;
            if (write(x->stdin_fd, &eof, 1) < 0 && errno == EAGAIN)
                return;
        }
        close_fd(&x->stdin_fd);
    }
}

static int take_stdin(struct exec_session *x, const struct agent_frame *frame)
{
    if (!x->stdin_used || x->stdin_eof || agent_parse_data(frame) < 0)
        return -EPROTO;
    if (x->received - x->acked + frame->length > AGENT_STDIN_WINDOW)
        return -EPROTO; /* the host ignored the window */
    x->received += frame->length;
    if (x->stdin_gone || x->reaped) {
        x->written += frame->length;
        return 0;
    }
    if (x->stdin_start > 0) {
        memmove(x->stdin_buf, x->stdin_buf + x->stdin_start, x->stdin_len);
        x->stdin_start = 0;
    }
    memcpy(x->stdin_buf + x->stdin_len, frame->payload, frame->length);
    x->stdin_len += frame->length;
    write_stdin(x);
    return 0;
}

static int handle_frame(struct exec_session *x, const struct agent_frame *frame)
{
    int signo;
    uint16_t rows, cols;
    switch (frame->type) {
    case AGENT_STDIN:
        return take_stdin(x, frame);
    case AGENT_STDIN_EOF:
        if (!x->stdin_used || x->stdin_eof || agent_parse_empty(frame) < 0)
            return -EPROTO;
        x->stdin_eof = true;
        if (x->stdin_fd >= 0)
            write_stdin(x);
        return 0;
    case AGENT_SIGNAL:
        if (agent_parse_signal(frame, &signo) < 0)
            return -EPROTO;
        if (!x->reaped)
            kill(-x->pid, signo);
        return 0;
    case AGENT_WINSIZE:
        if (agent_parse_winsize(frame, &rows, &cols) < 0)
            return -EPROTO;
        if (x->tty) {
            struct winsize size = {.ws_row = rows, .ws_col = cols};
            ioctl(x->master_fd, TIOCSWINSZ, &size);
        }
        return 0;
    default:
        return -EPROTO;
    }
}

/* Reads what the host sent. Returns 0, -EPIPE when it went away, -EPROTO when it broke the
 * protocol (an ERROR was sent). */
static int read_host(struct exec_session *x)
{
    ssize_t n = agent_reader_fill(&x->s->reader, x->s->fd);
    if (n == -EAGAIN)
        return 0;
    if (n <= 0)
        return -EPIPE;
    struct agent_frame frame;
    int got;
    while ((got = agent_reader_next(&x->s->reader, &frame)) > 0) {
        if (handle_frame(x, &frame) < 0) {
            reject(x->s, &frame, "during an exec");
            return -EPROTO;
        }
    }
    if (got < 0) {
        reject_stream(x->s, got);
        return -EPROTO;
    }
    return 0;
}

/* Moves one chunk of the command's output into the outbound queue. */
static void read_output(struct exec_session *x, int which)
{
    uint8_t chunk[AGENT_CHUNK_MAX];
    ssize_t n;
    do {
        n = read(x->out_fds[which], chunk, sizeof(chunk));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) { /* EOF, or EIO from a pty whose slave is closed everywhere */
        if (x->out_fds[which] == x->master_fd)
            x->master_fd = -1;
        close_fd(&x->out_fds[which]);
        return;
    }
    struct agent_buf buf = out_buf(x);
    agent_encode_data(&buf, which == 0 ? AGENT_STDOUT : AGENT_STDERR, chunk, (size_t)n);
    x->out_len = buf.len;
}

static bool output_open(const struct exec_session *x)
{
    return x->out_fds[0] >= 0 || x->out_fds[1] >= 0;
}

enum { SLOT_SOCKET, SLOT_STDIN, SLOT_STDOUT, SLOT_STDERR, SLOT_PID, SLOT_COUNT };

static int poll_timeout(const struct exec_session *x)
{
    if (x->reaped)
        return x->exit_queued ? -1 : ms_until(&x->drain_deadline);
    return x->pidfd >= 0 ? -1 : SERVER_REAP_POLL_MS;
}

static void fill_pollfds(const struct exec_session *x, struct pollfd *fds)
{
    bool room = SERVER_OUT_CAP - x->out_len >= SERVER_OUT_FRAME + 64;
    fds[SLOT_SOCKET] = (struct pollfd){.fd = x->s->fd,
                                       .events = (short)(POLLIN | (x->out_len ? POLLOUT : 0))};
    fds[SLOT_STDIN] = (struct pollfd){.fd = x->stdin_len > 0 ? x->stdin_fd : -1,
                                      .events = POLLOUT};
    fds[SLOT_STDOUT] = (struct pollfd){.fd = room ? x->out_fds[0] : -1, .events = POLLIN};
    fds[SLOT_STDERR] = (struct pollfd){.fd = room ? x->out_fds[1] : -1, .events = POLLIN};
    fds[SLOT_PID] = (struct pollfd){.fd = x->reaped ? -1 : x->pidfd, .events = POLLIN};
}

/* The exec's event loop: until EXIT is on its way, or the host is gone. */
static int run_session(struct exec_session *x)
{
    for (;;) {
        queue_ack(x);
        if (x->reaped && !x->exit_queued && (!output_open(x) || ms_until(&x->drain_deadline) == 0))
            queue_exit(x);
        if (flush_out(x) < 0)
            return -EPIPE;
        if (x->exit_queued && x->out_len == 0)
            return 0;

        struct pollfd fds[SLOT_COUNT];
        fill_pollfds(x, fds);
        if (poll(fds, SLOT_COUNT, poll_timeout(x)) < 0 && errno != EINTR)
            return -errno;
        if (fds[SLOT_SOCKET].revents & (POLLIN | POLLHUP | POLLERR)) {
            int err = read_host(x);
            if (err < 0)
                return err;
        }
        if (fds[SLOT_STDIN].revents)
            write_stdin(x);
        for (int i = 0; i < 2; i++)
            if (fds[SLOT_STDOUT + i].revents && x->out_fds[i] >= 0)
                read_output(x, i);
        try_reap(x);
    }
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#else
    (void)pid;
    return -1;
#endif
}

static void set_nonblocking(int fd)
{
    if (fd >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static enum exec_server_result run_exec(struct server *s, struct agent_exec_request *request)
{
    struct exec_session x = {.s = s, .tty = request->flags & AGENT_EXEC_TTY, .pid = -1,
                             .pidfd = -1, .stdin_fd = -1, .out_fds = {-1, -1}, .master_fd = -1,
                             .stdin_used = request->flags & AGENT_EXEC_STDIN};
    if (request->rows == 0 || request->cols == 0) {
        request->rows = 24;
        request->cols = 80;
    }
    x.stdin_buf = malloc(AGENT_STDIN_WINDOW);
    x.out = malloc(SERVER_OUT_CAP);
    int err = x.stdin_buf && x.out ? spawn(&x, request) : -ENOMEM;
    if (err < 0)
        send_failure(s, AGENT_ERROR, -err, "cannot start the command: %s", strerror(-err));
    if (err != 0) {
        session_close(&x);
        return EXEC_SERVER_DONE;
    }

    x.pidfd = open_pidfd(x.pid);
    set_nonblocking(x.stdin_fd);
    set_nonblocking(x.out_fds[0]);
    set_nonblocking(x.out_fds[1]);
    struct agent_buf buf = out_buf(&x);
    agent_encode_u32(&buf, AGENT_STARTED, (uint32_t)x.pid);
    x.out_len = buf.len;
    if (run_session(&x) < 0)
        abandon(&x);
    session_close(&x);
    return EXEC_SERVER_DONE;
}

static enum exec_server_result serve_exec(struct server *s, const struct agent_frame *frame)
{
    /* 16 KiB of pointers: kept off the stack */
    struct agent_exec_request *request = malloc(sizeof(*request));
    if (request == NULL) {
        send_failure(s, AGENT_ERROR, ENOMEM, "out of memory");
        return EXEC_SERVER_DONE;
    }
    enum exec_server_result result = agent_parse_exec(frame, request) == 0
                                         ? run_exec(s, request)
                                         : reject(s, frame, "request");
    free(request);
    return result;
}

/* ---- files ---- */

static bool parse_path(struct server *s, const struct agent_frame *frame,
                       struct agent_file_request *file)
{
    if (agent_parse_file(frame, file) < 0) {
        reject(s, frame, "request");
        return false;
    }
    if (file->path[0] != '/') {
        send_failure(s, AGENT_ERROR, EINVAL, "guest path must be absolute: %.200s", file->path);
        return false;
    }
    return true;
}

static enum exec_server_result receive_file(struct server *s, int fd, const char *path)
{
    struct agent_frame frame;
    int got;
    while ((got = read_frame(s, &frame)) > 0) {
        if (frame.type == AGENT_DATA && agent_parse_data(&frame) == 0) {
            int err = agent_write_all(fd, frame.payload, frame.length, NULL, NULL);
            if (err < 0) {
                send_failure(s, AGENT_ERROR, -err, "writing %.200s: %s", path, strerror(-err));
                return EXEC_SERVER_DONE;
            }
        } else if (frame.type == AGENT_DATA_END && agent_parse_empty(&frame) == 0) {
            if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
                send_failure(s, AGENT_ERROR, errno, "writing %.200s: %s", path, strerror(errno));
            else
                send_empty(s, AGENT_OK);
            return EXEC_SERVER_DONE;
        } else {
            return reject(s, &frame, "in a file upload");
        }
    }
    return reject_stream(s, got);
}

static enum exec_server_result serve_put(struct server *s, const struct agent_frame *frame)
{
    struct agent_file_request file;
    if (!parse_path(s, frame, &file))
        return EXEC_SERVER_DONE;
    /* The path is copied: later frames reuse the buffer it points into. */
    char path[AGENT_MAX_PATH + 1];
    snprintf(path, sizeof(path), "%s", file.path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, file.mode);
    if (fd < 0 || fchmod(fd, file.mode) < 0) {
        send_failure(s, AGENT_ERROR, errno, "cannot create %.200s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXEC_SERVER_DONE;
    }
    enum exec_server_result result = EXEC_SERVER_DONE;
    if (send_empty(s, AGENT_OK) == 0)
        result = receive_file(s, fd, path);
    close(fd);
    return result;
}

static enum exec_server_result send_chunks(struct server *s, int fd, const char *path,
                                           uint8_t *data)
{
    if (data == NULL) {
        send_failure(s, AGENT_ERROR, ENOMEM, "out of memory");
        return EXEC_SERVER_DONE;
    }
    for (;;) {
        ssize_t n = read(fd, data + AGENT_HEADER_SIZE, AGENT_CHUNK_MAX);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            send_failure(s, AGENT_ERROR, errno, "reading %.200s: %s", path, strerror(errno));
            return EXEC_SERVER_DONE;
        }
        if (n == 0) {
            send_empty(s, AGENT_DATA_END);
            return EXEC_SERVER_DONE;
        }
        /* The chunk was read in place; only its header is written in front of it. */
        struct agent_buf buf;
        agent_buf_init(&buf, data, AGENT_HEADER_SIZE);
        size_t start = agent_frame_begin(&buf, AGENT_DATA);
        buf.cap = AGENT_HEADER_SIZE + AGENT_CHUNK_MAX;
        buf.len = AGENT_HEADER_SIZE + (size_t)n;
        agent_frame_end(&buf, start);
        if (send_buf(s, &buf) < 0)
            return EXEC_SERVER_DONE;
    }
}

static enum exec_server_result send_file(struct server *s, int fd, const char *path)
{
    uint8_t *data = malloc(AGENT_HEADER_SIZE + AGENT_CHUNK_MAX);
    enum exec_server_result result = send_chunks(s, fd, path, data);
    free(data);
    return result;
}

static enum exec_server_result serve_get(struct server *s, const struct agent_frame *frame)
{
    struct agent_file_request file;
    if (!parse_path(s, frame, &file))
        return EXEC_SERVER_DONE;
    struct stat st;
    int fd = open(file.path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        fd = -1;
        errno = EISDIR;
    }
    if (fd < 0) {
        send_failure(s, AGENT_ERROR, errno, "cannot open %.200s: %s", file.path,
                     strerror(errno));
        return EXEC_SERVER_DONE;
    }
    enum exec_server_result result = send_file(s, fd, file.path);
    close(fd);
    return result;
}

/* ---- the connection ---- */

static bool greet(struct server *s)
{
    uint8_t data[AGENT_HEADER_SIZE + 8];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_hello ours = {.version = AGENT_PROTO_VERSION, .frame_max = AGENT_FRAME_MAX};
    agent_encode_hello(&buf, &ours);
    if (send_buf(s, &buf) < 0)
        return false;

    struct agent_frame frame;
    int got = read_frame(s, &frame);
    if (got <= 0) {
        reject_stream(s, got);
        return false;
    }
    struct agent_hello theirs;
    if (agent_parse_hello(&frame, &theirs) < 0) {
        reject(s, &frame, "instead of HELLO");
        return false;
    }
    if (theirs.version != AGENT_PROTO_VERSION) {
        send_failure(s, AGENT_ERROR, EPROTONOSUPPORT,
                     "protocol version %u not supported (cove-agent speaks version %u)",
                     (unsigned)theirs.version, AGENT_PROTO_VERSION);
        return false;
    }
    return true;
}

/*
 * The entropy goes into the kernel's input pool, credited, and the generator is reseeded from
 * it at once, so that what this guest draws from now on differs from every other guest
 * restored from the same snapshot. Then the clock, which stood still in the snapshot.
 */
static int take_resume(const struct agent_resume *resume)
{
    /* A rand_pool_info with room for the bytes; the union gives them its alignment. */
    union {
        struct rand_pool_info info;
        uint8_t bytes[sizeof(struct rand_pool_info) + AGENT_RESUME_ENTROPY];
    } pool = {.bytes = {0}};
    pool.info.entropy_count = 8 * AGENT_RESUME_ENTROPY;
    pool.info.buf_size = AGENT_RESUME_ENTROPY;
    memcpy(pool.info.buf, resume->entropy, AGENT_RESUME_ENTROPY);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    int err = 0;
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    memset(&pool, 0, sizeof(pool));
    struct timespec now = {.tv_sec = (time_t)resume->realtime_sec, .tv_nsec = resume->realtime_nsec};
    if (err == 0 && clock_settime(CLOCK_REALTIME, &now) < 0)
        err = errno;
    return err;
}

static enum exec_server_result serve_resume(struct server *s, const struct agent_frame *frame)
{
    struct agent_resume resume;
    if (agent_parse_resume(frame, &resume) < 0)
        return reject(s, frame, "request");
    int err = take_resume(&resume);
    memset(&resume, 0, sizeof(resume));
    if (err)
        send_failure(s, AGENT_ERROR, err, "taking the host's clock and entropy: %s",
                     strerror(err));
    else
        send_empty(s, AGENT_OK);
    return EXEC_SERVER_DONE;
}

static enum exec_server_result serve_request(struct server *s)
{
    struct agent_frame frame;
    int got = read_frame(s, &frame);
    if (got <= 0)
        return reject_stream(s, got);
    switch (frame.type) {
    case AGENT_EXEC:
        return serve_exec(s, &frame);
    case AGENT_FILE_PUT:
        return serve_put(s, &frame);
    case AGENT_FILE_GET:
        return serve_get(s, &frame);
    case AGENT_SHUTDOWN:
        if (agent_parse_empty(&frame) < 0)
            return reject(s, &frame, "request");
        send_empty(s, AGENT_OK);
        return EXEC_SERVER_SHUTDOWN;
    case AGENT_RESUME:
        return serve_resume(s, &frame);
    default:
        return reject(s, &frame, "as a request");
    }
}

enum exec_server_result exec_server_serve(int fd)
{
    struct server s = {.fd = fd};
    signal(SIGPIPE, SIG_IGN); /* a command closing its stdin must give EPIPE, not kill us */
    signal(SIGCHLD, SIG_DFL); /* ignored, it would reap the command before we can */
    fcntl(fd, F_SETFD, FD_CLOEXEC); /* the command must not hold the connection open */
    set_nonblocking(fd);
    if (agent_reader_init(&s.reader) < 0)
        return EXEC_SERVER_DONE;
    enum exec_server_result result = EXEC_SERVER_DONE;
    if (greet(&s))
        result = serve_request(&s);
    agent_reader_destroy(&s.reader);
    return result;
}
