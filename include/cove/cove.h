/*
 * libcove: a lightweight virtual machine runtime for Linux/KVM.
 *
 * The model follows Apple's Virtualization.framework: compose a configuration, validate it,
 * create a VM from it, then start it, stop it and observe its state. Nothing here keeps
 * global mutable state: several VMs may live in one process, each driven from any thread.
 *
 * Every function that can fail returns a negative errno-style code (or NULL) and, where a
 * cove_error is offered, fills it with one line naming the problem and the fix. Nothing a
 * guest does makes libcove abort or exit the process.
 */
#ifndef COVE_H
#define COVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COVE_ERROR_MAX 256

/* One human-readable line describing why a call failed. */
typedef struct cove_error {
    char message[COVE_ERROR_MAX];
} cove_error;

/* ---- Limits (like maximumAllowedCPUCount / minimumAllowedMemorySize) ---- */

unsigned cove_min_cpus(void);
/* The most vCPUs KVM on this host allows (KVM_CAP_MAX_VCPUS), capped by cove's own limit. */
unsigned cove_max_cpus(void);
uint64_t cove_min_memory(void);
/* The most guest memory cove will configure: physical RAM of the host, capped by cove's limit. */
uint64_t cove_max_memory(void);

/*
 * Parses a size such as "512M", "2G", "1048576", "64K" or "1.5G" (binary units; an optional
 * trailing "iB" or "B" is accepted). Returns 0, or -EINVAL for anything malformed ("12Q").
 */
int cove_parse_size(const char *text, uint64_t *bytes);
/* Writes a size as "64 KiB", "512 MiB", "1.5 GiB" into buf. */
void cove_format_size(uint64_t bytes, char *buf, size_t len);

/* ---- Configuration ---- */

typedef struct cove_config cove_config;

typedef enum cove_console_kind {
    COVE_CONSOLE_NONE,  /* output discarded, no input */
    COVE_CONSOLE_STDIO, /* the process's stdin/stdout */
    COVE_CONSOLE_FDS,   /* a caller-owned pair of file descriptors */
    COVE_CONSOLE_FILE,  /* output appended to a file; no input */
} cove_console_kind;

cove_config *cove_config_new(void);
void cove_config_free(cove_config *config);

/* Linux boot loader: a bzImage or an uncompressed ELF vmlinux, optional initrd, command line. */
int cove_config_set_kernel(cove_config *config, const char *path);
int cove_config_set_initrd(cove_config *config, const char *path);
int cove_config_set_cmdline(cove_config *config, const char *cmdline);
void cove_config_set_cpus(cove_config *config, unsigned cpus);
void cove_config_set_memory(cove_config *config, uint64_t bytes);

/*
 * Where the console is attached: its output goes there and its input comes from there. The
 * default is COVE_CONSOLE_NONE. The names predate the choice of console device (below): they
 * attach whichever device is chosen.
 */
void cove_config_set_serial_none(cove_config *config);
void cove_config_set_serial_stdio(cove_config *config);
/* in_fd may be -1 for output only. The descriptors stay owned by the caller. */
void cove_config_set_serial_fds(cove_config *config, int in_fd, int out_fd);
int cove_config_set_serial_file(cove_config *config, const char *path);

/* The console device, which the attachment above applies to. */
typedef enum cove_console_device {
    COVE_CONSOLE_DEVICE_SERIAL, /* 16550A UART on COM1 (the default); guest console=ttyS0 */
    COVE_CONSOLE_DEVICE_VIRTIO, /* virtio-console, port 0; guest console=hvc0 */
} cove_console_device;

void cove_config_set_console_device(cove_config *config, cove_console_device device);

/* Disks: raw images (regular files or block devices) attached as virtio-blk devices. */

/* The most disks a VM may have; cove_config_validate reports more. */
#define COVE_DISK_MAX 16
/* The longest disk serial, in bytes (the virtio-blk device ID). */
#define COVE_DISK_SERIAL_MAX 20

typedef enum cove_cache_mode {
    COVE_CACHE_HOST, /* through the host's page cache (the default) */
    COVE_CACHE_NONE, /* O_DIRECT: around the host's page cache */
} cove_cache_mode;

