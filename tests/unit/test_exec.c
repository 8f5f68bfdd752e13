/*
 * libcove's agent client (src/lib/exec.c) against cove-agent's request server
 * (src/agent/exec_server.c) over a socketpair on this host: the server runs in a forked child,
 * as it does under PID 1 in the guest, and runs real commands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "exec.h"
#include "exec_server.h"

#define TIMEOUT_MS 10000
#define SERVER_SHUTDOWN_STATUS 3

/* One connection: the server child and the host's end. */
struct harness {
    pid_t server;
    int host_fd;
    int out_fd; /* memfds collecting the command's output */
    int err_fd;
};

static void start_server(struct harness *h)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    h->server = fork();
    assert_true(h->server >= 0);
    if (h->server == 0) {
        close(fds[0]);
        enum exec_server_result result = exec_server_serve(fds[1]);
        _exit(result == EXEC_SERVER_SHUTDOWN ? SERVER_SHUTDOWN_STATUS : 0);
    }
    close(fds[1]);
    h->host_fd = fds[0];
    h->out_fd = memfd_create("stdout", MFD_CLOEXEC);
    h->err_fd = memfd_create("stderr", MFD_CLOEXEC);
    assert_true(h->out_fd >= 0 && h->err_fd >= 0);
}

/* The server's exit status once it returned (waiting at most about 5 s). */
static int server_status(struct harness *h)
{
    for (int i = 0; i < 500; i++) {
        int status;
        pid_t got = waitpid(h->server, &status, WNOHANG);
        if (got == h->server) {
            assert_true(WIFEXITED(status));
            return WEXITSTATUS(status);
        }
        usleep(10000);
    }
    kill(h->server, SIGKILL);
    waitpid(h->server, NULL, 0);
    fail_msg("the server did not return");
    return -1;
}

static void end_harness(struct harness *h)
{
    assert_int_equal(server_status(h), 0);
    close(h->out_fd);
    close(h->err_fd);
}

/* Everything written to a memfd, NUL-terminated; the caller frees it. */
static char *contents(int fd, size_t *len)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *data = malloc((size_t)st.st_size + 1);
    assert_non_null(data);
    assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
    data[st.st_size] = '\0';
    if (len)
        *len = (size_t)st.st_size;
    return data;
}

static void assert_contents(int fd, const char *expected)
{
    char *data = contents(fd, NULL);
    assert_string_equal(data, expected);
    free(data);
}

/* A memfd holding len bytes of a fixed pseudo-random pattern, positioned at its start. */
static int pattern_fd(size_t len, unsigned seed)
{
    int fd = memfd_create("pattern", MFD_CLOEXEC);
    uint8_t *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (uint8_t)(seed >> 16);
    }
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    free(data);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

static cove_exec *start(struct harness *h, cove_exec_options *options)
{
    if (options->stdout_fd < 0)
        options->stdout_fd = h->out_fd;
    if (options->stderr_fd < 0)
        options->stderr_fd = h->err_fd;
    cove_error error = {{0}};
    cove_exec *exec = exec_start(h->host_fd, options, TIMEOUT_MS, &error);
    if (exec == NULL)
        fail_msg("exec_start: %s", error.message);
    return exec;
}

/* Runs argv to its end; returns its status. */
static cove_exec_status run(struct harness *h, cove_exec_options *options)
{
    cove_exec *exec = start(h, options);
    cove_exec_status status;
    assert_int_not_equal(cove_exec_wait(exec, TIMEOUT_MS, &status), COVE_EXEC_RUNNING);
    cove_exec_free(exec);
    return status;
}

/* The defaults with argv. */
static cove_exec_options options_for(const char *const *argv)
{
    cove_exec_options options;
    cove_exec_options_init(&options);
    options.argv = argv;
    return options;
}

static cove_exec_status run_argv(struct harness *h, const char *const *argv)
{
    cove_exec_options options = options_for(argv);
    return run(h, &options);
}

static void assert_exited(const cove_exec_status *status, int code)
{
    if (status->state != COVE_EXEC_EXITED)
        fail_msg("state %d code %d: %s", status->state, status->code, status->message);
    assert_int_equal(status->code, code);
}

/* Runs `sh -c script` on a fresh server and checks its status and output. */
static void check_script(const char *script, int code, const char *out, const char *err)
{
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sh", "-c", script, NULL};
    cove_exec_status status = run_argv(&h, argv);
    assert_exited(&status, code);
    assert_contents(h.out_fd, out);
    assert_contents(h.err_fd, err);
    end_harness(&h);
}

