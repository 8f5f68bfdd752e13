/*
 * The directory shares of a configuration: recording, copying and validating them. Split
 * from config.c, which is long enough; the rules match the disks' (paths checked only by
 * validation, every problem one line).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

int cove_config_add_share(cove_config *config, const char *tag, const char *host_dir,
                          bool read_only)
{
    if (!tag || !tag[0] || !host_dir || !host_dir[0])
        return -EINVAL;
    /* More than COVE_SHARE_MAX is recorded for validation to report; an int index is the end. */
    if (config->share_count >= 1024)
        return -E2BIG;
    struct cove_share_config *grown =
        realloc(config->shares, (config->share_count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    config->shares = grown;
    struct cove_share_config share = {
        .tag = strdup(tag), .host_dir = strdup(host_dir), .read_only = read_only};
    if (!share.tag || !share.host_dir) {
        free(share.tag);
        free(share.host_dir);
        return -ENOMEM;
    }
    config->shares[config->share_count] = share;
    return (int)config->share_count++;
}

size_t cove_config_share_count(const cove_config *config)
{
    return config->share_count;
}

const char *cove_config_share(const cove_config *config, size_t index, const char **host_dir,
                              bool *read_only)
{
    if (index >= config->share_count)
        return NULL;
    const struct cove_share_config *share = &config->shares[index];
    if (host_dir)
        *host_dir = share->host_dir;
    if (read_only)
        *read_only = share->read_only;
    return share->tag;
}

int cove_config_set_share_cache(cove_config *config, size_t index, cove_share_cache cache)
{
    if (index >= config->share_count)
        return -ENOENT;
    if (cache != COVE_SHARE_CACHE_AUTO && cache != COVE_SHARE_CACHE_NEVER &&
        cache != COVE_SHARE_CACHE_ALWAYS)
        return -EINVAL;
    config->shares[index].cache = cache;
    return 0;
}

cove_share_cache cove_config_share_cache(const cove_config *config, size_t index)
{
    return index < config->share_count ? config->shares[index].cache : COVE_SHARE_CACHE_AUTO;
}

void config_free_shares(cove_config *config)
{
    for (size_t i = 0; i < config->share_count; i++) {
        free(config->shares[i].tag);
        free(config->shares[i].host_dir);
    }
    free(config->shares);
    config->shares = NULL;
    config->share_count = 0;
}

int config_copy_shares(cove_config *copy, const cove_config *config)
{
    for (size_t i = 0; i < config->share_count; i++) {
        const struct cove_share_config *share = &config->shares[i];
        int index = cove_config_add_share(copy, share->tag, share->host_dir, share->read_only);
        if (index < 0)
            return -ENOMEM;
        copy->shares[index].cache = share->cache;
    }
    return 0;
}

void config_report(config_problem_fn problem, void *report, const char *fmt, ...)
{
    char message[COVE_ERROR_MAX + 4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    problem(report, message);
}

/* The directory must be one the VM can serve: there, a directory, readable and searchable
 * (and writable unless read-only; root passes access() regardless, as it would in the VM). */
static void check_share_dir(const struct cove_share_config *share, config_problem_fn problem,
                            void *report)
{
    struct stat st;
    int mode = R_OK | X_OK | (share->read_only ? 0 : W_OK);
    if (stat(share->host_dir, &st) != 0)
        config_report(problem, report, "share '%s': directory '%s': %s", share->tag,
                       share->host_dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        config_report(problem, report, "share '%s': '%s' is not a directory", share->tag,
                       share->host_dir);
    else if (access(share->host_dir, mode) != 0)
        config_report(problem, report, "share '%s': directory '%s': %s%s", share->tag,
                       share->host_dir, strerror(errno),
                       share->read_only ? "" : " (share it read-only, or fix its permissions)");
}

static void check_share_tag(const cove_config *config, size_t index, config_problem_fn problem,
                            void *report)
{
    const struct cove_share_config *share = &config->shares[index];
    if (strlen(share->tag) > COVE_SHARE_TAG_MAX)
        config_report(problem, report, "share '%s': tag is longer than %d bytes", share->tag,
                       COVE_SHARE_TAG_MAX);
    for (size_t i = 0; i < index; i++) {
        if (strcmp(config->shares[i].tag, share->tag) == 0) {
            config_report(problem, report,
                           "share '%s': tag already used by share %zu (tags must differ)",
                           share->tag, i);
            return;
        }
    }
}

void config_check_shares(const cove_config *config, config_problem_fn problem, void *report)
{
    if (config->share_count > COVE_SHARE_MAX)
        config_report(problem, report, "shares: %zu given, at most %d", config->share_count,
                       COVE_SHARE_MAX);
    for (size_t i = 0; i < config->share_count; i++) {
        check_share_tag(config, i, problem, report);
        check_share_dir(&config->shares[i], problem, report);
    }
}

enum fuse_cache share_fuse_cache(cove_share_cache cache)
{
    switch (cache) {
    case COVE_SHARE_CACHE_NEVER:
        return FUSE_CACHE_NEVER;
    case COVE_SHARE_CACHE_ALWAYS:
        return FUSE_CACHE_ALWAYS;
    case COVE_SHARE_CACHE_AUTO:
        break;
    }
    return FUSE_CACHE_AUTO;
}