/* A zeroed struct is the defaults: read-write, COVE_CACHE_HOST, no serial. */
typedef struct cove_disk_options {
    bool read_only;
    cove_cache_mode cache;
    const char *serial; /* up to COVE_DISK_SERIAL_MAX bytes; NULL or "": none */
} cove_disk_options;

/*
 * Attaches the image at path as the next disk; options NULL means the defaults. Path and
 * serial are copied. Returns the disk's index (0, 1, ... in the order added), -EINVAL for a
 * NULL or empty path, or -ENOMEM. Only cove_config_validate looks at the image.
 */
int cove_config_add_disk(cove_config *config, const char *path, const cove_disk_options *options);

/*
 * Entropy: a virtio-rng device, so the guest has good randomness from early boot. Off by
 * default.
 */
void cove_config_set_entropy(cove_config *config, bool enabled);

/*
 * Nested virtualization: whether the guest's CPU shows the host's VMX or SVM, so that the
 * guest can run KVM itself. Off by default, as in Apple's framework: few jobs need it, it
 * exposes the host's nested-virtualization code to the guest, and a guest kernel with KVM
 * built in sets it up at every boot. Turned on where the host's KVM offers neither, the VM
 * fails to start with a reason naming the module parameter (nested=1).
 */
void cove_config_set_nested_virtualization(cove_config *config, bool enabled);

/*
 * Directory sharing: host directories the guest mounts with virtio-fs
 * (mount -t virtiofs TAG /mnt), served by libcove itself. Every path the guest walks is
 * confined to the directory; a read-only share refuses every change with EROFS.
 */

/* The most shares a VM may have; cove_config_validate reports more. */
#define COVE_SHARE_MAX 8
/* The longest tag, in bytes (virtio-fs's tag field). */
#define COVE_SHARE_TAG_MAX 36

/*
 * Shares host_dir under tag. Both are copied. Returns the share's index, -EINVAL for a NULL
 * or empty tag or directory, or -ENOMEM. Only cove_config_validate looks at the directory.
 */
int cove_config_add_share(cove_config *config, const char *tag, const char *host_dir,
                          bool read_only);
size_t cove_config_share_count(const cove_config *config);
/* Share index: returns its tag and fills *host_dir and *read_only (either may be NULL), or
 * NULL when there is no such share. The strings last until the configuration is freed. */
const char *cove_config_share(const cove_config *config, size_t index, const char **host_dir,
                              bool *read_only);

/*
 * What the guest may cache of a share, as virtiofsd's --cache:
 * - AUTO (the default): names and attributes for 1 s; file data in the guest's page cache,
 *   dropped at each open, so a file changed on the host is seen at its next open. Files opened
 *   write-only go around the page cache (direct I/O).
 * - NEVER: every open is direct I/O (reads and writes go straight between the host file and
 *   the caller's buffer, one copy) and names and attributes are looked up again at each use:
 *   host changes are seen at once. mmap(MAP_SHARED) of a share's files fails with ENODEV
 *   (MAP_PRIVATE, as exec and the dynamic loader use, works).
 * - ALWAYS: names and attributes for a day, file data kept across opens: fastest for trees the
 *   host does not change while the VM runs (toolchains, read-only sources).
 */
typedef enum {
    COVE_SHARE_CACHE_AUTO,
    COVE_SHARE_CACHE_NEVER,
    COVE_SHARE_CACHE_ALWAYS,
} cove_share_cache;

/* Sets share index's cache mode: 0, -ENOENT for no such share, -EINVAL for another value. */
int cove_config_set_share_cache(cove_config *config, size_t index, cove_share_cache cache);
/* Share index's cache mode (AUTO for no such share). */
cove_share_cache cove_config_share_cache(const cove_config *config, size_t index);

