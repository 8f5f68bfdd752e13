/*
 * Directories and the namespace: OPENDIR, READDIR(PLUS), RELEASEDIR, FSYNCDIR, MKDIR, MKNOD,
 * UNLINK, RMDIR, RENAME(2), LINK, SYMLINK.
 *
 * Every name is one validated component used with a *at() call on a directory descriptor the
 * server holds, so no operation reaches outside the share: a rename's target directory is an
 * inode of the share too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/fuse_internal.h"

struct dent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

#define RENAME_FLAGS (RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)

static struct fuse_inode *req_inode(struct fuse_server *s, const struct fuse_req *r)
{
    return fuse_inode_get(s, r->in.nodeid);
}

int fuse_do_opendir(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *n = req_inode(s, r);
    if (!n)
        return -ESTALE;
    struct stat st;
    int err = fuse_stat(n->fd, &st);
    if (err)
        return err;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    int fd = fuse_reopen(s, n, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return fd;
    struct fuse_open_out *out = fuse_reply_buf(s, r, sizeof(*out));
    return fuse_handle_new(s, fd, true, &out->fh);
}

static bool is_dot(const char *name) { return !strcmp(name, ".") || !strcmp(name, ".."); }

/* Appends one entry at s->reply + used if it fits in room; returns its size or 0. With plus,
 * the entry is looked up (a reference the guest takes over); "." and ".." get no entry, which
 * the kernel reads as "no attributes" rather than as a reference. */
static size_t add_dirent(struct fuse_server *s, struct fuse_inode *dir, const struct dent64 *d,
                         size_t used, size_t room, bool plus)
{
    size_t namelen = strnlen(d->d_name, d->d_reclen - offsetof(struct dent64, d_name));
    size_t head = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
    size_t len = FUSE_DIRENT_ALIGN(head + namelen);
    if (len > room - used)
        return 0;
    uint8_t *p = s->reply + used;
    memset(p, 0, len);
    struct fuse_dirent *de = (void *)(p + head - FUSE_NAME_OFFSET);
    if (plus && !is_dot(d->d_name)) {
        struct fuse_entry_out *e = (void *)p;
        if (fuse_lookup(s, dir, d->d_name, e))
            memset(e, 0, sizeof(*e)); /* gone meanwhile, or the table is full */
    }
    *de = (struct fuse_dirent){.ino = d->d_ino, .off = (uint64_t)d->d_off,
                               .namelen = (uint32_t)namelen, .type = d->d_type};
    memcpy(de->name, d->d_name, namelen);
    return len;
}

/* Offsets are the host's d_off: the guest hands back the last one it saw, and the handle's
 * own descriptor is positioned there before reading on. */
