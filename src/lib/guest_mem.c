#include "guest_mem.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

int guest_mem_create(struct guest_mem *mem, uint64_t size, uint64_t hole_start, uint64_t high_base)
{
    *mem = (struct guest_mem){.memfd = -1};
    if (size == 0 || hole_start > high_base)
        return -EINVAL;
    /* A memfd rather than anonymous memory, so the RAM can later be shared with a device
     * backend process or written out as a snapshot. */
    int fd = memfd_create("cove-guest-ram", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    void *host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (host == MAP_FAILED) {
        int err = -errno;
        close(fd);
        return err;
    }
    mem->host = host;
    mem->size = size;
    mem->low_size = size < hole_start ? size : hole_start;
    mem->high_base = high_base;
    mem->memfd = fd;
    return 0;
}

int guest_mem_map_file(struct guest_mem *mem, int fd, uint64_t offset, uint64_t size,
                       uint64_t hole_start, uint64_t high_base)
{
    *mem = (struct guest_mem){.memfd = -1};
    if (size == 0 || hole_start > high_base || offset % 4096)
        return -EINVAL;
    void *host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
                      (off_t)offset);
    if (host == MAP_FAILED)
        return -errno;
    mem->host = host;
    mem->size = size;
    mem->low_size = size < hole_start ? size : hole_start;
    mem->high_base = high_base;
    return 0;
}

void guest_mem_destroy(struct guest_mem *mem)
{
    if (mem->host)
        munmap(mem->host, mem->size);
    if (mem->memfd >= 0)
        close(mem->memfd);
    *mem = (struct guest_mem){.memfd = -1};
}

int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, uint8_t *host)
{
    if (size == 0 || !host || gpa + size < gpa)
        return -EINVAL;
    if (mem->region_count == GUEST_MEM_MAX_REGIONS)
        return -ENOSPC;
    for (unsigned i = 0; i < mem->region_count; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size)
            return -EINVAL;
    }
    mem->regions[mem->region_count++] = (struct guest_mem_region){gpa, size, host};
    return 0;
}

static void *region_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < mem->region_count; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        /* No sum can overflow: r->gpa + r->size was checked when the region was added. */
        if (gpa >= r->gpa && gpa - r->gpa < r->size)
            return len <= r->size - (gpa - r->gpa) ? r->host + (gpa - r->gpa) : NULL;
    }
    return NULL;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
    if (mem->region_count)
        return region_ptr(mem, gpa, len);
    if (!mem->host)
        return NULL;
    /* Written so that no sum can overflow: gpa and len come from the guest. */
    if (gpa < mem->low_size) {
        if (len > mem->low_size - gpa)
            return NULL;
        return mem->host + gpa;
    }
    uint64_t high_size = mem->size - mem->low_size;
    if (gpa < mem->high_base || gpa - mem->high_base >= high_size)
        return NULL;
    uint64_t off = gpa - mem->high_base;
    if (len > high_size - off)
        return NULL;
    return mem->host + mem->low_size + off;
}
