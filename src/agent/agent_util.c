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
