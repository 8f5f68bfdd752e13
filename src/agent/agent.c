/*
 * cove-agent: PID 1 of Cove's default guest.
 *
 * It tells the VMM that userspace is up (boot timer), prepares a minimal system (proc, sys,
 * dev, tmp, run, hostname, PATH), then runs one session on the console: the command the
 * kernel passed after "--" on its command line (through /bin/sh -c), or an interactive shell
 * when there is none. When that session ends it powers the machine off, which the VMM sees
 * as a clean exit.
 *
 * PID 1 must never exit (the kernel would panic), so every setup failure is reported on one
 * line and skipped. The session is supervised by a reap loop that later can grow into the
 * event loop of the vsock exec server.
 */
#include "agent_util.h"

#include <cove/cove.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#endif

#define AGENT_CONSOLE "/dev/console"
#define AGENT_SHELL "/bin/sh"
#define AGENT_PATH "/bin:/sbin:/usr/bin:/usr/sbin"
#define AGENT_HOSTNAME "cove"

/* One line on the console (stderr), prefixed with the program name. */
static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("cove-agent: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

/*
 * Boot timer: the VMM records when this byte arrives. Under another VMM the port is
 * unclaimed and the write is lost, and without ioperm (no CAP_SYS_RAWIO) it is skipped.
 */
static void signal_boot_complete(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (ioperm(COVE_BOOT_PORT, 1, 1) == 0) {
        outb(COVE_BOOT_MAGIC, COVE_BOOT_PORT);
        ioperm(COVE_BOOT_PORT, 1, 0);
    }
#endif
}

static void mount_one(const char *source, const char *target, const char *type,
                      unsigned long flags, const char *options)
{
    if (mkdir(target, 0755) != 0 && errno != EEXIST)
        say("mkdir %s: %s", target, strerror(errno));
    if (mount(source, target, type, flags, options) == 0)
        return;
    /* The kernel may have mounted devtmpfs itself (CONFIG_DEVTMPFS_MOUNT without initramfs). */
    if (errno == EBUSY)
        return;
    say("mount %s on %s: %s", type, target, strerror(errno));
}

/*
 * The kernel opens /dev/console for init's stdio before running it; that fails when the
 * initramfs carries no /dev/console node. Reopen the descriptors that are missing once
 * devtmpfs is there.
 */
static void ensure_stdio(void)
{
    int fd = -1;
    for (int target = 0; target <= 2; target++) {
        if (fcntl(target, F_GETFD) != -1)
            continue;
        if (fd < 0) {
            fd = open(AGENT_CONSOLE, O_RDWR | O_NOCTTY);
            if (fd < 0)
                return; /* nowhere to report it either */
        }
        if (fd != target)
            dup2(fd, target);
    }
    if (fd > 2)
        close(fd);
}

static void setup_filesystems(void)
{
    const unsigned long nosuid_nodev = MS_NOSUID | MS_NODEV;

    /* /dev first: it gives the console on which the other steps report failures. */
    mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    ensure_stdio();
    mount_one("proc", "/proc", "proc", nosuid_nodev | MS_NOEXEC, NULL);
    mount_one("sysfs", "/sys", "sysfs", nosuid_nodev | MS_NOEXEC, NULL);
    mount_one("tmpfs", "/tmp", "tmpfs", nosuid_nodev, "mode=1777");
    mount_one("tmpfs", "/run", "tmpfs", nosuid_nodev, "mode=0755");
}

static void setup_environment(void)
{
    if (sethostname(AGENT_HOSTNAME, strlen(AGENT_HOSTNAME)) != 0)
        say("sethostname: %s", strerror(errno));
    if (setenv("PATH", AGENT_PATH, 1) != 0)
        say("setenv PATH: %s", strerror(errno));
    /* The kernel sets HOME=/; /root is where an interactive user expects to land. */
    if (setenv("HOME", "/root", 1) != 0)
        say("setenv HOME: %s", strerror(errno));
}

/*
 * In the child: become a session leader whose controlling terminal is the console, so that
 * an interactive shell gets job control and ^C reaches the command, not PID 1.
 */
static void attach_console(void)
{
    if (setsid() < 0)
        say("setsid: %s", strerror(errno));
    int fd = open(AGENT_CONSOLE, O_RDWR);
    if (fd < 0) {
        say("open %s: %s", AGENT_CONSOLE, strerror(errno));
        return;
    }
    if (ioctl(fd, TIOCSCTTY, 0) != 0)
        say("%s as controlling tty: %s", AGENT_CONSOLE, strerror(errno));
    for (int target = 0; target <= 2; target++)
        dup2(fd, target);
    if (fd > 2)
        close(fd);
}

/* Starts the session: `sh -c command`, or an interactive sh when command is NULL. */
static pid_t spawn_session(const char *command)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        say("fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0)
        return pid;

    attach_console();
    if (command != NULL)
        execl(AGENT_SHELL, "sh", "-c", command, (char *)NULL);
    else
        execl(AGENT_SHELL, "sh", (char *)NULL);
    say("exec %s: %s", AGENT_SHELL, strerror(errno));
    _exit(127);
}

/*
 * Reaps every child (orphans are re-parented to PID 1) until `session` ends; returns its
 * wait status.
 */
static int wait_session(pid_t session)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid == session)
            return status;
        if (pid < 0 && errno == ECHILD)
            return 0; /* cannot happen while session lives; do not spin */
    }
}

static void report_status(int status)
{
    char line[128];
    if (agent_describe_status(status, line, sizeof(line)))
        say("%s", line);
}

/* Powers off; the VMM turns ACPI S5 into a clean exit. Never returns. */
static void power_off(void)
{
    fflush(NULL);
    sync();
    reboot(RB_POWER_OFF);
    say("power off: %s", strerror(errno));
    /* Stay alive: PID 1 exiting panics the kernel. Keep reaping orphans. */
    for (;;) {
        if (waitpid(-1, NULL, 0) < 0)
            pause();
    }
}

int main(int argc, char *argv[])
{
    signal_boot_complete();
    setup_filesystems();
    setup_environment();

    char *command = agent_join_args(argc, argv);
    if (argc > 1 && command == NULL)
        say("out of memory joining the command; starting a shell instead");

    pid_t session = spawn_session(command);
    free(command);
    if (session > 0)
        report_status(wait_session(session));

    power_off();
    return 0;
}
