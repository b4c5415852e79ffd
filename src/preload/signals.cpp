// Signal handlers as hardirq context, and the signal mask as the irq flag.
//
// sigaction() (and signal(), bsd_signal(), sysv_signal(), which are built on it here) installs a
// trampoline in place of the program's handler; the trampoline runs the handler between
// klock::hardirq_enter() and klock::hardirq_exit(), so a lock taken in a handler is lockdep's
// "used in hardirq" and a lock taken elsewhere while the signal could arrive is "hardirq-on": one
// class with both is "inconsistent lock state", the deadlock of a handler interrupting the holder.
// Like a kernel irq handler, a wrapped handler runs with the asynchronous signals blocked
// (hardirq_enter() disables "interrupts"). sigaction() hands back the program's own handler as
// the old action, so save-and-restore code keeps working.
//
// The irq flag of a thread (thread_info.irqs_disabled) follows its signal mask: interrupts are
// "disabled" while every signal that has a wrapped handler is blocked. sigprocmask() and
// pthread_sigmask() update it (with lockdep's hardirqs_on/off tracing); a thread's mask is read
// once, lazily, and the state is recomputed when the set of wrapped signals changes.
//
// Signals the kernel raises for a fault in the thread itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP, SIGSYS) are not interrupts and are not wrapped.
#include "preload.hpp"

#include <klock/env/os.hpp>

#include <cerrno>
#include <cstring>
#include <sched.h>

namespace klock::preload {

std::atomic<std::uint32_t> g_irq_gen{0};

namespace {

struct handler {
    std::atomic<void*> fn{nullptr};
    std::atomic<int> flags{0};
};

constexpr int MAX_SIG = 65;
handler g_handlers[MAX_SIG];
std::atomic<std::uint64_t> g_wrapped{0}; // bit sig-1: the signal has a wrapped handler
std::atomic<bool> g_sig_lock{false};

std::uint64_t bit(int sig) { return std::uint64_t(1) << (sig - 1); }

bool wrappable(int sig)
{
    if (sig <= 0 || sig >= MAX_SIG || sig == SIGKILL || sig == SIGSTOP)
        return false;
    for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS})
        if (sig == s)
            return false;
    return sig < 32 || sig >= SIGRTMIN; // 32 and 33 belong to glibc
}

std::uint64_t mask_bits(const sigset_t& s)
{
    std::uint64_t m = 0;
    static_assert(sizeof(s.__val[0]) == 8);
    std::memcpy(&m, &s.__val[0], sizeof m);
    return m;
}

// Put this thread's irq flag in line with its mask (outside handlers only).
void apply_mask(std::uintptr_t ip)
{
    thread_state& t = tls;
    t.irq_gen = g_irq_gen.load(std::memory_order_relaxed);
    const std::uint64_t wrapped = g_wrapped.load(std::memory_order_relaxed);
    const bool off = wrapped != 0 && (wrapped & ~t.sigmask) == 0;
    env::os::task* task = env::os::current();
    thread_info& ti = env::os::info(task);
    if ((ti.preempt_count & HARDIRQ_MASK) != 0)
        return; // inside a handler: hardirq_exit() restores the state
    tool_scope scope;
    if (off && !ti.irqs_disabled) {
        ti.irqs_disabled = true;
        lockdep::hardirqs_off(ip);
    } else if (!off && ti.irqs_disabled) {
        lockdep::hardirqs_on(ip);
        ti.irqs_disabled = false;
    }
}

[[gnu::section(KLOCK_TRAMPOLINE_SECTION), gnu::noinline]] void trampoline(int sig, siginfo_t* info, void* uc)
{
    const int saved_errno = errno;
    handler& h = g_handlers[sig];
    void* fn = h.fn.load(std::memory_order_acquire);
    const int flags = h.flags.load(std::memory_order_relaxed);
    if (flags & SA_RESETHAND) {
        // The kernel has put back SIG_DFL: so do we.
        h.fn.store(nullptr, std::memory_order_relaxed);
        g_wrapped.fetch_and(~bit(sig), std::memory_order_relaxed);
        g_irq_gen.fetch_add(1, std::memory_order_relaxed);
    }
    const bool track = g_active.load(std::memory_order_relaxed) && !tls.in_tool;
    if (track) {
        tool_scope scope;
        klock::hardirq_enter();
    }
    errno = saved_errno;
    if (fn != nullptr) {
        if (flags & SA_SIGINFO)
            reinterpret_cast<void (*)(int, siginfo_t*, void*)>(fn)(sig, info, uc);
        else
            reinterpret_cast<void (*)(int)>(fn)(sig);
    }
    const int handler_errno = errno;
    if (track) {
        tool_scope scope;
        klock::hardirq_exit();
    }
    errno = handler_errno;
}

class sig_guard {
public:
    sig_guard() noexcept
    {
        while (g_sig_lock.exchange(true, std::memory_order_acquire))
            ::sched_yield();
    }
    ~sig_guard() { g_sig_lock.store(false, std::memory_order_release); }
    sig_guard(const sig_guard&) = delete;
    sig_guard& operator=(const sig_guard&) = delete;
};

