/*
 * The kick signal: how one libcove thread pulls another out of a blocking system call (a vCPU
 * out of KVM_RUN, a console writer out of write()). A real-time signal nobody else is likely
 * to use; its handler does nothing, the interruption (EINTR) is the point. Threads keep it
 * blocked except where they wait on something a kick must be able to end.
 */
#ifndef COVE_KICK_H
#define COVE_KICK_H

#include <signal.h>

#define KICK_SIGNAL (SIGRTMIN + 4)

/*
 * The only process-wide effect of libcove: installs the do-nothing handler (without
 * SA_RESTART, so a kicked write() returns EINTR) once, and only if the application has not
 * claimed the signal itself. Thread-safe.
 */
void kick_install_handler(void);

/* Unblocks the kick signal for the calling thread. */
void kick_unblock(void);

#endif
