/*
 * The boot snapshot's stream (snapshot/stream.c) and file (snapshot/file.c). A snapshot file
 * sits in the user's cache across cove versions and may be cut short or damaged, so besides
 * round trips these check that a reader never reads past what is there and that opening a
 * bad file names it and refuses it instead of restoring garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest_mem.h"
#include "snapshot/file.h"
#include "snapshot/stream.h"

#define TAG_A SNAP_TAG('T', 'S', 'T', 'A')
#define TAG_B SNAP_TAG('T', 'S', 'T', 'B')

/* A stream of two sections, the second nested in nothing: A{u8 u16 u32 u64 bytes} B{u32}. */
static struct snap_writer two_sections(void)
{
    struct snap_writer w;
    snap_writer_init(&w);
    snap_begin(&w, TAG_A);
    snap_put_u8(&w, 0xab);
    snap_put_u16(&w, 0xbeef);
    snap_put_u32(&w, 0xdeadbeef);
    snap_put_u64(&w, UINT64_C(0x0123456789abcdef));
    snap_put_bytes(&w, "cove", 4);
    snap_end(&w);
    snap_begin(&w, TAG_B);
    snap_put_u32(&w, 7);
    snap_end(&w);
    return w;
}

static void stream_round_trip(void **state)
{
    (void)state;
    struct snap_writer w = two_sections();
    assert_true(snap_writer_ok(&w));
    assert_int_equal(w.len, 8 + 19 + 8 + 4);
    assert_int_equal(w.data[0], 'T'); /* tags read in a hex dump */
    assert_int_equal(w.data[4], 19);  /* little-endian length of A's body */

    struct snap_reader r, a, b;
    snap_reader_init(&r, w.data, w.len);
    snap_section(&r, TAG_A, &a);
    assert_int_equal(snap_get_u8(&a), 0xab);
    assert_int_equal(snap_get_u16(&a), 0xbeef);
    assert_int_equal(snap_get_u32(&a), 0xdeadbeef);
    assert_true(snap_get_u64(&a) == UINT64_C(0x0123456789abcdef));
    char word[4];
    snap_get_bytes(&a, word, sizeof(word));
    assert_memory_equal(word, "cove", 4);
    assert_true(snap_reader_ok(&a, true));
    snap_section(&r, TAG_B, &b);
    assert_int_equal(snap_get_u32(&b), 7);
    assert_true(snap_reader_ok(&b, true));
    assert_true(snap_reader_ok(&r, true));
    snap_writer_free(&w);
}

static void reading_past_a_section_fails_and_gives_zeros(void **state)
{
    (void)state;
    struct snap_writer w = two_sections();
    struct snap_reader r, b;
    snap_reader_init(&r, w.data, w.len);
    snap_section(&r, TAG_A, &b); /* skip A */
    snap_section(&r, TAG_B, &b);
    assert_int_equal(snap_get_u32(&b), 7);
    assert_true(snap_get_u64(&b) == 0); /* B holds no more: not its neighbour's bytes */
    uint8_t bytes[4] = {1, 2, 3, 4};
    snap_get_bytes(&b, bytes, sizeof(bytes));
    assert_int_equal(bytes[0] | bytes[1] | bytes[2] | bytes[3], 0);
    assert_false(snap_reader_ok(&b, false));
    assert_true(snap_reader_ok(&r, true)); /* the outer stream is unharmed */
    snap_writer_free(&w);
}

static void wrong_tag_and_short_stream_fail(void **state)
{
    (void)state;
    struct snap_writer w = two_sections();
    struct snap_reader r, s;
    snap_reader_init(&r, w.data, w.len);
    snap_section(&r, TAG_B, &s); /* A comes first */
    assert_false(snap_reader_ok(&r, false));
    assert_false(snap_reader_ok(&s, false));
    assert_int_equal(snap_get_u8(&s), 0);

    for (size_t cut = 0; cut < w.len; cut++) { /* every truncation is caught, none overreads */
        snap_reader_init(&r, w.data, cut);
        struct snap_reader a, b;
        snap_section(&r, TAG_A, &a);
        snap_section(&r, TAG_B, &b);
        (void)snap_get_u32(&b);
        assert_false(snap_reader_ok(&r, true) && snap_reader_ok(&b, true));
    }
    /* A length beyond the stream: the body is not taken. */
    w.data[4] = 0xff, w.data[5] = 0xff;
    snap_reader_init(&r, w.data, w.len);
    snap_section(&r, TAG_A, &s);
    assert_false(snap_reader_ok(&s, false));
    assert_false(snap_reader_ok(&r, false));
    snap_writer_free(&w);
}

