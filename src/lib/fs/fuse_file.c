/*
 * Attributes and file I/O: LOOKUP, GETATTR, SETATTR, OPEN, CREATE, READ, WRITE, RELEASE,
 * FLUSH, FSYNC, STATFS, ACCESS, FALLOCATE, LSEEK, COPY_FILE_RANGE, READLINK.
 *
 * READ and WRITE move data straight between the file and the guest's buffers (preadv and
 * pwritev over slices of the request's iovecs), with no copy through the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "fs/fuse_internal.h"

/* The open flags a guest may pass on; O_DIRECT is dropped (the guest's buffers need not be
 * aligned), creation flags come only from CREATE. */
#define GUEST_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)
/* One COPY_FILE_RANGE is bounded so it cannot hold the I/O thread for long; the guest's
 * copy_file_range() sees a short copy and goes on. */
#define COPY_MAX (64u * 1024 * 1024)

static struct fuse_inode *req_inode(struct fuse_server *s, const struct fuse_req *r)
{
    return fuse_inode_get(s, r->in.nodeid);
}

static bool writes(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }

static bool bad_offset(uint64_t off, uint64_t len)
{
    return off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off;
}

int fuse_do_lookup(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *parent = req_inode(s, r);
    const char *name;
    size_t pos = 0;
    int err = fuse_take_name(r, &pos, &name);
    if (err)
        return err;
    if (!parent)
        return -ESTALE;
    return fuse_lookup(s, parent, name, fuse_reply_buf(s, r, sizeof(struct fuse_entry_out)));
}

/* Replies the inode's current attributes. */
static int reply_attr(struct fuse_server *s, struct fuse_req *r, const struct fuse_inode *n)
{
    struct stat st;
    int err = fuse_stat(n->fd, &st);
    if (err)
        return err;
    struct fuse_attr_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->attr_valid = s->cache_seconds;
    fuse_fill_attr(&out->attr, &st);
    return 0;
}

int fuse_do_getattr(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *n = req_inode(s, r);
    return n ? reply_attr(s, r, n) : -ESTALE;
}

static int set_mode(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                    mode_t mode)
{
    if (S_ISLNK(st->st_mode))
        return -EOPNOTSUPP; /* Linux keeps no mode on symlinks */
    return fchmodat(s->proc_fd, fuse_proc_name(n->fd).s, mode & 07777, 0) ? -errno : 0;
}

static int set_size(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                    const struct fuse_setattr_in *in)
{
    if (!S_ISREG(st->st_mode))
        return S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;
    if (in->size > (uint64_t)INT64_MAX)
        return -EFBIG;
    int fd = (in->valid & FATTR_FH) ? fuse_handle_fd(s, in->fh, false) : -EBADF;
    bool own = fd < 0;
    if (own && (fd = fuse_reopen(s, n, O_WRONLY)) < 0)
        return fd;
    int err = ftruncate(fd, (off_t)in->size) ? -errno : 0;
    if (own)
        close(fd);
    return err;
}

static struct timespec attr_time(uint32_t valid, uint32_t set, uint32_t now, uint64_t sec,
                                 uint32_t nsec)
{
    if (valid & now)
        return (struct timespec){0, UTIME_NOW};
    if (!(valid & set))
        return (struct timespec){0, UTIME_OMIT};
    return (struct timespec){(time_t)sec, nsec < 1000000000 ? (long)nsec : 999999999};
}

/* utimensat(AT_EMPTY_PATH) needs Linux 5.8; the /proc fallback would follow a symlink, so a
 * symlink gets none. */
