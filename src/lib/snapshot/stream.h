/*
 * The byte stream a VM snapshot's state is written as: fixed-width little-endian fields in
 * tagged, length-prefixed sections, so each part of the machine reads back exactly what it
 * wrote and nothing of a neighbour's.
 *
 * The snapshot file lives in the user's cache and may be damaged or stale, so reading is
 * bounds-checked throughout: a read past the end of a section, a wrong tag or a length that
 * does not fit marks the reader failed, reads then give zeros, and the caller checks
 * snap_reader_ok() once at the end instead of after every field.
 */
#ifndef COVE_SNAPSHOT_STREAM_H
#define COVE_SNAPSHOT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Section tags: four characters, readable in a hex dump. */
#define SNAP_TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

/* The largest section; the state of a whole machine is well below this. */
#define SNAP_SECTION_MAX (64u << 20)

struct snap_writer {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* out of memory, or a section left open: the stream must not be used */
    size_t open_sections[8];
    unsigned depth;
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u16(struct snap_writer *w, uint16_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
void snap_put_bytes(struct snap_writer *w, const void *data, size_t len);
/* A section: tag, its length (filled in by snap_end), then what is put until snap_end. */
void snap_begin(struct snap_writer *w, uint32_t tag);
void snap_end(struct snap_writer *w);
/* Whether everything went in and every section was closed. */
bool snap_writer_ok(const struct snap_writer *w);

struct snap_reader {
    const uint8_t *data;
    size_t len, pos;
    bool failed;
};

void snap_reader_init(struct snap_reader *r, const void *data, size_t len);
uint8_t snap_get_u8(struct snap_reader *r);
uint16_t snap_get_u16(struct snap_reader *r);
uint32_t snap_get_u32(struct snap_reader *r);
uint64_t snap_get_u64(struct snap_reader *r);
/* Fills dst with len bytes (zeros once failed). */
void snap_get_bytes(struct snap_reader *r, void *dst, size_t len);
/*
 * The next section, which must carry tag: *section reads its body and r moves past it. On a
 * wrong tag or a length beyond the stream, r and *section both fail.
 */
void snap_section(struct snap_reader *r, uint32_t tag, struct snap_reader *section);
/* Marks the reader failed (a value out of range, say); returns false for the caller's return. */
bool snap_reject(struct snap_reader *r);
/* No read failed, and with whole set, every byte was read. */
bool snap_reader_ok(const struct snap_reader *r, bool whole);

#endif
