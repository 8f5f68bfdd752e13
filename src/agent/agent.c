/*
 * cove-agent: PID 1 of Cove's default guest.
 *
 * It tells the VMM that userspace is up (boot timer), prepares a minimal system (proc, sys,
 * dev, dev/pts, tmp, run, the host's shares, hostname, PATH), then does two things at once:
 *  - with a vsock device, serves the host's requests on port COVE_AGENT_PORT: every
 *    connection is handled by a child process of its own (exec_server.c), so a connection
 *    that goes wrong can only take its own child down;
 *  - runs one session on the console: the command the kernel passed after "--" on its command
 *    line (through /bin/sh -c), or, when there is none and no vsock device to serve, an
 *    interactive shell. When that session ends it powers the machine off.
 * It powers off, which the VMM sees as a clean exit, when the console session ends, when a
 * connection asked for it, or when the ACPI power button is pressed.
 *
 * PID 1 must never exit (the kernel would panic), so every setup failure is reported on one
 * line and skipped. One poll loop supervises everything: child exits through a signalfd, the
 * power button through evdev, and the vsock listener.
 */
#include "agent_util.h"
#include "exec_server.h"

#include <cove/cove.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <arpa/inet.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <sys/io.h>
#endif

#define AGENT_CONSOLE "/dev/console"
#define AGENT_SHELL "/bin/sh"
#define AGENT_PATH "/bin:/sbin:/usr/bin:/usr/sbin"
#define AGENT_HOSTNAME "cove"
#define AGENT_MAX_BUTTONS 4
#define AGENT_INPUT_DEVICES 32
#define AGENT_STOP_GRACE_MS 5000 /* how long the session may take to exit after SIGTERM */
/* Connections served at once; more wait in the listen backlog. */
#define AGENT_MAX_SERVERS 64
/* A connection's child exits with this when the host asked for a power-off. */
#define AGENT_EXIT_SHUTDOWN 93

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
 * unclaimed and the write is lost. Failures are silent: the timer is optional.
 *
 * The byte goes through /dev/port (CONFIG_DEVPORT), so the kernel does the port write. A
 * user-mode `out` after ioperm() is the fallback only: under QEMU's pc and q35 machines in
 * the nested test host it raised #GP although ioperm() had succeeded, and a fault here kills
 * PID 1 (docs/testing.md). /dev/port exists once devtmpfs is mounted, so this runs after.
 */
static void write_boot_port(unsigned char magic)
{
    int fd = open("/dev/port", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t written = pwrite(fd, &magic, 1, COVE_BOOT_PORT);
        close(fd);
        if (written == 1)
            return;
    }
#if defined(__x86_64__) || defined(__i386__)
    if (ioperm(COVE_BOOT_PORT, 1, 1) == 0) {
        outb(magic, COVE_BOOT_PORT);
        ioperm(COVE_BOOT_PORT, 1, 0);
    }
#endif
}

/* cove-agent's boot-complete says it will also say READY (see signal_ready). */
static void signal_boot_complete(void)
{
    write_boot_port(COVE_BOOT_MAGIC_AGENT);
}

/*
 * Set up but for the shares, the listener open, nothing started or connected yet: the VMM may
 * save the machine as a boot snapshot now (it does so while this port write exits to it), and
 * a VM restored from it goes on from right here, mounting the shares and starting the console
 * command if there is one. Said even when the VMM takes no snapshot, so that it need not wait.
 */
static void signal_ready(void)
{
    write_boot_port(COVE_READY_MAGIC);
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
    signal_boot_complete();
    ensure_stdio();
    mount_one("proc", "/proc", "proc", nosuid_nodev | MS_NOEXEC, NULL);
    mount_one("sysfs", "/sys", "sysfs", nosuid_nodev | MS_NOEXEC, NULL);
    /* Pseudo-terminals for execs with a tty (gid 5 is "tty" by convention). */
    mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    mount_one("tmpfs", "/tmp", "tmpfs", nosuid_nodev, "mode=1777");
    mount_one("tmpfs", "/run", "tmpfs", nosuid_nodev, "mode=0755");
}

