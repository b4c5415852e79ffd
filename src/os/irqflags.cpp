// local_irq_disable() for real threads: block the asynchronous signals, since signal handlers
// are klock's hardirq context. Signals the kernel raises synchronously for a fault in this
// thread (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay deliverable: blocking them
// would turn a crash into undefined behaviour.
#include <klock/env/os.hpp>

#include <pthread.h>

namespace klock::env::detail {

namespace {
sigset_t async_signals() noexcept
{
    sigset_t set;
    sigfillset(&set);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS})
        sigdelset(&set, sig);
    return set;
}
} // namespace

void os_irq_disable(os_task* t) noexcept
{
    static const sigset_t blocked = async_signals();
    pthread_sigmask(SIG_BLOCK, &blocked, &t->saved_sigmask);
}

void os_irq_enable(os_task* t) noexcept { pthread_sigmask(SIG_SETMASK, &t->saved_sigmask, nullptr); }

} // namespace klock::env::detail
