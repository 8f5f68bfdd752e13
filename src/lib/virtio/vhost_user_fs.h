/*
 * A virtio-fs device served to another VMM over vhost-user (QEMU's
 * docs/interop/vhost-user.rst): the front-end (QEMU's vhost-user-fs-pci, Cloud Hypervisor)
 * keeps the PCI transport and lends us its guest RAM, each queue's ring addresses and an
 * eventfd pair; the chains are served by the FUSE server a cove VM's shares use.
 *
 * This part is the protocol without the socket: one message in, maybe one reply out, so the
 * message handling can be driven and fuzzed directly (fs_serve.c does the socket).
 */
#ifndef COVE_VIRTIO_VHOST_USER_FS_H
#define COVE_VIRTIO_VHOST_USER_FS_H

#include <stddef.h>
#include <stdint.h>

#include "fs/fuse_server.h"
#include "io_loop.h"

/* Requests (vhost-user.rst, "Front-end message types"). */
enum {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_RESET_OWNER = 4,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_LOG_BASE = 6,
    VHOST_USER_SET_LOG_FD = 7,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_SET_VRING_ERR = 14,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_SET_VRING_ENABLE = 18,
};

#define VHOST_USER_HEADER_SIZE 12
#define VHOST_USER_VERSION 0x1
#define VHOST_USER_FLAG_VERSION_MASK 0x3
#define VHOST_USER_FLAG_REPLY 0x4
/* The largest payload taken: the memory table, 8 bytes and 8 regions of 32. */
#define VHOST_USER_MAX_PAYLOAD 264
#define VHOST_USER_MAX_FDS 8
/* The hiprio queue and up to 8 request queues. */
#define VHOST_USER_FS_MAX_QUEUES 9

struct vhost_user_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size; /* of payload, at most VHOST_USER_MAX_PAYLOAD */
    uint8_t payload[VHOST_USER_MAX_PAYLOAD];
};

struct vhost_user_fs;

/* loop: where the kick eventfds are watched (NULL: nowhere; vhost_user_fs_kick serves). The
 * server stays the caller's. NULL when out of memory. */
struct vhost_user_fs *vhost_user_fs_new(struct fuse_server *server, struct io_loop *loop);
/* Unmaps the lent RAM and closes every descriptor the front-end gave. */
void vhost_user_fs_free(struct vhost_user_fs *vu);

/*
 * Handles one message. fds[0..nfds) came with it and are taken (kept or closed) whatever
 * happens. Returns 1 with *reply filled when the request has a reply, 0 when it has none,
 * or a negative errno with one line in error when the front-end broke the protocol (the
 * session should end).
 */
int vhost_user_fs_message(struct vhost_user_fs *vu, const struct vhost_user_msg *msg,
                          const int *fds, unsigned nfds, struct vhost_user_msg *reply,
                          char *error, size_t error_len);

/* Serves what is pending on queue index, as its kick does. */
void vhost_user_fs_kick(struct vhost_user_fs *vu, unsigned index);

#endif
