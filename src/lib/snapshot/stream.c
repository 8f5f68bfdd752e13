#include "snapshot/stream.h"

#include <stdlib.h>
#include <string.h>

void snap_writer_init(struct snap_writer *w)
{
    *w = (struct snap_writer){0};
}

void snap_writer_free(struct snap_writer *w)
{
    free(w->data);
    *w = (struct snap_writer){0};
}

static bool reserve(struct snap_writer *w, size_t more)
{
    if (w->failed)
        return false;
    if (more > SNAP_SECTION_MAX || w->len + more > SNAP_SECTION_MAX) {
        w->failed = true;
        return false;
    }
    if (w->len + more <= w->cap)
        return true;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more)
        cap *= 2;
    uint8_t *grown = realloc(w->data, cap);
    if (!grown) {
        w->failed = true;
        return false;
    }
    w->data = grown;
    w->cap = cap;
    return true;
}

static void put_le(struct snap_writer *w, uint64_t v, unsigned size)
{
    if (!reserve(w, size))
        return;
    for (unsigned i = 0; i < size; i++)
        w->data[w->len++] = (uint8_t)(v >> (8 * i));
}

void snap_put_u8(struct snap_writer *w, uint8_t v) { put_le(w, v, 1); }
void snap_put_u16(struct snap_writer *w, uint16_t v) { put_le(w, v, 2); }
void snap_put_u32(struct snap_writer *w, uint32_t v) { put_le(w, v, 4); }
void snap_put_u64(struct snap_writer *w, uint64_t v) { put_le(w, v, 8); }

void snap_put_bytes(struct snap_writer *w, const void *data, size_t len)
{
    if (len == 0 || !reserve(w, len))
        return;
    memcpy(w->data + w->len, data, len);
    w->len += len;
}

void snap_begin(struct snap_writer *w, uint32_t tag)
{
    if (w->depth == sizeof(w->open_sections) / sizeof(w->open_sections[0])) {
        w->failed = true;
        return;
    }
    snap_put_u32(w, tag);
    w->open_sections[w->depth++] = w->len;
    snap_put_u32(w, 0);
}

void snap_end(struct snap_writer *w)
{
    if (w->depth == 0) {
        w->failed = true;
        return;
    }
    size_t at = w->open_sections[--w->depth];
    if (w->failed)
        return;
    uint32_t body = (uint32_t)(w->len - at - 4);
    for (unsigned i = 0; i < 4; i++)
        w->data[at + i] = (uint8_t)(body >> (8 * i));
}

bool snap_writer_ok(const struct snap_writer *w)
{
    return !w->failed && w->depth == 0;
}

void snap_reader_init(struct snap_reader *r, const void *data, size_t len)
{
    *r = (struct snap_reader){.data = data, .len = data ? len : 0};
}

/* The next n bytes, or NULL (and failed) when they are not there. */
static const uint8_t *take(struct snap_reader *r, size_t n)
{
    if (r->failed || n > r->len - r->pos) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->data + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_le(struct snap_reader *r, unsigned size)
{
    const uint8_t *p = take(r, size);
    uint64_t v = 0;
    for (unsigned i = 0; p && i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t snap_get_u8(struct snap_reader *r) { return (uint8_t)get_le(r, 1); }
uint16_t snap_get_u16(struct snap_reader *r) { return (uint16_t)get_le(r, 2); }
uint32_t snap_get_u32(struct snap_reader *r) { return (uint32_t)get_le(r, 4); }
uint64_t snap_get_u64(struct snap_reader *r) { return get_le(r, 8); }

void snap_get_bytes(struct snap_reader *r, void *dst, size_t len)
{
    const uint8_t *p = take(r, len);
    if (p)
        memcpy(dst, p, len);
    else if (len)
        memset(dst, 0, len);
}

void snap_section(struct snap_reader *r, uint32_t tag, struct snap_reader *section)
{
    uint32_t found = snap_get_u32(r);
    uint32_t len = snap_get_u32(r);
    const uint8_t *body = found == tag ? take(r, len) : NULL;
    if (!body) {
        r->failed = true;
        *section = (struct snap_reader){.failed = true};
        return;
    }
    snap_reader_init(section, body, len);
}

bool snap_reject(struct snap_reader *r)
{
    r->failed = true;
    return false;
}

bool snap_reader_ok(const struct snap_reader *r, bool whole)
{
    return !r->failed && (!whole || r->pos == r->len);
}
