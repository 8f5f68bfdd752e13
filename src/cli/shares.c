/*
 * --share HOST_DIR:GUEST_PATH[:ro][:cache=MODE]: a virtio-fs share in the configuration, and a
 * "cove.mount=TAG:GUEST_PATH[:ro]" word on the kernel command line, by which cove-agent mounts
 * it when the guest boots. Tags are made up here (share0, share1, ...): users name the mount
 * point, not the tag.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The guest path travels on the kernel command line, where a space or quote would split it. */
static bool usable_guest_path(const char *path, size_t len)
{
    if (len == 0 || path[0] != '/' || len > 200)
        return false;
    for (size_t i = 0; i < len; i++)
        if (path[i] == ' ' || path[i] == '\t' || path[i] == '"' || path[i] == ':' ||
            path[i] == '\n')
            return false;
    return true;
}

int add_agent_word(struct run_options *opts, const char *word)
{
    size_t old = opts->agent_words ? strlen(opts->agent_words) : 0;
    size_t add = 1 + strlen(word) + 1;
    char *grown = realloc(opts->agent_words, old + add);
    if (!grown) {
        fprintf(stderr, "cove: out of memory\n");
        return -1;
    }
    snprintf(grown + old, add, " %s", word);
    opts->agent_words = grown;
    return 0;
}

static int add_mount_word(struct run_options *opts, const char *tag, const char *path,
                          size_t path_len, bool read_only)
{
    char word[256];
    snprintf(word, sizeof(word), "cove.mount=%s:%.*s%s", tag, (int)path_len, path,
             read_only ? ":ro" : "");
    return add_agent_word(opts, word);
}

/* The options after the guest path, each ":WORD". */
struct share_options {
    bool read_only;
    cove_share_cache cache;
};

bool share_cache_from_name(const char *name, size_t len, cove_share_cache *cache)
{
    static const struct {
        const char *name;
        cove_share_cache cache;
    } modes[] = {
        {"auto", COVE_SHARE_CACHE_AUTO},
        {"never", COVE_SHARE_CACHE_NEVER},
        {"always", COVE_SHARE_CACHE_ALWAYS},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].name) == len && memcmp(name, modes[i].name, len) == 0) {
            *cache = modes[i].cache;
            return true;
        }
    }
    return false;
}

/* Takes one trailing ":WORD" off arg[0..*len) into *o: true if it was an option. */
static bool take_share_option(const char *arg, size_t *len, struct share_options *o)
{
    const char *colon = memrchr(arg, ':', *len);
    if (!colon)
        return false;
    const char *word = colon + 1;
    size_t word_len = *len - (size_t)(word - arg);
    if (word_len == 2 && (memcmp(word, "ro", 2) == 0 || memcmp(word, "rw", 2) == 0))
        o->read_only = word[1] == 'o';
    else if (word_len <= 6 || memcmp(word, "cache=", 6) != 0 ||
             !share_cache_from_name(word + 6, word_len - 6, &o->cache))
        return false;
    *len = (size_t)(colon - arg);
    return true;
}

int parse_share(cove_config *config, struct run_options *opts, const char *arg)
{
    size_t len = strlen(arg);
    struct share_options options = {.cache = COVE_SHARE_CACHE_AUTO};
    while (take_share_option(arg, &len, &options))
        ;
    bool read_only = options.read_only;
    const char *colon = memrchr(arg, ':', len);
    if (colon && strncmp(colon + 1, "cache=", 6) == 0) {
        fprintf(stderr, "cove: --share '%s': unknown cache mode '%.*s': use cache=auto, never or "
                "always\n", arg, (int)(len - (size_t)(colon + 7 - arg)), colon + 7);
        return -1;
    }
    if (!colon || colon == arg) {
        fprintf(stderr,
                "cove: --share '%s': use HOST_DIR:GUEST_PATH[:ro][:cache=auto|never|always]\n",
                arg);
        return -1;
    }
    const char *guest = colon + 1;
    size_t guest_len = len - (size_t)(guest - arg);
    if (!usable_guest_path(guest, guest_len)) {
        fprintf(stderr,
                "cove: --share '%s': the guest path must be absolute, at most 200 bytes, "
                "without spaces, quotes or colons\n", arg);
        return -1;
    }
    char *host = strndup(arg, (size_t)(colon - arg));
    char tag[16];
    snprintf(tag, sizeof(tag), "share%u", opts->share_count);
    int r = host ? cove_config_add_share(config, tag, host, read_only) : -1;
    free(host);
    if (r >= 0)
        r = cove_config_set_share_cache(config, (size_t)r, options.cache);
    if (r < 0) {
        fprintf(stderr, "cove: --share '%s': out of memory\n", arg);
        return -1;
    }
    opts->share_count++;
    return add_mount_word(opts, tag, guest, guest_len, read_only);
}

char *cmdline_with_mounts(const char *cmdline, const struct run_options *opts)
{
    const char *words = opts->agent_words ? opts->agent_words : "";
    const char *dashes = strncmp(cmdline, "-- ", 3) == 0 ? cmdline : strstr(cmdline, " -- ");
    size_t head = dashes ? (size_t)(dashes - cmdline) : strlen(cmdline);
    size_t len = strlen(cmdline) + strlen(words) + 2;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%.*s%s%s%s", (int)head, cmdline, words,
                 dashes && dashes == cmdline ? " " : "", cmdline + head);
    return out;
}

void warn_share_file_limit(const struct run_options *opts)
{
    struct rlimit files;
    if (opts->share_count == 0 || getrlimit(RLIMIT_NOFILE, &files) != 0 ||
        files.rlim_cur == RLIM_INFINITY || files.rlim_cur >= SHARE_FILE_LIMIT_WANTED)
        return;
    fprintf(stderr,
            "cove: warning: the open-file limit is %llu (hard limit %llu), so a share keeps at "
            "most %llu files looked up and further lookups fail with ENFILE; raise the hard "
            "limit to %u or more (ulimit -Hn as root, LimitNOFILE= for a service)\n",
            (unsigned long long)files.rlim_cur, (unsigned long long)files.rlim_max,
            (unsigned long long)files.rlim_cur / 2, SHARE_FILE_LIMIT_WANTED);
}
