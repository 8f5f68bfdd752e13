/*
 * The options of `cove run` that only matter with a command: its environment and secrets,
 * working directory, ids, terminal and time limit.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The largest secret file read; secrets are tokens and keys, not data sets. */
#define SECRET_FILE_MAX (1024 * 1024)

static bool valid_name(const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] == '=' || name[i] == '\0')
            return false;
    return true;
}

static int add_env(struct run_options *opts, char *entry)
{
    char **grown = realloc(opts->env, (opts->env_count + 1) * sizeof(*grown));
    if (!grown) {
        free(entry);
        fprintf(stderr, "cove: out of memory\n");
        return -1;
    }
    opts->env = grown;
    opts->env[opts->env_count++] = entry;
    return 0;
}

static int add_env_pair(struct run_options *opts, const char *name, size_t name_len,
                        const char *value, size_t value_len)
{
    char *entry = malloc(name_len + 1 + value_len + 1);
    if (!entry) {
        fprintf(stderr, "cove: out of memory\n");
        return -1;
    }
    memcpy(entry, name, name_len);
    entry[name_len] = '=';
    memcpy(entry + name_len + 1, value, value_len);
    entry[name_len + 1 + value_len] = '\0';
    return add_env(opts, entry);
}

/* -e NAME=VALUE, or -e NAME for our own $NAME (left out when we have none, as docker does). */
static int parse_env(struct run_options *opts, const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (!valid_name(arg, name_len)) {
        fprintf(stderr, "cove: --env '%s': use NAME=VALUE or NAME\n", arg);
        return -1;
    }
    if (eq)
        return add_env_pair(opts, arg, name_len, eq + 1, strlen(eq + 1));
    const char *ours = getenv(arg);
    return ours ? add_env_pair(opts, arg, name_len, ours, strlen(ours)) : 0;
}

/* Reads a secret file whole into buf (SECRET_FILE_MAX + 1 bytes). Returns its length or -1. */
static ssize_t read_secret_file(const char *name, const char *path, char *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "cove: --secret %s: '%s': %s\n", name, path, strerror(errno));
        return -1;
    }
    size_t len = 0;
    ssize_t n = 1;
    while (len <= SECRET_FILE_MAX && (n = read(fd, buf + len, SECRET_FILE_MAX + 1 - len)) > 0)
        len += (size_t)n;
    int err = errno;
    close(fd);
    if (n < 0) {
        fprintf(stderr, "cove: --secret %s: '%s': %s\n", name, path, strerror(err));
        return -1;
    }
    if (len > SECRET_FILE_MAX) {
        fprintf(stderr, "cove: --secret %s: '%s' is larger than 1 MiB\n", name, path);
        return -1;
    }
    if (memchr(buf, '\0', len)) {
        fprintf(stderr, "cove: --secret %s: '%s' holds a NUL byte, which no variable can\n",
                name, path);
        return -1;
    }
    /* Files written by editors and `echo` end with a newline nobody means as part of a key. */
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    return (ssize_t)len;
}

static int secret_from_file(struct run_options *opts, const char *name, size_t name_len,
                            const char *path)
{
    char *buf = malloc(SECRET_FILE_MAX + 1);
    if (!buf) {
        fprintf(stderr, "cove: out of memory\n");
        return -1;
    }
    char shown[256];
    snprintf(shown, sizeof(shown), "%.*s", (int)name_len, name);
    ssize_t len = read_secret_file(shown, path, buf);
    int r = len < 0 ? -1 : add_env_pair(opts, name, name_len, buf, (size_t)len);
    explicit_bzero(buf, SECRET_FILE_MAX + 1);
    free(buf);
    return r;
}

/*
 * --secret NAME=@FILE or --secret NAME (our $NAME). A value on the command line would show
 * in every host user's `ps`, so that form is refused rather than taken.
 */