/* mkdir -p: the parents of a share's mount point may not exist in the initramfs. */
static int make_dirs(char *path)
{
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        int r = mkdir(path, 0755);
        *slash = '/';
        if (r != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* The kernel command line, or "" when /proc is not there. */
static void read_cmdline(char *cmdline, size_t len)
{
    cmdline[0] = '\0';
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, cmdline, len - 1);
    close(fd);
    cmdline[n > 0 ? n : 0] = '\0';
}

/* Raises the read-ahead of the share mounted on path (see AGENT_SHARE_READ_AHEAD_KB). A
 * failure only costs speed, so it is told on the console and the share stays mounted. */
static void set_share_read_ahead(const char *path)
{
    struct stat st;
    char file[64];
    if (stat(path, &st) != 0 ||
        !agent_read_ahead_path(major(st.st_dev), minor(st.st_dev), file, sizeof(file))) {
        say("read-ahead of share on %s: %s", path, strerror(errno));
        return;
    }
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    char value[16];
    int len = snprintf(value, sizeof(value), "%d\n", AGENT_SHARE_READ_AHEAD_KB);
    if (fd < 0 || write(fd, value, (size_t)len) != len)
        say("read-ahead of share on %s: %s: %s", path, file, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* The shares the host asked for with cove.mount=TAG:PATH[:ro] on the kernel command line. */
static void mount_shares(const char *cmdline)
{
    const char *cursor = cmdline;
    struct agent_mount share;
    while (agent_next_mount(&cursor, &share)) {
        if (make_dirs(share.path) != 0)
            say("mkdir %s: %s", share.path, strerror(errno));
        else if (mount(share.tag, share.path, "virtiofs", share.read_only ? MS_RDONLY : 0, NULL) != 0)
            say("mount share %s on %s: %s", share.tag, share.path, strerror(errno));
        else
            set_share_read_ahead(share.path);
    }
}

static void set_flags_up(int sock, const char *name)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(sock, SIOCSIFFLAGS, &ifr) == 0)
            return;
    }
    say("%s up: %s", name, strerror(errno));
}

static void set_ipv4(int sock, const char *name, unsigned long request, const char *addr)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    if (ioctl(sock, request, &ifr) != 0)
        say("%s address %s: %s", name, addr, strerror(errno));
}

static void add_default_route(int sock, const char *gateway)
{
    struct rtentry route = {0};
    struct sockaddr_in *gw = (struct sockaddr_in *)&route.rt_gateway;
    gw->sin_family = AF_INET;
    inet_pton(AF_INET, gateway, &gw->sin_addr);
    ((struct sockaddr_in *)&route.rt_dst)->sin_family = AF_INET;
    ((struct sockaddr_in *)&route.rt_genmask)->sin_family = AF_INET;
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    if (ioctl(sock, SIOCADDRT, &route) != 0 && errno != EEXIST)
        say("default route via %s: %s", gateway, strerror(errno));
}

/*
 * lo always; with cove.net=nat, eth0 as cove's NAT hands it out (QEMU's user-network
 * addresses: 10.0.2.15/24, the host at 10.0.2.2, DNS at 10.0.2.3), set directly rather than
 * by DHCP, which would only cost boot time for the same answer. With cove.net=link (a TAP
 * attachment) eth0 is only brought up: the tap's network is unknown to cove, and waiting for
 * a DHCP server that may not exist would stall every boot; the command sets an address or
 * runs `udhcpc -i eth0` itself.
 */
static void setup_network(bool nat, bool link)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return; /* a kernel without IPv4: nothing to set up */
    set_flags_up(sock, "lo");
    if (link)
        set_flags_up(sock, "eth0");
    if (nat) {
        set_ipv4(sock, "eth0", SIOCSIFADDR, "10.0.2.15");
        set_ipv4(sock, "eth0", SIOCSIFNETMASK, "255.255.255.0");
        set_flags_up(sock, "eth0");
        add_default_route(sock, "10.0.2.2");
        int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, "nameserver 10.0.2.3\n", 20) != 20)
            say("/etc/resolv.conf: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    close(sock);
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

static void exec_shell(const char *command)
{
    if (command != NULL)
        execl(AGENT_SHELL, "sh", "-c", command, (char *)NULL);
    else
        execl(AGENT_SHELL, "sh", (char *)NULL);
    say("exec %s: %s", AGENT_SHELL, strerror(errno));
    _exit(127);
}

/* The shell the session leader waits for; its signals go there (see lead_session). */
static pid_t session_shell;

static void forward_signal(int sig)
{
    if (session_shell > 0)
        kill(session_shell, sig);
}

/*
 * The session leader, between PID 1 and the shell. When a session leader exits the kernel
 * hangs up its terminal, and a hang-up throws away output the console has not sent yet: a
 * command that prints and exits at once would lose its output. So the leader outlives the
 * shell, waits for the console to drain, and only then exits with the shell's status.
 */
static void lead_session(const char *command)
{
    attach_console();
    session_shell = fork();
    if (session_shell == 0)
        exec_shell(command);
    if (session_shell < 0) {
        say("fork: %s", strerror(errno));
        _exit(127);
    }
    signal(SIGTERM, forward_signal);
    signal(SIGINT, forward_signal);
    signal(SIGHUP, forward_signal);
    int status = 0;
    while (waitpid(session_shell, &status, 0) < 0 && errno == EINTR)
        continue;
    tcdrain(STDOUT_FILENO);
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
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

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* PID 1 blocks SIGCHLD for its signalfd */
    lead_session(command);
    return -1; /* not reached */
}

/* Whether an evdev node reports KEY_POWER: the ACPI power button cove presses to ask for a
 * graceful stop. */
static bool has_power_key(int fd)
{
    unsigned long keys[KEY_MAX / (8 * sizeof(unsigned long)) + 1] = {0};
    if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(keys)), keys) < 0)
        return false;
    return keys[KEY_POWER / (8 * sizeof(long))] >> (KEY_POWER % (8 * sizeof(long))) & 1;
}