int wrap_sigaction(int sig, const struct sigaction* act, struct sigaction* oact)
{
    const real_functions& r = R();
    if (!wrappable(sig))
        return r.sigaction(sig, act, oact);
    tool_scope scope;
    sig_guard g;
    handler& h = g_handlers[sig];
    void* const old_fn = h.fn.load(std::memory_order_relaxed);
    const int old_flags = h.flags.load(std::memory_order_relaxed);
    struct sigaction kold { };
    int ret;
    if (act != nullptr) {
        struct sigaction a = *act;
        const bool wrap = a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
        if (wrap) {
            void* fn = (a.sa_flags & SA_SIGINFO) ? reinterpret_cast<void*>(a.sa_sigaction)
                                                 : reinterpret_cast<void*>(a.sa_handler);
            h.flags.store(a.sa_flags, std::memory_order_relaxed);
            h.fn.store(fn, std::memory_order_release);
            a.sa_sigaction = trampoline;
            a.sa_flags |= SA_SIGINFO;
        }
        ret = r.sigaction(sig, &a, &kold);
        if (ret != 0) {
            h.fn.store(old_fn, std::memory_order_relaxed);
            h.flags.store(old_flags, std::memory_order_relaxed);
        } else {
            if (!wrap)
                h.fn.store(nullptr, std::memory_order_relaxed);
            const std::uint64_t before = g_wrapped.load(std::memory_order_relaxed);
            const std::uint64_t after = wrap ? before | bit(sig) : before & ~bit(sig);
            if (after != before) {
                g_wrapped.store(after, std::memory_order_relaxed);
                g_irq_gen.fetch_add(1, std::memory_order_relaxed);
            }
        }
    } else {
        ret = r.sigaction(sig, nullptr, &kold);
    }
    if (ret == 0 && oact != nullptr) {
        *oact = kold;
        if ((kold.sa_flags & SA_SIGINFO) && kold.sa_sigaction == trampoline && old_fn != nullptr) {
            // Present the program's own handler, as it installed it.
            oact->sa_flags = (kold.sa_flags & ~SA_SIGINFO) | (old_flags & SA_SIGINFO);
            if (old_flags & SA_SIGINFO)
                oact->sa_sigaction = reinterpret_cast<void (*)(int, siginfo_t*, void*)>(old_fn);
            else
                oact->sa_handler = reinterpret_cast<void (*)(int)>(old_fn);
        }
    }
    return ret;
}

sighandler_t install(int sig, sighandler_t fn, int flags, bool block_self)
{
    struct sigaction a {
    }, o{};
    a.sa_handler = fn;
    sigemptyset(&a.sa_mask);
    if (block_self && sig > 0 && sig < NSIG)
        sigaddset(&a.sa_mask, sig);
    a.sa_flags = flags;
    if (wrap_sigaction(sig, &a, &o) < 0)
        return SIG_ERR;
    return o.sa_handler;
}

template <class F> int mask_common(int how, const sigset_t* set, sigset_t* old, std::uintptr_t ip, F real_mask)
{
    const sigset_t want = *set; // `old` may be `set`
    sigset_t prev;
    const int ret = real_mask(how, &want, &prev);
    if (ret != 0)
        return ret;
    if (old != nullptr)
        *old = prev;
    const std::uint64_t p = mask_bits(prev), w = mask_bits(want);
    std::uint64_t now = p;
    if (how == SIG_BLOCK)
        now = p | w;
    else if (how == SIG_UNBLOCK)
        now = p & ~w;
    else if (how == SIG_SETMASK)
        now = w;
    tls.sigmask = now;
    tls.irq_synced = true;
    if (g_wrapped.load(std::memory_order_relaxed) != 0 || env::os::info(env::os::current()).irqs_disabled)
        apply_mask(ip);
    return 0;
}

} // namespace

void irq_sync_slow() noexcept
{
    thread_state& t = tls;
    if (!t.irq_synced) {
        sigset_t cur;
        if (R().pthread_sigmask(SIG_BLOCK, nullptr, &cur) == 0)
            t.sigmask = mask_bits(cur);
        t.irq_synced = true;
    }
    apply_mask(0);
}

} // namespace klock::preload

using namespace klock::preload;

extern "C" int sigaction(int sig, const struct sigaction* act, struct sigaction* oact) noexcept
{
    return wrap_sigaction(sig, act, oact);
}

extern "C" sighandler_t signal(int sig, sighandler_t fn) noexcept { return install(sig, fn, SA_RESTART, true); }

extern "C" sighandler_t bsd_signal(int sig, sighandler_t fn) noexcept { return install(sig, fn, SA_RESTART, true); }

extern "C" sighandler_t sysv_signal(int sig, sighandler_t fn) noexcept
{
    return install(sig, fn, SA_RESETHAND | SA_NODEFER, false);
}

extern "C" sighandler_t __sysv_signal(int sig, sighandler_t fn) noexcept
{
    return install(sig, fn, SA_RESETHAND | SA_NODEFER, false);
}

extern "C" int sigprocmask(int how, const sigset_t* set, sigset_t* old) noexcept
{
    const real_functions& r = R();
    if (set == nullptr || !tracked(KLOCK_RA))
        return r.sigprocmask(how, set, old);
    return mask_common(how, set, old, KLOCK_RA, r.sigprocmask);
}

extern "C" int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) noexcept
{
    const real_functions& r = R();
    if (set == nullptr || !tracked(KLOCK_RA))
        return r.pthread_sigmask(how, set, old);
    return mask_common(how, set, old, KLOCK_RA, r.pthread_sigmask);
}
