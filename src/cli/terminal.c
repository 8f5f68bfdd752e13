/* The host terminal while a guest uses it. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

void terminal_raw(struct terminal *term, bool keep_signals)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &term->original) < 0)
        return;
    struct termios raw = term->original;
    cfmakeraw(&raw);
    if (keep_signals)
        raw.c_lflag |= ISIG;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
        term->saved = true;
}

void terminal_restore(struct terminal *term)
{
    if (term->saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &term->original);
    term->saved = false;
}

void print_vm_warning(cove_vm *vm, const char *line, void *opaque)
{
    (void)vm;
    (void)opaque;
    /* A raw terminal (cfmakeraw clears OPOST) does not turn \n into a new line by itself. */
    fprintf(stderr, "cove: warning: %s%s", line, isatty(STDERR_FILENO) ? "\r\n" : "\n");
}

int open_stop_signal_fd(void)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop_signals, NULL);
    return signalfd(-1, &stop_signals, SFD_CLOEXEC);
}
