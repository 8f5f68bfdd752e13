#include "kick.h"

#include <pthread.h>

static void ignore_signal(int sig) { (void)sig; }

static void install_once(void)
{
    struct sigaction old;
    if (sigaction(KICK_SIGNAL, NULL, &old) == 0 && old.sa_handler != SIG_DFL)
        return;
    struct sigaction sa = {.sa_handler = ignore_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(KICK_SIGNAL, &sa, NULL);
}

void kick_install_handler(void)
{
    /* A once-flag is process state by nature: the handler it guards is process-wide too. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_once);
}

void kick_unblock(void)
{
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
}