static int read_dir(struct fuse_server *s, struct fuse_req *r, bool plus)
{
    const struct fuse_read_in *in = (const void *)r->arg;
    struct fuse_inode *dir = req_inode(s, r);
    int fd = fuse_handle_fd(s, in->fh, true);
    if (fd < 0 || !dir)
        return fd < 0 ? fd : -ESTALE;
    if (in->offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    size_t room = r->wr_total - sizeof(struct fuse_out_header);
    if (room > FUSE_REPLY_MAX)
        room = FUSE_REPLY_MAX;
    if (room > in->size)
        room = in->size;
    if (lseek(fd, (off_t)in->offset, SEEK_SET) < 0)
        return -errno;
    long n = syscall(SYS_getdents64, fd, s->dents, sizeof(s->dents));
    if (n < 0)
        return -errno;
    size_t used = 0;
    for (long pos = 0; pos < n;) {
        const struct dent64 *d = (const void *)(s->dents + pos);
        size_t len = add_dirent(s, dir, d, used, room, plus);
        if (!len)
            break;
        used += len;
        pos += d->d_reclen;
    }
    if (n > 0 && used == 0)
        return -EINVAL; /* not even one entry fits the guest's buffer */
    r->out_len = used;
    return 0;
}

int fuse_do_readdir(struct fuse_server *s, struct fuse_req *r) { return read_dir(s, r, false); }

int fuse_do_readdirplus(struct fuse_server *s, struct fuse_req *r)
{
    return read_dir(s, r, true);
}

int fuse_do_releasedir(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_release_in *in = (const void *)r->arg;
    return fuse_handle_close(s, in->fh, true);
}

int fuse_do_fsyncdir(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_fsync_in *in = (const void *)r->arg;
    int fd = fuse_handle_fd(s, in->fh, true);
    if (fd < 0)
        return fd;
    int rc = (in->fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(fd) : fsync(fd);
    return rc ? -errno : 0;
}

/* The parent and the name of a namespace op, its name at *pos. */
static int parent_and_name(struct fuse_server *s, const struct fuse_req *r, size_t *pos,
                           struct fuse_inode **parent, const char **name)
{
    int err = fuse_take_name(r, pos, name);
    if (err)
        return err;
    *parent = req_inode(s, r);
    return *parent ? 0 : -ESTALE;
}

/* Replies the entry just made; a new node (not a LINK) gets the caller as owner and its mode
 * (if not 0) replaces what the VMM's umask took (after the chown, which clears set-id bits). */
static int reply_new_entry(struct fuse_server *s, struct fuse_req *r, struct fuse_inode *parent,
                           const char *name, mode_t mode, bool new_node)
{
    struct fuse_entry_out *e = fuse_reply_buf(s, r, sizeof(*e));
    int err = fuse_lookup(s, parent, name, e);
    if (!err && new_node)
        fuse_own_new(s, r, e);
    struct fuse_inode *n = err ? NULL : fuse_inode_get(s, e->nodeid);
    if (n && mode && !S_ISLNK(e->attr.mode) &&
        !fchmodat(s->proc_fd, fuse_proc_name(n->fd).s, mode & 07777, 0))
        e->attr.mode = (e->attr.mode & S_IFMT) | (mode & 07777);
    return err;
}

/* MKDIR and MKNOD: the node (mode holds its type), then its entry. */
static int make_node(struct fuse_server *s, struct fuse_req *r, size_t arg_size, mode_t mode)
{
    struct fuse_inode *parent;
    const char *name;
    int err = parent_and_name(s, r, &arg_size, &parent, &name);
    if (err)
        return err;
    int rc = S_ISDIR(mode) ? mkdirat(parent->fd, name, mode & 07777)
                           : mknodat(parent->fd, name, mode, 0);
    return rc ? -errno : reply_new_entry(s, r, parent, name, mode & 07777, true);
}

int fuse_do_mkdir(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_mkdir_in *in = (const void *)r->arg;
    return make_node(s, r, sizeof(*in), S_IFDIR | (in->mode & 07777));
}

/* Device nodes are refused: a guest that may create one could reach host devices through
 * it. Regular files, FIFOs and sockets are harmless (the server never opens the latter). */
int fuse_do_mknod(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_mknod_in *in = (const void *)r->arg;
    mode_t type = in->mode & S_IFMT;
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK)
        return -EPERM;
    return make_node(s, r, sizeof(*in), type | (in->mode & 07777));
}

static int remove_entry(struct fuse_server *s, struct fuse_req *r, int flags)
{
    struct fuse_inode *parent;
    const char *name;
    size_t pos = 0;
    int err = parent_and_name(s, r, &pos, &parent, &name);
    if (err)
        return err;
    return unlinkat(parent->fd, name, flags) ? -errno : 0;
}

int fuse_do_unlink(struct fuse_server *s, struct fuse_req *r) { return remove_entry(s, r, 0); }

int fuse_do_rmdir(struct fuse_server *s, struct fuse_req *r)
{
    return remove_entry(s, r, AT_REMOVEDIR);
}

static int rename_entry(struct fuse_server *s, struct fuse_req *r, size_t pos, uint64_t newdir,
                        unsigned flags)
{
    struct fuse_inode *parent, *target = fuse_inode_get(s, newdir);
    const char *old_name, *new_name;
    int err = parent_and_name(s, r, &pos, &parent, &old_name);
    if (!err)
        err = fuse_take_name(r, &pos, &new_name);
    if (err)
        return err;
    if (!target)
        return -ESTALE;
    if (flags & ~(unsigned)RENAME_FLAGS)
        return -EINVAL;
    return renameat2(parent->fd, old_name, target->fd, new_name, flags) ? -errno : 0;
}

int fuse_do_rename(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_rename_in *in = (const void *)r->arg;
    return rename_entry(s, r, sizeof(*in), in->newdir, 0);
}

int fuse_do_rename2(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_rename2_in *in = (const void *)r->arg;
    return rename_entry(s, r, sizeof(*in), in->newdir, in->flags);
}

/* linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH on older kernels; the /proc/self/fd link
 * (followed once, to the inode itself) does the same without it, but not for a symlink,
 * which must not be followed any further. */
static int link_inode(struct fuse_server *s, const struct fuse_inode *old, int dirfd,
                      const char *name)
{
    if (!linkat(old->fd, "", dirfd, name, AT_EMPTY_PATH))
        return 0;
    int err = -errno;
    struct stat st;
    if ((err != -ENOENT && err != -EPERM) || fuse_stat(old->fd, &st) || S_ISLNK(st.st_mode))
        return err;
    return linkat(s->proc_fd, fuse_proc_name(old->fd).s, dirfd, name, AT_SYMLINK_FOLLOW) ? -errno
                                                                                         : 0;
}

int fuse_do_link(struct fuse_server *s, struct fuse_req *r)
{
    const struct fuse_link_in *in = (const void *)r->arg;
    struct fuse_inode *parent, *old = fuse_inode_get(s, in->oldnodeid);
    const char *name;
    size_t pos = sizeof(*in);
    int err = parent_and_name(s, r, &pos, &parent, &name);
    if (err)
        return err;
    if (!old)
        return -ESTALE;
    err = link_inode(s, old, parent->fd, name);
    return err ? err : reply_new_entry(s, r, parent, name, 0, false);
}

/* The target is stored as given: it is never followed on the host. */
int fuse_do_symlink(struct fuse_server *s, struct fuse_req *r)
{
    struct fuse_inode *parent;
    const char *name;
    size_t pos = 0;
    int err = parent_and_name(s, r, &pos, &parent, &name);
    if (err)
        return err;
    const char *target = (const char *)r->arg + pos;
    size_t left = r->arg_len - pos;
    size_t len = pos < r->arg_len ? strnlen(target, left) : 0;
    if (len == 0 || len == left)
        return -EINVAL;
    if (len >= PATH_MAX)
        return -ENAMETOOLONG;
    if (symlinkat(target, parent->fd, name))
        return -errno;
    return reply_new_entry(s, r, parent, name, 0, true);
}
