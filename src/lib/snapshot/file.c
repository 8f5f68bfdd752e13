#include "snapshot/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/stream.h"

#define PAGE 4096u
#define HEADER_SIZE 64u
static const char MAGIC[8] = {'C', 'O', 'V', 'E', 'S', 'N', 'A', 'P'};

/* Header fields, little endian, at these offsets. */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_KEY = 16,
    H_STATE_LEN = 24,
    H_STATE_SUM = 32,
    H_MEM_OFFSET = 40,
    H_MEM_SIZE = 48,
};

uint64_t snap_hash(uint64_t hash, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= UINT64_C(0x100000001b3);
    }
    return hash;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int fail(char *error, size_t error_len, int err, const char *path, const char *what)
{
    snprintf(error, error_len, "boot snapshot '%s': %s%s%s", path, what, err ? ": " : "",
             err ? strerror(-err) : "");
    return err ? err : -EINVAL;
}

static int write_all(int fd, const void *data, size_t len, uint64_t offset)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static bool page_is_zero(const uint8_t *page)
{
    const uint64_t *words = (const uint64_t *)page;
    for (size_t i = 0; i < PAGE / sizeof(*words); i++)
        if (words[i])
            return false;
    return true;
}

/* The pages of [start, end) of RAM that hold anything, as runs of pwrite. */
static int write_extent(int fd, const struct guest_mem *mem, uint64_t base, uint64_t start,
                        uint64_t end)
{
    uint64_t run = start;
    for (uint64_t at = start; at < end; at += PAGE) {
        if (!page_is_zero(mem->host + at))
            continue;
        if (at > run) {
            int r = write_all(fd, mem->host + run, at - run, base + run);
            if (r < 0)
                return r;
        }
        run = at + PAGE;
    }
    return end > run ? write_all(fd, mem->host + run, end - run, base + run) : 0;
}

/* Only the memfd's data extents: RAM the guest never touched reads as holes there. */
static int write_ram(int fd, const struct guest_mem *mem, uint64_t base)
{
    off_t at = 0;
    while ((uint64_t)at < mem->size) {
        off_t data = lseek(mem->memfd, at, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno;
        off_t hole = lseek(mem->memfd, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        uint64_t end = (uint64_t)hole < mem->size ? (uint64_t)hole : mem->size;
        uint64_t start = (uint64_t)data & ~(uint64_t)(PAGE - 1);
        int r = write_extent(fd, mem, base, start, (end + PAGE - 1) & ~(uint64_t)(PAGE - 1));
        if (r < 0)
            return r;
        at = hole;
    }
    return 0;
}

static int write_body(int fd, uint64_t key, const void *state, size_t state_len,
                      const struct guest_mem *mem)
{
    uint64_t mem_offset = (HEADER_SIZE + state_len + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    uint8_t header[HEADER_SIZE] = {0};
    memcpy(header + H_MAGIC, MAGIC, sizeof(MAGIC));
    put64(header + H_VERSION, SNAP_FILE_VERSION);
    put64(header + H_KEY, key);
    put64(header + H_STATE_LEN, state_len);
    put64(header + H_STATE_SUM, snap_hash(SNAP_HASH_INIT, state, state_len));
    put64(header + H_MEM_OFFSET, mem_offset);
    put64(header + H_MEM_SIZE, mem->size);
    int r = write_all(fd, state, state_len, HEADER_SIZE);
    if (r == 0 && ftruncate(fd, (off_t)(mem_offset + mem->size)) < 0)
        r = -errno;
    if (r == 0)
        r = write_ram(fd, mem, mem_offset);
    /* The header last: until it is there the file is not a snapshot. */
    if (r == 0)
        r = write_all(fd, header, sizeof(header), 0);
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    return r;
}

int snap_file_write(const char *path, uint64_t key, const void *state, size_t state_len,
                    const struct guest_mem *mem, char *error, size_t error_len)
{
    if (mem->memfd < 0)
        return fail(error, error_len, -ENOTSUP, path, "guest RAM");
    size_t tmp_len = strlen(path) + 8;
    char *tmp = malloc(tmp_len);
    if (!tmp)
        return fail(error, error_len, -ENOMEM, path, "writing");
    snprintf(tmp, tmp_len, "%s.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    int r = fd < 0 ? -errno : write_body(fd, key, state, state_len, mem);
    if (fd >= 0)
        close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0 && fd >= 0)
        unlink(tmp);
    free(tmp);
    return r < 0 ? fail(error, error_len, r, path, "writing") : 0;
}

static int check_header(const uint8_t *h, uint64_t key, uint64_t mem_size, uint64_t file_size,
                        struct snap_file *file)
{
    if (memcmp(h + H_MAGIC, MAGIC, sizeof(MAGIC)) != 0)
        return -EINVAL;
    if (get64(h + H_VERSION) != SNAP_FILE_VERSION || get64(h + H_KEY) != key)
        return -ESTALE;
    uint64_t state_len = get64(h + H_STATE_LEN);
    uint64_t mem_offset = get64(h + H_MEM_OFFSET);
    if (get64(h + H_MEM_SIZE) != mem_size)
        return -ESTALE;
    if (state_len > SNAP_SECTION_MAX || mem_offset % PAGE || mem_offset < HEADER_SIZE + state_len ||
        mem_offset > file_size || file_size - mem_offset < mem_size)
        return -EINVAL;
    file->state_len = (size_t)state_len;
    file->mem_offset = mem_offset;
    file->mem_size = mem_size;
    return 0;
}

static int read_state(struct snap_file *file, uint64_t sum)
{
    file->state = malloc(file->state_len ? file->state_len : 1);
    if (!file->state)
        return -ENOMEM;
    ssize_t n = pread(file->fd, file->state, file->state_len, HEADER_SIZE);
    if (n < 0)
        return -errno;
    if ((size_t)n != file->state_len || snap_hash(SNAP_HASH_INIT, file->state, file->state_len) != sum)
        return -EINVAL;
    return 0;
}

int snap_file_open(const char *path, uint64_t key, uint64_t mem_size, struct snap_file *file,
                   char *error, size_t error_len)
{
    *file = (struct snap_file){.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (file->fd < 0) {
        int err = -errno;
        return err == -ENOENT ? err : fail(error, error_len, err, path, "opening");
    }
    uint8_t header[HEADER_SIZE];
    struct stat st;
    int r = fstat(file->fd, &st) < 0 ? -errno : 0;
    if (r == 0 && pread(file->fd, header, sizeof(header), 0) != (ssize_t)sizeof(header))
        r = -EINVAL;
    if (r == 0)
        r = check_header(header, key, mem_size, (uint64_t)st.st_size, file);
    if (r == 0)
        r = read_state(file, get64(header + H_STATE_SUM));
    if (r < 0) {
        snap_file_close(file);
        if (r == -ESTALE)
            return fail(error, error_len, 0, path, "made for another configuration or cove"), -ESTALE;
        return fail(error, error_len, r == -EINVAL ? 0 : r, path, r == -EINVAL ? "damaged" : "reading");
    }
    return 0;
}

void snap_file_close(struct snap_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    free(file->state);
    *file = (struct snap_file){.fd = -1};
}