/* The bytes of two descriptors are the same, and there are len of them. */
static void assert_same_contents(int fd, int expected_fd, size_t len)
{
    size_t got_len, want_len;
    char *got = contents(fd, &got_len);
    char *want = contents(expected_fd, &want_len);
    assert_int_equal(got_len, len);
    assert_int_equal(want_len, len);
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
}

/* ---- exit statuses ---- */

static void exit_statuses(void **state)
{
    (void)state;
    check_script("exit 0", 0, "", "");
    check_script("exit 1", 1, "", "");
    check_script("exit 42", 42, "", "");
}

static void death_by_signal(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sh", "-c", "kill -TERM $$", NULL};
    cove_exec_status status = run_argv(&h, argv);
    assert_int_equal(status.state, COVE_EXEC_SIGNALED);
    assert_int_equal(status.code, SIGTERM);
    end_harness(&h);
}

/* ---- output ---- */

static void stdout_and_stderr_stay_apart(void **state)
{
    (void)state;
    check_script("echo out1; echo err1 >&2; echo out2; echo err2 >&2", 0, "out1\nout2\n",
                 "err1\nerr2\n");
}

static void megabytes_of_binary_output_are_exact(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    char path[] = "/tmp/cove-exec-test-XXXXXX";
    close(mkstemp(path));
    char script[128];
    snprintf(script, sizeof(script), "head -c 8388608 /dev/urandom | tee %s", path);
    const char *argv[] = {"sh", "-c", script, NULL};
    cove_exec_status status = run_argv(&h, argv);
    assert_exited(&status, 0);

    int file = open(path, O_RDONLY);
    assert_same_contents(h.out_fd, file, 8388608);
    close(file);
    unlink(path);
    end_harness(&h);
}

/* Like `yes | head -1` on one host: once nobody reads stdout, the command gets SIGPIPE; its
 * other stream still arrives. */
static void output_to_a_closed_pipe_ends_the_command_with_sigpipe(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    close(pipe_fds[0]); /* writes now fail with EPIPE (and would raise SIGPIPE) */
    const char *argv[] = {"sh", "-c", "echo kept >&2; exec yes", NULL};
    cove_exec_options options = options_for(argv);
    options.stdout_fd = pipe_fds[1];
    cove_exec_status status = run(&h, &options);
    if (status.state != COVE_EXEC_SIGNALED || status.code != SIGPIPE)
        fail_msg("state %d code %d, expected death by SIGPIPE", status.state, status.code);
    assert_contents(h.err_fd, "kept\n");
    close(pipe_fds[1]);
    end_harness(&h);
}

/* A grandchild that leaves the process group and keeps stdout open cannot hold the exec. */
static void daemonised_grandchild_does_not_hang_the_exec(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sh", "-c", "setsid sleep 30 & echo started", NULL};
    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    cove_exec_status status = run_argv(&h, argv);
    clock_gettime(CLOCK_MONOTONIC, &after);
    assert_exited(&status, 0);
    assert_contents(h.out_fd, "started\n");
    assert_true(after.tv_sec - before.tv_sec < 5);
    end_harness(&h);
}

/* ---- stdin ---- */

static void stdin_larger_than_the_window_goes_through(void **state)
{
    (void)state;
    const size_t len = 4 * AGENT_STDIN_WINDOW + 12345;
    struct harness h;
    start_server(&h);
    int in = pattern_fd(len, 7);
    const char *argv[] = {"cat", NULL};
    cove_exec_options options = options_for(argv);
    options.stdin_fd = in;
    cove_exec_status status = run(&h, &options);
    assert_exited(&status, 0);
    assert_same_contents(h.out_fd, in, len);
    end_harness(&h);

    start_server(&h);
    lseek(in, 0, SEEK_SET);
    const char *wc[] = {"wc", "-c", NULL};
    options.argv = wc;
    options.stdout_fd = -1;
    options.stderr_fd = -1;
    status = run(&h, &options);
    assert_exited(&status, 0);
    char expected[32];
    snprintf(expected, sizeof(expected), "%zu\n", len);
    assert_contents(h.out_fd, expected);
    close(in);
    end_harness(&h);
}

static void unused_stdin_reads_end_of_file(void **state)
{
    (void)state;
    check_script("cat; echo eof", 0, "eof\n", "");
}

