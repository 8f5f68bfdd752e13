/*
 * `cove run [options] -- CMD [ARG...]`: a fresh VM runs one command and is destroyed.
 *
 * The VM boots the bundled guest (cove-agent as init) with a vsock device; a starter thread
 * asks the agent to run CMD as soon as it answers, while the main thread watches signals, the
 * --timeout timer and the VM. CMD's output goes straight to our stdout and stderr (libcove's
 * exec thread writes it), and its status becomes ours. The guest's console goes to an
 * unnamed temporary file (O_TMPFILE: nothing to clean up, whatever kills us) and is shown
 * only when the guest fails.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

/* How long the agent may take to answer after the VM started (the guest boots meanwhile). */
#define AGENT_TIMEOUT_MS 120000
/* How long a guest with disks gets to sync and power off after the command ended. */
#define SHUTDOWN_TIMEOUT_MS 20000
/* The most of the console log shown when the guest failed. */
#define CONSOLE_TAIL_BYTES 4096

struct command_run {
    cove_vm *vm;
    cove_exec_options exec_options;
    const char **env; /* exec_options.env: opts->env plus a NULL */
    int console_fd;   /* the guest's console log, or -1 when the user chose --serial */

    /* The starter thread's result, the main thread's once it joined it: started, or
     * start_error when that is NULL. exec is NULL until then. */
    pthread_t starter;
    bool starter_running;
    int started_fd; /* eventfd: the starter is done */
    cove_exec *started;
    cove_error start_error;
    cove_exec *exec;

    int signal_fd;
    int timer_fd; /* -1 without --timeout */
    bool timed_out;
    int stopped_by;    /* the signal that made us stop the VM, or 0 */
    int forwarded_sig; /* the last signal forwarded to CMD, to force a stop on the second */
};

/* ---- Setting up ---- */

static int open_console_log(cove_config *config)
{
    const char *dir = getenv("TMPDIR");
    int fd = open(dir && dir[0] ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1; /* then the console is simply discarded */
    cove_config_set_serial_fds(config, -1, fd);
    return fd;
}

static int prepare(struct command_run *run, cove_config *config, const struct run_options *opts)
{
    run->console_fd = opts->serial_given ? -1 : open_console_log(config);
    if (!opts->serial_given && run->console_fd < 0)
        cove_config_set_serial_none(config);
    run->env = calloc(opts->env_count + 1, sizeof(*run->env));
    if (!run->env)
        return -1;
    for (size_t i = 0; i < opts->env_count; i++)
        run->env[i] = opts->env[i];

    cove_exec_options *xo = &run->exec_options;
    cove_exec_options_init(xo);
    xo->argv = (const char *const *)opts->command;
    xo->env = run->env;
    xo->cwd = opts->workdir;
    xo->uid = opts->uid;
    xo->gid = opts->gid;
    xo->tty = opts->tty;
    xo->stdin_fd = opts->interactive ? STDIN_FILENO : -1;
    xo->stdout_fd = STDOUT_FILENO;
    xo->stderr_fd = STDERR_FILENO;
    struct winsize size;
    if (opts->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) {
        xo->rows = size.ws_row;
        xo->cols = size.ws_col;
    }
    return 0;
}

static int open_signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGWINCH);
    /* Blocked before libcove starts threads, so only the signalfd ever sees them. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

static int open_timer(uint64_t timeout_ms)
{
    if (timeout_ms == 0)
        return -1;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0)
        return -1;
    struct itimerspec when = {.it_value = {.tv_sec = (time_t)(timeout_ms / 1000),
                                           .tv_nsec = (long)(timeout_ms % 1000) * 1000000L}};
    timerfd_settime(fd, 0, &when, NULL);
    return fd;
}

/* ---- The starter thread: waits for the agent, then starts CMD. ---- */

static void *starter_thread(void *arg)
{
    struct command_run *run = arg;
    run->started = cove_vm_exec(run->vm, &run->exec_options, AGENT_TIMEOUT_MS, &run->start_error);
    uint64_t one = 1;
    if (write(run->started_fd, &one, sizeof(one)) < 0) {
        /* an eventfd write only fails on overflow */
    }
    return NULL;
}

static void join_starter(struct command_run *run)
{
    if (!run->starter_running)
        return;
    pthread_join(run->starter, NULL);
    run->starter_running = false;
    run->exec = run->started;
}

/* ---- Outcomes ---- */

