/*
 * Guest physical memory: one memfd mapped once into the VMM.
 *
 * On x86_64 RAM is split around the PCI hole: [0, low_size) below it and
 * [4 GiB, 4 GiB + high_size) above it. The memfd holds both back to back, so the host
 * offset of a guest address above 4 GiB is low_size + (gpa - 4 GiB).
 *
 * A device served for another VMM (vhost-user) sees that VMM's RAM instead, as up to
 * GUEST_MEM_MAX_REGIONS regions it mapped itself (guest_mem_add_region); the queue code
 * reads either the same way.
 */
#ifndef COVE_GUEST_MEM_H
#define COVE_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 8

struct guest_mem_region {
    uint64_t gpa, size;
    uint8_t *host;
};

struct guest_mem {
    uint8_t *host;      /* mapping of the whole memfd */
    uint64_t size;      /* bytes of RAM in all */
    uint64_t low_size;  /* bytes of RAM below the hole, starting at guest address 0 */
    uint64_t high_base; /* guest address where RAM resumes above the hole */
    int memfd;
    /* Another VMM's RAM: when region_count > 0 these are all of guest RAM (host is NULL). */
    unsigned region_count;
    struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/* Creates and maps memfd-backed RAM of size bytes, split at hole_start. */
int guest_mem_create(struct guest_mem *mem, uint64_t size, uint64_t hole_start, uint64_t high_base);
/*
 * RAM of size bytes whose contents are size bytes of file fd from offset (a snapshot),
 * mapped privately: pages are read from the file (its page cache, shared by every VM restored
 * from it) as the guest touches them, and copied only when written. fd may be closed after.
 * memfd is -1: such RAM cannot be shared with another process.
 */
int guest_mem_map_file(struct guest_mem *mem, int fd, uint64_t offset, uint64_t size,
                       uint64_t hole_start, uint64_t high_base);
void guest_mem_destroy(struct guest_mem *mem);

/*
 * Adds [gpa, gpa + size) of another VMM's RAM, mapped by the caller at host (which keeps
 * the mapping). -EINVAL for an empty or wrapping range or one that overlaps another region,
 * -ENOSPC when GUEST_MEM_MAX_REGIONS are there already.
 */
int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, uint8_t *host);

/*
 * The host address of [gpa, gpa + len), or NULL when any part of it is not RAM or the range
 * crosses the hole. Every guest-supplied address goes through here.
 */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

#endif