static void writer_catches_unbalanced_sections(void **state)
{
    (void)state;
    struct snap_writer w;
    snap_writer_init(&w);
    snap_begin(&w, TAG_A);
    assert_false(snap_writer_ok(&w)); /* left open */
    snap_end(&w);
    assert_true(snap_writer_ok(&w));
    snap_end(&w); /* one end too many */
    assert_false(snap_writer_ok(&w));
    snap_writer_free(&w);

    snap_writer_init(&w);
    for (int i = 0; i < 9; i++) /* deeper than the writer tracks */
        snap_begin(&w, TAG_A);
    for (int i = 0; i < 9; i++)
        snap_end(&w);
    assert_false(snap_writer_ok(&w));
    snap_writer_free(&w);

    snap_writer_init(&w);
    snap_put_bytes(&w, "", SNAP_SECTION_MAX + 1u); /* never read: refused before the copy */
    assert_false(snap_writer_ok(&w));
    snap_writer_free(&w);
}

static void reject_marks_the_reader(void **state)
{
    (void)state;
    uint8_t byte = 9;
    struct snap_reader r;
    snap_reader_init(&r, &byte, 1);
    assert_int_equal(snap_get_u8(&r), 9);
    assert_true(snap_reader_ok(&r, true));
    assert_false(snap_reject(&r));
    assert_false(snap_reader_ok(&r, true));
}

/* ---- files ---- */

#define RAM_SIZE (1u << 20)
#define KEY UINT64_C(0x5eed)

struct fixture {
    char dir[64];
    char path[96];
    struct guest_mem mem;
};

static int make_fixture(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/cove-test-snapshot.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/boot.snap", f->dir);
    assert_int_equal(guest_mem_create(&f->mem, RAM_SIZE, RAM_SIZE, RAM_SIZE), 0);
    /* Two touched pages, one of them written back to zero, and a byte at the very end. */
    memcpy(f->mem.host + 8192, "guest data", 10);
    memset(f->mem.host + 65536, 0x5a, 4096);
    memset(f->mem.host + 65536, 0, 4096);
    f->mem.host[RAM_SIZE - 1] = 0x77;
    *state = f;
    return 0;
}

