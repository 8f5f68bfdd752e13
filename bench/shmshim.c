/*
 * shmshim: System V shared memory for fio in a guest kernel without CONFIG_SYSVIPC.
 *
 * fio keeps its job table in a shmget() segment that its job processes (forked after the
 * segment is attached) share. This LD_PRELOAD shim gives it an anonymous MAP_SHARED mapping
 * instead, which fork shares the same way. Only what fio does is supported: get, attach
 * once, detach, remove. bench/disk-guest.sh preloads it through the dynamic loader.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define MAX_SEGMENTS 64

static struct {
    void *addr;
    size_t size;
} segments[MAX_SEGMENTS];
static int segment_count;

int shmget(key_t key, size_t size, int flags)
{
    (void)key;
    (void)flags;
    if (segment_count == MAX_SEGMENTS) {
        errno = ENOSPC;
        return -1;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    segments[segment_count].addr = p;
    segments[segment_count].size = size;
    return segment_count++;
}

void *shmat(int id, const void *addr, int flags)
{
    (void)addr;
    (void)flags;
    if (id < 0 || id >= segment_count) {
        errno = EINVAL;
        return (void *)-1;
    }
    return segments[id].addr;
}

int shmdt(const void *addr)
{
    (void)addr;
    return 0;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
    if (id < 0 || id >= segment_count) {
        errno = EINVAL;
        return -1;
    }
    if (cmd == IPC_STAT && buf) {
        memset(buf, 0, sizeof(*buf));
        buf->shm_segsz = segments[id].size;
        buf->shm_nattch = 1;
    }
    return 0;
}
