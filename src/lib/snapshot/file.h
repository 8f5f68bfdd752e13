/*
 * A snapshot file: a header, the machine's state stream (stream.h) and the guest's RAM, which
 * starts on a page boundary so a restore can map it straight into the new VM (copy on write).
 * The RAM is written sparse: pages the guest never touched, or left all zero, are holes.
 *
 * Written to a temporary file in the same directory and renamed into place once complete, so
 * a reader sees a whole snapshot or none, and a failed write leaves nothing behind.
 */
#ifndef COVE_SNAPSHOT_FILE_H
#define COVE_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define SNAP_FILE_VERSION 1

/*
 * Writes path from state (state_len bytes) and mem's RAM (its memfd must be open), with key
 * identifying what the snapshot is of. Returns 0, or a negative errno with one line in error.
 */
int snap_file_write(const char *path, uint64_t key, const void *state, size_t state_len,
                    const struct guest_mem *mem, char *error, size_t error_len);

struct snap_file {
    int fd;
    uint8_t *state; /* the state stream, read into memory */
    size_t state_len;
    uint64_t mem_offset, mem_size;
};

/*
 * Opens path and checks it is a whole snapshot of this version and key, with mem_size bytes
 * of RAM. Returns 0, -ENOENT when there is none, -ESTALE when it is of another version or key,
 * -EINVAL when it is damaged (short, bad lengths, a state checksum that does not match), or
 * another negative errno; one line in error for all but -ENOENT.
 */
int snap_file_open(const char *path, uint64_t key, uint64_t mem_size, struct snap_file *file,
                   char *error, size_t error_len);
void snap_file_close(struct snap_file *file);

/* FNV-1a, 64 bits: the key's hash and the state's checksum (damage, not tampering). */
uint64_t snap_hash(uint64_t hash, const void *data, size_t len);
#define SNAP_HASH_INIT UINT64_C(0xcbf29ce484222325)

#endif