static int parse_secret(struct run_options *opts, const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (!valid_name(arg, name_len)) {
        fprintf(stderr, "cove: --secret '%.*s...': use NAME=@FILE or NAME\n", (int)name_len,
                arg);
        return -1;
    }
    if (eq && eq[1] == '@' && eq[2])
        return secret_from_file(opts, arg, name_len, eq + 2);
    if (eq) {
        fprintf(stderr,
                "cove: --secret %.*s: a value on the command line shows in the host's process "
                "list; use %.*s=@FILE or export %.*s and pass --secret %.*s\n",
                (int)name_len, arg, (int)name_len, arg, (int)name_len, arg, (int)name_len, arg);
        return -1;
    }
    const char *ours = getenv(arg);
    if (!ours) {
        fprintf(stderr, "cove: --secret %s: $%s is not set (export it, or use %s=@FILE)\n", arg,
                arg, arg);
        return -1;
    }
    return add_env_pair(opts, arg, name_len, ours, strlen(ours));
}

bool parse_decimal(const char *text, size_t len, uint64_t min, uint64_t max, uint64_t *value)
{
    if (len == 0 || len > 19) /* 19 digits cannot overflow 64 bits */
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(text[i] - '0');
    }
    if (n < min || n > max)
        return false;
    *value = n;
    return true;
}

static bool parse_id(const char *text, size_t len, uint32_t *id)
{
    uint64_t value;
    /* (uid_t)-1 means "unchanged" to setuid */
    if (len > 10 || !parse_decimal(text, len, 0, UINT32_MAX - 1, &value))
        return false;
    *id = (uint32_t)value;
    return true;
}

/* -u UID[:GID], numeric: the guest has no user database to look names up in. */
static int parse_user(struct run_options *opts, const char *arg)
{
    const char *colon = strchr(arg, ':');
    size_t uid_len = colon ? (size_t)(colon - arg) : strlen(arg);
    bool ok = parse_id(arg, uid_len, &opts->uid);
    if (ok && colon)
        ok = parse_id(colon + 1, strlen(colon + 1), &opts->gid);
    else if (ok)
        opts->gid = opts->uid;
    if (!ok) {
        fprintf(stderr, "cove: --user '%s': use numeric UID or UID:GID, e.g. 1000:1000\n", arg);
        return -1;
    }
    opts->user_given = true;
    return 0;
}

/* "90" (seconds), "500ms", "60s", "5m", "1h", "1.5h". */
static int parse_duration(const char *text, uint64_t *ms)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || value <= 0)
        return -1;
    double scale;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        scale = 1000;
    else if (strcmp(end, "ms") == 0)
        scale = 1;
    else if (strcmp(end, "m") == 0)
        scale = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        scale = 3600 * 1000;
    else
        return -1;
    double total = value * scale;
    if (total < 1 || total > 1e12)
        return -1;
    *ms = (uint64_t)total;
    return 0;
}

int apply_command_option(struct run_options *opts, int opt, const char *arg)
{
    switch (opt) {
    case 'i':
        opts->interactive = true;
        return 0;
    case 't':
        opts->tty = true;
        return 0;
    case 'e':
        return parse_env(opts, arg);
    case OPT_SECRET:
        return parse_secret(opts, arg);
    case 'w':
        if (arg[0] != '/') {
            fprintf(stderr, "cove: --workdir '%s': give an absolute path in the guest\n", arg);
            return -1;
        }
        opts->workdir = arg;
        return 0;
    case 'u':
        return parse_user(opts, arg);
    case OPT_TIMEOUT:
        if (parse_duration(arg, &opts->timeout_ms) < 0) {
            fprintf(stderr, "cove: --timeout '%s': not a duration (use e.g. 90, 60s, 5m, 1h)\n",
                    arg);
            return -1;
        }
        return 0;
    default:
        return -1;
    }
}

void run_options_free(struct run_options *opts)
{
    for (size_t i = 0; i < opts->env_count; i++) {
        explicit_bzero(opts->env[i], strlen(opts->env[i]));
        free(opts->env[i]);
    }
    free(opts->env);
    opts->env = NULL;
    opts->env_count = 0;
    free(opts->agent_words);
    opts->agent_words = NULL;
}