/*
 * Networking: a virtio-net device. COVE_NETWORK_NAT is user-mode NAT through libslirp, with
 * no root and no host set-up: the guest is 10.0.2.15/24, the host is reachable at 10.0.2.2
 * (its loopback), DNS at 10.0.2.3 (relayed to the host's resolver). COVE_POLICY_HOST_ONLY lets
 * the guest reach only the host alias and DNS (no outbound internet), enforced in the VMM.
 * COVE_NETWORK_TAP attaches the device to an existing host TAP device (see
 * cove_config_set_network_tap); the guest is then on whatever network the tap is joined to.
 */
typedef enum cove_network_kind {
    COVE_NETWORK_NONE, /* no network device (the default) */
    COVE_NETWORK_NAT,
    COVE_NETWORK_TAP,
} cove_network_kind;

typedef enum cove_network_policy {
    COVE_POLICY_OPEN,
    COVE_POLICY_HOST_ONLY,
} cove_network_policy;

/* mac: "aa:bb:cc:dd:ee:ff" (unicast), or NULL for cove's fixed locally administered one. */
int cove_config_set_network(cove_config *config, cove_network_kind kind,
                            cove_network_policy policy, const char *mac);
cove_network_kind cove_config_network(const cove_config *config, cove_network_policy *policy);

/* The longest TAP device name, in bytes (Linux's IFNAMSIZ less its terminator). */
#define COVE_TAP_NAME_MAX 15

/*
 * Attaches the network device to the existing TAP device tap_name (kind COVE_NETWORK_TAP,
 * policy COVE_POLICY_OPEN; the name is copied). Cove never creates or configures the tap:
 * create it first (ip tuntap add dev NAME mode tap [user USER] [multi_queue]). Attaching
 * needs CAP_NET_ADMIN unless the tap belongs to the caller's user or group. mac as for
 * cove_config_set_network; NULL gives one derived from tap_name (stable across starts and
 * different per tap, since VMs on one bridge must not share an address). Validation reports a
 * missing device or one that is not a TAP; cove_vm_start reports one it may not attach
 * (-EPERM) or that another program holds (-EBUSY), before the guest boots. Returns 0,
 * -EINVAL for a NULL or empty name, or -ENOMEM.
 */
int cove_config_set_network_tap(cove_config *config, const char *tap_name, const char *mac);
/* The TAP device's name, or NULL unless the kind is COVE_NETWORK_TAP. */
const char *cove_config_network_tap(const cove_config *config);

/* A host port forwarded into the guest (like docker run --publish). */
#define COVE_FORWARD_MAX 32
typedef struct cove_port_forward {
    bool udp;
    const char *host_addr; /* dotted IPv4 to bind; NULL or "": 127.0.0.1 */
    uint16_t host_port;
    uint16_t guest_port;
} cove_port_forward;

/* Copied. Validation checks the fields; the port is bound when the VM starts, so one in use
 * fails cove_vm_start with a line naming it, before the guest boots. */
int cove_config_add_port_forward(cove_config *config, const cove_port_forward *forward);
size_t cove_config_port_forward_count(const cove_config *config);

/*
 * Sockets: a virtio-vsock device, stream sockets between host and guest (AF_VSOCK in the
 * guest, which reaches the host at COVE_VSOCK_HOST_CID). Off by default; cove_vm_exec needs it.
 *
 * guest_cid: the guest's address, COVE_VSOCK_MIN_CID .. COVE_VSOCK_MAX_CID (0: the default,
 * COVE_VSOCK_MIN_CID; CIDs are per VM, so every VM may use the same one).
 * uds_path: NULL, or a Unix socket path on which the VM listens for other host programs while
 * it runs (the Firecracker convention): a program connects, writes "CONNECT <port>\n", reads
 * "OK <host-port>\n" and then holds a stream to that guest port. A guest connection to host
 * port P is relayed to the Unix socket "<uds_path>_P" when something listens there and is
 * refused otherwise. The path must not exist; the VM removes it when it is freed. The path is
 * copied. Returns 0, or -EINVAL for an empty uds_path, -ENOMEM.
 */
