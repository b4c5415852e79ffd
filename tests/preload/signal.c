/* A lock taken in a signal handler (klock run's hardirq context) and in normal code.
 *   unblocked   main takes L with SIGUSR1 deliverable, then the handler takes L: if the signal had
 *               arrived while main held L, the handler would deadlock on it. Reported: inconsistent
 *               lock state {HARDIRQ-ON-W} -> {IN-HARDIRQ-W}.
 *   blocked     main blocks SIGUSR1 around L (pthread_sigmask): not reported.
 *   signal      like unblocked, with the handler installed by signal() instead of sigaction(). */
#include "common.h"

#include <signal.h>

pthread_mutex_t irq_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t handled;

NOINLINE void usr1_handler(int sig)
{
    (void)sig;
    pthread_mutex_lock(&irq_lock);
    handled = 1;
    pthread_mutex_unlock(&irq_lock);
}

NOINLINE void take_in_task(int block)
{
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (block)
        CHECK(pthread_sigmask(SIG_BLOCK, &usr1, &old));
    CHECK(pthread_mutex_lock(&irq_lock));
    CHECK(pthread_mutex_unlock(&irq_lock));
    if (block)
        CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL));
}

int main(int argc, char** argv)
{
    const char* mode = mode_arg(argc, argv);
    if (strcmp(mode, "signal") == 0) {
        if (signal(SIGUSR1, usr1_handler) == SIG_ERR)
            return 3;
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = usr1_handler;
        sigemptyset(&sa.sa_mask);
        CHECK(sigaction(SIGUSR1, &sa, NULL));
        /* the old action must read back as the program's own handler */
        struct sigaction back;
        CHECK(sigaction(SIGUSR1, NULL, &back));
        if (back.sa_handler != usr1_handler) {
            fputs("sigaction did not return the program's handler\n", stderr);
            return 4;
        }
    }
    if (strcmp(mode, "blocked") == 0)
        take_in_task(1);
    else if (strcmp(mode, "unblocked") == 0 || strcmp(mode, "signal") == 0)
        take_in_task(0);
    else {
        fprintf(stderr, "usage: %s unblocked|blocked|signal\n", argv[0]);
        return 2;
    }
    raise(SIGUSR1);
    if (!handled)
        return 5;
    puts("done");
    return 0;
}
