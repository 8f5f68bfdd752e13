#include "snapshot/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_DIGITS 16
#define ENTRY_SUFFIX ".snap"
#define ENTRY_LEN (KEY_DIGITS + sizeof(ENTRY_SUFFIX) - 1)
/* mkostemp's: a dot and six characters after the entry's name (snapshot/file.c). */
#define TEMP_LEN (ENTRY_LEN + 7)

struct entry {
    char name[ENTRY_LEN + 1];
    struct timespec used;
};

void snap_cache_touch(const char *path)
{
    /* Failing to mark it only makes it an earlier candidate for removal. */
    utimensat(AT_FDCWD, path, NULL, 0);
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr("0123456789abcdef", s[i]))
            return false;
    return true;
}

/* "<16 hex>.snap", or that with ".XXXXXX" after it: a save's temporary file. */
static bool is_entry(const char *name)
{
    return strlen(name) == ENTRY_LEN && is_hex(name, KEY_DIGITS) &&
           strcmp(name + KEY_DIGITS, ENTRY_SUFFIX) == 0;
}

static bool is_temp(const char *name)
{
    return strlen(name) == TEMP_LEN && is_hex(name, KEY_DIGITS) &&
           strncmp(name + KEY_DIGITS, ENTRY_SUFFIX ".", sizeof(ENTRY_SUFFIX)) == 0;
}

/* Newest first. */
static int by_use(const void *a, const void *b)
{
    const struct timespec *x = &((const struct entry *)a)->used;
    const struct timespec *y = &((const struct entry *)b)->used;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? 1 : -1;
    if (x->tv_nsec != y->tv_nsec)
        return x->tv_nsec < y->tv_nsec ? 1 : -1;
    return 0;
}

static int remember(struct entry **list, size_t *count, size_t *cap, const char *name,
                    const struct stat *st)
{
    if (*count == *cap) {
        size_t grown = *cap ? *cap * 2 : 32;
        struct entry *bigger = realloc(*list, grown * sizeof(**list));
        if (!bigger)
            return -ENOMEM;
        *list = bigger;
        *cap = grown;
    }
    struct entry *e = &(*list)[(*count)++];
    memcpy(e->name, name, sizeof(e->name));
    e->used = st->st_mtim;
    return 0;
}

int snap_cache_prune(const char *dir, unsigned max_entries)
{
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dir_fd >= 0 ? fdopendir(dir_fd) : NULL;
    if (!d) {
        int err = errno;
        if (dir_fd >= 0)
            close(dir_fd);
        return -err;
    }
    struct entry *entries = NULL;
    size_t count = 0, cap = 0;
    int removed = 0, r = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        struct stat st;
        bool entry = is_entry(de->d_name), temp = !entry && is_temp(de->d_name);
        if ((!entry && !temp) || fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (entry)
            r = remember(&entries, &count, &cap, de->d_name, &st);
        else if (now - st.st_mtime > SNAP_CACHE_STALE_TEMP_SECONDS &&
                 unlinkat(dir_fd, de->d_name, 0) == 0)
            removed++;
    }
    if (r == 0 && count > max_entries) {
        qsort(entries, count, sizeof(*entries), by_use);
        for (size_t i = max_entries; i < count; i++)
            if (unlinkat(dir_fd, entries[i].name, 0) == 0)
                removed++;
    }
    free(entries);
    closedir(d);
    return r < 0 ? r : removed;
}
