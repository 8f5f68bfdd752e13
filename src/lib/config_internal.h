/*
 * The inside of a cove_config, for the parts of libcove that build a VM from one. Outside
 * libcove a configuration is only reachable through the cove_config_* functions.
 */
#ifndef COVE_CONFIG_INTERNAL_H
#define COVE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cove/cove.h>

#include "fs/fuse_server.h"

/* The guest kernel is built with NR_CPUS=64 and the ACPI MADT cove writes holds 64 LAPICs. */
#define COVE_CPU_CAP 64u
/* Cove's own ceiling on guest RAM, whatever the host has. */
#define COVE_MEMORY_CAP (UINT64_C(1) << 40)

/* One directory as cove_config_add_share recorded it. */
struct cove_share_config {
    char *tag;
    char *host_dir;
    bool read_only;
    cove_share_cache cache;
};

/* One port forward as cove_config_add_port_forward recorded it. */
struct cove_forward_config {
    bool udp;
    char *host_addr; /* never NULL: "127.0.0.1" by default */
    uint16_t host_port;
    uint16_t guest_port;
};

/* One disk as cove_config_add_disk recorded it. */
struct cove_disk_config {
    char *path;
    char *serial; /* NULL: none (never "") */
    bool read_only;
    cove_cache_mode cache;
};

struct cove_config {
    char *kernel_path; /* NULL until set */
    char *initrd_path; /* NULL: no initrd */
    char *cmdline;     /* NULL: empty command line */
    unsigned cpus;
    uint64_t memory; /* bytes */

    cove_console_kind serial_kind;
    /*
     * NONE and FILE: both -1. STDIO: STDIN_FILENO and STDOUT_FILENO. FDS: the caller's
     * descriptors (in_fd may be -1 for output only); never closed by libcove.
     */
    int serial_in_fd;
    int serial_out_fd;
    char *serial_path; /* FILE only: opened at VM start with O_CREAT | O_APPEND */
    cove_console_device console_device; /* the device the attachment above applies to */

    struct cove_disk_config *disks; /* in the order added: disks[i] is disk index i */
    size_t disk_count;
    size_t disk_capacity; /* entries allocated in disks */

    bool entropy; /* a virtio-rng device */
    bool nested_virtualization; /* the guest sees VMX/SVM */

    struct cove_share_config *shares; /* in the order added */
    size_t share_count;

    cove_network_kind network;
    cove_network_policy network_policy;
    char *mac; /* NULL: the default */
    char *tap_name; /* COVE_NETWORK_TAP: the device; NULL otherwise */
    struct cove_forward_config *forwards;
    size_t forward_count;

    bool vsock;          /* a virtio-vsock device */
    uint64_t vsock_cid;  /* the guest's CID */
    char *vsock_path;    /* NULL: no Unix socket endpoint for other host programs */

    char *boot_cache_dir; /* NULL: no boot snapshots */
};

/* The longest vsock Unix socket path: "<path>_<port>" must still fit a sockaddr_un. */
#define COVE_VSOCK_PATH_MAX 95

/* A deep copy (every string duplicated), or NULL when out of memory. */
cove_config *cove_config_copy(const cove_config *config);

/* config_share.c: the shares' part of freeing, copying (copy's shares are still config's on
 * entry; 0 or -ENOMEM) and validating (problems through add_share_problem). */
void config_free_shares(cove_config *config);
int config_copy_shares(cove_config *copy, const cove_config *config);
typedef void (*config_problem_fn)(void *report, const char *message);
void config_check_shares(const cove_config *config, config_problem_fn problem, void *report);
/* Formats one problem and hands it to problem (config_share.c). */
__attribute__((format(printf, 3, 4))) void config_report(config_problem_fn problem, void *report,
                                                          const char *fmt, ...);

/* config_network.c: the same for the network device and its forwards. */
void config_free_network(cove_config *config);
int config_copy_network(cove_config *copy, const cove_config *config);
void config_check_network(const cove_config *config, config_problem_fn problem, void *report);

/* The FUSE server's cache mode for a share's (config_share.c). */
enum fuse_cache share_fuse_cache(cove_share_cache cache);

#endif