static int set_times(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                     const struct fuse_setattr_in *in)
{
    struct timespec ts[2] = {
        attr_time(in->valid, FATTR_ATIME, FATTR_ATIME_NOW, in->atime, in->atimensec),
        attr_time(in->valid, FATTR_MTIME, FATTR_MTIME_NOW, in->mtime, in->mtimensec),
    };
    if (!utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
        return 0;
    if (errno != EINVAL || S_ISLNK(st->st_mode))
        return -errno;
    return utimensat(s->proc_fd, fuse_proc_name(n->fd).s, ts, 0) ? -errno : 0;
}

int fuse_do_setattr(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_setattr_in *in = (const void *)r->arg;
    struct fuse_inode *n = req_inode(s, r);
    struct stat st;
    int err = n ? fuse_stat(n->fd, &st) : -ESTALE;
    if (!err && (in->valid & FATTR_MODE))
        err = set_mode(s, n, &st, in->mode);
    if (!err && (in->valid & (FATTR_UID | FATTR_GID))) {
        uid_t uid = (in->valid & FATTR_UID) ? in->uid : (uid_t)-1;
        gid_t gid = (in->valid & FATTR_GID) ? in->gid : (gid_t)-1;
        if (fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
            err = -errno;
    }
    if (!err && (in->valid & FATTR_SIZE))
        err = set_size(s, n, &st, in);
    if (!err && (in->valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)))
        err = set_times(s, n, &st, in);
    return err ? err : reply_attr(s, r, n);
}

/*
 * In FUSE_CACHE_AUTO a write-only descriptor goes around the guest's page cache: without a
 * writeback cache every buffered write is already one request the guest waits for, so the
 * cache adds only a copy, and direct I/O sends the writer's own pages, several requests at
 * once (FUSE_ASYNC_DIO). A write-only descriptor cannot be mmap()ed, and pages are dropped at
 * every open, so a reader that opens after the write sees it; one that holds cached pages
 * across it may not, as with changes made on the host. Anything that reads keeps the page
 * cache for its reads and mmap. FUSE_CACHE_ALWAYS keeps every page, across opens too, and
 * FUSE_CACHE_NEVER none.
 */
static uint32_t open_reply_flags(const struct fuse_server *s, int flags)
{
    switch (s->cache) {
    case FUSE_CACHE_NEVER:
        return FOPEN_DIRECT_IO;
    case FUSE_CACHE_ALWAYS:
        return FOPEN_KEEP_CACHE;
    case FUSE_CACHE_AUTO:
        break;
    }
    return (flags & O_ACCMODE) == O_WRONLY ? FOPEN_DIRECT_IO : 0;
}

/* Only regular files are opened on the host: the guest handles devices, FIFOs and sockets
 * itself, and opening a FIFO here would block the I/O thread. */
int fuse_do_open(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_open_in *in = (const void *)r->arg;
    struct fuse_inode *n = req_inode(s, r);
    int flags = (int)in->flags & GUEST_OPEN_FLAGS;
    if (!n)
        return -ESTALE;
    if (s->read_only && writes(flags))
        return -EROFS;
    struct stat st;
    int err = fuse_stat(n->fd, &st);
    if (err)
        return err;
    if (!S_ISREG(st.st_mode))
        return S_ISDIR(st.st_mode) ? -EISDIR : S_ISLNK(st.st_mode) ? -ELOOP : -ENXIO;
    int fd = fuse_reopen(s, n, flags);
    if (fd < 0)
        return fd;
    struct fuse_open_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->open_flags = open_reply_flags(s, flags);
    return fuse_handle_new(s, fd, false, &out->fh);
}

/* Creates with O_EXCL first, so that the mode is fixed up (the VMM's umask is not the guest's;
 * the guest kernel applied its own) only on a file this request created. A file that appeared
 * meanwhile is opened as OPEN would: only if it is a regular file. */
static int create_file(struct fuse_server *s, int dirfd, const char *name, int flags,
                       mode_t mode, bool excl, bool *created)
{
    int fd = fuse_open_beneath(dirfd, name, flags | O_CREAT | O_EXCL, mode);
    *created = fd >= 0;
    if (fd >= 0) {
        (void)fchmod(fd, mode & 07777); /* on failure only the mode is off */
        return fd;
    }
    if (fd != -EEXIST || excl)
        return fd;
    int path_fd = fuse_open_beneath(dirfd, name, O_PATH, 0);
    if (path_fd < 0)
        return path_fd;
    struct stat st;
    fd = fuse_stat(path_fd, &st);
    if (!fd)
        fd = S_ISREG(st.st_mode) ? fuse_reopen(s, &(struct fuse_inode){.fd = path_fd}, flags)
                                 : -EEXIST;
    close(path_fd);
    return fd;
}

int fuse_do_create(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_create_in *in = (const void *)r->arg;
    struct fuse_inode *parent = req_inode(s, r);
    const char *name;
    size_t pos = sizeof(*in);
    int err = fuse_take_name(r, &pos, &name);
    if (err || !parent)
        return err ? err : -ESTALE;
    bool created;
    int flags = (int)in->flags & GUEST_OPEN_FLAGS;
    int fd = create_file(s, parent->fd, name, flags, in->mode, in->flags & O_EXCL, &created);
    if (fd < 0)
        return fd;
    struct fuse_entry_out *entry =
        fuse_reply_buf(s, r, sizeof(*entry) + sizeof(struct fuse_open_out));
    struct fuse_open_out *open_out = (void *)(entry + 1);
    open_out->open_flags = open_reply_flags(s, flags);
    err = fuse_lookup_fd(s, fd, entry);
    if (!err && created)
        fuse_own_new(s, r, entry);
    if (!err && (err = fuse_handle_new(s, fd, false, &open_out->fh)))
        fuse_forget(s, entry->nodeid, 1);
    else if (err)
        close(fd);
    return err;
}

int fuse_do_read(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_read_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    if (fd < 0)
        return fd;
    size_t room = r->wr_total - sizeof(struct fuse_out_header);
    size_t want = in->size < FUSE_MAX_WRITE ? in->size : FUSE_MAX_WRITE;
    if (want > room)
        want = room;
    if (bad_offset(in->offset, want))
        return -EINVAL;
    size_t got;
    unsigned cnt = fuse_iov_slice(r->wr, r->wr_count, sizeof(struct fuse_out_header), want,
                                  s->slice, FUSE_IOV_MAX, &got);
    ssize_t n;
    do
        n = cnt ? preadv(fd, s->slice, (int)cnt, (off_t)in->offset) : 0;
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    r->direct_len = (size_t)n;
    return 0;
}

int fuse_do_write(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_write_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    if (fd < 0)
        return fd;
    if (in->size > r->body_len - sizeof(*in) || bad_offset(in->offset, in->size))
        return -EINVAL;
    size_t want = in->size < FUSE_MAX_WRITE ? in->size : FUSE_MAX_WRITE;
    size_t got;
    unsigned cnt = fuse_iov_slice(r->rd, r->rd_count, sizeof(struct fuse_in_header) + sizeof(*in),
                                  want, s->slice, FUSE_IOV_MAX, &got);
    ssize_t n;
    do
        n = cnt ? pwritev(fd, s->slice, (int)cnt, (off_t)in->offset) : 0;
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    struct fuse_write_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->size = (uint32_t)n;
    return 0;
}

int fuse_do_release(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_release_in *in = (const void *)r->arg;
    return fuse_handle_close(s, in->fh, false);
}

/* Nothing is buffered in the server and locks stay in the guest: a flush only checks the
 * handle. */
int fuse_do_flush(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_flush_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    return fd < 0 ? fd : 0;
}

int fuse_do_fsync(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_fsync_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    if (fd < 0)
        return fd;
    int rc = (in->fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(fd) : fsync(fd);
    return rc ? -errno : 0;
}

int fuse_do_statfs(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *n = req_inode(s, r);
    struct statfs st;
    if (!n)
        return -ESTALE;
    if (fstatfs(n->fd, &st))
        return -errno;
    struct fuse_statfs_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->st = (struct fuse_kstatfs){
        .blocks = st.f_blocks, .bfree = st.f_bfree, .bavail = st.f_bavail,
        .files = st.f_files, .ffree = st.f_ffree, .bsize = (uint32_t)st.f_bsize,
        .namelen = (uint32_t)st.f_namelen, .frsize = (uint32_t)st.f_frsize,
    };
    return 0;
}

int fuse_do_access(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_access_in *in = (const void *)r->arg;
    struct fuse_inode *n = req_inode(s, r);
    if (!n)
        return -ESTALE;
    if (in->mask & ~(uint32_t)(R_OK | W_OK | X_OK))
        return -EINVAL;
    if ((in->mask & W_OK) && s->read_only)
        return -EROFS;
    return faccessat(n->fd, "", (int)in->mask, AT_EMPTY_PATH | AT_EACCESS) ? -errno : 0;
}

int fuse_do_fallocate(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_fallocate_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    if (fd < 0)
        return fd;
    if (bad_offset(in->offset, in->length))
        return -EINVAL;
    return fallocate(fd, (int)in->mode, (off_t)in->offset, (off_t)in->length) ? -errno : 0;
}

/* The guest kernel answers SEEK_SET/CUR/END itself; only data and holes need the host. */
int fuse_do_lseek(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_lseek_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, false);
    if (fd < 0)
        return fd;
    if ((in->whence != SEEK_DATA && in->whence != SEEK_HOLE) || bad_offset(in->offset, 0))
        return -EINVAL;
    off_t off = lseek(fd, (off_t)in->offset, (int)in->whence);
    if (off < 0)
        return -errno;
    struct fuse_lseek_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->offset = (uint64_t)off;
    return 0;
}

int fuse_do_copy_file_range(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_copy_file_range_in *in = (const void *)r->arg;
    int fd_in = fuse_handle_fd(s, in->fh_in, false);
    int fd_out = fuse_handle_fd(s, in->fh_out, false);
    if (fd_in < 0 || fd_out < 0)
        return -EBADF;
    size_t len = in->len < COPY_MAX ? (size_t)in->len : COPY_MAX;
    if (in->flags || bad_offset(in->off_in, len) || bad_offset(in->off_out, len))
        return -EINVAL;
    off_t off_in = (off_t)in->off_in, off_out = (off_t)in->off_out;
    ssize_t n = copy_file_range(fd_in, &off_in, fd_out, &off_out, len, 0);
    if (n < 0)
        return -errno;
    struct fuse_write_out *out = fuse_reply_buf(s, r, sizeof(*out));
    out->size = (uint32_t)n;
    return 0;
}

int fuse_do_readlink(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *n = req_inode(s, r);
    if (!n)
        return -ESTALE;
    char target[PATH_MAX];
    ssize_t len = readlinkat(n->fd, "", target, sizeof(target));
    if (len < 0)
        return -errno;
    if ((size_t)len == sizeof(target))
        return -ENAMETOOLONG;
    char *out = fuse_reply_buf(s, r, (size_t)len);
    if (!out)
        return -ERANGE;
    memcpy(out, target, (size_t)len);
    return 0;
}
