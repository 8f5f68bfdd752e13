#include "agent_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

char *agent_join_args(int argc, char *const argv[])
{
    if (argc <= 1 || argv == NULL)
        return NULL;

    size_t total = 0;
    for (int i = 1; i < argc; i++)
        total += strlen(argv[i]) + 1; /* the separator, or the final NUL */

    char *joined = malloc(total);
    if (joined == NULL)
        return NULL;

    char *p = joined;
    for (int i = 1; i < argc; i++) {
        if (i > 1)
            *p++ = ' ';
        size_t n = strlen(argv[i]);
        memcpy(p, argv[i], n);
        p += n;
    }
    *p = '\0';
    return joined;
}

bool agent_describe_status(int status, char *buf, size_t len)
{
    if (len > 0)
        buf[0] = '\0';
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0)
            return false;
        snprintf(buf, len, "command exited with status %d", WEXITSTATUS(status));
        return true;
    }
    if (WIFSIGNALED(status)) {
        snprintf(buf, len, "command killed by signal %d", WTERMSIG(status));
        return true;
    }
    snprintf(buf, len, "command ended with wait status 0x%x", (unsigned)status);
    return true;
}

bool agent_cmdline_has_word(const char *cmdline, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = cmdline; *p;) {
        p += strspn(p, " \t\n");
        size_t n = strcspn(p, " \t\n");
        if (n == len && strncmp(p, word, len) == 0)
            return true;
        p += n;
    }
    return false;
}

#define MOUNT_PREFIX "cove.mount="

/* Parses "TAG:PATH[:ro]" (len bytes at word) into mount; false when malformed. */
static bool parse_mount(const char *word, size_t len, struct agent_mount *mount)
{
    const char *colon = memchr(word, ':', len);
    if (!colon || colon == word || (size_t)(colon - word) >= sizeof(mount->tag))
        return false;
    size_t tag_len = (size_t)(colon - word);
    const char *path = colon + 1;
    size_t path_len = len - tag_len - 1;
    const char *suffix = memchr(path, ':', path_len);
    mount->read_only = false;
    if (suffix) {
        size_t suffix_len = path_len - (size_t)(suffix - path);
        if (suffix_len != 3 || memcmp(suffix, ":ro", 3) != 0)
            return false;
        mount->read_only = true;
        path_len = (size_t)(suffix - path);
    }
    if (path_len == 0 || path[0] != '/' || path_len >= sizeof(mount->path))
        return false;
    memcpy(mount->tag, word, tag_len);
    mount->tag[tag_len] = '\0';
    memcpy(mount->path, path, path_len);
    mount->path[path_len] = '\0';
    return true;
}

bool agent_next_mount(const char **cursor, struct agent_mount *mount)
{
    const char *p = *cursor;
    while (*p) {
        p += strspn(p, " \t\n");
        size_t len = strcspn(p, " \t\n");
        const char *word = p;
        p += len;
        size_t prefix = strlen(MOUNT_PREFIX);
        if (len > prefix && strncmp(word, MOUNT_PREFIX, prefix) == 0 &&
            parse_mount(word + prefix, len - prefix, mount)) {
            *cursor = p;
            return true;
        }
    }
    *cursor = p;
    return false;
}

bool agent_read_ahead_path(unsigned major, unsigned minor, char *buf, size_t len)
{
    int n = snprintf(buf, len, "/sys/class/bdi/%u:%u/read_ahead_kb", major, minor);
    return n > 0 && (size_t)n < len;
}
