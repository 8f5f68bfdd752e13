/*
 * The libcove exec API driven as an embedding program would, against a real guest running
 * cove-agent: commands through cove_vm_exec (two at once in one VM), file copy both ways, a
 * host that disconnects mid-stream and one that sends garbage (the agent must survive both and
 * keep serving), and cove_vm_agent_shutdown ending the VM with a power-off.
 *
 *   exec_api --kernel PATH --initrd PATH
 *
 * Prints "ok NAME" or "FAIL NAME: why" per check and exits 0 only if every check passed.
 */
#include <cove/cove.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_proto.h"

#define TIMEOUT_MS 120000

static int failures;

static void check(bool ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check(bool ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        printf("ok %s\n", name);
    } else {
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL %s: ", name);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        failures++;
    }
    fflush(stdout);
}

/* Reads fd to its end into buf (NUL-terminated, truncated to len - 1). */
static size_t read_all(int fd, char *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    return got;
}

/* Runs argv, capturing stdout into out; returns the final status. */
static cove_exec_status run(cove_vm *vm, const char *const *argv, char *out, size_t out_len)
{
    cove_exec_status status = {.state = COVE_EXEC_LOST};
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return status;
    cove_exec_options options;
    cove_exec_options_init(&options);
    options.argv = argv;
    options.stdout_fd = pipe_fds[1];
    cove_error error;
    cove_exec *exec = cove_vm_exec(vm, &options, TIMEOUT_MS, &error);
    if (!exec) {
        snprintf(status.message, sizeof(status.message), "%s", error.message);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return status;
    }
    /* The pipe's write end is ours to close; the exec thread writes to it until the end. */
    cove_exec_wait(exec, TIMEOUT_MS, &status);
    close(pipe_fds[1]);
    read_all(pipe_fds[0], out, out_len);
    close(pipe_fds[0]);
    cove_exec_free(exec);
    return status;
}

static void check_output(cove_vm *vm, const char *name, const char *const *argv,
                         const char *want)
{
    char out[4096];
    cove_exec_status status = run(vm, argv, out, sizeof(out));
    check(status.state == COVE_EXEC_EXITED && status.code == 0 && strcmp(out, want) == 0, name,
          "state %d code %d output '%s' (%s), wanted '%s'", status.state, status.code, out,
          status.message, want);
}

/* Two execs at once: the slow one started first must not hold up the quick one. */
static void check_concurrent(cove_vm *vm)
{
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return;
    const char *slow_argv[] = {"sh", "-c", "sleep 2; echo slow", NULL};
    cove_exec_options options;
    cove_exec_options_init(&options);
    options.argv = slow_argv;
    options.stdout_fd = pipe_fds[1];
    cove_error error;
    cove_exec *slow = cove_vm_exec(vm, &options, TIMEOUT_MS, &error);
    check(slow != NULL, "concurrent-start", "%s", error.message);
    const char *quick_argv[] = {"echo", "quick", NULL};
    check_output(vm, "concurrent-quick", quick_argv, "quick\n");
    cove_exec_status status;
    check(slow && cove_exec_wait(slow, 0, &status) == COVE_EXEC_RUNNING, "concurrent-overlap",
          "the slow command ended before the quick one was done");
    if (slow)
        cove_exec_wait(slow, TIMEOUT_MS, &status);
    close(pipe_fds[1]);
    char out[64];
    read_all(pipe_fds[0], out, sizeof(out));
    close(pipe_fds[0]);
    check(slow && status.state == COVE_EXEC_EXITED && strcmp(out, "slow\n") == 0,
          "concurrent-slow", "state %d output '%s'", status.state, out);
    cove_exec_free(slow);
}

static bool send_frame(int fd, struct agent_buf *buf)
{
    return write(fd, buf->data, buf->len) == (ssize_t)buf->len;
}

/* Reads frames until one of `type` arrives; false on end of stream or another error. */
static bool await_frame(int fd, struct agent_reader *reader, uint16_t type)
{
    struct agent_frame frame;
    for (;;) {
        int r = agent_reader_next(reader, &frame);
        if (r < 0)
            return false;
        if (r == 1 && frame.type == type)
            return true;
        if (r == 1)
            continue;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, TIMEOUT_MS) <= 0 || agent_reader_fill(reader, fd) <= 0)
            return false;
    }
}

/*
 * Speaks the protocol by hand: starts `yes` (endless output), takes some of it and hangs up
 * without a word. The agent must kill `yes` and go on serving.
 */
static void check_disconnect(cove_vm *vm)
{
    cove_error error;
    int fd = cove_vm_connect(vm, COVE_AGENT_PORT, TIMEOUT_MS, &error);
    check(fd >= 0, "disconnect-connect", "%s", error.message);
    if (fd < 0)
        return;
    static uint8_t space[AGENT_FRAME_MAX];
    struct agent_buf buf;
    struct agent_reader reader;
    agent_reader_init(&reader);
    bool ok = await_frame(fd, &reader, AGENT_HELLO);
    agent_buf_init(&buf, space, sizeof(space));
    struct agent_hello hello = {.version = AGENT_PROTO_VERSION, .frame_max = AGENT_FRAME_MAX};
    agent_encode_hello(&buf, &hello);
    static struct agent_exec_request request = {.argc = 1, .argv = {"yes"}, .cwd = "/"};
    agent_encode_exec(&buf, &request);
    ok = ok && send_frame(fd, &buf) && await_frame(fd, &reader, AGENT_STDOUT) &&
         await_frame(fd, &reader, AGENT_STDOUT);
    check(ok, "disconnect-stream", "no output from yes before hanging up");
    agent_reader_destroy(&reader);
    close(fd);
    /* The agent notices, kills yes, and its connection's child exits. */
    const char *const probe[] = {
        "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -x yes >/dev/null || "
                    "{ echo gone; exit; }; sleep 1; done; echo still-running", NULL};
    check_output(vm, "disconnect-killed", probe, "gone\n");
}