#define COVE_VSOCK_HOST_CID 2
#define COVE_VSOCK_MIN_CID 3
#define COVE_VSOCK_MAX_CID 0xfffffffeu
int cove_config_set_vsock(cove_config *config, uint64_t guest_cid, const char *uds_path);
/* Whether a vsock device is configured; *guest_cid and *uds_path (NULL: none) when not NULL. */
bool cove_config_vsock(const cove_config *config, uint64_t *guest_cid, const char **uds_path);

/*
 * Boot snapshots: with a cache directory (created, mode 0700, if missing), the first start of
 * a configuration boots the guest and, once its init says it is ready (cove-agent, idle and
 * listening: see COVE_READY_MAGIC), saves the whole machine there (a few tens of MB, the
 * guest RAM sparse); later starts of the same configuration restore that snapshot instead of
 * booting, in milliseconds, its RAM mapped copy-on-write. Before the first request, the host
 * gives the restored guest the current time and fresh entropy (its kernel reseeds its random
 * number generator), so restored VMs share nothing that should be unique.
 *
 * A snapshot belongs to one configuration on one host: the kernel and initrd files (path,
 * size, modification time), command line, CPUs, memory, devices, this libcove and the host's
 * KVM; anything else makes a new entry. Only configurations whose devices can be saved use it:
 * no disks, the serial console device, network none or NAT, and a vsock device; others boot
 * as usual. Shares may be there: their tags are part of the configuration, their directories
 * are not, since the guest mounts them only after the snapshot point (cove-agent does). One
 * entry serves the same tags on other directories; a guest init that mounts a share before it
 * says it is ready gets no snapshot (the save is refused) and boots each time. A damaged or unusable entry is removed with a warning and the guest
 * boots afresh. Nothing secret is in a snapshot: it is taken before any request reaches the
 * guest. What the guest kernel drew from its random number generator while booting (address
 * space layout, hash seeds) is the same in every VM restored from one snapshot; what it draws
 * after the restore is not. The directory keeps the 16 most recently used entries (a restore
 * counts as a use): each save removes the others, and temporary files that a killed save left
 * there over an hour ago. NULL (the default) turns it off.
 */
int cove_config_set_boot_cache(cove_config *config, const char *dir);
const char *cove_config_boot_cache(const cove_config *config);

const char *cove_config_kernel(const cove_config *config);
const char *cove_config_initrd(const cove_config *config);
const char *cove_config_cmdline(const cove_config *config);
unsigned cove_config_cpus(const cove_config *config);
uint64_t cove_config_memory(const cove_config *config);
cove_console_kind cove_config_serial_kind(const cove_config *config);
cove_console_device cove_config_console_device(const cove_config *config);
size_t cove_config_disk_count(const cove_config *config);
/*
 * Disk index: returns its path and, when options is not NULL, fills *options (serial NULL
 * when it has none). Returns NULL when there is no such disk. The strings belong to the
 * configuration and last until it is freed.
 */
const char *cove_config_disk(const cove_config *config, size_t index, cove_disk_options *options);
bool cove_config_entropy(const cove_config *config);

/* Every problem validation found, each one line. */
typedef struct cove_problems {
    size_t count;
    char **messages;
} cove_problems;

/*
 * Checks the whole configuration and reports every problem, not just the first. Returns the
 * number of problems (0 means valid). problems may be NULL; otherwise free it with
 * cove_problems_free(). Reads the kernel and initrd headers and opens the disk images
 * read-only, so it touches the file system; it creates and changes nothing.
 */
size_t cove_config_validate(const cove_config *config, cove_problems *problems);
void cove_problems_free(cove_problems *problems);

/* ---- Virtual machine ---- */

typedef struct cove_vm cove_vm;

typedef enum cove_state {
    COVE_STATE_STOPPED,  /* created and not started, or ended (see cove_vm_exit) */
    COVE_STATE_STARTING, /* building the machine and loading the kernel */
    COVE_STATE_RUNNING,
    COVE_STATE_STOPPING, /* a stop was asked for; vCPUs are being halted */
    COVE_STATE_ERROR,    /* ended because of a guest or host failure (see cove_vm_exit) */
    /* COVE_STATE_PAUSED and COVE_STATE_RESUMING are reserved for pause/resume. */
} cove_state;

