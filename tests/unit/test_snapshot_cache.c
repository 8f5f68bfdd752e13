/*
 * The boot cache's upkeep: pruning keeps the most recently used entries and removes the rest,
 * removes a killed save's temporary file once it is old and not before, and leaves every other
 * file alone; touching an entry makes it the most recently used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/cache.h"

struct bench {
    char dir[64];
};

static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->dir, "/tmp/cove-cache-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bench *b = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    assert_int_equal(system(cmd), 0);
    free(b);
    return 0;
}

static void path_of(const struct bench *b, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", b->dir, name);
}

/* A file `name` last modified `age` seconds ago. */
static void make_file(const struct bench *b, const char *name, time_t age)
{
    char path[128];
    path_of(b, name, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    struct timespec t[2] = {{.tv_sec = time(NULL) - age}, {.tv_sec = time(NULL) - age}};
    assert_int_equal(futimens(fd, t), 0);
    close(fd);
}

static bool exists(const struct bench *b, const char *name)
{
    char path[128];
    struct stat st;
    path_of(b, name, path, sizeof(path));
    return stat(path, &st) == 0;
}

static void entry_name(unsigned i, char *name, size_t len)
{
    snprintf(name, len, "%016x.snap", 0xabc000u + i);
}

/* 20 entries, entry i used i minutes ago: the 16 newest stay. */
static void test_prune_keeps_most_recent(void **state)
{
    struct bench *b = *state;
    char name[32];
    for (unsigned i = 0; i < 20; i++) {
        entry_name(i, name, sizeof(name));
        make_file(b, name, 60 * (time_t)i);
    }
    assert_int_equal(snap_cache_prune(b->dir, SNAP_CACHE_MAX_ENTRIES), 4);
    for (unsigned i = 0; i < 20; i++) {
        entry_name(i, name, sizeof(name));
        assert_int_equal(exists(b, name), i < SNAP_CACHE_MAX_ENTRIES);
    }
    assert_int_equal(snap_cache_prune(b->dir, SNAP_CACHE_MAX_ENTRIES), 0);
}

/* The oldest entry, touched, becomes the newest: the next prune spares it. */
static void test_touch_marks_use(void **state)
{
    struct bench *b = *state;
    char name[32], path[128];
    for (unsigned i = 0; i < 3; i++) {
        entry_name(i, name, sizeof(name));
        make_file(b, name, 600 * (time_t)(i + 1));
    }
    entry_name(2, name, sizeof(name));
    path_of(b, name, path, sizeof(path));
    snap_cache_touch(path);
    assert_int_equal(snap_cache_prune(b->dir, 1), 2);
    assert_true(exists(b, name));
}

/* A killed save's temporary file goes once it is old, not while a save may still write it;
 * files that are not the cache's are never touched, however old. */
static void test_prune_temp_and_foreign_files(void **state)
{
    struct bench *b = *state;
    const time_t old = SNAP_CACHE_STALE_TEMP_SECONDS + 60;
    make_file(b, "0000000000abc001.snap.Ab12Cd", old);
    make_file(b, "0000000000abc002.snap.Xy34Zw", 5);
    make_file(b, "notes.txt", old);
    make_file(b, "0000000000ABC003.snap", old); /* not lower-case hex: not ours */
    make_file(b, "0000000000abc004.snap.bak", old);
    assert_int_equal(snap_cache_prune(b->dir, SNAP_CACHE_MAX_ENTRIES), 1);
    assert_false(exists(b, "0000000000abc001.snap.Ab12Cd"));
    assert_true(exists(b, "0000000000abc002.snap.Xy34Zw"));
    assert_true(exists(b, "notes.txt"));
    assert_true(exists(b, "0000000000ABC003.snap"));
    assert_true(exists(b, "0000000000abc004.snap.bak"));
}

/* A directory that does not exist: an error, nothing else. */
static void test_prune_missing_dir(void **state)
{
    (void)state;
    assert_int_equal(snap_cache_prune("/nonexistent/cove-cache", 4), -ENOENT);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_prune_keeps_most_recent),
        T(test_touch_marks_use),
        T(test_prune_temp_and_foreign_files),
        T(test_prune_missing_dir),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