/* Input the command never reads fills the window; a signal still gets through. */
static void signal_is_not_stuck_behind_unread_stdin(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    int in = pattern_fd(4 * 1024 * 1024, 3);
    const char *argv[] = {"sleep", "30", NULL};
    cove_exec_options options = options_for(argv);
    options.stdin_fd = in;
    cove_exec *exec = start(&h, &options);
    usleep(200000);
    assert_int_equal(cove_exec_wait(exec, 0, NULL), COVE_EXEC_RUNNING);
    assert_int_equal(cove_exec_signal(exec, SIGTERM), 0);
    cove_exec_status status;
    assert_int_equal(cove_exec_wait(exec, 3000, &status), COVE_EXEC_SIGNALED);
    assert_int_equal(status.code, SIGTERM);
    assert_int_equal(cove_exec_signal(exec, SIGTERM), -ESRCH);
    cove_exec_free(exec);
    close(in);
    end_harness(&h);
}

/* ---- environment, directory, identity ---- */

static void env_and_cwd(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    cove_exec_options options;
    cove_exec_options_init(&options);
    const char *argv[] = {"sh", "-c", "echo \"$SECRET|$HOME|$TERM|$PATH\"; pwd", NULL};
    const char *env[] = {"SECRET=s3 cr=et", "HOME=/home/x", "PATH=/usr/bin:/bin", NULL};
    options.argv = argv;
    options.env = env;
    options.cwd = "/tmp";
    cove_exec_status status = run(&h, &options);
    assert_exited(&status, 0);
    assert_contents(h.out_fd, "s3 cr=et|/home/x||/usr/bin:/bin\n/tmp\n");
    end_harness(&h);
}

static void default_environment(void **state)
{
    (void)state;
    check_script("echo \"$HOME|$PATH\"", 0, "/root|/bin:/sbin:/usr/bin:/usr/sbin\n", "");
}

static void assert_failed(const cove_exec_status *status, cove_exec_step step, int err,
                          const char *text)
{
    if (status->state != COVE_EXEC_FAILED)
        fail_msg("state %d code %d: %s", status->state, status->code, status->message);
    assert_int_equal(status->code, err);
    assert_int_equal(status->step, step);
    if (strstr(status->message, text) == NULL)
        fail_msg("'%s' does not say '%s'", status->message, text);
}

static void command_not_found(void **state)
{
    (void)state;
    const char *names[] = {"cove-no-such-command", "/nonexistent/cove-command"};
    for (int i = 0; i < 2; i++) {
        struct harness h;
        start_server(&h);
        const char *argv[] = {names[i], NULL};
        cove_exec_status status = run_argv(&h, argv);
        assert_failed(&status, COVE_EXEC_STEP_EXEC, ENOENT, "command not found");
        end_harness(&h);
    }
}

static void not_executable(void **state)
{
    (void)state;
    char path[] = "/tmp/cove-exec-noexec-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    fchmod(fd, 0644);
    close(fd);
    struct harness h;
    start_server(&h);
    const char *argv[] = {path, NULL};
    cove_exec_status status = run_argv(&h, argv);
    assert_failed(&status, COVE_EXEC_STEP_EXEC, EACCES, "permission denied");
    unlink(path);
    end_harness(&h);
}

static void bad_cwd(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"true", NULL};
    cove_exec_options options = options_for(argv);
    options.cwd = "/nonexistent/dir";
    cove_exec_status status = run(&h, &options);
    assert_failed(&status, COVE_EXEC_STEP_WORKDIR, ENOENT, "directory");
    end_harness(&h);
}

/* As root the command switches identity; without root a change fails cleanly. */
static void uid_and_gid(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sh", "-c", "echo $(id -u) $(id -g)", NULL};
    cove_exec_options options = options_for(argv);
    options.uid = geteuid() == 0 ? 65534 : 0;
    options.gid = geteuid() == 0 ? 65534 : 0;
    cove_exec_status status = run(&h, &options);
    if (geteuid() == 0) {
        assert_exited(&status, 0);
        assert_contents(h.out_fd, "65534 65534\n");
    } else {
        assert_failed(&status, COVE_EXEC_STEP_USER, EPERM, "uid");
    }
    end_harness(&h);
}

/* ---- tty ---- */