static int open_power_buttons(int *fds, int max)
{
    int count = 0;
    for (int i = 0; i < AGENT_INPUT_DEVICES && count < max; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/dev/input/event%d", i);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (has_power_key(fd))
            fds[count++] = fd;
        else
            close(fd);
    }
    return count;
}

static bool power_key_pressed(int fd)
{
    struct input_event events[16];
    ssize_t n = read(fd, events, sizeof(events));
    for (ssize_t i = 0; i < n / (ssize_t)sizeof(events[0]); i++)
        if (events[i].type == EV_KEY && events[i].code == KEY_POWER && events[i].value == 1)
            return true;
    return false;
}

static void report_status(int status);

/*
 * The vsock listener, or -1 when the guest has no vsock device to a host: then the local CID
 * is VMADDR_CID_ANY, or VMADDR_CID_LOCAL (1) from the loopback transport, which Linux
 * registers whenever vsock is built in. Bind alone would succeed either way.
 */
static int open_listener(void)
{
    int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (dev < 0)
        return -1;
    unsigned int cid = VMADDR_CID_ANY;
    int r = ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
    close(dev);
    if (r != 0 || cid == VMADDR_CID_ANY || cid <= VMADDR_CID_HOST)
        return -1;
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        say("vsock socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = COVE_AGENT_PORT};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0) {
        say("vsock port %u: %s", COVE_AGENT_PORT, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* What PID 1 watches: the console session, the connections' children, the power button. */
struct supervisor {
    pid_t session; /* the console session, or 0 when there is none (any more) */
    int session_status;
    int child_fd;  /* signalfd for SIGCHLD */
    int listener;  /* vsock, or -1 */
    pid_t servers[AGENT_MAX_SERVERS];
    unsigned server_count;
    bool shutdown_asked;
    int buttons[AGENT_MAX_BUTTONS];
    int button_count;
};

static bool forget_server(struct supervisor *sup, pid_t pid)
{
    for (unsigned i = 0; i < sup->server_count; i++) {
        if (sup->servers[i] == pid) {
            sup->servers[i] = sup->servers[--sup->server_count];
            return true;
        }
    }
    return false;
}

/* In a connection's child: serve it, then exit; never returns. */
static void serve_connection(struct supervisor *sup, int conn)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* PID 1 blocks SIGCHLD for its signalfd */
    close(sup->listener);
    close(sup->child_fd);
    for (int i = 0; i < sup->button_count; i++)
        close(sup->buttons[i]);
    enum exec_server_result result = exec_server_serve(conn);
    _exit(result == EXEC_SERVER_SHUTDOWN ? AGENT_EXIT_SHUTDOWN : 0);
}

/* Accepts every waiting connection and gives each to a child of its own. */
static void accept_connections(struct supervisor *sup)
{
    for (;;) {
        int conn = accept4(sup->listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno != EAGAIN && errno != EINTR)
                say("vsock accept: %s", strerror(errno));
            return;
        }
        if (sup->server_count == AGENT_MAX_SERVERS) {
            close(conn); /* the host sees the connection end and may retry */
            continue;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            serve_connection(sup, conn);
        if (pid < 0)
            say("fork: %s", strerror(errno));
        else
            sup->servers[sup->server_count++] = pid;
        close(conn);
    }
}

/* Reaps every exited child: the session, connections' children, and re-parented orphans. */
static void reap_children(struct supervisor *sup)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == sup->session) {
            sup->session_status = status;
            sup->session = 0;
        } else if (forget_server(sup, pid) && WIFEXITED(status) &&
                   WEXITSTATUS(status) == AGENT_EXIT_SHUTDOWN) {
            sup->shutdown_asked = true;
        }
    }
}