/* Why a VM ended. */
typedef enum cove_exit_kind {
    COVE_EXIT_NONE,           /* still running, or never started */
    COVE_EXIT_POWEROFF,       /* the guest powered off (ACPI S5) */
    COVE_EXIT_REBOOT,         /* the guest asked for a reset; cove ends the VM */
    COVE_EXIT_STOPPED,        /* the host stopped it (cove_vm_stop) */
    COVE_EXIT_GUEST_PANIC,    /* the guest kernel reported a panic (pvpanic) */
    COVE_EXIT_TRIPLE_FAULT,   /* the vCPU shut down (triple fault) */
    COVE_EXIT_INTERNAL_ERROR, /* KVM could not run the guest (emulation failure, bad entry) */
    COVE_EXIT_HOST_ERROR,     /* cove itself failed while running the VM */
} cove_exit_kind;

typedef struct cove_exit {
    cove_exit_kind kind;
    /* One line with the detail, e.g. "KVM internal error: suberror 1 (emulation failure) on vCPU 0". */
    char reason[COVE_ERROR_MAX];
} cove_exit;

const char *cove_state_name(cove_state state);
const char *cove_exit_kind_name(cove_exit_kind kind);

/*
 * Called after every state change, in order, from whichever thread made the change (the
 * caller of cove_vm_start, or a libcove vCPU thread). It may query the VM; it must not free it
 * or block waiting for it to end.
 */
typedef void (*cove_state_fn)(cove_vm *vm, cove_state state, void *opaque);

/* Creates a VM from a configuration (which is copied, and validated again). */
cove_vm *cove_vm_new(const cove_config *config, cove_error *error);
/* Stops the VM if it is running and frees everything it holds. */
void cove_vm_free(cove_vm *vm);

void cove_vm_set_state_callback(cove_vm *vm, cove_state_fn callback, void *opaque);

/*
 * Called with one line when the guest broke a device's rules and cove stopped that device
 * while the VM runs on, e.g. "virtio-fs at PCI 00:05.0 (share 'job'): the guest's driver
 * broke queue 1 (a descriptor chain that loops); the device is stopped until the driver
 * resets it". A guest that keeps doing it gets a few such lines per device, then one saying
 * that further ones are not reported. Called from a libcove thread while the VM runs; it must
 * not block or free the VM. Takes effect only before cove_vm_start; none: nothing is told.
 */
typedef void (*cove_warning_fn)(cove_vm *vm, const char *line, void *opaque);
void cove_vm_set_warning_callback(cove_vm *vm, cove_warning_fn callback, void *opaque);

/* Builds the machine, loads the kernel and starts the vCPUs. Returns once the VM runs. */
int cove_vm_start(cove_vm *vm, cove_error *error);
/* Forces the VM to stop: vCPUs are halted and the VM ends with COVE_EXIT_STOPPED. */
int cove_vm_stop(cove_vm *vm);
/*
 * Asks the guest to power off by pressing its ACPI power button (a Generic Event Device that
 * notifies a PNP0C0C button). The guest decides: cove-agent, systemd-logind or acpid power
 * off; a guest with no such listener ignores it. Returns -EINVAL unless the VM is running.
 */
int cove_vm_request_stop(cove_vm *vm);

cove_state cove_vm_state(const cove_vm *vm);
/* A descriptor that becomes readable whenever the state changes (for poll/epoll). Reading it
 * is not needed; cove_vm_state() tells the new state. */
int cove_vm_state_fd(const cove_vm *vm);
/*
 * Waits until the VM has ended (its final state callback has returned) or timeout_ms passes
 * (-1: no limit). Returns the state.
 */
cove_state cove_vm_wait(cove_vm *vm, int timeout_ms);
/* Why the VM ended; kind COVE_EXIT_NONE until it has (as cove_vm_wait sees it). */
cove_exit cove_vm_exit(const cove_vm *vm);

/*
 * Boot timer: a guest signals "userspace is up" by writing COVE_BOOT_MAGIC to the byte port
 * COVE_BOOT_PORT (cove's init does it first thing). Returns the CLOCK_MONOTONIC time in
 * nanoseconds of the first such write, or 0 when the guest never sent one. Compare it with a
 * CLOCK_MONOTONIC reading of your own, e.g. taken at process start.
 */
