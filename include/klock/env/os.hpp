// The os environment: real threads, std::atomic, Linux futexes.
//
// The task record of a thread lives in a static table indexed by the thread's task slot, and
// the thread reaches it through a thread_local pointer (one TLS load; its slow initialisation -
// gettid, a slot, the thread name - runs once per thread on first use). The table is never
// freed: a record outlives its thread and is reused by a later one, like the kernel's task
// structs freed only after an RCU grace period. So a spinner that read an owner pointer from a
// lock word may still read that owner's record after the owner has unlocked and exited - it sees
// some thread's state, a hint it re-checks against the lock word, never unmapped memory (a
// thread_local record would live in the dead thread's stack area, which glibc may unmap).
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <signal.h>
#include <sys/single_threaded.h>

#include <klock/env/env.hpp>
#include <klock/thread_info.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace klock::env {

struct os_task {
    thread_info ti;
    sigset_t saved_sigmask; // signal mask before local_irq_disable() blocked signals
};

namespace detail {
extern thread_local constinit os_task* tls_task __attribute__((tls_model("initial-exec")));
// Sets up the calling thread's record and returns it.
os_task* os_task_init() noexcept;
os_task* os_task_from_slot(std::uint32_t slot) noexcept;
int os_current_cpu() noexcept;
int os_current_prio() noexcept;
int os_futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t val, std::uint64_t deadline) noexcept;
int os_futex_wake(std::atomic<std::uint32_t>& w, int n) noexcept;
int os_futex_lock_pi(std::atomic<std::uint32_t>& w, std::uint64_t deadline) noexcept;
int os_futex_trylock_pi(std::atomic<std::uint32_t>& w) noexcept;
int os_futex_unlock_pi(std::atomic<std::uint32_t>& w) noexcept;
void os_irq_disable(os_task* t) noexcept;
void os_irq_enable(os_task* t) noexcept;
} // namespace detail

struct os {
    template <class T> using atomic = std::atomic<T>;
    using task = os_task;

    [[gnu::always_inline]] static task* current() noexcept
    {
        task* t = detail::tls_task;
        if (__builtin_expect(t == nullptr, 0))
            t = detail::os_task_init();
        return t;
    }
    static thread_info& info(task* t) noexcept { return t->ti; }
    static int task_pid(task* t) noexcept { return t->ti.pid; }
    static const char* task_comm(task* t) noexcept { return t->ti.comm; }
    static bool task_on_cpu(task* t) noexcept { return !t->ti.blocked.load(std::memory_order_relaxed); }
    static task* task_from_slot(std::uint32_t slot) noexcept { return detail::os_task_from_slot(slot); }
    static int current_cpu() noexcept { return detail::os_current_cpu(); }
    static int current_prio() noexcept { return detail::os_current_prio(); }
    // Optional Env member: true while the process has never had a second thread (glibc's
    // __libc_single_threaded, which its own mutex consults the same way). Sleeping locks may
    // then use plain loads and stores; no other thread can touch their words.
    static bool single_threaded() noexcept { return __libc_single_threaded != 0; }

    [[gnu::always_inline]] static void cpu_relax() noexcept
    {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#elif defined(__aarch64__)
        asm volatile("yield" ::: "memory");
#else
        std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
    }
    static std::uint64_t now_ns() noexcept
    {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return std::uint64_t(ts.tv_sec) * 1000000000u + std::uint64_t(ts.tv_nsec);
    }

    static int futex_wait(atomic<std::uint32_t>& w, std::uint32_t val, std::uint64_t deadline) noexcept
    {
        return detail::os_futex_wait(w, val, deadline);
    }
    static int futex_wake(atomic<std::uint32_t>& w, int n) noexcept { return detail::os_futex_wake(w, n); }
    static int futex_lock_pi(atomic<std::uint32_t>& w, std::uint64_t deadline) noexcept
    {
        return detail::os_futex_lock_pi(w, deadline);
    }
    static int futex_trylock_pi(atomic<std::uint32_t>& w) noexcept { return detail::os_futex_trylock_pi(w); }
    static int futex_unlock_pi(atomic<std::uint32_t>& w) noexcept { return detail::os_futex_unlock_pi(w); }

    // preempt_count is checked, not enforced, for real threads: the OS scheduler preempts
    // whenever it likes, so there is nothing to run here.
    static void preempt_schedule() noexcept { }
    static void irq_disable(task* t) noexcept { detail::os_irq_disable(t); }
    static void irq_enable(task* t) noexcept { detail::os_irq_enable(t); }
};

static_assert(Env<os>);

} // namespace klock::env
