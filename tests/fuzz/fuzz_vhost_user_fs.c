/*
 * libFuzzer target for the vhost-user-fs back-end: the input is a front-end's message stream,
 * with descriptors made up by the harness where a message asks for one, and the guest RAM it
 * lends filled from the input too. After every message each queue is kicked, so a table,
 * ring addresses and a kick descriptor that the stream managed to set up get their rings
 * walked (and FUSE requests served) from fuzzed RAM. Built with ASan+UBSan: a crash, a leak
 * of a descriptor into the wrong place or an access outside the lent RAM fails the run.
 *
 * Input: messages, each
 *   u32 request   u32 flags   u16 payload size (cut to what fits)
 *   u8 descriptor: 0 none, 1 a memfd of RAM_SIZE, 2 two memfds, 3 an eventfd
 *   payload, then for memfds the first RAM_FILL bytes of their contents
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fs/fuse_server.h"
#include "virtio/vhost_user_fs.h"

#define RAM_SIZE (64u * 1024)
#define RAM_FILL 4096u
#define MSG_HEADER 11

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* A memfd of RAM_SIZE whose start holds the next input bytes. */
static int ram_fd(const uint8_t **data, size_t *size)
{
    int fd = memfd_create("fuzz-ram", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, RAM_SIZE) < 0)
        abort();
    size_t fill = *size < RAM_FILL ? *size : RAM_FILL;
    if (fill && pwrite(fd, *data, fill, 0) != (ssize_t)fill)
        abort();
    *data += fill;
    *size -= fill;
    return fd;
}

static unsigned make_fds(uint8_t kind, int *fds, const uint8_t **data, size_t *size)
{
    switch (kind % 4) {
    case 1: fds[0] = ram_fd(data, size); return 1;
    case 2: fds[0] = ram_fd(data, size); fds[1] = ram_fd(data, size); return 2;
    case 3: fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); return fds[0] >= 0;
    default: return 0;
    }
}

static const char *share_dir(void)
{
    static char dir[] = "/tmp/cove-fuzz-vufs-XXXXXX";
    static bool made;
    if (!made && !mkdtemp(dir))
        abort();
    made = true;
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuse_server *server;
    struct fuse_server_options options = {.read_only = true};
    if (fuse_server_new(share_dir(), &options, &server) < 0)
        abort();
    struct vhost_user_fs *vu = vhost_user_fs_new(server, NULL);
    if (!vu)
        abort();
    char error[256];
    while (size >= MSG_HEADER) {
        struct vhost_user_msg msg = {.request = rd32(data), .flags = rd32(data + 4)};
        size_t want = (size_t)(data[8] | data[9] << 8);
        uint8_t kind = data[10];
        data += MSG_HEADER;
        size -= MSG_HEADER;
        msg.size = (uint32_t)(want < size ? want : size);
        if (msg.size > VHOST_USER_MAX_PAYLOAD)
            msg.size = VHOST_USER_MAX_PAYLOAD;
        memcpy(msg.payload, data, msg.size);
        data += msg.size;
        size -= msg.size;
        int fds[2];
        unsigned nfds = make_fds(kind, fds, &data, &size);
        struct vhost_user_msg reply;
        int r = vhost_user_fs_message(vu, &msg, fds, nfds, &reply, error, sizeof(error));
        if (r == 1 && reply.size > VHOST_USER_MAX_PAYLOAD)
            __builtin_trap();
        if (r < 0)
            break; /* the session would end here */
        for (unsigned q = 0; q < VHOST_USER_FS_MAX_QUEUES; q++)
            vhost_user_fs_kick(vu, q);
    }
    vhost_user_fs_free(vu);
    fuse_server_destroy(server);
    return 0;
}