#define COVE_BOOT_PORT 0x0440
#define COVE_BOOT_MAGIC 0x7b
/*
 * The same signal from an init that also writes COVE_READY_MAGIC once it has set up the guest
 * and waits for requests with nothing running (cove-agent): that is the moment a boot
 * snapshot is taken (cove_config_set_boot_cache).
 */
#define COVE_BOOT_MAGIC_AGENT 0x7c
#define COVE_READY_MAGIC 0x7d
uint64_t cove_vm_boot_signal_ns(const cove_vm *vm);

/* How the guest came up: booted, booted and saved as a boot snapshot, or restored from one. */
typedef enum cove_boot_source {
    COVE_BOOT_COLD,
    COVE_BOOT_COLD_SAVED,
    COVE_BOOT_RESTORED,
} cove_boot_source;
cove_boot_source cove_vm_boot_source(const cove_vm *vm);

/* ---- Sockets and the guest agent ---- */

/*
 * Opens a stream to the guest's vsock port. Waits up to timeout_ms (-1: no limit) for the
 * guest to accept, retrying while nothing listens there yet (the guest may still be booting).
 * Returns a connected stream socket that the caller owns and closes, or a negative errno with
 * error filled: -ENODEV without a vsock device, -EINVAL unless the VM is running (or starting),
 * -ETIMEDOUT, -ECONNREFUSED when the VM ended meanwhile. Blocks: never call it from a state
 * callback.
 */
int cove_vm_connect(cove_vm *vm, uint32_t port, int timeout_ms, cove_error *error);

/* The vsock port cove-agent serves (docs/agent-protocol.md). */
#define COVE_AGENT_PORT 1024

/* A command run in the guest by cove-agent. */
typedef struct cove_exec cove_exec;

typedef struct cove_exec_options {
    const char *const *argv; /* NULL-terminated, at least argv[0]; looked up in the guest's PATH */
    /* NULL-terminated "NAME=VALUE" entries set on top of the agent's environment (PATH, HOME,
     * TERM with a tty); NULL: none. Carried only over vsock: never on a command line or disk. */
    const char *const *env;
    const char *cwd; /* NULL: "/" */
    uint32_t uid;    /* 0: root */
    uint32_t gid;
    bool tty;        /* run on a pseudo-terminal: stdout_fd gets all output, stderr_fd none */
    uint16_t rows;   /* the tty's initial size; 0: 24 x 80 */
    uint16_t cols;
    /* Host descriptors, owned by the caller and left open. stdin_fd -1: the command reads
     * end-of-file at once; stdout_fd/stderr_fd -1: that output is discarded. When writing
     * stdout_fd or stderr_fd fails with EPIPE (its reader went away), the command gets
     * SIGPIPE, as it would writing to that pipe itself. */
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
} cove_exec_options;

/* Fills options with the defaults: no argv, no env, "/", root, no tty, every fd -1. */
void cove_exec_options_init(cove_exec_options *options);

typedef enum cove_exec_state {
    COVE_EXEC_RUNNING,
    COVE_EXEC_EXITED,   /* code: the exit status */
    COVE_EXEC_SIGNALED, /* code: the signal number that ended it */
    COVE_EXEC_FAILED,   /* it never ran; code: the guest's errno (ENOENT: no such command) */
    COVE_EXEC_LOST,     /* the connection to the agent broke (the VM ended, the agent died) */
} cove_exec_state;

/* FAILED: the step of starting the command that failed. */
typedef enum cove_exec_step {
    COVE_EXEC_STEP_EXEC,    /* running argv[0]; ENOENT: no such command */
    COVE_EXEC_STEP_WORKDIR, /* changing to cwd */
    COVE_EXEC_STEP_USER,    /* switching to uid/gid */
} cove_exec_step;