/* Shows the end of the guest's console: what a user needs when the guest failed. */
static void show_console_tail(const struct command_run *run)
{
    if (run->console_fd < 0)
        return;
    off_t end = lseek(run->console_fd, 0, SEEK_END);
    if (end <= 0)
        return;
    char buf[CONSOLE_TAIL_BYTES];
    off_t from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
    ssize_t n = pread(run->console_fd, buf, sizeof(buf), from);
    if (n <= 0)
        return;
    fprintf(stderr, "cove: the guest console ended with:\n");
    fflush(stderr);
    if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
        /* nowhere else to say it */
    }
    if (buf[n - 1] != '\n')
        fputc('\n', stderr);
}

/* Why the VM is gone, when something other than us ended it. */
static bool report_vm_failure(const struct command_run *run)
{
    cove_exit exit_info = cove_vm_exit(run->vm);
    if (exit_info.kind == COVE_EXIT_NONE || exit_info.kind == COVE_EXIT_STOPPED)
        return false;
    fprintf(stderr, "cove: the VM ended before the command did: %s\n", exit_info.reason);
    if (exit_info.kind != COVE_EXIT_POWEROFF && exit_info.kind != COVE_EXIT_REBOOT)
        show_console_tail(run);
    return true;
}

static int start_failed(struct command_run *run)
{
    if (!report_vm_failure(run)) {
        fprintf(stderr, "cove: %s\n", run->start_error.message);
        show_console_tail(run);
    }
    return EXIT_EXEC_COVE_FAILED;
}

static int exec_outcome(struct command_run *run, const char *name)
{
    cove_exec_status status;
    cove_exec_wait(run->exec, -1, &status);
    switch (status.state) {
    case COVE_EXEC_EXITED:
        return status.code;
    case COVE_EXEC_SIGNALED:
        return EXIT_SIGNAL_BASE + status.code;
    case COVE_EXEC_FAILED:
        if (status.step == COVE_EXEC_STEP_EXEC && status.code == ENOENT) {
            fprintf(stderr, "cove: %s: command not found in the guest\n", name);
            return EXIT_EXEC_NOT_FOUND;
        }
        fprintf(stderr, "cove: %s: cannot run it in the guest: %s\n", name,
                status.message[0] ? status.message : strerror(status.code));
        return EXIT_EXEC_CANNOT_RUN;
    default:
        if (!report_vm_failure(run))
            fprintf(stderr, "cove: lost the connection to cove-agent: %s\n", status.message);
        return EXIT_EXEC_COVE_FAILED;
    }
}

/* ---- The main loop ---- */

static void stop_vm(struct command_run *run, int sig)
{
    if (!run->stopped_by && !run->timed_out)
        run->stopped_by = sig;
    cove_vm_stop(run->vm);
}

static void resize(struct command_run *run)
{
    struct winsize size;
    if (run->exec && run->exec_options.tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0)
        cove_exec_resize(run->exec, size.ws_row, size.ws_col);
}

/*
 * Ctrl-C and friends go to CMD, as with a local command; the same signal a second time
 * means the user insists, and the VM is stopped. Before CMD runs, they stop the VM at once.
 */
static void handle_signal(struct command_run *run)
{
    struct signalfd_siginfo info;
    if (read(run->signal_fd, &info, sizeof(info)) != sizeof(info))
        return;
    int sig = (int)info.ssi_signo;
    if (sig == SIGWINCH) {
        resize(run);
    } else if (run->exec && run->forwarded_sig != sig &&
               cove_exec_signal(run->exec, sig) == 0) {
        run->forwarded_sig = sig;
    } else {
        stop_vm(run, sig);
    }
}

static void handle_timeout(struct command_run *run, const struct run_options *opts)
{
    uint64_t expirations;
    if (read(run->timer_fd, &expirations, sizeof(expirations)) < 0)
        return;
    if (run->timed_out || run->stopped_by)
        return;
    run->timed_out = true;
    fprintf(stderr, "cove: %s: timed out after %.3g s; the VM was stopped\n", opts->command[0],
            (double)opts->timeout_ms / 1000.0);
    cove_vm_stop(run->vm);
}