static void drain_signalfd(int fd)
{
    struct signalfd_siginfo info;
    if (read(fd, &info, sizeof(info)) < 0) {
        /* spurious: the reap decides */
    }
}

/* The power button: ask the session to end, then give it a moment before powering off. */
static void stop_session(struct supervisor *sup)
{
    say("power button pressed: stopping");
    if (sup->session <= 0)
        return;
    kill(-sup->session, SIGTERM);
    kill(sup->session, SIGTERM);
    for (int waited = 0; waited < AGENT_STOP_GRACE_MS && sup->session > 0; waited += 100) {
        struct pollfd pfd = {.fd = sup->child_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0)
            drain_signalfd(sup->child_fd);
        reap_children(sup);
    }
}

static bool power_button_pressed(struct supervisor *sup, const struct pollfd *fds)
{
    for (int i = 0; i < sup->button_count; i++)
        if ((fds[i].revents & POLLIN) && power_key_pressed(sup->buttons[i]))
            return true;
    return false;
}

/*
 * Runs until it is time to power off: the console session ended (had_session), a connection
 * asked for it, or the power button was pressed (then the session has been asked to stop).
 */
static void supervise(struct supervisor *sup)
{
    bool had_session = sup->session > 0;
    struct pollfd fds[2 + AGENT_MAX_BUTTONS];
    for (int i = 0; i < sup->button_count; i++)
        fds[i] = (struct pollfd){.fd = sup->buttons[i], .events = POLLIN};
    nfds_t count = (nfds_t)sup->button_count;
    fds[count++] = (struct pollfd){.fd = sup->child_fd, .events = POLLIN};
    fds[count++] = (struct pollfd){.fd = sup->listener, .events = POLLIN}; /* -1: ignored */
    for (;;) {
        if (poll(fds, count, -1) < 0 && errno != EINTR)
            return;
        if (fds[count - 2].revents & POLLIN)
            drain_signalfd(sup->child_fd);
        reap_children(sup);
        if (sup->shutdown_asked || (had_session && sup->session == 0)) {
            if (had_session && sup->session == 0)
                report_status(sup->session_status);
            return;
        }
        if (power_button_pressed(sup, fds)) {
            stop_session(sup);
            return;
        }
        if (fds[count - 1].revents & POLLIN)
            accept_connections(sup);
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
    /* What the session wrote may still sit in the console's tty buffer, waiting for the UART
     * or virtio-console to take it; reboot() does not wait for it, so wait here. */
    int console = open(AGENT_CONSOLE, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (console >= 0) {
        tcdrain(console);
        close(console);
    }
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
    setup_filesystems();
    char cmdline[4096];
    read_cmdline(cmdline, sizeof(cmdline));
    setup_network(agent_cmdline_has_word(cmdline, "cove.net=nat"),
                  agent_cmdline_has_word(cmdline, "cove.net=link"));
    setup_environment();

    char *command = agent_join_args(argc, argv);
    if (argc > 1 && command == NULL)
        say("out of memory joining the command; starting a shell instead");

    /* SIGCHLD through a signalfd, so one poll() watches children, the listener and the
     * power button. */
    sigset_t child;
    sigemptyset(&child);
    sigaddset(&child, SIGCHLD);
    sigprocmask(SIG_BLOCK, &child, NULL);
    struct supervisor sup = {.child_fd = signalfd(-1, &child, SFD_CLOEXEC), .listener = -1};
    if (sup.child_fd < 0)
        say("signalfd: %s", strerror(errno));
    sup.listener = open_listener();
    sup.button_count = open_power_buttons(sup.buttons, AGENT_MAX_BUTTONS);

    signal_ready();
    /* After READY, where a boot snapshot is taken: a share mounted before it would hold a
     * FUSE session the snapshot cannot carry. A restored guest goes on from here and mounts
     * the restored VM's shares, whatever directories they are; the host's first request
     * waits in the listener's backlog until then. */
    mount_shares(cmdline);
    /* With a host to serve and no command of its own, the console stays idle. */
    if (command != NULL || sup.listener < 0)
        sup.session = spawn_session(command);
    free(command);
    if (sup.child_fd >= 0 && (sup.session > 0 || sup.listener >= 0)) {
        supervise(&sup);
    } else if (sup.session > 0) {
        int status = 0;
        while (waitpid(sup.session, &status, 0) < 0 && errno == EINTR)
            continue;
        report_status(status);
    }
    power_off();
    return 0;
}
