/*
 * The FUSE server's private parts, shared by its files: fuse_server.c (parsing, dispatch,
 * INIT, FORGET), fuse_inodes.c (inode and handle tables, confined lookups), fuse_file.c
 * (attributes and file I/O) and fuse_dir.c (directories and the namespace).
 */
#ifndef COVE_FS_FUSE_INTERNAL_H
#define COVE_FS_FUSE_INTERNAL_H

#include <linux/fuse.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fs/fuse_server.h"

/* The op arguments copied out of the request (not the WRITE data, which stays in the guest's
 * buffers): the largest is SYMLINK, a name and a PATH_MAX target. */
#define FUSE_ARGS_MAX 8192
/* Replies built in the server's buffer (READDIR pages, READLINK, fixed structs). */
#define FUSE_REPLY_MAX (64 * 1024)
/* getdents64 buffer for one READDIR. */
#define FUSE_DENTS_MAX (32 * 1024)
/* The most iovecs one READ/WRITE slice uses (UIO_MAXIOV); more make the transfer short. */
#define FUSE_IOV_MAX 1024
/* The most data one WRITE carries (READ is capped the same). */
#define FUSE_MAX_WRITE (FUSE_SERVER_MAX_PAGES * 4096)
/* Seconds the guest may cache entries and attributes in FUSE_CACHE_AUTO: short, since the
 * host may change the directory behind its back; FUSE_CACHE_ALWAYS trusts it not to. */
#define FUSE_CACHE_SECONDS_AUTO 1
#define FUSE_CACHE_SECONDS_ALWAYS 86400

struct fuse_inode {
    int fd; /* O_PATH | O_NOFOLLOW */
    bool used;
    dev_t dev;
    ino_t ino;
    uint64_t nlookup; /* the guest's references (LOOKUP etc. add, FORGET drops) */
    uint64_t gen;
    uint32_t next; /* hash chain (slot + 1, 0 ends) when used; free list when not */
};

struct fuse_handle {
    int fd;
    bool used;
    bool dir;
    uint32_t next_free; /* slot + 1 */
};

struct fuse_server {
    bool read_only;
    enum fuse_cache cache;
    uint64_t cache_seconds; /* entry_valid and attr_valid of every reply */
    bool give_away;   /* new nodes get the guest caller's uid/gid (the VMM runs as root) */
    bool initialized; /* INIT answered */
    uint32_t minor;   /* negotiated protocol minor */
    int proc_fd;      /* /proc/self/fd: re-opens an O_PATH descriptor by number */

    struct fuse_inode *inodes; /* slot i is nodeid i + 1; slot 0 the root, never forgotten */
    uint32_t inode_slots, inode_max, inode_free;
    uint32_t *buckets; /* (dev, ino) hash -> slot + 1 */
    uint32_t bucket_mask;
    uint64_t next_gen;

    struct fuse_handle *handles; /* fh is the slot */
    uint32_t handle_slots, handle_max, handle_free;

    _Alignas(8) uint8_t args[FUSE_ARGS_MAX];
    _Alignas(8) uint8_t reply[FUSE_REPLY_MAX];
    _Alignas(8) uint8_t dents[FUSE_DENTS_MAX];
    struct iovec slice[FUSE_IOV_MAX];
};

/* One request being served. */
struct fuse_req {
    struct fuse_in_header in;
    const uint8_t *arg; /* the op's arguments (s->args) */
    size_t arg_len;     /* bytes of them copied, at most FUSE_ARGS_MAX */
    size_t body_len;    /* in.len minus the header: arguments and data */
    const struct iovec *rd;
    unsigned rd_count;
    const struct iovec *wr;
    unsigned wr_count;
    size_t wr_total;
    size_t out_len;    /* reply payload in s->reply */
    size_t direct_len; /* payload already written into wr after the header (READ) */
};

