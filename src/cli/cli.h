/*
 * What the parts of the cove CLI share: its exit statuses and the parsed `cove run` options.
 * The CLI only parses, prints and maps outcomes to statuses; behaviour lives in libcove.
 */
#ifndef COVE_CLI_H
#define COVE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include <cove/cove.h>

/* Exit statuses of cove itself when it boots a console (no command). */
enum {
    EXIT_GUEST_FAILED = 1, /* panic, triple fault, KVM internal error */
    EXIT_USAGE = 2,        /* bad arguments or configuration */
    EXIT_HOST_FAILED = 3,  /* cove could not run the VM (no /dev/kvm, out of memory, ...) */
    EXIT_SIGNAL_BASE = 128,
};

/*
 * With a command (`cove run -- CMD`), the status is CMD's own, so cove's are kept out of the
 * way as docker's are: 125 cove failed (usage, configuration, boot, the agent), 126 CMD could
 * not be run, 127 CMD was not found, 124 --timeout expired.
 */
enum {
    EXIT_EXEC_TIMEOUT = 124,
    EXIT_EXEC_COVE_FAILED = 125,
    EXIT_EXEC_CANNOT_RUN = 126,
    EXIT_EXEC_NOT_FOUND = 127,
};

struct run_options {
    bool boot_timer;
    const char *boot_cache; /* --boot-cache DIR */
    bool no_boot_cache;
    bool kernel_given;
    bool initrd_given;
    bool cmdline_given;
    bool serial_given;

    /* The command after the options (argv[0] first), or command_count 0 for a console. */
    char **command;
    int command_count;
    bool interactive; /* -i: stdin goes to the command */
    bool tty;         /* -t: the command runs on a pseudo-terminal */
    const char *workdir;
    bool user_given;
    uint32_t uid;
    uint32_t gid;
    /* "NAME=VALUE" for --env and --secret, owned here; secrets are wiped when freed. */
    char **env;
    size_t env_count;
    uint64_t timeout_ms; /* 0: no limit */

    /* Words for cove-agent on the kernel command line: " cove.mount=TAG:PATH[:ro]" for each
     * --share, " cove.net=nat" with NAT networking, " cove.net=link" on a tap. */
    char *agent_words;
    unsigned share_count;
    bool net_given;
};

void run_options_free(struct run_options *opts);

/* `cove run` options without a short form. The command's options use their letters. */
enum {
    OPT_KERNEL = 256,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_CPUS,
    OPT_MEMORY,
    OPT_CONSOLE,
    OPT_SERIAL,
    OPT_DISK,
    OPT_RNG,
    OPT_NO_RNG,
    OPT_NESTED,
    OPT_BOOT_TIMER,
    OPT_SECRET,
    OPT_TIMEOUT,
    OPT_SHARE,
    OPT_NET,
    OPT_PUBLISH,
    OPT_BOOT_CACHE,
    OPT_NO_BOOT_CACHE,
};

/* The default kernel command line: the serial console, quiet, and no waiting after a panic. */
#define DEFAULT_CMDLINE "console=ttyS0 quiet panic=-1"

/* Applies -i, -t, -e, -w, -u, --secret or --timeout (command_options.c). Returns 0, or -1 after
 * printing one line. */
int apply_command_option(struct run_options *opts, int opt, const char *arg);
/* len bytes of text as a decimal number in [min, max] (digits only); false otherwise. */
bool parse_decimal(const char *text, size_t len, uint64_t min, uint64_t max, uint64_t *value);

/* --share HOST_DIR:GUEST_PATH[:ro] (shares.c): a share in config, a mount for the agent. */
int parse_share(cove_config *config, struct run_options *opts, const char *arg);
/* A cache mode by its name ("auto", "never", "always"): false for any other. */
bool share_cache_from_name(const char *name, size_t len, cove_share_cache *cache);
/* With shares configured: one warning line on stderr when the descriptor limit (already
 * raised as far as cove may) leaves a share fewer cached files than SHARE_FILE_LIMIT_WANTED/2
 * (libcove caps a share at half the soft limit), naming the limit and the fix. */
#define SHARE_FILE_LIMIT_WANTED 65536
void warn_share_file_limit(const struct run_options *opts);
/* --net nat|host-only|tap:NAME|none and --publish [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]
 * (network_options.c). Without --net, a command gets NAT, a console boot no network. */
int parse_net(cove_config *config, struct run_options *opts, const char *arg);
int parse_publish(cove_config *config, const char *arg);
int apply_default_network(cove_config *config, struct run_options *opts);
int add_agent_word(struct run_options *opts, const char *word);

/* The kernel command line with the shares' mount words in front of any " -- " (after it they
 * would become init's arguments). Returns a new string, or NULL when out of memory. */
char *cmdline_with_mounts(const char *cmdline, const struct run_options *opts);

/*
 * Fills in the bundled guest (kernel, initramfs) where the user gave none. Returns 0, or -1
 * after printing one line saying where it looked.
 */
int apply_default_image(cove_config *config, const struct run_options *opts);

/* `cove run ... -- CMD`: boots, runs CMD through cove-agent, returns the exit status. */
int run_command(cove_config *config, const struct run_options *opts, uint64_t started_ns);

/* cove virtiofsd (virtiofsd.c): argv[0] is "virtiofsd". Returns the exit status. */
int cmd_virtiofsd(int argc, char **argv);

/* The terminal as we found it, restored on every way out. */
struct terminal {
    bool saved;
    struct termios original;
};

/*
 * Puts stdin's terminal (if it is one) into raw mode. keep_signals leaves ISIG on, so Ctrl-C
 * still signals cove (a console boot: it stops the VM); without it Ctrl-C and friends are
 * bytes for the guest's own terminal (cove run -t).
 */
void terminal_raw(struct terminal *term, bool keep_signals);
void terminal_restore(struct terminal *term);

/* Blocks SIGINT, SIGTERM and SIGHUP and returns a signalfd for them (-1 with errno). */
int open_stop_signal_fd(void);

/* A cove_warning_fn: "cove: warning: LINE" on stderr, readable on a raw terminal too. */
void print_vm_warning(cove_vm *vm, const char *line, void *opaque);

#endif
