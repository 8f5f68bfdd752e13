/*
 * The inode and handle tables, and the confined lookup.
 *
 * An inode is an O_PATH descriptor: holding it pins the host inode, so (st_dev, st_ino) stays
 * a unique key and every later operation reaches the same file whatever the guest or the host
 * renames meanwhile. Lookups are openat2() of a single component beneath the parent's
 * descriptor with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS and O_NOFOLLOW: a symlink is
 * returned as itself (the guest resolves it), never followed on the host, so nothing planted
 * in the share leads outside it. Operations on an inode use *at(fd, "", AT_EMPTY_PATH) or a
 * re-open of /proc/self/fd/<fd>, never a path built from guest input.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/fuse_internal.h"

#define INITIAL_SLOTS 64

int fuse_open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode & 07777 : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

int fuse_stat(int fd, struct stat *st)
{
    return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

void fuse_fill_attr(struct fuse_attr *a, const struct stat *st)
{
    *a = (struct fuse_attr){
        .ino = st->st_ino,
        .size = (uint64_t)st->st_size,
        .blocks = (uint64_t)st->st_blocks,
        .atime = (uint64_t)st->st_atim.tv_sec,
        .mtime = (uint64_t)st->st_mtim.tv_sec,
        .ctime = (uint64_t)st->st_ctim.tv_sec,
        .atimensec = (uint32_t)st->st_atim.tv_nsec,
        .mtimensec = (uint32_t)st->st_mtim.tv_nsec,
        .ctimensec = (uint32_t)st->st_ctim.tv_nsec,
        .mode = st->st_mode,
        .nlink = (uint32_t)st->st_nlink,
        .uid = st->st_uid,
        .gid = st->st_gid,
        .rdev = (uint32_t)st->st_rdev,
        .blksize = (uint32_t)st->st_blksize,
    };
}

struct fuse_proc_name fuse_proc_name(int fd)
{
    struct fuse_proc_name n;
    snprintf(n.s, sizeof(n.s), "%d", fd);
    return n;
}

int fuse_reopen(struct fuse_server *s, const struct fuse_inode *ino, int flags)
{
    int fd = openat(s->proc_fd, fuse_proc_name(ino->fd).s, (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* ---- Inodes. ---- */

static uint32_t hash_key(const struct fuse_server *s, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)dev * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)ino * 0xc2b2ae3d27d4eb4fULL);
    return (uint32_t)(h ^ (h >> 29)) & s->bucket_mask;
}

static void hash_insert(struct fuse_server *s, uint32_t slot)
{
    struct fuse_inode *n = &s->inodes[slot];
    uint32_t b = hash_key(s, n->dev, n->ino);
    n->next = s->buckets[b];
    s->buckets[b] = slot + 1;
}

static void hash_remove(struct fuse_server *s, uint32_t slot)
{
    struct fuse_inode *n = &s->inodes[slot];
    uint32_t *link = &s->buckets[hash_key(s, n->dev, n->ino)];
    while (*link && *link != slot + 1)
        link = &s->inodes[*link - 1].next;
    if (*link)
        *link = n->next;
}

static struct fuse_inode *hash_find(struct fuse_server *s, dev_t dev, ino_t ino)
{
    for (uint32_t i = s->buckets[hash_key(s, dev, ino)]; i; i = s->inodes[i - 1].next) {
        struct fuse_inode *n = &s->inodes[i - 1];
        if (n->dev == dev && n->ino == ino)
            return n;
    }
    return NULL;
}

/* Grows a table by doubling up to max; the new slots join the free list. */
static int grow(void **table, size_t elem, uint32_t *slots, uint32_t max)
{
    if (*slots >= max)
        return -ENFILE;
    uint32_t n = *slots ? *slots * 2 : INITIAL_SLOTS;
    if (n > max || n < *slots)
        n = max;
    void *t = realloc(*table, (size_t)n * elem);
    if (!t)
        return -ENOMEM;
    memset((uint8_t *)t + (size_t)*slots * elem, 0, (size_t)(n - *slots) * elem);
    *table = t;
    *slots = n;
    return 0;
}

static int inode_alloc(struct fuse_server *s, uint32_t *slot)
{
    if (!s->inode_free) {
        uint32_t old = s->inode_slots;
        int err = grow((void **)&s->inodes, sizeof(*s->inodes), &s->inode_slots, s->inode_max);
        if (err)
            return err;
        for (uint32_t i = s->inode_slots; i > old; i--) {
            s->inodes[i - 1].next = s->inode_free;
            s->inode_free = i;
        }
    }
    *slot = s->inode_free - 1;
    s->inode_free = s->inodes[*slot].next;
    return 0;
}

static void inode_release(struct fuse_server *s, uint32_t slot)
{
    struct fuse_inode *n = &s->inodes[slot];
    hash_remove(s, slot);
    close(n->fd);
    *n = (struct fuse_inode){.fd = -1, .next = s->inode_free};
    s->inode_free = slot + 1;
}

int fuse_inodes_init(struct fuse_server *s, int root_fd)
{
    uint32_t buckets = 1;
    while (buckets < s->inode_max / 2 && buckets < (1u << 20))
        buckets <<= 1;
    s->buckets = calloc(buckets, sizeof(*s->buckets));
    struct stat st;
    int err = s->buckets ? fuse_stat(root_fd, &st) : -ENOMEM;
    uint32_t slot = 0;
    if (!err)
        err = inode_alloc(s, &slot);
    if (err) {
        free(s->buckets);
        free(s->inodes);
        return err;
    }
    s->bucket_mask = buckets - 1;
    s->inodes[slot] = (struct fuse_inode){
        .fd = root_fd, .used = true, .dev = st.st_dev, .ino = st.st_ino, .nlookup = 1};
    hash_insert(s, slot);
    return 0;
}