/* ---- iovec helpers (fuse_server.c). ---- */
size_t fuse_iov_total(const struct iovec *v, unsigned n);
size_t fuse_iov_gather(const struct iovec *v, unsigned n, size_t off, void *dst, size_t len);
size_t fuse_iov_scatter(const struct iovec *v, unsigned n, size_t off, const void *src,
                        size_t len);
/* Describes bytes [off, off + len) of v in out (at most max entries); returns the count and
 * sets *got to the bytes covered. */
unsigned fuse_iov_slice(const struct iovec *v, unsigned n, size_t off, size_t len,
                        struct iovec *out, unsigned max, size_t *got);

/* The next guest-supplied name at *pos in the arguments: NUL-terminated inside them, one
 * component (no '/', not "." or ".."), at most NAME_MAX. Returns 0 or a negative errno. */
int fuse_take_name(const struct fuse_req *r, size_t *pos, const char **name);
/* Reserves the reply payload (in s->reply); NULL when it does not fit the writable part. */
void *fuse_reply_buf(struct fuse_server *s, struct fuse_req *r, size_t len);

/* ---- Inodes and handles (fuse_inodes.c). ---- */
int fuse_inodes_init(struct fuse_server *s, int root_fd);
void fuse_inodes_fini(struct fuse_server *s);
struct fuse_inode *fuse_inode_get(struct fuse_server *s, uint64_t nodeid);
/* openat2 beneath dirfd, never following a symlink or leaving it. */
int fuse_open_beneath(int dirfd, const char *name, int flags, mode_t mode);
/* Looks name up in parent and takes a reference for the guest. */
int fuse_lookup(struct fuse_server *s, struct fuse_inode *parent, const char *name,
                struct fuse_entry_out *out);
/* The same for a descriptor the server just opened or created (CREATE). */
int fuse_lookup_fd(struct fuse_server *s, int fd, struct fuse_entry_out *out);
void fuse_forget(struct fuse_server *s, uint64_t nodeid, uint64_t nlookup);
/* Hands a node the request just created to the guest's caller (if give_away), updating e. */
void fuse_own_new(struct fuse_server *s, const struct fuse_req *r, struct fuse_entry_out *e);
/* Drops every reference but the root's (DESTROY) and closes every handle. */
void fuse_forget_all(struct fuse_server *s);
/* A descriptor's name under /proc/self/fd (s->proc_fd), for the calls that take no O_PATH
 * descriptor with AT_EMPTY_PATH: it names the server's own descriptor, never a guest path. */
struct fuse_proc_name {
    char s[16];
};
struct fuse_proc_name fuse_proc_name(int fd);
/* Opens the inode itself for I/O (through /proc/self/fd, no path from the guest). */
int fuse_reopen(struct fuse_server *s, const struct fuse_inode *ino, int flags);
int fuse_stat(int fd, struct stat *st);
void fuse_fill_attr(struct fuse_attr *a, const struct stat *st);
int fuse_handle_new(struct fuse_server *s, int fd, bool dir, uint64_t *fh);
int fuse_handle_fd(struct fuse_server *s, uint64_t fh, bool dir);
int fuse_handle_close(struct fuse_server *s, uint64_t fh, bool dir);

/* ---- Op handlers: 0 or a negative errno. ---- */
typedef int fuse_handler(struct fuse_server *s, struct fuse_req *r);
fuse_handler fuse_do_lookup, fuse_do_getattr, fuse_do_setattr, fuse_do_open, fuse_do_create,
    fuse_do_read, fuse_do_write, fuse_do_release, fuse_do_flush, fuse_do_fsync, fuse_do_statfs,
    fuse_do_access, fuse_do_fallocate, fuse_do_lseek, fuse_do_copy_file_range, fuse_do_readlink;
fuse_handler fuse_do_opendir, fuse_do_readdir, fuse_do_readdirplus, fuse_do_releasedir,
    fuse_do_fsyncdir, fuse_do_mkdir, fuse_do_mknod, fuse_do_unlink, fuse_do_rmdir,
    fuse_do_rename, fuse_do_rename2, fuse_do_link, fuse_do_symlink;

#endif
