/*
 * A FUSE server over one host directory, independent of the transport (virtio-fs hands it the
 * chains of its request queues).
 *
 * One request is two iovec arrays, like a virtio chain: the readable part holds the
 * fuse_in_header, the op's arguments and any data; the writable part receives the
 * fuse_out_header and the reply. Everything in the request is untrusted guest input: lengths,
 * names and offsets are checked against the buffers before use, and every path walk stays
 * beneath the shared directory (see fuse_inodes.c).
 *
 * Not thread-safe: one server is driven by one thread (the VM's I/O thread).
 */
#ifndef COVE_FS_FUSE_SERVER_H
#define COVE_FS_FUSE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* Defaults for the table caps below: each inode holds an O_PATH descriptor, each handle an
 * open descriptor, so the caps also bound the descriptors a guest can make the VMM hold. The
 * inode default is further capped at half of RLIMIT_NOFILE's soft limit at creation, so that
 * a guest walking a large tree cannot take every descriptor the VMM has: a VMM that shares
 * directories should raise its soft limit to the hard one at start. */
#define FUSE_SERVER_DEFAULT_INODES 65536
#define FUSE_SERVER_DEFAULT_HANDLES 4096

/*
 * The most data pages one request carries, offered in INIT (max_pages): FUSE's own cap in
 * Linux (FUSE_MAX_MAX_PAGES), 1 MiB. Linux puts a request in one virtqueue chain of that many
 * page buffers plus up to 4 (headers and op structs), and caps max_pages by the queue too
 * (size - 4). A transport must take chains of FUSE_SERVER_MAX_PAGES + 4 buffers: cove's own
 * request queue has 512 entries, and a vhost-user front-end's queue of 1024 (QEMU's
 * queue-size=1024, as virtiofsd's documentation advises) would otherwise let Linux build
 * chains longer than virtq_pop accepts.
 */
#define FUSE_SERVER_MAX_PAGES 256

/* What the guest may cache (cove_share_cache in cove.h says what each means to users). */
enum fuse_cache {
    FUSE_CACHE_AUTO,   /* entries and attributes 1 s; data cached, dropped at open */
    FUSE_CACHE_NEVER,  /* nothing: every open direct I/O, entries and attributes 0 s */
    FUSE_CACHE_ALWAYS, /* entries and attributes a day; data kept across opens */
};

struct fuse_server_options {
    bool read_only;       /* every mutating op answers EROFS */
    enum fuse_cache cache;
    unsigned max_inodes;  /* 0: the default above; beyond: ENFILE */
    unsigned max_handles; /* 0: FUSE_SERVER_DEFAULT_HANDLES; beyond: ENFILE */
};

struct fuse_server;

/* Opens `dir` (the host's choice: symlinks in it are followed) as the share's root.
 * Returns 0 with *out set, or a negative errno. */
int fuse_server_new(const char *dir, const struct fuse_server_options *opts,
                    struct fuse_server **out);
void fuse_server_destroy(struct fuse_server *s);

/* Forgets the session (the transport was reset): every inode but the root and every handle
 * are dropped, and the next request must be INIT. */
void fuse_server_reset(struct fuse_server *s);

/* Whether a session is open (INIT answered, no DESTROY or reset since): the server then holds
 * the guest's inodes and handles. */
bool fuse_server_in_session(const struct fuse_server *s);

/*
 * Serves one request: rd[0..rd_count) readable, wr[0..wr_count) writable. Returns the bytes
 * written into wr (never more than their total); 0 for requests without a reply (FORGET) or
 * when the writable part cannot hold even a fuse_out_header.
 */
size_t fuse_server_handle(struct fuse_server *s, const struct iovec *rd, unsigned rd_count,
                          const struct iovec *wr, unsigned wr_count);

#endif