/* Runs until CMD has ended or could not start; returns the exit status. */
static int supervise(struct command_run *run, const struct run_options *opts)
{
    int status = -1;
    while (status < 0) {
        struct pollfd fds[3] = {
            {.fd = run->signal_fd, .events = POLLIN},
            {.fd = run->timer_fd, .events = POLLIN},
            {.fd = run->starter_running ? run->started_fd : cove_exec_fd(run->exec),
             .events = POLLIN},
        };
        if (poll(fds, 3, -1) < 0 && errno != EINTR)
            return EXIT_EXEC_COVE_FAILED;
        if (fds[0].revents & POLLIN)
            handle_signal(run);
        if (fds[1].revents & POLLIN)
            handle_timeout(run, opts);
        if (!(fds[2].revents & POLLIN))
            continue;
        if (run->starter_running) {
            join_starter(run);
            if (!run->exec && !run->timed_out && !run->stopped_by)
                status = start_failed(run);
            else if (!run->exec)
                status = 0; /* overridden below */
            else
                resize(run); /* the window may have changed during boot */
        } else if (!run->timed_out && !run->stopped_by) {
            status = exec_outcome(run, opts->command[0]);
        } else {
            status = 0; /* overridden below */
        }
        if (run->timed_out)
            status = EXIT_EXEC_TIMEOUT;
        else if (run->stopped_by)
            status = EXIT_SIGNAL_BASE + run->stopped_by;
    }
    return status;
}

/*
 * The VM is thrown away, so only disks hold anything worth a clean power-off (the guest's
 * page cache); without them a forced stop loses nothing and is quicker.
 */
static void end_vm(struct command_run *run, const cove_config *config)
{
    if (cove_vm_exit(run->vm).kind == COVE_EXIT_NONE && cove_config_disk_count(config) > 0) {
        cove_error error;
        if (cove_vm_agent_shutdown(run->vm, SHUTDOWN_TIMEOUT_MS, &error) == 0)
            cove_vm_wait(run->vm, SHUTDOWN_TIMEOUT_MS);
        else
            fprintf(stderr, "cove: %s; stopping the VM\n", error.message);
    }
    cove_vm_stop(run->vm);
    cove_vm_wait(run->vm, -1);
}

static const char *boot_source_note(cove_boot_source source)
{
    switch (source) {
    case COVE_BOOT_RESTORED: return " (restored from the boot cache)";
    case COVE_BOOT_COLD_SAVED: return " (booted; saved to the boot cache)";
    default: return "";
    }
}

static int boot_and_run(struct command_run *run, const cove_config *config,
                        const struct run_options *opts, uint64_t started_ns)
{
    cove_error error;
    run->vm = cove_vm_new(config, &error);
    if (!run->vm) {
        fprintf(stderr, "cove: %s\n", error.message);
        return EXIT_EXEC_COVE_FAILED;
    }
    cove_vm_set_warning_callback(run->vm, print_vm_warning, NULL);
    struct terminal term = {0};
    if (opts->tty)
        terminal_raw(&term, false);
    int status;
    if (cove_vm_start(run->vm, &error) < 0) {
        fprintf(stderr, "cove: %s\n", error.message);
        status = EXIT_EXEC_COVE_FAILED;
    } else if (pthread_create(&run->starter, NULL, starter_thread, run) != 0) {
        fprintf(stderr, "cove: cannot start a thread\n");
        status = EXIT_EXEC_COVE_FAILED;
    } else {
        run->starter_running = true;
        status = supervise(run, opts);
        end_vm(run, config);
        join_starter(run);
    }
    terminal_restore(&term);
    uint64_t boot_ns = cove_vm_boot_signal_ns(run->vm);
    if (opts->boot_timer && boot_ns)
        fprintf(stderr, "cove: boot-timer: %llu us%s\n",
                (unsigned long long)((boot_ns - started_ns) / 1000),
                boot_source_note(cove_vm_boot_source(run->vm)));
    cove_exec_free(run->exec);
    cove_vm_free(run->vm);
    return status;
}

int run_command(cove_config *config, const struct run_options *opts, uint64_t started_ns)
{
    struct command_run run = {.console_fd = -1, .signal_fd = -1, .timer_fd = -1};
    cove_config_set_vsock(config, 0, NULL);
    if (prepare(&run, config, opts) < 0) {
        fprintf(stderr, "cove: out of memory\n");
        return EXIT_EXEC_COVE_FAILED;
    }
    run.signal_fd = open_signal_fd();
    run.timer_fd = open_timer(opts->timeout_ms);
    run.started_fd = eventfd(0, EFD_CLOEXEC);
    int status;
    if (run.signal_fd < 0 || run.started_fd < 0 || (opts->timeout_ms && run.timer_fd < 0)) {
        fprintf(stderr, "cove: %s\n", strerror(errno));
        status = EXIT_EXEC_COVE_FAILED;
    } else {
        status = boot_and_run(&run, config, opts, started_ns);
    }
    const int fds[] = {run.console_fd, run.signal_fd, run.timer_fd, run.started_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(run.env);
    return status;
}