static void tty_mode(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sh", "-c", "tty; stty size; echo \"$TERM\"; echo err >&2", NULL};
    cove_exec_options options = options_for(argv);
    options.tty = true;
    options.rows = 30;
    options.cols = 100;
    cove_exec_status status = run(&h, &options);
    assert_exited(&status, 0);
    char *out = contents(h.out_fd, NULL);
    if (strncmp(out, "/dev/pts/", 9) != 0 ||
        strstr(out, "\r\n30 100\r\nxterm-256color\r\nerr\r\n") == NULL)
        fail_msg("unexpected tty output '%s'", out);
    free(out);
    assert_contents(h.err_fd, "");
    end_harness(&h);
}

static void tty_resize(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    int in[2];
    assert_int_equal(pipe(in), 0);
    const char *argv[] = {"sh", "-c", "stty -echo; read line; stty size", NULL};
    cove_exec_options options = options_for(argv);
    options.tty = true;
    options.stdin_fd = in[0];
    cove_exec *exec = start(&h, &options);
    /* The resize travels before the input line, so `read` returns after it took effect. */
    assert_int_equal(cove_exec_resize(exec, 40, 120), 0);
    assert_int_equal(write(in[1], "go\n", 3), 3);
    cove_exec_status status;
    assert_int_equal(cove_exec_wait(exec, TIMEOUT_MS, &status), COVE_EXEC_EXITED);
    assert_int_equal(status.code, 0);
    cove_exec_free(exec);
    char *out = contents(h.out_fd, NULL);
    if (strstr(out, "40 120\r\n") == NULL)
        fail_msg("unexpected tty output '%s'", out);
    free(out);
    close(in[0]);
    close(in[1]);
    end_harness(&h);
}

static void resize_without_tty(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"true", NULL};
    cove_exec_options options = options_for(argv);
    cove_exec *exec = start(&h, &options);
    assert_int_equal(cove_exec_resize(exec, 10, 10), -ENOTTY);
    cove_exec_wait(exec, TIMEOUT_MS, NULL);
    cove_exec_free(exec);
    end_harness(&h);
}

/* ---- signals, the end descriptor, freeing ---- */

static void signal_reaches_a_sleeping_command(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sleep", "30", NULL};
    cove_exec_options options = options_for(argv);
    cove_exec *exec = start(&h, &options);
    struct pollfd p = {.fd = cove_exec_fd(exec), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 100), 0);
    assert_int_equal(cove_exec_signal(exec, SIGINT), 0);
    assert_int_equal(poll(&p, 1, 3000), 1);
    cove_exec_status status;
    assert_int_equal(cove_exec_wait(exec, 0, &status), COVE_EXEC_SIGNALED);
    assert_int_equal(status.code, SIGINT);
    cove_exec_free(exec);
    end_harness(&h);
}

static void free_kills_a_running_command(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    const char *argv[] = {"sleep", "30", NULL};
    cove_exec_options options = options_for(argv);
    cove_exec *exec = start(&h, &options);
    cove_exec_free(exec);
    end_harness(&h);
}

/* ---- a raw client speaking the protocol by hand ---- */