/* The directory must hold only what the test expects: no temporary files left. */
static int entries_in(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static int free_fixture(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    assert_int_equal(entries_in(f->dir), 0);
    rmdir(f->dir);
    guest_mem_destroy(&f->mem);
    free(f);
    return 0;
}

static void write_snapshot(struct fixture *f, const char *state_bytes)
{
    char error[256] = "";
    assert_int_equal(snap_file_write(f->path, KEY, state_bytes, strlen(state_bytes), &f->mem,
                                     error, sizeof(error)),
                     0);
    assert_int_equal(entries_in(f->dir), 1);
}

static void file_round_trip_maps_the_ram(void **state)
{
    struct fixture *f = *state;
    write_snapshot(f, "the machine state");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* guest RAM is private to its owner */
    assert_true((uint64_t)st.st_blocks * 512 < RAM_SIZE / 4); /* sparse: zero pages are holes */

    struct snap_file file;
    char error[256] = "";
    assert_int_equal(snap_file_open(f->path, KEY, RAM_SIZE, &file, error, sizeof(error)), 0);
    assert_int_equal(file.state_len, strlen("the machine state"));
    assert_memory_equal(file.state, "the machine state", file.state_len);
    assert_int_equal(file.mem_offset % 4096, 0);

    struct guest_mem restored;
    assert_int_equal(guest_mem_map_file(&restored, file.fd, file.mem_offset, RAM_SIZE, RAM_SIZE,
                                        RAM_SIZE),
                     0);
    snap_file_close(&file);
    assert_memory_equal(restored.host, f->mem.host, RAM_SIZE);
    restored.host[8192] = 'G'; /* copy on write: the file keeps what was saved */
    assert_int_equal(snap_file_open(f->path, KEY, RAM_SIZE, &file, error, sizeof(error)), 0);
    char saved;
    assert_int_equal(pread(file.fd, &saved, 1, (off_t)file.mem_offset + 8192), 1);
    assert_int_equal(saved, 'g');
    snap_file_close(&file);
    guest_mem_destroy(&restored);
}

static void missing_file_is_enoent_without_a_message(void **state)
{
    struct fixture *f = *state;
    struct snap_file file;
    char error[256] = "";
    assert_int_equal(snap_file_open(f->path, KEY, RAM_SIZE, &file, error, sizeof(error)), -ENOENT);
    assert_string_equal(error, "");
    assert_int_equal(file.fd, -1);
}

static void other_key_or_size_is_stale(void **state)
{
    struct fixture *f = *state;
    write_snapshot(f, "state");
    struct snap_file file;
    char error[256] = "";
    assert_int_equal(snap_file_open(f->path, KEY + 1, RAM_SIZE, &file, error, sizeof(error)),
                     -ESTALE);
    assert_non_null(strstr(error, f->path));
    assert_non_null(strstr(error, "another configuration"));
    assert_int_equal(snap_file_open(f->path, KEY, RAM_SIZE * 2, &file, error, sizeof(error)),
                     -ESTALE);
}

static int open_damaged(struct fixture *f, char *error, size_t error_len)
{
    struct snap_file file;
    int r = snap_file_open(f->path, KEY, RAM_SIZE, &file, error, error_len);
    assert_int_equal(file.fd, -1);
    assert_null(file.state);
    return r;
}

static void damaged_files_are_refused(void **state)
{
    struct fixture *f = *state;
    char error[256];
    write_snapshot(f, "some state to damage");
    int fd = open(f->path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 64 + 3), 1); /* a state byte: the checksum fails */
    assert_int_equal(open_damaged(f, error, sizeof(error)), -EINVAL);
    assert_non_null(strstr(error, "damaged"));
    close(fd);

    write_snapshot(f, "some state to damage");
    assert_int_equal(truncate(f->path, 4096 + RAM_SIZE / 2), 0); /* RAM cut short */
    assert_int_equal(open_damaged(f, error, sizeof(error)), -EINVAL);
    assert_int_equal(truncate(f->path, 40), 0); /* not even a header */
    assert_int_equal(open_damaged(f, error, sizeof(error)), -EINVAL);

    write_snapshot(f, "some state to damage");
    fd = open(f->path, O_RDWR);
    assert_int_equal(pwrite(fd, "\xff\xff\xff\xff", 4, 24 + 2), 4); /* a huge state length */
    assert_int_equal(open_damaged(f, error, sizeof(error)), -EINVAL);
    assert_int_equal(pwrite(fd, "NOTASNAP", 8, 0), 8);
    assert_int_equal(open_damaged(f, error, sizeof(error)), -EINVAL);
    close(fd);
}

static void failed_write_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    char error[256] = "";
    char bad_path[128];
    snprintf(bad_path, sizeof(bad_path), "%s/missing-dir/boot.snap", f->dir);
    assert_true(snap_file_write(bad_path, KEY, "s", 1, &f->mem, error, sizeof(error)) < 0);
    assert_non_null(strstr(error, bad_path));
    struct guest_mem unshared = f->mem;
    unshared.memfd = -1; /* RAM mapped from a file: nothing to find the data extents in */
    assert_int_equal(snap_file_write(f->path, KEY, "s", 1, &unshared, error, sizeof(error)),
                     -ENOTSUP);
    assert_int_equal(entries_in(f->dir), 0);
}

static void hash_is_fnv1a(void **state)
{
    (void)state;
    assert_true(snap_hash(SNAP_HASH_INIT, "", 0) == UINT64_C(0xcbf29ce484222325));
    assert_true(snap_hash(SNAP_HASH_INIT, "a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stream_round_trip),
        cmocka_unit_test(reading_past_a_section_fails_and_gives_zeros),
        cmocka_unit_test(wrong_tag_and_short_stream_fail),
        cmocka_unit_test(writer_catches_unbalanced_sections),
        cmocka_unit_test(reject_marks_the_reader),
        cmocka_unit_test_setup_teardown(file_round_trip_maps_the_ram, make_fixture, free_fixture),
        cmocka_unit_test_setup_teardown(missing_file_is_enoent_without_a_message, make_fixture,
                                        free_fixture),
        cmocka_unit_test_setup_teardown(other_key_or_size_is_stale, make_fixture, free_fixture),
        cmocka_unit_test_setup_teardown(damaged_files_are_refused, make_fixture, free_fixture),
        cmocka_unit_test_setup_teardown(failed_write_leaves_nothing, make_fixture, free_fixture),
        cmocka_unit_test(hash_is_fnv1a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