typedef struct cove_exec_status {
    cove_exec_state state;
    int code;
    cove_exec_step step;          /* FAILED only */
    char message[COVE_ERROR_MAX]; /* FAILED and LOST: one line saying why */
} cove_exec_status;

/*
 * Runs options->argv in the guest through cove-agent (vsock port COVE_AGENT_PORT), waiting up
 * to timeout_ms for the agent to answer (it may still be booting). A libcove thread then
 * copies stdin_fd to the command and its output to stdout_fd and stderr_fd, byte for byte,
 * until the command has ended and its output is written. Returns NULL with error filled when
 * the agent could not be reached or refused the request; a command that cannot start (not
 * found, not executable) gives an exec that ends COVE_EXEC_FAILED.
 */
cove_exec *cove_vm_exec(cove_vm *vm, const cove_exec_options *options, int timeout_ms,
                        cove_error *error);
/* Sends signo to the command (its process group). -ESRCH once it has ended. */
int cove_exec_signal(cove_exec *exec, int signo);
/* Changes the tty's window size (the command gets SIGWINCH). -ENOTTY without a tty. */
int cove_exec_resize(cove_exec *exec, uint16_t rows, uint16_t cols);
/* A descriptor that becomes readable once the exec has ended (for poll/epoll). */
int cove_exec_fd(const cove_exec *exec);
/* Waits up to timeout_ms (-1: no limit) for the end; fills status either way. Returns the
 * state (COVE_EXEC_RUNNING when the time ran out). */
cove_exec_state cove_exec_wait(cove_exec *exec, int timeout_ms, cove_exec_status *status);
/* Kills the command if it still runs (SIGKILL), waits for the copying thread, frees. */
void cove_exec_free(cove_exec *exec);

/* Copies a host file (read from src_fd to its end) to guest_path, created or replaced, with
 * permission bits mode. Returns 0 or a negative errno with error filled. */
int cove_vm_copy_in(cove_vm *vm, int src_fd, const char *guest_path, uint32_t mode,
                    int timeout_ms, cove_error *error);
/* Copies the guest file guest_path to dst_fd. Returns 0 or a negative errno with error filled. */
int cove_vm_copy_out(cove_vm *vm, const char *guest_path, int dst_fd, int timeout_ms,
                     cove_error *error);
/*
 * Asks cove-agent to sync the guest's file systems and power off; the VM then ends with
 * COVE_EXIT_POWEROFF. Returns 0 once the agent accepted, or a negative errno with error filled
 * (use cove_vm_stop then).
 */
int cove_vm_agent_shutdown(cove_vm *vm, int timeout_ms, cove_error *error);

/* ---- A share for another VMM (vhost-user-fs, as virtiofsd) ---- */

typedef struct cove_fs_serve_options {
    const char *socket_path; /* the Unix socket to create (it must not exist); removed again */
    const char *host_dir;    /* the directory to share, as with cove_config_add_share */
    bool read_only;
    cove_share_cache cache;
    int stop_fd; /* serving ends when this becomes readable (a signalfd, say); -1: none */
} cove_fs_serve_options;

/* No paths, read-write, COVE_SHARE_CACHE_AUTO, stop_fd -1. */
void cove_fs_serve_options_init(cove_fs_serve_options *options);

/*
 * Serves host_dir to another VMM's guest as a virtio-fs device over vhost-user, as virtiofsd
 * does for QEMU (-device vhost-user-fs-pci) or Cloud Hypervisor (--fs): listens on
 * socket_path, takes one front-end, and serves it until it disconnects or stop_fd is
 * readable, with the same FUSE server and the same confinement as a cove VM's shares. The
 * front-end must share its guest RAM (QEMU: a memory backend with share=on). Blocks in the
 * calling thread. Returns 0 then, or a negative errno with error filled: -ENOENT or
 * -ENOTDIR (host_dir), -EADDRINUSE (socket_path exists), -EPROTO (the front-end broke the
 * protocol, or stopped for 5 s part-way through a message or while a reply waited). stop_fd
 * is seen also while a message is being read.
 */
int cove_fs_serve(const cove_fs_serve_options *options, cove_error *error);

#ifdef __cplusplus
}
#endif

#endif