static void send_bytes(int fd, const void *data, size_t len)
{
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void send_built(int fd, const struct agent_buf *buf)
{
    assert_false(buf->overflow);
    send_bytes(fd, buf->data, buf->len);
}

/* The next frame, or -1 at the end of the stream. */
static int raw_read(int fd, struct agent_reader *reader, struct agent_frame *frame)
{
    for (;;) {
        int got = agent_reader_next(reader, frame);
        assert_true(got >= 0);
        if (got > 0)
            return frame->type;
        if (agent_reader_fill(reader, fd) <= 0)
            return -1;
    }
}

static void raw_hello(int fd, struct agent_reader *reader, uint32_t version)
{
    struct agent_frame frame;
    assert_int_equal(raw_read(fd, reader, &frame), AGENT_HELLO);
    uint8_t data[64];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_hello hello = {.version = version, .frame_max = AGENT_FRAME_MAX};
    agent_encode_hello(&buf, &hello);
    send_built(fd, &buf);
}

/* The ERROR that ends the connection (acknowledgements of earlier input may come first). */
static void expect_error_reply(int fd, struct agent_reader *reader, int err)
{
    struct agent_frame frame;
    int type;
    while ((type = raw_read(fd, reader, &frame)) == AGENT_STDIN_ACK)
        continue;
    assert_int_equal(type, AGENT_ERROR);
    struct agent_failure failure;
    assert_int_equal(agent_parse_failure(&frame, &failure), 0);
    assert_int_equal(failure.err, err);
    assert_int_equal(raw_read(fd, reader, &frame), -1); /* and the connection ends */
}

/* Greets the server and starts `sh -c script` by hand; returns the command's pid. */
static pid_t raw_exec(struct harness *h, struct agent_reader *reader, uint32_t flags,
                      const char *script)
{
    assert_int_equal(agent_reader_init(reader), 0);
    raw_hello(h->host_fd, reader, AGENT_PROTO_VERSION);
    static struct agent_exec_request request;
    request = (struct agent_exec_request){.flags = flags, .cwd = "/", .argc = 3,
                                          .argv = {"sh", "-c", script}};
    uint8_t data[512];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    agent_encode_exec(&buf, &request);
    send_built(h->host_fd, &buf);
    struct agent_frame frame;
    assert_int_equal(raw_read(h->host_fd, reader, &frame), AGENT_STARTED);
    uint32_t pid = 0;
    assert_int_equal(agent_parse_u32(&frame, &pid), 0);
    return (pid_t)pid;
}

static void assert_reaped(pid_t pid)
{
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

static void disconnect_kills_the_command(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    struct agent_reader reader;
    pid_t pid = raw_exec(&h, &reader, 0, "echo running; sleep 60");
    struct agent_frame frame;
    assert_int_equal(raw_read(h.host_fd, &reader, &frame), AGENT_STDOUT); /* it runs */
    assert_int_equal(kill(pid, 0), 0);

    close(h.host_fd);
    assert_int_equal(server_status(&h), 0);
    assert_reaped(pid);
    agent_reader_destroy(&reader);
    close(h.out_fd);
    close(h.err_fd);
}

/* The process state letter from /proc/PID/stat ('S' sleeping, 'Z' exited, ...). */
static char process_state(pid_t pid)
{
    char path[64], text[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    assert_non_null(file);
    assert_non_null(fgets(text, sizeof(text), file));
    fclose(file);
    const char *paren = strrchr(text, ')');
    assert_non_null(paren);
    return paren[2];
}

/* A host that stops reading makes the command block on its pipe; nothing piles up. */
static void output_back_pressure_blocks_the_command(void **state)
{
    (void)state;
    const size_t total = 64u << 20;
    struct harness h;
    start_server(&h);
    struct agent_reader reader;
    pid_t pid = raw_exec(&h, &reader, 0, "exec head -c 67108864 /dev/zero");
    usleep(300000);
    assert_int_equal(process_state(pid), 'S'); /* blocked writing, not done */

    size_t received = 0;
    struct agent_frame frame;
    int type;
    while ((type = raw_read(h.host_fd, &reader, &frame)) == AGENT_STDOUT)
        received += frame.length;
    assert_int_equal(type, AGENT_EXIT);
    assert_int_equal(received, total);
    agent_reader_destroy(&reader);
    close(h.host_fd);
    end_harness(&h);
}

/* STDIN beyond the window, or without the stdin flag, is a protocol error. */
static void stdin_outside_the_rules_gets_an_error(void **state)
{
    (void)state;
    static uint8_t data[AGENT_HEADER_SIZE + AGENT_CHUNK_MAX];
    for (int with_flag = 0; with_flag < 2; with_flag++) {
        struct harness h;
        start_server(&h);
        struct agent_reader reader;
        pid_t pid = raw_exec(&h, &reader, with_flag ? AGENT_EXEC_STDIN : 0, "sleep 60");
        /* The pipe takes (and the agent acknowledges) up to 64 KiB the command never reads;
         * beyond that a full window of more input overflows it. */
        int frames = with_flag ? AGENT_STDIN_WINDOW / AGENT_CHUNK_MAX + 3 : 1;
        for (int i = 0; i < frames; i++) {
            struct agent_buf buf;
            agent_buf_init(&buf, data, sizeof(data));
            static const uint8_t zeros[AGENT_CHUNK_MAX];
            agent_encode_data(&buf, AGENT_STDIN, zeros, sizeof(zeros));
            if (send(h.host_fd, buf.data, buf.len, MSG_NOSIGNAL) != (ssize_t)buf.len)
                break; /* the server already gave up on us */
        }
        expect_error_reply(h.host_fd, &reader, EPROTO);
        agent_reader_destroy(&reader);
        close(h.host_fd);
        end_harness(&h);
        assert_reaped(pid);
    }
}

static void garbage_gets_an_error_reply(void **state)
{
    (void)state;
    static const uint8_t unknown_type[] = {0, 0, 0, 0, 0xe7, 0x03, 0, 0};
    static const uint8_t oversized[] = {0xff, 0xff, 0xff, 0x7f, AGENT_EXEC, 0, 0, 0};
    static const uint8_t flags_set[] = {0, 0, 0, 0, AGENT_SHUTDOWN, 0, 1, 0};
    static const uint8_t stdin_first[] = {1, 0, 0, 0, AGENT_STDIN, 0, 0, 0, 'x'};
    static const uint8_t bad_exec[] = {4, 0, 0, 0, AGENT_EXEC, 0, 0, 0, 1, 2, 3, 4};
    const struct {
        const uint8_t *bytes;
        size_t len;
        int err;
    } cases[] = {
        {unknown_type, sizeof(unknown_type), EPROTO}, {oversized, sizeof(oversized), EMSGSIZE},
        {flags_set, sizeof(flags_set), EPROTO},       {stdin_first, sizeof(stdin_first), EPROTO},
        {bad_exec, sizeof(bad_exec), EPROTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct harness h;
        start_server(&h);
        struct agent_reader reader;
        assert_int_equal(agent_reader_init(&reader), 0);
        raw_hello(h.host_fd, &reader, AGENT_PROTO_VERSION);
        send_bytes(h.host_fd, cases[i].bytes, cases[i].len);
        expect_error_reply(h.host_fd, &reader, cases[i].err);
        agent_reader_destroy(&reader);
        close(h.host_fd);
        end_harness(&h);
    }
}

static void garbage_instead_of_hello_and_truncated_frames(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    struct agent_reader reader;
    assert_int_equal(agent_reader_init(&reader), 0);
    struct agent_frame frame;
    assert_int_equal(raw_read(h.host_fd, &reader, &frame), AGENT_HELLO);
    send_bytes(h.host_fd, "GET / HTTP/1.1\r\n\r\n", 18);
    expect_error_reply(h.host_fd, &reader, EMSGSIZE);
    agent_reader_destroy(&reader);
    close(h.host_fd);
    end_harness(&h);

    /* A frame cut short by the end of the stream. */
    start_server(&h);
    assert_int_equal(agent_reader_init(&reader), 0);
    raw_hello(h.host_fd, &reader, AGENT_PROTO_VERSION);
    static const uint8_t partial[] = {40, 0, 0, 0, AGENT_EXEC, 0, 0, 0, 1, 2};
    send_bytes(h.host_fd, partial, sizeof(partial));
    shutdown(h.host_fd, SHUT_WR);
    expect_error_reply(h.host_fd, &reader, EPROTO);
    agent_reader_destroy(&reader);
    close(h.host_fd);
    end_harness(&h);
}

static void server_rejects_another_version(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    struct agent_reader reader;
    assert_int_equal(agent_reader_init(&reader), 0);
    raw_hello(h.host_fd, &reader, AGENT_PROTO_VERSION + 1);
    expect_error_reply(h.host_fd, &reader, EPROTONOSUPPORT);
    agent_reader_destroy(&reader);
    close(h.host_fd);
    end_harness(&h);
}

static void client_rejects_another_version(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    uint8_t data[64];
    struct agent_buf buf;
    agent_buf_init(&buf, data, sizeof(data));
    struct agent_hello hello = {.version = 99, .frame_max = AGENT_FRAME_MAX};
    agent_encode_hello(&buf, &hello);
    send_built(fds[1], &buf);
    const char *argv[] = {"true", NULL};
    cove_exec_options options = options_for(argv);
    cove_error error = {{0}};
    assert_null(exec_start(fds[0], &options, 1000, &error));
    if (strstr(error.message, "version 99") == NULL)
        fail_msg("unclear message: %s", error.message);
    close(fds[1]);
}

static void client_times_out_on_a_silent_agent(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    cove_error error = {{0}};
    assert_int_equal(agent_shutdown(fds[0], 100, &error), -ETIMEDOUT);
    assert_non_null(strstr(error.message, "did not answer"));
    close(fds[1]);
}

static void client_rejects_bad_options(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    cove_exec_options options;
    cove_exec_options_init(&options);
    cove_error error = {{0}};
    assert_null(exec_start(fds[0], &options, 1000, &error)); /* no argv */
    assert_non_null(strstr(error.message, "no command"));
    close(fds[1]);
}

/* ---- files and shutdown ---- */

static void file_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/cove-exec-files-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/blob", dir);
    const size_t len = 3 * AGENT_CHUNK_MAX + 777;
    int src = pattern_fd(len, 11);

    struct harness h;
    start_server(&h);
    cove_error error = {{0}};
    int err = agent_copy_in(h.host_fd, src, path, 0640, TIMEOUT_MS, &error);
    if (err != 0)
        fail_msg("copy in: %s", error.message);
    end_harness(&h);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_size, (off_t)len);

    start_server(&h);
    int dst = memfd_create("copied", MFD_CLOEXEC);
    err = agent_copy_out(h.host_fd, path, dst, TIMEOUT_MS, &error);
    if (err != 0)
        fail_msg("copy out: %s", error.message);
    end_harness(&h);
    assert_same_contents(dst, src, len);
    close(dst);
    close(src);
    unlink(path);
    rmdir(dir);
}

static void file_errors(void **state)
{
    (void)state;
    struct harness h;
    cove_error error = {{0}};
    start_server(&h);
    assert_int_equal(agent_copy_out(h.host_fd, "/nonexistent/file", h.out_fd, TIMEOUT_MS,
                                    &error), -ENOENT);
    assert_non_null(strstr(error.message, "/nonexistent/file"));
    end_harness(&h);

    start_server(&h);
    assert_int_equal(agent_copy_out(h.host_fd, "/tmp", h.out_fd, TIMEOUT_MS, &error), -EISDIR);
    end_harness(&h);

    int src = pattern_fd(100, 1);
    start_server(&h);
    assert_int_equal(agent_copy_in(h.host_fd, src, "/nonexistent/dir/file", 0644, TIMEOUT_MS,
                                   &error), -ENOENT);
    end_harness(&h);

    start_server(&h);
    assert_int_equal(agent_copy_in(h.host_fd, src, "relative/path", 0644, TIMEOUT_MS, &error),
                     -EINVAL);
    close(src);
    close(h.out_fd);
    close(h.err_fd);
    assert_int_equal(server_status(&h), 0); /* the server saw the connection end */
}

static void shutdown_request(void **state)
{
    (void)state;
    struct harness h;
    start_server(&h);
    cove_error error = {{0}};
    assert_int_equal(agent_shutdown(h.host_fd, TIMEOUT_MS, &error), 0);
    assert_int_equal(server_status(&h), SERVER_SHUTDOWN_STATUS);
    close(h.out_fd);
    close(h.err_fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a raw client writing to a server that hung up */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exit_statuses),
        cmocka_unit_test(death_by_signal),
        cmocka_unit_test(stdout_and_stderr_stay_apart),
        cmocka_unit_test(megabytes_of_binary_output_are_exact),
        cmocka_unit_test(output_to_a_closed_pipe_ends_the_command_with_sigpipe),
        cmocka_unit_test(daemonised_grandchild_does_not_hang_the_exec),
        cmocka_unit_test(stdin_larger_than_the_window_goes_through),
        cmocka_unit_test(unused_stdin_reads_end_of_file),
        cmocka_unit_test(signal_is_not_stuck_behind_unread_stdin),
        cmocka_unit_test(env_and_cwd),
        cmocka_unit_test(default_environment),
        cmocka_unit_test(command_not_found),
        cmocka_unit_test(not_executable),
        cmocka_unit_test(bad_cwd),
        cmocka_unit_test(uid_and_gid),
        cmocka_unit_test(tty_mode),
        cmocka_unit_test(tty_resize),
        cmocka_unit_test(resize_without_tty),
        cmocka_unit_test(signal_reaches_a_sleeping_command),
        cmocka_unit_test(free_kills_a_running_command),
        cmocka_unit_test(disconnect_kills_the_command),
        cmocka_unit_test(output_back_pressure_blocks_the_command),
        cmocka_unit_test(stdin_outside_the_rules_gets_an_error),
        cmocka_unit_test(garbage_gets_an_error_reply),
        cmocka_unit_test(garbage_instead_of_hello_and_truncated_frames),
        cmocka_unit_test(server_rejects_another_version),
        cmocka_unit_test(client_rejects_another_version),
        cmocka_unit_test(client_times_out_on_a_silent_agent),
        cmocka_unit_test(client_rejects_bad_options),
        cmocka_unit_test(file_round_trip),
        cmocka_unit_test(file_errors),
        cmocka_unit_test(shutdown_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