static void handles_close_all(struct fuse_server *s)
{
    for (uint32_t i = 0; i < s->handle_slots; i++)
        if (s->handles[i].used)
            fuse_handle_close(s, i, s->handles[i].dir);
}

void fuse_forget_all(struct fuse_server *s)
{
    for (uint32_t i = 1; i < s->inode_slots; i++)
        if (s->inodes[i].used)
            inode_release(s, i);
    handles_close_all(s);
}

void fuse_inodes_fini(struct fuse_server *s)
{
    fuse_forget_all(s);
    close(s->inodes[0].fd);
    free(s->inodes);
    free(s->buckets);
    free(s->handles);
}

struct fuse_inode *fuse_inode_get(struct fuse_server *s, uint64_t nodeid)
{
    if (nodeid == 0 || nodeid > s->inode_slots || !s->inodes[nodeid - 1].used)
        return NULL;
    return &s->inodes[nodeid - 1];
}

/* Takes a reference on the inode behind fd (consumed: kept or closed). */
static int inode_ref(struct fuse_server *s, int fd, const struct stat *st, uint64_t *nodeid,
                     uint64_t *gen)
{
    struct fuse_inode *n = hash_find(s, st->st_dev, st->st_ino);
    if (n) {
        close(fd);
        n->nlookup++;
    } else {
        uint32_t slot;
        int err = inode_alloc(s, &slot);
        if (err) {
            close(fd);
            return err;
        }
        n = &s->inodes[slot];
        *n = (struct fuse_inode){.fd = fd, .used = true, .dev = st->st_dev, .ino = st->st_ino,
                                 .nlookup = 1, .gen = ++s->next_gen};
        hash_insert(s, slot);
    }
    *nodeid = (uint64_t)(n - s->inodes) + 1;
    *gen = n->gen;
    return 0;
}

/* Takes a reference on the inode behind the O_PATH fd (consumed) and describes it. */
static int entry_from_path_fd(struct fuse_server *s, int fd, struct fuse_entry_out *out)
{
    struct stat st;
    int err = fuse_stat(fd, &st);
    if (err) {
        close(fd);
        return err;
    }
    memset(out, 0, sizeof(*out));
    err = inode_ref(s, fd, &st, &out->nodeid, &out->generation);
    if (err)
        return err;
    out->entry_valid = out->attr_valid = s->cache_seconds;
    fuse_fill_attr(&out->attr, &st);
    return 0;
}

int fuse_lookup(struct fuse_server *s, struct fuse_inode *parent, const char *name,
                struct fuse_entry_out *out)
{
    int fd = fuse_open_beneath(parent->fd, name, O_PATH, 0);
    return fd < 0 ? fd : entry_from_path_fd(s, fd, out);
}

int fuse_lookup_fd(struct fuse_server *s, int fd, struct fuse_entry_out *out)
{
    int path_fd = openat(s->proc_fd, fuse_proc_name(fd).s, O_PATH | O_CLOEXEC);
    return path_fd < 0 ? -errno : entry_from_path_fd(s, path_fd, out);
}

void fuse_forget(struct fuse_server *s, uint64_t nodeid, uint64_t nlookup)
{
    struct fuse_inode *n = fuse_inode_get(s, nodeid);
    if (!n || nodeid == FUSE_ROOT_ID)
        return;
    n->nlookup = nlookup < n->nlookup ? n->nlookup - nlookup : 0;
    if (!n->nlookup)
        inode_release(s, (uint32_t)(nodeid - 1));
}

void fuse_own_new(struct fuse_server *s, const struct fuse_req *r, struct fuse_entry_out *e)
{
    struct fuse_inode *n = fuse_inode_get(s, e->nodeid);
    if (!s->give_away || !n)
        return;
    if (!fchownat(n->fd, "", r->in.uid, r->in.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
        e->attr.uid = r->in.uid;
        e->attr.gid = r->in.gid;
    }
}

/* ---- Handles. ---- */

int fuse_handle_new(struct fuse_server *s, int fd, bool dir, uint64_t *fh)
{
    if (!s->handle_free) {
        uint32_t old = s->handle_slots;
        int err = grow((void **)&s->handles, sizeof(*s->handles), &s->handle_slots,
                       s->handle_max);
        if (err) {
            close(fd);
            return err;
        }
        for (uint32_t i = s->handle_slots; i > old; i--) {
            s->handles[i - 1].next_free = s->handle_free;
            s->handle_free = i;
        }
    }
    uint32_t slot = s->handle_free - 1;
    s->handle_free = s->handles[slot].next_free;
    s->handles[slot] = (struct fuse_handle){.fd = fd, .used = true, .dir = dir};
    *fh = slot;
    return 0;
}

int fuse_handle_fd(struct fuse_server *s, uint64_t fh, bool dir)
{
    if (fh >= s->handle_slots || !s->handles[fh].used || s->handles[fh].dir != dir)
        return -EBADF;
    return s->handles[fh].fd;
}

int fuse_handle_close(struct fuse_server *s, uint64_t fh, bool dir)
{
    if (fuse_handle_fd(s, fh, dir) < 0)
        return -EBADF;
    close(s->handles[fh].fd);
    s->handles[fh] = (struct fuse_handle){.fd = -1, .next_free = s->handle_free};
    s->handle_free = (uint32_t)fh + 1;
    return 0;
}