/* Bytes that are no protocol at all: the agent answers or hangs up, then serves the next. */
static void check_garbage(cove_vm *vm)
{
    cove_error error;
    int fd = cove_vm_connect(vm, COVE_AGENT_PORT, TIMEOUT_MS, &error);
    check(fd >= 0, "garbage-connect", "%s", error.message);
    if (fd < 0)
        return;
    char junk[512];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 11);
    check(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk), "garbage-send", "%s",
          strerror(errno));
    char sink[4096];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    bool closed = false;
    while (!closed && poll(&pfd, 1, TIMEOUT_MS) > 0)
        closed = read(fd, sink, sizeof(sink)) <= 0;
    check(closed, "garbage-closed", "the agent kept the connection open");
    close(fd);
    const char *const echo[] = {"echo", "alive", NULL};
    check_output(vm, "garbage-survived", echo, "alive\n");
}

static void check_copy(cove_vm *vm, const char *scratch)
{
    char src[512], dst[512];
    snprintf(src, sizeof(src), "%s/copy-in", scratch);
    snprintf(dst, sizeof(dst), "%s/copy-out", scratch);
    FILE *f = fopen(src, "w");
    for (int i = 0; f && i < 300000; i++)
        fprintf(f, "%d:%c", i, (char)(i % 251));
    if (f)
        fclose(f);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    cove_error error;
    int r = cove_vm_copy_in(vm, in, "/tmp/copied", 0640, TIMEOUT_MS, &error);
    check(r == 0, "copy-in", "%s", error.message);
    close(in);
    const char *const mode[] = {"stat", "-c", "%a", "/tmp/copied", NULL};
    check_output(vm, "copy-in-mode", mode, "640\n");
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    r = cove_vm_copy_out(vm, "/tmp/copied", out, TIMEOUT_MS, &error);
    check(r == 0, "copy-out", "%s", error.message);
    close(out);
    char command[1200];
    snprintf(command, sizeof(command), "cmp -s '%s' '%s'", src, dst);
    check(system(command) == 0, "copy-roundtrip", "%s and %s differ", src, dst);
    out = open(dst, O_WRONLY | O_TRUNC | O_CLOEXEC);
    r = cove_vm_copy_out(vm, "/no/such/file", out, TIMEOUT_MS, &error);
    check(r == -ENOENT, "copy-out-missing", "returned %d (%s)", r, error.message);
    close(out);
}

int main(int argc, char **argv)
{
    const char *kernel = NULL, *initrd = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--kernel") == 0)
            kernel = argv[i + 1];
        else if (strcmp(argv[i], "--initrd") == 0)
            initrd = argv[i + 1];
    }
    if (!kernel || !initrd) {
        fprintf(stderr, "usage: exec_api --kernel PATH --initrd PATH\n");
        return 2;
    }
    const char *scratch = getenv("WORK") ? getenv("WORK") : "/tmp";
    cove_config *config = cove_config_new();
    cove_config_set_kernel(config, kernel);
    cove_config_set_initrd(config, initrd);
    cove_config_set_cmdline(config, "console=ttyS0 quiet panic=-1");
    cove_config_set_memory(config, 256u << 20);
    cove_config_set_vsock(config, 0, NULL);
    cove_error error;
    cove_vm *vm = cove_vm_new(config, &error);
    check(vm != NULL, "create", "%s", error.message);
    if (!vm || cove_vm_start(vm, &error) < 0) {
        check(false, "start", "%s", error.message);
        return 1;
    }
    const char *const hello[] = {"echo", "hello", NULL};
    check_output(vm, "exec", hello, "hello\n");
    check_concurrent(vm);
    check_disconnect(vm);
    check_garbage(vm);
    check_copy(vm, scratch);

    int r = cove_vm_agent_shutdown(vm, TIMEOUT_MS, &error);
    check(r == 0, "shutdown", "%s", error.message);
    cove_state state = cove_vm_wait(vm, TIMEOUT_MS);
    cove_exit exit_info = cove_vm_exit(vm);
    check(state == COVE_STATE_STOPPED && exit_info.kind == COVE_EXIT_POWEROFF, "shutdown-poweroff",
          "state %s, exit %s (%s)", cove_state_name(state), cove_exit_kind_name(exit_info.kind),
          exit_info.reason);
    cove_exec_status status;
    char out[64];
    status = run(vm, hello, out, sizeof(out));
    check(status.state == COVE_EXEC_LOST, "exec-after-end", "state %d", status.state);
    cove_vm_free(vm);
    cove_config_free(config);
    printf("%s\n", failures ? "FAILED" : "ALL OK");
    return failures ? 1 : 0;
}
